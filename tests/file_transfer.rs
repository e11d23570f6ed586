//! send_file / recv_file: over SimNet in virtual time (loss, corruption,
//! partitions) and over a real nats-server.

mod common;

use common::{TempDir, listing};

use blake2::{Blake2b512, Digest};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;
use swp::Session;
use swp::file::{
    FileError, Progress, recv_bytes, recv_file, recv_file_as, send_bytes, send_file, send_file_as,
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
                data && k % 7 == 0
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
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(&src).unwrap();
    f.seek(SeekFrom::Start((size - (1 << 20)) as u64)).unwrap();
    f.write_all(&vec![0xAB; 1 << 20]).unwrap();
    drop(f);
    let err = receiver.await.unwrap().unwrap_err();
    assert!(matches!(err, FileError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains("nothing was saved"), "{err}");
    let sent = sender.await.unwrap().unwrap_err();
    assert!(matches!(sent, FileError::Rejected(_)), "{sent}");
    assert!(
        listing(&tmp.0.join("out")).is_empty(),
        "{:?}",
        listing(&tmp.0.join("out"))
    );
}

// The control messages, as a hostile peer would write them.
#[derive(Serialize, Deserialize, Debug)]
enum Control {
    Offer {
        name: String,
        size: u64,
        #[serde(with = "serde_bytes")]
        blake2b: Vec<u8>,
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
    Verdict {
        ok: bool,
        message: String,
    },
}

async fn offer(s: &Session, name: &str, size: u64, digest: Vec<u8>) {
    let m = rmp_serde::to_vec(&Control::Offer {
        name: name.into(),
        size,
        blake2b: digest,
        send_time_ns: 0,
    })
    .unwrap();
    s.send(Bytes::from(m)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn hostile_names_are_refused() {
    for name in ["/etc/passwd", "../../x", "a/../../x", "", "./.."] {
        let tmp = TempDir::new("hostile");
        let out = tmp.0.join("out");
        let net = lossy(3);
        let (a, mut b) = sim_pair(&net, Config::new("A", "B"), Config::new("B", "")).await;
        offer(&a, name, 4, vec![0; 64]).await;
        let err = recv_file(&mut b, &out, None).await.unwrap_err();
        assert!(matches!(err, FileError::HostileName(_)), "{name:?}: {err}");
        // The sender is told why.
        let verdict: Control = rmp_serde::from_slice(&a.recv().await.unwrap().unwrap()).unwrap();
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
    offer(&a, "f.bin", 5, vec![7; 64]).await; // the digest of something else
    let _accept = a.recv().await.unwrap().unwrap();
    a.send(Bytes::from(
        rmp_serde::to_vec(&Control::Start { offset: 0 }).unwrap(),
    ))
    .await
    .unwrap();
    use tokio::io::AsyncWriteExt;
    a.write_all(b"hello").await.unwrap();
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
    // A part that claims to belong to this file but holds other bytes.
    let data = std::fs::read(&src).unwrap();
    let digest: String = Blake2b512::digest(&data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::write(
        out.join(".t.bin.swp-part.meta"),
        format!("{} {digest}\n", data.len()),
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
        let m = rmp_serde::to_vec(&Control::Accept {
            offset: 0,
            prefix_blake2b: vec![],
        })
        .unwrap();
        b.send(Bytes::from(m)).await.unwrap();
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
