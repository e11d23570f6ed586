//! The chaos matrix: multi-MiB stream transfers over many seeds and many
//! kinds of bad network. Each run asserts byte-exact delivery (checked byte
//! by byte as it arrives), zero window violations, zero inbox overflows, a
//! normal close on both sides, and a bound on simulated time.
//!
//! `SWP_CHAOS_SEEDS=N` runs seeds 0..N per profile (default 12, and the
//! pinned seeds below);
//! `SWP_CHAOS_SEED=S` runs only seed S (to reproduce a failure, which prints
//! its seed and profile).

use std::time::Duration;
use swp::proto::{CloseReason, Config};
use swp::simnet::LinkConfig;
use swp::testkit::{Pair, Side, TransferSpec, transfer};

const BYTES: u64 = 4 << 20;
/// Silent keepalive intervals before a peer counts as dead. At 50% loss in
/// each direction, 10 lost keepalives in a row (the default) happen about
/// once per 1024 windows: over hundreds of seeds that is a real, correct
/// "peer unreachable" verdict, not a bug. 30 makes it vanishingly rare.
const KEEPALIVE_FAILURES: u32 = 30;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn seeds() -> Vec<u64> {
    if let Ok(s) = std::env::var("SWP_CHAOS_SEED") {
        return vec![s.parse().expect("SWP_CHAOS_SEED must be a number")];
    }
    match std::env::var("SWP_CHAOS_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(n) => (0..n).collect(),
        None => (0..12u64).chain(PINNED.iter().copied()).collect(),
    }
}

/// Seeds found by long sweeps, run by default too. 774: at 20% loss the
/// last FinAck is lost after the peer stopped lingering, so one side ends
/// its close (Normal) only at its dead-peer timeout, after the transfer's
/// budget (the budget now covers the data and the settled close).
const PINNED: &[u64] = &[774];

fn cfg(local: &str, remote: &str) -> Config {
    // Small packets make many packets per transfer: more chances to go wrong.
    // Generous retry budgets: at 50% loss a handshake or retransmission
    // legitimately needs many attempts.
    Config::new(local, remote)
        .max_payload(16 * 1024)
        .window(256, 4 << 20)
        .connect(Duration::from_secs(2), 40)
        .max_retransmits(40)
        .keepalive(Duration::from_secs(1), KEEPALIVE_FAILURES)
}

fn sealed(c: Config, seed: u64, side: u8) -> Config {
    let seal = swp::proto::seal::Seal::psk([0x33; 32]);
    c.seal(seal.deterministic_for_tests([seed as u8 ^ side; 32]))
}

fn run_profile(name: &str, link: LinkConfig, time_bound: Duration) {
    let mut worst = Duration::ZERO;
    // Every seed plain, then sealed (docs/PROTOCOL.md §14).
    for (seed, seal) in seeds().into_iter().flat_map(|s| [(s, false), (s, true)]) {
        let repro = format!(
            "reproduce: SWP_CHAOS_SEED={seed} cargo test --test sim_chaos {name} ({})",
            if seal { "sealed" } else { "plain" }
        );
        let (ca, cb) = if seal {
            (
                sealed(cfg("A", "B"), seed, 1),
                sealed(cfg("B", ""), seed, 2),
            )
        } else {
            (cfg("A", "B"), cfg("B", ""))
        };
        let mut p = Pair::new(seed, link.clone(), ca, cb);
        let mut spec = TransferSpec::new(BYTES);
        spec.budget = time_bound;
        let r = transfer(&mut p, &spec).unwrap_or_else(|e| panic!("{name}: {e}\n{repro}"));
        assert_eq!(r.bytes, BYTES, "{name} seed {seed}\n{repro}");
        let w = p.window_report();
        // The monitor reads plain packets only; sealed ones it cannot.
        assert!(
            seal || w.checked >= BYTES / (16 * 1024),
            "{name} seed {seed}: monitor saw no data"
        );
        assert_eq!(
            w.violations, 0,
            "{name} seed {seed}: {:?}\n{repro}",
            w.first
        );
        for side in [Side::A, Side::B] {
            let st = p.net.stats(p.inbox(side));
            assert_eq!(
                st.overflowed, 0,
                "{name} seed {seed}: inbox {side:?} overflowed\n{repro}"
            );
        }
        assert_eq!(
            p.a.close_reason(),
            Some(&CloseReason::Normal),
            "{name} seed {seed}\n{repro}"
        );
        assert_eq!(
            p.b.close_reason(),
            Some(&CloseReason::Normal),
            "{name} seed {seed}\n{repro}"
        );
        worst = worst.max(p.elapsed());
    }
    println!(
        "{name}: worst simulated time {worst:?} (bound {time_bound:?} for the data and a settled close, plus a dead-peer timeout for a lost last FinAck)"
    );
}

fn base() -> LinkConfig {
    LinkConfig::new().latency(ms(1))
}

#[test]
fn chaos_loss_0() {
    run_profile("chaos_loss_0", base(), Duration::from_secs(2));
}

#[test]
fn chaos_loss_5() {
    run_profile("chaos_loss_5", base().loss(0.05), Duration::from_secs(10));
}

#[test]
fn chaos_loss_20() {
    run_profile("chaos_loss_20", base().loss(0.20), Duration::from_secs(30));
}

#[test]
fn chaos_loss_50() {
    run_profile("chaos_loss_50", base().loss(0.50), Duration::from_secs(600));
}

#[test]
fn chaos_reordering() {
    run_profile(
        "chaos_reordering",
        base().jitter(ms(2)).reorder(0.2).reorder_delay(ms(4)),
        Duration::from_secs(10),
    );
}

#[test]
fn chaos_duplication() {
    run_profile(
        "chaos_duplication",
        base().duplicate(0.3),
        Duration::from_secs(5),
    );
}

#[test]
fn chaos_mixed() {
    run_profile(
        "chaos_mixed",
        base()
            .jitter(ms(1))
            .loss(0.1)
            .reorder(0.1)
            .duplicate(0.1)
            .corrupt(0.02)
            .bandwidth(Some(200 << 20)),
        Duration::from_secs(60),
    );
}
