//! `MessageBody::decode` on a decoded packet, with each legacy charset and
//! announced charset, and writing the result back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pigeon_protocol::{Command, Header, MessageBody, Packet};
use pigeon_protocol_fuzz::CHARSETS;

fuzz_target!(|data: &[u8]| {
    let Ok(p) = Packet::decode(data) else {
        return;
    };
    let announced = [None, Some(CHARSETS[0]), Some(CHARSETS[1]), Some(CHARSETS[2])];
    for legacy in CHARSETS {
        for ann in announced {
            let Ok((m, cs)) = MessageBody::decode(&p, legacy, ann) else {
                continue;
            };
            assert!(m.attachments.len() <= p.payload.len());
            let h = Header { version: b"1", packet_no: 1, user: b"u", host: b"h", command: Command(0x20) };
            let mut out = Vec::new();
            if m.encode(&h, cs, &mut out).is_ok() {
                let q = Packet::decode(&out).expect("a written message decodes");
                let _ = MessageBody::decode(&q, legacy, ann);
            }
        }
    }
});
