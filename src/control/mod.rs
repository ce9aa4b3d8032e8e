//! The local control API: a Unix socket in the home directory speaking JSON
//! Lines. The daemon serves it; the one-shot commands and the chat are its
//! clients. One request per connection: `{"op": "peers"}`, `{"op": "send",
//! …}`, `{"op": "listen"}` (then one event per line until closed), …; every
//! answer carries `"ok"` and, when false, an `"error"` a person can read.
//!
//! The requests, answers and events are the serde types of [`api`]; this
//! module serves them (and resolves recipients), so `pigeon listen --json`
//! prints exactly what the API streams.

pub mod api;

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::engine::{Delivery, Event, Peer, PeerKey, Request};
use crate::net::NodeHandle;
use api::{ApiError, ErrorCode};

/// A peer as `peers` lists it, as JSON.
pub fn peer_json(p: &Peer) -> Value {
    serde_json::to_value(api::PeerView::from(p)).expect("plain data")
}

/// The JSON lines of one event: a message with attachments is followed by
/// an `offer` line carrying them.
pub fn event_lines(e: &Event) -> Vec<Value> {
    api::Event::from_engine(e).iter().map(api::Event::to_json).collect()
}

/// Events a listener missed because it read too slowly.
pub fn lagged_json(missed: u64) -> Value {
    api::Event::Lagged { missed }.to_json()
}

/// Serves the control socket until the node stops. A stale socket file
/// (no daemon answering) is replaced. `web`: how the web UI runs (the
/// `web` op's answer).
pub async fn serve(path: &Path, node: NodeHandle, web: crate::web::Status) -> Result<()> {
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            bail!("a Pigeon daemon already runs with this home ({} answers)", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("cannot remove the stale socket {}", path.display()))?;
    }
    let listener = bind_private(path)?;
    loop {
        let (stream, _) = listener.accept().await?;
        let node = node.clone();
        let web = web.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(stream, node, web).await {
                tracing::debug!("control connection: {e:#}");
            }
        });
    }
}

/// The longest request line read (a send with thousands of file paths fits).
pub const MAX_REQUEST: u64 = 1 << 20;

/// Binds the socket so that it is never reachable by others, whatever the
/// umask: in a fresh directory of our own (0700), made 0600 there, then
/// moved into place.
fn bind_private(path: &Path) -> Result<UnixListener> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let parent = path.parent().unwrap_or(Path::new("."));
    let private = parent.join(format!(".pigeon-sock-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&private);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .with_context(|| format!("cannot create {}", private.display()))?;
    let tmp = private.join("sock");
    let bound = (|| -> Result<UnixListener> {
        let l = UnixListener::bind(&tmp).with_context(|| format!("cannot listen on {}", path.display()))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&tmp, path).with_context(|| format!("cannot place the socket at {}", path.display()))?;
        Ok(l)
    })();
    let _ = std::fs::remove_dir_all(&private);
    bound
}

async fn handle(stream: UnixStream, node: NodeHandle, web: crate::web::Status) -> Result<()> {
    let (r, mut w) = stream.into_split();
    let mut line = String::new();
    let mut limited = BufReader::new(r).take(MAX_REQUEST);
    limited.read_line(&mut line).await?;
    if !line.ends_with('\n') && limited.limit() == 0 {
        let error = format!("request longer than {MAX_REQUEST} bytes");
        return write(&mut w, &json!({"ok": false, "error": error})).await;
    }
    let req: api::Request = match serde_json::from_str(&line) {
        Ok(r) => r,
        Err(e) => {
            let error = ApiError::new(ErrorCode::BadRequest, format!("not a request: {e}"));
            return write(&mut w, &error.to_json()).await;
        }
    };
    if req == api::Request::Listen {
        let mut rx = node.events.subscribe();
        write(&mut w, &json!({"ok": true})).await?;
        loop {
            match rx.recv().await {
                Ok(e) => {
                    for line in event_lines(&e) {
                        write(&mut w, &line).await?;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => write(&mut w, &lagged_json(n)).await?,
                Err(_) => return Ok(()),
            }
        }
    }
    if req == api::Request::Web {
        let answer = match web {
            Ok(url) => api::ok_json(&api::WebAnswer { url }),
            Err(why) => ApiError::new(ErrorCode::Failed, why).to_json(),
        };
        return write(&mut w, &answer).await;
    }
    let answer = match answer(&req, &node).await {
        Ok(v) => v,
        Err(e) => ApiError::from_anyhow(&e).to_json(),
    };
    write(&mut w, &answer).await
}

async fn write(w: &mut tokio::net::unix::OwnedWriteHalf, v: &Value) -> Result<()> {
    let mut s = v.to_string();
    s.push('\n');
    w.write_all(s.as_bytes()).await?;
    Ok(())
}

/// Answers one request (everything but `listen`). Shared by the daemon and
/// the short-lived node of the one-shot commands. The answer is the JSON
/// line `{"ok": true, …}`; an error becomes `{"ok": false, "code", "error"}`
/// through [`ApiError::from_anyhow`].
pub async fn answer(req: &api::Request, node: &NodeHandle) -> Result<Value> {
    use api::Request as R;
    match req {
        R::Peers { refresh } => {
            // `refresh`: IP Messenger's F5 first, then the list once the
            // peers that do not answer are taken for gone (~10 s).
            if *refresh {
                node.request(Request::Refresh).await?;
                tokio::time::sleep(crate::engine::REFRESH_TAKES).await;
            }
            let peers = node.peers().await?;
            let peers = peers.iter().filter(|p| p.online).map(api::PeerView::from).collect();
            Ok(api::ok_json(&api::PeersAnswer { peers }))
        }
        R::Send(s) => send(s, node).await,
        R::Shake { peer: spec } => {
            let peers = node.peers().await?;
            let key = resolve_one(&peers, spec)?;
            let client = peers.iter().find(|p| p.key == key).map_or("", |p| p.client.name());
            node.request(Request::Shake(key.clone())).await?;
            Ok(api::ok_json(&api::ShakeAnswer { peer: key.to_string(), client: client.into() }))
        }
        R::Trust { user, host } => {
            node.request(Request::TrustKey(PeerKey::new(user, host))).await?;
            Ok(api::ok_json(&api::Done {}))
        }
        R::Broadcast { text } => {
            node.request(Request::Broadcast { text: text.clone() }).await?;
            Ok(api::ok_json(&api::Done {}))
        }
        R::Status { away } => {
            node.request(Request::SetAway(away.clone())).await?;
            Ok(api::ok_json(&api::Done {}))
        }
        R::Info { peer: spec } => {
            let peers = node.peers().await?;
            let key = resolve_one(&peers, spec)?;
            let peer = peers.iter().find(|p| p.key == key).expect("resolved from this list");
            let mut events = node.events.subscribe();
            node.request(Request::GetInfo(key.clone())).await?;
            let (mut version, mut absence) = (None, None);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
            while version.is_none() || absence.is_none() {
                match tokio::time::timeout_at(deadline, events.recv()).await {
                    Ok(Ok(Event::Info { peer, version: v, absence: a })) if peer == key => {
                        version = version.or(v);
                        absence = absence.or(a);
                    }
                    Ok(Ok(_)) => {}
                    _ => break,
                }
            }
            let info = api::InfoView {
                peer: api::PeerView::from(peer),
                version_field: peer.version.clone(),
                program: version,
                absence,
            };
            Ok(api::ok_json(&api::InfoAnswer { info }))
        }
        R::Open { user, host, packet_no, read_check } => {
            // READCHECKOPT only if the message asked for it (§4.2); unknown: ask.
            let read_check = read_check.unwrap_or(true);
            let peer = PeerKey::new(user, host);
            node.request(Request::Open { peer, packet_no: checked_no(packet_no)?, read_check }).await?;
            Ok(api::ok_json(&api::Done {}))
        }
        R::Decline { user, host, packet_no } => {
            let packet_no = checked_no(packet_no)?;
            node.request(Request::Decline { peer: PeerKey::new(user, host), packet_no }).await?;
            Ok(api::ok_json(&api::Done {}))
        }
        R::Seen { user, host, broadcasts } => {
            // A peer's plain messages, or (`"broadcasts": true`) every broadcast.
            let peer = match (user, host, broadcasts) {
                (Some(u), Some(h), None | Some(false)) => Some(PeerKey::new(u, h)),
                (None, None, Some(true)) => None,
                _ => {
                    return Err(ApiError::new(
                        ErrorCode::BadRequest,
                        "seen needs user and host, or \"broadcasts\": true",
                    )
                    .into())
                }
            };
            node.request(Request::MarkSeen(peer)).await?;
            Ok(api::ok_json(&api::Done {}))
        }
        R::Ping => {
            Ok(api::ok_json(&api::PingAnswer { version: env!("CARGO_PKG_VERSION").into(), pid: std::process::id() }))
        }
        R::Me => Ok(api::ok_json(&api::MeAnswer { me: node.me().await?, pid: std::process::id() })),
        R::Shutdown => {
            node.shutdown().await;
            Ok(api::ok_json(&api::Done {}))
        }
        R::Listen => Err(ApiError::new(ErrorCode::BadRequest, "listen is a stream: it has its own connection").into()),
        // The socket's server answers it (it knows how the web UI runs).
        R::Web => Err(ApiError::new(ErrorCode::Failed, "no daemon serves the web UI here").into()),
    }
}

/// A packet number a client gave, checked (the protocol's rule).
fn checked_no(s: &str) -> Result<pigeon_protocol::PacketNo> {
    s.parse().map_err(|e| ApiError::new(ErrorCode::BadRequest, format!("{e}")).into())
}

/// `send`: resolves the recipients, sends (in parts when too long), and
/// waits for the receipts unless detached.
async fn send(req: &api::SendRequest, node: &NodeHandle) -> Result<Value> {
    let text = req.text.clone();
    let sealed = req.sealed;
    let wait = Duration::from_secs_f64(req.wait.unwrap_or(10.0).clamp(0.0, 3600.0));
    let peers = node.peers().await?;
    let to = resolve_all(&peers, &req.to)?;
    let files =
        req.files.iter().map(|f| crate::transfer::describe(std::path::Path::new(f))).collect::<Result<Vec<_>, _>>()?;
    // `pigeon send P1 P2 --file f`: the last word is the text only
    // if it names no peer (online or not); else it was meant as one.
    if req.text_from_args && !files.is_empty() {
        if let Some(p) = names_a_peer(&peers, &text) {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                format!(
                    "{text:?} is a peer ({}): to offer files to several peers, end with a text (\"\" for none)",
                    p.key
                ),
            )
            .into());
        }
    }
    let mut events = node.events.subscribe();
    let split = req.split.unwrap_or(true) && files.is_empty();
    let (ids, parts) = if files.is_empty() {
        send_in_parts(node, &to, &text, sealed, split).await?
    } else {
        (node.request(Request::Offer { to: to.clone(), text, sealed, files }).await?, 1)
    };
    let per_part = to.len();
    // `detach`: answer at once; receipts follow as events (the chat).
    let detach = req.detach;
    let mut status: Vec<Delivery> = vec![Delivery::Sending; ids.len()];
    let mut reasons: Vec<Option<String>> = vec![None; ids.len()];
    let deadline = tokio::time::Instant::now() + wait;
    while !detach && status.contains(&Delivery::Sending) {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(Event::Receipt { id, status: st, .. })) => {
                if let Some(i) = ids.iter().position(|x| *x == id) {
                    status[i] = st;
                }
            }
            Ok(Ok(Event::SendFailed { id, reason, .. })) => {
                if let Some(i) = ids.iter().position(|x| *x == id) {
                    reasons[i] = Some(reason);
                }
            }
            Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
            _ => break,
        }
    }
    let results = to
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let nick = peers.iter().find(|p| &p.key == k).map(|p| p.nick.clone()).unwrap_or_default();
            // A recipient's parts: the worst of their states counts.
            let mine: Vec<usize> = (0..parts).map(|part| part * per_part + i).filter(|&j| j < ids.len()).collect();
            let worst = mine.iter().map(|&j| status[j]).max_by_key(|s| match s {
                Delivery::Failed => 3,
                Delivery::Sending | Delivery::Queued => 2,
                _ => 1,
            });
            let s = worst.unwrap_or(Delivery::Failed);
            // Still unacknowledged when the wait ends: it stays in the outbox.
            let s = if s == Delivery::Sending && !detach { Delivery::Queued } else { s };
            api::SendResult {
                peer: k.to_string(),
                nick,
                status: s,
                id: mine.first().map(|&j| ids[j]),
                parts: (parts > 1).then(|| mine.iter().map(|&j| ids[j]).collect()),
                reason: mine.iter().find_map(|&j| reasons[j].clone()),
            }
        })
        .collect();
    Ok(api::ok_json(&api::SendAnswer { results }))
}

/// The one peer `spec` names.
fn resolve_one(peers: &[Peer], spec: &str) -> Result<PeerKey, ApiError> {
    let keys = resolve(peers, spec)?;
    match <[PeerKey; 1]>::try_from(keys) {
        Ok([key]) => Ok(key),
        Err(keys) => {
            Err(ApiError::new(ErrorCode::AmbiguousPeer, format!("{spec} names {} peers; name one", keys.len())))
        }
    }
}

/// Resolves every recipient spec; fails on the first that names nobody.
pub fn resolve_all(peers: &[Peer], specs: &[String]) -> Result<Vec<PeerKey>, ApiError> {
    if specs.is_empty() {
        return Err(ApiError::new(ErrorCode::BadRequest, "no recipient given"));
    }
    let mut out = Vec::new();
    for s in specs {
        for k in resolve(peers, s)? {
            if !out.contains(&k) {
                out.push(k);
            }
        }
    }
    Ok(out)
}

/// Resolves one recipient: `all`, `group:NAME`, `user@host`, an IP address
/// or a nick (case-insensitive). An unknown name lists close matches.
pub fn resolve(peers: &[Peer], spec: &str) -> Result<Vec<PeerKey>, ApiError> {
    let unknown = |error: String| Err(ApiError::new(ErrorCode::UnknownPeer, error));
    let ambiguous = |spec: &str, named: &[&Peer]| Err(ApiError::new(ErrorCode::AmbiguousPeer, ambiguous(spec, named)));
    let online: Vec<&Peer> = peers.iter().filter(|p| p.online).collect();
    let keys =
        |f: &dyn Fn(&Peer) -> bool| -> Vec<PeerKey> { online.iter().filter(|p| f(p)).map(|p| p.key.clone()).collect() };
    let found = if spec == "all" {
        keys(&|_| true)
    } else if let Some(g) = spec.strip_prefix("group:") {
        // Like nicks: any case; an unknown group lists the groups online.
        let lower = g.to_lowercase();
        let found = keys(&|p| p.group.to_lowercase() == lower);
        if found.is_empty() {
            return unknown(unknown_group(&online, g));
        }
        found
    } else if let Ok(ip) = spec.parse::<std::net::IpAddr>() {
        keys(&|p| p.addr.ip() == ip || p.also.iter().any(|a| a.ip() == ip))
    } else if let Ok(sa) = spec.parse::<std::net::SocketAddr>() {
        keys(&|p| p.at(sa))
    } else if let Some(p) = peers.iter().find(|p| p.key.to_string() == spec) {
        // Two machines of one name (every Raspberry Pi is pi@raspberrypi):
        // the plain name is not enough.
        let named: Vec<&Peer> = peers.iter().filter(|q| q.key.same_name(&p.key)).collect();
        if named.len() > 1 && !spec.contains('#') {
            return ambiguous(spec, &named);
        }
        // Named exactly, a peer that left still gets the message: it waits
        // in the outbox until the peer comes back.
        vec![p.key.clone()]
    } else {
        let lower = spec.to_lowercase();
        let found = keys(&|p| p.nick.to_lowercase() == lower || p.key.user.to_lowercase() == lower);
        let named: Vec<&Peer> = online.iter().copied().filter(|p| found.contains(&p.key)).collect();
        if named.len() > 1 && named.iter().all(|p| p.key.same_name(&named[0].key)) {
            return ambiguous(spec, &named);
        }
        found
    };
    if found.is_empty() {
        let lower = spec.to_lowercase();
        let mut close: Vec<String> = online
            .iter()
            .filter(|p| {
                let n = p.nick.to_lowercase();
                n.contains(&lower) || lower.contains(&n) || edit_distance(&n, &lower) <= 2
            })
            .map(|p| format!("{} ({})", p.nick, p.key))
            .collect();
        close.truncate(5);
        if online.is_empty() {
            return unknown(format!(
                "unknown peer {spec:?}: nobody is online (is the network up, and the IPMsg port open?)"
            ));
        }
        if close.is_empty() {
            return unknown(format!("unknown peer {spec:?}; `pigeon peers` lists who is online"));
        }
        return unknown(format!("unknown peer {spec:?}; did you mean: {}", close.join(", ")));
    }
    Ok(found)
}

/// `no one online is in group "qa"; groups online: QA (2), 测试部 (1)`, the
/// closest first.
fn unknown_group(online: &[&Peer], g: &str) -> String {
    let mut groups: Vec<(String, usize)> = Vec::new();
    for p in online.iter().filter(|p| !p.group.is_empty()) {
        match groups.iter_mut().find(|(n, _)| *n == p.group) {
            Some((_, c)) => *c += 1,
            None => groups.push((p.group.clone(), 1)),
        }
    }
    if groups.is_empty() {
        return format!("no one online is in group {g:?} (no one online gives a group)");
    }
    let lower = g.to_lowercase();
    groups.sort_by_key(|(n, _)| (edit_distance(&n.to_lowercase(), &lower), n.clone()));
    let list: Vec<String> = groups.iter().take(8).map(|(n, c)| format!("{n} ({c})")).collect();
    format!("no one online is in group {g:?}; groups online: {}", list.join(", "))
}

/// Sends `text`, in numbered parts (`(1/3) …`) when it is longer than a
/// recipient's client reads in one packet and `split` allows. The ids, part
/// by part (each part: one per recipient, in `to`'s order), and the number
/// of parts.
async fn send_in_parts(
    node: &NodeHandle,
    to: &[PeerKey],
    text: &str,
    sealed: bool,
    split: bool,
) -> Result<(Vec<u64>, usize)> {
    let whole = Request::Send { to: to.to_vec(), text: text.to_string(), sealed };
    let (mut bytes, mut limit) = match node.request(whole).await {
        Ok(ids) => return Ok((ids, 1)),
        Err(e) => match e.downcast_ref::<crate::engine::RequestError>() {
            Some(crate::engine::RequestError::TooLong { bytes, limit, .. }) if split => (*bytes, *limit),
            _ => return Err(e),
        },
    };
    // The packet's overhead is what the text does not explain; the parts'
    // budget shrinks until the first part fits (the wire charset may take
    // more or fewer bytes than UTF-8).
    let mut budget = text.len().saturating_sub(bytes.saturating_sub(limit)).saturating_sub(32);
    for _ in 0..8 {
        let parts = split_text(text, budget);
        let n = parts.len();
        let mut ids = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let text = format!("({}/{n}) {part}", i + 1);
            match node.request(Request::Send { to: to.to_vec(), text, sealed }).await {
                Ok(mut more) => ids.append(&mut more),
                Err(e) => match e.downcast_ref::<crate::engine::RequestError>() {
                    Some(crate::engine::RequestError::TooLong { bytes: b, limit: l, .. }) if i == 0 => {
                        (bytes, limit) = (*b, *l);
                        break;
                    }
                    _ if i > 0 => bail!("part {} of {n} could not be sent ({e:#}); parts 1–{i} were", i + 1),
                    _ => return Err(e),
                },
            }
        }
        if !ids.is_empty() {
            return Ok((ids, n));
        }
        budget = budget.saturating_sub(bytes.saturating_sub(limit)).saturating_sub(budget / 10 + 16);
        if budget < 64 {
            break;
        }
    }
    Err(ApiError::new(
        ErrorCode::TooLong,
        format!("the text could not be split into parts that fit (at most {limit} bytes a packet)"),
    )
    .into())
}

/// Cuts `text` into pieces of at most `budget` UTF-8 bytes, at a line end
/// or a space in the second half of a piece where there is one, else at a
/// character boundary.
fn split_text(text: &str, budget: usize) -> Vec<&str> {
    let budget = budget.max(16);
    let mut parts = Vec::new();
    let mut rest = text;
    while rest.len() > budget {
        let mut cut = budget;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let window = &rest[..cut];
        if let Some(at) = window.rfind('\n').or_else(|| window.rfind(' ')).filter(|&at| at >= cut / 2) {
            cut = at + 1;
        }
        parts.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    if !rest.is_empty() || parts.is_empty() {
        parts.push(rest);
    }
    parts
}

/// The known peer (online or not) a word names: its nick (any case), user,
/// user@host or address.
fn names_a_peer<'a>(peers: &'a [Peer], word: &str) -> Option<&'a Peer> {
    let lower = word.to_lowercase();
    if lower.is_empty() {
        return None;
    }
    peers.iter().find(|p| {
        p.nick.to_lowercase() == lower
            || p.key.user.to_lowercase() == lower
            || p.key.to_string() == word
            || p.addr.ip().to_string() == word
    })
}

/// "2 peers are pi@raspberrypi: 198.18.0.12, 198.18.0.13; give an address".
fn ambiguous(spec: &str, named: &[&Peer]) -> String {
    let mut addrs: Vec<String> = named.iter().map(|p| p.addr.ip().to_string()).collect();
    addrs.sort();
    format!("{} peers are {spec}: {}; give an address", named.len(), addrs.join(", "))
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push((prev[j] + (ca != cb) as usize).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// A client connection: sends one request, returns the answer line's JSON
/// (`{"ok": …}`). No daemon answering is [`ErrorCode::NoDaemon`].
pub async fn call(path: &Path, req: &api::Request) -> Result<Value> {
    let stream = UnixStream::connect(path).await.map_err(|e| {
        ApiError::new(ErrorCode::NoDaemon, format!("cannot reach the daemon at {}: {e}", path.display()))
    })?;
    let (r, mut w) = stream.into_split();
    write(&mut w, &serde_json::to_value(req)?).await?;
    let mut line = String::new();
    BufReader::new(r).read_line(&mut line).await?;
    serde_json::from_str(&line).context("the daemon's answer is not JSON")
}

/// [`call`], the answer read as `T` (an `{"ok": false}` answer is its
/// [`ApiError`]).
pub async fn call_for<T: serde::de::DeserializeOwned>(path: &Path, req: &api::Request) -> Result<T> {
    Ok(api::parse_answer(call(path, req).await?)?)
}

/// Opens a `listen` stream on the daemon.
pub async fn listen(path: &Path) -> Result<tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>> {
    let stream = UnixStream::connect(path).await.map_err(|e| {
        ApiError::new(ErrorCode::NoDaemon, format!("cannot reach the daemon at {}: {e}", path.display()))
    })?;
    let (r, mut w) = stream.into_split();
    write(&mut w, &serde_json::to_value(api::Request::Listen)?).await?;
    let mut lines = BufReader::new(r).lines();
    let first = lines.next_line().await?.context("the daemon closed the connection")?;
    api::parse_answer::<api::Done>(serde_json::from_str(&first)?)?;
    // Keep the write half open: closing it is fine, the server only reads one line.
    drop(w);
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Peer;
    use pigeon_protocol::{Charset, ClientKind, Opts};

    fn peer(user: &str, nick: &str, group: &str, ip: &str) -> Peer {
        Peer {
            key: PeerKey::new(user, "pc"),
            nick: nick.into(),
            group: group.into(),
            addr: format!("{ip}:2425").parse().unwrap(),
            client: ClientKind::Ipmsg,
            version: "1".into(),
            status: Opts(0),
            away: false,
            charset: Charset::Gbk,
            announced: None,
            entry_charset: None,
            online: true,
            seen: Duration::ZERO,
            marker: None,
            also: Vec::new(),
            moved: false,
            key_mark: Default::default(),
        }
    }

    #[test]
    fn two_machines_of_one_name_need_an_address() {
        let mut a = peer("pi", "pi", "", "198.18.0.12");
        a.key = PeerKey::new("pi", "raspberrypi");
        let mut b = peer("pi", "pi", "", "198.18.0.13");
        b.key = PeerKey::new("pi", "raspberrypi#198.18.0.13");
        b.also.push("198.18.0.14:2425".parse().unwrap());
        let peers = vec![a, b];
        let err = resolve(&peers, "pi@raspberrypi").unwrap_err().to_string();
        assert_eq!(err, "2 peers are pi@raspberrypi: 198.18.0.12, 198.18.0.13; give an address");
        let err = resolve(&peers, "pi").unwrap_err().to_string();
        assert_eq!(err, "2 peers are pi: 198.18.0.12, 198.18.0.13; give an address");
        assert_eq!(resolve(&peers, "198.18.0.12").unwrap(), [PeerKey::new("pi", "raspberrypi")]);
        assert_eq!(resolve(&peers, "198.18.0.13").unwrap(), [PeerKey::new("pi", "raspberrypi#198.18.0.13")]);
        // A second address of the same machine names it too.
        assert_eq!(resolve(&peers, "198.18.0.14").unwrap(), [PeerKey::new("pi", "raspberrypi#198.18.0.13")]);
        assert_eq!(
            resolve(&peers, "pi@raspberrypi#198.18.0.13").unwrap(),
            [PeerKey::new("pi", "raspberrypi#198.18.0.13")]
        );
    }

    #[test]
    fn texts_are_cut_at_lines_spaces_or_characters() {
        let t = "aaaa bbbb\ncccc dddd";
        assert_eq!(split_text(t, 16), ["aaaa bbbb\n", "cccc dddd"]);
        let long = "你好".repeat(20); // 120 bytes, no spaces
        let parts = split_text(&long, 16);
        assert!(parts.iter().all(|p| p.len() <= 16 && !p.is_empty()));
        assert_eq!(parts.concat(), long);
        assert_eq!(split_text("short", 100), ["short"]);
    }

    #[test]
    fn recipients() {
        let peers = vec![peer("alice", "Alice", "QA", "10.0.0.1"), peer("bob", "鲍勃", "Dev", "10.0.0.2")];
        assert_eq!(resolve(&peers, "all").unwrap().len(), 2);
        assert_eq!(resolve(&peers, "group:Dev").unwrap(), [PeerKey::new("bob", "pc")]);
        assert_eq!(resolve(&peers, "group:qa").unwrap(), [PeerKey::new("alice", "pc")]);
        let err = resolve(&peers, "group:Deb").unwrap_err().to_string();
        assert_eq!(err, "no one online is in group \"Deb\"; groups online: Dev (1), QA (1)");
        assert_eq!(resolve(&peers, "10.0.0.1").unwrap(), [PeerKey::new("alice", "pc")]);
        assert_eq!(resolve(&peers, "alice@pc").unwrap(), [PeerKey::new("alice", "pc")]);
        assert_eq!(resolve(&peers, "ALICE").unwrap(), [PeerKey::new("alice", "pc")]);
        assert_eq!(resolve(&peers, "鲍勃").unwrap(), [PeerKey::new("bob", "pc")]);
        let err = resolve(&peers, "Alcie").unwrap_err().to_string();
        assert!(err.contains("did you mean: Alice (alice@pc)"), "{err}");
        assert!(resolve(&[], "x").unwrap_err().to_string().contains("nobody is online"));
    }
}
