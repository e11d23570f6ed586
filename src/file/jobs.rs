//! Where the file layer's blocking work runs: every disk call and every
//! hash pass goes through [`Jobs`].
//!
//! Over a real transport they run on tokio's blocking threads, beside the
//! task that feeds or drains the session. Over a simulated one (a
//! transport with a [`replay_seed`](crate::transport::Transport::replay_seed):
//! SimNet on a paused clock) they run in line, on the caller's task. A
//! blocking thread finishes at some real-time moment, and the task waiting
//! for it then runs somewhere among the others due at the same virtual
//! instant; a different order sends different packets in a different
//! order, and the network's seeded loss falls on other packets. In line,
//! one seed replays one run, packet for packet, so a failing seed
//! reproduces its failure (the overlap of disk, hashing and network that
//! the threads buy is a real-transport concern; the same code paths run
//! in both).

use crate::session::Session;
use std::io;
use std::path::Path;
use tokio::task::JoinHandle;

/// Runs blocking jobs: on blocking threads, or in line for a simulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Jobs {
    inline: bool,
}

impl Jobs {
    /// On tokio's blocking threads.
    #[cfg(test)]
    pub(super) const THREADS: Jobs = Jobs { inline: false };
    /// On the caller's task, as they are started.
    #[cfg(test)]
    pub(super) const INLINE: Jobs = Jobs { inline: true };

    /// What suits `session`'s transport.
    pub(super) fn of(session: &Session) -> Jobs {
        Jobs {
            inline: session.replayed(),
        }
    }

    /// Starts `f`; its result is the [`Job`]'s.
    pub(super) fn spawn<T: Send + 'static>(
        self,
        f: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> Job<T> {
        if self.inline {
            Job(State::Done(Box::new(f())))
        } else {
            Job(State::Running(tokio::task::spawn_blocking(f)))
        }
    }

    /// Runs `f` and waits for it.
    pub(super) async fn run<T: Send + 'static>(
        self,
        f: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        self.spawn(f).join().await
    }

    /// Runs `f` on (a copy of) `path` and waits for it: the file system
    /// calls, `jobs.on(p, |p| std::fs::metadata(p))`.
    pub(super) async fn on<T: Send + 'static>(
        self,
        path: &Path,
        f: impl FnOnce(&Path) -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let path = path.to_path_buf();
        self.run(move || {
            #[cfg(any(test, feature = "sim"))]
            super::hold::stall::before(&path, super::hold::stall::Op::Meta);
            f(&path)
        })
        .await
    }
}

/// A started job.
pub(super) struct Job<T>(State<T>);

enum State<T> {
    Running(JoinHandle<io::Result<T>>),
    /// Ran in line (boxed: a hasher's state is large, and a running job
    /// holds only a handle).
    Done(Box<io::Result<T>>),
}

impl<T> Job<T> {
    /// Whether waiting for it would return at once.
    pub(super) fn is_finished(&self) -> bool {
        match &self.0 {
            State::Running(h) => h.is_finished(),
            State::Done(_) => true,
        }
    }

    /// Waits until it has finished, keeping its result for
    /// [`join`](Self::join). Cancel-safe: dropped while waiting, the job
    /// is still there.
    pub(super) async fn settle(&mut self) {
        if let State::Running(h) = &mut self.0 {
            self.0 = State::Done(Box::new(joined(h.await)));
        }
    }

    /// Its result; a panic or cancellation of the job is an I/O error.
    pub(super) async fn join(self) -> io::Result<T> {
        match self.0 {
            State::Running(h) => joined(h.await),
            State::Done(r) => *r,
        }
    }
}

/// A blocking task's result; its panic or cancellation is an I/O error.
fn joined<T>(r: Result<io::Result<T>, tokio::task::JoinError>) -> io::Result<T> {
    r.unwrap_or_else(|e| Err(io::Error::other(format!("file worker failed: {e}"))))
}

impl Jobs {
    /// `f` as an async reader whose reads run as these jobs do.
    pub(super) fn reader(self, f: std::fs::File) -> Box<dyn tokio::io::AsyncRead + Unpin + Send> {
        if self.inline {
            Box::new(InlineRead(f))
        } else {
            Box::new(tokio::fs::File::from_std(f))
        }
    }
}

/// A file read in line, for a simulation's [`Jobs`] (tokio's file reads on
/// a blocking thread).
struct InlineRead(std::fs::File);

impl tokio::io::AsyncRead for InlineRead {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        use std::io::Read;
        let n = self.0.read(buf.initialize_unfilled())?;
        buf.advance(n);
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn both_kinds_give_the_jobs_result_and_its_error() {
        for jobs in [Jobs::THREADS, Jobs::INLINE] {
            assert_eq!(jobs.run(|| Ok(7)).await.unwrap(), 7);
            let e = jobs
                .on(Path::new("/nonexistent/swp-jobs-test"), |p| {
                    std::fs::metadata(p)
                })
                .await
                .unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::NotFound, "{jobs:?}");
            let job = jobs.spawn(|| Err::<(), _>(io::Error::other("disk full")));
            assert_eq!(job.join().await.unwrap_err().to_string(), "disk full");
        }
    }

    #[tokio::test]
    async fn an_inline_job_has_run_when_it_is_started() {
        let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let r = ran.clone();
        let job = Jobs::INLINE.spawn(move || {
            r.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        });
        assert!(ran.load(std::sync::atomic::Ordering::SeqCst));
        assert!(job.is_finished());
    }

    #[tokio::test]
    async fn a_panicking_job_is_an_error_not_a_panic() {
        let job = Jobs::THREADS.spawn(|| -> io::Result<()> { panic!("boom") });
        let e = job.join().await.unwrap_err().to_string();
        assert!(e.starts_with("file worker failed"), "{e}");
    }

    #[tokio::test]
    async fn both_kinds_of_reader_read_the_whole_file() {
        let dir = std::env::temp_dir().join(format!("swp-inline-read-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("f");
        let data: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
        std::fs::write(&p, &data).unwrap();
        for jobs in [Jobs::THREADS, Jobs::INLINE] {
            let mut got = Vec::new();
            jobs.reader(std::fs::File::open(&p).unwrap())
                .read_to_end(&mut got)
                .await
                .unwrap();
            assert!(got == data, "{jobs:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
