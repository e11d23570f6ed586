//! Where a sender's bytes come from: a file on disk, or a slice in memory.

use super::part::hash_prefix;
use super::*;
use blake2::{Blake2b512, Digest};
use tokio::io::AsyncSeekExt;

/// Where the sender's bytes come from.
#[derive(Clone, Copy)]
pub(super) enum Source<'a> {
    File(&'a Path),
    Memory(&'a [u8]),
}

/// An open [`Source`], read sequentially from some offset.
pub(super) enum SourceReader<'a> {
    File(tokio::fs::File, &'a Path),
    Memory(&'a [u8]),
}

impl<'a> Source<'a> {
    pub(super) async fn size(self) -> Result<u64, FileError> {
        match self {
            Source::File(p) => Ok(tokio::fs::metadata(p).await.map_err(io_err(p))?.len()),
            Source::Memory(d) => Ok(d.len() as u64),
        }
    }

    /// A file source must be a readable regular file: checked before
    /// anything is offered, so the error names the real cause.
    pub(super) async fn check(self) -> Result<(), FileError> {
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

    pub(super) async fn hash_prefix(self, len: u64) -> Result<Blake2b512, FileError> {
        match self {
            Source::File(p) => hash_prefix(p, len).await,
            Source::Memory(d) => Ok(Blake2b512::new().chain_update(&d[..len as usize])),
        }
    }

    pub(super) async fn open_at(self, start: u64) -> Result<SourceReader<'a>, FileError> {
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

    pub(super) fn describe(self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Memory(_) => "the in-memory data".into(),
        }
    }
}

impl SourceReader<'_> {
    pub(super) async fn read(&mut self, buf: &mut [u8]) -> Result<usize, FileError> {
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
