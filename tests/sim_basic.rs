//! First end-to-end checks of the engine over SimNet.
use std::time::Duration;
use swp::simnet::LinkConfig;
use swp::testkit::{Pair, TransferSpec, transfer};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn perfect_link_transfer() {
    let mut p = Pair::new(
        1,
        LinkConfig::new().latency(ms(1)),
        Pair::default_config("A", "B"),
        Pair::default_config("B", ""),
    );
    let r = transfer(&mut p, &TransferSpec::new(4 << 20)).unwrap();
    assert_eq!(r.bytes, 4 << 20);
    assert_eq!(p.window_violations(), 0);
    println!("{r:?} {:?}", p.a.stats());
}

#[test]
fn lossy_link_transfer() {
    let mut p = Pair::new(
        2,
        LinkConfig::new().latency(ms(1)).loss(0.2),
        Pair::default_config("A", "B"),
        Pair::default_config("B", ""),
    );
    let r = transfer(&mut p, &TransferSpec::new(4 << 20)).unwrap();
    assert_eq!(r.bytes, 4 << 20);
    assert_eq!(p.window_violations(), 0);
    println!("{r:?} {:?}", p.a.stats());
}

/// A driver may be unable to send for a while (its transport takes no
/// packets), so it calls `handle_timeout` without `poll_transmit`. Every
/// such call must move the next deadline past `now`: a deadline that stays
/// in the past makes an async driver spin. Whatever is due waits for the
/// next `poll_transmit`, and the dead-peer budget still ends the session.
#[test]
fn timers_move_on_while_nothing_can_be_sent() {
    for (seed, ack_pending, closing) in [
        (1, false, false),
        (2, true, false),
        (3, false, true),
        (4, true, true),
    ] {
        let mut p = Pair::new(
            seed,
            LinkConfig::new().latency(ms(2)),
            Pair::default_config("A", "B").keepalive(ms(500), 20),
            Pair::default_config("B", "").keepalive(ms(500), 20),
        );
        assert!(p.connect(Duration::from_secs(5)), "seed {seed}");
        // Data in flight and queued, and (for some seeds) an ack A owes B.
        p.a.write(&vec![7u8; 4 << 20]).unwrap();
        p.step_until(p.now() + ms(3));
        if ack_pending {
            p.b.write(b"owed an ack").unwrap();
            p.step_until(p.now() + ms(5));
        }
        let now = p.now();
        let a = p.conn(swp::testkit::Side::A);
        if closing {
            a.close(now); // a Fin to send, behind the data
        }
        let mut calls = 0;
        while let Some(t) = a.poll_timeout() {
            a.handle_timeout(t);
            calls += 1;
            if let Some(next) = a.poll_timeout() {
                assert!(next > t, "seed {seed}: deadline {next:?} not after {t:?}");
            }
            assert!(calls < 10_000, "seed {seed}: timers never settle");
        }
        let reason = a.close_reason().cloned();
        assert!(
            matches!(
                reason,
                Some(
                    swp::proto::CloseReason::PeerUnreachable { .. }
                        | swp::proto::CloseReason::RetransmitLimit { .. }
                        | swp::proto::CloseReason::FinTimeout { .. }
                )
            ),
            "seed {seed}: {reason:?} after {calls} timer calls"
        );
        println!("seed {seed}: {reason:?} after {calls} timer calls");
    }
}
