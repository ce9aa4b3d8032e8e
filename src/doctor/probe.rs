//! The network half of `pigeon doctor`: asks who answers. A GETINFO (the
//! IPMsg "which program are you?", answered by SENDINFO and changing
//! nothing at the peer) goes to every broadcast target from one socket and
//! to every known peer's address from another, so that a peer answering
//! only the second answers when addressed but never hears a broadcast
//! (Wi-Fi client isolation, a switch that drops broadcast). A datagram to
//! our own socket through each broadcast address shows whether broadcast
//! leaves this machine at all. Everything it sends is bounded: one datagram
//! per target and per peer.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use pigeon_protocol::{Mode, Packet};

/// What the probe saw.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Broadcast targets we could not send to, with the error.
    pub send_errors: BTreeMap<SocketAddr, String>,
    /// Broadcast targets whose datagram came back to us.
    pub looped: BTreeSet<SocketAddr>,
    /// Who answered the broadcast GETINFO (address → `user@host`).
    pub by_broadcast: BTreeMap<IpAddr, String>,
    /// Who answered the GETINFO sent to its address.
    pub by_unicast: BTreeMap<IpAddr, String>,
}

/// Probes `broadcasts` (IPMsg port included) and `peers`, waiting `window`
/// for answers. `bind` is the address the node binds (unspecified: any).
pub fn run(
    bind: IpAddr,
    user: &str,
    host: &str,
    broadcasts: &[SocketAddr],
    peers: &[SocketAddr],
    window: Duration,
) -> std::io::Result<Outcome> {
    let b = UdpSocket::bind(SocketAddr::new(bind, 0))?;
    b.set_broadcast(true)?;
    let u = UdpSocket::bind(SocketAddr::new(bind, 0))?;
    b.set_nonblocking(true)?;
    u.set_nonblocking(true)?;
    let own_port = b.local_addr()?.port();
    let nonce = format!("pigeon-doctor-loop:{:016x}", fastrand::u64(..));
    let no = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_secs());
    let getinfo = format!("1:{no}:{user}:{host}:{}:", Mode::GETINFO.0).into_bytes();
    let mut out = Outcome::default();
    for t in broadcasts {
        if let Err(e) = b.send_to(&getinfo, t) {
            out.send_errors.insert(*t, e.to_string());
            continue;
        }
        let _ = b.send_to(format!("{nonce}:{t}").as_bytes(), SocketAddr::new(t.ip(), own_port));
    }
    for p in peers {
        let _ = u.send_to(&getinfo, p);
    }
    let deadline = Instant::now() + window;
    let mut buf = vec![0u8; 65536];
    while Instant::now() < deadline {
        let mut idle = true;
        for (sock, unicast) in [(&b, false), (&u, true)] {
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                idle = false;
                let d = &buf[..n];
                if let Some(rest) = d.strip_prefix(nonce.as_bytes()).and_then(|r| r.strip_prefix(b":")) {
                    if let Ok(t) = String::from_utf8_lossy(rest).parse() {
                        out.looped.insert(t);
                    }
                    continue;
                }
                let Ok(p) = Packet::decode(d) else { continue };
                if p.mode() != Mode::SENDINFO {
                    continue;
                }
                let who = format!("{}@{}", String::from_utf8_lossy(p.user), String::from_utf8_lossy(p.host));
                let set = if unicast { &mut out.by_unicast } else { &mut out.by_broadcast };
                set.entry(from.ip()).or_insert(who);
            }
        }
        if idle {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Ok(out)
}
