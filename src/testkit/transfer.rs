//! Transfers and message runs over a [`Pair`](super::Pair), checked against the pattern.

use super::Pair;
use crate::proto::{Connection, Recv};
use bytes::Bytes;
use std::time::Duration;

/// What to transfer with [`transfer`].
///
/// ```
/// use swp::testkit::{Pair, Side};
/// use swp::simnet::LinkConfig;
/// use std::time::Duration;
/// let mut pair = Pair::new(1, LinkConfig::new(), Pair::default_config("A", "B"), Pair::default_config("B", ""));
/// use swp::testkit::{transfer, TransferSpec};
/// // A slow reader: 64 KiB per virtual millisecond, no close at the end.
/// let spec = TransferSpec { read_rate_per_ms: Some(64 * 1024), close: false, ..TransferSpec::new(8 << 20) };
/// let r = transfer(&mut pair, &spec).unwrap();
/// assert!(r.elapsed >= Duration::from_millis(8 * 16 - 1)); // 8 MiB at 64 MiB/s
/// assert!(pair.a.is_established()); // still open
/// ```
#[derive(Debug, Clone)]
pub struct TransferSpec {
    /// Bytes to send from A to B.
    pub bytes: u64,
    /// Virtual-time budget for the data and, with `close`, for both closes
    /// to settle (`Connection::close_settled`); exceeding it is an error.
    /// Once settled, the engines get one dead-peer timeout more to reach
    /// Closed: a close whose last FinAck was lost after the peer stopped
    /// lingering ends (Normal) only then (docs/PROTOCOL.md §7.1).
    pub budget: Duration,
    /// If set, B's application reads at most this many bytes per millisecond
    /// of virtual time (a slow consumer); else it reads everything at once.
    pub read_rate_per_ms: Option<u64>,
    /// Close both directions at the end and wait for both to be Closed.
    pub close: bool,
}

impl TransferSpec {
    /// `bytes` from A to B, a 10-minute virtual budget, a fast reader,
    /// closing at the end.
    ///
    /// ```
    /// use swp::testkit::TransferSpec;
    /// let s = TransferSpec::new(1000);
    /// assert_eq!((s.bytes, s.close, s.read_rate_per_ms), (1000, true, None));
    /// assert_eq!(s.budget, std::time::Duration::from_secs(600));
    /// ```
    pub fn new(bytes: u64) -> Self {
        TransferSpec {
            bytes,
            budget: Duration::from_secs(600),
            read_rate_per_ms: None,
            close: true,
        }
    }
}

/// Result of a [`transfer`].
///
/// ```
/// use swp::testkit::{Pair, transfer, TransferSpec};
/// use swp::simnet::LinkConfig;
/// use std::time::Duration;
/// // 10 MB/s link: goodput cannot exceed it.
/// let link = LinkConfig::new().bandwidth(Some(10_000_000)).latency(Duration::from_millis(1));
/// let mut pair = Pair::new(1, link, Pair::default_config("A", "B"), Pair::default_config("B", ""));
/// let r = transfer(&mut pair, &TransferSpec::new(4 << 20)).unwrap();
/// assert!(r.goodput_mib_s < 10e6 / (1 << 20) as f64, "{r:?}");
/// assert!(r.goodput_mib_s > 5.0, "{r:?}");
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TransferReport {
    /// Bytes delivered to B (all verified).
    pub bytes: u64,
    /// Virtual time from the start of the call until B had every byte.
    pub elapsed: Duration,
    /// Goodput in MiB per virtual second.
    pub goodput_mib_s: f64,
}

/// Byte `i` of a test stream: a pattern that catches reordering, loss and
/// duplication (a shifted or repeated run of bytes does not match).
///
/// ```
/// use swp::testkit::pattern_byte;
/// let first: Vec<u8> = (0..8).map(pattern_byte).collect();
/// let shifted: Vec<u8> = (1..9).map(pattern_byte).collect();
/// assert_ne!(first, shifted); // a lost or repeated byte shows
/// ```
pub fn pattern_byte(i: u64) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8
}

/// Streams `spec.bytes` of [`pattern_byte`] data from A to B over the pair,
/// verifying every byte on arrival, then (optionally) closes both sides.
/// Connects first if needed. Errors describe what went wrong and when.
///
/// ```
/// use swp::testkit::{Pair, transfer, TransferSpec};
/// use swp::simnet::LinkConfig;
/// use std::time::Duration;
/// // A network that loses everything: the transfer fails with a message that
/// // names the seed, instead of hanging.
/// let mut pair = Pair::new(9, LinkConfig::new().loss(1.0), Pair::default_config("A", "B"), Pair::default_config("B", ""));
/// let spec = TransferSpec { budget: Duration::from_secs(30), ..TransferSpec::new(1000) };
/// let err = transfer(&mut pair, &spec).unwrap_err();
/// assert!(err.starts_with("seed 9:"), "{err}");
/// ```
pub fn transfer(pair: &mut Pair, spec: &TransferSpec) -> Result<TransferReport, String> {
    let start = pair.now();
    let deadline = start + spec.budget;
    let mut written = 0u64;
    let mut read = 0u64;
    let mut done_at = None;
    let mut chunk = vec![0u8; 256 * 1024];
    let mut buf = vec![0u8; 256 * 1024];
    let mut last_read_tick = pair.now();
    let mut closed_a = false;
    // The budget covers the data and a settled close (what `Session::close`
    // waits for). A close whose last FinAck was lost after the peer had
    // stopped lingering reaches Closed (Normal) only at the dead-peer
    // timeout (docs/PROTOCOL.md §7.1): that much more is allowed then.
    let mut deadline = deadline;
    let mut settled = false;
    loop {
        // The writer: fill the send buffer.
        while written < spec.bytes && pair.a.send_space() > 0 && !pair.a.is_closed() {
            let n = (spec.bytes - written).min(chunk.len() as u64) as usize;
            for (k, b) in chunk[..n].iter_mut().enumerate() {
                *b = pattern_byte(written + k as u64);
            }
            let took = pair.a.write(&chunk[..n]).map_err(|e| e.to_string())?;
            if took == 0 {
                break;
            }
            written += took as u64;
        }
        if written == spec.bytes && spec.close && !closed_a {
            pair.a.close(pair.now());
            closed_a = true;
        }
        // The reader.
        let mut allowance = match spec.read_rate_per_ms {
            None => u64::MAX,
            Some(rate) => {
                let ms = pair
                    .now()
                    .saturating_duration_since(last_read_tick)
                    .as_millis() as u64;
                if ms > 0 {
                    last_read_tick += Duration::from_millis(ms);
                }
                rate * ms
            }
        };
        while allowance > 0 {
            let cap = allowance.min(buf.len() as u64) as usize;
            match pair.b.read(&mut buf[..cap]) {
                Ok(Recv::Data(n)) => {
                    for (k, b) in buf[..n].iter().enumerate() {
                        if *b != pattern_byte(read + k as u64) {
                            return Err(format!(
                                "seed {}: byte {} corrupt: got {:#04x}, want {:#04x}",
                                pair.net.seed(),
                                read + k as u64,
                                b,
                                pattern_byte(read + k as u64)
                            ));
                        }
                    }
                    read += n as u64;
                    allowance -= n as u64;
                }
                Ok(Recv::Blocked) => break,
                Ok(Recv::Finished) => break,
                Err(e) => return Err(format!("seed {}: B read failed: {e}", pair.net.seed())),
            }
        }
        if read > spec.bytes {
            return Err(format!(
                "seed {}: B read {} bytes, more than sent",
                pair.net.seed(),
                read
            ));
        }
        if read == spec.bytes && done_at.is_none() {
            done_at = Some(pair.now());
            if spec.close {
                pair.b.close(pair.now());
            }
        }
        if let Some(r) = pair.a.close_reason().filter(|r| !r.is_normal()) {
            return Err(format!("seed {}: A failed: {r}", pair.net.seed()));
        }
        if let Some(r) = pair.b.close_reason().filter(|r| !r.is_normal()) {
            return Err(format!("seed {}: B failed: {r}", pair.net.seed()));
        }
        let finished =
            done_at.is_some() && (!spec.close || (pair.a.is_closed() && pair.b.is_closed()));
        if finished {
            break;
        }
        if spec.close
            && !settled
            && done_at.is_some()
            && pair.a.close_settled()
            && pair.b.close_settled()
        {
            settled = true;
            let lost_fin_ack = [pair.a.dead_peer_timeout(), pair.b.dead_peer_timeout()]
                .into_iter()
                .flatten()
                .max()
                .unwrap_or_default();
            deadline = deadline.max(pair.now() + lost_fin_ack);
        }
        if pair.now() >= deadline {
            return Err(format!(
                "seed {}: out of virtual time after {:?}{}: wrote {written}, read {read} of {} (A {:?}, B {:?})",
                pair.net.seed(),
                spec.budget,
                if settled {
                    " and a dead-peer timeout after the close settled"
                } else {
                    ""
                },
                spec.bytes,
                pair.a.state(),
                pair.b.state()
            ));
        }
        let limit = match spec.read_rate_per_ms {
            Some(_) => deadline.min(pair.now() + Duration::from_millis(1)),
            None => deadline,
        };
        if !pair.step_until(limit) {
            pair.net.advance_to(limit - pair.epoch);
        }
    }
    let elapsed = done_at.expect("finished").saturating_duration_since(start);
    Ok(TransferReport {
        bytes: read,
        elapsed,
        goodput_mib_s: read as f64 / (1 << 20) as f64 / elapsed.as_secs_f64().max(1e-9),
    })
}

/// Collects messages B receives (for message-API tests).
///
/// ```
/// use swp::testkit::{Pair, Side};
/// use swp::simnet::LinkConfig;
/// use std::time::Duration;
/// let mut pair = Pair::new(1, LinkConfig::new(), Pair::default_config("A", "B"), Pair::default_config("B", ""));
/// use swp::testkit::drain_messages;
/// assert!(pair.connect(Duration::from_secs(5)));
/// for m in ["one", "two"] {
///     pair.a.send_message(bytes::Bytes::from_static(m.as_bytes())).unwrap();
/// }
/// assert!(pair.run_until(Duration::from_secs(5), |p| p.b.held().0 > 0 && p.a.bytes_acked() == 6));
/// assert_eq!(drain_messages(&mut pair.b), ["one", "two"]);
/// ```
pub fn drain_messages(conn: &mut Connection) -> Vec<Bytes> {
    let mut out = vec![];
    while let Ok(Recv::Data(m)) = conn.recv_message() {
        out.push(m);
    }
    out
}

/// Sends `msgs` from A through the message API as fast as A's send buffer
/// takes them, and runs until B has received as many messages (or `budget`
/// of virtual time passes). Returns what B received, in order, or an error
/// that names the seed and how far it got.
///
/// ```
/// use bytes::Bytes;
/// use swp::testkit::{Pair, deliver_messages};
/// use swp::simnet::LinkConfig;
/// use std::time::Duration;
/// let link = LinkConfig::new().latency(Duration::from_millis(5)).loss(0.1);
/// let mut pair = Pair::new(4, link, Pair::default_config("A", "B"), Pair::default_config("B", ""));
/// let msgs: Vec<Bytes> = (0..500).map(|i| Bytes::from(format!("message {i}"))).collect();
/// assert_eq!(deliver_messages(&mut pair, &msgs, Duration::from_secs(60)).unwrap(), msgs);
/// // Nothing gets through a dead link: an error, not a hang.
/// let mut dead = Pair::new(4, LinkConfig::new().loss(1.0), Pair::default_config("A", "B"), Pair::default_config("B", ""));
/// let err = deliver_messages(&mut dead, &msgs, Duration::from_secs(5)).unwrap_err();
/// assert_eq!(err, "seed 4: delivered 0 of 500 messages");
/// ```
pub fn deliver_messages(
    pair: &mut Pair,
    msgs: &[Bytes],
    budget: Duration,
) -> Result<Vec<Bytes>, String> {
    let mut got = vec![];
    let mut next = 0;
    let ok = pair.run_until(budget, |p| {
        while next < msgs.len() {
            match p.a.send_message(msgs[next].clone()) {
                Ok(_) => next += 1,
                Err(_) => break,
            }
        }
        got.extend(drain_messages(&mut p.b));
        got.len() == msgs.len()
    });
    if ok {
        Ok(got)
    } else {
        Err(format!(
            "seed {}: delivered {} of {} messages",
            pair.net.seed(),
            got.len(),
            msgs.len()
        ))
    }
}
