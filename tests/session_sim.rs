//! The async Session and its driver over SimNet, with tokio's paused clock:
//! the same code paths as over NATS, under loss, in virtual time.

mod common;

use bytes::Bytes;
use common::{PatternChecker, PatternReader};
use std::time::Duration;
use swp::proto::{CloseReason, Config, Kind};
use swp::simnet::{LinkConfig, Rule, Verdict};
use swp::transport::SimNetwork;
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

async fn pair(net: &SimNetwork, a: Config, b: Config) -> (Session, Session) {
    net.session_pair(a, b).await.unwrap()
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
            sa.protocol.retransmits_fast + sa.protocol.retransmits_timeout > 0,
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
    assert!(
        took <= Duration::from_millis(1000) && took >= Duration::from_millis(800),
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
