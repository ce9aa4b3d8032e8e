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

#![forbid(unsafe_code)]

pub mod peers;
pub mod pictures;
pub mod secure;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use pigeon_protocol::charset::{self, Charset};
use pigeon_protocol::feiq::{self, FragmentAck, ImageFragment};
use pigeon_protocol::pubkey::{Capa, Security};
use pigeon_protocol::reply::{PacketRef, NOT_ABSENCE_MODE};
use pigeon_protocol::{
    Attachment, ClientKind, Command, Entry, FeiqVersion, Header, IptuxExtra, MessageBody, Mode, Opts, Packet,
    Utf8Trailer,
};

pub use peers::{Change, Identity, Peer, PeerKey, PeerTable};
pub use secure::{KnownKey, OurKeys, PublicKey};

/// Sealed messages remembered as opened in one run ([`Engine`]'s `opened`).
const OPENED_LIMIT: usize = 4096;

/// A peer that sent nothing for this long is asked whether it is still
/// there (IPMsg clients send nothing while idle; one killed without
/// BR_EXIT would stay listed for ever).
pub const SILENCE: Duration = Duration::from_secs(10 * 60);
/// How often the node looks for such peers.
const AGING_EVERY: Duration = Duration::from_secs(60);
/// A peer asked is asked again after this long…
const PROBE_WAIT: Duration = Duration::from_secs(3);
/// …and is taken for gone after this many unanswered asks.
const PROBE_TRIES: u8 = 3;
/// How long a refresh takes to drop who does not answer.
pub const REFRESH_TAKES: Duration = Duration::from_millis(PROBE_WAIT.as_millis() as u64 * PROBE_TRIES as u64 + 500);

/// The version text SENDINFO answers with.
pub const PRODUCT: &str = concat!("Pigeon ", env!("CARGO_PKG_VERSION"));

/// The engine's notion of now: a monotonic time since the driver started
/// and the wall clock (packet numbers and message times).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    pub mono: Duration,
    /// Milliseconds since the Unix epoch.
    pub unix_ms: i64,
}

/// What the engine is told about itself.
#[derive(Clone, Debug)]
pub struct Config {
    pub user: String,
    pub host: String,
    pub nick: String,
    pub group: String,
    /// The header version field (starts with `1`).
    pub version: String,
    /// Charset for peers that do not read UTF-8.
    pub legacy: Charset,
    /// Where presence broadcasts go.
    pub targets: Vec<SocketAddr>,
    /// The port peers listen on (for targets given without one and for replies).
    pub port: u16,
    /// A short-lived node: NOADDLISTOPT on its messages, no answers to entries.
    pub oneshot: bool,
    /// Time between retransmissions of an unacknowledged message.
    pub retry_interval: Duration,
    /// Retransmissions before a message waits in the outbox.
    pub retries: u32,
    /// How long a queued message waits for its peer before it fails.
    pub outbox_expiry: Duration,
    /// How long offered files are served.
    pub offer_expiry: Duration,
    /// Away text, if away.
    pub away: Option<String>,
    /// Seed of the random answer delays (fixed in simulations).
    pub seed: u64,
    /// Our instance marker (`PG:` in our entries): tells us from other
    /// machines of the same user@host. Empty: none sent.
    pub instance: String,
    /// The addresses our packets come from (with `port`): what comes from
    /// one of them is our own broadcast, whatever name it carries.
    pub local: Vec<std::net::IpAddr>,
    /// Our key pairs: with them we announce ENCRYPTOPT, and messages to
    /// peers that announce it are encrypted (protocol.md §7).
    pub keys: Option<std::sync::Arc<secure::OurKeys>>,
    /// Refuse plain messages from peers that can encrypt.
    pub require_encryption: bool,
    /// Send plain to a peer that announces ENCRYPTOPT but gives no key
    /// (else the message fails, saying why).
    pub plaintext_fallback: bool,
}

impl Config {
    /// A one-shot process asks peers not to list it (NOADDLISTOPT).
    fn oneshot_flag(&self) -> u32 {
        if self.oneshot {
            Opts::NOADDLISTOPT
        } else {
            0
        }
    }

    /// A configuration with the protocol's default timings.
    pub fn new(user: &str, host: &str, nick: &str) -> Config {
        Config {
            user: user.into(),
            host: host.into(),
            nick: nick.into(),
            group: String::new(),
            version: format!("{} {}", pigeon_protocol::client::PIGEON_VERSION_PREFIX, env!("CARGO_PKG_VERSION")),
            legacy: Charset::Gbk,
            targets: Vec::new(),
            port: 2425,
            oneshot: false,
            retry_interval: Duration::from_secs(1),
            retries: 4,
            outbox_expiry: Duration::from_secs(7 * 24 * 3600),
            offer_expiry: Duration::from_secs(7 * 24 * 3600),
            away: None,
            seed: 0x5eed,
            instance: String::new(),
            local: Vec::new(),
            keys: None,
            require_encryption: false,
            plaintext_fallback: false,
        }
    }
}

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub dst: SocketAddr,
    pub payload: Vec<u8>,
}

/// Delivery state of an outgoing message to one recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    /// Sent, not yet acknowledged.
    Sending,
    /// Acknowledged.
    Delivered,
    /// Not acknowledged after every retry; resent when the peer reappears.
    Queued,
    /// Given up (expired in the outbox).
    Failed,
    /// A sealed message was opened.
    Read,
}

impl Delivery {
    /// The lower-case name used in JSON and the store.
    pub fn name(self) -> &'static str {
        match self {
            Delivery::Sending => "sending",
            Delivery::Delivered => "delivered",
            Delivery::Queued => "queued",
            Delivery::Failed => "failed",
            Delivery::Read => "read",
        }
    }
}

/// A peer as events describe it.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerInfo {
    pub key: PeerKey,
    pub nick: String,
    pub group: String,
    pub addr: SocketAddr,
    pub client: ClientKind,
    pub away: bool,
}

impl From<&Peer> for PeerInfo {
    fn from(p: &Peer) -> PeerInfo {
        PeerInfo {
            key: p.key.clone(),
            nick: p.nick.clone(),
            group: p.group.clone(),
            addr: p.addr,
            client: p.client,
            away: p.away,
        }
    }
}

/// A message that arrived.
#[derive(Clone, Debug, PartialEq)]
pub struct Incoming {
    pub from: PeerInfo,
    pub text: String,
    pub packet_no: String,
    pub command: u32,
    pub sealed: bool,
    pub broadcast: bool,
    /// An automatic reply (away message).
    pub auto: bool,
    pub attachments: Vec<Attachment>,
    pub unix_ms: i64,
    /// From a peer heard (its entry) before this message, from its own
    /// address, which has not changed since it was first heard in this
    /// run: what auto-accept trusts (nothing on an IPMsg LAN is signed).
    pub verified: bool,
    /// Encrypted, signed, or plain.
    pub security: Security,
}

/// A message we sent, one row per recipient.
#[derive(Clone, Debug, PartialEq)]
pub struct Outgoing {
    pub id: u64,
    pub to: PeerInfo,
    /// Files and folders offered with it: (file ID, what).
    pub offers: Vec<(u64, OfferFile)>,
    /// Until when they are served (Unix milliseconds).
    pub offers_expire_ms: i64,
    pub text: String,
    pub packet_no: u64,
    pub command: u32,
    pub sealed: bool,
    pub broadcast: bool,
    pub unix_ms: i64,
}

impl Outgoing {
    /// Broadcasts and automatic replies ask for none: they are stored done.
    pub fn asks_receipt(&self) -> bool {
        Command(self.command).has(Opts::SENDCHECKOPT)
    }

    /// An automatic reply (while away): caused by the peer's message.
    pub fn is_auto_reply(&self) -> bool {
        Command(self.command).has(Opts::AUTORETOPT)
    }
}

/// A message we sent, as listeners see it.
#[derive(Clone, Debug, PartialEq)]
pub struct Sent {
    pub packet_no: u64,
    pub text: String,
    /// The command word (SECRETOPT: sealed, BROADCASTOPT, AUTORETOPT).
    pub command: u32,
    /// (id, peer) per recipient: the id its receipts carry. Broadcasts and
    /// automatic replies ask for none (id 0); a broadcast lists the peers
    /// online when it went.
    pub to: Vec<(u64, PeerKey)>,
    /// Files and folders offered with it: (file ID, what).
    pub offers: Vec<(u64, OfferFile)>,
    pub unix_ms: i64,
}

/// Something listeners are told.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    PeerOnline(PeerInfo),
    PeerOffline(PeerInfo),
    PeerChanged(PeerInfo),
    Message(Incoming),
    /// We sent a message (from any client of this node, or an automatic
    /// reply): what it says and to whom, before its receipts.
    Sent(Sent),
    /// Our away text was set (`Some`) or cleared, by any client.
    Away(Option<String>),
    /// A send's state for one recipient changed.
    Receipt {
        id: u64,
        peer: PeerKey,
        packet_no: u64,
        status: Delivery,
    },
    /// A peer opened our sealed message.
    Read {
        peer: PeerKey,
        packet_no: u64,
    },
    /// FeiQ window shake.
    Shake {
        from: PeerInfo,
    },
    /// A peer gave a public key other than the one pinned for it.
    KeyChanged {
        peer: PeerKey,
        /// The new key's fingerprint.
        fingerprint: String,
    },
    /// Why a send failed (before its `Failed` receipt).
    SendFailed {
        id: u64,
        peer: PeerKey,
        packet_no: u64,
        reason: String,
    },
    /// Answer to GETINFO or GETABSENCEINFO.
    Info {
        peer: PeerKey,
        version: Option<String>,
        absence: Option<String>,
    },
}

/// IP Messenger's answer to a message it could not decrypt.
pub const DECRYPT_ERR: &str = "DecryptErr: my public key changed, press refresh and resend";

/// How a received picture's message text starts (the saved file's path follows).
pub const PICTURE_PREFIX: &str = "[picture] ";

/// What must be stored.
#[derive(Clone, Debug, PartialEq)]
pub enum StoreOp {
    /// Nothing to store: only the datagrams wait (a repeated acknowledgement
    /// must not overtake the first one).
    Barrier,
    Incoming(Incoming),
    Outgoing(Vec<Outgoing>),
    /// State of our message to a peer.
    OutState {
        peer: PeerKey,
        packet_no: u64,
        state: Delivery,
    },
    /// An incoming sealed message was opened.
    InRead {
        peer: PeerKey,
        packet_no: String,
    },
    /// A peer's details, with its instance marker (see [`Peer::marker`]).
    Peer {
        info: PeerInfo,
        marker: Option<String>,
    },
    /// Packet numbers up to here may have been used.
    Counter(u64),
    /// The last packet number used, at a clean exit.
    CounterExact(u64),
    /// Incoming messages the user has seen (see [`Request::MarkSeen`]).
    Seen(Option<PeerKey>),
    /// We declined the files of a peer's message (RELEASEFILES sent).
    Declined {
        peer: PeerKey,
        packet_no: String,
    },
    /// A peer's public key (pinned if it is its first).
    PeerKey {
        peer: PeerKey,
        capa: u32,
        exponent: Vec<u8>,
        modulus: Vec<u8>,
    },
    /// The peer gave up the files of one of our messages.
    Release {
        peer: PeerKey,
        packet_no: u64,
    },
}

/// One output of the engine.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    Transmit(Transmit),
    Event(Event),
    /// Store `op`; after it is durable, send `then`.
    Store {
        op: StoreOp,
        then: Vec<Transmit>,
    },
    /// A FeiQ picture is whole: save it in the home, then tell
    /// [`Engine::picture`] where it is.
    SavePicture(SavePicture),
}

/// A picture to save (see [`Output::SavePicture`]).
#[derive(Clone, Debug, PartialEq)]
pub struct SavePicture {
    pub from: std::net::IpAddr,
    pub peer: PeerKey,
    /// The last fragment's packet number and command word.
    pub packet_no: String,
    pub command: u32,
    pub data: Vec<u8>,
}

/// A picture saved in the home, to be recorded as a message from its sender.
#[derive(Clone, Debug, PartialEq)]
pub enum PictureFrom {
    /// Put together by the engine ([`Output::SavePicture`]).
    Feiq(SavePicture),
    /// Received on TCP (iptux's SENDSUBLAYER|MSGPICOPT): the header
    /// `version:packet:user:host:command:` and the connection's address.
    Iptux { from: std::net::IpAddr, header: Vec<u8> },
}

/// A file or folder to offer, as the caller found it on disk.
#[derive(Clone, Debug, PartialEq)]
pub struct OfferFile {
    pub path: std::path::PathBuf,
    /// The name announced (the path's last component).
    pub name: String,
    pub dir: bool,
    /// Bytes; for a folder the whole tree's (iptux's GUI needs it to accept).
    pub size: u64,
    /// Modification time, Unix seconds.
    pub mtime: u64,
}

/// A user's request.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// Announce ourselves (start-up): NOOPERATION, BR_ENTRY after 250 ms and again after 5 s.
    Start,
    /// Send a message to peers (known keys).
    Send { to: Vec<PeerKey>, text: String, sealed: bool },
    /// Send files and folders (and a text) to peers: one SENDMSG|FILEATTACHOPT;
    /// the offers are stored before the message goes out.
    Offer { to: Vec<PeerKey>, text: String, sealed: bool, files: Vec<OfferFile> },
    /// BROADCASTOPT message to every peer and target; no receipts.
    Broadcast { text: String },
    /// Go away (with a text) or come back (None).
    SetAway(Option<String>),
    /// Change nick or group.
    SetName { nick: String, group: String },
    /// The user opened a sealed message; `read_check`: the message asked
    /// for a checked read receipt (READCHECKOPT).
    Open { peer: PeerKey, packet_no: String, read_check: bool },
    /// Ask a peer for its version and away text.
    GetInfo(PeerKey),
    /// FeiQ's window shake ("抖一抖"): FeiQ shakes the conversation's
    /// window, Pigeon shows a notice; other clients ignore it.
    Shake(PeerKey),
    /// The key a peer gives now becomes its pinned one (`pigeon keys --trust`).
    TrustKey(PeerKey),
    /// IP Messenger's F5: announce ourselves again, and take every peer
    /// that does not answer within a few tries for gone.
    Refresh,
    /// The user declined the files of a peer's message: RELEASEFILES, so
    /// the sender stops serving them (§6.2).
    Decline { peer: PeerKey, packet_no: String },
    /// The user has seen a conversation: the store marks its plain incoming
    /// messages read (sealed ones wait for `Open`). `None`: the broadcasts.
    /// Nothing goes on the wire.
    MarkSeen(Option<PeerKey>),
    /// Leave: BR_EXIT twice, 100 ms apart.
    Quit,
    /// Announce ourselves by unicast to addresses outside the broadcast
    /// domain (configured ranges), paced at 1,000 per second.
    Probe(Vec<SocketAddr>),
}

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("unknown peer {0}")]
    UnknownPeer(PeerKey),
    #[error("message too long for {peer} ({client}): {bytes} bytes, at most {limit} fit in one packet; split it")]
    TooLong { peer: PeerKey, client: &'static str, bytes: usize, limit: usize },
    #[error("cannot write the packet: {0}")]
    Encode(String),
}

/// Counters for what was dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub received: u64,
    pub malformed: u64,
    pub duplicates: u64,
    pub ignored: u64,
    pub sent: u64,
    /// Encrypted messages we could not read (answered with DecryptErr).
    pub undecryptable: u64,
    /// Plain messages refused (`require_encryption`).
    pub refused_plain: u64,
}

/// One recipient of an outgoing message still waiting for its ack.
#[derive(Clone, Debug)]
struct Pending {
    id: u64,
    peer: PeerKey,
    packet_no: u64,
    body: Body,
    sends: u32,
    next: Option<Duration>,
    queued_at_ms: Option<i64>,
}

/// A queued message's datagram, or what it will be written from.
#[derive(Clone, Debug)]
enum Body {
    Written(Vec<u8>),
    /// For a peer whose charset and client are not known yet (known from
    /// the store only, or restored from the outbox): written when it comes
    /// back. `opts` keeps SECRETEXOPT and MULTICASTOPT.
    Unwritten {
        opts: u32,
        text: String,
        files: Vec<(u64, OfferFile)>,
    },
}

impl Body {
    fn written(&self) -> Option<&Vec<u8>> {
        match self {
            Body::Written(d) => Some(d),
            Body::Unwritten { .. } => None,
        }
    }
}

/// A READMSG of ours waiting for its ANSREADMSG.
#[derive(Clone, Debug)]
struct PendingRead {
    dst: SocketAddr,
    packet_no: u64,
    datagram: Vec<u8>,
    sends: u32,
    next: Duration,
}

/// What identifies an incoming message: sender, packet number and a hash of
/// its text (iptux restarts its numbers at 1, so the number alone repeats).
pub type SeenKey = (PeerKey, String, u64);

/// FNV-1a, stable across versions and runs (the keys come back from disk).
pub fn text_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// How many incoming messages are remembered to drop their repeats.
pub const DEDUP_LIMIT: usize = 200_000;
/// IPMsg's READMSG retry: 750 ms, 12 times.
const READ_RETRY: Duration = Duration::from_millis(750);
const READ_TRIES: u32 = 12;
/// At most this many addresses wait to be probed.
const PROBE_LIMIT: usize = 65_536;
/// Probes sent per 10 ms tick.
const PROBE_BATCH: usize = 10;
/// An address is answered (ANSENTRY) at most this often: a flood of
/// BR_ENTRY from one address makes no more of them (one-shot commands run
/// back to back from one address still each get theirs).
const ANSWER_EVERY: Duration = Duration::from_secs(1);
/// At most this many answers go out per answer timer (protocol.md §3.2
/// spreads them over up to 4 s), and so per second or so: we are no
/// reflection amplifier for spoofed entries.
const ANSWER_BATCH: usize = 256;
/// Addresses remembered for [`ANSWER_EVERY`].
const ANSWERED_LIMIT: usize = 16_384;
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
    opened: VecDeque<(PeerKey, String)>,
    seen: HashSet<SeenKey>,
    seen_order: VecDeque<SeenKey>,
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
    entry_at: Vec<Duration>,
    answer_at: Option<Duration>,
    answer_to: Vec<SocketAddr>,
    /// Who is in `answer_to`, and when each address was last answered: an
    /// address is answered at most once per [`ANSWER_EVERY`].
    answering: HashSet<SocketAddr>,
    answered: std::collections::HashMap<SocketAddr, Duration>,
    exit_at: Option<Duration>,
    probe: VecDeque<SocketAddr>,
    probe_at: Option<Duration>,
    /// When each known peer last sent anything (engine clock).
    heard: HashMap<PeerKey, Duration>,
    /// Peers asked whether they are still there (unicast BR_ENTRY): when
    /// to ask again or give up, and how often they were asked.
    probing: HashMap<PeerKey, (Duration, u8)>,
    /// The next look for peers silent longer than [`SILENCE`].
    aging_at: Option<Duration>,
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
            seen: HashSet::new(),
            seen_order: VecDeque::new(),
            pictures: pictures::Pictures::default(),
            keyring: secure::Keyring::default(),
            key_asked: HashMap::new(),
            key_stored: HashSet::new(),
            key_answered: HashMap::new(),
            entry_at: Vec::new(),
            answer_at: None,
            answer_to: Vec::new(),
            answering: HashSet::new(),
            answered: std::collections::HashMap::new(),
            exit_at: None,
            probe: VecDeque::new(),
            probe_at: None,
            heard: HashMap::new(),
            probing: HashMap::new(),
            aging_at: None,
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
            body: Body::Unwritten { opts: command & KEPT_OPTS, text: text.to_string(), files },
            sends: 0,
            next: None,
            queued_at_ms: Some(queued_at_ms),
        });
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
            let k = (m.from.key.clone(), m.packet_no.clone(), text_hash(&m.text));
            if self.seen.remove(&k) {
                self.seen_order.retain(|x| x != &k);
            }
        }
    }

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Engine::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Duration> {
        let retries = self.pending.iter().filter_map(|p| p.next);
        let reads = self.reads.iter().map(|r| r.next);
        let fixed = self.entry_at.iter().copied().chain(self.answer_at).chain(self.exit_at).chain(self.probe_at);
        let expiry = (!self.pending.is_empty()).then_some(self.next_expiry_check);
        let probes = self.probing.values().map(|(t, _)| *t);
        retries.chain(reads).chain(fixed).chain(expiry).chain(probes).chain(self.aging_at).min()
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
    fn status(&self) -> u32 {
        let mut s = Opts::FILEATTACHOPT | Opts::CAPUTF8OPT;
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

    /// Our entry payload: legacy nick and group, then the UTF-8 trailer.
    fn entry_packet(&mut self, now: Now, mode: Mode, extra: u32) -> Vec<u8> {
        let nick = self.display_nick();
        let entry = Entry {
            nick: nick.clone(),
            group: self.cfg.group.clone(),
            trailer: Some(Utf8Trailer {
                user: Some(self.cfg.user.clone()),
                host: Some(self.cfg.host.clone()),
                nick: Some(nick),
                group: Some(self.cfg.group.clone()),
                version: None,
                instance: self.instance(),
            }),
            iptux: None,
        };
        let no = self.packet_no(now);
        let command = Command::new(mode, self.status() | extra);
        let mut out = Vec::with_capacity(128);
        let header = self.header(no, command);
        entry.encode(&header, self.cfg.legacy, &mut out).expect("own header fields and texts are sanitized");
        out
    }

    /// Our instance marker for the trailer, if we have one.
    fn instance(&self) -> Option<String> {
        (!self.cfg.instance.is_empty()).then(|| self.cfg.instance.clone())
    }

    /// True if a datagram from `from` is one of ours (our broadcast coming
    /// back): our port on one of our addresses. Names prove nothing: every
    /// Raspberry Pi is `pi@raspberrypi`.
    fn is_own(&self, from: SocketAddr) -> bool {
        from.port() == self.cfg.port && self.cfg.local.contains(&from.ip())
    }

    /// Our entry as iptux peers read it (`nick\0group\0icon\0utf-8\0`,
    /// all UTF-8, no UTF8OPT): an iptux-compatible peer that reads UTF-8.
    /// iptux then writes to us in UTF-8 and reads our UTF-8 as it is,
    /// whatever its preferred charset; from the IPMsg-style entry it would
    /// guess our charset from our bytes (GB18030, or UTF-16: protocol.md
    /// §5.2) and garble both ways.
    fn iptux_entry(&mut self, now: Now, mode: Mode) -> Vec<u8> {
        let entry = Entry {
            nick: self.display_nick(),
            group: self.cfg.group.clone(),
            trailer: None,
            iptux: Some(IptuxExtra { icon: String::new(), charset: "utf-8".into() }),
        };
        let no = self.packet_no(now);
        let command = Command::new(mode, self.status());
        let header = self.header(no, command);
        let mut out = Vec::with_capacity(96);
        entry.encode(&header, Charset::Utf8, &mut out).expect("own header fields and texts are sanitized");
        out
    }

    /// After a presence packet that iptux peers read as our IPMsg-style
    /// entry (which makes iptux guess our charset again), our iptux-style
    /// entry to each of them, by unicast: ANSENTRY after BR_ENTRY,
    /// BR_ABSENCE after BR_ABSENCE. iptux handles datagrams in order.
    fn tell_iptux_peers(&mut self, now: Now, mode: Mode) {
        let addrs: Vec<SocketAddr> =
            self.peers.all().iter().filter(|p| p.online && p.client == ClientKind::Iptux).map(|p| p.addr).collect();
        if addrs.is_empty() {
            return;
        }
        let pkt = self.iptux_entry(now, mode);
        for a in addrs {
            self.transmit(a, pkt.clone());
        }
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

    fn display_nick(&self) -> String {
        match &self.cfg.away {
            Some(_) => format!("{}[away]", self.cfg.nick),
            None => self.cfg.nick.clone(),
        }
    }

    /// Writes a packet with a plain body to `peer`'s charset (UTF8OPT if it reads it).
    fn simple_packet(&mut self, now: Now, mode: Mode, opts: u32, body: &[u8]) -> Vec<u8> {
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
        match req {
            Request::Start => {
                let noop = self.entry_packet(now, Mode::NOOPERATION, 0);
                self.broadcast_all(noop);
                self.entry_at = vec![now.mono + Duration::from_millis(250), now.mono + Duration::from_millis(5250)];
                Ok(vec![])
            }
            Request::Send { to, text, sealed } => self.send(now, &to, &text, sealed, &[]),
            Request::Offer { to, text, sealed, files } => self.send(now, &to, &text, sealed, &files),
            Request::Broadcast { text } => {
                let flags = Opts::BROADCASTOPT | self.cfg.oneshot_flag();
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
                if packet_no.is_empty() || packet_no.len() > 20 || !packet_no.bytes().all(|b| b.is_ascii_digit()) {
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
                let pkt = self.simple_packet(now, Mode::READMSG, opts, packet_no.as_bytes());
                let no = self.last_packet_no;
                self.transmit(p.addr, pkt.clone());
                // Only a checked receipt is answered (ANSREADMSG), so only it is retried.
                if read_check {
                    self.reads.push(PendingRead {
                        dst: p.addr,
                        packet_no: no,
                        datagram: pkt,
                        sends: 1,
                        next: now.mono + READ_RETRY,
                    });
                }
                self.out.push_back(Output::Store { op: StoreOp::InRead { peer, packet_no }, then: Vec::new() });
                Ok(vec![])
            }
            Request::Refresh => {
                let entry = self.entry_packet(now, Mode::BR_ENTRY, 0);
                self.announce(entry);
                let online: Vec<PeerKey> =
                    self.peers.all().iter().filter(|p| p.online).map(|p| p.key.clone()).collect();
                for k in online {
                    // The broadcast was the first ask; unicast ones follow.
                    self.probing.entry(k).or_insert((now.mono + PROBE_WAIT, 1));
                }
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
                if packet_no.is_empty() || packet_no.len() > 20 || !packet_no.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(RequestError::Encode(format!("{packet_no:?} is not a packet number")));
                }
                let pkt = self.simple_packet(now, Mode::RELEASEFILES, 0, packet_no.as_bytes());
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
                for a in addrs.into_iter().take(PROBE_LIMIT - self.probe.len().min(PROBE_LIMIT)) {
                    self.probe.push_back(a);
                }
                if self.probe_at.is_none() && !self.probe.is_empty() {
                    self.probe_at = Some(now.mono);
                }
                Ok(vec![])
            }
            Request::Quit => {
                let exit = self.entry_packet(now, Mode::BR_EXIT, 0);
                self.announce(exit);
                self.exit_at = Some(now.mono + Duration::from_millis(100));
                // Nothing may announce us again after the exit: no second
                // entry, no delayed answer, no probe.
                self.quitting = true;
                self.entry_at.clear();
                self.answer_at = None;
                self.answer_to.clear();
                self.answering.clear();
                self.probe.clear();
                self.probe_at = None;
                Ok(vec![])
            }
        }
    }

    fn announce_change(&mut self, now: Now) {
        let p = self.entry_packet(now, Mode::BR_ABSENCE, 0);
        self.announce(p);
        self.tell_iptux_peers(now, Mode::BR_ABSENCE);
    }

    /// Sends a presence packet to every target, and by unicast to every
    /// online peer that is not itself a target.
    fn announce(&mut self, payload: Vec<u8>) {
        let targets: HashSet<SocketAddr> = self.cfg.targets.iter().copied().collect();
        let unicast: Vec<SocketAddr> =
            self.peers.all().iter().filter(|p| p.online && !targets.contains(&p.addr)).map(|p| p.addr).collect();
        self.broadcast_all(payload.clone());
        for a in unicast {
            self.transmit(a, payload.clone());
        }
    }

    fn message_packet(
        &self,
        no: u64,
        opts: u32,
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
        flags: u32,
        text: &str,
        files: &[(u64, OfferFile)],
    ) -> Result<Option<(u32, Vec<u8>)>, RequestError> {
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
        flags: u32,
        text: &str,
        files: &[(u64, OfferFile)],
    ) -> Result<Vec<u8>, RequestError> {
        let (opts, cs, attachments) = self.message_parts(p, flags, files);
        self.message_packet(no, opts, text, cs, &attachments)
    }

    /// A message's option bits (`flags`, FILEATTACHOPT, UTF-8 for a peer
    /// that reads it), the charset it is written in, and its file list in
    /// the form `p`'s client reads.
    fn message_parts(&self, p: &Peer, flags: u32, files: &[(u64, OfferFile)]) -> (u32, Charset, Vec<Attachment>) {
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
    fn outgoing_row(&self, id: u64, to: PeerInfo, text: &str, no: u64, opts: u32, now: Now) -> Outgoing {
        Outgoing {
            id,
            to,
            offers: Vec::new(),
            offers_expire_ms: now.unix_ms + self.cfg.offer_expiry.as_millis() as i64,
            text: text.to_string(),
            packet_no: no,
            command: Command::new(Mode::SENDMSG, opts).0,
            sealed: Opts(opts).has(Opts::SECRETOPT),
            broadcast: Opts(opts).has(Opts::BROADCASTOPT),
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
        let mut base = Opts::SENDCHECKOPT | self.cfg.oneshot_flag();
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

    fn queued(&mut self, id: u64, peer: PeerKey, packet_no: u64) {
        self.event(Event::Receipt { id, peer: peer.clone(), packet_no, status: Delivery::Queued });
        self.out.push_back(Output::Store {
            op: StoreOp::OutState { peer, packet_no, state: Delivery::Queued },
            then: Vec::new(),
        });
    }

    /// Handles the passing of time: retries, delayed answers, expiry.
    pub fn handle_timeout(&mut self, now: Now) {
        self.age_peers(now);
        while let Some(pos) = self.entry_at.iter().position(|&t| t <= now.mono) {
            self.entry_at.remove(pos);
            let entry = self.entry_packet(now, Mode::BR_ENTRY, 0);
            self.broadcast_all(entry);
            self.tell_iptux_peers(now, Mode::ANSENTRY);
        }
        if self.answer_at.is_some_and(|t| t <= now.mono) {
            self.answer_at = None;
            self.answering.clear();
            for dst in std::mem::take(&mut self.answer_to) {
                let peer = self.peers.by_addr(dst).cloned();
                let p = self.answer_packet(now, peer.as_ref());
                self.transmit(dst, p);
                self.note_answered(dst, now);
            }
        }
        if self.probe_at.is_some_and(|t| t <= now.mono) {
            let batch: Vec<SocketAddr> = (0..PROBE_BATCH).map_while(|_| self.probe.pop_front()).collect();
            if !batch.is_empty() {
                let entry = self.entry_packet(now, Mode::BR_ENTRY, Opts::DIALUPOPT);
                for a in batch {
                    self.transmit(a, entry.clone());
                }
            }
            self.probe_at = (!self.probe.is_empty()).then_some(now.mono + Duration::from_millis(10));
        }
        if self.exit_at.is_some_and(|t| t <= now.mono) {
            self.exit_at = None;
            let exit = self.entry_packet(now, Mode::BR_EXIT, 0);
            self.broadcast_all(exit);
            // A clean exit records the last number used, not the reservation,
            // so frequent short runs (cron) do not push numbers ahead.
            self.out.push_back(Output::Store { op: StoreOp::CounterExact(self.last_packet_no), then: Vec::new() });
        }
        let mut resend = Vec::new();
        let mut give_up = Vec::new();
        let mut ask = Vec::new();
        for (i, p) in self.pending.iter_mut().enumerate() {
            let Some(t) = p.next else { continue };
            if t > now.mono {
                continue;
            }
            // A key is asked for twice as long as a message is retried:
            // under loss, both the request and the answer must get through.
            let limit = if p.body.written().is_none() { self.cfg.retries * 2 + 1 } else { self.cfg.retries };
            if p.sends > limit {
                p.next = None;
                // The outbox expiry counts from the first time it was queued.
                p.queued_at_ms.get_or_insert(now.unix_ms);
                give_up.push(i);
            } else if p.body.written().is_none() {
                // Waiting for the peer's key: ask again.
                p.sends += 1;
                p.next = Some(now.mono + self.cfg.retry_interval);
                ask.push(p.peer.clone());
            } else {
                p.sends += 1;
                p.next = Some(now.mono + self.cfg.retry_interval);
                resend.push(i);
            }
        }
        for i in resend {
            let (key, mut dg, sends) = {
                let p = &self.pending[i];
                let Some(dg) = p.body.written() else { continue };
                (p.peer.clone(), dg.clone(), p.sends)
            };
            // IPMsg pads the 3rd and 4th retransmissions with 64 NULs.
            if sends >= 4 {
                dg.extend_from_slice(&[0; 64]);
            }
            if let Some(addr) = self.peers.get(&key).map(|p| p.addr) {
                self.transmit(addr, dg);
            }
        }
        // One request (and probe) per peer, however many messages wait for it.
        let mut seen_keys = HashSet::new();
        ask.retain(|k| seen_keys.insert(k.clone()));
        for key in ask {
            // Bypass the once-a-second limit: this is the retry timer.
            self.key_asked.remove(&key);
            self.ask_key(now, &key, false);
            // And ask whether it is there at all (every client answers a
            // BR_ENTRY): one that answers but gives no key is told apart
            // from one that is gone.
            if let Some(addr) = self.peers.get(&key).map(|p| p.addr) {
                let e = self.entry_packet(now, Mode::BR_ENTRY, 0);
                self.transmit(addr, e);
            }
        }
        let mut no_key = Vec::new();
        // The key requests of one wait went out over this long.
        let wait = self.cfg.retry_interval * (self.cfg.retries * 2 + 2);
        for &i in &give_up {
            let p = &self.pending[i];
            // Heard from during the wait (it is there) yet no key: it will
            // not give one. Silent: gone like any peer that does not answer,
            // and the message waits in the outbox for it.
            let alive = self.heard.get(&p.peer).is_some_and(|t| now.mono.saturating_sub(*t) <= wait);
            if p.body.written().is_none() && alive {
                no_key.push(p.id);
            } else {
                self.queued(p.id, p.peer.clone(), p.packet_no);
            }
        }
        // An online peer that announces encryption and never gave its key:
        // plain text only if the user allows it; else the send fails, saying why.
        for id in no_key {
            self.without_key(now, id);
        }
        let mut read_retry = Vec::new();
        self.reads.retain_mut(|r| {
            if r.next > now.mono {
                return true;
            }
            if r.sends >= READ_TRIES {
                return false;
            }
            r.sends += 1;
            r.next = now.mono + READ_RETRY;
            read_retry.push((r.dst, r.datagram.clone()));
            true
        });
        for (dst, dg) in read_retry {
            self.transmit(dst, dg);
        }
        if now.mono >= self.next_expiry_check {
            self.next_expiry_check = now.mono + Duration::from_secs(60);
            // A peer still listed online may only have lost our packets or
            // its acks: try its queued messages again, once a minute.
            let mut waiting: Vec<PeerKey> = self
                .pending
                .iter()
                .filter(|p| p.next.is_none() && self.peers.get(&p.peer).is_some_and(|peer| peer.online))
                .map(|p| p.peer.clone())
                .collect();
            waiting.sort();
            waiting.dedup();
            for k in waiting {
                self.flush_outbox(now, &k);
            }
            let expiry_ms = self.cfg.outbox_expiry.as_millis() as i64;
            let expired: Vec<Pending> = self
                .pending
                .iter()
                .filter(|p| p.queued_at_ms.is_some_and(|q| now.unix_ms - q >= expiry_ms))
                .cloned()
                .collect();
            self.pending.retain(|p| p.queued_at_ms.is_none_or(|q| now.unix_ms - q < expiry_ms));
            for p in expired {
                self.finish(p.id, p.peer, p.packet_no, Delivery::Failed);
            }
        }
    }

    fn finish(&mut self, id: u64, peer: PeerKey, packet_no: u64, state: Delivery) {
        self.event(Event::Receipt { id, peer: peer.clone(), packet_no, status: state });
        self.out.push_back(Output::Store { op: StoreOp::OutState { peer, packet_no, state }, then: Vec::new() });
    }

    fn answer_packet(&mut self, now: Now, to: Option<&Peer>) -> Vec<u8> {
        if to.is_some_and(|p| p.client == ClientKind::Iptux) {
            return self.iptux_entry(now, Mode::ANSENTRY);
        }
        if !to.is_some_and(Peer::reads_utf8_flag) {
            return self.entry_packet(now, Mode::ANSENTRY, 0);
        }
        // To UTF-8 readers: everything UTF-8 (as IPMsg answers), the
        // trailer only for our instance marker.
        let trailer = self.instance().map(|i| Utf8Trailer { instance: Some(i), ..Default::default() });
        let entry = Entry { nick: self.display_nick(), group: self.cfg.group.clone(), trailer, iptux: None };
        let no = self.packet_no(now);
        let command = Command::new(Mode::ANSENTRY, self.status() | Opts::UTF8OPT);
        let header = self.header(no, command);
        let mut out = Vec::with_capacity(96);
        entry.encode(&header, Charset::Utf8, &mut out).expect("own header fields and texts are sanitized");
        out
    }

    fn remember(&mut self, k: SeenKey) -> bool {
        if !self.seen.insert(k.clone()) {
            return false;
        }
        self.seen_order.push_back(k);
        if self.seen_order.len() > DEDUP_LIMIT {
            if let Some(old) = self.seen_order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
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
                (key, addr, String::from_utf8_lossy(p.packet_no).into_owned(), p.command.0)
            }
        };
        let verified = self.trusted_source(&key, from);
        let incoming = Incoming {
            verified,
            from: self.info_for(&key, from),
            text: format!("{PICTURE_PREFIX}{}", path.display()),
            packet_no,
            command,
            sealed: false,
            broadcast: false,
            auto: false,
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
            if self.aging_at.is_none() && !self.cfg.oneshot {
                self.aging_at = Some(now.mono + AGING_EVERY);
            }
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
                self.reads.retain(|x| !(x.packet_no == r.value && x.dst.ip() == from.ip()));
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
                        packet_no: String::from_utf8_lossy(p.packet_no).into_owned(),
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

    /// An entry-type packet from `from`, naming itself `name` (untagged).
    #[allow(clippy::too_many_arguments)]
    fn presence(
        &mut self,
        now: Now,
        from: SocketAddr,
        p: &Packet<'_>,
        name: PeerKey,
        marker: Option<String>,
        entry: Entry,
        cs: Charset,
        client: ClientKind,
    ) {
        let mode = p.mode();
        if mode == Mode::NOOPERATION {
            return;
        }
        if mode == Mode::BR_EXIT {
            // Only the peer itself can say it left (§3.5: by address).
            let Some(key) = self.peers.by_source(&name, from).filter(|p| p.at(from) || p.addr.ip() == from.ip()) else {
                self.stats.ignored += 1;
                return;
            };
            let key = key.key.clone();
            if let Some(gone) = self.peers.exit(&key) {
                self.event(Event::PeerOffline(PeerInfo::from(&gone)));
            }
            return;
        }
        let (key, second_address) = match self.peers.identify(&name, marker.as_deref(), from, now.mono) {
            Identity::Known(k) | Identity::New(k) => (k, false),
            Identity::Also(k) => (k, true),
        };
        // A second address of one machine: the first stays where we send.
        let addr = match self.peers.get(&key) {
            Some(old) if second_address => old.addr,
            _ => from,
        };
        let announced = entry.iptux.as_ref().and_then(|x| pigeon_protocol::Charset::from_label(&x.charset));
        // A broadcast entry of a guessed client says what its entries are
        // in; its other packets what its text to us is in.
        let guessed = matches!(client, ClientKind::Iptux | ClientKind::Unknown);
        let old = self.peers.get(&key);
        let (charset, entry_charset) = if guessed && mode == Mode::BR_ENTRY {
            // We tell iptux we read UTF-8 (iptux_entry): its text to us is.
            (old.map_or(Charset::Utf8, |o| o.charset), Some(cs))
        } else {
            (cs, old.and_then(|o| o.entry_charset))
        };
        let away = p.opts().has(Opts::ABSENCEOPT) && client != ClientKind::Iptux;
        let peer = Peer {
            key: key.clone(),
            nick: strip_away_marker(entry.display_nick()).to_string(),
            group: entry.display_group().to_string(),
            addr,
            client,
            version: String::from_utf8_lossy(p.version).into_owned(),
            status: p.opts(),
            away,
            charset,
            announced,
            entry_charset,
            online: true,
            seen: now.mono,
            marker,
            also: Vec::new(),
            moved: false,
            key_mark: peers::KeyMark::None,
        };
        let change = self.peers.upsert(peer);
        if second_address {
            self.peers.also_at(&key, from, now.mono);
        }
        let info = PeerInfo::from(self.peers.get(&key).expect("just upserted"));
        match change {
            Change::Online => self.event(Event::PeerOnline(info.clone())),
            Change::Changed => self.event(Event::PeerChanged(info.clone())),
            Change::Same => {}
        }
        if change != Change::Same {
            let marker = self.peers.get(&key).and_then(|p| p.marker.clone());
            self.out.push_back(Output::Store { op: StoreOp::Peer { info: info.clone(), marker }, then: Vec::new() });
        }
        if mode == Mode::BR_ENTRY && !self.cfg.oneshot {
            self.schedule_answer(now, from);
        } else if change == Change::Online && client == ClientKind::Iptux && !self.quitting {
            // It learnt of us from our IPMsg-style entry: tell it what we read.
            let e = self.iptux_entry(now, Mode::ANSENTRY);
            self.transmit(from, e);
        }
        if mode == Mode::BR_ENTRY || mode == Mode::ANSENTRY || change == Change::Online {
            self.flush_outbox(now, &key);
        }
    }

    /// A known peer sent something: it is there.
    fn note_heard(&mut self, name: &PeerKey, from: SocketAddr, now: Now) {
        let Some(key) = self.peers.by_source(name, from).map(|p| p.key.clone()) else { return };
        self.probing.remove(&key);
        self.heard.insert(key, now.mono);
    }

    /// Asks peers silent for [`SILENCE`] whether they are there (a unicast
    /// BR_ENTRY, which every client answers), and takes those that do not
    /// answer [`PROBE_TRIES`] asks for gone. A one-shot node does not age.
    fn age_peers(&mut self, now: Now) {
        if self.cfg.oneshot || self.quitting {
            self.aging_at = None;
            self.probing.clear();
            return;
        }
        if self.aging_at.is_some_and(|t| t <= now.mono) {
            // No timer while nobody is online (presence starts it again).
            let anyone = self.peers.all().iter().any(|p| p.online);
            self.aging_at = anyone.then_some(now.mono + AGING_EVERY);
            let silent: Vec<PeerKey> = self
                .peers
                .all()
                .iter()
                .filter(|p| p.online && !self.probing.contains_key(&p.key))
                .filter(|p| now.mono.saturating_sub(self.heard.get(&p.key).copied().unwrap_or(p.seen)) >= SILENCE)
                .map(|p| p.key.clone())
                .collect();
            for k in silent {
                self.probing.insert(k, (now.mono, 0));
            }
            // Forget what we heard from peers that left.
            let peers = &self.peers;
            self.heard.retain(|k, _| peers.get(k).is_some_and(|p| p.online));
        }
        let due: Vec<PeerKey> =
            self.probing.iter().filter(|(_, (t, _))| *t <= now.mono).map(|(k, _)| k.clone()).collect();
        for k in due {
            let Some(&(_, tries)) = self.probing.get(&k) else { continue };
            let Some(p) = self.peers.get(&k).filter(|p| p.online).cloned() else {
                self.probing.remove(&k);
                continue;
            };
            if tries >= PROBE_TRIES {
                self.probing.remove(&k);
                if let Some(gone) = self.peers.exit(&k) {
                    self.event(Event::PeerOffline(PeerInfo::from(&gone)));
                }
                continue;
            }
            let entry = self.entry_packet(now, Mode::BR_ENTRY, 0);
            self.transmit(p.addr, entry);
            if p.client == ClientKind::Iptux {
                // Our iptux-layout entry after it, as after every BR_ENTRY.
                let again = self.iptux_entry(now, Mode::ANSENTRY);
                self.transmit(p.addr, again);
            }
            self.probing.insert(k, (now.mono + PROBE_WAIT, tries + 1));
        }
    }

    /// False if `to` was answered (or asked who it is) less than
    /// [`ANSWER_EVERY`] ago.
    fn may_answer(&self, to: SocketAddr, now: Now) -> bool {
        self.answered.get(&to).is_none_or(|&t| now.mono.saturating_sub(t) >= ANSWER_EVERY)
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

    /// Remembers that `to` was answered now; the memory stays bounded (a
    /// flood of spoofed sources forgets the oldest, or all of them).
    fn note_answered(&mut self, to: SocketAddr, now: Now) {
        if self.answered.len() >= ANSWERED_LIMIT {
            self.answered.retain(|_, t| now.mono.saturating_sub(*t) < ANSWER_EVERY);
            if self.answered.len() >= ANSWERED_LIMIT {
                self.answered.clear();
            }
        }
        self.answered.insert(to, now.mono);
    }

    /// Queues an ANSENTRY after a random delay scaled by the LAN's size;
    /// one timer serves every answer due (protocol.md §3.2).
    fn schedule_answer(&mut self, now: Now, to: SocketAddr) {
        if self.quitting {
            return;
        }
        if !self.may_answer(to, now) {
            self.stats.ignored += 1;
            return;
        }
        if self.answer_to.len() >= ANSWER_BATCH {
            self.stats.ignored += 1;
            return;
        }
        if self.answering.insert(to) {
            self.answer_to.push(to);
        }
        if self.answer_at.is_none() {
            let mask = match self.peers.online_count() {
                0..50 => 1023,
                50..300 => 2047,
                _ => 4095,
            };
            let delay = 5 + (self.rng.u64(..) & mask);
            self.answer_at = Some(now.mono + Duration::from_millis(delay));
        }
    }

    /// Sends again every queued message to a peer that reappeared.
    fn flush_outbox(&mut self, now: Now, key: &PeerKey) {
        let Some(peer) = self.peers.get(key).cloned() else { return };
        // Write what waits (immutable borrow), then update the queue.
        let mut written: HashMap<u64, Vec<u8>> = HashMap::new();
        for p in self.pending.iter().filter(|p| &p.peer == key && p.next.is_none()) {
            if let Body::Unwritten { opts, text, files } = &p.body {
                if let Ok(Some((_, dg))) =
                    self.write_message(&peer, p.packet_no, Opts::SENDCHECKOPT | *opts, text, files)
                {
                    written.insert(p.id, dg);
                }
            }
        }
        let mut ask = false;
        let mut sends = Vec::new();
        let mut too_long = Vec::new();
        for p in self.pending.iter_mut().filter(|p| &p.peer == key && p.next.is_none()) {
            if let Body::Unwritten { .. } = &p.body {
                // Written now that the peer's charset and client are known
                // (and its key, for a peer that encrypts).
                let Some(dg) = written.remove(&p.id) else {
                    p.sends = 1;
                    p.next = Some(now.mono + self.cfg.retry_interval);
                    ask = true;
                    continue;
                };
                // In UTF-8 it may have grown past what the peer reads.
                if fits(&peer, &dg).is_err() {
                    too_long.push(p.id);
                    continue;
                }
                p.body = Body::Written(dg);
            }
            let Body::Written(dg) = &p.body else { continue };
            p.sends = 1;
            p.next = Some(now.mono + self.cfg.retry_interval);
            sends.push((p.id, p.packet_no, dg.clone()));
        }
        for id in too_long {
            if let Some(i) = self.pending.iter().position(|p| p.id == id) {
                let p = self.pending.swap_remove(i);
                self.finish(p.id, p.peer, p.packet_no, Delivery::Failed);
            }
        }
        for (id, no, dg) in sends {
            self.transmit(peer.addr, dg);
            self.event(Event::Receipt { id, peer: key.clone(), packet_no: no, status: Delivery::Sending });
        }
        if ask {
            self.ask_key(now, key, false);
        }
    }

    /// A peer's key arrived: what waited for it is written and sent.
    fn key_arrived(&mut self, now: Now, key: &PeerKey) {
        let Some(peer) = self.peers.get(key).cloned() else { return };
        let mut written = Vec::new();
        for p in self.pending.iter().filter(|p| &p.peer == key && p.next.is_some()) {
            if let Body::Unwritten { opts, text, files } = &p.body {
                match self.write_message(&peer, p.packet_no, Opts::SENDCHECKOPT | *opts, text, files) {
                    Ok(Some((_, dg))) => written.push((p.id, Some(dg))),
                    Ok(None) => {}
                    Err(_) => written.push((p.id, None)),
                }
            }
        }
        for (id, dg) in written {
            let Some(i) = self.pending.iter().position(|p| p.id == id) else { continue };
            match dg.filter(|d| fits(&peer, d).is_ok()) {
                Some(dg) => {
                    let p = &mut self.pending[i];
                    p.body = Body::Written(dg.clone());
                    p.sends = 1;
                    p.next = Some(now.mono + self.cfg.retry_interval);
                    self.stats.sent += 1;
                    self.transmit(peer.addr, dg);
                }
                None => {
                    let p = self.pending.swap_remove(i);
                    let reason = format!("too long for {} once encrypted", peer.client.display_name());
                    self.event(Event::SendFailed { id, peer: p.peer.clone(), packet_no: p.packet_no, reason });
                    self.finish(p.id, p.peer, p.packet_no, Delivery::Failed);
                }
            }
        }
    }

    /// Pending `id` waited for its peer's key in vain: sent in plain text
    /// if the user allows it, else failed with the reason.
    fn without_key(&mut self, now: Now, id: u64) {
        let Some(i) = self.pending.iter().position(|p| p.id == id) else { return };
        let p = self.pending[i].clone();
        let Some(peer) = self.peers.get(&p.peer).cloned() else { return };
        // FeiQ announces ENCRYPTOPT, and whether it answers GETPUBKEY with a
        // usable key is not known (protocol.md §13): it gets plain text
        // after the wait, as from every client before, unless the user
        // requires encryption.
        let feiq = peer.client == ClientKind::Feiq && !self.cfg.require_encryption;
        if let (true, Body::Unwritten { opts, text, files }) = (self.cfg.plaintext_fallback || feiq, &p.body) {
            if let Ok(dg) = self.write_plain(&peer, p.packet_no, Opts::SENDCHECKOPT | *opts, text, files) {
                let q = &mut self.pending[i];
                q.body = Body::Written(dg.clone());
                q.sends = 1;
                q.next = Some(now.mono + self.cfg.retry_interval);
                self.transmit(peer.addr, dg);
                return;
            }
        }
        self.pending.swap_remove(i);
        let reason = format!(
            "{} announces encryption but gave no public key: not sent in plain text \
             (plaintext_fallback = true in config.toml allows it)",
            peer.key
        );
        self.event(Event::SendFailed { id, peer: p.peer.clone(), packet_no: p.packet_no, reason });
        self.finish(id, p.peer, p.packet_no, Delivery::Failed);
    }

    fn acked(&mut self, from: SocketAddr, packet_no: u64, state: Delivery) {
        let peers = &self.peers;
        // A message never sent (waiting to be written) cannot be acknowledged.
        let peer_of = |p: &Pending| peers.get(&p.peer).filter(|_| p.body.written().is_some());
        // The exact address first (two instances may share an IP), then the IP
        // (iptux and FeiQ answer from 2425 whatever port we used); any
        // address of the peer's own (a second NIC).
        let exact =
            self.pending.iter().position(|p| p.packet_no == packet_no && peer_of(p).is_some_and(|q| q.at(from)));
        let by_ip = || {
            self.pending.iter().position(|p| p.packet_no == packet_no && peer_of(p).is_some_and(|q| q.at_ip(from.ip())))
        };
        let Some(i) = exact.or_else(by_ip) else {
            return; // a late duplicate ack
        };
        let p = self.pending.swap_remove(i);
        self.finish(p.id, p.peer, p.packet_no, state);
    }

    fn read_receipt(&mut self, from: SocketAddr, packet_no: u64) {
        // A READMSG also proves delivery if the RECVMSG was lost.
        self.acked(from, packet_no, Delivery::Delivered);
        if let Some(peer) = self.peers.by_ip(from.ip()).map(|p| p.key.clone()) {
            self.event(Event::Read { peer: peer.clone(), packet_no });
            self.out.push_back(Output::Store {
                op: StoreOp::OutState { peer, packet_no, state: Delivery::Read },
                then: Vec::new(),
            });
        }
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

    /// A DecryptErr from `key`: its unacknowledged encrypted messages fail.
    fn decrypt_err_from(&mut self, key: &PeerKey) {
        let encrypted = |p: &Pending| {
            p.body.written().is_some_and(|d| Packet::decode(d).is_ok_and(|q| q.opts().has(Opts::ENCRYPTOPT)))
        };
        let failed: Vec<Pending> = self.pending.iter().filter(|p| &p.peer == key && encrypted(p)).cloned().collect();
        self.pending.retain(|p| !(&p.peer == key && encrypted(p)));
        self.keyring.forget(key);
        self.key_stored.remove(key);
        for p in failed {
            let reason = format!("{key} could not decrypt it (DecryptErr: its key changed?); send it again");
            self.event(Event::SendFailed { id: p.id, peer: p.peer.clone(), packet_no: p.packet_no, reason });
            self.finish(p.id, p.peer, p.packet_no, Delivery::Failed);
        }
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
            packet_no: String::from_utf8_lossy(p.packet_no).into_owned(),
            command: p.command.0,
            sealed: false,
            broadcast: true,
            auto: false,
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
                        let flags = Opts::AUTORETOPT | Opts::NOLOGOPT;
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
            packet_no: String::from_utf8_lossy(p.packet_no).into_owned(),
            command: p.command.0,
            sealed: opts.has(Opts::SECRETOPT),
            broadcast: opts.has(Opts::BROADCASTOPT),
            auto: opts.has(Opts::AUTORETOPT),
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
            let mut flags = Opts::AUTORETOPT | if utf8 { Opts::UTF8OPT | Opts::CAPUTF8OPT } else { 0 };
            let no = self.packet_no(now);
            // Encrypted to a peer that must get ciphertext (none without its key).
            let reply = match peer.as_ref().filter(|pp| self.must_encrypt(pp)) {
                Some(pp) => match self.write_message(pp, no, Opts::AUTORETOPT, &text, &[]) {
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

/// IPMsg adds `[absence]`-style markers to nicks of away users; the away
/// state is shown separately, so the marker is dropped.
fn strip_away_marker(nick: &str) -> &str {
    for m in ["[absence]", "[away]", "[不在]", "[离开]"] {
        if let Some(s) = nick.strip_suffix(m) {
            return s.trim_end();
        }
    }
    nick
}

/// What a message written later (the peer's charset is not known yet)
/// keeps: what it is (sealed, to several). The charset flags are the
/// peer's, and NOADDLISTOPT this run's.
const KEPT_OPTS: u32 = Opts::SECRETEXOPT | Opts::MULTICASTOPT;

/// A message to write later: its kept option bits (4 bytes, LE), then its text.
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
