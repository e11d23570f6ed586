//! The NATS benchmark of `swp bench` and `cargo bench --bench nats_bench`:
//! swp against raw async-nats publish/subscribe, in one run, against one
//! nats-server. Prints figures; asserts nothing.

use bytes::Bytes;
use futures::StreamExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use swp::Session;
use swp::proto::Config;
use swp::transport::{NatsOptions, NatsTransport, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod curve;
mod files;
mod sessions;

pub use curve::window_curve;

pub(crate) const MIB: u64 = 1 << 20;

/// One measurement.
///
/// ```
/// use swp_tools::bench::Figure;
/// // What a row of the table is made of: the rate, and what it cost.
/// let f = Figure { rate: 480.0, lost: 0, slow: 0, cpu_clients: 1.2, cpu_server: Some(1.0) };
/// let mib = 512.0;
/// let ms_per_mib = (f.cpu_clients + f.cpu_server.unwrap()) * 1000.0 / mib;
/// assert!((ms_per_mib - 4.3).abs() < 0.01);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Figure {
    /// MiB/s or msgs/s.
    pub rate: f64,
    /// Messages or bytes that never arrived.
    pub lost: u64,
    /// Slow-consumer events.
    pub slow: u64,
    /// CPU seconds the benchmark process (both ends) spent on the run.
    pub cpu_clients: f64,
    /// CPU seconds nats-server spent on the run (if its pid is known).
    pub cpu_server: Option<f64>,
}

/// CPU time (user + system) of a process so far, in seconds, from
/// `/proc/<pid>/stat` (`None`: this process). Linux only; `None` where
/// there is no such file.
fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the ")" that ends the command name: state is field 3,
    // utime and stime are fields 14 and 15, in clock ticks (USER_HZ, 100).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// Reads both CPU clocks at the start of a run; `stop` gives the CPU
/// seconds spent since.
struct CpuClock {
    server_pid: Option<u32>,
    clients: f64,
    server: Option<f64>,
}

impl CpuClock {
    fn start(server_pid: Option<u32>) -> CpuClock {
        CpuClock {
            server_pid,
            clients: cpu_seconds(None).unwrap_or(0.0),
            server: server_pid.and_then(|p| cpu_seconds(Some(p))),
        }
    }

    fn stop(&self) -> (f64, Option<f64>) {
        let clients = cpu_seconds(None).unwrap_or(0.0) - self.clients;
        let server = match (
            self.server,
            self.server_pid.and_then(|p| cpu_seconds(Some(p))),
        ) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        };
        (clients, server)
    }
}

pub(crate) async fn transport(url: &str) -> Arc<NatsTransport> {
    NatsTransport::connect(NatsOptions::new(url))
        .await
        .expect("connect")
}

/// Every run starts from a quiet system. After a run that moved 512 MiB,
/// nats-server (a Go program: its garbage collector) and the allocator stay
/// busy for a while, and whichever run came next paid for it: the second
/// and third of back-to-back swp runs were 15-25% slower than the first in
/// six of six tries; after a 2 s pause, the third was the fastest.
pub(crate) async fn settle() {
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Raw pub/sub: publish `count` messages of `size` bytes as fast as
/// possible; the subscriber counts until it has all or hears nothing for 2 s
/// (returns messages per second). With `copying`, the publisher copies each payload out of an
/// application buffer and the subscriber copies it into one, as any
/// AsyncWrite/AsyncRead user of a stream must: the fair baseline for swp's
/// byte stream (the plain one re-sends one `Bytes` and never reads it).
async fn raw(url: &str, server_pid: Option<u32>, size: usize, count: u64, copying: bool) -> Figure {
    settle().await;
    let (tp, ts) = (transport(url).await, transport(url).await);
    let subject = format!("bench.raw.{size}.{}", std::process::id());
    let mut sub = ts.client().subscribe(subject.clone()).await.unwrap();
    ts.client().flush().await.unwrap();
    let payload = Bytes::from(vec![7u8; size]);
    let cpu = CpuClock::start(server_pid);
    let start = Instant::now();
    let pubc = tp.client().clone();
    let publisher = tokio::spawn(async move {
        let app_buf = payload.to_vec();
        for _ in 0..count {
            let p = if copying {
                Bytes::copy_from_slice(&app_buf)
            } else {
                payload.clone()
            };
            pubc.publish(subject.clone(), p).await.unwrap();
        }
        pubc.flush().await.unwrap();
    });
    let mut got = 0u64;
    let mut last = start;
    let mut sink = vec![0u8; size];
    while got < count {
        match tokio::time::timeout(Duration::from_secs(2), sub.next()).await {
            Ok(Some(m)) => {
                if copying {
                    let n = m.payload.len().min(sink.len());
                    sink[..n].copy_from_slice(&m.payload[..n]);
                }
                got += 1;
                last = Instant::now();
            }
            _ => break,
        }
    }
    publisher.await.unwrap();
    let (cpu_clients, cpu_server) = cpu.stop();
    let secs = last.duration_since(start).as_secs_f64();
    Figure {
        rate: got as f64 / secs,
        lost: count - got,
        slow: ts.counters().slow_consumer_events,
        cpu_clients,
        cpu_server,
    }
}

/// How the swp benchmark reader takes the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// `AsyncRead::read` into a 1 MiB buffer (a copy, like any AsyncRead user).
    Copy,
    /// `Session::read_chunk`: slices of the received packets, no copy.
    ZeroCopy,
}

async fn swp_stream(
    url: &str,
    server_pid: Option<u32>,
    packet: usize,
    total: u64,
    reading: Reading,
    sealed: bool,
) -> Figure {
    settle().await;
    let (ta, tb) = (transport(url).await, transport(url).await);
    let id = std::process::id();
    let (ia, ib) = (
        format!("bench.swp.{packet}.a.{id}"),
        format!("bench.swp.{packet}.b.{id}"),
    );
    // The window (and send buffer) in MiB: SWP_BENCH_WINDOW_MIB, default 64.
    let mib: u64 = std::env::var("SWP_BENCH_WINDOW_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let cfg = |l: &str, r: &str| {
        let c = Config::new(l, r)
            .max_payload(packet)
            .window(1024, mib * MIB)
            .send_buffer(mib * MIB);
        if sealed {
            c.seal(swp::proto::seal::Seal::psk([0x5e; 32]))
        } else {
            c
        }
    };
    let listener = Session::listen(tb.clone(), cfg(&ib, "")).await.unwrap();
    let accept = tokio::spawn(listener.accept());
    let mut a = Session::connect(ta.clone(), cfg(&ia, &ib)).await.unwrap();
    let mut b = accept.await.unwrap().unwrap();
    let chunk = vec![7u8; 1 << 20];
    let cpu = CpuClock::start(server_pid);
    let start = Instant::now();
    let writer = tokio::spawn(async move {
        let mut sent = 0;
        while sent < total {
            let n = (total - sent).min(chunk.len() as u64) as usize;
            a.write_all(&chunk[..n]).await.unwrap();
            sent += n as u64;
        }
        a.shutdown().await.unwrap();
        a
    });
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0u64;
    loop {
        let n = if reading == Reading::ZeroCopy {
            b.read_chunk(usize::MAX)
                .await
                .unwrap()
                .map_or(0, |c| c.len())
        } else {
            b.read(&mut buf).await.unwrap()
        };
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    let a = writer.await.unwrap();
    let (cpu_clients, cpu_server) = cpu.stop();
    if std::env::var_os("SWP_BENCH_VERBOSE").is_some() {
        let (sa, sb) = (a.stats().protocol, b.stats().protocol);
        println!(
            "  swp stream {} KiB: {} data packets, {} retransmitted, {} acks ({:.2} per data packet), window blocked {}, srtt {:?}",
            packet / 1024,
            sa.data.packets_sent,
            sa.loss.retransmits_fast + sa.loss.retransmits_timeout + sa.loss.retransmits_probe,
            sb.wire.acks_sent,
            sb.wire.acks_sent as f64 / sa.data.packets_sent.max(1) as f64,
            sa.window.blocked,
            sa.rtt.srtt,
        );
    }
    Figure {
        rate: got as f64 / MIB as f64 / secs,
        lost: total - got,
        slow: tb.counters().slow_consumer_events + ta.counters().slow_consumer_events,
        cpu_clients,
        cpu_server,
    }
}

async fn swp_messages(
    url: &str,
    server_pid: Option<u32>,
    size: usize,
    count: u64,
    batch: bool,
) -> Figure {
    settle().await;
    let (ta, tb) = (transport(url).await, transport(url).await);
    let id = std::process::id();
    let (ia, ib) = (format!("bench.msg.a.{id}"), format!("bench.msg.b.{id}"));
    let listener = Session::listen(tb.clone(), Config::new(&ib, ""))
        .await
        .unwrap();
    let accept = tokio::spawn(listener.accept());
    let a = Session::connect(ta.clone(), Config::new(&ia, &ib).batch_messages(batch))
        .await
        .unwrap();
    let b = accept.await.unwrap().unwrap();
    let payload = Bytes::from(vec![7u8; size]);
    let cpu = CpuClock::start(server_pid);
    let start = Instant::now();
    let sender = tokio::spawn(async move {
        for _ in 0..count {
            a.send(payload.clone()).await.unwrap();
        }
        a
    });
    let mut got = 0u64;
    while got < count {
        b.recv().await.unwrap().unwrap();
        got += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let a = sender.await.unwrap();
    let (cpu_clients, cpu_server) = cpu.stop();
    let (sa, sb) = (a.stats().protocol, b.stats().protocol);
    println!(
        "  swp messages{}: {} data packets ({:.1} messages each), {} acks ({:.2} per data packet), {} packets sent by the receiver",
        if batch { "" } else { " (batching off)" },
        sa.data.packets_sent,
        count as f64 / sa.data.packets_sent.max(1) as f64,
        sb.wire.acks_sent,
        sb.wire.acks_sent as f64 / sa.data.packets_sent.max(1) as f64,
        sb.wire.packets_sent
    );
    Figure {
        rate: got as f64 / secs,
        lost: count - got,
        slow: tb.counters().slow_consumer_events,
        cpu_clients,
        cpu_server,
    }
}

/// The middle element of `v` by `key` (the upper one of an even count).
fn middle_by<T>(mut v: Vec<T>, key: impl Fn(&T) -> f64) -> T {
    v.sort_by(|a, b| key(a).total_cmp(&key(b)));
    let i = v.len() / 2;
    v.swap_remove(i)
}

/// The median run by rate; losses and slow-consumer events are summed
/// over all runs (any loss anywhere is reported); CPU times are the medians
/// of their own.
fn median(mut v: Vec<Figure>) -> Figure {
    let lost = v.iter().map(|f| f.lost).sum();
    let slow = v.iter().map(|f| f.slow).sum();
    let mid = |x: Vec<f64>| middle_by(x, |&c| c);
    let cpu_clients = mid(v.iter().map(|f| f.cpu_clients).collect());
    let cpu_server = v
        .iter()
        .map(|f| f.cpu_server)
        .collect::<Option<Vec<f64>>>()
        .map(mid);
    v.sort_by(|a, b| a.rate.total_cmp(&b.rate));
    Figure {
        rate: v[v.len() / 2].rate,
        lost,
        slow,
        cpu_clients,
        cpu_server,
    }
}

fn row(what: &str, unit: &str, raw: &Figure, swp: &Figure) {
    println!(
        "{what:<34} raw {:>10.1} {unit:<7} (lost {:>6}, slow-consumer events {:>3})   swp {:>10.1} {unit:<7} (lost {}, slow-consumer events {})   swp/raw {:.2}",
        raw.rate,
        raw.lost,
        raw.slow,
        swp.rate,
        swp.lost,
        swp.slow,
        swp.rate / raw.rate
    );
}

/// `seconds` of CPU as milliseconds per unit, or "?" if not measured.
fn per_unit(seconds: Option<f64>, units: f64) -> String {
    seconds.map_or("?".to_string(), |s| format!("{:.2}", s * 1000.0 / units))
}

/// CPU per unit of work (`units` per run: MiB or thousands of messages),
/// clients (the benchmark process: both ends) and nats-server. Less
/// sensitive than wall-clock rates to what else the machine is doing.
fn cpu_row(what: &str, units: f64, raw: &Figure, swp: &Figure) {
    let ms = |s: f64| s * 1000.0 / units;
    let server = |f: &Figure| per_unit(f.cpu_server, units);
    let total = |f: &Figure| ms(f.cpu_clients + f.cpu_server.unwrap_or(0.0));
    println!(
        "  CPU ms per {what:<24} raw {:.2} clients + {} server = {:.2}   swp {:.2} clients + {} server = {:.2}   swp/raw {:.2}",
        ms(raw.cpu_clients),
        server(raw),
        total(raw),
        ms(swp.cpu_clients),
        server(swp),
        total(swp),
        total(swp) / total(raw)
    );
}

/// Runs the benchmark against a nats-server at `url` (`quick`: small sizes,
/// one round) and prints the table. With the server's pid, the CPU time it
/// spends is measured too (Linux: `/proc`).
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // What `swp bench` does: start a nats-server, run, print the table.
/// let server = swp::server::NatsServer::start()?;
/// let swp = std::env::current_exe()?; // this program is `swp`
/// swp_tools::bench::run(&server.url(), false, Some(server.pid()), &swp).await;
/// # Ok(()) }
/// ```
pub async fn run(url: &str, quick: bool, server_pid: Option<u32>, swp: &Path) {
    let url = url.to_string();
    let stream_total = if quick { 16 * MIB } else { 512 * MIB };
    let msgs = if quick { 10_000 } else { 300_000 };
    println!(
        "{} MiB streams, {} x 1 KiB messages against {url}",
        stream_total / MIB,
        msgs
    );
    let rounds = if quick { 1 } else { 5 };
    println!("{rounds} rounds, raw and swp interleaved; medians shown");
    // SWP_BENCH_ONLY=stream|latency|files|sessions|messages|curve runs one part; swp-stream and
    // raw-stream (with app copies) run one side only, at SWP_BENCH_PACKET
    // bytes per packet (default 64 KiB), for profiling (swp-stream reads
    // with read_chunk if SWP_BENCH_READ=chunk).
    let only = std::env::var("SWP_BENCH_ONLY").unwrap_or_default();
    let mib = stream_total as f64 / MIB as f64;
    if only == "swp-stream" || only == "raw-stream" {
        let packet: usize = std::env::var("SWP_BENCH_PACKET")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(64 * 1024);
        let reading = if std::env::var("SWP_BENCH_READ").as_deref() == Ok("chunk") {
            Reading::ZeroCopy
        } else {
            Reading::Copy
        };
        for _ in 0..rounds {
            let f = if only == "swp-stream" {
                swp_stream(&url, server_pid, packet, stream_total, reading, false).await
            } else {
                let f = raw(&url, server_pid, packet, stream_total / packet as u64, true).await;
                Figure {
                    rate: f.rate * packet as f64 / MIB as f64,
                    ..f
                }
            };
            println!(
                "{only}: {:.1} MiB/s (lost {}, slow-consumer events {}); CPU ms per MiB: {:.2} clients, {} server",
                f.rate,
                f.lost,
                f.slow,
                f.cpu_clients * 1000.0 / mib,
                per_unit(f.cpu_server, mib),
            );
        }
        return;
    }
    if only.is_empty() || only == "stream" {
        let default = Config::new("", "").max_payload_bytes();
        for packet in [64 * 1024usize, default, 512 * 1024] {
            let count = stream_total / packet as u64;
            let (mut raws, mut copies, mut swps, mut zcs) = (vec![], vec![], vec![], vec![]);
            let mib_s = |f: Figure| Figure {
                rate: f.rate * packet as f64 / MIB as f64,
                ..f
            };
            for _ in 0..rounds {
                raws.push(mib_s(raw(&url, server_pid, packet, count, false).await));
                copies.push(mib_s(raw(&url, server_pid, packet, count, true).await));
                swps.push(
                    swp_stream(&url, server_pid, packet, stream_total, Reading::Copy, false).await,
                );
                zcs.push(
                    swp_stream(
                        &url,
                        server_pid,
                        packet,
                        stream_total,
                        Reading::ZeroCopy,
                        false,
                    )
                    .await,
                );
            }
            let (s, z) = (median(swps), median(zcs));
            let (r, c) = (median(raws), median(copies));
            let label = if packet == default { " (default)" } else { "" };
            row(
                &format!("stream, {} KiB packets{label}", packet / 1024),
                "MiB/s",
                &r,
                &s,
            );
            row("  vs raw with app copies", "MiB/s", &c, &s);
            row("  swp read_chunk (zero-copy read)", "MiB/s", &r, &z);
            cpu_row("MiB", mib, &r, &s);
            cpu_row("MiB (raw with app copies)", mib, &c, &s);
            cpu_row("MiB (swp read_chunk)", mib, &r, &z);
        }
    }
    if only.is_empty() || only == "sealed" {
        // Sealed (AES-256-GCM, docs/PROTOCOL.md §14) against plain, same
        // packets, interleaved.
        let packet = Config::new("", "").max_payload_bytes();
        let (mut plain, mut sealed) = (vec![], vec![]);
        for _ in 0..rounds {
            plain.push(
                swp_stream(&url, server_pid, packet, stream_total, Reading::Copy, false).await,
            );
            sealed.push(
                swp_stream(&url, server_pid, packet, stream_total, Reading::Copy, true).await,
            );
        }
        let (p, s) = (median(plain), median(sealed));
        row("sealed stream vs plain swp, 63 KiB", "MiB/s", &p, &s);
        cpu_row("MiB (sealed vs plain)", mib, &p, &s);
    }
    if only.is_empty() || only == "latency" {
        let n = if quick { 200 } else { 5000 };
        let (mut raws, mut swps) = (vec![], vec![]);
        for _ in 0..rounds.min(3) {
            raws.push(files::raw_ping(&url, n).await);
            swps.push(files::swp_ping(&url, n).await);
        }
        let (r, s) = (middle_by(raws, |p| p.0), middle_by(swps, |p| p.0));
        println!(
            "{:<34} raw request/reply p50 {:>7.1} us p99 {:>7.1} us   swp p50 {:>7.1} us p99 {:>7.1} us   swp/raw p50 {:.2} p99 {:.2}",
            format!("64 B ping-pong ({n} round trips)"),
            r.0,
            r.1,
            s.0,
            s.1,
            s.0 / r.0,
            s.1 / r.1
        );
    }
    if only.is_empty() || only == "files" {
        // One file through swp and through the JetStream Object Store, and
        // the stream's goodput measured beside them (same window).
        let size = if quick { 16 * MIB } else { 512 * MIB };
        let (dir, src) = files::make_file(size);
        let (mut streams, mut swps, mut objs) = (vec![], vec![], vec![]);
        let (mut clis, mut put_gets) = (vec![], vec![]);
        let in_processes = |f: fn(&files::Cli, &Path, &Path) -> f64, out: &str| {
            let (swp, url, src, out) = (swp.to_path_buf(), url.clone(), src.clone(), dir.join(out));
            tokio::task::spawn_blocking(move || f(&files::Cli { swp, url }, &src, &out))
        };
        for _ in 0..rounds.min(3) {
            streams.push(swp_stream(&url, server_pid, 63 * 1024, size, Reading::Copy, false).await);
            swps.push(files::swp_file(&url, server_pid, &src, &dir.join("swp")).await);
            settle().await;
            clis.push(in_processes(files::Cli::send_recv, "cli").await.unwrap());
            settle().await;
            put_gets.push(in_processes(files::Cli::put_get, "serve").await.unwrap());
            objs.push(files::object_store(&url, &src, &dir.join("obj")).await);
        }
        let mid = |v: Vec<f64>| middle_by(v, |&x| x);
        let (stream, file) = (median(streams), median(swps));
        let (st, sw) = (stream.rate, file.rate);
        println!(
            "{:<34} swp {:>10.1} MiB/s (verified both ends)   vs the stream {st:.1} MiB/s: {:.2}",
            format!("file {} MiB, send_file->recv_file", size / MIB),
            sw,
            sw / st
        );
        // What the file costs beyond the stream: one BLAKE2b pass per side
        // (measured here, one core) and the disk. With both ends and the
        // server on this machine's cores, CPU is the bound.
        let fmib = size as f64 / MIB as f64;
        let hash = files::hash_ms_per_mib();
        let total = |f: &Figure| (f.cpu_clients + f.cpu_server.unwrap_or(0.0)) * 1000.0 / fmib;
        let (ts, tf) = (total(&stream), total(&file));
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let bound = cores * 1000.0 / (ts + 2.0 * hash);
        println!(
            "  CPU ms per MiB, all processes: stream {ts:.2}, file {tf:.2}; BLAKE2b {hash:.2} per pass (x2 = {:.2}); \
             file - stream - 2 passes = {:.2}",
            2.0 * hash,
            tf - ts - 2.0 * hash
        );
        println!(
            "  {cores} cores / (stream + 2 hash passes) = {bound:.1} MiB/s bound on this machine; the file reached {:.2} of it",
            sw / bound
        );
        let (cli, put_get) = (mid(clis), mid(put_gets));
        println!(
            "{:<34} swp {cli:>10.1} MiB/s   vs the stream {:.2}; vs the bound {:.2}",
            "  swp send -> swp recv (processes)",
            cli / st,
            cli / bound
        );
        // The file crosses twice (to the served directory and back), each
        // time with a hash pass on both ends: half the one-way bound.
        println!(
            "{:<34} swp {put_get:>10.1} MiB/s   (the file crosses twice) vs half the bound {:.2}",
            "  swp put, then swp get (swp serve)",
            put_get / (bound / 2.0)
        );
        match objs.into_iter().collect::<Option<Vec<f64>>>() {
            Some(o) => {
                let o = mid(o);
                println!(
                    "{:<34} Object Store put+get {o:>7.1} MiB/s   swp/Object Store {:.2}; swp put+get/Object Store {:.2}",
                    "",
                    sw / o,
                    put_get / o
                );
            }
            None => {
                println!("  (no Object Store row: the server has no JetStream; start it with -js)")
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    if only.is_empty() || only == "sessions" {
        // The same bytes through one session, then shared by N concurrent
        // sessions through one service (docs/PROTOCOL.md §4.1). 1 GiB, so
        // that each of 1000 sessions carries 1 MiB (16 packets): with 256
        // KiB each (4 packets) the row measured per-session fixed costs
        // (Fin exchange, first acks) more than scaling (docs/BENCHMARKS.md).
        let total = if quick { 32 * MIB } else { 1024 * MIB };
        let counts: &[usize] = if quick {
            &[1, 10, 100]
        } else {
            &[1, 10, 100, 1000]
        };
        let mut single = None;
        for &n in counts {
            let mut runs = Vec::new();
            for _ in 0..rounds.min(3) {
                runs.push(sessions::run_sessions(&url, n, total).await);
            }
            runs.sort_by(|a, b| a.goodput.total_cmp(&b.goodput));
            let lost: u64 = runs.iter().map(|r| r.lost).sum();
            let failed: Vec<&String> = runs.iter().flat_map(|r| &r.failed).collect();
            if let Some(first) = failed.first() {
                println!(
                    "  {} of {} connects through the service FAILED; the first: {first}",
                    failed.len(),
                    n * runs.len()
                );
            }
            let mid = &runs[runs.len() / 2];
            let hs = middle_by(runs.iter().map(|r| r.handshakes_per_s).collect(), |&x| x);
            let base = *single.get_or_insert(mid.goodput);
            println!(
                "{:<34} swp {:>10.1} MiB/s aggregate (lost {lost})   vs 1 session {:.2}   handshakes {:>8.0} per s",
                format!("{n} sessions through one service"),
                mid.goodput,
                mid.goodput / base,
                hs,
            );
        }
    }
    if only.is_empty() || only == "messages" {
        let (mut raws, mut swps, mut singles) = (vec![], vec![], vec![]);
        for _ in 0..rounds {
            raws.push(raw(&url, server_pid, 1024, msgs, false).await);
            swps.push(swp_messages(&url, server_pid, 1024, msgs, true).await);
            singles.push(swp_messages(&url, server_pid, 1024, msgs, false).await);
        }
        let raw = median(raws);
        let (b, o) = (median(swps), median(singles));
        let thousands = msgs as f64 / 1000.0;
        row("1 KiB messages", "msgs/s", &raw, &b);
        row("  one message per packet", "msgs/s", &raw, &o);
        cpu_row("1000 messages", thousands, &raw, &b);
        cpu_row("1000 (one per packet)", thousands, &raw, &o);
    }
    if only.is_empty() || only == "curve" {
        // CPU-bound in the simulator, off the runtime's workers.
        let (windows, bytes): (&'static [u64], u64) = if quick {
            (&[256, 1024], 2 * MIB)
        } else {
            (&[1024, 4096, 16384], 64 * MIB)
        };
        tokio::task::spawn_blocking(move || window_curve(windows, bytes))
            .await
            .expect("the engine curve");
    }
}
