//! Applying what the node says: the events of the control API's `listen`
//! stream (peers, messages, our sends, receipts, shakes, keys…) and the
//! answers to our requests — and reconciling our own sends with them: a
//! send is shown when it is made, its answer gives each recipient its id,
//! and its `sent` event (which may come before the answer) and receipts
//! (which may come before the id is known) are matched to it, never shown
//! twice.

use chrono::{DateTime, Utc};

use super::{Action, App, ConvKey, Dir, FileInfo, Item, Level, Msg, Offer, OfferState, Recipient};
use crate::chat::text;
use crate::control::api;
use crate::engine::Delivery;

/// A send of this chat, until its `sent` event comes.
#[derive(Clone, Debug)]
pub(super) struct OwnSend {
    pub(super) tag: u64,
    pub(super) text: String,
    pub(super) broadcast: bool,
    /// The recipients, sorted; `None` for a group (known from the answer).
    pub(super) to: Option<Vec<String>>,
}

impl App {
    /// One event of the control API's `listen` stream.
    pub fn on_event(&mut self, e: &api::Event) {
        use api::Event as E;
        match e {
            E::PeerOnline { peer } | E::PeerChanged { peer } => {
                self.upsert_peer(peer, true);
            }
            E::PeerOffline { peer } => {
                if let Some(k) = self.upsert_peer(peer, false) {
                    self.marked.remove(&k);
                }
            }
            E::Away { away } => {
                // Set by any client of the node (a script, another chat).
                self.me.away = away.clone();
                if self.me.away.is_some() {
                    self.last_away = self.me.away.clone();
                }
            }
            E::Message(m) => self.on_message(m),
            // The offer line repeats its message: shown once.
            E::Offer(_) => {}
            E::Sent(m) => self.on_sent(m),
            E::Receipt { id, peer, packet_no: no, status: state } => {
                let (id, state) = (*id, *state);
                let mut found = false;
                for m in self.out_msgs_mut() {
                    for r in &mut m.recipients {
                        if r.id == Some(id) || (r.key == *peer && r.packet_no.as_deref() == Some(no)) {
                            r.id = Some(id);
                            r.packet_no = Some(no.to_string());
                            // A read receipt is final; a late "delivered" does not undo it.
                            if r.state != Delivery::Read {
                                r.state = state;
                            }
                            found = true;
                        }
                    }
                }
                if !found {
                    self.early.insert(id, (no.to_string(), state));
                    if self.early.len() > 10_000 {
                        self.early.clear();
                    }
                }
            }
            E::Read { peer, packet_no: no } => {
                for m in self.out_msgs_mut() {
                    for r in &mut m.recipients {
                        if r.key == *peer && r.packet_no.as_deref() == Some(no) {
                            r.state = Delivery::Read;
                        }
                    }
                }
            }
            E::Shake { from } => {
                let Some(key) = self.upsert_peer(from, true) else { return };
                let nick = text::one_line(self.peer(&key).map_or("?", |p| p.name()));
                let what = format!("{nick} shook your window");
                self.push(&ConvKey::Peer(key.clone()), Item::Notice { time: Utc::now(), text: what.clone() });
                self.incoming(&key, &what, false);
            }
            E::KeyChanged { peer: key, fingerprint } => {
                let nick = text::one_line(self.peer(key).map_or(key.as_str(), |p| p.name())).to_string();
                let what = format!(
                    "{nick} gave a NEW public key ({fingerprint}): compare fingerprints with them, then `pigeon keys --trust {key}`"
                );
                self.push(&ConvKey::Peer(key.clone()), Item::Notice { time: Utc::now(), text: what.clone() });
                self.set_status(what, Level::Error);
            }
            E::SendFailed { reason, .. } => self.set_status(reason.clone(), Level::Error),
            E::Info { peer, absence, .. } => {
                if let (Some(p), Some(a)) = (self.peer_mut(peer), absence) {
                    p.absence = Some(a.clone());
                }
            }
            E::Lagged { missed } => {
                // A broadcast's entry waits for its event, which may be among those missed.
                self.own_unclaimed.retain(|o| !o.broadcast);
                self.set_status(format!("missed {missed} events (the chat was too slow)"), Level::Error)
            }
        }
    }

    /// A message the node sent: ours (already shown), or another client's
    /// (a script's `pigeon send`) or our automatic reply, shown now.
    fn on_sent(&mut self, sent: &api::SentView) {
        let v = &sent.body;
        let text = v.text.as_str();
        let to: Vec<(u64, String)> = sent.to.iter().map(|t| (t.id, t.peer.clone())).collect();
        let ids: Vec<u64> = to.iter().map(|(id, _)| *id).filter(|id| *id != 0).collect();
        if !ids.is_empty()
            && self.out_msgs_mut().any(|m| m.recipients.iter().any(|r| r.id.is_some_and(|i| ids.contains(&i))))
        {
            return; // ours, answered already
        }
        let (broadcast, auto) = (v.broadcast, v.auto);
        let mut keys: Vec<String> = to.iter().map(|(_, k)| k.clone()).collect();
        keys.sort();
        let ours = |o: &OwnSend| {
            o.text == text && o.broadcast == broadcast && (broadcast || o.to.as_ref().is_none_or(|t| *t == keys))
        };
        if let Some(i) = self.own_unclaimed.iter().position(ours).filter(|_| !auto) {
            self.own_unclaimed.remove(i);
            return; // ours, before its answer
        }
        let packet_no = v.packet_no.clone();
        let files = FileInfo::list(&v.attachments);
        let mut msg = self.new_out(text.to_string(), v.sealed, None);
        msg.tag = 0;
        msg.time = event_time(&v.time);
        msg.broadcast = broadcast;
        msg.auto = auto;
        msg.command = v.command;
        msg.offer = (!files.is_empty()).then_some(Offer { files, state: OfferState::Pending });
        if msg.broadcast || msg.auto {
            // No receipts: shown once, by its number.
            msg.packet_no = packet_no;
            let conv = match to.first() {
                Some((_, k)) if msg.auto => ConvKey::Peer(k.clone()),
                _ => ConvKey::Everyone,
            };
            self.push(&conv, Item::Msg(msg));
            return;
        }
        for (id, key) in to {
            let mut m = msg.clone();
            let (no, state) = self.early.remove(&id).unwrap_or((packet_no.clone(), Delivery::Sending));
            m.recipients = vec![Recipient { key: key.clone(), id: Some(id), packet_no: Some(no), state }];
            self.push(&ConvKey::Peer(key), Item::Msg(m));
        }
    }

    fn on_message(&mut self, m: &api::MessageView) {
        let (f, v) = (&m.from, &m.body);
        let key = format!("{}@{}", f.user, f.host);
        if self.peer(&key).is_none() {
            // A message from a peer we have not seen announce itself.
            let p = api::PeerInfoView {
                user: f.user.clone(),
                host: f.host.clone(),
                nick: f.nick.clone(),
                group: String::new(),
                addr: f.addr.clone(),
                client: "unknown".into(),
                away: false,
            };
            self.upsert_peer(&p, true);
        }
        let time = event_time(&v.time);
        let files = FileInfo::list(&v.attachments);
        let msg = Msg {
            dir: Dir::In,
            from: key.clone(),
            nick: f.nick.clone(),
            time,
            text: v.text.clone(),
            sealed: v.sealed,
            opened: false,
            broadcast: v.broadcast,
            auto: v.auto,
            command: v.command,
            packet_no: v.packet_no.clone(),
            recipients: Vec::new(),
            to_group: false,
            offer: (!files.is_empty()).then_some(Offer { files, state: OfferState::Pending }),
            tag: 0,
            error: None,
            security: Some(m.security.into()),
        };
        let conv = ConvKey::Peer(key.clone());
        if self.has_in(&conv, &key, &msg.packet_no) {
            return;
        }
        let preview = if msg.sealed {
            "sealed message".to_string()
        } else if let Some(o) = &msg.offer {
            let names: Vec<&str> = o.files.iter().map(|f| f.name.as_str()).collect();
            format!("offers {}", names.join(", "))
        } else {
            msg.text.clone()
        };
        if msg.broadcast {
            self.push(&ConvKey::Everyone, Item::Msg(msg.clone()));
        }
        let broadcast = msg.broadcast;
        self.push(&conv, Item::Msg(msg));
        self.incoming(&key, &preview, broadcast);
    }

    /// Counts an unread message, shows its first line, and notifies —
    /// unless the conversation shown holds it.
    fn incoming(&mut self, key: &str, preview: &str, broadcast: bool) {
        let here = self.current == ConvKey::Peer(key.to_string()) || (broadcast && self.current == ConvKey::Everyone);
        let name = self.peer(key).map_or(key.to_string(), |p| text::one_line(p.name()));
        if here {
            self.seen(self.current.clone());
        } else {
            if let Some(p) = self.peer_mut(key) {
                p.unread += 1;
            }
            self.set_status(format!("{name}: {}", text::one_line(preview)), Level::Incoming);
        }
        if !here || !self.window_focused {
            self.actions.push(Action::Notify { title: name, body: preview.chars().take(200).collect() });
        }
    }

    fn has_in(&self, conv: &ConvKey, from: &str, packet_no: &str) -> bool {
        self.conv(conv).is_some_and(|c| {
            c.items
                .iter()
                .any(|i| matches!(i, Item::Msg(m) if m.dir == Dir::In && m.from == from && m.packet_no == packet_no))
        })
    }

    /// The node's answer to a send: each recipient's id and first state.
    pub fn on_send_answer(&mut self, tag: u64, answer: Result<api::SendAnswer, String>) {
        // From here on its ids tell its `sent` event apart.
        self.own_unclaimed.retain(|o| o.tag != tag);
        let results = match answer {
            Ok(a) => a.results,
            Err(e) => return self.send_failed(tag, e),
        };
        let early = std::mem::take(&mut self.early);
        let mut used = Vec::new();
        for m in self.out_msgs_mut().filter(|m| m.tag == tag) {
            for r in &results {
                let (peer, Some(id), state) = (r.peer.as_str(), r.id, r.status) else { continue };
                let idx = match m.recipients.iter().position(|x| x.key == peer) {
                    Some(i) => i,
                    None if m.to_group => {
                        m.recipients.push(Self::recipient(peer));
                        m.recipients.len() - 1
                    }
                    None => continue,
                };
                let rc = &mut m.recipients[idx];
                rc.id = Some(id);
                rc.state = state;
                if let Some((no, st)) = early.get(&id) {
                    rc.packet_no = Some(no.clone());
                    rc.state = *st;
                    used.push(id);
                }
            }
            if m.to_group && m.recipients.is_empty() {
                m.error = Some("nobody of the group is online".into());
            }
        }
        self.early = early;
        for id in used {
            self.early.remove(&id);
        }
    }

    fn send_failed(&mut self, tag: u64, error: String) {
        let mut text = None;
        for m in self.out_msgs_mut().filter(|m| m.tag == tag) {
            m.error = Some(error.clone());
            for r in &mut m.recipients {
                r.state = Delivery::Failed;
            }
            text = Some(m.text.clone());
        }
        // Nothing typed is lost: the text comes back to an empty compose box.
        if let Some(t) = text.filter(|t| !t.is_empty()) {
            if self.editor.is_empty() {
                self.editor.set(&t);
            }
        }
        self.set_status(format!("not sent: {error}"), Level::Error);
    }

    /// The answer to a broadcast.
    pub fn on_broadcast_answer(&mut self, tag: u64, answer: Result<api::Done, String>) {
        // A broadcast's answer has no ids: its `sent` event claims it.
        let Err(err) = answer else { return };
        self.own_unclaimed.retain(|o| o.tag != tag);
        self.send_failed(tag, err);
    }

    /// A request that failed (open, decline, away…).
    pub fn on_error(&mut self, what: &str, error: &str) {
        self.set_status(format!("{what}: {error}"), Level::Error);
    }

    fn out_msgs_mut(&mut self) -> impl Iterator<Item = &mut Msg> {
        self.convs.values_mut().flat_map(|c| c.items.iter_mut()).filter_map(|i| match i {
            Item::Msg(m) if m.dir == Dir::Out => Some(m),
            _ => None,
        })
    }
}

/// When a `message` or `sent` event happened (now, if it does not say).
fn event_time(time: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(time).map_or_else(|_| Utc::now(), |t| t.with_timezone(&Utc))
}
