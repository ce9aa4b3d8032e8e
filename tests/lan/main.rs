//! The LAN suite: real broadcast among network-namespace hosts on a private
//! bridge, impaired links, and a real iptux peer. Needs root; runs only
//! with `PIGEON_LAN_TESTS=1` (each test prints that it was skipped
//! otherwise). `.ci/run` sets the variable, so there the suite is required.
//!
//!     sudo PIGEON_LAN_TESTS=1 cargo test --test lan

#[path = "../common/mod.rs"]
mod common;
mod doctor;
mod harness;
mod hostile;
mod identity;
mod iptux;
mod messaging;
mod readme;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use harness::{enabled, harness_namespaces, Host, Lan};

/// A socket on 0.0.0.0:`port` inside `host`, with SO_BROADCAST, as Pigeon binds.
fn bound_socket(host: &Host, port: u16) -> UdpSocket {
    host.enter(move || {
        let s = UdpSocket::bind(("0.0.0.0", port)).expect("bind in namespace");
        s.set_broadcast(true).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        s
    })
}

/// Everything that arrives on `s` within `window`, with its source.
fn collect(s: &UdpSocket, window: Duration) -> Vec<(Vec<u8>, SocketAddr)> {
    let deadline = Instant::now() + window;
    let mut buf = vec![0u8; 65536];
    let mut got = Vec::new();
    while Instant::now() < deadline {
        if let Ok((n, from)) = s.recv_from(&mut buf) {
            got.push((buf[..n].to_vec(), from));
        }
    }
    got
}

#[test]
fn broadcast_reaches_every_host_and_nothing_leaves_the_bridge() {
    if !enabled("broadcast_reaches_every_host_and_nothing_leaves_the_bridge") {
        return;
    }
    let lan = Lan::new(4);
    let dir = tempfile::tempdir().unwrap();
    // Watch the root namespace for anything from the test subnet.
    let root_pcap = dir.path().join("root.pcap");
    let tcpdump = harness::which("tcpdump").expect("tcpdump is not installed");
    let mut root_watch = std::process::Command::new(tcpdump);
    root_watch.args(["-i", "any", "-n", "-U", "-w"]).arg(&root_pcap).arg("net 198.18.0.0/15");
    let mut root_watch = harness::Proc::start(&mut root_watch);
    std::thread::sleep(Duration::from_millis(500));

    let pcap = dir.path().join("h2.pcap");
    let capture = lan.host(2).capture(&pcap);
    let receivers: Vec<UdpSocket> = lan.hosts()[1..].iter().map(|h| bound_socket(h, 2425)).collect();
    let sender = bound_socket(lan.host(1), 2425);
    let token = format!("pigeon-lan-{}", std::process::id());
    for (i, target) in ["255.255.255.255:2425", "198.18.0.255:2425"].iter().enumerate() {
        // A real IPMsg broadcast message, so the capture can be decoded.
        let msg = format!("1:{}:lan:lan-test:1056:{token}-{i}\0", 100 + i);
        sender.send_to(msg.as_bytes(), target).unwrap_or_else(|e| panic!("send to {target}: {e}"));
    }
    for (r, host) in receivers.iter().zip(&lan.hosts()[1..]) {
        let got = collect(r, Duration::from_millis(600));
        for i in 0..2 {
            let want = format!("{token}-{i}");
            assert!(
                got.iter()
                    .any(|(b, from)| b.windows(want.len()).any(|w| w == want.as_bytes())
                        && from.ip() == lan.host(1).addr),
                "{} did not receive broadcast {i}: {got:?}",
                host.ns
            );
        }
    }
    // The capture of host 2 decodes with `pigeon decode --pcap`.
    let pcap = capture.finish();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pigeon"))
        .args(["decode", "--json", "--pcap"])
        .arg(&pcap)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for (i, dst) in ["255.255.255.255:2425", "198.18.0.255:2425"].iter().enumerate() {
        assert!(
            lines.iter().any(|v| v["text"] == format!("{token}-{i}")
                && v["source"]["dst"] == *dst
                && v["options"] == serde_json::json!(["BROADCASTOPT"])),
            "capture lacks broadcast {i}: {lines:?}"
        );
    }
    root_watch.signal(libc::SIGINT);
    root_watch.wait_for(Duration::from_secs(5));
    let cap = pigeon::capture::read_udp(&root_pcap, 2425).expect("read the root capture");
    assert_eq!(
        cap.datagrams.len() + cap.other + cap.fragments + cap.unknown_link,
        0,
        "packets of the test subnet were seen in the root namespace"
    );
}

/// Sends `n` numbered datagrams from `from` to `to` while `to` reads (into
/// an 8 MiB buffer, so none overflows); returns how many arrived once the
/// link has been quiet for 300 ms after the last one.
fn blast(lan: &Lan, from: usize, to: usize, n: usize) -> usize {
    use std::os::fd::AsRawFd;
    use std::sync::atomic::{AtomicBool, Ordering};
    let rx = bound_socket(lan.host(to), 2425);
    let size: libc::c_int = 8 << 20;
    // SAFETY: setsockopt on our own socket with a valid int; as root (the suite is).
    let rc = unsafe {
        libc::setsockopt(
            rx.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUFFORCE: {}", std::io::Error::last_os_error());
    let tx = bound_socket(lan.host(from), 2425);
    let dst = SocketAddr::from((lan.host(to).addr, 2425));
    let sent = AtomicBool::new(false);
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut buf = [0u8; 64];
            let mut got = 0;
            let mut last = Instant::now();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                match rx.recv_from(&mut buf) {
                    Ok(_) => {
                        got += 1;
                        last = Instant::now();
                    }
                    Err(_) if sent.load(Ordering::SeqCst) && last.elapsed() > Duration::from_millis(300) => break,
                    Err(_) => {}
                }
            }
            got
        });
        for i in 0..n {
            tx.send_to(format!("{i}").as_bytes(), dst).unwrap();
            if i % 20 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        sent.store(true, Ordering::SeqCst);
        reader.join().unwrap()
    })
}

#[test]
fn impaired_link_loses_and_duplicates() {
    if !enabled("impaired_link_loses_and_duplicates") {
        return;
    }
    let lan = Lan::new(2);
    assert_eq!(blast(&lan, 1, 2, 1000), 1000, "a clean link loses nothing");
    lan.host(2).impair(30, 0);
    let lossy = blast(&lan, 1, 2, 1000);
    assert!((600..=800).contains(&lossy), "30% loss let {lossy} of 1000 through");

    let lan = Lan::new(2);
    lan.host(1).impair(0, 20);
    let dup = blast(&lan, 1, 2, 1000);
    assert!((1120..=1280).contains(&dup), "20% duplication gave {dup} datagrams for 1000");
}

#[test]
fn teardown_leaves_nothing_even_after_a_panic() {
    if !enabled("teardown_leaves_nothing_even_after_a_panic") {
        return;
    }
    // A normal drop.
    let (names, pid) = {
        let lan = Lan::new(2);
        let mut sleeper = lan.host(1).command("sleep");
        sleeper.arg("600");
        let p = harness::Proc::start(&mut sleeper);
        let pid = p.pid();
        std::mem::forget(p); // only the LAN's teardown may end it
        (lan.namespaces(), pid)
    };
    assert_gone(&names, pid);

    // A panic inside a test.
    let caught = std::panic::catch_unwind(|| {
        let lan = Lan::new(2);
        let mut sleeper = lan.host(2).command("sleep");
        sleeper.arg("600");
        let p = harness::Proc::start(&mut sleeper);
        let pid = p.pid();
        std::mem::forget(p);
        let names = lan.namespaces();
        std::panic::panic_any((names, pid));
    });
    let (names, pid) = *caught.unwrap_err().downcast::<(Vec<String>, u32)>().unwrap();
    assert_gone(&names, pid);

    // Leftovers of a run that was killed: a namespace named after a dead PID.
    let mut t = std::process::Command::new("true");
    let dead = t.spawn().unwrap();
    let dead_pid = dead.id();
    let mut dead = dead;
    dead.wait().unwrap();
    let stale = format!("pgt{dead_pid}x0br");
    let mut add = std::process::Command::new("ip");
    add.args(["netns", "add", &stale]);
    assert!(harness::run_bounded(add, Duration::from_secs(5)).status.success());
    let lan = Lan::new(1);
    assert!(!harness_namespaces().contains(&stale), "a stale namespace survived the next run");
    drop(lan);
}

fn assert_gone(names: &[String], pid: u32) {
    let left = harness_namespaces();
    for n in names {
        assert!(!left.contains(n), "namespace {n} left behind");
    }
    // SAFETY: signal 0 only checks whether the PID exists.
    let alive = unsafe { libc::kill(pid as i32, 0) } == 0 && !is_zombie(pid);
    assert!(!alive, "process {pid} left running");
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
        .unwrap_or(true)
}
