//! Session configuration: where a session talks ([`Config`]: its inbox and
//! the peer's) apart from how its engine behaves ([`Tuning`]: windows,
//! timers, budgets), so one `Tuning` serves many sessions (a listener's, a
//! client's pool) while each has its own addresses. Private fields,
//! chainable setters, and one `Default` in which every value says why it
//! was chosen.

use super::codec::WireFormat;
use std::time::Duration;

/// How a session's protocol engine behaves: windows, timers, budgets. Cheap
/// to clone; one value can tune many sessions.
///
/// ```
/// use swp::proto::Config;
/// use std::time::Duration;
/// use swp::proto::Tuning;
/// let tuning = Tuning::new()
///     .window(64, 8 << 20)
///     .keepalive(Duration::from_millis(500), 10);
/// assert_eq!(tuning.window_packets(), 64);
/// // The same tuning for two sessions with addresses of their own.
/// let a = Config::new("a.inbox", "server").with_tuning(tuning.clone());
/// let b = Config::new("b.inbox", "server").with_tuning(tuning);
/// assert_eq!(a.tuning(), b.tuning());
/// assert!(a.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Tuning {
    pub(crate) max_payload: usize,
    pub(crate) window_packets: u64,
    pub(crate) window_bytes: u64,
    pub(crate) send_buffer_bytes: u64,
    pub(crate) reserve_packets: u64,
    pub(crate) reserve_bytes: u64,
    pub(crate) initial_rto: Duration,
    pub(crate) min_rto: Duration,
    pub(crate) max_rto: Duration,
    pub(crate) max_retransmits: u32,
    pub(crate) term: Option<(usize, Duration)>,
    pub(crate) connect_timeout: Duration,
    pub(crate) connect_attempts: u32,
    pub(crate) keepalive_interval: Duration,
    pub(crate) keepalive_failures: Option<u32>,
    pub(crate) max_ack_delay: Duration,
    pub(crate) ack_frequency: u32,
    pub(crate) close_linger: Duration,
    pub(crate) asap_limit: Option<usize>,
    pub(crate) wire_format: WireFormat,
    pub(crate) batch_messages: bool,
    pub(crate) go_peer_buffer: u64,
    pub(crate) go_peer_buffer_learns: bool,
    /// `max_payload` was chosen by the application: with a Go peer the
    /// packet size then stays as chosen instead of following the learned
    /// buffer (§13.2).
    pub(crate) max_payload_set: bool,
    pub(crate) seal: Option<super::seal::Seal>,
}

impl Tuning {
    /// The defaults below.
    ///
    /// Defaults, and why:
    /// * max payload 63 KiB: large enough that per-packet costs vanish, small
    ///   enough that a loss retransmits little; under NATS's 1 MiB default.
    ///   Not 64 KiB: a 63 KiB packet with its headers and NATS framing fits
    ///   the async-nats client's 64 KiB read buffer. A larger one makes the
    ///   client grow and copy that buffer for every packet while swp still
    ///   holds earlier ones (measured: ~15% less CPU per byte at 63 KiB).
    /// * window 1024 packets / 16 MiB: 16 MiB covers the bandwidth-delay
    ///   product of a ~8 Gbit/s path at 2 ms RTT and bounds receiver memory.
    /// * send buffer 16 MiB: enough to keep a full window in flight.
    /// * reserve 64 packets / 1 MiB of the transport's capacity for control
    ///   packets (acks, keepalives), so they are never crowded out by data.
    /// * initial RTO 500 ms (as go-swp), min 10 ms, max 10 s. TCP's 200 ms
    ///   floor allows for 200 ms delayed acks; here acks are delayed at most
    ///   1 ms and are immediate at the end of a burst, and an RTO re-sends a
    ///   single packet, so a spurious one costs one packet, while a high floor
    ///   would stall a loss at the tail of a transfer for many RTTs.
    /// * 12 retransmission timeouts without progress end the session
    ///   (with backoff that is well over a minute of silence).
    /// * connect: 5 attempts, per-attempt timeout up to 2 s (backoff from the
    ///   initial RTO), so an absent peer is reported within about 8 s.
    /// * keepalive every 1 s; 10 silent intervals mean the peer is gone.
    /// * ack at once every 2nd packet, else after at most 1 ms.
    /// * linger 2 s after close to re-acknowledge a retransmitted Fin.
    /// * native wire format; a listener still answers a Go peer in Go's.
    /// * at most 512 KiB unread at a Go receiver at first, whatever it
    ///   advertises, and more as the receiver shows it holds more (see
    ///   [`go_peer_buffer`](Self::go_peer_buffer)).
    /// * message batching on: messages that queue up while packets are
    ///   going out travel several to a packet (never delayed to wait for
    ///   company), which multiplies small-message throughput.
    ///
    /// ```
    /// use swp::proto::Tuning;
    /// use std::time::Duration;
    /// let cfg = Tuning::new();
    /// assert_eq!(cfg.max_payload_bytes(), 63 * 1024);
    /// assert_eq!((cfg.window_packets(), cfg.window_bytes()), (1024, 16 << 20));
    /// assert_eq!(cfg.dead_peer_budget(), Some(Duration::from_secs(10)));
    /// assert!(cfg.batches_messages());
    /// ```
    pub fn new() -> Self {
        Tuning {
            max_payload: 63 * 1024,
            window_packets: 1024,
            window_bytes: 16 << 20,
            send_buffer_bytes: 16 << 20,
            reserve_packets: 64,
            reserve_bytes: 1 << 20,
            initial_rto: Duration::from_millis(500),
            min_rto: Duration::from_millis(10),
            max_rto: Duration::from_secs(10),
            max_retransmits: 12,
            term: None,
            connect_timeout: Duration::from_secs(2),
            connect_attempts: 5,
            keepalive_interval: Duration::from_secs(1),
            keepalive_failures: Some(10),
            max_ack_delay: Duration::from_millis(1),
            ack_frequency: 2,
            close_linger: Duration::from_secs(2),
            asap_limit: None,
            wire_format: WireFormat::Native,
            batch_messages: true,
            go_peer_buffer: super::go::link::GO_PEER_BUFFER,
            go_peer_buffer_learns: true,
            max_payload_set: false,
            seal: None,
        }
    }

    /// Largest data payload per packet, in bytes (default 63 KiB; a
    /// session lowers it to what its server's `max_payload` carries).
    ///
    /// With a go-sliding-window peer a size set here is kept (at most the
    /// peer buffer's starting size, [`Tuning::go_peer_buffer`]); left
    /// unset, packets there follow the buffer learned at the Go receiver,
    /// 64 KiB growing to 512 KiB (docs/PROTOCOL.md §13.2).
    ///
    /// ```
    /// use swp::proto::Tuning;
    /// use std::time::Duration;
    /// let cfg = Tuning::new().max_payload(512 * 1024);
    /// assert_eq!(cfg.max_payload_bytes(), 512 * 1024);
    /// // The window must hold at least one packet.
    /// assert!(cfg.clone().window(64, 256 * 1024).validate().is_err());
    /// ```
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = bytes.max(1);
        self.max_payload_set = true;
        self
    }
    /// Receive window: at most `packets` data packets and `bytes` payload
    /// bytes held for the application (received, not yet read).
    ///
    /// ```
    /// use swp::proto::Tuning;
    /// use std::time::Duration;
    /// let cfg = Tuning::new().window(64, 4 << 20);
    /// assert_eq!((cfg.window_packets(), cfg.window_bytes()), (64, 4 << 20));
    /// ```
    pub fn window(mut self, packets: u64, bytes: u64) -> Self {
        self.window_packets = packets.max(1);
        self.window_bytes = bytes.max(1);
        self
    }
    /// Most payload bytes buffered on the sending side (queued + unacked).
    ///
    /// ```
    /// use swp::proto::Tuning;
    /// use std::time::Duration;
    /// let cfg = Tuning::new().send_buffer(1 << 20);
    /// assert!(cfg.validate().is_ok());
    /// assert!(Tuning::new().send_buffer(1000).validate().is_err()); // < one packet
    /// ```
    pub fn send_buffer(mut self, bytes: u64) -> Self {
        self.send_buffer_bytes = bytes.max(1);
        self
    }
    /// Transport capacity kept free for control packets (keepalives,
    /// window updates, probes); what is left of a transport's capacity is
    /// shared between the peer's data and the acks of our flight
    /// (docs/PROTOCOL.md §6).
    ///
    /// ```
    /// use swp::proto::Tuning;
    /// use std::time::Duration;
    /// // Keep 16 messages and 256 KiB of the inbox for acks and keepalives.
    /// let cfg = Tuning::new().reserve(16, 256 * 1024);
    /// assert!(cfg.validate().is_ok());
    /// ```
    pub fn reserve(mut self, packets: u64, bytes: u64) -> Self {
        self.reserve_packets = packets;
        self.reserve_bytes = bytes;
        self
    }
    /// RTO before the first RTT sample, and its bounds.
    ///
    /// ```
    /// use swp::proto::Tuning;
    /// use std::time::Duration;
    /// let cfg = Tuning::new().rto(
    ///     Duration::from_millis(200), // before any RTT sample
    ///     Duration::from_millis(5),   // floor
    ///     Duration::from_secs(5),     // ceiling
    /// );
    /// assert!(cfg.validate().is_ok());
    /// assert!(Tuning::new().rto(Duration::ZERO, Duration::ZERO, Duration::ZERO).validate().is_err());
    /// ```
    pub fn rto(mut self, initial: Duration, min: Duration, max: Duration) -> Self {
        self.initial_rto = initial;
        self.min_rto = min;
        self.max_rto = max.max(min);
        self
    }
    /// Consecutive retransmission timeouts (without any progress) after
    /// which the session fails.
    ///
    /// ```
    /// use swp::proto::Tuning;
    /// use std::time::Duration;
    /// // Give up after 5 timeouts in a row with no progress.
    /// let cfg = Tuning::new().max_retransmits(5);
    /// assert!(cfg.validate().is_ok());
    /// ```
    pub fn max_retransmits(mut self, n: u32) -> Self {
        self.max_retransmits = n.max(1);
        self
    }
    /// Go's TermConfig: fail the session if `limit` retransmission timeouts
    /// happen within `window`. `None` disables (the default).
    ///
    /// ```
    /// use swp::proto::Tuning;
    /// use std::time::Duration;
    /// // As go-swp's TermConfig: 3 timeouts within 10 s end the session.
    /// let cfg = Tuning::new().termination(Some((3, Duration::from_secs(10))));
    /// assert!(cfg.validate().is_ok());
    /// ```
    pub fn termination(mut self, rule: Option<(usize, Duration)>) -> Self {
        self.term = rule.filter(|(n, _)| *n > 0);
        self
    }
    /// Handshake: per-attempt timeout (the cap of the backoff) and attempts.
    ///
    /// ```
    /// use swp::proto::Tuning;
    /// use std::time::Duration;
    /// // Up to 3 handshake attempts, each waiting at most 1 s.
    /// let cfg = Tuning::new().connect(Duration::from_secs(1), 3);
    /// assert!(cfg.validate().is_ok());
    /// ```
    pub fn connect(mut self, timeout: Duration, attempts: u32) -> Self {
        self.connect_timeout = timeout;
        self.connect_attempts = attempts.max(1);
        self
    }
    /// Keepalive interval, and how many intervals of silence from the peer
    /// close the session: `Some(n)` (or just `n`), or `None` to disable
    /// dead-peer detection (the session then waits for its peer for ever
    /// unless the application closes it). `Some(0)` is refused by
    /// [`Config::validate`]. The async session applies the same budget to
    /// its own transport: one that takes no packet for that long (a NATS
    /// client stuck reconnecting) ends the session too.
    ///
    /// ```
    /// use swp::proto::Tuning;
    /// use std::time::Duration;
    /// let cfg = Tuning::new().keepalive(Duration::from_millis(500), 6);
    /// assert_eq!(cfg.dead_peer_budget(), Some(Duration::from_secs(3)));
    /// let never = Tuning::new().keepalive(Duration::from_secs(1), None);
    /// assert_eq!(never.dead_peer_budget(), None);
    /// assert!(Tuning::new().keepalive(Duration::from_secs(1), 0).validate().is_err());
    /// ```
    pub fn keepalive(mut self, interval: Duration, failures: impl Into<Option<u32>>) -> Self {
        self.keepalive_interval = interval.max(Duration::from_millis(1));
        self.keepalive_failures = failures.into();
        self
    }
    /// Delayed acks: ack at once every `frequency` packets, else within `delay`.
    ///
    /// ```
    /// use swp::proto::Tuning;
    /// use std::time::Duration;
    /// // Ack every 4th packet at once, others within 5 ms.
    /// let cfg = Tuning::new().ack_policy(Duration::from_millis(5), 4);
    /// assert!(cfg.validate().is_ok());
    /// ```
    pub fn ack_policy(mut self, delay: Duration, frequency: u32) -> Self {
        self.max_ack_delay = delay;
        self.ack_frequency = frequency.max(1);
        self
    }
    /// How long a closed session keeps answering a retransmitted Fin.
    ///
    /// ```
    /// use swp::proto::Tuning;
    /// use std::time::Duration;
    /// let cfg = Tuning::new().close_linger(Duration::from_millis(500));
    /// assert!(cfg.validate().is_ok());
    /// ```
    pub fn close_linger(mut self, d: Duration) -> Self {
        self.close_linger = d;
        self
    }
    /// Enables as-soon-as-possible delivery: every data packet as it arrives
    /// (unordered, possibly duplicated; a batch packet as its messages),
    /// keeping at most `limit`.
    ///
    /// ```
    /// use swp::proto::Tuning;
    /// use std::time::Duration;
    /// let cfg = Tuning::new().asap(Some(1000));
    /// assert!(cfg.validate().is_ok());
    /// // Some(0) means off, as None does.
    /// assert_eq!(Tuning::new().asap(Some(0)), Tuning::new());
    /// ```
    pub fn asap(mut self, limit: Option<usize>) -> Self {
        self.asap_limit = limit.filter(|l| *l > 0);
        self
    }
    /// The wire format to speak: [`WireFormat::Go`] to connect to (or
    /// listen only for) go-sliding-window peers. A `Native` listener still
    /// answers a Go peer in Go's format.
    ///
    /// ```
    /// use swp::proto::{Config, WireFormat};
    /// let cfg = Config::new("me", "go.peer").wire_format(WireFormat::Go);
    /// assert_eq!(cfg.format(), WireFormat::Go);
    /// ```
    pub fn wire_format(mut self, format: WireFormat) -> Self {
        self.wire_format = format;
        self
    }
    /// Whether messages that queue up behind each other may be sent several
    /// to a packet (docs/PROTOCOL.md §2.4; default on). A message is never
    /// held back to wait for others: only what is already queued when a
    /// packet goes out is packed. Used only when the peer announced that it
    /// accepts batches, never with a Go peer. Turn it off to have exactly
    /// one message per data packet.
    ///
    /// ```
    /// use swp::proto::Tuning;
    /// let cfg = Tuning::new().batch_messages(false);
    /// assert!(!cfg.batches_messages());
    /// ```
    pub fn batch_messages(mut self, on: bool) -> Self {
        self.batch_messages = on;
        self
    }
    /// With a Go peer: the most data left unread at its end, fixed at
    /// `bytes` (at least one byte), whatever window it advertises.
    ///
    /// By default (without this call) the size is learned: it starts at
    /// 512 KiB and doubles each time a full buffer's worth was acknowledged
    /// without a loss while the buffer held the sender back; the first
    /// loss after a doubling takes it back to the last size that passed,
    /// for the rest of the session. Packets are never larger than the
    /// starting size and, unless [`Tuning::max_payload`] was set, follow
    /// the buffer: an eighth of the start, or a sixteenth of the buffer
    /// once that is more (docs/PROTOCOL.md §13.2). Why: a Go
    /// receiver advertises its session window (about 10 MB by default), but
    /// the go-sliding-window helpers that set up a receiving stream
    /// (`SetupRecvStream`, its example receiver) then cap the NATS
    /// subscription at 600,000 pending bytes, and the client drops what
    /// does not fit as a slow consumer; a receiver made with `NewSession`
    /// alone holds its window. Learning costs the first kind one timeout
    /// per session and gives the second its speed (docs/BENCHMARKS.md).
    /// Fix the size when the receiver is known. Not used with native
    /// peers, whose window is their real buffer.
    ///
    /// ```
    /// use swp::proto::Tuning;
    /// let learned = Tuning::new();
    /// assert!(learned.learns_go_peer_buffer());
    /// assert_eq!(learned.go_peer_buffer_bytes(), 512 * 1024); // where it starts
    /// let fixed = Tuning::new().go_peer_buffer(8 << 20);
    /// assert!(!fixed.learns_go_peer_buffer());
    /// assert_eq!(fixed.go_peer_buffer_bytes(), 8 << 20);
    /// ```
    pub fn go_peer_buffer(mut self, bytes: u64) -> Self {
        self.go_peer_buffer = bytes.max(1);
        self.go_peer_buffer_learns = false;
        self
    }
    /// The most data left unread at a Go receiver: fixed, or where
    /// learning starts.
    ///
    /// ```
    /// use swp::proto::Tuning;
    /// assert_eq!(Tuning::new().go_peer_buffer(0).go_peer_buffer_bytes(), 1);
    /// ```
    pub fn go_peer_buffer_bytes(&self) -> u64 {
        self.go_peer_buffer
    }
    /// Whether the data left unread at a Go receiver is learned (the
    /// default) rather than fixed by [`go_peer_buffer`](Self::go_peer_buffer).
    ///
    /// ```
    /// use swp::proto::Tuning;
    /// assert!(Tuning::new().learns_go_peer_buffer());
    /// assert!(!Tuning::new().go_peer_buffer(512 * 1024).learns_go_peer_buffer());
    /// ```
    pub fn learns_go_peer_buffer(&self) -> bool {
        self.go_peer_buffer_learns
    }
    /// Whether message batching is allowed.
    ///
    /// ```
    /// use swp::proto::Tuning;
    /// assert!(Tuning::new().batches_messages());
    /// ```
    pub fn batches_messages(&self) -> bool {
        self.batch_messages
    }
    /// Seals the session (docs/PROTOCOL.md §14): a Noise handshake in the
    /// Syn / SynAck, then every packet authenticated and encrypted. A sealed
    /// side never talks plain: a sealed listener refuses plain clients, a
    /// sealed client fails rather than fall back. Native format only.
    ///
    /// ```
    /// use swp::proto::{seal::Seal, Tuning};
    /// let t = Tuning::new().seal(Seal::psk([9; 32]));
    /// assert!(t.sealing().is_some() && Tuning::new().sealing().is_none());
    /// ```
    pub fn seal(mut self, seal: super::seal::Seal) -> Self {
        self.seal = Some(seal);
        self
    }
    /// The seal, if the session is sealed.
    pub fn sealing(&self) -> Option<&super::seal::Seal> {
        self.seal.as_ref()
    }
    /// The configured wire format.
    ///
    /// ```
    /// use swp::proto::{Tuning, WireFormat};
    /// assert_eq!(Tuning::new().format(), WireFormat::Native);
    /// ```
    pub fn format(&self) -> WireFormat {
        self.wire_format
    }
    /// Receive window in packets.
    ///
    /// ```
    /// use swp::proto::Tuning;
    /// assert_eq!(Tuning::new().window(8, 1 << 20).window_packets(), 8);
    /// ```
    pub fn window_packets(&self) -> u64 {
        self.window_packets
    }
    /// Receive window in bytes.
    ///
    /// ```
    /// use swp::proto::Tuning;
    /// assert_eq!(Tuning::new().window(8, 1 << 20).window_bytes(), 1 << 20);
    /// ```
    pub fn window_bytes(&self) -> u64 {
        self.window_bytes
    }
    /// Largest payload per packet.
    ///
    /// ```
    /// use swp::proto::Tuning;
    /// assert_eq!(Tuning::new().max_payload(4096).max_payload_bytes(), 4096);
    /// ```
    pub fn max_payload_bytes(&self) -> usize {
        self.max_payload
    }
    /// Keepalive interval.
    ///
    /// ```
    /// use swp::proto::Tuning;
    /// use std::time::Duration;
    /// let cfg = Tuning::new().keepalive(Duration::from_millis(250), 4);
    /// assert_eq!(cfg.keepalive_interval(), Duration::from_millis(250));
    /// ```
    pub fn keepalive_interval(&self) -> Duration {
        self.keepalive_interval
    }
    /// Dead-peer budget: interval × failures, or `None` when disabled.
    ///
    /// ```
    /// use swp::proto::Tuning;
    /// use std::time::Duration;
    /// let cfg = Tuning::new().keepalive(Duration::from_secs(2), 5);
    /// assert_eq!(cfg.dead_peer_budget(), Some(Duration::from_secs(10)));
    /// ```
    pub fn dead_peer_budget(&self) -> Option<Duration> {
        self.keepalive_failures
            .filter(|&n| n > 0)
            .map(|n| self.keepalive_interval.saturating_mul(n))
    }

    /// Checks for values that cannot work.
    ///
    /// ```
    /// use swp::proto::Tuning;
    /// assert!(Tuning::new().validate().is_ok());
    /// let err = Tuning::new().window(1, 100).validate().unwrap_err();
    /// assert!(err.to_string().contains("smaller than one packet"));
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.window_bytes < self.max_payload as u64 {
            return Err(ConfigError::new(
                "window in bytes is smaller than one packet's payload: raise the window or lower max_payload",
            ));
        }
        if self.send_buffer_bytes < self.max_payload as u64 {
            return Err(ConfigError::new(
                "send buffer is smaller than one packet's payload",
            ));
        }
        if self.min_rto.is_zero() {
            return Err(ConfigError::new("min RTO must be positive"));
        }
        if self.seal.is_some() && self.max_payload > super::seal::MAX_SEALED_PAYLOAD {
            return Err(ConfigError::new(
                "a sealed session carries at most 63 KiB per packet (a Noise message is at most 64 KiB): lower max_payload",
            ));
        }
        if self.seal.is_some() && self.wire_format == WireFormat::Go {
            return Err(ConfigError::new(
                "go-sliding-window has no sealed sessions: a sealed session needs the native format",
            ));
        }
        if self.keepalive_failures == Some(0) {
            return Err(ConfigError::new(
                "keepalive failures is 0, which would end every session at once: \
                 use at least 1, or None to disable dead-peer detection",
            ));
        }
        Ok(())
    }
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning::new()
    }
}

/// One session's configuration: its addresses (the inbox it receives on
/// and the peer's) and its engine's [`Tuning`].
///
/// The tuning setters are on [`Tuning`]; `Config` forwards each of them so
/// a one-off session reads as one chain.
///
/// ```
/// use swp::proto::{Config, Tuning};
/// use std::time::Duration;
/// let cfg = Config::new("me.inbox", "peer.inbox")
///     .window(64, 8 << 20)
///     .keepalive(Duration::from_millis(500), 10);
/// assert_eq!(cfg.window_packets(), 64);
/// assert_eq!(cfg.tuning(), &Tuning::new().window(64, 8 << 20).keepalive(Duration::from_millis(500), 10));
/// assert!(cfg.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub(crate) local_inbox: String,
    pub(crate) remote_inbox: String,
    /// `remote_inbox` is a service subject: the session continues with the
    /// inbox that answers the Syn (docs/PROTOCOL.md §4.1).
    pub(crate) service_client: bool,
    /// A service's per-client session: it exists for one Syn, and ends if
    /// it refuses that Syn (a sealed handshake that did not verify).
    pub(crate) one_syn: bool,
    pub(crate) tuning: Tuning,
}

/// Forwards `Tuning`'s chainable setters, so `Config::new(..).window(..)`
/// reads as one chain.
macro_rules! forward_setters {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {
        $(
            #[doc = concat!("Sets [`Tuning::", stringify!($name), "`] (see there).")]
            pub fn $name(mut self, $($arg: $ty),*) -> Self {
                self.tuning = self.tuning.$name($($arg),*);
                self
            }
        )*
    };
}

/// Forwards `Tuning`'s getters.
macro_rules! forward_getters {
    ($($name:ident -> $ret:ty;)*) => {
        $(
            #[doc = concat!("[`Tuning::", stringify!($name), "`] of this session's tuning.")]
            pub fn $name(&self) -> $ret {
                self.tuning.$name()
            }
        )*
    };
}

impl Config {
    /// A session listening on `local_inbox` and talking to `remote_inbox`,
    /// with the default [`Tuning`]. For a passive (listening) session
    /// `remote_inbox` may be empty: it is learnt from the first Syn.
    ///
    /// ```
    /// use swp::proto::{Config, Tuning};
    /// let cfg = Config::new("svc.client", "svc.server");
    /// assert_eq!(cfg.tuning(), &Tuning::default());
    /// ```
    pub fn new(local_inbox: impl Into<String>, remote_inbox: impl Into<String>) -> Self {
        Config {
            local_inbox: local_inbox.into(),
            remote_inbox: remote_inbox.into(),
            service_client: false,
            one_syn: false,
            tuning: Tuning::new(),
        }
    }

    /// A client of a service: the Syn goes to `service_subject`, which a
    /// [`Service`](crate::Service) (or several, in a queue group) listens
    /// on; the session then runs between `local_inbox` and the private
    /// inbox the service answers from (docs/PROTOCOL.md §4.1). With a NATS
    /// transport, a Syn that reaches no subscriber ends the connect at once
    /// ("no responders") instead of after the handshake budget.
    ///
    /// ```
    /// use swp::proto::Config;
    /// let cfg = Config::to_service("_INBOX.me", "files");
    /// assert!(cfg.is_service_client());
    /// assert_eq!(cfg.remote_inbox(), "files");
    /// assert!(!Config::new("_INBOX.me", "files").is_service_client());
    /// ```
    pub fn to_service(local_inbox: impl Into<String>, service_subject: impl Into<String>) -> Self {
        Config {
            service_client: true,
            ..Config::new(local_inbox, service_subject)
        }
    }

    /// Whether the destination is a service subject ([`to_service`](Self::to_service)).
    pub fn is_service_client(&self) -> bool {
        self.service_client
    }

    /// Replaces the tuning (e.g. one shared by many sessions).
    ///
    /// ```
    /// use swp::proto::{Config, Tuning};
    /// let small = Tuning::new().window(16, 1 << 20);
    /// assert_eq!(Config::new("a", "b").with_tuning(small).window_packets(), 16);
    /// ```
    pub fn with_tuning(mut self, tuning: Tuning) -> Self {
        self.tuning = tuning;
        self
    }

    /// This session's tuning.
    ///
    /// ```
    /// use swp::proto::Config;
    /// let cfg = Config::new("a", "b").window(16, 1 << 20);
    /// assert_eq!(cfg.tuning().window_packets(), 16);
    /// ```
    pub fn tuning(&self) -> &Tuning {
        &self.tuning
    }

    /// The inbox this session receives on.
    ///
    /// ```
    /// use swp::proto::Config;
    /// use std::time::Duration;
    /// assert_eq!(Config::new("me", "peer").local_inbox(), "me");
    /// ```
    pub fn local_inbox(&self) -> &str {
        &self.local_inbox
    }
    /// The peer's inbox ("" for a listener that has not heard a Syn).
    ///
    /// ```
    /// use swp::proto::Config;
    /// use std::time::Duration;
    /// assert_eq!(Config::new("me", "peer").remote_inbox(), "peer");
    /// assert_eq!(Config::new("listener", "").remote_inbox(), "");
    /// ```
    pub fn remote_inbox(&self) -> &str {
        &self.remote_inbox
    }
    /// Sets the peer's inbox.
    ///
    /// ```
    /// use swp::proto::Config;
    /// use std::time::Duration;
    /// let mut cfg = Config::new("me", "");
    /// cfg.set_remote_inbox("peer");
    /// assert_eq!(cfg.remote_inbox(), "peer");
    /// ```
    pub fn set_remote_inbox(&mut self, inbox: impl Into<String>) {
        self.remote_inbox = inbox.into();
    }
    /// Checks the addresses and the tuning for values that cannot work.
    ///
    /// ```
    /// use swp::proto::Config;
    /// assert!(Config::new("me", "peer").validate().is_ok());
    /// let err = Config::new("", "peer").validate().unwrap_err();
    /// assert!(err.to_string().contains("local inbox is empty"));
    /// let err = Config::new("me", "me").validate().unwrap_err();
    /// assert!(err.to_string().contains("own inbox"));
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.local_inbox.is_empty() {
            return Err(ConfigError::new(
                "local inbox is empty: set the subject this session listens on",
            ));
        }
        check_subject(&self.local_inbox).map_err(|e| ConfigError(format!("local inbox {e}")))?;
        if !self.remote_inbox.is_empty() {
            check_subject(&self.remote_inbox)
                .map_err(|e| ConfigError(format!("destination inbox {e}")))?;
        }
        if self.remote_inbox == self.local_inbox {
            // The session would hear its own packets: its Syn answered by
            // itself, its data acknowledged by itself.
            return Err(ConfigError(format!(
                "the destination inbox {:?} is this session's own inbox: it would hear its own packets; \
                 give the peer's inbox as the destination and a different subject for this side",
                self.remote_inbox
            )));
        }
        if self.service_client && self.tuning.wire_format == WireFormat::Go {
            return Err(ConfigError::new(
                "go-sliding-window has no services: a Go-format session needs fixed inboxes (Config::new)",
            ));
        }
        self.tuning.validate()
    }

    forward_setters! {
        max_payload(bytes: usize);
        window(packets: u64, bytes: u64);
        send_buffer(bytes: u64);
        reserve(packets: u64, bytes: u64);
        rto(initial: Duration, min: Duration, max: Duration);
        max_retransmits(n: u32);
        termination(rule: Option<(usize, Duration)>);
        connect(timeout: Duration, attempts: u32);
        keepalive(interval: Duration, failures: impl Into<Option<u32>>);
        ack_policy(delay: Duration, frequency: u32);
        close_linger(d: Duration);
        asap(limit: Option<usize>);
        wire_format(format: WireFormat);
        batch_messages(on: bool);
        go_peer_buffer(bytes: u64);
        seal(seal: super::seal::Seal);
    }

    forward_getters! {
        batches_messages -> bool;
        go_peer_buffer_bytes -> u64;
        learns_go_peer_buffer -> bool;
        format -> WireFormat;
        window_packets -> u64;
        window_bytes -> u64;
        max_payload_bytes -> usize;
        keepalive_interval -> Duration;
        dead_peer_budget -> Option<Duration>;
    }
}

/// Checks that `subject` can be a session's inbox: one literal NATS
/// subject, tokens separated by dots, with no empty token, no whitespace or
/// control character, and no wildcard (`*`, `>`): a session publishes to
/// exactly one subject and listens on exactly one. The error says what is
/// wrong, after the subject in quotes.
///
/// ```
/// use swp::proto::config::check_subject;
/// assert!(check_subject("files.in").is_ok());
/// assert!(check_subject("_INBOX.abc-DEF_1").is_ok());
/// assert!(check_subject("a b").unwrap_err().contains("whitespace"));
/// assert!(check_subject("files.*").unwrap_err().contains("wildcard"));
/// assert!(check_subject(">").unwrap_err().contains("wildcard"));
/// assert!(check_subject("a..b").unwrap_err().contains("empty token"));
/// assert!(check_subject(".a").unwrap_err().contains("empty token"));
/// ```
pub fn check_subject(subject: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("{subject:?} is not a valid subject: {why}"));
    if subject.is_empty() {
        return bad("it is empty");
    }
    if let Some(c) = subject
        .chars()
        .find(|c| c.is_whitespace() || c.is_control())
    {
        return bad(&format!(
            "it contains {} {c:?}; NATS subjects are tokens separated by dots",
            if c.is_whitespace() {
                "whitespace"
            } else {
                "the control character"
            }
        ));
    }
    if let Some(c) = subject.chars().find(|c| *c == '*' || *c == '>') {
        return bad(&format!(
            "it contains the wildcard {c:?}; a session needs one literal subject"
        ));
    }
    if subject.split('.').any(str::is_empty) {
        return bad("it has an empty token (a leading, trailing or double dot)");
    }
    Ok(())
}

/// A configuration that cannot work; the message says what to change.
///
/// ```
/// use swp::proto::Config;
/// use std::time::Duration;
/// let err = Config::new("me", "peer").window(1, 100).validate().unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "invalid swp configuration: window in bytes is smaller than one packet's payload: raise the window or lower max_payload"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid swp configuration: {0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    /// An error with a fixed message.
    ///
    /// ```
    /// let e = swp::proto::ConfigError::new("min RTO must be positive");
    /// assert_eq!(e.to_string(), "invalid swp configuration: min RTO must be positive");
    /// ```
    pub fn new(message: &str) -> Self {
        ConfigError(message.to_string())
    }
}
