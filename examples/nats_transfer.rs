//! The main job on a fresh machine: start a local nats-server, open a swp
//! session through it, stream a generated payload from one side to the
//! other, verify every byte with BLAKE2b-512, and print the throughput.
//!
//! `cargo run --release --example nats_transfer [MiB]` (default 256).
//! Set NATS_URL to use an existing server instead of starting one.

use blake2::{Blake2b512, Digest};
use std::time::Instant;
use swp::Session;
use swp::proto::Config;
use swp::server::NatsServer;
use swp::transport::{NatsOptions, NatsTransport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mib: u64 = std::env::args()
        .nth(1)
        .map_or(256, |s| s.parse().expect("size in MiB"));
    let (_server, url) = match std::env::var("NATS_URL") {
        Ok(u) => (None, u),
        Err(_) => {
            let s = NatsServer::start().unwrap_or_else(|e| {
                eprintln!("error: {e}");
                std::process::exit(1)
            });
            let u = s.url();
            println!("started {} on {u}", s.binary().display());
            (Some(s), u)
        }
    };
    let connect = || async { NatsTransport::connect(NatsOptions::new(url.clone())).await };
    let (ta, tb) = match (connect().await, connect().await) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            std::process::exit(1)
        }
    };
    let id = std::process::id();
    let (ia, ib) = (format!("swp.demo.{id}.a"), format!("swp.demo.{id}.b"));
    let listener = Session::listen(tb, Config::new(&ib, ""))
        .await
        .expect("listen");
    let receiver = tokio::spawn(async move {
        let mut s = listener.accept().await.expect("accept");
        let mut hash = Blake2b512::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0u64;
        loop {
            let k = s.read(&mut buf).await.expect("read");
            if k == 0 {
                break;
            }
            hash.update(&buf[..k]);
            n += k as u64;
        }
        (n, hash.finalize(), s.stats())
    });
    let mut a = Session::connect(ta, Config::new(&ia, &ib))
        .await
        .expect("connect");
    let total = mib << 20;
    let mut hash = Blake2b512::new();
    let mut chunk = vec![0u8; 1 << 20];
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < total {
        let n = (total - sent).min(chunk.len() as u64) as usize;
        for (i, b) in chunk[..n].iter_mut().enumerate() {
            *b = swp::testkit::pattern_byte(sent + i as u64);
        }
        hash.update(&chunk[..n]);
        a.write_all(&chunk[..n]).await.expect("write");
        sent += n as u64;
    }
    a.shutdown().await.expect("shutdown");
    let (got, digest, stats) = receiver.await.expect("receiver");
    let secs = start.elapsed().as_secs_f64();
    let ok = got == total && digest == hash.finalize();
    println!(
        "{} MiB through swp over NATS in {secs:.2} s: {:.1} MiB/s; BLAKE2b-512 {}",
        got >> 20,
        got as f64 / (1 << 20) as f64 / secs,
        if ok { "verified" } else { "MISMATCH" }
    );
    println!(
        "receiver: {} packets, {} duplicates, {} slow-consumer events",
        stats.protocol.wire.packets_received,
        stats.protocol.data.duplicates,
        stats.transport.slow_consumer_events
    );
    if !ok {
        std::process::exit(1);
    }
}
