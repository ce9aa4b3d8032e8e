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

/// Picks the charset of an incoming packet (protocol.md §5, DESIGN.md):
///
/// - UTF8OPT means UTF-8, whoever sends it.
/// - Clients that flag UTF-8 whenever they write it (IP Messenger, FeiQ,
///   Pigeon) write everything else in the legacy charset: FeiQ in GBK,
///   IP Messenger and Pigeon in the configured `legacy` one. Their bytes are
///   never guessed: short GBK text is often valid UTF-8 (`通知` is
///   `CD A8 D6 AA`, which UTF-8 reads as `֪ͨ`).
/// - Clients that never flag (iptux, unknown ones) are guessed by [`guess`]:
///   UTF-8 when the bytes are UTF-8 and read as plausible text, else the
///   fallback (GB18030 for iptux, whose other charsets are Chinese; the
///   legacy charset for others). `hint` is what this peer wrote in last,
///   used when the bytes read plausibly both ways.
pub fn detect(opts: Opts, client: ClientKind, hint: Option<Charset>, legacy: Charset, sample: &[u8]) -> Charset {
    if opts.has(Opts::UTF8OPT) {
        return Charset::Utf8;
    }
    match client {
        ClientKind::Feiq => Charset::Gbk,
        ClientKind::Ipmsg | ClientKind::Pigeon => legacy,
        ClientKind::Iptux => guess(sample, hint, Charset::Gbk),
        ClientKind::Unknown => guess(sample, hint, legacy),
    }
}

/// Guesses the charset of text from a client that does not say: UTF-8 or
/// `fallback`. Bytes that are not UTF-8 are the fallback's. Bytes that are
/// valid both ways are UTF-8 unless their UTF-8 reading is implausible text
/// (C1 controls, IPA, combining marks, Hebrew accents: what short GBK text
/// turns into) while the fallback's reading is not; when both readings are
/// plausible, `hint` (the peer's last charset) decides, else UTF-8.
/// ASCII is the hint's (any charset reads it alike).
pub fn guess(sample: &[u8], hint: Option<Charset>, fallback: Charset) -> Charset {
    if sample.is_ascii() {
        return hint.unwrap_or(Charset::Utf8);
    }
    let Ok(utf8) = std::str::from_utf8(sample) else {
        return fallback;
    };
    if fallback == Charset::Utf8 {
        return Charset::Utf8;
    }
    let Some(other) = fallback.encoding().decode_without_bom_handling_and_without_replacement(sample) else {
        return Charset::Utf8;
    };
    match (plausible(utf8), plausible(&other)) {
        (false, true) => fallback,
        (true, true) => hint.unwrap_or(Charset::Utf8),
        _ => Charset::Utf8,
    }
}

/// True if every character is one people write in a chat: not a C1
/// control, not IPA or a spacing modifier or a combining mark (U+0250–U+036F),
/// not in U+0530–U+07FF (Armenian to NKo: where two-byte GBK sequences land
/// when read as UTF-8), not private use.
fn plausible(text: &str) -> bool {
    text.chars().all(|c| {
        let o = c as u32;
        !matches!(o, 0x80..=0x9f | 0x250..=0x36f | 0x530..=0x7ff | 0xe000..=0xf8ff | 0xfffd)
    })
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
        assert_eq!(detect(none, ClientKind::Feiq, None, Charset::Utf8, utf8), Charset::Gbk);
        // Clients that flag UTF-8 are never guessed: unflagged is legacy.
        assert_eq!(detect(none, ClientKind::Ipmsg, None, Charset::Gbk, utf8), Charset::Gbk);
        assert_eq!(detect(none, ClientKind::Pigeon, None, Charset::Gbk, utf8), Charset::Gbk);
        assert_eq!(detect(none, ClientKind::Ipmsg, None, Charset::Cp932, gbk), Charset::Cp932);
        // iptux never flags: guessed, GB18030 when not UTF-8.
        assert_eq!(detect(none, ClientKind::Iptux, None, Charset::Cp932, gbk), Charset::Gbk);
        assert_eq!(detect(none, ClientKind::Iptux, None, Charset::Gbk, utf8), Charset::Utf8);
        assert_eq!(detect(none, ClientKind::Unknown, None, Charset::Cp932, utf8), Charset::Utf8);
        assert_eq!(detect(none, ClientKind::Unknown, None, Charset::Cp932, b"\x82\xa0"), Charset::Cp932);
    }

    #[test]
    fn short_gbk_that_is_valid_utf8_is_gbk() {
        // The issue's broadcast: "通知" in GBK reads as UTF-8 too.
        for text in ["通知", "hello all 通知", "测试"] {
            let b = Charset::Gbk.encode(text);
            if std::str::from_utf8(&b).is_ok() {
                assert_eq!(guess(&b, None, Charset::Gbk), Charset::Gbk, "{text}");
            }
            assert_eq!(Charset::Gbk.decode(&b), text);
        }
        // A Pigeon broadcast is never guessed.
        let b = Charset::Gbk.encode("hello all 通知");
        assert_eq!(detect(Opts(Opts::BROADCASTOPT), ClientKind::Pigeon, None, Charset::Gbk, &b), Charset::Gbk);
    }

    #[test]
    fn utf8_that_is_valid_gb18030_stays_utf8() {
        for text in ["ünïcødé", "Grüße", "naïve café", "Привет", "Ελλάδα", "你好", "hello 😀", "日本語"]
        {
            assert_eq!(guess(text.as_bytes(), None, Charset::Gbk), Charset::Utf8, "{text}");
        }
        // GB18030 of the same text is not UTF-8.
        let b = Charset::Gbk.encode("hello from the iptux GUI, ünïcødé 你好");
        assert_eq!(guess(&b, None, Charset::Gbk), Charset::Gbk);
        assert_eq!(Charset::Gbk.decode(&b), "hello from the iptux GUI, ünïcødé 你好");
    }

    #[test]
    fn the_hint_decides_what_reads_both_ways() {
        // "眉" in GBK is "ü" in UTF-8 ("眉毛" is "üë"): both plausible.
        let b = Charset::Gbk.encode("眉");
        assert_eq!(guess(&b, None, Charset::Gbk), Charset::Utf8);
        assert_eq!(guess(&b, Some(Charset::Gbk), Charset::Gbk), Charset::Gbk);
        assert_eq!(guess(b"ascii", Some(Charset::Gbk), Charset::Gbk), Charset::Gbk);
        assert_eq!(guess(b"ascii", None, Charset::Gbk), Charset::Utf8);
    }

    #[test]
    fn labels() {
        assert_eq!(Charset::from_label("GB18030"), Some(Charset::Gbk));
        assert_eq!(Charset::from_label("utf-8"), Some(Charset::Utf8));
        assert_eq!(Charset::from_label("Shift_JIS"), Some(Charset::Cp932));
        assert_eq!(Charset::from_label("koi8-r"), None);
    }
}
