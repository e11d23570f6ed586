//! Files with a go-sliding-window peer: a session in Go's format carries
//! one [`BigFile`](super::bigfile) streamed with no other framing, and no
//! verdict (docs/PROTOCOL.md §13.4).

use super::behind::WriteBehind;
use super::bigfile::{BigFileHeader, encode_bigfile_header, parse_bigfile_header};
use super::exchange::{data_within, finish_part, or_failed, stream_out};
use super::hold::{PartFile, hold_or_create};
use super::jobs::Jobs;
use super::part::{create_parent, part_paths, seal_part};
use super::source::Source;
use super::*;
use crate::digest::Blake2b512;
use crate::proto::go::link as golink;
use tokio::io::AsyncWriteExt;

/// go-swp's `SendFile` form: a `BigFile` header, then the bytes, then wait
/// until the Go peer has acknowledged (i.e. read) everything.
pub(super) async fn send_bigfile(
    session: &mut Session,
    mut source: Source<'_>,
    name: &str,
    progress: Option<&watch::Sender<Progress>>,
) -> Result<SendReport, FileError> {
    let jobs = Jobs::of(session);
    let Some(size) = source.size(jobs).await? else {
        return Err(FileError::Protocol(
            "a go-sliding-window peer needs the size and digest before the data; \
             a stream of unknown length cannot be sent to it (send a file)"
                .into(),
        ));
    };
    if size > u32::MAX as u64 {
        return Err(FileError::Protocol(format!(
            "{} is {size} bytes; a go-swp BigFile holds at most 4 GiB (msgpack bin32)",
            source.describe()
        )));
    }
    // One read and one hash pass: the digest goes first (Go's form), and
    // the file's stamp taken before it says whether the bytes streamed
    // after it are still the ones hashed (as in the native form, docs/PROTOCOL.md §11, §13.4).
    let stamp = source.stamp(jobs).await?;
    let digest: [u8; 64] = source.hash_prefix(jobs, size).await?.finalize();
    let send_time = SystemTime::now();
    let send_time_ns = send_time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let header = encode_bigfile_header(
        name,
        size as i64,
        &digest,
        golink::time_from_unix_ns(send_time_ns as i128),
        size,
    );
    let write = |e| FileError::Session(io_to_session(e));
    session.write_all(&header).await.map_err(write)?;
    let what = source.describe();
    stream_out(session, &mut source, 0, size, None, progress).await?;
    // A Go receiver sends no verdict: everything acknowledged is the end.
    session.flush().await.map_err(write)?;
    if let Some(p) = progress {
        p.send_replace(Progress {
            bytes_sent: size,
            bytes_confirmed: size,
            total: size,
            total_known: true,
            resumed_from: 0,
            hashing: false,
        });
    }
    if source.stamp(jobs).await? != stamp {
        return Err(FileError::Protocol(format!(
            "{what} changed during the transfer (its length or modification time moved); \
             the Go receiver will find a checksum mismatch and keep nothing; send it again"
        )));
    }
    Ok(SendReport {
        meta: FileMeta {
            name: name.to_string(),
            size,
            blake2b: digest,
            send_time,
        },
        resumed_from: 0,
        bytes_sent: size,
    })
}

/// A BigFile header is a few hundred bytes plus the file's path.
pub(super) const BIGFILE_HEADER_LIMIT: usize = 64 * 1024;

/// Reads a go-swp `BigFile` header off the stream; returns it with the data
/// bytes that came in the same chunks.
pub(super) async fn recv_bigfile_header(
    session: &Session,
) -> Result<(BigFileHeader, Bytes), FileError> {
    let mut buf = Vec::new();
    loop {
        match parse_bigfile_header(&buf) {
            Ok(Some((h, used))) => {
                if h.size_in_bytes < 0 || h.size_in_bytes as u64 != h.data_len {
                    return Err(FileError::Protocol(format!(
                        "the Go sender's BigFile says SizeInBytes {} but carries {} bytes",
                        h.size_in_bytes, h.data_len
                    )));
                }
                if h.blake2b.len() != 64 {
                    return Err(FileError::Protocol(format!(
                        "the Go sender's BigFile has a {}-byte Blake2b (want 64)",
                        h.blake2b.len()
                    )));
                }
                let rest = Bytes::copy_from_slice(&buf[used..]);
                return Ok((h, rest));
            }
            Ok(None) if buf.len() > BIGFILE_HEADER_LIMIT => {
                return Err(FileError::Protocol(format!(
                    "no complete go-swp BigFile header in the first {} bytes",
                    buf.len()
                )));
            }
            Ok(None) => match session.read_chunk(BIGFILE_HEADER_LIMIT).await? {
                Some(c) => buf.extend_from_slice(&c),
                None => {
                    return Err(FileError::Protocol(format!(
                        "the Go sender ended the stream {} bytes into the BigFile header",
                        buf.len()
                    )));
                }
            },
            Err(e) => {
                return Err(FileError::Protocol(format!(
                    "the Go peer's stream is not a go-swp BigFile: {e}"
                )));
            }
        }
    }
}

/// Receives the data of a BigFile whose header was read into `target` (via
/// its part file), verifying size and digest before the rename.
pub(super) async fn recv_bigfile_to(
    session: &Session,
    target: &Path,
    h: BigFileHeader,
    first: Bytes,
    progress: Option<&watch::Sender<Progress>>,
) -> Result<(FileMeta, PathBuf), FileError> {
    let jobs = Jobs::of(session);
    let (part, _) = part_paths(target);
    // A stalled file system does not keep the sender's failure from us.
    let prepare = async {
        create_parent(jobs, target).await?;
        let f = hold_or_create(jobs, &part).await?;
        jobs.run(move || {
            let mut f: PartFile = f;
            f.file().set_len(0)?;
            Ok(f)
        })
        .await
        .map_err(io_err(&part))
    };
    let f = or_failed(session, prepare).await??;
    // Ends the transfer whichever way this receive ends (hold::Ender).
    let transfer = f.ender();
    let mut behind = WriteBehind::new(jobs, Some(f), Blake2b512::new());
    let size = h.data_len;
    let mut got = 0u64;
    let mut chunk = first;
    loop {
        if chunk.len() as u64 > size - got {
            let _ = behind.finish().await;
            let _ = jobs.on(&part, |p| std::fs::remove_file(p)).await;
            return Err(FileError::Protocol(format!(
                "the Go sender sent more than the {size} bytes its BigFile announced"
            )));
        }
        got += chunk.len() as u64;
        let more = session.held().1 > 0;
        // A stalled disk does not keep the sender's failure from us (the
        // write job runs on, holding the part).
        or_failed(session, behind.push(chunk, more))
            .await?
            .map_err(io_err(&part))?;
        if let Some(p) = progress {
            p.send_replace(Progress {
                bytes_sent: got,
                bytes_confirmed: got,
                total: size,
                total_known: true,
                resumed_from: 0,
                hashing: false,
            });
        }
        if got == size {
            break;
        }
        let next = data_within(session, CHUNK.min((size - got) as usize), &h.filepath, got).await;
        chunk = match next? {
            c if !c.is_empty() => c,
            _ => {
                let _ = behind.finish().await;
                let _ = jobs.on(&part, |p| std::fs::remove_file(p)).await;
                return Err(FileError::Protocol(format!(
                    "the Go sender ended the stream at {got} of {size} bytes; nothing was saved"
                )));
            }
        };
    }
    let (f, hasher) = finish_part(session, behind, &part, true).await??;
    seal_part(jobs, f, &part, target, hasher, &h.filepath, &h.blake2b).await?;
    drop(transfer);
    let send_time_ns = u64::try_from(golink::unix_ns(h.send_time)).unwrap_or(0);
    Ok((
        file_meta(h.filepath, size, &h.blake2b, send_time_ns),
        target.to_path_buf(),
    ))
}

/// The name a Go sender's `Filepath` is saved under by [`recv_file`]: its
/// last component, which must be a safe name.
pub(super) fn go_file_name(filepath: &str) -> Result<PathBuf, FileError> {
    let last = filepath.rsplit(['/', '\\']).next().unwrap_or_default();
    safe_relative_path(last).map_err(|_| FileError::HostileName(filepath.to_string()))
}

/// [`recv_bytes`] from a Go peer.
pub(super) async fn recv_bigfile_bytes(
    session: &mut Session,
    max_size: u64,
) -> Result<(FileMeta, Bytes), FileError> {
    let (h, first) = recv_bigfile_header(session).await?;
    let size = h.data_len;
    if size > max_size {
        return Err(FileError::Protocol(format!(
            "{} is {size} bytes, more than the {max_size} allowed in memory",
            h.filepath
        )));
    }
    if first.len() as u64 > size {
        return Err(FileError::Protocol(format!(
            "the Go sender sent more than the {size} bytes its BigFile announced"
        )));
    }
    let mut data = vec![0u8; size as usize];
    data[..first.len()].copy_from_slice(&first);
    session
        .read_exact(&mut data[first.len()..])
        .await
        .map_err(|e| FileError::Session(io_to_session(e)))?;
    let actual = Blake2b512::digest(&data);
    if actual.as_slice() != &h.blake2b[..] {
        return Err(mismatch(&h.filepath, &h.blake2b, &actual));
    }
    let send_time_ns = u64::try_from(golink::unix_ns(h.send_time)).unwrap_or(0);
    Ok((
        file_meta(h.filepath, size, &h.blake2b, send_time_ns),
        Bytes::from(data),
    ))
}
