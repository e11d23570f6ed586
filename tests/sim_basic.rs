//! First end-to-end checks of the engine over SimNet.
use std::time::Duration;
use swp::sim::{Pair, TransferSpec, transfer};
use swp::simnet::LinkConfig;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn perfect_link_transfer() {
    let mut p = Pair::new(
        1,
        LinkConfig::new().latency(ms(1)),
        Pair::default_config("A", "B"),
        Pair::default_config("B", ""),
    );
    let r = transfer(&mut p, &TransferSpec::new(4 << 20)).unwrap();
    assert_eq!(r.bytes, 4 << 20);
    assert_eq!(p.window_violations(), 0);
    println!("{r:?} {:?}", p.a.stats());
}

#[test]
fn lossy_link_transfer() {
    let mut p = Pair::new(
        2,
        LinkConfig::new().latency(ms(1)).loss(0.2),
        Pair::default_config("A", "B"),
        Pair::default_config("B", ""),
    );
    let r = transfer(&mut p, &TransferSpec::new(4 << 20)).unwrap();
    assert_eq!(r.bytes, 4 << 20);
    assert_eq!(p.window_violations(), 0);
    println!("{r:?} {:?}", p.a.stats());
}
