//! Message batches: several whole messages in one data packet
//! (docs/PROTOCOL.md §2.4).
//!
//! When small messages queue up faster than packets go out, the sender packs
//! the queued ones into one data packet flagged [`flags::BATCH`]. Its payload
//! is each message preceded by its length as an unsigned LEB128 varint:
//!
//! ```text
//! varint(len1) bytes1 varint(len2) bytes2 ...      (at least one message)
//! ```
//!
//! Every message in a batch is whole and ends a message (as if each had the
//! `EOM` flag). Stream offsets (`cumul_bytes`, the byte window) count the
//! messages' bytes only, never the varints, so a batch and the same messages
//! sent one per packet occupy the same stream range.
//!
//! [`flags::BATCH`]: super::packet::flags::BATCH

use bytes::{BufMut, Bytes, BytesMut};

/// Longest varint a batch may use: lengths are below 2^32.
const MAX_VARINT: usize = 5;

/// Most messages one batch may hold. It bounds the receiver's per-message
/// bookkeeping per packet (its window counts packets and bytes, and a
/// packet of empty messages would otherwise be thousands of entries); a
/// batch with more is malformed.
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use swp::proto::batch;
/// let mut b = BytesMut::new();
/// for _ in 0..=batch::MAX_MESSAGES {
///     batch::push(&mut b, b"");
/// }
/// assert_eq!(batch::split(&b.freeze()), Err(batch::BatchError::TooMany));
/// ```
pub const MAX_MESSAGES: usize = 256;

/// Why a batch payload is malformed.
///
/// ```
/// use bytes::Bytes;
/// use swp::proto::batch::{split, BatchError};
/// assert_eq!(split(&Bytes::new()), Err(BatchError::Empty));
/// assert_eq!(split(&Bytes::from_static(&[3, b'a'])), Err(BatchError::Overrun { at: 0, len: 3 }));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// The payload holds no message at all.
    #[error("empty message batch")]
    Empty,
    /// The payload holds more than [`MAX_MESSAGES`] messages.
    #[error("message batch holds more than {MAX_MESSAGES} messages")]
    TooMany,
    /// A length prefix is cut off, too long, or not minimally encoded.
    #[error("bad length prefix at byte {at} of a message batch")]
    BadLength {
        /// Offset of the prefix in the payload.
        at: usize,
    },
    /// A length prefix promises more bytes than the payload has left.
    #[error("message of {len} bytes at byte {at} runs past the end of its batch")]
    Overrun {
        /// Offset of the prefix in the payload.
        at: usize,
        /// The length it announced.
        len: u64,
    },
}

/// Bytes a message of `len` bytes takes inside a batch (prefix included).
///
/// ```
/// use swp::proto::batch::framed_len;
/// assert_eq!(framed_len(0), 1);
/// assert_eq!(framed_len(127), 128); // one prefix byte up to 127
/// assert_eq!(framed_len(1024), 1026); // two from 128
/// ```
pub fn framed_len(len: usize) -> usize {
    let mut n = 1;
    let mut v = len >> 7;
    while v != 0 {
        n += 1;
        v >>= 7;
    }
    n + len
}

/// Appends one message (its prefix, then its bytes) to a batch payload.
///
/// ```
/// use bytes::BytesMut;
/// use swp::proto::batch;
/// let mut b = BytesMut::new();
/// batch::push(&mut b, b"hi");
/// batch::push(&mut b, &[0u8; 200]);
/// assert_eq!(&b[..3], &[2, b'h', b'i']);
/// assert_eq!(&b[3..5], &[0xc8, 0x01]); // 200 as LEB128
/// assert_eq!(b.len(), batch::framed_len(2) + batch::framed_len(200));
/// ```
pub fn push(buf: &mut BytesMut, msg: &[u8]) {
    let mut v = msg.len() as u64;
    while v >= 0x80 {
        buf.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
    buf.extend_from_slice(msg);
}

/// Splits a batch payload into its messages (slices of `payload`, no copy).
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use swp::proto::batch;
/// let mut b = BytesMut::new();
/// batch::push(&mut b, b"hello");
/// batch::push(&mut b, b"");
/// batch::push(&mut b, &[7u8; 300]);
/// let parts = batch::split(&b.freeze()).unwrap();
/// assert_eq!(parts.len(), 3);
/// assert_eq!(&parts[0][..], b"hello");
/// assert!(parts[1].is_empty());
/// assert_eq!(parts[2].len(), 300);
/// assert!(batch::split(&Bytes::from_static(&[5, 1, 2])).is_err());
/// ```
pub fn split(payload: &Bytes) -> Result<Vec<Bytes>, BatchError> {
    let mut parts = Vec::new();
    let mut at = 0;
    while at < payload.len() {
        let (len, n) = varint(&payload[at..]).ok_or(BatchError::BadLength { at })?;
        let start = at + n;
        if len > (payload.len() - start) as u64 {
            return Err(BatchError::Overrun { at, len });
        }
        let end = start + len as usize;
        if parts.len() == MAX_MESSAGES {
            return Err(BatchError::TooMany);
        }
        parts.push(payload.slice(start..end));
        at = end;
    }
    if parts.is_empty() {
        return Err(BatchError::Empty);
    }
    Ok(parts)
}

/// Decodes a minimal LEB128 varint below 2^32: (value, bytes used).
fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().take(MAX_VARINT).enumerate() {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            // Minimal: no trailing zero group (except the value 0 itself).
            if i > 0 && byte == 0 {
                return None;
            }
            return (v <= u64::from(u32::MAX)).then_some((v, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn framed_len_matches_push() {
        for len in [0usize, 1, 127, 128, 16_383, 16_384, 70_000, 1 << 20] {
            let mut b = BytesMut::new();
            push(&mut b, &vec![0u8; len]);
            assert_eq!(b.len(), framed_len(len), "len {len}");
        }
    }

    #[test]
    fn rejects_malformed() {
        let s = |v: &[u8]| split(&Bytes::copy_from_slice(v));
        assert_eq!(s(&[]), Err(BatchError::Empty));
        assert_eq!(s(&[0x80]), Err(BatchError::BadLength { at: 0 }));
        // Non-minimal encoding of 1.
        assert_eq!(s(&[0x81, 0x00, 9]), Err(BatchError::BadLength { at: 0 }));
        // Six-byte varint.
        assert_eq!(
            s(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01]),
            Err(BatchError::BadLength { at: 0 })
        );
        // 2^32 does not fit.
        assert_eq!(
            s(&[0x80, 0x80, 0x80, 0x80, 0x10]),
            Err(BatchError::BadLength { at: 0 })
        );
        assert_eq!(s(&[0, 3, 1]), Err(BatchError::Overrun { at: 1, len: 3 }));
        assert_eq!(s(&[0; MAX_MESSAGES]).map(|p| p.len()), Ok(MAX_MESSAGES));
        assert_eq!(s(&[0; MAX_MESSAGES + 1]), Err(BatchError::TooMany));
    }

    proptest! {
        #[test]
        fn round_trip(msgs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..20)) {
            let mut b = BytesMut::new();
            for m in &msgs {
                push(&mut b, m);
            }
            prop_assert_eq!(b.len(), msgs.iter().map(|m| framed_len(m.len())).sum::<usize>());
            let parts = split(&b.freeze()).unwrap();
            prop_assert_eq!(parts.iter().map(|p| p.to_vec()).collect::<Vec<_>>(), msgs);
        }

        #[test]
        fn arbitrary_bytes_never_panic(v in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(parts) = split(&Bytes::from(v.clone())) {
                // Whatever parses accounts for every byte.
                let total: usize = parts.iter().map(|p| framed_len(p.len())).sum();
                prop_assert_eq!(total, v.len());
            }
        }
    }
}
