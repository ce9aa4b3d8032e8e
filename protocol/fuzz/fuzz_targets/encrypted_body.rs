//! `pubkey::decrypt` with the fixed test keys (PKCS#8 PEM built in from
//! `protocol/tests/crypto/`). Byte 0 picks the mode:
//!
//! * `byte0 % 8 != 1`: the rest is `packet number` `\n` `body`, decrypted as is with
//!   Pigeon's and the old peer's private keys and the peer's public key as
//!   sender. Must not panic; every failure is the one `Error::Decrypt`.
//! * `byte0 % 8 == 1` (rarer: up to two RSA private-key operations each): a
//!   valid body is made from the input (algorithms from byte 1,
//!   packet number, session key and plaintext from the rest; RSA padding
//!   from a seeded RNG, so an input replays), then one byte picked by the
//!   input is changed (or none). Unchanged, it decrypts to the plaintext
//!   with the expected signature status; changed, it fails with
//!   `Error::Decrypt` or decrypts, and then a plaintext other than the
//!   original is never `Verified` (no forgery through a flipped byte).
//!
//! The plaintext's sections are split either way.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pigeon_protocol::pubkey::{self, split_plaintext, Choice, Cipher, KeySize, SignHash, Signature};
use pigeon_protocol::Error;
use pigeon_protocol_fuzz::keys::{keys, FuzzRng};

fn raw(data: &[u8]) {
    let k = keys();
    let (pkt, body) = match data.iter().position(|&b| b == b'\n') {
        Some(p) => (&data[..p], &data[p + 1..]),
        None => (&b"1700000123"[..], data),
    };
    match pubkey::decrypt(body, pkt, &[&k.pigeon, &k.peer1024], Some(&k.peer_pub())) {
        Ok(d) => {
            let _ = split_plaintext(&d.plain, true);
            assert!(d.signed_len <= d.plain.len());
        }
        Err(e) => assert_eq!(e, Error::Decrypt),
    }
}

fn made(data: &[u8]) {
    let k = keys();
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let aes = flags & 1 == 0;
    let choice = Choice {
        key_size: if aes { KeySize::Rsa2048 } else { KeySize::Rsa1024 },
        cipher: if aes { Cipher::Aes256 } else { Cipher::Blowfish128 },
        sign: match (aes, flags >> 1 & 3) {
            (true, 1) => Some(SignHash::Sha1),
            (true, 2 | 3) => Some(SignHash::Sha256),
            _ => None,
        },
        packet_no_iv: flags & 8 != 0,
        base64: flags & 16 != 0,
    };
    let flip = flags >> 5 != 0;
    let mut r = rest.iter().copied();
    let mut take = |n: usize| -> Vec<u8> { (0..n).map(|_| r.next().unwrap_or(0)).collect() };
    let seed = u64::from_le_bytes(take(8).try_into().unwrap_or_default());
    let digits = 1 + (seed % 15) as usize;
    let pkt: Vec<u8> = format!("{:015}", seed % 1_000_000_000_000_000).into_bytes()[15 - digits..].to_vec();
    let pkt = if pkt[0] == b'0' { b"1".to_vec() } else { pkt };
    let key = take(choice.cipher.key_len());
    let where_ = u16::from_le_bytes([take(1)[0], take(1)[0]]) as usize;
    let plain: Vec<u8> = r.collect();
    let peer = if aes { k.pigeon_pub() } else { k.peer1024_pub() };
    let body = pubkey::encrypt_with_key(&choice, &peer, Some(&k.peer), &pkt, &plain, &key, &mut FuzzRng(seed))
        .expect("a valid choice encrypts");
    let mut bytes = body.into_bytes();
    let ours = if aes { &k.pigeon } else { &k.peer1024 };
    if !flip {
        let d = pubkey::decrypt(&bytes, &pkt, &[ours], Some(&k.peer_pub())).expect("our body decrypts");
        assert_eq!(d.plain, plain);
        let want = if choice.sign.is_some() { Signature::Verified } else { Signature::Unverified };
        assert_eq!((d.signature, d.choice), (want, choice));
        let _ = split_plaintext(&d.plain, true);
        return;
    }
    let at = where_ % bytes.len();
    bytes[at] = bytes[at].wrapping_add(1 + (seed >> 56) as u8 % 255);
    match pubkey::decrypt(&bytes, &pkt, &[ours], Some(&k.peer_pub())) {
        Ok(d) => {
            if d.plain != plain {
                assert_ne!(d.signature, Signature::Verified, "a changed body verified with other plaintext");
            }
        }
        Err(e) => assert_eq!(e, Error::Decrypt),
    }
}

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((m, rest)) if m % 8 == 1 => made(&rest[..rest.len().min(2048)]),
        Some((_, rest)) => raw(rest),
        None => {}
    }
});
