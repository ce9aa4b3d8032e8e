//! What the loopback integration tests share: daemons of the real binary
//! bound to 127.0.0.x with explicit unicast targets (never a broadcast), on
//! port 42425 so that a real IP Messenger client on 2425 does not
//! interfere. Every process is killed by PID when its guard drops; every
//! wait is bounded.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const PORT: &str = "42425";

pub struct Daemon {
    child: Option<Child>,
    pub home: tempfile::TempDir,
    pub ip: &'static str,
    pub user: &'static str,
    pub nick: &'static str,
    pub others: Vec<&'static str>,
}

/// `pigeon` on this home and identity: of `--home`, `--port`, `--bind`,
/// `--user`, `--nick` and `--broadcast`, those the subcommand (`args[0]`)
/// takes; it refuses the others.
pub fn pigeon(home: &Path, ip: &str, user: &str, nick: &str, others: &[&str], args: &[&str]) -> Command {
    let takes = pigeon::cli::flags_of(args.first().copied().unwrap_or("chat"));
    let mut c = Command::new(env!("CARGO_BIN_EXE_pigeon"));
    if takes.contains(&"home") {
        c.arg("--home").arg(home);
    }
    for (flag, value) in [("port", PORT), ("bind", ip), ("user", user), ("nick", nick)] {
        if takes.contains(&flag) {
            c.arg(format!("--{flag}")).arg(value);
        }
    }
    if takes.contains(&"broadcast") {
        for o in others {
            c.args(["--broadcast", o]);
        }
    }
    c.args(args);
    c
}

impl Daemon {
    /// A daemon whose home starts with this `config.toml`.
    pub fn start_with_config(
        ip: &'static str,
        user: &'static str,
        nick: &'static str,
        others: &[&'static str],
        config: &str,
    ) -> Daemon {
        let mut d = Daemon { child: None, home: tempfile::tempdir().unwrap(), ip, user, nick, others: others.to_vec() };
        std::fs::write(d.home.path().join("config.toml"), config).unwrap();
        d.spawn();
        d
    }

    /// A daemon whose home `prepare` fills first (keys, a database).
    pub fn start_prepared(
        ip: &'static str,
        user: &'static str,
        nick: &'static str,
        others: &[&'static str],
        prepare: impl FnOnce(&Path),
    ) -> Daemon {
        let mut d = Daemon { child: None, home: tempfile::tempdir().unwrap(), ip, user, nick, others: others.to_vec() };
        prepare(d.home.path());
        d.spawn();
        d
    }

    pub fn start(ip: &'static str, user: &'static str, nick: &'static str, others: &[&'static str]) -> Daemon {
        let mut d = Daemon { child: None, home: tempfile::tempdir().unwrap(), ip, user, nick, others: others.to_vec() };
        d.spawn();
        d
    }

    pub fn spawn(&mut self) {
        // The web UI on this daemon's own address (a free port), unless
        // the test configured it: not 127.0.0.1:2426 for every daemon.
        let config = self.home.path().join("config.toml");
        let text = std::fs::read_to_string(&config).unwrap_or_default();
        if !text.contains("web_listen") && !text.contains("web =") {
            std::fs::write(&config, format!("web_listen = \"{}:0\"\n{text}", self.ip)).unwrap();
        }
        let child = pigeon(self.home.path(), self.ip, self.user, self.nick, &self.others, &["daemon"])
            .stdout(Stdio::null())
            .stderr(if std::env::var_os("PIGEON_TEST_DAEMON_LOG").is_some() { Stdio::inherit() } else { Stdio::null() })
            .spawn()
            .unwrap();
        self.child = Some(child);
        wait_for(|| UnixStream::connect(self.home.path().join("pigeon.sock")).is_ok(), "the control socket");
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the daemon runs").id()
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        let mut c = pigeon(self.home.path(), self.ip, self.user, self.nick, &self.others, args);
        let child = c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let pid = child.id();
        // Read while waiting: a chatty command would block on a full pipe.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(out) => out.unwrap(),
            Err(_) => {
                // SAFETY: kill(2) on the PID of our own child.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                panic!("pigeon {args:?} did not finish in 120 s");
            }
        }
    }

    pub fn json(&self, args: &[&str]) -> Vec<Value> {
        let out = self.cli(args);
        String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    /// `pigeon peers --json` answered by this daemon. An empty list means
    /// nobody is online, never that something broke: a daemon that does not
    /// answer on its control socket (the command would quietly run a
    /// short-lived node of its own instead), a failing command or output
    /// that is not a JSON array panics, with the command's output.
    pub fn peers(&self) -> Vec<Value> {
        let sock = self.home.path().join("pigeon.sock");
        if let Err(e) = UnixStream::connect(&sock) {
            panic!("peers of {}: no daemon answers on {}: {e}", self.nick, sock.display());
        }
        let out = self.cli(&["peers", "--json"]);
        let said = || {
            format!(
                "{}\nstdout: {}\nstderr: {}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        };
        assert!(out.status.success(), "`pigeon peers --json` of {} failed: {}", self.nick, said());
        serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap_or_else(|e| {
            panic!("`pigeon peers --json` of {} printed no JSON array ({e}): {}", self.nick, said())
        })
    }

    pub fn control(&self, req: &Value) -> Value {
        let mut s = UnixStream::connect(self.home.path().join("pigeon.sock")).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        writeln!(s, "{req}").unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap()
    }

    pub fn history(&self, extra: &[&str]) -> Vec<Value> {
        let mut args = vec!["history", "--json"];
        args.extend_from_slice(extra);
        self.json(&args)
    }

    /// SIGTERM: the daemon leaves the LAN with BR_EXIT (killed if it is
    /// still running 5 s later).
    pub fn stop(&mut self) {
        self.terminate_within(Duration::from_secs(5));
    }

    /// SIGTERM, then up to `limit` for the daemon to exit by itself: its
    /// exit status and how long it took. `None` if it was still running at
    /// the limit (it is killed then), or if it was not running.
    pub fn terminate_within(&mut self, limit: Duration) -> Option<(ExitStatus, Duration)> {
        let mut c = self.child.take()?;
        let t = Instant::now();
        // SAFETY: kill(2) on our own child's PID (not yet waited for).
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                return Some((status, t.elapsed()));
            }
            if t.elapsed() >= limit {
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: gone without a word.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The next connection on `listener` within `limit`, blocking again; a
/// request that never comes fails the test (`what` says whose) instead of
/// hanging it.
pub fn accept_within(listener: &std::net::TcpListener, limit: Duration, what: &str) -> std::net::TcpStream {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + limit;
    let s = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("no {what} in {limit:?}: {e}"),
        }
    };
    s.set_nonblocking(false).unwrap();
    s
}

pub fn wait_for(mut cond: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SHA-256 of a file, in hex (`sha256sum`: fast in a debug build too).
pub fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().expect("sha256sum runs");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_string()
}

/// (relative path, SHA-256 or "dir") of everything under `root`, sorted.
pub fn tree(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let rel = e.path().strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if e.path().is_dir() {
                out.push((rel, "dir".into()));
                stack.push(e.path());
            } else {
                out.push((rel, sha256(&e.path())));
            }
        }
    }
    out.sort();
    out
}

/// A file of `len` pseudo-random bytes: one random MiB, varied per chunk
/// (fast, and no two chunks alike).
pub fn random_file(path: &Path, len: usize, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let block: Vec<u8> = (0..len.min(1 << 20)).map(|_| rng.u8(..)).collect();
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut left = len;
    let mut i = 0u8;
    while left > 0 {
        let n = left.min(block.len());
        let chunk: Vec<u8> = block[..n].iter().map(|b| b ^ i).collect();
        f.write_all(&chunk).unwrap();
        left -= n;
        i = i.wrapping_add(1);
    }
}
