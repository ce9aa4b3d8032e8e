//! `Attachment::decode_list`; a list that decodes and can be written again
//! must decode to the same list. The first byte picks the charset.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pigeon_protocol::Attachment;
use pigeon_protocol_fuzz::{charset, expected_text};

fuzz_target!(|data: &[u8]| {
    let Some((&first, list)) = data.split_first() else {
        return;
    };
    let cs = charset(first);
    let Ok(a) = Attachment::decode_list(list, cs) else {
        return;
    };
    assert!(a.len() <= list.len());
    let mut out = Vec::new();
    if Attachment::encode_list(&a, cs, &mut out).is_err() {
        return;
    }
    let b = Attachment::decode_list(&out, cs).expect("a written list decodes");
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(y.name, expected_text(cs, &x.name), "name");
        assert_eq!((x.id, x.size, x.mtime, x.attr), (y.id, y.size, y.mtime, y.attr));
        assert_eq!(x.ext, y.ext);
    }
});
