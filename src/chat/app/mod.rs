//! The chat's state and everything it does in answer to keys, node events
//! and replies — with no terminal and no I/O of its own (the clock and the
//! local time zone aside), so that tests drive it directly. What it wants
//! done (send, open, fetch, load history, ring the bell…) it queues as
//! [`Action`]s for the driver in `chat/mod.rs`; what it must know of the
//! file system (whether a path typed exists and is a folder, the size of a
//! file offered, whether an old offer's files are in the download folder,
//! the completions of a path in a prompt) it asks of the [`Files`] the
//! driver gives it.
//!
//! This file is the model: conversations and their entries, peers, the
//! prompt, the focus, the status line, and the [`App`] that holds them. The
//! rest is split by concern:
//! - `peers`: the peer list (rows, filter, selection, marks, unread counts);
//! - `keys`: the keyboard, the mouse and pastes;
//! - `events`: the node's events and answers, our own sends reconciled
//!   with their `sent` and `receipt` events;
//! - `send`: composing and sending, drafts;
//! - `offers`: accepting, declining and fetching offers, opening sealed
//!   messages;
//! - `history`: the store's history merged with what is shown.

mod events;
mod history;
mod keys;
mod offers;
mod peers;
mod send;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use self::events::OwnSend;
use super::text::{self, Editor};
use crate::control::api;
use crate::engine::Delivery;
use chrono::{DateTime, FixedOffset, Utc};
use ratatui::layout::Rect;

/// How much history a conversation loads at first, and adds each time the
/// view is scrolled to its top.
pub const HISTORY_PAGE: usize = 500;

/// A conversation: one peer, the online members of a group, or everyone.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConvKey {
    Everyone,
    Group(String),
    /// `user@host`
    Peer(String),
}

/// A peer in the list.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerView {
    /// `user@host`
    pub key: String,
    pub user: String,
    pub host: String,
    pub nick: String,
    pub group: String,
    pub addr: String,
    /// `ipmsg`, `feiq`, `iptux`, `pigeon`, `unknown`
    pub client: String,
    pub away: bool,
    /// The away text, once asked for.
    pub absence: Option<String>,
    pub online: bool,
    pub unread: usize,
}

impl PeerView {
    fn from_api(p: &api::PeerInfoView) -> PeerView {
        PeerView {
            key: format!("{}@{}", p.user, p.host),
            nick: p.nick.clone(),
            user: p.user.clone(),
            host: p.host.clone(),
            group: p.group.clone(),
            addr: p.addr.clone(),
            client: p.client.clone(),
            away: p.away,
            absence: None,
            online: true,
            unread: 0,
        }
    }

    /// The nick, or the user name when the nick is empty.
    pub fn name(&self) -> &str {
        if self.nick.trim().is_empty() {
            &self.user
        } else {
            &self.nick
        }
    }
}

/// The program a peer runs, as people call it.
pub fn client_label(client: &str) -> &'static str {
    match client {
        "feiq" => "FeiQ",
        "ipmsg" => "IPMsg",
        "iptux" => "iptux",
        "pigeon" => "Pigeon",
        _ => "?",
    }
}

/// A file or folder of an offer.
#[derive(Clone, Debug, PartialEq)]
pub struct FileInfo {
    pub id: u64,
    pub name: String,
    pub size: u64,
    pub mtime: u64,
    pub dir: bool,
}

impl FileInfo {
    fn list(list: &[api::AttachmentView]) -> Vec<FileInfo> {
        list.iter()
            .map(|f| FileInfo { id: f.id, name: f.name.clone(), size: f.size, mtime: f.mtime, dir: f.is_dir() })
            .collect()
    }
}

/// Where an incoming offer stands.
#[derive(Clone, Debug, PartialEq)]
pub enum OfferState {
    Pending,
    Declined,
    Fetching { name: String, done: u64, total: u64, bytes_per_sec: f64 },
    Done { paths: Vec<String> },
    Failed { error: String },
}

/// Files offered with a message (in: to accept; out: what we offered).
#[derive(Clone, Debug, PartialEq)]
pub struct Offer {
    pub files: Vec<FileInfo>,
    pub state: OfferState,
}

/// One recipient of a message we sent.
#[derive(Clone, Debug, PartialEq)]
pub struct Recipient {
    pub key: String,
    /// The engine's id of this send (from the node's answer).
    pub id: Option<u64>,
    pub packet_no: Option<String>,
    pub state: Delivery,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    In,
    Out,
}

/// A message in a conversation.
#[derive(Clone, Debug, PartialEq)]
pub struct Msg {
    pub dir: Dir,
    /// In: the sender (`user@host`).
    pub from: String,
    pub nick: String,
    pub time: DateTime<Utc>,
    pub text: String,
    pub sealed: bool,
    /// In and sealed: opened here.
    pub opened: bool,
    pub broadcast: bool,
    pub auto: bool,
    pub command: u32,
    /// In: as the sender numbered it.
    pub packet_no: String,
    /// Out: one per recipient (none for a broadcast).
    pub recipients: Vec<Recipient>,
    /// Out to a group: the recipients come with the node's answer.
    pub to_group: bool,
    pub offer: Option<Offer>,
    /// Out: this chat's number for the send (matches the node's answer).
    pub tag: u64,
    /// Why it could not be sent.
    pub error: Option<String>,
    /// In: encrypted, signed, or plain.
    pub security: Option<pigeon_protocol::pubkey::Security>,
}

impl Msg {
    /// A sealed message not opened yet (its text is hidden).
    pub fn is_closed(&self) -> bool {
        self.dir == Dir::In && self.sealed && !self.opened
    }

    fn actionable(&self) -> bool {
        self.is_closed()
            || (self.dir == Dir::In
                && matches!(
                    self.offer.as_ref().map(|o| &o.state),
                    Some(OfferState::Pending | OfferState::Failed { .. })
                ))
    }
}

/// An entry of a conversation.
// Nearly every item is a message: boxing it would only add a pointer.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    Msg(Msg),
    /// Something that happened (a shake, an image, an error).
    Notice {
        time: DateTime<Utc>,
        text: String,
    },
}

impl Item {
    pub fn time(&self) -> DateTime<Utc> {
        match self {
            Item::Msg(m) => m.time,
            Item::Notice { time, .. } => *time,
        }
    }
}

/// What is shown of one conversation.
#[derive(Clone, Debug, Default)]
pub struct Conversation {
    pub items: Vec<Item>,
    /// Lines scrolled up from the newest (0: follow new messages).
    pub scroll: usize,
    /// The selected item (conversation focus).
    pub selected: Option<usize>,
    /// History asked for, up to this many messages.
    pub loaded: usize,
    /// The store may hold older messages than those loaded.
    pub more: bool,
    /// The view reached its top (set by the drawing code).
    pub at_top: bool,
    /// The selection the view was last scrolled to (the drawing code
    /// brings a new selection into view once).
    pub shown_selection: Option<usize>,
    /// What was typed for this conversation and not sent yet.
    pub draft: String,
    /// Items that came while the view was scrolled up.
    pub new_below: usize,
    /// The newest N incoming messages came unseen (the peer's unread count
    /// when the conversation was opened): a line marks where they start,
    /// until another conversation is opened.
    pub unread_mark: Option<usize>,
    /// Incoming messages pushed since the mark was set (they come below it).
    pub after_mark: usize,
    /// Open the view at that line (once), when they fill more than a screen.
    pub reveal_mark: bool,
}

/// Which part of the screen takes the keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Focus {
    Peers,
    Conversation,
    Compose,
}

/// A one-line question at the bottom.
#[derive(Clone, Debug)]
pub struct Prompt {
    pub kind: PromptKind,
    pub editor: Editor,
    /// Completions of the path typed (file and folder prompts).
    pub candidates: Vec<String>,
    /// The offer a save-to prompt is for: (sender, packet number).
    pub offer: Option<(String, String)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PromptKind {
    /// A file or folder to send.
    File,
    /// The away text.
    Away,
    /// The folder to fetch the selected offer into.
    SaveTo,
}

/// Severity of the status line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Info,
    Incoming,
    Error,
}

/// A row of the peer list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Row {
    Everyone,
    Group { name: String, online: usize, total: usize },
    Peer(String),
}

/// What the driver should do.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// `to`: `user@host` keys or `group:NAME`.
    Send {
        tag: u64,
        to: Vec<String>,
        text: String,
        sealed: bool,
        files: Vec<String>,
    },
    Broadcast {
        tag: u64,
        text: String,
    },
    Open {
        user: String,
        host: String,
        packet_no: String,
        read_check: bool,
    },
    Decline {
        user: String,
        host: String,
        packet_no: String,
    },
    Fetch {
        key: String,
        packet_no: String,
        addr: String,
        command: u32,
        client: String,
        files: Vec<FileInfo>,
        /// Where to (None: the download folder).
        into: Option<PathBuf>,
    },
    SetAway(Option<String>),
    GetInfo(String),
    /// FeiQ's window shake to a peer (`user@host`).
    Shake(String),
    /// IP Messenger's F5: announce again, drop who does not answer.
    Refresh,
    LoadHistory {
        conv: ConvKey,
        limit: usize,
    },
    /// The user has seen this conversation: its messages become read in the
    /// store (sealed ones wait to be opened), so the counts survive a restart.
    Seen(ConvKey),
    /// A message or a shake came: the bell and a desktop notification, as configured.
    Notify {
        title: String,
        body: String,
    },
    Quit,
}

/// Progress of a fetch, reported by the driver.
#[derive(Clone, Debug, PartialEq)]
pub enum FetchUpdate {
    Progress { name: String, done: u64, total: u64, bytes_per_sec: f64 },
    Failed { error: String },
    Finished { paths: Vec<String> },
}

/// Who we are, as the header shows it.
#[derive(Clone, Debug, Default)]
pub struct Me {
    pub nick: String,
    pub user: String,
    pub host: String,
    pub away: Option<String>,
    /// "daemon" or "own node".
    pub via: String,
}

/// What is at a path (links followed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStat {
    pub dir: bool,
    /// In bytes (a folder: 0).
    pub size: u64,
}

/// The file system, as the chat sees it: the app asks, the driver answers
/// (`chat/mod.rs`'s `LocalFiles`; tests may give their own).
pub trait Files: Send + Sync {
    /// What is at `path`; `None` when nothing is (or it cannot be read).
    fn stat(&self, path: &Path) -> Option<FileStat>;
    /// Completes a path typed in a prompt (`~/` is in `home`): the new text,
    /// and the entries it could still become when there are several
    /// (folders end in `/`).
    fn complete(&self, typed: &str, home: Option<&Path>) -> (String, Vec<String>);
}

/// No file system: nothing exists, nothing completes (until the driver
/// gives the app its own).
pub struct NoFiles;

impl Files for NoFiles {
    fn stat(&self, _: &Path) -> Option<FileStat> {
        None
    }

    fn complete(&self, typed: &str, _: Option<&Path>) -> (String, Vec<String>) {
        (typed.to_string(), Vec::new())
    }
}

/// Screen areas of the last frame (for the mouse).
#[derive(Clone, Copy, Debug, Default)]
pub struct Areas {
    pub peers: Rect,
    /// Index of the first row shown in the peer list.
    pub peer_offset: usize,
    pub conversation: Rect,
    pub compose: Rect,
}

/// The whole chat.
pub struct App {
    pub me: Me,
    pub peers: Vec<PeerView>,
    pub convs: HashMap<ConvKey, Conversation>,
    pub current: ConvKey,
    /// The selected row of the peer list.
    pub selected: Row,
    pub filter: String,
    pub marked: BTreeSet<String>,
    pub focus: Focus,
    pub editor: Editor,
    pub prompt: Option<Prompt>,
    /// The next message goes sealed.
    pub sealed: bool,
    pub help: bool,
    pub status: Option<(String, Level)>,
    /// When the status line was set (a key press after a few seconds clears it).
    status_at: Option<std::time::Instant>,
    /// Times shown in this offset instead of the local zone (tests).
    pub tz: Option<FixedOffset>,
    pub areas: Areas,
    /// The home directory, for `~` in paths (set by the driver).
    pub home_dir: Option<PathBuf>,
    /// What the prompts and offers ask of the file system (set by the driver).
    pub files: Box<dyn Files>,
    /// Where fetched files go (an old offer whose files are there shows as saved).
    pub download_dir: Option<PathBuf>,
    pub quit: bool,
    /// The terminal has the keyboard focus (terminals that report it).
    pub window_focused: bool,
    actions: Vec<Action>,
    next_tag: u64,
    /// Receipts that came before the answer naming their id.
    early: HashMap<u64, (String, Delivery)>,
    /// Our sends whose `sent` event has not come yet: that event is not
    /// shown again (it may come before the answer with the ids).
    own_unclaimed: Vec<OwnSend>,
    last_away: Option<String>,
}

impl App {
    pub fn new(me: Me) -> App {
        let last_away = me.away.clone();
        App {
            me,
            peers: Vec::new(),
            convs: HashMap::new(),
            current: ConvKey::Everyone,
            selected: Row::Everyone,
            filter: String::new(),
            marked: BTreeSet::new(),
            focus: Focus::Peers,
            editor: Editor::default(),
            prompt: None,
            sealed: false,
            help: false,
            status: None,
            status_at: None,
            tz: None,
            areas: Areas::default(),
            home_dir: None,
            files: Box::new(NoFiles),
            download_dir: None,
            quit: false,
            window_focused: true,
            actions: Vec::new(),
            next_tag: 1,
            early: HashMap::new(),
            own_unclaimed: Vec::new(),
            last_away,
        }
    }

    /// The actions queued since the last call.
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    /// A time as the user reads it.
    pub fn local(&self, t: DateTime<Utc>) -> DateTime<FixedOffset> {
        match self.tz {
            Some(tz) => t.with_timezone(&tz),
            None => t.with_timezone(&chrono::Local).fixed_offset(),
        }
    }

    /// Members of a group online now.
    pub fn group_online(&self, group: &str) -> usize {
        self.peers.iter().filter(|p| p.group == group && p.online).count()
    }

    pub fn peer(&self, key: &str) -> Option<&PeerView> {
        self.peers.iter().find(|p| p.key == key)
    }

    fn peer_mut(&mut self, key: &str) -> Option<&mut PeerView> {
        self.peers.iter_mut().find(|p| p.key == key)
    }

    pub fn conv(&self, key: &ConvKey) -> Option<&Conversation> {
        self.convs.get(key)
    }

    pub fn current_conv(&self) -> Option<&Conversation> {
        self.convs.get(&self.current)
    }

    fn conv_mut(&mut self, key: &ConvKey) -> &mut Conversation {
        self.convs.entry(key.clone()).or_default()
    }

    fn set_status(&mut self, text: impl Into<String>, level: Level) {
        self.status = Some((text.into(), level));
        self.status_at = Some(std::time::Instant::now());
    }

    // ---- conversations ----------------------------------------------------

    /// Shows a conversation (loading its history the first time).
    pub fn open(&mut self, conv: ConvKey) {
        if let ConvKey::Peer(k) = &conv {
            if let Some(p) = self.peer_mut(k) {
                let unread = std::mem::take(&mut p.unread);
                if p.away && p.online && p.absence.is_none() {
                    self.actions.push(Action::GetInfo(k.clone()));
                }
                if unread > 0 {
                    let c = self.conv_mut(&conv);
                    c.unread_mark = Some(unread);
                    c.after_mark = 0;
                    c.reveal_mark = true;
                }
            }
            if matches!(&self.status, Some((_, Level::Incoming))) {
                self.status = None;
            }
        }
        // Each conversation keeps its own draft: a private text typed to one
        // peer never ends up in a broadcast. The one left loses its mark.
        if conv != self.current {
            let draft = self.editor.take();
            let left = self.conv_mut(&self.current.clone());
            left.draft = draft;
            left.unread_mark = None;
            let next = std::mem::take(&mut self.conv_mut(&conv).draft);
            self.editor.set(&next);
        }
        let c = self.conv_mut(&conv);
        c.scroll = 0;
        if c.loaded == 0 {
            c.loaded = HISTORY_PAGE;
            self.actions.push(Action::LoadHistory { conv: conv.clone(), limit: HISTORY_PAGE });
        }
        self.seen(conv.clone());
        self.current = conv;
    }

    /// Tells the node (once per turn) that a conversation has been seen.
    fn seen(&mut self, conv: ConvKey) {
        if matches!(conv, ConvKey::Peer(_) | ConvKey::Everyone) && !self.actions.contains(&Action::Seen(conv.clone())) {
            self.actions.push(Action::Seen(conv));
        }
    }

    /// Adds an entry to a conversation.
    fn push(&mut self, conv: &ConvKey, item: Item) {
        let c = self.conv_mut(conv);
        // The mark counts what the unread count counts: the peer's own
        // messages, not its broadcasts.
        if c.unread_mark.is_some() && matches!(&item, Item::Msg(m) if m.dir == Dir::In && !m.broadcast) {
            c.after_mark += 1;
        }
        c.items.push(item);
        if c.scroll > 0 {
            c.new_below += 1; // said at the bottom of the view
        }
    }

    /// Scrolls the conversation up (positive) or down; at the top, loads
    /// older history.
    pub fn scroll(&mut self, lines: isize) {
        let conv = self.current.clone();
        let c = self.conv_mut(&conv);
        if lines > 0 && c.at_top {
            if c.more {
                c.more = false;
                c.loaded *= 2;
                let limit = c.loaded;
                self.actions.push(Action::LoadHistory { conv, limit });
            }
            return;
        }
        c.scroll = (c.scroll as isize + lines).max(0) as usize;
        if c.scroll == 0 {
            c.new_below = 0;
        }
    }

    // ---- paths as typed in the prompts -------------------------------------

    /// A path as typed, with `~/` for the home directory.
    fn expand(&self, path: &str) -> PathBuf {
        match (path.strip_prefix("~/"), &self.home_dir) {
            (Some(rest), Some(h)) => h.join(rest),
            _ => PathBuf::from(path),
        }
    }

    /// `~/x` for a path in the home directory.
    fn shorten(&self, p: &Path) -> String {
        match self.home_dir.as_deref().and_then(|h| p.strip_prefix(h).ok()) {
            Some(rest) => format!("~/{}", rest.display()),
            None => p.display().to_string(),
        }
    }
}

/// A `user@host` key's two parts (a key without `@` is all user).
pub fn split_key(key: &str) -> (&str, &str) {
    key.split_once('@').unwrap_or((key, ""))
}

/// A group's name as shown (the empty group has one too).
pub fn group_name(g: &str) -> String {
    if g.is_empty() {
        "(no group)".into()
    } else {
        text::one_line(g)
    }
}
