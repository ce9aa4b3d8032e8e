//! How a one-shot command reaches a node through the control API: the
//! daemon's socket if one answers on this home, else a short-lived node of
//! its own ([`request`]); and the running daemon's identity ([`daemon_me`]).

use std::time::Duration;

use anyhow::Result;

use crate::control::api;
use crate::node::Effective;

/// The running daemon's identity and state (`me` of the control API), if
/// a daemon answers on this home's socket.
pub async fn daemon_me(eff: &Effective) -> Option<crate::net::Me> {
    let sock = eff.home.socket();
    if !sock.exists() {
        return None;
    }
    let call = crate::control::call_for::<api::MeAnswer>(&sock, &api::Request::Me);
    Some(tokio::time::timeout(Duration::from_secs(5), call).await.ok()?.ok()?.me)
}

/// Says on stderr which identity flags a running daemon does not take
/// (`--nick`, `--user`, `--port` given to a command that goes through it).
fn say_ignored_flags(eff: &Effective, me: &crate::net::Me) {
    let mut ignored = Vec::new();
    if let Some(n) = &eff.flags.nick {
        if &me.nick != n {
            ignored.push(format!("--nick {n}"));
        }
    }
    if let Some(u) = &eff.flags.user {
        if &me.user != u {
            ignored.push(format!("--user {u}"));
        }
    }
    if let Some(p) = eff.flags.port {
        if me.port != p {
            ignored.push(format!("--port {p}"));
        }
    }
    if !ignored.is_empty() {
        eprintln!(
            "pigeon: {} ignored: the running daemon is {}@{} (\"{}\", port {}); restart it with the flag, or set it in {}",
            ignored.join(", "),
            crate::term::clean(&me.user),
            crate::term::clean(&me.host),
            crate::term::clean(&me.nick),
            me.port,
            eff.home.config_file().display()
        );
    }
}

/// Runs a control request: through the daemon if one answers on this home's
/// socket, else on a short-lived node after a discovery window. The
/// answer's body, or its [`api::ApiError`] (which gives the exit code).
pub async fn request<T: serde::de::DeserializeOwned>(
    eff: &Effective,
    req: &api::Request,
    discovery: Duration,
) -> Result<T> {
    let sock = eff.home.socket();
    if sock.exists() {
        if let Ok(v) = crate::control::call(&sock, req).await {
            if eff.flags.any() {
                if let Some(me) = daemon_me(eff).await {
                    say_ignored_flags(eff, &me);
                }
            }
            return Ok(api::parse_answer(v)?);
        }
    }
    let (node, task) = eff.start_node(true)?;
    tokio::time::sleep(discovery).await;
    let unreachable: Vec<String> = {
        let errors = node.send_errors.lock().map(|e| e.clone()).unwrap_or_default();
        eff.targets.iter().filter_map(|t| errors.get(t).map(|e| format!("{t}: {e}"))).collect()
    };
    if !eff.targets.is_empty()
        && unreachable.len() == eff.targets.len()
        && !node.peers().await?.iter().any(|p| p.online)
    {
        node.shutdown().await;
        let _ = tokio::time::timeout(Duration::from_secs(3), task).await;
        let error = format!("no network: could not send to any broadcast target ({})", unreachable.join("; "));
        return Err(api::ApiError::new(api::ErrorCode::NoNetwork, error).into());
    }
    let answer = crate::control::answer(req, &node).await;
    node.shutdown().await;
    let _ = tokio::time::timeout(Duration::from_secs(3), task).await;
    Ok(api::parse_answer(answer.unwrap_or_else(|e| api::ApiError::from_anyhow(&e).to_json()))?)
}
