//! History from the store: stored messages as shown, merged with what a
//! conversation already shows (nothing twice; what is shown wins, and
//! things only shown here stay), and a group's sends picked from the rows
//! stored per recipient.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::{App, ConvKey, Dir, FileInfo, Files, Item, Me, Msg, Offer, OfferState, Recipient};
use crate::control::api;
use crate::store::{Direction, MessageRecord, MessageState};

impl App {
    /// Messages of a conversation from the store, merged with what is shown
    /// (nothing twice; things only shown here, like notices, stay).
    pub fn on_history(&mut self, conv: &ConvKey, records: &[MessageRecord], limit: usize) {
        let c = self.convs.entry(conv.clone()).or_default();
        let shown = std::mem::take(&mut c.items);
        // What is shown wins over its stored copy: it knows more (an offer
        // fetched or declined, a receipt that came since).
        let mut keys = HashSet::new();
        let mut unnumbered: Vec<&Msg> = Vec::new();
        for i in &shown {
            if let Item::Msg(m) = i {
                match message_key(m) {
                    Some(k) => {
                        keys.insert(k);
                    }
                    None => unnumbered.push(m),
                }
            }
        }
        let mut items: Vec<Item> = Vec::new();
        let msgs: Vec<Msg> = if let ConvKey::Group(g) = conv {
            self.group_sends(g, records)
        } else {
            let downloads = self.download_dir.as_deref().map(|d| (d, &*self.files));
            records.iter().map(|r| msg_from_record(r, &self.me, downloads)).collect()
        };
        for m in msgs {
            let k = message_key(&m);
            if k.as_ref().is_some_and(|k| keys.contains(k)) || unnumbered.iter().any(|u| same_unnumbered(u, &m)) {
                continue;
            }
            // A broadcast is stored once per peer: show it once.
            if let Some(k) = k {
                keys.insert(k);
            }
            items.push(Item::Msg(m));
        }
        items.extend(shown);
        items.sort_by_key(|i| i.time());
        let c = self.convs.get_mut(conv).expect("made above");
        c.items = items;
        c.loaded = limit;
        c.more = records.len() >= limit;
        c.selected = None;
        c.shown_selection = None;
    }

    /// What we sent to a group, from the stored rows (one per recipient):
    /// the sends that reached two or more of its members, once each.
    fn group_sends(&self, group: &str, records: &[MessageRecord]) -> Vec<Msg> {
        let members: HashSet<String> = self.peers.iter().filter(|p| p.group == group).map(|p| p.key.clone()).collect();
        let mut sends: Vec<Msg> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for r in records.iter().filter(|r| r.direction == Direction::Out && !r.broadcast()) {
            let mut m = msg_from_record(r, &self.me, None);
            if !m.recipients.iter().all(|x| members.contains(&x.key)) {
                continue;
            }
            match index.get(&r.packet_no) {
                Some(&i) => sends[i].recipients.append(&mut m.recipients),
                None => {
                    index.insert(r.packet_no.clone(), sends.len());
                    m.to_group = true;
                    sends.push(m);
                }
            }
        }
        sends.retain(|m| m.recipients.len() >= 2);
        sends
    }
}

/// What identifies a message: direction, peer and packet number (a
/// broadcast we sent: its packet number alone). `None` for a message we
/// sent whose number is not known yet.
fn message_key(m: &Msg) -> Option<(Dir, String, String)> {
    match m.dir {
        Dir::In => Some((Dir::In, m.from.clone(), m.packet_no.clone())),
        Dir::Out if m.broadcast && !m.packet_no.is_empty() => Some((Dir::Out, String::new(), m.packet_no.clone())),
        Dir::Out if m.auto && !m.packet_no.is_empty() => Some((Dir::Out, "auto:".into(), m.packet_no.clone())),
        Dir::Out if m.to_group => {
            m.recipients.iter().find_map(|r| r.packet_no.clone()).map(|n| (Dir::Out, "group:".into(), n))
        }
        Dir::Out => m.recipients.iter().find_map(|r| r.packet_no.clone().map(|n| (Dir::Out, r.key.clone(), n))),
    }
}

/// A message sent from here before its number was known, and its stored
/// copy: the same text within a minute.
fn same_unnumbered(shown: &Msg, stored: &Msg) -> bool {
    shown.dir == stored.dir
        && shown.auto == stored.auto
        && shown.text == stored.text
        && (shown.time - stored.time).num_seconds().abs() < 60
}

/// A stored message as shown; `downloads`: the download folder, to show an
/// offer whose files are all there as saved.
fn msg_from_record(r: &MessageRecord, me: &Me, downloads: Option<(&Path, &dyn Files)>) -> Msg {
    let key = format!("{}@{}", r.peer.user, r.peer.host);
    let files = r.attachments_json.as_deref().map(api::AttachmentView::from_column).unwrap_or_default();
    let files = FileInfo::list(&files);
    let out = r.direction == Direction::Out;
    let auto = r.is_auto_reply();
    let state = r.state.delivery();
    Msg {
        dir: if out { Dir::Out } else { Dir::In },
        from: if out { String::new() } else { key.clone() },
        nick: if out { me.nick.clone() } else { r.peer.nick.clone() },
        time: r.time,
        text: r.text.clone(),
        sealed: r.sealed(),
        opened: !out && r.state == MessageState::Read,
        broadcast: r.broadcast(),
        auto,
        command: r.command,
        packet_no: r.packet_no.clone(),
        // Broadcasts and automatic replies ask for no receipt: "sent".
        recipients: if out && !r.broadcast() && !auto {
            vec![Recipient { key, id: None, packet_no: Some(r.packet_no.clone()), state }]
        } else {
            Vec::new()
        },
        to_group: false,
        offer: (!files.is_empty()).then(|| {
            // Fetched earlier: every file is in the download folder.
            let saved: Option<Vec<String>> = downloads.and_then(|(d, fs)| {
                files
                    .iter()
                    .map(|f| Some(d.join(&f.name)).filter(|p| fs.stat(p).is_some()).map(|p| p.display().to_string()))
                    .collect()
            });
            let state = match saved {
                Some(paths) if !out => OfferState::Done { paths },
                _ => OfferState::Pending,
            };
            Offer { files, state }
        }),
        tag: 0,
        error: None,
        security: r.security,
    }
}
