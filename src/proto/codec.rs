//! Codecs: how a [`Packet`] becomes bytes and back.
//!
//! The state machine never touches bytes; it hands packets to a codec chosen
//! by [`WireFormat`]. The native format (this module) is:
//!
//! ```text
//! +------+------+---------+----------------------------+-----------------+
//! | 0x53 | 0x57 | version | msgpack array (fields §2)  | CRC-32 (BE, 4B) |
//! +------+------+---------+----------------------------+-----------------+
//! ```
//!
//! The CRC-32 (IEEE) covers every byte before it, header and payload, so a
//! corrupted packet of any kind is detected and dropped, not just corrupted
//! data. The first byte, `0x53` ('S'), can never start a Go-swp packet (a
//! msgpack map, `0x8_`/`0xde`/`0xdf`), so the two formats are told apart from
//! the first byte. Decoding arbitrary bytes never panics: every failure is a
//! [`DecodeError`]. Full layout in docs/PROTOCOL.md §2.

use super::packet::{Kind, MAX_SACK_RANGES, Packet};
use super::str::Str;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// First two bytes of every native packet.
///
/// ```
/// use swp::proto::{codec, Kind, Packet};
/// let wire = codec::encode(&Packet::new(Kind::Ack));
/// assert_eq!(&wire[..2], b"SW");
/// assert_eq!(codec::MAGIC, *b"SW");
/// ```
pub const MAGIC: [u8; 2] = [0x53, 0x57];
/// Native format version written by this implementation.
///
/// ```
/// use swp::proto::{codec, DecodeError, Kind, Packet};
/// let wire = codec::encode(&Packet::new(Kind::Ack));
/// assert_eq!(wire[2], codec::VERSION);
/// let mut future = wire.to_vec();
/// future[2] = 9;
/// assert_eq!(codec::decode(&future.into()), Err(DecodeError::UnsupportedVersion(9)));
/// ```
pub const VERSION: u8 = 1;
/// Bytes of framing around the msgpack body (magic, version, CRC).
///
/// ```
/// use swp::proto::{codec, Kind, Packet};
/// let p = Packet::new(Kind::Ack);
/// let head = codec::encode_head(&p, 0); // magic, version, msgpack body
/// assert_eq!(codec::encode(&p).len(), head.len() + 4); // + the CRC
/// assert_eq!(codec::FRAMING, 2 + 1 + 4); // magic + version + CRC
/// ```
pub const FRAMING: usize = 3 + 4;
/// Upper bound of a native packet's size beyond its data, given inbox and
/// nonce lengths; used to keep packets under the transport's max payload.
///
/// ```
/// use swp::proto::{codec, Kind, Packet, Str};
/// let mut p = Packet::new(Kind::Data);
/// p.from = Str::from("inbox.a");
/// p.dest = Str::from("inbox.b");
/// p.seq = u64::MAX;
/// p.ack = u64::MAX;
/// p.data = bytes::Bytes::from(vec![0u8; 1000]);
/// let names = p.from.len() + p.dest.len();
/// assert!(codec::encode(&p).len() <= 1000 + codec::max_overhead(names));
/// ```
pub fn max_overhead(inbox_and_nonce_bytes: usize) -> usize {
    // 18 fixed numeric fields of at most 9 bytes, array/str/bin headers,
    // SACK ranges of at most 2 × 9 bytes each, framing.
    FRAMING + 1 + 18 * 9 + 4 * 5 + inbox_and_nonce_bytes + 5 + MAX_SACK_RANGES * 19 + 5
}

/// The packet checksum: CRC-32 (IEEE 802.3, the zlib/PNG/Ethernet one:
/// reflected polynomial `0xedb88320`, initial and final XOR `0xffffffff`;
/// the check value of `b"123456789"` is `0xcbf43926`).
///
/// Computed with `crc-fast`, which folds eight 128-bit lanes at a time with
/// carry-less multiplication (PCLMULQDQ / PMULL, detected at run time): 1.7x
/// the speed of crc32fast's four lanes here (19.4 vs 11.5 GB/s on 63 KiB),
/// and the checksum is the largest per-byte cost swp adds to a stream.
///
/// ```
/// assert_eq!(swp::proto::codec::crc32(b"123456789"), 0xcbf4_3926);
/// ```
pub fn crc32(bytes: &[u8]) -> u32 {
    crc_fast::crc32_iso_hdlc(bytes)
}

/// Why bytes could not be decoded into a packet.
///
/// ```
/// use swp::proto::{codec, DecodeError, Kind, Packet};
/// let mut wire = codec::encode(&Packet::new(Kind::Ack)).to_vec();
/// wire[5] ^= 0x01; // one bit flipped in flight
/// match codec::decode(&wire.into()) {
///     Err(DecodeError::Checksum { .. }) => {}
///     other => panic!("{other:?}"),
/// }
/// assert_eq!(codec::decode(&bytes::Bytes::from_static(b"xy")), Err(DecodeError::TooShort(2)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Fewer bytes than the smallest possible packet.
    #[error("packet too short: {0} bytes")]
    TooShort(usize),
    /// Neither a native nor a Go packet.
    #[error("not a swp packet (first bytes {0:02x?})")]
    BadMagic([u8; 2]),
    /// A native packet of a version this implementation does not speak.
    #[error("unsupported swp packet version {0} (this peer speaks {VERSION})")]
    UnsupportedVersion(u8),
    /// The CRC did not match: the packet was damaged in flight.
    #[error("checksum mismatch: packet says {expected:08x}, content hashes to {actual:08x}")]
    Checksum {
        /// CRC carried by the packet.
        expected: u32,
        /// CRC computed over the received bytes.
        actual: u32,
    },
    /// The body is not the msgpack structure expected.
    #[error("malformed packet body: {0}")]
    Malformed(String),
    /// An unknown packet kind.
    #[error("unknown packet kind {0}")]
    UnknownKind(u8),
    /// Structurally valid but semantically impossible (e.g. bad SACK ranges).
    #[error("invalid packet: {0}")]
    Invalid(&'static str),
    /// Not a well-formed go-sliding-window packet.
    #[error("malformed Go packet: {0}")]
    Go(#[from] super::go::codec::GoDecodeError),
}

/// Which encoding a session speaks on the wire.
///
/// ```
/// use swp::proto::{Config, WireFormat};
/// let cfg = Config::new("me", "go.peer").wire_format(WireFormat::Go);
/// assert_eq!(cfg.format(), WireFormat::Go);
/// assert_eq!(WireFormat::default(), WireFormat::Native);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WireFormat {
    /// This crate's compact, checksummed format.
    #[default]
    Native,
    /// go-sliding-window's msgpack `Packet` and its semantics, to talk to Go
    /// peers (docs/PROTOCOL.md §13). A listener configured for `Native`
    /// switches to this by itself when the first Syn it gets is in Go's
    /// format.
    Go,
}

#[derive(Serialize)]
struct WireOut<'a> {
    kind: u8,
    flags: u8,
    from: &'a str,
    dest: &'a str,
    from_nonce: &'a str,
    dest_nonce: &'a str,
    seq: u64,
    retry: u32,
    ack: u64,
    sack: &'a [(u64, u64)],
    ts: u64,
    ts_echo: u64,
    wnd_seq: u64,
    wnd_bytes: u64,
    rtt_us: u64,
    rttvar_us: u64,
    rtt_samples: u64,
    cumul_bytes: u64,
    #[serde(with = "serde_bytes")]
    data: &'a [u8],
}

#[derive(Deserialize)]
struct WireIn<'a> {
    kind: u8,
    flags: u8,
    #[serde(borrow)]
    from: &'a str,
    #[serde(borrow)]
    dest: &'a str,
    #[serde(borrow)]
    from_nonce: &'a str,
    #[serde(borrow)]
    dest_nonce: &'a str,
    seq: u64,
    retry: u32,
    ack: u64,
    sack: Vec<(u64, u64)>,
    ts: u64,
    ts_echo: u64,
    wnd_seq: u64,
    wnd_bytes: u64,
    rtt_us: u64,
    rttvar_us: u64,
    rtt_samples: u64,
    cumul_bytes: u64,
    #[serde(borrow, with = "serde_bytes")]
    data: &'a [u8],
}

/// Bytes reserved in front of stream data buffered for sending, so that the
/// packet header can be written in place (see [`encode_in_place`]).
///
/// ```
/// use swp::proto::{codec, Kind, Packet};
/// // A buffer with the payload after HEADROOM bytes can be framed in place.
/// let mut buf = bytes::BytesMut::zeroed(codec::HEADROOM);
/// buf.extend_from_slice(b"data");
/// let (frame, data) = codec::encode_in_place(&Packet::new(Kind::Data), buf, codec::HEADROOM);
/// assert_eq!(data, "data");
/// assert_eq!(codec::decode(&frame).unwrap().data, "data");
/// ```
pub const HEADROOM: usize = 1024;

/// Encodes a packet in the native format.
///
/// ```
/// use swp::proto::{codec, Packet, Kind};
/// let mut p = Packet::new(Kind::Data);
/// p.data = bytes::Bytes::from_static(b"hello");
/// let wire = codec::encode(&p);
/// assert_eq!(codec::decode(&wire).unwrap(), p);
/// ```
pub fn encode(p: &Packet) -> Bytes {
    let mut buf = Vec::with_capacity(head_capacity(p) + p.data.len() + 4);
    write_head(p, p.data.len(), &mut buf);
    buf.extend_from_slice(&p.data);
    let crc = crc32(&buf);
    buf.extend_from_slice(&crc.to_be_bytes());
    Bytes::from(buf)
}

fn head_capacity(p: &Packet) -> usize {
    200 + p.sack.len() * 18 + p.from.len() + p.dest.len() + p.from_nonce.len() + p.dest_nonce.len()
}

/// Everything of `p`'s encoding that precedes its `data_len` payload bytes:
/// magic, version, the msgpack fields, and the `bin` header of the payload.
/// (`p.data` itself is ignored.)
///
/// ```
/// use swp::proto::{codec, Kind, Packet};
/// let mut p = Packet::new(Kind::Data);
/// p.data = bytes::Bytes::from_static(b"xyz");
/// let head = codec::encode_head(&p, 3);
/// let whole = codec::encode(&p);
/// // The head is the encoding up to the payload; then payload and CRC follow.
/// assert_eq!(&whole[..head.len()], &head[..]);
/// assert_eq!(&whole[head.len()..head.len() + 3], b"xyz");
/// assert_eq!(whole.len(), head.len() + 3 + 4);
/// ```
pub fn encode_head(p: &Packet, data_len: usize) -> Vec<u8> {
    let mut buf = Vec::with_capacity(head_capacity(p));
    write_head(p, data_len, &mut buf);
    buf
}

fn write_head(p: &Packet, data_len: usize, buf: &mut Vec<u8>) {
    buf.extend_from_slice(&MAGIC);
    buf.push(VERSION);
    let w = WireOut {
        kind: p.kind as u8,
        flags: p.flags,
        from: &p.from,
        dest: &p.dest,
        from_nonce: &p.from_nonce,
        dest_nonce: &p.dest_nonce,
        seq: p.seq,
        retry: p.retry,
        ack: p.ack,
        sack: &p.sack,
        ts: p.ts,
        ts_echo: p.ts_echo,
        wnd_seq: p.wnd_seq,
        wnd_bytes: p.wnd_bytes,
        rtt_us: p.rtt_us,
        rttvar_us: p.rttvar_us,
        rtt_samples: p.rtt_samples,
        cumul_bytes: p.cumul_bytes,
        data: &[],
    };
    // Writing msgpack into a Vec cannot fail for this struct (no maps with
    // non-string keys, no unsupported types).
    rmp_serde::encode::write(buf, &w).expect("msgpack encoding into a Vec cannot fail");
    // The payload is the last field; it was written empty (bin8, length 0:
    // `c4 00`). Replace that with the real length's bin header; the payload
    // bytes follow.
    debug_assert_eq!(&buf[buf.len() - 2..], &[0xc4, 0x00]);
    buf.truncate(buf.len() - 2);
    rmp::encode::write_bin_len(buf, data_len as u32).expect("writing into a Vec cannot fail");
}

/// Encodes `p` around a payload that already sits in `buf` after
/// `headroom` reserved bytes (`buf[headroom..]` is the payload; `p.data` is
/// ignored), without copying the payload. Returns the encoded packet and
/// the payload as a slice of it. If the header does not fit the headroom,
/// falls back to copying.
///
/// ```
/// use swp::proto::{codec, Kind, Packet};
/// let mut p = Packet::new(Kind::Data);
/// p.seq = 1;
/// let mut buf = bytes::BytesMut::zeroed(codec::HEADROOM);
/// buf.extend_from_slice(&[7u8; 1000]);
/// let (frame, data) = codec::encode_in_place(&p, buf, codec::HEADROOM);
/// p.data = data.clone();
/// assert_eq!(frame, codec::encode(&p)); // the same bytes as encode()
/// // `data` is a slice of `frame`: kept for retransmission without a copy.
/// assert_eq!(data.as_ptr(), frame[frame.len() - 4 - 1000..].as_ptr());
/// ```
pub fn encode_in_place(p: &Packet, mut buf: bytes::BytesMut, headroom: usize) -> (Bytes, Bytes) {
    let data_len = buf.len() - headroom;
    let head = encode_head(p, data_len);
    if head.len() > headroom {
        let data = buf.split_off(headroom).freeze();
        let mut q = p.clone();
        q.data = data.clone();
        return (encode(&q), data);
    }
    let start = headroom - head.len();
    buf[start..headroom].copy_from_slice(&head);
    let crc = crc32(&buf[start..]);
    buf.extend_from_slice(&crc.to_be_bytes());
    let frame = buf.freeze();
    let data = frame.slice(headroom..headroom + data_len);
    (frame.slice(start..), data)
}

/// Decodes a native packet. The payload shares `b`'s memory (no copy).
///
/// ```
/// use swp::proto::{codec, Kind, Packet};
/// let mut p = Packet::new(Kind::Data);
/// p.data = bytes::Bytes::from_static(b"abc");
/// let wire = codec::encode(&p);
/// let q = codec::decode(&wire).unwrap();
/// assert_eq!(q, p);
/// assert_eq!(q.data.as_ptr(), wire[wire.len() - 7..].as_ptr()); // shares `wire`
/// assert!(codec::decode(&wire.slice(..wire.len() - 1)).is_err()); // truncated
/// ```
pub fn decode(b: &Bytes) -> Result<Packet, DecodeError> {
    if b.len() < FRAMING + 1 {
        return Err(DecodeError::TooShort(b.len()));
    }
    if b[..2] != MAGIC {
        return Err(DecodeError::BadMagic([b[0], b[1]]));
    }
    if b[2] != VERSION {
        return Err(DecodeError::UnsupportedVersion(b[2]));
    }
    let (body, tail) = b.split_at(b.len() - 4);
    let expected = u32::from_be_bytes([tail[0], tail[1], tail[2], tail[3]]);
    let actual = crc32(body);
    if expected != actual {
        return Err(DecodeError::Checksum { expected, actual });
    }
    let w: WireIn<'_> =
        rmp_serde::from_slice(&body[3..]).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    let kind = Kind::from_u8(w.kind).ok_or(DecodeError::UnknownKind(w.kind))?;
    validate_sack(w.ack, &w.sack)?;
    Ok(Packet {
        kind,
        flags: w.flags,
        from: Str::slice_of(b, w.from),
        dest: Str::slice_of(b, w.dest),
        from_nonce: Str::slice_of(b, w.from_nonce),
        dest_nonce: Str::slice_of(b, w.dest_nonce),
        seq: w.seq,
        retry: w.retry,
        ack: w.ack,
        sack: w.sack,
        ts: w.ts,
        ts_echo: w.ts_echo,
        wnd_seq: w.wnd_seq,
        wnd_bytes: w.wnd_bytes,
        rtt_us: w.rtt_us,
        rttvar_us: w.rttvar_us,
        rtt_samples: w.rtt_samples,
        cumul_bytes: w.cumul_bytes,
        data: if w.data.is_empty() {
            Bytes::new()
        } else {
            b.slice_ref(w.data)
        },
    })
}

/// SACK ranges must be non-empty, above the cumulative ack, disjoint and
/// few; anything else is a malformed packet. (Their order is free: the
/// newest block comes first.)
fn validate_sack(ack: u64, sack: &[(u64, u64)]) -> Result<(), DecodeError> {
    if sack.len() > MAX_SACK_RANGES {
        return Err(DecodeError::Invalid("too many SACK ranges"));
    }
    // The ack itself is missing (or the ack would be higher), so every range
    // starts above it.
    for &(s, e) in sack {
        if s >= e {
            return Err(DecodeError::Invalid("empty SACK range"));
        }
        if s <= ack {
            return Err(DecodeError::Invalid("SACK range at or below the ack"));
        }
    }
    let mut sorted = sack.to_vec();
    sorted.sort_unstable();
    if sorted.windows(2).any(|w| w[1].0 < w[0].1) {
        return Err(DecodeError::Invalid("overlapping SACK ranges"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_kind() -> impl Strategy<Value = Kind> {
        prop::sample::select(Kind::ALL.to_vec())
    }

    prop_compose! {
        fn arb_packet()(
            kind in arb_kind(), flags in any::<u8>(),
            from in "[a-zA-Z0-9._]{0,40}", dest in "[a-zA-Z0-9._]{0,40}",
            fnonce in "[a-zA-Z0-9]{0,30}", dnonce in "[a-zA-Z0-9]{0,30}",
            seq in any::<u64>(), retry in any::<u32>(), ack in 0u64..1 << 62,
            gaps in prop::collection::vec((1u64..1000, 1u64..1000), 0..MAX_SACK_RANGES),
            nums in prop::array::uniform9(any::<u64>()),
            data in prop::collection::vec(any::<u8>(), 0..2000),
        ) -> Packet {
            let mut sack = vec![];
            let mut at = ack;
            for (gap, len) in gaps { let s = at + gap; sack.push((s, s + len)); at = s + len; }
            Packet { kind, flags, from: from.into(), dest: dest.into(), from_nonce: fnonce.into(), dest_nonce: dnonce.into(), seq, retry,
                ack, sack, ts: nums[0], ts_echo: nums[1], wnd_seq: nums[2], wnd_bytes: nums[3],
                rtt_us: nums[4], rttvar_us: nums[5], rtt_samples: nums[6], cumul_bytes: nums[7],
                data: Bytes::from(data) }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn round_trip(p in arb_packet()) {
            let b = encode(&p);
            prop_assert_eq!(decode(&b).unwrap(), p);
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode(&Bytes::from(b));
        }

        #[test]
        fn arbitrary_bodies_with_valid_framing_never_panic(body in prop::collection::vec(any::<u8>(), 0..600)) {
            let mut v = vec![MAGIC[0], MAGIC[1], VERSION];
            v.extend_from_slice(&body);
            let crc = crc32(&v);
            v.extend_from_slice(&crc.to_be_bytes());
            let _ = decode(&Bytes::from(v));
        }

        #[test]
        fn any_single_bit_flip_is_detected(p in arb_packet(), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
            let mut v = encode(&p).to_vec();
            let i = pos.index(v.len());
            v[i] ^= 1 << bit;
            prop_assert!(decode(&Bytes::from(v)).is_err());
        }
    }

    #[test]
    fn typed_errors() {
        assert_eq!(
            decode(&Bytes::from_static(b"")),
            Err(DecodeError::TooShort(0))
        );
        assert!(matches!(
            decode(&Bytes::from_static(&[0xde, 0, 0x15, 1, 2, 3, 4, 5])),
            Err(DecodeError::BadMagic([0xde, 0]))
        ));
        let mut v = encode(&Packet::new(Kind::Ack)).to_vec();
        v[2] = 9;
        assert_eq!(
            decode(&Bytes::from(v)),
            Err(DecodeError::UnsupportedVersion(9))
        );
        // a valid frame around an unknown kind
        let mut p = Packet::new(Kind::Ack);
        p.sack = vec![(5, 3)];
        let b = encode(&p);
        assert_eq!(decode(&b), Err(DecodeError::Invalid("empty SACK range")));
    }

    proptest! {
        #[test]
        fn in_place_encoding_is_identical_to_encode(p in arb_packet(), headroom in prop::sample::select(vec![0usize, 64, HEADROOM])) {
            let mut buf = bytes::BytesMut::with_capacity(headroom + p.data.len() + 4);
            buf.resize(headroom, 0);
            buf.extend_from_slice(&p.data);
            let (frame, data) = encode_in_place(&p, buf, headroom);
            prop_assert_eq!(&frame, &encode(&p));
            prop_assert_eq!(&data, &p.data);
        }
    }

    #[test]
    fn data_is_not_copied_on_decode() {
        let mut p = Packet::new(Kind::Data);
        p.data = Bytes::from(vec![7u8; 4096]);
        let wire = encode(&p);
        let q = decode(&wire).unwrap();
        let range = wire.as_ptr() as usize..wire.as_ptr() as usize + wire.len();
        assert!(range.contains(&(q.data.as_ptr() as usize)));
    }
}
