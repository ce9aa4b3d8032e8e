//! Chat benchmarks (a bench binary: `cargo bench --bench chat`):
//!
//! 1. the time to draw one frame of a long conversation (5,000 messages,
//!    one of 30 KiB, Chinese text) at 200×60, into ratatui's TestBackend;
//! 2. the CPU an idle `pigeon chat` uses: the real binary in tmux on
//!    127.0.0.92 with a daemon peer on 127.0.0.91 (loopback targets only),
//!    measured from /proc over `PIGEON_IDLE_SECS` (default 30) seconds,
//!    after a warm-up; and the same while 20 messages a second arrive.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pigeon::chat::app::{App, ConvKey, Me};
use pigeon::chat::ui::{self, Theme};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use serde_json::json;

const PORT: &str = "44425";

/// An event as the daemon's stream carries it, read as the chat reads it.
fn event(v: serde_json::Value) -> pigeon::control::api::Event {
    serde_json::from_value(v).unwrap()
}

fn frame_time() {
    let mut app =
        App::new(Me { nick: "Alice".into(), user: "alice".into(), host: "pc".into(), away: None, via: "bench".into() });
    for i in 0..200 {
        app.on_event(&event(json!({"event": "peer_online", "peer": {"user": format!("u{i}"), "host": "pc", "nick": format!("同事 {i}"),
            "group": format!("组 {}", i % 7), "addr": format!("10.0.{}.{}:2425", i / 250, i % 250), "client": "feiq", "away": i % 9 == 0}})));
    }
    let huge: String = (0..30 * 1024 / 8).map(|i| format!("字{i:05} ")).collect();
    for i in 0..5000u64 {
        let text = if i == 2500 {
            huge.clone()
        } else {
            format!("第 {i} 条消息：今天的构建已经通过，请大家查看报告。")
        };
        app.on_event(&event(
            json!({"event": "message", "from": {"user": "u1", "host": "pc", "nick": "同事 1", "addr": "10.0.0.1:2425"},
            "text": text, "packet_no": (1000 + i).to_string(), "sealed": false, "broadcast": false, "auto": false,
            "time": "2026-11-22T09:30:00+08:00", "command": 0x120}),
        ));
    }
    app.open(ConvKey::Peer("u1@pc".into()));
    app.take_actions();
    let mut t = Terminal::new(TestBackend::new(200, 60)).unwrap();
    let theme = Theme { color: true };
    // All 5,000 came unseen: the conversation opens at the first of them,
    // the top (everything below is laid out each frame).
    for _ in 0..20 {
        t.draw(|f| ui::draw(f, &mut app, &theme)).unwrap();
    }
    let start = Instant::now();
    for _ in 0..50 {
        t.draw(|f| ui::draw(f, &mut app, &theme)).unwrap();
    }
    println!("frame opened at the first of 5,000 unread (top): {:.0} µs", (start.elapsed() / 50).as_secs_f64() * 1e6);
    // The newest messages (the usual view).
    app.scroll(-(1 << 30));
    for _ in 0..20 {
        t.draw(|f| ui::draw(f, &mut app, &theme)).unwrap();
    }
    let n = 500;
    let start = Instant::now();
    for _ in 0..n {
        t.draw(|f| ui::draw(f, &mut app, &theme)).unwrap();
    }
    let per = start.elapsed() / n;
    println!("frame (200×60, 5,000 messages, 200 peers): {:.0} µs", per.as_secs_f64() * 1e6);
    // Scrolled into the middle of the 30 KiB message.
    app.scroll(3000);
    let start = Instant::now();
    for _ in 0..n {
        t.draw(|f| ui::draw(f, &mut app, &theme)).unwrap();
    }
    println!("frame scrolled 3,000 lines up:                 {:.0} µs", (start.elapsed() / n).as_secs_f64() * 1e6);
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

fn pigeon(home: &Path, ip: &str, user: &str, other: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pigeon"));
    c.arg("--home").arg(home).args([
        "--port",
        PORT,
        "--bind",
        ip,
        "--user",
        user,
        "--nick",
        user,
        "--broadcast",
        other,
    ]);
    c
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn idle_cpu() {
    if Command::new("tmux").arg("-V").output().is_err() {
        println!("idle CPU: skipped (needs tmux)");
        return;
    }
    let secs: u64 = std::env::var("PIGEON_IDLE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
    let dir = tempfile::tempdir().unwrap();
    let (bob_home, alice_home) = (dir.path().join("bob"), dir.path().join("alice"));
    std::fs::create_dir_all(&alice_home).unwrap();
    std::fs::write(alice_home.join("config.toml"), "bell = false\nnotify = false\n").unwrap();
    let _bob = Kill(
        pigeon(&bob_home, "127.0.0.91", "bob", "127.0.0.92")
            .arg("daemon")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let sock = dir.path().join("tmux.sock");
    let tmux = |args: &[&str]| {
        let out = Command::new("tmux").arg("-S").arg(&sock).args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let mut cmd = vec![env!("CARGO_BIN_EXE_pigeon").to_string()];
    cmd.extend(
        ["--home", alice_home.to_str().unwrap(), "--port", PORT, "--bind", "127.0.0.92", "--user", "alice"]
            .iter()
            .map(|s| s.to_string()),
    );
    cmd.extend(["--broadcast", "127.0.0.91", "chat"].iter().map(|s| s.to_string()));
    let mut args = vec!["-f", "/dev/null", "new-session", "-d", "-x", "120", "-y", "40", "--"];
    args.extend(cmd.iter().map(String::as_str));
    tmux(&args);
    let server: i32 = tmux(&["display-message", "-p", "#{pid}"]).parse().unwrap();
    let pid: u32 = tmux(&["display-message", "-p", "#{pane_pid}"]).parse().unwrap();
    // Warm up: the peer list fills, the entry retries (5 s) pass.
    std::thread::sleep(Duration::from_secs(7));
    let (c0, t0) = (cpu_seconds(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(secs));
    let (c1, t1) = (cpu_seconds(pid), Instant::now());
    let idle = (c1 - c0) / (t1 - t0).as_secs_f64() * 100.0;
    println!("idle chat CPU over {secs} s: {idle:.3}% ({:.0} ms of CPU)", (c1 - c0) * 1000.0);

    // Busy: 20 messages a second from the peer for 10 s.
    let (c0, t0) = (cpu_seconds(pid), Instant::now());
    let sock_path = bob_home.join("pigeon.sock");
    for i in 0..200 {
        let mut s = std::os::unix::net::UnixStream::connect(&sock_path).unwrap();
        use std::io::{BufRead, Write};
        let req = json!({"op": "send", "to": ["alice"], "text": format!("message {i} 消息"), "wait": 0});
        writeln!(s, "{req}").unwrap();
        let mut line = String::new();
        std::io::BufReader::new(s).read_line(&mut line).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    let busy = (cpu_seconds(pid) - c0) / t0.elapsed().as_secs_f64() * 100.0;
    println!("chat CPU while 20 messages/s arrive: {busy:.2}%");
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .map(|l| l.split_whitespace().nth(1).unwrap_or("0").parse::<u64>().unwrap_or(0))
        .unwrap_or(0);
    println!("chat RSS after 200 messages: {:.1} MiB", rss as f64 / 1024.0);
    // SAFETY: kill(2) on the chat's and our tmux server's PIDs.
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
        std::thread::sleep(Duration::from_millis(500));
        libc::kill(server, libc::SIGTERM);
    }
}

fn main() {
    // `cargo test --benches` runs bench binaries with --bench absent: do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    frame_time();
    idle_cpu();
}
