//! The TCP file server (protocol.md §6.3–§6.6): answers GETFILEDATA and
//! GETDIRFILES on the node's port, for live offers only and to their
//! addressee only (the request's source address and user name, packet
//! number and file ID must all match an offer). Every request form of §6.3
//! is read (hex-then-decimal IDs, with or without trailing `:` or NUL, split
//! across reads). File data goes out with `sendfile`; each connection has
//! its own thread and timeouts, so a slow or silent client stalls nobody:
//! a request's first byte must come within 3 s, one address holds at most
//! [`MAX_PER_ADDRESS`] connections, and idle connections never hold one of
//! the [`MAX_CONNECTIONS`] transfer slots. A file fetched whole by its
//! addressee is marked so in the store: the offer ends (after a grace).
//! iptux's pasted pictures come on this port too (SENDSUBLAYER|MSGPICOPT):
//! they are handed to [`super::pictures`].
//!
//! Pigeon extensions, in fields after the standard ones (other clients
//! never send them, and never get what they ask for):
//! - `PR<hex path>,<hex offset>` in a GETDIRFILES: resume a folder at that
//!   file and offset. Files before it go as headers only (size 0, attribute
//!   `7f01` = their size), that file from the offset (`7f02` = the offset).
//! - `PH`: send the SHA-256 of each file, computed from the bytes read
//!   while serving (a resumed file's start is read for it too): 32 bytes
//!   after a file's data; in a folder, attribute `7f03` (64 hex digits) on
//!   the record after each file. The receiver compares before it renames.
//!
//! Encrypted, signed requests (ENCRYPTOPT, §7.7) are opened by
//! [`super::sealed`] (which also carries the extension fields inside the
//! ciphertext); their body goes plain or AES-256-CTR, as the requester asks.

use std::fs::File;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pigeon_protocol::attachment::{ext, ExtAttr};
use pigeon_protocol::charset::{self, Charset};
use pigeon_protocol::request::{request_framing, Framing};
use pigeon_protocol::{ClientKind, DirHeader, FileRequest, Mode, Opts, Packet, RequestKind};

use pigeon_protocol::pubkey::FileBody;

use crate::engine::{OurKeys, PictureFrom};
use crate::net::pictures::PictureSink;
use crate::net::sealed::{Out, Sealed};

use crate::store::{OfferRecord, Store};

/// At most this many transfers at once; more requests are refused.
pub const MAX_CONNECTIONS: usize = 64;
/// At most this many connections at once, transfers or not yet (each has
/// a thread until its request comes or [`FIRST_BYTE_TIMEOUT`]).
pub const MAX_OPEN: usize = 256;
/// At most this many at once from one address: one peer cannot take every
/// slot.
pub const MAX_PER_ADDRESS: usize = 8;
/// The first byte of a request must come within this time (a connection
/// that says nothing gives its slot back soon); the whole request within
/// [`REQUEST_TIMEOUT`].
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(3);
/// A request must arrive within this time.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A client that takes nothing for this long is dropped (IPMsg: 180 s).
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Nesting served at most (the receiver's limit is 64 too).
const MAX_DEPTH: usize = 64;

/// What the server needs.
pub struct FileServer {
    /// Opened at the first request: an idle daemon keeps one connection.
    store: Mutex<Option<Store>>,
    db: PathBuf,
    legacy: Charset,
    /// Transfers running.
    active: AtomicUsize,
    /// Connections open, per address: idle ones do not hold a transfer slot.
    per_address: Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
    open: AtomicUsize,
    /// Where iptux's pictures go (none: refused).
    pictures: Option<PictureSink>,
    /// Our keys, for encrypted requests (none: refused).
    sealed: Option<Sealed>,
}

/// A transfer running; its slot is given back when dropped.
struct Transfer<'a>(&'a AtomicUsize);

impl Drop for Transfer<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A transfer slot, given back when dropped (whatever happens to the thread).
struct Slot {
    server: Arc<FileServer>,
    ip: std::net::IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.server.open.fetch_sub(1, Ordering::SeqCst);
        if let Ok(mut m) = self.server.per_address.lock() {
            if let Some(n) = m.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&self.ip);
                }
            }
        }
    }
}

impl FileServer {
    /// A slot for a connection from `ip`, unless all are taken or this
    /// address has its share ([`MAX_PER_ADDRESS`]).
    fn slot(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<Slot> {
        let mut m = self.per_address.lock().ok()?;
        let mine = m.entry(ip).or_insert(0);
        if *mine >= MAX_PER_ADDRESS || self.open.load(Ordering::SeqCst) >= MAX_OPEN {
            if *mine == 0 {
                m.remove(&ip);
            }
            return None;
        }
        *mine += 1;
        self.open.fetch_add(1, Ordering::SeqCst);
        Some(Slot { server: self.clone(), ip })
    }

    /// A transfer slot, once a request named a live offer.
    fn transfer(&self) -> Result<Transfer<'_>, ServeError> {
        if self.active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            self.active.fetch_sub(1, Ordering::SeqCst);
            return Err(ServeError::Refused(format!("{MAX_CONNECTIONS} transfers already running")));
        }
        Ok(Transfer(&self.active))
    }
}

/// Starts serving on `listener` in a thread of its own.
pub fn spawn(listener: TcpListener, db: PathBuf, legacy: Charset) -> std::thread::JoinHandle<()> {
    spawn_with(listener, db, legacy, None, None)
}

/// [`spawn`], keeping the pictures iptux peers send, and opening encrypted
/// requests with `keys`.
pub fn spawn_with(
    listener: TcpListener,
    db: PathBuf,
    legacy: Charset,
    pictures: Option<PictureSink>,
    keys: Option<Arc<OurKeys>>,
) -> std::thread::JoinHandle<()> {
    let server = Arc::new(FileServer {
        pictures,
        sealed: keys.map(Sealed::new),
        store: Mutex::new(None),
        db,
        legacy,
        active: AtomicUsize::new(0),
        per_address: Mutex::new(std::collections::HashMap::new()),
        open: AtomicUsize::new(0),
    });
    std::thread::Builder::new()
        .name("pigeon-files".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(stream) = conn else { continue };
                let Ok(peer) = stream.peer_addr() else { continue };
                let Some(slot) = server.slot(peer.ip()) else {
                    tracing::warn!(
                        "file server: no slot for {peer} ({MAX_OPEN} open, or {MAX_PER_ADDRESS} of its own)"
                    );
                    continue;
                };
                let s = server.clone();
                // A thread that cannot start drops its closure, and the slot with it.
                let spawned = std::thread::Builder::new().name("pigeon-transfer".into()).spawn(move || {
                    let _slot = slot;
                    if let Err(e) = s.serve(stream) {
                        tracing::info!("file request from {peer}: {e}");
                    }
                });
                if let Err(e) = spawned {
                    tracing::warn!("file server: cannot start a transfer thread: {e}");
                }
            }
        })
        .expect("spawn the file server")
}

/// Binds the TCP listener beside the UDP socket, with a clear error.
pub fn bind_tcp(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    if let Err(e) = s.bind(&addr.into()) {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            return Err(super::PortInUse(format!(
                "TCP port {} is in use: another IP Messenger client runs here",
                addr.port()
            ))
            .into());
        }
        return Err(e.into());
    }
    s.listen(128)?;
    Ok(s.into())
}

/// Reads one request: complete at its NUL or its last field, or whatever
/// arrived when the client goes quiet (some clients send neither).
pub fn read_request(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    read_request_and_rest(stream).map(|(r, _)| r)
}

/// [`read_request`], and what came after the request in the same reads
/// (the start of an iptux picture).
fn read_request_and_rest(stream: &mut TcpStream) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        // The first byte comes soon or never; once something arrived, a
        // short silence ends it.
        let first = deadline - REQUEST_TIMEOUT + FIRST_BYTE_TIMEOUT;
        let wait = if buf.is_empty() {
            first.saturating_duration_since(Instant::now()).max(Duration::from_millis(1))
        } else {
            left.min(Duration::from_millis(300))
        };
        if buf.is_empty() && Instant::now() >= first {
            break;
        }
        stream.set_read_timeout(Some(wait))?;
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if let Framing::Complete(len) = request_framing(&buf) {
                    // A Pigeon ends its request with NUL, after extension
                    // fields (`PR`, `PH`) that the colon count would cut
                    // off if TCP split the request there.
                    let pigeon_unfinished = buf.starts_with(b"1_pigeon") && !buf[..len].contains(&0);
                    if !pigeon_unfinished {
                        let rest = buf.split_off(len);
                        return Ok((buf, rest));
                    }
                }
                if buf.len() > 4096 {
                    // (An iptux picture's header ends at its NUL, well before.)
                    return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "request longer than 4 KiB"));
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                if !buf.is_empty() {
                    break;
                }
            }
            Err(e) => return Err(e),
        }
    }
    if buf.is_empty() {
        return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no request"));
    }
    Ok((buf, Vec::new()))
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("not a file request: {0}")]
    BadRequest(String),
    #[error("refused: {0}")]
    Refused(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl FileServer {
    fn serve(&self, mut stream: TcpStream) -> Result<(), ServeError> {
        let peer = stream.peer_addr()?;
        let (raw, rest) = read_request_and_rest(&mut stream)?;
        if let Some(header) = picture_header(&raw) {
            let Some(sink) = &self.pictures else {
                return Err(ServeError::Refused("pictures are not kept by this node".into()));
            };
            // Nothing is read from an address no peer of ours has used (the
            // engine checks the sender again once it is saved).
            if !self.known_address(peer.ip())? {
                return Err(ServeError::Refused(format!("a picture from {}, not a peer's address", peer.ip())));
            }
            let path = sink.receive(&mut stream, &rest)?;
            tracing::info!("{peer} sent a picture ({})", path.display());
            sink.deliver(PictureFrom::Iptux { from: peer.ip(), header }, path);
            return Ok(());
        }
        let p = Packet::decode(&raw).map_err(|e| ServeError::BadRequest(e.to_string()))?;
        let kind = FileRequest::kind_of(&p).ok_or_else(|| ServeError::BadRequest(format!("mode {}", p.mode())))?;
        let (req, ext, body, nonce, from_anywhere) = if p.opts().has(Opts::ENCRYPTOPT) {
            let sealed = self.sealed.as_ref().ok_or_else(|| {
                ServeError::Refused("an encrypted request, and this node has no keys to open it".into())
            })?;
            let cs = charset::detect(p.opts(), ClientKind::from_version(p.version), None, self.legacy, p.user);
            let (user, host) = (cs.decode(p.user), cs.decode(p.host));
            let pinned = self.with_store(|s| s.peer_keys())?.into_iter().find(|k| k.user == user && k.host == host);
            // No RSA work for strangers: a request is opened only for a
            // name we hold a key of, or from a peer's address (nothing else
            // could be served anyway).
            if pinned.is_none() && !self.known_address(peer.ip())? {
                return Err(ServeError::Refused(format!(
                    "an encrypted request from {}, neither a peer's address nor a name we hold a key of",
                    peer.ip()
                )));
            }
            let o = sealed.open(&p, kind, &user, &host, pinned.as_ref())?;
            (o.req, o.extensions, o.body, o.nonce, o.from_anywhere)
        } else {
            let req = FileRequest::decode(p.body()).map_err(|e| ServeError::BadRequest(e.to_string()))?;
            let ext = extension_fields(p.body()).map(<[u8]>::to_vec).collect();
            (req, ext, FileBody::Plain, Vec::new(), false)
        };
        let offer = self.find(&p, &req, (!from_anywhere).then_some(peer))?;
        let _transfer = self.transfer()?;
        stream.set_write_timeout(Some(IDLE_TIMEOUT))?;
        stream.set_nodelay(true)?;
        let client = ClientKind::from_version(p.version);
        let names = if p.opts().has(Opts::UTF8OPT) || matches!(client, ClientKind::Iptux | ClientKind::Pigeon) {
            Charset::Utf8
        } else if client == ClientKind::Feiq {
            Charset::Gbk
        } else {
            self.legacy
        };
        let how = match (&body, p.opts().has(Opts::ENCRYPTOPT)) {
            (FileBody::Aes256Ctr(_), _) => ", encrypted request, AES-256-CTR body",
            (_, true) => ", encrypted request, plain body",
            _ => "",
        };
        tracing::info!("{peer} fetches {:?} ({kind:?}) of offer {}{how}", offer.name, offer.packet_no);
        let checksum = ext.iter().any(|f| f == b"PH");
        let mut out = Out::new(&stream, &body, &nonce);
        match (kind, offer.dir) {
            (RequestKind::File, false) => {
                let mut f = File::open(&offer.path)?;
                let offset = req.offset.unwrap_or(0).min(offer.size);
                let (sent, digest) = send_file(&mut out, &mut f, offset, offer.size - offset, checksum)?;
                if sent == offer.size - offset {
                    if let Some(d) = digest {
                        out.write_all(&d)?;
                    }
                    self.fetched(&offer);
                }
            }
            (RequestKind::Dir, true) => {
                let hint = ext.iter().find_map(|f| resume_hint_field(f));
                let mut w = DirSender {
                    out: &mut out,
                    names,
                    hint,
                    skipping: false,
                    sent: 0,
                    pending: Vec::new(),
                    checksum,
                    prev: None,
                };
                w.skipping = w.hint.is_some();
                w.dir(&offer.path, &offer.name, "", 0)?;
                w.flush()?;
                self.fetched(&offer);
            }
            // IPMsg asks for single files this way when encrypting: one record.
            (RequestKind::Dir, false) => {
                let mut f = File::open(&offer.path)?;
                let mut h = Vec::new();
                DirHeader::file(&offer.name, offer.size, offer.mtime).encode(names, &mut h).map_err(io_err)?;
                out.write_all(&h)?;
                if out.send_file(&mut f, 0, offer.size, None)? == offer.size {
                    self.fetched(&offer);
                }
            }
            (RequestKind::File, true) => {
                return Err(ServeError::Refused("a folder is fetched with GETDIRFILES".into()))
            }
        }
        drop(out);
        // The receiver closes when it has everything (§6.5); wait for that briefly.
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let _ = stream.read(&mut [0u8; 64]);
        Ok(())
    }

    /// All of one file or folder went to its addressee: the offer ends
    /// (after a grace, `store::offers::FETCHED_GRACE`).
    fn fetched(&self, offer: &OfferRecord) {
        let Ok(mut guard) = self.store.lock() else { return };
        if let Some(store) = guard.as_mut() {
            if let Err(e) = store.transaction(|tx| tx.mark_fetched(offer, chrono::Utc::now())) {
                tracing::warn!("cannot mark offer {} fetched: {e}", offer.packet_no);
            }
        }
    }

    /// The offer a request names, if the requester is its addressee.
    /// True if a peer we know was last seen at `ip`.
    fn known_address(&self, ip: std::net::IpAddr) -> Result<bool, ServeError> {
        let peers = self.with_store(|s| s.peers())?;
        Ok(peers.iter().any(|p| p.addr.parse::<SocketAddr>().is_ok_and(|a| a.ip() == ip)))
    }

    /// Runs `f` on the store, opened at the first use.
    fn with_store<T>(&self, f: impl FnOnce(&Store) -> Result<T, crate::store::StoreError>) -> Result<T, ServeError> {
        let mut guard = self.store.lock().map_err(|_| ServeError::Refused("store unavailable".into()))?;
        if guard.is_none() {
            *guard = Some(Store::open(&self.db).map_err(|e| ServeError::Refused(e.to_string()))?);
        }
        f(guard.as_ref().expect("just opened")).map_err(|e| ServeError::Refused(e.to_string()))
    }

    /// The offer a request names, if the requester is its addressee (at
    /// `peer`'s address, unless the request was signed with its pinned key).
    fn find(&self, p: &Packet<'_>, req: &FileRequest, peer: Option<SocketAddr>) -> Result<OfferRecord, ServeError> {
        let offers = self.with_store(|s| s.live_offers(req.packet_no, chrono::Utc::now()))?;
        select_offer_from(&offers, p, req, peer, self.legacy)
    }
}

/// A request's packet, kind and fields; anything else is a bad request.
/// The header of an iptux picture connection (SENDSUBLAYER|MSGPICOPT),
/// if `raw` is one. Its personal photo (PHOTOPICOPT) is not taken.
fn picture_header(raw: &[u8]) -> Option<Vec<u8>> {
    let p = Packet::decode(raw).ok()?;
    let c = p.command;
    (c.mode() == Mode::IPTUX_SENDSUBLAYER && c.0 & 0xff00 == Opts::IPTUX_MSGPICOPT).then(|| raw.to_vec())
}

pub fn parse_request(raw: &[u8]) -> Result<(Packet<'_>, RequestKind, FileRequest), ServeError> {
    let p = Packet::decode(raw).map_err(|e| ServeError::BadRequest(e.to_string()))?;
    let kind = FileRequest::kind_of(&p).ok_or_else(|| ServeError::BadRequest(format!("mode {}", p.mode())))?;
    let req = FileRequest::decode(p.body()).map_err(|e| ServeError::BadRequest(e.to_string()))?;
    Ok((p, kind, req))
}

/// Of the live offers of the request's packet number, the one it names, if
/// the requester (`peer`, and the user name in its header) is its addressee.
pub fn select_offer(
    offers: &[OfferRecord],
    p: &Packet<'_>,
    req: &FileRequest,
    peer: SocketAddr,
    legacy: Charset,
) -> Result<OfferRecord, ServeError> {
    select_offer_from(offers, p, req, Some(peer), legacy)
}

/// [`select_offer`]; with no address, any of the offer's (a request signed
/// with the addressee's pinned key).
fn select_offer_from(
    offers: &[OfferRecord],
    p: &Packet<'_>,
    req: &FileRequest,
    peer: Option<SocketAddr>,
    legacy: Charset,
) -> Result<OfferRecord, ServeError> {
    {
        let for_them: Vec<&OfferRecord> = offers
            .iter()
            .filter(|o| peer.is_none_or(|peer| o.peer.addr.parse::<SocketAddr>().is_ok_and(|a| a.ip() == peer.ip())))
            .collect();
        if for_them.is_empty() {
            let from = peer.map_or("a signed request".to_string(), |p| p.ip().to_string());
            return Err(ServeError::Refused(format!("no live offer {} for {from}", req.packet_no)));
        }
        // Hex first (as IPMsg writes it), then decimal (clients that echo the list).
        let offer = for_them
            .iter()
            .find(|o| o.file_id == req.file_id)
            .or_else(|| for_them.iter().find(|o| Some(o.file_id) == req.file_id_decimal))
            .ok_or_else(|| ServeError::Refused(format!("offer {} has no file {:x}", req.packet_no, req.file_id)))?;
        let cs = charset::detect(p.opts(), ClientKind::from_version(p.version), None, legacy, p.user);
        let user = cs.decode(p.user);
        if !user.eq_ignore_ascii_case(&offer.peer.user) {
            return Err(ServeError::Refused(format!("offer {} is for {}, not {user}", req.packet_no, offer.peer.user)));
        }
        Ok((*offer).clone())
    }
}

fn io_err(e: pigeon_protocol::Error) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
}

/// Pigeon's extension fields: those after `pkt:fid:off`.
pub fn extension_fields(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    body.split(|&b| b == b':' || b == 0).skip(3)
}

/// `PH` among the extension fields: the receiver wants SHA-256s.
pub fn wants_checksum(body: &[u8]) -> bool {
    extension_fields(body).any(|f| f == b"PH")
}

/// `PR<hex path>,<hex offset>` among the extension fields of a GETDIRFILES.
pub fn resume_hint(body: &[u8]) -> Option<(String, u64)> {
    resume_hint_field(extension_fields(body).find(|f| f.starts_with(b"PR"))?)
}

/// One `PR<hex path>,<hex offset>` field.
fn resume_hint_field(field: &[u8]) -> Option<(String, u64)> {
    let rest = field.strip_prefix(b"PR")?;
    let comma = rest.iter().position(|&b| b == b',')?;
    let path = hex::decode(&rest[..comma]).ok()?;
    let offset = u64::from_str_radix(std::str::from_utf8(&rest[comma + 1..]).ok()?.trim_end_matches('\0'), 16).ok()?;
    Some((String::from_utf8(path).ok()?, offset))
}

/// Writes `len` bytes of `file` from `offset` with sendfile(2); a file that
/// shrank meanwhile ends the transfer early (the receiver sees it short).
pub fn send_range(stream: &TcpStream, file: &mut File, offset: u64, len: u64) -> std::io::Result<u64> {
    let mut off = offset as libc::off_t;
    let mut left = len;
    while left > 0 {
        let want = left.min(1 << 30) as usize;
        // SAFETY: valid descriptors of an open socket and file; `off` is ours.
        let n = unsafe { libc::sendfile(stream.as_raw_fd(), file.as_raw_fd(), &mut off, want) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            if e.kind() == std::io::ErrorKind::WouldBlock {
                return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the receiver stopped taking data"));
            }
            return Err(e);
        }
        if n == 0 {
            break;
        }
        left -= n as u64;
    }
    Ok(len - left)
}

/// Sends `len` bytes of `f` from `offset`, with the SHA-256 of its bytes
/// `0..offset + len` when `checksum`: beside sendfile when plain, inline
/// when the body is encrypted (its bytes are read and copied anyway).
fn send_file(
    out: &mut Out<'_>,
    f: &mut File,
    offset: u64,
    len: u64,
    checksum: bool,
) -> std::io::Result<(u64, Option<[u8; 32]>)> {
    if !checksum {
        return Ok((out.send_file(f, offset, len, None)?, None));
    }
    if !out.encrypts() {
        let (sent, digest) = send_with_digest(out.stream(), f, offset, len)?;
        return Ok((sent, Some(digest)));
    }
    let mut h = hash_prefix(f, offset)?;
    let sent = out.send_file(f, offset, len, Some(&mut h))?;
    Ok((sent, Some(sha2::Digest::finalize(h).into())))
}

/// SHA-256 of the first `len` bytes of `f`, leaving it positioned there.
fn hash_prefix(f: &mut File, len: u64) -> std::io::Result<sha2::Sha256> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; (len.min(1 << 20)) as usize];
    let mut left = len;
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = f.read(&mut buf[..want])?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(h)
}

/// Sends `len` bytes of `f` from `offset` with sendfile(2) while another
/// thread computes the SHA-256 of the file's bytes `0..offset + len`, read
/// from the same file as it is served (positional reads on both sides: the
/// two do not disturb each other, and on a real LAN the hash costs no
/// time). Returns the bytes sent and the digest.
fn send_with_digest(stream: &TcpStream, f: &mut File, offset: u64, len: u64) -> std::io::Result<(u64, [u8; 32])> {
    let hashed = f.try_clone()?;
    let hasher = std::thread::Builder::new().name("pigeon-sha256".into()).spawn(move || {
        use sha2::Digest;
        use std::os::unix::fs::FileExt;
        let mut h = sha2::Sha256::new();
        let total = offset + len;
        let mut buf = vec![0u8; total.min(1 << 20) as usize];
        let mut at = 0;
        while at < total {
            let want = (total - at).min(buf.len() as u64) as usize;
            match hashed.read_at(&mut buf[..want], at) {
                Ok(0) => break,
                Ok(n) => {
                    h.update(&buf[..n]);
                    at += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(<[u8; 32]>::from(h.finalize()))
    })?;
    let sent = send_range(stream, f, offset, len);
    let digest = hasher.join().map_err(|_| std::io::Error::other("the hashing thread failed"))??;
    Ok((sent?, digest))
}

struct DirSender<'a, 'b> {
    out: &'a mut Out<'b>,
    names: Charset,
    hint: Option<(String, u64)>,
    skipping: bool,
    sent: u64,
    /// Headers and small files gathered into large writes.
    pending: Vec<u8>,
    /// The receiver asked for SHA-256s (`PH`).
    checksum: bool,
    /// The SHA-256 of the file just sent, for the next record.
    prev: Option<String>,
}

/// Files up to this size travel inside the gathered writes, larger ones by sendfile.
const SMALL_FILE: u64 = 64 * 1024;
const GATHER: usize = 256 * 1024;

fn mtime_of(m: &std::fs::Metadata) -> u64 {
    m.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_secs())
}

impl DirSender<'_, '_> {
    /// The record after a file carries that file's SHA-256.
    fn with_prev(&mut self, h: &DirHeader) -> DirHeader {
        let mut h = h.clone();
        if let Some(d) = self.prev.take() {
            h.ext.push(ExtAttr { key: ext::PIGEON_SHA256_PREV, value: d });
        }
        h
    }

    fn header(&mut self, h: &DirHeader) -> std::io::Result<()> {
        let h = self.with_prev(h);
        h.encode(self.names, &mut self.pending).map_err(io_err)?;
        if self.pending.len() >= GATHER {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.pending.is_empty() {
            self.out.write_all(&self.pending)?;
            self.pending.clear();
        }
        Ok(())
    }

    /// One folder, depth first, entries sorted by name (a resume relies on
    /// the order); symlinks and special files are left out.
    fn dir(&mut self, path: &Path, name: &str, rel: &str, depth: usize) -> std::io::Result<()> {
        if depth >= MAX_DEPTH {
            return Err(std::io::Error::other(format!("{} nests deeper than {MAX_DEPTH}", path.display())));
        }
        let meta = std::fs::symlink_metadata(path)?;
        self.header(&DirHeader::dir(name, mtime_of(&meta)))?;
        let mut entries: Vec<(String, PathBuf, std::fs::Metadata)> = std::fs::read_dir(path)?
            .filter_map(Result::ok)
            .filter_map(|e| {
                let m = e.path().symlink_metadata().ok()?;
                Some((e.file_name().to_string_lossy().into_owned(), e.path(), m))
            })
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        for (n, p, m) in entries {
            let r = if rel.is_empty() { n.clone() } else { format!("{rel}/{n}") };
            if m.is_dir() {
                self.dir(&p, &n, &r, depth + 1)?;
            } else if m.is_file() {
                self.file(&p, &n, &r, &m)?;
            }
        }
        self.header(&DirHeader::parent(mtime_of(&meta)))
    }

    fn file(&mut self, path: &Path, name: &str, rel: &str, m: &std::fs::Metadata) -> std::io::Result<()> {
        let size = m.len();
        let mtime = mtime_of(m);
        let mut offset = 0;
        if self.skipping {
            match &self.hint {
                Some((p, off)) if p == rel => {
                    self.skipping = false;
                    offset = (*off).min(size);
                }
                _ => {
                    // Before the resume point: the receiver has it.
                    let mut h = DirHeader::file(name, 0, mtime);
                    h.ext.push(ExtAttr::hex(ext::PIGEON_OMITTED, size));
                    return self.header(&h);
                }
            }
        }
        let mut h = DirHeader::file(name, size - offset, mtime);
        if offset > 0 {
            h.ext.push(ExtAttr::hex(ext::PIGEON_RESUMED_AT, offset));
        }
        let mut f = File::open(path)?;
        let sent = if size - offset <= SMALL_FILE {
            // Small: header and data join the gathered write (and the hash
            // of a resumed file's start, read here, is fed with them).
            let mut hasher = if self.checksum { Some(hash_prefix(&mut f, offset)?) } else { None };
            let h = self.with_prev(&h);
            h.encode(self.names, &mut self.pending).map_err(io_err)?;
            let start = self.pending.len();
            use std::io::Seek;
            f.seek(std::io::SeekFrom::Start(offset))?;
            let got = f.take(size - offset).read_to_end(&mut self.pending)? as u64;
            self.pending.truncate(start + got as usize);
            if let Some(hs) = &mut hasher {
                sha2::Digest::update(hs, &self.pending[start..]);
            }
            if self.pending.len() >= GATHER {
                self.flush()?;
            }
            if let Some(hs) = hasher {
                self.prev = Some(hex::encode(sha2::Digest::finalize(hs)));
            }
            got
        } else {
            // Large: send_file hashes from byte 0 itself (beside sendfile,
            // or inline when encrypting).
            self.header(&h)?;
            self.flush()?;
            let (sent, digest) = send_file(self.out, &mut f, offset, size - offset, self.checksum)?;
            self.prev = digest.map(hex::encode);
            sent
        };
        self.sent += sent;
        if sent < size - offset {
            return Err(std::io::Error::other(format!("{} shrank while being sent", path.display())));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Found by the file_request fuzz target's author: the colon count
    /// ended a request split by TCP right before a Pigeon's extension
    /// fields, which were then lost.
    #[test]
    fn a_pigeon_request_split_before_its_extensions_is_read_whole() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let client = std::thread::spawn(move || {
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(b"1_pigeon 0.1.0:5:me:pc:96:6553f290:75bcd16:0:").unwrap();
            std::thread::sleep(Duration::from_millis(100));
            c.write_all(b"PH\0").unwrap();
            std::thread::sleep(Duration::from_millis(500));
        });
        let (mut s, _) = l.accept().unwrap();
        let raw = read_request(&mut s).unwrap();
        client.join().unwrap();
        let (p, _, _) = parse_request(&raw).unwrap();
        assert!(wants_checksum(p.body()), "{:?}", String::from_utf8_lossy(&raw));
    }

    #[test]
    fn resume_hint_field() {
        let body = format!("6553f290:75bcd17:0:PR{},1f4", hex::encode("sub/报告.txt"));
        assert_eq!(resume_hint(body.as_bytes()), Some(("sub/报告.txt".into(), 500)));
        assert!(!wants_checksum(body.as_bytes()));
        let body = format!("6553f290:75bcd17:0:PR{},1f4:PH\0", hex::encode("a"));
        assert_eq!(resume_hint(body.as_bytes()), Some(("a".into(), 500)));
        assert!(wants_checksum(body.as_bytes()));
        assert!(wants_checksum(b"6553f290:75bcd17:0:PH"));
        assert_eq!(resume_hint(b"6553f290:75bcd17:0"), None);
        assert_eq!(resume_hint(b"1:2:0:PRzz,1"), None);
    }
}
