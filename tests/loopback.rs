//! The real binary on loopback: several daemons bound to 127.0.0.x with
//! explicit unicast targets (never a broadcast), on port 42425 so that a
//! real IP Messenger client on 2425 does not interfere. Every process is
//! killed by PID when its guard drops; every wait is bounded.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{pigeon, wait_for, Daemon};
use serde_json::{json, Value};

fn nicks(peers: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = peers.iter().map(|p| p["nick"].as_str().unwrap_or("").to_string()).collect();
    v.sort();
    v
}

#[test]
fn discovery_messages_broadcast_sealed_away_and_exit() {
    let a = Daemon::start("127.0.0.2", "alice", "爱丽丝", &["127.0.0.3", "127.0.0.4"]);
    let b = Daemon::start("127.0.0.3", "bob", "Bob", &["127.0.0.2", "127.0.0.4"]);
    let mut c = Daemon::start("127.0.0.4", "carol", "Carol", &["127.0.0.2", "127.0.0.3"]);
    wait_for(|| a.peers().len() == 2 && b.peers().len() == 2 && c.peers().len() == 2, "all three to see each other");
    assert_eq!(nicks(&a.peers()), ["Bob", "Carol"]);
    let p = a.peers().into_iter().find(|p| p["nick"] == "Bob").unwrap();
    assert_eq!(p["addr"], "127.0.0.3:42425");
    assert_eq!(
        (p["user"].as_str(), p["client"].as_str(), p["away"].as_bool()),
        (Some("bob"), Some("pigeon"), Some(false))
    );

    // A message with a receipt; exit code 0 when delivered.
    let out = a.cli(&["send", "Bob", "你好, Bob — café", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(r["peer"].as_str().unwrap().starts_with("bob@"), "{r}");
    assert_eq!(r["status"], "delivered");
    let got = b.history(&["--limit", "5"]);
    assert!(got.iter().any(|m| m["text"] == "你好, Bob — café" && m["direction"] == "in"), "{got:?}");

    // Several recipients, by group-less specs.
    let results = a.json(&["send", "Bob", "127.0.0.4", "to both", "--json"]);
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|r| r["status"] == "delivered"), "{results:?}");

    // A broadcast reaches both, flagged, without receipts.
    assert!(a.cli(&["broadcast", "office closes at 5"]).status.success());
    wait_for(|| c.history(&["--search", "office closes"]).len() == 1, "the broadcast at Carol");
    let m = &c.history(&["--search", "office closes"])[0];
    assert_eq!(m["broadcast"], true);
    // Alice keeps one record of it, to everyone, without a delivery state.
    let mine = a.history(&["--search", "office closes"]);
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_eq!((&mine[0]["peer"]["nick"], &mine[0]["state"]), (&json!("everyone"), &json!(null)));
    let text = String::from_utf8(a.cli(&["history", "everyone"]).stdout).unwrap();
    assert!(text.contains("→ everyone [broadcast]: office closes at 5") && !text.contains("delivered"), "{text}");

    // What the user has seen (the chat tells the node) becomes read: one
    // peer's messages, or the broadcasts; a request naming neither is refused.
    let state = |d: &Daemon, s: &str| d.history(&["--search", s])[0]["state"].as_str().unwrap().to_string();
    assert_eq!(state(&b, "你好, Bob"), "unread");
    assert_eq!(state(&c, "office closes"), "unread");
    let host = m["peer"]["host"].clone();
    assert_eq!(b.control(&json!({"op": "seen", "user": "alice", "host": host}))["ok"], true);
    assert_eq!(c.control(&json!({"op": "seen", "broadcasts": true}))["ok"], true);
    wait_for(|| state(&b, "你好, Bob") == "read" && state(&c, "office closes") == "read", "seen to mark read");
    assert_eq!(state(&c, "to both"), "unread", "Carol has not seen Alice's private message");
    assert_eq!(c.control(&json!({"op": "seen", "user": "alice"}))["ok"], false);

    // Sealed: Bob opens it (READMSG) and Alice's history says read.
    let out = a.cli(&["send", "Bob", "--sealed", "open me", "--json"]);
    assert!(out.status.success());
    let sealed = b.history(&["--search", "open me"]);
    assert_eq!(sealed[0]["sealed"], true);
    let listed = b.cli(&["open"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains(sealed[0]["packet_no"].as_str().unwrap()));
    let opened = b.cli(&["open", sealed[0]["packet_no"].as_str().unwrap()]);
    assert!(opened.status.success(), "{}", String::from_utf8_lossy(&opened.stderr));
    assert_eq!(String::from_utf8_lossy(&opened.stdout).trim(), "open me");
    // The control API is the same door: opening twice is harmless.
    let ans = b.control(
        &json!({"op": "open", "user": "alice", "host": sealed[0]["peer"]["host"], "packet_no": sealed[0]["packet_no"]}),
    );
    assert_eq!(ans["ok"], true, "{ans}");
    wait_for(|| a.history(&["--search", "open me"]).first().is_some_and(|m| m["state"] == "read"), "the read receipt");
    wait_for(
        || b.history(&["--search", "open me"]).first().is_some_and(|m| m["state"] == "read"),
        "opened in the store",
    );
    let again = b.cli(&["open", sealed[0]["packet_no"].as_str().unwrap()]);
    assert_eq!(String::from_utf8_lossy(&again.stdout).trim(), "open me");
    assert!(String::from_utf8_lossy(&again.stderr).contains("opened before; no second read receipt"));

    // Away: Carol's automatic reply arrives, marked, and is not answered.
    assert!(c.cli(&["status", "away", "at lunch"]).status.success());
    wait_for(|| a.peers().iter().any(|p| p["nick"] == "Carol" && p["away"] == true), "Carol to show as away");
    assert!(a.cli(&["send", "Carol", "coffee?"]).status.success());
    wait_for(|| a.history(&["--search", "at lunch"]).len() == 1, "the automatic reply");
    // Carol's history keeps what she replied (no receipt asked: "delivered", as a broadcast).
    let mine = c.history(&["--search", "at lunch"]);
    assert_eq!(mine.len(), 1, "Carol did not receive her own auto reply: {mine:?}");
    assert_eq!(
        (&mine[0]["direction"], &mine[0]["auto"], &mine[0]["state"]),
        (&json!("out"), &json!(true), &json!("delivered"))
    );
    let text = c.cli(&["history", "--search", "at lunch"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("[auto-reply]"));

    // History search across languages, and the text export.
    assert_eq!(b.history(&["--search", "你好"]).len(), 1);
    let text = b.cli(&["history", "--export", "text"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("你好, Bob — café"));

    // Exit: Carol leaves and the others drop her.
    c.stop();
    let gone = || nicks(&a.peers()) == ["Bob"] && nicks(&b.peers()) == ["爱丽丝"];
    let deadline = Instant::now() + Duration::from_secs(15);
    while !gone() {
        assert!(Instant::now() < deadline, "Carol's exit: Alice sees {:?}, Bob sees {:?}", a.peers(), b.peers());
        std::thread::sleep(Duration::from_millis(50));
    }

    // An unknown peer is a clear error with a suggestion; exit code 3
    // (`unknown_peer`), and the code in the control API's answer.
    let out = a.cli(&["send", "Bbo", "hi"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("did you mean: Bob"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn queued_message_is_delivered_when_the_peer_comes_back() {
    let a = Daemon::start("127.0.0.5", "dave", "Dave", &["127.0.0.6"]);
    let mut b = Daemon::start("127.0.0.6", "erin", "Erin", &["127.0.0.5"]);
    wait_for(|| a.peers().len() == 1, "Dave to see Erin");
    // Erin disappears without a word: Dave still lists her.
    b.kill9();
    let out = a.cli(&["send", "Erin", "while you were out", "--json", "--wait", "8"]);
    assert_eq!(out.status.code(), Some(1), "not delivered yet: exit code 1");
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["status"], "queued");
    // The store follows the receipt event that ended `send`.
    wait_for(|| a.history(&["--search", "while you were"])[0]["state"] == "queued", "queued in the store");
    // Erin returns; her entry makes Dave send the queued message again.
    b.spawn();
    wait_for(|| a.history(&["--search", "while you were"])[0]["state"] == "delivered", "delivery from the outbox");
    let got = b.history(&["--search", "while you were"]);
    assert_eq!(got.len(), 1, "delivered exactly once: {got:?}");
}

/// After a restart the node knows a peer only from the store; a message to
/// it waits in the outbox (it used to be refused as unknown) and goes out,
/// in UTF-8, when the peer comes back.
#[test]
fn a_peer_from_an_earlier_run_gets_a_queued_message() {
    let mut a = Daemon::start("127.0.0.14", "gail", "Gail", &["127.0.0.15"]);
    let mut b = Daemon::start("127.0.0.15", "hugo", "Hugo", &["127.0.0.14"]);
    wait_for(|| a.peers().len() == 1, "Gail to see Hugo");
    let hugo = a.peers()[0].clone();
    let key = format!("{}@{}", hugo["user"].as_str().unwrap(), hugo["host"].as_str().unwrap());
    b.stop();
    a.stop();
    a.spawn();
    assert!(a.peers().is_empty(), "nobody online after the restart");
    let text = "after your holiday 🌴 你好";
    let out = a.cli(&["send", &key, text, "--json", "--wait", "1"]);
    let r: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!((out.status.code(), r["status"].as_str()), (Some(1), Some("queued")), "{r}");
    b.spawn();
    wait_for(|| a.history(&["--search", "holiday"])[0]["state"] == "delivered", "delivery from the outbox");
    let got = b.history(&["--search", "holiday"]);
    assert_eq!(got.len(), 1, "exactly once: {got:?}");
    assert_eq!(got[0]["text"], text);
}

#[test]
fn one_shot_commands_work_without_a_daemon() {
    let b = Daemon::start("127.0.0.8", "frank", "Frank", &["127.0.0.7"]);
    let home = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| pigeon(home.path(), "127.0.0.7", "gina", "Gina", &["127.0.0.8"], args).output().unwrap();
    // Its entry goes at +250 ms, and answers come up to a second later.
    let out = run(&["peers", "--json", "--wait", "3"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let peers: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(nicks(&peers), ["Frank"]);
    let out = run(&["send", "Frank", "from a script", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_for(|| b.history(&["--search", "from a script"]).len() == 1, "the one-shot message");
    // The short-lived node asked not to be listed, and left with BR_EXIT.
    wait_for(|| b.peers().is_empty(), "the one-shot node to be gone");
    // Its own history has the message too.
    let h = run(&["history", "--json"]);
    assert!(String::from_utf8_lossy(&h.stdout).contains("from a script"));
}

#[test]
fn port_in_use_is_a_clear_error() {
    let _a = Daemon::start("127.0.0.9", "hank", "Hank", &["127.0.0.10"]);
    let home = tempfile::tempdir().unwrap();
    let out = pigeon(home.path(), "127.0.0.9", "ivy", "Ivy", &["127.0.0.10"], &["daemon"]).output().unwrap();
    assert_eq!(out.status.code(), Some(7), "port_in_use");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("UDP port 42425 is in use") && err.contains("pigeon"), "{err}");
    // Found in review: a second daemon of the same home (another port) must
    // refuse before it announces anything or touches the first one's socket.
    let out = Command::new(env!("CARGO_BIN_EXE_pigeon"))
        .arg("--home")
        .arg(_a.home.path())
        .args(["--port", "42426", "--bind", "127.0.0.9", "--user", "hank", "daemon"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already runs"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(_a.control(&json!({"op": "ping"}))["ok"], true, "the first daemon still answers");
}

/// Found in review: with a message still waiting for its receipt, a daemon
/// told to stop waited for its next timer (up to a minute) before leaving.
#[test]
fn a_daemon_with_pending_messages_stops_promptly() {
    let a = Daemon::start("127.0.0.12", "pat", "Pat", &["127.0.0.13"]);
    let mut b = Daemon::start("127.0.0.13", "quin", "Quin", &["127.0.0.12"]);
    wait_for(|| a.peers().len() == 1, "discovery");
    b.kill9();
    let out = a.cli(&["send", "Quin", "pending", "--wait", "0.5"]);
    assert_eq!(out.status.code(), Some(1));
    let mut a = a;
    // About 0.6 s (the bug: up to a minute); room for a loaded machine, and
    // well below the 5 s after which `stop` would kill it.
    let limit = Duration::from_secs(3);
    let Some((status, took)) = a.terminate_within(limit) else {
        panic!("the daemon was still running {limit:?} after SIGTERM (killed)");
    };
    assert!(status.success(), "the daemon did not exit normally after SIGTERM: {status}");
    eprintln!("stopped in {took:?}");
}

/// `pigeon listen` follows the daemon: what comes, what any client sends
/// (a `sent` event, then its receipt), as JSON Lines and as text.
#[test]
fn listen_follows_what_comes_and_what_goes() {
    let a = Daemon::start("127.0.0.18", "ann", "Ann", &["127.0.0.19"]);
    let b = Daemon::start("127.0.0.19", "ben", "Ben", &["127.0.0.18"]);
    wait_for(|| a.peers().len() == 1 && b.peers().len() == 1, "discovery");
    for json in [true, false] {
        let mut args = vec!["listen"];
        if json {
            args.push("--json");
        }
        let mut l = Listen::start(pigeon(a.home.path(), a.ip, a.user, a.nick, &a.others, &args));
        // Following once a message sent after the start shows.
        let mut probes = 0;
        while !l.wait(Duration::from_millis(500), |ls| ls.iter().any(|x| x.contains("probe"))) {
            probes += 1;
            assert!(probes < 30, "listen shows nothing: {:?}", l.lines);
            assert!(b.cli(&["send", "Ann", &format!("probe {probes}")]).status.success());
        }
        assert!(a.cli(&["send", "Ben", &format!("out {json}")]).status.success());
        assert!(b.cli(&["send", "Ann", &format!("in {json}")]).status.success());
        let came = format!("in {json}");
        assert!(l.wait(Duration::from_secs(15), |ls| ls.iter().any(|x| x.contains(&came))), "{:?}", l.lines);
        let lines = &l.lines;
        if json {
            let events: Vec<Value> = lines.iter().map(|x| serde_json::from_str(x).unwrap()).collect();
            let sent = events.iter().position(|e| e["event"] == "sent" && e["text"] == "out true").expect("sent");
            assert!(events[sent]["to"][0]["peer"].as_str().unwrap().starts_with("ben@"), "{events:?}");
            let id = &events[sent]["to"][0]["id"];
            assert!(
                events[sent..].iter().any(|e| e["event"] == "receipt" && &e["id"] == id && e["status"] == "delivered"),
                "{events:?}"
            );
            assert!(events.iter().any(|e| e["event"] == "message" && e["from"]["nick"] == "Ben"));
        } else {
            assert!(lines.iter().any(|x| x.contains("→ ben@") && x.ends_with(": out false")), "{lines:?}");
            // Pigeon to Pigeon: encrypted and signed, and listen says so.
            assert!(lines.iter().any(|x| x.contains("Ben [encrypted, signed]: in false")), "{lines:?}");
        }
    }
}

/// A `pigeon listen` child, its lines read in a thread; killed on drop.
struct Listen {
    child: std::process::Child,
    rx: std::sync::mpsc::Receiver<String>,
    lines: Vec<String>,
}

impl Listen {
    fn start(mut c: Command) -> Listen {
        use std::io::BufRead;
        let mut child = c.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null()).spawn().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Listen { child, rx, lines: Vec::new() }
    }

    /// Reads lines until `done` holds or `limit` passes; whether it holds.
    fn wait(&mut self, limit: Duration, done: impl Fn(&[String]) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        while !done(&self.lines) {
            match self.rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(l) => self.lines.push(l),
                Err(_) => return false,
            }
        }
        true
    }
}

impl Drop for Listen {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Output that must not reach a terminal as it came: no ESC (an escape
/// sequence), no BEL, no U+202E (a right-to-left override).
fn assert_terminal_safe(what: &str, out: &std::process::Output) {
    for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let text = String::from_utf8_lossy(bytes);
        assert!(
            !bytes.contains(&0x1b) && !bytes.contains(&0x07) && !text.contains('\u{202e}'),
            "`pigeon {what}` printed a raw escape or override on {stream}: {text:?}"
        );
    }
}

/// A peer whose nick, host name, message, version string and away text
/// hold escape sequences and a right-to-left override: every text output
/// shows them made harmless (U+FFFD), JSON keeps them (escaped by serde).
#[test]
fn what_a_peer_says_is_made_safe_for_the_terminal() {
    use std::net::UdpSocket;
    use std::sync::atomic::{AtomicBool, Ordering};

    const NICK: &str = "Mallory\x1b[31m\u{202e}gpj.exe";
    const HOST: &str = "evil\x1b]0;pwned\x07pc";
    const TEXT: &str = "sealed \x1b[2J\x1b[31mred\u{202e}txt.exe";
    const UTF8: u32 = 0x0080_0000;
    let d = Daemon::start("127.0.0.101", "vic", "Vic", &["127.0.0.102"]);
    let udp = UdpSocket::bind(format!("127.0.0.102:{}", common::PORT)).unwrap();
    udp.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let to = format!("127.0.0.101:{}", common::PORT);
    let packet = |no: u64, command: u32, body: &str| format!("1:{no}:mallory:{HOST}:{command}:{body}\0").into_bytes();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        // The raw peer answers what the daemon asks: receipts, its version
        // and its away text, all hostile.
        s.spawn(|| {
            let mut buf = [0u8; 65536];
            let mut no = 900;
            while !stop.load(Ordering::Relaxed) {
                let Ok((n, _)) = udp.recv_from(&mut buf) else { continue };
                let p = pigeon_protocol::Packet::decode(&buf[..n]).unwrap();
                no += 1;
                let answer = match p.command.0 & 0xff {
                    0x20 if p.command.0 & 0x100 != 0 => packet(no, 0x21, &p.packet_no_str()),
                    0x40 => packet(no, 0x41 | UTF8, "EvilMsg \x1b[5mv9\u{202e}1"),
                    0x50 => packet(no, 0x51 | UTF8, "gone \x1b[8mfishing\u{202e}"),
                    _ => continue,
                };
                udp.send_to(&answer, &to).unwrap();
            }
        });
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            udp.send_to(&packet(800, 0x01 | UTF8, &format!("{NICK}\0team\x1b[1m")), &to).unwrap();
            wait_for(|| d.peers().iter().any(|p| p["addr"] == "127.0.0.102:42425"), "the hostile peer");
            // JSON keeps what was said.
            let p = d.peers().into_iter().find(|p| p["addr"] == "127.0.0.102:42425").unwrap();
            assert_eq!((p["nick"].as_str(), p["host"].as_str()), (Some(NICK), Some(HOST)));
            // A sealed message, with a receipt and a read receipt asked.
            udp.send_to(&packet(801, 0x20 | 0x100 | 0x200 | 0x0010_0000 | UTF8, TEXT), &to).unwrap();
            wait_for(|| d.history(&["--limit", "5"]).iter().any(|m| m["text"] == TEXT), "the sealed message");

            let listed = d.cli(&["open"]);
            assert!(listed.status.success(), "{listed:?}");
            let text = String::from_utf8_lossy(&listed.stdout);
            assert!(text.contains("packet 801") && text.contains("Mallory\u{fffd}[31m\u{fffd}gpj.exe"), "{text}");
            assert_terminal_safe("open", &listed);

            let opened = d.cli(&["open", "801"]);
            assert!(opened.status.success(), "{opened:?}");
            assert_eq!(
                String::from_utf8_lossy(&opened.stdout).trim(),
                "sealed \u{fffd}[2J\u{fffd}[31mred\u{fffd}txt.exe"
            );
            assert_terminal_safe("open 801", &opened);

            let info = d.cli(&["info", "127.0.0.102"]);
            assert!(info.status.success(), "{info:?}");
            let text = String::from_utf8_lossy(&info.stdout);
            assert!(text.contains("EvilMsg \u{fffd}[5mv9\u{fffd}1"), "the version answer: {text}");
            assert!(text.contains("gone \u{fffd}[8mfishing\u{fffd}"), "the away answer: {text}");
            assert_terminal_safe("info", &info);

            let sent = d.cli(&["send", "127.0.0.102", "hi"]);
            assert!(sent.status.success(), "{sent:?}");
            let text = String::from_utf8_lossy(&sent.stdout);
            assert!(text.starts_with("delivered") && text.contains("Mallory\u{fffd}"), "{text}");
            assert_terminal_safe("send", &sent);

            // An error that quotes the nick ("did you mean").
            let wrong = d.cli(&["send", "mallor", "hi"]);
            assert_eq!(wrong.status.code(), Some(3), "{wrong:?}");
            assert!(String::from_utf8_lossy(&wrong.stderr).contains("Mallory\u{fffd}"), "{wrong:?}");
            assert_terminal_safe("send (a wrong name)", &wrong);

            for args in [&["peers"][..], &["history"], &["history", "--export", "text"]] {
                let out = d.cli(args);
                assert!(out.status.success(), "{args:?}: {out:?}");
                assert_terminal_safe(&args.join(" "), &out);
            }
        }));
        stop.store(true, Ordering::Relaxed);
        if let Err(e) = result {
            std::panic::resume_unwind(e);
        }
    });
}

/// Errors say what is wrong once, in the user's terms, and nothing to show
/// is not an error (toward the command-line issue).
#[test]
fn command_line_errors_say_what_is_wrong_once() {
    let home = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_pigeon"));
        // Loopback only, never the default broadcast (nothing here starts a
        // node); history takes neither flag.
        c.arg("--home").arg(home.path());
        if args[0] != "history" {
            c.args(["--bind", "127.0.0.121", "--broadcast", "127.0.0.122"]);
        }
        let o = c.args(args).output().unwrap();
        (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    let (code, err) = run(&["history"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("no history yet"), "{err}");
    let (code, err) = run(&["history", "--export", "jsonl", "--limit", "2"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("cannot be used with"), "{err}");
    let (code, err) = run(&["history", "--export", "text", "--json"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("cannot be used with"), "{err}");
    let (code, err) = run(&["--port", "0", "peers"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("0 is not in 1..=65535"), "{err}");
    let (code, err) = run(&["send", "x", "--file", "/nonexistent/file.txt", "hi"]);
    assert_eq!(code, Some(5), "a file that cannot be offered: {err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}

/// `pigeon status` alone says ours (offline without a daemon; online, then
/// away with its text, with one); `pigeon config` shows the running away
/// state and never a bare `null`; identity flags a running daemon does not
/// take are said, not silently dropped.
#[test]
fn status_config_and_flags_a_daemon_does_not_take() {
    let home = tempfile::tempdir().unwrap();
    let run = |extra: &[&str], args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_pigeon"));
        c.arg("--home").arg(home.path());
        // Status takes no network flags (it asks the daemon on the home's socket).
        if args[0] != "status" {
            c.args(["--port", common::PORT, "--bind", "127.0.0.115", "--broadcast", "127.0.0.116"]);
        }
        c.args(extra).args(args);
        let o = c.output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(&["--nick", "Uma"], &["status"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("Uma: offline (no daemon runs"), "{out}");
    let (_, out, _) = run(&[], &["config"]);
    assert!(!out.contains("null"), "{out}");
    assert!(out.starts_with("config_file"), "{out}");
    assert!(out.contains("\naway                 no\n") && out.contains("\nauto_accept          nobody\n"), "{out}");
    assert!(out.contains("\ndaemon               not running\n"), "{out}");

    let mut d = Command::new(env!("CARGO_BIN_EXE_pigeon"));
    d.arg("--home").arg(home.path());
    d.args([
        "--port",
        common::PORT,
        "--bind",
        "127.0.0.115",
        "--broadcast",
        "127.0.0.116",
        "--user",
        "uma",
        "--nick",
        "Uma",
        "daemon",
    ]);
    let child = d.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let sock = home.path().join("pigeon.sock");
    wait_for(|| std::os::unix::net::UnixStream::connect(&sock).is_ok(), "the daemon");
    let (_, out, _) = run(&[], &["status"]);
    assert_eq!(out, "Uma: online\n");
    let (code, _, err) = run(&[], &["status", "away", "at lunch"]);
    assert_eq!(code, Some(0), "{err}");
    let (_, out, _) = run(&[], &["status", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v, json!({"state": "away", "away": "at lunch", "nick": "Uma"}));
    let (_, out, _) = run(&[], &["config", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((v["away"].clone(), v["daemon"].clone()), (json!("at lunch"), json!(true)), "{v:#}");
    // The daemon keeps its identity: a different nick is said, the same is not.
    let (code, out, err) = run(&["--user", "uma", "--nick", "Zed"], &["peers", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.trim(), "[]");
    assert!(
        err.contains("--nick Zed ignored: the running daemon is uma@") && err.contains("(\"Uma\", port 42425)"),
        "{err}"
    );
    let (_, _, err) = run(&["--user", "uma", "--nick", "Uma"], &["peers"]);
    assert!(!err.contains("ignored"), "{err}");
    // SAFETY: kill(2) on our own child's PID.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let log = child.wait_with_output().unwrap();
    // A log that is not a terminal has no colour codes.
    let log = String::from_utf8_lossy(&log.stderr);
    assert!(log.contains("pigeon daemon: uma@") && !log.contains('\x1b'), "{log:?}");
}

/// A text longer than the peer's client reads (FeiQ: 4 KiB a packet) goes
/// in numbered parts that each fit and together are the text; with
/// `--no-split` it is refused. And FeiQ gets a shake.
#[test]
fn long_texts_go_in_numbered_parts() {
    let a = Daemon::start("127.0.0.125", "vic", "Vic", &["127.0.0.126"]);
    let fq = std::net::UdpSocket::bind(format!("127.0.0.126:{}", common::PORT)).unwrap();
    fq.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let to = format!("127.0.0.125:{}", common::PORT);
    fq.send_to(b"1_lbt6_0#128#F8B46AA55B28#0#0#0#4001#9:100:fq:fq-pc:1:FeiQ\0\0", &to).unwrap();
    wait_for(|| a.peers().iter().any(|p| p["client"] == "feiq"), "the FeiQ peer");
    let text: String = (0..700).map(|i| format!("第{i}行 ")).collect(); // ~8.5 KB in UTF-8, ~6 KB in GBK
    let out = a.cli(&["send", "FeiQ", &text, "--no-split"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "too_long: {err}");
    assert!(err.contains("message too long for fq@fq-pc (FeiQ)"), "{err}");
    // The FeiQ side acknowledges every SENDMSG (RECVMSG), as FeiQ does.
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 65536];
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let Ok((n, from)) = fq.recv_from(&mut buf) else { continue };
            let d = buf[..n].to_vec();
            let f: Vec<&[u8]> = d.splitn(6, |&b| b == b':').collect();
            let cmd: u32 = std::str::from_utf8(f[4]).unwrap().parse().unwrap();
            if cmd & 0xff == 0x20 {
                let ack = format!(
                    "1_lbt6_0#128#F8B46AA55B28#0#0#0#4001#9:{}:fq:fq-pc:33:{}",
                    200 + got.len(),
                    std::str::from_utf8(f[1]).unwrap()
                );
                fq.send_to(ack.as_bytes(), from).unwrap();
                if !got.iter().any(|(no, _): &(Vec<u8>, Vec<u8>)| no == f[1]) {
                    got.push((f[1].to_vec(), d.clone()));
                }
                if got.len() == 2 {
                    break;
                }
            }
        }
        (got, fq)
    });
    let out = a.cli(&["send", "FeiQ", &text, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((r["status"].as_str(), r["parts"].as_array().map(Vec::len)), (Some("delivered"), Some(2)), "{r}");
    let (got, fq) = reader.join().unwrap();
    assert_eq!(got.len(), 2);
    // And a shake, FeiQ's command 209.
    let out = a.cli(&["shake", "FeiQ"]);
    assert!(out.status.success() && out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(5);
    let shake = loop {
        assert!(Instant::now() < deadline, "no shake came");
        let Ok((n, _)) = fq.recv_from(&mut buf) else { continue };
        let cmd = buf[..n].split(|&b| b == b':').nth(4).map(|c| String::from_utf8_lossy(c).into_owned());
        if cmd.as_deref() == Some("209") {
            break buf[..n].to_vec();
        }
    };
    assert!(shake.ends_with(b":209:") || shake.ends_with(b":209:\0"), "{:?}", String::from_utf8_lossy(&shake));
    let mut joined = String::new();
    for (i, (_, d)) in got.iter().enumerate() {
        assert!(d.len() <= 4096, "part {} is {} bytes", i + 1, d.len());
        let body = d.splitn(6, |&b| b == b':').nth(5).unwrap();
        let body = &body[..body.iter().position(|&b| b == 0).unwrap_or(body.len())];
        let t = pigeon_protocol::Charset::Gbk.decode(body);
        let prefix = format!("({}/2) ", i + 1);
        joined.push_str(t.strip_prefix(&prefix).unwrap_or_else(|| panic!("{t:.40}")));
    }
    assert_eq!(joined, text);
}

/// IP Messenger's F5: a peer killed without BR_EXIT is dropped by
/// `peers --refresh`; one that is there stays.
#[test]
fn refresh_drops_a_peer_killed_without_goodbye() {
    let a = Daemon::start("127.0.0.131", "kim", "Kim", &["127.0.0.132", "127.0.0.133"]);
    let mut b = Daemon::start("127.0.0.132", "lee", "Lee", &["127.0.0.131"]);
    let c = Daemon::start("127.0.0.133", "max", "Max", &["127.0.0.131"]);
    wait_for(|| a.peers().len() == 2, "Kim to see Lee and Max");
    b.kill9();
    assert_eq!(a.peers().len(), 2, "nothing said goodbye");
    let out = a.cli(&["peers", "--refresh", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(nicks(&v), ["Max"], "{v:?}");
    drop(c);
}
