//! A hostile peer on the LAN: one host floods entries and messages from a
//! hundred addresses with made-up names, and opens idle TCP connections,
//! while two honest Pigeons exchange messages and a file. The honest
//! exchange completes, and the flooded daemon's memory stays bounded (its
//! RSS is printed; BENCHMARKS.md has the numbers).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{random_file, sha256};
use crate::harness::{enabled, Lan};
use crate::messaging::{wait_for, Node};

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_flooding_peer_does_not_stop_honest_ones() {
    if !enabled("a_flooding_peer_does_not_stop_honest_ones") {
        return;
    }
    let lan = Lan::new(3);
    let sources: Vec<Ipv4Addr> = (100..200).map(|i| Ipv4Addr::new(198, 18, 0, i)).collect();
    lan.add_addresses(3, &sources);
    let a = Node::start(lan.host(1), "ann");
    let b = Node::start(lan.host(2), "ben");
    wait_for(Duration::from_secs(10), || a.peer_count() == 1 && b.peer_count() == 1, "discovery");
    let a_pid = a.pid().unwrap();
    let before = rss_kib(a_pid);
    let targets: Vec<SocketAddr> = vec![
        SocketAddr::from((lan.host(1).addr, 2425)),
        SocketAddr::from((lan.host(2).addr, 2425)),
        "198.18.0.255:2425".parse().unwrap(),
    ];
    // The flood: 100 addresses × 3 ports, 40,000 entries and 10,000
    // messages of made-up names, as fast as the sockets go, for at most 60 s.
    let flood = {
        let sources = sources.clone();
        let targets = targets.clone();
        lan.host(3).enter(move || {
            std::thread::spawn(move || {
                let socks: Vec<UdpSocket> = sources
                    .iter()
                    .flat_map(|ip| (0..3).map(move |p| (*ip, 40_000 + p)))
                    .filter_map(|(ip, port)| {
                        let s = UdpSocket::bind((ip, port)).ok()?;
                        s.set_broadcast(true).ok()?;
                        Some(s)
                    })
                    .collect();
                let deadline = Instant::now() + Duration::from_secs(60);
                let mut sent = 0u64;
                for i in 0..50_000u64 {
                    if Instant::now() > deadline {
                        break;
                    }
                    let s = &socks[i as usize % socks.len()];
                    let (mode, body) = if i % 5 == 4 { (288, format!("spam {i}")) } else { (1, format!("n{i}\0g")) };
                    let p = format!("1:{i}:u{i}:h{}:{mode}:{body}\0", i % 7919);
                    for t in &targets {
                        if s.send_to(p.as_bytes(), t).is_ok() {
                            sent += 1;
                        }
                    }
                }
                sent
            })
        })
    };
    // Idle TCP connections from many addresses, held open.
    let idle = {
        let sources = sources.clone();
        let a_addr = lan.host(1).addr;
        lan.host(3).enter(move || {
            let mut held = Vec::new();
            for ip in sources.iter().take(20) {
                for _ in 0..10 {
                    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
                    if s.bind(&SocketAddr::from((*ip, 0)).into()).is_err() {
                        continue;
                    }
                    let to = SocketAddr::from((a_addr, 2425));
                    if s.connect_timeout(&to.into(), Duration::from_secs(2)).is_ok() {
                        held.push(TcpStream::from(s));
                    }
                }
            }
            held
        })
    };
    // Meanwhile the honest ones talk, and send a file.
    for i in 0..20 {
        let r = a.control(&json!({"op": "send", "to": ["ben"], "text": format!("honest #{i}"), "wait": 20}));
        assert_eq!(r["results"][0]["status"], "delivered", "message {i} during the flood: {r}");
    }
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("during-the-flood.bin");
    random_file(&file, 5_000_000, 9);
    let r = a.control(&json!({"op": "send", "to": ["ben"], "text": "", "wait": 20, "files": [file.to_str().unwrap()]}));
    assert_eq!(r["results"][0]["status"], "delivered", "{r}");
    let dst = tempfile::tempdir().unwrap();
    let offer_id = b.newest_offer(Duration::from_secs(20));
    let out = b.pigeon(&["--user", "ben", "fetch", &offer_id, "--to", dst.path().to_str().unwrap()]);
    assert!(out.status.success(), "fetch during the flood: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(sha256(&dst.path().join("during-the-flood.bin")), sha256(&file));
    let sent = flood.join().unwrap();
    let during = rss_kib(a_pid);
    // Idle connections were let go (first byte within 3 s).
    let mut closed = 0;
    for mut s in idle.into_iter().take(20) {
        s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
        let mut b = [0u8; 1];
        if matches!(s.read(&mut b), Ok(0)) || s.write_all(b"x").is_err() {
            closed += 1;
        }
    }
    assert_eq!(closed, 20, "idle connections are closed");
    // Still answering, still listing a bounded table.
    std::thread::sleep(Duration::from_secs(2));
    let peers = a.peer_count();
    let after = rss_kib(a_pid);
    eprintln!(
        "hostile flood: {sent} datagrams sent; ann's RSS {before} KiB before, {during} KiB after the flood, \
         {after} KiB 2 s later; {peers} peers listed"
    );
    assert!(peers <= 8192, "{peers}");
    assert!(after < 256 * 1024, "RSS {after} KiB");
    let t = Instant::now();
    let h = a.history(None);
    eprintln!("history of {} rows in {:?}", h.len(), t.elapsed());
    assert!(h.len() <= 1_000 + 100_000 + 100, "history bounded: {}", h.len());
}
