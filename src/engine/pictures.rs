//! FeiQ's inline pictures (protocol.md §8.4), put back together from their
//! UDP fragments: one [`Assembly`] per (peer, image id), in bounded memory.
//! The engine acknowledges every fragment itself; this type only decides
//! what is kept and when a picture is whole. Saving it is the driver's
//! (`Output::SavePicture`), recording it the engine's again
//! ([`super::Engine::picture`]).

use std::collections::HashMap;
use std::time::Duration;

use pigeon_protocol::feiq::ImageFragment;

use super::PeerKey;

/// The largest picture put together (FeiQ screenshots of a full HD screen
/// are 0.5–3 MB as JPEG).
pub const MAX_PICTURE: u64 = 16 << 20;
/// Pictures being put together at once; a new one past it replaces the
/// oldest.
pub const MAX_ASSEMBLIES: usize = 8;
/// Bytes held for unfinished pictures, all together.
pub const MAX_HELD: u64 = 48 << 20;
/// An unfinished picture whose fragments stop coming is dropped after this
/// (FeiQ re-sends unacknowledged fragments after 15 s).
pub const STALE: Duration = Duration::from_secs(60);
/// Completed ids remembered, so that re-sent fragments are acknowledged
/// but not delivered twice.
const DONE_KEPT: usize = 4096;

/// One picture being put together.
struct Assembly {
    data: Vec<u8>,
    have: Vec<bool>,
    missing: u32,
    started: Duration,
}

/// What a fragment did.
#[derive(Debug, PartialEq, Eq)]
pub enum Fragment {
    /// Kept (or a repeat); the picture is not whole yet.
    Pending,
    /// The last missing fragment: the whole picture.
    Complete(Vec<u8>),
    /// Of a picture already delivered.
    Repeat,
    /// Inconsistent with the picture's other fragments, or too large.
    Refused,
}

/// The pictures being put together.
#[derive(Default)]
pub struct Pictures {
    open: HashMap<(PeerKey, String), Assembly>,
    done: std::collections::HashSet<(PeerKey, String)>,
}

impl Pictures {
    /// Takes one fragment from `peer` at monotonic time `now`.
    pub fn fragment(&mut self, peer: &PeerKey, f: &ImageFragment<'_>, now: Duration) -> Fragment {
        let key = (peer.clone(), f.id.clone());
        if self.done.contains(&key) {
            return Fragment::Repeat;
        }
        if f.total == 0 || f.total > MAX_PICTURE || u64::from(f.count) > f.total {
            return Fragment::Refused;
        }
        let end = f.offset.checked_add(f.data.len() as u64);
        if end.is_none_or(|e| e > f.total) {
            return Fragment::Refused;
        }
        self.open.retain(|_, a| now.saturating_sub(a.started) < STALE);
        if !self.open.contains_key(&key) {
            // Room: drop the oldest until one more fits.
            while self.open.len() >= MAX_ASSEMBLIES || self.held() + f.total > MAX_HELD {
                let Some(oldest) = self.open.iter().min_by_key(|(_, a)| a.started).map(|(k, _)| k.clone()) else {
                    break;
                };
                self.open.remove(&oldest);
            }
            if self.held() + f.total > MAX_HELD {
                return Fragment::Refused;
            }
            self.open.insert(
                key.clone(),
                Assembly {
                    data: vec![0; f.total as usize],
                    have: vec![false; f.count as usize],
                    missing: f.count,
                    started: now,
                },
            );
        }
        let a = self.open.get_mut(&key).expect("inserted above");
        if a.data.len() as u64 != f.total || a.have.len() != f.count as usize {
            // Another picture under the same id: start again with this one.
            self.open.remove(&key);
            return self.fragment(peer, f, now);
        }
        let i = (f.index - 1) as usize;
        if !a.have[i] {
            a.have[i] = true;
            a.missing -= 1;
            let o = f.offset as usize;
            a.data[o..o + f.data.len()].copy_from_slice(f.data);
        }
        if a.missing > 0 {
            return Fragment::Pending;
        }
        let a = self.open.remove(&key).expect("present");
        if self.done.len() >= DONE_KEPT {
            self.done.clear();
        }
        self.done.insert(key);
        Fragment::Complete(a.data)
    }

    fn held(&self) -> u64 {
        self.open.values().map(|a| a.data.len() as u64).sum()
    }
}

/// The file extension a picture's first bytes call for.
pub fn extension(data: &[u8]) -> &'static str {
    if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        "png"
    } else if data.starts_with(b"\xff\xd8\xff") {
        "jpg"
    } else if data.starts_with(b"GIF87a") || data.starts_with(b"GIF89a") {
        "gif"
    } else if data.starts_with(b"BM") {
        "bmp"
    } else if data.len() >= 12 && &data[..4] == b"RIFF" && &data[8..12] == b"WEBP" {
        "webp"
    } else {
        "bin"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frag<'a>(id: &str, total: u64, offset: u64, count: u32, index: u32, data: &'a [u8]) -> ImageFragment<'a> {
        ImageFragment { id: id.into(), total, offset, count, index, rest: Vec::new(), data }
    }

    #[test]
    fn fragments_in_any_order_make_the_picture_once() {
        let peer = PeerKey::new("feiq", "pc");
        let pic: Vec<u8> = (0..1300u32).map(|i| (i % 251) as u8).collect();
        let copy = pic.clone();
        let parts: Vec<(u64, &[u8])> = copy.chunks(512).enumerate().map(|(i, c)| (i as u64 * 512, c)).collect();
        let mut p = Pictures::default();
        let t = Duration::from_secs(1);
        assert_eq!(p.fragment(&peer, &frag("a1", 1300, parts[2].0, 3, 3, parts[2].1), t), Fragment::Pending);
        // A repeat changes nothing.
        assert_eq!(p.fragment(&peer, &frag("a1", 1300, parts[2].0, 3, 3, parts[2].1), t), Fragment::Pending);
        assert_eq!(p.fragment(&peer, &frag("a1", 1300, parts[0].0, 3, 1, parts[0].1), t), Fragment::Pending);
        assert_eq!(p.fragment(&peer, &frag("a1", 1300, parts[1].0, 3, 2, parts[1].1), t), Fragment::Complete(pic));
        assert_eq!(p.fragment(&peer, &frag("a1", 1300, parts[1].0, 3, 2, parts[1].1), t), Fragment::Repeat);
    }

    #[test]
    fn bounded() {
        let peer = PeerKey::new("feiq", "pc");
        let mut p = Pictures::default();
        let t = Duration::from_secs(1);
        // Too large, or bytes outside the picture.
        assert_eq!(p.fragment(&peer, &frag("big", MAX_PICTURE + 1, 0, 2, 1, b"x"), t), Fragment::Refused);
        assert_eq!(p.fragment(&peer, &frag("out", 10, 8, 2, 2, b"xyz"), t), Fragment::Refused);
        // Many unfinished pictures: never more than MAX_ASSEMBLIES, nor MAX_HELD bytes.
        for i in 0..40 {
            let r = p.fragment(&peer, &frag(&format!("p{i}"), MAX_PICTURE, 0, 2, 1, b"x"), t);
            assert_eq!(r, Fragment::Pending);
            assert!(p.open.len() <= MAX_ASSEMBLIES && p.held() <= MAX_HELD);
        }
        // Stale ones go.
        p.fragment(&peer, &frag("late", 4, 0, 2, 1, b"ab"), t + STALE + Duration::from_secs(1));
        assert_eq!(p.open.len(), 1);
    }

    #[test]
    fn extensions() {
        assert_eq!(extension(b"\x89PNG\r\n\x1a\nrest"), "png");
        assert_eq!(extension(b"\xff\xd8\xff\xe0"), "jpg");
        assert_eq!(extension(b"GIF89a.."), "gif");
        assert_eq!(extension(b"LZW!...."), "bin");
    }
}
