//! Reading datagrams out of packet captures (pcap and pcapng, as tcpdump and
//! Wireshark write them): the UDP payloads to or from a port, with their
//! addresses and times. Used by `pigeon decode --pcap`; knows nothing of the
//! IPMsg format.

use std::fs::File;
use std::io::{BufReader, Read, Seek};
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
    defrag: IpDefragPool,
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

/// Reads every UDP datagram whose source or destination port is `port`.
pub fn read_udp(path: &Path, port: u16) -> Result<Capture> {
    let mut file = BufReader::new(File::open(path).with_context(|| format!("cannot open {}", path.display()))?);
    let mut magic = [0u8; 4];
    file.read_exact(&mut magic).with_context(|| format!("{} is too short to be a capture", path.display()))?;
    file.rewind()?;
    let mut cap = Capture::default();
    let mut frame = 0;
    match magic {
        [0x0a, 0x0d, 0x0d, 0x0a] => {
            let mut r =
                PcapNgReader::new(file).with_context(|| format!("{} is not a readable pcapng file", path.display()))?;
            while let Some(block) = r.next_block() {
                let block = block.with_context(|| format!("{}: damaged pcapng block", path.display()))?.into_owned();
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
            let mut r =
                PcapReader::new(file).with_context(|| format!("{} is not a readable pcap file", path.display()))?;
            let link = r.header().datalink;
            while let Some(p) = r.next_packet() {
                let p = p.with_context(|| format!("{}: damaged pcap record", path.display()))?;
                frame += 1;
                cap.take(frame, p.timestamp, link, &p.data, port);
            }
        }
        _ => bail!("{} is neither a pcap nor a pcapng file", path.display()),
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
    /// fragments; the datagram is taken when its last fragment arrives.
    fn reassemble(&mut self, frame: usize, time: Duration, sliced: &SlicedPacket, src: IpAddr, dst: IpAddr, port: u16) {
        self.fragments += 1;
        let Ok(Some(whole)) = self.defrag.process_sliced_packet(sliced, (), ()) else { return };
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
