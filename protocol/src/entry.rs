//! Entry payloads (protocol.md §3.3): the body and sections of BR_ENTRY,
//! ANSENTRY, BR_ABSENCE, BR_EXIT and NOOPERATION in the three forms real
//! clients send — IPMsg's nick/group plus UTF-8 trailer
//! (`UN:`/`HN:`/`NN:`/`GN:`/`VS:`), iptux's four sections
//! (nick, group, icon, charset) and FeiQ's plain `nick\0group\0`.

use crate::charset::{self, Charset};
use crate::client::ClientKind;
use crate::error::Result;
use crate::packet::{write_packet, Header, Packet};

/// IPMsg's UTF-8 trailer; a value present here replaces the header's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Utf8Trailer {
    pub user: Option<String>,
    pub host: Option<String>,
    pub nick: Option<String>,
    pub group: Option<String>,
    /// `VS:` platform and version (`00010002:4:99:103`).
    pub version: Option<String>,
    /// `PG:` Pigeon's instance marker (one per home): tells two machines of
    /// one user@host apart. Other clients ignore keys they do not know.
    pub instance: Option<String>,
}

/// iptux's extra sections: its icon file name and the charset it reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IptuxExtra {
    pub icon: String,
    pub charset: String,
}

/// The payload of an entry-type packet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    /// Nick from the body, in the packet's charset.
    pub nick: String,
    /// Group from the first section.
    pub group: String,
    /// IPMsg's UTF-8 trailer, if sent.
    pub trailer: Option<Utf8Trailer>,
    /// iptux's extra sections, if sent.
    pub iptux: Option<IptuxExtra>,
}

impl Entry {
    /// Reads the entry payload of `p`, picking the charset of the legacy
    /// part by [`charset::detect`] (`hint`: what this peer wrote in last).
    /// iptux's charset section is kept but not believed: iptux writes
    /// `utf-8` there whatever its entries are in. Returns the entry and the
    /// charset.
    pub fn decode(p: &Packet<'_>, legacy: Charset, hint: Option<Charset>) -> (Entry, Charset) {
        let sections: Vec<&[u8]> = p.sections().collect();
        let group = sections.first().copied().unwrap_or_default();
        let trailer_at = sections.iter().skip(1).position(|s| s.starts_with(b"\n")).map(|i| i + 1);
        let iptux = match (trailer_at, &sections[..]) {
            (None, [_, icon, cs, ..]) => Some(IptuxExtra {
                icon: String::from_utf8_lossy(icon).into_owned(),
                charset: String::from_utf8_lossy(cs).into_owned(),
            }),
            _ => None,
        };
        let client = ClientKind::from_version(p.version);
        let mut sample = Vec::with_capacity(p.body().len() + group.len());
        sample.extend_from_slice(p.body());
        sample.extend_from_slice(group);
        let cs = charset::detect(p.opts(), client, hint, legacy, &sample);
        let entry = Entry {
            nick: cs.decode(p.body()).into_owned(),
            group: cs.decode(group).into_owned(),
            trailer: trailer_at.map(|i| Utf8Trailer::decode(sections[i])),
            iptux,
        };
        (entry, cs)
    }

    /// The nick to show: the trailer's `NN:` if present, else the body's.
    pub fn display_nick(&self) -> &str {
        self.trailer.as_ref().and_then(|t| t.nick.as_deref()).unwrap_or(&self.nick)
    }

    /// The group to show: the trailer's `GN:` if present, else the section's.
    pub fn display_group(&self) -> &str {
        self.trailer.as_ref().and_then(|t| t.group.as_deref()).unwrap_or(&self.group)
    }

    /// Writes a whole entry-type packet: nick and group in `charset`, then the
    /// trailer (always UTF-8) and iptux's sections if present.
    pub fn encode(&self, header: &Header<'_>, charset: Charset, out: &mut Vec<u8>) -> Result<()> {
        let nick = charset.encode(&self.nick);
        let group = charset.encode(&self.group);
        let trailer = self.trailer.as_ref().map(Utf8Trailer::encode);
        let mut sections: Vec<&[u8]> = vec![&group];
        if let Some(t) = &trailer {
            sections.push(t.as_bytes());
        }
        if let Some(x) = &self.iptux {
            sections.push(x.icon.as_bytes());
            sections.push(x.charset.as_bytes());
        }
        write_packet(out, header, &nick, &sections)
    }
}

impl Utf8Trailer {
    /// Reads `\nKEY:value` lines; unknown keys (`PL:`, `IP:`) are ignored.
    pub fn decode(bytes: &[u8]) -> Utf8Trailer {
        let mut t = Utf8Trailer::default();
        for line in bytes.split(|&b| b == b'\n') {
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let value = Some(String::from_utf8_lossy(&line[colon + 1..]).into_owned());
            match &line[..colon] {
                b"UN" => t.user = value,
                b"HN" => t.host = value,
                b"NN" => t.nick = value,
                b"GN" => t.group = value,
                b"VS" => t.version = value,
                b"PG" => t.instance = value,
                _ => {}
            }
        }
        t
    }

    /// Writes the trailer, starting with `\n`, no terminator.
    pub fn encode(&self) -> String {
        let mut s = String::new();
        for (k, v) in [
            ("UN", &self.user),
            ("HN", &self.host),
            ("NN", &self.nick),
            ("GN", &self.group),
            ("VS", &self.version),
            ("PG", &self.instance),
        ] {
            if let Some(v) = v {
                s.push('\n');
                s.push_str(k);
                s.push(':');
                // A newline or NUL inside a value would break the line format.
                s.extend(v.chars().map(|c| if c == '\n' || c == '\0' { ' ' } else { c }));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Command, Mode, Opts};

    #[test]
    fn ipmsg_trailer_overrides() {
        let p = Packet::decode(b"1:1:taro:PC:16777217:Taro[absence]\0Dev\0\nUN:taro\nHN:PC\nNN:\xe5\xa4\xaa\xe9\x83\x8e\nGN:Dev\nPL:1\nVS:00010002:4:99:103").unwrap();
        let (e, _) = Entry::decode(&p, Charset::Cp932, None);
        assert_eq!(e.display_nick(), "太郎");
        assert_eq!(e.trailer.as_ref().unwrap().version.as_deref(), Some("00010002:4:99:103"));
        assert!(e.iptux.is_none());
    }

    #[test]
    fn iptux_sections() {
        let p = Packet::decode(b"1_iptux 0.10.0:1:bob:bob-pc:257:\xe9\xb2\x8d\xe5\x8b\x83\0QA\0icon-tux.png\0utf-8\0")
            .unwrap();
        let (e, cs) = Entry::decode(&p, Charset::Gbk, None);
        assert_eq!(cs, Charset::Utf8);
        assert_eq!(e.nick, "鲍勃");
        assert_eq!(e.iptux, Some(IptuxExtra { icon: "icon-tux.png".into(), charset: "utf-8".into() }));
    }

    #[test]
    fn pigeon_instance_line() {
        let p = Packet::decode(b"1_pigeon 0.1.0:1:pi:raspberrypi:4194305:pi\0\0\nUN:pi\nHN:raspberrypi\nPG:0123abcd")
            .unwrap();
        let (e, _) = Entry::decode(&p, Charset::Gbk, None);
        let t = e.trailer.unwrap();
        assert_eq!(t.instance.as_deref(), Some("0123abcd"));
        assert!(t.encode().ends_with("\nPG:0123abcd"));
    }

    #[test]
    fn empty_group_and_no_sections() {
        let p = Packet::decode(b"1:1:u:h:1:nick").unwrap();
        let (e, _) = Entry::decode(&p, Charset::Gbk, None);
        assert_eq!((e.nick.as_str(), e.group.as_str()), ("nick", ""));
        let mut out = Vec::new();
        let h = Header {
            version: b"1",
            packet_no: 2,
            user: b"u",
            host: b"h",
            command: Command::new(Mode::ANSENTRY, Opts::FILEATTACHOPT),
        };
        e.encode(&h, Charset::Gbk, &mut out).unwrap();
        assert_eq!(out, b"1:2:u:h:2097155:nick\0\0");
    }
}
