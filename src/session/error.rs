//! Why a session call failed, and how that maps to `std::io::Error`.

use crate::proto::{CloseReason, ConfigError, ReadError, WriteError};
use crate::transport::TransportError;
use std::io;

/// Why a session call failed.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork, Session};
/// # let net = SimNetwork::new(1, LinkConfig::new());
/// use swp::{proto::CloseReason, SessionError};
/// use std::time::Duration;
/// // Nobody listens on "nobody": two attempts, then a clear error.
/// let cfg = Config::new("me", "nobody").connect(Duration::from_millis(200), 2);
/// let err = Session::connect(net.transport("me", 64), cfg).await.unwrap_err();
/// assert!(matches!(err, SessionError::Closed(CloseReason::ConnectTimeout { .. })));
/// assert_eq!(std::io::Error::from(err).kind(), std::io::ErrorKind::TimedOut);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The configuration cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The transport (NATS) failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The session ended.
    #[error("{0}")]
    Closed(CloseReason),
    /// A message could not be queued.
    #[error(transparent)]
    Write(WriteError),
}

impl From<WriteError> for SessionError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Closed(r) => SessionError::Closed(r),
            e => SessionError::Write(e),
        }
    }
}

impl From<ReadError> for SessionError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Closed(r) => SessionError::Closed(r),
        }
    }
}

fn close_kind(r: &CloseReason) -> io::ErrorKind {
    match r {
        CloseReason::Normal => io::ErrorKind::BrokenPipe,
        CloseReason::Aborted { .. } => io::ErrorKind::ConnectionAborted,
        CloseReason::Reset { .. } => io::ErrorKind::ConnectionReset,
        CloseReason::ConnectTimeout { .. } => io::ErrorKind::TimedOut,
        CloseReason::PeerUnreachable { .. }
        | CloseReason::NotHeardBack { .. }
        | CloseReason::RetransmitLimit { .. }
        | CloseReason::Terminated { .. }
        | CloseReason::FinTimeout { .. } => io::ErrorKind::TimedOut,
        CloseReason::ProtocolViolation(_) => io::ErrorKind::InvalidData,
        CloseReason::SealFailed { .. } => io::ErrorKind::PermissionDenied,
    }
}

impl From<SessionError> for io::Error {
    fn from(e: SessionError) -> io::Error {
        let kind = match &e {
            SessionError::Config(_) => io::ErrorKind::InvalidInput,
            SessionError::Transport(_) => io::ErrorKind::NotConnected,
            SessionError::Closed(r) => close_kind(r),
            SessionError::Write(WriteError::Finished) => io::ErrorKind::BrokenPipe,
            SessionError::Write(WriteError::TooLarge { .. }) => io::ErrorKind::InvalidInput,
            SessionError::Write(_) => io::ErrorKind::WouldBlock,
        };
        io::Error::new(kind, e)
    }
}
