//! Deterministic simulations: several engines on an in-memory network with
//! loss, duplication, reordering and a fake clock (DESIGN.md "Testing
//! layers" 2). Stores are instantaneous: a store operation's datagrams go
//! out at once.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::presence::ANSWER_BATCH;
use super::*;

const BROADCAST: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(10, 0, 255, 255)), 2425);

struct Node {
    engine: Engine,
    addr: SocketAddr,
    events: Vec<Event>,
    /// Killed without a word: receives nothing, sends nothing.
    down: bool,
}

/// A lossy LAN.
struct Net {
    nodes: Vec<Node>,
    /// (deliver at ms, sequence) → (from, to, payload).
    flight: BinaryHeap<Reverse<(u64, u64)>>,
    payloads: HashMap<u64, (SocketAddr, SocketAddr, Vec<u8>)>,
    seq: u64,
    now_ms: u64,
    rng: fastrand::Rng,
    loss: f64,
    dup: f64,
    /// Extra random latency, which reorders.
    jitter_ms: u64,
    /// Every datagram put on the wire: (time, sender index, payload).
    log: Vec<(u64, usize, Vec<u8>)>,
}

impl Net {
    fn new(n: usize, loss: f64, dup: f64, jitter_ms: u64, seed: u64) -> Net {
        let nodes = (0..n)
            .map(|i| {
                let addr = SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250 + 1) as u8], 2425));
                let mut cfg = Config::new(&format!("user{i}"), &format!("host{i}"), &format!("Node {i}"));
                cfg.targets = vec![BROADCAST];
                cfg.seed = seed.wrapping_add(i as u64 * 7919);
                cfg.local = vec![addr.ip()];
                Node { engine: Engine::new(cfg, 0, []), addr, events: Vec::new(), down: false }
            })
            .collect();
        Net {
            nodes,
            flight: BinaryHeap::new(),
            payloads: HashMap::new(),
            seq: 0,
            now_ms: 0,
            rng: fastrand::Rng::with_seed(seed),
            loss,
            dup,
            jitter_ms,
            log: Vec::new(),
        }
    }

    fn now(&self) -> Now {
        Now { mono: Duration::from_millis(self.now_ms), unix_ms: 1_700_000_000_000 + self.now_ms as i64 }
    }

    fn put(&mut self, from: usize, dst: SocketAddr, payload: Vec<u8>) {
        self.log.push((self.now_ms, from, payload.clone()));
        let src = self.nodes[from].addr;
        let targets: Vec<SocketAddr> =
            if dst == BROADCAST { self.nodes.iter().map(|n| n.addr).collect() } else { vec![dst] };
        for to in targets {
            let copies = if self.rng.f64() < self.dup { 2 } else { 1 };
            for _ in 0..copies {
                if self.rng.f64() < self.loss {
                    continue;
                }
                let at = self.now_ms + 1 + self.rng.u64(0..=self.jitter_ms);
                self.seq += 1;
                self.flight.push(Reverse((at, self.seq)));
                self.payloads.insert(self.seq, (src, to, payload.clone()));
            }
        }
    }

    fn drain(&mut self, i: usize) {
        while let Some(o) = self.nodes[i].engine.poll_output() {
            match o {
                Output::Transmit(t) => self.put(i, t.dst, t.payload),
                Output::Event(e) => self.nodes[i].events.push(e),
                Output::Store { then, .. } => {
                    for t in then {
                        self.put(i, t.dst, t.payload);
                    }
                }
                // As the driver does: saved (here: named), then recorded.
                Output::SavePicture(s) => {
                    let path = std::path::PathBuf::from(format!(
                        "/home/pictures/{}.{}",
                        s.packet_no,
                        super::pictures::extension(&s.data)
                    ));
                    let now = self.now();
                    self.nodes[i].engine.picture(now, super::PictureFrom::Feiq(s), &path);
                }
            }
        }
    }

    /// Every node starts (announces itself) at this instant.
    fn start_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.command(i, Request::Start).expect("start");
        }
    }

    fn command(&mut self, i: usize, r: Request) -> Result<Vec<u64>, RequestError> {
        let now = self.now();
        let res = self.nodes[i].engine.command(now, r);
        self.drain(i);
        res
    }

    /// Runs until `until_ms` of simulated time.
    fn run_until(&mut self, until_ms: u64) {
        loop {
            let next_packet = self.flight.peek().map(|Reverse((t, _))| *t);
            let next_timer = self
                .nodes
                .iter()
                .filter(|n| !n.down)
                .filter_map(|n| n.engine.poll_timeout())
                .map(|d| d.as_millis() as u64)
                .min();
            let next = [next_packet, next_timer].into_iter().flatten().min();
            match next {
                Some(t) if t <= until_ms => self.now_ms = self.now_ms.max(t),
                _ => {
                    self.now_ms = until_ms;
                    return;
                }
            }
            while let Some(Reverse((t, seq))) = self.flight.peek().copied() {
                if t > self.now_ms {
                    break;
                }
                self.flight.pop();
                let (src, to, payload) = self.payloads.remove(&seq).unwrap();
                if let Some(i) = self.nodes.iter().position(|n| n.addr == to && !n.down) {
                    let now = self.now();
                    self.nodes[i].engine.handle(now, src, &payload);
                    self.drain(i);
                }
            }
            for i in 0..self.nodes.len() {
                if self.nodes[i].down {
                    continue;
                }
                if self.nodes[i].engine.poll_timeout().is_some_and(|d| d.as_millis() as u64 <= self.now_ms) {
                    let now = self.now();
                    self.nodes[i].engine.handle_timeout(now);
                    self.drain(i);
                }
            }
        }
    }

    fn key(&self, i: usize) -> PeerKey {
        PeerKey::new(format!("user{i}"), format!("host{i}"))
    }

    /// Gives node `i` key pairs (encryption on): the test keys of
    /// protocol/tests/crypto for nodes 0 and 1.
    fn with_keys(&mut self, i: usize) {
        let cfg = {
            let mut c = self.nodes[i].engine.config().clone();
            c.keys = Some(std::sync::Arc::new(test_keys(i)));
            c
        };
        self.nodes[i].engine = Engine::new(cfg, 0, []);
    }
}

/// Fixed key pairs for simulations (the throw-away test keys).
pub(super) fn test_keys(i: usize) -> OurKeys {
    use pigeon_protocol::pubkey::KeyPair;
    let pem2048 = match i {
        0 => include_str!("../../protocol/tests/crypto/pigeon-test-rsa2048.pem"),
        _ => include_str!("../../protocol/tests/crypto/peer-test-rsa2048.pem"),
    };
    OurKeys {
        rsa2048: KeyPair::from_pkcs8_pem(pem2048).unwrap(),
        rsa1024: KeyPair::from_pkcs8_pem(include_str!("../../protocol/tests/crypto/peer-test-rsa1024.pem")).unwrap(),
    }
}

#[test]
fn three_nodes_find_each_other_and_exit() {
    let mut net = Net::new(3, 0.0, 0.0, 0, 1);
    net.start_all();
    net.run_until(7000);
    for i in 0..3 {
        assert_eq!(net.nodes[i].engine.peers().online_count(), 2, "node {i}");
    }
    net.command(0, Request::Quit).unwrap();
    net.run_until(8000);
    for i in 1..3 {
        assert_eq!(net.nodes[i].engine.peers().online_count(), 1);
        assert!(net.nodes[i].events.iter().any(|e| matches!(e, Event::PeerOffline(p) if p.key == net.key(0))));
    }
}

/// 3 nodes, 30% loss, 10% duplication, up to 40 ms of reordering: every
/// message is shown exactly once or its sender was told it is queued or failed.
#[test]
fn lossy_lan_delivers_exactly_once_or_says_so() {
    for seed in 1..=5 {
        let mut net = Net::new(3, 0.30, 0.10, 40, seed);
        net.start_all();
        net.run_until(6000);
        // Loss may have hidden someone; a second round of entries finds them.
        net.start_all();
        net.run_until(12_000);
        let mut sent: Vec<(usize, usize, u64, String)> = Vec::new();
        for round in 0..20 {
            for from in 0..3 {
                for to in 0..3 {
                    if from == to || net.nodes[from].engine.peers().get(&net.key(to)).is_none() {
                        continue;
                    }
                    let text = format!("m{round} {from}->{to} 你好");
                    let ids =
                        net.command(from, Request::Send { to: vec![net.key(to)], text: text.clone(), sealed: false });
                    sent.push((from, to, ids.unwrap()[0], text));
                }
            }
            let t = net.now_ms + 200;
            net.run_until(t);
        }
        let t = net.now_ms + 20_000;
        net.run_until(t);
        assert!(sent.len() > 60, "seed {seed}: only {} messages could be sent", sent.len());
        let mut delivered = 0;
        for (from, to, id, text) in &sent {
            let shown =
                net.nodes[*to].events.iter().filter(|e| matches!(e, Event::Message(m) if &m.text == text)).count();
            assert!(shown <= 1, "seed {seed}: {text:?} shown {shown} times");
            let last = net.nodes[*from]
                .events
                .iter()
                .filter_map(|e| match e {
                    Event::Receipt { id: rid, status, .. } if rid == id => Some(*status),
                    _ => None,
                })
                .next_back();
            match last {
                Some(Delivery::Delivered) => {
                    assert_eq!(shown, 1, "seed {seed}: {text:?} reported delivered but not shown");
                    delivered += 1;
                }
                Some(Delivery::Queued) | Some(Delivery::Failed) => {}
                other => panic!("seed {seed}: {text:?} left in state {other:?}"),
            }
            if shown == 0 {
                assert_ne!(last, Some(Delivery::Delivered));
            }
        }
        assert!(delivered * 100 / sent.len() >= 90, "seed {seed}: only {delivered} of {} delivered", sent.len());
    }
}

/// Queued messages go out when the peer reappears, with their first packet number.
#[test]
fn outbox_is_sent_when_the_peer_returns() {
    let mut net = Net::new(2, 0.0, 0.0, 0, 3);
    net.start_all();
    net.run_until(6000);
    // Node 1 goes silent: drop everything to it.
    net.loss = 1.0;
    let ids = net.command(0, Request::Send { to: vec![net.key(1)], text: "later".into(), sealed: false }).unwrap();
    net.run_until(12_000);
    let status = |net: &Net| {
        net.nodes[0]
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Receipt { id, status, packet_no, .. } if *id == ids[0] => Some((*status, *packet_no)),
                _ => None,
            })
            .next_back()
    };
    let (st, first_no) = status(&net).unwrap();
    assert_eq!(st, Delivery::Queued);
    net.loss = 0.0;
    net.command(1, Request::Start).unwrap();
    net.run_until(20_000);
    assert_eq!(status(&net).unwrap(), (Delivery::Delivered, first_no));
    let got: Vec<&Incoming> =
        net.nodes[1].events.iter().filter_map(|e| if let Event::Message(m) = e { Some(m) } else { None }).collect();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].packet_no, PacketNo::from(first_no));
}

#[test]
fn sealed_message_read_receipt_and_away_reply() {
    let mut net = Net::new(2, 0.0, 0.0, 0, 4);
    net.start_all();
    net.run_until(6000);
    net.command(0, Request::Send { to: vec![net.key(1)], text: "secret".into(), sealed: true }).unwrap();
    net.run_until(7000);
    let m = net.nodes[1]
        .events
        .iter()
        .find_map(|e| if let Event::Message(m) = e { Some(m.clone()) } else { None })
        .unwrap();
    assert!(m.sealed());
    net.command(1, Request::Open { peer: net.key(0), packet_no: m.packet_no.clone(), read_check: true }).unwrap();
    net.run_until(8000);
    assert!(net.nodes[0].events.iter().any(|e| matches!(e, Event::Read { .. })));
    assert!(net.nodes[1].engine.reads.is_empty(), "ANSREADMSG stops the READMSG retries");
    // A shake (FeiQ's) arrives as one.
    net.command(0, Request::Shake(net.key(1))).unwrap();
    net.run_until(8200);
    assert_eq!(net.nodes[1].events.iter().filter(|e| matches!(e, Event::Shake { .. })).count(), 1);
    // Opened again: no second read receipt.
    net.command(1, Request::Open { peer: net.key(0), packet_no: m.packet_no.clone(), read_check: true }).unwrap();
    net.run_until(8500);
    let reads = net.nodes[0].events.iter().filter(|e| matches!(e, Event::Read { .. })).count();
    assert_eq!(reads, 1, "one read receipt for a message opened twice");

    net.command(1, Request::SetAway(Some("at lunch".into()))).unwrap();
    net.run_until(9000);
    assert!(net.nodes[0].events.iter().any(|e| matches!(e, Event::PeerChanged(p) if p.away)));
    net.command(0, Request::Send { to: vec![net.key(1)], text: "hi?".into(), sealed: false }).unwrap();
    net.run_until(10_000);
    let replies: Vec<&Incoming> =
        net.nodes[0].events.iter().filter_map(|e| if let Event::Message(m) = e { Some(m) } else { None }).collect();
    assert_eq!(replies.len(), 1);
    assert!(replies[0].auto() && replies[0].text == "at lunch");
    // The automatic reply is not answered by another one.
    net.command(0, Request::SetAway(Some("also away".into()))).unwrap();
    net.command(1, Request::Send { to: vec![net.key(0)], text: "ping".into(), sealed: false }).unwrap();
    net.run_until(12_000);
    let autos = net.nodes[1].events.iter().filter(|e| matches!(e, Event::Message(m) if m.auto())).count();
    assert_eq!(autos, 1);
    let autos0 = net.nodes[0].events.iter().filter(|e| matches!(e, Event::Message(m) if m.auto())).count();
    assert_eq!(autos0, 1, "no ping-pong of automatic replies");
    // Listeners of node 1 are told what it replied by itself.
    let own = |n: usize, auto: bool| -> Vec<Sent> {
        net.nodes[n]
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Sent(s) if Command(s.command).has(Opts::AUTORETOPT) == auto => Some(s.clone()),
                _ => None,
            })
            .collect()
    };
    let replied = own(1, true);
    assert_eq!(replied.len(), 1, "{replied:?}");
    assert_eq!((replied[0].text.as_str(), &replied[0].to[..]), ("at lunch", &[(0, net.key(0))][..]));
}

/// Every send is told to listeners once, before its receipts, with the ids
/// the receipts carry; a broadcast lists the peers online.
#[test]
fn listeners_are_told_what_was_sent() {
    let mut net = Net::new(3, 0.0, 0.0, 0, 4);
    net.start_all();
    net.run_until(6000);
    let ids =
        net.command(0, Request::Send { to: vec![net.key(1), net.key(2)], text: "two".into(), sealed: true }).unwrap();
    net.command(0, Request::Broadcast { text: "all".into() }).unwrap();
    net.run_until(8000);
    let events = &net.nodes[0].events;
    let sent: Vec<&Sent> = events.iter().filter_map(|e| if let Event::Sent(s) = e { Some(s) } else { None }).collect();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[0].text, "two");
    assert_eq!(sent[0].to, [(ids[0], net.key(1)), (ids[1], net.key(2))]);
    assert!(Command(sent[0].command).has(Opts::SECRETOPT));
    let first_receipt = events.iter().position(|e| matches!(e, Event::Receipt { id, .. } if *id == ids[0])).unwrap();
    let announced = events.iter().position(|e| matches!(e, Event::Sent(s) if s.text == "two")).unwrap();
    assert!(announced < first_receipt);
    assert!(Command(sent[1].command).has(Opts::BROADCASTOPT));
    let mut to: Vec<PeerKey> = sent[1]
        .to
        .iter()
        .map(|(id, k)| {
            assert_eq!(*id, 0, "a broadcast asks for no receipts");
            k.clone()
        })
        .collect();
    to.sort_by_key(|k| k.to_string());
    let mut online = vec![net.key(1), net.key(2)];
    online.sort_by_key(|k| k.to_string());
    assert_eq!(to, online);
}

/// 200 nodes start at the same instant: answers are spread over time
/// rather than sent in one storm. Bound: no 10 ms window holds more than
/// 4% of all ANSENTRY datagrams, and they span at least 900 ms.
#[test]
fn two_hundred_nodes_entering_at_once_do_not_storm() {
    let mut net = Net::new(200, 0.0, 0.0, 0, 9);
    net.start_all();
    net.run_until(4000);
    for i in 0..200 {
        assert_eq!(net.nodes[i].engine.peers().online_count(), 199, "node {i}");
    }
    let answers: Vec<u64> = net
        .log
        .iter()
        .filter(|(_, _, p)| Packet::decode(p).is_ok_and(|p| p.mode() == Mode::ANSENTRY))
        .map(|(t, _, _)| *t)
        .collect();
    let mut windows: BTreeMap<u64, usize> = BTreeMap::new();
    for t in &answers {
        *windows.entry(t / 10).or_default() += 1;
    }
    let worst = windows.values().max().copied().unwrap_or(0);
    let span = answers.iter().max().unwrap() - answers.iter().min().unwrap();
    eprintln!("{} answers over {span} ms; worst 10 ms window: {worst}", answers.len());
    assert!(worst * 100 <= answers.len() * 4, "burst of {worst} answers in 10 ms of {}", answers.len());
    assert!(span >= 900, "answers squeezed into {span} ms");
}

#[test]
fn duplicates_are_acknowledged_again_but_shown_once() {
    let mut net = Net::new(2, 0.0, 0.0, 0, 5);
    net.start_all();
    net.run_until(6000);
    let msg = b"1:42:user0:host0:288:twice\0".to_vec();
    let now = net.now();
    let from = net.nodes[0].addr;
    for _ in 0..3 {
        net.nodes[1].engine.handle(now, from, &msg);
    }
    let mut acks = 0;
    while let Some(o) = net.nodes[1].engine.poll_output() {
        match o {
            Output::Store { then, .. } => acks += then.len(),
            Output::Event(Event::Message(m)) => assert_eq!(m.text, "twice"),
            _ => {}
        }
    }
    assert_eq!(acks, 3);
    assert_eq!(net.nodes[1].engine.stats().duplicates, 2);
    // Known across a restart: the store hands the key back.
    let cfg = net.nodes[1].engine.config().clone();
    let mut again = Engine::new(cfg, 0, [(PeerKey::new("user0", "host0"), "42".to_string(), text_hash("twice"))]);
    again.handle(now, from, &msg);
    assert!(std::iter::from_fn(|| again.poll_output()).all(|o| !matches!(o, Output::Event(Event::Message(_)))));
}

#[test]
fn packet_numbers_never_go_backwards() {
    let cfg = Config::new("a", "b", "c");
    let mut e = Engine::new(cfg.clone(), 1_800_000_000, []);
    let now = Now { mono: Duration::ZERO, unix_ms: 1_700_000_000_000 };
    let a = e.packet_no(now);
    let b = e.packet_no(now);
    assert!(a > 1_800_000_000 && b == a + 1);
    let reserved = std::iter::from_fn(|| e.poll_output())
        .find_map(|o| if let Output::Store { op: StoreOp::Counter(n), .. } = o { Some(n) } else { None })
        .unwrap();
    assert!(reserved > b);
    // A restart from the reservation starts above everything used.
    let mut e2 = Engine::new(cfg, reserved, []);
    assert!(e2.packet_no(now) > b);
}

#[test]
fn malformed_packets_are_counted() {
    let mut e = Engine::new(Config::new("a", "b", "c"), 0, []);
    let now = Now { mono: Duration::ZERO, unix_ms: 0 };
    let from: SocketAddr = "10.0.0.9:2425".parse().unwrap();
    let long_user = format!("1:1:{}:h:32:x\0", "u".repeat(300));
    for bad in [&b"garbage"[..], b"1:2:u:h:x:", b"", b"1:1:u:h:33:notanumber\0", long_user.as_bytes()] {
        e.handle(now, from, bad);
    }
    assert_eq!(e.stats().malformed, 5);
    // Found in review: a NUL in a FeiQ image id was echoed into the ack and
    // panicked the engine. Now it is refused, and the engine still answers.
    e.handle(now, from, b"1:1:u:h:192:a\0b|1|0|1|1|0#");
    assert_eq!(e.stats().malformed, 6);
    e.handle(now, from, b"1:2:u:h:64:\0");
    assert!(std::iter::from_fn(|| e.poll_output()).any(|o| matches!(o, Output::Transmit(_))));
}

#[test]
fn long_text_is_refused_for_iptux_with_a_clear_error() {
    let mut e = Engine::new(Config::new("a", "b", "c"), 0, []);
    let now = Now { mono: Duration::ZERO, unix_ms: 0 };
    let from: SocketAddr = "10.0.0.9:2425".parse().unwrap();
    e.handle(now, from, b"1_iptux 0.8.3:1:bob:bob-pc:257:Bob\0\0icon\0utf-8\0");
    let err = e
        .command(now, Request::Send { to: vec![PeerKey::new("bob", "bob-pc")], text: "x".repeat(9000), sealed: false })
        .unwrap_err();
    assert!(matches!(err, RequestError::TooLong { limit: 8191, .. }), "{err}");
    assert!(e
        .command(now, Request::Send { to: vec![PeerKey::new("bob", "bob-pc")], text: "x".repeat(8000), sealed: false })
        .is_ok());
    // A broadcast too long for Bob is refused before anything goes out
    // (found in review: the targets had their copy already).
    let mut cfg = Config::new("a", "b", "c");
    cfg.targets = vec!["10.0.0.255:2425".parse().unwrap()];
    let mut e = Engine::new(cfg, 0, []);
    e.handle(now, from, b"1_iptux 0.8.3:1:bob:bob-pc:257:Bob\0\0icon\0utf-8\0");
    while e.poll_output().is_some() {}
    let err = e.command(now, Request::Broadcast { text: "x".repeat(9000) }).unwrap_err();
    assert!(matches!(err, RequestError::TooLong { limit: 8191, .. }), "{err}");
    let out: Vec<Output> = std::iter::from_fn(|| e.poll_output()).collect();
    assert!(!out.iter().any(|o| matches!(o, Output::Transmit(_) | Output::Event(Event::Sent(_)))), "{out:?}");
}

#[test]
fn probes_are_paced_and_bounded() {
    let mut e = Engine::new(Config::new("a", "b", "c"), 0, []);
    let mut now = Now { mono: Duration::ZERO, unix_ms: 1_700_000_000_000 };
    let addrs: Vec<SocketAddr> = (1..=254).map(|i| SocketAddr::from(([10, 9, 0, i as u8], 2425))).collect();
    e.command(now, Request::Probe(addrs)).unwrap();
    let mut per_tick = Vec::new();
    while let Some(t) = e.poll_timeout() {
        now.mono = t;
        e.handle_timeout(now);
        let n = std::iter::from_fn(|| e.poll_output()).filter(|o| matches!(o, Output::Transmit(_))).count();
        per_tick.push(n);
    }
    assert_eq!(per_tick.iter().sum::<usize>(), 254);
    assert!(per_tick.iter().all(|&n| n <= 10));
    assert!(now.mono >= Duration::from_millis(250), "254 probes took only {:?}", now.mono);
}

/// A peer that stays online but lost every copy of a message (or its acks)
/// gets it again: on its next packet of any kind, or within a minute.
#[test]
fn queued_messages_are_retried_while_the_peer_stays_online() {
    let mut net = Net::new(2, 0.0, 0.0, 0, 11);
    net.start_all();
    net.run_until(6000);
    net.loss = 1.0;
    let a = net.command(0, Request::Send { to: vec![net.key(1)], text: "first".into(), sealed: false }).unwrap();
    let b = net.command(0, Request::Send { to: vec![net.key(1)], text: "second".into(), sealed: false }).unwrap();
    net.run_until(12_000);
    net.loss = 0.0;
    let last = |net: &Net, id: u64| {
        net.nodes[0]
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Receipt { id: rid, status, .. } if *rid == id => Some(*status),
                _ => None,
            })
            .next_back()
    };
    assert_eq!(last(&net, a[0]), Some(Delivery::Queued));
    // The peer sends something (here: a message of its own).
    net.command(1, Request::Send { to: vec![net.key(0)], text: "hello?".into(), sealed: false }).unwrap();
    net.run_until(14_000);
    assert_eq!(last(&net, a[0]), Some(Delivery::Delivered));
    assert_eq!(last(&net, b[0]), Some(Delivery::Delivered));

    // Silent but online: the once-a-minute retry delivers it.
    net.loss = 1.0;
    let c = net.command(0, Request::Send { to: vec![net.key(1)], text: "third".into(), sealed: false }).unwrap();
    net.run_until(20_000);
    assert_eq!(last(&net, c[0]), Some(Delivery::Queued));
    net.loss = 0.0;
    net.run_until(90_000);
    assert_eq!(last(&net, c[0]), Some(Delivery::Delivered));
    let shown = net.nodes[1].events.iter().filter(|e| matches!(e, Event::Message(m) if m.text == "third")).count();
    assert_eq!(shown, 1);
}

/// Found by the loopback test: an answer still due when a node quits must
/// not go out after its BR_EXIT (the others would list it again).
#[test]
fn nothing_announces_a_node_after_its_exit() {
    let mut net = Net::new(3, 0.0, 0.0, 0, 12);
    net.start_all();
    net.run_until(3000);
    // Node 1 re-announces; node 0 schedules its answer and quits at once.
    net.command(1, Request::Start).unwrap();
    net.run_until(3001);
    net.run_until(3260);
    assert!(net.nodes[0].engine.timers.get(Timer::Answer).is_some(), "the scenario needs an answer pending");
    net.command(0, Request::Quit).unwrap();
    net.run_until(7000);
    for i in 1..3 {
        assert!(
            net.nodes[i].engine.peers().get(&net.key(0)).is_some_and(|p| !p.online),
            "node {i} lists node 0 again after its exit"
        );
    }
}

/// Found in review: iptux restarts its packet numbers at 1, so a new message
/// may carry a number seen before; it is shown, while a retransmission is not.
#[test]
fn reused_packet_numbers_with_new_text_are_new_messages() {
    let mut e = Engine::new(Config::new("a", "b", "c"), 0, []);
    let now = Now { mono: Duration::ZERO, unix_ms: 0 };
    let from: SocketAddr = "10.0.0.9:2425".parse().unwrap();
    e.handle(now, from, b"1_iptux 0.8.3:1:bob:bob-pc:257:Bob\0\0icon\0utf-8\0");
    for (pkt, text) in [
        (&b"1_iptux 0.8.3:7:bob:bob-pc:288:before\0"[..], "before"),
        (b"1_iptux 0.8.3:7:bob:bob-pc:288:after\0", "after"),
    ] {
        e.handle(now, from, pkt);
        let shown: Vec<String> = std::iter::from_fn(|| e.poll_output())
            .filter_map(|o| if let Output::Event(Event::Message(m)) = o { Some(m.text) } else { None })
            .collect();
        assert_eq!(shown, [text]);
    }
    e.handle(now, from, b"1_iptux 0.8.3:7:bob:bob-pc:288:after\0");
    assert_eq!(e.stats().duplicates, 1);
}

/// Found in review: BR_EXIT for a peer counts only from that peer's address.
#[test]
fn exit_from_elsewhere_is_ignored() {
    let mut e = Engine::new(Config::new("a", "b", "c"), 0, []);
    let now = Now { mono: Duration::ZERO, unix_ms: 0 };
    let bob: SocketAddr = "10.0.0.9:2425".parse().unwrap();
    let mallory: SocketAddr = "10.0.0.66:2425".parse().unwrap();
    e.handle(now, bob, b"1:1:bob:pc:16777217:Bob\0\0\nUN:bob\nHN:pc\0");
    e.handle(now, mallory, b"1:2:bob:pc:16777218:Bob\0\0\nUN:bob\nHN:pc\0");
    assert_eq!(e.peers().online_count(), 1);
    e.handle(now, bob, b"1:3:bob:pc:16777218:Bob\0\0\nUN:bob\nHN:pc\0");
    assert_eq!(e.peers().online_count(), 0);
}

/// Found in review: a store failure must not leave the message marked seen
/// (its retransmission would be acknowledged without ever being stored).
#[test]
fn a_message_whose_store_failed_is_taken_in_again() {
    let mut e = Engine::new(Config::new("a", "b", "c"), 0, []);
    let now = Now { mono: Duration::ZERO, unix_ms: 0 };
    let from: SocketAddr = "10.0.0.9:2425".parse().unwrap();
    let pkt = b"1:5:bob:pc:288:keep me\0";
    e.handle(now, from, pkt);
    let op = std::iter::from_fn(|| e.poll_output())
        .find_map(|o| if let Output::Store { op: op @ StoreOp::Incoming(_), .. } = o { Some(op) } else { None })
        .unwrap();
    e.store_failed(&op);
    e.handle(now, from, pkt);
    let again =
        std::iter::from_fn(|| e.poll_output()).any(|o| matches!(o, Output::Store { op: StoreOp::Incoming(_), .. }));
    assert!(again, "the retransmission is stored this time");
}

/// Found in review: a queued message to a peer that vanished without BR_EXIT
/// fails when the outbox expiry passes, despite the retries.
#[test]
fn queued_messages_to_a_vanished_peer_expire() {
    let mut net = Net::new(2, 0.0, 0.0, 0, 13);
    for n in &mut net.nodes {
        n.engine.cfg.outbox_expiry = Duration::from_secs(300);
    }
    net.start_all();
    net.run_until(6000);
    net.loss = 1.0;
    let id = net.command(0, Request::Send { to: vec![net.key(1)], text: "lost".into(), sealed: false }).unwrap()[0];
    net.run_until(400_000);
    let failed = net.nodes[0]
        .events
        .iter()
        .any(|e| matches!(e, Event::Receipt { id: i, status: Delivery::Failed, .. } if *i == id));
    assert!(failed);
    assert_eq!(net.nodes[0].engine.unacknowledged(), 0);
}

/// A peer known only from the store (an earlier run) can be written to:
/// the message is queued, and written when the peer comes back, in what it
/// reads then (here UTF-8, which GBK could not carry).
#[test]
fn a_peer_from_the_store_gets_its_message_when_it_comes_back() {
    let mut e = Engine::new(Config::new("a", "b", "c"), 0, []);
    let now = Now { mono: Duration::ZERO, unix_ms: 0 };
    let bob: SocketAddr = "10.0.0.9:2425".parse().unwrap();
    let key = PeerKey::new("bob", "pc");
    e.restore_peer(key.clone(), "Bob", "QA", bob, ClientKind::Pigeon, None);
    assert_eq!(e.peers().all().len(), 1);
    let text = "while you were out 👋 你好";
    let ids = e.command(now, Request::Send { to: vec![key.clone()], text: text.into(), sealed: false }).unwrap();
    let out: Vec<Output> = std::iter::from_fn(|| e.poll_output()).collect();
    assert!(!out.iter().any(|o| matches!(o, Output::Transmit(_))), "nothing sent while it is away: {out:?}");
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Event(Event::Receipt { id, status: Delivery::Queued, .. }) if *id == ids[0])));
    // A message from Bob before his entry does not send it yet: only the
    // entry says what he reads (and where he is now).
    let later = Now { mono: Duration::from_secs(60), unix_ms: 60_000 };
    e.handle(later, bob, b"1:6:bob:pc:288:hi\0");
    let early: Vec<Output> = std::iter::from_fn(|| e.poll_output()).collect();
    let sent_mode = |o: &Output, m: Mode| matches!(o, Output::Transmit(t) if t.dst == bob && Packet::decode(&t.payload).is_ok_and(|p| p.mode() == m));
    assert!(!early.iter().any(|o| sent_mode(o, Mode::SENDMSG)), "{early:?}");
    assert!(early.iter().any(|o| sent_mode(o, Mode::BR_ENTRY)), "it is asked who it is: {early:?}");
    // Bob comes back, reading UTF-8 (CAPUTF8OPT).
    e.handle(later, bob, format!("1:7:bob:pc:{}:Bob\0QA\0", 0x0100_0001).as_bytes());
    let sent: Vec<Transmit> = std::iter::from_fn(|| e.poll_output())
        .filter_map(|o| if let Output::Transmit(t) = o { Some(t) } else { None })
        .filter(|t| t.dst == bob && Packet::decode(&t.payload).is_ok_and(|p| p.mode() == Mode::SENDMSG))
        .collect();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let p = Packet::decode(&sent[0].payload).unwrap();
    assert!(p.opts().has(Opts::UTF8OPT));
    let body = p.payload.split(|&b| b == 0).next().unwrap();
    assert_eq!(std::str::from_utf8(body).unwrap(), text);
    // Its receipt finishes it.
    let no = String::from_utf8(p.packet_no.to_vec()).unwrap();
    e.handle(later, bob, format!("1:8:bob:pc:33:{no}\0").as_bytes());
    let done: Vec<Output> = std::iter::from_fn(|| e.poll_output()).collect();
    assert!(done.iter().any(|o| matches!(o, Output::Event(Event::Receipt { status: Delivery::Delivered, .. }))));
}

/// A message written late (to peers from the store, or restored from the
/// outbox after a restart) is still what it was: sealed, and to several
/// (MULTICASTOPT); the charset flags are the peer's, and a daemon does not
/// carry a one-shot run's NOADDLISTOPT.
#[test]
fn a_message_written_late_keeps_what_it_was() {
    let mut e = Engine::new(Config::new("a", "b", "c"), 0, []);
    let now = Now { mono: Duration::ZERO, unix_ms: 0 };
    let (bob, carol, dave): (SocketAddr, SocketAddr, SocketAddr) =
        ("10.0.0.9:2425".parse().unwrap(), "10.0.0.7:2425".parse().unwrap(), "10.0.0.5:2425".parse().unwrap());
    e.restore_peer(PeerKey::new("bob", "pc"), "Bob", "", bob, ClientKind::Pigeon, None);
    e.restore_peer(PeerKey::new("carol", "pc"), "Carol", "", carol, ClientKind::Ipmsg, None);
    let to = vec![PeerKey::new("bob", "pc"), PeerKey::new("carol", "pc")];
    e.command(now, Request::Send { to, text: "for you two".into(), sealed: true }).unwrap();
    // As the outbox of a one-shot run restores it: sealed, to several, NOADDLISTOPT.
    let stored = Mode::SENDMSG.0 as u32 | Opts::SECRETEXOPT | Opts::MULTICASTOPT | Opts::NOADDLISTOPT;
    let file = OfferFile { path: "/tmp/r.pdf".into(), name: "r.pdf".into(), dir: false, size: 3, mtime: 0 };
    e.restore_queued(PeerKey::new("dave", "pc"), 77, "from the last run", stored, vec![(5, file)], 0);
    while e.poll_output().is_some() {}
    let mut written = Vec::new();
    for (addr, entry) in
        [(bob, "1:1:bob:pc:16777217:Bob\0\0"), (carol, "1:1:carol:pc:1:Carol\0\0"), (dave, "1:1:dave:pc:1:Dave\0\0")]
    {
        e.handle(now, addr, entry.as_bytes());
        written.extend(std::iter::from_fn(|| e.poll_output()).filter_map(|o| match o {
            Output::Transmit(t) if Packet::decode(&t.payload).is_ok_and(|p| p.mode() == Mode::SENDMSG) => Some(t),
            _ => None,
        }));
    }
    assert_eq!(written.len(), 3, "{written:?}");
    for t in &written {
        let p = Packet::decode(&t.payload).unwrap();
        assert!(p.opts().has(Opts::SENDCHECKOPT) && p.opts().has(Opts::SECRETEXOPT), "{p:?}");
        assert!(!p.opts().has(Opts::NOADDLISTOPT), "{p:?}");
        assert!(p.opts().has(Opts::MULTICASTOPT), "{p:?}");
        assert_eq!(p.opts().has(Opts::UTF8OPT), t.dst == bob, "only Bob announced UTF-8: {p:?}");
    }
    assert_eq!(
        Packet::decode(&written[2].payload).unwrap().payload.split(|&b| b == 0).next().unwrap(),
        b"from the last run"
    );
    // Its file goes with it, offered under the ID it was stored with.
    let p = Packet::decode(&written[2].payload).unwrap();
    let (body, _) = MessageBody::decode(&p, Charset::Gbk, None).unwrap();
    assert!(p.opts().has(Opts::FILEATTACHOPT));
    assert_eq!((body.attachments[0].id, body.attachments[0].name.as_str()), (5, "r.pdf"));
}

/// To a peer known only from the store: files are queued like a text and
/// their list written when it is back (in what it reads then), and a
/// queued text that no longer fits once written in UTF-8 fails clearly.
#[test]
fn a_peer_from_the_store_limits() {
    let mut e = Engine::new(Config::new("a", "b", "c"), 0, []);
    let now = Now { mono: Duration::ZERO, unix_ms: 0 };
    let carol: SocketAddr = "10.0.0.7:2425".parse().unwrap();
    let key = PeerKey::new("carol", "pc");
    e.restore_peer(key.clone(), "Carol", "", carol, ClientKind::Ipmsg, None);
    let file = OfferFile { path: "/tmp/x".into(), name: "x".into(), dir: false, size: 1, mtime: 0 };
    let queued = e
        .command(now, Request::Offer { to: vec![key.clone()], text: String::new(), sealed: false, files: vec![file] })
        .unwrap();
    // 12,000 CJK characters: 24,000 bytes in GBK fit IPMsg's 32 KiB; 36,000 in UTF-8 do not.
    let ids =
        e.command(now, Request::Send { to: vec![key.clone()], text: "好".repeat(12_000), sealed: false }).unwrap();
    while e.poll_output().is_some() {}
    // Carol comes back reading UTF-8 (CAPUTF8OPT).
    e.handle(now, carol, format!("1:1:carol:pc:{}:Carol\0\0", 0x0100_0001).as_bytes());
    let out: Vec<Output> = std::iter::from_fn(|| e.poll_output()).collect();
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Event(Event::Receipt { id, status: Delivery::Failed, .. }) if *id == ids[0])),
        "{out:?}"
    );
    assert!(!out.iter().any(|o| matches!(o, Output::Transmit(t) if t.payload.len() > 32_767)));
    // The file's offer went, in UTF-8 now that Carol reads it.
    let offer = out
        .iter()
        .find_map(|o| match o {
            Output::Transmit(t) => Packet::decode(&t.payload).ok().filter(|p| p.opts().has(Opts::FILEATTACHOPT)),
            _ => None,
        })
        .expect("the queued offer goes out");
    assert!(offer.opts().has(Opts::UTF8OPT));
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Event(Event::Receipt { id, status: Delivery::Sending, .. }) if *id == queued[0])));
}

/// While away, each message gets our automatic reply once: sent without a
/// receipt asked, kept in the history, and told to listeners.
#[test]
fn an_automatic_reply_is_stored_and_told() {
    let mut cfg = Config::new("a", "b", "c");
    cfg.away = Some("at lunch 午饭".into());
    let mut e = Engine::new(cfg, 0, []);
    let now = Now { mono: Duration::ZERO, unix_ms: 1_000 };
    let bob: SocketAddr = "10.0.0.9:2425".parse().unwrap();
    e.handle(now, bob, format!("1:1:bob:pc:{}:Bob\0\0", 0x0100_0001).as_bytes());
    while e.poll_output().is_some() {}
    e.handle(now, bob, b"1:2:bob:pc:288:are you there?\0");
    let out: Vec<Output> = std::iter::from_fn(|| e.poll_output()).collect();
    let reply = out
        .iter()
        .find_map(|o| match o {
            Output::Transmit(t) => {
                Packet::decode(&t.payload).ok().filter(|p| p.opts().has(Opts::AUTORETOPT)).map(|p| {
                    assert!(!p.opts().has(Opts::SENDCHECKOPT), "no receipt asked");
                    String::from_utf8_lossy(p.packet_no).into_owned()
                })
            }
            _ => None,
        })
        .expect("the automatic reply");
    let rows: Vec<&Outgoing> = out
        .iter()
        .filter_map(|o| match o {
            Output::Store { op: StoreOp::Outgoing(rows), .. } => Some(rows),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(rows.len(), 1, "{out:?}");
    assert_eq!((rows[0].text.as_str(), rows[0].to.key.clone()), ("at lunch 午饭", PeerKey::new("bob", "pc")));
    assert!(Command(rows[0].command).has(Opts::AUTORETOPT));
    assert_eq!(rows[0].packet_no.to_string(), reply);
    assert!(out.iter().any(|o| matches!(o, Output::Event(Event::Sent(s)) if s.packet_no == rows[0].packet_no)));
}

/// Marking a conversation seen is for the store only: nothing is sent, and
/// a peer the engine does not know (one from the store) is fine.
#[test]
fn marking_seen_only_stores() {
    let mut e = Engine::new(Config::new("a", "b", "c"), 0, []);
    let now = Now { mono: Duration::ZERO, unix_ms: 0 };
    for peer in [Some(PeerKey::new("eve", "pc")), None] {
        assert_eq!(e.command(now, Request::MarkSeen(peer.clone())), Ok(vec![]));
        let out: Vec<Output> = std::iter::from_fn(|| e.poll_output()).collect();
        assert_eq!(out, [Output::Store { op: StoreOp::Seen(peer), then: vec![] }]);
    }
}

/// Declining an offer tells its sender (RELEASEFILES with the packet
/// number), so it stops serving the files.
#[test]
fn declining_an_offer_sends_releasefiles() {
    let mut e = Engine::new(Config::new("a", "b", "c"), 0, []);
    let now = Now { mono: Duration::ZERO, unix_ms: 0 };
    let bob: SocketAddr = "10.0.0.9:2425".parse().unwrap();
    e.handle(now, bob, b"1:1:bob:pc:1:Bob\0\0");
    while e.poll_output().is_some() {}
    let key = PeerKey::new("bob", "pc");
    e.command(now, Request::Decline { peer: key.clone(), packet_no: PacketNo::from(4242) }).unwrap();
    let sent: Vec<Transmit> = std::iter::from_fn(|| e.poll_output())
        .filter_map(|o| if let Output::Transmit(t) = o { Some(t) } else { None })
        .collect();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].dst, bob);
    let p = Packet::decode(&sent[0].payload).unwrap();
    assert_eq!(p.mode(), Mode::RELEASEFILES);
    assert_eq!(p.payload.split(|&b| b == 0).next().unwrap(), b"4242");
    // Printable, so a packet number, but not the decimal RELEASEFILES names.
    assert!(e.command(now, Request::Decline { peer: key, packet_no: "x".parse().unwrap() }).is_err());
    assert!(e
        .command(now, Request::Decline { peer: PeerKey::new("eve", "pc"), packet_no: PacketNo::from(1) })
        .is_err());
}

/// A LAN of `n` nodes that all call themselves pi@raspberrypi, with
/// instance markers (Pigeons) or without (clients that send none).
fn raspberries(n: usize, marked: bool, seed: u64) -> Net {
    let mut net = Net::new(n, 0.0, 0.0, 0, seed);
    for (i, node) in net.nodes.iter_mut().enumerate() {
        let mut cfg = node.engine.config().clone();
        cfg.user = "pi".into();
        cfg.host = "raspberrypi".into();
        cfg.nick = "pi".into();
        cfg.instance = if marked { format!("{:016x}", 0xabc0 + i) } else { String::new() };
        node.engine = Engine::new(cfg, 0, []);
    }
    net
}

/// The three Raspberry Pis: each lists the other two, by address;
/// a message to one reaches that one only, and its receipt comes back.
#[test]
fn machines_of_one_name_are_separate_peers() {
    for marked in [true, false] {
        let mut net = raspberries(3, marked, 7);
        net.start_all();
        net.run_until(7000);
        for i in 0..3 {
            let peers = net.nodes[i].engine.peers().all();
            assert_eq!(peers.len(), 2, "node {i} (marked {marked}): {peers:?}");
            let mut addrs: Vec<SocketAddr> = peers.iter().map(|p| p.addr).collect();
            addrs.sort();
            let mut want: Vec<SocketAddr> = (0..3).filter(|&j| j != i).map(|j| net.nodes[j].addr).collect();
            want.sort();
            assert_eq!(addrs, want, "node {i} lists the others by address");
        }
        let to = net.nodes[0].engine.peers().by_addr(net.nodes[2].addr).unwrap().key.clone();
        let ids =
            net.command(0, Request::Send { to: vec![to.clone()], text: "only for .3".into(), sealed: false }).unwrap();
        net.run_until(9000);
        let got = |j: usize, net: &Net| {
            net.nodes[j].events.iter().filter(|e| matches!(e, Event::Message(m) if m.text == "only for .3")).count()
        };
        assert_eq!((got(1, &net), got(2, &net)), (0, 1), "marked {marked}");
        assert!(net.nodes[0]
            .events
            .iter()
            .any(|e| matches!(e, Event::Receipt { id, status: Delivery::Delivered, .. } if *id == ids[0])));
        // The receiver knows who wrote: the sender's address.
        let m = net.nodes[2]
            .events
            .iter()
            .find_map(|e| match e {
                Event::Message(m) => Some(m.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(m.from.addr, net.nodes[0].addr);
    }
}

/// A peer that leaves and comes back at a new address (DHCP) is the same
/// peer, and what waits for it in the outbox follows it.
#[test]
fn a_moved_peer_keeps_its_identity_and_outbox() {
    for marked in [true, false] {
        let mut net = raspberries(2, marked, 11);
        net.start_all();
        net.run_until(7000);
        let key = net.nodes[0].engine.peers().all()[0].key.clone();
        net.command(1, Request::Quit).unwrap();
        net.run_until(8000);
        assert_eq!(net.nodes[0].engine.peers().online_count(), 0);
        let ids =
            net.command(0, Request::Send { to: vec![key.clone()], text: "while you moved".into(), sealed: false });
        let ids = ids.unwrap();
        net.run_until(15_000);
        // It comes back at another address, the same home.
        let moved: SocketAddr = "10.0.0.77:2425".parse().unwrap();
        let mut cfg = net.nodes[1].engine.config().clone();
        cfg.local = vec![moved.ip()];
        net.nodes[1].engine = Engine::new(cfg, 100, []);
        net.nodes[1].addr = moved;
        net.command(1, Request::Start).unwrap();
        net.run_until(25_000);
        let peers = net.nodes[0].engine.peers().all();
        assert_eq!(peers.len(), 1, "marked {marked}: {peers:?}");
        assert_eq!((peers[0].key.clone(), peers[0].addr), (key.clone(), moved));
        assert!(net.nodes[1].events.iter().any(|e| matches!(e, Event::Message(m) if m.text == "while you moved")));
        assert!(net.nodes[0]
            .events
            .iter()
            .any(|e| matches!(e, Event::Receipt { id, status: Delivery::Delivered, .. } if *id == ids[0])));
    }
}

/// One machine heard at two addresses of its own (two NICs on one LAN) is
/// one peer when it carries a marker; its packets from either address are
/// its own, and acknowledgements from the second address count.
#[test]
fn a_machine_with_two_addresses_is_listed_once() {
    let mut e = Engine::new(Config::new("a", "b", "c"), 0, []);
    let now = |ms| Now { mono: Duration::from_millis(ms), unix_ms: 1_700_000_000_000 + ms as i64 };
    let nic1: SocketAddr = "10.0.0.14:2425".parse().unwrap();
    let nic2: SocketAddr = "10.0.0.15:2425".parse().unwrap();
    let entry = |no: u32, mode: u32| {
        format!("1_pigeon 0.1.0:{no}:pi:raspberrypi:{mode}:pi\0\0\nUN:pi\nHN:raspberrypi\nPG:00000000000000aa\0")
            .into_bytes()
    };
    e.handle(now(0), nic1, &entry(1, 0x0120_0001));
    e.handle(now(100), nic2, &entry(2, 0x0120_0003));
    let peers = e.peers().all();
    assert_eq!(peers.len(), 1, "{peers:?}");
    assert_eq!(peers[0].addr, nic1);
    assert_eq!(peers[0].also, [nic2]);
    let key = peers[0].key.clone();
    while e.poll_output().is_some() {}
    // A message from the second address is from the same peer.
    e.handle(now(200), nic2, b"1_pigeon 0.1.0:3:pi:raspberrypi:288:hi from nic2\0");
    let out: Vec<Output> = std::iter::from_fn(|| e.poll_output()).collect();
    assert!(out.iter().any(|o| matches!(o, Output::Event(Event::Message(m)) if m.from.key == key)), "{out:?}");
    // Our message goes to the first address; the ack may come from the second.
    let ids = e.command(now(300), Request::Send { to: vec![key.clone()], text: "hi".into(), sealed: false }).unwrap();
    let out: Vec<Output> = std::iter::from_fn(|| e.poll_output()).collect();
    let no = out
        .iter()
        .find_map(|o| match o {
            Output::Transmit(t) if t.dst == nic1 => {
                Packet::decode(&t.payload).ok().map(|p| p.packet_no_str().into_owned())
            }
            _ => None,
        })
        .expect("sent to the first address");
    e.handle(now(310), nic2, format!("1_pigeon 0.1.0:4:pi:raspberrypi:33:{no}\0").as_bytes());
    let out: Vec<Output> = std::iter::from_fn(|| e.poll_output()).collect();
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Event(Event::Receipt { id, status: Delivery::Delivered, .. }) if *id == ids[0])));
    // Another machine of that name (another marker) is a second peer.
    e.handle(now(400), "10.0.0.16:2425".parse().unwrap(), &entry(5, 0x0120_0001).replace_marker());
    assert_eq!(e.peers().all().len(), 2);
}

trait ReplaceMarker {
    fn replace_marker(self) -> Vec<u8>;
}

impl ReplaceMarker for Vec<u8> {
    fn replace_marker(self) -> Vec<u8> {
        String::from_utf8(self).unwrap().replace("PG:00000000000000aa", "PG:00000000000000bb").into_bytes()
    }
}

/// Our own packets are known by their address, not their name: a packet
/// with our name from elsewhere is a peer.
#[test]
fn own_packets_are_recognised_by_address() {
    let mut cfg = Config::new("pi", "raspberrypi", "pi");
    cfg.local = vec!["10.0.0.1".parse().unwrap()];
    let mut e = Engine::new(cfg, 0, []);
    let now = Now { mono: Duration::ZERO, unix_ms: 0 };
    e.handle(now, "10.0.0.1:2425".parse().unwrap(), b"1:1:bob:pc:1:Bob\0\0");
    assert_eq!(e.peers().all().len(), 0, "from our own address");
    e.handle(now, "10.0.0.2:2425".parse().unwrap(), b"1:2:pi:raspberrypi:1:pi\0\0");
    assert_eq!(e.peers().all().len(), 1, "our name, another machine");
    // Another port on our own address is another program.
    e.handle(now, "10.0.0.1:2426".parse().unwrap(), b"1:3:pi:raspberrypi:1:pi\0\0");
    assert_eq!(e.peers().all().len(), 2);
}

/// iptux is told that we read UTF-8 (its four-section entry), after its
/// first answer and after each of our broadcast entries, and gets its own
/// UTF-8 copy of a broadcast before the legacy-charset one.
#[test]
fn iptux_is_told_we_read_utf8() {
    let mut cfg = Config::new("alice", "pc", "爱丽丝");
    cfg.targets = vec!["10.0.0.255:2425".parse().unwrap()];
    let mut e = Engine::new(cfg, 0, []);
    let now = |ms| Now { mono: Duration::from_millis(ms), unix_ms: 1_700_000_000_000 + ms as i64 };
    let tux: SocketAddr = "10.0.0.9:2425".parse().unwrap();
    e.command(now(0), Request::Start).unwrap();
    while e.poll_output().is_some() {}
    e.handle(now(1), tux, b"1_iptux 0.8.3:1:tux:tux-pc:259:tux\0\0icon-tux.png\0utf-8\0");
    let iptux_entries = |out: &[Output], mode: Mode| {
        out.iter()
            .filter(|o| match o {
                Output::Transmit(t) if t.dst == tux => Packet::decode(&t.payload).is_ok_and(|p| {
                    p.mode() == mode && p.payload == "爱丽丝\0\0\0utf-8\0".as_bytes() && !p.opts().has(Opts::UTF8OPT)
                }),
                _ => false,
            })
            .count()
    };
    let out: Vec<Output> = std::iter::from_fn(|| e.poll_output()).collect();
    assert_eq!(iptux_entries(&out, Mode::ANSENTRY), 1, "after its answer: {out:?}");
    e.handle_timeout(now(250));
    let out: Vec<Output> = std::iter::from_fn(|| e.poll_output()).collect();
    assert_eq!(iptux_entries(&out, Mode::ANSENTRY), 1, "after our BR_ENTRY: {out:?}");
    e.command(now(300), Request::SetAway(Some("lunch".into()))).unwrap();
    let out: Vec<Output> = std::iter::from_fn(|| e.poll_output()).collect();
    let absence = out.iter().any(|o| matches!(o, Output::Transmit(t) if t.dst == tux && Packet::decode(&t.payload).is_ok_and(|p| p.mode() == Mode::BR_ABSENCE && p.payload.ends_with(b"\0\0utf-8\0"))));
    assert!(absence, "{out:?}");
    e.command(now(400), Request::Broadcast { text: "通知".into() }).unwrap();
    let sends: Vec<(SocketAddr, Vec<u8>)> = std::iter::from_fn(|| e.poll_output())
        .filter_map(|o| match o {
            Output::Transmit(t) => Some((t.dst, t.payload)),
            _ => None,
        })
        .collect();
    assert_eq!(sends[0].0, tux, "iptux's copy first: {sends:?}");
    assert!(sends[0].1.ends_with("通知\0".as_bytes()));
    assert_eq!(sends[1].0, "10.0.0.255:2425".parse::<SocketAddr>().unwrap());
    assert!(sends[1].1.ends_with(&Charset::Gbk.encode("通知\0")));
}

/// iptux in GB18030 mode: its text is GB18030, which short Chinese often
/// reads as valid UTF-8 too; once a text of it was plainly GB18030, the
/// ambiguous ones are read as GB18030.
#[test]
fn iptux_in_gb18030_mode_is_read_right() {
    let mut e = Engine::new(Config::new("alice", "pc", "Alice"), 0, []);
    let now = Now { mono: Duration::ZERO, unix_ms: 0 };
    let tux: SocketAddr = "10.0.0.9:2425".parse().unwrap();
    let mut entry = b"1_iptux 0.8.3:1:tux:tux-pc:257:".to_vec();
    entry.extend_from_slice(&Charset::Gbk.encode("企鹅"));
    entry.extend_from_slice(b"\0\0icon-tux.png\0utf-8\0");
    e.handle(now, tux, &entry);
    assert_eq!(e.peers().all()[0].nick, "企鹅");
    // Told that we read UTF-8, iptux writes its messages to us in UTF-8
    // though its broadcast entries are GB18030: "通知" in UTF-8 reads as
    // GB18030 too ("閫氱煡", seen on the LAN before entries were kept apart).
    for t in ["通知", "测试"] {
        e.handle(now, tux, format!("1_iptux 0.8.3:2:tux:tux-pc:288:{t}\0").as_bytes());
    }
    let got: Vec<String> = std::iter::from_fn(|| e.poll_output())
        .filter_map(|o| match o {
            Output::Event(Event::Message(m)) => Some(m.text),
            _ => None,
        })
        .collect();
    assert_eq!(got, ["通知", "测试"]);
    // Not told (it had not heard us yet): its text is GB18030.
    let texts = ["hello from the iptux GUI, ünïcødé 你好", "眉毛", "通知", "ok"];
    for (i, t) in texts.iter().enumerate() {
        let mut m = format!("1_iptux 0.8.3:{}:tux:tux-pc:288:", 10 + i).into_bytes();
        m.extend_from_slice(&Charset::Gbk.encode(t));
        m.push(0);
        e.handle(now, tux, &m);
    }
    let got: Vec<String> = std::iter::from_fn(|| e.poll_output())
        .filter_map(|o| match o {
            Output::Event(Event::Message(m)) => Some(m.text),
            _ => None,
        })
        .collect();
    assert_eq!(got, texts);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    /// Any text in GBK's repertoire, broadcast by one Pigeon, arrives
    /// unchanged at another (it goes in GBK without UTF8OPT; short GBK is
    /// often valid UTF-8, so guessing would garble it).
    #[test]
    fn any_gbk_text_broadcast_between_pigeons_arrives_unchanged(text in gbk_text()) {
        let mut net = Net::new(2, 0.0, 0.0, 0, 3);
        net.start_all();
        net.run_until(6000);
        net.command(0, Request::Broadcast { text: text.clone() }).unwrap();
        net.run_until(6100);
        let got: Vec<&str> = net.nodes[1].events.iter().filter_map(|e| match e {
            Event::Message(m) => Some(m.text.as_str()),
            _ => None,
        }).collect();
        proptest::prop_assert_eq!(got, vec![text.as_str()]);
    }
}

/// Short strings (1–4 characters are the dangerous ones) mixing ASCII and
/// GBK two-byte characters.
fn gbk_text() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let gbk_char = (0x81u8..=0xfe, 0x40u8..=0xfe).prop_filter_map("a GBK character", |(lead, trail)| {
        if trail == 0x7f {
            return None;
        }
        // Two-byte GBK reads the same in GB18030.
        let bytes = [lead, trail];
        let s = Charset::Gbk.decode(&bytes);
        let c = s.chars().next()?;
        let bad = c == '\u{fffd}' || c.is_control() || ('\u{e000}'..='\u{f8ff}').contains(&c);
        (s.chars().count() == 1 && !bad).then_some(c)
    });
    let ascii = (0x20u8..0x7f).prop_map(char::from);
    proptest::collection::vec(prop_oneof![3 => gbk_char, 1 => ascii], 1..12)
        .prop_map(|v| v.into_iter().collect::<String>())
        .prop_filter("not only spaces", |s| !s.trim().is_empty())
}

/// A flood of BR_ENTRY, from one address or spoofed from thousands, makes
/// at most one answer per address per second and a bounded batch per
/// answer timer; the peer table stays bounded and its lookups indexed.
#[test]
fn an_entry_flood_is_answered_in_bounded_measure() {
    let mut e = Engine::new(Config::new("me", "pc", "Me"), 0, []);
    let now = |ms: u64| Now { mono: Duration::from_millis(ms), unix_ms: 1_700_000_000_000 + ms as i64 };
    let answers = |e: &mut Engine| {
        std::iter::from_fn(|| e.poll_output())
            .filter(|o| matches!(o, Output::Transmit(t) if Packet::decode(&t.payload).is_ok_and(|p| p.mode() == Mode::ANSENTRY)))
            .count()
    };
    // One address, a thousand times in a second: one answer.
    let one: SocketAddr = "10.0.0.9:2425".parse().unwrap();
    for i in 0..1000u64 {
        e.handle(now(i), one, format!("1:{i}:bob:pc:1:Bob\0\0").as_bytes());
    }
    e.handle_timeout(now(5000));
    assert_eq!(answers(&mut e), 1);
    // 20,000 spoofed addresses and names at once: one batch of answers per timer.
    for i in 0..20_000u64 {
        let from = SocketAddr::from(([10, 1 + (i / 65_000) as u8, (i / 250 % 250) as u8, (i % 250 + 1) as u8], 2425));
        e.handle(now(6000), from, format!("1:{i}:u{i}:h{i}:1:n\0\0").as_bytes());
    }
    e.handle_timeout(now(11_000));
    assert_eq!(answers(&mut e), ANSWER_BATCH);
    assert!(e.peers().all().len() <= peers::MAX_PEERS);
}

/// RELEASEFILES ends an offer only from the addressee's own address: a
/// stranger writing the addressee's name cannot withdraw its files.
#[test]
fn only_the_addressee_can_release_its_files() {
    let mut e = Engine::new(Config::new("a", "b", "c"), 0, []);
    let now = Now { mono: Duration::ZERO, unix_ms: 0 };
    let bob: SocketAddr = "10.0.0.9:2425".parse().unwrap();
    let eve: SocketAddr = "10.0.0.66:2425".parse().unwrap();
    e.handle(now, bob, b"1:1:bob:pc:1:Bob\0\0");
    while e.poll_output().is_some() {}
    let releases = |e: &mut Engine| {
        std::iter::from_fn(|| e.poll_output())
            .filter(|o| matches!(o, Output::Store { op: StoreOp::Release { .. }, .. }))
            .count()
    };
    // RELEASEFILES is 0x61 = 97.
    e.handle(now, eve, b"1:2:bob:pc:97:4242\0");
    assert_eq!(releases(&mut e), 0, "from another address");
    e.handle(now, bob, b"1:3:bob:pc:97:4242\0");
    assert_eq!(releases(&mut e), 1, "from bob's");
}

/// File IDs guard access to offered files: they differ between offers and
/// from the simulation's seeded generator (the system's CSPRNG).
#[test]
fn file_ids_are_unpredictable() {
    let a = file_ids(64);
    let b = file_ids(64);
    assert_ne!(a, b);
    assert!(a.iter().all(|&id| (1..1 << 31).contains(&id)));
    let mut sorted = a.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 64, "distinct");
}

/// A peer killed without BR_EXIT is asked after SILENCE and taken for gone
/// when it does not answer; one that is there answers and stays. F5
/// (Refresh) finds the gone one within seconds.
#[test]
fn silent_peers_are_asked_and_the_gone_dropped() {
    let mut net = Net::new(3, 0.0, 0.0, 0, 11);
    net.start_all();
    net.run_until(7000);
    let online =
        |net: &Net, i: usize| -> usize { net.nodes[i].engine.peers().all().iter().filter(|p| p.online).count() };
    assert_eq!(online(&net, 0), 2);
    net.nodes[2].down = true;
    // Quiet for less than SILENCE: still listed.
    net.run_until(7000 + SILENCE.as_millis() as u64 - 60_000);
    assert_eq!(online(&net, 0), 2);
    // After SILENCE, one minute of aging at most and three asks 3 s apart.
    net.run_until(7000 + SILENCE.as_millis() as u64 + 75_000);
    assert_eq!(online(&net, 0), 1, "the silent node is dropped, the live one kept");
    assert!(net.nodes[0].engine.peers().get(&net.key(1)).unwrap().online);
    let gone = net.nodes[0].events.iter().filter(|e| matches!(e, Event::PeerOffline(p) if p.key == net.key(2))).count();
    assert_eq!(gone, 1);
}

#[test]
fn refresh_drops_who_does_not_answer_within_seconds() {
    let mut net = Net::new(3, 0.0, 0.0, 0, 12);
    net.start_all();
    net.run_until(7000);
    net.nodes[2].down = true;
    net.command(1, Request::Refresh).unwrap();
    net.run_until(7000 + 10_500);
    assert!(!net.nodes[1].engine.peers().get(&net.key(2)).unwrap().online, "gone after F5");
    assert!(net.nodes[1].engine.peers().get(&net.key(0)).unwrap().online, "node 0 answered");
    // Node 0 did not press F5 and SILENCE has not passed: it still lists node 2.
    assert!(net.nodes[0].engine.peers().get(&net.key(2)).unwrap().online);
}

/// FeiQ's pasted picture: the text's reference reads `[picture]`, every
/// fragment is acknowledged (repeats too), and the whole picture becomes one
/// message naming where it was saved. A stranger's picture is not kept.
#[test]
fn feiq_pictures_are_put_together_and_recorded_once() {
    let mut e = Engine::new(Config::new("alice", "pc", "Alice"), 0, []);
    let now = |ms| Now { mono: Duration::from_millis(ms), unix_ms: 1_700_000_000_000 + ms as i64 };
    let feiq: SocketAddr = "10.0.0.7:2425".parse().unwrap();
    let v = "1_lbt6_0#128#F8B46AA55B28#0#0#0#4001#9";
    e.handle(now(0), feiq, format!("{v}:1:qa:qa-pc:1:QA\0\0").as_bytes());
    while e.poll_output().is_some() {}
    e.handle(
        now(10),
        feiq,
        format!("{v}:2:qa:qa-pc:288:look /~#>64ea4edd<B~{{/font;-16 0 0 0 400 0 0 0 134 0 0 2 32 x 8404992;}}\0")
            .as_bytes(),
    );
    let pic: Vec<u8> = b"\xff\xd8\xff\xe0".iter().copied().chain((0..1200u32).map(|i| i as u8)).collect();
    let mut fragments = Vec::new();
    for (i, c) in pic.chunks(512).enumerate() {
        let mut d = format!("{v}:{}:qa:qa-pc:2097344:", 3 + i).into_bytes();
        let f = ImageFragment {
            id: "64ea4edd".into(),
            total: pic.len() as u64,
            offset: i as u64 * 512,
            count: 3,
            index: i as u32 + 1,
            rest: vec!["0".into(), "2".into(), "0".into(), "00000000".into()],
            data: c,
        };
        f.encode(&mut d);
        fragments.push(d);
    }
    // Out of order, one twice.
    for d in [&fragments[2], &fragments[0], &fragments[0], &fragments[1], &fragments[1]] {
        e.handle(now(20), feiq, d);
    }
    let out: Vec<Output> = std::iter::from_fn(|| e.poll_output()).collect();
    let acks = out
        .iter()
        .filter(|o| matches!(o, Output::Transmit(t) if t.dst == feiq && Packet::decode(&t.payload).is_ok_and(|p| p.mode() == Mode::FEIQ_IMAGE_ACK)))
        .count();
    assert_eq!(acks, 5, "every fragment acknowledged, repeats too");
    let texts: Vec<&str> = out
        .iter()
        .filter_map(|o| if let Output::Event(Event::Message(m)) = o { Some(m.text.as_str()) } else { None })
        .collect();
    assert_eq!(texts, ["look [picture]"]);
    let saves: Vec<&SavePicture> =
        out.iter().filter_map(|o| if let Output::SavePicture(s) = o { Some(s) } else { None }).collect();
    assert_eq!(saves.len(), 1);
    assert_eq!(saves[0].data, pic);
    let s = saves[0].clone();
    assert!(e.picture(now(30), PictureFrom::Feiq(s.clone()), std::path::Path::new("/h/pictures/a.jpg")));
    let out: Vec<Output> = std::iter::from_fn(|| e.poll_output()).collect();
    let m = out.iter().find_map(|o| if let Output::Event(Event::Message(m)) = o { Some(m) } else { None }).unwrap();
    assert_eq!(m.text, format!("{PICTURE_PREFIX}/h/pictures/a.jpg"));
    assert_eq!(m.from.nick, "QA");
    assert!(out.iter().any(|o| matches!(o, Output::Store { op: StoreOp::Incoming(_), .. })));
    // A picture attributed to someone never heard is not kept.
    let stranger = SavePicture { peer: PeerKey::new("who", "where"), from: "10.0.0.99".parse().unwrap(), ..s };
    assert!(!e.picture(now(40), PictureFrom::Feiq(stranger), std::path::Path::new("/h/pictures/b.jpg")));
}

/// iptux's pictures come on TCP: recorded when its header names a peer
/// heard at that address; its group-window texts (0xFB) show like
/// broadcasts, once, unacknowledged.
#[test]
fn iptux_pictures_and_group_texts() {
    let mut e = Engine::new(Config::new("alice", "pc", "Alice"), 0, []);
    let now = |ms| Now { mono: Duration::from_millis(ms), unix_ms: 1_700_000_000_000 + ms as i64 };
    let tux: SocketAddr = "10.0.0.9:2425".parse().unwrap();
    e.handle(now(0), tux, b"1_iptux 0.8.3:1:tux:tux-pc:259:tux\0\0icon-tux.png\0utf-8\0");
    while e.poll_output().is_some() {}
    let header = b"1_iptux 0.8.3:9:tux:tux-pc:765:\0".to_vec();
    let from_tux = PictureFrom::Iptux { from: tux.ip(), header: header.clone() };
    assert!(e.picture(now(5), from_tux, std::path::Path::new("/h/pictures/p.png")));
    let stranger = PictureFrom::Iptux { from: "10.0.0.66".parse().unwrap(), header };
    assert!(!e.picture(now(6), stranger, std::path::Path::new("/h/pictures/q.png")));
    for _ in 0..2 {
        e.handle(now(10), tux, "1_iptux 0.8.3:10:tux:tux-pc:1019:组里的话\0".as_bytes());
    }
    let out: Vec<Output> = std::iter::from_fn(|| e.poll_output()).collect();
    let msgs: Vec<&Incoming> =
        out.iter().filter_map(|o| if let Output::Event(Event::Message(m)) = o { Some(m) } else { None }).collect();
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert_eq!(msgs[0].text, format!("{PICTURE_PREFIX}/h/pictures/p.png"));
    assert_eq!(msgs[0].from.key, PeerKey::new("tux", "tux-pc"));
    assert!(!msgs[0].broadcast());
    assert_eq!(msgs[1].text, "组里的话");
    assert!(msgs[1].broadcast());
    assert!(!out.iter().any(|o| matches!(o, Output::Transmit(t) if t.dst == tux)), "nothing answers a group text");
}

/// Two Pigeons: entries announce ENCRYPTOPT, the first message waits for
/// the key (GETPUBKEY / ANSPUBKEY, under loss), then goes encrypted and
/// signed, and arrives verified; what goes on the wire holds no plain text.
#[test]
fn pigeon_to_pigeon_is_encrypted_and_signed_under_loss() {
    for seed in 0..8 {
        let mut net = Net::new(2, 0.2, 0.05, 3, 100 + seed);
        net.with_keys(0);
        net.with_keys(1);
        net.start_all();
        net.loss = 0.0;
        net.run_until(7000);
        net.loss = 0.2;
        let ids = net
            .command(0, Request::Send { to: vec![net.key(1)], text: "机密 secret plans".into(), sealed: false })
            .unwrap();
        net.run_until(40_000);
        let got: Vec<&Incoming> =
            net.nodes[1].events.iter().filter_map(|e| if let Event::Message(m) = e { Some(m) } else { None }).collect();
        assert_eq!(got.len(), 1, "seed {seed}");
        assert_eq!(got[0].text, "机密 secret plans");
        assert!(got[0].security.encrypted(), "seed {seed}: {:?}", got[0].security);
        let delivered = net.nodes[0]
            .events
            .iter()
            .any(|e| matches!(e, Event::Receipt { id, status: Delivery::Delivered, .. } if *id == ids[0]));
        assert!(delivered, "seed {seed}");
        for (_, from, dg) in &net.log {
            assert!(!dg.windows(6).any(|w| w == b"secret"), "seed {seed}: plain text on the wire from node {from}");
        }
    }
    // Without loss the receiver holds the sender's key by then: verified.
    let mut net = Net::new(2, 0.0, 0.0, 0, 7);
    net.with_keys(0);
    net.with_keys(1);
    net.start_all();
    net.run_until(7000);
    net.command(0, Request::Send { to: vec![net.key(1)], text: "first".into(), sealed: false }).unwrap();
    net.run_until(9000);
    net.command(0, Request::Send { to: vec![net.key(1)], text: "second".into(), sealed: false }).unwrap();
    net.run_until(11_000);
    let sec: Vec<Security> = net.nodes[1]
        .events
        .iter()
        .filter_map(|e| if let Event::Message(m) = e { Some(m.security) } else { None })
        .collect();
    assert_eq!(sec, [Security::Verified, Security::Verified]);
}

/// A peer that announces ENCRYPTOPT but never answers GETPUBKEY: nothing
/// is sent in plain text; the send fails with the reason. With
/// `plaintext_fallback` it goes plain after the wait.
#[test]
fn no_key_no_plain_text() {
    for fallback in [false, true] {
        let mut cfg = Config::new("a", "pc", "A");
        cfg.keys = Some(std::sync::Arc::new(test_keys(0)));
        cfg.plaintext_fallback = fallback;
        let mut e = Engine::new(cfg, 0, []);
        let now = |ms: u64| Now { mono: Duration::from_millis(ms), unix_ms: 1_700_000_000_000 + ms as i64 };
        let mute: SocketAddr = "10.0.0.9:2425".parse().unwrap();
        let entry = format!("1:1:mute:pc:{}:Mute\0\0", 1 | Opts::ENCRYPTOPT);
        e.handle(now(0), mute, entry.as_bytes());
        while e.poll_output().is_some() {}
        let ids = e
            .command(
                now(10),
                Request::Send { to: vec![PeerKey::new("mute", "pc")], text: "hush".into(), sealed: false },
            )
            .unwrap();
        let mut out = Vec::new();
        for t in (10..20_000).step_by(100) {
            // It is there (it answers entries), it just gives no key.
            if t % 1000 == 10 {
                e.handle(now(t), mute, format!("1:{t}:mute:pc:{}:Mute\0\0", 3 | Opts::ENCRYPTOPT).as_bytes());
            }
            e.handle_timeout(now(t));
            out.extend(std::iter::from_fn(|| e.poll_output()));
        }
        let sent: Vec<Packet<'_>> = out
            .iter()
            .filter_map(|o| if let Output::Transmit(t) = o { Packet::decode(&t.payload).ok() } else { None })
            .collect();
        let asks = sent.iter().filter(|p| p.mode() == Mode::GETPUBKEY).count();
        let plain = sent.iter().any(|p| p.mode() == Mode::SENDMSG && p.payload.starts_with(b"hush"));
        assert!(asks >= 3, "asked for the key again: {asks}");
        assert_eq!(plain, fallback, "plain text only with plaintext_fallback");
        let failed = out.iter().any(|o| matches!(o, Output::Event(Event::SendFailed { id, reason, .. }) if *id == ids[0] && reason.contains("gave no public key")));
        assert_eq!(failed, !fallback);
    }
    // A peer that falls silent instead is gone like any other: the message
    // waits in the outbox (still unwritten), it does not fail.
    let mut cfg = Config::new("a", "pc", "A");
    cfg.keys = Some(std::sync::Arc::new(test_keys(0)));
    let mut e = Engine::new(cfg, 0, []);
    let now = |ms: u64| Now { mono: Duration::from_millis(ms), unix_ms: 1_700_000_000_000 + ms as i64 };
    let gone: SocketAddr = "10.0.0.8:2425".parse().unwrap();
    e.handle(now(0), gone, format!("1:1:gone:pc:{}:Gone\0\0", 1 | Opts::ENCRYPTOPT).as_bytes());
    let ids = e
        .command(now(10), Request::Send { to: vec![PeerKey::new("gone", "pc")], text: "later".into(), sealed: false })
        .unwrap();
    let mut out = Vec::new();
    for t in (10..20_000).step_by(100) {
        e.handle_timeout(now(t));
        out.extend(std::iter::from_fn(|| e.poll_output()));
    }
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Event(Event::Receipt { id, status: Delivery::Queued, .. }) if *id == ids[0])));
    assert!(!out.iter().any(|o| matches!(o, Output::Event(Event::SendFailed { .. }))));
    assert!(!out.iter().any(
        |o| matches!(o, Output::Transmit(t) if Packet::decode(&t.payload).is_ok_and(|p| p.mode() == Mode::SENDMSG))
    ));
}

/// A key that changes is flagged once (event, stored) and still used;
/// messages signed with it show so. A DecryptErr answer fails the send even
/// though the retry is acknowledged, and the stale key is dropped.
#[test]
fn key_change_and_decrypt_err() {
    let mut net = Net::new(2, 0.0, 0.0, 0, 9);
    net.with_keys(0);
    net.with_keys(1);
    net.start_all();
    net.run_until(7000);
    net.command(0, Request::Send { to: vec![net.key(1)], text: "hello".into(), sealed: false }).unwrap();
    net.run_until(9000);
    // Node 1 gets a new key pair (a reinstall): its next ANSPUBKEY differs.
    let mut cfg = net.nodes[1].engine.config().clone();
    let mut k = test_keys(1);
    k.rsa2048 = test_keys(0).rsa2048; // another 2048-bit key than before
    cfg.keys = Some(std::sync::Arc::new(k));
    net.nodes[1].engine = Engine::new(cfg, 1_000_000, []);
    net.command(1, Request::Start).unwrap();
    net.run_until(16_000);
    // Node 0 still holds the old key: its message cannot be read; node 1
    // answers DecryptErr, and node 0's send fails with the reason.
    let ids = net.command(0, Request::Send { to: vec![net.key(1)], text: "again".into(), sealed: false }).unwrap();
    net.run_until(20_000);
    let why = net.nodes[0].events.iter().find_map(|e| match e {
        Event::SendFailed { id, reason, .. } if *id == ids[0] => Some(reason.clone()),
        _ => None,
    });
    assert!(why.as_deref().is_some_and(|r| r.contains("DecryptErr")), "{why:?}");
    assert!(net.nodes[1].engine.stats().undecryptable >= 1);
    // Sent again: the new key is fetched, flagged as a change, and used.
    net.command(0, Request::Send { to: vec![net.key(1)], text: "third".into(), sealed: false }).unwrap();
    net.run_until(26_000);
    let changed = net.nodes[0].events.iter().filter(|e| matches!(e, Event::KeyChanged { .. })).count();
    assert_eq!(changed, 1);
    assert!(net.nodes[1].events.iter().any(|e| matches!(e, Event::Message(m) if m.text == "third")));
}

/// IP Messenger 4.x's GETPUBKEY (`65920006`) is answered with our 2048-bit
/// key and capability `41920006`-compatible word; an old peer's (RSA-1024
/// only) with the 1024-bit one; one we share nothing with is ignored.
#[test]
fn getpubkey_is_answered_with_the_right_key() {
    let mut cfg = Config::new("a", "pc", "A");
    cfg.keys = Some(std::sync::Arc::new(test_keys(0)));
    let mut e = Engine::new(cfg, 0, []);
    let now = |ms: u64| Now { mono: Duration::from_millis(ms), unix_ms: 1_700_000_000_000 + ms as i64 };
    let ip = |i: u8| SocketAddr::from(([10, 0, 0, i], 2425));
    let answer = |e: &mut Engine, t: u64, from: SocketAddr, capa: &str| -> Option<PublicKey> {
        e.handle(now(t), from, format!("1:{t}:x{t}:pc:{}:{capa}\0", 0x72 | Opts::AUTORETOPT).as_bytes());
        std::iter::from_fn(|| e.poll_output()).find_map(|o| match o {
            Output::Transmit(t) => Packet::decode(&t.payload)
                .ok()
                .filter(|p| p.mode() == Mode::ANSPUBKEY)
                .map(|p| PublicKey::decode_anspubkey(p.payload).unwrap()),
            _ => None,
        })
    };
    let k = answer(&mut e, 1, ip(1), "65920006").unwrap();
    assert_eq!(k.size(), pigeon_protocol::pubkey::KeySize::Rsa2048);
    assert_eq!(k.negotiate(Capa::IPMSG_4).unwrap().capa(), Capa(0x4190_0004));
    let k = answer(&mut e, 2, ip(2), "21002").unwrap();
    assert_eq!(k.size(), pigeon_protocol::pubkey::KeySize::Rsa1024);
    assert!(answer(&mut e, 3, ip(3), "8").is_none());
}

/// FeiQ announces ENCRYPTOPT but may give no key: it gets plain text after
/// the wait (as before Pigeon encrypted), unless encryption is required.
#[test]
fn feiq_without_a_key_gets_plain_text_unless_required() {
    for required in [false, true] {
        let mut cfg = Config::new("a", "pc", "A");
        cfg.keys = Some(std::sync::Arc::new(test_keys(0)));
        cfg.require_encryption = required;
        let mut e = Engine::new(cfg, 0, []);
        let now = |ms: u64| Now { mono: Duration::from_millis(ms), unix_ms: 1_700_000_000_000 + ms as i64 };
        let feiq: SocketAddr = "10.0.0.7:2425".parse().unwrap();
        let v = "1_lbt6_0#128#F8B46AA55B28#0#0#0#4001#9";
        e.handle(now(0), feiq, format!("{v}:1:qa:qa-pc:{}:QA\0\0", 1 | Opts::ENCRYPTOPT).as_bytes());
        while e.poll_output().is_some() {}
        e.command(
            now(10),
            Request::Send { to: vec![PeerKey::new("qa", "qa-pc")], text: "hi feiq".into(), sealed: false },
        )
        .unwrap();
        let mut out = Vec::new();
        for t in (10..12_000).step_by(100) {
            if t % 1000 == 10 {
                e.handle(now(t), feiq, format!("{v}:{t}:qa:qa-pc:{}:QA\0\0", 3 | Opts::ENCRYPTOPT).as_bytes());
            }
            e.handle_timeout(now(t));
            out.extend(std::iter::from_fn(|| e.poll_output()));
        }
        let plain = out.iter().any(|o| {
            matches!(o, Output::Transmit(t) if Packet::decode(&t.payload).is_ok_and(|p| p.mode() == Mode::SENDMSG && p.payload.starts_with(b"hi feiq")))
        });
        assert_eq!(plain, !required);
    }
}

/// A key is taken only from the peer's own address, and only when asked;
/// the same key under a capability word that offers no cipher does not
/// turn the next message into plain text.
#[test]
fn keys_from_elsewhere_or_downgraded_are_refused() {
    let mut cfg = Config::new("a", "pc", "A");
    cfg.keys = Some(std::sync::Arc::new(test_keys(0)));
    let mut e = Engine::new(cfg, 0, []);
    let now = |ms: u64| Now { mono: Duration::from_millis(ms), unix_ms: 1_700_000_000_000 + ms as i64 };
    let bob: SocketAddr = "10.0.0.9:2425".parse().unwrap();
    let eve: SocketAddr = "10.0.0.66:2425".parse().unwrap();
    let vectors = include_str!("../../protocol/tests/crypto/vectors.txt");
    let v = |n: &str| {
        vectors.lines().find_map(|l| l.strip_prefix(n).and_then(|r| r.strip_prefix(' '))).unwrap().trim().to_string()
    };
    e.handle(now(0), bob, format!("1:1:bob:pc:{}:Bob\0\0", 1 | Opts::ENCRYPTOPT).as_bytes());
    // Before anyone asked: ignored.
    e.handle(now(5), bob, format!("1:2:bob:pc:115:{}\0", v("anspubkey_body_peer")).as_bytes());
    assert!(e.pubkey(&PeerKey::new("bob", "pc")).is_none());
    let bobk = PeerKey::new("bob", "pc");
    e.command(now(10), Request::Send { to: vec![bobk.clone()], text: "one".into(), sealed: false }).unwrap();
    while e.poll_output().is_some() {}
    // Eve answers in Bob's name from her address: ignored.
    e.handle(now(20), eve, format!("1:3:bob:pc:115:{}\0", v("anspubkey_body_pigeon")).as_bytes());
    assert!(e.pubkey(&bobk).is_none(), "a key from another address");
    e.handle(now(30), bob, format!("1:4:bob:pc:115:{}\0", v("anspubkey_body_peer")).as_bytes());
    let out: Vec<Output> = std::iter::from_fn(|| e.poll_output()).collect();
    let sealed = |out: &[Output]| {
        out.iter().any(|o| matches!(o, Output::Transmit(t) if Packet::decode(&t.payload).is_ok_and(|p| p.mode() == Mode::SENDMSG && p.opts().has(Opts::ENCRYPTOPT))))
    };
    assert!(sealed(&out), "the message went encrypted once the key came");
    // The same modulus, a capability word with no cipher: the next message waits.
    let body = v("anspubkey_body_peer");
    let downgraded = format!("2:{}", body.split_once(':').unwrap().1);
    e.handle(now(40), bob, format!("1:5:bob:pc:115:{downgraded}\0").as_bytes());
    e.command(now(50), Request::Send { to: vec![bobk], text: "two".into(), sealed: false }).unwrap();
    let out: Vec<Output> = std::iter::from_fn(|| e.poll_output()).collect();
    assert!(!out.iter().any(|o| matches!(o, Output::Transmit(t) if Packet::decode(&t.payload).is_ok_and(|p| p.mode() == Mode::SENDMSG && p.payload.starts_with(b"two")))), "not plain");
}

/// A body whose signature does not verify (the sender made new keys) is
/// not acknowledged, and the sender's key is asked for again.
#[test]
fn a_bad_signature_asks_for_the_key_again() {
    let mut net = Net::new(2, 0.0, 0.0, 0, 11);
    net.with_keys(0);
    net.with_keys(1);
    net.start_all();
    net.run_until(7000);
    net.command(0, Request::Send { to: vec![net.key(1)], text: "first".into(), sealed: false }).unwrap();
    net.run_until(9000);
    // Node 0 makes new keys; node 1 still holds the old public key of node 0.
    let mut cfg = net.nodes[0].engine.config().clone();
    let mut k = test_keys(0);
    k.rsa2048 = test_keys(1).rsa2048;
    cfg.keys = Some(std::sync::Arc::new(k));
    net.nodes[0].engine = Engine::new(cfg, 2_000_000, []);
    net.command(0, Request::Start).unwrap();
    net.run_until(16_000);
    let ids =
        net.command(0, Request::Send { to: vec![net.key(1)], text: "after reinstall".into(), sealed: false }).unwrap();
    net.run_until(30_000);
    // Not shown unverified: DecryptErr (the sender says to send again), and
    // node 1 fetched the new key, flagged as a change.
    assert!(!net.nodes[1].events.iter().any(|e| matches!(e, Event::Message(m) if m.text == "after reinstall")));
    assert!(net.nodes[0].events.iter().any(|e| matches!(e, Event::SendFailed { id, .. } if *id == ids[0])));
    assert!(net.nodes[1].events.iter().any(|e| matches!(e, Event::KeyChanged { .. })));
    net.command(0, Request::Send { to: vec![net.key(1)], text: "again".into(), sealed: false }).unwrap();
    net.run_until(40_000);
    let m = net.nodes[1].events.iter().find_map(|e| match e {
        Event::Message(m) if m.text == "again" => Some(m.security),
        _ => None,
    });
    assert_eq!(m, Some(Security::KeyChanged), "sent again: verified with the new key, flagged");
}
