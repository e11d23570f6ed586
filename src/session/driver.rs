//! The driver task: one per session. It feeds arriving packets and expired
//! timers to the engine, publishes what the engine wants sent, and wakes
//! whoever waits when the engine reports an event. (Two exceptions, both
//! for latency: a reader that waits for data takes arriving packets from
//! the inbox itself, `inbox.rs`, and what an application call produces
//! while the session is idle goes to the transport from that call,
//! `Shared::send_now`; what the transport does not take at once comes back
//! here, first.)

use super::*;
use crate::proto::{Config, Event, Recv};
use crate::proto::{Str, Transmit};
use crate::transport::{Transport, TransportError};
use futures::FutureExt;
use futures::future::BoxFuture;
use std::collections::VecDeque;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

/// Packets handled per driver wake-up before acks are generated; batching
/// lets one ack cover a burst.
pub(super) const BATCH: usize = 256;

/// How long a finished driver waits for the transport to take its last
/// packets (a Fin's ack, a Reset) before it lets them go.
pub(super) const FINAL_PUBLISH_BOUND: Duration = Duration::from_secs(1);

/// How long a service client waits before it sends its Syn again after
/// NATS answered one with "no responders": at once, then after 25 ms, then
/// after 75 ms; the answer to the fourth Syn is believed. nats-server also
/// answers 503 when it dropped the Syn because the service's connection was
/// over its pending limit, which a burst of connects can cause; a subject
/// that nobody serves still fails in about 100 ms plus four round trips
/// (docs/PROTOCOL.md §4.1).
pub const SYN_RETRY_BACKOFF: [Duration; 3] = [
    Duration::ZERO,
    Duration::from_millis(25),
    Duration::from_millis(75),
];

/// A service client's answers to "no responders" so far.
#[derive(Debug, Default)]
pub(super) struct SynRetry {
    /// 503s taken as "try again".
    refusals: usize,
    /// When to send the Syn again.
    at: Option<Instant>,
}

impl SynRetry {
    /// One more 503: when to send the Syn again, or `None` to believe it.
    fn next(&mut self, now: Instant) -> Option<Instant> {
        let wait = SYN_RETRY_BACKOFF.get(self.refusals)?;
        self.refusals += 1;
        self.at = Some(now + *wait);
        self.at
    }
}

/// Subscribes to `cfg`'s local inbox, giving up after the connect budget
/// (`connect` timeout x attempts): a transport that cannot confirm the
/// subscription, such as a NATS client reconnecting to a server that is
/// gone, must not hold up `connect` or `listen` for ever.
pub(super) async fn subscribe_within_connect_budget(
    transport: &dyn Transport,
    cfg: &Config,
) -> Result<Incoming, SessionError> {
    let budget = cfg.tuning.connect_timeout * cfg.tuning.connect_attempts;
    match tokio::time::timeout(budget, transport.subscribe(cfg.local_inbox())).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(TransportError::Subscribe {
            inbox: cfg.local_inbox().to_string(),
            reason: format!(
                "not confirmed within the connect budget ({} x {:?}); is the NATS server \
                 reachable? (the client may be trying to reconnect)",
                cfg.tuning.connect_attempts, cfg.tuning.connect_timeout
            ),
            source: None,
        }
        .into()),
    }
}

/// The driver task. See the module docs.
///
/// Handing a packet to the transport may wait: async-nats stops taking
/// publishes once its command queue is full, which is what happens while it
/// reconnects to a server that is gone. The packet being handed over is one
/// branch of the loop's `select!`, so input, timers (the keepalive budget)
/// and application calls go on while it waits; the engine is asked for more
/// packets only once everything it gave earlier has been handed over. A
/// transport that takes nothing for the dead-peer budget ends the session
/// with a [`TransportError::Publish`] that says so, even while the peer is
/// still heard from.
pub(super) async fn drive(shared: Arc<Shared>) {
    // Each packet with the reply inbox it names: a service client's Syn
    // asks NATS to say at once if nobody subscribes to the service subject.
    let mut queue: VecDeque<(Transmit, Option<Str>)> = VecDeque::new();
    // The packet the transport did not take at once, while it waits.
    let mut sending: Option<Handover<'_>> = None;
    // A transport that takes nothing for the dead-peer budget ends the
    // session even if the peer is still heard from. It is checked before
    // the peer could give up on us (the budget plus its probe grace), so
    // the side whose client is stuck learns that first, in its own words.
    let stall_budget = shared.lock().conn.config().dead_peer_budget();
    // The transport may learn on its own that the server refuses our
    // subjects (NATS permissions): check at once, and whenever it says so.
    let mut failures = shared.transport.failures();
    // The driver is nudged once at its start, so the first pass checks.
    let mut check_denied = true;
    let mut syn_retry = SynRetry::default();
    loop {
        let deadline = {
            let g = shared.lock();
            // Once closed, the drop's deadline has done its work: a past
            // deadline left in would make every pass of this loop a busy
            // one while the closed session lingers.
            let orphan = g
                .orphaned_at
                .filter(|_| !g.conn.is_closed())
                .map(|t| t + drop_linger(&g.conn));
            let stall = sending
                .as_ref()
                .zip(stall_budget)
                .filter(|_| !g.conn.is_closed())
                .map(|(h, b)| h.since + b);
            [g.conn.poll_timeout(), orphan, stall, syn_retry.at]
                .into_iter()
                .flatten()
                .min()
        };
        let sleep = async move {
            match deadline {
                Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                None => futures::future::pending::<()>().await,
            }
        };
        let handed_over = async {
            match sending.as_mut() {
                Some(h) => (&mut h.publish).await,
                None => futures::future::pending().await,
            }
        };
        let denial = async {
            match failures.as_mut() {
                Some(rx) => rx.changed().await.is_ok(),
                None => futures::future::pending().await,
            }
        };
        // Packets from the inbox (see `Inbox`: a waiting reader may have
        // taken some already; their input still needs this pass).
        let next_packet = std::future::poll_fn(|cx| {
            if shared.lock().pull_for_driver(cx.waker()) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        });
        let mut input = false;
        let mut published = None;
        tokio::select! {
            biased;
            _ = next_packet => input = true,
            r = handed_over => published = Some(r),
            alive = denial => {
                if alive {
                    check_denied = true;
                } else {
                    failures = None; // the transport is gone; nothing more to learn
                }
            }
            _ = shared.driver.notified() => {}
            _ = sleep => {}
        }
        if let Some(r) = published {
            sending = None;
            if let Err(e) = r {
                publish_failed(&shared, e);
            }
        }
        if std::mem::take(&mut check_denied) {
            check_transport_denials(&shared, &mut syn_retry);
        }
        let (events, done) = {
            let mut g = shared.lock();
            let t = now();
            if g.conn.poll_timeout().is_some_and(|d| d <= t) {
                g.conn.handle_timeout(t);
            }
            if syn_retry.at.is_some_and(|d| d <= t) {
                syn_retry.at = None;
                g.conn.resend_syn();
            }
            // Checked after the engine's timers, so a dead peer is reported
            // as such when both budgets ran out at once.
            if let (Some(h), Some(budget)) = (&sending, stall_budget)
                && t >= h.since + budget
                && !g.conn.is_closed()
            {
                let e = TransportError::Publish {
                    subject: h.dest.to_string(),
                    reason: format!(
                        "the transport took no packet for {budget:?} (the session's \
                         dead-peer budget); is the NATS connection stuck or its \
                         client overloaded?"
                    ),
                    source: None,
                };
                g.fail_on_transport(e, t);
                // What waits behind the stuck packet cannot go either.
                sending = None;
                queue.clear();
            }
            if let Some(at) = g.orphaned_at {
                // Nobody will read again: what was left unread, or arrives
                // now, is discarded, and the peer must not take our acks of
                // it for delivery. As a TCP that is closed with data unread
                // or receives data after its close resets the connection
                // (RFC 1122 §4.2.2.13), we reset, once our own data is
                // acknowledged (what we wrote before the drop is still
                // delivered), so the peer learns at once, not a budget
                // later, that its bytes were lost.
                while let Ok(Recv::Data(d)) = g.conn.read_chunk(usize::MAX) {
                    g.discarded += d.len() as u64;
                }
                if !g.conn.is_closed() {
                    if g.discarded > 0 && g.conn.bytes_acked() >= g.conn.bytes_written() {
                        let reason = format!(
                            "the peer's program dropped its session without reading {} bytes \
                             of what you sent: they were not delivered",
                            g.discarded
                        );
                        g.conn.abort_with(t, &reason);
                    } else if t >= at + drop_linger(&g.conn) {
                        let reason = gave_up_closing(&g.conn, t - at);
                        g.conn.abort_with(t, &reason);
                    }
                }
            }
            if queue.is_empty() && sending.is_none() {
                // What an application call could not hand over goes first.
                queue.extend(g.outbox.drain(..).map(|tx| (tx, None)));
                let syn_sent = g.conn.config().is_service_client()
                    && g.conn.state() == crate::proto::State::SynSent;
                while let Some(tx) = g.conn.poll_transmit(t) {
                    let reply = syn_sent.then(|| Str::from(g.conn.config().local_inbox()));
                    queue.push_back((tx, reply));
                }
            }
            // In the same critical section as the engine saw them go out, so
            // close() never sees a Fin as sent before it is handed over.
            g.unsent = queue.len() + sending.is_some() as usize;
            // Wake waiters on any event, and after any packet: a spurious
            // wake costs a lock; a missed one is a hang.
            let mut events = input;
            while let Some(ev) = g.conn.poll_event() {
                events = true;
                match ev {
                    Event::Connected => tracing::debug!("connected"),
                    Event::StateChanged(st) => tracing::debug!(state = %st, "state"),
                    Event::Closed(reason) if reason.is_normal() => {
                        tracing::debug!(%reason, "session ended")
                    }
                    Event::Closed(reason) => tracing::info!(%reason, "session ended"),
                    _ => {}
                }
            }
            // A failed transport ends the driver once the engine is closed,
            // even if a publish never completes; what is left (the Reset
            // telling the peer) gets the final bounded chance below.
            let failed = g.transport_error.is_some() && g.conn.is_closed();
            if failed {
                let t = now();
                while let Some(tx) = g.conn.poll_transmit(t) {
                    queue.push_back((tx, None));
                }
            }
            if g.conn.is_closed()
                && let Some(f) = g.on_close.take()
            {
                f(&g.conn); // a service may take a new session
            }
            let done = g.conn.is_drained() || failed;
            if events || done {
                g.wake_all();
            }
            (events, done)
        };
        // Hand over what the transport takes without waiting; the first
        // packet it does not take becomes the `handed_over` branch.
        while sending.is_none() {
            let Some((tx, reply)) = queue.pop_front() else {
                break;
            };
            let mut f = publish(
                shared.transport.as_ref(),
                &tx.dest,
                tx.payload,
                reply.as_deref(),
            );
            match (&mut f).now_or_never() {
                Some(Ok(())) => {}
                Some(Err(e)) => publish_failed(&shared, e),
                None => {
                    sending = Some(Handover {
                        publish: f,
                        since: now(),
                        dest: tx.dest,
                    })
                }
            }
        }
        {
            let mut g = shared.lock();
            let unsent = queue.len() + sending.is_some() as usize + g.outbox.len();
            if g.unsent != unsent {
                let was = g.unsent;
                g.unsent = unsent;
                if unsent == 0 && was > 0 {
                    // close() may be waiting for the last packets to leave.
                    g.wake_all();
                    drop(g);
                    shared.changed.notify_waiters();
                }
            }
        }
        if events {
            shared.changed.notify_waiters();
        }
        if done {
            // The last packets (a Fin's ack, a Reset) get a bounded chance;
            // a transport that still takes nothing cannot deliver them anyway.
            let last = async {
                if let Some(h) = sending.take() {
                    h.publish.await.ok();
                }
                for (tx, reply) in queue.drain(..) {
                    publish(
                        shared.transport.as_ref(),
                        &tx.dest,
                        tx.payload,
                        reply.as_deref(),
                    )
                    .await
                    .ok();
                }
            };
            if tokio::time::timeout(FINAL_PUBLISH_BOUND, last)
                .await
                .is_err()
            {
                tracing::debug!(
                    "transport took no packets for {FINAL_PUBLISH_BOUND:?}; last packets dropped"
                );
            }
            let mut g = shared.lock();
            g.driver_done = true;
            g.wake_all();
            drop(g);
            shared.changed.notify_waiters();
            tracing::debug!("session driver finished");
            return;
        }
    }
}

fn publish<'a>(
    transport: &'a dyn Transport,
    dest: &str,
    payload: Bytes,
    reply: Option<&str>,
) -> BoxFuture<'a, Result<(), TransportError>> {
    match reply {
        Some(r) => transport.publish_request(dest, r, payload),
        None => transport.publish(dest, payload),
    }
}

/// A packet the transport did not take at once: the publish that waits,
/// since when, and where the packet goes.
pub(super) struct Handover<'a> {
    publish: BoxFuture<'a, Result<(), TransportError>>,
    since: Instant,
    dest: Str,
}

/// How long a dropped session goes on delivering before it gives up:
/// [`DROP_LINGER`], or its dead-peer timeout if that is longer, so that an
/// outage shorter than the budget never ends a dropped session's close
/// either (docs/PROTOCOL.md §8).
fn drop_linger(conn: &crate::proto::Connection) -> Duration {
    conn.dead_peer_timeout()
        .map_or(DROP_LINGER, |d| d.max(DROP_LINGER))
}

/// What a dropped session that gives up tells its peer (in the peer's
/// words: "you" is the peer).
fn gave_up_closing(conn: &crate::proto::Connection, waited: Duration) -> String {
    use crate::proto::State;
    let unacked = conn.bytes_written().saturating_sub(conn.bytes_acked());
    let missing = match conn.state() {
        State::FinWait2 => "you did not close your side".to_string(),
        _ if unacked > 0 => format!("{unacked} bytes of what it wrote were never acknowledged"),
        State::SynSent | State::SynReceived => "the handshake never completed".to_string(),
        _ => "its close was never acknowledged".to_string(),
    };
    let waited = Duration::from_millis(waited.as_millis() as u64);
    format!(
        "the peer's program dropped its session and gave up closing it after {waited:?}: \
         {missing}"
    )
}

/// Ends the session if the transport learnt that the server refuses our
/// inbox or the peer's (NATS permissions), or that a connecting service
/// client's Syn reached nobody as many times as [`SYN_RETRY_BACKOFF`]
/// allows.
pub(super) fn check_transport_denials(shared: &Shared, retry: &mut SynRetry) {
    let mut g = shared.lock();
    if g.conn.is_closed() {
        return;
    }
    let subjects = [
        g.conn.config().local_inbox().to_string(),
        g.conn.remote_inbox().to_string(),
    ];
    for s in subjects.iter().filter(|s| !s.is_empty()) {
        let t = now();
        match shared.transport.denied(s) {
            None => {}
            // The answer to a Syn sent before the handshake went on: a
            // later Syn got through, so it says nothing any more.
            Some(TransportError::NoResponders { .. })
                if g.conn.state() != crate::proto::State::SynSent => {}
            Some(TransportError::NoResponders { subject }) if retry.next(t).is_some() => {
                tracing::debug!(
                    subject,
                    refusals = retry.refusals,
                    "no responders: sending the Syn again"
                );
            }
            Some(e) => {
                g.fail_on_transport(e, t);
                return;
            }
        }
    }
}

/// The transport refused a packet: the session cannot go on.
pub(super) fn publish_failed(shared: &Shared, e: TransportError) {
    shared.lock().fail_on_transport(e, now());
}
