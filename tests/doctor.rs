//! `pigeon doctor` on loopback (the namespace LAN tests make each real
//! failure; these run everywhere): the JSON shape and exit codes, the port
//! held by this home's daemon or by another process, a peer's answer, and
//! a configuration error naming its line. Nodes bind 127.0.0.111–113 with
//! explicit targets: nothing leaves the machine.

mod common;

use std::process::Stdio;

use common::{wait_for, Daemon, PORT};
use serde_json::Value;

fn findings(out: &std::process::Output) -> (Value, Vec<Value>) {
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {text}{}", String::from_utf8_lossy(&out.stderr)));
    let f = v["findings"].as_array().cloned().unwrap_or_default();
    (v, f)
}

fn with_code<'a>(f: &'a [Value], code: &str) -> Vec<&'a Value> {
    f.iter().filter(|x| x["code"] == code).collect()
}

#[test]
fn doctor_reports_its_daemon_and_the_peers_that_answer() {
    let a = Daemon::start("127.0.0.111", "alice", "Alice", &["127.0.0.112"]);
    let b = Daemon::start("127.0.0.112", "bob", "Bob", &["127.0.0.111"]);
    wait_for(|| a.peers().len() == 1 && b.peers().len() == 1, "the daemons to see each other");
    // A home as Pigeon makes it, whatever this machine's umask gave the test folder.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(a.home.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = a.cli(&["doctor", "--json", "--wait", "1"]);
    let (v, f) = findings(&out);
    // Bound to a loopback address: peers on a LAN could not reach it.
    assert_eq!(out.status.code(), Some(1), "{v:#}");
    assert_eq!(v["ok"], false);
    let pid = a.pid().to_string();
    let lo = with_code(&f, "port_loopback_only");
    assert_eq!(lo.len(), 2, "UDP and TCP: {v:#}");
    assert!(
        lo.iter().all(|x| x["summary"].as_str().unwrap().contains(&format!("this home's daemon (pid {pid})"))),
        "{v:#}"
    );
    // Bob's daemon on 127.0.0.112 shares the port number, not the address: not in the way.
    assert!(with_code(&f, "port_taken").is_empty(), "{v:#}");
    let bob = f
        .iter()
        .find(|x| x["summary"].as_str().unwrap_or_default().contains("bob@"))
        .unwrap_or_else(|| panic!("{v:#}"));
    assert_eq!(bob["status"], "ok", "{v:#}");
    assert_eq!(with_code(&f, "database_ok").len(), 1, "{v:#}");
    // (At least: this machine's own firewall may add findings of its own.)
    assert!(v["problems"].as_u64().unwrap() >= 2, "{v:#}");
    // The human form: areas, marks, advice, a count.
    let out = a.cli(&["doctor", "--wait", "0.5"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("port\n  WARN  UDP 42425: this home's daemon"), "{text}");
    assert!(text.contains("        → peers on the LAN cannot reach it"), "{text}");
    assert!(text.trim_end().ends_with(" problems"), "{text}");
}

#[test]
fn doctor_names_the_process_that_holds_the_port() {
    let held = std::net::UdpSocket::bind(format!("127.0.0.113:{PORT}")).unwrap();
    let home = tempfile::tempdir().unwrap();
    let out = common::pigeon(
        home.path(),
        "127.0.0.113",
        "carol",
        "Carol",
        &["127.0.0.114"],
        &["doctor", "--json", "--wait", "0.2"],
    )
    .stdin(Stdio::null())
    .output()
    .unwrap();
    let (v, f) = findings(&out);
    assert_eq!(out.status.code(), Some(1), "{v:#}");
    let taken = with_code(&f, "port_taken");
    assert_eq!(taken.len(), 1, "{v:#}");
    let s = taken[0]["summary"].as_str().unwrap();
    assert!(
        s.starts_with(&format!("UDP {PORT} is held by ")) && s.contains(&format!("(pid {})", std::process::id())),
        "{s}"
    );
    assert!(s.ends_with("on 127.0.0.113"), "{s}");
    assert_eq!(
        with_code(&f, "port_free")[0]["summary"],
        format!("TCP {PORT} is free: no Pigeon or other IPMsg client runs here")
    );
    // A new home is not created by looking at it.
    assert_eq!(with_code(&f, "home_new").len(), 1, "{v:#}");
    assert!(!home.path().join("pigeon.db").exists());
    drop(held);
}

#[test]
fn a_configuration_error_names_the_key_and_the_line() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("config.toml"), "nick = \"Dee\"\n\ntargts = [\"10.0.0.255\"]\n").unwrap();
    let out = common::pigeon(home.path(), "127.0.0.113", "dee", "Dee", &[], &["config"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("line 3") && err.contains("unknown field `targts`"), "{err}");
    std::fs::write(home.path().join("config.toml"), "targets = [\"10.0.0.255\", \"10.0.0.256\"]\n").unwrap();
    let out = common::pigeon(home.path(), "127.0.0.113", "dee", "Dee", &[], &["config"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("config.toml:1: targets: 10.0.0.256: not an address or range"), "{err}");
}
