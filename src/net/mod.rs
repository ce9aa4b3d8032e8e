//! The tokio driver: the UDP socket on port 2425 (SO_BROADCAST, 256 KiB
//! buffers, everything sent from it), broadcast targets (255.255.255.255,
//! each up interface's directed broadcast, configured hosts and ranges),
//! the clock and timers, and the store thread. It runs the engine in one
//! task and executes its outputs; it knows nothing of terminals.
//!
//! Disk never blocks the engine: store operations go to a thread that
//! commits them in batches and only then hands back the datagrams that
//! waited for them (acknowledgements).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::engine::{self, Engine, Event, Now, Output, Peer, Request, RequestError, StoreOp, Transmit};
use crate::store::{self, Store, StoredAttachment};

pub mod files;
pub mod interfaces;
pub mod pictures;
pub mod ports;
pub mod sealed;

/// What the node needs to start.
pub struct NodeOptions {
    pub engine: engine::Config,
    /// Address to bind (0.0.0.0 by default).
    pub bind: IpAddr,
    /// Extra unicast targets probed with a paced BR_ENTRY (configured ranges).
    pub probe: Vec<SocketAddr>,
    /// How much of what strangers send is kept.
    pub retention: store::Retention,
    /// Where pictures peers send are saved (none: they are not kept).
    pub pictures: Option<std::path::PathBuf>,
}

/// Asks the node for something.
pub enum NodeCommand {
    Request(Request, oneshot::Sender<Result<Vec<u64>, RequestError>>),
    Peers(oneshot::Sender<Vec<Peer>>),
    /// Who this node is now (its away state changes while it runs).
    Me(oneshot::Sender<Me>),
    /// Leave (BR_EXIT twice), then stop.
    Shutdown(oneshot::Sender<()>),
}

/// This node's identity and state as it runs.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Me {
    pub user: String,
    pub host: String,
    pub nick: String,
    pub group: String,
    pub port: u16,
    /// The automatic-reply text while away.
    pub away: Option<String>,
}

/// The last send error per destination (cleared when a send there works).
pub type SendErrors = std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<SocketAddr, String>>>;

/// A handle on a running node.
#[derive(Clone)]
pub struct NodeHandle {
    pub commands: mpsc::Sender<NodeCommand>,
    pub events: broadcast::Sender<Event>,
    /// Destinations the socket could not send to, with the reason.
    pub send_errors: SendErrors,
}

impl NodeHandle {
    /// Runs a request on the engine.
    pub async fn request(&self, r: Request) -> Result<Vec<u64>> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(NodeCommand::Request(r, tx)).await.context("the node has stopped")?;
        Ok(rx.await.context("the node has stopped")??)
    }

    /// The peer table.
    pub async fn peers(&self) -> Result<Vec<Peer>> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(NodeCommand::Peers(tx)).await.context("the node has stopped")?;
        rx.await.context("the node has stopped")
    }

    /// Who this node is now.
    pub async fn me(&self) -> Result<Me> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(NodeCommand::Me(tx)).await.context("the node has stopped")?;
        rx.await.context("the node has stopped")
    }

    /// Leaves the LAN and stops the node.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(NodeCommand::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// Our instance marker: the home's random number mixed with the machine's
/// id (`/etc/machine-id`), so that a home copied to a cloned machine is
/// still told apart from the original.
pub fn instance_marker(home: u64) -> String {
    let machine = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
    format!("{:016x}", engine::text_hash(&format!("{home:016x}{}", machine.trim())))
}

/// The addresses our datagrams come from: the bound one, or every local
/// address when bound to all (our broadcasts come back from one of them).
pub fn local_addresses(bind: std::net::IpAddr) -> Vec<std::net::IpAddr> {
    if !bind.is_unspecified() {
        return vec![bind];
    }
    let mut v: Vec<std::net::IpAddr> =
        if_addrs::get_if_addrs().map(|ifs| ifs.into_iter().map(|i| i.ip()).collect()).unwrap_or_default();
    v.push(std::net::IpAddr::from([127, 0, 0, 1]));
    v.sort();
    v.dedup();
    v
}

/// Default presence targets: the limited broadcast and every up IPv4
/// interface's directed broadcast.
pub fn default_targets(port: u16) -> Vec<SocketAddr> {
    let mut t = vec![SocketAddr::from((Ipv4Addr::BROADCAST, port))];
    if let Ok(ifs) = if_addrs::get_if_addrs() {
        for i in ifs {
            if let if_addrs::IfAddr::V4(v4) = &i.addr {
                if let Some(b) = v4.broadcast {
                    if !i.is_loopback() && !t.contains(&SocketAddr::from((b, port))) {
                        t.push(SocketAddr::from((b, port)));
                    }
                }
            }
        }
    }
    t
}

/// The IPMsg port is taken by another program (the message names it).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PortInUse(pub String);

/// Binds the UDP socket as IPMsg does, with a clear error when the port is taken.
pub fn bind_udp(addr: SocketAddr) -> Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_broadcast(true)?;
    let _ = s.set_recv_buffer_size(256 * 1024);
    let _ = s.set_send_buffer_size(256 * 1024);
    if let Err(e) = s.bind(&addr.into()) {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            let who = port_owner(addr.port()).map(|w| format!(" by {w}")).unwrap_or_default();
            return Err(PortInUse(format!(
                "UDP port {} is in use{who}: another IP Messenger client (or a Pigeon daemon) runs here; \
                 stop it, or run `pigeon daemon` and let the commands use it",
                addr.port()
            ))
            .into());
        }
        if e.kind() == std::io::ErrorKind::AddrNotAvailable {
            anyhow::bail!("cannot bind {addr}: no such local address");
        }
        return Err(e).with_context(|| format!("cannot bind UDP {addr}"));
    }
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// Which process holds a UDP port, from /proc (best effort, Linux only).
fn port_owner(port: u16) -> Option<String> {
    let udp: Vec<u64> = ports::bound(port).iter().filter(|b| b.proto == ports::Proto::Udp).map(|b| b.inode).collect();
    let owners = ports::owners(&udp);
    let o = udp.iter().find_map(|i| owners.get(i))?;
    Some(format!("{} (pid {})", o.name, o.pid))
}

struct Clock {
    start: Instant,
}

impl Clock {
    fn now(&self) -> Now {
        let unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        Now { mono: self.start.elapsed(), unix_ms }
    }
}

/// Starts a node on the current tokio runtime: binds, loads state from the
/// store, announces itself. Returns its handle and the task to await.
pub fn start(opts: NodeOptions, store: Store) -> Result<(NodeHandle, tokio::task::JoinHandle<()>)> {
    let addr = SocketAddr::new(opts.bind, opts.engine.port);
    let std_sock = bind_udp(addr)?;
    // Files are served on TCP at the same address and port (§1.1).
    let listener = files::bind_tcp(addr)?;
    let (pictures_tx, pictures_rx) = mpsc::unbounded_channel();
    let pictures = opts.pictures.clone().map(|dir| pictures::PictureSink { dir, tx: pictures_tx });
    files::spawn_with(
        listener,
        store.path().to_path_buf(),
        opts.engine.legacy,
        pictures.clone(),
        opts.engine.keys.clone(),
    );
    let sock = UdpSocket::from_std(std_sock).context("register the UDP socket")?;
    let counter = store.packet_counter().context("read the packet counter")?;
    let since = chrono::Utc::now() - chrono::Duration::days(30);
    let seen = store
        .recent_incoming_keys(since, engine::DEDUP_LIMIT)
        .context("read recent messages")?
        .into_iter()
        .map(|(u, h, n, text)| (engine::PeerKey::new(u, h), n, engine::text_hash(&text)));
    let mut cfg = opts.engine;
    if cfg.instance.is_empty() {
        cfg.instance = instance_marker(store.instance().context("read the instance number")?);
    }
    cfg.local = local_addresses(opts.bind);
    let mut engine = Engine::new(cfg, counter, seen);
    let now = chrono::Utc::now();
    for m in store.outbox().context("read the outbox")? {
        if let Ok(no) = m.packet_no.parse() {
            // Files queued with it are offered with it when the peer is back.
            let files = store
                .live_offers(no, now)
                .context("read the outbox's offers")?
                .into_iter()
                .filter(|o| o.peer.user == m.peer.user && o.peer.host == m.peer.host)
                .map(|o| {
                    let file =
                        engine::OfferFile { path: o.path, name: o.name, dir: o.dir, size: o.size, mtime: o.mtime };
                    (o.file_id, file)
                })
                .collect();
            engine.restore_queued(
                engine::PeerKey::new(m.peer.user, m.peer.host),
                no,
                &m.text,
                m.command,
                files,
                m.time.timestamp_millis(),
            );
        }
    }
    // Peers of earlier runs (the most recent, half the table at most: room
    // stays for the LAN), offline until they announce themselves: a message
    // to one waits in the outbox instead of being refused.
    for r in store.recent_peers(engine::peers::MAX_PEERS / 2).context("read the peers")? {
        if let Ok(addr) = r.addr.parse() {
            let client = pigeon_protocol::ClientKind::from_name(&r.client);
            engine.restore_peer(engine::PeerKey::new(r.user, r.host), &r.nick, &r.group, addr, client, r.marker);
        }
    }
    // The peers' public keys, with the one pinned for each.
    for k in store.peer_keys().context("read the peers' keys")? {
        let capa = pigeon_protocol::pubkey::Capa(k.capa);
        if let Ok(key) = engine::PublicKey::from_parts(capa, &k.exponent, &k.modulus) {
            engine.restore_pubkey(engine::PeerKey::new(k.user, k.host), key, k.pinned);
        }
    }
    let (cmd_tx, cmd_rx) = mpsc::channel(256);
    let (ev_tx, _) = broadcast::channel(4096);
    let (persisted_tx, persisted_rx) = mpsc::unbounded_channel();
    let store_tx = spawn_store(store, persisted_tx, opts.retention);
    let send_errors = SendErrors::default();
    let handle = NodeHandle { commands: cmd_tx, events: ev_tx.clone(), send_errors: send_errors.clone() };
    let out = Sender { sock, errors: send_errors };
    let place = Place { probe: opts.probe, bind: opts.bind, pictures, arrived: pictures_rx };
    let task = tokio::spawn(run(engine, out, cmd_rx, ev_tx, store_tx, persisted_rx, place));
    Ok((handle, task))
}

type StoreJob = (StoreOp, Vec<Transmit>);

/// What the store thread reports back.
enum Stored {
    /// Committed: these datagrams may go out now.
    Send(Vec<Transmit>),
    /// Could not be committed (its datagrams are dropped, so the sender retries).
    Failed(Box<StoreOp>),
}

/// The store thread: commits what arrives in batches, then returns the
/// datagrams that waited for the commit. A batch that fails is retried one
/// operation at a time, so one bad operation loses nothing else.
/// Store operations waiting at most; past it, what peers cause is dropped
/// (a flood cannot grow memory without bound, and an unstored message is
/// not acknowledged, so its sender tries again).
const STORE_QUEUE: usize = 50_000;

/// Incoming messages between two prunings of what strangers sent.
const PRUNE_EVERY: usize = 1024;

fn spawn_store(
    mut store: Store,
    done: mpsc::UnboundedSender<Stored>,
    keep: store::Retention,
) -> mpsc::Sender<StoreJob> {
    // tokio's channel allocates its slots as they fill, not all at once.
    let (tx, mut rx) = mpsc::channel::<StoreJob>(STORE_QUEUE);
    std::thread::Builder::new()
        .name("pigeon-store".into())
        .spawn(move || {
            let prune = |store: &mut Store| {
                if let Err(e) = store.transaction(|tx| tx.prune(&keep)) {
                    tracing::warn!("cannot prune the history: {e}");
                }
            };
            prune(&mut store);
            let mut since_prune = 0;
            while let Some(first) = rx.blocking_recv() {
                let mut batch = vec![first];
                while batch.len() < 1000 {
                    match rx.try_recv() {
                        Ok(j) => batch.push(j),
                        Err(_) => break,
                    }
                }
                since_prune +=
                    batch.iter().filter(|(op, _)| matches!(op, StoreOp::Incoming(_) | StoreOp::Peer { .. })).count();
                let whole = store.transaction(|tx| batch.iter().try_for_each(|(op, _)| apply(tx, op)));
                let mut reports = Vec::new();
                match whole {
                    Ok(()) => reports.push(Stored::Send(batch.into_iter().flat_map(|(_, t)| t).collect())),
                    Err(e) => {
                        tracing::warn!("storing {} operations failed ({e}); retrying one by one", batch.len());
                        for (op, then) in batch {
                            match store.transaction(|tx| apply(tx, &op)) {
                                Ok(()) => reports.push(Stored::Send(then)),
                                Err(e) => {
                                    tracing::error!("cannot store {op:?}: {e}");
                                    reports.push(Stored::Failed(Box::new(op)));
                                }
                            }
                        }
                    }
                }
                for r in reports {
                    if matches!(&r, Stored::Send(t) if t.is_empty()) {
                        continue;
                    }
                    if done.send(r).is_err() {
                        return;
                    }
                }
                if since_prune >= PRUNE_EVERY {
                    since_prune = 0;
                    prune(&mut store);
                }
            }
        })
        .expect("spawn the store thread");
    tx
}

fn op_name(op: &StoreOp) -> &'static str {
    match op {
        StoreOp::Incoming(_) => "an incoming message",
        StoreOp::Peer { .. } => "a peer update",
        StoreOp::Outgoing(_) => "an automatic reply's row",
        _ => "an operation",
    }
}

fn peer_ref(p: &engine::PeerInfo) -> store::PeerRef {
    store::PeerRef {
        user: p.key.user.clone(),
        host: p.key.host.clone(),
        nick: p.nick.clone(),
        addr: p.addr.to_string(),
    }
}

fn time(unix_ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(unix_ms).unwrap_or_default()
}

fn apply(tx: &store::Tx<'_>, op: &StoreOp) -> Result<(), store::StoreError> {
    match op {
        StoreOp::Declined { peer, packet_no } => tx.mark_declined(&peer.user, &peer.host, packet_no.as_str()),
        StoreOp::PeerKey { peer, capa, exponent, modulus } => {
            tx.save_peer_key(&peer.user, &peer.host, *capa, exponent, modulus, chrono::Utc::now())
        }
        StoreOp::Barrier => Ok(()),
        StoreOp::Incoming(m) => {
            let attachments = (!m.attachments.is_empty())
                .then(|| StoredAttachment::to_column(&StoredAttachment::from_wire(&m.attachments)));
            tx.insert_message(&store::MessageRecord {
                id: 0,
                direction: store::Direction::In,
                peer: peer_ref(&m.from),
                packet_no: m.packet_no.to_string(),
                time: time(m.unix_ms),
                text: m.text.clone(),
                command: m.command,
                state: store::MessageState::Unread,
                attachments_json: attachments,
                security: Some(m.security),
            })
            .map(|_| ())
        }
        StoreOp::Outgoing(rows) => {
            for r in rows {
                tx.insert_message(&store::MessageRecord {
                    id: 0,
                    direction: store::Direction::Out,
                    peer: peer_ref(&r.to),
                    packet_no: r.packet_no.to_string(),
                    time: time(r.unix_ms),
                    text: r.text.clone(),
                    command: r.command,
                    state: if r.asks_receipt() { store::MessageState::Sending } else { store::MessageState::Delivered },
                    attachments_json: (!r.offers.is_empty())
                        .then(|| StoredAttachment::to_column(&StoredAttachment::from_offers(&r.offers))),
                    security: None,
                })?;
                for (file_id, f) in &r.offers {
                    tx.insert_offer(&store::OfferRecord {
                        packet_no: r.packet_no,
                        file_id: *file_id,
                        peer: peer_ref(&r.to),
                        path: f.path.clone(),
                        name: f.name.clone(),
                        dir: f.dir,
                        size: f.size,
                        mtime: f.mtime,
                        created: time(r.unix_ms),
                        expires: time(r.offers_expire_ms),
                        released: false,
                    })?;
                }
            }
            Ok(())
        }
        StoreOp::OutState { peer, packet_no, state } => {
            tx.set_out_state(&peer.user, &peer.host, &packet_no.to_string(), (*state).into()).map(|_| ())
        }
        StoreOp::InRead { peer, packet_no } => {
            tx.set_in_state(&peer.user, &peer.host, packet_no.as_str(), store::MessageState::Read).map(|_| ())
        }
        StoreOp::Seen(p) => tx.mark_seen(p.as_ref().map(|k| (k.user.as_str(), k.host.as_str()))).map(|_| ()),
        StoreOp::Peer { info: p, marker } => tx.upsert_peer(&store::PeerRecord {
            user: p.key.user.clone(),
            host: p.key.host.clone(),
            nick: p.nick.clone(),
            group: p.group.clone(),
            addr: p.addr.to_string(),
            client: p.client.name().into(),
            last_seen: chrono::Utc::now(),
            marker: marker.clone(),
        }),
        StoreOp::Counter(n) => tx.set_packet_counter(*n),
        StoreOp::CounterExact(n) => tx.reset_packet_counter(*n),
        StoreOp::Release { peer, packet_no } => tx.release_offers(&peer.user, &peer.host, *packet_no).map(|_| ()),
    }
}

/// The socket, and the record of where sending failed.
struct Sender {
    sock: UdpSocket,
    errors: SendErrors,
}

impl Sender {
    async fn send(&self, t: &Transmit) {
        match self.sock.send_to(&t.payload, t.dst).await {
            Ok(_) => {
                if let Ok(mut e) = self.errors.lock() {
                    if !e.is_empty() {
                        e.remove(&t.dst);
                    }
                }
            }
            Err(err) => {
                // A broadcast on a host with no route fails here; the rest of
                // the node keeps working, and the commands can say why.
                tracing::debug!("send to {}: {err}", t.dst);
                if let Ok(mut e) = self.errors.lock() {
                    e.insert(t.dst, err.to_string());
                }
            }
        }
    }
}

/// Where the node is: the address it binds and the ranges it probes.
struct Place {
    probe: Vec<SocketAddr>,
    bind: IpAddr,
    /// Where pictures are saved, and the saved ones coming back.
    pictures: Option<pictures::PictureSink>,
    arrived: mpsc::UnboundedReceiver<pictures::Arrived>,
}

/// A datagram from our port on an address not known as ours, with our
/// user and host in its header.
fn may_be_ours(engine: &Engine, from: SocketAddr, datagram: &[u8], bind: IpAddr) -> bool {
    let cfg = engine.config();
    if !bind.is_unspecified() || from.port() != cfg.port || cfg.local.contains(&from.ip()) {
        return false;
    }
    pigeon_protocol::Packet::decode(datagram)
        .is_ok_and(|p| p.user == cfg.user.as_bytes() && p.host == cfg.host.as_bytes())
}

async fn run(
    mut engine: Engine,
    out: Sender,
    mut commands: mpsc::Receiver<NodeCommand>,
    events: broadcast::Sender<Event>,
    store: mpsc::Sender<StoreJob>,
    mut persisted: mpsc::UnboundedReceiver<Stored>,
    place: Place,
) {
    let Place { probe, bind, pictures, mut arrived } = place;
    let clock = Clock { start: Instant::now() };
    let mut buf = vec![0u8; 65536];
    let _ = engine.command(clock.now(), Request::Start);
    if !probe.is_empty() {
        let _ = engine.command(clock.now(), Request::Probe(probe));
    }
    let mut stopping: Option<(oneshot::Sender<()>, Instant)> = None;
    // Addresses that sent our name from our port and were found not ours
    // (a twin of ours): not read again for each of their packets.
    let mut not_ours: std::collections::HashSet<IpAddr> = std::collections::HashSet::new();
    loop {
        flush(&mut engine, &out, &events, &store, pictures.as_ref()).await;
        if let Some((_, deadline)) = &stopping {
            if engine.poll_timeout().is_none() || Instant::now() >= *deadline {
                break;
            }
        }
        let mut wake = engine.poll_timeout().map_or(Duration::from_secs(3600), |t| t.saturating_sub(clock.now().mono));
        if let Some((_, deadline)) = &stopping {
            // Leaving: wake at the deadline at the latest (pending messages
            // keep timers a minute away).
            wake = wake.min(deadline.saturating_duration_since(Instant::now()));
        }
        let sleep = tokio::time::sleep(wake);
        tokio::select! {
            r = out.sock.recv_from(&mut buf) => match r {
                Ok((n, from)) => {
                    if may_be_ours(&engine, from, &buf[..n], bind) && !not_ours.contains(&from.ip()) {
                        // Our name, from our port, on an address we did not
                        // know as ours: after a DHCP change, our broadcast
                        // coming back. Read our addresses again.
                        engine.set_local(local_addresses(bind));
                        if !engine.config().local.contains(&from.ip()) {
                            if not_ours.len() >= 1024 {
                                not_ours.clear();
                            }
                            not_ours.insert(from.ip());
                        }
                    }
                    engine.handle(clock.now(), from, &buf[..n])
                }
                Err(e) => tracing::debug!("receive: {e}"),
            },
            Some((from, path)) = arrived.recv() => {
                if !engine.picture(clock.now(), from, &path) {
                    tracing::info!("a picture from nobody we know: deleted");
                    let _ = std::fs::remove_file(&path);
                }
            }
            Some(report) = persisted.recv() => match report {
                Stored::Send(acks) => {
                    for t in acks {
                        out.send(&t).await;
                    }
                }
                Stored::Failed(op) => engine.store_failed(&op),
            },
            c = commands.recv(), if stopping.is_none() => match c {
                Some(NodeCommand::Request(r, reply)) => {
                    let _ = reply.send(engine.command(clock.now(), r));
                }
                Some(NodeCommand::Peers(reply)) => {
                    let mut peers: Vec<Peer> = engine.peers().all().into_iter().cloned().collect();
                    for p in &mut peers {
                        p.key_mark = match engine.pubkey(&p.key) {
                            Some(k) if k.changed() => engine::peers::KeyMark::Changed,
                            Some(_) => engine::peers::KeyMark::Known,
                            None => engine::peers::KeyMark::None,
                        };
                    }
                    let _ = reply.send(peers);
                }
                Some(NodeCommand::Me(reply)) => {
                    let c = engine.config();
                    let _ = reply.send(Me {
                        user: c.user.clone(),
                        host: c.host.clone(),
                        nick: c.nick.clone(),
                        group: c.group.clone(),
                        port: c.port,
                        away: c.away.clone(),
                    });
                }
                Some(NodeCommand::Shutdown(reply)) => {
                    let _ = engine.command(clock.now(), Request::Quit);
                    stopping = Some((reply, Instant::now() + Duration::from_millis(500)));
                }
                None => {
                    let _ = engine.command(clock.now(), Request::Quit);
                    stopping = Some((oneshot::channel().0, Instant::now() + Duration::from_millis(500)));
                }
            },
            _ = sleep => engine.handle_timeout(clock.now()),
        }
    }
    flush(&mut engine, &out, &events, &store, None).await;
    // Let the store thread commit what it has, and send what waited for it.
    drop(store);
    let deadline = tokio::time::sleep(Duration::from_secs(2));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            acks = persisted.recv() => match acks {
                Some(Stored::Send(acks)) => for t in acks { out.send(&t).await; },
                Some(Stored::Failed(_)) => {}
                None => break,
            },
            _ = &mut deadline => break,
        }
    }
    if let Some((reply, _)) = stopping {
        let _ = reply.send(());
    }
}

async fn flush(
    engine: &mut Engine,
    out: &Sender,
    events: &broadcast::Sender<Event>,
    store: &mpsc::Sender<StoreJob>,
    pictures: Option<&pictures::PictureSink>,
) {
    while let Some(o) = engine.poll_output() {
        match o {
            Output::SavePicture(s) => {
                let Some(sink) = pictures.cloned() else { continue };
                // Disk off the engine's task; the engine hears of it again
                // through the sink.
                tokio::task::spawn_blocking(move || {
                    let mut s = s;
                    match sink.save(&s.data) {
                        Ok(path) => {
                            s.data = Vec::new();
                            sink.deliver(engine::PictureFrom::Feiq(s), path)
                        }
                        Err(e) => tracing::warn!("cannot save a picture from {}: {e}", s.peer),
                    }
                });
            }
            Output::Transmit(t) => out.send(&t).await,
            Output::Event(e) => {
                let _ = events.send(e);
            }
            Output::Store { op, then } => match store.try_send((op, then)) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full((op, then))) => {
                    // Caused by peers: dropped, and not acknowledged. (An
                    // automatic reply has gone already; only its row is lost.)
                    let caused_by_peers = match &op {
                        StoreOp::Incoming(_) | StoreOp::Peer { .. } | StoreOp::Barrier => true,
                        StoreOp::Outgoing(rows) => rows.iter().all(engine::Outgoing::is_auto_reply),
                        _ => false,
                    };
                    if caused_by_peers {
                        tracing::warn!("store queue full: dropping {}", op_name(&op));
                        engine.store_failed(&op);
                    } else {
                        // Ours (sends, states, the counter): they wait.
                        let _ = store.send((op, then)).await;
                    }
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            },
        }
    }
}
