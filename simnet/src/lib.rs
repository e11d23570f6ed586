//! # simnet: a deterministic simulated message network
//!
//! `simnet` moves opaque messages ([`Bytes`]) between named inboxes in *virtual
//! time*. It knows nothing about the protocol that runs over it, so a protocol
//! crate can depend on it (and test itself with it) without a cycle.
//!
//! What it simulates, per directed link (`from` → `to`):
//! * latency with uniform jitter, and a bandwidth limit (serialisation delay);
//! * loss, duplication, reordering (an extra delay for some messages) and
//!   corruption (one byte flipped), each with a probability;
//! * targeted [`Rule`]s: "drop the next 2 messages that match this predicate",
//!   "delay every message to B by 50 ms", "corrupt data packets" ...;
//! * partitions between two inboxes, and black holes (an inbox that swallows
//!   everything), both of which can be healed;
//! * bounded inboxes: a message that arrives at a full inbox is dropped and
//!   counted as an overflow (what NATS calls a slow consumer).
//!
//! ## Determinism
//! Everything is reproducible from one `u64` seed. Each directed link has its
//! own ChaCha8 RNG derived from the seed and the two inbox names, so traffic on
//! one link never perturbs the random choices made on another. Scheduled
//! deliveries sit in a heap keyed by `(arrival time, sequence id)`, so ties
//! always resolve in send order. No wall clock is read, no `HashMap` is
//! iterated.
//!
//! ## Driving it
//! ```
//! use simnet::{SimNet, LinkConfig};
//! use std::time::Duration;
//!
//! let mut net = SimNet::new(42);
//! net.set_default_link(LinkConfig::new().latency(Duration::from_millis(1)));
//! let a = net.add_inbox("A", 1024);
//! let b = net.add_inbox("B", 1024);
//! net.send(a, b, bytes::Bytes::from_static(b"hello"));
//! // Nothing has arrived yet: time has not moved.
//! assert!(net.recv(b).is_none());
//! let t = net.next_arrival().unwrap();
//! net.advance_to(t);
//! assert_eq!(&net.recv(b).unwrap().payload[..], b"hello");
//! assert_eq!(net.now(), Duration::from_millis(1));
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod link;
mod monitor;
mod net;
mod rule;
mod stats;

pub use link::LinkConfig;
pub use monitor::{DropReason, Monitor};
pub use net::SimNet;
pub use rule::{Rule, RuleId, Verdict};
pub use stats::{InboxStats, Summary};

use bytes::Bytes;
use std::time::Duration;

/// Identifies an inbox of a [`SimNet`]; returned by [`SimNet::add_inbox`].
///
/// ```
/// let mut net = simnet::SimNet::new(1);
/// let a = net.add_inbox("A", 8);
/// assert_eq!(net.add_inbox("A", 8), a); // one name, one inbox
/// assert_ne!(net.add_inbox("B", 8), a);
/// assert_eq!(net.name(a), "A");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InboxId(pub usize);

/// A message in the network: who sent it, to whom, when, and its bytes.
///
/// ```
/// use simnet::{LinkConfig, SimNet};
/// use std::time::Duration;
/// let mut net = SimNet::new(1);
/// let (a, b) = (net.add_inbox("A", 1024), net.add_inbox("B", 1024));
/// net.send(a, b, "one".into());
/// net.send(a, b, "two".into());
/// net.advance_to(Duration::ZERO);
/// let e = net.recv(b).unwrap();
/// assert_eq!((e.from, e.to, e.link_seq, &e.payload[..]), (a, b, 0, &b"one"[..]));
/// assert_eq!(e.sent_at, Duration::ZERO);
/// assert_eq!(net.recv(b).unwrap().link_seq, 1);
/// ```
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The sending inbox.
    pub from: InboxId,
    /// The destination inbox.
    pub to: InboxId,
    /// Virtual time at which it was sent.
    pub sent_at: Duration,
    /// Per-link send sequence number (0, 1, 2 ... for each directed link);
    /// used to count reordering.
    pub link_seq: u64,
    /// The message itself.
    pub payload: Bytes,
}
