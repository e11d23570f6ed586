//! The randomized, oracle-checked harness: sessions over SimNet with
//! parameters drawn from the whole space, each run checked against what the
//! protocol promises.
//!
//! A case is a pure function of its seed: the API (stream, messages, ASAP
//! messages, half-close, both directions at once, simultaneous open), both
//! sides' configuration (payloads from 1 byte to 63 KiB, windows down to
//! one packet, send buffers down to one packet, batching on or off,
//! keepalive budgets), message sizes drawn towards the edges (0, 1, max-1,
//! max, one packet, window), the link (latency, jitter, bandwidth limits,
//! loss, duplication, reordering, corruption) and faults (partitions at
//! fractions of the dead-peer budget, one-way outages, handshake packets
//! dropped k times, and partitions longer than the dead-peer timeout).
//!
//! The oracle checks: exact delivery (stream bytes pattern-checked as they
//! arrive; messages each once, in order, with their boundaries; ASAP items
//! are whole pieces of sent messages), never a window violation or an
//! inbox overflow, bounded virtual time, and that a session ends only with
//! a reason that is true: `Normal` only with everything delivered; "peer
//! unreachable" only after the side really heard nothing for its budget;
//! a Reset only with the peer's matching reason; an outage shorter than the
//! budget on a loss-free link never ends a session.
//!
//! `SWP_HARNESS_CASES=N` runs N cases (default 3000; the release build runs
//! about 1500 a second here), `SWP_HARNESS_FIRST=S` starts at seed S, and
//! `SWP_HARNESS_SEED=S` runs only seed S. A failure prints its seed and the
//! whole case.

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;
use swp::proto::seal::{Keypair, Seal};
use swp::proto::{CloseReason, Config, Connection, Kind, Recv, codec};
use swp::simnet::{LinkConfig, Rule, Verdict};
use swp::testkit::{Pair, Side, pattern_byte};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    /// A writes a stream, closes; B reads to the end, closes.
    Stream,
    /// A sends messages, closes; B receives them, closes.
    Messages,
    /// Messages, and B also takes every packet as soon as it arrives.
    Asap,
    /// A writes and closes; after the end of A's stream, B writes back.
    HalfClose,
    /// Both write streams at once and close when done.
    BothWays,
    /// Both open actively towards each other, then both ways.
    Simultaneous,
}

/// A message size, resolved against the session once it is known.
#[derive(Debug, Clone, Copy)]
enum Size {
    Exact(usize),
    Zero,
    One,
    Max,
    MaxMinus1,
    Packet,
    PacketPlus1,
    Window,
}

#[derive(Debug, Clone)]
struct SideCfg {
    max_payload: usize,
    window: (u64, u64),
    send_buffer: u64,
    batch: bool,
    keepalive: (Duration, u32),
    max_retransmits: u32,
    asap: Option<usize>,
}

#[derive(Debug, Clone)]
enum Fault {
    /// Both directions cut from `at` (after the handshake) for `dur`.
    Partition { at: Duration, dur: Duration },
    /// One direction lost from `at` for `dur`.
    OneWay {
        a_to_b: bool,
        at: Duration,
        dur: Duration,
    },
    /// The first `times` packets of a handshake kind are dropped.
    HandshakeDrop { kind: Kind, times: u64 },
}

#[derive(Debug, Clone)]
struct Case {
    seed: u64,
    api: Api,
    a: SideCfg,
    b: SideCfg,
    latency: Duration,
    jitter: Duration,
    bandwidth: Option<u64>,
    loss: f64,
    duplicate: f64,
    reorder: f64,
    corrupt: f64,
    stream_ab: u64,
    stream_ba: u64,
    messages: Vec<Size>,
    faults: Vec<Fault>,
    /// A partition longer than the dead-peer timeout: both sides must end
    /// "peer unreachable", truthfully.
    fatal: bool,
    /// Sealed (docs/PROTOCOL.md §14): 0 a pre-shared secret, 1 static keys.
    /// Drawn last, so the other fields of a seed are what they were.
    seal: Option<u8>,
}

/// Packets the sender `s` can have in flight to the receiver `r`.
fn flight(s: &SideCfg, r: &SideCfg) -> u64 {
    let mp = s.max_payload as u64;
    r.window
        .0
        .min(r.window.1 / mp)
        .min(s.send_buffer / mp)
        .max(1)
}

fn pick<T: Copy>(rng: &mut ChaCha8Rng, items: &[T]) -> T {
    items[rng.gen_range(0..items.len())]
}

fn side_cfg(rng: &mut ChaCha8Rng, lossy: bool) -> SideCfg {
    let max_payload = pick(rng, &[1, 2, 7, 100, 1000, 1400, 4096, 16384, 64512]);
    let mp = max_payload as u64;
    let window_packets = pick(rng, &[1, 2, 3, 4, 8, 32, 256, 1024]);
    let window_bytes = pick(
        rng,
        &[mp, mp + 1, 2 * mp, 3 * mp + 7, 8 * mp, 64 << 10, 1 << 20],
    )
    .max(mp);
    let send_buffer = pick(rng, &[mp, 2 * mp, window_bytes, 1 << 20]).max(mp);
    let keepalive = if lossy {
        // Lossy links lose keepalives too: a longer budget keeps a true
        // "unreachable" rare, so most lossy cases test delivery.
        (ms(pick(rng, &[200, 1000])), 30)
    } else {
        pick(rng, &[(ms(1000), 10), (ms(100), 5), (ms(250), 8)])
    };
    SideCfg {
        max_payload,
        window: (window_packets, window_bytes),
        send_buffer,
        batch: rng.gen_bool(0.7),
        keepalive,
        max_retransmits: pick(rng, &[3, 12, 40]),
        asap: None,
    }
}

impl Case {
    fn generate(seed: u64) -> Case {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_ca5e);
        let api = pick(
            &mut rng,
            &[
                Api::Stream,
                Api::Messages,
                Api::Messages,
                Api::Asap,
                Api::HalfClose,
                Api::BothWays,
                Api::Simultaneous,
            ],
        );
        let lossy = rng.gen_bool(0.4);
        let mut a = side_cfg(&mut rng, lossy);
        let mut b = side_cfg(&mut rng, lossy);
        if api == Api::Asap {
            b.asap = Some(pick(&mut rng, &[1, 4, 1000]));
        }
        if rng.gen_bool(0.2) {
            // Both sides alike, as a deployment usually is.
            b = SideCfg {
                asap: b.asap,
                ..a.clone()
            };
        }
        let loss = if lossy {
            pick(&mut rng, &[0.01, 0.05, 0.1, 0.2, 0.3])
        } else {
            0.0
        };
        let bandwidth = pick(
            &mut rng,
            &[
                None,
                None,
                Some(20_000),
                Some(300_000),
                Some(5 << 20),
                Some(100 << 20),
            ],
        );
        // Keep every case to a few thousand packets, and a few hundred
        // round trips where the window lets only a packet or two fly.
        let small = a.max_payload.min(b.max_payload);
        let flight = flight(&a, &b).min(flight(&b, &a));
        let rounds = if lossy { 300 } else { 1500 };
        let mut cap = (128u64 << 10)
            .min(3000 * small as u64)
            .min(rounds * flight * small as u64);
        if let Some(bw) = bandwidth {
            cap = cap.min(bw * 20); // at most ~20 s of data
        }
        let stream = |rng: &mut ChaCha8Rng| -> u64 {
            match rng.gen_range(0..6) {
                0 => 0,
                1 => 1,
                2 => cap,
                _ => rng.gen_range(0..=cap),
            }
        };
        let (stream_ab, stream_ba) = match api {
            Api::Stream => (stream(&mut rng), 0),
            Api::HalfClose | Api::BothWays | Api::Simultaneous => {
                (stream(&mut rng), stream(&mut rng))
            }
            Api::Messages | Api::Asap => (0, 0),
        };
        let mut messages = Vec::new();
        if matches!(api, Api::Messages | Api::Asap) {
            let n = rng.gen_range(0..=40);
            for _ in 0..n {
                messages.push(match rng.gen_range(0..10) {
                    0 => Size::Zero,
                    1 => Size::One,
                    2 => Size::Max,
                    3 => Size::MaxMinus1,
                    4 => Size::Packet,
                    5 => Size::PacketPlus1,
                    6 => Size::Window,
                    _ => Size::Exact(rng.gen_range(0..=(4 * small).min(cap as usize).max(1))),
                });
            }
        }
        let budget = |c: &SideCfg| c.keepalive.0 * c.keepalive.1;
        let min_budget = budget(&a).min(budget(&b));
        let mut faults = Vec::new();
        let mut fatal = false;
        if !lossy || rng.gen_bool(0.3) {
            match rng.gen_range(0..10) {
                0..=3 => {
                    // Partitions at fractions of the budget: always survived
                    // on a loss-free link.
                    for _ in 0..rng.gen_range(1..=2) {
                        let frac = pick(&mut rng, &[0.05, 0.2, 0.5, 0.8, 0.9, 0.95]);
                        faults.push(Fault::Partition {
                            at: ms(rng.gen_range(0..2000)),
                            dur: min_budget.mul_f64(frac),
                        });
                    }
                }
                4 => {
                    let frac = pick(&mut rng, &[0.3, 0.7, 0.95]);
                    faults.push(Fault::OneWay {
                        a_to_b: rng.gen_bool(0.5),
                        at: ms(rng.gen_range(0..2000)),
                        dur: min_budget.mul_f64(frac),
                    });
                }
                5 | 6 => {
                    let kind = pick(&mut rng, &[Kind::Syn, Kind::SynAck, Kind::EstabAck]);
                    faults.push(Fault::HandshakeDrop {
                        kind,
                        times: rng.gen_range(1..=4), // connect attempts are 5
                    });
                }
                7 if !lossy => {
                    fatal = true;
                    let timeout = budget(&a).max(budget(&b))
                        + a.keepalive.0.max(b.keepalive.0) * 2
                        + Duration::from_secs(1);
                    faults.push(Fault::Partition {
                        at: ms(rng.gen_range(0..500)),
                        dur: timeout + ms(rng.gen_range(0..3000)),
                    });
                }
                _ => {}
            }
        }
        if lossy {
            // Handshakes over 30% loss need more than 5 tries now and then.
            a.max_retransmits = a.max_retransmits.max(12);
            b.max_retransmits = b.max_retransmits.max(12);
        }
        // One case in four sealed; not a simultaneous open (a sealed
        // handshake has an initiator and a responder).
        let seal = (api != Api::Simultaneous && rng.gen_bool(0.25)).then(|| rng.gen_range(0..2u8));
        Case {
            seal,
            seed,
            api,
            a,
            b,
            latency: Duration::from_micros(pick(&mut rng, &[0, 100, 1000, 5000, 20_000])),
            jitter: Duration::from_micros(pick(&mut rng, &[0, 0, 200, 2000])),
            bandwidth,
            loss,
            duplicate: if lossy {
                pick(&mut rng, &[0.0, 0.02, 0.1])
            } else {
                0.0
            },
            reorder: if lossy {
                pick(&mut rng, &[0.0, 0.05, 0.2])
            } else {
                0.0
            },
            corrupt: if lossy {
                pick(&mut rng, &[0.0, 0.01])
            } else {
                0.0
            },
            stream_ab,
            stream_ba,
            messages,
            faults,
            fatal,
        }
    }

    fn link(&self) -> LinkConfig {
        LinkConfig::new()
            .latency(self.latency)
            .jitter(self.jitter)
            .bandwidth(self.bandwidth)
            .loss(self.loss)
            .duplicate(self.duplicate)
            .reorder(self.reorder)
            .reorder_delay(self.jitter + ms(2))
            .corrupt(self.corrupt)
    }

    fn config(&self, c: &SideCfg, local: &str, remote: &str) -> Config {
        let attempts = if self.loss > 0.0 { 40 } else { 5 };
        let cfg = Config::new(local, remote);
        let (ka, kb) = (
            Keypair::from_secret([0xa; 32]),
            Keypair::from_secret([0xb; 32]),
        );
        let entropy = [(self.seed as u8) ^ local.as_bytes()[0]; 32];
        let cfg = match (self.seal, local) {
            (None, _) => cfg,
            (Some(0), _) => cfg.seal(Seal::psk([7; 32]).deterministic_for_tests(entropy)),
            (Some(_), "A") => cfg.seal(
                Seal::keys(ka)
                    .peer(*kb.public())
                    .deterministic_for_tests(entropy),
            ),
            (Some(_), _) => cfg.seal(
                Seal::keys(kb)
                    .allow([*ka.public()])
                    .deterministic_for_tests(entropy),
            ),
        };
        cfg.max_payload(c.max_payload)
            .window(c.window.0, c.window.1)
            .send_buffer(c.send_buffer)
            .batch_messages(c.batch)
            .keepalive(c.keepalive.0, c.keepalive.1)
            .max_retransmits(c.max_retransmits)
            .connect(Duration::from_secs(2), attempts)
            .asap(c.asap)
    }
}

/// One direction's traffic and what has arrived of it.
#[derive(Default)]
struct Flow {
    stream_total: u64,
    written: u64,
    read: u64,
    messages: Vec<Bytes>,
    sent_messages: usize,
    got: Vec<Bytes>,
    asap: Vec<Bytes>,
    eof: bool,
}

fn stream_byte(dir: u8, i: u64) -> u8 {
    pattern_byte(i) ^ dir.wrapping_mul(0x5b)
}

fn message(dir: u8, k: usize, len: usize) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i as u8) ^ (k as u8).wrapping_mul(31) ^ dir)
            .collect::<Vec<u8>>(),
    )
}

struct Run {
    case: Case,
    pair: Pair,
    ab: Flow,
    ba: Flow,
    closed_at: [Option<Duration>; 2],
    /// What each side had last heard when it closed.
    heard_at_close: [Option<Duration>; 2],
}

fn fail(case: &Case, what: String) -> ! {
    panic!(
        "harness seed {}: {what}\ncase: {case:#?}\nreproduce: SWP_HARNESS_SEED={} cargo test --release --test harness",
        case.seed, case.seed
    )
}

impl Run {
    fn new(case: Case) -> Run {
        let link = case.link();
        let epoch = std::time::Instant::now();
        let seed = case.seed;
        let (a, b) = if case.api == Api::Simultaneous {
            (
                Connection::connect(case.config(&case.a, "A", "B"), epoch, seed ^ 0xa).unwrap(),
                Connection::connect(case.config(&case.b, "B", "A"), epoch, seed ^ 0xb).unwrap(),
            )
        } else {
            (
                Connection::connect(case.config(&case.a, "A", "B"), epoch, seed ^ 0xa).unwrap(),
                Connection::listen(case.config(&case.b, "B", ""), epoch, seed ^ 0xb).unwrap(),
            )
        };
        let mut pair = Pair::from_parts(seed, link, epoch, a, b, swp::testkit::INBOX_CAPACITY);
        for f in &case.faults {
            if let Fault::HandshakeDrop { kind, times } = f {
                let kind = *kind;
                pair.net.add_rule(
                    Rule::new("handshake drop", Verdict::Drop, move |e| {
                        codec::decode(&e.payload).is_ok_and(|p| p.kind == kind)
                    })
                    .times(*times),
                );
            }
        }
        let ab = Flow {
            stream_total: case.stream_ab,
            ..Flow::default()
        };
        let ba = Flow {
            stream_total: case.stream_ba,
            ..Flow::default()
        };
        Run {
            case,
            pair,
            ab,
            ba,
            closed_at: [None, None],
            heard_at_close: [None, None],
        }
    }

    /// Resolves the message sizes once the handshake told A the limit.
    fn resolve_messages(&mut self) {
        let max = self
            .pair
            .a
            .max_message_size()
            .expect("known after the handshake") as usize;
        let mp = self.case.a.max_payload;
        let window = self.case.b.window.1 as usize;
        let sizes: Vec<usize> = self
            .case
            .messages
            .iter()
            .map(|s| match *s {
                Size::Exact(n) => n,
                Size::Zero => 0,
                Size::One => 1,
                Size::Max => max,
                Size::MaxMinus1 => max.saturating_sub(1),
                Size::Packet => mp,
                Size::PacketPlus1 => mp + 1,
                Size::Window => window,
            })
            .map(|n| n.min(max))
            .collect();
        self.ab.messages = sizes
            .iter()
            .enumerate()
            .map(|(k, &n)| message(0, k, n))
            .collect();
        // One byte over the limit is refused at once, never queued.
        let over = Bytes::from(vec![0u8; max + 1]);
        match self.pair.a.send_message(over) {
            Err(swp::proto::WriteError::TooLarge { .. }) => {}
            other => fail(
                &self.case,
                format!("a message of max+1 bytes was not refused: {other:?}"),
            ),
        }
    }

    fn writer(&mut self, side: Side) {
        if self.case.api == Api::HalfClose && side == Side::B && !self.ab.eof {
            return; // B answers once A's stream has ended
        }
        let (conn, flow, dir) = match side {
            Side::A => (&mut self.pair.a, &mut self.ab, 0u8),
            Side::B => (&mut self.pair.b, &mut self.ba, 1u8),
        };
        if conn.is_closed() {
            return;
        }
        let mut chunk = [0u8; 4096];
        while flow.written < flow.stream_total {
            let n = (flow.stream_total - flow.written).min(chunk.len() as u64) as usize;
            for (k, b) in chunk[..n].iter_mut().enumerate() {
                *b = stream_byte(dir, flow.written + k as u64);
            }
            match conn.write(&chunk[..n]) {
                Ok(0) => break,
                Ok(t) => flow.written += t as u64,
                Err(e) => fail(&self.case, format!("{side:?} write failed: {e}")),
            }
        }
        while flow.sent_messages < flow.messages.len() {
            match conn.send_message(flow.messages[flow.sent_messages].clone()) {
                Ok(_) => flow.sent_messages += 1,
                Err(swp::proto::WriteError::Blocked) => break,
                Err(e) => fail(&self.case, format!("{side:?} send_message failed: {e}")),
            }
        }
    }

    fn done_writing(&self, side: Side) -> bool {
        let flow = match side {
            Side::A => &self.ab,
            Side::B => &self.ba,
        };
        flow.written == flow.stream_total && flow.sent_messages == flow.messages.len()
    }

    fn reader(&mut self, side: Side) {
        let (conn, flow, dir) = match side {
            Side::A => (&mut self.pair.a, &mut self.ba, 1u8),
            Side::B => (&mut self.pair.b, &mut self.ab, 0u8),
        };
        while let Some(x) = conn.poll_asap() {
            flow.asap.push(x);
        }
        if !flow.messages.is_empty() || matches!(self.case.api, Api::Messages | Api::Asap) {
            loop {
                match conn.recv_message() {
                    Ok(Recv::Data(m)) => {
                        let k = flow.got.len();
                        if k >= flow.messages.len() || m != flow.messages[k] {
                            fail(
                                &self.case,
                                format!(
                                    "{side:?} received message {k} of {} bytes; sent {:?}",
                                    m.len(),
                                    flow.messages.get(k).map(|m| m.len())
                                ),
                            );
                        }
                        flow.got.push(m);
                    }
                    Ok(Recv::Finished) => {
                        flow.eof = true;
                        break;
                    }
                    Ok(Recv::Blocked) | Err(_) => break,
                }
            }
            return;
        }
        let mut buf = [0u8; 8192];
        loop {
            match conn.read(&mut buf) {
                Ok(Recv::Data(n)) => {
                    for (k, b) in buf[..n].iter().enumerate() {
                        let at = flow.read + k as u64;
                        if *b != stream_byte(dir, at) || at >= flow.stream_total {
                            fail(
                                &self.case,
                                format!("{side:?} read a wrong byte at offset {at}"),
                            );
                        }
                    }
                    flow.read += n as u64;
                }
                Ok(Recv::Finished) => {
                    flow.eof = true;
                    break;
                }
                Ok(Recv::Blocked) | Err(_) => break,
            }
        }
    }

    fn wants_to_close(&self, side: Side) -> bool {
        match (self.case.api, side) {
            // B writes back only after the end of A's stream.
            (Api::HalfClose, Side::B) => self.ab.eof && self.done_writing(Side::B),
            (Api::Stream | Api::Messages | Api::Asap, Side::B) => self.ab.eof,
            _ => self.done_writing(side),
        }
    }

    fn apply_faults(&mut self, t0: Duration) {
        let now = self.pair.elapsed();
        let (ia, ib) = (self.pair.inbox(Side::A), self.pair.inbox(Side::B));
        let mut cut = false;
        let mut a_to_b = false;
        let mut b_to_a = false;
        for f in &self.case.faults {
            match f {
                Fault::Partition { at, dur } => {
                    if now >= t0 + *at && now < t0 + *at + *dur {
                        cut = true;
                    }
                }
                Fault::OneWay {
                    a_to_b: ab,
                    at,
                    dur,
                } => {
                    if now >= t0 + *at && now < t0 + *at + *dur {
                        if *ab {
                            a_to_b = true;
                        } else {
                            b_to_a = true;
                        }
                    }
                }
                Fault::HandshakeDrop { .. } => {}
            }
        }
        if cut {
            self.pair.net.partition(ia, ib);
        } else {
            self.pair.net.heal(ia, ib);
        }
        let base = self.case.link();
        self.pair.net.set_link(
            ia,
            ib,
            if a_to_b {
                base.clone().loss(1.0)
            } else {
                base.clone()
            },
        );
        self.pair
            .net
            .set_link(ib, ia, if b_to_a { base.clone().loss(1.0) } else { base });
    }

    /// The next moment a fault starts or ends, after `now`.
    fn next_fault_edge(&self, t0: Duration, now: Duration) -> Option<Duration> {
        let mut edges = vec![];
        for f in &self.case.faults {
            match f {
                Fault::Partition { at, dur } | Fault::OneWay { at, dur, .. } => {
                    edges.push(t0 + *at);
                    edges.push(t0 + *at + *dur);
                }
                Fault::HandshakeDrop { .. } => {}
            }
        }
        edges.into_iter().filter(|e| *e > now).min()
    }

    fn bound(&self) -> Duration {
        let c = &self.case;
        let bytes = c.stream_ab
            + c.stream_ba
            + self.ab.messages.iter().map(|m| m.len() as u64).sum::<u64>();
        let small = c.a.max_payload.min(c.b.max_payload) as u64;
        let packets = bytes / small + 1 + c.messages.len() as u64;
        let wire = bytes + packets * 250;
        let mut t = Duration::from_secs(60);
        if let Some(bw) = c.bandwidth {
            t += Duration::from_secs_f64(wire as f64 / bw as f64 * 8.0);
        }
        let lossy = 1.0 / (1.0 - c.loss).powi(2);
        let fl = flight(&c.a, &c.b).min(flight(&c.b, &c.a));
        let rounds = packets / fl + 1;
        t += (c.latency * 2 + c.jitter + ms(20)).mul_f64(rounds as f64 * lossy * 3.0);
        for f in &c.faults {
            if let Fault::Partition { dur, .. } | Fault::OneWay { dur, .. } = f {
                t += *dur * 2;
            }
        }
        t.mul_f64(lossy * 2.0)
    }

    fn drive(&mut self) {
        let start = self.pair.now();
        if !self.pair.connect(Duration::from_secs(200)) {
            // Only a lossy link may fail a handshake, and only truthfully.
            if self.case.loss == 0.0
                && self
                    .case
                    .faults
                    .iter()
                    .all(|f| matches!(f, Fault::HandshakeDrop { .. }))
            {
                fail(
                    &self.case,
                    format!(
                        "no handshake: A {:?}, B {:?}",
                        self.pair.a.close_reason(),
                        self.pair.b.close_reason()
                    ),
                );
            }
            return;
        }
        let t0 = self.pair.elapsed();
        if matches!(self.case.api, Api::Messages | Api::Asap) {
            self.resolve_messages();
        }
        let deadline = start + self.bound();
        let mut closing = [false, false];
        loop {
            self.apply_faults(t0);
            for side in [Side::A, Side::B] {
                self.writer(side);
            }
            for side in [Side::A, Side::B] {
                self.reader(side);
            }
            for (i, side) in [Side::A, Side::B].into_iter().enumerate() {
                if !closing[i] && self.wants_to_close(side) {
                    let now = self.pair.now();
                    self.pair.conn(side).close(now);
                    closing[i] = true;
                }
            }
            let now = self.pair.elapsed();
            for (i, side) in [Side::A, Side::B].into_iter().enumerate() {
                if self.closed_at[i].is_none() && self.pair.conn(side).is_closed() {
                    self.closed_at[i] = Some(now);
                    self.heard_at_close[i] = self.pair.last_heard(side);
                }
            }
            if self.pair.a.is_closed() && self.pair.b.is_closed() {
                // Let the last packets land (lingering answers), then stop.
                let mut left = 200;
                while left > 0 && self.pair.step_until(self.pair.now() + ms(10)) {
                    left -= 1;
                }
                self.reader(Side::A);
                self.reader(Side::B);
                break;
            }
            if self.pair.now() >= deadline {
                fail(
                    &self.case,
                    format!(
                        "not finished after {:?} of virtual time (a hang?): A {:?} {:?}, B {:?} {:?}; \
                         A->B {}/{} bytes {}/{} msgs, B->A {}/{} bytes",
                        deadline - start,
                        self.pair.a.state(),
                        self.pair.a.close_reason(),
                        self.pair.b.state(),
                        self.pair.b.close_reason(),
                        self.ab.read,
                        self.ab.stream_total,
                        self.ab.got.len(),
                        self.ab.messages.len(),
                        self.ba.read,
                        self.ba.stream_total
                    ),
                );
            }
            if std::env::var("SWP_HARNESS_TRACE").is_ok() {
                let (a, b) = (self.pair.a.stats(), self.pair.b.stats());
                eprintln!(
                    "{now:?} A {:?} tx {} rx {} | B {:?} tx {} rx {} acked {} | ab {}/{} ba {}/{}",
                    self.pair.a.state(),
                    a.wire.packets_sent,
                    a.wire.packets_received,
                    self.pair.b.state(),
                    b.wire.packets_sent,
                    b.wire.packets_received,
                    b.app.bytes_acked,
                    self.ab.read,
                    self.ab.stream_total,
                    self.ba.read,
                    self.ba.stream_total
                );
            }
            let mut limit = deadline;
            if let Some(e) = self.next_fault_edge(t0, now) {
                limit = limit.min(self.pair.now() - now + e);
            }
            if !self.pair.step_until(limit) {
                let t = limit - self.pair.now();
                self.pair.run_until(t, |_| false);
            }
        }
    }

    fn check(&self) {
        let c = &self.case;
        if std::env::var("SWP_HARNESS_TRACE").is_ok() {
            eprintln!("A {:?}\nB {:?}", self.pair.a.stats(), self.pair.b.stats());
        }
        let w = self.pair.window_report();
        if w.violations > 0 {
            fail(c, format!("window violation: {:?}", w.first));
        }
        for side in [Side::A, Side::B] {
            let st = self.pair.net.stats(self.pair.inbox(side));
            if st.overflowed > 0 {
                fail(
                    c,
                    format!("inbox {side:?} overflowed {} times", st.overflowed),
                );
            }
        }
        if !self.pair.a.is_established() && self.closed_at == [None, None] {
            return; // the handshake failed (checked in drive)
        }
        let complete = |f: &Flow| f.read == f.stream_total && f.got.len() == f.messages.len();
        let everything = complete(&self.ab) && complete(&self.ba);
        // ASAP items are whole pieces of sent messages.
        if let Some(limit) = c.b.asap {
            let mp = c.a.max_payload;
            let mut pieces = std::collections::BTreeSet::new();
            for m in &self.ab.messages {
                if m.is_empty() {
                    pieces.insert(m.clone());
                }
                for p in m.chunks(mp) {
                    pieces.insert(Bytes::copy_from_slice(p));
                }
            }
            for x in &self.ab.asap {
                if !pieces.contains(x) {
                    fail(
                        c,
                        format!(
                            "an ASAP item of {} bytes is no piece of a sent message",
                            x.len()
                        ),
                    );
                }
            }
            let _ = limit;
        }
        let budget_of = |s: &SideCfg| s.keepalive.0 * s.keepalive.1;
        for (i, side) in [Side::A, Side::B].into_iter().enumerate() {
            let conn = match side {
                Side::A => &self.pair.a,
                Side::B => &self.pair.b,
            };
            let peer = match side {
                Side::A => &self.pair.b,
                Side::B => &self.pair.a,
            };
            let budget = budget_of(if side == Side::A { &c.a } else { &c.b });
            let at = self.closed_at[i].unwrap_or(self.pair.elapsed());
            match conn.close_reason() {
                None => fail(c, format!("{side:?} never closed")),
                Some(CloseReason::Normal) => {
                    if !everything {
                        fail(c, format!("{side:?} closed normally with data missing"));
                    }
                }
                Some(CloseReason::PeerUnreachable { silent_for, .. }) => {
                    // True only if it really heard nothing for its budget and
                    // one more keepalive interval (docs/PROTOCOL.md §8): an
                    // outage shorter than the budget on a loss-free link can
                    // never make that silence (a link too slow to carry one
                    // packet within the budget can, truthfully).
                    let interval = if side == Side::A {
                        c.a.keepalive.0
                    } else {
                        c.b.keepalive.0
                    };
                    let heard = self.heard_at_close[i].unwrap_or_default();
                    if at < heard + budget + interval || *silent_for < budget + interval {
                        fail(
                            c,
                            format!(
                                "{side:?} said peer unreachable at {at:?} after {silent_for:?} of silence, \
                             but last heard it at {heard:?} (budget {budget:?}, keepalive {interval:?})"
                            ),
                        );
                    }
                }
                Some(CloseReason::Reset { code, message }) => {
                    let told = peer
                        .close_reason()
                        .and_then(|r| r.reset_reason())
                        .map(|(k, _)| k);
                    if told != Some(*code) {
                        fail(
                            c,
                            format!(
                                "{side:?} got a Reset ({code:?}: {message}) the peer did not send: peer ended {:?}",
                                peer.close_reason()
                            ),
                        );
                    }
                }
                Some(CloseReason::NotHeardBack { .. }) => {
                    // True when what it sent could not be answered within the
                    // budget: outages that add up to more than it, a link so
                    // slow that what may be queued on it takes a good part
                    // of the budget to cross, or loss.
                    let slow = slow_link(c, budget);
                    // (Under loss, answers can truthfully fail to come for
                    // the budget too, as keepalives can.)
                    if c.loss == 0.0 && !c.fatal && !slow && longest_outage(c) < budget {
                        fail(
                            c,
                            format!(
                                "{side:?} said the peer does not hear it: {:?}",
                                conn.close_reason()
                            ),
                        );
                    }
                }
                Some(other) => fail(c, format!("{side:?} ended with {other}")),
            }
        }
        if c.fatal && everything {
            // Finished before the partition began: fine.
        }
    }
}

/// The longest outage the faults make together: partitions (and one-way
/// outages) closer to each other than a round trip leave no time to
/// answer anything in between, so they count as one.
fn longest_outage(c: &Case) -> Duration {
    let rtt = c.latency * 2 + c.jitter + ms(10);
    let mut spans: Vec<(Duration, Duration)> = c
        .faults
        .iter()
        .filter_map(|f| match f {
            Fault::Partition { at, dur } | Fault::OneWay { at, dur, .. } => Some((*at, *at + *dur)),
            Fault::HandshakeDrop { .. } => None,
        })
        .collect();
    spans.sort();
    let mut longest = Duration::ZERO;
    let mut cur: Option<(Duration, Duration)> = None;
    for (s, e) in spans {
        cur = match cur {
            Some((cs, ce)) if s <= ce + rtt => Some((cs, ce.max(e))),
            Some((cs, ce)) => {
                longest = longest.max(ce - cs);
                Some((s, e))
            }
            None => Some((s, e)),
        };
    }
    if let Some((cs, ce)) = cur {
        longest = longest.max(ce - cs);
    }
    longest
}

/// A link so slow that what one side may queue on it takes a good part of
/// `budget` to cross: then answers can truthfully take longer than the
/// budget. swp has no congestion control, so a side may queue its whole
/// window of packets, and an RTO learnt from small packets re-sends a large
/// one (a copy queued behind itself) a few times before its first answer.
fn slow_link(c: &Case, budget: Duration) -> bool {
    let Some(bw) = c.bandwidth else { return false };
    let queue = |s: &SideCfg, r: &SideCfg| {
        let packet = (s.max_payload as f64 + 300.0) / bw as f64;
        (flight(s, r) as f64 * packet).max(8.0 * packet)
    };
    queue(&c.a, &c.b).max(queue(&c.b, &c.a)) >= budget.as_secs_f64() / 4.0
}

fn run_case(seed: u64) -> (Api, bool, bool) {
    let case = Case::generate(seed);
    let api = case.api;
    let sealed = case.seal.is_some();
    let mut run = Run::new(case);
    run.drive();
    run.check();
    let normal = run.pair.a.close_reason() == Some(&CloseReason::Normal)
        && run.pair.b.close_reason() == Some(&CloseReason::Normal);
    (api, normal, sealed)
}

#[test]
fn randomized_cases_keep_every_promise() {
    if let Ok(s) = std::env::var("SWP_HARNESS_SEED") {
        let seed = s.parse().expect("SWP_HARNESS_SEED must be a number");
        println!("{:#?}", Case::generate(seed));
        run_case(seed);
        return;
    }
    let n: u64 = std::env::var("SWP_HARNESS_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000);
    let first: u64 = std::env::var("SWP_HARNESS_FIRST")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let t = std::time::Instant::now();
    let mut by_api = std::collections::BTreeMap::new();
    let mut normal = 0u64;
    let mut sealed = 0u64;
    for seed in first..first + n {
        let (api, ok, s) = run_case(seed);
        sealed += s as u64;
        *by_api.entry(format!("{api:?}")).or_insert(0u64) += 1;
        normal += ok as u64;
        if (seed - first + 1).is_multiple_of(100_000) {
            println!("{} cases, {:?}", seed - first + 1, t.elapsed());
        }
    }
    println!(
        "{n} cases from seed {first} in {:?}: {normal} closed normally on both sides, the rest \
         ended truthfully; {sealed} sealed; by API {by_api:?}",
        t.elapsed()
    );
}
