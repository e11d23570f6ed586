//! The sending half: what the application wrote, what is in flight, what the
//! peer acknowledged, and which packets are lost.
//!
//! Invariants:
//! * `in_flight` holds every sent, not cumulatively acknowledged packet, in
//!   sequence order: `in_flight[i].seq == snd_una + i`, `snd_nxt` is next.
//! * A new packet is only sent when `seq < peer_wnd_seq` and its end offset
//!   `<= peer_wnd_bytes`: the peer's window is never exceeded. Retransmissions
//!   resend what the window already admitted.
//! * Loss detection (docs/PROTOCOL.md §5): a packet is lost when the RTO
//!   expires, or (RACK, RFC 8985) when a packet sent after it has been
//!   acknowledged and a reordering window has passed, or it is re-sent as a
//!   tail-loss probe. Only never-retransmitted packets give RTT samples
//!   (Karn's rule): per ack, the most recently sent newly acknowledged one.
//! * Work per ack is proportional to what changed, not to what is in
//!   flight: `sacked_runs` holds the selectively acknowledged sequence
//!   numbers as merged runs, so a SACK range reported again costs a lookup;
//!   `by_time` lists transmissions in send order, so RACK walks only the
//!   packets it marks lost and stops at the first whose time has not come.

use super::batch;
use super::codec::HEADROOM;
use super::rtt::RttEstimator;
use bytes::{Bytes, BytesMut};
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// Why a packet is queued for retransmission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LossKind {
    Timeout,
    Fast,
    Probe,
}

#[derive(Debug)]
pub(crate) struct Sent {
    pub(crate) seq: u64,
    pub(crate) data: Bytes,
    /// Stream offset just past this packet's payload.
    pub(crate) end: u64,
    pub(crate) eom: bool,
    /// The payload is a batch of whole messages ([`batch`]).
    pub(crate) batch: bool,
    pub(crate) sent_at: Instant,
    /// Which transmission this is, counting every (re)transmission of the
    /// session: the order RACK uses ("sent after"), exact even for packets
    /// sent at the same instant.
    pub(crate) tx: u64,
    pub(crate) retries: u32,
    pub(crate) sacked: bool,
    pub(crate) lost: Option<LossKind>,
}

/// Payload waiting to be sent.
#[derive(Debug)]
pub(crate) enum Chunk {
    /// Stream bytes after [`HEADROOM`] reserved bytes, so the header can be
    /// written in place and the payload is never copied again.
    Framed(BytesMut),
    /// A message (or a piece of one), sent by copying.
    Plain(Bytes),
}

impl Chunk {
    fn len(&self) -> usize {
        match self {
            Chunk::Framed(b) => b.len() - HEADROOM,
            Chunk::Plain(b) => b.len(),
        }
    }
    fn into_plain(self) -> Bytes {
        match self {
            Chunk::Framed(mut b) => b.split_off(HEADROOM).freeze(),
            Chunk::Plain(b) => b,
        }
    }
}

/// What a queued chunk is: stream bytes (which may be split anywhere to fit
/// the peer's window) or a piece of a message (never split: a message's
/// pieces are fixed when it is queued, so it needs exactly as many packets
/// as [`Connection::max_message_size`](super::Connection::max_message_size)
/// assumed, and its last piece keeps the end-of-message mark).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Piece {
    Stream,
    Message { last: bool },
}

impl Piece {
    fn eom(self) -> bool {
        self == Piece::Message { last: true }
    }
}

/// A packet the connection should put on the wire.
pub(crate) struct Outgoing {
    pub(crate) seq: u64,
    /// The payload; for `Chunk::Framed` the connection must hand the sent
    /// payload back with [`SendState::set_data`] after encoding.
    pub(crate) data: Chunk,
    /// Stream bytes it carries (for a batch: the messages, not their
    /// length prefixes).
    pub(crate) len: usize,
    pub(crate) end: u64,
    pub(crate) eom: bool,
    /// The payload is a batch of whole messages ([`batch`]).
    pub(crate) batch: bool,
    pub(crate) retries: u32,
    pub(crate) loss: Option<LossKind>,
    /// Nothing else is ready to go after this one: ask for an immediate ack.
    pub(crate) last_of_burst: bool,
}

#[derive(Debug, Default)]
pub(crate) struct AckOutcome {
    /// Cumulative ack moved forward.
    pub(crate) progressed: bool,
    /// Packets newly known delivered (cumulative or selective).
    pub(crate) newly_acked: u64,
    /// The ack was impossible (acknowledges unsent data) and was ignored.
    pub(crate) bogus: bool,
}

pub(crate) struct SendState {
    max_payload: usize,
    /// Stream data goes in packets no larger than this either (a Go
    /// receiver's learned buffer, §13.2); chunks queued larger are cut.
    packet_limit: usize,
    /// Pack queued small messages into batch packets (the peer accepts them).
    batching: bool,
    /// The peer checks only that one byte of window is free (a Go peer): a
    /// message piece may overshoot the byte edge when nothing is in flight.
    pub(crate) overshoot_ok: bool,
    buffer_limit: u64,
    /// Sealed chunks waiting to be sent, oldest first.
    queue: VecDeque<(Chunk, Piece)>,
    /// Stream bytes not yet sealed into a chunk (always after `queue`):
    /// empty, or HEADROOM reserved bytes followed by data.
    open: BytesMut,
    queued_bytes: u64,
    pub(crate) in_flight: VecDeque<Sent>,
    pub(crate) snd_una: u64,
    pub(crate) snd_nxt: u64,
    /// Stream offset of the next new byte (= payload bytes ever sent).
    pub(crate) bytes_sent: u64,
    /// Stream offset through which everything is cumulatively acked.
    pub(crate) bytes_acked: u64,
    /// Payload bytes the application has handed over.
    pub(crate) bytes_written: u64,
    /// Sequence numbers to retransmit, lowest first.
    retx: BTreeMap<u64, LossKind>,
    pub(crate) peer_wnd_seq: u64,
    pub(crate) peer_wnd_bytes: u64,
    /// The most packets in flight: the room our own inbox keeps for the
    /// acknowledgements they bring back (§5.1; unbounded without a
    /// transport capacity).
    pub(crate) flight_limit: u64,
    /// Largest window the peer ever offered relative to its consumption
    /// (its capacity), learnt from the first advertisement.
    pub(crate) peer_capacity: Option<(u64, u64)>,
    /// RACK: (send time, transmission) of the most recently sent packet
    /// known delivered.
    rack: Option<(Instant, u64)>,
    /// Transmissions so far (the next one's `tx`).
    tx_count: u64,
    /// Selectively acknowledged seqs at or above `snd_una`, as merged runs
    /// (start -> end, exclusive).
    sacked_runs: BTreeMap<u64, u64>,
    /// Every transmission (send time, transmission, seq), oldest first; an
    /// entry is stale once its packet is acknowledged, marked lost or sent
    /// again.
    by_time: VecDeque<(Instant, u64, u64)>,
}

impl SendState {
    pub(crate) fn new(max_payload: usize, buffer_limit: u64) -> Self {
        SendState {
            max_payload,
            packet_limit: usize::MAX,
            batching: false,
            overshoot_ok: false,
            buffer_limit,
            queue: VecDeque::new(),
            open: BytesMut::new(),
            queued_bytes: 0,
            in_flight: VecDeque::new(),
            snd_una: 0,
            snd_nxt: 0,
            bytes_sent: 0,
            bytes_acked: 0,
            bytes_written: 0,
            retx: BTreeMap::new(),
            peer_wnd_seq: 0,
            peer_wnd_bytes: 0,
            flight_limit: u64::MAX,
            peer_capacity: None,
            rack: None,
            tx_count: 0,
            sacked_runs: BTreeMap::new(),
            by_time: VecDeque::new(),
        }
    }

    /// Allows batching queued messages ([`batch`]); only when the peer said
    /// it accepts them.
    pub(crate) fn set_batching(&mut self, on: bool) {
        self.batching = on;
    }

    #[cfg(test)]
    pub(crate) fn batching(&self) -> bool {
        self.batching
    }

    pub(crate) fn set_max_payload(&mut self, n: usize) {
        self.max_payload = n.max(1);
    }

    /// Sends stream data in packets of at most `n` bytes (at least 1),
    /// whatever size it was queued in.
    pub(crate) fn set_packet_limit(&mut self, n: u64) {
        self.packet_limit = n.clamp(1, usize::MAX as u64) as usize;
    }

    /// The largest stream packet sent now.
    pub(crate) fn full_packet(&self) -> usize {
        self.max_payload.min(self.packet_limit)
    }

    /// Bytes the application may still hand over.
    pub(crate) fn buffer_space(&self) -> u64 {
        let held = self.queued_bytes + (self.bytes_sent - self.bytes_acked);
        self.buffer_limit.saturating_sub(held)
    }

    /// Appends stream bytes (coalesced into packets of up to max_payload).
    /// Returns how many were accepted.
    pub(crate) fn write(&mut self, data: &[u8]) -> usize {
        let n = (data.len() as u64).min(self.buffer_space()) as usize;
        let mut rest = &data[..n];
        while !rest.is_empty() {
            if self.open.is_empty() {
                self.open = BytesMut::with_capacity(HEADROOM + self.max_payload + 4);
                self.open.resize(HEADROOM, 0);
            }
            let room = self.max_payload - (self.open.len() - HEADROOM);
            let take = room.min(rest.len());
            self.open.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.open.len() - HEADROOM >= self.max_payload {
                let chunk = std::mem::take(&mut self.open);
                self.queue.push_back((Chunk::Framed(chunk), Piece::Stream));
            }
        }
        self.queued_bytes += n as u64;
        self.bytes_written += n as u64;
        n
    }

    /// Queues a whole message (split into packets, the last one flagged
    /// end-of-message). The caller checked there is room. Returns the stream
    /// offset at its end, which identifies it for "is it acknowledged?".
    pub(crate) fn push_message(&mut self, msg: Bytes) -> u64 {
        self.seal_open();
        let len = msg.len() as u64;
        if msg.is_empty() {
            self.queue
                .push_back((Chunk::Plain(msg), Piece::Message { last: true }));
        } else {
            let mut off = 0;
            while off < msg.len() {
                let end = (off + self.max_payload).min(msg.len());
                let last = end == msg.len();
                self.queue
                    .push_back((Chunk::Plain(msg.slice(off..end)), Piece::Message { last }));
                off = end;
            }
        }
        self.queued_bytes += len;
        self.bytes_written += len;
        self.bytes_written
    }

    fn seal_open(&mut self) {
        if self.open.len() > HEADROOM {
            let chunk = std::mem::take(&mut self.open);
            self.queue.push_back((Chunk::Framed(chunk), Piece::Stream));
        }
    }

    pub(crate) fn has_queued(&self) -> bool {
        !self.queue.is_empty() || self.open.len() > HEADROOM
    }

    /// Everything written has been acknowledged.
    pub(crate) fn all_acked(&self) -> bool {
        !self.has_queued() && self.in_flight.is_empty()
    }

    pub(crate) fn has_retransmit(&self) -> bool {
        !self.retx.is_empty()
    }

    /// Is any sent packet neither acknowledged nor selectively acknowledged?
    /// (Usually answered by the first entry; called per ack.)
    pub(crate) fn has_outstanding(&self) -> bool {
        self.in_flight.iter().any(|s| !s.sacked)
    }

    /// Packets sent and neither acknowledged nor selectively acknowledged.
    pub(crate) fn outstanding(&self) -> usize {
        self.in_flight.iter().filter(|s| !s.sacked).count()
    }

    /// Stream bytes in the packets of [`outstanding`](Self::outstanding):
    /// a packet covers the offsets from the previous one's end to its own,
    /// so a batch counts its messages, not their length prefixes.
    pub(crate) fn in_flight_bytes(&self) -> u64 {
        let mut start = self.bytes_acked;
        let mut n = 0;
        for s in &self.in_flight {
            if !s.sacked {
                n += s.end - start;
            }
            start = s.end;
        }
        n
    }

    /// True when there is new data but the peer's window admits none of it.
    pub(crate) fn window_blocked(&self) -> bool {
        if !self.has_queued() {
            return false;
        }
        if self.snd_nxt >= self.peer_wnd_seq || self.bytes_sent >= self.peer_wnd_bytes {
            return true;
        }
        // A message piece waits until the byte window admits it whole.
        let room = self.peer_wnd_bytes - self.bytes_sent;
        match self.queue.front() {
            Some((c, Piece::Message { .. })) => {
                c.len() as u64 > room && !(self.overshoot_ok && self.in_flight.is_empty())
            }
            _ => false,
        }
    }

    /// Stream offset just past sequence number `seq - 1`, i.e. where data
    /// sequence `seq` starts; `seq` must be in `snd_una..=snd_nxt`.
    pub(crate) fn end_offset_before(&self, seq: u64) -> u64 {
        if seq <= self.snd_una {
            self.bytes_acked
        } else {
            self.in_flight
                .get((seq - 1 - self.snd_una) as usize)
                .map_or(self.bytes_sent, |s| s.end)
        }
    }

    /// When `seq` was last sent, if it is outstanding and was sent more
    /// than once.
    pub(crate) fn retransmitted_at(&self, seq: u64) -> Option<Instant> {
        let s = self
            .in_flight
            .get(seq.checked_sub(self.snd_una)? as usize)?;
        (s.retries > 0).then_some(s.sent_at)
    }

    /// Records a window advertisement. Edges only grow: an older packet that
    /// arrives late cannot shrink the window a newer one opened.
    pub(crate) fn on_window(&mut self, wnd_seq: u64, wnd_bytes: u64, peer_ack: u64) {
        if self.peer_capacity.is_none() && wnd_seq > 0 {
            self.peer_capacity = Some((
                wnd_seq.saturating_sub(peer_ack),
                wnd_bytes.saturating_sub(self.bytes_acked),
            ));
        }
        self.peer_wnd_seq = self.peer_wnd_seq.max(wnd_seq);
        self.peer_wnd_bytes = self.peer_wnd_bytes.max(wnd_bytes);
    }

    /// The next packet to (re)send, if any: retransmissions first, then new
    /// data if the peer's window admits it.
    pub(crate) fn next(&mut self, now: Instant, sws_avoid: bool) -> Option<Outgoing> {
        while let Some((seq, kind)) = self.retx.pop_first() {
            if seq < self.snd_una {
                continue;
            }
            let idx = (seq - self.snd_una) as usize;
            let more = self.has_retransmit();
            let s = &mut self.in_flight[idx];
            if s.sacked {
                continue;
            }
            s.retries += 1;
            s.sent_at = now;
            s.tx = self.tx_count;
            s.lost = None;
            self.by_time.push_back((now, self.tx_count, seq));
            self.tx_count += 1;
            return Some(Outgoing {
                seq,
                data: Chunk::Plain(s.data.clone()),
                len: s.data.len(),
                end: s.end,
                eom: s.eom,
                batch: s.batch,
                retries: s.retries,
                loss: Some(kind),
                last_of_burst: !more,
            });
        }
        self.next_new(now, sws_avoid)
    }

    /// At most `packets` in flight (at least one).
    pub(crate) fn set_flight_limit(&mut self, packets: u64) {
        self.flight_limit = packets.max(1);
    }

    fn flight_full(&self) -> bool {
        self.in_flight.len() as u64 >= self.flight_limit
    }

    fn next_new(&mut self, now: Instant, sws_avoid: bool) -> Option<Outgoing> {
        if self.snd_nxt >= self.peer_wnd_seq || self.flight_full() {
            return None;
        }
        let byte_room = self.peer_wnd_bytes.saturating_sub(self.bytes_sent);
        if self.queue.is_empty() {
            self.seal_open();
        }
        let (front_len, piece) = self.queue.front().map(|(c, k)| (c.len(), *k))?;
        let full = self.full_packet();
        let allowed = byte_room.min(full as u64) as usize;
        let mut split = false;
        // A message piece was cut to the packet size when it was queued;
        // only the window decides whether it can go now.
        let limit = match piece {
            Piece::Message { .. } => byte_room.min(usize::MAX as u64) as usize,
            Piece::Stream => allowed,
        };
        if front_len > limit {
            match piece {
                // A message piece is never split (it would take one more
                // packet than the message was admitted for, and could leave
                // a receiver's window full of a message that cannot end):
                // wait until the window admits it whole. A peer that checks
                // only for one free byte of window (Go) takes it whole as
                // soon as nothing is in flight.
                Piece::Message { .. } => {
                    let overshoot = self.overshoot_ok && byte_room > 0 && self.in_flight.is_empty();
                    if !overshoot {
                        return None;
                    }
                }
                // Only part of the stream chunk fits. Sending a sliver while
                // packets are in flight is the silly window syndrome (RFC
                // 9293 §3.8.6.2.1): wait for the window to open by a full
                // packet instead. A full packet of a chunk queued larger
                // than the packet limit goes.
                Piece::Stream => {
                    if allowed == 0 || (sws_avoid && allowed < full && !self.in_flight.is_empty()) {
                        return None;
                    }
                    split = true;
                }
            }
        }
        let (data, eom, len, batch) = if split {
            let (chunk, _) = self.queue.pop_front().expect("checked");
            let mut plain = chunk.into_plain();
            let head = plain.split_to(allowed);
            self.queue.push_front((Chunk::Plain(plain), Piece::Stream));
            (Chunk::Plain(head), false, allowed, false)
        } else if let Some((buf, len)) = self.take_batch(allowed) {
            (Chunk::Framed(buf), true, len, true)
        } else {
            let (chunk, piece) = self.queue.pop_front().expect("checked");
            (chunk, piece.eom(), front_len, false)
        };
        self.queued_bytes -= len as u64;
        self.bytes_sent += len as u64;
        let seq = self.snd_nxt;
        self.snd_nxt += 1;
        let retained = match &data {
            Chunk::Plain(b) => b.clone(),
            Chunk::Framed(_) => Bytes::new(), // set by set_data after encoding
        };
        self.in_flight.push_back(Sent {
            seq,
            data: retained,
            end: self.bytes_sent,
            eom,
            batch,
            sent_at: now,
            tx: self.tx_count,
            retries: 0,
            sacked: false,
            lost: None,
        });
        self.by_time.push_back((now, self.tx_count, seq));
        self.tx_count += 1;
        let last_of_burst = !self.has_queued()
            || self.snd_nxt >= self.peer_wnd_seq
            || self.bytes_sent >= self.peer_wnd_bytes
            || self.flight_full();
        Some(Outgoing {
            seq,
            data,
            len,
            end: self.bytes_sent,
            eom,
            batch,
            retries: 0,
            loss: None,
            last_of_burst,
        })
    }

    /// Packs the whole messages at the front of the queue into one batch
    /// payload (after [`HEADROOM`] reserved bytes), if at least two fit in a
    /// packet and in `room` stream bytes. Returns it with its stream length.
    fn take_batch(&mut self, room: usize) -> Option<(BytesMut, usize)> {
        if !self.batching {
            return None;
        }
        let (mut count, mut framed, mut len) = (0, 0, 0);
        for (chunk, piece) in self.queue.iter().take(batch::MAX_MESSAGES) {
            let Chunk::Plain(m) = chunk else { break };
            if !piece.eom()
                || framed + batch::framed_len(m.len()) > self.max_payload
                || len + m.len() > room
            {
                break;
            }
            count += 1;
            framed += batch::framed_len(m.len());
            len += m.len();
        }
        if count < 2 {
            return None;
        }
        let mut buf = BytesMut::with_capacity(HEADROOM + framed + 4);
        buf.resize(HEADROOM, 0);
        for (chunk, _) in self.queue.drain(..count) {
            if let Chunk::Plain(m) = chunk {
                batch::push(&mut buf, &m);
            }
        }
        Some((buf, len))
    }

    /// Records the payload of packet `seq` as sent (a slice of its encoded
    /// frame), for retransmission.
    pub(crate) fn set_data(&mut self, seq: u64, data: Bytes) {
        if seq >= self.snd_una
            && let Some(s) = self.in_flight.get_mut((seq - self.snd_una) as usize)
        {
            s.data = data;
        }
    }

    /// Processes a cumulative ack and SACK ranges from the peer.
    pub(crate) fn on_ack(
        &mut self,
        now: Instant,
        ack: u64,
        sack: &[(u64, u64)],
        echo: Option<Instant>,
        rtt: &mut RttEstimator,
    ) -> AckOutcome {
        let mut out = AckOutcome::default();
        if ack > self.snd_nxt {
            out.bogus = true;
            return out;
        }
        // RACK (RFC 8985 §6.2): the newest send time known delivered. From
        // the scoreboard only never-retransmitted packets count: for a
        // retransmitted one we cannot tell which transmission arrived, and
        // taking the newest would declare everything queued behind a merely
        // late original lost (a spurious cascade). Deliveries of
        // retransmissions are known exactly from `echo` instead: the send
        // time of the transmission that triggered this ack.
        let mut delivered: Option<(Instant, u64)> = echo.map(|t| (t, 0));
        // Karn (RFC 6298 §3): sample only never-retransmitted packets; per
        // ack, the most recently sent one newly acknowledged.
        let mut sample: Option<(Instant, u64)> = None;
        let mut note = |s: &Sent, delivered: &mut Option<(Instant, u64)>| {
            let key = (s.sent_at, s.tx);
            if s.retries == 0 {
                sample = sample.max(Some(key));
            }
            if s.retries == 0 {
                *delivered = (*delivered).max(Some(key));
            }
        };
        while self.snd_una < ack {
            let s = self
                .in_flight
                .pop_front()
                .expect("in_flight covers snd_una..snd_nxt");
            self.snd_una += 1;
            self.bytes_acked = s.end;
            out.progressed = true;
            if !s.sacked {
                out.newly_acked += 1;
                note(&s, &mut delivered);
            }
            self.retx.remove(&s.seq);
        }
        if out.progressed {
            self.forget_below_una();
        }
        for &(start, end) in sack {
            let lo = start.max(self.snd_una);
            let hi = end.min(self.snd_nxt);
            if lo >= hi {
                continue;
            }
            for (a, b) in cover(&mut self.sacked_runs, lo, hi) {
                for seq in a..b {
                    let s = &mut self.in_flight[(seq - self.snd_una) as usize];
                    if s.sacked {
                        continue;
                    }
                    s.sacked = true;
                    out.newly_acked += 1;
                    if s.lost.take().is_some() {
                        self.retx.remove(&seq);
                    }
                    note(s, &mut delivered);
                }
            }
        }
        match sample {
            Some((sent_at, _)) => rtt.on_sample(now.saturating_duration_since(sent_at)),
            // Every packet this ack covers was retransmitted, so Karn's rule
            // gives no sample; the echoed time names the very transmission
            // the peer answered (as TCP timestamps do, RFC 7323 §4), so it
            // still measures the path. Without it, a path whose delay grew
            // past the RTO (a deep queue) would keep every packet
            // retransmitted and the estimate stuck below the real RTT.
            None if out.progressed => {
                if let Some(e) = echo {
                    rtt.on_sample(now.saturating_duration_since(e));
                }
            }
            None => {}
        }
        if delivered.is_some() {
            self.rack = self.rack.max(delivered);
        }
        out
    }

    /// RACK: marks lost every packet sent before the most recently delivered
    /// one whose reordering window `reo_wnd` has passed. Returns when the
    /// next not-yet-expired candidate should be re-checked.
    pub(crate) fn detect_lost(
        &mut self,
        now: Instant,
        reo_wnd: Duration,
        lost: &mut u64,
    ) -> Option<Instant> {
        let rack = self.rack?;
        let mut i = 0;
        while let Some(&(t, tx, seq)) = self.by_time.get(i) {
            let live = seq >= self.snd_una && {
                let s = &self.in_flight[(seq - self.snd_una) as usize];
                !s.sacked && s.lost.is_none() && s.tx == tx
            };
            if !live {
                if i == 0 {
                    self.by_time.pop_front();
                } else {
                    i += 1;
                }
                continue;
            }
            if (t, tx) >= rack {
                return None; // this and every later one were sent after it
            }
            let deadline = t + reo_wnd;
            if deadline > now {
                // Sent no earlier than this one, the rest expire no sooner.
                return Some(deadline);
            }
            let s = &mut self.in_flight[(seq - self.snd_una) as usize];
            s.lost = Some(LossKind::Fast);
            self.retx.insert(seq, LossKind::Fast);
            *lost += 1;
            if i == 0 {
                self.by_time.pop_front();
            } else {
                i += 1;
            }
        }
        None
    }

    /// Drops the scoreboards' entries below `snd_una` (cumulatively acked).
    fn forget_below_una(&mut self) {
        while self
            .by_time
            .front()
            .is_some_and(|&(_, _, q)| q < self.snd_una)
        {
            self.by_time.pop_front();
        }
        while let Some((&a, &b)) = self.sacked_runs.first_key_value() {
            if a >= self.snd_una {
                break;
            }
            self.sacked_runs.remove(&a);
            if b > self.snd_una {
                self.sacked_runs.insert(self.snd_una, b);
                break;
            }
        }
    }

    /// The retransmission timer expired: re-send the oldest outstanding
    /// packet (RFC 6298 §5.4). Only one: if the receiver's driver is starved,
    /// re-sending the whole flight would pile duplicates into its inbox (a
    /// NATS slow consumer). Once that packet is acknowledged, RACK marks
    /// everything sent before it as lost and recovery proceeds at full speed.
    pub(crate) fn on_rto(&mut self) -> u64 {
        if let Some(s) = self.in_flight.iter_mut().find(|s| !s.sacked) {
            s.lost = Some(LossKind::Timeout);
            self.retx.insert(s.seq, LossKind::Timeout);
            return 1;
        }
        0
    }

    /// Tail-loss probe: re-send the newest outstanding packet to elicit an
    /// ack that reveals what else is missing.
    pub(crate) fn on_tail_probe(&mut self) -> bool {
        if let Some(s) = self
            .in_flight
            .iter_mut()
            .rev()
            .find(|s| !s.sacked && s.lost.is_none())
        {
            s.lost = Some(LossKind::Probe);
            self.retx.insert(s.seq, LossKind::Probe);
            return true;
        }
        false
    }
}

/// Adds `[lo, hi)` to the merged runs; returns the parts of it that were
/// not covered before (what this SACK range newly acknowledges). Costs the
/// runs it touches, not their length.
fn cover(runs: &mut BTreeMap<u64, u64>, lo: u64, hi: u64) -> Vec<(u64, u64)> {
    let from = runs
        .range(..=lo)
        .next_back()
        .filter(|&(_, &e)| e >= lo)
        .map_or(lo, |(&s, _)| s);
    let touched: Vec<(u64, u64)> = runs.range(from..=hi).map(|(&s, &e)| (s, e)).collect();
    let (mut start, mut end, mut cursor) = (lo, hi, lo);
    let mut new = Vec::new();
    for (s, e) in touched {
        runs.remove(&s);
        if s > cursor {
            new.push((cursor, s));
        }
        cursor = cursor.max(e);
        start = start.min(s);
        end = end.max(e);
    }
    if cursor < hi {
        new.push((cursor, hi));
    }
    runs.insert(start, end);
    new
}

/// Scripted tests of the sending half alone (smoltcp style): a script of
/// writes, window advertisements and acks, and what must come out.
#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> Instant {
        crate::testkit::epoch()
    }

    fn rtt() -> RttEstimator {
        RttEstimator::new(
            Duration::from_millis(500),
            Duration::from_millis(10),
            Duration::from_secs(10),
        )
    }

    /// A sender of 100-byte packets whose peer offered `p` packets and `b`
    /// bytes.
    fn tx(p: u64, b: u64) -> SendState {
        let mut s = SendState::new(100, 1 << 20);
        s.on_window(p, b, 0);
        s
    }

    /// Sends everything the window admits; returns the seqs sent.
    fn drain(s: &mut SendState, now: Instant) -> Vec<u64> {
        std::iter::from_fn(|| s.next(now, true).map(|o| o.seq)).collect()
    }

    #[test]
    fn the_peer_window_is_never_exceeded_and_reopens_by_advertisement() {
        let mut s = tx(3, 1 << 20);
        assert_eq!(s.write(&[7; 1000]), 1000);
        assert_eq!(drain(&mut s, t0()), vec![0, 1, 2]);
        assert!(s.window_blocked());
        // An older, smaller advertisement arriving late shrinks nothing.
        s.on_window(2, 100, 0);
        assert_eq!(s.peer_wnd_seq, 3);
        s.on_window(5, 1 << 20, 2);
        assert_eq!(drain(&mut s, t0()), vec![3, 4]);
        assert_eq!(s.peer_capacity, Some((3, 1 << 20)), "learnt from the first");
    }

    #[test]
    fn stream_bytes_wait_for_a_full_packet_of_window_while_data_is_in_flight() {
        let mut s = tx(10, 150);
        s.write(&[1; 300]);
        assert_eq!(drain(&mut s, t0()), vec![0], "50 bytes of room: no sliver");
        let mut r = rtt();
        s.on_ack(t0(), 1, &[], None, &mut r);
        // Nothing in flight any more: the sliver goes (it is all there is).
        let o = s.next(t0(), true).unwrap();
        assert_eq!((o.seq, o.len), (1, 50));
    }

    #[test]
    fn a_message_piece_is_never_split_to_fit_the_window() {
        let mut s = tx(10, 150);
        s.push_message(Bytes::from(vec![1; 100]));
        s.push_message(Bytes::from(vec![2; 100]));
        assert_eq!(drain(&mut s, t0()), vec![0]);
        assert!(
            s.window_blocked(),
            "the second needs 100 bytes, 50 are free"
        );
        // A Go peer only checks that one byte is free, once nothing is in flight.
        let mut g = tx(10, 150);
        g.overshoot_ok = true;
        g.push_message(Bytes::from(vec![1; 100]));
        g.push_message(Bytes::from(vec![2; 100]));
        assert_eq!(drain(&mut g, t0()), vec![0]);
        g.on_ack(t0(), 1, &[], None, &mut rtt());
        let o = g.next(t0(), true).unwrap();
        assert_eq!((o.seq, o.len, o.eom), (1, 100, true));
    }

    #[test]
    fn small_messages_travel_as_one_batch_only_when_the_peer_reads_batches() {
        for batching in [false, true] {
            let mut s = tx(10, 1 << 20);
            s.set_batching(batching);
            for m in ["a", "bb", "ccc"] {
                s.push_message(Bytes::from(m));
            }
            let sent: Vec<Outgoing> = std::iter::from_fn(|| s.next(t0(), true)).collect();
            if batching {
                assert_eq!(sent.len(), 1);
                assert!(sent[0].batch && sent[0].eom);
                assert_eq!(sent[0].len, 6, "stream bytes, not the length prefixes");
            } else {
                assert_eq!(
                    sent.iter().map(|o| o.len).collect::<Vec<_>>(),
                    vec![1, 2, 3]
                );
            }
        }
    }

    #[test]
    fn an_ack_of_data_never_sent_is_bogus_and_changes_nothing() {
        let mut s = tx(10, 1 << 20);
        s.write(&[0; 200]);
        drain(&mut s, t0());
        let out = s.on_ack(t0(), 3, &[], None, &mut rtt());
        assert!(out.bogus && !out.progressed);
        assert_eq!((s.snd_una, s.outstanding()), (0, 2));
    }

    #[test]
    fn sacked_packets_are_not_resent_and_rack_marks_the_holes_before_them() {
        let mut s = tx(10, 1 << 20);
        s.write(&[0; 500]);
        let t = t0();
        for (i, seq) in drain(&mut s, t).into_iter().enumerate() {
            assert_eq!(seq, i as u64);
        }
        // Sent 1 ms apart: 0..5 at t+0..4 ms (re-stamp to script the times).
        for (i, p) in s.in_flight.iter_mut().enumerate() {
            p.sent_at = t + Duration::from_millis(i as u64);
        }
        s.by_time = s
            .in_flight
            .iter()
            .map(|p| (p.sent_at, p.tx, p.seq))
            .collect();
        let now = t + Duration::from_millis(20);
        let mut r = rtt();
        // Packet 0 acked; 3 and 4 selectively: 1 and 2 are holes.
        let out = s.on_ack(now, 1, &[(3, 5)], None, &mut r);
        assert!(out.progressed);
        assert_eq!(out.newly_acked, 3);
        assert_eq!((s.outstanding(), s.in_flight_bytes()), (2, 200));
        assert_eq!(r.samples(), 1, "one RTT sample per ack (Karn, newest)");
        let mut lost = 0;
        // Within the reordering window nothing is lost yet ...
        let recheck = s.detect_lost(now, Duration::from_millis(50), &mut lost);
        assert_eq!(lost, 0);
        assert_eq!(recheck, Some(t + Duration::from_millis(51)));
        // ... after it, exactly the holes.
        assert!(s.detect_lost(now, Duration::ZERO, &mut lost).is_none());
        assert_eq!(lost, 2);
        let resent: Vec<_> = std::iter::from_fn(|| s.next(now, true)).collect();
        assert_eq!(resent.iter().map(|o| o.seq).collect::<Vec<_>>(), vec![1, 2]);
        assert!(
            resent
                .iter()
                .all(|o| o.loss == Some(LossKind::Fast) && o.retries == 1)
        );
        // Repaired: everything acked, and no sample from retransmissions
        // without an echo (Karn).
        let out = s.on_ack(now + Duration::from_millis(5), 5, &[], None, &mut r);
        assert!(out.progressed && s.all_acked());
        assert_eq!(r.samples(), 1);
    }

    #[test]
    fn an_echo_samples_the_path_when_every_packet_acked_was_retransmitted() {
        let mut s = tx(10, 1 << 20);
        s.write(&[0; 100]);
        drain(&mut s, t0());
        assert_eq!(s.on_rto(), 1);
        let t1 = t0() + Duration::from_millis(500);
        assert_eq!(s.next(t1, true).unwrap().loss, Some(LossKind::Timeout));
        let mut r = rtt();
        let now = t1 + Duration::from_millis(30);
        s.on_ack(now, 1, &[], Some(t1), &mut r);
        assert_eq!(r.samples(), 1);
        assert_eq!(r.srtt(), Some(Duration::from_millis(30)));
    }

    #[test]
    fn a_timeout_resends_only_the_oldest_and_a_probe_the_newest_unacked() {
        let mut s = tx(10, 1 << 20);
        s.write(&[0; 400]);
        drain(&mut s, t0());
        s.on_ack(t0(), 0, &[(0, 1)], None, &mut rtt());
        assert_eq!(s.on_rto(), 1);
        assert!(s.on_tail_probe());
        let resent: Vec<_> = std::iter::from_fn(|| s.next(t0(), true)).collect();
        let got: Vec<_> = resent.iter().map(|o| (o.seq, o.loss)).collect();
        assert_eq!(
            got,
            vec![(1, Some(LossKind::Timeout)), (3, Some(LossKind::Probe))],
            "0 was sacked: the oldest unacked is 1"
        );
    }

    #[test]
    fn the_send_buffer_bounds_what_the_application_may_hand_over() {
        let mut s = SendState::new(100, 250);
        s.on_window(100, 1 << 20, 0);
        assert_eq!(s.write(&[0; 1000]), 250);
        assert_eq!(s.buffer_space(), 0);
        drain(&mut s, t0());
        assert_eq!(s.buffer_space(), 0, "in flight still counts");
        s.on_ack(t0(), 3, &[], None, &mut rtt());
        assert_eq!(s.buffer_space(), 250);
    }
}

/// The scoreboards against a recount from scratch, over random scripts.
#[cfg(test)]
mod oracle {
    use super::*;
    use rand::{Rng, SeedableRng};
    use std::collections::BTreeSet;

    #[test]
    fn sack_scoreboard_and_rack_match_a_full_walk_under_random_scripts() {
        let cases: u64 = std::env::var("SWP_SEND_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(300);
        for seed in 0..cases {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut s = SendState::new(100, 1 << 30);
            s.on_window(400, 1 << 30, 0);
            let mut t = crate::testkit::epoch();
            let mut r = RttEstimator::new(
                Duration::from_millis(200),
                Duration::from_millis(10),
                Duration::from_secs(5),
            );
            // What the peer has told us, as a set (the oracle's scoreboard).
            let mut told: BTreeSet<u64> = BTreeSet::new();
            for step in 0..300 {
                let ctx = format!("seed {seed}, step {step}");
                t += Duration::from_micros(rng.gen_range(0..3000));
                match rng.gen_range(0..10) {
                    0..=2 => {
                        s.write(&vec![1u8; rng.gen_range(1..2000)]);
                        while s.next(t, false).is_some() {}
                    }
                    3 => {
                        // A timeout or a tail probe, then the retransmission.
                        if rng.gen_bool(0.5) {
                            s.on_rto();
                        } else {
                            s.on_tail_probe();
                        }
                        while s.next(t, false).is_some() {}
                    }
                    _ => {
                        if s.snd_nxt == s.snd_una {
                            continue;
                        }
                        let ack = if rng.gen_bool(0.3) {
                            rng.gen_range(s.snd_una..=s.snd_nxt)
                        } else {
                            s.snd_una
                        };
                        let mut sack = Vec::new();
                        for _ in 0..rng.gen_range(0..5) {
                            if ack + 1 >= s.snd_nxt {
                                break;
                            }
                            let a = rng.gen_range(ack + 1..s.snd_nxt);
                            let b = rng.gen_range(a + 1..=s.snd_nxt.min(a + 20));
                            sack.push((a, b));
                        }
                        s.on_ack(t, ack, &sack, None, &mut r);
                        for (a, b) in sack {
                            told.extend(a..b);
                        }
                        told = told.split_off(&s.snd_una);
                        let sacked: BTreeSet<u64> = s
                            .in_flight
                            .iter()
                            .filter(|p| p.sacked)
                            .map(|p| p.seq)
                            .collect();
                        let expect: BTreeSet<u64> =
                            told.iter().copied().filter(|&q| q < s.snd_nxt).collect();
                        assert_eq!(sacked, expect, "{ctx}: SACK scoreboard");
                        // RACK by a full walk (the former algorithm).
                        let reo = Duration::from_micros(rng.gen_range(0..5000));
                        let (mut want_lost, mut want_next) = (BTreeSet::new(), None);
                        if let Some(rack) = s.rack {
                            for p in &s.in_flight {
                                if p.sacked || p.lost.is_some() || (p.sent_at, p.tx) >= rack {
                                    continue;
                                }
                                let d = p.sent_at + reo;
                                if d <= t {
                                    want_lost.insert(p.seq);
                                } else {
                                    want_next = Some(want_next.map_or(d, |n: Instant| n.min(d)));
                                }
                            }
                        }
                        let before: BTreeSet<u64> = s
                            .in_flight
                            .iter()
                            .filter(|p| p.lost.is_some())
                            .map(|p| p.seq)
                            .collect();
                        let mut n = 0;
                        let next = s.detect_lost(t, reo, &mut n);
                        let after: BTreeSet<u64> = s
                            .in_flight
                            .iter()
                            .filter(|p| p.lost.is_some())
                            .map(|p| p.seq)
                            .collect();
                        let marked: BTreeSet<u64> = after.difference(&before).copied().collect();
                        assert_eq!(marked, want_lost, "{ctx}: RACK marked");
                        assert_eq!(n, want_lost.len() as u64, "{ctx}: RACK count");
                        assert_eq!(next, want_next, "{ctx}: RACK re-check time");
                    }
                }
            }
        }
    }
}
