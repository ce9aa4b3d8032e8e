//! Text for a terminal, shared by every face (the chat, the commands, the
//! doctor): display widths by grapheme (the `unicode-width` ratatui draws
//! with), text from the network made safe to print ([`clean`]), sizes in
//! binary units as `2.9 MiB`, and how a message came (encrypted, signed).

use unicode_segmentation::UnicodeSegmentation;
use unicode_width::UnicodeWidthStr;

/// Columns a string takes (a grapheme at a time, as ratatui draws it).
pub fn width(s: &str) -> usize {
    s.graphemes(true).map(grapheme_width).sum()
}

/// Columns one grapheme takes.
pub fn grapheme_width(g: &str) -> usize {
    // A lone control character is drawn as nothing by ratatui; the text
    // is cleaned before it gets here, so this only guards against zero.
    g.width()
}

/// Pads to a display width.
pub fn pad(s: &str, width: usize) -> String {
    let w = self::width(s);
    format!("{s}{}", " ".repeat(width.saturating_sub(w)))
}

/// Text from the network made safe for a terminal: control characters (an
/// escape sequence could retitle the window or write the clipboard) and
/// bidirectional overrides (which could show text in another order than it
/// reads) become U+FFFD; newlines and tabs stay.
pub fn clean(s: &str) -> std::borrow::Cow<'_, str> {
    let bad = |c: char| (c.is_control() && c != '\n' && c != '\t') || pigeon_protocol::name::is_bidi_control(c);
    if !s.chars().any(bad) {
        return std::borrow::Cow::Borrowed(s);
    }
    s.chars().map(|c| if bad(c) { '\u{fffd}' } else { c }).collect()
}

/// A path made safe for a terminal: file names from the wire become parts
/// of the paths `fetch` prints.
pub fn clean_path(p: &std::path::Path) -> String {
    clean(&p.to_string_lossy()).into_owned()
}

/// `512 B`, `2.9 MiB`, `41.0 GiB`.
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// ` [encrypted, signed]` and the like after a message in human output
/// (nothing for plain text or an unknown state).
pub fn security_mark(s: Option<pigeon_protocol::pubkey::Security>) -> &'static str {
    use pigeon_protocol::pubkey::Security;
    match s {
        Some(Security::Verified) => " [encrypted, signed]",
        Some(Security::Encrypted) => " [encrypted, unsigned]",
        Some(Security::KeyChanged) => " [encrypted, KEY CHANGED]",
        Some(Security::Plain) | None => "",
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        assert_eq!(super::human_size(512), "512 B");
        assert_eq!(super::human_size(3 << 20), "3.0 MiB");
        assert_eq!(super::human_size(3_040_000), "2.9 MiB");
        assert_eq!(super::human_size(u64::MAX), "16777216.0 TiB");
    }
}
