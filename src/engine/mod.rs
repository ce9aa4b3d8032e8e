//! The engine: Pigeon's protocol state machines, with no sockets, no clock
//! and no disk (DESIGN.md "How data flows"; shaped like quinn-proto).
//!
//! Input: [`Engine::handle`] (a datagram, with the time and its source),
//! [`Engine::command`] (what a user asked for), [`Engine::handle_timeout`].
//! Output, in order, from [`Engine::poll_output`]: datagrams to send, events
//! for listeners, and store operations — the latter may carry datagrams that
//! must go out only after the operation is on disk (the acknowledgement of a
//! message is sent once the message is stored). [`Engine::poll_timeout`]
//! says when to call `handle_timeout` next.
//!
//! Owns: presence and the peer table (§3), outgoing messages with retry,
//! outbox and receipts (§4.1), incoming de-duplication, sealed messages and
//! read receipts (§4.2), info and away replies (§4.3), charsets (§5.4),
//! FeiQ shakes and image fragments (§8), packet numbers (§1.5).
//!
//! Here: the [`Engine`] itself, requests, the datagrams it takes in and
//! the packets it writes. Apart: its inputs and outputs (`api`, all
//! re-exported here), the peer table ([`peers`]), presence (`presence`),
//! our messages until acknowledged (`outbox`), the recently seen set
//! (`dedup`), the timer table (`timers`), keys and encryption
//! ([`secure`]), FeiQ pictures ([`pictures`]).

#![forbid(unsafe_code)]

mod api;
mod dedup;
mod outbox;
pub mod peers;
pub mod pictures;
mod presence;
pub mod secure;
mod timers;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use pigeon_protocol::charset::{self, Charset};
use pigeon_protocol::feiq::{self, FragmentAck, ImageFragment};
use pigeon_protocol::pubkey::{Capa, Security};
use pigeon_protocol::reply::{PacketRef, NOT_ABSENCE_MODE};
use pigeon_protocol::{Attachment, ClientKind, Command, Entry, FeiqVersion, Header, MessageBody, Mode, Opts, Packet};

pub use api::*;
pub use dedup::{text_hash, SeenKey, DEDUP_LIMIT};
pub use peers::{Change, Identity, Peer, PeerKey, PeerTable};
pub use presence::{REFRESH_TAKES, SILENCE};
pub use secure::{KnownKey, OurKeys, PublicKey};

use dedup::Dedup;
use outbox::{Body, Pending, PendingRead, KEPT_OPTS, OUTBOX_CHECK_EVERY};
use presence::ANSWERED_LIMIT;
use timers::{Timer, Timers};

/// Sealed messages remembered as opened in one run ([`Engine`]'s `opened`).
const OPENED_LIMIT: usize = 4096;

/// Packet numbers are reserved in blocks so a restart never reuses one.
const COUNTER_BLOCK: u64 = 1024;

/// The protocol engine of one node.
pub struct Engine {
    cfg: Config,
    peers: PeerTable,
    out: VecDeque<Output>,
    rng: fastrand::Rng,
    last_packet_no: u64,
    reserved_to: u64,
    next_id: u64,
    pending: Vec<Pending>,
    reads: Vec<PendingRead>,
    /// Sealed messages opened in this run (peer, packet number): opening
    /// one again sends no second read receipt. Bounded: the oldest go.
    opened: VecDeque<(PeerKey, PacketNo)>,
    /// Incoming messages received lately: their repeats are dropped.
    seen: Dedup,
    /// FeiQ pictures being put together from their fragments.
    pictures: pictures::Pictures,
    /// The peers' public keys.
    keyring: secure::Keyring,
    /// When we last asked each peer for its key (at most once a second).
    key_asked: HashMap<PeerKey, Duration>,
    /// Peers whose key was stored in this run (a repeat is not stored again).
    key_stored: HashSet<PeerKey>,
    /// When each address was last given our key, or a DecryptErr (by mode).
    key_answered: HashMap<(std::net::IpAddr, u8), Duration>,
    /// Where the answers due at [`Timer::Answer`] go.
    answer_to: Vec<SocketAddr>,
    /// Who is in `answer_to`, and when each address was last answered: an
    /// address is answered at most once per `ANSWER_EVERY` (a second).
    answering: HashSet<SocketAddr>,
    answered: std::collections::HashMap<SocketAddr, Duration>,
    /// Addresses waiting for a probe (see [`Request::Probe`]).
    probe: VecDeque<SocketAddr>,
    /// When each known peer last sent anything (engine clock).
    heard: HashMap<PeerKey, Duration>,
    /// Peers asked whether they are still there (unicast BR_ENTRY): when
    /// to ask again or give up, and how often they were asked.
    probing: HashMap<PeerKey, (Duration, u8)>,
    /// When each timer is due. The timers that stand for the earliest of
    /// a queue (`pending`, `reads`, `probing`; the outbox check while
    /// anything is pending) are set again by [`Engine::rearm`] at the end
    /// of every call that may change them.
    timers: Timers,
    /// When the outbox is next checked ([`Timer::Outbox`], armed while
    /// anything is pending). Moved on by any `handle_timeout` after it, even
    /// with nothing pending: it decides when what is queued later is first
    /// checked.
    next_expiry_check: Duration,
    quitting: bool,
    stats: Stats,
}

impl Engine {
    /// An engine; `last_packet_no` is the persisted counter (0 if none),
    /// `seen` the recently received messages to ignore if they come again.
    pub fn new(mut cfg: Config, last_packet_no: u64, seen: impl IntoIterator<Item = SeenKey>) -> Engine {
        // What we write must never break the framing: these checks make the
        // packet writers below infallible.
        cfg.user = pigeon_protocol::packet::sanitize_name(&cfg.user);
        cfg.host = pigeon_protocol::packet::sanitize_name(&cfg.host);
        cfg.nick = clean_text(&cfg.nick);
        cfg.group = clean_text(&cfg.group);
        cfg.away = cfg.away.as_deref().map(clean_text);
        if !pigeon_protocol::client::version_accepted_by_ipmsg(cfg.version.as_bytes()) || cfg.version.contains(':') {
            cfg.version = "1".into();
        }
        let rng = fastrand::Rng::with_seed(cfg.seed);
        let mut e = Engine {
            cfg,
            peers: PeerTable::default(),
            out: VecDeque::new(),
            rng,
            last_packet_no,
            reserved_to: last_packet_no,
            next_id: 1,
            pending: Vec::new(),
            reads: Vec::new(),
            opened: VecDeque::new(),
            seen: Dedup::default(),
            pictures: pictures::Pictures::default(),
            keyring: secure::Keyring::default(),
            key_asked: HashMap::new(),
            key_stored: HashSet::new(),
            key_answered: HashMap::new(),
            answer_to: Vec::new(),
            answering: HashSet::new(),
            answered: std::collections::HashMap::new(),
            probe: VecDeque::new(),
            heard: HashMap::new(),
            probing: HashMap::new(),
            timers: Timers::default(),
            next_expiry_check: Duration::ZERO,
            quitting: false,
            stats: Stats::default(),
        };
        for k in seen {
            e.remember(k);
        }
        e
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The addresses our datagrams come from changed (DHCP, a new network).
    pub fn set_local(&mut self, local: Vec<std::net::IpAddr>) {
        self.cfg.local = local;
    }

    /// The peer table.
    pub fn peers(&self) -> &PeerTable {
        &self.peers
    }

    /// What was received and dropped so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Number of messages still waiting for an acknowledgement (sending or queued).
    pub fn unacknowledged(&self) -> usize {
        self.pending.len()
    }

    /// Restores a queued message from the store (after a restart); it is sent
    /// again, with its original packet number, when the peer appears.
    /// `command` is the command word as stored: what the message was (sealed,
    /// to several) is kept; the charset flags are the peer's when it is back.
    pub fn restore_queued(
        &mut self,
        peer: PeerKey,
        packet_no: u64,
        text: &str,
        command: u32,
        files: Vec<(u64, OfferFile)>,
        queued_at_ms: i64,
    ) {
        let id = self.next_id;
        self.next_id += 1;
        // The datagram is built when the peer's charset is known.
        self.pending.push(Pending {
            id,
            peer,
            packet_no,
            body: Body::Unwritten { opts: Command(command).opts() & KEPT_OPTS, text: text.to_string(), files },
            sends: 0,
            next: None,
            queued_at_ms: Some(queued_at_ms),
        });
        self.rearm();
    }

    /// A peer's public key from the store, with the modulus pinned for it.
    pub fn restore_pubkey(&mut self, peer: PeerKey, key: PublicKey, pinned: Vec<u8>) {
        self.keyring.restore(peer, key, pinned);
    }

    /// The key we hold for a peer.
    pub fn pubkey(&self, peer: &PeerKey) -> Option<&KnownKey> {
        self.keyring.get(peer)
    }

    /// A peer known from the store (an earlier run), offline until it
    /// announces itself: a message to it waits in the outbox. Its charset
    /// is not known yet, so such a message is written when it comes back.
    pub fn restore_peer(
        &mut self,
        key: PeerKey,
        nick: &str,
        group: &str,
        addr: SocketAddr,
        client: ClientKind,
        marker: Option<String>,
    ) {
        self.peers.remember(Peer {
            key,
            nick: nick.to_string(),
            group: group.to_string(),
            addr,
            client,
            version: String::new(),
            status: Opts(0),
            away: false,
            charset: self.cfg.legacy,
            announced: None,
            entry_charset: None,
            online: false,
            seen: Duration::ZERO,
            marker,
            also: Vec::new(),
            moved: false,
            key_mark: peers::KeyMark::None,
        });
    }

    /// A store operation could not be committed: an incoming message it
    /// held was not acknowledged, so its retransmission must be taken in
    /// again rather than treated as a duplicate.
    pub fn store_failed(&mut self, op: &StoreOp) {
        if let StoreOp::Incoming(m) = op {
            self.seen.forget(&(m.from.key.clone(), m.packet_no.to_string(), text_hash(&m.text)));
        }
    }

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Engine::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.timers.next_expiring()
    }

    /// Sets the timers that stand for the earliest of a queue again from
    /// their queue; the others are set and stopped where their work is
    /// scheduled.
    fn rearm(&mut self) {
        for timer in Timer::VALUES {
            self.rearm_timer(timer);
        }
    }

    /// [`Engine::rearm`] for one timer.
    fn rearm_timer(&mut self, timer: Timer) {
        let at = match timer {
            Timer::AskSilent => self.next_ask(),
            Timer::Retry => self.next_retry(),
            Timer::ReadRetry => self.next_read_retry(),
            Timer::Outbox => (!self.pending.is_empty()).then_some(self.next_expiry_check),
            Timer::Aging | Timer::FirstEntry | Timer::SecondEntry | Timer::Answer | Timer::Probe | Timer::Exit => {
                return
            }
        };
        self.timers.put(timer, at);
    }

    fn packet_no(&mut self, now: Now) -> u64 {
        let secs = (now.unix_ms / 1000).max(0) as u64;
        self.last_packet_no = secs.max(self.last_packet_no + 1);
        if self.last_packet_no >= self.reserved_to {
            self.reserved_to = self.last_packet_no + COUNTER_BLOCK;
            self.out.push_back(Output::Store { op: StoreOp::Counter(self.reserved_to), then: Vec::new() });
        }
        self.last_packet_no
    }

    fn transmit(&mut self, dst: SocketAddr, payload: Vec<u8>) {
        self.stats.sent += 1;
        self.out.push_back(Output::Transmit(Transmit { dst, payload }));
    }

    fn event(&mut self, e: Event) {
        self.out.push_back(Output::Event(e));
    }

    /// Our status flags.
    fn status(&self) -> Opts {
        let mut s = Opts(Opts::FILEATTACHOPT | Opts::CAPUTF8OPT);
        if self.cfg.keys.is_some() {
            // CAPFILEENCOPT: encrypted, signed file requests are taken
            // (net::sealed) and made (transfer::fetch).
            s |= Opts::ENCRYPTOPT | Opts::ENCEXTMSGOPT | Opts::CAPFILEENCOPT;
        }
        if self.cfg.away.is_some() {
            s |= Opts::ABSENCEOPT;
        }
        s
    }

    /// True if a datagram from `from` is one of ours (our broadcast coming
    /// back): our port on one of our addresses. Names prove nothing: every
    /// Raspberry Pi is `pi@raspberrypi`.
    fn is_own(&self, from: SocketAddr) -> bool {
        from.port() == self.cfg.port && self.cfg.local.contains(&from.ip())
    }

    /// Our header for a packet.
    fn header(&self, packet_no: u64, command: Command) -> Header<'_> {
        Header {
            version: self.cfg.version.as_bytes(),
            packet_no,
            user: self.cfg.user.as_bytes(),
            host: self.cfg.host.as_bytes(),
            command,
        }
    }

    /// Writes a packet with a plain body to `peer`'s charset (UTF8OPT if it reads it).
    fn simple_packet(&mut self, now: Now, mode: Mode, opts: impl Into<Opts>, body: &[u8]) -> Vec<u8> {
        let no = self.packet_no(now);
        let command = Command::new(mode, opts);
        let mut out = Vec::with_capacity(64 + body.len());
        let header = self.header(no, command);
        // A body with a NUL (echoed from a peer) loses the NULs rather than
        // failing: the header fields were made safe in `new`.
        let body: std::borrow::Cow<'_, [u8]> =
            if body.contains(&0) { body.iter().copied().filter(|&b| b != 0).collect() } else { body.into() };
        pigeon_protocol::write_packet(&mut out, &header, &body, &[]).expect("own header fields are sanitized in new()");
        out
    }

    fn broadcast_all(&mut self, payload: Vec<u8>) {
        let targets = self.cfg.targets.clone();
        for t in targets {
            self.transmit(t, payload.clone());
        }
    }

    /// Handles a user request.
    pub fn command(&mut self, now: Now, req: Request) -> Result<Vec<u64>, RequestError> {
        let r = self.request(now, req);
        self.rearm();
        r
    }

    /// [`Engine::command`] but for the timers.
    fn request(&mut self, now: Now, req: Request) -> Result<Vec<u64>, RequestError> {
        match req {
            Request::Start => {
                self.start(now);
                Ok(vec![])
            }
            Request::Send { to, text, sealed } => self.send(now, &to, &text, sealed, &[]),
            Request::Offer { to, text, sealed, files } => self.send(now, &to, &text, sealed, &files),
            Request::Broadcast { text } => {
                let flags = self.cfg.oneshot_flag() | Opts::BROADCASTOPT;
                let no = self.packet_no(now);
                let mut sent_to = HashSet::new();
                let p = self.message_packet(no, flags, &text, self.cfg.legacy, &[])?;
                if p.len() > 32_767 {
                    return Err(RequestError::TooLong {
                        peer: PeerKey::new("*", "*"),
                        client: "broadcast",
                        bytes: p.len(),
                        limit: 32_767,
                    });
                }
                let targets = self.cfg.targets.clone();
                sent_to.extend(targets.iter().copied());
                let peers: Vec<Peer> = self.peers.all().into_iter().filter(|p| p.online).cloned().collect();
                // A peer inside a directed broadcast we just sent to (x.y.z.255)
                // has its copy; others (other subnets, unicast targets) get one each.
                let broadcasts: Vec<SocketAddr> = sent_to.iter().copied().collect();
                let reached = |ip: std::net::IpAddr| {
                    broadcasts.iter().any(|t| match (t.ip(), ip) {
                        (std::net::IpAddr::V4(b), std::net::IpAddr::V4(p)) => {
                            b.octets()[3] == 255 && b.octets()[..3] == p.octets()[..3]
                        }
                        _ => false,
                    })
                };
                // Every peer's copy is written and checked before anything
                // goes: a refusal sends nothing.
                let mut copies = Vec::with_capacity(peers.len());
                for p in peers {
                    let cs = p.write_charset(self.cfg.legacy);
                    let utf8 = if p.reads_utf8_flag() { Opts::UTF8OPT | Opts::CAPUTF8OPT } else { 0 };
                    let pkt = self.message_packet(no, flags | utf8, &text, cs, &[])?;
                    fits(&p, &pkt)?;
                    copies.push((p, utf8, pkt));
                }
                // iptux reads our text as UTF-8 (iptux_entry), not the
                // broadcast's legacy charset: its own copy goes first, and
                // iptux drops the broadcast's as a repeated packet number.
                let mut iptux = HashSet::new();
                for (p, _, pkt) in &copies {
                    if p.client == ClientKind::Iptux && iptux.insert(p.addr) {
                        sent_to.insert(p.addr);
                        self.transmit(p.addr, pkt.clone());
                    }
                }
                for t in targets.into_iter().filter(|t| !iptux.contains(t)) {
                    self.transmit(t, p.clone());
                }
                let mut to = Vec::new();
                for (p, _, pkt) in copies {
                    if !reached(p.addr.ip()) && sent_to.insert(p.addr) {
                        self.transmit(p.addr, pkt);
                    }
                    to.push((0, p.key));
                }
                // Told with the peers online that got a copy; recorded once,
                // to everyone, asking for no receipt.
                self.event(Event::Sent(Sent {
                    packet_no: no,
                    text: text.clone(),
                    command: Command::new(Mode::SENDMSG, flags).0,
                    to,
                    offers: Vec::new(),
                    unix_ms: now.unix_ms,
                }));
                let everyone = PeerInfo {
                    key: PeerKey::everyone(),
                    nick: "everyone".into(),
                    group: String::new(),
                    addr: self.cfg.targets.first().copied().unwrap_or(SocketAddr::from(([0, 0, 0, 0], self.cfg.port))),
                    client: ClientKind::Unknown,
                    away: false,
                };
                let row = self.outgoing_row(0, everyone, &text, no, flags, now);
                self.out.push_back(Output::Store { op: StoreOp::Outgoing(vec![row]), then: Vec::new() });
                Ok(vec![])
            }
            Request::SetAway(text) => {
                self.cfg.away = text.as_deref().map(clean_text);
                self.event(Event::Away(self.cfg.away.clone()));
                self.announce_change(now);
                Ok(vec![])
            }
            Request::SetName { nick, group } => {
                self.cfg.nick = clean_text(&nick);
                self.cfg.group = clean_text(&group);
                self.announce_change(now);
                Ok(vec![])
            }
            Request::Open { peer, packet_no, read_check } => {
                let p = self.peers.get(&peer).cloned().ok_or_else(|| RequestError::UnknownPeer(peer.clone()))?;
                // READMSG names a decimal number (protocol.md §4).
                if packet_no.number().is_none() {
                    return Err(RequestError::Encode(format!("{packet_no:?} is not a packet number")));
                }
                let key = (peer.clone(), packet_no.clone());
                if self.opened.contains(&key) {
                    return Ok(vec![]); // its receipt went out already
                }
                if self.opened.len() >= OPENED_LIMIT {
                    self.opened.pop_front();
                }
                self.opened.push_back(key);
                let opts = if read_check { Opts::READCHECKOPT } else { 0 };
                let pkt = self.simple_packet(now, Mode::READMSG, opts, packet_no.as_str().as_bytes());
                let no = self.last_packet_no;
                self.transmit(p.addr, pkt.clone());
                // Only a checked receipt is answered (ANSREADMSG), so only it is retried.
                if read_check {
                    self.await_read_answer(now, p.addr, no, pkt);
                }
                self.out.push_back(Output::Store { op: StoreOp::InRead { peer, packet_no }, then: Vec::new() });
                Ok(vec![])
            }
            Request::Refresh => {
                self.refresh(now);
                Ok(vec![])
            }
            Request::Shake(peer) => {
                let p = self.peers.get(&peer).cloned().ok_or_else(|| RequestError::UnknownPeer(peer.clone()))?;
                let pkt = self.simple_packet(now, Mode::FEIQ_SHAKE, 0, b"");
                self.transmit(p.addr, pkt);
                Ok(vec![])
            }
            Request::TrustKey(peer) => {
                self.keyring.trust(&peer);
                Ok(vec![])
            }
            Request::MarkSeen(peer) => {
                self.out.push_back(Output::Store { op: StoreOp::Seen(peer), then: Vec::new() });
                Ok(vec![])
            }
            Request::Decline { peer, packet_no } => {
                let p = self.peers.get(&peer).cloned().ok_or_else(|| RequestError::UnknownPeer(peer.clone()))?;
                if packet_no.number().is_none() {
                    return Err(RequestError::Encode(format!("{packet_no:?} is not a packet number")));
                }
                let pkt = self.simple_packet(now, Mode::RELEASEFILES, 0, packet_no.as_str().as_bytes());
                self.transmit(p.addr, pkt);
                // Recorded for every client (`pigeon offers` says declined).
                self.out.push_back(Output::Store { op: StoreOp::Declined { peer, packet_no }, then: Vec::new() });
                Ok(vec![])
            }
            Request::GetInfo(peer) => {
                let p = self.peers.get(&peer).cloned().ok_or(RequestError::UnknownPeer(peer))?;
                let a = self.simple_packet(now, Mode::GETINFO, 0, b"");
                self.transmit(p.addr, a);
                let b = self.simple_packet(now, Mode::GETABSENCEINFO, 0, b"");
                self.transmit(p.addr, b);
                Ok(vec![])
            }
            Request::Probe(addrs) => {
                self.queue_probes(now, addrs);
                Ok(vec![])
            }
            Request::Quit => {
                self.quit(now);
                Ok(vec![])
            }
        }
    }

    fn message_packet(
        &self,
        no: u64,
        opts: Opts,
        text: &str,
        cs: Charset,
        attachments: &[Attachment],
    ) -> Result<Vec<u8>, RequestError> {
        let body = MessageBody { text: text.to_string(), font: None, attachments: attachments.to_vec() };
        let header = self.header(no, Command::new(Mode::SENDMSG, opts));
        let mut out = Vec::with_capacity(64 + text.len());
        body.encode(&header, cs, &mut out).map_err(|e| RequestError::Encode(e.to_string()))?;
        Ok(out)
    }

    /// A peer whose messages must be encrypted: it announces ENCRYPTOPT
    /// and we have keys (`plaintext_fallback` acts only once its key did not come).
    fn must_encrypt(&self, p: &Peer) -> bool {
        self.cfg.keys.is_some() && p.status.has(Opts::ENCRYPTOPT)
    }

    /// Message `no` to `p` (option bits `flags`: SENDCHECKOPT,
    /// SECRETEXOPT, AUTORETOPT…; the files under their IDs), in what `p`
    /// reads: encrypted (ENCRYPTOPT) to a peer that must get ciphertext;
    /// `None` while we lack its key. Returns the command's option bits too.
    fn write_message(
        &self,
        p: &Peer,
        no: u64,
        flags: Opts,
        text: &str,
        files: &[(u64, OfferFile)],
    ) -> Result<Option<(Opts, Vec<u8>)>, RequestError> {
        let (opts, cs, attachments) = self.message_parts(p, flags, files);
        let encode_err = |e: pigeon_protocol::Error| RequestError::Encode(e.to_string());
        if let (true, Some(ours)) = (self.must_encrypt(p), self.cfg.keys.as_deref()) {
            let Some(known) = self.keyring.get(&p.key) else { return Ok(None) };
            let clean = text.replace("\r\n", "\n").replace('\0', "");
            let body_text = cs.encode(&clean);
            let list = if attachments.is_empty() {
                None
            } else {
                let mut l = Vec::new();
                Attachment::encode_list(&attachments, cs, &mut l).map_err(encode_err)?;
                Some(l)
            };
            let raw_no = no.to_string();
            if let Some(sealed) =
                secure::seal(ours, &known.key, p.status, raw_no.as_bytes(), &body_text, list.as_deref())
            {
                let (body, extra) = sealed.map_err(encode_err)?;
                let header = self.header(no, Command::new(Mode::SENDMSG, opts | extra));
                let mut out = Vec::with_capacity(64 + body.len());
                header.write(&mut out).map_err(encode_err)?;
                out.extend_from_slice(&body);
                return Ok(Some((opts | extra, out)));
            }
            // No algorithm in common (or a key whose capability word offers
            // none): not plain on our own; it waits, then fails or falls
            // back as a missing key does.
            return Ok(None);
        }
        Ok(Some((opts, self.message_packet(no, opts, text, cs, &attachments)?)))
    }

    /// [`Engine::write_message`] in plain text whatever the peer announces
    /// (`plaintext_fallback`, once it gave no key).
    fn write_plain(
        &self,
        p: &Peer,
        no: u64,
        flags: Opts,
        text: &str,
        files: &[(u64, OfferFile)],
    ) -> Result<Vec<u8>, RequestError> {
        let (opts, cs, attachments) = self.message_parts(p, flags, files);
        self.message_packet(no, opts, text, cs, &attachments)
    }

    /// A message's option bits (`flags`, FILEATTACHOPT, UTF-8 for a peer
    /// that reads it), the charset it is written in, and its file list in
    /// the form `p`'s client reads.
    fn message_parts(&self, p: &Peer, flags: Opts, files: &[(u64, OfferFile)]) -> (Opts, Charset, Vec<Attachment>) {
        let mut opts = flags | self.cfg.oneshot_flag();
        if !files.is_empty() {
            opts |= Opts::FILEATTACHOPT;
        }
        if p.reads_utf8_flag() {
            opts |= Opts::UTF8OPT | Opts::CAPUTF8OPT;
        }
        let (ids, what): (Vec<u64>, Vec<OfferFile>) = files.iter().cloned().unzip();
        (opts, p.write_charset(self.cfg.legacy), attachment_list(&what, &ids, p.client))
    }

    /// Asks `peer` for its public key (GETPUBKEY with our capability word),
    /// at most once a second; `auto` when only to check signatures.
    fn ask_key(&mut self, now: Now, peer: &PeerKey, auto: bool) {
        if self.cfg.keys.is_none() {
            return;
        }
        if self.key_asked.get(peer).is_some_and(|t| now.mono < *t + Duration::from_secs(1)) {
            return;
        }
        let Some(addr) = self.peers.get(peer).map(|p| p.addr) else { return };
        if self.key_asked.len() >= secure::MAX_KEYS {
            self.key_asked.clear();
        }
        self.key_asked.insert(peer.clone(), now.mono);
        let body = pigeon_protocol::pubkey::encode_getpubkey(OurKeys::CAPA);
        let opts = if auto { Opts::AUTORETOPT } else { 0 };
        let pkt = self.simple_packet(now, Mode::GETPUBKEY, opts, body.as_bytes());
        self.transmit(addr, pkt);
    }

    /// The row the store keeps of a SENDMSG we sent to `to` (sealed and
    /// broadcast are read from `opts`).
    fn outgoing_row(&self, id: u64, to: PeerInfo, text: &str, no: u64, opts: Opts, now: Now) -> Outgoing {
        Outgoing {
            id,
            to,
            offers: Vec::new(),
            offers_expire_ms: now.unix_ms + self.cfg.offer_expiry.as_millis() as i64,
            text: text.to_string(),
            packet_no: no,
            command: Command::new(Mode::SENDMSG, opts).0,
            unix_ms: now.unix_ms,
        }
    }

    fn send(
        &mut self,
        now: Now,
        to: &[PeerKey],
        text: &str,
        sealed: bool,
        files: &[OfferFile],
    ) -> Result<Vec<u64>, RequestError> {
        let recipients: Vec<Peer> = to
            .iter()
            .map(|k| self.peers.get(k).cloned().ok_or_else(|| RequestError::UnknownPeer(k.clone())))
            .collect::<Result<_, _>>()?;
        let mut base = self.cfg.oneshot_flag() | Opts::SENDCHECKOPT;
        if sealed {
            base |= Opts::SECRETEXOPT;
        }
        if recipients.len() >= 2 {
            base |= Opts::MULTICASTOPT;
        }
        if !files.is_empty() {
            base |= Opts::FILEATTACHOPT;
        }
        // Decimal file IDs below 2^31, as IPMsg writes them, from the
        // system's CSPRNG: with the addressee's address they guard access
        // to the files (net::files), so they must not be guessable.
        let ids_of = file_ids(files.len());
        // All recipients share one packet number (IPMsg does the same). Every
        // packet is written and its length checked before anything is sent
        // (a refusal costs a number, which is harmless: they only grow).
        let no = self.packet_no(now);
        let offered: Vec<(u64, OfferFile)> = ids_of.iter().copied().zip(files.iter().cloned()).collect();
        let mut packets = Vec::with_capacity(recipients.len());
        for p in &recipients {
            // To a peer not heard from since start, a text is written when it
            // comes back (its charset and UTF-8 support are known then); to
            // one that encrypts, once we have its key.
            let later = !p.online && !p.heard();
            let written = if later { None } else { self.write_message(p, no, base, text, &offered)? };
            match &written {
                Some((_, pkt)) => fits(p, pkt)?,
                // Checked again once written.
                None => fits(p, &self.write_plain(p, no, base, text, &offered)?)?,
            }
            packets.push(written);
        }
        let mut ids = Vec::new();
        let mut rows = Vec::new();
        let mut sends = Vec::new();
        for (p, written) in recipients.iter().zip(packets) {
            let id = self.next_id;
            self.next_id += 1;
            let opts = written.as_ref().map_or(base, |(o, _)| *o);
            let mut row = self.outgoing_row(id, PeerInfo::from(p), text, no, opts, now);
            row.offers = offered.clone();
            rows.push(row);
            let online = p.online;
            let body = match written {
                Some((_, pkt)) => Body::Written(pkt),
                None => Body::Unwritten { opts: base & KEPT_OPTS, text: text.to_string(), files: offered.clone() },
            };
            let pkt = body.written().cloned();
            self.pending.push(Pending {
                id,
                peer: p.key.clone(),
                packet_no: no,
                sends: match (&body, online) {
                    // Online and waiting for its key: key requests are counted.
                    (_, true) => 1,
                    (Body::Unwritten { .. }, false) => 0,
                    (Body::Written(_), false) => self.cfg.retries + 1,
                },
                body,
                next: online.then_some(now.mono + self.cfg.retry_interval),
                queued_at_ms: (!online).then_some(now.unix_ms),
            });
            ids.push(id);
            sends.push((online, p.key.clone(), p.addr, id, pkt));
        }
        self.event(Event::Sent(Sent {
            packet_no: no,
            text: text.to_string(),
            command: Command::new(Mode::SENDMSG, base).0,
            to: ids.iter().copied().zip(recipients.iter().map(|p| p.key.clone())).collect(),
            offers: ids_of.iter().copied().zip(files.iter().cloned()).collect(),
            unix_ms: now.unix_ms,
        }));
        // Stored before it is sent, so a crash never loses a sent message. An
        // offer must be on disk before the peer can ask for it: its
        // datagrams wait for the store.
        let mut transmits = Vec::new();
        let mut offline = Vec::new();
        let mut need_keys = Vec::new();
        for (online, key, addr, id, pkt) in sends {
            if online {
                match pkt {
                    Some(pkt) => {
                        self.stats.sent += 1;
                        transmits.push(Transmit { dst: addr, payload: pkt });
                    }
                    None => need_keys.push(key.clone()),
                }
                // Tells listeners (the chat) the packet number of each send.
                self.event(Event::Receipt { id, peer: key.clone(), packet_no: no, status: Delivery::Sending });
            } else {
                offline.push((key, id));
            }
        }
        if files.is_empty() {
            self.out.push_back(Output::Store { op: StoreOp::Outgoing(rows), then: Vec::new() });
            self.out.extend(transmits.into_iter().map(Output::Transmit));
        } else {
            self.out.push_back(Output::Store { op: StoreOp::Outgoing(rows), then: transmits });
        }
        for (key, id) in offline {
            self.queued(id, key, no);
        }
        for key in need_keys {
            self.ask_key(now, &key, false);
        }
        Ok(ids)
    }

    /// Handles the passing of time: every timer due at `now` (aging,
    /// entries, delayed answers, probes, exit, retries, outbox expiry), in
    /// that order.
    pub fn handle_timeout(&mut self, now: Now) {
        if self.cfg.oneshot || self.quitting {
            self.stop_aging();
        }
        for timer in Timer::VALUES {
            // What the timers before it did may have changed its queue.
            self.rearm_timer(timer);
            if !self.timers.is_expired(timer, now.mono) {
                continue;
            }
            self.timers.stop(timer);
            match timer {
                Timer::Aging => self.look_for_silent(now),
                Timer::AskSilent => self.ask_silent(now),
                Timer::FirstEntry | Timer::SecondEntry => self.send_entry(now),
                Timer::Answer => self.send_answers(now),
                Timer::Probe => self.send_probes(now),
                Timer::Exit => self.send_exit(now),
                Timer::Retry => self.retry_sends(now),
                Timer::ReadRetry => self.retry_reads(now),
                Timer::Outbox => self.check_outbox(now),
            }
        }
        if now.mono >= self.next_expiry_check {
            // Nothing was pending: the check's time moves on all the same.
            self.next_expiry_check = now.mono + OUTBOX_CHECK_EVERY;
        }
        self.rearm();
    }

    fn remember(&mut self, k: SeenKey) -> bool {
        self.seen.insert(k)
    }

    /// A picture was saved at `path`: records it as a message from its
    /// sender. Returns false when nobody we know sent it (iptux, too, takes
    /// pictures only from peers it lists); the caller then deletes the file.
    pub fn picture(&mut self, now: Now, source: PictureFrom, path: &std::path::Path) -> bool {
        let (key, from, packet_no, command) = match source {
            PictureFrom::Feiq(s) => {
                let Some(peer) = self.peers.get(&s.peer).filter(|p| p.heard() && p.addr.ip() == s.from) else {
                    return false;
                };
                let from = SocketAddr::new(s.from, peer.addr.port());
                (s.peer, from, s.packet_no, s.command)
            }
            PictureFrom::Iptux { from, header } => {
                let Ok(p) = Packet::decode(&header) else {
                    self.stats.malformed += 1;
                    return false;
                };
                let Some(peer) = self.peers.by_ip(from).filter(|k| k.heard()) else {
                    self.stats.ignored += 1;
                    return false;
                };
                let addr = SocketAddr::new(from, peer.addr.port());
                let cs = peer.write_charset(self.cfg.legacy);
                let name = PeerKey::from_wire(&cs.decode(p.user), &cs.decode(p.host));
                // The one at this address with that name, else the one at this address.
                let key = self
                    .peers
                    .by_source(&name, addr)
                    .filter(|q| q.addr.ip() == from)
                    .map_or_else(|| peer.key.clone(), |q| q.key.clone());
                (key, addr, p.no(), p.command.0)
            }
        };
        let verified = self.trusted_source(&key, from);
        let incoming = Incoming {
            verified,
            from: self.info_for(&key, from),
            text: format!("{PICTURE_PREFIX}{}", path.display()),
            packet_no,
            command,
            attachments: Vec::new(),
            unix_ms: now.unix_ms,
            security: Security::Plain,
        };
        self.received(incoming, Vec::new());
        true
    }

    /// A message from `key` at `from` that auto-accept may trust: from a
    /// peer heard (its entry) before, from its own address, which has not
    /// changed in this run (nothing on an IPMsg LAN is signed).
    fn trusted_source(&self, key: &PeerKey, from: SocketAddr) -> bool {
        self.peers.get(key).is_some_and(|p| p.heard() && p.at(from) && !p.moved)
    }

    /// A message received: told to listeners, then stored, and `then`
    /// (its acknowledgement) sent once it is on disk.
    fn received(&mut self, incoming: Incoming, then: Vec<Transmit>) {
        self.event(Event::Message(incoming.clone()));
        self.out.push_back(Output::Store { op: StoreOp::Incoming(incoming), then });
    }

    /// Handles one datagram from `from`.
    pub fn handle(&mut self, now: Now, from: SocketAddr, datagram: &[u8]) {
        self.datagram(now, from, datagram);
        self.rearm();
    }

    /// [`Engine::handle`] but for the timers.
    fn datagram(&mut self, now: Now, from: SocketAddr, datagram: &[u8]) {
        self.stats.received += 1;
        if self.is_own(from) {
            return; // our own broadcast
        }
        let Ok(p) = Packet::decode(datagram) else {
            self.stats.malformed += 1;
            return;
        };
        // Bounded memory: names longer than any client writes (IPMsg: 80
        // bytes) and packet numbers that are not 1-20 digits are dropped.
        if p.user.len() > 255 || p.host.len() > 255 || !(1..=20).contains(&p.packet_no.len()) {
            self.stats.malformed += 1;
            return;
        }
        let client = ClientKind::from_version(p.version);
        // (A peer known only from the store says nothing about this packet.)
        let known = self.peers.by_addr(from).or_else(|| self.peers.by_ip(from.ip())).filter(|k| k.heard()).cloned();
        // What this peer wrote in last: decides text that reads both ways
        // from clients that never say (iptux); its broadcast entries apart.
        let hint =
            known.as_ref().and_then(|k| if p.mode() == Mode::BR_ENTRY { k.entry_charset } else { Some(k.charset) });
        let mut sample = Vec::with_capacity(p.user.len() + p.host.len() + p.body().len());
        sample.extend_from_slice(p.user);
        sample.extend_from_slice(p.host);
        sample.extend_from_slice(p.body());
        let cs = charset::detect(p.opts(), client, hint, self.cfg.legacy, &sample);
        let mut name = PeerKey::from_wire(&cs.decode(p.user), &cs.decode(p.host));
        let mode = p.mode();
        if mode.is_presence() || mode == Mode::BR_ISGETLIST2 {
            let (entry, entry_cs) = Entry::decode(&p, self.cfg.legacy, hint);
            if let Some(t) = &entry.trailer {
                if let (Some(u), Some(h)) = (&t.user, &t.host) {
                    name = PeerKey::from_wire(u, h);
                }
            }
            let marker = match client {
                ClientKind::Feiq => FeiqVersion::parse(p.version).ok().map(|v| format!("mac:{}", v.mac)),
                _ => entry.trailer.as_ref().and_then(|t| t.instance.as_ref()).map(|i| format!("pigeon:{i}")),
            };
            self.note_heard(&name, from, now);
            self.presence(now, from, &p, name, marker, entry, entry_cs, client);
            self.start_aging(now);
            return;
        }
        self.note_heard(&name, from, now);
        let key = match self.peers.by_source(&name, from) {
            Some(peer) => peer.key.clone(),
            // A known peer keyed by IP may send header names in another
            // charset (IPMsg's ANSI acks): its recorded identity.
            None => match &known {
                Some(k) if k.addr.ip() == from.ip() && (mode != Mode::SENDMSG || cs != k.charset) => k.key.clone(),
                _ => match self.peers.identify(&name, None, from, now.mono) {
                    Identity::Known(k) | Identity::Also(k) | Identity::New(k) => k,
                },
            },
        };
        // Any packet from a peer proves it can be reached again: what waits
        // for it in the outbox goes out now, not only at its next entry. Not
        // for a peer known only from the store: its entry says where it is
        // now and what it reads.
        if self.pending.iter().any(|q| q.peer == key && q.next.is_none())
            && self.peers.get(&key).is_some_and(|p| p.heard())
        {
            self.flush_outbox(now, &key);
        }
        match mode {
            Mode::SENDMSG => self.message(now, from, &p, key, client, cs),
            Mode::RECVMSG => {
                let Ok(r) = PacketRef::decode(p.body()) else { return self.malformed() };
                self.acked(from, r.value, Delivery::Delivered);
            }
            Mode::READMSG => {
                let Ok(r) = PacketRef::decode(p.body()) else { return self.malformed() };
                if p.opts().has(Opts::READCHECKOPT) {
                    let ans = self.simple_packet(now, Mode::ANSREADMSG, 0, p.packet_no);
                    self.transmit(from, ans);
                }
                self.read_receipt(from, r.value);
            }
            Mode::ANSREADMSG => {
                let Ok(r) = PacketRef::decode(p.body()) else { return self.malformed() };
                self.read_answered(from, r.value);
            }
            Mode::RELEASEFILES => {
                let Ok(r) = PacketRef::decode(p.body()) else { return self.malformed() };
                // Only the addressee may give up its files: the release must
                // come from the peer's own address, not just carry its name.
                let own = self.peers.get(&key).is_some_and(|q| q.addr.ip() == from.ip() || q.at(from));
                if !own {
                    self.stats.ignored += 1;
                    return;
                }
                self.out.push_back(Output::Store {
                    op: StoreOp::Release { peer: key, packet_no: r.value },
                    then: Vec::new(),
                });
            }
            Mode::GETINFO => {
                let a = self.simple_packet(now, Mode::SENDINFO, 0, PRODUCT.as_bytes());
                self.transmit(from, a);
            }
            Mode::GETABSENCEINFO => {
                let text = self.cfg.away.clone().unwrap_or_else(|| NOT_ABSENCE_MODE.into());
                let cs = self.peers.get(&key).map_or(self.cfg.legacy, |p| p.write_charset(self.cfg.legacy));
                let opts = if cs == Charset::Utf8 && self.peers.get(&key).is_some_and(Peer::reads_utf8_flag) {
                    Opts::UTF8OPT
                } else {
                    0
                };
                let a = self.simple_packet(now, Mode::SENDABSENCEINFO, opts, &cs.encode(&text));
                self.transmit(from, a);
            }
            Mode::SENDINFO => {
                let text = cs.decode(p.body()).into_owned();
                self.event(Event::Info { peer: key, version: Some(text), absence: None });
            }
            Mode::SENDABSENCEINFO => {
                let text = cs.decode(p.body()).into_owned();
                self.event(Event::Info { peer: key, version: None, absence: Some(text) });
            }
            Mode::FEIQ_SHAKE => {
                let ack = self.simple_packet(now, Mode::FEIQ_SHAKE_ACK, 0, b"");
                self.transmit(from, ack);
                let info = self.info_for(&key, from);
                self.event(Event::Shake { from: info });
            }
            Mode::FEIQ_IMAGE => {
                let Ok(f) = ImageFragment::decode(p.payload) else { return self.malformed() };
                let ack = FragmentAck { id: f.id.clone(), index: f.index };
                let a = self.simple_packet(now, Mode::FEIQ_IMAGE_ACK, 0, ack.encode().as_bytes());
                self.transmit(from, a);
                // Put together only for a peer heard at this address: a
                // stranger's fragments are acknowledged, not kept.
                let known = self.peers.get(&key).is_some_and(|q| q.heard() && q.addr.ip() == from.ip());
                if !known {
                    return self.stats.ignored += 1;
                }
                if let pictures::Fragment::Complete(data) = self.pictures.fragment(&key, &f, now.mono) {
                    self.out.push_back(Output::SavePicture(SavePicture {
                        from: from.ip(),
                        peer: key,
                        packet_no: p.no(),
                        command: p.command.0,
                        data,
                    }));
                }
            }
            Mode::IPTUX_SENDMSG => self.iptux_group_text(now, from, &p, key, cs),
            Mode::GETPUBKEY => self.getpubkey(now, from, &p, key),
            Mode::ANSPUBKEY => self.anspubkey(now, from, &p, key),
            _ => self.stats.ignored += 1,
        }
    }

    fn malformed(&mut self) {
        self.stats.malformed += 1;
    }

    fn info_for(&self, key: &PeerKey, from: SocketAddr) -> PeerInfo {
        match self.peers.get(key) {
            Some(p) if p.heard() => PeerInfo::from(p),
            // Known from the store only: its name, but where it writes from now.
            Some(p) => PeerInfo { addr: from, ..PeerInfo::from(p) },
            None => PeerInfo {
                key: key.clone(),
                nick: key.user.clone(),
                group: String::new(),
                addr: from,
                client: ClientKind::Unknown,
                away: false,
            },
        }
    }

    /// Answers about keys have their own limits, apart from entries' and
    /// from each other (an ANSPUBKEY does not silence a DecryptErr): 4 of
    /// each kind a second per address. True (and counted) if one of `kind`
    /// may go to `to` now.
    fn may_answer_crypto(&mut self, to: SocketAddr, kind: Mode, now: Now) -> bool {
        // By IP: other source ports of the same host share the limit.
        let k = (to.ip(), kind.0);
        if self.key_answered.get(&k).is_some_and(|t| now.mono < *t + Duration::from_millis(250)) {
            return false;
        }
        if self.key_answered.len() >= ANSWERED_LIMIT {
            self.key_answered.clear();
        }
        self.key_answered.insert(k, now.mono);
        true
    }

    /// GETPUBKEY (§7.1): answered with the key of the size the asker can
    /// use, at most 4 times a second per IP address (the answer is ten
    /// times the request: a spoofed flood gets little). A peer that asks in order to send, and
    /// signs, is asked back for its key (before our answer goes, so that
    /// it arrives before the message it will send).
    fn getpubkey(&mut self, now: Now, from: SocketAddr, p: &Packet<'_>, key: PeerKey) {
        let Some(ours) = self.cfg.keys.clone() else { return self.stats.ignored += 1 };
        let Ok(theirs) = pigeon_protocol::pubkey::decode_getpubkey(p.body()) else { return self.malformed() };
        let Some(pair) = ours.for_peer(theirs) else { return self.stats.ignored += 1 };
        if !self.may_answer_crypto(from, Mode::ANSPUBKEY, now) {
            return self.stats.ignored += 1;
        }
        let signs = theirs.intersects(Capa::SIGN_SHA256 | Capa::SIGN_SHA1);
        if !p.opts().has(Opts::AUTORETOPT) && signs && self.keyring.get(&key).is_none() {
            self.ask_key(now, &key, true);
        }
        let body = pair.anspubkey_body(OurKeys::CAPA);
        let a = self.simple_packet(now, Mode::ANSPUBKEY, 0, body.as_bytes());
        self.transmit(from, a);
    }

    /// ANSPUBKEY (§7.1): the key is checked (a fingerprinted user name must
    /// match it), kept, pinned if it is the first, flagged if it is not the
    /// pinned one; what waited for it goes out.
    fn anspubkey(&mut self, now: Now, from: SocketAddr, p: &Packet<'_>, key: PeerKey) {
        // Only from the peer's own address (a name proves nothing on an
        // IPMsg LAN), and only when we asked.
        let own = self.peers.get(&key).is_some_and(|q| q.at_ip(from.ip()));
        if self.cfg.keys.is_none() || !own || !self.key_asked.contains_key(&key) {
            return self.stats.ignored += 1;
        }
        let Ok(k) = PublicKey::decode_anspubkey(p.body()) else { return self.malformed() };
        if !k.matches_user(&String::from_utf8_lossy(p.user)) {
            return self.stats.ignored += 1;
        }
        let took = self.keyring.take(&key, k.clone());
        // Stored whenever it differs from what we held (or was not stored
        // in this run): the store and the keyring never drift apart.
        if took != secure::Took::Same || !self.key_stored.contains(&key) {
            if self.key_stored.len() >= secure::MAX_KEYS {
                self.key_stored.clear();
            }
            self.key_stored.insert(key.clone());
            self.out.push_back(Output::Store {
                op: StoreOp::PeerKey {
                    peer: key.clone(),
                    capa: k.capa().bits(),
                    exponent: k.exponent_be(),
                    modulus: k.modulus_be(),
                },
                then: Vec::new(),
            });
        }
        if took == secure::Took::Changed {
            self.event(Event::KeyChanged { peer: key.clone(), fingerprint: k.fingerprint() });
        }
        self.key_arrived(now, &key);
    }

    /// iptux's group-window text (0xFB, protocol.md §9): shown like a
    /// broadcast, never acknowledged (iptux asks for nothing).
    fn iptux_group_text(&mut self, now: Now, from: SocketAddr, p: &Packet<'_>, key: PeerKey, cs: Charset) {
        let text = cs.decode(p.body()).trim_end_matches('\0').to_string();
        if text.is_empty() {
            self.stats.ignored += 1;
            return;
        }
        if !self.remember((key.clone(), String::from_utf8_lossy(p.packet_no).into_owned(), text_hash(&text))) {
            self.stats.duplicates += 1;
            return;
        }
        let verified = self.trusted_source(&key, from);
        let incoming = Incoming {
            verified,
            from: self.info_for(&key, from),
            text,
            packet_no: p.no(),
            command: p.command.0,
            attachments: Vec::new(),
            unix_ms: now.unix_ms,
            security: Security::Plain,
        };
        self.received(incoming, Vec::new());
    }

    fn message(&mut self, now: Now, from: SocketAddr, p: &Packet<'_>, key: PeerKey, client: ClientKind, cs: Charset) {
        let opts = p.opts();
        let automatic = opts.has(Opts::BROADCASTOPT) || opts.has(Opts::AUTORETOPT);
        let wants_ack = opts.has(Opts::SENDCHECKOPT) && !automatic;
        let ack = wants_ack.then(|| {
            let a = self.simple_packet(now, Mode::RECVMSG, 0, p.packet_no);
            Transmit { dst: from, payload: a }
        });
        // What a guessed client wrote in decides its next text that reads
        // both ways (charset::guess).
        if matches!(client, ClientKind::Iptux | ClientKind::Unknown) && !p.body().is_ascii() {
            if let Some(peer) = self.peers.get_mut(&key) {
                peer.charset = cs;
            }
        }
        let mut security = Security::Plain;
        let mut opened = None;
        if let (true, Some(ours)) = (opts.has(Opts::ENCRYPTOPT), self.cfg.keys.clone()) {
            let cs = if opts.has(Opts::UTF8OPT) { Charset::Utf8 } else { self.cfg.legacy };
            match secure::open(&ours, self.keyring.get(&key), opts, p.packet_no, p.payload, cs) {
                Ok(o) => {
                    security = o.security;
                    if o.need_key {
                        self.ask_key(now, &key, true);
                    }
                    let text = cs.decode(&o.text).replace("\r\n", "\n");
                    let text = feiq::split_font(&text).0.to_string();
                    opened = Some(MessageBody { text, font: None, attachments: o.attachments });
                }
                Err(secure::Unreadable) => {
                    // Perhaps signed with a new key of the peer's (a
                    // reinstall): ask for it, its retry may verify.
                    self.ask_key(now, &key, true);
                    // Every failure alike (no padding oracle): no ack for
                    // this copy, and IP Messenger's DecryptErr, once a
                    // second per address at most.
                    self.stats.undecryptable += 1;
                    tracing::debug!("cannot decrypt a message from {key}: DecryptErr");
                    if !automatic && self.may_answer_crypto(from, Mode::SENDMSG, now) {
                        let no = self.packet_no(now);
                        let flags = Opts(Opts::AUTORETOPT | Opts::NOLOGOPT);
                        if let Ok(reply) = self.message_packet(no, flags, DECRYPT_ERR, self.cfg.legacy, &[]) {
                            self.transmit(from, reply);
                        }
                    }
                    return;
                }
            }
        }
        if security == Security::Plain && self.cfg.require_encryption && !automatic {
            let can_encrypt = self.peers.get(&key).is_some_and(|q| q.status.has(Opts::ENCRYPTOPT))
                || self.keyring.get(&key).is_some();
            if can_encrypt {
                // Not acknowledged: its sender sees it was not delivered.
                self.stats.refused_plain += 1;
                return;
            }
        }
        let decoded = match opened {
            Some(b) => Ok(b),
            None => MessageBody::decode(p, self.cfg.legacy, Some(cs)).map(|(b, _)| b),
        };
        let mut body = match decoded {
            Ok(b) => b,
            Err(_) => {
                // Keep the text even if the attachment list is broken.
                self.stats.malformed += 1;
                MessageBody { text: feiq::split_font(&cs.decode(p.body())).0.to_string(), ..Default::default() }
            }
        };
        // A peer that could not read our encrypted message says so: that
        // send failed, even if its retry is acknowledged, and the key we
        // hold for it is stale.
        let own = self.peers.get(&key).is_some_and(|q| q.at_ip(from.ip()));
        if opts.has(Opts::AUTORETOPT) && body.text.starts_with("DecryptErr") && own {
            self.decrypt_err_from(&key);
        }
        // FeiQ's inline pictures are referenced in the text (`/~#>id<B~`);
        // each follows as its own message once its fragments are in.
        if client == ClientKind::Feiq && body.text.contains("/~#>") {
            let refs: Vec<String> = feiq::image_refs(&body.text).into_iter().map(str::to_string).collect();
            for id in refs {
                body.text =
                    body.text.replace(&format!("/~#>{id}<B~"), "[picture]").replace(&format!("/~#>{id}<G~"), "[face]");
            }
        }
        let dedup_key = (key.clone(), String::from_utf8_lossy(p.packet_no).into_owned(), text_hash(&body.text));
        if !self.remember(dedup_key) {
            self.stats.duplicates += 1;
            if let Some(a) = ack {
                self.out.push_back(Output::Store { op: StoreOp::Barrier, then: vec![a] });
            }
            return;
        }
        if !self.peers.get(&key).is_some_and(Peer::heard)
            && !opts.has(Opts::NOADDLISTOPT)
            && !automatic
            && !self.cfg.oneshot
            && !self.quitting
        {
            // Ask an unknown sender who it is (§3.6), at most once a
            // second per address (like answers: no reflection amplifier).
            if self.may_answer(from, now) {
                self.note_answered(from, now);
                let e = self.entry_packet(now, Mode::BR_ENTRY, 0);
                self.transmit(from, e);
            }
        }
        let verified = self.trusted_source(&key, from);
        let incoming = Incoming {
            verified,
            from: self.info_for(&key, from),
            text: body.text,
            packet_no: p.no(),
            command: p.command.0,
            attachments: body.attachments,
            unix_ms: now.unix_ms,
            security,
        };
        self.received(incoming, ack.into_iter().collect());
        if let (Some(text), false) = (self.cfg.away.clone(), automatic) {
            let peer = self.peers.get(&key).cloned();
            let (pcs, utf8) = match &peer {
                Some(pp) => (pp.write_charset(self.cfg.legacy), pp.reads_utf8_flag()),
                None => (cs, false),
            };
            let mut flags = Opts(Opts::AUTORETOPT | if utf8 { Opts::UTF8OPT | Opts::CAPUTF8OPT } else { 0 });
            let no = self.packet_no(now);
            // Encrypted to a peer that must get ciphertext (none without its key).
            let reply = match peer.as_ref().filter(|pp| self.must_encrypt(pp)) {
                Some(pp) => match self.write_message(pp, no, Opts(Opts::AUTORETOPT), &text, &[]) {
                    Ok(Some((o, dg))) => {
                        flags = o;
                        Ok(dg)
                    }
                    Ok(None) => {
                        self.ask_key(now, &key, false);
                        Err(RequestError::Encode("no key yet".into()))
                    }
                    Err(e) => Err(e),
                },
                None => self.message_packet(no, flags, &text, pcs, &[]),
            };
            if let Ok(reply) = reply {
                self.transmit(from, reply);
                // Kept in the history (it asks for no receipt, like a broadcast).
                let row = self.outgoing_row(0, self.info_for(&key, from), &text, no, flags, now);
                let command = row.command;
                self.out.push_back(Output::Store { op: StoreOp::Outgoing(vec![row]), then: Vec::new() });
                self.event(Event::Sent(Sent {
                    packet_no: no,
                    text,
                    command,
                    to: vec![(0, key)],
                    offers: Vec::new(),
                    unix_ms: now.unix_ms,
                }));
            }
        }
    }
}

/// `n` distinct file IDs in 1..2^31 from the system's CSPRNG.
fn file_ids(n: usize) -> Vec<u64> {
    let mut ids: Vec<u64> = Vec::with_capacity(n);
    while ids.len() < n {
        let mut b = [0u8; 4];
        getrandom::fill(&mut b).expect("the system's random source");
        let id = u64::from(u32::from_le_bytes(b) & 0x7fff_ffff);
        if id != 0 && !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids
}

/// Refuses a packet the peer's client would cut short (iptux reads 8 KiB,
/// FeiQ 4 KiB; the margin covers a retry's longer packet number).
fn fits(p: &Peer, pkt: &[u8]) -> Result<(), RequestError> {
    if pkt.len() + 10 > p.max_datagram() {
        return Err(RequestError::TooLong {
            peer: p.key.clone(),
            client: p.client.display_name(),
            bytes: pkt.len() + 10,
            limit: p.max_datagram(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod sim;

/// The attachment list for one recipient: decimal IDs, plain attributes (iptux
/// drops a list with option bits), and no `:` in names for clients that
/// cannot store or parse it (Windows clients, iptux: protocol.md §10.5).
fn attachment_list(files: &[OfferFile], ids: &[u64], client: ClientKind) -> Vec<Attachment> {
    files
        .iter()
        .zip(ids)
        .map(|(f, id)| Attachment {
            id: *id,
            name: if client == ClientKind::Pigeon { f.name.clone() } else { f.name.replace(':', "_") },
            size: f.size,
            mtime: f.mtime,
            attr: if f.dir { pigeon_protocol::FileAttr::DIRECTORY } else { pigeon_protocol::FileAttr::FILE },
            ext: Vec::new(),
        })
        .collect()
}

/// Our nick and group without the characters that break the wire format
/// (NUL) or a line-based field (CR, LF: iptux's and our entry trailers are
/// lines).
fn clean_text(s: &str) -> String {
    s.chars().filter(|&c| !matches!(c, '\0' | '\r' | '\n')).collect()
}

#[cfg(test)]
mod tests {
    /// A nick or group with a line break would cut iptux's (and our)
    /// line-based entry trailer; NUL would end the field.
    #[test]
    fn nick_and_group_lose_nul_cr_and_lf() {
        assert_eq!(super::clean_text("a\0b\r\nc\nd 小明"), "abcd 小明");
    }
}
