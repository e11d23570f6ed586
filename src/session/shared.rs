//! The state the driver and the application's handles share: the engine
//! behind one lock, the wakers, and the message API both `Session` and its
//! halves call.

use super::inbox::{Inbox, Pulled};
use super::*;
use crate::proto::{
    CloseReason, Connection, MessageId, Recv, ResetCode, State, Transmit, WriteError,
};
use crate::transport::{Transport, TransportError};
use bytes::Bytes;
use futures::FutureExt;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::Instant;
use tokio::sync::Notify;

/// The most packets an application call hands to the transport itself
/// ([`Shared::send_now`]): a request or an answer, not the start of a bulk
/// write.
pub(super) const SEND_NOW_MAX: usize = 2;

/// The most pulls from the inbox one poll of a waiting reader makes (each
/// up to the driver's batch): an inbox that never runs dry (a flood of
/// acks, a transport whose stream is always ready) cannot hold the reader's
/// task; what is left is the driver's, which every arrival wakes.
pub(super) const READER_PULLS: usize = 4;

/// See [`Inner::on_close`].
pub(crate) type OnClose = Box<dyn FnOnce(&Connection) + Send>;

pub(super) struct Inner {
    pub(super) conn: Connection,
    pub(super) wakers: Vec<Waker>,
    pub(super) transport_error: Option<TransportError>,
    pub(super) shutdown_requested: bool,
    pub(super) orphaned_at: Option<Instant>,
    /// Bytes an orphaned session received that nobody will read.
    pub(super) discarded: u64,
    pub(super) driver_done: bool,
    /// What a service does when the session is closed (gives its slot back,
    /// counts its bytes): called once, with the engine, as it closes; a
    /// session lingering to re-acknowledge a Fin no longer counts.
    pub(super) on_close: Option<OnClose>,
    /// Packets the engine produced that the driver has not yet handed to
    /// the transport (its own queue, and [`outbox`](Self::outbox)).
    pub(super) unsent: usize,
    /// Packets an application call took from the engine that the transport
    /// did not take at once ([`Shared::send_now`]): the driver hands them
    /// over first, before it asks the engine for more.
    pub(super) outbox: VecDeque<Transmit>,
    /// The inbox subscription, which the driver and a waiting reader both
    /// take packets from (see [`Inbox`]).
    pub(super) inbox: Inbox,
}

impl Inner {
    pub(super) fn park(&mut self, w: &Waker) {
        if !self.wakers.iter().any(|x| x.will_wake(w)) {
            self.wakers.push(w.clone());
        }
    }
    pub(super) fn wake_all(&mut self) {
        for w in self.wakers.drain(..) {
            w.wake();
        }
    }
    /// The transport cannot carry the session any more: abort with `e` as
    /// the reason every blocked call gets.
    pub(super) fn fail_on_transport(&mut self, e: TransportError, now: Instant) {
        if self.transport_error.is_some() {
            return; // the first failure is the one to report
        }
        tracing::debug!(error = %e, "transport failed; aborting session");
        // The peer may still hear us (only publishing may be stuck): tell it.
        self.conn.abort_because(
            now,
            ResetCode::Transport,
            &format!("its transport failed: {e}"),
        );
        self.transport_error = Some(e);
        self.wake_all();
    }

    /// Feeds the engine from the inbox for a reader that found nothing to
    /// read (see [`Inbox`]): whether anything arrived (or the subscription
    /// ended, which fails the session). `reader` is woken at the next
    /// arrival.
    ///
    /// Only while something this side wrote is unacknowledged: a reader
    /// waiting for an answer (or for the next request after its own
    /// answer), the case where the hand-over is on the critical path. A
    /// reader of a one-way bulk flow leaves the packets to the driver,
    /// which decodes a batch while the reader copies the last one out: on
    /// two cores that overlap was worth 5% of the 63 KiB stream's rate.
    pub(super) fn pull_for_reader(&mut self, reader: &Waker) -> bool {
        if self.conn.bytes_acked() >= self.conn.bytes_written() {
            return false;
        }
        let t = now();
        let pulled = self
            .inbox
            .pull_for_reader(reader, &mut self.conn, t, super::driver::BATCH);
        self.took(pulled, t)
    }

    /// The driver's pull (see [`Inbox`]): whether there was input, its own
    /// or what a reader took since the driver last looked.
    pub(super) fn pull_for_driver(&mut self, driver: &Waker) -> bool {
        let t = now();
        let by_reader = std::mem::take(&mut self.inbox.taken_by_reader);
        let pulled =
            self.inbox
                .pull_for_driver(driver, &mut self.conn, t, super::driver::BATCH + 1);
        self.took(pulled, t) || by_reader
    }

    /// Whether a pull found anything; an ended subscription fails the
    /// session.
    fn took(&mut self, pulled: Pulled, t: Instant) -> bool {
        match pulled {
            Pulled::Nothing => false,
            Pulled::Packets(_) => true,
            Pulled::Ended => {
                self.fail_on_transport(
                    TransportError::Closed(
                        "the inbox subscription ended (the NATS connection closed or drained)"
                            .into(),
                    ),
                    t,
                );
                true
            }
        }
    }

    /// Our side of a graceful close is done, and the packets saying so have
    /// been handed to the transport.
    pub(super) fn close_done(&self) -> bool {
        self.conn.close_settled() && self.unsent == 0
    }
    /// What a call that the engine refused returns: the engine says only
    /// that the session closed (aborted); when the transport is why, say
    /// that instead.
    pub(super) fn refused(&self, e: impl Into<SessionError>) -> SessionError {
        match (e.into(), &self.transport_error) {
            (SessionError::Closed(_), Some(t)) => SessionError::Transport(t.clone()),
            (e, _) => e,
        }
    }

    /// The error a blocked call should return, if the session is over.
    pub(super) fn failure(&self) -> Option<SessionError> {
        if let Some(e) = &self.transport_error {
            return Some(SessionError::Transport(e.clone()));
        }
        match self.conn.close_reason() {
            Some(r) if !r.is_normal() => Some(SessionError::Closed(r.clone())),
            _ => None,
        }
    }
}

pub(super) struct Shared {
    pub(super) inner: Mutex<Inner>,
    /// Wakes the driver (an application call changed something).
    pub(super) driver: Notify,
    /// Wakes async waiters (the driver saw events).
    pub(super) changed: Notify,
    pub(super) transport: Arc<dyn Transport>,
    /// The transport replays a simulation from a seed.
    pub(super) replayed: bool,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock would be a bug in this module; the
        // state is still consistent enough to report errors, so go on.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) async fn wait<T>(&self, mut ready: impl FnMut(&mut Inner) -> Option<T>) -> T {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(v) = ready(&mut self.lock()) {
                return v;
            }
            notified.await;
        }
    }

    pub(super) fn nudge(&self) {
        self.driver.notify_one();
    }

    /// Hands what the engine has to send to the transport from the
    /// caller's task, if that keeps the packets in order: the session is
    /// open, and the driver has nothing waiting to go. The caller checked
    /// that nothing was in flight before its write (a request, an answer):
    /// the latency case, where a hand-over to the driver task is a thread
    /// wake-up on the critical path. With data in flight the driver sends,
    /// and its batching decides what a packet carries. A packet the
    /// transport does not take at once goes to the driver, with all after
    /// it. At most [`SEND_NOW_MAX`] packets: the start of a large write is
    /// the driver's to send, so a caller never holds the engine for long.
    /// The caller still nudges the driver (the engine's timers moved, and
    /// it sends the rest).
    pub(super) fn send_now(&self, g: &mut Inner) {
        if g.unsent > 0 || g.transport_error.is_some() || g.conn.state() != State::Established {
            return;
        }
        let t = now();
        for _ in 0..SEND_NOW_MAX {
            let Some(tx) = g.conn.poll_transmit(t) else {
                break;
            };
            if !g.outbox.is_empty() {
                g.outbox.push_back(tx);
                continue;
            }
            match self
                .transport
                .publish(&tx.dest, tx.payload.clone())
                .now_or_never()
            {
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    g.fail_on_transport(e, t);
                    return;
                }
                None => g.outbox.push_back(tx),
            }
        }
        g.unsent += g.outbox.len();
    }
}

pub(super) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Marks the session orphaned when the last application handle goes away.
pub(super) struct HandleGuard(pub(super) Arc<Shared>);

impl Drop for HandleGuard {
    fn drop(&mut self) {
        let mut g = self.0.lock();
        if !g.conn.is_closed() {
            let t = now();
            g.conn.close(t);
            g.orphaned_at = Some(t);
        }
        drop(g);
        self.0.nudge();
    }
}

pub(super) fn abort_with(shared: &Shared, reason: &str) {
    shared.lock().conn.abort_with(now(), reason);
    shared.nudge();
    shared.changed.notify_waiters();
}

pub(super) fn stats(shared: &Shared) -> SessionStats {
    SessionStats {
        protocol: shared.lock().conn.stats(),
        transport: shared.transport.counters(),
    }
}

/// The message API, shared by [`Session`] and its halves.
impl Shared {
    pub(super) async fn send(&self, msg: Bytes) -> Result<MessageId, SessionError> {
        let id = self
            .wait(|g| {
                let idle = g.conn.bytes_acked() >= g.conn.bytes_written();
                match g.conn.send_message(msg.clone()) {
                    Ok(id) => {
                        if idle {
                            self.send_now(g);
                        }
                        Some(Ok(id))
                    }
                    Err(WriteError::Blocked) => g.failure().map(Err),
                    Err(e) => Some(Err(g.refused(e))),
                }
            })
            .await?;
        self.nudge();
        Ok(id)
    }

    pub(super) async fn wait_acked(&self, id: MessageId) -> Result<(), SessionError> {
        self.wait(|g| {
            if g.conn.is_acked(id) {
                Some(Ok(()))
            } else if let Some(e) = g.failure() {
                Some(Err(e))
            } else if g.conn.is_closed() {
                Some(Err(SessionError::Closed(CloseReason::Normal)))
            } else {
                None
            }
        })
        .await
    }

    pub(super) async fn recv(&self) -> Result<Option<Bytes>, SessionError> {
        self.read_with(|c| c.recv_message()).await
    }

    pub(super) async fn read_chunk(&self, max: usize) -> Result<Option<Bytes>, SessionError> {
        self.read_with(|c| c.read_chunk(max)).await
    }

    /// One poll of a read: what `read` gives, `None` at the end of the
    /// stream, or the session's failure; while nothing is there, takes
    /// arriving packets from the inbox itself (see [`Inbox`]) before it
    /// parks the caller. The one loop behind `AsyncRead` and the message
    /// calls.
    pub(super) fn poll_read_with<T>(
        &self,
        cx: &mut std::task::Context<'_>,
        mut read: impl FnMut(&mut Connection) -> Result<Recv<T>, crate::proto::ReadError>,
    ) -> Poll<Result<Option<T>, SessionError>> {
        let mut g = self.lock();
        let mut pulls = 0;
        loop {
            return match read(&mut g.conn) {
                Ok(Recv::Data(v)) => Poll::Ready(Ok(Some(v))),
                Ok(Recv::Finished) => Poll::Ready(Ok(None)),
                Ok(Recv::Blocked) => match g.failure() {
                    Some(e) => Poll::Ready(Err(e)),
                    None if pulls < READER_PULLS && g.pull_for_reader(cx.waker()) => {
                        pulls += 1;
                        continue;
                    }
                    None => {
                        g.park(cx.waker());
                        Poll::Pending
                    }
                },
                Err(e) => Poll::Ready(Err(g.refused(e))),
            };
        }
    }

    /// Waits until `read` gives something (or the stream ended, or the
    /// session failed); then nudges the driver, as reading may open the
    /// window.
    async fn read_with(
        &self,
        mut read: impl FnMut(&mut Connection) -> Result<Recv<Bytes>, crate::proto::ReadError>,
    ) -> Result<Option<Bytes>, SessionError> {
        let r = std::future::poll_fn(|cx| self.poll_read_with(cx, &mut read)).await;
        self.nudge();
        r
    }

    pub(super) async fn send_and_wait(&self, msg: Bytes) -> Result<(), SessionError> {
        let id = self.send(msg).await?;
        self.wait_acked(id).await
    }

    pub(super) async fn recv_asap(&self) -> Option<Bytes> {
        self.wait(|g| match g.conn.poll_asap() {
            Some(b) => Some(Some(b)),
            None if g.conn.is_closed() || g.driver_done => Some(None),
            None => None,
        })
        .await
    }

    pub(super) async fn flush_acked(&self) -> Result<(), SessionError> {
        let written = self.lock().conn.bytes_written();
        self.wait_acked(written).await
    }
}
