//! `pigeon daemon`: the node in the foreground, serving the control socket
//! and the web UI, logging with tracing (`RUST_LOG`); leaves the LAN
//! (BR_EXIT twice) on Ctrl-C or SIGTERM.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use crate::node::{runtime, Effective, Global};

#[derive(Debug, Args)]
#[command(after_help = "Example:\n  pigeon --home ~/.pigeon daemon\n  RUST_LOG=debug pigeon daemon")]
pub struct DaemonArgs {}

pub fn run(g: &Global, _args: &DaemonArgs) -> Result<ExitCode> {
    let eff = Effective::load(g)?;
    runtime()?.block_on(serve(&eff, |_| Ok(())))
}

/// Runs the node until Ctrl-C or SIGTERM: the control socket, the web UI
/// (`ready` is told how it runs, and may stop the node by failing), and
/// auto-accept. `pigeon daemon`, and `pigeon web` when no daemon runs.
pub async fn serve(eff: &Effective, ready: impl FnOnce(&crate::web::Status) -> Result<()>) -> Result<ExitCode> {
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
    let web = crate::web::start(eff, &node).await;
    let server = tokio::spawn({
        let node = node.clone();
        let sock = sock.clone();
        let web = web.clone();
        async move { crate::control::serve(&sock, node, web).await }
    });
    crate::node::spawn_auto_accept(eff, &node);
    let leave = |node: crate::net::NodeHandle, sock: std::path::PathBuf| async move {
        node.shutdown().await;
        let _ = std::fs::remove_file(&sock);
    };
    if let Err(e) = ready(&web) {
        leave(node, sock).await;
        let _ = task.await;
        return Err(e);
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: leaving"),
        _ = term.recv() => tracing::info!("terminated: leaving"),
        r = server => {
            leave(node, sock).await;
            return match r { Ok(Err(e)) => Err(e), _ => Ok(ExitCode::FAILURE) };
        }
    }
    node.shutdown().await;
    let _ = task.await;
    let _ = std::fs::remove_file(&sock);
    Ok(ExitCode::SUCCESS)
}
