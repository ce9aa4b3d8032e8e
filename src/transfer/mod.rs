//! Writing received files and folders safely (DESIGN.md "Receiving
//! safely"), with resume. This module knows nothing of sockets: it is given
//! names, sizes and bytes; [`fetch`] is the TCP client that asks a sender
//! and feeds them in.
//!
//! - Every name from the wire is one path component
//!   ([`pigeon_protocol::name::validate_component`]); nothing is written
//!   outside the target directory; no symlink is followed or created
//!   (files are opened with `O_NOFOLLOW`, directories checked with
//!   `symlink_metadata`).
//! - Nothing is overwritten: a name that exists becomes `name (1).ext`.
//! - Data goes to `name.TAG.part`, TAG tying it to its offer (sender,
//!   packet number, file ID, size, mtime: [`offer_tag`]); its length is
//!   where a later fetch of that offer resumes, and another offer's file of
//!   the same name never resumes into it. Files inside a folder are
//!   `name.part` (the folder is the offer's own). A `.part` is locked
//!   (`flock`) while a fetch writes it: a second fetch of the same offer is
//!   refused, not interleaved.
//! - Only a file with exactly the announced size, and, where the sender
//!   sends one (Pigeon), the SHA-256 it computed while serving, is renamed,
//!   atomically, to its final name (with its modification time); a sender
//!   that sends more than it announced is an error, and the partial file
//!   stays; a checksum that does not match removes it (it cannot be resumed).
//! - Names that the suffixes would push past 255 bytes (the file system's
//!   limit) are shortened at a character boundary, keeping the extension.
//! - Free space is checked before a transfer starts, and for a folder again
//!   for each file, against what its header says is coming.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use pigeon_protocol::attachment::ext;
use pigeon_protocol::name::validate_component;
use pigeon_protocol::{DirEvent, DirHeader};

pub mod fetch;

/// Why a transfer cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("refused {name:?}: {why}")]
    UnsafeName { name: String, why: String },
    #[error("refused: {0} is a symbolic link")]
    Symlink(PathBuf),
    #[error("{name}: the sender sent more than the {expected} bytes it announced")]
    TooLong { name: String, expected: u64 },
    #[error("{name}: {got} of {expected} bytes arrived")]
    Incomplete { name: String, got: u64, expected: u64 },
    #[error("not enough space in {dir}: {needed} bytes needed, {free} free")]
    NoSpace { dir: PathBuf, needed: u64, free: u64 },
    #[error(
        "{name} is being fetched already (by the daemon's auto-accept or another `pigeon fetch`); let that one finish"
    )]
    Busy { name: String },
    #[error("{name}: the data does not match the sender's SHA-256 (changed at the sender, or damaged on the way); the partial file was removed, fetch again")]
    Checksum { name: String },
    #[error("{name}: the folder sent more than the {expected} bytes it announced")]
    FolderTooLong { name: String, expected: u64 },
    #[error("cannot offer {}: the node (user {user}) cannot read it; make it readable for that user", path.display())]
    Unreadable { path: PathBuf, user: String },
    #[error("{what} {path}: {error}")]
    /// (`error` is not a `source`: the message already says it, and a
    /// chain printed with `{:#}` would say it twice.)
    Io { what: &'static str, path: PathBuf, error: std::io::Error },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> TransferError + 'a {
    move |error| TransferError::Io { what, path: path.to_path_buf(), error }
}

/// What an offer announces about a local file or folder: its name, kind,
/// size (a folder's whole tree) and modification time.
pub fn describe(path: &Path) -> Result<crate::engine::OfferFile, TransferError> {
    let path = path.canonicalize().map_err(io("cannot offer", path))?;
    let meta = path.metadata().map_err(io("cannot offer", &path))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if name.is_empty() {
        return Err(TransferError::UnsafeName { name: path.display().to_string(), why: "has no name to offer".into() });
    }
    if !meta.is_dir() && !meta.is_file() {
        return Err(TransferError::UnsafeName { name, why: "is neither a file nor a folder".into() });
    }
    let mtime =
        meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_secs());
    let size = if meta.is_dir() { tree_bytes(&path) } else { meta.len() };
    // Served by this process later: what it cannot read now would fail
    // the receiver's fetch, which no retry can mend.
    if let Some(bad) = first_unreadable(&path) {
        return Err(TransferError::Unreadable { path: bad, user: process_user() });
    }
    Ok(crate::engine::OfferFile { path, name, dir: meta.is_dir(), size, mtime })
}

/// The first file or folder under `p` this process may not read (folders:
/// list and enter); symlinks are not followed, as the file server does.
fn first_unreadable(p: &Path) -> Option<PathBuf> {
    let readable = |p: &Path, mode: libc::c_int| {
        use std::os::unix::ffi::OsStrExt;
        let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) else { return false };
        // SAFETY: c is a valid NUL-terminated path; faccessat only reads it.
        unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), mode, libc::AT_EACCESS) == 0 }
    };
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => {
            if !readable(p, libc::R_OK | libc::X_OK) {
                return Some(p.to_path_buf());
            }
            let rd = std::fs::read_dir(p).ok()?;
            rd.flatten().find_map(|e| first_unreadable(&e.path()))
        }
        Ok(m) if m.is_file() => (!readable(p, libc::R_OK)).then(|| p.to_path_buf()),
        _ => None,
    }
}

/// This process's user name (from /etc/passwd), else its uid.
fn process_user() -> String {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2] == uid.to_string()).then(|| f[0].to_string())
            })
        })
        .unwrap_or_else(|| format!("uid {uid}"))
}

/// Bytes of regular files under `p` (symlinks not followed).
pub(crate) fn tree_bytes(p: &Path) -> u64 {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::read_dir(p).map_or(0, |rd| rd.flatten().map(|e| tree_bytes(&e.path())).sum()),
        Ok(m) if m.is_file() => m.len(),
        _ => 0,
    }
}

/// The suffix of data still arriving.
pub const PART: &str = ".part";

/// The longest file name (bytes) of the usual Linux file systems.
pub const NAME_MAX: usize = 255;

/// What ties a partial file to its offer: 8 hex digits of the SHA-256 of
/// the sender (`user@host`), packet number, file ID, size and mtime.
pub fn offer_tag(sender: &str, packet_no: u64, file_id: u64, size: u64, mtime: u64) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(format!("{sender}\0{packet_no}\0{file_id}\0{size}\0{mtime}"));
    hex::encode(&d[..4])
}

/// `name` shortened so that `extra` more bytes still fit in [`NAME_MAX`]:
/// the stem loses characters at its end, the extension stays when it can.
pub fn fit_name(name: &str, extra: usize) -> String {
    if name.len() + extra <= NAME_MAX {
        return name.to_string();
    }
    let budget = NAME_MAX.saturating_sub(extra);
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 && name.len() - i <= 16 => (&name[..i], &name[i..]),
        _ => (name, ""),
    };
    let keep = budget.saturating_sub(ext.len());
    let mut cut = keep.min(stem.len());
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut out = format!("{}{ext}", &stem[..cut]);
    while out.len() > budget {
        out.pop();
    }
    out
}

/// Checks a wire name and joins it to `dir`.
pub fn join_safe(dir: &Path, name: &str) -> Result<PathBuf, TransferError> {
    validate_component(name)
        .map_err(|e| TransferError::UnsafeName { name: name.chars().take(80).collect(), why: e.to_string() })?;
    if name.ends_with(PART) {
        return Err(TransferError::UnsafeName { name: name.into(), why: "ends with .part".into() });
    }
    Ok(dir.join(name))
}

/// `name (1).ext`, `name (2).ext`, … for the first that does not exist
/// (neither it nor its `.part`), or `name` itself; shortened to fit.
pub fn unused_name(dir: &Path, name: &str) -> PathBuf {
    let taken = |p: &Path| p.symlink_metadata().is_ok() || part_path(p, "").symlink_metadata().is_ok();
    let first = dir.join(name);
    if !taken(&first) {
        return first;
    }
    (1..)
        .map(|n| {
            let mark = format!(" ({n})");
            let short = fit_name(name, mark.len());
            let (stem, ext) = match short.rfind('.') {
                Some(i) if i > 0 => (&short[..i], &short[i..]),
                _ => (short.as_str(), ""),
            };
            dir.join(format!("{stem}{mark}{ext}"))
        })
        .find(|p| !taken(p))
        .expect("some number is free")
}

/// The `.part` path of a final path: `name.TAG.part` for a top-level file
/// of an offer ([`offer_tag`]), `name.part` without a tag; shortened to fit.
pub fn part_path(final_path: &Path, tag: &str) -> PathBuf {
    let name = final_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let suffix = if tag.is_empty() { PART.to_string() } else { format!(".{tag}{PART}") };
    final_path.with_file_name(format!("{}{suffix}", fit_name(&name, suffix.len())))
}

/// Bytes free for an unprivileged user on the file system of `dir`.
pub fn free_space(dir: &Path) -> Result<u64, TransferError> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| TransferError::UnsafeName { name: dir.display().to_string(), why: "holds NUL".into() })?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and a zeroed statvfs to fill.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io("cannot measure free space in", dir)(std::io::Error::last_os_error()));
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

/// Fails unless `needed` bytes fit in `dir`.
pub fn check_space(dir: &Path, needed: u64) -> Result<(), TransferError> {
    let free = free_space(dir)?;
    if needed > free {
        return Err(TransferError::NoSpace { dir: dir.to_path_buf(), needed, free });
    }
    Ok(())
}

/// A directory that must exist as a real directory (not a symlink);
/// returns true if it was created now.
fn ensure_dir(path: &Path) -> Result<bool, TransferError> {
    match path.symlink_metadata() {
        Ok(m) if m.file_type().is_symlink() => Err(TransferError::Symlink(path.to_path_buf())),
        Ok(m) if m.is_dir() => Ok(false),
        Ok(_) => Err(io("not a directory:", path)(std::io::ErrorKind::AlreadyExists.into())),
        Err(_) => std::fs::create_dir(path).map(|_| true).map_err(io("cannot create", path)),
    }
}

/// Renames without ever replacing an existing file: renameat2's
/// RENAME_NOREPLACE, or link + unlink where the file system lacks it.
fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::other);
    let (f, t) = (c(from)?, c(to)?);
    // SAFETY: two valid C strings; AT_FDCWD resolves them like rename(2).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOSYS) => {
            std::fs::hard_link(from, to)?;
            std::fs::remove_file(from)
        }
        _ => Err(e),
    }
}

/// A file being received into its `.part`.
pub struct PartFile {
    final_path: PathBuf,
    part: PathBuf,
    file: File,
    written: u64,
    expected: u64,
    hole_at_end: bool,
    /// SHA-256 of bytes `0..written`, when the sender sends one to compare.
    hasher: Option<Box<sha2::Sha256>>,
}

impl std::fmt::Debug for PartFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartFile").field("part", &self.part).field("written", &self.written).finish()
    }
}

impl PartFile {
    /// Opens (or creates) `name.part` beside `final_path` (a file inside a
    /// folder); see [`PartFile::open_tagged`].
    pub fn open(final_path: &Path, expected: u64) -> Result<PartFile, TransferError> {
        PartFile::open_tagged(final_path, expected, "")
    }

    /// Opens (or creates) the `.part` of `final_path` for the offer `tag`,
    /// locked for this fetch; its length so far is [`PartFile::offset`],
    /// where a fetch resumes. A `.part` longer than the announced size is
    /// started again. Another fetch holding it: [`TransferError::Busy`].
    pub fn open_tagged(final_path: &Path, expected: u64, tag: &str) -> Result<PartFile, TransferError> {
        let part = part_path(final_path, tag);
        let file = open_locked(&part, final_path)?;
        let mut written = file.metadata().map_err(io("cannot read", &part))?.len();
        if written > expected {
            file.set_len(0).map_err(io("cannot truncate", &part))?;
            written = 0;
        }
        let mut f = PartFile {
            final_path: final_path.to_path_buf(),
            part,
            file,
            written,
            expected,
            hole_at_end: false,
            hasher: None,
        };
        if written > 0 {
            f.file.seek(SeekFrom::Start(written)).map_err(io("cannot seek in", &f.part))?;
        }
        Ok(f)
    }

    /// Bytes already received (where to resume).
    pub fn offset(&self) -> u64 {
        self.written
    }

    /// Computes the SHA-256 of the file as it is written (what is on disk
    /// already is read once now), for [`PartFile::digest`].
    pub fn hashing(mut self) -> Result<PartFile, TransferError> {
        self.rehash()?;
        Ok(self)
    }

    /// Hashes bytes `0..written` from disk, with a bounded buffer.
    fn rehash(&mut self) -> Result<(), TransferError> {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        // Sized to what is there: thousands of small files in a folder each
        // start empty, and must not each zero a large buffer.
        let mut buf = vec![0u8; self.written.min(1 << 20) as usize];
        let mut at = 0;
        while at < self.written {
            let n = (self.written - at).min(buf.len() as u64) as usize;
            self.read_at(at, &mut buf[..n])?;
            h.update(&buf[..n]);
            at += n as u64;
        }
        self.hasher = Some(Box::new(h));
        Ok(())
    }

    /// The SHA-256 of everything written, if [`PartFile::hashing`].
    pub fn digest(&self) -> Option<[u8; 32]> {
        use sha2::Digest;
        self.hasher.as_ref().map(|h| (**h).clone().finalize().into())
    }

    /// Compares with the sender's SHA-256; a mismatch removes the `.part`
    /// (its bytes are wrong somewhere: a resume would keep them).
    pub fn check_digest(self, theirs: &[u8; 32]) -> Result<PartFile, TransferError> {
        if self.digest().is_some_and(|ours| &ours != theirs) {
            return Err(self.reject());
        }
        Ok(self)
    }

    /// Its bytes do not match the sender's SHA-256: the `.part` is removed
    /// (a resume would keep the wrong bytes), and this is the error to say.
    pub fn reject(self) -> TransferError {
        let _ = std::fs::remove_file(&self.part);
        TransferError::Checksum { name: self.name() }
    }

    /// The announced size.
    pub fn expected(&self) -> u64 {
        self.expected
    }

    /// Where the data is being written.
    pub fn part_path(&self) -> &Path {
        &self.part
    }

    /// Keeps only the first `offset` bytes (a resume that starts earlier).
    pub fn truncate(&mut self, offset: u64) -> Result<(), TransferError> {
        self.file.set_len(offset).map_err(io("cannot truncate", &self.part))?;
        self.file.seek(SeekFrom::Start(offset)).map_err(io("cannot seek in", &self.part))?;
        self.written = offset;
        self.hole_at_end = false;
        if self.hasher.is_some() {
            self.rehash()?;
        }
        Ok(())
    }

    /// Starts again from byte 0 (a sender that ignored the offset).
    pub fn restart(&mut self) -> Result<(), TransferError> {
        self.truncate(0)
    }

    /// Reads back bytes `at..at + buf.len()` of what is on disk (a hole at
    /// the end reads as zeros).
    pub fn read_at(&self, at: u64, buf: &mut [u8]) -> Result<(), TransferError> {
        use std::os::unix::fs::FileExt;
        let mut done = 0;
        while done < buf.len() {
            let n = self.file.read_at(&mut buf[done..], at + done as u64).map_err(io("cannot read", &self.part))?;
            if n == 0 {
                buf[done..].fill(0);
                break;
            }
            done += n;
        }
        Ok(())
    }

    /// Moves bytes `from..from + len` to `0..len` inside the file, a chunk at
    /// a time (memory stays bounded whatever `len`), and continues writing
    /// at `len`: for a sender that ignored our offset and sent from byte 0.
    pub fn move_to_front(&mut self, from: u64, len: u64) -> Result<(), TransferError> {
        use std::os::unix::fs::FileExt;
        if self.file.metadata().map_err(io("cannot read", &self.part))?.len() < from + len {
            self.file.set_len(from + len).map_err(io("cannot extend", &self.part))?;
        }
        let mut buf = vec![0u8; (len.min(1 << 20)) as usize];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(buf.len() as u64) as usize;
            self.read_at(from + done, &mut buf[..n])?;
            self.file.write_all_at(&buf[..n], done).map_err(io("cannot write", &self.part))?;
            done += n as u64;
        }
        self.truncate(len)
    }

    /// Appends received bytes; more than announced is an error.
    pub fn write(&mut self, data: &[u8]) -> Result<(), TransferError> {
        if self.written + data.len() as u64 > self.expected {
            return Err(TransferError::TooLong { name: self.name(), expected: self.expected });
        }
        if let Some(h) = &mut self.hasher {
            sha2::Digest::update(&mut **h, data);
        }
        // Runs of zeros become holes: a sparse file stays sparse.
        if data.len() >= 4096 && data.iter().all(|&b| b == 0) {
            self.file.seek(SeekFrom::Current(data.len() as i64)).map_err(io("cannot seek in", &self.part))?;
            self.hole_at_end = true;
        } else {
            self.file.write_all(data).map_err(io("cannot write", &self.part))?;
            self.hole_at_end = false;
        }
        self.written += data.len() as u64;
        Ok(())
    }

    fn name(&self) -> String {
        self.final_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }

    /// True once every announced byte arrived.
    pub fn is_complete(&self) -> bool {
        self.written == self.expected
    }

    /// Makes the file final: all bytes there, flushed to disk, renamed to
    /// its final name (or `name (1).ext` if that appeared meanwhile), with
    /// the sender's modification time. Returns the final path.
    pub fn finish(self, mtime: Option<u64>) -> Result<PathBuf, TransferError> {
        if !self.is_complete() {
            return Err(TransferError::Incomplete { name: self.name(), got: self.written, expected: self.expected });
        }
        // A hole at the end is not part of the length yet.
        if self.hole_at_end {
            self.file.set_len(self.expected).map_err(io("cannot extend", &self.part))?;
        }
        // No fsync: a killed process or a broken connection loses nothing
        // (the kernel has the data); only a power cut could, as for every
        // program that does not flush, and flushing every file costs a
        // folder of thousands most of its speed.
        if let Some(t) = mtime {
            let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(t);
            let _ = self.file.set_modified(when);
        }
        let dir = self.final_path.parent().unwrap_or(Path::new("."));
        let name = self.final_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut target = self.final_path.clone();
        loop {
            match rename_noreplace(&self.part, &target) {
                Ok(()) => return Ok(target),
                // Something took the name meanwhile: the next free one.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => target = unused_name(dir, &name),
                Err(e) => return Err(io("cannot create", &target)(e)),
            }
        }
    }
}

/// Takes the fetch's lock on an open `.part` (or journal), or says who has it.
fn lock(file: &File, path: &Path, what: &Path) -> Result<(), TransferError> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor we own; released when it is closed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        let name = what.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        return Err(TransferError::Busy { name });
    }
    Err(io("cannot lock", path)(e))
}

/// The lock a folder fetch holds on its journal while it runs.
pub fn lock_journal(path: &Path, what: &Path) -> Result<File, TransferError> {
    open_locked(path, what)
}

/// Opens (or creates) `path` for this fetch alone: never through a
/// symlink, and locked ([`TransferError::Busy`] if another fetch of `what`
/// holds it).
fn open_locked(path: &Path, what: &Path) -> Result<File, TransferError> {
    if path.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(TransferError::Symlink(path.to_path_buf()));
    }
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o644)
        .open(path)
        .map_err(io("cannot open", path))?;
    lock(&f, path, what)?;
    Ok(f)
}

/// Applies a directory stream to the file system under `root` (the folder
/// the stream's first record creates goes there), safely. Files that are
/// already complete from an earlier attempt are skipped, a `.part` resumes
/// where its data stops being new.
#[derive(Debug)]
pub struct DirWriter {
    parent: PathBuf,
    stack: Vec<PathBuf>,
    /// Per stack entry: created by this fetch (so nothing inside can exist yet).
    fresh: Vec<bool>,
    current: Option<Receiving>,
    /// Final paths of completed files, in order.
    pub done: Vec<PathBuf>,
    /// Bytes written to disk (not counting skipped ones).
    pub written: u64,
    /// Bytes of files already complete before, passed over.
    pub skipped: u64,
    top_name: Option<String>,
    journal: Option<PathBuf>,
    journal_at: Option<std::time::Instant>,
    /// The sender puts each file's SHA-256 in the next record: a finished
    /// file waits for it here before it is renamed.
    hashed: bool,
    awaiting: Option<(PartFile, Option<u64>)>,
    /// Free space not yet promised to a file (measured again when short).
    budget: Option<u64>,
}

#[derive(Debug)]
enum Receiving {
    Writing {
        file: PartFile,
        mtime: Option<u64>,
        seen: u64,
    },
    /// Already complete on disk: discard the data.
    Skipping,
}

impl DirWriter {
    /// A writer that creates the folder inside `parent`, named `top_name`
    /// (the offer's name) rather than whatever the stream's first record says.
    pub fn new(parent: &Path, top_name: &str) -> DirWriter {
        DirWriter {
            parent: parent.to_path_buf(),
            stack: Vec::new(),
            fresh: Vec::new(),
            current: None,
            done: Vec::new(),
            written: 0,
            skipped: 0,
            top_name: Some(top_name.to_string()),
            journal: None,
            journal_at: None,
            hashed: false,
            awaiting: None,
            budget: None,
        }
    }

    /// The sender sends each file's SHA-256 (a Pigeon asked with `PH`):
    /// every file is compared before it is renamed.
    pub fn with_checksums(mut self) -> DirWriter {
        self.hashed = true;
        self
    }

    /// Records in `path` the file being received (relative to the folder),
    /// so that an interrupted fetch can ask a Pigeon to resume there.
    pub fn with_journal(mut self, path: PathBuf) -> DirWriter {
        self.journal = Some(path);
        self
    }

    /// The folder being written.
    pub fn root(&self) -> Option<&Path> {
        self.stack.first().map(PathBuf::as_path)
    }

    /// A file whose data is complete: renamed now, or once the next record
    /// brings its SHA-256.
    fn file_done(&mut self, file: PartFile, mtime: Option<u64>) -> Result<(), TransferError> {
        if self.hashed {
            self.awaiting = Some((file, mtime));
            return Ok(());
        }
        self.done.push(file.finish(mtime)?);
        Ok(())
    }

    /// The record after a file: compare the file with the SHA-256 it
    /// carries (if any: an older Pigeon sends none), then rename it.
    fn settle(&mut self, next: &DirHeader) -> Result<(), TransferError> {
        let Some((file, mtime)) = self.awaiting.take() else { return Ok(()) };
        let theirs = next
            .ext
            .iter()
            .find(|e| e.key == ext::PIGEON_SHA256_PREV)
            .and_then(|e| hex::decode(&e.value).ok())
            .and_then(|v| <[u8; 32]>::try_from(v).ok());
        let file = match theirs {
            Some(d) => file.check_digest(&d)?,
            None => file,
        };
        self.done.push(file.finish(mtime)?);
        Ok(())
    }

    /// The stream is over: a file still waiting for a checksum that never
    /// came (a stream that ends right after a file) is renamed as it is.
    pub fn end(&mut self) -> Result<(), TransferError> {
        if let Some((file, mtime)) = self.awaiting.take() {
            self.done.push(file.finish(mtime)?);
        }
        Ok(())
    }

    /// Applies one event of the stream.
    pub fn apply(&mut self, ev: DirEvent<'_>) -> Result<(), TransferError> {
        if let DirEvent::Dir(h) | DirEvent::File(h) | DirEvent::Parent(h) = &ev {
            self.settle(h)?;
        }
        match ev {
            DirEvent::Dir(h) => {
                let base = self.stack.last().cloned().unwrap_or_else(|| self.parent.clone());
                let name = match self.top_name.take() {
                    Some(top) if self.stack.is_empty() => top,
                    _ => h.name.clone(),
                };
                let path = join_safe(&base, &name)?;
                let fresh = if self.fresh.last().copied().unwrap_or(false) {
                    std::fs::create_dir(&path).map_err(io("cannot create", &path))?;
                    true
                } else {
                    ensure_dir(&path)?
                };
                self.stack.push(path);
                self.fresh.push(fresh);
            }
            DirEvent::File(h) => self.start_file(&h)?,
            DirEvent::Data(d) => match &mut self.current {
                Some(Receiving::Writing { file, seen, .. }) => {
                    // Bytes before the resume point were written last time.
                    let skip = file.offset().saturating_sub(*seen).min(d.len() as u64) as usize;
                    *seen += d.len() as u64;
                    file.write(&d[skip..])?;
                    self.written += (d.len() - skip) as u64;
                    self.skipped += skip as u64;
                }
                Some(Receiving::Skipping) => self.skipped += d.len() as u64,
                None => {}
            },
            DirEvent::FileEnd => match self.current.take() {
                Some(Receiving::Writing { file, mtime, .. }) => self.file_done(file, mtime)?,
                Some(Receiving::Skipping) | None => {}
            },
            DirEvent::Parent(h) => {
                self.fresh.pop();
                if let Some(dir) = self.stack.pop() {
                    if let Some(t) = h.mtime() {
                        if let Ok(f) = File::open(&dir) {
                            let _ = f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(t));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Records the file being received, at most every 200 ms: a resume
    /// then starts at most that much earlier (complete files on the way are
    /// passed over), and thousands of small files cost no thousands of writes.
    /// A journal that cannot be written is an error: a resume would start
    /// from a wrong file.
    fn note_journal(&mut self, path: &Path) -> Result<(), TransferError> {
        let (Some(j), Some(root)) = (&self.journal, self.stack.first()) else { return Ok(()) };
        let due = self.journal_at.is_none_or(|t| t.elapsed() >= std::time::Duration::from_millis(200));
        if due {
            if let Ok(rel) = path.strip_prefix(root) {
                std::fs::write(j, rel.to_string_lossy().as_bytes()).map_err(io("cannot write the journal", j))?;
                self.journal_at = Some(std::time::Instant::now());
            }
        }
        Ok(())
    }

    /// Fails unless `size` more bytes fit: what this file's header says is
    /// coming, not the folder's announced total.
    fn reserve(&mut self, dir: &Path, size: u64) -> Result<(), TransferError> {
        if self.budget.is_none_or(|b| b < size) {
            self.budget = Some(free_space(dir)?);
        }
        let free = self.budget.unwrap_or(0);
        if size > free {
            return Err(TransferError::NoSpace { dir: dir.to_path_buf(), needed: size, free });
        }
        self.budget = Some(free - size);
        Ok(())
    }

    fn open_part(&self, path: &Path, size: u64) -> Result<PartFile, TransferError> {
        let f = PartFile::open(path, size)?;
        if self.hashed {
            f.hashing()
        } else {
            Ok(f)
        }
    }

    fn start_file(&mut self, h: &DirHeader) -> Result<(), TransferError> {
        let dir = self.stack.last().cloned().unwrap_or_else(|| self.parent.clone());
        // A lone file (the whole stream) takes the offer's name too.
        let name =
            if self.stack.is_empty() { self.top_name.take().unwrap_or_else(|| h.name.clone()) } else { h.name.clone() };
        let path = join_safe(&dir, &name)?;
        let attr = |key| h.ext.iter().find(|e| e.key == key).and_then(|e| e.hex_value());
        let plain = attr(ext::PIGEON_OMITTED).is_none() && attr(ext::PIGEON_RESUMED_AT).is_none();
        if plain && self.fresh.last().copied().unwrap_or(false) {
            // In a folder this fetch created: nothing there to resume or skip.
            self.reserve(&dir, h.size)?;
            let file = self.open_part(&path, h.size)?;
            self.note_journal(&path)?;
            self.current = Some(Receiving::Writing { file, mtime: h.mtime(), seen: 0 });
            return Ok(());
        }
        if path.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(TransferError::Symlink(path));
        }
        let complete = |total: u64| {
            path.metadata().is_ok_and(|m| m.is_file() && m.len() == total) && !part_path(&path, "").exists()
        };
        // A Pigeon resuming a folder: this file's data is omitted, we have it.
        if let Some(total) = attr(ext::PIGEON_OMITTED) {
            if !complete(total) {
                return Err(TransferError::Incomplete { name: h.name.clone(), got: 0, expected: total });
            }
            self.skipped += total;
            self.current = Some(Receiving::Skipping);
            return Ok(());
        }
        let resumed_at = attr(ext::PIGEON_RESUMED_AT).unwrap_or(0);
        let total = h.size.saturating_add(resumed_at);
        // Complete from an earlier attempt: same size, no .part beside it.
        if complete(total) {
            // Its data still streams past (counted as it does).
            self.current = Some(Receiving::Skipping);
            return Ok(());
        }
        self.reserve(&dir, h.size)?;
        let mut file = self.open_part(&path, total)?;
        if resumed_at > 0 {
            if file.offset() < resumed_at {
                return Err(TransferError::Incomplete {
                    name: h.name.clone(),
                    got: file.offset(),
                    expected: resumed_at,
                });
            }
            file.truncate(resumed_at)?;
            self.skipped += resumed_at;
        }
        self.note_journal(&path)?;
        self.current = Some(Receiving::Writing { file, mtime: h.mtime(), seen: resumed_at });
        Ok(())
    }
}

#[cfg(test)]
mod tests;
