//! `pigeon web`: the address of the web UI the daemon serves (token
//! included), opened in the desktop's browser; with no daemon running,
//! this process becomes the node (as `pigeon daemon`) until Ctrl-C.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use crate::control::api;
use crate::node::{runtime, Effective, Global};

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  pigeon web\n  pigeon web --url\n  pigeon web --no-open")]
pub struct WebArgs {
    /// Print only the address (token included) and open nothing
    #[arg(long)]
    pub url: bool,
    /// Print the address but do not open a browser
    #[arg(long)]
    pub no_open: bool,
}

pub fn run(g: &Global, args: &WebArgs) -> Result<ExitCode> {
    let eff = Effective::load(g)?;
    runtime()?.block_on(async {
        let sock = eff.home.socket();
        if sock.exists() {
            if let Ok(v) = crate::control::call(&sock, &api::Request::Web).await {
                let a: api::WebAnswer = api::parse_answer(v)?;
                show(&eff, &a.url, args, false);
                return Ok(ExitCode::SUCCESS);
            }
        }
        // No daemon: this process is the node until Ctrl-C.
        super::daemon::serve(&eff, |web| match web {
            Ok(url) => {
                show(&eff, url, args, true);
                Ok(())
            }
            Err(why) => Err(anyhow::anyhow!("{why}")),
        })
        .await
    })
}

fn show(eff: &Effective, url: &str, args: &WebArgs, own_node: bool) {
    let mut out = std::io::stdout().lock();
    if args.url {
        let _ = writeln!(out, "{url}");
        let _ = out.flush();
        return;
    }
    let _ = writeln!(out, "Pigeon's web UI: {url}");
    if !args.no_open {
        match open_browser(&eff.home.runtime_dir, url) {
            Ok(true) => {
                let _ = writeln!(out, "opened in your browser");
            }
            Ok(false) => {
                let _ = writeln!(out, "open it in a browser on this machine (no desktop session here)");
            }
            Err(e) => {
                let _ = writeln!(out, "open it in a browser ({e:#})");
            }
        }
    }
    if own_node {
        let _ =
            writeln!(out, "no daemon runs: this process is the node until Ctrl-C (`pigeon daemon` keeps one running)");
    }
    let _ = out.flush();
}

/// Opens `url` with the desktop's opener, where a desktop session runs.
/// The token does not go on a command line (others can read those): the
/// opener gets a page of ours (0600) that forwards to the address.
fn open_browser(dir: &Path, url: &str) -> Result<bool> {
    let desktop = std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some();
    if !desktop {
        return Ok(false);
    }
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let page = dir.join("web-open.html");
    let _ = std::fs::remove_file(&page);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&page)
        .with_context(|| format!("cannot create {}", page.display()))?;
    let escaped = url.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;");
    writeln!(
        f,
        "<!doctype html><meta charset=utf-8><meta http-equiv=\"refresh\" content=\"0;url={escaped}\">\
         <title>Pigeon</title><a href=\"{escaped}\">Pigeon</a>"
    )?;
    std::process::Command::new("xdg-open")
        .arg(&page)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("cannot run xdg-open")?;
    Ok(true)
}
