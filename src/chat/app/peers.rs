//! The peer list: who is known (online from the node, offline from the
//! store), their unread counts, the rows as shown (everyone, groups, peers,
//! filtered), the selected row and the marked peers.

use super::{Action, App, ConvKey, PeerView, Row};
use crate::control::api;
use crate::store::{PeerRecord, UnreadCount};

impl App {
    /// Peers known from the store (offline until they announce themselves).
    pub fn add_known_peers(&mut self, records: &[PeerRecord]) {
        for r in records {
            let key = format!("{}@{}", r.user, r.host);
            if key == format!("{}@{}", self.me.user, self.me.host) || self.peer(&key).is_some() {
                continue;
            }
            self.peers.push(PeerView {
                key,
                user: r.user.clone(),
                host: r.host.clone(),
                nick: r.nick.clone(),
                group: r.group.clone(),
                addr: r.addr.clone(),
                client: r.client.clone(),
                away: false,
                absence: None,
                online: false,
                unread: 0,
            });
        }
    }

    /// Unread counts from the store: what came while no chat was open. What
    /// the open conversation shows is not counted (as for live messages).
    /// Called once, at start (the counts add up).
    pub fn set_unread(&mut self, counts: &[UnreadCount]) {
        for c in counts {
            let key = format!("{}@{}", c.user, c.host);
            if self.current == ConvKey::Peer(key.clone()) || (c.broadcast && self.current == ConvKey::Everyone) {
                continue;
            }
            if self.peer(&key).is_none() && key != format!("{}@{}", self.me.user, self.me.host) {
                // Its messages are stored but the node has not heard it (yet):
                // listed offline with its count, which its entry keeps.
                self.peers.push(PeerView {
                    key: key.clone(),
                    user: c.user.clone(),
                    host: c.host.clone(),
                    nick: String::new(),
                    group: String::new(),
                    addr: String::new(),
                    client: "unknown".into(),
                    away: false,
                    absence: None,
                    online: false,
                    unread: 0,
                });
            }
            if let Some(p) = self.peer_mut(&key) {
                p.unread += c.count as usize;
            }
        }
    }

    /// Peers online now (the answer to `peers`).
    pub fn set_online_peers(&mut self, list: &[api::PeerView]) {
        for p in list {
            self.upsert_peer(&p.info, true);
        }
    }

    pub(super) fn upsert_peer(&mut self, v: &api::PeerInfoView, online: bool) -> Option<String> {
        let mut p = PeerView::from_api(v);
        p.online = online;
        let key = p.key.clone();
        let newly_away = p.away && online && !self.peer(&key).is_some_and(|o| o.away && o.online);
        match self.peer_mut(&key) {
            Some(old) => {
                let unread = old.unread;
                let absence = if p.away { old.absence.take() } else { None };
                *old = PeerView { unread, absence, ..p };
            }
            None => self.peers.push(p),
        }
        if newly_away {
            // Its away text, for the list (GETABSENCEINFO).
            self.actions.push(Action::GetInfo(key.clone()));
        }
        Some(key)
    }

    fn matches_filter(&self, p: &PeerView) -> bool {
        if self.filter.is_empty() {
            return true;
        }
        let f = self.filter.to_lowercase();
        [&p.nick, &p.user, &p.host, &p.group, &p.addr].iter().any(|s| s.to_lowercase().contains(&f))
    }

    /// The rows of the peer list: everyone, then each group (named groups
    /// first, by name) with its peers, online before offline, by nick.
    pub fn rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        if self.filter.is_empty() || "everyone broadcast".contains(&self.filter.to_lowercase()) {
            rows.push(Row::Everyone);
        }
        let mut groups: Vec<&str> = self.peers.iter().map(|p| p.group.as_str()).collect();
        groups.sort_by(|a, b| (a.is_empty(), *a).cmp(&(b.is_empty(), *b)));
        groups.dedup();
        for g in groups {
            let mut members: Vec<&PeerView> =
                self.peers.iter().filter(|p| p.group == g && self.matches_filter(p)).collect();
            if members.is_empty() {
                continue;
            }
            members.sort_by(|a, b| {
                (!a.online, a.name().to_lowercase(), &a.key).cmp(&(!b.online, b.name().to_lowercase(), &b.key))
            });
            let online = self.group_online(g);
            let total = self.peers.iter().filter(|p| p.group == g).count();
            rows.push(Row::Group { name: g.to_string(), online, total });
            rows.extend(members.into_iter().map(|p| Row::Peer(p.key.clone())));
        }
        rows
    }

    fn same_row(a: &Row, b: &Row) -> bool {
        match (a, b) {
            (Row::Group { name: x, .. }, Row::Group { name: y, .. }) => x == y,
            _ => a == b,
        }
    }

    /// The index of the selected row (the first row if it is gone).
    pub fn selected_index(&self, rows: &[Row]) -> usize {
        rows.iter().position(|r| Self::same_row(r, &self.selected)).unwrap_or(0)
    }

    pub(super) fn move_selection(&mut self, delta: isize) {
        let rows = self.rows();
        if rows.is_empty() {
            return;
        }
        let i = self.selected_index(&rows) as isize + delta;
        let i = i.clamp(0, rows.len() as isize - 1) as usize;
        self.selected = rows[i].clone();
    }

    pub(super) fn open_row(&mut self, row: &Row) {
        let conv = match row {
            Row::Everyone => ConvKey::Everyone,
            Row::Group { name, .. } => ConvKey::Group(name.clone()),
            Row::Peer(k) => ConvKey::Peer(k.clone()),
        };
        self.open(conv);
    }

    pub(super) fn toggle_mark(&mut self) {
        match self.selected.clone() {
            Row::Peer(k) => {
                if !self.marked.remove(&k) {
                    self.marked.insert(k);
                }
            }
            Row::Group { name, .. } => {
                let members: Vec<String> =
                    self.peers.iter().filter(|p| p.group == name && p.online).map(|p| p.key.clone()).collect();
                if members.iter().all(|k| self.marked.contains(k)) {
                    for k in &members {
                        self.marked.remove(k);
                    }
                } else {
                    self.marked.extend(members);
                }
            }
            Row::Everyone => {}
        }
    }
}
