//! Targeted faults: a [`Rule`] matches messages by a predicate and drops,
//! delays or corrupts them, for a count or for ever.

use crate::*;
use std::fmt;
use std::time::Duration;

/// What a [`Rule`] does to a message it matches.
///
/// ```
/// use simnet::{Rule, SimNet, Verdict};
/// use std::time::Duration;
/// let ms = Duration::from_millis;
/// let mut net = SimNet::new(1);
/// let (a, b) = (net.add_inbox("A", 1024), net.add_inbox("B", 1024));
/// net.add_rule(Rule::new("slow", Verdict::Delay(ms(50)), |_| true));
/// net.send(a, b, "x".into());
/// assert_eq!(net.next_arrival(), Some(ms(50)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver normally (useful to shield some messages from later rules).
    Pass,
    /// Lose the message.
    Drop,
    /// Deliver it twice.
    Duplicate,
    /// Deliver it after this extra delay.
    Delay(Duration),
    /// Flip one byte (chosen by the link's RNG) before delivery.
    Corrupt,
}

type Predicate = Box<dyn FnMut(&Envelope) -> bool + Send>;

/// A targeted fault: messages that match `predicate` get `verdict`, for the
/// next `count` matches (or forever). Rules are consulted in the order they
/// were installed; the first one that matches and has uses left decides.
///
/// ```
/// use simnet::{Rule, SimNet, Verdict};
/// use std::time::Duration;
/// let mut net = SimNet::new(1);
/// let (a, b) = (net.add_inbox("A", 1024), net.add_inbox("B", 1024));
/// // The first matching rule decides: acks are shielded, the rest dropped.
/// net.add_rule(Rule::new("keep acks", Verdict::Pass, |e| e.payload.starts_with(b"ack")));
/// net.add_rule(Rule::new("drop the rest", Verdict::Drop, |_| true));
/// net.send(a, b, "ack 1".into());
/// net.send(a, b, "data 1".into());
/// net.advance_to(Duration::ZERO);
/// assert_eq!(&net.recv(b).unwrap().payload[..], b"ack 1");
/// assert!(net.recv(b).is_none());
/// assert_eq!(net.stats(b).dropped_by_rule, 1);
/// ```
pub struct Rule {
    pub(crate) name: String,
    pub(crate) predicate: Predicate,
    pub(crate) verdict: Verdict,
    pub(crate) remaining: Option<u64>,
    pub(crate) hits: u64,
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rule")
            .field("name", &self.name)
            .field("verdict", &self.verdict)
            .field("remaining", &self.remaining)
            .field("hits", &self.hits)
            .finish()
    }
}

impl Rule {
    /// A rule that applies `verdict` to every message matching `predicate`.
    ///
    /// ```
    /// use simnet::{Rule, Verdict};
    /// // Drop the first two messages that start with byte 0x01.
    /// let r = Rule::new("drop two", Verdict::Drop, |e| e.payload.first() == Some(&1)).times(2);
    /// assert_eq!(r.hits(), 0);
    /// ```
    pub fn new(
        name: impl Into<String>,
        verdict: Verdict,
        predicate: impl FnMut(&Envelope) -> bool + Send + 'static,
    ) -> Self {
        Rule {
            name: name.into(),
            predicate: Box::new(predicate),
            verdict,
            remaining: None,
            hits: 0,
        }
    }
    /// Apply only to the next `n` matching messages, then stop matching.
    ///
    /// ```
    /// use simnet::{Rule, SimNet, Verdict};
    /// use std::time::Duration;
    /// let mut net = SimNet::new(1);
    /// let (a, b) = (net.add_inbox("A", 1024), net.add_inbox("B", 1024));
    /// let r = net.add_rule(Rule::new("drop two", Verdict::Drop, |_| true).times(2));
    /// for i in 0..4u8 {
    ///     net.send(a, b, vec![i].into());
    /// }
    /// net.advance_to(Duration::ZERO);
    /// assert_eq!(net.pending(b), 2);
    /// assert_eq!(net.recv(b).unwrap().payload[0], 2); // 0 and 1 were dropped
    /// assert_eq!(net.rule_hits(r), 2);
    /// ```
    pub fn times(mut self, n: u64) -> Self {
        self.remaining = Some(n);
        self
    }
    /// How many messages this rule has applied to so far.
    ///
    /// ```
    /// use simnet::{Rule, Verdict};
    /// // A rule counts once installed; read the count with SimNet::rule_hits.
    /// assert_eq!(Rule::new("r", Verdict::Pass, |_| true).hits(), 0);
    /// ```
    pub fn hits(&self) -> u64 {
        self.hits
    }
}

/// Handle to an installed rule, for [`SimNet::rule_hits`].
///
/// ```
/// use simnet::{Rule, SimNet, Verdict};
/// use std::time::Duration;
/// let mut net = SimNet::new(1);
/// let (a, b) = (net.add_inbox("A", 1024), net.add_inbox("B", 1024));
/// let dup = net.add_rule(Rule::new("dup", Verdict::Duplicate, |_| true).times(1));
/// net.send(a, b, "x".into());
/// net.send(a, b, "y".into());
/// while let Some(t) = net.next_arrival() {
///     net.advance_to(t);
/// }
/// assert_eq!(net.rule_hits(dup), 1);
/// assert_eq!(net.pending(b), 3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleId(pub(crate) usize);
