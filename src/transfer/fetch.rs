//! Fetching an offered file or folder over TCP (protocol.md §6.3–§6.6):
//! one request in one write, the data written as it arrives through
//! [`PartFile`] / [`DirWriter`], resumed from where an earlier attempt
//! stopped. The receiver closes the connection when it has everything.
//!
//! - A file resumes at its `.part`'s length (GETFILEDATA's offset). A sender
//!   that ignores the offset (iptux does) is noticed when more bytes come
//!   than remain: what arrived is moved to the start and the file goes on
//!   from there, cleanly.
//! - A folder from a Pigeon resumes at the file the journal names
//!   (`.NAME.pigeon-fetch` beside it) and that file's offset, so nothing
//!   complete is sent again; from other clients the whole stream comes again
//!   and complete files are passed over.
//!
//! To a sender whose key we hold (a Pigeon, or an IP Messenger whose
//! fingerprinted name matches its key), the request goes encrypted and
//! signed ([`Sealed`], protocol.md §7.7); the answer is plain or AES-256-CTR
//! as asked, and read through [`Incoming`]. An IP Messenger is asked for a
//! single file with GETDIRFILES, as it asks (one record, no resume); a
//! Pigeon with GETFILEDATA and its offset, its extensions in the ciphertext.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use pigeon_protocol::pubkey::{Capa, EncFileRequest, FileBody, KeyPair, PeerKey};
use pigeon_protocol::{Charset, ClientKind, Command, DirStreamDecoder, FileRequest, Header, Mode, Opts, RequestKind};

use super::{
    check_space, fit_name, join_safe, lock_journal, offer_tag, part_path, unused_name, DirWriter, PartFile,
    TransferError,
};

/// A silent sender is given up after this long (IPMsg's receiver: 120 s).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
const BUFFER: usize = 1024 * 1024;

/// Who to ask, and who we are.
#[derive(Debug, Clone)]
pub struct Source {
    /// The sender's address (its TCP port is its UDP port).
    pub addr: SocketAddr,
    /// Our address to connect from (the one the offer was sent to).
    pub bind: Option<IpAddr>,
    /// The offering message's packet number.
    pub packet_no: u64,
    /// The offer had UTF8OPT: ask for UTF-8 names with UTF8OPT.
    pub utf8: bool,
    /// The charset folder entry names come in (UTF-8 from iptux and Pigeon
    /// even without the flag, GBK from FeiQ, else the legacy charset).
    pub names: Charset,
    /// The sender is a Pigeon: folder resume may use Pigeon's extension,
    /// and it sends the SHA-256 of what it serves when asked.
    pub pigeon: bool,
    /// The sender's client (who honours a resume offset).
    pub client: ClientKind,
    /// The sender, `user@host`: with the packet number, file ID, size and
    /// mtime it ties a partial file to its offer.
    pub sender: String,
    pub version: String,
    pub user: String,
    pub host: String,
    /// Ask with an encrypted, signed request (none: a plain one).
    pub sealed: Option<Sealed>,
}

/// What an encrypted request needs.
#[derive(Clone)]
pub struct Sealed {
    /// Our 2048-bit key: it signs the request.
    pub ours: Arc<KeyPair>,
    /// The sender's key: the request is encrypted to it.
    pub theirs: PeerKey,
    /// Ask for the body encrypted (AES-256-CTR with a fresh key).
    pub encrypt_body: bool,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealed(to {}, body {})", self.theirs.fingerprint(), if self.encrypt_body { "AES" } else { "plain" })
    }
}

/// How an encrypted request asked for the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealedAs {
    PlainBody,
    EncryptedBody,
}

impl Sealed {
    fn asked(&self) -> SealedAs {
        if self.encrypt_body {
            SealedAs::EncryptedBody
        } else {
            SealedAs::PlainBody
        }
    }
}

/// What is fetched.
#[derive(Debug, Clone)]
pub struct Item {
    pub id: u64,
    pub name: String,
    pub size: u64,
    pub mtime: u64,
    pub dir: bool,
}

/// Progress, for a bar or JSON events.
#[derive(Debug, Clone)]
pub enum Progress<'a> {
    /// Starting: `offset` bytes were already there; `sealed`: asked with
    /// an encrypted request, and how the body comes.
    Start { name: &'a str, total: u64, offset: u64, sealed: Option<SealedAs> },
    /// Bytes of the whole item so far (files and folders alike).
    Bytes { done: u64 },
    /// A file inside a folder is complete.
    File { path: &'a Path },
}

/// Why a fetch failed.
/// A connection that ended early: nothing at all is a refusal (no retry
/// mends it), a part is worth resuming.
fn short(got: u64, expected: u64) -> String {
    if got == 0 {
        "the sender refused the request: it sent nothing (the offer was cancelled, declined or expired, \
         or the sender cannot read the file); ask the sender"
            .into()
    } else {
        format!("the sender closed the connection after {got} of {expected} bytes; fetch again to resume")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot connect to {addr}: {source} (is TCP 2425 open at the sender?)")]
    Connect { addr: SocketAddr, source: std::io::Error },
    #[error("the transfer from {addr} broke: {source}")]
    Net { addr: SocketAddr, source: std::io::Error },
    #[error("{}", short(*got, *expected))]
    Short { got: u64, expected: u64 },
    #[error("encrypted request: {0}")]
    Sealed(String),
    #[error("the sender's folder stream is invalid: {0}")]
    Stream(#[from] pigeon_protocol::Error),
    #[error(transparent)]
    Transfer(#[from] TransferError),
}

fn connect(src: &Source) -> Result<TcpStream, FetchError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let err = |source| FetchError::Connect { addr: src.addr, source };
    let s = Socket::new(Domain::for_address(src.addr), Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    if let Some(ip) = src.bind.filter(|ip| !ip.is_unspecified()) {
        s.bind(&SocketAddr::new(ip, 0).into()).map_err(err)?;
    }
    s.connect_timeout(&src.addr.into(), Duration::from_secs(10)).map_err(err)?;
    let stream: TcpStream = s.into();
    stream.set_read_timeout(Some(IDLE_TIMEOUT)).map_err(err)?;
    stream.set_write_timeout(Some(Duration::from_secs(30))).map_err(err)?;
    stream.set_nodelay(true).map_err(err)?;
    Ok(stream)
}

impl Source {
    /// IP Messenger and Pigeon send from the offset asked; iptux sends from
    /// byte 0 whatever it is asked, and others are not known to honour it.
    fn honours_offsets(&self) -> bool {
        matches!(self.client, ClientKind::Pigeon | ClientKind::Ipmsg)
    }

    /// The tag of an item's partial file ([`offer_tag`]).
    fn tag(&self, item: &Item) -> String {
        offer_tag(&self.sender, self.packet_no, item.id, item.size, item.mtime)
    }
}

/// A request's packet number: the time in seconds, or one more than the
/// last this process used (an encrypted request's number must grow: IP
/// Messenger refuses one not above the last it saw from us). It stays a
/// 32-bit number, as IP Messenger reads it.
fn request_packet_no() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_secs());
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(last + 1) & u64::from(u32::MAX);
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

/// How the answer to a request comes: its key and counter start when the
/// body is AES-256-CTR.
type BodyKey = Option<([u8; 32], Vec<u8>)>;

/// The request packet, written in one piece (IPMsg parses only the first
/// read), and how its answer comes. `checksum`: ask a Pigeon for the
/// SHA-256 of what it serves (`PH`: 32 bytes after a file's data, attribute
/// `7f03` in a folder's records).
fn request(
    src: &Source,
    item: &Item,
    offset: u64,
    hint: Option<(&str, u64)>,
    checksum: bool,
) -> Result<(Vec<u8>, BodyKey), FetchError> {
    if let Some(sealed) = &src.sealed {
        return sealed_request(src, sealed, item, offset, hint, checksum);
    }
    let (kind, mode, mut opts) = if item.dir {
        // FILEATTACHOPT and the `:0` offset satisfy FeiQ and iptux too (§6.3).
        (RequestKind::Dir, Mode::GETDIRFILES, Opts::FILEATTACHOPT)
    } else {
        (RequestKind::File, Mode::GETFILEDATA, 0)
    };
    if src.utf8 {
        opts |= Opts::UTF8OPT;
    }
    let mut body = Vec::new();
    FileRequest::new(src.packet_no, item.id, Some(offset)).encode(kind, &mut body);
    if let Some((path, off)) = hint {
        body.extend_from_slice(format!(":PR{},{off:x}", hex::encode(path)).as_bytes());
    }
    if checksum {
        // A file request ends with `:` already (pkt:fid:off:).
        if !body.ends_with(b":") {
            body.push(b':');
        }
        body.extend_from_slice(b"PH");
    }
    Ok((packet(src, request_packet_no(), Command::new(mode, opts), &body), None))
}

/// A request packet from us (`src`'s identity) with this number, command and body.
fn packet(src: &Source, packet_no: u64, command: Command, body: &[u8]) -> Vec<u8> {
    let header = Header {
        version: src.version.as_bytes(),
        packet_no,
        user: src.user.as_bytes(),
        host: src.host.as_bytes(),
        command,
    };
    let mut out = Vec::with_capacity(128 + body.len());
    pigeon_protocol::write_packet(&mut out, &header, body, &[]).expect("sanitized identity");
    out
}

/// An encrypted, signed request (§7.7). A Pigeon gets GETFILEDATA with the
/// offset for a file and its extensions inside; another client GETDIRFILES
/// for everything, as IP Messenger asks.
fn sealed_request(
    src: &Source,
    sealed: &Sealed,
    item: &Item,
    offset: u64,
    hint: Option<(&str, u64)>,
    checksum: bool,
) -> Result<(Vec<u8>, BodyKey), FetchError> {
    let kind = if item.dir || !src.pigeon { RequestKind::Dir } else { RequestKind::File };
    let mut extensions = Vec::new();
    if src.pigeon {
        if let Some((path, off)) = hint {
            extensions.push(format!("PR{},{off:x}", hex::encode(path)));
        }
        if checksum {
            extensions.push("PH".into());
        }
    }
    let no = request_packet_no();
    let nonce = no.to_string();
    let body = if sealed.encrypt_body {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| FetchError::Sealed(format!("no randomness for the body key: {e}")))?;
        FileBody::Aes256Ctr(key)
    } else {
        FileBody::Plain
    };
    let r = EncFileRequest {
        kind,
        packet_no: src.packet_no,
        file_id: item.id,
        offset: if kind == RequestKind::File { offset } else { 0 },
        body: body.clone(),
        request_packet_no: no,
        extensions: extensions.join(":").into_bytes(),
    };
    let choice = sealed.theirs.negotiate(Capa::PIGEON).ok_or_else(|| {
        FetchError::Sealed(format!("the sender's key (capability {}) offers nothing we can use", sealed.theirs.capa()))
    })?;
    let text = r
        .encrypt(&choice, &sealed.theirs, Some(&sealed.ours), nonce.as_bytes())
        .map_err(|e| FetchError::Sealed(format!("cannot encrypt the request: {e}")))?;
    let mode = if kind == RequestKind::Dir { Mode::GETDIRFILES } else { Mode::GETFILEDATA };
    let mut opts = r.opts();
    if src.utf8 {
        opts |= Opts::UTF8OPT;
    }
    if item.dir {
        opts |= Opts::FILEATTACHOPT;
    }
    let mut out = packet(src, no, Command::new(mode, opts), text.as_bytes());
    // It ends at its NUL (an encrypted request has no colon count to end it).
    if out.last() != Some(&0) {
        out.push(0);
    }
    let key = match body {
        FileBody::Aes256Ctr(k) => Some((k, nonce.into_bytes())),
        FileBody::Plain => None,
    };
    Ok((out, key))
}

/// The answer's bytes: decrypted when the body is AES-256-CTR, after any
/// bytes put back (what came after a record header read ahead).
struct Incoming {
    stream: TcpStream,
    key: BodyKey,
    at: u64,
    back: Vec<u8>,
}

impl Incoming {
    fn new(stream: TcpStream, key: BodyKey) -> Incoming {
        Incoming { stream, key, at: 0, back: Vec::new() }
    }

    fn set_read_timeout(&self, t: Option<Duration>) -> std::io::Result<()> {
        self.stream.set_read_timeout(t)
    }
}

impl Read for Incoming {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if !self.back.is_empty() {
            let n = buf.len().min(self.back.len());
            buf[..n].copy_from_slice(&self.back[..n]);
            self.back.drain(..n);
            return Ok(n);
        }
        let n = self.stream.read(buf)?;
        if let Some((key, nonce)) = &self.key {
            pigeon_protocol::crypto::aes256_ctr_apply(key, nonce, &mut buf[..n], self.at);
        }
        self.at += n as u64;
        Ok(n)
    }
}

/// Reads the one record header that comes before a single file's data
/// when it was asked for with GETDIRFILES (IP Messenger's encrypted
/// request); what came after it is put back.
fn single_record(input: &mut Incoming, names: Charset, item: &Item) -> Result<(), FetchError> {
    let mut dec = DirStreamDecoder::new(names);
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let (used, ev) = dec.decode(&buf)?;
        if let Some(ev) = ev {
            let pigeon_protocol::DirEvent::File(h) = ev else {
                return Err(FetchError::Stream(pigeon_protocol::Error::Malformed {
                    what: "file record",
                    why: "the sender answered a file request with a folder".into(),
                }));
            };
            if h.size != item.size {
                return Err(FetchError::Stream(pigeon_protocol::Error::Malformed {
                    what: "file record",
                    why: format!("{} bytes announced, the offer said {}", h.size, item.size),
                }));
            }
            input.back = buf[used..].to_vec();
            return Ok(());
        }
        let n =
            input.read(&mut chunk).map_err(|e| FetchError::Net { addr: SocketAddr::from(([0; 4], 0)), source: e })?;
        if n == 0 {
            return Err(FetchError::Short { got: 0, expected: item.size });
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Fetches `item` into the folder `into`; returns where it landed.
pub fn fetch(
    src: &Source,
    item: &Item,
    into: &Path,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<PathBuf, FetchError> {
    let once = |src: &Source, progress: &mut dyn FnMut(Progress<'_>)| {
        if item.dir {
            fetch_dir(src, item, into, progress)
        } else {
            fetch_file(src, item, into, progress)
        }
    };
    let r = once(src, progress);
    match (&r, &src.sealed) {
        // A sender that takes no encrypted request (a Pigeon of before
        // them) sends nothing: ask again in plain, as everyone did before.
        // Not when the body was to be encrypted: that is not given up.
        (Err(FetchError::Short { got: 0, .. }), Some(s)) if !s.encrypt_body => {
            tracing::info!("{} took no encrypted request; asking again without encryption", src.sender);
            once(&Source { sealed: None, ..src.clone() }, progress)
        }
        _ => r,
    }
}

/// Where a top-level item goes: its name, unless something else has it
/// (then `name (1)`): a `.part` (or journal) of this same offer is ours to
/// resume; another offer's are not.
fn destination(into: &Path, name: &str, tag: &str, dir: bool) -> Result<PathBuf, TransferError> {
    let plain = join_safe(into, name)?;
    let ours = if dir { journal_path(into, name, tag).exists() } else { part_path(&plain, tag).exists() };
    if plain.symlink_metadata().is_err() || ours {
        return Ok(plain);
    }
    Ok(unused_name(into, name))
}

fn fetch_file(
    src: &Source,
    item: &Item,
    into: &Path,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<PathBuf, FetchError> {
    let tag = src.tag(item);
    let target = destination(into, &item.name, &tag, false)?;
    let mut part = PartFile::open_tagged(&target, item.size, &tag)?;
    let checksum = src.pigeon;
    let held = part.offset();
    // Hashing costs more than receiving: a thread of its own does it.
    let mut background = checksum.then(|| BackgroundHash::start(part.part_path().to_path_buf(), held));
    // From a sender that may ignore an offset, ask for everything and
    // compare what we hold as it comes again: bounded memory, and the
    // result is the sender's bytes whatever it does.
    // An IP Messenger asked with an encrypted GETDIRFILES sends the whole file.
    let one_record = src.sealed.is_some() && !src.pigeon;
    let ask = if src.honours_offsets() && !one_record { held } else { 0 };
    check_space(into, item.size - held)?;
    let sealed = src.sealed.as_ref().map(Sealed::asked);
    progress(Progress::Start { name: &item.name, total: item.size, offset: held, sealed });
    if item.size > held || checksum {
        let mut stream = connect(src)?;
        let net = |source| FetchError::Net { addr: src.addr, source };
        let (req, key) = request(src, item, ask, None, checksum)?;
        stream.write_all(&req).map_err(net)?;
        let mut stream = Incoming::new(stream, key);
        if one_record {
            single_record(&mut stream, if src.utf8 { Charset::Utf8 } else { src.names }, item).map_err(
                |e| match e {
                    FetchError::Net { source, .. } => net(source),
                    e => e,
                },
            )?;
        }
        let mut buf = vec![0u8; BUFFER];
        let mut ours = vec![0u8; BUFFER];
        let mut trailer = Vec::with_capacity(32);
        // The file position of the next byte the sender sends.
        let mut pos = ask;
        let mut streamed: u64 = 0;
        let mut moved = false;
        let mut probed = false;
        loop {
            if pos >= item.size && (!checksum || trailer.len() >= 32) {
                if ask == 0 || moved || checksum || probed {
                    break;
                }
                // All we asked for came. A sender that ignored the offset
                // sends more now (its reads may have ended exactly there):
                // look once, briefly.
                probed = true;
                stream.set_read_timeout(Some(Duration::from_millis(500))).map_err(net)?;
            }
            let n = match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e)
                    if probed && matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
                {
                    break
                }
                Err(e) => return Err(net(e)),
            };
            if probed {
                stream.set_read_timeout(Some(IDLE_TIMEOUT)).map_err(net)?;
            }
            let mut data = &buf[..n];
            if checksum && pos + data.len() as u64 > item.size {
                let k = (item.size - pos) as usize;
                trailer.extend_from_slice(&data[k..]);
                data = &data[..k];
            }
            if ask > 0 && !moved && streamed + data.len() as u64 > item.size - ask {
                // It ignored the offset and sends from byte 0: what came so
                // far, written at `ask`, is the file's start.
                part.move_to_front(ask, streamed)?;
                if background.take().is_some() {
                    part = part.hashing()?;
                }
                pos = streamed;
                moved = true;
            }
            streamed += data.len() as u64;
            // Bytes we hold already: compared, rewritten from the first
            // that differs.
            while !data.is_empty() && pos < part.offset() {
                let k = (data.len() as u64).min(part.offset() - pos) as usize;
                part.read_at(pos, &mut ours[..k])?;
                match data[..k].iter().zip(&ours[..k]).position(|(a, b)| a != b) {
                    Some(i) => {
                        if background.take().is_some() {
                            part = part.hashing()?;
                        }
                        part.truncate(pos + i as u64)?;
                        pos += i as u64;
                        data = &data[i..];
                    }
                    None => {
                        pos += k as u64;
                        data = &data[k..];
                    }
                }
            }
            if !data.is_empty() {
                part.write(data)?;
                if let Some(b) = &mut background {
                    b.feed(data);
                }
                pos += data.len() as u64;
            }
            progress(Progress::Bytes { done: pos.max(part.offset()).min(item.size) });
        }
        if !part.is_complete() || pos < item.size {
            return Err(FetchError::Short { got: part.offset().min(pos), expected: item.size });
        }
        match trailer.len() {
            // A Pigeon of round 1 sends none: the size is what is checked.
            0 => {}
            n if n < 32 => return Err(FetchError::Short { got: item.size, expected: item.size }),
            _ => {
                let theirs: [u8; 32] = trailer[..32].try_into().expect("32 bytes");
                let ours = match background.take() {
                    Some(b) => Some(b.finish()?),
                    None => part.digest(),
                };
                if ours.is_some_and(|o| o != theirs) {
                    return Err(part.reject().into());
                }
            }
        }
    }
    // The receiver closes (§6.5): dropping the stream does.
    Ok(part.finish(Some(item.mtime))?)
}

/// The SHA-256 of a file being received, computed on a thread of its own:
/// the receiving thread hands each piece over (a copy into one of four
/// recycled buffers) and goes on; on a real LAN a second core hashes while
/// the first receives.
struct BackgroundHash {
    tx: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    free: std::sync::mpsc::Receiver<Vec<u8>>,
    thread: Option<std::thread::JoinHandle<Result<[u8; 32], TransferError>>>,
}

impl BackgroundHash {
    /// Starts with the bytes `0..held` already in `part` (read by the thread).
    fn start(part: PathBuf, held: u64) -> BackgroundHash {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
        let (free_tx, free) = std::sync::mpsc::channel();
        for _ in 0..4 {
            let _ = free_tx.send(Vec::new());
        }
        let thread = std::thread::spawn(move || {
            use sha2::Digest;
            use std::os::unix::fs::FileExt;
            let mut h = sha2::Sha256::new();
            if held > 0 {
                let err = |e| TransferError::Io { what: "cannot read", path: part.clone(), error: e };
                let f = std::fs::File::open(&part).map_err(err)?;
                let mut buf = vec![0u8; held.min(BUFFER as u64) as usize];
                let mut at = 0;
                while at < held {
                    let want = (held - at).min(buf.len() as u64) as usize;
                    let n = f.read_at(&mut buf[..want], at).map_err(err)?;
                    if n == 0 {
                        // A hole at the end reads as nothing: zeros.
                        buf[..want].fill(0);
                        h.update(&buf[..want]);
                        at += want as u64;
                        continue;
                    }
                    h.update(&buf[..n]);
                    at += n as u64;
                }
            }
            for piece in rx {
                h.update(&piece);
                let _ = free_tx.send(piece);
            }
            Ok(h.finalize().into())
        });
        BackgroundHash { tx: Some(tx), free, thread: Some(thread) }
    }

    fn feed(&mut self, data: &[u8]) {
        let mut piece = self.free.recv().unwrap_or_default();
        piece.clear();
        piece.extend_from_slice(data);
        if let Some(tx) = &self.tx {
            let _ = tx.send(piece);
        }
    }

    fn finish(mut self) -> Result<[u8; 32], TransferError> {
        self.tx = None;
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(r)) => r,
            _ => Err(TransferError::Io {
                what: "cannot compute the SHA-256 of",
                path: PathBuf::new(),
                error: std::io::Error::other("the hashing thread failed"),
            }),
        }
    }
}

/// The folder journal of an offer's folder: which file its fetch was on
/// (and the lock a running fetch holds); shortened to fit.
fn journal_path(into: &Path, name: &str, tag: &str) -> PathBuf {
    let suffix = format!(".{tag}.pigeon-fetch");
    into.join(format!(".{}{suffix}", fit_name(name, suffix.len() + 1)))
}

/// What a folder may send beyond its announced size (files that grew
/// between the offer and the fetch): 1 % and 1 MiB.
pub fn folder_slack(size: u64) -> u64 {
    size / 100 + (1 << 20)
}

fn fetch_dir(
    src: &Source,
    item: &Item,
    into: &Path,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<PathBuf, FetchError> {
    let tag = src.tag(item);
    let target = destination(into, &item.name, &tag, true)?;
    let top = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let journal = journal_path(into, &top, &tag);
    let _lock = lock_journal(&journal, &target)?;
    // Where an earlier attempt stopped: that file and its .part's length.
    let hint = std::fs::read_to_string(&journal).ok().and_then(|rel| {
        let rel = rel.trim().to_string();
        if rel.is_empty() || rel.split('/').any(|c| pigeon_protocol::name::validate_component(c).is_err()) {
            return None;
        }
        let p = target.join(&rel);
        let off =
            std::fs::metadata(part_path(&p, "")).map(|m| m.len()).or_else(|_| std::fs::metadata(&p).map(|m| m.len()));
        Some((rel, off.unwrap_or(0)))
    });
    let resumed_bytes = if target.exists() { super::tree_bytes(&target) } else { 0 };
    check_space(into, item.size.saturating_sub(resumed_bytes))?;
    let sealed = src.sealed.as_ref().map(Sealed::asked);
    progress(Progress::Start { name: &item.name, total: item.size, offset: resumed_bytes, sealed });
    let mut stream = connect(src)?;
    let net = |source| FetchError::Net { addr: src.addr, source };
    let hint_ref = hint.as_ref().filter(|_| src.pigeon).map(|(p, o)| (p.as_str(), *o));
    let checksum = src.pigeon;
    let (req, key) = request(src, item, 0, hint_ref, checksum)?;
    stream.write_all(&req).map_err(net)?;
    let mut stream = Incoming::new(stream, key);
    let mut dec = DirStreamDecoder::new(if src.utf8 { Charset::Utf8 } else { src.names });
    let mut writer = DirWriter::new(into, &top).with_journal(journal.clone());
    if checksum {
        writer = writer.with_checksums();
    }
    let limit = item.size.saturating_add(folder_slack(item.size));
    let mut buf = vec![0u8; BUFFER];
    let mut filled = 0;
    let mut done_bytes = resumed_bytes;
    let mut streamed: u64 = 0;
    loop {
        if filled == buf.len() {
            // A header never exceeds the limit, so a full buffer is all data.
            return Err(FetchError::Stream(pigeon_protocol::Error::Malformed {
                what: "directory stream",
                why: "no progress".into(),
            }));
        }
        let n = match stream.read(&mut buf[filled..]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(net(e)),
        };
        filled += n;
        let mut pos = 0;
        loop {
            let (used, ev) = dec.decode(&buf[pos..filled])?;
            pos += used;
            let Some(ev) = ev else { break };
            if let pigeon_protocol::DirEvent::Data(d) = &ev {
                done_bytes += d.len() as u64;
                // What this connection carries (a resume may send again
                // files we hold: they still count once here).
                streamed += d.len() as u64;
                if streamed > limit {
                    return Err(TransferError::FolderTooLong { name: item.name.clone(), expected: item.size }.into());
                }
            }
            let finished_before = writer.done.len();
            writer.apply(ev)?;
            if writer.done.len() > finished_before {
                progress(Progress::File { path: writer.done.last().expect("just pushed") });
            }
        }
        buf.copy_within(pos..filled, 0);
        filled -= pos;
        progress(Progress::Bytes { done: done_bytes.min(item.size) });
        if dec.is_done() {
            break;
        }
        if n == 0 {
            return Err(FetchError::Short { got: done_bytes, expected: item.size });
        }
    }
    writer.end()?;
    let _ = std::fs::remove_file(&journal);
    Ok(writer.root().map(Path::to_path_buf).unwrap_or(target))
}
