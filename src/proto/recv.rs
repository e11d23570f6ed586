//! The receiving half: reassembly, in-order delivery to the application, the
//! advertised window, and the selective-ack ranges.
//!
//! Invariants:
//! * `rcv_nxt` is the lowest sequence number not yet received; everything
//!   below it is in `ready` (not yet consumed) or was consumed.
//! * `ooo` holds received packets above `rcv_nxt`, each once; `runs` holds
//!   its maximal runs of consecutive sequence numbers (start -> end), kept
//!   as packets arrive, so the selective-ack ranges cost what changed, not
//!   what is held.
//! * The advertised edges are `consumed + capacity` in packets and bytes and
//!   never decrease (docs/PROTOCOL.md §6): whatever the peer may send fits in
//!   what this side holds, so data within the window is never refused and the
//!   transport beneath (a NATS subscription) is never overrun.

use super::packet::MAX_SACK_RANGES;
use bytes::{Bytes, BytesMut};
use std::collections::{BTreeMap, VecDeque};

/// A data packet's payload as it arrived.
#[derive(Debug, Clone)]
pub(crate) enum Payload {
    /// Stream bytes or (a piece of) one message.
    One(Bytes),
    /// Whole messages from a batch packet (already split and checked).
    Batch(Vec<Bytes>),
}

/// A received packet held out of order.
#[derive(Debug, Clone)]
struct Arrived {
    payload: Payload,
    end: u64,
    eom: bool,
}

/// In-order data ready for the application: a packet's payload, or one
/// message of a batch packet.
#[derive(Debug, Clone)]
struct Seg {
    seq: u64,
    data: Bytes,
    eom: bool,
    /// The last piece of packet `seq`: reading it frees a packet's slot.
    last: bool,
}

/// What became of an arriving data packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DataOutcome {
    /// The next expected packet: delivered in order.
    InOrder,
    /// Filled a gap: it and buffered packets after it became deliverable.
    FilledGap,
    /// Ahead of a gap: buffered.
    OutOfOrder,
    /// Already had it.
    Duplicate,
    /// Beyond the window we advertised: refused.
    BeyondWindow,
}

pub(crate) struct RecvState {
    pub(crate) rcv_nxt: u64,
    ooo: BTreeMap<u64, Arrived>,
    runs: BTreeMap<u64, u64>,
    ready: VecDeque<Seg>,
    /// Segments in `ready` that end a message.
    ready_eoms: usize,
    front_off: usize,
    pub(crate) ready_bytes: u64,
    /// All sequence numbers below this were fully read by the application.
    pub(crate) consumed_seq: u64,
    /// Stream bytes read by the application.
    pub(crate) consumed_bytes: u64,
    cfg_packets: u64,
    cfg_bytes: u64,
    cap_packets: u64,
    cap_bytes: u64,
    /// Current edges: `max(advertised, consumed + capacity)`.
    pub(crate) adv_seq: u64,
    pub(crate) adv_bytes: u64,
    /// Edges carried by the last packet we sent.
    pub(crate) sent_seq: u64,
    pub(crate) sent_bytes: u64,
    /// The peer's end of stream (its Fin's seq), once received in order.
    pub(crate) fin: Option<u64>,
    /// Bytes received in order (stream offset of rcv_nxt).
    pub(crate) bytes_in_order: u64,
    asap: Option<(usize, VecDeque<Bytes>)>,
    pub(crate) asap_dropped: u64,
    /// Seq of the most recent out-of-order arrival.
    last_arrival: Option<u64>,
    /// Bytes a peer may overshoot the byte edge by (a Go sender checks only
    /// that one byte of window is free).
    pub(crate) byte_slack: u64,
}

impl RecvState {
    pub(crate) fn new(window_packets: u64, window_bytes: u64, asap: Option<usize>) -> Self {
        let mut r = RecvState {
            rcv_nxt: 0,
            ooo: BTreeMap::new(),
            runs: BTreeMap::new(),
            ready: VecDeque::new(),
            ready_eoms: 0,
            front_off: 0,
            ready_bytes: 0,
            consumed_seq: 0,
            consumed_bytes: 0,
            cfg_packets: window_packets,
            cfg_bytes: window_bytes,
            cap_packets: window_packets,
            cap_bytes: window_bytes,
            adv_seq: 0,
            adv_bytes: 0,
            sent_seq: 0,
            sent_bytes: 0,
            fin: None,
            bytes_in_order: 0,
            asap: asap.map(|l| (l, VecDeque::new())),
            asap_dropped: 0,
            last_arrival: None,
            byte_slack: 0,
        };
        r.recompute_edges();
        r
    }

    /// Limits the window to what the transport can hold (minus the reserve
    /// for control packets). `None` means the transport has no such limit.
    pub(crate) fn set_transport_capacity(&mut self, packets: Option<u64>, bytes: Option<u64>) {
        self.cap_packets = self.cfg_packets.min(packets.unwrap_or(u64::MAX)).max(1);
        self.cap_bytes = self.cfg_bytes.min(bytes.unwrap_or(u64::MAX)).max(1);
        self.recompute_edges();
    }

    pub(crate) fn capacity(&self) -> (u64, u64) {
        (self.cap_packets, self.cap_bytes)
    }

    /// Edges follow consumption and capacity, but never fall below what was
    /// already advertised: a promise made to the peer is never retracted
    /// (RFC 9293 §3.8.6: "the receiver SHOULD NOT shrink the window").
    fn recompute_edges(&mut self) {
        self.adv_seq = self.sent_seq.max(self.consumed_seq + self.cap_packets);
        self.adv_bytes = self.sent_bytes.max(self.consumed_bytes + self.cap_bytes);
    }

    /// Records the edges a packet just carried to the peer.
    pub(crate) fn on_advertised(&mut self, wnd_seq: u64, wnd_bytes: u64) {
        self.sent_seq = self.sent_seq.max(wnd_seq);
        self.sent_bytes = self.sent_bytes.max(wnd_bytes);
    }

    /// Handles a data packet (`end` = its end offset in the stream).
    pub(crate) fn on_data(
        &mut self,
        seq: u64,
        payload: Payload,
        end: u64,
        eom: bool,
    ) -> DataOutcome {
        if let Some((limit, q)) = self.asap.as_mut() {
            let parts = match &payload {
                Payload::One(b) => std::slice::from_ref(b),
                Payload::Batch(v) => v.as_slice(),
            };
            for b in parts {
                if q.len() >= *limit {
                    q.pop_front();
                    self.asap_dropped += 1;
                }
                q.push_back(b.clone());
            }
        }
        if seq < self.rcv_nxt || self.ooo.contains_key(&seq) {
            return DataOutcome::Duplicate;
        }
        if seq >= self.adv_seq || end > self.adv_bytes.saturating_add(self.byte_slack) {
            return DataOutcome::BeyondWindow;
        }
        let arrived = Arrived { payload, end, eom };
        if seq > self.rcv_nxt {
            self.last_arrival = Some(seq);
            self.ooo.insert(seq, arrived);
            self.add_to_runs(seq);
            return DataOutcome::OutOfOrder;
        }
        self.push_ready(seq, arrived);
        // The run just above `seq`, if any, becomes deliverable whole.
        self.runs.remove(&(seq + 1));
        let mut filled = false;
        while let Some(a) = self.ooo.remove(&self.rcv_nxt) {
            self.push_ready(self.rcv_nxt, a);
            filled = true;
        }
        if filled {
            DataOutcome::FilledGap
        } else {
            DataOutcome::InOrder
        }
    }

    /// Adds out-of-order `seq` to the runs, joining its neighbours.
    fn add_to_runs(&mut self, seq: u64) {
        let mut start = seq;
        if let Some((&s, &e)) = self.runs.range(..seq).next_back()
            && e == seq
        {
            start = s;
        }
        let end = self.runs.remove(&(seq + 1)).unwrap_or(seq + 1);
        self.runs.insert(start, end);
    }

    fn push_ready(&mut self, seq: u64, a: Arrived) {
        self.rcv_nxt = seq + 1;
        self.bytes_in_order = a.end;
        match a.payload {
            Payload::One(data) => {
                self.ready_bytes += data.len() as u64;
                self.ready_eoms += a.eom as usize;
                self.ready.push_back(Seg {
                    seq,
                    data,
                    eom: a.eom,
                    last: true,
                });
            }
            Payload::Batch(parts) => {
                let n = parts.len();
                self.ready_eoms += n;
                for (i, data) in parts.into_iter().enumerate() {
                    self.ready_bytes += data.len() as u64;
                    self.ready.push_back(Seg {
                        seq,
                        data,
                        eom: true,
                        last: i + 1 == n,
                    });
                }
            }
        }
    }

    /// One past the highest sequence number received (in order or not).
    pub(crate) fn highest_seen(&self) -> u64 {
        self.ooo
            .keys()
            .next_back()
            .map_or(self.rcv_nxt, |s| (s + 1).max(self.rcv_nxt))
    }

    pub(crate) fn has_gap(&self) -> bool {
        !self.ooo.is_empty()
    }

    /// Selective-ack ranges `[start, end)` above `rcv_nxt`: first the range
    /// holding the most recent arrival, then the others lowest first, at
    /// most [`MAX_SACK_RANGES`]. Reporting the newest block first (RFC 2018
    /// §4) means every out-of-order arrival is reported by the ack it
    /// triggers even when there are more holes than ranges fit, so the
    /// sender's scoreboard (and RACK, which trusts it) stays complete.
    pub(crate) fn sack_ranges(&self) -> Vec<(u64, u64)> {
        let all = self.runs.iter().map(|(&s, &e)| (s, e));
        if self.runs.len() <= MAX_SACK_RANGES {
            return all.collect();
        }
        let recent = self
            .last_arrival
            .and_then(|seq| {
                self.runs
                    .range(..=seq)
                    .next_back()
                    .filter(|&(_, &e)| seq < e)
            })
            .or_else(|| self.runs.iter().next())
            .map(|(&s, &e)| (s, e))
            .expect("more runs than fit, so some");
        let mut out = Vec::with_capacity(MAX_SACK_RANGES);
        out.push(recent);
        out.extend(
            all.filter(|&(s, _)| s != recent.0)
                .take(MAX_SACK_RANGES - 1),
        );
        out
    }

    /// True once every byte before the peer's Fin was read.
    pub(crate) fn at_eof(&self) -> bool {
        self.fin.is_some() && self.ready.is_empty()
    }

    /// Whether a data packet at `seq` lies beyond the window we advertised
    /// (no correct peer sends it; see [`on_data`](Self::on_data)).
    pub(crate) fn beyond_window(&self, seq: u64) -> bool {
        seq >= self.adv_seq
    }

    pub(crate) fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// A whole message (through an end-of-message packet) is ready.
    pub(crate) fn has_message(&self) -> bool {
        self.ready_eoms > 0
    }

    /// The data held in order fills the whole window we advertised, and none
    /// of it ends a message: a message-reading application can never get
    /// the message, and the peer can never send its end. A correct sender
    /// never lets this happen (it refuses messages larger than our window,
    /// docs/PROTOCOL.md §10).
    pub(crate) fn message_cannot_end(&self) -> bool {
        self.has_ready()
            && self.ready_eoms == 0
            && (self.rcv_nxt >= self.adv_seq
                || self.bytes_in_order >= self.adv_bytes.saturating_add(self.byte_slack))
    }

    fn consume_front(&mut self, n: usize) {
        self.consumed_bytes += n as u64;
        self.ready_bytes -= n as u64;
        self.front_off += n;
        let front = self.ready.front().expect("consume from non-empty");
        if self.front_off == front.data.len() {
            if front.last {
                self.consumed_seq = front.seq + 1;
            }
            self.ready_eoms -= front.eom as usize;
            self.ready.pop_front();
            self.front_off = 0;
        }
        self.recompute_edges();
    }

    /// Copies in-order bytes into `buf`; returns how many.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> usize {
        let mut n = 0;
        while n < buf.len() {
            let Some(front) = self.ready.front() else {
                break;
            };
            let avail = &front.data[self.front_off..];
            let take = avail.len().min(buf.len() - n);
            buf[n..n + take].copy_from_slice(&avail[..take]);
            n += take;
            if avail.is_empty() {
                // Empty packet (zero-length message): just consume it.
                self.consume_front(0);
                continue;
            }
            self.consume_front(take);
        }
        n
    }

    /// Up to `max` bytes of the front packet, without copying.
    pub(crate) fn read_chunk(&mut self, max: usize) -> Option<Bytes> {
        loop {
            let front = self.ready.front()?;
            let avail = front.data.len() - self.front_off;
            if avail == 0 {
                self.consume_front(0);
                continue;
            }
            let take = avail.min(max.max(1));
            let chunk = front.data.slice(self.front_off..self.front_off + take);
            self.consume_front(take);
            return Some(chunk);
        }
    }

    /// The next whole message (zero-copy when it is one packet).
    pub(crate) fn recv_message(&mut self) -> Option<Bytes> {
        if !self.has_message() {
            return None;
        }
        let mut parts: Vec<Bytes> = Vec::new();
        loop {
            let front = self.ready.front().expect("message is complete");
            let eom = front.eom;
            let part = front.data.slice(self.front_off..);
            let len = part.len();
            parts.push(part);
            // Consume the rest of the front packet (this pops it, empty
            // packets included).
            self.consume_front(len);
            if eom {
                break;
            }
        }
        if parts.len() == 1 {
            return parts.pop();
        }
        let total = parts.iter().map(|p| p.len()).sum();
        let mut out = BytesMut::with_capacity(total);
        for p in parts {
            out.extend_from_slice(&p);
        }
        Some(out.freeze())
    }

    pub(crate) fn pop_asap(&mut self) -> Option<Bytes> {
        self.asap.as_mut()?.1.pop_front()
    }

    /// Packets the peer may still send before our window is full.
    pub(crate) fn window_packets_free(&self) -> u64 {
        self.adv_seq.saturating_sub(self.rcv_nxt)
    }

    /// Bytes the peer may still send (relative to what arrived in order).
    pub(crate) fn window_bytes_free(&self) -> u64 {
        self.adv_bytes.saturating_sub(self.bytes_in_order)
    }

    /// Should an explicit window update be sent? When the window we last
    /// advertised was nearly shut, or the edges moved by a quarter of the
    /// capacity since (receiver-side silly window avoidance).
    pub(crate) fn window_update_due(&self, max_payload: u64) -> bool {
        let grew_p = self.adv_seq.saturating_sub(self.sent_seq);
        let grew_b = self.adv_bytes.saturating_sub(self.sent_bytes);
        if grew_p == 0 && grew_b == 0 {
            return false;
        }
        let was_shut = self.sent_seq <= self.rcv_nxt
            || self.sent_bytes < self.bytes_in_order + max_payload.min(self.cap_bytes);
        was_shut || grew_p * 4 >= self.cap_packets || grew_b * 4 >= self.cap_bytes
    }
}

/// Scripted packet-in / state-out tests of the receiving half alone, one
/// rule each (smoltcp style): the numbers in each script are the contract.
#[cfg(test)]
mod tests {
    use super::*;

    fn one(b: &'static [u8]) -> Payload {
        Payload::One(Bytes::from_static(b))
    }

    /// The selective-ack ranges recomputed from scratch from what is held:
    /// the oracle for the incremental runs.
    fn sack_oracle(r: &RecvState) -> Vec<(u64, u64)> {
        let mut all: Vec<(u64, u64)> = Vec::new();
        for &seq in r.ooo.keys() {
            match all.last_mut() {
                Some((_, e)) if *e == seq => *e += 1,
                _ => all.push((seq, seq + 1)),
            }
        }
        if all.len() <= MAX_SACK_RANGES {
            return all;
        }
        let recent = r
            .last_arrival
            .and_then(|seq| all.iter().position(|&(s, e)| s <= seq && seq < e))
            .unwrap_or(0);
        let mut out = vec![all[recent]];
        out.extend(
            all.iter()
                .enumerate()
                .filter(|(i, _)| *i != recent)
                .map(|(_, r)| *r)
                .take(MAX_SACK_RANGES - 1),
        );
        out
    }

    #[test]
    fn incremental_sack_ranges_match_a_recount_under_random_arrivals() {
        use rand::{Rng, SeedableRng};
        let cases: u64 = std::env::var("SWP_RECV_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(200);
        for seed in 0..cases {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let n = rng.gen_range(1..400u64);
            let mut r = rx(n + 1, 1 << 30);
            // Arrivals: every seq once, some twice, in a shuffled order
            // that keeps many holes (and more than fit in one ack).
            let mut order: Vec<u64> = (0..n).collect();
            for i in (1..order.len()).rev() {
                order.swap(i, rng.gen_range(0..=i));
            }
            let dups: Vec<u64> = (0..n / 10).map(|_| rng.gen_range(0..n)).collect();
            order.extend(dups);
            for (k, &seq) in order.iter().enumerate() {
                r.on_data(seq, one(b"x"), seq + 1, false);
                assert_eq!(
                    r.sack_ranges(),
                    sack_oracle(&r),
                    "seed {seed}, arrival {k} (seq {seq})"
                );
            }
            assert_eq!(r.rcv_nxt, n, "seed {seed}");
            assert!(r.sack_ranges().is_empty(), "seed {seed}");
        }
    }

    /// A receiver with a window of `p` packets / `b` bytes that has sent its
    /// first advertisement.
    fn rx(p: u64, b: u64) -> RecvState {
        let mut r = RecvState::new(p, b, None);
        r.on_advertised(r.adv_seq, r.adv_bytes);
        r
    }

    #[test]
    fn in_order_out_of_order_gap_fill_duplicate() {
        let mut r = rx(8, 1000);
        assert_eq!(r.on_data(0, one(b"aa"), 2, false), DataOutcome::InOrder);
        assert_eq!(r.on_data(2, one(b"cc"), 6, false), DataOutcome::OutOfOrder);
        assert_eq!(r.on_data(2, one(b"cc"), 6, false), DataOutcome::Duplicate);
        assert_eq!((r.rcv_nxt, r.highest_seen(), r.has_gap()), (1, 3, true));
        assert_eq!(r.on_data(1, one(b"bb"), 4, false), DataOutcome::FilledGap);
        assert_eq!((r.rcv_nxt, r.bytes_in_order, r.has_gap()), (3, 6, false));
        assert_eq!(r.on_data(0, one(b"aa"), 2, false), DataOutcome::Duplicate);
        let mut buf = [0u8; 16];
        let n = r.read(&mut buf);
        assert_eq!(&buf[..n], b"aabbcc");
    }

    #[test]
    fn data_beyond_the_advertised_window_is_refused_by_seq_and_by_bytes() {
        let mut r = rx(2, 10);
        assert_eq!((r.adv_seq, r.adv_bytes), (2, 10));
        assert_eq!(r.on_data(2, one(b"x"), 1, false), DataOutcome::BeyondWindow);
        assert_eq!(
            r.on_data(0, one(b"0123456789a"), 11, false),
            DataOutcome::BeyondWindow
        );
        // The last packet and the last byte the window admits are taken.
        assert_eq!(
            r.on_data(1, one(b"0123456789"), 10, false),
            DataOutcome::OutOfOrder
        );
        assert_eq!(r.on_data(0, one(b""), 0, false), DataOutcome::FilledGap);
        // A Go sender may overshoot the byte edge by the slack it is given.
        let mut g = rx(4, 10);
        g.byte_slack = 5;
        assert_eq!(
            g.on_data(0, one(b"0123456789abcde"), 15, false),
            DataOutcome::InOrder
        );
        assert_eq!(
            g.on_data(1, one(b"f"), 16, false),
            DataOutcome::BeyondWindow
        );
    }

    #[test]
    fn the_window_opens_as_the_application_reads_and_never_shrinks() {
        let mut r = rx(2, 100);
        r.on_data(0, one(b"abc"), 3, false);
        r.on_data(1, one(b"def"), 6, false);
        assert_eq!(r.window_packets_free(), 0);
        assert!(!r.window_update_due(10), "nothing read: nothing to tell");
        let mut buf = [0u8; 3];
        assert_eq!(r.read(&mut buf), 3);
        assert_eq!((r.consumed_seq, r.adv_seq, r.adv_bytes), (1, 3, 103));
        assert!(
            r.window_update_due(10),
            "the window was shut: say it opened"
        );
        r.on_advertised(r.adv_seq, r.adv_bytes);
        // A smaller transport capacity later cannot retract the promise.
        r.set_transport_capacity(Some(1), Some(10));
        assert_eq!((r.adv_seq, r.adv_bytes), (3, 103));
        assert_eq!(r.capacity(), (1, 10));
    }

    #[test]
    fn sack_ranges_cover_every_hole_newest_first_when_they_do_not_all_fit() {
        let mut r = rx(1000, 1 << 20);
        r.on_data(0, one(b"a"), 1, false);
        for seq in [2, 3, 5] {
            r.on_data(seq, one(b"a"), seq + 1, false);
        }
        assert_eq!(r.sack_ranges(), vec![(2, 4), (5, 6)]);
        // More holes than ranges fit: the newest arrival's range comes first.
        let mut r = rx(1000, 1 << 20);
        let n = MAX_SACK_RANGES as u64 + 4;
        for i in 0..n {
            r.on_data(2 * i + 1, one(b"a"), 2 * i + 2, false);
        }
        let newest = 2 * (n - 1) + 1;
        r.on_data(newest - 2, one(b"a"), newest - 1, false); // a re-arrival: duplicate
        let ranges = r.sack_ranges();
        assert_eq!(ranges.len(), MAX_SACK_RANGES);
        assert_eq!(ranges[0], (newest, newest + 1));
        assert_eq!(ranges[1], (1, 2), "then the others, lowest first");
    }

    #[test]
    fn messages_come_whole_and_pieces_join_and_batches_split() {
        let mut r = rx(8, 1000);
        r.on_data(0, one(b"he"), 2, false);
        assert!(!r.has_message() && r.recv_message().is_none());
        r.on_data(1, one(b"llo"), 5, true);
        assert_eq!(r.recv_message().unwrap(), "hello");
        let parts = vec![
            Bytes::from_static(b"x"),
            Bytes::new(),
            Bytes::from_static(b"yz"),
        ];
        assert_eq!(
            r.on_data(2, Payload::Batch(parts), 8, true),
            DataOutcome::InOrder
        );
        assert_eq!(r.recv_message().unwrap(), "x");
        assert_eq!(
            r.recv_message().unwrap(),
            "",
            "a zero-length message is a message"
        );
        assert_eq!(
            r.consumed_seq, 2,
            "the batch's slot is freed by its last message"
        );
        assert_eq!(r.recv_message().unwrap(), "yz");
        assert_eq!(r.consumed_seq, 3);
    }

    #[test]
    fn a_window_full_of_one_unfinished_message_is_detected() {
        let mut r = rx(2, 100);
        r.on_data(0, one(b"a"), 1, false);
        assert!(!r.message_cannot_end());
        r.on_data(1, one(b"b"), 2, false);
        assert!(r.message_cannot_end());
    }

    #[test]
    fn the_asap_queue_keeps_the_newest_and_counts_what_it_drops() {
        let mut r = RecvState::new(8, 1000, Some(2));
        r.on_advertised(r.adv_seq, r.adv_bytes);
        for (seq, b) in [b"1", b"2", b"3"].iter().enumerate() {
            r.on_data(
                seq as u64,
                Payload::One(Bytes::from_static(*b)),
                seq as u64 + 1,
                true,
            );
        }
        assert_eq!(r.asap_dropped, 1);
        assert_eq!(r.pop_asap().unwrap(), "2");
        assert_eq!(r.pop_asap().unwrap(), "3");
        assert!(r.pop_asap().is_none());
    }
}
