//! `HostList::decode` (and `decode_getlist`); a list that decodes and can be
//! written again must decode to the same list. The first byte picks the
//! charset.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pigeon_protocol::hostlist::decode_getlist;
use pigeon_protocol::HostList;
use pigeon_protocol_fuzz::{charset, expected_text};

fuzz_target!(|data: &[u8]| {
    let _ = decode_getlist(data);
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let cs = charset(first);
    let Ok(a) = HostList::decode(body, cs) else {
        return;
    };
    assert!(a.hosts.len() <= body.len());
    let mut out = Vec::new();
    if a.encode(cs, &mut out).is_err() {
        return;
    }
    let b = HostList::decode(&out, cs).expect("a written host list decodes");
    assert_eq!(a.next, b.next);
    assert_eq!(a.hosts.len(), b.hosts.len());
    for (x, y) in a.hosts.iter().zip(&b.hosts) {
        assert_eq!(y.user, expected_text(cs, &x.user), "user");
        assert_eq!(y.host, expected_text(cs, &x.host), "host");
        assert_eq!(y.nick, expected_text(cs, &x.nick), "nick");
        assert_eq!(y.group, expected_text(cs, &x.group), "group");
        assert_eq!((x.status, &x.addr, x.port), (y.status, &y.addr, y.port));
    }
});
