//! Host lists (protocol.md §3.7): the ANSLIST body that IPMsg's "ListGet"
//! exchange carries, and the GETLIST index. Ports are written byte-swapped
//! (IPMsg prints `htons(port)`) and an empty nick or group as `\b`.

use crate::charset::Charset;
use crate::error::{dec_u64, Error, Result};

/// One host of a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostEntry {
    pub user: String,
    pub host: String,
    /// Status flags (no mode bits).
    pub status: u32,
    /// Address as text (`192.168.1.10`).
    pub addr: String,
    /// The real port (already swapped back).
    pub port: u16,
    pub nick: String,
    pub group: String,
}

/// An ANSLIST chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostList {
    /// Index to continue from with GETLIST; 0 when this chunk ends the list.
    pub next: u32,
    pub hosts: Vec<HostEntry>,
}

impl HostList {
    /// Reads an ANSLIST body.
    pub fn decode(body: &[u8], charset: Charset) -> Result<HostList> {
        let mut f = body.split(|&b| b == 0x07);
        let mut num = |what: &'static str| -> Result<u64> { dec_u64(what, f.next().unwrap_or_default().trim_ascii()) };
        let next = u32::try_from(num("host list index")?).map_err(|_| bad("index too large"))?;
        let count = num("host list count")? as usize;
        let fields: Vec<&[u8]> = f.collect();
        let mut hosts = Vec::with_capacity(count.min(fields.len() / 7));
        for chunk in fields.chunks_exact(7) {
            let text = |b: &[u8]| {
                if b == b"\x08" {
                    String::new()
                } else {
                    charset.decode(b).into_owned()
                }
            };
            let status = u32::try_from(dec_u64("host status", chunk[2])?).map_err(|_| bad("status too large"))?;
            let port = u16::try_from(dec_u64("host port", chunk[4])?).map_err(|_| bad("port too large"))?;
            hosts.push(HostEntry {
                user: text(chunk[0]),
                host: text(chunk[1]),
                status,
                addr: String::from_utf8_lossy(chunk[3]).into_owned(),
                port: port.swap_bytes(),
                nick: text(chunk[5]),
                group: text(chunk[6]),
            });
        }
        if hosts.len() != count {
            return Err(bad(&format!("says {count} hosts, holds {}", hosts.len())));
        }
        Ok(HostList { next, hosts })
    }

    /// Writes an ANSLIST body.
    pub fn encode(&self, charset: Charset, out: &mut Vec<u8>) -> Result<()> {
        out.extend_from_slice(format!("{:5}\x07{:5}\x07", self.next, self.hosts.len()).as_bytes());
        for h in &self.hosts {
            let status = h.status.to_string();
            let port = h.port.swap_bytes().to_string();
            let fields: [&[u8]; 7] = [
                &charset.encode(&h.user),
                &charset.encode(&h.host),
                status.as_bytes(),
                h.addr.as_bytes(),
                port.as_bytes(),
                &charset.encode(&h.nick),
                &charset.encode(&h.group),
            ];
            for (i, field) in fields.iter().enumerate() {
                if field.contains(&0x07) || field.contains(&0) {
                    return Err(Error::Unwritable { field: "host list entry", why: "holds BEL or NUL" });
                }
                if field.is_empty() && (i == 5 || i == 6) {
                    out.push(0x08);
                } else {
                    out.extend_from_slice(field);
                }
                out.push(0x07);
            }
        }
        Ok(())
    }
}

/// Reads a GETLIST body: the index to start from (empty = 0).
pub fn decode_getlist(body: &[u8]) -> Result<u32> {
    let b = body.trim_ascii();
    if b.is_empty() {
        return Ok(0);
    }
    u32::try_from(dec_u64("GETLIST index", b)?).map_err(|_| bad("index too large"))
}

fn bad(why: &str) -> Error {
    Error::Malformed { what: "host list", why: why.into() }
}
