//! The file server's side of a TCP request (`pigeon::net::files`): the
//! request is read as `read_request` does (chunks of a size taken from the
//! input, `request_framing` after each, 4 KiB at most), then
//! `parse_request`, `select_offer` among a few `OfferRecord`s, and the
//! extension fields (`resume_hint`, `wants_checksum`, `extension_fields`).
//!
//! Input: `[ctl] [offer bytes ×4] [len] len bytes of text for offer fields,
//! then the request`. `ctl`: number of offers (0–4), the requester's
//! address, the legacy charset, the chunk size. Each offer byte derives an
//! offer from the request (its packet number or another, its file ID as hex
//! or decimal or another, the requester's IP or another or a text from the
//! input as `peer.addr`, the header's user or another case of it or a text
//! from the input as `peer.user`); the list handed to `select_offer` holds
//! those of the request's packet number, as `Store::live_offers` does.
//!
//! Beyond "no panic": framing ends within what was read and never after the
//! end it finds in the whole input; a parsed request is the body's
//! `FileRequest` and its kind is the packet's; a selected offer is one of
//! the list, its `file_id` is the request's (hex) or its decimal reading,
//! its `peer.addr` parses to the requester's IP, its `packet_no` is the
//! request's and its user is the header's (ASCII case aside); a single
//! matching offer for a plain ASCII user is found; `resume_hint` reads back
//! what it returns when written as `PR<hex>,<hex>`; `wants_checksum` holds
//! exactly when a `PH` field is among the extension fields.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use pigeon::net::files::{extension_fields, parse_request, resume_hint, select_offer, wants_checksum};
use pigeon::store::{OfferRecord, PeerRef};
use pigeon_protocol::request::{request_framing, Framing};
use pigeon_protocol::{FileRequest, Packet};
use pigeon_protocol_fuzz::{charset, CHARSETS};

/// The server's limit on a request that has not ended.
const MAX_REQUEST: usize = 4096;
/// The server reads at most this much at a time.
const READ_CHUNK: usize = 1024;

const REQUESTERS: [IpAddr; 4] = [
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
    IpAddr::V6(Ipv6Addr::LOCALHOST),
    // What a dual-stack listener reports for an IPv4 client.
    IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0x0a00, 0x0002)),
];

/// `read_request` without the socket: `raw` arrives in chunks of `chunk`
/// bytes; `None` where the server gives up (too long).
fn read_request(raw: &[u8], chunk: usize) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    for piece in raw.chunks(chunk) {
        buf.extend_from_slice(piece);
        if let Framing::Complete(len) = request_framing(&buf) {
            assert!(len > 0 && len <= buf.len(), "framing ends past what was read");
            buf.truncate(len);
            return Some(buf);
        }
        if buf.len() > MAX_REQUEST {
            return None;
        }
    }
    // The client went quiet: whatever arrived.
    (!buf.is_empty()).then_some(buf)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The offer derived from the request by one control byte.
fn offer(b: u8, i: usize, req: &FileRequest, user: &str, requester: IpAddr, texts: &[&str]) -> OfferRecord {
    let text = |k: usize| texts.get(k % texts.len().max(1)).copied().unwrap_or_default().to_owned();
    let packet_no = if b & 1 == 0 { req.packet_no } else { req.packet_no.wrapping_add(1) };
    let file_id = match (b >> 1) & 3 {
        0 => req.file_id,
        1 => req.file_id_decimal.unwrap_or(req.file_id),
        2 => req.file_id.wrapping_add(1),
        _ => i as u64,
    };
    let addr = match (b >> 3) & 3 {
        0 => SocketAddr::new(requester, 2425).to_string(),
        1 => "10.0.0.3:2425".to_owned(),
        2 => SocketAddr::new(requester, 0).to_string(),
        _ => text(i),
    };
    let user = match (b >> 5) & 3 {
        0 => user.to_owned(),
        1 => user.to_ascii_uppercase(),
        2 => "bob".to_owned(),
        _ => text(i + 1),
    };
    OfferRecord {
        packet_no,
        file_id,
        peer: PeerRef { user, host: "pc".into(), nick: String::new(), addr },
        path: PathBuf::from("/nonexistent/fuzz"),
        name: format!("f{i}"),
        dir: b & 0x80 != 0,
        size: 1 << 20,
        mtime: 1_700_000_000,
        created: Default::default(),
        expires: Default::default(),
        released: false,
    }
}

fn extensions(body: &[u8]) {
    let fields: Vec<&[u8]> = extension_fields(body).collect();
    assert!(fields.len() <= body.len());
    assert_eq!(wants_checksum(body), fields.contains(&&b"PH"[..]));
    if let Some((path, off)) = resume_hint(body) {
        assert!(fields.iter().any(|f| f.starts_with(b"PR")));
        let again = format!("1:2:0:PR{},{off:x}", hex(path.as_bytes()));
        assert_eq!(resume_hint(again.as_bytes()), Some((path, off)), "resume hint reads back");
    }
}

fuzz_target!(|data: &[u8]| {
    let [ctl, o0, o1, o2, o3, len, rest @ ..] = data else {
        return;
    };
    let (texts, raw) = rest.split_at((*len as usize).min(rest.len()));
    let texts = String::from_utf8_lossy(texts);
    let texts: Vec<&str> = texts.split('|').collect();
    let n_offers = (ctl & 7).min(4) as usize;
    let requester = REQUESTERS[((ctl >> 3) & 3) as usize];
    let legacy = charset(ctl >> 5);
    let chunk = match ctl >> 6 {
        0 => READ_CHUNK,
        1 => 1,
        2 => 7,
        _ => 64,
    };

    extensions(raw);
    let whole = request_framing(raw);
    let Some(buf) = read_request(raw, chunk) else {
        return;
    };
    assert!(raw.starts_with(&buf));
    // Read in pieces, a request never ends after where the whole input says.
    if let Framing::Complete(n) = whole {
        assert!(buf.len() <= n, "read {} bytes, the whole input ends at {n}", buf.len());
    }

    let Ok((p, kind, req)) = parse_request(&buf) else {
        return;
    };
    assert_eq!(FileRequest::kind_of(&p), Some(kind));
    assert_eq!(FileRequest::decode(p.body()).ok(), Some(req));
    assert_eq!(Packet::decode(&buf).map(|q| q.body() == p.body()).ok(), Some(true));
    extensions(p.body());

    let user = String::from_utf8_lossy(p.user).into_owned();
    let made: Vec<OfferRecord> = [o0, o1, o2, o3]
        .iter()
        .take(n_offers)
        .enumerate()
        .map(|(i, &&b)| offer(b, i, &req, &user, requester, &texts))
        .collect();
    // What `Store::live_offers(req.packet_no)` gives the server.
    let live: Vec<OfferRecord> = made.into_iter().filter(|o| o.packet_no == req.packet_no).collect();
    let peer = SocketAddr::new(requester, 40_000);
    match select_offer(&live, &p, &req, peer, legacy) {
        Ok(o) => {
            assert!(live.contains(&o), "the offer is one of the list");
            assert!(o.file_id == req.file_id || Some(o.file_id) == req.file_id_decimal, "file ID");
            let addr: SocketAddr = o.peer.addr.parse().expect("a selected offer's address parses");
            assert_eq!(addr.ip(), peer.ip(), "served to its addressee's IP only");
            assert_eq!(o.packet_no, req.packet_no);
            let read_as = |cs: pigeon_protocol::Charset| cs.decode(p.user).eq_ignore_ascii_case(&o.peer.user);
            assert!(CHARSETS.into_iter().any(read_as), "served to its addressee's user only");
        }
        Err(_) => {
            // A lone offer that matches in every way is found.
            let plain = !p.user.is_empty() && p.user.iter().all(u8::is_ascii_alphanumeric);
            if let [o] = live.as_slice() {
                let ip = o.peer.addr.parse::<SocketAddr>().is_ok_and(|a| a.ip() == requester);
                if plain && ip && o.file_id == req.file_id && o.peer.user.eq_ignore_ascii_case(&user) {
                    panic!("the matching offer {o:?} was refused");
                }
            }
        }
    }
});
