//! Why a session ended, and errors of application commands.

use std::time::Duration;

/// Why a session is closed. `Normal` is the only clean ending.
///
/// Every other ending is told to the peer at once when it can be (a Reset
/// carrying a [`ResetCode`] and a message, docs/PROTOCOL.md §7.3), so both
/// sides learn the same story.
///
/// ```
/// use std::time::Duration;
/// use swp::{proto::Config, testkit::Pair, simnet::LinkConfig};
/// let mut p = Pair::new(1, LinkConfig::new(), Config::new("A", "B"), Config::new("B", ""));
/// assert!(p.connect(Duration::from_secs(1)));
/// use swp::proto::{CloseReason, ResetCode};
/// let now = p.now();
/// p.a.abort_with(now, "disk full"); // a Reset with the reason goes to the peer
/// assert!(p.run_until(Duration::from_secs(1), |p| p.b.is_closed()));
/// // the aborting side keeps its own reason too
/// assert_eq!(p.a.close_reason().unwrap().to_string(), "session aborted locally: disk full");
/// let CloseReason::Reset { code, message } = p.b.close_reason().unwrap() else { panic!() };
/// assert_eq!((*code, message.as_str()), (ResetCode::Application, "disk full"));
/// assert_eq!(p.b.close_reason().unwrap().to_string(), "the peer reset the session: disk full");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseReason {
    /// Both sides sent a Fin and had it acknowledged.
    #[error("session closed normally")]
    Normal,
    /// This side aborted the session (`abort`, `abort_with`); `reason` is
    /// the one it gave the peer ("" for a plain `abort()`), so every call
    /// on this side that fails because of the abort says why too.
    #[error("{}", aborted_text(.reason))]
    Aborted {
        /// What `abort_with` was given (at most [`MAX_RESET_MESSAGE`] bytes).
        reason: String,
    },
    /// The peer ended the session with a Reset; `message` says why, in the
    /// peer's words ("" when it gave none, e.g. a plain `abort()`).
    #[error("{}", reset_text(.message))]
    Reset {
        /// Why, as a number a program can act on.
        code: ResetCode,
        /// Why, for a person (at most [`MAX_RESET_MESSAGE`] bytes).
        message: String,
    },
    /// A sealed handshake did not complete: the answers did not verify, or
    /// only an unauthenticated refusal came (its text is in `message`), or
    /// a service's session refused its one Syn.
    #[error("sealed handshake failed: {message}")]
    SealFailed {
        /// What was seen, and what to check.
        message: String,
    },
    /// The handshake got no answer.
    #[error(
        "no answer from the peer after {attempts} handshake attempts over {elapsed:?}: is anything listening on the destination inbox?"
    )]
    ConnectTimeout {
        /// Syn (or SynAck) packets sent.
        attempts: u32,
        /// Time spent trying.
        elapsed: Duration,
    },
    /// Nothing heard from the peer for the dead-peer budget plus its last
    /// round of probes (docs/PROTOCOL.md §8).
    #[error("peer unreachable: nothing heard for {silent_for:?} (dead-peer budget {budget:?})")]
    PeerUnreachable {
        /// Time since the last packet from the peer.
        silent_for: Duration,
        /// Keepalive interval × failures allowed.
        budget: Duration,
    },
    /// The peer is heard from but does not acknowledge data retransmitted
    /// again and again.
    #[error(
        "peer not acknowledging: data retransmitted {retries} times without progress while the peer was heard from"
    )]
    RetransmitLimit {
        /// Consecutive retransmission timeouts.
        retries: u32,
    },
    /// The peer is heard from, but nothing it sent for the dead-peer
    /// timeout shows that it hears us: our packets do not reach it (an
    /// outage of one direction, or a subscription that receives nothing).
    #[error(
        "the peer does not hear us: heard from it, but nothing we sent was answered for {waited:?} (dead-peer budget {budget:?})"
    )]
    NotHeardBack {
        /// How long we waited for an answer.
        waited: Duration,
        /// Keepalive interval × failures allowed.
        budget: Duration,
    },
    /// Too many retransmission timeouts within the termination window
    /// (the Go library's TermConfig).
    #[error("terminated: {timeouts} retransmission timeouts within {window:?}")]
    Terminated {
        /// Timeouts counted.
        timeouts: usize,
        /// The window they fell in.
        window: Duration,
    },
    /// The peer is heard from but never acknowledged our Fin.
    #[error("peer did not acknowledge our Fin after {retries} tries")]
    FinTimeout {
        /// Fin transmissions.
        retries: u32,
    },
    /// The peer sent something no correct peer sends (e.g. data beyond the
    /// end of stream it announced, or acknowledgements that went back):
    /// forged or broken packets. The session cannot be trusted any more.
    #[error("protocol violation by the peer: {0}")]
    ProtocolViolation(String),
}

fn aborted_text(reason: &str) -> String {
    if reason.is_empty() {
        "session aborted locally".to_string()
    } else {
        format!("session aborted locally: {reason}")
    }
}

fn reset_text(message: &str) -> String {
    if message.is_empty() {
        "session reset by the peer".to_string()
    } else {
        format!("the peer reset the session: {message}")
    }
}

/// The largest reason a Reset carries, in bytes (longer ones are cut at a
/// character boundary).
pub const MAX_RESET_MESSAGE: usize = 512;

/// Why a peer reset the session: the number a Reset carries in its `seq`
/// field (docs/PROTOCOL.md §7.3). Unknown numbers are kept as `Other`.
///
/// ```
/// use swp::proto::ResetCode;
/// assert_eq!(ResetCode::from_wire(2), ResetCode::Unreachable);
/// assert_eq!(ResetCode::Unreachable.to_wire(), 2);
/// assert_eq!(ResetCode::from_wire(99), ResetCode::Other(99));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ResetCode {
    /// The peer's application aborted without a reason (0; also what a
    /// peer that predates reasons sends).
    Abort,
    /// The peer's application ended the session with a reason (1).
    Application,
    /// The peer heard nothing from us for its dead-peer budget (2).
    Unreachable,
    /// The peer gave up retransmitting data or its Fin that we never
    /// acknowledged (3).
    NotAcknowledged,
    /// The peer saw packets no correct peer sends (4).
    ProtocolViolation,
    /// The peer's transport (its NATS client) failed (5).
    Transport,
    /// A service refused the handshake: it holds as many sessions as it
    /// may (6). Retry later, or against another member of its queue group.
    /// Also what a point-to-point listener tells a client that answered
    /// its SYN cookie after another client took it (docs/PROTOCOL.md §4).
    Busy,
    /// The listener refused the handshake over sealing (7): a plain client
    /// at a sealed-only listener, a sealed one at a plain listener, or a
    /// sealed handshake that did not verify (wrong key or secret).
    Sealing,
    /// The client took another listener's answer to its Syn (8): more than
    /// one listener answered it (two listening on one subject, or a Syn
    /// that reached two queue members). The listener that sees it was not
    /// chosen; a listener that keeps listening waits for the next client.
    AnsweredElsewhere,
    /// A code this version does not know.
    Other(u64),
}

impl ResetCode {
    /// The code's number on the wire.
    ///
    /// ```
    /// assert_eq!(swp::proto::ResetCode::Application.to_wire(), 1);
    /// ```
    pub fn to_wire(self) -> u64 {
        match self {
            ResetCode::Abort => 0,
            ResetCode::Application => 1,
            ResetCode::Unreachable => 2,
            ResetCode::NotAcknowledged => 3,
            ResetCode::ProtocolViolation => 4,
            ResetCode::Transport => 5,
            ResetCode::Busy => 6,
            ResetCode::Sealing => 7,
            ResetCode::AnsweredElsewhere => 8,
            ResetCode::Other(n) => n,
        }
    }

    /// The code for a number from the wire.
    ///
    /// ```
    /// assert_eq!(swp::proto::ResetCode::from_wire(5), swp::proto::ResetCode::Transport);
    /// ```
    pub fn from_wire(n: u64) -> Self {
        match n {
            0 => ResetCode::Abort,
            1 => ResetCode::Application,
            2 => ResetCode::Unreachable,
            3 => ResetCode::NotAcknowledged,
            4 => ResetCode::ProtocolViolation,
            5 => ResetCode::Transport,
            6 => ResetCode::Busy,
            7 => ResetCode::Sealing,
            8 => ResetCode::AnsweredElsewhere,
            n => ResetCode::Other(n),
        }
    }
}

impl CloseReason {
    /// True for [`CloseReason::Normal`].
    ///
    /// ```
    /// use swp::proto::CloseReason;
    /// assert!(CloseReason::Normal.is_normal());
    /// assert!(!CloseReason::Aborted { reason: String::new() }.is_normal());
    /// ```
    pub fn is_normal(&self) -> bool {
        matches!(self, CloseReason::Normal)
    }

    /// What a Reset sent because of this ending tells the peer: a code and
    /// a message written for the peer's side ("us" is the peer). `None` for
    /// endings that send no Reset (a normal close, a Reset received, a
    /// failed handshake).
    ///
    /// ```
    /// use swp::proto::{CloseReason, ResetCode};
    /// use std::time::Duration;
    /// let r = CloseReason::PeerUnreachable {
    ///     silent_for: Duration::from_secs(11),
    ///     budget: Duration::from_secs(10),
    /// };
    /// let (code, msg) = r.reset_reason().unwrap();
    /// assert_eq!(code, ResetCode::Unreachable);
    /// assert_eq!(msg, "heard nothing from us for 11s (its dead-peer budget 10s)");
    /// assert_eq!(CloseReason::Normal.reset_reason(), None);
    /// ```
    pub fn reset_reason(&self) -> Option<(ResetCode, String)> {
        Some(match self {
            CloseReason::Normal
            | CloseReason::Reset { .. }
            | CloseReason::ConnectTimeout { .. }
            | CloseReason::SealFailed { .. } => return None,
            CloseReason::Aborted { reason } if reason.is_empty() => {
                (ResetCode::Abort, String::new())
            }
            CloseReason::Aborted { reason } => (ResetCode::Application, reason.clone()),
            CloseReason::PeerUnreachable { silent_for, budget } => (
                ResetCode::Unreachable,
                format!(
                    "heard nothing from us for {silent_for:?} (its dead-peer budget {budget:?})"
                ),
            ),
            CloseReason::RetransmitLimit { retries } => (
                ResetCode::NotAcknowledged,
                format!("we did not acknowledge data it retransmitted {retries} times"),
            ),
            CloseReason::NotHeardBack { waited, .. } => (
                ResetCode::Unreachable,
                format!("nothing it sent reached us for {waited:?}"),
            ),
            CloseReason::Terminated { timeouts, window } => (
                ResetCode::NotAcknowledged,
                format!("{timeouts} retransmission timeouts within {window:?}"),
            ),
            CloseReason::FinTimeout { retries } => (
                ResetCode::NotAcknowledged,
                format!("we did not acknowledge its Fin after {retries} tries"),
            ),
            CloseReason::ProtocolViolation(what) => (
                ResetCode::ProtocolViolation,
                format!("protocol violation seen from our side: {what}"),
            ),
        })
    }
}

/// Cuts `s` to at most [`MAX_RESET_MESSAGE`] bytes at a character boundary.
pub(crate) fn clip_message(s: &str) -> &str {
    if s.len() <= MAX_RESET_MESSAGE {
        return s;
    }
    let mut end = MAX_RESET_MESSAGE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Why data could not be written.
///
/// ```
/// use std::time::Duration;
/// use swp::{proto::Config, testkit::Pair, simnet::LinkConfig};
/// let mut p = Pair::new(1, LinkConfig::new(), Config::new("A", "B"), Config::new("B", ""));
/// assert!(p.connect(Duration::from_secs(1)));
/// use swp::proto::WriteError;
/// let now = p.now();
/// p.a.close(now);
/// assert_eq!(p.a.write(b"late"), Err(WriteError::Finished));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// `close()` was called: no more data may be written.
    #[error("cannot write after close()")]
    Finished,
    /// The session is closed.
    #[error("session closed: {0}")]
    Closed(CloseReason),
    /// The send buffer has no room for the whole message now; retry after
    /// the peer acknowledges data.
    #[error("send buffer full: retry when the peer has acknowledged data")]
    Blocked,
    /// The message can never fit the peer's receive window (or our send
    /// buffer): split it, or raise the windows.
    #[error(
        "message of {len} bytes exceeds the largest deliverable message ({max} bytes): split it or raise the window sizes"
    )]
    TooLarge {
        /// The message's size.
        len: u64,
        /// The largest size allowed.
        max: u64,
    },
}

/// Why data could not be read.
///
/// ```
/// use std::time::Duration;
/// use swp::{proto::Config, testkit::Pair, simnet::LinkConfig};
/// let mut p = Pair::new(1, LinkConfig::new(), Config::new("A", "B"), Config::new("B", ""));
/// assert!(p.connect(Duration::from_secs(1)));
/// use swp::proto::{CloseReason, ReadError};
/// let now = p.now();
/// p.a.abort(now);
/// assert_eq!(
///     p.a.read(&mut [0u8; 8]),
///     Err(ReadError::Closed(CloseReason::Aborted { reason: String::new() }))
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The session ended before the peer finished its stream.
    #[error("session closed before the end of stream: {0}")]
    Closed(CloseReason),
}
