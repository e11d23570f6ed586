//! Where a sender's bytes come from: a file on disk, a slice in memory, or
//! a reader of unknown length (a pipe).

use super::behind::ReadAhead;
use super::jobs::Jobs;
use super::part::hash_prefix;
use super::*;
use crate::digest::Blake2b512;
use std::io::{Seek, SeekFrom};
use tokio::io::AsyncRead;

/// Where the sender's bytes come from.
pub(super) enum Source<'a> {
    File(&'a Path),
    Memory(&'a [u8]),
    /// Read once, front to back: no size before the end, no resume.
    Reader(&'a mut (dyn AsyncRead + Unpin + Send)),
}

/// What a file source looked like when the transfer began; compared again
/// before the sender vouches for what it sent.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    /// The inode's change time, where there is one (a write within the
    /// modification time's granularity, or one that reset it, moves it).
    changed: Option<(i64, i64)>,
}

impl<'a> Source<'a> {
    /// The size, if known before reading (not for a reader).
    pub(super) async fn size(&mut self, jobs: Jobs) -> Result<Option<u64>, FileError> {
        match self {
            Source::File(p) => Ok(Some(metadata(jobs, p).await?.len())),
            Source::Memory(d) => Ok(Some(d.len() as u64)),
            Source::Reader(_) => Ok(None),
        }
    }

    /// A file's length and modification time (None for other sources).
    pub(super) async fn stamp(&mut self, jobs: Jobs) -> Result<Option<Stamp>, FileError> {
        let Source::File(p) = *self else {
            return Ok(None);
        };
        let m = metadata(jobs, p).await?;
        #[cfg(unix)]
        let changed = {
            use std::os::unix::fs::MetadataExt;
            Some((m.ctime(), m.ctime_nsec()))
        };
        #[cfg(not(unix))]
        let changed = None;
        Ok(Some(Stamp {
            len: m.len(),
            modified: m.modified().ok(),
            changed,
        }))
    }

    /// A file source must be a readable regular file: checked before
    /// anything is offered, so the error names the real cause.
    pub(super) async fn check(&mut self, jobs: Jobs) -> Result<(), FileError> {
        let Source::File(p) = *self else {
            return Ok(());
        };
        let m = metadata(jobs, p).await?;
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
        jobs.on(p, |p| std::fs::File::open(p))
            .await
            .map_err(io_err(p))?;
        Ok(())
    }

    /// The hash of the first `len` bytes (a reader has no prefix to offer:
    /// it is never resumed, so this is only asked of files and memory).
    pub(super) async fn hash_prefix(
        &mut self,
        jobs: Jobs,
        len: u64,
    ) -> Result<Blake2b512, FileError> {
        match self {
            Source::File(p) => hash_prefix(jobs, p, len).await,
            Source::Memory(d) => Ok(Blake2b512::new().chain_update(&d[..len as usize])),
            Source::Reader(_) => Ok(Blake2b512::new()),
        }
    }

    /// Reads from `start` on (a reader: from where it is; `start` is 0).
    pub(super) async fn open_at(
        &mut self,
        jobs: Jobs,
        start: u64,
    ) -> Result<Box<dyn AsyncRead + Unpin + Send + '_>, FileError> {
        match self {
            Source::File(p) => Ok(jobs.reader(open_file_at(jobs, p, start).await?)),
            Source::Memory(d) => Ok(Box::new(&d[start as usize..])),
            Source::Reader(r) => Ok(Box::new(&mut **r)),
        }
    }

    /// The `len` bytes from `start` as chunks, hashed into `hasher` as they
    /// are read: a file's are read and hashed ahead, off the caller's task
    /// ([`ReadAhead`]). A reader has no known length and no chunks.
    pub(super) async fn chunks_at(
        &mut self,
        jobs: Jobs,
        start: u64,
        len: u64,
        hasher: Option<Blake2b512>,
    ) -> Result<Chunks<'_>, FileError> {
        match self {
            Source::File(p) => {
                let f = open_file_at(jobs, p, start).await?;
                Ok(Chunks::File(ReadAhead::start(jobs, f, p, hasher, len)))
            }
            Source::Memory(d) => {
                let from = (start as usize).min(d.len());
                let to = from.saturating_add(len as usize).min(d.len());
                Ok(Chunks::Memory {
                    rest: &d[from..to],
                    hasher,
                })
            }
            Source::Reader(_) => Err(FileError::Protocol(
                "a stream of unknown length has no chunks by offset".into(),
            )),
        }
    }

    pub(super) fn describe(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Memory(_) => "the in-memory data".into(),
            Source::Reader(_) => "the input stream".into(),
        }
    }
}

/// The file at `p`, positioned at `start`.
async fn open_file_at(jobs: Jobs, p: &Path, start: u64) -> Result<std::fs::File, FileError> {
    jobs.on(p, move |p| {
        let mut f = std::fs::File::open(p)?;
        f.seek(SeekFrom::Start(start))?;
        Ok(f)
    })
    .await
    .map_err(io_err(p))
}

async fn metadata(jobs: Jobs, p: &Path) -> Result<std::fs::Metadata, FileError> {
    jobs.on(p, |p| std::fs::metadata(p))
        .await
        .map_err(io_err(p))
}

/// A known-length source's bytes, chunk by chunk, hashed as they go.
pub(super) enum Chunks<'a> {
    File(ReadAhead),
    Memory {
        rest: &'a [u8],
        hasher: Option<Blake2b512>,
    },
}

/// One chunk: read from a file, or a slice of the caller's memory.
pub(super) enum Piece<'a> {
    Read(Bytes),
    Slice(&'a [u8]),
}

impl std::ops::Deref for Piece<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Piece::Read(b) => b,
            Piece::Slice(s) => s,
        }
    }
}

impl<'a> Chunks<'a> {
    /// The next chunk, `None` at the end (early if a file shrank).
    pub(super) async fn next(&mut self) -> std::io::Result<Option<Piece<'a>>> {
        match self {
            Chunks::File(r) => Ok(r.next().await?.map(Piece::Read)),
            Chunks::Memory { rest, hasher } => {
                if rest.is_empty() {
                    return Ok(None);
                }
                let (now, later) = rest.split_at(rest.len().min(CHUNK));
                if let Some(h) = hasher.as_mut() {
                    h.update(now);
                }
                *rest = later;
                Ok(Some(Piece::Slice(now)))
            }
        }
    }

    /// The hash of every chunk given (empty if started without a hasher).
    pub(super) fn into_hasher(self) -> Blake2b512 {
        match self {
            Chunks::File(r) => r.into_hasher(),
            Chunks::Memory { hasher, .. } => hasher.unwrap_or_else(Blake2b512::new),
        }
    }
}
