//! IP Messenger's encryption against the real binary on loopback: a
//! daemon whose 2048-bit key is the test key the vectors were made for,
//! and a raw peer that plays IP Messenger 4.x with the other test key
//! (protocol/tests/crypto). The peer's messages are the vectors
//! themselves, byte for byte; what the daemon sends is read back with the
//! protocol crate's own decryption and the peer's private key.

mod common;

use std::net::UdpSocket;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{wait_for, Daemon, PORT};
use pigeon_protocol::pubkey::{self, KeyPair, PeerKey, Signature};
use pigeon_protocol::{Mode, Opts, Packet};
use serde_json::{json, Value};

const DAEMON: &str = "127.0.0.150";
const PEER: &str = "127.0.0.151";

fn vector(name: &str) -> String {
    let text = include_str!("../protocol/tests/crypto/vectors.txt");
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no vector {name}"))
        .trim()
        .to_string()
}

/// Puts the Pigeon test key in the home as its 2048-bit key (0600, in 0700).
fn with_test_key(home: &Path) {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = home.join("keys");
    std::fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
    let mut f =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(dir.join("rsa2048.pem")).unwrap();
    std::io::Write::write_all(&mut f, include_bytes!("../protocol/tests/crypto/pigeon-test-rsa2048.pem")).unwrap();
}

struct Raw {
    sock: UdpSocket,
    to: std::net::SocketAddr,
}

impl Raw {
    fn send(&self, no: u64, command: u32, body: &str) {
        let pkt = format!("1:{no}:ipmsg:win:{command}:{body}\0");
        self.sock.send_to(pkt.as_bytes(), self.to).unwrap();
    }

    /// The next packet of `mode` from the daemon (others are skipped), within `limit`.
    fn expect(&self, mode: Mode, limit: Duration, mut pred: impl FnMut(&Packet<'_>) -> bool) -> Vec<u8> {
        let deadline = Instant::now() + limit;
        let mut buf = vec![0u8; 65536];
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no {mode:?} from the daemon in {limit:?}; saw {seen:?}");
            self.sock.set_read_timeout(Some(left)).unwrap();
            let Ok((n, _)) = self.sock.recv_from(&mut buf) else { continue };
            if let Ok(p) = Packet::decode(&buf[..n]) {
                if p.mode() == mode && pred(&p) {
                    return buf[..n].to_vec();
                }
                seen.push(String::from_utf8_lossy(&buf[..n.min(80)]).into_owned());
            }
        }
    }
}

#[test]
fn ipmsg_vectors_reach_the_daemon_and_its_answer_decrypts() {
    let d = Daemon::start_prepared(DAEMON, "pigeon", "Pigeon", &[PEER], with_test_key);
    let raw = Raw {
        sock: UdpSocket::bind(format!("{PEER}:{PORT}")).unwrap(),
        to: format!("{DAEMON}:{PORT}").parse().unwrap(),
    };
    let entry = 1 | Opts::ENCRYPTOPT | Opts::ENCEXTMSGOPT | Opts::CAPUTF8OPT | Opts::FILEATTACHOPT;
    raw.send(100, entry, "IPMsg\0");
    wait_for(|| d.peers().iter().any(|p| p["user"] == "ipmsg" && p["encrypts"] == true), "the daemon to list the peer");

    // Key exchange, as IP Messenger 4.x does it: our GETPUBKEY is answered
    // with the daemon's 2048-bit key, and it asks for ours (it will verify).
    raw.send(101, 0x72, &vector("getpubkey_body_ipmsg"));
    let (mut ans, mut asked) = (None, false);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = vec![0u8; 65536];
    while ans.is_none() || !asked {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "key exchange: answer {}, asked back {asked}", ans.is_some());
        raw.sock.set_read_timeout(Some(left)).unwrap();
        let Ok((n, _)) = raw.sock.recv_from(&mut buf) else { continue };
        let Ok(p) = Packet::decode(&buf[..n]) else { continue };
        match p.mode() {
            Mode::ANSPUBKEY => ans = Some(PeerKey::decode_anspubkey(p.payload).unwrap()),
            Mode::GETPUBKEY => asked |= p.opts().has(Opts::AUTORETOPT),
            _ => {}
        }
    }
    let theirs = ans.unwrap();
    assert_eq!(hex(&theirs.modulus_be()), vector("pigeon_modulus_be"));
    raw.send(102, 0x73, &vector("anspubkey_body_peer"));
    wait_for(|| d.peers().iter().any(|p| p["user"] == "ipmsg" && p["key"] == "known"), "the daemon to hold our key");

    // Vector A (AES-256, SHA-256 signature, base64): acknowledged, shown
    // verified, as written.
    let sendmsg = 0x20 | Opts::SENDCHECKOPT | Opts::ENCRYPTOPT | Opts::UTF8OPT;
    raw.send(1_700_000_123, sendmsg, &vector("A_body"));
    raw.expect(Mode::RECVMSG, Duration::from_secs(5), |p| p.payload.starts_with(b"1700000123"));
    wait_for(|| !d.history(&["--search", "line2"]).is_empty(), "vector A in the history");
    let m = &d.history(&["--search", "line2"])[0];
    assert_eq!((m["text"].as_str(), m["security"].as_str()), (Some("Hello, 世界\nline2"), Some("verified")), "{m}");
    let human = String::from_utf8_lossy(&d.cli(&["history", "--search", "line2"]).stdout).into_owned();
    assert!(human.contains("[encrypted, signed]"), "{human}");

    // Vector C: the attachment list inside the ciphertext (ENCEXTMSGOPT).
    raw.send(1_700_000_125, sendmsg | Opts::ENCEXTMSGOPT | Opts::FILEATTACHOPT, &vector("C_body"));
    raw.expect(Mode::RECVMSG, Duration::from_secs(5), |p| p.payload.starts_with(b"1700000125"));
    let offers = || serde_json::from_slice::<Vec<Value>>(&d.cli(&["offers", "--json"]).stdout).unwrap_or_default();
    wait_for(|| !offers().is_empty(), "vector C's offer");
    let offers = offers();
    assert_eq!(offers[0]["attachments"][0]["name"], "notes.txt", "{offers:?}");

    // The same body under another packet number cannot decrypt (the IV is
    // the packet number): no acknowledgement, and IP Messenger's DecryptErr.
    raw.send(1_700_000_999, sendmsg, &vector("A_body"));
    let err = raw.expect(Mode::SENDMSG, Duration::from_secs(5), |p| p.opts().has(Opts::AUTORETOPT));
    assert!(Packet::decode(&err).unwrap().payload.starts_with(b"DecryptErr"));
    let mut buf = [0u8; 2048];
    raw.sock.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    while let Ok((n, _)) = raw.sock.recv_from(&mut buf) {
        let p = Packet::decode(&buf[..n]).unwrap();
        assert!(!(p.mode() == Mode::RECVMSG && p.payload.starts_with(b"1700000999")), "a bad copy was acknowledged");
    }

    // The daemon's message to the peer: encrypted with the peer's key,
    // signed with the daemon's, read with the peer's private key.
    let sender = {
        let home = d.home.path().to_path_buf();
        std::thread::spawn(move || {
            let c =
                common::pigeon(&home, DAEMON, "pigeon", "Pigeon", &[PEER], &["send", "ipmsg", "密 reply", "--json"]);
            let mut c = c;
            c.output().unwrap()
        })
    };
    let msg = raw.expect(Mode::SENDMSG, Duration::from_secs(10), |p| p.opts().has(Opts::ENCRYPTOPT));
    let p = Packet::decode(&msg).unwrap();
    raw.send(200, 0x21, std::str::from_utf8(p.packet_no).unwrap());
    let ours = KeyPair::from_pkcs8_pem(include_str!("../protocol/tests/crypto/peer-test-rsa2048.pem")).unwrap();
    let body = &p.payload[..p.payload.iter().position(|&b| b == 0).unwrap_or(p.payload.len())];
    let opened = pubkey::decrypt(body, p.packet_no, &[&ours], Some(&theirs)).unwrap();
    assert_eq!(opened.signature, Signature::Verified);
    assert_eq!(opened.sections(false).text, "密 reply".as_bytes());
    assert!(!msg.windows(5).any(|w| w == b"reply"), "no plain text on the wire");
    let out = sender.join().unwrap();
    let r: Value = serde_json::from_slice(&out.stdout).unwrap_or(json!(null));
    assert_eq!(r["status"], "delivered", "{r} {}", String::from_utf8_lossy(&out.stderr));

    // A file offered to the peer, fetched as IP Messenger 4.x fetches it:
    // GETDIRFILES with an encrypted request signed by its pinned key (one
    // record and the data come back), a plain body, then AES-256-CTR; a
    // replay of the first request gets nothing.
    let file = d.home.path().join("for ipmsg.bin");
    let content: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(&file, &content).unwrap();
    let sender = {
        let home = d.home.path().to_path_buf();
        let f = file.to_str().unwrap().to_string();
        std::thread::spawn(move || {
            common::pigeon(&home, DAEMON, "pigeon", "Pigeon", &[PEER], &["send", "ipmsg", "a file", "--file", &f])
                .output()
                .unwrap()
        })
    };
    let msg = raw.expect(Mode::SENDMSG, Duration::from_secs(10), |p| p.opts().has(Opts::FILEATTACHOPT));
    let p = Packet::decode(&msg).unwrap();
    let offer_no: u64 = std::str::from_utf8(p.packet_no).unwrap().parse().unwrap();
    raw.send(201, 0x21, std::str::from_utf8(p.packet_no).unwrap());
    assert!(sender.join().unwrap().status.success());
    let body = &p.payload[..p.payload.iter().position(|&b| b == 0).unwrap_or(p.payload.len())];
    let opened = pubkey::decrypt(body, p.packet_no, &[&ours], Some(&theirs)).unwrap();
    let list = opened.sections(true).attachments.expect("the file list inside the ciphertext");
    let att = &pigeon_protocol::Attachment::decode_list(list, pigeon_protocol::Charset::Utf8).unwrap()[0];
    assert_eq!((att.name.as_str(), att.size), ("for ipmsg.bin", content.len() as u64));
    let send_tcp = |req: &[u8]| -> Vec<u8> {
        use std::io::{Read, Write};
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(&format!("{PEER}:0").parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
        let to: std::net::SocketAddr = format!("{DAEMON}:{PORT}").parse().unwrap();
        s.connect_timeout(&to.into(), Duration::from_secs(5)).unwrap();
        let mut s: std::net::TcpStream = s.into();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(req).unwrap();
        let mut got = Vec::new();
        // The server waits for the receiver to close once all is sent: the
        // record's header follows the data's size closely.
        let mut buf = [0u8; 65536];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            if got.len() >= content.len() {
                s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
            }
        }
        got
    };
    let fetch_raw = |no: u64, body: pubkey::FileBody| -> (Vec<u8>, Vec<u8>) {
        let r = pubkey::EncFileRequest {
            kind: pigeon_protocol::RequestKind::Dir,
            packet_no: offer_no,
            file_id: att.id,
            offset: 0,
            body,
            request_packet_no: no,
            extensions: Vec::new(),
        };
        let choice = theirs.negotiate(pubkey::Capa::IPMSG_4).unwrap();
        let enc = r.encrypt(&choice, &theirs, Some(&ours), no.to_string().as_bytes()).unwrap();
        let req = format!("1:{no}:ipmsg:win:{}:{enc}\0", 0x62 | r.opts()).into_bytes();
        (req.clone(), send_tcp(&req))
    };
    let one_record = |stream: &[u8]| -> Vec<u8> {
        let mut dec = pigeon_protocol::DirStreamDecoder::new(pigeon_protocol::Charset::Utf8);
        let (used, ev) = dec.decode(stream).unwrap();
        let Some(pigeon_protocol::DirEvent::File(h)) = ev else { panic!("not one file record: {ev:?}") };
        assert_eq!((h.name.as_str(), h.size), ("for ipmsg.bin", content.len() as u64));
        stream[used..].to_vec()
    };
    let (first, plain) = fetch_raw(1_700_000_300, pubkey::FileBody::Plain);
    assert_eq!(one_record(&plain), content, "a plain body");
    let key = [0x5a; 32];
    let (_, mut sealed) = fetch_raw(1_700_000_301, pubkey::FileBody::Aes256Ctr(key));
    assert!(!sealed.windows(64).any(|w| content.windows(64).next() == Some(w)), "the body is not in clear");
    pigeon_protocol::crypto::aes256_ctr_apply(&key, b"1700000301", &mut sealed, 0);
    assert_eq!(one_record(&sealed), content, "an AES-256-CTR body");
    assert!(send_tcp(&first).is_empty(), "a replayed request gets nothing");

    // The peer gives another key: flagged (peers, keys, listen's event),
    // still used; trusting it reaches the running daemon.
    raw.send(300, 0x73, &vector("anspubkey_body_pigeon"));
    let ipmsg = |d: &Daemon| d.peers().into_iter().find(|p| p["user"] == "ipmsg").unwrap_or_default();
    wait_for(|| ipmsg(&d)["key"] == "changed", "the key change to show");
    let human = String::from_utf8_lossy(&d.cli(&["peers"]).stdout).into_owned();
    assert!(human.contains("KEY CHANGED"), "{human}");
    wait_for(
        || String::from_utf8_lossy(&d.cli(&["keys"]).stdout).contains("KEY CHANGED"),
        "pigeon keys to show the change",
    );
    let out = d.cli(&["keys", "--trust", "ipmsg@win"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(ipmsg(&d)["key"], "known", "the daemon took the trust at once");
    assert!(!String::from_utf8_lossy(&d.cli(&["keys"]).stdout).contains("KEY CHANGED"));
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
