//! `pigeon peers`: who is online, as a table or a JSON array.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Args;

use super::client::request;
use crate::control::api::{self, ApiError, ErrorCode, KeyState, PeersAnswer};
use crate::node::{runtime, Effective, Global};

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  pigeon peers\n  pigeon peers --refresh            # F5: drop who does not answer\n  pigeon peers --json | jq '.[].nick'"
)]
pub struct PeersArgs {
    /// Print a JSON array of peers (user, host, nick, group, addr, client, away; also: other addresses)
    #[arg(long)]
    pub json: bool,
    /// Seconds to listen for answers when no daemon runs
    #[arg(long, default_value_t = 2.0, value_parser = super::parse_wait)]
    pub wait: f64,
    /// IP Messenger's F5: announce ourselves again and drop the peers that
    /// do not answer (takes about 10 s; needs the daemon)
    #[arg(long)]
    pub refresh: bool,
}

pub fn run(g: &Global, args: &PeersArgs) -> Result<ExitCode> {
    let eff = Effective::load(g)?;
    let req = api::Request::Peers { refresh: args.refresh };
    let answer: PeersAnswer = if args.refresh {
        // A short-lived node knows nobody to drop: the daemon's list is refreshed.
        let v = runtime()?.block_on(crate::control::call(&eff.home.socket(), &req)).map_err(|_| {
            ApiError::new(
                ErrorCode::NoDaemon,
                "--refresh refreshes a running daemon's list; without one, `pigeon peers` asks afresh anyway",
            )
        })?;
        api::parse_answer(v)?
    } else {
        runtime()?.block_on(request(&eff, &req, Duration::from_secs_f64(args.wait)))?
    };
    let peers = answer.peers;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&peers)?);
        return Ok(ExitCode::SUCCESS);
    }
    if peers.is_empty() {
        eprintln!("nobody answered (is UDP {} open? see `pigeon config` for the broadcast targets)", eff.port);
        return Ok(ExitCode::SUCCESS);
    }
    let width =
        |f: fn(&api::PeerInfoView) -> &str| peers.iter().map(|p| super::display_width(f(&p.info))).max().unwrap_or(0);
    let (wn, wg) = (width(|p| &p.nick).max(4), width(|p| &p.group).max(5));
    println!("{}  {}  {:<21}  {:<7}  USER@HOST", super::pad("NICK", wn), super::pad("GROUP", wg), "ADDRESS", "CLIENT");
    for p in &peers {
        let s = |t: &str| super::clean(t).into_owned();
        let i = &p.info;
        let away = if i.away { "  (away)" } else { "" };
        let also: Vec<String> = p.also.iter().map(|a| s(a)).collect();
        let also = if also.is_empty() { String::new() } else { format!("  (also at {})", also.join(", ")) };
        let key = if p.key == Some(KeyState::Changed) { "  (KEY CHANGED: `pigeon keys`)" } else { "" };
        println!(
            "{}  {}  {:<21}  {:<7}  {}@{}{away}{also}{key}",
            super::pad(&s(&i.nick), wn),
            super::pad(&s(&i.group), wg),
            s(&i.addr),
            s(&i.client),
            s(&i.user),
            s(&i.host)
        );
    }
    Ok(ExitCode::SUCCESS)
}
