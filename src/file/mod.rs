//! Files over a session: streamed from disk to disk in constant memory,
//! verified with BLAKE2b-512, resumable, with progress.
//!
//! The exchange (each control item is one swp message, msgpack-encoded):
//!
//! ```text
//! sender                                   receiver
//!   Offer {name, size or nil, time}    ->
//!                                      <-  Accept {offset, prefix_blake2b}
//!   Start {offset}                     ->       (offset = verified resume point)
//!   Segment {len} + len stream bytes   ->       (one for a file; a pipe's as they come)
//!   End {size, blake2b}                ->
//!                                      <-  Verdict {ok, message}
//! ```
//!
//! * One read pass and one hash pass per side: the sender hashes while it
//!   sends and carries the digest after the data; the receiver hashes while
//!   it writes and compares before it presents anything. Disk and hashing
//!   run beside the network, not in its way: the sender reads and hashes
//!   its next 1 MiB while the last goes out, and the receiver writes and
//!   hashes each 1 MiB while the next arrives.
//! * The receiver writes into `.NAME.swp-part` beside the destination, with
//!   `.NAME.swp-part.meta` recording the size it belongs to, and renames it
//!   to `NAME` only once the size and digest match. On any error no file
//!   named `NAME` is created; a digest mismatch deletes the part.
//! * Resume: if a part for the same size exists, the receiver offers its
//!   length and the BLAKE2b of its content; the sender hashes its own first
//!   bytes and resumes only if they match (verified, not trusted); the
//!   digest after the data covers the whole file either way.
//! * An existing file of the offered size is offered the same way, whole:
//!   if the sender's file hashes the same, nothing is sent and the transfer
//!   succeeds (`resumed_from == size`); any other existing file is refused
//!   unless the receiver replaces files ([`ReceiveOptions::overwrite`]).
//! * A source of unknown length (a pipe, [`send_reader`]) is offered
//!   without a size and sent in Segments as it is read; it is not resumable.
//! * A received name is untrusted: absolute paths, `..`, empty components
//!   and NUL bytes are refused.
//!
//! With a go-sliding-window peer (a session in
//! [`WireFormat::Go`](crate::proto::WireFormat::Go)) the same functions speak
//! Go's `SendFile`/`RecvFile` form instead: one msgpack `BigFile` {Filepath,
//! SizeInBytes, Blake2b, SendTime, Data} streamed with no other framing
//! (docs/PROTOCOL.md §13.4). It is still streamed from and to disk here,
//! verified the same way, and saved only if it matches; there is no resume
//! and no verdict (Go has neither), and a Go receiver holds the whole file
//! in memory. Of a Go sender's `Filepath`, `recv_file` keeps the last
//! component (Go programs usually pass full paths).

mod behind;
pub mod bigfile;
mod bigfile_io;
mod exchange;
pub(crate) mod hold;
mod jobs;
mod part;
pub mod service;
mod source;

use crate::session::{Session, SessionError};
use bytes::Bytes;
use exchange::{Dest, recv_bytes_inner, recv_into, recv_to_writer_inner, send_source, told};
use source::Source;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

const CHUNK: usize = 1 << 20;

/// What a transfer carries besides the bytes (as go-swp's `BigFile`).
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
/// # let net = SimNetwork::new(1, LinkConfig::new().loss(0.05));
/// # let (mut a, mut b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
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
/// # let (mut a, mut b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
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
#[non_exhaustive]
pub struct Progress {
    /// Bytes of the file handed to the session (sender) or written (receiver),
    /// counting resumed bytes.
    pub bytes_sent: u64,
    /// Bytes the peer has confirmed (sender: acknowledged by the receiver's
    /// swp; receiver: equal to `bytes_sent`).
    pub bytes_confirmed: u64,
    /// Total size (while [`total_known`](Self::total_known) is false, as
    /// with a sender reading a pipe: the bytes so far).
    pub total: u64,
    /// Whether `total` is the size announced before the data.
    pub total_known: bool,
    /// Where this transfer resumed (0 for a fresh one; `total` when an
    /// identical copy was already there and nothing was sent).
    pub resumed_from: u64,
    /// Hashing what is already there (the receiver's part or existing
    /// file, the sender's matching prefix) before any byte is sent.
    pub hashing: bool,
}

/// Result of a successful send.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
/// # let net = SimNetwork::new(1, LinkConfig::new().loss(0.05));
/// # let (mut a, mut b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
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
#[non_exhaustive]
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
/// # let (mut a, mut b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
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
#[non_exhaustive]
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
    #[error(
        "refusing file name {name:?}: {why} (only relative paths without `..` are accepted)",
        name = .0,
        why = hostile_reason(.0)
    )]
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
    /// A file service refused the request (a name it does not serve, a
    /// file that exists, a name it will not take): its words.
    #[error("the service refused: {0}")]
    Refused(String),
    /// The peer ended the session or broke the exchange.
    #[error("file transfer protocol: {0}")]
    Protocol(String),
    /// Another transfer is receiving into the same part file: a transfer
    /// still running (in this process or another), or an ended one of this
    /// process whose last write has not returned within [`PART_WAIT`].
    /// Nothing was changed.
    #[error(
        "{path}: {why}; nothing was changed (wait for that transfer to end, or receive to another path)"
    )]
    Busy {
        /// The part file.
        path: PathBuf,
        /// Who holds it.
        why: &'static str,
    },
    /// The session's windows cannot carry the exchange's control messages
    /// (the largest holds the name or a 64-byte digest): nothing was sent.
    #[error(
        "this session delivers messages of at most {most} bytes, and a file transfer needs {needed} \
         (its control messages carry the file's name and 64-byte BLAKE2b-512 digests): raise the \
         window (bytes, and packets x max_payload) and the send buffer to at least {needed} bytes \
         on both sides"
    )]
    WindowTooSmall {
        /// The largest control message this transfer sends.
        needed: u64,
        /// The largest message the session delivers
        /// ([`Session::max_message_size`](crate::Session::max_message_size)).
        most: u64,
    },
}

/// How long a peer may take to send a control message that no disk work
/// stands before (the next Segment or the End; a sender whose input is idle
/// says so every [`IDLE_HEARTBEAT`]), and how long a receiver waits for
/// the next bytes in the middle of a Segment: a peer that is heard from but
/// silent this long is stuck (its program, or its disk).
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a receiver waits for the Offer (the sender sends it at once).
pub const OFFER_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a side waits for the Accept or the Start: the other side may
/// first hash a part, an existing file or its own prefix (about 700 MiB/s
/// per core here, so this covers some 400 GiB).
pub const HASH_TIMEOUT: Duration = Duration::from_secs(600);

/// How long a receiver waits for an ended receive of this process into
/// the same part file to let go of it (its last write job, a few MiB and a
/// writeback sync, still running on a slow disk) before it fails with
/// [`FileError::Busy`]. A transfer still running is `Busy` at once.
pub const PART_WAIT: Duration = CONTROL_TIMEOUT;

/// How long a receiver that has every byte and the digest still waits for
/// its last writes and its sync once the sender has failed (given up
/// waiting for the Verdict, been interrupted): a disk that answers within
/// it gets the file sealed and returned complete, and the sender, sent
/// again, finds it there; past it the receive fails at once with the
/// sender's reason, the write runs on holding the part, and the next
/// attempt resumes the whole part without resending a byte. A failure
/// before the last byte waits for no disk at all.
pub const LAST_WRITE_GRACE: Duration = Duration::from_secs(2);

/// A sender reading a stream whose input stays idle this long sends an
/// empty Segment, so the receiver's bounded wait goes on.
pub const IDLE_HEARTBEAT: Duration = exchange::IDLE_HEARTBEAT;

/// How long the sender waits for the receiver's Verdict once every byte is
/// acknowledged: the receiver still syncs the file to disk and renames it.
pub const VERDICT_TIMEOUT: Duration = Duration::from_secs(120);

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
    relative_path(name).map_err(|_| FileError::HostileName(name.to_string()))
}

/// What is wrong with `name` as a file name (for [`FileError::HostileName`]).
fn hostile_reason(name: &str) -> &'static str {
    relative_path(name).err().unwrap_or("it is not a safe name")
}

/// The relative path `name` denotes, or what is wrong with it.
fn relative_path(name: &str) -> Result<PathBuf, &'static str> {
    if name.is_empty() {
        return Err("a file needs a name");
    }
    if name.contains('\0') {
        return Err("it holds a NUL byte");
    }
    let mut out = PathBuf::new();
    for c in Path::new(name).components() {
        match c {
            Component::Normal(x) => out.push(x),
            Component::CurDir => {}
            Component::ParentDir => return Err("`..` would leave the receiving directory"),
            Component::RootDir | Component::Prefix(_) => {
                return Err("it is absolute, and would leave the receiving directory");
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err("it names a directory, not a file");
    }
    Ok(out)
}

/// Sends the file at `path` (its file name is what the receiver sees) over
/// an established session. Reports progress on `progress` if given.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
/// # let net = SimNetwork::new(1, LinkConfig::new().loss(0.05));
/// # let (mut a, mut b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
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
/// # let (mut a, mut b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
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

/// Sends everything `reader` yields (a pipe, a socket, stdin) as a file
/// named `name`, without knowing its size first: read once, hashed as it
/// goes, verified by the receiver like any file; not resumable. The sender
/// sends what it has read within a few milliseconds, so a slow producer's
/// bytes are not held back.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
/// # let net = SimNetwork::new(1, LinkConfig::new().loss(0.05));
/// # let (mut a, mut b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
/// use swp::file;
/// let mut input: &[u8] = b"lines from a pipe\n"; // any AsyncRead
/// let (sent, got) = tokio::join!(
///     file::send_reader(&mut a, &mut input, "log.txt", None),
///     file::recv_bytes(&mut b, 1 << 20),
/// );
/// let (meta, bytes) = got?;
/// assert_eq!((sent?.meta, &bytes[..]), (meta, &b"lines from a pipe\n"[..]));
/// # Ok(()) }
/// ```
pub async fn send_reader(
    session: &mut Session,
    reader: &mut (dyn tokio::io::AsyncRead + Unpin + Send),
    name: &str,
    progress: Option<&watch::Sender<Progress>>,
) -> Result<SendReport, FileError> {
    send_source(session, Source::Reader(reader), name, progress).await
}

/// Receives one file into `writer` (stdout, a socket) as it arrives, and
/// verifies it at the end. The bytes are written before the digest can be
/// checked, so on a mismatch the error says the output must be discarded;
/// receive into a file ([`recv_file`]) to have nothing presented unless it
/// verified.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
/// # let net = SimNetwork::new(1, LinkConfig::new().loss(0.05));
/// # let (mut a, mut b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
/// use swp::file;
/// let mut out = Vec::new(); // any AsyncWrite
/// let (sent, got) = tokio::join!(
///     file::send_bytes(&mut a, "data.csv", "a,b\n1,2\n".into()),
///     file::recv_to_writer(&mut b, &mut out, None),
/// );
/// assert_eq!(sent?, got?);
/// assert_eq!(out, b"a,b\n1,2\n");
/// # Ok(()) }
/// ```
pub async fn recv_to_writer(
    session: &mut Session,
    writer: &mut (dyn tokio::io::AsyncWrite + Unpin + Send),
    progress: Option<&watch::Sender<Progress>>,
) -> Result<FileMeta, FileError> {
    receiving(session, async |s| {
        recv_to_writer_inner(s, writer, progress).await
    })
    .await
}

/// Runs one receive on `session`: its failure is told to the sender
/// ([`told`]), and a receive dropped half-way resets the session with the
/// reason (`CancelGuard`).
async fn receiving<T>(
    session: &mut Session,
    run: impl AsyncFnOnce(&mut Session) -> Result<T, FileError>,
) -> Result<T, FileError> {
    let guard = exchange::CancelGuard::new(session, "receiver");
    let r = run(session).await;
    guard.done(told(session, "receiver", r).await)
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
/// # let (mut a, mut b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
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
/// # let (mut a, mut b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
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
    let dest = Dest::Dir(dir.as_ref());
    receiving(session, async |s| recv_into(s, dest, opts, progress).await).await
}

/// Receives one file over an established session and saves it at exactly
/// `path` (whatever name the sender gave; parent directories are created).
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
/// # let net = SimNetwork::new(1, LinkConfig::new().loss(0.05));
/// # let (mut a, mut b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
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
/// # let (mut a, mut b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
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
    let dest = Dest::Exactly(path.as_ref());
    receiving(session, async |s| recv_into(s, dest, opts, progress).await).await
}

/// Sends `data` as a file named `name` (go-swp's `SendFile(path, data, time)`).
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
/// # let net = SimNetwork::new(1, LinkConfig::new().loss(0.05));
/// # let (mut a, mut b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
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
/// # let (mut a, mut b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
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
    receiving(session, async |s| recv_bytes_inner(s, max_size).await).await
}
