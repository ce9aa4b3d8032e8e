//! Presence (§3): our entries (start-up, F5, changes, exit) and the
//! answers to others' (batched behind one random delay, each address
//! answered at most once a second), unicast probes of configured ranges,
//! the peers' entries and exits into the peer table, and aging: peers
//! silent for [`SILENCE`] are asked whether they are there and dropped if
//! they do not answer.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use pigeon_protocol::charset::Charset;
use pigeon_protocol::{ClientKind, Command, Entry, IptuxExtra, Mode, Opts, Packet, Utf8Trailer};

use super::timers::Timer;
use super::{peers, Change, Engine, Event, Identity, Now, Output, Peer, PeerInfo, PeerKey, StoreOp};

/// A peer that sent nothing for this long is asked whether it is still
/// there (IPMsg clients send nothing while idle; one killed without
/// BR_EXIT would stay listed for ever).
pub const SILENCE: Duration = Duration::from_secs(10 * 60);

/// How often the node looks for such peers.
const AGING_EVERY: Duration = Duration::from_secs(60);

/// A peer asked is asked again after this long…
const PROBE_WAIT: Duration = Duration::from_secs(3);

/// …and is taken for gone after this many unanswered asks.
const PROBE_TRIES: u8 = 3;

/// How long a refresh takes to drop who does not answer.
pub const REFRESH_TAKES: Duration = Duration::from_millis(PROBE_WAIT.as_millis() as u64 * PROBE_TRIES as u64 + 500);

/// At most this many addresses wait to be probed.
const PROBE_LIMIT: usize = 65_536;

/// Probes sent per 10 ms tick.
const PROBE_BATCH: usize = 10;

/// An address is answered (ANSENTRY) at most this often: a flood of
/// BR_ENTRY from one address makes no more of them (one-shot commands run
/// back to back from one address still each get theirs).
const ANSWER_EVERY: Duration = Duration::from_secs(1);

/// At most this many answers go out per answer timer (protocol.md §3.2
/// spreads them over up to 4 s), and so per second or so: we are no
/// reflection amplifier for spoofed entries.
pub(super) const ANSWER_BATCH: usize = 256;

/// Addresses remembered for [`ANSWER_EVERY`].
pub(super) const ANSWERED_LIMIT: usize = 16_384;

impl Engine {
    /// Start-up: NOOPERATION now, BR_ENTRY after 250 ms and again after 5 s.
    pub(super) fn start(&mut self, now: Now) {
        let noop = self.entry_packet(now, Mode::NOOPERATION, 0);
        self.broadcast_all(noop);
        self.timers.set(Timer::FirstEntry, now.mono + Duration::from_millis(250));
        self.timers.set(Timer::SecondEntry, now.mono + Duration::from_millis(5250));
    }

    /// IP Messenger's F5: our entry to everyone, and every peer online is
    /// asked until it answers or is taken for gone.
    pub(super) fn refresh(&mut self, now: Now) {
        let entry = self.entry_packet(now, Mode::BR_ENTRY, 0);
        self.announce(entry);
        let online: Vec<PeerKey> = self.peers.all().iter().filter(|p| p.online).map(|p| p.key.clone()).collect();
        for k in online {
            // The broadcast was the first ask; unicast ones follow.
            self.probing.entry(k).or_insert((now.mono + PROBE_WAIT, 1));
        }
    }

    /// Addresses outside the broadcast domain to announce ourselves to,
    /// [`PROBE_BATCH`] every 10 ms (at most [`PROBE_LIMIT`] waiting).
    pub(super) fn queue_probes(&mut self, now: Now, addrs: Vec<SocketAddr>) {
        for a in addrs.into_iter().take(PROBE_LIMIT - self.probe.len().min(PROBE_LIMIT)) {
            self.probe.push_back(a);
        }
        if self.timers.get(Timer::Probe).is_none() && !self.probe.is_empty() {
            self.timers.set(Timer::Probe, now.mono);
        }
    }

    /// Leaving: BR_EXIT now and again after 100 ms; nothing announces us after it.
    pub(super) fn quit(&mut self, now: Now) {
        let exit = self.entry_packet(now, Mode::BR_EXIT, 0);
        self.announce(exit);
        self.timers.set(Timer::Exit, now.mono + Duration::from_millis(100));
        // Nothing may announce us again after the exit: no second
        // entry, no delayed answer, no probe.
        self.quitting = true;
        self.timers.stop(Timer::FirstEntry);
        self.timers.stop(Timer::SecondEntry);
        self.timers.stop(Timer::Answer);
        self.answer_to.clear();
        self.answering.clear();
        self.probe.clear();
        self.timers.stop(Timer::Probe);
    }

    /// The entry timer: our BR_ENTRY to every target (and our iptux-style
    /// entry to iptux peers).
    pub(super) fn send_entry(&mut self, now: Now) {
        let entry = self.entry_packet(now, Mode::BR_ENTRY, 0);
        self.broadcast_all(entry);
        self.tell_iptux_peers(now, Mode::ANSENTRY);
    }

    /// The answer timer: every ANSENTRY scheduled goes out.
    pub(super) fn send_answers(&mut self, now: Now) {
        self.answering.clear();
        for dst in std::mem::take(&mut self.answer_to) {
            let peer = self.peers.by_addr(dst).cloned();
            let p = self.answer_packet(now, peer.as_ref());
            self.transmit(dst, p);
            self.note_answered(dst, now);
        }
    }

    /// The probe timer: the next batch of addresses gets our entry.
    pub(super) fn send_probes(&mut self, now: Now) {
        let batch: Vec<SocketAddr> = (0..PROBE_BATCH).map_while(|_| self.probe.pop_front()).collect();
        if !batch.is_empty() {
            let entry = self.entry_packet(now, Mode::BR_ENTRY, Opts::DIALUPOPT);
            for a in batch {
                self.transmit(a, entry.clone());
            }
        }
        self.timers.put(Timer::Probe, (!self.probe.is_empty()).then_some(now.mono + Duration::from_millis(10)));
    }

    /// The exit timer: the second BR_EXIT, and the packet counter as it is.
    pub(super) fn send_exit(&mut self, now: Now) {
        let exit = self.entry_packet(now, Mode::BR_EXIT, 0);
        self.broadcast_all(exit);
        // A clean exit records the last number used, not the reservation,
        // so frequent short runs (cron) do not push numbers ahead.
        self.out.push_back(Output::Store { op: StoreOp::CounterExact(self.last_packet_no), then: Vec::new() });
    }

    /// Presence was heard: silent peers are looked for from now on (not by
    /// a one-shot node).
    pub(super) fn start_aging(&mut self, now: Now) {
        if self.timers.get(Timer::Aging).is_none() && !self.cfg.oneshot {
            self.timers.set(Timer::Aging, now.mono + AGING_EVERY);
        }
    }

    /// Our entry payload: legacy nick and group, then the UTF-8 trailer.
    pub(super) fn entry_packet(&mut self, now: Now, mode: Mode, extra: impl Into<Opts>) -> Vec<u8> {
        let nick = self.display_nick();
        let entry = Entry {
            nick: nick.clone(),
            group: self.cfg.group.clone(),
            trailer: Some(Utf8Trailer {
                user: Some(self.cfg.user.clone()),
                host: Some(self.cfg.host.clone()),
                nick: Some(nick),
                group: Some(self.cfg.group.clone()),
                version: None,
                instance: self.instance(),
            }),
            iptux: None,
        };
        let no = self.packet_no(now);
        let command = Command::new(mode, self.status() | extra.into());
        let mut out = Vec::with_capacity(128);
        let header = self.header(no, command);
        entry.encode(&header, self.cfg.legacy, &mut out).expect("own header fields and texts are sanitized");
        out
    }

    /// Our instance marker for the trailer, if we have one.
    fn instance(&self) -> Option<String> {
        (!self.cfg.instance.is_empty()).then(|| self.cfg.instance.clone())
    }

    /// Our entry as iptux peers read it (`nick\0group\0icon\0utf-8\0`,
    /// all UTF-8, no UTF8OPT): an iptux-compatible peer that reads UTF-8.
    /// iptux then writes to us in UTF-8 and reads our UTF-8 as it is,
    /// whatever its preferred charset; from the IPMsg-style entry it would
    /// guess our charset from our bytes (GB18030, or UTF-16: protocol.md
    /// §5.2) and garble both ways.
    pub(super) fn iptux_entry(&mut self, now: Now, mode: Mode) -> Vec<u8> {
        let entry = Entry {
            nick: self.display_nick(),
            group: self.cfg.group.clone(),
            trailer: None,
            iptux: Some(IptuxExtra { icon: String::new(), charset: "utf-8".into() }),
        };
        let no = self.packet_no(now);
        let command = Command::new(mode, self.status());
        let header = self.header(no, command);
        let mut out = Vec::with_capacity(96);
        entry.encode(&header, Charset::Utf8, &mut out).expect("own header fields and texts are sanitized");
        out
    }

    /// After a presence packet that iptux peers read as our IPMsg-style
    /// entry (which makes iptux guess our charset again), our iptux-style
    /// entry to each of them, by unicast: ANSENTRY after BR_ENTRY,
    /// BR_ABSENCE after BR_ABSENCE. iptux handles datagrams in order.
    fn tell_iptux_peers(&mut self, now: Now, mode: Mode) {
        let addrs: Vec<SocketAddr> =
            self.peers.all().iter().filter(|p| p.online && p.client == ClientKind::Iptux).map(|p| p.addr).collect();
        if addrs.is_empty() {
            return;
        }
        let pkt = self.iptux_entry(now, mode);
        for a in addrs {
            self.transmit(a, pkt.clone());
        }
    }

    fn display_nick(&self) -> String {
        match &self.cfg.away {
            Some(_) => format!("{}[away]", self.cfg.nick),
            None => self.cfg.nick.clone(),
        }
    }

    pub(super) fn announce_change(&mut self, now: Now) {
        let p = self.entry_packet(now, Mode::BR_ABSENCE, 0);
        self.announce(p);
        self.tell_iptux_peers(now, Mode::BR_ABSENCE);
    }

    /// Sends a presence packet to every target, and by unicast to every
    /// online peer that is not itself a target.
    pub(super) fn announce(&mut self, payload: Vec<u8>) {
        let targets: HashSet<SocketAddr> = self.cfg.targets.iter().copied().collect();
        let unicast: Vec<SocketAddr> =
            self.peers.all().iter().filter(|p| p.online && !targets.contains(&p.addr)).map(|p| p.addr).collect();
        self.broadcast_all(payload.clone());
        for a in unicast {
            self.transmit(a, payload.clone());
        }
    }

    fn answer_packet(&mut self, now: Now, to: Option<&Peer>) -> Vec<u8> {
        if to.is_some_and(|p| p.client == ClientKind::Iptux) {
            return self.iptux_entry(now, Mode::ANSENTRY);
        }
        if !to.is_some_and(Peer::reads_utf8_flag) {
            return self.entry_packet(now, Mode::ANSENTRY, 0);
        }
        // To UTF-8 readers: everything UTF-8 (as IPMsg answers), the
        // trailer only for our instance marker.
        let trailer = self.instance().map(|i| Utf8Trailer { instance: Some(i), ..Default::default() });
        let entry = Entry { nick: self.display_nick(), group: self.cfg.group.clone(), trailer, iptux: None };
        let no = self.packet_no(now);
        let command = Command::new(Mode::ANSENTRY, self.status() | Opts::UTF8OPT);
        let header = self.header(no, command);
        let mut out = Vec::with_capacity(96);
        entry.encode(&header, Charset::Utf8, &mut out).expect("own header fields and texts are sanitized");
        out
    }

    /// An entry-type packet from `from`, naming itself `name` (untagged).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn presence(
        &mut self,
        now: Now,
        from: SocketAddr,
        p: &Packet<'_>,
        name: PeerKey,
        marker: Option<String>,
        entry: Entry,
        cs: Charset,
        client: ClientKind,
    ) {
        let mode = p.mode();
        if mode == Mode::NOOPERATION {
            return;
        }
        if mode == Mode::BR_EXIT {
            // Only the peer itself can say it left (§3.5: by address).
            let Some(key) = self.peers.by_source(&name, from).filter(|p| p.at(from) || p.addr.ip() == from.ip()) else {
                self.stats.ignored += 1;
                return;
            };
            let key = key.key.clone();
            if let Some(gone) = self.peers.exit(&key) {
                self.event(Event::PeerOffline(PeerInfo::from(&gone)));
            }
            return;
        }
        let (key, second_address) = match self.peers.identify(&name, marker.as_deref(), from, now.mono) {
            Identity::Known(k) | Identity::New(k) => (k, false),
            Identity::Also(k) => (k, true),
        };
        // A second address of one machine: the first stays where we send.
        let addr = match self.peers.get(&key) {
            Some(old) if second_address => old.addr,
            _ => from,
        };
        let announced = entry.iptux.as_ref().and_then(|x| pigeon_protocol::Charset::from_label(&x.charset));
        // A broadcast entry of a guessed client says what its entries are
        // in; its other packets what its text to us is in.
        let guessed = matches!(client, ClientKind::Iptux | ClientKind::Unknown);
        let old = self.peers.get(&key);
        let (charset, entry_charset) = if guessed && mode == Mode::BR_ENTRY {
            // We tell iptux we read UTF-8 (iptux_entry): its text to us is.
            (old.map_or(Charset::Utf8, |o| o.charset), Some(cs))
        } else {
            (cs, old.and_then(|o| o.entry_charset))
        };
        let away = p.opts().has(Opts::ABSENCEOPT) && client != ClientKind::Iptux;
        let peer = Peer {
            key: key.clone(),
            nick: strip_away_marker(entry.display_nick()).to_string(),
            group: entry.display_group().to_string(),
            addr,
            client,
            version: String::from_utf8_lossy(p.version).into_owned(),
            status: p.opts(),
            away,
            charset,
            announced,
            entry_charset,
            online: true,
            seen: now.mono,
            marker,
            also: Vec::new(),
            moved: false,
            key_mark: peers::KeyMark::None,
        };
        let change = self.peers.upsert(peer);
        if second_address {
            self.peers.also_at(&key, from, now.mono);
        }
        let info = PeerInfo::from(self.peers.get(&key).expect("just upserted"));
        match change {
            Change::Online => self.event(Event::PeerOnline(info.clone())),
            Change::Changed => self.event(Event::PeerChanged(info.clone())),
            Change::Same => {}
        }
        if change != Change::Same {
            let marker = self.peers.get(&key).and_then(|p| p.marker.clone());
            self.out.push_back(Output::Store { op: StoreOp::Peer { info: info.clone(), marker }, then: Vec::new() });
        }
        if mode == Mode::BR_ENTRY && !self.cfg.oneshot {
            self.schedule_answer(now, from);
        } else if change == Change::Online && client == ClientKind::Iptux && !self.quitting {
            // It learnt of us from our IPMsg-style entry: tell it what we read.
            let e = self.iptux_entry(now, Mode::ANSENTRY);
            self.transmit(from, e);
        }
        if mode == Mode::BR_ENTRY || mode == Mode::ANSENTRY || change == Change::Online {
            self.flush_outbox(now, &key);
        }
    }

    /// A known peer sent something: it is there.
    pub(super) fn note_heard(&mut self, name: &PeerKey, from: SocketAddr, now: Now) {
        let Some(key) = self.peers.by_source(name, from).map(|p| p.key.clone()) else { return };
        self.probing.remove(&key);
        self.heard.insert(key, now.mono);
    }

    /// A node that quit, or a one-shot one, does not age: it asks nobody
    /// whether they are there.
    pub(super) fn stop_aging(&mut self) {
        self.timers.stop(Timer::Aging);
        self.probing.clear();
    }

    /// The aging timer: peers silent for [`SILENCE`] are to be asked
    /// whether they are there (a unicast BR_ENTRY, which every client
    /// answers), at once.
    pub(super) fn look_for_silent(&mut self, now: Now) {
        // No timer while nobody is online (presence starts it again).
        let anyone = self.peers.all().iter().any(|p| p.online);
        self.timers.put(Timer::Aging, anyone.then_some(now.mono + AGING_EVERY));
        let silent: Vec<PeerKey> = self
            .peers
            .all()
            .iter()
            .filter(|p| p.online && !self.probing.contains_key(&p.key))
            .filter(|p| now.mono.saturating_sub(self.heard.get(&p.key).copied().unwrap_or(p.seen)) >= SILENCE)
            .map(|p| p.key.clone())
            .collect();
        for k in silent {
            self.probing.insert(k, (now.mono, 0));
        }
        // Forget what we heard from peers that left.
        let peers = &self.peers;
        self.heard.retain(|k, _| peers.get(k).is_some_and(|p| p.online));
    }

    /// When the next silent peer is asked again, or given up.
    pub(super) fn next_ask(&self) -> Option<Duration> {
        self.probing.values().map(|(t, _)| *t).min()
    }

    /// The timer of silent peers: those due are asked again, and those
    /// that did not answer [`PROBE_TRIES`] asks are taken for gone.
    pub(super) fn ask_silent(&mut self, now: Now) {
        let due: Vec<PeerKey> =
            self.probing.iter().filter(|(_, (t, _))| *t <= now.mono).map(|(k, _)| k.clone()).collect();
        for k in due {
            let Some(&(_, tries)) = self.probing.get(&k) else { continue };
            let Some(p) = self.peers.get(&k).filter(|p| p.online).cloned() else {
                self.probing.remove(&k);
                continue;
            };
            if tries >= PROBE_TRIES {
                self.probing.remove(&k);
                if let Some(gone) = self.peers.exit(&k) {
                    self.event(Event::PeerOffline(PeerInfo::from(&gone)));
                }
                continue;
            }
            let entry = self.entry_packet(now, Mode::BR_ENTRY, 0);
            self.transmit(p.addr, entry);
            if p.client == ClientKind::Iptux {
                // Our iptux-layout entry after it, as after every BR_ENTRY.
                let again = self.iptux_entry(now, Mode::ANSENTRY);
                self.transmit(p.addr, again);
            }
            self.probing.insert(k, (now.mono + PROBE_WAIT, tries + 1));
        }
    }

    /// False if `to` was answered (or asked who it is) less than
    /// [`ANSWER_EVERY`] ago.
    pub(super) fn may_answer(&self, to: SocketAddr, now: Now) -> bool {
        self.answered.get(&to).is_none_or(|&t| now.mono.saturating_sub(t) >= ANSWER_EVERY)
    }

    /// Remembers that `to` was answered now; the memory stays bounded (a
    /// flood of spoofed sources forgets the oldest, or all of them).
    pub(super) fn note_answered(&mut self, to: SocketAddr, now: Now) {
        if self.answered.len() >= ANSWERED_LIMIT {
            self.answered.retain(|_, t| now.mono.saturating_sub(*t) < ANSWER_EVERY);
            if self.answered.len() >= ANSWERED_LIMIT {
                self.answered.clear();
            }
        }
        self.answered.insert(to, now.mono);
    }

    /// Queues an ANSENTRY after a random delay scaled by the LAN's size;
    /// one timer serves every answer due (protocol.md §3.2).
    fn schedule_answer(&mut self, now: Now, to: SocketAddr) {
        if self.quitting {
            return;
        }
        if !self.may_answer(to, now) {
            self.stats.ignored += 1;
            return;
        }
        if self.answer_to.len() >= ANSWER_BATCH {
            self.stats.ignored += 1;
            return;
        }
        if self.answering.insert(to) {
            self.answer_to.push(to);
        }
        if self.timers.get(Timer::Answer).is_none() {
            let mask = match self.peers.online_count() {
                0..50 => 1023,
                50..300 => 2047,
                _ => 4095,
            };
            let delay = 5 + (self.rng.u64(..) & mask);
            self.timers.set(Timer::Answer, now.mono + Duration::from_millis(delay));
        }
    }
}

/// IPMsg adds `[absence]`-style markers to nicks of away users; the away
/// state is shown separately, so the marker is dropped.
fn strip_away_marker(nick: &str) -> &str {
    for m in ["[absence]", "[away]", "[不在]", "[离开]"] {
        if let Some(s) = nick.strip_suffix(m) {
            return s.trim_end();
        }
    }
    nick
}
