//! Aborting a session from outside its owner: a signal handler, a
//! supervisor. The handle does not keep the session open.

use super::shared::{Shared, abort_with};
use crate::transport::TransportError;
use std::sync::{Arc, Weak};

/// Ends a session from elsewhere, e.g. when the program is interrupted, so
/// the peer learns why at once instead of after its dead-peer budget.
/// Made by [`Session::abort_handle`](super::Session::abort_handle); cheap to
/// clone. It does not keep the session alive: once the session's handles
/// are dropped and its driver has ended, it does nothing.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
/// # let net = SimNetwork::new(1, LinkConfig::new());
/// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
/// let handle = a.abort_handle();
/// // Elsewhere, say on Ctrl-C:
/// assert!(handle.abort_with("interrupted"));
/// handle.wait_closed().await;
/// handle.flush().await?; // the Reset has reached the server
/// assert!(b.recv().await.unwrap_err().to_string().contains("interrupted"));
/// drop(a);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AbortHandle {
    pub(super) shared: Weak<Shared>,
}

impl std::fmt::Debug for AbortHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AbortHandle")
            .field("live", &(self.shared.strong_count() > 0))
            .finish()
    }
}

impl AbortHandle {
    fn live(&self) -> Option<Arc<Shared>> {
        self.shared.upgrade()
    }

    /// Whether the session is still there: a handle of it is held or its
    /// driver still runs (it may have closed; aborting it then does
    /// nothing).
    pub fn is_live(&self) -> bool {
        self.shared.strong_count() > 0
    }

    /// As [`Session::abort_with`](super::Session::abort_with). Returns
    /// whether the session was still there to abort (a session that
    /// already ended is left as it ended).
    pub fn abort_with(&self, reason: impl AsRef<str>) -> bool {
        match self.live() {
            Some(shared) => {
                abort_with(&shared, reason.as_ref());
                true
            }
            None => false,
        }
    }

    /// Payload bytes the application wrote and read, while the session is
    /// there.
    pub(crate) fn app_bytes(&self) -> Option<(u64, u64)> {
        self.live().map(|shared| {
            let app = shared.lock().conn.stats().app;
            (app.bytes_written, app.bytes_read)
        })
    }

    /// As [`Session::wait_closed`](super::Session::wait_closed); returns at
    /// once if the session is gone.
    pub async fn wait_closed(&self) {
        if let Some(shared) = self.live() {
            super::wait_closed(&shared).await;
        }
    }

    /// Flushes the session's transport ([`Transport::flush`](crate::transport::Transport::flush):
    /// over NATS a round trip, so what was handed over has reached the
    /// server). Nothing to do once the session is gone.
    pub async fn flush(&self) -> Result<(), TransportError> {
        match self.live() {
            Some(shared) => {
                let t = shared.transport.clone();
                drop(shared);
                t.flush().await
            }
            None => Ok(()),
        }
    }
}
