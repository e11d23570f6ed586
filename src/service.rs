//! A service: many sessions accepted on one subject, concurrently, each
//! moved to a private inbox after its Syn (docs/PROTOCOL.md §4.1), with a
//! limit on how many run at once and, on NATS, scale-out by queue group.
//!
//! The service subject carries only Syns. For each new client (its inbox
//! and nonce) the service makes a private inbox, subscribes to it, and
//! starts a session there that answers the Syn; the client learns the
//! private inbox from the SynAck and talks to it from then on. A
//! retransmitted Syn goes to the session already answering it. Over the
//! limit, the client gets a Reset with [`ResetCode::Busy`] at once.

use crate::proto::codec;
use crate::proto::config::check_subject;
use crate::proto::{Config, Kind, Packet, ResetCode, Tuning};
use crate::session::{Session, SessionError};
use crate::transport::{Incoming, Transport, TransportError};
use bytes::Bytes;
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{Semaphore, mpsc};

/// How a [`Service`] listens.
///
/// ```
/// use swp::service::ServiceConfig;
/// let cfg = ServiceConfig::new("files").queue_group("files-workers").max_sessions(100);
/// assert_eq!(cfg.subject(), "files");
/// ```
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    subject: String,
    queue_group: Option<String>,
    max_sessions: usize,
    tuning: Tuning,
}

impl ServiceConfig {
    /// A service on `subject`: no queue group, at most 1024 sessions at
    /// once, the default [`Tuning`].
    pub fn new(subject: impl Into<String>) -> Self {
        ServiceConfig {
            subject: subject.into(),
            queue_group: None,
            max_sessions: 1024,
            tuning: Tuning::new(),
        }
    }
    /// Joins queue group `name` on the subject: with several services in
    /// one group (processes, machines, cluster nodes), each Syn reaches one
    /// of them, and the session stays with it.
    pub fn queue_group(mut self, name: impl Into<String>) -> Self {
        self.queue_group = Some(name.into());
        self
    }
    /// At most `n` sessions at once (handshakes included; at least 1, or
    /// [`Service::bind`] refuses the configuration); a client over the
    /// limit is refused at once with [`ResetCode::Busy`].
    pub fn max_sessions(mut self, n: usize) -> Self {
        self.max_sessions = n;
        self
    }
    /// The tuning of every session the service accepts.
    pub fn tuning(mut self, tuning: Tuning) -> Self {
        self.tuning = tuning;
        self
    }
    /// The service subject.
    pub fn subject(&self) -> &str {
        &self.subject
    }
}

/// What a service has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceStats {
    /// Sessions established and handed to [`Service::accept`].
    pub accepted: u64,
    /// Sessions that exist now (handshakes included).
    pub active: u64,
    /// Clients refused because `max_sessions` were running.
    pub refused_busy: u64,
    /// Handshakes that did not complete (the client went away).
    pub handshakes_failed: u64,
    /// Retransmitted Syns passed to the session already answering them.
    pub syn_retransmits: u64,
    /// Messages on the service subject that were no Syn (or no packet at
    /// all): dropped.
    pub dropped: u64,
    /// Application bytes received by sessions that have closed.
    pub bytes_received: u64,
    /// Application bytes sent by sessions that have closed.
    pub bytes_sent: u64,
    /// Sessions that ended other than by a normal close (reset, timed out,
    /// failed; failed handshakes included).
    pub sessions_failed: u64,
}

/// What the service counts, and its session slots (one permit per session
/// that exists).
struct Counters {
    accepted: AtomicU64,
    refused_busy: AtomicU64,
    handshakes_failed: AtomicU64,
    syn_retransmits: AtomicU64,
    dropped: AtomicU64,
    bytes_received: AtomicU64,
    bytes_sent: AtomicU64,
    sessions_failed: AtomicU64,
    slots: Arc<Semaphore>,
    max_sessions: usize,
}

impl Counters {
    fn new(max_sessions: usize) -> Self {
        Counters {
            accepted: AtomicU64::new(0),
            refused_busy: AtomicU64::new(0),
            handshakes_failed: AtomicU64::new(0),
            syn_retransmits: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            sessions_failed: AtomicU64::new(0),
            slots: Arc::new(Semaphore::new(max_sessions)),
            max_sessions,
        }
    }

    fn snapshot(&self) -> ServiceStats {
        ServiceStats {
            accepted: self.accepted.load(Ordering::Relaxed),
            active: self
                .max_sessions
                .saturating_sub(self.slots.available_permits()) as u64,
            refused_busy: self.refused_busy.load(Ordering::Relaxed),
            handshakes_failed: self.handshakes_failed.load(Ordering::Relaxed),
            syn_retransmits: self.syn_retransmits.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            sessions_failed: self.sessions_failed.load(Ordering::Relaxed),
        }
    }
}

/// Handshakes in progress: (client inbox, client nonce) -> where its
/// retransmitted Syns go.
type Pending = Arc<Mutex<HashMap<(String, String), mpsc::UnboundedSender<()>>>>;

/// Many sessions accepted on one subject.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use swp::service::{Service, ServiceConfig};
/// use swp::transport::{NatsOptions, NatsTransport};
/// use swp::{proto::Tuning, Session};
/// let nats = NatsTransport::connect(NatsOptions::new("nats://127.0.0.1:4222")).await?;
/// let service = Service::bind(nats.clone(), ServiceConfig::new("echo")).await?;
/// tokio::spawn(async move {
///     while let Ok(s) = service.accept().await {
///         tokio::spawn(async move {
///             while let Ok(Some(m)) = s.recv().await {
///                 let _ = s.send(m).await;
///             }
///         });
///     }
/// });
/// let client = Session::connect_to(nats, "echo", Tuning::new()).await?;
/// client.send("ping").await?;
/// assert_eq!(client.recv().await?.unwrap(), "ping");
/// # Ok(()) }
/// ```
pub struct Service {
    subject: String,
    accepted: tokio::sync::Mutex<mpsc::Receiver<Session>>,
    counters: Arc<Counters>,
    demux: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("subject", &self.subject)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // Sessions already accepted go on; no new ones.
        self.demux.abort();
    }
}

impl Service {
    /// Subscribes to the service subject (in the queue group, if any); from
    /// when this returns, clients may connect.
    pub async fn bind(
        transport: Arc<dyn Transport>,
        cfg: ServiceConfig,
    ) -> Result<Service, SessionError> {
        check_subject(&cfg.subject).map_err(|e| {
            SessionError::Config(crate::proto::ConfigError(format!("service subject {e}")))
        })?;
        if transport.new_inbox().is_none() {
            return Err(SessionError::Transport(TransportError::Unsupported(
                "create private inboxes, which a service needs",
            )));
        }
        cfg.tuning.validate()?;
        if cfg.max_sessions == 0 {
            return Err(SessionError::Config(crate::proto::ConfigError::new(
                "max_sessions is 0: the service could take no client; allow at least 1",
            )));
        }
        let incoming = match &cfg.queue_group {
            Some(g) => transport.subscribe_queue(&cfg.subject, g).await?,
            None => transport.subscribe(&cfg.subject).await?,
        };
        let (tx, rx) = mpsc::channel(cfg.max_sessions.max(1));
        let counters = Arc::new(Counters::new(cfg.max_sessions));
        let demux = tokio::spawn(demux(
            transport,
            cfg.clone(),
            incoming,
            tx,
            counters.clone(),
        ));
        Ok(Service {
            subject: cfg.subject,
            accepted: tokio::sync::Mutex::new(rx),
            counters,
            demux,
        })
    }

    /// The next established session. Fails only when the service subject's
    /// subscription ended (the transport closed).
    pub async fn accept(&self) -> Result<Session, SessionError> {
        self.accepted.lock().await.recv().await.ok_or_else(|| {
            SessionError::Transport(TransportError::Closed(format!(
                "the subscription to service subject {:?} ended",
                self.subject
            )))
        })
    }

    /// The service subject.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Counters so far.
    pub fn stats(&self) -> ServiceStats {
        self.counters.snapshot()
    }

    /// Makes the service discoverable with the NATS service API (micro):
    /// `nats micro ls` lists it under `name`, `nats micro info NAME` shows
    /// its endpoint (`<subject>.info`, answering with the counters as
    /// JSON) and metadata (`swp.subject`, `swp.version`), and `nats micro
    /// stats NAME` shows the counters of [`stats`](Self::stats) as the
    /// endpoint's `data`. The service subject itself is not a micro
    /// endpoint: it carries Syns, not requests. Discoverable once this
    /// returns (the subscriptions are flushed). Keep the returned value;
    /// dropping it stops answering.
    ///
    /// `name` must be a micro service name (letters, digits, `-`, `_`).
    pub async fn announce(
        &self,
        client: &async_nats::Client,
        name: &str,
    ) -> Result<Announcement, SessionError> {
        use async_nats::service::ServiceExt;
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            SessionError::Transport(TransportError::Subscribe {
                inbox: format!("$SRV.*.{name}"),
                reason: format!("cannot {what}: {e}"),
                source: None,
            })
        };
        let stats = {
            let c = self.counters.clone();
            move || c.snapshot().to_json()
        };
        let for_handler = stats.clone();
        let metadata = HashMap::from([
            ("swp.subject".to_string(), self.subject.clone()),
            (
                "swp.version".to_string(),
                env!("CARGO_PKG_VERSION").to_string(),
            ),
        ]);
        let micro = client
            .service_builder()
            .description(format!("swp sessions on {}", self.subject))
            .metadata(metadata)
            .stats_handler(move |_, _| for_handler())
            .start(name, env!("CARGO_PKG_VERSION"))
            .await
            .map_err(|e| fail("register with the NATS service API", &e))?;
        let mut endpoint = micro
            .endpoint(format!("{}.info", self.subject))
            .await
            .map_err(|e| fail("add the info endpoint", &e))?;
        // Discoverable once this returns: the server has the micro
        // subscriptions (a program that says "serving" next must not have
        // `nats micro info` answered "no responders").
        client
            .flush()
            .await
            .map_err(|e| fail("flush the NATS service API's subscriptions", &e))?;
        let answer = tokio::spawn(async move {
            while let Some(req) = endpoint.next().await {
                let body = Bytes::from(stats().to_string());
                if let Err(e) = req.respond(Ok(body)).await {
                    tracing::debug!(error = %e, "could not answer an info request");
                }
            }
        });
        Ok(Announcement {
            _micro: micro,
            answer,
        })
    }
}

/// A service registered with the NATS service API ([`Service::announce`]);
/// dropping it stops answering info requests.
pub struct Announcement {
    _micro: async_nats::service::Service,
    answer: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Announcement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Announcement").finish_non_exhaustive()
    }
}

impl Drop for Announcement {
    fn drop(&mut self) {
        self.answer.abort();
    }
}

impl ServiceStats {
    /// The counters as a JSON object (what `nats micro stats` shows).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "sessions_accepted": self.accepted,
            "sessions_active": self.active,
            "refused_busy": self.refused_busy,
            "handshakes_failed": self.handshakes_failed,
            "syn_retransmits": self.syn_retransmits,
            "dropped": self.dropped,
            "bytes_received": self.bytes_received,
            "bytes_sent": self.bytes_sent,
            "sessions_failed": self.sessions_failed,
        })
    }
}

/// The task that owns the service subject: it reads Syns and starts, feeds
/// or refuses sessions.
async fn demux(
    transport: Arc<dyn Transport>,
    cfg: ServiceConfig,
    mut incoming: Incoming,
    accepted: mpsc::Sender<Session>,
    counters: Arc<Counters>,
) {
    let pending: Pending = Arc::default();
    while let Some(bytes) = incoming.next().await {
        let syn = match codec::decode(&bytes) {
            Ok(p)
                if p.kind == Kind::Syn
                    && !p.from_nonce.is_empty()
                    && check_subject(&p.from).is_ok() =>
            {
                p
            }
            _ => {
                counters.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        let key = (syn.from.to_string(), syn.from_nonce.to_string());
        let known = pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        if let Some(tx) = known {
            // A retransmission (our SynAck was lost or is slow): to the
            // session answering it, addressed to its private inbox there.
            counters.syn_retransmits.fetch_add(1, Ordering::Relaxed);
            let _ = tx.send(());
            continue;
        }
        let Ok(slot) = counters.slots.clone().try_acquire_owned() else {
            counters.refused_busy.fetch_add(1, Ordering::Relaxed);
            refuse_busy(transport.as_ref(), &cfg, &syn).await;
            continue;
        };
        let Some(private) = transport.new_inbox() else {
            continue; // checked in bind
        };
        let (tx, rx) = mpsc::unbounded_channel::<()>();
        pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), tx);
        tokio::spawn(handshake(
            transport.clone(),
            cfg.tuning.clone(),
            syn,
            private,
            rx,
            slot,
            accepted.clone(),
            counters.clone(),
            pending.clone(),
            key,
        ));
    }
}

/// Runs one client's handshake on its private inbox; hands the session to
/// `accept` once established.
#[allow(clippy::too_many_arguments)]
async fn handshake(
    transport: Arc<dyn Transport>,
    tuning: Tuning,
    mut syn: Packet,
    private: String,
    retransmits: mpsc::UnboundedReceiver<()>,
    slot: tokio::sync::OwnedSemaphorePermit,
    accepted: mpsc::Sender<Session>,
    counters: Arc<Counters>,
    pending: Pending,
    key: (String, String),
) {
    let mut cfg = Config::new(private.clone(), syn.from.as_str()).with_tuning(tuning);
    cfg.one_syn = true;
    let result = async {
        let sub = transport.subscribe(&private).await?;
        // The Syn as if it had come to the private inbox; retransmissions
        // of it likewise.
        syn.dest = private.as_str().into();
        let first = codec::encode(&syn);
        let again = first.clone();
        let later = futures::stream::unfold(retransmits, |mut rx| async move {
            rx.recv().await.map(|()| ((), rx))
        })
        .map(move |()| again.clone());
        let syns = futures::stream::once(async move { first }).chain(later);
        let incoming = futures::stream::select(syns, sub).boxed();
        let counted = counters.clone();
        let on_close = move |c: &crate::proto::Connection| {
            let app = c.stats().app;
            counted
                .bytes_received
                .fetch_add(app.bytes_read, Ordering::Relaxed);
            counted
                .bytes_sent
                .fetch_add(app.bytes_written, Ordering::Relaxed);
            if !c.close_reason().is_some_and(|r| r.is_normal()) {
                counted.sessions_failed.fetch_add(1, Ordering::Relaxed);
            }
            drop(slot); // the next client may come
        };
        Session::start_with(
            transport.clone(),
            cfg,
            incoming,
            crate::session::Open::Once,
            Some(Box::new(on_close)),
        )
        .await
    }
    .await;
    pending
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&key);
    match result {
        Ok(session) => {
            counters.accepted.fetch_add(1, Ordering::Relaxed);
            if accepted.send(session).await.is_err() {
                tracing::debug!("the service was dropped; session discarded");
            }
        }
        Err(e) => {
            counters.handshakes_failed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(client = %key.0, error = %e, "service handshake failed");
        }
    }
}

/// Tells a client over the limit at once, with a Reset it believes (it
/// carries the client's nonce).
async fn refuse_busy(transport: &dyn Transport, cfg: &ServiceConfig, syn: &Packet) {
    let mut r = Packet::new(Kind::Reset);
    r.from = cfg.subject.as_str().into();
    r.dest = syn.from.clone();
    r.from_nonce = "busy".into();
    r.dest_nonce = syn.from_nonce.clone();
    r.seq = ResetCode::Busy.to_wire();
    r.data = Bytes::from(format!(
        "the service on {:?} is running its limit of {} sessions: retry later, or add members to its queue group",
        cfg.subject, cfg.max_sessions
    ));
    tracing::debug!(client = %syn.from, "refused: at the session limit");
    if let Err(e) = transport.publish(&syn.from, codec::encode(&r)).await {
        tracing::debug!(error = %e, "could not tell a refused client");
    }
}
