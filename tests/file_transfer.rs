//! send_file / recv_file: over SimNet in virtual time (loss, corruption,
//! partitions) and over a real nats-server.

mod common;

use common::{TempDir, listing, overwrite_last_mib};

use blake2::{Blake2b512, Digest};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;
use swp::Session;
use swp::file::{
    FileError, Progress, recv_bytes, recv_file, recv_file_as, send_bytes, send_file, send_file_as,
    send_reader,
};
use swp::proto::{Config, Kind};
use swp::simnet::{Envelope, LinkConfig, Rule, Verdict};
use swp::transport::{SimNetwork, Transport};
use tokio::sync::watch;

fn write_pattern(path: &Path, len: usize, salt: u8) {
    let data: Vec<u8> = (0..len)
        .map(|i| (swp::testkit::pattern_byte(i as u64)) ^ salt)
        .collect();
    std::fs::write(path, data).unwrap();
}

async fn sim_pair(net: &SimNetwork, a: Config, b: Config) -> (Session, Session) {
    swp::testkit::session_pair(net, a, b).await.unwrap()
}

fn lossy(seed: u64) -> SimNetwork {
    SimNetwork::new(
        seed,
        LinkConfig::new()
            .latency(Duration::from_millis(2))
            .loss(0.05)
            .reorder(0.05),
    )
}

#[tokio::test(start_paused = true)]
async fn file_over_lossy_corrupting_network_arrives_exact() {
    let tmp = TempDir::new("lossy");
    let src = tmp.0.join("source.bin");
    write_pattern(&src, 3 * 1024 * 1024 + 17, 0);
    let out = tmp.0.join("out");
    let net = lossy(1);
    // Flip a bit in every 7th data packet in flight: the packet checksum
    // drops them and retransmission repairs them.
    let mut k = 0u64;
    net.with(|n| {
        n.add_rule(Rule::new(
            "corrupt data",
            Verdict::Corrupt,
            move |e: &Envelope| {
                let data =
                    swp::proto::codec::decode(&e.payload).is_ok_and(|p| p.kind == Kind::Data);
                k += data as u64;
                data && k.is_multiple_of(7)
            },
        ))
    });
    let (mut a, mut b) = sim_pair(
        &net,
        Config::new("A", "B").max_payload(16 * 1024),
        Config::new("B", ""),
    )
    .await;
    let (ptx, prx) = watch::channel(Progress::default());
    let sender =
        tokio::spawn(async move { send_file(&mut a, &src, Some(&ptx)).await.map(|r| (r, a)) });
    let (meta, path) = recv_file(&mut b, &out, None).await.unwrap();
    let (report, _a) = sender.await.unwrap().unwrap();
    let original = std::fs::read(tmp.0.join("source.bin")).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), original);
    assert_eq!(path, out.join("source.bin"));
    assert_eq!(meta.size, original.len() as u64);
    assert_eq!(
        meta.blake2b.as_slice(),
        Blake2b512::digest(&original).as_slice()
    );
    assert_eq!(report.meta, meta);
    assert_eq!(report.bytes_sent, meta.size);
    assert_eq!(
        listing(&out),
        vec!["source.bin"],
        "no part files left behind"
    );
    let p = *prx.borrow();
    assert_eq!(
        (p.bytes_sent, p.bytes_confirmed, p.total),
        (meta.size, meta.size, meta.size)
    );
    assert!(
        b.stats().protocol.dropped.invalid > 0,
        "corruption happened and was caught"
    );
}

#[tokio::test(start_paused = true)]
async fn source_changing_mid_transfer_fails_and_saves_nothing() {
    let tmp = TempDir::new("changing");
    let src = tmp.0.join("moving.bin");
    let size = 16 * 1024 * 1024;
    write_pattern(&src, size, 0);
    let out = tmp.0.join("out");
    let net = lossy(2);
    // Small windows, so the sender reads the file gradually.
    let small = |c: Config| {
        c.window(64, 1 << 20)
            .send_buffer(1 << 20)
            .max_payload(16 * 1024)
    };
    let (mut a, mut b) = sim_pair(
        &net,
        small(Config::new("A", "B")),
        small(Config::new("B", "")),
    )
    .await;
    let src2 = src.clone();
    let sender = tokio::spawn(async move { send_file(&mut a, &src2, None).await });
    let (ptx, mut prx) = watch::channel(Progress::default());
    let receiver =
        tokio::spawn(async move { recv_file(&mut b, &out, Some(&ptx)).await.map(|r| r.1) });
    // Once the receiver has 1 MiB, rewrite the source's last MiB.
    while prx.borrow().bytes_sent < 1 << 20 {
        prx.changed().await.unwrap();
    }
    overwrite_last_mib(&src, size as u64);
    // The sender notices before it vouches for the bytes (its digest
    // follows the data), and the receiver learns why at once.
    let sent = sender.await.unwrap().unwrap_err();
    assert!(
        sent.to_string().contains("changed during the transfer"),
        "{sent}"
    );
    let err = receiver.await.unwrap().unwrap_err();
    assert!(
        err.to_string().contains("changed during the transfer"),
        "{err}"
    );
    let left = listing(&tmp.0.join("out"));
    assert!(!left.iter().any(|n| n == "moving.bin"), "{left:?}");
}

// The control messages, as a hostile peer would write them.
#[derive(Serialize, Deserialize, Debug)]
enum Control {
    Offer {
        name: String,
        size: Option<u64>,
        send_time_ns: u64,
    },
    Accept {
        offset: u64,
        #[serde(with = "serde_bytes")]
        prefix_blake2b: Vec<u8>,
    },
    Start {
        offset: u64,
    },
    Segment {
        len: u64,
    },
    End {
        size: u64,
        #[serde(with = "serde_bytes")]
        blake2b: Vec<u8>,
    },
    Verdict {
        ok: bool,
        message: String,
    },
}

async fn control(s: &Session, c: Control) {
    s.send(Bytes::from(rmp_serde::to_vec(&c).unwrap()))
        .await
        .unwrap();
}

async fn offer(s: &Session, name: &str, size: Option<u64>) {
    control(
        s,
        Control::Offer {
            name: name.into(),
            size,
            send_time_ns: 0,
        },
    )
    .await;
}

async fn next_control(s: &Session) -> Control {
    rmp_serde::from_slice(&s.recv().await.unwrap().unwrap()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn hostile_names_are_refused() {
    // Each says what is wrong with the name, not only the rule.
    for (name, why) in [
        ("/etc/passwd", "it is absolute"),
        ("../../x", "`..` would leave"),
        ("a/../../x", "`..` would leave"),
        ("", "a file needs a name"),
        ("./..", "`..` would leave"),
        (".", "it names a directory"),
        ("./.", "it names a directory"),
        ("a\0b", "NUL byte"),
    ] {
        let tmp = TempDir::new("hostile");
        let out = tmp.0.join("out");
        let net = lossy(3);
        let (a, mut b) = sim_pair(&net, Config::new("A", "B"), Config::new("B", "")).await;
        offer(&a, name, Some(4)).await;
        let err = recv_file(&mut b, &out, None).await.unwrap_err();
        assert!(matches!(err, FileError::HostileName(_)), "{name:?}: {err}");
        assert!(err.to_string().contains(why), "{name:?}: {err}");
        // The sender is told why.
        let verdict = next_control(&a).await;
        assert!(
            matches!(verdict, Control::Verdict { ok: false, .. }),
            "{verdict:?}"
        );
        assert!(!tmp.0.join("x").exists() && !Path::new("/x").exists());
    }
    // And our own sender refuses to send them.
    let net = lossy(4);
    let (mut a, _b) = sim_pair(&net, Config::new("A", "B"), Config::new("B", "")).await;
    let err = send_file_as(&mut a, Path::new("/dev/null"), "../up", None)
        .await
        .unwrap_err();
    assert!(matches!(err, FileError::HostileName(_)));
}

#[tokio::test(start_paused = true)]
async fn wrong_digest_is_never_presented_as_complete() {
    let tmp = TempDir::new("baddigest");
    let out = tmp.0.join("out");
    let net = lossy(5);
    let (mut a, mut b) = sim_pair(&net, Config::new("A", "B"), Config::new("B", "")).await;
    let receiver = tokio::spawn(async move { recv_file(&mut b, &out, None).await });
    offer(&a, "f.bin", Some(5)).await;
    let _accept = next_control(&a).await;
    control(&a, Control::Start { offset: 0 }).await;
    control(&a, Control::Segment { len: 5 }).await;
    use tokio::io::AsyncWriteExt;
    a.write_all(b"hello").await.unwrap();
    let end = Control::End {
        size: 5,
        blake2b: vec![7; 64], // the digest of something else
    };
    control(&a, end).await;
    let err = receiver.await.unwrap().unwrap_err();
    assert!(matches!(err, FileError::DigestMismatch { .. }), "{err}");
    assert!(listing(&tmp.0.join("out")).is_empty());
}

#[tokio::test(start_paused = true)]
async fn interrupted_transfer_resumes_without_resending() {
    let tmp = TempDir::new("resume");
    let src = tmp.0.join("big.bin");
    let size = 8 * 1024 * 1024;
    write_pattern(&src, size, 3);
    let out = tmp.0.join("out");
    let ka = |c: Config| {
        c.keepalive(Duration::from_millis(200), 5)
            .window(64, 1 << 20)
            .send_buffer(1 << 20)
            .max_payload(16 * 1024)
    };
    // First attempt: the network goes away halfway.
    {
        let net = lossy(6);
        let (mut a, mut b) =
            sim_pair(&net, ka(Config::new("A", "B")), ka(Config::new("B", ""))).await;
        let s2 = src.clone();
        let sender = tokio::spawn(async move { send_file(&mut a, &s2, None).await });
        let (ptx, mut prx) = watch::channel(Progress::default());
        let out2 = out.clone();
        let receiver = tokio::spawn(async move { recv_file(&mut b, &out2, Some(&ptx)).await });
        while prx.borrow().bytes_sent < (size / 2) as u64 {
            prx.changed().await.unwrap();
        }
        let (ia, ib) = (
            net.with(|n| n.lookup("A").unwrap()),
            net.with(|n| n.lookup("B").unwrap()),
        );
        net.with(|n| n.partition(ia, ib));
        assert!(receiver.await.unwrap().is_err());
        assert!(sender.await.unwrap().is_err());
        assert!(
            !out.join("big.bin").exists(),
            "an incomplete file must not look complete"
        );
    }
    let part_len = std::fs::metadata(out.join(".big.bin.swp-part"))
        .unwrap()
        .len();
    assert!(part_len >= (size / 2) as u64, "part holds {part_len}");
    // Second attempt: fresh sessions, same destination.
    let net = lossy(7);
    let (mut a, mut b) =
        sim_pair(&net, ka(Config::new("A2", "B2")), ka(Config::new("B2", ""))).await;
    let s2 = src.clone();
    let sender = tokio::spawn(async move { send_file(&mut a, &s2, None).await });
    let (_meta, path) = recv_file(&mut b, &out, None).await.unwrap();
    let report = sender.await.unwrap().unwrap();
    assert_eq!(report.resumed_from, part_len);
    assert_eq!(
        report.bytes_sent,
        size as u64 - part_len,
        "only the missing bytes were sent"
    );
    assert_eq!(std::fs::read(path).unwrap(), std::fs::read(&src).unwrap());
    assert_eq!(listing(&out), vec!["big.bin"]);
}

#[tokio::test(start_paused = true)]
async fn a_tampered_part_is_not_trusted() {
    let tmp = TempDir::new("tampered");
    let src = tmp.0.join("t.bin");
    write_pattern(&src, 100_000, 9);
    let out = tmp.0.join("out");
    std::fs::create_dir_all(&out).unwrap();
    // A part that claims to belong to a transfer of this size but holds
    // other bytes.
    let data = std::fs::read(&src).unwrap();
    std::fs::write(
        out.join(".t.bin.swp-part.meta"),
        format!("{}\n", data.len()),
    )
    .unwrap();
    std::fs::write(out.join(".t.bin.swp-part"), vec![0u8; 50_000]).unwrap();
    let net = lossy(8);
    let (mut a, mut b) = sim_pair(&net, Config::new("A", "B"), Config::new("B", "")).await;
    let sender = tokio::spawn(async move { send_file(&mut a, &src, None).await });
    let (_, path) = recv_file(&mut b, &out, None).await.unwrap();
    let report = sender.await.unwrap().unwrap();
    assert_eq!(report.resumed_from, 0, "the prefix did not verify");
    assert_eq!(std::fs::read(path).unwrap(), data);
}

#[tokio::test(start_paused = true)]
async fn in_memory_send_and_recv() {
    let net = lossy(9);
    let (mut a, mut b) = sim_pair(&net, Config::new("A", "B"), Config::new("B", "")).await;
    let data = Bytes::from((0..300_000u32).map(|i| i as u8).collect::<Vec<_>>());
    let d2 = data.clone();
    let sender = tokio::spawn(async move { send_bytes(&mut a, "dir/file.bin", d2).await });
    let (meta, got) = recv_bytes(&mut b, 1 << 20).await.unwrap();
    assert_eq!(got, data);
    assert_eq!(meta.name, "dir/file.bin");
    assert_eq!(sender.await.unwrap().unwrap(), meta);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_mib_over_nats() {
    let server = common::nats_server();
    let (ta, tb) = (common::nats(&server).await, common::nats(&server).await);
    let tmp = TempDir::new("nats200");
    let src = tmp.0.join("two-hundred.bin");
    write_pattern(&src, 200 * 1024 * 1024, 1);
    let out = tmp.0.join("out");
    let (ia, ib) = (common::inbox("file", "a"), common::inbox("file", "b"));
    let l = Session::listen(tb.clone(), Config::new(&ib, ""))
        .await
        .unwrap();
    let acc = tokio::spawn(l.accept());
    let mut a = Session::connect(ta, Config::new(&ia, &ib)).await.unwrap();
    let mut b = acc.await.unwrap().unwrap();
    let s2 = src.clone();
    let sender = tokio::spawn(async move { send_file(&mut a, &s2, None).await });
    let (meta, path) = recv_file(&mut b, &out, None).await.unwrap();
    sender.await.unwrap().unwrap();
    assert_eq!(meta.size, 200 * 1024 * 1024);
    // Verify independently of the library's own check.
    let mut h = Blake2b512::new();
    h.update(std::fs::read(&path).unwrap());
    assert_eq!(h.finalize().as_slice(), meta.blake2b.as_slice());
    assert_eq!(std::fs::read(&path).unwrap(), std::fs::read(&src).unwrap());
    assert_eq!(tb.counters().slow_consumer_events, 0);
}

#[tokio::test(start_paused = true)]
async fn recv_into_a_chosen_path() {
    let tmp = TempDir::new("chosen");
    let src = tmp.0.join("name-the-sender-gave.bin");
    write_pattern(&src, 70_000, 4);
    let target = tmp.0.join("deep/er/chosen.dat");
    let net = lossy(10);
    let (mut a, mut b) = sim_pair(&net, Config::new("A", "B"), Config::new("B", "")).await;
    let s2 = src.clone();
    let sender = tokio::spawn(async move { send_file(&mut a, &s2, None).await });
    let (meta, path) = recv_file_as(&mut b, &target, None).await.unwrap();
    sender.await.unwrap().unwrap();
    assert_eq!(path, target);
    assert_eq!(meta.name, "name-the-sender-gave.bin");
    assert_eq!(
        std::fs::read(&target).unwrap(),
        std::fs::read(&src).unwrap()
    );
}

#[tokio::test(start_paused = true)]
async fn a_source_that_shrinks_mid_send_is_told_to_the_receiver_at_once() {
    // Before: the receiver waited for the rest and said "peer unreachable"
    // a budget later; now the sender's failure reaches it with the reason,
    // and its part stays for a later resume.
    let tmp = TempDir::new("shrinks");
    let src = tmp.0.join("log.bin");
    let size = 16 * 1024 * 1024;
    write_pattern(&src, size, 0);
    let out = tmp.0.join("out");
    let net = lossy(3);
    let small = |c: Config| {
        c.window(64, 1 << 20)
            .send_buffer(1 << 20)
            .max_payload(16 * 1024)
    };
    let (mut a, mut b) = sim_pair(
        &net,
        small(Config::new("A", "B")),
        small(Config::new("B", "")),
    )
    .await;
    let src2 = src.clone();
    let sender = tokio::spawn(async move { send_file(&mut a, &src2, None).await });
    let (ptx, mut prx) = watch::channel(Progress::default());
    let out2 = out.clone();
    let receiver =
        tokio::spawn(async move { recv_file(&mut b, &out2, Some(&ptx)).await.map(|r| r.1) });
    while prx.borrow().bytes_sent < 1 << 20 {
        prx.changed().await.unwrap();
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(&src)
        .unwrap()
        .set_len(2 << 20)
        .unwrap();
    let sent = sender.await.unwrap().unwrap_err();
    let t = tokio::time::Instant::now();
    assert!(sent.to_string().contains("shrank"), "{sent}");
    let got = receiver.await.unwrap().unwrap_err();
    assert!(
        t.elapsed() < Duration::from_millis(200),
        "{:?}",
        t.elapsed()
    );
    let msg = got.to_string();
    assert!(
        msg.contains("the sender failed") && msg.contains("shrank"),
        "{msg}"
    );
    assert!(!msg.contains("unreachable"), "{msg}");
    assert_eq!(
        listing(&out),
        vec![".log.bin.swp-part", ".log.bin.swp-part.meta"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_stops_talking_mid_exchange_is_a_bounded_wait() {
    // A "sender" that connects, offers, and then never sends Start's
    // answer... here: never sends an Offer at all, while staying alive.
    // The receiver gives up after the Offer timeout with a clear error.
    let tmp = TempDir::new("mute");
    let net = lossy(4);
    let (a, mut b) = sim_pair(&net, Config::new("A", "B"), Config::new("B", "")).await;
    let t = tokio::time::Instant::now();
    let err = recv_file(&mut b, tmp.0.join("out"), None)
        .await
        .unwrap_err();
    assert_eq!(t.elapsed().as_secs(), swp::file::OFFER_TIMEOUT.as_secs());
    assert!(err.to_string().contains("no Offer from the peer"), "{err}");
    // ... and the mute peer is told: a failure Verdict, then the Reset.
    let verdict = a.recv().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&verdict).contains("no Offer from the peer"));
    let told = a.recv().await.unwrap_err();
    assert!(
        told.to_string().contains("no Offer from the peer"),
        "{told}"
    );
    // A receiver that accepts and then never sends its Verdict.
    let (mut a, b) = sim_pair(&net, Config::new("C", "D"), Config::new("D", "")).await;
    let mute = tokio::spawn(async move {
        let offer = b.recv().await.unwrap().unwrap();
        let _ = offer;
        let accept = Control::Accept {
            offset: 0,
            prefix_blake2b: vec![],
        };
        control(&b, accept).await;
        let _start = b.recv().await.unwrap();
        // Reads everything, says nothing.
        let mut sink = Vec::new();
        while let Ok(Some(c)) = b.read_chunk(1 << 20).await {
            sink.extend_from_slice(&c);
            if sink.len() >= 1000 {
                break;
            }
        }
        b
    });
    let src = tmp.0.join("x.bin");
    write_pattern(&src, 1000, 1);
    let t = tokio::time::Instant::now();
    let err = send_file(&mut a, &src, None).await.unwrap_err();
    assert!(
        err.to_string().contains("no Verdict from the peer"),
        "{err}"
    );
    assert!(t.elapsed() >= swp::file::VERDICT_TIMEOUT);
    assert!(t.elapsed() < swp::file::VERDICT_TIMEOUT + Duration::from_secs(5));
    drop(mute.await.unwrap());
}

/// An AsyncRead that yields at most `step` bytes per read.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl tokio::io::AsyncRead for Trickle<'_> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let n = self.data.len().min(self.step).min(buf.remaining());
        buf.put_slice(&self.data[..n]);
        self.data = &self.data[n..];
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test(start_paused = true)]
async fn streams_of_unknown_length_at_every_boundary_arrive_verified() {
    const CHUNK: usize = 1 << 20; // the sender's largest Segment
    let net = lossy(21);
    let (mut a, mut b) = sim_pair(&net, Config::new("A", "B"), Config::new("B", "")).await;
    for (len, step) in [
        (0, usize::MAX),
        (1, usize::MAX),
        (CHUNK - 1, usize::MAX),
        (CHUNK, usize::MAX),
        (CHUNK + 1, usize::MAX),
        (3 * CHUNK + 5, 100_000),
        (5000, 1), // a byte per read
    ] {
        let data: Vec<u8> = (0..len as u64).map(swp::testkit::pattern_byte).collect();
        let mut input = Trickle { data: &data, step };
        let (sent, got) = tokio::join!(
            swp::file::send_reader(&mut a, &mut input, "piped.bin", None),
            recv_bytes(&mut b, 64 << 20),
        );
        let (meta, bytes) = got.unwrap_or_else(|e| panic!("{len} bytes by {step}: {e}"));
        let sent = sent.unwrap();
        assert_eq!(bytes.len(), len);
        assert!(
            bytes[..] == data[..],
            "{len} bytes by {step}: content differs"
        );
        assert_eq!(sent.meta, meta);
        assert_eq!(
            meta.blake2b.as_slice(),
            Blake2b512::digest(&data).as_slice()
        );
        assert_eq!((sent.resumed_from, sent.bytes_sent), (0, len as u64));
    }
}

#[tokio::test(start_paused = true)]
async fn a_pipe_idle_longer_than_every_control_wait_still_arrives() {
    // The producer pauses 3x the receiver's control timeout twice; the
    // sender's heartbeats keep the receiver's bounded wait going.
    let tmp = TempDir::new("idlepipe");
    let out = tmp.0.join("out");
    let net = lossy(22);
    let (mut a, mut b) = sim_pair(&net, Config::new("A", "B"), Config::new("B", "")).await;
    let (mut tx, mut rx) = tokio::io::duplex(64 * 1024);
    let producer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let mut all = Vec::new();
        for part in 0..3u8 {
            let chunk = vec![part; 300_000];
            tx.write_all(&chunk).await.unwrap();
            all.extend_from_slice(&chunk);
            if part < 2 {
                tokio::time::sleep(3 * swp::file::CONTROL_TIMEOUT).await;
            }
        }
        all
    });
    let t = tokio::time::Instant::now();
    let (sent, got) = tokio::join!(
        swp::file::send_reader(&mut a, &mut rx, "logs/today.log", None),
        recv_file(&mut b, &out, None),
    );
    let (meta, path) = got.unwrap();
    let all = producer.await.unwrap();
    assert!(t.elapsed() >= 6 * swp::file::CONTROL_TIMEOUT);
    assert_eq!(sent.unwrap().meta, meta);
    assert_eq!(path, out.join("logs/today.log"));
    assert!(std::fs::read(&path).unwrap() == all);
    assert_eq!(listing(&out.join("logs")), vec!["today.log"]);
}

#[tokio::test(start_paused = true)]
async fn an_identical_file_is_skipped_a_different_one_refused_or_replaced() {
    let tmp = TempDir::new("identical");
    let src = tmp.0.join("same.bin");
    let size = 2 * 1024 * 1024 + 3;
    write_pattern(&src, size, 5);
    let out = tmp.0.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let there = out.join("same.bin");
    std::fs::copy(&src, &there).unwrap();
    let net = lossy(23);
    let (mut a, mut b) = sim_pair(&net, Config::new("A", "B"), Config::new("B", "")).await;
    // Identical: nothing is sent, both sides succeed.
    let before = b.stats().protocol.app.bytes_read;
    let (sent, got) = tokio::join!(send_file(&mut a, &src, None), recv_file(&mut b, &out, None));
    let sent = sent.unwrap();
    assert_eq!((sent.resumed_from, sent.bytes_sent), (size as u64, 0));
    assert_eq!(got.unwrap().0, sent.meta);
    let read = b.stats().protocol.app.bytes_read - before;
    assert!(read < 1000, "{read} bytes crossed for an identical file");
    // Same size, one byte different: refused, the old file kept.
    let mut other = std::fs::read(&src).unwrap();
    other[size - 1] ^= 1;
    std::fs::write(&there, &other).unwrap();
    let (sent, got) = tokio::join!(send_file(&mut a, &src, None), recv_file(&mut b, &out, None));
    assert!(matches!(got, Err(FileError::Exists { .. })), "{got:?}");
    assert!(sent.unwrap_err().to_string().contains("already exists"));
    assert!(std::fs::read(&there).unwrap() == other);
    // Replacing asked for: replaced, verified.
    let net = lossy(24);
    let (mut a, mut b) = sim_pair(&net, Config::new("A", "B"), Config::new("B", "")).await;
    let replace = swp::file::ReceiveOptions::new().overwrite(true);
    let (sent, got) = tokio::join!(
        send_file(&mut a, &src, None),
        swp::file::recv_file_with(&mut b, &out, &replace, None)
    );
    assert_eq!(sent.unwrap().bytes_sent, size as u64);
    got.unwrap();
    assert!(std::fs::read(&there).unwrap() == std::fs::read(&src).unwrap());
    // Another size: refused at once.
    std::fs::write(&there, b"short").unwrap();
    let (sent, got) = tokio::join!(send_file(&mut a, &src, None), recv_file(&mut b, &out, None));
    assert!(matches!(got, Err(FileError::Exists { .. })), "{got:?}");
    assert!(sent.is_err());
    assert_eq!(std::fs::read(&there).unwrap(), b"short");
}

/// A hostile sender's sequences after the Offer, each with what the
/// receiver must say; nothing may be saved under the name.
#[tokio::test(start_paused = true)]
async fn forged_segment_sequences_are_refused_and_nothing_is_saved() {
    let empty = Blake2b512::digest(b"").to_vec();
    let five = Blake2b512::digest(b"hello").to_vec();
    type Case = (&'static str, Option<u64>, Vec<Control>, &'static str);
    let cases: Vec<Case> = vec![
        (
            "more than offered",
            Some(3),
            vec![Control::Segment { len: 5 }],
            "more than the 3 bytes",
        ),
        (
            "End before the offered size",
            Some(10),
            vec![
                Control::Segment { len: 5 },
                Control::End {
                    size: 5,
                    blake2b: five.clone(),
                },
            ],
            "offered 10",
        ),
        (
            "End miscounting",
            None,
            vec![
                Control::Segment { len: 5 },
                Control::End {
                    size: 4,
                    blake2b: five.clone(),
                },
            ],
            "says 4",
        ),
        (
            "short digest",
            None,
            vec![
                Control::Segment { len: 5 },
                Control::End {
                    size: 5,
                    blake2b: vec![1; 10],
                },
            ],
            "not 64",
        ),
        (
            "wrong digest",
            None,
            vec![
                Control::Segment { len: 5 },
                Control::End {
                    size: 5,
                    blake2b: empty.clone(),
                },
            ],
            "mismatch",
        ),
        (
            "a Start again",
            None,
            vec![Control::Start { offset: 0 }],
            "expected Segment or End",
        ),
    ];
    for (i, (what, size, script, says)) in cases.into_iter().enumerate() {
        let tmp = TempDir::new(&format!("forged{i}"));
        let out = tmp.0.join("out");
        let net = lossy(30 + i as u64);
        let (mut a, mut b) = sim_pair(&net, Config::new("A", "B"), Config::new("B", "")).await;
        let out2 = out.clone();
        let receiver = tokio::spawn(async move { recv_file(&mut b, &out2, None).await });
        offer(&a, "f.bin", size).await;
        let _accept = next_control(&a).await;
        control(&a, Control::Start { offset: 0 }).await;
        // The receiver may refuse (and reset) before the script is done.
        for c in script {
            let data = matches!(c, Control::Segment { .. });
            let _ = a.send(Bytes::from(rmp_serde::to_vec(&c).unwrap())).await;
            if data {
                use tokio::io::AsyncWriteExt;
                let _ = a.write_all(b"hello").await;
                let _ = a.flush().await;
            }
        }
        let err = receiver.await.unwrap().unwrap_err();
        assert!(err.to_string().contains(says), "{what}: {err}");
        let left = listing(&out);
        assert!(!left.iter().any(|n| n == "f.bin"), "{what}: {left:?}");
        // The sender is told why.
        let told = loop {
            match a.recv().await {
                Ok(Some(m)) => {
                    if let Ok(Control::Verdict { ok: false, message }) = rmp_serde::from_slice(&m) {
                        break message;
                    }
                }
                Ok(None) => panic!("{what}: ended without a Verdict"),
                Err(e) => break e.to_string(),
            }
        };
        assert!(told.contains(says), "{what}: the sender heard {told:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_stream_to_a_writer_that_fails_to_verify_says_discard_it() {
    let net = lossy(40);
    let (mut a, mut b) = sim_pair(&net, Config::new("A", "B"), Config::new("B", "")).await;
    let receiver = tokio::spawn(async move {
        let mut out = Vec::new();
        let r = swp::file::recv_to_writer(&mut b, &mut out, None).await;
        (r, out)
    });
    offer(&a, "f.bin", None).await;
    let _accept = next_control(&a).await;
    control(&a, Control::Start { offset: 0 }).await;
    control(&a, Control::Segment { len: 5 }).await;
    use tokio::io::AsyncWriteExt;
    a.write_all(b"hello").await.unwrap();
    let end = Control::End {
        size: 5,
        blake2b: vec![9; 64],
    };
    control(&a, end).await;
    let (r, out) = receiver.await.unwrap();
    let e = r.unwrap_err().to_string();
    assert!(e.contains("mismatch") && e.contains("discard"), "{e}");
    assert_eq!(out, b"hello"); // written as it came: hence the warning
}

#[tokio::test(start_paused = true)]
async fn a_stream_of_unknown_length_cut_short_leaves_no_part() {
    let tmp = TempDir::new("cutpipe");
    let out = tmp.0.join("out");
    let net = lossy(41);
    let (mut a, mut b) = sim_pair(&net, Config::new("A", "B"), Config::new("B", "")).await;
    let out2 = out.clone();
    let receiver = tokio::spawn(async move { recv_file(&mut b, &out2, None).await });
    offer(&a, "cut.bin", None).await;
    let _accept = next_control(&a).await;
    control(&a, Control::Start { offset: 0 }).await;
    control(&a, Control::Segment { len: 100_000 }).await;
    use tokio::io::AsyncWriteExt;
    a.write_all(&[1u8; 40_000]).await.unwrap();
    a.flush().await.unwrap();
    a.abort_with("the producer died");
    let err = receiver.await.unwrap().unwrap_err();
    assert!(err.to_string().contains("the producer died"), "{err}");
    assert!(listing(&out).is_empty(), "{:?}", listing(&out));
}

/// Files whose size sits on each edge of the sender's read-ahead and the
/// receiver's write-behind batches (1 MiB), into a directory, a writer
/// and memory: byte-exact, and the digest is the content's (checked with
/// an independent BLAKE2b).
#[tokio::test(start_paused = true)]
async fn files_at_every_read_ahead_and_write_behind_boundary_arrive_exact() {
    const CHUNK: usize = 1 << 20;
    let tmp = TempDir::new("boundaries");
    let net = lossy(33);
    let (mut a, mut b) = sim_pair(&net, Config::new("A", "B"), Config::new("B", "")).await;
    for len in [
        0,
        1,
        CHUNK - 1,
        CHUNK,
        CHUNK + 1,
        2 * CHUNK + 1,
        3 * CHUNK - 1,
    ] {
        let src = tmp.0.join(format!("src-{len}.bin"));
        write_pattern(&src, len, 0x3c);
        let want = std::fs::read(&src).unwrap();
        let digest = Blake2b512::digest(&want);
        // Into a directory.
        let out = tmp.0.join(format!("out-{len}"));
        let (sent, got) =
            tokio::join!(send_file(&mut a, &src, None), recv_file(&mut b, &out, None));
        let (meta, saved) = got.unwrap_or_else(|e| panic!("{len} bytes into a file: {e}"));
        assert_eq!(sent.unwrap().meta, meta);
        assert!(
            std::fs::read(&saved).unwrap() == want,
            "{len} bytes into a file differ"
        );
        assert_eq!(meta.blake2b.as_slice(), digest.as_slice(), "{len}");
        // Into a writer.
        let mut written = Vec::new();
        let (sent, got) = tokio::join!(
            send_file(&mut a, &src, None),
            swp::file::recv_to_writer(&mut b, &mut written, None)
        );
        let meta = got.unwrap_or_else(|e| panic!("{len} bytes into a writer: {e}"));
        assert_eq!(sent.unwrap().meta, meta);
        assert!(written == want, "{len} bytes into a writer differ");
        // Into memory.
        let (sent, got) = tokio::join!(send_file(&mut a, &src, None), recv_bytes(&mut b, 1 << 30));
        let (meta, bytes) = got.unwrap_or_else(|e| panic!("{len} bytes into memory: {e}"));
        assert_eq!(sent.unwrap().meta, meta);
        assert!(bytes[..] == want[..], "{len} bytes into memory differ");
    }
}

/// A resume whose verified prefix ends on each side of a read-ahead chunk
/// sends exactly the rest, and the whole file verifies.
#[tokio::test(start_paused = true)]
async fn resumes_from_every_chunk_edge_send_only_the_rest() {
    const CHUNK: usize = 1 << 20;
    let tmp = TempDir::new("resume-edges");
    let net = lossy(34);
    let (mut a, mut b) = sim_pair(&net, Config::new("A", "B"), Config::new("B", "")).await;
    let len = 2 * CHUNK + 3;
    let src = tmp.0.join("big.bin");
    write_pattern(&src, len, 0x51);
    let want = std::fs::read(&src).unwrap();
    for have in [1, CHUNK - 1, CHUNK, CHUNK + 1, len - 1] {
        let out = tmp.0.join(format!("out-{have}"));
        std::fs::create_dir_all(&out).unwrap();
        // What an interrupted transfer leaves: the part and its size.
        std::fs::write(out.join(".big.bin.swp-part"), &want[..have]).unwrap();
        std::fs::write(out.join(".big.bin.swp-part.meta"), format!("{len}\n")).unwrap();
        let (sent, got) =
            tokio::join!(send_file(&mut a, &src, None), recv_file(&mut b, &out, None));
        let sent = sent.unwrap_or_else(|e| panic!("resume from {have}: {e}"));
        let (_, saved) = got.unwrap();
        assert_eq!(
            (sent.resumed_from, sent.bytes_sent),
            (have as u64, (len - have) as u64),
            "resume from {have}"
        );
        assert!(
            std::fs::read(&saved).unwrap() == want,
            "resume from {have}: content differs"
        );
    }
}

/// A receive that times out before any Offer leaves the session usable; one
/// dropped mid-transfer resets the session, so the sender fails at once
/// with the reason, not after its buffered data or a budget.
#[tokio::test(start_paused = true)]
async fn a_transfer_dropped_half_way_tells_the_peer_and_one_not_begun_changes_nothing() {
    let tmp = TempDir::new("cancel");
    let src = tmp.0.join("c.bin");
    write_pattern(&src, 4 << 20, 5);
    let out = tmp.0.join("out");
    let net = lossy(40);
    let (mut a, mut b) = sim_pair(
        &net,
        Config::new("A", "B").max_payload(1024).window(16, 16 << 10),
        Config::new("B", "").max_payload(1024).window(16, 16 << 10),
    )
    .await;
    // Not begun: nothing sent, nothing changed.
    let waited = tokio::time::timeout(Duration::from_secs(1), recv_file(&mut b, &out, None)).await;
    assert!(waited.is_err(), "no Offer came");
    assert!(b.close_reason().is_none(), "the session is as it was");
    // Half-way: the receiver's transfer is dropped once 1 MiB is written.
    let (ptx, mut prx) = watch::channel(Progress::default());
    let sender = tokio::spawn(async move {
        let r = send_file(&mut a, &src, None).await;
        (r, tokio::time::Instant::now(), a)
    });
    let half = async {
        while prx.borrow_and_update().bytes_sent < 1 << 20 {
            prx.changed().await.unwrap();
        }
    };
    tokio::select! {
        r = recv_file(&mut b, &out, Some(&ptx)) => panic!("a 4 MiB file at 16 KiB a window came early: {r:?}"),
        () = half => {}
    }
    let dropped = tokio::time::Instant::now();
    let (r, ended, _a) = tokio::time::timeout(Duration::from_secs(30), sender)
        .await
        .expect("the sender was not told within 30 s")
        .unwrap();
    let err = r.unwrap_err().to_string();
    assert!(err.contains("the receiver stopped mid-transfer"), "{err}");
    assert!(
        ended - dropped < Duration::from_secs(2),
        "{:?}",
        ended - dropped
    );
    assert!(!out.join("c.bin").exists());
    drop(b);
}

/// Windows too small for the exchange's control messages are refused
/// before any data, saying how much they need; one just big enough works.
#[tokio::test(start_paused = true)]
async fn a_window_too_small_for_the_control_messages_is_refused_before_any_data() {
    let tmp = TempDir::new("small-window");
    let src = tmp.0.join("s.bin");
    write_pattern(&src, 10_000, 6);
    let out = tmp.0.join("out");
    let tiny = |c: Config| c.max_payload(64).window(1, 64).send_buffer(64);
    let net = lossy(41);
    let (mut a, b) = sim_pair(&net, tiny(Config::new("A", "B")), Config::new("B", "")).await;
    let err = send_file(&mut a, &src, None).await.unwrap_err();
    assert!(
        matches!(err, FileError::WindowTooSmall { most: 64, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("raise the window"), "{err}");
    assert_eq!(a.stats().protocol.app.bytes_written, 0, "nothing was sent");
    // The receiver finds its own Accept too large for the sender's window.
    let (mut a2, mut b2) =
        sim_pair(&net, Config::new("A2", "B2"), tiny(Config::new("B2", ""))).await;
    let s2 = src.clone();
    let sender = tokio::spawn(async move { send_file(&mut a2, &s2, None).await });
    let got = recv_file(&mut b2, &out, None).await.unwrap_err();
    assert!(
        matches!(got, FileError::WindowTooSmall { most: 64, .. }),
        "{got}"
    );
    let told = sender.await.unwrap().unwrap_err().to_string();
    assert!(told.contains("a file transfer needs"), "{told}");
    // 128 bytes carry every control message of a short name.
    let fits = |c: Config| c.max_payload(64).window(2, 128).send_buffer(128);
    let (mut a3, mut b3) = sim_pair(
        &net,
        fits(Config::new("A3", "B3")),
        fits(Config::new("B3", "")),
    )
    .await;
    let (sent, got) = tokio::join!(
        send_file(&mut a3, &src, None),
        recv_file(&mut b3, &out, None)
    );
    sent.unwrap();
    assert_eq!(
        std::fs::read(got.unwrap().1).unwrap(),
        std::fs::read(&src).unwrap()
    );
    drop((a, b));
}

/// A receiver that has the whole file, verified and in place, says so even
/// when the sender's acknowledgement of its Verdict never arrives (the
/// sender's program exits as it hears, an outage begins): it waits for the
/// acknowledgement within its dead-peer budget, then succeeds. It used to
/// fail ("peer unreachable") with the complete file on disk while the
/// sender reported success.
#[tokio::test(start_paused = true)]
async fn a_receiver_with_the_whole_file_succeeds_though_its_verdict_is_not_confirmed() {
    let tmp = TempDir::new("unconfirmed");
    let out = tmp.0.join("out");
    let net = SimNetwork::new(40, LinkConfig::new().latency(Duration::from_millis(2)));
    let cfg = |l: &str, r: &str| Config::new(l, r).keepalive(Duration::from_secs(1), 10);
    let (a, mut b) = sim_pair(&net, cfg("A", "B"), cfg("B", "")).await;
    let out2 = out.clone();
    let receiver = tokio::spawn(async move {
        let r = recv_file(&mut b, &out2, None).await;
        (r, tokio::time::Instant::now())
    });
    offer(&a, "f.bin", Some(5)).await;
    let _accept = next_control(&a).await;
    control(&a, Control::Start { offset: 0 }).await;
    control(&a, Control::Segment { len: 5 }).await;
    use tokio::io::AsyncWriteExt;
    let mut a = a;
    a.write_all(b"hello").await.unwrap();
    let five = Blake2b512::digest(b"hello").to_vec();
    control(
        &a,
        Control::End {
            size: 5,
            blake2b: five,
        },
    )
    .await;
    let verdict = next_control(&a).await;
    assert!(
        matches!(verdict, Control::Verdict { ok: true, .. }),
        "{verdict:?}"
    );
    // The sender heard; from now on nothing it sends reaches the receiver.
    let heard = tokio::time::Instant::now();
    let ib = net.with(|n| n.lookup("B").unwrap());
    net.with(|n| n.set_black_hole(ib, true));
    let (r, ended) = receiver.await.unwrap();
    let (meta, path) = r.expect("the receiver has the whole file and says so");
    assert_eq!((meta.size, path.clone()), (5, out.join("f.bin")));
    assert_eq!(std::fs::read(&path).unwrap(), b"hello");
    assert!(
        ended - heard <= Duration::from_secs(15),
        "the wait for the acknowledgement is bounded by the budget: {:?}",
        ended - heard
    );
    drop(a);
}

/// A receiver blocked writing to a slow output (a consumer at the other end
/// of a pipe that does not read) still hears at once that the sender
/// failed, in the sender's words. It used to learn only when the write
/// returned: never, for a consumer that had stopped.
#[tokio::test(start_paused = true)]
async fn a_receiver_blocked_on_its_output_hears_the_sender_fail_at_once() {
    let net = SimNetwork::new(42, LinkConfig::new().latency(Duration::from_millis(2)));
    let (a, mut b) = sim_pair(&net, Config::new("A", "B"), Config::new("B", "")).await;
    // A pipe of 1 KiB whose reading end is kept but never read.
    let (mut out, _consumer) = tokio::io::duplex(1024);
    let receiver = tokio::spawn(async move {
        let r = swp::file::recv_to_writer(&mut b, &mut out, None).await;
        (r, tokio::time::Instant::now())
    });
    offer(&a, "f.bin", None).await;
    let _accept = next_control(&a).await;
    control(&a, Control::Start { offset: 0 }).await;
    control(&a, Control::Segment { len: 100_000 }).await;
    use tokio::io::AsyncWriteExt;
    let mut a = a;
    a.write_all(&[3u8; 100_000]).await.unwrap();
    a.flush_acked().await.unwrap(); // all there; the receiver is stuck writing
    let failed = tokio::time::Instant::now();
    a.abort_with("the sender's disk went away");
    let (r, ended) = tokio::time::timeout(Duration::from_secs(30), receiver)
        .await
        .expect("the receiver returns")
        .unwrap();
    let e = r.unwrap_err().to_string();
    assert!(e.contains("the sender's disk went away"), "{e}");
    assert!(
        ended - failed <= Duration::from_secs(1),
        "the receiver heard {:?} after the sender failed",
        ended - failed
    );
}

/// Two sessions over a real nats-server, `tag` keeping their inboxes apart.
async fn nats_pair(server: &swp::server::NatsServer, tag: &str) -> (Session, Session) {
    let (ta, tb) = (common::nats(server).await, common::nats(server).await);
    let (ia, ib) = (
        common::inbox("stall", &format!("a{tag}")),
        common::inbox("stall", &format!("b{tag}")),
    );
    let l = Session::listen(tb, Config::new(&ib, "")).await.unwrap();
    let acc = tokio::spawn(l.accept());
    let a = Session::connect(ta, Config::new(&ia, &ib)).await.unwrap();
    (a, acc.await.unwrap().unwrap())
}

/// Which disk operation a scene stalls (`StalledDisk::writes`, ...).
type MakeStall = fn(&Path) -> swp::testkit::StalledDisk;

/// How a stalled transfer ended: the receiver's result, how long after the
/// sender failed it returned, the sender's result.
type Outcome = (
    Result<(swp::file::FileMeta, std::path::PathBuf), FileError>,
    Duration,
    Result<swp::file::SendReport, FileError>,
);

/// A stalled-disk scene: `out` (where the receiver writes, stalled as
/// `stall` says) and one source file per salt, `size` bytes each.
struct Stalled {
    tag: String,
    /// Removes it all at the end.
    _tmp: TempDir,
    out: std::path::PathBuf,
    sources: Vec<std::path::PathBuf>,
    stall: swp::testkit::StalledDisk,
}

impl Stalled {
    fn new(tag: &str, stall: MakeStall, size: usize, salts: &[u8]) -> Stalled {
        let tmp = TempDir::new(tag);
        let out = tmp.0.join("out");
        std::fs::create_dir_all(&out).unwrap();
        let sources = salts
            .iter()
            .map(|&salt| {
                let dir = tmp.0.join(format!("src{salt}"));
                std::fs::create_dir_all(&dir).unwrap();
                write_pattern(&dir.join("f.bin"), size, salt);
                dir.join("f.bin")
            })
            .collect();
        let stall = stall(&out);
        Stalled {
            tag: tag.to_string(),
            _tmp: tmp,
            out,
            sources,
            stall,
        }
    }

    /// Sends source `i` over a new pair until the receiver's disk is
    /// stuck, then fails the sender with `why`; how it ended.
    async fn fail_the_sender_when_stuck(
        &self,
        server: &swp::server::NatsServer,
        i: usize,
        why: &str,
    ) -> Outcome {
        let (mut a, mut b) = nats_pair(server, &format!("{}-{i}", self.tag)).await;
        let abort = a.abort_handle();
        let o = self.out.clone();
        let receiver = tokio::spawn(async move {
            let r = recv_file(&mut b, &o, None).await;
            (r, std::time::Instant::now())
        });
        let s = self.sources[i].clone();
        let sender = tokio::spawn(async move { send_file(&mut a, &s, None).await });
        tokio::time::timeout(Duration::from_secs(30), self.stall.stuck())
            .await
            .expect("the receiver's disk is stuck");
        let failed = std::time::Instant::now();
        abort.abort_with(why);
        let (r, ended) = tokio::time::timeout(Duration::from_secs(30), receiver)
            .await
            .expect("the receiver returns while its disk is stuck")
            .unwrap();
        (r, ended - failed, sender.await.unwrap())
    }

    /// Sends source `i` over a new pair; the receiver must wait for the
    /// stuck write before it ends, and ends once it is released with
    /// exactly source `i` as the only file in `out`. The sender's report.
    async fn next_attempt_waits_for_the_disk(
        &self,
        server: &swp::server::NatsServer,
        i: usize,
    ) -> swp::file::SendReport {
        let (mut a, mut b) = nats_pair(server, &format!("{}-next{i}", self.tag)).await;
        let o = self.out.clone();
        let mut receiver = tokio::spawn(async move { recv_file(&mut b, &o, None).await });
        let s = self.sources[i].clone();
        let sender = tokio::spawn(async move { send_file(&mut a, &s, None).await });
        tokio::select! {
            r = &mut receiver => panic!("the next attempt ended before the stuck write returned: {r:?}"),
            () = self.stall.a_transfer_waits() => {}
        }
        self.stall.release();
        let (meta, path) = tokio::time::timeout(Duration::from_secs(60), receiver)
            .await
            .expect("the next attempt ends once the disk answered")
            .unwrap()
            .unwrap();
        let report = sender.await.unwrap().unwrap();
        self.stall.returned().await;
        self.presents(i, &meta, &path);
        report
    }

    /// Lets the stuck call go and waits for it to return; then sends source
    /// `i` over a new pair, which must end with exactly it in `out`. The
    /// sender's report.
    async fn next_attempt_goes_through(
        &self,
        server: &swp::server::NatsServer,
        i: usize,
    ) -> swp::file::SendReport {
        self.stall.release();
        self.stall.returned().await;
        let (mut a, mut b) = nats_pair(server, &format!("{}-after{i}", self.tag)).await;
        let o = self.out.clone();
        let receiver = tokio::spawn(async move { recv_file(&mut b, &o, None).await });
        let report = send_file(&mut a, &self.sources[i], None).await.unwrap();
        let (meta, path) = receiver.await.unwrap().unwrap();
        self.presents(i, &meta, &path);
        report
    }

    /// The receiver failed in the sender's words (`why`) within 2 s of the
    /// sender's failure, while its disk was still stuck.
    fn heard_at_once(&self, case: &str, why: &str, (r, took, sent): Outcome) {
        let e = r.unwrap_err().to_string();
        assert!(e.contains(why), "{case}: {e}");
        assert!(
            took <= Duration::from_secs(2),
            "{case}: the receiver heard {took:?} after the sender failed"
        );
        assert!(
            self.stall.is_stuck(),
            "{case}: the disk was still stuck when it returned"
        );
        assert!(sent.is_err());
    }

    /// `out` holds exactly source `i`, as `f.bin`, and nothing else.
    fn presents(&self, i: usize, meta: &swp::file::FileMeta, path: &Path) {
        let want = std::fs::read(&self.sources[i]).unwrap();
        assert_eq!(meta.size, want.len() as u64);
        assert!(
            std::fs::read(path).unwrap() == want,
            "the file is exactly source {i}"
        );
        assert_eq!(listing(&self.out), vec!["f.bin"]);
    }
}

/// A receiver whose disk stops answering mid-write (a dead NFS server, a
/// failing USB stick) hears at once that the sender failed, in the
/// sender's words, while its write is still stuck. The stuck write keeps
/// the part: a new attempt at the same name (other content, so it starts
/// again at 0) waits for it instead of truncating the part under it, and
/// the file it presents is exactly the new sender's. Before, the receiver
/// learned of the failure only when the disk answered, and a write that
/// returned after a new attempt had started landed stale bytes in the
/// file that attempt had verified. The same for a stuck writeback (the
/// `sync_data` a receiver starts beside its writes every 32 MiB): the
/// transfer goes on beside it, the sender fails mid-transfer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_on_a_stalled_disk_hears_the_sender_fail_at_once_and_a_new_attempt_waits_for_the_write()
 {
    let server = common::nats_server();
    use swp::testkit::StalledDisk;
    let cases: [(&str, MakeStall, usize); 2] = [
        ("write", StalledDisk::writes, 6 << 20),
        ("writeback", StalledDisk::syncs, 64 << 20),
    ];
    for (case, stall, size) in cases {
        let scene = Stalled::new(&format!("stalled-{case}"), stall, size, &[1, 2]);
        let why = "the sender's disk went away";
        let outcome = scene.fail_the_sender_when_stuck(&server, 0, why).await;
        scene.heard_at_once(case, why, outcome);
        // A new attempt, other content: it must not write before the stuck
        // write has returned.
        scene.next_attempt_waits_for_the_disk(&server, 1).await;
    }
}

/// A receiver whose disk stalls while it hashes a part to offer a resume
/// (the sender waits up to `HASH_TIMEOUT` for its Accept) hears at once
/// that the sender failed, while the read is still stuck; the part is
/// untouched, and the next attempt resumes from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_whose_resume_hash_stalls_hears_the_sender_fail_at_once() {
    const SIZE: usize = 3 << 20;
    let server = common::nats_server();
    let scene = Stalled::new("stalled-hash", swp::testkit::StalledDisk::reads, SIZE, &[6]);
    let data = std::fs::read(&scene.sources[0]).unwrap();
    let part = scene.out.join(".f.bin.swp-part");
    std::fs::write(&part, &data[..1 << 20]).unwrap();
    std::fs::write(scene.out.join(".f.bin.swp-part.meta"), format!("{SIZE}\n")).unwrap();
    let why = "the sender was stopped";
    let outcome = scene.fail_the_sender_when_stuck(&server, 0, why).await;
    scene.heard_at_once("resume hash", why, outcome);
    assert!(
        std::fs::read(&part).unwrap() == data[..1 << 20],
        "the part is untouched"
    );
    // A read holds no part: the next attempt goes on from it.
    let report = scene.next_attempt_goes_through(&server, 0).await;
    assert_eq!(report.resumed_from, 1 << 20);
}

/// A receiver whose file system stops answering (a dead NFS mount) hears
/// at once that the sender failed, while the call is still stuck; once the
/// file system answers, a new attempt goes through. Two places: before the
/// Accept (the first call: creating the destination directory), and after
/// the Start while it prepares its part (recording the offered size in the
/// meta file; a stale one of an earlier attempt, with no part beside it,
/// is touched first there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_whose_file_system_stalls_hears_the_sender_fail_at_once() {
    let server = common::nats_server();
    let cases: [(&str, MakeStall); 2] = [
        ("before the accept", swp::testkit::StalledDisk::metadata),
        ("preparing the part", |out| {
            let meta = out.join(".f.bin.swp-part.meta");
            std::fs::write(&meta, "stale\n").unwrap();
            swp::testkit::StalledDisk::metadata(&meta)
        }),
    ];
    for (i, (case, stall)) in cases.into_iter().enumerate() {
        let scene = Stalled::new(&format!("stalled-fs-{i}"), stall, 1 << 20, &[7]);
        let why = "the sender gave up on the receiver";
        let outcome = scene.fail_the_sender_when_stuck(&server, 0, why).await;
        scene.heard_at_once(case, why, outcome);
        scene.next_attempt_goes_through(&server, 0).await;
    }
}

/// A sender that fails once every byte is at the receiver (it gave up
/// waiting for the Verdict, it was interrupted) while the receiver's disk
/// does not finish the final sync: the receiver gives the disk
/// `LAST_WRITE_GRACE`, no more, and fails with the sender's words while the
/// sync is still stuck; nothing is presented as complete. The next attempt
/// waits for the sync to return and seals the whole part without
/// resending a byte. Before, the receiver waited for the disk for as long
/// as the disk took.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_whose_final_sync_stalls_hears_the_sender_fail_within_the_grace_and_the_next_attempt_resends_nothing()
 {
    const SIZE: usize = 3 << 20;
    let server = common::nats_server();
    let scene = Stalled::new("stalled-sync", swp::testkit::StalledDisk::syncs, SIZE, &[3]);
    let (r, took, sent) = scene
        .fail_the_sender_when_stuck(&server, 0, "the sender gave up waiting for the verdict")
        .await;
    let e = r.unwrap_err().to_string();
    assert!(
        e.contains("the sender gave up waiting for the verdict"),
        "{e}"
    );
    let grace = swp::file::LAST_WRITE_GRACE;
    assert!(
        took >= grace && took <= grace + Duration::from_secs(2),
        "the receiver gave up {took:?} after the sender failed, not the grace"
    );
    assert!(
        scene.stall.is_stuck(),
        "the sync was still stuck when it returned"
    );
    assert!(
        !scene.out.join("f.bin").exists(),
        "nothing is presented as complete"
    );
    assert!(sent.is_err());
    // The next attempt: the whole part is there once the sync returns.
    let report = scene.next_attempt_waits_for_the_disk(&server, 0).await;
    assert_eq!(
        (report.resumed_from, report.bytes_sent),
        (SIZE as u64, 0),
        "the whole part was resumed, nothing sent again"
    );
}

/// The same failure with a disk that answers within the grace: the
/// receiver, which heard the sender fail, still seals the whole, verified
/// file and returns it complete (the sender, sent again, finds it there).
/// Giving up at once would make a slow final sync cost a resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_sync_that_returns_within_the_grace_after_the_sender_failed_still_presents_the_file()
 {
    let server = common::nats_server();
    let scene = Stalled::new("slow-sync", swp::testkit::StalledDisk::syncs, 3 << 20, &[4]);
    let (mut a, mut b) = nats_pair(&server, "slow").await;
    let (abort, heard) = (a.abort_handle(), b.abort_handle());
    let o = scene.out.clone();
    let receiver = tokio::spawn(async move { recv_file(&mut b, &o, None).await });
    let s = scene.sources[0].clone();
    let sender = tokio::spawn(async move { send_file(&mut a, &s, None).await });
    tokio::time::timeout(Duration::from_secs(30), scene.stall.stuck())
        .await
        .expect("the receiver's final sync is stuck");
    abort.abort_with("the sender was interrupted");
    tokio::time::timeout(Duration::from_secs(10), heard.wait_closed())
        .await
        .expect("the receiver's session hears the sender's failure");
    assert!(
        scene.stall.is_stuck(),
        "the sync is held until the failure was heard"
    );
    scene.stall.release();
    let (meta, path) = tokio::time::timeout(Duration::from_secs(30), receiver)
        .await
        .expect("the receiver returns")
        .unwrap()
        .expect("a whole file whose sync returned within the grace is presented");
    scene.presents(0, &meta, &path);
    assert!(
        sender.await.unwrap().is_err(),
        "the sender failed as it was told"
    );
}

/// A sender whose disk stops answering while it reads its file (a chunk
/// to send, the prefix it hashes to prove a resume, or the file's metadata
/// before its Offer) hears at once that the receiver failed, in the
/// receiver's words, while the call is still stuck. Before, it learned
/// only when the call returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_on_a_stalled_disk_hears_the_receiver_fail_at_once() {
    const SIZE: usize = 3 << 20;
    let server = common::nats_server();
    use swp::testkit::StalledDisk;
    let cases: [(&str, MakeStall); 3] = [
        ("chunk", StalledDisk::reads),
        ("resume-hash", StalledDisk::reads),
        ("metadata", StalledDisk::metadata),
    ];
    for (case, stall) in cases {
        let tmp = TempDir::new(&format!("stalled-read-{case}"));
        let (out, src_dir) = (tmp.0.join("out"), tmp.0.join("src"));
        for d in [&out, &src_dir] {
            std::fs::create_dir_all(d).unwrap();
        }
        let src = src_dir.join("f.bin");
        write_pattern(&src, SIZE, 5);
        if case == "resume-hash" {
            // A part of an earlier attempt: the sender hashes its own
            // first MiB before it says where to start.
            let data = std::fs::read(&src).unwrap();
            std::fs::write(out.join(".f.bin.swp-part"), &data[..1 << 20]).unwrap();
            std::fs::write(out.join(".f.bin.swp-part.meta"), format!("{SIZE}\n")).unwrap();
        }
        let stall = stall(&src_dir);
        let (mut a, mut b) = nats_pair(&server, &format!("read-{case}")).await;
        let abort = b.abort_handle();
        let sender = tokio::spawn(async move {
            let r = send_file(&mut a, &src, None).await;
            (r, std::time::Instant::now())
        });
        let o = out.clone();
        let receiver = tokio::spawn(async move { recv_file(&mut b, &o, None).await });
        tokio::time::timeout(Duration::from_secs(30), stall.stuck())
            .await
            .unwrap_or_else(|_| panic!("{case}: the sender's disk is stuck"));
        let failed = std::time::Instant::now();
        abort.abort_with("the receiver's program was stopped");
        let (r, ended) = tokio::time::timeout(Duration::from_secs(30), sender)
            .await
            .unwrap_or_else(|_| panic!("{case}: the sender returns while its disk is stuck"))
            .unwrap();
        let e = r.unwrap_err().to_string();
        assert!(
            e.contains("the receiver's program was stopped"),
            "{case}: {e}"
        );
        assert!(
            ended - failed <= Duration::from_secs(2),
            "{case}: the sender heard {:?} after the receiver failed",
            ended - failed
        );
        assert!(
            stall.is_stuck(),
            "{case}: the disk was still stuck when it returned"
        );
        assert!(receiver.await.unwrap().is_err());
        stall.release();
        stall.returned().await;
    }
}

/// A sender whose session lives (keepalives answered) but whose data stops
/// in the middle of a file (its read stuck) is given up on after
/// `CONTROL_TIMEOUT` of silence, not before and not never: the receiver
/// says why, tells the sender, and keeps what arrived for a resume. Before,
/// it waited for as long as the session lived.
#[tokio::test(start_paused = true)]
async fn a_sender_whose_data_stops_mid_file_is_given_up_on_after_the_control_timeout() {
    use tokio::io::AsyncWriteExt;
    const SIZE: u64 = 3 << 20;
    let tmp = TempDir::new("silent-mid-file");
    let out = tmp.0.join("out");
    let net = SimNetwork::new(43, LinkConfig::new().latency(Duration::from_millis(2)));
    let (mut a, mut b) = sim_pair(&net, Config::new("A", "B"), Config::new("B", "")).await;
    let o = out.clone();
    let receiver = tokio::spawn(async move {
        let r = recv_file(&mut b, &o, None).await;
        (r, tokio::time::Instant::now())
    });
    offer(&a, "f.bin", Some(SIZE)).await;
    let _accept = next_control(&a).await;
    control(&a, Control::Start { offset: 0 }).await;
    control(&a, Control::Segment { len: SIZE }).await;
    let sent = (1 << 20) + 1;
    let data: Vec<u8> = (0..sent).map(swp::testkit::pattern_byte).collect();
    a.write_all(&data).await.unwrap();
    a.flush_acked().await.unwrap();
    let silent = tokio::time::Instant::now();
    let (r, ended) = tokio::time::timeout(3 * swp::file::CONTROL_TIMEOUT, receiver)
        .await
        .expect("the receiver gives up on a silent sender")
        .unwrap();
    let e = r.unwrap_err().to_string();
    assert!(
        e.contains(&format!(
            "no data from the sender for {:?}, {sent} bytes into f.bin",
            swp::file::CONTROL_TIMEOUT
        )),
        "{e}"
    );
    // `silent` is when the sender heard the last byte acknowledged: the
    // receiver's wait began up to a round trip before.
    let took = ended - silent;
    assert!(
        took >= swp::file::CONTROL_TIMEOUT - Duration::from_millis(100)
            && took <= swp::file::CONTROL_TIMEOUT + Duration::from_secs(1),
        "gave up after {took:?} of silence"
    );
    match next_control(&a).await {
        Control::Verdict { ok: false, message } => {
            assert!(message.contains("no data from the sender"), "{message}")
        }
        other => panic!("the sender is told why, got {other:?}"),
    }
    let part = std::fs::read(out.join(".f.bin.swp-part")).unwrap();
    assert!(
        part == data,
        "the part keeps exactly what arrived ({} bytes)",
        part.len()
    );
}

/// Two receives into one destination at once (two `swp recv` into one
/// directory, two clients putting one name): the second is refused at
/// once, saying who holds the part, its sender hears why, and the first
/// ends with exactly its own file. Before, both wrote into one part.
#[tokio::test(start_paused = true)]
async fn a_second_receive_into_the_same_part_is_refused_at_once_and_the_first_is_untouched() {
    use tokio::io::AsyncWriteExt;
    const SIZE: usize = 3 << 20;
    let tmp = TempDir::new("same-part");
    let out = tmp.0.join("out");
    let second = tmp.0.join("second/f.bin");
    for d in [&out, &tmp.0.join("second")] {
        std::fs::create_dir_all(d).unwrap();
    }
    write_pattern(&second, SIZE, 2);
    let first: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
    let net = SimNetwork::new(3, LinkConfig::new().latency(Duration::from_millis(2)));
    let (mut a1, mut b1) = sim_pair(&net, Config::new("A1", "B1"), Config::new("B1", "")).await;
    let (mut a2, mut b2) = sim_pair(&net, Config::new("A2", "B2"), Config::new("B2", "")).await;
    // The first sender streams from a pipe fed here: it is under way, and
    // holds the part, for as long as the test says.
    let (mut feed, mut input) = tokio::io::duplex(64 << 10);
    let (p1, mut progress) = watch::channel(Progress::default());
    let (o1, o2) = (out.clone(), out.clone());
    let r1 = tokio::spawn(async move { recv_file(&mut b1, &o1, Some(&p1)).await });
    let s1 = tokio::spawn(async move { send_reader(&mut a1, &mut input, "f.bin", None).await });
    feed.write_all(&first[..SIZE / 3]).await.unwrap();
    progress
        .wait_for(|p| p.bytes_sent > 0)
        .await
        .expect("the first transfer moves");
    let r2 = tokio::spawn(async move { recv_file(&mut b2, &o2, None).await });
    let s = second.clone();
    let s2 = tokio::spawn(async move { send_file(&mut a2, &s, None).await });
    let e = r2.await.unwrap().unwrap_err();
    assert!(matches!(e, FileError::Busy { .. }), "{e}");
    let e = e.to_string();
    assert!(
        e.contains("another transfer of this process is receiving into it"),
        "{e}"
    );
    let told = s2.await.unwrap().unwrap_err().to_string();
    assert!(
        told.contains("another transfer"),
        "the second sender heard: {told}"
    );
    feed.write_all(&first[SIZE / 3..]).await.unwrap();
    drop(feed);
    let (meta, path) = r1.await.unwrap().unwrap();
    s1.await.unwrap().unwrap();
    assert_eq!(meta.size, SIZE as u64);
    assert!(std::fs::read(&path).unwrap() == first);
    assert_eq!(listing(&out), vec!["f.bin"]);
}
