//! Where a session is in its life, with what each stage needs and nothing
//! else: a handshake's attempts exist only while it runs, the progress of
//! our Fin only once the handshake is done, and a closed session always has
//! its reason (it cannot be written down without one).
//!
//! [`State`] is the public view, named as RFC 9293 names TCP's states; the
//! close sub-states of an open session are derived from our side's close
//! progress ([`Ours`]) and whether the peer's Fin arrived.

use super::error::CloseReason;
use std::time::{Duration, Instant};

/// Session states, named as in RFC 9293. `Display` prints the RFC's
/// spelling (for logs): `SYN-SENT`, `FIN-WAIT-1` ...
///
/// ```
/// use swp::proto::State;
/// use swp::testkit::Pair;
/// use swp::simnet::LinkConfig;
/// use std::time::Duration;
/// let cfg = |l: &str, r: &str| Pair::default_config(l, r);
/// let mut pair = Pair::new(1, LinkConfig::new(), cfg("a", "b"), cfg("b", ""));
/// assert_eq!((pair.a.state(), pair.b.state()), (State::SynSent, State::Listen));
/// assert!(pair.connect(Duration::from_secs(5)));
/// assert_eq!(pair.a.state(), State::Established);
/// // A closes its direction; B may still send.
/// pair.a.close(pair.now());
/// assert!(pair.run_until(Duration::from_secs(5), |p| p.b.state() == State::CloseWait));
/// assert!(pair.run_until(Duration::from_secs(5), |p| p.a.state() == State::FinWait2));
/// assert_eq!(State::FinWait2.to_string(), "FIN-WAIT-2");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum State {
    /// Passive open: waiting for a Syn.
    Listen,
    /// Active open: Syn sent, waiting for a SynAck.
    SynSent,
    /// Syn received and answered, waiting for the handshake to complete.
    SynReceived,
    /// Data flows both ways.
    Established,
    /// We closed; our Fin is not acknowledged yet (or data is still draining).
    FinWait1,
    /// Our Fin is acknowledged; the peer may still send.
    FinWait2,
    /// The peer closed; we may still send.
    CloseWait,
    /// Both closed; our Fin is not acknowledged yet.
    LastAck,
    /// Finished (normally or not); see
    /// [`Connection::close_reason`](super::Connection::close_reason).
    Closed,
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::Listen => "LISTEN",
            State::SynSent => "SYN-SENT",
            State::SynReceived => "SYN-RECEIVED",
            State::Established => "ESTABLISHED",
            State::FinWait1 => "FIN-WAIT-1",
            State::FinWait2 => "FIN-WAIT-2",
            State::CloseWait => "CLOSE-WAIT",
            State::LastAck => "LAST-ACK",
            State::Closed => "CLOSED",
        })
    }
}

/// The session's life, each stage with its own data.
#[derive(Debug)]
pub(crate) enum Phase {
    /// Passive open: waiting for a Syn.
    Listen,
    /// Active open: our Syn is out.
    SynSent(Handshake),
    /// A Syn answered with our SynAck; waiting for the peer to prove it has
    /// it (any packet with both nonces, §4).
    SynReceived(Handshake),
    /// The handshake is done; `Ours` is our direction's close.
    Open(Ours),
    /// Ended.
    Closed(Ended),
}

/// A running handshake (§4).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Handshake {
    /// Syn (or SynAck) transmissions so far.
    pub(crate) attempts: u32,
    pub(crate) started: Instant,
    /// The current retry interval (doubles, capped at the connect timeout).
    pub(crate) interval: Duration,
    /// The application closed before the handshake finished: our Fin
    /// follows it.
    pub(crate) close_requested: bool,
}

/// Our direction of an open session (§7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ours {
    /// The application may write.
    Writing,
    /// The application closed; our Fin waits for everything written to be
    /// acknowledged.
    Closing,
    /// Our Fin is out, not yet acknowledged.
    FinSent(FinWait),
    /// Our Fin is acknowledged.
    FinAcked,
}

/// Our Fin, while it waits for its acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FinWait {
    /// Retries that count towards the limit (§5.5).
    pub(crate) tries: u32,
    /// Transmissions.
    pub(crate) sends: u32,
}

/// A closed session: always with its reason.
#[derive(Debug, Clone)]
pub(crate) struct Ended {
    pub(crate) reason: CloseReason,
    /// Nothing more to send or answer: the driver may drop the engine.
    pub(crate) drained: bool,
}

impl Phase {
    /// The public state; `peer_finished`: the peer's Fin arrived in order.
    pub(crate) fn state(&self, peer_finished: bool) -> State {
        match self {
            Phase::Listen => State::Listen,
            Phase::SynSent(_) => State::SynSent,
            Phase::SynReceived(_) => State::SynReceived,
            Phase::Closed(_) => State::Closed,
            Phase::Open(ours) => match (ours, peer_finished) {
                (Ours::Writing, false) => State::Established,
                (Ours::Writing, true) => State::CloseWait,
                (Ours::FinAcked, false) => State::FinWait2,
                (Ours::Closing | Ours::FinSent(_), false) => State::FinWait1,
                // Both finished but our Fin's ack: the session closes at the
                // ack, so FinAcked with the peer finished is not kept.
                (_, true) => State::LastAck,
            },
        }
    }

    pub(crate) fn handshake(&self) -> Option<&Handshake> {
        match self {
            Phase::SynSent(h) | Phase::SynReceived(h) => Some(h),
            _ => None,
        }
    }

    pub(crate) fn handshake_mut(&mut self) -> Option<&mut Handshake> {
        match self {
            Phase::SynSent(h) | Phase::SynReceived(h) => Some(h),
            _ => None,
        }
    }

    pub(crate) fn ours(&self) -> Option<Ours> {
        match self {
            Phase::Open(o) => Some(*o),
            _ => None,
        }
    }

    pub(crate) fn ended(&self) -> Option<&Ended> {
        match self {
            Phase::Closed(e) => Some(e),
            _ => None,
        }
    }
}
