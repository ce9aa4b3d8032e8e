//! Attachment lists (protocol.md §6.1): the file and folder entries after the
//! body of a `SENDMSG|FILEATTACHOPT`, and the file attribute word (§2.4).
//!
//! Written as IPMsg writes them (decimal IDs, hex sizes and times, `::` for
//! `:`, one `\a` per entry); read as every client writes them (hex or decimal
//! IDs, iptux's `\a:` separator, missing attribute = regular file).

use crate::charset::Charset;
use crate::error::{dec_u64, hex_u64, Error, Result};
use crate::name::{put_escaped, take_escaped};

/// The file attribute word: type in the low 8 bits, options above.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileAttr(pub u32);

impl FileAttr {
    pub const REGULAR: u8 = 0x01;
    pub const DIR: u8 = 0x02;
    pub const RETPARENT: u8 = 0x03;
    pub const SYMLINK: u8 = 0x04;
    pub const CDEV: u8 = 0x05;
    pub const BDEV: u8 = 0x06;
    pub const FIFO: u8 = 0x07;
    pub const RESFORK: u8 = 0x10;
    pub const CLIPBOARD: u8 = 0x20;

    pub const RONLYOPT: u32 = 0x0100;
    pub const HIDDENOPT: u32 = 0x1000;
    pub const EXHIDDENOPT: u32 = 0x2000;
    pub const ARCHIVEOPT: u32 = 0x4000;
    pub const SYSTEMOPT: u32 = 0x8000;

    /// A plain regular file.
    pub const FILE: FileAttr = FileAttr(Self::REGULAR as u32);
    /// A plain directory.
    pub const DIRECTORY: FileAttr = FileAttr(Self::DIR as u32);

    /// The type byte.
    pub fn file_type(self) -> u8 {
        (self.0 & 0xFF) as u8
    }

    /// True for a regular file.
    pub fn is_file(self) -> bool {
        self.file_type() == Self::REGULAR
    }

    /// True for a directory.
    pub fn is_dir(self) -> bool {
        self.file_type() == Self::DIR
    }

    /// The same type without option bits (iptux rejects any option bit).
    pub fn without_options(self) -> FileAttr {
        FileAttr(self.0 & 0xFF)
    }
}

/// Extended attribute keys (§2.4).
pub mod ext {
    pub const UID: u32 = 0x01;
    pub const USERNAME: u32 = 0x02;
    pub const GID: u32 = 0x03;
    pub const GROUPNAME: u32 = 0x04;
    pub const CLIPBOARDPOS: u32 = 0x08;
    pub const PERM: u32 = 0x10;
    pub const MAJORNO: u32 = 0x11;
    pub const MINORNO: u32 = 0x12;
    pub const CTIME: u32 = 0x13;
    pub const MTIME: u32 = 0x14;
    pub const ATIME: u32 = 0x15;
    pub const CREATETIME: u32 = 0x16;
    pub const CREATOR: u32 = 0x20;
    pub const FILETYPE: u32 = 0x21;
    pub const FINDERINFO: u32 = 0x22;
    pub const ACL: u32 = 0x30;
    pub const ALIASFNAME: u32 = 0x40;
    pub const UNICODEFNAME: u32 = 0x41;
    /// Pigeon's own (folder resume): the file's data is omitted, the
    /// receiver has all of it; the value is its size.
    pub const PIGEON_OMITTED: u32 = 0x7F01;
    /// Pigeon's own (folder resume): the data that follows starts at this offset.
    pub const PIGEON_RESUMED_AT: u32 = 0x7F02;
    /// Pigeon's own, sent only to a Pigeon that asked (`PH` in its
    /// request): the SHA-256 (64 hex digits) of the file just before this
    /// record, as the sender read it while serving.
    pub const PIGEON_SHA256_PREV: u32 = 0x7F03;
}

/// One `key=value` extended attribute; the value is kept as written
/// (normally hex, sometimes a comma-separated list).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtAttr {
    pub key: u32,
    pub value: String,
}

impl ExtAttr {
    /// An attribute whose value is a hex number.
    pub fn hex(key: u32, value: u64) -> ExtAttr {
        ExtAttr { key, value: format!("{value:x}") }
    }

    /// The value read as hex, if it is one.
    pub fn hex_value(&self) -> Option<u64> {
        hex_u64("extended attribute", self.value.as_bytes()).ok()
    }
}

/// Reads the extended-attribute fields `k=v` (hex key) of a header.
pub(crate) fn parse_ext(fields: &[&[u8]]) -> Vec<ExtAttr> {
    fields
        .iter()
        .filter_map(|f| {
            let eq = f.iter().position(|&b| b == b'=')?;
            let key = u32::try_from(hex_u64("extended attribute key", &f[..eq]).ok()?).ok()?;
            Some(ExtAttr { key, value: String::from_utf8_lossy(&f[eq + 1..]).into_owned() })
        })
        .collect()
}

/// Writes `:k=v` for each attribute.
pub(crate) fn put_ext(out: &mut Vec<u8>, ext: &[ExtAttr]) -> Result<()> {
    for e in ext {
        if e.value.bytes().any(|b| b == b':' || b == 0 || b == 7) {
            return Err(Error::Unwritable { field: "extended attribute", why: "value holds ':', NUL or BEL" });
        }
        out.extend_from_slice(format!(":{:x}={}", e.key, e.value).as_bytes());
    }
    Ok(())
}

/// One file or folder offered in a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// The file ID: decimal in the list, hex in requests.
    pub id: u64,
    /// The bare name.
    pub name: String,
    /// Size in bytes (0 for folders).
    pub size: u64,
    /// Modification time, Unix seconds.
    pub mtime: u64,
    /// Type and options.
    pub attr: FileAttr,
    /// Extended attributes.
    pub ext: Vec<ExtAttr>,
}

impl Attachment {
    /// Reads a whole attachment list (the section after the body).
    pub fn decode_list(bytes: &[u8], charset: Charset) -> Result<Vec<Attachment>> {
        let mut out = Vec::new();
        for raw in bytes.split(|&b| b == 0x07) {
            // iptux writes `\a:` between entries; IPMsg skips leading colons.
            let start = raw.iter().position(|&b| b != b':').unwrap_or(raw.len());
            let raw = &raw[start..];
            if raw.iter().all(|&b| b == 0 || b.is_ascii_whitespace()) {
                continue;
            }
            out.push(Attachment::decode_entry(raw, charset).map_err(|e| Error::Malformed {
                what: "attachment list",
                why: format!("entry {}: {e}", out.len() + 1),
            })?);
        }
        Ok(out)
    }

    fn decode_entry(raw: &[u8], charset: Charset) -> Result<Attachment> {
        let colon = raw.iter().position(|&b| b == b':').ok_or(Error::Missing { what: "attachment", part: "name" })?;
        let id = parse_id(&raw[..colon])?;
        let (name, rest) = take_escaped(&raw[colon + 1..]);
        let rest = rest.ok_or(Error::Missing { what: "attachment", part: "size" })?;
        let mut fields: Vec<&[u8]> = rest.split(|&b| b == b':').collect();
        while fields.last().is_some_and(|f| f.is_empty()) {
            fields.pop();
        }
        let size = hex_u64("attachment size", fields.first().copied().unwrap_or_default())?;
        let mtime = match fields.get(1) {
            Some(f) => hex_u64("attachment mtime", f)?,
            None => 0,
        };
        let attr = match fields.get(2) {
            Some(f) => FileAttr(
                u32::try_from(hex_u64("attachment attribute", f)?)
                    .map_err(|_| Error::Malformed { what: "attachment", why: "attribute wider than 32 bits".into() })?,
            ),
            None => FileAttr::FILE,
        };
        let ext = parse_ext(fields.get(3..).unwrap_or_default());
        Ok(Attachment { id, name: charset.decode(&name).into_owned(), size, mtime, attr, ext })
    }

    /// Writes one entry: `id:name:size:mtime:attr[:k=v…]:\a`.
    pub fn encode(&self, charset: Charset, out: &mut Vec<u8>) -> Result<()> {
        if self.name.is_empty() || self.name.contains(['\0', '\x07']) {
            return Err(Error::Unwritable { field: "attachment name", why: "empty or holds NUL or BEL" });
        }
        out.extend_from_slice(self.id.to_string().as_bytes());
        out.push(b':');
        put_escaped(out, &charset.encode(&self.name));
        out.extend_from_slice(format!(":{:x}:{:x}:{:x}", self.size, self.mtime, self.attr.0).as_bytes());
        put_ext(out, &self.ext)?;
        out.extend_from_slice(b":\x07");
        Ok(())
    }

    /// Writes a whole list.
    pub fn encode_list(list: &[Attachment], charset: Charset, out: &mut Vec<u8>) -> Result<()> {
        list.iter().try_for_each(|a| a.encode(charset, out))
    }
}

/// File IDs are decimal in every list but feiq-cli's, which writes hex.
fn parse_id(s: &[u8]) -> Result<u64> {
    if s.iter().all(u8::is_ascii_digit) {
        dec_u64("file ID", s)
    } else {
        hex_u64("file ID", s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iptux_form_with_escaped_colon() {
        let l = Attachment::decode_list(b"0:a::b.txt:5:65a1b2c3:1:\x07:1:notes.txt:5:65a1b2c4:1:\x07:", Charset::Utf8)
            .unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].name, "a:b.txt");
        assert_eq!(l[0].size, 5);
        assert_eq!(l[1].id, 1);
        assert_eq!(l[1].mtime, 0x65a1b2c4);
    }

    #[test]
    fn missing_attribute_is_regular_and_hex_ids_read() {
        let l = Attachment::decode_list(b"1f:x:10:0\x07", Charset::Utf8).unwrap();
        assert_eq!((l[0].id, l[0].attr, l[0].size), (0x1f, FileAttr::FILE, 16));
    }

    #[test]
    fn malformed_entry_is_an_error() {
        assert!(Attachment::decode_list(b"1:x\x07", Charset::Utf8).is_err());
        assert!(Attachment::decode_list(b"1:x:zz:0:1:\x07", Charset::Utf8).is_err());
        assert!(Attachment::decode_list(b"nope\x07", Charset::Utf8).is_err());
    }

    #[test]
    fn clipboard_position_and_gbk_names() {
        let a = Attachment {
            id: 3,
            name: "图片.png".into(),
            size: 10,
            mtime: 1,
            attr: FileAttr(FileAttr::CLIPBOARD as u32),
            ext: vec![ExtAttr::hex(ext::CLIPBOARDPOS, 2)],
        };
        let mut out = Vec::new();
        a.encode(Charset::Gbk, &mut out).unwrap();
        assert_eq!(&out[..2], b"3:");
        assert!(out.ends_with(b":a:1:20:8=2:\x07"));
        assert_eq!(Attachment::decode_list(&out, Charset::Gbk).unwrap(), vec![a]);
    }
}
