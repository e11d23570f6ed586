//! The network itself: inboxes, links, the delivery heap in virtual time,
//! partitions and black holes ([`SimNet`]).

use crate::*;
use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::fmt;
use std::time::Duration;

struct Inbox {
    name: String,
    capacity: usize,
    queue: VecDeque<Envelope>,
    stats: InboxStats,
    black_hole: bool,
}

struct Link {
    config: Option<LinkConfig>,
    rng: ChaCha8Rng,
    next_seq: u64,
    max_delivered_seq: Option<u64>,
    busy_until: Duration,
}

struct Scheduled {
    at: Duration,
    id: u64,
    env: Envelope,
    corrupted: bool,
}

impl PartialEq for Scheduled {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.id) == (o.at, o.id)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.id).cmp(&(o.at, o.id))
    }
}

/// The simulated network. See the [crate docs](crate).
///
/// ```
/// use simnet::{LinkConfig, SimNet};
/// use std::time::Duration;
/// let ms = Duration::from_millis;
/// let mut net = SimNet::new(7);
/// net.set_default_link(LinkConfig::new().latency(ms(10)).loss(0.1));
/// let (a, b) = (net.add_inbox("A", 64), net.add_inbox("B", 64));
/// for _ in 0..50 {
///     net.send(a, b, "ping".into());
/// }
/// // Step through arrivals in virtual time: no sleeping, no wall clock.
/// while let Some(t) = net.next_arrival() {
///     net.advance_to(t);
/// }
/// assert_eq!(net.now(), ms(10));
/// assert_eq!(net.pending(b) as u64 + net.stats(b).lost, 50);
/// ```
pub struct SimNet {
    seed: u64,
    now: Duration,
    next_id: u64,
    default_link: LinkConfig,
    inboxes: Vec<Inbox>,
    names: BTreeMap<String, InboxId>,
    links: BTreeMap<(InboxId, InboxId), Link>,
    partitions: BTreeSet<(InboxId, InboxId)>,
    rules: Vec<Rule>,
    heap: BinaryHeap<Reverse<Scheduled>>,
    monitor: Option<Box<dyn Monitor>>,
}

impl fmt::Debug for SimNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimNet")
            .field("seed", &self.seed)
            .field("now", &self.now)
            .field("in_flight", &self.heap.len())
            .finish()
    }
}

impl SimNet {
    /// A network whose every random choice derives from `seed`. Time starts at 0.
    ///
    /// ```
    /// use simnet::{LinkConfig, SimNet};
    /// use std::time::Duration;
    /// // The same seed makes the same choices, run after run.
    /// let run = |seed| {
    ///     let mut net = SimNet::new(seed);
    ///     net.set_default_link(LinkConfig::new().loss(0.5));
    ///     let (a, b) = (net.add_inbox("A", 128), net.add_inbox("B", 128));
    ///     for i in 0..100u8 {
    ///         net.send(a, b, vec![i].into());
    ///     }
    ///     net.advance_to(Duration::ZERO);
    ///     std::iter::from_fn(|| net.recv(b)).map(|e| e.payload[0]).collect::<Vec<_>>()
    /// };
    /// assert_eq!(run(7), run(7));
    /// assert_ne!(run(7), run(8));
    /// ```
    pub fn new(seed: u64) -> Self {
        SimNet {
            seed,
            now: Duration::ZERO,
            next_id: 0,
            default_link: LinkConfig::new(),
            inboxes: Vec::new(),
            names: BTreeMap::new(),
            links: BTreeMap::new(),
            partitions: BTreeSet::new(),
            rules: Vec::new(),
            heap: BinaryHeap::new(),
            monitor: None,
        }
    }

    /// The seed this network was built with (print it when a test fails).
    ///
    /// ```
    /// let net = simnet::SimNet::new(42);
    /// assert_eq!(net.seed(), 42);
    /// ```
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Current virtual time since the network was created.
    ///
    /// ```
    /// use std::time::Duration;
    /// let mut net = simnet::SimNet::new(1);
    /// assert_eq!(net.now(), Duration::ZERO);
    /// net.advance_to(Duration::from_millis(5));
    /// assert_eq!(net.now(), Duration::from_millis(5));
    /// net.advance_to(Duration::from_millis(1)); // never backwards
    /// assert_eq!(net.now(), Duration::from_millis(5));
    /// ```
    pub fn now(&self) -> Duration {
        self.now
    }

    /// Creates an inbox that holds at most `capacity` undelivered messages
    /// (like a NATS subscription's pending limit). Adding a name twice returns
    /// the existing inbox.
    ///
    /// ```
    /// use simnet::{LinkConfig, SimNet};
    /// use std::time::Duration;
    /// let mut net = SimNet::new(1);
    /// let (a, b) = (net.add_inbox("A", 8), net.add_inbox("B", 2));
    /// for _ in 0..3 {
    ///     net.send(a, b, "x".into());
    /// }
    /// net.advance_to(Duration::ZERO);
    /// assert_eq!(net.pending(b), 2);
    /// assert_eq!(net.stats(b).overflowed, 1); // a slow consumer, as NATS would say
    /// ```
    pub fn add_inbox(&mut self, name: &str, capacity: usize) -> InboxId {
        if let Some(id) = self.names.get(name) {
            return *id;
        }
        let id = InboxId(self.inboxes.len());
        self.inboxes.push(Inbox {
            name: name.to_string(),
            capacity: capacity.max(1),
            queue: VecDeque::new(),
            stats: InboxStats::default(),
            black_hole: false,
        });
        self.names.insert(name.to_string(), id);
        id
    }

    /// The inbox with this name, if one was added.
    ///
    /// ```
    /// let mut net = simnet::SimNet::new(1);
    /// let a = net.add_inbox("A", 8);
    /// assert_eq!(net.lookup("A"), Some(a));
    /// assert_eq!(net.lookup("nobody"), None);
    /// ```
    pub fn lookup(&self, name: &str) -> Option<InboxId> {
        self.names.get(name).copied()
    }

    /// The name an inbox was added with.
    ///
    /// ```
    /// let mut net = simnet::SimNet::new(1);
    /// let a = net.add_inbox("_INBOX.a", 8);
    /// assert_eq!(net.name(a), "_INBOX.a");
    /// ```
    pub fn name(&self, id: InboxId) -> &str {
        &self.inboxes[id.0].name
    }

    /// Impairments for every link without a link-specific configuration.
    ///
    /// ```
    /// use simnet::{LinkConfig, SimNet};
    /// use std::time::Duration;
    /// let ms = Duration::from_millis;
    /// let mut net = SimNet::new(1);
    /// let (a, b) = (net.add_inbox("A", 1024), net.add_inbox("B", 1024));
    /// net.set_default_link(LinkConfig::new().latency(ms(3)));
    /// net.send(a, b, "x".into());
    /// net.send(b, a, "y".into());
    /// assert_eq!(net.advance_to(ms(3)), 2); // both directions use it
    /// ```
    pub fn set_default_link(&mut self, config: LinkConfig) {
        self.default_link = config;
    }

    /// Impairments for the directed link `from` → `to` only.
    ///
    /// ```
    /// use simnet::{LinkConfig, SimNet};
    /// use std::time::Duration;
    /// let ms = Duration::from_millis;
    /// let mut net = SimNet::new(1);
    /// let (a, b) = (net.add_inbox("A", 1024), net.add_inbox("B", 1024));
    /// net.set_default_link(LinkConfig::new().latency(ms(1)));
    /// net.set_link(a, b, LinkConfig::new().latency(ms(30))); // a -> b only
    /// net.send(a, b, "slow".into());
    /// net.send(b, a, "fast".into());
    /// assert_eq!(net.advance_to(ms(1)), 1);
    /// assert_eq!(net.pending(a), 1);
    /// assert_eq!(net.next_arrival(), Some(ms(30)));
    /// ```
    pub fn set_link(&mut self, from: InboxId, to: InboxId, config: LinkConfig) {
        self.link_mut(from, to).config = Some(config);
    }

    /// Installs a targeted fault rule; rules are consulted in install order.
    ///
    /// ```
    /// use simnet::{Rule, SimNet, Verdict};
    /// use std::time::Duration;
    /// let mut net = SimNet::new(1);
    /// let (a, b) = (net.add_inbox("A", 1024), net.add_inbox("B", 1024));
    /// // Corrupt every message that starts with a 0 byte.
    /// net.add_rule(Rule::new("corrupt", Verdict::Corrupt, |e| e.payload.first() == Some(&0)));
    /// net.send(a, b, vec![0u8; 8].into());
    /// net.send(a, b, vec![1u8; 8].into());
    /// net.advance_to(Duration::ZERO);
    /// assert_ne!(&net.recv(b).unwrap().payload[..], &[0u8; 8]);
    /// assert_eq!(&net.recv(b).unwrap().payload[..], &[1u8; 8]);
    /// assert_eq!(net.stats(b).corrupted, 1);
    /// ```
    pub fn add_rule(&mut self, rule: Rule) -> RuleId {
        self.rules.push(rule);
        RuleId(self.rules.len() - 1)
    }

    /// How many messages the rule has applied to so far.
    ///
    /// ```
    /// use simnet::{Rule, SimNet, Verdict};
    /// use std::time::Duration;
    /// let mut net = SimNet::new(1);
    /// let (a, b) = (net.add_inbox("A", 1024), net.add_inbox("B", 1024));
    /// let r = net.add_rule(Rule::new("to B", Verdict::Pass, move |e| e.to == b));
    /// net.send(a, b, "x".into());
    /// net.send(b, a, "y".into());
    /// assert_eq!(net.rule_hits(r), 1);
    /// ```
    pub fn rule_hits(&self, id: RuleId) -> u64 {
        self.rules[id.0].hits
    }

    /// Removes every rule.
    ///
    /// ```
    /// use simnet::{Rule, SimNet, Verdict};
    /// use std::time::Duration;
    /// let mut net = SimNet::new(1);
    /// let (a, b) = (net.add_inbox("A", 1024), net.add_inbox("B", 1024));
    /// net.add_rule(Rule::new("drop all", Verdict::Drop, |_| true));
    /// net.send(a, b, "lost".into());
    /// net.clear_rules();
    /// net.send(a, b, "kept".into());
    /// net.advance_to(Duration::ZERO);
    /// assert_eq!(&net.recv(b).unwrap().payload[..], b"kept");
    /// ```
    pub fn clear_rules(&mut self) {
        self.rules.clear();
    }

    /// Cuts both directions between `a` and `b`: messages sent while
    /// partitioned are dropped (messages already in flight still arrive).
    ///
    /// ```
    /// use simnet::{LinkConfig, SimNet};
    /// use std::time::Duration;
    /// let ms = Duration::from_millis;
    /// let mut net = SimNet::new(1);
    /// let (a, b) = (net.add_inbox("A", 1024), net.add_inbox("B", 1024));
    /// net.set_default_link(LinkConfig::new().latency(ms(5)));
    /// net.send(a, b, "in flight".into());
    /// net.partition(a, b);
    /// net.send(a, b, "cut".into());
    /// net.send(b, a, "cut too".into()); // both directions
    /// net.advance_to(ms(5));
    /// assert_eq!(&net.recv(b).unwrap().payload[..], b"in flight");
    /// assert_eq!((net.pending(a), net.pending(b)), (0, 0));
    /// assert_eq!(net.stats(b).dropped_by_partition, 1);
    /// ```
    pub fn partition(&mut self, a: InboxId, b: InboxId) {
        self.partitions.insert((a.min(b), a.max(b)));
    }

    /// Undoes [`partition`](Self::partition).
    ///
    /// ```
    /// use simnet::{LinkConfig, SimNet};
    /// use std::time::Duration;
    /// let mut net = SimNet::new(1);
    /// let (a, b) = (net.add_inbox("A", 1024), net.add_inbox("B", 1024));
    /// net.partition(a, b);
    /// net.send(a, b, "cut".into());
    /// net.heal(b, a); // the order of the two inboxes does not matter
    /// net.send(a, b, "through".into());
    /// net.advance_to(Duration::ZERO);
    /// assert_eq!(&net.recv(b).unwrap().payload[..], b"through");
    /// assert!(net.recv(b).is_none());
    /// ```
    pub fn heal(&mut self, a: InboxId, b: InboxId) {
        self.partitions.remove(&(a.min(b), a.max(b)));
    }

    /// Makes `inbox` swallow everything sent to it (a vanished peer), or
    /// (with `false`) restores it.
    ///
    /// ```
    /// use simnet::{LinkConfig, SimNet};
    /// use std::time::Duration;
    /// let mut net = SimNet::new(1);
    /// let (a, b) = (net.add_inbox("A", 1024), net.add_inbox("B", 1024));
    /// let c = net.add_inbox("C", 8);
    /// net.set_black_hole(b, true); // B vanished: nobody reaches it
    /// net.send(a, b, "lost".into());
    /// net.send(c, b, "lost too".into());
    /// net.set_black_hole(b, false);
    /// net.send(a, b, "back".into());
    /// net.advance_to(Duration::ZERO);
    /// assert_eq!(net.pending(b), 1);
    /// assert_eq!(net.stats(b).dropped_by_partition, 2);
    /// ```
    pub fn set_black_hole(&mut self, inbox: InboxId, on: bool) {
        self.inboxes[inbox.0].black_hole = on;
    }

    /// Installs a [`Monitor`] that sees every message.
    ///
    /// ```
    /// use simnet::{Envelope, Monitor, SimNet};
    /// use std::sync::{atomic::{AtomicU64, Ordering}, Arc};
    /// use std::time::Duration;
    ///
    /// struct CountSends(Arc<AtomicU64>);
    /// impl Monitor for CountSends {
    ///     fn on_send(&mut self, _: &Envelope, _: Duration) {
    ///         self.0.fetch_add(1, Ordering::Relaxed);
    ///     }
    /// }
    /// let sends = Arc::new(AtomicU64::new(0));
    /// let mut net = SimNet::new(1);
    /// let (a, b) = (net.add_inbox("A", 8), net.add_inbox("B", 8));
    /// net.set_monitor(Box::new(CountSends(sends.clone())));
    /// net.partition(a, b);
    /// net.send(a, b, "x".into()); // seen before the partition drops it
    /// assert_eq!(sends.load(Ordering::Relaxed), 1);
    /// ```
    pub fn set_monitor(&mut self, monitor: Box<dyn Monitor>) {
        self.monitor = Some(monitor);
    }

    /// Takes the monitor back out (to inspect what it recorded).
    ///
    /// ```
    /// use simnet::{Monitor, SimNet};
    /// struct Quiet;
    /// impl Monitor for Quiet {}
    /// let mut net = SimNet::new(1);
    /// net.set_monitor(Box::new(Quiet));
    /// assert!(net.take_monitor().is_some());
    /// assert!(net.take_monitor().is_none()); // taken: the network runs without one
    /// ```
    pub fn take_monitor(&mut self) -> Option<Box<dyn Monitor>> {
        self.monitor.take()
    }

    fn link_mut(&mut self, from: InboxId, to: InboxId) -> &mut Link {
        let seed = self.seed;
        let names = (&self.inboxes[from.0].name, &self.inboxes[to.0].name);
        self.links.entry((from, to)).or_insert_with(|| {
            // FNV-1a over the seed and both names: stable across runs and
            // independent of the order in which links are first used.
            let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
            for b in names.0.bytes().chain([0xff]).chain(names.1.bytes()) {
                h ^= b as u64;
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
            Link {
                config: None,
                rng: ChaCha8Rng::seed_from_u64(h),
                next_seq: 0,
                max_delivered_seq: None,
                busy_until: Duration::ZERO,
            }
        })
    }

    /// Sends `payload` from `from` to `to` at the current virtual time. The
    /// link's impairments and the rules decide whether, when and how often it
    /// arrives.
    ///
    /// ```
    /// use simnet::{LinkConfig, SimNet};
    /// use std::time::Duration;
    /// let ms = Duration::from_millis;
    /// let mut net = SimNet::new(1);
    /// let (a, b) = (net.add_inbox("A", 1024), net.add_inbox("B", 1024));
    /// net.set_default_link(LinkConfig::new().latency(ms(2)));
    /// net.send(a, b, "hi".into());
    /// assert_eq!(net.stats(a).sent, 1); // counted at once
    /// assert_eq!(net.in_flight(), 1); // arrives in virtual time
    /// assert!(net.recv(b).is_none());
    /// net.advance_to(ms(2));
    /// assert_eq!(&net.recv(b).unwrap().payload[..], b"hi");
    /// ```
    pub fn send(&mut self, from: InboxId, to: InboxId, payload: Bytes) {
        let now = self.now;
        let default = self.default_link.clone();
        let link = self.link_mut(from, to);
        let link_seq = link.next_seq;
        link.next_seq += 1;
        let env = Envelope {
            from,
            to,
            sent_at: now,
            link_seq,
            payload,
        };
        let len = env.payload.len() as u64;
        {
            let st = &mut self.inboxes[from.0].stats;
            st.sent += 1;
            st.sent_bytes += len;
        }
        if let Some(m) = self.monitor.as_mut() {
            m.on_send(&env, now);
        }
        if self.partitions.contains(&(from.min(to), from.max(to))) || self.inboxes[to.0].black_hole
        {
            self.inboxes[to.0].stats.dropped_by_partition += 1;
            self.dropped(&env, DropReason::Partition);
            return;
        }
        let mut verdict = Verdict::Pass;
        for rule in self.rules.iter_mut() {
            if rule.remaining == Some(0) {
                continue;
            }
            if (rule.predicate)(&env) {
                rule.hits += 1;
                if let Some(r) = rule.remaining.as_mut() {
                    *r -= 1;
                }
                verdict = rule.verdict;
                break;
            }
        }
        if verdict == Verdict::Drop {
            self.inboxes[to.0].stats.dropped_by_rule += 1;
            self.dropped(&env, DropReason::Rule);
            return;
        }
        let link = self.links.get_mut(&(from, to)).expect("link exists");
        let cfg = link.config.as_ref().unwrap_or(&default);
        // Random draws happen in a fixed order for every message, so a run
        // is a pure function of the seed and the sequence of sends.
        let lost = cfg.loss > 0.0 && link.rng.gen_bool(cfg.loss);
        let dup = cfg.duplicate > 0.0 && link.rng.gen_bool(cfg.duplicate);
        let reorder = cfg.reorder > 0.0 && link.rng.gen_bool(cfg.reorder);
        let corrupt = cfg.corrupt > 0.0 && link.rng.gen_bool(cfg.corrupt);
        let jitter = |rng: &mut ChaCha8Rng, j: Duration| {
            if j.is_zero() {
                Duration::ZERO
            } else {
                Duration::from_nanos(rng.gen_range(0..=j.as_nanos() as u64))
            }
        };
        // Serialisation: the message occupies the link for len/bandwidth.
        let start = link.busy_until.max(now);
        let tx = match cfg.bandwidth {
            Some(bw) => Duration::from_nanos((len.max(1) * 1_000_000_000) / bw),
            None => Duration::ZERO,
        };
        link.busy_until = start + tx;
        let mut at = start + tx + cfg.latency + jitter(&mut link.rng, cfg.jitter);
        if reorder {
            at += cfg.reorder_delay;
        }
        if let Verdict::Delay(d) = verdict {
            at += d;
        }
        let dup_at = if dup || verdict == Verdict::Duplicate {
            Some(at + jitter(&mut link.rng, cfg.jitter.max(Duration::from_micros(1))))
        } else {
            None
        };
        if lost {
            self.inboxes[to.0].stats.lost += 1;
            self.dropped(&env, DropReason::Loss);
            return;
        }
        let corrupted = corrupt || verdict == Verdict::Corrupt;
        let env = if corrupted && !env.payload.is_empty() {
            let mut v = env.payload.to_vec();
            let i = link.rng.gen_range(0..v.len());
            let bit = 1u8 << link.rng.gen_range(0..8);
            v[i] ^= bit;
            Envelope {
                payload: Bytes::from(v),
                ..env
            }
        } else {
            env
        };
        if let Some(dat) = dup_at {
            self.inboxes[to.0].stats.duplicated += 1;
            self.schedule(dat, env.clone(), corrupted);
        }
        self.schedule(at, env, corrupted);
    }

    fn dropped(&mut self, env: &Envelope, why: DropReason) {
        if let Some(m) = self.monitor.as_mut() {
            m.on_drop(env, why, self.now);
        }
    }

    fn schedule(&mut self, at: Duration, env: Envelope, corrupted: bool) {
        let id = self.next_id;
        self.next_id += 1;
        self.heap.push(Reverse(Scheduled {
            at,
            id,
            env,
            corrupted,
        }));
    }

    /// The virtual time of the next arrival, if any message is in flight.
    ///
    /// ```
    /// use simnet::{LinkConfig, SimNet};
    /// use std::time::Duration;
    /// let ms = Duration::from_millis;
    /// let mut net = SimNet::new(1);
    /// let (a, b) = (net.add_inbox("A", 1024), net.add_inbox("B", 1024));
    /// assert_eq!(net.next_arrival(), None); // nothing in flight
    /// net.set_default_link(LinkConfig::new().latency(ms(9)));
    /// net.send(a, b, "x".into());
    /// assert_eq!(net.next_arrival(), Some(ms(9)));
    /// ```
    pub fn next_arrival(&self) -> Option<Duration> {
        self.heap.peek().map(|Reverse(s)| s.at)
    }

    /// Messages in flight (sent, not yet arrived or dropped).
    ///
    /// ```
    /// use simnet::{LinkConfig, SimNet};
    /// use std::time::Duration;
    /// let ms = Duration::from_millis;
    /// let mut net = SimNet::new(1);
    /// let (a, b) = (net.add_inbox("A", 1024), net.add_inbox("B", 1024));
    /// net.set_default_link(LinkConfig::new().latency(ms(1)));
    /// net.send(a, b, "x".into());
    /// net.send(a, b, "y".into());
    /// assert_eq!(net.in_flight(), 2);
    /// net.advance_to(ms(1));
    /// assert_eq!(net.in_flight(), 0);
    /// ```
    pub fn in_flight(&self) -> usize {
        self.heap.len()
    }

    /// Moves virtual time forward to `t` (never backwards), delivering every
    /// message due by then into its inbox. Returns how many were delivered.
    ///
    /// ```
    /// use simnet::{LinkConfig, SimNet};
    /// use std::time::Duration;
    /// let ms = Duration::from_millis;
    /// let mut net = SimNet::new(1);
    /// let (a, b) = (net.add_inbox("A", 1024), net.add_inbox("B", 1024));
    /// net.set_link(a, b, LinkConfig::new().latency(ms(1)));
    /// net.set_link(b, a, LinkConfig::new().latency(ms(10)));
    /// net.send(a, b, "x".into());
    /// net.send(b, a, "y".into());
    /// assert_eq!(net.advance_to(ms(5)), 1); // only a -> b was due
    /// assert_eq!(net.advance_to(ms(10)), 1);
    /// assert_eq!(net.now(), ms(10));
    /// ```
    pub fn advance_to(&mut self, t: Duration) -> usize {
        let mut n = 0;
        while let Some(Reverse(s)) = self.heap.peek() {
            if s.at > t {
                break;
            }
            let Reverse(s) = self.heap.pop().expect("peeked");
            self.now = self.now.max(s.at);
            n += self.deliver(s) as usize;
        }
        self.now = self.now.max(t);
        n
    }

    fn deliver(&mut self, s: Scheduled) -> bool {
        let env = s.env;
        let link = self.links.get_mut(&(env.from, env.to)).expect("link");
        let reordered = matches!(link.max_delivered_seq, Some(m) if env.link_seq < m);
        link.max_delivered_seq = Some(link.max_delivered_seq.unwrap_or(0).max(env.link_seq));
        let inbox = &mut self.inboxes[env.to.0];
        if inbox.queue.len() >= inbox.capacity {
            inbox.stats.overflowed += 1;
            self.dropped(&env, DropReason::Overflow);
            return false;
        }
        inbox.stats.delivered += 1;
        inbox.stats.delivered_bytes += env.payload.len() as u64;
        inbox.stats.reordered += reordered as u64;
        inbox.stats.corrupted += s.corrupted as u64;
        if let Some(m) = self.monitor.as_mut() {
            m.on_deliver(&env, self.now);
        }
        inbox.queue.push_back(env);
        true
    }

    /// Takes the oldest delivered message from `inbox`.
    ///
    /// ```
    /// use simnet::{LinkConfig, SimNet};
    /// use std::time::Duration;
    /// let mut net = SimNet::new(1);
    /// let (a, b) = (net.add_inbox("A", 1024), net.add_inbox("B", 1024));
    /// for m in ["1", "2", "3"] {
    ///     net.send(a, b, m.into());
    /// }
    /// net.advance_to(Duration::ZERO);
    /// let got: Vec<_> = std::iter::from_fn(|| net.recv(b)).map(|e| e.payload).collect();
    /// assert_eq!(got, ["1", "2", "3"]); // oldest first
    /// ```
    pub fn recv(&mut self, inbox: InboxId) -> Option<Envelope> {
        self.inboxes[inbox.0].queue.pop_front()
    }

    /// Delivered messages waiting in `inbox`.
    ///
    /// ```
    /// use simnet::{LinkConfig, SimNet};
    /// use std::time::Duration;
    /// let mut net = SimNet::new(1);
    /// let (a, b) = (net.add_inbox("A", 1024), net.add_inbox("B", 1024));
    /// net.send(a, b, "x".into());
    /// assert_eq!(net.pending(b), 0); // in flight, not delivered
    /// net.advance_to(Duration::ZERO);
    /// assert_eq!(net.pending(b), 1);
    /// ```
    pub fn pending(&self, inbox: InboxId) -> usize {
        self.inboxes[inbox.0].queue.len()
    }

    /// Free places in `inbox` (capacity minus pending).
    ///
    /// ```
    /// use simnet::{LinkConfig, SimNet};
    /// use std::time::Duration;
    /// let mut net = SimNet::new(1);
    /// let (a, b) = (net.add_inbox("A", 8), net.add_inbox("B", 3));
    /// net.send(a, b, "x".into());
    /// net.advance_to(Duration::ZERO);
    /// assert_eq!(net.free_capacity(b), 2);
    /// net.recv(b);
    /// assert_eq!(net.free_capacity(b), 3);
    /// ```
    pub fn free_capacity(&self, inbox: InboxId) -> usize {
        let i = &self.inboxes[inbox.0];
        i.capacity - i.queue.len()
    }

    /// Counters of one inbox.
    ///
    /// ```
    /// use simnet::{LinkConfig, SimNet};
    /// use std::time::Duration;
    /// let mut net = SimNet::new(1);
    /// let (a, b) = (net.add_inbox("A", 1024), net.add_inbox("B", 1024));
    /// net.set_default_link(LinkConfig::new().loss(1.0));
    /// net.send(a, b, "x".into());
    /// assert_eq!(net.stats(b).lost, 1);
    /// assert_eq!(net.stats(b).dropped(), 1);
    /// assert_eq!(net.stats(a).sent, 1);
    /// ```
    pub fn stats(&self, inbox: InboxId) -> InboxStats {
        self.inboxes[inbox.0].stats
    }

    /// A per-inbox summary table, for printing after a run.
    ///
    /// ```
    /// use simnet::{LinkConfig, SimNet};
    /// use std::time::Duration;
    /// let mut net = SimNet::new(1);
    /// let (a, b) = (net.add_inbox("A", 1024), net.add_inbox("B", 1024));
    /// net.send(a, b, "x".into());
    /// net.advance_to(Duration::ZERO);
    /// let table = net.summary().to_string();
    /// let row_b = table.lines().find(|l| l.starts_with('B')).unwrap();
    /// assert_eq!(row_b.split_whitespace().collect::<Vec<_>>(), ["B", "0", "1", "0", "0", "0", "0", "0"]);
    /// ```
    pub fn summary(&self) -> Summary {
        Summary {
            rows: self
                .inboxes
                .iter()
                .map(|i| (i.name.clone(), i.stats))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seed: u64, cfg: LinkConfig, n: usize) -> (Vec<(Duration, u64)>, InboxStats) {
        let mut net = SimNet::new(seed);
        net.set_default_link(cfg);
        let a = net.add_inbox("A", 1 << 20);
        let b = net.add_inbox("B", 1 << 20);
        for i in 0..n {
            net.send(a, b, Bytes::from(vec![i as u8; 10]));
            net.advance_to(net.now() + Duration::from_micros(100));
        }
        while let Some(t) = net.next_arrival() {
            net.advance_to(t);
        }
        let mut got = vec![];
        while let Some(e) = net.recv(b) {
            got.push((e.sent_at, e.link_seq));
        }
        (got, net.stats(b))
    }

    #[test]
    fn same_seed_same_run_different_seed_different_run() {
        let cfg = LinkConfig::new()
            .latency(Duration::from_millis(1))
            .jitter(Duration::from_millis(1))
            .loss(0.2)
            .duplicate(0.1)
            .reorder(0.1);
        let r1 = run(7, cfg.clone(), 500);
        let r2 = run(7, cfg.clone(), 500);
        let r3 = run(8, cfg, 500);
        assert_eq!(r1.0, r2.0);
        assert_eq!(r1.1, r2.1);
        assert_ne!(r1.0, r3.0);
    }

    #[test]
    fn loss_rate_is_close_to_configured() {
        let (_, st) = run(1, LinkConfig::new().loss(0.2), 10_000);
        let rate = st.lost as f64 / 10_000.0;
        assert!((0.18..0.22).contains(&rate), "loss rate {rate}");
    }

    #[test]
    fn latency_and_bandwidth_delay_arrival() {
        let mut net = SimNet::new(0);
        net.set_default_link(
            LinkConfig::new()
                .latency(Duration::from_millis(2))
                .bandwidth(Some(1_000_000)),
        );
        let a = net.add_inbox("A", 10);
        let b = net.add_inbox("B", 10);
        net.send(a, b, Bytes::from(vec![0; 1000])); // 1 ms on the wire
        net.send(a, b, Bytes::from(vec![0; 1000])); // queued behind it
        assert_eq!(net.next_arrival(), Some(Duration::from_millis(3)));
        net.advance_to(Duration::from_millis(3));
        assert_eq!(net.pending(b), 1);
        net.advance_to(Duration::from_millis(4));
        assert_eq!(net.pending(b), 2);
    }

    #[test]
    fn rules_apply_in_order_and_expire() {
        let mut net = SimNet::new(0);
        let a = net.add_inbox("A", 10);
        let b = net.add_inbox("B", 10);
        let r = net.add_rule(Rule::new("drop 1s", Verdict::Drop, |e| e.payload[0] == 1).times(2));
        for x in [1u8, 2, 1, 1, 2] {
            net.send(a, b, Bytes::from(vec![x]));
        }
        net.advance_to(Duration::from_secs(1));
        let got: Vec<u8> = std::iter::from_fn(|| net.recv(b))
            .map(|e| e.payload[0])
            .collect();
        assert_eq!(got, vec![2, 1, 2]);
        assert_eq!(net.rule_hits(r), 2);
        assert_eq!(net.stats(b).dropped_by_rule, 2);
    }

    #[test]
    fn partition_black_hole_and_overflow() {
        let mut net = SimNet::new(0);
        let a = net.add_inbox("A", 2);
        let b = net.add_inbox("B", 2);
        net.partition(a, b);
        net.send(a, b, Bytes::from_static(b"x"));
        net.send(b, a, Bytes::from_static(b"y"));
        net.heal(b, a);
        for _ in 0..3 {
            net.send(a, b, Bytes::from_static(b"z"));
        }
        net.advance_to(Duration::from_secs(1));
        assert_eq!(net.stats(b).dropped_by_partition, 1);
        assert_eq!(net.stats(a).dropped_by_partition, 1);
        assert_eq!(net.stats(b).overflowed, 1);
        assert_eq!(net.pending(b), 2);
        net.set_black_hole(b, true);
        net.send(a, b, Bytes::from_static(b"w"));
        assert_eq!(net.stats(b).dropped_by_partition, 2);
    }

    #[test]
    fn corruption_flips_exactly_one_bit() {
        let mut net = SimNet::new(3);
        let a = net.add_inbox("A", 10);
        let b = net.add_inbox("B", 10);
        net.add_rule(Rule::new("corrupt", Verdict::Corrupt, |_| true).times(1));
        net.send(a, b, Bytes::from(vec![0u8; 64]));
        net.advance_to(Duration::from_secs(1));
        let e = net.recv(b).unwrap();
        let ones: u32 = e.payload.iter().map(|b| b.count_ones()).sum();
        assert_eq!(ones, 1);
        assert_eq!(net.stats(b).corrupted, 1);
    }

    #[test]
    fn reordering_is_counted() {
        let (got, st) = run(
            5,
            LinkConfig::new()
                .latency(Duration::from_millis(1))
                .reorder(0.3)
                .reorder_delay(Duration::from_millis(3)),
            1000,
        );
        assert!(st.reordered > 100, "{st:?}");
        let in_order = got.windows(2).filter(|w| w[0].1 < w[1].1).count();
        assert!(in_order < got.len() - 1);
    }

    #[test]
    fn monitor_sees_sends_deliveries_and_drops() {
        use std::sync::{Arc, Mutex};
        #[derive(Default)]
        struct Count(Arc<Mutex<(u32, u32, u32)>>);
        impl Monitor for Count {
            fn on_send(&mut self, _: &Envelope, _: Duration) {
                self.0.lock().unwrap().0 += 1;
            }
            fn on_deliver(&mut self, _: &Envelope, _: Duration) {
                self.0.lock().unwrap().1 += 1;
            }
            fn on_drop(&mut self, _: &Envelope, _: DropReason, _: Duration) {
                self.0.lock().unwrap().2 += 1;
            }
        }
        let c = Count::default();
        let seen = c.0.clone();
        let mut net = SimNet::new(0);
        let a = net.add_inbox("A", 10);
        let b = net.add_inbox("B", 10);
        net.set_monitor(Box::new(c));
        net.add_rule(Rule::new("d", Verdict::Drop, |_| true).times(1));
        net.send(a, b, Bytes::from_static(b"1"));
        net.send(a, b, Bytes::from_static(b"2"));
        net.advance_to(Duration::from_secs(1));
        assert_eq!(*seen.lock().unwrap(), (2, 1, 1));
    }
}
