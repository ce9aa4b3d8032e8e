//! Who is who on a real LAN: machines that share a user@host (every
//! Raspberry Pi is `pi@raspberrypi`), a peer that moves to a new address,
//! and one machine with two addresses on the LAN.

use std::net::Ipv4Addr;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{enabled, Lan};
use crate::messaging::{wait_for, Node};

/// A node that calls itself pi@raspberrypi (the user by flag, the host by
/// config), as on every Raspberry Pi.
fn raspberry(host: &crate::harness::Host) -> Node {
    let mut n = Node::new(host, "pi");
    std::fs::write(n.home.join("config.toml"), "host = \"raspberrypi\"\nnick = \"pi\"\n").unwrap();
    n.spawn();
    n
}

fn peers(n: &Node) -> Vec<Value> {
    n.control(&json!({"op": "peers"}))["peers"].as_array().cloned().unwrap_or_default()
}

fn addrs(n: &Node) -> Vec<String> {
    let mut v: Vec<String> = peers(n).iter().map(|p| p["addr"].as_str().unwrap_or_default().to_string()).collect();
    v.sort();
    v
}

fn text(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Three nodes all pi@raspberrypi on .11–.13: each lists the other two by
/// address; the name alone is refused with the candidates; each is
/// reachable by IP, and messages and history stay apart.
#[test]
fn three_machines_called_pi_at_raspberrypi() {
    if !enabled("three_machines_called_pi_at_raspberrypi") {
        return;
    }
    let lan = Lan::new(3);
    let pis: Vec<Node> = lan.hosts().iter().map(raspberry).collect();
    wait_for(Duration::from_secs(15), || pis.iter().all(|n| peers(n).len() == 2), "each Pi to list the other two");
    assert_eq!(addrs(&pis[0]), ["198.18.0.12:2425", "198.18.0.13:2425"]);
    assert_eq!(addrs(&pis[1]), ["198.18.0.11:2425", "198.18.0.13:2425"]);
    let o = pis[0].pigeon(&["send", "pi@raspberrypi", "who gets this?"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("2 peers are pi@raspberrypi: 198.18.0.12, 198.18.0.13; give an address"), "{}", text(&o));
    let o = pis[0].pigeon(&["send", "198.18.0.12", "for twelve only"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = pis[2].pigeon(&["send", "198.18.0.11", "from thirteen"]);
    assert!(o.status.success(), "{}", text(&o));
    let inbox = |n: &Node| -> Vec<(String, String)> {
        n.history(None)
            .iter()
            .filter(|m| m["direction"] == "in")
            .map(|m| (m["text"].as_str().unwrap().to_string(), m["peer"]["addr"].as_str().unwrap().to_string()))
            .collect()
    };
    wait_for(Duration::from_secs(10), || !inbox(&pis[1]).is_empty(), "twelve's message");
    assert_eq!(inbox(&pis[1]), [("for twelve only".to_string(), "198.18.0.11:2425".to_string())]);
    assert!(inbox(&pis[2]).is_empty(), "{:?}", inbox(&pis[2]));
    wait_for(Duration::from_secs(10), || !inbox(&pis[0]).is_empty(), "eleven's message");
    assert_eq!(inbox(&pis[0]), [("from thirteen".to_string(), "198.18.0.13:2425".to_string())]);
    // The broadcast: GBK without UTF8OPT, short Chinese that is
    // valid UTF-8 too, arrives as written.
    let o = pis[0].pigeon(&["broadcast", "hello all 通知"]);
    assert!(o.status.success(), "{}", text(&o));
    for n in &pis[1..] {
        wait_for(
            Duration::from_secs(10),
            || n.history(None).iter().any(|m| m["broadcast"] == true && m["direction"] == "in"),
            "the broadcast",
        );
        let got: Vec<Value> = n.history(None).into_iter().filter(|m| m["broadcast"] == true).collect();
        assert_eq!(got[0]["text"], "hello all 通知", "{got:?}");
    }
    // The conversations stay apart in the history (one peer key each).
    let keys: Vec<String> = pis[0]
        .history(None)
        .iter()
        .filter(|m| m["broadcast"] == false)
        .map(|m| format!("{}@{}", m["peer"]["user"].as_str().unwrap(), m["peer"]["host"].as_str().unwrap()))
        .collect();
    let mut unique = keys.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 2, "two conversations: {keys:?}");
}

/// A peer that leaves and comes back at another address (DHCP) is the
/// same peer: listed once, at its new address, and the message that waited
/// for it in the outbox is delivered there.
#[test]
fn a_peer_that_moves_keeps_its_identity_and_outbox() {
    if !enabled("a_peer_that_moves_keeps_its_identity_and_outbox") {
        return;
    }
    let mut lan = Lan::new(2);
    let a = Node::start(lan.host(1), "ann");
    let mut b = Node::start(lan.host(2), "ben");
    wait_for(Duration::from_secs(10), || a.peer_count() == 1 && b.peer_count() == 1, "discovery");
    let key = {
        let p = &peers(&a)[0];
        format!("{}@{}", p["user"].as_str().unwrap(), p["host"].as_str().unwrap())
    };
    b.stop();
    wait_for(Duration::from_secs(10), || a.peer_count() == 0, "ben's exit");
    let o = a.pigeon(&["send", &key, "--wait", "1", "waiting for you"]);
    assert_eq!(o.status.code(), Some(1), "queued: {}", text(&o));
    lan.readdress(2, Ipv4Addr::new(198, 18, 0, 42));
    b.host = lan.host(2).clone();
    b.spawn();
    wait_for(Duration::from_secs(15), || addrs(&a) == ["198.18.0.42:2425"], "ben at his new address");
    assert_eq!(peers(&a).len(), 1, "listed once: {:?}", peers(&a));
    wait_for(
        Duration::from_secs(20),
        || b.history(None).iter().any(|m| m["text"] == "waiting for you"),
        "the queued message at the new address",
    );
    wait_for(
        Duration::from_secs(10),
        || a.history(None).iter().any(|m| m["text"] == "waiting for you" && m["state"] == "delivered"),
        "its receipt",
    );
}

/// One machine with two NICs on the LAN (.11 and .111; what it sends to
/// .13 leaves from .111): the others list it once, and it is reachable and
/// heard at both addresses.
#[test]
fn a_host_with_two_addresses_is_listed_once() {
    if !enabled("a_host_with_two_addresses_is_listed_once") {
        return;
    }
    let lan = Lan::new(3);
    let second = Ipv4Addr::new(198, 18, 0, 111);
    lan.second_nic(1, second, lan.host(3).addr);
    let bob = Node::start(lan.host(2), "bob");
    let dual = Node::start(lan.host(1), "dual");
    // Carol comes last: dual answers her from .111, its broadcasts come from .11.
    let carol = Node::start(lan.host(3), "carol");
    wait_for(Duration::from_secs(15), || bob.peer_count() == 2 && carol.peer_count() == 2, "discovery");
    // A change of status: broadcast, and unicast to each peer.
    let r = dual.control(&json!({"op": "status", "away": "two NICs, one machine"}));
    assert_eq!(r["ok"], true, "{r}");
    wait_for(
        Duration::from_secs(10),
        || peers(&carol).iter().any(|p| p["user"] == "dual" && p["away"] == true && p.get("also").is_some()),
        "carol to see dual away, at both addresses",
    );
    let seen: Vec<Value> = peers(&carol).into_iter().filter(|p| p["user"] == "dual").collect();
    assert_eq!(seen.len(), 1, "listed once: {seen:?}");
    let mut both = vec![seen[0]["addr"].as_str().unwrap().to_string()];
    both.extend(seen[0]["also"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()));
    both.sort();
    assert_eq!(both, ["198.18.0.111:2425", "198.18.0.11:2425"]);
    assert_eq!(peers(&bob).iter().filter(|p| p["user"] == "dual").count(), 1);
    // Messages both ways, and by either address.
    let o = carol.pigeon(&["send", "dual", "to the machine with two NICs"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = carol.pigeon(&["send", "198.18.0.111", "to its second address"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = dual.pigeon(&["send", "carol", "from the machine with two NICs"]);
    assert!(o.status.success(), "{}", text(&o));
    wait_for(
        Duration::from_secs(10),
        || carol.history(None).iter().any(|m| m["direction"] == "in" && m["peer"]["user"] == "dual"),
        "dual's message",
    );
    let got: Vec<String> = dual
        .history(None)
        .iter()
        .filter(|m| m["direction"] == "in")
        .map(|m| m["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got.len(), 2, "{got:?}");
}

/// A running node whose address changes (DHCP) still knows its own
/// packets: its broadcasts from the new address are not a peer, nor a
/// message to itself.
#[test]
fn a_node_whose_address_changes_still_knows_its_own_packets() {
    if !enabled("a_node_whose_address_changes_still_knows_its_own_packets") {
        return;
    }
    let mut lan = Lan::new(2);
    let a = Node::start(lan.host(1), "ann");
    let b = Node::start(lan.host(2), "ben");
    wait_for(Duration::from_secs(10), || a.peer_count() == 1 && b.peer_count() == 1, "discovery");
    lan.readdress(1, Ipv4Addr::new(198, 18, 0, 43));
    let r = a.control(&json!({"op": "status", "away": "moved"}));
    assert_eq!(r["ok"], true, "{r}");
    let o = a.pigeon(&["broadcast", "from the new address"]);
    assert!(o.status.success(), "{}", text(&o));
    wait_for(
        Duration::from_secs(10),
        || b.history(None).iter().any(|m| m["text"] == "from the new address"),
        "the broadcast at ben",
    );
    std::thread::sleep(Duration::from_millis(500));
    let listed: Vec<String> = peers(&a).iter().map(|p| p["user"].as_str().unwrap_or_default().to_string()).collect();
    assert_eq!(listed, ["ben"], "ann does not list herself: {:?}", peers(&a));
    assert!(
        !a.history(None).iter().any(|m| m["direction"] == "in"),
        "ann's own broadcast is not a message to her: {:?}",
        a.history(None)
    );
}
