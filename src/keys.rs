//! Our RSA key pairs on disk (IP Messenger's encryption, protocol.md §7):
//! `keys/rsa2048.pem` and `keys/rsa1024.pem` (PKCS#8 PEM) in the home's
//! data folder, the folder 0700 and the files 0600 from the moment they
//! exist. A missing key is generated; an existing one that cannot be used
//! (unreadable, not a key, the wrong size, readable by other users) is an
//! error naming the file and what to do, never replaced: peers cache our
//! public key, so a new one makes us unreadable to them until they refresh.
//! Two processes making the keys at once (a daemon starting while `pigeon
//! keys` runs) end with one key: a file is linked into place only if none
//! is there, and the one that loses reads the winner's.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use pigeon_protocol::pubkey::{KeyPair, KeySize};

use crate::engine::secure::OurKeys;

/// The folder of the key files, in the home's data folder.
pub const KEYS_DIR: &str = "keys";

/// Larger than any PEM of a 2048-bit PKCS#8 key (about 1.7 KB): a file
/// beyond this is not one of ours.
const MAX_PEM: u64 = 64 * 1024;

/// The folder holding the keys of the home whose data folder is `data_dir`.
pub fn keys_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(KEYS_DIR)
}

/// The file of our key of `size`.
pub fn key_file(data_dir: &Path, size: KeySize) -> PathBuf {
    keys_dir(data_dir).join(match size {
        KeySize::Rsa1024 => "rsa1024.pem",
        KeySize::Rsa2048 => "rsa2048.pem",
    })
}

/// Our two key pairs, read from `data_dir/keys/`, each generated (and
/// written 0600) if its file does not exist yet. An existing file that
/// cannot be used is an error; it is left as it is.
pub fn load_or_create(data_dir: &Path) -> Result<OurKeys> {
    let dir = keys_dir(data_dir);
    make_dir(&dir)?;
    Ok(OurKeys {
        rsa2048: load_or_create_one(data_dir, KeySize::Rsa2048)?,
        rsa1024: load_or_create_one(data_dir, KeySize::Rsa1024)?,
    })
}

/// Our key of `size` if its file exists (checked as [`load_or_create`]
/// does); None if it does not. Never generates.
pub fn read_existing(data_dir: &Path, size: KeySize) -> Result<Option<KeyPair>> {
    let dir = keys_dir(data_dir);
    match std::fs::metadata(&dir) {
        Ok(_) => check_dir(&dir)?,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    }
    read_key(&key_file(data_dir, size), size)
}

/// The fingerprints of our 2048-bit key (the one IP Messenger users
/// compare: it is in the user name of fingerprinting clients) and of our
/// 1024-bit key: 16 lower-case hex digits each.
pub fn fingerprints(keys: &OurKeys) -> (String, String) {
    (keys.rsa2048.fingerprint(), keys.rsa1024.fingerprint())
}

/// A fingerprint for people to read aloud: `b61b29bc7516778f` becomes
/// `b61b 29bc 7516 778f`.
pub fn describe_fingerprint(fp: &str) -> String {
    let chars: Vec<char> = fp.chars().collect();
    chars.chunks(4).map(|c| c.iter().collect::<String>()).collect::<Vec<_>>().join(" ")
}

/// What to say about a key file that exists but cannot be used.
fn keep_it(path: &Path) -> String {
    format!(
        "Pigeon never replaces a key by itself (peers have cached it): restore {p} from a backup, \
         or delete it to make a new key (IP Messenger users then need to refresh your key)",
        p = path.display()
    )
}

/// Creates the keys folder 0700 (and the folders above it, 0700, if
/// missing), or checks the existing one.
fn make_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        // Private from the start, whatever the umask (it can only take
        // bits away: 0700 is set again once made).
        use std::os::unix::fs::PermissionsExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make {} private", dir.display()))?;
    }
    check_dir(dir)
}

/// The keys folder must be a folder no one else can enter or write into.
fn check_dir(dir: &Path) -> Result<()> {
    let md = std::fs::metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    if !md.is_dir() {
        bail!("{} is not a folder: move it away so that Pigeon can keep its keys there", dir.display());
    }
    let mode = md.mode() & 0o7777;
    if mode & 0o077 != 0 {
        bail!(
            "{d} is open to other users (mode {mode:04o}): run chmod 700 {d}; if someone may have copied \
             or replaced the keys in it, delete them to make new ones",
            d = dir.display()
        );
    }
    Ok(())
}

/// Reads and checks the key file of `size`; None if it does not exist.
fn read_key(path: &Path, size: KeySize) -> Result<Option<KeyPair>> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read our key {}. {}", path.display(), keep_it(path)));
        }
    };
    // The opened file's own metadata: what is checked is what is read.
    let md = f.metadata().with_context(|| format!("cannot read our key {}", path.display()))?;
    if !md.is_file() {
        bail!("our key {} is not a file. {}", path.display(), keep_it(path));
    }
    let mode = md.mode() & 0o7777;
    if mode & 0o077 != 0 {
        bail!(
            "our key {p} is readable by other users (mode {mode:04o}): run chmod 600 {p}; if someone may \
             have copied it, delete it instead to make a new key",
            p = path.display()
        );
    }
    if md.len() > MAX_PEM {
        bail!("our key {} is not a key ({} bytes). {}", path.display(), md.len(), keep_it(path));
    }
    let mut pem = pigeon_protocol::pubkey::Zeroizing::new(String::new());
    f.read_to_string(&mut pem)
        .with_context(|| format!("our key {} is not a PEM text file. {}", path.display(), keep_it(path)))?;
    let key = KeyPair::from_pkcs8_pem(&pem)
        .with_context(|| format!("our key {} cannot be read. {}", path.display(), keep_it(path)))?;
    if key.size() != size {
        bail!(
            "our key {} holds a {}-bit key, not a {}-bit one. {}",
            path.display(),
            key.size().bits(),
            size.bits(),
            keep_it(path)
        );
    }
    Ok(Some(key))
}

fn load_or_create_one(data_dir: &Path, size: KeySize) -> Result<KeyPair> {
    let path = key_file(data_dir, size);
    if let Some(key) = read_key(&path, size)? {
        return Ok(key);
    }
    let key = KeyPair::generate(size.bits()).with_context(|| format!("cannot make a {}-bit key", size.bits()))?;
    if write_new(&path, &key)? {
        Ok(key)
    } else {
        // Another process made it meanwhile: its key is the one.
        read_key(&path, size)?.with_context(|| format!("{} vanished while it was made", path.display()))
    }
}

/// Writes `key` to `path` if no file is there: to a temporary file created
/// 0600, synced, then linked into place (which fails if `path` exists,
/// unlike a rename). False if `path` existed.
fn write_new(path: &Path, key: &KeyPair) -> Result<bool> {
    let dir = path.parent().expect("a key file is in the keys folder");
    let name = path.file_name().expect("a key file has a name").to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}.{:08x}.tmp", std::process::id(), fastrand::u32(..)));
    let result = (|| {
        let pem = key.to_pkcs8_pem().context("cannot encode the key")?;
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        f.write_all(pem.as_bytes()).with_context(|| format!("cannot write {}", tmp.display()))?;
        f.sync_all().with_context(|| format!("cannot write {}", tmp.display()))?;
        drop(f);
        match std::fs::hard_link(&tmp, path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
        }
        // The new name is durable once the folder is.
        File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("cannot write {}", dir.display()))?;
        Ok(true)
    })();
    let _ = std::fs::remove_file(&tmp);
    result
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn makes_both_keys_private_then_loads_the_same_ones() {
        let home = tempfile::tempdir().unwrap();
        let data = home.path().join("data");
        let t = std::time::Instant::now();
        let keys = load_or_create(&data).unwrap();
        eprintln!("both keys generated in {:.2} s", t.elapsed().as_secs_f64());
        assert_eq!(keys.rsa2048.size(), KeySize::Rsa2048);
        assert_eq!(keys.rsa1024.size(), KeySize::Rsa1024);
        assert_eq!(mode(&keys_dir(&data)), 0o700);
        assert_eq!(mode(&data), 0o700);
        for size in [KeySize::Rsa2048, KeySize::Rsa1024] {
            assert_eq!(mode(&key_file(&data, size)), 0o600, "{size:?}");
        }
        // Nothing else is left in the folder (no temporary files).
        let names: Vec<_> = std::fs::read_dir(keys_dir(&data)).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "{names:?}");

        let again = load_or_create(&data).unwrap();
        assert_eq!(fingerprints(&again), fingerprints(&keys));
        let (fp, _) = fingerprints(&keys);
        assert_eq!(fp.len(), 16);
        assert!(fp.bytes().all(|b| b.is_ascii_hexdigit()));
        let existing = read_existing(&data, KeySize::Rsa2048).unwrap().unwrap();
        assert_eq!(existing.fingerprint(), fp);
    }

    #[test]
    fn read_existing_never_generates() {
        let home = tempfile::tempdir().unwrap();
        assert!(read_existing(home.path(), KeySize::Rsa2048).unwrap().is_none());
        assert!(!keys_dir(home.path()).exists());
    }

    /// A home with the throw-away test keys in place.
    fn with_test_keys() -> tempfile::TempDir {
        let home = tempfile::tempdir().unwrap();
        let dir = keys_dir(home.path());
        std::fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        for (size, pem) in [
            (KeySize::Rsa2048, include_str!("../protocol/tests/crypto/pigeon-test-rsa2048.pem")),
            (KeySize::Rsa1024, include_str!("../protocol/tests/crypto/peer-test-rsa1024.pem")),
        ] {
            let p = key_file(home.path(), size);
            std::fs::write(&p, pem).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        home
    }

    #[test]
    fn a_corrupt_key_is_an_error_and_left_untouched() {
        let home = with_test_keys();
        let p = key_file(home.path(), KeySize::Rsa2048);
        let mut pem = std::fs::read(&p).unwrap();
        pem[100] ^= 0x01; // one bit of the base64
        pem.truncate(600);
        std::fs::write(&p, &pem).unwrap();
        let e = format!("{:#}", load_or_create(home.path()).unwrap_err());
        assert!(e.contains(&p.display().to_string()), "{e}");
        assert!(e.contains("never replaces"), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), pem);
        assert_eq!(mode(&p), 0o600);
        // An empty file too.
        std::fs::write(&p, b"").unwrap();
        assert!(load_or_create(home.path()).is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"");
    }

    #[test]
    fn a_key_of_the_wrong_size_is_an_error() {
        let home = with_test_keys();
        let p = key_file(home.path(), KeySize::Rsa2048);
        std::fs::copy(key_file(home.path(), KeySize::Rsa1024), &p).unwrap();
        let e = format!("{:#}", load_or_create(home.path()).unwrap_err());
        assert!(e.contains("1024-bit key, not a 2048-bit one") && e.contains("rsa2048.pem"), "{e}");
    }

    #[test]
    fn a_key_others_can_read_is_refused() {
        let home = with_test_keys();
        let p = key_file(home.path(), KeySize::Rsa1024);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let before = std::fs::read(&p).unwrap();
        let e = format!("{:#}", load_or_create(home.path()).unwrap_err());
        assert!(e.contains("readable by other users (mode 0644)") && e.contains("chmod 600"), "{e}");
        assert!(e.contains(&p.display().to_string()), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), before);
        assert_eq!(mode(&p), 0o644);
        // So is a keys folder others can enter.
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let dir = keys_dir(home.path());
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = format!("{:#}", load_or_create(home.path()).unwrap_err());
        assert!(e.contains("chmod 700"), "{e}");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        load_or_create(home.path()).unwrap();
    }

    #[test]
    fn a_missing_key_is_made_beside_an_existing_one() {
        let home = with_test_keys();
        let p1024 = key_file(home.path(), KeySize::Rsa1024);
        std::fs::remove_file(&p1024).unwrap();
        let keys = load_or_create(home.path()).unwrap();
        // The 2048-bit key kept, the 1024-bit one new.
        let kept = KeyPair::from_pkcs8_pem(include_str!("../protocol/tests/crypto/pigeon-test-rsa2048.pem")).unwrap();
        assert_eq!(keys.rsa2048.fingerprint(), kept.fingerprint());
        assert_eq!(keys.rsa1024.size(), KeySize::Rsa1024);
        assert_eq!(mode(&p1024), 0o600);
    }

    #[test]
    fn the_file_is_linked_only_where_none_is() {
        let home = with_test_keys();
        let p = key_file(home.path(), KeySize::Rsa2048);
        let before = std::fs::read(&p).unwrap();
        let other = KeyPair::from_pkcs8_pem(include_str!("../protocol/tests/crypto/peer-test-rsa2048.pem")).unwrap();
        assert!(!write_new(&p, &other).unwrap());
        assert_eq!(std::fs::read(&p).unwrap(), before);
        let names: Vec<_> = std::fs::read_dir(keys_dir(home.path())).unwrap().collect();
        assert_eq!(names.len(), 2);
    }

    #[test]
    fn fingerprints_are_grouped_for_people() {
        assert_eq!(describe_fingerprint("b61b29bc7516778f"), "b61b 29bc 7516 778f");
        assert_eq!(describe_fingerprint(""), "");
    }
}
