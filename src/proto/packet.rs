//! The protocol's packet, independent of any encoding.
//!
//! A [`Packet`] is what the state machine reads and writes. How it is laid out
//! in bytes is the job of a codec ([`crate::proto::codec`]); the state machine
//! never sees bytes. Every packet, whatever its kind, carries the sender's
//! cumulative ack, selective-ack ranges and receive-window edges, so any
//! packet doubles as an acknowledgement and a window update.
//! See docs/PROTOCOL.md §2 for the meaning of each field.

use super::str::Str;
use bytes::Bytes;

/// Packet kinds. The numbers are the Go library's `TcpEvent` values where one
/// exists (Syn = 3 ... KeepAlive = 12), so traces read the same in both.
///
/// ```
/// use swp::proto::{codec, Kind, Packet};
/// let wire = codec::encode(&Packet::new(Kind::Fin));
/// assert_eq!(codec::decode(&wire).unwrap().kind, Kind::Fin);
/// assert_eq!(Kind::Data as u8, 11); // wire numbers (docs/PROTOCOL.md §2)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Kind {
    /// Opens a session: carries the sender's nonce.
    Syn = 3,
    /// Answers a Syn: carries both nonces.
    SynAck = 4,
    /// Answers a SynAck, completing the three-way handshake.
    EstabAck = 5,
    /// "I have sent all my data": carries the final sequence number.
    Fin = 8,
    /// Acknowledges a Fin.
    FinAck = 9,
    /// A pure acknowledgement / window update.
    Ack = 10,
    /// Application data.
    Data = 11,
    /// Liveness (and, with [`flags::ACK_NOW`], a zero-window probe).
    KeepAlive = 12,
    /// Aborts the session at once.
    Reset = 13,
}

impl Kind {
    /// Every kind, in wire-number order.
    ///
    /// ```
    /// use swp::proto::Kind;
    /// assert_eq!(Kind::ALL.len(), 9);
    /// assert!(Kind::ALL.iter().all(|&k| Kind::from_u8(k as u8) == Some(k)));
    /// ```
    pub const ALL: [Kind; 9] = [
        Kind::Syn,
        Kind::SynAck,
        Kind::EstabAck,
        Kind::Fin,
        Kind::FinAck,
        Kind::Ack,
        Kind::Data,
        Kind::KeepAlive,
        Kind::Reset,
    ];

    /// The kind with wire number `v`, if any.
    ///
    /// ```
    /// use swp::proto::Kind;
    /// assert_eq!(Kind::from_u8(3), Some(Kind::Syn));
    /// assert_eq!(Kind::from_u8(6), None); // unassigned: such a packet is dropped
    /// ```
    pub fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            3 => Kind::Syn,
            4 => Kind::SynAck,
            5 => Kind::EstabAck,
            8 => Kind::Fin,
            9 => Kind::FinAck,
            10 => Kind::Ack,
            11 => Kind::Data,
            12 => Kind::KeepAlive,
            13 => Kind::Reset,
            _ => return None,
        })
    }
}

/// Bits of [`Packet::flags`].
pub mod flags {
    /// This data packet ends a message (message API boundaries).
    ///
    /// ```
    /// use swp::proto::{flags, Kind, Packet};
    /// let mut p = Packet::new(Kind::Data);
    /// p.flags |= flags::EOM; // this packet ends a message
    /// assert!(p.has(flags::EOM) && !p.has(flags::BATCH));
    /// ```
    pub const EOM: u8 = 1;
    /// The receiver should acknowledge at once instead of delaying the ack:
    /// set on the last packet of a burst and on window probes.
    ///
    /// ```
    /// use swp::proto::{flags, Kind, Packet};
    /// let mut probe = Packet::new(Kind::KeepAlive);
    /// probe.flags |= flags::ACK_NOW; // a zero-window probe: answer at once
    /// assert!(probe.has(flags::ACK_NOW));
    /// ```
    pub const ACK_NOW: u8 = 2;
    /// Data: the payload is a batch of whole messages, each preceded by its
    /// length ([`crate::proto::batch`]); every one ends a message.
    ///
    /// ```
    /// use swp::proto::{batch, flags, Kind, Packet};
    /// let mut payload = bytes::BytesMut::new();
    /// batch::push(&mut payload, b"one");
    /// batch::push(&mut payload, b"two");
    /// let mut p = Packet::new(Kind::Data);
    /// p.flags |= flags::BATCH | flags::EOM; // the payload is whole messages
    /// p.data = payload.freeze();
    /// assert_eq!(batch::split(&p.data).unwrap().len(), 2);
    /// ```
    pub const BATCH: u8 = 4;
    /// Syn / SynAck: the sender accepts [`BATCH`] data packets. A peer that
    /// does not set it is never sent one.
    ///
    /// ```
    /// use swp::proto::{codec, flags, Config, Connection};
    /// let t0 = swp::testkit::epoch();
    /// let mut a = Connection::connect(Config::new("a", "b"), t0, 1).unwrap();
    /// let syn = codec::decode(&a.poll_transmit(t0).unwrap().payload).unwrap();
    /// assert!(syn.has(flags::BATCH_OK)); // "send me batches" (Config::batch_messages)
    /// ```
    pub const BATCH_OK: u8 = 8;
    /// On every packet sent after the peer's Fin was received in order: the
    /// Fin consumes no sequence number, so this is how data and acks that
    /// flow back acknowledge it (a FinAck queued behind a slow link's data
    /// no longer delays the close; docs/PROTOCOL.md §7.1).
    ///
    /// ```
    /// use swp::proto::{flags, codec, State};
    /// use swp::testkit::Pair;
    /// use swp::simnet::LinkConfig;
    /// use std::time::Duration;
    /// let mut pair = Pair::new(1, LinkConfig::new(), Pair::default_config("a", "b"), Pair::default_config("b", ""));
    /// assert!(pair.connect(Duration::from_secs(1)));
    /// pair.a.close(pair.now());
    /// assert!(pair.run_until(Duration::from_secs(1), |p| p.b.state() == State::CloseWait));
    /// pair.b.write(b"still talking").unwrap();
    /// let t = pair.b.poll_transmit(pair.now()).unwrap();
    /// assert!(codec::decode(&t.payload).unwrap().has(flags::FIN_SEEN));
    /// ```
    pub const FIN_SEEN: u8 = 16;
    /// Syn / SynAck: `data` is a Noise handshake message and the session
    /// is sealed (docs/PROTOCOL.md §14). A plain listener refuses such a
    /// Syn; a sealed one refuses a Syn without it.
    pub const SEALED: u8 = 32;
    /// All flags this version understands; others are ignored.
    ///
    /// ```
    /// use swp::proto::flags;
    /// assert_eq!(
    ///     flags::KNOWN,
    ///     flags::EOM | flags::ACK_NOW | flags::BATCH | flags::BATCH_OK | flags::FIN_SEEN | flags::SEALED
    /// );
    /// let from_a_newer_peer = 0x80 | flags::EOM;
    /// assert_eq!(from_a_newer_peer & flags::KNOWN, flags::EOM); // unknown bits are ignored
    /// ```
    pub const KNOWN: u8 = EOM | ACK_NOW | BATCH | BATCH_OK | FIN_SEEN | SEALED;
}

/// Maximum selective-ack ranges a packet carries.
///
/// ```
/// use swp::proto::{codec, packet::MAX_SACK_RANGES, Kind, Packet};
/// let mut ack = Packet::new(Kind::Ack);
/// ack.sack = (0..=MAX_SACK_RANGES as u64).map(|i| (10 * i + 2, 10 * i + 3)).collect();
/// // One range too many: the decoder refuses it.
/// assert!(codec::decode(&codec::encode(&ack)).is_err());
/// ack.sack.pop();
/// assert!(codec::decode(&codec::encode(&ack)).is_ok());
/// ```
pub const MAX_SACK_RANGES: usize = 32;

/// One protocol packet. See docs/PROTOCOL.md §2.
///
/// ```
/// use swp::proto::{codec, flags, Kind, Packet, Str};
/// let mut p = Packet::new(Kind::Data);
/// p.from = Str::from("a");
/// p.dest = Str::from("b");
/// p.seq = 7;
/// p.flags = flags::EOM;
/// p.data = bytes::Bytes::from_static(b"payload");
/// let back = codec::decode(&codec::encode(&p)).unwrap();
/// assert_eq!(back, p);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// What this packet is.
    pub kind: Kind,
    /// [`flags`] bits.
    pub flags: u8,
    /// The sender's inbox (NATS subject it listens on).
    pub from: Str,
    /// The receiver's inbox (the subject this packet is published to).
    pub dest: Str,
    /// The sender's session nonce.
    pub from_nonce: Str,
    /// The receiver's session nonce as known to the sender ("" until learned).
    pub dest_nonce: Str,
    /// Data: this packet's sequence number. Fin: the sequence number after
    /// the last data packet. Other kinds: 0, or an echo (FinAck echoes the
    /// Fin's `seq`).
    pub seq: u64,
    /// How many times this sequence number was sent before (0 = original).
    pub retry: u32,
    /// Cumulative ack: every data sequence number below this has arrived.
    pub ack: u64,
    /// Selective acks: `[start, end)` ranges above `ack` that have arrived,
    /// ascending, at most [`MAX_SACK_RANGES`].
    pub sack: Vec<(u64, u64)>,
    /// Sender's clock when sent, microseconds since its session epoch.
    pub ts: u64,
    /// `ts` of the packet that caused this acknowledgement (0 if none).
    pub ts_echo: u64,
    /// Receive window, in messages: the peer may send sequence numbers
    /// strictly below this edge. Absolute, never decreases.
    pub wnd_seq: u64,
    /// Receive window, in bytes: the peer may send data whose end offset
    /// (`cumul_bytes`) is at most this edge. Absolute, never decreases.
    pub wnd_bytes: u64,
    /// Sender's smoothed RTT, microseconds.
    pub rtt_us: u64,
    /// Sender's RTT variation, microseconds.
    pub rttvar_us: u64,
    /// Number of RTT samples behind `rtt_us`.
    pub rtt_samples: u64,
    /// Data: stream bytes ever sent in this direction through the end of this
    /// packet (its end offset). Other kinds: bytes sent so far.
    pub cumul_bytes: u64,
    /// Payload (data packets only).
    pub data: Bytes,
}

impl Packet {
    /// An empty packet of `kind` (all numbers zero, no data), for building
    /// packets field by field.
    ///
    /// ```
    /// use swp::proto::{Packet, Kind};
    /// let p = Packet::new(Kind::Ack);
    /// assert_eq!(p.kind, Kind::Ack);
    /// assert!(p.data.is_empty());
    /// ```
    pub fn new(kind: Kind) -> Packet {
        Packet {
            kind,
            flags: 0,
            from: Str::default(),
            dest: Str::default(),
            from_nonce: Str::default(),
            dest_nonce: Str::default(),
            seq: 0,
            retry: 0,
            ack: 0,
            sack: Vec::new(),
            ts: 0,
            ts_echo: 0,
            wnd_seq: 0,
            wnd_bytes: 0,
            rtt_us: 0,
            rttvar_us: 0,
            rtt_samples: 0,
            cumul_bytes: 0,
            data: Bytes::new(),
        }
    }

    /// True if `flag` (a [`flags`] bit) is set.
    ///
    /// ```
    /// use swp::proto::{flags, Kind, Packet};
    /// let mut p = Packet::new(Kind::Data);
    /// assert!(!p.has(flags::EOM));
    /// p.flags = flags::EOM | flags::ACK_NOW;
    /// assert!(p.has(flags::EOM) && p.has(flags::ACK_NOW));
    /// ```
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// A packet ready to go on the wire: publish `payload` to subject `dest`.
///
/// ```
/// use swp::proto::{Config, Connection, Transmit};
/// let t0 = swp::testkit::epoch();
/// let mut a = Connection::connect(Config::new("me", "svc.peer"), t0, 1).unwrap();
/// let Transmit { dest, payload } = a.poll_transmit(t0).unwrap();
/// // A NATS driver publishes `payload` on subject `dest`.
/// assert_eq!(dest.as_str(), "svc.peer");
/// assert!(!payload.is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Destination inbox (NATS subject).
    pub dest: Str,
    /// Encoded packet.
    pub payload: Bytes,
}
