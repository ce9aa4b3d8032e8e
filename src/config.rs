//! Where one identity lives and how it is configured: the home directory
//! (`--home` / `PIGEON_HOME`, else the XDG directories), `config.toml` in
//! it, and the effective values after command-line flags override the file.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use pigeon_protocol::Charset;
use serde::{Deserialize, Serialize};

/// The files of one identity.
#[derive(Clone, Debug)]
pub struct Home {
    /// `config.toml` lives here.
    pub config_dir: PathBuf,
    /// `pigeon.db` lives here.
    pub data_dir: PathBuf,
    /// The control socket lives here.
    pub runtime_dir: PathBuf,
}

impl Home {
    /// `--home DIR` / `PIGEON_HOME` if given (everything in one folder),
    /// else the XDG config, data and runtime directories.
    pub fn resolve(explicit: Option<&Path>) -> Result<Home> {
        let explicit = explicit.map(Path::to_path_buf).or_else(|| std::env::var_os("PIGEON_HOME").map(PathBuf::from));
        let home = match explicit {
            Some(dir) => Home { config_dir: dir.clone(), data_dir: dir.clone(), runtime_dir: dir },
            None => {
                let dirs = directories::ProjectDirs::from("", "", "pigeon")
                    .context("cannot find a home directory: set PIGEON_HOME or pass --home DIR")?;
                Home {
                    config_dir: dirs.config_dir().to_path_buf(),
                    data_dir: dirs.data_dir().to_path_buf(),
                    runtime_dir: dirs.runtime_dir().unwrap_or(dirs.data_dir()).to_path_buf(),
                }
            }
        };
        Ok(home)
    }

    /// Creates the directories (private to the user).
    pub fn create(&self) -> Result<()> {
        for d in [&self.config_dir, &self.data_dir, &self.runtime_dir] {
            if d.exists() {
                continue; // someone else's folder keeps its permissions
            }
            // Private from the start, whatever the umask.
            use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(d)
                .with_context(|| format!("cannot create {}", d.display()))?;
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("cannot make {} private", d.display()))?;
        }
        Ok(())
    }

    pub fn config_file(&self) -> PathBuf {
        self.config_dir.join("config.toml")
    }

    pub fn database(&self) -> PathBuf {
        self.data_dir.join("pigeon.db")
    }

    pub fn socket(&self) -> PathBuf {
        self.runtime_dir.join("pigeon.sock")
    }
}

/// `config.toml`: every key optional.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Login name on the wire (default: the OS user).
    pub user: Option<String>,
    /// Host name on the wire (default: the machine's).
    pub host: Option<String>,
    pub nick: Option<String>,
    pub group: Option<String>,
    /// Charset for peers that do not read UTF-8: gbk (default), utf-8, cp932.
    pub charset: Option<String>,
    /// Extra presence targets: hosts (`10.1.2.3`, `10.1.2.3:2425`) or ranges (`10.1.2.0/24`).
    pub targets: Option<Vec<String>>,
    /// Away text to start with (away when set).
    pub away: Option<String>,
    pub port: Option<u16>,
    /// Days a queued message waits for its peer before it fails.
    pub outbox_expiry_days: Option<u64>,
    /// Days offered files and folders are served.
    pub offer_expiry_days: Option<u64>,
    /// Where fetched files go (default: Downloads/pigeon).
    pub download_dir: Option<PathBuf>,
    /// Peers whose offers the daemon fetches by itself (`user@host`, from
    /// where that peer was heard); empty (the default) fetches nothing unasked.
    pub auto_accept: Option<Vec<String>>,
    /// The most an automatically accepted offer may hold, in MiB (default 100).
    pub auto_accept_max_mb: Option<u64>,
    /// Messages kept from each peer we never wrote to (default 1,000): a
    /// stranger that never stops cannot fill the disk. Conversations are
    /// kept whole.
    pub history_strangers_per_peer: Option<usize>,
    /// Messages kept from all such peers together (default 100,000).
    pub history_strangers_total: Option<usize>,
    /// `pigeon chat`: ring the terminal bell when a message comes (default true).
    pub bell: Option<bool>,
    /// `pigeon chat`: desktop notifications where a desktop session runs (default true).
    pub notify: Option<bool>,
    /// `pigeon chat`: mouse clicks and the wheel (default false: the terminal keeps text selection).
    pub mouse: Option<bool>,
    /// `pigeon chat`: `auto` (default; off when NO_COLOR is set) or `never`.
    pub colors: Option<String>,
    /// Refuse plain messages from peers that can encrypt (default false).
    pub require_encryption: Option<bool>,
    /// Send in plain text to a peer that announces encryption but gives no
    /// key (default false: the message fails, saying why).
    pub plaintext_fallback: Option<bool>,
    /// Ask for file bodies encrypted (AES-256-CTR) when fetching with an
    /// encrypted request (default false: plain bodies, as IP Messenger does).
    pub encrypt_file_bodies: Option<bool>,
    /// Serve the web UI (`pigeon web`) from the daemon (default true).
    pub web: Option<bool>,
    /// Where the web UI listens (default 127.0.0.1:2426). Another address
    /// than loopback lets others on the network reach the page (they still
    /// need the token): set it only on a network you trust.
    pub web_listen: Option<std::net::SocketAddr>,
    /// The largest file the web UI takes in one upload, in MiB (default 4096).
    pub web_max_upload_mb: Option<u64>,
}

impl FileConfig {
    /// Reads `config.toml` (a missing file is an empty configuration).
    pub fn load(path: &Path) -> Result<FileConfig> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let c: FileConfig = toml::from_str(&text)
                    .with_context(|| format!("{} is not a valid configuration", path.display()))?;
                c.check(&text).map_err(|(line, key, e)| anyhow::anyhow!("{}:{line}: {key}: {e}", path.display()))?;
                Ok(c)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FileConfig::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }
}

impl FileConfig {
    /// Checks the values serde takes as any string or number; an error
    /// names the line (of `text`, the file read), the key and what is wrong.
    fn check(&self, text: &str) -> Result<(), (usize, &'static str, anyhow::Error)> {
        let at = |key: &'static str, value: Option<&str>, e: anyhow::Error| (line_of(text, key, value), key, e);
        let port = self.port.unwrap_or(2425);
        if port == 0 {
            return Err(at("port", None, anyhow::anyhow!("peers need a fixed port (2425), not 0")));
        }
        for t in self.targets.iter().flatten() {
            Target::parse(t, port).map_err(|e| at("targets", Some(t), e))?;
        }
        if let Some(c) = &self.charset {
            charset(c).map_err(|e| at("charset", Some(c), e))?;
        }
        if let Some(c) = &self.colors {
            if c != "auto" && c != "never" {
                return Err(at("colors", Some(c), anyhow::anyhow!("{c:?}: use \"auto\" or \"never\"")));
            }
        }
        for who in self.auto_accept.iter().flatten() {
            let ok = who.split_once('@').is_some_and(|(u, h)| !u.is_empty() && !h.is_empty());
            if !ok {
                return Err(at(
                    "auto_accept",
                    Some(who),
                    anyhow::anyhow!("{who:?}: give user@host (as `pigeon peers` shows)"),
                ));
            }
        }
        Ok(())
    }
}

/// The line (1-based) where `key` is set to `value` (or just set).
fn line_of(text: &str, key: &str, value: Option<&str>) -> usize {
    let quoted = value.map(|v| format!("\"{v}\""));
    let mut in_key = false;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        let starts = t.strip_prefix(key).is_some_and(|r| r.trim_start().starts_with('='));
        if starts {
            in_key = true;
        } else if t.split_once('=').is_some_and(|(k, _)| !k.trim().is_empty() && !k.contains('"') && !k.contains('[')) {
            in_key = false;
        }
        if in_key && quoted.as_ref().is_none_or(|q| line.contains(q.as_str())) {
            return i + 1;
        }
    }
    1
}

/// A presence target from the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// One address.
    Host(SocketAddr),
    /// Every address of a range (probed by unicast, paced).
    Range { net: Ipv4Addr, prefix: u8, port: u16 },
}

impl Target {
    /// Parses `1.2.3.4`, `1.2.3.4:2425` or `1.2.3.0/24` (ranges of /16 or smaller).
    pub fn parse(s: &str, port: u16) -> Result<Target> {
        if let Some((net, prefix)) = s.split_once('/') {
            let net: Ipv4Addr = net.parse().with_context(|| format!("{s}: not an IPv4 range"))?;
            let prefix: u8 = prefix.parse().with_context(|| format!("{s}: bad prefix length"))?;
            if !(16..=32).contains(&prefix) {
                bail!("{s}: ranges from /16 to /32 only (a /{prefix} is too many hosts to probe)");
            }
            let mask = u32::MAX.checked_shl(32 - prefix as u32).unwrap_or(0);
            return Ok(Target::Range { net: Ipv4Addr::from(u32::from(net) & mask), prefix, port });
        }
        if let Ok(sa) = s.parse::<SocketAddr>() {
            return Ok(Target::Host(sa));
        }
        let ip: IpAddr = s.parse().with_context(|| format!("{s}: not an address or range"))?;
        Ok(Target::Host(SocketAddr::new(ip, port)))
    }

    /// Every address this target stands for.
    pub fn addresses(&self) -> Vec<SocketAddr> {
        match self {
            Target::Host(a) => vec![*a],
            Target::Range { net, prefix, port } => {
                let base = u32::from(*net);
                let size = 1u32 << (32 - *prefix as u32);
                let (first, last) = if size > 2 { (1, size - 1) } else { (0, size) };
                (first..last).map(|i| SocketAddr::from((Ipv4Addr::from(base + i), *port))).collect()
            }
        }
    }
}

/// The OS user name.
pub fn login_name() -> String {
    std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "pigeon".into())
}

/// The machine's host name.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// Reads a charset name from the configuration.
pub fn charset(name: &str) -> Result<Charset> {
    Charset::from_label(name).with_context(|| format!("unknown charset {name:?} (use gbk, utf-8 or cp932)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(Target::parse("10.0.0.5", 2425).unwrap(), Target::Host("10.0.0.5:2425".parse().unwrap()));
        assert_eq!(Target::parse("10.0.0.5:2426", 2425).unwrap(), Target::Host("10.0.0.5:2426".parse().unwrap()));
        let r = Target::parse("10.1.2.77/24", 2425).unwrap();
        assert_eq!(r.addresses().len(), 254);
        assert_eq!(r.addresses()[0], "10.1.2.1:2425".parse().unwrap());
        assert!(Target::parse("10.0.0.0/8", 2425).is_err());
        assert!(Target::parse("nonsense", 2425).is_err());
        assert_eq!(Target::parse("10.0.0.9/32", 2425).unwrap().addresses().len(), 1);
    }

    #[test]
    fn config_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.toml");
        assert!(FileConfig::load(&p).unwrap().nick.is_none());
        std::fs::write(&p, "nick = \"Alice\"\ntargets = [\"10.0.0.0/24\"]\n").unwrap();
        let c = FileConfig::load(&p).unwrap();
        assert_eq!(c.nick.as_deref(), Some("Alice"));
        std::fs::write(&p, "nik = \"typo\"\n").unwrap();
        let err = FileConfig::load(&p).unwrap_err();
        assert!(format!("{err:#}").contains("unknown field"), "{err:#}");
    }

    #[test]
    fn config_errors_name_the_key_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.toml");
        let err = |text: &str| {
            std::fs::write(&p, text).unwrap();
            format!("{:#}", FileConfig::load(&p).unwrap_err())
        };
        let e = err("nick = \"a\"\ntargts = [\"10.0.0.255\"]\n");
        assert!(e.contains("line 2") && e.contains("targts"), "{e}");
        let e = err("nick = \"a\"\ntargets = [\n  \"10.0.0.255\",\n  \"10.0.0.300\",\n]\n");
        assert!(e.ends_with("config.toml:4: targets: 10.0.0.300: not an address or range"), "{e}");
        let e = err("charset = \"latin9\"\n");
        assert!(e.contains("config.toml:1: charset: unknown charset"), "{e}");
        let e = err("# x\nport = 0\n");
        assert!(e.contains("config.toml:2: port:"), "{e}");
        let e = err("auto_accept = [\"bob\"]\n");
        assert!(e.contains(":1: auto_accept: \"bob\": give user@host"), "{e}");
        let e = err("nick = 5\n");
        assert!(e.contains("line 1"), "{e}");
    }
}
