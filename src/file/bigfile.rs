//! go-sliding-window's application format for files, `BigFile`
//! (docs/PROTOCOL.md §13.1): a msgpack map of `Filepath`, `SizeInBytes`,
//! `Blake2b`, `SendTime` and `Data`, byte-exact with Go's encoder. It is
//! the file protocol's business, not the packet codec's: the session
//! carries it as stream bytes.

use crate::proto::go::codec::{
    GoDecodeError, GoTime, as_bytes, as_i64, as_string, as_time, top_map, write_bin, write_i64,
    write_str, write_time,
};
use bytes::Bytes;

/// go-sliding-window's `BigFile` (what its `SendFile` sends).
///
/// ```
/// use swp::file::bigfile::{decode_bigfile, encode_bigfile, GoBigFile};
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

/// Encodes a `BigFile` exactly as Go's `MarshalMsg` does.
///
/// ```
/// use swp::file::bigfile::{encode_bigfile, GoBigFile};
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
/// use swp::file::bigfile::{encode_bigfile, encode_bigfile_header, GoBigFile}; use swp::proto::go::codec::GoTime;
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
/// use swp::file::bigfile::{encode_bigfile_header, parse_bigfile_header}; use swp::proto::go::codec::GoTime;
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
/// use swp::file::bigfile::{encode_bigfile, parse_bigfile_header, GoBigFile};
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

/// Decodes a Go `BigFile`.
///
/// ```
/// use swp::file::bigfile::{decode_bigfile, encode_bigfile, GoBigFile};
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode_bigfile(&b);
            let _ = parse_bigfile_header(&b);
        }
    }
}
