//! Ctrl-C (SIGINT) and SIGTERM: the sessions this process runs are aborted
//! with the reason, so each peer learns at once why (not after its
//! dead-peer budget, "peer unreachable"); their Resets are handed over and
//! flushed within a bound, then the process exits 130 or 143, as a shell
//! expects of a process ended by that signal.

use std::sync::Mutex;
use std::time::Duration;
use swp::{AbortHandle, Session};

/// The sessions to tell, with what to tell each peer.
static SESSIONS: Mutex<Vec<(AbortHandle, String)>> = Mutex::new(Vec::new());

/// How long the Resets may take to leave before the process exits anyway.
const TELL_BOUND: Duration = Duration::from_secs(2);

/// Remembers `s`, so an interrupt aborts it with `why` (written for the
/// peer: e.g. "swp send was interrupted (SIGINT): sending again resumes";
/// the signal's name replaces `{signal}`).
pub fn watch(s: &Session, why: impl Into<String>) {
    let mut list = SESSIONS.lock().unwrap_or_else(|e| e.into_inner());
    // Sessions that ended and were dropped are no longer anyone's business.
    list.retain(|(h, _)| h.is_live());
    list.push((s.abort_handle(), why.into()));
}

/// An interrupt, with the sessions already aborted for it.
pub struct Interrupted {
    /// The signal's name ("SIGINT", "SIGTERM").
    pub signal: &'static str,
    /// The exit code a shell expects of a process ended by it.
    pub code: i32,
    told: Vec<AbortHandle>,
}

/// Waits for SIGINT or SIGTERM, then aborts every watched session with its
/// reason before it returns. The order matters: the caller then drops the
/// work it interrupts, and a dropped session closes gracefully, so its Fin
/// must find the session already reset (a receiver of a stream of unknown
/// length would otherwise take the Fin for the end and never see why).
pub async fn interrupted() -> Interrupted {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        // Without handlers the default action (exit) stays: wait forever.
        return std::future::pending().await;
    };
    let (signal, code) = tokio::select! {
        _ = int.recv() => ("SIGINT", 130),
        _ = term.recv() => ("SIGTERM", 143),
    };
    let list: Vec<_> = std::mem::take(&mut *SESSIONS.lock().unwrap_or_else(|e| e.into_inner()));
    let told = list
        .into_iter()
        .filter(|(h, why)| h.abort_with(why.replace("{signal}", signal)))
        .map(|(h, _)| h)
        .collect();
    Interrupted { signal, code, told }
}

impl Interrupted {
    /// Waits (bounded) for the Resets to reach the server; returns how many
    /// peers were told.
    pub async fn tell_peers(&self) -> usize {
        let _ = tokio::time::timeout(TELL_BOUND, async {
            for h in &self.told {
                h.wait_closed().await;
            }
            // Every session of one swp process runs on its one NATS
            // connection: one round trip covers all their Resets.
            if let Some(h) = self.told.first() {
                let _ = h.flush().await;
            }
        })
        .await;
        self.told.len()
    }
}
