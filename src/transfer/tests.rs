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
    assert!(!part_path(&target, "").exists());
    let mtime = done.metadata().unwrap().modified().unwrap();
    assert_eq!(mtime, std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000));

    // Incomplete: finishing fails and the partial data stays for a resume.
    let t2 = dir.path().join("short.bin");
    let mut f = PartFile::open(&t2, 4).unwrap();
    f.write(b"ab").unwrap();
    assert!(matches!(f.finish(None), Err(TransferError::Incomplete { got: 2, expected: 4, .. })));
    assert_eq!(std::fs::read(part_path(&t2, "")).unwrap(), b"ab");
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
    std::fs::rename(root.join("sub/big.bin"), part_path(&root.join("sub/big.bin"), "")).unwrap();
    let f = File::options().write(true).open(part_path(&root.join("sub/big.bin"), "")).unwrap();
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

#[test]
fn a_part_file_belongs_to_its_offer() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("report.bin");
    let a = offer_tag("alice@pc", 1, 7, 10, 100);
    let b = offer_tag("bob@pc", 9, 7, 10, 100);
    assert_ne!(a, b);
    assert_eq!(a, offer_tag("alice@pc", 1, 7, 10, 100), "stable");
    let mut f = PartFile::open_tagged(&target, 10, &a).unwrap();
    f.write(b"AAAA").unwrap();
    drop(f);
    // Another offer's file of the same name does not resume into it.
    let g = PartFile::open_tagged(&target, 10, &b).unwrap();
    assert_eq!(g.offset(), 0);
    assert_eq!(g.part_path(), dir.path().join(format!("report.bin.{b}.part")));
    drop(g);
    assert_eq!(PartFile::open_tagged(&target, 10, &a).unwrap().offset(), 4);
}

#[test]
fn a_part_file_is_written_by_one_fetch_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("x.bin");
    let first = PartFile::open_tagged(&target, 3, "t").unwrap();
    let err = PartFile::open_tagged(&target, 3, "t").unwrap_err();
    assert!(matches!(&err, TransferError::Busy { name } if name == "x.bin"), "{err}");
    assert!(err.to_string().contains("being fetched already"), "{err}");
    drop(first);
    assert!(PartFile::open_tagged(&target, 3, "t").is_ok());
    // A folder's journal too.
    let j = dir.path().join(".f.t.pigeon-fetch");
    let held = lock_journal(&j, &dir.path().join("f")).unwrap();
    assert!(matches!(lock_journal(&j, &dir.path().join("f")), Err(TransferError::Busy { .. })));
    drop(held);
}

#[test]
fn checksums_are_compared_before_the_rename() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("c.bin");
    let mut f = PartFile::open_tagged(&target, 6, "t").unwrap().hashing().unwrap();
    f.write(b"abc").unwrap();
    drop(f);
    // Resumed: the held bytes are hashed from disk, the rest as written.
    let mut f = PartFile::open_tagged(&target, 6, "t").unwrap().hashing().unwrap();
    f.write(b"def").unwrap();
    let good: [u8; 32] = sha2::Sha256::digest(b"abcdef").into();
    assert_eq!(f.digest(), Some(good));
    let bad: [u8; 32] = sha2::Sha256::digest(b"abcdeX").into();
    let err = f.check_digest(&bad).unwrap_err();
    assert!(matches!(err, TransferError::Checksum { .. }), "{err}");
    assert!(!target.exists() && !part_path(&target, "t").exists(), "nothing complete, nothing to resume wrongly");
    let mut f = PartFile::open_tagged(&target, 6, "t").unwrap().hashing().unwrap();
    f.write(b"abcdef").unwrap();
    let done = f.check_digest(&good).unwrap().finish(None).unwrap();
    assert_eq!(std::fs::read(done).unwrap(), b"abcdef");
}

#[test]
fn moving_to_the_front_is_bounded_and_exact() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("m.bin");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut f = PartFile::open_tagged(&target, data.len() as u64, "t").unwrap().hashing().unwrap();
    // 1 MB held from an earlier attempt; the sender then sent from byte 0.
    f.write(&data[..1_000_000]).unwrap();
    f.write(&data[..1_500_000]).unwrap();
    f.move_to_front(1_000_000, 1_500_000).unwrap();
    assert_eq!(f.offset(), 1_500_000);
    f.write(&data[1_500_000..]).unwrap();
    use sha2::Digest;
    assert_eq!(f.digest(), Some(sha2::Sha256::digest(&data).into()));
    let done = f.finish(None).unwrap();
    assert_eq!(std::fs::read(done).unwrap(), data);
}

#[test]
fn names_of_255_bytes_still_fit_with_their_suffixes() {
    for len in [250, 251, 252, 253, 254, 255] {
        let dir = tempfile::tempdir().unwrap();
        // Multi-byte characters: cuts land on character boundaries.
        let name = format!("{}{}.txt", "报".repeat((len - 4) / 3), "x".repeat((len - 4) % 3));
        assert_eq!(name.len(), len);
        assert!(name.len() <= 255);
        let target = join_safe(dir.path(), &name).unwrap();
        let mut f = PartFile::open_tagged(&target, 1, "0123abcd").unwrap();
        assert!(f.part_path().file_name().unwrap().len() <= NAME_MAX, "{len}");
        assert!(f.part_path().to_string_lossy().ends_with(".0123abcd.part"));
        f.write(b"x").unwrap();
        let done = f.finish(None).unwrap();
        assert_eq!(done, target);
        // A second one of that name: `name (1).txt`, shortened to fit.
        let next = unused_name(dir.path(), &name);
        let n = next.file_name().unwrap().to_string_lossy().into_owned();
        assert!(n.len() <= NAME_MAX && n.ends_with(" (1).txt"), "{n}");
        std::fs::write(&next, b"").unwrap();
    }
}

#[test]
fn a_journal_that_cannot_be_written_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    // The journal's path is a directory: writing it fails.
    let journal = dir.path().join("journal");
    std::fs::create_dir(&journal).unwrap();
    let mut w = DirWriter::new(dir.path(), "f").with_journal(journal);
    let err = receive(&mut w, &stream(&[("f", None), ("a", Some(b"x")), ("..", None)]), 64).unwrap_err();
    assert!(err.to_string().contains("journal"), "{err}");
}

#[test]
fn folder_files_are_checked_against_the_next_records_checksum() {
    use sha2::Digest;
    let ok = hex::encode(sha2::Sha256::digest(b"hello"));
    let bad = hex::encode(sha2::Sha256::digest(b"jello"));
    for (digest, good) in [(ok, true), (bad, false)] {
        let dir = tempfile::tempdir().unwrap();
        let mut out = Vec::new();
        DirHeader::dir("f", 7).encode(Charset::Utf8, &mut out).unwrap();
        DirHeader::file("a.txt", 5, 7).encode(Charset::Utf8, &mut out).unwrap();
        out.extend_from_slice(b"hello");
        let mut up = DirHeader::parent(7);
        up.ext.push(pigeon_protocol::attachment::ExtAttr { key: ext::PIGEON_SHA256_PREV, value: digest });
        up.encode(Charset::Utf8, &mut out).unwrap();
        let mut w = DirWriter::new(dir.path(), "f").with_checksums();
        let r = receive(&mut w, &out, 7);
        assert_eq!(r.is_ok(), good, "{r:?}");
        assert_eq!(dir.path().join("f/a.txt").exists(), good);
        if !good {
            assert!(matches!(r, Err(TransferError::Checksum { .. })));
            assert!(!part_path(&dir.path().join("f/a.txt"), "").exists());
        }
    }
}
