//! Text encodings on the wire (protocol.md §5): UTF-8, GBK (read as GB18030,
//! its superset) and CP932, and the rule that picks one for a packet.
//! Decoding never fails: invalid bytes become U+FFFD.

use std::borrow::Cow;

use crate::client::ClientKind;
use crate::command::Opts;

/// A charset a peer may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Charset {
    /// UTF-8.
    Utf8,
    /// GBK / CP936, read and written as GB18030 (a superset: every GBK byte
    /// sequence means the same, and every character can be written).
    #[default]
    Gbk,
    /// CP932 / Shift_JIS (Japanese Windows).
    Cp932,
}

impl Charset {
    /// The name used in configuration and JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Charset::Utf8 => "utf-8",
            Charset::Gbk => "gbk",
            Charset::Cp932 => "cp932",
        }
    }

    /// Reads a charset name as users and iptux write it (`utf-8`, `GB18030`,
    /// `cp936`, `shift_jis`, …).
    pub fn from_label(label: &str) -> Option<Charset> {
        let l = label.trim().to_ascii_lowercase().replace('_', "-");
        match l.as_str() {
            "utf-8" | "utf8" => Some(Charset::Utf8),
            "gbk" | "gb18030" | "gb2312" | "cp936" | "ms936" | "windows-936" | "euc-cn" => Some(Charset::Gbk),
            "cp932" | "shift-jis" | "sjis" | "ms932" | "windows-31j" => Some(Charset::Cp932),
            _ => None,
        }
    }

    fn encoding(self) -> &'static encoding_rs::Encoding {
        match self {
            Charset::Utf8 => encoding_rs::UTF_8,
            Charset::Gbk => encoding_rs::GB18030,
            Charset::Cp932 => encoding_rs::SHIFT_JIS,
        }
    }

    /// Decodes bytes, replacing invalid sequences with U+FFFD.
    pub fn decode(self, bytes: &[u8]) -> Cow<'_, str> {
        if bytes.is_ascii() {
            // Every supported charset is ASCII-compatible (CP932's 0x5C is
            // shown as a backslash by every client that matters here).
            return Cow::Borrowed(std::str::from_utf8(bytes).unwrap_or_default());
        }
        match self {
            Charset::Utf8 => String::from_utf8_lossy(bytes),
            _ => self.encoding().decode_without_bom_handling(bytes).0,
        }
    }

    /// Encodes text. Characters the charset cannot hold become `?` (CP932
    /// only; UTF-8 and GB18030 hold every character).
    pub fn encode(self, text: &str) -> Cow<'_, [u8]> {
        if text.is_ascii() || self == Charset::Utf8 {
            return Cow::Borrowed(text.as_bytes());
        }
        let (bytes, _, unmappable) = self.encoding().encode(text);
        if !unmappable {
            return bytes;
        }
        // encoding_rs writes HTML numeric references for unmappable
        // characters; a chat peer would show them literally, so write `?`.
        let mut out = Vec::with_capacity(text.len());
        let mut buf = [0u8; 4];
        for c in text.chars() {
            let (b, _, bad) = self.encoding().encode(c.encode_utf8(&mut buf));
            if bad {
                out.push(b'?');
            } else {
                out.extend_from_slice(&b);
            }
        }
        Cow::Owned(out)
    }
}

impl std::fmt::Display for Charset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Picks the charset of an incoming packet (protocol.md §5.4):
/// UTF8OPT → UTF-8; an iptux peer → the charset it announced (UTF-8 if
/// none); FeiQ → GBK; otherwise UTF-8 if `sample` is valid non-ASCII UTF-8,
/// else the configured legacy charset.
pub fn detect(opts: Opts, client: ClientKind, announced: Option<Charset>, legacy: Charset, sample: &[u8]) -> Charset {
    if opts.has(Opts::UTF8OPT) {
        return Charset::Utf8;
    }
    match client {
        ClientKind::Iptux => return announced.unwrap_or(Charset::Utf8),
        ClientKind::Feiq => return Charset::Gbk,
        _ => {}
    }
    if let Some(c) = announced {
        return c;
    }
    if !sample.is_ascii() && std::str::from_utf8(sample).is_ok() {
        Charset::Utf8
    } else {
        legacy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gbk_round_trip_and_invalid_bytes() {
        let b = Charset::Gbk.encode("爱丽丝");
        assert_eq!(&*b, b"\xb0\xae\xc0\xf6\xcb\xbf");
        assert_eq!(Charset::Gbk.decode(&b), "爱丽丝");
        assert_eq!(Charset::Gbk.decode(b"\xff\xff"), "\u{fffd}\u{fffd}");
        assert_eq!(Charset::Utf8.decode(b"\xe4\xb8"), "\u{fffd}");
        assert_eq!(Charset::Cp932.decode(b"\x82\xa0"), "あ");
    }

    #[test]
    fn unmappable_becomes_question_mark() {
        assert_eq!(&*Charset::Cp932.encode("a😀b"), b"a?b");
        assert_eq!(Charset::Gbk.decode(&Charset::Gbk.encode("😀")), "😀");
    }

    #[test]
    fn detection_order() {
        let utf8 = "世界".as_bytes();
        let gbk = &*Charset::Gbk.encode("世界");
        let none = Opts(0);
        assert_eq!(detect(Opts(Opts::UTF8OPT), ClientKind::Feiq, None, Charset::Gbk, gbk), Charset::Utf8);
        assert_eq!(detect(none, ClientKind::Iptux, None, Charset::Gbk, gbk), Charset::Utf8);
        assert_eq!(detect(none, ClientKind::Feiq, None, Charset::Utf8, utf8), Charset::Gbk);
        assert_eq!(detect(none, ClientKind::Ipmsg, None, Charset::Gbk, utf8), Charset::Utf8);
        assert_eq!(detect(none, ClientKind::Ipmsg, None, Charset::Cp932, gbk), Charset::Cp932);
        assert_eq!(detect(none, ClientKind::Ipmsg, None, Charset::Gbk, b"ascii"), Charset::Gbk);
    }

    #[test]
    fn labels() {
        assert_eq!(Charset::from_label("GB18030"), Some(Charset::Gbk));
        assert_eq!(Charset::from_label("utf-8"), Some(Charset::Utf8));
        assert_eq!(Charset::from_label("Shift_JIS"), Some(Charset::Cp932));
        assert_eq!(Charset::from_label("koi8-r"), None);
    }
}
