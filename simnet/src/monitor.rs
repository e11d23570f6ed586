//! Watching the network: the [`Monitor`] trait sees every message sent,
//! delivered and dropped (with its [`DropReason`]).

use crate::*;
use std::time::Duration;

/// Why a message did not reach its inbox.
///
/// ```
/// use simnet::{DropReason, Envelope, Monitor, SimNet};
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
///
/// #[derive(Default, Clone)]
/// struct Drops(Arc<Mutex<Vec<DropReason>>>);
/// impl Monitor for Drops {
///     fn on_drop(&mut self, _: &Envelope, why: DropReason, _: Duration) {
///         self.0.lock().unwrap().push(why);
///     }
/// }
/// let drops = Drops::default();
/// let mut net = SimNet::new(1);
/// let (a, b) = (net.add_inbox("A", 1), net.add_inbox("B", 1));
/// net.set_monitor(Box::new(drops.clone()));
/// net.send(a, b, "fits".into());
/// net.send(a, b, "overflows".into()); // B holds one message
/// net.partition(a, b);
/// net.send(a, b, "cut".into()); // dropped at once, when sent
/// net.advance_to(Duration::ZERO); // the overflow happens on arrival
/// assert_eq!(*drops.0.lock().unwrap(), [DropReason::Partition, DropReason::Overflow]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DropReason {
    /// Random loss of the link.
    Loss,
    /// A [`Rule`] with [`Verdict::Drop`].
    Rule,
    /// The two inboxes are partitioned, or the destination is a black hole.
    Partition,
    /// The destination inbox was full.
    Overflow,
}

/// Watches every message the network accepts and delivers. The protocol
/// crate installs one to check its invariants (for swp: that no sender ever
/// exceeds the window its receiver advertised) without simnet knowing the
/// protocol.
///
/// ```
/// use simnet::{Envelope, Monitor, SimNet, LinkConfig};
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
///
/// /// Records the one-way delay of every delivered message.
/// #[derive(Default, Clone)]
/// struct Delays(Arc<Mutex<Vec<Duration>>>);
/// impl Monitor for Delays {
///     fn on_deliver(&mut self, e: &Envelope, now: Duration) {
///         self.0.lock().unwrap().push(now - e.sent_at);
///     }
/// }
/// let delays = Delays::default();
/// let mut net = SimNet::new(1);
/// net.set_default_link(LinkConfig::new().latency(Duration::from_millis(4)));
/// let (a, b) = (net.add_inbox("A", 8), net.add_inbox("B", 8));
/// net.set_monitor(Box::new(delays.clone()));
/// net.send(a, b, "x".into());
/// net.advance_to(Duration::from_secs(1));
/// assert_eq!(*delays.0.lock().unwrap(), [Duration::from_millis(4)]);
/// ```
pub trait Monitor: Send {
    /// Called for each message handed to [`SimNet::send`], before impairments.
    fn on_send(&mut self, _env: &Envelope, _now: Duration) {}
    /// Called when a message lands in its destination inbox.
    fn on_deliver(&mut self, _env: &Envelope, _now: Duration) {}
    /// Called when a message is lost, with the reason.
    fn on_drop(&mut self, _env: &Envelope, _reason: DropReason, _now: Duration) {}
}
