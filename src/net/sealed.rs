//! Encrypted, signed file requests on the file server (protocol.md §7.7,
//! crypto/README.md detail 8), and the AES-256-CTR body a requester may
//! ask for. Owns: opening such a request with our keys, checking its
//! signature against the key pinned for the requester, the replay guard,
//! and [`Out`], the connection's writer that encrypts when asked.
//!
//! Who may fetch what stays the file server's rule (the offer's addressee
//! only); a request signed with the key pinned for its user (first key we
//! were given, or trusted since) may come from another address, as IP
//! Messenger allows. Anything else must come from the addressee's address,
//! as a plain request must. A bad signature is refused outright.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::Write;
use std::net::TcpStream;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

use pigeon_protocol::pubkey::{Capa, EncFileRequest, FileBody, PeerKey, Signature};
use pigeon_protocol::{crypto, FileRequest, Packet, RequestKind};

use sha2::Digest;

use super::files::ServeError;
use crate::engine::OurKeys;
use crate::store::PinnedKey;

/// Requests remembered per requester for the replay guard.
const SEEN_PER_REQUESTER: usize = 256;
/// Requesters remembered (the oldest is forgotten first).
const SEEN_REQUESTERS: usize = 1024;

/// What an encrypted request asks, once opened.
#[derive(Debug)]
pub struct Opened {
    pub kind: RequestKind,
    pub req: FileRequest,
    /// How the body goes: plain (IP Messenger's default) or AES-256-CTR.
    pub body: FileBody,
    /// The request's packet number as written in its header: the CTR
    /// counter's start.
    pub nonce: Vec<u8>,
    /// Pigeon's extension fields (`PH`, `PR…`), split.
    pub extensions: Vec<Vec<u8>>,
    /// Signed with the key pinned for the requester: it may come from any
    /// address.
    pub from_anywhere: bool,
}

/// Our keys, and the request numbers seen (replay guard).
pub struct Sealed {
    keys: Arc<OurKeys>,
    seen: Mutex<Seen>,
}

/// user@host of a requester.
type Requester = (String, String);

/// The digests of the requests each requester made, and the requesters in
/// the order first seen (the oldest is forgotten first).
#[derive(Default)]
struct Seen {
    by: HashMap<Requester, VecDeque<[u8; 32]>>,
    order: VecDeque<Requester>,
}

impl Sealed {
    pub fn new(keys: Arc<OurKeys>) -> Sealed {
        Sealed { keys, seen: Mutex::new(Seen::default()) }
    }

    /// Opens an encrypted request from `user`@`host` (decoded from its
    /// header), whose stored key is `pinned`. Refuses one that does not
    /// decrypt, whose inner packet number differs from its header's, whose
    /// signature is bad, or that was seen before.
    pub fn open(
        &self,
        p: &Packet<'_>,
        kind: RequestKind,
        user: &str,
        host: &str,
        pinned: Option<&PinnedKey>,
    ) -> Result<Opened, ServeError> {
        let refused = |why: &str| ServeError::Refused(format!("encrypted request from {user}@{host}: {why}"));
        let key = pinned
            .and_then(|k| PeerKey::from_parts(Capa(k.capa), &k.exponent, &k.modulus).ok().map(|pk| (pk, !k.changed())));
        let ours = [&self.keys.rsa2048, &self.keys.rsa1024];
        let (r, d) = EncFileRequest::decrypt(p.body(), p.packet_no, &ours, key.as_ref().map(|(k, _)| k))
            .map_err(|_| refused("it does not decrypt with our keys"))?;
        if !r.matches_packet_no(p.packet_no) {
            return Err(refused("its inner packet number is not its header's"));
        }
        if r.kind != kind {
            // A GETFILEDATA plaintext (with an offset) under GETDIRFILES,
            // or the reverse, is not a request anyone writes.
            return Err(refused("its fields do not fit its command"));
        }
        let signed_whole = d.signature == Signature::Verified && d.signed_len == d.plain.len();
        if matches!(d.signature, Signature::Bad) {
            return Err(refused("its signature does not verify"));
        }
        self.first_use(user, host, r.request_packet_no, sha2::Sha256::digest(p.body()).into())?;
        let from_anywhere = signed_whole && key.as_ref().is_some_and(|(_, pinned)| *pinned);
        let offset = (kind == RequestKind::File).then_some(r.offset);
        Ok(Opened {
            kind,
            req: FileRequest::new(r.packet_no, r.file_id, offset),
            body: r.body,
            nonce: p.packet_no.to_vec(),
            extensions: if r.extensions.is_empty() {
                Vec::new()
            } else {
                r.extensions.split(|&b| b == b':').map(<[u8]>::to_vec).collect()
            },
            from_anywhere,
        })
    }

    /// The replay guard: a request is taken once. IP Messenger refuses any
    /// request number not above the last; two `pigeon fetch` processes
    /// started within a second may use one number, so what is remembered is
    /// the request itself (its encrypted body, which no one but the
    /// requester can make anew: a fresh session key and signature each time).
    fn first_use(&self, user: &str, host: &str, no: u64, digest: [u8; 32]) -> Result<(), ServeError> {
        let mut guard = self.seen.lock().map_err(|_| ServeError::Refused("replay guard unavailable".into()))?;
        let Seen { by, order } = &mut *guard;
        let who = (user.to_string(), host.to_string());
        if !by.contains_key(&who) {
            if order.len() >= SEEN_REQUESTERS {
                if let Some(old) = order.pop_front() {
                    by.remove(&old);
                }
            }
            order.push_back(who.clone());
        }
        let seen = by.entry(who).or_default();
        if seen.contains(&digest) {
            return Err(ServeError::Refused(format!(
                "encrypted request {no} from {user}@{host} came before: a replay is refused"
            )));
        }
        if seen.len() >= SEEN_PER_REQUESTER {
            seen.pop_front();
        }
        seen.push_back(digest);
        Ok(())
    }
}

/// The connection's writer: plain, or AES-256-CTR over the whole byte
/// stream from its first byte (headers included).
pub enum Out<'a> {
    Plain(&'a TcpStream),
    Ctr { stream: &'a TcpStream, key: [u8; 32], nonce: Vec<u8>, at: u64, buf: Vec<u8> },
}

const CHUNK: usize = 256 * 1024;

impl<'a> Out<'a> {
    pub fn new(stream: &'a TcpStream, body: &FileBody, nonce: &[u8]) -> Out<'a> {
        match body {
            FileBody::Plain => Out::Plain(stream),
            FileBody::Aes256Ctr(key) => {
                Out::Ctr { stream, key: *key, nonce: nonce.to_vec(), at: 0, buf: Vec::with_capacity(CHUNK) }
            }
        }
    }

    pub fn stream(&self) -> &'a TcpStream {
        match self {
            Out::Plain(s) => s,
            Out::Ctr { stream, .. } => stream,
        }
    }

    pub fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Out::Plain(s) => {
                let mut s: &TcpStream = s;
                s.write_all(data)
            }
            Out::Ctr { stream, key, nonce, at, buf } => {
                for piece in data.chunks(CHUNK) {
                    buf.clear();
                    buf.extend_from_slice(piece);
                    crypto::aes256_ctr_apply(key, nonce, buf, *at);
                    let mut s: &TcpStream = stream;
                    s.write_all(buf)?;
                    *at += piece.len() as u64;
                }
                Ok(())
            }
        }
    }

    /// Sends `len` bytes of `file` from `offset` (sendfile when plain),
    /// feeding `hash` with them when given. Returns the bytes sent: fewer
    /// if the file shrank.
    pub fn send_file(
        &mut self,
        file: &mut File,
        offset: u64,
        len: u64,
        mut hash: Option<&mut sha2::Sha256>,
    ) -> std::io::Result<u64> {
        if let (Out::Plain(s), None) = (&*self, &hash) {
            return super::files::send_range(s, file, offset, len);
        }
        let mut chunk = vec![0u8; (len.min(CHUNK as u64)) as usize];
        let mut done = 0;
        while done < len {
            let want = (len - done).min(chunk.len() as u64) as usize;
            let n = match file.read_at(&mut chunk[..want], offset + done) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if let Some(h) = hash.as_deref_mut() {
                sha2::Digest::update(h, &chunk[..n]);
            }
            self.write_all(&chunk[..n])?;
            done += n as u64;
        }
        Ok(done)
    }

    /// True when bytes are encrypted on the way (no sendfile).
    pub fn encrypts(&self) -> bool {
        matches!(self, Out::Ctr { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pigeon_protocol::pubkey::{Choice, KeyPair};
    use std::sync::LazyLock;

    static OURS: LazyLock<Arc<OurKeys>> = LazyLock::new(|| {
        Arc::new(OurKeys {
            rsa2048: KeyPair::from_pkcs8_pem(include_str!("../../protocol/tests/crypto/pigeon-test-rsa2048.pem"))
                .unwrap(),
            rsa1024: KeyPair::from_pkcs8_pem(include_str!("../../protocol/tests/crypto/peer-test-rsa1024.pem"))
                .unwrap(),
        })
    });
    static PEER: LazyLock<KeyPair> = LazyLock::new(|| {
        KeyPair::from_pkcs8_pem(include_str!("../../protocol/tests/crypto/peer-test-rsa2048.pem")).unwrap()
    });

    fn pinned(key: &KeyPair, pinned_modulus: Option<Vec<u8>>) -> PinnedKey {
        let pk = key.peer_key(Capa::IPMSG_4);
        PinnedKey {
            user: "bob".into(),
            host: "pc".into(),
            capa: Capa::IPMSG_4.0,
            exponent: pk.exponent_be(),
            modulus: pk.modulus_be(),
            pinned: pinned_modulus.unwrap_or_else(|| pk.modulus_be()),
            first_seen: chrono::Utc::now(),
            last_seen: chrono::Utc::now(),
        }
    }

    fn request(no: u64, signer: Option<&KeyPair>, extensions: &[u8]) -> Vec<u8> {
        let r = EncFileRequest {
            kind: RequestKind::File,
            packet_no: 0x6553f290,
            file_id: 7,
            offset: 0x10,
            body: FileBody::Aes256Ctr([9; 32]),
            request_packet_no: no,
            extensions: extensions.to_vec(),
        };
        let choice = Choice::from_capa(Capa::PIGEON).unwrap();
        let body = r.encrypt(&choice, &OURS.rsa2048.peer_key(Capa::PIGEON), signer, no.to_string().as_bytes()).unwrap();
        format!("1_lbt6_0#128#0#0#0#0#4001#9:{no}:bob:pc:{}:{body}", 0x60 | r.opts()).into_bytes()
    }

    #[test]
    fn a_signed_request_opens_once() {
        let s = Sealed::new(OURS.clone());
        let raw = request(1700000201, Some(&PEER), b"PH");
        let p = Packet::decode(&raw).unwrap();
        let o = s.open(&p, RequestKind::File, "bob", "pc", Some(&pinned(&PEER, None))).unwrap();
        assert_eq!((o.req.packet_no, o.req.file_id, o.req.offset), (0x6553f290, 7, Some(0x10)));
        assert_eq!(
            (o.body, o.nonce.as_slice(), o.from_anywhere),
            (FileBody::Aes256Ctr([9; 32]), &b"1700000201"[..], true)
        );
        assert_eq!(o.extensions, vec![b"PH".to_vec()]);
        // The same request again is a replay.
        let e = s.open(&p, RequestKind::File, "bob", "pc", Some(&pinned(&PEER, None))).unwrap_err();
        assert!(e.to_string().contains("replay"), "{e}");
        // A new request with the same number (two fetch processes in one
        // second) is not a replay: its session key and bytes are new.
        let again = request(1700000201, Some(&PEER), b"PH");
        assert_ne!(again, raw);
        s.open(&Packet::decode(&again).unwrap(), RequestKind::File, "bob", "pc", Some(&pinned(&PEER, None))).unwrap();
    }

    #[test]
    fn unsigned_changed_or_bad() {
        let s = Sealed::new(OURS.clone());
        // Unsigned: opens, but only from the addressee's address.
        let raw = request(1, None, b"");
        let o = s.open(&Packet::decode(&raw).unwrap(), RequestKind::File, "bob", "pc", None).unwrap();
        assert!(!o.from_anywhere);
        // Signed with a key other than the pinned one: the same.
        let raw = request(2, Some(&PEER), b"");
        let changed = pinned(&PEER, Some(vec![1; 256]));
        let o = s.open(&Packet::decode(&raw).unwrap(), RequestKind::File, "bob", "pc", Some(&changed)).unwrap();
        assert!(!o.from_anywhere);
        // Signed by someone else than the key we hold: refused.
        let raw = request(3, Some(&OURS.rsa2048), b"");
        let e = s.open(&Packet::decode(&raw).unwrap(), RequestKind::File, "bob", "pc", Some(&pinned(&PEER, None)));
        assert!(e.unwrap_err().to_string().contains("signature"));
        // Garbage, and a header number that is not the inner one.
        let mut raw = request(4, Some(&PEER), b"");
        // A character of the ciphertext (the body's third field, after the header's five).
        let at = raw.iter().enumerate().filter(|(_, &b)| b == b':').nth(6).unwrap().0 + 5;
        raw[at] = if raw[at] == b'A' { b'B' } else { b'A' };
        assert!(s.open(&Packet::decode(&raw).unwrap(), RequestKind::File, "bob", "pc", None).is_err());
        let raw = String::from_utf8(request(5, Some(&PEER), b"")).unwrap().replacen(":5:", ":6:", 1);
        let e = s.open(&Packet::decode(raw.as_bytes()).unwrap(), RequestKind::File, "bob", "pc", None).unwrap_err();
        assert!(e.to_string().contains("does not decrypt") || e.to_string().contains("packet number"), "{e}");
    }

    #[test]
    fn ctr_writer_matches_the_keystream() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (srv, _) = l.accept().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            std::io::Read::read_to_end(&mut &c, &mut got).unwrap();
            got
        });
        let mut out = Out::new(&srv, &FileBody::Aes256Ctr([3; 32]), b"1700000200");
        out.write_all(b"header:").unwrap();
        let mut h = <sha2::Sha256 as sha2::Digest>::new();
        let sent = out.send_file(&mut File::open(&path).unwrap(), 5, data.len() as u64 - 5, Some(&mut h)).unwrap();
        assert_eq!(sent, data.len() as u64 - 5);
        drop(out);
        srv.shutdown(std::net::Shutdown::Write).unwrap();
        let mut got = reader.join().unwrap();
        crypto::aes256_ctr_apply(&[3; 32], b"1700000200", &mut got, 0);
        let mut want = b"header:".to_vec();
        want.extend_from_slice(&data[5..]);
        assert_eq!(got, want);
        assert_eq!(<[u8; 32]>::from(h.finalize()), <[u8; 32]>::from(sha2::Sha256::digest(&data[5..])));
    }
}
