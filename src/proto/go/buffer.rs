//! How much data a Go receiver really holds, learned while sending
//! (docs/PROTOCOL.md §13.2).
//!
//! A go-sliding-window receiver advertises its session window (about 10 MB
//! by default), but its NATS subscription may hold much less: the library's
//! own `SetupRecvStream` caps it at 600,000 pending bytes, and the client
//! drops what does not fit as a slow consumer. A Go receiver acknowledges
//! only what its application consumed and has no SACK, so each such drop
//! costs a retransmission timeout. Nothing on the wire tells the two kinds
//! of receiver apart; only a loss does.
//!
//! [`PeerBuffer`] starts at a size every Go receiver holds (the floor,
//! `Tuning::go_peer_buffer`, 512 KiB by default) and doubles it each time
//! a full buffer's worth of data was acknowledged without a loss while
//! the buffer was what held the sender back, and then all that was in
//! flight at that moment too (that flight was sent at this size: a drop in
//! it is found before its acknowledgement). The first loss after a
//! doubling takes it back to the last size that passed, and it grows no
//! more in that session; a loss after that halves it, never below the
//! floor. Losses found while the last one is being repaired (anything
//! sent before it is still unacknowledged) count once. Packets are never
//! larger than the floor: a subscription that took a large buffer in small
//! packets may still be unable to hold one packet of that size, and such a
//! packet would be dropped on every retry.
//!
//! Pure bookkeeping: the connection tells it what the peer advertised,
//! what is in flight, what was acknowledged and when a loss was found.

/// No learned size goes beyond this (1 GiB); a Go receiver's advertised
/// window bounds it long before.
const MOST: u64 = 1 << 30;

/// The most data left unread at a Go receiver, and how it was learned.
#[derive(Debug, Clone)]
pub(crate) struct PeerBuffer {
    /// Never below this: the configured size.
    floor: u64,
    /// The data left unread at most, now.
    cap: u64,
    /// The largest size a full buffer's worth of data passed at without a
    /// loss.
    good: u64,
    /// False when the size was fixed by the application.
    learning: bool,
    /// A probe above `good` met a loss: no more growth.
    settled: bool,
    /// The cap held the sender back since the last change.
    limited: bool,
    /// Stream bytes acknowledged when the cap last changed (or last met a
    /// loss): what was acknowledged since passed at this cap.
    clean_from: u64,
    /// Stream bytes sent when a full buffer's worth was acknowledged: what
    /// was then in flight must be acknowledged too, without a loss, before
    /// the buffer grows (that flight was sent at this size; its fate is
    /// the size's).
    proving: Option<u64>,
    /// Sequence number sent next when the last counted loss was found: one
    /// loss episode covers everything sent before it.
    episode_until: Option<u64>,
    /// Times a loss took the size back.
    fallbacks: u64,
}

impl PeerBuffer {
    /// Starts at `floor` bytes; learns upwards unless `fixed`.
    pub(crate) fn new(floor: u64, fixed: bool) -> Self {
        let floor = floor.clamp(1, MOST);
        PeerBuffer {
            floor,
            cap: floor,
            good: floor,
            learning: !fixed,
            settled: false,
            limited: false,
            clean_from: 0,
            proving: None,
            episode_until: None,
            fallbacks: 0,
        }
    }

    /// The most data to leave unread at the peer now.
    pub(crate) fn cap(&self) -> u64 {
        self.cap
    }

    /// The largest packet to send: the floor, which every receiver holds
    /// (a fixed size is its own floor).
    pub(crate) fn packet_limit(&self) -> u64 {
        self.floor
    }

    /// The packet size to send when the application chose none: an
    /// eighth of the floor (64 KiB at 512 KiB: eight packets fill it) until
    /// the buffer is sixteen times that, then a sixteenth of the buffer, up
    /// to the floor (512 KiB packets from an 8 MiB buffer on). A Go
    /// receiver's cost is per packet; the first doublings, which may still
    /// meet a small subscription, keep the small packets that recover
    /// from it in one run of drops.
    pub(crate) fn auto_packet(&self) -> u64 {
        (self.cap / 16).max(self.floor / 8).clamp(1, self.floor)
    }

    /// Times a loss took the size back.
    pub(crate) fn fallbacks(&self) -> u64 {
        self.fallbacks
    }

    /// An advertisement arrived while `in_flight` bytes were unacknowledged
    /// and the application had data waiting (`queued`); `packet` is the
    /// size of a full packet. Records whether the cap, rather than the
    /// peer's own window or the application, held the sender back.
    pub(crate) fn on_advertised(
        &mut self,
        advertised: u64,
        in_flight: u64,
        queued: bool,
        packet: u64,
    ) {
        if advertised > self.cap
            && queued
            && in_flight.saturating_add(packet.min(self.cap)) > self.cap
        {
            self.limited = true;
        }
    }

    /// The cumulative acknowledgement reached `bytes_acked` stream bytes,
    /// with `bytes_sent` sent. Returns the new cap when it grew.
    pub(crate) fn on_acked(&mut self, bytes_acked: u64, bytes_sent: u64) -> Option<u64> {
        if !self.learning || self.settled || self.cap >= MOST {
            return None;
        }
        match self.proving {
            Some(until) if bytes_acked < until => return None,
            Some(_) => {}
            None => {
                if !self.limited || bytes_acked.saturating_sub(self.clean_from) < self.cap {
                    return None;
                }
                if bytes_sent > bytes_acked {
                    // A full buffer passed, but data sent at this size is
                    // still out; a drop of it is found before its ack
                    // (seen: a late packet, then a 1 MiB probe that was
                    // counted passed while its last packet was dropped).
                    self.proving = Some(bytes_sent);
                    return None;
                }
            }
        }
        self.proving = None;
        self.good = self.cap;
        self.cap = self.cap.saturating_mul(2).min(MOST);
        self.clean_from = bytes_acked;
        self.limited = false;
        Some(self.cap)
    }

    /// A loss was found (the retransmission timer fired, or RACK marked
    /// packets lost) with `una..nxt` outstanding and `bytes_acked`
    /// acknowledged. Returns the new cap when it shrank.
    pub(crate) fn on_loss(&mut self, una: u64, nxt: u64, bytes_acked: u64) -> Option<u64> {
        if self.episode_until.is_some_and(|end| una < end) {
            return None; // still repairing the same loss
        }
        self.episode_until = Some(nxt);
        self.clean_from = bytes_acked;
        self.limited = false;
        self.proving = None;
        if !self.learning {
            return None;
        }
        let back = if self.cap > self.good {
            // A probe met a loss: back to the last size that passed.
            self.settled = true;
            self.good
        } else if self.cap > self.floor {
            // A size that passed before lost: halve it.
            (self.cap / 2).max(self.floor)
        } else {
            return None;
        };
        self.cap = back;
        self.good = back;
        self.fallbacks += 1;
        Some(back)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: u64 = 1024;

    /// A sender held back by the cap, with `acked` bytes acknowledged.
    fn limited_ack(b: &mut PeerBuffer, acked: u64) -> Option<u64> {
        b.on_advertised(u64::MAX, b.cap(), true, 63 * K);
        b.on_acked(acked, acked)
    }

    #[test]
    fn automatic_packets_stay_an_eighth_of_the_floor_until_the_buffer_is_large() {
        let mut b = PeerBuffer::new(512 * K, false);
        assert_eq!(b.auto_packet(), 64 * K);
        let mut seen = vec![];
        let mut acked = 0;
        while b.cap() < 32 << 20 {
            acked += b.cap();
            assert!(limited_ack(&mut b, acked).is_some());
            seen.push((b.cap() / K, b.auto_packet() / K));
        }
        assert_eq!(
            seen,
            [
                (1024, 64),
                (2048, 128),
                (4096, 256),
                (8192, 512),
                (16384, 512),
                (32768, 512)
            ]
        );
        // A fixed size is its own floor; the smallest are one byte.
        assert_eq!(PeerBuffer::new(16 << 20, true).auto_packet(), 2 << 20);
        assert_eq!(PeerBuffer::new(7, true).auto_packet(), 1);
        assert_eq!(PeerBuffer::new(0, true).auto_packet(), 1);
    }

    #[test]
    fn grows_only_after_a_full_buffer_passed_while_it_held_the_sender_back() {
        let mut b = PeerBuffer::new(512 * K, false);
        // Not held back: a full buffer acked teaches nothing.
        assert_eq!(b.on_acked(10 << 20, 10 << 20), None);
        // Held back, one byte short of a full buffer since the start.
        b.on_advertised(10 << 20, 512 * K, true, 63 * K);
        assert_eq!(b.on_acked(512 * K - 1, 512 * K - 1), None);
        assert_eq!(b.on_acked(512 * K, 512 * K), Some(1024 * K));
        assert_eq!(b.cap(), 1024 * K);
        // The next doubling needs a full 1 MiB more, counted from there.
        assert_eq!(limited_ack(&mut b, 512 * K + 1024 * K - 1), None);
        assert_eq!(limited_ack(&mut b, 512 * K + 1024 * K), Some(2048 * K));
        // Packets stay at the floor, whatever the buffer grows to.
        assert_eq!(b.packet_limit(), 512 * K);
    }

    #[test]
    fn the_flight_in_the_air_when_a_full_buffer_passed_must_pass_too() {
        let mut b = PeerBuffer::new(512 * K, false);
        b.on_advertised(10 << 20, 512 * K, true, 63 * K);
        // A full buffer acknowledged, 100 KiB more still in flight.
        assert_eq!(b.on_acked(512 * K, 612 * K), None);
        assert_eq!(b.cap(), 512 * K);
        // One byte of that flight short: still waiting (more sent since
        // does not move the mark).
        assert_eq!(b.on_acked(612 * K - 1, 700 * K), None);
        assert_eq!(b.on_acked(612 * K, 700 * K), Some(1024 * K));
        // A loss while proving cancels the growth; the count restarts.
        let mut b = PeerBuffer::new(512 * K, false);
        b.on_advertised(10 << 20, 512 * K, true, 63 * K);
        assert_eq!(b.on_acked(512 * K, 600 * K), None);
        assert_eq!(b.on_loss(8, 10, 512 * K), None); // at the floor: nothing to undo
        assert_eq!(b.on_acked(600 * K, 600 * K), None);
        assert_eq!(b.cap(), 512 * K);
        // A probe at 1 MiB whose last flight met a loss goes back, settled.
        let mut b = PeerBuffer::new(512 * K, false);
        assert_eq!(limited_ack(&mut b, 512 * K), Some(1024 * K));
        b.on_advertised(10 << 20, 1024 * K, true, 512 * K);
        assert_eq!(b.on_acked(1536 * K, 2048 * K), None);
        assert_eq!(b.on_loss(3, 5, 1536 * K), Some(512 * K));
        assert_eq!(b.on_acked(2048 * K, 2048 * K), None);
        assert_eq!((b.cap(), b.fallbacks()), (512 * K, 1));
    }

    #[test]
    fn the_cap_binds_only_when_a_full_packet_no_longer_fits_and_the_peer_offers_more() {
        let mut b = PeerBuffer::new(512 * K, false);
        // A full packet still fits: the application, not the cap, is slow.
        b.on_advertised(10 << 20, 512 * K - 63 * K, true, 63 * K);
        assert_eq!(b.on_acked(1 << 30, 1 << 30), None);
        // Nothing queued: the application is slow.
        b.on_advertised(10 << 20, 512 * K, false, 63 * K);
        assert_eq!(b.on_acked(1 << 30, 1 << 30), None);
        // The peer offers no more than the cap: its window binds.
        b.on_advertised(512 * K, 512 * K, true, 63 * K);
        assert_eq!(b.on_acked(1 << 30, 1 << 30), None);
        // One byte short of a full packet of room: the cap binds.
        b.on_advertised(512 * K + 1, 512 * K - 63 * K + 1, true, 63 * K);
        assert_eq!(b.on_acked(1 << 30, 1 << 30), Some(1024 * K));
    }

    #[test]
    fn a_loss_on_a_probe_goes_back_once_and_growth_stops() {
        let mut b = PeerBuffer::new(512 * K, false);
        assert_eq!(limited_ack(&mut b, 512 * K), Some(1024 * K));
        assert_eq!(b.on_loss(10, 20, 600 * K), Some(512 * K));
        assert_eq!((b.cap(), b.fallbacks()), (512 * K, 1));
        // Further losses of the same episode (nothing past seq 20 acked).
        assert_eq!(b.on_loss(19, 30, 700 * K), None);
        // Settled at the floor: a new episode there changes nothing, and
        // clean flights no longer grow it.
        assert_eq!(b.on_loss(20, 40, 800 * K), None);
        assert_eq!(limited_ack(&mut b, 100 << 20), None);
        assert_eq!(b.cap(), 512 * K);
    }

    #[test]
    fn a_size_that_passed_before_is_halved_by_a_later_loss_never_below_the_floor() {
        let mut b = PeerBuffer::new(512 * K, false);
        let mut acked = 0;
        for want in [1, 2, 4] {
            acked += b.cap();
            assert_eq!(limited_ack(&mut b, acked), Some(want * 1024 * K));
        }
        assert_eq!(b.on_loss(1, 2, acked), Some(2048 * K)); // probe of 4 MiB lost
        assert_eq!(b.on_loss(2, 3, acked), Some(1024 * K));
        assert_eq!(b.on_loss(3, 4, acked), Some(512 * K));
        assert_eq!(b.on_loss(4, 5, acked), None);
        assert_eq!(
            (b.cap(), b.packet_limit(), b.fallbacks()),
            (512 * K, 512 * K, 3)
        );
    }

    #[test]
    fn a_loss_at_the_floor_before_any_growth_only_restarts_the_count() {
        let mut b = PeerBuffer::new(512 * K, false);
        b.on_advertised(10 << 20, 512 * K, true, 63 * K);
        assert_eq!(b.on_loss(0, 8, 100 * K), None);
        // The bytes before the loss do not count, nor does the old
        // "held back" (it must be seen again).
        assert_eq!(b.on_acked(512 * K + 100 * K, 512 * K + 100 * K), None);
        assert_eq!(limited_ack(&mut b, 612 * K - 1), None);
        assert_eq!(limited_ack(&mut b, 612 * K), Some(1024 * K));
        assert_eq!(b.fallbacks(), 0);
    }

    #[test]
    fn a_fixed_size_never_changes() {
        let mut b = PeerBuffer::new(4 << 20, true);
        assert_eq!(limited_ack(&mut b, 1 << 30), None);
        assert_eq!(b.on_loss(0, 1, 0), None);
        assert_eq!(
            (b.cap(), b.packet_limit(), b.fallbacks()),
            (4 << 20, 4 << 20, 0)
        );
    }

    #[test]
    fn sizes_stay_between_one_byte_and_the_most() {
        let b = PeerBuffer::new(0, false);
        assert_eq!((b.cap(), b.packet_limit()), (1, 1));
        let mut b = PeerBuffer::new(u64::MAX, false);
        assert_eq!(b.cap(), MOST);
        assert_eq!(limited_ack(&mut b, u64::MAX), None);
        let mut b = PeerBuffer::new(MOST / 2, false);
        assert_eq!(limited_ack(&mut b, MOST / 2), Some(MOST));
        assert_eq!(limited_ack(&mut b, u64::MAX), None);
    }
}
