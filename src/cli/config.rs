//! `pigeon config`: the effective configuration (file, then flags) and
//! where it lives, with our key's fingerprint.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use serde_json::json;

use crate::node::{Effective, Global};

#[derive(Debug, Args)]
#[command(after_help = "Example:\n  pigeon --home /tmp/p1 config --json")]
pub struct ConfigArgs {
    #[arg(long)]
    pub json: bool,
}

pub fn run(g: &Global, args: &ConfigArgs) -> Result<ExitCode> {
    let e = Effective::load(g)?;
    // A running daemon's away state is the one in force.
    let running = crate::node::runtime()?.block_on(super::client::daemon_me(&e));
    let away = match &running {
        Some(me) => me.away.clone(),
        None => e.away.clone(),
    };
    // Our 2048-bit key's fingerprint, if the key exists (the node makes
    // it when it first starts; `config` never does).
    let (fingerprint, fingerprint_text) =
        match crate::keys::read_existing(&e.home.data_dir, pigeon_protocol::pubkey::KeySize::Rsa2048) {
            Ok(Some(k)) => {
                let fp = k.fingerprint();
                let text = crate::keys::describe_fingerprint(&fp);
                (Some(fp), text)
            }
            Ok(None) => (None, "(created when the node first starts)".to_string()),
            Err(err) => (None, format!("unusable: {err:#}")),
        };
    let v = json!({
        "config_file": e.home.config_file(),
        "database": e.home.database(),
        "socket": e.home.socket(),
        "user": e.user, "host": e.host, "nick": e.nick, "group": e.group,
        "fingerprint": fingerprint,
        "require_encryption": e.file.require_encryption.unwrap_or(false),
        "plaintext_fallback": e.file.plaintext_fallback.unwrap_or(false),
        "encrypt_file_bodies": e.file.encrypt_file_bodies.unwrap_or(false),
        "charset": e.charset.name(),
        "port": e.port, "bind": e.bind.to_string(),
        "broadcast_targets": e.targets.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
        "probed_addresses": e.probe.len(),
        "away": away,
        "daemon": running.is_some(),
        "auto_accept": e.file.auto_accept.clone().unwrap_or_default(),
        "auto_accept_max_mb": e.file.auto_accept_max_mb.unwrap_or(100),
        "outbox_expiry_days": e.outbox_expiry_days,
        "offer_expiry_days": e.offer_expiry_days,
        "download_dir": e.file.download_dir.clone().unwrap_or_else(crate::node::download_dir),
        "bell": e.file.bell.unwrap_or(true),
        "notify": e.file.notify.unwrap_or(true),
        "mouse": e.file.mouse.unwrap_or(false),
        "colors": e.file.colors.clone().unwrap_or_else(|| "auto".into()),
        "web": crate::web::enabled(&e),
        "web_listen": crate::web::listen_addr(&e).to_string(),
        "web_max_upload_mb": crate::web::max_upload(&e) >> 20,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        // Where things are, who we are, the network, then the rest.
        let order = [
            "config_file",
            "database",
            "socket",
            "daemon",
            "user",
            "host",
            "nick",
            "group",
            "fingerprint",
            "require_encryption",
            "plaintext_fallback",
            "encrypt_file_bodies",
            "charset",
            "port",
            "bind",
            "broadcast_targets",
            "probed_addresses",
            "away",
            "download_dir",
            "auto_accept",
            "auto_accept_max_mb",
            "outbox_expiry_days",
            "offer_expiry_days",
            "bell",
            "notify",
            "mouse",
            "colors",
            "web",
            "web_listen",
            "web_max_upload_mb",
        ];
        debug_assert_eq!(order.len(), v.as_object().map_or(0, |o| o.len()));
        for k in order {
            let val = &v[k];
            let shown = match (k, val) {
                ("group", serde_json::Value::String(s)) if s.is_empty() => "-".into(),
                ("fingerprint", _) => fingerprint_text.clone(),
                (_, serde_json::Value::String(s)) => s.clone(),
                ("away", serde_json::Value::Null) => "no".into(),
                ("auto_accept", serde_json::Value::Array(a)) if a.is_empty() => "nobody".into(),
                ("auto_accept", serde_json::Value::Array(a)) => {
                    a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(", ")
                }
                ("broadcast_targets", serde_json::Value::Array(a)) => {
                    a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(", ")
                }
                ("daemon", serde_json::Value::Bool(b)) => (if *b { "running" } else { "not running" }).into(),
                (_, serde_json::Value::Null) => "-".into(),
                (_, other) => other.to_string(),
            };
            println!("{k:<20} {shown}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
