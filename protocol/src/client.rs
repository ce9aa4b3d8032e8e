//! Which program sent a packet, read from the version field (protocol.md
//! §1.2, §8.1, §9): IP Messenger, FeiQ (whose version field carries its MAC),
//! iptux, Pigeon, or something else.

use crate::error::{Error, Result};

/// The version prefix Pigeon writes; other Pigeons recognise it.
pub const PIGEON_VERSION_PREFIX: &str = "1_pigeon";

/// The kind of client that sent a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientKind {
    /// IP Messenger (version `1`) or a client that imitates it exactly.
    Ipmsg,
    /// FeiQ (飞秋) or a clone that imitates its version field.
    Feiq,
    /// iptux.
    Iptux,
    /// Another Pigeon.
    Pigeon,
    /// Anything else (内网通's `1@shiyeline`, bots, …).
    Unknown,
}

impl ClientKind {
    /// Classifies a version field.
    pub fn from_version(version: &[u8]) -> ClientKind {
        if version.starts_with(b"1_iptux") || version.starts_with(b"iptux") {
            ClientKind::Iptux
        } else if version.starts_with(PIGEON_VERSION_PREFIX.as_bytes()) {
            ClientKind::Pigeon
        } else if version.windows(4).any(|w| w == b"_lbt") {
            ClientKind::Feiq
        } else if version == b"1" {
            ClientKind::Ipmsg
        } else {
            ClientKind::Unknown
        }
    }

    /// The lower-case name used in JSON (`ipmsg`, `feiq`, `iptux`, `pigeon`, `unknown`).
    pub fn name(self) -> &'static str {
        match self {
            ClientKind::Ipmsg => "ipmsg",
            ClientKind::Feiq => "feiq",
            ClientKind::Iptux => "iptux",
            ClientKind::Pigeon => "pigeon",
            ClientKind::Unknown => "unknown",
        }
    }

    /// The inverse of [`ClientKind::name`]; anything else is `Unknown`.
    pub fn from_name(name: &str) -> ClientKind {
        match name {
            "ipmsg" => ClientKind::Ipmsg,
            "feiq" => ClientKind::Feiq,
            "iptux" => ClientKind::Iptux,
            "pigeon" => ClientKind::Pigeon,
            _ => ClientKind::Unknown,
        }
    }

    /// The name a person knows the program by.
    pub fn display_name(self) -> &'static str {
        match self {
            ClientKind::Ipmsg => "IP Messenger",
            ClientKind::Feiq => "FeiQ",
            ClientKind::Iptux => "iptux",
            ClientKind::Pigeon => "Pigeon",
            ClientKind::Unknown => "unknown",
        }
    }
}

/// True if IP Messenger and FeiQ would accept this version field: its
/// leading digits read as 1 (`atoi(version) == 1`).
pub fn version_accepted_by_ipmsg(version: &[u8]) -> bool {
    let digits: Vec<u8> = version.iter().copied().take_while(u8::is_ascii_digit).collect();
    !digits.is_empty() && digits.iter().skip_while(|&&d| d == b'0').eq(b"1".iter())
}

/// FeiQ's version field: `1_lbt<G>_<A>#<F>#<MAC>#<X>#<Y>#<L>[#<P>#<V>]` (§8.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeiqVersion {
    /// The `lbt…` generation marker (`lbt4`, `lbt6`).
    pub generation: String,
    /// Avatar index (text, e.g. `0`, `09`).
    pub avatar: String,
    /// Flags / level (`128`, `32899`, …).
    pub flags: String,
    /// The sender's MAC as 12 hex digits (FeiQ's contact identity).
    pub mac: String,
    /// The remaining `#`-separated fields, as sent (`X`, `Y`, `L`, `P`, `V`).
    pub rest: Vec<String>,
}

impl FeiqVersion {
    /// Parses a FeiQ version field.
    pub fn parse(version: &[u8]) -> Result<FeiqVersion> {
        let bad = |why: &str| Error::Malformed { what: "FeiQ version", why: why.into() };
        let s = std::str::from_utf8(version).map_err(|_| bad("not ASCII"))?;
        let mut parts = s.split('#');
        let head = parts.next().unwrap_or_default();
        let head = head.strip_prefix("1_").ok_or_else(|| bad("does not start with 1_"))?;
        let (generation, avatar) = head.split_once('_').unwrap_or((head, ""));
        if !generation.starts_with("lbt") {
            return Err(bad("no lbt marker"));
        }
        let flags = parts.next().ok_or_else(|| bad("no flags"))?;
        let mac = parts.next().ok_or_else(|| bad("no MAC"))?;
        if mac.len() != 12 || !mac.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("MAC is not 12 hex digits"));
        }
        Ok(FeiqVersion {
            generation: generation.into(),
            avatar: avatar.into(),
            flags: flags.into(),
            mac: mac.into(),
            rest: parts.map(String::from).collect(),
        })
    }

    /// The FeiQ 2013 identity for a MAC: `1_lbt6_0#128#<MAC>#0#0#0#4001#9`.
    pub fn feiq2013(mac: [u8; 6]) -> FeiqVersion {
        FeiqVersion {
            generation: "lbt6".into(),
            avatar: "0".into(),
            flags: "128".into(),
            mac: mac.iter().map(|b| format!("{b:02X}")).collect(),
            rest: ["0", "0", "0", "4001", "9"].map(String::from).to_vec(),
        }
    }

    /// Writes the version field.
    pub fn encode(&self) -> String {
        let mut s = format!("1_{}", self.generation);
        if !self.avatar.is_empty() {
            s.push('_');
            s.push_str(&self.avatar);
        }
        for p in [&self.flags, &self.mac].into_iter().chain(&self.rest) {
            s.push('#');
            s.push_str(p);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(ClientKind::from_version(b"1"), ClientKind::Ipmsg);
        assert_eq!(ClientKind::from_version(b"1_iptux 0.10.0"), ClientKind::Iptux);
        assert_eq!(ClientKind::from_version(b"iptux 0.8.0"), ClientKind::Iptux);
        assert_eq!(ClientKind::from_version(b"1_lbt6_0#128#F8B46AA55B28#0#0#0#4001#9"), ClientKind::Feiq);
        assert_eq!(ClientKind::from_version(b"1_pigeon 0.1.0"), ClientKind::Pigeon);
        assert_eq!(ClientKind::from_version(b"1@shiyeline"), ClientKind::Unknown);
    }

    #[test]
    fn ipmsg_acceptance() {
        assert!(version_accepted_by_ipmsg(b"1"));
        assert!(version_accepted_by_ipmsg(b"1_iptux 0.10.0"));
        assert!(version_accepted_by_ipmsg(b"01@x"));
        assert!(!version_accepted_by_ipmsg(b"iptux 0.8.0"));
        assert!(!version_accepted_by_ipmsg(b"10"));
    }

    #[test]
    fn feiq_version() {
        let v = FeiqVersion::parse(b"1_lbt6_0#128#F8B46AA55B28#0#0#0#4001#9").unwrap();
        assert_eq!(v.mac, "F8B46AA55B28");
        assert_eq!(v.generation, "lbt6");
        assert_eq!(v.encode(), "1_lbt6_0#128#F8B46AA55B28#0#0#0#4001#9");
        let old = FeiqVersion::parse(b"1_lbt4_0#128#001E8C97A9FB#0#0#0").unwrap();
        assert_eq!(old.rest.len(), 3);
        assert_eq!(
            FeiqVersion::feiq2013([0xc8, 0x5b, 0x76, 0xbd, 0x9f, 0x3f]).encode(),
            "1_lbt6_0#128#C85B76BD9F3F#0#0#0#4001#9"
        );
        assert!(FeiqVersion::parse(b"1_lbt6_0#128#XYZ").is_err());
    }
}
