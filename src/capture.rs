//! Reading datagrams out of packet captures (pcap and pcapng, as tcpdump and
//! Wireshark write them): the UDP payloads to or from a port, with their
//! addresses and times. Used by `pigeon decode --pcap`; knows nothing of the
//! IPMsg format.

use std::fmt::Display;
use std::fs::File;
use std::io::{BufReader, Read};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use etherparse::defrag::IpDefragPool;
use etherparse::{IpNumber, NetSlice, SlicedPacket, TransportSlice, UdpSlice};
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::DataLink;

/// One UDP datagram found in a capture.
#[derive(Debug, Clone)]
pub struct Datagram {
    /// Position of the frame in the capture, from 1.
    pub frame: usize,
    /// Capture time since the Unix epoch.
    pub time: Duration,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub payload: Vec<u8>,
}

/// What was read and what was passed over.
#[derive(Debug, Default)]
pub struct Capture {
    /// Datagrams being put back together, with the frame that last added to each.
    defrag: IpDefragPool<usize>,
    pub datagrams: Vec<Datagram>,
    /// Frames that were not UDP on the port (TCP, ARP, other ports…).
    pub other: usize,
    /// Frames that were IP fragments.
    pub fragments: usize,
    /// Datagrams put back together from fragments.
    pub reassembled: usize,
    /// Frames of a link type this reader does not know.
    pub unknown_link: usize,
}

/// A datagram whose next fragment is this many frames late is given up
/// (its fragments arrive back to back): unfinished datagrams, up to 64 KiB
/// each, must not pile up over a long or hostile capture.
const DEFRAG_WINDOW: usize = 1024;
/// Unfinished datagrams are looked over after this many fragments.
const DEFRAG_SWEEP: usize = 256;

/// Reads every UDP datagram whose source or destination port is `port`.
pub fn read_udp(path: &Path, port: u16) -> Result<Capture> {
    let file = BufReader::new(File::open(path).with_context(|| format!("cannot open {}", path.display()))?);
    read_udp_from(file, &path.display(), port)
}

/// [`read_udp`] on a capture held in memory (the fuzz target's entry).
pub fn read_udp_bytes(bytes: &[u8], port: u16) -> Result<Capture> {
    read_udp_from(bytes, &"the capture", port)
}

/// Reads a pcap or pcapng capture from `input`; `name` names it in errors.
fn read_udp_from(mut input: impl Read, name: &dyn Display, port: u16) -> Result<Capture> {
    let mut magic = [0u8; 4];
    input.read_exact(&mut magic).with_context(|| format!("{name} is too short to be a capture"))?;
    // The readers want the magic too.
    let input = (&magic[..]).chain(input);
    let mut cap = Capture::default();
    let mut frame = 0;
    match magic {
        [0x0a, 0x0d, 0x0d, 0x0a] => {
            let mut r = PcapNgReader::new(input).with_context(|| format!("{name} is not a readable pcapng file"))?;
            while let Some(block) = r.next_block() {
                let block = block.with_context(|| format!("{name}: damaged pcapng block"))?.into_owned();
                if let Block::EnhancedPacket(p) = block {
                    frame += 1;
                    let link = r.interfaces().get(p.interface_id as usize).map(|i| i.linktype);
                    let Some(link) = link else {
                        cap.unknown_link += 1;
                        continue;
                    };
                    cap.take(frame, p.timestamp, link, &p.data, port);
                }
            }
        }
        [0xd4, 0xc3, 0xb2, 0xa1] | [0xa1, 0xb2, 0xc3, 0xd4] | [0x4d, 0x3c, 0xb2, 0xa1] | [0xa1, 0xb2, 0x3c, 0x4d] => {
            let mut r = PcapReader::new(input).with_context(|| format!("{name} is not a readable pcap file"))?;
            let link = r.header().datalink;
            while let Some(p) = r.next_packet() {
                let p = p.with_context(|| format!("{name}: damaged pcap record"))?;
                frame += 1;
                cap.take(frame, p.timestamp, link, &p.data, port);
            }
        }
        _ => bail!("{name} is neither a pcap nor a pcapng file"),
    }
    Ok(cap)
}

impl Capture {
    fn take(&mut self, frame: usize, time: Duration, link: DataLink, data: &[u8], port: u16) {
        let sliced = match link {
            DataLink::ETHERNET => SlicedPacket::from_ethernet(data),
            DataLink::LINUX_SLL => SlicedPacket::from_linux_sll(data),
            DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => SlicedPacket::from_ip(data),
            // BSD loopback: a 4-byte address family, then IP.
            DataLink::NULL | DataLink::LOOP if data.len() > 4 => SlicedPacket::from_ip(&data[4..]),
            _ => {
                self.unknown_link += 1;
                return;
            }
        };
        let Ok(sliced) = sliced else {
            self.other += 1;
            return;
        };
        let (src_ip, dst_ip, fragmented) = match &sliced.net {
            Some(NetSlice::Ipv4(ip)) => {
                (ip.header().source_addr().into(), ip.header().destination_addr().into(), ip.payload().fragmented)
            }
            Some(NetSlice::Ipv6(ip)) => {
                (ip.header().source_addr().into(), ip.header().destination_addr().into(), ip.payload().fragmented)
            }
            None => {
                self.other += 1;
                return;
            }
        };
        match &sliced.transport {
            Some(TransportSlice::Udp(udp)) if udp.source_port() == port || udp.destination_port() == port => {
                self.datagrams.push(Datagram {
                    frame,
                    time,
                    src: SocketAddr::new(src_ip, udp.source_port()),
                    dst: SocketAddr::new(dst_ip, udp.destination_port()),
                    payload: udp.payload().to_vec(),
                });
            }
            _ if fragmented => self.reassemble(frame, time, &sliced, src_ip, dst_ip, port),
            _ => self.other += 1,
        }
    }

    /// Datagrams larger than the MTU (IPMsg sends up to 32 KiB) arrive as IP
    /// fragments; the datagram is taken when its last fragment arrives. At
    /// most `DEFRAG_WINDOW + DEFRAG_SWEEP` datagrams wait for fragments.
    fn reassemble(&mut self, frame: usize, time: Duration, sliced: &SlicedPacket, src: IpAddr, dst: IpAddr, port: u16) {
        self.fragments += 1;
        if self.fragments.is_multiple_of(DEFRAG_SWEEP) {
            self.defrag.retain(|&last| frame - last < DEFRAG_WINDOW);
        }
        let Ok(Some(whole)) = self.defrag.process_sliced_packet(sliced, frame, ()) else { return };
        if whole.ip_number != IpNumber::UDP {
            return;
        }
        let Ok(udp) = UdpSlice::from_slice(&whole.payload) else { return };
        if udp.source_port() == port || udp.destination_port() == port {
            self.datagrams.push(Datagram {
                frame,
                time,
                src: SocketAddr::new(src, udp.source_port()),
                dst: SocketAddr::new(dst, udp.destination_port()),
                payload: udp.payload().to_vec(),
            });
            self.reassembled += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pcap file (raw IP links) of these frames.
    fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut out = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 101, 0, 0, 0];
        for (i, f) in frames.iter().enumerate() {
            for v in [1_700_000_000 + i as u32, 0, f.len() as u32, f.len() as u32] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(f);
        }
        out
    }

    /// An IPv4 packet from 10.0.0.1 to 10.0.0.2 (protocol 17), fragment
    /// `offset` (in 8-byte units) of datagram `id`.
    fn ipv4(id: u16, more: bool, offset: u16, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0];
        p.extend_from_slice(&(20 + payload.len() as u16).to_be_bytes());
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&((u16::from(more) << 13) | offset).to_be_bytes());
        p.extend_from_slice(&[64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        p.extend_from_slice(payload);
        p
    }

    /// A UDP datagram from port 2425 to 2425 with 16 bytes of `fill`, cut
    /// into two fragments.
    fn fragments(id: u16, fill: u8) -> (Vec<u8>, Vec<u8>) {
        let mut udp = vec![0x09, 0x79, 0x09, 0x79, 0, 24, 0, 0];
        udp.extend_from_slice(&[fill; 16]);
        (ipv4(id, true, 0, &udp[..16]), ipv4(id, false, 2, &udp[16..]))
    }

    #[test]
    fn reads_from_memory_and_reassembles() {
        let (a, b) = fragments(1, b'x');
        let mut whole = vec![0x09, 0x79, 0x09, 0x79, 0, 10, 0, 0, b'h', b'i'];
        whole = ipv4(2, false, 0, &whole);
        let cap = read_udp_bytes(&pcap(&[a, whole, b]), 2425).unwrap();
        let got: Vec<(usize, &[u8])> = cap.datagrams.iter().map(|d| (d.frame, &d.payload[..])).collect();
        assert_eq!(got, [(2, &b"hi"[..]), (3, &[b'x'; 16][..])]);
        assert_eq!((cap.fragments, cap.reassembled, cap.other), (2, 1, 0));
        assert_eq!(cap.datagrams[1].src, "10.0.0.1:2425".parse().unwrap());
        assert!(read_udp_bytes(b"\xd4\xc3", 2425).is_err());
        assert!(read_udp_bytes(b"not a capture", 2425).is_err());
    }

    #[test]
    fn unfinished_datagrams_are_given_up() {
        // Datagram 0 waits while many others start and never finish; it
        // is dropped, and the later one still comes together.
        let (first, last) = fragments(0, b'a');
        let mut frames = vec![first];
        for id in 1..=(DEFRAG_WINDOW + DEFRAG_SWEEP) as u16 {
            frames.push(fragments(id, b'b').0);
        }
        frames.push(last);
        let (a, b) = fragments(9999, b'c');
        frames.extend([a, b]);
        let cap = read_udp_bytes(&pcap(&frames), 2425).unwrap();
        assert_eq!(cap.datagrams.len(), 1);
        assert_eq!(cap.datagrams[0].payload, [b'c'; 16]);
    }
}
