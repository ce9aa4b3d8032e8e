//! File requests on TCP (protocol.md §6.3): the bodies of GETFILEDATA and
//! GETDIRFILES in every form seen (hex fields, with or without a trailing
//! `:` or NUL, offset present or not), and how to tell that a request that
//! arrives in pieces is complete.

use crate::command::Mode;
use crate::error::{dec_u64, hex_u64, Error, Result};
use crate::packet::Packet;

/// What is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    /// GETFILEDATA: one file from an offset.
    File,
    /// GETDIRFILES: a folder as a directory stream.
    Dir,
}

/// The body of a GETFILEDATA / GETDIRFILES request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileRequest {
    /// The packet number of the offering SENDMSG (hex on the wire).
    pub packet_no: u64,
    /// The file ID read as hex, as IPMsg writes it.
    pub file_id: u64,
    /// The same field read as decimal, for clients that echo the list's
    /// decimal text (iptux falls back to this too).
    pub file_id_decimal: Option<u64>,
    /// The offset to start from, if sent.
    pub offset: Option<u64>,
}

impl FileRequest {
    /// A request for the given offer and file.
    pub fn new(packet_no: u64, file_id: u64, offset: Option<u64>) -> FileRequest {
        FileRequest { packet_no, file_id, file_id_decimal: None, offset }
    }

    /// Reads a request body (`pkt:fid[:offset][:]`).
    pub fn decode(body: &[u8]) -> Result<FileRequest> {
        let body = body.trim_ascii_end();
        let mut fields = body.split(|&b| b == b':');
        let packet_no = hex_u64("request packet number", fields.next().unwrap_or_default())?;
        let fid = fields.next().ok_or(Error::Missing { what: "file request", part: "file ID" })?;
        let file_id = hex_u64("request file ID", fid)?;
        let offset = match fields.next() {
            Some(f) if !f.is_empty() => Some(hex_u64("request offset", f)?),
            _ => None,
        };
        Ok(FileRequest { packet_no, file_id, file_id_decimal: dec_u64("file ID", fid).ok(), offset })
    }

    /// Writes the body in the form every sender accepts: `pkt:fid:off:` for
    /// a file, `pkt:fid:0` for a folder (FeiQ wants the offset, §6.3).
    pub fn encode(&self, kind: RequestKind, out: &mut Vec<u8>) {
        let s = match kind {
            RequestKind::File => format!("{:x}:{:x}:{:x}:", self.packet_no, self.file_id, self.offset.unwrap_or(0)),
            RequestKind::Dir => format!("{:x}:{:x}:0", self.packet_no, self.file_id),
        };
        out.extend_from_slice(s.as_bytes());
    }

    /// The kind a packet asks for, if it is a file request.
    pub fn kind_of(p: &Packet<'_>) -> Option<RequestKind> {
        match p.mode() {
            Mode::GETFILEDATA => Some(RequestKind::File),
            Mode::GETDIRFILES => Some(RequestKind::Dir),
            _ => None,
        }
    }
}

/// How much of a TCP request has arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// The request is complete in the first `n` bytes.
    Complete(usize),
    /// More bytes may follow; if none come shortly, parse what is there
    /// (some FeiQ builds send neither the last `:` nor a NUL).
    Partial,
}

/// Finds the end of a request that may arrive split across reads: at its
/// NUL, or after the `pkt:fid:off:` fields are all there. An encrypted
/// request (ENCRYPTOPT in the command, §7.7) has a colon count of its own
/// (`CAPA:KEY:DATA[:SIGN]`): it ends only at its NUL (or when the caller
/// stops waiting).
pub fn request_framing(buf: &[u8]) -> Framing {
    if let Some(p) = buf.iter().position(|&b| b == 0) {
        return Framing::Complete(p + 1);
    }
    let mut colons = 0;
    let mut command_at = 0;
    for (i, &b) in buf.iter().enumerate() {
        if b == b':' {
            colons += 1;
            if colons == 4 {
                command_at = i + 1;
            }
            if colons == 5 {
                let encrypted = crate::packet::parse_command(&buf[command_at..i])
                    .is_ok_and(|c| c.opts().has(crate::command::Opts::ENCRYPTOPT));
                if encrypted {
                    return Framing::Partial;
                }
            }
            if colons == 8 {
                return Framing::Complete(i + 1);
            }
        }
    }
    Framing::Partial
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form() {
        let forms: [(&[u8], Option<u64>); 5] = [
            (b"6553f290:75bcd16:0:", Some(0)),
            (b"6553f290:75bcd16:0", Some(0)),
            (b"6553f290:75bcd16:", None),
            (b"6553f290:75bcd16", None),
            (b"6553f290:75bcd16:1f4:", Some(500)),
        ];
        for (body, off) in forms {
            let r = FileRequest::decode(body).unwrap();
            assert_eq!((r.packet_no, r.file_id, r.offset), (1700000400, 123456790, off), "{body:?}");
        }
        assert_eq!(FileRequest::decode(b"1:10:0").unwrap().file_id_decimal, Some(10));
        assert!(FileRequest::decode(b"xyz:1").is_err());
        assert!(FileRequest::decode(b"12").is_err());
    }

    #[test]
    fn encrypted_requests_end_at_their_nul() {
        let body = "1_lbt6_0#128#000000000000#0#0#0#4001#9:1700000201:bob:pc:4194402:41900004:a2V5:ZGF0YQ:c2ln";
        assert_eq!(request_framing(body.as_bytes()), Framing::Partial);
        let with_nul = format!("{body}\0");
        assert_eq!(request_framing(with_nul.as_bytes()), Framing::Complete(with_nul.len()));
        // The same without ENCRYPTOPT ends after its third field.
        assert_eq!(request_framing(b"1:2:u:h:98:a:b:c:d"), Framing::Complete(17));
    }

    #[test]
    fn framing() {
        assert_eq!(request_framing(b"1:2:u:h:96:a:b"), Framing::Partial);
        assert_eq!(request_framing(b"1:2:u:h:96:a:b:0:"), Framing::Complete(17));
        assert_eq!(request_framing(b"1:2:u:h:98:a:b:0\0junk"), Framing::Complete(17));
    }
}
