//! `pigeon doctor` on the namespace LAN: each complaint made for real (a
//! firewall dropping 2425, the port held by another Pigeon, a peer behind
//! "client isolation" that answers unicast only, two interfaces on one
//! subnet) and named by the doctor; all clear on a healthy LAN.

use std::net::Ipv4Addr;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{enabled, Host, Lan};
use crate::messaging::{wait_for, Node};

/// Runs `pigeon doctor --json` for `home` inside `host`: exit code and findings.
fn doctor(host: &Host, home: &std::path::Path) -> (Option<i32>, Vec<Value>, String) {
    let o = host.run(
        &[env!("CARGO_BIN_EXE_pigeon"), "--home", home.to_str().unwrap(), "doctor", "--json"],
        Duration::from_secs(30),
    );
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let v: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("doctor --json printed no JSON ({e}): {out}{}", String::from_utf8_lossy(&o.stderr)));
    assert_eq!(v["ok"], o.status.code() == Some(0), "{out}");
    (o.status.code(), v["findings"].as_array().cloned().unwrap_or_default(), out)
}

fn with_code<'a>(findings: &'a [Value], code: &str) -> Vec<&'a Value> {
    findings.iter().filter(|f| f["code"] == code).collect()
}

fn nft(host: &Host, rules: &str) {
    let path = std::env::temp_dir().join(format!("pigeon-doctor-{}-{}.nft", std::process::id(), fastrand::u32(..)));
    std::fs::write(&path, rules).unwrap();
    let o = host.run(&["nft", "-f", path.to_str().unwrap()], Duration::from_secs(5));
    let _ = std::fs::remove_file(&path);
    assert!(o.status.success(), "nft: {}", String::from_utf8_lossy(&o.stderr));
}

fn peers_of(n: &Node) -> usize {
    n.peer_count()
}

/// Two nodes that see each other: nothing to report, exit 0.
#[test]
fn doctor_is_all_clear_on_a_healthy_lan() {
    if !enabled("doctor_is_all_clear_on_a_healthy_lan") {
        return;
    }
    let lan = Lan::new(2);
    let a = Node::start(lan.host(1), "alice");
    let b = Node::start(lan.host(2), "bob");
    wait_for(Duration::from_secs(15), || peers_of(&a) == 1 && peers_of(&b) == 1, "the nodes to see each other");
    // A home as Pigeon makes it, whatever this machine's umask gave the test folder.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&a.home, std::fs::Permissions::from_mode(0o700)).unwrap();
    let (code, f, out) = doctor(lan.host(1), &a.home);
    assert_eq!(code, Some(0), "{out}");
    let pid = a.pid().unwrap().to_string();
    let ours = with_code(&f, "port_ours");
    assert_eq!(ours.len(), 2, "{out}");
    assert!(ours.iter().all(|x| x["summary"].as_str().unwrap().contains(&pid)), "{out}");
    assert!(with_code(&f, "broadcast_answered")[0]["summary"].as_str().unwrap().contains("bob@"), "{out}");
    assert!(!with_code(&f, "broadcast_works").is_empty(), "{out}");
    assert_eq!(with_code(&f, "firewall_open").len(), 1, "{out}");
    assert!(with_code(&f, "database_ok").len() == 1 && with_code(&f, "home_private").len() == 1, "{out}");
    assert!(
        with_code(&f, "iface_announced")[0]["summary"].as_str().unwrap().starts_with("veth0 198.18.0.11/24"),
        "{out}"
    );
    // The human form says so in words.
    let o = a.pigeon(&["doctor"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && text.trim_end().ends_with("all is well"), "{text}");
}

/// nftables rules dropping UDP 2425 and TCP 2425 coming in: both named,
/// with what each breaks; exit 1.
#[test]
fn doctor_names_firewall_rules_that_drop_2425() {
    if !enabled("doctor_names_firewall_rules_that_drop_2425") {
        return;
    }
    let lan = Lan::new(1);
    let a = Node::new(lan.host(1), "alice");
    nft(
        lan.host(1),
        "table inet filter {\n chain input { type filter hook input priority 0; policy accept;\n  udp dport 2425 drop\n  tcp dport 2425 reject\n  tcp dport 22 drop\n }\n}\n",
    );
    let (code, f, out) = doctor(lan.host(1), &a.home);
    assert_eq!(code, Some(1), "{out}");
    let blocks = with_code(&f, "firewall_blocks");
    assert_eq!(blocks.len(), 2, "{out}");
    let text: Vec<&str> = blocks.iter().map(|b| b["summary"].as_str().unwrap()).collect();
    assert!(
        text.iter().any(|t| t.contains("udp dport 2425") && t.contains("messages and presence cannot reach you")),
        "{out}"
    );
    assert!(
        text.iter().any(|t| t.contains("tcp dport 2425") && t.contains("cannot fetch the files you send")),
        "{out}"
    );
    assert!(blocks.iter().all(|b| b["status"] == "fail"), "{out}");
}

/// The port held by a Pigeon of another home: named with its PID and home.
#[test]
fn doctor_names_who_holds_the_port() {
    if !enabled("doctor_names_who_holds_the_port") {
        return;
    }
    let lan = Lan::new(1);
    let other = Node::start(lan.host(1), "other");
    let me = Node::new(lan.host(1), "me");
    let (code, f, out) = doctor(lan.host(1), &me.home);
    assert_eq!(code, Some(1), "{out}");
    let taken = with_code(&f, "port_taken");
    assert_eq!(taken.len(), 2, "UDP and TCP: {out}");
    let want = format!("another Pigeon (pid {}, home {})", other.pid().unwrap(), other.home.display());
    assert!(taken.iter().all(|t| t["summary"].as_str().unwrap().contains(&want)), "{want}: {out}");
}

/// A peer that drops broadcasts (what Wi-Fi client isolation or a switch
/// filtering broadcast does) but answers when addressed: named, with the
/// `targets` line that reaches it. A second interface on the subnet is
/// named too, and a node started there without a configuration says in one
/// line where it announces itself.
#[test]
fn doctor_finds_isolation_and_two_interfaces_on_one_subnet() {
    if !enabled("doctor_finds_isolation_and_two_interfaces_on_one_subnet") {
        return;
    }
    let lan = Lan::new(3);
    let a = Node::start(lan.host(1), "alice");
    let b = Node::start(lan.host(2), "bob");
    nft(lan.host(3), "table inet iso {\n chain input { type filter hook input priority 0; policy accept;\n  meta pkttype broadcast drop\n }\n}\n");
    let c = Node::start(lan.host(3), "carol");
    // Carol's own broadcasts go out: Alice hears her (and answers by unicast).
    wait_for(Duration::from_secs(15), || peers_of(&a) == 2 && peers_of(&c) >= 1, "Alice to know Bob and Carol");
    let (code, f, out) = doctor(lan.host(1), &a.home);
    assert_eq!(code, Some(1), "{out}");
    let iso = with_code(&f, "isolation");
    assert_eq!(iso.len(), 1, "{out}");
    let s = iso[0]["summary"].as_str().unwrap();
    assert!(s.contains("carol@") && s.contains("198.18.0.13") && s.contains("not to broadcasts"), "{out}");
    assert!(iso[0]["advice"].as_str().unwrap().contains("targets = [\"198.18.0.13\"]"), "{out}");
    assert!(with_code(&f, "broadcast_answered")[0]["summary"].as_str().unwrap().contains("bob@"), "{out}");
    drop(b);

    // A second interface on the same subnet, a VPN tunnel and a container bridge.
    lan.second_nic(2, Ipv4Addr::new(198, 18, 0, 52), Ipv4Addr::new(198, 18, 0, 11));
    let h2 = lan.host(2);
    for args in [
        &["ip", "tuntap", "add", "dev", "tun7", "mode", "tun"][..],
        &["ip", "addr", "add", "10.9.0.1/24", "dev", "tun7"],
        &["ip", "link", "set", "tun7", "up"],
        &["ip", "link", "add", "docker0", "type", "bridge"],
        &["ip", "addr", "add", "172.17.0.1/16", "brd", "+", "dev", "docker0"],
        &["ip", "link", "set", "docker0", "up"],
    ] {
        let o = h2.run(args, Duration::from_secs(5));
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    }
    let fresh = tempfile::tempdir().unwrap();
    let (_, f, out) = doctor(lan.host(2), fresh.path());
    let tun = with_code(&f, "iface_tunnel");
    assert!(tun.len() == 1 && tun[0]["summary"].as_str().unwrap().starts_with("tun7 10.9.0.1/24, VPN/tunnel"), "{out}");
    let br = with_code(&f, "iface_container");
    assert!(
        br.len() == 1 && br[0]["summary"].as_str().unwrap().starts_with("docker0 172.17.0.1/16, container bridge"),
        "{out}"
    );
    let pair = with_code(&f, "same_subnet");
    assert_eq!(pair.len(), 1, "{out}");
    let s = pair[0]["summary"].as_str().unwrap();
    assert!(
        s.contains("veth0 (198.18.0.12)") && s.contains("veth1 (198.18.0.52)") && s.contains("198.18.0.0/24"),
        "{out}"
    );
    // The first start there: one line, naming both and the config file.
    let o = lan.host(2).run(
        &[env!("CARGO_BIN_EXE_pigeon"), "--home", fresh.path().to_str().unwrap(), "--user", "dave", "daemon"],
        Duration::from_secs(3),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    let line = err.lines().find(|l| l.starts_with("pigeon: announcing on")).unwrap_or_else(|| panic!("{err}"));
    assert!(
        line.contains("docker0 (172.17.255.255), veth0 (198.18.0.255), veth1 (198.18.0.255) (not on tun7)"),
        "{line}"
    );
    assert!(line.contains(&fresh.path().join("config.toml").display().to_string()), "{line}");
}
