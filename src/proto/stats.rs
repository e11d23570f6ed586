//! Counters of one session, grouped by what they describe: the wire
//! ([`WireStats`]), the stream's data ([`DataStats`]), losses and their
//! repair ([`LossStats`]), what was dropped unbelieved ([`DropStats`]), the
//! windows ([`WindowStats`]), the round trip ([`RttStats`]) and the
//! application's view ([`AppStats`]). [`Stats`] is a plain `Copy` struct:
//! take a snapshot with `Connection::stats` and compare.

use std::time::Duration;

/// What a session has done so far.
///
/// ```
/// use std::time::Duration;
/// use swp::{proto::Config, testkit::Pair, simnet::LinkConfig};
/// let mut p = Pair::new(1, LinkConfig::new(), Config::new("A", "B"), Config::new("B", ""));
/// assert!(p.connect(Duration::from_secs(1)));
/// p.a.send_message("hello".into()).unwrap();
/// assert!(p.run_until(Duration::from_secs(1), |p| p.a.is_acked(p.a.bytes_written())));
/// let (sa, sb) = (p.a.stats(), p.b.stats());
/// assert_eq!((sa.data.packets_sent, sa.data.bytes_sent), (1, 5));
/// assert_eq!((sb.data.packets_received, sb.data.duplicates), (1, 0));
/// assert_eq!(sa.app.bytes_acked, 5);
/// assert_eq!(sb.dropped.total(), 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Packets and bytes on the wire, by kind.
    pub wire: WireStats,
    /// The stream's payload.
    pub data: DataStats,
    /// Retransmissions.
    pub loss: LossStats,
    /// Packets dropped without being acted on, by why.
    pub dropped: DropStats,
    /// Flight and windows, as of the snapshot.
    pub window: WindowStats,
    /// The round-trip estimate, as of the snapshot.
    pub rtt: RttStats,
    /// What the application wrote, had acknowledged and read.
    pub app: AppStats,
}

/// Packets on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WireStats {
    /// Packets handed to the transport (all kinds).
    pub packets_sent: u64,
    /// Bytes of encoded packets handed to the transport.
    pub bytes_sent: u64,
    /// Packets received and accepted (valid, for this session).
    pub packets_received: u64,
    /// Bytes of encoded packets received (accepted or not).
    pub bytes_received: u64,
    /// Pure acknowledgement packets sent.
    pub acks_sent: u64,
    /// Keepalives sent.
    pub keepalives_sent: u64,
    /// Zero-window probes sent.
    pub window_probes_sent: u64,
    /// KeepAlives with `ACK_NOW` that asked the peer to confirm an
    /// acknowledgement older than one already taken (§5.6).
    pub ack_probes_sent: u64,
    /// Window updates (acks sent because the application read data).
    pub window_updates_sent: u64,
    /// SynAcks a listener sent as SYN cookies, keeping no state: answers
    /// to other clients' Syns while a half-open handshake held it
    /// (docs/PROTOCOL.md §4).
    pub cookies_sent: u64,
    /// Clients that answered a SYN cookie and so took the listener.
    pub cookies_taken: u64,
}

/// The stream's data packets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DataStats {
    /// Data packets sent for the first time.
    pub packets_sent: u64,
    /// Payload bytes sent for the first time.
    pub bytes_sent: u64,
    /// Data packets received in window for the first time.
    pub packets_received: u64,
    /// Payload bytes received for the first time.
    pub bytes_received: u64,
    /// Data packets that arrived twice (discarded).
    pub duplicates: u64,
    /// Data packets that arrived ahead of a gap (buffered).
    pub out_of_order: u64,
}

/// Retransmissions, by what triggered them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LossStats {
    /// Data packets retransmitted because the RTO expired.
    pub retransmits_timeout: u64,
    /// Data packets retransmitted early because later ones were acknowledged
    /// (fast retransmit / RACK).
    pub retransmits_fast: u64,
    /// Data packets retransmitted as tail-loss probes.
    pub retransmits_probe: u64,
    /// Handshake packets (Syn/SynAck) retransmitted.
    pub handshake_retransmits: u64,
    /// Handshakes a listener that keeps listening let go before they
    /// completed (the client stopped answering, or reset it), listening
    /// again ([`Connection::set_keep_listening`](crate::proto::Connection::set_keep_listening)).
    pub handshakes_abandoned: u64,
}

impl LossStats {
    /// Data retransmissions of every kind.
    pub fn data_retransmits(&self) -> u64 {
        self.retransmits_timeout + self.retransmits_fast + self.retransmits_probe
    }
}

/// Packets dropped and never acted on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DropStats {
    /// Packets that failed to decode (bad checksum, malformed ...).
    pub invalid: u64,
    /// Packets for another session (wrong inbox or nonce).
    pub foreign: u64,
    /// Packets that made no sense in the current state.
    pub unexpected: u64,
    /// Data beyond the window this side advertised.
    pub beyond_window: u64,
    /// Packets with correct inboxes and nonces whose content no correct
    /// peer sends (acks of data never sent, windows beyond the declared
    /// capacity): never believed (docs/PROTOCOL.md §5.6).
    pub impossible: u64,
    /// Sealed sessions: sealed frames that did not open (forged, damaged,
    /// replayed, too old) and handshake messages that did not verify.
    pub forged: u64,
    /// Sealed sessions: plain packets other than the handshake, never
    /// believed (and plain sessions: sealed Syns refused).
    pub unsealed: u64,
}

impl DropStats {
    /// Every packet dropped, for whatever reason.
    pub fn total(&self) -> u64 {
        self.invalid
            + self.foreign
            + self.unexpected
            + self.beyond_window
            + self.impossible
            + self.forged
            + self.unsealed
    }
}

/// Flight and windows at the moment of the snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WindowStats {
    /// Data packets in flight (sent, not acknowledged).
    pub in_flight_packets: u64,
    /// Stream bytes in flight: the payload of the packets counted in
    /// `in_flight_packets` (for a batch, its messages without their length
    /// prefixes).
    pub in_flight_bytes: u64,
    /// The peer's receive window as we last saw it: packets we may still send.
    pub peer_packets: u64,
    /// The peer's receive window: bytes we may still send.
    pub peer_bytes: u64,
    /// Our advertised receive window: packets the peer may still send.
    pub local_packets: u64,
    /// Our advertised receive window: bytes the peer may still send.
    pub local_bytes: u64,
    /// Times new data could not be sent because the peer's window was full.
    pub blocked: u64,
    /// With a Go peer: the most data left unread at it now, learned or
    /// fixed (`Tuning::go_peer_buffer`, docs/PROTOCOL.md §13.2); 0 with a
    /// native peer.
    pub go_peer_buffer: u64,
    /// With a Go peer: times a loss there made that smaller (§13.2).
    pub go_peer_buffer_fallbacks: u64,
}

/// The round-trip estimate (RFC 6298) at the moment of the snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RttStats {
    /// Smoothed RTT.
    pub srtt: Duration,
    /// RTT variation.
    pub rttvar: Duration,
    /// Current retransmission timeout.
    pub rto: Duration,
    /// RTT samples taken.
    pub samples: u64,
}

/// The application's side of the stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AppStats {
    /// Payload bytes the application wrote.
    pub bytes_written: u64,
    /// Payload bytes the peer acknowledged.
    pub bytes_acked: u64,
    /// Payload bytes the application read.
    pub bytes_read: u64,
}
