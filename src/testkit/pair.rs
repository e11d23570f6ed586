//! [`Pair`]: two engines over SimNet, driven in virtual time.

use super::{WindowMonitor, WindowReport};
use crate::proto::{Config, Connection};
use simnet::{InboxId, LinkConfig, SimNet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Which end of a [`Pair`].
///
/// ```
/// use swp::testkit::{Pair, Side};
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

/// Two connections over a simulated network. See the [module docs](crate::testkit).
///
/// ```
/// use swp::testkit::{Pair, Side};
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
    pub(super) epoch: Instant,
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
/// let t0 = swp::testkit::epoch();
/// assert_eq!(swp::testkit::epoch(), t0); // always the same instant
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
/// assert_eq!(swp::testkit::SIM_WALL_CLOCK_NS / 1_000_000_000, 1_700_000_000);
/// ```
pub const SIM_WALL_CLOCK_NS: i128 = 1_700_000_000_000_000_000;

/// Capacity of each simulated inbox (as a NATS subscription's pending limit).
///
/// ```
/// use swp::testkit::{Pair, Side};
/// use swp::simnet::LinkConfig;
/// use std::time::Duration;
/// let mut pair = Pair::new(1, LinkConfig::new(), Pair::default_config("A", "B"), Pair::default_config("B", ""));
/// let ib = pair.inbox(Side::B);
/// assert_eq!(pair.net.free_capacity(ib), swp::testkit::INBOX_CAPACITY);
/// ```
pub const INBOX_CAPACITY: usize = 65_536;

impl Pair {
    /// A default configuration for the simulator: the library defaults.
    ///
    /// ```
    /// use swp::testkit::Pair;
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
    /// use swp::testkit::{Pair, transfer, TransferSpec};
    /// use swp::simnet::LinkConfig;
    /// use std::time::Duration;
    /// // 20 ms each way, 5% loss, reordering: 1 MiB still arrives intact.
    /// let link = LinkConfig::new().latency(Duration::from_millis(20)).loss(0.05).reorder(0.05);
    /// let mut pair = Pair::new(3, link, Pair::default_config("A", "B"), Pair::default_config("B", ""));
    /// let r = transfer(&mut pair, &TransferSpec::new(1 << 20)).unwrap();
    /// assert_eq!(r.bytes, 1 << 20);
    /// assert!(pair.net.stats(pair.inbox(swp::testkit::Side::B)).lost > 0);
    /// ```
    pub fn new(seed: u64, link: LinkConfig, cfg_a: Config, cfg_b: Config) -> Pair {
        Self::with_capacity(seed, link, cfg_a, cfg_b, INBOX_CAPACITY)
    }

    /// As [`new`](Self::new) with inboxes holding `capacity` messages; each
    /// engine is told that capacity (as the NATS driver tells it the
    /// subscription's limit).
    ///
    /// ```
    /// use swp::testkit::{Pair, Side, transfer, TransferSpec};
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
    /// use swp::testkit::Pair;
    /// use swp::proto::{Config, Connection};
    /// use swp::simnet::LinkConfig;
    /// use std::time::Duration;
    /// // A simultaneous open: both sides connect to each other.
    /// let t0 = swp::testkit::epoch();
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
    /// use swp::testkit::{Pair, Side};
    /// use swp::simnet::LinkConfig;
    /// use std::time::Duration;
    /// let mut pair = Pair::new(1, LinkConfig::new(), Pair::default_config("A", "B"), Pair::default_config("B", ""));
    /// use swp::testkit::{transfer, TransferSpec};
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
    /// use swp::testkit::{Pair, Side};
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
    /// use swp::testkit::{Pair, Side};
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
    /// use swp::testkit::{Pair, Side};
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
    /// use swp::testkit::{Pair, Side};
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
    /// use swp::testkit::{Pair, Side};
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
    /// use swp::testkit::{Pair, Side};
    /// use swp::simnet::LinkConfig;
    /// use std::time::Duration;
    /// let mut pair = Pair::new(1, LinkConfig::new(), Pair::default_config("A", "B"), Pair::default_config("B", ""));
    /// use swp::testkit::{transfer, TransferSpec};
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
    /// use swp::testkit::{Pair, Side};
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
    /// use swp::testkit::{Pair, Side};
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
    /// use swp::testkit::Pair;
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
    /// use swp::testkit::{Pair, Side};
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
    /// use swp::testkit::Pair;
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
    /// use swp::testkit::Pair;
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
    /// use swp::testkit::Pair;
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
    /// use swp::testkit::{Pair, Side};
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
    /// use swp::testkit::Pair;
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
