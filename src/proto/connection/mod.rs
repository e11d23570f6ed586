//! One session's protocol state machine.
//!
//! Read before editing: RFC 9293 (TCP: states, handshake, close), RFC 6298
//! (RTO), RFC 2018 (SACK), RFC 8985 (RACK loss detection and tail-loss
//! probes), RFC 9293 §3.8.6 (window management, silly window syndrome),
//! and docs/PROTOCOL.md, which this file implements.
//!
//! [`Connection`] never performs IO and never reads a clock. Its methods fall
//! into four groups (as in quinn-proto):
//!
//! * getters: [`state`](Connection::state), [`stats`](Connection::stats) ...
//! * inputs, each taking `now`: [`handle_packet`](Connection::handle_packet),
//!   [`handle_timeout`](Connection::handle_timeout);
//! * application commands: [`write`](Connection::write),
//!   [`send_message`](Connection::send_message), [`read`](Connection::read),
//!   [`recv_message`](Connection::recv_message), [`close`](Connection::close),
//!   [`abort`](Connection::abort) ...;
//! * outputs: [`poll_transmit`](Connection::poll_transmit) (packets to send),
//!   [`poll_timeout`](Connection::poll_timeout) (when to call
//!   `handle_timeout` next), [`poll_event`](Connection::poll_event).
//!
//! Contract: after any input or command, drain `poll_transmit` until it
//! returns `None`, then `poll_event`, then ask `poll_timeout`. Time never goes
//! backwards between calls.

use super::batch;
use super::codec;
use super::codec::{DecodeError, WireFormat};
use super::config::{Config, ConfigError};
use super::dialect::{Decoded, Dialect};
use super::error::{self, CloseReason, ReadError, ResetCode, WriteError};
use super::go::buffer::PeerBuffer;
use super::go::link::{self as golink, Inbound};
use super::packet::{Kind, Packet, Transmit, flags};
pub use super::phase::State;
use super::phase::{Ended, FinWait, Handshake, Ours, Phase};
use super::recv::{DataOutcome, Payload, RecvState};
use super::rtt::RttEstimator;
use super::seal::{self, HandshakeIn, Sealer};
use super::send::{Chunk, LossKind, SendState};
use super::stats::Stats;
use super::str::Str;
use super::timer::{ALL, Timer, TimerTable};
use bytes::Bytes;
use rand::{Rng, SeedableRng};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How many Resets an aborting side sends unasked, one answer time
/// apart while it lingers: a peer that has nothing to send (a receiver
/// waiting for data, keepalives further apart than the linger) would never
/// ask again, and one lost Reset would cost it its whole dead-peer budget.
const UNASKED_RESETS: u32 = 3;

/// How many answers a side prepares without leaving its state (refusals,
/// SYN cookies) may wait for the driver at once: one per packet that asked,
/// and no more under a flood.
const MAX_QUEUED_ANSWERS: usize = 4;

/// Something the application (or driver) should know about.
///
/// ```
/// # use swp::testkit::Pair;
/// # use swp::simnet::LinkConfig;
/// # use std::time::Duration;
/// # let cfg = |l: &str, r: &str| Pair::default_config(l, r);
/// # let mut pair = Pair::new(1, LinkConfig::new(), cfg("a", "b"), cfg("b", ""));
/// # assert!(pair.connect(Duration::from_secs(5)));
/// use swp::proto::Event;
/// // The handshake produced events on both sides (the simulator leaves them).
/// assert_eq!(pair.a.poll_event(), Some(Event::Connected));
/// pair.a.write(b"ping").unwrap();
/// assert!(pair.run_until(Duration::from_secs(5), |p| p.b.held().1 == 4));
/// let events: Vec<Event> = std::iter::from_fn(|| pair.b.poll_event()).collect();
/// assert!(events.contains(&Event::Readable));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The handshake completed.
    Connected,
    /// Data, a message, or end-of-stream can be read.
    Readable,
    /// Send-buffer space opened up after a write was refused.
    Writable,
    /// The peer acknowledged more data ([`Connection::bytes_acked`] grew).
    Acked,
    /// An as-soon-as-possible packet can be taken with
    /// [`Connection::poll_asap`].
    Asap,
    /// The state (see [`Connection::state`]) changed, e.g. our Fin was
    /// acknowledged or the peer finished.
    StateChanged(State),
    /// The session ended.
    Closed(CloseReason),
}

/// Result of a read-like call.
///
/// ```
/// # use swp::testkit::Pair;
/// # use swp::simnet::LinkConfig;
/// # use std::time::Duration;
/// # let cfg = |l: &str, r: &str| Pair::default_config(l, r);
/// # let mut pair = Pair::new(1, LinkConfig::new(), cfg("a", "b"), cfg("b", ""));
/// # assert!(pair.connect(Duration::from_secs(5)));
/// use swp::proto::Recv;
/// let mut buf = [0u8; 8];
/// assert_eq!(pair.b.read(&mut buf).unwrap(), Recv::Blocked); // nothing yet
/// pair.a.write(b"abc").unwrap();
/// pair.a.close(pair.now());
/// assert!(pair.run_until(Duration::from_secs(5), |p| p.b.state() == swp::proto::State::CloseWait));
/// assert_eq!(pair.b.read(&mut buf).unwrap(), Recv::Data(3));
/// assert_eq!(pair.b.read(&mut buf).unwrap(), Recv::Finished); // A's Fin
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recv<T> {
    /// Something was read.
    Data(T),
    /// Nothing yet: wait for [`Event::Readable`].
    Blocked,
    /// The peer finished its stream and everything was read.
    Finished,
}

/// Identifies a sent message: the stream offset at its end. It is
/// acknowledged once [`Connection::bytes_acked`] reaches it.
///
/// ```
/// # use swp::testkit::Pair;
/// # use swp::simnet::LinkConfig;
/// # use std::time::Duration;
/// # let cfg = |l: &str, r: &str| Pair::default_config(l, r);
/// # let mut pair = Pair::new(1, LinkConfig::new(), cfg("a", "b"), cfg("b", ""));
/// # assert!(pair.connect(Duration::from_secs(5)));
/// let id = pair.a.send_message("hi".into()).unwrap();
/// assert_eq!(id, 2); // the stream offset at the message's end
/// assert!(!pair.a.is_acked(id));
/// assert!(pair.run_until(Duration::from_secs(5), |p| p.a.is_acked(id)));
/// assert!(pair.a.bytes_acked() >= id);
/// ```
pub type MessageId = u64;

#[derive(Debug, Default)]
struct Pending {
    syn: bool,
    synack: bool,
    estab: bool,
    finack: Option<u64>,
    fin_retransmit: bool,
    keepalive: bool,
    probe: bool,
    /// A KeepAlive with `ACK_NOW` that asks the peer to confirm its
    /// acknowledgement (§5.6).
    verify_probe: bool,
    reset: bool,
}

/// The sans-IO protocol engine of one session. See the [module docs](self)
/// and the crate-level example, which shuttles packets between two engines.
///
/// ```
/// use swp::proto::{Config, Connection, Recv};
/// use std::time::Duration;
/// // A driver owns the clock and the network; here a perfect one.
/// let t0 = swp::testkit::epoch();
/// let mut a = Connection::connect(Config::new("A", "B"), t0, 1).unwrap();
/// let mut b = Connection::listen(Config::new("B", ""), t0, 2).unwrap();
/// let mut now = t0;
/// let mut shuttle = |a: &mut Connection, b: &mut Connection, now| {
///     while let Some(t) = a.poll_transmit(now) { b.handle_packet(now, t.payload); }
///     while let Some(t) = b.poll_transmit(now) { a.handle_packet(now, t.payload); }
/// };
/// shuttle(&mut a, &mut b, now); // the handshake: now A knows B's window
/// let msg = a.send_message("over the wire".into()).unwrap();
/// for _ in 0..10 {
///     now += Duration::from_millis(1);
///     shuttle(&mut a, &mut b, now);
/// }
/// assert_eq!(b.recv_message().unwrap(), Recv::Data("over the wire".into()));
/// // Acknowledged once B read it (an answer B sent now would carry the ack).
/// shuttle(&mut a, &mut b, now);
/// assert!(a.is_acked(msg));
/// ```
pub struct Connection {
    cfg: Config,
    /// Where a Go peer needs other rules (the one seam, `dialect.rs`).
    dialect: Dialect,
    /// The largest payload the transport carries (the session sets it
    /// from the server's max_payload; unbounded otherwise).
    payload_ceiling: usize,
    /// The transport's largest message (the server's max_payload), from
    /// which `payload_ceiling` is recomputed when the peer's inbox is
    /// learnt; `None` while the driver has not said.
    transport_max_payload: Option<usize>,
    phase: Phase,
    local_inbox: Str,
    remote_inbox: Str,
    local_nonce: Str,
    remote_nonce: Str,
    epoch: Instant,
    rtt: RttEstimator,
    snd: SendState,
    rcv: RecvState,
    timers: TimerTable,
    events: VecDeque<Event>,
    stats: Stats,
    pending: Pending,
    ack_pending: u32,
    ack_immediate: bool,
    /// An in-order packet asked for an answer at once (`ACK_NOW`): it is
    /// acknowledged as soon as the application reads, so that an answer
    /// the application sends straight after can carry the ack (§5.3).
    ack_on_read: bool,
    ack_echo: u64,
    last_heard: Instant,
    /// When we last sent a packet the peer answers (data, a KeepAlive, a
    /// Fin, a handshake packet): the keepalive interval runs from it, not
    /// from pure acks, so a side that only acknowledges the peer's stream
    /// still asks for an answer once per interval (§8).
    last_asked: Instant,
    rto_streak: u32,
    /// A packet proving the peer hears us (it echoes something we sent
    /// since we began waiting) arrived since the last retransmission
    /// timeout: only such timeouts count towards the retransmission limit.
    fresh_since_rto: bool,
    /// Likewise for Fin retransmissions.
    fresh_since_fin: bool,
    /// Any packet at all arrived since the last retransmission (data or
    /// Fin) timeout.
    heard_since_timeout: bool,
    /// When the last packet proving the peer hears us arrived.
    last_fresh: Option<Instant>,
    /// Retransmission timeouts since the peer last proved it hears us.
    unanswered_timeouts: u32,
    /// The smallest (our clock − the peer's `ts`) seen, in µs: the offset of
    /// the two clocks plus the fastest one-way trip.
    peer_offset_us: Option<i128>,
    /// How much later than its fastest the peer's latest packet came: the
    /// queue on the way back. Answers to what we send now wait in it too,
    /// so giving up waits that much longer (§5.5).
    peer_lag: Duration,
    /// The packet being handled proves the peer hears us again after
    /// timeouts it did not answer (an outage of our direction ended).
    heard_back_after_timeouts: bool,
    /// Retransmission (data or Fin) timeouts since the peer was last heard:
    /// when it is heard again the path is back, and recovery starts at once
    /// instead of after a backed-off timer (§8).
    silent_timeouts: u32,
    /// When `snd.snd_una` last moved forward (§5.6).
    una_advanced_at: Option<Instant>,
    /// When the peer last acknowledged something new of ours (data,
    /// cumulatively or selectively, or our Fin), or we started waiting for
    /// it (a flight after idle, our Fin).
    last_progress: Instant,
    /// When we last asked the peer to confirm a stale acknowledgement.
    verify_probe_at: Option<Instant>,
    /// The latest `now` any input carried (for commands, which take none).
    now_hint: Instant,
    /// The reason our Reset carries.
    reset_out: Option<(ResetCode, String)>,
    /// Resets sent after an abnormal end, and when the last went out: a
    /// peer still talking to us did not hear it (§7.3).
    resets_sent: u32,
    last_reset: Option<Instant>,
    term_ring: VecDeque<Instant>,
    persist_backoff: u32,
    write_blocked: bool,
    peer_rtt: (u64, u64, u64),
    /// Wall clock (Unix ns) at `epoch` (Go packets carry wall-clock times).
    wall_epoch_ns: i128,
    /// The Go ack being handled names the latest transmission of the
    /// retransmitted packet it acknowledges: delivered then (RACK, §13.2).
    go_echo: Option<Instant>,
    /// Keys and handshake of a sealed session (§14).
    sealer: Option<Sealer>,
    /// Refusals to send (plain Resets answering Syns this side will not
    /// take), without leaving Listen.
    refusals: VecDeque<Packet>,
    /// What went wrong in a sealed handshake, for the error if it times out.
    seal_trouble: Option<String>,
    /// A listener that keeps listening ([`Connection::set_keep_listening`]):
    /// the configuration to listen again with when a passive handshake fails.
    relisten: Option<Box<Config>>,
    /// What seeded this session's nonce (the next listen's is drawn from it).
    nonce_seed: u64,
    /// The key of a listener's SYN cookies (§4), kept when it listens
    /// again, so a cookie it gave stays good.
    cookie_key: [u8; 32],
    /// The transport capacity the driver reported, for a new listen.
    capacity: (Option<u64>, Option<u64>),
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("local", &self.cfg.local_inbox)
            .field("remote", &self.remote_inbox)
            .field("state", &self.state())
            .finish()
    }
}

/// The code and the message (at most [`error::MAX_RESET_MESSAGE`] bytes) a
/// Reset carries.
fn reset_reason(p: &Packet) -> (ResetCode, String) {
    let data = error::clip_message(std::str::from_utf8(&p.data).unwrap_or(""));
    let message = if data.is_empty() && !p.data.is_empty() {
        String::from_utf8_lossy(&p.data[..p.data.len().min(error::MAX_RESET_MESSAGE)]).into_owned()
    } else {
        data.to_string()
    };
    (ResetCode::from_wire(p.seq), message)
}

/// The characters of a nonce (and of a SYN cookie).
const NONCE_ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

fn make_nonce(seed: u64) -> String {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..30)
        .map(|_| NONCE_ALPHABET[rng.gen_range(0..NONCE_ALPHABET.len())] as char)
        .collect()
}

impl Connection {
    /// Active open: sends a Syn to `cfg.remote_inbox` on the first
    /// `poll_transmit`. `nonce_seed` seeds this session's nonce (drivers
    /// pass OS randomness; simulations pass a seed).
    ///
    /// ```
    /// use swp::proto::{Config, Connection, State};
    /// let t0 = swp::testkit::epoch();
    /// let mut a = Connection::connect(Config::new("a", "b"), t0, 42).unwrap();
    /// assert_eq!(a.state(), State::SynSent);
    /// let syn = a.poll_transmit(t0).unwrap();
    /// assert_eq!(syn.dest.as_str(), "b");
    /// // Without a destination there is nobody to connect to.
    /// assert!(Connection::connect(Config::new("a", ""), t0, 42).is_err());
    /// ```
    pub fn connect(cfg: Config, now: Instant, nonce_seed: u64) -> Result<Self, ConfigError> {
        if cfg.remote_inbox.is_empty() {
            return Err(ConfigError::new(
                "an active open needs the destination inbox",
            ));
        }
        let mut c = Self::new(cfg, now, nonce_seed)?;
        c.start_sealing(true, nonce_seed)?;
        let h = c.new_handshake(now);
        c.phase = Phase::SynSent(h);
        c.pending.syn = true;
        c.timers.set(Timer::Handshake, now + h.interval);
        Ok(c)
    }

    /// Passive open: waits for a Syn on `cfg.local_inbox`. If
    /// `cfg.remote_inbox` is set, only a Syn from that inbox is accepted.
    ///
    /// ```
    /// use swp::proto::{Config, Connection, State};
    /// let t0 = swp::testkit::epoch();
    /// let mut b = Connection::listen(Config::new("b", ""), t0, 7).unwrap();
    /// assert_eq!(b.state(), State::Listen);
    /// assert!(b.poll_transmit(t0).is_none()); // a listener speaks when spoken to
    /// assert_eq!(b.remote_inbox(), "");
    /// ```
    pub fn listen(cfg: Config, now: Instant, nonce_seed: u64) -> Result<Self, ConfigError> {
        let mut c = Self::new(cfg, now, nonce_seed)?;
        c.start_sealing(false, nonce_seed)?;
        Ok(c)
    }

    fn start_sealing(&mut self, initiator: bool, nonce_seed: u64) -> Result<(), ConfigError> {
        if let Some(seal) = self.cfg.tuning.seal.clone() {
            let s = Sealer::new(seal, initiator, nonce_seed)
                .map_err(|e| ConfigError::new(&format!("seal: {}", e.0)))?;
            self.sealer = Some(s);
        }
        Ok(())
    }

    /// Whether this session is sealed (docs/PROTOCOL.md §14).
    ///
    /// ```
    /// use swp::proto::{seal::{Keypair, Seal}, Config, Connection};
    /// let t0 = swp::testkit::epoch();
    /// let (me, server) = (Keypair::generate(), Keypair::generate());
    /// let seal = Seal::keys(me).peer(*server.public());
    /// // A driver of its own supplies the handshake's randomness.
    /// let cfg = Config::new("a", "b").seal(seal.with_entropy(swp::keys::fresh_entropy()));
    /// let mut a = Connection::connect(cfg, t0, 1).unwrap();
    /// assert!(a.is_sealed() && a.peer_public_key().is_none()); // not proved yet
    /// // The Syn carries a Noise message, not a plain session offer.
    /// let syn = swp::proto::codec::decode(&a.poll_transmit(t0).unwrap().payload).unwrap();
    /// assert!(syn.has(swp::proto::flags::SEALED) && !syn.data.is_empty());
    /// ```
    pub fn is_sealed(&self) -> bool {
        self.sealer.is_some()
    }

    /// The peer's static public key, once a sealed handshake proved it
    /// (`None` for a plain session or a pre-shared-secret seal).
    pub fn peer_public_key(&self) -> Option<&crate::proto::seal::PublicKey> {
        self.sealer.as_ref().and_then(|s| s.remote_static())
    }

    fn new(cfg: Config, now: Instant, nonce_seed: u64) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let rtt = RttEstimator::new(
            cfg.tuning.initial_rto,
            cfg.tuning.min_rto,
            cfg.tuning.max_rto,
        );
        let mut c = Connection {
            dialect: Dialect::Native,
            payload_ceiling: usize::MAX,
            transport_max_payload: None,
            wall_epoch_ns: 0,
            phase: Phase::Listen,
            local_inbox: Str::from(&cfg.local_inbox),
            remote_inbox: Str::from(&cfg.remote_inbox),
            local_nonce: Str::from(make_nonce(nonce_seed)),
            remote_nonce: Str::default(),
            // One microsecond back: a packet's `ts` is never 0, which means
            // "nothing" in `ts_echo`.
            epoch: now.checked_sub(Duration::from_micros(1)).unwrap_or(now),
            rtt,
            snd: SendState::new(cfg.tuning.max_payload, cfg.tuning.send_buffer_bytes),
            rcv: RecvState::new(
                cfg.tuning.window_packets,
                cfg.tuning.window_bytes,
                cfg.tuning.asap_limit,
            ),
            timers: TimerTable::default(),
            events: VecDeque::new(),
            stats: Stats::default(),
            pending: Pending::default(),
            ack_pending: 0,
            ack_on_read: false,
            ack_immediate: false,
            ack_echo: 0,
            last_heard: now,
            last_asked: now,
            rto_streak: 0,
            fresh_since_rto: false,
            fresh_since_fin: false,
            heard_since_timeout: false,
            last_fresh: None,
            unanswered_timeouts: 0,
            peer_offset_us: None,
            peer_lag: Duration::ZERO,
            heard_back_after_timeouts: false,
            silent_timeouts: 0,
            una_advanced_at: None,
            last_progress: now,
            verify_probe_at: None,
            now_hint: now,
            reset_out: None,
            resets_sent: 0,
            last_reset: None,
            term_ring: VecDeque::new(),
            persist_backoff: 0,
            write_blocked: false,
            peer_rtt: (0, 0, 0),
            go_echo: None,
            sealer: None,
            refusals: VecDeque::new(),
            relisten: None,
            nonce_seed,
            cookie_key: {
                use rand::RngCore;
                let mut k = [0u8; 32];
                rand_chacha::ChaCha8Rng::seed_from_u64(nonce_seed ^ 0xC00C_1E5E_ED00_0000)
                    .fill_bytes(&mut k);
                k
            },
            capacity: (None, None),
            seal_trouble: None,
            cfg,
        };
        if c.cfg.tuning.wire_format == WireFormat::Go {
            c.speak_go();
        }
        Ok(c)
    }

    /// A handshake starting now: the first retry after the initial RTO
    /// (at most the connect timeout), doubling from there (§4).
    fn new_handshake(&self, now: Instant) -> Handshake {
        Handshake {
            attempts: 1,
            started: now,
            interval: self
                .cfg
                .tuning
                .initial_rto
                .min(self.cfg.tuning.connect_timeout),
            close_requested: false,
        }
    }

    /// The application closed our direction (it may write no more).
    fn app_closed(&self) -> bool {
        match &self.phase {
            Phase::Listen => false,
            Phase::SynSent(h) | Phase::SynReceived(h) => h.close_requested,
            Phase::Open(o) => *o != Ours::Writing,
            Phase::Closed(_) => true,
        }
    }

    /// Our Fin went out (acknowledged or not).
    fn fin_sent(&self) -> bool {
        matches!(self.phase, Phase::Open(Ours::FinSent(_) | Ours::FinAcked))
    }

    fn fin_acked(&self) -> bool {
        matches!(self.phase, Phase::Open(Ours::FinAcked))
    }

    /// Our Fin is out and not acknowledged yet.
    fn fin_outstanding(&self) -> bool {
        matches!(self.phase, Phase::Open(Ours::FinSent(_)))
    }

    fn fin_wait(&self) -> FinWait {
        match self.phase {
            Phase::Open(Ours::FinSent(w)) => w,
            _ => FinWait { tries: 0, sends: 0 },
        }
    }

    fn drained(&self) -> bool {
        matches!(&self.phase, Phase::Closed(e) if e.drained)
    }

    fn set_drained(&mut self) {
        if let Phase::Closed(e) = &mut self.phase {
            e.drained = true;
        }
    }

    fn closed_normally(&self) -> bool {
        matches!(&self.phase, Phase::Closed(e) if e.reason.is_normal())
    }

    /// Switches to go-sliding-window's format and its peer's rules.
    fn speak_go(&mut self) {
        let t = &self.cfg.tuning;
        let buffer = PeerBuffer::new(t.go_peer_buffer, !t.go_peer_buffer_learns);
        self.dialect = Dialect::go(buffer);
        self.fit_go_packets();
        // Each Go packet is one message.
        self.snd.set_batching(false);
        // A Go sender only checks that one byte of window is free.
        self.rcv.byte_slack = golink::GO_BYTE_OVERSHOOT;
        // ... and a Go receiver allows the same of us.
        self.snd.overshoot_ok = true;
    }

    // ------------------------------------------------------------------
    // getters

    /// The RFC 9293 name of the current state.
    ///
    /// ```
    /// # use swp::testkit::Pair;
    /// # use swp::simnet::LinkConfig;
    /// # use std::time::Duration;
    /// # let cfg = |l: &str, r: &str| Pair::default_config(l, r);
    /// # let mut pair = Pair::new(1, LinkConfig::new(), cfg("a", "b"), cfg("b", ""));
    /// # assert!(pair.connect(Duration::from_secs(5)));
    /// use swp::proto::State;
    /// assert_eq!(pair.b.state(), State::Established);
    /// pair.b.abort(pair.now());
    /// assert_eq!(pair.b.state(), State::Closed);
    /// ```
    pub fn state(&self) -> State {
        self.phase.state(self.rcv.fin.is_some())
    }

    /// True once the handshake completed (and until the session closes).
    ///
    /// ```
    /// # use swp::testkit::Pair;
    /// # use swp::simnet::LinkConfig;
    /// # use std::time::Duration;
    /// # let cfg = |l: &str, r: &str| Pair::default_config(l, r);
    /// # let mut pair = Pair::new(1, LinkConfig::new(), cfg("a", "b"), cfg("b", ""));
    /// # assert!(pair.connect(Duration::from_secs(5)));
    /// assert!(pair.a.is_established() && pair.b.is_established());
    /// pair.a.abort(pair.now());
    /// assert!(!pair.a.is_established());
    /// ```
    pub fn is_established(&self) -> bool {
        matches!(self.phase, Phase::Open(_))
    }

    /// True when the session is closed.
    ///
    /// ```
    /// # use swp::testkit::Pair;
    /// # use swp::simnet::LinkConfig;
    /// # use std::time::Duration;
    /// # let cfg = |l: &str, r: &str| Pair::default_config(l, r);
    /// # let mut pair = Pair::new(1, LinkConfig::new(), cfg("a", "b"), cfg("b", ""));
    /// # assert!(pair.connect(Duration::from_secs(5)));
    /// pair.a.abort(pair.now()); // sends a Reset
    /// assert!(pair.a.is_closed());
    /// assert!(pair.run_until(Duration::from_secs(5), |p| p.b.is_closed()));
    /// ```
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed(_))
    }

    /// True when the session is closed and needs no more driving (any
    /// linger period is over): the driver may drop it.
    ///
    /// ```
    /// # use swp::testkit::Pair;
    /// # use swp::simnet::LinkConfig;
    /// # use std::time::Duration;
    /// # let cfg = |l: &str, r: &str| Pair::default_config(l, r);
    /// # let mut pair = Pair::new(1, LinkConfig::new(), cfg("a", "b"), cfg("b", ""));
    /// # assert!(pair.connect(Duration::from_secs(5)));
    /// pair.a.abort(pair.now());
    /// // The Reset still has to go out: closed, not yet drained.
    /// assert!(pair.a.is_closed() && !pair.a.is_drained());
    /// // It lingers to repeat the Reset for its dead-peer timeout (§7.3).
    /// let linger = pair.a.dead_peer_timeout().unwrap();
    /// assert!(pair.run_until(linger + Duration::from_secs(1), |p| p.a.is_drained()));
    /// ```
    pub fn is_drained(&self) -> bool {
        self.drained()
    }

    /// Why the session closed, once it has.
    ///
    /// ```
    /// # use swp::testkit::Pair;
    /// # use swp::simnet::LinkConfig;
    /// # use std::time::Duration;
    /// # let cfg = |l: &str, r: &str| Pair::default_config(l, r);
    /// # let mut pair = Pair::new(1, LinkConfig::new(), cfg("a", "b"), cfg("b", ""));
    /// # assert!(pair.connect(Duration::from_secs(5)));
    /// use swp::proto::CloseReason;
    /// assert_eq!(pair.b.close_reason(), None);
    /// pair.a.abort(pair.now());
    /// assert!(pair.run_until(Duration::from_secs(5), |p| p.b.is_closed()));
    /// assert_eq!(pair.a.close_reason(), Some(&CloseReason::Aborted { reason: String::new() }));
    /// assert!(matches!(pair.b.close_reason(), Some(CloseReason::Reset { .. })));
    /// ```
    pub fn close_reason(&self) -> Option<&CloseReason> {
        self.phase.ended().map(|e| &e.reason)
    }

    /// The wire format spoken: the configured one, or [`WireFormat::Go`]
    /// once a listener has answered a Go peer.
    ///
    /// ```
    /// # use swp::testkit::Pair;
    /// # use swp::simnet::LinkConfig;
    /// # use std::time::Duration;
    /// # let cfg = |l: &str, r: &str| Pair::default_config(l, r);
    /// # let mut pair = Pair::new(1, LinkConfig::new(), cfg("a", "b"), cfg("b", ""));
    /// # assert!(pair.connect(Duration::from_secs(5)));
    /// use swp::proto::WireFormat;
    /// assert_eq!(pair.b.wire_format(), WireFormat::Native); // a native Syn arrived
    /// ```
    pub fn wire_format(&self) -> WireFormat {
        self.dialect.format()
    }

    /// This side's session nonce.
    ///
    /// ```
    /// # use swp::testkit::Pair;
    /// # use swp::simnet::LinkConfig;
    /// # use std::time::Duration;
    /// # let cfg = |l: &str, r: &str| Pair::default_config(l, r);
    /// # let mut pair = Pair::new(1, LinkConfig::new(), cfg("a", "b"), cfg("b", ""));
    /// # assert!(pair.connect(Duration::from_secs(5)));
    /// assert!(!pair.a.local_nonce().is_empty());
    /// assert_ne!(pair.a.local_nonce(), pair.b.local_nonce());
    /// ```
    pub fn local_nonce(&self) -> &str {
        &self.local_nonce
    }

    /// The peer's session nonce ("" until learnt).
    ///
    /// ```
    /// # use swp::testkit::Pair;
    /// # use swp::simnet::LinkConfig;
    /// # use std::time::Duration;
    /// # let cfg = |l: &str, r: &str| Pair::default_config(l, r);
    /// # let mut pair = Pair::new(1, LinkConfig::new(), cfg("a", "b"), cfg("b", ""));
    /// # assert!(pair.connect(Duration::from_secs(5)));
    /// // After the handshake each side knows the other's nonce.
    /// assert_eq!(pair.a.remote_nonce(), pair.b.local_nonce());
    /// assert_eq!(pair.b.remote_nonce(), pair.a.local_nonce());
    /// ```
    pub fn remote_nonce(&self) -> &str {
        &self.remote_nonce
    }

    /// The peer's inbox ("" for a listener before the Syn).
    ///
    /// ```
    /// # use swp::testkit::Pair;
    /// # use swp::simnet::LinkConfig;
    /// # use std::time::Duration;
    /// # let cfg = |l: &str, r: &str| Pair::default_config(l, r);
    /// # let mut pair = Pair::new(1, LinkConfig::new(), cfg("a", "b"), cfg("b", ""));
    /// # assert!(pair.connect(Duration::from_secs(5)));
    /// assert_eq!(pair.a.remote_inbox(), "b");
    /// assert_eq!(pair.b.remote_inbox(), "a"); // learnt from the Syn
    /// ```
    pub fn remote_inbox(&self) -> &str {
        &self.remote_inbox
    }

    /// The configuration in force.
    ///
    /// ```
    /// # use swp::testkit::Pair;
    /// # use swp::simnet::LinkConfig;
    /// # use std::time::Duration;
    /// # let cfg = |l: &str, r: &str| Pair::default_config(l, r);
    /// # let mut pair = Pair::new(1, LinkConfig::new(), cfg("a", "b"), cfg("b", ""));
    /// # assert!(pair.connect(Duration::from_secs(5)));
    /// assert_eq!(pair.a.config().remote_inbox(), "b");
    /// assert_eq!(pair.a.config().window_packets(), 1024);
    /// ```
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The RTT estimator.
    ///
    /// ```
    /// # use swp::testkit::Pair;
    /// # use swp::simnet::LinkConfig;
    /// # use std::time::Duration;
    /// # let cfg = |l: &str, r: &str| Pair::default_config(l, r);
    /// # let mut pair = Pair::new(1, LinkConfig::new(), cfg("a", "b"), cfg("b", ""));
    /// # assert!(pair.connect(Duration::from_secs(5)));
    /// pair.a.write(&[0u8; 1000]).unwrap();
    /// assert!(pair.run_until(Duration::from_secs(5), |p| p.a.bytes_acked() == 1000));
    /// let rtt = pair.a.rtt();
    /// assert!(rtt.samples() >= 1 && rtt.srtt().is_some());
    /// assert!(rtt.rto() >= Duration::from_millis(10)); // never below the minimum
    /// ```
    pub fn rtt(&self) -> &RttEstimator {
        &self.rtt
    }

    /// Payload bytes the peer has acknowledged (cumulatively).
    ///
    /// ```
    /// # use swp::testkit::Pair;
    /// # use swp::simnet::LinkConfig;
    /// # use std::time::Duration;
    /// # let cfg = |l: &str, r: &str| Pair::default_config(l, r);
    /// # let mut pair = Pair::new(1, LinkConfig::new(), cfg("a", "b"), cfg("b", ""));
    /// # assert!(pair.connect(Duration::from_secs(5)));
    /// pair.a.write(&[1u8; 5000]).unwrap();
    /// assert_eq!(pair.a.bytes_acked(), 0);
    /// assert!(pair.run_until(Duration::from_secs(5), |p| p.a.bytes_acked() == 5000));
    /// ```
    pub fn bytes_acked(&self) -> u64 {
        self.snd.bytes_acked
    }

    /// Payload bytes the application has written.
    ///
    /// ```
    /// # use swp::testkit::Pair;
    /// # use swp::simnet::LinkConfig;
    /// # use std::time::Duration;
    /// # let cfg = |l: &str, r: &str| Pair::default_config(l, r);
    /// # let mut pair = Pair::new(1, LinkConfig::new(), cfg("a", "b"), cfg("b", ""));
    /// # assert!(pair.connect(Duration::from_secs(5)));
    /// pair.a.write(&[1u8; 300]).unwrap();
    /// pair.a.send_message("m".into()).unwrap();
    /// assert_eq!(pair.a.bytes_written(), 301); // stream bytes and message bytes
    /// ```
    pub fn bytes_written(&self) -> u64 {
        self.snd.bytes_written
    }

    /// True if the message `id` (from [`send_message`](Self::send_message))
    /// has been acknowledged by the peer.
    ///
    /// ```
    /// # use swp::testkit::Pair;
    /// # use swp::simnet::LinkConfig;
    /// # use std::time::Duration;
    /// # let cfg = |l: &str, r: &str| Pair::default_config(l, r);
    /// # let mut pair = Pair::new(1, LinkConfig::new(), cfg("a", "b"), cfg("b", ""));
    /// # assert!(pair.connect(Duration::from_secs(5)));
    /// let first = pair.a.send_message("first".into()).unwrap();
    /// let second = pair.a.send_message("second".into()).unwrap();
    /// assert!(pair.run_until(Duration::from_secs(5), |p| p.a.is_acked(second)));
    /// assert!(pair.a.is_acked(first)); // acknowledgements are cumulative
    /// ```
    pub fn is_acked(&self, id: MessageId) -> bool {
        self.snd.bytes_acked >= id
    }

    /// Sends the Syn again on the next [`poll_transmit`](Self::poll_transmit),
    /// without counting a handshake attempt or touching the handshake timer:
    /// for a driver whose transport said the last Syn reached nobody (a NATS
    /// "no responders" answer, which nats-server also gives when it dropped
    /// the message for a busy subscriber). True if the connection is in
    /// SynSent, so there is a Syn to send.
    ///
    /// ```
    /// use swp::proto::{Config, Connection};
    /// let t0 = swp::testkit::epoch();
    /// let mut a = Connection::connect(Config::new("a", "b"), t0, 42).unwrap();
    /// assert!(a.poll_transmit(t0).is_some()); // the Syn
    /// assert!(a.poll_transmit(t0).is_none());
    /// assert!(a.resend_syn());
    /// assert!(a.poll_transmit(t0).is_some()); // the same Syn, at once
    /// ```
    pub fn resend_syn(&mut self) -> bool {
        if matches!(self.phase, Phase::SynSent(_)) {
            self.pending.syn = true;
            true
        } else {
            false
        }
    }

    /// An abnormal end's first Reset has been handed out (the session may
    /// still linger to repeat it).
    pub(crate) fn reset_told(&self) -> bool {
        self.resets_sent > 0 && !self.pending.reset
    }

    /// True once our side of a graceful close is settled: our Fin was
    /// acknowledged; or the peer finished its stream too, acknowledged
    /// everything we wrote, and our Fin went out three times unanswered, so
    /// that only its acknowledgement is missing and nothing can be lost any
    /// more. A `close` that waits for this returns within a few RTOs even
    /// when the peer is gone right after its own close (a live peer's
    /// FinAck comes sooner); the Fin goes on being retransmitted while the
    /// engine is driven.
    ///
    /// ```
    /// # use swp::testkit::Pair;
    /// # use swp::simnet::LinkConfig;
    /// # use std::time::Duration;
    /// # let cfg = |l: &str, r: &str| Pair::default_config(l, r);
    /// # let mut pair = Pair::new(1, LinkConfig::new(), cfg("a", "b"), cfg("b", ""));
    /// # assert!(pair.connect(Duration::from_secs(5)));
    /// use swp::proto::State;
    /// pair.a.close(pair.now());
    /// assert!(pair.run_until(Duration::from_secs(5), |p| p.b.state() == State::CloseWait));
    /// let (ia, ib) = (pair.inbox(swp::testkit::Side::A), pair.inbox(swp::testkit::Side::B));
    /// pair.net.partition(ia, ib); // A is gone for good
    /// pair.b.close(pair.now());
    /// assert!(pair.run_until(Duration::from_secs(5), |p| p.b.close_settled()));
    /// assert!(pair.elapsed() < Duration::from_secs(2)); // a few RTOs of Fin retries
    /// assert!(!pair.b.is_closed()); // only A's FinAck is missing
    /// ```
    pub fn close_settled(&self) -> bool {
        match self.state() {
            State::FinWait2 => true,
            State::Closed => self.closed_normally(),
            _ => self.only_fin_ack_missing() && self.fin_wait().sends >= 3,
        }
    }

    /// How long the peer may stay silent before the session ends as
    /// [`CloseReason::PeerUnreachable`]: the dead-peer budget plus the grace
    /// of its last round of probes (docs/PROTOCOL.md §8). `None` when the
    /// budget is off. An outage shorter than the budget never ends a session.
    ///
    /// ```
    /// # use swp::testkit::Pair;
    /// # use swp::simnet::LinkConfig;
    /// # use std::time::Duration;
    /// # let cfg = |l: &str, r: &str| Pair::default_config(l, r);
    /// # let mut pair = Pair::new(1, LinkConfig::new(), cfg("a", "b"), cfg("b", ""));
    /// # assert!(pair.connect(Duration::from_secs(5)));
    /// let budget = pair.a.config().dead_peer_budget().unwrap(); // 10 x 1 s
    /// let limit = pair.a.dead_peer_timeout().unwrap();
    /// // One more keepalive interval and two probe intervals.
    /// assert!(limit > budget + Duration::from_secs(1));
    /// assert!(limit <= budget + Duration::from_secs(3));
    /// ```
    pub fn dead_peer_timeout(&self) -> Option<Duration> {
        Some(self.cfg.dead_peer_budget()? + self.liveness_grace())
    }

    /// Bytes [`write`](Self::write) would accept now.
    ///
    /// ```
    /// # use swp::testkit::Pair;
    /// # use swp::simnet::LinkConfig;
    /// # use std::time::Duration;
    /// # let cfg = |l: &str, r: &str| Pair::default_config(l, r);
    /// # let mut pair = Pair::new(1, LinkConfig::new(), cfg("a", "b"), cfg("b", ""));
    /// # assert!(pair.connect(Duration::from_secs(5)));
    /// let space = pair.a.send_space();
    /// assert_eq!(space, 16 << 20); // the default send buffer
    /// pair.a.write(&[0u8; 1000]).unwrap();
    /// assert_eq!(pair.a.send_space(), space - 1000); // until acknowledged
    /// ```
    pub fn send_space(&self) -> u64 {
        if self.app_closed() || self.is_closed() {
            0
        } else {
            self.snd.buffer_space()
        }
    }

    /// Received data (packets, bytes) held for the application.
    ///
    /// ```
    /// # use swp::testkit::Pair;
    /// # use swp::simnet::LinkConfig;
    /// # use std::time::Duration;
    /// # let cfg = |l: &str, r: &str| Pair::default_config(l, r);
    /// # let mut pair = Pair::new(1, LinkConfig::new(), cfg("a", "b"), cfg("b", ""));
    /// # assert!(pair.connect(Duration::from_secs(5)));
    /// pair.a.write(&[9u8; 2000]).unwrap();
    /// assert!(pair.run_until(Duration::from_secs(5), |p| p.b.held().1 == 2000));
    /// let mut buf = vec![0u8; 4096];
    /// pair.b.read(&mut buf).unwrap();
    /// assert_eq!(pair.b.held(), (0, 0)); // read: nothing held any more
    /// ```
    pub fn held(&self) -> (u64, u64) {
        (
            self.rcv.rcv_nxt - self.rcv.consumed_seq,
            self.rcv.ready_bytes,
        )
    }

    /// The peer's advertised edges as last seen: (sequence edge, byte edge).
    ///
    /// ```
    /// # use swp::testkit::Pair;
    /// # use swp::simnet::LinkConfig;
    /// # use std::time::Duration;
    /// # let cfg = |l: &str, r: &str| Pair::default_config(l, r);
    /// # let mut pair = Pair::new(1, LinkConfig::new(), cfg("a", "b"), cfg("b", ""));
    /// # assert!(pair.connect(Duration::from_secs(5)));
    /// let (seq_edge, byte_edge) = pair.a.peer_window_edges();
    /// // B offered its whole window: 1024 packets and 16 MiB beyond what it consumed.
    /// assert!(seq_edge >= 1024 && byte_edge >= 16 << 20);
    /// ```
    pub fn peer_window_edges(&self) -> (u64, u64) {
        (self.snd.peer_wnd_seq, self.snd.peer_wnd_bytes)
    }

    /// Current effective receive capacity (packets, bytes): the configured
    /// window limited by the transport's capacity.
    ///
    /// ```
    /// # use swp::testkit::Pair;
    /// # use swp::simnet::LinkConfig;
    /// # use std::time::Duration;
    /// # let cfg = |l: &str, r: &str| Pair::default_config(l, r);
    /// # let mut pair = Pair::new(1, LinkConfig::new(), cfg("a", "b"), cfg("b", ""));
    /// # assert!(pair.connect(Duration::from_secs(5)));
    /// assert_eq!(pair.b.receive_capacity(), (1024, 16 << 20));
    /// // A small transport (say a subscription of 100 messages) limits it,
    /// // if the engine is told before the handshake.
    /// use swp::proto::{Config, Connection};
    /// let mut c = Connection::listen(Config::new("c", ""), pair.now(), 3).unwrap();
    /// c.set_transport_capacity(Some(100), None);
    /// assert!(c.receive_capacity().0 < 100);
    /// ```
    pub fn receive_capacity(&self) -> (u64, u64) {
        self.rcv.capacity()
    }

    /// A snapshot of the counters.
    ///
    /// ```
    /// # use swp::testkit::Pair;
    /// # use swp::simnet::LinkConfig;
    /// # use std::time::Duration;
    /// # let cfg = |l: &str, r: &str| Pair::default_config(l, r);
    /// # let mut pair = Pair::new(1, LinkConfig::new(), cfg("a", "b"), cfg("b", ""));
    /// # assert!(pair.connect(Duration::from_secs(5)));
    /// pair.a.write(&[0u8; 10_000]).unwrap();
    /// assert!(pair.run_until(Duration::from_secs(5), |p| p.a.bytes_acked() == 10_000));
    /// let s = pair.a.stats();
    /// assert_eq!(s.data.bytes_sent, 10_000);
    /// assert_eq!(pair.b.stats().data.bytes_received, 10_000);
    /// ```
    pub fn stats(&self) -> Stats {
        let mut s = self.stats;
        s.rtt.srtt = self.rtt.srtt().unwrap_or_default();
        s.rtt.rttvar = self.rtt.rttvar();
        s.rtt.rto = self.rtt.rto();
        s.rtt.samples = self.rtt.samples();
        s.window.in_flight_packets = self.snd.outstanding() as u64;
        s.window.in_flight_bytes = self.snd.in_flight_bytes();
        s.window.peer_packets = self.snd.peer_wnd_seq.saturating_sub(self.snd.snd_nxt);
        s.window.peer_bytes = self.snd.peer_wnd_bytes.saturating_sub(self.snd.bytes_sent);
        s.window.local_packets = self.rcv.window_packets_free();
        s.window.local_bytes = self.rcv.window_bytes_free();
        if let Some(b) = self.dialect.peer_buffer() {
            s.window.go_peer_buffer = b.cap();
            s.window.go_peer_buffer_fallbacks = b.fallbacks();
        }
        s.app.bytes_written = self.snd.bytes_written;
        s.app.bytes_acked = self.snd.bytes_acked;
        s.app.bytes_read = self.rcv.consumed_bytes;
        s
    }

    // ------------------------------------------------------------------
    // configuration from the driver

    /// Makes a listener keep listening through handshakes that fail, as a
    /// TCP listener's half-open connections do (RFC 9293 §3.10.7.4): when
    /// the client stops answering our SynAcks, or resets the handshake (it
    /// took another listener's answer, or gave up), this side goes back to
    /// Listen with a fresh nonce instead of closing, and waits for the next
    /// Syn; and another client's Syn takes it from a client silent for a
    /// whole handshake interval (docs/PROTOCOL.md §4). [`Stats`]'s
    /// `loss.handshakes_abandoned` counts them. Off by default (a service's
    /// per-client session ends instead); `swp`'s
    /// [`Listener::accept`](crate::Listener::accept) turns it on. Only a
    /// listener that has not yet heard a Syn takes it.
    ///
    /// ```
    /// use swp::proto::{codec, Config, Connection, State};
    /// let t0 = swp::testkit::epoch();
    /// let mut b = Connection::listen(Config::new("b", ""), t0, 2).unwrap();
    /// b.set_keep_listening(true);
    /// // A client's Syn, then the client gives up with a Reset.
    /// let mut a = Connection::connect(Config::new("a", "b"), t0, 1).unwrap();
    /// b.handle_packet(t0, a.poll_transmit(t0).unwrap().payload);
    /// a.handle_packet(t0, b.poll_transmit(t0).unwrap().payload); // the SynAck
    /// assert_eq!(b.state(), State::SynReceived);
    /// let nonce = b.local_nonce().to_string();
    /// a.abort(t0);
    /// while let Some(t) = a.poll_transmit(t0) {
    ///     b.handle_packet(t0, t.payload);
    /// }
    /// assert_eq!(b.state(), State::Listen);
    /// assert_ne!(b.local_nonce(), nonce, "a fresh nonce for the next client");
    /// assert_eq!(b.stats().loss.handshakes_abandoned, 1);
    /// ```
    pub fn set_keep_listening(&mut self, on: bool) {
        self.relisten = (on && matches!(self.phase, Phase::Listen) && !self.drained())
            .then(|| Box::new(self.cfg.clone()));
    }

    /// A passive handshake failed and this listener keeps listening: start
    /// over in Listen, as a fresh engine with a new nonce (everything the
    /// half-open session learnt or buffered goes), keeping the driver's
    /// settings and the counters. `reset`: what to tell the client.
    fn relisten(&mut self, now: Instant, why: &str, reset: Option<(ResetCode, String)>) -> bool {
        let Some(cfg) = self.relisten.as_deref() else {
            return false;
        };
        // Mixed (splitmix64), so each listen's nonce and seal randomness
        // differ from the last's.
        let mut z = self.nonce_seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        let Ok(mut fresh) = Connection::listen(cfg.clone(), now, z ^ (z >> 31)) else {
            return false;
        };
        tracing::info!(peer = %self.remote_inbox, why, "a handshake did not complete; listening again");
        if let Some((code, message)) = reset {
            let mut r = self.base_packet(Kind::Reset, now);
            r.seq = code.to_wire();
            r.data = Bytes::copy_from_slice(error::clip_message(&message).as_bytes());
            fresh.refusals.push_back(r);
        }
        fresh.relisten = self.relisten.take();
        fresh.cookie_key = self.cookie_key;
        // The driver's settings, through the setters it used.
        match self.transport_max_payload {
            Some(most) => fresh.set_transport_max_payload(most),
            None => fresh.set_payload_ceiling(self.payload_ceiling),
        }
        let since = now.saturating_duration_since(self.epoch).as_nanos() as i128;
        fresh.set_wall_clock(now, self.wall_epoch_ns + since);
        fresh.set_transport_capacity(self.capacity.0, self.capacity.1);
        fresh.stats = self.stats;
        fresh.stats.loss.handshakes_abandoned += 1;
        fresh.refusals.extend(self.refusals.drain(..));
        fresh.now_hint = self.now_hint.max(now);
        *self = fresh;
        true
    }

    /// Tells the engine how much the transport beneath can hold for this
    /// session (for NATS: the subscription's pending limits). The reserve for
    /// control packets is subtracted; of the packets left, the receive
    /// window takes at most half (the peer's data) and the flight limit the
    /// rest (the acks of our own flight), so that together they never
    /// overrun it (docs/PROTOCOL.md §6). `None`: no limit of that kind.
    ///
    /// Call it before the first packet goes out: the window the handshake
    /// carries is a promise for the whole session (docs/PROTOCOL.md §6), so
    /// later calls are ignored.
    ///
    /// ```
    /// use swp::proto::{Config, Connection};
    /// let mut b = Connection::listen(Config::new("b", ""), swp::testkit::epoch(), 1).unwrap();
    /// // The subscription holds 256 messages: the window stays below that, with
    /// // room left for control packets.
    /// b.set_transport_capacity(Some(256), None);
    /// let (packets, _bytes) = b.receive_capacity();
    /// assert!(packets < 256);
    /// ```
    pub fn set_transport_capacity(&mut self, packets: Option<u64>, bytes: Option<u64>) {
        self.capacity = (packets, bytes);
        if self.rcv.sent_seq > 0 {
            // The window went out in the handshake: it is a promise for the
            // whole session (the peer sizes its messages and checks our
            // windows by it, §6), so it is not changed any more.
            tracing::debug!("transport capacity changed after the handshake; ignored");
            return;
        }
        // The inbox holds the peer's data (our window), the acknowledgements
        // of what we have in flight, and control packets (the reserve): a
        // small inbox is shared between the first two, half each, so that
        // neither direction can overrun it (§6).
        let usable = packets.map(|t| t.saturating_sub(self.cfg.tuning.reserve_packets));
        let p = usable.map(|u| (u / 2).max(1));
        let b = bytes.map(|b| b.saturating_sub(self.cfg.tuning.reserve_bytes).max(1));
        self.rcv.set_transport_capacity(p, b);
        if let Some(usable) = usable {
            // What the window leaves; an inbox no larger than the reserve
            // (and the window) allows one packet in flight.
            self.snd
                .set_flight_limit(usable.saturating_sub(self.rcv.capacity().0));
        }
    }

    /// Tells the engine the wall clock: `unix_ns` nanoseconds since the Unix
    /// epoch at `now`. Only the Go wire format needs it (its packets carry
    /// wall-clock times); without it those times count from 1970.
    ///
    /// ```
    /// use swp::proto::{Config, Connection, WireFormat};
    /// let now = swp::testkit::epoch();
    /// let cfg = Config::new("a", "b").wire_format(WireFormat::Go);
    /// let mut a = Connection::connect(cfg, now, 1).unwrap();
    /// let unix_ns = swp::testkit::SIM_WALL_CLOCK_NS; // a driver reads the system clock
    /// a.set_wall_clock(now, unix_ns); // Go packets carry wall-clock times
    /// assert!(a.poll_transmit(now).is_some());
    /// ```
    pub fn set_wall_clock(&mut self, now: Instant, unix_ns: i128) {
        self.wall_epoch_ns = unix_ns - now.saturating_duration_since(self.epoch).as_nanos() as i128;
    }

    /// Sets the largest payload per packet (never above what the
    /// transport carries: a session's server's max_payload less the
    /// header). Applies to data written afterwards. With a Go peer the
    /// size then stays as set instead of following the peer's learned
    /// buffer (§13.2).
    ///
    /// ```
    /// # use swp::testkit::Pair;
    /// # use swp::simnet::LinkConfig;
    /// # use std::time::Duration;
    /// # let cfg = |l: &str, r: &str| Pair::default_config(l, r);
    /// # let mut pair = Pair::new(1, LinkConfig::new(), cfg("a", "b"), cfg("b", ""));
    /// # assert!(pair.connect(Duration::from_secs(5)));
    /// pair.a.set_max_payload(1000);
    /// pair.a.write(&[0u8; 5000]).unwrap();
    /// assert!(pair.run_until(Duration::from_secs(5), |p| p.a.bytes_acked() == 5000));
    /// assert_eq!(pair.a.stats().data.packets_sent, 5); // 1000 bytes each
    /// ```
    pub fn set_max_payload(&mut self, bytes: usize) {
        self.cfg.tuning.max_payload_set = true;
        self.use_max_payload(bytes);
    }

    /// The transport carries messages of at most `max_payload` bytes (the
    /// NATS server's max_payload): packets are sized so that the largest
    /// header this session can send fits beside their data, and resized
    /// when the peer's inbox is learnt (a listener counts 64 bytes for it
    /// until then). See [`Connection::largest_header`].
    pub(crate) fn set_transport_max_payload(&mut self, max_payload: usize) {
        self.transport_max_payload = Some(max_payload);
        self.set_payload_ceiling(max_payload.saturating_sub(self.largest_header()));
    }

    /// The most bytes any packet of this session can take beside its data:
    /// the native or Go header at its largest (every SACK range, every
    /// field at its widest), both inboxes and nonces, and the seal. A peer
    /// inbox not known yet is counted as 64 bytes (NATS's `_INBOX.` names
    /// are 29, swp's own 25).
    pub(crate) fn largest_header(&self) -> usize {
        let remote = self.remote_inbox.len().max(64);
        let names = self.local_inbox.len() * 2 + remote * 2 + 128;
        let sealing = if self.cfg.tuning().sealing().is_some() {
            seal::SEALED_OVERHEAD
        } else {
            0
        };
        codec::max_overhead(names).max(golink::max_overhead(names)) + sealing
    }

    /// The largest payload a packet carries under the transport's limit.
    pub(crate) fn payload_ceiling(&self) -> usize {
        self.payload_ceiling
    }

    /// The peer's inbox is now `inbox`: a longer one than was counted
    /// shrinks the packets so that every one still fits the transport.
    fn learn_remote_inbox(&mut self, inbox: Str) {
        self.remote_inbox = inbox;
        if let Some(most) = self.transport_max_payload {
            let ceiling = most.saturating_sub(self.largest_header());
            if ceiling < self.payload_ceiling {
                tracing::debug!(
                    peer = %self.remote_inbox,
                    ceiling,
                    "the peer's inbox is long: packets shrink to fit the transport"
                );
                self.set_payload_ceiling(ceiling);
            }
        }
    }

    /// The transport carries at most `bytes` of payload per packet: the
    /// packet size is lowered to it, and never raised beyond it.
    pub(crate) fn set_payload_ceiling(&mut self, bytes: usize) {
        self.payload_ceiling = bytes.max(1);
        self.use_max_payload(self.cfg.tuning.max_payload);
    }

    /// Queues data in packets of at most `bytes` (1 to the ceiling), then
    /// lets a Go peer's rule size them (§13.2).
    fn use_max_payload(&mut self, bytes: usize) {
        let n = bytes.clamp(1, self.payload_ceiling);
        self.cfg.tuning.max_payload = n;
        self.snd.set_max_payload(n);
        self.fit_go_packets();
    }

    /// Packet sizes for a Go peer (§13.2): never above the buffer's floor;
    /// unless the application chose a size, chunks are queued at the
    /// floor (within the transport's and the send buffer's limits) and
    /// sent in packets of `PeerBuffer::auto_packet` (an eighth of the
    /// floor, or a sixteenth of the learned buffer once that is more).
    fn fit_go_packets(&mut self) {
        let Some(b) = self.dialect.peer_buffer() else {
            return;
        };
        if self.cfg.tuning.max_payload_set {
            self.snd.set_packet_limit(b.packet_limit());
            return;
        }
        let most = b
            .packet_limit()
            .min(self.payload_ceiling as u64)
            .min(self.cfg.tuning.send_buffer_bytes)
            .max(1) as usize;
        let packet = b.auto_packet();
        self.cfg.tuning.max_payload = most;
        self.snd.set_max_payload(most);
        self.snd.set_packet_limit(packet);
    }

    // ------------------------------------------------------------------
    // application commands

    /// Queues stream bytes; returns how many were accepted (0 when the send
    /// buffer is full: wait for [`Event::Writable`]).
    ///
    /// ```
    /// # use swp::testkit::Pair;
    /// # use swp::simnet::LinkConfig;
    /// # use std::time::Duration;
    /// # let cfg = |l: &str, r: &str| Pair::default_config(l, r);
    /// # let mut pair = Pair::new(1, LinkConfig::new(), cfg("a", "b"), cfg("b", ""));
    /// # assert!(pair.connect(Duration::from_secs(5)));
    /// use swp::proto::Recv;
    /// assert_eq!(pair.a.write(b"stream bytes").unwrap(), 12);
    /// assert!(pair.run_until(Duration::from_secs(5), |p| p.b.held().1 == 12));
    /// let mut buf = [0u8; 64];
    /// assert_eq!(pair.b.read(&mut buf).unwrap(), Recv::Data(12));
    /// ```
    pub fn write(&mut self, data: &[u8]) -> Result<usize, WriteError> {
        self.check_writable()?;
        let n = self.snd.write(data);
        if n < data.len() {
            self.write_blocked = true;
        }
        Ok(n)
    }

    /// Queues one message; its boundaries are preserved for
    /// [`recv_message`](Self::recv_message). Fails with
    /// [`WriteError::Blocked`] when the send buffer lacks room (wait for
    /// [`Event::Writable`]) and [`WriteError::TooLarge`] when the message
    /// cannot fit the peer's receive window.
    ///
    /// ```
    /// # use swp::testkit::Pair;
    /// # use swp::simnet::LinkConfig;
    /// # use std::time::Duration;
    /// # let cfg = |l: &str, r: &str| Pair::default_config(l, r);
    /// # let mut pair = Pair::new(1, LinkConfig::new(), cfg("a", "b"), cfg("b", ""));
    /// # assert!(pair.connect(Duration::from_secs(5)));
    /// use swp::proto::{Recv, WriteError};
    /// pair.a.send_message("one".into()).unwrap();
    /// pair.a.send_message("two".into()).unwrap();
    /// assert!(pair.run_until(Duration::from_secs(5), |p| p.b.held().0 > 0));
    /// assert_eq!(pair.b.recv_message().unwrap(), Recv::Data("one".into()));
    /// assert_eq!(pair.b.recv_message().unwrap(), Recv::Data("two".into()));
    /// // Larger than the peer's window can ever hold:
    /// let huge = bytes::Bytes::from(vec![0u8; 64 << 20]);
    /// assert!(matches!(pair.a.send_message(huge), Err(WriteError::TooLarge { .. })));
    /// ```
    pub fn send_message(&mut self, msg: Bytes) -> Result<MessageId, WriteError> {
        self.check_writable()?;
        let len = msg.len() as u64;
        let Some(max) = self.max_message_size() else {
            // The peer's window, which bounds a message, is learnt in the
            // handshake; Event::Writable follows it.
            self.write_blocked = true;
            return Err(WriteError::Blocked);
        };
        if len > max {
            return Err(WriteError::TooLarge { len, max });
        }
        if len > self.snd.buffer_space() || (len == 0 && self.snd.buffer_space() == 0) {
            self.write_blocked = true;
            return Err(WriteError::Blocked);
        }
        Ok(self.snd.push_message(msg))
    }

    /// Largest message [`send_message`](Self::send_message) accepts: it must
    /// fit our send buffer and the peer's whole receive window (its bytes,
    /// and its packets at `max_payload` bytes each). `None` until the
    /// handshake has told us the peer's window.
    ///
    /// ```
    /// use swp::proto::Config;
    /// use swp::testkit::Pair;
    /// use swp::simnet::LinkConfig;
    /// use std::time::Duration;
    /// // The receiver holds 4 packets and 10,000 bytes; packets carry 1000.
    /// let a = Config::new("a", "b").max_payload(1000);
    /// let b = Config::new("b", "").max_payload(1000).window(4, 10_000);
    /// let mut pair = Pair::new(1, LinkConfig::new(), a, b);
    /// assert_eq!(pair.a.max_message_size(), None); // not known before the handshake
    /// assert!(pair.connect(Duration::from_secs(5)));
    /// assert_eq!(pair.a.max_message_size(), Some(4000)); // 4 packets of 1000
    /// assert!(pair.a.send_message(bytes::Bytes::from(vec![0u8; 4000])).is_ok());
    /// ```
    pub fn max_message_size(&self) -> Option<u64> {
        let (pkts, bytes) = self.snd.peer_capacity?;
        let per_packet = self.cfg.tuning.max_payload as u64;
        // A message is cut into packets of max_payload when it is queued and
        // those are never split again, so it needs ceil(len / max_payload)
        // of the peer's packet slots and len of its bytes: a message within
        // both always fits the peer's window whole, and a reader of whole
        // messages can never be left with a window full of an unfinished one.
        let mut max = self
            .cfg
            .tuning
            .send_buffer_bytes
            .min(bytes)
            .min(pkts.saturating_mul(per_packet));
        if self.dialect.one_packet_per_message() {
            max = max.min(per_packet);
        }
        Some(max)
    }

    fn check_writable(&self) -> Result<(), WriteError> {
        if let Some(r) = self.close_reason() {
            return Err(WriteError::Closed(r.clone()));
        }
        if self.app_closed() {
            return Err(WriteError::Finished);
        }
        Ok(())
    }

    /// Copies in-order stream bytes into `buf`.
    ///
    /// ```
    /// # use swp::testkit::Pair;
    /// # use swp::simnet::LinkConfig;
    /// # use std::time::Duration;
    /// # let cfg = |l: &str, r: &str| Pair::default_config(l, r);
    /// # let mut pair = Pair::new(1, LinkConfig::new(), cfg("a", "b"), cfg("b", ""));
    /// # assert!(pair.connect(Duration::from_secs(5)));
    /// use swp::proto::Recv;
    /// pair.a.write(b"hello, world").unwrap();
    /// assert!(pair.run_until(Duration::from_secs(5), |p| p.b.held().1 == 12));
    /// let mut buf = [0u8; 5];
    /// assert_eq!(pair.b.read(&mut buf).unwrap(), Recv::Data(5)); // as much as fits
    /// assert_eq!(&buf, b"hello");
    /// assert_eq!(pair.b.read(&mut buf).unwrap(), Recv::Data(5));
    /// assert_eq!(&buf, b", wor");
    /// ```
    pub fn read(&mut self, buf: &mut [u8]) -> Result<Recv<usize>, ReadError> {
        if buf.is_empty() {
            return Ok(Recv::Data(0));
        }
        let n = self.rcv.read(buf);
        self.after_read(n as u64);
        if n > 0 {
            return Ok(Recv::Data(n));
        }
        self.read_status()
    }

    /// Takes up to `max` in-order bytes without copying (one packet's worth
    /// at most).
    ///
    /// ```
    /// # use swp::testkit::Pair;
    /// # use swp::simnet::LinkConfig;
    /// # use std::time::Duration;
    /// # let cfg = |l: &str, r: &str| Pair::default_config(l, r);
    /// # let mut pair = Pair::new(1, LinkConfig::new(), cfg("a", "b"), cfg("b", ""));
    /// # assert!(pair.connect(Duration::from_secs(5)));
    /// use swp::proto::Recv;
    /// pair.a.write(b"no copy").unwrap();
    /// assert!(pair.run_until(Duration::from_secs(5), |p| p.b.held().1 == 7));
    /// // A slice of the received packet (shares its memory).
    /// assert_eq!(pair.b.read_chunk(2).unwrap(), Recv::Data("no".into()));
    /// assert_eq!(pair.b.read_chunk(usize::MAX).unwrap(), Recv::Data(" copy".into()));
    /// assert_eq!(pair.b.read_chunk(usize::MAX).unwrap(), Recv::Blocked);
    /// ```
    pub fn read_chunk(&mut self, max: usize) -> Result<Recv<Bytes>, ReadError> {
        match self.rcv.read_chunk(max) {
            Some(b) => {
                self.after_read(b.len() as u64);
                Ok(Recv::Data(b))
            }
            None => self.read_status(),
        }
    }

    /// The next whole message, in order.
    ///
    /// ```
    /// # use swp::testkit::Pair;
    /// # use swp::simnet::LinkConfig;
    /// # use std::time::Duration;
    /// # let cfg = |l: &str, r: &str| Pair::default_config(l, r);
    /// # let mut pair = Pair::new(1, LinkConfig::new(), cfg("a", "b"), cfg("b", ""));
    /// # assert!(pair.connect(Duration::from_secs(5)));
    /// use swp::proto::Recv;
    /// pair.a.send_message(bytes::Bytes::from(vec![5u8; 200_000])).unwrap(); // several packets
    /// assert!(pair.run_until(Duration::from_secs(5), |p| p.a.bytes_acked() == 200_000));
    /// match pair.b.recv_message().unwrap() {
    ///     Recv::Data(m) => assert_eq!(m.len(), 200_000), // boundaries preserved
    ///     other => panic!("{other:?}"),
    /// }
    /// ```
    pub fn recv_message(&mut self) -> Result<Recv<Bytes>, ReadError> {
        match self.rcv.recv_message() {
            Some(m) => {
                self.after_read(m.len() as u64);
                Ok(Recv::Data(m))
            }
            None if self.rcv.has_ready() && self.rcv.fin.is_some() => {
                // The stream ended inside a message: hand over what is left.
                let mut v = Vec::new();
                while let Some(c) = self.rcv.read_chunk(usize::MAX) {
                    v.extend_from_slice(&c);
                }
                self.after_read(v.len() as u64);
                Ok(Recv::Data(Bytes::from(v)))
            }
            None if self.rcv.message_cannot_end() && self.is_established() => {
                // The peer broke the rule of §10: waiting would be for ever.
                let (held_p, held_b) = self.held();
                let why = format!(
                    "a message larger than our receive window ({held_p} packets, {held_b} \
                     bytes held and no end of message)"
                );
                self.finish(self.now_hint, CloseReason::ProtocolViolation(why), true);
                self.read_status()
            }
            None => self.read_status(),
        }
    }

    /// The next packet payload delivered as soon as it arrived (unordered,
    /// possibly duplicated; each message of a batch packet separately);
    /// only with [`Config::asap`].
    ///
    /// ```
    /// use swp::testkit::Pair;
    /// use swp::simnet::LinkConfig;
    /// use std::time::Duration;
    /// let a_cfg = Pair::default_config("a", "b");
    /// let b_cfg = Pair::default_config("b", "").asap(Some(16)); // keep at most 16
    /// let mut pair = Pair::new(1, LinkConfig::new(), a_cfg, b_cfg);
    /// assert!(pair.connect(Duration::from_secs(5)));
    /// pair.a.send_message("early".into()).unwrap();
    /// assert!(pair.run_until(Duration::from_secs(5), |p| p.b.held().0 > 0));
    /// assert_eq!(pair.b.poll_asap().unwrap(), "early");
    /// // Ordered delivery is unaffected.
    /// assert_eq!(pair.b.recv_message().unwrap(), swp::proto::Recv::Data("early".into()));
    /// ```
    pub fn poll_asap(&mut self) -> Option<Bytes> {
        self.rcv.pop_asap()
    }

    /// Entries the as-soon-as-possible queue dropped because it was full.
    ///
    /// ```
    /// use swp::testkit::Pair;
    /// use swp::simnet::LinkConfig;
    /// use std::time::Duration;
    /// let b_cfg = Pair::default_config("b", "").asap(Some(2)); // room for 2
    /// let mut pair = Pair::new(1, LinkConfig::new(), Pair::default_config("a", "b"), b_cfg);
    /// assert!(pair.connect(Duration::from_secs(5)));
    /// for m in ["1", "2", "3"] {
    ///     pair.a.send_message(m.into()).unwrap();
    ///     assert!(pair.run_until(Duration::from_secs(5), |p| p.a.bytes_acked() == p.a.bytes_written()));
    /// }
    /// assert_eq!(pair.b.asap_dropped(), 1); // the oldest went
    /// assert_eq!(pair.b.poll_asap().unwrap(), "2");
    /// ```
    pub fn asap_dropped(&self) -> u64 {
        self.rcv.asap_dropped
    }

    fn read_status<T>(&self) -> Result<Recv<T>, ReadError> {
        if self.rcv.has_ready() {
            // A message is incomplete; after a failure it never completes.
            return match self.close_reason() {
                Some(r) if !r.is_normal() => Err(ReadError::Closed(r.clone())),
                _ => Ok(Recv::Blocked),
            };
        }
        if self.rcv.at_eof() {
            return Ok(Recv::Finished);
        }
        match self.close_reason() {
            Some(CloseReason::Normal) => Ok(Recv::Finished),
            Some(r) => Err(ReadError::Closed(r.clone())),
            None => Ok(Recv::Blocked),
        }
    }

    fn after_read(&mut self, _n: u64) {
        if std::mem::take(&mut self.ack_on_read) {
            self.ack_immediate = true;
        }
        if self.is_established() && self.rcv.window_update_due(self.snd.full_packet() as u64) {
            self.ack_immediate = true;
            self.stats.wire.window_updates_sent += 1;
        }
    }

    /// Graceful close of our direction: a Fin is sent once the handshake is
    /// done and everything written has been acknowledged. Reading goes on
    /// until the peer's Fin. A listener that never got a Syn just stops.
    ///
    /// ```
    /// # use swp::testkit::Pair;
    /// # use swp::simnet::LinkConfig;
    /// # use std::time::Duration;
    /// # let cfg = |l: &str, r: &str| Pair::default_config(l, r);
    /// # let mut pair = Pair::new(1, LinkConfig::new(), cfg("a", "b"), cfg("b", ""));
    /// # assert!(pair.connect(Duration::from_secs(5)));
    /// use swp::proto::{CloseReason, Recv};
    /// pair.a.write(b"last words").unwrap();
    /// pair.a.close(pair.now()); // the Fin follows the data
    /// pair.b.close(pair.now());
    /// assert!(pair.run_until(Duration::from_secs(30), |p| p.a.is_closed() && p.b.is_closed()));
    /// assert_eq!(pair.a.close_reason(), Some(&CloseReason::Normal));
    /// let mut buf = [0u8; 32];
    /// assert_eq!(pair.b.read(&mut buf).unwrap(), Recv::Data(10)); // still readable
    /// ```
    pub fn close(&mut self, now: Instant) {
        match &mut self.phase {
            Phase::Closed(_) => {}
            Phase::Listen => self.finish(
                now,
                CloseReason::Aborted {
                    reason: String::new(),
                },
                false,
            ),
            Phase::SynSent(h) | Phase::SynReceived(h) => h.close_requested = true,
            Phase::Open(o) => {
                if *o == Ours::Writing {
                    *o = Ours::Closing;
                }
            }
        }
    }

    /// Ends the session at once: a Reset tells the peer, nothing more is
    /// sent or delivered.
    ///
    /// ```
    /// # use swp::testkit::Pair;
    /// # use swp::simnet::LinkConfig;
    /// # use std::time::Duration;
    /// # let cfg = |l: &str, r: &str| Pair::default_config(l, r);
    /// # let mut pair = Pair::new(1, LinkConfig::new(), cfg("a", "b"), cfg("b", ""));
    /// # assert!(pair.connect(Duration::from_secs(5)));
    /// use swp::proto::{CloseReason, ReadError};
    /// pair.a.abort(pair.now());
    /// assert!(pair.run_until(Duration::from_secs(5), |p| p.b.is_closed()));
    /// let mut buf = [0u8; 4];
    /// assert!(matches!(pair.b.read(&mut buf), Err(ReadError::Closed(CloseReason::Reset { .. }))));
    /// ```
    pub fn abort(&mut self, now: Instant) {
        if !self.is_closed() {
            let tell = !self.remote_nonce.is_empty();
            let reason = String::new();
            self.finish(now, CloseReason::Aborted { reason }, tell);
        }
    }

    /// Ends the session at once, like [`abort`](Self::abort), and tells the
    /// peer why: its session ends with [`CloseReason::Reset`] carrying
    /// [`ResetCode::Application`] and `reason` (cut to
    /// [`MAX_RESET_MESSAGE`](super::MAX_RESET_MESSAGE) bytes). Use it for
    /// local failures the peer must learn about (a full disk, an unreadable
    /// source) instead of leaving it to wait.
    ///
    /// ```
    /// # use swp::testkit::Pair;
    /// # use swp::simnet::LinkConfig;
    /// # use std::time::Duration;
    /// # let cfg = |l: &str, r: &str| Pair::default_config(l, r);
    /// # let mut pair = Pair::new(1, LinkConfig::new(), cfg("a", "b"), cfg("b", ""));
    /// # assert!(pair.connect(Duration::from_secs(5)));
    /// use swp::proto::{CloseReason, ResetCode};
    /// pair.b.abort_with(pair.now(), "cannot write incoming/x.bin: No space left on device");
    /// assert!(pair.run_until(Duration::from_secs(5), |p| p.a.is_closed()));
    /// assert_eq!(
    ///     pair.a.close_reason().unwrap().to_string(),
    ///     "the peer reset the session: cannot write incoming/x.bin: No space left on device"
    /// );
    /// ```
    pub fn abort_with(&mut self, now: Instant, reason: impl AsRef<str>) {
        self.abort_because(now, ResetCode::Application, reason.as_ref());
    }

    /// `abort_with` for drivers: a Reset with this `code` (e.g.
    /// [`ResetCode::Transport`] when the driver's transport failed).
    ///
    /// ```
    /// # use swp::testkit::Pair;
    /// # use swp::simnet::LinkConfig;
    /// # use std::time::Duration;
    /// # let cfg = |l: &str, r: &str| Pair::default_config(l, r);
    /// # let mut pair = Pair::new(1, LinkConfig::new(), cfg("a", "b"), cfg("b", ""));
    /// # assert!(pair.connect(Duration::from_secs(5)));
    /// use swp::proto::{CloseReason, ResetCode};
    /// pair.a.abort_because(pair.now(), ResetCode::Transport, "its NATS client is gone");
    /// assert!(pair.run_until(Duration::from_secs(5), |p| p.b.is_closed()));
    /// assert!(matches!(pair.b.close_reason(), Some(CloseReason::Reset { code: ResetCode::Transport, .. })));
    /// ```
    pub fn abort_because(&mut self, now: Instant, code: ResetCode, reason: &str) {
        if !self.is_closed() {
            let msg = error::clip_message(reason).to_string();
            self.reset_out = Some((code, msg.clone()));
            let tell = !self.remote_nonce.is_empty();
            self.finish(now, CloseReason::Aborted { reason: msg }, tell);
        }
    }

    // ------------------------------------------------------------------
    // inputs

    /// Handles one packet's bytes from the transport. Malformed packets are
    /// counted in [`DropStats::invalid`](super::stats::DropStats::invalid) and dropped; this never fails.
    ///
    /// ```
    /// use swp::proto::{Config, Connection};
    /// let t0 = swp::testkit::epoch();
    /// let mut a = Connection::connect(Config::new("a", "b"), t0, 1).unwrap();
    /// let mut b = Connection::listen(Config::new("b", ""), t0, 2).unwrap();
    /// let syn = a.poll_transmit(t0).unwrap();
    /// b.handle_packet(t0, syn.payload); // bytes from the network
    /// assert!(b.poll_transmit(t0).is_some()); // its SynAck
    /// // Garbage is counted and dropped, never a panic.
    /// b.handle_packet(t0, bytes::Bytes::from_static(b"not a packet"));
    /// assert_eq!(b.stats().dropped.invalid, 1);
    /// ```
    pub fn handle_packet(&mut self, now: Instant, bytes: Bytes) {
        self.now_hint = self.now_hint.max(now);
        self.stats.wire.bytes_received += bytes.len() as u64;
        if let Some(s) = self.sealer.as_mut()
            && seal::is_sealed_frame(&bytes)
        {
            match s.open(&bytes).map(|inner| codec::decode(&inner)) {
                Ok(Ok(p)) => {
                    self.on_packet(now, p, true);
                    self.update_timers(now);
                }
                Ok(Err(e)) => self.on_invalid(&e),
                Err(e) => {
                    self.stats.dropped.forged += 1;
                    tracing::trace!(error = %e, "dropped a sealed frame");
                }
            }
            return;
        }
        let listening = matches!(self.phase, Phase::Listen);
        let decoded = match self.dialect.decode(listening, &bytes) {
            Ok(Decoded::Native(p)) => Ok(Some(p)),
            Ok(Decoded::Go(inb)) => Ok(self.complete_go(inb)),
            Err(e) => Err(e),
        };
        match decoded {
            Ok(Some(p)) => self.handle_decoded(now, p),
            Ok(None) => {}
            Err(e) => self.on_invalid(&e),
        }
    }

    /// Completes a packet from a Go peer with what only this side knows:
    /// absolute ack and window edges, a Fin's end of stream. `None`: drop it.
    fn complete_go(&mut self, inb: Inbound) -> Option<Packet> {
        let mut p = inb.packet;
        if matches!(self.dialect, Dialect::Native) {
            if p.kind != Kind::Syn {
                self.stats.dropped.unexpected += 1;
                return None;
            }
            tracing::debug!(peer = %p.from, "a Go peer: answering in go-sliding-window's format");
            self.speak_go();
        }
        let (una, nxt) = (self.snd.snd_una, self.snd.snd_nxt);
        // Go's caps are relative to the ack in the same packet. Where that
        // ack is not meaningful they are used only while nothing is in
        // flight, when our own cumulative ack is the same number.
        let base = match inb.ack {
            Some(a) if a >= una && a <= nxt => Some(a),
            Some(_) => None,
            None => (una == nxt).then_some(una),
        };
        p.ack = inb.ack.filter(|a| *a >= una && *a <= nxt).unwrap_or(una);
        // Go acks what its application consumed and has no SACK: after a
        // run of losses, knowing that a retransmission (not a late
        // original) was consumed lets RACK mark the rest of the run lost
        // at once, instead of one timeout per hole. Only an exact echo of
        // the latest transmission of the last packet acknowledged counts.
        self.go_echo = None;
        if let Some(ns) = inb.echo_ns.filter(|_| p.ack > una)
            && let Some(sent) = self.snd.retransmitted_at(p.ack - 1)
        {
            let sent_us = sent.saturating_duration_since(self.epoch).as_micros() as i128;
            if (ns - self.wall_epoch_ns).div_euclid(1000) == sent_us {
                self.go_echo = Some(sent);
                // The copy consumed was a retransmission (a timeout's
                // or a tail probe's): the original was lost.
                self.go_peer_lost();
            }
        }
        if let Some(b) = base {
            p.wnd_seq = b.saturating_add(inb.msg_cap);
            // Whatever a Go receiver advertises, its subscription may
            // hold less (§13.2, Tuning::go_peer_buffer).
            let in_flight = self.snd.bytes_sent - self.snd.bytes_acked;
            let (queued, packet) = (self.snd.has_queued(), self.snd.full_packet() as u64);
            let cap = match self.dialect.peer_buffer_mut() {
                Some(buffer) => {
                    buffer.on_advertised(inb.byte_cap, in_flight, queued, packet);
                    buffer.cap()
                }
                None => self.cfg.tuning.go_peer_buffer, // not reached: Go's dialect is set above
            };
            let cap = inb.byte_cap.min(cap);
            p.wnd_bytes = self.snd.end_offset_before(b).saturating_add(cap);
        }
        match p.kind {
            // A Go Fin carries no seq: it ends after the highest data seen.
            Kind::Fin => p.seq = self.rcv.highest_seen(),
            Kind::FinAck => p.seq = nxt,
            _ => {}
        }
        // A Go client may send data before its EstabAck, still without our
        // nonce; its own nonce identifies it (go-swp capture 2).
        if matches!(self.phase, Phase::SynReceived(_))
            && p.kind != Kind::Syn
            && p.dest_nonce.is_empty()
            && p.from_nonce == self.remote_nonce
        {
            p.dest_nonce = self.local_nonce.clone();
        }
        Some(p)
    }

    /// Whether `p` is another client's Syn that may take this listener from
    /// the half-open handshake it holds (§4): a listener that keeps
    /// listening, plain and native, whose client has not been heard for a
    /// whole handshake interval, and a Syn its listen would accept.
    fn stale_for(&self, now: Instant, p: &Packet) -> bool {
        let (Phase::SynReceived(h), Some(cfg)) = (&self.phase, self.relisten.as_deref()) else {
            return false;
        };
        p.kind == Kind::Syn
            && p.dest == self.local_inbox
            && !p.from_nonce.is_empty()
            && p.from_nonce != self.remote_nonce
            && (cfg.remote_inbox.is_empty() || p.from == cfg.remote_inbox.as_str())
            && self.sealer.is_none()
            && matches!(self.dialect, Dialect::Native)
            && now.saturating_duration_since(self.last_heard) >= h.interval
    }

    /// A listener that keeps listening (plain, native) answers the Syns
    /// of other clients while a half-open handshake holds it with a SYN
    /// cookie (§4, as TCP's when its backlog is full): a SynAck whose nonce
    /// is a MAC of the client's inbox and nonce (and whether it batches),
    /// keeping no state. A client that answers it with anything carrying
    /// that nonce takes the listener from the half-open handshake. So a
    /// flood of forged Syns cannot keep a real client out; each Syn gets at
    /// most one SynAck (a few queued at once), no retransmits.
    fn cookies_on(&self) -> bool {
        self.relisten.is_some() && self.sealer.is_none() && matches!(self.dialect, Dialect::Native)
    }

    /// The cookie this listener gives the client `from`, `from_nonce`
    /// (`batch`: its Syn said it reads batches): a nonce's 30 characters,
    /// the first saying `batch`.
    fn cookie(&self, from: &str, from_nonce: &str, batch: bool) -> String {
        let tag = if batch { b'b' } else { b'n' };
        let mac = crate::digest::keyed(
            &self.cookie_key,
            &[&[tag], from.as_bytes(), from_nonce.as_bytes()],
        );
        std::iter::once(tag as char)
            .chain(
                mac.iter()
                    .take(29)
                    .map(|b| NONCE_ALPHABET[*b as usize % NONCE_ALPHABET.len()] as char),
            )
            .collect()
    }

    /// Whether `p`'s destination nonce is a cookie this listener gave its
    /// sender; with the batching it says.
    fn cookie_of(&self, p: &Packet) -> Option<bool> {
        let batch = match p.dest_nonce.as_bytes().first() {
            Some(b'b') => true,
            Some(b'n') => false,
            _ => return None,
        };
        (p.dest_nonce.len() == 30
            && self.cookie(&p.from, &p.from_nonce, batch) == p.dest_nonce.as_str())
        .then_some(batch)
    }

    /// Handles what SYN cookies concern (see [`cookies_on`](Self::cookies_on)):
    /// another client's Syn while a half-open handshake holds the
    /// listener, and any packet carrying a cookie. `true`: handled.
    fn cookie_packet(&mut self, now: Instant, p: &Packet) -> bool {
        let bound = self.relisten.as_deref().map(|c| c.remote_inbox.as_str());
        if !self.cookies_on()
            || p.dest != self.local_inbox
            || p.from_nonce.is_empty()
            || p.from_nonce == self.remote_nonce
            || bound.is_some_and(|b| !b.is_empty() && p.from != b)
        {
            return false;
        }
        if p.kind == Kind::Syn {
            if !matches!(self.phase, Phase::SynReceived(_)) || self.stale_for(now, p) {
                return false;
            }
            if self.refusals.len() >= MAX_QUEUED_ANSWERS {
                self.stats.dropped.unexpected += 1;
                return true;
            }
            let mut a = self.base_packet(Kind::SynAck, now);
            a.flags |= self.batch_ok_flag();
            a.dest = p.from.clone();
            a.from_nonce = Str::from(self.cookie(&p.from, &p.from_nonce, p.has(flags::BATCH_OK)));
            a.dest_nonce = p.from_nonce.clone();
            a.ack = self.rcv.rcv_nxt;
            a.ts_echo = p.ts;
            self.stats.wire.cookies_sent += 1;
            self.refusals.push_back(a);
            return true;
        }
        if p.dest_nonce == self.local_nonce {
            return false;
        }
        let Some(batch) = self.cookie_of(p) else {
            return false;
        };
        if p.kind == Kind::Reset {
            // It gave up, or took another listener's answer: nothing to
            // take, and no state to let go.
            if reset_reason(p).0 == ResetCode::AnsweredElsewhere {
                tracing::warn!(
                    client = %p.from,
                    inbox = %self.local_inbox,
                    "a client took another listener's answer: more than one listens on this subject"
                );
            }
            self.stats.dropped.foreign += 1;
            return true;
        }
        match self.phase {
            Phase::Listen | Phase::SynReceived(_) => {
                if matches!(self.phase, Phase::SynReceived(_)) {
                    let told = "another client completed its handshake while this one was \
                                half-open; connect again"
                        .to_string();
                    if !self.relisten(
                        now,
                        "another client answered a SYN cookie",
                        Some((ResetCode::Unreachable, told)),
                    ) {
                        return true;
                    }
                }
                self.learn_remote_inbox(p.from.clone());
                self.remote_nonce = p.from_nonce.clone();
                self.local_nonce = p.dest_nonce.clone();
                self.phase = Phase::SynReceived(self.new_handshake(now));
                self.snd.set_batching(
                    self.cfg.tuning.batch_messages && self.dialect.batches() && batch,
                );
                self.stats.wire.cookies_taken += 1;
                tracing::debug!(peer = %p.from, "took a client that answered a SYN cookie");
                self.on_packet_inner(now, p.clone());
            }
            _ => {
                // Taken by another client since: say so at once, rather
                // than leave a client that believes it got in.
                self.queue_reset(
                    p,
                    p.dest_nonce.clone(),
                    ResetCode::Busy,
                    "this listener took another client first and serves one session: \
                     connect again when it listens again",
                );
                self.stats.dropped.foreign += 1;
            }
        }
        true
    }

    /// Whether `p` is for this session by its inboxes (§3).
    fn addressed_to_us(&self, p: &Packet) -> bool {
        // A service client's handshake is answered from the session's
        // private inbox, not from the service subject it sent its Syn to
        // (docs/PROTOCOL.md §4.1): in SynSent its SynAck (or a refusal) may
        // come from anywhere; the nonce decides.
        let redirectable = self.cfg.service_client
            && matches!(self.phase, Phase::SynSent(_))
            && matches!(p.kind, Kind::SynAck | Kind::Reset);
        p.dest == self.local_inbox
            && (self.remote_inbox.is_empty() || p.from == self.remote_inbox || redirectable)
    }

    /// What a sealed session (§14) lets through to the protocol: packets
    /// that opened with the session key, and the handshake messages in
    /// Syn and SynAck (read here, and replaced by the authenticated packet
    /// they carry). Everything else plain is dropped and counted. A plain
    /// session refuses a sealed Syn.
    fn sealed_gate(&mut self, now: Instant, p: Packet, authentic: bool) -> Option<Packet> {
        if self.drained() {
            return None;
        }
        let for_us = self.addressed_to_us(&p);
        let Some(sealer) = self.sealer.as_mut() else {
            if p.kind == Kind::Syn
                && p.has(flags::SEALED)
                && for_us
                && matches!(self.phase, Phase::Listen)
            {
                self.stats.dropped.unsealed += 1;
                self.refuse(
                    now,
                    &p,
                    "this listener does not seal sessions: connect without a key, or start the listener with one",
                );
                return None;
            }
            return Some(p);
        };
        if authentic {
            if matches!(p.kind, Kind::Syn | Kind::SynAck) {
                self.stats.dropped.unexpected += 1;
                return None;
            }
            return Some(p);
        }
        if !for_us {
            return Some(p); // counted as foreign by the usual filter
        }
        let sealed = p.has(flags::SEALED);
        match (p.kind, &self.phase) {
            (Kind::Syn, Phase::Listen) if sealed && !p.from_nonce.is_empty() => {
                match sealer.handshake_in(&p.data) {
                    Ok(HandshakeIn::Packet(inner)) => self.authenticated_header(&p, &inner),
                    Ok(HandshakeIn::Repeat) => None,
                    Err(why) => {
                        self.stats.dropped.forged += 1;
                        tracing::debug!(peer = %p.from, why, "refused a sealed Syn");
                        self.refuse(
                            now,
                            &p,
                            &format!("the sealed handshake failed at the listener: {why}"),
                        );
                        None
                    }
                }
            }
            (Kind::Syn, Phase::Listen) if !p.from_nonce.is_empty() => {
                self.stats.dropped.unsealed += 1;
                self.refuse(
                    now,
                    &p,
                    "this listener accepts only sealed sessions: connect with its public key (--peer-key) or the pre-shared secret (--psk-file)",
                );
                None
            }
            (Kind::Syn, Phase::SynReceived(_)) if sealed && p.from_nonce == self.remote_nonce => {
                match sealer.handshake_in(&p.data) {
                    Ok(HandshakeIn::Repeat) => self.pending.synack = true, // our SynAck was lost
                    _ => self.stats.dropped.forged += 1,
                }
                None
            }
            (Kind::SynAck, Phase::SynSent(_)) if sealed && p.dest_nonce == self.local_nonce => {
                match sealer.handshake_in(&p.data) {
                    Ok(HandshakeIn::Packet(inner)) => self.authenticated_header(&p, &inner),
                    Ok(HandshakeIn::Repeat) => None,
                    Err(why) => {
                        self.stats.dropped.forged += 1;
                        self.seal_trouble = Some(format!(
                            "an answer from {} failed the sealed handshake: {why}",
                            p.from
                        ));
                        None
                    }
                }
            }
            (Kind::SynAck, Phase::Open(_)) if sealed && p.from_nonce == self.remote_nonce => {
                match sealer.handshake_in(&p.data) {
                    Ok(HandshakeIn::Repeat) => {
                        self.pending.estab = true; // our EstabAck was lost
                    }
                    _ => self.stats.dropped.forged += 1,
                }
                None
            }
            (Kind::Reset, Phase::SynSent(_)) if p.dest_nonce == self.local_nonce => {
                // A refusal cannot be authenticated before the handshake:
                // believing it would let anyone on the path stop a sealed
                // connect. It is kept for the error if the connect fails.
                let (code, message) = reset_reason(&p);
                self.stats.dropped.unsealed += 1;
                self.seal_trouble = Some(format!(
                    "{} answered with an unauthenticated refusal ({code:?}): {message}",
                    p.from
                ));
                None
            }
            _ => {
                self.stats.dropped.unsealed += 1;
                None
            }
        }
    }

    /// The packet a verified handshake message carried: it must match the
    /// plain packet around it (kind, sender, nonces); its `dest` is the
    /// outer one, which a service rewrites to its private inbox (§4.1).
    /// A mismatch (sealed by a key holder, yet inconsistent) is dropped.
    fn authenticated_header(&mut self, outer: &Packet, inner: &Bytes) -> Option<Packet> {
        match codec::decode(inner) {
            Ok(mut q)
                if q.kind == outer.kind
                    && q.from == outer.from
                    && q.from_nonce == outer.from_nonce
                    && q.dest_nonce == outer.dest_nonce =>
            {
                q.dest = outer.dest.clone();
                Some(q)
            }
            _ => {
                self.stats.dropped.forged += 1;
                None
            }
        }
    }

    /// Answers a Syn this side will not take with a plain Reset (at most a
    /// few queued), staying where it is; a service's one-Syn session ends.
    fn refuse(&mut self, now: Instant, syn: &Packet, why: &str) {
        self.refuse_with(now, syn, ResetCode::Sealing, why);
    }

    /// Queues a plain Reset answering `to` (to its inbox and nonce), from
    /// `ours` (the nonce it knows us by), unless [`MAX_QUEUED_ANSWERS`]
    /// wait already.
    fn queue_reset(&mut self, to: &Packet, ours: Str, code: ResetCode, why: &str) {
        if self.refusals.len() < MAX_QUEUED_ANSWERS {
            let mut r = Packet::new(Kind::Reset);
            r.from = self.local_inbox.clone();
            r.dest = to.from.clone();
            r.from_nonce = ours;
            r.dest_nonce = to.from_nonce.clone();
            r.seq = code.to_wire();
            r.data = Bytes::copy_from_slice(why.as_bytes());
            self.refusals.push_back(r);
        }
    }

    /// [`refuse`](Self::refuse) with a code of its own.
    fn refuse_with(&mut self, now: Instant, syn: &Packet, code: ResetCode, why: &str) {
        self.queue_reset(syn, self.local_nonce.clone(), code, why);
        if self.cfg.one_syn && matches!(self.phase, Phase::Listen) {
            self.finish(
                now,
                CloseReason::SealFailed {
                    message: why.to_string(),
                },
                false,
            );
        }
    }

    fn on_invalid(&mut self, e: &DecodeError) {
        self.stats.dropped.invalid += 1;
        tracing::trace!(error = %e, "dropped undecodable packet");
    }

    /// Handles an already-decoded packet.
    ///
    /// ```
    /// use swp::proto::{codec, Config, Connection};
    /// let t0 = swp::testkit::epoch();
    /// let mut a = Connection::connect(Config::new("a", "b"), t0, 1).unwrap();
    /// let mut b = Connection::listen(Config::new("b", ""), t0, 2).unwrap();
    /// // A driver that decoded the packet itself (to inspect or log it):
    /// let syn = codec::decode(&a.poll_transmit(t0).unwrap().payload).unwrap();
    /// assert_eq!(syn.kind, swp::proto::Kind::Syn);
    /// b.handle_decoded(t0, syn);
    /// assert_eq!(b.state(), swp::proto::State::SynReceived);
    /// ```
    pub fn handle_decoded(&mut self, now: Instant, p: Packet) {
        self.now_hint = self.now_hint.max(now);
        self.on_packet(now, p, false);
        self.update_timers(now);
    }

    fn on_packet(&mut self, now: Instant, p: Packet, authentic: bool) {
        let before = self.state();
        if let Some(p) = self.sealed_gate(now, p, authentic) {
            self.on_packet_inner(now, p);
        }
        let after = self.state();
        if after != before {
            self.events.push_back(Event::StateChanged(after));
        }
    }

    fn on_packet_inner(&mut self, now: Instant, p: Packet) {
        if self.drained() {
            return;
        }
        if p.kind == Kind::SynAck
            && matches!(self.phase, Phase::Open(_) | Phase::Closed(_))
            && p.dest == self.local_inbox
            && p.dest_nonce == self.local_nonce
            && !p.from_nonce.is_empty()
            && p.from_nonce != self.remote_nonce
            && matches!(self.dialect, Dialect::Native)
        {
            // A second listener answered our Syn (two on one subject, or
            // a Syn that reached two queue members, §4.1): we kept the
            // first; tell this one at once, so it does not wait for us.
            self.stats.dropped.foreign += 1;
            self.refuse_with(
                now,
                &p,
                ResetCode::AnsweredElsewhere,
                "the client took another listener's answer to its Syn: more than one listener answered it",
            );
            return;
        }
        if self.cookie_packet(now, &p) {
            return;
        }
        if self.stale_for(now, &p) {
            // Another client's Syn while the one we answered has been silent
            // for a whole handshake interval: it is gone (or was never
            // there: a stray or forged Syn). Let it go and take this one,
            // rather than hold the listener for the rest of the budget.
            let silent = now.saturating_duration_since(self.last_heard);
            let told = format!("no answer from us for {silent:?} while another client connected");
            if self.relisten(
                now,
                "another client's Syn came while this one was silent",
                Some((ResetCode::Unreachable, told)),
            ) {
                self.on_packet_inner(now, p);
            }
            return;
        }
        if !self.addressed_to_us(&p) {
            self.stats.dropped.foreign += 1;
            return;
        }
        match self.phase {
            Phase::Listen => {
                if p.kind == Kind::Syn && !p.from_nonce.is_empty() {
                    self.learn_remote_inbox(p.from.clone());
                    self.remote_nonce = p.from_nonce.clone();
                    let h = self.new_handshake(now);
                    self.phase = Phase::SynReceived(h);
                    self.pending.synack = true;
                    self.timers.set(Timer::Handshake, now + h.interval);
                    self.accept_common(now, &p);
                    tracing::debug!(peer = %p.from, "Listen -> SynReceived");
                } else {
                    self.stats.dropped.unexpected += 1;
                }
                return;
            }
            Phase::SynSent(h) => {
                match p.kind {
                    Kind::SynAck
                        if p.dest_nonce == self.local_nonce && !p.from_nonce.is_empty() =>
                    {
                        if let Some(why) = self.implausible(&p) {
                            self.on_impossible(&p, &why);
                            return;
                        }
                        self.remote_nonce = p.from_nonce.clone();
                        if p.from != self.remote_inbox {
                            // A service answered from its private inbox.
                            tracing::debug!(service = %self.remote_inbox, inbox = %p.from, "the service moved the session to a private inbox");
                            self.learn_remote_inbox(p.from.clone());
                        }
                        self.pending.estab = true;
                        self.establish(now);
                        self.accept_common(now, &p);
                        self.on_peer_ack(now, &p);
                    }
                    Kind::Syn if p.from_nonce == self.local_nonce => {
                        // Our own Syn came back: the destination reaches our
                        // own inbox (a server's subject mapping, or a third
                        // party replaying it). Answering it would make a
                        // session with itself that acknowledges its own data.
                        self.stats.dropped.unexpected += 1;
                        tracing::debug!(subject = %p.dest, "dropped our own Syn: the destination reaches this session's own inbox");
                    }
                    Kind::Syn if !p.from_nonce.is_empty() => {
                        // Simultaneous open (RFC 9293 §3.5 figure 8).
                        self.remote_nonce = p.from_nonce.clone();
                        self.phase = Phase::SynReceived(h);
                        self.pending.syn = false;
                        self.pending.synack = true;
                        self.accept_common(now, &p);
                        tracing::debug!("SynSent -> SynReceived (simultaneous open)");
                    }
                    Kind::Reset if p.dest_nonce == self.local_nonce => {
                        // Refused (a service at its session limit, a listener
                        // that requires what we do not offer): say why now,
                        // not after the handshake budget.
                        let (code, message) = reset_reason(&p);
                        tracing::debug!(?code, %message, "the handshake was refused");
                        self.finish(now, CloseReason::Reset { code, message }, false);
                    }
                    _ => self.stats.dropped.unexpected += 1,
                }
                return;
            }
            _ => {}
        }
        // From here on the peer's nonce is known: filter on it.
        if p.from_nonce != self.remote_nonce {
            self.stats.dropped.foreign += 1;
            return;
        }
        if p.kind == Kind::Syn {
            // A retransmitted Syn: our SynAck was lost.
            if matches!(self.phase, Phase::SynReceived(_)) {
                self.pending.synack = true;
                self.accept_common(now, &p);
            } else {
                self.stats.dropped.unexpected += 1;
            }
            return;
        }
        if p.dest_nonce != self.local_nonce {
            self.stats.dropped.foreign += 1;
            return;
        }
        if let Some(why) = self.implausible(&p) {
            self.on_impossible(&p, &why);
            return;
        }
        if self.is_closed() && !self.closed_normally() {
            // We ended it and said so, yet the peer talks on: our Reset was
            // lost. Say it again, as TCP answers a segment for a closed
            // port, at most once per answer time, for as long as we
            // linger (which bounds the count). Not fewer: in a one-way
            // outage the peer's packets reach us all along and our
            // answers do not; the first packet after the path heals must
            // be answered, and the peer may have little of its budget
            // left by then.
            let again = self
                .last_reset
                .is_some_and(|t| now.saturating_duration_since(t) >= self.answer_time());
            if p.kind != Kind::Reset && again {
                self.pending.reset = true;
            }
            return;
        }
        if self.is_closed() {
            // Lingering: re-acknowledge a retransmitted Fin, nothing else.
            // The peer is still asking, so our FinAck was lost: stay as long
            // as it keeps asking (TIME-WAIT restarts, RFC 9293 §3.6.1).
            if p.kind == Kind::Fin && self.rcv.fin == Some(p.seq) {
                self.pending.finack = Some(p.seq);
                if self.timers.is_armed(Timer::Linger) {
                    self.timers
                        .set(Timer::Linger, now + self.cfg.tuning.close_linger);
                }
            }
            return;
        }
        if p.kind == Kind::Reset && matches!(self.phase, Phase::SynReceived(_)) {
            let (code, message) = reset_reason(&p);
            let why = format!("the client reset it ({code:?}): {message}");
            if code == ResetCode::AnsweredElsewhere {
                tracing::warn!(
                    client = %p.from,
                    inbox = %self.local_inbox,
                    "a client took another listener's answer: more than one listens on this subject"
                );
            }
            if self.relisten(now, &why, None) {
                return;
            }
        }
        if matches!(self.phase, Phase::SynReceived(_)) {
            // Any packet carrying our nonce proves the peer has our Syn or
            // SynAck, so a lost EstabAck cannot stall the session.
            if p.kind == Kind::SynAck {
                self.pending.estab = true;
            }
            self.establish(now);
        }
        // Heard again after timeouts that went unanswered and a silence
        // longer than a keepalive interval, or heard to hear us again after
        // timeouts it did not answer: an outage ended (§8).
        let silence_ended = self.silent_timeouts > 0
            && now.saturating_duration_since(self.last_heard) > self.cfg.tuning.keepalive_interval;
        self.accept_common(now, &p);
        let path_back = silence_ended || std::mem::take(&mut self.heard_back_after_timeouts);
        if p.kind == Kind::Reset {
            let (code, message) = reset_reason(&p);
            tracing::debug!(?code, %message, "peer reset the session");
            self.finish(now, CloseReason::Reset { code, message }, false);
            return;
        }
        self.on_peer_ack(now, &p);
        if self.is_closed() {
            return; // the acknowledgement was a protocol violation (§5.6)
        }
        if p.has(flags::FIN_SEEN) && self.fin_outstanding() && self.snd.all_acked() {
            // Any packet sent after the peer got our Fin acknowledges it.
            self.on_fin_acked(now);
        }
        if path_back {
            self.on_path_back(now);
        }
        match p.kind {
            Kind::SynAck => self.pending.estab = true, // our EstabAck was lost
            Kind::Data => self.on_data(now, p),
            Kind::KeepAlive if p.has(flags::ACK_NOW) => {
                // The answer echoes the probe's time: Go samples RTT from
                // it, and it proves our acknowledgement check current (§5.6).
                self.ack_echo = p.ts;
                self.ack_immediate = true;
            }
            Kind::Fin => {
                // Echoed, so the peer can tell our answers are current.
                self.ack_echo = p.ts;
                self.on_fin(p.seq)
            }
            Kind::FinAck if self.fin_outstanding() && p.seq == self.snd.snd_nxt => {
                self.on_fin_acked(now);
            }
            _ => {}
        }
        self.check_done(now);
    }

    /// Bookkeeping common to every accepted packet.
    fn accept_common(&mut self, now: Instant, p: &Packet) {
        self.stats.wire.packets_received += 1;
        self.last_heard = now;
        // A packet counts as the peer answering what we wait for only if it
        // echoes something we sent since we began waiting: a backlog of its
        // older packets draining from a slow link's queue proves nothing
        // about our data or our Fin (§5.5). Go peers echo differently.
        // Compared in the echo's own unit: a packet sent in the very
        // microsecond we began waiting is fresh.
        let waiting_since = self
            .last_progress
            .saturating_duration_since(self.epoch)
            .as_micros() as u64;
        let fresh = p.ts_echo > 0 && p.ts_echo >= waiting_since;
        if fresh && self.unanswered_timeouts >= 2 {
            // It hears us again after timeouts it did not answer.
            self.heard_back_after_timeouts = true;
        }
        if fresh {
            self.unanswered_timeouts = 0;
        }
        if fresh || !self.dialect.echoes_clock() {
            self.fresh_since_rto = true;
            self.fresh_since_fin = true;
            self.last_fresh = Some(now);
        }
        self.heard_since_timeout = true;
        self.silent_timeouts = 0;
        if self.dialect.echoes_clock() && p.ts > 0 {
            let offset =
                now.saturating_duration_since(self.epoch).as_micros() as i128 - p.ts as i128;
            let min = self.peer_offset_us.map_or(offset, |m| m.min(offset));
            self.peer_offset_us = Some(min);
            self.peer_lag = Duration::from_micros((offset - min).clamp(0, u64::MAX as i128) as u64);
        }
        if self.dialect.echoes_clock() && matches!(p.kind, Kind::Syn | Kind::SynAck) {
            // The answer echoes it, so the peer can tell the answer is to a
            // packet sent since it began waiting (§5.5). (Its round trip is
            // no RTT sample for data: a handshake packet is small, and a
            // full data packet may take far longer to cross a slow link.)
            self.ack_echo = p.ts;
        }
        if matches!(p.kind, Kind::Syn | Kind::SynAck) {
            // Batches only to a peer that said it reads them.
            self.snd.set_batching(
                self.cfg.tuning.batch_messages && self.dialect.batches() && p.has(flags::BATCH_OK),
            );
        }
        if self.dialect.acks_only_what_is_read() {
            // Silence is caught by the keepalive budget instead.
            self.rto_streak = 0;
        }
        if p.rtt_samples > 0 {
            self.peer_rtt = (p.rtt_us, p.rttvar_us, p.rtt_samples);
            self.rtt.seed_from_peer(
                Duration::from_micros(p.rtt_us),
                Duration::from_micros(p.rttvar_us),
            );
        }
        let knew_capacity = self.snd.peer_capacity.is_some();
        self.snd.on_window(p.wnd_seq, p.wnd_bytes, p.ack);
        if !knew_capacity && self.snd.peer_capacity.is_some() && self.write_blocked {
            // Messages can be sized now (they were refused as Blocked).
            self.write_blocked = false;
            self.events.push_back(Event::Writable);
        }
        if self.snd.has_queued() && !self.snd.window_blocked() {
            self.persist_backoff = 0;
            self.timers.stop(Timer::Persist);
        }
    }

    fn establish(&mut self, now: Instant) {
        let close_requested = match &self.phase {
            Phase::Open(_) => return,
            Phase::SynSent(h) | Phase::SynReceived(h) => h.close_requested,
            Phase::Listen | Phase::Closed(_) => false,
        };
        // A close asked for during the handshake takes effect now.
        self.phase = Phase::Open(if close_requested {
            Ours::Closing
        } else {
            Ours::Writing
        });
        self.timers.stop(Timer::Handshake);
        self.last_heard = now;
        self.last_progress = now;
        self.events.push_back(Event::Connected);
        tracing::debug!(nonce = %self.local_nonce, peer = %self.remote_nonce, "Established");
    }

    /// Checks what a packet claims against what we know (docs/PROTOCOL.md
    /// §5.6): no correct peer acknowledges data never sent or offers a
    /// window beyond the capacity it declared in the handshake. Such a
    /// packet is forged or broken; believing it could make us drop data the
    /// peer never got, or overrun its inbox.
    fn implausible(&self, p: &Packet) -> Option<String> {
        if !self.dialect.checks_claims() {
            return None;
        }
        if p.kind == Kind::Reset {
            // Nothing in a Reset is believed but the end itself (and a
            // Reset from an older peer carries no acknowledgement).
            return None;
        }
        let nxt = self.snd.snd_nxt;
        if p.ack > nxt {
            return Some(format!(
                "acknowledges data seq {} but only {nxt} were sent",
                p.ack - 1
            ));
        }
        if let Some(&(s, e)) = p.sack.iter().find(|r| r.1 > nxt) {
            return Some(format!(
                "selectively acknowledges seqs {s}..{e} but only {nxt} were sent"
            ));
        }
        if let Some((cap_p, cap_b)) = self.snd.peer_capacity {
            if p.wnd_seq > p.ack.saturating_add(cap_p) {
                return Some(format!(
                    "offers a window to seq {} with ack {}, beyond the {cap_p} packets it declared",
                    p.wnd_seq, p.ack
                ));
            }
            let base = self
                .snd
                .end_offset_before(p.ack.clamp(self.snd.snd_una, nxt));
            if p.wnd_bytes > base.saturating_add(cap_b) {
                return Some(format!(
                    "offers a window to byte {} with {base} bytes acknowledged, beyond the \
                     {cap_b} bytes it declared",
                    p.wnd_bytes
                ));
            }
        }
        None
    }

    fn on_impossible(&mut self, p: &Packet, why: &str) {
        self.stats.dropped.impossible += 1;
        tracing::debug!(kind = ?p.kind, why, "dropped a packet no correct peer sends");
    }

    /// The peer is heard again after retransmission timeouts went
    /// unanswered: the path is back (an outage ended, a NATS client
    /// reconnected). Start recovery now rather than after a timer that
    /// backed off during the silence (§8).
    fn on_path_back(&mut self, now: Instant) {
        if !self.is_established() {
            return;
        }
        // The backoff stays until an acknowledgement proves the path (an
        // ack of new data resets it, §5.4): hearing the peer says nothing
        // about how long our packets take, e.g. behind a deep queue.
        if self.snd.has_outstanding() {
            self.snd.on_rto();
            self.timers.set(Timer::Retransmit, now + self.rtt.rto());
        }
        if self.fin_outstanding() && self.timers.is_armed(Timer::Fin) {
            self.pending.fin_retransmit = true;
        }
        tracing::debug!("peer heard again after an outage; recovering at once");
    }

    /// The acknowledgement fields every packet carries.
    fn on_peer_ack(&mut self, now: Instant, p: &Packet) {
        // The echoed timestamp is our own clock (µs since our epoch) from the
        // data packet that triggered this ack; ignore impossible values.
        let echo = (p.ts_echo > 0)
            .then(|| self.epoch + Duration::from_micros(p.ts_echo))
            .filter(|t| *t <= now)
            .or(self.go_echo.take());
        if p.ack < self.snd.snd_una && self.dialect.checks_claims() {
            // An older acknowledgement than one already taken. Reordering
            // makes these, but a packet that echoes one we sent *after*
            // taking the newer ack was generated later, and a correct
            // peer's ack never goes back (§5.6): the newer one was forged.
            if let (Some(e), Some(at)) = (echo, self.una_advanced_at)
                && e > at
            {
                let why = format!(
                    "acknowledgements went back: ack {} after data through seq {} \
                         was acknowledged (forged or corrupted packets on the path)",
                    p.ack,
                    self.snd.snd_una - 1
                );
                self.finish(now, CloseReason::ProtocolViolation(why), true);
                return;
            }
            // Ask for a fresh one that will tell (at most once per RTO).
            if self
                .verify_probe_at
                .is_none_or(|t| now >= t + self.rtt.rto())
            {
                self.verify_probe_at = Some(now);
                self.pending.verify_probe = true;
            }
        }
        let out = self.snd.on_ack(now, p.ack, &p.sack, echo, &mut self.rtt);
        if out.bogus {
            self.stats.dropped.impossible += 1;
            return;
        }
        if out.newly_acked > 0 {
            // Cumulatively or selectively: the peer gets our data.
            self.last_progress = now;
        }
        if out.progressed {
            let (acked, sent) = (self.snd.bytes_acked, self.snd.bytes_sent);
            if let Some(cap) = self
                .dialect
                .peer_buffer_mut()
                .and_then(|b| b.on_acked(acked, sent))
            {
                tracing::debug!(cap, "a Go receiver held a full buffer: offering it more");
                self.fit_go_packets();
            }
            self.una_advanced_at = Some(now);
            self.rto_streak = 0;
            self.rtt.reset_backoff();
            self.events.push_back(Event::Acked);
            if self.write_blocked && self.snd.buffer_space() > 0 {
                self.write_blocked = false;
                self.events.push_back(Event::Writable);
            }
        }
        if echo.is_some() || out.newly_acked > 0 {
            self.run_loss_detection(now);
        }
        if out.newly_acked > 0 {
            // RFC 6298 §5.3: restart the timer when new data is acked.
            if self.snd.has_outstanding() {
                self.timers.set(Timer::Retransmit, now + self.rtt.rto());
                self.arm_tail_probe(now);
            } else {
                self.timers.stop(Timer::Retransmit);
                self.timers.stop(Timer::TailProbe);
            }
        }
    }

    fn reo_wnd(&self) -> Duration {
        self.rtt
            .min_rtt()
            .map_or(Duration::from_millis(1), |m| m / 4)
    }

    fn run_loss_detection(&mut self, now: Instant) {
        let mut lost = 0;
        match self.snd.detect_lost(now, self.reo_wnd(), &mut lost) {
            Some(at) => self.timers.set(Timer::LossDetect, at),
            None => self.timers.stop(Timer::LossDetect),
        }
        if lost > 0 {
            tracing::trace!(lost, "RACK detected losses");
            self.go_peer_lost();
        }
    }

    /// A Go receiver lost data (a timeout, or RACK): it may hold less than
    /// we left unread there (§13.2).
    fn go_peer_lost(&mut self) {
        let (una, nxt, acked) = (self.snd.snd_una, self.snd.snd_nxt, self.snd.bytes_acked);
        let buffer = self.dialect.peer_buffer_mut();
        if let Some(cap) = buffer.and_then(|b| b.on_loss(una, nxt, acked)) {
            tracing::debug!(cap, "a loss at a Go receiver: leaving less unread there");
            self.fit_go_packets();
        }
    }

    fn arm_tail_probe(&mut self, now: Instant) {
        if let Some(srtt) = self.rtt.srtt() {
            let pto = (srtt * 2 + self.cfg.tuning.max_ack_delay).max(Duration::from_millis(1));
            if now + pto < self.timers.get(Timer::Retransmit).unwrap_or(now + pto) {
                self.timers.set(Timer::TailProbe, now + pto);
                return;
            }
        }
        self.timers.stop(Timer::TailProbe);
    }

    fn on_data(&mut self, now: Instant, p: Packet) {
        if let Some(fin) = self.rcv.fin
            && p.seq >= fin
        {
            if !self.dialect.fin_end_is_exact() {
                self.stats.dropped.unexpected += 1;
                return;
            }
            // Beyond the window as well: dropped and counted, as
            // before the Fin (a forger's shot in the dark, which the
            // real peer never sends either way; §5.6).
            if self.rcv.beyond_window(p.seq) {
                self.stats.dropped.beyond_window += 1;
                return;
            }
            // The peer's stream ended at `fin`: no correct peer sends
            // data beyond it (§5.2), and inside the window it may be
            // the real peer's, after a forged Fin. What it delivered
            // cannot be trusted; end the session and say so to both
            // sides.
            let why = format!("data seq {} after the end of stream at seq {fin}", p.seq);
            self.finish(now, CloseReason::ProtocolViolation(why), true);
            return;
        }
        let asap = self.cfg.tuning.asap_limit.is_some();
        let eom = p.has(flags::EOM);
        let (payload, len) = if p.has(flags::BATCH) && self.dialect.batches() {
            match batch::split(&p.data) {
                Ok(parts) => {
                    let len = parts.iter().map(|b| b.len() as u64).sum();
                    (Payload::Batch(parts), len)
                }
                Err(e) => {
                    // Checksummed yet malformed: a broken peer. Dropped
                    // like any undecodable packet (it is never acked).
                    self.stats.dropped.invalid += 1;
                    tracing::debug!(error = %e, seq = p.seq, "dropped malformed batch");
                    return;
                }
            }
        } else {
            let len = p.data.len() as u64;
            (Payload::One(p.data), len)
        };
        // A reader with nothing left to read is likely waiting for this
        // packet, and may answer it (a request).
        let caught_up = !self.rcv.has_ready();
        let outcome = self.rcv.on_data(p.seq, payload, p.cumul_bytes, eom);
        if asap {
            self.events.push_back(Event::Asap);
        }
        self.ack_echo = p.ts;
        self.ack_pending += 1;
        match outcome {
            DataOutcome::InOrder | DataOutcome::FilledGap => {
                if let Some(fin) = self.dialect.take_fin_at(self.rcv.rcv_nxt) {
                    self.on_fin(fin);
                }
                self.stats.data.packets_received += 1;
                self.stats.data.bytes_received += len;
                self.events.push_back(Event::Readable);
                if outcome == DataOutcome::FilledGap || self.rcv.has_gap() {
                    self.ack_immediate = true;
                }
            }
            DataOutcome::OutOfOrder => {
                self.stats.data.packets_received += 1;
                self.stats.data.bytes_received += len;
                self.stats.data.out_of_order += 1;
                self.ack_immediate = true;
            }
            DataOutcome::Duplicate => {
                self.stats.data.duplicates += 1;
                self.ack_immediate = true;
            }
            DataOutcome::BeyondWindow => {
                self.stats.dropped.beyond_window += 1;
                self.ack_immediate = true;
            }
        }
        if self.ack_pending >= self.cfg.tuning.ack_frequency {
            self.ack_immediate = true;
        } else if p.flags & flags::ACK_NOW != 0 {
            if caught_up && outcome == DataOutcome::InOrder {
                // The ack goes when the application reads (its answer,
                // sent at once, carries it), or within the ack delay if it
                // does not.
                self.ack_on_read = true;
            } else {
                // A reader behind its data (a bulk stream): the sender
                // waits for this ack to open its window.
                self.ack_immediate = true;
            }
        }
        if !self.ack_immediate {
            self.timers
                .set_if_earlier(Timer::AckDelay, now + self.cfg.tuning.max_ack_delay);
        }
    }

    fn on_fin_acked(&mut self, now: Instant) {
        if let Phase::Open(o) = &mut self.phase {
            *o = Ours::FinAcked;
        }
        self.last_progress = now;
        self.timers.stop(Timer::Fin);
        if self.dialect.peer_halts_at_our_fin() && self.rcv.fin.is_none() {
            // A Rust peer in Go mode may still send: wait for its Fin or
            // for its silence.
            self.timers.set(Timer::Fin, now + self.go_quiet());
        }
        tracing::debug!("our Fin acknowledged");
    }

    fn on_fin(&mut self, seq: u64) {
        if seq == self.rcv.rcv_nxt {
            if self.rcv.fin.is_none() {
                tracing::debug!(seq, "peer finished its stream");
                self.rcv.fin = Some(seq);
                self.events.push_back(Event::Readable);
            }
            self.pending.finack = Some(seq);
        } else if seq < self.rcv.rcv_nxt {
            // Data beyond the end the peer announced: impossible from a
            // correct peer. Drop the Fin; keep the session.
            self.stats.dropped.unexpected += 1;
        } else {
            // Data before the Fin is still missing: say what we have.
            self.dialect.remember_fin(seq);
            self.ack_immediate = true;
        }
    }

    /// Both streams are complete and every byte we sent was acknowledged;
    /// only the acknowledgement of our Fin is missing (the peer closed and
    /// its linger ended before our Fin got through). Nothing can be lost any
    /// more, so running out of Fin retries (or hearing nothing) here ends the
    /// session normally rather than with an error.
    ///
    /// With a Go peer, its Fin is not needed: a Go peer halts when it gets
    /// ours, without a Fin of its own, and its FinAck is often never sent.
    fn only_fin_ack_missing(&self) -> bool {
        self.is_established()
            && self.fin_sent()
            && self.snd.all_acked()
            && (self.rcv.fin.is_some() || self.dialect.peer_halts_at_our_fin())
    }

    /// Go mode: how long a peer that acknowledged our Fin must stay silent
    /// before we take it as gone (it keeps sending keepalives while alive).
    fn go_quiet(&self) -> Duration {
        self.cfg
            .tuning
            .close_linger
            .max(self.cfg.tuning.keepalive_interval * 2)
    }

    /// Fin retransmissions allowed before giving up.
    fn fin_retry_limit(&self) -> u32 {
        self.dialect
            .fin_retry_limit(self.cfg.tuning.max_retransmits)
    }

    fn check_done(&mut self, now: Instant) {
        if self.fin_acked() && self.rcv.fin.is_some() {
            self.finish(now, CloseReason::Normal, false);
        }
    }

    fn finish(&mut self, now: Instant, reason: CloseReason, send_reset: bool) {
        if self.is_closed() {
            return;
        }
        if reason.is_normal() {
            tracing::debug!("session closed normally");
        } else {
            tracing::debug!(%reason, "session closed");
        }
        let normal = reason.is_normal();
        if send_reset && self.reset_out.is_none() {
            self.reset_out = reason.reset_reason();
        }
        self.phase = Phase::Closed(Ended {
            reason: reason.clone(),
            drained: false,
        });
        self.timers.stop_all();
        self.pending = Pending {
            finack: self.pending.finack,
            reset: send_reset,
            ..Pending::default()
        };
        if normal || send_reset {
            // Normal: re-acknowledge a retransmitted Fin. Told: repeat the
            // Reset to a peer that goes on talking (it did not hear it),
            // for as long as an outage may last that ends no session
            // (§8): a peer cut off when we failed still hears why once
            // the path heals, not "unreachable" a budget later.
            let linger = match (send_reset, self.dead_peer_timeout()) {
                (true, Some(d)) => d.max(self.cfg.tuning.close_linger),
                _ => self.cfg.tuning.close_linger,
            };
            self.timers.set(Timer::Linger, now + linger);
        } else if self.pending.finack.is_none() {
            self.set_drained();
        }
        self.events.push_back(Event::Readable);
        self.events.push_back(Event::Writable);
        self.events.push_back(Event::Closed(reason));
    }

    /// Handles expired timers. Call when [`poll_timeout`](Self::poll_timeout)
    /// says so (calling early is harmless).
    ///
    /// ```
    /// use swp::proto::{Config, Connection};
    /// let t0 = swp::testkit::epoch();
    /// let mut a = Connection::connect(Config::new("a", "b"), t0, 1).unwrap();
    /// let _lost_syn = a.poll_transmit(t0).unwrap(); // nobody hears it
    /// let due = a.poll_timeout().unwrap();
    /// assert!(a.poll_transmit(due).is_none()); // nothing before the timer fires
    /// a.handle_timeout(due);
    /// assert!(a.poll_transmit(due).is_some()); // the Syn again
    /// assert_eq!(a.stats().loss.handshake_retransmits, 1);
    /// ```
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now_hint = self.now_hint.max(now);
        let before = self.state();
        self.on_timers(now);
        self.update_timers(now);
        let after = self.state();
        if after != before {
            self.events.push_back(Event::StateChanged(after));
        }
    }

    fn on_timers(&mut self, now: Instant) {
        for t in ALL {
            if !self.timers.expired(t, now) {
                continue;
            }
            match t {
                Timer::Handshake => self.on_handshake_timeout(now),
                Timer::Retransmit => self.on_rto(now),
                Timer::LossDetect => self.run_loss_detection(now),
                Timer::TailProbe => {
                    if self.snd.on_tail_probe() {
                        tracing::trace!("tail-loss probe");
                    }
                }
                Timer::Persist => {
                    if self.snd.window_blocked() && !self.snd.has_outstanding() {
                        self.pending.probe = true;
                        self.persist_backoff = (self.persist_backoff + 1).min(6);
                    }
                }
                Timer::AckDelay => {
                    if self.ack_pending > 0 {
                        self.ack_immediate = true;
                    }
                }
                Timer::KeepAlive => {
                    if self.is_established() {
                        self.pending.keepalive = true;
                    }
                }
                Timer::Idle => self.on_idle(now),
                Timer::Fin if self.fin_acked() => {
                    // Go mode, our Fin acknowledged: end once the peer is quiet.
                    let quiet_at = self.last_heard + self.go_quiet();
                    if now >= quiet_at {
                        self.finish(now, CloseReason::Normal, false);
                    } else {
                        self.timers.set(Timer::Fin, quiet_at);
                    }
                }
                Timer::Fin => {
                    // Only tries the peer was heard during count (a silent
                    // peer is the dead-peer rule's business, §8); Go peers
                    // halt at our Fin, so every try counts with them.
                    let counts = std::mem::take(&mut self.fresh_since_fin)
                        || self.cfg.dead_peer_budget().is_none()
                        || self.dialect.peer_halts_at_our_fin();
                    if counts && let Phase::Open(Ours::FinSent(w)) = &mut self.phase {
                        w.tries += 1;
                    }
                    self.unanswered_timeouts += 1;
                    if !std::mem::take(&mut self.heard_since_timeout) {
                        self.silent_timeouts += 1;
                    }
                    // Giving up waits out the dead-peer timeout since the
                    // Fin first went (§7.1): an outage in one direction
                    // shorter than the budget must not end the close early.
                    let tries_out = self.fin_wait().tries > self.fin_retry_limit();
                    let limit_hit = if self.dialect.peer_halts_at_our_fin() {
                        tries_out
                    } else {
                        self.give_up_retransmitting(now, tries_out)
                    };
                    if limit_hit && self.only_fin_ack_missing() {
                        self.finish(now, CloseReason::Normal, false);
                    } else if limit_hit && tries_out {
                        let retries = self.fin_wait().tries;
                        self.finish(now, CloseReason::FinTimeout { retries }, true);
                    } else if limit_hit {
                        let reason = self.not_heard_back(now);
                        self.finish(now, reason, true);
                    } else {
                        self.rtt.on_timeout();
                        self.pending.fin_retransmit = true;
                    }
                }
                Timer::Linger => self.set_drained(),
                Timer::ResetRepeat => {
                    if self.is_closed() && !self.closed_normally() {
                        self.pending.reset = true;
                    }
                }
            }
        }
    }

    /// How long the answer to a keepalive may take: the RTO without
    /// backoff, at most one keepalive interval.
    fn answer_time(&self) -> Duration {
        self.rtt.base_rto().clamp(
            self.cfg.tuning.min_rto,
            self.cfg
                .tuning
                .keepalive_interval
                .max(self.cfg.tuning.min_rto),
        )
    }

    /// What the dead-peer rule adds to the budget (§8): one keepalive
    /// interval (an outage may begin just after the last answer we heard,
    /// and our first keepalive after it ends goes up to an interval later)
    /// and the time its answer takes.
    fn liveness_grace(&self) -> Duration {
        self.cfg.tuning.keepalive_interval + self.answer_time()
    }

    /// True once nothing we sent has been acknowledged for the dead-peer
    /// timeout (plus the queue the peer's packets now wait in on their way
    /// back), or for two RTOs of the path or its current backed-off RTO if
    /// that is longer (always true without a budget): only then may retransmission limits end a session, so an
    /// outage shorter than the budget, in either direction, never does
    /// (§5.5).
    fn waited_out(&self, now: Instant) -> bool {
        // On a path slower than the budget (a packet that takes seconds to
        // cross a slow link), the RTO backs off until the first answer
        // comes: never give up before the current one ran out either.
        self.dead_peer_timeout().is_none_or(|t| {
            let path = self.rtt.rto().max(self.rtt.base_rto() * 2);
            now.saturating_duration_since(self.last_progress) >= (t + self.peer_lag).max(path)
        })
    }

    /// Whether retransmitting (data, or our Fin) gives up now (§5.5).
    /// Without a dead-peer budget: when the tries ran out. With one: only
    /// after the dead-peer timeout without progress, only while the peer is
    /// heard from (a silent peer is the dead-peer rule's), and then if it
    /// proved it hears us yet did not acknowledge the tries, or if nothing
    /// it sent since we began waiting shows it hears us at all (our packets
    /// do not reach it: its own budget would end it, but it may have none).
    fn not_heard_back(&self, now: Instant) -> CloseReason {
        CloseReason::NotHeardBack {
            waited: now.saturating_duration_since(self.last_progress),
            budget: self.cfg.dead_peer_budget().unwrap_or_default(),
        }
    }

    fn give_up_retransmitting(&self, now: Instant, tries_out: bool) -> bool {
        if self.cfg.dead_peer_budget().is_none() {
            return tries_out;
        }
        let not_heard_back = self.last_fresh.is_none_or(|t| t < self.last_progress);
        self.waited_out(now)
            && self.last_heard > self.last_progress
            && (tries_out || not_heard_back)
    }

    /// The dead-peer rule (§8): silent for the budget and its grace, the
    /// peer is gone.
    fn on_idle(&mut self, now: Instant) {
        let Some(budget) = self.cfg.dead_peer_budget() else {
            return;
        };
        if !self.is_established() {
            return;
        }
        let silent_for = now.saturating_duration_since(self.last_heard);
        if silent_for >= budget + self.liveness_grace() {
            if self.only_fin_ack_missing() {
                // Every byte both ways is confirmed; only the FinAck is lost.
                self.finish(now, CloseReason::Normal, false);
            } else {
                self.finish(
                    now,
                    CloseReason::PeerUnreachable { silent_for, budget },
                    true,
                );
            }
        }
    }

    fn on_handshake_timeout(&mut self, now: Instant) {
        let Some(h) = self.phase.handshake().copied() else {
            return;
        };
        let passive = matches!(self.phase, Phase::SynReceived(_));
        if h.attempts >= self.cfg.tuning.connect_attempts {
            let attempts = h.attempts;
            let elapsed = now.saturating_duration_since(h.started);
            // A passive side knows the peer: tell it (its SynAck may have got
            // through while everything back was lost).
            let unanswered = (
                ResetCode::Unreachable,
                format!("no answer from us to {attempts} SynAcks over {elapsed:?}"),
            );
            if passive
                && self.relisten(
                    now,
                    "the client did not answer our SynAcks",
                    Some(unanswered.clone()),
                )
            {
                return;
            }
            if passive {
                self.reset_out = Some(unanswered);
            }
            let reason = match self.seal_trouble.take() {
                Some(message) if !passive => CloseReason::SealFailed {
                    message: format!(
                        "no sealed answer after {attempts} handshake attempts over {elapsed:?}; {message}"
                    ),
                },
                _ => CloseReason::ConnectTimeout { attempts, elapsed },
            };
            self.finish(now, reason, passive);
            return;
        }
        let connect_timeout = self.cfg.tuning.connect_timeout;
        let Some(h) = self.phase.handshake_mut() else {
            return;
        };
        h.attempts += 1;
        h.interval = (h.interval * 2).min(connect_timeout);
        let interval = h.interval;
        self.stats.loss.handshake_retransmits += 1;
        if passive {
            self.pending.synack = true;
        } else {
            self.pending.syn = true;
        }
        self.timers.set(Timer::Handshake, now + interval);
    }

    fn on_rto(&mut self, now: Instant) {
        if !self.snd.has_outstanding() {
            return;
        }
        // Only timeouts during which the peer showed it hears us count
        // towards the limit (§5.5).
        let counts =
            std::mem::take(&mut self.fresh_since_rto) || self.cfg.dead_peer_budget().is_none();
        if counts {
            self.rto_streak += 1;
        }
        self.unanswered_timeouts += 1;
        if !std::mem::take(&mut self.heard_since_timeout) {
            self.silent_timeouts += 1;
        }
        let tries_out = self.rto_streak > self.cfg.tuning.max_retransmits;
        if self.give_up_retransmitting(now, tries_out) {
            let reason = if tries_out {
                CloseReason::RetransmitLimit {
                    retries: self.rto_streak - 1,
                }
            } else {
                self.not_heard_back(now)
            };
            self.finish(now, reason, true);
            return;
        }
        if let Some((limit, window)) = self.cfg.tuning.term {
            self.term_ring.push_back(now);
            while self.term_ring.len() > limit {
                self.term_ring.pop_front();
            }
            if self.term_ring.len() == limit
                && now.saturating_duration_since(self.term_ring[0]) <= window
            {
                self.finish(
                    now,
                    CloseReason::Terminated {
                        timeouts: limit,
                        window,
                    },
                    true,
                );
                return;
            }
        }
        self.rtt.on_timeout();
        self.go_peer_lost();
        let n = self.snd.on_rto();
        tracing::trace!(n, rto = ?self.rtt.rto(), "retransmission timeout");
        self.timers.set(Timer::Retransmit, now + self.rtt.rto());
        self.timers.stop(Timer::TailProbe);
    }

    // ------------------------------------------------------------------
    // outputs

    /// The earliest time [`handle_timeout`](Self::handle_timeout) must be
    /// called, if any timer is armed.
    ///
    /// ```
    /// use swp::proto::{Config, Connection};
    /// let t0 = swp::testkit::epoch();
    /// let mut b = Connection::listen(Config::new("b", ""), t0, 2).unwrap();
    /// assert_eq!(b.poll_timeout(), None); // a listener waits without timers
    /// let mut a = Connection::connect(Config::new("a", "b"), t0, 1).unwrap();
    /// a.poll_transmit(t0).unwrap();
    /// assert!(a.poll_timeout().unwrap() > t0); // when to retry the Syn
    /// ```
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.drained() {
            return None;
        }
        self.timers.next()
    }

    /// The next event for the application, if any.
    ///
    /// ```
    /// # use swp::testkit::Pair;
    /// # use swp::simnet::LinkConfig;
    /// # use std::time::Duration;
    /// # let cfg = |l: &str, r: &str| Pair::default_config(l, r);
    /// # let mut pair = Pair::new(1, LinkConfig::new(), cfg("a", "b"), cfg("b", ""));
    /// # assert!(pair.connect(Duration::from_secs(5)));
    /// use swp::proto::Event;
    /// while pair.b.poll_event().is_some() {} // the handshake's events
    /// pair.a.send_message("x".into()).unwrap();
    /// assert!(pair.run_until(Duration::from_secs(5), |p| p.b.held().0 > 0));
    /// assert_eq!(pair.b.poll_event(), Some(Event::Readable));
    /// ```
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next packet to send, if any.
    ///
    /// ```
    /// use swp::proto::{codec, Config, Connection, Kind};
    /// let t0 = swp::testkit::epoch();
    /// let mut a = Connection::connect(Config::new("a", "b"), t0, 1).unwrap();
    /// let t = a.poll_transmit(t0).unwrap();
    /// assert_eq!(t.dest.as_str(), "b"); // the NATS subject to publish to
    /// assert_eq!(codec::decode(&t.payload).unwrap().kind, Kind::Syn);
    /// assert!(a.poll_transmit(t0).is_none()); // drained
    /// ```
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        if let Some(r) = self.refusals.pop_front() {
            let payload = codec::encode(&r);
            self.stats.wire.packets_sent += 1;
            self.stats.wire.bytes_sent += payload.len() as u64;
            return Some(Transmit {
                dest: r.dest,
                payload,
            });
        }
        let Some((mut p, framed)) = self.next_packet(now) else {
            // Commands (write, read, close) change what is due without a
            // `now`; this is where timers catch up with them, e.g. the
            // persist timer for data written into a shut window.
            self.update_timers(now);
            return None;
        };
        self.rcv.on_advertised(p.wnd_seq, p.wnd_bytes);
        let cx = golink::OutCtx {
            wall_epoch_ns: self.wall_epoch_ns,
            bytes_in_order: self.rcv.bytes_in_order,
        };
        let handshake = matches!(p.kind, Kind::Syn | Kind::SynAck);
        if let Some(s) = self.sealer.as_mut()
            && handshake
        {
            // The Noise message rides in `data`; its payload is this
            // packet's header, so what the peer acts on is authenticated.
            p.flags |= flags::SEALED;
            if let Some(m) = s.handshake_out(|| seal::handshake_header(&p)) {
                p.data = m;
            }
        }
        let (mut payload, kept) = self.dialect.encode(&mut p, framed, &cx);
        if let Some(data) = kept {
            self.snd.set_data(p.seq, data);
        }
        if let Some(s) = self.sealer.as_mut()
            && !handshake
            && s.ready()
        {
            match s.seal(&payload) {
                Some(f) => payload = f,
                None => {
                    // Never plaintext instead: the packet is lost, and
                    // data is retransmitted as after any loss.
                    tracing::error!(kind = ?p.kind, len = payload.len(), "sealing failed; packet not sent");
                    self.update_timers(now);
                    return None;
                }
            }
        }
        self.stats.wire.packets_sent += 1;
        self.stats.wire.bytes_sent += payload.len() as u64;
        if !matches!(
            p.kind,
            Kind::Ack | Kind::EstabAck | Kind::FinAck | Kind::Reset
        ) {
            self.last_asked = now;
        }
        self.update_timers(now);
        Some(Transmit {
            dest: p.dest,
            payload,
        })
    }

    fn update_timers(&mut self, now: Instant) {
        if !self.is_established() {
            return;
        }
        if self.pending.keepalive {
            // Due already: it goes with the next poll_transmit, which re-arms
            // this. Re-arming it at last_asked + interval, in the past, would
            // make a driver that cannot send just now spin on it.
            self.timers.stop(Timer::KeepAlive);
        } else {
            self.timers.set(
                Timer::KeepAlive,
                self.last_asked + self.cfg.tuning.keepalive_interval,
            );
        }
        match self.cfg.dead_peer_budget() {
            Some(b) => self
                .timers
                .set(Timer::Idle, self.last_heard + b + self.liveness_grace()),
            None => self.timers.stop(Timer::Idle),
        }
        if self.snd.window_blocked() && !self.snd.has_outstanding() {
            if !self.timers.is_armed(Timer::Persist) {
                let d = self.rtt.rto() * (1 << self.persist_backoff);
                self.timers.set(
                    Timer::Persist,
                    now + d.min(self.cfg.tuning.keepalive_interval),
                );
            }
        } else {
            self.timers.stop(Timer::Persist);
        }
    }

    /// Every native session reads batches: say so on Syn and SynAck.
    fn batch_ok_flag(&self) -> u8 {
        if self.dialect.batches() {
            flags::BATCH_OK
        } else {
            0
        }
    }

    fn base_packet(&self, kind: Kind, now: Instant) -> Packet {
        let mut p = Packet::new(kind);
        if self.rcv.fin.is_some() && self.dialect.says_fin_seen() {
            p.flags |= flags::FIN_SEEN;
        }
        p.from = self.local_inbox.clone();
        p.dest = self.remote_inbox.clone();
        p.from_nonce = self.local_nonce.clone();
        p.dest_nonce = self.remote_nonce.clone();
        p.ts = now.saturating_duration_since(self.epoch).as_micros() as u64;
        p.wnd_seq = self.rcv.adv_seq;
        p.wnd_bytes = self.rcv.adv_bytes;
        p.rtt_us = self.rtt.srtt().unwrap_or_default().as_micros() as u64;
        p.rttvar_us = self.rtt.rttvar().as_micros() as u64;
        p.rtt_samples = self.rtt.samples();
        p.cumul_bytes = self.snd.bytes_sent;
        p
    }

    /// Fills in the acknowledgement and clears what it satisfies.
    fn with_ack(&mut self, mut p: Packet) -> Packet {
        p.ack = self.rcv.rcv_nxt;
        p.sack = self.rcv.sack_ranges();
        p.ts_echo = self.ack_echo;
        self.ack_pending = 0;
        self.ack_immediate = false;
        self.ack_on_read = false;
        self.timers.stop(Timer::AckDelay);
        p
    }

    fn next_packet(&mut self, now: Instant) -> Option<(Packet, Option<bytes::BytesMut>)> {
        self.next_data(now)
            .or_else(|| self.next_control(now).map(|p| (p, None)))
    }

    /// The next data packet (retransmission or new), if one is due, with its
    /// payload buffer when it can be framed in place. Handshake and close
    /// packets that must precede data (EstabAck, FinAck) go first.
    fn next_data(&mut self, now: Instant) -> Option<(Packet, Option<bytes::BytesMut>)> {
        if self.drained() || self.pending.reset || !self.is_established() {
            return None;
        }
        if self.pending.estab || self.pending.finack.is_some() {
            return None;
        }
        let o = self.snd.next(now, true)?;
        let mut p = self.base_packet(Kind::Data, now);
        p.seq = o.seq;
        p.retry = o.retries;
        p.cumul_bytes = o.end;
        if o.eom {
            p.flags |= flags::EOM;
        }
        if o.batch {
            p.flags |= flags::BATCH;
        }
        if o.last_of_burst {
            p.flags |= flags::ACK_NOW;
        }
        match o.loss {
            None => {
                if self.snd.in_flight.len() == 1 {
                    self.last_progress = now; // a flight after idle
                }
                self.stats.data.packets_sent += 1;
                self.stats.data.bytes_sent += o.len as u64;
            }
            Some(LossKind::Timeout) => self.stats.loss.retransmits_timeout += 1,
            Some(LossKind::Fast) => self.stats.loss.retransmits_fast += 1,
            Some(LossKind::Probe) => self.stats.loss.retransmits_probe += 1,
        }
        let framed = match o.data {
            Chunk::Plain(b) => {
                p.data = b;
                None
            }
            Chunk::Framed(buf) => Some(buf),
        };
        if !self.timers.is_armed(Timer::Retransmit) {
            self.timers.set(Timer::Retransmit, now + self.rtt.rto());
        }
        // One tail probe per flight: a probe itself does not re-arm it
        // (RFC 8985 §7.2); the next ack does.
        if o.last_of_burst && o.loss.is_none() {
            self.arm_tail_probe(now);
        }
        self.pending.keepalive = false;
        Some((self.with_ack(p), framed))
    }

    fn next_control(&mut self, now: Instant) -> Option<Packet> {
        if self.drained() {
            return None;
        }
        if self.pending.reset {
            self.pending.reset = false;
            self.resets_sent += 1;
            self.last_reset = Some(now);
            if self.resets_sent < UNASKED_RESETS && self.timers.is_armed(Timer::Linger) {
                self.timers
                    .set(Timer::ResetRepeat, now + self.answer_time());
            }
            if self.pending.finack.is_none()
                && self.is_closed()
                && !self.closed_normally()
                && !self.timers.is_armed(Timer::Linger)
            {
                self.set_drained();
            }
            let mut p = self.base_packet(Kind::Reset, now);
            if let Some((code, msg)) = &self.reset_out {
                p.seq = code.to_wire();
                p.data = Bytes::copy_from_slice(msg.as_bytes());
            }
            // Like every packet, it carries our acknowledgement (§2.1).
            return Some(self.with_ack(p));
        }
        match self.phase {
            Phase::Listen => None,
            Phase::SynSent(_) => {
                if std::mem::take(&mut self.pending.syn) {
                    let mut p = self.base_packet(Kind::Syn, now);
                    p.flags |= self.batch_ok_flag();
                    Some(p)
                } else {
                    None
                }
            }
            Phase::SynReceived(_) => {
                if std::mem::take(&mut self.pending.synack) {
                    let mut p = self.base_packet(Kind::SynAck, now);
                    p.flags |= self.batch_ok_flag();
                    Some(self.with_ack(p))
                } else {
                    None
                }
            }
            Phase::Closed(_) => {
                let seq = self.pending.finack.take()?;
                let mut p = self.base_packet(Kind::FinAck, now);
                p.seq = seq;
                let p = self.with_ack(p);
                if !self.closed_normally() {
                    self.set_drained();
                }
                Some(p)
            }
            Phase::Open(_) => self.next_established(now),
        }
    }

    fn next_established(&mut self, now: Instant) -> Option<Packet> {
        if std::mem::take(&mut self.pending.estab) {
            let p = self.base_packet(Kind::EstabAck, now);
            return Some(self.with_ack(p));
        }
        if let Some(seq) = self.pending.finack.take() {
            let mut p = self.base_packet(Kind::FinAck, now);
            p.seq = seq;
            return Some(self.with_ack(p));
        }
        if self.snd.window_blocked() && self.snd.has_queued() {
            self.stats.window.blocked += 1;
        }
        let fin_due = self.phase.ours() == Some(Ours::Closing) && self.snd.all_acked();
        if fin_due || std::mem::take(&mut self.pending.fin_retransmit) {
            if let Phase::Open(o) = &mut self.phase {
                *o = match *o {
                    Ours::Closing => {
                        self.last_progress = now; // waiting for the FinAck starts
                        Ours::FinSent(FinWait { tries: 0, sends: 1 })
                    }
                    Ours::FinSent(w) => Ours::FinSent(FinWait {
                        sends: w.sends + 1,
                        ..w
                    }),
                    other => other,
                };
            }
            let mut p = self.base_packet(Kind::Fin, now);
            p.seq = self.snd.snd_nxt;
            // Never wait longer than a quarter linger: a peer that already
            // closed answers retransmitted Fins only while it lingers.
            let wait = self.rtt.rto().min(self.cfg.tuning.close_linger / 4);
            self.timers.set(Timer::Fin, now + wait);
            self.pending.keepalive = false;
            return Some(self.with_ack(p));
        }
        let window_probe = std::mem::take(&mut self.pending.probe);
        let verify_probe = std::mem::take(&mut self.pending.verify_probe);
        if window_probe || verify_probe {
            if window_probe {
                self.stats.wire.window_probes_sent += 1;
            }
            if verify_probe {
                self.stats.wire.ack_probes_sent += 1;
            }
            let mut p = self.base_packet(Kind::KeepAlive, now);
            p.flags |= flags::ACK_NOW;
            self.pending.keepalive = false;
            return Some(self.with_ack(p));
        }
        if std::mem::take(&mut self.pending.keepalive) {
            self.stats.wire.keepalives_sent += 1;
            // Every keepalive asks for an answer, so we hear from the peer
            // at least once per *our* interval, however rarely it keeps
            // alive itself (§8). The answer defers the peer's own keepalive:
            // an idle session still costs two packets per interval.
            let mut p = self.base_packet(Kind::KeepAlive, now);
            p.flags |= flags::ACK_NOW;
            return Some(self.with_ack(p));
        }
        if self.ack_immediate {
            self.stats.wire.acks_sent += 1;
            let p = self.base_packet(Kind::Ack, now);
            return Some(self.with_ack(p));
        }
        None
    }
}

#[cfg(test)]
mod tests;
