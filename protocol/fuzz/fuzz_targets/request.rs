//! `FileRequest::decode` and `request_framing`, whole and as a packet body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pigeon_protocol::request::{request_framing, Framing};
use pigeon_protocol::{FileRequest, Packet, RequestKind};

fn check(body: &[u8]) {
    let Ok(r) = FileRequest::decode(body) else {
        return;
    };
    for kind in [RequestKind::File, RequestKind::Dir] {
        let mut out = Vec::new();
        r.encode(kind, &mut out);
        let s = FileRequest::decode(&out).expect("a written request decodes");
        assert_eq!((s.packet_no, s.file_id), (r.packet_no, r.file_id));
        let offset = if kind == RequestKind::File { r.offset.unwrap_or(0) } else { 0 };
        assert_eq!(s.offset, Some(offset));
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    match request_framing(data) {
        Framing::Complete(n) => {
            assert!(n > 0 && n <= data.len());
            // Framing finds the end of the whole request packet.
            if let Ok(p) = Packet::decode(&data[..n]) {
                let _ = FileRequest::kind_of(&p);
                check(p.body());
            }
            // Framing the complete prefix again gives the same answer.
            assert_eq!(request_framing(&data[..n]), Framing::Complete(n));
        }
        Framing::Partial => {
            if let Ok(p) = Packet::decode(data) {
                check(p.body());
            }
        }
    }
});
