//! `pigeon doctor`: why nobody answers. Checks what the commonest
//! complaints of every IPMsg client are about — the port, the firewall,
//! the interfaces, whether broadcasts and unicasts are answered, the home
//! — and says each finding in plain words with what to do. Reads
//! everything and changes nothing; the only packets it sends are one
//! GETINFO per broadcast target and per known peer ([`probe`]).

pub mod firewall;
pub mod probe;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::config::Home;
use crate::net::interfaces::{self, Iface, Kind};
use crate::net::ports::{self, Proto};

/// How a finding weighs. Only `Warn` and `Fail` make the doctor's exit code non-zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Info,
    Warn,
    Fail,
}

/// The part of the setup a finding is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Area {
    Port,
    Firewall,
    Interfaces,
    Network,
    Home,
}

impl Area {
    pub fn title(self) -> &'static str {
        match self {
            Area::Port => "port",
            Area::Firewall => "firewall",
            Area::Interfaces => "interfaces",
            Area::Network => "network",
            Area::Home => "home",
        }
    }
}

/// One thing the doctor found.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub area: Area,
    pub status: Status,
    /// Stable for scripts: `port_taken`, `firewall_blocks`, `isolation`…
    pub code: &'static str,
    pub summary: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advice: Option<String>,
}

fn finding(area: Area, status: Status, code: &'static str, summary: impl Into<String>) -> Finding {
    Finding { area, status, code, summary: summary.into(), advice: None }
}

impl Finding {
    fn advise(mut self, a: impl Into<String>) -> Finding {
        self.advice = Some(a.into());
        self
    }
}

/// A known peer the network check asks.
#[derive(Clone, Debug)]
pub struct KnownPeer {
    pub name: String,
    pub addr: SocketAddr,
}

/// What the doctor examines: this identity's configuration.
#[derive(Clone, Debug)]
pub struct Setup {
    pub home: Home,
    pub port: u16,
    pub bind: IpAddr,
    /// Presence targets (broadcasts and configured hosts).
    pub targets: Vec<SocketAddr>,
    /// Hosts of configured ranges (probed by unicast).
    pub probe: Vec<SocketAddr>,
    pub user: String,
    pub host: String,
    pub download_dir: PathBuf,
    /// The process id of this home's daemon, if one answers.
    pub daemon: Option<u32>,
    pub peers: Vec<KnownPeer>,
    /// How long the network check waits for answers.
    pub window: Duration,
}

/// Every finding, in the order of the areas.
pub fn examine(s: &Setup) -> Vec<Finding> {
    let ifaces = interfaces::list();
    let mut v = Vec::new();
    v.extend(check_port(s));
    v.extend(check_firewall(s.port));
    v.extend(check_interfaces(s, &ifaces));
    v.extend(check_network(s, &ifaces));
    v.extend(check_home(s));
    v
}

fn check_port(s: &Setup) -> Vec<Finding> {
    // Sockets that stop a node bound to `s.bind`: all of the port for a
    // node on every address, else those on its address or on every address.
    let bound: Vec<ports::Bound> = ports::bound(s.port)
        .into_iter()
        .filter(|b| s.bind.is_unspecified() || b.local.ip().is_unspecified() || b.local.ip() == s.bind)
        .collect();
    let owners = ports::owners(&bound.iter().map(|b| b.inode).collect::<Vec<_>>());
    let mut v = Vec::new();
    for proto in [Proto::Udp, Proto::Tcp] {
        let what = format!("{} {}", proto.name(), s.port);
        let mine: Vec<&ports::Bound> = bound.iter().filter(|b| b.proto == proto).collect();
        if mine.is_empty() {
            let f = finding(
                Area::Port,
                Status::Info,
                "port_free",
                format!("{what} is free: no Pigeon or other IPMsg client runs here"),
            )
            .advise("peers reach you only while `pigeon daemon` (or `pigeon chat`) runs");
            v.push(f);
            continue;
        }
        for b in mine {
            let at = if b.local.ip().is_unspecified() { "every address".to_string() } else { b.local.ip().to_string() };
            match owners.get(&b.inode) {
                Some(o) if Some(o.pid) == s.daemon => {
                    if b.local.ip().is_loopback() {
                        v.push(
                            finding(
                                Area::Port,
                                Status::Warn,
                                "port_loopback_only",
                                format!("{what}: this home's daemon (pid {}) listens on {at} only", o.pid),
                            )
                            .advise(
                                "peers on the LAN cannot reach it; start it without --bind, or with the LAN address",
                            ),
                        );
                    } else {
                        v.push(finding(
                            Area::Port,
                            Status::Ok,
                            "port_ours",
                            format!("{what}: held by this home's daemon (pid {}) on {at}", o.pid),
                        ));
                    }
                }
                Some(o) => {
                    let who = if o.name == "pigeon" {
                        match o.pigeon_home() {
                            Some(h) => format!("another Pigeon (pid {}, home {h})", o.pid),
                            None => format!("another Pigeon (pid {}, another home)", o.pid),
                        }
                    } else {
                        format!("{} (pid {})", o.name, o.pid)
                    };
                    let advice = if o.name == "pigeon" {
                        "one machine, one IPMsg identity on the port: stop that Pigeon, or use it (`pigeon --home DIR …`)".to_string()
                    } else {
                        format!("only one IP Messenger client can run on a machine: quit {} to use Pigeon", o.name)
                    };
                    v.push(
                        finding(Area::Port, Status::Fail, "port_taken", format!("{what} is held by {who} on {at}"))
                            .advise(advice),
                    );
                }
                None => v.push(
                    finding(
                        Area::Port,
                        Status::Fail,
                        "port_taken",
                        format!("{what} is held on {at} by a process of another user"),
                    )
                    .advise("run `sudo pigeon doctor` to see which; only one IPMsg client can run on a machine"),
                ),
            }
        }
    }
    v
}

fn check_firewall(port: u16) -> Vec<Finding> {
    use firewall::{Direction, Proto as FwProto};
    let r = firewall::inspect(port);
    let mut v = Vec::new();
    // One finding per effect: iptables-nft's rules show in nft and in
    // iptables-save, ufw's and firewalld's in the tool below them.
    let mut seen: Vec<(&Direction, &FwProto, bool)> = Vec::new();
    for b in &r.blocks {
        let key = (&b.direction, &b.proto, b.broadcast_only);
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        let effect = if b.broadcast_only {
            "presence broadcasts are dropped: peers see you only when they add your address"
        } else {
            match (&b.direction, &b.proto) {
                (Direction::In, FwProto::Udp) => "messages and presence cannot reach you",
                (Direction::In, FwProto::Tcp) => "peers cannot fetch the files you send (messages still work)",
                (Direction::In, FwProto::Both) => "nothing from peers reaches you (messages, presence, file requests)",
                (Direction::Out, FwProto::Udp) => "your messages and presence cannot leave",
                (Direction::Out, FwProto::Tcp) => "you cannot fetch the files peers send you",
                (Direction::Out, FwProto::Both) => "nothing you send leaves",
            }
        };
        v.push(
            finding(Area::Firewall, Status::Fail, "firewall_blocks", format!("{}: {} — {effect}", b.tool, b.rule))
                .advise(format!("accept UDP and TCP {port} in and out (the rule was read, not changed)")),
        );
    }
    for (tool, why) in &r.unreadable {
        v.push(
            finding(
                Area::Firewall,
                Status::Info,
                "firewall_unreadable",
                format!("cannot read the {tool} rules: {why}"),
            )
            .advise("run `sudo pigeon doctor` to check them"),
        );
    }
    if r.blocks.is_empty() && !r.read.is_empty() {
        v.push(finding(
            Area::Firewall,
            Status::Ok,
            "firewall_open",
            format!("{}: nothing drops UDP or TCP {port}", r.read.join(", ")),
        ));
    }
    if r.read.is_empty() && r.unreadable.is_empty() {
        v.push(finding(
            Area::Firewall,
            Status::Info,
            "firewall_none",
            "no firewall tool found (nftables, iptables, ufw, firewalld)",
        ));
    }
    v
}

fn check_interfaces(s: &Setup, ifaces: &[Iface]) -> Vec<Finding> {
    let mut v = Vec::new();
    if ifaces.is_empty() {
        v.push(
            finding(Area::Interfaces, Status::Fail, "no_interface", "no network interface with an IPv4 address is up")
                .advise("connect to the LAN (cable or Wi-Fi)"),
        );
        return v;
    }
    let bound_to = (!s.bind.is_unspecified()).then_some(s.bind);
    for i in ifaces {
        let kind = match i.kind {
            Kind::Lan => "",
            Kind::Wifi => ", Wi-Fi",
            Kind::Tunnel => ", VPN/tunnel",
            Kind::Container => ", container bridge",
        };
        let desc = format!("{} {}/{}{kind}", i.name, i.addr, i.prefix);
        if bound_to.is_some_and(|b| b != IpAddr::V4(i.addr)) {
            v.push(finding(
                Area::Interfaces,
                Status::Info,
                "iface_unbound",
                format!("{desc}: not used (the node is bound to {})", s.bind),
            ));
            continue;
        }
        let announced = interfaces::announced(i, &s.targets);
        let f = match (i.kind, announced) {
            (Kind::Tunnel, _) => finding(
                Area::Interfaces,
                Status::Info,
                "iface_tunnel",
                format!("{desc}: broadcasts do not cross a VPN"),
            )
            .advise(format!(
                "peers behind it are reached only by address: add them to targets in {}",
                s.home.config_file().display()
            )),
            (Kind::Container, true) => finding(
                Area::Interfaces,
                Status::Info,
                "iface_container",
                format!("{desc}: presence also goes to containers on it (harmless)"),
            ),
            (Kind::Container, false) => {
                finding(Area::Interfaces, Status::Info, "iface_container", format!("{desc}: not announced"))
            }
            (_, true) => finding(
                Area::Interfaces,
                Status::Ok,
                "iface_announced",
                format!("{desc}: presence goes to {}", i.broadcast.map(|b| b.to_string()).unwrap_or_default()),
            ),
            (_, false) => {
                finding(Area::Interfaces, Status::Warn, "iface_silent", format!("{desc}: presence is not sent on it"))
                    .advise(match i.broadcast {
                        Some(b) => format!(
                            "peers on {}/{} do not see you: add \"{b}\" to targets in {}",
                            i.network(),
                            i.prefix,
                            s.home.config_file().display()
                        ),
                        None => "it has no broadcast address; add peers there to targets by address".into(),
                    })
            }
        };
        v.push(f);
    }
    for (a, b) in interfaces::same_subnet(ifaces) {
        v.push(
            finding(
                Area::Interfaces,
                Status::Warn,
                "same_subnet",
                format!("{} ({}) and {} ({}) are both on {}/{}: peers may list this machine twice and get its broadcasts twice", a.name, a.addr, b.name, b.addr, a.network(), a.prefix),
            )
            .advise(format!("use one of them (e.g. unplug the cable or turn Wi-Fi off), or bind one: `pigeon --bind {} daemon`", a.addr)),
        );
    }
    v
}

fn check_network(s: &Setup, ifaces: &[Iface]) -> Vec<Finding> {
    let mut v = Vec::new();
    let own: BTreeSet<IpAddr> =
        ifaces.iter().map(|i| IpAddr::V4(i.addr)).chain([IpAddr::V4(Ipv4Addr::LOCALHOST)]).collect();
    let peers: Vec<&KnownPeer> = s.peers.iter().filter(|p| !own.contains(&p.addr.ip())).collect();
    let mut unicast: Vec<SocketAddr> = peers.iter().map(|p| p.addr).collect();
    unicast.sort();
    unicast.dedup();
    let out = match probe::run(s.bind, &s.user, &s.host, &s.targets, &unicast, s.window) {
        Ok(o) => o,
        Err(e) => {
            v.push(finding(
                Area::Network,
                Status::Fail,
                "probe_failed",
                format!("cannot open a UDP socket to ask the LAN: {e}"),
            ));
            return v;
        }
    };
    for (t, e) in &out.send_errors {
        v.push(
            finding(Area::Network, Status::Fail, "broadcast_refused", format!("cannot send to {t}: {e}"))
                .advise("a firewall rule on output, or no route to that network"),
        );
    }
    for t in &s.targets {
        if out.send_errors.contains_key(t) || !is_broadcast(t.ip(), ifaces) {
            continue;
        }
        if out.looped.contains(t) {
            v.push(finding(
                Area::Network,
                Status::Ok,
                "broadcast_works",
                format!("a broadcast to {} leaves and comes back", t.ip()),
            ));
        } else {
            v.push(
                finding(
                    Area::Network,
                    Status::Warn,
                    "broadcast_lost",
                    format!("a broadcast to {} did not come back to this machine", t.ip()),
                )
                .advise("something on this machine drops outgoing broadcast (a firewall output rule)"),
            );
        }
    }
    let others = |m: &std::collections::BTreeMap<IpAddr, String>| -> Vec<(IpAddr, String)> {
        m.iter().filter(|(ip, _)| !own.contains(ip)).map(|(ip, w)| (*ip, w.clone())).collect()
    };
    let heard_b = others(&out.by_broadcast);
    let heard_u = others(&out.by_unicast);
    if !heard_b.is_empty() {
        let names: Vec<String> = heard_b.iter().map(|(ip, w)| format!("{w} ({ip})")).collect();
        v.push(finding(
            Area::Network,
            Status::Ok,
            "broadcast_answered",
            format!("{} answered a broadcast: {}", plural(heard_b.len(), "peer"), names.join(", ")),
        ));
    }
    let covered = |ip: IpAddr| s.targets.iter().chain(&s.probe).any(|t| t.ip() == ip);
    for p in &peers {
        let ip = p.addr.ip();
        let by_b = heard_b.iter().any(|(i, _)| *i == ip);
        let by_u = heard_u.iter().any(|(i, _)| *i == ip);
        let local = match ip {
            IpAddr::V4(v4) => ifaces.iter().any(|i| i.contains(v4)),
            IpAddr::V6(_) => false,
        };
        if !local {
            let f = if covered(ip) {
                finding(
                    Area::Network,
                    Status::Ok,
                    "other_subnet",
                    format!("{} ({ip}) is on another subnet and in targets", p.name),
                )
            } else if by_u {
                finding(
                    Area::Network,
                    Status::Warn,
                    "other_subnet",
                    format!("{} ({ip}) is on another subnet: no broadcast of ours reaches it", p.name),
                )
                .advise(format!("add it to targets in {}: targets = [\"{ip}\"]", s.home.config_file().display()))
            } else {
                finding(
                    Area::Network,
                    Status::Info,
                    "peer_silent",
                    format!("{} ({ip}, another subnet) did not answer (offline?)", p.name),
                )
            };
            v.push(f);
            continue;
        }
        if by_u && !by_b && !covered(ip) {
            v.push(
                finding(Area::Network, Status::Warn, "isolation", format!("{} ({ip}) answers when addressed but not to broadcasts", p.name))
                    .advise(format!(
                        "Wi-Fi client isolation or a switch that drops broadcast: ask for it to be turned off, or add the peer to targets in {}: targets = [\"{ip}\"]",
                        s.home.config_file().display()
                    )),
            );
        } else if !by_u && !by_b {
            v.push(finding(
                Area::Network,
                Status::Info,
                "peer_silent",
                format!("{} ({ip}) did not answer (offline?)", p.name),
            ));
        } else if by_u && !by_b {
            v.push(finding(
                Area::Network,
                Status::Ok,
                "peer_by_target",
                format!("{} ({ip}) answers; it is in targets", p.name),
            ));
        }
    }
    let known: BTreeSet<IpAddr> = peers.iter().map(|p| p.addr.ip()).collect();
    if heard_b.is_empty() && known.is_empty() {
        v.push(
            finding(Area::Network, Status::Info, "nobody", "no other IPMsg client answered, and none is known")
                .advise("nobody else runs one on this LAN, or their firewall drops UDP 2425"),
        );
    }
    v
}

/// True if `ip` is the limited broadcast or an interface's broadcast.
fn is_broadcast(ip: IpAddr, ifaces: &[Iface]) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_broadcast() || ifaces.iter().any(|i| i.broadcast == Some(v4)),
        IpAddr::V6(_) => false,
    }
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn check_home(s: &Setup) -> Vec<Finding> {
    let mut v = Vec::new();
    let uid = current_uid();
    let mut dirs: Vec<&Path> = vec![&s.home.config_dir, &s.home.data_dir, &s.home.runtime_dir];
    dirs.dedup();
    if !s.home.database().exists() {
        v.push(finding(
            Area::Home,
            Status::Info,
            "home_new",
            format!("no history in {} yet (made at the first start)", s.home.data_dir.display()),
        ));
    }
    let mut loose = Vec::new();
    let mut foreign = Vec::new();
    for d in &dirs {
        let Ok(m) = std::fs::metadata(d) else { continue };
        // A folder others may list is fine when its files are private; one
        // they may write to is not (they could replace the database).
        if m.permissions().mode() & 0o022 != 0 {
            loose.push(d.display().to_string());
        }
        if m.uid() != uid {
            foreign.push(d.display().to_string());
        }
        let Ok(entries) = std::fs::read_dir(d) else { continue };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            // config.toml holds no secret (an editor makes it 0644).
            if m.is_file() && m.permissions().mode() & 0o077 != 0 && e.file_name() != "config.toml" {
                loose.push(e.path().display().to_string());
            }
            if m.is_file() && m.uid() != uid {
                foreign.push(e.path().display().to_string());
            }
        }
    }
    loose.sort();
    loose.dedup();
    foreign.sort();
    foreign.dedup();
    if !loose.is_empty() {
        v.push(
            finding(
                Area::Home,
                Status::Warn,
                "home_permissions",
                format!("others may read or change your history and keys: {}", loose.join(", ")),
            )
            .advise(format!("chmod -R go= {}", s.home.data_dir.display())),
        );
    }
    if !foreign.is_empty() {
        v.push(
            finding(Area::Home, Status::Warn, "home_owner", format!("owned by another user: {}", foreign.join(", ")))
                .advise("a Pigeon run with sudo made them; give them back with chown"),
        );
    }
    if loose.is_empty() && foreign.is_empty() && s.home.data_dir.exists() {
        v.push(finding(
            Area::Home,
            Status::Ok,
            "home_private",
            format!("{} is private to you", s.home.data_dir.display()),
        ));
    }
    let db = s.home.database();
    if db.exists() {
        match quick_check(&db) {
            Ok(r) if r == "ok" => v.push(finding(
                Area::Home,
                Status::Ok,
                "database_ok",
                format!("{}: intact (quick_check)", db.display()),
            )),
            Ok(r) => v.push(
                finding(Area::Home, Status::Fail, "database_damaged", format!("{} is damaged: {r}", db.display()))
                    .advise("stop Pigeon, keep a copy of the file, and recover it with `sqlite3 pigeon.db .recover`"),
            ),
            Err(e) => v.push(finding(
                Area::Home,
                Status::Fail,
                "database_unreadable",
                format!("cannot read {}: {e}", db.display()),
            )),
        }
    }
    let mut d = s.download_dir.as_path();
    while !d.exists() {
        match d.parent() {
            Some(p) if !p.as_os_str().is_empty() => d = p,
            _ => break,
        }
    }
    match crate::transfer::free_space(d).ok() {
        Some(free) if free < 500 << 20 => v.push(
            finding(
                Area::Home,
                Status::Warn,
                "download_space",
                format!("only {} free for downloads in {}", crate::term::human_size(free), s.download_dir.display()),
            )
            .advise("fetches will fail part-way: free some space or set download_dir in config.toml"),
        ),
        Some(free) => v.push(finding(
            Area::Home,
            Status::Ok,
            "download_space",
            format!("{} free for downloads in {}", crate::term::human_size(free), s.download_dir.display()),
        )),
        None => v.push(finding(
            Area::Home,
            Status::Info,
            "download_space",
            format!("cannot tell the free space of {}", s.download_dir.display()),
        )),
    }
    if d.exists() && !writable(d) {
        v.push(
            finding(Area::Home, Status::Warn, "download_readonly", format!("{} is not writable", d.display()))
                .advise("set download_dir in config.toml to a folder of yours"),
        );
    }
    v
}

fn quick_check(db: &Path) -> Result<String, rusqlite::Error> {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    c.busy_timeout(Duration::from_secs(5))?;
    let mut st = c.prepare("PRAGMA quick_check")?;
    let rows: Vec<String> = st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    Ok(rows.join("; "))
}

fn current_uid() -> u32 {
    std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(u32::MAX)
}

fn writable(p: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) else { return false };
    // SAFETY: c is a valid NUL-terminated path.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}
