//! Encrypted file requests (`pubkey::EncFileRequest`): the plaintext reader
//! fed the whole input, `EncFileRequest::decrypt` fed it as a body (with
//! the fixed test keys; every failure is the one `Error::Decrypt`), and a
//! request made from the input's first bytes encrypted and decrypted.
//! Beyond "no panic": a decoded plaintext writes back (NUL-terminated) to
//! one that decodes to the same request, and written-back text is stable;
//! a made request round-trips through encryption with a verified signature.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pigeon_protocol::pubkey::{Capa, EncFileRequest, FileBody, Signature};
use pigeon_protocol::request::RequestKind;
use pigeon_protocol::Error;
use pigeon_protocol_fuzz::keys::{keys, FuzzRng};

fn plain(data: &[u8]) {
    let Ok(r) = EncFileRequest::decode_plain(data) else {
        return;
    };
    let text = r.encode_plain();
    assert_eq!(text.last(), Some(&0));
    let back = EncFileRequest::decode_plain(&text).expect("a written request decodes");
    assert_eq!(back, r);
    assert_eq!(back.encode_plain(), text);
}

fn body(data: &[u8]) {
    let k = keys();
    if let Err(e) = EncFileRequest::decrypt(data, b"1700000200", &[&k.pigeon], Some(&k.peer_pub())) {
        assert_eq!(e, Error::Decrypt);
    }
}

fn made(data: &[u8]) {
    if data.len() < 58 {
        return;
    }
    let k = keys();
    let u = |i: usize| u64::from_le_bytes(data[i..i + 8].try_into().unwrap_or_default());
    let req = EncFileRequest {
        kind: if data[0] & 1 == 0 { RequestKind::Dir } else { RequestKind::File },
        packet_no: u(1),
        file_id: u(9),
        offset: if data[0] & 1 == 0 { 0 } else { u(17) },
        body: if data[0] & 2 == 0 { FileBody::Plain } else { FileBody::Aes256Ctr(data[25..57].try_into().unwrap()) },
        request_packet_no: u(17) % 1_000_000_000,
        extensions: if data[0] & 4 == 0 { Vec::new() } else { b"PH".to_vec() },
    };
    let pkt = req.request_packet_no.to_string();
    let choice = k.pigeon_pub().negotiate(Capa::PIGEON).expect("4.x choice");
    let body = req
        .encrypt_with_key(&choice, &k.pigeon_pub(), Some(&k.peer), pkt.as_bytes(), &data[25..57], &mut FuzzRng(u(1)))
        .expect("encrypts");
    let (back, d) =
        EncFileRequest::decrypt(body.as_bytes(), pkt.as_bytes(), &[&k.pigeon], Some(&k.peer_pub())).expect("decrypts");
    assert_eq!((back.clone(), d.signature), (req, Signature::Verified));
    assert!(back.matches_packet_no(pkt.as_bytes()));
}

fuzz_target!(|data: &[u8]| {
    plain(data);
    body(data);
    if data.first() == Some(&0xee) {
        made(&data[1..]);
    }
});
