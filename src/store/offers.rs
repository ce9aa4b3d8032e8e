//! Offers: the files and folders we offered, per addressee, until they are
//! released or expire. The file server reads them (its own connection:
//! WAL lets it read while the store thread writes).

use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use rusqlite::params;

use super::{Context, PeerRef, Store, StoreError, Tx};

/// One file or folder offered to one peer.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferRecord {
    pub packet_no: u64,
    pub file_id: u64,
    pub peer: PeerRef,
    pub path: PathBuf,
    pub name: String,
    pub dir: bool,
    pub size: u64,
    pub mtime: u64,
    pub created: DateTime<Utc>,
    pub expires: DateTime<Utc>,
    pub released: bool,
}

const COLUMNS: &str =
    "packet_no, file_id, peer_user, peer_host, peer_addr, path, name, kind, size, mtime, created, expires, released";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OfferRecord> {
    let packet_no: String = r.get(0)?;
    let path: Vec<u8> = r.get(5)?;
    let kind: String = r.get(7)?;
    let ms = |i: usize| -> rusqlite::Result<DateTime<Utc>> {
        Ok(DateTime::from_timestamp_millis(r.get::<_, i64>(i)?).unwrap_or_default())
    };
    Ok(OfferRecord {
        // Ours, written decimal: anything else is a damaged row, said as such.
        packet_no: packet_no.parse().map_err(|e: std::num::ParseIntError| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })?,
        file_id: r.get::<_, i64>(1)? as u64,
        peer: PeerRef { user: r.get(2)?, host: r.get(3)?, nick: String::new(), addr: r.get(4)? },
        path: PathBuf::from(std::ffi::OsStr::from_bytes(&path)),
        name: r.get(6)?,
        dir: kind == "dir",
        size: r.get::<_, i64>(8)? as u64,
        mtime: r.get::<_, i64>(9)? as u64,
        created: ms(10)?,
        expires: ms(11)?,
        released: r.get(12)?,
    })
}

/// When an offer's addressee fetched it (None: not yet).
pub type Fetched = Option<DateTime<Utc>>;

/// How long a fetched offer is still served: a receiver whose check of
/// the data failed fetches it again at once.
pub const FETCHED_GRACE: chrono::Duration = chrono::Duration::minutes(10);

impl Store {
    /// The live offers of one SENDMSG: not released, not expired at `now`,
    /// not fetched (or fetched less than [`FETCHED_GRACE`] ago).
    pub fn live_offers(&self, packet_no: u64, now: DateTime<Utc>) -> Result<Vec<OfferRecord>, StoreError> {
        const OP: &str = "read offers";
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM offers WHERE packet_no = ? AND released = 0 AND expires > ? \
                 AND (fetched = 0 OR fetched > ?)"
            ))
            .ctx(&self.path, OP)?;
        let since = (now - FETCHED_GRACE).timestamp_millis();
        let rows = stmt
            .query_map(params![packet_no.to_string(), now.timestamp_millis(), since], from_row)
            .ctx(&self.path, OP)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().ctx(&self.path, OP)
    }

    /// Every offer we made, newest first.
    pub fn offers_made(&self) -> Result<Vec<OfferRecord>, StoreError> {
        const OP: &str = "read offers";
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM offers ORDER BY created DESC, file_id"))
            .ctx(&self.path, OP)?;
        let rows = stmt.query_map([], from_row).ctx(&self.path, OP)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().ctx(&self.path, OP)
    }
}

impl Store {
    /// Every offer we made with when its addressee fetched it (None: not
    /// yet), newest first.
    pub fn offers_made_fetched(&self) -> Result<Vec<(OfferRecord, Fetched)>, StoreError> {
        const OP: &str = "read offers";
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {COLUMNS}, fetched FROM offers ORDER BY created DESC, file_id"))
            .ctx(&self.path, OP)?;
        let rows = stmt
            .query_map([], |r| {
                let fetched: i64 = r.get(13)?;
                Ok((from_row(r)?, (fetched > 0).then(|| DateTime::from_timestamp_millis(fetched).unwrap_or_default())))
            })
            .ctx(&self.path, OP)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().ctx(&self.path, OP)
    }

    /// We take back the files of one offer (to one peer, or to all its
    /// addressees): they are no longer served. The number of files.
    pub fn cancel_offer(&self, packet_no: u64, peer: Option<(&str, &str)>) -> Result<usize, StoreError> {
        let no = packet_no.to_string();
        let n = match peer {
            Some((user, host)) => self.conn.execute(
                "UPDATE offers SET released = 1 WHERE packet_no = ? AND peer_user = ? AND peer_host = ? AND released = 0",
                params![no, user, host],
            ),
            None => self.conn.execute("UPDATE offers SET released = 1 WHERE packet_no = ? AND released = 0", params![no]),
        };
        n.ctx(&self.path, "cancel an offer")
    }
}

impl Tx<'_> {
    /// Records an offer (a repeat of the same one is ignored).
    pub fn insert_offer(&self, o: &OfferRecord) -> Result<(), StoreError> {
        let size = i64::try_from(o.size).unwrap_or(i64::MAX);
        self.conn
            .prepare_cached(&format!(
                "INSERT OR IGNORE INTO offers ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            ))
            .and_then(|mut s| {
                s.execute(params![
                    o.packet_no.to_string(),
                    o.file_id as i64,
                    o.peer.user,
                    o.peer.host,
                    o.peer.addr,
                    o.path.as_os_str().as_bytes(),
                    o.name,
                    if o.dir { "dir" } else { "file" },
                    size,
                    o.mtime as i64,
                    o.created.timestamp_millis(),
                    o.expires.timestamp_millis(),
                    o.released,
                ])
            })
            .ctx(self.path, "record an offer")?;
        Ok(())
    }

    /// Its addressee has fetched one file or folder of an offer (the whole
    /// of it): it is served for [`FETCHED_GRACE`] more.
    pub fn mark_fetched(&self, o: &OfferRecord, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "UPDATE offers SET fetched = ? WHERE packet_no = ? AND file_id = ? AND peer_user = ? \
                 AND peer_host = ? AND fetched = 0",
            )
            .and_then(|mut s| {
                s.execute(params![
                    now.timestamp_millis(),
                    o.packet_no.to_string(),
                    o.file_id as i64,
                    o.peer.user,
                    o.peer.host
                ])
            })
            .ctx(self.path, "mark an offer fetched")?;
        Ok(())
    }

    /// The peer gave up the files of one message (RELEASEFILES).
    pub fn release_offers(&self, user: &str, host: &str, packet_no: u64) -> Result<usize, StoreError> {
        self.conn
            .prepare_cached("UPDATE offers SET released = 1 WHERE peer_user = ? AND peer_host = ? AND packet_no = ?")
            .and_then(|mut s| s.execute(params![user, host, packet_no.to_string()]))
            .ctx(self.path, "release offers")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(no: u64, id: u64, expires_in_s: i64) -> OfferRecord {
        let now = Utc::now();
        OfferRecord {
            packet_no: no,
            file_id: id,
            peer: PeerRef { user: "bob".into(), host: "pc".into(), nick: String::new(), addr: "10.0.0.2:2425".into() },
            path: PathBuf::from("/tmp/报告.pdf"),
            name: "报告.pdf".into(),
            dir: false,
            size: 5_000_000_000,
            mtime: 1_700_000_000,
            created: now,
            expires: now + chrono::Duration::seconds(expires_in_s),
            released: false,
        }
    }

    #[test]
    fn offers_live_release_and_expire() {
        let mut s = Store::open_in_memory().unwrap();
        s.transaction(|tx| {
            tx.insert_offer(&offer(7, 1, 3600))?;
            tx.insert_offer(&offer(7, 2, 3600))?;
            tx.insert_offer(&offer(7, 2, 3600))?; // repeat ignored
            tx.insert_offer(&offer(8, 1, -1))?; // expired
            Ok(())
        })
        .unwrap();
        let live = s.live_offers(7, Utc::now()).unwrap();
        assert_eq!(live.len(), 2);
        assert_eq!(live[0].path, PathBuf::from("/tmp/报告.pdf"));
        assert_eq!(live[0].size, 5_000_000_000);
        assert!(s.live_offers(8, Utc::now()).unwrap().is_empty());
        s.transaction(|tx| tx.release_offers("bob", "pc", 7).map(|_| ())).unwrap();
        assert!(s.live_offers(7, Utc::now()).unwrap().is_empty());
        assert_eq!(s.offers_made().unwrap().len(), 3);
    }

    #[test]
    fn a_fetched_offer_ends_after_a_grace() {
        let mut s = Store::open_in_memory().unwrap();
        let o = offer(9, 1, 3600);
        s.transaction(|tx| tx.insert_offer(&o)).unwrap();
        let then = Utc::now();
        s.transaction(|tx| tx.mark_fetched(&o, then)).unwrap();
        assert_eq!(s.live_offers(9, then + chrono::Duration::minutes(9)).unwrap().len(), 1, "within the grace");
        assert!(s.live_offers(9, then + chrono::Duration::minutes(11)).unwrap().is_empty(), "ended");
        // A second fetch within the grace does not extend it.
        s.transaction(|tx| tx.mark_fetched(&o, then + chrono::Duration::minutes(5))).unwrap();
        assert!(s.live_offers(9, then + chrono::Duration::minutes(11)).unwrap().is_empty());
    }
}
