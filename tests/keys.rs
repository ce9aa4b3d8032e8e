//! `pigeon keys` and the fingerprint line of `pigeon config`, on the real
//! binary with a temporary `--home`. Both only read and write files of the
//! home (no node, no daemon, nothing on the network): peers' keys are put
//! in the store with the library.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output};

use pigeon::keys::{describe_fingerprint, key_file, keys_dir};
use pigeon_protocol::pubkey::{KeyPair, KeySize};
use serde_json::Value;

fn pigeon(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pigeon"))
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("PIGEON_HOME")
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: Output) -> String {
    assert_eq!(o.status.code(), Some(0), "stdout:\n{}\nstderr:\n{}", stdout(&o), stderr(&o));
    stdout(&o)
}

fn json(o: Output) -> Value {
    let out = ok(o);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON: {e}\n{out}"))
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().mode() & 0o7777
}

/// Our 2048-bit fingerprint as the files hold it.
fn our_fingerprint(home: &Path) -> String {
    pigeon::keys::read_existing(home, KeySize::Rsa2048).unwrap().unwrap().fingerprint()
}

#[test]
fn keys_are_made_once_private_and_shown_by_keys_and_config() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    // `config` never makes keys.
    let out = ok(pigeon(home, &["config"]));
    assert!(out.contains("(created when the node first starts)"), "{out}");
    assert!(json(pigeon(home, &["config", "--json"]))["fingerprint"].is_null());
    assert!(!keys_dir(home).exists());

    let out = ok(pigeon(home, &["keys"]));
    let fp = our_fingerprint(home);
    assert!(out.contains(&describe_fingerprint(&fp)), "{out}");
    assert!(out.contains("no peer keys yet"), "{out}");
    assert_eq!(mode(&keys_dir(home)), 0o700);
    for size in [KeySize::Rsa2048, KeySize::Rsa1024] {
        assert_eq!(mode(&key_file(home, size)), 0o600, "{size:?}");
    }

    // Again: the same keys.
    let out = ok(pigeon(home, &["keys"]));
    assert!(out.contains(&describe_fingerprint(&fp)), "{out}");
    assert_eq!(our_fingerprint(home), fp);

    let v = json(pigeon(home, &["keys", "--json"]));
    assert_eq!(v["ours"]["rsa2048"], fp.as_str());
    let fp1024 = pigeon::keys::read_existing(home, KeySize::Rsa1024).unwrap().unwrap().fingerprint();
    assert_eq!(v["ours"]["rsa1024"], fp1024.as_str());
    assert_eq!(v["peers"], serde_json::json!([]));

    let out = ok(pigeon(home, &["config"]));
    assert!(out.lines().any(|l| l.starts_with("fingerprint") && l.ends_with(&describe_fingerprint(&fp))), "{out}");
    assert_eq!(json(pigeon(home, &["config", "--json"]))["fingerprint"], fp.as_str());
}

#[test]
fn a_corrupt_key_stops_keys_and_is_left_as_it_is() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    ok(pigeon(home, &["keys"]));
    let p = key_file(home, KeySize::Rsa2048);
    let mut pem = std::fs::read(&p).unwrap();
    pem.truncate(pem.len() / 2);
    std::fs::write(&p, &pem).unwrap();

    let o = pigeon(home, &["keys"]);
    assert_eq!(o.status.code(), Some(2), "stdout:\n{}\nstderr:\n{}", stdout(&o), stderr(&o));
    let err = stderr(&o);
    assert!(err.contains(&p.display().to_string()), "{err}");
    assert!(err.contains("never replaces"), "{err}");
    assert_eq!(std::fs::read(&p).unwrap(), pem);
    assert_eq!(mode(&p), 0o600);

    // `config` still runs, and says what is wrong.
    let out = ok(pigeon(home, &["config"]));
    assert!(out.lines().any(|l| l.starts_with("fingerprint") && l.contains("unusable")), "{out}");
    assert_eq!(std::fs::read(&p).unwrap(), pem);
}

#[test]
fn trusting_an_unknown_peer_fails() {
    let home = tempfile::tempdir().unwrap();
    let o = pigeon(home.path(), &["keys", "--trust", "bob@pc-bob"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("no key of \"bob@pc-bob\" is stored"), "{}", stderr(&o));
    // With a store too.
    pigeon::store::Store::open(&home.path().join("pigeon.db")).unwrap();
    let o = pigeon(home.path(), &["keys", "--trust", "bob@pc-bob"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    // Neither makes keys.
    assert!(!keys_dir(home.path()).exists());
}

#[test]
fn a_changed_peer_key_is_marked_until_trusted() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    // Two real 2048-bit keys (256 bytes, top bit set, odd).
    let first = KeyPair::from_pkcs8_pem(include_str!("../protocol/tests/crypto/peer-test-rsa2048.pem")).unwrap();
    let second = KeyPair::from_pkcs8_pem(include_str!("../protocol/tests/crypto/pigeon-test-rsa2048.pem")).unwrap();
    let (m1, m2) = (first.modulus_be(), second.modulus_be());
    assert_eq!((m1.len(), m1[0] & 0x80, m1[255] & 1), (256, 0x80, 1));
    let (fp1, fp2) = (first.fingerprint(), second.fingerprint());

    let db = home.join("pigeon.db");
    let save = |modulus: &[u8]| {
        let mut store = pigeon::store::Store::open(&db).unwrap();
        store
            .transaction(|tx| tx.save_peer_key("bob", "pc-bob", 0x4190_0004, &[1, 0, 1], modulus, chrono::Utc::now()))
            .unwrap();
    };
    save(&m1);
    let out = ok(pigeon(home, &["keys"]));
    let line = out.lines().find(|l| l.contains("bob@pc-bob")).unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("2048-bit") && line.contains(&describe_fingerprint(&fp1)), "{out}");
    assert!(!out.contains("KEY CHANGED"), "{out}");
    let v = json(pigeon(home, &["keys", "--json"]));
    let peer = &v["peers"][0];
    for k in ["user", "host", "bits", "fingerprint", "pinned_fingerprint", "changed", "first_seen", "last_seen"] {
        assert!(peer.get(k).is_some(), "{k} missing: {v}");
    }
    assert_eq!((&peer["user"], &peer["host"], &peer["bits"]), (&"bob".into(), &"pc-bob".into(), &2048.into()));
    assert_eq!((&peer["fingerprint"], &peer["changed"]), (&fp1.as_str().into(), &false.into()));

    // Another key: used, but marked, with both fingerprints.
    save(&m2);
    let out = ok(pigeon(home, &["keys"]));
    assert!(out.contains("KEY CHANGED"), "{out}");
    assert!(out.contains(&describe_fingerprint(&fp1)) && out.contains(&describe_fingerprint(&fp2)), "{out}");
    assert!(out.contains("pigeon keys --trust bob@pc-bob"), "{out}");
    let peer = json(pigeon(home, &["keys", "--json"]))["peers"][0].clone();
    assert_eq!(peer["changed"], true);
    assert_eq!((&peer["fingerprint"], &peer["pinned_fingerprint"]), (&fp2.as_str().into(), &fp1.as_str().into()));

    let out = ok(pigeon(home, &["keys", "--trust", "bob@pc-bob"]));
    assert!(out.contains("trusted bob@pc-bob") && out.contains(&describe_fingerprint(&fp2)), "{out}");
    let out = ok(pigeon(home, &["keys"]));
    assert!(!out.contains("KEY CHANGED"), "{out}");
    let peer = json(pigeon(home, &["keys", "--json"]))["peers"][0].clone();
    assert_eq!((&peer["changed"], &peer["pinned_fingerprint"]), (&false.into(), &fp2.as_str().into()));
    // Trusting it again changes nothing, and says so.
    let out = ok(pigeon(home, &["keys", "--trust", "bob@pc-bob"]));
    assert!(out.contains("already the pinned one"), "{out}");
}
