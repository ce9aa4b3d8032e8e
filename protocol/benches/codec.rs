//! Codec benchmarks (see BENCHMARKS.md at the workspace root).
//!
//! Run: `cargo bench -p pigeon-protocol --bench codec -- --warm-up-time 1 --measurement-time 3`
//!
//! Per-packet benchmarks report elements (packets) per second; the directory
//! stream reports bytes per second. The "full decode" of a GBK SENDMSG
//! (`Packet::decode` + `MessageBody::decode`) has a goal of 1,000,000 per
//! second on one core.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pigeon_protocol::entry::Utf8Trailer;
use pigeon_protocol::{
    Attachment, Charset, Command, DirEvent, DirHeader, DirStreamDecoder, Entry, FileAttr, Header, MessageBody, Packet,
};

const FEIQ_VERSION: &[u8] = b"1_lbt6_0#128#F8B46AA55B28#0#0#0#4001#9";
const FONT: &str = "-16 0 0 0 400 0 0 0 134 0 0 2 32 微软雅黑 8404992";

/// A FeiQ SENDMSG|SENDCHECKOPT (288) with GBK text and FeiQ's font tag,
/// about 200 bytes like a typical one-line chat message.
fn feiq_sendmsg() -> Vec<u8> {
    let text = "你好，今天下午三点在三楼会议室开会，记得带上周报和项目计划。";
    let mut body = Charset::Gbk.encode(text).into_owned();
    body.extend_from_slice(&Charset::Gbk.encode(&format!(" {{/font;{FONT};}}")));
    let mut p = FEIQ_VERSION.to_vec();
    p.extend_from_slice(b":1780525950:13652:DESKTOP-4331HHF:288:");
    p.extend_from_slice(&body);
    p.push(0);
    p
}

/// The same kind of message from IP Messenger (version `1`, no font tag,
/// legacy charset GBK), padded to about 200 bytes.
fn ipmsg_sendmsg() -> Vec<u8> {
    let text = "你好，今天下午三点在三楼会议室开会，记得带上周报和项目计划。如果有问题请提前告诉我，谢谢大家的配合。\r\n会议大约一个小时，请大家准时参加，不要迟到。下次会议时间另行通知。";
    let mut p = b"1:1700000102:taro:PC-TARO:288:".to_vec();
    p.extend_from_slice(&Charset::Gbk.encode(text));
    p.push(0);
    p
}

/// V1 of protocol.md §11: IPMsg 4.99's BR_ENTRY with the UTF-8 trailer.
const V1_BR_ENTRY: &[u8] = b"1:1700000001:taro-<b61b29bc7516778f>:PC-TARO:258211841:Taro\0Dev\0\nUN:taro-<b61b29bc7516778f>\nHN:PC-TARO\nNN:Taro\nGN:Dev\nVS:00010002:4:99:103";

/// V4 of protocol.md §11: our BR_ENTRY (GBK legacy part, UTF-8 trailer).
const V4_BR_ENTRY: &[u8] = b"1:1700000100:alice:alice-laptop:18874369:\xb0\xae\xc0\xf6\xcb\xbf\0\xb2\xe2\xca\xd4\xb2\xbf\0\nUN:alice\nHN:alice-laptop\nNN:\xe7\x88\xb1\xe4\xb8\xbd\xe4\xb8\x9d\nGN:\xe6\xb5\x8b\xe8\xaf\x95\xe9\x83\xa8\0";

fn bench_message(c: &mut Criterion) {
    let mut g = c.benchmark_group("message");
    g.throughput(Throughput::Elements(1));

    let feiq = feiq_sendmsg();
    let ipmsg = ipmsg_sendmsg();
    let (m, cs) = MessageBody::decode(&Packet::decode(&feiq).unwrap(), Charset::Gbk, None).unwrap();
    assert_eq!((cs, m.font.as_deref()), (Charset::Gbk, Some(FONT)));
    let (m2, cs2) = MessageBody::decode(&Packet::decode(&ipmsg).unwrap(), Charset::Gbk, None).unwrap();
    assert_eq!(cs2, Charset::Gbk);
    assert!(m2.text.contains('\n') && !m2.text.contains('\r'));

    g.bench_function(format!("full_decode_gbk_feiq_{}B", feiq.len()), |b| {
        b.iter(|| {
            let p = Packet::decode(black_box(&feiq)).unwrap();
            MessageBody::decode(&p, Charset::Gbk, None).unwrap()
        })
    });
    g.bench_function(format!("full_decode_gbk_ipmsg_{}B", ipmsg.len()), |b| {
        b.iter(|| {
            let p = Packet::decode(black_box(&ipmsg)).unwrap();
            MessageBody::decode(&p, Charset::Gbk, None).unwrap()
        })
    });
    g.bench_function(format!("header_decode_feiq_{}B", feiq.len()), |b| {
        b.iter(|| Packet::decode(black_box(&feiq)).unwrap())
    });

    let header = Header {
        version: FEIQ_VERSION,
        packet_no: 1780525950,
        user: b"13652",
        host: b"DESKTOP-4331HHF",
        command: Command(288),
    };
    let mut out = Vec::with_capacity(512);
    m.encode(&header, Charset::Gbk, &mut out).unwrap();
    assert_eq!(out, feiq);
    g.bench_function("encode_gbk_feiq", |b| {
        b.iter(|| {
            out.clear();
            black_box(&m).encode(&header, Charset::Gbk, &mut out).unwrap();
            black_box(out.len())
        })
    });
    g.finish();
}

fn bench_entry(c: &mut Criterion) {
    let mut g = c.benchmark_group("entry");
    g.throughput(Throughput::Elements(1));

    let (e, _) = Entry::decode(&Packet::decode(V1_BR_ENTRY).unwrap(), Charset::Gbk, None);
    assert_eq!(e.trailer.as_ref().and_then(|t| t.version.as_deref()), Some("00010002:4:99:103"));
    g.bench_function("decode_ipmsg_br_entry_v1", |b| {
        b.iter(|| {
            let p = Packet::decode(black_box(V1_BR_ENTRY)).unwrap();
            Entry::decode(&p, Charset::Gbk, None)
        })
    });

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
    let header = Header {
        version: b"1",
        packet_no: 1700000100,
        user: b"alice",
        host: b"alice-laptop",
        command: Command(18874369),
    };
    let mut out = Vec::with_capacity(256);
    ours.encode(&header, Charset::Gbk, &mut out).unwrap();
    assert_eq!(out, V4_BR_ENTRY);
    g.bench_function("encode_our_br_entry_v4", |b| {
        b.iter(|| {
            out.clear();
            black_box(&ours).encode(&header, Charset::Gbk, &mut out).unwrap();
            black_box(out.len())
        })
    });
    g.finish();
}

fn bench_attachments(c: &mut Criterion) {
    let mut g = c.benchmark_group("attachment_list");
    g.throughput(Throughput::Elements(1));
    let list: Vec<Attachment> = (0..10u64)
        .map(|i| Attachment {
            id: 123456789 + i,
            name: if i % 2 == 0 { format!("report-{i:02}.pdf") } else { format!("周报-{i:02}.docx") },
            size: 100_000 + i * 4096,
            mtime: 0x65a1b2c3 + i,
            attr: FileAttr::FILE,
            ext: Vec::new(),
        })
        .collect();
    let mut bytes = Vec::new();
    Attachment::encode_list(&list, Charset::Gbk, &mut bytes).unwrap();
    assert_eq!(Attachment::decode_list(&bytes, Charset::Gbk).unwrap(), list);
    g.bench_function(format!("decode_10_entries_{}B", bytes.len()), |b| {
        b.iter(|| Attachment::decode_list(black_box(&bytes), Charset::Gbk).unwrap())
    });
    g.finish();
}

fn bench_dir_stream(c: &mut Criterion) {
    let mut g = c.benchmark_group("dir_stream");
    let mut stream = Vec::new();
    DirHeader::dir("proj", 0x65a1b2c3).encode(Charset::Gbk, &mut stream).unwrap();
    let data: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
    for i in 0..100 {
        DirHeader::file(&format!("file-{i:03}.bin"), 4096, 0x65a1b000 + i).encode(Charset::Gbk, &mut stream).unwrap();
        stream.extend_from_slice(&data);
    }
    DirHeader::parent(0x65a1b2c3).encode(Charset::Gbk, &mut stream).unwrap();

    // Decodes the whole stream from one buffer; returns the data bytes seen.
    let decode_all = |input: &[u8]| {
        let mut dec = DirStreamDecoder::new(Charset::Gbk);
        let mut pos = 0;
        let mut data = 0;
        while let (n, Some(ev)) = dec.decode(&input[pos..]).unwrap() {
            pos += n;
            if let DirEvent::Data(d) = ev {
                data += d.len();
            }
        }
        assert!(dec.is_done());
        data
    };
    assert_eq!(decode_all(&stream), 100 * 4096);

    g.throughput(Throughput::Bytes(stream.len() as u64));
    g.bench_function(format!("decode_100x4KiB_{}B", stream.len()), |b| b.iter(|| decode_all(black_box(&stream))));
    g.finish();
}

criterion_group!(benches, bench_message, bench_entry, bench_attachments, bench_dir_stream);
criterion_main!(benches);
