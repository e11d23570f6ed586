//! Files over a session: streamed from disk to disk in constant memory,
//! verified with BLAKE2b-512, resumable, with progress.
//!
//! The exchange (each control item is one swp message, msgpack-encoded):
//!
//! ```text
//! sender                                   receiver
//!   Offer {name, size, blake2b, time}  ->
//!                                      <-  Accept {offset, prefix_blake2b}
//!   Start {offset}                     ->       (offset = verified resume point)
//!   bytes [offset, size) as stream     ->
//!                                      <-  Verdict {ok, message}
//! ```
//!
//! * The sender hashes the whole file before offering it; the digest in the
//!   Offer is what the receiver must end up with.
//! * The receiver writes into `.NAME.swp-part` beside the destination, with
//!   `.NAME.swp-part.meta` recording the size and digest it belongs to, and
//!   renames it to `NAME` only once the size and digest match. On any error
//!   no file named `NAME` is created; a digest mismatch deletes the part.
//! * Resume: if a part for the same size and digest exists, the receiver
//!   offers its length and the BLAKE2b of its content; the sender hashes its
//!   own first bytes and resumes only if they match (verified, not trusted).
//! * A received name is untrusted: absolute paths, `..`, empty components
//!   and NUL bytes are refused.
//!
//! With a go-sliding-window peer (a session in
//! [`WireFormat::Go`]) the same functions speak
//! Go's `SendFile`/`RecvFile` form instead: one msgpack `BigFile` {Filepath,
//! SizeInBytes, Blake2b, SendTime, Data} streamed with no other framing
//! (docs/PROTOCOL.md §13.4). It is still streamed from and to disk here,
//! verified the same way, and saved only if it matches; there is no resume
//! and no verdict (Go has neither), and a Go receiver holds the whole file
//! in memory. Of a Go sender's `Filepath`, `recv_file` keeps the last
//! component (Go programs usually pass full paths).

use crate::proto::gocodec::{self, BigFileHeader};
use crate::proto::{WireFormat, golink};
use crate::session::{Session, SessionError};
use blake2::{Blake2b512, Digest};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::watch;

const CHUNK: usize = 1 << 20;

/// What a transfer carries besides the bytes (as go-swp's `BigFile`).
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
/// # let net = SimNetwork::new(1, LinkConfig::new().loss(0.05));
/// # let (mut a, mut b) = net.session_pair(Config::new("a", "b"), Config::new("b", "")).await?;
/// # let dir = std::env::temp_dir().join(format!("swp-doc-{}-{}", std::process::id(), line!()));
/// # std::fs::create_dir_all(&dir)?;
/// use swp::file;
/// let (sent, got) = tokio::join!(
///     file::send_bytes(&mut a, "notes.txt", "hello".into()),
///     file::recv_bytes(&mut b, 1 << 20),
/// );
/// let (meta, bytes) = got?;
/// assert_eq!(meta, sent?);
/// assert_eq!((meta.name.as_str(), meta.size, &bytes[..]), ("notes.txt", 5, &b"hello"[..]));
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    /// The file's name (a relative path) as the sender gave it.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// BLAKE2b-512 of the whole content.
    pub blake2b: [u8; 64],
    /// When the sender started the transfer.
    pub send_time: SystemTime,
}

/// Progress of a transfer (in the spirit of pw_transfer's ProgressStats).
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
/// # let net = SimNetwork::new(1, LinkConfig::new().loss(0.05));
/// # let (mut a, mut b) = net.session_pair(Config::new("a", "b"), Config::new("b", "")).await?;
/// # let dir = std::env::temp_dir().join(format!("swp-doc-{}-{}", std::process::id(), line!()));
/// # std::fs::create_dir_all(&dir)?;
/// use swp::file;
/// let src = dir.join("big.bin");
/// std::fs::write(&src, vec![1u8; 3 << 20])?;
/// let (tx, rx) = tokio::sync::watch::channel(file::Progress::default());
/// let (sent, got) = tokio::join!(
///     file::send_file(&mut a, &src, Some(&tx)),
///     file::recv_file(&mut b, dir.join("in"), None),
/// );
/// sent?;
/// got?;
/// let p = *rx.borrow();
/// assert_eq!((p.bytes_sent, p.bytes_confirmed, p.total), (3 << 20, 3 << 20, 3 << 20));
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Bytes of the file handed to the session (sender) or written (receiver),
    /// counting resumed bytes.
    pub bytes_sent: u64,
    /// Bytes the peer has confirmed (sender: acknowledged by the receiver's
    /// swp; receiver: equal to `bytes_sent`).
    pub bytes_confirmed: u64,
    /// Total size.
    pub total: u64,
    /// Where this transfer resumed (0 for a fresh one).
    pub resumed_from: u64,
}

/// Result of a successful send.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
/// # let net = SimNetwork::new(1, LinkConfig::new().loss(0.05));
/// # let (mut a, mut b) = net.session_pair(Config::new("a", "b"), Config::new("b", "")).await?;
/// # let dir = std::env::temp_dir().join(format!("swp-doc-{}-{}", std::process::id(), line!()));
/// # std::fs::create_dir_all(&dir)?;
/// use swp::file;
/// let src = dir.join("a.txt");
/// std::fs::write(&src, "some content")?;
/// let (sent, got) = tokio::join!(
///     file::send_file(&mut a, &src, None),
///     file::recv_file(&mut b, dir.join("in"), None),
/// );
/// let report = sent?;
/// assert_eq!((report.resumed_from, report.bytes_sent), (0, 12));
/// assert_eq!(report.meta, got?.0);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendReport {
    /// What was sent.
    pub meta: FileMeta,
    /// Offset the receiver already had (verified).
    pub resumed_from: u64,
    /// File bytes actually sent in this run.
    pub bytes_sent: u64,
}

/// Why a transfer failed.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
/// # let net = SimNetwork::new(1, LinkConfig::new().loss(0.05));
/// # let (mut a, mut b) = net.session_pair(Config::new("a", "b"), Config::new("b", "")).await?;
/// # let dir = std::env::temp_dir().join(format!("swp-doc-{}-{}", std::process::id(), line!()));
/// # std::fs::create_dir_all(&dir)?;
/// use swp::file;
/// // A name that would escape the receiver's directory is refused before
/// // anything is sent (a receiver refuses it too, and tells the sender).
/// let err = file::send_bytes(&mut a, "../escape.txt", "x".into()).await.unwrap_err();
/// assert!(matches!(err, file::FileError::HostileName(_)));
/// assert!(err.to_string().contains("only relative paths"));
/// // The session is still usable.
/// let (sent, got) = tokio::join!(
///     file::send_bytes(&mut a, "fine.txt", "x".into()),
///     file::recv_bytes(&mut b, 10),
/// );
/// assert_eq!(sent?, got?.0);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(()) }
/// ```
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Reading or writing a local file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The session failed.
    #[error("session failed: {0}")]
    Session(#[from] SessionError),
    /// The peer's name for the file is not a safe relative path.
    #[error("refusing file name {0:?}: only relative paths without `..` are accepted")]
    HostileName(String),
    /// The received content does not match the sender's digest.
    #[error(
        "BLAKE2b-512 mismatch for {name}: the sender announced {expected}, the bytes received hash to {actual}; nothing was saved (did the source change during the transfer?)"
    )]
    DigestMismatch {
        /// The file.
        name: String,
        /// Announced digest (hex, first 16 bytes).
        expected: String,
        /// Digest of what arrived (hex, first 16 bytes).
        actual: String,
    },
    /// The destination exists and replacing it was not asked for.
    #[error(
        "{path} already exists; it was not replaced (receive with overwrite, e.g. `swp recv --force`, to replace it)"
    )]
    Exists {
        /// The existing file.
        path: PathBuf,
    },
    /// The receiver refused or failed the transfer.
    #[error("the receiver reported: {0}")]
    Rejected(String),
    /// The peer ended the session or broke the exchange.
    #[error("file transfer protocol: {0}")]
    Protocol(String),
}

#[derive(Debug, Serialize, Deserialize)]
enum Control {
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

/// How long a peer may take to send a control message it owes us (the
/// Offer after connecting, the Accept after our Offer, the Start after our
/// Accept): no disk work stands before any of them but hashing a resumed
/// part, so a peer that is heard from but silent this long is stuck.
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a receiver waits for the Offer: the sender hashes the whole
/// file before it offers it (about 700 MiB/s per core here, so this covers
/// some 400 GiB).
pub const OFFER_TIMEOUT: Duration = Duration::from_secs(600);

/// How long the sender waits for the receiver's Verdict once every byte is
/// acknowledged: the receiver still syncs the file to disk and renames it.
pub const VERDICT_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a failing side waits for its failure Verdict to be
/// acknowledged before it resets the session (the Reset carries the reason
/// too, so nothing is lost if the Verdict is not heard).
const FAILURE_LINGER: Duration = Duration::from_secs(1);

/// Ends the session because of `err` and tells the peer at once: a
/// receiver first sends a failure Verdict (a sender waiting for one reads
/// it as the reason), then either side resets the session with the reason
/// (a peer busy streaming learns it from the Reset). Every failure of a
/// transfer goes through here, so the peer never waits for a budget to
/// run out to learn that the transfer is over. A session that already
/// ended (the peer reset it, the network failed) has nobody to tell.
async fn fail_transfer(session: &Session, side: &str, err: &FileError) {
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
async fn told<T>(session: &Session, side: &str, r: Result<T, FileError>) -> Result<T, FileError> {
    if let Err(e) = &r {
        fail_transfer(session, side, e).await;
    }
    r
}

/// Tells the sender the file is accepted, and waits until it has heard.
async fn accept_verdict(session: &Session) -> Result<(), FileError> {
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

fn mismatch(name: &str, expected: &[u8], actual: &[u8]) -> FileError {
    FileError::DigestMismatch {
        name: name.to_string(),
        expected: hex16(expected),
        actual: hex16(actual),
    }
}

/// `digest` was checked to be 64 bytes (`check_offer`).
fn file_meta(name: String, size: u64, digest: &[u8], send_time_ns: u64) -> FileMeta {
    let mut blake2b = [0u8; 64];
    blake2b.copy_from_slice(digest);
    FileMeta {
        name,
        size,
        blake2b,
        send_time: UNIX_EPOCH + Duration::from_nanos(send_time_ns),
    }
}

fn hex16(d: &[u8]) -> String {
    d.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> FileError + '_ {
    move |source| FileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

async fn send_control(s: &Session, c: &Control) -> Result<(), FileError> {
    let b = rmp_serde::to_vec(c).expect("control messages always encode");
    s.send(Bytes::from(b)).await?;
    Ok(())
}

/// The next control message, which the peer owes us within `limit`.
async fn recv_control(s: &Session, what: &str, limit: Duration) -> Result<Control, FileError> {
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
async fn recv_offer(session: &Session) -> Result<(String, u64, Vec<u8>, u64), FileError> {
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

fn check_offer(name: &str, digest: &[u8]) -> Result<PathBuf, FileError> {
    if digest.len() != 64 {
        return Err(FileError::Protocol(format!(
            "the offer's digest has {} bytes, not 64",
            digest.len()
        )));
    }
    safe_relative_path(name)
}

/// Checks a received name and returns the relative path it denotes.
///
/// ```
/// use swp::file::safe_relative_path;
/// assert!(safe_relative_path("dir/file.bin").is_ok());
/// assert!(safe_relative_path("/etc/passwd").is_err());
/// assert!(safe_relative_path("../../x").is_err());
/// assert!(safe_relative_path("a/../../x").is_err());
/// ```
pub fn safe_relative_path(name: &str) -> Result<PathBuf, FileError> {
    let bad = || FileError::HostileName(name.to_string());
    if name.is_empty() || name.contains('\0') {
        return Err(bad());
    }
    let p = Path::new(name);
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(x) => out.push(x),
            Component::CurDir => {}
            _ => return Err(bad()),
        }
    }
    if out.as_os_str().is_empty() {
        return Err(bad());
    }
    Ok(out)
}

async fn hash_prefix(path: &Path, len: u64) -> Result<Blake2b512, FileError> {
    let mut f = tokio::fs::File::open(path).await.map_err(io_err(path))?;
    let mut h = Blake2b512::new();
    let mut buf = vec![0u8; CHUNK];
    let mut left = len;
    while left > 0 {
        let n = f
            .read(&mut buf[..(left.min(CHUNK as u64) as usize)])
            .await
            .map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(h)
}

/// Sends the file at `path` (its file name is what the receiver sees) over
/// an established session. Reports progress on `progress` if given.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
/// # let net = SimNetwork::new(1, LinkConfig::new().loss(0.05));
/// # let (mut a, mut b) = net.session_pair(Config::new("a", "b"), Config::new("b", "")).await?;
/// # let dir = std::env::temp_dir().join(format!("swp-doc-{}-{}", std::process::id(), line!()));
/// # std::fs::create_dir_all(&dir)?;
/// use swp::file;
/// let src = dir.join("report.pdf");
/// std::fs::write(&src, b"%PDF-1.7 ...")?;
/// let (sent, got) = tokio::join!(
///     file::send_file(&mut a, &src, None),
///     file::recv_file(&mut b, dir.join("incoming"), None),
/// );
/// sent?;
/// let (_meta, saved) = got?;
/// assert_eq!(saved, dir.join("incoming").join("report.pdf"));
/// assert_eq!(std::fs::read(saved)?, b"%PDF-1.7 ...");
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(()) }
/// ```
pub async fn send_file(
    session: &mut Session,
    path: impl AsRef<Path>,
    progress: Option<&watch::Sender<Progress>>,
) -> Result<SendReport, FileError> {
    let path = path.as_ref();
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| FileError::Protocol(format!("{} has no usable file name", path.display())))?
        .to_string();
    send_file_as(session, path, &name, progress).await
}

/// As [`send_file`], under the name `name` (a relative path).
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
/// # let net = SimNetwork::new(1, LinkConfig::new().loss(0.05));
/// # let (mut a, mut b) = net.session_pair(Config::new("a", "b"), Config::new("b", "")).await?;
/// # let dir = std::env::temp_dir().join(format!("swp-doc-{}-{}", std::process::id(), line!()));
/// # std::fs::create_dir_all(&dir)?;
/// use swp::file;
/// let src = dir.join("tmp-123");
/// std::fs::write(&src, "data")?;
/// let (sent, got) = tokio::join!(
///     file::send_file_as(&mut a, &src, "reports/2026/q3.csv", None),
///     file::recv_file(&mut b, dir.join("in"), None),
/// );
/// sent?;
/// assert_eq!(got?.1, dir.join("in/reports/2026/q3.csv"));
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(()) }
/// ```
pub async fn send_file_as(
    session: &mut Session,
    path: &Path,
    name: &str,
    progress: Option<&watch::Sender<Progress>>,
) -> Result<SendReport, FileError> {
    send_source(session, Source::File(path), name, progress).await
}

/// Where the sender's bytes come from.
#[derive(Clone, Copy)]
enum Source<'a> {
    File(&'a Path),
    Memory(&'a [u8]),
}

/// An open [`Source`], read sequentially from some offset.
enum SourceReader<'a> {
    File(tokio::fs::File, &'a Path),
    Memory(&'a [u8]),
}

impl<'a> Source<'a> {
    async fn size(self) -> Result<u64, FileError> {
        match self {
            Source::File(p) => Ok(tokio::fs::metadata(p).await.map_err(io_err(p))?.len()),
            Source::Memory(d) => Ok(d.len() as u64),
        }
    }

    /// A file source must be a readable regular file: checked before
    /// anything is offered, so the error names the real cause.
    async fn check(self) -> Result<(), FileError> {
        let Source::File(p) = self else { return Ok(()) };
        let m = tokio::fs::metadata(p).await.map_err(io_err(p))?;
        if !m.is_file() {
            let what = if m.is_dir() {
                "a directory"
            } else {
                "not a regular file"
            };
            return Err(FileError::Io {
                path: p.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("is {what}; only files can be sent"),
                ),
            });
        }
        tokio::fs::File::open(p).await.map_err(io_err(p))?;
        Ok(())
    }

    async fn hash_prefix(self, len: u64) -> Result<Blake2b512, FileError> {
        match self {
            Source::File(p) => hash_prefix(p, len).await,
            Source::Memory(d) => Ok(Blake2b512::new().chain_update(&d[..len as usize])),
        }
    }

    async fn open_at(self, start: u64) -> Result<SourceReader<'a>, FileError> {
        match self {
            Source::File(p) => {
                let mut f = tokio::fs::File::open(p).await.map_err(io_err(p))?;
                f.seek(std::io::SeekFrom::Start(start))
                    .await
                    .map_err(io_err(p))?;
                Ok(SourceReader::File(f, p))
            }
            Source::Memory(d) => Ok(SourceReader::Memory(&d[start as usize..])),
        }
    }

    fn describe(self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Memory(_) => "the in-memory data".into(),
        }
    }
}

impl SourceReader<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, FileError> {
        match self {
            SourceReader::File(f, p) => f.read(buf).await.map_err(io_err(p)),
            SourceReader::Memory(rest) => {
                let n = rest.len().min(buf.len());
                buf[..n].copy_from_slice(&rest[..n]);
                *rest = &rest[n..];
                Ok(n)
            }
        }
    }
}

/// The sender's side of the exchange (module docs), for any source. A
/// failure resets the session with its reason, so the receiver learns it
/// at once.
async fn send_source(
    session: &mut Session,
    source: Source<'_>,
    name: &str,
    progress: Option<&watch::Sender<Progress>>,
) -> Result<SendReport, FileError> {
    // A failure before anything was sent (a bad name, an unreadable
    // source) leaves the session as it was, for the caller to use or end.
    let before = session.stats().protocol.app_bytes_written;
    let r = send_source_inner(session, source, name, progress).await;
    if session.stats().protocol.app_bytes_written == before {
        return r;
    }
    told(session, "sender", r).await
}

async fn send_source_inner(
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
async fn stream_out(
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
    let data_base = session.stats().protocol.app_bytes_written;
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
                .app_bytes_acked
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

/// go-swp's `SendFile` form: a `BigFile` header, then the bytes, then wait
/// until the Go peer has acknowledged (i.e. read) everything.
async fn send_bigfile(
    session: &mut Session,
    source: Source<'_>,
    name: &str,
    progress: Option<&watch::Sender<Progress>>,
) -> Result<SendReport, FileError> {
    let size = source.size().await?;
    if size > u32::MAX as u64 {
        return Err(FileError::Protocol(format!(
            "{} is {size} bytes; a go-swp BigFile holds at most 4 GiB (msgpack bin32)",
            source.describe()
        )));
    }
    let digest: [u8; 64] = source.hash_prefix(size).await?.finalize().into();
    let send_time = SystemTime::now();
    let send_time_ns = send_time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let header = gocodec::encode_bigfile_header(
        name,
        size as i64,
        &digest,
        golink::time_from_unix_ns(send_time_ns as i128),
        size,
    );
    let write = |e| FileError::Session(io_to_session(e));
    session.write_all(&header).await.map_err(write)?;
    let mut hasher = Blake2b512::new();
    stream_out(session, source, 0, size, &mut hasher, progress).await?;
    // A Go receiver sends no verdict: everything acknowledged is the end.
    session.flush().await.map_err(write)?;
    if let Some(p) = progress {
        p.send_replace(Progress {
            bytes_sent: size,
            bytes_confirmed: size,
            total: size,
            resumed_from: 0,
        });
    }
    if <[u8; 64]>::from(hasher.finalize()) != digest {
        return Err(FileError::Protocol(format!(
            "{} changed during the transfer; the Go receiver will find a checksum mismatch",
            source.describe()
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
const BIGFILE_HEADER_LIMIT: usize = 64 * 1024;

/// Reads a go-swp `BigFile` header off the stream; returns it with the data
/// bytes that came in the same chunks.
async fn recv_bigfile_header(session: &Session) -> Result<(BigFileHeader, Bytes), FileError> {
    let mut buf = Vec::new();
    loop {
        match gocodec::parse_bigfile_header(&buf) {
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
async fn recv_bigfile_to(
    session: &Session,
    target: &Path,
    h: BigFileHeader,
    first: Bytes,
    progress: Option<&watch::Sender<Progress>>,
) -> Result<(FileMeta, PathBuf), FileError> {
    create_parent(target).await?;
    let (part, _) = part_paths(target);
    let mut f = tokio::fs::File::create(&part)
        .await
        .map_err(io_err(&part))?;
    let size = h.data_len;
    let mut hasher = Blake2b512::new();
    let mut got = 0u64;
    let mut chunk = first;
    loop {
        if chunk.len() as u64 > size - got {
            drop(f);
            let _ = tokio::fs::remove_file(&part).await;
            return Err(FileError::Protocol(format!(
                "the Go sender sent more than the {size} bytes its BigFile announced"
            )));
        }
        f.write_all(&chunk).await.map_err(io_err(&part))?;
        hasher.update(&chunk);
        got += chunk.len() as u64;
        if let Some(p) = progress {
            p.send_replace(Progress {
                bytes_sent: got,
                bytes_confirmed: got,
                total: size,
                resumed_from: 0,
            });
        }
        if got == size {
            break;
        }
        chunk = match session.read_chunk(CHUNK.min((size - got) as usize)).await? {
            Some(c) if !c.is_empty() => c,
            _ => {
                drop(f);
                let _ = tokio::fs::remove_file(&part).await;
                return Err(FileError::Protocol(format!(
                    "the Go sender ended the stream at {got} of {size} bytes; nothing was saved"
                )));
            }
        };
    }
    seal_part(f, &part, target, hasher, &h.filepath, &h.blake2b).await?;
    let send_time_ns = u64::try_from(golink::unix_ns(h.send_time)).unwrap_or(0);
    Ok((
        file_meta(h.filepath, size, &h.blake2b, send_time_ns),
        target.to_path_buf(),
    ))
}

/// The name a Go sender's `Filepath` is saved under by [`recv_file`]: its
/// last component, which must be a safe name.
fn go_file_name(filepath: &str) -> Result<PathBuf, FileError> {
    let last = filepath.rsplit(['/', '\\']).next().unwrap_or_default();
    safe_relative_path(last).map_err(|_| FileError::HostileName(filepath.to_string()))
}

fn io_to_session(e: std::io::Error) -> SessionError {
    match e.into_inner().map(|i| i.downcast::<SessionError>()) {
        Some(Ok(s)) => *s,
        Some(Err(other)) => {
            SessionError::Transport(crate::transport::TransportError::Closed(other.to_string()))
        }
        None => {
            SessionError::Transport(crate::transport::TransportError::Closed("I/O error".into()))
        }
    }
}

async fn create_parent(target: &Path) -> Result<(), FileError> {
    if let Some(parent) = target.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(io_err(parent))?;
    }
    Ok(())
}

/// Makes a fully received part durable and renames it to `target` if its
/// content hashes to `digest`; otherwise deletes it and reports the
/// mismatch. Nothing named `target` exists unless the content matched.
async fn seal_part(
    f: tokio::fs::File,
    part: &Path,
    target: &Path,
    hasher: Blake2b512,
    name: &str,
    digest: &[u8],
) -> Result<(), FileError> {
    f.sync_all().await.map_err(io_err(part))?;
    drop(f);
    let actual = hasher.finalize();
    if actual.as_slice() != digest {
        let _ = tokio::fs::remove_file(part).await;
        return Err(mismatch(name, digest, &actual));
    }
    tokio::fs::rename(part, target)
        .await
        .map_err(io_err(target))
}

fn part_paths(target: &Path) -> (PathBuf, PathBuf) {
    let file = target
        .file_name()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_default();
    let dir = target.parent().unwrap_or(Path::new("."));
    let part = dir.join(format!(".{file}.swp-part"));
    let meta = dir.join(format!(".{file}.swp-part.meta"));
    (part, meta)
}

/// Receives one file over an established session into directory `dir`
/// (created if missing; the sender's relative path is kept below it).
/// Returns the metadata and the final path. Resumes a previous, interrupted
/// transfer of the same file.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
/// # let net = SimNetwork::new(1, LinkConfig::new().loss(0.05));
/// # let (mut a, mut b) = net.session_pair(Config::new("a", "b"), Config::new("b", "")).await?;
/// # let dir = std::env::temp_dir().join(format!("swp-doc-{}-{}", std::process::id(), line!()));
/// # std::fs::create_dir_all(&dir)?;
/// use swp::file;
/// let src = dir.join("photo.jpg");
/// std::fs::write(&src, vec![0xffu8; 100_000])?;
/// let (sent, got) = tokio::join!(
///     file::send_file(&mut a, &src, None),
///     file::recv_file(&mut b, dir.join("in"), None),
/// );
/// sent?;
/// let (meta, saved) = got?;
/// // Saved under the sender's name, only after size and BLAKE2b matched.
/// assert_eq!((meta.size, saved), (100_000, dir.join("in/photo.jpg")));
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(()) }
/// ```
pub async fn recv_file(
    session: &mut Session,
    dir: impl AsRef<Path>,
    progress: Option<&watch::Sender<Progress>>,
) -> Result<(FileMeta, PathBuf), FileError> {
    recv_file_with(session, dir, &ReceiveOptions::default(), progress).await
}

/// What a receiver does beyond the defaults.
///
/// ```
/// let opts = swp::file::ReceiveOptions::new().overwrite(true);
/// assert!(opts.overwrites());
/// assert!(!swp::file::ReceiveOptions::default().overwrites());
/// ```
#[derive(Debug, Clone, Default)]
pub struct ReceiveOptions {
    overwrite: bool,
}

impl ReceiveOptions {
    /// The defaults: an existing destination file is never replaced.
    ///
    /// ```
    /// assert!(!swp::file::ReceiveOptions::new().overwrites());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Replace an existing file of the same name (by default the transfer
    /// is refused, and the sender is told why).
    ///
    /// ```
    /// assert!(swp::file::ReceiveOptions::new().overwrite(true).overwrites());
    /// ```
    pub fn overwrite(mut self, yes: bool) -> Self {
        self.overwrite = yes;
        self
    }

    /// Whether an existing file is replaced.
    ///
    /// ```
    /// assert!(!swp::file::ReceiveOptions::new().overwrites());
    /// ```
    pub fn overwrites(&self) -> bool {
        self.overwrite
    }
}

/// [`recv_file`] with options: into directory `dir`, refusing (or, with
/// [`ReceiveOptions::overwrite`], replacing) an existing file. A failure is
/// told to the sender at once, with its reason.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
/// # let net = SimNetwork::new(1, LinkConfig::new());
/// # let (mut a, mut b) = net.session_pair(Config::new("a", "b"), Config::new("b", "")).await?;
/// # let dir = std::env::temp_dir().join(format!("swp-doc-{}-{}", std::process::id(), line!()));
/// # std::fs::create_dir_all(dir.join("in"))?;
/// use swp::file::{self, FileError, ReceiveOptions};
/// let src = dir.join("notes.txt");
/// std::fs::write(&src, "new")?;
/// std::fs::write(dir.join("in/notes.txt"), "old")?;
/// let keep = ReceiveOptions::new(); // the default: never replace
/// let (sent, got) = tokio::join!(
///     file::send_file(&mut a, &src, None),
///     file::recv_file_with(&mut b, dir.join("in"), &keep, None),
/// );
/// assert!(matches!(got, Err(FileError::Exists { .. })));
/// assert!(sent.unwrap_err().to_string().contains("already exists"));
/// assert_eq!(std::fs::read_to_string(dir.join("in/notes.txt"))?, "old");
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(()) }
/// ```
pub async fn recv_file_with(
    session: &mut Session,
    dir: impl AsRef<Path>,
    opts: &ReceiveOptions,
    progress: Option<&watch::Sender<Progress>>,
) -> Result<(FileMeta, PathBuf), FileError> {
    let r = recv_into(session, Dest::Dir(dir.as_ref()), opts, progress).await;
    told(session, "receiver", r).await
}

/// Where a received file goes.
#[derive(Clone, Copy)]
enum Dest<'a> {
    /// Below this directory, under the sender's name.
    Dir(&'a Path),
    /// At exactly this path.
    Exactly(&'a Path),
}

/// The receiver's side of the exchange (module docs, or Go's BigFile).
async fn recv_into(
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

/// An existing destination is replaced only when asked to.
async fn check_target(target: &Path, opts: &ReceiveOptions) -> Result<(), FileError> {
    if !opts.overwrite && tokio::fs::symlink_metadata(target).await.is_ok() {
        return Err(FileError::Exists {
            path: target.to_path_buf(),
        });
    }
    Ok(())
}

/// Receives one file over an established session and saves it at exactly
/// `path` (whatever name the sender gave; parent directories are created).
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
/// # let net = SimNetwork::new(1, LinkConfig::new().loss(0.05));
/// # let (mut a, mut b) = net.session_pair(Config::new("a", "b"), Config::new("b", "")).await?;
/// # let dir = std::env::temp_dir().join(format!("swp-doc-{}-{}", std::process::id(), line!()));
/// # std::fs::create_dir_all(&dir)?;
/// use swp::file;
/// let src = dir.join("whatever-the-sender-calls-it");
/// std::fs::write(&src, "content")?;
/// let (sent, got) = tokio::join!(
///     file::send_file(&mut a, &src, None),
///     file::recv_file_as(&mut b, dir.join("exactly/here.txt"), None),
/// );
/// sent?;
/// got?;
/// assert_eq!(std::fs::read_to_string(dir.join("exactly/here.txt"))?, "content");
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(()) }
/// ```
pub async fn recv_file_as(
    session: &mut Session,
    path: impl AsRef<Path>,
    progress: Option<&watch::Sender<Progress>>,
) -> Result<(FileMeta, PathBuf), FileError> {
    recv_file_as_with(session, path, &ReceiveOptions::default(), progress).await
}

/// [`recv_file_as`] with options (see [`recv_file_with`]).
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
/// # let net = SimNetwork::new(1, LinkConfig::new());
/// # let (mut a, mut b) = net.session_pair(Config::new("a", "b"), Config::new("b", "")).await?;
/// # let dir = std::env::temp_dir().join(format!("swp-doc-{}-{}", std::process::id(), line!()));
/// # std::fs::create_dir_all(&dir)?;
/// use swp::file::{self, ReceiveOptions};
/// let (src, dst) = (dir.join("v2.txt"), dir.join("current.txt"));
/// std::fs::write(&src, "v2")?;
/// std::fs::write(&dst, "v1")?;
/// let replace = ReceiveOptions::new().overwrite(true);
/// let (sent, got) = tokio::join!(
///     file::send_file(&mut a, &src, None),
///     file::recv_file_as_with(&mut b, &dst, &replace, None),
/// );
/// sent?;
/// got?;
/// assert_eq!(std::fs::read_to_string(&dst)?, "v2");
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(()) }
/// ```
pub async fn recv_file_as_with(
    session: &mut Session,
    path: impl AsRef<Path>,
    opts: &ReceiveOptions,
    progress: Option<&watch::Sender<Progress>>,
) -> Result<(FileMeta, PathBuf), FileError> {
    let r = recv_into(session, Dest::Exactly(path.as_ref()), opts, progress).await;
    told(session, "receiver", r).await
}

#[allow(clippy::too_many_arguments)]
async fn recv_file_to(
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

/// Sends `data` as a file named `name` (go-swp's `SendFile(path, data, time)`).
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
/// # let net = SimNetwork::new(1, LinkConfig::new().loss(0.05));
/// # let (mut a, mut b) = net.session_pair(Config::new("a", "b"), Config::new("b", "")).await?;
/// # let dir = std::env::temp_dir().join(format!("swp-doc-{}-{}", std::process::id(), line!()));
/// # std::fs::create_dir_all(&dir)?;
/// use swp::file;
/// let (sent, got) = tokio::join!(
///     file::send_bytes(&mut a, "config.json", r#"{"k": 1}"#.into()),
///     file::recv_file(&mut b, dir.join("in"), None),
/// );
/// assert_eq!(sent?.size, 8);
/// assert_eq!(std::fs::read_to_string(got?.1)?, r#"{"k": 1}"#);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(()) }
/// ```
pub async fn send_bytes(
    session: &mut Session,
    name: &str,
    data: Bytes,
) -> Result<FileMeta, FileError> {
    Ok(send_source(session, Source::Memory(&data), name, None)
        .await?
        .meta)
}

/// Receives one file into memory (go-swp's `RecvFile()`); verified like
/// [`recv_file`]. Refuses files larger than `max_size`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
/// # let net = SimNetwork::new(1, LinkConfig::new().loss(0.05));
/// # let (mut a, mut b) = net.session_pair(Config::new("a", "b"), Config::new("b", "")).await?;
/// # let dir = std::env::temp_dir().join(format!("swp-doc-{}-{}", std::process::id(), line!()));
/// # std::fs::create_dir_all(&dir)?;
/// use swp::file;
/// let (sent, got) = tokio::join!(
///     file::send_bytes(&mut a, "blob", vec![9u8; 1000].into()),
///     file::recv_bytes(&mut b, 100), // at most 100 bytes, please
/// );
/// assert!(got.is_err()); // refused: too large
/// assert!(sent.is_err()); // and the sender was told
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(()) }
/// ```
pub async fn recv_bytes(
    session: &mut Session,
    max_size: u64,
) -> Result<(FileMeta, Bytes), FileError> {
    let r = recv_bytes_inner(session, max_size).await;
    told(session, "receiver", r).await
}

async fn recv_bytes_inner(
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

/// [`recv_bytes`] from a Go peer.
async fn recv_bigfile_bytes(
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
