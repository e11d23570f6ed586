//! go-sliding-window's wire encoding (`swp.Packet` and `swp.BigFile` as
//! tinylib/msgp generates them), to talk to Go peers.
//!
//! Layout (see tests/data/go-swp/README.md and
//! docs/go-sliding-window.md §1):
//! * a Packet is a msgpack **map16 of 21 entries** (`de 00 15`), keys the Go
//!   field names as str, in declaration order;
//! * ints in msgp's smallest *signed* form: positive fixint, else int16,
//!   int32, int64 (never int8 or uint for positives); negative fixint, int8,
//!   int16, int32, int64;
//! * strings as str, bytes as bin (empty or nil: `c4 00`);
//! * times as ext8 type 5, 12 bytes: big-endian i64 Unix seconds and i32
//!   nanoseconds, UTC; Go's zero time is seconds -62135596800.
//!
//! The decoder accepts what Go's decoder accepts (map16/map32/fixmap, keys as
//! str or bin, any int or uint width, any str/bin width, unknown keys
//! skipped, missing keys zero) and rejects what it rejects (nil for a
//! string, an array for bytes, any other timestamp encoding), always with a
//! [`GoDecodeError`], never a panic. The encoder writes only canonical forms.

use bytes::Bytes;
use rmpv::ValueRef;

/// A Go `time.Time` on the wire: Unix seconds and nanoseconds (UTC).
///
/// ```
/// use swp::proto::go::codec::{encode_packet, GoPacket, GoTime};
/// // On the wire: msgp's ext8 type 5, big-endian seconds then nanoseconds.
/// let t = GoTime { secs: 1_700_000_000, nanos: 5 };
/// let wire = encode_packet(&GoPacket { data_send_tm: t, ..Default::default() });
/// let mut ext = vec![0xc7, 12, 5];
/// ext.extend_from_slice(&1_700_000_000i64.to_be_bytes());
/// ext.extend_from_slice(&5i32.to_be_bytes());
/// assert!(wire.windows(ext.len()).any(|w| w == ext));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GoTime {
    /// Seconds since the Unix epoch (negative before 1970).
    pub secs: i64,
    /// Nanoseconds within the second.
    pub nanos: i32,
}

impl GoTime {
    /// Go's zero `time.Time` (0001-01-01T00:00:00Z).
    ///
    /// ```
    /// use swp::proto::go::codec::GoTime;
    /// assert_eq!(GoTime::default(), GoTime::ZERO); // what Go sends for an unset time
    /// assert_eq!(GoTime::ZERO.secs, -62_135_596_800); // 0001-01-01T00:00:00Z
    /// ```
    pub const ZERO: GoTime = GoTime {
        secs: -62_135_596_800,
        nanos: 0,
    };
    /// True for Go's zero time.
    ///
    /// ```
    /// use swp::proto::go::codec::GoTime;
    /// assert!(GoTime::ZERO.is_zero());
    /// assert!(!GoTime { secs: 0, nanos: 0 }.is_zero()); // 1970 is not Go's zero time
    /// ```
    pub fn is_zero(&self) -> bool {
        *self == Self::ZERO
    }
}

impl Default for GoTime {
    fn default() -> Self {
        Self::ZERO
    }
}

/// go-sliding-window's `Packet`, field for field (wire order).
///
/// ```
/// use swp::proto::go::codec::{decode_packet, encode_packet, GoPacket};
/// use swp::proto::go::link as golink;
/// let data = bytes::Bytes::from_static(b"hello");
/// let p = GoPacket {
///     from: "inbox.a".into(),
///     dest: "inbox.b".into(),
///     seq_num: 0,
///     tcp_event: 11, // Data
///     cumul_bytes_transmitted: 5,
///     blake2b_checksum: golink::checksum(&data),
///     data,
///     ..Default::default()
/// };
/// assert_eq!(decode_packet(&encode_packet(&p)).unwrap(), p);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[allow(missing_docs)]
pub struct GoPacket {
    pub from: String,
    pub dest: String,
    pub from_sess_nonce: String,
    pub dest_sess_nonce: String,
    pub arrived_at_dest_tm: GoTime,
    pub data_send_tm: GoTime,
    pub seq_num: i64,
    pub seq_retry: i64,
    pub ack_num: i64,
    pub ack_retry: i64,
    pub ack_reply_tm: GoTime,
    pub tcp_event: i64,
    pub avail_reader_bytes_cap: i64,
    pub avail_reader_msg_cap: i64,
    pub from_rtt_est_nsec: i64,
    pub from_rtt_sd_nsec: i64,
    pub from_rtt_n: i64,
    pub cumul_bytes_transmitted: i64,
    pub data: Bytes,
    pub data_offset: i64,
    pub blake2b_checksum: Bytes,
}

/// Why bytes are not a Go packet.
///
/// ```
/// use swp::proto::go::codec::{decode_packet, GoDecodeError};
/// assert_eq!(decode_packet(&[0x92, 1, 2]), Err(GoDecodeError::NotAMap)); // an array
/// // {"From": nil}: Go's decoder rejects nil for a string, and so do we.
/// let nil_from = [&[0x81, 0xa4][..], b"From", &[0xc0]].concat();
/// let err = decode_packet(&nil_from).unwrap_err();
/// assert!(matches!(err, GoDecodeError::WrongType { field: "From", .. }), "{err}");
/// assert!(matches!(decode_packet(&[0xde, 0x00]), Err(GoDecodeError::Msgpack(_)))); // truncated
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GoDecodeError {
    /// Not well-formed msgpack (truncated, bad marker ...).
    #[error("malformed msgpack: {0}")]
    Msgpack(String),
    /// Bytes left after the top-level map.
    #[error("{0} bytes after the end of the message")]
    Trailing(usize),
    /// The top level is not a map.
    #[error("expected a msgpack map at the top level")]
    NotAMap,
    /// A key that is neither str nor bin.
    #[error("a map key is not a string")]
    BadKey,
    /// A field of the wrong msgpack type (e.g. nil for a string).
    #[error("field {field}: expected {expected}")]
    WrongType {
        /// The Go field name.
        field: &'static str,
        /// What Go accepts there.
        expected: &'static str,
    },
    /// An integer that does not fit the Go type.
    #[error("field {0}: integer out of range")]
    Range(&'static str),
}

pub(crate) fn write_i64(buf: &mut Vec<u8>, v: i64) {
    // msgp's AppendInt64: never int8 or uint for non-negative values.
    if (0..=127).contains(&v) {
        buf.push(v as u8);
    } else if v >= 0 && v <= i16::MAX as i64 {
        buf.push(0xd1);
        buf.extend_from_slice(&(v as i16).to_be_bytes());
    } else if v >= 0 && v <= i32::MAX as i64 {
        buf.push(0xd2);
        buf.extend_from_slice(&(v as i32).to_be_bytes());
    } else if v >= 0 {
        buf.push(0xd3);
        buf.extend_from_slice(&v.to_be_bytes());
    } else if v >= -32 {
        buf.push(v as i8 as u8);
    } else if v >= i8::MIN as i64 {
        buf.push(0xd0);
        buf.push(v as i8 as u8);
    } else if v >= i16::MIN as i64 {
        buf.push(0xd1);
        buf.extend_from_slice(&(v as i16).to_be_bytes());
    } else if v >= i32::MIN as i64 {
        buf.push(0xd2);
        buf.extend_from_slice(&(v as i32).to_be_bytes());
    } else {
        buf.push(0xd3);
        buf.extend_from_slice(&v.to_be_bytes());
    }
}

pub(crate) fn write_str(buf: &mut Vec<u8>, s: &str) {
    rmp::encode::write_str(buf, s).expect("writing into a Vec cannot fail");
}

pub(crate) fn write_bin(buf: &mut Vec<u8>, b: &[u8]) {
    rmp::encode::write_bin(buf, b).expect("writing into a Vec cannot fail");
}

pub(crate) fn write_time(buf: &mut Vec<u8>, t: GoTime) {
    buf.extend_from_slice(&[0xc7, 12, 5]);
    buf.extend_from_slice(&t.secs.to_be_bytes());
    buf.extend_from_slice(&t.nanos.to_be_bytes());
}

/// Encodes a packet exactly as Go's `MarshalMsg` does.
///
/// ```
/// use swp::proto::go::codec::{encode_packet, GoPacket};
/// let wire = encode_packet(&GoPacket { seq_num: 128, ..Default::default() });
/// assert_eq!(&wire[..3], &[0xde, 0x00, 21]); // map16 of 21 entries, as msgp writes it
/// // msgp's smallest *signed* form: 128 is an int16, never a uint8.
/// let key = [&[0xa6][..], b"SeqNum", &[0xd1, 0x00, 0x80]].concat();
/// assert!(wire.windows(key.len()).any(|w| w == key));
/// ```
pub fn encode_packet(p: &GoPacket) -> Vec<u8> {
    let mut b = Vec::with_capacity(320 + p.data.len() + p.blake2b_checksum.len());
    b.extend_from_slice(&[0xde, 0x00, 21]);
    let kv_s = |b: &mut Vec<u8>, k: &str, v: &str| {
        write_str(b, k);
        write_str(b, v);
    };
    kv_s(&mut b, "From", &p.from);
    kv_s(&mut b, "Dest", &p.dest);
    kv_s(&mut b, "FromSessNonce", &p.from_sess_nonce);
    kv_s(&mut b, "DestSessNonce", &p.dest_sess_nonce);
    write_str(&mut b, "ArrivedAtDestTm");
    write_time(&mut b, p.arrived_at_dest_tm);
    write_str(&mut b, "DataSendTm");
    write_time(&mut b, p.data_send_tm);
    for (k, v) in [
        ("SeqNum", p.seq_num),
        ("SeqRetry", p.seq_retry),
        ("AckNum", p.ack_num),
        ("AckRetry", p.ack_retry),
    ] {
        write_str(&mut b, k);
        write_i64(&mut b, v);
    }
    write_str(&mut b, "AckReplyTm");
    write_time(&mut b, p.ack_reply_tm);
    for (k, v) in [
        ("TcpEvent", p.tcp_event),
        ("AvailReaderBytesCap", p.avail_reader_bytes_cap),
        ("AvailReaderMsgCap", p.avail_reader_msg_cap),
        ("FromRttEstNsec", p.from_rtt_est_nsec),
        ("FromRttSdNsec", p.from_rtt_sd_nsec),
        ("FromRttN", p.from_rtt_n),
        ("CumulBytesTransmitted", p.cumul_bytes_transmitted),
    ] {
        write_str(&mut b, k);
        write_i64(&mut b, v);
    }
    write_str(&mut b, "Data");
    write_bin(&mut b, &p.data);
    write_str(&mut b, "DataOffset");
    write_i64(&mut b, p.data_offset);
    write_str(&mut b, "Blake2bChecksum");
    write_bin(&mut b, &p.blake2b_checksum);
    b
}

/// The top-level map's entries, with string keys.
pub(crate) fn top_map(input: &[u8]) -> Result<Vec<(String, ValueRef<'_>)>, GoDecodeError> {
    let mut rd = input;
    let v =
        rmpv::decode::read_value_ref(&mut rd).map_err(|e| GoDecodeError::Msgpack(e.to_string()))?;
    if !rd.is_empty() {
        return Err(GoDecodeError::Trailing(rd.len()));
    }
    let ValueRef::Map(entries) = v else {
        return Err(GoDecodeError::NotAMap);
    };
    entries
        .into_iter()
        .map(|(k, v)| {
            let key = match k {
                ValueRef::String(s) => s.as_str().map(str::to_string),
                ValueRef::Binary(b) => std::str::from_utf8(b).ok().map(str::to_string),
                _ => None,
            }
            .ok_or(GoDecodeError::BadKey)?;
            Ok((key, v))
        })
        .collect()
}

pub(crate) fn as_i64(field: &'static str, v: &ValueRef<'_>) -> Result<i64, GoDecodeError> {
    match v {
        ValueRef::Integer(i) => i.as_i64().ok_or(GoDecodeError::Range(field)),
        _ => Err(GoDecodeError::WrongType {
            field,
            expected: "an integer",
        }),
    }
}

pub(crate) fn as_string(field: &'static str, v: &ValueRef<'_>) -> Result<String, GoDecodeError> {
    match v {
        ValueRef::String(s) => s
            .as_str()
            .map(str::to_string)
            .ok_or(GoDecodeError::WrongType {
                field,
                expected: "a UTF-8 str",
            }),
        _ => Err(GoDecodeError::WrongType {
            field,
            expected: "a str",
        }),
    }
}

pub(crate) fn as_bytes(field: &'static str, v: &ValueRef<'_>) -> Result<Bytes, GoDecodeError> {
    match v {
        ValueRef::Binary(b) => Ok(Bytes::copy_from_slice(b)),
        // msgp's ReadBytes also accepts nil as an empty slice.
        ValueRef::Nil => Ok(Bytes::new()),
        _ => Err(GoDecodeError::WrongType {
            field,
            expected: "bin",
        }),
    }
}

pub(crate) fn as_time(field: &'static str, v: &ValueRef<'_>) -> Result<GoTime, GoDecodeError> {
    match v {
        ValueRef::Ext(5, d) if d.len() == 12 => Ok(GoTime {
            secs: i64::from_be_bytes(d[..8].try_into().expect("12 bytes")),
            nanos: i32::from_be_bytes(d[8..].try_into().expect("12 bytes")),
        }),
        _ => Err(GoDecodeError::WrongType {
            field,
            expected: "a msgp time (ext type 5, 12 bytes)",
        }),
    }
}

/// Decodes a Go packet (see the module docs for what is accepted).
///
/// ```
/// use swp::proto::go::codec::decode_packet;
/// // Keys in any order, unknown keys skipped, missing keys zero: as Go decodes.
/// let mut m = vec![0x82];
/// rmp::encode::write_str(&mut m, "Extra").unwrap();
/// rmp::encode::write_str(&mut m, "ignored").unwrap();
/// rmp::encode::write_str(&mut m, "SeqNum").unwrap();
/// rmp::encode::write_uint(&mut m, 7).unwrap(); // any int width is accepted
/// let p = decode_packet(&m).unwrap();
/// assert_eq!((p.seq_num, p.ack_num, p.from.as_str()), (7, 0, ""));
/// assert!(decode_packet(&[m.as_slice(), &[0]].concat()).is_err()); // trailing bytes
/// ```
pub fn decode_packet(input: &[u8]) -> Result<GoPacket, GoDecodeError> {
    let mut p = GoPacket::default();
    for (k, v) in top_map(input)? {
        match k.as_str() {
            "From" => p.from = as_string("From", &v)?,
            "Dest" => p.dest = as_string("Dest", &v)?,
            "FromSessNonce" => p.from_sess_nonce = as_string("FromSessNonce", &v)?,
            "DestSessNonce" => p.dest_sess_nonce = as_string("DestSessNonce", &v)?,
            "ArrivedAtDestTm" => p.arrived_at_dest_tm = as_time("ArrivedAtDestTm", &v)?,
            "DataSendTm" => p.data_send_tm = as_time("DataSendTm", &v)?,
            "SeqNum" => p.seq_num = as_i64("SeqNum", &v)?,
            "SeqRetry" => p.seq_retry = as_i64("SeqRetry", &v)?,
            "AckNum" => p.ack_num = as_i64("AckNum", &v)?,
            "AckRetry" => p.ack_retry = as_i64("AckRetry", &v)?,
            "AckReplyTm" => p.ack_reply_tm = as_time("AckReplyTm", &v)?,
            "TcpEvent" => p.tcp_event = as_i64("TcpEvent", &v)?,
            "AvailReaderBytesCap" => p.avail_reader_bytes_cap = as_i64("AvailReaderBytesCap", &v)?,
            "AvailReaderMsgCap" => p.avail_reader_msg_cap = as_i64("AvailReaderMsgCap", &v)?,
            "FromRttEstNsec" => p.from_rtt_est_nsec = as_i64("FromRttEstNsec", &v)?,
            "FromRttSdNsec" => p.from_rtt_sd_nsec = as_i64("FromRttSdNsec", &v)?,
            "FromRttN" => p.from_rtt_n = as_i64("FromRttN", &v)?,
            "CumulBytesTransmitted" => {
                p.cumul_bytes_transmitted = as_i64("CumulBytesTransmitted", &v)?
            }
            "Data" => p.data = as_bytes("Data", &v)?,
            "DataOffset" => p.data_offset = as_i64("DataOffset", &v)?,
            "Blake2bChecksum" => p.blake2b_checksum = as_bytes("Blake2bChecksum", &v)?,
            _ => {} // unknown keys are skipped, as msgp does
        }
    }
    Ok(p)
}

/// True if `b` starts like a Go packet (a msgpack map) rather than a
/// native one (`SW`): the two formats are told apart by the first byte.
///
/// ```
/// use swp::proto::{codec, go::codec as gocodec, Kind, Packet};
/// assert!(!gocodec::looks_like_go(&codec::encode(&Packet::new(Kind::Syn)))); // "SW..."
/// assert!(gocodec::looks_like_go(&gocodec::encode_packet(&Default::default())));
/// assert!(!gocodec::looks_like_go(b""));
/// ```
pub fn looks_like_go(b: &[u8]) -> bool {
    matches!(b.first(), Some(0x80..=0x8f | 0xde | 0xdf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_time() -> impl Strategy<Value = GoTime> {
        (any::<i64>(), 0i32..1_000_000_000).prop_map(|(secs, nanos)| GoTime { secs, nanos })
    }

    prop_compose! {
        fn arb_go()(s in prop::array::uniform4("[a-zA-Z0-9._]{0,40}"),
                    t in prop::array::uniform3(arb_time()),
                    n in prop::array::uniform12(any::<i64>()),
                    data in prop::collection::vec(any::<u8>(), 0..300),
                    sum in prop::collection::vec(any::<u8>(), 0..64)) -> GoPacket {
            GoPacket { from: s[0].clone(), dest: s[1].clone(), from_sess_nonce: s[2].clone(), dest_sess_nonce: s[3].clone(),
                arrived_at_dest_tm: t[0], data_send_tm: t[1], seq_num: n[0], seq_retry: n[1], ack_num: n[2], ack_retry: n[3],
                ack_reply_tm: t[2], tcp_event: n[4], avail_reader_bytes_cap: n[5], avail_reader_msg_cap: n[6],
                from_rtt_est_nsec: n[7], from_rtt_sd_nsec: n[8], from_rtt_n: n[9], cumul_bytes_transmitted: n[10],
                data: Bytes::from(data), data_offset: n[11], blake2b_checksum: Bytes::from(sum) }
        }
    }

    proptest! {
        #[test]
        fn whatever_the_go_codec_emits_decodes_back(p in arb_go()) {
            let b = encode_packet(&p);
            prop_assert!(looks_like_go(&b));
            prop_assert_eq!(decode_packet(&b).unwrap(), p);
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode_packet(&b);
        }
    }

    #[test]
    fn ints_use_msgps_signed_forms() {
        let enc = |v| {
            let mut b = vec![];
            write_i64(&mut b, v);
            b
        };
        assert_eq!(enc(127), vec![0x7f]);
        assert_eq!(enc(128), vec![0xd1, 0x00, 0x80]);
        assert_eq!(enc(-32), vec![0xe0]);
        assert_eq!(enc(-33), vec![0xd0, 0xdf]);
        assert_eq!(enc(32768), vec![0xd2, 0, 0, 0x80, 0]);
    }
}
