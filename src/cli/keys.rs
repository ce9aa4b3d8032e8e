//! `pigeon keys`: our key fingerprints (the keys are made if the home has
//! none yet) and the public keys peers gave us, from the store (no daemon
//! needed), with a loud mark on a key that is not the one pinned first;
//! `--trust USER@HOST` pins the key a peer gives now.

use std::process::ExitCode;

use anyhow::{bail, Result};
use chrono::{DateTime, Utc};
use clap::Args;
use pigeon_protocol::pubkey::{Capa, PeerKey};
use serde_json::json;

use crate::keys::describe_fingerprint;
use crate::node::{Effective, Global};
use crate::store::{PinnedKey, Store};

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  pigeon keys                     # our fingerprints, then the peers' keys\n  pigeon keys --json\n  pigeon keys --trust bob@pc-bob  # after comparing its fingerprint with Bob"
)]
pub struct KeysArgs {
    /// One JSON object: {"ours": {"rsa2048", "rsa1024"}, "peers": [...]}
    #[arg(long, conflicts_with = "trust")]
    pub json: bool,
    /// Trust the key this peer gives now, in place of the one pinned first
    /// (compare its fingerprint with the peer first)
    #[arg(long, value_name = "USER@HOST")]
    pub trust: Option<String>,
}

/// A peer key's fingerprint, as its owner's IP Messenger shows it: of the
/// modulus at its key size (leading zero bytes put back).
fn fingerprint(capa: u32, exponent: &[u8], modulus: &[u8]) -> String {
    match PeerKey::from_parts(Capa(capa), exponent, modulus) {
        Ok(k) => k.fingerprint(),
        Err(_) => pigeon_protocol::crypto::fingerprint(modulus),
    }
}

/// The size of a modulus in bits, by its length (2048 for 256 bytes).
fn bits(modulus: &[u8]) -> usize {
    modulus.iter().skip_while(|&&b| b == 0).count() * 8
}

/// A word as a shell reads it: quoted unless it is plain.
fn shell_word(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "@._-+:,/".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn local(t: DateTime<Utc>) -> String {
    t.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M").to_string()
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.with_timezone(&chrono::Local).to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

fn peer_json(k: &PinnedKey) -> serde_json::Value {
    json!({
        "user": k.user,
        "host": k.host,
        "bits": bits(&k.modulus),
        "fingerprint": fingerprint(k.capa, &k.exponent, &k.modulus),
        "pinned_fingerprint": fingerprint(k.capa, &k.exponent, &k.pinned),
        "changed": k.changed(),
        "first_seen": rfc3339(k.first_seen),
        "last_seen": rfc3339(k.last_seen),
    })
}

pub fn run(g: &Global, args: &KeysArgs) -> Result<ExitCode> {
    let eff = Effective::load(g)?;
    let db = eff.home.database();
    if let Some(who) = &args.trust {
        // A running daemon holds the pins in memory: it is told too.
        if let Some((user, host)) = trust(&db, who)? {
            let req = crate::control::api::Request::Trust { user, host };
            let sock = eff.home.socket();
            if sock.exists() {
                if let Ok(v) = crate::node::runtime()?.block_on(crate::control::call(&sock, &req)) {
                    crate::control::api::parse_answer::<crate::control::api::Done>(v)?;
                }
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    eff.home.create()?;
    let ours = crate::keys::load_or_create(&eff.home.data_dir)?;
    let (fp2048, fp1024) = crate::keys::fingerprints(&ours);
    // A store not made yet holds no keys (and is not made here).
    let peers = if db.exists() { Store::open(&db)?.peer_keys()? } else { Vec::new() };
    if args.json {
        let v = json!({
            "ours": {"rsa2048": fp2048, "rsa1024": fp1024},
            "peers": peers.iter().map(peer_json).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("Our keys (in {}):", super::clean_path(&crate::keys::keys_dir(&eff.home.data_dir)));
    println!("  RSA-2048  {}   (the one IP Messenger users compare)", describe_fingerprint(&fp2048));
    println!("  RSA-1024  {}   (for old clients)", describe_fingerprint(&fp1024));
    println!();
    if peers.is_empty() {
        println!("no peer keys yet");
        return Ok(ExitCode::SUCCESS);
    }
    println!("Peers' keys:");
    let names: Vec<String> =
        peers.iter().map(|k| format!("{}@{}", super::clean(&k.user), super::clean(&k.host))).collect();
    let width = names.iter().map(|n| super::display_width(n)).max().unwrap_or(0);
    for (k, name) in peers.iter().zip(&names) {
        println!(
            "  {}  {}-bit  {}  first seen {}, last seen {}",
            super::pad(name, width),
            bits(&k.modulus),
            describe_fingerprint(&fingerprint(k.capa, &k.exponent, &k.modulus)),
            local(k.first_seen),
            local(k.last_seen),
        );
        if k.changed() {
            println!(
                "  {}  !! KEY CHANGED since first seen (pinned fingerprint {}); compare with the peer, then: \
                 pigeon keys --trust {}",
                " ".repeat(width),
                describe_fingerprint(&fingerprint(k.capa, &k.exponent, &k.pinned)),
                shell_word(name)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `--trust USER@HOST`: the key it gives now becomes the pinned one.
/// The peer's user and host, or None if it was the pinned one already.
fn trust(db: &std::path::Path, who: &str) -> Result<Option<(String, String)>> {
    let unknown = || format!("no key of {who:?} is stored (`pigeon keys` lists the peers whose keys are known)");
    if !db.exists() {
        bail!("{}", unknown());
    }
    let store = Store::open(db)?;
    let keys = store.peer_keys()?;
    // The name as `pigeon keys` prints it; a user or host may hold an '@'.
    let exact: Vec<&PinnedKey> = keys.iter().filter(|k| format!("{}@{}", k.user, k.host) == who).collect();
    let found: Vec<&PinnedKey> = if exact.is_empty() {
        keys.iter().filter(|k| format!("{}@{}", k.user, k.host).eq_ignore_ascii_case(who)).collect()
    } else {
        exact
    };
    let k = match found.as_slice() {
        [k] => *k,
        [] => bail!("{}", unknown()),
        _ => bail!("{who:?} names more than one peer here; give user@host as `pigeon keys` prints it"),
    };
    let name = format!("{}@{}", super::clean(&k.user), super::clean(&k.host));
    let now = describe_fingerprint(&fingerprint(k.capa, &k.exponent, &k.modulus));
    if !k.changed() {
        println!("{name}: its key {now} is already the pinned one");
        return Ok(None);
    }
    if !store.trust_peer_key(&k.user, &k.host)? {
        bail!("{}", unknown()); // removed meanwhile
    }
    let was = describe_fingerprint(&fingerprint(k.capa, &k.exponent, &k.pinned));
    println!("trusted {name}'s key {now} ({}-bit); it replaces {was}", bits(&k.modulus));
    Ok(Some((k.user.clone(), k.host.clone())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_suggested_name_is_quoted_for_the_shell() {
        assert_eq!(shell_word("bob@pc-bob"), "bob@pc-bob");
        assert_eq!(shell_word("李 雷@pc"), "'李 雷@pc'");
        assert_eq!(shell_word("o'neil@pc"), r"'o'\''neil@pc'");
    }

    #[test]
    fn a_modulus_size_is_its_length() {
        let mut m = vec![0xc1; 256];
        assert_eq!(bits(&m), 2048);
        m.insert(0, 0);
        assert_eq!(bits(&m), 2048);
        assert_eq!(bits(&[0x80; 128]), 1024);
    }

    #[test]
    fn a_fingerprint_is_of_the_padded_modulus() {
        let pair =
            pigeon_protocol::KeyPair::from_pkcs8_pem(include_str!("../../protocol/tests/crypto/peer-test-rsa2048.pem"))
                .unwrap();
        let m = pair.modulus_be();
        let e = [1, 0, 1];
        assert_eq!(fingerprint(0x4190_0004, &e, &m), pair.fingerprint());
        let mut padded = vec![0];
        padded.extend_from_slice(&m);
        assert_eq!(fingerprint(0x4190_0004, &e, &padded), pair.fingerprint());
    }
}
