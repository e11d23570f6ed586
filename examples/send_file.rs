//! Send one file to a receiver (run `recv_file` first).
//!
//! `cargo run --example send_file -- FILE SUBJECT` with NATS_URL set
//! (default nats://127.0.0.1:4222).

use swp::Session;
use swp::file::send_file;
use swp::proto::Config;
use swp::transport::{NatsOptions, NatsTransport};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (file, to) = match (args.next(), args.next()) {
        (Some(f), Some(t)) => (f, t),
        _ => return Err("usage: send_file FILE RECEIVER_SUBJECT".into()),
    };
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let nats = NatsTransport::connect(NatsOptions::new(url)).await?;
    let me = format!("swp.example.send.{}", std::process::id());
    let mut session = Session::connect(nats, Config::new(me, to)).await?;
    let report = send_file(&mut session, &file, None).await?;
    println!(
        "sent {} ({} bytes, resumed at {})",
        report.meta.name, report.meta.size, report.resumed_from
    );
    session.close().await?;
    Ok(())
}
