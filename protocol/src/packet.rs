//! The datagram frame: `version:packetNo:user:host:command:payload`
//! (protocol.md §1.2–§1.3). Reading is lenient (colons inside the body,
//! missing or extra trailing NULs, empty sections, up to 64 KiB); writing is
//! strict (always a trailing NUL, no `:` or NUL in header fields).
//!
//! A decoded [`Packet`] borrows the datagram: nothing is copied or converted.
//! Charsets, entry payloads, attachment lists and the rest live in their own
//! modules and read [`Packet::body`] and [`Packet::sections`].

use crate::command::{Command, Mode, Opts};
use crate::error::{Error, Result};

/// The largest UDP payload over IPv4; anything longer is not a datagram.
pub const MAX_DATAGRAM: usize = 65_507;

/// A packet number as its sender wrote it, checked once where it is read
/// ([`Packet::decode`], or [`PacketNo::from_str`] for one a user or the
/// control API gives): 1 to 32 printable ASCII characters (a `:` would have
/// ended the field). Kept as text, because receipts name it and encryption
/// uses its text as the IV; [`PacketNo::number`] is its value when it is
/// the decimal number every real client writes (FeiQ's are 13 digits).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PacketNo(String);

impl PacketNo {
    /// The longest packet number taken.
    pub const MAX_LEN: usize = 32;

    fn check(raw: &[u8]) -> Result<()> {
        let why = if raw.is_empty() {
            "empty"
        } else if raw.len() > Self::MAX_LEN {
            "longer than 32 characters"
        } else if !raw.iter().all(|b| b.is_ascii_graphic() && *b != b':') {
            "not printable ASCII"
        } else {
            return Ok(());
        };
        Err(Error::Malformed { what: "packet number", why: format!("{:?}: {why}", String::from_utf8_lossy(raw)) })
    }

    /// A packet number read from the wire, checked.
    pub fn from_wire(raw: &[u8]) -> Result<PacketNo> {
        Self::check(raw)?;
        Ok(PacketNo(String::from_utf8_lossy(raw).into_owned()))
    }

    /// Its value, if it is a decimal number that fits in 64 bits.
    pub fn number(&self) -> Option<u64> {
        crate::error::dec_u64("packet number", self.0.as_bytes()).ok()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for PacketNo {
    type Err = Error;
    fn from_str(s: &str) -> Result<PacketNo> {
        PacketNo::from_wire(s.as_bytes())
    }
}

impl From<u64> for PacketNo {
    fn from(n: u64) -> PacketNo {
        PacketNo(n.to_string())
    }
}

impl std::fmt::Display for PacketNo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for PacketNo {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

/// One IPMsg packet, borrowed from the datagram it was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The version field, opaque (`1`, `1_iptux 0.10.0`, `1_lbt6_0#128#…`).
    pub version: &'a [u8],
    /// The packet number exactly as sent (the crypto IV uses the raw text).
    pub packet_no: &'a [u8],
    /// The sender's user name, in the packet's charset.
    pub user: &'a [u8],
    /// The sender's host name, in the packet's charset.
    pub host: &'a [u8],
    /// Mode and option flags.
    pub command: Command,
    /// Everything after the fifth `:`, as received.
    pub payload: &'a [u8],
}

impl<'a> Packet<'a> {
    /// Reads a datagram. Only the header is checked; bodies are read by the
    /// modules that know their format.
    pub fn decode(buf: &'a [u8]) -> Result<Packet<'a>> {
        if buf.len() > MAX_DATAGRAM {
            return Err(Error::TooLong(buf.len()));
        }
        if buf.starts_with(b"IP2:") {
            return Err(Error::IpDict);
        }
        let mut fields = [&buf[..0]; 5];
        let mut rest = buf;
        for (i, field) in fields.iter_mut().enumerate() {
            // A NUL before the fifth colon means the header ended early.
            let Some(pos) = rest.iter().position(|&b| b == b':' || b == 0) else {
                return Err(Error::ShortHeader(i));
            };
            if rest[pos] == 0 {
                return Err(Error::ShortHeader(i));
            }
            *field = &rest[..pos];
            rest = &rest[pos + 1..];
        }
        let [version, packet_no, user, host, command] = fields;
        if version.is_empty() {
            return Err(Error::EmptyField("version"));
        }
        PacketNo::check(packet_no)?;
        let command = parse_command(command)?;
        Ok(Packet { version, packet_no, user, host, command, payload: rest })
    }

    /// The mode of the command word.
    pub fn mode(&self) -> Mode {
        self.command.mode()
    }

    /// The option flags of the command word.
    pub fn opts(&self) -> Opts {
        self.command.opts()
    }

    /// The packet number as a number, if it is a decimal that fits in 64 bits.
    pub fn packet_number(&self) -> Option<u64> {
        crate::error::dec_u64("packet number", self.packet_no).ok()
    }

    /// The packet number as text (it is ASCII digits in every real client).
    pub fn packet_no_str(&self) -> std::borrow::Cow<'a, str> {
        String::from_utf8_lossy(self.packet_no)
    }

    /// The packet number, as [`Packet::decode`] checked it.
    pub fn no(&self) -> PacketNo {
        PacketNo(self.packet_no_str().into_owned())
    }

    /// The message body: the payload up to its first NUL.
    pub fn body(&self) -> &'a [u8] {
        match self.payload.iter().position(|&b| b == 0) {
            Some(p) => &self.payload[..p],
            None => self.payload,
        }
    }

    /// The NUL-separated sections after the body, without the trailing empty
    /// ones (IPMsg pads late retries with 64 NULs; many clients add one).
    pub fn sections(&self) -> Sections<'a> {
        let rest = match self.payload.iter().position(|&b| b == 0) {
            Some(p) => &self.payload[p + 1..],
            None => &[][..],
        };
        let end = rest.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
        Sections { rest: &rest[..end], done: end == 0 }
    }

    /// The `n`th section after the body (0 = the one right after the first NUL).
    pub fn section(&self, n: usize) -> Option<&'a [u8]> {
        self.sections().nth(n)
    }

    /// Bytes after the first NUL, uninterpreted (binary extensions: FeiQ
    /// image fragments, iptux icons).
    pub fn after_body(&self) -> &'a [u8] {
        match self.payload.iter().position(|&b| b == 0) {
            Some(p) => &self.payload[p + 1..],
            None => &[],
        }
    }

    /// Writes this packet, appending the terminating NUL if the payload lacks
    /// one. Fails if a header field would break the framing.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        write_header(out, self.version, self.packet_no, self.user, self.host, self.command)?;
        out.extend_from_slice(self.payload);
        if self.payload.last() != Some(&0) {
            out.push(0);
        }
        Ok(())
    }
}

/// Iterator over the NUL-separated sections of a packet.
#[derive(Clone, Debug)]
pub struct Sections<'a> {
    rest: &'a [u8],
    done: bool,
}

impl<'a> Iterator for Sections<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.done {
            return None;
        }
        match self.rest.iter().position(|&b| b == 0) {
            Some(p) => {
                let s = &self.rest[..p];
                self.rest = &self.rest[p + 1..];
                Some(s)
            }
            None => {
                self.done = true;
                Some(self.rest)
            }
        }
    }
}

pub(crate) fn parse_command(field: &[u8]) -> Result<Command> {
    let bad = || Error::BadCommand(String::from_utf8_lossy(field).into_owned());
    // Some clients pad with spaces; a sign or anything else is not a command.
    let trimmed = field.trim_ascii();
    let v = crate::error::dec_u64("command", trimmed).map_err(|_| bad())?;
    u32::try_from(v).map(Command).map_err(|_| bad())
}

/// Writes a whole packet: header, body, then each section, every one
/// terminated by a NUL (the strict form all three clients accept).
pub fn write_packet(out: &mut Vec<u8>, header: &Header<'_>, body: &[u8], sections: &[&[u8]]) -> Result<()> {
    header.write(out)?;
    if body.contains(&0) {
        return Err(Error::Unwritable { field: "body", why: "contains NUL" });
    }
    out.extend_from_slice(body);
    out.push(0);
    for s in sections {
        if s.contains(&0) {
            return Err(Error::Unwritable { field: "section", why: "contains NUL" });
        }
        out.extend_from_slice(s);
        out.push(0);
    }
    Ok(())
}

/// The header fields of a packet we write; names already in the packet's charset.
#[derive(Clone, Copy, Debug)]
pub struct Header<'a> {
    pub version: &'a [u8],
    pub packet_no: u64,
    pub user: &'a [u8],
    pub host: &'a [u8],
    pub command: Command,
}

impl Header<'_> {
    /// Writes `version:packetNo:user:host:command:`.
    pub fn write(&self, out: &mut Vec<u8>) -> Result<()> {
        let mut buf = [0u8; 20];
        write_header(out, self.version, fmt_u64(self.packet_no, &mut buf), self.user, self.host, self.command)
    }
}

fn write_header(
    out: &mut Vec<u8>,
    version: &[u8],
    packet_no: &[u8],
    user: &[u8],
    host: &[u8],
    command: Command,
) -> Result<()> {
    check_field("version", version)?;
    check_field("packet number", packet_no)?;
    check_field("user", user)?;
    check_field("host", host)?;
    out.reserve(version.len() + packet_no.len() + user.len() + host.len() + 16);
    out.extend_from_slice(version);
    out.push(b':');
    out.extend_from_slice(packet_no);
    out.push(b':');
    out.extend_from_slice(user);
    out.push(b':');
    out.extend_from_slice(host);
    out.push(b':');
    let mut buf = [0u8; 20];
    out.extend_from_slice(fmt_u64(command.0 as u64, &mut buf));
    out.push(b':');
    Ok(())
}

/// Formats a number in decimal without allocating.
pub(crate) fn fmt_u64(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return &buf[i..];
        }
    }
}

fn check_field(field: &'static str, v: &[u8]) -> Result<()> {
    if v.is_empty() {
        // IPMsg's tokenizer collapses empty fields and shifts the rest.
        return Err(Error::Unwritable { field, why: "empty" });
    }
    if v.contains(&b':') {
        return Err(Error::Unwritable { field, why: "contains ':'" });
    }
    if v.contains(&0) {
        return Err(Error::Unwritable { field, why: "contains NUL" });
    }
    Ok(())
}

/// Makes a name safe for a header field: `:` becomes `;` (the IPMsg spec's
/// advice), NUL and other control characters are dropped, and an empty
/// result becomes `_`.
pub fn sanitize_name(name: &str) -> String {
    let s: String = name.chars().filter(|c| !c.is_control()).map(|c| if c == ':' { ';' } else { c }).collect();
    if s.is_empty() {
        "_".into()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_numbers_are_checked_once_read() {
        let p = Packet::decode(b"1:1700000123456:bob:pc:32:hi\0").unwrap();
        assert_eq!(p.no().number(), Some(1_700_000_123_456));
        assert_eq!(p.no().as_str(), "1700000123456");
        // Not decimal, but printable: kept (receipts echo it), no value.
        assert_eq!(Packet::decode(b"1:abc_1:bob:pc:32:hi\0").unwrap().no().number(), None);
        for bad in
            [&b"1::bob:pc:32:hi"[..], b"1:12 3:bob:pc:32:hi", b"1:\xe4\xbd\xa0:bob:pc:32:hi", b"1:\x01:bob:pc:32:hi"]
        {
            assert!(matches!(Packet::decode(bad), Err(Error::Malformed { what: "packet number", .. })), "{bad:?}");
        }
        let long = format!("1:{}:bob:pc:32:hi", "9".repeat(33));
        assert!(Packet::decode(long.as_bytes()).is_err());
        assert_eq!("42".parse::<PacketNo>().unwrap(), PacketNo::from(42));
        assert!("".parse::<PacketNo>().is_err() && "4:2".parse::<PacketNo>().is_err());
    }

    #[test]
    fn colons_in_body_belong_to_body() {
        let p = Packet::decode(b"1:5:u:h:32:a:b:c\0").unwrap();
        assert_eq!(p.body(), b"a:b:c");
        assert_eq!(p.sections().count(), 0);
    }

    #[test]
    fn missing_and_extra_nuls() {
        let no_nul = Packet::decode(b"1:5:u:h:32:hi").unwrap();
        assert_eq!(no_nul.body(), b"hi");
        let mut padded = b"1:5:u:h:32:hi\0".to_vec();
        padded.extend_from_slice(&[0; 64]);
        let p = Packet::decode(&padded).unwrap();
        assert_eq!(p.body(), b"hi");
        assert_eq!(p.sections().count(), 0);
    }

    #[test]
    fn empty_sections_in_the_middle_are_kept() {
        let p = Packet::decode(b"1:5:u:h:1:nick\0\0\nUN:u").unwrap();
        let s: Vec<_> = p.sections().collect();
        assert_eq!(s, [&b""[..], b"\nUN:u"]);
    }

    #[test]
    fn short_and_bad_headers() {
        assert_eq!(Packet::decode(b"1:2:3:4"), Err(Error::ShortHeader(3)));
        assert_eq!(Packet::decode(b"1:2:u\0:h:32:"), Err(Error::ShortHeader(2)));
        assert!(matches!(Packet::decode(b"1:2:u:h:-5:x"), Err(Error::BadCommand(_))));
        assert!(matches!(Packet::decode(b"1:2:u:h:4294967296:x"), Err(Error::BadCommand(_))));
        assert_eq!(Packet::decode(b"IP2:00a:xx"), Err(Error::IpDict));
        assert_eq!(Packet::decode(b":2:u:h:32:x"), Err(Error::EmptyField("version")));
    }

    #[test]
    fn iptux_high_bit_command() {
        let p = Packet::decode(b"1_iptux 0.10.0:1:u:h:2149580832:\0").unwrap();
        assert_eq!(p.command.0, 0x8020_0020);
    }

    #[test]
    fn strict_writing() {
        let mut out = Vec::new();
        let h = Header { version: b"1", packet_no: 7, user: b"a:b", host: b"h", command: Command(32) };
        assert!(write_packet(&mut out, &h, b"x", &[]).is_err());
        let h = Header { user: b"", ..h };
        assert!(write_packet(&mut out, &h, b"x", &[]).is_err());
        let h = Header { user: b"a", ..h };
        out.clear();
        write_packet(&mut out, &h, b"x", &[b"", b"y"]).unwrap();
        assert_eq!(out, b"1:7:a:h:32:x\0\0y\0");
    }

    #[test]
    fn sanitize() {
        assert_eq!(sanitize_name("a:b\n"), "a;b");
        assert_eq!(sanitize_name("\0"), "_");
    }
}
