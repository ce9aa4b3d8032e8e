//! What became of the files offered to us: fetched (and where to) or
//! declined, per file of an incoming message. Written by whoever fetched
//! (`pigeon fetch`, the chat, the daemon's auto-accept) or declined; read
//! by `pigeon offers`. An offer with no row is new, or expired once older
//! than the sender keeps offers (see [`OfferState`]).

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};

use super::{Context, Store, StoreError};

/// What became of one file or folder offered to us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    Fetched { path: PathBuf, time: DateTime<Utc> },
    Declined { time: DateTime<Utc> },
}

impl Store {
    /// The incoming message that offered `packet_no` from `user@host` (the
    /// newest, as iptux reuses numbers after a restart).
    pub fn offer_message_id(&self, user: &str, host: &str, packet_no: &str) -> Result<Option<i64>, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT id FROM messages WHERE direction = 'in' AND peer_user = ? AND peer_host = ? \
                 AND packet_no = ? AND attachments IS NOT NULL ORDER BY id DESC LIMIT 1",
            )
            .and_then(|mut s| s.query_row(params![user, host, packet_no], |r| r.get(0)).optional())
            .ctx(&self.path, "find an offer")
    }

    /// One file of offer `message_id` was fetched whole, to `path`.
    pub fn mark_taken_fetched(&self, message_id: i64, file_id: u64, path: &Path) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO taken (message_id, file_id, state, path, time) VALUES (?, ?, 'fetched', ?, ?)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    message_id,
                    file_id as i64,
                    path.as_os_str().as_bytes(),
                    Utc::now().timestamp_millis()
                ])
            })
            .ctx(&self.path, "record a fetch")?;
        Ok(())
    }

    /// The files of offer `message_id` were declined (those fetched stay so).
    pub fn mark_taken_declined(&self, message_id: i64, file_ids: &[u64]) -> Result<(), StoreError> {
        let now = Utc::now().timestamp_millis();
        for id in file_ids {
            self.conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO taken (message_id, file_id, state, path, time) \
                     VALUES (?, ?, 'declined', NULL, ?)",
                )
                .and_then(|mut s| s.execute(params![message_id, *id as i64, now]))
                .ctx(&self.path, "record a decline")?;
        }
        Ok(())
    }

    /// What became of each file of offer `message_id`, by file ID.
    pub fn taken(&self, message_id: i64) -> Result<Vec<(u64, Taken)>, StoreError> {
        let mut s = self
            .conn
            .prepare_cached("SELECT file_id, state, path, time FROM taken WHERE message_id = ? ORDER BY file_id")
            .ctx(&self.path, "read fetches")?;
        let rows = s
            .query_map(params![message_id], |r| {
                let state: String = r.get(1)?;
                let path: Option<Vec<u8>> = r.get(2)?;
                let time = DateTime::from_timestamp_millis(r.get(3)?).unwrap_or_default();
                let t = match (state.as_str(), path) {
                    ("fetched", Some(p)) => {
                        Taken::Fetched { path: PathBuf::from(std::ffi::OsStr::from_bytes(&p)), time }
                    }
                    _ => Taken::Declined { time },
                };
                Ok((r.get::<_, i64>(0)? as u64, t))
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .ctx(&self.path, "read fetches")?;
        Ok(rows)
    }
}

impl super::Tx<'_> {
    /// The files of the offer `packet_no` from `user@host` were declined
    /// (all of them; those fetched stay fetched).
    pub fn mark_declined(&self, user: &str, host: &str, packet_no: &str) -> Result<(), StoreError> {
        const OP: &str = "record a decline";
        let found: Option<(i64, String)> = self
            .conn
            .prepare_cached(
                "SELECT id, attachments FROM messages WHERE direction = 'in' AND peer_user = ? AND peer_host = ? \
                 AND packet_no = ? AND attachments IS NOT NULL ORDER BY id DESC LIMIT 1",
            )
            .and_then(|mut s| s.query_row(params![user, host, packet_no], |r| Ok((r.get(0)?, r.get(1)?))).optional())
            .ctx(self.path, OP)?;
        let Some((id, list)) = found else { return Ok(()) };
        let list: Vec<serde_json::Value> = serde_json::from_str(&list).unwrap_or_default();
        let now = Utc::now().timestamp_millis();
        for f in list.iter().filter_map(|a| a["id"].as_u64()) {
            self.conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO taken (message_id, file_id, state, path, time) \
                     VALUES (?, ?, 'declined', NULL, ?)",
                )
                .and_then(|mut s| s.execute(params![id, f as i64, now]))
                .ctx(self.path, OP)?;
        }
        Ok(())
    }
}

/// Records, in the store at `db`, that file `file_id` of the offer
/// `packet_no` from `user@host` was fetched to `path`: for those that fetch
/// outside the store's own thread (the chat, auto-accept). A failure is
/// logged: the file is there either way.
pub fn record_fetched(db: &Path, user: &str, host: &str, packet_no: &str, file_id: u64, path: &Path) {
    let done = Store::open(db).and_then(|s| {
        // The message may still be on its way to disk (a small file fetched
        // the moment it was offered): a few tries, 2 s at most.
        for _ in 0..20 {
            if let Some(id) = s.offer_message_id(user, host, packet_no)? {
                return s.mark_taken_fetched(id, file_id, path);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Ok(())
    });
    if let Err(e) = done {
        tracing::warn!("cannot record the fetch of {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Direction, MessageRecord, MessageState, PeerRef};

    #[test]
    fn fetched_and_declined_are_kept_per_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("pigeon.db")).unwrap();
        let m = MessageRecord {
            id: 0,
            direction: Direction::In,
            peer: PeerRef { user: "bob".into(), host: "pc".into(), nick: "Bob".into(), addr: "10.0.0.2:2425".into() },
            packet_no: "42".into(),
            time: Utc::now(),
            text: "files".into(),
            command: 0x0020_0020,
            state: MessageState::Unread,
            attachments_json: Some("[]".into()),
            security: None,
        };
        store.transaction(|tx| tx.insert_message(&m).map(|_| ())).unwrap();
        let id = store.offer_message_id("bob", "pc", "42").unwrap().unwrap();
        assert_eq!(store.offer_message_id("bob", "pc", "43").unwrap(), None);
        store.mark_taken_fetched(id, 1, Path::new("/tmp/报告.pdf")).unwrap();
        store.mark_taken_declined(id, &[1, 2]).unwrap();
        let t = store.taken(id).unwrap();
        assert_eq!(t.len(), 2);
        assert!(matches!(&t[0], (1, Taken::Fetched { path, .. }) if path == Path::new("/tmp/报告.pdf")));
        assert!(matches!(t[1], (2, Taken::Declined { .. })));
    }
}
