//! `pigeon doctor`: runs the checks of [`crate::doctor`] for this home and
//! prints them, grouped by area, or as JSON. Exit 0 when all is well, 1
//! when something needs attention.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use serde_json::json;

use crate::doctor::{self, Finding, KnownPeer, Setup, Status};
use crate::node::{Effective, Global};

#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: 0 when all is well, 1 when a finding needs attention (warn or fail), 2 when the doctor itself could not run.\n\nExamples:\n  pigeon doctor\n  sudo pigeon doctor          (reads the firewall rules too)\n  pigeon doctor --json | jq '.findings[] | select(.status != \"ok\")'"
)]
pub struct DoctorArgs {
    /// Print the findings as JSON
    #[arg(long)]
    pub json: bool,
    /// Seconds to wait for peers to answer
    #[arg(long, default_value = "1.5", value_parser = super::parse_wait)]
    pub wait: f64,
}

pub fn run(g: &Global, args: &DoctorArgs) -> Result<ExitCode> {
    let eff = Effective::load(g)?;
    let daemon = daemon_pid(&eff);
    let peers = known_peers(&eff);
    let setup = Setup {
        home: eff.home.clone(),
        port: eff.port,
        bind: eff.bind,
        targets: eff.targets.clone(),
        probe: eff.probe.clone(),
        user: "pigeon-doctor".into(),
        host: eff.host.clone(),
        download_dir: eff.file.download_dir.clone().unwrap_or_else(crate::node::download_dir),
        daemon,
        peers,
        window: Duration::from_secs_f64(args.wait),
    };
    let findings = doctor::examine(&setup);
    let problems = findings.iter().filter(|f| f.status >= Status::Warn).count();
    if args.json {
        let v = json!({"ok": problems == 0, "problems": problems, "findings": findings});
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_human(&findings, problems);
    }
    Ok(if problems == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn print_human(findings: &[Finding], problems: usize) {
    let mut area = None;
    for f in findings {
        if area != Some(f.area) {
            if area.is_some() {
                println!();
            }
            println!("{}", f.area.title());
            area = Some(f.area);
        }
        let mark = match f.status {
            Status::Ok => "ok  ",
            Status::Info => "note",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        };
        println!("  {mark}  {}", super::clean(&f.summary));
        if let Some(a) = &f.advice {
            if f.status != Status::Ok {
                println!("        → {}", super::clean(a));
            }
        }
    }
    println!();
    match problems {
        0 => println!("all is well"),
        1 => println!("1 problem"),
        n => println!("{n} problems"),
    }
}

/// The process id of this home's daemon, if its socket answers.
fn daemon_pid(eff: &Effective) -> Option<u32> {
    let sock = eff.home.socket();
    if !sock.exists() {
        return None;
    }
    let rt = crate::node::runtime().ok()?;
    let call = crate::control::call_for::<crate::control::api::PingAnswer>(&sock, &crate::control::api::Request::Ping);
    let v = rt.block_on(async { tokio::time::timeout(Duration::from_secs(3), call).await });
    Some(v.ok()?.ok()?.pid)
}

/// Peers heard in the last 30 days, from the history (never creating it).
fn known_peers(eff: &Effective) -> Vec<KnownPeer> {
    let db = eff.home.database();
    if !db.exists() {
        return Vec::new();
    }
    let Ok(store) = crate::store::Store::open(&db) else { return Vec::new() };
    let since = chrono::Utc::now() - chrono::Duration::days(30);
    store
        .recent_peers(256)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.last_seen >= since)
        .filter_map(|p| {
            let addr = p.addr.parse().ok()?;
            let name = if p.nick.is_empty() {
                format!("{}@{}", p.user, p.host)
            } else {
                format!("{} ({}@{})", p.nick, p.user, p.host)
            };
            Some(KnownPeer { name, addr })
        })
        .collect()
}
