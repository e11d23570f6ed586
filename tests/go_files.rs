//! Files and streams with go-sliding-window peers: sessions in Go's wire
//! format, go-swp's `BigFile` form for send_file / recv_file (the vector
//! `bigfile.bin` is exactly what Go's `SendFile` streams), over SimNet with
//! loss and over a real nats-server.

mod common;

use blake2::{Blake2b512, Digest};
use common::*;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use swp::Session;
use swp::file::bigfile::{GoBigFile, decode_bigfile, encode_bigfile};
use swp::file::{FileError, recv_bytes, recv_file, recv_file_as, send_bytes, send_file};
use swp::proto::go::codec::GoTime;
use swp::proto::{Config, WireFormat};
use swp::simnet::LinkConfig;
use swp::transport::{SimNetwork, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn bigfile_vector() -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/go-swp/bigfile.bin");
    std::fs::read(&p).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}): it is part of the repository (tests/data)",
            p.display()
        )
    })
}

/// A (client configured for Go's format) and B (a native listener that
/// must switch to Go's format on A's Syn).
async fn go_pair(
    ta: Arc<dyn Transport>,
    tb: Arc<dyn Transport>,
    a: &str,
    b: &str,
) -> (Session, Session) {
    let l = Session::listen(tb, Config::new(b, "")).await.unwrap();
    let server = tokio::spawn(l.accept());
    let client = Session::connect(ta, Config::new(a, b).wire_format(WireFormat::Go))
        .await
        .unwrap();
    let server = server.await.unwrap().unwrap();
    assert_eq!(client.wire_format(), WireFormat::Go);
    assert_eq!(
        server.wire_format(),
        WireFormat::Go,
        "the listener noticed the Go peer"
    );
    (client, server)
}

async fn sim_go_pair(net: &SimNetwork) -> (Session, Session) {
    go_pair(net.transport("A", 4096), net.transport("B", 4096), "A", "B").await
}

fn lossy(seed: u64) -> SimNetwork {
    SimNetwork::new(
        seed,
        LinkConfig::new()
            .latency(Duration::from_millis(2))
            .loss(0.05)
            .duplicate(0.02),
    )
}

#[tokio::test(start_paused = true)]
async fn go_mode_files_both_ways_over_a_lossy_network() {
    let tmp = TempDir::new("both");
    let src = tmp.0.join("big.bin");
    let data: Vec<u8> = (0..3 * 1024 * 1024 + 5u64)
        .map(swp::testkit::pattern_byte)
        .collect();
    std::fs::write(&src, &data).unwrap();
    let net = lossy(3);
    let (mut a, mut b) = sim_go_pair(&net).await;
    // A -> B
    let out = tmp.0.join("in-b");
    let recv = tokio::spawn(async move {
        let r = recv_file(&mut b, &out, None).await;
        (b, r)
    });
    let sent = send_file(&mut a, &src, None).await.unwrap();
    let (mut b, got) = recv.await.unwrap();
    let (meta, path) = got.unwrap();
    assert_eq!(meta.blake2b, sent.meta.blake2b);
    assert_eq!(std::fs::read(&path).unwrap(), data);
    // B -> A, on the same session.
    let out = tmp.0.join("in-a");
    let recv = tokio::spawn(async move {
        let r = recv_file_as(&mut a, out.join("renamed.bin"), None).await;
        (a, r)
    });
    send_file(&mut b, &src, None).await.unwrap();
    let (_a, got) = recv.await.unwrap();
    let (_, path) = got.unwrap();
    assert!(path.ends_with("renamed.bin"));
    assert_eq!(std::fs::read(&path).unwrap(), data);
    assert!(
        b.stats().protocol.loss.retransmits_timeout + b.stats().protocol.loss.retransmits_fast > 0,
        "the network did lose packets"
    );
}

#[tokio::test(start_paused = true)]
async fn go_sendfile_stream_is_received_and_verified() {
    // What Go's SendFile writes is the BigFile vector, byte for byte.
    let tmp = TempDir::new("vector");
    let net = lossy(5);
    let (a, mut b) = sim_go_pair(&net).await;
    let (_, mut w) = a.into_split();
    let v = bigfile_vector();
    // Go's msgp writer sends the header and the data in separate writes.
    w.write_all(&v[..100]).await.unwrap();
    w.write_all(&v[100..]).await.unwrap();
    w.flush().await.unwrap();
    let (meta, path) = recv_file(&mut b, &tmp.0, None).await.unwrap();
    assert_eq!(meta.name, "dir/file.bin", "the Go sender's Filepath");
    assert_eq!(
        path,
        tmp.0.join("file.bin"),
        "saved under its last component"
    );
    let want: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(std::fs::read(&path).unwrap(), want);
    assert_eq!(
        meta.blake2b.as_slice(),
        Blake2b512::digest(&want).as_slice()
    );
    assert_eq!(listing(&tmp.0), vec!["file.bin"], "no part files left");
}

#[tokio::test(start_paused = true)]
async fn a_corrupt_go_bigfile_is_never_saved() {
    let tmp = TempDir::new("corrupt");
    let net = lossy(6);
    let (a, mut b) = sim_go_pair(&net).await;
    let (_, mut w) = a.into_split();
    let mut v = bigfile_vector();
    let last = v.len() - 1;
    v[last] ^= 0x40; // a data byte: the BigFile's Blake2b no longer matches
    w.write_all(&v).await.unwrap();
    w.flush().await.unwrap();
    let err = recv_file(&mut b, &tmp.0, None).await.unwrap_err();
    assert!(matches!(err, FileError::DigestMismatch { .. }), "{err}");
    assert!(listing(&tmp.0).is_empty(), "{:?}", listing(&tmp.0));
}

/// Go's form puts the digest before the data, so the sender hashes once,
/// before the header, and does not hash again while streaming: a file
/// rewritten during the transfer is caught by its stamp (length,
/// modification and change time). The sender says so, and the receiver,
/// which checks the digest itself, saves nothing.
#[tokio::test(start_paused = true)]
async fn a_source_changing_mid_go_transfer_fails_and_nothing_is_saved() {
    let tmp = TempDir::new("go-changing");
    let src = tmp.0.join("moving.bin");
    let size = 16 * 1024 * 1024u64;
    let data: Vec<u8> = (0..size).map(swp::testkit::pattern_byte).collect();
    std::fs::write(&src, &data).unwrap();
    let out = tmp.0.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let net = lossy(2);
    // Small windows, so the sender reads the file gradually.
    let small = |c: Config| {
        c.window(64, 1 << 20)
            .send_buffer(1 << 20)
            .max_payload(16 * 1024)
    };
    let l = Session::listen(net.transport("B", 4096), small(Config::new("B", "")))
        .await
        .unwrap();
    let server = tokio::spawn(l.accept());
    let mut a = Session::connect(
        net.transport("A", 4096),
        small(Config::new("A", "B")).wire_format(WireFormat::Go),
    )
    .await
    .unwrap();
    let mut b = server.await.unwrap().unwrap();
    let src2 = src.clone();
    let (ptx, mut prx) = tokio::sync::watch::channel(swp::file::Progress::default());
    let sender = tokio::spawn(async move { send_file(&mut a, &src2, Some(&ptx)).await });
    let out2 = out.clone();
    let receiver = tokio::spawn(async move { recv_file(&mut b, &out2, None).await });
    // Once 1 MiB went out, rewrite the source's last MiB.
    while prx.borrow().bytes_sent < 1 << 20 {
        prx.changed().await.unwrap();
    }
    overwrite_last_mib(&src, size);
    let sent = sender.await.unwrap().unwrap_err();
    assert!(
        sent.to_string().contains("changed during the transfer"),
        "{sent}"
    );
    let err = receiver.await.unwrap().unwrap_err();
    assert!(matches!(err, FileError::DigestMismatch { .. }), "{err}");
    assert!(listing(&out).is_empty(), "{:?}", listing(&out));
}

#[tokio::test(start_paused = true)]
async fn a_hostile_go_filepath_is_refused() {
    let tmp = TempDir::new("hostile");
    let net = lossy(7);
    let (a, mut b) = sim_go_pair(&net).await;
    let (_, mut w) = a.into_split();
    let data = b"payload".to_vec();
    let f = GoBigFile {
        filepath: "uploads/..".into(),
        size_in_bytes: data.len() as i64,
        blake2b: Blake2b512::digest(&data).to_vec().into(),
        send_time: GoTime::ZERO,
        data: data.into(),
    };
    w.write_all(&encode_bigfile(&f)).await.unwrap();
    w.flush().await.unwrap();
    let err = recv_file(&mut b, &tmp.0, None).await.unwrap_err();
    assert!(matches!(err, FileError::HostileName(_)), "{err}");
    assert!(listing(&tmp.0).is_empty());
}

#[tokio::test(start_paused = true)]
async fn rust_send_file_is_a_bigfile_a_go_receiver_decodes() {
    let net = lossy(8);
    let (mut a, b) = sim_go_pair(&net).await;
    let data: Vec<u8> = (0..200_000u64).map(swp::testkit::pattern_byte).collect();
    let reader = tokio::spawn(async move {
        let (mut r, _w) = b.into_split();
        let mut stream = Vec::new();
        r.read_to_end(&mut stream).await.unwrap();
        stream
    });
    let meta = send_bytes(&mut a, "notes/today.bin", data.clone().into())
        .await
        .unwrap();
    a.close().await.unwrap();
    let stream = reader.await.unwrap();
    // Go's RecvFile decodes exactly one BigFile from the stream.
    let f = decode_bigfile(&stream).expect("a Go receiver accepts it");
    assert_eq!(f.filepath, "notes/today.bin");
    assert_eq!(f.size_in_bytes, data.len() as i64);
    assert_eq!(&f.data[..], &data[..]);
    assert_eq!(&f.blake2b[..], Blake2b512::digest(&data).as_slice());
    assert_eq!(&f.blake2b[..], meta.blake2b.as_slice());
    assert!(!f.send_time.is_zero());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_mode_session_over_nats() {
    let server = nats_server();
    let (ta, tb) = (nats(&server).await, nats(&server).await);
    let (ia, ib) = (inbox("go", "a"), inbox("go", "b"));
    let (a, b) = go_pair(ta, tb, &ia, &ib).await;
    // Messages: each Go data packet is one message.
    for i in 0..100u32 {
        a.send(format!("m{i}")).await.unwrap();
    }
    for i in 0..100u32 {
        assert_eq!(b.recv().await.unwrap().unwrap(), format!("m{i}").as_bytes());
    }
    // A stream through io::copy, byte-exact, then a file back the other way.
    let (_ra, mut wa) = a.into_split();
    let writer = tokio::spawn(async move {
        let mut src = PatternReader {
            pos: 0,
            total: 16 << 20,
        };
        tokio::io::copy(&mut src, &mut wa).await.unwrap();
        wa.shutdown().await.unwrap();
    });
    let (mut rb, _wb) = b.into_split();
    let mut check = PatternChecker {
        pos: 0,
        first_bad: None,
    };
    let n = tokio::io::copy(&mut rb, &mut check).await.unwrap();
    writer.await.unwrap();
    assert_eq!(n, 16 << 20);
    assert_eq!(check.first_bad, None);
}

#[tokio::test(start_paused = true)]
async fn go_bigfile_into_memory_with_a_size_limit() {
    for (limit, ok) in [(1000u64, true), (999, false)] {
        let net = lossy(9);
        let (a, mut b) = sim_go_pair(&net).await;
        let (_, mut w) = a.into_split();
        w.write_all(&bigfile_vector()).await.unwrap();
        w.flush().await.unwrap();
        let r = recv_bytes(&mut b, limit).await;
        if ok {
            let (meta, data) = r.unwrap();
            assert_eq!(meta.size, 1000);
            assert!(data.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
        } else {
            let e = r.unwrap_err();
            assert!(e.to_string().contains("more than the 999"), "{e}");
        }
    }
}
