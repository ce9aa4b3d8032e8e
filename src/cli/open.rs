//! `pigeon open`: opens a sealed message — prints it and sends the sender
//! its read receipt (READMSG). Without a packet number, lists the sealed
//! messages not yet opened.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;

use super::client::request;
use crate::control::api;
use crate::node::{runtime, Effective, Global};
use crate::store::{Direction, HistoryQuery, MessageState, Store};

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  pigeon open                 # list sealed messages not yet opened\n  pigeon open 1795313923      # open one (the sender sees it was read)"
)]
pub struct OpenArgs {
    /// The packet number of the message (as `pigeon history --json` or `listen` show it)
    pub packet_no: Option<String>,
    /// The sender (user@host), when two peers used the same packet number
    #[arg(long)]
    pub from: Option<String>,
}

pub fn run(g: &Global, args: &OpenArgs) -> Result<ExitCode> {
    let eff = Effective::load(g)?;
    let store = Store::open(&eff.home.database())?;
    let sealed: Vec<_> = store
        .history(&HistoryQuery::default())?
        .into_iter()
        .filter(|m| m.direction == Direction::In && m.sealed())
        .collect();
    let Some(no) = &args.packet_no else {
        let unread: Vec<_> = sealed.iter().filter(|m| m.state == MessageState::Unread).collect();
        if unread.is_empty() {
            println!("no sealed message waits to be opened");
        }
        for m in unread {
            println!(
                "{}  from {} ({}@{})  packet {}",
                m.time.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M"),
                super::clean(&m.peer.nick),
                super::clean(&m.peer.user),
                super::clean(&m.peer.host),
                super::clean(&m.packet_no)
            );
        }
        return Ok(ExitCode::SUCCESS);
    };
    let matching: Vec<_> = sealed
        .iter()
        .filter(|m| &m.packet_no == no)
        .filter(|m| args.from.as_ref().is_none_or(|f| *f == format!("{}@{}", m.peer.user, m.peer.host)))
        .collect();
    let m = match matching.as_slice() {
        [m] => *m,
        [] => bail!("no sealed message with packet number {no} in history"),
        _ => bail!("several peers sent a sealed message numbered {no}; say which with --from user@host"),
    };
    if m.state != MessageState::Unread {
        // Opened before: its sender has the read receipt already.
        println!("{}", super::clean(&m.text));
        eprintln!("pigeon: opened before; no second read receipt");
        return Ok(ExitCode::SUCCESS);
    }
    let read_check = pigeon_protocol::Command(m.command).has(pigeon_protocol::Opts::READCHECKOPT);
    let req = api::Request::Open {
        user: m.peer.user.clone(),
        host: m.peer.host.clone(),
        packet_no: m.packet_no.clone(),
        read_check: Some(read_check),
    };
    let _: api::Done = runtime()?.block_on(request(&eff, &req, Duration::from_secs(2)))?;
    println!("{}", super::clean(&m.text));
    Ok(ExitCode::SUCCESS)
}
