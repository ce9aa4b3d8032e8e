//! File transfer benchmarks (a bench binary: `cargo bench --bench transfer`).
//!
//! On loopback, each beside its baseline in the same run, median of 5
//! rounds that alternate which goes first, received into tmpfs:
//! - a 1 GiB file: Pigeon's file server + `fetch` vs a raw TCP copy of the
//!   same bytes (sendfile into a socket, read into a file);
//! - a folder of 10,000 files of 4 KiB: Pigeon vs `tar c | socket | tar x`;
//! - the 1 GiB file asked with an encrypted, signed request (§7.7), its
//!   body plain and then AES-256-CTR (`encrypt_file_bodies`).
//!
//! Everything binds 127.0.0.51/52; nothing leaves the machine.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pigeon::store::{OfferRecord, PeerRef, Store};
use pigeon::transfer::fetch::{self, Item, Source};
use pigeon_protocol::pubkey::{Capa, KeyPair};
use pigeon_protocol::Charset;

const SERVER: &str = "127.0.0.51";
const CLIENT: &str = "127.0.0.52";
const PORT: u16 = 44425;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A raw copy: the server sendfile()s the file, the client reads into a file.
fn raw_copy(src: &Path, dst: &Path) -> f64 {
    let listener = TcpListener::bind((SERVER, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let src = src.to_path_buf();
    let server = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        let mut f = std::fs::File::open(&src).unwrap();
        let len = f.metadata().unwrap().len();
        pigeon::net::files::send_range(&s, &mut f, 0, len).unwrap();
    });
    let t = Instant::now();
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&format!("{CLIENT}:0").parse::<SocketAddr>().unwrap().into()).unwrap();
    sock.connect(&format!("{SERVER}:{port}").parse::<SocketAddr>().unwrap().into()).unwrap();
    let mut s: TcpStream = sock.into();
    let mut out = std::fs::File::create(dst).unwrap();
    let mut buf = vec![0u8; 1024 * 1024]; // the same as fetch
    loop {
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    server.join().unwrap();
    secs
}

fn tar_copy(parent: &Path, name: &str, dst: &Path) -> f64 {
    use std::process::{Command, Stdio};
    let listener = TcpListener::bind((SERVER, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let parent = parent.to_path_buf();
    let name = name.to_string();
    let t = Instant::now();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(&parent)
            .args(["-cf", "-", &name])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::copy(tar.stdout.as_mut().unwrap(), &mut s).unwrap();
        tar.wait().unwrap();
    });
    let mut s = TcpStream::connect((SERVER, port)).unwrap();
    let mut tar = Command::new("tar").arg("-C").arg(dst).args(["-xf", "-"]).stdin(Stdio::piped()).spawn().unwrap();
    std::io::copy(&mut s, tar.stdin.as_mut().unwrap()).unwrap();
    drop(tar.stdin.take());
    tar.wait().unwrap();
    let secs = t.elapsed().as_secs_f64();
    server.join().unwrap();
    secs
}

fn main() {
    if std::env::args().any(|a| a == "--test") || !std::env::args().any(|a| a == "--bench") {
        println!("transfer benchmarks: run with `cargo bench --bench transfer`");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.bin");
    let size: u64 = 1 << 30;
    common::random_file(&big, size as usize, 7);
    let folder = dir.path().join("folder");
    for i in 0..10_000 {
        let sub = folder.join(format!("d{}", i / 500));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join(format!("f{i}.bin")), vec![(i % 251) as u8; 4096]).unwrap();
    }

    // Pigeon's file server with two offers for 127.0.0.52, user "bench".
    let db = dir.path().join("pigeon.db");
    let mut store = Store::open(&db).unwrap();
    let now = chrono::Utc::now();
    let offer = |id: u64, path: &Path, name: &str, dir: bool, size: u64| OfferRecord {
        packet_no: 42,
        file_id: id,
        peer: PeerRef { user: "bench".into(), host: "b".into(), nick: String::new(), addr: format!("{CLIENT}:{PORT}") },
        path: path.to_path_buf(),
        name: name.into(),
        dir,
        size,
        mtime: 0,
        created: now,
        expires: now + chrono::Duration::hours(1),
        released: false,
    };
    // Keys: the server's, and the fetcher's (pinned at the server).
    let server_keys = std::sync::Arc::new(pigeon::engine::OurKeys {
        rsa2048: KeyPair::generate(2048).unwrap(),
        rsa1024: KeyPair::generate(1024).unwrap(),
    });
    let client_key = std::sync::Arc::new(KeyPair::generate(2048).unwrap());
    let pinned = client_key.peer_key(Capa::PIGEON);
    store
        .transaction(|tx| {
            tx.insert_offer(&offer(1, &big, "big.bin", false, size))?;
            tx.insert_offer(&offer(2, &folder, "folder", true, 10_000 * 4096))?;
            tx.save_peer_key("bench", "b", Capa::PIGEON.0, &pinned.exponent_be(), &pinned.modulus_be(), now)
        })
        .unwrap();
    let listener = pigeon::net::files::bind_tcp(format!("{SERVER}:{PORT}").parse().unwrap()).unwrap();
    pigeon::net::files::spawn_with(listener, db.clone(), Charset::Utf8, None, Some(server_keys.clone()));
    let src = Source {
        addr: format!("{SERVER}:{PORT}").parse().unwrap(),
        bind: Some(CLIENT.parse().unwrap()),
        packet_no: 42,
        utf8: true,
        pigeon: true,
        client: pigeon_protocol::ClientKind::Pigeon,
        sender: "bench@b".into(),
        names: Charset::Utf8,
        version: "1_pigeon bench".into(),
        user: "bench".into(),
        host: "b".into(),
        sealed: None,
    };
    // Received into tmpfs where there is one: the data path is measured, not
    // the disk (both sides write to the same place).
    let sink = if Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { dir.path().to_path_buf() };
    // Without the SHA-256 check: what a fetch from IP Messenger gets.
    let plain = Source { pigeon: false, ..src.clone() };
    let fetch_from = |src: &Source, item: &Item| {
        let into = tempfile::tempdir_in(&sink).unwrap();
        let t = Instant::now();
        fetch::fetch(src, item, into.path(), &mut |_| {}).unwrap();
        t.elapsed().as_secs_f64()
    };
    let pigeon_fetch = |item: &Item| fetch_from(&src, item);

    let file_item = Item { id: 1, name: "big.bin".into(), size, mtime: 0, dir: false };
    let (mut p, mut q, mut r) = (Vec::new(), Vec::new(), Vec::new());
    // Five rounds, alternating which goes first.
    for round in 0..5 {
        let raw = || {
            let into = tempfile::tempdir_in(&sink).unwrap();
            raw_copy(&big, &into.path().join("big.bin"))
        };
        if round % 2 == 0 {
            p.push(pigeon_fetch(&file_item));
            q.push(fetch_from(&plain, &file_item));
            r.push(raw());
        } else {
            r.push(raw());
            q.push(fetch_from(&plain, &file_item));
            p.push(pigeon_fetch(&file_item));
        }
    }
    let (p, q, r) = (median(p), median(q), median(r));
    let gib = size as f64 / (1u64 << 30) as f64;
    println!(
        "1 GiB file: Pigeon {:.3} s ({:.0} MiB/s), raw TCP copy {:.3} s ({:.0} MiB/s): Pigeon at {:.0}% of raw",
        p,
        gib * 1024.0 / p,
        r,
        gib * 1024.0 / r,
        100.0 * r / p
    );
    println!(
        "1 GiB file without the SHA-256 check (as from IP Messenger): {:.3} s ({:.0} MiB/s): {:.0}% of raw",
        q,
        gib * 1024.0 / q,
        100.0 * r / q
    );
    // What one side's SHA-256 costs, on one core.
    let data = std::fs::read(&big).unwrap();
    let t = Instant::now();
    let d = <sha2::Sha256 as sha2::Digest>::digest(&data);
    std::hint::black_box(d);
    let h = t.elapsed().as_secs_f64();
    println!("SHA-256 of 1 GiB on one core: {h:.3} s ({:.0} MiB/s)", gib * 1024.0 / h);

    // Encrypted requests: the body plain (the default), then AES-256-CTR.
    let sealed = |encrypt_body| Source {
        sealed: Some(fetch::Sealed {
            ours: client_key.clone(),
            theirs: server_keys.rsa2048.peer_key(Capa::PIGEON),
            encrypt_body,
        }),
        ..src.clone()
    };
    let (sealed_plain, sealed_aes) = (sealed(false), sealed(true));
    let (mut e, mut a) = (Vec::new(), Vec::new());
    for round in 0..5 {
        if round % 2 == 0 {
            e.push(fetch_from(&sealed_plain, &file_item));
            a.push(fetch_from(&sealed_aes, &file_item));
        } else {
            a.push(fetch_from(&sealed_aes, &file_item));
            e.push(fetch_from(&sealed_plain, &file_item));
        }
    }
    let (e, a) = (median(e), median(a));
    println!(
        "1 GiB file, encrypted request, plain body (SHA-256 checked): {e:.3} s ({:.0} MiB/s); \
         AES-256-CTR body: {a:.3} s ({:.0} MiB/s)",
        gib * 1024.0 / e,
        gib * 1024.0 / a
    );

    let dir_item = Item { id: 2, name: "folder".into(), size: 10_000 * 4096, mtime: 0, dir: true };
    let (mut p, mut t) = (Vec::new(), Vec::new());
    for round in 0..5 {
        let tar = || {
            let into = tempfile::tempdir_in(&sink).unwrap();
            tar_copy(dir.path(), "folder", into.path())
        };
        if round % 2 == 0 {
            p.push(pigeon_fetch(&dir_item));
            t.push(tar());
        } else {
            t.push(tar());
            p.push(pigeon_fetch(&dir_item));
        }
    }
    let (p, t) = (median(p), median(t));
    println!(
        "10,000 files of 4 KiB: Pigeon {:.3} s ({:.0} files/s), tar | socket | tar {:.3} s ({:.0} files/s): Pigeon at {:.0}% of tar",
        p,
        10_000.0 / p,
        t,
        10_000.0 / t,
        100.0 * t / p
    );
    std::thread::sleep(Duration::from_millis(100));
}
