//! The one seam between the engine and the wire dialect it speaks.
//!
//! [`Connection`](super::Connection) runs one protocol; the dialect decides
//! the few places where a go-sliding-window peer needs other rules than a
//! native one. Each method names *what* differs (docs/PROTOCOL.md §13 says
//! why), so the native paths read without Go's quirks and every Go rule is
//! listed here, once. The Go side's own data (its wall-clock epoch, a Fin it
//! sends only once, what its receiver really holds) lives in
//! [`GoDialect`], so a native session cannot hold it.

use super::codec::{self, DecodeError, WireFormat};
use super::go::buffer::PeerBuffer;
use super::go::codec as gocodec;
use super::go::link::{self as golink, Inbound};
use super::packet::Packet;
use bytes::{Bytes, BytesMut};

/// The dialect a session speaks.
#[derive(Debug, Clone)]
pub(crate) enum Dialect {
    /// swp's own format (docs/PROTOCOL.md §3).
    Native,
    /// go-sliding-window's msgpack maps and its peer's rules (§13).
    Go(GoDialect),
}

/// What only a session with a Go peer keeps.
#[derive(Debug, Clone)]
pub(crate) struct GoDialect {
    /// Where the peer's Fin said its stream ends, while data before it is
    /// still missing: a Go Fin is sent once and carries no seq (§13.3).
    fin_at: Option<u64>,
    /// The most data to leave unread at the peer (§13.2).
    buffer: PeerBuffer,
}

/// A packet as it came off the wire, before the engine completes it.
pub(crate) enum Decoded {
    /// A native packet: complete as it is.
    Native(Packet),
    /// A Go packet: its relative fields still need the engine's state.
    Go(Inbound),
}

impl Dialect {
    /// The dialect of `format`; a Go peer's buffer learned from the
    /// default start.
    #[cfg(test)]
    pub(crate) fn new(format: WireFormat) -> Self {
        match format {
            WireFormat::Native => Dialect::Native,
            WireFormat::Go => Dialect::go(PeerBuffer::new(golink::GO_PEER_BUFFER, false)),
        }
    }

    /// Go's dialect, leaving at most what `buffer` says unread at the peer.
    pub(crate) fn go(buffer: PeerBuffer) -> Self {
        Dialect::Go(GoDialect {
            fin_at: None,
            buffer,
        })
    }

    pub(crate) fn format(&self) -> WireFormat {
        match self {
            Dialect::Native => WireFormat::Native,
            Dialect::Go(_) => WireFormat::Go,
        }
    }

    fn native(&self) -> bool {
        matches!(self, Dialect::Native)
    }

    /// Each data packet is one message (Go has no message boundaries
    /// inside a packet), so a message is at most one packet.
    pub(crate) fn one_packet_per_message(&self) -> bool {
        !self.native()
    }

    /// Packets carry our microsecond clock and echo the peer's (§5.5):
    /// freshness of an answer, the peer's queueing lag and the handshake's
    /// echo come from it. Go packets carry wall-clock times that echo
    /// nothing, so every packet from a Go peer counts as fresh.
    pub(crate) fn echoes_clock(&self) -> bool {
        self.native()
    }

    /// Several messages may share one data packet (§3.3), offered with
    /// `BATCH_OK` on Syn and SynAck and read when flagged `BATCH`.
    pub(crate) fn batches(&self) -> bool {
        self.native()
    }

    /// The peer acknowledges only what its application has read (Go's
    /// "last consumed"): data outstanding for long is no sign of a dead
    /// peer while it is heard from.
    pub(crate) fn acks_only_what_is_read(&self) -> bool {
        !self.native()
    }

    /// Acknowledgements and windows are checked against what was sent and
    /// declared (§5.6). Go's relative fields are fitted to what was sent
    /// when they are translated (§13.2), and a Go ack may go back.
    pub(crate) fn checks_claims(&self) -> bool {
        self.native()
    }

    /// The end of the peer's stream is exact (a native Fin carries its
    /// seq), so data beyond it is a protocol violation. A Go Fin's end is
    /// our guess: data beyond it is dropped, the session goes on.
    pub(crate) fn fin_end_is_exact(&self) -> bool {
        self.native()
    }

    /// Packets say when our side has seen the peer's Fin (`FIN_SEEN`).
    pub(crate) fn says_fin_seen(&self) -> bool {
        self.native()
    }

    /// A Go peer halts when it gets our Fin: it may never send a Fin of its
    /// own and often never its FinAck. Every Fin try counts, and once ours
    /// is acknowledged the session ends when the peer goes quiet.
    pub(crate) fn peer_halts_at_our_fin(&self) -> bool {
        !self.native()
    }

    /// Fin retransmissions before giving up: a Go peer never needs more
    /// than one.
    pub(crate) fn fin_retry_limit(&self, max_retransmits: u32) -> u32 {
        match self {
            Dialect::Native => max_retransmits,
            Dialect::Go(_) => max_retransmits.min(3),
        }
    }

    /// How much a Go receiver really holds (§13.2); `None` with a native
    /// peer, whose window is its real buffer.
    pub(crate) fn peer_buffer(&self) -> Option<&PeerBuffer> {
        match self {
            Dialect::Native => None,
            Dialect::Go(g) => Some(&g.buffer),
        }
    }

    /// The same, to tell it what happened.
    pub(crate) fn peer_buffer_mut(&mut self) -> Option<&mut PeerBuffer> {
        match self {
            Dialect::Native => None,
            Dialect::Go(g) => Some(&mut g.buffer),
        }
    }

    /// The peer's Fin ended its stream at `seq` while data before it is
    /// missing. A native peer resends its Fin; a Go peer does not, so its
    /// end is remembered.
    pub(crate) fn remember_fin(&mut self, seq: u64) {
        if let Dialect::Go(g) = self {
            g.fin_at = Some(seq);
        }
    }

    /// The remembered end of the peer's stream, once everything before it
    /// (`rcv_nxt`) has arrived.
    pub(crate) fn take_fin_at(&mut self, rcv_nxt: u64) -> Option<u64> {
        match self {
            Dialect::Go(g) if g.fin_at == Some(rcv_nxt) => g.fin_at.take(),
            _ => None,
        }
    }

    /// Decodes a packet. A native listener that has not heard a Syn yet
    /// tells a Go peer's Syn by its first byte (`listening`).
    pub(crate) fn decode(&self, listening: bool, bytes: &Bytes) -> Result<Decoded, DecodeError> {
        let go = !self.native() || (listening && gocodec::looks_like_go(bytes));
        if go {
            gocodec::decode_packet(bytes)
                .map_err(DecodeError::from)
                .and_then(golink::inbound)
                .map(Decoded::Go)
        } else {
            codec::decode(bytes).map(Decoded::Native)
        }
    }

    /// Encodes `p` for the wire. `framed` is a data payload already placed
    /// after [`codec::HEADROOM`] bytes of room for a native header; the
    /// second value is the payload as the send buffer keeps it for
    /// retransmission (`None`: nothing to keep). `cx` is what a Go packet
    /// needs besides the packet: the wall clock, the bytes held in order.
    pub(crate) fn encode(
        &self,
        p: &mut Packet,
        framed: Option<BytesMut>,
        cx: &golink::OutCtx,
    ) -> (Bytes, Option<Bytes>) {
        match (self, framed) {
            (Dialect::Native, Some(buf)) => {
                let (frame, data) = codec::encode_in_place(p, buf, codec::HEADROOM);
                (frame, Some(data))
            }
            (Dialect::Native, None) => (codec::encode(p), None),
            (Dialect::Go(_), framed) => {
                let kept = framed.map(|mut buf| {
                    let data = buf.split_off(codec::HEADROOM).freeze();
                    p.data = data.clone();
                    data
                });
                let frame = Bytes::from(gocodec::encode_packet(&golink::outbound(p, cx)));
                (frame, kept)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::packet::Kind;

    #[test]
    fn a_native_session_keeps_no_go_state_and_follows_native_rules() {
        let mut d = Dialect::new(WireFormat::Native);
        d.remember_fin(7);
        assert_eq!(d.take_fin_at(7), None, "a native peer resends its Fin");
        assert!(d.batches() && d.echoes_clock() && d.checks_claims());
        assert!(d.fin_end_is_exact() && !d.peer_halts_at_our_fin());
        assert_eq!(d.fin_retry_limit(10), 10);
        assert!(d.peer_buffer().is_none());
    }

    #[test]
    fn a_go_session_remembers_a_fin_until_the_data_before_it_arrived() {
        let mut d = Dialect::new(WireFormat::Go);
        d.remember_fin(7);
        assert_eq!(d.take_fin_at(6), None);
        assert_eq!(d.take_fin_at(7), Some(7));
        assert_eq!(d.take_fin_at(7), None, "taken once");
        assert!(!d.batches() && d.one_packet_per_message() && d.peer_halts_at_our_fin());
        assert_eq!(d.fin_retry_limit(10), 3);
        assert_eq!(d.fin_retry_limit(1), 1);
        assert_eq!(d.peer_buffer().map(|b| b.cap()), Some(512 * 1024));
    }

    #[test]
    fn each_dialect_decodes_what_it_encodes_and_a_listener_tells_go_by_its_first_byte() {
        let mut p = Packet::new(Kind::Syn);
        p.from = "a".into();
        p.dest = "b".into();
        p.from_nonce = "n".into();
        for format in [WireFormat::Native, WireFormat::Go] {
            let d = Dialect::new(format);
            let cx = golink::OutCtx {
                wall_epoch_ns: 0,
                bytes_in_order: 0,
            };
            let (frame, kept) = d.encode(&mut p.clone(), None, &cx);
            assert!(kept.is_none());
            let native_listener = Dialect::new(WireFormat::Native);
            match (format, native_listener.decode(true, &frame).unwrap()) {
                (WireFormat::Native, Decoded::Native(q)) => assert_eq!(q.kind, Kind::Syn),
                (WireFormat::Go, Decoded::Go(inb)) => assert_eq!(inb.packet.kind, Kind::Syn),
                (f, _) => panic!("{f:?} frame decoded as the other dialect"),
            }
            if format == WireFormat::Go {
                // Once established, a native session does not sniff.
                assert!(native_listener.decode(false, &frame).is_err());
            }
        }
    }
}
