//! The native exchange (docs/PROTOCOL.md §11): the control messages, both
//! sides' steps, and the one path by which every failure is told to the
//! peer ([`fail_transfer`]).

use super::bigfile_io::{
    go_file_name, recv_bigfile_bytes, recv_bigfile_header, recv_bigfile_to, send_bigfile,
};
use super::part::{check_target, create_parent, hash_prefix, part_paths, seal_part};
use super::source::Source;
use super::*;
use crate::proto::WireFormat;
use blake2::{Blake2b512, Digest};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

#[derive(Debug, Serialize, Deserialize)]
pub(super) enum Control {
    Offer {
        name: String,
        size: u64,
        #[serde(with = "serde_bytes")]
        blake2b: Vec<u8>,
        send_time_ns: u64,
    },
    Accept {
        offset: u64,
        #[serde(with = "serde_bytes")]
        prefix_blake2b: Vec<u8>,
    },
    Start {
        offset: u64,
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

/// Tells the sender the file is accepted, and waits until it has heard.
pub(super) async fn accept_verdict(session: &Session) -> Result<(), FileError> {
    send_control(
        session,
        &Control::Verdict {
            ok: true,
            message: String::new(),
        },
    )
    .await?;
    session.flush_acked().await?;
    Ok(())
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
        Some(m) => rmp_serde::from_slice(&m)
            .map_err(|e| FileError::Protocol(format!("malformed control message: {e}"))),
        None => Err(FileError::Protocol(
            "the peer closed the session mid-transfer".into(),
        )),
    }
}

/// The Offer that starts every transfer: (name, size, digest, send time).
pub(super) async fn recv_offer(
    session: &Session,
) -> Result<(String, u64, Vec<u8>, u64), FileError> {
    match recv_control(session, "Offer", OFFER_TIMEOUT).await? {
        Control::Offer {
            name,
            size,
            blake2b,
            send_time_ns,
        } => Ok((name, size, blake2b, send_time_ns)),
        other => Err(FileError::Protocol(format!(
            "expected Offer, got {other:?}"
        ))),
    }
}

pub(super) fn check_offer(name: &str, digest: &[u8]) -> Result<PathBuf, FileError> {
    if digest.len() != 64 {
        return Err(FileError::Protocol(format!(
            "the offer's digest has {} bytes, not 64",
            digest.len()
        )));
    }
    safe_relative_path(name)
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
    let before = session.stats().protocol.app.bytes_written;
    let r = send_source_inner(session, source, name, progress).await;
    if session.stats().protocol.app.bytes_written == before {
        return r;
    }
    told(session, "sender", r).await
}

pub(super) async fn send_source_inner(
    session: &mut Session,
    source: Source<'_>,
    name: &str,
    progress: Option<&watch::Sender<Progress>>,
) -> Result<SendReport, FileError> {
    safe_relative_path(name)?;
    source.check().await?;
    if session.wire_format() == WireFormat::Go {
        return send_bigfile(session, source, name, progress).await;
    }
    let size = source.size().await?;
    let digest: [u8; 64] = source.hash_prefix(size).await?.finalize().into();
    let send_time = SystemTime::now();
    let send_time_ns = send_time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    send_control(
        session,
        &Control::Offer {
            name: name.to_string(),
            size,
            blake2b: digest.to_vec(),
            send_time_ns,
        },
    )
    .await?;
    let (offset, prefix) = match recv_control(session, "Accept", CONTROL_TIMEOUT).await? {
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
    // Resume only from bytes proven identical to ours.
    let mut hasher = Blake2b512::new();
    let mut start = 0;
    if offset > 0 && offset <= size {
        let h = source.hash_prefix(offset).await?;
        if h.clone().finalize().as_slice() == prefix.as_slice() {
            start = offset;
            hasher = h;
        }
    }
    send_control(session, &Control::Start { offset: start }).await?;
    stream_out(session, source, start, size, &mut hasher, progress).await?;
    let sent_digest: [u8; 64] = hasher.finalize().into();
    // Every byte acknowledged (bounded by the session's own rules), then
    // the receiver's sync and rename (bounded here).
    session.flush_acked().await?;
    let verdict = recv_control(session, "Verdict", VERDICT_TIMEOUT).await?;
    if let Some(p) = progress {
        p.send_replace(Progress {
            bytes_sent: size,
            bytes_confirmed: size,
            total: size,
            resumed_from: start,
        });
    }
    match verdict {
        Control::Verdict { ok: true, .. } if sent_digest == digest => Ok(SendReport {
            meta: FileMeta {
                name: name.to_string(),
                size,
                blake2b: digest,
                send_time,
            },
            resumed_from: start,
            bytes_sent: size - start,
        }),
        Control::Verdict { ok: true, .. } => Err(FileError::Protocol(
            "the source changed during the transfer but the receiver accepted it".into(),
        )),
        Control::Verdict { ok: false, message } => Err(FileError::Rejected(message)),
        other => Err(FileError::Protocol(format!(
            "expected Verdict, got {other:?}"
        ))),
    }
}

/// Streams `source[start..size]` into the session, hashing it into
/// `hasher` and reporting progress (bytes confirmed by the peer's acks).
pub(super) async fn stream_out(
    session: &mut Session,
    source: Source<'_>,
    start: u64,
    size: u64,
    hasher: &mut Blake2b512,
    progress: Option<&watch::Sender<Progress>>,
) -> Result<(), FileError> {
    let mut reader = source.open_at(start).await?;
    // The file's bytes start at this stream offset (after any control
    // messages); the peer has confirmed file bytes once its ack passes it.
    let data_base = session.stats().protocol.app.bytes_written;
    let mut buf = vec![0u8; CHUNK];
    let mut sent = start;
    while sent < size {
        let want = (size - sent).min(CHUNK as u64) as usize;
        let n = reader.read(&mut buf[..want]).await?;
        if n == 0 {
            return Err(FileError::Protocol(format!(
                "{} shrank during the transfer (ended at {sent} of {size} bytes)",
                source.describe()
            )));
        }
        hasher.update(&buf[..n]);
        session
            .write_all(&buf[..n])
            .await
            .map_err(|e| FileError::Session(io_to_session(e)))?;
        sent += n as u64;
        if let Some(p) = progress {
            let acked = session
                .stats()
                .protocol
                .app
                .bytes_acked
                .saturating_sub(data_base);
            p.send_replace(Progress {
                bytes_sent: sent,
                bytes_confirmed: start + acked.min(sent - start),
                total: size,
                resumed_from: start,
            });
        }
    }
    Ok(())
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
        check_target(&target, opts).await?;
        return recv_bigfile_to(session, &target, h, first, progress).await;
    }
    let (name, size, digest, send_time) = recv_offer(session).await?;
    let rel = check_offer(&name, &digest)?;
    let target = match dest {
        Dest::Dir(dir) => dir.join(&rel),
        Dest::Exactly(p) => p.to_path_buf(),
    };
    check_target(&target, opts).await?;
    recv_file_to(session, &target, name, size, digest, send_time, progress).await
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn recv_file_to(
    session: &mut Session,
    target: &Path,
    name: String,
    size: u64,
    digest: Vec<u8>,
    send_time_ns: u64,
    progress: Option<&watch::Sender<Progress>>,
) -> Result<(FileMeta, PathBuf), FileError> {
    create_parent(target).await?;
    let (part, meta_path) = part_paths(target);
    let meta_line = format!(
        "{size} {}\n",
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    // A part of the same file (same size and digest) can be resumed.
    let mut have = 0u64;
    let mut hasher = Blake2b512::new();
    if tokio::fs::read_to_string(&meta_path).await.ok().as_deref() == Some(meta_line.as_str()) {
        if let Ok(m) = tokio::fs::metadata(&part).await {
            if m.len() <= size {
                have = m.len();
                hasher = hash_prefix(&part, have).await?;
            }
        }
    }
    send_control(
        session,
        &Control::Accept {
            offset: have,
            prefix_blake2b: hasher.clone().finalize().to_vec(),
        },
    )
    .await?;
    let start = match recv_control(session, "Start", CONTROL_TIMEOUT).await? {
        Control::Start { offset } if offset == have || offset == 0 => offset,
        other => {
            return Err(FileError::Protocol(format!(
                "expected Start, got {other:?}"
            )));
        }
    };
    if start == 0 {
        hasher = Blake2b512::new();
    }
    tokio::fs::write(&meta_path, &meta_line)
        .await
        .map_err(io_err(&meta_path))?;
    let mut f = tokio::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(&part)
        .await
        .map_err(io_err(&part))?;
    f.set_len(start).await.map_err(io_err(&part))?;
    f.seek(std::io::SeekFrom::Start(start))
        .await
        .map_err(io_err(&part))?;
    let mut got = start;
    while got < size {
        let want = (size - got).min(CHUNK as u64) as usize;
        // Zero-copy: write the received packet payloads straight to disk.
        let chunk = session.read_chunk(want).await?.unwrap_or_default();
        let n = chunk.len();
        if n == 0 {
            f.flush().await.map_err(io_err(&part))?;
            return Err(FileError::Protocol(format!(
                "the sender ended the stream at {got} of {size} bytes; the part is kept for resuming"
            )));
        }
        f.write_all(&chunk).await.map_err(io_err(&part))?;
        hasher.update(&chunk);
        got += n as u64;
        if let Some(p) = progress {
            p.send_replace(Progress {
                bytes_sent: got,
                bytes_confirmed: got,
                total: size,
                resumed_from: start,
            });
        }
    }
    if let Err(err) = seal_part(f, &part, target, hasher, &name, &digest).await {
        if matches!(err, FileError::DigestMismatch { .. }) {
            let _ = tokio::fs::remove_file(&meta_path).await;
        }
        return Err(err);
    }
    let _ = tokio::fs::remove_file(&meta_path).await;
    accept_verdict(session).await?;
    Ok((
        file_meta(name, size, &digest, send_time_ns),
        target.to_path_buf(),
    ))
}

pub(super) async fn recv_bytes_inner(
    session: &mut Session,
    max_size: u64,
) -> Result<(FileMeta, Bytes), FileError> {
    if session.wire_format() == WireFormat::Go {
        return recv_bigfile_bytes(session, max_size).await;
    }
    let (name, size, digest, send_time_ns) = recv_offer(session).await?;
    check_offer(&name, &digest)?;
    if size > max_size {
        return Err(FileError::Protocol(format!(
            "{name} is {size} bytes, more than the {max_size} allowed in memory"
        )));
    }
    send_control(
        session,
        &Control::Accept {
            offset: 0,
            prefix_blake2b: Vec::new(),
        },
    )
    .await?;
    match recv_control(session, "Start", CONTROL_TIMEOUT).await? {
        Control::Start { offset: 0 } => {}
        other => {
            return Err(FileError::Protocol(format!(
                "expected Start at 0, got {other:?}"
            )));
        }
    }
    let mut data = vec![0u8; size as usize];
    session
        .read_exact(&mut data)
        .await
        .map_err(|e| FileError::Session(io_to_session(e)))?;
    let actual = Blake2b512::digest(&data);
    if actual.as_slice() != digest.as_slice() {
        return Err(mismatch(&name, &digest, &actual));
    }
    accept_verdict(session).await?;
    Ok((
        file_meta(name, size, &digest, send_time_ns),
        Bytes::from(data),
    ))
}
