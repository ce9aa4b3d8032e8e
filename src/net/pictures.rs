//! Pictures peers paste into a chat, saved in the home's `pictures/`
//! folder: iptux's, which come on TCP as SENDSUBLAYER|MSGPICOPT (a header,
//! a NUL, the raw image until the connection closes; iptux-extras.md), and
//! FeiQ's, which the engine puts together from UDP fragments. Once a file
//! is written, [`PictureSink::deliver`] hands it to the node, which asks
//! the engine who sent it ([`crate::engine::Engine::picture`]): a picture
//! from nobody we know is deleted again.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::engine::pictures::{extension, MAX_PICTURE};
use crate::engine::PictureFrom;

/// A received picture waits for the engine here.
pub type Arrived = (PictureFrom, PathBuf);

/// Where pictures go, and the way back to the node.
#[derive(Clone)]
pub struct PictureSink {
    pub dir: PathBuf,
    pub tx: mpsc::UnboundedSender<Arrived>,
}

/// Free space kept on the home's disk: a picture that would leave less is
/// refused.
const KEEP_FREE: u64 = 256 << 20;
/// A picture connection that sends nothing for this long is dropped.
const IDLE: Duration = Duration::from_secs(30);
/// A whole picture must come within this time (a trickle cannot hold a
/// connection slot for ever).
const WHOLE: Duration = Duration::from_secs(120);

impl PictureSink {
    /// Hands a saved picture to the node.
    pub fn deliver(&self, from: PictureFrom, path: PathBuf) {
        if let Err(mpsc::error::SendError((_, path))) = self.tx.send((from, path)) {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Writes a whole picture (FeiQ's) under a new name; returns its path.
    pub fn save(&self, data: &[u8]) -> std::io::Result<PathBuf> {
        self.room(data.len() as u64)?;
        let tmp = self.temp()?;
        let written = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            self.place(&tmp, extension(data))
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    /// Reads an iptux picture from its connection (`first`: bytes that came
    /// with the header), at most [`MAX_PICTURE`] bytes; returns its path.
    pub fn receive(&self, stream: &mut TcpStream, first: &[u8]) -> std::io::Result<PathBuf> {
        self.room(MAX_PICTURE)?;
        let tmp = self.temp()?;
        let result = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(first)?;
            let mut head = first[..first.len().min(16)].to_vec();
            let mut total = first.len() as u64;
            stream.set_read_timeout(Some(IDLE))?;
            let mut buf = vec![0u8; 64 * 1024];
            let started = std::time::Instant::now();
            loop {
                if started.elapsed() > WHOLE {
                    return Err(std::io::Error::other("a picture that takes more than 2 minutes"));
                }
                let n = stream.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                total += n as u64;
                if total > MAX_PICTURE {
                    return Err(std::io::Error::other(format!("picture larger than {} MiB", MAX_PICTURE >> 20)));
                }
                if head.len() < 16 {
                    let more = (16 - head.len()).min(n);
                    head.extend_from_slice(&buf[..more]);
                }
                f.write_all(&buf[..n])?;
            }
            if total == 0 {
                return Err(std::io::Error::other("an empty picture"));
            }
            f.sync_all()?;
            self.place(&tmp, extension(&head))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    fn room(&self, bytes: u64) -> std::io::Result<()> {
        create_private(&self.dir)?;
        let free = crate::transfer::free_space(&self.dir).map_err(std::io::Error::other)?;
        if free < bytes + KEEP_FREE {
            return Err(std::io::Error::other(format!(
                "not enough free space in {} for a picture",
                self.dir.display()
            )));
        }
        Ok(())
    }

    fn temp(&self) -> std::io::Result<PathBuf> {
        let mut b = [0u8; 6];
        getrandom::fill(&mut b).map_err(std::io::Error::other)?;
        let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
        Ok(self.dir.join(format!(".incoming-{hex}.part")))
    }

    /// Renames a finished picture to `YYYYMMDD-HHMMSS[-n].ext`, never over
    /// another file.
    fn place(&self, tmp: &Path, ext: &str) -> std::io::Result<PathBuf> {
        let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S");
        for n in 0..1000 {
            let name = if n == 0 { format!("{stamp}.{ext}") } else { format!("{stamp}-{n}.{ext}") };
            let to = self.dir.join(name);
            // A hard link fails if the name exists: no race with another picture.
            match std::fs::hard_link(tmp, &to) {
                Ok(()) => {
                    let _ = std::fs::remove_file(tmp);
                    return Ok(to);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(std::io::Error::other("no free picture name"))
    }
}

fn create_private(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_under_new_names_with_their_kind() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, _rx) = mpsc::unbounded_channel();
        let sink = PictureSink { dir: dir.path().join("pictures"), tx };
        let a = sink.save(b"\x89PNG\r\n\x1a\nfirst").unwrap();
        let b = sink.save(b"\x89PNG\r\n\x1a\nsecond").unwrap();
        assert_ne!(a, b);
        assert_eq!(a.extension().unwrap(), "png");
        assert_eq!(std::fs::read(&b).unwrap(), b"\x89PNG\r\n\x1a\nsecond");
        // Only the two pictures: no temporary file left.
        assert_eq!(std::fs::read_dir(&sink.dir).unwrap().count(), 2);
    }
}
