//! `pigeon config`: the effective configuration (file, then flags) and
//! where it lives.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use serde_json::json;

use super::node::{Effective, Global};

#[derive(Debug, Args)]
#[command(after_help = "Example:\n  pigeon --home /tmp/p1 config --json")]
pub struct ConfigArgs {
    #[arg(long)]
    pub json: bool,
}

pub fn run(g: &Global, args: &ConfigArgs) -> Result<ExitCode> {
    let e = Effective::load(g)?;
    let v = json!({
        "config_file": e.home.config_file(),
        "database": e.home.database(),
        "socket": e.home.socket(),
        "user": e.user, "host": e.host, "nick": e.nick, "group": e.group,
        "charset": e.charset.name(),
        "port": e.port, "bind": e.bind.to_string(),
        "broadcast_targets": e.targets.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
        "probed_addresses": e.probe.len(),
        "away": e.away,
        "outbox_expiry_days": e.outbox_expiry_days,
        "offer_expiry_days": e.offer_expiry_days,
        "download_dir": e.file.download_dir.clone().unwrap_or_else(super::files::download_dir),
        "bell": e.file.bell.unwrap_or(true),
        "notify": e.file.notify.unwrap_or(true),
        "mouse": e.file.mouse.unwrap_or(false),
        "colors": e.file.colors.clone().unwrap_or_else(|| "auto".into()),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for (k, val) in v.as_object().expect("an object") {
            let shown = match val {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            println!("{k:<20} {shown}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
