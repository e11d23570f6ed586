//! Message batching (docs/PROTOCOL.md §2.3): messages queued behind each
//! other travel several to a data packet, arrive whole and in order under
//! loss, duplication and reordering, are never sent to a peer that did not
//! announce it reads them, and malformed batches are counted and dropped.

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant};
use swp::proto::{Config, Connection, Kind, Packet, Recv, batch, codec, flags};
use swp::simnet::LinkConfig;
use swp::testkit::{Pair, deliver_messages, drain_messages};

/// Two engines wired by hand: every packet one side emits is decoded, shown
/// to `filter` (which may change or drop it), re-encoded and handed over.
struct Wire {
    a: Connection,
    b: Connection,
    now: Instant,
    /// Every packet A sent, as decoded before the filter.
    sent_by_a: Vec<Packet>,
}

impl Wire {
    fn new(cfg_a: Config, cfg_b: Config) -> Wire {
        let now = Instant::now();
        Wire {
            a: Connection::connect(cfg_a, now, 1).unwrap(),
            b: Connection::listen(cfg_b, now, 2).unwrap(),
            now,
            sent_by_a: vec![],
        }
    }

    /// A pair with default configurations, handshake done.
    fn established() -> Wire {
        let mut w = Wire::new(cfg("A", "B"), cfg("B", ""));
        w.pump(&mut pass);
        w
    }

    /// Moves packets both ways until neither side has anything to send.
    fn pump(&mut self, filter: &mut dyn FnMut(&mut Packet) -> bool) {
        for _ in 0..1000 {
            self.now += Duration::from_micros(100);
            let mut moved = false;
            while let Some(t) = self.a.poll_transmit(self.now) {
                moved = true;
                let mut p = codec::decode(&t.payload).unwrap();
                self.sent_by_a.push(p.clone());
                if filter(&mut p) {
                    self.b.handle_packet(self.now, codec::encode(&p));
                }
            }
            while let Some(t) = self.b.poll_transmit(self.now) {
                moved = true;
                let mut p = codec::decode(&t.payload).unwrap();
                if filter(&mut p) {
                    self.a.handle_packet(self.now, codec::encode(&p));
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the engines never went quiet");
    }

    /// Queues each message on A (nothing moves until [`pump`](Self::pump)).
    fn send_from_a(&mut self, msgs: &[Bytes]) {
        for m in msgs {
            self.a.send_message(m.clone()).unwrap();
        }
    }

    fn data_from_a(&self) -> Vec<&Packet> {
        self.sent_by_a
            .iter()
            .filter(|p| p.kind == Kind::Data)
            .collect()
    }
}

fn cfg(local: &str, remote: &str) -> Config {
    Config::new(local, remote)
}

fn msgs(n: usize) -> Vec<Bytes> {
    (0..n)
        .map(|i| Bytes::from(format!("message {i} {}", "x".repeat(i % 7))))
        .collect()
}

fn pass(_: &mut Packet) -> bool {
    true
}

#[test]
fn queued_messages_go_as_one_batch_and_arrive_whole() {
    let mut w = Wire::established();
    assert!(w.a.is_established() && w.b.is_established());
    let sent = msgs(10);
    w.send_from_a(&sent);
    w.a.send_message(Bytes::new()).unwrap();
    w.pump(&mut pass);
    let data = w.data_from_a();
    assert_eq!(data.len(), 1, "eleven queued messages, one packet");
    assert!(data[0].has(flags::BATCH) && data[0].has(flags::EOM));
    let total: u64 = sent.iter().map(|m| m.len() as u64).sum();
    assert_eq!(
        data[0].cumul_bytes, total,
        "offsets count message bytes only"
    );
    assert_eq!(batch::split(&data[0].data).unwrap().len(), 11);
    let mut expect = sent.clone();
    expect.push(Bytes::new());
    // The packet asked for an answer at once (the last of a burst); it is
    // acknowledged when B reads, so an answer B sends could carry the ack.
    assert!(!w.a.is_acked(w.a.bytes_written()), "acked before B read");
    assert_eq!(drain_messages(&mut w.b), expect);
    w.pump(&mut pass);
    assert!(w.a.is_acked(w.a.bytes_written()));
}

#[test]
fn bytes_in_flight_count_message_bytes_not_the_batch_framing() {
    let mut w = Wire::established();
    let sent = msgs(10);
    w.send_from_a(&sent);
    w.a.write(b"then a stream tail").unwrap();
    // Lose every data packet: both stay in flight.
    w.pump(&mut |p: &mut Packet| p.kind != Kind::Data);
    let data = w.data_from_a();
    assert_eq!(data.len(), 2);
    assert!(data[0].has(flags::BATCH) && !data[1].has(flags::BATCH));
    let s = w.a.stats();
    assert_eq!(s.window.in_flight_packets, 2);
    let total: u64 = sent.iter().map(|m| m.len() as u64).sum::<u64>() + 18;
    assert_eq!(
        s.window.in_flight_bytes, total,
        "the length prefixes are not stream bytes"
    );
    assert!(
        (data[0].data.len() as u64) > total - 18,
        "the batch is framed"
    );
}

#[test]
fn a_lone_message_is_not_batched_and_nothing_waits_for_company() {
    let mut w = Wire::established();
    w.a.send_message(Bytes::from_static(b"alone")).unwrap();
    w.pump(&mut pass);
    let data = w.data_from_a();
    assert_eq!(data.len(), 1);
    assert!(!data[0].has(flags::BATCH));
    assert_eq!(&data[0].data[..], b"alone");
    assert_eq!(drain_messages(&mut w.b), vec![Bytes::from_static(b"alone")]);
}

#[test]
fn a_batch_holds_one_window_slot_until_its_last_message_is_read() {
    let mut w = Wire::new(cfg("A", "B"), cfg("B", "").window(4, 1 << 20));
    w.pump(&mut pass);
    let sent = msgs(20);
    w.send_from_a(&sent);
    w.pump(&mut pass);
    assert_eq!(w.data_from_a().len(), 1);
    let total: u64 = sent.iter().map(|m| m.len() as u64).sum();
    assert_eq!(w.b.held(), (1, total));
    let edge = w.a.peer_window_edges().0;
    let mut read = 0;
    for m in &sent[..19] {
        assert_eq!(w.b.recv_message().unwrap(), Recv::Data(m.clone()));
        read += m.len() as u64;
        assert_eq!(w.b.held(), (1, total - read), "the packet is still held");
    }
    w.pump(&mut pass);
    assert_eq!(w.a.peer_window_edges().0, edge, "no slot freed yet");
    assert_eq!(w.b.recv_message().unwrap(), Recv::Data(sent[19].clone()));
    assert_eq!(w.b.held(), (0, 0));
    w.pump(&mut pass);
    assert_eq!(w.a.peer_window_edges().0, edge + 1, "the slot is free");
}

#[test]
fn no_batches_to_a_peer_that_does_not_announce_them() {
    // An older peer ignores the flag it does not know, so never sets it.
    let mut strip = |p: &mut Packet| {
        p.flags &= !flags::BATCH_OK;
        true
    };
    let mut w = Wire::new(cfg("A", "B"), cfg("B", ""));
    w.pump(&mut strip);
    let sent = msgs(10);
    w.send_from_a(&sent);
    w.pump(&mut strip);
    let data = w.data_from_a();
    assert_eq!(data.len(), 10, "one message per packet");
    assert!(data.iter().all(|p| !p.has(flags::BATCH)));
    assert_eq!(drain_messages(&mut w.b), sent);
    // The handshake said it: A's Syn carried the flag.
    assert!(w.sent_by_a[0].kind == Kind::Syn && w.sent_by_a[0].has(flags::BATCH_OK));
}

#[test]
fn batching_can_be_turned_off() {
    let mut w = Wire::new(cfg("A", "B").batch_messages(false), cfg("B", ""));
    w.pump(&mut pass);
    for m in msgs(5) {
        w.a.send_message(m).unwrap();
    }
    w.pump(&mut pass);
    assert_eq!(w.data_from_a().len(), 5);
}

#[test]
fn stream_bytes_and_large_messages_are_never_batched() {
    let mut w = Wire::new(cfg("A", "B").max_payload(1000), cfg("B", ""));
    w.pump(&mut pass);
    w.a.send_message(Bytes::from_static(b"one")).unwrap();
    w.a.send_message(Bytes::from(vec![5u8; 2500])).unwrap(); // 3 packets
    w.a.send_message(Bytes::from_static(b"two")).unwrap();
    w.a.send_message(Bytes::from_static(b"three")).unwrap();
    w.a.write(&[9u8; 10]).unwrap(); // stream bytes
    w.pump(&mut pass);
    let data = w.data_from_a();
    let shape: Vec<(usize, bool)> = data
        .iter()
        .map(|p| (p.data.len(), p.has(flags::BATCH)))
        .collect();
    // "one" alone (the big message follows); the big one in three pieces
    // (its last piece is a whole message's end, so it may lead a batch with
    // "two" and "three" if they fit); then the stream bytes alone.
    assert!(shape.iter().all(|(len, _)| *len <= 1000), "{shape:?}");
    assert!(!data.last().unwrap().has(flags::BATCH));
    assert_eq!(&data.last().unwrap().data[..], &[9u8; 10]);
    let got = drain_messages(&mut w.b);
    assert_eq!(got.len(), 4, "{shape:?}");
    assert_eq!(got[1], Bytes::from(vec![5u8; 2500]));
    assert_eq!(&got[3][..], b"three");
}

#[test]
fn a_malformed_batch_is_counted_and_dropped_then_repaired() {
    let mut w = Wire::established();
    let sent = msgs(6);
    w.send_from_a(&sent);
    // Every copy of the first batch arrives with a length prefix that runs
    // past its end (valid checksum: the codec re-encodes it).
    let mut broken = 0;
    let mut spoil = |p: &mut Packet| {
        if p.kind == Kind::Data && p.has(flags::BATCH) && broken < 1 {
            broken += 1;
            let mut v = p.data.to_vec();
            v[0] = 0x7f;
            p.data = Bytes::from(v);
        }
        true
    };
    w.pump(&mut spoil);
    assert_eq!(w.b.stats().dropped.invalid, 1);
    assert!(drain_messages(&mut w.b).is_empty());
    // The sender retransmits after its timeout; that copy is intact.
    w.now += Duration::from_secs(2);
    w.a.handle_timeout(w.now);
    w.pump(&mut pass);
    assert_eq!(drain_messages(&mut w.b), sent);
}

#[test]
fn asap_sees_each_message_of_a_batch() {
    let mut w = Wire::new(cfg("A", "B"), cfg("B", "").asap(Some(100)));
    w.pump(&mut pass);
    let sent = msgs(8);
    w.send_from_a(&sent);
    w.pump(&mut pass);
    assert_eq!(w.data_from_a().len(), 1);
    let mut asap = vec![];
    while let Some(m) = w.b.poll_asap() {
        asap.push(m);
    }
    assert_eq!(asap, sent);
    assert_eq!(drain_messages(&mut w.b), sent);
}

#[test]
fn never_batched_to_a_go_peer() {
    use swp::proto::WireFormat;
    let now = Instant::now();
    let mut a = Connection::connect(cfg("A", "B").wire_format(WireFormat::Go), now, 1).unwrap();
    let mut b = Connection::listen(cfg("B", ""), now, 2).unwrap();
    let mut t = now;
    let mut pump = |a: &mut Connection, b: &mut Connection| {
        for _ in 0..100 {
            t += Duration::from_micros(100);
            let mut moved = false;
            while let Some(x) = a.poll_transmit(t) {
                moved = true;
                b.handle_packet(t, x.payload);
            }
            while let Some(x) = b.poll_transmit(t) {
                moved = true;
                a.handle_packet(t, x.payload);
            }
            if !moved {
                return;
            }
        }
    };
    pump(&mut a, &mut b);
    assert!(a.is_established() && b.wire_format() == WireFormat::Go);
    let sent = msgs(10);
    for m in &sent {
        a.send_message(m.clone()).unwrap();
    }
    pump(&mut a, &mut b);
    assert_eq!(a.stats().data.packets_sent, 10, "one Go packet per message");
    assert_eq!(drain_messages(&mut b), sent);
}

/// Random messages (empty ones, ones larger than a packet) under loss,
/// duplication, reordering and (harsh profile) corruption: every seed
/// delivers exactly what was sent, in order, in fewer packets than
/// messages, and never beyond the receiver's window.
/// `SWP_BATCH_SEEDS=N` runs more seeds per profile; failures print theirs.
#[test]
fn batches_survive_loss_duplication_and_reordering() {
    let seeds: u64 = std::env::var("SWP_BATCH_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mild = LinkConfig::new()
        .latency(Duration::from_millis(2))
        .jitter(Duration::from_millis(3))
        .loss(0.08)
        .duplicate(0.03)
        .reorder(0.05);
    let harsh = mild.clone().loss(0.3).corrupt(0.02);
    for (name, link) in [("mild", mild), ("harsh", harsh)] {
        for seed in 0..seeds {
            // Generous budgets: at 30% loss each way a handshake or a
            // retransmission legitimately needs many attempts.
            let cfg_a = cfg("A", "B")
                .max_payload(2048)
                .connect(Duration::from_secs(2), 40)
                .keepalive(Duration::from_secs(1), 30)
                .max_retransmits(40);
            let cfg_b = cfg("B", "")
                .max_payload(2048)
                .connect(Duration::from_secs(2), 40)
                .window(16, 64 * 1024)
                .keepalive(Duration::from_secs(1), 30);
            let mut p = Pair::new(seed, link.clone(), cfg_a, cfg_b);
            let at = format!("{name} seed {seed} (SWP_BATCH_SEEDS={})", seed + 1);
            assert!(p.connect(Duration::from_secs(60)), "{at}: no handshake");
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let sent: Vec<Bytes> = (0..1500)
                .map(|i| {
                    let len = match rng.gen_range(0..20) {
                        0 => 0,
                        1 => rng.gen_range(2048..6000),
                        _ => rng.gen_range(1..300),
                    };
                    Bytes::from(vec![(i % 251) as u8; len])
                })
                .collect();
            let got = deliver_messages(&mut p, &sent, Duration::from_secs(600))
                .unwrap_or_else(|e| panic!("{at}: {e}"));
            assert!(got == sent, "{at}: messages differ");
            let st = p.a.stats();
            assert!(
                st.data.packets_sent < sent.len() as u64,
                "{at}: {} packets for {} messages: nothing was batched",
                st.data.packets_sent,
                sent.len()
            );
            assert_eq!(p.window_violations(), 0, "{at}: {:?}", p.window_report());
            if name == "mild" {
                // Nothing is corrupted on this link: every batch decodes.
                assert_eq!(p.b.stats().dropped.invalid, 0, "{at}");
            }
        }
    }
}
