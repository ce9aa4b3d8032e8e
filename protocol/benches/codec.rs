//! Codec benchmarks (see BENCHMARKS.md at the workspace root).
//!
//! Run: `cargo bench -p pigeon-protocol --bench codec -- --warm-up-time 1 --measurement-time 3`
//!
//! Per-packet benchmarks report elements (packets) per second; the directory
//! stream reports bytes per second. The `pubkey` group times IPMsg
//! encryption: decrypt + verify of vector A (tests/crypto/vectors.txt),
//! encrypt + sign of a 100-byte message, and RSA-2048 key generation. The "full decode" of a GBK SENDMSG
//! (`Packet::decode` + `MessageBody::decode`) has a goal of 1,000,000 per
//! second on one core.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use pigeon_protocol::entry::Utf8Trailer;
use pigeon_protocol::pubkey::{self, Capa, KeyPair, PeerKey, Signature};
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

/// The throw-away test keys and vector A of tests/crypto (copied here so the
/// bench does not depend on the test files): Pigeon's private key, the
/// IPMsg 4.x peer's public key, and a body from that peer to Pigeon.
const PIGEON_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC9Yc4OKLbXbQCJ
4ckv8hehkRMHLgUHQhIAEBbbmA80lQOUiFP1N/4mLGE4RrlbnjBYCX6azhXZ3UPl
bdbxaVOkPoOWiMDk/5DKW5I/39Ezp/9DCEC6DJYbV2nmqU2wX55YKyGkwARCAj3+
P4MyGY5EU7HCpCuBYTZKo69PkUfJpG8wEDa+3/qP6T1sVYhFysBof8jLGXgrEFab
IDMDc5ydYjCkQHPxXwAoRp20RZxAx8icvPEH6G1nHaxwkuMapmgUqMF3jMwFT73z
/lLdW1Xq186gJdgekuSprWrh28spWlvNwmyuk5Usq+UyHpUAW+H8KIJUqza70poE
cZdNHbzTAgMBAAECggEAVsoFtnNuJ5eqkYXJv5FAxyhHAhlS8JqUyTaWYxhyj3Ri
6aT4ZP6+GBxqiXHP7G64VQA05xje5rMCNJh70rKkRDbp8wjE7a05W6NPiLo3k2bA
EqYrk5fFCs6ql6yrD9MiK+HIT0o4KVABvQy6QTF5A1MfucWmsmosiVQuOVapAXzw
qsu5AK3a2tTx0YAgptdtQ+Y55Vl75cYO3oeMGyxYbz6suJAUwpeuK+0BsJyw4R+s
/pm79HaDdiB//LoIPkp9vBZ5OdeZr+Iw1aCfKlIHMcDOt0NntC5fGuDxPT4rraKC
MXtzCYfRNXFRyqAPiKSl+1y0UYQm1Dkb/TkazbZWQQKBgQD44xGMxyPebBs+Uxcv
aec5Uj8N9AKwJUzcZaNLW4oJNtl6ed9Q4nFjDKZ75ewWi1rAZMbLNhYzDeqIc96b
LOSNLVjpC44X59y3VwUib40twKY7CyYv0arypN9KvzK1xrfCEK5dp0QuzaETXeYI
tSjcufpiW0WK/fAgqlj6YUgOEQKBgQDCy2FnZPeGHgtcg6dOau6xWmDdp4yaGnFA
pu84D+W59xGrleyfxV14zOhqhCgJxqxPk5FXj+Umr/iZWP+Wf0jAImERrmMmio2q
Kr5nNgiDm9BvzI4QDdjmDtQgDG+O1Q4rtxBNyd0+mynrp/v6OeCtMRwkhiLTRXZ1
0f9za8hIowKBgQDR1+F8KIr9hXiS28u4ljn2AnpXcVyy10AusyMy7kM78Zr7wLWg
pMulD41u+TRM7cHeZRmXTEr7UMhltAwEGZ25ynokQzHSxhM6IYyatCL8aGm/bm8L
8mOHoasCgqJm0N0uKpJZNCYwr/8XLRw+Sz/gmo2ZUAsaXXCQmg/bSxpNgQKBgD9K
sdVUexB6xppCtKPIHtJFWV/rxsVzfgTRuLxwfeYUnwsvZXjsOdi8S3AAjLnQccBR
ZFIdEQmm95Fr12/g35R+FygVj2XAcxMtXDxQ1CdfAzSwNCCHP0hQ3R+kqsKv+zC9
BHEh+98Rr2dAZ6EAGT5szIYZh0s6MKlLmEK6bJMdAoGAbA2wVtH08psnyGx0dMJ7
dC+cDP0mVeTu+xAJ3n/t9LLpGDrirmminkZFp8PnjAOthM1c12/SeMrrU337dtM4
rfvbAKC4dt9IfybBM9GNqERMF2siq5tlXwtzmDaCpVqdSKx5thAghXYxx5hx9YMe
aV2lhThJMg0QsrDGX71v5mc=
-----END PRIVATE KEY-----\n";
const PEER_PUB_PEM: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAi16GP936LqrGnL7Noqep
CPSezcQe21RBcUlrF/4bUxkM1YBlJlZMRe38s+Bhtig0ZctLqV6rPS8bWMJ4J2f0
P5CTu0Tz0tdg/aHGdwGSBuaN6AFBAm69oQy+hImNI8I/pQrV/4wDqcVADSB2Fpox
hdkok0/F/p8kJGg0uo6ENgIoZf8SjyWLkbSUj0sop2dFoNNroXiHTZKTGjsPhbXb
VwgbGIA6ws9jdkMk55ww1FY4RmwEPwqQ1cUB5WS5+PKVa7kPzFswp7c6SRjPXk5s
rUOyXi5fdOcKD8baMTuB8OX5cAL3bpzVa3rdfzQYUO5dexWNLO2Fra0FRVPGILpX
nwIDAQAB
-----END PUBLIC KEY-----\n";
const A_BODY: &str = "41900004:e+1ZZjKtTLrOhZDtG1CRczLMYzNAw3y5gjTu/7Y/U2dCzf74N8cVGelZcrscPAuwlmLUBeW6CgdaTHd+fBqO2RYpLIXHa61DSL3AEmJy5gFLoizH4v5gzbd4GCUiWkG27vBsJPqt+S5k1ak78Y724LFmCWI+oBme9VZFkbrK2vXo0PanJpMotfUynkyv4rQcRi+xyV5vtrA6np23jzKS1+fksgx5YoekQPMlY+fOFxq4otHbGIH4qZ8nFLhdXWLMVr/th2XZqmiF/dgKP/OvicKV5+tm9sGjsLC6GZKYEZTnhD6ePC2QMjIxPX80Hxk7gd4kdYy1ecLiKm9ZrdR0+A==:Pqb9tTBs2WF60GPv55Wro0KKd7iZeUjX3KgiP/RLM6g=:DFNUxopI5wtCZbMsddS/8uUvM1WvhkHmHZDg94g1owwmaf/GOgtWhyWms+TUjJlopv/qVxpGlins0LDKox7avxieqRCQaENixJM28RGNbwCsMReKQ++8M6tLyG3sDHT9qUerOYafrpDo2H11KenpvGU5gH15Hqmytz8M7iqLem59gRZqQUBBRwGTNHTQOHAw6xteLo7yKyXd0ZZ1MoJKe2/4JkaXvHmU6kbFVu8xq+SjNQQD+0UqjFPF4sDRkOp8G3oKEQGbhgi8wngcdBn2IAvY4LzHQMGU2eKenarzvrMvjBoUn/i7XtIro6N2M3KhpsKBEcAw9UnVsqOSxNDovw==";

fn bench_pubkey(c: &mut Criterion) {
    let mut g = c.benchmark_group("pubkey");
    g.throughput(Throughput::Elements(1));
    let pigeon = KeyPair::from_pkcs8_pem(PIGEON_PEM).unwrap();
    let peer = PeerKey::from_public_key_pem(PEER_PUB_PEM, Capa::IPMSG_4).unwrap();
    let d = pubkey::decrypt(A_BODY.as_bytes(), b"1700000123", &[&pigeon], Some(&peer)).unwrap();
    assert_eq!((d.plain.as_slice(), d.signature), ("Hello, 世界\nline2\0".as_bytes(), Signature::Verified));
    g.bench_function("decrypt_verify_vector_a", |b| {
        b.iter(|| pubkey::decrypt(black_box(A_BODY.as_bytes()), b"1700000123", &[&pigeon], Some(&peer)).unwrap())
    });
    let plain = [b'x'; 100];
    let choice = peer.negotiate(Capa::PIGEON).unwrap();
    g.bench_function("encrypt_sign_100B", |b| {
        b.iter(|| pubkey::encrypt(&choice, &peer, Some(&pigeon), b"1700000124", black_box(&plain)).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("pubkey_keygen");
    g.sample_size(10).sampling_mode(SamplingMode::Flat).warm_up_time(std::time::Duration::from_millis(1));
    g.bench_function("generate_rsa2048", |b| b.iter(|| KeyPair::generate(2048).unwrap()));
    g.finish();
}

criterion_group!(benches, bench_message, bench_entry, bench_attachments, bench_dir_stream, bench_pubkey);
criterion_main!(benches);
