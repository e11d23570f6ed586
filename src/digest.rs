//! BLAKE2b-512 (unkeyed, 64-byte output), the digest of files and of Go
//! packets. Computed with `blake2b_simd`, chosen by measurement: on this
//! project's machines it hashed 1.25x faster than RustCrypto's `blake2`
//! (663 vs 530 MiB/s on one core, same digests; docs/BENCHMARKS.md), and
//! hashing is the largest single cost of a file transfer. The tests check
//! results with RustCrypto's implementation, independently.

/// A running BLAKE2b-512.
#[derive(Clone)]
pub(crate) struct Blake2b512(blake2b_simd::State);

impl Blake2b512 {
    pub(crate) fn new() -> Self {
        Blake2b512(blake2b_simd::Params::new().hash_length(64).to_state())
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub(crate) fn chain_update(mut self, data: &[u8]) -> Self {
        self.update(data);
        self
    }

    pub(crate) fn finalize(self) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(self.0.finalize().as_bytes());
        out
    }

    /// The digest of `data` in one call.
    pub(crate) fn digest(data: &[u8]) -> [u8; 64] {
        Self::new().chain_update(data).finalize()
    }
}

/// BLAKE2b's keyed mode (a MAC; RFC 7693 §2.5) over `parts`, each
/// length-prefixed so that no two different lists hash alike: 32 bytes.
pub(crate) fn keyed(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut st = blake2b_simd::Params::new()
        .hash_length(32)
        .key(key)
        .to_state();
    for p in parts {
        st.update(&(p.len() as u64).to_le_bytes());
        st.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(st.finalize().as_bytes());
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_same_digest_as_rustcrypto_blake2_across_chunkings() {
        use blake2::Digest;
        let data: Vec<u8> = (0..300_001u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let want = blake2::Blake2b512::digest(&data);
        for step in [1usize, 63, 64, 127, 128, 129, 4096, 300_001] {
            let mut h = super::Blake2b512::new();
            for c in data.chunks(step) {
                h.update(c);
            }
            assert_eq!(h.finalize().as_slice(), want.as_slice(), "chunks of {step}");
        }
        assert_eq!(
            super::Blake2b512::digest(b"").as_slice(),
            blake2::Blake2b512::digest(b"").as_slice()
        );
    }

    #[test]
    fn the_keyed_hash_is_rustcryptos_mac_and_tells_lists_apart() {
        use blake2::digest::{Mac, consts::U32};
        let key = [7u8; 32];
        let mut m = blake2::Blake2bMac::<U32>::new_from_slice(&key).unwrap();
        for p in [&b"ab"[..], b"c"] {
            m.update(&(p.len() as u64).to_le_bytes());
            m.update(p);
        }
        let want = m.finalize().into_bytes();
        assert_eq!(
            super::keyed(&key, &[b"ab", b"c"]).as_slice(),
            want.as_slice()
        );
        assert_ne!(
            super::keyed(&key, &[b"ab", b"c"]),
            super::keyed(&key, &[b"a", b"bc"])
        );
        assert_ne!(
            super::keyed(&key, &[b"ab"]),
            super::keyed(&[8u8; 32], &[b"ab"])
        );
    }
}
