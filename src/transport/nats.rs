//! [`Transport`] over a real NATS server (async-nats).
//!
//! Facts that shape it (async-nats 0.51, measured on this project's machine):
//! a subscription is a bounded channel of `subscription_capacity` messages
//! (default 65,536, one value per client); when it is full, messages are
//! dropped and only a `SlowConsumer` event says so; there is no byte limit;
//! the server's `max_payload` (default 1 MiB) bounds a message. swp's window
//! and flight limit never let the peer's data and the acks of our own flight
//! put more into a subscription than that capacity minus a reserve for
//! control packets (docs/PROTOCOL.md §6).

use super::{Capacity, Cause, Incoming, Transport, TransportCounters, TransportError};
use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The default per-subscription capacity of async-nats.
///
/// ```
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let server = swp::server::NatsServer::start()?;
/// use swp::transport::{NatsOptions, NatsTransport};
/// use swp::transport::{nats::DEFAULT_SUBSCRIPTION_CAPACITY, Transport};
/// let t = NatsTransport::connect(NatsOptions::new(server.url())).await?;
/// assert_eq!(t.capacity().packets, Some(DEFAULT_SUBSCRIPTION_CAPACITY as u64));
/// # Ok(()) }
/// ```
pub const DEFAULT_SUBSCRIPTION_CAPACITY: usize = 65_536;

/// How long a round trip (`Transport::flush`, and confirming a new
/// subscription) waits for the server's answer before this connection
/// stops asking (a local server answers in well under a millisecond).
const PROBE_BOUND: std::time::Duration = std::time::Duration::from_secs(2);

/// How to connect to NATS; named as the `nats` CLI names them.
///
/// ```
/// use swp::transport::NatsOptions;
/// let o = NatsOptions::new("nats://127.0.0.1:4222").user_password("me", "secret");
/// assert_eq!(o.server(), "nats://127.0.0.1:4222");
/// ```
#[derive(Debug, Clone, Default)]
pub struct NatsOptions {
    /// The server URLs, credentials removed, joined with commas.
    server: String,
    servers: Vec<String>,
    user: Option<(String, String)>,
    token: Option<String>,
    creds: Option<PathBuf>,
    nkey_seed: Option<String>,
    tls_cert: Option<(PathBuf, PathBuf)>,
    tls_ca: Option<PathBuf>,
    subscription_capacity: Option<usize>,
    client_capacity: Option<usize>,
    name: Option<String>,
}

impl NatsOptions {
    /// Options for `server` (a URL such as `nats://host:4222`; several may be
    /// given comma-separated). Credentials written in the URL
    /// (`nats://user:pass@host`, `nats://token@host`) are honoured: they are
    /// taken out of the URL and passed as options, since async-nats ignores
    /// them there.
    ///
    /// ```
    /// use swp::transport::NatsOptions;
    /// let o = NatsOptions::new("nats://alice:s3cret@127.0.0.1:4222");
    /// // The credentials were taken out of the URL (async-nats would ignore them).
    /// assert_eq!(o.server(), "nats://127.0.0.1:4222");
    /// ```
    pub fn new(server: impl Into<String>) -> Self {
        let mut o = NatsOptions::default();
        for url in server
            .into()
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
        {
            let url = o.take_url_credentials(url);
            o.servers.push(url);
        }
        o.server = o.servers.join(",");
        o
    }

    /// Takes `user:password@` or `token@` out of one URL (percent-decoded,
    /// as URLs write `@` or `:` inside them); the first URL that has them
    /// sets them.
    fn take_url_credentials(&mut self, url: &str) -> String {
        let (scheme, rest) = match url.split_once("://") {
            Some((s, r)) => (format!("{s}://"), r),
            None => (String::new(), url),
        };
        let Some((cred, host)) = rest.rsplit_once('@') else {
            return url.to_string();
        };
        if self.user.is_none() && self.token.is_none() {
            match cred.split_once(':') {
                Some((u, p)) => self.user = Some((percent_decode(u), percent_decode(p))),
                None => self.token = Some(percent_decode(cred)),
            }
        }
        format!("{scheme}{host}")
    }
    /// The server URLs (credentials removed), comma-separated.
    ///
    /// ```
    /// use swp::transport::NatsOptions;
    /// assert_eq!(NatsOptions::new("nats://h:4222").server(), "nats://h:4222");
    /// ```
    pub fn server(&self) -> &str {
        &self.server
    }
    /// User and password (`--user`, `--password`).
    ///
    /// ```
    /// use swp::transport::NatsOptions;
    /// let o = NatsOptions::new("nats://127.0.0.1:4222").user_password("alice", "s3cret");
    /// assert_eq!(o.server(), "nats://127.0.0.1:4222");
    /// ```
    pub fn user_password(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.user = Some((user.into(), password.into()));
        self
    }
    /// Token (`--token`).
    ///
    /// ```
    /// use swp::transport::NatsOptions;
    /// let o = NatsOptions::new("nats://127.0.0.1:4222").token("t0ken");
    /// # let _ = o;
    /// ```
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }
    /// Credentials file (`--creds`).
    ///
    /// ```
    /// use swp::transport::NatsOptions;
    /// // A .creds file (JWT + NKey seed), as `nats --creds`.
    /// let o = NatsOptions::new("nats://127.0.0.1:4222").creds("/etc/nats/app.creds");
    /// # let _ = o;
    /// ```
    pub fn creds(mut self, path: impl Into<PathBuf>) -> Self {
        self.creds = Some(path.into());
        self
    }
    /// Authenticates with an NKey: `seed` is the user's seed (`SU...`), as
    /// the `nats` CLI reads it from the file given to `--nkey`.
    ///
    /// ```
    /// use swp::transport::NatsOptions;
    /// let o = NatsOptions::new("nats://127.0.0.1:4222").nkey_seed("SUAM...");
    /// # let _ = o;
    /// ```
    pub fn nkey_seed(mut self, seed: impl Into<String>) -> Self {
        self.nkey_seed = Some(seed.into());
        self
    }
    /// Client certificate and key (`--tlscert`, `--tlskey`).
    ///
    /// ```
    /// use swp::transport::NatsOptions;
    /// // Mutual TLS: the client's certificate and key, plus the CA that signed
    /// // the server's certificate.
    /// let o = NatsOptions::new("tls://nats.example:4222")
    ///     .tls_client_cert("client.pem", "client-key.pem")
    ///     .tls_ca("ca.pem");
    /// # let _ = o;
    /// ```
    pub fn tls_client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.tls_cert = Some((cert.into(), key.into()));
        self
    }
    /// CA certificate to verify the server (`--tlsca`).
    ///
    /// ```
    /// use swp::transport::NatsOptions;
    /// let o = NatsOptions::new("tls://nats.example:4222").tls_ca("ca.pem");
    /// # let _ = o;
    /// ```
    pub fn tls_ca(mut self, ca: impl Into<PathBuf>) -> Self {
        self.tls_ca = Some(ca.into());
        self
    }
    /// Per-subscription capacity in messages (default 65,536).
    ///
    /// ```
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let server = swp::server::NatsServer::start()?;
    /// use swp::transport::{NatsOptions, NatsTransport};
    /// use swp::transport::Transport;
    /// // Smaller inboxes: every session's window shrinks to fit them.
    /// let t = NatsTransport::connect(NatsOptions::new(server.url()).subscription_capacity(1024)).await?;
    /// assert_eq!(t.capacity().packets, Some(1024));
    /// # Ok(()) }
    /// ```
    pub fn subscription_capacity(mut self, n: usize) -> Self {
        self.subscription_capacity = Some(n.max(1));
        self
    }
    /// How many commands (publishes, subscribes) the client queues before
    /// a publish waits (async-nats's `client_capacity`, default 2,048). The
    /// queue fills while the client reconnects; sessions keep their timers
    /// running meanwhile, and one whose packets wait longer than its
    /// dead-peer budget ends with a transport error. Raise it when many
    /// busy sessions share one client.
    ///
    /// ```
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let server = swp::server::NatsServer::start()?;
    /// use swp::transport::{NatsOptions, NatsTransport};
    /// use swp::{proto::Config, Session};
    /// let nats = NatsTransport::connect(NatsOptions::new(server.url()).client_capacity(8192)).await?;
    /// let (a, b) = tokio::join!(
    ///     Session::connect(nats.clone(), Config::new("ex.cap.a", "ex.cap.b")),
    ///     Session::accept(nats.clone(), Config::new("ex.cap.b", "")),
    /// );
    /// a?.send("queued behind up to 8192 commands").await?;
    /// assert_eq!(b?.recv().await?.unwrap(), "queued behind up to 8192 commands");
    /// # Ok(()) }
    /// ```
    pub fn client_capacity(mut self, n: usize) -> Self {
        self.client_capacity = Some(n.max(1));
        self
    }
    /// Connection name shown by the server.
    ///
    /// ```
    /// use swp::transport::NatsOptions;
    /// // Shown in the server's monitoring (connz) as the client's name.
    /// let o = NatsOptions::new("nats://127.0.0.1:4222").name("file-sender");
    /// # let _ = o;
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

#[derive(Default)]
struct Counters {
    slow: AtomicU64,
    reconnects: AtomicU64,
    disconnects: AtomicU64,
    connects: AtomicU64,
}

/// A [`Transport`] on one NATS connection; share it among sessions.
///
/// ```
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let server = swp::server::NatsServer::start()?;
/// use swp::transport::{NatsOptions, NatsTransport};
/// use swp::{proto::Config, Session};
/// // One connection, many sessions (each on its own inbox).
/// let nats = NatsTransport::connect(NatsOptions::new(server.url())).await?;
/// let (a, b) = tokio::join!(
///     Session::connect(nats.clone(), Config::new("ex.a", "ex.b")),
///     Session::accept(nats.clone(), Config::new("ex.b", "")),
/// );
/// let (a, b) = (a?, b?);
/// a.send("over a real nats-server").await?;
/// assert_eq!(b.recv().await?.unwrap(), "over a real nats-server");
/// # Ok(()) }
/// ```
pub struct NatsTransport {
    client: async_nats::Client,
    capacity: usize,
    counters: Arc<Counters>,
    denials: Arc<Denials>,
    /// Round trips cannot be made on this connection: see `round_trip`.
    no_probe: AtomicBool,
}

/// What the server refused, learnt from its `-ERR` messages (they come
/// asynchronously, as async-nats events).
#[derive(Default)]
struct Denials {
    /// (operation, subject, the server's words)
    seen: std::sync::Mutex<Vec<(&'static str, String, String)>>,
    /// Service clients' Syns: reply inbox -> the service subject.
    requests: std::sync::Mutex<std::collections::HashMap<String, String>>,
    /// Reply inboxes whose service subject had no responders.
    no_responders: std::sync::Mutex<std::collections::HashMap<String, String>>,
    changed: Option<tokio::sync::watch::Sender<u64>>,
}

impl Denials {
    fn new() -> Self {
        Denials {
            changed: Some(tokio::sync::watch::channel(0).0),
            ..Default::default()
        }
    }

    fn note_request(&self, reply: &str, subject: &str) {
        let mut r = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        if !r.contains_key(reply) {
            r.insert(reply.to_string(), subject.to_string());
        }
    }

    /// The server said nobody subscribes to the subject a request that
    /// names `reply` went to.
    fn record_no_responders(&self, reply: &str) {
        let subject = self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(reply)
            .cloned()
            .unwrap_or_default();
        tracing::debug!(reply, subject, "NATS: no responders");
        self.no_responders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(reply.to_string(), subject);
        if let Some(tx) = &self.changed {
            tx.send_modify(|n| *n += 1);
        }
    }

    /// Forgets what was learnt about a reply inbox (its subscription ended).
    fn forget(&self, reply: &str) {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(reply);
        self.no_responders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(reply);
    }

    /// Records a server error if it is a permissions violation:
    /// `Permissions Violation for Publish to "x"` or `... for Subscription
    /// to "x"` (possibly followed by ` using queue "q"`).
    fn record(&self, message: &str) {
        let lower = message.to_ascii_lowercase();
        let (operation, marker) = if lower.contains("permissions violation for publish to") {
            ("publishing to", "publish to")
        } else if lower.contains("permissions violation for subscription to") {
            ("subscribing to", "subscription to")
        } else {
            return;
        };
        let Some(at) = lower.find(marker) else { return };
        let rest = &message[at + marker.len()..];
        let subject = rest
            .split('"')
            .nth(1)
            .unwrap_or_else(|| rest.trim())
            .to_string();
        tracing::debug!(operation, subject, message, "NATS permissions violation");
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).push((
            operation,
            subject,
            message.to_string(),
        ));
        if let Some(tx) = &self.changed {
            tx.send_modify(|n| *n += 1);
        }
    }

    /// The server refused publishing or subscribing to a subject below
    /// `prefix.` (the client's inbox prefix: a round trip's probe).
    fn refuses_below(&self, prefix: &str) -> bool {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.iter().any(|(_, s, _)| {
            s.strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('.') || rest.is_empty())
        })
    }

    fn find(&self, subject: &str) -> Option<TransportError> {
        // A 503 answers one request: it is reported once (the driver may
        // send the Syn again, and a second 503 is a second report).
        if let Some(service) = self
            .no_responders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(subject)
        {
            return Some(TransportError::NoResponders { subject: service });
        }
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.iter()
            .find(|(_, s, _)| s == subject)
            .map(|(operation, subject, reason)| TransportError::Denied {
                operation,
                subject: subject.clone(),
                reason: reason.clone(),
            })
    }
}

/// A connect error in words that say what to check.
fn connect_reason(e: &async_nats::ConnectError) -> String {
    use async_nats::ConnectErrorKind as K;
    match e.kind() {
        K::AuthorizationViolation | K::Authentication => format!(
            "{e}: the server refused these credentials (check --user/--password, --token, \
             --creds or --nkey)"
        ),
        K::Tls => {
            format!("{e}: TLS failed (check --tlsca, --tlscert, --tlskey and the URL scheme)")
        }
        K::ServerParse => {
            format!("{e}: not a valid server URL (nats://host:port, comma-separated)")
        }
        K::Dns => format!("{e}: the host name does not resolve"),
        K::TimedOut | K::Io | K::MaxReconnects => {
            format!("{e} (is nats-server running there? scripts/setup.sh installs one)")
        }
    }
}

impl std::fmt::Debug for NatsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsTransport")
            .field("capacity", &self.capacity)
            .field("max_payload", &self.client.server_info().max_payload)
            .finish()
    }
}

impl NatsTransport {
    /// Connects to NATS. Slow-consumer events and reconnects are counted and
    /// reported in every session's stats.
    ///
    /// ```
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let server = swp::server::NatsServer::start()?;
    /// use swp::transport::{NatsOptions, NatsTransport};
    /// use swp::transport::Transport;
    /// let nats = NatsTransport::connect(NatsOptions::new(server.url())).await?;
    /// assert!(nats.max_payload() >= 1 << 20); // the server's max_payload (1 MiB by default)
    /// // Nobody there: a clear error, not a hang.
    /// let err = NatsTransport::connect(NatsOptions::new("nats://127.0.0.1:1")).await.unwrap_err();
    /// assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
    /// # Ok(()) }
    /// ```
    pub async fn connect(opts: NatsOptions) -> Result<Arc<Self>, TransportError> {
        let counters = Arc::new(Counters::default());
        let capacity = opts
            .subscription_capacity
            .unwrap_or(DEFAULT_SUBSCRIPTION_CAPACITY);
        let c = counters.clone();
        let denials = Arc::new(Denials::new());
        let d = denials.clone();
        let mut o = async_nats::ConnectOptions::new()
            .subscription_capacity(capacity)
            .event_callback(move |ev| {
                let c = c.clone();
                let d = d.clone();
                async move {
                    match ev {
                        async_nats::Event::ServerError(async_nats::ServerError::Other(m)) => {
                            d.record(&m);
                        }
                        async_nats::Event::SlowConsumer(_) => {
                            c.slow.fetch_add(1, Ordering::Relaxed);
                        }
                        async_nats::Event::Connected
                            if c.connects.fetch_add(1, Ordering::Relaxed) > 0 =>
                        {
                            c.reconnects.fetch_add(1, Ordering::Relaxed);
                        }
                        async_nats::Event::Disconnected => {
                            c.disconnects.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {}
                    }
                }
            });
        if let Some((u, p)) = opts.user {
            o = o.user_and_password(u, p);
        }
        if let Some(t) = opts.token {
            o = o.token(t);
        }
        if let Some(path) = &opts.creds {
            o = o.credentials_file(path).await.map_err(|e| {
                TransportError::Closed(format!(
                    "cannot read credentials file {}: {e}",
                    path.display()
                ))
            })?;
        }
        if let Some(seed) = opts.nkey_seed {
            o = o.nkey(seed);
        }
        if let Some((cert, key)) = opts.tls_cert {
            o = o.add_client_certificate(cert, key).require_tls(true);
        }
        if let Some(ca) = opts.tls_ca {
            o = o.add_root_certificates(ca).require_tls(true);
        }
        if let Some(n) = opts.name {
            o = o.name(n);
        }
        if let Some(n) = opts.client_capacity {
            o = o.client_capacity(n);
        }
        if opts.servers.is_empty() {
            return Err(TransportError::Connect {
                server: String::new(),
                reason: "no server URL given".into(),
                source: None,
            });
        }
        let client =
            o.connect(opts.servers.as_slice())
                .await
                .map_err(|e| TransportError::Connect {
                    server: opts.server.clone(),
                    reason: connect_reason(&e),
                    source: Some(Cause::new(e)),
                })?;
        Ok(Arc::new(NatsTransport {
            client,
            capacity,
            counters,
            denials,
            no_probe: AtomicBool::new(false),
        }))
    }

    /// Wraps a client built elsewhere. Its subscription capacity must be
    /// given (async-nats does not expose it), and its slow-consumer events
    /// and the server's permission errors are not learnt (install your own
    /// event callback). So where the server refuses the client's inbox
    /// prefix, the first round trip of `flush` or `subscribe` waits 2 s for
    /// its probe, and the transport then flushes without one.
    ///
    /// ```
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let server = swp::server::NatsServer::start()?;
    /// use swp::transport::{NatsOptions, NatsTransport};
    /// use swp::transport::Transport;
    /// let client = async_nats::connect(server.url()).await?;
    /// let t = NatsTransport::from_client(client, 65_536);
    /// assert_eq!(t.capacity().packets, Some(65_536));
    /// # Ok(()) }
    /// ```
    pub fn from_client(client: async_nats::Client, subscription_capacity: usize) -> Arc<Self> {
        Arc::new(NatsTransport {
            client,
            capacity: subscription_capacity,
            counters: Arc::default(),
            // Events go to whoever built the client: nothing to learn here.
            denials: Arc::default(),
            no_probe: AtomicBool::new(false),
        })
    }

    /// Makes sure the server has the subscription before the caller tells
    /// anyone to send to it (a round trip: the server handles one
    /// client's commands in order), then gives its stream.
    async fn confirmed(
        &self,
        sub: async_nats::Subscriber,
        subject: String,
    ) -> Result<Incoming, TransportError> {
        self.round_trip()
            .await
            .map_err(|e| TransportError::Subscribe {
                inbox: subject.clone(),
                reason: format!("after subscribing: {e}"),
                source: Some(Cause::new(e)),
            })?;
        Ok(incoming(sub, subject, self.denials.clone()))
    }

    /// Returns once the server has handled everything this client sent
    /// before: nats.go's `Flush` (a PING answered by a PONG). async-nats's
    /// `flush` only writes the client's buffer to the socket, and a process
    /// that exits right after it can lose what it wrote: closing a socket
    /// with unread input (a peer's stream still arriving) sends a TCP reset,
    /// the server's next write to it fails, and the server closes the
    /// connection without reading the rest (seen: a receiver's last Reset,
    /// so its sender waited for the dead-peer budget). async-nats has no
    /// public PING, so this subscribes to a fresh inbox, publishes an empty
    /// message to it and waits for that message to come back: the server
    /// delivers it only after handling what came before on this connection.
    /// (It used to take the "no responders" answer to a request as the
    /// PONG; anyone subscribed to `>` or `_INBOX.>`, as `nats sub '>'` is
    /// when someone watches the traffic, silenced that answer, and every
    /// round trip, so every session's start, waited the whole bound.)
    ///
    /// Where that probe cannot work (permissions that deny publishing or
    /// subscribing below the inbox prefix), this transport stops probing
    /// and `flush` writes the buffer only, as async-nats's does. No answer
    /// within [`PROBE_BOUND`] ends the wait (see `unanswered`).
    async fn round_trip(&self) -> Result<(), TransportError> {
        self.client
            .flush()
            .await
            .map_err(|e| TransportError::Closed(format!("flush: {e}")))?;
        if self.no_probe.load(Ordering::Relaxed) {
            return Ok(());
        }
        let subject = self.client.new_inbox();
        let prefix = subject.rsplit_once('.').map_or("", |(p, _)| p).to_string();
        let mut changed = self.failures();
        let denied = async {
            if let Some(rx) = changed.as_mut() {
                while rx.changed().await.is_ok() {
                    if self.denials.refuses_below(&prefix) {
                        return;
                    }
                }
            }
            // Nothing (more) will be learnt: the probe's bound decides.
            std::future::pending::<()>().await
        };
        let echo = async {
            let failed = |e: &dyn std::fmt::Display| {
                TransportError::Closed(format!("a round trip to the server failed: {e}"))
            };
            let mut sub = self
                .client
                .subscribe(subject.clone())
                .await
                .map_err(|e| failed(&e))?;
            self.client
                .publish(subject, Bytes::new())
                .await
                .map_err(|e| failed(&e))?;
            self.client.flush().await.map_err(|e| failed(&e))?;
            // Dropping `sub` afterwards unsubscribes.
            Ok::<_, TransportError>(sub.next().await.is_some())
        };
        tokio::select! {
            r = tokio::time::timeout(PROBE_BOUND, echo) => match r {
                Ok(Ok(true)) => Ok(()),
                // The client closed the subscription: it is closing.
                Ok(Ok(false)) => Err(TransportError::Closed(
                    "the connection closed during a round trip".into(),
                )),
                Ok(Err(e)) => Err(e),
                Err(_) => self.unanswered(),
            },
            _ = denied => self.stop_probing("the server's permissions refuse the inbox prefix"),
        }
    }

    /// The probe got no answer within its bound. With the server's errors
    /// learnt here, a refusal would have ended it at once, so the server or
    /// the connection is slow (a reconnect): go on, and probe next time. A
    /// client built elsewhere tells us nothing, so a refusal and slowness
    /// look alike: stop probing rather than wait each time.
    fn unanswered(&self) -> Result<(), TransportError> {
        if self.denials.changed.is_none() {
            return self
                .stop_probing("no answer within the probe's bound (a client built elsewhere)");
        }
        tracing::debug!(bound = ?PROBE_BOUND, "NATS flush: the server did not answer in time");
        Ok(())
    }

    /// Round trips fall back to writing the buffer only (see
    /// [`round_trip`](Self::round_trip)), from now on.
    fn stop_probing(&self, why: &str) -> Result<(), TransportError> {
        if !self.no_probe.swap(true, Ordering::Relaxed) {
            tracing::debug!(
                why,
                "NATS flush: no round trip on this connection; it only writes the client's buffer"
            );
        }
        Ok(())
    }

    /// The underlying client.
    ///
    /// ```
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let server = swp::server::NatsServer::start()?;
    /// use swp::transport::{NatsOptions, NatsTransport};
    /// let nats = NatsTransport::connect(NatsOptions::new(server.url())).await?;
    /// // Plain NATS beside the sessions, on the same connection.
    /// nats.client().publish("ex.plain", "hello".into()).await?;
    /// # Ok(()) }
    /// ```
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }
}

impl Transport for NatsTransport {
    fn subscribe(&self, inbox: &str) -> BoxFuture<'_, Result<Incoming, TransportError>> {
        let inbox = inbox.to_string();
        Box::pin(async move {
            let sub = self.client.subscribe(inbox.clone()).await.map_err(|e| {
                TransportError::Subscribe {
                    inbox: inbox.clone(),
                    reason: e.to_string(),
                    source: Some(Cause::new(e)),
                }
            })?;
            self.confirmed(sub, inbox).await
        })
    }

    fn subscribe_queue(
        &self,
        subject: &str,
        group: &str,
    ) -> BoxFuture<'_, Result<Incoming, TransportError>> {
        let (subject, group) = (subject.to_string(), group.to_string());
        Box::pin(async move {
            let sub = self
                .client
                .queue_subscribe(subject.clone(), group.clone())
                .await
                .map_err(|e| TransportError::Subscribe {
                    inbox: format!("{subject} (queue group {group})"),
                    reason: e.to_string(),
                    source: Some(Cause::new(e)),
                })?;
            self.confirmed(sub, subject).await
        })
    }

    fn publish_request(
        &self,
        subject: &str,
        reply: &str,
        payload: Bytes,
    ) -> BoxFuture<'_, Result<(), TransportError>> {
        let (subject, reply) = (subject.to_string(), reply.to_string());
        self.denials.note_request(&reply, &subject);
        Box::pin(async move {
            self.client
                .publish_with_reply(subject.clone(), reply, payload)
                .await
                .map_err(|e| TransportError::Publish {
                    subject,
                    reason: e.to_string(),
                    source: Some(Cause::new(e)),
                })
        })
    }

    fn new_inbox(&self) -> Option<String> {
        Some(self.client.new_inbox())
    }

    fn publish(&self, subject: &str, payload: Bytes) -> BoxFuture<'_, Result<(), TransportError>> {
        let subject = subject.to_string();
        Box::pin(async move {
            self.client
                .publish(subject.clone(), payload)
                .await
                .map_err(|e| TransportError::Publish {
                    subject,
                    reason: e.to_string(),
                    source: Some(Cause::new(e)),
                })
        })
    }

    fn max_payload(&self) -> usize {
        // The server's own limit, even a small one: the session sizes its
        // packets under it (0: not told; NATS's default).
        match self.client.server_info().max_payload {
            0 => 1 << 20,
            n => n,
        }
    }

    fn denied(&self, subject: &str) -> Option<TransportError> {
        self.denials.find(subject)
    }

    fn failures(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.denials.changed.as_ref().map(|tx| tx.subscribe())
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(self.round_trip())
    }

    fn capacity(&self) -> Capacity {
        Capacity {
            packets: Some(self.capacity as u64),
            bytes: None,
        }
    }

    fn counters(&self) -> TransportCounters {
        TransportCounters {
            slow_consumer_events: self.counters.slow.load(Ordering::Relaxed),
            reconnects: self.counters.reconnects.load(Ordering::Relaxed),
            disconnects: self.counters.disconnects.load(Ordering::Relaxed),
        }
    }
}

/// A subscription as a stream of payloads. A "no responders" status (the
/// answer to a service client's Syn that reached nobody) is no packet: it
/// is recorded for [`Transport::denied`], and what was learnt about the
/// inbox is forgotten when the stream is dropped.
fn incoming(sub: async_nats::Subscriber, inbox: String, denials: Arc<Denials>) -> Incoming {
    struct Forget(String, Arc<Denials>);
    impl Drop for Forget {
        fn drop(&mut self) {
            self.1.forget(&self.0);
        }
    }
    let guard = Forget(inbox, denials.clone());
    sub.filter_map(move |m| {
        let _keep = &guard;
        let payload = if m.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
            denials.record_no_responders(m.subject.as_str());
            None
        } else {
            Some(m.payload)
        };
        std::future::ready(payload)
    })
    .boxed()
}

/// Decodes `%XX` escapes (as URLs write `@`, `:` or `%` in a user name or
/// password); anything else, malformed escapes included, is kept as is.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push(h << 4 | l);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_the_url_become_options() {
        let o = NatsOptions::new("nats://alice:s3cret@127.0.0.1:4222");
        assert_eq!(o.server(), "nats://127.0.0.1:4222");
        assert_eq!(o.user, Some(("alice".into(), "s3cret".into())));
        let o = NatsOptions::new("nats://tok3n@host:4222");
        assert_eq!(o.token.as_deref(), Some("tok3n"));
        assert_eq!(o.server(), "nats://host:4222");
        let o = NatsOptions::new("127.0.0.1:4222");
        assert_eq!((o.server(), o.user.is_none()), ("127.0.0.1:4222", true));
    }

    #[test]
    fn url_credentials_are_percent_decoded() {
        let o = NatsOptions::new("nats://bob:p%40ss%3Aw%25rd@host:4222");
        assert_eq!(o.user, Some(("bob".into(), "p@ss:w%rd".into())));
        assert_eq!(o.server(), "nats://host:4222");
        // A malformed escape stays as written.
        let o = NatsOptions::new("nats://tok%zz@host");
        assert_eq!(o.token.as_deref(), Some("tok%zz"));
    }

    #[test]
    fn several_servers_comma_separated() {
        let o = NatsOptions::new("nats://u:p@a:4222, nats://b:4223,c:4224");
        assert_eq!(o.servers, ["nats://a:4222", "nats://b:4223", "c:4224"]);
        assert_eq!(o.server(), "nats://a:4222,nats://b:4223,c:4224");
        assert_eq!(o.user, Some(("u".into(), "p".into())));
    }

    #[test]
    fn permission_violations_are_recognised() {
        let d = Denials::new();
        d.record("Permissions Violation for Publish to \"files.in\"");
        d.record("Permissions Violation for Subscription to \"swp.me\" using queue \"q\"");
        d.record("Maximum Payload Violation");
        assert!(matches!(
            d.find("files.in"),
            Some(TransportError::Denied {
                operation: "publishing to",
                ..
            })
        ));
        assert!(matches!(
            d.find("swp.me"),
            Some(TransportError::Denied {
                operation: "subscribing to",
                ..
            })
        ));
        assert!(d.find("other").is_none());
        assert_eq!(*d.changed.as_ref().unwrap().borrow(), 2);
    }
}
