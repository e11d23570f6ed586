//! The receiver's files: `.NAME.swp-part` and its `.meta`, how a part is
//! hashed for a resume, sealed (synced, verified, renamed) or refused, and
//! whether an existing destination may be replaced.

use super::*;
use crate::digest::Blake2b512;

pub(super) async fn hash_prefix(path: &Path, len: u64) -> Result<Blake2b512, FileError> {
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
