//! What every networked command shares: the home and node flags, the effective
//! configuration (file, then flags), and how a one-shot command reaches a
//! node — the daemon's control socket if one answers, else a short-lived
//! node of its own (NOADDLISTOPT, a discovery window, BR_EXIT at the end).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use crate::config::{self, FileConfig, Home, Target};
use crate::control::api;
use crate::engine;
use crate::net::{self, NodeHandle, NodeOptions};
use crate::store::Store;

/// `--home` and the node's flags. Defined here once, at the top (the chat's,
/// and written before a subcommand); [`super::command`] copies into each
/// subcommand those that apply to it ([`super::flags_of`]).
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Directory holding this identity's config, history and socket [env: PIGEON_HOME]
    #[arg(long, value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// UDP/TCP port (peers use 2425)
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// Local address to bind (default 0.0.0.0)
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<IpAddr>,
    /// Presence target; repeatable; replaces 255.255.255.255 and the interfaces' broadcasts
    #[arg(long = "broadcast", value_name = "ADDR")]
    pub broadcast: Vec<String>,
    /// Nick shown to others (overrides config.toml)
    #[arg(long)]
    pub nick: Option<String>,
    /// User name on the wire (overrides config.toml; default: the login name)
    #[arg(long)]
    pub user: Option<String>,
}

/// The configuration in force, with where each value came from.
#[derive(Debug, Clone)]
pub struct Effective {
    pub home: Home,
    pub file: FileConfig,
    pub user: String,
    pub host: String,
    pub nick: String,
    pub group: String,
    pub charset: pigeon_protocol::Charset,
    pub port: u16,
    pub bind: IpAddr,
    pub targets: Vec<SocketAddr>,
    pub probe: Vec<SocketAddr>,
    pub away: Option<String>,
    pub outbox_expiry_days: u64,
    pub offer_expiry_days: u64,
    /// Targets given with `--broadcast` (replacing the defaults).
    pub explicit_targets: bool,
    /// Identity flags given on the command line (a running daemon keeps its own).
    pub flags: IdentityFlags,
}

/// `--nick`, `--user`, `--port` as given.
#[derive(Debug, Clone, Default)]
pub struct IdentityFlags {
    pub nick: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
}

impl IdentityFlags {
    pub fn any(&self) -> bool {
        self.nick.is_some() || self.user.is_some() || self.port.is_some()
    }
}

impl Effective {
    /// Reads `config.toml` of the home and applies the flags.
    pub fn load(g: &Global) -> Result<Effective> {
        let home = Home::resolve(g.home.as_deref())?;
        let file = FileConfig::load(&home.config_file())?;
        // Neither the flag's parser nor FileConfig::load lets a port 0 through.
        let port = g.port.or(file.port).unwrap_or(2425);
        let user = pigeon_protocol::packet::sanitize_name(
            &g.user.clone().or(file.user.clone()).unwrap_or_else(config::login_name),
        );
        let host = pigeon_protocol::packet::sanitize_name(&file.host.clone().unwrap_or_else(config::host_name));
        let nick = g.nick.clone().or(file.nick.clone()).unwrap_or_else(|| user.clone());
        let charset = config::charset(file.charset.as_deref().unwrap_or("gbk"))?;
        let mut targets = Vec::new();
        let mut probe = Vec::new();
        let explicit = !g.broadcast.is_empty();
        let listed: Vec<String> = if explicit { g.broadcast.clone() } else { file.targets.clone().unwrap_or_default() };
        for t in &listed {
            match Target::parse(t, port)? {
                Target::Host(a) => targets.push(a),
                r @ Target::Range { .. } => probe.extend(r.addresses()),
            }
        }
        if !explicit {
            for t in net::default_targets(port) {
                if !targets.contains(&t) {
                    targets.insert(0, t);
                }
            }
        }
        Ok(Effective {
            home,
            group: file.group.clone().unwrap_or_default(),
            away: file.away.clone(),
            outbox_expiry_days: file.outbox_expiry_days.unwrap_or(7).min(3650),
            offer_expiry_days: file.offer_expiry_days.unwrap_or(7).min(3650),
            file,
            user,
            host,
            nick,
            charset,
            port,
            bind: g.bind.unwrap_or(IpAddr::from([0, 0, 0, 0])),
            targets,
            probe,
            explicit_targets: explicit,
            flags: IdentityFlags {
                nick: g.nick.clone(),
                user: g.user.as_deref().map(pigeon_protocol::packet::sanitize_name),
                port: g.port,
            },
        })
    }

    /// The line a node says when it starts without a configuration file on
    /// a machine with more than one network: where it announces itself and
    /// how to change that.
    pub fn first_run_line(&self) -> Option<String> {
        if self.explicit_targets || self.home.config_file().exists() || !self.bind.is_unspecified() {
            return None;
        }
        net::interfaces::first_run_line(&net::interfaces::list(), &self.targets, &self.home.config_file())
    }

    /// The engine configuration for a node of this identity.
    pub fn engine(&self, oneshot: bool) -> engine::Config {
        let mut c = engine::Config::new(&self.user, &self.host, &self.nick);
        c.group = self.group.clone();
        c.legacy = self.charset;
        c.targets = self.targets.clone();
        c.port = self.port;
        c.oneshot = oneshot;
        c.away = self.away.clone();
        c.outbox_expiry = Duration::from_secs(self.outbox_expiry_days * 24 * 3600);
        c.offer_expiry = Duration::from_secs(self.offer_expiry_days * 24 * 3600);
        c.seed = fastrand::u64(..);
        c.require_encryption = self.file.require_encryption.unwrap_or(false);
        c.plaintext_fallback = self.file.plaintext_fallback.unwrap_or(false);
        c
    }

    /// Opens this identity's database (creating the home).
    pub fn store(&self) -> Result<Store> {
        self.home.create()?;
        Ok(Store::open(&self.home.database())?)
    }

    /// Starts a node of this identity on the current runtime.
    pub fn start_node(&self, oneshot: bool) -> Result<(NodeHandle, tokio::task::JoinHandle<()>)> {
        let store = self.store()?;
        let retention = crate::store::Retention {
            per_stranger: self.file.history_strangers_per_peer.unwrap_or(1_000),
            strangers: self.file.history_strangers_total.unwrap_or(100_000),
            ..Default::default()
        };
        // Our key pairs (made on the first start, before the entry goes
        // out): with them the node announces and speaks encryption.
        let mut engine = self.engine(oneshot);
        engine.keys = Some(std::sync::Arc::new(crate::keys::load_or_create(&self.home.data_dir)?));
        net::start(
            NodeOptions {
                engine,
                bind: self.bind,
                probe: self.probe.clone(),
                retention,
                pictures: Some(self.home.data_dir.join("pictures")),
            },
            store,
        )
    }
}

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
            crate::cli::clean(&me.user),
            crate::cli::clean(&me.host),
            crate::cli::clean(&me.nick),
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

/// A single-threaded runtime: a node is one task and a store thread.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("start the async runtime")
}

/// The text argument, or standard input for `-`.
pub fn text_arg(t: &str) -> Result<String> {
    if t == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).context("cannot read standard input")?;
        Ok(s.trim_end_matches('\n').to_string())
    } else {
        Ok(t.to_string())
    }
}
