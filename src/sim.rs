//! Running the real protocol engine over the simulated network.
//!
//! [`Pair`] connects two [`Connection`]s through a [`SimNet`] and drives them
//! in virtual time: each [`step`](Pair::step) jumps straight to the next event
//! (a packet arrival or a protocol timer), so a transfer that would take
//! minutes of real time runs in milliseconds, and a run is a pure function of
//! its seed.
//!
//! A [`WindowMonitor`] watches every packet on the wire and records any data
//! packet sent beyond the window its receiver had advertised to the sender,
//! and, for sessions in Go's wire format, any packet a Go peer would reject
//! or choke on: tests assert that there are none.
//!
//! ```
//! use swp::sim::{Pair, transfer, TransferSpec};
//! use swp::simnet::LinkConfig;
//! use std::time::Duration;
//!
//! let link = LinkConfig::new().latency(Duration::from_millis(1)).loss(0.1);
//! let mut pair = Pair::new(7, link, Pair::default_config("A", "B"), Pair::default_config("B", ""));
//! let report = transfer(&mut pair, &TransferSpec::new(256 * 1024)).unwrap();
//! assert_eq!(report.bytes, 256 * 1024);
//! assert_eq!(pair.window_violations(), 0);
//! ```

use crate::proto::{
    Config, Connection, Kind, Recv, codec, go::codec as gocodec, go::link as golink,
};
use bytes::Bytes;
use simnet::{DropReason, Envelope, InboxId, LinkConfig, Monitor, SimNet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Which end of a [`Pair`].
///
/// ```
/// use swp::sim::{Pair, Side};
/// use swp::simnet::LinkConfig;
/// use std::time::Duration;
/// let mut pair = Pair::new(1, LinkConfig::new(), Pair::default_config("A", "B"), Pair::default_config("B", ""));
/// assert!(pair.connect(Duration::from_secs(5)));
/// assert_eq!(pair.conn(Side::A).remote_inbox(), "B");
/// assert_eq!(pair.conn(Side::B).remote_inbox(), "A"); // learnt from A's syn
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The active opener.
    A,
    /// The passive opener (listener).
    B,
}

/// What the [`WindowMonitor`] found.
///
/// ```
/// use swp::sim::{Pair, Side};
/// use swp::simnet::LinkConfig;
/// use std::time::Duration;
/// let mut pair = Pair::new(1, LinkConfig::new(), Pair::default_config("A", "B"), Pair::default_config("B", ""));
/// use swp::sim::{transfer, TransferSpec};
/// transfer(&mut pair, &TransferSpec::new(1 << 20)).unwrap();
/// let r = pair.window_report();
/// assert_eq!(r.violations, 0);
/// assert!(r.first.is_none());
/// assert!(r.checked >= 16); // every data packet was checked
/// assert!(r.by_kind.len() > 2); // syn, synack, data, acks, fin ...
/// ```
#[derive(Debug, Clone, Default)]
pub struct WindowReport {
    /// Data packets sent beyond the receiver's advertised window.
    pub violations: u64,
    /// Description of the first violation.
    pub first: Option<String>,
    /// Data packets checked.
    pub checked: u64,
    /// Packets seen on the wire, by kind.
    pub by_kind: std::collections::BTreeMap<u8, u64>,
    /// The virtual time of the last well-formed packet delivered, per
    /// (sender inbox, receiver inbox): what the receiver last heard.
    pub last_delivery: std::collections::BTreeMap<(usize, usize), Duration>,
}

/// A [`simnet::Monitor`] that decodes every packet and checks flow control:
/// a data packet from X to Y must lie within the largest window edges that Y
/// advertised *and that reached X*.
///
/// ```
/// use swp::sim::WindowMonitor;
/// use swp::simnet::{LinkConfig, SimNet};
/// use swp::proto::{Config, Connection, Packet, Kind, codec};
/// use std::time::Duration;
///
/// let (monitor, report) = WindowMonitor::new();
/// let mut net = SimNet::new(1);
/// let (a, b) = (net.add_inbox("A", 64), net.add_inbox("B", 64));
/// net.set_monitor(Box::new(monitor));
/// // Data sent before B ever advertised a window is a violation.
/// let mut p = Packet::new(Kind::Data);
/// p.seq = 0;
/// p.data = bytes::Bytes::from_static(b"too early");
/// net.send(a, b, codec::encode(&p));
/// let r = report.lock().unwrap();
/// assert_eq!((r.checked, r.violations), (1, 1));
/// assert!(r.first.as_ref().unwrap().contains("data seq 0"), "{:?}", r.first);
/// ```
#[derive(Debug, Default)]
pub struct WindowMonitor {
    /// Go mode: per direction, (largest data seq, its CumulBytesTransmitted).
    go_cumul: std::collections::BTreeMap<(usize, usize), (i64, i64)>,
    /// Largest (seq edge, byte edge) delivered to the sender, per direction
    /// (index = sender inbox id, receiver inbox id).
    edges: std::collections::BTreeMap<(usize, usize), (u64, u64)>,
    report: Arc<Mutex<WindowReport>>,
}

impl WindowMonitor {
    /// A monitor and a handle to read its report.
    ///
    /// ```
    /// use swp::sim::WindowMonitor;
    /// let (monitor, report) = WindowMonitor::new();
    /// let mut net = swp::simnet::SimNet::new(1);
    /// net.set_monitor(Box::new(monitor)); // the network owns the monitor ...
    /// assert_eq!(report.lock().unwrap().violations, 0); // ... the handle reads it
    /// ```
    pub fn new() -> (Self, Arc<Mutex<WindowReport>>) {
        let m = WindowMonitor::default();
        let r = m.report.clone();
        (m, r)
    }
}

/// What the monitor needs of a packet, in either wire format.
struct Seen {
    kind: u8,
    data: bool,
    seq: u64,
    /// End offset of a data packet (Go: not comparable with byte edges).
    end: Option<u64>,
    wnd_seq: u64,
    wnd_bytes: u64,
}

fn violation(r: &mut WindowReport, what: impl FnOnce() -> String) {
    r.violations += 1;
    if r.first.is_none() {
        r.first = Some(what());
    }
}

impl WindowMonitor {
    /// Decodes a packet; for Go's format also checks what a Go peer needs:
    /// that its decoder accepts the packet, sentinel sequence numbers, the
    /// data checksum, and `CumulBytesTransmitted` never going backwards
    /// (a Go receiver panics on that).
    fn see(&mut self, env: &Envelope, sending: bool, r: &mut WindowReport) -> Option<Seen> {
        if !gocodec::looks_like_go(&env.payload) {
            let p = codec::decode(&env.payload).ok()?;
            return Some(Seen {
                kind: p.kind as u8,
                data: p.kind == Kind::Data,
                seq: p.seq,
                end: Some(p.cumul_bytes),
                wnd_seq: p.wnd_seq,
                wnd_bytes: p.wnd_bytes,
            });
        }
        let g = match gocodec::decode_packet(&env.payload) {
            Ok(g) => g,
            Err(e) => {
                if sending {
                    violation(r, || format!("a Go peer would reject this packet: {e}"));
                }
                return None;
            }
        };
        if sending {
            let expect = match g.tcp_event {
                3 => Some(golink::SEQ_SYN),
                4 | 5 | 9 | 10 => Some(golink::SEQ_ACK),
                8 => Some(golink::SEQ_FIN),
                12 => Some(golink::SEQ_KEEPALIVE),
                11 => None,
                e => {
                    violation(r, || format!("Go packet with TcpEvent {e}"));
                    None
                }
            };
            if let Some(x) = expect {
                if g.seq_num != x || g.seq_retry != x {
                    violation(r, || {
                        format!(
                            "Go event {} with SeqNum {} (want {x})",
                            g.tcp_event, g.seq_num
                        )
                    });
                }
            }
            if g.ack_num < -1 {
                violation(r, || format!("Go AckNum {}", g.ack_num));
            }
            if g.tcp_event == 11 {
                if g.seq_num < 0
                    || g.blake2b_checksum != golink::checksum(&g.data) && !g.data.is_empty()
                {
                    violation(r, || {
                        format!("Go data seq {} with a bad seq or checksum", g.seq_num)
                    });
                }
                let (largest, cumul) = self
                    .go_cumul
                    .get(&(env.from.0, env.to.0))
                    .copied()
                    .unwrap_or((-1, 0));
                if g.seq_num > largest {
                    if g.cumul_bytes_transmitted < cumul {
                        violation(r, || {
                            format!(
                                "Go CumulBytesTransmitted went back from {cumul} to {} at seq {}",
                                g.cumul_bytes_transmitted, g.seq_num
                            )
                        });
                    }
                    self.go_cumul.insert(
                        (env.from.0, env.to.0),
                        (g.seq_num, g.cumul_bytes_transmitted),
                    );
                }
            }
        }
        Some(Seen {
            kind: g.tcp_event.clamp(0, 255) as u8,
            data: g.tcp_event == 11,
            seq: g.seq_num.max(0) as u64,
            end: None,
            // Go's caps are relative to the AckNum in the same packet.
            wnd_seq: (g.ack_num + 1).max(0) as u64 + g.avail_reader_msg_cap.max(0) as u64,
            wnd_bytes: u64::MAX,
        })
    }
}

impl Monitor for WindowMonitor {
    fn on_send(&mut self, env: &Envelope, _now: Duration) {
        let report = self.report.clone();
        let mut r = report.lock().expect("monitor lock");
        let Some(p) = self.see(env, true, &mut r) else {
            return;
        };
        *r.by_kind.entry(p.kind).or_default() += 1;
        if !p.data {
            return;
        }
        r.checked += 1;
        let (seq_edge, byte_edge) = self
            .edges
            .get(&(env.from.0, env.to.0))
            .copied()
            .unwrap_or((0, 0));
        if p.seq >= seq_edge || p.end.is_some_and(|e| e > byte_edge) {
            violation(&mut r, || {
                format!(
                    "data seq {} (end offset {:?}) sent with window edges seq<{} bytes<={}",
                    p.seq, p.end, seq_edge, byte_edge
                )
            });
        }
    }

    fn on_deliver(&mut self, env: &Envelope, now: Duration) {
        let report = self.report.clone();
        let mut r = report.lock().expect("monitor lock");
        let Some(p) = self.see(env, false, &mut r) else {
            return;
        };
        r.last_delivery.insert((env.from.0, env.to.0), now);
        // A packet from Y delivered to X carries Y's edges for X's data.
        let e = self.edges.entry((env.to.0, env.from.0)).or_insert((0, 0));
        e.0 = e.0.max(p.wnd_seq);
        e.1 = e.1.max(p.wnd_bytes);
    }

    fn on_drop(&mut self, _env: &Envelope, _reason: DropReason, _now: Duration) {}
}

/// Two connections over a simulated network. See the [module docs](self).
///
/// ```
/// use swp::sim::{Pair, Side};
/// use swp::simnet::LinkConfig;
/// use std::time::Duration;
/// let mut pair = Pair::new(1, LinkConfig::new(), Pair::default_config("A", "B"), Pair::default_config("B", ""));
/// // Drive by hand: write on A, step in virtual time, read on B.
/// assert!(pair.connect(Duration::from_secs(5)));
/// pair.a.write(b"hello").unwrap();
/// assert!(pair.run_until(Duration::from_secs(5), |p| p.b.held().1 == 5));
/// let mut buf = [0u8; 16];
/// assert_eq!(pair.b.read(&mut buf).unwrap(), swp::proto::Recv::Data(5));
/// assert_eq!(&buf[..5], b"hello");
/// ```
pub struct Pair {
    /// The network (impairments, rules, counters).
    pub net: SimNet,
    /// The active opener.
    pub a: Connection,
    /// The passive opener.
    pub b: Connection,
    ia: InboxId,
    ib: InboxId,
    epoch: Instant,
    paused: [bool; 2],
    report: Option<Arc<Mutex<WindowReport>>>,
    unroutable: u64,
}

impl std::fmt::Debug for Pair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pair")
            .field("seed", &self.net.seed())
            .field("now", &self.net.now())
            .field("a", &self.a)
            .field("b", &self.b)
            .finish()
    }
}

/// A fixed instant (the first call's) for driving an engine by hand, as
/// the examples of [`crate::proto`] do: the engine never reads a clock, so
/// its callers pass one, and an example or test that only needs *an*
/// instant to count from takes this one.
///
/// ```
/// use swp::proto::{Config, Connection};
/// use std::time::Duration;
/// let t0 = swp::sim::epoch();
/// assert_eq!(swp::sim::epoch(), t0); // always the same instant
/// let mut a = Connection::connect(Config::new("a", "b"), t0, 1).unwrap();
/// assert!(a.poll_transmit(t0 + Duration::from_millis(1)).is_some());
/// ```
pub fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// The wall clock (Unix ns) at a [`Pair`]'s start.
///
/// ```
/// // 2023-11-14T22:13:20Z, fixed so that Go-format runs (which carry wall-clock
/// // times on the wire) are reproducible.
/// assert_eq!(swp::sim::SIM_WALL_CLOCK_NS / 1_000_000_000, 1_700_000_000);
/// ```
pub const SIM_WALL_CLOCK_NS: i128 = 1_700_000_000_000_000_000;

/// Capacity of each simulated inbox (as a NATS subscription's pending limit).
///
/// ```
/// use swp::sim::{Pair, Side};
/// use swp::simnet::LinkConfig;
/// use std::time::Duration;
/// let mut pair = Pair::new(1, LinkConfig::new(), Pair::default_config("A", "B"), Pair::default_config("B", ""));
/// let ib = pair.inbox(Side::B);
/// assert_eq!(pair.net.free_capacity(ib), swp::sim::INBOX_CAPACITY);
/// ```
pub const INBOX_CAPACITY: usize = 65_536;

impl Pair {
    /// A default configuration for the simulator: the library defaults.
    ///
    /// ```
    /// use swp::sim::Pair;
    /// let cfg = Pair::default_config("A", "B");
    /// assert_eq!(cfg.local_inbox(), "A");
    /// assert_eq!(cfg.max_payload_bytes(), swp::proto::Config::new("", "").max_payload_bytes());
    /// ```
    pub fn default_config(local: &str, remote: &str) -> Config {
        Config::new(local, remote)
    }

    /// Builds a pair: A (`cfg_a`) connects to B (`cfg_b`), which listens.
    /// Every link gets `link`; all randomness comes from `seed`. A
    /// [`WindowMonitor`] is installed.
    ///
    /// ```
    /// use swp::sim::{Pair, transfer, TransferSpec};
    /// use swp::simnet::LinkConfig;
    /// use std::time::Duration;
    /// // 20 ms each way, 5% loss, reordering: 1 MiB still arrives intact.
    /// let link = LinkConfig::new().latency(Duration::from_millis(20)).loss(0.05).reorder(0.05);
    /// let mut pair = Pair::new(3, link, Pair::default_config("A", "B"), Pair::default_config("B", ""));
    /// let r = transfer(&mut pair, &TransferSpec::new(1 << 20)).unwrap();
    /// assert_eq!(r.bytes, 1 << 20);
    /// assert!(pair.net.stats(pair.inbox(swp::sim::Side::B)).lost > 0);
    /// ```
    pub fn new(seed: u64, link: LinkConfig, cfg_a: Config, cfg_b: Config) -> Pair {
        Self::with_capacity(seed, link, cfg_a, cfg_b, INBOX_CAPACITY)
    }

    /// As [`new`](Self::new) with inboxes holding `capacity` messages; each
    /// engine is told that capacity (as the NATS driver tells it the
    /// subscription's limit).
    ///
    /// ```
    /// use swp::sim::{Pair, Side, transfer, TransferSpec};
    /// use swp::simnet::LinkConfig;
    /// // Inboxes of 8 messages: the advertised window shrinks to fit, so nothing
    /// // overflows even though the sender could send far more.
    /// let mut pair = Pair::with_capacity(1, LinkConfig::new(), Pair::default_config("A", "B"), Pair::default_config("B", ""), 8);
    /// transfer(&mut pair, &TransferSpec::new(1 << 20)).unwrap();
    /// assert_eq!(pair.net.stats(pair.inbox(Side::B)).overflowed, 0);
    /// assert!(pair.b.receive_capacity().0 < 8); // room kept for control packets
    /// ```
    pub fn with_capacity(
        seed: u64,
        link: LinkConfig,
        cfg_a: Config,
        cfg_b: Config,
        capacity: usize,
    ) -> Pair {
        // A fixed epoch: virtual time is epoch + net.now(). Only differences
        // of instants matter to the engine, so any base gives the same run.
        let epoch = Instant::now();
        let seed_a = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xa;
        let seed_b = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xb;
        let mut a = Connection::connect(cfg_a, epoch, seed_a).expect("valid config A");
        let mut b = Connection::listen(cfg_b, epoch, seed_b).expect("valid config B");
        // A fixed wall clock (for Go's wall-clock times) keeps runs
        // reproducible: 2023-11-14T22:13:20Z.
        a.set_wall_clock(epoch, SIM_WALL_CLOCK_NS);
        b.set_wall_clock(epoch, SIM_WALL_CLOCK_NS);
        Self::from_parts(seed, link, epoch, a, b, capacity)
    }

    /// A pair from two engines built by the caller at `epoch` (e.g. two
    /// active openers for a simultaneous open).
    ///
    /// ```
    /// use swp::sim::Pair;
    /// use swp::proto::{Config, Connection};
    /// use swp::simnet::LinkConfig;
    /// use std::time::Duration;
    /// // A simultaneous open: both sides connect to each other.
    /// let t0 = swp::sim::epoch();
    /// let a = Connection::connect(Config::new("A", "B"), t0, 1).unwrap();
    /// let b = Connection::connect(Config::new("B", "A"), t0, 2).unwrap();
    /// let mut pair = Pair::from_parts(1, LinkConfig::new(), t0, a, b, 1024);
    /// assert!(pair.connect(Duration::from_secs(10)));
    /// ```
    pub fn from_parts(
        seed: u64,
        link: LinkConfig,
        epoch: Instant,
        mut a: Connection,
        mut b: Connection,
        capacity: usize,
    ) -> Pair {
        let mut net = SimNet::new(seed);
        net.set_default_link(link);
        let ia = net.add_inbox(a.config().local_inbox(), capacity);
        let ib = net.add_inbox(b.config().local_inbox(), capacity);
        let (mon, report) = WindowMonitor::new();
        net.set_monitor(Box::new(mon));
        a.set_transport_capacity(Some(capacity as u64), None);
        b.set_transport_capacity(Some(capacity as u64), None);
        Pair {
            net,
            a,
            b,
            ia,
            ib,
            epoch,
            paused: [false; 2],
            report: Some(report),
            unroutable: 0,
        }
    }

    /// Removes the window monitor (it decodes every packet; benchmarks of
    /// raw speed turn it off).
    ///
    /// ```
    /// use swp::sim::{Pair, Side};
    /// use swp::simnet::LinkConfig;
    /// use std::time::Duration;
    /// let mut pair = Pair::new(1, LinkConfig::new(), Pair::default_config("A", "B"), Pair::default_config("B", ""));
    /// use swp::sim::{transfer, TransferSpec};
    /// let mut pair = pair.without_monitor();
    /// transfer(&mut pair, &TransferSpec::new(1 << 20)).unwrap();
    /// assert_eq!(pair.window_report().checked, 0); // nobody checked
    /// ```
    pub fn without_monitor(mut self) -> Self {
        self.net.take_monitor();
        self.report = None;
        self
    }

    /// Current virtual time as an `Instant`.
    ///
    /// ```
    /// use swp::sim::{Pair, Side};
    /// use swp::simnet::LinkConfig;
    /// use std::time::Duration;
    /// let mut pair = Pair::new(1, LinkConfig::new(), Pair::default_config("A", "B"), Pair::default_config("B", ""));
    /// let t0 = pair.now();
    /// pair.run_until(Duration::from_secs(2), |_| false);
    /// assert_eq!(pair.now() - t0, Duration::from_secs(2)); // virtual: returns at once
    /// ```
    pub fn now(&self) -> Instant {
        self.epoch + self.net.now()
    }

    /// Virtual time elapsed since the pair was built.
    ///
    /// ```
    /// use swp::sim::{Pair, Side};
    /// use swp::simnet::LinkConfig;
    /// use std::time::Duration;
    /// let mut pair = Pair::new(1, LinkConfig::new(), Pair::default_config("A", "B"), Pair::default_config("B", ""));
    /// assert!(pair.connect(Duration::from_secs(5)));
    /// assert!(pair.elapsed() < Duration::from_secs(1));
    /// ```
    pub fn elapsed(&self) -> Duration {
        self.net.now()
    }

    /// The inbox of a side.
    ///
    /// ```
    /// use swp::sim::{Pair, Side};
    /// use swp::simnet::LinkConfig;
    /// use std::time::Duration;
    /// let mut pair = Pair::new(1, LinkConfig::new(), Pair::default_config("A", "B"), Pair::default_config("B", ""));
    /// let (ia, ib) = (pair.inbox(Side::A), pair.inbox(Side::B));
    /// assert_eq!(pair.net.name(ia), "A");
    /// assert_eq!(pair.net.name(ib), "B");
    /// ```
    pub fn inbox(&self, side: Side) -> InboxId {
        match side {
            Side::A => self.ia,
            Side::B => self.ib,
        }
    }

    /// The connection of a side.
    ///
    /// ```
    /// use swp::sim::{Pair, Side};
    /// use swp::simnet::LinkConfig;
    /// use std::time::Duration;
    /// let mut pair = Pair::new(1, LinkConfig::new(), Pair::default_config("A", "B"), Pair::default_config("B", ""));
    /// assert!(pair.connect(Duration::from_secs(5)));
    /// for side in [Side::A, Side::B] {
    ///     assert!(pair.conn(side).is_established());
    /// }
    /// ```
    pub fn conn(&mut self, side: Side) -> &mut Connection {
        match side {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }

    /// Stops (or resumes) a side's driver taking packets out of its inbox,
    /// as if its task were starved: packets pile up in the inbox, which is
    /// exactly what the window must keep from overflowing.
    ///
    /// ```
    /// use swp::sim::{Pair, Side};
    /// use swp::simnet::LinkConfig;
    /// use std::time::Duration;
    /// let mut pair = Pair::with_capacity(1, LinkConfig::new(), Pair::default_config("A", "B"), Pair::default_config("B", ""), 64);
    /// assert!(pair.connect(Duration::from_secs(5)));
    /// pair.pause_receive(Side::B, true);
    /// pair.a.write(&vec![1u8; 8 << 20]).unwrap();
    /// pair.run_until(Duration::from_secs(1), |_| false);
    /// let ib = pair.inbox(Side::B);
    /// assert!(pair.net.pending(ib) > 0); // piling up, B is not taking them ...
    /// assert_eq!(pair.net.stats(ib).overflowed, 0); // ... but the window keeps the inbox from overflowing
    /// pair.pause_receive(Side::B, false);
    /// assert!(pair.run_until(Duration::from_secs(10), |p| p.net.pending(ib) == 0));
    /// ```
    pub fn pause_receive(&mut self, side: Side, paused: bool) {
        self.paused[side as usize] = paused;
    }

    /// Data packets sent beyond the advertised window so far.
    ///
    /// ```
    /// use swp::sim::{Pair, Side};
    /// use swp::simnet::LinkConfig;
    /// use std::time::Duration;
    /// let mut pair = Pair::new(1, LinkConfig::new(), Pair::default_config("A", "B"), Pair::default_config("B", ""));
    /// use swp::sim::{transfer, TransferSpec};
    /// transfer(&mut pair, &TransferSpec::new(4 << 20)).unwrap();
    /// assert_eq!(pair.window_violations(), 0);
    /// ```
    pub fn window_violations(&self) -> u64 {
        self.report
            .as_ref()
            .map_or(0, |r| r.lock().expect("monitor lock").violations)
    }

    /// The monitor's full report.
    ///
    /// ```
    /// use swp::sim::{Pair, Side};
    /// use swp::simnet::LinkConfig;
    /// use std::time::Duration;
    /// let mut pair = Pair::new(1, LinkConfig::new(), Pair::default_config("A", "B"), Pair::default_config("B", ""));
    /// assert!(pair.connect(Duration::from_secs(5)));
    /// let r = pair.window_report();
    /// let syn = swp::proto::Kind::Syn as u8;
    /// assert_eq!(r.by_kind.get(&syn), Some(&1)); // one syn, no retransmission on a perfect link
    /// ```
    pub fn window_report(&self) -> WindowReport {
        self.report
            .as_ref()
            .map(|r| r.lock().expect("monitor lock").clone())
            .unwrap_or_default()
    }

    /// When `side` last heard its peer: the virtual time (since the start)
    /// of the last well-formed packet delivered to it from the other side,
    /// as the monitor saw it. `None` before any (or without a monitor). An
    /// oracle uses it to check that a "peer unreachable" verdict is true.
    ///
    /// ```
    /// use swp::sim::{Pair, Side};
    /// use swp::simnet::LinkConfig;
    /// use std::time::Duration;
    /// let mut pair = Pair::new(1, LinkConfig::new().latency(Duration::from_millis(3)),
    ///     Pair::default_config("A", "B"), Pair::default_config("B", ""));
    /// assert_eq!(pair.last_heard(Side::B), None);
    /// assert!(pair.connect(Duration::from_secs(1)));
    /// assert_eq!(pair.last_heard(Side::B), Some(Duration::from_millis(9))); // the EstabAck
    /// ```
    pub fn last_heard(&self, side: Side) -> Option<Duration> {
        let (to, from) = match side {
            Side::A => (self.ia, self.ib),
            Side::B => (self.ib, self.ia),
        };
        let r = self.report.as_ref()?.lock().expect("monitor lock");
        r.last_delivery.get(&(from.0, to.0)).copied()
    }

    /// Packets addressed to an inbox that does not exist in the network.
    ///
    /// ```
    /// use swp::sim::Pair;
    /// use swp::simnet::LinkConfig;
    /// use std::time::Duration;
    /// // A dials an inbox that does not exist.
    /// let mut pair = Pair::new(1, LinkConfig::new(), Pair::default_config("A", "nobody"), Pair::default_config("B", ""));
    /// assert!(!pair.connect(Duration::from_secs(1)));
    /// assert!(pair.unroutable() >= 1);
    /// ```
    pub fn unroutable(&self) -> u64 {
        self.unroutable
    }

    /// Hands every packet both engines want to send to the network.
    ///
    /// ```
    /// use swp::sim::{Pair, Side};
    /// use swp::simnet::LinkConfig;
    /// use std::time::Duration;
    /// let mut pair = Pair::new(1, LinkConfig::new(), Pair::default_config("A", "B"), Pair::default_config("B", ""));
    /// // A wants to send a syn; flush puts it on the wire without moving time.
    /// pair.flush();
    /// assert_eq!(pair.net.in_flight(), 1);
    /// assert_eq!(pair.elapsed(), Duration::ZERO);
    /// ```
    pub fn flush(&mut self) {
        let now = self.now();
        for side in [Side::A, Side::B] {
            let from = self.inbox(side);
            loop {
                let t = match side {
                    Side::A => self.a.poll_transmit(now),
                    Side::B => self.b.poll_transmit(now),
                };
                let Some(t) = t else { break };
                match self.net.lookup(&t.dest) {
                    Some(to) => self.net.send(from, to, t.payload),
                    None => self.unroutable += 1,
                }
            }
        }
    }

    /// When the next thing happens: a packet arrives or a timer fires.
    ///
    /// ```
    /// use swp::sim::Pair;
    /// use swp::simnet::LinkConfig;
    /// use std::time::Duration;
    /// let link = LinkConfig::new().latency(Duration::from_millis(10));
    /// let mut pair = Pair::new(1, link, Pair::default_config("A", "B"), Pair::default_config("B", ""));
    /// pair.flush(); // the syn is now in flight
    /// assert_eq!(pair.next_event(), Some(pair.now() + Duration::from_millis(10)));
    /// ```
    pub fn next_event(&self) -> Option<Instant> {
        let mut t = self.net.next_arrival().map(|d| self.epoch + d);
        for c in [&self.a, &self.b] {
            if let Some(x) = c.poll_timeout() {
                t = Some(t.map_or(x, |t: Instant| t.min(x)));
            }
        }
        t
    }

    /// Advances to the next event, no further than `limit`, and handles it.
    /// Returns false when nothing is scheduled (the system is idle).
    ///
    /// ```
    /// use swp::sim::Pair;
    /// use swp::simnet::LinkConfig;
    /// use std::time::Duration;
    /// let link = LinkConfig::new().latency(Duration::from_millis(10));
    /// let mut pair = Pair::new(1, link, Pair::default_config("A", "B"), Pair::default_config("B", ""));
    /// let t0 = pair.now();
    /// assert!(pair.step_until(t0 + Duration::from_millis(4))); // stops at the limit
    /// assert_eq!(pair.now() - t0, Duration::from_millis(4));
    /// assert!(!pair.b.is_established());
    /// ```
    pub fn step_until(&mut self, limit: Instant) -> bool {
        self.flush();
        let Some(t) = self.next_event() else {
            return false;
        };
        let t = t.min(limit).max(self.now());
        self.net.advance_to(t - self.epoch);
        let (now, seed) = (self.now(), self.net.seed());
        for side in [Side::A, Side::B] {
            if !self.paused[side as usize] {
                let inbox = self.inbox(side);
                while let Some(env) = self.net.recv(inbox) {
                    self.conn(side).handle_packet(now, env.payload);
                }
            }
            let c = self.conn(side);
            if c.poll_timeout().is_some_and(|x| x <= now) {
                c.handle_timeout(now);
                // The engine's timer contract (docs/PROTOCOL.md §9), checked
                // on every run: nothing stays due after handle_timeout, or a
                // driver that cannot send just now would spin.
                if let Some(next) = c.poll_timeout() {
                    assert!(
                        next > now,
                        "seed {seed}, {side:?}: a timer is still due at {next:?} after \
                         handle_timeout({now:?})"
                    );
                }
            }
        }
        self.flush();
        true
    }

    /// One step with no limit.
    ///
    /// ```
    /// use swp::sim::Pair;
    /// use swp::simnet::LinkConfig;
    /// use std::time::Duration;
    /// let link = LinkConfig::new().latency(Duration::from_millis(10));
    /// let mut pair = Pair::new(1, link, Pair::default_config("A", "B"), Pair::default_config("B", ""));
    /// assert!(pair.step()); // the syn arrives at B
    /// assert_eq!(pair.elapsed(), Duration::from_millis(10));
    /// assert!(pair.step()); // B's synack arrives at A
    /// assert!(pair.a.is_established());
    /// ```
    pub fn step(&mut self) -> bool {
        self.step_until(self.now() + Duration::from_secs(3600))
    }

    /// Steps until `done` returns true (checked after every step) or
    /// `budget` of virtual time passes. Returns whether `done` held.
    ///
    /// ```
    /// use swp::sim::{Pair, Side};
    /// use swp::simnet::LinkConfig;
    /// use std::time::Duration;
    /// let mut pair = Pair::new(1, LinkConfig::new(), Pair::default_config("A", "B"), Pair::default_config("B", ""));
    /// assert!(pair.connect(Duration::from_secs(5)));
    /// let id = pair.a.send_message(bytes::Bytes::from_static(b"ping")).unwrap();
    /// assert!(pair.run_until(Duration::from_secs(5), |p| p.a.is_acked(id)));
    /// // A budget that runs out returns false.
    /// assert!(!pair.run_until(Duration::from_millis(1), |_| false));
    /// ```
    pub fn run_until(&mut self, budget: Duration, mut done: impl FnMut(&mut Pair) -> bool) -> bool {
        let deadline = self.now() + budget;
        loop {
            if done(self) {
                return true;
            }
            if self.now() >= deadline {
                return false;
            }
            if !self.step_until(deadline) {
                // Idle: let virtual time pass to the deadline.
                self.net.advance_to(deadline - self.epoch);
                return done(self);
            }
        }
    }

    /// Runs until both sides are established (or `budget` passes).
    ///
    /// ```
    /// use swp::sim::Pair;
    /// use swp::simnet::LinkConfig;
    /// use std::time::Duration;
    /// let link = LinkConfig::new().latency(Duration::from_millis(50));
    /// let mut pair = Pair::new(1, link, Pair::default_config("A", "B"), Pair::default_config("B", ""));
    /// assert!(pair.connect(Duration::from_secs(5)));
    /// // syn, synack, estab ack: one and a half round trips at most.
    /// assert!(pair.elapsed() <= Duration::from_millis(150));
    /// ```
    pub fn connect(&mut self, budget: Duration) -> bool {
        self.run_until(budget, |p| p.a.is_established() && p.b.is_established())
    }
}

/// What to transfer with [`transfer`].
///
/// ```
/// use swp::sim::{Pair, Side};
/// use swp::simnet::LinkConfig;
/// use std::time::Duration;
/// let mut pair = Pair::new(1, LinkConfig::new(), Pair::default_config("A", "B"), Pair::default_config("B", ""));
/// use swp::sim::{transfer, TransferSpec};
/// // A slow reader: 64 KiB per virtual millisecond, no close at the end.
/// let spec = TransferSpec { read_rate_per_ms: Some(64 * 1024), close: false, ..TransferSpec::new(8 << 20) };
/// let r = transfer(&mut pair, &spec).unwrap();
/// assert!(r.elapsed >= Duration::from_millis(8 * 16 - 1)); // 8 MiB at 64 MiB/s
/// assert!(pair.a.is_established()); // still open
/// ```
#[derive(Debug, Clone)]
pub struct TransferSpec {
    /// Bytes to send from A to B.
    pub bytes: u64,
    /// Virtual-time budget; exceeding it is an error.
    pub budget: Duration,
    /// If set, B's application reads at most this many bytes per millisecond
    /// of virtual time (a slow consumer); else it reads everything at once.
    pub read_rate_per_ms: Option<u64>,
    /// Close both directions at the end and wait for both to be Closed.
    pub close: bool,
}

impl TransferSpec {
    /// `bytes` from A to B, a 10-minute virtual budget, a fast reader,
    /// closing at the end.
    ///
    /// ```
    /// use swp::sim::TransferSpec;
    /// let s = TransferSpec::new(1000);
    /// assert_eq!((s.bytes, s.close, s.read_rate_per_ms), (1000, true, None));
    /// assert_eq!(s.budget, std::time::Duration::from_secs(600));
    /// ```
    pub fn new(bytes: u64) -> Self {
        TransferSpec {
            bytes,
            budget: Duration::from_secs(600),
            read_rate_per_ms: None,
            close: true,
        }
    }
}

/// Result of a [`transfer`].
///
/// ```
/// use swp::sim::{Pair, transfer, TransferSpec};
/// use swp::simnet::LinkConfig;
/// use std::time::Duration;
/// // 10 MB/s link: goodput cannot exceed it.
/// let link = LinkConfig::new().bandwidth(Some(10_000_000)).latency(Duration::from_millis(1));
/// let mut pair = Pair::new(1, link, Pair::default_config("A", "B"), Pair::default_config("B", ""));
/// let r = transfer(&mut pair, &TransferSpec::new(4 << 20)).unwrap();
/// assert!(r.goodput_mib_s < 10e6 / (1 << 20) as f64, "{r:?}");
/// assert!(r.goodput_mib_s > 5.0, "{r:?}");
/// ```
#[derive(Debug, Clone)]
pub struct TransferReport {
    /// Bytes delivered to B (all verified).
    pub bytes: u64,
    /// Virtual time from the start of the call until B had every byte.
    pub elapsed: Duration,
    /// Goodput in MiB per virtual second.
    pub goodput_mib_s: f64,
}

/// Byte `i` of a test stream: a pattern that catches reordering, loss and
/// duplication (a shifted or repeated run of bytes does not match).
///
/// ```
/// use swp::sim::pattern_byte;
/// let first: Vec<u8> = (0..8).map(pattern_byte).collect();
/// let shifted: Vec<u8> = (1..9).map(pattern_byte).collect();
/// assert_ne!(first, shifted); // a lost or repeated byte shows
/// ```
pub fn pattern_byte(i: u64) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8
}

/// Streams `spec.bytes` of [`pattern_byte`] data from A to B over the pair,
/// verifying every byte on arrival, then (optionally) closes both sides.
/// Connects first if needed. Errors describe what went wrong and when.
///
/// ```
/// use swp::sim::{Pair, transfer, TransferSpec};
/// use swp::simnet::LinkConfig;
/// use std::time::Duration;
/// // A network that loses everything: the transfer fails with a message that
/// // names the seed, instead of hanging.
/// let mut pair = Pair::new(9, LinkConfig::new().loss(1.0), Pair::default_config("A", "B"), Pair::default_config("B", ""));
/// let spec = TransferSpec { budget: Duration::from_secs(30), ..TransferSpec::new(1000) };
/// let err = transfer(&mut pair, &spec).unwrap_err();
/// assert!(err.starts_with("seed 9:"), "{err}");
/// ```
pub fn transfer(pair: &mut Pair, spec: &TransferSpec) -> Result<TransferReport, String> {
    let start = pair.now();
    let deadline = start + spec.budget;
    let mut written = 0u64;
    let mut read = 0u64;
    let mut done_at = None;
    let mut chunk = vec![0u8; 256 * 1024];
    let mut buf = vec![0u8; 256 * 1024];
    let mut last_read_tick = pair.now();
    let mut closed_a = false;
    loop {
        // The writer: fill the send buffer.
        while written < spec.bytes && pair.a.send_space() > 0 && !pair.a.is_closed() {
            let n = (spec.bytes - written).min(chunk.len() as u64) as usize;
            for (k, b) in chunk[..n].iter_mut().enumerate() {
                *b = pattern_byte(written + k as u64);
            }
            let took = pair.a.write(&chunk[..n]).map_err(|e| e.to_string())?;
            if took == 0 {
                break;
            }
            written += took as u64;
        }
        if written == spec.bytes && spec.close && !closed_a {
            pair.a.close(pair.now());
            closed_a = true;
        }
        // The reader.
        let mut allowance = match spec.read_rate_per_ms {
            None => u64::MAX,
            Some(rate) => {
                let ms = pair
                    .now()
                    .saturating_duration_since(last_read_tick)
                    .as_millis() as u64;
                if ms > 0 {
                    last_read_tick += Duration::from_millis(ms);
                }
                rate * ms
            }
        };
        while allowance > 0 {
            let cap = allowance.min(buf.len() as u64) as usize;
            match pair.b.read(&mut buf[..cap]) {
                Ok(Recv::Data(n)) => {
                    for (k, b) in buf[..n].iter().enumerate() {
                        if *b != pattern_byte(read + k as u64) {
                            return Err(format!(
                                "seed {}: byte {} corrupt: got {:#04x}, want {:#04x}",
                                pair.net.seed(),
                                read + k as u64,
                                b,
                                pattern_byte(read + k as u64)
                            ));
                        }
                    }
                    read += n as u64;
                    allowance -= n as u64;
                }
                Ok(Recv::Blocked) => break,
                Ok(Recv::Finished) => break,
                Err(e) => return Err(format!("seed {}: B read failed: {e}", pair.net.seed())),
            }
        }
        if read > spec.bytes {
            return Err(format!(
                "seed {}: B read {} bytes, more than sent",
                pair.net.seed(),
                read
            ));
        }
        if read == spec.bytes && done_at.is_none() {
            done_at = Some(pair.now());
            if spec.close {
                pair.b.close(pair.now());
            }
        }
        if let Some(r) = pair.a.close_reason().filter(|r| !r.is_normal()) {
            return Err(format!("seed {}: A failed: {r}", pair.net.seed()));
        }
        if let Some(r) = pair.b.close_reason().filter(|r| !r.is_normal()) {
            return Err(format!("seed {}: B failed: {r}", pair.net.seed()));
        }
        let finished =
            done_at.is_some() && (!spec.close || (pair.a.is_closed() && pair.b.is_closed()));
        if finished {
            break;
        }
        if pair.now() >= deadline {
            return Err(format!(
                "seed {}: out of virtual time after {:?}: wrote {written}, read {read} of {} (A {:?}, B {:?})",
                pair.net.seed(),
                spec.budget,
                spec.bytes,
                pair.a.state(),
                pair.b.state()
            ));
        }
        let limit = match spec.read_rate_per_ms {
            Some(_) => deadline.min(pair.now() + Duration::from_millis(1)),
            None => deadline,
        };
        if !pair.step_until(limit) {
            pair.net.advance_to(limit - pair.epoch);
        }
    }
    let elapsed = done_at.expect("finished").saturating_duration_since(start);
    Ok(TransferReport {
        bytes: read,
        elapsed,
        goodput_mib_s: read as f64 / (1 << 20) as f64 / elapsed.as_secs_f64().max(1e-9),
    })
}

/// Collects messages B receives (for message-API tests).
///
/// ```
/// use swp::sim::{Pair, Side};
/// use swp::simnet::LinkConfig;
/// use std::time::Duration;
/// let mut pair = Pair::new(1, LinkConfig::new(), Pair::default_config("A", "B"), Pair::default_config("B", ""));
/// use swp::sim::drain_messages;
/// assert!(pair.connect(Duration::from_secs(5)));
/// for m in ["one", "two"] {
///     pair.a.send_message(bytes::Bytes::from_static(m.as_bytes())).unwrap();
/// }
/// assert!(pair.run_until(Duration::from_secs(5), |p| p.b.held().0 > 0 && p.a.bytes_acked() == 6));
/// assert_eq!(drain_messages(&mut pair.b), ["one", "two"]);
/// ```
pub fn drain_messages(conn: &mut Connection) -> Vec<Bytes> {
    let mut out = vec![];
    while let Ok(Recv::Data(m)) = conn.recv_message() {
        out.push(m);
    }
    out
}

/// Sends `msgs` from A through the message API as fast as A's send buffer
/// takes them, and runs until B has received as many messages (or `budget`
/// of virtual time passes). Returns what B received, in order, or an error
/// that names the seed and how far it got.
///
/// ```
/// use bytes::Bytes;
/// use swp::sim::{Pair, deliver_messages};
/// use swp::simnet::LinkConfig;
/// use std::time::Duration;
/// let link = LinkConfig::new().latency(Duration::from_millis(5)).loss(0.1);
/// let mut pair = Pair::new(4, link, Pair::default_config("A", "B"), Pair::default_config("B", ""));
/// let msgs: Vec<Bytes> = (0..500).map(|i| Bytes::from(format!("message {i}"))).collect();
/// assert_eq!(deliver_messages(&mut pair, &msgs, Duration::from_secs(60)).unwrap(), msgs);
/// // Nothing gets through a dead link: an error, not a hang.
/// let mut dead = Pair::new(4, LinkConfig::new().loss(1.0), Pair::default_config("A", "B"), Pair::default_config("B", ""));
/// let err = deliver_messages(&mut dead, &msgs, Duration::from_secs(5)).unwrap_err();
/// assert_eq!(err, "seed 4: delivered 0 of 500 messages");
/// ```
pub fn deliver_messages(
    pair: &mut Pair,
    msgs: &[Bytes],
    budget: Duration,
) -> Result<Vec<Bytes>, String> {
    let mut got = vec![];
    let mut next = 0;
    let ok = pair.run_until(budget, |p| {
        while next < msgs.len() {
            match p.a.send_message(msgs[next].clone()) {
                Ok(_) => next += 1,
                Err(_) => break,
            }
        }
        got.extend(drain_messages(&mut p.b));
        got.len() == msgs.len()
    });
    if ok {
        Ok(got)
    } else {
        Err(format!(
            "seed {}: delivered {} of {} messages",
            pair.net.seed(),
            got.len(),
            msgs.len()
        ))
    }
}
