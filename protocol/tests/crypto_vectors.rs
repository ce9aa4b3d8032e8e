//! The encryption vectors of `tests/crypto/vectors.txt` (a copy of the
//! shared `crypto/` folder: vectors, throw-away PKCS#8 test keys and the
//! README that explains them), every one checked against `pigeon_protocol::pubkey`:
//! moduli and fingerprints, GETPUBKEY / ANSPUBKEY bodies, bodies A–D
//! decrypted (with the right signature status) and their deterministic
//! parts re-encrypted byte for byte, the deterministic signatures, the
//! encrypted file requests E / E2, and the `*_check` lines. Then a
//! round-trip proptest and an independent check of our bodies with the
//! `openssl` command line.
//!
//! RSA in a debug build is slow (see the report about
//! `[profile.dev.package.num-bigint-dig]`); the keys are loaded once.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::LazyLock;

use pigeon_protocol::pubkey::rand_core::{self, CryptoRng, RngCore};
use pigeon_protocol::pubkey::{
    self, decode_getpubkey, encode_getpubkey, join_plaintext, negotiate, split_plaintext, Capa, Choice, Cipher,
    EncFileRequest, EncryptedFields, FileBody, KeyPair, KeySize, PeerKey, Recipient, SignHash, Signature,
};
use pigeon_protocol::request::RequestKind;
use pigeon_protocol::{crypto, Attachment, Charset, Error};
use proptest::prelude::*;

const VECTORS: &str = include_str!("crypto/vectors.txt");

static V: LazyLock<HashMap<&'static str, &'static str>> = LazyLock::new(|| {
    VECTORS.lines().filter(|l| !l.trim().is_empty()).map(|l| l.split_once(' ').unwrap_or((l, ""))).collect()
});

fn v(name: &str) -> &'static str {
    V.get(name).unwrap_or_else(|| panic!("no vector {name}"))
}

fn unhex(s: &str) -> Vec<u8> {
    crypto::decode_field(s, false).unwrap()
}

static PIGEON: LazyLock<KeyPair> =
    LazyLock::new(|| KeyPair::from_pkcs8_pem(include_str!("crypto/pigeon-test-rsa2048.pem")).unwrap());
static PEER: LazyLock<KeyPair> =
    LazyLock::new(|| KeyPair::from_pkcs8_pem(include_str!("crypto/peer-test-rsa2048.pem")).unwrap());
static PEER1024: LazyLock<KeyPair> =
    LazyLock::new(|| KeyPair::from_pkcs8_pem(include_str!("crypto/peer-test-rsa1024.pem")).unwrap());

/// The IPMsg 4.x peer's public key, from its `.pub.pem`.
fn peer_pub() -> PeerKey {
    PeerKey::from_public_key_pem(include_str!("crypto/peer-test-rsa2048.pub.pem"), Capa::IPMSG_4).unwrap()
}

/// The old peer's public key as it would answer GETPUBKEY.
fn peer1024_pub() -> PeerKey {
    PEER1024.peer_key(Capa(0x01820002))
}

/// Pigeon's public key as a peer holds it.
fn pigeon_pub() -> PeerKey {
    PIGEON.peer_key(Capa::PIGEON)
}

fn aes_key() -> [u8; 32] {
    std::array::from_fn(|i| i as u8)
}

fn bf_key() -> [u8; 16] {
    std::array::from_fn(|i| i as u8)
}

/// A deterministic "CSPRNG" (splitmix64) for the RSA padding in tests.
struct TestRng(u64);

impl RngCore for TestRng {
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

impl CryptoRng for TestRng {}

fn fields(body: &str) -> Vec<&str> {
    body.split(':').collect()
}

/// A `*_check` line: capability word, then True/False/None flags.
fn check_line(name: &str) -> (Capa, Vec<&'static str>) {
    let mut it = v(name).split(' ');
    (Capa::parse_hex(it.next().unwrap().as_bytes()).unwrap(), it.collect())
}

#[test]
fn moduli_and_fingerprints() {
    let hex = |b: &[u8]| crypto::encode_field(b, false);
    assert_eq!(hex(&PIGEON.modulus_be()), v("pigeon_modulus_be"));
    assert_eq!(PIGEON.fingerprint(), v("pigeon_fingerprint"));
    assert_eq!(hex(&PEER.modulus_be()), v("peer_modulus_be"));
    assert_eq!(PEER.fingerprint(), v("peer_fingerprint"));
    assert_eq!(hex(&PEER1024.modulus_be()), v("peer1024_modulus_be"));
    assert_eq!((PIGEON.size(), PEER.size(), PEER1024.size()), (KeySize::Rsa2048, KeySize::Rsa2048, KeySize::Rsa1024));
    // The fingerprint from the modulus as written, and from the public PEM.
    assert_eq!(crypto::fingerprint(&unhex(v("peer_modulus_be"))), v("peer_fingerprint"));
    let p = peer_pub();
    assert_eq!(hex(&p.modulus_be()), v("peer_modulus_be"));
    assert_eq!(p.fingerprint(), v("peer_fingerprint"));
    assert_eq!(p, PEER.peer_key(Capa::IPMSG_4));
    assert_eq!(p.exponent_be(), [1, 0, 1]);
    // A fingerprinted user name matches only its own 2048-bit key.
    let name = format!("taro-<{}>", v("peer_fingerprint"));
    assert!(p.matches_user(&name));
    assert!(p.matches_user(&name.to_uppercase().replace("TARO", "taro")));
    assert!(p.matches_user("taro"));
    assert!(!pigeon_pub().matches_user(&name));
    assert!(!peer1024_pub().matches_user(&format!("old-<{}>", PEER1024.fingerprint())));
    // Debug output does not show the private key.
    let dbg = format!("{:?}", *PIGEON);
    assert!(dbg.contains(v("pigeon_fingerprint")) && dbg.len() < 100, "{dbg}");
}

#[test]
fn capability_words() {
    assert_eq!(Capa::PIGEON.to_upper_hex(), v("pigeon_capa"));
    assert_eq!(encode_getpubkey(Capa::PIGEON), v("pigeon_capa"));
    let ipmsg = decode_getpubkey(v("getpubkey_body_ipmsg").as_bytes()).unwrap();
    assert_eq!(ipmsg, Capa::IPMSG_4);
    assert_eq!(encode_getpubkey(ipmsg), v("getpubkey_body_ipmsg"));
    // Two IPMsg 4.x peers, and Pigeon with one, settle on pigeon_capa.
    assert_eq!(negotiate(ipmsg, ipmsg).unwrap().capa().to_upper_hex(), v("pigeon_capa"));
    assert_eq!(negotiate(Capa::PIGEON, ipmsg).unwrap().capa().to_upper_hex(), v("pigeon_capa"));
    assert_eq!(negotiate(ipmsg, Capa::PIGEON).unwrap().capa().to_upper_hex(), v("pigeon_capa"));
    assert_eq!(peer_pub().negotiate(Capa::PIGEON).unwrap().capa(), Capa::PIGEON);
    // An IPMsg that hands out its 1024-bit key: judged by the modulus, not the word.
    let old_key_new_word = PEER1024.peer_key(Capa::IPMSG_4);
    assert_eq!(old_key_new_word.negotiate(Capa::PIGEON), None);
    assert_eq!(old_key_new_word.negotiate(Capa::PIGEON_SEND).unwrap().capa(), Capa(0x01820002));
    // A 2048-bit key announced with an old word is RSA-2048, but without
    // AES-256 in the word there is nothing to agree on.
    assert_eq!(PEER.peer_key(Capa(0x01820002)).negotiate(Capa::PIGEON_SEND), None);
    // The vectors' words.
    for (name, want) in
        [("A_check", 0x41900004), ("B_check", 0x40100004), ("C_check", 0x41900004), ("D_check", 0x01820002)]
    {
        assert_eq!(check_line(name).0, Capa(want), "{name}");
    }
    assert_eq!(negotiate(Capa::IPMSG_4, Capa(0x40100004)).unwrap().capa(), Capa(0x40100004));
    assert_eq!(negotiate(Capa::PIGEON_SEND, Capa(0x01820002)).unwrap().capa(), Capa(0x01820002));
}

#[test]
fn anspubkey_bodies() {
    assert_eq!(PIGEON.anspubkey_body(Capa::PIGEON), v("anspubkey_body_pigeon"));
    assert_eq!(PEER.anspubkey_body(Capa::IPMSG_4), v("anspubkey_body_peer"));
    for (name, key, capa) in
        [("anspubkey_body_pigeon", &*PIGEON, Capa::PIGEON), ("anspubkey_body_peer", &*PEER, Capa::IPMSG_4)]
    {
        let k = PeerKey::decode_anspubkey(v(name).as_bytes()).unwrap();
        assert_eq!(k, key.peer_key(capa), "{name}");
        assert_eq!((k.capa(), k.size()), (capa, KeySize::Rsa2048));
        assert_eq!(k.encode_anspubkey(), v(name));
        assert_eq!(k.fingerprint(), key.fingerprint());
    }
}

#[test]
fn anspubkey_lenient_reading() {
    let want = peer_pub();
    let body = v("anspubkey_body_peer");
    let (capa, rest) = body.split_once(':').unwrap();
    let (_, modulus) = rest.split_once('-').unwrap();
    for variant in [
        format!("{capa}:010001-{modulus}"),
        format!("{capa}:0x10001-{modulus}").replace("0x", ""),
        format!("{capa}:10001-{}", modulus.to_uppercase()),
        format!("{}:10001-{modulus}", capa.to_lowercase()),
        format!("{capa}:10001-0000{modulus}"),
        format!("{capa}:10001-{modulus}\0"),
        format!("{capa}:10001-{modulus}\0\0"),
        format!("{capa}:10001-{modulus}\r\n"),
    ] {
        assert_eq!(PeerKey::decode_anspubkey(variant.as_bytes()).unwrap(), want, "{variant:?}");
    }
    // A decimal capability word (IPMsg for Mac) reads as the same word.
    let dec = format!("{}:10001-{modulus}", Capa::IPMSG_4.bits());
    assert_eq!(PeerKey::decode_anspubkey(dec.as_bytes()).unwrap().capa(), Capa::IPMSG_4);
    // Untrusted values are checked.
    for bad in [
        format!("{capa}:1-{modulus}"),
        format!("{capa}:10000-{modulus}"),
        // Two bytes short: a 2032-bit number is no 2048-bit key (one byte
        // short, 2033..=2047 bits, passes as a modulus missing its zeros).
        format!("{capa}:10001-{}", &modulus[4..]),
        format!("{capa}:10001-{}", &modulus[..256]),
        format!("{capa}:10001-{modulus}{modulus}"),
        format!("{capa}:10001-{}0", &modulus[..511]),
        format!("{capa}:10001-{}", modulus.replace('a', "g")),
        format!("{capa}:10001{modulus}"),
        format!("{capa}10001-{modulus}"),
        format!("{capa}:-{modulus}"),
        format!("{capa}:10001-"),
        "zz:10001-ff".to_string(),
    ] {
        assert!(PeerKey::decode_anspubkey(bad.as_bytes()).is_err(), "{bad:?}");
    }
    // The 1024-bit key is read as one.
    let old = PeerKey::decode_anspubkey(format!("1820002:10001-{}", v("peer1024_modulus_be")).as_bytes()).unwrap();
    assert_eq!((old.size(), old), (KeySize::Rsa1024, peer1024_pub()));
}

#[test]
fn a_decrypts_and_verifies() {
    let plain = unhex(v("A_plain_hex"));
    assert_eq!(plain, "Hello, 世界\nline2\0".as_bytes());
    let d = pubkey::decrypt(v("A_body").as_bytes(), b"1700000123", &[&PIGEON], Some(&peer_pub())).unwrap();
    assert_eq!(d.plain, plain);
    assert_eq!(d.capa, Capa::PIGEON);
    assert_eq!(d.choice, negotiate(Capa::PIGEON, Capa::IPMSG_4).unwrap());
    assert_eq!((d.signature, d.signed_len), (Signature::Verified, plain.len()));
    let s = d.sections(false);
    assert_eq!((s.text, s.attachments, s.recipients), ("Hello, 世界\nline2".as_bytes(), None, None));
    // A_check: capa, session key, plaintext, signature.
    let (capa, flags) = check_line("A_check");
    assert_eq!((capa, flags.as_slice()), (d.capa, &["True", "True", "True"][..]));
    // The session key is 00..1f: our encryption with it gives the same ciphertext.
    let f = fields(v("A_body"));
    let iv = crypto::packet_no_iv_array::<16>(b"1700000123");
    assert_eq!(crypto::encode_field(&crypto::aes256_cbc_encrypt(&aes_key(), &iv, &plain), true), f[2]);
    // And the signature field is the deterministic A_sig_sha256_b64.
    assert_eq!(f[3], v("A_sig_sha256_b64"));
    // With our keys in another order, or more keys than needed.
    let d2 = pubkey::decrypt(v("A_body").as_bytes(), b"1700000123", &[&PEER1024, &PIGEON], Some(&peer_pub())).unwrap();
    assert_eq!(d2, d);
}

#[test]
fn a_signature_statuses() {
    let body = v("A_body").as_bytes();
    let no_key = pubkey::decrypt(body, b"1700000123", &[&PIGEON], None).unwrap();
    assert_eq!((no_key.signature, no_key.signed_len), (Signature::Unverified, 0));
    let wrong_signer = pubkey::decrypt(body, b"1700000123", &[&PIGEON], Some(&pigeon_pub())).unwrap();
    assert_eq!(wrong_signer.signature, Signature::Bad);
    assert_eq!(wrong_signer.plain, no_key.plain);
    // IPMsg verifies only with a 2048-bit key of the sender (detail 3).
    let small = pubkey::decrypt(body, b"1700000123", &[&PIGEON], Some(&peer1024_pub())).unwrap();
    assert_eq!(small.signature, Signature::Unverified);
    // Signature tampered: still decrypts, signature bad.
    let mut f = EncryptedFields::decode(body).unwrap();
    f.signature.as_mut().unwrap()[100] ^= 1;
    let d = f.decrypt(b"1700000123", &[&PIGEON], Some(&peer_pub())).unwrap();
    assert_eq!(d.signature, Signature::Bad);
    // No signature field: unverified.
    f.signature = None;
    assert_eq!(f.decrypt(b"1700000123", &[&PIGEON], Some(&peer_pub())).unwrap().signature, Signature::Unverified);
    // The wrong packet number garbles the first block only: the padding
    // holds, the signature does not.
    let wrong_iv = pubkey::decrypt(body, b"1700000124", &[&PIGEON], Some(&peer_pub())).unwrap();
    assert_ne!(wrong_iv.plain, no_key.plain);
    assert_eq!(wrong_iv.plain[16..], no_key.plain[16..]);
    assert_eq!(wrong_iv.signature, Signature::Bad);
    // IV from the first 15 characters of the packet number (detail 1).
    let f = EncryptedFields::decode(body).unwrap();
    let long = f.decrypt(b"170000012300000999", &[&PIGEON], Some(&peer_pub()));
    assert_ne!(long.map(|d| d.plain).ok(), Some(no_key.plain.clone()));
}

#[test]
fn one_error_for_every_failure() {
    let body = v("A_body");
    let f = EncryptedFields::decode(body.as_bytes()).unwrap();
    let try_fields = |f: &EncryptedFields| f.decrypt(b"1700000123", &[&PIGEON], Some(&peer_pub()));
    let mut errors = Vec::new();
    // One byte of the ciphertext: the last block's padding breaks.
    for at in [f.ciphertext.len() - 1, f.ciphertext.len() - 5] {
        let mut t = f.clone();
        t.ciphertext[at] ^= 0x55;
        errors.push(try_fields(&t).unwrap_err());
    }
    // One byte of the wrapped key: bad RSA padding (or a wrong key and then bad CBC padding).
    for at in [0, 1, 100, 255] {
        let mut t = f.clone();
        t.key[at] ^= 0x01;
        errors.push(try_fields(&t).unwrap_err());
    }
    // A wrapped key of the wrong length, a ciphertext that is not whole blocks.
    let mut t = f.clone();
    t.key.push(0);
    errors.push(try_fields(&t).unwrap_err());
    let mut t = f.clone();
    t.ciphertext.pop();
    errors.push(try_fields(&t).unwrap_err());
    // The wrong private key; no key of the named size; an unknown algorithm.
    errors.push(pubkey::decrypt(body.as_bytes(), b"1700000123", &[&PEER], None).unwrap_err());
    errors.push(pubkey::decrypt(body.as_bytes(), b"1700000123", &[&PEER1024], None).unwrap_err());
    errors.push(
        pubkey::decrypt(body.replacen("41900004", "41000004", 1).as_bytes(), b"1", &[&PIGEON], None).unwrap_err(),
    );
    // Field encodings.
    for bad in [
        body.replacen(':', ";", 1),
        body.replacen("e+1Z", "e+1!", 1),
        body.replacen("41900004", "40100004", 1),
        format!("{body}:extra"),
        String::new(),
        "41900004:::".into(),
    ] {
        errors.push(pubkey::decrypt(bad.as_bytes(), b"1700000123", &[&PIGEON], None).unwrap_err());
    }
    errors.push(pubkey::decrypt(&[0xff, b':', 0xfe], b"1", &[&PIGEON], None).unwrap_err());
    // A session key wrapped correctly but of the wrong length for the cipher.
    let mut rng = TestRng(7);
    let wrong_len = pigeon_pub().rsa().encrypt(&mut rng, rsa::Pkcs1v15Encrypt, &[1u8; 16]).unwrap();
    let mut t = f.clone();
    t.key = wrong_len;
    errors.push(try_fields(&t).unwrap_err());
    for e in &errors {
        assert_eq!(*e, Error::Decrypt);
        assert_eq!(format!("{e:?}"), "Decrypt");
        assert_eq!(e.to_string(), "cannot decrypt the encrypted body");
    }
    assert_eq!(errors.len(), 19);
}

#[test]
fn rsa_field_without_leading_zero_byte() {
    // RSA fields may arrive without their leading zero bytes (detail 7):
    // find a wrapping that starts with 00 and drop it.
    let plain = b"short\0";
    let choice = Choice::from_capa(Capa::PIGEON).unwrap();
    let f = (0..4096u64)
        .map(|seed| {
            let body =
                pubkey::encrypt_with_key(&choice, &pigeon_pub(), None, b"9", plain, &aes_key(), &mut TestRng(seed))
                    .unwrap();
            EncryptedFields::decode(body.as_bytes()).unwrap()
        })
        .find(|f| f.key[0] == 0)
        .expect("one wrapping in 4096 starts with a zero byte");
    let mut short = f.clone();
    short.key.remove(0);
    assert_eq!(short.key.len(), 255);
    assert_eq!(short.decrypt(b"9", &[&PIGEON], None).unwrap().plain, plain);
    assert_eq!(EncryptedFields::decode(short.encode().as_bytes()).unwrap(), short);
}

#[test]
fn deterministic_signatures() {
    let plain = unhex(v("A_plain_hex"));
    let b64 = |b: Vec<u8>| crypto::encode_field(&b, true);
    let s256 = pubkey::message::sign(&PEER, SignHash::Sha256, &plain).unwrap();
    let s1 = pubkey::message::sign(&PEER, SignHash::Sha1, &plain).unwrap();
    assert_eq!(b64(s256.clone()), v("A_sig_sha256_b64"));
    assert_eq!(b64(s1.clone()), v("A_sig_sha1_b64"));
    let p = peer_pub();
    assert!(pubkey::message::verify_signature(&p, SignHash::Sha256, &plain, &s256));
    assert!(pubkey::message::verify_signature(&p, SignHash::Sha1, &plain, &s1));
    assert!(!pubkey::message::verify_signature(&p, SignHash::Sha1, &plain, &s256));
    assert!(!pubkey::message::verify_signature(&pigeon_pub(), SignHash::Sha256, &plain, &s256));
    assert!(!pubkey::message::verify_signature(&p, SignHash::Sha256, &plain[1..], &s256));
    let mut long = vec![0u8];
    long.extend_from_slice(&s256);
    assert!(!pubkey::message::verify_signature(&p, SignHash::Sha256, &plain, &long));
}

#[test]
fn a_re_encrypted() {
    // Pigeon-side encryption of A's plaintext, as the peer would write it:
    // wrapped for pigeon, signed by the peer. Everything but the randomly
    // padded RSA field is the vector's.
    let choice = Choice::from_capa(Capa::PIGEON).unwrap();
    let plain = unhex(v("A_plain_hex"));
    let body = pubkey::encrypt_with_key(
        &choice,
        &pigeon_pub(),
        Some(&PEER),
        b"1700000123",
        &plain,
        &aes_key(),
        &mut TestRng(1),
    )
    .unwrap();
    let (ours, theirs) = (fields(&body), fields(v("A_body")));
    assert_eq!((ours[0], ours[2], ours[3]), (theirs[0], theirs[2], theirs[3]));
    assert_eq!(ours[1].len(), 344);
    let d = pubkey::decrypt(body.as_bytes(), b"1700000123", &[&PIGEON], Some(&peer_pub())).unwrap();
    assert_eq!((d.plain, d.signature), (plain, Signature::Verified));
}

#[test]
fn b_zero_iv_hex() {
    let plain = unhex(v("A_plain_hex"));
    for packet_no in [&b"1700000123"[..], b"1", b""] {
        let d = pubkey::decrypt(v("B_body").as_bytes(), packet_no, &[&PIGEON], Some(&peer_pub())).unwrap();
        assert_eq!(d.plain, plain);
        assert_eq!(d.capa, Capa(0x40100004));
        assert_eq!(
            d.choice,
            Choice {
                key_size: KeySize::Rsa2048,
                cipher: Cipher::Aes256,
                sign: Some(SignHash::Sha256),
                packet_no_iv: false,
                base64: false
            }
        );
        assert_eq!(d.signature, Signature::Verified);
    }
    let (capa, flags) = check_line("B_check");
    assert_eq!((capa, flags.as_slice()), (Capa(0x40100004), &["True", "True", "True"][..]));
    // Upper-case hex reads too.
    let upper = v("B_body").to_uppercase();
    assert_eq!(pubkey::decrypt(upper.as_bytes(), b"1", &[&PIGEON], None).unwrap().plain, plain);
    // Re-encrypted: same capa, ciphertext and signature fields, hex.
    let choice = Choice::from_capa(Capa(0x40100004)).unwrap();
    let body = pubkey::encrypt_with_key(
        &choice,
        &pigeon_pub(),
        Some(&PEER),
        b"1700000123",
        &plain,
        &aes_key(),
        &mut TestRng(2),
    )
    .unwrap();
    let (ours, theirs) = (fields(&body), fields(v("B_body")));
    assert_eq!((ours[0], ours[2], ours[3]), (theirs[0], theirs[2], theirs[3]));
    assert_eq!(ours[1].len(), 512);
    // B's signature is A's (same plaintext, same key, deterministic).
    assert_eq!(crypto::encode_field(&unhex(theirs[3]), true), v("A_sig_sha256_b64"));
}

#[test]
fn c_encextmsg_sections() {
    let plain = unhex(v("C_plain_hex"));
    let d = pubkey::decrypt(v("C_body").as_bytes(), b"1700000125", &[&PIGEON], Some(&peer_pub())).unwrap();
    assert_eq!(d.plain, plain);
    assert_eq!(d.capa, Capa::PIGEON);
    assert_eq!((d.signature, d.signed_len), (Signature::Verified, plain.len()), "signed over the whole plaintext");
    let (capa, flags) = check_line("C_check");
    assert_eq!((capa, flags.as_slice()), (d.capa, &["True", "True"][..]));
    let s = d.sections(true);
    assert_eq!(s.text, b"see attached");
    let att = Attachment::decode_list(s.attachments.unwrap(), Charset::Utf8).unwrap();
    assert_eq!(att.len(), 1);
    assert_eq!((att[0].id, att[0].name.as_str(), att[0].size, att[0].mtime), (0, "notes.txt", 5, 0x65a1b2c4));
    assert!(att[0].attr.is_file());
    let to = [Recipient { user: b"bob", host: b"bob-pc" }, Recipient { user: b"alice", host: b"alice-laptop" }];
    assert_eq!(s.recipients.as_deref(), Some(&to[..]));
    // Without ENCEXTMSGOPT only the text counts.
    assert_eq!(split_plaintext(&d.plain, false).attachments, None);
    // Written back the same way.
    assert_eq!(join_plaintext(s.text, s.attachments, &to).unwrap(), plain);
    let mut list = Vec::new();
    Attachment::encode_list(&att, Charset::Utf8, &mut list).unwrap();
    assert_eq!(join_plaintext(b"see attached", Some(&list), &to).unwrap(), plain);
    // Re-encrypted.
    let body = pubkey::encrypt_with_key(
        &Choice::from_capa(Capa::PIGEON).unwrap(),
        &pigeon_pub(),
        Some(&PEER),
        b"1700000125",
        &plain,
        &aes_key(),
        &mut TestRng(3),
    )
    .unwrap();
    let (ours, theirs) = (fields(&body), fields(v("C_body")));
    assert_eq!((ours[0], ours[2], ours[3]), (theirs[0], theirs[2], theirs[3]));
}

#[test]
fn c_mac_signature_over_text_only() {
    // IPMsg for Mac signs only the text and its NUL (detail 6): such a body
    // verifies, and `signed_len` says the appended sections are not covered.
    let plain = unhex(v("C_plain_hex"));
    let text_len = plain.iter().position(|&b| b == 0).unwrap() + 1;
    let mut f = EncryptedFields::decode(v("C_body").as_bytes()).unwrap();
    f.signature = Some(pubkey::message::sign(&PEER, SignHash::Sha256, &plain[..text_len]).unwrap());
    let d = f.decrypt(b"1700000125", &[&PIGEON], Some(&peer_pub())).unwrap();
    assert_eq!((d.signature, d.signed_len), (Signature::Verified, text_len));
}

#[test]
fn d_blowfish_old_peer() {
    for packet_no in [&b"1700000123"[..], b"1700000126", b"17000001"] {
        let d = pubkey::decrypt(v("D_body").as_bytes(), packet_no, &[&PIGEON, &PEER1024], Some(&peer_pub())).unwrap();
        assert_eq!(d.plain, b"Hello\0");
        assert_eq!(d.capa, Capa(0x01820002));
        assert_eq!(
            d.choice,
            Choice {
                key_size: KeySize::Rsa1024,
                cipher: Cipher::Blowfish128,
                sign: None,
                packet_no_iv: true,
                base64: true
            }
        );
        assert_eq!(d.signature, Signature::Unverified);
    }
    let (capa, flags) = check_line("D_check");
    assert_eq!((capa, flags.as_slice()), (Capa(0x01820002), &["True", "True", "None"][..]));
    assert_eq!(fields(v("D_body")).len(), 3, "no signature field");
    // Pigeon alone holds no 1024-bit key.
    assert_eq!(pubkey::decrypt(v("D_body").as_bytes(), b"1700000123", &[&PIGEON], None).unwrap_err(), Error::Decrypt);
    // A different IV prefix garbles the first block.
    let d = pubkey::decrypt(v("D_body").as_bytes(), b"27000001", &[&PEER1024], None);
    assert_ne!(d.map(|d| d.plain).ok(), Some(b"Hello\0".to_vec()));
    // Re-encrypted by Pigeon for the old peer: same ciphertext, never signed
    // even though we hold a key and the choice asks for SHA-256.
    let choice = negotiate(Capa::PIGEON_SEND, Capa(0x01820002)).unwrap();
    for c in [choice, Choice { sign: Some(SignHash::Sha256), ..choice }] {
        let body = pubkey::encrypt_with_key(
            &c,
            &peer1024_pub(),
            Some(&PIGEON),
            b"1700000123",
            b"Hello\0",
            &bf_key(),
            &mut TestRng(4),
        )
        .unwrap();
        let (ours, theirs) = (fields(&body), fields(v("D_body")));
        assert_eq!(ours.len(), 3);
        assert_eq!((ours[0], ours[2]), (theirs[0], theirs[2]));
        assert_eq!(ours[1].len(), 172);
        let d = pubkey::decrypt(body.as_bytes(), b"1700000123", &[&PEER1024], Some(&pigeon_pub())).unwrap();
        assert_eq!((d.plain.as_slice(), d.signature), (&b"Hello\0"[..], Signature::Unverified));
    }
}

#[test]
fn e_encrypted_file_request() {
    let (req, d) =
        EncFileRequest::decrypt(v("E_body").as_bytes(), b"1700000200", &[&PIGEON], Some(&peer_pub())).unwrap();
    let mut inner = v("E_inner").as_bytes().to_vec();
    inner.push(0);
    assert_eq!(d.plain, inner);
    assert_eq!((d.capa, d.signature), (Capa::PIGEON, Signature::Verified));
    assert_eq!(
        req,
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
    assert!(req.matches_packet_no(b"1700000200"));
    assert_eq!(req.encode_plain(), inner);
    // Re-encrypted by the peer's side: same fields but the RSA one.
    let body = req
        .encrypt_with_key(
            &Choice::from_capa(Capa::PIGEON).unwrap(),
            &pigeon_pub(),
            Some(&PEER),
            b"1700000200",
            &aes_key(),
            &mut TestRng(5),
        )
        .unwrap();
    let (ours, theirs) = (fields(&body), fields(v("E_body")));
    assert_eq!((ours[0], ours[2], ours[3]), (theirs[0], theirs[2], theirs[3]));
    // Tampering and a plaintext that decrypts but is no request: the one error.
    let mut f = EncryptedFields::decode(v("E_body").as_bytes()).unwrap();
    f.ciphertext[40] ^= 1;
    let tampered = f.encode();
    assert_eq!(
        EncFileRequest::decrypt(tampered.as_bytes(), b"1700000200", &[&PIGEON], None).unwrap_err(),
        Error::Decrypt
    );
    assert_eq!(
        EncFileRequest::decrypt(v("A_body").as_bytes(), b"1700000123", &[&PIGEON], None).unwrap_err(),
        Error::Decrypt
    );
}

#[test]
fn e2_file_request_with_body_key() {
    let inner = v("E2_inner_encrypted_body");
    let req = EncFileRequest::decode_plain(inner.as_bytes()).unwrap();
    assert_eq!(req.body, FileBody::Aes256Ctr(aes_key()));
    assert_eq!(
        (req.kind, req.packet_no, req.file_id, req.request_packet_no),
        (RequestKind::Dir, 1700000400, 123456790, 1700000200)
    );
    let mut want = inner.as_bytes().to_vec();
    want.push(0);
    assert_eq!(req.encode_plain(), want);
    // Round trip through our encryption, with a fresh session key.
    let choice = peer_pub().negotiate(Capa::PIGEON).unwrap();
    let body = req.encrypt(&choice, &peer_pub(), Some(&PIGEON), b"1700000200").unwrap();
    let (back, d) = EncFileRequest::decrypt(body.as_bytes(), b"1700000200", &[&PEER], Some(&pigeon_pub())).unwrap();
    assert_eq!((back, d.signature), (req, Signature::Verified));
    // The key then drives the body's AES-256-CTR, nonce = the request's
    // packet number (protocol.md V19: the same key and number).
    let FileBody::Aes256Ctr(key) = back_key(&body) else { panic!("AES body expected") };
    let mut ks = [0u8; 16];
    crypto::aes256_ctr_apply(&key, b"1700000200", &mut ks, 0);
    assert_eq!(crypto::encode_field(&ks, false), "eddd70d952f06b6dcd16836b54a6deb7");
}

fn back_key(body: &str) -> FileBody {
    EncFileRequest::decrypt(body.as_bytes(), b"1700000200", &[&PEER], None).unwrap().0.body
}

#[test]
fn every_vector_is_used() {
    let used = [
        "pigeon_modulus_be",
        "pigeon_fingerprint",
        "peer_modulus_be",
        "peer_fingerprint",
        "peer1024_modulus_be",
        "pigeon_capa",
        "getpubkey_body_ipmsg",
        "anspubkey_body_pigeon",
        "anspubkey_body_peer",
        "A_plain_hex",
        "A_body",
        "A_check",
        "B_body",
        "B_check",
        "C_plain_hex",
        "C_body",
        "C_check",
        "D_body",
        "D_check",
        "E_inner",
        "E_body",
        "E2_inner_encrypted_body",
        "A_sig_sha256_b64",
        "A_sig_sha1_b64",
    ];
    let mut names: Vec<&str> = V.keys().copied().collect();
    names.sort_unstable();
    let mut want = used.to_vec();
    want.sort_unstable();
    assert_eq!(names, want, "a vector was added or removed: test it");
}

#[test]
fn pem_round_trip() {
    let pem = PIGEON.to_pkcs8_pem().unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    let back = KeyPair::from_pkcs8_pem(&pem).unwrap();
    assert_eq!(back.modulus_be(), PIGEON.modulus_be());
    // Same private key: same deterministic signature.
    assert_eq!(
        pubkey::message::sign(&back, SignHash::Sha256, b"x").unwrap(),
        pubkey::message::sign(&PIGEON, SignHash::Sha256, b"x").unwrap()
    );
    assert_eq!(pem.as_str(), include_str!("crypto/pigeon-test-rsa2048.pem"), "the same PKCS#8 bytes as OpenSSL's");
    for bad in [
        "",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        include_str!("crypto/peer-test-rsa2048.pub.pem"),
    ] {
        assert!(KeyPair::from_pkcs8_pem(bad).is_err());
    }
    assert!(PeerKey::from_public_key_pem(include_str!("crypto/pigeon-test-rsa2048.pem"), Capa::PIGEON).is_err());
}

#[test]
fn generate_1024() {
    // 2048-bit generation is timed in the bench; 1024 is quick enough here.
    let k = KeyPair::generate_with(&mut TestRng(42), 1024).unwrap();
    assert_eq!((k.size(), k.modulus_be().len()), (KeySize::Rsa1024, 128));
    assert_eq!(k.peer_key(Capa(0x01820002)).exponent_be(), [1, 0, 1]);
    let again = KeyPair::generate_with(&mut TestRng(42), 1024).unwrap();
    assert_eq!(again.modulus_be(), k.modulus_be(), "deterministic with the same RNG");
    let choice = negotiate(Capa::PIGEON_SEND, Capa(0x01820002)).unwrap();
    let body = pubkey::encrypt(&choice, &k.peer_key(Capa(0x01820002)), None, b"42", b"hi\0").unwrap();
    assert_eq!(pubkey::decrypt(body.as_bytes(), b"42", &[&k], None).unwrap().plain, b"hi\0");
}

#[test]
fn encrypt_refuses() {
    let choice = Choice::from_capa(Capa::PIGEON).unwrap();
    let p = pigeon_pub();
    let enc = |c: &Choice, peer: &PeerKey, no: &[u8], key: &[u8]| {
        pubkey::encrypt_with_key(c, peer, None, no, b"x\0", key, &mut TestRng(0))
    };
    assert!(enc(&choice, &p, b"1234567890123456", &aes_key()).is_err(), "16 digits");
    assert!(enc(&choice, &p, b"", &aes_key()).is_err());
    assert!(enc(&choice, &p, b"12a", &aes_key()).is_err());
    assert!(enc(&choice, &p, b"123456789012345", &aes_key()).is_ok());
    assert!(enc(&choice, &p, b"1", &bf_key()).is_err(), "key length");
    assert!(enc(&choice, &peer1024_pub(), b"1", &aes_key()).is_err(), "key size");
    // Without our key the SIGN bit is dropped.
    let body = enc(&choice, &p, b"1", &aes_key()).unwrap();
    assert!(body.starts_with("1900004:"));
    assert_eq!(fields(&body).len(), 3);
}

/// A choice for the round trip: AES path (with or without a signature,
/// packet-number IV, base64) or Blowfish path.
fn choice_strategy() -> impl Strategy<Value = Choice> {
    (
        any::<bool>(),
        prop::option::of(prop_oneof![Just(SignHash::Sha1), Just(SignHash::Sha256)]),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(aes, sign, packet_no_iv, base64)| Choice {
            key_size: if aes { KeySize::Rsa2048 } else { KeySize::Rsa1024 },
            cipher: if aes { Cipher::Aes256 } else { Cipher::Blowfish128 },
            sign: if aes { sign } else { None },
            packet_no_iv,
            base64,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn our_encrypt_our_decrypt(choice in choice_strategy(), packet_no in "[1-9][0-9]{0,14}",
                               plain in prop::collection::vec(any::<u8>(), 0..300),
                               key in any::<[u8; 32]>(), seed in any::<u64>()) {
        let (peer, ours_for_them): (PeerKey, &KeyPair) = match choice.key_size {
            KeySize::Rsa2048 => (peer_pub(), &PEER),
            KeySize::Rsa1024 => (peer1024_pub(), &PEER1024),
        };
        let key = &key[..choice.cipher.key_len()];
        let body = pubkey::encrypt_with_key(&choice, &peer, Some(&PIGEON), packet_no.as_bytes(), &plain, key,
                                            &mut TestRng(seed)).unwrap();
        prop_assert_eq!(body.is_ascii(), true);
        let d = pubkey::decrypt(body.as_bytes(), packet_no.as_bytes(), &[ours_for_them], Some(&pigeon_pub())).unwrap();
        prop_assert_eq!(&d.plain, &plain);
        prop_assert_eq!(d.choice, choice);
        let want = if choice.sign.is_some() { Signature::Verified } else { Signature::Unverified };
        prop_assert_eq!(d.signature, want);
        // A fresh session key from the OS also round-trips.
        let body2 = pubkey::encrypt(&choice, &peer, Some(&PIGEON), packet_no.as_bytes(), &plain).unwrap();
        let d2 = pubkey::decrypt(body2.as_bytes(), packet_no.as_bytes(), &[ours_for_them], None).unwrap();
        prop_assert_eq!(d2.plain, plain);
    }
}

// ---- independent check with the openssl command line ----

fn openssl_available() -> bool {
    let ok = Command::new("openssl").arg("version").output().is_ok_and(|o| o.status.success());
    if !ok {
        println!("openssl not found: skipping the openssl cross-check");
    }
    ok
}

fn openssl(args: &[&str], stdin: &[u8]) -> Option<Vec<u8>> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(stdin).ok()?;
    let out = child.wait_with_output().ok()?;
    if !out.status.success() {
        println!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    Some(out.stdout)
}

fn key_path(name: &str) -> String {
    format!("{}/tests/crypto/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn openssl_decrypts_our_bodies() {
    if !openssl_available() {
        return;
    }
    let plain = "Hi from Pigeon, 你好\nsecond line\0".as_bytes();
    let cases = [
        (Capa::PIGEON, "peer-test-rsa2048.pem", "aes-256-cbc"),
        (Capa(0x40100004), "peer-test-rsa2048.pem", "aes-256-cbc"),
        (Capa(0x21900004), "peer-test-rsa2048.pem", "aes-256-cbc"),
        (Capa(0x01820002), "peer-test-rsa1024.pem", "bf-cbc"),
    ];
    let mut checked = 0;
    for (capa, key_file, cipher) in cases {
        let choice = Choice::from_capa(capa).unwrap();
        let peer = if choice.key_size == KeySize::Rsa2048 { peer_pub() } else { peer1024_pub() };
        let packet_no = "1700000321";
        let body = pubkey::encrypt(&choice, &peer, Some(&PIGEON), packet_no.as_bytes(), plain).unwrap();
        let f = EncryptedFields::decode(body.as_bytes()).unwrap();
        assert_eq!(f.capa, capa);
        let session = openssl(&["pkeyutl", "-decrypt", "-inkey", &key_path(key_file)], &f.key)
            .expect("openssl unwraps our RSA-wrapped session key");
        assert_eq!(session.len(), choice.cipher.key_len());
        let iv_len = choice.cipher.block_len();
        let iv = if choice.packet_no_iv { crypto::packet_no_iv(packet_no.as_bytes(), iv_len) } else { vec![0; iv_len] };
        let (k, iv) = (crypto::encode_field(&session, false), crypto::encode_field(&iv, false));
        let mut args =
            vec!["enc", "-d", if cipher == "bf-cbc" { "-bf-cbc" } else { "-aes-256-cbc" }, "-K", &k, "-iv", &iv];
        if cipher == "bf-cbc" {
            // OpenSSL 3 keeps Blowfish in the legacy provider.
            args.extend(["-provider", "legacy", "-provider", "default"]);
        }
        match openssl(&args, &f.ciphertext) {
            Some(out) => {
                assert_eq!(out, plain, "{capa:?}");
                checked += 1;
            }
            None if cipher == "bf-cbc" => println!("openssl has no Blowfish (legacy provider): skipped"),
            None => panic!("openssl could not decrypt our {capa:?} body"),
        }
        // Our signature, checked by openssl with our private key file's public half.
        if let Some(sig) = &f.signature {
            let digest = if capa.contains(Capa::SIGN_SHA256) { "-sha256" } else { "-sha1" };
            let path = std::env::temp_dir().join(format!("pigeon-sig-{}-{:x}", std::process::id(), capa.bits()));
            std::fs::write(&path, sig).unwrap();
            let out = openssl(
                &[
                    "dgst",
                    digest,
                    "-prverify",
                    &key_path("pigeon-test-rsa2048.pem"),
                    "-signature",
                    path.to_str().unwrap(),
                ],
                plain,
            );
            let _ = std::fs::remove_file(&path);
            assert_eq!(
                out.as_deref().map(|o| String::from_utf8_lossy(o).trim().to_string()),
                Some("Verified OK".into())
            );
        } else {
            assert!(choice.sign.is_none());
        }
    }
    assert!(checked >= 3);
}

/// The AWS-LC path (feature `aws-lc`, the binary's build) and the `rsa`
/// crate's give the same signatures and the same decryptions, failures
/// included.
#[test]
fn both_rsa_paths_agree() {
    let slow_pigeon = PIGEON.without_fast_path();
    let slow_peer = PEER.without_fast_path();
    assert!(!slow_pigeon.accelerated() && !slow_peer.accelerated());
    assert_eq!(PIGEON.accelerated(), cfg!(feature = "aws-lc"), "2048-bit keys take the AWS-LC path when built with it");
    assert!(!PEER1024.accelerated(), "1024-bit keys stay with the rsa crate");
    let plain = unhex(v("A_plain_hex"));
    for data in [&plain[..], b"", &[0xffu8; 5000][..]] {
        assert_eq!(
            pubkey::message::sign(&PEER, SignHash::Sha256, data).unwrap(),
            pubkey::message::sign(&slow_peer, SignHash::Sha256, data).unwrap()
        );
    }
    let f = EncryptedFields::decode(v("A_body").as_bytes()).unwrap();
    let both = |f: &EncryptedFields| {
        let fast = f.decrypt(b"1700000123", &[&PIGEON], Some(&peer_pub()));
        let slow = f.decrypt(b"1700000123", &[&slow_pigeon], Some(&peer_pub()));
        assert_eq!(fast, slow);
        fast
    };
    assert_eq!(both(&f).unwrap().plain, plain);
    for at in [0, 1, 100, 255] {
        let mut t = f.clone();
        t.key[at] ^= 0x01;
        assert!(both(&t).is_err());
    }
    let mut t = f.clone();
    t.key = vec![0; 256];
    assert!(both(&t).is_err());
    // Our own encryption to each, read back by the other.
    for (to, by) in [(&*PIGEON, &slow_pigeon), (&slow_pigeon, &*PIGEON)] {
        let choice = negotiate(Capa::PIGEON, Capa::PIGEON).unwrap();
        let body = pubkey::encrypt(&choice, &to.peer_key(Capa::PIGEON), Some(&PEER), b"42", &plain).unwrap();
        let d = pubkey::decrypt(body.as_bytes(), b"42", &[by], Some(&peer_pub())).unwrap();
        assert_eq!((d.plain, d.signature), (plain.clone(), Signature::Verified));
    }
}
