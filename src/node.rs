//! A node as every face starts it (the commands, the chat, the daemon):
//! the home and node flags, the effective configuration (file, then flags),
//! starting a node (a one-shot command's is short-lived: NOADDLISTOPT, a
//! discovery window, BR_EXIT at the end), and what a node does with offers:
//! where downloads go, how to ask a sender ([`source_for`]), fetching them
//! ([`fetch_offer`]) and auto-accept. How a command reaches a node through
//! the control API is the faces' (`cli::client`): this layer is below it.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use crate::config::{self, FileConfig, Home, Target};
use crate::engine;
use crate::net::{self, NodeHandle, NodeOptions};
use crate::store::Store;
use crate::transfer::fetch::{FetchError, Item, Progress, Source};

/// `--home` and the node's flags. Defined here once, at the top (the chat's,
/// and written before a subcommand); the command line copies into each
/// subcommand those that apply to it (`cli::command`, `cli::flags_of`).
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

    /// How long offers are served (`offer_expiry_days`): an offer to us
    /// older than this is taken for expired.
    pub fn offer_expiry(&self) -> chrono::Duration {
        chrono::Duration::days(i64::try_from(self.offer_expiry_days).unwrap_or(i64::MAX / 86_400_000))
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

/// A single-threaded runtime: a node is one task and a store thread.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("start the async runtime")
}

/// The default download folder: the user's Downloads/pigeon.
pub fn download_dir() -> PathBuf {
    directories::UserDirs::new()
        .and_then(|u| u.download_dir().map(|d| d.join("pigeon")))
        .or_else(|| directories::BaseDirs::new().map(|b| b.home_dir().join("Downloads").join("pigeon")))
        .unwrap_or_else(|| PathBuf::from("pigeon-downloads"))
}

/// How to fetch from a sender: its address, the offer, the charset its
/// folder names come in (by its client kind), and our identity.
/// How to fetch an offer from `sender` (`user@host`) at `addr`.
pub fn source_for(
    eff: &Effective,
    sender: &str,
    addr: std::net::SocketAddr,
    packet_no: u64,
    command: u32,
    client: &str,
) -> Source {
    let names = match client {
        "pigeon" | "iptux" => pigeon_protocol::Charset::Utf8,
        "feiq" => pigeon_protocol::Charset::Gbk,
        _ => eff.charset,
    };
    Source {
        addr,
        bind: Some(eff.bind),
        packet_no,
        utf8: pigeon_protocol::Command(command).has(pigeon_protocol::Opts::UTF8OPT),
        pigeon: client == "pigeon",
        client: pigeon_protocol::ClientKind::from_name(client),
        sender: sender.to_string(),
        names,
        version: eff.engine(false).version,
        user: eff.user.clone(),
        host: eff.host.clone(),
        sealed: sealed_for(eff, sender, client),
    }
}

/// How to fetch the offer of the stored message `m`: from the address it
/// came from, as its sender's client (as the store last saw it).
pub fn offer_source(eff: &Effective, store: &Store, m: &crate::store::MessageRecord) -> Result<Source> {
    let addr = m.peer.addr.parse().with_context(|| format!("the sender's address {:?} is not usable", m.peer.addr))?;
    let client = store
        .peers()?
        .into_iter()
        .find(|p| p.user == m.peer.user && p.host == m.peer.host)
        .map(|p| p.client)
        .unwrap_or_default();
    let packet_no = m.packet_no.parse().context("the offer's packet number is not a number")?;
    Ok(source_for(eff, &format!("{}@{}", m.peer.user, m.peer.host), addr, packet_no, m.command, &client))
}

/// How to ask `sender` for files with an encrypted, signed request (§7.7):
/// when we hold its 2048-bit key and it is a Pigeon, or a client whose
/// fingerprinted name matches that key (IP Messenger 3.x and later, who
/// alone make and take such requests). None: a plain request, as before.
fn sealed_for(eff: &Effective, sender: &str, client: &str) -> Option<crate::transfer::fetch::Sealed> {
    use pigeon_protocol::pubkey::{Capa, KeySize, PeerKey};
    let store = Store::open(&eff.home.database()).ok()?;
    let k = store.peer_keys().ok()?.into_iter().find(|k| format!("{}@{}", k.user, k.host) == sender)?;
    let theirs = PeerKey::from_parts(Capa(k.capa), &k.exponent, &k.modulus).ok()?;
    if theirs.size() != KeySize::Rsa2048 || !(client == "pigeon" || theirs.matches_user(&k.user)) {
        return None;
    }
    let ours = match crate::keys::read_existing(&eff.home.data_dir, KeySize::Rsa2048) {
        Ok(Some(k)) => k,
        Ok(None) => return None,
        Err(e) => {
            tracing::warn!("asking {sender} for files without encryption: {e:#}");
            return None;
        }
    };
    Some(crate::transfer::fetch::Sealed {
        ours: std::sync::Arc::new(ours),
        theirs,
        encrypt_body: eff.file.encrypt_file_bodies.unwrap_or(false),
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
    let into = eff.file.download_dir.clone().unwrap_or_else(download_dir);
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
            let Some(packet_no) = m.packet_no.number() else { continue };
            let src =
                source_for(&eff, &m.from.key.to_string(), m.from.addr, packet_no, m.command, m.from.client.name());
            let into = into.clone();
            let db = db.clone();
            tokio::task::spawn_blocking(move || {
                let items: Vec<Item> = m
                    .attachments
                    .iter()
                    .map(|a| Item {
                        id: a.id,
                        name: a.name.clone(),
                        size: a.size,
                        mtime: a.mtime,
                        dir: a.attr.is_dir(),
                    })
                    .collect();
                let k = &m.from.key;
                let offer = Offer {
                    src: &src,
                    from: (&k.user, &k.host),
                    packet_no: m.packet_no.as_str(),
                    into: &into,
                    db: &db,
                };
                fetch_offer(&offer, &items, false, &mut |p| {
                    if let OfferProgress::Done(item, result) = p {
                        match result {
                            Ok(p) => tracing::info!("auto-accepted {} from {who}: {}", item.name, p.display()),
                            Err(e) => tracing::warn!("auto-accept of {} from {who} failed: {e}", item.name),
                        }
                    }
                });
            });
        }
    });
}

/// What [`fetch_offer`] reports, file by file.
pub enum OfferProgress<'a> {
    /// A file starts.
    Item(&'a Item),
    /// Its progress (as [`crate::transfer::fetch::fetch`] reports it).
    Progress(&'a Item, Progress<'a>),
    /// It ended: where it was saved, or why not.
    Done(&'a Item, &'a Result<PathBuf, FetchError>),
}

/// An offer to fetch from: whom to ask, whose offer (user, host) and which,
/// where the files go, and the store that records them.
pub struct Offer<'a> {
    pub src: &'a Source,
    pub from: (&'a str, &'a str),
    pub packet_no: &'a str,
    pub into: &'a Path,
    pub db: &'a Path,
}

/// The files `items` of an offer, fetched in turn into `o.into` (created if
/// missing); each one fetched whole is recorded in the store (`pigeon
/// offers` shows where it went). Every face fetches this way: the
/// commands, the chat, auto-accept. With `stop_at_failure` the first
/// failure ends it (the chat); else every file is tried. Returns how many
/// failed.
pub fn fetch_offer(
    o: &Offer<'_>,
    items: &[Item],
    stop_at_failure: bool,
    report: &mut dyn FnMut(OfferProgress<'_>),
) -> usize {
    let Offer { src, from, packet_no, into, db } = *o;
    let mut failed = 0;
    for item in items {
        report(OfferProgress::Item(item));
        let result = std::fs::create_dir_all(into)
            .map_err(|e| {
                FetchError::Transfer(crate::transfer::TransferError::Io {
                    what: "cannot create",
                    path: into.to_path_buf(),
                    error: e,
                })
            })
            .and_then(|()| {
                crate::transfer::fetch::fetch(src, item, into, &mut |p| report(OfferProgress::Progress(item, p)))
            });
        if let Ok(path) = &result {
            crate::store::record_fetched(db, from.0, from.1, packet_no, item.id, path);
        }
        report(OfferProgress::Done(item, &result));
        if result.is_err() {
            failed += 1;
            if stop_at_failure {
                break;
            }
        }
    }
    failed
}
