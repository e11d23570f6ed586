//! Sealed sessions: a Noise handshake in the Syn / SynAck exchange, then
//! every packet sealed with AES-256-GCM (docs/PROTOCOL.md §14).
//!
//! Sans-IO like the rest of [`crate::proto`]: bytes and keys in, bytes out.
//! The engine calls this module at its two seams: a handshake packet
//! carries a Noise message in its `data` (whose payload is the packet's own
//! header, so the header the engine acts on is authenticated), and every
//! later packet is a sealed frame:
//!
//! ```text
//! +------+------+---------+-------------------+------------------------------------+
//! | 0x53 | 0x58 | version | counter, u64 BE   | AES-256-GCM(native packet) + 16 tag |
//! |  'S' |  'X' |   = 1   | (nonce)           |                                    |
//! +------+------+---------+-------------------+------------------------------------+
//! ```
//!
//! Patterns, chosen by what the two ends share:
//! * keys: `Noise_IK_25519_AESGCM_BLAKE2s`. The client pins the service's
//!   public key, so both handshake messages authenticate their sender and a
//!   forged answer fails to decrypt (and is dropped) instead of being
//!   believed. The responder learns the client's key from the first
//!   message and checks it against its allow-list, if it has one.
//! * a pre-shared secret: `Noise_NNpsk0_25519_AESGCM_BLAKE2s`.
//! * both: `Noise_IKpsk2_25519_AESGCM_BLAKE2s`.
//!
//! Two messages, so the handshake maps onto Syn and SynAck; the client's
//! first sealed packet (its EstabAck) confirms the keys to the responder.
//! AES-256-GCM rather than ChaCha20-Poly1305: on this project's machines
//! (AES-NI, VAES) ring seals 63 KiB packets at 5.4 GB/s with AES-256-GCM
//! and 1.1 GB/s with ChaCha20-Poly1305 (docs/BENCHMARKS.md).

use super::codec;
use bytes::{BufMut, Bytes, BytesMut};
use rand::{RngCore, SeedableRng};
use snow::resolvers::{CryptoResolver, DefaultResolver, RingResolver};
use snow::{HandshakeState, StatelessTransportState};
use std::fmt;
use zeroize::Zeroizing;

/// First two bytes of a sealed frame.
pub const SEALED_MAGIC: [u8; 2] = [0x53, 0x58];
/// Sealed frame version.
pub const SEALED_VERSION: u8 = 1;
/// Bytes before the ciphertext: magic, version, counter.
pub const SEALED_HEADER: usize = 3 + 8;
/// The AEAD tag.
pub const TAG: usize = 16;
/// Bytes a sealed frame adds to the packet it carries.
pub const SEALED_OVERHEAD: usize = SEALED_HEADER + TAG;
/// Counters the replay window remembers behind the highest seen.
pub const REPLAY_WINDOW: u64 = 4096;
/// The largest payload per packet a sealed session carries (63 KiB): the
/// packet, its header and the tag fit one Noise message (at most 64 KiB).
/// [`Tuning::validate`](super::Tuning::validate) refuses a larger
/// `max_payload` with a seal.
pub const MAX_SEALED_PAYLOAD: usize = 63 * 1024;
/// Bound into every handshake (the Noise prologue): a peer speaking
/// another version fails the handshake instead of misreading it.
const PROLOGUE: &[u8] = b"swp sealed v1";

/// True if `bytes` starts like a sealed frame (`SX`; a native packet
/// starts `SW`, a Go one with a msgpack map).
///
/// ```
/// use swp::proto::{codec, seal, Kind, Packet};
/// assert!(seal::is_sealed_frame(b"SX\x01........"));
/// assert!(!seal::is_sealed_frame(&codec::encode(&Packet::new(Kind::Ack))));
/// ```
pub fn is_sealed_frame(bytes: &[u8]) -> bool {
    bytes.len() >= 2 && bytes[..2] == SEALED_MAGIC
}

/// A Curve25519 public key: an endpoint's identity.
///
/// Written as 64 lowercase hex digits (what `swp keygen` prints and
/// `--peer-key` takes).
///
/// ```
/// use swp::proto::seal::{Keypair, PublicKey};
/// let k = Keypair::generate();
/// let text = k.public().to_string();
/// assert_eq!(text.len(), 64);
/// assert_eq!(text.parse::<PublicKey>().unwrap(), *k.public());
/// assert!("not a key".parse::<PublicKey>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl std::str::FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        parse_hex32(s.trim()).map(PublicKey).ok_or_else(|| {
            KeyError(format!(
                "not a public key: expected 64 hex digits (as `swp keygen` prints), got {:?}",
                s.chars().take(80).collect::<String>()
            ))
        })
    }
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        let hi = (b[2 * i] as char).to_digit(16)?;
        let lo = (b[2 * i + 1] as char).to_digit(16)?;
        *o = (hi * 16 + lo) as u8;
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A key or secret that could not be read or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub String);

/// An endpoint's static Curve25519 keypair.
///
/// The secret never appears in `Debug` output. Made by
/// [`Keypair::generate`], stored as a file by [`Keypair::save`]
/// (owner-only permissions on Unix) and read back by [`Keypair::load`],
/// which refuses a file others can read (those three live in
/// [`crate::keys`]: randomness and files are not the engine's business).
///
/// ```
/// use swp::proto::seal::Keypair;
/// let k = Keypair::generate();
/// let again = Keypair::from_secret(*k.secret());
/// assert_eq!(again.public(), k.public());
/// let secret_hex: String = k.secret().iter().map(|b| format!("{b:02x}")).collect();
/// assert!(!format!("{k:?}").contains(&secret_hex)); // never printed
/// ```
#[derive(Clone)]
pub struct Keypair {
    pub(crate) secret: Zeroizing<[u8; 32]>,
    pub(crate) public: PublicKey,
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair {{ public: {}, secret: <hidden> }}", self.public)
    }
}

impl PartialEq for Keypair {
    fn eq(&self, other: &Self) -> bool {
        self.public == other.public
    }
}

const KEY_FILE_HEADER: &str = "swp secret key v1";

impl Keypair {
    /// The keypair of a 32-byte secret (X25519 clamps it).
    pub fn from_secret(secret: [u8; 32]) -> Keypair {
        let public = curve25519_dalek::MontgomeryPoint::mul_base_clamped(secret).to_bytes();
        Keypair {
            secret: Zeroizing::new(secret),
            public: PublicKey(public),
        }
    }

    /// The public half: give it to peers.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The secret half.
    pub fn secret(&self) -> &[u8; 32] {
        &self.secret
    }

    /// The key file's text: a header line, the secret and the public key
    /// in hex.
    pub fn to_file_text(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "{KEY_FILE_HEADER}\nsecret {}\npublic {}\n",
            hex(&self.secret[..]),
            self.public
        ))
    }

    /// Reads a key file's text (see [`to_file_text`](Self::to_file_text)).
    ///
    /// ```
    /// use swp::proto::seal::Keypair;
    /// let k = Keypair::generate();
    /// assert_eq!(Keypair::from_file_text(&k.to_file_text()).unwrap(), k);
    /// assert!(Keypair::from_file_text("hello").is_err());
    /// ```
    pub fn from_file_text(text: &str) -> Result<Keypair, KeyError> {
        let mut lines = text.lines();
        if lines.next().map(str::trim) != Some(KEY_FILE_HEADER) {
            return Err(KeyError(format!(
                "not a swp key file: its first line is not {KEY_FILE_HEADER:?} (make one with `swp keygen`)"
            )));
        }
        let mut secret = None;
        let mut public = None;
        for line in lines {
            if let Some(s) = line.trim().strip_prefix("secret ") {
                secret = parse_hex32(s.trim());
            } else if let Some(s) = line.trim().strip_prefix("public ") {
                public = s.parse::<PublicKey>().ok();
            }
        }
        let secret = secret.ok_or_else(|| {
            KeyError("the key file has no valid `secret` line (64 hex digits)".into())
        })?;
        let k = Keypair::from_secret(secret);
        if public.is_some_and(|p| p != k.public) {
            return Err(KeyError(
                "the key file's public key does not belong to its secret: the file is damaged"
                    .into(),
            ));
        }
        Ok(k)
    }
}

/// The 32-byte pre-shared key of a secret of at least 16 bytes.
///
/// ```
/// use swp::proto::seal::psk_from_bytes;
/// assert_eq!(psk_from_bytes(b"correct horse battery").unwrap(), psk_from_bytes(b"correct horse battery").unwrap());
/// assert!(psk_from_bytes(b"short").is_err());
/// ```
pub fn psk_from_bytes(secret: &[u8]) -> Result<[u8; 32], KeyError> {
    if secret.len() < 16 {
        return Err(KeyError(format!(
            "the pre-shared secret is {} bytes: use at least 16 (e.g. `head -c 32 /dev/urandom | base64`)",
            secret.len()
        )));
    }
    Ok(derive(b"swp-psk-v1", &[secret]))
}

/// BLAKE2b-256 of `parts` (concatenated), personalised for one purpose.
fn derive(personal: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut st = blake2b_simd::Params::new()
        .hash_length(32)
        .personal(personal)
        .to_state();
    for p in parts {
        st.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(st.finalize().as_bytes());
    out
}

/// How a session seals itself: what it proves and what it demands.
///
/// ```
/// use swp::proto::seal::{Keypair, Seal};
/// let server = Keypair::generate();
/// let client = Keypair::generate();
/// // The client pins the server's key; the server allows that client.
/// let c = Seal::keys(client.clone()).peer(*server.public());
/// let s = Seal::keys(server).allow([*client.public()]);
/// assert!(c.validate(true).is_ok() && s.validate(false).is_ok());
/// // A client must know whom it talks to.
/// assert!(Seal::keys(Keypair::generate()).validate(true).is_err());
/// // Or one shared secret for both.
/// assert!(Seal::psk([7; 32]).validate(true).is_ok());
/// ```
#[derive(Clone, PartialEq)]
pub struct Seal {
    keys: Option<Keypair>,
    peer: Option<PublicKey>,
    allowed: Option<Vec<PublicKey>>,
    psk: Option<Zeroizing<[u8; 32]>>,
    /// Mixed with the engine's seed into the handshake's randomness.
    entropy: Option<[u8; 32]>,
}

impl fmt::Debug for Seal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Seal")
            .field("keys", &self.keys.as_ref().map(|k| k.public))
            .field("peer", &self.peer)
            .field("allowed", &self.allowed)
            .field("psk", &self.psk.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

impl Seal {
    /// Seal with this endpoint's static keypair (Noise IK).
    pub fn keys(local: Keypair) -> Seal {
        Seal {
            keys: Some(local),
            peer: None,
            allowed: None,
            psk: None,
            entropy: None,
        }
    }

    /// Seal with a pre-shared 32-byte secret only (Noise NNpsk0): whoever
    /// holds it may connect. See [`psk_from_bytes`].
    pub fn psk(secret: [u8; 32]) -> Seal {
        Seal {
            keys: None,
            peer: None,
            allowed: None,
            psk: Some(Zeroizing::new(secret)),
            entropy: None,
        }
    }

    /// Adds a pre-shared secret to a keys seal (Noise IKpsk2).
    pub fn with_psk(mut self, secret: [u8; 32]) -> Seal {
        self.psk = Some(Zeroizing::new(secret));
        self
    }

    /// Pins the peer's public key: a client must (it is whom the Syn is
    /// encrypted to); a listener that sets it accepts only that client.
    pub fn peer(mut self, key: PublicKey) -> Seal {
        self.peer = Some(key);
        self
    }

    /// A listener accepts only clients whose key is in `keys`.
    pub fn allow(mut self, keys: impl IntoIterator<Item = PublicKey>) -> Seal {
        self.allowed = Some(keys.into_iter().collect());
        self
    }

    /// The handshake's randomness for one session (mixed with the engine's
    /// seed): 32 fresh bytes from the operating system. The async
    /// [`Session`](crate::Session) supplies it for every session it starts;
    /// a driver of [`Connection`](crate::proto::Connection) of its own must
    /// too (the engine does no IO and draws no OS randomness).
    pub fn with_entropy(mut self, entropy: [u8; 32]) -> Seal {
        self.entropy = Some(entropy);
        self
    }

    /// [`with_entropy`](Self::with_entropy) with fixed bytes, so a
    /// simulated run repeats exactly. Never for real sessions: two sessions
    /// with the same entropy and seed would share ephemeral keys.
    pub fn deterministic_for_tests(self, entropy: [u8; 32]) -> Seal {
        self.with_entropy(entropy)
    }

    /// This endpoint's public key, if it has a keypair.
    pub fn public_key(&self) -> Option<&PublicKey> {
        self.keys.as_ref().map(|k| &k.public)
    }

    /// Checks that the seal can work for an active (`initiator`) or
    /// passive side.
    pub fn validate(&self, initiator: bool) -> Result<(), KeyError> {
        if self.keys.is_none() && self.psk.is_none() {
            return Err(KeyError(
                "a seal needs a keypair or a pre-shared secret".into(),
            ));
        }
        if self.keys.is_none() && (self.peer.is_some() || self.allowed.is_some()) {
            return Err(KeyError(
                "a peer key or allow-list needs a keypair of our own (Seal::keys)".into(),
            ));
        }
        if initiator && self.keys.is_some() && self.peer.is_none() {
            return Err(KeyError(
                "a sealed client with a keypair must pin the peer's public key (--peer-key / Seal::peer): \
                 without it anyone on the path could answer as the peer"
                    .into(),
            ));
        }
        Ok(())
    }

    fn pattern(&self) -> &'static str {
        match (self.keys.is_some(), self.psk.is_some()) {
            (true, false) => "Noise_IK_25519_AESGCM_BLAKE2s",
            (true, true) => "Noise_IKpsk2_25519_AESGCM_BLAKE2s",
            _ => "Noise_NNpsk0_25519_AESGCM_BLAKE2s",
        }
    }

    fn admits(&self, key: Option<&PublicKey>) -> bool {
        match (&self.allowed, &self.peer, key) {
            (None, None, _) => true,
            (_, _, None) => false,
            (allowed, peer, Some(k)) => {
                peer.as_ref() == Some(k) || allowed.as_ref().is_some_and(|a| a.contains(k))
            }
        }
    }
}

/// Randomness for snow: a ChaCha generator seeded from the seal's entropy
/// (the OS's unless fixed for tests) and the engine's seed.
struct SeededRng(rand_chacha::ChaCha20Rng);

impl snow::types::Random for SeededRng {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        self.0.fill_bytes(dest);
        Ok(())
    }
}

struct Resolver {
    seed: [u8; 32],
}

impl CryptoResolver for Resolver {
    fn resolve_rng(&self) -> Option<Box<dyn snow::types::Random>> {
        Some(Box::new(SeededRng(rand_chacha::ChaCha20Rng::from_seed(
            self.seed,
        ))))
    }
    fn resolve_dh(&self, c: &snow::params::DHChoice) -> Option<Box<dyn snow::types::Dh>> {
        DefaultResolver.resolve_dh(c)
    }
    fn resolve_hash(&self, c: &snow::params::HashChoice) -> Option<Box<dyn snow::types::Hash>> {
        DefaultResolver.resolve_hash(c)
    }
    fn resolve_cipher(
        &self,
        c: &snow::params::CipherChoice,
    ) -> Option<Box<dyn snow::types::Cipher>> {
        RingResolver
            .resolve_cipher(c)
            .or_else(|| DefaultResolver.resolve_cipher(c))
    }
}

/// Why a sealed packet was not believed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum OpenError {
    #[error("a sealed frame before the handshake completed")]
    NoKeys,
    #[error("a sealed frame that is too short or of an unknown version")]
    Malformed,
    #[error("a sealed frame whose counter was seen before or is too old")]
    Replay,
    #[error("a sealed frame that does not open with the session key (forged or damaged)")]
    Forged,
}

/// What a handshake message in a Syn or SynAck gave.
pub(crate) enum HandshakeIn {
    /// The authenticated packet inside (header fields only).
    Packet(Bytes),
    /// The very message already read: a retransmission. Answer again.
    Repeat,
}

/// One session's sealing state.
pub(crate) struct Sealer {
    cfg: Seal,
    initiator: bool,
    seed: [u8; 32],
    hs: Option<HandshakeState>,
    /// The handshake message we sent (re-sent on retransmission).
    sent: Option<Bytes>,
    /// The handshake message we read (a repeat of it is a retransmission).
    read: Option<Bytes>,
    transport: Option<StatelessTransportState>,
    send_ctr: u64,
    replay: ReplayWindow,
    remote_static: Option<PublicKey>,
    /// Handshake states built so far (each gets its own randomness).
    builds: u64,
}

impl Sealer {
    pub(crate) fn new(cfg: Seal, initiator: bool, nonce_seed: u64) -> Result<Sealer, KeyError> {
        cfg.validate(initiator)?;
        let entropy = cfg.entropy.ok_or_else(|| {
            KeyError(
                "a sealed engine needs fresh randomness for its handshake: Seal::with_entropy \
                 (the async Session supplies it)"
                    .into(),
            )
        })?;
        let seed = derive(
            b"swp-seal-rng",
            &[&entropy, &nonce_seed.to_le_bytes(), &[initiator as u8]],
        );
        let mut s = Sealer {
            cfg,
            initiator,
            seed,
            hs: None,
            sent: None,
            read: None,
            transport: None,
            send_ctr: 0,
            replay: ReplayWindow::default(),
            remote_static: None,
            builds: 0,
        };
        if initiator {
            s.hs = Some(s.build()?);
        }
        Ok(s)
    }

    fn build(&mut self) -> Result<HandshakeState, KeyError> {
        // A new generator per handshake state: a listener that dropped a
        // Syn that did not verify never reuses the randomness for the next.
        self.builds += 1;
        let seed = derive(b"swp-seal-hs", &[&self.seed, &self.builds.to_le_bytes()]);
        let params: snow::params::NoiseParams = self
            .cfg
            .pattern()
            .parse()
            .map_err(|e| KeyError(format!("noise pattern: {e:?}")))?;
        let mut b = snow::Builder::with_resolver(params, Box::new(Resolver { seed }))
            .prologue(PROLOGUE)
            .map_err(|e| KeyError(format!("noise: {e}")))?;
        if let Some(k) = &self.cfg.keys {
            b = b
                .local_private_key(&k.secret[..])
                .map_err(|e| KeyError(format!("noise: {e}")))?;
        }
        if self.initiator
            && let Some(p) = &self.cfg.peer
        {
            b = b
                .remote_public_key(&p.0)
                .map_err(|e| KeyError(format!("noise: {e}")))?;
        }
        if let Some(psk) = &self.cfg.psk {
            let at = if self.cfg.keys.is_some() { 2 } else { 0 };
            b = b
                .psk(at, psk)
                .map_err(|e| KeyError(format!("noise: {e}")))?;
        }
        let hs = if self.initiator {
            b.build_initiator()
        } else {
            b.build_responder()
        };
        hs.map_err(|e| KeyError(format!("noise: {e}")))
    }

    /// The handshake is complete: packets are sealed from now on.
    pub(crate) fn ready(&self) -> bool {
        self.transport.is_some()
    }

    /// The peer's static key, once the handshake proved it.
    pub(crate) fn remote_static(&self) -> Option<&PublicKey> {
        self.remote_static.as_ref()
    }

    /// The handshake message for our Syn (initiator) or SynAck (responder),
    /// carrying `header()` (the packet encoded without data) authenticated.
    /// Written once; a retransmission sends the same message (and encodes
    /// no header).
    pub(crate) fn handshake_out(&mut self, header: impl FnOnce() -> Bytes) -> Option<Bytes> {
        if let Some(m) = &self.sent {
            return Some(m.clone());
        }
        let hs = self.hs.as_mut()?;
        let header = header();
        let mut buf = vec![0u8; header.len() + 256];
        let n = hs.write_message(&header, &mut buf).ok()?;
        buf.truncate(n);
        let m = Bytes::from(buf);
        self.sent = Some(m.clone());
        if hs.is_handshake_finished() {
            self.finish();
        }
        Some(m)
    }

    /// Reads the peer's handshake message (its Syn or SynAck `data`).
    pub(crate) fn handshake_in(&mut self, msg: &Bytes) -> Result<HandshakeIn, &'static str> {
        if self.read.as_ref() == Some(msg) {
            return Ok(HandshakeIn::Repeat);
        }
        if self.read.is_some() {
            return Err("a second, different handshake message");
        }
        if !self.initiator && self.hs.is_none() {
            self.hs = Some(self.build().map_err(|_| "cannot build the handshake")?);
        }
        let hs = self.hs.as_mut().ok_or("no handshake in progress")?;
        let mut out = vec![0u8; msg.len()];
        let n = match hs.read_message(msg, &mut out) {
            Ok(n) => n,
            Err(_) => {
                if !self.initiator {
                    self.hs = None; // a fresh one for the next Syn
                }
                return Err(
                    "the handshake message does not verify (wrong key or secret, or forged)",
                );
            }
        };
        out.truncate(n);
        let remote = hs.get_remote_static().and_then(|k| {
            let mut a = [0u8; 32];
            (k.len() == 32).then(|| {
                a.copy_from_slice(k);
                PublicKey(a)
            })
        });
        if !self.initiator && !self.cfg.admits(remote.as_ref()) {
            self.hs = None;
            return Err("the client's key is not allowed here");
        }
        self.remote_static = remote;
        self.read = Some(msg.clone());
        if hs.is_handshake_finished() {
            self.finish();
        }
        Ok(HandshakeIn::Packet(Bytes::from(out)))
    }

    fn finish(&mut self) {
        if let Some(hs) = self.hs.take()
            && let Ok(t) = hs.into_stateless_transport_mode()
        {
            self.transport = Some(t);
        }
    }

    /// Seals an encoded native packet into a frame.
    pub(crate) fn seal(&mut self, frame: &[u8]) -> Option<Bytes> {
        let t = self.transport.as_ref()?;
        let ctr = self.send_ctr;
        self.send_ctr += 1;
        let mut out = BytesMut::with_capacity(SEALED_OVERHEAD + frame.len());
        out.put_slice(&SEALED_MAGIC);
        out.put_u8(SEALED_VERSION);
        out.put_u64(ctr);
        out.resize(SEALED_OVERHEAD + frame.len(), 0);
        let n = t
            .write_message(ctr, frame, &mut out[SEALED_HEADER..])
            .ok()?;
        out.truncate(SEALED_HEADER + n);
        Some(out.freeze())
    }

    /// Opens a sealed frame into the native packet it carries.
    pub(crate) fn open(&mut self, bytes: &[u8]) -> Result<Bytes, OpenError> {
        let t = self.transport.as_ref().ok_or(OpenError::NoKeys)?;
        if bytes.len() < SEALED_OVERHEAD || bytes[2] != SEALED_VERSION {
            return Err(OpenError::Malformed);
        }
        let ctr = u64::from_be_bytes(bytes[3..11].try_into().expect("8 bytes"));
        if !self.replay.fresh(ctr) {
            return Err(OpenError::Replay);
        }
        let ct = &bytes[SEALED_HEADER..];
        let mut out = BytesMut::zeroed(ct.len() - TAG);
        let n = t
            .read_message(ctr, ct, &mut out)
            .map_err(|_| OpenError::Forged)?;
        out.truncate(n);
        self.replay.mark(ctr);
        Ok(out.freeze())
    }
}

/// Which counters have been seen: the highest, and a bitmap of the
/// [`REPLAY_WINDOW`] below it (RFC 4303 §3.4.3's sliding window).
pub(crate) struct ReplayWindow {
    /// One above the highest counter seen (0: none yet).
    top: u64,
    bits: Vec<u64>,
}

impl Default for ReplayWindow {
    fn default() -> Self {
        ReplayWindow {
            top: 0,
            bits: vec![0; Self::WORDS],
        }
    }
}

impl ReplayWindow {
    // One word more than the window spans, so the oldest counter still in
    // the window never shares a word with the newest.
    const WORDS: usize = (REPLAY_WINDOW / 64) as usize + 1;

    /// Not seen and not too old (checked before the tag, marked after).
    fn fresh(&self, ctr: u64) -> bool {
        if ctr >= self.top {
            return true;
        }
        if self.top - ctr > REPLAY_WINDOW {
            return false;
        }
        !self.get(ctr)
    }

    fn idx(ctr: u64) -> (usize, u64) {
        (((ctr / 64) as usize) % Self::WORDS, 1u64 << (ctr % 64))
    }

    fn get(&self, ctr: u64) -> bool {
        let (w, b) = Self::idx(ctr);
        self.bits[w] & b != 0
    }

    fn mark(&mut self, ctr: u64) {
        if ctr >= self.top {
            // Clear the words after the highest counter's up to the new
            // one's: they hold a lap-old bitmap. (The highest is top - 1;
            // nothing seen yet: the bitmap is clear.)
            if self.top > 0 {
                let old_word = (self.top - 1) / 64;
                let new_word = ctr / 64;
                if new_word - old_word >= Self::WORDS as u64 {
                    self.bits.iter_mut().for_each(|w| *w = 0);
                } else {
                    for w in (old_word + 1)..=new_word {
                        self.bits[(w as usize) % Self::WORDS] = 0;
                    }
                }
            }
            self.top = ctr + 1;
        }
        let (w, b) = Self::idx(ctr);
        self.bits[w] |= b;
    }
}

/// The encoded header of a handshake packet: what its Noise message
/// carries.
pub(crate) fn handshake_header(p: &super::packet::Packet) -> Bytes {
    let mut q = p.clone();
    q.data = Bytes::new();
    codec::encode(&q)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(c: Seal, s: Seal) -> (Sealer, Sealer) {
        (
            Sealer::new(c.with_entropy([1; 32]), true, 1).unwrap(),
            Sealer::new(s.with_entropy([2; 32]), false, 2).unwrap(),
        )
    }

    fn handshake(c: &mut Sealer, s: &mut Sealer) -> Result<(), &'static str> {
        let m1 = c.handshake_out(|| Bytes::from_static(b"syn")).unwrap();
        match s.handshake_in(&m1)? {
            HandshakeIn::Packet(p) => assert_eq!(&p[..], b"syn"),
            HandshakeIn::Repeat => panic!("first read is no repeat"),
        }
        let m2 = s.handshake_out(|| Bytes::from_static(b"synack")).unwrap();
        match c.handshake_in(&m2)? {
            HandshakeIn::Packet(p) => assert_eq!(&p[..], b"synack"),
            HandshakeIn::Repeat => panic!(),
        }
        Ok(())
    }

    #[test]
    fn each_pattern_agrees_and_wrong_secrets_fail_to_verify() {
        let (sk, ck, other) = (
            Keypair::generate(),
            Keypair::generate(),
            Keypair::generate(),
        );
        let cases: Vec<(Seal, Seal, bool)> = vec![
            (Seal::psk([1; 32]), Seal::psk([1; 32]), true),
            (Seal::psk([1; 32]), Seal::psk([2; 32]), false),
            (
                Seal::keys(ck.clone()).peer(sk.public),
                Seal::keys(sk.clone()),
                true,
            ),
            (
                Seal::keys(ck.clone()).peer(other.public),
                Seal::keys(sk.clone()),
                false,
            ),
            (
                Seal::keys(ck.clone()).peer(sk.public),
                Seal::keys(sk.clone()).allow([other.public]),
                false,
            ),
            (
                Seal::keys(ck.clone()).peer(sk.public),
                Seal::keys(sk.clone()).allow([ck.public]),
                true,
            ),
            (
                Seal::keys(ck.clone()).peer(sk.public).with_psk([3; 32]),
                Seal::keys(sk.clone()).with_psk([3; 32]),
                true,
            ),
            (
                Seal::keys(ck.clone()).peer(sk.public).with_psk([3; 32]),
                Seal::keys(sk.clone()).with_psk([4; 32]),
                false,
            ),
        ];
        for (i, (c, s, ok)) in cases.into_iter().enumerate() {
            let (mut c, mut s) = pair(c, s);
            let r = handshake(&mut c, &mut s);
            assert_eq!(r.is_ok(), ok, "case {i}: {r:?}");
            if ok {
                assert!(c.ready() && s.ready(), "case {i}");
                let f = c.seal(b"hello").unwrap();
                assert_eq!(&s.open(&f).unwrap()[..], b"hello");
                let g = s.seal(b"back").unwrap();
                assert_eq!(&c.open(&g).unwrap()[..], b"back");
            }
        }
    }

    #[test]
    fn a_forged_answer_is_dropped_and_the_real_one_still_completes() {
        let sk = Keypair::generate();
        let (mut c, mut s) = pair(
            Seal::keys(Keypair::generate()).peer(sk.public),
            Seal::keys(sk.clone()),
        );
        let m1 = c.handshake_out(|| Bytes::from_static(b"syn")).unwrap();
        // A forger answers with a responder of its own (a key of its own).
        let forger_seal = Seal::keys(Keypair::generate()).with_entropy([9; 32]);
        let mut forger = Sealer::new(forger_seal, false, 9).unwrap();
        assert!(
            forger.handshake_in(&m1).is_err(),
            "encrypted to the real key"
        );
        let junk = Bytes::from(vec![0u8; 96]);
        assert!(c.handshake_in(&junk).is_err());
        assert!(!c.ready());
        assert!(matches!(s.handshake_in(&m1), Ok(HandshakeIn::Packet(_))));
        assert!(matches!(s.handshake_in(&m1), Ok(HandshakeIn::Repeat)));
        let m2 = s.handshake_out(|| Bytes::from_static(b"synack")).unwrap();
        assert_eq!(
            s.handshake_out(|| Bytes::from_static(b"other")).unwrap(),
            m2,
            "re-sent unchanged"
        );
        assert!(matches!(c.handshake_in(&m2), Ok(HandshakeIn::Packet(_))));
        assert!(matches!(c.handshake_in(&m2), Ok(HandshakeIn::Repeat)));
        assert_eq!(c.remote_static(), Some(&sk.public));
    }

    #[test]
    fn replays_tampering_and_old_counters_are_refused() {
        let (mut c, mut s) = pair(Seal::psk([5; 32]), Seal::psk([5; 32]));
        handshake(&mut c, &mut s).unwrap();
        let frames: Vec<Bytes> = (0..6000)
            .map(|i| c.seal(format!("{i}").as_bytes()).unwrap())
            .collect();
        assert_eq!(&s.open(&frames[5]).unwrap()[..], b"5");
        assert_eq!(s.open(&frames[5]), Err(OpenError::Replay));
        assert_eq!(
            &s.open(&frames[3]).unwrap()[..],
            b"3",
            "reordered, in window"
        );
        assert_eq!(&s.open(&frames[5999]).unwrap()[..], b"5999");
        assert_eq!(s.open(&frames[4]), Err(OpenError::Replay), "too old now");
        assert_eq!(&s.open(&frames[5990]).unwrap()[..], b"5990");
        let mut bad = frames[5998].to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(s.open(&bad), Err(OpenError::Forged));
        let mut moved = frames[5998].to_vec();
        moved[9] ^= 1; // the counter is the nonce (now 256 ahead, unseen)
        assert_eq!(s.open(&moved), Err(OpenError::Forged));
        assert_eq!(
            &s.open(&frames[5998]).unwrap()[..],
            b"5998",
            "a failed open marks nothing"
        );
        assert_eq!(s.open(&frames[5998][..5]), Err(OpenError::Malformed));
        // Our own frames do not open as the peer's (one key per direction).
        // Another session with the same secret (its own randomness: equal
        // entropy and seeds would mean equal keys, which is why the session
        // layer draws fresh entropy for each).
        let mut c2 = Sealer::new(Seal::psk([5; 32]).with_entropy([3; 32]), true, 1).unwrap();
        let mut s2 = Sealer::new(Seal::psk([5; 32]).with_entropy([4; 32]), false, 2).unwrap();
        handshake(&mut c2, &mut s2).unwrap();
        let mine = s2.seal(b"x").unwrap();
        assert_eq!(s2.open(&mine), Err(OpenError::Forged));
        // Nor does a frame of another session with the same secret.
        let theirs = c2.seal(b"y").unwrap();
        assert_eq!(
            s.open(&theirs),
            Err(OpenError::Replay),
            "counter 0 is old here"
        );
        let later: Vec<Bytes> = (0..7000).map(|_| c2.seal(b"z").unwrap()).collect();
        assert_eq!(s.open(&later[6999]), Err(OpenError::Forged));
    }

    #[test]
    fn a_listener_never_reuses_randomness_after_a_syn_that_failed() {
        let c = || Sealer::new(Seal::psk([6; 32]).with_entropy([1; 32]), true, 1).unwrap();
        let s = || Sealer::new(Seal::psk([6; 32]).with_entropy([2; 32]), false, 2).unwrap();
        let m1 = c().handshake_out(|| Bytes::from_static(b"syn")).unwrap();
        let (mut direct, mut after_junk) = (s(), s());
        assert!(
            after_junk
                .handshake_in(&Bytes::from(vec![7u8; 80]))
                .is_err()
        );
        assert!(direct.handshake_in(&m1).is_ok() && after_junk.handshake_in(&m1).is_ok());
        let (a, b) = (
            direct.handshake_out(|| Bytes::from_static(b"x")).unwrap(),
            after_junk
                .handshake_out(|| Bytes::from_static(b"x"))
                .unwrap(),
        );
        assert_ne!(
            a[..32],
            b[..32],
            "a fresh ephemeral key for the second handshake state"
        );
    }

    #[test]
    fn an_engine_without_fresh_randomness_refuses_to_seal() {
        let e = Sealer::new(Seal::psk([1; 32]), true, 1).err().unwrap();
        assert!(e.0.contains("with_entropy"), "{e}");
    }

    #[test]
    fn a_counter_in_a_new_word_is_fresh_when_the_highest_ended_a_word() {
        // The highest counter seen is the last of its 64-bit word, so the
        // next one starts a word that still holds a lap-old bitmap.
        let mut w = ReplayWindow::default();
        let last = (ReplayWindow::WORDS as u64 + 1) * 64 - 1;
        for c in 0..=last {
            w.mark(c);
        }
        w.mark(last + 1);
        w.mark(last + 7); // reordered: +2 .. +6 still to come
        for c in last + 2..last + 7 {
            assert!(w.fresh(c), "counter {c} was never seen");
        }
        assert!(!w.fresh(last + 1) && !w.fresh(last + 7));
    }

    #[test]
    fn the_replay_window_agrees_with_a_set_of_everything_seen() {
        // Oracle: fresh iff never marked and no more than the window behind
        // the highest. Counters mostly climb, jump, and come back late.
        for seed in 1..=20u64 {
            let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            let mut next = move || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            };
            let (mut w, mut seen) = (ReplayWindow::default(), std::collections::HashSet::new());
            let mut top = 0u64;
            for _ in 0..20_000 {
                let ctr = match next() % 10 {
                    0 => top + next() % (3 * REPLAY_WINDOW),
                    1..=3 => top.saturating_sub(next() % (REPLAY_WINDOW + 100)),
                    _ => top + next() % 3,
                };
                let expect = !seen.contains(&ctr) && (ctr >= top || top - ctr <= REPLAY_WINDOW);
                assert_eq!(
                    w.fresh(ctr),
                    expect,
                    "seed {seed}: counter {ctr}, top {top}"
                );
                if expect {
                    w.mark(ctr);
                    seen.insert(ctr);
                    top = top.max(ctr + 1);
                }
            }
        }
    }

    #[test]
    fn replay_window_is_exact_at_its_edge() {
        let mut w = ReplayWindow::default();
        w.mark(REPLAY_WINDOW + 10);
        assert!(w.fresh(11), "the oldest counter in the window");
        assert!(!w.fresh(10), "one further");
        w.mark(11);
        assert!(!w.fresh(11));
        for c in 11..REPLAY_WINDOW + 11 {
            w.mark(c);
        }
        assert!(
            (11..REPLAY_WINDOW + 11).all(|c| !w.fresh(c)),
            "every marked counter remembered"
        );
        w.mark(10 * REPLAY_WINDOW);
        assert!(!w.fresh(REPLAY_WINDOW + 10));
        assert!(w.fresh(10 * REPLAY_WINDOW - 1));
    }
}
