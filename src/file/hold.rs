//! One transfer at a time writes into a part file.
//!
//! A receiver takes an exclusive lock on `.NAME.swp-part` (an advisory
//! `flock` on Unix) before it hashes the part for a resume or truncates it,
//! and the lock goes only when the last write job writing into it has
//! ended. Without it, two receives into one destination (two `swp recv`
//! into one directory, two clients putting one name to a service) write
//! into one file; and a receive that failed or was dropped while a write
//! job was still running on a slow disk lets that job write into the part
//! after a new attempt has hashed or truncated it: bytes the new attempt
//! never verified, in a file it then presents as complete.
//!
//! Whoever finds a part locked: if the holder is a transfer of this
//! process that has ended and only its write jobs still hold the part, it
//! waits for them (at most [`PART_WAIT`]); a transfer still running, here
//! or in another process, is a [`FileError::Busy`] at once. Where the file
//! system has no locks, transfers of this process still exclude each
//! other.

use super::jobs::Jobs;
use super::*;
use std::collections::HashMap;
use std::fs::{File, TryLockError};
use std::io;
use std::sync::{Arc, LazyLock, Mutex};
use tokio::sync::watch;

/// The parts this process holds, by canonical path; the flag says the
/// transfer has ended and only its write jobs still hold the part.
/// Waiters wake when the entry's sender is dropped.
type Registry = HashMap<PathBuf, Arc<watch::Sender<bool>>>;
static HELD: LazyLock<Mutex<Registry>> = LazyLock::new(|| Mutex::new(HashMap::new()));

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    // A panic while holding it leaves the map consistent (single inserts
    // and removes).
    HELD.lock().unwrap_or_else(|p| p.into_inner())
}

/// This process's hold on one part: dropped (removing its entry) after the
/// last descriptor of the part is closed, because every [`PartFile`] drops
/// its file before its `Arc<Held>`.
struct Held {
    path: PathBuf,
    flag: Arc<watch::Sender<bool>>,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut held = registry();
        if held
            .get(&self.path)
            .is_some_and(|f| Arc::ptr_eq(f, &self.flag))
        {
            held.remove(&self.path);
        }
    }
}

/// A part file held for writing (the lock and this process's entry go
/// when every handle of it is dropped).
pub(super) struct PartFile {
    // Field order matters: the descriptor closes before the hold ends.
    file: File,
    held: Arc<Held>,
}

/// Ends a [`PartFile`]'s transfer when dropped (or at [`end`](Self::end)):
/// from then on, a new transfer into the part waits for the jobs still
/// holding it (a write, a sync, a truncation on a slow disk) instead of
/// failing. A receiver keeps one for as long as its transfer runs, so
/// every way out (a failure, giving up on a stalled disk, a cancelled
/// future, success) ends it in one place.
pub(super) struct Ender(Arc<Held>);

impl Ender {
    pub(super) fn end(&self) {
        self.0.flag.send_replace(true);
    }
}

impl Drop for Ender {
    fn drop(&mut self) {
        self.end();
    }
}

impl PartFile {
    /// The file, for what is not a write (setting the length, seeking).
    pub(super) fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// Its length now.
    pub(super) fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    pub(super) fn sync_data(&self) -> io::Result<()> {
        #[cfg(any(test, feature = "sim"))]
        stall::before(&self.held.path, stall::Op::Sync);
        self.file.sync_data()
    }

    pub(super) fn sync_all(&self) -> io::Result<()> {
        #[cfg(any(test, feature = "sim"))]
        stall::before(&self.held.path, stall::Op::Sync);
        self.file.sync_all()
    }

    /// A second handle (another descriptor of the same open file: the lock
    /// is shared and held until both are closed).
    pub(super) fn try_clone(&self) -> io::Result<PartFile> {
        Ok(PartFile {
            file: self.file.try_clone()?,
            held: self.held.clone(),
        })
    }

    pub(super) fn ender(&self) -> Ender {
        Ender(self.held.clone())
    }
}

#[cfg(test)]
impl From<File> for PartFile {
    /// A file no other transfer knows of (unit tests of the writers).
    fn from(file: File) -> PartFile {
        PartFile {
            file,
            held: Arc::new(Held {
                path: PathBuf::new(),
                flag: Arc::new(watch::channel(false).0),
            }),
        }
    }
}

impl io::Write for PartFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        #[cfg(any(test, feature = "sim"))]
        stall::before(&self.held.path, stall::Op::Write);
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// What one attempt to take a part found.
enum Took {
    Held(PartFile),
    /// No part (and not asked to create one).
    Nothing,
    /// Held by an ended transfer of this process: wait for this to close.
    Finishing(watch::Receiver<bool>),
    /// Held by a transfer still running (here, or in another process when
    /// `here` is false).
    Running {
        here: bool,
    },
    /// The path named another file by the time the lock was taken (the
    /// holder removed or replaced it): try again.
    Moved,
}

/// Takes the part at `path` for writing, if there is one (module docs:
/// waits for an ended transfer of this process still writing into it,
/// fails at once if a running transfer holds it).
pub(super) async fn hold_existing(jobs: Jobs, path: &Path) -> Result<Option<PartFile>, FileError> {
    hold(jobs, path, false).await
}

/// Takes the part at `path` for writing, creating it (empty) if there is
/// none; the rules of [`hold_existing`].
pub(super) async fn hold_or_create(jobs: Jobs, path: &Path) -> Result<PartFile, FileError> {
    hold(jobs, path, true).await?.ok_or_else(|| FileError::Io {
        path: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::NotFound, "created, then gone"),
    })
}

/// How many times a take may find the part removed or replaced under it
/// (its holder let go of it meanwhile) before it gives up.
const MOVED_TRIES: u32 = 8;

async fn hold(jobs: Jobs, path: &Path, create: bool) -> Result<Option<PartFile>, FileError> {
    let deadline = tokio::time::Instant::now() + PART_WAIT;
    let mut moved = 0;
    loop {
        let took = jobs
            .on(path, move |p| take(p, create))
            .await
            .map_err(io_err(path))?;
        match took {
            Took::Held(f) => return Ok(Some(f)),
            Took::Nothing => return Ok(None),
            Took::Moved => {
                moved += 1;
                if moved == MOVED_TRIES {
                    return Err(FileError::Busy {
                        path: path.to_path_buf(),
                        why: "it was removed or replaced under each of 8 attempts to take it",
                    });
                }
            }
            Took::Running { here } => {
                return Err(FileError::Busy {
                    path: path.to_path_buf(),
                    why: if here {
                        "another transfer of this process is receiving into it"
                    } else {
                        "another process is receiving into it"
                    },
                });
            }
            Took::Finishing(mut gone) => {
                #[cfg(any(test, feature = "sim"))]
                stall::waiting(path);
                let closed = async { while gone.changed().await.is_ok() {} };
                if tokio::time::timeout_at(deadline, closed).await.is_err() {
                    return Err(FileError::Busy {
                        path: path.to_path_buf(),
                        why: "an earlier receive into it ended, and its last write has not returned (a stalled disk?)",
                    });
                }
            }
        }
    }
}

/// One attempt, in a blocking job: open, lock, check, register.
fn take(path: &Path, create: bool) -> io::Result<Took> {
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if !create && e.kind() == io::ErrorKind::NotFound => return Ok(Took::Nothing),
        Err(e) => return Err(e),
    };
    #[cfg(test)]
    seams::at(path, seams::Stage::Opened);
    let key = match std::fs::canonicalize(path) {
        Ok(k) => k,
        // Removed since it was opened (by its holder): try again.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Took::Moved),
        Err(e) => return Err(e),
    };
    #[cfg(test)]
    seams::at(path, seams::Stage::Named);
    let mut held = registry();
    #[cfg(test)]
    let locked = seams::try_lock(path, &file);
    #[cfg(not(test))]
    let locked = file.try_lock();
    let free = match locked {
        Ok(()) => true,
        Err(TryLockError::WouldBlock) => false,
        // No locks on this file system: this process's own entries still
        // keep its transfers apart.
        Err(TryLockError::Error(e)) => {
            tracing::debug!(path = %path.display(), error = %e, "no file lock; relying on this process's own record");
            !held.contains_key(&key)
        }
    };
    if !free {
        return Ok(match held.get(&key) {
            Some(flag) if *flag.borrow() => Took::Finishing(flag.subscribe()),
            Some(_) => Took::Running { here: true },
            None => Took::Running { here: false },
        });
    }
    if !same_file(path, &file)? {
        return Ok(Took::Moved);
    }
    let flag = Arc::new(watch::channel(false).0);
    held.insert(key.clone(), flag.clone());
    Ok(Took::Held(PartFile {
        file,
        held: Arc::new(Held { path: key, flag }),
    }))
}

/// Whether `path` still names the open `file` (the lock is on the file, so
/// one taken after its holder removed or replaced the path holds nothing).
#[cfg(unix)]
fn same_file(path: &Path, file: &File) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let (a, b) = match std::fs::metadata(path) {
        Ok(m) => (m, file.metadata()?),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    Ok(a.dev() == b.dev() && a.ino() == b.ino())
}

#[cfg(not(unix))]
fn same_file(path: &Path, _: &File) -> io::Result<bool> {
    Ok(path.exists())
}

/// A stalled disk for tests: [`StalledDisk::writes`] holds the next write
/// of a part file below a directory until it is released,
/// [`StalledDisk::syncs`] the next sync of one, [`StalledDisk::reads`] the
/// next chunk read of any file read for a transfer, [`StalledDisk::metadata`]
/// the next other file-system call.
#[cfg(any(test, feature = "sim"))]
pub(crate) mod stall {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Condvar, LazyLock, Mutex};
    use tokio::sync::watch;

    /// Where a stalled call is, and whether a transfer waits for it.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    struct State {
        /// Holding a call (a write, sync or read) now.
        stuck: bool,
        /// The held call has returned.
        returned: bool,
        /// Transfers that waited for an ended one to let go of a part
        /// below the directory.
        waits: u32,
    }

    /// What a gate holds: the first write, sync, read or other file-system
    /// call.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Op {
        Write,
        Sync,
        Read,
        Meta,
    }

    struct Gate {
        dir: PathBuf,
        op: Op,
        state: watch::Sender<State>,
        /// Set by the release; the stalled thread waits on it.
        open: Mutex<bool>,
        opened: Condvar,
        /// Caught one already (only the first is stalled).
        caught: AtomicBool,
    }

    static GATES: LazyLock<Mutex<Vec<Arc<Gate>>>> = LazyLock::new(|| Mutex::new(Vec::new()));

    fn gate_for(path: &Path, op: Option<Op>) -> Option<Arc<Gate>> {
        let gates = GATES.lock().unwrap_or_else(|p| p.into_inner());
        gates
            .iter()
            .find(|g| path.starts_with(&g.dir) && op.is_none_or(|op| op == g.op))
            .cloned()
    }

    /// Called before a write, sync or read of `path` (a part's canonical
    /// path; a read's as the caller named it).
    pub(crate) fn before(path: &Path, op: Op) {
        if GATES.lock().unwrap_or_else(|p| p.into_inner()).is_empty() {
            return;
        }
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let Some(g) = gate_for(&path, Some(op)) else {
            return;
        };
        if g.caught.swap(true, Ordering::SeqCst) {
            return;
        }
        g.state.send_modify(|s| s.stuck = true);
        let mut open = g.open.lock().unwrap();
        while !*open {
            open = g.opened.wait(open).unwrap();
        }
        drop(open);
        g.state.send_modify(|s| {
            s.stuck = false;
            s.returned = true;
        });
    }

    pub(crate) fn waiting(path: &Path) {
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        if let Some(g) = gate_for(&path, None) {
            g.state.send_modify(|s| s.waits += 1);
        }
    }

    /// A disk that stalls the next write, sync, read or other call below one
    /// directory (as a disk that stops answering would) until
    /// [`release`](Self::release) or drop. Also tells when a transfer
    /// waits for an ended one to let go of a part there.
    pub struct StalledDisk {
        gate: Arc<Gate>,
    }

    impl StalledDisk {
        /// Stalls the next part-file write below `dir` (which must exist).
        pub fn writes(dir: &Path) -> StalledDisk {
            Self::gate(dir, Op::Write)
        }

        /// Stalls the next part-file sync below `dir` (which must exist):
        /// a writeback's `sync_data` during the transfer, or the final
        /// `sync_all` before the part is renamed, whichever comes first.
        pub fn syncs(dir: &Path) -> StalledDisk {
            Self::gate(dir, Op::Sync)
        }

        /// Stalls the next chunk read of a file below `dir` (which must
        /// exist): a sender's source, or a part or file hashed for a
        /// resume.
        pub fn reads(dir: &Path) -> StalledDisk {
            Self::gate(dir, Op::Read)
        }

        /// Stalls the next other file-system call on a path below `dir`
        /// (which must exist): creating a directory, reading metadata,
        /// opening and locking the part, writing or removing its meta
        /// file, renaming it.
        pub fn metadata(dir: &Path) -> StalledDisk {
            Self::gate(dir, Op::Meta)
        }

        fn gate(dir: &Path, op: Op) -> StalledDisk {
            let dir = std::fs::canonicalize(dir).expect("the stalled directory exists");
            let gate = Arc::new(Gate {
                dir,
                op,
                state: watch::channel(State::default()).0,
                open: Mutex::new(false),
                opened: Condvar::new(),
                caught: AtomicBool::new(false),
            });
            GATES.lock().unwrap().push(gate.clone());
            StalledDisk { gate }
        }

        async fn until(&self, f: impl Fn(&State) -> bool) {
            let mut rx = self.gate.state.subscribe();
            let _ = rx.wait_for(|s| f(s)).await;
        }

        /// Returns once a call (a write, sync or read) is held.
        pub async fn stuck(&self) {
            self.until(|s| s.stuck).await
        }

        /// Whether a call is held now.
        pub fn is_stuck(&self) -> bool {
            self.gate.state.borrow().stuck
        }

        /// Returns once a transfer waits for the part's earlier holder.
        pub async fn a_transfer_waits(&self) {
            self.until(|s| s.waits > 0).await
        }

        /// Lets the held call go on.
        pub fn release(&self) {
            *self.gate.open.lock().unwrap() = true;
            self.gate.opened.notify_all();
        }

        /// Returns once the held call has returned.
        pub async fn returned(&self) {
            self.until(|s| s.returned).await
        }
    }

    impl Drop for StalledDisk {
        fn drop(&mut self) {
            self.release();
            let mut gates = GATES.lock().unwrap_or_else(|p| p.into_inner());
            gates.retain(|g| !Arc::ptr_eq(g, &self.gate));
        }
    }
}

/// Seams for the unit tests: a file system without locks, and a holder
/// that removes or replaces the part between two steps of [`take`]. Each
/// applies only below the directory it was set for.
#[cfg(test)]
mod seams {
    use std::fs::{File, TryLockError};
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    #[derive(Clone, Copy, PartialEq, Eq)]
    pub(super) enum Stage {
        /// The part is open, not yet named (canonicalized).
        Opened,
        /// Named, not yet locked.
        Named,
    }

    /// Runs at its stage of every take (of the next one only if it
    /// returns false).
    pub(super) type Hook = Box<dyn FnMut() -> bool + Send>;

    struct Seam {
        dir: PathBuf,
        no_locks: bool,
        hook: Option<(Stage, Hook)>,
    }

    static SEAMS: Mutex<Vec<Seam>> = Mutex::new(Vec::new());

    /// Sets the seams below `dir` until the guard drops: `no_locks` makes
    /// every lock fail as on a file system without them; `hook` runs at its
    /// stage of the next take, and of every later one while it returns
    /// true.
    pub(super) fn set(dir: &Path, no_locks: bool, hook: Option<(Stage, Hook)>) -> Guard {
        SEAMS.lock().unwrap().push(Seam {
            dir: dir.to_path_buf(),
            no_locks,
            hook,
        });
        Guard(dir.to_path_buf())
    }

    pub(super) struct Guard(PathBuf);

    impl Drop for Guard {
        fn drop(&mut self) {
            let mut seams = SEAMS.lock().unwrap_or_else(|p| p.into_inner());
            seams.retain(|s| s.dir != self.0);
        }
    }

    pub(super) fn at(path: &Path, stage: Stage) {
        // Taken out to run (it may drop a holder, which takes the
        // registry), put back if it wants to run again.
        let (dir, mut hook) = {
            let mut seams = SEAMS.lock().unwrap();
            let Some(s) = seams.iter_mut().find(|s| path.starts_with(&s.dir)) else {
                return;
            };
            match &s.hook {
                Some((at, _)) if *at == stage => (s.dir.clone(), s.hook.take().unwrap().1),
                _ => return,
            }
        };
        if hook() {
            let mut seams = SEAMS.lock().unwrap();
            if let Some(s) = seams.iter_mut().find(|s| s.dir == dir) {
                s.hook = Some((stage, hook));
            }
        }
    }

    pub(super) fn try_lock(path: &Path, file: &File) -> Result<(), TryLockError> {
        let no_locks = SEAMS
            .lock()
            .unwrap()
            .iter()
            .any(|s| s.no_locks && path.starts_with(&s.dir));
        if no_locks {
            return Err(TryLockError::Error(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "no locks on this file system (a test's seam)",
            )));
        }
        file.try_lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("swp-hold-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(".f.swp-part");
        std::fs::write(&p, b"abc").unwrap();
        p
    }

    /// The part at `p` (3 bytes, free) is taken; a second take while the
    /// first runs is refused, saying so; one after it ended waits for the
    /// last handle to go and takes the same part.
    async fn this_process_refuses_a_running_holder_and_waits_for_an_ended_one(
        jobs: Jobs,
        p: &Path,
    ) {
        let mine = hold_existing(jobs, p).await.unwrap().expect("taken");
        assert_eq!(mine.len().unwrap(), 3);
        let e = hold_or_create(jobs, p).await.err().expect("refused");
        assert!(
            e.to_string().contains("another transfer of this process"),
            "{e}"
        );
        mine.ender().end();
        let (again, ()) = tokio::join!(hold_or_create(jobs, p), async { drop(mine) });
        let again = again.expect("taken once the ended holder let go");
        assert_eq!(again.len().unwrap(), 3, "the same part");
    }

    /// A lock this process does not know of (another process's, as the
    /// kernel sees it) is refused at once, saying so; once it goes, the
    /// part is taken; a running holder of this process is refused; an ended
    /// one is waited for.
    #[tokio::test]
    async fn a_part_is_refused_waited_for_or_taken_by_who_holds_it() {
        for jobs in [Jobs::THREADS, Jobs::INLINE] {
            let p = part(&format!("{}", jobs == Jobs::INLINE));
            let other = File::options().write(true).open(&p).unwrap();
            other.lock().unwrap();
            let e = hold_existing(jobs, &p).await.err().expect("refused");
            assert!(e.to_string().contains("another process"), "{e}");
            drop(other);
            this_process_refuses_a_running_holder_and_waits_for_an_ended_one(jobs, &p).await;
            let gone = p.with_file_name("nothing");
            assert!(hold_existing(jobs, &gone).await.unwrap().is_none());
            std::fs::remove_dir_all(p.parent().unwrap()).unwrap();
        }
    }

    /// On a file system without locks this process's own record still
    /// keeps its transfers apart: a running holder is refused, an ended
    /// one waited for, a free part taken.
    #[tokio::test]
    async fn without_file_locks_this_process_still_keeps_its_transfers_apart() {
        for jobs in [Jobs::THREADS, Jobs::INLINE] {
            let p = part(&format!("nolocks-{}", jobs == Jobs::INLINE));
            let _seam = seams::set(p.parent().unwrap(), true, None);
            this_process_refuses_a_running_holder_and_waits_for_an_ended_one(jobs, &p).await;
            assert!(hold_existing(jobs, &p).await.unwrap().is_some());
            std::fs::remove_dir_all(p.parent().unwrap()).unwrap();
        }
    }

    /// An ended holder that removes or replaces the part, and lets go,
    /// while a new attempt is between opening it and locking it: the new
    /// attempt does not take the old file (a lock on a file no longer at
    /// the path keeps nobody out, and its writes would go nowhere); it
    /// tries again and holds what the path names now (a new empty part,
    /// the replacement, or nothing).
    #[cfg(unix)]
    #[tokio::test]
    async fn a_part_removed_or_replaced_under_a_new_attempt_is_taken_as_the_path_names_it_now() {
        use std::os::unix::fs::MetadataExt;
        for (case, stage) in [
            ("removed-opened", seams::Stage::Opened),
            ("removed-named", seams::Stage::Named),
            ("replaced-named", seams::Stage::Named),
        ] {
            for create in [true, false] {
                let p = part(&format!("{case}-{create}"));
                let old = hold_existing(Jobs::INLINE, &p).await.unwrap().unwrap();
                old.ender().end();
                let replaced = case.starts_with("replaced");
                let q = p.clone();
                let mut old = Some(old);
                let holder_lets_go: seams::Hook = Box::new(move || {
                    if replaced {
                        let other = q.with_file_name("other");
                        std::fs::write(&other, b"replacement").unwrap();
                        std::fs::rename(&other, &q).unwrap();
                    } else {
                        std::fs::remove_file(&q).unwrap();
                    }
                    drop(old.take());
                    false
                });
                let _seam = seams::set(p.parent().unwrap(), false, Some((stage, holder_lets_go)));
                let took = hold(Jobs::INLINE, &p, create).await.unwrap();
                let at_path = std::fs::metadata(&p).ok();
                match (&took, &at_path) {
                    (Some(f), Some(m)) => {
                        let held = f.file.metadata().unwrap();
                        assert_eq!(
                            (held.dev(), held.ino()),
                            (m.dev(), m.ino()),
                            "{case}: the file at the path"
                        );
                        let want = if replaced { 11 } else { 0 };
                        assert_eq!(f.len().unwrap(), want, "{case} create={create}");
                    }
                    (None, None) => assert!(!create && !replaced, "{case}: nothing taken"),
                    _ => panic!(
                        "{case} create={create}: took {}, path {at_path:?}",
                        took.is_some()
                    ),
                }
                drop(took);
                std::fs::remove_dir_all(p.parent().unwrap()).unwrap();
            }
        }
    }

    /// A part replaced under every attempt to take it (a pathological
    /// holder) is given up on after `MOVED_TRIES` attempts, saying so,
    /// instead of spinning.
    #[tokio::test]
    async fn a_part_replaced_under_every_attempt_is_given_up_on() {
        use std::sync::atomic::{AtomicU32, Ordering};
        let p = part("replaced-always");
        let tries = Arc::new(AtomicU32::new(0));
        let (q, counted) = (p.clone(), tries.clone());
        let replacing: seams::Hook = Box::new(move || {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            let other = q.with_file_name(format!("other{n}"));
            std::fs::write(&other, b"replacement").unwrap();
            std::fs::rename(&other, &q).unwrap();
            true
        });
        let _seam = seams::set(
            p.parent().unwrap(),
            false,
            Some((seams::Stage::Named, replacing)),
        );
        let e = hold_or_create(Jobs::INLINE, &p)
            .await
            .err()
            .expect("given up");
        assert!(matches!(e, FileError::Busy { .. }), "{e}");
        assert!(
            e.to_string()
                .contains(&format!("each of {MOVED_TRIES} attempts")),
            "{e}"
        );
        assert_eq!(tries.load(Ordering::SeqCst), MOVED_TRIES);
        std::fs::remove_dir_all(p.parent().unwrap()).unwrap();
    }

    /// An ended holder whose last write returns just inside [`PART_WAIT`]
    /// is waited for; one that outlasts it is `Busy`, saying the write
    /// has not returned.
    #[tokio::test(start_paused = true)]
    async fn an_ended_holder_is_waited_for_up_to_the_budget_and_no_longer() {
        for (hold_for, taken) in [
            (PART_WAIT - Duration::from_millis(1), true),
            (PART_WAIT + Duration::from_millis(1), false),
        ] {
            let p = part(&format!("budget-{taken}"));
            let mine = hold_existing(Jobs::INLINE, &p).await.unwrap().unwrap();
            mine.ender().end();
            let writes_on = async {
                tokio::time::sleep(hold_for).await;
                drop(mine);
            };
            let (again, ()) = tokio::join!(hold_existing(Jobs::INLINE, &p), writes_on);
            match again {
                Ok(f) => assert!(taken && f.is_some(), "held {hold_for:?}"),
                Err(e) => {
                    assert!(!taken, "held {hold_for:?}: {e}");
                    assert!(e.to_string().contains("has not returned"), "{e}");
                }
            }
            std::fs::remove_dir_all(p.parent().unwrap()).unwrap();
        }
    }
}
