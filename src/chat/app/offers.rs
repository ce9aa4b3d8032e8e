//! What can be done to a message that came: accepting its offer (into the
//! download folder, or a folder asked for), declining it, following the
//! fetch's progress — and opening it when it came sealed.

use std::path::PathBuf;

use super::{split_key, Action, App, Dir, FetchUpdate, Item, Level, Msg, OfferState, Prompt, PromptKind};
use crate::chat::text::{self, Editor};

impl App {
    /// Progress of the fetch of a peer's offer.
    pub fn on_fetch(&mut self, key: &str, packet_no: &str, u: FetchUpdate) {
        let state = match u {
            FetchUpdate::Progress { name, done, total, bytes_per_sec } => {
                OfferState::Fetching { name, done, total, bytes_per_sec }
            }
            FetchUpdate::Failed { error } => {
                self.set_status(format!("fetch failed: {error}"), Level::Error);
                OfferState::Failed { error }
            }
            FetchUpdate::Finished { paths } => {
                self.set_status(format!("saved {}", paths.join(", ")), Level::Info);
                OfferState::Done { paths }
            }
        };
        self.for_incoming(key, packet_no, |m| {
            if let Some(o) = &mut m.offer {
                o.state = state.clone();
            }
        });
    }

    /// Applies `f` to every copy (peer, group, Everyone) of a message that came.
    fn for_incoming(&mut self, from: &str, packet_no: &str, mut f: impl FnMut(&mut Msg)) {
        for c in self.convs.values_mut() {
            for i in &mut c.items {
                if let Item::Msg(m) = i {
                    if m.dir == Dir::In && m.from == from && m.packet_no == packet_no {
                        f(m);
                    }
                }
            }
        }
    }

    /// The message selected in the open conversation.
    fn selected_msg(&self) -> Option<&Msg> {
        let c = self.current_conv()?;
        match c.items.get(c.selected?) {
            Some(Item::Msg(m)) => Some(m),
            _ => None,
        }
    }

    /// Accepts (fetches) the offer of the selected message.
    pub(super) fn accept(&mut self) {
        let Some(m) = self.selected_msg().cloned() else { return };
        self.accept_into(m, None);
    }

    /// Asks where to save the selected message's offer, then fetches it there.
    pub(super) fn save_to(&mut self) {
        let Some(m) = self.selected_msg().cloned() else { return };
        if m.offer.is_none() || m.dir == Dir::Out {
            return self.accept(); // says why not
        }
        let dir = self.download_dir.as_ref().map(|d| self.shorten(d)).unwrap_or_default();
        self.prompt = Some(Prompt {
            kind: PromptKind::SaveTo,
            editor: Editor::with_text(&dir),
            candidates: Vec::new(),
            offer: Some((m.from.clone(), m.packet_no.clone())),
        });
    }

    /// The save-to prompt's answer (`value`, trimmed): the folder to fetch
    /// its offer into (empty: the download folder); a file is refused.
    pub(super) fn save_to_answered(&mut self, p: Prompt, value: String) {
        let Some((from, no)) = &p.offer else { return };
        let into = if value.is_empty() { None } else { Some(self.expand(&value)) };
        if let Some(d) = into.as_ref().filter(|d| self.files.stat(d).is_some_and(|s| !s.dir)) {
            self.set_status(format!("{} is a file: give a folder", d.display()), Level::Error);
            self.prompt = Some(p);
            return;
        }
        let msg = self.current_conv().and_then(|c| {
            c.items.iter().find_map(|i| match i {
                Item::Msg(m) if &m.from == from && &m.packet_no == no && m.dir == Dir::In => Some(m.clone()),
                _ => None,
            })
        });
        if let Some(m) = msg {
            self.accept_into(m, into);
        }
    }

    fn accept_into(&mut self, m: Msg, into: Option<PathBuf>) {
        let Some(o) = &m.offer else {
            return self.set_status("this message offers no files", Level::Info);
        };
        if m.dir == Dir::Out {
            return self.set_status("you offered these files", Level::Info);
        }
        match o.state {
            OfferState::Fetching { .. } => return,
            OfferState::Declined => {
                return self.set_status("you declined this offer (the sender was told)", Level::Info)
            }
            _ => {}
        }
        let (addr, client) = match self.peer(&m.from) {
            Some(p) => (p.addr.clone(), p.client.clone()),
            None => return self.set_status("the sender is unknown", Level::Error),
        };
        if let Some(p) = self.peer(&m.from).filter(|p| !p.online) {
            let name = text::one_line(p.name());
            self.set_status(format!("{name} is offline; trying anyway"), Level::Info);
        }
        self.actions.push(Action::Fetch {
            key: m.from.clone(),
            packet_no: m.packet_no.clone(),
            addr,
            command: m.command,
            client,
            files: o.files.clone(),
            into,
        });
        let total = o.files.iter().fold(0u64, |t, f| t.saturating_add(f.size));
        let name = o.files.first().map(|f| f.name.clone()).unwrap_or_default();
        self.on_fetch(&m.from, &m.packet_no, FetchUpdate::Progress { name, done: 0, total, bytes_per_sec: 0.0 });
        self.status = None;
    }

    /// Declines the selected message's offer (the sender is told).
    pub(super) fn decline(&mut self) {
        let Some(m) = self.selected_msg().cloned() else { return };
        let Some(o) = &m.offer else { return };
        if m.dir == Dir::Out || !matches!(o.state, OfferState::Pending | OfferState::Failed { .. }) {
            return;
        }
        let (user, host) = split_key(&m.from);
        self.actions.push(Action::Decline {
            user: user.to_string(),
            host: host.to_string(),
            packet_no: m.packet_no.clone(),
        });
        self.for_incoming(&m.from, &m.packet_no, |x| {
            if let Some(o) = &mut x.offer {
                o.state = OfferState::Declined;
            }
        });
    }

    /// Opens the selected sealed message (the sender gets a read receipt).
    pub(super) fn open_sealed(&mut self) {
        let Some(m) = self.selected_msg().cloned() else { return };
        if !m.is_closed() {
            return;
        }
        let (user, host) = split_key(&m.from);
        let read_check = m.command == 0 || pigeon_protocol::Command(m.command).has(pigeon_protocol::Opts::READCHECKOPT);
        self.actions.push(Action::Open {
            user: user.to_string(),
            host: host.to_string(),
            packet_no: m.packet_no.clone(),
            read_check,
        });
        self.for_incoming(&m.from, &m.packet_no, |x| x.opened = true);
    }
}
