//! Profiling aid (not documented as a user example): one swp stream of
//! 1 GiB at 512 KiB packets through a local nats-server.
use std::time::Instant;
use swp::proto::Config;
use swp::server::NatsServer;
use swp::transport::{NatsOptions, NatsTransport};
use swp::Session;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let packet: usize = std::env::args()
        .nth(1)
        .map_or(512 * 1024, |s| s.parse().unwrap());
    let server = NatsServer::start().expect("nats-server");
    let ta = NatsTransport::connect(NatsOptions::new(server.url()))
        .await
        .unwrap();
    let tb = NatsTransport::connect(NatsOptions::new(server.url()))
        .await
        .unwrap();
    let cfg = |l: &str, r: &str| {
        Config::new(l, r)
            .max_payload(packet)
            .window(1024, 64 << 20)
            .send_buffer(64 << 20)
    };
    let l = Session::listen(tb, cfg("p.b", "")).await.unwrap();
    let acc = tokio::spawn(l.accept());
    let mut a = Session::connect(ta, cfg("p.a", "p.b")).await.unwrap();
    let mut b = acc.await.unwrap().unwrap();
    let total: u64 = 1 << 30;
    let t = Instant::now();
    let w = tokio::spawn(async move {
        let chunk = vec![1u8; 1 << 20];
        for _ in 0..(total >> 20) {
            a.write_all(&chunk).await.unwrap();
        }
        a.shutdown().await.unwrap();
    });
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0u64;
    loop {
        let n = b.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    w.await.unwrap();
    println!(
        "{} MiB in {:?} = {:.1} MiB/s",
        got >> 20,
        t.elapsed(),
        got as f64 / 1048576.0 / t.elapsed().as_secs_f64()
    );
}
