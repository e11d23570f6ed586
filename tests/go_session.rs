//! Sessions with go-sliding-window peers.
//!
//! * The two captured Go sessions (tests/data/go-swp/session_capture*.jsonl)
//!   are replayed: the Go client's packets are fed, in order and at their
//!   captured times, into a Rust listener configured for the native format.
//!   It must notice the Go peer, complete the handshake, deliver "alpha",
//!   the 1000 bytes and "gamma" in order, see the end of the stream at the
//!   Go FIN, and answer only with packets a Go peer accepts: decodable by
//!   Go's rules, sentinel sequence numbers, right nonces, ack numbers that
//!   never claim more than arrived (and -1 before anything did).
//! * Rust sessions speaking Go's format to each other over SimNet under
//!   loss, duplication and reordering, with the monitor checking every
//!   packet against what a Go peer needs.

use bytes::Bytes;
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use swp::proto::go::codec::{GoPacket, decode_packet, encode_packet};
use swp::proto::{Config, Connection, Recv, State, WireFormat, go::link as golink};
use swp::simnet::LinkConfig;
use swp::testkit::{Pair, TransferSpec, transfer};

fn capture(name: &str) -> Vec<(f64, String, Vec<u8>)> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/go-swp")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read the Go capture {} ({e}): it is part of the repository (tests/data)",
            path.display()
        )
    });
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let hex = v["hex"].as_str().unwrap();
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            (
                v["t_ms"].as_f64().unwrap(),
                v["subject"].as_str().unwrap().to_string(),
                bytes,
            )
        })
        .collect()
}

/// Decodes `b` as a Go peer would and checks the rules a Go peer relies on.
fn go_accepts(b: &[u8]) -> GoPacket {
    let g = decode_packet(b).unwrap_or_else(|e| panic!("a Go peer would reject our packet: {e}"));
    let want = match g.tcp_event {
        3 => Some(golink::SEQ_SYN),
        4 | 5 | 9 | 10 => Some(golink::SEQ_ACK),
        8 => Some(golink::SEQ_FIN),
        12 => Some(golink::SEQ_KEEPALIVE),
        11 => None,
        e => panic!("we sent TcpEvent {e}"),
    };
    if let Some(w) = want {
        assert_eq!((g.seq_num, g.seq_retry), (w, w), "{g:?}");
    } else {
        assert!(g.seq_num >= 0);
        if !g.data.is_empty() {
            assert_eq!(g.blake2b_checksum, golink::checksum(&g.data));
        }
    }
    assert!(g.ack_num >= -1, "{g:?}");
    assert!(g.avail_reader_msg_cap >= 0 && g.avail_reader_bytes_cap >= 0);
    assert_eq!(
        encode_packet(&g),
        b,
        "we emit only canonical msgp encodings"
    );
    g
}

struct Replay {
    conn: Connection,
    epoch: Instant,
    sent: Vec<GoPacket>,
    delivered: Vec<Bytes>,
}

impl Replay {
    fn new() -> Replay {
        let epoch = Instant::now();
        // A listener in the native format: it must notice the Go peer itself.
        let conn = Connection::listen(Config::new("B", ""), epoch, 42).unwrap();
        assert_eq!(conn.wire_format(), WireFormat::Native);
        Replay {
            conn,
            epoch,
            sent: Vec::new(),
            delivered: Vec::new(),
        }
    }

    fn at(&self, t_ms: f64) -> Instant {
        self.epoch + Duration::from_micros((t_ms * 1000.0) as u64)
    }

    /// Runs timers up to `now`, collects what we send and read.
    fn settle(&mut self, now: Instant) {
        while let Some(d) = self.conn.poll_timeout() {
            if d > now {
                break;
            }
            self.conn.handle_timeout(d);
            self.drain(d);
        }
        self.drain(now);
    }

    fn drain(&mut self, now: Instant) {
        while let Ok(Recv::Data(m)) = self.conn.recv_message() {
            self.delivered.push(m);
        }
        while let Some(t) = self.conn.poll_transmit(now) {
            assert_eq!(&*t.dest, "A", "answers go to the Go client's inbox");
            self.sent.push(go_accepts(&t.payload));
        }
    }
}

fn replay(name: &str) -> Replay {
    let packets = capture(name);
    let mut r = Replay::new();
    let mut go_nonce = None;
    for (t_ms, subject, bytes) in packets {
        if subject != "B" {
            continue; // the Go listener's own answers: we play its part
        }
        let now = r.at(t_ms);
        r.settle(now);
        let mut g = decode_packet(&bytes).unwrap();
        assert_eq!(
            encode_packet(&g),
            bytes,
            "the capture re-encodes byte-exactly"
        );
        go_nonce.get_or_insert_with(|| g.from_sess_nonce.clone());
        // The Go client addressed the Go listener's nonce; a client talking
        // to us would have learnt ours from our SynAck. An empty one (data
        // before the EstabAck) stays empty.
        if !g.dest_sess_nonce.is_empty() {
            g.dest_sess_nonce = r.conn.local_nonce().to_string();
        }
        let before = r.sent.len();
        r.conn.handle_packet(now, Bytes::from(encode_packet(&g)));
        r.drain(now);
        if g.tcp_event == 12 {
            // A Go keepalive is answered at once by a DataAck echoing its
            // sent time exactly (Go samples RTT from it).
            let echo = r.sent[before..]
                .iter()
                .find(|p| p.tcp_event == 10)
                .expect("keepalive answered");
            assert_eq!(echo.data_send_tm, g.data_send_tm);
        }
    }
    let end = r.at(3000.0);
    r.settle(end);
    let go_nonce = go_nonce.unwrap();
    assert_eq!(
        r.conn.wire_format(),
        WireFormat::Go,
        "answered in Go's format"
    );
    for p in &r.sent {
        assert_eq!(p.from, "B");
        assert_eq!(p.from_sess_nonce, r.conn.local_nonce());
        assert_eq!(
            p.dest_sess_nonce, go_nonce,
            "every answer names the Go session"
        );
    }
    r
}

fn check_replay(r: &Replay) {
    let expect: Vec<Bytes> = vec![
        Bytes::from_static(b"alpha"),
        Bytes::from("beta".repeat(250)),
        Bytes::from_static(b"gamma"),
    ];
    assert_eq!(
        r.delivered, expect,
        "alpha, the 1000 bytes and gamma, in order"
    );
    let events: Vec<i64> = r.sent.iter().map(|p| p.tcp_event).collect();
    assert_eq!(events[0], 4, "first answer is the SynAck: {events:?}");
    assert_eq!(
        r.sent[0].ack_num, -1,
        "no false ack of seq 0 before any data"
    );
    assert!(r.sent[0].avail_reader_msg_cap > 0 && r.sent[0].avail_reader_bytes_cap > 0);
    // Ack numbers never decrease, never exceed the last data seq (2), and
    // every data packet was acknowledged.
    let acks: Vec<i64> = r.sent.iter().map(|p| p.ack_num).collect();
    assert!(acks.windows(2).all(|w| w[0] <= w[1]), "{acks:?}");
    assert_eq!(*acks.iter().max().unwrap(), 2, "{acks:?}");
    for seq in 0..3 {
        assert!(
            r.sent.iter().any(|p| p.tcp_event == 10 && p.ack_num == seq),
            "a DataAck for seq {seq}: {acks:?}"
        );
    }
    // The Go FIN ended the stream; we acknowledged it.
    assert!(events.contains(&9), "FinAck sent: {events:?}");
    let s = r.conn.stats();
    assert_eq!(s.dropped.invalid, 0);
    assert_eq!(s.dropped.foreign, 0);
    assert_eq!(s.data.packets_received, 3);
    assert_eq!(s.data.duplicates, 0);
}

#[test]
fn replay_of_a_captured_go_session() {
    let mut r = replay("session_capture.jsonl");
    check_replay(&r);
    assert_eq!(
        r.conn.state(),
        State::CloseWait,
        "the Go peer finished its stream"
    );
    let mut buf = [0u8; 8];
    assert_eq!(r.conn.read(&mut buf), Ok(Recv::Finished));
    // Our side closes too: a Fin a Go peer understands.
    let now = r.at(3001.0);
    r.conn.close(now);
    r.settle(now);
    let fin = r.sent.last().unwrap();
    assert_eq!((fin.tcp_event, fin.seq_num), (8, golink::SEQ_FIN));
    assert_eq!(fin.ack_num, 2);
    // A Go peer halts on our Fin and may never acknowledge it: we still end
    // normally, after a bounded number of retries.
    let later = r.at(30_000.0);
    r.settle(later);
    assert_eq!(r.conn.state(), State::Closed);
    assert!(
        r.conn.close_reason().unwrap().is_normal(),
        "{:?}",
        r.conn.close_reason()
    );
    let fins = r.sent.iter().filter(|p| p.tcp_event == 8).count();
    assert!((1..=4).contains(&fins), "{fins} Fins");
}

#[test]
fn replay_with_data_before_the_estab_ack() {
    let r = replay("session_capture_data_before_estaback.jsonl");
    check_replay(&r);
    assert_eq!(r.conn.stats().loss.retransmits_timeout, 0);
}

#[test]
fn a_native_packet_after_the_go_syn_is_dropped_and_counted() {
    let mut r = Replay::new();
    let packets = capture("session_capture.jsonl");
    let now = r.at(packets[0].0);
    r.conn.handle_packet(now, Bytes::from(packets[0].2.clone()));
    r.drain(now);
    assert_eq!(r.conn.wire_format(), WireFormat::Go);
    r.conn
        .handle_packet(now, Bytes::from_static(b"SW\x01not a real packet"));
    assert_eq!(r.conn.stats().dropped.invalid, 1);
}

fn go_pair(seed: u64, link: LinkConfig) -> Pair {
    // A is configured for Go's format; B is a native listener that must
    // switch on seeing A's Syn.
    let a = Pair::default_config("A", "B").wire_format(WireFormat::Go);
    let b = Pair::default_config("B", "");
    Pair::new(seed, link, a, b)
}

#[test]
fn go_format_transfers_survive_loss_duplication_and_reordering() {
    let profiles = [
        ("clean", LinkConfig::new().latency(Duration::from_millis(1))),
        (
            "lossy",
            LinkConfig::new()
                .latency(Duration::from_millis(2))
                .jitter(Duration::from_millis(1))
                .loss(0.1)
                .duplicate(0.05),
        ),
        (
            "reorder",
            LinkConfig::new()
                .latency(Duration::from_millis(1))
                .reorder(0.1)
                .reorder_delay(Duration::from_millis(3))
                .loss(0.02),
        ),
    ];
    let seeds: u64 = std::env::var("SWP_GO_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    for (name, link) in profiles {
        for seed in 0..seeds {
            let mut pair = go_pair(seed, link.clone());
            let mut spec = TransferSpec::new(2 << 20);
            if seed % 2 == 1 {
                // A slow reader: flow control through Go's relative windows.
                spec.read_rate_per_ms = Some(64 * 1024);
            }
            let result = transfer(&mut pair, &spec);
            let report = pair.window_report();
            let ok = result.is_ok()
                && pair.window_violations() == 0
                && pair.b.wire_format() == WireFormat::Go;
            assert!(
                ok,
                "profile {name} seed {seed}: {:?}, monitor: {:?} (rerun: SWP_GO_SEEDS={} cargo test --test go_session)",
                result.err(),
                report.first,
                seed + 1
            );
            assert!(report.checked > 0);
        }
    }
}
