//! Helpers shared by the fuzz targets.

use pigeon_protocol::Charset;

/// Every charset the codec supports.
pub const CHARSETS: [Charset; 3] = [Charset::Utf8, Charset::Gbk, Charset::Cp932];

/// Picks a charset from a byte.
pub fn charset(b: u8) -> Charset {
    CHARSETS[b as usize % CHARSETS.len()]
}

/// What a text decoded in `cs` should read as after being written back in
/// `cs` and read again. UTF-8 and GB18030 hold every character, so the text
/// must come back unchanged; CP932 writes characters it cannot hold as `?`
/// (documented on `Charset::encode`), so those are expected to change.
pub fn expected_text(cs: Charset, text: &str) -> String {
    if cs != Charset::Cp932 || text.is_ascii() {
        return text.to_owned();
    }
    let mut buf = [0u8; 4];
    text.chars()
        .map(|c| {
            let s: &str = c.encode_utf8(&mut buf);
            if cs.decode(&cs.encode(s)) == s {
                c
            } else {
                '?'
            }
        })
        .collect()
}
