//! The short control bodies of `reply.rs`: `PacketRef::decode` (RECVMSG,
//! READMSG, RELEASEFILES…), `decode_getpubkey`, `PublicKey::decode`
//! (ANSPUBKEY) and `EncryptedBody::decode`, each fed the whole input.
//! Beyond "no panic": a decoded `PacketRef` is the trimmed input and writes
//! back to itself; `PacketRef::new(v)` for a `v` taken from the input
//! decodes to `v`; a GETPUBKEY capability written as hex reads back; a
//! `PublicKey` re-encodes to one that decodes to the same key (the exponent
//! loses its leading zero bytes, as `encode` documents by trimming `0`s) and
//! encodes to the same text again; an `EncryptedBody`'s fields hold no `:`,
//! are the input's fields, and written back decode to the same body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pigeon_protocol::reply::{decode_getpubkey, EncryptedBody, PacketRef, PublicKey};

fn packet_ref(data: &[u8]) {
    if let Ok(r) = PacketRef::decode(data) {
        assert_eq!(r.raw.as_bytes(), data.trim_ascii(), "raw is the number as written");
        assert!(r.raw.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(r.raw.trim_start_matches('0').parse::<u64>().unwrap_or(0), r.value);
        assert_eq!(PacketRef::decode(r.encode()).expect("an encoded reference decodes"), r);
        let n = PacketRef::new(r.value);
        assert_eq!(n.value, r.value);
        assert_eq!(PacketRef::decode(n.encode()).expect("a new reference decodes"), n);
    }
    // Any value, written by us, reads back.
    let mut v = [0u8; 8];
    let k = data.len().min(8);
    v[..k].copy_from_slice(&data[..k]);
    let n = PacketRef::new(u64::from_le_bytes(v));
    assert_eq!(PacketRef::decode(n.encode()).expect("PacketRef::new(v).encode() decodes"), n);
}

fn getpubkey(data: &[u8]) {
    if let Ok(capa) = decode_getpubkey(data) {
        assert_eq!(decode_getpubkey(format!("{capa:x}").as_bytes()).expect("hex capability"), capa);
        assert_eq!(decode_getpubkey(format!("{capa:X}\0").as_bytes()).ok(), None, "a NUL is not a digit");
    }
}

fn public_key(data: &[u8]) {
    let Ok(k) = PublicKey::decode(data) else {
        return;
    };
    let text = k.encode();
    let back = PublicKey::decode(text.as_bytes()).expect("an encoded key decodes");
    // `encode` writes the exponent without leading zero digits: leading zero
    // bytes do not come back (the number is the same).
    let exponent: Vec<u8> = k.exponent.iter().copied().skip_while(|&b| b == 0).collect();
    assert_eq!(back, PublicKey { exponent, ..k.clone() });
    assert_eq!(back.encode(), text, "encode is stable");
}

fn encrypted_body(data: &[u8]) {
    let Ok(b) = EncryptedBody::decode(data) else {
        return;
    };
    let s = std::str::from_utf8(data).expect("only UTF-8 bodies decode");
    let fields: Vec<&str> = s.split(':').collect();
    assert!(fields.len() >= 3);
    assert_eq!(b.key, fields[1]);
    assert_eq!(b.ciphertext, fields[2]);
    assert_eq!(b.signature.as_deref(), fields.get(3).copied());
    for f in [Some(&b.key), Some(&b.ciphertext), b.signature.as_ref()].into_iter().flatten() {
        assert!(!f.contains(':'));
    }
    let mut text = format!("{:x}:{}:{}", b.capa, b.key, b.ciphertext);
    if let Some(sig) = &b.signature {
        text.push(':');
        text.push_str(sig);
    }
    assert_eq!(EncryptedBody::decode(text.as_bytes()).expect("a written body decodes"), b);
}

fuzz_target!(|data: &[u8]| {
    packet_ref(data);
    getpubkey(data);
    public_key(data);
    encrypted_body(data);
});
