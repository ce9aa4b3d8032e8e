//! The capture reader of `pigeon decode --pcap` (`pigeon::capture`), fed
//! from memory with `read_udp_bytes(bytes, 2425)`. Byte 0 picks how the
//! rest is presented: as is; behind a pcap or pcapng magic; behind a whole
//! pcap file header or pcapng section and interface blocks (link type from
//! byte 0: Ethernet, BSD loopback, raw IP, Linux SLL, IPv4, IPv6, unknown);
//! or cut into `[len] bytes` records / enhanced packet blocks with valid
//! framing; or, on raw IP, into IPv4 packets built around the bytes (UDP on
//! port 2425 or TCP, fragment flag, offset and ID from a control byte), so
//! that IP fragment reassembly is reached.
//!
//! Beyond "no panic": no more datagrams than frames, frames than input
//! bytes; frame numbers grow; each datagram is to or from the port and at
//! most 64 KiB; the counters add up (every frame is a datagram, a fragment,
//! another packet or of an unknown link type; reassembled ≤ fragments).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pigeon::capture::read_udp_bytes;

const PORT: u16 = 2425;

/// Link types: Ethernet, BSD loopback, raw IP, Linux SLL, OpenBSD loopback,
/// IPv4, IPv6, and one the reader does not know (USER0).
const LINKS: [u16; 8] = [1, 0, 101, 113, 108, 228, 229, 147];

fn pcap_header(out: &mut Vec<u8>, link: u16) {
    out.extend_from_slice(&[0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0]);
    out.extend_from_slice(&[0; 8]); // time zone, accuracy
    out.extend_from_slice(&65_535u32.to_le_bytes());
    out.extend_from_slice(&u32::from(link).to_le_bytes());
}

fn pcap_record(out: &mut Vec<u8>, i: usize, data: &[u8]) {
    out.extend_from_slice(&(1_700_000_000 + i as u32).to_le_bytes());
    out.extend_from_slice(&(i as u32 * 1000).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
}

fn pcapng_header(out: &mut Vec<u8>, link: u16) {
    // Section header block: no options, section length unknown.
    out.extend_from_slice(&[0x0a, 0x0d, 0x0d, 0x0a]);
    out.extend_from_slice(&28u32.to_le_bytes());
    out.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
    out.extend_from_slice(&[1, 0, 0, 0]);
    out.extend_from_slice(&[0xff; 8]);
    out.extend_from_slice(&28u32.to_le_bytes());
    // Interface description block.
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&20u32.to_le_bytes());
    out.extend_from_slice(&link.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&65_535u32.to_le_bytes());
    out.extend_from_slice(&20u32.to_le_bytes());
}

fn pcapng_packet(out: &mut Vec<u8>, interface: u32, data: &[u8]) {
    let padded = data.len().div_ceil(4) * 4;
    let total = (32 + padded) as u32;
    out.extend_from_slice(&6u32.to_le_bytes());
    out.extend_from_slice(&total.to_le_bytes());
    out.extend_from_slice(&interface.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&1_700_000_000u32.to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
    out.resize(out.len() + padded - data.len(), 0);
    out.extend_from_slice(&total.to_le_bytes());
}

/// An IPv4 packet around `data`: `ctl` bit 0 more-fragments, bits 1–3 the
/// offset (×16 bytes), bits 4–5 the ID, bit 6 TCP, bit 7 swaps the hosts.
/// An unfragmented or first fragment gets a UDP header on port 2425.
fn ipv4(ctl: u8, data: &[u8]) -> Vec<u8> {
    let offset = u16::from((ctl >> 1) & 7) * 2;
    let more = ctl & 1 != 0;
    let proto = if ctl & 0x40 != 0 { 6 } else { 17 };
    let mut payload = Vec::new();
    if offset == 0 && proto == 17 {
        payload.extend_from_slice(&PORT.to_be_bytes());
        payload.extend_from_slice(&40_000u16.to_be_bytes());
        payload.extend_from_slice(&(8 + data.len() as u16).to_be_bytes());
        payload.extend_from_slice(&[0, 0]);
    }
    payload.extend_from_slice(data);
    let (a, b) = ([10, 0, 0, 1], [10, 0, 0, 2]);
    let (src, dst) = if ctl & 0x80 != 0 { (b, a) } else { (a, b) };
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&(20 + payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&u16::from((ctl >> 4) & 3).to_be_bytes());
    p.extend_from_slice(&((u16::from(more) << 13) | offset).to_be_bytes());
    p.extend_from_slice(&[64, proto, 0, 0]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(&payload);
    p
}

/// `[len] len bytes` pieces of `data` (`len` 255: the rest).
fn pieces(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while let [len, rest @ ..] = data {
        let n = if *len == 255 { rest.len() } else { (*len as usize).min(rest.len()) };
        out.push(&rest[..n]);
        data = &rest[n..];
    }
    out
}

fn capture(first: u8, rest: &[u8]) -> Vec<u8> {
    let link = LINKS[(first >> 3) as usize % LINKS.len()];
    let mut out = Vec::with_capacity(rest.len() + 64);
    match first & 7 {
        0 => {}
        1 => out.extend_from_slice(&[0xd4, 0xc3, 0xb2, 0xa1]),
        2 => out.extend_from_slice(&[0x0a, 0x0d, 0x0d, 0x0a]),
        3 => pcap_header(&mut out, link),
        4 => pcapng_header(&mut out, link),
        5 => {
            pcap_header(&mut out, link);
            for (i, p) in pieces(rest).into_iter().enumerate() {
                pcap_record(&mut out, i, p);
            }
            return out;
        }
        6 => {
            pcapng_header(&mut out, link);
            for p in pieces(rest) {
                // Interface 1 does not exist.
                pcapng_packet(&mut out, u32::from(first >> 7), p);
            }
            return out;
        }
        _ => {
            pcap_header(&mut out, 101);
            for (i, p) in pieces(rest).into_iter().enumerate() {
                let (ctl, data) = p.split_first().unwrap_or((&0, &[]));
                pcap_record(&mut out, i, &ipv4(*ctl, data));
            }
            return out;
        }
    }
    out.extend_from_slice(rest);
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let bytes = capture(first, rest);
    let Ok(cap) = read_udp_bytes(&bytes, PORT) else {
        return;
    };
    assert!(cap.datagrams.len() <= data.len(), "{} datagrams from {} bytes", cap.datagrams.len(), data.len());
    assert!(cap.reassembled <= cap.fragments);
    assert!(cap.reassembled <= cap.datagrams.len());
    let frames = cap.unknown_link + cap.other + cap.fragments + (cap.datagrams.len() - cap.reassembled);
    assert!(frames <= bytes.len(), "{frames} frames in {} bytes", bytes.len());
    let mut last = 0;
    for d in &cap.datagrams {
        assert!(d.frame > last && d.frame <= frames, "frame {} after {last}, of {frames}", d.frame);
        last = d.frame;
        assert!(d.src.port() == PORT || d.dst.port() == PORT);
        assert!(d.payload.len() <= 65_535);
        assert_eq!(d.src.is_ipv4(), d.dst.is_ipv4());
    }
});
