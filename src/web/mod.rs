//! `pigeon web`: the chat in a browser, served by the node itself (the
//! daemon, or the chat or `pigeon web` when they are the node) on
//! `web_listen`, 127.0.0.1:2426 by default.
//!
//! This module owns the HTTP side only. Its routes are thin clients of what
//! the other faces use: `POST /api` takes the control API's
//! [`api::Request`] and answers what the control socket answers
//! ([`crate::control::answer`]); `/api/events` streams [`api::Event`]s as
//! `pigeon listen --json` does, plus the progress of fetches; history and
//! search read the store as `pigeon history` does; fetching an offer is
//! [`crate::node::fetch_offer`]. [`guard`] decides who may ask; [`files`]
//! moves bytes (uploads to offer, fetches, downloads).

mod files;
pub mod guard;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use include_dir::{include_dir, Dir};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::control::api::{self, ApiError, ErrorCode};
use crate::net::NodeHandle;
use crate::node::Effective;
use crate::store::{HistoryQuery, MessageRecord, Store};

/// The page, its script and its style: in the binary, no CDN.
static ASSETS: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/src/web/assets");

/// Where the web UI listens by default.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:2426";

/// Whether the node serves the web UI (`web`, default true).
pub fn enabled(eff: &Effective) -> bool {
    eff.file.web.unwrap_or(true)
}

/// `web_listen`, or 127.0.0.1:2426.
pub fn listen_addr(eff: &Effective) -> SocketAddr {
    eff.file.web_listen.unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("a valid address"))
}

/// The largest upload, in bytes (`web_max_upload_mb`, default 4096 MiB).
pub fn max_upload(eff: &Effective) -> u64 {
    eff.file.web_max_upload_mb.unwrap_or(4096).saturating_mul(1 << 20)
}

/// Whether the web UI runs, as the control API's `web` op tells: its
/// address with the token, or why it does not run.
pub type Status = std::result::Result<String, String>;

/// The address to open: the listen address with the token.
pub fn url(listen: SocketAddr, token: &str) -> String {
    format!("http://{listen}/?token={token}")
}

/// The server's state, shared by every request.
#[derive(Clone)]
pub struct App(Arc<Inner>);

pub struct Inner {
    node: NodeHandle,
    eff: Effective,
    listen: SocketAddr,
    token: String,
    /// The store, read by history, search and state (the node writes
    /// through its own connection).
    store: Arc<Mutex<Store>>,
    /// Fetch progress, for the event streams.
    progress: broadcast::Sender<WebEvent>,
    uploads: PathBuf,
    downloads: PathBuf,
    max_upload: u64,
    /// Files being fetched: (user@host, packet number, file id).
    fetching: Mutex<std::collections::HashSet<(String, String, u64)>>,
}

impl std::ops::Deref for App {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// Events of the web UI's own, beside the control API's.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WebEvent {
    /// First on every connection (then reload: events may have been missed).
    Hello,
    Progress {
        user: String,
        host: String,
        packet_no: String,
        file: u64,
        name: String,
        done: u64,
        total: u64,
    },
    Fetched {
        user: String,
        host: String,
        packet_no: String,
        file: u64,
        name: String,
        saved: String,
        download: Option<String>,
    },
    FetchFailed {
        user: String,
        host: String,
        packet_no: String,
        file: u64,
        name: String,
        error: String,
    },
}

/// Starts serving the web UI for `node`, if configured (`web`): binds
/// `web_listen` now (an error says why not), serves in a task. The status
/// for the control API's `web` op.
pub async fn start(eff: &Effective, node: &NodeHandle) -> Status {
    if !enabled(eff) {
        return Err(format!("the web UI is off (web = false in {})", eff.home.config_file().display()));
    }
    match bind_and_serve(eff, node).await {
        Ok(url) => Ok(url),
        Err(e) => {
            let why = format!("the web UI is not served: {e:#}");
            tracing::warn!("{why}");
            Err(why)
        }
    }
}

async fn bind_and_serve(eff: &Effective, node: &NodeHandle) -> Result<String> {
    let listen = listen_addr(eff);
    let token = guard::load_or_create_token(&eff.home.data_dir)?;
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| {
        format!(
            "cannot listen on {listen} (another Pigeon's web UI? set web_listen in {})",
            eff.home.config_file().display()
        )
    })?;
    let listen = listener.local_addr()?;
    let store = Store::open(&eff.home.database())?;
    let uploads = eff.home.data_dir.join("uploads");
    files::prune_uploads(&uploads, Duration::from_secs(eff.offer_expiry_days.saturating_mul(86_400)));
    let app = App(Arc::new(Inner {
        node: node.clone(),
        eff: eff.clone(),
        listen,
        token: token.clone(),
        store: Arc::new(Mutex::new(store)),
        progress: broadcast::channel(1024).0,
        uploads,
        downloads: eff.file.download_dir.clone().unwrap_or_else(crate::node::download_dir),
        max_upload: max_upload(eff),
        fetching: Mutex::new(Default::default()),
    }));
    let router = router(app);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::warn!("the web UI stopped: {e}");
        }
    });
    tracing::info!("web UI on http://{listen}/ (`pigeon web` opens it)");
    Ok(url(listen, &token))
}

fn router(app: App) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/assets/{*file}", get(asset))
        .route("/api", post(api_op))
        .route("/api/state", get(state))
        .route("/api/history", get(history))
        .route("/api/search", get(search))
        .route("/api/events", get(events))
        .route("/api/fetch", post(files::fetch))
        .route("/api/upload/{batch}/{*path}", put(files::upload))
        .route("/download/{*path}", get(files::download))
        .layer(axum::extract::DefaultBodyLimit::max(api_limit()))
        .layer(axum::middleware::from_fn_with_state(app.clone(), guard::guard))
        .with_state(app)
}

/// The largest `POST /api` body: what the control socket takes.
fn api_limit() -> usize {
    usize::try_from(crate::control::MAX_REQUEST).unwrap_or(usize::MAX)
}

/// An error answer: the control API's shape, with an HTTP status by code.
pub fn error(e: &ApiError) -> Response {
    let status = match e.code {
        ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
        ErrorCode::UnknownPeer => StatusCode::NOT_FOUND,
        ErrorCode::AmbiguousPeer => StatusCode::CONFLICT,
        ErrorCode::TooLong => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::File => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, [(header::CACHE_CONTROL, "no-store")], Json(e.to_json())).into_response()
}

fn bad_request(text: impl Into<String>) -> Response {
    error(&ApiError::new(ErrorCode::BadRequest, text.into()))
}

fn ok(v: impl Serialize) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Json(api::ok_json(&v))).into_response()
}

/// `/`: the page; `/?token=…` sets the cookie and comes back without it.
async fn index(State(app): State<App>, uri: axum::http::Uri) -> Response {
    if guard::query_token(uri.query()).is_some_and(|t| guard::same(&t, &app.token)) {
        let cookie = format!("{}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age=31536000", guard::COOKIE, app.token);
        let mut r = Redirect::to("/").into_response();
        r.headers_mut().insert(header::SET_COOKIE, cookie.parse().expect("a valid header"));
        return r;
    }
    asset_response("index.html")
}

async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    asset_response(&file)
}

fn asset_response(name: &str) -> Response {
    let Some(f) = ASSETS.get_file(name) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let kind = match name.rsplit_once('.').map(|(_, e)| e) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    };
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "no-cache")], f.contents()).into_response()
}

/// `POST /api`: one control API request, answered as the socket answers
/// it. Not `listen` (that is `/api/events`), `shutdown` or `web`.
async fn api_op(State(app): State<App>, body: Bytes) -> Response {
    let req: api::Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(format!("not a request: {e}")),
    };
    if matches!(req, api::Request::Listen | api::Request::Shutdown | api::Request::Web) {
        return bad_request("not through the web UI: listen is /api/events; shutdown and web are for the socket");
    }
    match crate::control::answer(&req, &app.node).await {
        Ok(v) => ([(header::CACHE_CONTROL, "no-store")], Json(v)).into_response(),
        Err(e) => error(&ApiError::from_anyhow(&e)),
    }
}

/// Runs `f` on the store, off the node's thread.
async fn with_store<T: Send + 'static>(
    app: &App,
    f: impl FnOnce(&Store) -> Result<T> + Send + 'static,
) -> std::result::Result<T, Response> {
    let store = app.store.clone();
    let r = tokio::task::spawn_blocking(move || {
        let s = store.lock().map_err(|_| anyhow::anyhow!("the store's lock is poisoned"))?;
        f(&s)
    })
    .await;
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(error(&ApiError::from_anyhow(&e))),
        Err(e) => Err(error(&ApiError::new(ErrorCode::Failed, format!("{e}")))),
    }
}

/// A peer we know of but is not online now.
#[derive(Debug, Serialize)]
struct KnownPeer {
    user: String,
    host: String,
    nick: String,
    group: String,
    addr: String,
    client: String,
    /// RFC 3339, local time, seconds.
    last_seen: String,
}

#[derive(Debug, Serialize)]
struct Unread {
    /// `user@host`.
    peer: String,
    count: u64,
}

#[derive(Debug, Serialize)]
struct OnlinePeer {
    #[serde(flatten)]
    peer: api::PeerView,
    online: bool,
}

#[derive(Debug, Serialize)]
struct StateAnswer {
    me: crate::net::Me,
    peers: Vec<OnlinePeer>,
    known: Vec<KnownPeer>,
    unread: Vec<Unread>,
    broadcasts_unread: u64,
    download_dir: String,
    max_upload_mb: u64,
    version: &'static str,
}

/// `GET /api/state`: who we are, who is online, who we know, what is unread.
async fn state(State(app): State<App>) -> Response {
    let me = match crate::control::answer(&api::Request::Me, &app.node)
        .await
        .and_then(|v| api::parse_answer::<api::MeAnswer>(v).map_err(anyhow::Error::from))
    {
        Ok(a) => a.me,
        Err(e) => return error(&ApiError::from_anyhow(&e)),
    };
    let online = match app.node.peers().await {
        Ok(p) => p,
        Err(e) => return error(&ApiError::from_anyhow(&e)),
    };
    let online: Vec<OnlinePeer> =
        online.iter().filter(|p| p.online).map(|p| OnlinePeer { peer: api::PeerView::from(p), online: true }).collect();
    let here: std::collections::HashSet<(String, String)> =
        online.iter().map(|p| (p.peer.info.user.clone(), p.peer.info.host.clone())).collect();
    let stored = with_store(&app, |s| Ok((s.peers()?, s.unread_counts()?))).await;
    let (known, counts) = match stored {
        Ok(v) => v,
        Err(r) => return r,
    };
    let known = known
        .into_iter()
        .filter(|p| !here.contains(&(p.user.clone(), p.host.clone())))
        .map(|p| KnownPeer {
            last_seen: api::local_secs(p.last_seen),
            user: p.user,
            host: p.host,
            nick: p.nick,
            group: p.group,
            addr: p.addr,
            client: p.client,
        })
        .collect();
    let broadcasts_unread = counts.iter().filter(|c| c.broadcast).map(|c| c.count).sum();
    let unread = counts
        .iter()
        .filter(|c| !c.broadcast)
        .map(|c| Unread { peer: format!("{}@{}", c.user, c.host), count: c.count })
        .collect();
    ok(StateAnswer {
        me,
        peers: online,
        known,
        unread,
        broadcasts_unread,
        download_dir: app.downloads.to_string_lossy().into_owned(),
        max_upload_mb: app.max_upload >> 20,
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// A file of an offer to us, with a link once it is saved in the download folder.
#[derive(Debug, Serialize)]
struct WebFile {
    #[serde(flatten)]
    file: api::OfferedFile,
    #[serde(skip_serializing_if = "Option::is_none")]
    download: Option<String>,
}

/// A history entry, as `pigeon history --json` prints it, with the state
/// of each file of an offer to us.
#[derive(Debug, Serialize)]
struct WebEntry {
    #[serde(flatten)]
    entry: api::HistoryEntry,
    #[serde(skip_serializing_if = "Option::is_none")]
    files: Option<Vec<WebFile>>,
}

fn entries(app: &App, store: &Store, records: &[MessageRecord]) -> Result<Vec<WebEntry>> {
    let expiry = app.eff.offer_expiry();
    records
        .iter()
        .map(|m| {
            let list = m.attachments_json.as_deref().map(api::AttachmentView::from_column).unwrap_or_default();
            let files = if m.direction == crate::store::Direction::In && !list.is_empty() {
                let offered = api::offered_files(store, m, &list, expiry)?;
                Some(
                    offered
                        .into_iter()
                        .map(|f| {
                            let download =
                                f.saved.as_deref().and_then(|s| files::download_url(&app.downloads, s.as_ref()));
                            WebFile { file: f, download }
                        })
                        .collect(),
                )
            } else {
                None
            };
            Ok(WebEntry { entry: api::HistoryEntry::from_record(m), files })
        })
        .collect()
}

#[derive(Debug, Deserialize)]
struct HistoryParams {
    /// `user@host`.
    peer: Option<String>,
    /// Any value: the broadcasts.
    everyone: Option<String>,
    before: Option<i64>,
    limit: Option<usize>,
}

#[derive(Debug, Serialize)]
struct HistoryAnswer {
    /// Oldest first.
    messages: Vec<WebEntry>,
    /// Older messages exist (ask with `before` = the first one's id).
    more: bool,
}

/// `GET /api/history?peer=user@host|everyone=1[&before=ID][&limit=N]`: a
/// page of a conversation, oldest first.
async fn history(State(app): State<App>, Query(p): Query<HistoryParams>) -> Response {
    let limit = p.limit.unwrap_or(100).clamp(1, 1000);
    let mut q = HistoryQuery { limit: Some(limit + 1), before: p.before, ..Default::default() };
    match (&p.peer, &p.everyone) {
        (Some(k), None) => match k.split_once('@') {
            Some((u, h)) if !u.is_empty() && !h.is_empty() => q.peer = Some((u.to_string(), h.to_string())),
            _ => return bad_request(format!("{k:?}: give user@host")),
        },
        (None, Some(_)) => q.broadcast_only = true,
        _ => return bad_request("give peer=user@host or everyone=1"),
    }
    let app2 = app.clone();
    let r = with_store(&app, move |s| {
        let mut rows = s.history(&q)?;
        let more = rows.len() > limit;
        if more {
            rows.remove(0);
        }
        Ok(HistoryAnswer { messages: entries(&app2, s, &rows)?, more })
    })
    .await;
    match r {
        Ok(a) => ok(a),
        Err(r) => r,
    }
}

#[derive(Debug, Deserialize)]
struct SearchParams {
    q: String,
    limit: Option<usize>,
}

#[derive(Debug, Serialize)]
struct SearchAnswer {
    /// Newest first.
    messages: Vec<WebEntry>,
}

/// `GET /api/search?q=TEXT[&limit=N]`: `pigeon history --search`, newest first.
async fn search(State(app): State<App>, Query(p): Query<SearchParams>) -> Response {
    let limit = p.limit.unwrap_or(50).clamp(1, 500);
    if p.q.trim().is_empty() {
        return ok(SearchAnswer { messages: Vec::new() });
    }
    let q = HistoryQuery { search: Some(p.q), limit: Some(limit), ..Default::default() };
    let app2 = app.clone();
    let r = with_store(&app, move |s| {
        let mut rows = s.history(&q)?;
        rows.reverse();
        Ok(SearchAnswer { messages: entries(&app2, s, &rows)? })
    })
    .await;
    match r {
        Ok(a) => ok(a),
        Err(r) => r,
    }
}

/// `GET /api/events`: Server-Sent Events, one JSON object each: `hello`,
/// then the control API's events (as `listen` streams them) and the
/// progress of fetches. The browser reconnects by itself.
async fn events(State(app): State<App>) -> Response {
    let node_rx = app.node.events.subscribe();
    let web_rx = app.progress.subscribe();
    let hello = serde_json::to_string(&WebEvent::Hello).expect("plain data");
    let stream = futures_util::stream::unfold(
        (node_rx, web_rx, Some(hello), Vec::<String>::new()),
        |(mut node_rx, mut web_rx, mut first, mut queued)| async move {
            if let Some(h) = first.take() {
                return Some((Ok::<_, Infallible>(SseEvent::default().data(h)), (node_rx, web_rx, None, queued)));
            }
            loop {
                if !queued.is_empty() {
                    let line = queued.remove(0);
                    return Some((Ok(SseEvent::default().data(line)), (node_rx, web_rx, None, queued)));
                }
                tokio::select! {
                    e = node_rx.recv() => match e {
                        Ok(e) => queued = api::Event::from_engine(&e).iter().map(|e| e.to_json().to_string()).collect(),
                        Err(broadcast::error::RecvError::Lagged(n)) => queued.push(api::Event::Lagged { missed: n }.to_json().to_string()),
                        Err(broadcast::error::RecvError::Closed) => return None,
                    },
                    e = web_rx.recv() => match e {
                        Ok(e) => queued.push(serde_json::to_string(&e).expect("plain data")),
                        Err(broadcast::error::RecvError::Lagged(n)) => queued.push(api::Event::Lagged { missed: n }.to_json().to_string()),
                        Err(broadcast::error::RecvError::Closed) => return None,
                    },
                }
            }
        },
    );
    let mut r = Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(60))).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, "no-store".parse().expect("a valid header"));
    r
}
