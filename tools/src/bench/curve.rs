//! The engine's cost per packet against the window, in the simulator
//! (sans-IO engines over SimNet, no server): the bench's last row.

use std::time::{Duration, Instant};
use swp::proto::Config;
use swp::simnet::LinkConfig;
use swp::testkit::{Pair, TransferSpec, transfer};

const MIB: u64 = 1 << 20;

/// Engine cost per packet against the window: a 100 MiB/s link whose
/// bandwidth-delay product equals the window, 1% loss and 1% reordering,
/// 1 KiB packets, so the window is full of packets in flight and the
/// receiver holds many out of order. Wall time per packet (both
/// directions, both engines and the simulator) at each window, and the
/// ratio to the smallest.
///
/// ```no_run
/// // What `cargo bench --bench nats_bench` prints last (a few seconds).
/// swp_tools::bench::window_curve(&[1024, 4096, 16384], 64 << 20);
/// ```
pub fn window_curve(windows: &[u64], bytes: u64) {
    println!(
        "\nengine cost per packet vs window (100 MiB/s, BDP = window, 1% loss, 1% reorder, 1 KiB packets, {} MiB):",
        bytes / MIB
    );
    let rate = 100 * MIB;
    let mut first = None;
    for &w in windows {
        let one_way = Duration::from_secs_f64((w * 1024) as f64 / rate as f64 / 2.0);
        let cfg = |l: &str, r: &str| {
            Config::new(l, r)
                .max_payload(1024)
                .window(w, w * 2048)
                .send_buffer(w * 2048)
                .connect(Duration::from_secs(5), 20)
        };
        let link = LinkConfig::new()
            .latency(one_way)
            .bandwidth(Some(rate))
            .loss(0.01)
            .reorder(0.01);
        let mut p = Pair::new(7, link, cfg("A", "B"), cfg("B", "")).without_monitor();
        assert!(p.connect(Duration::from_secs(60)));
        let wall = Instant::now();
        let mut spec = TransferSpec::new(bytes);
        spec.close = false;
        let r = transfer(&mut p, &spec).expect("transfer");
        let secs = wall.elapsed().as_secs_f64();
        let pkts = p.a.stats().wire.packets_sent + p.b.stats().wire.packets_sent;
        let us = secs * 1e6 / pkts as f64;
        let base = *first.get_or_insert(us);
        println!(
            "  window {w:>6} packets: {us:>6.2} us/packet ({pkts} packets, {:.1} MiB/s virtual, {} retransmits)   vs window {}: {:.2}",
            r.goodput_mib_s,
            p.a.stats().loss.data_retransmits(),
            windows[0],
            us / base
        );
    }
}
