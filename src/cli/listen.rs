//! `pigeon listen`: events as they happen — peers coming and going,
//! messages in and out, receipts — as text or JSON Lines.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use serde_json::Value;

use super::node::{runtime, Effective, Global};

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
        let print = |v: &Value| {
            if args.json {
                println!("{v}");
            } else {
                println!("{}", human(v));
            }
        };
        if let Ok(mut lines) = crate::control::listen(&sock).await {
            while let Some(l) = lines.next_line().await? {
                print(&serde_json::from_str(&l)?);
            }
            return Ok(ExitCode::SUCCESS);
        }
        // No daemon: be a node until interrupted (it answers entries, so peers see us).
        let (node, task) = eff.start_node(false)?;
        let mut rx = node.events.subscribe();
        loop {
            tokio::select! {
                e = rx.recv() => match e {
                    Ok(e) => crate::control::event_lines(&e).iter().for_each(print),
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

fn human(v: &Value) -> String {
    let s = |x: &Value| super::clean(x.as_str().unwrap_or("")).into_owned();
    let peer = |p: &Value| format!("{} ({}@{}, {})", s(&p["nick"]), s(&p["user"]), s(&p["host"]), s(&p["addr"]));
    match v["event"].as_str().unwrap_or("") {
        "peer_online" => format!("+ {} is online", peer(&v["peer"])),
        "peer_offline" => format!("- {} left", peer(&v["peer"])),
        "peer_changed" => {
            format!("~ {}{}", peer(&v["peer"]), if v["peer"]["away"] == true { " is away" } else { " changed" })
        }
        "offer" => "  (`pigeon offers` lists it, `pigeon fetch ID` fetches it)".to_string(),
        "message" | "sent" => {
            let who = if v["event"] == "message" {
                s(&v["from"]["nick"])
            } else if v["broadcast"] == true {
                "→ everyone".to_string()
            } else {
                let to: Vec<String> = v["to"].as_array().into_iter().flatten().map(|t| s(&t["peer"])).collect();
                format!("→ {}", to.join(", "))
            };
            let security = v["security"].as_str().and_then(pigeon_protocol::pubkey::Security::from_name);
            let mut out = format!(
                "{} {who}{}{}{}{}: {}",
                s(&v["time"]).get(11..19).unwrap_or(""),
                crate::term::security_mark(security),
                if v["broadcast"] == true && v["event"] == "message" { " [broadcast]" } else { "" },
                if v["sealed"] == true { " [sealed]" } else { "" },
                if v["auto"] == true { " [auto-reply]" } else { "" },
                s(&v["text"])
            );
            for a in v["attachments"].as_array().into_iter().flatten() {
                out.push_str(&format!("\n    {} {}{}", s(&a["kind"]), s(&a["name"]), super::files::size_note(a)));
            }
            out
        }
        "away" if v["away"].is_string() => format!("~ you are away: {}", s(&v["away"])),
        "away" => "~ you are back".to_string(),
        "receipt" => format!("  {} → {}", s(&v["peer"]), s(&v["status"])),
        "read" => format!("  {} read your message", s(&v["peer"])),
        "shake" => format!("! {} shakes your window", peer(&v["from"])),
        "key_changed" => format!(
            "! {} gave a NEW public key ({}): compare fingerprints with them (`pigeon keys`)",
            s(&v["peer"]),
            s(&v["fingerprint"])
        ),
        "send_failed" => format!("  {} → failed: {}", s(&v["peer"]), s(&v["reason"])),
        _ => v.to_string(),
    }
}
