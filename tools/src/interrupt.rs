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

/// Waits for SIGINT or SIGTERM; returns its name and the exit code.
pub async fn signalled() -> (&'static str, i32) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        // Without handlers the default action (exit) stays: wait forever.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => ("SIGINT", 130),
        _ = term.recv() => ("SIGTERM", 143),
    }
}

/// Aborts every watched session with its reason and waits (bounded) for
/// the Resets to reach the server. Returns how many peers were told.
pub async fn tell_peers(signal: &str) -> usize {
    let list: Vec<_> = std::mem::take(&mut *SESSIONS.lock().unwrap_or_else(|e| e.into_inner()));
    let mut told = Vec::new();
    for (h, why) in list {
        if h.abort_with(why.replace("{signal}", signal)) {
            told.push(h);
        }
    }
    let n = told.len();
    let _ = tokio::time::timeout(TELL_BOUND, async {
        for h in &told {
            h.wait_closed().await;
        }
        // Every session of one swp process runs on its one NATS
        // connection: one round trip covers all their Resets.
        if let Some(h) = told.first() {
            let _ = h.flush().await;
        }
    })
    .await;
    n
}
