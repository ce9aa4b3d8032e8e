use std::os::unix::fs::symlink;

use pigeon_protocol::{Charset, DirStreamDecoder};

use super::*;

fn stream(records: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
    // ("name", None) = directory, ("..", None) = leave, ("name", Some(data)) = file
    let mut out = Vec::new();
    for (name, data) in records {
        match (name, data) {
            (&"..", None) => DirHeader::parent(7).encode(Charset::Utf8, &mut out).unwrap(),
            (n, None) => DirHeader::dir(n, 7).encode(Charset::Utf8, &mut out).unwrap(),
            (n, Some(d)) => {
                DirHeader::file(n, d.len() as u64, 1_700_000_000).encode(Charset::Utf8, &mut out).unwrap();
                out.extend_from_slice(d);
            }
        }
    }
    out
}

fn receive(w: &mut DirWriter, bytes: &[u8], chunk: usize) -> Result<(), TransferError> {
    let mut dec = DirStreamDecoder::new(Charset::Utf8);
    let mut buf = Vec::new();
    for piece in bytes.chunks(chunk) {
        buf.extend_from_slice(piece);
        let mut pos = 0;
        loop {
            let (n, ev) = dec.decode(&buf[pos..]).expect("valid stream");
            pos += n;
            match ev {
                Some(ev) => w.apply(ev)?,
                None => break,
            }
        }
        buf.drain(..pos);
    }
    assert!(dec.is_done());
    Ok(())
}

#[test]
fn hostile_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for n in ["../evil", "/etc/passwd", "a/b", "a\\b", "..", ".", "", "C:", "x\ny", "nul\0", "z.part"] {
        assert!(join_safe(dir.path(), n).is_err(), "{n:?}");
    }
    assert_eq!(join_safe(dir.path(), "报告 a:b.txt").unwrap(), dir.path().join("报告 a:b.txt"));
}

#[test]
fn no_silent_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), b"mine").unwrap();
    assert_eq!(unused_name(dir.path(), "a.txt"), dir.path().join("a (1).txt"));
    std::fs::write(dir.path().join("a (1).txt.part"), b"").unwrap();
    assert_eq!(unused_name(dir.path(), "a.txt"), dir.path().join("a (2).txt"));
    assert_eq!(unused_name(dir.path(), ".bashrc"), dir.path().join(".bashrc"));
    std::fs::write(dir.path().join("noext"), b"").unwrap();
    assert_eq!(unused_name(dir.path(), "noext"), dir.path().join("noext (1)"));
    // A file finished onto a name that appeared meanwhile gets a new one.
    let mut f = PartFile::open(&dir.path().join("a.txt"), 3).unwrap();
    f.write(b"new").unwrap();
    let landed = f.finish(None).unwrap();
    assert_eq!(landed, dir.path().join("a (2).txt"));
    assert_eq!(std::fs::read(dir.path().join("a.txt")).unwrap(), b"mine");
}

#[test]
fn part_file_resumes_and_checks_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("big.bin");
    let mut f = PartFile::open(&target, 10).unwrap();
    assert_eq!(f.offset(), 0);
    f.write(b"01234").unwrap();
    drop(f); // interrupted
    assert!(!target.exists(), "no final file before every byte arrived");
    let mut f = PartFile::open(&target, 10).unwrap();
    assert_eq!(f.offset(), 5, "resume from the .part's length");
    assert!(matches!(f.write(b"5678901"), Err(TransferError::TooLong { .. })), "a size that lies is an error");
    f.write(b"56789").unwrap();
    let done = f.finish(Some(1_600_000_000)).unwrap();
    assert_eq!(std::fs::read(&done).unwrap(), b"0123456789");
    assert!(!part_path(&target).exists());
    let mtime = done.metadata().unwrap().modified().unwrap();
    assert_eq!(mtime, std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000));

    // Incomplete: finishing fails and the partial data stays for a resume.
    let t2 = dir.path().join("short.bin");
    let mut f = PartFile::open(&t2, 4).unwrap();
    f.write(b"ab").unwrap();
    assert!(matches!(f.finish(None), Err(TransferError::Incomplete { got: 2, expected: 4, .. })));
    assert_eq!(std::fs::read(part_path(&t2)).unwrap(), b"ab");
    // A sender that ignores the offset: start again cleanly.
    let mut f = PartFile::open(&t2, 4).unwrap();
    f.restart().unwrap();
    f.write(b"abcd").unwrap();
    assert_eq!(std::fs::read(f.finish(None).unwrap()).unwrap(), b"abcd");
}

#[test]
fn symlinks_are_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    symlink(outside.path().join("victim"), dir.path().join("x.bin.part")).unwrap();
    assert!(matches!(PartFile::open(&dir.path().join("x.bin"), 3), Err(TransferError::Symlink(_))));
    symlink(outside.path(), dir.path().join("folder")).unwrap();
    let mut w = DirWriter::new(dir.path(), "folder");
    let s = stream(&[("folder", None), ("f", Some(b"data")), ("..", None)]);
    assert!(matches!(receive(&mut w, &s, 1000), Err(TransferError::Symlink(_))));
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0, "nothing written outside");
}

#[test]
fn folder_tree_is_written_and_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..50_000u32).map(|i| i as u8).collect();
    let s = stream(&[
        ("whatever-the-sender-calls-it", None),
        ("a.txt", Some(b"hello")),
        ("empty", None),
        ("..", None),
        ("sub", None),
        ("big.bin", Some(&big)),
        ("zero", Some(b"")),
        ("..", None),
        ("..", None),
    ]);
    let mut w = DirWriter::new(dir.path(), "项目 proj");
    receive(&mut w, &s, 777).unwrap();
    let root = dir.path().join("项目 proj");
    assert_eq!(std::fs::read(root.join("a.txt")).unwrap(), b"hello");
    assert!(root.join("empty").is_dir());
    assert_eq!(std::fs::read(root.join("sub/big.bin")).unwrap(), big);
    assert_eq!(std::fs::read(root.join("sub/zero")).unwrap(), b"");
    assert_eq!(w.done.len(), 3);

    // Interrupted half-way through big.bin: simulate by truncating it back to a .part.
    std::fs::rename(root.join("sub/big.bin"), part_path(&root.join("sub/big.bin"))).unwrap();
    let f = File::options().write(true).open(part_path(&root.join("sub/big.bin"))).unwrap();
    f.set_len(20_000).unwrap();
    let mut again = DirWriter::new(dir.path(), "项目 proj");
    receive(&mut again, &s, 4096).unwrap();
    assert_eq!(std::fs::read(root.join("sub/big.bin")).unwrap(), big, "resumed file is identical");
    assert_eq!(again.written, 30_000, "only the missing bytes were written");
    assert_eq!(again.skipped, 5 + 20_000, "complete files and the resumed prefix were passed over");
}

#[test]
fn lying_sizes_and_space() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(check_space(dir.path(), u64::MAX), Err(TransferError::NoSpace { .. })));
    assert!(check_space(dir.path(), 1).is_ok());
    assert!(free_space(dir.path()).unwrap() > 0);
}
