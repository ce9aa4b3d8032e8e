//! FeiQ's binary-ish extensions: `ImageFragment::decode`,
//! `FragmentAck::decode` and `FeiqVersion::parse`, each with a round trip,
//! plus the font-tag and image-reference scanners.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pigeon_protocol::feiq::{image_refs, split_font, FragmentAck, ImageFragment};
use pigeon_protocol::FeiqVersion;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = ImageFragment::decode(data) {
        assert!(f.data.len() <= data.len());
        assert!(f.index >= 1 && f.index <= f.count);
        let mut out = Vec::new();
        f.encode(&mut out);
        let g = ImageFragment::decode(&out).expect("a written fragment decodes");
        assert_eq!(f, g);
    }
    if let Ok(a) = FragmentAck::decode(data) {
        let b = FragmentAck::decode(a.encode().as_bytes()).expect("a written ack decodes");
        assert_eq!(a, b);
    }
    if let Ok(v) = FeiqVersion::parse(data) {
        let w = FeiqVersion::parse(v.encode().as_bytes()).expect("a written version parses");
        assert_eq!(v, w);
    }
    let text = String::from_utf8_lossy(data);
    let (body, font) = split_font(&text);
    assert!(body.len() + font.map_or(0, str::len) <= text.len());
    for r in image_refs(&text) {
        assert!(r.len() <= text.len());
    }
});
