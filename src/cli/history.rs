//! `pigeon history`: every message in and out, from the store, filtered by
//! peer, full-text search and date; exported as JSON Lines or text.

use std::process::ExitCode;

use crate::control::api;
use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

use crate::node::{Effective, Global};
use crate::store::{Direction, HistoryQuery, MessageRecord, Store};

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  pigeon history Alice --limit 20\n  pigeon history --search \"测试 report\" --since 2026-11-01\n  pigeon history --export jsonl > all.jsonl"
)]
pub struct HistoryArgs {
    /// Only messages with this peer (user@host, or a nick seen in history); `everyone`: the broadcasts
    pub peer: Option<String>,
    /// Full-text search
    #[arg(long)]
    pub search: Option<String>,
    /// Only messages since this date or time (2026-11-01, 2026-11-01T09:00)
    #[arg(long)]
    pub since: Option<String>,
    /// At most this many (the newest)
    #[arg(long, conflicts_with = "export")]
    pub limit: Option<usize>,
    /// JSON Lines
    #[arg(long, conflicts_with = "export")]
    pub json: bool,
    /// Everything matching, in this format (jsonl is what --json prints)
    #[arg(long, value_enum)]
    pub export: Option<Export>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Export {
    Jsonl,
    Text,
}

fn parse_since(s: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    use chrono::{Local, NaiveDate, NaiveDateTime, TimeZone};
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.into());
    }
    let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M"))
        .or_else(|_| NaiveDate::parse_from_str(s, "%Y-%m-%d").map(|d| d.and_hms_opt(0, 0, 0).expect("midnight")))
        .with_context(|| format!("--since {s:?}: use 2026-11-01 or 2026-11-01T09:00"))?;
    Ok(Local.from_local_datetime(&naive).earliest().context("that local time does not exist")?.into())
}

/// A broadcast we sent: one record, to everyone.
fn everyone(m: &MessageRecord) -> bool {
    m.direction == Direction::Out && m.broadcast() && m.peer.user == "*" && m.peer.host == "*"
}

/// A stored message as `history --json` prints it ([`api::HistoryEntry`]).
pub fn record_json(m: &MessageRecord) -> serde_json::Value {
    serde_json::to_value(api::HistoryEntry::from_record(m)).expect("plain data")
}

pub fn run(g: &Global, args: &HistoryArgs) -> Result<ExitCode> {
    let eff = Effective::load(g)?;
    let db = eff.home.database();
    if !db.exists() {
        // Nothing to show is not an error.
        eprintln!("no history yet ({} does not exist)", super::clean_path(&db));
        return Ok(ExitCode::SUCCESS);
    }
    let store = Store::open(&db)?;
    let mut q = HistoryQuery {
        search: args.search.clone(),
        since: args.since.as_deref().map(parse_since).transpose()?,
        limit: if args.export.is_some() { None } else { Some(args.limit.unwrap_or(50)) },
        ..Default::default()
    };
    if let Some(p) = &args.peer {
        q.peer = match p.split_once('@') {
            Some((u, h)) => Some((u.to_string(), h.to_string())),
            None => {
                // A nick: the peer whose nick it is in the store; `everyone`:
                // the broadcasts, ours and others'.
                let peers = store.peers()?;
                let found = peers.iter().find(|r| r.nick.eq_ignore_ascii_case(p) || r.user.eq_ignore_ascii_case(p));
                match found {
                    Some(r) => Some((r.user.clone(), r.host.clone())),
                    None if p.eq_ignore_ascii_case("everyone") => {
                        q.broadcast_only = true;
                        None
                    }
                    None => {
                        anyhow::bail!("no peer called {p:?} in history (use user@host, or everyone for broadcasts)")
                    }
                }
            }
        };
    }
    let rows = store.history(&q)?;
    let json = args.json || matches!(args.export, Some(Export::Jsonl));
    for m in &rows {
        if json {
            println!("{}", record_json(m));
        } else {
            let arrow = if m.direction == Direction::In { "←" } else { "→" };
            let marks = format!(
                "{}{}{}{}",
                crate::term::security_mark(m.security),
                if m.sealed() { " [sealed]" } else { "" },
                if m.broadcast() { " [broadcast]" } else { "" },
                if m.is_auto_reply() { " [auto-reply]" } else { "" }
            );
            let time = m.time.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S");
            if everyone(m) {
                println!("{time} {arrow} everyone{marks}: {}", super::clean(&m.text));
            } else {
                println!(
                    "{time} {arrow} {} ({}@{}){marks} [{}]: {}",
                    super::clean(&m.peer.nick),
                    super::clean(&m.peer.user),
                    super::clean(&m.peer.host),
                    m.state.as_str(),
                    super::clean(&m.text)
                );
            }
            let files = m.attachments_json.as_deref().map(api::AttachmentView::from_column).unwrap_or_default();
            for a in &files {
                println!("    {} {}{}", kind_name(a), super::clean(&a.name), super::files::size_note(a));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `file` or `dir`, as the listings show it.
pub fn kind_name(a: &api::AttachmentView) -> &'static str {
    if a.is_dir() {
        "dir"
    } else {
        "file"
    }
}
