//! Peers' public keys (IP Messenger's encryption, protocol.md §7): the one
//! a peer gave last, and the one pinned the first time it gave one (trust
//! on first use). A key that differs from the pinned one is a change the
//! user is told about, until they trust it (`pigeon keys --trust`).

use chrono::{DateTime, Utc};
use rusqlite::params;

use super::{Context, Store, StoreError, Tx};

/// A peer's public key as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedKey {
    pub user: String,
    pub host: String,
    /// Its capability word (ANSPUBKEY's `CAPA`).
    pub capa: u32,
    /// Big-endian, as on the wire.
    pub exponent: Vec<u8>,
    pub modulus: Vec<u8>,
    /// The modulus pinned first (or trusted since).
    pub pinned: Vec<u8>,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

impl PinnedKey {
    /// The key it gives now is not the one pinned.
    pub fn changed(&self) -> bool {
        self.modulus != self.pinned
    }
}

fn ms(t: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t).unwrap_or_default()
}

impl Tx<'_> {
    /// Records the key a peer gave; the first one of a peer is pinned.
    pub fn save_peer_key(
        &self,
        user: &str,
        host: &str,
        capa: u32,
        exponent: &[u8],
        modulus: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let t = now.timestamp_millis();
        self.conn
            .prepare_cached(
                "INSERT INTO peer_keys (user, host, capa, exponent, modulus, pinned, first_seen, last_seen) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?6) \
                 ON CONFLICT (user, host) DO UPDATE SET capa = ?3, exponent = ?4, modulus = ?5, last_seen = ?6",
            )
            .and_then(|mut s| s.execute(params![user, host, i64::from(capa), exponent, modulus, t]))
            .ctx(self.path, "record a peer's key")?;
        Ok(())
    }
}

impl Store {
    /// Every peer key, by user and host.
    pub fn peer_keys(&self) -> Result<Vec<PinnedKey>, StoreError> {
        let mut s = self
            .conn
            .prepare_cached(
                "SELECT user, host, capa, exponent, modulus, pinned, first_seen, last_seen FROM peer_keys \
                 ORDER BY user, host",
            )
            .ctx(&self.path, "read the peers' keys")?;
        let rows = s
            .query_map([], |r| {
                Ok(PinnedKey {
                    user: r.get(0)?,
                    host: r.get(1)?,
                    capa: u32::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                    exponent: r.get(3)?,
                    modulus: r.get(4)?,
                    pinned: r.get(5)?,
                    first_seen: ms(r.get(6)?),
                    last_seen: ms(r.get(7)?),
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .ctx(&self.path, "read the peers' keys")?;
        Ok(rows)
    }

    /// Trusts the key a peer gives now (it becomes the pinned one).
    /// Returns false if no key is stored for it.
    pub fn trust_peer_key(&self, user: &str, host: &str) -> Result<bool, StoreError> {
        let n = self
            .conn
            .prepare_cached("UPDATE peer_keys SET pinned = modulus WHERE user = ? AND host = ?")
            .and_then(|mut s| s.execute(params![user, host]))
            .ctx(&self.path, "trust a peer's key")?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_key_is_pinned_and_a_change_shows_until_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("pigeon.db")).unwrap();
        let now = Utc::now();
        store.transaction(|tx| tx.save_peer_key("bob", "pc", 0x4190_0004, &[1, 0, 1], &[0xaa; 256], now)).unwrap();
        store.transaction(|tx| tx.save_peer_key("bob", "pc", 0x4190_0004, &[1, 0, 1], &[0xaa; 256], now)).unwrap();
        assert!(!store.peer_keys().unwrap()[0].changed());
        store.transaction(|tx| tx.save_peer_key("bob", "pc", 0x4190_0004, &[1, 0, 1], &[0xbb; 256], now)).unwrap();
        let k = &store.peer_keys().unwrap()[0];
        assert!(k.changed());
        assert_eq!((k.pinned[0], k.modulus[0]), (0xaa, 0xbb));
        assert!(store.trust_peer_key("bob", "pc").unwrap());
        assert!(!store.peer_keys().unwrap()[0].changed());
        assert!(!store.trust_peer_key("eve", "pc").unwrap());
    }
}
