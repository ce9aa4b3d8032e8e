//! Messaging benchmarks (a bench binary, run with `cargo bench --bench messaging`):
//!
//! 1. send → receipt latency between two nodes on loopback (p50, p99);
//! 2. acknowledged messages per second, many in flight;
//!    (both again with encryption on: RSA-2048 + AES-256, signed; and the
//!    time to make a node's key pairs);
//! 3. idle daemon RSS (the real binary, after 5 s);
//! 4. with root: time until 30 namespace hosts all list each other after the last start.
//!
//! Nodes bind 127.0.0.x with explicit unicast targets; nothing is broadcast
//! outside the namespaces the benchmark makes.

#[path = "../tests/lan/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use pigeon::engine::{self, Delivery, Event, PeerKey, Request};
use pigeon::net::{self, NodeHandle, NodeOptions};
use pigeon::store::Store;

const PORT: u16 = 43425;

fn node(
    ip: [u8; 4],
    other: [u8; 4],
    user: &str,
    dir: &std::path::Path,
    encrypted: bool,
) -> (NodeHandle, tokio::task::JoinHandle<()>) {
    let mut cfg = engine::Config::new(user, "bench", user);
    if encrypted {
        let t = Instant::now();
        cfg.keys = Some(std::sync::Arc::new(engine::OurKeys {
            rsa2048: pigeon_protocol::pubkey::KeyPair::generate(2048).unwrap(),
            rsa1024: pigeon_protocol::pubkey::KeyPair::generate(1024).unwrap(),
        }));
        println!("key pairs (RSA-2048 + RSA-1024) made in {:?}", t.elapsed());
    }
    cfg.port = PORT;
    cfg.targets = vec![SocketAddr::from((other, PORT))];
    let store = Store::open(&dir.join(format!("{user}.db"))).unwrap();
    net::start(
        NodeOptions {
            engine: cfg,
            bind: IpAddr::from(ip),
            probe: vec![],
            retention: Default::default(),
            pictures: None,
        },
        store,
    )
    .unwrap()
}

/// A node on a thread and runtime of its own, as the receiving daemon is
/// on another machine: its work runs beside the sender's, not between.
/// The thread ends when the node is shut down.
fn node_on_own_thread(
    ip: [u8; 4],
    other: [u8; 4],
    user: &'static str,
    dir: std::path::PathBuf,
    encrypted: bool,
) -> (NodeHandle, std::thread::JoinHandle<()>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let (h, task) = node(ip, other, user, &dir, encrypted);
            tx.send(h).unwrap();
            let _ = task.await;
        })
    });
    (rx.recv().unwrap(), thread)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn latency_and_throughput(encrypted: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (ia, ib) = if encrypted { ([127, 0, 0, 25], [127, 0, 0, 26]) } else { ([127, 0, 0, 21], [127, 0, 0, 22]) };
    let (a, _a_task) = node(ia, ib, "a", dir.path(), encrypted);
    let (b, b_thread) = node_on_own_thread(ib, ia, "b", dir.path().to_path_buf(), encrypted);
    let what = if encrypted { "encrypted" } else { "plain" };
    let (rounds, total) = if encrypted { (500, 3000u64) } else { (2000, 20_000u64) };
    let to = PeerKey::new("b", "bench");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !a.peers().await.unwrap().iter().any(|p| p.key == to) || b.peers().await.unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the nodes did not find each other");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut events = a.events.subscribe();
    // 1. Latency: one message at a time.
    let mut lat = Vec::new();
    for i in 0..rounds {
        let mut rx = events.resubscribe();
        let t = Instant::now();
        let id =
            a.request(Request::Send { to: vec![to.clone()], text: format!("ping {i}"), sealed: false }).await.unwrap()
                [0];
        loop {
            if let Ok(Event::Receipt { id: got, status: Delivery::Delivered, .. }) = rx.recv().await {
                if got == id {
                    break;
                }
            }
        }
        lat.push(t.elapsed());
    }
    lat.sort();
    println!(
        "{what}: send→receipt latency, loopback, {rounds} messages: p50 {:?}  p90 {:?}  p99 {:?}  max {:?}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.9),
        percentile(&lat, 0.99),
        lat.last().unwrap()
    );

    // 2. Throughput: keep up to 200 unacknowledged messages in flight.
    let mut delivered = 0u64;
    let mut sent = 0u64;
    let t = Instant::now();
    let window = 200;
    while delivered < total {
        while sent < total && sent - delivered < window {
            a.request(Request::Send { to: vec![to.clone()], text: format!("bulk {sent}"), sealed: false })
                .await
                .unwrap();
            sent += 1;
        }
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
            Ok(Ok(Event::Receipt { status: Delivery::Delivered, .. })) => delivered += 1,
            Ok(Ok(Event::Receipt { status, .. })) if status != Delivery::Sending => {
                panic!("a message was not delivered: {status:?}")
            }
            Ok(_) => {}
            Err(_) => panic!("stalled at {delivered} of {total}"),
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{what}: acknowledged messages per second: {:.0} ({total} in {secs:.2} s, 200 in flight)",
        total as f64 / secs
    );
    a.shutdown().await;
    b.shutdown().await;
    b_thread.join().unwrap();
}

fn idle_rss() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pigeon"))
        .arg("--home")
        .arg(dir.path())
        .args(["--bind", "127.0.0.23", "--port", &PORT.to_string(), "--broadcast", "127.0.0.24", "daemon"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(5));
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let rss = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap().to_string();
    let hwm = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap().to_string();
    println!("idle daemon after 5 s: {}  ({})", rss.split_whitespace().skip(1).collect::<Vec<_>>().join(" "), hwm);
    let _ = child.kill();
    let _ = child.wait();
}

fn thirty_hosts() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("30 namespace hosts: skipped (needs root)");
        return;
    }
    let lan = harness::Lan::new(30);
    let homes: Vec<tempfile::TempDir> = (0..30).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut procs = Vec::new();
    for (i, h) in lan.hosts().iter().enumerate() {
        let mut c = h.command(env!("CARGO_BIN_EXE_pigeon"));
        c.arg("--home").arg(homes[i].path()).args(["--user", &format!("u{i}"), "daemon"]);
        procs.push(harness::Proc::start(&mut c));
    }
    let last_start = Instant::now();
    for home in &homes {
        let sock = home.path().join("pigeon.sock");
        while std::os::unix::net::UnixStream::connect(&sock).is_err() {
            assert!(last_start.elapsed() < Duration::from_secs(20), "a daemon did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let count = |home: &std::path::Path| -> usize {
        use std::io::{BufRead, Write};
        let Ok(mut s) = std::os::unix::net::UnixStream::connect(home.join("pigeon.sock")) else { return 0 };
        let _ = writeln!(s, "{{\"op\":\"peers\"}}");
        let mut line = String::new();
        let _ = std::io::BufReader::new(s).read_line(&mut line);
        serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|v| v["peers"].as_array().map(Vec::len))
            .unwrap_or(0)
    };
    loop {
        if homes.iter().all(|h| count(h.path()) == 29) {
            break;
        }
        assert!(last_start.elapsed() < Duration::from_secs(30), "30 hosts did not all list each other in 30 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("30 namespace hosts all list each other {:?} after the last start", last_start.elapsed());
    drop(procs);
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs this too: keep that quick.
    if std::env::args().any(|a| a == "--test") || !std::env::args().any(|a| a == "--bench") {
        println!("messaging benchmarks: run with `cargo bench --bench messaging`");
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(latency_and_throughput(false));
    rt.block_on(latency_and_throughput(true));
    if std::env::args().any(|a| a == "--only-messaging") {
        return;
    }
    idle_rss();
    thirty_hosts();
}
