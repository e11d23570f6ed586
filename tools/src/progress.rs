//! What a person sees while a file moves: a bar as wide as the terminal
//! (bytes, rate, ETA), a spinner while what is already there is hashed or
//! while a stream of unknown length flows, a plain line every few seconds
//! when stderr is not a terminal, nothing with --quiet.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};
use swp::file::Progress;
use tokio::sync::watch;

/// A transfer being shown; [`Shown::done`] ends it and times it.
pub struct Shown {
    tx: watch::Sender<Progress>,
    task: tokio::task::JoinHandle<()>,
    start: Instant,
}

/// How a shown transfer ended: its last progress and its duration.
pub struct Summary {
    pub last: Progress,
    pub secs: f64,
}

impl Shown {
    /// Starts showing a transfer labelled `label` (on stderr).
    pub fn start(label: String, quiet: bool) -> Shown {
        let (tx, rx) = watch::channel(Progress::default());
        let task = tokio::spawn(async move {
            if quiet {
                return;
            }
            if std::io::stderr().is_terminal() {
                terminal(rx, label).await
            } else {
                lines(rx, label).await
            }
        });
        Shown {
            tx,
            task,
            start: Instant::now(),
        }
    }

    /// The sender the transfer reports into.
    pub fn sender(&self) -> &watch::Sender<Progress> {
        &self.tx
    }

    /// Ends the display (the bar is cleared; the caller prints the outcome).
    pub async fn done(self) -> Summary {
        let secs = self.start.elapsed().as_secs_f64();
        let last = *self.tx.borrow();
        drop(self.tx);
        let _ = self.task.await;
        Summary { last, secs }
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("valid template")
        .progress_chars("=> ")
}

async fn terminal(mut rx: watch::Receiver<Progress>, label: String) {
    let bar = ProgressBar::new(0);
    bar.set_message(label);
    bar.enable_steady_tick(Duration::from_millis(120));
    #[derive(PartialEq)]
    enum Look {
        None,
        Hashing,
        Bar,
        Stream,
    }
    let mut look = Look::None;
    while rx.changed().await.is_ok() {
        let p = *rx.borrow();
        let want = if p.hashing {
            Look::Hashing
        } else if p.total_known {
            Look::Bar
        } else {
            Look::Stream
        };
        if want != look {
            bar.set_style(match want {
                Look::Hashing => style("{msg}: hashing what is already there {spinner}"),
                Look::Bar => style(
                    "{msg} [{wide_bar}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                ),
                _ => style("{msg} {spinner} {bytes} {binary_bytes_per_sec}"),
            });
            // Rate and ETA count from the first byte sent, not from the
            // hashing before it.
            bar.reset();
            look = want;
        }
        if look != Look::Hashing {
            bar.set_length(p.total);
            bar.set_position(p.bytes_confirmed);
        }
    }
    bar.finish_and_clear();
}

async fn lines(mut rx: watch::Receiver<Progress>, label: String) {
    let mut last = Instant::now();
    let mut hashing_said = false;
    while rx.changed().await.is_ok() {
        let p = *rx.borrow();
        if p.hashing && !hashing_said {
            eprintln!("{label}: hashing what is already there");
            hashing_said = true;
        }
        if !p.hashing && last.elapsed() >= Duration::from_secs(2) {
            if p.total_known {
                eprintln!("{label}: {} of {} bytes", p.bytes_confirmed, p.total);
            } else {
                eprintln!("{label}: {} bytes", p.bytes_confirmed);
            }
            last = Instant::now();
        }
    }
}

/// Bytes for a person.
pub fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", b / 1024.0 / 1024.0 / 1024.0)
    } else if b >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / 1024.0 / 1024.0)
    } else {
        format!("{bytes} bytes")
    }
}

/// MiB per second.
pub fn mib_per_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / 1048576.0 / secs.max(1e-9)
}
