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

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use pigeon_protocol::{Charset, Command, DirStreamDecoder, FileRequest, Header, Mode, Opts, RequestKind};

use super::{check_space, join_safe, part_path, unused_name, DirWriter, PartFile, TransferError};

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
    /// The sender is a Pigeon: folder resume may use Pigeon's extension.
    pub pigeon: bool,
    pub version: String,
    pub user: String,
    pub host: String,
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
    /// Starting: `offset` bytes were already there.
    Start { name: &'a str, total: u64, offset: u64 },
    /// Bytes of the whole item so far (files and folders alike).
    Bytes { done: u64 },
    /// A file inside a folder is complete.
    File { path: &'a Path },
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot connect to {addr}: {source} (is TCP 2425 open at the sender?)")]
    Connect { addr: SocketAddr, source: std::io::Error },
    #[error("the transfer from {addr} broke: {source}")]
    Net { addr: SocketAddr, source: std::io::Error },
    #[error("the sender closed the connection after {got} of {expected} bytes (it may have refused the request; fetch again to resume)")]
    Short { got: u64, expected: u64 },
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

/// The request packet, written in one piece (IPMsg parses only the first read).
fn request(src: &Source, item: &Item, offset: u64, hint: Option<(&str, u64)>) -> Vec<u8> {
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
    let no = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_secs());
    let header = Header {
        version: src.version.as_bytes(),
        packet_no: no,
        user: src.user.as_bytes(),
        host: src.host.as_bytes(),
        command: Command::new(mode, opts),
    };
    let mut out = Vec::with_capacity(128);
    pigeon_protocol::write_packet(&mut out, &header, &body, &[]).expect("sanitized identity");
    out
}

/// Fetches `item` into the folder `into`; returns where it landed.
pub fn fetch(
    src: &Source,
    item: &Item,
    into: &Path,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<PathBuf, FetchError> {
    if item.dir {
        fetch_dir(src, item, into, progress)
    } else {
        fetch_file(src, item, into, progress)
    }
}

/// Where a top-level item goes: its name, or `name (1)` if something else
/// has it (a `.part` of the same name is ours to resume).
fn destination(into: &Path, name: &str) -> Result<PathBuf, TransferError> {
    let plain = join_safe(into, name)?;
    if plain.symlink_metadata().is_err() || part_path(&plain).exists() || journal_path(into, name).exists() {
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
    let target = destination(into, &item.name)?;
    let mut part = PartFile::open(&target, item.size)?;
    let offset = part.offset();
    check_space(into, item.size - offset)?;
    progress(Progress::Start { name: &item.name, total: item.size, offset });
    if item.size > 0 || offset < item.size {
        let mut stream = connect(src)?;
        let net = |source| FetchError::Net { addr: src.addr, source };
        stream.write_all(&request(src, item, offset, None)).map_err(net)?;
        let mut buf = vec![0u8; BUFFER];
        // Bytes of this connection; a sender that ignores the offset sends
        // more than `item.size - offset`.
        let mut this_time: u64 = 0;
        let mut restarted = offset == 0;
        while !part.is_complete() {
            let n = match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(net(e)),
            };
            let data = &buf[..n];
            if !restarted && this_time + n as u64 > item.size - offset {
                // It sends from byte 0: what came so far is the file's start.
                restart_from_zero(&mut part, offset, this_time)?;
                restarted = true;
            }
            this_time += n as u64;
            part.write(data)?;
            progress(Progress::Bytes { done: part.offset() });
        }
        if !part.is_complete() {
            return Err(FetchError::Short { got: part.offset(), expected: item.size });
        }
    }
    // The receiver closes (§6.5): dropping the stream does.
    Ok(part.finish(Some(item.mtime))?)
}

/// The sender ignored our offset: the `got` bytes written at `offset` are
/// really bytes 0..got. Move them to the front and continue from `got`.
fn restart_from_zero(part: &mut PartFile, offset: u64, got: u64) -> Result<(), TransferError> {
    use std::io::Seek;
    let path = part.part_path().to_path_buf();
    let err = |e| TransferError::Io { what: "cannot read", path: path.clone(), source: e };
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(&path).map_err(err)?;
    // Zeros written as a hole at the end are not in the length yet.
    if f.metadata().map_err(err)?.len() < offset + got {
        f.set_len(offset + got).map_err(err)?;
    }
    let mut data = vec![0u8; got as usize];
    f.seek(std::io::SeekFrom::Start(offset)).and_then(|_| f.read_exact(&mut data)).map_err(err)?;
    part.restart()?;
    part.write(&data)
}

/// The folder journal: which file a folder fetch was on.
fn journal_path(into: &Path, name: &str) -> PathBuf {
    into.join(format!(".{name}.pigeon-fetch"))
}

fn fetch_dir(
    src: &Source,
    item: &Item,
    into: &Path,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<PathBuf, FetchError> {
    let target = destination(into, &item.name)?;
    let top = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let journal = journal_path(into, &top);
    // Where an earlier attempt stopped: that file and its .part's length.
    let hint = std::fs::read_to_string(&journal).ok().and_then(|rel| {
        let rel = rel.trim().to_string();
        if rel.is_empty() || rel.split('/').any(|c| pigeon_protocol::name::validate_component(c).is_err()) {
            return None;
        }
        let p = target.join(&rel);
        let off = std::fs::metadata(part_path(&p)).map(|m| m.len()).or_else(|_| std::fs::metadata(&p).map(|m| m.len()));
        Some((rel, off.unwrap_or(0)))
    });
    let resumed_bytes = if target.exists() { super::tree_bytes(&target) } else { 0 };
    check_space(into, item.size.saturating_sub(resumed_bytes))?;
    progress(Progress::Start { name: &item.name, total: item.size, offset: resumed_bytes });
    let mut stream = connect(src)?;
    let net = |source| FetchError::Net { addr: src.addr, source };
    let hint_ref = hint.as_ref().filter(|_| src.pigeon).map(|(p, o)| (p.as_str(), *o));
    stream.write_all(&request(src, item, 0, hint_ref)).map_err(net)?;
    let mut dec = DirStreamDecoder::new(if src.utf8 { Charset::Utf8 } else { src.names });
    let mut writer = DirWriter::new(into, &top).with_journal(journal.clone());
    let mut buf = vec![0u8; BUFFER];
    let mut filled = 0;
    let mut done_bytes = resumed_bytes;
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
    let _ = std::fs::remove_file(&journal);
    Ok(writer.root().map(Path::to_path_buf).unwrap_or(target))
}
