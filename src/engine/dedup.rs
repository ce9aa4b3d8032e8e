//! Incoming de-duplication: the set of messages received lately (by
//! sender, packet number and text), bounded at [`DEDUP_LIMIT`] with the
//! oldest forgotten first. Retransmissions and duplicated datagrams of a
//! message already taken in are dropped (and acknowledged again).

use std::collections::{HashSet, VecDeque};

use super::PeerKey;

/// What identifies an incoming message: sender, packet number and a hash of
/// its text (iptux restarts its numbers at 1, so the number alone repeats).
pub type SeenKey = (PeerKey, String, u64);

/// FNV-1a, stable across versions and runs (the keys come back from disk).
pub fn text_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// How many incoming messages are remembered to drop their repeats.
pub const DEDUP_LIMIT: usize = 200_000;

/// The messages received lately, in the order they came.
#[derive(Debug, Default)]
pub(super) struct Dedup {
    set: HashSet<SeenKey>,
    order: VecDeque<SeenKey>,
}

impl Dedup {
    /// Remembers `k`; false if it was already remembered (a repeat). Past
    /// [`DEDUP_LIMIT`] the oldest is forgotten.
    pub(super) fn insert(&mut self, k: SeenKey) -> bool {
        if !self.set.insert(k.clone()) {
            return false;
        }
        self.order.push_back(k);
        if self.order.len() > DEDUP_LIMIT {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }

    /// Forgets `k` (its message was not stored: a repeat must be taken in).
    pub(super) fn forget(&mut self, k: &SeenKey) {
        if self.set.remove(k) {
            self.order.retain(|x| x != k);
        }
    }
}
