//! The async Session and its driver over SimNet, with tokio's paused clock:
//! the same code paths as over NATS, under loss, in virtual time.

mod common;

use bytes::Bytes;
use common::{PatternChecker, PatternReader};
use futures::future::BoxFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use swp::proto::{CloseReason, Config, Kind};
use swp::simnet::{LinkConfig, Rule, Verdict};
use swp::transport::{Capacity, Incoming, SimNetwork, Transport, TransportError};
use swp::{Session, SessionError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn lossy(seed: u64, loss: f64) -> SimNetwork {
    SimNetwork::new(
        seed,
        LinkConfig::new()
            .latency(Duration::from_millis(2))
            .jitter(Duration::from_millis(1))
            .loss(loss)
            .duplicate(0.02)
            .bandwidth(Some(200 << 20)),
    )
}

/// The seeds of a randomized test: `SWP_SESSION_SEED` alone, or the first
/// `SWP_SESSION_SEEDS` (else `default`).
fn session_seeds(default: u64) -> Vec<u64> {
    match std::env::var("SWP_SESSION_SEED") {
        Ok(s) => vec![s.parse().expect("SWP_SESSION_SEED must be a number")],
        Err(_) => (0..std::env::var("SWP_SESSION_SEEDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default))
            .collect(),
    }
}

async fn pair(net: &SimNetwork, a: Config, b: Config) -> (Session, Session) {
    swp::testkit::session_pair(net, a, b).await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn io_copy_under_loss_in_virtual_time() {
    for seed in 0..4 {
        let net = lossy(seed, 0.1);
        let (mut a, mut b) = pair(
            &net,
            Config::new("A", "B").max_payload(16 * 1024),
            Config::new("B", ""),
        )
        .await;
        let total = 8u64 << 20;
        let w = tokio::spawn(async move {
            tokio::io::copy(&mut PatternReader { pos: 0, total }, &mut a)
                .await
                .unwrap();
            a.shutdown().await.unwrap();
            a.stats()
        });
        let mut check = PatternChecker::default();
        let n = tokio::io::copy(&mut b, &mut check).await.unwrap();
        let sa = w.await.unwrap();
        assert_eq!(n, total, "seed {seed}");
        assert_eq!(check.first_bad, None, "seed {seed}");
        assert!(
            sa.protocol.loss.retransmits_fast + sa.protocol.loss.retransmits_timeout > 0,
            "loss was repaired"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn messages_and_send_and_wait_under_loss() {
    let net = lossy(7, 0.2);
    let (a, b) = pair(&net, Config::new("A", "B"), Config::new("B", "")).await;
    for i in 0..200u32 {
        if i % 10 == 0 {
            a.send_and_wait(Bytes::from(i.to_string())).await.unwrap();
        } else {
            a.send(Bytes::from(i.to_string())).await.unwrap();
        }
    }
    for i in 0..200u32 {
        assert_eq!(b.recv().await.unwrap().unwrap(), Bytes::from(i.to_string()));
    }
    a.close().await.unwrap();
    assert_eq!(b.recv().await.unwrap(), None, "end of stream after close");
}

#[tokio::test(start_paused = true)]
async fn split_halves_echo() {
    let net = lossy(8, 0.05);
    let (a, b) = pair(&net, Config::new("A", "B"), Config::new("B", "")).await;
    // B echoes everything back through its two halves.
    let echo = tokio::spawn(async move {
        let (mut r, mut w) = b.into_split();
        tokio::io::copy(&mut r, &mut w).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let (mut r, mut w) = a.into_split();
    let total = 1u64 << 20;
    let writer = tokio::spawn(async move {
        tokio::io::copy(&mut PatternReader { pos: 0, total }, &mut w)
            .await
            .unwrap();
        w.shutdown().await.unwrap();
    });
    let mut check = PatternChecker::default();
    assert_eq!(tokio::io::copy(&mut r, &mut check).await.unwrap(), total);
    assert_eq!(check.first_bad, None);
    writer.await.unwrap();
    echo.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn peer_vanishing_is_an_error_within_the_keepalive_budget() {
    let net = lossy(9, 0.0);
    let ka = |c: Config| c.keepalive(Duration::from_millis(200), 5);
    let (mut a, b) = pair(&net, ka(Config::new("A", "B")), ka(Config::new("B", ""))).await;
    let (ia, ib) = (
        net.with(|n| n.lookup("A").unwrap()),
        net.with(|n| n.lookup("B").unwrap()),
    );
    net.with(|n| n.partition(ia, ib));
    let t0 = tokio::time::Instant::now();
    let err = a.read(&mut [0u8; 8]).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    let took = t0.elapsed();
    // The budget (1 s), one more keepalive interval (the outage may have
    // begun just after the last answer) and an answer time (the RTO, at
    // most one interval: nothing was sent yet, so 500 ms, clamped to 200):
    // docs/PROTOCOL.md §8.
    assert!(
        took >= Duration::from_millis(1200) && took <= Duration::from_millis(1400),
        "{took:?}"
    );
    drop(b);
}

#[tokio::test(start_paused = true)]
async fn connect_to_nobody_fails_with_a_clear_error() {
    let net = lossy(10, 0.0);
    let ta = net.transport("A", 64);
    let _nobody = net.transport("B", 64); // exists, but nobody listens
    let err = Session::connect(ta, Config::new("A", "B").connect(Duration::from_secs(1), 4))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            SessionError::Closed(CloseReason::ConnectTimeout { attempts: 4, .. })
        ),
        "{err:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn lost_handshake_packets_and_lost_fin_are_survived() {
    let net = lossy(11, 0.0);
    net.with(|n| {
        let is = |k: Kind| {
            move |e: &swp::simnet::Envelope| {
                swp::proto::codec::decode(&e.payload).is_ok_and(|p| p.kind == k)
            }
        };
        n.add_rule(Rule::new("syn", Verdict::Drop, is(Kind::Syn)).times(2));
        n.add_rule(Rule::new("estab", Verdict::Drop, is(Kind::EstabAck)).times(1));
        n.add_rule(Rule::new("fin", Verdict::Drop, is(Kind::Fin)).times(2));
    });
    let (mut a, mut b) = pair(&net, Config::new("A", "B"), Config::new("B", "")).await;
    a.write_all(b"through it all").await.unwrap();
    a.shutdown().await.unwrap();
    let mut s = String::new();
    b.read_to_string(&mut s).await.unwrap();
    assert_eq!(s, "through it all");
    b.shutdown().await.unwrap();
    assert_eq!(a.read(&mut [0u8; 4]).await.unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn dropping_a_session_still_delivers_what_was_written() {
    let net = lossy(12, 0.1);
    let (mut a, mut b) = pair(&net, Config::new("A", "B"), Config::new("B", "")).await;
    a.write_all(&vec![9u8; 300_000]).await.unwrap();
    drop(a); // no flush, no shutdown
    let mut got = Vec::new();
    b.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, vec![9u8; 300_000]);
}

/// A dropped session's bytes that cannot be delivered: it aborts after
/// its drop linger and its driver then ends. (Its drop deadline, left armed
/// once closed, made the driver loop without rest through the linger:
/// real CPU for 2 s over NATS, and a clock that never moved again here.)
#[tokio::test(start_paused = true)]
async fn a_dropped_session_that_cannot_deliver_gives_up_after_the_drop_linger_and_rests() {
    let _dog = common::Watchdog::start(Duration::from_secs(60), "the dropped session's driver");
    let net = lossy(15, 0.0);
    let (mut a, b) = pair(&net, Config::new("A", "B"), Config::new("B", "")).await;
    let (ia, ib) = (
        net.with(|n| n.lookup("A").unwrap()),
        net.with(|n| n.lookup("B").unwrap()),
    );
    net.with(|n| n.partition(ia, ib));
    a.write_all(&[7u8; 10_000]).await.unwrap();
    let handle = a.abort_handle();
    drop(a);
    // It gives up after DROP_LINGER or its dead-peer timeout (10 s budget
    // + 1 s interval + an answer time, at most 1 s), whichever is longer,
    // then lingers as long again to repeat its Reset: 24 s at most.
    let most = swp::session::DROP_LINGER.max(Duration::from_secs(12)) * 2;
    tokio::time::sleep(most).await;
    assert!(!handle.is_live(), "the driver ended after its linger");
    drop(b);
}

/// A dropped session keeps its close through an outage shorter than the
/// dead-peer budget (PROTOCOL.md §8's promise holds for a dropped session
/// too): with its Fin's retries backed off past the outage, giving up at
/// DROP_LINGER (10 s, as before) reset the peer just after the path healed.
/// Both directions, and towards the peer only (our acks come back, the
/// Fin does not get there).
#[tokio::test(start_paused = true)]
async fn a_dropped_session_survives_an_outage_shorter_than_the_budget() {
    let _dog = common::Watchdog::start(Duration::from_secs(60), "the dropped session's outage");
    for (seed, one_way) in [(21, false), (22, true)] {
        let net = lossy(seed, 0.0);
        let cfg = |l: &str, r: &str| Config::new(l, r).keepalive(Duration::from_secs(1), 10);
        let (mut a, mut b) = pair(&net, cfg("A", "B"), cfg("B", "")).await;
        let (ia, ib) = (
            net.with(|n| n.lookup("A").unwrap()),
            net.with(|n| n.lookup("B").unwrap()),
        );
        a.write_all(&[5u8; 50_000]).await.unwrap();
        let mut first = [0u8; 1000];
        b.read_exact(&mut first).await.unwrap();
        net.with(|n| {
            if one_way {
                n.set_black_hole(ib, true)
            } else {
                n.partition(ia, ib)
            }
        });
        drop(a); // its last bytes and its Fin go into the outage
        // 9.9 s of the 10 s budget, then the path heals.
        tokio::time::sleep(Duration::from_millis(9900)).await;
        net.with(|n| {
            if one_way {
                n.set_black_hole(ib, false)
            } else {
                n.heal(ia, ib)
            }
        });
        let mut rest = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(30), b.read_to_end(&mut rest)).await;
        let r = r.expect("the reader ends within 30 s of the heal");
        assert!(r.is_ok(), "seed {seed}, one way {one_way}: {r:?}");
        assert_eq!(
            rest.len(),
            49_000,
            "seed {seed}: every byte arrives, then the end"
        );
        let closed = b.close().await;
        assert!(closed.is_ok(), "seed {seed}: b's close: {closed:?}");
    }
}

/// A side that aborts during an outage shorter than the budget still tells
/// its peer why once the path heals: its linger lasts its dead-peer timeout
/// and it answers the peer's packets with the Reset at most once per answer
/// time all along (towards the peer only, the peer's packets reach it all
/// along; it used to stop at 8 Resets, or after 2 s, and the peer ended
/// "peer unreachable" a budget later).
#[tokio::test(start_paused = true)]
async fn an_abort_during_an_outage_shorter_than_the_budget_is_heard_when_it_heals() {
    let _dog = common::Watchdog::start(Duration::from_secs(60), "the abort in an outage");
    for (seed, one_way) in [(24, false), (25, true)] {
        let net = lossy(seed, 0.0);
        let cfg = |l: &str, r: &str| Config::new(l, r).keepalive(Duration::from_secs(1), 10);
        let (mut a, b) = pair(&net, cfg("A", "B"), cfg("B", "")).await;
        let (ia, ib) = (
            net.with(|n| n.lookup("A").unwrap()),
            net.with(|n| n.lookup("B").unwrap()),
        );
        let cut = |on: bool| {
            net.with(|n| match (one_way, on) {
                (true, on) => n.set_black_hole(ia, on),
                (false, true) => n.partition(ia, ib),
                (false, false) => n.heal(ia, ib),
            })
        };
        cut(true);
        b.abort_with("the far side's disk failed");
        tokio::time::sleep(Duration::from_secs(9)).await;
        cut(false);
        let healed = tokio::time::Instant::now();
        let mut buf = [0u8; 16];
        let e = a.read(&mut buf).await.unwrap_err().to_string();
        let after = tokio::time::Instant::now() - healed;
        assert!(
            e.contains("the far side's disk failed"),
            "seed {seed}, one way {one_way}: {e}"
        );
        assert!(
            after <= Duration::from_secs(3),
            "seed {seed}, one way {one_way}: told {after:?} after the heal"
        );
        drop(b);
    }
}

/// A dropped session whose peer never closes gives up after its linger and
/// tells the peer why (it used to send a Reset without a word: "session
/// reset by the peer").
#[tokio::test(start_paused = true)]
async fn a_dropped_session_whose_peer_never_closes_says_why_it_gave_up() {
    let net = lossy(23, 0.0);
    let (a, mut b) = pair(&net, Config::new("A", "B"), Config::new("B", "")).await;
    a.send("bye").await.unwrap();
    drop(a);
    let mut got = Vec::new();
    b.read_to_end(&mut got).await.unwrap(); // the Fin came: end of stream
    let read_at = tokio::time::Instant::now();
    // b keeps its side open; the dropped side gives up after its linger.
    b.wait_closed().await;
    let waited = tokio::time::Instant::now() - read_at;
    assert!(
        waited <= swp::session::DROP_LINGER + Duration::from_secs(2),
        "the dropped side gave up {waited:?} after its Fin"
    );
    let e = b.send("too late").await.unwrap_err().to_string();
    assert!(
        e.contains("the peer's program dropped its session and gave up closing it after")
            && e.contains("you did not close your side"),
        "{e}"
    );
}

/// Dropping a session while the peer's bytes are unread or still coming
/// resets it: the peer must not take our acks for delivery.
#[tokio::test(start_paused = true)]
async fn dropping_a_session_with_the_peers_bytes_unread_tells_the_peer_at_once() {
    let net = lossy(16, 0.05);
    let (a, mut b) = pair(&net, Config::new("A", "B"), Config::new("B", "")).await;
    let writer = tokio::spawn(async move {
        let mut a = a;
        let r = async {
            for _ in 0..64 {
                a.write_all(&[1u8; 64 << 10]).await?;
            }
            a.flush_acked().await.map_err(std::io::Error::other)
        }
        .await;
        (r, tokio::time::Instant::now())
    });
    let mut first = [0u8; 1000];
    b.read_exact(&mut first).await.unwrap();
    let dropped = tokio::time::Instant::now();
    drop(b);
    let (r, ended) = writer.await.unwrap();
    let err = r.expect_err("the writer must learn its bytes were not read");
    assert!(
        err.to_string()
            .contains("dropped its session without reading"),
        "{err}"
    );
    assert!(
        ended - dropped < Duration::from_secs(2),
        "told at once: {:?}",
        ended - dropped
    );
}

#[tokio::test(start_paused = true)]
async fn abort_resets_the_peer() {
    let net = lossy(13, 0.0);
    let (a, mut b) = pair(&net, Config::new("A", "B"), Config::new("B", "")).await;
    a.abort();
    let err = b.read(&mut [0u8; 4]).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
}

#[tokio::test(start_paused = true)]
async fn asap_sees_packets_before_ordered_delivery() {
    let net = lossy(14, 0.0);
    net.with(|n| {
        n.add_rule(
            Rule::new(
                "delay first data",
                Verdict::Delay(Duration::from_millis(50)),
                |e: &swp::simnet::Envelope| {
                    swp::proto::codec::decode(&e.payload)
                        .is_ok_and(|p| p.kind == Kind::Data && p.seq == 0)
                },
            )
            .times(1),
        );
    });
    // One message per packet, so that the second can overtake the first.
    let (a, b) = pair(
        &net,
        Config::new("A", "B").batch_messages(false),
        Config::new("B", "").asap(Some(16)),
    )
    .await;
    a.send(Bytes::from_static(b"first")).await.unwrap();
    a.send(Bytes::from_static(b"second")).await.unwrap();
    // "second" overtakes "first" on the ASAP stream; ordered delivery waits.
    assert_eq!(b.recv_asap().await.unwrap(), Bytes::from_static(b"second"));
    assert_eq!(
        b.recv().await.unwrap().unwrap(),
        Bytes::from_static(b"first")
    );
    assert_eq!(
        b.recv().await.unwrap().unwrap(),
        Bytes::from_static(b"second")
    );
}

/// A SimNet transport whose publishes can be held, as async-nats holds them
/// when its command queue is full: while held, a publish waits.
struct Held {
    inner: Arc<dyn Transport>,
    held: tokio::sync::watch::Receiver<bool>,
    waited: AtomicU64,
}

impl Transport for Held {
    fn subscribe(&self, inbox: &str) -> BoxFuture<'_, Result<Incoming, TransportError>> {
        self.inner.subscribe(inbox)
    }
    fn publish(&self, subject: &str, payload: Bytes) -> BoxFuture<'_, Result<(), TransportError>> {
        let subject = subject.to_string();
        Box::pin(async move {
            let mut held = self.held.clone();
            if *held.borrow() {
                self.waited.fetch_add(1, Ordering::Relaxed);
            }
            held.wait_for(|h| !*h).await.ok();
            self.inner.publish(&subject, payload).await
        })
    }
    fn max_payload(&self) -> usize {
        self.inner.max_payload()
    }
    fn capacity(&self) -> Capacity {
        self.inner.capacity()
    }
}

/// An established pair whose A side publishes through a [`Held`] transport.
async fn held_pair(
    net: &SimNetwork,
    a: Config,
    b: Config,
) -> (
    Session,
    Session,
    tokio::sync::watch::Sender<bool>,
    Arc<Held>,
) {
    let (hold, held) = tokio::sync::watch::channel(false);
    let ta = Arc::new(Held {
        inner: net.transport("A", 4096),
        held,
        waited: AtomicU64::new(0),
    });
    let (a, b) = tokio::join!(
        Session::connect(ta.clone(), a),
        Session::accept(net.transport("B", 4096), b),
    );
    (a.unwrap(), b.unwrap(), hold, ta)
}

#[tokio::test(start_paused = true)]
async fn publishes_held_for_a_while_lose_and_reorder_nothing() {
    // The transport stops taking packets for 300 ms mid-stream, then takes
    // them again: everything arrives once, in order, and the writer's
    // packets queued behind the held one are not dropped.
    let net = lossy(21, 0.0);
    let (mut a, mut b, hold, ta) = held_pair(
        &net,
        Config::new("A", "B").max_payload(4096),
        Config::new("B", ""),
    )
    .await;
    let total = 4u64 << 20;
    let writer = tokio::spawn(async move {
        let mut src = PatternReader { pos: 0, total };
        tokio::io::copy(&mut src, &mut a).await.unwrap();
        a.shutdown().await.unwrap();
    });
    let mut check = PatternChecker::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0u64;
    while got < total / 4 {
        let m = b.read(&mut buf).await.unwrap();
        check.write_all(&buf[..m]).await.unwrap();
        got += m as u64;
    }
    hold.send(true).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await; // the outage
    hold.send(false).unwrap();
    let n = tokio::time::timeout(Duration::from_secs(60), tokio::io::copy(&mut b, &mut check))
        .await
        .expect("stalled after the transport took packets again")
        .unwrap();
    writer.await.unwrap();
    assert!(
        ta.waited.load(Ordering::Relaxed) > 0,
        "no publish was ever held"
    );
    assert_eq!(got + n, total);
    assert_eq!(check.first_bad, None, "corrupt or reordered byte");
}

#[tokio::test(start_paused = true)]
async fn publishes_held_for_good_end_the_session_with_a_clear_error() {
    // The transport never takes another packet while the peer is still
    // heard from. The session must end within the dead-peer budget with an
    // error that blames the transport, not the peer, and before the peer,
    // hearing nothing from A, gives up on it (the budget plus its probe
    // grace, docs/PROTOCOL.md §8).
    let net = lossy(22, 0.0);
    let ka = |c: Config| c.keepalive(Duration::from_millis(200), 5);
    let (mut a, b, hold, ta) =
        held_pair(&net, ka(Config::new("A", "B")), ka(Config::new("B", ""))).await;
    a.write_all(b"before").await.unwrap();
    a.flush().await.unwrap();
    hold.send(true).unwrap();
    let t0 = tokio::time::Instant::now();
    let b_sent = b.stats().protocol.wire.packets_sent;
    a.write_all(&[7u8; 100_000]).await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(600), a.flush_acked())
        .await
        .expect("flush waited on a held publish for 600 s")
        .unwrap_err();
    let took = t0.elapsed();
    assert!(
        ta.waited.load(Ordering::Relaxed) > 0,
        "no publish was ever held"
    );
    assert!(
        matches!(
            &err,
            SessionError::Transport(TransportError::Publish { reason, .. })
                if reason.contains("took no packet for 1s")
        ),
        "{err:?}"
    );
    assert!(
        took >= Duration::from_millis(1000) && took <= Duration::from_millis(1100),
        "{took:?} for a 1 s budget"
    );
    // The peer kept talking (keepalives) while A's transport was stuck.
    assert!(b.stats().protocol.wire.packets_sent >= b_sent + 3);
}

#[tokio::test(start_paused = true)]
async fn a_readers_close_after_eof_returns_at_once_when_the_writer_is_gone() {
    // The writer shuts down and its process exits (here: it is cut off for
    // good). The reader reads to the end and closes: everything both ways is
    // confirmed, only the writer's FinAck can never come. That close used
    // to wait 5 s of Fin retries; now it returns after three tries (a few
    // RTOs: ~10 ms here).
    let net = lossy(31, 0.0);
    let (mut a, mut b) = pair(&net, Config::new("A", "B"), Config::new("B", "")).await;
    a.write_all(b"all of it").await.unwrap();
    a.shutdown().await.unwrap();
    let (ia, ib) = (
        net.with(|n| n.lookup("A").unwrap()),
        net.with(|n| n.lookup("B").unwrap()),
    );
    net.with(|n| n.partition(ia, ib));
    let mut got = Vec::new();
    b.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"all of it");
    let t0 = tokio::time::Instant::now();
    b.close().await.unwrap();
    assert!(
        t0.elapsed() <= Duration::from_millis(100),
        "{:?}",
        t0.elapsed()
    );
    drop(a);
}

/// A loss-free link with a fixed one-way delay and no jitter.
fn steady(one_way: Duration) -> SimNetwork {
    SimNetwork::new(7, LinkConfig::new().latency(one_way))
}

/// Request and answer, many times: each answer and each next request
/// carries the acknowledgement, so no pure Ack is sent at all, and every
/// round trip takes the link's round trip and nothing more (no ack delay,
/// no hand-over the clock can see).
#[tokio::test(start_paused = true)]
async fn request_and_answer_carry_the_acks_and_take_one_round_trip() {
    let one_way = Duration::from_millis(1);
    let net = steady(one_way);
    let (a, b) = pair(&net, Config::new("A", "B"), Config::new("B", "")).await;
    let echo = tokio::spawn(async move {
        while let Ok(Some(m)) = b.recv().await {
            if b.send(m).await.is_err() {
                break;
            }
        }
        b.stats().protocol.wire
    });
    let before = a.stats().protocol.wire;
    let rounds = 200u32;
    for i in 0..rounds {
        let msg = Bytes::from(format!("request {i}"));
        let t = tokio::time::Instant::now();
        a.send(msg.clone()).await.unwrap();
        assert_eq!(a.recv().await.unwrap().unwrap(), msg);
        let rtt = t.elapsed();
        assert!(
            rtt < 2 * one_way + Duration::from_micros(100),
            "round trip {i} took {rtt:?}"
        );
    }
    let after = a.stats().protocol.wire;
    assert_eq!(after.acks_sent - before.acks_sent, 0, "A sent pure acks");
    assert_eq!(after.packets_sent - before.packets_sent, rounds as u64);
    drop(a);
    let wb = echo.await.unwrap();
    // B's answers, plus the handshake and the close; no pure acks.
    assert_eq!(wb.acks_sent, 0, "B sent pure acks: {wb:?}");
}

/// The acknowledgement of a packet that asked for one at once goes when
/// the application reads it, at once; if nobody reads, within the ack delay
/// (1 ms), never later.
#[tokio::test(start_paused = true)]
async fn an_ack_goes_when_the_reader_reads_or_within_the_ack_delay() {
    let one_way = Duration::from_millis(1);
    let rtt = 2 * one_way;
    let net = steady(one_way);
    let (a, b) = pair(&net, Config::new("A", "B"), Config::new("B", "")).await;
    // A reader waiting: acknowledged in one round trip.
    let reader = tokio::spawn(async move {
        let m = b.recv().await.unwrap().unwrap();
        (b, m)
    });
    let t = tokio::time::Instant::now();
    a.send_and_wait(Bytes::from_static(b"read at once"))
        .await
        .unwrap();
    let took = t.elapsed();
    assert!(
        took < rtt + Duration::from_micros(100),
        "read at once: {took:?}"
    );
    let (b, m) = reader.await.unwrap();
    assert_eq!(m, Bytes::from_static(b"read at once"));
    // Nobody reading: the delayed ack, 1 ms after arrival.
    let t = tokio::time::Instant::now();
    a.send_and_wait(Bytes::from_static(b"not read"))
        .await
        .unwrap();
    let took = t.elapsed();
    let delay = Duration::from_millis(1);
    assert!(
        took >= rtt + delay && took < rtt + delay + Duration::from_micros(100),
        "unread: {took:?}"
    );
    assert_eq!(b.held().0, 1, "still unread");
    assert_eq!(
        b.recv().await.unwrap().unwrap(),
        Bytes::from_static(b"not read")
    );
}

/// The first packets after idle are handed to the transport from the
/// application's own call; when the transport does not take them at once
/// they go through the driver, first, and nothing is lost or reordered.
#[tokio::test(start_paused = true)]
async fn packets_the_transport_holds_after_idle_keep_their_order() {
    let net = steady(Duration::from_millis(1));
    let (a, b, hold, ta) = held_pair(&net, Config::new("A", "B"), Config::new("B", "")).await;
    for round in 0..3 {
        hold.send(true).unwrap();
        let sent: Vec<Bytes> = (0..20)
            .map(|i| Bytes::from(format!("round {round} message {i}")))
            .collect();
        for m in &sent {
            a.send(m.clone()).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await; // the hold
        hold.send(false).unwrap();
        for m in &sent {
            let got = tokio::time::timeout(Duration::from_secs(10), b.recv())
                .await
                .expect("stalled after the hold")
                .unwrap()
                .unwrap();
            assert_eq!(&got, m, "round {round}");
        }
        tokio::time::timeout(Duration::from_secs(10), a.flush_acked())
            .await
            .expect("never acknowledged")
            .unwrap();
    }
    assert!(
        ta.waited.load(Ordering::Relaxed) >= 3,
        "no publish was held"
    );
    // Held, not lost: nothing needed repairing on a loss-free link.
    let loss = a.stats().protocol.loss;
    assert_eq!(loss.data_retransmits(), 0, "{loss:?}");
    // And the close sees every packet handed over.
    tokio::time::timeout(Duration::from_secs(10), a.close())
        .await
        .expect("close waited for packets never handed over")
        .unwrap();
}

/// A SimNet transport whose inbox delivers nothing while its gate is shut:
/// what arrives meanwhile waits in the gate, in order, and opening the gate
/// wakes whoever polled the inbox last. It lets a test decide which task
/// takes a packet: the one that polls right after the gate opens.
struct Gated {
    inner: Arc<dyn Transport>,
    gate: Arc<Gate>,
}

#[derive(Default)]
struct Gate {
    state: std::sync::Mutex<GateState>,
    arrived: tokio::sync::Notify,
}

#[derive(Default)]
struct GateState {
    shut: bool,
    /// The subscription ends (as when the NATS connection closes).
    ended: bool,
    held: std::collections::VecDeque<Bytes>,
    waker: Option<std::task::Waker>,
}

impl Gate {
    fn shut(&self, shut: bool) {
        let waker = {
            let mut s = self.state.lock().unwrap();
            s.shut = shut;
            s.waker.take()
        };
        if let Some(w) = waker.filter(|_| !shut) {
            w.wake();
        }
    }
    /// Ends the subscription: the next poll answers end-of-stream.
    fn end(&self) {
        let waker = {
            let mut s = self.state.lock().unwrap();
            s.ended = true;
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
    /// Waits until `n` packets wait in the gate.
    async fn holding(&self, n: usize) {
        loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if self.state.lock().unwrap().held.len() >= n {
                return;
            }
            arrived.await;
        }
    }
}

struct GatedStream {
    inner: Incoming,
    gate: Arc<Gate>,
}

impl futures::Stream for GatedStream {
    type Item = Bytes;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Bytes>> {
        use futures::StreamExt;
        use std::task::Poll;
        let mut ended = false;
        loop {
            match self.inner.poll_next_unpin(cx) {
                Poll::Ready(Some(b)) => {
                    self.gate.state.lock().unwrap().held.push_back(b);
                    self.gate.arrived.notify_waiters();
                }
                Poll::Ready(None) => {
                    ended = true;
                    break;
                }
                Poll::Pending => break,
            }
        }
        let mut s = self.gate.state.lock().unwrap();
        if s.ended {
            return Poll::Ready(None);
        }
        if !s.shut {
            if let Some(b) = s.held.pop_front() {
                return Poll::Ready(Some(b));
            }
            if ended {
                return Poll::Ready(None);
            }
        }
        s.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Transport for Gated {
    fn subscribe(&self, inbox: &str) -> BoxFuture<'_, Result<Incoming, TransportError>> {
        let inbox = inbox.to_string();
        Box::pin(async move {
            let inner = self.inner.subscribe(&inbox).await?;
            let s: Incoming = Box::pin(GatedStream {
                inner,
                gate: self.gate.clone(),
            });
            Ok(s)
        })
    }
    fn publish(&self, subject: &str, payload: Bytes) -> BoxFuture<'_, Result<(), TransportError>> {
        self.inner.publish(subject, payload)
    }
    fn max_payload(&self) -> usize {
        self.inner.max_payload()
    }
    fn capacity(&self) -> Capacity {
        self.inner.capacity()
    }
}

/// An established pair whose B side hears A through a [`Gate`] (open).
async fn gated_pair(net: &SimNetwork, a: Config, b: Config) -> (Session, Session, Arc<Gate>) {
    let gate = Arc::new(Gate::default());
    let tb = Arc::new(Gated {
        inner: net.transport("B", 4096),
        gate: gate.clone(),
    });
    let (a, b) = tokio::join!(
        Session::connect(net.transport("A", 4096), a),
        Session::accept(tb, b),
    );
    (a.unwrap(), b.unwrap(), gate)
}

/// A reader that waits for the next request after its answer takes an
/// arriving packet from the inbox itself, without waiting for the driver
/// task (the latency case), and the session goes on as before: the answer
/// carries the ack, the round trip takes the link's round trip.
#[tokio::test(start_paused = true)]
async fn a_waiting_reader_takes_the_next_request_itself() {
    let one_way = Duration::from_millis(1);
    let net = steady(one_way);
    let (a, b, gate) = gated_pair(&net, Config::new("A", "B"), Config::new("B", "")).await;
    let a = Arc::new(a);
    for round in 0..4 {
        gate.shut(true);
        let msg = Bytes::from(format!("request {round}"));
        let mut read = std::pin::pin!(b.recv());
        assert!(futures::poll!(read.as_mut()).is_pending());
        let (a2, m2) = (a.clone(), msg.clone());
        let sent = tokio::spawn(async move { a2.send_and_wait(m2).await });
        gate.holding(1).await;
        let t = tokio::time::Instant::now();
        // Opening wakes the driver (queued behind this task) and the
        // reader (this task); polled before the driver runs, so only the
        // reader itself can take the packet.
        gate.shut(false);
        let got = match futures::poll!(read.as_mut()) {
            std::task::Poll::Ready(r) => r.unwrap().unwrap(),
            // Round 0: B has no answer in flight yet, so its reader leaves
            // the packet to the driver.
            std::task::Poll::Pending if round == 0 => read.await.unwrap().unwrap(),
            std::task::Poll::Pending => {
                panic!("round {round}: the reader did not take the packet itself")
            }
        };
        assert_eq!(got, msg, "round {round}");
        b.send(got).await.unwrap(); // the answer, unacked until the next request
        assert_eq!(a.recv().await.unwrap().unwrap(), msg, "round {round}");
        sent.await.unwrap().unwrap(); // the answer carried the ack
        assert!(
            t.elapsed() <= one_way + Duration::from_micros(100),
            "round {round}: answered {:?} after the request arrived",
            t.elapsed()
        );
    }
    let wb = b.stats().protocol.wire;
    assert_eq!(wb.acks_sent, 0, "B sent pure acks: {wb:?}");
}

/// Acks that a waiting reader takes from the inbox open the send buffer
/// for a writer on the other half: the driver learns there was input and
/// wakes it at once (not at the next retransmission).
#[tokio::test(start_paused = true)]
async fn acks_a_waiting_reader_takes_wake_the_writer_on_the_other_half() {
    let net = steady(Duration::from_millis(1));
    let buffer = 16 * 1024;
    let (mut a, b, gate) = gated_pair(
        &net,
        Config::new("A", "B"),
        Config::new("B", "").max_payload(1024).send_buffer(buffer),
    )
    .await;
    let (mut rb, mut wb) = b.into_split();
    let total = buffer as usize + 1;
    let reader_a = tokio::spawn(async move {
        let mut got = vec![0u8; total];
        a.read_exact(&mut got).await.unwrap();
        (a, got)
    });
    gate.shut(true);
    // More than the send buffer: the last byte waits for A's acks, which
    // wait in B's gate.
    let writer = tokio::spawn(async move {
        wb.write_all(&vec![5u8; total]).await.unwrap();
        wb
    });
    let mut buf = [0u8; 16];
    let mut read = std::pin::pin!(rb.read(&mut buf));
    assert!(futures::poll!(read.as_mut()).is_pending());
    gate.holding(1).await;
    gate.shut(false);
    // The reader takes the acks itself: nothing to read, so it waits on.
    assert!(futures::poll!(read.as_mut()).is_pending());
    let t = tokio::time::Instant::now();
    let _wb = tokio::time::timeout(Duration::from_secs(5), writer)
        .await
        .expect("the writer was never woken")
        .unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(1),
        "the writer was woken {:?} after the acks arrived",
        t.elapsed()
    );
    let (_a, got) = reader_a.await.unwrap();
    assert!(got.iter().all(|&x| x == 5));
}

/// Randomized, oracle-checked request/answer through sessions on the
/// simulated network: per seed a link with its own loss, duplication and
/// jitter, then rounds of 1-8 pipelined requests of sizes drawn from the
/// boundaries (0, 1, a packet's payload -1, exact, +1, several packets) and
/// at random; the peer echoes each. Both sides always have data in flight,
/// so both readers take packets from the inbox themselves (on this
/// one-thread runtime they run before the driver) while loss makes the
/// drivers retransmit. Every answer must equal its request, in order, each
/// round within a bound of virtual time (and each seed within a bound of
/// real time, [`common::Watchdog`], should something spin).
/// `SWP_SESSION_SEEDS` runs more seeds, `SWP_SESSION_SEED` one.
#[tokio::test(start_paused = true)]
async fn pipelined_requests_of_every_size_under_loss_answer_exactly() {
    use rand::{Rng, SeedableRng};
    let seeds = session_seeds(64);
    let payload = 2048usize;
    let dog = common::Watchdog::start(Duration::from_secs(120), "pipelined_requests");
    for seed in seeds {
        let repro = format!(
            "reproduce: SWP_SESSION_SEED={seed} cargo test --test session_sim pipelined_requests"
        );
        dog.pet(format!("pipelined_requests seed {seed}: {repro}"));
        let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
        let link = LinkConfig::new()
            .latency(Duration::from_micros(rng.gen_range(100..3000)))
            .jitter(Duration::from_micros(rng.gen_range(0..2000)))
            .loss(rng.gen_range(0.0..0.15))
            .duplicate(rng.gen_range(0.0..0.05));
        let net = SimNetwork::new(seed, link);
        let cfg = |l: &str, r: &str| {
            Config::new(l, r)
                .max_payload(payload)
                .connect(Duration::from_secs(1), 40)
                .max_retransmits(40)
        };
        let (a, b) = pair(&net, cfg("A", "B"), cfg("B", "")).await;
        let echo = tokio::spawn(async move {
            while let Ok(Some(m)) = b.recv().await {
                if b.send(m).await.is_err() {
                    break;
                }
            }
        });
        let sizes = [0, 1, payload - 1, payload, payload + 1, 3 * payload + 7];
        for round in 0..20 {
            let k = rng.gen_range(1..=8);
            let sent: Vec<Bytes> = (0..k)
                .map(|i| {
                    let n = if rng.gen_bool(0.5) {
                        sizes[rng.gen_range(0..sizes.len())]
                    } else {
                        rng.gen_range(0..4 * payload)
                    };
                    Bytes::from(
                        (0..n)
                            .map(|j| (seed as usize + round * 31 + i * 7 + j) as u8)
                            .collect::<Vec<u8>>(),
                    )
                })
                .collect();
            let exchange = async {
                for m in &sent {
                    a.send(m.clone()).await.unwrap();
                }
                for (i, m) in sent.iter().enumerate() {
                    let got = a.recv().await.unwrap().unwrap();
                    assert_eq!(
                        got.len(),
                        m.len(),
                        "seed {seed} round {round} answer {i}: {repro}"
                    );
                    assert!(got == *m, "seed {seed} round {round} answer {i}: {repro}");
                }
            };
            tokio::time::timeout(Duration::from_secs(60), exchange)
                .await
                .unwrap_or_else(|_| panic!("seed {seed} round {round} stalled: {repro}"));
        }
        drop(a);
        tokio::time::timeout(Duration::from_secs(60), echo)
            .await
            .unwrap_or_else(|_| panic!("seed {seed}: the echo never ended: {repro}"))
            .unwrap();
    }
}

/// The inbox subscription ends while a reader waits (the NATS connection
/// closed or drained): the read fails at once with a transport error that
/// says so, whether the reader takes the end from the inbox itself (its
/// side has data in flight) or the driver does (nothing in flight).
#[tokio::test(start_paused = true)]
async fn a_subscription_that_ends_under_a_waiting_reader_fails_the_read_with_why() {
    for in_flight in [false, true] {
        let net = steady(Duration::from_millis(1));
        let (a, b, gate) = gated_pair(&net, Config::new("A", "B"), Config::new("B", "")).await;
        gate.shut(true);
        if in_flight {
            // B's message stays unacknowledged: A's ack waits in the gate.
            b.send(Bytes::from_static(b"unacked")).await.unwrap();
            assert_eq!(a.recv().await.unwrap().unwrap(), "unacked");
        }
        let mut read = std::pin::pin!(b.recv());
        assert!(futures::poll!(read.as_mut()).is_pending());
        gate.end();
        let r = match futures::poll!(read.as_mut()) {
            std::task::Poll::Ready(r) => r,
            std::task::Poll::Pending if !in_flight => {
                tokio::time::timeout(Duration::from_secs(1), read)
                    .await
                    .expect("the read never learnt that the subscription ended")
            }
            std::task::Poll::Pending => panic!("the reader did not take the end itself"),
        };
        match r {
            Err(SessionError::Transport(TransportError::Closed(why))) => {
                assert!(why.contains("subscription ended"), "{why}")
            }
            other => panic!("in flight {in_flight}: {other:?}"),
        }
        // Later calls say the same, not just "aborted".
        let w = b.send(Bytes::from_static(b"after")).await.unwrap_err();
        assert!(
            matches!(w, SessionError::Transport(TransportError::Closed(_))),
            "in flight {in_flight}: {w:?}"
        );
        // The peer is told (a Reset) and fails too, at once.
        let e = tokio::time::timeout(Duration::from_secs(1), a.recv())
            .await
            .expect("the peer never learnt why")
            .unwrap_err();
        assert!(
            matches!(e, SessionError::Closed(CloseReason::Reset { .. })),
            "in flight {in_flight}: {e:?}"
        );
    }
}

/// Where a partition cuts a request/answer exchange.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cut {
    /// As the request leaves A.
    Request,
    /// As the answer leaves B (the request arrived).
    Answer,
}

/// A partition while A's reader waits for its answer (with its request in
/// flight, so the reader takes arriving packets itself), at the edges of
/// the promise of docs/PROTOCOL.md §8: one just under the dead-peer budget
/// B is survived, the answer exact and the session usable after it; one
/// just longer than B + K + A (K the keepalive interval, A <= K) ends both
/// sides within B + 2K of the cut, each with the reason (the silence, or
/// the peer's Reset saying so), never a hang or a bare "closed". Cut as
/// the request leaves and as the answer leaves; a few seeds of jitter.
#[tokio::test(start_paused = true)]
async fn a_waiting_reader_survives_a_partition_just_under_the_budget_and_both_learn_why_just_over()
{
    let tuning = swp::proto::Tuning::new();
    let (budget, k) = (
        tuning.dead_peer_budget().unwrap(),
        tuning.keepalive_interval(),
    );
    let ms = Duration::from_millis;
    for seed in 0..3 {
        for cut in [Cut::Request, Cut::Answer] {
            for (outage, survives) in [(budget - ms(100), true), (budget + 2 * k + ms(100), false)]
            {
                let what = format!("seed {seed}, {cut:?} cut for {outage:?}");
                let net = SimNetwork::new(
                    seed,
                    LinkConfig::new()
                        .latency(ms(1))
                        .jitter(Duration::from_micros(500)),
                );
                let (a, b) = pair(&net, Config::new("A", "B"), Config::new("B", "")).await;
                let (ia, ib) = net.with(|n| (n.lookup("A").unwrap(), n.lookup("B").unwrap()));
                // The fault: cut both directions now, heal after `outage`.
                let fault = {
                    let net = net.clone();
                    move || {
                        net.with(|n| n.partition(ia, ib));
                        let net = net.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(outage).await;
                            net.with(|n| n.heal(ia, ib));
                        });
                    }
                };
                let fault_b = fault.clone();
                let echo = tokio::spawn(async move {
                    let mut first = true;
                    loop {
                        match b.recv().await {
                            Ok(Some(m)) => {
                                if std::mem::take(&mut first) && cut == Cut::Answer {
                                    fault_b();
                                }
                                b.send(m).await?;
                            }
                            Ok(None) => return Ok(tokio::time::Instant::now()),
                            Err(e) => return Err(e),
                        }
                    }
                });
                let request: Bytes = (0..200_000u64)
                    .map(swp::testkit::pattern_byte)
                    .collect::<Vec<u8>>()
                    .into();
                let t0 = tokio::time::Instant::now();
                let bound = 3 * budget;
                a.send(request.clone()).await.unwrap();
                if cut == Cut::Request {
                    fault();
                }
                let got = tokio::time::timeout(bound, a.recv())
                    .await
                    .unwrap_or_else(|_| panic!("{what}: A's reader waited past {bound:?}"));
                if survives {
                    let got = got
                        .unwrap_or_else(|e| panic!("{what}: A failed: {e}"))
                        .unwrap();
                    assert!(got == request, "{what}: the answer differs");
                    // The session is still whole: one more exchange.
                    a.send(Bytes::from_static(b"after")).await.unwrap();
                    let again = tokio::time::timeout(bound, a.recv()).await;
                    assert_eq!(
                        again.unwrap().unwrap().unwrap(),
                        Bytes::from_static(b"after"),
                        "{what}"
                    );
                    tokio::time::timeout(bound, a.close())
                        .await
                        .unwrap()
                        .unwrap();
                    let ended = tokio::time::timeout(bound, echo).await.unwrap().unwrap();
                    assert!(ended.is_ok(), "{what}: B failed: {:?}", ended.err());
                } else {
                    let told = |side: &str, r: Result<(), SessionError>| {
                        let e = r
                            .err()
                            .unwrap_or_else(|| panic!("{what}: {side} succeeded"));
                        assert!(
                            matches!(
                                e,
                                SessionError::Closed(
                                    CloseReason::PeerUnreachable { .. } | CloseReason::Reset { .. }
                                )
                            ),
                            "{what}: {side} was told {e:?}"
                        );
                        e
                    };
                    let ea = told("A", got.map(|_| ()));
                    let eb = tokio::time::timeout(bound, echo)
                        .await
                        .unwrap_or_else(|_| panic!("{what}: B never learnt"))
                        .unwrap()
                        .map(|_| ());
                    let eb = told("B", eb);
                    // B + K + A after each last heard from the other,
                    // which is at most a few link latencies after the cut.
                    let took = t0.elapsed();
                    assert!(
                        took <= budget + 2 * k + ms(50),
                        "{what}: {took:?} before both knew ({ea}; {eb})"
                    );
                    println!("{what}: both knew after {took:?}: A: {ea}; B: {eb}");
                }
            }
        }
    }
}

/// Copies every packet handed to the network, for a hostile observer,
/// except the observer's own (sent from inbox `.1`).
struct Tap(Arc<std::sync::Mutex<Vec<Bytes>>>, swp::simnet::InboxId);

impl swp::simnet::Monitor for Tap {
    fn on_send(&mut self, env: &swp::simnet::Envelope, _: Duration) {
        if env.from != self.1 {
            self.0.lock().unwrap().push(env.payload.clone());
        }
    }
}

/// A third party that sees every packet (as anyone allowed to subscribe to
/// the inboxes' subjects would) floods both inboxes while both readers wait
/// for answers and take the packets themselves: garbage, real packets with
/// a bit flipped, real packets with a wrong nonce, acks "from the peer"
/// with the right nonces of data never sent, data far beyond the window,
/// and replays of old packets; in bursts of sizes around what one read
/// takes (`READER_PULLS` x `BATCH`: 1024 packets) and far beyond. Every
/// answer is exact and each round within a bound of virtual time; every
/// forgery is counted as dropped (none believed), by its counter; both
/// sides close normally. `SWP_SESSION_SEEDS` runs more seeds,
/// `SWP_SESSION_SEED` one.
#[tokio::test(start_paused = true)]
async fn a_flood_of_forgeries_under_waiting_readers_is_dropped_counted_and_stalls_nothing() {
    use common::forge::Forger;
    use rand::{Rng, SeedableRng};
    let seeds = session_seeds(6);
    let dog = common::Watchdog::start(Duration::from_secs(120), "a_flood");
    for seed in seeds {
        let repro =
            format!("reproduce: SWP_SESSION_SEED={seed} cargo test --test session_sim a_flood");
        dog.pet(format!("a_flood seed {seed}: {repro}"));
        let net = SimNetwork::new(
            seed,
            LinkConfig::new()
                .latency(Duration::from_millis(1))
                .jitter(Duration::from_micros(300)),
        );
        let x = net.transport("X", 16);
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        net.with(|n| n.set_monitor(Box::new(Tap(seen.clone(), x.inbox()))));
        let payload = 4096;
        let cfg = |l: &str, r: &str| Config::new(l, r).max_payload(payload);
        let (mut a, b) = pair(&net, cfg("A", "B"), cfg("B", "")).await;
        let stop = Arc::new(AtomicU64::new(0));
        let attacker = {
            let (stop, seen) = (stop.clone(), seen.clone());
            tokio::spawn(async move {
                let mut forger = Forger::new(seed ^ 0xA77AC);
                let bursts = [1usize, 255, 256, 257, 1023, 1024, 1025, 3000];
                while stop.load(Ordering::SeqCst) == 0 {
                    for raw in std::mem::take(&mut *seen.lock().unwrap()) {
                        forger.saw(&raw);
                    }
                    let name = ["A", "B"][forger.rng().gen_range(0..2usize)];
                    let n = bursts[forger.rng().gen_range(0..bursts.len())];
                    for _ in 0..n {
                        let Some(bytes) = forger.forge(name) else {
                            break;
                        };
                        x.publish(name, bytes).await.unwrap();
                    }
                    let pause = forger.rng().gen_range(100..3000);
                    tokio::time::sleep(Duration::from_micros(pause)).await;
                }
                ["A", "B"].map(|n| forger.sent.get(n).copied().unwrap_or_default())
            })
        };
        let echo = tokio::spawn(async move {
            while let Ok(Some(m)) = b.recv().await {
                if b.send(m).await.is_err() {
                    break;
                }
            }
            b
        });
        let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
        let exchange = |round: usize, k: usize, rng: &mut rand::rngs::SmallRng| {
            let sent: Vec<Bytes> = (0..k)
                .map(|i| {
                    let n = [0, 1, payload - 1, payload, payload + 1, 5 * payload + 3]
                        [rng.gen_range(0..6)];
                    (0..n)
                        .map(|j| (seed as usize + round * 31 + i * 7 + j) as u8)
                        .collect::<Vec<u8>>()
                        .into()
                })
                .collect();
            let a = &a;
            let repro = &repro;
            async move {
                let work = async {
                    for m in &sent {
                        a.send(m.clone()).await.unwrap();
                    }
                    for (i, m) in sent.iter().enumerate() {
                        let got = a.recv().await.unwrap().unwrap();
                        assert!(got == *m, "seed {seed} round {round} answer {i}: {repro}");
                    }
                };
                tokio::time::timeout(Duration::from_secs(30), work)
                    .await
                    .unwrap_or_else(|_| panic!("seed {seed} round {round} stalled: {repro}"));
            }
        };
        for round in 0..30 {
            let k = rng.gen_range(1..=4);
            exchange(round, k, &mut rng).await;
        }
        stop.store(1, Ordering::SeqCst);
        let sent = attacker.await.unwrap();
        // Let what is in flight land (the simulator has no event for it:
        // polled each virtual ms, within a bound), then one more exchange:
        // each inbox is in order, so by its answer both sides have handled
        // every forgery.
        let mut waited = 0;
        while net.with(|n| n.in_flight()) > 0 {
            waited += 1;
            assert!(
                waited < 1000,
                "seed {seed}: packets in flight for 1 s: {repro}"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        exchange(30, 1, &mut rng).await;
        assert!(
            sent[0].dropped() > 1000 && sent[1].dropped() > 1000,
            "seed {seed}: the flood was too small to prove much: {sent:?}"
        );
        a.shutdown().await.unwrap();
        let b = tokio::time::timeout(Duration::from_secs(30), echo)
            .await
            .unwrap_or_else(|_| panic!("seed {seed}: the echo never ended: {repro}"))
            .unwrap();
        for (side, s, f) in [("A", &a, &sent[0]), ("B", &b, &sent[1])] {
            let d = s.stats().protocol.dropped;
            let what = format!("seed {seed} {side}: sent {f:?}, dropped {d:?}: {repro}");
            assert!(d.invalid >= f.invalid, "{what}");
            assert!(d.foreign >= f.foreign, "{what}");
            assert!(d.impossible + d.beyond_window >= f.impossible, "{what}");
            assert!(d.total() >= f.dropped(), "{what}");
        }
        // Both ends close normally (Fin both ways, acknowledged).
        let (ca, cb) = tokio::time::timeout(
            Duration::from_secs(30),
            futures::future::join(a.close(), b.close()),
        )
        .await
        .unwrap_or_else(|_| panic!("seed {seed}: the close never ended: {repro}"));
        assert!(
            ca.is_ok() && cb.is_ok(),
            "seed {seed}: {ca:?} {cb:?}: {repro}"
        );
    }
}

/// A transport that reports a small `max_payload` and counts what was
/// published above it (SimNet itself carries anything).
struct Limited {
    inner: Arc<dyn Transport>,
    max: usize,
    over: AtomicU64,
    largest: AtomicU64,
}

impl Transport for Limited {
    fn subscribe(&self, inbox: &str) -> BoxFuture<'_, Result<Incoming, TransportError>> {
        self.inner.subscribe(inbox)
    }
    fn publish(&self, subject: &str, payload: Bytes) -> BoxFuture<'_, Result<(), TransportError>> {
        if payload.len() > self.max {
            self.over.fetch_add(1, Ordering::Relaxed);
        }
        self.largest
            .fetch_max(payload.len() as u64, Ordering::Relaxed);
        self.inner.publish(subject, payload)
    }
    fn max_payload(&self) -> usize {
        self.max
    }
    fn capacity(&self) -> Capacity {
        self.inner.capacity()
    }
}

/// The least packet ceiling a session accepts, at its edge: a transport
/// whose max_payload leaves 63 bytes beside the largest header is refused
/// at once, saying what to raise; one that leaves exactly 64 carries a
/// stream and messages of every size around that ceiling exactly, and no
/// packet it publishes exceeds its max_payload.
#[tokio::test(start_paused = true)]
async fn a_packet_ceiling_of_exactly_64_bytes_works_and_63_is_refused() {
    let limited = |net: &SimNetwork, max: usize| {
        Arc::new(Limited {
            inner: net.transport("A", 4096),
            max,
            over: AtomicU64::new(0),
            largest: AtomicU64::new(0),
        })
    };
    // The largest header, as the refusal reports it.
    let net = lossy(26, 0.0);
    let err = Session::connect(limited(&net, 100), Config::new("A", "B"))
        .await
        .unwrap_err()
        .to_string();
    let header: usize = err
        .split("header takes up to ")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no header size in: {err}"));
    let net = lossy(27, 0.0);
    let err = Session::connect(limited(&net, header + 63), Config::new("A", "B"))
        .await
        .unwrap_err();
    assert!(matches!(err, SessionError::Config(_)), "{err:?}");
    assert!(err.to_string().contains("raise max_payload"), "{err}");

    let net = lossy(28, 0.01);
    let ta = limited(&net, header + 64);
    let listener = Session::listen(net.transport("B", 4096), Config::new("B", ""))
        .await
        .unwrap();
    // Bounded: a refused connect must not leave the accept waiting.
    let (a, b) = tokio::time::timeout(
        Duration::from_secs(30),
        futures::future::join(
            Session::connect(ta.clone(), Config::new("A", "B")),
            listener.accept(),
        ),
    )
    .await
    .expect("connected within 30 s");
    let a = a.expect("a ceiling of exactly 64 is taken");
    let b = b.unwrap();
    assert_eq!(a.max_payload(), 64, "the ceiling is exactly 64");
    let sizes = [0usize, 1, 63, 64, 65, 127, 128, 129, 1000];
    let echo = tokio::spawn(async move {
        while let Ok(Some(m)) = b.recv().await {
            if b.send(m).await.is_err() {
                break;
            }
        }
    });
    for (i, &n) in sizes.iter().enumerate() {
        let m: Bytes = (0..n)
            .map(|j| (i * 7 + j) as u8)
            .collect::<Vec<u8>>()
            .into();
        a.send(m.clone()).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(30), a.recv())
            .await
            .expect("an answer within 30 s")
            .unwrap()
            .unwrap();
        assert!(got == m, "message of {n} bytes");
    }
    drop(a);
    echo.await.unwrap();
    assert_eq!(
        ta.over.load(Ordering::Relaxed),
        0,
        "nothing above max_payload"
    );
    // Full packets went out: 64 bytes of data and a header (the largest
    // header is a worst case, every SACK range at its widest).
    let largest = ta.largest.load(Ordering::Relaxed) as usize;
    assert!(
        largest > 64 && largest <= header + 64,
        "largest packet {largest}"
    );
}
