//! Composing and sending: who the compose box sends to, our messages
//! shown as they are sent (one entry per marked peer, one for a group or
//! everyone), the send actions (each remembered until its `sent` event
//! claims it), the file prompt's send, and each conversation's draft.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::Utc;

use super::events::OwnSend;
use super::{group_name, Action, App, ConvKey, Dir, FileInfo, Item, Level, Msg, Offer, OfferState, Prompt, Recipient};
use crate::chat::text;
use crate::engine::Delivery;

impl App {
    /// Who the compose box sends to, in words.
    pub fn target_label(&self) -> String {
        if !self.marked.is_empty() {
            let names: Vec<String> =
                self.marked.iter().map(|k| text::one_line(self.peer(k).map_or(k.as_str(), |p| p.name()))).collect();
            return format!("{} marked: {}", names.len(), names.join(", "));
        }
        match &self.current {
            ConvKey::Everyone => "everyone (broadcast, no receipts)".into(),
            ConvKey::Group(g) => format!("group {} ({} online)", group_name(g), self.group_online(g)),
            ConvKey::Peer(k) => match self.peer(k) {
                Some(p) if p.online => text::one_line(p.name()),
                Some(p) => format!("{} (offline: queued until back)", text::one_line(p.name())),
                None => text::one_line(k),
            },
        }
    }

    /// A message of ours, with this chat's next tag.
    pub(super) fn new_out(&mut self, text: String, sealed: bool, offer: Option<Offer>) -> Msg {
        let tag = self.next_tag;
        self.next_tag += 1;
        Msg {
            dir: Dir::Out,
            from: String::new(),
            nick: self.me.nick.clone(),
            time: Utc::now(),
            text,
            sealed,
            opened: false,
            broadcast: false,
            auto: false,
            command: 0,
            packet_no: String::new(),
            recipients: Vec::new(),
            to_group: false,
            offer,
            tag,
            error: None,
            security: None,
        }
    }

    /// A recipient of a send not answered yet.
    pub(super) fn recipient(key: &str) -> Recipient {
        Recipient { key: key.to_string(), id: None, packet_no: None, state: Delivery::Sending }
    }

    /// Sends text and/or files to the compose target.
    pub(super) fn send(&mut self, text: String, files: Vec<String>) {
        let offer = (!files.is_empty()).then(|| Offer {
            files: files
                .iter()
                .map(|f| {
                    let stat = self.files.stat(Path::new(f));
                    FileInfo {
                        id: 0,
                        name: Path::new(f).file_name().map_or(f.clone(), |n| n.to_string_lossy().into_owned()),
                        size: stat.map_or(0, |s| s.size),
                        mtime: 0,
                        dir: stat.is_some_and(|s| s.dir),
                    }
                })
                .collect(),
            state: OfferState::Pending,
        });
        let sealed = self.sealed;
        let mut msg = self.new_out(text.clone(), sealed, offer);
        let tag = msg.tag;
        if !self.marked.is_empty() {
            let keys: Vec<String> = self.marked.iter().cloned().collect();
            for k in &keys {
                let mut m = msg.clone();
                m.recipients = vec![Self::recipient(k)];
                self.push(&ConvKey::Peer(k.clone()), Item::Msg(m));
            }
            self.send_action(Action::Send { tag, to: keys, text, sealed, files });
            return;
        }
        match self.current.clone() {
            ConvKey::Everyone => {
                if !files.is_empty() {
                    self.set_status("files go to a peer, a group or marked peers, not to everyone", Level::Error);
                    return;
                }
                msg.broadcast = true;
                self.push(&ConvKey::Everyone, Item::Msg(msg));
                self.send_action(Action::Broadcast { tag, text });
            }
            ConvKey::Group(g) => {
                msg.to_group = true;
                self.push(&ConvKey::Group(g.clone()), Item::Msg(msg));
                self.send_action(Action::Send { tag, to: vec![format!("group:{g}")], text, sealed, files });
            }
            ConvKey::Peer(k) => {
                msg.recipients = vec![Self::recipient(&k)];
                self.push(&ConvKey::Peer(k.clone()), Item::Msg(msg));
                self.send_action(Action::Send { tag, to: vec![k], text, sealed, files });
            }
        }
    }

    /// The file prompt's answer (`value`, trimmed): the file or folder to
    /// send; one that does not exist is refused (the prompt stays, to
    /// correct it).
    pub(super) fn file_answered(&mut self, p: Prompt, value: String) {
        if value.is_empty() {
            return;
        }
        let path = self.expand(&value);
        if self.files.stat(&path).is_none() {
            self.set_status(format!("{} does not exist", path.display()), Level::Error);
            self.prompt = Some(p); // to correct it
            return;
        }
        let path = path.to_string_lossy().into_owned();
        self.send(String::new(), vec![path]);
    }

    fn send_action(&mut self, a: Action) {
        let own = match &a {
            Action::Send { tag, to, text, .. } => {
                // A group's members are known from the node's answer only.
                let mut to = to.clone();
                to.sort();
                let to = (!to.iter().any(|t| t.starts_with("group:"))).then_some(to);
                OwnSend { tag: *tag, text: text.clone(), broadcast: false, to }
            }
            Action::Broadcast { tag, text } => OwnSend { tag: *tag, text: text.clone(), broadcast: true, to: None },
            _ => return self.actions.push(a),
        };
        if self.own_unclaimed.len() >= 256 {
            self.own_unclaimed.remove(0);
        }
        self.own_unclaimed.push(own);
        self.actions.push(a);
    }

    /// Every conversation's unsent text (the open one's is in the compose
    /// box), by conversation: what is saved when the chat ends.
    pub fn drafts(&self) -> BTreeMap<String, String> {
        let mut out: BTreeMap<String, String> = self
            .convs
            .iter()
            .filter(|(k, c)| **k != self.current && !c.draft.is_empty())
            .map(|(k, c)| (draft_key(k), c.draft.clone()))
            .collect();
        if !self.editor.is_empty() {
            out.insert(draft_key(&self.current), self.editor.text().to_string());
        }
        out
    }

    /// Puts saved drafts back (the open conversation's into the compose box).
    pub fn restore_drafts(&mut self, drafts: &BTreeMap<String, String>) {
        for (k, text) in drafts {
            let Some(conv) = conv_from_draft_key(k) else { continue };
            if conv == self.current {
                self.editor.set(text);
            } else {
                self.conv_mut(&conv).draft = text.clone();
            }
        }
    }
}

/// A conversation's name in the drafts file.
fn draft_key(conv: &ConvKey) -> String {
    match conv {
        ConvKey::Everyone => "everyone".into(),
        ConvKey::Group(g) => format!("group:{g}"),
        ConvKey::Peer(k) => format!("peer:{k}"),
    }
}

fn conv_from_draft_key(k: &str) -> Option<ConvKey> {
    if k == "everyone" {
        return Some(ConvKey::Everyone);
    }
    if let Some(g) = k.strip_prefix("group:") {
        return Some(ConvKey::Group(g.to_string()));
    }
    k.strip_prefix("peer:").filter(|p| p.contains('@')).map(|p| ConvKey::Peer(p.to_string()))
}
