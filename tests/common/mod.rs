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

// ---------------------------------------------------------------------------
// The web UI (tests/web.rs, benches/web.rs): its address, raw HTTP/1.1
// requests written by hand, and a headless Chromium driven by chromedriver.

/// A daemon's web UI, as `pigeon web --url` tells it.
#[derive(Debug, Clone)]
pub struct WebUi {
    /// `http://IP:PORT/?token=T`.
    pub url: String,
    /// `IP:PORT`.
    pub addr: String,
    pub token: String,
}

impl WebUi {
    /// `http://IP:PORT`: the Origin of its pages.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `pigeon_token=T`, for a `Cookie:` header.
    pub fn cookie(&self) -> String {
        format!("pigeon_token={}", self.token)
    }
}

impl Daemon {
    /// The web UI this daemon serves (`pigeon web --url` against its home).
    pub fn web(&self) -> WebUi {
        let out = self.cli(&["web", "--url"]);
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            out.status.success() && text.starts_with("http://"),
            "`pigeon web --url` of {}: {}\nstdout: {text}\nstderr: {}",
            self.nick,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let rest = text.strip_prefix("http://").unwrap();
        let (addr, query) = rest.split_once("/?token=").unwrap_or_else(|| panic!("no token in {text:?}"));
        WebUi { url: text.clone(), addr: addr.to_string(), token: query.to_string() }
    }
}

/// An HTTP answer: status, head (status line and headers), body (chunked
/// transfer coding undone).
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl HttpAnswer {
    /// Every value of a header (case-insensitive name).
    pub fn headers(&self, name: &str) -> Vec<String> {
        self.head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers(name).into_iter().next()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (Null if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// One HTTP/1.1 request on a new connection (`Connection: close`), the
/// answer read to its end; every step bounded (15 s). `Host: addr` unless
/// `headers` has a Host; a Content-Length for a body (or for POST/PUT)
/// unless `headers` has one or asks for chunked coding.
pub fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpAnswer {
    let has = |n: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !has("host") {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !has("content-length") && !has("transfer-encoding") && (!body.is_empty() || method == "POST" || method == "PUT")
    {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    http_raw(addr, head.as_bytes(), body)
}

/// Writes `head`, then `body` from another thread (a server may answer
/// before it has read the body, and close), and reads the answer to EOF.
pub fn http_raw(addr: &str, head: &[u8], body: &[u8]) -> HttpAnswer {
    let limit = Duration::from_secs(15);
    let sock: std::net::SocketAddr = addr.parse().unwrap_or_else(|e| panic!("{addr}: {e}"));
    let mut s = std::net::TcpStream::connect_timeout(&sock, limit).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(limit)).unwrap();
    s.set_write_timeout(Some(limit)).unwrap();
    s.write_all(head).unwrap_or_else(|e| panic!("write to {addr}: {e}"));
    let writer = (!body.is_empty()).then(|| {
        let mut w = s.try_clone().unwrap();
        let body = body.to_vec();
        std::thread::spawn(move || {
            // The server may refuse before reading it all: not an error here.
            let _ = w.write_all(&body);
        })
    });
    let mut raw = Vec::new();
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 64 * 1024];
    // To EOF, or to the end the head announces (not every server closes).
    while !complete(&raw) {
        use std::io::Read;
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            // A reset after the answer (the server closed with our body unread).
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !raw.is_empty() => break,
            Err(e) => panic!("reading the answer of {addr} ({} bytes so far): {e}", raw.len()),
        }
        assert!(Instant::now() < deadline, "the answer of {addr} did not end in {limit:?}");
    }
    let _ = s.shutdown(std::net::Shutdown::Both);
    if let Some(w) = writer {
        let _ = w.join();
    }
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in the answer of {addr}: {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut a = HttpAnswer { status, head, body: raw[end + 4..].to_vec() };
    if a.header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        a.body = dechunk(&a.body);
    }
    a
}

/// Whether `raw` holds a whole answer by its Content-Length or chunked coding.
fn complete(raw: &[u8]) -> bool {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else { return false };
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let body = &raw[end + 4..];
    let value = |name: &str| {
        head.lines()
            .find_map(|l| l.split_once(':').filter(|(k, _)| k.trim() == name).map(|(_, v)| v.trim().to_string()))
    };
    if let Some(n) = value("content-length").and_then(|v| v.parse::<usize>().ok()) {
        return body.len() >= n;
    }
    if value("transfer-encoding").is_some_and(|v| v == "chunked") {
        return body.starts_with(b"0\r\n\r\n") || body.windows(7).any(|w| w == b"\r\n0\r\n\r\n");
    }
    false
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&b[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok());
        let Some(size) = size else { break };
        if size == 0 || b.len() < eol + 2 + size {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[(eol + 4 + size).min(b.len())..];
    }
    out
}

/// chromedriver and Chromium, if both are installed: (chromedriver, chromium).
pub fn browser_tools() -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    let find = |names: &[&str]| {
        let path = std::env::var_os("PATH").unwrap_or_default();
        names.iter().find_map(|n| {
            std::env::split_paths(&path)
                .chain([std::path::PathBuf::from("/usr/bin"), std::path::PathBuf::from("/usr/lib/chromium")])
                .map(|d| d.join(n))
                .find(|p| p.is_file())
        })
    };
    Some((find(&["chromedriver"])?, find(&["chromium", "chromium-browser"])?))
}

/// The browser tools, or None after a clear "skipped" line; with
/// `PIGEON_REQUIRE_BROWSER=1` (CI) their absence fails instead.
pub fn browser_or_skip(what: &str) -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    let tools = browser_tools();
    if tools.is_none() {
        assert!(
            std::env::var("PIGEON_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "{what}: PIGEON_REQUIRE_BROWSER=1 but no chromium/chromedriver (apt-get install chromium chromium-driver)"
        );
        println!("{what}: skipped: no chromium/chromedriver (apt-get install chromium chromium-driver)");
    }
    tools
}

/// The PIDs of every process under `root` (children, their children…).
fn descendants(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter_map(|pid| {
                    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                    // After "pid (comm)": state, then the parent's PID.
                    let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
                    Some((pid, ppid))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut out = vec![];
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(child, parent) in &parents {
            if parent == p && !out.contains(&child) {
                out.push(child);
                frontier.push(child);
            }
        }
    }
    out
}

/// chromedriver (started by us on a free loopback port) and the Chromium it
/// starts: on drop, every process under chromedriver is killed by PID, then
/// chromedriver, and the profile and temporary folders are removed.
pub struct BrowserProcesses {
    driver: Child,
    /// The profile (`profile/`), TMPDIR of both (`tmp/`), chromedriver's log.
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl BrowserProcesses {
    /// chromedriver's log so far (for a failure's message).
    pub fn driver_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default()
    }
}

impl Drop for BrowserProcesses {
    fn drop(&mut self) {
        // Collected first: once a parent dies its children move to init.
        let pids = descendants(self.driver.id());
        for pid in pids.iter().rev() {
            // SAFETY: kill(2) on PIDs found under our own chromedriver.
            unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // Until they are gone (a zombie is: init reaps it).
        let deadline = Instant::now() + Duration::from_secs(5);
        let alive = |p: &u32| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .is_ok_and(|s| s.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
        };
        while pids.iter().any(alive) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A headless Chromium driven by WebDriver (fantoccini) through our own
/// chromedriver. [`Browser::close`] ends the session; the processes are
/// killed by PID when `procs` drops, panics included.
pub struct Browser {
    pub client: fantoccini::Client,
    pub procs: BrowserProcesses,
    pub session: String,
}

impl Browser {
    /// chromedriver on a free loopback port, then a session of headless
    /// Chromium (1280×900, its own profile in a temporary folder).
    pub async fn start(tools: &(std::path::PathBuf, std::path::PathBuf)) -> Browser {
        let (driver, chromium) = tools;
        let dir = tempfile::tempdir().unwrap();
        let (profile, tmp) = (dir.path().join("profile"), dir.path().join("tmp"));
        std::fs::create_dir_all(&profile).unwrap();
        std::fs::create_dir_all(&tmp).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", dir.path().join("chromedriver.log").display()))
            .env("TMPDIR", &tmp)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", driver.display()));
        let mut procs = BrowserProcesses { driver: child, dir, port };
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let up = std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(1)).is_ok()
                && http(&addr, "GET", "/status", &[], b"").status == 200;
            if up {
                break;
            }
            if let Ok(Some(status)) = procs.driver.try_wait() {
                panic!("chromedriver exited ({status}): {}", procs.driver_log());
            }
            assert!(Instant::now() < deadline, "chromedriver did not answer in 20 s: {}", procs.driver_log());
            std::thread::sleep(Duration::from_millis(50));
        }
        let caps = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", profile.display()), "--window-size=1280,900",
                    "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--metrics-recording-only", "--password-store=basic", "--lang=en-US",
                ],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
            "timeouts": {"pageLoad": 30000, "script": 15000, "implicit": 0},
        });
        let caps: serde_json::Map<String, Value> = serde_json::from_value(caps).unwrap();
        let connect = fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://{addr}"))
            .await;
        let client = match connect {
            Ok(c) => c,
            Err(e) => panic!("no browser session: {e}\nchromedriver's log:\n{}", procs.driver_log()),
        };
        let session = client.session_id().await.ok().flatten().unwrap_or_default();
        Browser { client, procs, session }
    }

    /// The page's console so far (chromedriver's log endpoint), one line
    /// each: level and message.
    pub fn console(&self) -> Vec<String> {
        let addr = format!("127.0.0.1:{}", self.procs.port);
        let path = format!("/session/{}/se/log", self.session);
        let a = http(&addr, "POST", &path, &[("Content-Type", "application/json")], br#"{"type":"browser"}"#);
        a.json()["value"]
            .as_array()
            .map(|v| {
                v.iter()
                    .map(|e| format!("{} {}", e["level"].as_str().unwrap_or("?"), e["message"].as_str().unwrap_or("")))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Runs `js` (a function body: `return …`) in the page.
    pub async fn js(&self, js: &str, args: Vec<Value>) -> Value {
        match self.client.execute(js, args).await {
            Ok(v) => v,
            Err(e) => panic!("script failed: {e}\nscript: {js}\nconsole: {:#?}", self.console()),
        }
    }

    /// Polls `js` (a function body returning a value) every 25 ms until it
    /// returns something truthy (not null, false, 0 or ""), at most `limit`.
    pub async fn wait_js(&self, js: &str, args: Vec<Value>, limit: Duration, what: &str) -> Value {
        let truthy = |v: &Value| match v {
            Value::Null | Value::Bool(false) => false,
            Value::Number(n) => n.as_f64() != Some(0.0),
            Value::String(s) => !s.is_empty(),
            _ => true,
        };
        self.wait_until(js, args, truthy, limit, what).await
    }

    /// Polls `js` every 25 ms until `done` holds for its value, at most
    /// `limit` (then fails with the last value, the page's text and console).
    pub async fn wait_until(
        &self,
        js: &str,
        args: Vec<Value>,
        done: impl Fn(&Value) -> bool,
        limit: Duration,
        what: &str,
    ) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let v = self.js(js, args.clone()).await;
            if done(&v) {
                return v;
            }
            if Instant::now() >= deadline {
                let page: Value = self
                    .client
                    .execute("return document.body ? document.body.innerText.slice(0, 3000) : ''", vec![])
                    .await
                    .unwrap_or_default();
                panic!(
                    "timed out after {limit:?} waiting for {what}\nlast value: {v}\npage text: {}\nconsole: {:#?}",
                    page.as_str().unwrap_or(""),
                    self.console()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Ends the session (Chromium quits); the processes go with `procs`.
    pub async fn close(self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.client.close()).await;
    }
}

/// A runtime for the browser's client (one thread: the test's own).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}
