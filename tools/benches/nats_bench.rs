//! Benchmark: swp against raw async-nats publish/subscribe, in one run,
//! against one local nats-server that the benchmark starts itself.
//!
//! `cargo bench --bench nats_bench` (needs nats-server: scripts/setup.sh);
//! the same as `swp bench`. See src/bench.rs and docs/BENCHMARKS.md.

fn main() {
    let quick = std::env::args().any(|a| a == "--test");
    // JetStream on (for the Object Store row), its store in a fresh
    // directory.
    let store = std::env::temp_dir().join(format!("swp-bench-js-{}", std::process::id()));
    let server = swp::server::NatsServer::start_with_args(&["-js", "-sd", store.to_str().unwrap()])
        .unwrap_or_else(|e| panic!("the NATS benchmark needs nats-server: {e}"));
    println!(
        "nats-server {} on {}; 2 tokio worker threads",
        server.binary().display(),
        server.url()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(swp_tools::bench::run(
        &server.url(),
        quick,
        Some(server.pid()),
        std::path::Path::new(env!("CARGO_BIN_EXE_swp")),
    ));
    drop(server);
    let _ = std::fs::remove_dir_all(&store);
}
