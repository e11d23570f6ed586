//! Speaking to go-sliding-window peers: translation between this crate's
//! [`Packet`] and Go's wire packet ([`GoPacket`]), with the rules a Go peer
//! needs (docs/PROTOCOL.md §13, docs/go-sliding-window.md).
//!
//! The state machine stays one state machine: a session in
//! [`WireFormat::Go`](crate::proto::WireFormat::Go) runs the same engine and only
//! its edges differ. These functions are pure; the numbers that relate Go's
//! relative fields to our absolute ones (the cumulative ack, byte offsets,
//! the wall clock) are passed in by [`Connection`](crate::proto::Connection).
//!
//! What differs from the native format, and how it is bridged:
//! * control packets carry sentinel sequence numbers (Syn −98, every ack
//!   −99, keepalive −777, Fin −888) and a `TcpEvent`;
//! * `AckNum` means "consumed through this seq"; we send our cumulative ack
//!   minus one (−1 before anything arrived) on every packet, since Go
//!   applies it from every packet. Go fills it with a meaningless 0 on data,
//!   Syn and Fin, and starts its counter at 0 rather than −1, so an incoming
//!   `AckNum` is trusted only where it cannot be that default (see
//!   `Inbound::ack`);
//! * windows are relative ("free messages/bytes beyond the ack"), ours are
//!   absolute edges: converted both ways against the ack in the same packet;
//! * times are wall-clock `time.Time`s; our clock is microseconds since the
//!   session's epoch, mapped through the wall-clock reading the driver gives;
//! * data carries a BLAKE2b-512 checksum of its payload, checked on arrival;
//! * no SACK, no message boundaries (each Go data packet is delivered as one
//!   message), no final sequence number in Fin (the Connection supplies it).

use super::super::codec::DecodeError;
use super::super::packet::{Kind, Packet, flags};
use super::super::str::Str;
use super::codec::{GoPacket, GoTime};
use crate::digest::Blake2b512;
use bytes::Bytes;

/// `SeqNum`/`SeqRetry` of a Syn.
///
/// ```
/// use swp::proto::{go::codec as gocodec, go::link as golink, Config, Connection, WireFormat};
/// let t0 = swp::testkit::epoch();
/// let go = |l: &str, r: &str| Config::new(l, r).wire_format(WireFormat::Go);
/// let mut a = Connection::connect(go("a", "b"), t0, 1).unwrap();
/// let syn = gocodec::decode_packet(&a.poll_transmit(t0).unwrap().payload).unwrap();
/// assert_eq!((syn.seq_num, syn.seq_retry), (golink::SEQ_SYN, golink::SEQ_SYN));
/// assert_eq!(syn.tcp_event, 3); // Go's Syn
/// ```
pub const SEQ_SYN: i64 = -98;
/// `SeqNum`/`SeqRetry` of every acknowledgement (DataAck, SynAck, EstabAck, FinAck).
///
/// ```
/// use swp::proto::{go::codec as gocodec, go::link as golink, Config, Connection, WireFormat};
/// let t0 = swp::testkit::epoch();
/// let go = |l: &str, r: &str| Config::new(l, r).wire_format(WireFormat::Go);
/// let mut a = Connection::connect(go("a", "b"), t0, 1).unwrap();
/// let mut b = Connection::listen(go("b", ""), t0, 2).unwrap();
/// b.handle_packet(t0, a.poll_transmit(t0).unwrap().payload);
/// let synack = gocodec::decode_packet(&b.poll_transmit(t0).unwrap().payload).unwrap();
/// assert_eq!((synack.seq_num, synack.seq_retry), (golink::SEQ_ACK, golink::SEQ_ACK));
/// assert_eq!(synack.tcp_event, 4); // Go's SynAck
/// ```
pub const SEQ_ACK: i64 = -99;
/// `SeqNum`/`SeqRetry`/`AckRetry` of a keepalive.
///
/// ```
/// use swp::proto::{go::codec as gocodec, go::link as golink, Config, WireFormat};
/// use swp::testkit::Pair;
/// use swp::simnet::LinkConfig;
/// use std::time::Duration;
/// let go = |l: &str, r: &str| Config::new(l, r).wire_format(WireFormat::Go);
/// let mut pair = Pair::new(1, LinkConfig::new(), go("A", "B"), go("B", ""));
/// assert!(pair.connect(Duration::from_secs(5)));
/// // Idle: the next thing A sends is a keepalive.
/// let t = pair.a.poll_timeout().unwrap();
/// pair.a.handle_timeout(t);
/// let k = gocodec::decode_packet(&pair.a.poll_transmit(t).unwrap().payload).unwrap();
/// assert_eq!(k.tcp_event, 12); // Go's KeepAlive
/// assert_eq!((k.seq_num, k.seq_retry, k.ack_retry), (golink::SEQ_KEEPALIVE, golink::SEQ_KEEPALIVE, golink::SEQ_KEEPALIVE));
/// ```
pub const SEQ_KEEPALIVE: i64 = -777;
/// `SeqNum`/`SeqRetry`/`AckRetry` of a Fin (and `AckRetry` of a FinAck).
///
/// ```
/// use swp::proto::{go::codec as gocodec, go::link as golink, Config, WireFormat};
/// use swp::testkit::Pair;
/// use swp::simnet::LinkConfig;
/// use std::time::Duration;
/// let go = |l: &str, r: &str| Config::new(l, r).wire_format(WireFormat::Go);
/// let mut pair = Pair::new(1, LinkConfig::new(), go("A", "B"), go("B", ""));
/// assert!(pair.connect(Duration::from_secs(5)));
/// let now = pair.now();
/// pair.a.close(now);
/// let fin = gocodec::decode_packet(&pair.a.poll_transmit(now).unwrap().payload).unwrap();
/// assert_eq!(fin.tcp_event, 8); // Go's Fin
/// assert_eq!((fin.seq_num, fin.ack_retry), (golink::SEQ_FIN, golink::SEQ_FIN));
/// ```
pub const SEQ_FIN: i64 = -888;

/// Go's `TcpEvent` values on the wire.
mod ev {
    pub const SYN: i64 = 3;
    pub const SYN_ACK: i64 = 4;
    pub const ESTAB_ACK: i64 = 5;
    pub const FIN: i64 = 8;
    pub const FIN_ACK: i64 = 9;
    pub const DATA_ACK: i64 = 10;
    pub const DATA: i64 = 11;
    pub const KEEP_ALIVE: i64 = 12;
}

/// The largest payload a Go peer may send beyond our byte window: its
/// sender only checks that one byte of window is free, and its packets hold
/// up to 512 KiB (go-swp-behaviour.md §6, §11).
pub(crate) const GO_BYTE_OVERSHOOT: u64 = 512 * 1024;

/// The most data we leave unconsumed at a Go receiver at first, whatever
/// it advertises (learned upwards from there, [`super::buffer`]). A Go
/// receiver advertises its session window (about 10 MB by default) while
/// its NATS subscription may hold much less: the library's own helpers
/// (`SetupRecvStream`, and its example receiver) cap the subscription's
/// pending queue at 600,000 bytes, and beyond that the client drops
/// messages as a slow consumer. 512 KiB of data, with each packet's few
/// hundred bytes of msgpack, stays below that (docs/PROTOCOL.md §13.2).
pub(crate) const GO_PEER_BUFFER: u64 = 512 * 1024;

/// Bytes of a Go packet beyond its payload, as an upper bound, given the
/// total length of its inboxes and nonces: 21 keys, 4 times, 13 ints,
/// string/bin headers and the 64-byte checksum.
///
/// ```
/// use swp::proto::go::codec::{encode_packet, GoPacket, GoTime};
/// use swp::proto::go::link as golink;
/// // Every integer at its widest, every time set, a real checksum:
/// let t = GoTime { secs: i64::MIN, nanos: 999_999_999 };
/// let data = bytes::Bytes::from(vec![0u8; 1000]);
/// let p = GoPacket {
///     from: "inbox.a".into(), dest: "inbox.b".into(), from_sess_nonce: "n1".into(), dest_sess_nonce: "n2".into(),
///     arrived_at_dest_tm: t, data_send_tm: t, ack_reply_tm: t,
///     seq_num: i64::MIN, seq_retry: i64::MIN, ack_num: i64::MIN, ack_retry: i64::MIN, tcp_event: i64::MIN,
///     avail_reader_bytes_cap: i64::MIN, avail_reader_msg_cap: i64::MIN, from_rtt_est_nsec: i64::MIN,
///     from_rtt_sd_nsec: i64::MIN, from_rtt_n: i64::MIN, cumul_bytes_transmitted: i64::MIN, data_offset: i64::MIN,
///     blake2b_checksum: golink::checksum(&data), data,
/// };
/// assert!(encode_packet(&p).len() <= 1000 + golink::max_overhead(7 + 7 + 2 + 2));
/// ```
pub fn max_overhead(inbox_and_nonce_bytes: usize) -> usize {
    3 + 260 + 4 * 15 + 13 * 9 + 4 * 5 + 5 + 66 + inbox_and_nonce_bytes
}

/// BLAKE2b-512 of a data payload, as Go's per-packet checksum.
///
/// ```
/// use swp::proto::go::link::checksum;
/// // BLAKE2b-512("abc"), the RFC 7693 test vector.
/// let want = "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d1\
///             7d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923";
/// let got: String = checksum(b"abc").iter().map(|b| format!("{b:02x}")).collect();
/// assert_eq!(got, want);
/// ```
pub fn checksum(data: &[u8]) -> Bytes {
    Bytes::copy_from_slice(&Blake2b512::digest(data))
}

/// The Go `time.Time` at `unix_ns` nanoseconds since the Unix epoch.
///
/// ```
/// use swp::proto::go::link::{time_from_unix_ns, unix_ns};
/// let t = time_from_unix_ns(-1); // 1 ns before 1970
/// assert_eq!((t.secs, t.nanos), (-1, 999_999_999)); // nanos are never negative
/// assert_eq!(unix_ns(t), -1);
/// ```
pub fn time_from_unix_ns(unix_ns: i128) -> GoTime {
    let secs = unix_ns.div_euclid(1_000_000_000);
    let nanos = unix_ns.rem_euclid(1_000_000_000);
    GoTime {
        secs: secs.clamp(i64::MIN as i128, i64::MAX as i128) as i64,
        nanos: nanos as i32,
    }
}

/// Nanoseconds since the Unix epoch of a Go time.
///
/// ```
/// use swp::proto::go::codec::GoTime;
/// use swp::proto::go::link::unix_ns;
/// assert_eq!(unix_ns(GoTime { secs: 2, nanos: 5 }), 2_000_000_005);
/// assert_eq!(unix_ns(GoTime::ZERO), -62_135_596_800 * 1_000_000_000); // year 1
/// ```
pub fn unix_ns(t: GoTime) -> i128 {
    t.secs as i128 * 1_000_000_000 + t.nanos as i128
}

/// What the Connection needs to turn one of its packets into a Go packet.
pub(crate) struct OutCtx {
    /// Wall clock (Unix ns) at the Connection's epoch.
    pub wall_epoch_ns: i128,
    /// Stream offset of our cumulative ack (bytes received in order).
    pub bytes_in_order: u64,
}

/// Our packet in Go's form. Never fails: every field is representable, and
/// nothing the Go decoder rejects is produced.
pub(crate) fn outbound(p: &Packet, cx: &OutCtx) -> GoPacket {
    let ours = |ts_us: u64| time_from_unix_ns(cx.wall_epoch_ns + ts_us as i128 * 1000);
    let echo = if p.ts_echo > 0 {
        time_from_unix_ns(p.ts_echo as i128)
    } else {
        GoTime::ZERO
    };
    let (seq, retry, event, ack_retry) = match p.kind {
        Kind::Data => (p.seq as i64, p.retry as i64, ev::DATA, 0),
        Kind::Syn => (SEQ_SYN, SEQ_SYN, ev::SYN, 0),
        Kind::SynAck => (SEQ_ACK, SEQ_ACK, ev::SYN_ACK, SEQ_SYN),
        Kind::EstabAck => (SEQ_ACK, SEQ_ACK, ev::ESTAB_ACK, SEQ_ACK),
        Kind::Ack => (SEQ_ACK, SEQ_ACK, ev::DATA_ACK, 0),
        Kind::KeepAlive => (SEQ_KEEPALIVE, SEQ_KEEPALIVE, ev::KEEP_ALIVE, SEQ_KEEPALIVE),
        // Go has no reset; a Fin makes a Go peer close and halt at once.
        Kind::Fin | Kind::Reset => (SEQ_FIN, SEQ_FIN, ev::FIN, SEQ_FIN),
        Kind::FinAck => (SEQ_ACK, SEQ_ACK, ev::FIN_ACK, SEQ_FIN),
    };
    // Sent times on packets that ask for an echo; acks echo the sent time of
    // the packet that caused them and stamp their own reply time.
    let is_ack = matches!(
        p.kind,
        Kind::SynAck | Kind::EstabAck | Kind::Ack | Kind::FinAck
    );
    let (data_send_tm, ack_reply_tm) = match p.kind {
        Kind::Syn => (GoTime::ZERO, GoTime::ZERO),
        _ if is_ack => (echo, ours(p.ts)),
        _ => (ours(p.ts), GoTime::ZERO),
    };
    let data = if p.kind == Kind::Data {
        p.data.clone()
    } else {
        Bytes::new()
    };
    let blake2b_checksum = if data.is_empty() {
        Bytes::new()
    } else {
        checksum(&data)
    };
    GoPacket {
        from: p.from.to_string(),
        dest: p.dest.to_string(),
        from_sess_nonce: p.from_nonce.to_string(),
        dest_sess_nonce: p.dest_nonce.to_string(),
        arrived_at_dest_tm: GoTime::ZERO,
        data_send_tm,
        seq_num: seq,
        seq_retry: retry,
        // "Consumed through": our cumulative ack minus one, -1 before any.
        ack_num: p.ack as i64 - 1,
        ack_retry,
        ack_reply_tm,
        tcp_event: event,
        avail_reader_bytes_cap: clamp_i64(p.wnd_bytes.saturating_sub(cx.bytes_in_order)),
        avail_reader_msg_cap: clamp_i64(p.wnd_seq.saturating_sub(p.ack)),
        from_rtt_est_nsec: clamp_i64(p.rtt_us.saturating_mul(1000)),
        from_rtt_sd_nsec: clamp_i64(p.rttvar_us.saturating_mul(1000)),
        from_rtt_n: clamp_i64(p.rtt_samples),
        // Go panics if this goes backwards between data packets; only data
        // carries it (a data packet's end offset never changes on resend).
        cumul_bytes_transmitted: if p.kind == Kind::Data {
            clamp_i64(p.cumul_bytes)
        } else {
            0
        },
        data,
        data_offset: 0,
        blake2b_checksum,
    }
}

fn clamp_i64(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

/// A Go packet in our form, with what the Connection must still fill in.
#[derive(Debug)]
pub(crate) struct Inbound {
    /// The packet. `ack`, `wnd_seq` and `wnd_bytes` are still to be set
    /// (from [`ack`](Self::ack) and the caps); a Fin's and FinAck's `seq`
    /// too; `ts` is the Go sender's wall clock in Unix ns (echoed back
    /// verbatim in our acks), `ts_echo` is 0 (see [`inbound`]).
    pub packet: Packet,
    /// The cumulative ack (next expected seq) when `AckNum` is meaningful:
    /// on a DataAck that answers data (`AckRetry` ≥ 0; Go sends those only
    /// after consuming), and on other acks and keepalives only when
    /// `AckNum` > 0, since Go's counter starts at 0 and a 0 there may mean
    /// "nothing consumed" (go-swp-behaviour.md §14 bug 3).
    pub ack: Option<u64>,
    /// On a DataAck that answers data: the `DataSendTm` it echoes (Unix
    /// ns), the send time of the transmission whose consumption it
    /// acknowledges. The Connection uses it only to learn that a
    /// *retransmitted* packet was delivered (RACK, §13.2).
    pub echo_ns: Option<i128>,
    /// Free messages the peer advertises beyond its ack.
    pub msg_cap: u64,
    /// Free bytes the peer advertises beyond its ack.
    pub byte_cap: u64,
}

/// Translates a decoded Go packet. Fails for events that are never on the
/// wire, negative data sequence numbers and data whose checksum does not
/// match (Go drops those too).
///
/// Go acks when its application *consumes* data, so an echoed time says
/// nothing about which of our packets merely arrived, or that the peer
/// hears us now: `ts_echo` stays 0. The one use made of the echo
/// ([`Inbound::echo_ns`]) is to tell which transmission of a retransmitted
/// packet was consumed, so that one timeout repairs a run of losses.
pub(crate) fn inbound(g: GoPacket) -> Result<Inbound, DecodeError> {
    let kind = match g.tcp_event {
        ev::SYN => Kind::Syn,
        ev::SYN_ACK => Kind::SynAck,
        ev::ESTAB_ACK => Kind::EstabAck,
        ev::FIN => Kind::Fin,
        ev::FIN_ACK => Kind::FinAck,
        ev::DATA_ACK => Kind::Ack,
        ev::DATA => Kind::Data,
        ev::KEEP_ALIVE => Kind::KeepAlive,
        other => return Err(DecodeError::UnknownKind(other.clamp(0, 255) as u8)),
    };
    let mut p = Packet::new(kind);
    let (seq, sent) = match kind {
        Kind::Data => {
            if g.seq_num < 0 || g.seq_retry < 0 {
                return Err(DecodeError::Invalid(
                    "Go data packet with a negative SeqNum",
                ));
            }
            if !g.data.is_empty() && g.blake2b_checksum[..] != Blake2b512::digest(&g.data)[..] {
                return Err(DecodeError::Invalid(
                    "Go data packet whose BLAKE2b checksum does not match its data",
                ));
            }
            p.retry = g.seq_retry.min(u32::MAX as i64) as u32;
            // Go has no message boundaries: each packet is one message.
            p.flags |= flags::EOM;
            (g.seq_num as u64, g.data_send_tm)
        }
        Kind::KeepAlive => {
            // Answered at once, as Go's own peer does, so a Go sender gets
            // RTT samples and fresh window information.
            p.flags |= flags::ACK_NOW;
            (0, g.data_send_tm)
        }
        Kind::Fin | Kind::Syn => (0, g.data_send_tm),
        _ => (0, g.ack_reply_tm),
    };
    p.seq = seq;
    p.ts = u64::try_from(unix_ns(sent)).unwrap_or(0);
    let ack = match kind {
        Kind::Ack if g.ack_retry >= 0 => Some(g.ack_num),
        Kind::Ack | Kind::SynAck | Kind::EstabAck | Kind::FinAck | Kind::KeepAlive
            if g.ack_num > 0 =>
        {
            Some(g.ack_num)
        }
        _ => None,
    }
    .filter(|a| *a >= -1)
    .map(|a| a.saturating_add(1) as u64);
    p.from = Str::from(g.from);
    p.dest = Str::from(g.dest);
    p.from_nonce = Str::from(g.from_sess_nonce);
    p.dest_nonce = Str::from(g.dest_sess_nonce);
    p.rtt_us = (g.from_rtt_est_nsec.max(0) / 1000) as u64;
    p.rttvar_us = (g.from_rtt_sd_nsec.max(0) / 1000) as u64;
    p.rtt_samples = g.from_rtt_n.max(0) as u64;
    if kind == Kind::Data {
        p.cumul_bytes = g.cumul_bytes_transmitted.max(0) as u64;
        p.data = g.data;
    }
    let echo_ns = (kind == Kind::Ack && g.ack_retry >= 0 && !g.data_send_tm.is_zero())
        .then(|| unix_ns(g.data_send_tm));
    Ok(Inbound {
        packet: p,
        ack,
        echo_ns,
        msg_cap: g.avail_reader_msg_cap.max(0) as u64,
        byte_cap: g.avail_reader_bytes_cap.max(0) as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_through_unix_nanoseconds() {
        for ns in [
            0i128,
            1,
            999_999_999,
            1_700_000_000_123_456_789,
            -1,
            -62_135_596_800_000_000_000,
        ] {
            assert_eq!(unix_ns(time_from_unix_ns(ns)), ns, "{ns}");
        }
        assert_eq!(time_from_unix_ns(-62_135_596_800_000_000_000), GoTime::ZERO);
    }

    fn cx() -> OutCtx {
        OutCtx {
            wall_epoch_ns: 1_700_000_000_000_000_000,
            bytes_in_order: 100,
        }
    }

    #[test]
    fn sentinels_and_ack_numbers_follow_go() {
        let mut p = Packet::new(Kind::Syn);
        let g = outbound(&p, &cx());
        assert_eq!(
            (g.seq_num, g.seq_retry, g.tcp_event, g.ack_num),
            (-98, -98, 3, -1)
        );
        assert!(g.data_send_tm.is_zero());
        p.kind = Kind::Ack;
        p.ack = 3;
        p.wnd_seq = 10;
        p.wnd_bytes = 1100;
        let g = outbound(&p, &cx());
        assert_eq!((g.seq_num, g.tcp_event, g.ack_num), (-99, 10, 2));
        assert_eq!(
            (g.avail_reader_msg_cap, g.avail_reader_bytes_cap),
            (7, 1000)
        );
        p.kind = Kind::KeepAlive;
        assert_eq!(outbound(&p, &cx()).seq_num, -777);
        p.kind = Kind::Reset;
        assert_eq!(outbound(&p, &cx()).tcp_event, 8, "a reset is a Fin to Go");
    }

    #[test]
    fn data_carries_a_checksum_that_inbound_verifies() {
        let mut p = Packet::new(Kind::Data);
        p.seq = 4;
        p.data = Bytes::from_static(b"hello");
        p.cumul_bytes = 105;
        let g = outbound(&p, &cx());
        assert_eq!(g.blake2b_checksum.len(), 64);
        assert_eq!(g.cumul_bytes_transmitted, 105);
        let back = inbound(g.clone()).unwrap();
        assert_eq!(back.packet.seq, 4);
        assert_eq!(back.packet.data, p.data);
        assert!(back.ack.is_none(), "AckNum on data is never trusted");
        let mut bad = g;
        bad.data = Bytes::from_static(b"hellO");
        assert!(inbound(bad).is_err());
    }

    #[test]
    fn go_default_zero_ack_is_not_trusted() {
        let mut g = GoPacket {
            tcp_event: ev::KEEP_ALIVE,
            seq_num: SEQ_KEEPALIVE,
            ..GoPacket::default()
        };
        assert_eq!(inbound(g.clone()).unwrap().ack, None);
        g.ack_num = 2;
        assert_eq!(inbound(g.clone()).unwrap().ack, Some(3));
        g.tcp_event = ev::DATA_ACK;
        g.ack_num = 0;
        g.ack_retry = 0;
        assert_eq!(
            inbound(g.clone()).unwrap().ack,
            Some(1),
            "a consumption ack of seq 0"
        );
        g.ack_retry = SEQ_KEEPALIVE;
        assert_eq!(inbound(g).unwrap().ack, None, "a keepalive reply saying 0");
    }
}
