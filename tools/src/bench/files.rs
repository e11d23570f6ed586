//! Files and latency in the NATS benchmark: `send_file` -> `recv_file` of
//! one file (BLAKE2b-512 verified on both ends), the same file through the
//! command-line tool as separate processes (`swp send` -> `swp recv`, and
//! `swp put` then `swp get` through `swp serve`), against the JetStream
//! Object Store's put then get of the same file through the same server;
//! and a 64-byte ping-pong over a session against raw request/reply.

use super::{CpuClock, Figure, MIB, settle, transport};
use futures::StreamExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use swp::Session;
use swp::proto::Config;
use tokio::io::AsyncWriteExt;

/// A file of `size` bytes in a fresh directory (removed by the caller).
pub(crate) fn make_file(size: u64) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("swp-bench-files-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bench.bin");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let mut block = vec![0u8; 1 << 20];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut left = size;
    while left > 0 {
        for b in block.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let n = left.min(block.len() as u64) as usize;
        std::io::Write::write_all(&mut f, &block[..n]).unwrap();
        left -= n as u64;
    }
    std::io::Write::flush(&mut f).unwrap();
    (dir, path)
}

/// `send_file` -> `recv_file` through the server: MiB/s from the Offer to
/// the sender's Verdict (both ends hash; the receiver syncs and renames),
/// and the CPU both ends and the server spent.
pub(crate) async fn swp_file(url: &str, server_pid: Option<u32>, src: &Path, out: &Path) -> Figure {
    settle().await;
    let _ = std::fs::remove_dir_all(out);
    let (ta, tb) = (transport(url).await, transport(url).await);
    let id = std::process::id();
    let (ia, ib) = (format!("bench.file.a.{id}"), format!("bench.file.b.{id}"));
    let cfg = |l: &str, r: &str| {
        Config::new(l, r)
            .window(1024, 64 * MIB)
            .send_buffer(64 * MIB)
    };
    let listener = Session::listen(tb.clone(), cfg(&ib, "")).await.unwrap();
    let accept = tokio::spawn(listener.accept());
    let mut a = Session::connect(ta.clone(), cfg(&ia, &ib)).await.unwrap();
    let mut b = accept.await.unwrap().unwrap();
    let size = std::fs::metadata(src).unwrap().len();
    let out2 = out.to_path_buf();
    let cpu = CpuClock::start(server_pid);
    let start = Instant::now();
    let receiver = tokio::spawn(async move { swp::file::recv_file(&mut b, &out2, None).await });
    let sent = swp::file::send_file(&mut a, src, None).await.unwrap();
    let secs = start.elapsed().as_secs_f64();
    let (meta, _) = receiver.await.unwrap().unwrap();
    let (cpu_clients, cpu_server) = cpu.stop();
    assert_eq!(meta.blake2b, sent.meta.blake2b, "the file arrived intact");
    Figure {
        rate: size as f64 / MIB as f64 / secs,
        lost: 0,
        slow: 0,
        cpu_clients,
        cpu_server,
    }
}

/// BLAKE2b-512 on one core, in memory (the digest files carry, with the
/// implementation swp uses): ms of CPU per MiB.
pub(crate) fn hash_ms_per_mib() -> f64 {
    let data = vec![0x5au8; 64 * MIB as usize];
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let h = blake2b_simd::Params::new()
            .hash_length(64)
            .to_state()
            .update(&data)
            .finalize();
        std::hint::black_box(h);
        best = best.min(t.elapsed().as_secs_f64() * 1000.0 / 64.0);
    }
    best
}

/// The JetStream Object Store: put the file, then get it back into a file
/// (end to end, as a user moving a file through it would). `None` if the
/// server has no JetStream.
pub(crate) async fn object_store(url: &str, src: &Path, out: &Path) -> Option<f64> {
    settle().await;
    let client = async_nats::connect(url).await.ok()?;
    let js = async_nats::jetstream::new(client);
    let bucket = format!("bench-{}", std::process::id());
    let store = js
        .create_object_store(async_nats::jetstream::object_store::Config {
            bucket: bucket.clone(),
            ..Default::default()
        })
        .await
        .ok()?;
    let size = std::fs::metadata(src).unwrap().len();
    let start = Instant::now();
    let mut file = tokio::fs::File::open(src).await.unwrap();
    store.put("bench.bin", &mut file).await.unwrap();
    let mut obj = store.get("bench.bin").await.unwrap();
    std::fs::create_dir_all(out).unwrap();
    let mut dst = tokio::fs::File::create(out.join("bench.bin"))
        .await
        .unwrap();
    tokio::io::copy(&mut obj, &mut dst).await.unwrap();
    dst.sync_all().await.unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(
        std::fs::metadata(out.join("bench.bin")).unwrap().len(),
        size,
        "the Object Store returned the whole file"
    );
    let _ = js.delete_object_store(&bucket).await;
    Some(size as f64 / MIB as f64 / secs)
}

/// Round trips of a 64-byte message: (p50, p99) in microseconds.
fn percentiles(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    (at(0.5), at(0.99))
}

/// swp: A sends 64 bytes as a message, B echoes it, A receives.
pub(crate) async fn swp_ping(url: &str, rounds: usize) -> (f64, f64) {
    settle().await;
    let (ta, tb) = (transport(url).await, transport(url).await);
    let id = std::process::id();
    let (ia, ib) = (format!("bench.ping.a.{id}"), format!("bench.ping.b.{id}"));
    let listener = Session::listen(tb.clone(), Config::new(&ib, ""))
        .await
        .unwrap();
    let accept = tokio::spawn(listener.accept());
    let mut a = Session::connect(ta.clone(), Config::new(&ia, &ib))
        .await
        .unwrap();
    let b = accept.await.unwrap().unwrap();
    let echo = tokio::spawn(async move {
        while let Ok(Some(m)) = b.recv().await {
            if b.send(m).await.is_err() {
                break;
            }
        }
        b.stats().protocol.wire
    });
    let msg = bytes::Bytes::from(vec![1u8; 64]);
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        a.send(msg.clone()).await.unwrap();
        let back = a.recv().await.unwrap().unwrap();
        times.push(t.elapsed());
        assert_eq!(back.len(), 64);
    }
    a.shutdown().await.unwrap();
    let sa = a.stats().protocol.wire;
    let sb = echo.await.unwrap();
    println!(
        "  swp ping-pong packets per round trip: A sent {:.2} (acks {:.2}, window updates {:.2}), B sent {:.2} (acks {:.2}, window updates {:.2})",
        sa.packets_sent as f64 / rounds as f64,
        sa.acks_sent as f64 / rounds as f64,
        sa.window_updates_sent as f64 / rounds as f64,
        sb.packets_sent as f64 / rounds as f64,
        sb.acks_sent as f64 / rounds as f64,
        sb.window_updates_sent as f64 / rounds as f64,
    );
    percentiles(times)
}

/// Raw NATS request/reply of 64 bytes (a responder that answers each).
pub(crate) async fn raw_ping(url: &str, rounds: usize) -> (f64, f64) {
    settle().await;
    let (tr, ts) = (transport(url).await, transport(url).await);
    let subject = format!("bench.rr.{}", std::process::id());
    let mut sub = ts.client().subscribe(subject.clone()).await.unwrap();
    ts.client().flush().await.unwrap();
    let responder = ts.client().clone();
    let answer = tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            if let Some(reply) = m.reply {
                let _ = responder.publish(reply, m.payload).await;
            }
        }
    });
    let msg = bytes::Bytes::from(vec![1u8; 64]);
    let mut times = Vec::with_capacity(rounds);
    let mut spurious = 0;
    while times.len() < rounds {
        let t = Instant::now();
        match tr.client().request(subject.clone(), msg.clone()).await {
            Ok(back) => {
                times.push(t.elapsed());
                assert_eq!(back.payload.len(), 64);
            }
            // Seen here with the responder subscribed and flushed: counted
            // and shown, the round trip tried again (it is not timed).
            Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders && spurious < 100 => {
                spurious += 1;
            }
            Err(e) => panic!("raw request/reply failed: {e}"),
        }
    }
    answer.abort();
    if spurious > 0 {
        println!("  raw request/reply: {spurious} spurious no-responders answers (retried)");
    }
    percentiles(times)
}

/// What a user of the command-line tool runs: the `swp` binary at `swp`,
/// as separate processes, through the server at `url`.
pub(crate) struct Cli {
    pub(crate) swp: PathBuf,
    pub(crate) url: String,
}

impl Cli {
    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut c = std::process::Command::new(&self.swp);
        c.args(args)
            .args(["--quiet", "--server", &self.url])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null());
        c
    }

    fn succeeded(child: std::process::Child, what: &str) {
        let out = child.wait_with_output().expect("waiting for swp");
        assert!(
            out.status.success(),
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `swp recv` in one process, `swp send` of `src` in another: MiB/s
    /// from starting the sender until both have exited (the receiver has
    /// verified, synced and renamed the file by then).
    pub(crate) fn send_recv(&self, src: &Path, out: &Path) -> f64 {
        let _ = std::fs::remove_dir_all(out);
        let inbox = format!("bench.cli.{}", std::process::id());
        let out_s = out.to_string_lossy();
        let recv = self
            .command(&[
                "recv",
                "--timeout",
                "60",
                "--inbox",
                &inbox,
                "--out",
                &out_s,
            ])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("starting swp recv");
        let start = Instant::now();
        let src_s = src.to_string_lossy();
        let send = self
            .command(&["send", "--to", &inbox, &src_s])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("starting swp send");
        Self::succeeded(send, "swp send");
        Self::succeeded(recv, "swp recv");
        let secs = start.elapsed().as_secs_f64();
        let size = std::fs::metadata(src).unwrap().len();
        assert_eq!(
            std::fs::metadata(out.join(src.file_name().unwrap()))
                .unwrap()
                .len(),
            size,
            "swp recv saved the whole file"
        );
        size as f64 / MIB as f64 / secs
    }

    /// `swp put` of `src` to a `swp serve` of a fresh directory, then `swp
    /// get` of it back into another (the Object Store row's put then get,
    /// done with swp): MiB/s of the file over the two, end to end.
    pub(crate) fn put_get(&self, src: &Path, work: &Path) -> f64 {
        use std::io::BufRead;
        let _ = std::fs::remove_dir_all(work);
        let (served, got) = (work.join("served"), work.join("got"));
        let subject = format!("bench.serve.{}", std::process::id());
        let mut serve = std::process::Command::new(&self.swp)
            .args(["serve", &subject])
            .arg(&served)
            .args(["--server", &self.url])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("starting swp serve");
        // It says "serving ..." once its subscription is in place.
        let mut err = std::io::BufReader::new(serve.stderr.take().unwrap());
        let mut line = String::new();
        err.read_line(&mut line).expect("reading swp serve");
        assert!(line.starts_with("serving"), "swp serve said {line:?}");
        let drain = std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
        let name = src.file_name().unwrap().to_string_lossy().to_string();
        let start = Instant::now();
        let src_s = src.to_string_lossy();
        let put = self
            .command(&["put", &subject, &src_s])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("starting swp put");
        Self::succeeded(put, "swp put");
        let got_s = got.to_string_lossy();
        let get = self
            .command(&["get", &subject, &name, "--output", &got_s])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("starting swp get");
        Self::succeeded(get, "swp get");
        let secs = start.elapsed().as_secs_f64();
        let _ = serve.kill();
        let _ = serve.wait();
        let _ = drain.join();
        let size = std::fs::metadata(src).unwrap().len();
        assert_eq!(
            std::fs::metadata(got.join(&name)).unwrap().len(),
            size,
            "swp get saved the whole file"
        );
        let _ = std::fs::remove_dir_all(work);
        size as f64 / MIB as f64 / secs
    }
}
