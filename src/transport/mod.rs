//! The async side of the wire: a [`Transport`] moves encoded packets between
//! inboxes. Two implementations: [`NatsTransport`] (a real NATS server, via
//! async-nats) and [`SimTransport`] (SimNet in tokio's virtual time).
//!
//! A transport is shared (`Arc<dyn Transport>`): many sessions may use one
//! NATS connection, each on its own inbox subscription.

pub mod nats;
pub mod sim;

pub use nats::{NatsOptions, NatsTransport};
pub use sim::{SimNetwork, SimTransport};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;

/// Packets arriving on one inbox subscription. Dropping it unsubscribes.
pub type Incoming = BoxStream<'static, Bytes>;

/// What the transport beneath can hold for one subscription before it drops
/// messages (for NATS: the client's per-subscription channel capacity).
/// `None`: no limit of that kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capacity {
    /// Messages.
    pub packets: Option<u64>,
    /// Bytes.
    pub bytes: Option<u64>,
}

/// Events of the underlying connection that a session reports in its stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TransportCounters {
    /// Times the transport dropped messages because a subscriber was full
    /// (NATS "slow consumer"), on this connection (all its sessions).
    pub slow_consumer_events: u64,
    /// Reconnections of this connection.
    pub reconnects: u64,
    /// Disconnections of this connection.
    pub disconnects: u64,
}

/// A transport failure, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// Could not subscribe to the session's inbox.
    #[error("cannot subscribe to inbox {inbox:?}: {reason}")]
    Subscribe {
        /// The inbox.
        inbox: String,
        /// What the transport said.
        reason: String,
    },
    /// Could not publish a packet.
    #[error("cannot publish to {subject:?}: {reason}")]
    Publish {
        /// The subject.
        subject: String,
        /// What the transport said.
        reason: String,
    },
    /// The connection is closed for good.
    #[error("transport closed: {0}")]
    Closed(String),
}

/// Moves encoded packets between inboxes. Implementations must deliver each
/// packet whole or not at all; they may lose, duplicate or reorder.
pub trait Transport: Send + Sync + 'static {
    /// Subscribes to `inbox`; packets published to it arrive on the stream.
    fn subscribe(&self, inbox: &str) -> BoxFuture<'_, Result<Incoming, TransportError>>;
    /// Publishes one packet to `subject` (the peer's inbox).
    fn publish(&self, subject: &str, payload: Bytes) -> BoxFuture<'_, Result<(), TransportError>>;
    /// Largest message the transport carries, in bytes.
    fn max_payload(&self) -> usize;
    /// How much one subscription holds before the transport drops messages.
    fn capacity(&self) -> Capacity;
    /// Connection events so far.
    fn counters(&self) -> TransportCounters {
        TransportCounters::default()
    }
}
