//! Profiling aid: 300,000 1 KiB messages through swp over a local nats-server.
use std::time::Instant;
use swp::proto::Config;
use swp::server::NatsServer;
use swp::transport::{NatsOptions, NatsTransport};
use swp::Session;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let server = NatsServer::start().expect("nats-server");
    let ta = NatsTransport::connect(NatsOptions::new(server.url()))
        .await
        .unwrap();
    let tb = NatsTransport::connect(NatsOptions::new(server.url()))
        .await
        .unwrap();
    let l = Session::listen(tb, Config::new("m.b", "")).await.unwrap();
    let acc = tokio::spawn(l.accept());
    let a = Session::connect(ta, Config::new("m.a", "m.b"))
        .await
        .unwrap();
    let b = acc.await.unwrap().unwrap();
    let n = 300_000u64;
    let payload = bytes::Bytes::from(vec![7u8; 1024]);
    let t = Instant::now();
    let s = tokio::spawn(async move {
        for _ in 0..n {
            a.send(payload.clone()).await.unwrap();
        }
        a
    });
    for _ in 0..n {
        b.recv().await.unwrap().unwrap();
    }
    s.await.unwrap();
    println!(
        "{n} messages in {:?} = {:.0} msgs/s",
        t.elapsed(),
        n as f64 / t.elapsed().as_secs_f64()
    );
}
