//! The test vectors of protocol.md §11 (V1–V25): every packet decoded to the
//! right fields and, where it is a packet we write, our encoder producing it
//! byte for byte (with the vector's names and numbers). The purely
//! cryptographic vectors (V18's symmetric part, V19, V23's ciphertext, V24)
//! are checked in `crypto.rs`'s unit tests; their framing is checked here.

use pigeon_protocol::attachment::FileAttr;
use pigeon_protocol::feiq::{self, FragmentAck, ImageFragment};
use pigeon_protocol::hostlist::{self, HostEntry, HostList};
use pigeon_protocol::reply::{self, EncryptedBody, PublicKey};
use pigeon_protocol::request::RequestKind;
use pigeon_protocol::*;

const TARO: &[u8] = b"taro-<b61b29bc7516778f>";

fn header(packet_no: u64, command: u32) -> Header<'static> {
    Header { version: b"1", packet_no, user: b"alice", host: b"alice-laptop", command: Command(command) }
}

fn entry_of(bytes: &[u8]) -> (Packet<'_>, Entry, Charset) {
    let p = Packet::decode(bytes).unwrap();
    let (e, cs) = Entry::decode(&p, Charset::Gbk, None);
    (p, e, cs)
}

fn send(h: Header<'_>, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_packet(&mut out, &h, body, &[]).unwrap();
    out
}

#[test]
fn v01_ipmsg_startup() {
    let noop = b"1:1700000000:taro-<b61b29bc7516778f>:PC-TARO:258211840:Taro\0Dev\0\nUN:taro-<b61b29bc7516778f>\nHN:PC-TARO\nNN:Taro\nGN:Dev\nVS:00010002:4:99:103";
    let entry = b"1:1700000001:taro-<b61b29bc7516778f>:PC-TARO:258211841:Taro\0Dev\0\nUN:taro-<b61b29bc7516778f>\nHN:PC-TARO\nNN:Taro\nGN:Dev\nVS:00010002:4:99:103";
    for (bytes, mode, no) in [(&noop[..], Mode::NOOPERATION, "1700000000"), (&entry[..], Mode::BR_ENTRY, "1700000001")]
    {
        let (p, e, _) = entry_of(bytes);
        assert_eq!(p.version, b"1");
        assert_eq!(p.packet_no, no.as_bytes());
        assert_eq!(p.user, TARO);
        assert_eq!(p.host, b"PC-TARO");
        assert_eq!(p.mode(), mode);
        assert_eq!(p.opts().0, 0x0F64_0000);
        assert_eq!(ClientKind::from_version(p.version), ClientKind::Ipmsg);
        assert_eq!((e.display_nick(), e.display_group()), ("Taro", "Dev"));
        let t = e.trailer.unwrap();
        assert_eq!(t.user.as_deref(), Some("taro-<b61b29bc7516778f>"));
        assert_eq!(t.host.as_deref(), Some("PC-TARO"));
        assert_eq!(t.version.as_deref(), Some("00010002:4:99:103"));
    }
}

#[test]
fn v02_ipmsg_ansentry_utf8() {
    let (p, e, cs) =
        entry_of(b"1:1700000002:taro-<b61b29bc7516778f>:PC-TARO:266600451:Taro\0Dev\0\nVS:00010002:4:99:103");
    assert_eq!(p.mode(), Mode::ANSENTRY);
    assert!(p.opts().has(Opts::UTF8OPT));
    assert_eq!(cs, Charset::Utf8);
    assert_eq!((e.nick.as_str(), e.group.as_str()), ("Taro", "Dev"));
    assert_eq!(e.trailer.unwrap().version.as_deref(), Some("00010002:4:99:103"));
}

#[test]
fn v03_ipmsg_absence_and_exit() {
    let (p, e, _) = entry_of(b"1:1700000003:taro-<b61b29bc7516778f>:PC-TARO:258212100:Taro[absence]\0Dev\0\nUN:taro-<b61b29bc7516778f>\nHN:PC-TARO\nNN:Taro[absence]\nGN:Dev\nVS:00010002:4:99:103");
    assert_eq!(p.mode(), Mode::BR_ABSENCE);
    assert!(p.opts().has(Opts::ABSENCEOPT));
    assert!(p.command.option_names().contains(&"ABSENCEOPT".to_string()));
    assert_eq!(e.display_nick(), "Taro[absence]");
    let (p, e, _) = entry_of(b"1:1700000004:taro-<b61b29bc7516778f>:PC-TARO:258211842:Taro\0Dev\0\nUN:taro-<b61b29bc7516778f>\nHN:PC-TARO\nNN:Taro\nGN:Dev\nVS:00010002:4:99:103");
    assert_eq!(p.mode(), Mode::BR_EXIT);
    assert!(!p.opts().has(Opts::ABSENCEOPT));
    assert_eq!(e.display_nick(), "Taro");
}

#[test]
fn v04_our_entry_and_ansentry() {
    let want_entry: &[u8] = b"1:1700000100:alice:alice-laptop:18874369:\xb0\xae\xc0\xf6\xcb\xbf\0\xb2\xe2\xca\xd4\xb2\xbf\0\nUN:alice\nHN:alice-laptop\nNN:\xe7\x88\xb1\xe4\xb8\xbd\xe4\xb8\x9d\nGN:\xe6\xb5\x8b\xe8\xaf\x95\xe9\x83\xa8\0";
    let ours = Entry {
        nick: "爱丽丝".into(),
        group: "测试部".into(),
        trailer: Some(Utf8Trailer {
            user: Some("alice".into()),
            host: Some("alice-laptop".into()),
            nick: Some("爱丽丝".into()),
            group: Some("测试部".into()),
            version: None,
            instance: None,
        }),
        iptux: None,
    };
    let mut out = Vec::new();
    ours.encode(&header(1700000100, 0x0120_0001), Charset::Gbk, &mut out).unwrap();
    assert_eq!(out, want_entry);
    let (p, e, cs) = entry_of(want_entry);
    assert_eq!(cs, Charset::Gbk);
    assert_eq!(p.opts().names(Mode::BR_ENTRY.family()), ["FILEATTACHOPT", "CAPUTF8OPT"]);
    assert_eq!(e, ours);

    let want_ans: &[u8] = b"1:1700000101:alice:alice-laptop:27262979:\xe7\x88\xb1\xe4\xb8\xbd\xe4\xb8\x9d\0\xe6\xb5\x8b\xe8\xaf\x95\xe9\x83\xa8\0";
    let ans = Entry { nick: "爱丽丝".into(), group: "测试部".into(), trailer: None, iptux: None };
    out.clear();
    ans.encode(&header(1700000101, 0x01A0_0003), Charset::Utf8, &mut out).unwrap();
    assert_eq!(out, want_ans);
    let (_, e, cs) = entry_of(want_ans);
    assert_eq!((e, cs), (ans, Charset::Utf8));
}

#[test]
fn v05_iptux_entry_both_forms() {
    let (p, e, cs) = entry_of(b"1_iptux 0.10.0:1:bob:bob-pc:257:Bob\0QA\0icon-tux.png\0utf-8\0");
    assert_eq!(ClientKind::from_version(p.version), ClientKind::Iptux);
    assert_eq!(p.mode(), Mode::BR_ENTRY);
    assert!(p.opts().has(Opts::ABSENCEOPT));
    assert_eq!((e.nick.as_str(), e.group.as_str(), cs), ("Bob", "QA", Charset::Utf8));
    assert_eq!(e.iptux, Some(IptuxExtra { icon: "icon-tux.png".into(), charset: "utf-8".into() }));

    let (p, e, _) = entry_of(b"iptux 0.8.0:1:lidaobing:lidaobing.lan:257:lidaobing");
    assert_eq!(ClientKind::from_version(p.version), ClientKind::Iptux);
    assert!(!client::version_accepted_by_ipmsg(p.version));
    assert_eq!((p.user, p.host), (&b"lidaobing"[..], &b"lidaobing.lan"[..]));
    assert_eq!((e.nick.as_str(), e.group.as_str()), ("lidaobing", ""));
}

#[test]
fn v06_feiq_ansentry() {
    let (p, e, cs) =
        entry_of(b"1_lbt6_0#128#F8B46AA55B28#0#0#0#4001#9:1780525944:13652:DESKTOP-4331HHF:6291459:13652\0\0");
    assert_eq!(ClientKind::from_version(p.version), ClientKind::Feiq);
    assert_eq!(FeiqVersion::parse(p.version).unwrap().mac, "F8B46AA55B28");
    assert_eq!(p.mode(), Mode::ANSENTRY);
    assert_eq!(p.command.option_names(), ["FILEATTACHOPT", "ENCRYPTOPT"]);
    assert_eq!((e.nick.as_str(), e.group.as_str(), cs), ("13652", "", Charset::Gbk));
}

#[test]
fn v07_feiq_startup() {
    let p = Packet::decode(b"1_lbt6_0#128#C85B76BD9F3F#0#0#0#4001#9:1655805995:Lee:LEE-PC:0:\0").unwrap();
    assert_eq!((p.mode(), p.body(), p.sections().count()), (Mode::NOOPERATION, &b""[..], 0));
    let (p, e, _) = entry_of(b"1_lbt6_0#128#C85B76BD9F3F#0#0#0#4001#9:1655805996:Lee:LEE-PC:6291457:Lee\0\0");
    assert_eq!(p.command, Command(0x600001));
    assert_eq!(FeiqVersion::parse(p.version).unwrap().mac, "C85B76BD9F3F");
    assert_eq!((e.nick.as_str(), e.group.as_str()), ("Lee", ""));
}

#[test]
fn v08_message_and_ack() {
    let want: &[u8] = b"1:1700000102:alice:alice-laptop:25166112:Hello, \xe4\xb8\x96\xe7\x95\x8c\0";
    let msg = MessageBody { text: "Hello, 世界".into(), ..Default::default() };
    let mut out = Vec::new();
    msg.encode(&header(1700000102, 0x0180_0120), Charset::Utf8, &mut out).unwrap();
    assert_eq!(out, want);
    let p = Packet::decode(want).unwrap();
    assert_eq!(p.command.option_names(), ["SENDCHECKOPT", "UTF8OPT", "CAPUTF8OPT"]);
    assert_eq!(MessageBody::decode(&p, Charset::Gbk, None).unwrap(), (msg.clone(), Charset::Utf8));

    // Retransmissions 3 and 4 carry 64 extra NULs and decode the same.
    let mut padded = want.to_vec();
    padded.extend_from_slice(&[0; 64]);
    let p2 = Packet::decode(&padded).unwrap();
    assert_eq!(MessageBody::decode(&p2, Charset::Gbk, None).unwrap().0, msg);

    let ack = Packet::decode(b"1:1700000010:taro-<b61b29bc7516778f>:PC-TARO:33:1700000102\0").unwrap();
    assert_eq!(ack.mode(), Mode::RECVMSG);
    assert_eq!(PacketRef::decode(ack.body()).unwrap().value, 1700000102);
}

#[test]
fn v09_sealed_round_trip() {
    let p = Packet::decode(b"1:1700000011:taro-<b61b29bc7516778f>:PC-TARO:26215200:Lunch?\0").unwrap();
    assert_eq!(p.command.option_names(), ["SENDCHECKOPT", "SECRETOPT", "READCHECKOPT", "UTF8OPT", "CAPUTF8OPT"]);
    assert_eq!(MessageBody::decode(&p, Charset::Gbk, None).unwrap().0.text, "Lunch?");
    let r = PacketRef::decode(p.packet_no).unwrap();
    assert_eq!(send(header(1700000103, 33), r.encode()), b"1:1700000103:alice:alice-laptop:33:1700000011\0");
    let readmsg = Command::new(Mode::READMSG, Opts::READCHECKOPT).0;
    assert_eq!(send(header(1700000104, readmsg), r.encode()), b"1:1700000104:alice:alice-laptop:1048624:1700000011\0");
    let ans = Packet::decode(b"1:1700000012:taro-<b61b29bc7516778f>:PC-TARO:50:1700000104\0").unwrap();
    assert_eq!((ans.mode(), PacketRef::decode(ans.body()).unwrap().value), (Mode::ANSREADMSG, 1700000104));
}

#[test]
fn v10_attachments() {
    let bytes = b"1:1700000400:taro-<b61b29bc7516778f>:PC-TARO:27263264:see attached\x00123456789:report.pdf:1e240:65a1b2c3:1:\x07123456790:notes.txt:5:65a1b2c4:1:\x07123456791:proj:0:65a1b2c5:2:\x07";
    let p = Packet::decode(bytes).unwrap();
    let (m, _) = MessageBody::decode(&p, Charset::Gbk, None).unwrap();
    assert_eq!(m.text, "see attached");
    let a = &m.attachments;
    assert_eq!(a.len(), 3);
    assert_eq!((a[0].id, a[0].name.as_str(), a[0].size, a[0].mtime), (123456789, "report.pdf", 123456, 0x65a1b2c3));
    assert_eq!((a[1].id, a[1].name.as_str(), a[1].size), (123456790, "notes.txt", 5));
    assert!(a[2].attr.is_dir());
    assert!(a[0].attr.is_file());
    // Our encoder writes the list exactly as IPMsg does.
    let mut list = Vec::new();
    Attachment::encode_list(a, Charset::Utf8, &mut list).unwrap();
    assert_eq!(list, p.section(0).unwrap());

    let iptux =
        Attachment::decode_list(b"0:a::b.txt:5:65a1b2c3:1:\x07:1:notes.txt:5:65a1b2c4:1:\x07:", Charset::Utf8).unwrap();
    assert_eq!(iptux.len(), 2);
    assert_eq!((iptux[0].id, iptux[0].name.as_str(), iptux[0].size), (0, "a:b.txt", 5));
    assert_eq!((iptux[1].id, iptux[1].name.as_str()), (1, "notes.txt"));
    let mut escaped = Vec::new();
    iptux[0].encode(Charset::Utf8, &mut escaped).unwrap();
    assert_eq!(escaped, b"0:a::b.txt:5:65a1b2c3:1:\x07");
}

#[test]
fn v11_getfiledata() {
    let want: &[u8] = b"1:1700000105:alice:alice-laptop:8388704:6553f290:75bcd16:0:\0";
    let mut body = Vec::new();
    FileRequest::new(1700000400, 123456790, Some(0)).encode(RequestKind::File, &mut body);
    assert_eq!(send(header(1700000105, 0x0080_0060), &body), want);
    let p = Packet::decode(want).unwrap();
    assert_eq!(FileRequest::kind_of(&p), Some(RequestKind::File));
    let r = FileRequest::decode(p.body()).unwrap();
    assert_eq!((r.packet_no, r.file_id, r.offset), (1700000400, 123456790, Some(0)));
}

#[test]
fn v12_getdirfiles_both_forms() {
    let ipmsg = Packet::decode(b"1:1700000106:alice:alice-laptop:8388706:6553f290:75bcd17:\0").unwrap();
    let r = FileRequest::decode(ipmsg.body()).unwrap();
    assert_eq!((r.packet_no, r.file_id, r.offset), (1700000400, 123456791, None));
    assert_eq!(FileRequest::kind_of(&ipmsg), Some(RequestKind::Dir));
    let want: &[u8] = b"1:1700000106:alice:alice-laptop:10485858:6553f290:75bcd17:0\0";
    let mut body = Vec::new();
    FileRequest::new(1700000400, 123456791, None).encode(RequestKind::Dir, &mut body);
    assert_eq!(send(header(1700000106, 0x00A0_0062), &body), want);
    let r = FileRequest::decode(Packet::decode(want).unwrap().body()).unwrap();
    assert_eq!((r.file_id, r.offset), (123456791, Some(0)));
}

fn stamp(mtime: u64, ctime: u64) -> Vec<ExtAttr> {
    vec![ExtAttr::hex(0x14, mtime), ExtAttr::hex(0x16, ctime)]
}

#[test]
fn v13_directory_stream() {
    let want: Vec<u8> = [
        &b"002e:proj:000000000:2:14=65a1b2c3:16=65a1b2c0:"[..],
        b"002f:a.txt:000000005:1:14=65a1b000:16=65a1a000:hello",
        b"002d:sub:000000000:2:14=65a1b100:16=65a1b0f0:",
        b"002f:b.bin:000000003:1:14=65a1b101:16=65a1b0f1:\x01\x02\x03",
        b"0023:.:0:3:14=65a1b100:16=65a1b0f0:",
        b"0023:.:0:3:14=65a1b2c3:16=65a1b2c0:",
    ]
    .concat();
    assert_eq!(want.len(), 263);
    let dir = |n: &str, m, c| DirHeader { name: n.into(), size: 0, attr: FileAttr::DIRECTORY, ext: stamp(m, c) };
    let file = |n: &str, s, m, c| DirHeader { name: n.into(), size: s, attr: FileAttr::FILE, ext: stamp(m, c) };
    let up = |m, c| DirHeader { name: ".".into(), size: 0, attr: FileAttr(3), ext: stamp(m, c) };
    let mut out = Vec::new();
    dir("proj", 0x65a1b2c3, 0x65a1b2c0).encode(Charset::Utf8, &mut out).unwrap();
    file("a.txt", 5, 0x65a1b000, 0x65a1a000).encode(Charset::Utf8, &mut out).unwrap();
    out.extend_from_slice(b"hello");
    dir("sub", 0x65a1b100, 0x65a1b0f0).encode(Charset::Utf8, &mut out).unwrap();
    file("b.bin", 3, 0x65a1b101, 0x65a1b0f1).encode(Charset::Utf8, &mut out).unwrap();
    out.extend_from_slice(&[1, 2, 3]);
    up(0x65a1b100, 0x65a1b0f0).encode(Charset::Utf8, &mut out).unwrap();
    up(0x65a1b2c3, 0x65a1b2c0).encode(Charset::Utf8, &mut out).unwrap();
    assert_eq!(out, want);

    let mut dec = DirStreamDecoder::new(Charset::Utf8);
    let mut pos = 0;
    let mut seen = Vec::new();
    while let (n, Some(ev)) = dec.decode(&want[pos..]).unwrap() {
        pos += n;
        seen.push(match ev {
            DirEvent::Dir(h) => format!("dir {} {:x}", h.name, h.mtime().unwrap()),
            DirEvent::File(h) => format!("file {} {}", h.name, h.size),
            DirEvent::Data(d) => format!("data {d:?}"),
            DirEvent::FileEnd => "end".into(),
            DirEvent::Parent(h) => format!("up {:x}", h.mtime().unwrap()),
        });
    }
    assert_eq!(pos, 263);
    assert!(dec.is_done());
    assert_eq!(
        seen,
        [
            "dir proj 65a1b2c3",
            "file a.txt 5",
            "data [104, 101, 108, 108, 111]",
            "end",
            "dir sub 65a1b100",
            "file b.bin 3",
            "data [1, 2, 3]",
            "end",
            "up 65a1b100",
            "up 65a1b2c3"
        ]
    );
}

#[test]
fn v14_releasefiles() {
    let want: &[u8] = b"1:1700000107:alice:alice-laptop:97:1700000400\0";
    assert_eq!(send(header(1700000107, 97), PacketRef::new(1700000400).encode()), want);
    let p = Packet::decode(want).unwrap();
    assert_eq!((p.mode(), PacketRef::decode(p.body()).unwrap().value), (Mode::RELEASEFILES, 1700000400));
}

#[test]
fn v15_info_and_absence_info() {
    assert_eq!(send(header(1700000108, 64), b""), b"1:1700000108:alice:alice-laptop:64:\0");
    assert_eq!(send(header(1700000109, 80), b""), b"1:1700000109:alice:alice-laptop:80:\0");
    let info = Packet::decode(b"1:1700000013:taro-<b61b29bc7516778f>:PC-TARO:65:Win(en)Ver4.99r3(x64)\0").unwrap();
    assert_eq!((info.mode(), info.body()), (Mode::SENDINFO, &b"Win(en)Ver4.99r3(x64)"[..]));
    let abs = Packet::decode(b"1:1700000014:taro-<b61b29bc7516778f>:PC-TARO:81:Not Absence mode\0").unwrap();
    assert_eq!((abs.mode(), abs.body()), (Mode::SENDABSENCEINFO, reply::NOT_ABSENCE_MODE.as_bytes()));
}

#[test]
fn v16_host_list_exchange() {
    let ours_probe = Entry { nick: "Alice".into(), group: "QA".into(), trailer: None, iptux: None };
    let mut out = Vec::new();
    ours_probe.encode(&header(1700000110, 0x0120_0018), Charset::Gbk, &mut out).unwrap();
    assert_eq!(out, b"1:1700000110:alice:alice-laptop:18874392:Alice\0QA\0");
    assert_eq!(Packet::decode(&out).unwrap().mode(), Mode::BR_ISGETLIST2);
    let ok = Packet::decode(b"1:1700000015:taro-<b61b29bc7516778f>:PC-TARO:17:\0").unwrap();
    assert_eq!(ok.mode(), Mode::OKGETLIST);
    assert_eq!(send(header(1700000111, 18), b""), b"1:1700000111:alice:alice-laptop:18:\0");
    assert_eq!(hostlist::decode_getlist(b"").unwrap(), 0);

    let ans = b"1:1700000016:taro-<b61b29bc7516778f>:PC-TARO:8388627:    0\x07    2\x07taro-<b61b29bc7516778f>\x07PC-TARO\x07258211840\x07192.168.1.10\x0730985\x07Taro\x07Dev\x07alice\x07alice-laptop\x0718874368\x07192.168.1.20\x0730985\x07Alice\x07\x08\x07\0";
    let p = Packet::decode(ans).unwrap();
    assert_eq!((p.mode(), p.opts().has(Opts::UTF8OPT)), (Mode::ANSLIST, true));
    let list = HostList::decode(p.body(), Charset::Utf8).unwrap();
    let want = HostList {
        next: 0,
        hosts: vec![
            HostEntry {
                user: "taro-<b61b29bc7516778f>".into(),
                host: "PC-TARO".into(),
                status: 258211840,
                addr: "192.168.1.10".into(),
                port: 2425,
                nick: "Taro".into(),
                group: "Dev".into(),
            },
            HostEntry {
                user: "alice".into(),
                host: "alice-laptop".into(),
                status: 18874368,
                addr: "192.168.1.20".into(),
                port: 2425,
                nick: "Alice".into(),
                group: String::new(),
            },
        ],
    };
    assert_eq!(list, want);
    let mut body = Vec::new();
    want.encode(Charset::Utf8, &mut body).unwrap();
    assert_eq!(body, p.body());
}

/// V24's modulus, which V17's ANSPUBKEY carries.
const V24_MODULUS: &str = "c00a11181f262d343b424950575e656c737a81888f969da4abb2b9c0c7ced5dce3eaf1f8ff060d141b222930373e454c535a61686f767d848b9299a0a7aeb5bcc3cad1d8dfe6edf4fb020910171e252c333a41484f565d646b727980878e959ca3aab1b8bfc6cdd4dbe2e9f0f7fe050c131a21282f363d444b525960676e757c838a91989fa6adb4bbc2c9d0d7dee5ecf3fa01080f161d242b323940474e555c636a71787f868d949ba2a9b0b7bec5ccd3dae1e8eff6fd040b121920272e353c434a51585f666d747b828990979ea5acb3bac1c8cfd6dde4ebf2f900070e151c232a31383f464d545b626970777e858c939aa1a8afb6bdc4cbd2d9e0e7eef5fc";

#[test]
fn v17_key_exchange() {
    let get = Packet::decode(b"1:1700000017:taro-<b61b29bc7516778f>:PC-TARO:114:65920006\0").unwrap();
    assert_eq!((get.mode(), reply::decode_getpubkey(get.body()).unwrap()), (Mode::GETPUBKEY, 0x65920006));
    let full = format!("1:1700000018:taro-<b61b29bc7516778f>:PC-TARO:115:65920006:10001-{V24_MODULUS}\0");
    let p = Packet::decode(full.as_bytes()).unwrap();
    assert_eq!(p.mode(), Mode::ANSPUBKEY);
    let key = PublicKey::decode(p.body()).unwrap();
    assert_eq!(key.capa, 0x65920006);
    assert_eq!(key.exponent, [1, 0, 1]);
    assert_eq!(key.modulus.len(), 256);
    assert_eq!(key.modulus[..3], [0xc0, 0x0a, 0x11]);
    assert_eq!(key.encode().as_bytes(), p.body());
}

#[test]
fn v18_encrypted_message_fields() {
    let k = "A".repeat(340) + "AAA=";
    let s = "B".repeat(340) + "BBB=";
    let bytes =
        format!("1:1700000123:taro-<b61b29bc7516778f>:PC-TARO:30409504:41900004:{k}:nWE3kniuJ6K2mdI1K36f+w==:{s}\0");
    let p = Packet::decode(bytes.as_bytes()).unwrap();
    assert_eq!(
        p.command.option_names(),
        ["SENDCHECKOPT", "SECRETOPT", "READCHECKOPT", "ENCRYPTOPT", "UTF8OPT", "CAPUTF8OPT"]
    );
    let e = EncryptedBody::decode(p.body()).unwrap();
    assert_eq!((e.capa, e.key.len(), e.ciphertext.as_str()), (0x41900004, 344, "nWE3kniuJ6K2mdI1K36f+w=="));
    assert_eq!(e.signature.map(|s| s.len()), Some(344));
    // The packet number text is what the IV is made of.
    assert_eq!(p.packet_no, b"1700000123");
}

#[test]
fn v20_feiq_text_with_font() {
    let p = Packet::decode(b"1_lbt6_0#128#F8B46AA55B28#0#0#0#4001#9:1780525950:13652:DESKTOP-4331HHF:288:\xc4\xe3\xba\xc3 {/font;-16 0 0 0 400 0 0 0 134 0 0 2 32 \xce\xa2\xc8\xed\xd1\xc5\xba\xda 8404992;}\0").unwrap();
    assert_eq!(p.command.option_names(), ["SENDCHECKOPT"]);
    let (m, cs) = MessageBody::decode(&p, Charset::Utf8, None).unwrap();
    assert_eq!(cs, Charset::Gbk);
    assert_eq!(m.text, "你好");
    assert_eq!(m.font.as_deref(), Some("-16 0 0 0 400 0 0 0 134 0 0 2 32 微软雅黑 8404992"));
}

#[test]
fn v21_feiq_shake() {
    let p = Packet::decode(b"1_lbt6_0#128#F8B46AA55B28#0#0#0#4001#9:1780525951:13652:DESKTOP-4331HHF:209:\0").unwrap();
    assert_eq!(p.mode(), Mode::FEIQ_SHAKE);
    assert_eq!(send(header(1700000112, Mode::FEIQ_SHAKE_ACK.0 as u32), b""), b"1:1700000112:alice:alice-laptop:210:\0");
}

#[test]
fn v22_feiq_image() {
    let r = Packet::decode(b"1_lbt6_0#128#F8B46AA55B28#0#0#0#4001#9:1780525952:13652:DESKTOP-4331HHF:288:/~#>64ea4edd<B~{/font;-16 0 0 0 400 0 0 0 134 0 0 2 32 \xce\xa2\xc8\xed\xd1\xc5\xba\xda 8404992;}\0").unwrap();
    let (m, _) = MessageBody::decode(&r, Charset::Gbk, None).unwrap();
    assert_eq!(feiq::image_refs(&m.text), ["64ea4edd"]);

    let mut frag = b"1_lbt6_0#128#F8B46AA55B28#0#0#0#4001#9:1780525953:13652:DESKTOP-4331HHF:2097344:64ea4edd|622241|0|1216|1|512|0|2|0|00000000#\0".to_vec();
    let data: Vec<u8> = (0..512u32).map(|i| (i % 251) as u8).collect();
    frag.extend_from_slice(&data);
    let p = Packet::decode(&frag).unwrap();
    assert_eq!(p.mode(), Mode::FEIQ_IMAGE);
    assert!(p.opts().has(Opts::FILEATTACHOPT));
    let f = ImageFragment::decode(p.payload).unwrap();
    assert_eq!((f.id.as_str(), f.total, f.offset, f.count, f.index), ("64ea4edd", 622241, 0, 1216, 1));
    assert_eq!(f.data, &data[..]);
    let mut again = Vec::new();
    f.encode(&mut again);
    assert_eq!(again, p.payload);

    let ack = FragmentAck { id: f.id.clone(), index: f.index };
    assert_eq!(
        send(header(1700000113, 193), ack.encode().as_bytes()),
        b"1:1700000113:alice:alice-laptop:193:64ea4edd|1#\0"
    );
}

#[test]
fn v23_feiq_group_message_frame() {
    let ct: Vec<u8> = (0..40)
        .map(|i| {
            u8::from_str_radix(
                &"fe5e244929386d8e8a259d3a823aa630b686bc3cceb95852f5565c24eab04e8e8f4df16b5b5f66e2"[i * 2..i * 2 + 2],
                16,
            )
            .unwrap()
        })
        .collect();
    let mut bytes = b"1_lbt4_0#128#001122AABBCC#0#0#40#4000#9:1700000000:alice:alice-pc:4194339:".to_vec();
    bytes.extend_from_slice(&ct);
    let p = Packet::decode(&bytes).unwrap();
    assert_eq!((p.mode(), p.command.option_names()), (Mode::FEIQ_GROUPMSG, vec!["ENCRYPTOPT".to_string()]));
    let v = FeiqVersion::parse(p.version).unwrap();
    assert_eq!((v.mac.as_str(), v.rest[2].as_str()), ("001122AABBCC", "40"));
    // The ciphertext may hold NULs: the raw payload keeps every byte.
    assert_eq!(p.payload, &ct[..]);
}

#[test]
fn v25_iptux_packets() {
    let p = Packet::decode(b"1_iptux 0.10.0:7:bob:bob-pc:2097184:\x000:bashrc:ffffffffffffffff:0:1:\x07:\0").unwrap();
    assert_eq!(p.command.option_names(), ["FILEATTACHOPT"]);
    let (m, _) = MessageBody::decode(&p, Charset::Gbk, None).unwrap();
    assert_eq!(m.text, "");
    assert_eq!(m.attachments.len(), 1);
    let a = &m.attachments[0];
    assert_eq!((a.id, a.name.as_str(), a.size, a.mtime, a.attr), (0, "bashrc", u64::MAX, 0, FileAttr::FILE));

    let ack = Packet::decode(b"1_iptux 0.10.0:8:bob:bob-pc:289:1700000102\0").unwrap();
    assert_eq!((ack.mode(), ack.command.option_names()), (Mode::RECVMSG, vec!["SENDCHECKOPT".to_string()]));
    assert_eq!(PacketRef::decode(ack.body()).unwrap().value, 1700000102);

    let mut pic = b"1_iptux 0.10.0:9:bob:bob-pc:765:\0".to_vec();
    pic.extend_from_slice(b"\x89PNG\r\n\x1a\n\0\0");
    let p = Packet::decode(&pic).unwrap();
    assert_eq!((p.mode(), p.command.option_names()), (Mode::IPTUX_SENDSUBLAYER, vec!["IPTUX_MSGPICOPT".to_string()]));
    assert_eq!(p.after_body(), b"\x89PNG\r\n\x1a\n\0\0");

    let p = Packet::decode(b"1_iptux 0.10.0:10:bob:bob-pc:1073742079:cXdlcnQ=\0").unwrap();
    assert_eq!((p.mode(), p.command.option_names()), (Mode::IPTUX_ASKSHARED, vec!["IPTUX_PASSWDOPT".to_string()]));
    assert_eq!(p.body(), b"cXdlcnQ=");

    let p = Packet::decode(b"1_iptux 0.10.0:11:bob:bob-pc:1019:hello team\0").unwrap();
    assert_eq!((p.mode(), p.command.option_names()), (Mode::IPTUX_SENDMSG, vec!["IPTUX_GROUPOPT".to_string()]));
    assert_eq!(p.body(), b"hello team");
}
