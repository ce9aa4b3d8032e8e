//! Encrypted, signed file requests (protocol.md §7.7, crypto/README.md
//! detail 8): the plaintext inside the encrypted body of a GETDIRFILES (or,
//! for clipboard images, GETFILEDATA) with ENCRYPTOPT, read and written by
//! [`EncFileRequest`], and its decryption and encryption with the body
//! format of [`super::message`].
//!
//! Plaintext: `pkt-hex:fid-hex:` [`offset-hex:` for GETFILEDATA] then
//! `4000000:<request packetNo hex>` (NOENC_FILEBODY: the file body is
//! plain, IP Messenger's default) or `900000:<64 hex AES-256 key>:<request
//! packetNo hex>` (the body is AES-256-CTR with that key, see
//! [`crate::crypto::aes256_ctr_apply`]), then a NUL. The TCP framing, the
//! replay guard (a request packet number not above the last one seen is
//! rejected) and who may ask are the caller's.

use std::fmt;

use rsa::rand_core::CryptoRngCore;

use super::capa::{Capa, Choice};
use super::keys::{KeyPair, PeerKey};
use super::message::{self, Decrypted};
use crate::command::Opts;
use crate::crypto;
use crate::error::{Error, Result};
use crate::request::RequestKind;

/// How the requester wants the file body.
#[derive(Clone, PartialEq, Eq)]
pub enum FileBody {
    /// Plain (NOENC_FILEBODY, `4000000`).
    Plain,
    /// AES-256-CTR with this key, counter from the request's packet number
    /// (AES_256|PACKETNO_IV, `900000`). Its `Debug` hides the key.
    Aes256Ctr([u8; 32]),
}

impl fmt::Debug for FileBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileBody::Plain => f.write_str("Plain"),
            FileBody::Aes256Ctr(_) => f.write_str("Aes256Ctr(<key>)"),
        }
    }
}

/// The plaintext of an encrypted file request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncFileRequest {
    /// GETDIRFILES (IP Messenger uses it for files too) or GETFILEDATA.
    pub kind: RequestKind,
    /// The packet number of the offering SENDMSG.
    pub packet_no: u64,
    /// The file ID.
    pub file_id: u64,
    /// The offset (GETFILEDATA only; IP Messenger writes 0).
    pub offset: u64,
    /// How the body is to be sent.
    pub body: FileBody,
    /// The request's own packet number, repeated inside the signed
    /// plaintext; compare it with the header ([`EncFileRequest::matches_packet_no`]).
    pub request_packet_no: u64,
    /// Pigeon's extension fields after the standard ones, as written
    /// (`PH`, `PR<hex path>,<hex offset>`: see the file server), joined by
    /// `:`; empty from other clients. Each begins with `P` and a capital
    /// letter, which no hex field does, so a reader never mistakes one.
    pub extensions: Vec<u8>,
}

/// A Pigeon extension field: `P`, a capital letter, then anything but `:`.
fn is_extension(field: &[u8]) -> bool {
    field.len() >= 2 && field[0] == b'P' && field[1].is_ascii_uppercase()
}

impl EncFileRequest {
    /// Reads the plaintext (trailing NULs and white space ignored).
    pub fn decode_plain(plain: &[u8]) -> Result<EncFileRequest> {
        let bad = |why: &str| Error::Malformed { what: "encrypted file request", why: why.into() };
        let end = plain.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
        let f: Vec<&[u8]> = plain[..end].trim_ascii().split(|&b| b == b':').collect();
        let hex = |s: &[u8], field| crate::error::hex_u64(field, s);
        // The body word is at index 2 (GETDIRFILES) or 3 (GETFILEDATA, after the offset).
        let parse_from = |at: usize, kind: RequestKind| -> Result<EncFileRequest> {
            let word = Capa::parse_hex(f.get(at).ok_or_else(|| bad("no file-body word"))?)?;
            let (body, req_at) = if word.contains(Capa::AES_256) {
                let key = f.get(at + 1).ok_or_else(|| bad("no file-body key"))?;
                let key = std::str::from_utf8(key).map_err(|_| bad("file-body key is not hex"))?;
                let key: [u8; 32] =
                    crypto::decode_field(key, false)?.try_into().map_err(|_| bad("file-body key is not 32 bytes"))?;
                (FileBody::Aes256Ctr(key), at + 2)
            } else if word.contains(Capa::NOENC_FILEBODY) {
                (FileBody::Plain, at + 1)
            } else {
                return Err(bad("file-body word names neither AES-256 nor NOENC_FILEBODY"));
            };
            if f.len() < req_at + 1 || !f[req_at + 1..].iter().all(|x| is_extension(x)) {
                return Err(bad("wrong number of fields"));
            }
            Ok(EncFileRequest {
                kind,
                packet_no: hex(f[0], "request packet number")?,
                file_id: hex(f[1], "request file ID")?,
                offset: if at == 3 { hex(f[2], "request offset")? } else { 0 },
                body,
                request_packet_no: hex(f[req_at], "request's own packet number")?,
                extensions: f[req_at + 1..].join(&b':'),
            })
        };
        if f.len() < 4 {
            return Err(bad("too few fields"));
        }
        parse_from(2, RequestKind::Dir).or_else(|e| parse_from(3, RequestKind::File).map_err(|_| e))
    }

    /// Writes the plaintext, NUL included.
    pub fn encode_plain(&self) -> Vec<u8> {
        let mut s = format!("{:x}:{:x}:", self.packet_no, self.file_id);
        if self.kind == RequestKind::File {
            s.push_str(&format!("{:x}:", self.offset));
        }
        match &self.body {
            FileBody::Plain => s.push_str(&format!("{:x}:", Capa::NOENC_FILEBODY)),
            FileBody::Aes256Ctr(key) => {
                s.push_str(&format!("{:x}:{}:", Capa::FILE_BODY_AES, crypto::encode_field(key, false)))
            }
        }
        s.push_str(&format!("{:x}", self.request_packet_no));
        let mut out = s.into_bytes();
        if !self.extensions.is_empty() {
            out.push(b':');
            out.extend_from_slice(&self.extensions);
        }
        out.push(0);
        out
    }

    /// Decrypts an encrypted request body (IV = the request's packet number
    /// as written) and reads its plaintext. As with messages, every failure
    /// — including a plaintext that does not parse — is [`Error::Decrypt`];
    /// the signature status is in the returned [`Decrypted`] (a request
    /// should only be honoured from another address when it is
    /// [`message::Signature::Verified`] over the whole plaintext).
    pub fn decrypt(
        body: &[u8],
        raw_packet_no: &[u8],
        ours: &[&KeyPair],
        sender: Option<&PeerKey>,
    ) -> Result<(EncFileRequest, Decrypted)> {
        let d = message::decrypt(body, raw_packet_no, ours, sender)?;
        let r = EncFileRequest::decode_plain(&d.plain).map_err(|_| Error::Decrypt)?;
        Ok((r, d))
    }

    /// Encrypts (and, with a SIGN bit in `choice` and our 2048-bit key,
    /// signs) this request for the file's sender, with a fresh session key.
    pub fn encrypt(
        &self,
        choice: &Choice,
        peer: &PeerKey,
        ours: Option<&KeyPair>,
        raw_packet_no: &[u8],
    ) -> Result<String> {
        message::encrypt(choice, peer, ours, raw_packet_no, &self.encode_plain())
    }

    /// [`EncFileRequest::encrypt`] with the given session key (tests).
    pub fn encrypt_with_key<R: CryptoRngCore>(
        &self,
        choice: &Choice,
        peer: &PeerKey,
        ours: Option<&KeyPair>,
        raw_packet_no: &[u8],
        session_key: &[u8],
        rng: &mut R,
    ) -> Result<String> {
        message::encrypt_with_key(choice, peer, ours, raw_packet_no, &self.encode_plain(), session_key, rng)
    }

    /// Whether the packet number inside the plaintext is the one in the
    /// request's header (as written, decimal).
    pub fn matches_packet_no(&self, raw_packet_no: &[u8]) -> bool {
        crate::error::dec_u64("packet number", raw_packet_no).is_ok_and(|n| n == self.request_packet_no)
    }

    /// The option flags for the request's command besides the mode:
    /// ENCRYPTOPT, and ENCFILEOPT because the file-body trailer is always
    /// written (the sender parses it only with ENCFILEOPT, §7.7).
    pub fn opts(&self) -> u32 {
        Opts::ENCRYPTOPT | Opts::ENCFILEOPT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let dir = EncFileRequest::decode_plain(b"6553f290:75bcd16:4000000:6553f1c8\0").unwrap();
        assert_eq!(
            dir,
            EncFileRequest {
                kind: RequestKind::Dir,
                packet_no: 1700000400,
                file_id: 123456790,
                offset: 0,
                body: FileBody::Plain,
                request_packet_no: 1700000200,
                extensions: Vec::new(),
            }
        );
        assert!(dir.matches_packet_no(b"1700000200"));
        assert!(!dir.matches_packet_no(b"1700000201"));
        assert_eq!(dir.encode_plain(), b"6553f290:75bcd16:4000000:6553f1c8\0");
        let key: [u8; 32] = std::array::from_fn(|i| i as u8);
        let file_aes = EncFileRequest { kind: RequestKind::File, body: FileBody::Aes256Ctr(key), ..dir.clone() };
        let text = file_aes.encode_plain();
        assert_eq!(
            text,
            b"6553f290:75bcd16:0:900000:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f:6553f1c8\0"
        );
        assert_eq!(EncFileRequest::decode_plain(&text).unwrap(), file_aes);
        let file_plain = EncFileRequest { kind: RequestKind::File, offset: 0x1f4, ..dir.clone() };
        assert_eq!(file_plain.encode_plain(), b"6553f290:75bcd16:1f4:4000000:6553f1c8\0");
        assert_eq!(EncFileRequest::decode_plain(&file_plain.encode_plain()).unwrap(), file_plain);
        assert_eq!(format!("{:?}", file_aes.body), "Aes256Ctr(<key>)");
        // Pigeon's extensions ride after the standard fields, and never
        // make a file request look like a folder's (or the reverse).
        let ext = EncFileRequest { extensions: b"PH:PR61,1f4".to_vec(), ..file_plain.clone() };
        assert_eq!(ext.encode_plain(), b"6553f290:75bcd16:1f4:4000000:6553f1c8:PH:PR61,1f4\0");
        assert_eq!(EncFileRequest::decode_plain(&ext.encode_plain()).unwrap(), ext);
        let dir_ext = EncFileRequest { extensions: b"PH".to_vec(), ..dir.clone() };
        assert_eq!(EncFileRequest::decode_plain(&dir_ext.encode_plain()).unwrap(), dir_ext);
        let odd = EncFileRequest { offset: 0x4000000, ..file_plain.clone() };
        assert_eq!(EncFileRequest::decode_plain(&odd.encode_plain()).unwrap(), odd);
        assert_eq!(file_aes.opts(), 0x00400800);
    }

    #[test]
    fn malformed() {
        for bad in [
            &b""[..],
            b"1:2:3",
            b"1:2:0:3",
            b"1:2:4000000",
            b"1:2:4000000:3:4",
            b"1:2:900000:0001:3",
            b"1:2:900000:3",
            b"x:2:4000000:3",
            b"1:2:4000000:",
            b"1:2:0:0:4000000:3",
            b"1:2:4000000:3:ph",
            b"1:2:4000000:3:P",
            b"1:2:4000000:3:PH:",
        ] {
            assert!(EncFileRequest::decode_plain(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
