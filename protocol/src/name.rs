//! File and directory names from the wire: the check that a name is one
//! safe path component (DESIGN.md "Receiving safely"), and the `::` escaping
//! that attachment lists and directory headers use for `:`.

use crate::error::{Error, Result};

/// The longest name most file systems store (bytes of UTF-8).
pub const MAX_NAME_BYTES: usize = 255;

/// Checks that `name` is a single, ordinary path component: not empty, not
/// `.` or `..`, no `/`, `\`, NUL or control characters, no bidirectional
/// formatting characters (an override shows `report\u{202e}fdp.exe` as
/// `reportexe.pdf`), no drive prefix (`C:`), at most 255 bytes. `:`
/// elsewhere is allowed (Linux names may hold it).
pub fn validate_component(name: &str) -> Result<()> {
    let bad = |why| Err(Error::UnsafeName { name: name.chars().take(80).collect(), why });
    if name.is_empty() {
        return bad("empty");
    }
    if name == "." || name == ".." {
        return bad("refers to a directory");
    }
    if name.contains('/') || name.contains('\\') {
        return bad("contains a path separator");
    }
    if name.chars().any(char::is_control) {
        return bad("contains a control character");
    }
    if name.chars().any(is_bidi_control) {
        return bad("holds a right-to-left override");
    }
    // `C:` alone names a drive on Windows; `C:\x` and `C:/x` are already
    // refused for their separator, and `b:c` is an ordinary Linux name.
    let b = name.as_bytes();
    if b.len() == 2 && b[0].is_ascii_alphabetic() && b[1] == b':' {
        return bad("names a drive");
    }
    if b.len() > MAX_NAME_BYTES {
        return bad("longer than 255 bytes");
    }
    Ok(())
}

/// Unicode's bidirectional formatting characters: embeddings and overrides
/// (U+202A–U+202E), isolates (U+2066–U+2069) and the marks (U+200E, U+200F,
/// U+061C). Any of them can make a name display in another order than the
/// one the file system (and the program that opens it) reads.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}')
}

/// Reads a `::`-escaped name from the start of `s` up to the first single
/// `:`. Returns the unescaped bytes and the rest after that `:` (`None` if
/// no separator follows).
pub(crate) fn take_escaped(s: &[u8]) -> (Vec<u8>, Option<&[u8]>) {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b':' {
            if s.get(i + 1) == Some(&b':') {
                out.push(b':');
                i += 2;
                continue;
            }
            return (out, Some(&s[i + 1..]));
        }
        out.push(s[i]);
        i += 1;
    }
    (out, None)
}

/// Writes a name with every `:` doubled.
pub(crate) fn put_escaped(out: &mut Vec<u8>, name: &[u8]) {
    for &b in name {
        out.push(b);
        if b == b':' {
            out.push(b':');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names() {
        for n in ["", ".", "..", "../x", "a/b", "a\\b", "/etc", "C:", "C:\\evil", "a\0b", "a\nb", &"x".repeat(256)] {
            assert!(validate_component(n).is_err(), "{n:?}");
        }
        for n in ["a.txt", "报告.pdf", "ab:c.txt", "...", ".hidden", "x y", "b:c"] {
            assert!(validate_component(n).is_ok(), "{n:?}");
        }
    }

    #[test]
    fn bidirectional_controls_are_refused() {
        // "Trojan Source" for files: shown as "reportexe.pdf", opened as an .exe.
        let e = validate_component("report\u{202e}fdp.exe").unwrap_err();
        assert!(e.to_string().contains("holds a right-to-left override"), "{e}");
        for c in ['\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}', '\u{2066}', '\u{2067}', '\u{2068}']
            .into_iter()
            .chain(['\u{2069}', '\u{200e}', '\u{200f}', '\u{061c}'])
        {
            let n = format!("a{c}b.txt");
            assert!(validate_component(&n).is_err(), "{n:?}");
            assert!(validate_component(&c.to_string()).is_err(), "{c:?} alone");
        }
        // Right-to-left text itself is an ordinary name, and so are the
        // neighbours of the refused characters (joiners, a narrow space).
        for n in ["تقرير.pdf", "דוח.txt", "a\u{200d}b", "a\u{2060}b", "a\u{202f}b", "a\u{2065}b"] {
            assert!(validate_component(n).is_ok(), "{n:?}");
        }
    }

    #[test]
    fn escaping() {
        let (n, rest) = take_escaped(b"a::b.txt:5:");
        assert_eq!(n, b"a:b.txt");
        assert_eq!(rest, Some(&b"5:"[..]));
        let (n, rest) = take_escaped(b"ends:::1");
        assert_eq!((n.as_slice(), rest), (&b"ends:"[..], Some(&b"1"[..])));
        let mut out = Vec::new();
        put_escaped(&mut out, b"a:b:");
        assert_eq!(out, b"a::b::");
    }
}
