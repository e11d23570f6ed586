//! Receive one file into a directory.
//!
//! `cargo run --example recv_file -- SUBJECT [DIR]` with NATS_URL set
//! (default nats://127.0.0.1:4222); then run `send_file FILE SUBJECT`.

use swp::Session;
use swp::file::recv_file;
use swp::proto::Config;
use swp::transport::{NatsOptions, NatsTransport};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let inbox = args.next().ok_or("usage: recv_file SUBJECT [DIR]")?;
    let dir = args.next().unwrap_or_else(|| ".".into());
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let nats = NatsTransport::connect(NatsOptions::new(url)).await?;
    let listener = Session::listen(nats, Config::new(inbox.clone(), "")).await?;
    println!("waiting on {inbox}");
    let mut session = listener.accept().await?;
    let (meta, path) = recv_file(&mut session, &dir, None).await?;
    println!(
        "received {} ({} bytes) -> {}",
        meta.name,
        meta.size,
        path.display()
    );
    Ok(())
}
