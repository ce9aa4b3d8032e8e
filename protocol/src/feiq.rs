//! FeiQ's extensions (protocol.md §8): the `{/font;…;}` tag after message
//! text, inline-image references, image fragments (0xC0) and their acks
//! (0xC1). Shake (0xD1/0xD2) and typing (0x79/0x7A) are bare modes in
//! [`crate::command::Mode`].

use crate::error::{dec_u64, Error, Result};

/// Splits a trailing `{/font;…;}` tag (and one space before it) off a
/// message text. Returns the text and the tag's inside, if there was one.
pub fn split_font(text: &str) -> (&str, Option<&str>) {
    let trimmed = text.trim_end_matches('\0');
    if let Some(start) = trimmed.rfind("{/font;") {
        if trimmed.ends_with(";}") && start + 7 <= trimmed.len() - 2 {
            let font = &trimmed[start + 7..trimmed.len() - 2];
            let body = &trimmed[..start];
            return (body.strip_suffix(' ').unwrap_or(body), Some(font));
        }
    }
    (text, None)
}

/// Inline image references in a text: `/~#>64ea4edd<B~` (the ids).
pub fn image_refs(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(p) = rest.find("/~#>") {
        let after = &rest[p + 4..];
        // `<X~` where X is one ASCII letter (B: picture, G: custom face);
        // compare bytes, so text after `<` in any script cannot split a char.
        match after.find('<') {
            Some(end)
                if after.as_bytes().get(end + 1).is_some_and(u8::is_ascii_alphabetic)
                    && after.as_bytes().get(end + 2) == Some(&b'~') =>
            {
                out.push(&after[..end]);
                rest = &after[end + 3..];
            }
            _ => break,
        }
    }
    out
}

/// The header of one inline-image fragment:
/// `id|total|offset|count|index|len|…#\0` followed by `len` raw bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageFragment<'a> {
    /// Image id (8 hex digits in captures).
    pub id: String,
    /// Size of the whole image.
    pub total: u64,
    /// Offset of this fragment.
    pub offset: u64,
    /// Number of fragments.
    pub count: u32,
    /// This fragment's number, from 1.
    pub index: u32,
    /// The remaining `|` fields, as sent (`0`, `2`, `0`, `00000000`).
    pub rest: Vec<String>,
    /// This fragment's bytes.
    pub data: &'a [u8],
}

impl<'a> ImageFragment<'a> {
    /// Reads a fragment from a packet payload (everything after the 5th `:`).
    pub fn decode(payload: &'a [u8]) -> Result<ImageFragment<'a>> {
        let hash = payload
            .iter()
            .position(|&b| b == b'#')
            .ok_or(Error::Missing { what: "FeiQ image fragment", part: "'#'" })?;
        let head = &payload[..hash];
        let mut after = &payload[hash + 1..];
        if after.first() == Some(&0) {
            after = &after[1..];
        }
        let fields: Vec<&[u8]> = head.split(|&b| b == b'|').collect();
        if fields.len() < 6 {
            return Err(bad(&format!("{} of 6 header fields", fields.len())));
        }
        let num = |i: usize, what| dec_u64(what, fields[i]);
        let len = num(5, "fragment length")? as usize;
        if after.len() < len {
            return Err(bad(&format!("says {len} bytes, carries {}", after.len())));
        }
        let count = u32::try_from(num(3, "fragment count")?).map_err(|_| bad("count too large"))?;
        let index = u32::try_from(num(4, "fragment index")?).map_err(|_| bad("index too large"))?;
        if index == 0 || index > count {
            return Err(bad("index outside 1..=count"));
        }
        check_id(fields[0])?;
        Ok(ImageFragment {
            id: String::from_utf8_lossy(fields[0]).into_owned(),
            total: num(1, "image size")?,
            offset: num(2, "fragment offset")?,
            count,
            index,
            rest: fields[6..].iter().map(|f| String::from_utf8_lossy(f).into_owned()).collect(),
            data: &after[..len],
        })
    }

    /// Writes the payload: header, `#`, NUL, data.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut head =
            format!("{}|{}|{}|{}|{}|{}", self.id, self.total, self.offset, self.count, self.index, self.data.len());
        for r in &self.rest {
            head.push('|');
            head.push_str(r);
        }
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(b"#\0");
        out.extend_from_slice(self.data);
    }
}

/// The body of a fragment ack (0xC1): `id|index#`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FragmentAck {
    pub id: String,
    pub index: u32,
}

impl FragmentAck {
    /// Reads an ack body.
    pub fn decode(body: &[u8]) -> Result<FragmentAck> {
        let body = body.strip_suffix(b"#").unwrap_or(body);
        let bar = body.iter().position(|&b| b == b'|').ok_or(Error::Missing { what: "fragment ack", part: "'|'" })?;
        let index = u32::try_from(dec_u64("fragment index", &body[bar + 1..])?).map_err(|_| bad("index too large"))?;
        check_id(&body[..bar])?;
        Ok(FragmentAck { id: String::from_utf8_lossy(&body[..bar]).into_owned(), index })
    }

    /// The body to write (the packet layer adds the NUL).
    pub fn encode(&self) -> String {
        format!("{}|{}#", self.id, self.index)
    }
}

/// Image ids are short printable ASCII (8 hex digits in captures); they
/// are echoed back in acks, so nothing else is accepted.
fn check_id(id: &[u8]) -> Result<()> {
    if id.is_empty() || id.len() > 64 || !id.iter().all(|b| b.is_ascii_graphic() && !b"|#:".contains(b)) {
        return Err(bad("image id is not 1-64 printable characters"));
    }
    Ok(())
}

fn bad(why: &str) -> Error {
    Error::Malformed { what: "FeiQ image fragment", why: why.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn font_tag() {
        let (t, f) = split_font("你好 {/font;-16 0 0 0 400 0 0 0 134 0 0 2 32 微软雅黑 8404992;}");
        assert_eq!(t, "你好");
        assert_eq!(f, Some("-16 0 0 0 400 0 0 0 134 0 0 2 32 微软雅黑 8404992"));
        assert_eq!(split_font("plain"), ("plain", None));
        assert_eq!(split_font("{/font;;}"), ("", Some("")));
        assert_eq!(split_font("x {/font;"), ("x {/font;", None));
    }

    #[test]
    fn image_reference() {
        assert_eq!(image_refs("a/~#>64ea4edd<B~b/~#>1<G~"), ["64ea4edd", "1"]);
        assert!(image_refs("/~#>broken").is_empty());
        // Found by the fuzzer: a multi-byte character right after `<`.
        assert!(image_refs("/~#>‹é").is_empty());
        assert!(image_refs("/~#>a<é~").is_empty());
    }

    #[test]
    fn fragment_lies() {
        assert!(ImageFragment::decode(b"1|10|0|1|1|5|0#\0abc").is_err());
        assert!(ImageFragment::decode(b"1|10|0|1|2|0#\0").is_err());
        assert!(ImageFragment::decode(b"1|10|0").is_err());
        // Found in review: a NUL in the id would be echoed into the ack.
        assert!(ImageFragment::decode(b"a\0b|1|0|1|1|0#").is_err());
        assert!(FragmentAck::decode(b"a\0b|1#").is_err());
        let f = ImageFragment::decode(b"1|3|0|1|1|3|0|2|0|00000000#\0abc\0\0").unwrap();
        assert_eq!(f.data, b"abc");
        assert_eq!(FragmentAck::decode(b"64ea4edd|1#").unwrap(), FragmentAck { id: "64ea4edd".into(), index: 1 });
    }
}
