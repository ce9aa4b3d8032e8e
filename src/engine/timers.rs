//! The engine's timers: one table with a slot per [`Timer`], the time each
//! is due on the engine's monotonic clock (shaped like quinn-proto's
//! `TimerTable`). [`super::Engine::poll_timeout`] is the earliest slot;
//! [`super::Engine::handle_timeout`] handles the expired ones in the order
//! of [`Timer::VALUES`].
//!
//! Some timers are set and stopped where their work is scheduled (entries,
//! answers, probes, exit, aging); the others stand for the earliest of a
//! queue (message retries, read receipt retries, asks of silent peers, the
//! outbox check while anything waits) and are set again from their queue
//! after everything that may change it ([`super::Engine`]'s `rearm`).

use std::time::Duration;

/// What a timer is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Timer {
    /// The next look for peers silent for [`super::SILENCE`] (every minute
    /// while anyone is online).
    Aging,
    /// The next ask of a silent peer whether it is there, or giving up on
    /// it (the earliest of `probing`).
    AskSilent,
    /// Start-up's first BR_ENTRY (after 250 ms)…
    FirstEntry,
    /// …and its second (after 5.25 s).
    SecondEntry,
    /// The ANSENTRY answers gathered behind one random delay.
    Answer,
    /// The next batch of unicast probes (every 10 ms while any wait).
    Probe,
    /// The second BR_EXIT (100 ms after the first).
    Exit,
    /// The next retransmission of a message, or key request for one (the
    /// earliest of `pending`).
    Retry,
    /// The next retransmission of a checked read receipt (the earliest of `reads`).
    ReadRetry,
    /// The once-a-minute outbox check, while any message waits.
    Outbox,
}

impl Timer {
    /// Every timer, in the order expired ones are handled.
    pub(super) const VALUES: [Timer; 10] = [
        Timer::Aging,
        Timer::AskSilent,
        Timer::FirstEntry,
        Timer::SecondEntry,
        Timer::Answer,
        Timer::Probe,
        Timer::Exit,
        Timer::Retry,
        Timer::ReadRetry,
        Timer::Outbox,
    ];
}

/// When each [`Timer`] is due (`None`: not armed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Timers([Option<Duration>; Timer::VALUES.len()]);

impl Timers {
    /// Arms `timer` for `at` (replacing when it was due).
    pub(super) fn set(&mut self, timer: Timer, at: Duration) {
        self.0[timer as usize] = Some(at);
    }

    /// Arms `timer` for `at`, or stops it if `None`.
    pub(super) fn put(&mut self, timer: Timer, at: Option<Duration>) {
        self.0[timer as usize] = at;
    }

    /// When `timer` is due, if it is armed.
    pub(super) fn get(&self, timer: Timer) -> Option<Duration> {
        self.0[timer as usize]
    }

    /// Disarms `timer`.
    pub(super) fn stop(&mut self, timer: Timer) {
        self.0[timer as usize] = None;
    }

    /// The earliest time any timer is due.
    pub(super) fn next_expiring(&self) -> Option<Duration> {
        self.0.iter().flatten().min().copied()
    }

    /// True if `timer` is armed and due at `now`.
    pub(super) fn is_expired(&self, timer: Timer, now: Duration) -> bool {
        self.get(timer).is_some_and(|t| t <= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_gives_the_earliest_and_what_expired() {
        let mut t = Timers::default();
        assert_eq!(t.next_expiring(), None);
        t.set(Timer::Exit, Duration::from_millis(100));
        t.set(Timer::Retry, Duration::from_millis(40));
        t.put(Timer::Aging, Some(Duration::from_millis(70)));
        assert_eq!(t.next_expiring(), Some(Duration::from_millis(40)));
        assert!(t.is_expired(Timer::Retry, Duration::from_millis(40)));
        assert!(!t.is_expired(Timer::Exit, Duration::from_millis(99)));
        assert!(!t.is_expired(Timer::Answer, Duration::MAX));
        t.stop(Timer::Retry);
        t.put(Timer::Aging, None);
        assert_eq!(t.get(Timer::Retry), None);
        assert_eq!(t.next_expiring(), Some(Duration::from_millis(100)));
    }
}
