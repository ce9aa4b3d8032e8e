//! What a node keeps to itself, run as a user would with the real binary on
//! loopback: a home, history and control socket readable by the user only
//! whatever the umask, and a control socket that refuses an endless line.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{wait_for, PORT};

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o777
}

/// With umask 000 (everything world-writable by default), the home the
/// daemon creates is 0700, its database and socket 0600.
#[test]
fn home_database_and_socket_are_private_whatever_the_umask() {
    let area = tempfile::tempdir().unwrap();
    let home = area.path().join("new-home");
    let child = Command::new("sh")
        .arg("-c")
        .arg("umask 000 && exec \"$@\"")
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_pigeon"))
        .arg("--home")
        .arg(&home)
        .args(["--port", PORT, "--bind", "127.0.0.71", "--broadcast", "127.0.0.72", "--user", "uma", "daemon"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _guard = Killed(child);
    let sock = home.join("pigeon.sock");
    wait_for(|| UnixStream::connect(&sock).is_ok(), "the control socket");
    assert_eq!(mode(&home), 0o700, "the home");
    assert_eq!(mode(&home.join("pigeon.db")), 0o600, "the database");
    assert_eq!(mode(&sock), 0o600, "the socket");
    for extra in ["pigeon.db-wal", "pigeon.db-shm"] {
        let p = home.join(extra);
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{extra}");
        }
    }
    // Nothing of the private binding is left beside the socket.
    let left: Vec<String> =
        std::fs::read_dir(&home).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(!left.iter().any(|n| n.starts_with(".pigeon-sock")), "{left:?}");

    // A request line without end is cut at 1 MiB with a clear answer.
    let mut s = UnixStream::connect(&sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..17 {
        if s.write_all(&chunk).is_err() {
            break; // it stopped reading: fine
        }
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.contains("request longer than"), "{answer:?}");
}

/// Ends a child by PID when dropped, a panic included (bounded: TERM, then KILL).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's PID.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while matches!(self.0.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
