//! Why a session ended, and errors of application commands.

use std::time::Duration;

/// Why a session is closed. `Normal` is the only clean ending.
///
/// ```
/// use std::time::Duration;
/// use swp::{proto::Config, sim::Pair, simnet::LinkConfig};
/// let mut p = Pair::new(1, LinkConfig::new(), Config::new("A", "B"), Config::new("B", ""));
/// assert!(p.connect(Duration::from_secs(1)));
/// use swp::proto::CloseReason;
/// let now = p.now();
/// p.a.abort(now); // a Reset goes to the peer
/// assert!(p.run_until(Duration::from_secs(1), |p| p.b.is_closed()));
/// assert_eq!(p.b.close_reason(), Some(&CloseReason::Reset));
/// assert_eq!(p.a.close_reason(), Some(&CloseReason::Aborted));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloseReason {
    /// Both sides sent a Fin and had it acknowledged.
    #[error("session closed normally")]
    Normal,
    /// This side aborted the session.
    #[error("session aborted locally")]
    Aborted,
    /// The peer aborted the session (it sent a Reset).
    #[error("session reset by the peer")]
    Reset,
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
    /// Nothing heard from the peer for the keepalive budget.
    #[error("peer unreachable: nothing heard for {silent_for:?} (keepalive budget {budget:?})")]
    PeerUnreachable {
        /// Time since the last packet from the peer.
        silent_for: Duration,
        /// Keepalive interval × failures allowed.
        budget: Duration,
    },
    /// A data packet was retransmitted too often without an acknowledgement.
    #[error("peer not acknowledging: data retransmitted {retries} times without progress")]
    RetransmitLimit {
        /// Consecutive retransmission timeouts.
        retries: u32,
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
    /// Our Fin was never acknowledged.
    #[error("peer did not acknowledge our Fin after {retries} tries")]
    FinTimeout {
        /// Fin transmissions.
        retries: u32,
    },
    /// The peer sent something the protocol forbids (e.g. data beyond the
    /// end of stream it announced).
    #[error("protocol violation by the peer: {0}")]
    ProtocolViolation(&'static str),
}

impl CloseReason {
    /// True for [`CloseReason::Normal`].
    ///
    /// ```
    /// use swp::proto::CloseReason;
    /// assert!(CloseReason::Normal.is_normal());
    /// assert!(!CloseReason::Reset.is_normal());
    /// ```
    pub fn is_normal(&self) -> bool {
        matches!(self, CloseReason::Normal)
    }
}

/// Why data could not be written.
///
/// ```
/// use std::time::Duration;
/// use swp::{proto::Config, sim::Pair, simnet::LinkConfig};
/// let mut p = Pair::new(1, LinkConfig::new(), Config::new("A", "B"), Config::new("B", ""));
/// assert!(p.connect(Duration::from_secs(1)));
/// use swp::proto::WriteError;
/// let now = p.now();
/// p.a.close(now);
/// assert_eq!(p.a.write(b"late"), Err(WriteError::Finished));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
/// use swp::{proto::Config, sim::Pair, simnet::LinkConfig};
/// let mut p = Pair::new(1, LinkConfig::new(), Config::new("A", "B"), Config::new("B", ""));
/// assert!(p.connect(Duration::from_secs(1)));
/// use swp::proto::{CloseReason, ReadError};
/// let now = p.now();
/// p.a.abort(now);
/// assert_eq!(p.a.read(&mut [0u8; 8]), Err(ReadError::Closed(CloseReason::Aborted)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The session ended before the peer finished its stream.
    #[error("session closed before the end of stream: {0}")]
    Closed(CloseReason),
}
