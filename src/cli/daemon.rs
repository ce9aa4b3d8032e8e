//! `pigeon daemon`: the node in the foreground, serving the control socket,
//! logging with tracing (`RUST_LOG`); leaves the LAN (BR_EXIT twice) on
//! Ctrl-C or SIGTERM.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::node::{runtime, Effective, Global};

#[derive(Debug, Args)]
#[command(after_help = "Example:\n  pigeon --home ~/.pigeon daemon\n  RUST_LOG=debug pigeon daemon")]
pub struct DaemonArgs {}

pub fn run(g: &Global, _args: &DaemonArgs) -> Result<ExitCode> {
    let eff = Effective::load(g)?;
    runtime()?.block_on(async {
        let sock = eff.home.socket();
        // Before anything goes on the wire: a second daemon of this identity
        // would announce it (and its exit) twice.
        if tokio::net::UnixStream::connect(&sock).await.is_ok() {
            anyhow::bail!("a Pigeon daemon already runs with this home ({} answers)", sock.display());
        }
        let (node, task) = eff.start_node(false)?;
        if let Some(line) = eff.first_run_line() {
            eprintln!("{line}");
        }
        tracing::info!(
            "pigeon daemon: {}@{} as {:?} on {}:{}, targets {:?}, control socket {}",
            eff.user,
            eff.host,
            eff.nick,
            eff.bind,
            eff.port,
            eff.targets,
            sock.display()
        );
        let server = tokio::spawn({
            let node = node.clone();
            let sock = sock.clone();
            async move { crate::control::serve(&sock, node).await }
        });
        spawn_auto_accept(&eff, &node);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: leaving"),
            _ = term.recv() => tracing::info!("terminated: leaving"),
            r = server => {
                node.shutdown().await;
                let _ = std::fs::remove_file(&sock);
                return match r { Ok(Err(e)) => Err(e), _ => Ok(ExitCode::FAILURE) };
            }
        }
        node.shutdown().await;
        let _ = task.await;
        let _ = std::fs::remove_file(&sock);
        Ok(ExitCode::SUCCESS)
    })
}

/// Fetches, unasked, the offers of the peers `auto_accept` names, into the
/// download folder, up to `auto_accept_max_mb`; off unless configured.
pub fn spawn_auto_accept(eff: &Effective, node: &crate::net::NodeHandle) {
    let allowed = eff.file.auto_accept.clone().unwrap_or_default();
    if allowed.is_empty() {
        return;
    }
    let limit = eff.file.auto_accept_max_mb.unwrap_or(100).saturating_mul(1 << 20);
    let into = eff.file.download_dir.clone().unwrap_or_else(super::files::download_dir);
    let db = eff.home.database();
    let mut events = node.events.subscribe();
    let eff = eff.clone();
    tokio::spawn(async move {
        loop {
            let m = match events.recv().await {
                Ok(crate::engine::Event::Message(m)) if !m.attachments.is_empty() => m,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            };
            let who = m.from.key.to_string();
            // user@host only (anyone can take a nick), and only from where
            // that peer was heard (engine: Incoming::verified).
            if !allowed.contains(&who) {
                continue;
            }
            if !m.verified {
                tracing::warn!(
                    "not accepting {who}'s offer automatically: it does not come from where {who} was heard"
                );
                continue;
            }
            let total = m.attachments.iter().try_fold(0u64, |t, a| t.checked_add(a.size));
            if total.is_none_or(|t| t > limit) {
                tracing::warn!("not accepting {who}'s offer automatically: more than auto_accept_max_mb");
                continue;
            }
            let Ok(packet_no) = m.packet_no.parse() else { continue };
            let src = super::files::source_for(
                &eff,
                &m.from.key.to_string(),
                m.from.addr,
                packet_no,
                m.command,
                m.from.client.name(),
            );
            let into = into.clone();
            let db = db.clone();
            tokio::task::spawn_blocking(move || {
                if let Err(e) = std::fs::create_dir_all(&into) {
                    tracing::error!("auto-accept: cannot create {}: {e}", into.display());
                    return;
                }
                for a in &m.attachments {
                    let item = crate::transfer::fetch::Item {
                        id: a.id,
                        name: a.name.clone(),
                        size: a.size,
                        mtime: a.mtime,
                        dir: a.attr.is_dir(),
                    };
                    match crate::transfer::fetch::fetch(&src, &item, &into, &mut |_| {}) {
                        Ok(p) => {
                            tracing::info!("auto-accepted {} from {who}: {}", a.name, p.display());
                            let k = &m.from.key;
                            crate::store::record_fetched(&db, &k.user, &k.host, &m.packet_no, a.id, &p);
                        }
                        Err(e) => tracing::warn!("auto-accept of {} from {who} failed: {e}", a.name),
                    }
                }
            });
        }
    });
}
