//! The async side of the wire: a [`Transport`] moves encoded packets between
//! inboxes. Two implementations: [`NatsTransport`] (a real NATS server, via
//! async-nats) and [`SimTransport`] (SimNet in tokio's virtual time).
//!
//! A transport is shared (`Arc<dyn Transport>`): many sessions may use one
//! NATS connection, each on its own inbox subscription.

pub mod nats;
#[cfg(feature = "sim")]
pub mod simnet;

#[cfg(feature = "sim")]
pub use self::simnet::{SimNetwork, SimTransport};
pub use nats::{NatsOptions, NatsTransport};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;

/// Packets arriving on one inbox subscription. Dropping it unsubscribes.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use swp::{simnet::LinkConfig, transport::{SimNetwork, Transport}};
/// use futures::StreamExt;
/// let net = SimNetwork::new(1, LinkConfig::new());
/// let t = net.transport("A", 64);
/// let mut incoming = t.subscribe("A").await?;
/// t.publish("A", "to myself".into()).await?;
/// assert_eq!(incoming.next().await.unwrap(), "to myself");
/// # Ok(()) }
/// ```
pub type Incoming = BoxStream<'static, Bytes>;

/// What the transport beneath can hold for one subscription before it drops
/// messages (for NATS: the client's per-subscription channel capacity).
/// `None`: no limit of that kind.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use swp::{simnet::LinkConfig, transport::{SimNetwork, Transport}};
/// let net = SimNetwork::new(1, LinkConfig::new());
/// let cap = net.transport("A", 256).capacity();
/// assert_eq!((cap.packets, cap.bytes), (Some(256), None));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capacity {
    /// Messages.
    pub packets: Option<u64>,
    /// Bytes.
    pub bytes: Option<u64>,
}

/// Events of the underlying connection that a session reports in its stats.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use swp::{simnet::LinkConfig, transport::{SimNetwork, Transport}};
/// use swp::proto::Config;
/// let net = SimNetwork::new(1, LinkConfig::new());
/// let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
/// a.send_and_wait("x").await?;
/// // swp's window keeps the peer's inbox from overflowing: no slow consumer.
/// assert_eq!(b.stats().transport.slow_consumer_events, 0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct TransportCounters {
    /// Times the transport dropped messages because a subscriber was full
    /// (NATS "slow consumer"), on this connection (all its sessions).
    pub slow_consumer_events: u64,
    /// Reconnections of this connection.
    pub reconnects: u64,
    /// Disconnections of this connection.
    pub disconnects: u64,
}

/// The error a transport's client library reported, kept as the
/// [`source`](std::error::Error::source) of a [`TransportError`] so callers
/// can walk the chain or downcast it (e.g. to an async-nats error kind).
/// Cloneable and comparable (by its message) like the error that holds it.
///
/// ```
/// use std::error::Error;
/// use swp::transport::{Cause, TransportError};
/// let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
/// let e = TransportError::Connect {
///     server: "nats://127.0.0.1:1".into(),
///     reason: "refused".into(),
///     source: Some(Cause::new(io)),
/// };
/// let cause = e.source().unwrap().downcast_ref::<Cause>().unwrap();
/// assert!(cause.get_ref().downcast_ref::<std::io::Error>().is_some());
/// assert_eq!(cause.to_string(), "refused");
/// ```
#[derive(Clone)]
pub struct Cause(std::sync::Arc<dyn std::error::Error + Send + Sync + 'static>);

impl Cause {
    /// Wraps the client library's error.
    pub fn new(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Cause(std::sync::Arc::new(e))
    }
    /// The wrapped error, to downcast.
    pub fn get_ref(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }
}

impl std::fmt::Debug for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.0, f)
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&*self.0, f)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0) || self.0.to_string() == other.0.to_string()
    }
}
impl Eq for Cause {}

/// A transport failure, with what to do about it. `reason` already says
/// what the client library said; `source` keeps that error itself, when
/// there was one.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use swp::{simnet::LinkConfig, transport::{SimNetwork, Transport}};
/// use swp::transport::TransportError;
/// let net = SimNetwork::new(1, LinkConfig::new());
/// let t = net.transport("A", 64);
/// // Only an endpoint's own inbox can be subscribed on SimNet.
/// let err = t.subscribe("B").await.err().unwrap();
/// assert!(matches!(err, TransportError::Subscribe { .. }), "{err}");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// Could not subscribe to the session's inbox.
    #[error("cannot subscribe to inbox {inbox:?}: {reason}")]
    Subscribe {
        /// The inbox.
        inbox: String,
        /// What the transport said.
        reason: String,
        /// The client library's error, when there was one.
        #[source]
        source: Option<Cause>,
    },
    /// Could not publish a packet.
    #[error("cannot publish to {subject:?}: {reason}")]
    Publish {
        /// The subject.
        subject: String,
        /// What the transport said.
        reason: String,
        /// The client library's error, when there was one.
        #[source]
        source: Option<Cause>,
    },
    /// Could not connect to the server(s).
    #[error("cannot connect to NATS at {server}: {reason}")]
    Connect {
        /// The server URL(s), credentials removed.
        server: String,
        /// What went wrong, and what to check.
        reason: String,
        /// The client library's error, when there was one.
        #[source]
        source: Option<Cause>,
    },
    /// The server refused an operation on a subject (NATS permissions).
    #[error(
        "the NATS server denied {operation} {subject:?}: {reason} (check this user's publish/subscribe permissions)"
    )]
    Denied {
        /// "publishing to" or "subscribing to".
        operation: &'static str,
        /// The subject.
        subject: String,
        /// What the server said.
        reason: String,
    },
    /// Nobody subscribes to the subject a service client's Syn went to
    /// (NATS answered "no responders").
    #[error(
        "nobody is listening on {subject:?}: no service has subscribed to it on this NATS server or cluster (start one, e.g. `swp serve {subject} DIR`, or check the subject and the account)"
    )]
    NoResponders {
        /// The service subject.
        subject: String,
    },
    /// The transport cannot do what was asked (e.g. queue groups on a
    /// transport without them).
    #[error("the transport cannot {0}")]
    Unsupported(&'static str),
    /// The connection is closed for good.
    #[error("transport closed: {0}")]
    Closed(String),
}

/// Moves encoded packets between inboxes. Implementations must deliver each
/// packet whole or not at all; they may lose, duplicate or reorder.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use swp::{simnet::LinkConfig, transport::{SimNetwork, Transport}};
/// use bytes::Bytes;
/// use futures::{future::BoxFuture, StreamExt};
/// use std::sync::Mutex;
/// use swp::transport::{Capacity, Incoming, TransportError};
/// use tokio::sync::mpsc;
///
/// /// A loopback transport for one inbox: what is published comes back.
/// struct Loopback {
///     tx: mpsc::UnboundedSender<Bytes>,
///     rx: Mutex<Option<mpsc::UnboundedReceiver<Bytes>>>,
/// }
///
/// impl Transport for Loopback {
///     fn subscribe(&self, inbox: &str) -> BoxFuture<'_, Result<Incoming, TransportError>> {
///         let rx = self.rx.lock().unwrap().take();
///         let inbox = inbox.to_string();
///         Box::pin(async move {
///             let rx = rx.ok_or(TransportError::Subscribe { inbox, reason: "taken".into(), source: None })?;
///             Ok(futures::stream::unfold(rx, |mut rx| async move {
///                 rx.recv().await.map(|b| (b, rx))
///             })
///             .boxed())
///         })
///     }
///     fn publish(&self, subject: &str, payload: Bytes) -> BoxFuture<'_, Result<(), TransportError>> {
///         let r = self.tx.send(payload).map_err(|_| TransportError::Publish {
///             subject: subject.to_string(),
///             reason: "receiver gone".into(),
///             source: None,
///         });
///         Box::pin(async move { r })
///     }
///     fn max_payload(&self) -> usize {
///         1 << 20
///     }
///     fn capacity(&self) -> Capacity {
///         Capacity::default() // unbounded
///     }
/// }
///
/// let (tx, rx) = mpsc::unbounded_channel();
/// let t = Loopback { tx, rx: Mutex::new(Some(rx)) };
/// let mut inbox = t.subscribe("me").await?;
/// t.publish("me", "echo".into()).await?;
/// assert_eq!(inbox.next().await.unwrap(), "echo");
/// # Ok(()) }
/// ```
pub trait Transport: Send + Sync + 'static {
    /// Subscribes to `inbox`; packets published to it arrive on the stream.
    fn subscribe(&self, inbox: &str) -> BoxFuture<'_, Result<Incoming, TransportError>>;
    /// Publishes one packet to `subject` (the peer's inbox).
    fn publish(&self, subject: &str, payload: Bytes) -> BoxFuture<'_, Result<(), TransportError>>;
    /// Largest message the transport carries, in bytes.
    fn max_payload(&self) -> usize;
    /// How much one subscription holds before the transport drops messages.
    fn capacity(&self) -> Capacity;
    /// Waits until the other end of the transport has taken everything
    /// published before (for NATS: a round trip, after which the server has
    /// handled every earlier publish, as nats.go's `Flush`). A program calls
    /// it before it exits, so the last packets of a close are not lost with
    /// the process. The default has nothing to flush.
    fn flush(&self) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async { Ok(()) })
    }
    /// A failure the transport learnt about on its own that concerns
    /// `subject`: for NATS, the server refused to let us publish to it or
    /// subscribe to it (permissions). The session driver asks for its own
    /// inbox and its peer's whenever [`failures`](Self::failures) changes,
    /// and ends the session with the error at once, except
    /// [`TransportError::NoResponders`]: that one answers one request, is
    /// reported once per answer, and a connecting session re-sends its Syn
    /// a few times before it believes it (docs/PROTOCOL.md §4.1). The
    /// default has none.
    fn denied(&self, subject: &str) -> Option<TransportError> {
        let _ = subject;
        None
    }
    /// Changes whenever [`denied`](Self::denied) may have something new;
    /// `None` if the transport never learns of failures on its own.
    fn failures(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
    /// `Some(seed)` only for a simulated network that replays a run from a
    /// seed on a paused clock ([`SimTransport`]): each session started on
    /// it draws its nonce from the next such seed instead of the OS, and
    /// the file layer runs its disk and hashing jobs in line instead of on
    /// blocking threads (whose finishing moments would reorder the tasks of
    /// one virtual instant), so one seed gives one run, packet for packet.
    /// Real transports keep the default, `None`.
    fn replay_seed(&self) -> Option<u64> {
        None
    }
    /// Connection events so far.
    fn counters(&self) -> TransportCounters {
        TransportCounters::default()
    }
    /// A fresh subject for one session's private inbox (for NATS, the
    /// client's `new_inbox()`, which honours its inbox prefix). `None`: this
    /// transport cannot make one, so it cannot run services.
    fn new_inbox(&self) -> Option<String> {
        None
    }
    /// Subscribes to `subject` as a member of queue group `group`: each
    /// message reaches one member of the group. The default refuses.
    fn subscribe_queue(
        &self,
        subject: &str,
        group: &str,
    ) -> BoxFuture<'_, Result<Incoming, TransportError>> {
        let _ = (subject, group);
        Box::pin(async { Err(TransportError::Unsupported("join queue groups")) })
    }
    /// Publishes a service client's Syn: to `subject`, naming `reply` (the
    /// client's inbox). A transport that learns nobody subscribes to
    /// `subject` reports [`TransportError::NoResponders`] as
    /// [`denied`](Self::denied)`(reply)`, once per such answer. The default
    /// publishes plainly.
    fn publish_request(
        &self,
        subject: &str,
        reply: &str,
        payload: Bytes,
    ) -> BoxFuture<'_, Result<(), TransportError>> {
        let _ = reply;
        self.publish(subject, payload)
    }
}
