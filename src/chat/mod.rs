//! `pigeon chat` (and `pigeon` alone): the interactive terminal chat.
//!
//! Owns the terminal (raw mode, alternate screen, bracketed paste, the
//! mouse when asked; restored on exit, on panic and on SIGTERM/SIGHUP) and
//! the event loop. It is a client of the control API like the one-shot
//! commands: it talks to the daemon's socket when one answers, else it
//! runs a node of its own and serves the socket itself (so `pigeon send`
//! from another terminal goes through it). Requests, answers and events
//! are the API's types either way (JSON lines on the daemon's socket; an
//! own node's events are converted directly); history is read from the
//! store. Unsent drafts are kept between runs in `drafts.json` beside the
//! database.
//!
//! The [`app`] does no I/O: this driver carries out the [`Action`]s it
//! queues, feeds it what comes back, and answers what it asks of the file
//! system through `LocalFiles` (whether a path exists, its size, and the
//! completion of a path typed in a prompt).
//!
//! The loop sleeps until a key, a node event, a reply or a signal comes,
//! and draws only then: an idle chat costs no CPU.

pub mod app;
pub mod text;
pub mod ui;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use crossterm::event::Event as TermEvent;
use tokio::sync::mpsc;

use crate::control::api;
use crate::net::NodeHandle;
use crate::node::{runtime, Effective, Global};
use crate::store::{HistoryQuery, Store};
use app::{split_key, Action, App, ConvKey, FetchUpdate, FileStat, Files, Me};

#[derive(Debug, Default, Args)]
#[command(
    after_help = "Examples:\n  pigeon                      # the same as pigeon chat\n  pigeon chat --mouse\n  NO_COLOR=1 pigeon chat\n\nF1 inside shows every key."
)]
pub struct ChatArgs {
    /// Mouse clicks and wheel (overrides `mouse` in config.toml)
    #[arg(long)]
    pub mouse: bool,
    /// No terminal bell on new messages (overrides `bell`)
    #[arg(long)]
    pub no_bell: bool,
    /// No desktop notifications (overrides `notify`)
    #[arg(long)]
    pub no_notify: bool,
}

/// How requests reach the node.
#[derive(Clone)]
enum Caller {
    Daemon(PathBuf),
    Local(NodeHandle),
}

impl Caller {
    /// The answer's body, or what went wrong (for the status line).
    async fn call<T: serde::de::DeserializeOwned>(&self, req: api::Request) -> Result<T, String> {
        let v = match self {
            Caller::Daemon(sock) => crate::control::call(sock, &req).await,
            Caller::Local(node) => crate::control::answer(&req, node).await,
        };
        match v {
            Ok(v) => api::parse_answer(v).map_err(|e| e.error),
            Err(e) => Err(format!("{e:#}")),
        }
    }
}

/// Where node events come from.
enum Events {
    Local(tokio::sync::broadcast::Receiver<crate::engine::Event>),
    Daemon(tokio::io::Lines<tokio::io::BufReader<tokio::net::unix::OwnedReadHalf>>),
    Closed,
}

impl Events {
    /// The next events (the API's, typed); `None` when the source ended.
    async fn next(&mut self) -> Option<Vec<api::Event>> {
        use tokio::sync::broadcast::error::RecvError;
        match self {
            Events::Local(rx) => match rx.recv().await {
                Ok(e) => Some(api::Event::from_engine(&e)),
                Err(RecvError::Lagged(n)) => Some(vec![api::Event::Lagged { missed: n }]),
                Err(RecvError::Closed) => None,
            },
            Events::Daemon(lines) => lines.next_line().await.ok().flatten().map(|l| daemon_event(&l)),
            Events::Closed => std::future::pending().await,
        }
    }

    /// Events already waiting, without waiting: on the node's own bus, or
    /// lines of the daemon's stream already read or readable now.
    async fn try_next(&mut self) -> Option<Vec<api::Event>> {
        match self {
            Events::Local(rx) => match rx.try_recv() {
                Ok(e) => Some(api::Event::from_engine(&e)),
                Err(tokio::sync::broadcast::error::TryRecvError::Lagged(n)) => {
                    Some(vec![api::Event::Lagged { missed: n }])
                }
                Err(_) => None,
            },
            // A zero timeout polls the read once (`next_line` is cancel safe:
            // a line half read stays buffered for the next call).
            Events::Daemon(lines) => match tokio::time::timeout(Duration::ZERO, lines.next_line()).await {
                Ok(Ok(Some(l))) => Some(daemon_event(&l)),
                _ => None,
            },
            Events::Closed => None,
        }
    }
}

/// One line of the daemon's `listen` stream (a line this version does not
/// know, from a newer daemon, is passed over).
fn daemon_event(line: &str) -> Vec<api::Event> {
    match serde_json::from_str(line) {
        Ok(e) => vec![e],
        Err(e) => {
            tracing::debug!("an event this chat does not know ({e}): {line}");
            Vec::new()
        }
    }
}

/// Replies and progress from tasks, back to the loop.
enum Internal {
    SendAnswer(u64, Result<api::SendAnswer, String>),
    BroadcastAnswer(u64, Result<api::Done, String>),
    Failed(&'static str, String),
    Fetch(String, String, FetchUpdate),
}

/// The terminal in chat mode; dropping it (or a panic) restores it.
struct TerminalGuard;

static MOUSE: AtomicBool = AtomicBool::new(false);
/// Something panicked (and the hook restored the terminal): the loop stops.
static PANICKED: AtomicBool = AtomicBool::new(false);

fn restore_terminal() {
    let _ = crossterm::terminal::disable_raw_mode();
    let mut out = std::io::stdout();
    if MOUSE.load(Ordering::Relaxed) {
        let _ = crossterm::execute!(out, crossterm::event::DisableMouseCapture);
    }
    let _ = crossterm::execute!(
        out,
        crossterm::event::DisableBracketedPaste,
        crossterm::event::DisableFocusChange,
        crossterm::terminal::LeaveAlternateScreen,
        crossterm::cursor::Show
    );
}

impl TerminalGuard {
    fn enter(mouse: bool) -> Result<TerminalGuard> {
        let hook = std::panic::take_hook();
        let main = std::thread::current().id();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().id() != main {
                // A fetch or notification thread: it reports its failure;
                // the screen is not the place for the trace.
                tracing::error!("{info}");
                return;
            }
            // The node's tasks share this thread and tokio catches their
            // panics: restore the terminal at once; the loop ends on its
            // next turn.
            PANICKED.store(true, Ordering::SeqCst);
            restore_terminal();
            hook(info);
        }));
        crossterm::terminal::enable_raw_mode().context("cannot switch the terminal to raw mode")?;
        let guard = TerminalGuard;
        let mut out = std::io::stdout();
        crossterm::execute!(
            out,
            crossterm::terminal::EnterAlternateScreen,
            crossterm::event::EnableBracketedPaste,
            crossterm::event::EnableFocusChange
        )?;
        if mouse {
            MOUSE.store(true, Ordering::Relaxed);
            crossterm::execute!(out, crossterm::event::EnableMouseCapture)?;
        }
        Ok(guard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// What the chat was configured to do.
struct Settings {
    bell: bool,
    notify: bool,
    theme: ui::Theme,
    download_dir: PathBuf,
}

pub fn run(g: &Global, args: &ChatArgs) -> Result<ExitCode> {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        bail!("pigeon chat needs a terminal; scripts use `pigeon send`, `listen`, `history` … (see --help)");
    }
    let eff = Effective::load(g)?;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let settings = Settings {
        bell: eff.file.bell.unwrap_or(true) && !args.no_bell,
        notify: eff.file.notify.unwrap_or(true) && !args.no_notify,
        theme: ui::Theme { color: !no_color && eff.file.colors.as_deref() != Some("never") },
        download_dir: eff.file.download_dir.clone().unwrap_or_else(crate::node::download_dir),
    };
    let mouse = args.mouse || eff.file.mouse.unwrap_or(false);
    runtime()?.block_on(async {
        let sock = eff.home.socket();
        // A daemon of this home: be its client. Else: be the node.
        let daemon = sock.exists() && crate::control::call(&sock, &api::Request::Ping).await.is_ok();
        let (caller, mut events, own) = if daemon {
            let lines = crate::control::listen(&sock).await?;
            (Caller::Daemon(sock.clone()), Events::Daemon(lines), None)
        } else {
            let (node, task) = eff.start_node(false)?;
            // Seen when the chat ends (the chat's screen covers it).
            if let Some(line) = eff.first_run_line() {
                eprintln!("{line}");
            }
            let rx = node.events.subscribe();
            // The browser UI too, when configured (its status goes to chat.log).
            let web = crate::web::start(&eff, &node).await;
            let server = tokio::spawn({
                let (node, sock) = (node.clone(), sock.clone());
                async move { crate::control::serve(&sock, node, web).await }
            });
            (Caller::Local(node.clone()), Events::Local(rx), Some((node, task, server)))
        };
        if let Some((node, ..)) = &own {
            crate::node::spawn_auto_accept(&eff, node);
        }
        // Whatever happens here, an own node leaves the LAN below.
        let result = async {
            let store = Store::open(&eff.home.database())?;
            let mut app = App::new(Me {
                nick: eff.nick.clone(),
                user: eff.user.clone(),
                host: eff.host.clone(),
                away: eff.away.clone(),
                via: if daemon { "via the daemon".into() } else { format!("own node on port {}", eff.port) },
            });
            app.download_dir = Some(settings.download_dir.clone());
            app.home_dir = directories::BaseDirs::new().map(|b| b.home_dir().to_path_buf());
            app.files = Box::new(LocalFiles);
            if let Ok(a) = caller.call::<api::PeersAnswer>(api::Request::Peers { refresh: false }).await {
                app.set_online_peers(&a.peers);
            }
            app.add_known_peers(&store.peers().unwrap_or_default());
            app.open(ConvKey::Everyone);
            app.set_unread(&store.unread_counts().unwrap_or_default());
            let drafts = eff.home.data_dir.join(DRAFTS);
            // An unreadable file is left alone: at the end it is not
            // overwritten, the drafts are printed instead.
            let loaded = read_drafts(&drafts).unwrap_or_else(|e| {
                tracing::warn!("cannot read the drafts in {}: {e}", drafts.display());
                BTreeMap::new()
            });
            app.restore_drafts(&loaded);
            let result = {
                let _guard = TerminalGuard::enter(mouse)?;
                event_loop(&mut app, &eff, &settings, &caller, &mut events, &store).await
            };
            // After the terminal is back: drafts that cannot be saved are
            // printed, so that nothing typed is lost.
            let ours = app.drafts();
            if let Err(e) = save_drafts(&drafts, &loaded, &ours) {
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "pigeon: cannot save the drafts to {} ({e}); here they are:", drafts.display());
                for (conv, text) in &ours {
                    let _ = writeln!(err, "--- {conv}\n{text}");
                }
            }
            result
        }
        .await;
        if let Some((node, task, server)) = own {
            node.shutdown().await;
            let _ = tokio::time::timeout(Duration::from_secs(3), task).await;
            server.abort();
            let _ = std::fs::remove_file(&sock);
        }
        result.map(|()| ExitCode::SUCCESS)
    })
}

/// The real file system, which the app asks about (it does no I/O of its own).
struct LocalFiles;

impl Files for LocalFiles {
    fn stat(&self, path: &Path) -> Option<FileStat> {
        let m = std::fs::metadata(path).ok()?;
        Some(FileStat { dir: m.is_dir(), size: if m.is_dir() { 0 } else { m.len() } })
    }

    fn complete(&self, typed: &str, home: Option<&Path>) -> (String, Vec<String>) {
        complete_path(typed, home)
    }
}

/// Completes a path: to the longest common prefix of the entries that
/// start with what was typed; returns the new text and the candidates
/// (folders end in `/`).
fn complete_path(typed: &str, home: Option<&Path>) -> (String, Vec<String>) {
    let (shown_dir, prefix) = match typed.rfind('/') {
        Some(i) => (&typed[..=i], &typed[i + 1..]),
        None => ("", typed),
    };
    let real_dir = match (shown_dir.strip_prefix("~/"), home) {
        (Some(rest), Some(h)) => h.join(rest),
        _ if shown_dir.is_empty() => PathBuf::from("."),
        _ => PathBuf::from(shown_dir),
    };
    let Ok(entries) = std::fs::read_dir(&real_dir) else { return (typed.to_string(), Vec::new()) };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with(prefix) || (name.starts_with('.') && !prefix.starts_with('.')) {
                return None;
            }
            let dir = e.path().is_dir();
            Some(if dir { format!("{name}/") } else { name })
        })
        .collect();
    names.sort();
    names.truncate(200);
    let Some(first) = names.first() else { return (typed.to_string(), Vec::new()) };
    let mut common = first.clone();
    for n in &names[1..] {
        while !n.starts_with(&common) {
            common.pop();
        }
    }
    let completed = format!("{shown_dir}{common}");
    if names.len() == 1 {
        (completed, Vec::new())
    } else {
        (completed, names)
    }
}

/// Unsent text of each conversation, kept between runs (private: 0600).
const DRAFTS: &str = "drafts.json";

/// The saved drafts; none when there is no file.
fn read_drafts(path: &Path) -> std::io::Result<BTreeMap<String, String>> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(e),
    }
}

/// Saves what this chat changed since it `loaded` the drafts: another chat
/// on the same home may have saved its own meanwhile (kept), and a draft
/// this one left untouched is not written back. The file is written whole
/// to a temporary file of this process, then renamed: never half a file.
fn save_drafts(path: &Path, loaded: &BTreeMap<String, String>, ours: &BTreeMap<String, String>) -> std::io::Result<()> {
    let mut all = read_drafts(path)?;
    for k in loaded.keys().chain(ours.keys()) {
        if loaded.get(k) != ours.get(k) {
            match ours.get(k) {
                Some(text) => all.insert(k.clone(), text.clone()),
                None => all.remove(k),
            };
        }
    }
    if all.is_empty() {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(serde_json::to_string_pretty(&all).expect("strings serialize").as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

async fn event_loop(
    app: &mut App,
    eff: &Effective,
    settings: &Settings,
    caller: &Caller,
    events: &mut Events,
    store: &Store,
) -> Result<()> {
    let backend = ratatui::backend::CrosstermBackend::new(std::io::stdout());
    let mut terminal = ratatui::Terminal::new(backend)?;
    terminal.clear()?;
    // A thread reads the terminal (blocking, no CPU while idle) and hands
    // the events over; it ends with the process.
    let (key_tx, mut keys) = mpsc::channel::<std::io::Result<TermEvent>>(4096);
    std::thread::Builder::new().name("pigeon-keys".into()).spawn(move || loop {
        let ev = crossterm::event::read();
        let failed = ev.is_err();
        if key_tx.blocking_send(ev).is_err() || failed {
            return;
        }
    })?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Internal>();
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut int = signal(SignalKind::interrupt())?;
    let notifying = Arc::new(AtomicBool::new(false));
    let mut last_bell: Option<Instant> = None;
    loop {
        if PANICKED.load(Ordering::SeqCst) {
            bail!("an internal error stopped the chat (the message above; chat.log in the home may say more)");
        }
        for a in app.take_actions() {
            match a {
                Action::Quit => return Ok(()),
                Action::Notify { title, body } => {
                    // At most one bell a second (a peer shaking the window repeatedly).
                    if settings.bell && last_bell.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                        last_bell = Some(Instant::now());
                        let _ = terminal.backend_mut().write_all(b"\x07");
                        let _ = terminal.backend_mut().flush();
                    }
                    if settings.notify {
                        desktop_notification(&notifying, title, body);
                    }
                }
                Action::LoadHistory { conv, limit } => {
                    let records = load_history(store, &conv, limit).unwrap_or_else(|e| {
                        app.on_error("history", &e.to_string());
                        Vec::new()
                    });
                    app.on_history(&conv, &records, limit);
                }
                other => run_action(other, eff, settings, caller, &tx),
            }
        }
        // Each turn of the loop follows something that happened: draw it.
        terminal.draw(|f| ui::draw(f, app, &settings.theme))?;
        tokio::select! {
            ev = keys.recv() => match ev {
                Some(Ok(ev)) => {
                    terminal_event(app, ev);
                    // Input that is already there (a paste without bracketed
                    // paste comes as thousands of keys) is taken before the
                    // next frame: one draw, not one per key.
                    for _ in 0..100_000 {
                        match keys.try_recv() {
                            Ok(Ok(ev)) => terminal_event(app, ev),
                            Ok(Err(e)) => return Err(e).context("cannot read the terminal"),
                            Err(_) => break,
                        }
                    }
                }
                Some(Err(e)) => return Err(e).context("cannot read the terminal"),
                None => return Ok(()),
            },
            ev = events.next() => match ev {
                Some(list) => {
                    list.iter().for_each(|v| app.on_event(v));
                    // A burst (a whole office entering) makes one frame.
                    for _ in 0..10_000 {
                        let Some(more) = events.try_next().await else { break };
                        more.iter().for_each(|v| app.on_event(v));
                    }
                }
                None => {
                    app.on_error("node", "the node stopped; messages cannot be sent until pigeon chat is started again");
                    *events = Events::Closed;
                }
            },
            Some(m) = rx.recv() => match m {
                Internal::SendAnswer(tag, r) => app.on_send_answer(tag, r),
                Internal::BroadcastAnswer(tag, r) => app.on_broadcast_answer(tag, r),
                Internal::Failed(what, e) => app.on_error(what, &e),
                Internal::Fetch(key, no, u) => app.on_fetch(&key, &no, u),
            },
            _ = term.recv() => return Ok(()),
            _ = hup.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
        }
    }
}

fn terminal_event(app: &mut App, ev: TermEvent) {
    match ev {
        TermEvent::Key(k) => app.on_key(k),
        TermEvent::Paste(s) => app.on_paste(&s),
        TermEvent::Mouse(m) => app.on_mouse(m),
        TermEvent::FocusGained => app.window_focused = true,
        TermEvent::FocusLost => app.window_focused = false,
        TermEvent::Resize(..) => {}
    }
}

fn load_history(store: &Store, conv: &ConvKey, limit: usize) -> Result<Vec<crate::store::MessageRecord>> {
    Ok(match conv {
        ConvKey::Peer(k) => {
            let (user, host) = split_key(k);
            let mut records = store.history(&HistoryQuery {
                peer: Some((user.to_string(), host.to_string())),
                limit: Some(limit),
                ..Default::default()
            })?;
            // Our broadcasts are stored once per peer; they belong to Everyone.
            records.retain(|m| !(m.broadcast() && m.direction == crate::store::Direction::Out));
            records
        }
        ConvKey::Everyone => {
            store.history(&HistoryQuery { limit: Some(limit), broadcast_only: true, ..Default::default() })?
        }
        ConvKey::Group(_) => {
            // Sends to several of its members; the chat picks those (one row per recipient).
            let mut all =
                store.history(&HistoryQuery { limit: Some(limit.saturating_mul(8)), ..Default::default() })?;
            all.retain(|m| m.direction == crate::store::Direction::Out && !m.broadcast());
            all
        }
    })
}

fn run_action(a: Action, eff: &Effective, settings: &Settings, caller: &Caller, tx: &mpsc::UnboundedSender<Internal>) {
    let (caller, tx) = (caller.clone(), tx.clone());
    match a {
        Action::Send { tag, to, text, sealed, files } => {
            let req =
                api::Request::Send(api::SendRequest { sealed, files, detach: true, ..api::SendRequest::new(to, text) });
            tokio::spawn(async move {
                let r = caller.call(req).await;
                let _ = tx.send(Internal::SendAnswer(tag, r));
            });
        }
        Action::Broadcast { tag, text } => {
            tokio::spawn(async move {
                let r = caller.call(api::Request::Broadcast { text }).await;
                let _ = tx.send(Internal::BroadcastAnswer(tag, r));
            });
        }
        Action::Open { user, host, packet_no, read_check } => {
            let req = api::Request::Open { user, host, packet_no, read_check: Some(read_check) };
            spawn_request(caller, tx, "read receipt not sent", req);
        }
        Action::Decline { user, host, packet_no } => {
            let req = api::Request::Decline { user, host, packet_no };
            spawn_request(caller, tx, "the sender was not told", req);
        }
        Action::Seen(conv) => {
            let req = match conv {
                ConvKey::Peer(k) => {
                    let (user, host) = split_key(&k);
                    api::Request::Seen { user: Some(user.into()), host: Some(host.into()), broadcasts: None }
                }
                ConvKey::Everyone => api::Request::Seen { user: None, host: None, broadcasts: Some(true) },
                ConvKey::Group(_) => return,
            };
            // Only the counts of a later start depend on it: log, do not disturb.
            tokio::spawn(async move {
                if let Err(e) = caller.call::<api::Done>(req).await {
                    tracing::warn!("cannot mark a conversation read: {e}");
                }
            });
        }
        Action::SetAway(away) => spawn_request(caller, tx, "away", api::Request::Status { away }),
        Action::GetInfo(peer) => spawn_request(caller, tx, "info", api::Request::Info { peer }),
        Action::Shake(peer) => spawn_request(caller, tx, "shake not sent", api::Request::Shake { peer }),
        // The peers that go are told as events, like any other.
        Action::Refresh => spawn_request(caller, tx, "refresh", api::Request::Peers { refresh: true }),
        Action::Fetch { key, packet_no, addr, command, client, files, into } => {
            let Ok(sa) = addr.parse() else {
                let _ = tx.send(Internal::Fetch(
                    key,
                    packet_no,
                    FetchUpdate::Failed { error: format!("the sender's address {addr:?} is not usable") },
                ));
                return;
            };
            let Ok(no) = packet_no.parse() else {
                let error = format!("the offer's packet number {packet_no:?} is not a number");
                let _ = tx.send(Internal::Fetch(key, packet_no, FetchUpdate::Failed { error }));
                return;
            };
            let src = crate::node::source_for(eff, &key, sa, no, command, &client);
            let into = into.unwrap_or_else(|| settings.download_dir.clone());
            let db = eff.home.database();
            std::thread::spawn(move || {
                let (k, n, t) = (key.clone(), packet_no.clone(), tx.clone());
                let run = std::panic::AssertUnwindSafe(|| fetch_all(src, files, into, key, packet_no, db, tx));
                if std::panic::catch_unwind(run).is_err() {
                    let error = "internal error while fetching (see chat.log)".to_string();
                    let _ = t.send(Internal::Fetch(k, n, FetchUpdate::Failed { error }));
                }
            });
        }
        Action::Quit | Action::Notify { .. } | Action::LoadHistory { .. } => {}
    }
}

fn spawn_request(caller: Caller, tx: mpsc::UnboundedSender<Internal>, what: &'static str, req: api::Request) {
    tokio::spawn(async move {
        if let Err(e) = caller.call::<serde_json::Value>(req).await {
            let _ = tx.send(Internal::Failed(what, e));
        }
    });
}

/// Fetches every file of an offer in turn ([`crate::node::fetch_offer`]),
/// reporting progress at most ten times a second; the first failure ends it.
fn fetch_all(
    src: crate::transfer::fetch::Source,
    files: Vec<app::FileInfo>,
    into: PathBuf,
    key: String,
    packet_no: String,
    db: PathBuf,
    tx: mpsc::UnboundedSender<Internal>,
) {
    use crate::node::OfferProgress;
    use crate::transfer::fetch::{Item, Progress};
    let send = |u| {
        let _ = tx.send(Internal::Fetch(key.clone(), packet_no.clone(), u));
    };
    let items: Vec<Item> = files
        .iter()
        .map(|f| Item { id: f.id, name: f.name.clone(), size: f.size, mtime: f.mtime, dir: f.dir })
        .collect();
    let total = files.iter().fold(0u64, |t, f| t.saturating_add(f.size));
    let started = Instant::now();
    let (mut before, mut resumed) = (0u64, 0u64);
    let mut last = Instant::now() - Duration::from_secs(1);
    let mut paths = Vec::new();
    let mut error = None;
    let (user, host) = split_key(&key);
    let offer = crate::node::Offer { src: &src, from: (user, host), packet_no: &packet_no, into: &into, db: &db };
    crate::node::fetch_offer(&offer, &items, true, &mut |p| match p {
        OfferProgress::Item(_) => last = Instant::now() - Duration::from_secs(1),
        OfferProgress::Progress(item, p) => {
            let done = match p {
                Progress::Start { offset, .. } => {
                    resumed = offset;
                    offset
                }
                Progress::Bytes { done } => done,
                Progress::File { .. } => return,
            };
            if last.elapsed() >= Duration::from_millis(100) {
                last = Instant::now();
                let secs = started.elapsed().as_secs_f64().max(0.001);
                send(FetchUpdate::Progress {
                    name: item.name.clone(),
                    done: before.saturating_add(done),
                    total,
                    bytes_per_sec: before.saturating_add(done).saturating_sub(resumed) as f64 / secs,
                });
            }
        }
        OfferProgress::Done(item, Ok(p)) => {
            paths.push(p.display().to_string());
            before = before.saturating_add(item.size);
        }
        OfferProgress::Done(item, Err(e)) => error = Some(format!("{}: {e}", item.name)),
    });
    send(match error {
        Some(error) => FetchUpdate::Failed { error },
        None => FetchUpdate::Finished { paths },
    });
}

/// A desktop notification, where a desktop session runs; one at a time
/// (a burst of messages does not pile up threads).
fn desktop_notification(busy: &Arc<AtomicBool>, title: String, body: String) {
    let desktop = ["DISPLAY", "WAYLAND_DISPLAY"].iter().any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()));
    if !desktop || std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() || busy.swap(true, Ordering::AcqRel) {
        return;
    }
    let busy = busy.clone();
    std::thread::spawn(move || {
        let _ = notify_rust::Notification::new()
            .appname("Pigeon")
            .summary(&text::one_line(&title))
            .body(&text::one_line(&body))
            .timeout(notify_rust::Timeout::Milliseconds(6000))
            .show();
        busy.store(false, Ordering::Release);
    });
}
