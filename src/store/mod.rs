//! Persistence: the store owns the SQLite database (`pigeon.db` in the
//! home directory) holding the message history, the outbox (outgoing
//! messages not yet delivered), the peers seen and the packet counter.
//!
//! The store is called from a dedicated thread that owns the connection:
//! the engine never blocks on disk, it sends the store work by message. So
//! this API is synchronous and plain: no async, no locking of its own.
//!
//! Writes go through [`Store::transaction`], which batches any number of
//! writes into one commit; the caller acknowledges messages to peers only
//! after it returned `Ok`, so an acknowledged message is on disk.
//!
//! Search ([`HistoryQuery::search`]) uses an FTS5 index with the `trigram`
//! tokenizer over the text and the peer's nick: any substring of three or
//! more characters is found, Chinese included (FTS5's default tokenizer
//! does not split CJK text into words). See [`Store::history`] for the
//! rules, including the `LIKE` fallback for words shorter than three
//! characters.

mod attachment;
mod keys;
mod offers;
mod schema;
mod taken;

pub use attachment::{FileKind, StoredAttachment};
pub use keys::PinnedKey;
pub use offers::OfferRecord;
pub use pigeon_protocol::pubkey::Security;
pub use taken::{record_fetched, Taken};

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::types::Value;
use rusqlite::{params, Connection, ErrorCode, OptionalExtension, Row, TransactionBehavior};

use schema::{APPLICATION_ID, MIGRATIONS};

/// The schema version this build writes: the number of migrations.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// How long a statement waits for a lock held by another connection before
/// giving up with [`StoreError::Locked`].
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether a message came in or went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Direction {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "in" => Ok(Direction::In),
            "out" => Ok(Direction::Out),
            _ => Err(UnknownName { what: "direction", name: s.to_owned() }),
        }
    }
}

/// Delivery / read state. Out: Sending, Delivered, Queued, Failed, Read.
/// In: Unread, Read. (The schema refuses other combinations.) Stored, and
/// shown by the API, by its snake-case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageState {
    Sending,
    Delivered,
    Queued,
    Failed,
    Read,
    Unread,
}

impl MessageState {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageState::Sending => "sending",
            MessageState::Delivered => "delivered",
            MessageState::Queued => "queued",
            MessageState::Failed => "failed",
            MessageState::Read => "read",
            MessageState::Unread => "unread",
        }
    }
}

impl fmt::Display for MessageState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MessageState {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "sending" => MessageState::Sending,
            "delivered" => MessageState::Delivered,
            "queued" => MessageState::Queued,
            "failed" => MessageState::Failed,
            "read" => MessageState::Read,
            "unread" => MessageState::Unread,
            _ => return Err(UnknownName { what: "message state", name: s.to_owned() }),
        })
    }
}

impl From<crate::engine::Delivery> for MessageState {
    /// An outgoing message's state, as the engine reports it.
    fn from(d: crate::engine::Delivery) -> MessageState {
        use crate::engine::Delivery as D;
        match d {
            D::Sending => MessageState::Sending,
            D::Delivered => MessageState::Delivered,
            D::Queued => MessageState::Queued,
            D::Failed => MessageState::Failed,
            D::Read => MessageState::Read,
        }
    }
}

impl MessageState {
    /// As a delivery state (an incoming message's is read, or to be read:
    /// `Read` either way).
    pub fn delivery(self) -> crate::engine::Delivery {
        use crate::engine::Delivery as D;
        match self {
            MessageState::Sending => D::Sending,
            MessageState::Delivered => D::Delivered,
            MessageState::Queued => D::Queued,
            MessageState::Failed => D::Failed,
            MessageState::Read | MessageState::Unread => D::Read,
        }
    }
}

/// Both are stored as their names (`'in'`, `'sending'`, …): written and
/// read through these, never by hand.
macro_rules! sql_by_name {
    ($t:ty) => {
        impl rusqlite::types::ToSql for $t {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(rusqlite::types::ToSqlOutput::from(self.as_str()))
            }
        }
        impl rusqlite::types::FromSql for $t {
            fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                v.as_str()?.parse().map_err(|e| rusqlite::types::FromSqlError::Other(Box::new(e)))
            }
        }
    };
}
sql_by_name!(Direction);
sql_by_name!(MessageState);

/// A name that `from_str` of [`Direction`] or [`MessageState`] does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {name:?}")]
pub struct UnknownName {
    pub what: &'static str,
    pub name: String,
}

/// The peer a message came from or went to, as it was at that time.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerRef {
    pub user: String,
    pub host: String,
    pub nick: String,
    /// "ip:port"
    pub addr: String,
}

/// One message to or from one peer.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageRecord {
    /// The rowid; 0 when inserting.
    pub id: i64,
    pub direction: Direction,
    pub peer: PeerRef,
    /// As on the wire (raw text).
    pub packet_no: String,
    /// Stored with millisecond precision.
    pub time: DateTime<Utc>,
    pub text: String,
    /// The IPMsg command word (mode + flags) as sent or received: sealed,
    /// broadcast and automatic reply are read from it, never kept beside
    /// it (the table's `sealed` and `broadcast` columns, which its indexes
    /// and queries use, are written from it by [`Tx::insert_message`]).
    pub command: u32,
    pub state: MessageState,
    /// Opaque JSON, stored as is.
    pub attachments_json: Option<String>,
    /// How an incoming message came (None: outgoing, or stored before
    /// Pigeon encrypted).
    pub security: Option<Security>,
}

impl MessageRecord {
    /// An automatic reply (AUTORETOPT): a peer's, or ours while away.
    pub fn is_auto_reply(&self) -> bool {
        pigeon_protocol::Command(self.command).auto_reply()
    }

    /// A sealed message (SECRETOPT).
    pub fn sealed(&self) -> bool {
        pigeon_protocol::Command(self.command).sealed()
    }

    /// To everyone (BROADCASTOPT, or iptux's group window).
    pub fn broadcast(&self) -> bool {
        pigeon_protocol::Command(self.command).broadcast()
    }
}

/// How much of what strangers send is kept ([`Tx::prune`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Peers remembered (the most recently seen).
    pub peers: usize,
    /// Messages kept from each peer we never wrote to.
    pub per_stranger: usize,
    /// Messages kept from all such peers together.
    pub strangers: usize,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention { peers: 20_000, per_stranger: 1_000, strangers: 100_000 }
    }
}

/// A peer seen on the network, its last known entry.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerRecord {
    pub user: String,
    pub host: String,
    pub nick: String,
    pub group: String,
    /// "ip:port"
    pub addr: String,
    pub client: String,
    /// Stored with millisecond precision.
    pub last_seen: DateTime<Utc>,
    /// What tells this machine from others of its name (`pigeon:…`, `mac:…`).
    pub marker: Option<String>,
}

/// How many messages of one peer are unread ([`Store::unread_counts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadCount {
    pub user: String,
    pub host: String,
    /// Its broadcasts (counted apart from the messages to us).
    pub broadcast: bool,
    pub count: u64,
}

/// What [`Store::history`] returns; every field narrows, `Default` is all.
#[derive(Debug, Default, Clone)]
pub struct HistoryQuery {
    /// (user, host) of one peer.
    pub peer: Option<(String, String)>,
    /// Text to search for in the text and the peer's nick; see
    /// [`Store::history`].
    pub search: Option<String>,
    /// Messages at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// The newest N of the matching messages.
    pub limit: Option<usize>,
    /// Only broadcasts.
    pub broadcast_only: bool,
    /// Only messages older than this one (by id): the page before it.
    pub before: Option<i64>,
}

/// What went wrong, with the file and what the store was doing, worded so
/// that a user can act on it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {} is locked by another process (is another Pigeon running with the same home?)", .path.display())]
    Locked { path: PathBuf, source: rusqlite::Error },
    #[error("{} is not a Pigeon database (it is not an SQLite file)", .path.display())]
    NotADatabase { path: PathBuf, source: rusqlite::Error },
    #[error("{} is not a Pigeon database (it belongs to another program)", .path.display())]
    NotPigeon { path: PathBuf },
    #[error("database {} was written by a newer Pigeon (schema {found} > {supported}); upgrade Pigeon or use another home", .path.display())]
    TooNew { path: PathBuf, found: u32, supported: u32 },
    #[error("database {} is corrupt (while trying to {op}); move it aside to start afresh", .path.display())]
    Corrupt { path: PathBuf, op: &'static str, source: rusqlite::Error },
    #[error("cannot open database {} (does its directory exist, and may Pigeon write there?)", .path.display())]
    CannotOpen { path: PathBuf, source: rusqlite::Error },
    #[error("disk full while trying to {op} in database {}", .path.display())]
    DiskFull { path: PathBuf, op: &'static str, source: rusqlite::Error },
    #[error("database {} is read-only (while trying to {op}); check its permissions", .path.display())]
    ReadOnly { path: PathBuf, op: &'static str, source: rusqlite::Error },
    #[error("database {}: no message with id {id}", .path.display())]
    NoSuchMessage { path: PathBuf, id: i64 },
    #[error("database {}: cannot {op}: {reason}", .path.display())]
    Invalid { path: PathBuf, op: &'static str, reason: String },
    #[error("database {}: cannot {op}: {source}", .path.display())]
    Sqlite { path: PathBuf, op: &'static str, source: rusqlite::Error },
}

/// Turns a rusqlite error into a [`StoreError`] that names the file and
/// the operation.
fn classify(path: &Path, op: &'static str, source: rusqlite::Error) -> StoreError {
    let path = path.to_path_buf();
    match source.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy) => StoreError::Locked { path, source },
        Some(ErrorCode::NotADatabase) => StoreError::NotADatabase { path, source },
        Some(ErrorCode::DatabaseCorrupt) => StoreError::Corrupt { path, op, source },
        Some(ErrorCode::CannotOpen) => StoreError::CannotOpen { path, source },
        Some(ErrorCode::DiskFull) => StoreError::DiskFull { path, op, source },
        Some(ErrorCode::ReadOnly) => StoreError::ReadOnly { path, op, source },
        _ => StoreError::Sqlite { path, op, source },
    }
}

trait Context<T> {
    fn ctx(self, path: &Path, op: &'static str) -> Result<T, StoreError>;
}

impl<T> Context<T> for rusqlite::Result<T> {
    fn ctx(self, path: &Path, op: &'static str) -> Result<T, StoreError> {
        self.map_err(|e| classify(path, op, e))
    }
}

/// The database. One per home; owned by the store thread.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

/// Write handle inside a transaction; see [`Store::transaction`].
pub struct Tx<'a> {
    conn: &'a Connection,
    path: &'a Path,
}

const MESSAGE_COLUMNS: &str = "m.id, m.direction, m.peer_user, m.peer_host, m.peer_nick, \
     m.peer_addr, m.packet_no, m.time, m.text, m.command, m.sealed, m.broadcast, m.state, \
     m.attachments, m.security";

const PACKET_COUNTER_KEY: &str = "packet_counter";

impl Store {
    /// Opens (creating the file if needed, not its directory) and migrates
    /// the database at `path`.
    ///
    /// Durability: WAL journal with `synchronous = NORMAL`. A committed
    /// transaction is in the WAL file (in the OS's hands) when `commit`
    /// returns, so it survives the process being killed (`kill -9`, a
    /// panic, an abort): an acknowledged message is never lost that way.
    /// It may be lost if the machine loses power or the OS crashes before
    /// the next checkpoint syncs it; that is acceptable for a LAN
    /// messenger, and `FULL` (an fsync per commit) would cost every
    /// message a disk flush. The database itself never corrupts in either
    /// case.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Self::open_with_timeout(path, BUSY_TIMEOUT)
    }

    fn open_with_timeout(path: &Path, busy_timeout: Duration) -> Result<Store, StoreError> {
        // A new database is created 0600 whatever the umask (SQLite gives
        // its -wal and -shm files the database's permissions): the history
        // is the user's alone. A missing folder is reported by SQLite below.
        {
            use std::os::unix::fs::OpenOptionsExt;
            let _ = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path);
        }
        let conn = Connection::open(path).ctx(path, "open")?;
        Self::setup(conn, path.to_path_buf(), busy_timeout)
    }

    /// A fresh database in memory (tests; a node that keeps nothing on disk).
    pub fn open_in_memory() -> Result<Store, StoreError> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().ctx(&path, "open")?;
        Self::setup(conn, path, BUSY_TIMEOUT)
    }

    fn setup(conn: Connection, path: PathBuf, busy_timeout: Duration) -> Result<Store, StoreError> {
        conn.busy_timeout(busy_timeout).ctx(&path, "set the busy timeout")?;
        // The first statement reads the header: a file that is not SQLite
        // fails here with NotADatabase.
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))
            .ctx(&path, "switch to WAL journal")?;
        conn.pragma_update(None, "synchronous", "NORMAL").ctx(&path, "set synchronous")?;
        conn.pragma_update(None, "foreign_keys", true).ctx(&path, "enable foreign keys")?;
        // 512 KiB of page cache (SQLite's default is 2 MB a connection): a
        // chat history does not need more, and the daemon stays small.
        conn.pragma_update(None, "cache_size", -512).ctx(&path, "set the cache size")?;
        let mut store = Store { conn, path };
        store.migrate()?;
        Ok(store)
    }

    /// Applies the missing migrations, in one transaction.
    fn migrate(&mut self) -> Result<(), StoreError> {
        if Self::check_schema(&self.conn, &self.path)? == SCHEMA_VERSION {
            return Ok(()); // the common case, without taking the write lock
        }
        let path = self.path.as_path();
        // IMMEDIATE: of two processes opening the same fresh file, one
        // migrates, the other waits and then finds nothing to do.
        let tx =
            self.conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx(path, "start the migration")?;
        let version = Self::check_schema(&tx, path)?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(sql).ctx(path, "migrate the schema")?;
            tx.pragma_update(None, "user_version", i as i64 + 1).ctx(path, "migrate the schema")?;
        }
        tx.commit().ctx(path, "commit the migration")
    }

    /// The schema version of a Pigeon database this build can use, or why
    /// it cannot.
    fn check_schema(conn: &Connection, path: &Path) -> Result<u32, StoreError> {
        let not_pigeon = || StoreError::NotPigeon { path: path.to_path_buf() };
        let app_id: i32 =
            conn.pragma_query_value(None, "application_id", |r| r.get(0)).ctx(path, "read the application id")?;
        let version: i64 =
            conn.pragma_query_value(None, "user_version", |r| r.get(0)).ctx(path, "read the schema version")?;
        let objects: i64 =
            conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0)).ctx(path, "read the schema")?;
        // A fresh (empty) file is ours to take; anything else must say so.
        if app_id != APPLICATION_ID && (app_id != 0 || version != 0 || objects != 0) {
            return Err(not_pigeon());
        }
        let version = u32::try_from(version).map_err(|_| not_pigeon())?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew { path: path.to_path_buf(), found: version, supported: SCHEMA_VERSION });
        }
        Ok(version)
    }

    /// The file this store is on (":memory:" for an in-memory one).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` inside one transaction (batching many writes into one
    /// commit; the caller sends acks only after this returns `Ok`). If `f`
    /// fails, nothing it wrote is kept.
    pub fn transaction<T>(&mut self, f: impl FnOnce(&Tx) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let path = self.path.as_path();
        // IMMEDIATE takes the write lock now, so a busy database fails at
        // the start instead of halfway.
        let tx =
            self.conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx(path, "start a transaction")?;
        let value = f(&Tx { conn: &tx, path })?; // dropping `tx` rolls back
        tx.commit().ctx(path, "commit")?;
        Ok(value)
    }

    /// Messages matching `q`, oldest first; with a limit, the newest N of
    /// them (still oldest first).
    ///
    /// Search (`q.search`), over the text and the peer's nick, ASCII case
    /// ignored:
    /// - Plain words (no FTS5 syntax): each word must occur as a substring.
    ///   Words of 3 characters or more use the FTS5 trigram index; shorter
    ///   words (which a trigram index cannot find) fall back to `LIKE`,
    ///   a scan of the rows the other conditions leave.
    /// - A string with FTS5 syntax (`"`, `*`, `(`, `)`, `^`, `:`, or the
    ///   operators `AND`, `OR`, `NOT`) is used as an FTS5 query; each of
    ///   its terms must then have at least 3 characters to match anything.
    ///   If it is not valid FTS5 syntax, it is searched for as a literal
    ///   phrase instead (never an error).
    /// - An empty or blank string does not narrow.
    pub fn history(&self, q: &HistoryQuery) -> Result<Vec<MessageRecord>, StoreError> {
        let search = q.search.as_deref().map(str::trim).filter(|s| !s.is_empty());
        let Some(search) = search else {
            return self.history_with(q, &Search::default());
        };
        if !has_fts_syntax(search) {
            return self.history_with(q, &Search::plain(search));
        }
        let raw = Search { fts: Some(search.to_owned()), like: Vec::new(), files: Vec::new() };
        match self.history_with(q, &raw) {
            // SQLITE_ERROR is what FTS5 reports for a malformed query
            // ("fts5: syntax error near ...", "no such column: ...").
            Err(StoreError::Sqlite { source, .. }) if source.sqlite_error_code() == Some(ErrorCode::Unknown) => {
                self.history_with(q, &Search::literal(search))
            }
            other => other,
        }
    }

    fn history_with(&self, q: &HistoryQuery, search: &Search) -> Result<Vec<MessageRecord>, StoreError> {
        const OP: &str = "read the history";
        let mut sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages m WHERE 1");
        let mut args: Vec<Value> = Vec::new();
        if let Some((user, host)) = &q.peer {
            sql.push_str(" AND m.peer_user = ? AND m.peer_host = ?");
            args.push(Value::Text(user.clone()));
            args.push(Value::Text(host.clone()));
        }
        if q.broadcast_only {
            sql.push_str(" AND m.broadcast = 1");
        }
        if let Some(since) = q.since {
            sql.push_str(" AND m.time >= ?");
            args.push(Value::Integer(since.timestamp_millis()));
        }
        if let Some(id) = q.before {
            // The order below: time, then id.
            sql.push_str(" AND (m.time, m.id) < (SELECT time, id FROM messages WHERE id = ?)");
            args.push(Value::Integer(id));
        }
        // The text and nick match, or (plain words) the attached files' names do.
        let mut text = String::from("1");
        if let Some(fts) = &search.fts {
            text.push_str(" AND m.id IN (SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?)");
            args.push(Value::Text(fts.clone()));
        }
        for pattern in &search.like {
            args.push(Value::Text(pattern.clone()));
            // `?N` is the parameter just pushed, used twice; the plain `?`
            // around it count on from the highest number so far.
            let n = args.len();
            text.push_str(&format!(r" AND (m.text LIKE ?{n} ESCAPE '\' OR m.peer_nick LIKE ?{n} ESCAPE '\')"));
        }
        if search.files.is_empty() {
            sql.push_str(&format!(" AND ({text})"));
        } else {
            let mut files = String::from("m.attachments IS NOT NULL");
            for pattern in &search.files {
                args.push(Value::Text(pattern.clone()));
                files.push_str(&format!(r" AND m.attachments LIKE ?{} ESCAPE '\'", args.len()));
            }
            sql.push_str(&format!(" AND (({text}) OR ({files}))"));
        }
        // Newest first to apply the limit, reversed below.
        sql.push_str(" ORDER BY m.time DESC, m.id DESC LIMIT ?");
        let limit = q.limit.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        args.push(Value::Integer(limit));

        let mut stmt = self.conn.prepare(&sql).ctx(&self.path, OP)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args), message_from_row).ctx(&self.path, OP)?;
        let mut out = rows.collect::<rusqlite::Result<Vec<_>>>().ctx(&self.path, OP)?;
        out.reverse();
        Ok(out)
    }

    /// Outgoing messages still to deliver (state Queued or Sending), oldest
    /// first.
    pub fn outbox(&self) -> Result<Vec<MessageRecord>, StoreError> {
        const OP: &str = "read the outbox";
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages m \
                 WHERE m.direction = 'out' AND m.state IN ('queued', 'sending') \
                 ORDER BY m.time, m.id"
            ))
            .ctx(&self.path, OP)?;
        let rows = stmt.query_map([], message_from_row).ctx(&self.path, OP)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().ctx(&self.path, OP)
    }

    /// (user, host, packet_no, text) of the incoming messages since `since`,
    /// to de-duplicate retransmissions across restarts.
    pub fn recent_incoming_keys(
        &self,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(String, String, String, String)>, StoreError> {
        const OP: &str = "read recent incoming messages";
        // The newest `limit` only (what the engine keeps): a flood last week
        // does not cost memory at start.
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT peer_user, peer_host, packet_no, text FROM ( \
                     SELECT peer_user, peer_host, packet_no, text, time, id FROM messages \
                     WHERE direction = 'in' AND time >= ? ORDER BY time DESC, id DESC LIMIT ?) \
                 ORDER BY time, id",
            )
            .ctx(&self.path, OP)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![since.timestamp_millis(), limit], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .ctx(&self.path, OP)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().ctx(&self.path, OP)
    }

    /// Every peer seen, by (user, host).
    pub fn peers(&self) -> Result<Vec<PeerRecord>, StoreError> {
        self.peers_where("ORDER BY user, host", i64::MAX)
    }

    /// The `limit` peers seen most recently, newest first.
    pub fn recent_peers(&self, limit: usize) -> Result<Vec<PeerRecord>, StoreError> {
        self.peers_where("ORDER BY last_seen DESC", i64::try_from(limit).unwrap_or(i64::MAX))
    }

    fn peers_where(&self, order: &str, limit: i64) -> Result<Vec<PeerRecord>, StoreError> {
        const OP: &str = "read the peers";
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT user, host, nick, grp, addr, client, last_seen, marker FROM peers {order} LIMIT ?"
            ))
            .ctx(&self.path, OP)?;
        let rows = stmt
            .query_map([limit], |r| {
                Ok(PeerRecord {
                    user: r.get(0)?,
                    host: r.get(1)?,
                    nick: r.get(2)?,
                    group: r.get(3)?,
                    addr: r.get(4)?,
                    client: r.get(5)?,
                    last_seen: time_from_millis(r, 6)?,
                    marker: r.get(7)?,
                })
            })
            .ctx(&self.path, OP)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().ctx(&self.path, OP)
    }

    /// Unread incoming messages (sealed ones included), by peer, broadcasts
    /// apart.
    pub fn unread_counts(&self) -> Result<Vec<UnreadCount>, StoreError> {
        const OP: &str = "count unread messages";
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT peer_user, peer_host, broadcast, count(*) FROM messages \
                 WHERE direction = 'in' AND state = 'unread' \
                 GROUP BY peer_user, peer_host, broadcast ORDER BY peer_user, peer_host, broadcast",
            )
            .ctx(&self.path, OP)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(UnreadCount {
                    user: r.get(0)?,
                    host: r.get(1)?,
                    broadcast: r.get(2)?,
                    count: r.get::<_, i64>(3)?.max(0) as u64,
                })
            })
            .ctx(&self.path, OP)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().ctx(&self.path, OP)
    }

    /// This home's random instance number, made on first use and kept
    /// (see `net::instance_marker`).
    pub fn instance(&self) -> Result<u64, StoreError> {
        const OP: &str = "read or make the instance number";
        let found: Option<i64> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'instance'", [], |r| r.get(0))
            .optional()
            .ctx(&self.path, OP)?;
        if let Some(n) = found {
            return Ok(n as u64);
        }
        let n = fastrand::u64(1..) as i64;
        self.conn
            .execute("INSERT INTO meta (key, value) VALUES ('instance', ?) ON CONFLICT (key) DO NOTHING", params![n])
            .ctx(&self.path, OP)?;
        let n: i64 = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'instance'", [], |r| r.get(0))
            .ctx(&self.path, OP)?;
        Ok(n as u64)
    }

    /// The last packet number stored; 0 if never set.
    pub fn packet_counter(&self) -> Result<u64, StoreError> {
        const OP: &str = "read the packet counter";
        let n: Option<i64> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?", [PACKET_COUNTER_KEY], |r| r.get(0))
            .optional()
            .ctx(&self.path, OP)?;
        let n = n.unwrap_or(0);
        u64::try_from(n).map_err(|_| StoreError::Invalid {
            path: self.path.clone(),
            op: OP,
            reason: format!("negative packet counter {n}"),
        })
    }

    /// One message by id.
    pub fn message(&self, id: i64) -> Result<Option<MessageRecord>, StoreError> {
        const OP: &str = "read a message";
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.id = ?"))
            .ctx(&self.path, OP)?;
        stmt.query_row([id], message_from_row).optional().ctx(&self.path, OP)
    }
}

impl Tx<'_> {
    /// Inserts a message; for In messages, a duplicate (same user, host,
    /// packet_no and text) is ignored and returns `Ok(None)`; else `Some(new id)`.
    /// `m.id` is ignored. A state that does not fit the direction (an In
    /// message `Sending`, say) is refused.
    pub fn insert_message(&self, m: &MessageRecord) -> Result<Option<i64>, StoreError> {
        const OP: &str = "insert a message";
        let mut stmt = self
            .conn
            .prepare_cached(
                "INSERT INTO messages (direction, peer_user, peer_host, peer_nick, peer_addr, \
                     packet_no, time, text, command, sealed, broadcast, state, attachments, security) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (peer_user, peer_host, packet_no, text) WHERE direction = 'in' DO NOTHING",
            )
            .ctx(self.path, OP)?;
        let changed = stmt
            .execute(params![
                m.direction,
                m.peer.user,
                m.peer.host,
                m.peer.nick,
                m.peer.addr,
                m.packet_no,
                m.time.timestamp_millis(),
                m.text,
                i64::from(m.command),
                m.sealed(),
                m.broadcast(),
                m.state,
                m.attachments_json,
                m.security.map(Security::name),
            ])
            .ctx(self.path, OP)?;
        Ok((changed > 0).then(|| self.conn.last_insert_rowid()))
    }

    /// Sets the state of one message; an unknown id is an error.
    pub fn set_state(&self, id: i64, state: MessageState) -> Result<(), StoreError> {
        let changed = self
            .conn
            .prepare_cached("UPDATE messages SET state = ? WHERE id = ?")
            .and_then(|mut s| s.execute(params![state, id]))
            .ctx(self.path, "change a message's state")?;
        if changed == 0 {
            return Err(StoreError::NoSuchMessage { path: self.path.to_path_buf(), id });
        }
        Ok(())
    }

    /// For Out messages: sets the state of the message sent to (user, host)
    /// with that packet_no (multi-recipient sends share a packet number,
    /// one row per recipient). Returns whether there was such a message.
    pub fn set_out_state(
        &self,
        user: &str,
        host: &str,
        packet_no: &str,
        state: MessageState,
    ) -> Result<bool, StoreError> {
        self.set_state_by_key(Direction::Out, user, host, packet_no, state)
    }

    /// For In messages: marks read (or unread). Returns whether there was
    /// such a message.
    pub fn set_in_state(
        &self,
        user: &str,
        host: &str,
        packet_no: &str,
        state: MessageState,
    ) -> Result<bool, StoreError> {
        self.set_state_by_key(Direction::In, user, host, packet_no, state)
    }

    /// Marks read what the user has now seen: the unread incoming messages
    /// of one peer, or (`None`) every unread broadcast. Sealed messages stay
    /// unread: only opening one (READMSG) reads it. Returns how many changed.
    pub fn mark_seen(&self, peer: Option<(&str, &str)>) -> Result<usize, StoreError> {
        const OP: &str = "mark messages read";
        let changed = match peer {
            Some((user, host)) => self
                .conn
                .prepare_cached(
                    "UPDATE messages SET state = 'read' WHERE direction = 'in' AND state = 'unread' \
                     AND peer_user = ? AND peer_host = ? AND sealed = 0",
                )
                .and_then(|mut s| s.execute(params![user, host])),
            None => self
                .conn
                .prepare_cached(
                    "UPDATE messages SET state = 'read' WHERE direction = 'in' AND state = 'unread' \
                     AND broadcast = 1 AND sealed = 0",
                )
                .and_then(|mut s| s.execute([])),
        }
        .ctx(self.path, OP)?;
        Ok(changed)
    }

    fn set_state_by_key(
        &self,
        direction: Direction,
        user: &str,
        host: &str,
        packet_no: &str,
        state: MessageState,
    ) -> Result<bool, StoreError> {
        // The direction is a literal so that the partial indexes apply.
        let sql = match direction {
            Direction::In => {
                "UPDATE messages SET state = ? WHERE direction = 'in' \
                 AND peer_user = ? AND peer_host = ? AND packet_no = ?"
            }
            Direction::Out => {
                "UPDATE messages SET state = ? WHERE direction = 'out' \
                 AND peer_user = ? AND peer_host = ? AND packet_no = ?"
            }
        };
        let changed = self
            .conn
            .prepare_cached(sql)
            .and_then(|mut s| s.execute(params![state, user, host, packet_no]))
            .ctx(self.path, "change a message's state")?;
        Ok(changed > 0)
    }

    /// Adds a peer or replaces what is known of it.
    pub fn upsert_peer(&self, p: &PeerRecord) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO peers (user, host, nick, grp, addr, client, last_seen, marker) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (user, host) DO UPDATE SET nick = excluded.nick, \
                     grp = excluded.grp, addr = excluded.addr, client = excluded.client, \
                     last_seen = excluded.last_seen, marker = coalesce(excluded.marker, marker)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    p.user,
                    p.host,
                    p.nick,
                    p.group,
                    p.addr,
                    p.client,
                    p.last_seen.timestamp_millis(),
                    p.marker
                ])
            })
            .ctx(self.path, "store a peer")?;
        Ok(())
    }

    /// Bounds what strangers can make us keep (a flood of made-up names, or
    /// one peer that never stops): peers beyond the newest `r.peers` are
    /// forgotten; of the messages from peers we never wrote to, only the
    /// newest `r.per_stranger` of each and `r.strangers` in all stay.
    /// Conversations (a peer we wrote to) are never touched. Returns the
    /// rows removed.
    pub fn prune(&self, r: &Retention) -> Result<usize, StoreError> {
        const OP: &str = "prune what strangers sent";
        let lim = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        let peers = self
            .conn
            .execute(
                "DELETE FROM peers WHERE (user, host) NOT IN \
                 (SELECT user, host FROM peers ORDER BY last_seen DESC LIMIT ?)",
                [lim(r.peers)],
            )
            .ctx(self.path, OP)?;
        let messages = self
            .conn
            .execute(
                "DELETE FROM messages WHERE id IN ( \
                   SELECT id FROM ( \
                     SELECT m.id, \
                       row_number() OVER (PARTITION BY m.peer_user, m.peer_host ORDER BY m.time DESC, m.id DESC) AS n, \
                       row_number() OVER (ORDER BY m.time DESC, m.id DESC) AS total \
                     FROM messages m \
                     WHERE m.direction = 'in' AND NOT EXISTS ( \
                       SELECT 1 FROM messages o WHERE o.direction = 'out' \
                         AND o.peer_user = m.peer_user AND o.peer_host = m.peer_host)) \
                   WHERE n > ? OR total > ?)",
                params![lim(r.per_stranger), lim(r.strangers)],
            )
            .ctx(self.path, OP)?;
        Ok(peers + messages)
    }

    /// Stores exactly `n` (the last number used, at a clean exit; the
    /// reservation made by `set_packet_counter` is no longer needed).
    pub fn reset_packet_counter(&self, n: u64) -> Result<(), StoreError> {
        let n = i64::try_from(n).map_err(|_| StoreError::Invalid {
            path: self.path.to_path_buf(),
            op: "store the packet counter",
            reason: format!("packet counter {n} is out of range"),
        })?;
        self.conn
            .prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .and_then(|mut s| s.execute(params![PACKET_COUNTER_KEY, n]))
            .ctx(self.path, "store the packet counter")?;
        Ok(())
    }

    /// Stores max(current, n): the counter never goes backwards.
    pub fn set_packet_counter(&self, n: u64) -> Result<(), StoreError> {
        const OP: &str = "store the packet counter";
        let n = i64::try_from(n).map_err(|_| StoreError::Invalid {
            path: self.path.to_path_buf(),
            op: OP,
            reason: format!("packet counter {n} is out of range"),
        })?;
        self.conn
            .prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?, ?) \
                 ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
            )
            .and_then(|mut s| s.execute(params![PACKET_COUNTER_KEY, n]))
            .ctx(self.path, OP)?;
        Ok(())
    }
}

/// How `history` narrows by text: an FTS5 MATCH expression and/or `LIKE`
/// patterns (each must match the text or the nick).
#[derive(Debug, Default, PartialEq)]
struct Search {
    fts: Option<String>,
    like: Vec<String>,
    /// Plain words, each of which may instead occur in the names of the
    /// message's attachments (`LIKE` over their JSON).
    files: Vec<String>,
}

impl Search {
    /// Whitespace-separated words, each a substring that must occur.
    fn plain(s: &str) -> Search {
        let mut phrases = Vec::new();
        let mut like = Vec::new();
        for word in s.split_whitespace() {
            if word.chars().count() >= 3 {
                phrases.push(fts_phrase(word));
            } else {
                like.push(like_pattern(word));
            }
        }
        let files = s.split_whitespace().map(like_pattern).collect();
        Search { fts: (!phrases.is_empty()).then(|| phrases.join(" ")), like, files }
    }

    /// The whole string, as one substring that must occur.
    fn literal(s: &str) -> Search {
        if s.chars().count() >= 3 {
            Search { fts: Some(fts_phrase(s)), like: Vec::new(), files: vec![like_pattern(s)] }
        } else {
            Search { fts: None, like: vec![like_pattern(s)], files: vec![like_pattern(s)] }
        }
    }
}

/// Whether `s` looks like it was meant as an FTS5 query rather than words.
fn has_fts_syntax(s: &str) -> bool {
    s.contains(['"', '*', '(', ')', '^', ':']) || s.split_whitespace().any(|w| matches!(w, "AND" | "OR" | "NOT"))
}

/// `s` as an FTS5 string (phrase): in double quotes, quotes doubled.
fn fts_phrase(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A `LIKE ... ESCAPE '\'` pattern matching `s` anywhere.
fn like_pattern(s: &str) -> String {
    let mut p = String::with_capacity(s.len() + 2);
    p.push('%');
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

fn time_from_millis(r: &Row<'_>, col: usize) -> rusqlite::Result<DateTime<Utc>> {
    let ms: i64 = r.get(col)?;
    DateTime::from_timestamp_millis(ms).ok_or(rusqlite::Error::IntegralValueOutOfRange(col, ms))
}

fn message_from_row(r: &Row<'_>) -> rusqlite::Result<MessageRecord> {
    let command: i64 = r.get(9)?;
    Ok(MessageRecord {
        id: r.get(0)?,
        direction: r.get(1)?,
        peer: PeerRef { user: r.get(2)?, host: r.get(3)?, nick: r.get(4)?, addr: r.get(5)? },
        packet_no: r.get(6)?,
        time: time_from_millis(r, 7)?,
        text: r.get(8)?,
        command: u32::try_from(command).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(9, command))?,
        state: r.get(12)?,
        attachments_json: r.get(13)?,
        security: r.get::<_, Option<String>>(14)?.and_then(|s| Security::from_name(&s)),
    })
}

#[cfg(test)]
mod tests;
