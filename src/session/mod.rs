//! The async session: a driver task around the sans-IO [`Connection`], and
//! the application's handles to it.
//!
//! One task per session, the driver, feeds arriving packets and expired
//! timers to the engine, publishes what the engine wants sent, and wakes
//! whoever waits (readers, writers, `flush`, message calls) when the engine
//! reports an event. Application calls lock the engine briefly, act, and
//! nudge the driver. Two shortcuts keep a request/answer exchange free of
//! hand-overs between tasks: a call that finds the session idle hands its
//! packets to the transport itself, and a reader that waits for an answer
//! takes arriving packets from the inbox itself (the driver is woken all
//! the same and does what follows input). Nothing busy-polls: a blocked
//! read or write parks until an event.
//!
//! Dropping every handle closes the session gracefully in the background
//! (data already written is still delivered); the driver gives up and aborts
//! after [`DROP_LINGER`] (or the dead-peer timeout, if longer), telling the
//! peer why. Nobody reads any more: bytes of the peer's left
//! unread or arriving later are discarded, and the session then resets
//! (once its own data is acknowledged), so the peer learns they were not
//! delivered instead of taking the acks for delivery. The subscription
//! ends with the driver.

mod abort;
mod driver;
mod error;
mod halves;
mod inbox;
mod shared;
mod stream;

pub use abort::AbortHandle;
pub use driver::SYN_RETRY_BACKOFF;
use driver::*;
pub use error::SessionError;
pub use halves::{ReadHalf, WriteHalf};
use shared::*;

use crate::proto::{CloseReason, Config, Connection, MessageId, State, Stats};
use crate::transport::{Incoming, Transport, TransportCounters};
use bytes::Bytes;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// How long a session whose handles were all dropped keeps delivering what
/// was written before it gives up and aborts, at least: a session whose
/// dead-peer timeout is longer lingers for that (an outage shorter than the
/// budget ends no close, docs/PROTOCOL.md §8). Its Reset tells the peer
/// what was missing ("you did not close your side", ...).
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

/// The least payload per packet a session accepts from its transport's
/// limit (after the largest header): below it, it refuses to start.
const MIN_PAYLOAD_CEILING: usize = 64;

/// How a session opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Open {
    /// Sends the Syn.
    Connect,
    /// Takes one Syn; a handshake that fails ends it (a service's session).
    Once,
    /// Takes Syns until one completes its handshake ([`Listener::accept`]).
    Listen,
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
    /// A handshake that fails does not end the wait, as a TCP listener's
    /// half-open connections do not: a client that stops answering after
    /// its Syn, or that took another listener's answer (two listening on
    /// one subject; logged as a warning), is let go, and the listener
    /// waits for the next Syn (docs/PROTOCOL.md §4).
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
        Session::start_with(self.transport, self.cfg, self.incoming, Open::Listen, None).await
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
/// assert_eq!(st.protocol.data.packets_sent, 1);
/// assert_eq!(st.protocol.app.bytes_acked, 7);
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

/// A reliable, ordered, flow-controlled session with a peer.
///
/// Bytes: [`AsyncRead`](tokio::io::AsyncRead) / [`AsyncWrite`](tokio::io::AsyncWrite) (works with `tokio::io::copy`).
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
    pub(in crate::session) shared: Arc<Shared>,
    pub(in crate::session) guard: Arc<HandleGuard>,
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
    /// configured attempts, and with [`TransportError::Subscribe`](crate::transport::TransportError::Subscribe) if the
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
        Self::start_connect(transport, cfg).await
    }

    /// Connects to a [`Service`](crate::Service) on `service_subject`: the
    /// session gets a private inbox from the transport (NATS: the client's
    /// `new_inbox()`, honouring its inbox prefix), sends its Syn to the
    /// service subject and continues with the private inbox the service
    /// answers from. Nobody subscribed to the subject: fails at once with
    /// [`TransportError::NoResponders`](crate::transport::TransportError::NoResponders)
    /// (on NATS). A service at its session limit: fails at once with
    /// [`CloseReason::Reset`] and [`ResetCode::Busy`](crate::proto::ResetCode::Busy).
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// use swp::transport::{NatsOptions, NatsTransport};
    /// use swp::{proto::Tuning, Session};
    /// let nats = NatsTransport::connect(NatsOptions::new("nats://127.0.0.1:4222")).await?;
    /// let s = Session::connect_to(nats, "files", Tuning::new()).await?;
    /// s.send("hello, service").await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_to(
        transport: Arc<dyn Transport>,
        service_subject: &str,
        tuning: crate::proto::Tuning,
    ) -> Result<Session, SessionError> {
        let inbox = transport.new_inbox().ok_or(SessionError::Transport(
            crate::transport::TransportError::Unsupported("create private inboxes"),
        ))?;
        let cfg = Config::to_service(inbox, service_subject).with_tuning(tuning);
        Self::start_connect(transport, cfg).await
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
    /// Fails with [`TransportError::Subscribe`](crate::transport::TransportError::Subscribe) if the transport cannot
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

    /// An active open on `cfg`'s local inbox, subscribed here.
    async fn start_connect(
        transport: Arc<dyn Transport>,
        cfg: Config,
    ) -> Result<Session, SessionError> {
        cfg.validate()?;
        let incoming = subscribe_within_connect_budget(transport.as_ref(), &cfg).await?;
        Self::start_with(transport, cfg, incoming, Open::Connect, None).await
    }

    /// Starts a session on an inbox already subscribed (`incoming`);
    /// `on_close` runs when it closes.
    pub(crate) async fn start_with(
        transport: Arc<dyn Transport>,
        cfg: Config,
        incoming: Incoming,
        open: Open,
        on_close: Option<shared::OnClose>,
    ) -> Result<Session, SessionError> {
        let t = now();
        let replay = transport.replay_seed();
        let seed: u64 = replay.unwrap_or_else(rand::random);
        // Every sealed session gets fresh handshake randomness of its own,
        // whatever the caller's Seal held (a Tuning may serve many).
        let mut cfg = cfg;
        if let Some(seal) = cfg.tuning.seal.take() {
            cfg.tuning.seal = Some(seal.with_entropy(crate::keys::fresh_entropy()));
        }
        let mut conn = match open {
            Open::Connect => Connection::connect(cfg, t, seed)?,
            Open::Once | Open::Listen => Connection::listen(cfg, t, seed)?,
        };
        // Every packet, at its largest header, fits the transport's limit:
        // a server whose max_payload leaves (almost) no room for data is
        // refused here, not by a failed publish in the middle of a transfer.
        let max_payload = transport.max_payload();
        conn.set_transport_max_payload(max_payload);
        if conn.payload_ceiling() < MIN_PAYLOAD_CEILING {
            let overhead = conn.largest_header();
            return Err(SessionError::Config(crate::proto::ConfigError(format!(
                "the transport carries at most {max_payload} bytes per message (the NATS server's \
                 max_payload), and a swp packet's header takes up to {overhead}: raise max_payload \
                 to at least {} (nats-server's `max_payload` setting; 1 MiB by default)",
                overhead + 1024
            ))));
        }
        if let Ok(wall) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            conn.set_wall_clock(t, wall.as_nanos() as i128);
        }
        let cap = transport.capacity();
        conn.set_transport_capacity(cap.packets, cap.bytes);
        conn.set_keep_listening(open == Open::Listen);
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
                discarded: 0,
                driver_done: false,
                on_close,
                unsent: 0,
                outbox: Default::default(),
                inbox: inbox::Inbox::new(incoming),
            }),
            driver: Notify::new(),
            changed: Notify::new(),
            transport,
            replayed: replay.is_some(),
        });
        tokio::spawn(tracing::Instrument::instrument(drive(shared.clone()), span));
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
    /// assert_eq!(a.stats().protocol.app.bytes_acked, 12);
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

    /// Waits until the session's driver has ended, or after an abort or a
    /// failure, once the first Reset telling the peer was handed to the
    /// transport (the session may linger to repeat it while the program
    /// runs); after a graceful close, once the close is complete on
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
        wait_closed(&self.shared).await
    }

    /// Resolves once the session has failed (a Reset, a dead peer, its
    /// transport), with the error a blocked call would return; never
    /// after a normal close. For a caller blocked on something else (a
    /// slow output) that must still hear at once that the peer failed.
    pub(crate) async fn failed(&self) -> SessionError {
        self.shared.wait(|g| g.failure()).await
    }

    /// Whether this session runs over a simulation that replays from a
    /// seed ([`Transport::replay_seed`]): the file layer then runs its
    /// blocking jobs in line.
    pub(crate) fn replayed(&self) -> bool {
        self.shared.replayed
    }

    /// A handle that aborts this session from elsewhere (a signal handler)
    /// without keeping it open: [`AbortHandle`].
    pub fn abort_handle(&self) -> AbortHandle {
        AbortHandle {
            shared: Arc::downgrade(&self.shared),
        }
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
    /// assert_eq!(a.stats().protocol.data.packets_sent, 1);
    /// assert_eq!(b.stats().protocol.data.packets_received, 1);
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
    /// assert!(matches!(a.close_reason(), Some(CloseReason::Aborted { .. })));
    /// # drop(b);
    /// # Ok(()) }
    /// ```
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.shared.lock().conn.close_reason().cloned()
    }

    /// The inbox this session receives on (for a service's session or a
    /// [`connect_to`](Self::connect_to) client: its private inbox).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
    /// assert_eq!(a.local_inbox(), "a");
    /// # Ok(()) }
    /// ```
    pub fn local_inbox(&self) -> String {
        self.shared.lock().conn.config().local_inbox().to_string()
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

    /// The largest message [`send`](Self::send) accepts: it must fit the
    /// peer's whole receive window (and our send buffer); a larger one is
    /// refused with [`WriteError::TooLarge`](crate::proto::WriteError::TooLarge).
    /// `None` before the handshake told it (not for an established session).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
    /// let most = a.max_message_size().unwrap();
    /// assert!(a.send(vec![0u8; most as usize + 1]).await.is_err());
    /// a.send(vec![0u8; most as usize]).await?;
    /// assert_eq!(b.recv().await?.unwrap().len() as u64, most);
    /// # Ok(()) }
    /// ```
    pub fn max_message_size(&self) -> Option<u64> {
        self.shared.lock().conn.max_message_size()
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

    /// Whether the session is sealed (docs/PROTOCOL.md §14).
    pub fn is_sealed(&self) -> bool {
        self.shared.lock().conn.is_sealed()
    }

    /// The peer's static public key, as the sealed handshake proved it
    /// (`None` for a plain session or one sealed with a pre-shared secret
    /// only). A service that allows many clients tells them apart by it.
    pub fn peer_public_key(&self) -> Option<crate::proto::seal::PublicKey> {
        self.shared.lock().conn.peer_public_key().copied()
    }
}

/// [`Session::wait_closed`], for the session's shared state.
async fn wait_closed(shared: &Shared) {
    // An aborted session lingers to repeat its Reset to a peer that did
    // not hear it (docs/PROTOCOL.md §7.3); a program about to exit need
    // not wait for that: the first Reset has left.
    shared
        .wait(|g| {
            let told = g.conn.is_closed() && g.conn.reset_told() && g.unsent == 0;
            (g.driver_done || told).then_some(())
        })
        .await
}
