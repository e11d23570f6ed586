//! Benchmark: goodput under loss in simulated time, and simulator speed.
//!
//! `cargo bench --bench sim_goodput` prints:
//! 1. goodput (MiB per *virtual* second) of a 64 MiB stream at 0% and 20%
//!    loss, 1 ms one-way latency, the same window, and their ratio; once on a
//!    link with a bandwidth limit (a real network) and once on a link with
//!    none (so the window alone limits goodput);
//! 2. simulator speed: raw SimNet messages per wall-clock second, and
//!    protocol packets per wall-clock second with the real engine in the
//!    loop;
//! 3. the engine's cost per packet against the window
//!    ([`swp_tools::bench::window_curve`], also a row of `swp bench`).
//!
//! It asserts nothing: the figures are the result (docs/BENCHMARKS.md).

use std::time::{Duration, Instant};
use swp::proto::Config;
use swp::simnet::{LinkConfig, SimNet};
use swp::testkit::{Pair, TransferSpec, transfer};

const MIB: u64 = 1 << 20;

fn goodput(seed: u64, link: LinkConfig, bytes: u64) -> (f64, swp::proto::Stats, Duration) {
    let cfg = |l: &str, r: &str| Config::new(l, r).connect(Duration::from_secs(2), 20);
    let mut p = Pair::new(seed, link, cfg("A", "B"), cfg("B", "")).without_monitor();
    assert!(
        p.connect(Duration::from_secs(60)),
        "seed {seed}: no handshake"
    );
    let wall = Instant::now();
    let mut spec = TransferSpec::new(bytes);
    spec.close = false;
    let r = transfer(&mut p, &spec).expect("transfer");
    (r.goodput_mib_s, p.a.stats(), wall.elapsed())
}

fn ratio_table(title: &str, link: LinkConfig, seeds: &[u64]) {
    println!("\n{title}");
    println!(
        "{:>5} {:>12} {:>12} {:>7} {:>10} {:>10} {:>8}",
        "seed", "0% MiB/s", "20% MiB/s", "ratio", "fast rtx", "rto rtx", "probes"
    );
    let mut ratios = vec![];
    for &seed in seeds {
        let (g0, _, _) = goodput(seed, link.clone(), 64 * MIB);
        let (g20, st, _) = goodput(seed, link.clone().loss(0.2), 64 * MIB);
        let r = g20 / g0;
        ratios.push(r);
        println!(
            "{seed:>5} {g0:>12.1} {g20:>12.1} {r:>7.3} {:>10} {:>10} {:>8}",
            st.loss.retransmits_fast, st.loss.retransmits_timeout, st.loss.retransmits_probe
        );
    }
    ratios.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "ratio 20%/0%: median {:.3}, min {:.3}  (target >= 0.6; go-sliding-window: 19/509 = 0.037)",
        ratios[ratios.len() / 2],
        ratios[0]
    );
}

fn simnet_speed() {
    let mut net = SimNet::new(1);
    net.set_default_link(
        LinkConfig::new()
            .latency(Duration::from_micros(100))
            .loss(0.01),
    );
    let a = net.add_inbox("A", 1 << 20);
    let b = net.add_inbox("B", 1 << 20);
    let payload = bytes::Bytes::from(vec![0u8; 1024]);
    let n = 2_000_000u64;
    let wall = Instant::now();
    let mut got = 0u64;
    for i in 0..n {
        net.send(a, b, payload.clone());
        if i % 64 == 63 {
            net.advance_to(net.now() + Duration::from_micros(10));
            while net.recv(b).is_some() {
                got += 1;
            }
        }
    }
    while let Some(t) = net.next_arrival() {
        net.advance_to(t);
    }
    while net.recv(b).is_some() {
        got += 1;
    }
    let secs = wall.elapsed().as_secs_f64();
    println!(
        "\nsimnet alone: {n} messages (1 KiB, 1% loss) in {secs:.2} s wall = {:.2} M messages/s (target >= 1 M/s); delivered {got}",
        n as f64 / secs / 1e6
    );
}

fn protocol_speed() {
    // Small packets so per-packet costs dominate: encode, CRC, decode, SACK,
    // timers, the event heap.
    let cfg = |l: &str, r: &str| Config::new(l, r).max_payload(1024).window(1024, 4 * MIB);
    let mut p = Pair::new(
        3,
        LinkConfig::new().latency(Duration::from_millis(1)),
        cfg("A", "B"),
        cfg("B", ""),
    )
    .without_monitor();
    assert!(p.connect(Duration::from_secs(10)));
    let wall = Instant::now();
    let mut spec = TransferSpec::new(256 * MIB);
    spec.close = false;
    transfer(&mut p, &spec).expect("transfer");
    let secs = wall.elapsed().as_secs_f64();
    let pkts = p.a.stats().wire.packets_sent + p.b.stats().wire.packets_sent;
    println!(
        "protocol in the loop: {pkts} packets (1 KiB payload, both directions) in {secs:.2} s wall = {:.2} M packets/s",
        pkts as f64 / secs / 1e6
    );
}

fn main() {
    // `cargo test --benches` runs this binary too; keep that quick.
    if std::env::args().any(|a| a == "--test") {
        goodput(
            1,
            LinkConfig::new()
                .latency(Duration::from_millis(1))
                .loss(0.2),
            4 * MIB,
        );
        swp_tools::bench::window_curve(&[256, 1024], 2 * MIB);
        return;
    }
    if std::env::var("SWP_SIM_ONLY").as_deref() == Ok("curve") {
        swp_tools::bench::window_curve(&[1024, 4096, 16384], 64 * MIB);
        return;
    }
    let seeds: Vec<u64> = (1..=5).collect();
    let lat = Duration::from_millis(1);
    println!(
        "64 MiB stream A->B, {} KiB packets, window 1024 packets / 16 MiB (defaults), 1 ms one-way latency",
        Config::new("", "").max_payload_bytes() / 1024
    );
    ratio_table(
        "link of 1 GiB/s (bandwidth-delay product 2 MiB < window):",
        LinkConfig::new().latency(lat).bandwidth(Some(1 << 30)),
        &seeds,
    );
    ratio_table(
        "link without a bandwidth limit (goodput = window / RTT at 0% loss):",
        LinkConfig::new().latency(lat),
        &seeds,
    );
    simnet_speed();
    protocol_speed();
    swp_tools::bench::window_curve(&[1024, 4096, 16384], 64 * MIB);
}
