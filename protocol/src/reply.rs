//! The short control packets' bodies: RECVMSG, READMSG, ANSREADMSG, DELMSG
//! and RELEASEFILES carry a decimal packet number (§4); SENDINFO and
//! SENDABSENCEINFO carry text (§4.3); GETPUBKEY / ANSPUBKEY and the
//! encrypted-message body carry key material (§7.1, §7.3), read here as
//! fields only: checked keys, decryption and signatures are in
//! [`crate::pubkey`].

use crate::error::{dec_u64, hex_u64, Error, Result};

/// The away text IPMsg sends when not away.
pub const NOT_ABSENCE_MODE: &str = "Not Absence mode";

/// A body that names another packet by its decimal number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PacketRef {
    /// The number as written (de-duplication and crypto use the text).
    pub raw: String,
    /// Its value.
    pub value: u64,
}

impl PacketRef {
    /// Reads the body (surrounding spaces tolerated).
    pub fn decode(body: &[u8]) -> Result<PacketRef> {
        let b = body.trim_ascii();
        let value = dec_u64("packet number reference", b)?;
        Ok(PacketRef { raw: String::from_utf8_lossy(b).into_owned(), value })
    }

    /// A reference to packet `value`.
    pub fn new(value: u64) -> PacketRef {
        PacketRef { raw: value.to_string(), value }
    }

    /// The body bytes to write.
    pub fn encode(&self) -> &[u8] {
        self.raw.as_bytes()
    }
}

/// GETPUBKEY body: the asker's crypto capability word (hex).
pub fn decode_getpubkey(body: &[u8]) -> Result<u32> {
    let v = hex_u64("capability", body.trim_ascii())?;
    u32::try_from(v).map_err(|_| Error::Malformed { what: "GETPUBKEY", why: "capability wider than 32 bits".into() })
}

/// An ANSPUBKEY body: `CAPA:E-N`, all hex, modulus most significant byte first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    pub capa: u32,
    pub exponent: Vec<u8>,
    pub modulus: Vec<u8>,
}

impl PublicKey {
    /// Reads an ANSPUBKEY body.
    pub fn decode(body: &[u8]) -> Result<PublicKey> {
        let bad = |why: &str| Error::Malformed { what: "ANSPUBKEY", why: why.into() };
        let colon = body.iter().position(|&b| b == b':').ok_or_else(|| bad("no ':'"))?;
        let capa = u32::try_from(hex_u64("capability", &body[..colon])?).map_err(|_| bad("capability too wide"))?;
        let rest = &body[colon + 1..];
        let dash = rest.iter().position(|&b| b == b'-').ok_or_else(|| bad("no '-'"))?;
        Ok(PublicKey { capa, exponent: unhex(&rest[..dash])?, modulus: unhex(rest[dash + 1..].trim_ascii_end())? })
    }

    /// Writes `CAPA:E-N` as IPMsg does (upper-case capa and exponent, lower-case modulus).
    pub fn encode(&self) -> String {
        let e: String = self.exponent.iter().map(|b| format!("{b:02X}")).collect();
        let n: String = self.modulus.iter().map(|b| format!("{b:02x}")).collect();
        format!("{:X}:{}-{}", self.capa, e.trim_start_matches('0'), n)
    }
}

/// The fields of an encrypted SENDMSG body: `CAPA:ENCKEY:CIPHERTEXT[:SIGNATURE]`
/// (each hex or base64 as CAPA says; not decrypted here).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptedBody {
    pub capa: u32,
    pub key: String,
    pub ciphertext: String,
    pub signature: Option<String>,
}

impl EncryptedBody {
    /// Splits an encrypted body into its fields.
    pub fn decode(body: &[u8]) -> Result<EncryptedBody> {
        let bad = |why: &str| Error::Malformed { what: "encrypted body", why: why.into() };
        let s = std::str::from_utf8(body).map_err(|_| bad("not ASCII"))?;
        let mut f = s.split(':');
        let capa = u32::try_from(hex_u64("capability", f.next().unwrap_or_default().as_bytes())?)
            .map_err(|_| bad("capability too wide"))?;
        let key = f.next().ok_or_else(|| bad("no session key"))?.to_string();
        let ciphertext = f.next().ok_or_else(|| bad("no ciphertext"))?.to_string();
        Ok(EncryptedBody { capa, key, ciphertext, signature: f.next().map(String::from) })
    }
}

fn unhex(s: &[u8]) -> Result<Vec<u8>> {
    let bad = || Error::BadNumber { field: "key", value: String::from_utf8_lossy(s).into_owned(), base: "hex" };
    let padded: Vec<u8> =
        if s.len() % 2 == 1 { std::iter::once(b'0').chain(s.iter().copied()).collect() } else { s.to_vec() };
    padded
        .chunks(2)
        .map(|c| {
            let h = (c[0] as char).to_digit(16).ok_or_else(bad)?;
            let l = (c[1] as char).to_digit(16).ok_or_else(bad)?;
            Ok((h * 16 + l) as u8)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_ref() {
        assert_eq!(PacketRef::decode(b"1700000102").unwrap().value, 1700000102);
        assert_eq!(PacketRef::decode(b" 42 ").unwrap().raw, "42");
        assert!(PacketRef::decode(b"").is_err());
        assert!(PacketRef::decode(b"12a").is_err());
    }

    #[test]
    fn public_key() {
        let k = PublicKey::decode(b"65920006:10001-c00a11").unwrap();
        assert_eq!(
            (k.capa, k.exponent.as_slice(), k.modulus.as_slice()),
            (0x65920006, &[1u8, 0, 1][..], &[0xc0u8, 0x0a, 0x11][..])
        );
        assert_eq!(k.encode(), "65920006:10001-c00a11");
    }
}
