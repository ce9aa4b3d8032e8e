//! `Entry::decode` on a decoded packet, with each legacy charset, and
//! writing the result back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pigeon_protocol::entry::Utf8Trailer;
use pigeon_protocol::{Command, Entry, Header, Packet};
use pigeon_protocol_fuzz::CHARSETS;

fuzz_target!(|data: &[u8]| {
    let Ok(p) = Packet::decode(data) else {
        return;
    };
    for legacy in CHARSETS {
        let (e, cs) = Entry::decode(&p, legacy, None);
        let _ = (e.display_nick(), e.display_group());
        if let Some(t) = &e.trailer {
            // A trailer written back reads the same (values lose '\n' and NUL).
            let again = Utf8Trailer::decode(t.encode().as_bytes());
            let clean = |v: &Option<String>| v.as_ref().map(|s| s.replace(['\n', '\0'], " "));
            assert_eq!(again.nick, clean(&t.nick));
            assert_eq!(again.group, clean(&t.group));
        }
        let h = Header { version: b"1", packet_no: 1, user: b"u", host: b"h", command: Command(1) };
        let mut out = Vec::new();
        if e.encode(&h, cs, &mut out).is_ok() {
            let q = Packet::decode(&out).expect("written entry decodes");
            let _ = Entry::decode(&q, legacy, None);
        }
    }
    let _ = Utf8Trailer::decode(p.payload);
});
