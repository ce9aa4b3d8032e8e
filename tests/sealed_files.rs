//! Encrypted, signed file requests (protocol.md §7.7) between Pigeon's
//! fetcher and its file server, with a recording relay in between: what the
//! wire carries (the body plain or AES-256-CTR, as asked), that the files
//! arrive whole, IP Messenger's request form (GETDIRFILES for one file),
//! the replay guard, requests from another address (allowed when signed
//! with the pinned key, not otherwise) and a signature by the wrong key.
//! Everything binds 127.0.0.160–164; nothing leaves the machine.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pigeon::engine::OurKeys;
use pigeon::store::{OfferRecord, PeerRef, Store};
use pigeon::transfer::fetch::{self, Item, Sealed, Source};
use pigeon_protocol::pubkey::{Capa, KeyPair};
use pigeon_protocol::{Charset, ClientKind};
use sha2::{Digest, Sha256};

const SERVER: &str = "127.0.0.160";
/// The offers' addressee's address.
const CLIENT: &str = "127.0.0.161";
const RELAY: &str = "127.0.0.162";
/// Another address of the addressee's.
const ELSEWHERE: &str = "127.0.0.163";
const PORT: u16 = 43460;

fn key(pem: &str) -> KeyPair {
    KeyPair::from_pkcs8_pem(pem).unwrap()
}

fn server_keys() -> Arc<OurKeys> {
    Arc::new(OurKeys {
        rsa2048: key(include_str!("../protocol/tests/crypto/pigeon-test-rsa2048.pem")),
        rsa1024: key(include_str!("../protocol/tests/crypto/peer-test-rsa1024.pem")),
    })
}

fn client_key() -> KeyPair {
    key(include_str!("../protocol/tests/crypto/peer-test-rsa2048.pem"))
}

struct Setup {
    _dir: tempfile::TempDir,
    big: Vec<u8>,
    folder: std::path::PathBuf,
    into: std::path::PathBuf,
}

/// A file server at SERVER:PORT with offer 42 (file 1 `big.bin`, folder 2)
/// for bob@b at CLIENT, bob's key pinned as `pinned`.
fn setup(pinned: &KeyPair) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let big_path = dir.path().join("big.bin");
    common::random_file(&big_path, 3 << 20, 11);
    let folder = dir.path().join("folder");
    std::fs::create_dir_all(folder.join("sub")).unwrap();
    std::fs::write(folder.join("a.txt"), "第一个文件\n".repeat(1000)).unwrap();
    common::random_file(&folder.join("sub").join("b.bin"), 300_000, 12);
    let db = dir.path().join("pigeon.db");
    let mut store = Store::open(&db).unwrap();
    let now = chrono::Utc::now();
    let offer = |id: u64, path: &Path, name: &str, dir: bool, size: u64| OfferRecord {
        packet_no: 42,
        file_id: id,
        peer: PeerRef { user: "bob".into(), host: "b".into(), nick: String::new(), addr: format!("{CLIENT}:{PORT}") },
        path: path.to_path_buf(),
        name: name.into(),
        dir,
        size,
        mtime: 1_700_000_000,
        created: now,
        expires: now + chrono::Duration::hours(1),
        released: false,
    };
    let pk = pinned.peer_key(Capa::IPMSG_4);
    store
        .transaction(|tx| {
            tx.insert_offer(&offer(1, &big_path, "big.bin", false, 3 << 20))?;
            tx.insert_offer(&offer(2, &folder, "folder", true, 0))?;
            tx.save_peer_key("bob", "b", Capa::IPMSG_4.0, &pk.exponent_be(), &pk.modulus_be(), now)
        })
        .unwrap();
    drop(store);
    let listener = pigeon::net::files::bind_tcp(format!("{SERVER}:{PORT}").parse().unwrap()).unwrap();
    pigeon::net::files::spawn_with(listener, db, Charset::Utf8, None, Some(server_keys()));
    let into = dir.path().join("into");
    std::fs::create_dir_all(&into).unwrap();
    Setup { big: std::fs::read(&big_path).unwrap(), folder, into, _dir: dir }
}

/// A relay at RELAY:PORT that connects to the server from CLIENT and
/// records both directions. One connection at a time, for `conns` of them.
/// What went up (the request) and down (the answer), per connection.
type Recorded = Arc<Mutex<Vec<(Vec<u8>, Vec<u8>)>>>;

fn relay(conns: usize) -> (Recorded, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind((RELAY, PORT)).unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    let t = std::thread::spawn(move || {
        for _ in 0..conns {
            let (c, _) = l.accept().unwrap();
            let s = connect_from(CLIENT);
            let pipe = |mut from: TcpStream, mut to: TcpStream| {
                std::thread::spawn(move || {
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 65536];
                    while let Ok(n) = from.read(&mut buf) {
                        if n == 0 || to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        seen.extend_from_slice(&buf[..n]);
                    }
                    let _ = to.shutdown(std::net::Shutdown::Write);
                    seen
                })
            };
            let up = pipe(c.try_clone().unwrap(), s.try_clone().unwrap());
            let down = pipe(s, c);
            let (u, d) = (up.join().unwrap(), down.join().unwrap());
            log2.lock().unwrap().push((u, d));
        }
    });
    (log, t)
}

fn connect_from(ip: &str) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::new(ip.parse().unwrap(), 0).into()).unwrap();
    s.connect_timeout(&SocketAddr::new(SERVER.parse().unwrap(), PORT).into(), Duration::from_secs(5)).unwrap();
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

fn source(to: &str, from: Option<&str>, client: ClientKind, signer: Option<KeyPair>, encrypt_body: bool) -> Source {
    let pigeon = client == ClientKind::Pigeon;
    Source {
        addr: SocketAddr::new(to.parse().unwrap(), PORT),
        bind: from.map(|f| f.parse::<IpAddr>().unwrap()),
        packet_no: 42,
        utf8: true,
        names: Charset::Utf8,
        pigeon,
        client,
        sender: "alice@a".into(),
        version: "1_pigeon test".into(),
        user: "bob".into(),
        host: "b".into(),
        sealed: signer.map(|k| Sealed {
            ours: Arc::new(k),
            theirs: server_keys().rsa2048.peer_key(Capa::PIGEON),
            encrypt_body,
        }),
    }
}

fn big_item() -> Item {
    Item { id: 1, name: "big.bin".into(), size: 3 << 20, mtime: 1_700_000_000, dir: false }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// All cases share one server (the port is the IPMsg port's stand-in).
#[test]
fn encrypted_file_requests() {
    let s = setup(&client_key());
    let window = &s.big[1_000_000..1_000_064];
    let sha = |b: &[u8]| Sha256::digest(b).to_vec();

    // 1. Pigeon's form, plain body: the file's bytes are on the wire, the
    //    request is not (no `42` offer number in its clear form).
    let (log, t) = relay(5);
    let into = s.into.join("1");
    std::fs::create_dir_all(&into).unwrap();
    let src = source(RELAY, None, ClientKind::Pigeon, Some(client_key()), false);
    let got = fetch::fetch(&src, &big_item(), &into, &mut |_| {}).unwrap();
    assert_eq!(sha(&std::fs::read(got).unwrap()), sha(&s.big));
    // 2. The same with an AES-256-CTR body: not one 64-byte run of the file on the wire.
    let into = s.into.join("2");
    std::fs::create_dir_all(&into).unwrap();
    let src = source(RELAY, None, ClientKind::Pigeon, Some(client_key()), true);
    let got = fetch::fetch(&src, &big_item(), &into, &mut |_| {}).unwrap();
    assert_eq!(sha(&std::fs::read(got).unwrap()), sha(&s.big));
    // 3. A folder, encrypted body, with Pigeon's SHA-256s inside it.
    let item = Item { id: 2, name: "folder".into(), size: 311_000, mtime: 0, dir: true };
    let got = fetch::fetch(&src, &item, &into, &mut |_| {}).unwrap();
    for rel in ["a.txt", "sub/b.bin"] {
        assert_eq!(std::fs::read(got.join(rel)).unwrap(), std::fs::read(s.folder.join(rel)).unwrap(), "{rel}");
    }
    // 4. IP Messenger's form: GETDIRFILES for one file, one record, encrypted body.
    let into = s.into.join("4");
    std::fs::create_dir_all(&into).unwrap();
    let src = source(RELAY, None, ClientKind::Ipmsg, Some(client_key()), true);
    let got = fetch::fetch(&src, &big_item(), &into, &mut |_| {}).unwrap();
    assert_eq!(sha(&std::fs::read(got).unwrap()), sha(&s.big));
    // 5. A plain request through the relay (from the addressee's address): served.
    let into = s.into.join("5");
    std::fs::create_dir_all(&into).unwrap();
    let src = source(RELAY, None, ClientKind::Pigeon, None, false);
    fetch::fetch(&src, &big_item(), &into, &mut |_| {}).unwrap();
    t.join().unwrap();
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 5);
    let (req1, down1) = &log[0];
    assert!(contains(down1, window), "a plain body carries the file");
    assert!(req1.ends_with(b"\0") && !contains(req1, b":2a:1:"), "the request is encrypted");
    let mode = String::from_utf8_lossy(req1).split(':').nth(4).unwrap().parse::<u32>().unwrap();
    assert_eq!(mode & 0xff, 0x60, "Pigeon's form: GETFILEDATA");
    assert_eq!(mode & 0x0040_0800, 0x0040_0800, "ENCRYPTOPT|ENCFILEOPT");
    assert!(!contains(&log[1].1, window), "an AES-256-CTR body does not carry the file in clear");
    assert!(!contains(&log[2].1, b"a.txt") && !contains(&log[2].1, "第一个文件".as_bytes()), "nor a folder's names");
    let mode = String::from_utf8_lossy(&log[3].0).split(':').nth(4).unwrap().parse::<u32>().unwrap();
    assert_eq!(mode & 0xff, 0x62, "IP Messenger's form: GETDIRFILES");
    assert!(!contains(&log[3].1, window));
    assert!(contains(&log[4].1, window));

    // 6. A replay of request 2, from the addressee's own address: nothing.
    let mut c = connect_from(CLIENT);
    c.write_all(&log[1].0).unwrap();
    let mut back = Vec::new();
    let _ = c.read_to_end(&mut back);
    assert!(back.is_empty(), "a replayed request is refused ({} bytes came)", back.len());

    // 7. From another address: a signed request is served, a plain one is not.
    let into = s.into.join("7");
    std::fs::create_dir_all(&into).unwrap();
    let src = source(SERVER, Some(ELSEWHERE), ClientKind::Pigeon, Some(client_key()), false);
    let got = fetch::fetch(&src, &big_item(), &into, &mut |_| {}).unwrap();
    assert_eq!(sha(&std::fs::read(&got).unwrap()), sha(&s.big));
    std::fs::remove_file(got).unwrap();
    let src = source(SERVER, Some(ELSEWHERE), ClientKind::Pigeon, None, false);
    let e = fetch::fetch(&src, &big_item(), &into, &mut |_| {}).unwrap_err();
    assert!(matches!(e, fetch::FetchError::Short { got: 0, .. }), "{e}");

    // 8. Signed by a key other than bob's pinned one: refused, from
    //    anywhere. With a plain body asked, the fetcher then asks again in
    //    plain (a sender that takes no encrypted requests): served from the
    //    addressee's address only. An encrypted body is never given up.
    let other = server_keys().rsa2048.clone();
    for from in [CLIENT, ELSEWHERE] {
        let src = source(SERVER, Some(from), ClientKind::Pigeon, Some(other.clone()), true);
        let e = fetch::fetch(&src, &big_item(), &into, &mut |_| {}).unwrap_err();
        assert!(matches!(e, fetch::FetchError::Short { got: 0, .. }), "{e}");
    }
    let src = source(SERVER, Some(ELSEWHERE), ClientKind::Pigeon, Some(other.clone()), false);
    let e = fetch::fetch(&src, &big_item(), &into, &mut |_| {}).unwrap_err();
    assert!(matches!(e, fetch::FetchError::Short { got: 0, .. }), "{e}");
    let mut starts = Vec::new();
    let src = source(SERVER, Some(CLIENT), ClientKind::Pigeon, Some(other), false);
    let got = fetch::fetch(&src, &big_item(), &into, &mut |p| {
        if let fetch::Progress::Start { sealed, .. } = p {
            starts.push(sealed);
        }
    })
    .unwrap();
    assert_eq!(sha(&std::fs::read(got).unwrap()), sha(&s.big));
    assert_eq!(starts, [Some(fetch::SealedAs::PlainBody), None], "encrypted, then plain");
}
