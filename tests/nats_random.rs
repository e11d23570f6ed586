//! Randomized, oracle-checked sessions over real nats-servers: the whole
//! parameter space through the real driver, the real NATS client and a
//! real server, not only the cases imagined.
//!
//! A case is drawn from its seed: the API (a stream one way, messages one
//! way with `send` and `send_and_wait` mixed, streams both ways at once
//! through halves, pipelined requests echoed back, a half-close answered
//! after the end of the stream), both sides' configuration (packet sizes
//! from 1 byte to 63 KiB drawn towards the edges, windows down to one
//! packet, send buffers down to one packet, batching on or off), the NATS
//! side (a default server or one with `max_payload: 8192`, each end's
//! subscription capacity down to a few packets, both ends on one
//! connection or one each, a client inbox longer than the 64 bytes a
//! listener counts before it knows), message sizes drawn towards the edges
//! (0, 1, packet-1, packet, packet+1, the largest message, one less),
//! reads of random sizes with pauses (a slow reader), and in some cases a
//! hostile third party ([`common::Flood`]) injecting forgeries into both
//! inboxes.
//!
//! The oracle: every stream byte in order (pattern-checked), every message
//! once, in order, with its boundaries and content; both sides end
//! `Normal`; nothing the flood sent is believed (the data is exact) and,
//! without a flood, no subscription overflowed (the window is tied to the
//! subscription's buffer) and nothing was dropped as invalid; each case
//! within a bound of real time.
//!
//! `SWP_NATS_CASES=N` runs N cases (default 40, about 12 s here),
//! `SWP_NATS_FIRST=S` starts at seed S, `SWP_NATS_CASE=S` runs only seed
//! S. A failure prints its seed and the whole case.

mod common;

use bytes::Bytes;
use common::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;
use std::time::Duration;
use swp::proto::{CloseReason, Config};
use swp::server::NatsServer;
use swp::testkit::pattern_byte;
use swp::transport::{NatsOptions, NatsTransport, Transport};
use swp::{ReadHalf, Session, WriteHalf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    Stream,
    Messages,
    BothWays,
    Echo,
    HalfClose,
}

#[derive(Debug, Clone)]
struct SideCfg {
    max_payload: usize,
    window: (u64, u64),
    send_buffer: u64,
    batch: bool,
    subscription_capacity: Option<usize>,
    linger: Duration,
}

#[derive(Debug, Clone)]
struct Case {
    seed: u64,
    api: Api,
    small_server: bool,
    one_connection: bool,
    long_client_inbox: bool,
    flood: bool,
    a: SideCfg,
    b: SideCfg,
    /// Stream bytes each way (stream APIs).
    stream_bytes: u64,
    /// Message count (message APIs).
    messages: usize,
    /// Reads: the most one read asks for, and how often (1 in N) a reader
    /// pauses, for how long at most.
    read_max: usize,
    pause_one_in: u32,
    pause_max: Duration,
}

fn pick<T: Copy>(rng: &mut ChaCha8Rng, xs: &[T]) -> T {
    xs[rng.gen_range(0..xs.len())]
}

fn side(rng: &mut ChaCha8Rng) -> SideCfg {
    let max_payload = if rng.gen_bool(0.6) {
        pick(
            rng,
            &[
                1,
                2,
                63,
                64,
                1023,
                1024,
                4096,
                16 << 10,
                63 << 10,
                (63 << 10) - 1,
            ],
        )
    } else {
        rng.gen_range(1..=63 << 10)
    };
    let packets = if rng.gen_bool(0.5) {
        pick(rng, &[1u64, 2, 3, 16, 64, 256, 1024, 4096])
    } else {
        rng.gen_range(1..=2048)
    };
    let bytes = match rng.gen_range(0..4) {
        0 => max_payload as u64,
        1 => packets * max_payload as u64,
        2 => rng.gen_range(max_payload as u64..=(16 << 20).max(max_payload as u64)),
        _ => 16 << 20,
    };
    let send_buffer = match rng.gen_range(0..3) {
        0 => max_payload as u64,
        1 => rng.gen_range(max_payload as u64..=(8 << 20).max(max_payload as u64)),
        _ => 8 << 20,
    };
    SideCfg {
        max_payload,
        window: (packets, bytes),
        send_buffer,
        batch: rng.gen_bool(0.7),
        subscription_capacity: rng
            .gen_bool(0.3)
            .then(|| pick(rng, &[4usize, 16, 65, 66, 67, 100, 128, 256, 1024])),
        linger: Duration::from_millis(pick(rng, &[1, 20, 100, 300])),
    }
}

fn case(seed: u64) -> Case {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let api = pick(
        &mut rng,
        &[
            Api::Stream,
            Api::Messages,
            Api::BothWays,
            Api::Echo,
            Api::HalfClose,
        ],
    );
    let (a, b) = (side(&mut rng), side(&mut rng));
    // Bounded work: at most a few thousand packets of the smaller size.
    let smallest = a.max_payload.min(b.max_payload) as u64;
    let stream_bytes = match rng.gen_range(0..4) {
        0 => pick(&mut rng, &[0u64, 1, smallest - 1, smallest, smallest + 1]),
        _ => rng.gen_range(0..=(smallest * 3000).min(4 << 20)),
    };
    Case {
        seed,
        api,
        small_server: rng.gen_bool(0.25),
        one_connection: rng.gen_bool(0.3),
        long_client_inbox: rng.gen_bool(0.15),
        flood: rng.gen_bool(0.15),
        a,
        b,
        stream_bytes,
        messages: rng.gen_range(0..=120),
        read_max: if rng.gen_bool(0.5) {
            pick(&mut rng, &[1usize, 7, 4096, 1 << 20])
        } else {
            rng.gen_range(1..=200_000)
        },
        pause_one_in: pick(&mut rng, &[0u32, 50, 500]),
        pause_max: Duration::from_micros(rng.gen_range(0..5000)),
    }
    .bounded()
}

impl Case {
    /// At most about 20,000 reads of the stream and 100 pauses of a
    /// reader, so that a case takes well under a second of real time.
    fn bounded(mut self) -> Case {
        self.read_max = self
            .read_max
            .max((self.stream_bytes / 10_000) as usize)
            .max(1);
        let reads = (2 * self.stream_bytes / self.read_max as u64).max(self.messages as u64);
        if self.pause_one_in > 0 {
            self.pause_one_in = self.pause_one_in.max((reads / 100) as u32).max(1);
        }
        self
    }
}

fn config(c: &SideCfg, local: &str, remote: &str) -> Config {
    Config::new(local, remote)
        .max_payload(c.max_payload)
        .window(c.window.0, c.window.1)
        .send_buffer(c.send_buffer)
        .batch_messages(c.batch)
        .close_linger(c.linger)
}

/// Message `i` of a case, `len` bytes; its content names it.
fn message(seed: u64, i: usize, len: usize) -> Bytes {
    (0..len)
        .map(|j| pattern_byte((seed << 20) ^ ((i as u64) << 32) ^ j as u64))
        .collect::<Vec<u8>>()
        .into()
}

/// The sizes of a case's messages, drawn towards the edges of the session
/// `s` sends on (its packet size and its largest message).
fn sizes(case: &Case, s: &Session, n: usize, salt: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(case.seed ^ salt);
    let p = s.max_payload();
    let most = (s.max_message_size().expect("established") as usize).min(2 << 20);
    let edges = [0, 1, p - 1, p, p + 1, 2 * p, most - 1, most];
    let mut budget: usize = 4 << 20;
    (0..n)
        .map(|_| {
            let want = if rng.gen_bool(0.5) {
                edges[rng.gen_range(0..edges.len())]
            } else {
                rng.gen_range(0..=(4 * p).min(most))
            };
            let n = want.min(most).min(budget);
            budget -= n;
            n
        })
        .collect()
}

/// A reader pausing now and then, as a slow application does.
async fn maybe_pause(rng: &mut ChaCha8Rng, case: &Case) {
    if case.pause_one_in > 0 && rng.gen_ratio(1, case.pause_one_in) {
        tokio::time::sleep(case.pause_max).await;
    }
}

/// Reads the stream to its end, checking every byte; returns how many.
async fn read_all(r: &mut ReadHalf, case: &Case, salt: u64) -> Result<u64, String> {
    let mut rng = ChaCha8Rng::seed_from_u64(case.seed ^ salt);
    let mut buf = vec![0u8; case.read_max];
    let mut pos = 0u64;
    loop {
        let want = rng.gen_range(1..=case.read_max);
        let n = r
            .read(&mut buf[..want])
            .await
            .map_err(|e| format!("read at {pos}: {e}"))?;
        if n == 0 {
            return Ok(pos);
        }
        for (i, b) in buf[..n].iter().enumerate() {
            if *b != pattern_byte(pos + i as u64) {
                return Err(format!("stream byte {} is wrong", pos + i as u64));
            }
        }
        pos += n as u64;
        maybe_pause(&mut rng, case).await;
    }
}

/// Writes `total` pattern bytes in writes of random sizes, then shuts down.
async fn write_all(w: &mut WriteHalf, case: &Case, total: u64, salt: u64) -> Result<(), String> {
    let mut rng = ChaCha8Rng::seed_from_u64(case.seed ^ salt);
    let mut pos = 0u64;
    while pos < total {
        let n = (rng.gen_range(1..=200_000u64)).min(total - pos);
        let chunk: Vec<u8> = (pos..pos + n).map(pattern_byte).collect();
        w.write_all(&chunk)
            .await
            .map_err(|e| format!("write at {pos}: {e}"))?;
        pos += n;
    }
    w.shutdown().await.map_err(|e| format!("shutdown: {e}"))
}

/// Writes `total` bytes on `w` and shuts it down while `r` reads them to
/// the end, each byte checked; `salts` draw the write and read sizes.
async fn carry(
    w: &mut WriteHalf,
    r: &mut ReadHalf,
    case: &Case,
    total: u64,
    salts: (u64, u64),
    what: &str,
) -> Result<(), String> {
    let (wrote, read) = tokio::join!(
        write_all(w, case, total, salts.0),
        read_all(r, case, salts.1)
    );
    wrote.map_err(|e| format!("{what}: {e}"))?;
    let n = read.map_err(|e| format!("{what}: {e}"))?;
    if n != total {
        return Err(format!("{what}: {n} of {total} stream bytes arrived"));
    }
    Ok(())
}

/// Receives `want` messages and then the end, each exact.
async fn recv_exact(s: &ReadHalf, want: &[Bytes], case: &Case, salt: u64) -> Result<(), String> {
    let mut rng = ChaCha8Rng::seed_from_u64(case.seed ^ salt);
    for (i, m) in want.iter().enumerate() {
        let got = s.recv().await.map_err(|e| format!("recv {i}: {e}"))?;
        let got = got.ok_or_else(|| format!("the end came before message {i}"))?;
        if got != *m {
            return Err(format!(
                "message {i}: {} bytes arrived, {} were sent{}",
                got.len(),
                m.len(),
                if got.len() == m.len() {
                    " (content differs)"
                } else {
                    ""
                }
            ));
        }
        maybe_pause(&mut rng, case).await;
    }
    Ok(())
}

async fn run(case: &Case, servers: &[NatsServer; 2]) -> Result<(), String> {
    let server = &servers[case.small_server as usize];
    let connect = |cap: Option<usize>| {
        let mut o = NatsOptions::new(server.url());
        if let Some(n) = cap {
            o = o.subscription_capacity(n);
        }
        async move {
            NatsTransport::connect(o)
                .await
                .map_err(|e| format!("connect: {e}"))
        }
    };
    let ta = connect(case.a.subscription_capacity).await?;
    let tb = if case.one_connection {
        ta.clone()
    } else {
        connect(case.b.subscription_capacity).await?
    };
    let tag = format!("rnd{}", case.seed);
    let mut ia = inbox(&tag, "a");
    if case.long_client_inbox {
        ia.push('.');
        ia.extend(std::iter::repeat_n('L', 300));
    }
    let ib = inbox(&tag, "b");
    let flood = if case.flood {
        Some(Flood::start(&server.url(), vec![ia.clone(), ib.clone()], case.seed).await)
    } else {
        None
    };
    let listener = Session::listen(tb.clone() as Arc<dyn Transport>, config(&case.b, &ib, ""))
        .await
        .map_err(|e| format!("listen: {e}"))?;
    let accepted = tokio::spawn(listener.accept());
    let a = Session::connect(ta.clone() as Arc<dyn Transport>, config(&case.a, &ia, &ib))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let b = accepted
        .await
        .map_err(|e| format!("accept task: {e}"))?
        .map_err(|e| format!("accept: {e}"))?;
    let (ha, hb) = (a.abort_handle(), b.abort_handle());
    // The largest messages, known once established, before the split.
    let sizes_a = sizes(case, &a, case.messages, 11);
    let b_most = b.max_message_size().expect("established") as usize;
    let (mut ra, mut wa) = a.into_split();
    let (mut rb, mut wb) = b.into_split();
    let total = case.stream_bytes;
    match case.api {
        Api::Stream => {
            carry(&mut wa, &mut rb, case, total, (1, 2), "A to B").await?;
            carry(&mut wb, &mut ra, case, 0, (3, 3), "B to A (nothing)").await?;
        }
        Api::HalfClose => {
            carry(&mut wa, &mut rb, case, total, (3, 4), "A to B").await?;
            // Only after the end of A's stream does B answer.
            let back = total / 2 + 1;
            carry(&mut wb, &mut ra, case, back, (5, 6), "B's answer").await?;
        }
        Api::BothWays => {
            let (ab, ba) = tokio::join!(
                carry(&mut wa, &mut rb, case, total, (7, 9), "A to B"),
                carry(&mut wb, &mut ra, case, total, (8, 10), "B to A")
            );
            ab?;
            ba?;
        }
        Api::Messages => {
            let want: Vec<Bytes> = sizes_a
                .into_iter()
                .enumerate()
                .map(|(i, n)| message(case.seed, i, n))
                .collect();
            let send = async {
                let mut rng = ChaCha8Rng::seed_from_u64(case.seed ^ 12);
                for (i, m) in want.iter().enumerate() {
                    if rng.gen_ratio(1, 10) {
                        wa.send_and_wait(m.clone()).await
                    } else {
                        wa.send(m.clone()).await.map(|_| ())
                    }
                    .map_err(|e| format!("send {i} ({} bytes): {e}", m.len()))?;
                }
                wa.shutdown().await.map_err(|e| format!("A shutdown: {e}"))
            };
            let recv = async {
                recv_exact(&rb, &want, case, 13).await?;
                match rb.recv().await {
                    Ok(None) => {}
                    other => return Err(format!("after the last message: {other:?}")),
                }
                wb.shutdown().await.map_err(|e| format!("B shutdown: {e}"))
            };
            let (s, r) = tokio::join!(send, recv);
            s?;
            r?;
            match ra.recv().await {
                Ok(None) => {}
                other => return Err(format!("A, after B's end: {other:?}")),
            }
        }
        Api::Echo => {
            let echo = async {
                loop {
                    match rb.recv().await {
                        Ok(Some(m)) => wb.send(m).await.map_err(|e| format!("echo send: {e}"))?,
                        Ok(None) => break,
                        Err(e) => return Err(format!("echo recv: {e}")),
                    };
                }
                wb.shutdown().await.map_err(|e| format!("B shutdown: {e}"))
            };
            let ask = async {
                // Requests no larger than what either way carries whole.
                let want: Vec<Bytes> = sizes_a
                    .into_iter()
                    .map(|n| n.min(b_most))
                    .enumerate()
                    .map(|(i, n)| message(case.seed, i, n))
                    .collect();
                let mut rng = ChaCha8Rng::seed_from_u64(case.seed ^ 15);
                let mut next = 0;
                while next < want.len() {
                    let k = rng.gen_range(1..=8).min(want.len() - next);
                    // Answers are read while requests are still going
                    // out: a client that only reads once it has sent them
                    // all deadlocks once they and their answers outgrow
                    // the buffers between (as over TCP).
                    let send = async {
                        for (i, m) in want[next..next + k].iter().enumerate() {
                            wa.send(m.clone())
                                .await
                                .map_err(|e| format!("request {}: {e}", next + i))?;
                        }
                        Ok::<_, String>(())
                    };
                    let answers = recv_exact(&ra, &want[next..next + k], case, 16 + next as u64);
                    let (sent, got) = tokio::join!(send, answers);
                    sent?;
                    got.map_err(|e| format!("answers from {next}: {e}"))?;
                    next += k;
                }
                wa.shutdown()
                    .await
                    .map_err(|e| format!("A shutdown: {e}"))?;
                match ra.recv().await {
                    Ok(None) => Ok(()),
                    other => Err(format!("A, after B's end: {other:?}")),
                }
            };
            let (e, q) = tokio::join!(echo, ask);
            q?;
            e?;
        }
    }
    // Both sides ended as they should, for the reason they should. Under a
    // flood, packets are lost (the flood overflows the inboxes), and the
    // side that closes last may lose every FinAck its Fin gets while its
    // peer lingers (1 ms in some cases): it then waits its dead-peer budget
    // (10 s) and says the peer is unreachable, which is true, with every
    // byte delivered. Without a flood, the link loses nothing: both end
    // Normal, at once.
    let bound = Duration::from_secs(if case.flood { 20 } else { 10 });
    for (who, h) in [("A", &ha), ("B", &hb)] {
        tokio::time::timeout(bound, h.wait_closed())
            .await
            .map_err(|_| format!("{who} did not end within {bound:?} of the exchange"))?;
    }
    for (who, r) in [("A", &ra), ("B", &rb)] {
        match r.close_reason() {
            Some(CloseReason::Normal) => {}
            Some(CloseReason::PeerUnreachable { .. } | CloseReason::RetransmitLimit { .. })
                if case.flood => {}
            other => return Err(format!("{who} ended with {other:?}")),
        }
    }
    // The inbox promise holds from the reserve (64) + 2 messages up
    // (docs/PROTOCOL.md §6); below it, overflow is repaired as loss.
    let promised = [&case.a, &case.b]
        .iter()
        .all(|c| c.subscription_capacity.is_none_or(|n| n >= 66));
    if let Some(f) = flood {
        f.stop().await;
        return Ok(());
    }
    if promised {
        for (who, t) in [("A", &ta), ("B", &tb)] {
            let c = t.counters();
            if c.slow_consumer_events > 0 {
                return Err(format!(
                    "{who}'s subscription overflowed {} times on a loss-free link",
                    c.slow_consumer_events
                ));
            }
        }
    }
    for (who, r) in [("A", &ra), ("B", &rb)] {
        let d = r.stats().protocol.dropped;
        if d.invalid + d.impossible + d.beyond_window > 0 {
            return Err(format!("{who} dropped packets no flood sent: {d:?}"));
        }
    }
    Ok(())
}

fn cases() -> Vec<u64> {
    if let Ok(s) = std::env::var("SWP_NATS_CASE") {
        return vec![s.parse().expect("SWP_NATS_CASE must be a number")];
    }
    let n: u64 = std::env::var("SWP_NATS_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let first: u64 = std::env::var("SWP_NATS_FIRST")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (first..first + n).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_sessions_over_real_servers_deliver_exactly_and_end_normally() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = TempDir::new("nats-random");
    let servers = [
        nats_server(),
        nats_server_with_config(&dir.0.join("small.conf"), "max_payload: 8192\n"),
    ];
    let mut failed = Vec::new();
    for seed in cases() {
        let c = case(seed);
        let t0 = std::time::Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(60), run(&c, &servers))
            .await
            .unwrap_or_else(|_| Err("did not finish within 60 s".into()));
        if t0.elapsed() > Duration::from_secs(3) {
            eprintln!("seed {seed}: slow, {:.2?}: {c:?}", t0.elapsed());
        }
        if let Err(e) = r {
            eprintln!(
                "seed {seed} FAILED: {e}\n  case: {c:?}\n  reproduce: SWP_NATS_CASE={seed} cargo test --test nats_random"
            );
            failed.push(seed);
        }
    }
    assert!(failed.is_empty(), "failing seeds: {failed:?}");
}
