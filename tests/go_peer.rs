//! A Rust session against a model of a go-sliding-window peer, under loss.
//!
//! No Go toolchain is needed: `GoPeer` re-enacts, packet for packet, what
//! docs/go-sliding-window.md says the Go library does,
//! including its quirks: `AckNum` counts from 0 (not -1) and is 0 on data,
//! Syn and Fin; acks only when its application *consumes*; windows relative
//! to consumption, taken from every packet; retransmits every expired
//! packet at a fixed timeout with no backoff; sends its Fin once; halts on
//! our Fin, sending the FinAck only sometimes; panics (here: fails the test)
//! on a packet its decoder rejects or a `CumulBytesTransmitted` going back.
//!
//! Both directions: a Go client streaming to a native Rust listener (which
//! must switch to Go's format), and a Rust client in Go mode streaming to a
//! Go listener whose application reads slowly. Seeds: `SWP_GO_PEER_SEEDS`
//! (how many), `SWP_GO_PEER_SEED` (one).

use blake2::{Blake2b512, Digest};
use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use swp::proto::go::codec::{GoPacket, GoTime, decode_packet, encode_packet};
use swp::proto::go::link::{self as golink, time_from_unix_ns};
use swp::proto::{Config, Connection, Recv, State, WireFormat};
use swp::testkit::pattern_byte;

const W: i64 = 64; // Go's WindowMsgCount
const WB: i64 = W * 10 * 1024; // Go's WindowByteSz default for -1
const GO_RTO: Duration = Duration::from_millis(200);
const GO_KEEPALIVE: Duration = Duration::from_millis(500);
const WALL0: i128 = 1_700_000_000_000_000_000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum GoState {
    Listen,
    SynSent,
    SynReceived,
    Established,
    Halted,
}

struct Slot {
    pack: GoPacket,
    deadline: Instant,
}

/// The Go library's session, reduced to what it puts on the wire.
struct GoPeer {
    me: String,
    peer: String,
    nonce: String,
    remote_nonce: String,
    state: GoState,
    epoch: Instant,
    // sender
    last_frame_sent: i64,
    total_bytes_sent: i64,
    txq: BTreeMap<i64, Slot>,
    seen_msg_cap: i64,
    seen_bytes_cap: i64,
    to_send: Vec<u8>,
    send_pos: usize,
    fin_when_done: bool,
    fin_sent: bool,
    last_send: Instant,
    next_retry_check: Instant,
    handshake_retry: Option<Instant>,
    /// retry.go: the Syn that a SynAck answers, re-answered every second.
    syn: Option<GoPacket>,
    // receiver
    nfe: i64,
    largest: i64,
    max_cumul: i64,
    rcvd: BTreeMap<i64, GoPacket>,
    ready: Vec<GoPacket>,
    last_consumed: i64, // Go's LastFrameClientConsumed: starts at 0
    msg_consumed: i64,  // Go's LastMsgConsumed: starts at -1
    bytes_consumed: i64,
    delivered: Vec<u8>,
    read_every: Duration,
    next_read: Instant,
    fin_ack_on_halt: bool,
    /// The byte window it advertises (Go: `WindowByteSz`).
    window_bytes: i64,
    /// Its NATS subscription's pending limit, in data bytes not yet
    /// consumed (SetupRecvStream: 600,000 bytes less msgpack headers): data
    /// beyond it is dropped as a slow consumer. `None`: unlimited.
    pending_limit: Option<i64>,
    slow_consumer_drops: u32,
    /// Runs of slow-consumer drops: a drop after the data of the last run
    /// was delivered starts a new one.
    overrun_episodes: u32,
    /// The highest seq dropped in the latest run.
    episode_last: i64,
    /// The largest data payload accepted.
    max_packet: usize,
    /// The most data bytes seen unconsumed here at once.
    max_unconsumed: i64,
    /// Fins that reached this peer (before any filtering).
    fins_seen: u32,
    out: Vec<Vec<u8>>,
}

impl GoPeer {
    fn new(me: &str, peer: &str, now: Instant, seed: u64) -> GoPeer {
        GoPeer {
            me: me.into(),
            peer: peer.into(),
            nonce: format!("go{seed:028}"),
            remote_nonce: String::new(),
            state: GoState::Listen,
            epoch: now,
            last_frame_sent: -1,
            total_bytes_sent: 0,
            txq: BTreeMap::new(),
            seen_msg_cap: W,
            seen_bytes_cap: 1 << 20,
            to_send: Vec::new(),
            send_pos: 0,
            fin_when_done: false,
            fin_sent: false,
            last_send: now,
            next_retry_check: now,
            handshake_retry: None,
            syn: None,
            nfe: 0,
            largest: -1,
            max_cumul: 0,
            rcvd: BTreeMap::new(),
            ready: Vec::new(),
            last_consumed: 0,
            msg_consumed: -1,
            bytes_consumed: 0,
            delivered: Vec::new(),
            read_every: Duration::from_millis(1),
            next_read: now,
            fin_ack_on_halt: seed.is_multiple_of(2),
            window_bytes: WB,
            pending_limit: None,
            slow_consumer_drops: 0,
            overrun_episodes: 0,
            episode_last: -1,
            max_packet: 0,
            max_unconsumed: 0,
            fins_seen: 0,
            out: Vec::new(),
        }
    }

    fn wall(&self, now: Instant) -> GoTime {
        time_from_unix_ns(WALL0 + now.duration_since(self.epoch).as_nanos() as i128)
    }

    fn base(&self, now: Instant, seq: i64, event: i64) -> GoPacket {
        GoPacket {
            from: self.me.clone(),
            dest: self.peer.clone(),
            from_sess_nonce: self.nonce.clone(),
            dest_sess_nonce: self.remote_nonce.clone(),
            seq_num: seq,
            seq_retry: seq,
            tcp_event: event,
            avail_reader_msg_cap: W - (self.largest - self.msg_consumed),
            avail_reader_bytes_cap: self.window_bytes - (self.max_cumul - self.bytes_consumed),
            data_send_tm: self.wall(now),
            ..GoPacket::default()
        }
    }

    fn send(&mut self, p: &GoPacket) {
        self.out.push(encode_packet(p));
    }

    /// Go's `ack(LastFrameClientConsumed, pack, event)`.
    fn ack(&mut self, now: Instant, cause: &GoPacket, event: i64) {
        let mut a = self.base(now, golink::SEQ_ACK, event);
        a.ack_num = self.last_consumed;
        a.ack_retry = cause.seq_retry;
        a.data_send_tm = cause.data_send_tm;
        a.ack_reply_tm = self.wall(now);
        self.send(&a);
    }

    fn connect(&mut self, now: Instant) {
        self.state = GoState::SynSent;
        let mut syn = self.base(now, golink::SEQ_SYN, 3);
        syn.avail_reader_msg_cap = 0; // Go's SYN carries no window
        syn.avail_reader_bytes_cap = 0;
        syn.data_send_tm = GoTime::ZERO;
        self.send(&syn);
        self.handshake_retry = Some(now + Duration::from_secs(1));
    }

    fn on_packet(&mut self, now: Instant, bytes: &[u8]) {
        if self.state == GoState::Halted {
            return;
        }
        let p = decode_packet(bytes).unwrap_or_else(|e| panic!("the Go decoder panics: {e}"));
        self.fins_seen += (p.tcp_event == 8) as u32;
        assert_eq!(encode_packet(&p), bytes, "non-canonical encoding");
        if p.from != self.peer {
            return;
        }
        if !self.remote_nonce.is_empty() && p.from_sess_nonce != self.remote_nonce {
            return;
        }
        if (!p.dest_sess_nonce.is_empty() || self.state == GoState::Established)
            && p.dest_sess_nonce != self.nonce
            && !(self.state == GoState::Listen && p.tcp_event == 3)
        {
            return;
        }
        if p.tcp_event == 11 {
            let unconsumed = p.cumul_bytes_transmitted - self.bytes_consumed;
            if self.pending_limit.is_some_and(|l| unconsumed > l) {
                self.slow_consumer_drops += 1;
                if self.overrun_episodes == 0 || self.nfe > self.episode_last {
                    self.overrun_episodes += 1;
                }
                self.episode_last = self.episode_last.max(p.seq_num);
                return;
            }
            self.max_unconsumed = self.max_unconsumed.max(unconsumed);
            self.max_packet = self.max_packet.max(p.data.len());
            let sum = Blake2b512::digest(&p.data);
            assert!(
                p.data.is_empty() || p.blake2b_checksum[..] == sum[..],
                "bad checksum"
            );
        }
        // Sender side (GotPack): caps and AckNum from *every* packet.
        self.seen_msg_cap = p.avail_reader_msg_cap;
        self.seen_bytes_cap = p.avail_reader_bytes_cap;
        let acked: Vec<i64> = self.txq.range(..=p.ack_num).map(|(s, _)| *s).collect();
        for s in acked {
            self.txq.remove(&s);
        }
        if p.seq_num > self.largest {
            self.largest = p.seq_num;
            if p.tcp_event == 11 {
                assert!(
                    p.cumul_bytes_transmitted >= self.max_cumul,
                    "Go panics: CumulBytesTransmitted went back"
                );
                self.max_cumul = p.cumul_bytes_transmitted;
            }
        }
        if p.tcp_event != 11 {
            self.control(now, &p);
            return;
        }
        // Data is accepted in any state.
        if p.seq_num < self.nfe || p.seq_num > self.nfe + W - 1 {
            self.ack(now, &p, 10); // immediate ack of out-of-window data
            return;
        }
        self.rcvd.insert(p.seq_num, p);
        while let Some(q) = self.rcvd.remove(&self.nfe) {
            self.ready.push(q);
            self.nfe += 1;
        }
    }

    fn control(&mut self, now: Instant, p: &GoPacket) {
        match (self.state, p.tcp_event) {
            (GoState::Listen, 3) => {
                self.remote_nonce = p.from_sess_nonce.clone();
                self.state = GoState::SynReceived;
                self.ack(now, p, 4);
                self.syn = Some(p.clone());
                self.handshake_retry = Some(now + Duration::from_secs(1));
            }
            (GoState::SynReceived, 5) => {
                self.state = GoState::Established;
                self.handshake_retry = None;
            }
            (GoState::SynSent, 4) => {
                self.remote_nonce = p.from_sess_nonce.clone();
                self.state = GoState::Established;
                self.handshake_retry = None;
                self.ack(now, p, 5);
            }
            (GoState::Established, 12) => self.ack(now, p, 10),
            (_, 8) => {
                // DoAppClose: the FinAck may or may not get out; then halt.
                if self.fin_ack_on_halt {
                    self.ack(now, p, 9);
                }
                self.state = GoState::Halted;
            }
            _ => {}
        }
    }

    fn tick(&mut self, now: Instant) {
        if self.state == GoState::Halted {
            return;
        }
        if let Some(t) = self.handshake_retry.filter(|t| *t <= now) {
            self.handshake_retry = Some(t + Duration::from_secs(1));
            if self.state == GoState::SynSent {
                let mut syn = self.base(now, golink::SEQ_SYN, 3);
                syn.data_send_tm = GoTime::ZERO;
                self.send(&syn);
            }
            if self.state == GoState::SynReceived {
                let syn = self.syn.clone().expect("SynReceived after a Syn");
                self.ack(now, &syn, 4);
            }
        }
        // The application reads a batch now and then; one ack per batch.
        if now >= self.next_read && !self.ready.is_empty() {
            self.next_read = now + self.read_every;
            let batch = std::mem::take(&mut self.ready);
            for q in &batch {
                self.delivered.extend_from_slice(&q.data);
            }
            let last = batch.last().unwrap().clone();
            self.last_consumed = last.seq_num;
            self.msg_consumed = last.seq_num;
            self.bytes_consumed = last.cumul_bytes_transmitted;
            self.ack(now, &last, 10);
        }
        if self.state != GoState::Established {
            return;
        }
        // New data while the window (as last seen) has room.
        while self.send_pos < self.to_send.len() {
            let inflight = self.txq.len() as i64;
            let bytes: i64 = self.txq.values().map(|s| s.pack.data.len() as i64).sum();
            if self.seen_msg_cap - inflight <= 0 || self.seen_bytes_cap - bytes <= 0 {
                break;
            }
            let n = (self.to_send.len() - self.send_pos).min(8 * 1024);
            let data = Bytes::copy_from_slice(&self.to_send[self.send_pos..self.send_pos + n]);
            self.send_pos += n;
            self.last_frame_sent += 1;
            self.total_bytes_sent += n as i64;
            let mut d = self.base(now, self.last_frame_sent, 11);
            d.seq_retry = 0;
            d.ack_num = 0; // Go leaves AckNum 0 on data
            d.cumul_bytes_transmitted = self.total_bytes_sent;
            d.blake2b_checksum = Bytes::copy_from_slice(&Blake2b512::digest(&data));
            d.data = data;
            self.send(&d);
            self.last_send = now;
            self.txq.insert(
                d.seq_num,
                Slot {
                    pack: d,
                    deadline: now + GO_RTO,
                },
            );
        }
        if now >= self.next_retry_check {
            self.next_retry_check = now + GO_RTO / 2;
            let due: Vec<i64> = self
                .txq
                .iter()
                .filter(|(_, s)| s.deadline <= now)
                .map(|(k, _)| *k)
                .collect();
            for k in due {
                let mut p = self.txq[&k].pack.clone();
                p.seq_retry += 1;
                p.data_send_tm = self.wall(now);
                p.avail_reader_msg_cap = self.base(now, 0, 0).avail_reader_msg_cap;
                self.send(&p);
                self.txq.insert(
                    k,
                    Slot {
                        pack: p,
                        deadline: now + GO_RTO,
                    },
                );
            }
        }
        if self.fin_when_done
            && !self.fin_sent
            && self.send_pos == self.to_send.len()
            && self.txq.is_empty()
        {
            self.fin_sent = true;
            let mut f = self.base(now, golink::SEQ_FIN, 8);
            f.ack_retry = golink::SEQ_FIN; // AckNum stays 0
            self.send(&f);
            self.last_send = now;
        }
        if now.duration_since(self.last_send) >= GO_KEEPALIVE {
            let mut k = self.base(now, golink::SEQ_KEEPALIVE, 12);
            k.ack_num = self.last_consumed;
            k.ack_retry = golink::SEQ_KEEPALIVE;
            self.send(&k);
            self.last_send = now;
        }
    }
}

/// A lossy wire with 1 ms latency between the two.
struct Wire {
    rng: ChaCha8Rng,
    loss: f64,
    q: BTreeMap<(Instant, u64), (bool, Vec<u8>)>, // (to_rust, bytes)
    n: u64,
}

impl Wire {
    fn push(&mut self, now: Instant, to_rust: bool, b: Vec<u8>) {
        // A Go FIN is sent once and never again: when it is lost, no peer
        // (Go or Rust) can learn that the stream ended. Spare it.
        let go_fin = to_rust && decode_packet(&b).is_ok_and(|p| p.tcp_event == 8);
        if self.rng.gen_bool(self.loss) && !go_fin {
            return;
        }
        let at = now + Duration::from_micros(self.rng.gen_range(800..1500));
        self.n += 1;
        self.q.insert((at, self.n), (to_rust, b));
    }
}

struct Run {
    go: GoPeer,
    rust: Connection,
    wire: Wire,
    now: Instant,
    got: Vec<u8>,
}

impl Run {
    fn new(seed: u64, loss: f64, go: GoPeer, rust: Connection, now: Instant) -> Run {
        Run {
            go,
            rust,
            wire: Wire {
                rng: ChaCha8Rng::seed_from_u64(seed),
                loss,
                q: BTreeMap::new(),
                n: 0,
            },
            now,
            got: Vec::new(),
        }
    }

    fn pump(&mut self) {
        let now = self.now;
        self.go.tick(now);
        for b in std::mem::take(&mut self.go.out) {
            self.wire.push(now, true, b);
        }
        let mut buf = [0u8; 65536];
        while let Ok(Recv::Data(n)) = self.rust.read(&mut buf) {
            self.got.extend_from_slice(&buf[..n]);
        }
        while let Some(t) = self.rust.poll_transmit(now) {
            self.wire.push(now, false, t.payload.to_vec());
        }
        while self.rust.poll_event().is_some() {}
    }

    /// Advances to the next event (1 ms steps at most, for the Go timers).
    fn step(&mut self) {
        let mut next = self.now + Duration::from_millis(1);
        if let Some(t) = self.rust.poll_timeout() {
            next = next.min(t.max(self.now));
        }
        if let Some((&(t, _), _)) = self.wire.q.iter().next() {
            next = next.min(t);
        }
        self.now = next;
        while let Some(e) = self.wire.q.first_entry() {
            if e.key().0 > self.now {
                break;
            }
            let (to_rust, b) = e.remove();
            if to_rust {
                self.rust.handle_packet(self.now, Bytes::from(b));
            } else {
                self.go.on_packet(self.now, &b);
            }
        }
        if self.rust.poll_timeout().is_some_and(|t| t <= self.now) {
            self.rust.handle_timeout(self.now);
        }
        self.pump();
    }
}

/// The seeds to run: `SWP_GO_PEER_SEED=n` runs seed n alone (what a
/// failure prints), else `0..SWP_GO_PEER_SEEDS` (10 by default).
fn seeds() -> std::ops::Range<u64> {
    let var = |name: &str| std::env::var(name).ok().and_then(|s| s.parse().ok());
    match var("SWP_GO_PEER_SEED") {
        Some(one) => one..one + 1,
        None => 0..var("SWP_GO_PEER_SEEDS").unwrap_or(10),
    }
}

fn data(len: usize) -> Vec<u8> {
    (0..len as u64).map(pattern_byte).collect()
}

#[test]
fn go_client_streams_to_a_native_rust_listener() {
    // Our Fin goes out four times at most to a Go peer, which halts at it
    // and may never answer (§13.3); all four are lost with probability
    // 0.15^4 = 5e-4 at 15% loss (seen once in 1000 such seeds: seed 2264).
    // Then the Go peer never halted although nothing is wrong on our side.
    // Allowed only on a lossy link, only when no Fin reached it, and in at
    // most 0.2% of the lossy seeds run (expected: 0.025%; none in a short
    // run).
    let (mut lossy, mut unheard) = (0u64, vec![]);
    for seed in seeds() {
        let loss = [0.0, 0.05, 0.15][seed as usize % 3];
        let now = Instant::now();
        let mut go = GoPeer::new("GO", "RS", now, seed);
        go.to_send = data(600_000);
        go.fin_when_done = true;
        let mut rust = Connection::listen(Config::new("RS", ""), now, seed).unwrap();
        rust.set_wall_clock(now, WALL0);
        go.connect(now);
        let mut r = Run::new(seed, loss, go, rust, now);
        r.pump();
        let end = now + Duration::from_secs(120);
        while r.now < end && !(r.rust.state() == State::CloseWait && r.got.len() == 600_000) {
            r.step();
        }
        let why = format!(
            "seed {seed} loss {loss} (rerun: SWP_GO_PEER_SEED={seed} cargo test --test go_peer)"
        );
        assert_eq!(r.rust.wire_format(), WireFormat::Go, "{why}");
        assert_eq!(r.got.len(), 600_000, "{why}: state {:?}", r.rust.state());
        assert!(r.got == data(600_000), "{why}: corrupt");
        // The Go FIN (sent once, AckNum 0) ended the stream; our close ends
        // the session normally although the Go peer halts without a Fin.
        let mut b = [0u8; 4];
        assert_eq!(r.rust.read(&mut b), Ok(Recv::Finished), "{why}");
        r.rust.close(r.now);
        let end = r.now + Duration::from_secs(60);
        while r.now < end && !r.rust.is_closed() {
            r.step();
        }
        assert!(
            r.rust.close_reason().is_some_and(|c| c.is_normal()),
            "{why}: {:?}",
            r.rust.close_reason()
        );
        lossy += (loss > 0.0) as u64;
        if r.go.state != GoState::Halted && loss > 0.0 && r.go.fins_seen == 0 {
            unheard.push(seed);
            continue;
        }
        assert_eq!(r.go.state, GoState::Halted, "{why}");
    }
    assert!(
        unheard.len() as u64 <= lossy / 500,
        "seeds {unheard:?}: none of our Fins reached the Go peer, in more than 0.2% of {lossy} lossy seeds"
    );
}

#[test]
fn rust_client_in_go_mode_streams_to_a_slow_go_listener() {
    for seed in seeds() {
        let loss = [0.0, 0.05, 0.15][seed as usize % 3];
        let mut go = GoPeer::new("GO", "RS", Instant::now(), seed);
        go.read_every = Duration::from_millis(3); // a slow Go application
        let cfg = Config::new("RS", "GO").wire_format(WireFormat::Go);
        let want = data(2_000_000);
        let r = stream_to_go(seed, loss, go, cfg, want.len(), 300);
        let why = format!(
            "seed {seed} loss {loss} (rerun: SWP_GO_PEER_SEED={seed} cargo test --test go_peer)"
        );
        assert!(
            r.go.delivered == want,
            "{why}: Go read {} of {} bytes; Rust {:?} {:?}, Go {:?}",
            r.go.delivered.len(),
            want.len(),
            r.rust.state(),
            r.rust.close_reason(),
            r.go.state
        );
        assert!(
            r.rust.close_reason().is_some_and(|c| c.is_normal()),
            "{why}: {:?} in {:?}",
            r.rust.close_reason(),
            r.rust.state()
        );
        // Our Fin is retried a few times; if every copy is lost the Go
        // peer stays up until its own keepalive budget runs out.
        assert!(
            r.go.state == GoState::Halted || r.go.fins_seen == 0,
            "{why}: the Go peer got our Fin but is {:?}",
            r.go.state
        );
        let s = r.rust.stats();
        assert_eq!(s.dropped.invalid, 0, "{why}");
    }
}

/// Streams `len` bytes from a Rust client in Go mode to `go` (from the
/// peer's own start), for at most `secs` of simulated time; returns the run
/// when Rust closed or time ran out.
fn stream_to_go(seed: u64, loss: f64, go: GoPeer, cfg: Config, len: usize, secs: u64) -> Run {
    let now = go.epoch;
    let mut rust = Connection::connect(cfg, now, seed).unwrap();
    rust.set_wall_clock(now, WALL0);
    let mut r = Run::new(seed, loss, go, rust, now);
    let want = data(len);
    let (mut written, mut closed) = (0, false);
    let end = now + Duration::from_secs(secs);
    while r.now < end && !r.rust.is_closed() {
        while written < want.len() {
            match r.rust.write(&want[written..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => written += n,
            }
        }
        if written == want.len() && !closed {
            r.rust.close(r.now);
            closed = true;
        }
        r.pump();
        r.step();
    }
    r
}

/// The Go peer read exactly the `len` bytes streamed, and the Rust side
/// closed normally.
fn assert_delivered_and_closed(r: &Run, len: usize, why: &str) {
    assert!(
        r.go.delivered == data(len),
        "{why}: Go read {} of {len}",
        r.go.delivered.len()
    );
    assert!(
        r.rust.close_reason().is_some_and(|c| c.is_normal()),
        "{why}: {:?}",
        r.rust.close_reason()
    );
}

/// A Go receiver as go-sliding-window's SetupRecvStream makes it: it
/// advertises its ~10 MB session window but caps its subscription at
/// 600,000 pending bytes (less msgpack headers here), and drops the rest
/// as a slow consumer.
fn helper_receiver(seed: u64) -> GoPeer {
    let mut go = GoPeer::new("GO", "RS", Instant::now(), seed);
    go.window_bytes = 10_240_000;
    go.pending_limit = Some(590_000);
    go
}

/// A Go receiver made with NewSession alone: its subscription holds the
/// ~10 MB window it advertises.
fn session_receiver(seed: u64) -> GoPeer {
    let mut go = GoPeer::new("GO", "RS", Instant::now(), seed);
    go.window_bytes = 10_240_000;
    go.read_every = Duration::from_millis(5);
    go
}

fn go_cfg() -> Config {
    Config::new("RS", "GO").wire_format(WireFormat::Go)
}

/// A Rust sender that believed SetupRecvStream's advertisement overran it:
/// every flight lost its tail to slow-consumer drops and waited for a
/// retransmission timeout (found live against a real Go receiver:
/// 0.8 MiB/s, or no progress at all). With `Tuning::go_peer_buffer` fixed
/// at 512 KiB, Rust never leaves more unread there. The same peer with a
/// larger setting does overrun, so this can fail; a Go receiver whose
/// subscription holds its window takes more in flight when told.
#[test]
fn with_a_fixed_go_peer_buffer_a_small_subscription_is_never_overrun() {
    let len = 3_000_000;
    for seed in seeds() {
        let loss = [0.0, 0.02, 0.1][seed as usize % 3];
        let why = format!(
            "seed {seed} loss {loss} (rerun: SWP_GO_PEER_SEED={seed} cargo test --test go_peer)"
        );
        let cfg = || go_cfg().go_peer_buffer(512 * 1024);
        for packet in [63 * 1024, 512 * 1024, 1000 * 1024] {
            let r = stream_to_go(
                seed,
                loss,
                helper_receiver(seed),
                cfg().max_payload(packet),
                len,
                300,
            );
            assert_eq!(r.go.slow_consumer_drops, 0, "{why}, packets of {packet}");
            assert_delivered_and_closed(&r, len, &format!("{why}, packets of {packet}"));
            assert!(
                r.go.max_unconsumed <= 512 * 1024,
                "{why}: {} unconsumed",
                r.go.max_unconsumed
            );
            let w = r.rust.stats().window;
            assert_eq!(
                (w.go_peer_buffer, w.go_peer_buffer_fallbacks),
                (512 * 1024, 0),
                "{why}"
            );
        }
        // Told the peer holds more than it does, Rust overruns it (on a
        // loss-free link: at 10% loss the window may never grow past the
        // subscription, seen at seed 539, and the check is there to show
        // the model can drop, not to measure loss).
        let r = stream_to_go(
            seed,
            0.0,
            helper_receiver(seed),
            go_cfg().go_peer_buffer(4 << 20),
            len,
            5,
        );
        assert!(
            r.go.slow_consumer_drops > 0,
            "seed {seed}, loss-free: a 4 MiB setting never overran a 590,000-byte subscription"
        );
        // A peer whose subscription holds its window gets what it is told.
        let r = stream_to_go(
            seed,
            loss,
            session_receiver(seed),
            go_cfg().go_peer_buffer(2 << 20),
            len,
            300,
        );
        assert!(
            r.go.delivered == data(len),
            "{why}: Go read {} of {len}",
            r.go.delivered.len()
        );
        assert!(
            r.go.max_unconsumed > 512 * 1024 && r.go.max_unconsumed <= 2 << 20,
            "{why}: {} unconsumed with a 2 MiB setting",
            r.go.max_unconsumed
        );
    }
}

/// The smallest fixed sizes (1 byte, 2 bytes, one byte short of a 63 KiB
/// packet) still deliver everything and close normally: packets shrink to
/// the size, and never more than that is left unread at the Go peer, with
/// or without loss. `Tuning::go_peer_buffer(0)` means 1.
#[test]
fn the_smallest_fixed_go_peer_buffers_still_deliver_everything() {
    for seed in seeds() {
        let loss = [0.0, 0.05][seed as usize % 2];
        for (fixed, len) in [(0, 700), (1, 700), (2, 1_501), (63 * 1024 - 1, 300_000)] {
            let why = format!(
                "seed {seed} loss {loss} fixed {fixed} (rerun: SWP_GO_PEER_SEED={seed} cargo test --test go_peer)"
            );
            let r = stream_to_go(
                seed,
                loss,
                helper_receiver(seed),
                go_cfg().go_peer_buffer(fixed),
                len,
                600,
            );
            assert_delivered_and_closed(&r, len, &why);
            let most = fixed.max(1) as usize;
            assert!(
                r.go.max_packet <= most,
                "{why}: a packet of {}",
                r.go.max_packet
            );
            assert!(
                r.go.max_unconsumed <= most as i64,
                "{why}: {} unconsumed",
                r.go.max_unconsumed
            );
            assert_eq!(r.rust.stats().window.go_peer_buffer, most as u64, "{why}");
        }
    }
}

/// By default the sender learns what a Go receiver holds (§13.2): it starts
/// at 512 KiB and doubles after each full buffer acknowledged without a
/// timeout. Against SetupRecvStream's small subscription the first
/// doubling that it cannot hold overruns it in one run of drops, and the
/// sender goes back to a size that passed for the rest of the session;
/// packets never exceed 512 KiB (a packet larger than the subscription
/// holds would be dropped on every retry). Against a receiver that holds
/// its window, it grows well beyond 512 KiB.
#[test]
fn a_learning_sender_overruns_a_small_subscription_once_and_fills_a_large_one() {
    for seed in seeds() {
        let loss = [0.0, 0.02, 0.1][seed as usize % 3];
        let why = format!(
            "seed {seed} loss {loss} (rerun: SWP_GO_PEER_SEED={seed} cargo test --test go_peer)"
        );
        let len = 3_000_000;
        // 0: no packet size chosen, packets follow the buffer (an eighth).
        for packet in [0, 63 * 1024, 512 * 1024, 1000 * 1024] {
            let cfg = match packet {
                0 => go_cfg(),
                n => go_cfg().max_payload(n),
            };
            let r = stream_to_go(seed, loss, helper_receiver(seed), cfg, len, 300);
            let why = format!("{why}, packets of {packet}");
            assert_delivered_and_closed(&r, len, &why);
            assert!(
                r.go.overrun_episodes <= 1,
                "{why}: overrun {} times, {:?} {:?} drops {}",
                r.go.overrun_episodes,
                r.rust.stats().window,
                r.rust.stats().loss,
                r.go.slow_consumer_drops
            );
            assert!(
                r.go.max_packet <= 512 * 1024,
                "{why}: a packet of {}",
                r.go.max_packet
            );
            let w = r.rust.stats().window;
            // Network losses may also take the size back (halving, never
            // below 512 KiB): a few times at most in 3 MB.
            assert!(
                w.go_peer_buffer_fallbacks <= 3,
                "{why}: {} fallbacks",
                w.go_peer_buffer_fallbacks
            );
            assert!(
                w.go_peer_buffer >= 512 * 1024,
                "{why}: {}",
                w.go_peer_buffer
            );
            if loss == 0.0 && packet == 63 * 1024 {
                // It did try more and learned from the loss (a second
                // timeout in the same run of drops may halve it once more),
                // and a few timeouts repaired the whole run, not one per
                // hole (9 for 11 drops at seed 0 before): Go's echo of the
                // retransmission it consumed tells RACK the rest of the run
                // is lost. 1500 seeds (500 lossless): at most 5, when a
                // size that passed once overran later and was halved.
                assert!(
                    w.go_peer_buffer > 512 * 1024 || w.go_peer_buffer_fallbacks >= 1,
                    "{why}: never tried more than 512 KiB"
                );
                if r.go.overrun_episodes == 1 {
                    assert!(
                        (1..=2).contains(&w.go_peer_buffer_fallbacks),
                        "{why}: {} fallbacks for {} drops",
                        w.go_peer_buffer_fallbacks,
                        r.go.slow_consumer_drops
                    );
                }
                let timeouts = r.rust.stats().loss.retransmits_timeout;
                assert!(
                    timeouts <= 5,
                    "{why}: {timeouts} timeouts for {} drops ({} overruns; {:?} {:?})",
                    r.go.slow_consumer_drops,
                    r.go.overrun_episodes,
                    w,
                    r.rust.stats().loss
                );
            }
        }
        let len = 12_000_000;
        let r = stream_to_go(seed, loss, session_receiver(seed), go_cfg(), len, 300);
        assert_delivered_and_closed(&r, len, &why);
        let w = r.rust.stats().window;
        // Packets grow with the buffer (fewer packets: what a Go receiver
        // spends its time on), never beyond the 512 KiB floor.
        assert!(
            r.go.max_packet <= 512 * 1024,
            "{why}: a packet of {}",
            r.go.max_packet
        );
        if loss == 0.0 {
            assert!(
                r.go.max_packet > 128 * 1024,
                "{why}: packets of {} at most with a buffer of {}",
                r.go.max_packet,
                w.go_peer_buffer
            );
            assert!(
                r.go.max_unconsumed > 2 << 20 && w.go_peer_buffer > 2 << 20,
                "{why}: {} unconsumed at most, buffer {}",
                r.go.max_unconsumed,
                w.go_peer_buffer
            );
            assert_eq!(w.go_peer_buffer_fallbacks, 0, "{why}");
        }
    }
}

#[test]
fn go_default_ack_zero_never_acknowledges_a_lost_seq_0() {
    // Go bug 3: a Go peer's SynAck/keepalive says AckNum 0 before it has
    // consumed anything. If our seq 0 is lost, that must not count as an ack.
    let now = Instant::now();
    let mut go = GoPeer::new("GO", "RS", now, 1);
    go.read_every = Duration::from_millis(1);
    // A long initial RTO, so the Go keepalive saying AckNum 0 (at 500 ms)
    // arrives before our retransmission of seq 0.
    let cfg = Config::new("RS", "GO").wire_format(WireFormat::Go).rto(
        Duration::from_secs(2),
        Duration::from_millis(10),
        Duration::from_secs(10),
    );
    let mut rust = Connection::connect(cfg, now, 1).unwrap();
    rust.set_wall_clock(now, WALL0);
    let mut r = Run::new(1, 0.0, go, rust, now);
    let end = now + Duration::from_secs(5);
    while r.now < end && !r.rust.is_established() {
        r.step();
    }
    r.rust.write(b"first").unwrap();
    r.rust.write(b"second").unwrap();
    // Lose the first data packet (seq 0) on the wire.
    r.rust.poll_transmit(r.now).expect("seq 0 goes out");
    r.pump();
    let until = r.now + Duration::from_secs(10);
    while r.now < until && r.go.delivered.len() < 11 {
        r.step();
    }
    assert_eq!(&r.go.delivered[..], b"firstsecond");
    assert!(r.rust.stats().loss.retransmits_timeout + r.rust.stats().loss.retransmits_probe >= 1);
}
