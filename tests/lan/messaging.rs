//! Pigeon daemons on the namespace LAN: discovery by real broadcast, delivery
//! under loss, and no acknowledged message lost to a kill -9.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{enabled, Host, Lan, Proc};

/// A Pigeon daemon inside a namespace host.
pub struct Node {
    pub host: Host,
    pub home: PathBuf,
    pub user: String,
    proc: Option<Proc>,
    _dir: tempfile::TempDir,
}

impl Node {
    pub fn start(host: &Host, user: &str) -> Node {
        let mut n = Node::new(host, user);
        n.spawn();
        n
    }

    /// A node not started yet (to write its `config.toml` first).
    pub fn new(host: &Host, user: &str) -> Node {
        let dir = tempfile::tempdir().unwrap();
        Node { host: host.clone(), home: dir.path().to_path_buf(), user: user.into(), proc: None, _dir: dir }
    }

    pub fn spawn(&mut self) {
        let mut c = self.host.command(env!("CARGO_BIN_EXE_pigeon"));
        c.arg("--home").arg(&self.home).args(["--user", &self.user]);
        // A test that wrote a config.toml names the node there.
        if !self.home.join("config.toml").exists() {
            c.args(["--nick", &self.user]);
        }
        c.arg("daemon");
        self.proc = Some(Proc::start(&mut c));
        let sock = self.home.join("pigeon.sock");
        wait_for(Duration::from_secs(10), || UnixStream::connect(&sock).is_ok(), "the daemon's socket");
    }

    /// The daemon's PID, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    /// Waits up to `limit` for an offer to this node; the newest one's ID.
    pub fn newest_offer(&self, limit: Duration) -> String {
        let mut id = String::new();
        wait_for(
            limit,
            || {
                let out = self.pigeon(&["offers", "--json"]);
                let v: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
                id = v.last().map(|o| o["id"].to_string()).unwrap_or_default();
                !id.is_empty()
            },
            "the offer",
        );
        id
    }

    /// Stops the daemon as a person would (SIGTERM: it leaves with BR_EXIT).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.signal(libc::SIGTERM);
            assert!(p.wait_for(Duration::from_secs(10)), "the daemon did not stop on SIGTERM");
        }
    }

    /// Runs a `pigeon` command against this node's home, inside its host.
    pub fn pigeon(&self, args: &[&str]) -> std::process::Output {
        let mut all = vec![env!("CARGO_BIN_EXE_pigeon"), "--home", self.home.to_str().unwrap()];
        all.extend_from_slice(args);
        self.host.run(&all, Duration::from_secs(30))
    }

    pub fn kill9(&mut self) {
        if let Some(p) = self.proc.take() {
            p.signal(libc::SIGKILL);
            drop(p);
        }
    }

    /// One control request (the socket is a file: reachable from the root namespace).
    pub fn control(&self, req: &Value) -> Value {
        let mut s = UnixStream::connect(self.home.join("pigeon.sock")).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        writeln!(s, "{req}").unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or(Value::Null)
    }

    pub fn peer_count(&self) -> usize {
        self.control(&json!({"op": "peers"}))["peers"].as_array().map_or(0, Vec::len)
    }

    /// History as JSON records (read from the database, no daemon needed).
    pub fn history(&self, search: Option<&str>) -> Vec<Value> {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_pigeon"));
        c.arg("--home").arg(&self.home).args(["history", "--export", "jsonl"]);
        if let Some(s) = search {
            c.args(["--search", s]);
        }
        let out = crate::harness::run_bounded(c, Duration::from_secs(30));
        String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }
}

pub fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn ten_hosts_discover_each_other_by_broadcast() {
    if !enabled("ten_hosts_discover_each_other_by_broadcast") {
        return;
    }
    let lan = Lan::new(10);
    let nodes: Vec<Node> = lan.hosts().iter().enumerate().map(|(i, h)| Node::start(h, &format!("user{i}"))).collect();
    let last_start = Instant::now();
    wait_for(Duration::from_secs(15), || nodes.iter().all(|n| n.peer_count() == 9), "every host to list the other 9");
    eprintln!("10 hosts listed each other {:?} after the last start", last_start.elapsed());
    // The addresses are the hosts' own, learned from real broadcasts.
    let peers = nodes[0].control(&json!({"op": "peers"}));
    for p in peers["peers"].as_array().unwrap() {
        assert!(p["addr"].as_str().unwrap().starts_with("198.18.0."), "{p}");
    }
}

#[test]
fn hundred_messages_under_thirty_percent_loss_arrive_exactly_once() {
    if !enabled("hundred_messages_under_thirty_percent_loss_arrive_exactly_once") {
        return;
    }
    let lan = Lan::new(2);
    let a = Node::start(lan.host(1), "sender");
    let b = Node::start(lan.host(2), "receiver");
    wait_for(Duration::from_secs(10), || a.peer_count() == 1 && b.peer_count() == 1, "discovery");
    // 30% loss each way on the receiver's link.
    lan.host(2).impair(30, 0);
    for i in 0..100 {
        let r = a.control(&json!({"op": "send", "to": ["receiver"], "text": format!("lossy #{i:03}"), "wait": 0}));
        assert_eq!(r["ok"], true, "{r}");
    }
    // Four retransmissions a second apart; a message whose five copies were
    // all lost goes out again with the receiver's next packet, or within a minute.
    wait_for(Duration::from_secs(90), || b.history(Some("lossy")).len() >= 100, "all 100 messages at the receiver");
    std::thread::sleep(Duration::from_secs(6));
    let got = b.history(Some("lossy"));
    let mut texts: Vec<String> = got.iter().map(|m| m["text"].as_str().unwrap().to_string()).collect();
    texts.sort();
    let before = texts.len();
    texts.dedup();
    assert_eq!((before, texts.len()), (100, 100), "every message exactly once");
}

#[test]
fn kill_nine_of_the_receiver_loses_no_acknowledged_message() {
    if !enabled("kill_nine_of_the_receiver_loses_no_acknowledged_message") {
        return;
    }
    let lan = Lan::new(2);
    let a = Node::start(lan.host(1), "sender");
    let mut b = Node::start(lan.host(2), "receiver");
    wait_for(Duration::from_secs(10), || a.peer_count() == 1 && b.peer_count() == 1, "discovery");
    // Keep sending while the receiver is killed and restarted.
    let sender = std::thread::scope(|s| {
        let h = s.spawn(|| {
            for i in 0..60 {
                a.control(&json!({"op": "send", "to": ["receiver"], "text": format!("burst #{i:03}"), "wait": 0}));
                std::thread::sleep(Duration::from_millis(25));
            }
        });
        std::thread::sleep(Duration::from_millis(600));
        b.kill9();
        std::thread::sleep(Duration::from_millis(500));
        b.spawn();
        h.join()
    });
    sender.unwrap();
    // Every message the sender saw acknowledged is in the receiver's history.
    // Those given up while the receiver was away ("queued") go again at its
    // return: at least half must be delivered (all of them, normally).
    wait_for(
        Duration::from_secs(30),
        || {
            let h = a.history(Some("burst"));
            h.iter().all(|m| m["state"] != "sending") && h.iter().filter(|m| m["state"] == "delivered").count() >= 30
        },
        "the sends to settle",
    );
    let delivered: Vec<String> = a
        .history(Some("burst"))
        .iter()
        .filter(|m| m["state"] == "delivered")
        .map(|m| m["text"].as_str().unwrap().to_string())
        .collect();
    let received: Vec<String> =
        b.history(Some("burst")).iter().map(|m| m["text"].as_str().unwrap().to_string()).collect();
    assert!(delivered.len() >= 30, "only {} of 60 delivered", delivered.len());
    for d in &delivered {
        assert!(received.contains(d), "{d:?} was acknowledged but is not in the receiver's history");
    }
    let mut unique = received.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), received.len(), "a message was stored twice");
}

#[test]
fn pigeons_exchange_files_and_folders_on_the_lan() {
    if !enabled("pigeons_exchange_files_and_folders_on_the_lan") {
        return;
    }
    let lan = Lan::new(2);
    let a = Node::start(lan.host(1), "ann");
    let b = Node::start(lan.host(2), "ben");
    wait_for(Duration::from_secs(10), || a.peer_count() == 1 && b.peer_count() == 1, "discovery");
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("数据 1:2.bin");
    std::fs::write(&file, (0..5_000_000u32).map(|i| (i % 253) as u8).collect::<Vec<u8>>()).unwrap();
    let folder = src.path().join("tree");
    std::fs::create_dir_all(folder.join("a/b")).unwrap();
    std::fs::create_dir_all(folder.join("empty")).unwrap();
    for i in 0..1000 {
        std::fs::write(folder.join(format!("a/b/f{i}.txt")), format!("file {i}")).unwrap();
    }
    std::fs::write(folder.join("zero"), "").unwrap();
    for (from, to, to_user) in [(&a, &b, "ben"), (&b, &a, "ann")] {
        let r = from.control(&json!({"op": "send", "to": [to_user], "text": "", "wait": 10,
                                    "files": [file.to_str().unwrap(), folder.to_str().unwrap()]}));
        assert_eq!(r["results"][0]["status"], "delivered", "{r}");
        let dst = tempfile::tempdir().unwrap();
        let offer_id = to.newest_offer(Duration::from_secs(10));
        let out = to.host.run(
            &[
                env!("CARGO_BIN_EXE_pigeon"),
                "--home",
                to.home.to_str().unwrap(),
                "--user",
                &to.user,
                "fetch",
                &offer_id,
                "--to",
                dst.path().to_str().unwrap(),
            ],
            Duration::from_secs(60),
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(std::fs::read(dst.path().join("数据 1:2.bin")).unwrap(), std::fs::read(&file).unwrap());
        for i in 0..1000 {
            assert_eq!(
                std::fs::read_to_string(dst.path().join(format!("tree/a/b/f{i}.txt"))).unwrap(),
                format!("file {i}")
            );
        }
        assert_eq!(std::fs::metadata(dst.path().join("tree/zero")).unwrap().len(), 0);
        assert!(dst.path().join("tree/empty").is_dir());
    }
}

/// Pigeon to Pigeon on a real broadcast LAN: the key exchange happens by
/// itself, both ways, and a capture of everything on port 2425 shows
/// neither text in the clear; each side shows the other's message as
/// encrypted and signed.
#[test]
fn pigeon_to_pigeon_is_encrypted_on_the_wire() {
    if !enabled("pigeon_to_pigeon_is_encrypted_on_the_wire") {
        return;
    }
    let lan = Lan::new(2);
    let a = Node::start(lan.host(1), "ana");
    let b = Node::start(lan.host(2), "ben");
    wait_for(Duration::from_secs(15), || a.peer_count() == 1 && b.peer_count() == 1, "ana and ben to meet");
    let dir = tempfile::tempdir().unwrap();
    let cap = lan.host(1).capture(&dir.path().join("enc.pcap"));
    let (to_ben, to_ana) = ("Quarterly numbers: 机密 up 12%", "Thanks, keep it between us");
    let o = a.pigeon(&["send", "ben", to_ben]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = b.pigeon(&["send", "ana", to_ana]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let pcap = cap.finish();
    let bytes = std::fs::read(&pcap).unwrap();
    for text in [to_ben, to_ana, "Quarterly", "keep it between"] {
        assert!(!bytes.windows(text.len()).any(|w| w == text.as_bytes()), "{text:?} in the clear on the wire");
    }
    assert!(bytes.len() > 2000, "the capture holds the exchange ({} bytes)", bytes.len());
    let got = |n: &Node, text: &str| n.history(None).into_iter().find(|m| m["text"] == text && m["direction"] == "in");
    wait_for(Duration::from_secs(10), || got(&b, to_ben).is_some() && got(&a, to_ana).is_some(), "both messages");
    assert_eq!(got(&b, to_ben).unwrap()["security"], "verified");
    assert_eq!(got(&a, to_ana).unwrap()["security"], "verified");
}
