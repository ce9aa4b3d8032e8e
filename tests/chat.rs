//! `pigeon chat` end to end, in a real terminal: tmux (a private server on
//! a socket in a temporary folder, killed by PID) runs the chat on 127.0.0.x with explicit
//! loopback targets; a daemon of the real binary is the other side.
//!
//! Needs tmux. Without it the tests say they were skipped, unless
//! `PIGEON_REQUIRE_TMUX=1` (set by `.ci/run`), where that is a failure.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{sha256, Daemon, PORT};

/// A private tmux server with one session running a command.
struct Tmux {
    /// Holds the server's socket (`-S`), removed with it.
    dir: tempfile::TempDir,
    server_pid: Option<i32>,
}

fn tmux_available() -> bool {
    let ok = Command::new("tmux").arg("-V").output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("PIGEON_REQUIRE_TMUX").is_none(),
            "PIGEON_REQUIRE_TMUX is set but tmux cannot run (apt-get install tmux)"
        );
        eprintln!("skipped: the chat end-to-end tests need tmux (apt-get install tmux)");
    }
    ok
}

impl Tmux {
    fn start(name: &str, cmd: &[String], env: &[(&str, &str)]) -> Tmux {
        let mut t = Tmux { dir: tempfile::Builder::new().prefix(name).tempdir().unwrap(), server_pid: None };
        let mut c = Command::new("tmux");
        c.arg("-S").arg(t.socket()).args([
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-x",
            "110",
            "-y",
            "34",
            "-s",
            "chat",
        ]);
        for (k, v) in env {
            c.args(["-e", &format!("{k}={v}")]);
        }
        c.arg("--").args(cmd);
        let st = c.status().expect("tmux runs");
        assert!(st.success(), "tmux new-session failed");
        t.server_pid = t.query("#{pid}").trim().parse().ok();
        // Keep the pane after the chat exits, to look at the terminal's state.
        t.run(&["set-option", "-g", "remain-on-exit", "on"]);
        t
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("tmux.sock")
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux").arg("-S").arg(self.socket()).args(args).output().expect("tmux runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn query(&self, format: &str) -> String {
        self.run(&["display-message", "-p", "-t", "chat", format])
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "chat"])
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "chat"];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    fn type_text(&self, text: &str) {
        self.run(&["send-keys", "-t", "chat", "-l", text]);
    }

    /// Waits (at most 20 s) until the screen satisfies `cond`.
    fn wait_screen(&self, what: &str, cond: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.screen();
            if cond(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; the screen:\n{s}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn pane_pid(&self) -> i32 {
        self.query("#{pane_pid}").trim().parse().expect("a pane PID")
    }

    /// Waits until the chat has exited; returns whether the terminal was left
    /// in the alternate screen.
    fn wait_exit(&self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.query("#{pane_dead}").trim() != "1" {
            assert!(Instant::now() < deadline, "the chat did not exit:\n{}", self.screen());
            std::thread::sleep(Duration::from_millis(50));
        }
        self.query("#{alternate_on}").trim() == "1"
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        if let Some(pid) = self.server_pid {
            // The pane's process first, then our private server, by PID.
            if let Ok(p) = self.query("#{pane_pid}").trim().parse::<i32>() {
                // SAFETY: kill(2) on a PID our tmux server reported for its pane.
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
            // SAFETY: kill(2) on the PID of the tmux server this test started.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }
}

fn chat_cmd(home: &Path, ip: &str, user: &str, nick: &str, other: &str) -> Vec<String> {
    let c = common::pigeon(home, ip, user, nick, &[other], &["chat"]);
    std::iter::once(c.get_program()).chain(c.get_args()).map(|a| a.to_string_lossy().into_owned()).collect()
}

fn wait_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn chat_receives_replies_and_accepts_a_file() {
    if !tmux_available() {
        return;
    }
    let bob = Daemon::start("127.0.0.81", "bob", "Bob", &["127.0.0.82"]);
    let home = tempfile::tempdir().unwrap();
    let downloads: PathBuf = home.path().join("downloads");
    std::fs::write(
        home.path().join("config.toml"),
        format!("download_dir = {:?}\nbell = false\nnotify = false\n", downloads.to_str().unwrap()),
    )
    .unwrap();
    let t = Tmux::start("main", &chat_cmd(home.path(), "127.0.0.82", "alice", "Alice", "127.0.0.81"), &[]);
    t.wait_screen("Bob in the peer list", |s| s.contains("● Bob"));

    // A message from the other instance shows at once, with a preview.
    wait_until("Bob to see Alice", || bob.peers().iter().any(|p| p["user"] == "alice").then_some(()));
    let out = bob.cli(&["send", "Alice", "你好 Alice — the build is green"]);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    t.wait_screen("the preview", |s| s.contains("✉ Bob: 你好 Alice — the build is green"));
    // Open Bob's conversation: type to filter, Enter.
    t.type_text("bo");
    t.keys(&["Enter"]);
    let s = t.wait_screen("the conversation", |s| s.contains("Bob · bob@"));
    // Pigeon to Pigeon: encrypted and signed (🔒).
    assert!(s.lines().any(|l| l.contains("Bob 🔒 你好 Alice — the build is green")), "{s}");

    // A reply typed into the chat arrives.
    t.type_text("谢谢 Bob, merging now");
    t.keys(&["Enter"]);
    wait_until("the reply in Bob's history", || {
        bob.history(&[]).into_iter().find(|m| m["direction"] == "in" && m["text"] == "谢谢 Bob, merging now")
    });
    t.wait_screen("the delivery receipt", |s| s.contains("谢谢 Bob, merging now  ✓ delivered"));

    // A file offered by Bob is accepted from the chat and arrives whole.
    let file = bob.home.path().join("报告 final.bin");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(&file, &data).unwrap();
    let out = bob.cli(&["send", "Alice", "--file", file.to_str().unwrap(), "the logs"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    t.wait_screen("the offer", |s| s.contains("报告 final.bin"));
    t.keys(&["Tab"]); // compose → conversation: the offer is selected
    t.wait_screen("the accept key", |s| s.contains("a  accept"));
    t.keys(&["a"]);
    t.wait_screen("the saved file", |s| s.contains("✓ saved"));
    let got = downloads.join("报告 final.bin");
    assert_eq!(sha256(&got), sha256(&file), "the fetched file is identical");

    // Ctrl+Q: the terminal is restored and Bob sees Alice leave.
    t.keys(&["C-q"]);
    assert!(!t.wait_exit(), "the alternate screen was left");
    wait_until("Alice to leave Bob's list", || bob.peers().iter().all(|p| p["user"] != "alice").then_some(()));
    assert!(!home.path().join("pigeon.sock").exists(), "the control socket was removed");
}

#[test]
fn sigterm_restores_the_terminal_and_leaves_the_lan() {
    if !tmux_available() {
        return;
    }
    let bob = Daemon::start("127.0.0.83", "bob", "Bob", &["127.0.0.84"]);
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("config.toml"), "bell = false\nnotify = false\n").unwrap();
    let t = Tmux::start("term", &chat_cmd(home.path(), "127.0.0.84", "carol", "Carol", "127.0.0.83"), &[]);
    t.wait_screen("Bob in the peer list", |s| s.contains("● Bob"));
    wait_until("Bob to see Carol", || bob.peers().iter().any(|p| p["user"] == "carol").then_some(()));
    // While the chat runs, one-shot commands go through it (it serves the socket).
    let out = Command::new(env!("CARGO_BIN_EXE_pigeon"))
        .args(["--home", home.path().to_str().unwrap(), "peers", "--json"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"bob\""), "{}", String::from_utf8_lossy(&out.stderr));
    // SAFETY: kill(2) on the PID tmux reported for the pane running our chat.
    unsafe { libc::kill(t.pane_pid(), libc::SIGTERM) };
    assert!(!t.wait_exit(), "the alternate screen was left after SIGTERM");
    wait_until("Carol to leave Bob's list", || bob.peers().iter().all(|p| p["user"] != "carol").then_some(()));
}

/// Without a terminal (a script, a pipe), `pigeon` alone says what to use
/// instead, before any node starts.
#[test]
fn without_a_terminal_the_chat_explains_itself() {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pigeon"))
        .args(["--home", home.path().to_str().unwrap(), "--port", PORT, "--bind", "127.0.0.85"])
        .args(["--broadcast", "127.0.0.86"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs a terminal") && err.contains("pigeon send"), "{err}");
    assert!(!home.path().join("pigeon.db").exists(), "no node was started");
}

/// With a daemon on its home, the chat is the daemon's client: events come
/// over the control socket's `listen` stream, sends go through `send`.
#[test]
fn chat_as_a_client_of_the_daemon() {
    if !tmux_available() {
        return;
    }
    let alice =
        Daemon::start_with_config("127.0.0.87", "alice", "Alice", &["127.0.0.88"], "bell = false\nnotify = false\n");
    let bob = Daemon::start("127.0.0.88", "bob", "Bob", &["127.0.0.87"]);
    // Two messages come while no chat is open: the chat counts them from the store.
    wait_until("the daemons to meet", || bob.peers().iter().any(|p| p["user"] == "alice").then_some(()));
    for text in ["while you were out 1", "while you were out 2"] {
        assert!(bob.cli(&["send", "Alice", text]).status.success());
    }
    let bob_line = |s: &str| s.lines().find(|l| l.contains("● Bob")).unwrap_or_default().to_string();
    let cmd = chat_cmd(alice.home.path(), "127.0.0.87", "alice", "Alice", "127.0.0.88");
    let t = Tmux::start("daemon", &cmd, &[]);
    t.wait_screen("the daemon link and the count", |s| s.contains("via the daemon") && bob_line(s).contains("(2)"));
    let out = bob.cli(&["send", "--sealed", "Alice", "sealed for Alice 密"]);
    assert!(out.status.success());
    t.wait_screen("the preview", |s| s.contains("✉ Bob: sealed message"));
    t.type_text("bob");
    t.keys(&["Enter"]);
    let s = t.wait_screen("the sealed message", |s| s.contains("[sealed]"));
    assert!(!s.contains("sealed for Alice 密"), "hidden until opened:\n{s}");
    t.keys(&["Tab", "Enter"]); // the conversation; Enter opens the selected sealed message
    t.wait_screen("the opened text", |s| s.contains("[opened] sealed for Alice 密"));
    wait_until("Bob's read receipt", || {
        bob.history(&[]).into_iter().find(|m| m["direction"] == "out" && m["state"] == "read")
    });
    // Out to the peer list (its footer), then the compose box. (Two keys
    // at once would read as Alt+Tab.)
    t.keys(&["Escape"]);
    t.wait_screen("the peer list's keys", |s| s.contains("Space  mark"));
    t.keys(&["Tab"]);
    t.type_text("opened it");
    t.keys(&["Enter"]);
    wait_until("the reply", || bob.history(&[]).into_iter().find(|m| m["text"] == "opened it"));
    // A script sends through the same daemon: the open conversation shows
    // it, with its receipt; the chat's own message shows once.
    assert!(alice.cli(&["send", "Bob", "from a cron job"]).status.success());
    let s = t.wait_screen("the script's message", |s| s.contains("from a cron job  ✓ delivered"));
    assert_eq!(s.matches("opened it").count(), 1, "{s}");
    // Seen in the chat is read in the store.
    wait_until("the messages marked read", || {
        let h = alice.history(&["--search", "while you were out"]);
        (h.len() == 2 && h.iter().all(|m| m["state"] == "read")).then_some(())
    });
    // A draft left in Bob's conversation: Ctrl+Q quits at once and keeps it.
    t.type_text("half a thought");
    t.keys(&["C-q"]);
    assert!(!t.wait_exit());
    drop(t);
    // The daemon keeps running: Bob still lists Alice. A new chat counts
    // nothing, and Bob's conversation has the draft back.
    assert!(bob.peers().iter().any(|p| p["user"] == "alice"));
    let t = Tmux::start("daemon2", &cmd, &[]);
    let s = t.wait_screen("the second chat", |s| s.contains("via the daemon") && s.contains("● Bob"));
    assert!(!bob_line(&s).contains('('), "nothing unread:\n{s}");
    t.type_text("bob");
    t.keys(&["Enter"]);
    t.wait_screen("the draft back", |s| s.contains("To: Bob") && s.contains("half a thought"));
    t.keys(&["C-q"]);
    assert!(!t.wait_exit());
}
