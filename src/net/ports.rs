//! Who holds a port: the kernel's socket tables (`/proc/net/{udp,tcp}{,6}`)
//! and the processes whose file descriptors are those sockets. Read only:
//! the node's port-in-use error and `pigeon doctor` both ask it.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Proto {
    Udp,
    Tcp,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Udp => "UDP",
            Proto::Tcp => "TCP",
        }
    }
}

/// One bound socket of the tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bound {
    pub proto: Proto,
    pub local: SocketAddr,
    pub inode: u64,
}

/// A process holding a socket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Owner {
    pub pid: u32,
    /// Its command name (`/proc/PID/comm`).
    pub name: String,
    /// Its arguments.
    pub args: Vec<String>,
}

impl Owner {
    /// `--home DIR` of a Pigeon, from its arguments or its environment
    /// (readable for our own processes and for root).
    pub fn pigeon_home(&self) -> Option<String> {
        let mut it = self.args.iter();
        while let Some(a) = it.next() {
            if a == "--home" {
                return it.next().cloned();
            }
            if let Some(h) = a.strip_prefix("--home=") {
                return Some(h.to_string());
            }
        }
        let env = std::fs::read(format!("/proc/{}/environ", self.pid)).ok()?;
        env.split(|&b| b == 0)
            .find_map(|kv| kv.strip_prefix(b"PIGEON_HOME="))
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

/// Parses one of `/proc/net/udp`, `udp6`, `tcp`, `tcp6` for sockets bound
/// to `port`; for TCP only listening ones (state 0A).
pub fn parse_table(text: &str, proto: Proto, port: u16) -> Vec<Bound> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 {
            continue;
        }
        let Some((addr, p)) = f[1].split_once(':') else { continue };
        if u16::from_str_radix(p, 16).ok() != Some(port) {
            continue;
        }
        if proto == Proto::Tcp && f[3] != "0A" {
            continue;
        }
        let Some(ip) = parse_hex_ip(addr) else { continue };
        let Ok(inode) = f[9].parse() else { continue };
        out.push(Bound { proto, local: SocketAddr::new(ip, port), inode });
    }
    out
}

/// The kernel prints each 32-bit word of the address as a host-order number.
fn parse_hex_ip(s: &str) -> Option<IpAddr> {
    let word = |i: usize| u32::from_str_radix(s.get(i * 8..i * 8 + 8)?, 16).ok().map(u32::to_ne_bytes);
    match s.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(0)?))),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            let v6 = Ipv6Addr::from(b);
            Some(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4))
        }
        _ => None,
    }
}

/// Every socket bound to `port` on this machine (its network namespace).
pub fn bound(port: u16) -> Vec<Bound> {
    let mut v = Vec::new();
    for (file, proto) in [
        ("/proc/net/udp", Proto::Udp),
        ("/proc/net/udp6", Proto::Udp),
        ("/proc/net/tcp", Proto::Tcp),
        ("/proc/net/tcp6", Proto::Tcp),
    ] {
        if let Ok(text) = std::fs::read_to_string(file) {
            v.extend(parse_table(&text, proto, port));
        }
    }
    v
}

/// The processes holding these socket inodes (those we may look into: all
/// as root, our own otherwise).
pub fn owners(inodes: &[u64]) -> HashMap<u64, Owner> {
    let mut found = HashMap::new();
    if inodes.is_empty() {
        return found;
    }
    let wanted: HashMap<String, u64> = inodes.iter().map(|i| (format!("socket:[{i}]"), *i)).collect();
    let Ok(procs) = std::fs::read_dir("/proc") else { return found };
    for p in procs.flatten() {
        let name = p.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else { continue };
            if let Some(&inode) = wanted.get(target.to_string_lossy().as_ref()) {
                let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
                let args = std::fs::read(p.path().join("cmdline"))
                    .unwrap_or_default()
                    .split(|&b| b == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect();
                found.entry(inode).or_insert(Owner { pid, name: comm.trim().to_string(), args });
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  123: 00000000:0979 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 41812 2 0000000000000000 0
  124: 0100007F:0979 00000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 41813 2 0000000000000000 0
  125: 00000000:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 41814 2 0000000000000000 0
";

    #[test]
    fn reads_udp_sockets_on_the_port() {
        let v = parse_table(UDP, Proto::Udp, 2425);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].local, "0.0.0.0:2425".parse().unwrap());
        assert_eq!(v[0].inode, 41812);
        if cfg!(target_endian = "little") {
            assert_eq!(v[1].local, "127.0.0.1:2425".parse().unwrap());
        }
        assert!(parse_table(UDP, Proto::Udp, 53).len() == 1);
    }

    #[test]
    fn tcp_counts_listening_sockets_only() {
        let t = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0979 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5001 1 0 100 0 0 10 0
   1: 0B0012C6:0979 0C0012C6:D431 01 00000000:00000000 00:00000000 00000000     0        0 5002 1 0 20 4 30 10 -1
";
        let v = parse_table(t, Proto::Tcp, 2425);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].inode, 5001);
    }

    #[test]
    fn ipv6_and_mapped_addresses() {
        let t = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0979 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 7001 2 0 0
   1: 0000000000000000FFFF00000100007F:0979 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 7002 2 0 0
";
        let v = parse_table(t, Proto::Udp, 2425);
        assert_eq!(v[0].local, "[::]:2425".parse().unwrap());
        if cfg!(target_endian = "little") {
            assert_eq!(v[1].local, "127.0.0.1:2425".parse().unwrap());
        }
    }

    #[test]
    fn finds_the_process_holding_a_socket() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = s.local_addr().unwrap().port();
        let b = bound(port);
        let mine = b.iter().find(|b| b.proto == Proto::Udp).expect("our socket is in the table");
        let o = owners(&[mine.inode]);
        assert_eq!(o[&mine.inode].pid, std::process::id());
    }

    #[test]
    fn home_from_arguments() {
        let o = Owner { pid: 0, name: "pigeon".into(), args: vec!["pigeon".into(), "--home".into(), "/tmp/h".into()] };
        assert_eq!(o.pigeon_home().as_deref(), Some("/tmp/h"));
        let o = Owner { pid: 0, name: "pigeon".into(), args: vec!["pigeon".into(), "--home=/x".into()] };
        assert_eq!(o.pigeon_home().as_deref(), Some("/x"));
    }
}
