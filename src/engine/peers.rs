//! The peer table: who is on the LAN, keyed by (user, host) normalised to
//! Unicode (protocol.md §1.2, §5.1), with address, nick, group, client kind,
//! capabilities, away state and charset. Address moves follow IPMsg's rule
//! (§3.8): a known peer moves only if its record is at least 7 s old.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use pigeon_protocol::{Charset, ClientKind, Opts};

/// How long a peer's address is trusted before a packet from elsewhere may move it.
pub const ADDRESS_HOLD: Duration = Duration::from_secs(7);

/// A peer's identity: user and host, as Unicode.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerKey {
    pub user: String,
    pub host: String,
}

impl PeerKey {
    /// The key for a user and host.
    pub fn new(user: impl Into<String>, host: impl Into<String>) -> PeerKey {
        PeerKey { user: user.into(), host: host.into() }
    }
}

impl std::fmt::Display for PeerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.user, self.host)
    }
}

/// What is known of one peer.
#[derive(Clone, Debug, PartialEq)]
pub struct Peer {
    pub key: PeerKey,
    pub nick: String,
    pub group: String,
    pub addr: SocketAddr,
    pub client: ClientKind,
    /// The version field as sent; empty for a peer known only from the
    /// store (not heard from since the node started).
    pub version: String,
    /// Status flags of its last entry packet.
    pub status: Opts,
    /// Away (not set for iptux, which always claims ABSENCEOPT).
    pub away: bool,
    /// The charset its legacy text is in.
    pub charset: Charset,
    /// A charset it declared (iptux's fourth entry section).
    pub announced: Option<Charset>,
    /// Online (entry seen and no exit since).
    pub online: bool,
    /// When its address was last confirmed (engine clock).
    pub seen: Duration,
}

impl Peer {
    /// Heard from since the node started (else known from the store only:
    /// what it reads is not known yet).
    pub fn heard(&self) -> bool {
        !self.version.is_empty()
    }

    /// True if it reads UTF-8 flagged with UTF8OPT.
    pub fn reads_utf8_flag(&self) -> bool {
        self.status.has(Opts::CAPUTF8OPT)
    }

    /// The charset to write to this peer in (protocol.md §5.4).
    pub fn write_charset(&self, legacy: Charset) -> Charset {
        if self.reads_utf8_flag() {
            Charset::Utf8
        } else {
            match self.client {
                ClientKind::Iptux => self.announced.unwrap_or(Charset::Utf8),
                ClientKind::Feiq => Charset::Gbk,
                _ => legacy,
            }
        }
    }

    /// The largest datagram this peer's client reads whole (§1.4).
    pub fn max_datagram(&self) -> usize {
        match self.client {
            ClientKind::Iptux => 8191,
            ClientKind::Feiq => 4096,
            ClientKind::Ipmsg | ClientKind::Unknown => 32767,
            ClientKind::Pigeon => 65507,
        }
    }
}

/// What an update did to the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// A peer that was not online now is.
    Online,
    /// An online peer's details changed.
    Changed,
    /// Nothing visible changed.
    Same,
}

/// The most peers kept; past it, peers that left are forgotten first.
pub const MAX_PEERS: usize = 8192;

/// All peers seen.
#[derive(Debug, Default)]
pub struct PeerTable {
    peers: HashMap<PeerKey, Peer>,
}

impl PeerTable {
    /// Number of peers online.
    pub fn online_count(&self) -> usize {
        self.peers.values().filter(|p| p.online).count()
    }

    /// A peer by key.
    pub fn get(&self, key: &PeerKey) -> Option<&Peer> {
        self.peers.get(key)
    }

    /// A peer by key, mutable.
    pub fn get_mut(&mut self, key: &PeerKey) -> Option<&mut Peer> {
        self.peers.get_mut(key)
    }

    /// The peer at an address: online first, then one heard from since
    /// start, then one known from the store.
    pub fn by_addr(&self, addr: SocketAddr) -> Option<&Peer> {
        self.best(|p| p.addr == addr)
    }

    /// The peer whose IP is `ip` (iptux keys peers by IP alone), in the
    /// same order of preference.
    pub fn by_ip(&self, ip: std::net::IpAddr) -> Option<&Peer> {
        self.best(|p| p.addr.ip() == ip)
    }

    fn best(&self, f: impl Fn(&Peer) -> bool) -> Option<&Peer> {
        let found = || self.peers.values().filter(|p| f(p));
        found().find(|p| p.online).or_else(|| found().find(|p| p.heard())).or_else(|| found().next())
    }

    /// Every peer, in a stable order (group, nick, key).
    pub fn all(&self) -> Vec<&Peer> {
        let mut v: Vec<&Peer> = self.peers.values().collect();
        v.sort_by(|a, b| (&a.group, &a.nick, &a.key).cmp(&(&b.group, &b.nick, &b.key)));
        v
    }

    /// Adds or refreshes a peer from a presence packet. The address moves
    /// only if the old one has not been confirmed for [`ADDRESS_HOLD`].
    pub fn upsert(&mut self, mut new: Peer) -> Change {
        match self.peers.get_mut(&new.key) {
            None => {
                if self.peers.len() >= MAX_PEERS {
                    self.evict_offline();
                }
                new.online = true;
                self.peers.insert(new.key.clone(), new);
                Change::Online
            }
            Some(old) => {
                if old.addr != new.addr && old.online && new.seen.saturating_sub(old.seen) < ADDRESS_HOLD {
                    // Not moved: the old address keeps its age, so that it
                    // can still expire if the peer really moved.
                    new.addr = old.addr;
                    new.seen = old.seen;
                }
                let was_online = old.online;
                new.online = true;
                let visible = |p: &Peer| (p.nick.clone(), p.group.clone(), p.addr, p.away, p.client);
                let changed = visible(old) != visible(&new);
                *old = new;
                if !was_online {
                    Change::Online
                } else if changed {
                    Change::Changed
                } else {
                    Change::Same
                }
            }
        }
    }

    /// Adds a peer known from an earlier run, offline; one already known,
    /// or a full table, is left alone. Returns whether it was added.
    pub fn remember(&mut self, mut p: Peer) -> bool {
        if self.peers.len() >= MAX_PEERS || self.peers.contains_key(&p.key) {
            return false;
        }
        p.online = false;
        self.peers.insert(p.key.clone(), p);
        true
    }

    /// Forgets the peers that left longest ago (a flood of made-up entries
    /// cannot grow the table without bound), at least one.
    fn evict_offline(&mut self) {
        let mut gone: Vec<(Duration, PeerKey)> =
            self.peers.values().filter(|p| !p.online).map(|p| (p.seen, p.key.clone())).collect();
        if gone.is_empty() {
            // All online: forget the one heard from least recently.
            gone = self.peers.values().map(|p| (p.seen, p.key.clone())).collect();
        }
        gone.sort();
        for (_, k) in gone.into_iter().take((MAX_PEERS / 8).max(1)) {
            self.peers.remove(&k);
        }
    }

    /// Marks a peer offline; returns it if it was online.
    pub fn exit(&mut self, key: &PeerKey) -> Option<Peer> {
        let p = self.peers.get_mut(key)?;
        if !p.online {
            return None;
        }
        p.online = false;
        Some(p.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(addr: &str, seen: u64) -> Peer {
        Peer {
            key: PeerKey::new("bob", "pc"),
            nick: "Bob".into(),
            group: String::new(),
            addr: addr.parse().unwrap(),
            client: ClientKind::Ipmsg,
            version: "1".into(),
            status: Opts(0),
            away: false,
            charset: Charset::Gbk,
            announced: None,
            online: false,
            seen: Duration::from_secs(seen),
        }
    }

    #[test]
    fn address_moves_only_after_hold() {
        let mut t = PeerTable::default();
        assert_eq!(t.upsert(peer("10.0.0.1:2425", 0)), Change::Online);
        assert_eq!(t.upsert(peer("10.0.0.2:2425", 3)), Change::Same);
        assert_eq!(t.get(&PeerKey::new("bob", "pc")).unwrap().addr, "10.0.0.1:2425".parse().unwrap());
        assert_eq!(t.upsert(peer("10.0.0.2:2425", 20)), Change::Changed);
        assert_eq!(t.get(&PeerKey::new("bob", "pc")).unwrap().addr, "10.0.0.2:2425".parse().unwrap());
        assert!(t.exit(&PeerKey::new("bob", "pc")).is_some());
        assert!(t.exit(&PeerKey::new("bob", "pc")).is_none());
        assert_eq!(t.upsert(peer("10.0.0.3:2425", 21)), Change::Online);
    }
}
