//! `pigeon decode` run as a user runs it: hex, raw files, pcap captures, JSON
//! and human output, errors and exit codes.

use std::path::Path;
use std::process::{Command, Output};

use etherparse::PacketBuilder;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::DataLink;
use serde_json::Value;

fn pigeon(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pigeon")).args(args).output().expect("run pigeon")
}

fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8(out.stdout.clone()).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn hex_entry_in_json() {
    // protocol.md V4: our BR_ENTRY with GBK nick and UTF-8 trailer.
    let v4 = b"1:1700000100:alice:alice-laptop:18874369:\xb0\xae\xc0\xf6\xcb\xbf\0\xb2\xe2\xca\xd4\xb2\xbf\0\nUN:alice\nHN:alice-laptop\nNN:\xe7\x88\xb1\xe4\xb8\xbd\xe4\xb8\x9d\nGN:\xe6\xb5\x8b\xe8\xaf\x95\xe9\x83\xa8\0";
    let out = pigeon(&["decode", "--json", "--hex", &hex::encode(v4)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v = &json_lines(&out)[0];
    assert_eq!(v["mode"], "BR_ENTRY");
    assert_eq!(v["options"], serde_json::json!(["FILEATTACHOPT", "CAPUTF8OPT"]));
    assert_eq!(v["packet_no"], "1700000100");
    assert_eq!((v["nick"].as_str(), v["group"].as_str()), (Some("爱丽丝"), Some("测试部")));
    assert_eq!((v["user"].as_str(), v["host"].as_str()), (Some("alice"), Some("alice-laptop")));
    assert_eq!((v["charset"].as_str(), v["client"].as_str()), (Some("gbk"), Some("ipmsg")));
}

/// The issue's capture: a Pigeon broadcast in GBK without UTF8OPT. Its
/// bytes are valid UTF-8 too (`֪ͨ`); decode shows what the receiver shows.
#[test]
fn a_pigeon_broadcast_in_gbk_decodes_as_gbk() {
    let mut b = b"1_pigeon 0.1.0:1700000200:pi:raspberrypi:1056:hello all ".to_vec();
    b.extend_from_slice(b"\xcd\xa8\xd6\xaa\0");
    assert!(std::str::from_utf8(&b).is_ok(), "the dangerous case: valid UTF-8");
    let out = pigeon(&["decode", "--json", "--hex", &hex::encode(&b)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v = &json_lines(&out)[0];
    assert_eq!((v["text"].as_str(), v["charset"].as_str()), (Some("hello all 通知"), Some("gbk")));
    // From iptux in GB18030 mode, guessed: GB18030 when not UTF-8.
    let mut t = b"1_iptux 0.8.3:9:tux:tux-pc:288:".to_vec();
    t.extend_from_slice(b"hello from the iptux GUI, \xa8\xb9n\x810\x8a7c\x810\x8b3d\xa8\xa6 \xc4\xe3\xba\xc3\0");
    let out = pigeon(&["decode", "--json", "--hex", &hex::encode(&t)]);
    let v = &json_lines(&out)[0];
    assert_eq!(
        (v["text"].as_str(), v["charset"].as_str()),
        (Some("hello from the iptux GUI, ünïcødé 你好"), Some("gbk"))
    );
}

#[test]
fn raw_files_feiq_and_attachments() {
    let dir = tempfile::tempdir().unwrap();
    let feiq = dir.path().join("feiq.bin");
    std::fs::write(&feiq, b"1_lbt6_0#128#F8B46AA55B28#0#0#0#4001#9:1780525950:13652:DESKTOP-4331HHF:288:\xc4\xe3\xba\xc3 {/font;-16 0 0 0 400 0 0 0 134 0 0 2 32 \xce\xa2\xc8\xed\xd1\xc5\xba\xda 8404992;}\0").unwrap();
    let files = dir.path().join("files.bin");
    std::fs::write(
        &files,
        b"1_iptux 0.10.0:7:bob:bob-pc:2097184:\x000:bashrc:ffffffffffffffff:0:1:\x07:1:src:0:0:2:\x07:\0",
    )
    .unwrap();
    let out = pigeon(&["decode", "--json", feiq.to_str().unwrap(), files.to_str().unwrap()]);
    assert!(out.status.success());
    let v = json_lines(&out);
    assert_eq!(v[0]["text"], "你好");
    assert_eq!(v[0]["client"], "feiq");
    assert_eq!(v[0]["feiq"]["mac"], "F8B46AA55B28");
    assert_eq!(v[0]["feiq"]["font"], "-16 0 0 0 400 0 0 0 134 0 0 2 32 微软雅黑 8404992");
    assert_eq!(v[1]["client"], "iptux");
    let a = v[1]["attachments"].as_array().unwrap();
    assert_eq!(a.len(), 2);
    assert_eq!(
        (a[0]["name"].as_str(), a[0]["kind"].as_str(), a[0]["id"].as_u64()),
        (Some("bashrc"), Some("file"), Some(0))
    );
    assert_eq!((a[1]["name"].as_str(), a[1]["kind"].as_str()), (Some("src"), Some("dir")));

    // The human form says the same things.
    let human = pigeon(&["decode", feiq.to_str().unwrap()]);
    let text = String::from_utf8(human.stdout).unwrap();
    assert!(text.contains("text: 你好") && text.contains("FeiQ MAC F8B46AA55B28"), "{text}");
}

#[test]
fn request_and_error_exit_code() {
    let req = hex::encode(b"1:1700000105:alice:alice-laptop:8388704:6553f290:75bcd16:0:\0");
    let out = pigeon(&["decode", "--json", "--hex", &req, "--hex", "6869", "--hex", &hex::encode(b"1:2:u:h:96:zz\0")]);
    assert_eq!(out.status.code(), Some(1), "undecodable packets make the exit code 1");
    let v = json_lines(&out);
    assert_eq!(v.len(), 3, "every packet is printed, the bad ones too");
    assert_eq!(
        v[0]["request"],
        serde_json::json!({"packet_no": 1700000400u64, "file_id": 123456790, "offset": 0, "kind": "file"})
    );
    assert!(v[1]["error"].as_str().unwrap().contains("separators"));
    assert!(v[2]["error"].as_str().is_some());
    assert_eq!(v[2]["mode"], "GETFILEDATA");
}

#[test]
fn unreadable_input_is_a_clear_error() {
    let out = pigeon(&["decode", "--hex", "xyz"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not hex"));
    let out = pigeon(&["decode", "/nonexistent/file"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/file"));
    let out = pigeon(&["decode"]);
    assert_eq!(out.status.code(), Some(2));
}

fn udp_frame(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]).ipv4(src, dst, 64).udp(sport, dport);
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    let file = std::fs::File::create(path).unwrap();
    let mut w =
        PcapWriter::with_header(file, PcapHeader { datalink: DataLink::ETHERNET, ..Default::default() }).unwrap();
    for (i, f) in frames.iter().enumerate() {
        let t = std::time::Duration::from_millis(1_700_000_000_000 + i as u64);
        w.write_packet(&PcapPacket::new(t, f.len() as u32, f)).unwrap();
    }
}

#[test]
fn pcap_port_2425_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lan.pcap");
    let tcp = {
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([198, 18, 0, 11], [198, 18, 0, 12], 64)
            .tcp(40000, 2425, 1, 1000);
        let mut out = Vec::new();
        b.write(&mut out, b"1:5:u:h:96:1:2:0:\0").unwrap();
        out
    };
    write_pcap(
        &path,
        &[
            udp_frame(
                [198, 18, 0, 11],
                [255, 255, 255, 255],
                2425,
                2425,
                b"1:1700000000:bob:bob-pc:18874369:Bob\0QA\0",
            ),
            udp_frame([198, 18, 0, 11], [198, 18, 0, 12], 5353, 5353, b"not ours"),
            tcp,
            udp_frame(
                [198, 18, 0, 12],
                [198, 18, 0, 11],
                2425,
                2425,
                b"1_iptux 0.10.0:3:carol:carol-pc:33:1700000000\0",
            ),
        ],
    );
    let out = pigeon(&["decode", "--pcap", path.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v = json_lines(&out);
    assert_eq!(v.len(), 2);
    assert_eq!(v[0]["source"]["src"], "198.18.0.11:2425");
    assert_eq!(v[0]["source"]["dst"], "255.255.255.255:2425");
    assert_eq!(v[0]["source"]["time"], "2023-11-14T22:13:20.000000Z");
    assert_eq!(v[0]["nick"], "Bob");
    assert_eq!(v[1]["mode"], "RECVMSG");
    assert_eq!(v[1]["refers_to"], "1700000000");
    assert_eq!(v[1]["client"], "iptux");

    std::fs::write(dir.path().join("junk.pcap"), b"definitely not a capture").unwrap();
    let out = pigeon(&["decode", "--pcap", dir.path().join("junk.pcap").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("neither a pcap nor a pcapng"));
}

/// Splits a UDP datagram into IPv4 fragments of at most 1480 payload bytes.
fn fragmented_udp(src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<Vec<u8>> {
    use etherparse::{EtherType, Ethernet2Header, IpFragOffset, IpNumber, Ipv4Header};
    let mut ip = Vec::new();
    PacketBuilder::ipv4(src, dst, 64).udp(2425, 2425).write(&mut ip, payload).unwrap();
    let udp = &ip[20..];
    udp.chunks(1480)
        .enumerate()
        .map(|(i, chunk)| {
            let mut h = Ipv4Header::new(chunk.len() as u16, 64, IpNumber::UDP, src, dst).unwrap();
            h.identification = 4242;
            h.more_fragments = (i + 1) * 1480 < udp.len();
            h.fragment_offset = IpFragOffset::try_new((i * 1480 / 8) as u16).unwrap();
            let mut frame = Vec::new();
            Ethernet2Header {
                source: [2, 0, 0, 0, 0, 1],
                destination: [2, 0, 0, 0, 0, 2],
                ether_type: EtherType::IPV4,
            }
            .write(&mut frame)
            .unwrap();
            h.write(&mut frame).unwrap();
            frame.extend_from_slice(chunk);
            frame
        })
        .collect()
}

#[test]
fn pcap_reassembles_fragmented_datagrams() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.pcap");
    let text = "长消息".repeat(1000); // 9000 bytes of UTF-8, as IPMsg may send
    let mut datagram = b"1:1700000102:alice:alice-laptop:25166112:".to_vec();
    datagram.extend_from_slice(text.as_bytes());
    datagram.push(0);
    let frames = fragmented_udp([198, 18, 0, 11], [198, 18, 0, 12], &datagram);
    assert!(frames.len() >= 7);
    write_pcap(&path, &frames);
    let out = pigeon(&["decode", "--pcap", path.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v = json_lines(&out);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0]["text"].as_str(), Some(text.as_str()));
    assert_eq!(v[0]["length"].as_u64(), Some(datagram.len() as u64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("made 1 datagrams"));
}

/// Packets whose every field holds escape sequences and right-to-left
/// overrides: the text output shows them harmless (U+FFFD, or escaped in
/// quoted fields), the JSON output keeps what was sent.
#[test]
fn hostile_text_is_made_safe_for_the_terminal() {
    let sealed = [
        &b"1:41:mal\x1b[31m:pc\xe2\x80\xaegpj:10486560:hi \x1b]0;pwned\x07 there\xe2\x80\xaetxt.exe\n"[..],
        b"second \x1b[2J line\0",
        b"1:evil\xe2\x80\xaetxt.exe:5:0:1:\x07\0",
    ]
    .concat();
    let entry = b"1:42:mal:pc:8388609:Mallory\x1b[31m\xe2\x80\xaex\0team\x1b[1m\0";
    let version = b"1_evil\x1b[31m\xe2\x80\xae:43:u:h:8388640:plain\0";
    let receipt = b"1:44:u:h:33:12\x1b[31m\xe2\x80\xae\0";
    let hex: Vec<String> = [&sealed[..], entry, version, receipt].iter().map(hex::encode).collect();
    let mut args = vec!["decode"];
    for h in &hex {
        args.extend(["--hex", h]);
    }
    let out = pigeon(&args);
    let text = String::from_utf8_lossy(&out.stdout);
    for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let s = String::from_utf8_lossy(bytes);
        assert!(
            !bytes.contains(&0x1b) && !bytes.contains(&0x07) && !s.contains('\u{202e}'),
            "a raw escape or override on {stream}: {s:?}"
        );
    }
    assert_eq!(text.matches("── hex #").count(), 4, "every packet is shown: {text:?}");
    assert!(text.contains("text: hi \u{fffd}]0;pwned\u{fffd} there\u{fffd}txt.exe"), "{text:?}");
    assert!(text.contains("second \u{fffd}[2J line"), "{text:?}");
    assert!(text.contains("from mal\u{fffd}[31m@pc\u{fffd}gpj"), "{text:?}");
    // Quoted fields are escaped the Rust way.
    assert!(text.contains(r#""evil\u{202e}txt.exe""#), "{text:?}");
    assert!(text.contains(r#"nick "Mallory\u{1b}[31m\u{202e}x""#), "{text:?}");
    assert!(text.contains("(1_evil\u{fffd}[31m\u{fffd})"), "{text:?}");

    // JSON keeps the bytes as they were (serde escapes the controls).
    let mut args = vec!["decode", "--json"];
    for h in &hex {
        args.extend(["--hex", h]);
    }
    let v = json_lines(&pigeon(&args));
    assert_eq!(v[0]["text"], "hi \x1b]0;pwned\x07 there\u{202e}txt.exe\nsecond \x1b[2J line");
    assert_eq!((v[0]["user"].as_str(), v[0]["host"].as_str()), (Some("mal\x1b[31m"), Some("pc\u{202e}gpj")));
    assert_eq!(v[0]["attachments"][0]["name"], "evil\u{202e}txt.exe");
    assert_eq!(v[1]["nick"], "Mallory\x1b[31m\u{202e}x");
    assert_eq!(v[2]["version"], "1_evil\x1b[31m\u{202e}");
}

/// `pigeon decode … | head -c1`: a reader that goes away ends the command
/// quietly (SIGPIPE's status or success), never with a panic.
#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let hex = hex::encode(b"1:2:u:h:32:hi\0");
    let mut args = vec!["decode".to_string(), "--json".to_string()];
    for _ in 0..2000 {
        args.push("--hex".into());
        args.push(hex.clone());
    }
    for _ in 0..5 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pigeon"))
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        let mut one = [0u8; 1];
        std::io::Read::read_exact(&mut out, &mut one).unwrap();
        drop(out);
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success() || o.status.signal() == Some(libc::SIGPIPE), "{:?}: {err}", o.status);
        assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{err}");
    }
}
