//! The native exchange (docs/PROTOCOL.md §11): the control messages, both
//! sides' steps, and the one path by which every failure is told to the
//! peer ([`fail_transfer`]).

use super::behind::WriteBehind;
use super::bigfile_io::{
    go_file_name, recv_bigfile_bytes, recv_bigfile_header, recv_bigfile_to, send_bigfile,
};
use super::hold::{PartFile, hold_existing, hold_or_create};
use super::jobs::Jobs;
use super::part::{check_target, create_parent, hash_prefix, part_paths, seal_part, sync_part};
use super::source::Source;
use super::*;
use crate::digest::Blake2b512;
use crate::proto::WireFormat;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncWrite, AsyncWriteExt};

#[derive(Debug, Serialize, Deserialize)]
pub(super) enum Control {
    /// The sender's first word: what is coming (`size` None: until End).
    Offer {
        name: String,
        size: Option<u64>,
        send_time_ns: u64,
    },
    /// Where the receiver would start, and the hash of what it has.
    Accept {
        offset: u64,
        #[serde(with = "serde_bytes")]
        prefix_blake2b: Vec<u8>,
    },
    Start {
        offset: u64,
    },
    /// `len` stream bytes of the file follow (0: the sender is alive but
    /// its input is idle).
    Segment {
        len: u64,
    },
    /// Every byte was sent: how many in all, and their BLAKE2b-512.
    End {
        size: u64,
        #[serde(with = "serde_bytes")]
        blake2b: Vec<u8>,
    },
    Verdict {
        ok: bool,
        message: String,
    },
}

/// How long a failing side waits for its failure Verdict to be
/// acknowledged before it resets the session (the Reset carries the reason
/// too, so nothing is lost if the Verdict is not heard).
pub(super) const FAILURE_LINGER: Duration = Duration::from_secs(1);

/// Ends the session because of `err` and tells the peer at once: a
/// receiver first sends a failure Verdict (a sender waiting for one reads
/// it as the reason), then either side resets the session with the reason
/// (a peer busy streaming learns it from the Reset). Every failure of a
/// transfer goes through here, so the peer never waits for a budget to
/// run out to learn that the transfer is over. A session that already
/// ended (the peer reset it, the network failed) has nobody to tell.
pub(super) async fn fail_transfer(session: &Session, side: &str, err: &FileError) {
    if session.close_reason().is_some() {
        return;
    }
    if side == "receiver" {
        let verdict = Control::Verdict {
            ok: false,
            message: err.to_string(),
        };
        let told = async {
            send_control(session, &verdict).await?;
            session.flush_acked().await?;
            Ok::<_, FileError>(())
        };
        let _ = tokio::time::timeout(FAILURE_LINGER, told).await;
    }
    tracing::debug!(side, error = %err, "file transfer failed; resetting the session");
    session.abort_with(format!("the {side} failed: {err}"));
}

/// Tells the peer when one side's transfer is dropped half-way (a caller's
/// timeout, a `select!` that took another branch, a task aborted): the
/// session is reset with the reason, so the peer fails at once instead of
/// after waiting for bytes that will never come (or, for a dropped
/// sender, after its buffered data drained). A transfer that has not begun
/// (a receiver still waiting for the Offer, a sender that sent nothing)
/// leaves the session as it is, for the caller to use.
pub(super) struct CancelGuard {
    session: crate::session::AbortHandle,
    side: &'static str,
    /// Bytes the application had written (sender) or read (receiver)
    /// when the transfer started.
    base: u64,
    done: bool,
}

impl CancelGuard {
    pub(super) fn new(session: &Session, side: &'static str) -> CancelGuard {
        let mut guard = CancelGuard {
            session: session.abort_handle(),
            side,
            base: 0,
            done: false,
        };
        let (written, read) = guard.session.app_bytes().unwrap_or_default();
        guard.base = guard.moved(written, read);
        guard
    }

    /// Whether the exchange has begun: bytes were written (sender) or read
    /// (receiver) since the guard was made.
    pub(super) fn begun(&self) -> bool {
        self.session
            .app_bytes()
            .is_some_and(|(written, read)| self.moved(written, read) > self.base)
    }

    fn moved(&self, written: u64, read: u64) -> u64 {
        if self.side == "sender" { written } else { read }
    }

    /// The transfer ended (either way) and its end was told as usual.
    pub(super) fn done<T>(mut self, r: T) -> T {
        self.done = true;
        r
    }
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if !self.done && self.begun() {
            self.session.abort_with(format!(
                "the {} stopped mid-transfer: its program cancelled the transfer; nothing \
                 incomplete is kept as complete (send it again)",
                self.side
            ));
        }
    }
}

/// The result of one side of a transfer, after telling the peer about a
/// failure ([`fail_transfer`]).
pub(super) async fn told<T>(
    session: &Session,
    side: &str,
    r: Result<T, FileError>,
) -> Result<T, FileError> {
    if let Err(e) = &r {
        fail_transfer(session, side, e).await;
    }
    r
}

/// Tells the sender the file is accepted, and waits until it has heard
/// (within the session's own budget). Called once the file is complete,
/// verified and in place: that the sender's acknowledgement went missing
/// (an outage, a sender that exited at once) does not make it less so, so
/// it is no failure of the receive. A sender that did not hear fails by
/// itself and, sent again, finds the file already there.
pub(super) async fn accept_verdict(session: &Session) {
    let verdict = Control::Verdict {
        ok: true,
        message: String::new(),
    };
    let told = match send_control(session, &verdict).await {
        Ok(()) => session.flush_acked().await.map_err(FileError::from),
        Err(e) => Err(e),
    };
    if let Err(e) = told {
        tracing::warn!(error = %e, "the file is complete; the sender did not confirm it heard so");
    }
}

/// Fails before anything is sent if the session cannot deliver the
/// largest of `controls` (a session's windows can be smaller than one
/// control message: a 64-byte window, one 64-byte packet).
pub(super) fn check_fits(s: &Session, controls: &[&Control]) -> Result<(), FileError> {
    let needed = controls
        .iter()
        .map(|c| rmp_serde::to_vec(c).map_or(0, |b| b.len() as u64))
        .max()
        .unwrap_or(0);
    match s.max_message_size() {
        Some(most) if most < needed => Err(FileError::WindowTooSmall { needed, most }),
        _ => Ok(()),
    }
}

/// The largest Accept (or End) there is: a 64-bit offset and a digest.
fn largest_digest_controls() -> [Control; 2] {
    [
        Control::Accept {
            offset: u64::MAX,
            prefix_blake2b: vec![0; 64],
        },
        Control::End {
            size: u64::MAX,
            blake2b: vec![0; 64],
        },
    ]
}

pub(super) async fn send_control(s: &Session, c: &Control) -> Result<(), FileError> {
    let b = rmp_serde::to_vec(c).expect("control messages always encode");
    s.send(Bytes::from(b)).await?;
    Ok(())
}

/// The next control message, which the peer owes us within `limit`.
pub(super) async fn recv_control(
    s: &Session,
    what: &str,
    limit: Duration,
) -> Result<Control, FileError> {
    let m = tokio::time::timeout(limit, s.recv()).await.map_err(|_| {
        FileError::Protocol(format!(
            "no {what} from the peer within {limit:?} although the session is alive; is the \
             peer's program stuck?"
        ))
    })??;
    match m {
        Some(m) => parse_control(&m),
        None => Err(FileError::Protocol(
            "the peer closed the session mid-transfer".into(),
        )),
    }
}

/// One control message, as the peer sent it.
fn parse_control(m: &[u8]) -> Result<Control, FileError> {
    rmp_serde::from_slice(m)
        .map_err(|e| FileError::Protocol(format!("malformed control message: {e}")))
}

/// The Offer that starts every transfer: (name, size if known, send time).
pub(super) async fn recv_offer(session: &Session) -> Result<(String, Option<u64>, u64), FileError> {
    // Our Accept must reach the sender: say so now rather than after the
    // Offer (the failure resets the session, so the sender learns it).
    let [accept, _] = largest_digest_controls();
    check_fits(session, &[&accept])?;
    match recv_control(session, "Offer", OFFER_TIMEOUT).await? {
        Control::Offer {
            name,
            size,
            send_time_ns,
        } => Ok((name, size, send_time_ns)),
        other => Err(FileError::Protocol(format!(
            "expected Offer, got {other:?}"
        ))),
    }
}

/// The sender's side of the exchange (module docs), for any source. A
/// failure resets the session with its reason, so the receiver learns it
/// at once.
pub(super) async fn send_source(
    session: &mut Session,
    source: Source<'_>,
    name: &str,
    progress: Option<&watch::Sender<Progress>>,
) -> Result<SendReport, FileError> {
    // A failure before anything was sent (a bad name, an unreadable
    // source) leaves the session as it was, for the caller to use or end.
    let guard = CancelGuard::new(session, "sender");
    let r = send_source_inner(session, source, name, progress).await;
    if !guard.begun() {
        return guard.done(r);
    }
    let r = told(session, "sender", r).await;
    guard.done(r)
}

async fn send_source_inner(
    session: &mut Session,
    mut source: Source<'_>,
    name: &str,
    progress: Option<&watch::Sender<Progress>>,
) -> Result<SendReport, FileError> {
    safe_relative_path(name)?;
    let jobs = Jobs::of(session);
    // The source's metadata, on a file system that may stall (a dead NFS
    // mount): a receiver that fails meanwhile is heard now.
    or_failed(session, source.check(jobs)).await??;
    if session.wire_format() == WireFormat::Go {
        return send_bigfile(session, source, name, progress).await;
    }
    let (size, stamp) = or_failed(session, async {
        Ok::<_, FileError>((source.size(jobs).await?, source.stamp(jobs).await?))
    })
    .await??;
    let send_time = SystemTime::now();
    let send_time_ns = send_time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    let offer = Control::Offer {
        name: name.to_string(),
        size,
        send_time_ns,
    };
    // Not the End after the whole file: every control message must fit
    // before the first is sent.
    let [_, end] = largest_digest_controls();
    check_fits(session, &[&end, &offer])?;
    send_control(session, &offer).await?;
    let (offset, prefix) = match recv_control(session, "Accept", HASH_TIMEOUT).await? {
        Control::Accept {
            offset,
            prefix_blake2b,
        } => (offset, prefix_blake2b),
        Control::Verdict { message, .. } => return Err(FileError::Rejected(message)),
        other => {
            return Err(FileError::Protocol(format!(
                "expected Accept, got {other:?}"
            )));
        }
    };
    // Resume (or skip an identical copy) only from bytes proven identical
    // to ours; hashing them is the first part of our one pass.
    let mut hasher = Blake2b512::new();
    let mut start = 0;
    if let Some(size) = size
        && offset > 0
        && offset <= size
    {
        report_hashing(progress, Some(size));
        // The receiver waits (HASH_TIMEOUT); if it fails meanwhile, we hear
        // it now, not when a long hash or a stalled read ends.
        let h = or_failed(session, source.hash_prefix(jobs, offset)).await??;
        if h.clone().finalize().as_slice() == prefix.as_slice() {
            start = offset;
            hasher = h;
        }
    }
    send_control(session, &Control::Start { offset: start }).await?;
    let size = stream_segments(session, &mut source, start, size, &mut hasher, progress).await?;
    if or_failed(session, source.stamp(jobs)).await?? != stamp {
        return Err(FileError::Protocol(format!(
            "{} changed during the transfer (its length or modification time moved); \
             the receiver keeps nothing as complete; send it again",
            source.describe()
        )));
    }
    let digest: [u8; 64] = hasher.finalize();
    send_control(
        session,
        &Control::End {
            size,
            blake2b: digest.to_vec(),
        },
    )
    .await?;
    // Every byte acknowledged (bounded by the session's own rules), then
    // the receiver's sync and rename (bounded here).
    session.flush_acked().await?;
    let verdict = recv_control(session, "Verdict", VERDICT_TIMEOUT).await?;
    report(progress, size, size, Some(size), start);
    match verdict {
        Control::Verdict { ok: true, .. } => Ok(SendReport {
            meta: FileMeta {
                name: name.to_string(),
                size,
                blake2b: digest,
                send_time,
            },
            resumed_from: start,
            bytes_sent: size - start,
        }),
        Control::Verdict { ok: false, message } => Err(FileError::Rejected(message)),
        other => Err(FileError::Protocol(format!(
            "expected Verdict, got {other:?}"
        ))),
    }
}

fn report(
    progress: Option<&watch::Sender<Progress>>,
    sent: u64,
    confirmed: u64,
    total: Option<u64>,
    resumed_from: u64,
) {
    if let Some(p) = progress {
        p.send_replace(Progress {
            bytes_sent: sent,
            bytes_confirmed: confirmed,
            total: total.unwrap_or(sent),
            total_known: total.is_some(),
            resumed_from,
            hashing: false,
        });
    }
}

/// Says that what is there is being hashed (`total` bytes of it).
fn report_hashing(progress: Option<&watch::Sender<Progress>>, total: Option<u64>) {
    if let Some(p) = progress {
        p.send_replace(Progress {
            total: total.unwrap_or(0),
            total_known: total.is_some(),
            hashing: true,
            ..Progress::default()
        });
    }
}

/// A reader's input that stays idle this long is announced with an empty
/// Segment, so the receiver's bounded wait tells a slow pipe from a stuck
/// sender.
pub(super) const IDLE_HEARTBEAT: Duration = Duration::from_secs(20);

/// Once a reader gave some bytes, how long more are gathered into the same
/// Segment before it goes out.
const GATHER: Duration = Duration::from_millis(5);

/// Sends the source's bytes from `start` as Segments; returns the size.
/// A known size goes as one Segment; a reader's bytes as they come, up to
/// [`CHUNK`] per Segment.
async fn stream_segments(
    session: &mut Session,
    source: &mut Source<'_>,
    start: u64,
    size: Option<u64>,
    hasher: &mut Blake2b512,
    progress: Option<&watch::Sender<Progress>>,
) -> Result<u64, FileError> {
    if let Some(size) = size {
        if size > start {
            send_control(session, &Control::Segment { len: size - start }).await?;
            stream_out(session, source, start, size, Some(hasher), progress).await?;
        }
        return Ok(size);
    }
    let what = source.describe();
    let mut reader = source.open_at(Jobs::of(session), start).await?;
    let read_err = |e| FileError::Io {
        path: PathBuf::from(&what),
        source: e,
    };
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    let data_base = session.stats().protocol.app.bytes_written;
    loop {
        let (mut n, mut eof) = (0, false);
        while n < buf.len() {
            let wait = if n == 0 { IDLE_HEARTBEAT } else { GATHER };
            // `read` is cancel-safe: a timed-out read loses nothing. While
            // the input is idle the receiver may fail, reset or go: it has
            // nothing to say before our End but that, so whatever it says
            // ends the transfer now, not at our next read or heartbeat.
            // Only while the input is idle (reads first; gathering waits
            // at most GATHER), so a busy pipe does not poll the session
            // on every read.
            let read = if n == 0 {
                tokio::select! {
                    biased;
                    r = tokio::time::timeout(wait, reader.read(&mut buf[n..])) => r,
                    said = session.recv() => return Err(said_mid_transfer(said)),
                }
            } else {
                tokio::time::timeout(wait, reader.read(&mut buf[n..])).await
            };
            match read {
                Err(_) => break,
                Ok(Ok(0)) => {
                    eof = true;
                    break;
                }
                Ok(Ok(k)) => n += k,
                Ok(Err(e)) => return Err(read_err(e)),
            }
        }
        if n > 0 || !eof {
            send_control(session, &Control::Segment { len: n as u64 }).await?;
            hasher.update(&buf[..n]);
            session
                .write_all(&buf[..n])
                .await
                .map_err(|e| FileError::Session(io_to_session(e)))?;
            total += n as u64;
            // Stats walk the flight: only when someone watches.
            let acked = match progress {
                Some(_) => session.stats().protocol.app.bytes_acked,
                None => 0,
            };
            report(
                progress,
                total,
                acked.saturating_sub(data_base).min(total),
                None,
                0,
            );
        }
        if eof {
            return Ok(total);
        }
    }
}

/// What the receiver said while the sender was still sending: before the
/// End it speaks only to fail (a Verdict, then a Reset) or goes away.
fn said_mid_transfer(said: Result<Option<Bytes>, SessionError>) -> FileError {
    match said {
        Err(e) => FileError::Session(e),
        Ok(None) => FileError::Protocol("the receiver closed the session mid-transfer".into()),
        Ok(Some(m)) => match parse_control(&m) {
            Ok(Control::Verdict { message, .. }) => FileError::Rejected(message),
            Ok(other) => FileError::Protocol(format!("the receiver sent {other:?} before the End")),
            Err(e) => e,
        },
    }
}

/// Streams the source's bytes `[start, size)` into the session as plain
/// stream data, hashing them into `hasher` if given (a file's are read and hashed
/// ahead, off this task) and reporting progress (bytes confirmed by the
/// peer's acks).
pub(super) async fn stream_out(
    session: &mut Session,
    source: &mut Source<'_>,
    start: u64,
    size: u64,
    mut hasher: Option<&mut Blake2b512>,
    progress: Option<&watch::Sender<Progress>>,
) -> Result<(), FileError> {
    let what = source.describe();
    // The file's bytes start at this stream offset (after any control
    // messages); the peer has confirmed file bytes once its ack passes it.
    let data_base = session.stats().protocol.app.bytes_written;
    let first = hasher
        .as_deref_mut()
        .map(|h| std::mem::replace(h, Blake2b512::new()));
    let opened = source.chunks_at(Jobs::of(session), start, size - start, first);
    let mut chunks = or_failed(session, opened).await??;
    let mut sent = start;
    loop {
        // A read stuck on a stalled disk does not keep the receiver's
        // failure from us (the read runs on; nothing waits for it).
        let next = or_failed(session, chunks.next()).await?;
        let Some(chunk) = next.map_err(|e| FileError::Io {
            path: PathBuf::from(&what),
            source: e,
        })?
        else {
            break;
        };
        session
            .write_all(&chunk)
            .await
            .map_err(|e| FileError::Session(io_to_session(e)))?;
        sent += chunk.len() as u64;
        if progress.is_some() {
            let acked = session
                .stats()
                .protocol
                .app
                .bytes_acked
                .saturating_sub(data_base);
            report(
                progress,
                sent,
                start + acked.min(sent - start),
                Some(size),
                start,
            );
        }
    }
    if let Some(h) = hasher {
        *h = chunks.into_hasher();
    }
    if sent < size {
        return Err(FileError::Protocol(format!(
            "{what} shrank during the transfer (ended at {sent} of {size} bytes)"
        )));
    }
    Ok(())
}

/// Where received bytes go: `behind` hashes them (and writes them to its
/// file, if it has one) off this task; `writer`, if any, gets them here.
pub(super) struct Sink<'a> {
    pub(super) behind: WriteBehind,
    pub(super) writer: Option<&'a mut (dyn AsyncWrite + Unpin + Send)>,
}

/// Receives Segments and the End into `sink`, starting at `got` bytes
/// already there; checks the size against the Offer's (`size`) and
/// `limit`. Returns the size and the sender's digest (not yet compared:
/// the caller finishes the sink and compares, before it presents
/// anything).
#[allow(clippy::too_many_arguments)]
async fn recv_segments(
    session: &Session,
    name: &str,
    size: Option<u64>,
    limit: u64,
    mut got: u64,
    sink: &mut Sink<'_>,
    sink_err: &(dyn Fn(std::io::Error) -> FileError + Sync),
    progress: Option<&watch::Sender<Progress>>,
) -> Result<(u64, Vec<u8>), FileError> {
    let start = got;
    loop {
        match recv_control(session, "Segment or End", CONTROL_TIMEOUT).await? {
            Control::Segment { len } => {
                let end = got.saturating_add(len);
                if let Some(size) = size.filter(|&s| end > s) {
                    return Err(FileError::Protocol(format!(
                        "the sender sent more than the {size} bytes it offered for {name}"
                    )));
                }
                if end > limit {
                    return Err(FileError::Protocol(format!(
                        "{name} is more than the {limit} bytes allowed"
                    )));
                }
                while got < end {
                    let want = (end - got).min(CHUNK as u64) as usize;
                    // Zero-copy: the received packet payloads go to the sink.
                    let chunk = data_within(session, want, name, got).await?;
                    if chunk.is_empty() {
                        return Err(FileError::Protocol(format!(
                            "the sender ended the stream {got} bytes into {name}"
                        )));
                    }
                    got += chunk.len() as u64;
                    if let Some(w) = sink.writer.as_mut() {
                        // A writer that blocks (a slow consumer on the
                        // other end of a pipe) must not keep the sender's
                        // failure from us: the output is incomplete
                        // either way. The write goes first; the watch
                        // costs nothing while writes complete at once.
                        or_failed(session, w.write_all(&chunk))
                            .await?
                            .map_err(sink_err)?;
                    }
                    let more = session.held().1 > 0;
                    // The same for a disk that stalls: the write job runs
                    // on (the part stays held until it ends), we go.
                    or_failed(session, sink.behind.push(chunk, more))
                        .await?
                        .map_err(sink_err)?;
                    report(progress, got, got, size, start);
                }
            }
            Control::End {
                size: told,
                blake2b,
            } => {
                if told != got || size.is_some_and(|s| s != got) {
                    return Err(FileError::Protocol(format!(
                        "the sender ended {name} at {got} bytes but says {told}{}",
                        size.map(|s| format!(" (offered {s})")).unwrap_or_default()
                    )));
                }
                if blake2b.len() != 64 {
                    return Err(FileError::Protocol(format!(
                        "the sender's digest has {} bytes, not 64",
                        blake2b.len()
                    )));
                }
                return Ok((got, blake2b));
            }
            other => {
                return Err(FileError::Protocol(format!(
                    "expected Segment or End, got {other:?}"
                )));
            }
        }
    }
}

/// `work` (a read, write or hash on a disk that may stall; a write to a
/// consumer that may stop reading), unless the session fails first: then
/// the session's error at once, and the work is dropped (a blocking job
/// under it runs on by itself). The work is polled first, so this costs
/// nothing while it completes at once.
pub(super) async fn or_failed<T>(
    session: &Session,
    work: impl Future<Output = T>,
) -> Result<T, SessionError> {
    tokio::select! {
        biased;
        r = work => Ok(r),
        e = session.failed() => Err(e),
    }
}

/// A receiver's last writes into its part and, for a `whole` file (every
/// byte and the digest here), the sync before it is sealed; the part file
/// and the hash of everything written. Unless the session fails first:
/// then a whole file's disk gets [`LAST_WRITE_GRACE`] more, any other
/// none, and the answer is the session's error (`Err`) while the blocking
/// job runs on, holding the part (the caller's `hold::Ender` ends the
/// transfer, so a new attempt waits for it).
pub(super) async fn finish_part(
    session: &Session,
    behind: WriteBehind,
    part: &Path,
    whole: bool,
) -> Result<Result<(PartFile, Blake2b512), FileError>, SessionError> {
    let jobs = behind.jobs();
    let work = async {
        let (f, hasher) = behind.finish_file().await.map_err(io_err(part))?;
        if !whole {
            return Ok((f, hasher));
        }
        Ok((sync_part(jobs, f, part).await?, hasher))
    };
    let mut work = std::pin::pin!(work);
    let failed = match or_failed(session, &mut work).await {
        Ok(r) => return Ok(r),
        Err(e) => e,
    };
    let grace = if whole {
        LAST_WRITE_GRACE
    } else {
        Duration::ZERO
    };
    tokio::time::timeout(grace, work).await.map_err(|_| failed)
}

/// The next at most `want` bytes of a Segment (empty: the stream ended),
/// `got` bytes into `name`. Bounded: a sender whose session lives but whose
/// data stops (its read stuck on a stalled disk) is given up on after
/// [`CONTROL_TIMEOUT`], as a control message would be.
pub(super) async fn data_within(
    session: &Session,
    want: usize,
    name: &str,
    got: u64,
) -> Result<Bytes, FileError> {
    match tokio::time::timeout(CONTROL_TIMEOUT, session.read_chunk(want)).await {
        Ok(r) => Ok(r?.unwrap_or_default()),
        Err(_) => Err(FileError::Protocol(format!(
            "no data from the sender for {CONTROL_TIMEOUT:?}, {got} bytes into {name}, although \
             the session is alive; is its disk or program stuck?"
        ))),
    }
}

/// Where a received file goes.
#[derive(Clone, Copy)]
pub(super) enum Dest<'a> {
    /// Below this directory, under the sender's name.
    Dir(&'a Path),
    /// At exactly this path.
    Exactly(&'a Path),
}

/// The receiver's side of the exchange (module docs, or Go's BigFile).
pub(super) async fn recv_into(
    session: &mut Session,
    dest: Dest<'_>,
    opts: &ReceiveOptions,
    progress: Option<&watch::Sender<Progress>>,
) -> Result<(FileMeta, PathBuf), FileError> {
    if session.wire_format() == WireFormat::Go {
        let (h, first) = recv_bigfile_header(session).await?;
        let target = match dest {
            Dest::Dir(dir) => dir.join(go_file_name(&h.filepath)?),
            Dest::Exactly(p) => p.to_path_buf(),
        };
        or_failed(session, check_target(Jobs::of(session), &target, opts)).await??;
        return recv_bigfile_to(session, &target, h, first, progress).await;
    }
    let (name, size, send_time) = recv_offer(session).await?;
    let rel = safe_relative_path(&name)?;
    let target = match dest {
        Dest::Dir(dir) => dir.join(&rel),
        Dest::Exactly(p) => p.to_path_buf(),
    };
    recv_file_to(session, &target, opts, name, size, send_time, progress).await
}

/// What the receiver found at the destination before the data.
enum Found {
    Nothing,
    /// A part of a transfer of the offered size.
    Part,
    /// A complete file of the offered size (maybe the same one).
    Same,
}

/// What a receiver finds before its Accept: an existing file of the
/// offered size (hashed, to offer it whole), a part of a transfer of that
/// size (held and hashed, to resume it), or nothing; and the part, if held.
#[allow(clippy::too_many_arguments)]
async fn look_for_resume(
    jobs: Jobs,
    target: &Path,
    part: &Path,
    meta_path: &Path,
    meta_line: &Option<String>,
    size: Option<u64>,
    opts: &ReceiveOptions,
    progress: Option<&watch::Sender<Progress>>,
) -> Result<(Found, Blake2b512, u64, Option<PartFile>), FileError> {
    create_parent(jobs, target).await?;
    // An existing file of the offered size may be this very file: offer
    // its hash, the sender compares (and we skip the transfer). Any other
    // existing file is refused unless replacing was asked for.
    match jobs.on(target, |p| std::fs::symlink_metadata(p)).await {
        Ok(m) if m.is_file() && Some(m.len()) == size => {
            report_hashing(progress, size);
            let hasher = hash_prefix(jobs, target, m.len()).await?;
            return Ok((Found::Same, hasher, m.len(), None));
        }
        Ok(_) if !opts.overwrite => {
            return Err(FileError::Exists {
                path: target.to_path_buf(),
            });
        }
        _ => {}
    }
    // A part of a transfer of the same size can be resumed (the sender
    // verifies its content against its own first bytes). It is held first:
    // nobody else writes into it from here on (a running transfer into it
    // is refused, an ended one still writing is waited for).
    let held = hold_existing(jobs, part).await?;
    if let (Some(f), Some(_)) = (&held, meta_line) {
        let recorded = jobs
            .on(meta_path, |p| std::fs::read_to_string(p))
            .await
            .ok();
        if recorded.as_ref() == meta_line.as_ref() {
            let len = f.len().map_err(io_err(part))?;
            if Some(len) <= size {
                report_hashing(progress, size);
                let hasher = hash_prefix(jobs, part, len).await?;
                return Ok((Found::Part, hasher, len, held));
            }
        }
    }
    Ok((Found::Nothing, Blake2b512::new(), 0, held))
}

async fn recv_file_to(
    session: &mut Session,
    target: &Path,
    opts: &ReceiveOptions,
    name: String,
    size: Option<u64>,
    send_time_ns: u64,
    progress: Option<&watch::Sender<Progress>>,
) -> Result<(FileMeta, PathBuf), FileError> {
    let jobs = Jobs::of(session);
    let (part, meta_path) = part_paths(target);
    let meta_line = size.map(|s| format!("{s}\n"));
    // Disk work the sender waits for (up to HASH_TIMEOUT): if it fails
    // meanwhile, we hear it now, not when a stalled disk answers.
    let look = look_for_resume(
        jobs, target, &part, &meta_path, &meta_line, size, opts, progress,
    );
    let (found, mut hasher, offset, held) = or_failed(session, look).await??;
    send_control(
        session,
        &Control::Accept {
            offset,
            prefix_blake2b: hasher.clone().finalize().to_vec(),
        },
    )
    .await?;
    let start = match recv_control(session, "Start", HASH_TIMEOUT).await? {
        Control::Start { offset: o } if o == offset || o == 0 => o,
        other => {
            return Err(FileError::Protocol(format!(
                "expected Start at {offset} or 0, got {other:?}"
            )));
        }
    };
    if matches!(found, Found::Same) {
        if start == offset {
            // The sender's first `offset` bytes, all of it, hash as ours.
            let mut nothing = Sink {
                behind: WriteBehind::new(jobs, None, hasher.clone()),
                writer: None,
            };
            let (_, digest) = recv_segments(
                session,
                &name,
                size,
                offset,
                offset,
                &mut nothing,
                &|e| FileError::Protocol(e.to_string()),
                None,
            )
            .await?;
            if digest.as_slice() != hasher.finalize().as_slice() {
                return Err(FileError::Protocol(format!(
                    "the sender proved {name} identical to {} and then announced another digest",
                    target.display()
                )));
            }
            report(progress, offset, offset, size, offset);
            accept_verdict(session).await;
            return Ok((
                file_meta(name, offset, &digest, send_time_ns),
                target.to_path_buf(),
            ));
        }
        if !opts.overwrite {
            return Err(FileError::Exists {
                path: target.to_path_buf(),
            });
        }
    }
    let start = if matches!(found, Found::Part) {
        start
    } else {
        0
    };
    if start == 0 {
        hasher = Blake2b512::new();
    }
    // The same for the part's preparation (the sender waits for data).
    let f = match held {
        Some(f) => f,
        None => or_failed(session, hold_or_create(jobs, &part)).await??,
    };
    // Whichever way this receive ends from here on, the transfer ends with
    // it: a job still holding the part then makes a new attempt wait.
    let transfer = f.ender();
    let recorded = async {
        match meta_line {
            Some(line) => jobs
                .on(&meta_path, move |p| std::fs::write(p, line))
                .await
                .map_err(io_err(&meta_path)),
            None => {
                let _ = jobs.on(&meta_path, |p| std::fs::remove_file(p)).await;
                Ok(())
            }
        }
    };
    or_failed(session, recorded).await??;
    let truncated = jobs.run(move || {
        use std::io::Seek;
        let mut f: PartFile = f;
        f.file().set_len(start)?;
        f.file().seek(std::io::SeekFrom::Start(start))?;
        Ok(f)
    });
    let f = or_failed(session, truncated)
        .await?
        .map_err(io_err(&part))?;
    let mut sink = Sink {
        behind: WriteBehind::new(jobs, Some(f), hasher),
        writer: None,
    };
    let part_err = |e| FileError::Io {
        path: part.clone(),
        source: e,
    };
    let received = recv_segments(
        session,
        &name,
        size,
        u64::MAX,
        start,
        &mut sink,
        &part_err,
        progress,
    )
    .await;
    // A stream of unknown size cannot be resumed: a failure drops its part.
    let unresumable = async || {
        if size.is_none() {
            let _ = jobs.on(&part, |p| std::fs::remove_file(p)).await;
        }
    };
    let received = match received {
        Err(e) if sink.behind.is_busy() => {
            // A write still runs (a slow or stalled disk): the failure is
            // told now, not when the disk answers. The job finishes on its
            // own and holds the part until then; a resume waits for it.
            drop(sink);
            unresumable().await;
            return Err(e);
        }
        r => r,
    };
    // Whatever arrived is written before anything else happens to the
    // part: a resume offers only bytes that are really there (a write that
    // outlives a failed session runs on, holding the part: finish_part).
    let written = match finish_part(session, sink.behind, &part, received.is_ok()).await {
        Ok(w) => w,
        Err(e) => {
            unresumable().await;
            return Err(match received {
                Err(mid_transfer) => mid_transfer,
                Ok(_) => e.into(),
            });
        }
    };
    let (got, digest, f, hasher) = match (received, written) {
        (Ok((got, digest)), Ok((f, hasher))) => (got, digest, f, hasher),
        (Err(e), _) | (_, Err(e)) => {
            unresumable().await;
            return Err(e);
        }
    };
    if let Err(err) = seal_part(jobs, f, &part, target, hasher, &name, &digest).await {
        if matches!(err, FileError::DigestMismatch { .. }) {
            let _ = jobs.on(&meta_path, |p| std::fs::remove_file(p)).await;
        }
        return Err(err);
    }
    let _ = jobs.on(&meta_path, |p| std::fs::remove_file(p)).await;
    // Renamed: nothing of this transfer holds the part any more.
    drop(transfer);
    accept_verdict(session).await;
    Ok((
        file_meta(name, got, &digest, send_time_ns),
        target.to_path_buf(),
    ))
}

/// Accepts a fresh transfer (nothing to resume): the Accept and the Start
/// at 0 of a receiver into memory or a writer.
async fn accept_fresh(session: &Session) -> Result<(), FileError> {
    send_control(
        session,
        &Control::Accept {
            offset: 0,
            prefix_blake2b: Blake2b512::new().finalize().to_vec(),
        },
    )
    .await?;
    match recv_control(session, "Start", HASH_TIMEOUT).await? {
        Control::Start { offset: 0 } => Ok(()),
        other => Err(FileError::Protocol(format!(
            "expected Start at 0, got {other:?}"
        ))),
    }
}

pub(super) async fn recv_bytes_inner(
    session: &mut Session,
    max_size: u64,
) -> Result<(FileMeta, Bytes), FileError> {
    if session.wire_format() == WireFormat::Go {
        return recv_bigfile_bytes(session, max_size).await;
    }
    let (name, size, send_time_ns) = recv_offer(session).await?;
    safe_relative_path(&name)?;
    if let Some(size) = size.filter(|&s| s > max_size) {
        return Err(FileError::Protocol(format!(
            "{name} is {size} bytes, more than the {max_size} allowed in memory"
        )));
    }
    accept_fresh(session).await?;
    let mut data = Vec::with_capacity(size.unwrap_or(0) as usize);
    let mut sink = Sink {
        behind: WriteBehind::new(Jobs::of(session), None, Blake2b512::new()),
        writer: Some(&mut data),
    };
    let mem_err = |e: std::io::Error| FileError::Protocol(e.to_string());
    let (got, digest) =
        recv_segments(session, &name, size, max_size, 0, &mut sink, &mem_err, None).await?;
    let (_, hasher) = sink.behind.finish().await.map_err(mem_err)?;
    let actual = hasher.finalize();
    if actual.as_slice() != digest.as_slice() {
        return Err(mismatch(&name, &digest, &actual));
    }
    accept_verdict(session).await;
    Ok((
        file_meta(name, got, &digest, send_time_ns),
        Bytes::from(data),
    ))
}

/// The receiver's side into a writer (a pipe): the bytes are written as
/// they arrive, so a digest mismatch is found only after they were; the
/// error says so.
pub(super) async fn recv_to_writer_inner(
    session: &mut Session,
    writer: &mut (dyn AsyncWrite + Unpin + Send),
    progress: Option<&watch::Sender<Progress>>,
) -> Result<FileMeta, FileError> {
    if session.wire_format() == WireFormat::Go {
        return Err(FileError::Protocol(
            "receiving into a stream is not available with a go-sliding-window peer; \
             receive into a file"
                .into(),
        ));
    }
    let (name, size, send_time_ns) = recv_offer(session).await?;
    safe_relative_path(&name)?;
    accept_fresh(session).await?;
    let out_err = |e| FileError::Io {
        path: PathBuf::from("the output stream"),
        source: e,
    };
    let mut sink = Sink {
        behind: WriteBehind::new(Jobs::of(session), None, Blake2b512::new()),
        writer: Some(&mut *writer),
    };
    let (got, digest) = recv_segments(
        session,
        &name,
        size,
        u64::MAX,
        0,
        &mut sink,
        &out_err,
        progress,
    )
    .await?;
    let (_, hasher) = sink.behind.finish().await.map_err(out_err)?;
    writer.flush().await.map_err(out_err)?;
    let actual = hasher.finalize();
    if actual.as_slice() != digest.as_slice() {
        return Err(FileError::Protocol(format!(
            "BLAKE2b-512 mismatch for {name}: the sender announced {}, the bytes received hash \
             to {}; the {got} bytes already written to the output are not that file: discard them",
            hex16(&digest),
            hex16(&actual)
        )));
    }
    accept_verdict(session).await;
    Ok(file_meta(name, got, &digest, send_time_ns))
}
