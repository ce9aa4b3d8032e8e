//! Files and folders with the real binary on loopback: Pigeon ↔ Pigeon both
//! ways (files, empty files, a sparse file over 4 GiB, a tree of 1,000 files
//! with empty folders and Chinese and `:` names), resume after kill -9 of the
//! sender, a hostile sender, offers served only to their addressee, and GBK
//! names for a peer that does not read UTF-8. SHA-256 compared with
//! `sha256sum`.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{accept_within, pigeon, random_file, sha256, tree, wait_for, Daemon, PORT};
use pigeon_protocol::{Charset, DirHeader, FileRequest, Mode, Packet};
use serde_json::{json, Value};

fn offers(d: &Daemon) -> Vec<Value> {
    let out = d.cli(&["offers", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

/// Runs `fetch` for the newest offer; returns (exit code, JSON events).
fn fetch(d: &Daemon, to: &Path) -> (Option<i32>, Vec<Value>) {
    let id = offers(d).last().expect("an offer")["id"].as_i64().unwrap().to_string();
    let out = d.cli(&["fetch", &id, "--to", to.to_str().unwrap(), "--json"]);
    let events = String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    (out.status.code(), events)
}

fn offer(from: &Daemon, to_nick: &str, files: &[&Path]) {
    let mut args = vec!["send".to_string(), to_nick.to_string()];
    for f in files {
        args.push("--file".into());
        args.push(f.to_str().unwrap().into());
    }
    args.push("files for you".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = from.cli(&args);
    assert!(
        out.status.success(),
        "send --file: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn files_and_folders_both_ways() {
    let a = Daemon::start("127.0.0.31", "ann", "Ann", &["127.0.0.32"]);
    let b = Daemon::start("127.0.0.32", "ben", "Ben", &["127.0.0.31"]);
    wait_for(|| a.peers().len() == 1 && b.peers().len() == 1, "discovery");
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("报告 v1:final.bin");
    random_file(&file, 3_000_000, 1);
    let empty = src.path().join("empty.txt");
    std::fs::write(&empty, b"").unwrap();
    let folder = src.path().join("项目 tree");
    for i in 0..1000 {
        let sub = folder.join(format!("part {}", i / 100)).join(if i % 2 == 0 { "子目录" } else { "b:c" });
        std::fs::create_dir_all(&sub).unwrap();
        random_file(&sub.join(format!("文件 {i}.dat")), (i * 37) % 5000, i as u64);
    }
    std::fs::create_dir_all(folder.join("empty folder/nested empty")).unwrap();
    // The same file twice, the second time by another path: offered once.
    let again = src.path().join(".").join("报告 v1:final.bin");
    offer(&a, "Ben", &[&file, &empty, &folder, &again]);
    wait_for(|| !offers(&b).is_empty(), "the offer at Ben");
    let list = offers(&b)[0]["attachments"].as_array().unwrap().clone();
    assert_eq!(list.len(), 3);
    assert_eq!(list[0]["name"], "报告 v1:final.bin", "Pigeon peers keep ':' in names");
    assert_eq!(list[2]["kind"], "dir");
    // The offer's files are in the history, and found by their names.
    let found = String::from_utf8_lossy(&b.cli(&["history", "--search", "final.bin"]).stdout).into_owned();
    assert!(found.contains(": files for you\n    file 报告 v1:final.bin  (2.9 MiB)\n"), "{found}");
    assert_eq!(b.history(&["--search", "empty.txt"]).len(), 1);
    assert!(b.history(&["--search", "nothing-like-it.txt"]).is_empty());
    // Sizes as people read them (a Pigeon says what its folders hold).
    let human = String::from_utf8_lossy(&b.cli(&["offers"]).stdout).into_owned();
    assert!(human.contains("\n    file 报告 v1:final.bin  (2.9 MiB)\n"), "{human}");
    assert!(
        human.contains("\n    file empty.txt  (0 B)\n") && human.contains("\n    dir  项目 tree  (2.3 MiB)\n"),
        "{human}"
    );
    let dst = tempfile::tempdir().unwrap();
    // --to names a folder; a file there is said in those words.
    let id = offers(&b)[0]["id"].to_string();
    let out = b.cli(&["fetch", &id, "--to", file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code() == Some(2) && err.contains("is a file: --to takes the folder to fetch into"), "{err}");
    let (code, events) = fetch(&b, dst.path());
    assert_eq!(code, Some(0), "{events:?}");
    // Pigeon to Pigeon: every request encrypted and signed (§7.7), the
    // bodies plain unless asked (tests/sealed_files.rs has the rest).
    let starts: Vec<&Value> = events.iter().filter(|e| e["event"] == "start").collect();
    assert_eq!(starts.len(), 3, "{events:?}");
    assert!(starts.iter().all(|e| e["request"] == "encrypted" && e["body"] == "plain"), "{starts:?}");
    assert_eq!(sha256(&dst.path().join("报告 v1:final.bin")), sha256(&file));
    assert_eq!(std::fs::metadata(dst.path().join("empty.txt")).unwrap().len(), 0);
    assert_eq!(tree(&dst.path().join("项目 tree")), tree(&folder));
    assert!(dst.path().join("项目 tree/empty folder/nested empty").is_dir());
    // The wire carries whole seconds.
    let mtime = |p: &Path| {
        std::fs::metadata(p).unwrap().modified().unwrap().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
    };
    assert_eq!(mtime(&dst.path().join("报告 v1:final.bin")), mtime(&file), "mtime applied");

    // The other way round.
    let back = src.path().join("reply.bin");
    random_file(&back, 100_000, 9);
    offer(&b, "Ann", &[&back]);
    wait_for(|| !offers(&a).is_empty(), "the offer at Ann");
    let dst2 = tempfile::tempdir().unwrap();
    assert_eq!(fetch(&a, dst2.path()).0, Some(0));
    assert_eq!(sha256(&dst2.path().join("reply.bin")), sha256(&back));

    // Fetching again never overwrites: it lands beside.
    assert_eq!(fetch(&a, dst2.path()).0, Some(0));
    assert_eq!(sha256(&dst2.path().join("reply (1).bin")), sha256(&back));
}

#[test]
fn sparse_file_over_four_gib() {
    let a = Daemon::start("127.0.0.33", "cat", "Cat", &["127.0.0.34"]);
    let b = Daemon::start("127.0.0.34", "dan", "Dan", &["127.0.0.33"]);
    wait_for(|| a.peers().len() == 1 && b.peers().len() == 1, "discovery");
    let src = tempfile::tempdir().unwrap();
    let big = src.path().join("disk.img");
    {
        let mut f = std::fs::File::create(&big).unwrap();
        f.write_all(b"start of the image").unwrap();
        let size: u64 = 4 * 1024 * 1024 * 1024 + 12_345;
        f.set_len(size).unwrap();
        use std::io::Seek;
        f.seek(std::io::SeekFrom::Start(size - 100)).unwrap();
        f.write_all(&[7u8; 100]).unwrap();
    }
    offer(&a, "Dan", &[&big]);
    wait_for(|| !offers(&b).is_empty(), "the offer");
    assert_eq!(offers(&b)[0]["attachments"][0]["size"].as_u64(), Some(4 * 1024 * 1024 * 1024 + 12_345));
    let dst = tempfile::tempdir().unwrap();
    let (code, events) = fetch(&b, dst.path());
    assert_eq!(code, Some(0), "{events:?}");
    let got = dst.path().join("disk.img");
    assert_eq!(std::fs::metadata(&got).unwrap().len(), std::fs::metadata(&big).unwrap().len());
    assert_eq!(sha256(&got), sha256(&big));
    use std::os::unix::fs::MetadataExt;
    assert!(std::fs::metadata(&got).unwrap().blocks() * 512 < 64 * 1024 * 1024, "the copy stays sparse");
}

/// Kill -9 of the sender mid-file and mid-folder; after a restart, fetching
/// again resumes: less than 10% of the bytes come again, SHA-256 identical.
#[test]
fn kill_nine_of_the_sender_then_resume() {
    let mut a = Daemon::start("127.0.0.35", "eve", "Eve", &["127.0.0.36"]);
    let b = Daemon::start("127.0.0.36", "fay", "Fay", &["127.0.0.35"]);
    wait_for(|| a.peers().len() == 1 && b.peers().len() == 1, "discovery");
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("big.bin");
    random_file(&file, 400_000_000, 3);
    let folder = src.path().join("album");
    std::fs::create_dir_all(&folder).unwrap();
    for i in 0..40 {
        random_file(&folder.join(format!("photo {i:02}.jpg")), 8_000_000, 100 + i);
    }
    for (what, path, size) in [("file", &file, 400_000_000u64), ("folder", &folder, 320_000_000)] {
        offer(&a, "Fay", &[path]);
        wait_for(|| offers(&b).len() == if what == "file" { 1 } else { 2 }, "the offer");
        let id = offers(&b).last().unwrap()["id"].as_i64().unwrap().to_string();
        let dst = src.path().join(format!("dst-{what}"));
        std::fs::create_dir_all(&dst).unwrap();
        let mut c =
            pigeon(b.home.path(), b.ip, b.user, b.nick, &b.others, &["fetch", &id, "--to", dst.to_str().unwrap()]);
        let mut child = c.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        // Kill the sender once about a third has arrived.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let have = du(&dst);
            if have > size / 3 {
                break;
            }
            assert!(Instant::now() < deadline, "the {what} fetch made no progress ({have} bytes)");
            std::thread::sleep(Duration::from_millis(2));
        }
        // Stopped first, so that the rest cannot arrive before the kill.
        // SAFETY: kill(2) on the PID of our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGSTOP) };
        a.kill9();
        // SAFETY: as above.
        unsafe { libc::kill(child.id() as i32, libc::SIGCONT) };
        let status = child.wait().unwrap();
        assert!(!status.success(), "the interrupted {what} fetch reports failure");
        let partial = du(&dst);
        assert!(partial < size, "the {what} was not complete before the kill");
        a.spawn();
        // (Fay never saw it leave; the restarted sender must see Fay again
        // for the next offer.)
        wait_for(|| a.peers().len() == 1, "the sender back");
        let out = b.cli(&["fetch", &id, "--to", dst.to_str().unwrap(), "--json"]);
        assert!(
            out.status.success(),
            "resumed {what} fetch: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let done: Value = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["event"] == "done")
            .unwrap();
        let received = done["received"].as_u64().unwrap();
        let resent = (received + partial).saturating_sub(size);
        eprintln!("{what}: {partial} bytes before the kill, {received} after; re-sent {resent}");
        assert!(resent * 10 < size, "{what}: {resent} of {size} bytes were sent again");
        if what == "file" {
            assert_eq!(sha256(&dst.join("big.bin")), sha256(&file));
        } else {
            assert_eq!(tree(&dst.join("album")), tree(&folder));
        }
    }
}

fn du(p: &Path) -> u64 {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::read_dir(p).map_or(0, |rd| rd.flatten().map(|e| du(&e.path())).sum()),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

/// A raw peer: UDP and TCP on `ip`:PORT.
struct Raw {
    udp: UdpSocket,
    tcp: TcpListener,
    no: u64,
}

impl Raw {
    fn new(ip: &str) -> Raw {
        let udp = UdpSocket::bind(format!("{ip}:{PORT}")).unwrap();
        udp.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let tcp = TcpListener::bind(format!("{ip}:{PORT}")).unwrap();
        Raw { udp, tcp, no: 500 }
    }

    fn send(&mut self, to: &str, command: u32, body: &[u8], sections: &[&[u8]]) -> u64 {
        self.no += 1;
        let mut p = format!("1:{}:raw:raw-pc:{command}:", self.no).into_bytes();
        p.extend_from_slice(body);
        p.push(0);
        for s in sections {
            p.extend_from_slice(s);
            p.push(0);
        }
        self.udp.send_to(&p, format!("{to}:{PORT}")).unwrap();
        self.no
    }

    /// Serves one TCP request with `answer(request) -> bytes`.
    fn serve_one(&self, answer: impl FnOnce(&FileRequest) -> Vec<u8>) {
        let mut s = accept_within(&self.tcp, Duration::from_secs(15), "file request");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).unwrap();
        let p = Packet::decode(&buf[..n]).unwrap();
        let r = FileRequest::decode(p.body()).unwrap();
        let _ = s.write_all(&answer(&r));
    }
}

#[test]
fn a_hostile_sender_is_refused_and_nothing_lands_outside() {
    let b = Daemon::start("127.0.0.38", "gil", "Gil", &["127.0.0.37"]);
    let mut raw = Raw::new("127.0.0.37");
    let area = tempfile::tempdir().unwrap();
    let dst = area.path().join("inbox");
    std::fs::create_dir_all(&dst).unwrap();
    let before = tree(area.path());

    // Names that try to leave the folder, or to look like another name, in
    // the attachment list itself: refused before anything is asked for.
    for (name, why) in [
        ("../evil.txt", "contains a path separator"),
        ("/etc/evil", "contains a path separator"),
        ("a/../../b", "contains a path separator"),
        ("..", "refers to a directory"),
        // Shown as "reportexe.pdf"; in UTF-8 (UTF8OPT), so that it arrives as U+202E.
        ("report\u{202e}fdp.exe", "holds a right-to-left override"),
    ] {
        let list = format!("1:{}:5:0:1:\x07", name.replace(':', "::"));
        raw.send("127.0.0.38", 0x00a0_0120, b"take this", &[list.as_bytes()]);
        wait_for(|| offers(&b).iter().any(|o| o["attachments"][0]["name"] == name), "the hostile offer");
        let (code, events) = fetch(&b, &dst);
        assert_eq!(code, Some(1), "{name:?}: {events:?}");
        let error = fetch_error(&events);
        assert!(error.starts_with("refused") && error.contains(why), "{name:?}: {error}");
        // In text, the name is shown with its override made harmless.
        let id = offers(&b).last().unwrap()["id"].as_i64().unwrap().to_string();
        let out = b.cli(&["fetch", &id, "--to", dst.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name:?}: {err}");
        assert!(err.contains(why) && !err.contains('\u{202e}'), "{name:?}: {err}");
    }

    // Folder streams that lie: a traversal name inside, a symlink, a size
    // that lies, 5,000 levels, an endless header.
    let traversal = {
        let mut s = Vec::new();
        DirHeader::dir("ok", 1).encode(Charset::Utf8, &mut s).unwrap();
        DirHeader::file("../../escape", 3, 1).encode(Charset::Utf8, &mut s).unwrap();
        s.extend_from_slice(b"bad");
        s
    };
    let symlink = {
        let mut s = Vec::new();
        DirHeader::dir("ok", 1).encode(Charset::Utf8, &mut s).unwrap();
        let link = DirHeader { name: "link".into(), size: 0, attr: pigeon_protocol::FileAttr(4), ext: vec![] };
        link.encode(Charset::Utf8, &mut s).unwrap();
        s
    };
    let lying = {
        let mut s = Vec::new();
        DirHeader::dir("ok", 1).encode(Charset::Utf8, &mut s).unwrap();
        DirHeader::file("short.bin", 1_000_000, 1).encode(Charset::Utf8, &mut s).unwrap();
        s.extend_from_slice(&[1u8; 1000]);
        s
    };
    let deep = {
        let mut s = Vec::new();
        for _ in 0..5000 {
            DirHeader::dir("d", 1).encode(Charset::Utf8, &mut s).unwrap();
        }
        s
    };
    let endless = {
        let mut s = Vec::new();
        DirHeader::dir("ok", 1).encode(Charset::Utf8, &mut s).unwrap();
        s.extend_from_slice(b"ffff:");
        s.extend_from_slice(&vec![b'x'; 70_000]);
        s
    };
    // Each must fail for its own reason, not because the stream ended early
    // (every stream here ends early too).
    for (what, stream, why) in [
        ("traversal", traversal, r#"unsafe name "../../escape": contains a path separator"#),
        ("symlink", symlink, r#"unsupported entry type 0x04 for "link""#),
        // Its 1,000 bytes were read as the file's; then the stream ended.
        ("lying size", lying, "closed the connection after 1000 of 256 bytes"),
        ("5000 levels", deep, "nests deeper than"),
        ("endless header", endless, "directory header of 65535 bytes exceeds the limit"),
    ] {
        let list = b"7:ok:100:0:2:\x07".to_vec();
        raw.send("127.0.0.38", 0x0020_0120, what.as_bytes(), &[&list]);
        wait_for(|| offers(&b).iter().any(|o| o["text"] == what), "the hostile folder offer");
        let id = offers(&b).iter().find(|o| o["text"] == what).unwrap()["id"].as_i64().unwrap().to_string();
        let stream2 = stream.clone();
        let server = std::thread::scope(|s| {
            let h = s.spawn(|| raw.serve_one(move |_| stream2));
            let out = b.cli(&["fetch", &id, "--to", dst.to_str().unwrap(), "--json"]);
            h.join().unwrap();
            out
        });
        let events: Vec<Value> =
            String::from_utf8_lossy(&server.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        assert_eq!(server.status.code(), Some(1), "{what}: {events:?}");
        let error = fetch_error(&events);
        assert!(error.contains(why), "{what}: expected {why:?}, got {error:?}");
    }
    // The file whose size lied stays partial: it never became a whole file.
    let landed = tree(&dst);
    assert!(!landed.iter().any(|(p, _)| p.ends_with("/short.bin")), "{landed:?}");
    assert!(landed.iter().any(|(p, _)| p.ends_with("/short.bin.part")), "{landed:?}");
    // Nothing appeared outside the inbox.
    let after: Vec<(String, String)> = tree(area.path()).into_iter().filter(|(p, _)| !p.starts_with("inbox")).collect();
    let before: Vec<(String, String)> = before.into_iter().filter(|(p, _)| !p.starts_with("inbox")).collect();
    assert_eq!(after, before);
    assert!(!area.path().join("escape").exists());
}

#[test]
fn offers_are_served_to_their_addressee_only() {
    let a = Daemon::start("127.0.0.39", "hal", "Hal", &["127.0.0.40"]);
    let b = Daemon::start("127.0.0.40", "ida", "Ida", &["127.0.0.39"]);
    wait_for(|| a.peers().len() == 1 && b.peers().len() == 1, "discovery");
    let src = tempfile::tempdir().unwrap();
    let secret = src.path().join("secret.txt");
    std::fs::write(&secret, b"for Ida only").unwrap();
    offer(&a, "Ida", &[&secret]);
    wait_for(|| !offers(&b).is_empty(), "the offer");
    let o = &offers(&b)[0];
    let no: u64 = o["packet_no"].as_str().unwrap().parse().unwrap();
    let fid = o["attachments"][0]["id"].as_u64().unwrap();
    let ask = |from_ip: &str, user: &str| -> Vec<u8> {
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.bind(&format!("{from_ip}:0").parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
        sock.connect(&format!("127.0.0.39:{PORT}").parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
        let mut s: TcpStream = sock.into();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        s.write_all(format!("1:9:{user}:raw:96:{no:x}:{fid:x}:0:\0").as_bytes()).unwrap();
        // Our close comes at once: the server does not wait for it (§6.5).
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        got
    };
    assert_eq!(ask("127.0.0.40", "ida"), b"for Ida only", "the addressee gets it");
    assert!(ask("127.0.0.41", "ida").is_empty(), "another address gets nothing");
    assert!(ask("127.0.0.40", "mallory").is_empty(), "another user gets nothing");
    // A wrong file ID or packet number gets nothing either.
    let wrong = |body: String| {
        let mut s = TcpStream::connect(format!("127.0.0.39:{PORT}")).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        s.write_all(body.as_bytes()).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        got
    };
    assert!(wrong(format!("1:9:ida:raw:96:{no:x}:{:x}:0:\0", fid + 1)).is_empty());
    assert!(wrong(format!("1:9:ida:raw:96:{:x}:{fid:x}:0:\0", no + 1)).is_empty());
    // RELEASEFILES ends the offer for that peer.
    let udp = UdpSocket::bind("127.0.0.40:0").unwrap();
    udp.send_to(format!("1:10:ida:ida-pc:97:{no}\0").as_bytes(), format!("127.0.0.39:{PORT}")).unwrap();
    wait_for(|| ask("127.0.0.40", "ida").is_empty(), "a released offer to be no longer served");
}

fn receive_offer(raw: &Raw) -> (usize, Vec<u8>) {
    let mut buf = vec![0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "no offer arrived");
        if let Ok((n, _)) = raw.udp.recv_from(&mut buf) {
            // The offer itself: our entries carry FILEATTACHOPT too (the
            // daemon's second start-up entry, its answer to ours).
            let offer = |p: Packet| p.mode() == Mode::SENDMSG && p.opts().has(pigeon_protocol::Opts::FILEATTACHOPT);
            if Packet::decode(&buf[..n]).is_ok_and(offer) {
                return (n, buf[..n].to_vec());
            }
        }
    }
}

#[test]
fn gbk_names_for_a_peer_that_does_not_read_utf8() {
    let a = Daemon::start("127.0.0.42", "jon", "Jon", &["127.0.0.43"]);
    let mut feiq = Raw::new("127.0.0.43");
    // A FeiQ-like entry: no CAPUTF8OPT, GBK nick (and no ENCRYPTOPT: this
    // peer answers no GETPUBKEY; engine::sim covers that case).
    let nick = Charset::Gbk.encode("飞秋用户");
    feiq.send("127.0.0.42", 0x0020_0001, &nick, &[b""]);
    wait_for(|| a.peers().iter().any(|p| p["nick"] == "飞秋用户"), "the FeiQ-like peer");
    let src = tempfile::tempdir().unwrap();
    let f = src.path().join("中文 名.txt");
    std::fs::write(&f, b"gbk please").unwrap();
    // The raw peer acknowledges, as a real client would, while `send` waits.
    let (n, msg) = std::thread::scope(|scope| {
        let sending = scope.spawn(|| offer(&a, "飞秋用户", &[&f]));
        let got = receive_offer(&feiq);
        let p = Packet::decode(&got.1[..got.0]).unwrap();
        feiq.udp
            .send_to(
                format!("1:601:raw:raw-pc:33:{}\0", p.packet_number().unwrap()).as_bytes(),
                format!("127.0.0.42:{PORT}"),
            )
            .unwrap();
        sending.join().unwrap();
        got
    });
    let p = Packet::decode(&msg[..n]).unwrap();
    assert!(!p.opts().has(pigeon_protocol::Opts::UTF8OPT));
    let list = p.section(0).unwrap();
    assert!(std::str::from_utf8(list).is_err(), "the list is not UTF-8");
    let a0 = &pigeon_protocol::Attachment::decode_list(list, Charset::Gbk).unwrap()[0];
    assert_eq!(a0.name, "中文 名.txt");
    // And the file is served to it (asked from its own address).
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&"127.0.0.43:0".parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
    sock.connect(&format!("127.0.0.42:{PORT}").parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
    let mut s: TcpStream = sock.into();
    s.write_all(format!("1:600:raw:raw-pc:96:{:x}:{:x}:0:\0", p.packet_number().unwrap(), a0.id).as_bytes()).unwrap();
    // Exactly the file: the server waits for our close (§6.5), then closes.
    let mut got = [0u8; 10];
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"gbk please");
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "nothing after the file");
}

#[test]
fn offers_from_listed_peers_are_fetched_automatically_within_the_limit() {
    let inbox = tempfile::tempdir().unwrap();
    let config = format!("auto_accept = [\"kim@kim-pc\"]\nauto_accept_max_mb = 1\ndownload_dir = {:?}\n", inbox.path());
    let b = Daemon::start_with_config("127.0.0.45", "lou", "Lou", &["127.0.0.44"], &config);
    let a = Daemon::start_with_config("127.0.0.44", "kim", "Kim", &["127.0.0.45"], "host = \"kim-pc\"\n");
    wait_for(|| a.peers().len() == 1 && b.peers().len() == 1, "discovery");
    let src = tempfile::tempdir().unwrap();
    let small = src.path().join("small.bin");
    random_file(&small, 500_000, 4);
    offer(&a, "Lou", &[&small]);
    wait_for(|| inbox.path().join("small.bin").exists(), "the automatic fetch");
    assert_eq!(sha256(&inbox.path().join("small.bin")), sha256(&small));
    // Over the limit: offered, listed, not fetched. The daemon decides on
    // offers one after the other: a small offer sent after it and fetched
    // shows the big one was decided on (a fetch of it would have begun
    // first). Then, for a fetch that begins late, watch four times as long
    // as all that took (2 MB to the small one's 0.5 MB), at least 2 s.
    let big = src.path().join("big.bin");
    random_file(&big, 2_000_000, 5);
    let after = src.path().join("after.bin");
    random_file(&after, 500_000, 6);
    let t = Instant::now();
    offer(&a, "Lou", &[&big]);
    offer(&a, "Lou", &[&after]);
    wait_for(|| offers(&b).len() == 3, "the later offers");
    let inbox_names = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(inbox.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let no_big = |names: &[String]| !names.iter().any(|n| n.starts_with("big"));
    wait_for(
        || {
            let names = inbox_names();
            assert!(no_big(&names), "the offer over the limit was fetched: {names:?}");
            inbox.path().join("after.bin").exists()
        },
        "the automatic fetch of the offer after the big one",
    );
    assert_eq!(sha256(&inbox.path().join("after.bin")), sha256(&after));
    let grace = (t.elapsed() * 4).max(Duration::from_secs(2));
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        let names = inbox_names();
        assert!(no_big(&names), "the offer over the limit was fetched: {names:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(inbox_names(), ["after.bin", "small.bin"]);
}

/// The `.part` a fetch of `name` from the raw peer's offer `packet_no`
/// (file ID `id`, mtime 0) writes: tied to its offer.
fn raw_part(dir: &Path, name: &str, packet_no: u64, id: u64, size: u64) -> std::path::PathBuf {
    let tag = pigeon::transfer::offer_tag("raw@raw-pc", packet_no, id, size, 0);
    dir.join(format!("{name}.{tag}.part"))
}

/// Senders that ignore the resume offset (iptux does), and one IP
/// Messenger-like sender that ignores it though it should: the result is
/// always the sender's bytes, with bounded memory, whatever the held
/// `.part` holds and wherever the sender's writes end.
#[test]
fn a_sender_that_ignores_the_offset_restarts_cleanly() {
    let b = Daemon::start("127.0.0.47", "max", "Max", &["127.0.0.46"]);
    let mut raw = Raw::new("127.0.0.46");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    let size = data.len() as u64;
    // IP Messenger-like (version 1): asked from the offset, sends from 0,
    // in two writes, the first ending exactly where we asked it to stop.
    raw.send("127.0.0.47", 1, b"raw", &[b""]);
    wait_for(|| b.peers().iter().any(|p| p["client"] == "ipmsg"), "the IP Messenger-like entry");
    let list = format!("3:whole.bin:{size:x}:0:1:\x07");
    let no = raw.send("127.0.0.47", 0x0020_0120, b"resume me", &[list.as_bytes()]);
    wait_for(|| !offers(&b).is_empty(), "the offer");
    let dst = tempfile::tempdir().unwrap();
    std::fs::write(raw_part(dst.path(), "whole.bin", no, 3, size), &data[..1_000_000]).unwrap();
    let id = offers(&b)[0]["id"].as_i64().unwrap().to_string();
    let out = std::thread::scope(|s| {
        let server = s.spawn(|| {
            let mut conn = accept_within(&raw.tcp, Duration::from_secs(15), "file request");
            let mut buf = [0u8; 1024];
            let n = conn.read(&mut buf).unwrap();
            let r = FileRequest::decode(Packet::decode(&buf[..n]).unwrap().body()).unwrap();
            assert_eq!(r.offset, Some(1_000_000), "the receiver asks to resume");
            conn.write_all(&data[..2_000_000]).unwrap();
            std::thread::sleep(Duration::from_millis(200));
            let _ = conn.write_all(&data[2_000_000..]);
        });
        let out = b.cli(&["fetch", &id, "--to", dst.path().to_str().unwrap(), "--json"]);
        server.join().unwrap();
        out
    });
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(std::fs::read(dst.path().join("whole.bin")).unwrap() == data, "the file is whole and right");
    assert!(!raw_part(dst.path(), "whole.bin", no, 3, size).exists());

    // iptux-like: asked for everything; what we held (wrong from byte
    // 500,000 on) is compared and rewritten.
    let entry = b"1_iptux 0.8.3:900:raw:raw-pc:257:Tux\0\0icon\0utf-8\0";
    raw.udp.send_to(entry, format!("127.0.0.47:{PORT}")).unwrap();
    wait_for(|| b.peers().iter().any(|p| p["client"] == "iptux"), "the iptux entry");
    let list = format!("4:tux.bin:{size:x}:0:1:\x07");
    let mut p = b"1_iptux 0.8.3:901:raw:raw-pc:2097440:take it\0".to_vec();
    p.extend_from_slice(list.as_bytes());
    p.push(0);
    raw.udp.send_to(&p, format!("127.0.0.47:{PORT}")).unwrap();
    wait_for(|| offers(&b).iter().any(|o| o["text"] == "take it"), "iptux's offer");
    let mut held = data[..1_500_000].to_vec();
    held[500_000..].fill(0xAA);
    std::fs::write(raw_part(dst.path(), "tux.bin", 901, 4, size), &held).unwrap();
    let id = offers(&b).iter().find(|o| o["text"] == "take it").unwrap()["id"].as_i64().unwrap().to_string();
    let out = std::thread::scope(|s| {
        let server = s.spawn(|| {
            raw.serve_one(|r| {
                assert_eq!(r.offset, Some(0), "an iptux sender is asked for everything");
                data.clone()
            })
        });
        let out = b.cli(&["fetch", &id, "--to", dst.path().to_str().unwrap(), "--json"]);
        server.join().unwrap();
        out
    });
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(std::fs::read(dst.path().join("tux.bin")).unwrap() == data, "the sender's bytes, not the held ones");
}

/// The issue's report: an interrupted fetch of A's `report.bin` leaves its
/// `.part`; B then offers another `report.bin` of the same size. B's fetch
/// does not resume into A's part: it gets B's bytes, and A's fetch later
/// resumes its own part (compared as it comes again: neither sender said
/// which client it is) and lands beside it.
#[test]
fn a_partial_file_of_another_offer_is_not_resumed_into() {
    let b = Daemon::start("127.0.0.51", "nia", "Nia", &["127.0.0.52", "127.0.0.53"]);
    let mut alice = Raw::new("127.0.0.52");
    let mut bob = Raw::new("127.0.0.53");
    let size = 2_000_000u64;
    let a_data: Vec<u8> = (0..size as u32).map(|i| (i % 251) as u8).collect();
    let b_data: Vec<u8> = (0..size as u32).map(|i| (i % 241) as u8 ^ 0x5a).collect();
    let list = format!("1:report.bin:{size:x}:0:1:\x07");
    let a_no = alice.send("127.0.0.51", 0x0020_0120, b"from alice", &[list.as_bytes()]);
    wait_for(|| offers(&b).iter().any(|o| o["text"] == "from alice"), "alice's offer");
    bob.no = 700;
    bob.send("127.0.0.51", 0x0020_0120, b"from bob", &[list.as_bytes()]);
    wait_for(|| offers(&b).iter().any(|o| o["text"] == "from bob"), "bob's offer");
    let dst = tempfile::tempdir().unwrap();
    // Alice's fetch was interrupted at 1 MB (her sender is "raw@raw-pc" too:
    // the packet number tells the offers apart).
    let a_part = raw_part(dst.path(), "report.bin", a_no, 1, size);
    std::fs::write(&a_part, &a_data[..1_000_000]).unwrap();
    let id_of = |text: &str| offers(&b).iter().find(|o| o["text"] == text).unwrap()["id"].as_i64().unwrap().to_string();
    let fetch_from = |raw: &Raw, text: &str, data: &[u8]| {
        let id = id_of(text);
        std::thread::scope(|s| {
            let server = s.spawn(|| {
                raw.serve_one(|r| {
                    assert_eq!(r.offset, Some(0), "{text}: an unknown client is asked for everything");
                    data.to_vec()
                })
            });
            let out = b.cli(&["fetch", &id, "--to", dst.path().to_str().unwrap(), "--json"]);
            server.join().unwrap();
            out
        })
    };
    let out = fetch_from(&bob, "from bob", &b_data);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(std::fs::read(dst.path().join("report.bin")).unwrap() == b_data, "bob's file is bob's");
    assert_eq!(std::fs::read(&a_part).unwrap(), &a_data[..1_000_000], "alice's part is untouched");
    let out = fetch_from(&alice, "from alice", &a_data);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(std::fs::read(dst.path().join("report (1).bin")).unwrap() == a_data, "alice's file beside it");
}

/// A second fetch of an offer whose `.part` another fetch holds is refused
/// with a clear word, and writes nothing.
#[test]
fn two_fetches_of_one_offer_do_not_interleave() {
    use std::os::fd::AsRawFd;
    let b = Daemon::start("127.0.0.55", "ola", "Ola", &["127.0.0.56"]);
    let mut raw = Raw::new("127.0.0.56");
    let no = raw.send("127.0.0.55", 0x0020_0120, b"one at a time", &[b"2:big.bin:100:0:1:\x07"]);
    wait_for(|| !offers(&b).is_empty(), "the offer");
    let dst = tempfile::tempdir().unwrap();
    let part = raw_part(dst.path(), "big.bin", no, 2, 0x100);
    std::fs::write(&part, b"held").unwrap();
    // Another fetch (the daemon's auto-accept, another terminal) holds it.
    let holder = std::fs::File::open(&part).unwrap();
    assert_eq!(unsafe { libc::flock(holder.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }, 0);
    let (code, events) = fetch(&b, dst.path());
    assert_eq!(code, Some(1), "{events:?}");
    let err = events.iter().find(|e| e["event"] == "error").expect("an error event");
    assert!(err["error"].as_str().unwrap().contains("being fetched already"), "{err}");
    assert_eq!(std::fs::read(&part).unwrap(), b"held");
    drop(holder);
}

/// A folder that sends more than it announced stops there (plus the
/// documented slack), and the file it was writing stays partial.
#[test]
fn a_folder_that_sends_more_than_announced_is_stopped() {
    let b = Daemon::start("127.0.0.58", "pia", "Pia", &["127.0.0.59"]);
    let mut raw = Raw::new("127.0.0.59");
    raw.send("127.0.0.58", 0x0020_0120, b"small folder", &[b"5:small:3e8:0:2:\x07"]);
    wait_for(|| !offers(&b).is_empty(), "the offer");
    let dst = tempfile::tempdir().unwrap();
    let mut stream = Vec::new();
    DirHeader::dir("small", 1).encode(Charset::Utf8, &mut stream).unwrap();
    DirHeader::file("huge.bin", 3_000_000, 1).encode(Charset::Utf8, &mut stream).unwrap();
    stream.extend(std::iter::repeat_n(7u8, 3_000_000));
    DirHeader::parent(1).encode(Charset::Utf8, &mut stream).unwrap();
    let id = offers(&b)[0]["id"].as_i64().unwrap().to_string();
    let out = std::thread::scope(|s| {
        let server = s.spawn(|| raw.serve_one(|_| stream.clone()));
        let out = b.cli(&["fetch", &id, "--to", dst.path().to_str().unwrap(), "--json"]);
        server.join().unwrap();
        out
    });
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("sent more than the 1000 bytes it announced"), "{text}");
    assert!(!dst.path().join("small/huge.bin").exists());
    assert!(du(dst.path()) <= 1000 + pigeon::transfer::fetch::folder_slack(1000) + 64 * 1024, "{}", du(dst.path()));
}

/// From a Pigeon the receiver asks for the SHA-256 of what is served and
/// compares it before the rename: a sender whose bytes do not match it
/// leaves no file, complete or partial.
#[test]
fn a_checksum_that_does_not_match_leaves_no_file() {
    let b = Daemon::start("127.0.0.61", "qin", "Qin", &["127.0.0.62"]);
    let raw = Raw::new("127.0.0.62");
    raw.udp.send_to(b"1_pigeon 0.1.0:800:raw:raw-pc:6291457:raw\0\0", format!("127.0.0.61:{PORT}")).unwrap();
    wait_for(|| b.peers().iter().any(|p| p["client"] == "pigeon"), "the Pigeon-like peer");
    let data = vec![9u8; 100_000];
    let mut p = b"1_pigeon 0.1.0:801:raw:raw-pc:2097440:checked\0".to_vec();
    p.extend_from_slice(format!("6:sum.bin:{:x}:0:1:\x07\0", data.len()).as_bytes());
    raw.udp.send_to(&p, format!("127.0.0.61:{PORT}")).unwrap();
    wait_for(|| !offers(&b).is_empty(), "the offer");
    let dst = tempfile::tempdir().unwrap();
    let id = offers(&b)[0]["id"].as_i64().unwrap().to_string();
    let (request, out) = std::thread::scope(|s| {
        let server = s.spawn(|| {
            let mut conn = accept_within(&raw.tcp, Duration::from_secs(15), "file request");
            let mut buf = [0u8; 1024];
            let n = conn.read(&mut buf).unwrap();
            let mut reply = data.clone();
            reply.extend_from_slice(&[0u8; 32]); // not the SHA-256 of the data
            conn.write_all(&reply).unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        let out = b.cli(&["fetch", &id, "--to", dst.path().to_str().unwrap(), "--json"]);
        (server.join().unwrap(), out)
    });
    assert!(request.contains(":PH"), "the receiver asked for the checksum: {request:?}");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("does not match the sender's SHA-256"));
    assert_eq!(tree(dst.path()), vec![], "nothing complete, nothing partial");
}

/// auto_accept trusts user@host as heard, from where it was heard: a nick
/// is not enough (refused in the configuration; Mallory's offer is not
/// fetched), a stranger claiming the name from another address is not
/// trusted, and announced sizes that overflow when summed are refused.
#[test]
fn auto_accept_trusts_a_name_only_from_where_it_was_heard() {
    let inbox = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("config.toml"), "auto_accept = [\"raw@raw-pc\", \"Mallory\"]\n").unwrap();
    let out = pigeon(home.path(), "127.0.0.64", "rae", "Rae", &[], &["config"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code() == Some(2) && err.contains(":1: auto_accept: \"Mallory\": give user@host"), "{err}");
    let config = format!("auto_accept = [\"raw@raw-pc\"]\nauto_accept_max_mb = 5\ndownload_dir = {:?}\n", inbox.path());
    let b = Daemon::start_with_config("127.0.0.64", "rae", "Rae", &["127.0.0.65", "127.0.0.66"], &config);
    let mut friend = Raw::new("127.0.0.65");
    friend.send("127.0.0.64", 1, b"Friend", &[b""]);
    wait_for(|| b.peers().iter().any(|p| p["user"] == "raw"), "the friend's entry");
    // A stranger takes the friend's name, and another calls itself Mallory.
    let mut stranger = Raw::new("127.0.0.66");
    stranger.no = 900;
    stranger.send("127.0.0.64", 0x0020_0120, b"from a stranger", &[b"1:evil.bin:10:0:1:\x07"]);
    stranger.udp.send_to(b"1:949:mal:mal-pc:1:Mallory\0\0", format!("127.0.0.64:{PORT}")).unwrap();
    wait_for(|| b.peers().iter().any(|p| p["nick"] == "Mallory"), "Mallory's entry");
    let mut p = b"1:950:mal:mal-pc:2097440:from mallory\0".to_vec();
    p.extend_from_slice(b"2:nick.bin:10:0:1:\x07\0");
    stranger.udp.send_to(&p, format!("127.0.0.64:{PORT}")).unwrap();
    // Sizes that sum past 2^64 to a small number.
    let huge = format!("3:a.bin:{:x}:0:1:\x074:b.bin:{:x}:0:1:\x07", u64::MAX - 5 * (1 << 30) + 1, 5u64 << 30);
    friend.send("127.0.0.64", 0x0020_0120, b"overflow", &[huge.as_bytes()]);
    // The friend's real offer, last: when it is fetched, the others were seen.
    friend.send("127.0.0.64", 0x0020_0120, b"the real one", &[b"5:ok.bin:3:0:1:\x07"]);
    friend.serve_one(|_| b"abc".to_vec());
    wait_for(|| inbox.path().join("ok.bin").exists(), "the friend's file");
    assert_eq!(offers(&b).len(), 4, "every offer is listed");
    let landed: Vec<String> = tree(inbox.path()).into_iter().map(|(p, _)| p).collect();
    assert_eq!(landed, ["ok.bin"], "only the friend's file, from the friend's address");
}

/// The text of the one error event of a `fetch --json` (panics, with the
/// events, if there is none or several).
fn fetch_error(events: &[Value]) -> String {
    let errors: Vec<&Value> = events.iter().filter(|e| e["event"] == "error").collect();
    match errors.as_slice() {
        [e] => e["error"].as_str().unwrap_or_default().to_string(),
        _ => panic!("not one error event: {events:?}"),
    }
}

/// Idle connections cannot block transfers: one address holds at most 8
/// (the 9th is closed at once), a connection that says nothing is closed
/// within seconds, and meanwhile the addressee fetches; a file fetched
/// whole is marked in the sender's store (its offer ends).
#[test]
fn idle_connections_do_not_block_transfers() {
    let a = Daemon::start("127.0.0.67", "sal", "Sal", &["127.0.0.68"]);
    let b = Daemon::start("127.0.0.68", "tom", "Tom", &["127.0.0.67"]);
    wait_for(|| a.peers().len() == 1 && b.peers().len() == 1, "discovery");
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("f.bin");
    random_file(&file, 1_000_000, 6);
    offer(&a, "Tom", &[&file]);
    wait_for(|| !offers(&b).is_empty(), "the offer");
    let connect = || {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(&"127.0.0.69:0".parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
        s.connect(&format!("127.0.0.67:{PORT}").parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
        let s: TcpStream = s.into();
        s.set_read_timeout(Some(Duration::from_millis(1500))).unwrap();
        s
    };
    let mut idle: Vec<TcpStream> = (0..8).map(|_| connect()).collect();
    std::thread::sleep(Duration::from_millis(200));
    // A read a signal interrupts (EINTR, seen once in CI) is read again.
    let read = |s: &mut TcpStream| {
        let mut r = s.read(&mut [0u8; 8]);
        for _ in 0..5 {
            if !matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::Interrupted) {
                break;
            }
            r = s.read(&mut [0u8; 8]);
        }
        r
    };
    let mut ninth = connect();
    assert_eq!(read(&mut ninth).unwrap_or(1), 0, "the 9th from one address is closed at once");
    let dst = tempfile::tempdir().unwrap();
    let (code, events) = fetch(&b, dst.path());
    assert_eq!(code, Some(0), "{events:?}");
    assert_eq!(sha256(&dst.path().join("f.bin")), sha256(&file));
    // The idle ones are let go (their first byte never came).
    for s in &mut idle {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // Closed by the server: an end of stream, or a reset (seen once in
        // CI); a timeout means it was kept.
        let r = read(s);
        let closed = matches!(&r, Ok(0)) || matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset);
        assert!(closed, "an idle connection is closed: {r:?}");
    }
    let db = rusqlite::Connection::open(a.home.path().join("pigeon.db")).unwrap();
    let fetched: i64 = db.query_row("SELECT fetched FROM offers", [], |r| r.get(0)).unwrap();
    assert!(fetched > 0, "the offer is marked fetched");
}

/// `pigeon send Bo Cy --file f` with Cy known but offline: Cy is not taken
/// for the text; a real text, or "", says what was meant.
#[test]
fn a_recipient_is_never_taken_for_the_text() {
    let a = Daemon::start("127.0.0.117", "ada", "Ada", &["127.0.0.118", "127.0.0.119"]);
    let b = Daemon::start("127.0.0.118", "bo", "Bo", &["127.0.0.117"]);
    let mut cy = Raw::new("127.0.0.119");
    cy.send("127.0.0.117", 1, b"Cy", &[b""]);
    wait_for(|| a.peers().len() == 2 && b.peers().len() == 1, "discovery");
    cy.send("127.0.0.117", 2, b"", &[]);
    wait_for(|| a.peers().len() == 1, "Cy to leave");
    let src = tempfile::tempdir().unwrap();
    let f = src.path().join("report.pdf");
    std::fs::write(&f, b"%PDF").unwrap();
    let f = f.to_str().unwrap();
    for args in [&["send", "Bo", "Cy", "--file", f][..], &["send", "Bo", "--file", f, "cy"]] {
        let out = a.cli(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("is a peer (raw@raw-pc): to offer files to several peers, end with a text"), "{err}");
    }
    assert!(offers(&b).is_empty(), "nothing was sent");
    // Groups are matched like nicks; an unknown one is said with the groups there are.
    let err = String::from_utf8_lossy(&a.cli(&["send", "group:QA", "hi"]).stderr).into_owned();
    assert!(err.contains("no one online is in group \"QA\" (no one online gives a group)"), "{err}");
    // One recipient and no text, or an explicit text: sent.
    let out = a.cli(&["send", "Bo", "--file", f]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_for(|| offers(&b).len() == 1, "the offer");

    // Our own offers, their state; the peer declines, we cancel.
    let mine =
        |d: &Daemon| -> Vec<Value> { serde_json::from_slice(&d.cli(&["offers", "--mine", "--json"]).stdout).unwrap() };
    let m = mine(&a);
    assert_eq!((m.len(), &m[0]["name"], &m[0]["state"]), (1, &json!("report.pdf"), &json!("served")), "{m:?}");
    assert!(m[0]["to"].as_str().unwrap().starts_with("bo@"));
    let id = offers(&b)[0]["id"].to_string();
    let out = b.cli(&["decline", &id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("was told you will not fetch it"));
    wait_for(|| offers(&b)[0]["attachments"][0]["state"] == "declined", "the receiver's list to say declined too");
    wait_for(|| mine(&a)[0]["state"] == "released", "the decline to reach the sender");
    let out = a.cli(&["send", "Bo", "--file", f, "second"]);
    assert!(out.status.success());
    wait_for(|| offers(&b).len() == 2, "the second offer");
    let no = mine(&a).iter().find(|o| o["state"] == "served").unwrap()["packet_no"].as_str().unwrap().to_string();
    let out = a.cli(&["cancel", &no]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "cancelled: 1 file no longer served");
    let human = String::from_utf8_lossy(&a.cli(&["offers", "--mine"]).stdout).into_owned();
    assert_eq!(human.matches("released  report.pdf  (4 B)").count(), 2, "{human}");
    let dst = tempfile::tempdir().unwrap();
    let (code, events) = fetch(&b, dst.path());
    assert_eq!(code, Some(1), "a cancelled offer is not served: {events:?}");
    let out = a.cli(&["cancel", &no]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is served (`pigeon offers --mine` lists them)"));
}

/// Ctrl-C during a fetch: an `interrupted` event (--json) and how to
/// resume, exit 130; fetching again resumes from the partial file.
#[test]
fn an_interrupted_fetch_says_how_to_resume() {
    let a = Daemon::start("127.0.0.121", "gus", "Gus", &["127.0.0.122"]);
    let b = Daemon::start("127.0.0.122", "hal", "Hal", &["127.0.0.121"]);
    wait_for(|| a.peers().len() == 1 && b.peers().len() == 1, "discovery");
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("big.bin");
    random_file(&file, 300_000_000, 21);
    offer(&a, "Hal", &[&file]);
    wait_for(|| offers(&b).len() == 1, "the offer");
    let id = offers(&b)[0]["id"].to_string();
    let dst = src.path().join("dst");
    std::fs::create_dir_all(&dst).unwrap();
    let mut c = pigeon(
        b.home.path(),
        b.ip,
        b.user,
        b.nick,
        &b.others,
        &["fetch", &id, "--json", "--to", dst.to_str().unwrap()],
    );
    let child = c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while du(&dst) < 30_000_000 {
        assert!(Instant::now() < deadline, "the fetch made no progress");
        std::thread::sleep(Duration::from_millis(2));
    }
    // Stopped while the signal comes, so that the fetch cannot end first.
    // SAFETY: kill(2) on the PID of our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGSTOP) };
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    unsafe { libc::kill(child.id() as i32, libc::SIGCONT) };
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stdout}{stderr}");
    assert!(stderr.contains(&format!("interrupted; `pigeon fetch {id}` resumes where it stopped")), "{stderr}");
    let last: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(
        (&last["event"], &last["name"], &last["size"]),
        (&json!("interrupted"), &json!("big.bin"), &json!(300_000_000))
    );
    assert!(last["bytes"].as_u64().unwrap() > 0 && last["bytes"].as_u64().unwrap() < 300_000_000, "{last}");
    // Fetched again by packet number (what `listen --json` gives a script).
    let o = &offers(&b)[0];
    let no = o["packet_no"].as_str().unwrap().to_string();
    let from = format!("{}@{}", o["from"]["user"].as_str().unwrap(), o["from"]["host"].as_str().unwrap());
    let err = String::from_utf8_lossy(&b.cli(&["fetch", &no, "--from", "nobody@nowhere"]).stderr).into_owned();
    assert!(err.contains(&format!("no offer #{no}")), "{err}");
    let out = b.cli(&["fetch", &no, "--from", &from, "--to", dst.to_str().unwrap(), "--json"]);
    let events: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert_eq!(out.status.code(), Some(0), "{events:?}");
    let start = events.iter().find(|e| e["event"] == "start").unwrap();
    assert!(start["resumed_at"].as_u64().unwrap() > 0, "{start}");
    assert_eq!(sha256(&dst.join("big.bin")), sha256(&file));
}

/// What the node cannot read is not offered: a file it may not read, and a
/// folder with one such file, are refused when offered, naming the file and
/// the node's user (as root, the node runs as nobody for this test).
#[test]
fn unreadable_files_are_not_offered() {
    use std::os::unix::fs::PermissionsExt;
    let root = unsafe { libc::geteuid() } == 0;
    let home = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    std::fs::set_permissions(src.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let secret = src.path().join("secret.bin");
    std::fs::write(&secret, b"payroll").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(if root { 0o600 } else { 0o000 })).unwrap();
    let folder = src.path().join("mixed");
    std::fs::create_dir(&folder).unwrap();
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(folder.join("open.txt"), b"hello").unwrap();
    std::fs::set_permissions(folder.join("open.txt"), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(folder.join("closed.txt"), b"no").unwrap();
    std::fs::set_permissions(
        folder.join("closed.txt"),
        std::fs::Permissions::from_mode(if root { 0o600 } else { 0o000 }),
    )
    .unwrap();
    // (Kept until the end: nobody runs the binary from there.)
    let bin_dir = tempfile::tempdir().unwrap();
    let mut c = if root {
        // The node as nobody, its home its own, its binary a copy nobody
        // can reach (the checkout may sit in a folder private to root).
        let _ = std::os::unix::fs::chown(home.path(), Some(65534), Some(65534));
        std::fs::set_permissions(bin_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let bin = bin_dir.path().join("pigeon");
        std::fs::copy(env!("CARGO_BIN_EXE_pigeon"), &bin).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(&bin);
        c
    } else {
        std::process::Command::new(env!("CARGO_BIN_EXE_pigeon"))
    };
    c.arg("--home").arg(home.path());
    c.args([
        "--port",
        PORT,
        "--bind",
        "127.0.0.127",
        "--broadcast",
        "127.0.0.128",
        "--user",
        "ida",
        "--nick",
        "Ida",
        "daemon",
    ]);
    let mut node = c.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let b = Daemon::start("127.0.0.128", "jo", "Jo", &["127.0.0.127"]);
    let sock = home.path().join("pigeon.sock");
    wait_for(|| std::os::unix::net::UnixStream::connect(&sock).is_ok(), "the node");
    let ida =
        |args: &[&str]| pigeon(home.path(), "127.0.0.127", "ida", "Ida", &["127.0.0.128"], args).output().unwrap();
    wait_for(|| String::from_utf8_lossy(&ida(&["peers", "--json"]).stdout).contains("\"Jo\""), "Ida to see Jo");
    let user = if root { "nobody".to_string() } else { std::env::var("USER").unwrap_or_default() };
    for (path, bad) in [(&secret, secret.clone()), (&folder, folder.join("closed.txt"))] {
        let out = ida(&["send", "Jo", "--file", path.to_str().unwrap(), "here"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(5), "a file that cannot be offered: {err}");
        assert!(
            err.contains(&format!("cannot offer {}: the node", bad.display())) && err.contains("cannot read it"),
            "{err}"
        );
        if root {
            assert!(err.contains(&format!("(user {user})")), "{err}");
        }
    }
    assert!(offers(&b).is_empty(), "nothing was offered");
    // What it can read is offered.
    let out = ida(&["send", "Jo", "--file", folder.join("open.txt").to_str().unwrap(), "this one"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // SAFETY: kill(2) on our own child's PID.
    unsafe { libc::kill(node.id() as i32, libc::SIGTERM) };
    let _ = node.wait();
}

/// Files to a peer that is offline wait in the outbox like a text, across
/// a restart of the sender too, and are offered when the peer is back:
/// the receiver fetches them whole.
#[test]
fn files_to_an_offline_peer_are_offered_when_it_returns() {
    let mut a = Daemon::start("127.0.0.140", "ivan", "Ivan", &["127.0.0.141"]);
    let mut b = Daemon::start("127.0.0.141", "jane", "Jane", &["127.0.0.140"]);
    wait_for(|| a.peers().len() == 1, "Ivan to see Jane");
    let jane = a.peers()[0].clone();
    let key = format!("{}@{}", jane["user"].as_str().unwrap(), jane["host"].as_str().unwrap());
    b.stop();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("minutes.txt");
    random_file(&file, 300_000, 7);
    let out =
        a.cli(&["send", &key, "for when you are back", "--file", file.to_str().unwrap(), "--json", "--wait", "2"]);
    let r: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!((out.status.code(), r["status"].as_str()), (Some(1), Some("queued")), "{r}");
    // Ivan restarts: the offer comes back from the store with the outbox.
    a.stop();
    a.spawn();
    b.spawn();
    wait_for(|| a.history(&["--search", "when you are back"])[0]["state"] == "delivered", "delivery from the outbox");
    wait_for(|| !offers(&b).is_empty(), "the offer at Jane");
    assert_eq!(offers(&b)[0]["attachments"][0]["name"], "minutes.txt");
    let to = dir.path().join("got");
    std::fs::create_dir(&to).unwrap();
    let (code, events) = fetch(&b, &to);
    assert_eq!(code, Some(0), "{events:?}");
    assert_eq!(sha256(&to.join("minutes.txt")), sha256(&file));
    // `pigeon offers` now says it was fetched, and where to.
    let listed = offers(&b);
    assert_eq!(listed[0]["attachments"][0]["state"], "fetched", "{listed:?}");
    let saved = listed[0]["attachments"][0]["saved"].as_str().unwrap().to_string();
    assert!(saved.ends_with("got/minutes.txt"), "{saved}");
    let human = String::from_utf8_lossy(&b.cli(&["offers"]).stdout).into_owned();
    assert!(human.contains("fetched → ") && human.contains("minutes.txt"), "{human}");
}
