//! The sans-I/O engine (`pigeon::engine::Engine`) driven by a sequence of
//! steps read from the input, each `[ctl] [kind] [len] len bytes` (`len`
//! 255: the rest of the input). `ctl` picks the source (8 addresses among
//! 127.0.0.x / 10.0.0.x, ports 2425 / 2426), how far the fake clock moves
//! (0 ms … 1 day; one choice moves the wall clock back an hour) and whether
//! `handle_timeout` runs after the step. `kind` picks a raw datagram, a
//! datagram built from the bytes (a real client's version field, one of a
//! few user@host names, a mode from the protocol's table, option flags,
//! then the bytes as payload: far more of them reach the handlers), or a
//! user request (send, offer, broadcast, away, open, decline, info, quit…
//! to a peer of the table). Outputs are drained after every step.
//!
//! Beyond "no panic": every datagram the engine sends decodes as a packet
//! with our own user and host and goes to an address it was given (a
//! source, a broadcast target or a probe), never more than 10,000 outputs
//! per step, the peer table stays within `MAX_PEERS` and within the number
//! of datagrams handled, `unacknowledged()` never exceeds the recipients of
//! accepted sends, and after `handle_timeout(now)` the next timeout is
//! later than `now` (a driver would otherwise spin).
#![no_main]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use pigeon::engine::peers::MAX_PEERS;
use pigeon::engine::{Config, Engine, Now, OfferFile, Output, PeerKey, Request, Transmit};
use pigeon_protocol::packet::MAX_DATAGRAM;
use pigeon_protocol::{Command, Mode, Opts, Packet};

/// Where datagrams come from: two hosts on loopback, two on a LAN, and
/// both ports (2426: a second instance, or a client on another port).
const SOURCES: [([u8; 4], u16); 8] = [
    ([127, 0, 0, 1], 2425),
    ([127, 0, 0, 1], 2426),
    ([127, 0, 0, 2], 2425),
    ([127, 0, 0, 3], 2425),
    ([10, 0, 0, 1], 2425),
    ([10, 0, 0, 1], 2426),
    ([10, 0, 0, 2], 2425),
    ([10, 0, 0, 3], 2426),
];

/// Our own address: in no step's source (own broadcasts are not fuzzed).
const LOCAL: [u8; 4] = [10, 0, 0, 99];
/// The broadcast target.
const TARGET: ([u8; 4], u16) = ([10, 0, 0, 255], 2425);

/// Version fields of the clients the engine tells apart.
const VERSIONS: [&str; 6] = [
    "1",
    "1_lbt6_0#128#F8B46AA55B28#0#0#0#4001#9",
    "1_lbt4_10#128#0C54A5C0FFEE#0#0#0",
    "1_iptux 0.9.4",
    "1_pigeon 0.1.0",
    "1_ipmsg_clone",
];

/// A few names, some differing only in case or host, so peers collide.
const NAMES: [(&str, &str); 6] =
    [("bob", "pc"), ("alice", "lap"), ("bob", "PC2"), ("Bob", "pc"), ("张三", "办公室"), ("pi", "raspberrypi")];

/// Modes the engine handles (and a few it ignores).
const MODES: [Mode; 20] = [
    Mode::NOOPERATION,
    Mode::BR_ENTRY,
    Mode::BR_EXIT,
    Mode::ANSENTRY,
    Mode::BR_ABSENCE,
    Mode::BR_ISGETLIST2,
    Mode::SENDMSG,
    Mode::RECVMSG,
    Mode::READMSG,
    Mode::ANSREADMSG,
    Mode::DELMSG,
    Mode::GETINFO,
    Mode::SENDINFO,
    Mode::GETABSENCEINFO,
    Mode::SENDABSENCEINFO,
    Mode::RELEASEFILES,
    Mode::FEIQ_SHAKE,
    Mode::FEIQ_IMAGE,
    Mode::GETPUBKEY,
    Mode::FEIQ_TYPING,
];

/// Option flags, one per bit of a byte.
const FLAGS: [u32; 8] = [
    Opts::SENDCHECKOPT, // ABSENCEOPT on entries
    Opts::SECRETOPT,
    Opts::BROADCASTOPT,
    Opts::AUTORETOPT,
    Opts::NOADDLISTOPT,
    Opts::READCHECKOPT,
    Opts::UTF8OPT,
    Opts::CAPUTF8OPT | Opts::FILEATTACHOPT,
];

const MAX_OUTPUTS_PER_STEP: usize = 10_000;

fn source(i: u8) -> SocketAddr {
    let (ip, port) = SOURCES[i as usize % SOURCES.len()];
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)
}

fn target() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(TARGET.0)), TARGET.1)
}

/// How far a step moves the clocks: (monotonic, wall clock in ms).
fn advance(sel: u8) -> (Duration, i64) {
    let ms: u64 = match sel & 7 {
        0 => 0,
        1 => 1,
        2 => 120,
        3 => 800,
        4 => 1_100,
        5 => 7_500,
        6 => 61_000,
        // A day: outbox and offer expiry checks.
        _ => 24 * 3600 * 1000,
    };
    (Duration::from_millis(ms), ms as i64)
}

/// A datagram built from fields: `[version] [packet no] [name] [mode] [flags] payload…`.
fn build(bytes: &[u8]) -> Vec<u8> {
    let b = |i: usize| bytes.get(i).copied().unwrap_or(0);
    let version = VERSIONS[b(0) as usize % VERSIONS.len()];
    // Small numbers repeat (duplicates, acks of our numbers are large).
    let no = match b(1) {
        0 => 1_700_000_000 + u64::from(b(2)),
        n => u64::from(n),
    };
    let (user, host) = NAMES[b(3) as usize % NAMES.len()];
    let mode = MODES[b(4) as usize % MODES.len()];
    let opts = (0..8).filter(|i| b(5) & (1 << i) != 0).fold(0, |o, i| o | FLAGS[i]);
    let mut out = format!("{version}:{no}:{user}:{host}:{}:", Command::new(mode, opts).0).into_bytes();
    out.extend_from_slice(bytes.get(6..).unwrap_or_default());
    out
}

struct Driver {
    engine: Engine,
    now: Now,
    /// Addresses the engine was given (sources, target, probes).
    known: Vec<SocketAddr>,
    datagrams: usize,
    /// Recipients of the sends the engine accepted.
    accepted: usize,
}

impl Driver {
    fn check_transmit(&self, t: &Transmit) {
        assert!(self.known.contains(&t.dst), "sent to {} which the engine was never given", t.dst);
        // A retransmission is padded with 64 NULs (IPMsg does so), which may
        // take a message that just fitted past the decoder's limit.
        if t.payload.len() > MAX_DATAGRAM {
            assert!(t.payload.len() <= MAX_DATAGRAM + 64, "datagram of {} bytes", t.payload.len());
            return;
        }
        let p = Packet::decode(&t.payload).unwrap_or_else(|e| panic!("own datagram does not decode: {e}"));
        assert_eq!(p.user, b"me");
        assert_eq!(p.host, b"host");
        assert!(p.packet_number().is_some(), "own packet number is numeric");
    }

    /// Drains the outputs and checks the bounds.
    fn drain(&mut self) {
        let mut n = 0;
        while let Some(o) = self.engine.poll_output() {
            n += 1;
            assert!(n < MAX_OUTPUTS_PER_STEP, "more than {MAX_OUTPUTS_PER_STEP} outputs in one step");
            match &o {
                Output::Transmit(t) => self.check_transmit(t),
                Output::Store { then, .. } => then.iter().for_each(|t| self.check_transmit(t)),
                Output::Event(_) => {}
                // A picture put together from fragments stays within its bound.
                Output::SavePicture(s) => {
                    assert!(s.data.len() as u64 <= pigeon::engine::pictures::MAX_PICTURE, "a picture over the limit")
                }
            }
        }
        let peers = self.engine.peers().all().len();
        assert!(peers <= MAX_PEERS);
        assert!(peers <= self.datagrams, "{peers} peers from {} datagrams", self.datagrams);
        assert!(
            self.engine.unacknowledged() <= self.accepted,
            "{} unacknowledged of {} sent",
            self.engine.unacknowledged(),
            self.accepted
        );
    }

    fn timeout(&mut self) {
        self.engine.handle_timeout(self.now);
        if let Some(t) = self.engine.poll_timeout() {
            assert!(t > self.now.mono, "after handle_timeout({:?}) the next timeout is {t:?}", self.now.mono);
        }
    }

    fn request(&mut self, bytes: &[u8]) {
        let b = |i: usize| bytes.get(i).copied().unwrap_or(0);
        let text = String::from_utf8_lossy(bytes.get(2..).unwrap_or_default()).into_owned();
        let keys: Vec<_> = self.engine.peers().all().iter().map(|p| p.key.clone()).collect();
        let key = |i: u8| (!keys.is_empty()).then(|| keys[i as usize % keys.len()].clone());
        let sealed = b(1) & 0x80 != 0;
        let req = match b(0) % 16 {
            0..=3 => Request::Send { to: key(b(1)).into_iter().collect(), text, sealed },
            4 => Request::Send { to: key(b(1)).into_iter().chain(key(b(1) / 2 + 1)).collect(), text, sealed },
            5 => Request::Offer {
                to: key(b(1)).into_iter().collect(),
                text: String::new(),
                sealed,
                files: vec![OfferFile {
                    path: "/nonexistent/fuzz".into(),
                    name: text,
                    dir: b(1) & 1 != 0,
                    size: u64::from(b(1)) << 20,
                    mtime: 1_700_000_000,
                }],
            },
            6 => Request::Broadcast { text },
            7 => Request::SetAway(Some(text)),
            8 => Request::SetAway(None),
            // A packet number a client gives is checked (PacketNo) before
            // it reaches the engine: what the check refuses never does.
            9 => match text.parse() {
                Ok(packet_no) => Request::Open {
                    peer: key(b(1)).unwrap_or_else(|| PeerKey::new("x", "y")),
                    packet_no,
                    read_check: sealed,
                },
                Err(_) => return,
            },
            10 => match (key(b(1)), text.parse()) {
                (Some(peer), Ok(packet_no)) => Request::Decline { peer, packet_no },
                _ => return,
            },
            11 => match key(b(1)) {
                Some(peer) => Request::GetInfo(peer),
                None => return,
            },
            12 => Request::SetName { nick: text, group: String::from_utf8_lossy(&bytes[..bytes.len().min(2)]).into() },
            13 => Request::Quit,
            14 => Request::Probe(bytes.iter().skip(1).take(16).map(|&i| source(i)).collect()),
            _ => Request::MarkSeen(key(b(1))),
        };
        let to = match &req {
            Request::Send { to, .. } | Request::Offer { to, .. } => to.len(),
            _ => 0,
        };
        if let Ok(ids) = self.engine.command(self.now, req) {
            assert!(ids.len() <= to);
            self.accepted += ids.len();
        }
    }
}

/// Splits the input into steps and runs them.
fn run(mut data: &[u8]) {
    let mut cfg = Config::new("me", "host", "Me");
    cfg.local = vec![IpAddr::V4(Ipv4Addr::from(LOCAL))];
    cfg.targets = vec![target()];
    let mut known: Vec<SocketAddr> = (0..SOURCES.len() as u8).map(source).collect();
    known.push(target());
    let now = Now { mono: Duration::from_secs(1), unix_ms: 1_700_000_000_000 };
    let mut d = Driver { engine: Engine::new(cfg, 0, []), now, known, datagrams: 0, accepted: 0 };
    d.engine.command(d.now, Request::Start).expect("start");
    d.drain();
    while let [ctl, kind, len, rest @ ..] = data {
        let n = if *len == 255 { rest.len() } else { (*len as usize).min(rest.len()) };
        let (bytes, tail) = rest.split_at(n);
        data = tail;
        let (mono, mut wall) = advance(ctl >> 3);
        if (ctl >> 3) & 7 == 1 && kind & 0x80 != 0 {
            wall = -3_600_000; // the wall clock is set back
        }
        d.now = Now { mono: d.now.mono + mono, unix_ms: d.now.unix_ms + wall };
        let from = source(*ctl);
        match kind % 4 {
            0 | 1 => {
                d.datagrams += 1;
                d.engine.handle(d.now, from, &build(bytes));
            }
            2 => {
                d.datagrams += 1;
                d.engine.handle(d.now, from, bytes);
            }
            _ => d.request(bytes),
        }
        d.drain();
        if ctl & 0x40 != 0 {
            d.timeout();
            d.drain();
        }
    }
    // The rest of the day: every timer runs out.
    d.now = Now { mono: d.now.mono + Duration::from_secs(86_400), unix_ms: d.now.unix_ms + 86_400_000 };
    d.timeout();
    d.drain();
}

fuzz_target!(|data: &[u8]| run(data));
