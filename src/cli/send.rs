//! `pigeon send` and `pigeon broadcast`: messages with receipts, and
//! announcements without. `send` exits 0 only when every recipient
//! acknowledged; `--json` prints one result per recipient.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;

use super::client::request;
use super::text_arg;
use crate::control::api::{self, ApiError, Delivery, ErrorCode, SendAnswer, SendRequest};
use crate::node::{runtime, Effective, Global};

#[derive(Debug, Args)]
#[command(
    after_help = "TO is a nick, user@host, an IP address, group:NAME or all.\n\nExamples:\n  pigeon send Alice \"lunch at 12?\"\n  pigeon send group:QA bob@pc-bob \"build is green\" --json\n  echo \"report attached\" | pigeon send 192.168.1.20 -\n  pigeon send Alice --sealed \"the password is …\""
)]
pub struct SendArgs {
    /// Recipients, then the text (`-` reads the text from standard input)
    #[arg(required = true, num_args = 1.., value_name = "TO… TEXT")]
    pub args: Vec<String>,
    /// Seal the message: the recipient must open it, and you see when they do
    #[arg(long)]
    pub sealed: bool,
    /// Offer a file or folder (repeatable); served by the running daemon until
    /// fetched or expired. With files, TEXT may be left out for one recipient.
    #[arg(long = "file", value_name = "PATH")]
    pub files: Vec<std::path::PathBuf>,
    /// Seconds to wait for receipts (and, without a daemon, to discover peers first: 2 s)
    #[arg(long, default_value_t = 6.0, value_parser = super::parse_wait)]
    pub wait: f64,
    /// One JSON object per recipient: peer, nick, status (delivered|queued|failed)
    #[arg(long)]
    pub json: bool,
    /// Refuse a text longer than a recipient's client reads in one packet
    /// (iptux 8 KiB, FeiQ 4 KiB) instead of sending it in numbered parts
    #[arg(long)]
    pub no_split: bool,
}

pub fn run(g: &Global, args: &SendArgs) -> Result<ExitCode> {
    let eff = Effective::load(g)?;
    let (to, text) = if !args.files.is_empty() && args.args.len() == 1 {
        (&args.args[..], String::new())
    } else if args.args.len() < 2 {
        bail!("give at least one recipient and the text: pigeon send TO… TEXT");
    } else {
        let (to, text) = args.args.split_at(args.args.len() - 1);
        (to, text_arg(&text[0])?)
    };
    if text.is_empty() && args.files.is_empty() {
        bail!("the message is empty");
    }
    let mut files = Vec::new();
    for f in &args.files {
        // Checked here so that a typo is reported before anything is sent.
        let d = crate::transfer::describe(f)?;
        let p = d.path.to_string_lossy().into_owned();
        // The same file named twice (`x`, `./x`) is offered once.
        if !files.contains(&p) {
            files.push(p);
        }
    }
    let req = api::Request::Send(SendRequest {
        sealed: args.sealed,
        wait: Some(args.wait),
        // The text is the last word: the node refuses it if it names a peer.
        text_from_args: !files.is_empty() && args.args.len() > 1,
        split: Some(!args.no_split),
        files,
        ..SendRequest::new(to.to_vec(), text)
    });
    let answer: SendAnswer = if req_has_files(&req) {
        // Files are served by the daemon; a short-lived node could not serve them.
        let sock = eff.home.socket();
        let v = runtime()?.block_on(crate::control::call(&sock, &req)).map_err(|_| {
            ApiError::new(
                ErrorCode::NoDaemon,
                "offering files needs a running daemon to serve them: start `pigeon daemon` first",
            )
        })?;
        api::parse_answer(v)?
    } else {
        runtime()?.block_on(request(&eff, &req, Duration::from_secs(2)))?
    };
    let mut all = true;
    for r in &answer.results {
        all &= matches!(r.status, Delivery::Delivered | Delivery::Read);
        if args.json {
            println!("{}", serde_json::to_value(r)?);
        } else {
            let s = |t: &str| super::clean(t).into_owned();
            let parts = r.parts.as_ref().map_or(String::new(), |p| format!(" in {} parts", p.len()));
            println!("{:<10} {} ({}){parts}", r.status.name(), s(&r.nick), s(&r.peer));
            if let Some(reason) = &r.reason {
                eprintln!("pigeon: {}", s(reason));
            }
        }
    }
    Ok(if all { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  pigeon broadcast \"the office closes at 5 today\"\n  fortune | pigeon broadcast -"
)]
pub struct BroadcastArgs {
    /// The text (`-` reads standard input)
    pub text: String,
    /// Seconds to discover peers first when no daemon runs
    #[arg(long, default_value_t = 2.0, value_parser = super::parse_wait)]
    pub wait: f64,
}

pub fn run_broadcast(g: &Global, args: &BroadcastArgs) -> Result<ExitCode> {
    let eff = Effective::load(g)?;
    let text = text_arg(&args.text)?;
    if text.is_empty() {
        bail!("the message is empty");
    }
    let _: api::Done =
        runtime()?.block_on(request(&eff, &api::Request::Broadcast { text }, Duration::from_secs_f64(args.wait)))?;
    Ok(ExitCode::SUCCESS)
}

fn req_has_files(req: &api::Request) -> bool {
    matches!(req, api::Request::Send(s) if !s.files.is_empty())
}
