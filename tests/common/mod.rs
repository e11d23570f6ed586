//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod forge;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use swp::server::NatsServer;
use swp::testkit::pattern_byte;
use swp::transport::{NatsOptions, NatsTransport};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Starts a real nats-server, or fails the test saying how to install one.
pub fn nats_server() -> NatsServer {
    NatsServer::start().unwrap_or_else(|e| panic!("this test needs a real nats-server: {e}"))
}

/// As [`nats_server`], with `conf` (nats-server's configuration syntax)
/// written to `file` and passed as `--config`.
pub fn nats_server_with_config(file: &std::path::Path, conf: &str) -> NatsServer {
    std::fs::write(file, conf).unwrap();
    NatsServer::start_with_args(&["--config", file.to_str().unwrap()])
        .unwrap_or_else(|e| panic!("this test needs a real nats-server: {e}"))
}

pub async fn nats(server: &NatsServer) -> Arc<NatsTransport> {
    NatsTransport::connect(NatsOptions::new(server.url()))
        .await
        .expect("connect to nats-server")
}

/// An AsyncRead yielding `total` bytes of the test pattern.
pub struct PatternReader {
    pub pos: u64,
    pub total: u64,
}

impl AsyncRead for PatternReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = (self.total - self.pos)
            .min(buf.remaining() as u64)
            .min(256 * 1024) as usize;
        let start = self.pos;
        let dst = buf.initialize_unfilled_to(n);
        for (i, b) in dst.iter_mut().enumerate() {
            *b = pattern_byte(start + i as u64);
        }
        buf.advance(n);
        self.pos += n as u64;
        Poll::Ready(Ok(()))
    }
}

/// An AsyncWrite that checks every byte against the test pattern.
#[derive(Default)]
pub struct PatternChecker {
    pub pos: u64,
    pub first_bad: Option<u64>,
}

impl AsyncWrite for PatternChecker {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.first_bad.is_none() {
            let start = self.pos;
            if let Some(i) = buf
                .iter()
                .enumerate()
                .position(|(i, b)| *b != pattern_byte(start + i as u64))
            {
                self.first_bad = Some(start + i as u64);
            }
        }
        self.pos += buf.len() as u64;
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A unique inbox name per test and session.
pub fn inbox(test: &str, who: &str) -> String {
    format!("swp.test.{test}.{who}.{}", std::process::id())
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("swp-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The sorted names in `dir` (empty if it does not exist).
pub fn listing(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Waits for a child process, killing it and failing with its stderr if it
/// has not ended within `limit` (every wait in a test has a bound).
pub fn wait_bounded(
    mut child: std::process::Child,
    limit: std::time::Duration,
    what: &str,
) -> std::process::Output {
    let t0 = std::time::Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{what} did not end within {limit:?}\nstderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// A bound of real time on a simulated test. Virtual time cannot bound a
/// test whose tasks spin (a paused clock advances only while the runtime
/// is idle), so a test that broke that way would hang instead of failing.
/// The watchdog's thread ends the whole test process, saying what was
/// running (e.g. the seed and how to reproduce it), if no [`pet`] comes
/// within `limit`; dropping it stops it.
///
/// [`pet`]: Watchdog::pet
#[allow(dead_code)] // not every test binary that includes common uses it
pub struct Watchdog {
    tx: Option<std::sync::mpsc::Sender<String>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[allow(dead_code)]
impl Watchdog {
    pub fn start(limit: std::time::Duration, what: impl Into<String>) -> Watchdog {
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let mut what = what.into();
        let thread = std::thread::spawn(move || {
            loop {
                match rx.recv_timeout(limit) {
                    Ok(next) => what = next,
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        // Straight to stderr: the harness's capture of
                        // `eprintln!` would die with the process.
                        let said = format!(
                            "\n{what}: still running after {limit:?} of real time (a spin?)\n"
                        );
                        let _ = std::io::Write::write_all(&mut std::io::stderr(), said.as_bytes());
                        std::process::exit(101);
                    }
                }
            }
        });
        Watchdog {
            tx: Some(tx),
            thread: Some(thread),
        }
    }

    /// Restarts the countdown for the next piece of work, described by
    /// `what`.
    pub fn pet(&self, what: impl Into<String>) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(what.into());
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A third party on a real nats-server that sees every packet (subscribed
/// to `>`, with `no_echo` so that it never copies its own) and, for each
/// packet sent to one of `inboxes`, publishes to the same subject a burst
/// (1-64) of [`forge::Forger`]'s forgeries: what no correct peer sends and
/// the protocol promises never to believe.
#[allow(dead_code)]
pub struct Flood {
    stop: Arc<std::sync::atomic::AtomicBool>,
    sent: Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

#[allow(dead_code)]
impl Flood {
    /// Subscribes (and flushes) before it returns: from then on it sees
    /// everything.
    pub async fn start(url: &str, inboxes: Vec<String>, seed: u64) -> Flood {
        use futures::StreamExt;
        use rand::Rng;
        use std::sync::atomic::Ordering;
        let evil = async_nats::ConnectOptions::new()
            .no_echo()
            .connect(url)
            .await
            .expect("the flood's connection");
        let mut sub = evil.subscribe(">").await.unwrap();
        evil.flush().await.unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (halt, counted) = (stop.clone(), sent.clone());
        let task = tokio::spawn(async move {
            let mut forger = forge::Forger::new(seed);
            while !halt.load(Ordering::SeqCst) {
                let next = tokio::time::timeout(std::time::Duration::from_millis(100), sub.next());
                let Ok(Some(m)) = next.await else { continue };
                forger.saw(&m.payload);
                if !inboxes.iter().any(|i| i == m.subject.as_str()) {
                    continue;
                }
                for _ in 0..[1usize, 4, 16, 64][forger.rng().gen_range(0..4)] {
                    let Some(f) = forger.forge(m.subject.as_str()) else {
                        break;
                    };
                    if evil.publish(m.subject.clone(), f).await.is_err() {
                        return;
                    }
                    counted.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        Flood { stop, sent, task }
    }

    /// Packets published so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Stops it (within about 100 ms) and returns what it published.
    pub async fn stop(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        tokio::time::timeout(std::time::Duration::from_secs(30), self.task)
            .await
            .expect("the flood stops")
            .expect("the flood's task");
        self.sent.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A runtime with one worker thread of its own, for what a process test
/// runs beside its processes (an attacker, a tap) while the test's thread
/// waits on them.
#[allow(dead_code)]
pub fn background_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Rewrites the last MiB of the file at `path` (of `size` bytes) in place,
/// as another program changing a source mid-transfer would.
pub fn overwrite_last_mib(path: &std::path::Path, size: u64) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(size - (1 << 20))).unwrap();
    f.write_all(&vec![0xAB; 1 << 20]).unwrap();
}
