//! A directed link's behaviour: latency, jitter, bandwidth, loss,
//! duplication, reordering, corruption ([`LinkConfig`]).

use std::time::Duration;

/// Impairments of one directed link. Built with chained setters:
///
/// ```
/// use simnet::LinkConfig;
/// use std::time::Duration;
/// let lossy = LinkConfig::new()
///     .latency(Duration::from_millis(5))
///     .jitter(Duration::from_millis(1))
///     .loss(0.2)
///     .duplicate(0.01);
/// assert_eq!(lossy.loss_probability(), 0.2);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct LinkConfig {
    pub(crate) latency: Duration,
    pub(crate) jitter: Duration,
    pub(crate) bandwidth: Option<u64>,
    pub(crate) loss: f64,
    pub(crate) duplicate: f64,
    pub(crate) reorder: f64,
    pub(crate) reorder_delay: Duration,
    pub(crate) corrupt: f64,
}

impl Default for LinkConfig {
    /// A perfect link: no latency, infinite bandwidth, no impairments.
    fn default() -> Self {
        Self::new()
    }
}

impl LinkConfig {
    /// A perfect link: zero latency, unlimited bandwidth, nothing lost.
    ///
    /// ```
    /// use simnet::LinkConfig;
    /// assert_eq!(LinkConfig::new(), LinkConfig::default());
    /// assert_eq!(LinkConfig::new().loss_probability(), 0.0);
    /// assert!(LinkConfig::new().latency_value().is_zero());
    /// ```
    pub fn new() -> Self {
        LinkConfig {
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            bandwidth: None,
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(5),
            corrupt: 0.0,
        }
    }
    /// One-way propagation delay.
    ///
    /// ```
    /// use simnet::{LinkConfig, SimNet};
    /// use std::time::Duration;
    /// let ms = Duration::from_millis;
    /// let mut net = SimNet::new(1);
    /// let (a, b) = (net.add_inbox("A", 1024), net.add_inbox("B", 1024));
    /// net.set_default_link(LinkConfig::new().latency(ms(20)));
    /// net.send(a, b, "x".into());
    /// assert_eq!(net.next_arrival(), Some(ms(20)));
    /// ```
    pub fn latency(mut self, d: Duration) -> Self {
        self.latency = d;
        self
    }
    /// Uniform extra delay in `[0, jitter]` added to each message. Jitter
    /// larger than the gap between messages reorders them.
    ///
    /// ```
    /// use simnet::{LinkConfig, SimNet};
    /// use std::time::Duration;
    /// let ms = Duration::from_millis;
    /// let mut net = SimNet::new(1);
    /// let (a, b) = (net.add_inbox("A", 1024), net.add_inbox("B", 1024));
    /// net.set_default_link(LinkConfig::new().latency(ms(10)).jitter(ms(5)));
    /// for _ in 0..100 {
    ///     net.send(a, b, "x".into());
    /// }
    /// while let Some(t) = net.next_arrival() {
    ///     assert!(t >= ms(10) && t <= ms(15));
    ///     net.advance_to(t);
    /// }
    /// assert_eq!(net.pending(b), 100);
    /// assert!(net.stats(b).reordered > 0); // jitter larger than the gaps reorders
    /// ```
    pub fn jitter(mut self, d: Duration) -> Self {
        self.jitter = d;
        self
    }
    /// Link rate in bytes per second: a message occupies the link for
    /// `len / rate`, and messages queue behind each other. `None` = unlimited.
    ///
    /// ```
    /// use simnet::{LinkConfig, SimNet};
    /// use std::time::Duration;
    /// let ms = Duration::from_millis;
    /// let mut net = SimNet::new(1);
    /// let (a, b) = (net.add_inbox("A", 1024), net.add_inbox("B", 1024));
    /// net.set_default_link(LinkConfig::new().bandwidth(Some(1000))); // 1000 B/s
    /// net.send(a, b, vec![0u8; 100].into());
    /// net.send(a, b, vec![0u8; 100].into()); // queues behind the first
    /// assert_eq!(net.advance_to(ms(100)), 1);
    /// assert_eq!(net.advance_to(ms(200)), 1);
    /// ```
    pub fn bandwidth(mut self, bytes_per_sec: Option<u64>) -> Self {
        self.bandwidth = bytes_per_sec.filter(|b| *b > 0);
        self
    }
    /// Probability in `[0, 1]` that a message is lost.
    ///
    /// ```
    /// use simnet::{LinkConfig, SimNet};
    /// use std::time::Duration;
    /// let mut net = SimNet::new(1);
    /// let (a, b) = (net.add_inbox("A", 1024), net.add_inbox("B", 1024));
    /// net.set_default_link(LinkConfig::new().loss(0.5));
    /// for _ in 0..1000 {
    ///     net.send(a, b, "x".into());
    /// }
    /// net.advance_to(Duration::ZERO);
    /// let s = net.stats(b);
    /// assert_eq!(s.lost + s.delivered, 1000);
    /// assert!((400..600).contains(&s.lost), "{s:?}");
    /// assert_eq!(LinkConfig::new().loss(1.5).loss_probability(), 1.0); // clamped
    /// ```
    pub fn loss(mut self, p: f64) -> Self {
        self.loss = p.clamp(0.0, 1.0);
        self
    }
    /// Probability in `[0, 1]` that a message is delivered twice.
    ///
    /// ```
    /// use simnet::{LinkConfig, SimNet};
    /// use std::time::Duration;
    /// let mut net = SimNet::new(1);
    /// let (a, b) = (net.add_inbox("A", 1024), net.add_inbox("B", 1024));
    /// net.set_default_link(LinkConfig::new().duplicate(1.0));
    /// net.send(a, b, "x".into());
    /// while let Some(t) = net.next_arrival() {
    ///     net.advance_to(t);
    /// }
    /// assert_eq!(net.pending(b), 2);
    /// assert_eq!(net.stats(b).duplicated, 1);
    /// ```
    pub fn duplicate(mut self, p: f64) -> Self {
        self.duplicate = p.clamp(0.0, 1.0);
        self
    }
    /// Probability in `[0, 1]` that a message is held back by
    /// [`reorder_delay`](Self::reorder_delay), so later ones overtake it.
    ///
    /// ```
    /// use simnet::{LinkConfig, SimNet};
    /// use std::time::Duration;
    /// let mut net = SimNet::new(1);
    /// let (a, b) = (net.add_inbox("A", 1024), net.add_inbox("B", 1024));
    /// net.set_default_link(LinkConfig::new().reorder(0.3));
    /// for i in 0..100u8 {
    ///     net.send(a, b, vec![i].into());
    /// }
    /// while let Some(t) = net.next_arrival() {
    ///     net.advance_to(t);
    /// }
    /// let order: Vec<u8> = std::iter::from_fn(|| net.recv(b)).map(|e| e.payload[0]).collect();
    /// assert_eq!(order.len(), 100); // all arrive ...
    /// assert!(order.windows(2).any(|w| w[0] > w[1])); // ... not all in order
    /// assert!(net.stats(b).reordered > 0);
    /// ```
    pub fn reorder(mut self, p: f64) -> Self {
        self.reorder = p.clamp(0.0, 1.0);
        self
    }
    /// How long a reordered message is held back (default 5 ms).
    ///
    /// ```
    /// use simnet::{LinkConfig, SimNet};
    /// use std::time::Duration;
    /// let ms = Duration::from_millis;
    /// let mut net = SimNet::new(1);
    /// let (a, b) = (net.add_inbox("A", 1024), net.add_inbox("B", 1024));
    /// net.set_default_link(LinkConfig::new().reorder(1.0).reorder_delay(ms(7)));
    /// net.send(a, b, "x".into());
    /// assert_eq!(net.next_arrival(), Some(ms(7)));
    /// ```
    pub fn reorder_delay(mut self, d: Duration) -> Self {
        self.reorder_delay = d;
        self
    }
    /// Probability in `[0, 1]` that one byte of a message is flipped in flight.
    ///
    /// ```
    /// use simnet::{LinkConfig, SimNet};
    /// use std::time::Duration;
    /// let mut net = SimNet::new(1);
    /// let (a, b) = (net.add_inbox("A", 1024), net.add_inbox("B", 1024));
    /// net.set_default_link(LinkConfig::new().corrupt(1.0));
    /// net.send(a, b, vec![0u8; 16].into());
    /// net.advance_to(Duration::ZERO);
    /// let got = net.recv(b).unwrap().payload;
    /// assert_eq!(got.iter().map(|x| x.count_ones()).sum::<u32>(), 1); // one bit flipped
    /// assert_eq!(net.stats(b).corrupted, 1);
    /// ```
    pub fn corrupt(mut self, p: f64) -> Self {
        self.corrupt = p.clamp(0.0, 1.0);
        self
    }
    /// The configured loss probability.
    ///
    /// ```
    /// use simnet::LinkConfig;
    /// assert_eq!(LinkConfig::new().loss(0.25).loss_probability(), 0.25);
    /// assert_eq!(LinkConfig::new().loss(-1.0).loss_probability(), 0.0); // clamped
    /// ```
    pub fn loss_probability(&self) -> f64 {
        self.loss
    }
    /// The configured one-way latency.
    ///
    /// ```
    /// use simnet::LinkConfig;
    /// use std::time::Duration;
    /// let l = LinkConfig::new().latency(Duration::from_millis(3));
    /// assert_eq!(l.latency_value(), Duration::from_millis(3));
    /// ```
    pub fn latency_value(&self) -> Duration {
        self.latency
    }
}
