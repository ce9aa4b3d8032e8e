//! The peer table: who is on the LAN, with address, nick, group, client
//! kind, capabilities, away state and charset (protocol.md §3, §5).
//!
//! Identity (DESIGN.md "State and files"): a peer is who it says (user@host,
//! normalised to Unicode) *and* where it is. [`PeerTable::identify`] decides
//! which peer an entry packet comes from:
//!
//! 1. a peer of that name already at that address (IP and port);
//! 2. a peer of that name with the same instance marker (Pigeon's `PG:`
//!    trailer line, FeiQ's MAC): the same machine, moved (its old address
//!    silent for [`ADDRESS_HOLD`]) or at a second address of its own (a
//!    second NIC: listed once, the first address kept for sending);
//! 3. a peer of that name whose marker does not contradict, that left or
//!    has been silent for [`ADDRESS_HOLD`]: the same peer, moved (DHCP),
//!    IPMsg's rule (§3.8);
//! 4. else a new peer: the first of its name keeps the plain name, a later
//!    one (a twin: every Raspberry Pi is `pi@raspberrypi`) is told apart by
//!    the address it was first seen at, `pi@raspberrypi#198.18.0.13`.
//!
//! Clients without a marker (IP Messenger, iptux) on two addresses at once
//! cannot be told from two machines: they are listed twice, as iptux lists
//! them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use pigeon_protocol::{Charset, ClientKind, Opts};

/// How long a peer's address is trusted before a packet from elsewhere may move it.
pub const ADDRESS_HOLD: Duration = Duration::from_secs(7);

/// A peer's identity: user and host, as Unicode; for the second and later
/// machines of one name, `host` ends with `#` and the address the machine
/// was first seen at (a `#` from the wire is written `＃`, so it cannot
/// collide).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerKey {
    pub user: String,
    pub host: String,
}

impl PeerKey {
    /// The key for a user and host as kept (`host` may carry a `#tag`).
    pub fn new(user: impl Into<String>, host: impl Into<String>) -> PeerKey {
        PeerKey { user: user.into(), host: host.into() }
    }

    /// The key for names read from the wire (no tag).
    pub fn from_wire(user: &str, host: &str) -> PeerKey {
        let host = host.replace('#', "＃");
        // `*@*` is everyone (our broadcasts' record): a peer of that name is `*@＊`.
        let host = if user == "*" && host == "*" { "＊".to_string() } else { host };
        PeerKey { user: user.to_string(), host }
    }

    /// Who a broadcast goes to, as its record in the history names it.
    pub fn everyone() -> PeerKey {
        PeerKey { user: "*".into(), host: "*".into() }
    }

    /// True for [`PeerKey::everyone`].
    pub fn is_everyone(&self) -> bool {
        self.user == "*" && self.host == "*"
    }

    /// The host name without the tag.
    pub fn wire_host(&self) -> &str {
        self.host.split_once('#').map_or(&self.host, |(h, _)| h)
    }

    /// The same name without the tag.
    pub fn untagged(&self) -> PeerKey {
        PeerKey { user: self.user.clone(), host: self.wire_host().to_string() }
    }

    /// True if both name the same user@host on the wire (tags aside).
    pub fn same_name(&self, other: &PeerKey) -> bool {
        self.user == other.user && self.wire_host() == other.wire_host()
    }

    fn tagged(&self, tag: &str) -> PeerKey {
        PeerKey { user: self.user.clone(), host: format!("{}#{tag}", self.wire_host()) }
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
    /// What its broadcast entries were in, for clients that are guessed:
    /// iptux writes them in its preferred charset (GB18030 in Chinese
    /// offices) but its unicast text in what it takes us to read (`charset`).
    pub entry_charset: Option<Charset>,
    /// Online (entry seen and no exit since).
    pub online: bool,
    /// When its address was last confirmed (engine clock).
    pub seen: Duration,
    /// What tells this machine from others of the same name: `pigeon:ID`
    /// (Pigeon's `PG:` trailer line) or `mac:MAC` (FeiQ's version field).
    pub marker: Option<String>,
    /// Other addresses of its own it was heard from (a second NIC).
    pub also: Vec<SocketAddr>,
    /// It moved to another address in this run (DHCP, or someone taking
    /// its name): auto-accept no longer trusts it.
    pub moved: bool,
    /// What we hold of its public key (filled in when the table is handed
    /// out; the engine's keyring is the truth).
    pub key_mark: KeyMark,
}

/// What we hold of a peer's public key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeyMark {
    #[default]
    None,
    /// The key pinned for it.
    Known,
    /// Another key than the one first pinned.
    Changed,
}

impl Peer {
    /// Heard from since the node started (else known from the store only:
    /// what it reads is not known yet).
    pub fn heard(&self) -> bool {
        !self.version.is_empty()
    }

    /// True if `addr` is one of its addresses.
    pub fn at(&self, addr: SocketAddr) -> bool {
        self.addr == addr || self.also.contains(&addr)
    }

    /// True if `ip` is the IP of one of its addresses (clients answer from
    /// 2425 whatever port we used).
    pub fn at_ip(&self, ip: std::net::IpAddr) -> bool {
        self.addr.ip() == ip || self.also.iter().any(|a| a.ip() == ip)
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
                // We present ourselves to iptux as an iptux peer that reads
                // UTF-8 (engine: `iptux_entry`), so it reads our text as
                // UTF-8 whatever its own preference.
                ClientKind::Iptux => Charset::Utf8,
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

/// The best of some peers: online first, then heard from since start,
/// then known from the store.
fn best<'a>(found: impl Iterator<Item = &'a Peer> + Clone) -> Option<&'a Peer> {
    found.clone().find(|p| p.online).or_else(|| found.clone().find(|p| p.heard())).or_else(|| found.clone().next())
}

/// Which peer an entry comes from (see the module comment).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// A known peer (at this address, or moved here).
    Known(PeerKey),
    /// A known peer heard at a second address of its own, while its first
    /// is alive: the first stays where we send.
    Also(PeerKey),
    /// Not known: a new peer with this key.
    New(PeerKey),
}

/// The most peers kept; past it, peers that left are forgotten first.
pub const MAX_PEERS: usize = 8192;

/// All peers seen, indexed by IP and by name: looking one up costs the
/// same with 10 peers as with [`MAX_PEERS`] (a flood of entries from many
/// addresses must not cost the square of their number).
#[derive(Debug, Default)]
pub struct PeerTable {
    peers: HashMap<PeerKey, Peer>,
    /// Keys by every IP a peer has (its address and `also`).
    ips: HashMap<std::net::IpAddr, Vec<PeerKey>>,
    /// Keys by untagged name.
    names: HashMap<PeerKey, Vec<PeerKey>>,
}

fn ips_of(p: &Peer) -> impl Iterator<Item = std::net::IpAddr> + '_ {
    std::iter::once(p.addr.ip()).chain(p.also.iter().map(|a| a.ip()))
}

impl PeerTable {
    fn index(&mut self, p: &Peer) {
        for ip in ips_of(p) {
            let v = self.ips.entry(ip).or_default();
            if !v.contains(&p.key) {
                v.push(p.key.clone());
            }
        }
        let v = self.names.entry(p.key.untagged()).or_default();
        if !v.contains(&p.key) {
            v.push(p.key.clone());
        }
    }

    fn unindex(&mut self, p: &Peer) {
        for ip in ips_of(p) {
            if let Some(v) = self.ips.get_mut(&ip) {
                v.retain(|k| k != &p.key);
                if v.is_empty() {
                    self.ips.remove(&ip);
                }
            }
        }
        let name = p.key.untagged();
        if let Some(v) = self.names.get_mut(&name) {
            v.retain(|k| k != &p.key);
            if v.is_empty() {
                self.names.remove(&name);
            }
        }
    }

    fn at_ip(&self, ip: std::net::IpAddr) -> impl Iterator<Item = &Peer> + Clone {
        self.ips.get(&ip).into_iter().flatten().filter_map(|k| self.peers.get(k))
    }

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
        best(self.at_ip(addr.ip()).filter(|p| p.at(addr)))
    }

    /// The peer whose IP is `ip` (iptux keys peers by IP alone), in the
    /// same order of preference.
    pub fn by_ip(&self, ip: std::net::IpAddr) -> Option<&Peer> {
        best(self.at_ip(ip))
    }

    /// Every peer called `name` (untagged) on the wire.
    fn named<'a>(&'a self, name: &PeerKey) -> impl Iterator<Item = &'a Peer> + Clone + 'a {
        self.names.get(name).into_iter().flatten().filter_map(|k| self.peers.get(k))
    }

    /// Which peer an entry packet naming itself `name` (untagged), with
    /// `marker`, from `from`, comes from (the rules of the module comment).
    pub fn identify(&self, name: &PeerKey, marker: Option<&str>, from: SocketAddr, now: Duration) -> Identity {
        let fresh = |p: &Peer| p.online && now.saturating_sub(p.seen) < ADDRESS_HOLD;
        // 1. Already there.
        if let Some(p) = best(self.named(name).filter(|p| p.at(from))) {
            return Identity::Known(p.key.clone());
        }
        // 2. The same machine, by its marker.
        if let Some(m) = marker {
            if let Some(p) = self.named(name).find(|p| p.marker.as_deref() == Some(m)) {
                return if fresh(p) { Identity::Also(p.key.clone()) } else { Identity::Known(p.key.clone()) };
            }
        }
        // 3. A peer of that name that may have moved: nothing says it is
        // another machine, and its old address is not alive. Same IP first.
        let may_be = |p: &&Peer| (marker.is_none() || p.marker.is_none()) && !fresh(p);
        let mut candidates: Vec<&Peer> = self.named(name).filter(may_be).collect();
        candidates.sort_by_key(|p| (p.addr.ip() != from.ip(), p.online, std::cmp::Reverse(p.seen), p.key.clone()));
        if let Some(p) = candidates.first() {
            return Identity::Known(p.key.clone());
        }
        // 4. Someone new.
        if self.named(name).next().is_none() {
            return Identity::New(name.clone());
        }
        let key = name.tagged(&from.ip().to_string());
        if self.peers.contains_key(&key) {
            return Identity::New(name.tagged(&from.to_string()));
        }
        Identity::New(key)
    }

    /// The peer a non-entry packet from `from` naming itself `name` comes
    /// from: the one of that name at that address, else at that IP, else
    /// the only one of that name.
    pub fn by_source<'a>(&'a self, name: &'a PeerKey, from: SocketAddr) -> Option<&'a Peer> {
        if let Some(p) = best(self.named(name).filter(|p| p.at(from))) {
            return Some(p);
        }
        if let Some(p) = best(self.named(name).filter(|p| p.addr.ip() == from.ip())) {
            return Some(p);
        }
        let mut named = self.named(name);
        match (named.next(), named.next()) {
            (Some(p), None) => Some(p),
            _ => None,
        }
    }

    /// Records that a known peer was heard at a second address of its own.
    pub fn also_at(&mut self, key: &PeerKey, addr: SocketAddr, now: Duration) {
        let Some(p) = self.peers.get_mut(key) else { return };
        p.seen = now;
        if !p.at(addr) && p.also.len() < 8 {
            p.also.push(addr);
            let v = self.ips.entry(addr.ip()).or_default();
            if !v.contains(key) {
                v.push(key.clone());
            }
        }
    }

    /// Every peer, in a stable order (group, nick, key).
    pub fn all(&self) -> Vec<&Peer> {
        let mut v: Vec<&Peer> = self.peers.values().collect();
        v.sort_by(|a, b| (&a.group, &a.nick, &a.key).cmp(&(&b.group, &b.nick, &b.key)));
        v
    }

    /// Adds or refreshes a peer from a presence packet. The address moves
    /// only if the old one has not been confirmed for [`ADDRESS_HOLD`].
    pub fn upsert(&mut self, new: Peer) -> Change {
        if let Some(old) = self.peers.get(&new.key).cloned() {
            self.unindex(&old);
        }
        let change = self.update(new);
        let key_peer = self.peers.get(&change.1).cloned().expect("just stored");
        self.index(&key_peer);
        change.0
    }

    fn update(&mut self, mut new: Peer) -> (Change, PeerKey) {
        let key = new.key.clone();
        let change = match self.peers.get_mut(&new.key) {
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
                if new.addr == old.addr || old.also.contains(&new.addr) {
                    new.also = std::mem::take(&mut old.also);
                    // A second address keeps the first one where we send.
                    if new.addr != old.addr {
                        new.addr = old.addr;
                    }
                }
                if new.marker.is_none() {
                    new.marker = old.marker.take();
                }
                new.moved = old.moved || (new.addr != old.addr && old.heard());
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
        };
        (change, key)
    }

    /// Adds a peer known from an earlier run, offline; one already known,
    /// or a full table, is left alone. Returns whether it was added.
    pub fn remember(&mut self, mut p: Peer) -> bool {
        if self.peers.len() >= MAX_PEERS || self.peers.contains_key(&p.key) {
            return false;
        }
        p.online = false;
        self.index(&p);
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
            if let Some(p) = self.peers.remove(&k) {
                self.unindex(&p);
            }
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
        let mut p = identity_tests::peer(PeerKey::new("bob", "pc"), addr, seen, None);
        (p.nick, p.client, p.version) = ("Bob".into(), ClientKind::Ipmsg, "1".into());
        p
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

#[cfg(test)]
mod identity_tests {
    use super::*;

    pub(super) fn peer(key: PeerKey, addr: &str, seen: u64, marker: Option<&str>) -> Peer {
        Peer {
            key,
            nick: "pi".into(),
            group: String::new(),
            addr: addr.parse().unwrap(),
            client: ClientKind::Pigeon,
            version: "1_pigeon".into(),
            status: Opts(0),
            away: false,
            charset: Charset::Gbk,
            announced: None,
            entry_charset: None,
            online: false,
            seen: Duration::from_secs(seen),
            marker: marker.map(String::from),
            also: Vec::new(),
            moved: false,
            key_mark: KeyMark::None,
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn twins_by_marker_and_by_liveness() {
        let name = PeerKey::from_wire("pi", "raspberrypi");
        let mut t = PeerTable::default();
        assert_eq!(
            t.identify(&name, Some("pigeon:a"), addr("10.0.0.12:2425"), Duration::ZERO),
            Identity::New(name.clone())
        );
        t.upsert(peer(name.clone(), "10.0.0.12:2425", 0, Some("pigeon:a")));
        // Another marker: a second machine, told apart by its address.
        let twin = Identity::New(PeerKey::new("pi", "raspberrypi#10.0.0.13"));
        assert_eq!(t.identify(&name, Some("pigeon:b"), addr("10.0.0.13:2425"), Duration::from_secs(1)), twin);
        // Even long after: a marker that differs is never the same machine.
        assert_eq!(t.identify(&name, Some("pigeon:b"), addr("10.0.0.13:2425"), Duration::from_secs(60)), twin);
        // No markers: alive elsewhere is a twin, silent is a move.
        let mut u = PeerTable::default();
        u.upsert(peer(name.clone(), "10.0.0.12:2425", 0, None));
        assert_eq!(u.identify(&name, None, addr("10.0.0.13:2425"), Duration::from_secs(1)), twin);
        assert_eq!(
            u.identify(&name, None, addr("10.0.0.13:2425"), Duration::from_secs(8)),
            Identity::Known(name.clone())
        );
        u.exit(&name);
        assert_eq!(
            u.identify(&name, None, addr("10.0.0.13:2425"), Duration::from_secs(1)),
            Identity::Known(name.clone())
        );
    }

    #[test]
    fn second_address_of_one_machine_is_listed_once() {
        let name = PeerKey::from_wire("pi", "raspberrypi");
        let mut t = PeerTable::default();
        t.upsert(peer(name.clone(), "10.0.0.14:2425", 0, Some("pigeon:a")));
        let id = t.identify(&name, Some("pigeon:a"), addr("10.0.0.15:2425"), Duration::from_secs(1));
        assert_eq!(id, Identity::Also(name.clone()));
        t.also_at(&name, addr("10.0.0.15:2425"), Duration::from_secs(1));
        assert_eq!(t.all().len(), 1);
        assert_eq!(t.by_addr(addr("10.0.0.15:2425")).unwrap().key, name);
        // A packet from the second address keeps the first one for sending.
        assert_eq!(t.upsert(peer(name.clone(), "10.0.0.15:2425", 2, Some("pigeon:a"))), Change::Same);
        assert_eq!(t.get(&name).unwrap().addr, addr("10.0.0.14:2425"));
        // Moved for real (the old address silent): it follows.
        let id = t.identify(&name, Some("pigeon:a"), addr("10.0.0.20:2425"), Duration::from_secs(30));
        assert_eq!(id, Identity::Known(name.clone()));
        assert_eq!(t.upsert(peer(name.clone(), "10.0.0.20:2425", 30, Some("pigeon:a"))), Change::Changed);
        assert_eq!(t.get(&name).unwrap().addr, addr("10.0.0.20:2425"));
        assert!(t.get(&name).unwrap().also.is_empty());
    }

    #[test]
    fn wire_names_cannot_forge_a_tag() {
        let k = PeerKey::from_wire("pi", "raspberrypi#10.0.0.13");
        assert_eq!(k.host, "raspberrypi＃10.0.0.13");
        let tagged = PeerKey::new("pi", "raspberrypi#10.0.0.13");
        assert!(!k.same_name(&tagged));
        assert!(tagged.same_name(&PeerKey::from_wire("pi", "raspberrypi")));
        assert_eq!(tagged.wire_host(), "raspberrypi");
    }
}
