//! The machine's IPv4 interfaces as a LAN messenger sees them: which are
//! up, their subnets and broadcast addresses, what kind of link each is
//! (LAN, Wi-Fi, VPN/tunnel, container bridge), and which of them presence
//! reaches. Read by `pigeon doctor` and the node's first-run line.

use std::net::{Ipv4Addr, SocketAddr};

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Lan,
    Wifi,
    /// VPN or tunnel (tun/tap, WireGuard, PPP, Tailscale…): no broadcast
    /// reaches peers behind it.
    Tunnel,
    /// A bridge or virtual link of containers or VMs (docker0, virbr0…).
    Container,
}

/// One IPv4 address of an up interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Iface {
    pub name: String,
    pub addr: Ipv4Addr,
    pub prefix: u8,
    pub broadcast: Option<Ipv4Addr>,
    pub kind: Kind,
}

impl Iface {
    /// The subnet's first address.
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & mask(self.prefix))
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.network())
    }

    /// `eth0 (192.168.1.255)`.
    pub fn label(&self) -> String {
        match self.broadcast {
            Some(b) => format!("{} ({b})", self.name),
            None => format!("{} ({}/{})", self.name, self.addr, self.prefix),
        }
    }
}

fn mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - prefix.min(32) as u32).unwrap_or(0)
}

/// Classifies an interface by its name and what `/sys/class/net` says.
pub fn kind_of(name: &str) -> Kind {
    let sys = std::path::Path::new("/sys/class/net").join(name);
    // (A veth has no address on the host side of a container; one with an
    // address is a link like any other.)
    let container_prefixes = ["docker", "br-", "virbr", "cni", "flannel", "cali", "vnet", "lxc", "podman"];
    let tunnel_prefixes = ["tun", "tap", "wg", "ppp", "tailscale", "zt", "vpn", "utun", "ipsec", "gre", "nebula"];
    // A bridge made by hand for the LAN (br0 on a home server) is a LAN;
    // the container tools name theirs.
    if container_prefixes.iter().any(|p| name.starts_with(p)) {
        return Kind::Container;
    }
    if tunnel_prefixes.iter().any(|p| name.starts_with(p)) || sys.join("tun_flags").exists() {
        return Kind::Tunnel;
    }
    // ARPHRD_NONE (65534): a point-to-point tunnel without a link layer.
    if std::fs::read_to_string(sys.join("type")).is_ok_and(|t| t.trim() == "65534") {
        return Kind::Tunnel;
    }
    if sys.join("wireless").exists() || sys.join("phy80211").exists() || name.starts_with("wl") {
        return Kind::Wifi;
    }
    Kind::Lan
}

/// Every up, non-loopback IPv4 address.
pub fn list() -> Vec<Iface> {
    let Ok(all) = if_addrs::get_if_addrs() else { return Vec::new() };
    let mut v: Vec<Iface> = all
        .into_iter()
        .filter(|i| !i.is_loopback())
        .filter_map(|i| match i.addr {
            if_addrs::IfAddr::V4(a) => Some(Iface {
                kind: kind_of(&i.name),
                name: i.name,
                addr: a.ip,
                prefix: a.prefixlen,
                broadcast: a.broadcast,
            }),
            _ => None,
        })
        .collect();
    v.sort_by(|a, b| (&a.name, a.addr).cmp(&(&b.name, b.addr)));
    v
}

/// Pairs of interfaces on one subnet (the machine is then heard at two
/// addresses and its broadcasts go out twice).
pub fn same_subnet(ifaces: &[Iface]) -> Vec<(&Iface, &Iface)> {
    let mut pairs = Vec::new();
    for (i, a) in ifaces.iter().enumerate() {
        for b in &ifaces[i + 1..] {
            if a.name != b.name && a.prefix == b.prefix && a.network() == b.network() {
                pairs.push((a, b));
            }
        }
    }
    pairs
}

/// True if presence goes to this interface's broadcast address.
pub fn announced(i: &Iface, targets: &[SocketAddr]) -> bool {
    i.broadcast.is_some_and(|b| targets.iter().any(|t| t.ip() == b))
}

/// The one line a node says at its first start on a machine with more
/// than one network: where it announces itself and how to change that.
pub fn first_run_line(ifaces: &[Iface], targets: &[SocketAddr], config: &std::path::Path) -> Option<String> {
    if ifaces.len() < 2 {
        return None;
    }
    let on: Vec<String> = ifaces.iter().filter(|i| announced(i, targets)).map(Iface::label).collect();
    let off: Vec<String> = ifaces.iter().filter(|i| !announced(i, targets)).map(|i| i.name.clone()).collect();
    let mut line =
        format!("pigeon: announcing on {}", if on.is_empty() { "none of the networks".into() } else { on.join(", ") });
    if !off.is_empty() {
        line += &format!(" (not on {})", off.join(", "));
    }
    line += &format!(
        "; to change it, set targets in {} (or pass --broadcast ADDR); `pigeon doctor` tells more",
        config.display()
    );
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(name: &str, addr: [u8; 4], prefix: u8) -> Iface {
        let addr = Ipv4Addr::from(addr);
        let b = Ipv4Addr::from(u32::from(addr) | !mask(prefix));
        Iface { name: name.into(), addr, prefix, broadcast: Some(b), kind: Kind::Lan }
    }

    #[test]
    fn subnets_and_pairs() {
        let v = vec![
            iface("eth0", [192, 168, 1, 5], 24),
            iface("wlan0", [192, 168, 1, 9], 24),
            iface("wg0", [10, 8, 0, 2], 24),
        ];
        assert_eq!(v[0].network(), Ipv4Addr::new(192, 168, 1, 0));
        assert!(v[0].contains(Ipv4Addr::new(192, 168, 1, 200)));
        assert!(!v[0].contains(Ipv4Addr::new(192, 168, 2, 1)));
        let p = same_subnet(&v);
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].0.name.as_str(), p[0].1.name.as_str()), ("eth0", "wlan0"));
    }

    #[test]
    fn first_run_line_names_the_networks() {
        let v = vec![iface("eth0", [192, 168, 1, 5], 24), iface("wg0", [10, 8, 0, 2], 24)];
        assert!(first_run_line(&v[..1], &[], std::path::Path::new("c.toml")).is_none());
        let targets: Vec<SocketAddr> =
            vec!["255.255.255.255:2425".parse().unwrap(), "192.168.1.255:2425".parse().unwrap()];
        let l = first_run_line(&v, &targets, std::path::Path::new("/h/config.toml")).unwrap();
        assert!(
            l.starts_with(
                "pigeon: announcing on eth0 (192.168.1.255) (not on wg0); to change it, set targets in /h/config.toml"
            ),
            "{l}"
        );
    }

    #[test]
    fn kinds_by_name() {
        assert_eq!(kind_of("docker0"), Kind::Container);
        assert_eq!(kind_of("wg0"), Kind::Tunnel);
        assert_eq!(kind_of("tailscale0"), Kind::Tunnel);
        assert_eq!(kind_of("wlp2s0"), Kind::Wifi);
    }
}
