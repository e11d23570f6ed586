//! The table of protocol timers. Several run at once (retransmission,
//! keepalive, delayed ack ...), so each kind has its own slot;
//! `Connection::poll_timeout` reports the earliest and
//! `Connection::handle_timeout` fires every expired one, each in its own arm.

use std::time::Instant;

/// Kinds of timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Retransmit Syn / SynAck.
    Handshake = 0,
    /// Retransmission timeout for data (RFC 6298).
    Retransmit,
    /// RACK reordering window: declare packets lost once it passes.
    LossDetect,
    /// Tail loss probe: elicit an ack for the last packets of a burst.
    TailProbe,
    /// Zero-window probe (persist timer).
    Persist,
    /// Send a delayed acknowledgement.
    AckDelay,
    /// Send a keepalive when nothing was sent for a while.
    KeepAlive,
    /// Nothing heard from the peer for too long: it is gone.
    Idle,
    /// Retransmit our Fin.
    Fin,
    /// After close: keep answering the peer's Fin for a while.
    Linger,
    /// After an abort: send the Reset again, in case the first was lost
    /// and the peer has nothing to send that would ask for it.
    ResetRepeat,
}

pub(crate) const TIMER_COUNT: usize = 11;
pub(crate) const ALL: [Timer; TIMER_COUNT] = [
    Timer::Handshake,
    Timer::Retransmit,
    Timer::LossDetect,
    Timer::TailProbe,
    Timer::Persist,
    Timer::AckDelay,
    Timer::KeepAlive,
    Timer::Idle,
    Timer::Fin,
    Timer::Linger,
    Timer::ResetRepeat,
];

#[derive(Debug, Clone, Default)]
pub(crate) struct TimerTable {
    slots: [Option<Instant>; TIMER_COUNT],
}

impl TimerTable {
    pub(crate) fn set(&mut self, t: Timer, at: Instant) {
        self.slots[t as usize] = Some(at);
    }
    /// Arms `t` at `at` unless it is already armed earlier.
    pub(crate) fn set_if_earlier(&mut self, t: Timer, at: Instant) {
        let s = &mut self.slots[t as usize];
        if s.is_none_or(|cur| at < cur) {
            *s = Some(at);
        }
    }
    pub(crate) fn stop(&mut self, t: Timer) {
        self.slots[t as usize] = None;
    }
    pub(crate) fn get(&self, t: Timer) -> Option<Instant> {
        self.slots[t as usize]
    }
    pub(crate) fn is_armed(&self, t: Timer) -> bool {
        self.slots[t as usize].is_some()
    }
    pub(crate) fn next(&self) -> Option<Instant> {
        self.slots.iter().flatten().min().copied()
    }
    /// Disarms and returns `t` if it expired at or before `now`.
    pub(crate) fn expired(&mut self, t: Timer, now: Instant) -> bool {
        match self.slots[t as usize] {
            Some(at) if at <= now => {
                self.slots[t as usize] = None;
                true
            }
            _ => false,
        }
    }
    pub(crate) fn stop_all(&mut self) {
        self.slots = Default::default();
    }
}
