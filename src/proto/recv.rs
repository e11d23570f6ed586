//! The receiving half: reassembly, in-order delivery to the application, the
//! advertised window, and the selective-ack ranges.
//!
//! Invariants:
//! * `rcv_nxt` is the lowest sequence number not yet received; everything
//!   below it is in `ready` (not yet consumed) or was consumed.
//! * `ooo` holds received packets above `rcv_nxt`, each once.
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
            return DataOutcome::OutOfOrder;
        }
        self.push_ready(seq, arrived);
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
        let mut all: Vec<(u64, u64)> = Vec::new();
        for &seq in self.ooo.keys() {
            match all.last_mut() {
                Some((_, e)) if *e == seq => *e += 1,
                _ => all.push((seq, seq + 1)),
            }
        }
        if all.len() <= MAX_SACK_RANGES {
            return all;
        }
        let recent = self
            .last_arrival
            .and_then(|seq| all.iter().position(|&(s, e)| s <= seq && seq < e))
            .unwrap_or(0);
        let mut out = Vec::with_capacity(MAX_SACK_RANGES);
        out.push(all[recent]);
        out.extend(
            all.iter()
                .enumerate()
                .filter(|(i, _)| *i != recent)
                .map(|(_, r)| *r)
                .take(MAX_SACK_RANGES - 1),
        );
        out
    }

    /// True once every byte before the peer's Fin was read.
    pub(crate) fn at_eof(&self) -> bool {
        self.fin.is_some() && self.ready.is_empty()
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
