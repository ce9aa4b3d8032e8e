//! The encrypted body (protocol.md §7.3–§7.5, crypto/README.md):
//! `CAPA:ENCKEY:CIPHERTEXT[:SIGNATURE]` read into [`EncryptedFields`],
//! decrypted with our key(s) and verified with the sender's key into
//! [`Decrypted`]; [`encrypt`] / [`encrypt_with_key`] write one; the
//! plaintext's sections (text, ENCEXTMSGOPT attachment list, `TO:`
//! recipient list) are split by [`split_plaintext`] and joined by
//! [`join_plaintext`]. The same body carries encrypted file requests
//! ([`super::file_request`]).
//!
//! # One error, one path
//!
//! Every way decryption can fail — a field that is not hex or base64, wrong
//! lengths, an algorithm we lack, no key of the named size, bad RSA PKCS#1
//! v1.5 padding, bad CBC padding — returns the same [`Error::Decrypt`], with
//! no detail, so that nothing we answer (IP Messenger answers "DecryptErr")
//! can tell them apart: no Bleichenbacher or CBC padding oracle (detail 5).
//! The RSA unwrap and the CBC pass always both run: when the unwrap fails
//! (or gives a key of the wrong length) a pseudo-random key derived from a
//! secret of our key and the wrapped bytes stands in ("implicit
//! rejection"), the CBC padding is checked in constant time, and the two
//! verdicts are combined before the one branch that returns.
//!
//! The `rsa` crate (0.9) is subject to the Marvin timing advisory
//! RUSTSEC-2023-0071: its big-integer arithmetic is not constant time, so a
//! network attacker who can time many decryptions precisely may recover a
//! PKCS#1 v1.5 plaintext. There is no fixed release. We use
//! `Pkcs1v15Encrypt` with RSA blinding (`decrypt_blinded`, OS randomness),
//! never branch on the padding before the symmetric pass, and callers must
//! answer every failure the same way (and should rate-limit DecryptErr
//! answers). With the `aws-lc` feature (the pigeon binary's build), the
//! 2048-bit unwrap is AWS-LC's constant-time, blinded RSA instead, and only
//! the 1024-bit path (old peers) keeps the `rsa` crate's. A caller that answers a body whose padding was good but whose
//! signature is [`Signature::Bad`] differently from a [`Error::Decrypt`]
//! re-creates a CBC padding oracle for signed bodies: treat them alike on
//! the wire.

use aes::Aes256;
use blowfish::Blowfish;
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockDecryptMut, KeyIvInit};
use rsa::pkcs8::der::zeroize::Zeroizing;
use rsa::rand_core::{CryptoRngCore, OsRng, RngCore};
use rsa::{Pkcs1v15Encrypt, Pkcs1v15Sign};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::{Choice as CtChoice, ConditionallySelectable, ConstantTimeEq, ConstantTimeLess};

use super::capa::{Capa, Choice, Cipher, KeySize, SignHash};
use super::keys::{KeyPair, PeerKey};
use crate::crypto::{self, packet_no_iv_array};
use crate::error::{Error, Result};

/// How many characters of the packet number make the IV (detail 1: IP
/// Messenger reads the first 15; we never write longer numbers).
pub const IV_PACKET_NO_CHARS: usize = 15;

/// The fields of an encrypted body, decoded from hex or base64 as its
/// `CAPA` says. Lengths are not checked here; [`EncryptedFields::decrypt`]
/// checks them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptedFields {
    /// The capability word naming the algorithms (written `%X`).
    pub capa: Capa,
    /// The RSA-wrapped session key.
    pub key: Vec<u8>,
    /// The CBC ciphertext.
    pub ciphertext: Vec<u8>,
    /// The RSA signature over the plaintext, if there is one.
    pub signature: Option<Vec<u8>>,
}

impl EncryptedFields {
    /// Reads `CAPA:ENCKEY:CIPHERTEXT[:SIGNATURE]` (trailing NULs and white
    /// space ignored; an empty fourth field is no signature). Fails with
    /// [`Error::Decrypt`] only.
    pub fn decode(body: &[u8]) -> Result<EncryptedFields> {
        let end = body.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
        let s = std::str::from_utf8(body[..end].trim_ascii()).map_err(|_| Error::Decrypt)?;
        let mut f = s.split(':');
        let capa = Capa::parse_hex(f.next().unwrap_or_default().as_bytes()).map_err(|_| Error::Decrypt)?;
        let (key, ct, sig) = (f.next(), f.next(), f.next());
        if f.next().is_some() {
            return Err(Error::Decrypt);
        }
        let base64 = capa.contains(Capa::ENCODE_BASE64);
        let field = |x: Option<&str>| match x {
            Some(x) if !x.trim_ascii().is_empty() => crypto::decode_field(x, base64).map_err(|_| Error::Decrypt),
            _ => Err(Error::Decrypt),
        };
        let signature = match sig {
            Some(s) if !s.trim_ascii().is_empty() => Some(field(Some(s))?),
            _ => None,
        };
        Ok(EncryptedFields { capa, key: field(key)?, ciphertext: field(ct)?, signature })
    }

    /// Writes the body: `CAPA` in `%X`, the rest in base64 or lower-case
    /// hex as `CAPA` says.
    pub fn encode(&self) -> String {
        let base64 = self.capa.contains(Capa::ENCODE_BASE64);
        let mut out = format!(
            "{}:{}:{}",
            self.capa,
            crypto::encode_field(&self.key, base64),
            crypto::encode_field(&self.ciphertext, base64)
        );
        if let Some(sig) = &self.signature {
            out.push(':');
            out.push_str(&crypto::encode_field(sig, base64));
        }
        out
    }

    /// Decrypts with the one of `ours` whose size `CAPA` names and verifies
    /// the signature with `sender`'s key (see [`decrypt`]).
    pub fn decrypt(&self, raw_packet_no: &[u8], ours: &[&KeyPair], sender: Option<&PeerKey>) -> Result<Decrypted> {
        let choice = Choice::from_capa(self.capa).ok_or(Error::Decrypt)?;
        let key = ours.iter().find(|k| k.size() == choice.key_size).ok_or(Error::Decrypt)?;
        let k = choice.key_size.bytes();
        let block = choice.cipher.block_len();
        if self.key.len() > k || self.ciphertext.is_empty() || !self.ciphertext.len().is_multiple_of(block) {
            return Err(Error::Decrypt);
        }
        // RSA fields may arrive without their leading zero bytes (detail 7).
        let mut wrapped = vec![0u8; k - self.key.len()];
        wrapped.extend_from_slice(&self.key);

        let (rsa_ok, session) = unwrap_session_key(key, &wrapped, choice.cipher.key_len());
        let iv = if choice.packet_no_iv { iv_from_packet_no(raw_packet_no) } else { [0u8; 16] };
        let mut buf = Zeroizing::new(self.ciphertext.clone());
        let decrypted_ok = cbc_decrypt_in_place(choice.cipher, &session[..choice.cipher.key_len()], &iv, &mut buf);
        let (pad_ok, len) = unpad_ct(&buf, block);
        if !bool::from(rsa_ok & pad_ok & CtChoice::from(u8::from(decrypted_ok))) {
            return Err(Error::Decrypt);
        }
        let plain = buf[..len].to_vec();
        let (signature, signed_len) = verify(&choice, sender, &plain, self.signature.as_deref());
        Ok(Decrypted { plain, capa: self.capa, choice, signature, signed_len })
    }
}

/// Whether a decrypted body's signature holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Signature {
    /// Signed by the sender's key: over the whole plaintext, or (IP
    /// Messenger for Mac, detail 6) over the text and its NUL only — see
    /// [`Decrypted::signed_len`].
    Verified,
    /// Not checked: the body is not signed (no SIGN bit or no signature
    /// field; always so on RSA-1024), or we hold no 2048-bit key of the
    /// sender (IP Messenger then asks GETPUBKEY, detail 3).
    Unverified,
    /// A signature was there and the sender's key does not verify it.
    Bad,
}

/// A decrypted body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decrypted {
    /// The plaintext: text, NUL, and with ENCEXTMSGOPT the appended
    /// sections ([`split_plaintext`]).
    pub plain: Vec<u8>,
    /// The body's capability word as written.
    pub capa: Capa,
    /// The algorithms it names.
    pub choice: Choice,
    /// The signature's status.
    pub signature: Signature,
    /// How many leading plaintext bytes the signature covers: all of them
    /// (IP Messenger for Windows) or the text and its NUL (for Mac, whose
    /// appended sections are then not authenticated); 0 unless verified.
    pub signed_len: usize,
}

impl Decrypted {
    /// The plaintext's sections ([`split_plaintext`]).
    pub fn sections(&self, encextmsg: bool) -> PlainSections<'_> {
        split_plaintext(&self.plain, encextmsg)
    }
}

/// Decrypts an encrypted body (the packet's body after the fifth `:`):
/// reads its fields, unwraps the session key with the one of `ours` whose
/// size its `CAPA` names (RSAES-PKCS1-v1_5), decrypts the CBC ciphertext
/// with the packet-number IV (the first 15 characters of `raw_packet_no`,
/// the packet number exactly as written in the header) or the zero IV, then
/// verifies the signature (SHA-256 or SHA-1) with `sender`'s 2048-bit key
/// over the whole plaintext, falling back to the text and its NUL. Every
/// failure is [`Error::Decrypt`]; a bad signature is not a failure but
/// [`Signature::Bad`].
pub fn decrypt(body: &[u8], raw_packet_no: &[u8], ours: &[&KeyPair], sender: Option<&PeerKey>) -> Result<Decrypted> {
    EncryptedFields::decode(body)?.decrypt(raw_packet_no, ours, sender)
}

/// Encrypts `plain` (text + NUL [+ sections], see [`join_plaintext`]) for
/// `peer` with `choice` and a fresh session key from the operating system's
/// CSPRNG; signs it with `ours` when `choice` says so. See
/// [`encrypt_with_key`].
pub fn encrypt(
    choice: &Choice,
    peer: &PeerKey,
    ours: Option<&KeyPair>,
    raw_packet_no: &[u8],
    plain: &[u8],
) -> Result<String> {
    let mut session = Zeroizing::new([0u8; 32]);
    let len = choice.cipher.key_len();
    OsRng
        .try_fill_bytes(&mut session[..len])
        .map_err(|_| Error::Unwritable { field: "session key", why: "no randomness from the OS" })?;
    encrypt_with_key(choice, peer, ours, raw_packet_no, plain, &session[..len], &mut OsRng)
}

/// Encrypts `plain` with the given session key (32 bytes for AES-256, 16
/// for Blowfish-128); `rng` only pads the RSA wrapping. Writes
/// `CAPA:ENCKEY:CIPHERTEXT[:SIGNATURE]`.
///
/// * `peer` must be of the size `choice` names (the session key is wrapped
///   with it).
/// * `raw_packet_no` is the packet number as the header will carry it: 1 to
///   15 decimal digits (detail 1).
/// * The signature (whole plaintext, detail 6) needs `ours` to be a
///   2048-bit key and the choice to be RSA-2048; otherwise the SIGN bits
///   are dropped from `CAPA`, as IP Messenger does when it cannot sign. The
///   RSA-1024 path never signs (detail 3).
pub fn encrypt_with_key<R: CryptoRngCore>(
    choice: &Choice,
    peer: &PeerKey,
    ours: Option<&KeyPair>,
    raw_packet_no: &[u8],
    plain: &[u8],
    session_key: &[u8],
    rng: &mut R,
) -> Result<String> {
    if raw_packet_no.is_empty()
        || raw_packet_no.len() > IV_PACKET_NO_CHARS
        || !raw_packet_no.iter().all(u8::is_ascii_digit)
    {
        return Err(Error::Unwritable { field: "packet number", why: "must be 1 to 15 decimal digits" });
    }
    if peer.size() != choice.key_size {
        return Err(Error::Unwritable { field: "peer key", why: "its size is not the chosen RSA size" });
    }
    if session_key.len() != choice.cipher.key_len() {
        return Err(Error::Unwritable { field: "session key", why: "wrong length for the cipher" });
    }
    let iv = if choice.packet_no_iv { iv_from_packet_no(raw_packet_no) } else { [0u8; 16] };
    let ciphertext = match choice.cipher {
        Cipher::Aes256 => {
            let key: &[u8; 32] = session_key
                .try_into()
                .map_err(|_| Error::Unwritable { field: "session key", why: "wrong length for the cipher" })?;
            crypto::aes256_cbc_encrypt(key, &iv, plain)
        }
        Cipher::Blowfish128 => {
            let bf_iv: [u8; 8] = std::array::from_fn(|i| iv[i]);
            crypto::blowfish_cbc_encrypt(session_key, &bf_iv, plain)?
        }
    };
    let key = peer
        .rsa()
        .encrypt(rng, Pkcs1v15Encrypt, session_key)
        .map_err(|_| Error::Unwritable { field: "session key", why: "RSA wrapping failed" })?;
    let signer = ours.filter(|k| k.size() == KeySize::Rsa2048 && choice.key_size == KeySize::Rsa2048);
    let (sign, signature) = match (choice.sign, signer) {
        (Some(h), Some(k)) => (Some(h), Some(sign(k, h, plain)?)),
        _ => (None, None),
    };
    let capa = Choice { sign, ..*choice }.capa();
    Ok(EncryptedFields { capa, key, ciphertext, signature }.encode())
}

/// Signs `data` with RSASSA-PKCS1-v1_5 over SHA-1 or SHA-256, as IP
/// Messenger signs a plaintext. Deterministic.
pub fn sign(key: &KeyPair, hash: SignHash, data: &[u8]) -> Result<Vec<u8>> {
    #[cfg(feature = "aws-lc")]
    if let (SignHash::Sha256, Some(fast)) = (hash, key.fast()) {
        return fast.sign_sha256(data).ok_or(Error::Unwritable { field: "signature", why: "RSA signing failed" });
    }
    let r = match hash {
        SignHash::Sha1 => key.private_rsa().sign(Pkcs1v15Sign::new::<Sha1>(), &Sha1::digest(data)),
        SignHash::Sha256 => key.private_rsa().sign(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(data)),
    };
    r.map_err(|_| Error::Unwritable { field: "signature", why: "RSA signing failed" })
}

/// Checks an RSASSA-PKCS1-v1_5 signature over `data` with `key` (a
/// signature shorter than the modulus is left-padded, detail 7).
pub fn verify_signature(key: &PeerKey, hash: SignHash, data: &[u8], signature: &[u8]) -> bool {
    let k = key.size().bytes();
    if signature.len() > k {
        return false;
    }
    let mut sig = vec![0u8; k - signature.len()];
    sig.extend_from_slice(signature);
    match hash {
        SignHash::Sha1 => key.rsa().verify(Pkcs1v15Sign::new::<Sha1>(), &Sha1::digest(data), &sig),
        SignHash::Sha256 => key.rsa().verify(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(data), &sig),
    }
    .is_ok()
}

fn verify(choice: &Choice, sender: Option<&PeerKey>, plain: &[u8], signature: Option<&[u8]>) -> (Signature, usize) {
    let (Some(hash), Some(sig), Some(sender)) = (choice.sign, signature, sender) else {
        return (Signature::Unverified, 0);
    };
    if sender.size() != KeySize::Rsa2048 {
        return (Signature::Unverified, 0);
    }
    if verify_signature(sender, hash, plain, sig) {
        return (Signature::Verified, plain.len());
    }
    // IP Messenger for Mac signs the text and its NUL only (detail 6).
    match plain.iter().position(|&b| b == 0) {
        Some(p) if p + 1 < plain.len() && verify_signature(sender, hash, &plain[..=p], sig) => {
            (Signature::Verified, p + 1)
        }
        _ => (Signature::Bad, 0),
    }
}

/// The CBC IV: the first 15 characters of the packet number as written,
/// zero-filled to 16 bytes (Blowfish uses the first 8 of these).
fn iv_from_packet_no(raw_packet_no: &[u8]) -> [u8; 16] {
    packet_no_iv_array::<16>(&raw_packet_no[..raw_packet_no.len().min(IV_PACKET_NO_CHARS)])
}

/// Unwraps an RSAES-PKCS1-v1_5 session key of `len` bytes. Returns whether
/// it worked and a 32-byte key: the unwrapped one, or, if the padding was
/// bad or the length wrong, one derived from our secret and the wrapped
/// bytes (implicit rejection), chosen without a branch on the outcome.
fn unwrap_session_key(key: &KeyPair, wrapped: &[u8], len: usize) -> (CtChoice, Zeroizing<[u8; 32]>) {
    let mut h = Sha256::new();
    h.update(key.rejection_secret());
    h.update(wrapped);
    let reject: Zeroizing<[u8; 32]> = Zeroizing::new(h.finalize().into());
    // RUSTSEC-2023-0071 (Marvin): see the module comment. Blinded, and the
    // result is folded into a constant-time choice right away.
    #[cfg(feature = "aws-lc")]
    let result = match key.fast() {
        Some(fast) => fast.unwrap(wrapped),
        None => key.private_rsa().decrypt_blinded(&mut OsRng, Pkcs1v15Encrypt, wrapped).ok().map(Zeroizing::new),
    };
    #[cfg(not(feature = "aws-lc"))]
    let result = key.private_rsa().decrypt_blinded(&mut OsRng, Pkcs1v15Encrypt, wrapped).ok().map(Zeroizing::new);
    let (ok, msg) = match result {
        Some(m) => (CtChoice::from(1), m),
        None => (CtChoice::from(0), Zeroizing::new(Vec::new())),
    };
    let ok = ok & (msg.len() as u64).ct_eq(&(len as u64));
    let mut out = Zeroizing::new([0u8; 32]);
    for (i, o) in out.iter_mut().enumerate() {
        let m = msg.get(i).copied().unwrap_or(0);
        *o = u8::conditional_select(&reject[i], &m, ok);
    }
    (ok, out)
}

/// CBC-decrypts whole blocks in place, no unpadding.
fn cbc_decrypt_in_place(cipher: Cipher, key: &[u8], iv: &[u8; 16], buf: &mut [u8]) -> bool {
    match cipher {
        Cipher::Aes256 => cbc::Decryptor::<Aes256>::new_from_slices(key, iv)
            .is_ok_and(|d| d.decrypt_padded_mut::<NoPadding>(buf).is_ok()),
        Cipher::Blowfish128 => cbc::Decryptor::<Blowfish>::new_from_slices(key, &iv[..8])
            .is_ok_and(|d| d.decrypt_padded_mut::<NoPadding>(buf).is_ok()),
    }
}

/// Checks PKCS#7 padding in constant time: (valid, unpadded length).
fn unpad_ct(buf: &[u8], block: usize) -> (CtChoice, usize) {
    let n = buf.len();
    if n < block || block == 0 || block > 255 {
        return (CtChoice::from(0), 0);
    }
    let pad = buf[n - 1];
    let mut ok = !pad.ct_eq(&0) & !(block as u8).ct_lt(&pad);
    for i in 0..block {
        let in_pad = (i as u8).ct_lt(&pad);
        ok &= !in_pad | buf[n - 1 - i].ct_eq(&pad);
    }
    let len = u64::conditional_select(&0, &((n - (pad as usize).min(n)) as u64), ok);
    (ok, len as usize)
}

/// The sections of a plaintext (§7.3, §7.5, §4.4), as bytes in the
/// packet's charset.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlainSections<'a> {
    /// The message text (up to the first NUL).
    pub text: &'a [u8],
    /// The attachment list (§6.1) with ENCEXTMSGOPT, if not empty; read it
    /// with [`crate::Attachment::decode_list`].
    pub attachments: Option<&'a [u8]>,
    /// The `TO:` recipient list with ENCEXTMSGOPT (the receiver first).
    pub recipients: Option<Vec<Recipient<'a>>>,
}

/// One `user:host` of a `TO:` recipient list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recipient<'a> {
    /// The login name as written (fingerprint included).
    pub user: &'a [u8],
    /// The host name.
    pub host: &'a [u8],
}

/// Splits a decrypted plaintext: the text up to the first NUL; with
/// `encextmsg` (the packet has ENCEXTMSGOPT) then the attachment list up to
/// the next NUL (empty when there is only a recipient list) and a section
/// starting `TO:` with `user:host\a` entries. Lenient: a `TO:` section right
/// after the text, missing final NULs, and entries without a host are
/// accepted (the host is then empty).
pub fn split_plaintext(plain: &[u8], encextmsg: bool) -> PlainSections<'_> {
    let mut parts = plain.split(|&b| b == 0);
    let text = parts.next().unwrap_or_default();
    let mut out = PlainSections { text, attachments: None, recipients: None };
    if !encextmsg {
        return out;
    }
    for (i, part) in parts.enumerate() {
        if let Some(list) = part.strip_prefix(b"TO:") {
            if out.recipients.is_none() {
                out.recipients = Some(parse_recipients(list));
            }
        } else if i == 0 && !part.is_empty() {
            out.attachments = Some(part);
        }
    }
    out
}

fn parse_recipients(list: &[u8]) -> Vec<Recipient<'_>> {
    list.split(|&b| b == 0x07)
        .filter(|e| !e.is_empty())
        .map(|e| match e.iter().position(|&b| b == b':') {
            Some(c) => Recipient { user: &e[..c], host: &e[c + 1..] },
            None => Recipient { user: e, host: &[] },
        })
        .collect()
}

/// Builds a plaintext: `text` NUL, then, if there are attachments or
/// recipients, the attachment list (or nothing) NUL, then, if there are
/// recipients, `TO:` + `user:host\a`… NUL. IP Messenger sends a recipient
/// list only to 2..=30 recipients who all have ENCEXTMSGOPT (§4.4); that
/// choice is the caller's. Fails if a part holds a NUL, or a user or host a
/// `:` or BEL.
pub fn join_plaintext(text: &[u8], attachments: Option<&[u8]>, recipients: &[Recipient<'_>]) -> Result<Vec<u8>> {
    if text.contains(&0) || attachments.is_some_and(|a| a.contains(&0)) {
        return Err(Error::Unwritable { field: "plaintext", why: "text or attachment list holds a NUL" });
    }
    let bad_name = |s: &[u8]| s.is_empty() || s.iter().any(|&b| matches!(b, 0 | 7 | b':'));
    if recipients.iter().any(|r| bad_name(r.user) || bad_name(r.host)) {
        return Err(Error::Unwritable { field: "recipient", why: "empty, or holds NUL, BEL or ':'" });
    }
    let mut out = text.to_vec();
    out.push(0);
    if attachments.is_some() || !recipients.is_empty() {
        out.extend_from_slice(attachments.unwrap_or_default());
        out.push(0);
    }
    if !recipients.is_empty() {
        out.extend_from_slice(b"TO:");
        for r in recipients {
            out.extend_from_slice(r.user);
            out.push(b':');
            out.extend_from_slice(r.host);
            out.push(0x07);
        }
        out.push(0);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_unpad() {
        let mut b = [7u8; 16];
        b[15] = 1;
        assert_eq!((bool::from(unpad_ct(&b, 16).0), unpad_ct(&b, 16).1), (true, 15));
        let full = [16u8; 16];
        assert_eq!((bool::from(unpad_ct(&full, 16).0), unpad_ct(&full, 16).1), (true, 0));
        for bad in [[0u8; 16], [17u8; 16]] {
            assert!(!bool::from(unpad_ct(&bad, 16).0));
        }
        let mut b = [3u8; 8];
        b[5] = 2;
        assert!(!bool::from(unpad_ct(&b, 8).0));
        b[5] = 3;
        assert_eq!(unpad_ct(&b, 8).1, 5);
        assert!(!bool::from(unpad_ct(&b, 16).0));
        // Agrees with the cbc crate's PKCS#7 for every last-block pattern we can think of.
        for pad in 0u8..=20 {
            for fill in [0u8, 1, 2, pad, pad.wrapping_add(1)] {
                let mut blk = [fill; 16];
                blk[15] = pad;
                let ours = unpad_ct(&blk, 16);
                let theirs =
                    <aes::cipher::block_padding::Pkcs7 as aes::cipher::block_padding::RawPadding>::raw_unpad(&blk);
                assert_eq!(bool::from(ours.0), theirs.is_ok(), "pad {pad} fill {fill}");
                if let Ok(t) = theirs {
                    assert_eq!(ours.1, t.len());
                }
            }
        }
    }

    #[test]
    fn iv_takes_15_chars() {
        assert_eq!(&iv_from_packet_no(b"1700000123"), b"1700000123\0\0\0\0\0\0");
        assert_eq!(&iv_from_packet_no(b"12345678901234567890"), b"123456789012345\0");
    }

    #[test]
    fn fields() {
        assert!(EncryptedFields::decode(b"41900004:AA==:AA==:AA==:AA==").is_err());
        assert!(EncryptedFields::decode(b"41900004:AA==").is_err());
        assert!(EncryptedFields::decode(b"41900004::AA==").is_err());
        assert!(EncryptedFields::decode(b"x:AA==:AA==").is_err());
        assert!(EncryptedFields::decode(b"40100004:0g:00").is_err());
        let f = EncryptedFields::decode(b"40100004:0A:ff:\0").unwrap();
        assert_eq!((f.key, f.ciphertext, f.signature), (vec![10], vec![255], None));
        let f = EncryptedFields::decode(b"41900004:AQ==:Ag:Aw==").unwrap();
        assert_eq!(f.signature, Some(vec![3]));
        assert_eq!(f.encode(), "41900004:AQ==:Ag==:Aw==");
        for e in [EncryptedFields::decode(b"41900004:AA==").unwrap_err(), EncryptedFields::decode(b"zz").unwrap_err()] {
            assert_eq!(e, Error::Decrypt);
            assert_eq!(e.to_string(), "cannot decrypt the encrypted body");
        }
    }

    #[test]
    fn sections() {
        let p = join_plaintext(b"hi", None, &[]).unwrap();
        assert_eq!(p, b"hi\0");
        assert_eq!(split_plaintext(&p, true), PlainSections { text: b"hi", attachments: None, recipients: None });
        let r = [Recipient { user: b"bob", host: b"pc" }];
        let p = join_plaintext(b"hi", None, &r).unwrap();
        assert_eq!(p, b"hi\0\0TO:bob:pc\x07\0");
        let s = split_plaintext(&p, true);
        assert_eq!((s.attachments, s.recipients.as_deref()), (None, Some(&r[..])));
        assert_eq!(split_plaintext(&p, false).recipients, None);
        // A TO: section straight after the text, no final NUL, an entry without host.
        let s = split_plaintext(b"hi\0TO:bob:pc\x07carol", true);
        assert_eq!(s.recipients.unwrap()[1], Recipient { user: b"carol", host: b"" });
        assert_eq!(split_plaintext(b"no nul", true).text, b"no nul");
        assert!(join_plaintext(b"a\0", None, &[]).is_err());
        assert!(join_plaintext(b"a", Some(b"x\0"), &[]).is_err());
        assert!(join_plaintext(b"a", None, &[Recipient { user: b"a:b", host: b"h" }]).is_err());
        assert!(join_plaintext(b"a", None, &[Recipient { user: b"a", host: b"" }]).is_err());
    }
}
