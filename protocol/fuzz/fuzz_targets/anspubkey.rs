//! The key-exchange bodies of `pubkey`: `PeerKey::decode_anspubkey`
//! (ANSPUBKEY), `decode_getpubkey` (GETPUBKEY) and the two capability
//! readers, each fed the whole input. Beyond "no panic": a decoded key is
//! 1024 or 2048 bits with a modulus of exactly that many bytes and exponent
//! 65537 or a small odd number; written back (`encode_anspubkey`, the
//! strict form) it decodes to the same modulus and exponent, and to the
//! same capability word when that names an RSA size (a word without one
//! may be read as decimal, the Mac leniency); the written form is stable.
//! A capability word read as hex writes back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pigeon_protocol::pubkey::{decode_getpubkey, encode_getpubkey, Capa, KeySize, PeerKey};

fn anspubkey(data: &[u8]) {
    let Ok(k) = PeerKey::decode_anspubkey(data) else {
        return;
    };
    assert!(matches!(k.size(), KeySize::Rsa1024 | KeySize::Rsa2048));
    let n = k.modulus_be();
    assert_eq!(n.len(), k.size().bytes());
    assert_eq!(n.last().map(|b| b & 1), Some(1), "odd modulus");
    let e = k.exponent_be();
    assert!(e == [1, 0, 1] || (e.len() <= 4 && e.last().is_some_and(|b| b & 1 == 1)), "exponent {e:?}");
    let text = k.encode_anspubkey();
    assert!(text.is_ascii() && !text.contains('\0'));
    let back = PeerKey::decode_anspubkey(text.as_bytes()).expect("an encoded key decodes");
    assert_eq!((back.modulus_be(), back.exponent_be(), back.size()), (n, e, k.size()));
    if k.capa().intersects(Capa::RSA_1024 | Capa::RSA_2048) {
        assert_eq!(back, k);
    }
    assert_eq!(
        PeerKey::decode_anspubkey(back.encode_anspubkey().as_bytes()).expect("stable").encode_anspubkey(),
        back.encode_anspubkey()
    );
    // The negotiated choice never names a key size other than the modulus's.
    if let Some(c) = k.negotiate(Capa::PIGEON_SEND) {
        assert_eq!(c.key_size, k.size());
    }
}

fn getpubkey(data: &[u8]) {
    if let Ok(c) = Capa::parse_hex(data) {
        assert_eq!(Capa::parse_hex(c.to_lower_hex().as_bytes()).expect("hex"), c);
        assert_eq!(Capa::parse_hex(c.to_upper_hex().as_bytes()).expect("HEX"), c);
    }
    let Ok(c) = decode_getpubkey(data) else {
        return;
    };
    if c.intersects(Capa::RSA_1024 | Capa::RSA_2048) {
        assert_eq!(decode_getpubkey(encode_getpubkey(c).as_bytes()).expect("our GETPUBKEY body decodes"), c);
    }
    let _ = c.names();
}

fuzz_target!(|data: &[u8]| {
    anspubkey(data);
    getpubkey(data);
});
