//! `tokio::io::copy` through a swp session: a local nats-server, one side
//! copies 32 MiB of zeros into the session, the other copies the session
//! into a sink and counts.
//!
//! `cargo run --release --example io_copy`

use swp::Session;
use swp::proto::Config;
use swp::server::NatsServer;
use swp::transport::{NatsOptions, NatsTransport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = NatsServer::start()?;
    let a = NatsTransport::connect(NatsOptions::new(server.url())).await?;
    let b = NatsTransport::connect(NatsOptions::new(server.url())).await?;
    let listener = Session::listen(b, Config::new("copy.b", "")).await?;
    let reader = tokio::spawn(async move {
        let mut s = listener.accept().await?;
        tokio::io::copy(&mut s, &mut tokio::io::sink()).await
    });
    let mut s = Session::connect(a, Config::new("copy.a", "copy.b")).await?;
    let mut zeros = tokio::io::repeat(0).take(32 << 20);
    let sent = tokio::io::copy(&mut zeros, &mut s).await?;
    s.shutdown().await?;
    let got = reader.await??;
    println!("copied {sent} bytes in, {got} bytes out");
    assert_eq!(sent, got);
    Ok(())
}
