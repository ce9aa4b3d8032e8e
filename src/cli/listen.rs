//! `pigeon listen`: events as they happen — peers coming and going,
//! messages in and out, receipts — as text or JSON Lines.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use crate::control::api;
use crate::node::{runtime, Effective, Global};

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  pigeon listen\n  pigeon listen --json | jq -c 'select(.event == \"message\")'")]
pub struct ListenArgs {
    /// JSON Lines, each with an `event` field
    #[arg(long)]
    pub json: bool,
}

pub fn run(g: &Global, args: &ListenArgs) -> Result<ExitCode> {
    let eff = Effective::load(g)?;
    runtime()?.block_on(async {
        let sock = eff.home.socket();
        let print = |e: &api::Event| {
            if args.json {
                println!("{}", e.to_json());
            } else {
                println!("{}", human(e));
            }
        };
        if let Ok(mut lines) = crate::control::listen(&sock).await {
            while let Some(l) = lines.next_line().await? {
                match serde_json::from_str::<api::Event>(&l) {
                    Ok(e) => print(&e),
                    // An event this version does not know (a newer daemon): as it came.
                    Err(_) => println!("{}", if args.json { l } else { super::clean(&l).into_owned() }),
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        // No daemon: be a node until interrupted (it answers entries, so peers see us).
        let (node, task) = eff.start_node(false)?;
        let mut rx = node.events.subscribe();
        loop {
            tokio::select! {
                e = rx.recv() => match e {
                    Ok(e) => api::Event::from_engine(&e).iter().for_each(print),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => break,
                },
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        node.shutdown().await;
        let _ = task.await;
        Ok(ExitCode::SUCCESS)
    })
}

fn human(e: &api::Event) -> String {
    use api::Event as E;
    let s = |x: &str| super::clean(x).into_owned();
    let peer = |p: &api::PeerInfoView| format!("{} ({}@{}, {})", s(&p.nick), s(&p.user), s(&p.host), s(&p.addr));
    let files = |list: &[api::AttachmentView]| {
        list.iter()
            .map(|a| {
                let kind = if a.is_dir() { "dir" } else { "file" };
                let size = if a.is_dir() && a.size == 0 {
                    String::new()
                } else {
                    format!("  ({})", crate::term::human_size(a.size))
                };
                format!("\n    {kind} {}{size}", s(&a.name))
            })
            .collect::<String>()
    };
    let line = |time: &str, who: String, mark: &str, text: &str| {
        format!("{} {who}{mark}: {}", time.get(11..19).unwrap_or(""), s(text))
    };
    match e {
        E::PeerOnline { peer: p } => format!("+ {} is online", peer(p)),
        E::PeerOffline { peer: p } => format!("- {} left", peer(p)),
        E::PeerChanged { peer: p } => format!("~ {}{}", peer(p), if p.away { " is away" } else { " changed" }),
        E::Offer(_) => "  (`pigeon offers` lists it, `pigeon fetch ID` fetches it)".to_string(),
        E::Message(v) => {
            let m = &v.body;
            let mark = format!(
                "{}{}{}{}",
                crate::term::security_mark(Some(v.security.into())),
                if m.broadcast { " [broadcast]" } else { "" },
                if m.sealed { " [sealed]" } else { "" },
                if m.auto { " [auto-reply]" } else { "" },
            );
            line(&m.time, s(&v.from.nick), &mark, &m.text) + &files(&m.attachments)
        }
        E::Sent(v) => {
            let m = &v.body;
            let who = if m.broadcast {
                "→ everyone".to_string()
            } else {
                let to: Vec<String> = v.to.iter().map(|t| s(&t.peer)).collect();
                format!("→ {}", to.join(", "))
            };
            let mark =
                format!("{}{}", if m.sealed { " [sealed]" } else { "" }, if m.auto { " [auto-reply]" } else { "" });
            line(&m.time, who, &mark, &m.text) + &files(&m.attachments)
        }
        E::Away { away: Some(text) } => format!("~ you are away: {}", s(text)),
        E::Away { away: None } => "~ you are back".to_string(),
        E::Receipt { peer, status, .. } => format!("  {} → {}", s(peer), status.name()),
        E::Read { peer, .. } => format!("  {} read your message", s(peer)),
        E::Shake { from } => format!("! {} shakes your window", peer(from)),
        E::KeyChanged { peer, fingerprint } => format!(
            "! {} gave a NEW public key ({}): compare fingerprints with them (`pigeon keys`)",
            s(peer),
            s(fingerprint)
        ),
        E::SendFailed { peer, reason, .. } => format!("  {} → failed: {}", s(peer), s(reason)),
        E::Info { .. } | E::Lagged { .. } => e.to_json().to_string(),
    }
}
