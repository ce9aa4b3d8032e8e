//! `Packet::decode`, and a round trip: whatever decodes and can be written
//! again must decode to the same fields (cf. hickory-dns's message fuzzer).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pigeon_protocol::packet::MAX_DATAGRAM;
use pigeon_protocol::{write_packet, Error, Header, Packet};

fuzz_target!(|data: &[u8]| {
    let Ok(p) = Packet::decode(data) else {
        return;
    };
    // The accessors must not panic.
    let _ = (p.mode(), p.opts(), p.packet_number(), p.packet_no_str());
    let body = p.body();
    let sections: Vec<&[u8]> = p.sections().collect();
    assert!(sections.len() <= p.payload.len());
    assert_eq!(sections.first().copied(), p.section(0));
    assert!(p.after_body().len() <= p.payload.len());

    // Packet::encode: fields as sent, payload plus a NUL if it lacked one.
    let mut out = Vec::new();
    if p.encode(&mut out).is_ok() {
        match Packet::decode(&out) {
            Ok(q) => {
                assert_eq!(q.version, p.version);
                assert_eq!(q.packet_no, p.packet_no);
                assert_eq!(q.user, p.user);
                assert_eq!(q.host, p.host);
                assert_eq!(q.command, p.command);
                if p.payload.last() == Some(&0) {
                    assert_eq!(q.payload, p.payload);
                } else {
                    assert_eq!(&q.payload[..q.payload.len() - 1], p.payload);
                    assert_eq!(q.payload.last(), Some(&0));
                }
                assert_eq!(q.body(), body);
                assert!(q.sections().eq(sections.iter().copied()));
            }
            // Only the added NUL may push it over the limit.
            Err(Error::TooLong(n)) => assert!(data.len() == MAX_DATAGRAM && n == MAX_DATAGRAM + 1),
            Err(e) => panic!("re-encoded packet does not decode: {e}"),
        }
    } else {
        // Only empty user/host/packet-number fields make a decoded header unwritable.
        assert!(p.packet_no.is_empty() || p.user.is_empty() || p.host.is_empty());
    }

    // write_packet with the numeric packet number: body and sections survive.
    if let Some(no) = p.packet_number() {
        let h = Header { version: p.version, packet_no: no, user: p.user, host: p.host, command: p.command };
        let mut out = Vec::new();
        if write_packet(&mut out, &h, body, &sections).is_ok() && out.len() <= MAX_DATAGRAM {
            let q = Packet::decode(&out).expect("written packet decodes");
            assert_eq!(q.packet_number(), Some(no));
            assert_eq!(q.body(), body);
            assert!(q.sections().eq(sections.iter().copied()));
        }
    }
});
