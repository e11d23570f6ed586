//! Disk and hashing off the network's path.
//!
//! One BLAKE2b-512 pass costs about as much CPU per MiB as the session
//! itself (1.5 ms here), and a file's reads and writes wait on the disk.
//! Done in line they stall the task that feeds or drains the session. Here
//! they run as blocking jobs beside it. The sender's next chunk is read and
//! hashed while the last one goes into the session ([`ReadAhead`]). The
//! receiver's last batch is written and hashed while the next one arrives
//! ([`WriteBehind`]).
//!
//! One job at a time per transfer, because a hash is sequential. Each job
//! is at most [`CHUNK`] bytes. Jobs are short on purpose: a paused-clock
//! test runtime holds its clock while a blocking job runs, so a job that
//! waited on the network would stop simulated time.
//!
//! A receiver's file is also written back to the disk while it arrives:
//! every [`WRITEBACK_EVERY`] bytes a second job starts a `sync_data` of
//! what is written so far, so the sync that makes the whole file durable
//! at the end waits only for the tail (for a 512 MiB file here: 10 ms
//! instead of 160 ms of an otherwise idle machine).

use super::CHUNK;
use super::hold::PartFile;
use super::jobs::{Job, Jobs};
use crate::digest::Blake2b512;
use bytes::Bytes;
use std::io::{self, Read, Write};

/// What a [`ReadAhead`] job hands back: the file, the hash so far (if
/// hashing) and the chunk read.
type ReadChunk = (std::fs::File, Option<Blake2b512>, Bytes);

/// A file's bytes from where it is positioned, `len` of them, read (and
/// hashed, if asked) one chunk ahead of the caller.
pub(super) struct ReadAhead {
    jobs: Jobs,
    job: Option<Job<ReadChunk>>,
    /// Bytes not yet asked of a job.
    left: u64,
    /// What the running job was asked for.
    asked: u64,
    /// The hash, once every job is done.
    done: Option<Blake2b512>,
    /// The file's path, for the tests' stalled disk.
    #[cfg(any(test, feature = "sim"))]
    path: std::sync::Arc<std::path::Path>,
}

impl ReadAhead {
    /// Starts reading the first chunk of `file` (opened from `path`) at
    /// once, hashing into `hasher` (`None`: no hashing, for a sender whose
    /// digest is already known), with `jobs`.
    pub(super) fn start(
        jobs: Jobs,
        file: std::fs::File,
        path: &std::path::Path,
        hasher: Option<Blake2b512>,
        len: u64,
    ) -> ReadAhead {
        #[cfg(not(any(test, feature = "sim")))]
        let _ = path;
        let mut r = ReadAhead {
            jobs,
            job: None,
            left: len,
            asked: 0,
            done: None,
            #[cfg(any(test, feature = "sim"))]
            path: path.into(),
        };
        r.spawn(file, hasher);
        r
    }

    fn spawn(&mut self, mut file: std::fs::File, mut hasher: Option<Blake2b512>) {
        if self.left == 0 {
            self.done = hasher;
            return;
        }
        let want = self.left.min(CHUNK as u64);
        self.left -= want;
        self.asked = want;
        #[cfg(any(test, feature = "sim"))]
        let path = self.path.clone();
        self.job = Some(self.jobs.spawn(move || {
            #[cfg(any(test, feature = "sim"))]
            super::hold::stall::before(&path, super::hold::stall::Op::Read);
            // `read_to_end` reads a file straight into the spare capacity:
            // no zeroing, one copy from the page cache.
            let mut buf = Vec::with_capacity(want as usize);
            (&mut file).take(want).read_to_end(&mut buf)?;
            if let Some(h) = hasher.as_mut() {
                h.update(&buf);
            }
            Ok((file, hasher, Bytes::from(buf)))
        }));
    }

    /// The next chunk, and the read of the one after it started; `None` at
    /// the end. A chunk shorter than asked (the file shrank) is the last.
    /// Cancel-safe: dropped while a read runs, the read is still there.
    pub(super) async fn next(&mut self) -> io::Result<Option<Bytes>> {
        if let Some(job) = self.job.as_mut() {
            job.settle().await;
        }
        let Some(job) = self.job.take() else {
            return Ok(None);
        };
        let (file, hasher, chunk) = job.join().await?;
        if (chunk.len() as u64) < self.asked {
            self.left = 0;
        }
        self.spawn(file, hasher);
        Ok(Some(chunk))
    }

    /// The hash of everything read (after [`next`](Self::next) said
    /// `None`; an empty one if it was started without a hasher).
    pub(super) fn into_hasher(self) -> Blake2b512 {
        self.done.unwrap_or_else(Blake2b512::new)
    }
}

/// What a [`WriteBehind`] job hands back: the file (if any) and the hash.
type Written = (Option<PartFile>, Blake2b512);

/// How many bytes a [`WriteBehind`] writes between two writebacks it
/// starts beside its writes.
pub(super) const WRITEBACK_EVERY: u64 = 32 << 20;

/// Chunks for a file (optional) and a hash, written and hashed by one
/// blocking job per batch of about [`CHUNK`] bytes while the caller goes
/// on receiving.
pub(super) struct WriteBehind {
    jobs: Jobs,
    idle: Option<Written>,
    job: Option<Job<Written>>,
    batch: Vec<Bytes>,
    batched: usize,
    /// Bytes handed to write jobs since the last writeback started.
    unsynced: u64,
    /// A `sync_data` of what was written before it started, running
    /// beside the writes. Its error is this writer's error: the same open
    /// file reports a failed writeback only once, so it must not be lost.
    writeback: Option<Job<()>>,
    /// Writebacks started (for tests).
    writebacks: u32,
}

impl WriteBehind {
    /// Writes to `file` (if any, from where it is positioned) and hashes
    /// into `hasher`, with `jobs`.
    pub(super) fn new(jobs: Jobs, file: Option<PartFile>, hasher: Blake2b512) -> WriteBehind {
        WriteBehind {
            jobs,
            idle: Some((file, hasher)),
            job: None,
            batch: Vec::new(),
            batched: 0,
            unsynced: 0,
            writeback: None,
            writebacks: 0,
        }
    }

    /// Takes `chunk`; once a batch is full, or when no more data is at
    /// hand (`more` false: a trickling sender, whose bytes should reach the
    /// disk now rather than wait in memory), waits for the previous job (the
    /// error of a failed write shows here) and starts the next.
    pub(super) async fn push(&mut self, chunk: Bytes, more: bool) -> io::Result<()> {
        self.batched += chunk.len();
        self.batch.push(chunk);
        if self.batched >= CHUNK || !more {
            self.submit().await?;
        }
        Ok(())
    }

    /// Whether a job (a write or a writeback) is still running: dropping
    /// the writer now leaves it to finish on its own.
    pub(super) fn is_busy(&self) -> bool {
        let running = |j: &Option<Job<_>>| j.as_ref().is_some_and(|j| !j.is_finished());
        running(&self.job) || self.writeback.as_ref().is_some_and(|w| !w.is_finished())
    }

    /// The previous job's file and hash. Cancel-safe: dropped while the job
    /// runs, the job is still there.
    async fn wait(&mut self) -> io::Result<Written> {
        if let Some(job) = self.job.as_mut() {
            job.settle().await;
        }
        match (self.job.take(), self.idle.take()) {
            (Some(job), _) => job.join().await,
            (None, Some(idle)) => Ok(idle),
            (None, None) => Err(io::Error::other("an earlier write failed")),
        }
    }

    /// Starts writing what is batched now.
    async fn submit(&mut self) -> io::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        // Every wait comes before the file is taken out of its job, so a
        // push dropped while it waits loses nothing.
        if self.writeback.as_ref().is_some_and(|w| w.is_finished()) {
            self.end_writeback().await?;
        }
        let (mut file, mut hasher) = self.wait().await?;
        if self.writeback.is_none() && self.unsynced >= WRITEBACK_EVERY {
            // Only a head start: without a second handle (no descriptor
            // left) the closing sync does it all, as before.
            if let Some(Ok(f)) = file.as_ref().map(PartFile::try_clone) {
                self.writeback = Some(self.jobs.spawn(move || f.sync_data()));
                self.writebacks += 1;
                self.unsynced = 0;
            }
        }
        let batch = std::mem::take(&mut self.batch);
        self.unsynced += self.batched as u64;
        self.batched = 0;
        self.job = Some(self.jobs.spawn(move || {
            for c in &batch {
                if let Some(f) = file.as_mut() {
                    f.write_all(c)?;
                }
                hasher.update(c);
            }
            Ok((file, hasher))
        }));
        Ok(())
    }

    /// Writes and hashes what is left; the file (not yet synced) and the
    /// hash of everything pushed.
    pub(super) async fn finish(mut self) -> io::Result<Written> {
        self.submit().await?;
        let written = self.wait().await;
        self.end_writeback().await?;
        written
    }

    /// Waits for the running writeback, if any, and reports its error.
    async fn end_writeback(&mut self) -> io::Result<()> {
        if let Some(w) = self.writeback.as_mut() {
            w.settle().await;
        }
        match self.writeback.take() {
            Some(w) => w.join().await,
            None => Ok(()),
        }
    }

    /// How its jobs run.
    pub(super) fn jobs(&self) -> Jobs {
        self.jobs
    }

    /// [`finish`](Self::finish) for a writer made with a file.
    pub(super) async fn finish_file(self) -> io::Result<(PartFile, Blake2b512)> {
        match self.finish().await? {
            (Some(f), h) => Ok((f, h)),
            (None, _) => Err(io::Error::other("the writer was made without a file")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize) -> Vec<u8> {
        (0..len as u64).map(crate::testkit::pattern_byte).collect()
    }

    fn temp(name: &str, content: &[u8]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("swp-behind-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("f");
        std::fs::write(&p, content).unwrap();
        p
    }

    /// Every length and offset around a chunk's edges: the chunks are the
    /// file's bytes from the offset, and the hash continues the one given.
    #[tokio::test]
    async fn read_ahead_gives_exactly_the_bytes_asked_and_their_hash() {
        let all = data(3 * CHUNK + 5);
        let path = temp("read", &all);
        for (jobs, (start, len)) in [Jobs::THREADS, Jobs::INLINE].into_iter().flat_map(|j| {
            [
                (0, 0),
                (0, 1),
                (0, CHUNK - 1),
                (0, CHUNK),
                (0, CHUNK + 1),
                (1, 3 * CHUNK + 4),
                (CHUNK - 1, 2),
                (CHUNK, CHUNK),
            ]
            .map(|c| (j, c))
        }) {
            let mut f = std::fs::File::open(&path).unwrap();
            std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(start as u64)).unwrap();
            let prefix = Blake2b512::new().chain_update(&all[..start]);
            let mut r = ReadAhead::start(jobs, f, &path, Some(prefix), len as u64);
            let mut got = Vec::new();
            while let Some(c) = r.next().await.unwrap() {
                assert!(c.len() <= CHUNK);
                got.extend_from_slice(&c);
            }
            assert!(got == all[start..start + len], "{start}+{len} {jobs:?}");
            assert_eq!(
                r.into_hasher().finalize(),
                Blake2b512::digest(&all[..start + len]),
                "{start}+{len} {jobs:?}"
            );
        }
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    /// A file shorter than asked ends early, with what it has: the caller
    /// sees the shortfall and says the source shrank.
    #[tokio::test]
    async fn read_ahead_of_a_file_shorter_than_asked_ends_with_what_is_there() {
        let all = data(CHUNK + 10);
        let path = temp("short", &all);
        let f = std::fs::File::open(&path).unwrap();
        let mut r = ReadAhead::start(
            Jobs::THREADS,
            f,
            &path,
            Some(Blake2b512::new()),
            4 * CHUNK as u64,
        );
        let mut got = 0;
        while let Some(c) = r.next().await.unwrap() {
            got += c.len();
        }
        assert_eq!(got, CHUNK + 10);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    /// Any chunking, with and without a file: the file holds the bytes in
    /// order and the hash is theirs.
    #[tokio::test]
    async fn write_behind_writes_and_hashes_every_chunk_in_order() {
        let all = data(3 * CHUNK + 7);
        let steps = [1usize, 4096, CHUNK - 1, CHUNK, CHUNK + 1, usize::MAX];
        for (jobs, step) in [Jobs::THREADS, Jobs::INLINE]
            .into_iter()
            .flat_map(|j| steps.map(|s| (j, s)))
        {
            let path = temp(&format!("write-{step}"), b"");
            let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            let mut w = WriteBehind::new(jobs, Some(f.into()), Blake2b512::new());
            let mut hash_only = WriteBehind::new(jobs, None, Blake2b512::new());
            // Few one-byte chunks (a million pushes would only be slow).
            let end = if step == 1 { 5000 } else { all.len() };
            for c in all[..end].chunks(step.min(end.max(1))) {
                w.push(Bytes::copy_from_slice(c), true).await.unwrap();
                hash_only
                    .push(Bytes::copy_from_slice(c), true)
                    .await
                    .unwrap();
            }
            let (f, h) = w.finish_file().await.unwrap();
            drop(f);
            assert!(
                std::fs::read(&path).unwrap() == all[..end],
                "by {step} {jobs:?}"
            );
            let want = Blake2b512::digest(&all[..end]);
            assert_eq!(h.finalize(), want, "by {step} {jobs:?}");
            let (none, h) = hash_only.finish().await.unwrap();
            assert!(none.is_none());
            assert_eq!(h.finalize(), want, "by {step} {jobs:?}, hash only");
            std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
        }
    }

    /// A file written back while it arrives: a writeback starts once
    /// [`WRITEBACK_EVERY`] bytes are written (not before), the bytes and
    /// the hash are unchanged by it, and a writer without a file starts
    /// none.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_long_file_is_written_back_while_it_arrives() {
        let every = WRITEBACK_EVERY as usize;
        let all = data(2 * every + CHUNK + 3);
        for (len, at_least) in [(every, 0), (every + CHUNK + 1, 1), (all.len(), 1)] {
            let path = temp(&format!("writeback-{len}"), b"");
            let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            let mut w = WriteBehind::new(Jobs::THREADS, Some(f.into()), Blake2b512::new());
            let mut hash_only = WriteBehind::new(Jobs::THREADS, None, Blake2b512::new());
            for c in all[..len].chunks(CHUNK) {
                w.push(Bytes::copy_from_slice(c), true).await.unwrap();
                hash_only
                    .push(Bytes::copy_from_slice(c), true)
                    .await
                    .unwrap();
            }
            let started = w.writebacks;
            if at_least == 0 {
                assert_eq!(started, 0, "{len} bytes: nothing to write back yet");
            } else {
                assert!(started >= at_least, "{len} bytes: {started} writebacks");
            }
            assert_eq!(hash_only.writebacks, 0);
            let (f, h) = w.finish_file().await.unwrap();
            drop(f);
            assert!(std::fs::read(&path).unwrap() == all[..len], "{len} bytes");
            assert_eq!(h.finalize(), Blake2b512::digest(&all[..len]));
            std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
        }
    }

    #[tokio::test]
    async fn a_hash_only_writer_has_no_file_to_give() {
        let w = WriteBehind::new(Jobs::THREADS, None, Blake2b512::new());
        assert!(w.finish_file().await.is_err());
    }

    /// A write that fails (here: a file opened read-only) is an error at
    /// the next batch or at the end, never a panic and never lost.
    #[tokio::test]
    async fn a_failed_write_is_reported() {
        for jobs in [Jobs::THREADS, Jobs::INLINE] {
            let path = temp("readonly", b"");
            let f = std::fs::File::open(&path).unwrap();
            let mut w = WriteBehind::new(jobs, Some(f.into()), Blake2b512::new());
            let mut failed = false;
            for _ in 0..4 {
                if w.push(Bytes::from(vec![1u8; CHUNK]), true).await.is_err() {
                    failed = true;
                    break;
                }
            }
            failed |= w.finish().await.is_err();
            assert!(failed, "writing to a read-only file must fail ({jobs:?})");
            std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
        }
    }
}
