//! The receiver's files: `.NAME.swp-part` and its `.meta`, how a part is
//! hashed for a resume, synced and sealed (verified, renamed) or refused, and
//! whether an existing destination may be replaced.

use super::behind::ReadAhead;
use super::hold::PartFile;
use super::jobs::Jobs;
use super::*;
use crate::digest::Blake2b512;

/// The hash of a file's first `len` bytes (fewer if it is shorter), read
/// and hashed off the caller's task.
pub(super) async fn hash_prefix(
    jobs: Jobs,
    path: &Path,
    len: u64,
) -> Result<Blake2b512, FileError> {
    let f = jobs
        .on(path, |p| std::fs::File::open(p))
        .await
        .map_err(io_err(path))?;
    let mut chunks = ReadAhead::start(jobs, f, path, Some(Blake2b512::new()), len);
    while chunks.next().await.map_err(io_err(path))?.is_some() {}
    Ok(chunks.into_hasher())
}

pub(super) async fn create_parent(jobs: Jobs, target: &Path) -> Result<(), FileError> {
    if let Some(parent) = target.parent() {
        jobs.on(parent, |p| std::fs::create_dir_all(p))
            .await
            .map_err(io_err(parent))?;
    }
    Ok(())
}

/// Makes a fully received part durable (data and length) before
/// [`seal_part`] may rename it.
pub(super) async fn sync_part(jobs: Jobs, f: PartFile, part: &Path) -> Result<PartFile, FileError> {
    jobs.run(move || f.sync_all().map(|()| f))
        .await
        .map_err(io_err(part))
}

/// Renames a fully received part, synced by [`sync_part`], to `target` if
/// its content hashes to `digest`; otherwise deletes it and reports the
/// mismatch. Nothing named `target` exists unless the content matched.
/// The part is held until its new name is in place.
pub(super) async fn seal_part(
    jobs: Jobs,
    f: PartFile,
    part: &Path,
    target: &Path,
    hasher: Blake2b512,
    name: &str,
    digest: &[u8],
) -> Result<(), FileError> {
    let actual = hasher.finalize();
    if actual.as_slice() != digest {
        let _ = jobs.on(part, |p| std::fs::remove_file(p)).await;
        return Err(mismatch(name, digest, &actual));
    }
    let to = target.to_path_buf();
    let renamed = jobs
        .on(part, move |p| std::fs::rename(p, to))
        .await
        .map_err(io_err(target));
    drop(f);
    renamed
}

/// The longest file name most file systems store (NAME_MAX on Linux, in
/// bytes).
const NAME_MAX: usize = 255;

/// `.NAME.swp-part` and `.NAME.swp-part.meta` beside `target`. For a name
/// too long to take the 15 bytes more (over 240 bytes; a valid name up to
/// 255 is still received under it), the part files keep a prefix of the
/// name and 16 hex digits of its BLAKE2b-512: `.PREFIX~HASH.swp-part`, the
/// same every time, so a resume finds them.
pub(super) fn part_paths(target: &Path) -> (PathBuf, PathBuf) {
    let file = target
        .file_name()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_default();
    let dir = target.parent().unwrap_or(Path::new("."));
    const META: &str = ".swp-part.meta";
    let stem = if 1 + file.len() + META.len() <= NAME_MAX {
        file
    } else {
        let hash = crate::digest::Blake2b512::digest(file.as_bytes());
        let tag: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
        let mut keep = NAME_MAX - 1 - META.len() - 1 - tag.len();
        while !file.is_char_boundary(keep) {
            keep -= 1;
        }
        format!("{}~{tag}", &file[..keep])
    };
    let part = dir.join(format!(".{stem}.swp-part"));
    let meta = dir.join(format!(".{stem}{META}"));
    (part, meta)
}

/// An existing destination is replaced only when asked to.
pub(super) async fn check_target(
    jobs: Jobs,
    target: &Path,
    opts: &ReceiveOptions,
) -> Result<(), FileError> {
    if !opts.overwrite
        && jobs
            .on(target, |p| std::fs::symlink_metadata(p))
            .await
            .is_ok()
    {
        return Err(FileError::Exists {
            path: target.to_path_buf(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_names_fit_the_file_system_at_every_name_length() {
        for len in [1usize, 239, 240, 241, 254, 255] {
            for unit in ["x", "é", "€"] {
                let n = (len / unit.len()).max(1);
                let name = unit.repeat(n);
                let (part, meta) = part_paths(&Path::new("out").join(&name));
                for p in [&part, &meta] {
                    let f = p.file_name().unwrap().to_str().unwrap();
                    assert!(f.len() <= NAME_MAX, "{} bytes: {f}", name.len());
                    assert!(f.starts_with('.'));
                }
                assert_eq!(part.parent(), Some(Path::new("out")));
                assert!(part.to_str().unwrap().ends_with(".swp-part"));
                assert!(meta.to_str().unwrap().ends_with(".swp-part.meta"));
                if name.len() <= 240 {
                    assert_eq!(
                        part.file_name().unwrap().to_str().unwrap(),
                        format!(".{name}.swp-part")
                    );
                }
                // The same every time (a resume finds them), and another
                // long name gets others.
                assert_eq!(part_paths(&Path::new("out").join(&name)).0, part);
                let other = format!("{}y", &name[..name.len() - unit.len()]);
                assert_ne!(part_paths(&Path::new("out").join(&other)).0, part);
            }
        }
    }
}
