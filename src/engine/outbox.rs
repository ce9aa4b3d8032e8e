//! Our messages until they are acknowledged (§4.1): each recipient's
//! [`Pending`] send with its datagram or what it will be written from
//! ([`Body`]), its retransmissions, the outbox where it waits for a peer that
//! is away (sent again when the peer is back, failed after
//! `outbox_expiry`), acknowledgements and read receipts, sends that wait for
//! a peer's public key; and our checked read receipts until answered
//! ([`PendingRead`]).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use pigeon_protocol::{ClientKind, Mode, Opts, Packet};

use super::{fits, Delivery, Engine, Event, Now, OfferFile, Output, PeerKey, StoreOp};

/// IPMsg's READMSG retry: 750 ms, 12 times.
const READ_RETRY: Duration = Duration::from_millis(750);
const READ_TRIES: u32 = 12;
/// How often queued messages are tried again and expired.
pub(super) const OUTBOX_CHECK_EVERY: Duration = Duration::from_secs(60);

/// What a message written later (the peer's charset is not known yet)
/// keeps: what it is (sealed, to several). The charset flags are the
/// peer's, and NOADDLISTOPT this run's.
pub(super) const KEPT_OPTS: u32 = Opts::SECRETEXOPT | Opts::MULTICASTOPT;

/// One recipient of an outgoing message still waiting for its ack.
#[derive(Clone, Debug)]
pub(super) struct Pending {
    pub(super) id: u64,
    pub(super) peer: PeerKey,
    pub(super) packet_no: u64,
    pub(super) body: Body,
    pub(super) sends: u32,
    pub(super) next: Option<Duration>,
    pub(super) queued_at_ms: Option<i64>,
}

/// A queued message's datagram, or what it will be written from.
#[derive(Clone, Debug)]
pub(super) enum Body {
    Written(Vec<u8>),
    /// For a peer whose charset and client are not known yet (known from
    /// the store only, or restored from the outbox): written when it comes
    /// back. `opts` keeps SECRETEXOPT and MULTICASTOPT.
    Unwritten {
        opts: Opts,
        text: String,
        files: Vec<(u64, OfferFile)>,
    },
}

impl Body {
    pub(super) fn written(&self) -> Option<&Vec<u8>> {
        match self {
            Body::Written(d) => Some(d),
            Body::Unwritten { .. } => None,
        }
    }
}

/// A READMSG of ours waiting for its ANSREADMSG.
#[derive(Clone, Debug)]
pub(super) struct PendingRead {
    dst: SocketAddr,
    packet_no: u64,
    datagram: Vec<u8>,
    sends: u32,
    next: Duration,
}

impl Engine {
    /// When the next retransmission of a message is due.
    pub(super) fn next_retry(&self) -> Option<Duration> {
        self.pending.iter().filter_map(|p| p.next).min()
    }

    /// When the next checked read receipt is sent again.
    pub(super) fn next_read_retry(&self) -> Option<Duration> {
        self.reads.iter().map(|r| r.next).min()
    }

    /// Send `id` waits in the outbox for its peer: listeners and the store are told.
    pub(super) fn queued(&mut self, id: u64, peer: PeerKey, packet_no: u64) {
        self.event(Event::Receipt { id, peer: peer.clone(), packet_no, status: Delivery::Queued });
        self.out.push_back(Output::Store {
            op: StoreOp::OutState { peer, packet_no, state: Delivery::Queued },
            then: Vec::new(),
        });
    }

    /// Send `id` is done (`state`: delivered, read or failed): listeners and
    /// the store are told.
    pub(super) fn finish(&mut self, id: u64, peer: PeerKey, packet_no: u64, state: Delivery) {
        self.event(Event::Receipt { id, peer: peer.clone(), packet_no, status: state });
        self.out.push_back(Output::Store { op: StoreOp::OutState { peer, packet_no, state }, then: Vec::new() });
    }

    /// Retransmits the messages whose retry is due; asks again for the key
    /// of a peer a message waits for; queues (or, without a key, fails or
    /// sends in plain) what was retried in vain.
    pub(super) fn retry_sends(&mut self, now: Now) {
        let mut resend = Vec::new();
        let mut give_up = Vec::new();
        let mut ask = Vec::new();
        for (i, p) in self.pending.iter_mut().enumerate() {
            let Some(t) = p.next else { continue };
            if t > now.mono {
                continue;
            }
            // A key is asked for twice as long as a message is retried:
            // under loss, both the request and the answer must get through.
            let limit = if p.body.written().is_none() { self.cfg.retries * 2 + 1 } else { self.cfg.retries };
            if p.sends > limit {
                p.next = None;
                // The outbox expiry counts from the first time it was queued.
                p.queued_at_ms.get_or_insert(now.unix_ms);
                give_up.push(i);
            } else if p.body.written().is_none() {
                // Waiting for the peer's key: ask again.
                p.sends += 1;
                p.next = Some(now.mono + self.cfg.retry_interval);
                ask.push(p.peer.clone());
            } else {
                p.sends += 1;
                p.next = Some(now.mono + self.cfg.retry_interval);
                resend.push(i);
            }
        }
        for i in resend {
            let (key, mut dg, sends) = {
                let p = &self.pending[i];
                let Some(dg) = p.body.written() else { continue };
                (p.peer.clone(), dg.clone(), p.sends)
            };
            // IPMsg pads the 3rd and 4th retransmissions with 64 NULs.
            if sends >= 4 {
                dg.extend_from_slice(&[0; 64]);
            }
            if let Some(addr) = self.peers.get(&key).map(|p| p.addr) {
                self.transmit(addr, dg);
            }
        }
        // One request (and probe) per peer, however many messages wait for it.
        let mut seen_keys = HashSet::new();
        ask.retain(|k| seen_keys.insert(k.clone()));
        for key in ask {
            // Bypass the once-a-second limit: this is the retry timer.
            self.key_asked.remove(&key);
            self.ask_key(now, &key, false);
            // And ask whether it is there at all (every client answers a
            // BR_ENTRY): one that answers but gives no key is told apart
            // from one that is gone.
            if let Some(addr) = self.peers.get(&key).map(|p| p.addr) {
                let e = self.entry_packet(now, Mode::BR_ENTRY, 0);
                self.transmit(addr, e);
            }
        }
        let mut no_key = Vec::new();
        // The key requests of one wait went out over this long.
        let wait = self.cfg.retry_interval * (self.cfg.retries * 2 + 2);
        for &i in &give_up {
            let p = &self.pending[i];
            // Heard from during the wait (it is there) yet no key: it will
            // not give one. Silent: gone like any peer that does not answer,
            // and the message waits in the outbox for it.
            let alive = self.heard.get(&p.peer).is_some_and(|t| now.mono.saturating_sub(*t) <= wait);
            if p.body.written().is_none() && alive {
                no_key.push(p.id);
            } else {
                self.queued(p.id, p.peer.clone(), p.packet_no);
            }
        }
        // An online peer that announces encryption and never gave its key:
        // plain text only if the user allows it; else the send fails, saying why.
        for id in no_key {
            self.without_key(now, id);
        }
    }

    /// Our checked read receipt `packet_no`, just sent to `dst` as
    /// `datagram`, is retried until it is answered.
    pub(super) fn await_read_answer(&mut self, now: Now, dst: SocketAddr, packet_no: u64, datagram: Vec<u8>) {
        self.reads.push(PendingRead { dst, packet_no, datagram, sends: 1, next: now.mono + READ_RETRY });
    }

    /// An ANSREADMSG from `from`: its read receipt `packet_no` is answered.
    pub(super) fn read_answered(&mut self, from: SocketAddr, packet_no: u64) {
        self.reads.retain(|x| !(x.packet_no == packet_no && x.dst.ip() == from.ip()));
    }

    /// Sends again the checked read receipts (READMSG) not yet answered.
    pub(super) fn retry_reads(&mut self, now: Now) {
        let mut read_retry = Vec::new();
        self.reads.retain_mut(|r| {
            if r.next > now.mono {
                return true;
            }
            if r.sends >= READ_TRIES {
                return false;
            }
            r.sends += 1;
            r.next = now.mono + READ_RETRY;
            read_retry.push((r.dst, r.datagram.clone()));
            true
        });
        for (dst, dg) in read_retry {
            self.transmit(dst, dg);
        }
    }

    /// Once a minute: sends again what is queued for peers still listed
    /// online, and fails what waited in the outbox longer than
    /// `outbox_expiry`.
    pub(super) fn check_outbox(&mut self, now: Now) {
        self.next_expiry_check = now.mono + OUTBOX_CHECK_EVERY;
        // A peer still listed online may only have lost our packets or
        // its acks: try its queued messages again, once a minute.
        let mut waiting: Vec<PeerKey> = self
            .pending
            .iter()
            .filter(|p| p.next.is_none() && self.peers.get(&p.peer).is_some_and(|peer| peer.online))
            .map(|p| p.peer.clone())
            .collect();
        waiting.sort();
        waiting.dedup();
        for k in waiting {
            self.flush_outbox(now, &k);
        }
        let expiry_ms = self.cfg.outbox_expiry.as_millis() as i64;
        let expired: Vec<Pending> = self
            .pending
            .iter()
            .filter(|p| p.queued_at_ms.is_some_and(|q| now.unix_ms - q >= expiry_ms))
            .cloned()
            .collect();
        self.pending.retain(|p| p.queued_at_ms.is_none_or(|q| now.unix_ms - q < expiry_ms));
        for p in expired {
            self.finish(p.id, p.peer, p.packet_no, Delivery::Failed);
        }
    }

    /// Sends again every queued message to a peer that reappeared.
    pub(super) fn flush_outbox(&mut self, now: Now, key: &PeerKey) {
        let Some(peer) = self.peers.get(key).cloned() else { return };
        // Write what waits (immutable borrow), then update the queue.
        let mut written: HashMap<u64, Vec<u8>> = HashMap::new();
        for p in self.pending.iter().filter(|p| &p.peer == key && p.next.is_none()) {
            if let Body::Unwritten { opts, text, files } = &p.body {
                if let Ok(Some((_, dg))) =
                    self.write_message(&peer, p.packet_no, *opts | Opts::SENDCHECKOPT, text, files)
                {
                    written.insert(p.id, dg);
                }
            }
        }
        let mut ask = false;
        let mut sends = Vec::new();
        let mut too_long = Vec::new();
        for p in self.pending.iter_mut().filter(|p| &p.peer == key && p.next.is_none()) {
            if let Body::Unwritten { .. } = &p.body {
                // Written now that the peer's charset and client are known
                // (and its key, for a peer that encrypts).
                let Some(dg) = written.remove(&p.id) else {
                    p.sends = 1;
                    p.next = Some(now.mono + self.cfg.retry_interval);
                    ask = true;
                    continue;
                };
                // In UTF-8 it may have grown past what the peer reads.
                if fits(&peer, &dg).is_err() {
                    too_long.push(p.id);
                    continue;
                }
                p.body = Body::Written(dg);
            }
            let Body::Written(dg) = &p.body else { continue };
            p.sends = 1;
            p.next = Some(now.mono + self.cfg.retry_interval);
            sends.push((p.id, p.packet_no, dg.clone()));
        }
        for id in too_long {
            if let Some(i) = self.pending.iter().position(|p| p.id == id) {
                let p = self.pending.swap_remove(i);
                self.finish(p.id, p.peer, p.packet_no, Delivery::Failed);
            }
        }
        for (id, no, dg) in sends {
            self.transmit(peer.addr, dg);
            self.event(Event::Receipt { id, peer: key.clone(), packet_no: no, status: Delivery::Sending });
        }
        if ask {
            self.ask_key(now, key, false);
        }
    }

    /// A peer's key arrived: what waited for it is written and sent.
    pub(super) fn key_arrived(&mut self, now: Now, key: &PeerKey) {
        let Some(peer) = self.peers.get(key).cloned() else { return };
        let mut written = Vec::new();
        for p in self.pending.iter().filter(|p| &p.peer == key && p.next.is_some()) {
            if let Body::Unwritten { opts, text, files } = &p.body {
                match self.write_message(&peer, p.packet_no, *opts | Opts::SENDCHECKOPT, text, files) {
                    Ok(Some((_, dg))) => written.push((p.id, Some(dg))),
                    Ok(None) => {}
                    Err(_) => written.push((p.id, None)),
                }
            }
        }
        for (id, dg) in written {
            let Some(i) = self.pending.iter().position(|p| p.id == id) else { continue };
            match dg.filter(|d| fits(&peer, d).is_ok()) {
                Some(dg) => {
                    let p = &mut self.pending[i];
                    p.body = Body::Written(dg.clone());
                    p.sends = 1;
                    p.next = Some(now.mono + self.cfg.retry_interval);
                    self.stats.sent += 1;
                    self.transmit(peer.addr, dg);
                }
                None => {
                    let p = self.pending.swap_remove(i);
                    let reason = format!("too long for {} once encrypted", peer.client.display_name());
                    self.event(Event::SendFailed { id, peer: p.peer.clone(), packet_no: p.packet_no, reason });
                    self.finish(p.id, p.peer, p.packet_no, Delivery::Failed);
                }
            }
        }
    }

    /// Pending `id` waited for its peer's key in vain: sent in plain text
    /// if the user allows it, else failed with the reason.
    pub(super) fn without_key(&mut self, now: Now, id: u64) {
        let Some(i) = self.pending.iter().position(|p| p.id == id) else { return };
        let p = self.pending[i].clone();
        let Some(peer) = self.peers.get(&p.peer).cloned() else { return };
        // FeiQ announces ENCRYPTOPT, and whether it answers GETPUBKEY with a
        // usable key is not known (protocol.md §13): it gets plain text
        // after the wait, as from every client before, unless the user
        // requires encryption.
        let feiq = peer.client == ClientKind::Feiq && !self.cfg.require_encryption;
        if let (true, Body::Unwritten { opts, text, files }) = (self.cfg.plaintext_fallback || feiq, &p.body) {
            if let Ok(dg) = self.write_plain(&peer, p.packet_no, *opts | Opts::SENDCHECKOPT, text, files) {
                let q = &mut self.pending[i];
                q.body = Body::Written(dg.clone());
                q.sends = 1;
                q.next = Some(now.mono + self.cfg.retry_interval);
                self.transmit(peer.addr, dg);
                return;
            }
        }
        self.pending.swap_remove(i);
        let reason = format!(
            "{} announces encryption but gave no public key: not sent in plain text \
             (plaintext_fallback = true in config.toml allows it)",
            peer.key
        );
        self.event(Event::SendFailed { id, peer: p.peer.clone(), packet_no: p.packet_no, reason });
        self.finish(id, p.peer, p.packet_no, Delivery::Failed);
    }

    /// An acknowledgement of `packet_no` from `from`: the send it matches is done.
    pub(super) fn acked(&mut self, from: SocketAddr, packet_no: u64, state: Delivery) {
        let peers = &self.peers;
        // A message never sent (waiting to be written) cannot be acknowledged.
        let peer_of = |p: &Pending| peers.get(&p.peer).filter(|_| p.body.written().is_some());
        // The exact address first (two instances may share an IP), then the IP
        // (iptux and FeiQ answer from 2425 whatever port we used); any
        // address of the peer's own (a second NIC).
        let exact =
            self.pending.iter().position(|p| p.packet_no == packet_no && peer_of(p).is_some_and(|q| q.at(from)));
        let by_ip = || {
            self.pending.iter().position(|p| p.packet_no == packet_no && peer_of(p).is_some_and(|q| q.at_ip(from.ip())))
        };
        let Some(i) = exact.or_else(by_ip) else {
            return; // a late duplicate ack
        };
        let p = self.pending.swap_remove(i);
        self.finish(p.id, p.peer, p.packet_no, state);
    }

    /// A READMSG from `from`: our message `packet_no` was read (and so delivered).
    pub(super) fn read_receipt(&mut self, from: SocketAddr, packet_no: u64) {
        // A READMSG also proves delivery if the RECVMSG was lost.
        self.acked(from, packet_no, Delivery::Delivered);
        if let Some(peer) = self.peers.by_ip(from.ip()).map(|p| p.key.clone()) {
            self.event(Event::Read { peer: peer.clone(), packet_no });
            self.out.push_back(Output::Store {
                op: StoreOp::OutState { peer, packet_no, state: Delivery::Read },
                then: Vec::new(),
            });
        }
    }

    /// A DecryptErr from `key`: its unacknowledged encrypted messages fail.
    pub(super) fn decrypt_err_from(&mut self, key: &PeerKey) {
        let encrypted = |p: &Pending| {
            p.body.written().is_some_and(|d| Packet::decode(d).is_ok_and(|q| q.opts().has(Opts::ENCRYPTOPT)))
        };
        let failed: Vec<Pending> = self.pending.iter().filter(|p| &p.peer == key && encrypted(p)).cloned().collect();
        self.pending.retain(|p| !(&p.peer == key && encrypted(p)));
        self.keyring.forget(key);
        self.key_stored.remove(key);
        for p in failed {
            let reason = format!("{key} could not decrypt it (DecryptErr: its key changed?); send it again");
            self.event(Event::SendFailed { id: p.id, peer: p.peer.clone(), packet_no: p.packet_no, reason });
            self.finish(p.id, p.peer, p.packet_no, Delivery::Failed);
        }
    }
}
