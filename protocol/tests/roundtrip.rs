//! Property tests: decode(encode(x)) == x for every type we write, and no
//! decoder panics on arbitrary bytes.

use pigeon_protocol::attachment::FileAttr;
use pigeon_protocol::feiq::{self, FragmentAck, ImageFragment};
use pigeon_protocol::reply::PublicKey;
use pigeon_protocol::request::RequestKind;
use pigeon_protocol::*;
use proptest::prelude::*;

const FEIQ: &[u8] = b"1_lbt6_0#128#F8B46AA55B28#0#0#0#4001#9";

/// Text that survives GBK and UTF-8 alike: ASCII, CJK, Latin accents, emoji.
fn text() -> impl Strategy<Value = String> {
    "[ -~一-龥éüß😀]{0,24}"
}

fn no_nul(s: &str) -> String {
    s.replace('\0', "")
}

fn header_field() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>().prop_filter("no ':' or NUL", |b| *b != b':' && *b != 0), 1..20)
}

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9一-龥 ._:-]{1,30}".prop_filter("a valid component", |n| name::validate_component(n).is_ok())
}

fn ext_attrs() -> impl Strategy<Value = Vec<ExtAttr>> {
    proptest::collection::vec((any::<u32>(), "[0-9a-f,=]{0,10}").prop_map(|(key, value)| ExtAttr { key, value }), 0..3)
}

proptest! {
    #[test]
    fn packet(version in header_field(), no in any::<u64>(), user in header_field(), host in header_field(),
              cmd in any::<u32>(), body in proptest::collection::vec(1u8..=255, 0..50),
              mut sections in proptest::collection::vec(proptest::collection::vec(1u8..=255, 0..10), 0..4)) {
        let h = Header { version: &version, packet_no: no, user: &user, host: &host, command: Command(cmd) };
        let refs: Vec<&[u8]> = sections.iter().map(Vec::as_slice).collect();
        let mut out = Vec::new();
        write_packet(&mut out, &h, &body, &refs).unwrap();
        let p = Packet::decode(&out).unwrap();
        prop_assert_eq!(p.version, &version[..]);
        prop_assert_eq!(p.packet_number(), Some(no));
        prop_assert_eq!((p.user, p.host, p.command), (&user[..], &host[..], Command(cmd)));
        prop_assert_eq!(p.body(), &body[..]);
        while sections.last().is_some_and(Vec::is_empty) { sections.pop(); }
        prop_assert_eq!(p.sections().map(<[u8]>::to_vec).collect::<Vec<_>>(), sections);
        let mut again = Vec::new();
        p.encode(&mut again).unwrap();
        prop_assert_eq!(again, out);
    }

    #[test]
    fn entry(nick in text(), group in text(), kind in 0..3u8, un in "[a-z]{1,8}", nn in proptest::option::of(text()),
             icon in "[a-z.-]{0,10}", cs in "[a-z0-9-]{1,8}", utf8 in any::<bool>()) {
        let (nick, group) = (no_nul(&nick), no_nul(&group));
        let e = Entry {
            nick, group,
            trailer: (kind == 1).then(|| Utf8Trailer { user: Some(un), nick: nn.map(|n| n.replace('\n', " ")), ..Default::default() }),
            iptux: (kind == 2).then_some(IptuxExtra { icon, charset: cs }),
        };
        // FeiQ's version makes the reader take GBK, UTF8OPT makes it take UTF-8.
        let (version, charset, opts) = if utf8 { (&b"1"[..], Charset::Utf8, Opts::UTF8OPT) } else { (FEIQ, Charset::Gbk, 0) };
        let h = Header { version, packet_no: 1, user: b"u", host: b"h", command: Command::new(Mode::BR_ENTRY, opts) };
        let mut out = Vec::new();
        e.encode(&h, charset, &mut out).unwrap();
        let p = Packet::decode(&out).unwrap();
        let (back, cs_read) = Entry::decode(&p, Charset::Cp932, None);
        if e.iptux.is_none() { prop_assert_eq!(cs_read, charset); }
        prop_assert_eq!(back.nick, e.nick);
        prop_assert_eq!(back.group, e.group);
        prop_assert_eq!(back.trailer, e.trailer);
        prop_assert_eq!(back.iptux, e.iptux);
    }

    #[test]
    fn message(t in text(), font in proptest::option::of("[ -z|~]{0,20}"), attachments in proptest::collection::vec(attachment(), 0..4)) {
        let m = MessageBody { text: no_nul(&t).replace('\r', ""), font: font.map(|f| f.replace(";}", "")), attachments };
        let opts = Opts::SENDCHECKOPT | Opts::UTF8OPT | if m.attachments.is_empty() { 0 } else { Opts::FILEATTACHOPT };
        let h = Header { version: b"1", packet_no: 9, user: b"u", host: b"h", command: Command::new(Mode::SENDMSG, opts) };
        let mut out = Vec::new();
        m.encode(&h, Charset::Utf8, &mut out).unwrap();
        let p = Packet::decode(&out).unwrap();
        prop_assert_eq!(MessageBody::decode(&p, Charset::Gbk, None).unwrap().0, m);
    }

    #[test]
    fn attachment_list(list in proptest::collection::vec(attachment(), 1..6), gbk in any::<bool>()) {
        let cs = if gbk { Charset::Gbk } else { Charset::Utf8 };
        let mut out = Vec::new();
        Attachment::encode_list(&list, cs, &mut out).unwrap();
        prop_assert_eq!(Attachment::decode_list(&out, cs).unwrap(), list);
    }

    #[test]
    fn file_request(pkt in any::<u64>(), fid in any::<u64>(), off in any::<u64>(), dir in any::<bool>()) {
        let kind = if dir { RequestKind::Dir } else { RequestKind::File };
        let mut out = Vec::new();
        FileRequest::new(pkt, fid, Some(off)).encode(kind, &mut out);
        let r = FileRequest::decode(&out).unwrap();
        prop_assert_eq!((r.packet_no, r.file_id, r.offset), (pkt, fid, Some(if dir { 0 } else { off })));
    }

    #[test]
    fn dir_header(n in name(), size in any::<u64>(), dir in any::<bool>(), ext in ext_attrs(), gbk in any::<bool>()) {
        let cs = if gbk { Charset::Gbk } else { Charset::Utf8 };
        let h = DirHeader { name: n, size, attr: if dir { FileAttr::DIRECTORY } else { FileAttr::FILE }, ext };
        let mut out = Vec::new();
        h.encode(cs, &mut out).unwrap();
        let (used, ev) = DirStreamDecoder::new(cs).decode(&out).unwrap();
        prop_assert_eq!(used, out.len());
        let back = match ev { Some(DirEvent::Dir(b)) | Some(DirEvent::File(b)) => b, other => panic!("{other:?}") };
        prop_assert_eq!(back, h);
    }

    #[test]
    fn host_list(hosts in proptest::collection::vec(
        ("[a-z]{0,8}", text(), any::<u32>(), "[0-9.]{7,15}", any::<u16>(), text(), text()).prop_map(|(user, host, status, addr, port, nick, group)| HostEntry {
            user, host: no_nul(&host), status, addr, port, nick: no_nul(&nick), group: no_nul(&group)
        }), 0..5), next in 0..99999u32) {
        let list = HostList { next, hosts };
        let mut out = Vec::new();
        list.encode(Charset::Utf8, &mut out).unwrap();
        prop_assert_eq!(HostList::decode(&out, Charset::Utf8).unwrap(), list);
    }

    #[test]
    fn packet_ref(v in any::<u64>()) {
        prop_assert_eq!(PacketRef::decode(PacketRef::new(v).encode()).unwrap(), PacketRef::new(v));
    }

    #[test]
    fn feiq_version(gen in "lbt[0-9]", avatar in "[0-9]{0,3}", flags in "[0-9]{1,5}", mac in "[0-9A-F]{12}", rest in proptest::collection::vec("[0-9]{1,4}", 0..6)) {
        let v = FeiqVersion { generation: gen, avatar, flags, mac, rest };
        prop_assert_eq!(FeiqVersion::parse(v.encode().as_bytes()).unwrap(), v);
    }

    #[test]
    fn image_fragment(id in "[0-9a-f]{8}", total in any::<u64>(), offset in any::<u64>(), count in 1..2000u32, pick in any::<u32>(),
                      rest in proptest::collection::vec("[0-9]{1,8}", 0..4), data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let f = ImageFragment { id, total, offset, count, index: 1 + pick % count, rest, data: &data };
        let mut out = Vec::new();
        f.encode(&mut out);
        prop_assert_eq!(ImageFragment::decode(&out).unwrap(), f.clone());
        let ack = FragmentAck { id: f.id.clone(), index: f.index };
        prop_assert_eq!(FragmentAck::decode(ack.encode().as_bytes()).unwrap(), ack);
    }

    #[test]
    fn public_key(first in 1u8..=255, exp in proptest::collection::vec(any::<u8>(), 0..4), modulus in proptest::collection::vec(any::<u8>(), 1..300), capa in any::<u32>()) {
        let mut exponent = vec![first];
        exponent.extend(exp);
        let k = PublicKey { capa, exponent, modulus };
        prop_assert_eq!(PublicKey::decode(k.encode().as_bytes()).unwrap(), k);
    }

    #[test]
    fn font_split(t in text(), f in "[ -z|~]{0,20}") {
        let f = f.replace(";}", "");
        let joined = format!("{t} {{/font;{f};}}");
        prop_assert_eq!(feiq::split_font(&joined), (t.as_str(), Some(f.as_str())));
    }

    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(p) = Packet::decode(&bytes) {
            let _ = Entry::decode(&p, Charset::Gbk, None);
            let _ = MessageBody::decode(&p, Charset::Gbk, None);
            let _ = p.command.option_names();
        }
        let _ = Attachment::decode_list(&bytes, Charset::Gbk);
        let _ = FileRequest::decode(&bytes);
        let _ = HostList::decode(&bytes, Charset::Utf8);
        let _ = ImageFragment::decode(&bytes);
        let _ = FeiqVersion::parse(&bytes);
        let _ = PublicKey::decode(&bytes);
        let mut d = DirStreamDecoder::new(Charset::Utf8);
        let mut pos = 0;
        while let Ok((n, Some(_))) = d.decode(&bytes[pos..]) { pos += n; }
    }
}

fn attachment() -> impl Strategy<Value = Attachment> {
    (0..u32::MAX as u64, name(), any::<u64>(), any::<u64>(), any::<u32>(), ext_attrs())
        .prop_map(|(id, name, size, mtime, attr, ext)| Attachment { id, name, size, mtime, attr: FileAttr(attr), ext })
}
