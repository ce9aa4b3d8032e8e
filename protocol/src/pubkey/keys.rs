//! RSA keys and the key exchange (protocol.md §7.1, §7.6): our own
//! [`KeyPair`] (PKCS#8 PEM in and out, generation with e = 65537, modulus,
//! fingerprint), a peer's [`PeerKey`] as read from ANSPUBKEY (checked before
//! use: 1024 or 2048 bits, a sane exponent) and the GETPUBKEY / ANSPUBKEY
//! bodies.
//!
//! Reading is lenient (hex of either case, exponent `10001` or `010001`,
//! trailing NULs, a modulus without its leading zero bytes, a GETPUBKEY word
//! in decimal from a Mac); writing is what IP Messenger writes. The key
//! size is judged by the modulus, never by the capability word
//! (crypto/README.md detail 7). Where the key is kept on disk is the
//! caller's business: this module only turns keys into text and back.

use std::fmt;

use rsa::pkcs8::der::zeroize::Zeroizing;
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, LineEnding};
use rsa::rand_core::{CryptoRngCore, OsRng};
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use rsa::{BigUint, RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256};

use super::capa::{negotiate, Capa, Choice, KeySize};
use crate::crypto;
use crate::error::{Error, Result};

/// The public exponent of every key we make, and of every IP Messenger key.
pub const EXPONENT: u32 = 65537;

/// How many bits a peer's modulus may fall short of its size class (a
/// modulus of 2041..=2048 significant bits is a 2048-bit key).
const MODULUS_SLACK_BITS: usize = 15;

/// Our RSA key pair. Its `Debug` shows the size and fingerprint only.
#[derive(Clone)]
pub struct KeyPair {
    private: RsaPrivateKey,
    public: RsaPublicKey,
    size: KeySize,
    /// Secret for implicit rejection: the session key used when the RSA
    /// unwrap fails (see [`super::message`]). Derived from the private key.
    rejection_secret: Zeroizing<[u8; 32]>,
    /// AWS-LC's copy of a 2048-bit key, for the private operations.
    #[cfg(feature = "aws-lc")]
    fast: Option<std::sync::Arc<super::fast::Fast>>,
}

impl KeyPair {
    /// Loads a private key from PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    /// Only 1024- and 2048-bit keys are accepted (all IP Messenger uses).
    pub fn from_pkcs8_pem(pem: &str) -> Result<KeyPair> {
        let private = RsaPrivateKey::from_pkcs8_pem(pem)
            .map_err(|e| Error::Malformed { what: "private key", why: format!("not a PKCS#8 RSA key: {e}") })?;
        KeyPair::from_rsa(private)
    }

    /// Writes the private key as PKCS#8 PEM (LF line ends); the text is
    /// wiped from memory when dropped.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>> {
        self.private
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|_| Error::Unwritable { field: "private key", why: "PKCS#8 encoding failed" })
    }

    /// Wraps a key from the `rsa` crate (checked: consistent, 1024 or 2048 bits).
    pub fn from_rsa(private: RsaPrivateKey) -> Result<KeyPair> {
        private
            .validate()
            .map_err(|e| Error::Malformed { what: "private key", why: format!("inconsistent RSA key: {e}") })?;
        let size = KeySize::from_bits(private.n().bits()).ok_or_else(|| Error::Malformed {
            what: "private key",
            why: format!("{}-bit modulus; only 1024 and 2048 bits are used", private.n().bits()),
        })?;
        let mut h = Sha256::new();
        h.update(b"pigeon implicit rejection v1\0");
        h.update(Zeroizing::new(private.d().to_bytes_be()).as_slice());
        let rejection_secret = Zeroizing::new(h.finalize().into());
        let public = private.to_public_key();
        #[cfg(feature = "aws-lc")]
        let fast = super::fast::Fast::new(&private).map(std::sync::Arc::new);
        Ok(KeyPair {
            private,
            public,
            size,
            rejection_secret,
            #[cfg(feature = "aws-lc")]
            fast,
        })
    }

    /// Generates a new key of `bits` (1024 or 2048) with e = 65537, from
    /// the operating system's CSPRNG. Slow in debug builds (seconds).
    pub fn generate(bits: usize) -> Result<KeyPair> {
        KeyPair::generate_with(&mut OsRng, bits)
    }

    /// [`KeyPair::generate`] with the caller's CSPRNG.
    pub fn generate_with<R: CryptoRngCore + ?Sized>(rng: &mut R, bits: usize) -> Result<KeyPair> {
        if KeySize::from_bits(bits).is_none() {
            return Err(Error::Unwritable { field: "RSA key size", why: "must be 1024 or 2048 bits" });
        }
        let private = RsaPrivateKey::new_with_exp(rng, bits, &BigUint::from(EXPONENT))
            .map_err(|_| Error::Unwritable { field: "RSA key", why: "key generation failed" })?;
        KeyPair::from_rsa(private)
    }

    /// The key size.
    pub fn size(&self) -> KeySize {
        self.size
    }

    /// The modulus, most significant byte first, `size().bytes()` long.
    pub fn modulus_be(&self) -> Vec<u8> {
        be_padded(self.public.n(), self.size.bytes())
    }

    /// The user-name fingerprint of this key (§7.6): 16 lower-case hex
    /// digits. IP Messenger only announces it for a 2048-bit key.
    pub fn fingerprint(&self) -> String {
        crypto::fingerprint(&self.modulus_be())
    }

    /// The public half, announced with capability word `capa`.
    pub fn peer_key(&self, capa: Capa) -> PeerKey {
        PeerKey { capa, key: self.public.clone(), size: self.size }
    }

    /// Our ANSPUBKEY body, `CAPA:E-N` as IP Messenger writes it (normally
    /// `capa` = [`Capa::PIGEON`]).
    pub fn anspubkey_body(&self, capa: Capa) -> String {
        self.peer_key(capa).encode_anspubkey()
    }

    /// The `rsa` crate's public key.
    pub fn public_rsa(&self) -> &RsaPublicKey {
        &self.public
    }

    pub(crate) fn private_rsa(&self) -> &RsaPrivateKey {
        &self.private
    }

    /// AWS-LC's copy, for a 2048-bit key (see [`super::fast`]).
    #[cfg(feature = "aws-lc")]
    pub(crate) fn fast(&self) -> Option<&super::fast::Fast> {
        self.fast.as_deref()
    }

    /// Whether the private operations go through AWS-LC (feature `aws-lc`,
    /// 2048-bit keys).
    pub fn accelerated(&self) -> bool {
        #[cfg(feature = "aws-lc")]
        return self.fast.is_some();
        #[cfg(not(feature = "aws-lc"))]
        false
    }

    /// The same key without AWS-LC's copy: the `rsa` crate does everything
    /// (tests compare both paths).
    #[doc(hidden)]
    pub fn without_fast_path(&self) -> KeyPair {
        KeyPair {
            #[cfg(feature = "aws-lc")]
            fast: None,
            ..self.clone()
        }
    }

    pub(crate) fn rejection_secret(&self) -> &[u8; 32] {
        &self.rejection_secret
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair").field("size", &self.size).field("fingerprint", &self.fingerprint()).finish()
    }
}

/// A peer's public key as announced in ANSPUBKEY, checked: the modulus is a
/// 1024- or 2048-bit odd number, the exponent 65537 or a small odd number.
#[derive(Clone, PartialEq, Eq)]
pub struct PeerKey {
    capa: Capa,
    key: RsaPublicKey,
    size: KeySize,
}

impl PeerKey {
    /// Reads an ANSPUBKEY body `CAPA:E-N` (leniently: hex of either case,
    /// leading zeros anywhere, a decimal capability word, trailing NULs and
    /// white space) and checks the key.
    pub fn decode_anspubkey(body: &[u8]) -> Result<PeerKey> {
        let bad = |why: &str| Error::Malformed { what: "ANSPUBKEY", why: why.into() };
        let end = body.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
        let body = body[..end].trim_ascii();
        let colon = body.iter().position(|&b| b == b':').ok_or_else(|| bad("no ':'"))?;
        let capa = Capa::parse_lenient(&body[..colon])?;
        let rest = &body[colon + 1..];
        let dash = rest.iter().position(|&b| b == b'-').ok_or_else(|| bad("no '-'"))?;
        let exponent = unhex(rest[..dash].trim_ascii(), "exponent")?;
        let modulus = unhex(rest[dash + 1..].trim_ascii(), "modulus")?;
        PeerKey::from_parts(capa, &exponent, &modulus)
    }

    /// A key from its big-endian exponent and modulus (leading zero bytes
    /// allowed, or missing), checked as [`PeerKey::decode_anspubkey`] does.
    pub fn from_parts(capa: Capa, exponent_be: &[u8], modulus_be: &[u8]) -> Result<PeerKey> {
        let bad = |why: String| Error::Malformed { what: "public key", why };
        let e = BigUint::from_bytes_be(exponent_be);
        let e_ok = e == BigUint::from(EXPONENT) || (e.bits() <= 32 && e >= BigUint::from(3u8) && is_odd(&e));
        if !e_ok {
            return Err(bad(format!("exponent {} is neither 65537 nor a small odd number", e.to_str_radix(16))));
        }
        let n = BigUint::from_bytes_be(modulus_be);
        let size =
            size_of_modulus(&n).ok_or_else(|| bad(format!("{}-bit modulus; 1024 or 2048 expected", n.bits())))?;
        if !is_odd(&n) {
            return Err(bad("even modulus".into()));
        }
        let key = RsaPublicKey::new(n, e).map_err(|e| bad(format!("rejected: {e}")))?;
        Ok(PeerKey { capa, key, size })
    }

    /// Loads a public key from SPKI PEM (`-----BEGIN PUBLIC KEY-----`),
    /// announced with `capa` (for tests and configuration).
    pub fn from_public_key_pem(pem: &str, capa: Capa) -> Result<PeerKey> {
        let key = RsaPublicKey::from_public_key_pem(pem)
            .map_err(|e| Error::Malformed { what: "public key", why: format!("not an SPKI RSA key: {e}") })?;
        PeerKey::from_parts(capa, &key.e().to_bytes_be(), &key.n().to_bytes_be())
    }

    /// Writes the ANSPUBKEY body as IP Messenger does: `CAPA` and `E` in
    /// upper-case hex without leading zeros, `N` in lower-case hex, most
    /// significant byte first, every byte of the key size.
    pub fn encode_anspubkey(&self) -> String {
        let e: String = self.key.e().to_bytes_be().iter().map(|b| format!("{b:02X}")).collect();
        let e = e.trim_start_matches('0');
        format!("{}:{}-{}", self.capa, e, crypto::encode_field(&self.modulus_be(), false))
    }

    /// The capability word the peer announced with this key.
    pub fn capa(&self) -> Capa {
        self.capa
    }

    /// The key size, judged by the modulus.
    pub fn size(&self) -> KeySize {
        self.size
    }

    /// The modulus, most significant byte first, `size().bytes()` long.
    pub fn modulus_be(&self) -> Vec<u8> {
        be_padded(self.key.n(), self.size.bytes())
    }

    /// The public exponent, big-endian, without leading zero bytes.
    pub fn exponent_be(&self) -> Vec<u8> {
        self.key.e().to_bytes_be()
    }

    /// The key's user-name fingerprint (§7.6).
    pub fn fingerprint(&self) -> String {
        crypto::fingerprint(&self.modulus_be())
    }

    /// Whether this key may belong to `user`: true if the name carries no
    /// fingerprint, else only for a 2048-bit key with that fingerprint
    /// (IP Messenger ignores an ANSPUBKEY that does not match the name).
    pub fn matches_user(&self, user: &str) -> bool {
        match crypto::split_fingerprint(user).1 {
            None => true,
            Some(fp) => self.size == KeySize::Rsa2048 && fp.eq_ignore_ascii_case(&self.fingerprint()),
        }
    }

    /// The peer's capability word with its RSA bits replaced by the size of
    /// the key it actually gave us (crypto/README.md detail 7).
    pub fn effective_capa(&self) -> Capa {
        (self.capa & !(Capa::RSA_1024 | Capa::RSA_2048)) | self.size.capa()
    }

    /// [`negotiate`] with this peer: `ours` against [`PeerKey::effective_capa`].
    pub fn negotiate(&self, ours: Capa) -> Option<Choice> {
        negotiate(ours, self.effective_capa())
    }

    /// The `rsa` crate's public key.
    pub fn rsa(&self) -> &RsaPublicKey {
        &self.key
    }
}

impl fmt::Debug for PeerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerKey")
            .field("capa", &self.capa)
            .field("size", &self.size)
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

/// Reads a GETPUBKEY body: the asker's capability word, hex as IP Messenger
/// writes it or decimal as IP Messenger for Mac may ([`Capa::parse_lenient`]).
pub fn decode_getpubkey(body: &[u8]) -> Result<Capa> {
    Capa::parse_lenient(body)
}

/// Writes a GETPUBKEY body (`%x`; ours is `41900004`).
pub fn encode_getpubkey(capa: Capa) -> String {
    capa.to_lower_hex()
}

fn size_of_modulus(n: &BigUint) -> Option<KeySize> {
    let bits = n.bits();
    [KeySize::Rsa1024, KeySize::Rsa2048].into_iter().find(|s| bits <= s.bits() && bits + MODULUS_SLACK_BITS >= s.bits())
}

fn is_odd(n: &BigUint) -> bool {
    n.to_bytes_be().last().is_some_and(|b| b & 1 == 1)
}

fn be_padded(n: &BigUint, len: usize) -> Vec<u8> {
    let b = n.to_bytes_be();
    let mut out = vec![0u8; len.saturating_sub(b.len())];
    out.extend_from_slice(&b);
    out
}

/// Hex digits to bytes; an odd count gets a leading `0`. At most 2 KiB of
/// digits (a 4096-bit number and some leading zeros).
fn unhex(s: &[u8], field: &'static str) -> Result<Vec<u8>> {
    let bad =
        || Error::BadNumber { field, value: String::from_utf8_lossy(&s[..s.len().min(64)]).into_owned(), base: "hex" };
    if s.is_empty() || s.len() > 2048 || !s.iter().all(u8::is_ascii_hexdigit) {
        return Err(bad());
    }
    let digit = |b: u8| (b as char).to_digit(16).unwrap_or(0) as u8;
    let mut out = Vec::with_capacity(s.len() / 2 + 1);
    let (head, rest) = s.split_at(s.len() % 2);
    if let [h] = head {
        out.push(digit(*h));
    }
    out.extend(rest.chunks(2).map(|c| digit(c[0]) << 4 | digit(c[1])));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unhex_forms() {
        assert_eq!(unhex(b"10001", "e").unwrap(), [1, 0, 1]);
        assert_eq!(unhex(b"010001", "e").unwrap(), [1, 0, 1]);
        assert_eq!(unhex(b"aBcD", "e").unwrap(), [0xab, 0xcd]);
        assert!(unhex(b"", "e").is_err());
        assert!(unhex(b"12g4", "e").is_err());
        assert!(unhex(&[b'1'; 2049], "e").is_err());
    }

    #[test]
    fn exponent_and_modulus_checks() {
        // A 1024-bit odd "modulus" (not a real key; only the shape is checked here).
        let mut n = vec![0xc5u8; 128];
        n[127] |= 1;
        let k = PeerKey::from_parts(Capa::IPMSG_4, &[1, 0, 1], &n).unwrap();
        assert_eq!(k.size(), KeySize::Rsa1024);
        assert_eq!(k.effective_capa(), Capa(0x65920002));
        assert_eq!(PeerKey::from_parts(Capa::IPMSG_4, &[3], &n).unwrap().exponent_be(), [3]);
        for e in [&[][..], &[1], &[2], &[1, 0, 0], &[1, 0, 0, 0, 0, 1]] {
            assert!(PeerKey::from_parts(Capa::IPMSG_4, e, &n).is_err(), "{e:?}");
        }
        // Leading zero bytes are fine, a short or long modulus is not.
        let mut padded = vec![0u8; 3];
        padded.extend_from_slice(&n);
        assert_eq!(PeerKey::from_parts(Capa::IPMSG_4, &[1, 0, 1], &padded).unwrap(), k);
        assert!(PeerKey::from_parts(Capa::IPMSG_4, &[1, 0, 1], &n[2..]).is_err());
        let mut long = n.clone();
        long.push(1);
        assert!(PeerKey::from_parts(Capa::IPMSG_4, &[1, 0, 1], &long).is_err());
        let mut even = n.clone();
        even[127] &= !1;
        assert!(PeerKey::from_parts(Capa::IPMSG_4, &[1, 0, 1], &even).is_err());
        // Missing leading zero bits: a 1020-bit modulus is still 1024-class.
        let mut short = n.clone();
        short[0] = 0x0c;
        let s = PeerKey::from_parts(Capa::IPMSG_4, &[1, 0, 1], &short).unwrap();
        assert_eq!(s.modulus_be().len(), 128);
        assert_eq!(s.modulus_be()[0], 0x0c);
    }

    #[test]
    fn getpubkey_bodies() {
        assert_eq!(decode_getpubkey(b"65920006").unwrap(), Capa::IPMSG_4);
        assert_eq!(decode_getpubkey(b"1704067078").unwrap(), Capa::IPMSG_4);
        assert_eq!(encode_getpubkey(Capa::PIGEON), "41900004");
        assert_eq!(encode_getpubkey(Capa(0xABC)), "abc");
    }

    #[test]
    fn generate_rejects_other_sizes() {
        assert!(KeyPair::generate(512).is_err());
        assert!(KeyPair::generate(4096).is_err());
    }
}
