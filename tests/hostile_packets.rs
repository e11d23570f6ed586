//! The engine never panics on well-formed but hostile packets: correct
//! nonces (so they pass the filters) with arbitrary kinds, sequence numbers,
//! acks, SACK ranges, window edges, offsets and payloads. Tests run with
//! overflow checks, so arithmetic on peer-supplied numbers is exercised too.

use bytes::Bytes;
use proptest::prelude::*;
use std::time::Duration;
use swp::proto::go::codec::{GoPacket, GoTime, encode_packet};
use swp::proto::packet::MAX_SACK_RANGES;
use swp::proto::{Config, Kind, Packet, WireFormat, codec, go::link as golink};
use swp::simnet::LinkConfig;
use swp::testkit::{Pair, Side};

fn arb_kind() -> impl Strategy<Value = Kind> {
    prop::sample::select(Kind::ALL.to_vec())
}

fn edge() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..64, Just(u64::MAX), Just(u64::MAX - 1), any::<u64>()]
}

prop_compose! {
    fn hostile()(kind in arb_kind(), flags in any::<u8>(), seq in edge(), retry in any::<u32>(),
                 ack in edge(), gaps in prop::collection::vec((1u64..50, 1u64..50), 0..MAX_SACK_RANGES),
                 ts in edge(), ts_echo in edge(), wnd_seq in edge(), wnd_bytes in edge(),
                 rtt in edge(), cumul in edge(), data in prop::collection::vec(any::<u8>(), 0..200),
                 batch in prop::option::of(prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..10)))
        -> Packet {
        let mut p = Packet::new(kind);
        p.flags = flags;
        p.seq = seq;
        p.retry = retry;
        p.ack = ack;
        let mut at = ack;
        for (gap, len) in gaps {
            let Some(s) = at.checked_add(gap) else { break };
            let Some(e) = s.checked_add(len) else { break };
            p.sack.push((s, e));
            at = e;
        }
        p.ts = ts;
        p.ts_echo = ts_echo;
        p.wnd_seq = wnd_seq;
        p.wnd_bytes = wnd_bytes;
        p.rtt_us = rtt % (1 << 40);
        p.rttvar_us = rtt % (1 << 30);
        p.rtt_samples = rtt;
        p.cumul_bytes = cumul;
        p.data = Bytes::from(data);
        if let Some(msgs) = batch {
            // A well-formed batch (random flags may also mark the random
            // payload above as one, which is then malformed).
            let mut b = bytes::BytesMut::new();
            for m in &msgs {
                swp::proto::batch::push(&mut b, m);
            }
            p.flags |= swp::proto::flags::BATCH;
            p.data = b.freeze();
        }
        p
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn hostile_packets_never_panic(pkts in prop::collection::vec((any::<bool>(), hostile()), 1..30), seed in any::<u64>()) {
        let mut pair = Pair::new(seed, LinkConfig::new().latency(Duration::from_millis(1)), Config::new("A", "B"), Config::new("B", ""));
        prop_assert!(pair.connect(Duration::from_secs(10)));
        pair.a.write(&[1u8; 5000]).unwrap();
        pair.run_until(Duration::from_millis(1), |_| false);
        let (na, nb) = (pair.a.local_nonce().to_string(), pair.b.local_nonce().to_string());
        let foreign_before = pair.a.stats().dropped.foreign + pair.b.stats().dropped.foreign;
        let seen_before = pair.a.stats().wire.packets_received + pair.b.stats().wire.packets_received
            + pair.a.stats().dropped.unexpected + pair.b.stats().dropped.unexpected;
        for (to_a, mut p) in pkts {
            // Address it correctly and give it the right nonces.
            let (from, dest, fnonce, dnonce) = if to_a { ("B", "A", &nb, &na) } else { ("A", "B", &na, &nb) };
            p.from = from.into();
            p.dest = dest.into();
            p.from_nonce = fnonce.as_str().into();
            p.dest_nonce = dnonce.as_str().into();
            let now = pair.now();
            let side = if to_a { Side::A } else { Side::B };
            pair.conn(side).handle_packet(now, codec::encode(&p));
            pair.run_until(Duration::from_millis(3), |_| false);
        }
        // They reached the engine (right inboxes and nonces), not the filters.
        let seen_after = pair.a.stats().wire.packets_received + pair.b.stats().wire.packets_received
            + pair.a.stats().dropped.unexpected + pair.b.stats().dropped.unexpected;
        prop_assert!(seen_after > seen_before);
        prop_assert_eq!(pair.a.stats().dropped.foreign + pair.b.stats().dropped.foreign, foreign_before);
        // Whatever state that left them in, they keep running without panics.
        pair.run_until(Duration::from_secs(30), |_| false);
        let _ = (pair.a.stats(), pair.b.stats(), pair.a.state(), pair.b.state());
    }
}

fn go_int() -> impl Strategy<Value = i64> {
    prop_oneof![
        -1000i64..1000,
        Just(i64::MAX),
        Just(i64::MIN),
        Just(-99),
        Just(-777),
        Just(-888),
        any::<i64>()
    ]
}

prop_compose! {
    fn hostile_go()(event in 0i64..15, seq in go_int(), retry in go_int(), ack in go_int(), ack_retry in go_int(),
                    msg_cap in go_int(), byte_cap in go_int(), rtt in go_int(), cumul in go_int(),
                    secs in go_int(), nanos in any::<i32>(), good_sum in any::<bool>(),
                    data in prop::collection::vec(any::<u8>(), 0..200)) -> GoPacket {
        let data = Bytes::from(data);
        GoPacket {
            tcp_event: event,
            seq_num: seq,
            seq_retry: retry,
            ack_num: ack,
            ack_retry,
            avail_reader_msg_cap: msg_cap,
            avail_reader_bytes_cap: byte_cap,
            from_rtt_est_nsec: rtt,
            from_rtt_sd_nsec: rtt,
            from_rtt_n: rtt,
            cumul_bytes_transmitted: cumul,
            data_send_tm: GoTime { secs, nanos },
            ack_reply_tm: GoTime { secs: secs.wrapping_neg(), nanos },
            blake2b_checksum: if good_sum { golink::checksum(&data) } else { Bytes::new() },
            data,
            ..GoPacket::default()
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    /// The same for sessions in Go's format, fed hostile Go packets.
    #[test]
    fn hostile_go_packets_never_panic(pkts in prop::collection::vec((any::<bool>(), hostile_go()), 1..30), seed in any::<u64>()) {
        let a = Config::new("A", "B").wire_format(WireFormat::Go);
        let mut pair = Pair::new(seed, LinkConfig::new().latency(Duration::from_millis(1)), a, Config::new("B", ""));
        prop_assert!(pair.connect(Duration::from_secs(10)));
        prop_assert_eq!(pair.b.wire_format(), WireFormat::Go);
        pair.a.write(&[1u8; 5000]).unwrap();
        pair.run_until(Duration::from_millis(1), |_| false);
        let (na, nb) = (pair.a.local_nonce().to_string(), pair.b.local_nonce().to_string());
        for (to_a, mut g) in pkts {
            let (from, dest, fnonce, dnonce) = if to_a { ("B", "A", &nb, &na) } else { ("A", "B", &na, &nb) };
            g.from = from.into();
            g.dest = dest.into();
            g.from_sess_nonce = fnonce.clone();
            g.dest_sess_nonce = dnonce.clone();
            let now = pair.now();
            let side = if to_a { Side::A } else { Side::B };
            pair.conn(side).handle_packet(now, Bytes::from(encode_packet(&g)));
            pair.run_until(Duration::from_millis(3), |_| false);
        }
        pair.run_until(Duration::from_secs(30), |_| false);
        let _ = (pair.a.stats(), pair.b.stats(), pair.a.state(), pair.b.state());
    }
}
