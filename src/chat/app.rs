//! The chat's state and everything it does in answer to keys, node events
//! and replies — with no terminal and no I/O, so that tests drive it
//! directly. What it wants done (send, open, fetch, load history, ring the
//! bell…) it queues as [`Action`]s for the driver in `chat/mod.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::text::{self, Editor};
use crate::control::api;
use crate::engine::Delivery;
use crate::store::{Direction, MessageRecord, MessageState, PeerRecord, UnreadCount};
use chrono::{DateTime, FixedOffset, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEvent, MouseEventKind};
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

/// A send of this chat, until its `sent` event comes.
#[derive(Clone, Debug)]
struct OwnSend {
    tag: u64,
    text: String,
    broadcast: bool,
    /// The recipients, sorted; `None` for a group (known from the answer).
    to: Option<Vec<String>>,
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
        into: Option<std::path::PathBuf>,
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
    /// The home directory, for `~` in paths.
    pub home_dir: Option<std::path::PathBuf>,
    /// Where fetched files go (an old offer whose files are there shows as saved).
    pub download_dir: Option<std::path::PathBuf>,
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
            home_dir: directories::BaseDirs::new().map(|b| b.home_dir().to_path_buf()),
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

    // ---- the peer list -------------------------------------------------

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

    /// Tells the node (once per turn) that a conversation has been seen.
    fn seen(&mut self, conv: ConvKey) {
        if matches!(conv, ConvKey::Peer(_) | ConvKey::Everyone) && !self.actions.contains(&Action::Seen(conv.clone())) {
            self.actions.push(Action::Seen(conv));
        }
    }

    /// Peers online now (the answer to `peers`).
    pub fn set_online_peers(&mut self, list: &[api::PeerView]) {
        for p in list {
            self.upsert_peer(&p.info, true);
        }
    }

    fn upsert_peer(&mut self, v: &api::PeerInfoView, online: bool) -> Option<String> {
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

    fn move_selection(&mut self, delta: isize) {
        let rows = self.rows();
        if rows.is_empty() {
            return;
        }
        let i = self.selected_index(&rows) as isize + delta;
        let i = i.clamp(0, rows.len() as isize - 1) as usize;
        self.selected = rows[i].clone();
    }

    fn open_row(&mut self, row: &Row) {
        let conv = match row {
            Row::Everyone => ConvKey::Everyone,
            Row::Group { name, .. } => ConvKey::Group(name.clone()),
            Row::Peer(k) => ConvKey::Peer(k.clone()),
        };
        self.open(conv);
    }

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

    fn toggle_mark(&mut self) {
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

    // ---- composing and sending -------------------------------------------

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

    fn new_out(&mut self, text: String, sealed: bool, offer: Option<Offer>) -> Msg {
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

    fn recipient(key: &str) -> Recipient {
        Recipient { key: key.to_string(), id: None, packet_no: None, state: Delivery::Sending }
    }

    /// Sends text and/or files to the compose target.
    fn send(&mut self, text: String, files: Vec<String>) {
        let offer = (!files.is_empty()).then(|| Offer {
            files: files
                .iter()
                .map(|f| FileInfo {
                    id: 0,
                    name: std::path::Path::new(f).file_name().map_or(f.clone(), |n| n.to_string_lossy().into_owned()),
                    size: std::fs::metadata(f).map(|m| if m.is_dir() { 0 } else { m.len() }).unwrap_or(0),
                    mtime: 0,
                    dir: std::path::Path::new(f).is_dir(),
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

    fn out_msgs_mut(&mut self) -> impl Iterator<Item = &mut Msg> {
        self.convs.values_mut().flat_map(|c| c.items.iter_mut()).filter_map(|i| match i {
            Item::Msg(m) if m.dir == Dir::Out => Some(m),
            _ => None,
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

    // ---- node events ------------------------------------------------------

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

    // ---- history ----------------------------------------------------------

    /// Messages of a conversation from the store, merged with what is shown
    /// (nothing twice; things only shown here, like notices, stay).
    pub fn on_history(&mut self, conv: &ConvKey, records: &[MessageRecord], limit: usize) {
        let c = self.convs.entry(conv.clone()).or_default();
        let shown = std::mem::take(&mut c.items);
        // What is shown wins over its stored copy: it knows more (an offer
        // fetched or declined, a receipt that came since).
        let mut keys = std::collections::HashSet::new();
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
            records.iter().map(|r| msg_from_record(r, &self.me, self.download_dir.as_deref())).collect()
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
        let members: std::collections::HashSet<String> =
            self.peers.iter().filter(|p| p.group == group).map(|p| p.key.clone()).collect();
        let mut sends: Vec<Msg> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for r in records.iter().filter(|r| r.direction == Direction::Out && !r.broadcast) {
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

    // ---- files ------------------------------------------------------------

    /// Progress of the fetch of a peer's offer.
    pub fn on_fetch(&mut self, key: &str, packet_no: &str, u: FetchUpdate) {
        let state = match u {
            FetchUpdate::Progress { name, done, total, bytes_per_sec } => {
                OfferState::Fetching { name, done, total, bytes_per_sec }
            }
            FetchUpdate::Failed { error } => {
                self.set_status(format!("fetch failed: {error}"), Level::Error);
                OfferState::Failed { error }
            }
            FetchUpdate::Finished { paths } => {
                self.set_status(format!("saved {}", paths.join(", ")), Level::Info);
                OfferState::Done { paths }
            }
        };
        self.for_incoming(key, packet_no, |m| {
            if let Some(o) = &mut m.offer {
                o.state = state.clone();
            }
        });
    }

    /// Applies `f` to every copy (peer, group, Everyone) of a message that came.
    fn for_incoming(&mut self, from: &str, packet_no: &str, mut f: impl FnMut(&mut Msg)) {
        for c in self.convs.values_mut() {
            for i in &mut c.items {
                if let Item::Msg(m) = i {
                    if m.dir == Dir::In && m.from == from && m.packet_no == packet_no {
                        f(m);
                    }
                }
            }
        }
    }

    fn selected_msg(&self) -> Option<&Msg> {
        let c = self.current_conv()?;
        match c.items.get(c.selected?) {
            Some(Item::Msg(m)) => Some(m),
            _ => None,
        }
    }

    /// Accepts (fetches) the offer of the selected message.
    fn accept(&mut self) {
        let Some(m) = self.selected_msg().cloned() else { return };
        self.accept_into(m, None);
    }

    /// Asks where to save the selected message's offer, then fetches it there.
    fn save_to(&mut self) {
        let Some(m) = self.selected_msg().cloned() else { return };
        if m.offer.is_none() || m.dir == Dir::Out {
            return self.accept(); // says why not
        }
        let dir = self.download_dir.as_ref().map(|d| self.shorten(d)).unwrap_or_default();
        self.prompt = Some(Prompt {
            kind: PromptKind::SaveTo,
            editor: Editor::with_text(&dir),
            candidates: Vec::new(),
            offer: Some((m.from.clone(), m.packet_no.clone())),
        });
    }

    /// `~/x` for a path in the home directory.
    fn shorten(&self, p: &std::path::Path) -> String {
        match self.home_dir.as_deref().and_then(|h| p.strip_prefix(h).ok()) {
            Some(rest) => format!("~/{}", rest.display()),
            None => p.display().to_string(),
        }
    }

    fn accept_into(&mut self, m: Msg, into: Option<std::path::PathBuf>) {
        let Some(o) = &m.offer else {
            return self.set_status("this message offers no files", Level::Info);
        };
        if m.dir == Dir::Out {
            return self.set_status("you offered these files", Level::Info);
        }
        match o.state {
            OfferState::Fetching { .. } => return,
            OfferState::Declined => {
                return self.set_status("you declined this offer (the sender was told)", Level::Info)
            }
            _ => {}
        }
        let (addr, client) = match self.peer(&m.from) {
            Some(p) => (p.addr.clone(), p.client.clone()),
            None => return self.set_status("the sender is unknown", Level::Error),
        };
        if let Some(p) = self.peer(&m.from).filter(|p| !p.online) {
            let name = text::one_line(p.name());
            self.set_status(format!("{name} is offline; trying anyway"), Level::Info);
        }
        self.actions.push(Action::Fetch {
            key: m.from.clone(),
            packet_no: m.packet_no.clone(),
            addr,
            command: m.command,
            client,
            files: o.files.clone(),
            into,
        });
        let total = o.files.iter().fold(0u64, |t, f| t.saturating_add(f.size));
        let name = o.files.first().map(|f| f.name.clone()).unwrap_or_default();
        self.on_fetch(&m.from, &m.packet_no, FetchUpdate::Progress { name, done: 0, total, bytes_per_sec: 0.0 });
        self.status = None;
    }

    fn decline(&mut self) {
        let Some(m) = self.selected_msg().cloned() else { return };
        let Some(o) = &m.offer else { return };
        if m.dir == Dir::Out || !matches!(o.state, OfferState::Pending | OfferState::Failed { .. }) {
            return;
        }
        let (user, host) = split_key(&m.from);
        self.actions.push(Action::Decline {
            user: user.to_string(),
            host: host.to_string(),
            packet_no: m.packet_no.clone(),
        });
        self.for_incoming(&m.from, &m.packet_no, |x| {
            if let Some(o) = &mut x.offer {
                o.state = OfferState::Declined;
            }
        });
    }

    /// Opens the selected sealed message (the sender gets a read receipt).
    fn open_sealed(&mut self) {
        let Some(m) = self.selected_msg().cloned() else { return };
        if !m.is_closed() {
            return;
        }
        let (user, host) = split_key(&m.from);
        let read_check = m.command == 0 || pigeon_protocol::Command(m.command).has(pigeon_protocol::Opts::READCHECKOPT);
        self.actions.push(Action::Open {
            user: user.to_string(),
            host: host.to_string(),
            packet_no: m.packet_no.clone(),
            read_check,
        });
        self.for_incoming(&m.from, &m.packet_no, |x| x.opened = true);
    }

    // ---- keys ---------------------------------------------------------------

    /// Pasted text (bracketed paste): into the prompt or the compose box.
    pub fn on_paste(&mut self, s: &str) {
        if let Some(p) = &mut self.prompt {
            p.editor.insert_str(&s.replace(['\n', '\r'], " "));
            return;
        }
        if self.focus == Focus::Peers {
            self.focus = Focus::Compose;
        }
        self.editor.insert_str(s);
    }

    pub fn on_key(&mut self, k: KeyEvent) {
        if k.kind == KeyEventKind::Release {
            return;
        }
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        // A message read for a while goes at the next key.
        if self.status_at.is_some_and(|t| t.elapsed() >= std::time::Duration::from_secs(5)) {
            self.status = None;
            self.status_at = None;
        }
        if self.help {
            self.help = false;
            return;
        }
        if ctrl && matches!(k.code, KeyCode::Char('q')) {
            self.quit();
            return;
        }
        if self.prompt.is_some() {
            return self.prompt_key(k);
        }
        match (k.code, ctrl) {
            (KeyCode::Char('c'), true) => {
                if self.focus == Focus::Compose && !self.editor.is_empty() {
                    self.editor.take();
                } else {
                    self.quit();
                }
                return;
            }
            (KeyCode::F(1), _) => {
                self.help = true;
                return;
            }
            (KeyCode::F(5), _) => {
                self.actions.push(Action::Refresh);
                self.set_status("refreshing: peers that do not answer within 10 s go offline", Level::Info);
                return;
            }
            (KeyCode::Tab | KeyCode::BackTab, _) => {
                // Peers → compose → conversation → peers; Shift+Tab backwards.
                const ORDER: [Focus; 3] = [Focus::Peers, Focus::Compose, Focus::Conversation];
                let i = ORDER.iter().position(|f| *f == self.focus).unwrap_or(0);
                let step = if k.code == KeyCode::Tab { 1 } else { 2 };
                self.focus = ORDER[(i + step) % 3];
                if self.focus == Focus::Conversation {
                    self.select_newest_actionable();
                }
                return;
            }
            (KeyCode::Char('f'), true) => {
                if self.marked.is_empty() && self.current == ConvKey::Everyone {
                    self.set_status("files go to a peer, a group or marked peers: open one first", Level::Error);
                    return;
                }
                self.prompt = Some(Prompt {
                    kind: PromptKind::File,
                    editor: Editor::default(),
                    candidates: Vec::new(),
                    offer: None,
                });
                return;
            }
            (KeyCode::Char('a'), true) => {
                if self.me.away.is_some() {
                    self.me.away = None;
                    self.actions.push(Action::SetAway(None));
                    self.set_status("back online", Level::Info);
                } else {
                    let text = self.last_away.clone().unwrap_or_else(|| "Not at my desk".into());
                    self.prompt = Some(Prompt {
                        kind: PromptKind::Away,
                        editor: Editor::with_text(&text),
                        candidates: Vec::new(),
                        offer: None,
                    });
                }
                return;
            }
            (KeyCode::Char('g'), true) => {
                // Ctrl-G, the bell: FeiQ's window shake, to the open peer.
                match &self.current {
                    ConvKey::Peer(k) => {
                        self.actions.push(Action::Shake(k.clone()));
                        self.set_status(
                            "shake sent (FeiQ shakes its window; other clients may ignore it)",
                            Level::Info,
                        );
                    }
                    _ => self.set_status("a shake goes to one peer: open its conversation first", Level::Error),
                }
                return;
            }
            (KeyCode::Char('s'), true) => {
                self.sealed = !self.sealed;
                return;
            }
            (KeyCode::PageUp, _) => return self.scroll(self.page() as isize),
            (KeyCode::PageDown, _) => return self.scroll(-(self.page() as isize)),
            _ => {}
        }
        match self.focus {
            Focus::Peers => self.peers_key(k),
            Focus::Conversation => self.conversation_key(k),
            Focus::Compose => self.compose_key(k),
        }
    }

    /// Quits. Unsent text is kept: the drafts are saved on the way out.
    fn quit(&mut self) {
        self.quit = true;
        self.actions.push(Action::Quit);
    }

    // ---- drafts -----------------------------------------------------------

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

    fn page(&self) -> usize {
        (self.areas.conversation.height as usize).saturating_sub(3).max(1)
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

    fn peers_key(&mut self, k: KeyEvent) {
        match k.code {
            KeyCode::Up => self.move_selection(-1),
            KeyCode::Down => self.move_selection(1),
            KeyCode::Home => self.move_selection(-1_000_000),
            KeyCode::End => self.move_selection(1_000_000),
            KeyCode::Enter | KeyCode::Right => {
                let rows = self.rows();
                if let Some(row) = rows.get(self.selected_index(&rows)).cloned() {
                    // Choosing a conversation ends a marked selection (Tab
                    // goes to the compose box with the marks kept).
                    if !self.marked.is_empty() {
                        self.marked.clear();
                        self.set_status("marks cleared", Level::Info);
                    }
                    self.open_row(&row);
                    self.focus = Focus::Compose;
                }
            }
            KeyCode::Char(' ') => self.toggle_mark(),
            KeyCode::Char('?') => self.help = true,
            KeyCode::Esc => {
                if !self.filter.is_empty() {
                    self.filter.clear();
                } else {
                    self.marked.clear();
                }
            }
            KeyCode::Backspace => {
                self.filter.pop();
            }
            KeyCode::Char(c) if !k.modifiers.intersects(KeyModifiers::CONTROL | KeyModifiers::ALT) => {
                self.filter.push(c);
                // Select the first peer that matches.
                if let Some(first) = self.rows().into_iter().find(|r| matches!(r, Row::Peer(_))) {
                    self.selected = first;
                }
            }
            _ => {}
        }
    }

    fn select_newest_actionable(&mut self) {
        let Some(c) = self.convs.get_mut(&self.current) else { return };
        let newest = c.items.iter().rposition(|i| matches!(i, Item::Msg(m) if m.actionable()));
        c.selected = newest.or(c.items.len().checked_sub(1));
        c.scroll = 0;
    }

    fn conversation_key(&mut self, k: KeyEvent) {
        let conv = self.current.clone();
        let c = self.conv_mut(&conv);
        let last = c.items.len().checked_sub(1);
        match k.code {
            KeyCode::Up | KeyCode::Char('k') => {
                c.selected = match (c.selected, last) {
                    (Some(i), _) => Some(i.saturating_sub(1)),
                    (None, l) => l,
                }
            }
            KeyCode::Down | KeyCode::Char('j') => {
                c.selected = match (c.selected, last) {
                    (Some(i), Some(l)) => Some((i + 1).min(l)),
                    (None, l) => l,
                    (s, None) => s,
                }
            }
            KeyCode::Home => c.selected = last.map(|_| 0),
            KeyCode::End => {
                c.selected = last;
                c.scroll = 0;
            }
            KeyCode::Enter | KeyCode::Char('o') => self.open_sealed(),
            KeyCode::Char('a') => self.accept(),
            KeyCode::Char('s') => self.save_to(),
            KeyCode::Char('d') => self.decline(),
            KeyCode::Char('?') => self.help = true,
            KeyCode::Esc => {
                // Out to the peer list, where typing filters.
                c.selected = None;
                self.focus = Focus::Peers;
            }
            _ => {}
        }
    }

    fn compose_key(&mut self, k: KeyEvent) {
        let alt = k.modifiers.contains(KeyModifiers::ALT);
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        let shift = k.modifiers.contains(KeyModifiers::SHIFT);
        let e = &mut self.editor;
        match k.code {
            KeyCode::Enter if alt || shift || ctrl => e.insert_char('\n'),
            KeyCode::Char('j') if ctrl => e.insert_char('\n'),
            KeyCode::Enter => {
                let text = e.text().trim_end().to_string();
                if text.trim().is_empty() {
                    return;
                }
                e.take();
                self.send(text, Vec::new());
            }
            KeyCode::Char('u') if ctrl => {
                e.take();
            }
            KeyCode::Char('w') if ctrl => e.delete_word(),
            KeyCode::Char(c) if !ctrl => e.insert_char(c),
            KeyCode::Backspace => e.backspace(),
            KeyCode::Delete => e.delete(),
            KeyCode::Left => e.left(),
            KeyCode::Right => e.right(),
            KeyCode::Home => e.home(),
            KeyCode::End => e.end(),
            // PgUp/PgDn scroll; the arrows stay in the text.
            KeyCode::Up if e.on_first_line() => e.home(),
            KeyCode::Down if e.on_last_line() => e.end(),
            KeyCode::Up => e.up(),
            KeyCode::Down => e.down(),
            KeyCode::Esc => self.focus = Focus::Peers,
            _ => {}
        }
    }

    fn prompt_key(&mut self, k: KeyEvent) {
        // An older message does not belong to what is typed now.
        if !matches!(self.status, Some((_, Level::Incoming))) {
            self.status = None;
        }
        let Some(p) = &mut self.prompt else { return };
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        match k.code {
            KeyCode::Esc => self.prompt = None,
            KeyCode::Char('c') if ctrl => self.prompt = None,
            KeyCode::Enter => {
                let p = self.prompt.take().expect("checked");
                let value = p.editor.text().trim().to_string();
                match p.kind {
                    PromptKind::Away => {
                        let text = if value.is_empty() { "Not at my desk".to_string() } else { value };
                        self.me.away = Some(text.clone());
                        self.last_away = Some(text.clone());
                        self.actions.push(Action::SetAway(Some(text)));
                        self.set_status("away (Ctrl+A to come back)", Level::Info);
                    }
                    PromptKind::SaveTo => {
                        let Some((from, no)) = &p.offer else { return };
                        let into = if value.is_empty() { None } else { Some(self.expand(&value)) };
                        if let Some(d) = into.as_ref().filter(|d| d.exists() && !d.is_dir()) {
                            self.set_status(format!("{} is a file: give a folder", d.display()), Level::Error);
                            self.prompt = Some(p);
                            return;
                        }
                        let msg = self.current_conv().and_then(|c| {
                            c.items.iter().find_map(|i| match i {
                                Item::Msg(m) if &m.from == from && &m.packet_no == no && m.dir == Dir::In => {
                                    Some(m.clone())
                                }
                                _ => None,
                            })
                        });
                        if let Some(m) = msg {
                            self.accept_into(m, into);
                        }
                    }
                    PromptKind::File => {
                        if value.is_empty() {
                            return;
                        }
                        let path = self.expand(&value);
                        if !path.exists() {
                            self.set_status(format!("{} does not exist", path.display()), Level::Error);
                            self.prompt = Some(p); // to correct it
                            return;
                        }
                        let path = path.to_string_lossy().into_owned();
                        self.send(String::new(), vec![path]);
                    }
                }
            }
            KeyCode::Tab if matches!(p.kind, PromptKind::File | PromptKind::SaveTo) => {
                let typed = p.editor.text().to_string();
                let (completed, candidates) = complete_path(&typed, self.home_dir.as_deref());
                let p = self.prompt.as_mut().expect("checked");
                p.editor.set(&completed);
                p.candidates = candidates;
            }
            KeyCode::Char(c) if !ctrl => p.editor.insert_char(c),
            KeyCode::Char('u') if ctrl => {
                p.editor.take();
            }
            KeyCode::Char('w') if ctrl => p.editor.delete_word(),
            KeyCode::Backspace => p.editor.backspace(),
            KeyCode::Delete => p.editor.delete(),
            KeyCode::Left => p.editor.left(),
            KeyCode::Right => p.editor.right(),
            KeyCode::Home => p.editor.home(),
            KeyCode::End => p.editor.end(),
            _ => {}
        }
    }

    fn expand(&self, path: &str) -> std::path::PathBuf {
        match (path.strip_prefix("~/"), &self.home_dir) {
            (Some(rest), Some(h)) => h.join(rest),
            _ => std::path::PathBuf::from(path),
        }
    }

    pub fn on_mouse(&mut self, m: MouseEvent) {
        let inside = |r: Rect| m.column >= r.x && m.column < r.x + r.width && m.row >= r.y && m.row < r.y + r.height;
        match m.kind {
            MouseEventKind::ScrollUp if inside(self.areas.conversation) => self.scroll(3),
            MouseEventKind::ScrollDown if inside(self.areas.conversation) => self.scroll(-3),
            MouseEventKind::ScrollUp if inside(self.areas.peers) => self.move_selection(-1),
            MouseEventKind::ScrollDown if inside(self.areas.peers) => self.move_selection(1),
            MouseEventKind::Down(_) if inside(self.areas.peers) => {
                // Row 0 of the area is its border/title.
                let line = (m.row - self.areas.peers.y) as usize;
                if line == 0 || line + 1 >= self.areas.peers.height as usize {
                    return; // the borders
                }
                let rows = self.rows();
                if let Some(row) = rows.get(self.areas.peer_offset + line - 1).cloned() {
                    self.selected = row.clone();
                    self.open_row(&row);
                    self.focus = Focus::Compose;
                }
            }
            MouseEventKind::Down(_) if inside(self.areas.compose) => self.focus = Focus::Compose,
            MouseEventKind::Down(_) if inside(self.areas.conversation) => {
                self.focus = Focus::Conversation;
                self.select_newest_actionable();
            }
            _ => {}
        }
    }
}

/// A delivery state by its JSON name.
/// When a `message` or `sent` event happened (now, if it does not say).
fn event_time(time: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(time).map_or_else(|_| Utc::now(), |t| t.with_timezone(&Utc))
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

fn msg_from_record(r: &MessageRecord, me: &Me, downloads: Option<&std::path::Path>) -> Msg {
    let key = format!("{}@{}", r.peer.user, r.peer.host);
    let files = r.attachments_json.as_deref().map(api::AttachmentView::from_column).unwrap_or_default();
    let files = FileInfo::list(&files);
    let out = r.direction == Direction::Out;
    let auto = r.is_auto_reply();
    let state = match r.state {
        MessageState::Sending => Delivery::Sending,
        MessageState::Delivered => Delivery::Delivered,
        MessageState::Queued => Delivery::Queued,
        MessageState::Failed => Delivery::Failed,
        MessageState::Read | MessageState::Unread => Delivery::Read,
    };
    Msg {
        dir: if out { Dir::Out } else { Dir::In },
        from: if out { String::new() } else { key.clone() },
        nick: if out { me.nick.clone() } else { r.peer.nick.clone() },
        time: r.time,
        text: r.text.clone(),
        sealed: r.sealed,
        opened: !out && r.state == MessageState::Read,
        broadcast: r.broadcast,
        auto,
        command: r.command,
        packet_no: r.packet_no.clone(),
        // Broadcasts and automatic replies ask for no receipt: "sent".
        recipients: if out && !r.broadcast && !auto {
            vec![Recipient { key, id: None, packet_no: Some(r.packet_no.clone()), state }]
        } else {
            Vec::new()
        },
        to_group: false,
        offer: (!files.is_empty()).then(|| {
            // Fetched earlier: every file is in the download folder.
            let saved: Option<Vec<String>> = downloads.and_then(|d| {
                files
                    .iter()
                    .map(|f| Some(d.join(&f.name)).filter(|p| p.exists()).map(|p| p.display().to_string()))
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

/// Completes a path: to the longest common prefix of the entries that
/// start with what was typed; returns the new text and the candidates
/// (folders end in `/`).
pub fn complete_path(typed: &str, home: Option<&std::path::Path>) -> (String, Vec<String>) {
    let (shown_dir, prefix) = match typed.rfind('/') {
        Some(i) => (&typed[..=i], &typed[i + 1..]),
        None => ("", typed),
    };
    let real_dir = match (shown_dir.strip_prefix("~/"), home) {
        (Some(rest), Some(h)) => h.join(rest),
        _ if shown_dir.is_empty() => std::path::PathBuf::from("."),
        _ => std::path::PathBuf::from(shown_dir),
    };
    let Ok(entries) = std::fs::read_dir(&real_dir) else { return (typed.to_string(), Vec::new()) };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with(prefix) || (name.starts_with('.') && !prefix.starts_with('.')) {
                return None;
            }
            let dir = e.path().is_dir();
            Some(if dir { format!("{name}/") } else { name })
        })
        .collect();
    names.sort();
    names.truncate(200);
    let Some(first) = names.first() else { return (typed.to_string(), Vec::new()) };
    let mut common = first.clone();
    for n in &names[1..] {
        while !n.starts_with(&common) {
            common.pop();
        }
    }
    let completed = format!("{shown_dir}{common}");
    if names.len() == 1 {
        (completed, Vec::new())
    } else {
        (completed, names)
    }
}
