//! The receiver's files: `.NAME.swp-part` and its `.meta`, how a part is
//! hashed for a resume, sealed (synced, verified, renamed) or refused, and
//! whether an existing destination may be replaced.

use super::behind::ReadAhead;
use super::*;
use crate::digest::Blake2b512;

/// The hash of a file's first `len` bytes (fewer if it is shorter), read
/// and hashed off the caller's task.
pub(super) async fn hash_prefix(path: &Path, len: u64) -> Result<Blake2b512, FileError> {
    let f = tokio::fs::File::open(path).await.map_err(io_err(path))?;
    let mut chunks = ReadAhead::start(f.into_std().await, Some(Blake2b512::new()), len);
    while chunks.next().await.map_err(io_err(path))?.is_some() {}
    Ok(chunks.into_hasher())
}

pub(super) async fn create_parent(target: &Path) -> Result<(), FileError> {
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
pub(super) async fn seal_part(
    f: std::fs::File,
    part: &Path,
    target: &Path,
    hasher: Blake2b512,
    name: &str,
    digest: &[u8],
) -> Result<(), FileError> {
    tokio::task::spawn_blocking(move || f.sync_all())
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
        .map_err(io_err(part))?;
    let actual = hasher.finalize();
    if actual.as_slice() != digest {
        let _ = tokio::fs::remove_file(part).await;
        return Err(mismatch(name, digest, &actual));
    }
    tokio::fs::rename(part, target)
        .await
        .map_err(io_err(target))
}

pub(super) fn part_paths(target: &Path) -> (PathBuf, PathBuf) {
    let file = target
        .file_name()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_default();
    let dir = target.parent().unwrap_or(Path::new("."));
    let part = dir.join(format!(".{file}.swp-part"));
    let meta = dir.join(format!(".{file}.swp-part.meta"));
    (part, meta)
}

/// An existing destination is replaced only when asked to.
pub(super) async fn check_target(target: &Path, opts: &ReceiveOptions) -> Result<(), FileError> {
    if !opts.overwrite && tokio::fs::symlink_metadata(target).await.is_ok() {
        return Err(FileError::Exists {
            path: target.to_path_buf(),
        });
    }
    Ok(())
}
