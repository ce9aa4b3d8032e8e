//! `pigeon status` (online / away with a text), `pigeon info PEER` and
//! `pigeon shake PEER`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::json;

use super::client::request;
use crate::control::api::{self, ApiError, ErrorCode};
use crate::node::{runtime, Effective, Global};

#[derive(Debug, Args)]
#[command(
    after_help = "Without a state: shows ours (online, away with its text, or offline when no daemon runs).\n\nExamples:\n  pigeon status\n  pigeon status away \"in a meeting until 3\"\n  pigeon status online"
)]
pub struct StatusArgs {
    #[command(subcommand)]
    pub state: Option<State>,
    /// With no state: print ours as JSON
    #[arg(long)]
    pub json: bool,
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
    let Some(state) = &args.state else { return show(&eff, args.json) };
    let away = match state {
        State::Online => None,
        State::Away { text } => Some(text.clone().unwrap_or_else(|| "I am away".into())),
    };
    // A short-lived node would announce the state and leave at once: the
    // state belongs to a running daemon (or to `away` in config.toml).
    let sock = eff.home.socket();
    let v = runtime()?.block_on(async {
        crate::control::call(&sock, &api::Request::Status { away }).await.map_err(|_| {
            ApiError::new(
                ErrorCode::NoDaemon,
                format!(
                    "no daemon runs with this home: `pigeon status` changes a running daemon's state \
                     (start `pigeon daemon`, or set `away = \"…\"` in {})",
                    eff.home.config_file().display()
                ),
            )
        })
    })?;
    api::parse_answer::<api::Done>(v)?;
    Ok(ExitCode::SUCCESS)
}

/// `pigeon status` alone: the running daemon's state, or offline.
fn show(eff: &Effective, json_out: bool) -> Result<ExitCode> {
    let me = runtime()?.block_on(super::client::daemon_me(eff));
    let (state, text, nick) = match &me {
        Some(m) => (if m.away.is_some() { "away" } else { "online" }, m.away.as_deref(), Some(m.nick.as_str())),
        None => ("offline", None, None),
    };
    if json_out {
        println!("{}", json!({"state": state, "away": text, "nick": nick.unwrap_or(&eff.nick)}));
        return Ok(ExitCode::SUCCESS);
    }
    let who = super::clean(nick.unwrap_or(&eff.nick)).into_owned();
    match (state, text) {
        ("away", Some(t)) => println!("{who}: away ({})", super::clean(t)),
        ("online", _) => println!("{who}: online"),
        _ => println!(
            "{who}: offline (no daemon runs with this home; `pigeon daemon` or `pigeon chat` brings you online)"
        ),
    }
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
    let req = api::Request::Info { peer: args.peer.clone() };
    let answer: api::InfoAnswer = runtime()?.block_on(request(&eff, &req, Duration::from_secs_f64(args.wait)))?;
    let i = &serde_json::to_value(&answer.info)?;
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

#[derive(Debug, Args)]
#[command(after_help = "Example:\n  pigeon shake 测试机")]
pub struct ShakeArgs {
    /// Nick, user@host or IP
    pub peer: String,
    /// Seconds to discover peers first when no daemon runs
    #[arg(long, default_value_t = 2.0, value_parser = super::parse_wait)]
    pub wait: f64,
}

/// FeiQ's window shake to one peer.
pub fn run_shake(g: &Global, args: &ShakeArgs) -> Result<ExitCode> {
    let eff = Effective::load(g)?;
    let req = api::Request::Shake { peer: args.peer.clone() };
    let answer: api::ShakeAnswer = runtime()?.block_on(request(&eff, &req, Duration::from_secs_f64(args.wait)))?;
    let client = answer.client.as_str();
    if client != "feiq" && client != "pigeon" {
        eprintln!("pigeon: sent; {} runs {client}, which ignores shakes", super::clean(&answer.peer));
    }
    Ok(ExitCode::SUCCESS)
}
