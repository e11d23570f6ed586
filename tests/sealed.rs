//! Sealed sessions over the simulator (docs/PROTOCOL.md §14): the
//! handshake under loss and duplication, key and secret mismatches, plain
//! and sealed sides meeting, and a hostile third party that sees every
//! packet and injects garbage, replays and forgeries. Deterministic: the
//! handshake's randomness is fixed, and every failure names its seed.

use bytes::Bytes;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use swp::proto::seal::{Keypair, Seal};
use swp::proto::{CloseReason, Config, Connection, Kind, Packet, ResetCode, State, codec, flags};
use swp::simnet::{LinkConfig, Rule, Verdict};
use swp::testkit::{Pair, Side, TransferSpec, pattern_byte, transfer};

fn keys(seed: u8) -> Keypair {
    Keypair::from_secret([seed; 32])
}

fn det(s: Seal, seed: u8) -> Seal {
    s.deterministic_for_tests([seed; 32])
}

fn cfg(local: &str, remote: &str, seal: Option<Seal>) -> Config {
    let c = Config::new(local, remote).connect(Duration::from_millis(400), 5);
    match seal {
        Some(s) => c.seal(s),
        None => c,
    }
}

/// Client A with `ca`, listener B with `cb`.
fn pair(seed: u64, link: LinkConfig, ca: Option<Seal>, cb: Option<Seal>) -> Pair {
    Pair::new(seed, link, cfg("A", "B", ca), cfg("B", "", cb))
}

fn psk_pair(seed: u64, link: LinkConfig) -> Pair {
    pair(
        seed,
        link,
        Some(det(Seal::psk([42; 32]), 1)),
        Some(det(Seal::psk([42; 32]), 2)),
    )
}

fn keys_pair(seed: u64, link: LinkConfig) -> Pair {
    let (a, b) = (keys(1), keys(2));
    pair(
        seed,
        link,
        Some(det(Seal::keys(a.clone()).peer(*b.public()), 1)),
        Some(det(Seal::keys(b).allow([*a.public()]), 2)),
    )
}

#[test]
fn every_seal_kind_moves_a_stream_byte_exact_over_a_lossy_link() {
    let link = LinkConfig::new()
        .latency(Duration::from_millis(5))
        .loss(0.05)
        .duplicate(0.05)
        .reorder(0.05);
    for seed in 1..=6u64 {
        let mut p = if seed % 2 == 0 {
            psk_pair(seed, link.clone())
        } else {
            keys_pair(seed, link.clone())
        };
        let r = transfer(&mut p, &TransferSpec::new(2 << 20)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.bytes, 2 << 20, "seed {seed}");
        assert!(p.a.is_sealed() && p.b.is_sealed());
        if seed % 2 == 1 {
            assert_eq!(p.a.peer_public_key(), Some(keys(2).public()), "seed {seed}");
            assert_eq!(p.b.peer_public_key(), Some(keys(1).public()), "seed {seed}");
        }
        for side in [Side::A, Side::B] {
            let d = p.conn(side).stats().dropped;
            // Loss and duplication only: a duplicate is a replay.
            assert_eq!(d.unsealed, 0, "seed {seed} {side:?}: {d:?}");
        }
        assert_eq!(
            p.a.close_reason(),
            Some(&CloseReason::Normal),
            "seed {seed}"
        );
    }
}

/// Copies every packet handed to the network (before loss) into a list.
struct Capture(Arc<Mutex<Vec<Bytes>>>);

impl swp::simnet::Monitor for Capture {
    fn on_send(&mut self, env: &swp::simnet::Envelope, _: Duration) {
        self.0.lock().unwrap().push(env.payload.clone());
    }
}

fn capture(p: &mut Pair) -> Arc<Mutex<Vec<Bytes>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    p.net.set_monitor(Box::new(Capture(seen.clone())));
    seen
}

#[test]
fn nothing_on_the_wire_shows_the_data_and_a_plain_session_would() {
    let marker: &[u8] = b"SECRET-MARKER-0123456789";
    for sealed in [true, false] {
        let mut p = if sealed {
            psk_pair(7, LinkConfig::new())
        } else {
            pair(7, LinkConfig::new(), None, None)
        };
        let seen = capture(&mut p);
        assert!(p.run_until(Duration::from_secs(5), |p| p.a.is_established()));
        let msg: Vec<u8> = marker.iter().copied().cycle().take(100_000).collect();
        p.a.send_message(Bytes::from(msg.clone())).unwrap();
        let mut got = Vec::new();
        assert!(p.run_until(Duration::from_secs(5), |p| {
            while let Ok(swp::proto::Recv::Data(m)) = p.b.recv_message() {
                got.push(m);
            }
            !got.is_empty()
        }));
        assert_eq!(got, vec![Bytes::from(msg)]);
        let seen = seen.lock().unwrap();
        let leaks = seen
            .iter()
            .filter(|f| f.windows(marker.len()).any(|w| w == marker))
            .count();
        if sealed {
            assert_eq!(leaks, 0, "{} packets captured", seen.len());
            // After the handshake, every packet is a sealed frame.
            let plain_after_handshake = seen
                .iter()
                .filter(|f| !swp::proto::seal::is_sealed_frame(f))
                .filter_map(|f| codec::decode(f).ok())
                .filter(|q| !matches!(q.kind, Kind::Syn | Kind::SynAck))
                .count();
            assert_eq!(plain_after_handshake, 0);
        } else {
            assert!(leaks > 0, "the capture must be able to see a marker");
        }
    }
}

#[test]
fn the_handshake_survives_losing_or_duplicating_each_of_its_packets() {
    // Lose or duplicate the k-th packet of the connect, for each k.
    for k in 0..4usize {
        for dup in [false, true] {
            let mut p = psk_pair(11, LinkConfig::new().latency(Duration::from_millis(2)));
            let mut n = 0usize;
            let verdict = if dup {
                Verdict::Duplicate
            } else {
                Verdict::Drop
            };
            p.net
                .add_rule(Rule::new("the k-th packet", verdict, move |_| {
                    n += 1;
                    n == k + 1
                }));
            p.run_until(Duration::from_secs(10), |p| {
                p.a.is_established() && p.b.is_established()
            });
            assert!(
                p.a.is_established() && p.b.is_established(),
                "packet {k} {}: A {:?} B {:?}",
                if dup { "duplicated" } else { "lost" },
                p.a.state(),
                p.b.state()
            );
            let r = transfer(&mut p, &TransferSpec::new(300_000)).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(r.bytes, 300_000);
        }
    }
}

fn connect_outcome(mut p: Pair) -> (Pair, Option<CloseReason>) {
    p.run_until(Duration::from_secs(30), |p| {
        p.a.is_closed() || p.a.is_established()
    });
    let r = p.a.close_reason().cloned();
    (p, r)
}

#[test]
fn mismatched_secrets_and_keys_fail_clearly_within_the_budget_and_the_listener_waits_on() {
    let (a, b, other) = (keys(1), keys(2), keys(3));
    let cases: Vec<(&str, Seal, Seal)> = vec![
        ("wrong psk", Seal::psk([1; 32]), Seal::psk([2; 32])),
        (
            "wrong pin",
            Seal::keys(a.clone()).peer(*other.public()),
            Seal::keys(b.clone()),
        ),
        (
            "not allowed",
            Seal::keys(a.clone()).peer(*b.public()),
            Seal::keys(b.clone()).allow([*other.public()]),
        ),
        (
            "keys vs psk",
            Seal::keys(a.clone()).peer(*b.public()),
            Seal::psk([1; 32]),
        ),
    ];
    for (name, ca, cb) in cases {
        let p = pair(
            5,
            LinkConfig::new().latency(Duration::from_millis(1)),
            Some(det(ca, 1)),
            Some(det(cb, 2)),
        );
        let t0 = p.now();
        let (p, r) = connect_outcome(p);
        let Some(CloseReason::SealFailed { message }) = r else {
            panic!("{name}: {r:?}");
        };
        assert!(
            message.contains("unauthenticated refusal")
                && message.contains("sealed handshake failed at the listener"),
            "{name}: {message}"
        );
        // 0.4 s doubling up to the connect timeout, five attempts: 2 s.
        assert!(
            p.now() - t0 <= Duration::from_millis(2100),
            "{name}: {:?}",
            p.now() - t0
        );
        assert_eq!(
            p.b.state(),
            State::Listen,
            "{name}: the listener still waits"
        );
        assert!(p.b.stats().dropped.forged >= 1, "{name}");
    }
}

#[test]
fn a_listener_that_refused_a_wrong_client_then_accepts_the_right_one() {
    let t0 = swp::testkit::epoch();
    let wrong =
        Connection::connect(cfg("A", "B", Some(det(Seal::psk([9; 32]), 1))), t0, 1).unwrap();
    let b = Connection::listen(cfg("B", "", Some(det(Seal::psk([8; 32]), 2))), t0, 2).unwrap();
    let mut p = Pair::from_parts(3, LinkConfig::new(), t0, wrong, b, 1024);
    assert!(p.run_until(Duration::from_secs(5), |p| p.a.is_closed()));
    assert_eq!(p.b.state(), State::Listen);
    // The right client, on the same inbox as the wrong one.
    let now = p.now();
    p.a = Connection::connect(cfg("A", "B", Some(det(Seal::psk([8; 32]), 3))), now, 4).unwrap();
    let r = transfer(&mut p, &TransferSpec::new(100_000)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.bytes, 100_000);
}

#[test]
fn plain_and_sealed_sides_never_talk_and_say_why() {
    // A plain client at a sealed listener is told at once.
    let (p, r) = connect_outcome(pair(
        1,
        LinkConfig::new(),
        None,
        Some(det(Seal::psk([1; 32]), 2)),
    ));
    match r {
        Some(CloseReason::Reset {
            code: ResetCode::Sealing,
            message,
        }) => {
            assert!(message.contains("only sealed sessions"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert!(
        p.elapsed() < Duration::from_millis(100),
        "{:?}",
        p.elapsed()
    );
    assert_eq!(p.b.state(), State::Listen);
    // A sealed client at a plain listener never falls back to plain: it
    // reports the (unauthenticated) refusal when its budget ends.
    let (p, r) = connect_outcome(pair(
        1,
        LinkConfig::new(),
        Some(det(Seal::psk([1; 32]), 1)),
        None,
    ));
    match r {
        Some(CloseReason::SealFailed { message }) => {
            assert!(message.contains("does not seal sessions"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(p.b.state(), State::Listen);
    assert_eq!(p.a.stats().data.packets_sent, 0);
}

#[test]
fn a_sealed_seal_needs_a_pin_and_refuses_the_go_format_and_huge_packets() {
    let t0 = swp::testkit::epoch();
    let e = Connection::connect(cfg("A", "B", Some(Seal::keys(keys(1)))), t0, 1).unwrap_err();
    assert!(e.to_string().contains("pin the peer's public key"), "{e}");
    let go = Config::new("A", "B")
        .seal(Seal::psk([1; 32]))
        .wire_format(swp::proto::WireFormat::Go);
    assert!(
        go.validate()
            .unwrap_err()
            .to_string()
            .contains("no sealed sessions")
    );
    let big = Config::new("A", "B")
        .seal(Seal::psk([1; 32]))
        .max_payload(100_000)
        .window(64, 64 << 20);
    assert!(big.validate().unwrap_err().to_string().contains("63 KiB"));
    // The edge: 63 KiB is allowed (and is the default), one byte more is not.
    let edge = |n: usize| {
        Config::new("A", "B")
            .seal(Seal::psk([1; 32]))
            .max_payload(n)
            .validate()
    };
    assert!(edge(63 * 1024).is_ok());
    assert!(edge(63 * 1024 + 1).is_err());
    // A listener may take anyone with a keypair: no pin needed.
    let anyone = det(Seal::keys(keys(2)), 2);
    assert!(Connection::listen(cfg("B", "", Some(anyone)), t0, 2).is_ok());
}

/// A third party that sees every packet: it replays them, flips bits,
/// injects garbage, and forges plain packets with the right inboxes and
/// nonces (data at the next sequence numbers, acks of everything, huge
/// windows, Fin, Reset).
fn attack(p: &mut Pair, seen: &[Bytes], rng: &mut u64, stats: &mut u64) {
    let mut next = || {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        *rng
    };
    let (ia, ib) = (p.inbox(Side::A), p.inbox(Side::B));
    let (na, nb) = (p.a.local_nonce().to_string(), p.b.local_nonce().to_string());
    for _ in 0..16 {
        let to_b = next() % 2 == 0;
        let (from, to) = if to_b { (ia, ib) } else { (ib, ia) };
        let frame = match next() % 5 {
            0 if !seen.is_empty() => seen[(next() as usize) % seen.len()].clone(),
            1 if !seen.is_empty() => {
                let mut f = seen[(next() as usize) % seen.len()].to_vec();
                let i = (next() as usize) % f.len();
                f[i] ^= 1 << (next() % 8);
                Bytes::from(f)
            }
            2 => Bytes::from(
                (0..(next() % 300) as usize)
                    .map(|_| next() as u8)
                    .collect::<Vec<_>>(),
            ),
            _ => {
                let kind = [
                    Kind::Data,
                    Kind::Ack,
                    Kind::Fin,
                    Kind::Reset,
                    Kind::KeepAlive,
                    Kind::FinAck,
                ][(next() % 6) as usize];
                let mut q = Packet::new(kind);
                let (f, d, fnonce, dnonce) = if to_b {
                    ("A", "B", &na, &nb)
                } else {
                    ("B", "A", &nb, &na)
                };
                q.from = f.into();
                q.dest = d.into();
                q.from_nonce = fnonce.as_str().into();
                q.dest_nonce = dnonce.as_str().into();
                q.seq = next() % 64;
                q.ack = next() % 64;
                q.wnd_seq = u64::MAX / 2;
                q.wnd_bytes = u64::MAX / 2;
                q.cumul_bytes = next() % (1 << 20);
                q.flags = flags::EOM;
                if kind == Kind::Data {
                    q.data = Bytes::from(vec![0xEEu8; 1000]);
                }
                codec::encode(&q)
            }
        };
        p.net.send(from, to, frame);
        *stats += 1;
    }
}

/// Streams 3 MiB from A to B under [`attack`]; `Err` says what broke.
fn hostile_run(
    mut p: Pair,
    seed: u64,
) -> Result<
    (
        u64,
        swp::proto::stats::DropStats,
        swp::proto::stats::DropStats,
    ),
    String,
> {
    let total: u64 = 3 << 20;
    let seen = capture(&mut p);
    let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let (mut written, mut read, mut injected) = (0u64, 0u64, 0u64);
    let mut buf = vec![0u8; 1 << 16];
    let mut closed = false;
    let end = p.now() + Duration::from_secs(120);
    while p.now() < end && !(p.a.is_closed() && p.b.is_closed()) {
        if p.a.is_established() && written < total {
            let chunk: Vec<u8> = (written..(written + 65536).min(total))
                .map(pattern_byte)
                .collect();
            written += p.a.write(&chunk).unwrap_or(0) as u64;
        }
        if written == total && !closed {
            p.a.close(p.now());
            closed = true;
        }
        loop {
            match p.b.read(&mut buf) {
                Ok(swp::proto::Recv::Data(n)) => {
                    for (i, &x) in buf[..n].iter().enumerate() {
                        if x != pattern_byte(read + i as u64) {
                            return Err(format!("seed {seed}: wrong byte at {}", read + i as u64));
                        }
                    }
                    read += n as u64;
                }
                Ok(swp::proto::Recv::Finished) => {
                    if read != total {
                        return Err(format!("seed {seed}: early end of stream at {read}"));
                    }
                    p.b.close(p.now());
                    break;
                }
                _ => break,
            }
        }
        let sample: Vec<Bytes> = {
            let mut s = seen.lock().unwrap();
            if s.len() > 4096 {
                s.drain(..2048);
            }
            s.iter().rev().take(64).cloned().collect()
        };
        attack(&mut p, &sample, &mut rng, &mut injected);
        p.step_until(end);
    }
    let normal = Some(&CloseReason::Normal);
    if read != total || p.a.close_reason() != normal || p.b.close_reason() != normal {
        return Err(format!(
            "seed {seed}: read {read} of {total}; A {:?} B {:?}",
            p.a.close_reason(),
            p.b.close_reason()
        ));
    }
    Ok((injected, p.a.stats().dropped, p.b.stats().dropped))
}

/// The link the hostile runs use: 3 ms, 1% loss.
fn hostile_link() -> LinkConfig {
    LinkConfig::new()
        .latency(Duration::from_millis(3))
        .loss(0.01)
}

#[test]
fn a_hostile_third_party_cannot_change_stop_or_read_a_sealed_stream() {
    for seed in 1..=8u64 {
        let p = if seed % 2 == 0 {
            psk_pair(seed, hostile_link())
        } else {
            keys_pair(seed, hostile_link())
        };
        let (injected, da, db) = hostile_run(p, seed).unwrap_or_else(|e| panic!("{e}"));
        let dropped = da.forged + da.unsealed + da.invalid + db.forged + db.unsealed + db.invalid;
        assert!(
            injected > 500 && dropped >= injected * 3 / 4,
            "seed {seed}: injected {injected}, dropped {da:?} {db:?}"
        );
        assert_eq!(
            da.impossible + db.impossible,
            0,
            "forgeries never reach the protocol's checks"
        );
    }
}

#[test]
fn the_same_third_party_breaks_plain_sessions() {
    // The attacker is real: without a seal its forged Resets, data and acks
    // end or corrupt every one of these runs.
    let broken = (1..=8u64)
        .filter(|&seed| hostile_run(pair(seed, hostile_link(), None, None), seed).is_err())
        .count();
    assert_eq!(broken, 8);
}

#[test]
fn random_sealed_looking_frames_are_counted_and_dropped_never_believed() {
    let mut p = keys_pair(21, LinkConfig::new());
    assert!(p.connect(Duration::from_secs(5)));
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let before = p.b.stats();
    let now = p.now();
    for i in 0..20_000u64 {
        let len = match i % 4 {
            0 => (next() % 12) as usize, // around the header's length
            1 => 27 + (next() % 64) as usize,
            _ => (next() % 2000) as usize,
        };
        let mut f: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if f.len() >= 3 {
            f[..3].copy_from_slice(&[0x53, 0x58, 1]);
        }
        p.b.handle_packet(now, Bytes::from(f));
    }
    let after = p.b.stats();
    let dropped = after.dropped.total() - before.dropped.total();
    assert_eq!(dropped, 20_000, "{:?}", after.dropped);
    assert_eq!(after.wire.packets_received, before.wire.packets_received);
    assert!(p.b.is_established());
    let r = transfer(&mut p, &TransferSpec::new(200_000)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.bytes, 200_000);
}
