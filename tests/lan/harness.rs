//! A private LAN of network namespaces for the LAN suite.
//!
//! [`Lan::new`] makes N hosts, each a network namespace with `lo` and
//! `veth0` (198.18.0.11, .12, …/24, a route for 255.255.255.255), joined by
//! a bridge that lives in its own namespace with no uplink. It checks that
//! no route leads anywhere but the test subnet. Nothing is created in, or
//! routed to, the root namespace.
//!
//! Every run uses a unique name prefix (`pgt<pid>x<n>`), so tests run in
//! parallel. Teardown happens on drop (so also when a test panics): every
//! process inside the namespaces is ended by PID (TERM, then KILL), then
//! the namespaces are deleted. Leftovers of a killed run (whose PID is no
//! longer alive) are removed when the next `Lan` is made.
//!
//! A host runs commands with a time bound ([`Host::run`]), long-lived
//! processes killed on drop ([`Host::spawn`]), closures with the calling
//! thread moved into its namespace ([`Host::enter`], to make sockets there),
//! link impairment ([`Host::impair`]: loss and duplication both ways, with
//! nftables) and captures ([`Host::capture`]).

use std::ffi::OsStr;
use std::io::Read;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The subnet every test LAN uses (inside its own namespaces only).
pub const SUBNET: [u8; 3] = [198, 18, 0];

static COUNTER: AtomicUsize = AtomicUsize::new(0);
const NAME_ROOT: &str = "pgt";

/// Whether the LAN suite may run here; prints why not and returns false
/// when `PIGEON_LAN_TESTS` is unset. With the variable set, a machine that
/// cannot run the suite is a failure, not a skip.
pub fn enabled(test: &str) -> bool {
    if std::env::var_os("PIGEON_LAN_TESTS").is_none_or(|v| v.is_empty() || v == "0") {
        eprintln!("skipped {test}: the LAN suite needs root and PIGEON_LAN_TESTS=1");
        return false;
    }
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "PIGEON_LAN_TESTS=1 but not running as root");
    for tool in ["ip", "tc"] {
        assert!(which(tool).is_some(), "PIGEON_LAN_TESTS=1 but `{tool}` is not installed (apt-get install iproute2)");
    }
    true
}

/// The full path of a program on PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(program)).find(|p| p.is_file())
}

/// A LAN of namespace hosts; torn down on drop.
pub struct Lan {
    prefix: String,
    bridge: String,
    hosts: Vec<Host>,
}

/// One host of a [`Lan`].
#[derive(Clone, Debug)]
pub struct Host {
    /// The network namespace name.
    pub ns: String,
    /// Its address on the bridge.
    pub addr: Ipv4Addr,
}

impl Lan {
    /// Builds a LAN of `n` hosts (1..=200).
    pub fn new(n: usize) -> Lan {
        assert!((1..=200).contains(&n), "a test LAN has 1 to 200 hosts");
        remove_stale();
        let prefix = format!("{NAME_ROOT}{}x{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
        let bridge = format!("{prefix}br");
        let mut lan = Lan { prefix, bridge: bridge.clone(), hosts: Vec::new() };
        ip(&["netns", "add", &bridge]);
        ip(&["-n", &bridge, "link", "set", "lo", "up"]);
        ip(&["-n", &bridge, "link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0"]);
        ip(&["-n", &bridge, "link", "set", "br0", "up"]);
        for i in 1..=n {
            let ns = format!("{}h{i}", lan.prefix);
            let addr = Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], 10 + i as u8);
            ip(&["netns", "add", &ns]);
            lan.hosts.push(Host { ns: ns.clone(), addr });
            sysctl(&ns, &["net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            let port = format!("p{i}");
            ip(&["-n", &bridge, "link", "add", &port, "type", "veth", "peer", "name", "veth0", "netns", &ns]);
            ip(&["-n", &bridge, "link", "set", &port, "master", "br0"]);
            ip(&["-n", &bridge, "link", "set", &port, "up"]);
            ip(&["-n", &ns, "addr", "add", &format!("{addr}/24"), "brd", "198.18.0.255", "dev", "veth0"]);
            ip(&["-n", &ns, "link", "set", "veth0", "up"]);
            ip(&["-n", &ns, "route", "add", "255.255.255.255/32", "dev", "veth0"]);
        }
        lan.check_isolated();
        lan
    }

    /// Host `i` (1-based).
    pub fn host(&self, i: usize) -> &Host {
        &self.hosts[i - 1]
    }

    /// All hosts.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// Moves host `i` to a new address on the same LAN (what DHCP does to a
    /// laptop): veth0 loses its address and gets `addr`.
    pub fn readdress(&mut self, i: usize, addr: Ipv4Addr) {
        let ns = self.hosts[i - 1].ns.clone();
        ip(&["-n", &ns, "addr", "flush", "dev", "veth0"]);
        ip(&["-n", &ns, "addr", "add", &format!("{addr}/24"), "brd", "198.18.0.255", "dev", "veth0"]);
        self.hosts[i - 1].addr = addr;
    }

    /// Gives host `i` a second interface on the bridge (two NICs on one
    /// LAN), veth1 with `addr`; what it sends to `via` leaves from there, so
    /// that host is heard at both addresses.
    pub fn second_nic(&self, i: usize, addr: Ipv4Addr, via: Ipv4Addr) {
        let ns = &self.hosts[i - 1].ns;
        let port = format!("q{i}");
        ip(&["-n", &self.bridge, "link", "add", &port, "type", "veth", "peer", "name", "veth1", "netns", ns]);
        ip(&["-n", &self.bridge, "link", "set", &port, "master", "br0"]);
        ip(&["-n", &self.bridge, "link", "set", &port, "up"]);
        ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "brd", "198.18.0.255", "dev", "veth1"]);
        ip(&["-n", ns, "link", "set", "veth1", "up"]);
        ip(&["-n", ns, "route", "add", &format!("{via}/32"), "dev", "veth1", "src", &addr.to_string()]);
    }

    /// Adds more addresses to host `i`'s veth0 (one machine, many addresses:
    /// what a flood from many sources looks like, without forging packets).
    pub fn add_addresses(&self, i: usize, addrs: &[Ipv4Addr]) {
        let ns = &self.hosts[i - 1].ns;
        for a in addrs {
            ip(&["-n", ns, "addr", "add", &format!("{a}/24"), "brd", "198.18.0.255", "dev", "veth0"]);
        }
    }

    /// The namespace names this LAN made (bridge included).
    pub fn namespaces(&self) -> Vec<String> {
        std::iter::once(self.bridge.clone()).chain(self.hosts.iter().map(|h| h.ns.clone())).collect()
    }

    /// Panics (after teardown, via drop) if any route leads off the test subnet
    /// or any host has an interface other than `lo` and `veth0`.
    fn check_isolated(&self) {
        for h in &self.hosts {
            let routes = ip_out(&["-n", &h.ns, "-4", "route", "show"]);
            for line in routes.lines().filter(|l| !l.trim().is_empty()) {
                assert!(
                    line.starts_with("198.18.0.0/24 dev veth0 ") || line.starts_with("255.255.255.255 dev veth0 "),
                    "unexpected route in {}: {line}",
                    h.ns
                );
            }
            let links = ip_out(&["-n", &h.ns, "-o", "link", "show"]);
            for line in links.lines() {
                let name = line.split(':').nth(1).unwrap_or("").trim();
                assert!(name == "lo" || name.starts_with("veth0"), "unexpected interface {name} in {}", h.ns);
            }
        }
        assert!(
            ip_out(&["-n", &self.bridge, "-4", "route", "show"]).trim().is_empty(),
            "the bridge namespace has a route"
        );
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        teardown(&self.namespaces());
    }
}

impl Host {
    /// A command that runs `program` inside this host's namespace.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns]).arg(program);
        c
    }

    /// Runs a command in this host, killing it after `limit`; returns its output.
    pub fn run(&self, args: &[&str], limit: Duration) -> Output {
        let mut c = self.command(args[0]);
        c.args(&args[1..]);
        run_bounded(c, limit)
    }

    /// Runs `f` on a thread that has entered this host's network namespace:
    /// sockets made there live in the host.
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.ns);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            // SAFETY: setns on this (fresh) thread only changes this thread's network namespace.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns into {path}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }

    /// Degrades this host's link in both directions: `loss` and `duplicate`
    /// in percent, with nftables. (`tc netem` on `veth0` would act on what
    /// the host sends only, and this machine's kernel lacks it: one tool,
    /// the same behaviour everywhere.)
    pub fn impair(&self, loss: u32, duplicate: u32) {
        assert!(which("nft").is_some(), "no nft: apt-get install nftables");
        // Both directions: input and output of IPv4 on this host, random drop
        // and, for output, a random duplicate sent to the same destination.
        let mut rules = String::from("table ip pigeon_impair {\n");
        rules += "  chain in { type filter hook input priority 0; policy accept;\n";
        if loss > 0 {
            rules += &format!("    numgen random mod 100 < {loss} drop\n");
        }
        rules += "  }\n  chain out { type filter hook output priority 0; policy accept;\n";
        if loss > 0 {
            rules += &format!("    numgen random mod 100 < {loss} drop\n");
        }
        if duplicate > 0 {
            rules += &format!("    numgen random mod 100 < {duplicate} dup to ip daddr device \"veth0\"\n");
        }
        rules += "  }\n}\n";
        let path = std::env::temp_dir().join(format!("{}-impair.nft", self.ns));
        std::fs::write(&path, rules).unwrap();
        check(self.run(&["nft", "-f", path.to_str().unwrap()], Duration::from_secs(5)), "nft");
        let _ = std::fs::remove_file(path);
    }

    /// Starts tcpdump on this host's veth0 for IPMsg traffic (UDP and TCP
    /// 2425) into `path`; stop it with [`Capture::finish`].
    pub fn capture(&self, path: &Path) -> Capture {
        let tcpdump = which("tcpdump").expect("tcpdump is not installed (apt-get install tcpdump)");
        let mut c = self.command(tcpdump);
        c.args(["-i", "veth0", "-U", "--immediate-mode", "-n", "-s", "0", "-w"]).arg(path).arg("port 2425");
        let proc = Proc::start(&mut c);
        // tcpdump says "listening on …" once the capture is armed.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && !path.exists() {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(200));
        Capture { proc: Some(proc), path: path.to_owned() }
    }
}

/// A running packet capture.
pub struct Capture {
    proc: Option<Proc>,
    path: PathBuf,
}

impl Capture {
    /// Stops tcpdump cleanly (SIGINT, so the file is complete) and returns the path.
    pub fn finish(mut self) -> PathBuf {
        if let Some(mut p) = self.proc.take() {
            p.signal(libc::SIGINT);
            p.wait_for(Duration::from_secs(5));
        }
        self.path.clone()
    }
}

/// A process started by the harness; ended (TERM, then KILL) on drop.
pub struct Proc {
    child: Child,
    /// What it printed, once it has ended ([`Proc::wait_for`]).
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Its output is read as it comes (a full pipe would stop it).
    readers: Vec<std::thread::JoinHandle<Vec<u8>>>,
}

/// Reads a pipe to its end on a thread of its own.
fn drain(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        v
    })
}

impl Proc {
    /// Starts `c` with its output piped and read as it comes.
    pub fn start(c: &mut Command) -> Proc {
        let mut child = c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
        let readers =
            vec![drain(child.stdout.take().expect("piped stdout")), drain(child.stderr.take().expect("piped stderr"))];
        Proc { child, stdout: Vec::new(), stderr: Vec::new(), readers }
    }

    /// The PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by PID.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's PID.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Waits up to `limit` for the process to end (killing it then), and
    /// collects its output. Returns whether it ended by itself.
    pub fn wait_for(&mut self, limit: Duration) -> bool {
        let by_itself = wait_child(&mut self.child, limit);
        let mut readers = std::mem::take(&mut self.readers).into_iter();
        if let (Some(o), Some(e)) = (readers.next(), readers.next()) {
            // A grandchild holding the pipes open must not hang the test:
            // the outputs are taken once the readers end (bounded wait).
            let deadline = Instant::now() + Duration::from_secs(5);
            while !(o.is_finished() && e.is_finished()) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if o.is_finished() {
                self.stdout = o.join().unwrap_or_default();
            }
            if e.is_finished() {
                self.stderr = e.join().unwrap_or_default();
            }
        }
        by_itself
    }

    /// True while the process runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.running() {
            self.signal(libc::SIGTERM);
            if !wait_child(&mut self.child, Duration::from_secs(3)) {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

/// Waits for a child up to `limit`; kills it then. True if it ended by itself.
fn wait_child(child: &mut Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return true,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

/// Runs a command to completion within `limit` (killed after), capturing output.
pub fn run_bounded(mut c: Command, limit: Duration) -> Output {
    let mut p = Proc::start(&mut c);
    let ended = p.wait_for(limit);
    let status = p.child.wait().expect("wait");
    if !ended {
        eprintln!("command {c:?} killed after {limit:?}");
    }
    Output { status, stdout: std::mem::take(&mut p.stdout), stderr: std::mem::take(&mut p.stderr) }
}

fn check(out: Output, what: &str) {
    assert!(out.status.success(), "{what} failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn ip(args: &[&str]) {
    let mut c = Command::new("ip");
    c.args(args);
    check(run_bounded(c, Duration::from_secs(10)), &format!("ip {}", args.join(" ")));
}

fn ip_out(args: &[&str]) -> String {
    let mut c = Command::new("ip");
    c.args(args);
    let out = run_bounded(c, Duration::from_secs(10));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sysctl(ns: &str, settings: &[&str]) {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, "sysctl", "-qw"]).args(settings);
    // IPv6 may be absent from the kernel; that is fine.
    let _ = run_bounded(c, Duration::from_secs(5));
}

/// Every namespace whose name this harness made.
pub fn harness_namespaces() -> Vec<String> {
    ip_out(&["netns", "list"])
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(NAME_ROOT) && n[NAME_ROOT.len()..].starts_with(|c: char| c.is_ascii_digit()))
        .map(String::from)
        .collect()
}

/// Ends every process in the namespaces (TERM, then KILL, by PID) and deletes them.
pub fn teardown(namespaces: &[String]) {
    let pids = |ns: &str| -> Vec<i32> {
        ip_out(&["netns", "pids", ns]).split_whitespace().filter_map(|p| p.parse().ok()).collect()
    };
    for ns in namespaces {
        for pid in pids(ns) {
            // SAFETY: kill(2) by PID of a process inside our own test namespace.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }
    for ns in namespaces {
        for _ in 0..30 {
            if pids(ns).is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        for pid in pids(ns) {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    for ns in namespaces {
        let mut c = Command::new("ip");
        c.args(["netns", "del", ns]);
        let _ = run_bounded(c, Duration::from_secs(10));
    }
}

/// Removes the namespaces of earlier runs whose process is gone (a run
/// killed before its drop could clean up).
fn remove_stale() {
    let stale: Vec<String> = harness_namespaces()
        .into_iter()
        .filter(|n| {
            let digits: String = n[NAME_ROOT.len()..].chars().take_while(char::is_ascii_digit).collect();
            let pid: i32 = digits.parse().unwrap_or(0);
            // SAFETY: signal 0 only checks that the PID exists.
            pid != std::process::id() as i32 && unsafe { libc::kill(pid, 0) } != 0
        })
        .collect();
    if !stale.is_empty() {
        eprintln!("removing namespaces left by a killed run: {stale:?}");
        teardown(&stale);
    }
}
