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
/// use swp::proto::gocodec::{encode_packet, GoPacket, GoTime};
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
    /// use swp::proto::gocodec::GoTime;
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
    /// use swp::proto::gocodec::GoTime;
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
/// use swp::proto::{gocodec::{decode_packet, encode_packet, GoPacket}, golink};
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

/// go-sliding-window's `BigFile` (what its `SendFile` sends).
///
/// ```
/// use swp::proto::gocodec::{decode_bigfile, encode_bigfile, GoBigFile};
/// let f = GoBigFile { filepath: "/tmp/a.txt".into(), size_in_bytes: 3, data: "abc".into(), ..Default::default() };
/// assert_eq!(decode_bigfile(&encode_bigfile(&f)).unwrap(), f);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[allow(missing_docs)]
pub struct GoBigFile {
    pub filepath: String,
    pub size_in_bytes: i64,
    pub blake2b: Bytes,
    pub send_time: GoTime,
    pub data: Bytes,
}

/// Why bytes are not a Go packet.
///
/// ```
/// use swp::proto::gocodec::{decode_packet, GoDecodeError};
/// assert_eq!(decode_packet(&[0x92, 1, 2]), Err(GoDecodeError::NotAMap)); // an array
/// // {"From": nil}: Go's decoder rejects nil for a string, and so do we.
/// let nil_from = [&[0x81, 0xa4][..], b"From", &[0xc0]].concat();
/// let err = decode_packet(&nil_from).unwrap_err();
/// assert!(matches!(err, GoDecodeError::WrongType { field: "From", .. }), "{err}");
/// assert!(matches!(decode_packet(&[0xde, 0x00]), Err(GoDecodeError::Msgpack(_)))); // truncated
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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

fn write_i64(buf: &mut Vec<u8>, v: i64) {
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

fn write_str(buf: &mut Vec<u8>, s: &str) {
    rmp::encode::write_str(buf, s).expect("writing into a Vec cannot fail");
}

fn write_bin(buf: &mut Vec<u8>, b: &[u8]) {
    rmp::encode::write_bin(buf, b).expect("writing into a Vec cannot fail");
}

fn write_time(buf: &mut Vec<u8>, t: GoTime) {
    buf.extend_from_slice(&[0xc7, 12, 5]);
    buf.extend_from_slice(&t.secs.to_be_bytes());
    buf.extend_from_slice(&t.nanos.to_be_bytes());
}

/// Encodes a packet exactly as Go's `MarshalMsg` does.
///
/// ```
/// use swp::proto::gocodec::{encode_packet, GoPacket};
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

/// Encodes a `BigFile` exactly as Go's `MarshalMsg` does.
///
/// ```
/// use swp::proto::gocodec::{encode_bigfile, GoBigFile};
/// let wire = encode_bigfile(&GoBigFile { data: "xyz".into(), ..Default::default() });
/// assert_eq!(wire[0], 0x85); // fixmap of 5 entries
/// assert!(wire.ends_with(b"Data\xc4\x03xyz")); // Data last, as a bin
/// ```
pub fn encode_bigfile(f: &GoBigFile) -> Vec<u8> {
    let mut b = encode_bigfile_header(
        &f.filepath,
        f.size_in_bytes,
        &f.blake2b,
        f.send_time,
        f.data.len() as u64,
    );
    b.extend_from_slice(&f.data);
    b
}

/// A `BigFile`'s bytes up to its data: everything [`encode_bigfile`] writes
/// before the `data_len` payload bytes (which must follow, as Go's
/// `SendFile` streams them).
///
/// ```
/// use swp::proto::gocodec::{encode_bigfile, encode_bigfile_header, GoBigFile, GoTime};
/// let f = GoBigFile { filepath: "a.txt".into(), size_in_bytes: 3, data: "abc".into(), ..Default::default() };
/// let mut b = encode_bigfile_header("a.txt", 3, &f.blake2b, f.send_time, 3);
/// b.extend_from_slice(b"abc");
/// assert_eq!(b, encode_bigfile(&f));
/// ```
pub fn encode_bigfile_header(
    filepath: &str,
    size_in_bytes: i64,
    blake2b: &[u8],
    send_time: GoTime,
    data_len: u64,
) -> Vec<u8> {
    let mut b = Vec::with_capacity(160 + filepath.len());
    b.push(0x85);
    write_str(&mut b, "Filepath");
    write_str(&mut b, filepath);
    write_str(&mut b, "SizeInBytes");
    write_i64(&mut b, size_in_bytes);
    write_str(&mut b, "Blake2b");
    write_bin(&mut b, blake2b);
    write_str(&mut b, "SendTime");
    write_time(&mut b, send_time);
    write_str(&mut b, "Data");
    let len = u32::try_from(data_len).expect("msgpack bin holds at most 4 GiB");
    rmp::encode::write_bin_len(&mut b, len).expect("writing into a Vec cannot fail");
    b
}

/// The fields of a streamed `BigFile` that precede its data.
///
/// ```
/// use swp::proto::gocodec::{encode_bigfile_header, parse_bigfile_header, GoTime};
/// let sum = [7u8; 64];
/// let wire = encode_bigfile_header("dir/f.bin", 1 << 20, &sum, GoTime::ZERO, 1 << 20);
/// let (h, used) = parse_bigfile_header(&wire).unwrap().unwrap();
/// assert_eq!((h.filepath.as_str(), h.size_in_bytes, h.data_len), ("dir/f.bin", 1 << 20, 1 << 20));
/// assert_eq!(&h.blake2b[..], &sum[..]);
/// assert_eq!(used, wire.len()); // the data starts right after
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BigFileHeader {
    /// Go's `Filepath`: the path the Go sender gave (may be absolute).
    pub filepath: String,
    /// Go's `SizeInBytes`.
    pub size_in_bytes: i64,
    /// Go's `Blake2b` (64 bytes from a correct sender).
    pub blake2b: Bytes,
    /// Go's `SendTime`.
    pub send_time: GoTime,
    /// Length of the `Data` bin that follows the header.
    pub data_len: u64,
}

/// Parses the start of a streamed `BigFile` up to and including the `Data`
/// bin's length prefix. Returns `Ok(None)` if `input` is too short to tell
/// yet, else the header and how many bytes of `input` it took (the data
/// starts there). Fields may come in any order and unknown ones are
/// skipped, as Go's decoder does, but `Data` must come last (Go always
/// writes it last; it is what makes streaming possible).
///
/// ```
/// use swp::proto::gocodec::{encode_bigfile, parse_bigfile_header, GoBigFile};
/// let wire = encode_bigfile(&GoBigFile { filepath: "a".into(), size_in_bytes: 2, data: "hi".into(), ..Default::default() });
/// // Fed as it arrives: "not yet" until the Data length is in, then the header.
/// let header_len = wire.len() - 2;
/// for n in 0..header_len {
///     assert_eq!(parse_bigfile_header(&wire[..n]), Ok(None), "prefix of {n} bytes");
/// }
/// let (h, used) = parse_bigfile_header(&wire).unwrap().unwrap();
/// assert_eq!((used, h.data_len), (header_len, 2));
/// assert!(parse_bigfile_header(b"\x93not a map").is_err());
/// ```
pub fn parse_bigfile_header(input: &[u8]) -> Result<Option<(BigFileHeader, usize)>, GoDecodeError> {
    match parse_header_inner(input) {
        Ok(v) => Ok(Some(v)),
        Err(Need::More) => Ok(None),
        Err(Need::Bad(e)) => Err(e),
    }
}

enum Need {
    More,
    Bad(GoDecodeError),
}

impl From<GoDecodeError> for Need {
    fn from(e: GoDecodeError) -> Self {
        Need::Bad(e)
    }
}

fn parse_header_inner(input: &[u8]) -> Result<(BigFileHeader, usize), Need> {
    let mut p = 0usize;
    let take = |p: &mut usize, n: usize| -> Result<&[u8], Need> {
        let end = p.checked_add(n).ok_or(Need::More)?;
        let s = input.get(*p..end).ok_or(Need::More)?;
        *p = end;
        Ok(s)
    };
    let be = |b: &[u8]| b.iter().fold(0u64, |a, x| (a << 8) | *x as u64);
    let marker = take(&mut p, 1)?[0];
    let entries = match marker {
        0x80..=0x8f => (marker & 0x0f) as u64,
        0xde => be(take(&mut p, 2)?),
        0xdf => be(take(&mut p, 4)?),
        _ => return Err(GoDecodeError::NotAMap.into()),
    };
    let mut h = BigFileHeader::default();
    for i in 0..entries {
        let key = {
            let m = take(&mut p, 1)?[0];
            let n = match m {
                0xa0..=0xbf => (m & 0x1f) as usize,
                0xd9 | 0xc4 => be(take(&mut p, 1)?) as usize,
                0xda | 0xc5 => be(take(&mut p, 2)?) as usize,
                0xdb | 0xc6 => be(take(&mut p, 4)?) as usize,
                _ => return Err(GoDecodeError::BadKey.into()),
            };
            String::from_utf8_lossy(take(&mut p, n)?).into_owned()
        };
        if key == "Data" {
            if i + 1 != entries {
                return Err(GoDecodeError::WrongType {
                    field: "Data",
                    expected: "the last BigFile field (as go-swp writes it)",
                }
                .into());
            }
            let m = take(&mut p, 1)?[0];
            h.data_len = match m {
                0xc0 => 0,
                0xc4 => be(take(&mut p, 1)?),
                0xc5 => be(take(&mut p, 2)?),
                0xc6 => be(take(&mut p, 4)?),
                _ => {
                    return Err(GoDecodeError::WrongType {
                        field: "Data",
                        expected: "bin",
                    }
                    .into());
                }
            };
            return Ok((h, p));
        }
        // Any other value is small: decode it whole from what is buffered.
        let rest = &input[p..];
        let mut rd = rest;
        let v = rmpv::decode::read_value_ref(&mut rd).map_err(|_| Need::More)?;
        p += rest.len() - rd.len();
        match key.as_str() {
            "Filepath" => h.filepath = as_string("Filepath", &v)?,
            "SizeInBytes" => h.size_in_bytes = as_i64("SizeInBytes", &v)?,
            "Blake2b" => h.blake2b = as_bytes("Blake2b", &v)?,
            "SendTime" => h.send_time = as_time("SendTime", &v)?,
            _ => {}
        }
    }
    Err(GoDecodeError::WrongType {
        field: "Data",
        expected: "a Data field in the BigFile",
    }
    .into())
}

/// The top-level map's entries, with string keys.
fn top_map(input: &[u8]) -> Result<Vec<(String, ValueRef<'_>)>, GoDecodeError> {
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

fn as_i64(field: &'static str, v: &ValueRef<'_>) -> Result<i64, GoDecodeError> {
    match v {
        ValueRef::Integer(i) => i.as_i64().ok_or(GoDecodeError::Range(field)),
        _ => Err(GoDecodeError::WrongType {
            field,
            expected: "an integer",
        }),
    }
}

fn as_string(field: &'static str, v: &ValueRef<'_>) -> Result<String, GoDecodeError> {
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

fn as_bytes(field: &'static str, v: &ValueRef<'_>) -> Result<Bytes, GoDecodeError> {
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

fn as_time(field: &'static str, v: &ValueRef<'_>) -> Result<GoTime, GoDecodeError> {
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
/// use swp::proto::gocodec::decode_packet;
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

/// Decodes a Go `BigFile`.
///
/// ```
/// use swp::proto::gocodec::{decode_bigfile, encode_bigfile, GoBigFile};
/// let f = GoBigFile { filepath: "f".into(), size_in_bytes: 1, data: "x".into(), ..Default::default() };
/// let wire = encode_bigfile(&f);
/// assert_eq!(decode_bigfile(&wire).unwrap(), f);
/// assert!(decode_bigfile(&wire[..wire.len() - 1]).is_err()); // truncated: an error, not a panic
/// ```
pub fn decode_bigfile(input: &[u8]) -> Result<GoBigFile, GoDecodeError> {
    let mut f = GoBigFile::default();
    for (k, v) in top_map(input)? {
        match k.as_str() {
            "Filepath" => f.filepath = as_string("Filepath", &v)?,
            "SizeInBytes" => f.size_in_bytes = as_i64("SizeInBytes", &v)?,
            "Blake2b" => f.blake2b = as_bytes("Blake2b", &v)?,
            "SendTime" => f.send_time = as_time("SendTime", &v)?,
            "Data" => f.data = as_bytes("Data", &v)?,
            _ => {}
        }
    }
    Ok(f)
}

/// True if `b` starts like a Go packet (a msgpack map) rather than a
/// native one (`SW`): the two formats are told apart by the first byte.
///
/// ```
/// use swp::proto::{codec, gocodec, Kind, Packet};
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
            let _ = decode_bigfile(&b);
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
