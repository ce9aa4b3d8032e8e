//! `pigeon status` (online / away with a text) and `pigeon info PEER`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::json;

use super::node::{check, request, runtime, Effective, Global};

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  pigeon status away \"in a meeting until 3\"\n  pigeon status online")]
pub struct StatusArgs {
    #[command(subcommand)]
    pub state: State,
}

#[derive(Debug, Subcommand)]
pub enum State {
    /// Back online
    Online,
    /// Away: messages get an automatic reply with TEXT
    Away { text: Option<String> },
}

pub fn run(g: &Global, args: &StatusArgs) -> Result<ExitCode> {
    let eff = Effective::load(g)?;
    let away = match &args.state {
        State::Online => None,
        State::Away { text } => Some(text.clone().unwrap_or_else(|| "I am away".into())),
    };
    // A short-lived node would announce the state and leave at once: the
    // state belongs to a running daemon (or to `away` in config.toml).
    let sock = eff.home.socket();
    let v = runtime()?.block_on(async {
        crate::control::call(&sock, &json!({"op": "status", "away": away})).await.map_err(|_| {
            anyhow::anyhow!(
                "no daemon runs with this home: `pigeon status` changes a running daemon's state \
                 (start `pigeon daemon`, or set `away = \"…\"` in {})",
                eff.home.config_file().display()
            )
        })
    })?;
    check(v)?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
#[command(after_help = "Example:\n  pigeon info Alice")]
pub struct InfoArgs {
    /// Nick, user@host or IP
    pub peer: String,
    #[arg(long)]
    pub json: bool,
    /// Seconds to discover peers first when no daemon runs
    #[arg(long, default_value_t = 2.0, value_parser = super::parse_wait)]
    pub wait: f64,
}

pub fn run_info(g: &Global, args: &InfoArgs) -> Result<ExitCode> {
    let eff = Effective::load(g)?;
    let v = runtime()?.block_on(request(
        &eff,
        &json!({"op": "info", "peer": args.peer}),
        Duration::from_secs_f64(args.wait),
    ))?;
    let v = check(v)?;
    let i = &v["info"];
    if args.json {
        println!("{}", serde_json::to_string_pretty(i)?);
    } else {
        for k in ["nick", "group", "user", "host", "addr", "client", "version_field", "program", "absence", "away"] {
            let val = match &i[k] {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => "(no answer)".into(),
                other => other.to_string(),
            };
            println!("{k:<14} {}", super::clean(&val));
        }
    }
    Ok(ExitCode::SUCCESS)
}
