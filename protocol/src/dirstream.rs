//! The directory stream that answers GETDIRFILES (protocol.md §6.6):
//! `hsize:name:size:attr[:k=v…]:` headers, file data after regular-file
//! headers, RETPARENT (`.`) records to go up a level.
//!
//! [`DirHeader::encode`] writes one record header as IPMsg does.
//! [`DirStreamDecoder`] reads a stream incrementally in the style of
//! tokio-util's codecs: feed it what has arrived, get one event and the
//! number of bytes it used, or "need more". File data is handed out as
//! borrowed slices as it arrives, so a fetcher never buffers a whole file,
//! and headers are bounded in length, so it never buffers more than one
//! header. Names are checked to be single safe path components and nesting
//! is bounded.

use crate::attachment::{ext, parse_ext, put_ext, ExtAttr, FileAttr};
use crate::charset::Charset;
use crate::error::{hex_u64, Error, Result};
use crate::name::{put_escaped, take_escaped, validate_component};

/// IPMsg's receiver rejects headers of 1023 bytes or more.
pub const DEFAULT_MAX_HEADER: usize = 1023;
/// Nesting beyond this is refused by default.
pub const DEFAULT_MAX_DEPTH: usize = 64;

/// One record header of the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirHeader {
    /// Bare name (`.` for RETPARENT).
    pub name: String,
    /// Bytes of data that follow (regular files only).
    pub size: u64,
    /// Type and options.
    pub attr: FileAttr,
    /// Extended attributes (IPMsg: `14=` mtime, `16=` creation time).
    pub ext: Vec<ExtAttr>,
}

impl DirHeader {
    /// A regular-file record with IPMsg's time attributes.
    pub fn file(name: &str, size: u64, mtime: u64) -> DirHeader {
        DirHeader { name: name.into(), size, attr: FileAttr::FILE, ext: times(mtime) }
    }

    /// A directory record.
    pub fn dir(name: &str, mtime: u64) -> DirHeader {
        DirHeader { name: name.into(), size: 0, attr: FileAttr::DIRECTORY, ext: times(mtime) }
    }

    /// A "leave this directory" record carrying the times of the directory left.
    pub fn parent(mtime: u64) -> DirHeader {
        DirHeader { name: ".".into(), size: 0, attr: FileAttr(FileAttr::RETPARENT as u32), ext: times(mtime) }
    }

    /// The modification time, from the `14=` attribute.
    pub fn mtime(&self) -> Option<u64> {
        self.ext.iter().find(|e| e.key == ext::MTIME).and_then(ExtAttr::hex_value)
    }

    /// Writes the header (not the data) as IPMsg does: 4 hex digits of
    /// length, size as `%x%08x` (`0` for RETPARENT).
    pub fn encode(&self, charset: Charset, out: &mut Vec<u8>) -> Result<()> {
        if self.name.is_empty() || self.name.contains('\0') {
            return Err(Error::Unwritable { field: "directory entry name", why: "empty or holds NUL" });
        }
        let mut rest = Vec::with_capacity(64 + self.name.len());
        rest.push(b':');
        put_escaped(&mut rest, &charset.encode(&self.name));
        let size = if self.attr.file_type() == FileAttr::RETPARENT {
            "0".to_string()
        } else {
            format!("{:x}{:08x}", self.size >> 32, self.size & 0xFFFF_FFFF)
        };
        rest.extend_from_slice(format!(":{size}:{:x}", self.attr.0).as_bytes());
        put_ext(&mut rest, &self.ext)?;
        rest.push(b':');
        let total = 4 + rest.len();
        if total > 0xFFFF {
            return Err(Error::HeaderTooLong { len: total, limit: 0xFFFF });
        }
        out.extend_from_slice(format!("{total:04x}").as_bytes());
        out.extend_from_slice(&rest);
        Ok(())
    }
}

fn times(mtime: u64) -> Vec<ExtAttr> {
    vec![ExtAttr::hex(ext::MTIME, mtime), ExtAttr::hex(ext::CREATETIME, mtime)]
}

/// What the decoder found next.
#[derive(Debug, PartialEq, Eq)]
pub enum DirEvent<'a> {
    /// Enter a directory (the first one is the requested folder itself).
    Dir(DirHeader),
    /// A regular file starts; its data follows as [`DirEvent::Data`].
    File(DirHeader),
    /// The next piece of the current file's data.
    Data(&'a [u8]),
    /// The current file's data is complete.
    FileEnd,
    /// Leave the current directory; the header carries its times.
    Parent(DirHeader),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    Data { remaining: u64 },
    FileEnd,
    Done,
}

/// Incremental decoder of a directory stream.
#[derive(Debug, Clone)]
pub struct DirStreamDecoder {
    charset: Charset,
    max_header: usize,
    max_depth: usize,
    depth: usize,
    started: bool,
    state: State,
}

impl DirStreamDecoder {
    /// A decoder for names in `charset` (UTF-8 iff the request had UTF8OPT),
    /// with the default limits.
    pub fn new(charset: Charset) -> DirStreamDecoder {
        DirStreamDecoder {
            charset,
            max_header: DEFAULT_MAX_HEADER,
            max_depth: DEFAULT_MAX_DEPTH,
            depth: 0,
            started: false,
            state: State::Header,
        }
    }

    /// Sets the longest header accepted.
    pub fn max_header(mut self, bytes: usize) -> Self {
        self.max_header = bytes;
        self
    }

    /// Sets the deepest nesting accepted.
    pub fn max_depth(mut self, levels: usize) -> Self {
        self.max_depth = levels;
        self
    }

    /// True once the top directory has been left (or a lone file ended).
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// How deep the stream is now (1 = inside the requested folder).
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Reads from `input`: returns how many bytes were used and the next
    /// event, or `None` when more input is needed (then keep the unused
    /// bytes and append what arrives next). Never buffers internally.
    pub fn decode<'a>(&mut self, input: &'a [u8]) -> Result<(usize, Option<DirEvent<'a>>)> {
        match self.state {
            State::Done if input.is_empty() => Ok((0, None)),
            State::Done => Err(Error::TrailingData),
            State::FileEnd => {
                self.state = if self.depth == 0 { State::Done } else { State::Header };
                Ok((0, Some(DirEvent::FileEnd)))
            }
            State::Data { remaining } => {
                if input.is_empty() {
                    return Ok((0, None));
                }
                let n = remaining.min(input.len() as u64) as usize;
                let left = remaining - n as u64;
                self.state = if left == 0 { State::FileEnd } else { State::Data { remaining: left } };
                Ok((n, Some(DirEvent::Data(&input[..n]))))
            }
            State::Header => self.decode_header(input),
        }
    }

    fn decode_header<'a>(&mut self, input: &'a [u8]) -> Result<(usize, Option<DirEvent<'a>>)> {
        let Some(colon) = input.iter().take(9).position(|&b| b == b':') else {
            if input.len() >= 9 {
                return Err(malformed("header length field is not 1-8 hex digits"));
            }
            return Ok((0, None));
        };
        let hsize = hex_u64("header length", &input[..colon])? as usize;
        if hsize > self.max_header {
            return Err(Error::HeaderTooLong { len: hsize, limit: self.max_header });
        }
        if hsize < colon + 2 {
            return Err(malformed("header length shorter than the header"));
        }
        if input.len() < hsize {
            return Ok((0, None));
        }
        let header = &input[colon + 1..hsize];
        if header.last() != Some(&b':') {
            return Err(malformed("header does not end with ':'"));
        }
        let h = self.parse(&header[..header.len() - 1])?;
        let event = match h.attr.file_type() {
            FileAttr::DIR => {
                validate_component(&h.name)?;
                if self.depth >= self.max_depth {
                    return Err(Error::TooDeep(self.max_depth));
                }
                self.depth += 1;
                DirEvent::Dir(h)
            }
            FileAttr::REGULAR => {
                validate_component(&h.name)?;
                self.state = if h.size == 0 { State::FileEnd } else { State::Data { remaining: h.size } };
                DirEvent::File(h)
            }
            FileAttr::RETPARENT => {
                if self.depth == 0 {
                    return Err(malformed("RETPARENT outside any directory"));
                }
                self.depth -= 1;
                if self.depth == 0 {
                    self.state = State::Done;
                }
                DirEvent::Parent(h)
            }
            t => return Err(malformed(&format!("unsupported entry type 0x{t:02x} for {:?}", h.name))),
        };
        if !self.started {
            self.started = true;
        } else if self.depth == 0 && matches!(event, DirEvent::File(_)) {
            // A regular file at top level is only valid as the whole stream.
            return Err(malformed("file outside the requested directory"));
        }
        Ok((hsize, Some(event)))
    }

    fn parse(&self, fields: &[u8]) -> Result<DirHeader> {
        let (name, rest) = take_escaped(fields);
        let rest = rest.ok_or(Error::Missing { what: "directory header", part: "size" })?;
        let parts: Vec<&[u8]> = rest.split(|&b| b == b':').collect();
        let size = hex_u64("directory entry size", parts[0])?;
        let attr = parts.get(1).ok_or(Error::Missing { what: "directory header", part: "attribute" })?;
        let attr = u32::try_from(hex_u64("directory entry attribute", attr)?)
            .map_err(|_| malformed("attribute wider than 32 bits"))?;
        Ok(DirHeader {
            name: self.charset.decode(&name).into_owned(),
            size,
            attr: FileAttr(attr),
            ext: parse_ext(&parts[2..]),
        })
    }
}

fn malformed(why: &str) -> Error {
    Error::Malformed { what: "directory stream", why: why.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(dec: &mut DirStreamDecoder, input: &[u8]) -> Result<(Vec<String>, usize)> {
        let mut log = Vec::new();
        let mut pos = 0;
        loop {
            let (n, ev) = dec.decode(&input[pos..])?;
            pos += n;
            match ev {
                None => return Ok((log, pos)),
                Some(DirEvent::Dir(h)) => log.push(format!("dir {}", h.name)),
                Some(DirEvent::File(h)) => log.push(format!("file {} {}", h.name, h.size)),
                Some(DirEvent::Data(d)) => log.push(format!("data {}", d.len())),
                Some(DirEvent::FileEnd) => log.push("end".into()),
                Some(DirEvent::Parent(_)) => log.push("up".into()),
            }
        }
    }

    #[test]
    fn byte_by_byte_equals_whole() {
        let mut s = Vec::new();
        DirHeader::dir("d", 1).encode(Charset::Utf8, &mut s).unwrap();
        DirHeader::file("f", 3, 1).encode(Charset::Utf8, &mut s).unwrap();
        s.extend_from_slice(b"abc");
        DirHeader::file("e", 0, 1).encode(Charset::Utf8, &mut s).unwrap();
        DirHeader::parent(1).encode(Charset::Utf8, &mut s).unwrap();
        let mut whole = DirStreamDecoder::new(Charset::Utf8);
        let (log, used) = drain(&mut whole, &s).unwrap();
        assert_eq!(log, ["dir d", "file f 3", "data 3", "end", "file e 0", "end", "up"]);
        assert_eq!(used, s.len());
        assert!(whole.is_done());

        // Fed one byte at a time, keeping unused bytes, the events are the same
        // (data arrives in 1-byte pieces).
        let mut dec = DirStreamDecoder::new(Charset::Utf8);
        let mut buf = Vec::new();
        let mut events = Vec::new();
        for &b in &s {
            buf.push(b);
            let (log, used) = drain(&mut dec, &buf).unwrap();
            buf.drain(..used);
            events.extend(log);
        }
        events.dedup_by(|a, b| a == "data 1" && b == "data 1");
        assert_eq!(events, ["dir d", "file f 3", "data 1", "end", "file e 0", "end", "up"]);
        assert!(dec.is_done());
        assert_eq!(dec.decode(b"x"), Err(Error::TrailingData));
    }

    #[test]
    fn limits_and_hostile_input() {
        let mut dec = DirStreamDecoder::new(Charset::Utf8);
        assert!(matches!(dec.decode(b"ffffffff:x"), Err(Error::HeaderTooLong { .. })));
        let mut dec = DirStreamDecoder::new(Charset::Utf8);
        assert!(dec.decode(b"123456789abc").is_err());
        let mut s = Vec::new();
        DirHeader::dir("..", 1).encode(Charset::Utf8, &mut s).unwrap();
        assert!(matches!(DirStreamDecoder::new(Charset::Utf8).decode(&s), Err(Error::UnsafeName { .. })));
        let mut deep = Vec::new();
        for _ in 0..5 {
            DirHeader::dir("d", 1).encode(Charset::Utf8, &mut deep).unwrap();
        }
        let mut dec = DirStreamDecoder::new(Charset::Utf8).max_depth(4);
        assert_eq!(drain(&mut dec, &deep), Err(Error::TooDeep(4)));
        let mut link = Vec::new();
        DirHeader { name: "l".into(), size: 0, attr: FileAttr(FileAttr::SYMLINK as u32), ext: vec![] }
            .encode(Charset::Utf8, &mut link)
            .unwrap();
        assert!(DirStreamDecoder::new(Charset::Utf8).decode(&link).is_err());
    }

    #[test]
    fn single_file_stream() {
        let mut s = Vec::new();
        DirHeader::file("x", 2, 5).encode(Charset::Utf8, &mut s).unwrap();
        s.extend_from_slice(b"hi");
        let mut dec = DirStreamDecoder::new(Charset::Utf8);
        let (log, _) = drain(&mut dec, &s).unwrap();
        assert_eq!(log, ["file x 2", "data 2", "end"]);
        assert!(dec.is_done());
    }
}
