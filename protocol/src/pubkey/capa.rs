//! The crypto capability word (protocol.md §2.3) and the choice of
//! algorithms it leads to (§7.2): [`Capa`] with its named bits, how it is
//! read (hex as IPMsg writes it, decimal as IPMsg for Mac may) and written,
//! and [`negotiate`], which turns two capability words into a [`Choice`].
//!
//! No keys and no cryptography here: [`super::keys`] holds the keys,
//! [`super::message`] encrypts and decrypts with a [`Choice`].

use std::fmt;
use std::ops::{BitAnd, BitAndAssign, BitOr, BitOrAssign, Not};

use crate::error::{Error, Result};

/// A crypto capability word: the `CAPA` of GETPUBKEY, ANSPUBKEY and every
/// encrypted body. A bit set, like `bitflags`: combine with `|`, `&`, `!`.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Capa(pub u32);

macro_rules! capa_bits {
    ($($(#[$doc:meta])* $name:ident = $val:expr;)*) => {
        impl Capa {
            $($(#[$doc])* pub const $name: Capa = Capa($val);)*

            /// Every bit named in protocol.md §2.3.
            pub const KNOWN: Capa = Capa(0 $(| $val)*);

            /// The names of the set bits, lowest first; unknown bits as hex.
            pub fn names(self) -> Vec<String> {
                let mut out = Vec::new();
                $(if self.0 & $val != 0 {
                    out.push(stringify!($name).to_string());
                })*
                let unknown = self.0 & !Self::KNOWN.0;
                if unknown != 0 {
                    out.push(format!("{unknown:#x}"));
                }
                out
            }
        }
    };
}

capa_bits! {
    /// RSA-512 (obsolete).
    RSA_512 = 0x0000_0001;
    /// RSA-1024, used with Blowfish-128.
    RSA_1024 = 0x0000_0002;
    /// RSA-2048, used with AES-256.
    RSA_2048 = 0x0000_0004;
    /// RSA-4096 (defined, unused).
    RSA_4096 = 0x0000_0008;
    /// RC2-40 (obsolete).
    RC2_40 = 0x0000_1000;
    /// RC2-128 (obsolete).
    RC2_128 = 0x0000_4000;
    /// RC2-256 (obsolete).
    RC2_256 = 0x0000_8000;
    /// Blowfish with a 128-bit key, with RSA-1024.
    BLOWFISH_128 = 0x0002_0000;
    /// Blowfish with a 256-bit key (obsolete).
    BLOWFISH_256 = 0x0004_0000;
    /// AES-128 (obsolete).
    AES_128 = 0x0008_0000;
    /// AES-256, with RSA-2048.
    AES_256 = 0x0010_0000;
    /// IPDict encryption uses AES-CTR (§7.8; we do not speak IPDict).
    IPDICT_CTR = 0x0040_0000;
    /// The CBC IV is the decimal packet number as written, not zeros.
    PACKETNO_IV = 0x0080_0000;
    /// Binary fields are base64, not hex.
    ENCODE_BASE64 = 0x0100_0000;
    /// Obsolete.
    UNAMEEXTOPT_OBSLT = 0x0200_0000;
    /// File request encrypted and signed, file body plain (§7.7).
    NOENC_FILEBODY = 0x0400_0000;
    /// MD5 signature (obsolete).
    SIGN_MD5 = 0x1000_0000;
    /// RSA PKCS#1 v1.5 signature over SHA-1.
    SIGN_SHA1 = 0x2000_0000;
    /// RSA PKCS#1 v1.5 signature over SHA-256.
    SIGN_SHA256 = 0x4000_0000;
}

impl Capa {
    /// No bit.
    pub const EMPTY: Capa = Capa(0);

    /// Pigeon's capability word: what it announces in GETPUBKEY and
    /// ANSPUBKEY. Pigeon holds one 2048-bit key, so RSA-2048, AES-256,
    /// SHA-256 signatures, packet-number IV, base64: `41900004`, the word
    /// two IP Messenger 4.x peers settle on (crypto/README.md detail 8).
    pub const PIGEON: Capa = Capa(0x4190_0004);

    /// What Pigeon can *send* with: [`Capa::PIGEON`] plus SHA-1 signatures
    /// (for a 3.x peer without SHA-256) and RSA-1024 + Blowfish-128 (for an
    /// old peer with only a 1024-bit key: the session key is wrapped with
    /// the peer's key, so we need no 1024-bit key of our own, and that path
    /// never signs). Pass it as `ours` to [`negotiate`] when sending.
    pub const PIGEON_SEND: Capa = Capa(0x4190_0004 | 0x2000_0000 | 0x0002_0000 | 0x0000_0002);

    /// IP Messenger 4.99's combined word (1024- and 2048-bit keys).
    pub const IPMSG_4: Capa = Capa(0x6592_0006);

    /// The file-body word of an encrypted file request asking for an
    /// AES-256-CTR body (`900000`, §7.7).
    pub const FILE_BODY_AES: Capa = Capa(0x0010_0000 | 0x0080_0000);

    /// The raw value.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: Capa) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any bit of `other` is set.
    pub const fn intersects(self, other: Capa) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether no bit is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Reads a capability word written in hex (`%x` or `%X`; surrounding
    /// white space and trailing NULs ignored).
    pub fn parse_hex(s: &[u8]) -> Result<Capa> {
        let t = trim(s);
        parse_radix(t, 16).map(Capa).ok_or_else(|| bad(t, "hex"))
    }

    /// Reads a capability word as a peer may have written it: hex as IP
    /// Messenger does, or decimal (IP Messenger for Mac reads the word as
    /// decimal, crypto/README.md detail 7, and so may write it). The hex
    /// reading wins unless it does not fit 32 bits, or it names neither
    /// RSA-1024 nor RSA-2048 while the decimal reading names one and only
    /// known bits. Surrounding white space and trailing NULs are ignored.
    pub fn parse_lenient(s: &[u8]) -> Result<Capa> {
        let t = trim(s);
        let usable = |c: Capa| c.intersects(Capa::RSA_1024 | Capa::RSA_2048);
        let dec = parse_radix(t, 10).map(Capa).filter(|&c| usable(c) && Capa::KNOWN.contains(c));
        match (parse_radix(t, 16).map(Capa), dec) {
            (Some(h), Some(d)) if !usable(h) => Ok(d),
            (Some(h), _) => Ok(h),
            (None, Some(d)) => Ok(d),
            (None, None) => Err(bad(t, "hex")),
        }
    }

    /// The word as IP Messenger writes it in ANSPUBKEY and encrypted bodies
    /// (`%X`, upper case).
    pub fn to_upper_hex(self) -> String {
        format!("{:X}", self.0)
    }

    /// The word as IP Messenger writes it in GETPUBKEY (`%x`, lower case).
    pub fn to_lower_hex(self) -> String {
        format!("{:x}", self.0)
    }
}

fn trim(s: &[u8]) -> &[u8] {
    let end = s.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    s[..end].trim_ascii()
}

fn parse_radix(s: &[u8], radix: u32) -> Option<u32> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    s.iter().try_fold(0u32, |v, &b| {
        let d = (b as char).to_digit(radix)?;
        v.checked_mul(radix)?.checked_add(d)
    })
}

fn bad(s: &[u8], base: &'static str) -> Error {
    Error::BadNumber { field: "capability", value: String::from_utf8_lossy(s).into_owned(), base }
}

impl fmt::Debug for Capa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Capa({:#010x}: {})", self.0, self.names().join("|"))
    }
}

/// `%X`, as written in ANSPUBKEY and encrypted bodies.
impl fmt::Display for Capa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}", self.0)
    }
}

impl fmt::LowerHex for Capa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}

impl fmt::UpperHex for Capa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::UpperHex::fmt(&self.0, f)
    }
}

impl BitOr for Capa {
    type Output = Capa;
    fn bitor(self, rhs: Capa) -> Capa {
        Capa(self.0 | rhs.0)
    }
}

impl BitAnd for Capa {
    type Output = Capa;
    fn bitand(self, rhs: Capa) -> Capa {
        Capa(self.0 & rhs.0)
    }
}

impl Not for Capa {
    type Output = Capa;
    fn not(self) -> Capa {
        Capa(!self.0)
    }
}

impl BitOrAssign for Capa {
    fn bitor_assign(&mut self, rhs: Capa) {
        self.0 |= rhs.0;
    }
}

impl BitAndAssign for Capa {
    fn bitand_assign(&mut self, rhs: Capa) {
        self.0 &= rhs.0;
    }
}

/// The RSA key sizes IP Messenger uses (crypto/README.md detail 3: one
/// 1024-bit and one 2048-bit key, no 4096).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeySize {
    /// RSA-1024 (old peers; Blowfish-128, never signed).
    Rsa1024,
    /// RSA-2048 (AES-256, signed).
    Rsa2048,
}

impl KeySize {
    /// The modulus size in bits.
    pub const fn bits(self) -> usize {
        match self {
            KeySize::Rsa1024 => 1024,
            KeySize::Rsa2048 => 2048,
        }
    }

    /// The modulus size in bytes: the length of every RSA field.
    pub const fn bytes(self) -> usize {
        self.bits() / 8
    }

    /// The size with this many bits.
    pub const fn from_bits(bits: usize) -> Option<KeySize> {
        match bits {
            1024 => Some(KeySize::Rsa1024),
            2048 => Some(KeySize::Rsa2048),
            _ => None,
        }
    }

    /// The capability bit naming this size.
    pub const fn capa(self) -> Capa {
        match self {
            KeySize::Rsa1024 => Capa::RSA_1024,
            KeySize::Rsa2048 => Capa::RSA_2048,
        }
    }
}

/// The symmetric cipher of an encrypted body (CBC, PKCS#7 padding).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cipher {
    /// AES-256-CBC, 32-byte session key, 16-byte blocks.
    Aes256,
    /// Blowfish-CBC (big-endian, as OpenSSL), 16-byte session key, 8-byte blocks.
    Blowfish128,
}

impl Cipher {
    /// The session key length in bytes.
    pub const fn key_len(self) -> usize {
        match self {
            Cipher::Aes256 => 32,
            Cipher::Blowfish128 => 16,
        }
    }

    /// The block (and IV) length in bytes.
    pub const fn block_len(self) -> usize {
        match self {
            Cipher::Aes256 => crate::crypto::AES_BLOCK,
            Cipher::Blowfish128 => crate::crypto::BLOWFISH_BLOCK,
        }
    }

    /// The capability bit naming this cipher.
    pub const fn capa(self) -> Capa {
        match self {
            Cipher::Aes256 => Capa::AES_256,
            Cipher::Blowfish128 => Capa::BLOWFISH_128,
        }
    }
}

/// The hash of an RSA PKCS#1 v1.5 signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SignHash {
    /// SHA-1 (IP Messenger 3.x).
    Sha1,
    /// SHA-256 (IP Messenger 4.x).
    Sha256,
}

impl SignHash {
    /// The capability bit naming this hash.
    pub const fn capa(self) -> Capa {
        match self {
            SignHash::Sha1 => Capa::SIGN_SHA1,
            SignHash::Sha256 => Capa::SIGN_SHA256,
        }
    }
}

/// A set of algorithms for one encrypted body: what [`negotiate`] picks for
/// sending and what a received body's `CAPA` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Choice {
    /// The RSA size: whose key wraps the session key (the receiver's).
    pub key_size: KeySize,
    /// The symmetric cipher.
    pub cipher: Cipher,
    /// The signature hash, if the body is signed (never on RSA-1024).
    pub sign: Option<SignHash>,
    /// IV = the packet number as written (else zeros).
    pub packet_no_iv: bool,
    /// Fields in base64 (else lower-case hex).
    pub base64: bool,
}

impl Choice {
    /// The `CAPA` field that announces this choice.
    pub fn capa(&self) -> Capa {
        let mut c = self.key_size.capa() | self.cipher.capa();
        if let Some(h) = self.sign {
            c |= h.capa();
        }
        if self.packet_no_iv {
            c |= Capa::PACKETNO_IV;
        }
        if self.base64 {
            c |= Capa::ENCODE_BASE64;
        }
        c
    }

    /// Reads the `CAPA` of a received body, leniently: RSA-2048 if named,
    /// else RSA-1024; AES-256 if named, else Blowfish-128; SHA-256 if
    /// named, else SHA-1. `None` if it names no RSA size or no cipher we
    /// have (RC2, RSA-512 and the other obsolete ones).
    pub fn from_capa(capa: Capa) -> Option<Choice> {
        let key_size = if capa.contains(Capa::RSA_2048) {
            KeySize::Rsa2048
        } else if capa.contains(Capa::RSA_1024) {
            KeySize::Rsa1024
        } else {
            return None;
        };
        let cipher = if capa.contains(Capa::AES_256) {
            Cipher::Aes256
        } else if capa.contains(Capa::BLOWFISH_128) {
            Cipher::Blowfish128
        } else {
            return None;
        };
        let sign = if capa.contains(Capa::SIGN_SHA256) {
            Some(SignHash::Sha256)
        } else if capa.contains(Capa::SIGN_SHA1) {
            Some(SignHash::Sha1)
        } else {
            None
        };
        Some(Choice {
            key_size,
            cipher,
            sign,
            packet_no_iv: capa.contains(Capa::PACKETNO_IV),
            base64: capa.contains(Capa::ENCODE_BASE64),
        })
    }
}

/// Picks the algorithms for a body to a peer, as IP Messenger does (§7.2):
/// with `capa = ours & theirs`,
///
/// 1. RSA-2048, AES-256 and SHA-256 in `capa` → RSA-2048 + AES-256 +
///    SHA-256 signature (+ packet-number IV, base64 where `capa` has them);
/// 2. RSA-2048 and AES-256 → the same with a SHA-1 signature if `capa` has
///    SIGN_SHA1, else unsigned;
/// 3. RSA-1024 and Blowfish-128 → RSA-1024 + Blowfish-128, unsigned;
/// 4. otherwise `None`: send in the clear (IP Messenger clears ENCRYPTOPT).
///
/// `theirs` should already be limited to the key the peer gave us (see
/// [`super::PeerKey::negotiate`], which judges its size by the modulus).
pub fn negotiate(ours: Capa, theirs: Capa) -> Option<Choice> {
    let capa = ours & theirs;
    let extras = |sign: Option<SignHash>| (sign, capa.contains(Capa::PACKETNO_IV), capa.contains(Capa::ENCODE_BASE64));
    let (key_size, cipher, (sign, packet_no_iv, base64)) =
        if capa.contains(Capa::RSA_2048 | Capa::AES_256 | Capa::SIGN_SHA256) {
            (KeySize::Rsa2048, Cipher::Aes256, extras(Some(SignHash::Sha256)))
        } else if capa.contains(Capa::RSA_2048 | Capa::AES_256) {
            (KeySize::Rsa2048, Cipher::Aes256, extras(capa.contains(Capa::SIGN_SHA1).then_some(SignHash::Sha1)))
        } else if capa.contains(Capa::RSA_1024 | Capa::BLOWFISH_128) {
            (KeySize::Rsa1024, Cipher::Blowfish128, extras(None))
        } else {
            return None;
        };
    Some(Choice { key_size, cipher, sign, packet_no_iv, base64 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipmsg_words() {
        assert_eq!(
            Capa::RSA_2048
                | Capa::AES_256
                | Capa::SIGN_SHA1
                | Capa::SIGN_SHA256
                | Capa::PACKETNO_IV
                | Capa::NOENC_FILEBODY
                | Capa::ENCODE_BASE64
                | Capa::RSA_1024
                | Capa::BLOWFISH_128,
            Capa::IPMSG_4
        );
        assert_eq!(Capa::PIGEON.bits(), 0x41900004);
        assert_eq!(Capa::PIGEON_SEND.bits(), 0x61920006);
        assert_eq!(Capa::FILE_BODY_AES.to_lower_hex(), "900000");
        assert_eq!(Capa::NOENC_FILEBODY.to_lower_hex(), "4000000");
        assert_eq!(Capa::PIGEON.names(), ["RSA_2048", "AES_256", "PACKETNO_IV", "ENCODE_BASE64", "SIGN_SHA256"]);
        assert_eq!(Capa(0x10).names(), ["0x10"]);
        assert_eq!(format!("{}", Capa(0x65920006)), "65920006");
        assert_eq!(format!("{}", Capa(0xabc)), "ABC");
        assert_eq!(format!("{:x}", Capa(0xabc)), "abc");
    }

    #[test]
    fn negotiation() {
        let pick = |o: u32, t: u32| negotiate(Capa(o), Capa(t)).map(|c| c.capa().bits());
        // Two 4.x peers, and Pigeon with a 4.x peer.
        assert_eq!(pick(0x65920006, 0x65920006), Some(0x41900004));
        assert_eq!(pick(Capa::PIGEON.0, 0x65920006), Some(0x41900004));
        assert_eq!(pick(Capa::PIGEON_SEND.0, 0x65920006), Some(0x41900004));
        // An old peer with a 1024-bit key only.
        assert_eq!(pick(Capa::PIGEON_SEND.0, 0x01820002), Some(0x01820002));
        assert_eq!(pick(Capa::PIGEON.0, 0x01820002), None);
        // No PACKETNO_IV / base64 on their side: zero IV, hex.
        assert_eq!(pick(0x65920006, 0x40100004), Some(0x40100004));
        // SHA-1 only.
        assert_eq!(pick(0x65920006, 0x21900004), Some(0x21900004));
        assert_eq!(pick(Capa::PIGEON.0, 0x21900004), Some(0x01900004));
        assert_eq!(pick(0x65920006, 0x00100004), Some(0x00100004));
        // Nothing usable.
        assert_eq!(pick(0x65920006, 0), None);
        assert_eq!(pick(0x65920006, 0x00004001), None);
        assert_eq!(pick(0x65920006, 0x4), None);
        let c = negotiate(Capa::PIGEON, Capa::IPMSG_4).unwrap();
        assert_eq!(
            c,
            Choice {
                key_size: KeySize::Rsa2048,
                cipher: Cipher::Aes256,
                sign: Some(SignHash::Sha256),
                packet_no_iv: true,
                base64: true
            }
        );
        assert_eq!(Choice::from_capa(c.capa()), Some(c));
        assert_eq!(Choice::from_capa(Capa(0x01820002)).unwrap().cipher, Cipher::Blowfish128);
        assert_eq!(Choice::from_capa(Capa(0x00000004)), None);
        assert_eq!(Choice::from_capa(Capa(0x00004001)), None);
    }

    #[test]
    fn reading() {
        assert_eq!(Capa::parse_hex(b"65920006").unwrap(), Capa::IPMSG_4);
        assert_eq!(Capa::parse_hex(b" 41900004\0").unwrap(), Capa::PIGEON);
        assert_eq!(Capa::parse_hex(b"1820002").unwrap(), Capa(0x01820002));
        assert_eq!(Capa::parse_hex(b"aBc").unwrap(), Capa(0xabc));
        for bad in [&b""[..], b"x1", b"100000000", b"-1", b"\0"] {
            assert!(Capa::parse_hex(bad).is_err(), "{bad:?}");
        }
        // Lenient: hex first.
        assert_eq!(Capa::parse_lenient(b"65920006").unwrap(), Capa::IPMSG_4);
        assert_eq!(Capa::parse_lenient(b"41900004").unwrap(), Capa::PIGEON);
        assert_eq!(Capa::parse_lenient(b"1820002").unwrap(), Capa(0x01820002));
        // Decimal from a Mac: 0x65920006, 0x41900004 and 0x01820002 in decimal.
        assert_eq!(Capa::parse_lenient(b"1704067078").unwrap(), Capa::IPMSG_4);
        assert_eq!(Capa::parse_lenient(b"1099956228").unwrap(), Capa::PIGEON);
        assert_eq!(Capa::parse_lenient(b"25296898\0").unwrap(), Capa(0x01820002));
        assert!(Capa::parse_lenient(b"99999999999").is_err());
        assert!(Capa::parse_lenient(b"zz").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(KeySize::from_bits(2048), Some(KeySize::Rsa2048));
        assert_eq!(KeySize::from_bits(4096), None);
        assert_eq!((KeySize::Rsa1024.bytes(), KeySize::Rsa2048.bytes()), (128, 256));
        assert_eq!((Cipher::Aes256.key_len(), Cipher::Blowfish128.block_len()), (32, 8));
    }
}
