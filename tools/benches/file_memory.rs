//! Benchmark: peak memory of each endpoint while a 1 GiB file goes through
//! swp over NATS, sender and receiver in separate `swp` processes.
//!
//! `cargo bench --bench file_memory` (cargo builds the `swp` binary with
//! it). Prints each process's peak RSS (VmHWM) and the throughput. Target: at most 64 MiB per endpoint (go-swp holds about 4.4x
//! the file in memory).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Waits for both children, sampling each one's peak RSS until it exits.
fn wait_both(mut a: Child, mut b: Child) -> [(std::process::ExitStatus, u64); 2] {
    let mut peak = [0u64; 2];
    let mut done: [Option<std::process::ExitStatus>; 2] = [None, None];
    loop {
        for (i, c) in [&mut a, &mut b].into_iter().enumerate() {
            if done[i].is_none() {
                if let Some(k) = peak_rss_kib(c.id()) {
                    peak[i] = peak[i].max(k);
                }
                if let Ok(Some(st)) = c.try_wait() {
                    done[i] = Some(st);
                }
            }
        }
        if let [Some(x), Some(y)] = done {
            return [(x, peak[0]), (y, peak[1])];
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--test");
    let mib: u64 = if quick { 64 } else { 1024 };
    // The `swp` binary of this package, built in the same profile.
    let swp = Path::new(env!("CARGO_BIN_EXE_swp"));
    let server =
        swp::server::NatsServer::start().unwrap_or_else(|e| panic!("needs nats-server: {e}"));
    let dir = std::env::temp_dir().join(format!("swp-mem-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("big.bin");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&src).unwrap());
        let chunk: Vec<u8> = (0..1u64 << 20).map(swp::testkit::pattern_byte).collect();
        for _ in 0..mib {
            f.write_all(&chunk).unwrap();
        }
    }
    let inbox = format!("swp.mem.{}", std::process::id());
    let recv = Command::new(swp)
        .args([
            "recv",
            "--quiet",
            "--timeout",
            "60",
            "--inbox",
            &inbox,
            "--server",
            &server.url(),
            "--out",
        ])
        .arg(dir.join("out"))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let send = Command::new(swp)
        .args(["send", "--quiet", "--to", &inbox, "--server", &server.url()])
        .arg(&src)
        .spawn()
        .unwrap();
    let [(st_send, peak_send), (st_recv, peak_recv)] = wait_both(send, recv);
    assert!(st_send.success(), "send failed");
    assert!(st_recv.success(), "recv failed");
    let secs = start.elapsed().as_secs_f64();
    let same = std::fs::metadata(dir.join("out/big.bin")).unwrap().len() == mib << 20;
    let _ = std::fs::remove_dir_all(&dir);
    assert!(same, "received file has the wrong size");
    println!(
        "{mib} MiB file over swp/NATS in {secs:.2} s ({:.0} MiB/s incl. BLAKE2b on both ends and disk I/O)",
        mib as f64 / secs
    );
    println!(
        "peak RSS: sender {:.1} MiB, receiver {:.1} MiB (target <= 64 MiB each)",
        peak_send as f64 / 1024.0,
        peak_recv as f64 / 1024.0
    );
}
