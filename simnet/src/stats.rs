//! Counters: per inbox ([`InboxStats`]) and for the whole run
//! ([`Summary`]).

use std::fmt;

/// Counters for one inbox. `sent` counts messages this inbox sent; the rest
/// count messages addressed to it.
///
/// ```
/// use simnet::{LinkConfig, SimNet};
/// use std::time::Duration;
/// let mut net = SimNet::new(1);
/// let (a, b) = (net.add_inbox("A", 1024), net.add_inbox("B", 1024));
/// net.set_default_link(LinkConfig::new().duplicate(1.0));
/// net.send(a, b, "hello".into());
/// while let Some(t) = net.next_arrival() {
///     net.advance_to(t);
/// }
/// let (sa, sb) = (net.stats(a), net.stats(b));
/// assert_eq!((sa.sent, sa.sent_bytes), (1, 5));
/// assert_eq!((sb.delivered, sb.delivered_bytes, sb.duplicated), (2, 10, 1));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InboxStats {
    /// Messages sent from this inbox.
    pub sent: u64,
    /// Bytes sent from this inbox.
    pub sent_bytes: u64,
    /// Messages delivered into this inbox (duplicates included).
    pub delivered: u64,
    /// Bytes delivered into this inbox.
    pub delivered_bytes: u64,
    /// Messages to this inbox lost at random.
    pub lost: u64,
    /// Messages to this inbox dropped by a rule.
    pub dropped_by_rule: u64,
    /// Messages to this inbox dropped by a partition or black hole.
    pub dropped_by_partition: u64,
    /// Messages dropped because this inbox was full.
    pub overflowed: u64,
    /// Extra copies delivered to this inbox.
    pub duplicated: u64,
    /// Messages delivered after a message sent later on the same link.
    pub reordered: u64,
    /// Messages delivered with a flipped byte.
    pub corrupted: u64,
}

impl InboxStats {
    /// All messages addressed to this inbox that never arrived.
    ///
    /// ```
    /// use simnet::InboxStats;
    /// let s = InboxStats { lost: 1, dropped_by_rule: 2, dropped_by_partition: 3, overflowed: 4, duplicated: 9, ..Default::default() };
    /// assert_eq!(s.dropped(), 10); // duplicates are extra arrivals, not drops
    /// ```
    pub fn dropped(&self) -> u64 {
        self.lost + self.dropped_by_rule + self.dropped_by_partition + self.overflowed
    }
}

/// Per-inbox counters of a run; `Display` prints a table.
///
/// ```
/// use simnet::{LinkConfig, SimNet};
/// use std::time::Duration;
/// let mut net = SimNet::new(1);
/// let (a, b) = (net.add_inbox("A", 1024), net.add_inbox("B", 1024));
/// net.send(a, b, "x".into());
/// net.advance_to(Duration::ZERO);
/// let s = net.summary();
/// assert_eq!(s.rows.len(), 2);
/// assert_eq!((s.rows[1].0.as_str(), s.rows[1].1.delivered), ("B", 1));
/// println!("{s}"); // a table: inbox, sent, delivered, dropped, dup, reorder, corrupt, overflow
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// `(inbox name, counters)` in inbox creation order.
    pub rows: Vec<(String, InboxStats)>,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<12} {:>9} {:>9} {:>8} {:>8} {:>8} {:>9} {:>9}",
            "inbox", "sent", "delivered", "dropped", "dup", "reorder", "corrupt", "overflow"
        )?;
        for (name, s) in &self.rows {
            writeln!(
                f,
                "{:<12} {:>9} {:>9} {:>8} {:>8} {:>8} {:>9} {:>9}",
                name,
                s.sent,
                s.delivered,
                s.dropped(),
                s.duplicated,
                s.reordered,
                s.corrupted,
                s.overflowed
            )?;
        }
        Ok(())
    }
}
