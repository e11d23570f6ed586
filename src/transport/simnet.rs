//! [`Transport`] over [`simnet`], in tokio's clock.
//!
//! Run under `#[tokio::test(start_paused = true)]` and the whole async stack
//! (driver task, timers, AsyncRead/AsyncWrite) runs in virtual time: tokio
//! jumps its clock to the next timer whenever every task is idle, and a
//! background pump delivers SimNet's messages when they are due.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! use swp::transport::{SimNetwork, Transport};
//! use swp::simnet::LinkConfig;
//! use futures::StreamExt;
//! let net = SimNetwork::new(1, LinkConfig::new().latency(std::time::Duration::from_millis(5)));
//! let a = net.transport("A", 1024);
//! let b = net.transport("B", 1024);
//! let mut inbox = b.subscribe("B").await.unwrap();
//! a.publish("B", bytes::Bytes::from_static(b"hi")).await.unwrap();
//! assert_eq!(&inbox.next().await.unwrap()[..], b"hi");
//! # }
//! ```

use super::{Capacity, Incoming, Transport, TransportError};
use bytes::Bytes;
use futures::future::BoxFuture;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use simnet::{InboxId, LinkConfig, SimNet};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Poll, Waker};
use tokio::sync::Notify;
use tokio::time::Instant;

struct State {
    net: SimNet,
    epoch: Instant,
    wakers: BTreeMap<InboxId, Waker>,
    unroutable: u64,
    /// Where the sessions' replay seeds come from (drawn from the
    /// network's seed).
    replays: ChaCha8Rng,
}

impl State {
    fn catch_up(&mut self) {
        let t = Instant::now().saturating_duration_since(self.epoch);
        if self.net.advance_to(t) > 0 {
            let ready: Vec<InboxId> = self
                .wakers
                .keys()
                .copied()
                .filter(|i| self.net.pending(*i) > 0)
                .collect();
            for i in ready {
                if let Some(w) = self.wakers.remove(&i) {
                    w.wake();
                }
            }
        }
    }
}

/// A simulated network shared by several [`SimTransport`]s. Create it inside
/// a tokio runtime: it spawns the task that delivers messages on time.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use swp::{simnet::LinkConfig, transport::{SimNetwork, Transport}};
/// use futures::StreamExt;
/// use std::time::Duration;
/// let net = SimNetwork::new(3, LinkConfig::new().latency(Duration::from_millis(40)));
/// let (a, b) = (net.transport("A", 64), net.transport("B", 64));
/// let mut inbox = b.subscribe("B").await?;
/// let t0 = tokio::time::Instant::now();
/// a.publish("B", "hi".into()).await?;
/// assert_eq!(inbox.next().await.unwrap(), "hi");
/// assert!(t0.elapsed() >= Duration::from_millis(40)); // in virtual time
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SimNetwork {
    state: Arc<Mutex<State>>,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for SimNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimNetwork").finish_non_exhaustive()
    }
}

impl SimNetwork {
    /// A network where every link has `link`'s impairments, all randomness
    /// from `seed`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use swp::{simnet::LinkConfig, transport::{SimNetwork, Transport}};
    /// // 20% loss on every link; the same seed loses the same packets.
    /// let net = SimNetwork::new(42, LinkConfig::new().loss(0.2));
    /// # let _ = net;
    /// # Ok(()) }
    /// ```
    pub fn new(seed: u64, link: LinkConfig) -> Self {
        let mut net = SimNet::new(seed);
        net.set_default_link(link);
        let state = Arc::new(Mutex::new(State {
            net,
            epoch: Instant::now(),
            wakers: BTreeMap::new(),
            unroutable: 0,
            replays: ChaCha8Rng::seed_from_u64(seed ^ 0x5E55_1045_5EED),
        }));
        let wake = Arc::new(Notify::new());
        tokio::spawn(pump(Arc::downgrade(&state), wake.clone()));
        SimNetwork { state, wake }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("simnet lock poisoned")
    }

    /// A transport whose packets leave from inbox `name`, which holds at
    /// most `capacity` undelivered messages.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use swp::{simnet::LinkConfig, transport::{SimNetwork, Transport}};
    /// let net = SimNetwork::new(1, LinkConfig::new());
    /// // An inbox holding at most 128 undelivered messages, like a NATS
    /// // subscription with that capacity; sessions size their windows to it.
    /// let t = net.transport("A", 128);
    /// assert_eq!(t.capacity().packets, Some(128));
    /// # Ok(()) }
    /// ```
    pub fn transport(&self, name: &str, capacity: usize) -> Arc<SimTransport> {
        let id = self.lock().net.add_inbox(name, capacity);
        Arc::new(SimTransport {
            net: self.clone(),
            id,
            capacity,
        })
    }

    /// Runs `f` on the underlying [`SimNet`] (install rules, partition,
    /// read counters ...).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use swp::{simnet::LinkConfig, transport::{SimNetwork, Transport}};
    /// use futures::StreamExt;
    /// let net = SimNetwork::new(1, LinkConfig::new());
    /// let (a, b) = (net.transport("A", 64), net.transport("B", 64));
    /// let mut inbox = b.subscribe("B").await?;
    /// // Cut the link, publish, heal: the packet is gone.
    /// net.with(|n| n.partition(a.inbox(), b.inbox()));
    /// a.publish("B", "lost".into()).await?;
    /// net.with(|n| n.heal(a.inbox(), b.inbox()));
    /// a.publish("B", "kept".into()).await?;
    /// assert_eq!(inbox.next().await.unwrap(), "kept");
    /// # Ok(()) }
    /// ```
    pub fn with<R>(&self, f: impl FnOnce(&mut SimNet) -> R) -> R {
        let mut st = self.lock();
        st.catch_up();
        let r = f(&mut st.net);
        drop(st);
        self.wake.notify_one();
        r
    }

    /// Packets published to a subject no inbox was created for.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// use swp::transport::{SimNetwork, Transport};
    /// let net = SimNetwork::new(1, swp::simnet::LinkConfig::new());
    /// let a = net.transport("A", 16);
    /// a.publish("nobody", bytes::Bytes::from_static(b"?")).await.unwrap();
    /// assert_eq!(net.unroutable(), 1);
    /// # }
    /// ```
    pub fn unroutable(&self) -> u64 {
        self.lock().unroutable
    }
}

async fn pump(state: Weak<Mutex<State>>, wake: Arc<Notify>) {
    loop {
        let notified = wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let next = {
            let Some(state) = state.upgrade() else { return };
            let mut st = state.lock().expect("simnet lock poisoned");
            st.catch_up();
            st.net.next_arrival().map(|d| st.epoch + d)
        };
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = &mut notified => {}
                }
            }
            None => notified.await,
        }
    }
}

/// One endpoint's view of a [`SimNetwork`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use swp::{simnet::LinkConfig, transport::{SimNetwork, Transport}};
/// use swp::{proto::Config, Session};
/// let net = SimNetwork::new(1, LinkConfig::new());
/// let (ta, tb) = (net.transport("A", 1024), net.transport("B", 1024));
/// let (a, b) = tokio::join!(
///     Session::connect(ta, Config::new("A", "B")),
///     Session::accept(tb, Config::new("B", "")),
/// );
/// a?.send("simulated").await?;
/// assert_eq!(b?.recv().await?.unwrap(), "simulated");
/// # Ok(()) }
/// ```
pub struct SimTransport {
    net: SimNetwork,
    id: InboxId,
    capacity: usize,
}

impl std::fmt::Debug for SimTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimTransport")
            .field("inbox", &self.id)
            .finish()
    }
}

impl SimTransport {
    /// The network this transport belongs to.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use swp::{simnet::LinkConfig, transport::{SimNetwork, Transport}};
    /// let net = SimNetwork::new(1, LinkConfig::new());
    /// let t = net.transport("A", 64);
    /// t.publish("nowhere", "x".into()).await?;
    /// assert_eq!(t.network().unroutable(), 1);
    /// # Ok(()) }
    /// ```
    pub fn network(&self) -> &SimNetwork {
        &self.net
    }
    /// This endpoint's inbox in the network.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use swp::{simnet::LinkConfig, transport::{SimNetwork, Transport}};
    /// let net = SimNetwork::new(1, LinkConfig::new());
    /// let t = net.transport("A", 64);
    /// assert_eq!(net.with(|n| n.lookup("A")), Some(t.inbox()));
    /// # Ok(()) }
    /// ```
    pub fn inbox(&self) -> InboxId {
        self.id
    }
}

impl Transport for SimTransport {
    fn subscribe(&self, inbox: &str) -> BoxFuture<'_, Result<Incoming, TransportError>> {
        let inbox = inbox.to_string();
        Box::pin(async move {
            let id = self.net.lock().net.lookup(&inbox).ok_or_else(|| TransportError::Subscribe {
                inbox: inbox.clone(),
                reason: "no such inbox in the simulated network: create it with SimNetwork::transport".into(),
                source: None,
            })?;
            let net = self.net.clone();
            let stream = futures::stream::poll_fn(move |cx| {
                let mut st = net.lock();
                st.catch_up();
                match st.net.recv(id) {
                    Some(env) => Poll::Ready(Some(env.payload)),
                    None => {
                        st.wakers.insert(id, cx.waker().clone());
                        Poll::Pending
                    }
                }
            });
            Ok(Box::pin(stream) as Incoming)
        })
    }

    fn publish(&self, subject: &str, payload: Bytes) -> BoxFuture<'_, Result<(), TransportError>> {
        {
            let mut st = self.net.lock();
            st.catch_up();
            match st.net.lookup(subject) {
                Some(to) => st.net.send(self.id, to, payload),
                None => st.unroutable += 1,
            }
        }
        self.net.wake.notify_one();
        Box::pin(async { Ok(()) })
    }

    fn max_payload(&self) -> usize {
        1 << 20
    }

    /// The next draw from the network's seed: the sessions' nonces replay
    /// with the network.
    fn replay_seed(&self) -> Option<u64> {
        Some(self.net.lock().replays.next_u64())
    }

    fn capacity(&self) -> Capacity {
        Capacity {
            packets: Some(self.capacity as u64),
            bytes: None,
        }
    }
}
