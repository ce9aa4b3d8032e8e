//! Text in terminal cells: display widths by grapheme (the same
//! `unicode-width` ratatui draws with, so CJK and emoji take the two cells
//! they are drawn in), word wrapping with a hard break for words longer
//! than a line, truncation with an ellipsis, and the multi-line compose
//! [`Editor`].

use unicode_segmentation::UnicodeSegmentation;

/// Columns a string takes (one measure for every face: [`crate::term::width`]).
pub use crate::term::{grapheme_width, width};

/// Text from the network made safe to draw: control characters (escape
/// sequences) become U+FFFD, CR is dropped, a tab becomes four spaces.
///
/// Emoji sequences whose width terminals disagree on (joined families,
/// skin tones, keycaps, presentation selectors) are drawn as their parts:
/// a terminal that counts one cell differently from ratatui would leave
/// stray characters on the screen.
pub fn sanitize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\r' => {}
            '\t' => out.push_str("    "),
            '\n' => out.push('\n'),
            c if c.is_control() => out.push('\u{fffd}'),
            // Bidirectional overrides could reorder what the terminal shows;
            // ratatui cannot lay them out either.
            c if pigeon_protocol::name::is_bidi_control(c) => out.push('\u{fffd}'),
            c if is_sequence_glue(c) => {}
            c => out.push(c),
        }
    }
    out
}

/// Joiners, skin tones, keycaps and presentation selectors: drawn
/// without them, an emoji sequence shows as its parts.
fn is_sequence_glue(c: char) -> bool {
    matches!(c, '\u{200d}' | '\u{fe0e}' | '\u{fe0f}' | '\u{20e3}' | '\u{1f3fb}'..='\u{1f3ff}')
}

/// One line of a single-line field: newlines shown as `⏎`.
pub fn one_line(s: &str) -> String {
    sanitize(s).replace('\n', " ⏎ ")
}

/// Cuts `s` to at most `max` columns, ending in `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if width(s) <= max {
        return s.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut w = 0;
    for g in s.graphemes(true) {
        let gw = grapheme_width(g);
        if w + gw > max - 1 {
            break;
        }
        w += gw;
        out.push_str(g);
    }
    out.push('…');
    out
}

/// Pads (or truncates) to exactly `cols` columns.
pub fn fit(s: &str, cols: usize) -> String {
    let mut t = truncate(s, cols);
    let w = width(&t);
    t.extend(std::iter::repeat_n(' ', cols.saturating_sub(w)));
    t
}

/// Wraps `text` (which may hold newlines) into lines of at most `cols`
/// columns: at spaces where it can, inside a word where the word is longer
/// than a line. Always at least one line; `cols` of 0 is taken as 1.
pub fn wrap(text: &str, cols: usize) -> Vec<String> {
    let cols = cols.max(1);
    let mut out = Vec::new();
    for para in text.split('\n') {
        let mut line = String::new();
        let mut w = 0;
        for word in para.split_word_bounds() {
            let ww = width(word);
            if w + ww <= cols {
                line.push_str(word);
                w += ww;
                continue;
            }
            if word.trim().is_empty() {
                // A space at the end of a line is dropped.
                out.push(std::mem::take(&mut line));
                w = 0;
                continue;
            }
            if ww <= cols && w > 0 {
                out.push(std::mem::take(&mut line));
                line.push_str(word);
                w = ww;
                continue;
            }
            for g in word.graphemes(true) {
                let gw = grapheme_width(g);
                if w + gw > cols && w > 0 {
                    out.push(std::mem::take(&mut line));
                    w = 0;
                }
                line.push_str(g);
                w += gw;
            }
        }
        out.push(line);
    }
    out
}

/// The compose box: a multi-line text with a cursor between graphemes.
#[derive(Debug, Default, Clone)]
pub struct Editor {
    text: String,
    /// Byte offset, always on a grapheme boundary.
    cursor: usize,
}

impl Editor {
    pub fn with_text(text: &str) -> Editor {
        Editor { text: text.to_string(), cursor: text.len() }
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// Takes the text out, leaving the editor empty.
    pub fn take(&mut self) -> String {
        self.cursor = 0;
        std::mem::take(&mut self.text)
    }

    pub fn set(&mut self, text: &str) {
        self.text = text.to_string();
        self.cursor = self.text.len();
    }

    pub fn insert_char(&mut self, c: char) {
        if c.is_control() && c != '\n' {
            return;
        }
        self.text.insert(self.cursor, c);
        self.cursor += c.len_utf8();
    }

    /// Inserts pasted text: line ends become `\n`, other control
    /// characters are dropped, tabs become spaces.
    pub fn insert_str(&mut self, s: &str) {
        let s = s.replace("\r\n", "\n").replace('\r', "\n").replace('\t', "    ");
        let clean: String = s.chars().filter(|c| !c.is_control() || *c == '\n').collect();
        self.text.insert_str(self.cursor, &clean);
        self.cursor += clean.len();
    }

    fn prev_boundary(&self) -> Option<usize> {
        self.text[..self.cursor].grapheme_indices(true).next_back().map(|(i, _)| i)
    }

    fn next_boundary(&self) -> Option<usize> {
        self.text[self.cursor..].graphemes(true).next().map(|g| self.cursor + g.len())
    }

    pub fn backspace(&mut self) {
        if let Some(i) = self.prev_boundary() {
            self.text.replace_range(i..self.cursor, "");
            self.cursor = i;
        }
    }

    pub fn delete(&mut self) {
        if let Some(j) = self.next_boundary() {
            self.text.replace_range(self.cursor..j, "");
        }
    }

    /// Deletes the word before the cursor (Ctrl+W).
    pub fn delete_word(&mut self) {
        let before = &self.text[..self.cursor];
        let trimmed = before.trim_end();
        // After the last space, however many bytes that space takes (U+3000, NBSP).
        let start = trimmed.char_indices().rev().find(|(_, c)| c.is_whitespace()).map_or(0, |(i, c)| i + c.len_utf8());
        self.text.replace_range(start..self.cursor, "");
        self.cursor = start;
    }

    pub fn left(&mut self) {
        if let Some(i) = self.prev_boundary() {
            self.cursor = i;
        }
    }

    pub fn right(&mut self) {
        if let Some(j) = self.next_boundary() {
            self.cursor = j;
        }
    }

    fn line_start(&self) -> usize {
        self.text[..self.cursor].rfind('\n').map_or(0, |i| i + 1)
    }

    fn line_end(&self) -> usize {
        self.text[self.cursor..].find('\n').map_or(self.text.len(), |i| self.cursor + i)
    }

    pub fn home(&mut self) {
        self.cursor = self.line_start();
    }

    pub fn end(&mut self) {
        self.cursor = self.line_end();
    }

    /// Whether the cursor is on the first / last logical line.
    pub fn on_first_line(&self) -> bool {
        !self.text[..self.cursor].contains('\n')
    }

    pub fn on_last_line(&self) -> bool {
        !self.text[self.cursor..].contains('\n')
    }

    /// Moves to the line above, keeping the column where it can.
    pub fn up(&mut self) {
        let start = self.line_start();
        if start == 0 {
            return;
        }
        let col = width(&self.text[start..self.cursor]);
        let prev_start = self.text[..start - 1].rfind('\n').map_or(0, |i| i + 1);
        self.cursor = prev_start + column_offset(&self.text[prev_start..start - 1], col);
    }

    /// Moves to the line below, keeping the column where it can.
    pub fn down(&mut self) {
        let end = self.line_end();
        if end == self.text.len() {
            return;
        }
        let col = width(&self.text[self.line_start()..self.cursor]);
        let next_start = end + 1;
        let next_end = self.text[next_start..].find('\n').map_or(self.text.len(), |i| next_start + i);
        self.cursor = next_start + column_offset(&self.text[next_start..next_end], col);
    }

    /// The text laid out in `cols` columns (hard-wrapped by grapheme, so the
    /// cursor can sit anywhere), with the cursor's (row, column).
    pub fn layout(&self, cols: usize) -> (Vec<String>, (usize, usize)) {
        let cols = cols.max(2);
        let mut lines = vec![String::new()];
        let mut w = 0;
        let mut cur = (0, 0);
        let mut offset = 0;
        for g in self.text.graphemes(true) {
            if offset == self.cursor {
                cur = (lines.len() - 1, w);
            }
            offset += g.len();
            if g == "\n" {
                lines.push(String::new());
                w = 0;
                continue;
            }
            // Drawn as the conversation draws it (emoji sequences as parts),
            // so the cursor stays where the terminal puts the text.
            let shown: String = g.chars().filter(|c| !is_sequence_glue(*c)).collect();
            let gw = width(&shown);
            // Leave the last column for the cursor at the end of a full line.
            if w + gw > cols - 1 {
                lines.push(String::new());
                w = 0;
            }
            lines.last_mut().expect("never empty").push_str(&shown);
            w += gw;
        }
        if self.cursor >= self.text.len() {
            cur = (lines.len() - 1, w);
        }
        (lines, cur)
    }
}

/// The byte offset in `line` of the grapheme at display column `col`.
fn column_offset(line: &str, col: usize) -> usize {
    let mut w = 0;
    for (i, g) in line.grapheme_indices(true) {
        if w >= col {
            return i;
        }
        w += grapheme_width(g);
    }
    line.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_of_wide_characters_and_emoji() {
        assert_eq!(width("abc"), 3);
        assert_eq!(width("你好"), 4);
        assert_eq!(width("café"), 4);
        assert_eq!(width("e\u{301}"), 1, "a combining accent takes no cell");
        assert_eq!(width("👍"), 2);
        assert_eq!(width("ｆｕｌｌ"), 8);
    }

    #[test]
    fn wrapping_respects_columns() {
        assert_eq!(wrap("hello world foo", 11), ["hello world", "foo"]);
        assert_eq!(wrap("你好世界你好", 5), ["你好", "世界", "你好"]);
        assert_eq!(wrap("abcdefghij", 4), ["abcd", "efgh", "ij"]);
        assert_eq!(wrap("a\n\nb", 10), ["a", "", "b"]);
        assert_eq!(wrap("", 10), [""]);
        for line in wrap(&"长".repeat(10_000), 37) {
            assert!(width(&line) <= 37);
        }
        // Width 1 cannot hold a wide character; it still terminates.
        assert_eq!(wrap("你好", 1), ["你", "好"]);
    }

    #[test]
    fn truncation_and_sanitizing() {
        assert_eq!(truncate("你好世界", 5), "你好…");
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(fit("你", 4), "你  ");
        assert_eq!(sanitize("a\x1b[2Jb\r\n\tc"), "a\u{fffd}[2Jb\n    c");
        // Sequences drawn as their parts, each of a width every terminal agrees on.
        assert_eq!(sanitize("👨\u{200d}👩\u{200d}👧 👋\u{1f3fd} 1\u{fe0f}\u{20e3}"), "👨👩👧 👋 1");
    }

    #[test]
    fn editor_moves_by_grapheme_and_line() {
        let mut e = Editor::default();
        for c in "你好👍e\u{301}".chars() {
            e.insert_char(c);
        }
        e.backspace();
        assert_eq!(e.text(), "你好👍", "a grapheme (e + accent) is removed whole");
        e.left();
        e.insert_char('!');
        assert_eq!(e.text(), "你好!👍");
        e.home();
        e.insert_str("line1\r\nline2 ");
        assert_eq!(e.text(), "line1\nline2 你好!👍");
        e.up();
        e.end();
        e.insert_char('X');
        assert_eq!(e.text(), "line1X\nline2 你好!👍");
        e.down();
        e.delete_word();
        assert_eq!(e.text(), "line1X\n你好!👍");
        assert_eq!(e.take(), "line1X\n你好!👍");
        assert!(e.is_empty());
        // Ctrl+W after a multi-byte space (ideographic, no-break).
        let mut e = Editor::with_text("你好\u{3000}世界");
        e.delete_word();
        assert_eq!(e.text(), "你好\u{3000}");
        let mut e = Editor::with_text("a\u{a0}b");
        e.delete_word();
        assert_eq!(e.text(), "a\u{a0}");
    }

    #[test]
    fn editor_layout_places_the_cursor_in_columns() {
        let e = Editor::with_text("你好世界");
        let (lines, cur) = e.layout(5);
        assert_eq!(lines, ["你好", "世界"]);
        assert_eq!(cur, (1, 4));
        // A joined family is drawn (and counted) as its three parts.
        let (lines, cur) = Editor::with_text("a👨\u{200d}👩\u{200d}👧b").layout(40);
        assert_eq!((lines[0].as_str(), cur), ("a👨👩👧b", (0, 8)));
        let mut e = Editor::with_text("ab\ncd");
        e.up();
        assert_eq!(e.layout(10).1, (0, 2));
    }
}
