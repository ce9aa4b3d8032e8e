//! The keyboard, the mouse and pastes: global keys first, then those of
//! the prompt or of the part of the screen that has the focus (the peer
//! list, the conversation, the compose box).

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEvent, MouseEventKind};
use ratatui::layout::Rect;

use super::{Action, App, ConvKey, Focus, Item, Level, Prompt, PromptKind, Row};
use crate::chat::text::Editor;

impl App {
    /// Pasted text (bracketed paste): into the prompt or the compose box.
    pub fn on_paste(&mut self, s: &str) {
        if let Some(p) = &mut self.prompt {
            p.editor.insert_str(&s.replace(['\n', '\r'], " "));
            return;
        }
        if self.focus == Focus::Peers {
            self.focus = Focus::Compose;
        }
        self.editor.insert_str(s);
    }

    pub fn on_key(&mut self, k: KeyEvent) {
        if k.kind == KeyEventKind::Release {
            return;
        }
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        // A message read for a while goes at the next key.
        if self.status_at.is_some_and(|t| t.elapsed() >= std::time::Duration::from_secs(5)) {
            self.status = None;
            self.status_at = None;
        }
        if self.help {
            self.help = false;
            return;
        }
        if ctrl && matches!(k.code, KeyCode::Char('q')) {
            self.quit();
            return;
        }
        if self.prompt.is_some() {
            return self.prompt_key(k);
        }
        match (k.code, ctrl) {
            (KeyCode::Char('c'), true) => {
                if self.focus == Focus::Compose && !self.editor.is_empty() {
                    self.editor.take();
                } else {
                    self.quit();
                }
                return;
            }
            (KeyCode::F(1), _) => {
                self.help = true;
                return;
            }
            (KeyCode::F(5), _) => {
                self.actions.push(Action::Refresh);
                self.set_status("refreshing: peers that do not answer within 10 s go offline", Level::Info);
                return;
            }
            (KeyCode::Tab | KeyCode::BackTab, _) => {
                // Peers → compose → conversation → peers; Shift+Tab backwards.
                const ORDER: [Focus; 3] = [Focus::Peers, Focus::Compose, Focus::Conversation];
                let i = ORDER.iter().position(|f| *f == self.focus).unwrap_or(0);
                let step = if k.code == KeyCode::Tab { 1 } else { 2 };
                self.focus = ORDER[(i + step) % 3];
                if self.focus == Focus::Conversation {
                    self.select_newest_actionable();
                }
                return;
            }
            (KeyCode::Char('f'), true) => {
                if self.marked.is_empty() && self.current == ConvKey::Everyone {
                    self.set_status("files go to a peer, a group or marked peers: open one first", Level::Error);
                    return;
                }
                self.prompt = Some(Prompt {
                    kind: PromptKind::File,
                    editor: Editor::default(),
                    candidates: Vec::new(),
                    offer: None,
                });
                return;
            }
            (KeyCode::Char('a'), true) => {
                if self.me.away.is_some() {
                    self.me.away = None;
                    self.actions.push(Action::SetAway(None));
                    self.set_status("back online", Level::Info);
                } else {
                    let text = self.last_away.clone().unwrap_or_else(|| "Not at my desk".into());
                    self.prompt = Some(Prompt {
                        kind: PromptKind::Away,
                        editor: Editor::with_text(&text),
                        candidates: Vec::new(),
                        offer: None,
                    });
                }
                return;
            }
            (KeyCode::Char('g'), true) => {
                // Ctrl-G, the bell: FeiQ's window shake, to the open peer.
                match &self.current {
                    ConvKey::Peer(k) => {
                        self.actions.push(Action::Shake(k.clone()));
                        self.set_status(
                            "shake sent (FeiQ shakes its window; other clients may ignore it)",
                            Level::Info,
                        );
                    }
                    _ => self.set_status("a shake goes to one peer: open its conversation first", Level::Error),
                }
                return;
            }
            (KeyCode::Char('s'), true) => {
                self.sealed = !self.sealed;
                return;
            }
            (KeyCode::PageUp, _) => return self.scroll(self.page() as isize),
            (KeyCode::PageDown, _) => return self.scroll(-(self.page() as isize)),
            _ => {}
        }
        match self.focus {
            Focus::Peers => self.peers_key(k),
            Focus::Conversation => self.conversation_key(k),
            Focus::Compose => self.compose_key(k),
        }
    }

    /// Quits. Unsent text is kept: the drafts are saved on the way out.
    fn quit(&mut self) {
        self.quit = true;
        self.actions.push(Action::Quit);
    }

    fn page(&self) -> usize {
        (self.areas.conversation.height as usize).saturating_sub(3).max(1)
    }

    fn peers_key(&mut self, k: KeyEvent) {
        match k.code {
            KeyCode::Up => self.move_selection(-1),
            KeyCode::Down => self.move_selection(1),
            KeyCode::Home => self.move_selection(-1_000_000),
            KeyCode::End => self.move_selection(1_000_000),
            KeyCode::Enter | KeyCode::Right => {
                let rows = self.rows();
                if let Some(row) = rows.get(self.selected_index(&rows)).cloned() {
                    // Choosing a conversation ends a marked selection (Tab
                    // goes to the compose box with the marks kept).
                    if !self.marked.is_empty() {
                        self.marked.clear();
                        self.set_status("marks cleared", Level::Info);
                    }
                    self.open_row(&row);
                    self.focus = Focus::Compose;
                }
            }
            KeyCode::Char(' ') => self.toggle_mark(),
            KeyCode::Char('?') => self.help = true,
            KeyCode::Esc => {
                if !self.filter.is_empty() {
                    self.filter.clear();
                } else {
                    self.marked.clear();
                }
            }
            KeyCode::Backspace => {
                self.filter.pop();
            }
            KeyCode::Char(c) if !k.modifiers.intersects(KeyModifiers::CONTROL | KeyModifiers::ALT) => {
                self.filter.push(c);
                // Select the first peer that matches.
                if let Some(first) = self.rows().into_iter().find(|r| matches!(r, Row::Peer(_))) {
                    self.selected = first;
                }
            }
            _ => {}
        }
    }

    fn select_newest_actionable(&mut self) {
        let Some(c) = self.convs.get_mut(&self.current) else { return };
        let newest = c.items.iter().rposition(|i| matches!(i, Item::Msg(m) if m.actionable()));
        c.selected = newest.or(c.items.len().checked_sub(1));
        c.scroll = 0;
    }

    fn conversation_key(&mut self, k: KeyEvent) {
        let conv = self.current.clone();
        let c = self.conv_mut(&conv);
        let last = c.items.len().checked_sub(1);
        match k.code {
            KeyCode::Up | KeyCode::Char('k') => {
                c.selected = match (c.selected, last) {
                    (Some(i), _) => Some(i.saturating_sub(1)),
                    (None, l) => l,
                }
            }
            KeyCode::Down | KeyCode::Char('j') => {
                c.selected = match (c.selected, last) {
                    (Some(i), Some(l)) => Some((i + 1).min(l)),
                    (None, l) => l,
                    (s, None) => s,
                }
            }
            KeyCode::Home => c.selected = last.map(|_| 0),
            KeyCode::End => {
                c.selected = last;
                c.scroll = 0;
            }
            KeyCode::Enter | KeyCode::Char('o') => self.open_sealed(),
            KeyCode::Char('a') => self.accept(),
            KeyCode::Char('s') => self.save_to(),
            KeyCode::Char('d') => self.decline(),
            KeyCode::Char('?') => self.help = true,
            KeyCode::Esc => {
                // Out to the peer list, where typing filters.
                c.selected = None;
                self.focus = Focus::Peers;
            }
            _ => {}
        }
    }

    fn compose_key(&mut self, k: KeyEvent) {
        let alt = k.modifiers.contains(KeyModifiers::ALT);
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        let shift = k.modifiers.contains(KeyModifiers::SHIFT);
        let e = &mut self.editor;
        match k.code {
            KeyCode::Enter if alt || shift || ctrl => e.insert_char('\n'),
            KeyCode::Char('j') if ctrl => e.insert_char('\n'),
            KeyCode::Enter => {
                let text = e.text().trim_end().to_string();
                if text.trim().is_empty() {
                    return;
                }
                e.take();
                self.send(text, Vec::new());
            }
            KeyCode::Char('u') if ctrl => {
                e.take();
            }
            KeyCode::Char('w') if ctrl => e.delete_word(),
            KeyCode::Char(c) if !ctrl => e.insert_char(c),
            KeyCode::Backspace => e.backspace(),
            KeyCode::Delete => e.delete(),
            KeyCode::Left => e.left(),
            KeyCode::Right => e.right(),
            KeyCode::Home => e.home(),
            KeyCode::End => e.end(),
            // PgUp/PgDn scroll; the arrows stay in the text.
            KeyCode::Up if e.on_first_line() => e.home(),
            KeyCode::Down if e.on_last_line() => e.end(),
            KeyCode::Up => e.up(),
            KeyCode::Down => e.down(),
            KeyCode::Esc => self.focus = Focus::Peers,
            _ => {}
        }
    }

    fn prompt_key(&mut self, k: KeyEvent) {
        // An older message does not belong to what is typed now.
        if !matches!(self.status, Some((_, Level::Incoming))) {
            self.status = None;
        }
        let Some(p) = &mut self.prompt else { return };
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        match k.code {
            KeyCode::Esc => self.prompt = None,
            KeyCode::Char('c') if ctrl => self.prompt = None,
            KeyCode::Enter => {
                let p = self.prompt.take().expect("checked");
                let value = p.editor.text().trim().to_string();
                match p.kind {
                    PromptKind::Away => {
                        let text = if value.is_empty() { "Not at my desk".to_string() } else { value };
                        self.me.away = Some(text.clone());
                        self.last_away = Some(text.clone());
                        self.actions.push(Action::SetAway(Some(text)));
                        self.set_status("away (Ctrl+A to come back)", Level::Info);
                    }
                    PromptKind::SaveTo => self.save_to_answered(p, value),
                    PromptKind::File => self.file_answered(p, value),
                }
            }
            KeyCode::Tab if matches!(p.kind, PromptKind::File | PromptKind::SaveTo) => {
                let typed = p.editor.text().to_string();
                let (completed, candidates) = self.files.complete(&typed, self.home_dir.as_deref());
                let p = self.prompt.as_mut().expect("checked");
                p.editor.set(&completed);
                p.candidates = candidates;
            }
            KeyCode::Char(c) if !ctrl => p.editor.insert_char(c),
            KeyCode::Char('u') if ctrl => {
                p.editor.take();
            }
            KeyCode::Char('w') if ctrl => p.editor.delete_word(),
            KeyCode::Backspace => p.editor.backspace(),
            KeyCode::Delete => p.editor.delete(),
            KeyCode::Left => p.editor.left(),
            KeyCode::Right => p.editor.right(),
            KeyCode::Home => p.editor.home(),
            KeyCode::End => p.editor.end(),
            _ => {}
        }
    }

    pub fn on_mouse(&mut self, m: MouseEvent) {
        let inside = |r: Rect| m.column >= r.x && m.column < r.x + r.width && m.row >= r.y && m.row < r.y + r.height;
        match m.kind {
            MouseEventKind::ScrollUp if inside(self.areas.conversation) => self.scroll(3),
            MouseEventKind::ScrollDown if inside(self.areas.conversation) => self.scroll(-3),
            MouseEventKind::ScrollUp if inside(self.areas.peers) => self.move_selection(-1),
            MouseEventKind::ScrollDown if inside(self.areas.peers) => self.move_selection(1),
            MouseEventKind::Down(_) if inside(self.areas.peers) => {
                // Row 0 of the area is its border/title.
                let line = (m.row - self.areas.peers.y) as usize;
                if line == 0 || line + 1 >= self.areas.peers.height as usize {
                    return; // the borders
                }
                let rows = self.rows();
                if let Some(row) = rows.get(self.areas.peer_offset + line - 1).cloned() {
                    self.selected = row.clone();
                    self.open_row(&row);
                    self.focus = Focus::Compose;
                }
            }
            MouseEventKind::Down(_) if inside(self.areas.compose) => self.focus = Focus::Compose,
            MouseEventKind::Down(_) if inside(self.areas.conversation) => {
                self.focus = Focus::Conversation;
                self.select_newest_actionable();
            }
            _ => {}
        }
    }
}
