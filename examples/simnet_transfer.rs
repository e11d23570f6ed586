//! A lossy simulated transfer: 16 MiB through a network that loses 10% of
//! packets, reorders and duplicates some, all in virtual time, then the
//! statistics of both ends and of the network.
//!
//! `cargo run --release --example simnet_transfer [seed] [loss]`

use std::time::Duration;
use swp::proto::Config;
use swp::simnet::LinkConfig;
use swp::testkit::{Pair, TransferSpec, transfer};

fn main() {
    let mut args = std::env::args().skip(1);
    let seed: u64 = args
        .next()
        .map_or(1, |s| s.parse().expect("seed: a number"));
    let loss: f64 = args
        .next()
        .map_or(0.1, |s| s.parse().expect("loss: 0.0 to 1.0"));
    let link = LinkConfig::new()
        .latency(Duration::from_millis(5))
        .jitter(Duration::from_millis(1))
        .loss(loss)
        .reorder(0.05)
        .duplicate(0.02)
        .bandwidth(Some(100 << 20));
    let mut pair = Pair::new(seed, link, Config::new("A", "B"), Config::new("B", ""));
    let report = match transfer(&mut pair, &TransferSpec::new(16 << 20)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("transfer failed: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "seed {seed}, loss {:.0}%: {} bytes verified in {:?} of virtual time ({:.1} MiB/s)",
        loss * 100.0,
        report.bytes,
        report.elapsed,
        report.goodput_mib_s
    );
    println!("window violations: {}", pair.window_violations());
    let (a, b) = (pair.a.stats(), pair.b.stats());
    println!(
        "A: {} data packets, {} fast + {} timeout + {} probe retransmits, srtt {:?}, rto {:?}",
        a.data.packets_sent,
        a.loss.retransmits_fast,
        a.loss.retransmits_timeout,
        a.loss.retransmits_probe,
        a.rtt.srtt,
        a.rtt.rto
    );
    println!(
        "B: {} acks sent, {} duplicates, {} out of order, {} dropped invalid",
        b.wire.acks_sent, b.data.duplicates, b.data.out_of_order, b.dropped.invalid
    );
    print!("{}", pair.net.summary());
}
