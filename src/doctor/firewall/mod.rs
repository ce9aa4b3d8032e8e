//! What in the host's firewall would stop IP Messenger traffic: UDP and TCP
//! on one port (2425 unless configured), coming in or going out. Reads the
//! rules of the tools that are installed — `nft -j list ruleset`,
//! `iptables-save`, `ufw status verbose`, `firewall-cmd --list-all` — each
//! run bounded in time, and never changes anything.
//!
//! The parsers are pure functions over the tools' text, tested on real
//! outputs. They are heuristics, not evaluators: they report every rule
//! that drops or rejects the port, every drop of a whole protocol or of all
//! traffic, and every drop policy, unless an accept of the port (or of the
//! whole protocol) comes before it on the same path. A rule with conditions
//! they do not judge (addresses, marks, rate limits, iptables-nft's `xt`
//! matches) is reported when it names the port and left out when it does
//! not, so `ip saddr 10.0.0.5 drop` is not a block but
//! `ip saddr 10.0.0.0/8 udp dport 2425 drop` is. Pigeon speaks IPv4 only:
//! IPv6-only rules (nft `ip6` tables and `ip6 …` matches, ufw's `(v6)`
//! rows) are left out, and so are forward chains, which never see the
//! traffic of this machine.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Which way the stopped traffic goes, seen from this machine.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Peers' messages, presence broadcasts and file requests reaching this machine.
    In,
    /// This machine's messages, broadcasts and file fetches leaving it.
    Out,
}

/// Which of IP Messenger's two transports a rule stops: UDP carries the
/// messages and presence, TCP the files.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Proto {
    Udp,
    Tcp,
    Both,
}

/// One rule, or one default policy, that stops IP Messenger traffic.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Block {
    /// "nftables", "iptables", "ufw" or "firewalld".
    pub tool: &'static str,
    pub direction: Direction,
    pub proto: Proto,
    /// Only broadcast packets are dropped (presence), e.g. `meta pkttype broadcast drop`.
    pub broadcast_only: bool,
    /// The rule as its tool shows it, with where it sits, e.g.
    /// `table inet filter, chain input: udp dport 2425 drop`; a rule reached
    /// through a jump names the path: `chain input (ip saddr 10.0.0.0/8 jump lan) → lan: …`.
    pub rule: String,
}

/// What [`inspect`] found.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Report {
    /// Tools whose rules were read (an installed firewalld that is not
    /// running counts as read: it enforces nothing).
    pub read: Vec<&'static str>,
    /// Tools that are installed but could not be read, and why (e.g. "needs root").
    pub unreadable: Vec<(&'static str, String)>,
    pub blocks: Vec<Block>,
}

/// How long one run of a tool may take before it is killed.
const TOOL_TIMEOUT: Duration = Duration::from_secs(5);

/// How deep jumps between chains are followed.
const MAX_DEPTH: usize = 8;

/// Runs the installed tools (each bounded: one that takes more than 5 s is
/// killed) and parses their output. A tool that is not installed is
/// skipped; one that may not be run or read is in `unreadable`.
pub fn inspect(port: u16) -> Report {
    let mut report = Report::default();
    if let Some(nft) = find_tool("nft") {
        let got = run_tool(&nft, &["-j", "list", "ruleset"]).and_then(Ran::stdout_if_ok);
        report.take("nftables", got.and_then(|out| parse_nft_json(&out, port)));
    }
    if let Some(save) = find_tool("iptables-save") {
        let got = run_tool(&save, &[]).and_then(Ran::stdout_if_ok);
        report.take("iptables", got.map(|out| parse_iptables_save(&out, port)));
    }
    if let Some(ufw) = find_tool("ufw") {
        let got = run_tool(&ufw, &["status", "verbose"]).and_then(Ran::stdout_if_ok);
        report.take("ufw", got.map(|out| parse_ufw_status(&out, port)));
    }
    if let Some(cmd) = find_tool("firewall-cmd") {
        let got = run_tool(&cmd, &["--state"]).and_then(|state| {
            if state.status.success() && state.stdout.trim() == "running" {
                let out = run_tool(&cmd, &["--list-all"]).and_then(Ran::stdout_if_ok)?;
                Ok(parse_firewalld_with_services(&out, port, &firewalld_service_ports))
            } else if state.text().contains("not running") {
                Ok(Vec::new())
            } else {
                Err(state.why())
            }
        });
        report.take("firewalld", got);
    }
    report
}

impl Report {
    fn take(&mut self, tool: &'static str, got: Result<Vec<Block>, String>) {
        match got {
            Ok(blocks) => {
                self.read.push(tool);
                self.blocks.extend(blocks);
            }
            Err(why) => self.unreadable.push((tool, why)),
        }
    }
}

// ---------------------------------------------------------------------------
// Running the tools

/// `name` in PATH, /usr/sbin, /sbin or /usr/local/sbin (a normal user's PATH
/// often lacks the sbin directories where the firewall tools live).
fn find_tool(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    dirs.extend(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from));
    dirs.into_iter().filter(|d| d.is_absolute()).map(|d| d.join(name)).find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

struct Ran {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn text(&self) -> String {
        format!("{}\n{}", self.stderr, self.stdout)
    }

    fn stdout_if_ok(self) -> Result<String, String> {
        if self.status.success() {
            Ok(self.stdout)
        } else {
            Err(self.why())
        }
    }

    /// Why a run failed, in a few words.
    fn why(&self) -> String {
        const NEEDS_ROOT: [&str; 8] = [
            "permission denied",
            "operation not permitted",
            "must be root",
            "need to be root",
            "needs root",
            "authorization failed",
            "not authorized",
            "access denied",
        ];
        let text = self.text();
        let lower = text.to_lowercase();
        if NEEDS_ROOT.iter().any(|w| lower.contains(w)) {
            return "needs root".to_string();
        }
        match text.lines().map(str::trim).find(|l| !l.is_empty()) {
            Some(line) if line.chars().count() > 160 => format!("{}…", line.chars().take(160).collect::<String>()),
            Some(line) => line.to_string(),
            None => match self.status.code() {
                Some(code) => format!("exited with status {code}"),
                None => "killed by a signal".to_string(),
            },
        }
    }
}

/// Runs `path args` with no input, in the C locale (ufw translates its
/// output), killing it after [`TOOL_TIMEOUT`].
fn run_tool(path: &Path, args: &[&str]) -> Result<Ran, String> {
    run_tool_within(path, args, TOOL_TIMEOUT)
}

fn run_tool_within(path: &Path, args: &[&str], timeout: Duration) -> Result<Ran, String> {
    let mut child = Command::new(path)
        .args(args)
        .env("LC_ALL", "C")
        .env("LANG", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::PermissionDenied => "not permitted to run it".to_string(),
            _ => format!("cannot run {}: {e}", path.display()),
        })?;
    // Read both pipes while waiting: a large ruleset would fill a pipe and
    // stall the tool.
    let stdout = read_in_background(child.stdout.take());
    let stderr = read_in_background(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("gave no answer within {:.1} s", timeout.as_secs_f64()));
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("cannot wait for it: {e}"));
            }
        }
    };
    // The pipes close when the tool exits, unless it left a child holding
    // them: wait a little for the rest of the output, not forever.
    let grace = Duration::from_secs(1);
    Ok(Ran {
        status,
        stdout: stdout.recv_timeout(grace).unwrap_or_default(),
        stderr: stderr.recv_timeout(grace).unwrap_or_default(),
    })
}

fn read_in_background<R: Read + Send + 'static>(pipe: Option<R>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    if let Some(mut pipe) = pipe {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
        });
    }
    rx
}

// ---------------------------------------------------------------------------
// The model the nftables and iptables parsers share

/// A subset of {UDP, TCP}.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Protos {
    udp: bool,
    tcp: bool,
}

impl Protos {
    const NONE: Protos = Protos { udp: false, tcp: false };
    const UDP: Protos = Protos { udp: true, tcp: false };
    const TCP: Protos = Protos { udp: false, tcp: true };
    const BOTH: Protos = Protos { udp: true, tcp: true };

    fn and(self, o: Protos) -> Protos {
        Protos { udp: self.udp && o.udp, tcp: self.tcp && o.tcp }
    }

    fn or(self, o: Protos) -> Protos {
        Protos { udp: self.udp || o.udp, tcp: self.tcp || o.tcp }
    }

    fn minus(self, o: Protos) -> Protos {
        Protos { udp: self.udp && !o.udp, tcp: self.tcp && !o.tcp }
    }

    fn is_empty(self) -> bool {
        !self.udp && !self.tcp
    }

    /// `udp`/`17` and `tcp`/`6` (any case); `all`/`0` is both.
    fn from_word(word: &str) -> Protos {
        match word.to_ascii_lowercase().as_str() {
            "udp" | "17" => Protos::UDP,
            "tcp" | "6" => Protos::TCP,
            "all" | "0" => Protos::BOTH,
            _ => Protos::NONE,
        }
    }

    fn proto(self) -> Proto {
        match (self.udp, self.tcp) {
            (true, true) => Proto::Both,
            (false, true) => Proto::Tcp,
            _ => Proto::Udp,
        }
    }
}

/// What a rule's conditions say about IP Messenger packets on the port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cond {
    /// Which of UDP and TCP can match (none: the rule never sees this traffic).
    protos: Protos,
    /// A port test that the port passes: the rule is about this port.
    port: bool,
    /// Only broadcast packets match.
    broadcast: bool,
    /// There are conditions that are not judged (addresses, marks, rates…).
    other: bool,
}

impl Cond {
    const ANY: Cond = Cond { protos: Protos::BOTH, port: false, broadcast: false, other: false };

    fn and(self, o: Cond) -> Cond {
        let mut c = Cond {
            protos: self.protos.and(o.protos),
            port: self.port || o.port,
            broadcast: self.broadcast || o.broadcast,
            other: self.other || o.other,
        };
        if c.broadcast {
            c.protos = c.protos.and(Protos::UDP);
        }
        c
    }

    /// The rule surely applies to IP Messenger traffic: it names the port,
    /// or has no conditions that are not judged.
    fn firm(self) -> bool {
        self.port || !self.other
    }

    fn restrict(&mut self, p: Protos) {
        self.protos = self.protos.and(p);
    }

    fn never(&mut self) {
        self.protos = Protos::NONE;
    }

    fn only_broadcast(&mut self) {
        self.broadcast = true;
        self.restrict(Protos::UDP);
    }

    /// The result of a port test: `Some(true)` passed, `Some(false)` failed,
    /// `None` could not be judged.
    fn port_test(&mut self, passed: Option<bool>) {
        match passed {
            Some(true) => self.port = true,
            Some(false) => self.never(),
            None => self.other = true,
        }
    }

    /// A test of the packet type (nft `meta pkttype`, iptables `-m pkttype`)
    /// or of the destination address type (nft `fib daddr type`, iptables
    /// `-m addrtype --dst-type`): `local` names this machine's unicast
    /// (`host` for pkttype); IP Messenger also uses broadcast.
    fn kind_test(&mut self, names: &[String], negated: bool, local: &str) {
        let has = |w: &str| names.iter().any(|n| n.eq_ignore_ascii_case(w));
        let (local, broadcast) = (has(local), has("broadcast"));
        match (negated, local, broadcast) {
            (false, true, _) | (true, false, _) => {}
            (false, false, true) | (true, true, false) => self.only_broadcast(),
            (false, false, false) | (true, true, true) => self.never(),
        }
    }

    /// A conntrack state test: does it let new traffic through?
    fn ct_state_test(&mut self, states: &[String], negated: bool) {
        let new = states.iter().any(|s| s.eq_ignore_ascii_case("new"));
        if new == negated {
            self.never();
        }
    }

    /// An interface test: the loopback interface carries no LAN traffic;
    /// any other interface is kept (the rule text names it).
    fn iface_test(&mut self, names: &[String], negated: bool) {
        if !negated && !names.is_empty() && names.iter().all(|n| n == "lo") {
            self.never();
        }
    }
}

enum Verdict {
    /// Drop or reject.
    Drop,
    Accept,
    Jump(String),
    Goto(String),
    Return,
}

/// One way through a rule: a plain rule has one, a verdict map one per element.
struct Branch {
    cond: Cond,
    verdict: Verdict,
}

struct Rule {
    text: String,
    /// No conditions at all (a bare jump is not worth showing in a path).
    bare: bool,
    branches: Vec<Branch>,
}

struct Chain {
    name: String,
    /// Set for chains where the traffic enters (input, output…).
    hook: Option<Direction>,
    /// How a drop policy is shown, when the chain has one.
    drop_policy: Option<String>,
    rules: Vec<Rule>,
}

struct Table {
    label: String,
    chains: Vec<Chain>,
}

impl Table {
    fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| c.name == name)
    }
}

/// A block found, before rules reached on several paths are merged.
struct Found {
    key: (usize, String, usize),
    dir: Direction,
    protos: Protos,
    broadcast: bool,
    rule: String,
}

/// Follows every hooked chain of every table, with its jumps.
fn analyze(tool: &'static str, tables: &[Table]) -> Vec<Block> {
    let mut found = Vec::new();
    for (t, table) in tables.iter().enumerate() {
        for chain in &table.chains {
            let Some(dir) = &chain.hook else { continue };
            let mut walker =
                Walker { table, table_index: t, dir: dir.clone(), accepted: Protos::NONE, found: &mut found };
            let base = format!("{}, chain {}", table.label, chain.name);
            walker.walk(chain, Cond::ANY, &base, 0);
            if let Some(policy) = &chain.drop_policy {
                let live = Protos::BOTH.minus(walker.accepted);
                let key = (t, chain.name.clone(), usize::MAX);
                walker.record(key, live, false, format!("{base}: {policy}"));
            }
        }
    }
    found
        .into_iter()
        .map(|f| Block { tool, direction: f.dir, proto: f.protos.proto(), broadcast_only: f.broadcast, rule: f.rule })
        .collect()
}

struct Walker<'a> {
    table: &'a Table,
    table_index: usize,
    dir: Direction,
    /// What an accept has already let through on this hook's path.
    accepted: Protos,
    found: &'a mut Vec<Found>,
}

impl Walker<'_> {
    fn walk(&mut self, chain: &Chain, ctx: Cond, path: &str, depth: usize) {
        // Traffic that left this chain (return, goto) is not judged by its later rules.
        let mut gone = Protos::NONE;
        // After a return on conditions that are not judged, the rest of the
        // chain sees only some of the traffic: its generic drops don't count.
        let mut conditional = false;
        for (i, rule) in chain.rules.iter().enumerate() {
            for branch in &rule.branches {
                let c = ctx.and(branch.cond);
                let live = c.protos.minus(self.accepted).minus(gone);
                if live.is_empty() {
                    continue;
                }
                // The rule surely applies to IP Messenger traffic.
                let firm = c.port || (!c.other && !conditional);
                match &branch.verdict {
                    Verdict::Drop if firm => {
                        let key = (self.table_index, chain.name.clone(), i);
                        self.record(key, live, c.broadcast, format!("{path}: {}", rule.text));
                    }
                    Verdict::Drop => {}
                    Verdict::Accept if firm && !c.broadcast => self.accepted = self.accepted.or(live),
                    Verdict::Accept => {}
                    Verdict::Return if firm && !c.broadcast => gone = gone.or(live),
                    Verdict::Return => conditional = true,
                    Verdict::Jump(target) | Verdict::Goto(target) => {
                        if let Some(sub) = self.table.chain(target).filter(|_| depth < MAX_DEPTH) {
                            let next = if rule.bare {
                                format!("{path} → {target}")
                            } else {
                                format!("{path} ({}) → {target}", rule.text)
                            };
                            self.walk(sub, Cond { protos: live, ..c }, &next, depth + 1);
                        }
                        if matches!(branch.verdict, Verdict::Goto(_)) && firm && !c.broadcast {
                            gone = gone.or(live);
                        }
                    }
                }
            }
        }
    }

    fn record(&mut self, key: (usize, String, usize), protos: Protos, broadcast: bool, rule: String) {
        if protos.is_empty() {
            return;
        }
        if let Some(f) = self.found.iter_mut().find(|f| f.key == key && f.dir == self.dir) {
            f.protos = f.protos.or(protos);
            f.broadcast &= broadcast;
            return;
        }
        self.found.push(Found { key, dir: self.dir.clone(), protos, broadcast, rule });
    }
}

/// Does `port` fall in `a`, `a:b`, `a-b`, `:b` or `a:` (`sep` is `:` or `-`)?
/// `None` when the text is not a port or range (a service name).
fn port_in(spec: &str, port: u16, sep: char) -> Option<bool> {
    let spec = spec.trim();
    match spec.split_once(sep) {
        Some((lo, hi)) => {
            let lo = if lo.is_empty() { 0 } else { lo.parse::<u16>().ok()? };
            let hi = if hi.is_empty() { u16::MAX } else { hi.parse::<u16>().ok()? };
            Some(lo <= port && port <= hi)
        }
        None => Some(spec.parse::<u16>().ok()? == port),
    }
}

/// Does `port` fall in a comma-separated list of ports and ranges?
fn port_in_list(list: &str, port: u16, sep: char) -> Option<bool> {
    let mut unknown = false;
    for spec in list.split(',') {
        match port_in(spec, port, sep) {
            Some(true) => return Some(true),
            Some(false) => {}
            None => unknown = true,
        }
    }
    if unknown {
        None
    } else {
        Some(false)
    }
}

// ---------------------------------------------------------------------------
// nftables

/// Parses `nft -j list ruleset`. Reads the hooked chains (input, prerouting
/// and ingress as incoming; output and postrouting as outgoing) of the `ip`,
/// `inet` and `netdev` tables and follows their jumps, gotos and verdict
/// maps. Judges port tests on `udp`, `tcp` and `th` `dport`/`sport` against
/// numbers, ranges, anonymous and named sets, with `==`, `!=` and
/// comparisons; protocol tests (`meta l4proto`, `ip protocol`); interfaces
/// (`lo` is not LAN traffic); `meta pkttype` and `fib daddr type` (a
/// broadcast-only drop is reported as such); `ct state` (a rule for
/// established traffic only never matches new traffic, so
/// `ct state established,related accept` does not make a later drop
/// harmless). Errs when the text is not nft's JSON.
pub fn parse_nft_json(json: &str, port: u16) -> Result<Vec<Block>, String> {
    if json.trim().is_empty() {
        return Ok(Vec::new());
    }
    let doc: Value = serde_json::from_str(json).map_err(|e| format!("cannot read nft's JSON: {e}"))?;
    let items = doc.get("nftables").and_then(Value::as_array).ok_or("nft's JSON has no \"nftables\" list")?;
    let str_of = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let key_of = |v: &Value, name: &str| Some((str_of(v, "family")?, str_of(v, "table")?, str_of(v, name)?));

    // Sets and maps first (rules name them), then tables, chains and rules.
    let mut sets: HashMap<(String, String, String), Vec<Value>> = HashMap::new();
    let mut tables: Vec<((String, String), Table)> = Vec::new();
    for item in items {
        for kind in ["set", "map"] {
            if let Some(key) = item.get(kind).and_then(|s| key_of(s, "name")) {
                let elems = item[kind].get("elem").and_then(Value::as_array).cloned().unwrap_or_default();
                sets.insert(key, elems);
            }
        }
        if let Some(t) = item.get("table") {
            if let (Some(family), Some(name)) = (str_of(t, "family"), str_of(t, "name")) {
                // Pigeon speaks IPv4: ip6 tables never see it; arp and bridge tables are not about this host's IP traffic.
                if matches!(family.as_str(), "ip" | "inet" | "netdev") {
                    let label = format!("table {family} {name}");
                    tables.push(((family, name), Table { label, chains: Vec::new() }));
                }
            }
        }
    }
    for item in items {
        let Some(c) = item.get("chain") else { continue };
        let Some((family, table, name)) = key_of(c, "name") else { continue };
        let Some((_, t)) = tables.iter_mut().find(|(k, _)| k.0 == family && k.1 == table) else { continue };
        let hook = match (c.get("type").and_then(Value::as_str), c.get("hook").and_then(Value::as_str)) {
            (Some("nat"), _) => None,
            (_, Some("input" | "prerouting" | "ingress")) => Some(Direction::In),
            (_, Some("output" | "postrouting" | "egress")) => Some(Direction::Out),
            _ => None,
        };
        let drops = c.get("policy").and_then(Value::as_str) == Some("drop");
        let drop_policy = (hook.is_some() && drops).then(|| "policy drop".to_string());
        t.chains.push(Chain { name, hook, drop_policy, rules: Vec::new() });
    }
    for item in items {
        let Some(r) = item.get("rule") else { continue };
        let Some((family, table, chain)) = key_of(r, "chain") else { continue };
        let Some((_, t)) = tables.iter_mut().find(|(k, _)| k.0 == family && k.1 == table) else { continue };
        let Some(c) = t.chains.iter_mut().find(|c| c.name == chain) else { continue };
        let exprs = r.get("expr").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        let nft = Nft { port, sets: &sets, family: &family, table: &table };
        c.rules.push(nft.rule(exprs));
    }
    let tables: Vec<Table> = tables.into_iter().map(|(_, t)| t).collect();
    Ok(analyze("nftables", &tables))
}

/// The single key of a JSON object such as `{"drop": null}`.
fn only_key(v: &Value) -> Option<(&str, &Value)> {
    v.as_object().and_then(|o| o.iter().next()).map(|(k, v)| (k.as_str(), v))
}

/// Converts one table's rules.
struct Nft<'a> {
    port: u16,
    sets: &'a HashMap<(String, String, String), Vec<Value>>,
    family: &'a str,
    table: &'a str,
}

impl Nft<'_> {
    fn rule(&self, exprs: &[Value]) -> Rule {
        let text = exprs.iter().map(render_stmt).filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" ");
        let mut cond = Cond::ANY;
        let mut verdict = None;
        let mut branches = Vec::new();
        let mut bare = true;
        for e in exprs {
            let Some((kind, body)) = only_key(e) else { continue };
            match kind {
                "match" => {
                    bare = false;
                    let op = body.get("op").and_then(Value::as_str).unwrap_or("==");
                    self.test(op, &body["left"], &body["right"], &mut cond);
                }
                "xt" => match (body.get("type").and_then(Value::as_str), body.get("name").and_then(Value::as_str)) {
                    (Some("match"), Some("comment")) => {}
                    (Some("target"), Some("REJECT" | "DROP")) => verdict = Some(Verdict::Drop),
                    (Some("target"), _) => {}
                    _ => {
                        bare = false;
                        cond.other = true;
                    }
                },
                "limit" | "quota" | "meter" => {
                    bare = false;
                    cond.other = true;
                }
                "vmap" => {
                    bare = false;
                    branches.extend(self.vmap(body, cond));
                }
                _ => {
                    if let Some(v) = nft_verdict(e) {
                        verdict = Some(v);
                    }
                }
            }
        }
        if let Some(verdict) = verdict {
            branches.push(Branch { cond, verdict });
        }
        Rule { text, bare, branches }
    }

    /// `key vmap { k : verdict, … }`: one branch per element that can match.
    fn vmap(&self, body: &Value, cond: Cond) -> Vec<Branch> {
        let pairs: Vec<Value> = match &body["data"] {
            Value::String(name) => self.named_set(name).cloned().unwrap_or_default(),
            data => data.get("set").and_then(Value::as_array).cloned().unwrap_or_default(),
        };
        let mut branches = Vec::new();
        for pair in &pairs {
            let Some([key, verdict]) = pair.as_array().map(Vec::as_slice) else { continue };
            let Some(verdict) = nft_verdict(verdict) else { continue };
            let mut c = cond;
            self.test("==", &body["key"], key, &mut c);
            if !c.protos.is_empty() {
                branches.push(Branch { cond: c, verdict });
            }
        }
        branches
    }

    fn named_set(&self, name: &str) -> Option<&Vec<Value>> {
        let name = name.strip_prefix('@')?;
        self.sets.get(&(self.family.to_string(), self.table.to_string(), name.to_string()))
    }

    /// The elements a match's right side stands for: a set's, a named set's, or itself.
    fn elements(&self, right: &Value) -> Option<Vec<Value>> {
        let raw = match right {
            Value::String(s) if s.starts_with('@') => self.named_set(s)?.clone(),
            Value::Array(a) => a.clone(),
            v => match v.get("set") {
                Some(Value::Array(a)) => a.clone(),
                _ => vec![v.clone()],
            },
        };
        // Elements with options (timeouts, counters) are {"elem": {"val": …}}.
        Some(raw.into_iter().map(|e| e.get("elem").and_then(|x| x.get("val")).cloned().unwrap_or(e)).collect())
    }

    /// The element names of a right side, as text (`["established", "related"]`).
    fn names(&self, right: &Value) -> Option<Vec<String>> {
        let names = self.elements(right)?.into_iter().filter_map(|e| match e {
            Value::String(s) => Some(s),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
        Some(names.collect())
    }

    fn contains_port(&self, right: &Value) -> Option<bool> {
        let mut unknown = false;
        for e in self.elements(right)? {
            let hit = match &e {
                Value::Number(n) => n.as_u64().map(|n| n == u64::from(self.port)),
                Value::String(s) => port_in(s, self.port, '-'),
                v => match v.get("range").and_then(Value::as_array).map(Vec::as_slice) {
                    Some([lo, hi]) => match (bound(lo), bound(hi)) {
                        (Some(lo), Some(hi)) => Some(lo <= u64::from(self.port) && u64::from(self.port) <= hi),
                        _ => None,
                    },
                    _ => None,
                },
            };
            match hit {
                Some(true) => return Some(true),
                Some(false) => {}
                None => unknown = true,
            }
        }
        if unknown {
            None
        } else {
            Some(false)
        }
    }

    /// Judges one `left op right` test (a match, or a verdict map's key
    /// against one element) into `cond`.
    fn test(&self, op: &str, left: &Value, right: &Value, cond: &mut Cond) {
        let negated = op == "!=";
        let Some((kind, body)) = only_key(left) else {
            cond.other = true;
            return;
        };
        let field = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or("");
        match (kind, field("protocol"), field("field"), field("key")) {
            ("payload", proto @ ("udp" | "tcp" | "th"), "dport" | "sport", _) => {
                cond.restrict(match proto {
                    "udp" => Protos::UDP,
                    "tcp" => Protos::TCP,
                    _ => Protos::BOTH,
                });
                let passed = match op {
                    "==" | "in" => self.contains_port(right),
                    "!=" => self.contains_port(right).map(|c| !c),
                    _ => match (right.as_u64(), u64::from(self.port)) {
                        (Some(r), p) => match op {
                            "<" => Some(p < r),
                            "<=" => Some(p <= r),
                            ">" => Some(p > r),
                            ">=" => Some(p >= r),
                            _ => None,
                        },
                        (None, _) => None,
                    },
                };
                cond.port_test(passed);
            }
            ("payload", "udp", _, _) => {
                cond.restrict(Protos::UDP);
                cond.other = true;
            }
            ("payload", "tcp", _, _) => {
                cond.restrict(Protos::TCP);
                cond.other = true;
            }
            ("payload", "ip", "protocol", _) | ("meta", _, _, "l4proto") => match self.names(right) {
                Some(names) => {
                    let set = names.iter().fold(Protos::NONE, |acc, n| acc.or(Protos::from_word(n)));
                    cond.restrict(if negated { Protos::BOTH.minus(set) } else { set });
                }
                None => cond.other = true,
            },
            // The packet is IPv6, or ICMP, SCTP…: not Pigeon's.
            ("payload", "ip6" | "icmp" | "icmpv6" | "sctp" | "dccp" | "esp" | "ah" | "comp" | "igmp" | "gre", _, _) => {
                cond.never()
            }
            ("meta", _, _, "nfproto" | "protocol") => match self.names(right) {
                Some(names) => {
                    let v4 = names.iter().any(|n| n == "ipv4" || n == "ip");
                    if v4 == negated {
                        cond.never();
                    }
                }
                None => cond.other = true,
            },
            ("meta", _, _, "iifname" | "oifname" | "iif" | "oif") => {
                cond.iface_test(&self.names(right).unwrap_or_default(), negated)
            }
            ("meta", _, _, "pkttype") => cond.kind_test(&self.names(right).unwrap_or_default(), negated, "host"),
            ("ct", _, _, "state") if body.get("dir").is_none() => {
                cond.ct_state_test(&self.names(right).unwrap_or_default(), negated)
            }
            ("fib", _, _, _)
                if body.get("result").and_then(Value::as_str) == Some("type")
                    && body.get("flags").is_some_and(|f| f.to_string().contains("daddr")) =>
            {
                cond.kind_test(&self.names(right).unwrap_or_default(), negated, "local")
            }
            _ => cond.other = true,
        }
    }
}

fn bound(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

fn nft_verdict(v: &Value) -> Option<Verdict> {
    let (kind, body) = only_key(v)?;
    let target = || body.get("target").and_then(Value::as_str).map(str::to_string);
    match kind {
        "accept" => Some(Verdict::Accept),
        "drop" | "reject" => Some(Verdict::Drop),
        "return" => Some(Verdict::Return),
        "jump" => target().map(Verdict::Jump),
        "goto" => target().map(Verdict::Goto),
        _ => None,
    }
}

/// One statement as `nft list ruleset` shows it (near enough).
fn render_stmt(s: &Value) -> String {
    let Some((kind, body)) = only_key(s) else { return String::new() };
    let text = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or("");
    match kind {
        "match" => {
            let left = &body["left"];
            let iface = matches!(
                left.get("meta").and_then(|m| m.get("key")).and_then(Value::as_str),
                Some("iifname" | "oifname")
            );
            let right = match &body["right"] {
                Value::String(s) if iface => format!("\"{s}\""),
                r => render_expr(r),
            };
            match text("op") {
                "==" | "in" | "" => format!("{} {right}", render_expr(left)),
                op => format!("{} {op} {right}", render_expr(left)),
            }
        }
        "accept" | "drop" | "return" | "continue" | "counter" | "notrack" => kind.to_string(),
        "reject" => match (text("type"), text("expr")) {
            ("", _) | ("icmpx", "port-unreachable") => "reject".to_string(),
            (t, "") => format!("reject with {t}"),
            (t, e) => format!("reject with {t} {e}"),
        },
        "jump" | "goto" => format!("{kind} {}", text("target")),
        "vmap" => {
            let data = match &body["data"] {
                Value::String(name) => name.clone(),
                d => {
                    let pairs = d.get("set").and_then(Value::as_array).cloned().unwrap_or_default();
                    let pairs: Vec<String> = pairs
                        .iter()
                        .filter_map(|p| match p.as_array().map(Vec::as_slice) {
                            Some([k, v]) => Some(format!("{} : {}", render_expr(k), render_stmt(v))),
                            _ => None,
                        })
                        .collect();
                    format!("{{ {} }}", pairs.join(", "))
                }
            };
            format!("{} vmap {data}", render_expr(&body["key"]))
        }
        "log" => match text("prefix") {
            "" => "log".to_string(),
            p => format!("log prefix \"{p}\""),
        },
        "limit" => {
            let over = if body.get("inv").and_then(Value::as_bool) == Some(true) { "over " } else { "" };
            format!("limit rate {over}{}/{}", render_expr(&body["rate"]), text("per"))
        }
        "xt" => format!("xt {} {}", text("type"), text("name")),
        other => other.to_string(),
    }
}

/// One expression as nft shows it.
fn render_expr(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(_) | Value::Number(_) => v.to_string(),
        Value::Array(items) => items.iter().map(render_expr).collect::<Vec<_>>().join(","),
        Value::Object(_) => {
            let Some((kind, body)) = only_key(v) else { return String::new() };
            let text = |k: &str| body.get(k).map(render_expr).unwrap_or_default();
            let list = || body.as_array().map(|a| a.iter().map(render_expr).collect::<Vec<_>>()).unwrap_or_default();
            match kind {
                "set" => format!("{{ {} }}", list().join(", ")),
                "range" => list().join("-"),
                "concat" => list().join(" . "),
                "&" | "|" | "^" | "<<" | ">>" => list().join(&format!(" {kind} ")),
                "prefix" => format!("{}/{}", text("addr"), text("len")),
                "elem" => text("val"),
                "payload" if body.get("protocol").is_some() => format!("{} {}", text("protocol"), text("field")),
                "payload" => format!("@{},{},{}", text("base"), text("offset"), text("len")),
                "meta" => {
                    let key = text("key");
                    const BARE: [&str; 11] = [
                        "iif", "iifname", "oif", "oifname", "iiftype", "oiftype", "mark", "skuid", "skgid", "ibrname",
                        "obrname",
                    ];
                    if BARE.contains(&key.as_str()) {
                        key
                    } else {
                        format!("meta {key}")
                    }
                }
                "ct" => match body.get("dir") {
                    Some(dir) => format!("ct {} {}", render_expr(dir), text("key")),
                    None => format!("ct {}", text("key")),
                },
                "fib" => {
                    let flags = body.get("flags").map(render_expr).unwrap_or_default().replace(',', " . ");
                    format!("fib {flags} {}", text("result"))
                }
                other => other.to_string(),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// iptables

/// Parses `iptables-save`. Reads every table but `nat`; INPUT and PREROUTING
/// as incoming, OUTPUT and POSTROUTING as outgoing, with their policies and
/// the user chains they jump (`-j`) or go (`-g`) to. Judges `-p`, `--dport`
/// and `--sport` (single ports and `a:b` ranges), multiport `--dports`,
/// `--sports` and `--ports`, negations (`! --dport 2425`, also the old
/// `--dport ! 2425`), `-i`/`-o` (`lo` is not LAN traffic), conntrack
/// `--ctstate`/`--state`, `--pkt-type` and addrtype `--dst-type`
/// (broadcast-only drops are reported as such). Other matches (`-s`, `-d`,
/// `-m limit`, `-m set`…) are not judged. Lines with counters (`iptables-save -c`) are read too.
pub fn parse_iptables_save(text: &str, port: u16) -> Vec<Block> {
    struct Saved {
        name: String,
        chains: Vec<(String, String)>,
        rules: Vec<(String, String)>,
    }
    fn finish(saved: Option<Saved>, port: u16, tables: &mut Vec<Table>) {
        let Some(saved) = saved else { return };
        if saved.name == "nat" {
            return;
        }
        let names: HashSet<&str> = saved.chains.iter().map(|(n, _)| n.as_str()).collect();
        let mut chains: Vec<Chain> = saved
            .chains
            .iter()
            .map(|(name, policy)| {
                let hook = match name.as_str() {
                    "INPUT" | "PREROUTING" => Some(Direction::In),
                    "OUTPUT" | "POSTROUTING" => Some(Direction::Out),
                    _ => None,
                };
                let drop_policy = (hook.is_some() && policy == "DROP").then(|| "policy DROP".to_string());
                Chain { name: name.clone(), hook, drop_policy, rules: Vec::new() }
            })
            .collect();
        for (chain, rest) in &saved.rules {
            let rule = iptables_rule(rest, port, &names);
            match chains.iter_mut().find(|c| &c.name == chain) {
                Some(c) => c.rules.push(rule),
                None => chains.push(Chain { name: chain.clone(), hook: None, drop_policy: None, rules: vec![rule] }),
            }
        }
        tables.push(Table { label: format!("table {}", saved.name), chains });
    }

    let mut tables = Vec::new();
    let mut current: Option<Saved> = None;
    for line in text.lines() {
        let line = line.trim();
        // `iptables-save -c` puts the counters first: `[12:3456] -A INPUT …`.
        let line = match line.strip_prefix('[').and_then(|l| l.split_once(']')) {
            Some((_, rest)) => rest.trim_start(),
            None => line,
        };
        if let Some(name) = line.strip_prefix('*') {
            finish(current.take(), port, &mut tables);
            current = Some(Saved { name: name.trim().to_string(), chains: Vec::new(), rules: Vec::new() });
        } else if line == "COMMIT" {
            finish(current.take(), port, &mut tables);
        } else if let (Some(decl), Some(t)) = (line.strip_prefix(':'), current.as_mut()) {
            let mut words = decl.split_whitespace();
            if let Some(name) = words.next() {
                t.chains.push((name.to_string(), words.next().unwrap_or("-").to_string()));
            }
        } else if let (Some(rule), Some(t)) = (line.strip_prefix("-A "), current.as_mut()) {
            let (chain, rest) = rule.trim_start().split_once(' ').unwrap_or((rule.trim(), ""));
            t.rules.push((chain.to_string(), rest.trim().to_string()));
        }
    }
    finish(current, port, &mut tables);
    analyze("iptables", &tables)
}

/// One `-A CHAIN …` line's arguments (after the chain name).
fn iptables_rule(args: &str, port: u16, chains: &HashSet<&str>) -> Rule {
    let toks = shell_words(args);
    let mut cond = Cond::ANY;
    let mut verdict = None;
    let mut bare = true;
    let mut negated = false;
    let mut i = 0;
    while i < toks.len() {
        let opt = toks[i].as_str();
        if opt == "!" {
            negated = true;
            i += 1;
            continue;
        }
        // The option's value; the old syntax puts the negation there: `--dport ! 2425`.
        let mut took = 2;
        let mut value = toks.get(i + 1).map(String::as_str).unwrap_or("");
        if value == "!" {
            negated = true;
            value = toks.get(i + 2).map(String::as_str).unwrap_or("");
            took = 3;
        }
        let list = || value.split(',').map(str::to_string).collect::<Vec<_>>();
        match opt {
            "-j" | "--jump" | "-g" | "--goto" => {
                let goto = matches!(opt, "-g" | "--goto");
                verdict = match value {
                    "ACCEPT" => Some(Verdict::Accept),
                    "DROP" | "REJECT" => Some(Verdict::Drop),
                    "RETURN" => Some(Verdict::Return),
                    chain if chains.contains(chain) && goto => Some(Verdict::Goto(chain.to_string())),
                    chain if chains.contains(chain) => Some(Verdict::Jump(chain.to_string())),
                    _ => None,
                };
                // What follows belongs to the target (--reject-with, --log-prefix…).
                break;
            }
            "-m" | "--match" | "--comment" => {}
            "-c" | "--set-counters" => took += 1,
            "-p" | "--protocol" => {
                bare = false;
                let set = Protos::from_word(value);
                cond.restrict(if negated { Protos::BOTH.minus(set) } else { set });
            }
            "--dport" | "--destination-port" | "--sport" | "--source-port" => {
                bare = false;
                cond.port_test(port_in(value, port, ':').map(|hit| hit != negated));
            }
            "--dports" | "--destination-ports" | "--sports" | "--source-ports" | "--ports" => {
                bare = false;
                cond.port_test(port_in_list(value, port, ':').map(|hit| hit != negated));
            }
            "-i" | "--in-interface" | "-o" | "--out-interface" => {
                bare = false;
                cond.iface_test(&[value.to_string()], negated);
            }
            "--ctstate" | "--state" => {
                bare = false;
                cond.ct_state_test(&list(), negated);
            }
            "--pkt-type" => {
                bare = false;
                cond.kind_test(&list(), negated, "host");
            }
            "--dst-type" => {
                bare = false;
                cond.kind_test(&list(), negated, "local");
            }
            _ if opt.starts_with('-') => {
                // A match not judged here (-s, -d, --limit, --match-set…): skip its values.
                bare = false;
                cond.other = true;
                took = 1 + toks[i + 1..].iter().take_while(|t| !t.starts_with('-') && *t != "!").count();
            }
            _ => took = 1,
        }
        negated = false;
        i += took;
    }
    let branches = verdict.map(|verdict| Branch { cond, verdict }).into_iter().collect();
    Rule { text: args.to_string(), bare, branches }
}

/// Splits a line into words the way a shell would: `--comment "a b"` is two.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = line.chars();
    while let Some(ch) = chars.next() {
        match (quote, ch) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') => word.extend(chars.next()),
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(ch);
                in_word = true;
            }
            (None, '\\') => {
                word.extend(chars.next());
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

// ---------------------------------------------------------------------------
// ufw

/// Parses `ufw status verbose` (plain `ufw status` too, which has no
/// defaults line). Nothing when ufw is inactive. Reads the rules in order
/// (the first match wins, as in ufw): ALLOW and LIMIT rows for the port let
/// it through, DENY and REJECT rows for it are blocks; then a `deny` or
/// `reject` default for incoming or outgoing traffic is a block for what no
/// earlier row allowed. Understands ports, lists (`2425,2426/udp`) and
/// ranges (`2400:2500/tcp`) on either side (`Anywhere DENY IN 2425/udp` is
/// a source port), `on IFACE`, comments. Leaves out `(v6)` and `FWD` rows,
/// and rows naming an application profile (their ports are not shown).
pub fn parse_ufw_status(text: &str, port: u16) -> Vec<Block> {
    let active = text.lines().any(|l| {
        let l = l.trim();
        l.starts_with("Status:") && l["Status:".len()..].trim().eq_ignore_ascii_case("active")
    });
    if !active {
        return Vec::new();
    }
    let mut blocks = Vec::new();
    let mut accepted_in = Protos::NONE;
    let mut accepted_out = Protos::NONE;
    let mut in_rules = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("--") {
            in_rules = true;
            continue;
        }
        if !in_rules || line.is_empty() {
            continue;
        }
        let Some((allow, dir, cond, text)) = ufw_row(line, port) else { continue };
        let accepted = if dir == Direction::In { &mut accepted_in } else { &mut accepted_out };
        let live = cond.protos.minus(*accepted);
        if live.is_empty() || !cond.firm() {
            continue;
        }
        if allow {
            *accepted = accepted.or(live);
        } else {
            blocks.push(Block { tool: "ufw", direction: dir, proto: live.proto(), broadcast_only: false, rule: text });
        }
    }
    // Default: deny (incoming), allow (outgoing), disabled (routed)
    let defaults = text.lines().find_map(|l| l.trim().strip_prefix("Default:")).unwrap_or("");
    for part in defaults.split(',').map(str::trim) {
        let refuses = part.starts_with("deny") || part.starts_with("reject");
        let (dir, accepted) = if part.ends_with("(incoming)") {
            (Direction::In, accepted_in)
        } else if part.ends_with("(outgoing)") {
            (Direction::Out, accepted_out)
        } else {
            continue;
        };
        let live = Protos::BOTH.minus(accepted);
        if refuses && !live.is_empty() {
            let rule = format!("Default: {part}");
            blocks.push(Block { tool: "ufw", direction: dir, proto: live.proto(), broadcast_only: false, rule });
        }
    }
    blocks
}

/// One row of ufw's table: (allows, direction, conditions, the row as shown).
fn ufw_row(line: &str, port: u16) -> Option<(bool, Direction, Cond, String)> {
    let text = line.split_whitespace().collect::<Vec<_>>().join(" ");
    // `[ 1] 22/tcp ALLOW IN Anywhere` in `ufw status numbered`.
    let body = match text.strip_prefix('[').and_then(|t| t.split_once(']')) {
        Some((_, rest)) => rest.trim(),
        None => text.as_str(),
    };
    let body = body.split(" # ").next().unwrap_or(body);
    let words: Vec<&str> = body.split(' ').collect();
    let at = words.iter().position(|w| matches!(*w, "ALLOW" | "DENY" | "REJECT" | "LIMIT"))?;
    let allow = matches!(words[at], "ALLOW" | "LIMIT");
    let (dir, from_at) = match words.get(at + 1) {
        Some(&"IN") => (Direction::In, at + 2),
        Some(&"OUT") => (Direction::Out, at + 2),
        Some(&"FWD") => return None,
        _ => (Direction::In, at + 1),
    };
    let (to, from) = (&words[..at], &words[from_at..]);
    if to.contains(&"(v6)") || from.contains(&"(v6)") {
        return None;
    }
    let mut cond = Cond::ANY;
    ufw_side(to, port, &mut cond)?;
    ufw_side(from, port, &mut cond)?;
    Some((allow, dir, cond, text))
}

/// One side of a ufw row (`2425/udp on eth0`, `Anywhere`, `10.0.0.0/8 2425`).
/// `None` for an application profile's name.
fn ufw_side(words: &[&str], port: u16, cond: &mut Cond) -> Option<()> {
    let mut i = 0;
    while i < words.len() {
        let w = words[i];
        if w == "on" {
            cond.iface_test(&[words.get(i + 1).unwrap_or(&"").to_string()], false);
            i += 2;
            continue;
        }
        if w.starts_with('(') {
            // (log), (log-all), or an application's name in parentheses.
            while i < words.len() && !words[i].ends_with(')') {
                i += 1;
            }
            i += 1;
            continue;
        }
        let (spec, proto) = match w.split_once('/') {
            Some((s, p)) if p.chars().all(|c| c.is_ascii_alphabetic()) => (s, Some(p)),
            _ => (w, None),
        };
        if let Some(p) = proto {
            cond.restrict(Protos::from_word(p));
        }
        let anywhere = spec.eq_ignore_ascii_case("anywhere") || spec.eq_ignore_ascii_case("any");
        let ports = !spec.is_empty() && spec.chars().all(|c| c.is_ascii_digit() || c == ',' || c == ':');
        let address = w.contains(['.', ':']) && w.chars().all(|c| c.is_ascii_hexdigit() || ".:/".contains(c));
        match (anywhere, ports, address) {
            (true, _, _) => {}
            (_, true, _) => cond.port_test(port_in_list(spec, port, ':')),
            (_, _, true) => cond.other = true,
            // An application profile: its ports are not shown.
            _ => return None,
        }
        i += 1;
    }
    Some(())
}

// ---------------------------------------------------------------------------
// firewalld

/// Parses `firewall-cmd --list-all` (one zone) or `--list-all-zones` (the
/// active zones count), with no knowledge of what the services listed
/// contain: see [`parse_firewalld_with_services`].
pub fn parse_firewalld(list_all: &str, port: u16) -> Vec<Block> {
    parse_firewalld_with_services(list_all, port, &|_| Vec::new())
}

/// Parses `firewall-cmd --list-all`; `services` gives what a service opens
/// (`2425/udp`, `2400-2500/tcp`, or a bare protocol `udp`), nothing for an
/// unknown one. A zone whose target is `default`, `REJECT` or `DROP`
/// refuses incoming traffic that none of its `ports`, `source-ports`,
/// `protocols`, `services` or accepting rich rules opens: that is a block.
/// Rich rules that drop or reject the port are blocks too (firewalld runs
/// them before its allows). IPv6 rich rules are left out.
pub fn parse_firewalld_with_services(list_all: &str, port: u16, services: &dyn Fn(&str) -> Vec<String>) -> Vec<Block> {
    struct Zone {
        header: String,
        fields: Vec<(String, String)>,
        rich: Vec<String>,
    }
    let mut zones: Vec<Zone> = Vec::new();
    for line in list_all.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(char::is_whitespace) {
            zones.push(Zone { header: line.trim().to_string(), fields: Vec::new(), rich: Vec::new() });
            continue;
        }
        let Some(zone) = zones.last_mut() else { continue };
        let line = line.trim();
        if line.starts_with("rule ") || line == "rule" {
            zone.rich.push(line.to_string());
        } else if let Some((key, value)) = line.split_once(':') {
            zone.fields.push((key.trim().to_string(), value.trim().to_string()));
        }
    }
    // `public (active)`, `public (default, active)`: the words after the name.
    let active = |z: &Zone| z.header.split_once(' ').is_some_and(|(_, marks)| marks.contains("active"));
    let any_active = zones.iter().any(active);
    let opens = |entry: &str| -> Protos {
        match entry.split_once('/') {
            Some((ports, proto)) => match port_in(ports, port, '-') {
                Some(true) => Protos::from_word(proto),
                _ => Protos::NONE,
            },
            None => Protos::from_word(entry),
        }
    };

    let mut blocks = Vec::new();
    for zone in zones.iter().filter(|z| !any_active || active(z)) {
        let name = zone.header.split_whitespace().next().unwrap_or("");
        let field = |k: &str| zone.fields.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str()).unwrap_or("");
        let target = match field("target") {
            "" => "default",
            t => t,
        };
        let mut open = Protos::NONE;
        for entry in field("ports").split_whitespace().chain(field("source-ports").split_whitespace()) {
            open = open.or(opens(entry));
        }
        for proto in field("protocols").split_whitespace() {
            open = open.or(Protos::from_word(proto));
        }
        for service in field("services").split_whitespace() {
            for entry in services(service) {
                open = open.or(opens(&entry));
            }
        }
        for rule in &zone.rich {
            let Some((accepts, cond)) = rich_rule(rule, services, &opens) else { continue };
            if cond.protos.is_empty() || !cond.firm() {
                continue;
            }
            if accepts {
                open = open.or(cond.protos);
            } else {
                let text = format!("zone {name}: {rule}");
                blocks.push(Block {
                    tool: "firewalld",
                    direction: Direction::In,
                    proto: cond.protos.proto(),
                    broadcast_only: false,
                    rule: text,
                });
            }
        }
        let refuses = matches!(target.trim_matches('%'), "default" | "REJECT" | "DROP");
        let closed = Protos::BOTH.minus(open);
        if refuses && !closed.is_empty() {
            let what = match closed.proto() {
                Proto::Udp => format!("{port}/udp"),
                Proto::Tcp => format!("{port}/tcp"),
                Proto::Both => format!("{port}/udp and {port}/tcp"),
            };
            blocks.push(Block {
                tool: "firewalld",
                direction: Direction::In,
                proto: closed.proto(),
                broadcast_only: false,
                rule: format!("zone {name}, target {target}: {what} not open"),
            });
        }
    }
    blocks
}

/// A rich rule: (accepts, conditions); `None` when it neither accepts nor
/// refuses, is for IPv6, or names a service whose ports are unknown.
fn rich_rule(
    rule: &str,
    services: &dyn Fn(&str) -> Vec<String>,
    opens: &dyn Fn(&str) -> Protos,
) -> Option<(bool, Cond)> {
    let words = shell_words(rule);
    let attr = |i: usize, key: &str| {
        words.get(i).and_then(|w| w.strip_prefix(key)).and_then(|w| w.strip_prefix('=')).map(str::to_string)
    };
    let mut cond = Cond::ANY;
    let mut verdict = None;
    for (i, w) in words.iter().enumerate() {
        match w.as_str() {
            "family=ipv6" => return None,
            "accept" => verdict = Some(true),
            "reject" | "drop" => verdict = Some(false),
            "source" | "destination" => cond.other = true,
            "port" | "source-port" => {
                let (Some(p), Some(proto)) = (attr(i + 1, "port"), attr(i + 2, "protocol")) else { continue };
                let protos = opens(&format!("{p}/{proto}"));
                cond.restrict(Protos::from_word(&proto));
                cond.port_test(Some(!protos.is_empty()));
            }
            "protocol" => {
                if let Some(value) = attr(i + 1, "value") {
                    cond.restrict(Protos::from_word(&value));
                }
            }
            "service" => {
                let entries = services(&attr(i + 1, "name")?);
                if entries.is_empty() {
                    return None;
                }
                let protos = entries.iter().fold(Protos::NONE, |acc, e| acc.or(opens(e)));
                cond.restrict(protos);
                cond.port_test(Some(!protos.is_empty()));
            }
            "icmp-block" | "icmp-type" | "forward-port" | "masquerade" => return None,
            _ => {}
        }
    }
    verdict.map(|accepts| (accepts, cond))
}

/// What a firewalld service opens, from its definition
/// (`/etc/firewalld/services/NAME.xml` first, then the shipped ones).
fn firewalld_service_ports(name: &str) -> Vec<String> {
    service_ports(name, 0)
}

fn service_ports(name: &str, depth: usize) -> Vec<String> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') || depth > 2 {
        return Vec::new();
    }
    for dir in ["/etc/firewalld/services", "/usr/lib/firewalld/services", "/usr/local/lib/firewalld/services"] {
        let Ok(xml) = std::fs::read_to_string(Path::new(dir).join(format!("{name}.xml"))) else { continue };
        let (mut ports, includes) = service_xml(&xml);
        for include in includes {
            ports.extend(service_ports(&include, depth + 1));
        }
        return ports;
    }
    Vec::new()
}

/// A service definition's ports (`2425/udp`, also source ports and bare
/// protocols) and the services it includes.
fn service_xml(xml: &str) -> (Vec<String>, Vec<String>) {
    let mut ports = Vec::new();
    for tag in xml_tags(xml, "port").into_iter().chain(xml_tags(xml, "source-port")) {
        if let (Some(p), Some(proto)) = (xml_attr(tag, "port"), xml_attr(tag, "protocol")) {
            ports.push(format!("{p}/{proto}"));
        }
    }
    for tag in xml_tags(xml, "protocol") {
        ports.extend(xml_attr(tag, "value").map(str::to_string));
    }
    let includes =
        xml_tags(xml, "include").into_iter().filter_map(|t| xml_attr(t, "service")).map(str::to_string).collect();
    (ports, includes)
}

/// The insides of every `<name …>` tag.
fn xml_tags<'a>(xml: &'a str, name: &str) -> Vec<&'a str> {
    let open = format!("<{name}");
    let mut tags = Vec::new();
    let mut rest = xml;
    while let Some(at) = rest.find(&open) {
        let after = &rest[at + open.len()..];
        let Some(end) = after.find('>') else { break };
        if after.starts_with(|c: char| c.is_whitespace() || c == '/' || c == '>') {
            tags.push(&after[..end]);
        }
        rest = &after[end..];
    }
    tags
}

/// `attr="value"` (or single quotes) in a tag's insides.
fn xml_attr<'a>(tag: &'a str, attr: &str) -> Option<&'a str> {
    let mut rest = tag;
    loop {
        let at = rest.find(attr)?;
        let before_ok = at == 0 || rest[..at].ends_with(char::is_whitespace);
        let after = rest[at + attr.len()..].trim_start();
        if let (true, Some(after)) = (before_ok, after.strip_prefix('=')) {
            let after = after.trim_start();
            let quote = after.chars().next()?;
            if quote == '"' || quote == '\'' {
                let value = &after[1..];
                return value.find(quote).map(|end| &value[..end]);
            }
        }
        rest = &rest[at + attr.len()..];
    }
}

#[cfg(test)]
mod tests;
