//! The engine's inputs and outputs: what it is told about itself
//! ([`Config`]), its clock ([`Now`]), what users ask ([`Request`] and why it
//! is refused, [`RequestError`]), and what comes out of it: datagrams
//! ([`Transmit`]), events for listeners ([`Event`] and the types they carry),
//! store operations ([`StoreOp`]), pictures to save; and its counters
//! ([`Stats`]). Nothing here holds the engine's state.

use std::net::SocketAddr;
use std::time::Duration;

use pigeon_protocol::charset::Charset;
use pigeon_protocol::pubkey::Security;
pub use pigeon_protocol::PacketNo;
use pigeon_protocol::{Attachment, ClientKind, Command, Opts};

use super::{secure, Peer, PeerKey};

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
    pub(super) fn oneshot_flag(&self) -> Opts {
        if self.oneshot {
            Opts(Opts::NOADDLISTOPT)
        } else {
            Opts(0)
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
    pub packet_no: PacketNo,
    /// The command word as it came: sealed, broadcast and automatic reply
    /// are read from it ([`Incoming::sealed`] …), never kept beside it.
    pub command: u32,
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
    /// The command word sent: sealed and broadcast are read from it.
    pub command: u32,
    pub unix_ms: i64,
}

impl Incoming {
    pub fn sealed(&self) -> bool {
        Command(self.command).sealed()
    }

    /// To everyone (a broadcast, or iptux's group window).
    pub fn broadcast(&self) -> bool {
        Command(self.command).broadcast()
    }

    /// An automatic reply (away message).
    pub fn auto(&self) -> bool {
        Command(self.command).auto_reply()
    }
}

impl Outgoing {
    pub fn sealed(&self) -> bool {
        Command(self.command).sealed()
    }

    pub fn broadcast(&self) -> bool {
        Command(self.command).broadcast()
    }

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
        packet_no: PacketNo,
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
        packet_no: PacketNo,
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
    /// [`Engine::picture`](super::Engine::picture) where it is.
    SavePicture(SavePicture),
}

/// A picture to save (see [`Output::SavePicture`]).
#[derive(Clone, Debug, PartialEq)]
pub struct SavePicture {
    pub from: std::net::IpAddr,
    pub peer: PeerKey,
    /// The last fragment's packet number and command word.
    pub packet_no: PacketNo,
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
    Open { peer: PeerKey, packet_no: PacketNo, read_check: bool },
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
    Decline { peer: PeerKey, packet_no: PacketNo },
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
