//! The async session: a driver task around the sans-IO [`Connection`], and
//! the application's handles to it.
//!
//! One task per session owns the inbox subscription. It feeds arriving
//! packets and expired timers to the engine, publishes what the engine wants
//! sent, and wakes whoever waits (readers, writers, `flush`, message calls)
//! when the engine reports an event. Application calls lock the engine
//! briefly, act, and nudge the driver. Nothing busy-polls: a blocked read or
//! write parks until an event.
//!
//! Dropping every handle closes the session gracefully in the background
//! (data already written is still delivered); the driver gives up and aborts
//! after [`DROP_LINGER`]. The subscription ends with the driver.

use crate::proto::{
    CloseReason, Config, ConfigError, Connection, Event, MessageId, ReadError, Recv, ResetCode,
    State, Stats, WriteError, codec, go::link as golink,
};
use crate::proto::{Str, Transmit};
use crate::transport::{Incoming, Transport, TransportCounters, TransportError};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// How long a session whose handles were all dropped keeps delivering what
/// was written before it gives up and aborts.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
/// # let net = SimNetwork::new(1, LinkConfig::new());
/// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
/// // Dropped without close(): what was sent is still delivered.
/// a.send("last words").await?;
/// drop(a);
/// assert_eq!(b.recv().await?.unwrap(), "last words");
/// # Ok(()) }
/// ```
pub const DROP_LINGER: Duration = Duration::from_secs(10);

/// Packets handled per driver wake-up before acks are generated; batching
/// lets one ack cover a burst.
const BATCH: usize = 256;

/// How long a finished driver waits for the transport to take its last
/// packets (a Fin's ack, a Reset) before it lets them go.
const FINAL_PUBLISH_BOUND: Duration = Duration::from_secs(1);

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
        CloseReason::Aborted => io::ErrorKind::ConnectionAborted,
        CloseReason::Reset { .. } => io::ErrorKind::ConnectionReset,
        CloseReason::ConnectTimeout { .. } => io::ErrorKind::TimedOut,
        CloseReason::PeerUnreachable { .. }
        | CloseReason::NotHeardBack { .. }
        | CloseReason::RetransmitLimit { .. }
        | CloseReason::Terminated { .. }
        | CloseReason::FinTimeout { .. } => io::ErrorKind::TimedOut,
        CloseReason::ProtocolViolation(_) => io::ErrorKind::InvalidData,
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

/// A subscribed inbox waiting for one peer (from [`Session::listen`]).
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork, Session};
/// # let net = SimNetwork::new(1, LinkConfig::new());
/// // Subscribe first, so the peer can connect at once; accept later.
/// let listener = Session::listen(net.transport("b", 64), Config::new("b", "")).await?;
/// let (a, b) = tokio::join!(
///     Session::connect(net.transport("a", 64), Config::new("a", "b")),
///     listener.accept(),
/// );
/// assert_eq!(b?.remote_inbox(), "a");
/// # drop(a);
/// # Ok(()) }
/// ```
pub struct Listener {
    transport: Arc<dyn Transport>,
    cfg: Config,
    incoming: Incoming,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("inbox", &self.cfg.local_inbox())
            .finish()
    }
}

impl Listener {
    /// Waits for a peer's handshake and returns the established session
    /// (cancel by dropping the future, or wrap it in a timeout).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork, Session};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// let listener = Session::listen(net.transport("b", 64), Config::new("b", "")).await?;
    /// let accepted = tokio::spawn(listener.accept());
    /// let a = Session::connect(net.transport("a", 64), Config::new("a", "b")).await?;
    /// let b = accepted.await??;
    /// a.send("hi").await?;
    /// assert_eq!(b.recv().await?.unwrap(), "hi");
    /// # Ok(()) }
    /// ```
    pub async fn accept(self) -> Result<Session, SessionError> {
        Session::start_with(self.transport, self.cfg, self.incoming, false).await
    }
}

/// Protocol and transport counters of a session.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
/// # let net = SimNetwork::new(1, LinkConfig::new());
/// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
/// a.send_and_wait("counted").await?;
/// let st = a.stats();
/// assert_eq!(st.protocol.data_packets_sent, 1);
/// assert_eq!(st.protocol.app_bytes_acked, 7);
/// assert_eq!(st.transport.slow_consumer_events, 0);
/// # drop(b);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SessionStats {
    /// The engine's counters.
    pub protocol: Stats,
    /// The transport connection's events (shared by its sessions).
    pub transport: TransportCounters,
}

struct Inner {
    conn: Connection,
    wakers: Vec<Waker>,
    transport_error: Option<TransportError>,
    shutdown_requested: bool,
    orphaned_at: Option<Instant>,
    driver_done: bool,
    /// Packets the engine produced that the driver has not yet handed to
    /// the transport.
    unsent: usize,
}

impl Inner {
    fn park(&mut self, w: &Waker) {
        if !self.wakers.iter().any(|x| x.will_wake(w)) {
            self.wakers.push(w.clone());
        }
    }
    fn wake_all(&mut self) {
        for w in self.wakers.drain(..) {
            w.wake();
        }
    }
    /// The transport cannot carry the session any more: abort with `e` as
    /// the reason every blocked call gets.
    fn fail_on_transport(&mut self, e: TransportError, now: Instant) {
        tracing::debug!(error = %e, "transport failed; aborting session");
        // The peer may still hear us (only publishing may be stuck): tell it.
        self.conn.abort_because(
            now,
            ResetCode::Transport,
            &format!("its transport failed: {e}"),
        );
        self.transport_error = Some(e);
        self.wake_all();
    }

    /// Our side of a graceful close is done, and the packets saying so have
    /// been handed to the transport.
    fn close_done(&self) -> bool {
        self.conn.close_settled() && self.unsent == 0
    }
    /// The error a blocked call should return, if the session is over.
    fn failure(&self) -> Option<SessionError> {
        if let Some(e) = &self.transport_error {
            return Some(SessionError::Transport(e.clone()));
        }
        match self.conn.close_reason() {
            Some(r) if !r.is_normal() => Some(SessionError::Closed(r.clone())),
            _ => None,
        }
    }
}

struct Shared {
    inner: Mutex<Inner>,
    /// Wakes the driver (an application call changed something).
    driver: Notify,
    /// Wakes async waiters (the driver saw events).
    changed: Notify,
    transport: Arc<dyn Transport>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock would be a bug in this module; the
        // state is still consistent enough to report errors, so go on.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn wait<T>(&self, mut ready: impl FnMut(&mut Inner) -> Option<T>) -> T {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(v) = ready(&mut self.lock()) {
                return v;
            }
            notified.await;
        }
    }

    fn nudge(&self) {
        self.driver.notify_one();
    }
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Marks the session orphaned when the last application handle goes away.
struct HandleGuard(Arc<Shared>);

impl Drop for HandleGuard {
    fn drop(&mut self) {
        let mut g = self.0.lock();
        if !g.conn.is_closed() {
            let t = now();
            g.conn.close(t);
            g.orphaned_at = Some(t);
        }
        drop(g);
        self.0.nudge();
    }
}

/// A reliable, ordered, flow-controlled session with a peer.
///
/// Bytes: [`AsyncRead`] / [`AsyncWrite`] (works with `tokio::io::copy`).
/// Messages: [`send`](Self::send), [`send_and_wait`](Self::send_and_wait),
/// [`recv`](Self::recv). Both views share one ordered stream; use one or
/// the other per direction.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// use swp::{Session, proto::Config, transport::SimNetwork};
/// use swp::simnet::LinkConfig;
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// let net = SimNetwork::new(1, LinkConfig::new().latency(std::time::Duration::from_millis(1)));
/// let (ta, tb) = (net.transport("A", 4096), net.transport("B", 4096));
/// let server = tokio::spawn(async move {
///     let mut s = Session::accept(tb, Config::new("B", "")).await.unwrap();
///     let mut got = String::new();
///     s.read_to_string(&mut got).await.unwrap();
///     got
/// });
/// let mut c = Session::connect(ta, Config::new("A", "B")).await.unwrap();
/// c.write_all(b"hello over swp").await.unwrap();
/// c.shutdown().await.unwrap();
/// assert_eq!(server.await.unwrap(), "hello over swp");
/// # }
/// ```
pub struct Session {
    shared: Arc<Shared>,
    guard: Arc<HandleGuard>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let g = self.shared.lock();
        f.debug_struct("Session")
            .field("local", &g.conn.config().local_inbox())
            .field("remote", &g.conn.remote_inbox())
            .field("state", &g.conn.state())
            .finish()
    }
}

impl Session {
    /// Active open: subscribes to `cfg`'s local inbox, runs the handshake
    /// with the listener on its destination inbox, and returns once
    /// established. Fails with [`CloseReason::ConnectTimeout`] after the
    /// configured attempts, and with [`TransportError::Subscribe`] if the
    /// transport cannot confirm the subscription within those attempts'
    /// total time (a NATS server that is down).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork, Session};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// let accepted = tokio::spawn(Session::accept(net.transport("b", 64), Config::new("b", "")));
    /// let a = Session::connect(net.transport("a", 64), Config::new("a", "b")).await?;
    /// assert!(a.state() == swp::proto::State::Established);
    /// # drop(accepted);
    /// # Ok(()) }
    /// ```
    pub async fn connect(
        transport: Arc<dyn Transport>,
        cfg: Config,
    ) -> Result<Session, SessionError> {
        Self::start(transport, cfg, true).await
    }

    /// Passive open: subscribes to `cfg`'s local inbox and waits for a peer's
    /// handshake (cancel by dropping the future, or wrap it in a timeout).
    /// Same as [`listen`](Self::listen) then [`Listener::accept`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork, Session};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// // Waits for a peer; run it beside the connecting side.
    /// let (a, b) = tokio::join!(
    ///     Session::connect(net.transport("a", 64), Config::new("a", "b")),
    ///     Session::accept(net.transport("b", 64), Config::new("b", "")),
    /// );
    /// a?.send("hello").await?;
    /// assert_eq!(b?.recv().await?.unwrap(), "hello");
    /// # Ok(()) }
    /// ```
    pub async fn accept(
        transport: Arc<dyn Transport>,
        cfg: Config,
    ) -> Result<Session, SessionError> {
        Self::listen(transport, cfg).await?.accept().await
    }

    /// Subscribes to `cfg`'s local inbox now, so a peer may connect as soon
    /// as this returns; [`Listener::accept`] then waits for the handshake.
    /// Fails with [`TransportError::Subscribe`] if the transport cannot
    /// confirm the subscription within `cfg`'s connect budget (timeout x
    /// attempts).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork, Session};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// let listener = Session::listen(net.transport("b", 64), Config::new("b", "")).await?;
    /// // The inbox is subscribed: a peer may connect from now on.
    /// let (a, b) = tokio::join!(
    ///     Session::connect(net.transport("a", 64), Config::new("a", "b")),
    ///     listener.accept(),
    /// );
    /// # drop((a, b));
    /// # Ok(()) }
    /// ```
    pub async fn listen(
        transport: Arc<dyn Transport>,
        cfg: Config,
    ) -> Result<Listener, SessionError> {
        cfg.validate()?;
        let incoming = subscribe_within_connect_budget(transport.as_ref(), &cfg).await?;
        Ok(Listener {
            transport,
            cfg,
            incoming,
        })
    }

    async fn start(
        transport: Arc<dyn Transport>,
        cfg: Config,
        active: bool,
    ) -> Result<Session, SessionError> {
        cfg.validate()?;
        let incoming = subscribe_within_connect_budget(transport.as_ref(), &cfg).await?;
        Self::start_with(transport, cfg, incoming, active).await
    }

    async fn start_with(
        transport: Arc<dyn Transport>,
        cfg: Config,
        incoming: Incoming,
        active: bool,
    ) -> Result<Session, SessionError> {
        let t = now();
        let seed: u64 = rand::random();
        let names = cfg.local_inbox().len() * 2 + cfg.remote_inbox().len() * 2 + 128;
        let overhead = codec::max_overhead(names).max(golink::max_overhead(names));
        let max_payload = cfg
            .max_payload_bytes()
            .min(transport.max_payload().saturating_sub(overhead).max(1024));
        let mut conn = if active {
            Connection::connect(cfg, t, seed)?
        } else {
            Connection::listen(cfg, t, seed)?
        };
        conn.set_max_payload(max_payload);
        if let Ok(wall) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            conn.set_wall_clock(t, wall.as_nanos() as i128);
        }
        let cap = transport.capacity();
        conn.set_transport_capacity(cap.packets, cap.bytes);
        let span = tracing::info_span!(
            "swp_session",
            local = %conn.config().local_inbox(),
            remote = %conn.remote_inbox()
        );
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                conn,
                wakers: Vec::new(),
                transport_error: None,
                shutdown_requested: false,
                orphaned_at: None,
                driver_done: false,
                unsent: 0,
            }),
            driver: Notify::new(),
            changed: Notify::new(),
            transport,
        });
        tokio::spawn(tracing::Instrument::instrument(
            drive(shared.clone(), incoming),
            span,
        ));
        // The driver waits for input before its first output; the Syn of an
        // active open is already due, so wake it at once.
        shared.nudge();
        let session = Session {
            guard: Arc::new(HandleGuard(shared.clone())),
            shared,
        };
        session
            .shared
            .wait(|g| {
                if g.conn.is_established()
                    || g.conn.is_closed() && g.conn.close_reason().is_some_and(|r| r.is_normal())
                {
                    Some(Ok(()))
                } else {
                    g.failure().map(Err)
                }
            })
            .await?;
        Ok(session)
    }

    /// Queues one message (boundaries preserved); waits while the send
    /// buffer is full. Returns its id for [`is_acked`](Self::is_acked).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
    /// let id = a.send("one").await?;
    /// a.send("two").await?;
    /// a.wait_acked(id).await?;
    /// assert_eq!(b.recv().await?.unwrap(), "one");
    /// assert_eq!(b.recv().await?.unwrap(), "two");
    /// # Ok(()) }
    /// ```
    pub async fn send(&self, msg: impl Into<Bytes>) -> Result<MessageId, SessionError> {
        self.shared.send(msg.into()).await
    }

    /// Sends one message and waits until the peer has acknowledged it (go-swp's
    /// `PushGetAck`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
    /// a.send_and_wait("acknowledged").await?;
    /// // The peer has it (maybe not read yet).
    /// assert_eq!(a.stats().protocol.app_bytes_acked, 12);
    /// assert_eq!(b.held(), (1, 12));
    /// # Ok(()) }
    /// ```
    pub async fn send_and_wait(&self, msg: impl Into<Bytes>) -> Result<(), SessionError> {
        self.shared.send_and_wait(msg.into()).await
    }

    /// Waits until message `id` (or stream offset `id`) is acknowledged.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
    /// let id = a.send("x").await?;
    /// a.wait_acked(id).await?;
    /// assert!(a.is_acked(id));
    /// # drop(b);
    /// # Ok(()) }
    /// ```
    pub async fn wait_acked(&self, id: MessageId) -> Result<(), SessionError> {
        self.shared.wait_acked(id).await
    }

    /// True once the peer has acknowledged message `id`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
    /// let id = a.send("x").await?;
    /// assert!(!a.is_acked(id)); // not yet: nothing has even left
    /// a.wait_acked(id).await?;
    /// assert!(a.is_acked(id));
    /// # drop(b);
    /// # Ok(()) }
    /// ```
    pub fn is_acked(&self, id: MessageId) -> bool {
        self.shared.lock().conn.is_acked(id)
    }

    /// The next message in order; `None` once the peer has finished its
    /// stream and everything was received.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
    /// a.send("only").await?;
    /// a.close().await?;
    /// assert_eq!(b.recv().await?.unwrap(), "only");
    /// assert_eq!(b.recv().await?, None); // the peer finished
    /// # Ok(()) }
    /// ```
    pub async fn recv(&self) -> Result<Option<Bytes>, SessionError> {
        self.shared.recv().await
    }

    /// Up to `max` in-order stream bytes without copying them (at most one
    /// packet's worth); `None` at end of stream. The zero-copy alternative
    /// to `AsyncRead`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
    /// use tokio::io::AsyncWriteExt;
    /// let mut a = a;
    /// a.write_all(b"stream bytes").await?;
    /// a.shutdown().await?;
    /// // Up to 6 bytes, as a slice of the received packet (no copy).
    /// assert_eq!(b.read_chunk(6).await?.unwrap(), "stream");
    /// assert_eq!(b.read_chunk(usize::MAX).await?.unwrap(), " bytes");
    /// assert_eq!(b.read_chunk(usize::MAX).await?, None);
    /// # Ok(()) }
    /// ```
    pub async fn read_chunk(&self, max: usize) -> Result<Option<Bytes>, SessionError> {
        self.shared.read_chunk(max).await
    }

    /// The next packet payload delivered as soon as it arrived (unordered,
    /// possibly duplicated; each message of a batch packet separately;
    /// needs [`Config::asap`]). `None` once the session
    /// is closed. Ordered delivery and flow control are unaffected.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork, Session};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// let (a, b) = swp::testkit::session_pair(&net, Config::new("a2", "b2"), Config::new("b2", "").asap(Some(64)))
    ///     .await?;
    /// a.send("early").await?;
    /// assert_eq!(b.recv_asap().await.unwrap(), "early");
    /// // Ordered delivery is unaffected.
    /// assert_eq!(b.recv().await?.unwrap(), "early");
    /// # Ok(()) }
    /// ```
    pub async fn recv_asap(&self) -> Option<Bytes> {
        self.shared.recv_asap().await
    }

    /// Waits until everything written has been acknowledged by the peer.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
    /// use tokio::io::AsyncWriteExt;
    /// let mut a = a;
    /// a.write_all(&[7u8; 100_000]).await?; // accepted into the send buffer
    /// a.flush_acked().await?; // now the peer has every byte
    /// assert_eq!(b.held().1, 100_000);
    /// # Ok(()) }
    /// ```
    pub async fn flush_acked(&self) -> Result<(), SessionError> {
        self.shared.flush_acked().await
    }

    /// Graceful close: stops writing, waits until every byte written is
    /// acknowledged and our Fin too, then returns. Incoming data not yet read
    /// is discarded from then on, and the session ends when the peer
    /// finishes (or after [`DROP_LINGER`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
    /// a.send("bye").await?;
    /// a.close().await?; // returns once everything and our Fin are acknowledged
    /// assert_eq!(b.recv().await?.unwrap(), "bye");
    /// assert_eq!(b.recv().await?, None);
    /// # Ok(()) }
    /// ```
    pub async fn close(self) -> Result<(), SessionError> {
        {
            let mut g = self.shared.lock();
            g.shutdown_requested = true;
            g.conn.close(now());
        }
        self.shared.nudge();
        self.shared
            .wait(|g| {
                if let Some(e) = g.failure() {
                    Some(Err(e))
                } else if g.close_done() {
                    Some(Ok(()))
                } else {
                    None
                }
            })
            .await
    }

    /// Ends the session at once; the peer is told with a Reset.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
    /// use swp::{proto::CloseReason, SessionError};
    /// a.abort();
    /// assert!(matches!(b.recv().await, Err(SessionError::Closed(CloseReason::Reset { .. }))));
    /// # Ok(()) }
    /// ```
    pub fn abort(&self) {
        self.shared.lock().conn.abort(now());
        self.shared.nudge();
        self.shared.changed.notify_waiters();
    }

    /// Ends the session at once and tells the peer why: its session ends
    /// with [`CloseReason::Reset`] carrying `reason` (at most
    /// [`MAX_RESET_MESSAGE`](crate::proto::MAX_RESET_MESSAGE) bytes). Use it
    /// for a local failure the peer must not wait for (a full disk, an
    /// unreadable source). The Reset is handed to the transport before the
    /// driver ends.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
    /// a.abort_with("disk full on the receiver");
    /// let err = b.recv().await.unwrap_err();
    /// assert_eq!(err.to_string(), "the peer reset the session: disk full on the receiver");
    /// # Ok(()) }
    /// ```
    pub fn abort_with(&self, reason: impl AsRef<str>) {
        abort_with(&self.shared, reason.as_ref());
    }

    /// Waits until the session's driver has ended: after an abort or a
    /// failure, once the Reset telling the peer was handed to the
    /// transport; after a graceful close, once the close is complete on
    /// both sides (the linger included). A program that is about to exit
    /// after an error waits for this (bounded), then flushes its transport,
    /// so the peer learns the reason instead of waiting for a budget.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
    /// a.abort_with("giving up");
    /// a.wait_closed().await; // the Reset is on its way
    /// assert!(b.recv().await.unwrap_err().to_string().contains("giving up"));
    /// # Ok(()) }
    /// ```
    pub async fn wait_closed(&self) {
        self.shared.wait(|g| g.driver_done.then_some(())).await
    }

    /// Splits into independently usable read and write halves.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
    /// use tokio::io::{AsyncReadExt, AsyncWriteExt};
    /// let (mut rd, mut wr) = b.into_split();
    /// let mut a = a;
    /// // Echo: one task reads while another writes.
    /// let echo = tokio::spawn(async move { tokio::io::copy(&mut rd, &mut wr).await });
    /// a.write_all(b"ping").await?;
    /// let mut back = [0u8; 4];
    /// a.read_exact(&mut back).await?;
    /// assert_eq!(&back, b"ping");
    /// # drop(echo);
    /// # Ok(()) }
    /// ```
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        (
            ReadHalf {
                shared: self.shared.clone(),
                _guard: self.guard.clone(),
            },
            WriteHalf {
                shared: self.shared,
                _guard: self.guard,
            },
        )
    }

    /// Protocol and transport counters.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
    /// a.send_and_wait("m").await?;
    /// assert_eq!(a.stats().protocol.data_packets_sent, 1);
    /// assert_eq!(b.stats().protocol.data_packets_received, 1);
    /// # Ok(()) }
    /// ```
    pub fn stats(&self) -> SessionStats {
        stats(&self.shared)
    }

    /// The protocol state.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
    /// use swp::proto::State;
    /// assert_eq!(a.state(), State::Established);
    /// a.abort();
    /// assert_eq!(a.state(), State::Closed);
    /// # drop(b);
    /// # Ok(()) }
    /// ```
    pub fn state(&self) -> State {
        self.shared.lock().conn.state()
    }

    /// Why the session closed, once it has.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
    /// use swp::proto::CloseReason;
    /// assert_eq!(a.close_reason(), None);
    /// a.abort();
    /// assert_eq!(a.close_reason(), Some(CloseReason::Aborted));
    /// # drop(b);
    /// # Ok(()) }
    /// ```
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.shared.lock().conn.close_reason().cloned()
    }

    /// The peer's inbox.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
    /// assert_eq!(a.remote_inbox(), "b");
    /// assert_eq!(b.remote_inbox(), "a"); // learnt from the Syn
    /// # Ok(()) }
    /// ```
    pub fn remote_inbox(&self) -> String {
        self.shared.lock().conn.remote_inbox().to_string()
    }

    /// Payload bytes held for the application, not yet read: (packets, bytes).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
    /// a.send_and_wait("abc").await?;
    /// assert_eq!(b.held(), (1, 3)); // one packet, three bytes, not yet read
    /// b.recv().await?;
    /// assert_eq!(b.held(), (0, 0));
    /// # Ok(()) }
    /// ```
    pub fn held(&self) -> (u64, u64) {
        self.shared.lock().conn.held()
    }

    /// Largest payload per packet in use (the configured maximum, lowered
    /// to fit the transport's maximum message size).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
    /// assert_eq!(a.max_payload(), Config::new("", "").max_payload_bytes());
    /// # drop(b);
    /// # Ok(()) }
    /// ```
    pub fn max_payload(&self) -> usize {
        self.shared.lock().conn.config().max_payload_bytes()
    }

    /// The wire format this session speaks: the configured one, or
    /// [`WireFormat::Go`](crate::proto::WireFormat::Go) when a listener was
    /// reached by a go-sliding-window peer.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
    /// use swp::proto::WireFormat;
    /// assert_eq!(a.wire_format(), WireFormat::Native);
    /// # drop(b);
    /// # Ok(()) }
    /// ```
    pub fn wire_format(&self) -> crate::proto::WireFormat {
        self.shared.lock().conn.wire_format()
    }
}

fn abort_with(shared: &Shared, reason: &str) {
    shared.lock().conn.abort_with(now(), reason);
    shared.nudge();
    shared.changed.notify_waiters();
}

fn stats(shared: &Shared) -> SessionStats {
    SessionStats {
        protocol: shared.lock().conn.stats(),
        transport: shared.transport.counters(),
    }
}

/// Subscribes to `cfg`'s local inbox, giving up after the connect budget
/// (`connect` timeout x attempts): a transport that cannot confirm the
/// subscription, such as a NATS client reconnecting to a server that is
/// gone, must not hold up `connect` or `listen` for ever.
async fn subscribe_within_connect_budget(
    transport: &dyn Transport,
    cfg: &Config,
) -> Result<Incoming, SessionError> {
    let budget = cfg.connect_timeout * cfg.connect_attempts;
    match tokio::time::timeout(budget, transport.subscribe(cfg.local_inbox())).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(TransportError::Subscribe {
            inbox: cfg.local_inbox().to_string(),
            reason: format!(
                "not confirmed within the connect budget ({} x {:?}); is the NATS server \
                 reachable? (the client may be trying to reconnect)",
                cfg.connect_attempts, cfg.connect_timeout
            ),
            source: None,
        }
        .into()),
    }
}

/// The driver task. See the module docs.
///
/// Handing a packet to the transport may wait: async-nats stops taking
/// publishes once its command queue is full, which is what happens while it
/// reconnects to a server that is gone. The packet being handed over is one
/// branch of the loop's `select!`, so input, timers (the keepalive budget)
/// and application calls go on while it waits; the engine is asked for more
/// packets only once everything it gave earlier has been handed over. A
/// transport that takes nothing for the dead-peer budget ends the session
/// with a [`TransportError::Publish`] that says so, even while the peer is
/// still heard from.
async fn drive(shared: Arc<Shared>, mut incoming: Incoming) {
    let mut queue: VecDeque<Transmit> = VecDeque::new();
    // The packet the transport did not take at once, while it waits.
    let mut sending: Option<Handover<'_>> = None;
    // A transport that takes nothing for the dead-peer budget ends the
    // session even if the peer is still heard from. It is checked before
    // the peer could give up on us (the budget plus its probe grace), so
    // the side whose client is stuck learns that first, in its own words.
    let stall_budget = shared.lock().conn.config().dead_peer_budget();
    // The transport may learn on its own that the server refuses our
    // subjects (NATS permissions): check at once, and whenever it says so.
    let mut failures = shared.transport.failures();
    // The driver is nudged once at its start, so the first pass checks.
    let mut check_denied = true;
    loop {
        let deadline = {
            let g = shared.lock();
            let orphan = g.orphaned_at.map(|t| t + DROP_LINGER);
            let stall = sending
                .as_ref()
                .zip(stall_budget)
                .filter(|_| !g.conn.is_closed())
                .map(|(h, b)| h.since + b);
            [g.conn.poll_timeout(), orphan, stall]
                .into_iter()
                .flatten()
                .min()
        };
        let sleep = async move {
            match deadline {
                Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                None => futures::future::pending::<()>().await,
            }
        };
        let handed_over = async {
            match sending.as_mut() {
                Some(h) => (&mut h.publish).await,
                None => futures::future::pending().await,
            }
        };
        let denial = async {
            match failures.as_mut() {
                Some(rx) => rx.changed().await.is_ok(),
                None => futures::future::pending().await,
            }
        };
        let mut input = false;
        let mut published = None;
        tokio::select! {
            biased;
            p = incoming.next() => {
                input = true;
                let mut g = shared.lock();
                let t = now();
                match p {
                    Some(b) => {
                        g.conn.handle_packet(t, b);
                        for _ in 0..BATCH {
                            match incoming.next().now_or_never() {
                                Some(Some(b)) => g.conn.handle_packet(t, b),
                                Some(None) => {
                                    g.fail_on_transport(TransportError::Closed("subscription ended".into()), t);
                                    break;
                                }
                                None => break,
                            }
                        }
                    }
                    None => g.fail_on_transport(TransportError::Closed("subscription ended".into()), t),
                }
            }
            r = handed_over => published = Some(r),
            alive = denial => {
                if alive {
                    check_denied = true;
                } else {
                    failures = None; // the transport is gone; nothing more to learn
                }
            }
            _ = shared.driver.notified() => {}
            _ = sleep => {}
        }
        if let Some(r) = published {
            sending = None;
            if let Err(e) = r {
                publish_failed(&shared, e);
            }
        }
        if std::mem::take(&mut check_denied) {
            check_transport_denials(&shared);
        }
        let (events, done) = {
            let mut g = shared.lock();
            let t = now();
            if g.conn.poll_timeout().is_some_and(|d| d <= t) {
                g.conn.handle_timeout(t);
            }
            // Checked after the engine's timers, so a dead peer is reported
            // as such when both budgets ran out at once.
            if let (Some(h), Some(budget)) = (&sending, stall_budget)
                && t >= h.since + budget
                && !g.conn.is_closed()
            {
                let e = TransportError::Publish {
                    subject: h.dest.to_string(),
                    reason: format!(
                        "the transport took no packet for {budget:?} (the session's \
                         dead-peer budget); is the NATS connection stuck or its \
                         client overloaded?"
                    ),
                    source: None,
                };
                g.fail_on_transport(e, t);
                // What waits behind the stuck packet cannot go either.
                sending = None;
                queue.clear();
            }
            if let Some(at) = g.orphaned_at {
                // Nobody will read: discard, so the peer can finish.
                while let Ok(Recv::Data(_)) = g.conn.read_chunk(usize::MAX) {}
                if t >= at + DROP_LINGER && !g.conn.is_closed() {
                    g.conn.abort(t);
                }
            }
            if queue.is_empty() && sending.is_none() {
                while let Some(tx) = g.conn.poll_transmit(t) {
                    queue.push_back(tx);
                }
            }
            // In the same critical section as the engine saw them go out, so
            // close() never sees a Fin as sent before it is handed over.
            g.unsent = queue.len() + sending.is_some() as usize;
            // Wake waiters on any event, and after any packet: a spurious
            // wake costs a lock; a missed one is a hang.
            let mut events = input;
            while let Some(ev) = g.conn.poll_event() {
                events = true;
                match ev {
                    Event::Connected => tracing::debug!("connected"),
                    Event::StateChanged(st) => tracing::debug!(state = %st, "state"),
                    Event::Closed(reason) if reason.is_normal() => {
                        tracing::debug!(%reason, "session ended")
                    }
                    Event::Closed(reason) => tracing::info!(%reason, "session ended"),
                    _ => {}
                }
            }
            let done = g.conn.is_drained();
            if events || done {
                g.wake_all();
            }
            (events, done)
        };
        // Hand over what the transport takes without waiting; the first
        // packet it does not take becomes the `handed_over` branch.
        while sending.is_none() {
            let Some(tx) = queue.pop_front() else { break };
            let mut f = shared.transport.publish(&tx.dest, tx.payload);
            match (&mut f).now_or_never() {
                Some(Ok(())) => {}
                Some(Err(e)) => publish_failed(&shared, e),
                None => {
                    sending = Some(Handover {
                        publish: f,
                        since: now(),
                        dest: tx.dest,
                    })
                }
            }
        }
        {
            let mut g = shared.lock();
            let unsent = queue.len() + sending.is_some() as usize;
            if g.unsent != unsent {
                let was = g.unsent;
                g.unsent = unsent;
                if unsent == 0 && was > 0 {
                    // close() may be waiting for the last packets to leave.
                    g.wake_all();
                    drop(g);
                    shared.changed.notify_waiters();
                }
            }
        }
        if events {
            shared.changed.notify_waiters();
        }
        if done {
            // The last packets (a Fin's ack, a Reset) get a bounded chance;
            // a transport that still takes nothing cannot deliver them anyway.
            let last = async {
                if let Some(h) = sending.take() {
                    h.publish.await.ok();
                }
                for tx in queue.drain(..) {
                    shared.transport.publish(&tx.dest, tx.payload).await.ok();
                }
            };
            if tokio::time::timeout(FINAL_PUBLISH_BOUND, last)
                .await
                .is_err()
            {
                tracing::debug!(
                    "transport took no packets for {FINAL_PUBLISH_BOUND:?}; last packets dropped"
                );
            }
            let mut g = shared.lock();
            g.driver_done = true;
            g.wake_all();
            drop(g);
            shared.changed.notify_waiters();
            tracing::debug!("session driver finished");
            return;
        }
    }
}

/// A packet the transport did not take at once: the publish that waits,
/// since when, and where the packet goes.
struct Handover<'a> {
    publish: BoxFuture<'a, Result<(), TransportError>>,
    since: Instant,
    dest: Str,
}

/// The transport refused a packet: the session cannot go on.
/// Ends the session if the transport learnt that the server refuses our
/// inbox or the peer's (NATS permissions).
fn check_transport_denials(shared: &Shared) {
    let mut g = shared.lock();
    if g.conn.is_closed() {
        return;
    }
    let subjects = [
        g.conn.config().local_inbox().to_string(),
        g.conn.remote_inbox().to_string(),
    ];
    let denied = subjects
        .iter()
        .filter(|s| !s.is_empty())
        .find_map(|s| shared.transport.denied(s));
    if let Some(e) = denied {
        g.fail_on_transport(e, now());
    }
}

fn publish_failed(shared: &Shared, e: TransportError) {
    shared.lock().fail_on_transport(e, now());
}

fn poll_read_impl(
    shared: &Shared,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
) -> Poll<io::Result<()>> {
    let mut g = shared.lock();
    match g.conn.read(buf.initialize_unfilled()) {
        Ok(Recv::Data(n)) => {
            buf.advance(n);
            drop(g);
            shared.nudge();
            Poll::Ready(Ok(()))
        }
        Ok(Recv::Finished) => Poll::Ready(Ok(())),
        Ok(Recv::Blocked) => match g.failure() {
            Some(e) => Poll::Ready(Err(e.into())),
            None => {
                g.park(cx.waker());
                Poll::Pending
            }
        },
        Err(e) => Poll::Ready(Err(SessionError::from(e).into())),
    }
}

fn poll_write_impl(shared: &Shared, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
    if buf.is_empty() {
        return Poll::Ready(Ok(0));
    }
    let mut g = shared.lock();
    match g.conn.write(buf) {
        Ok(0) => match g.failure() {
            Some(e) => Poll::Ready(Err(e.into())),
            None => {
                g.park(cx.waker());
                Poll::Pending
            }
        },
        Ok(n) => {
            drop(g);
            shared.nudge();
            Poll::Ready(Ok(n))
        }
        Err(e) => Poll::Ready(Err(SessionError::from(e).into())),
    }
}

fn poll_flush_impl(shared: &Shared, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
    let mut g = shared.lock();
    if let Some(e) = g.failure() {
        return Poll::Ready(Err(e.into()));
    }
    if g.conn.bytes_acked() >= g.conn.bytes_written() {
        return Poll::Ready(Ok(()));
    }
    g.park(cx.waker());
    Poll::Pending
}

fn poll_shutdown_impl(shared: &Shared, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
    let mut g = shared.lock();
    if !g.shutdown_requested {
        g.shutdown_requested = true;
        g.conn.close(now());
        drop(g);
        shared.nudge();
        g = shared.lock();
    }
    if let Some(e) = g.failure() {
        return Poll::Ready(Err(e.into()));
    }
    if g.close_done() {
        return Poll::Ready(Ok(()));
    }
    g.park(cx.waker());
    Poll::Pending
}

impl AsyncRead for Session {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        poll_read_impl(&self.shared, cx, buf)
    }
}

impl AsyncWrite for Session {
    /// Returns once the bytes are accepted into the send buffer; waits (never
    /// spins) while it is full.
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        poll_write_impl(&self.shared, cx, buf)
    }
    /// Completes when everything written has been acknowledged by the peer.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        poll_flush_impl(&self.shared, cx)
    }
    /// Sends our Fin (after all data is acknowledged) and completes when the
    /// peer has acknowledged it. Reading goes on until the peer's Fin.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        poll_shutdown_impl(&self.shared, cx)
    }
}

/// The reading half of a [`Session`] (from [`Session::into_split`]).
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
/// # let net = SimNetwork::new(1, LinkConfig::new());
/// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
/// let (rd, _wr) = b.into_split();
/// a.send("to the read half").await?;
/// assert_eq!(rd.read_chunk(usize::MAX).await?.unwrap(), "to the read half");
/// # Ok(()) }
/// ```
pub struct ReadHalf {
    shared: Arc<Shared>,
    _guard: Arc<HandleGuard>,
}

/// The writing half of a [`Session`] (from [`Session::into_split`]).
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
/// # let net = SimNetwork::new(1, LinkConfig::new());
/// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
/// use tokio::io::AsyncWriteExt;
/// let (_rd, mut wr) = a.into_split();
/// wr.write_all(b"from the write half").await?;
/// wr.shutdown().await?;
/// assert_eq!(b.recv().await?.unwrap(), "from the write half");
/// # Ok(()) }
/// ```
pub struct WriteHalf {
    shared: Arc<Shared>,
    _guard: Arc<HandleGuard>,
}

impl std::fmt::Debug for ReadHalf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadHalf")
    }
}
impl std::fmt::Debug for WriteHalf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriteHalf")
    }
}

impl ReadHalf {
    /// Counters of the session.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
    /// let (rd, _wr) = b.into_split();
    /// a.send_and_wait("x").await?;
    /// assert_eq!(rd.stats().protocol.data_packets_received, 1);
    /// # Ok(()) }
    /// ```
    pub fn stats(&self) -> SessionStats {
        stats(&self.shared)
    }

    /// As [`Session::read_chunk`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
    /// let (rd, _wr) = b.into_split();
    /// a.send("chunk").await?;
    /// assert_eq!(rd.read_chunk(3).await?.unwrap(), "chu");
    /// # Ok(()) }
    /// ```
    pub async fn read_chunk(&self, max: usize) -> Result<Option<Bytes>, SessionError> {
        self.shared.read_chunk(max).await
    }

    /// As [`Session::recv`]: the next whole message, `None` at the peer's
    /// end of stream.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
    /// let (rd, _wr) = b.into_split();
    /// a.send("").await?; // a 0-byte message is a message
    /// a.send("two").await?;
    /// assert_eq!(rd.recv().await?.unwrap(), "");
    /// assert_eq!(rd.recv().await?.unwrap(), "two");
    /// a.close().await?;
    /// assert_eq!(rd.recv().await?, None);
    /// # Ok(()) }
    /// ```
    pub async fn recv(&self) -> Result<Option<Bytes>, SessionError> {
        self.shared.recv().await
    }

    /// As [`Session::recv_asap`]: the next message of the peer's
    /// unreliable side channel, `None` once the session has ended.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "").asap(Some(8))).await?;
    /// let (rd, _wr) = b.into_split();
    /// a.close().await?;
    /// assert_eq!(rd.recv_asap().await, None); // ended, nothing was sent
    /// # Ok(()) }
    /// ```
    pub async fn recv_asap(&self) -> Option<Bytes> {
        self.shared.recv_asap().await
    }

    /// As [`Session::abort_with`]: ends the session at once and tells the
    /// peer why (a Reset carrying `reason`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
    /// let (rd, _wr) = b.into_split();
    /// rd.abort_with("reader gave up");
    /// let err = a.recv().await.unwrap_err();
    /// assert!(err.to_string().contains("reader gave up"), "{err}");
    /// # Ok(()) }
    /// ```
    pub fn abort_with(&self, reason: impl AsRef<str>) {
        abort_with(&self.shared, reason.as_ref());
    }
}

impl WriteHalf {
    /// Counters of the session.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
    /// use tokio::io::AsyncWriteExt;
    /// let (_rd, mut wr) = a.into_split();
    /// wr.write_all(b"x").await?;
    /// wr.flush().await?; // waits for the peer's acknowledgement
    /// assert_eq!(wr.stats().protocol.app_bytes_acked, 1);
    /// # drop(b);
    /// # Ok(()) }
    /// ```
    pub fn stats(&self) -> SessionStats {
        stats(&self.shared)
    }

    /// As [`Session::send`]: queues one message, boundaries preserved.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
    /// let (_rd, wr) = a.into_split();
    /// let id = wr.send("one").await?;
    /// wr.wait_acked(id).await?;
    /// assert!(wr.is_acked(id));
    /// assert_eq!(b.recv().await?.unwrap(), "one");
    /// # Ok(()) }
    /// ```
    pub async fn send(&self, msg: impl Into<Bytes>) -> Result<MessageId, SessionError> {
        self.shared.send(msg.into()).await
    }

    /// As [`Session::send_and_wait`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
    /// let (_rd, wr) = a.into_split();
    /// wr.send_and_wait("acked").await?;
    /// assert_eq!(b.recv().await?.unwrap(), "acked");
    /// # Ok(()) }
    /// ```
    pub async fn send_and_wait(&self, msg: impl Into<Bytes>) -> Result<(), SessionError> {
        self.shared.send_and_wait(msg.into()).await
    }

    /// As [`Session::wait_acked`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
    /// let (_rd, wr) = a.into_split();
    /// let id = wr.send("x").await?;
    /// wr.wait_acked(id).await?;
    /// # drop(b);
    /// # Ok(()) }
    /// ```
    pub async fn wait_acked(&self, id: MessageId) -> Result<(), SessionError> {
        self.shared.wait_acked(id).await
    }

    /// As [`Session::is_acked`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
    /// let (_rd, wr) = a.into_split();
    /// let id = wr.send("x").await?;
    /// wr.flush_acked().await?;
    /// assert!(wr.is_acked(id));
    /// # drop(b);
    /// # Ok(()) }
    /// ```
    pub fn is_acked(&self, id: MessageId) -> bool {
        self.shared.lock().conn.is_acked(id)
    }

    /// As [`Session::flush_acked`]: waits until every byte and message
    /// written so far is acknowledged.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
    /// let (_rd, wr) = a.into_split();
    /// wr.send("a").await?;
    /// wr.send("b").await?;
    /// wr.flush_acked().await?;
    /// assert_eq!(wr.stats().protocol.app_bytes_acked, 2);
    /// # drop(b);
    /// # Ok(()) }
    /// ```
    pub async fn flush_acked(&self) -> Result<(), SessionError> {
        self.shared.flush_acked().await
    }

    /// As [`Session::abort_with`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
    /// let (_rd, wr) = a.into_split();
    /// wr.abort_with("writer gave up");
    /// let err = b.recv().await.unwrap_err();
    /// assert!(err.to_string().contains("writer gave up"), "{err}");
    /// # Ok(()) }
    /// ```
    pub fn abort_with(&self, reason: impl AsRef<str>) {
        abort_with(&self.shared, reason.as_ref());
    }
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        poll_read_impl(&self.shared, cx, buf)
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        poll_write_impl(&self.shared, cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        poll_flush_impl(&self.shared, cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        poll_shutdown_impl(&self.shared, cx)
    }
}

/// The message API, shared by [`Session`] and its halves.
impl Shared {
    async fn send(&self, msg: Bytes) -> Result<MessageId, SessionError> {
        let id = self
            .wait(|g| match g.conn.send_message(msg.clone()) {
                Ok(id) => Some(Ok(id)),
                Err(WriteError::Blocked) => g.failure().map(Err),
                Err(e) => Some(Err(SessionError::from(e))),
            })
            .await?;
        self.nudge();
        Ok(id)
    }

    async fn wait_acked(&self, id: MessageId) -> Result<(), SessionError> {
        self.wait(|g| {
            if g.conn.is_acked(id) {
                Some(Ok(()))
            } else if let Some(e) = g.failure() {
                Some(Err(e))
            } else if g.conn.is_closed() {
                Some(Err(SessionError::Closed(CloseReason::Normal)))
            } else {
                None
            }
        })
        .await
    }

    async fn recv(&self) -> Result<Option<Bytes>, SessionError> {
        let r = self
            .wait(|g| match g.conn.recv_message() {
                Ok(Recv::Data(m)) => Some(Ok(Some(m))),
                Ok(Recv::Finished) => Some(Ok(None)),
                Ok(Recv::Blocked) => g.failure().map(Err),
                Err(e) => Some(Err(SessionError::from(e))),
            })
            .await;
        self.nudge();
        r
    }

    async fn read_chunk(&self, max: usize) -> Result<Option<Bytes>, SessionError> {
        let r = self
            .wait(|g| match g.conn.read_chunk(max) {
                Ok(Recv::Data(b)) => Some(Ok(Some(b))),
                Ok(Recv::Finished) => Some(Ok(None)),
                Ok(Recv::Blocked) => g.failure().map(Err),
                Err(e) => Some(Err(SessionError::from(e))),
            })
            .await;
        self.nudge();
        r
    }

    async fn send_and_wait(&self, msg: Bytes) -> Result<(), SessionError> {
        let id = self.send(msg).await?;
        self.wait_acked(id).await
    }

    async fn recv_asap(&self) -> Option<Bytes> {
        self.wait(|g| match g.conn.poll_asap() {
            Some(b) => Some(Some(b)),
            None if g.conn.is_closed() || g.driver_done => Some(None),
            None => None,
        })
        .await
    }

    async fn flush_acked(&self) -> Result<(), SessionError> {
        let written = self.lock().conn.bytes_written();
        self.wait_acked(written).await
    }
}
