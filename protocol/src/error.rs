//! The one error type of the wire format: what was wrong with which bytes.
//! Decoders never panic; every malformed input ends up here.

use thiserror::Error;

/// Why bytes could not be decoded, or a value could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Error {
    /// The datagram has fewer than the five `:` that separate the header.
    #[error("header has {0} of the 5 ':' separators")]
    ShortHeader(usize),
    /// A header field is empty where a value is required.
    #[error("empty {0} field")]
    EmptyField(&'static str),
    /// The command field is not a decimal 32-bit number.
    #[error("command field {0:?} is not a decimal 32-bit number")]
    BadCommand(String),
    /// The datagram is IPMsg's binary IPDict format, which we do not speak.
    #[error("IPDict (IP2:) packet; not supported")]
    IpDict,
    /// The datagram is larger than any client sends.
    #[error("datagram of {0} bytes is larger than 65507")]
    TooLong(usize),
    /// A value cannot be written without breaking the framing.
    #[error("cannot write {field}: {why}")]
    Unwritable { field: &'static str, why: &'static str },
    /// A numeric field is not a number of the expected base.
    #[error("{field}: {value:?} is not a valid {base} number")]
    BadNumber { field: &'static str, value: String, base: &'static str },
    /// A structure is missing a required part.
    #[error("{what}: missing {part}")]
    Missing { what: &'static str, part: &'static str },
    /// A structured body is malformed.
    #[error("{what}: {why}")]
    Malformed { what: &'static str, why: String },
    /// A file or directory name from the wire is not one safe path component.
    #[error("unsafe name {name:?}: {why}")]
    UnsafeName { name: String, why: &'static str },
    /// A directory-stream header is longer than the limit.
    #[error("directory header of {len} bytes exceeds the limit of {limit}")]
    HeaderTooLong { len: usize, limit: usize },
    /// A directory stream nests deeper than the limit.
    #[error("directory stream nests deeper than {0} levels")]
    TooDeep(usize),
    /// Bytes arrived after the directory stream ended.
    #[error("data after the end of the directory stream")]
    TrailingData,
    /// An encrypted body (protocol.md §7.3, §7.7) could not be decrypted.
    /// Deliberately one value with no detail: bad field encoding, wrong
    /// lengths, an unknown algorithm, no key of the right size, bad RSA
    /// padding and bad CBC padding all end up here, so that nothing we
    /// answer can tell them apart (no padding oracle; see
    /// [`crate::pubkey::message`]).
    #[error("cannot decrypt the encrypted body")]
    Decrypt,
}

/// Result with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Parses a hex field, with the field's name for the error.
pub(crate) fn hex_u64(field: &'static str, s: &[u8]) -> Result<u64> {
    parse_radix(field, s, 16, "hex")
}

/// Parses a decimal field, with the field's name for the error.
pub(crate) fn dec_u64(field: &'static str, s: &[u8]) -> Result<u64> {
    parse_radix(field, s, 10, "decimal")
}

fn parse_radix(field: &'static str, s: &[u8], radix: u32, base: &'static str) -> Result<u64> {
    let bad = || Error::BadNumber { field, value: String::from_utf8_lossy(s).into_owned(), base };
    if s.is_empty() || s.len() > 64 {
        return Err(bad());
    }
    let mut v: u64 = 0;
    for &b in s {
        let d = (b as char).to_digit(radix).ok_or_else(bad)? as u64;
        v = v.checked_mul(radix as u64).and_then(|v| v.checked_add(d)).ok_or_else(bad)?;
    }
    Ok(v)
}
