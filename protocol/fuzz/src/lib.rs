//! Helpers shared by the fuzz targets.

use pigeon_protocol::Charset;

/// Every charset the codec supports.
pub const CHARSETS: [Charset; 3] = [Charset::Utf8, Charset::Gbk, Charset::Cp932];

/// Picks a charset from a byte.
pub fn charset(b: u8) -> Charset {
    CHARSETS[b as usize % CHARSETS.len()]
}

/// What a text decoded in `cs` should read as after being written back in
/// `cs` and read again. UTF-8 and GB18030 hold every character, so the text
/// must come back unchanged; CP932 writes characters it cannot hold as `?`
/// (documented on `Charset::encode`), so those are expected to change.
pub fn expected_text(cs: Charset, text: &str) -> String {
    if cs != Charset::Cp932 || text.is_ascii() {
        return text.to_owned();
    }
    let mut buf = [0u8; 4];
    text.chars()
        .map(|c| {
            let s: &str = c.encode_utf8(&mut buf);
            if cs.decode(&cs.encode(s)) == s {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// The throw-away test keys of `protocol/tests/crypto/` (PKCS#8 PEM, built
/// in), loaded once, and a deterministic RNG, for the encryption targets.
pub mod keys {
    use std::sync::OnceLock;

    use pigeon_protocol::pubkey::rand_core::{self, CryptoRng, RngCore};
    use pigeon_protocol::pubkey::{Capa, KeyPair, PeerKey};

    /// Plays Pigeon (2048 bits).
    pub const PIGEON_PEM: &str = include_str!("../../tests/crypto/pigeon-test-rsa2048.pem");
    /// Plays an IP Messenger 4.x peer (2048 bits).
    pub const PEER_PEM: &str = include_str!("../../tests/crypto/peer-test-rsa2048.pem");
    /// Plays an old peer (1024 bits).
    pub const PEER1024_PEM: &str = include_str!("../../tests/crypto/peer-test-rsa1024.pem");

    /// The three key pairs.
    pub struct Keys {
        pub pigeon: KeyPair,
        pub peer: KeyPair,
        pub peer1024: KeyPair,
    }

    impl Keys {
        /// Pigeon's public key as a peer holds it.
        pub fn pigeon_pub(&self) -> PeerKey {
            self.pigeon.peer_key(Capa::PIGEON)
        }
        /// The 4.x peer's public key.
        pub fn peer_pub(&self) -> PeerKey {
            self.peer.peer_key(Capa::IPMSG_4)
        }
        /// The old peer's public key.
        pub fn peer1024_pub(&self) -> PeerKey {
            self.peer1024.peer_key(Capa(0x01820002))
        }
    }

    /// The keys, parsed on first use.
    pub fn keys() -> &'static Keys {
        static KEYS: OnceLock<Keys> = OnceLock::new();
        KEYS.get_or_init(|| Keys {
            pigeon: KeyPair::from_pkcs8_pem(PIGEON_PEM).expect("pigeon test key"),
            peer: KeyPair::from_pkcs8_pem(PEER_PEM).expect("peer test key"),
            peer1024: KeyPair::from_pkcs8_pem(PEER1024_PEM).expect("old peer test key"),
        })
    }

    /// splitmix64: deterministic "randomness" for RSA padding, so that an
    /// input replays the same way. Not for anything but fuzzing.
    pub struct FuzzRng(pub u64);

    impl RngCore for FuzzRng {
        fn next_u32(&mut self) -> u32 {
            self.next_u64() as u32
        }
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            for chunk in dest.chunks_mut(8) {
                let r = self.next_u64().to_le_bytes();
                chunk.copy_from_slice(&r[..chunk.len()]);
            }
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }

    impl CryptoRng for FuzzRng {}
}
