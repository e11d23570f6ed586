//! Many sessions through one service: the aggregate goodput of N
//! concurrent sessions (all on one client connection, into one `Service`
//! on one server connection) against one session moving the same bytes,
//! and the rate at which the service completes handshakes.

use super::{MIB, settle, transport};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use swp::proto::Tuning;
use swp::{Service, ServiceConfig, Session};
use tokio::io::AsyncWriteExt;

/// One run of `n` sessions moving `total` bytes between them.
pub(crate) struct SessionsFigure {
    /// Aggregate MiB/s from the first byte to the last byte read.
    pub goodput: f64,
    /// Handshakes completed per second, all `n` started at once.
    pub handshakes_per_s: f64,
    /// Bytes that did not arrive (must be 0).
    pub lost: u64,
    /// Connects that failed, with the first error (must be none).
    pub failed: Vec<String>,
}

pub(crate) async fn run_sessions(url: &str, n: usize, total: u64) -> SessionsFigure {
    settle().await;
    let (tc, ts) = (transport(url).await, transport(url).await);
    let subject = format!("bench.svc.{n}.{}", std::process::id());
    let service = Arc::new(
        Service::bind(
            ts.clone(),
            ServiceConfig::new(&subject).max_sessions(n + 16),
        )
        .await
        .unwrap(),
    );
    let received = Arc::new(AtomicU64::new(0));
    // Handshakes: all at once.
    let t = Instant::now();
    let connects: Vec<_> = (0..n)
        .map(|_| {
            let (tc, subject) = (tc.clone(), subject.clone());
            tokio::spawn(async move { Session::connect_to(tc, &subject, Tuning::new()).await })
        })
        .collect();
    let mut clients = Vec::with_capacity(n);
    let mut failed = Vec::new();
    for c in connects {
        match c.await.unwrap() {
            Ok(s) => clients.push(s),
            Err(e) => failed.push(e.to_string()),
        }
    }
    let handshakes_per_s = clients.len() as f64 / t.elapsed().as_secs_f64();
    // The service queues established sessions (room for all of them);
    // a failed connect is reported, not waited for.
    let n = clients.len();
    let readers = {
        let mut readers = Vec::with_capacity(n);
        for _ in 0..n {
            let s = service.accept().await.unwrap();
            let received = received.clone();
            readers.push(tokio::spawn(async move {
                while let Some(c) = s.read_chunk(usize::MAX).await.unwrap() {
                    received.fetch_add(c.len() as u64, Ordering::Relaxed);
                }
                s
            }));
        }
        readers
    };
    // Data: every session its share, written at once.
    let share = total / n as u64;
    let chunk = Arc::new(vec![5u8; (1 << 20).min(share.max(1) as usize)]);
    let start = Instant::now();
    let writers: Vec<_> = clients
        .into_iter()
        .map(|mut s| {
            let chunk = chunk.clone();
            tokio::spawn(async move {
                let mut sent = 0u64;
                while sent < share {
                    let k = (share - sent).min(chunk.len() as u64) as usize;
                    s.write_all(&chunk[..k]).await.unwrap();
                    sent += k as u64;
                }
                s.shutdown().await.unwrap();
                s
            })
        })
        .collect();
    let mut ended = Vec::with_capacity(n);
    for r in readers {
        ended.push(r.await.unwrap());
    }
    let secs = start.elapsed().as_secs_f64();
    for w in writers {
        drop(w.await.unwrap());
    }
    drop(ended);
    let got = received.load(Ordering::Relaxed);
    SessionsFigure {
        goodput: got as f64 / MIB as f64 / secs,
        handshakes_per_s,
        lost: share * n as u64 - got,
        failed,
    }
}
