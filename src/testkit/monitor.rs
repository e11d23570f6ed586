//! The window monitor: watches every packet on the simulated wire.

use crate::proto::{Kind, codec, go::codec as gocodec, go::link as golink};
use simnet::{DropReason, Envelope, Monitor};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the [`WindowMonitor`] found.
///
/// ```
/// use swp::testkit::{Pair, Side};
/// use swp::simnet::LinkConfig;
/// use std::time::Duration;
/// let mut pair = Pair::new(1, LinkConfig::new(), Pair::default_config("A", "B"), Pair::default_config("B", ""));
/// use swp::testkit::{transfer, TransferSpec};
/// transfer(&mut pair, &TransferSpec::new(1 << 20)).unwrap();
/// let r = pair.window_report();
/// assert_eq!(r.violations, 0);
/// assert!(r.first.is_none());
/// assert!(r.checked >= 16); // every data packet was checked
/// assert!(r.by_kind.len() > 2); // syn, synack, data, acks, fin ...
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct WindowReport {
    /// Data packets sent beyond the receiver's advertised window.
    pub violations: u64,
    /// Description of the first violation.
    pub first: Option<String>,
    /// Data packets checked.
    pub checked: u64,
    /// Packets seen on the wire, by kind.
    pub by_kind: std::collections::BTreeMap<u8, u64>,
    /// The virtual time of the last well-formed packet delivered, per
    /// (sender inbox, receiver inbox): what the receiver last heard.
    pub last_delivery: std::collections::BTreeMap<(usize, usize), Duration>,
}

/// A [`simnet::Monitor`] that decodes every packet and checks flow control:
/// a data packet from X to Y must lie within the largest window edges that Y
/// advertised *and that reached X*.
///
/// ```
/// use swp::testkit::WindowMonitor;
/// use swp::simnet::{LinkConfig, SimNet};
/// use swp::proto::{Config, Connection, Packet, Kind, codec};
/// use std::time::Duration;
///
/// let (monitor, report) = WindowMonitor::new();
/// let mut net = SimNet::new(1);
/// let (a, b) = (net.add_inbox("A", 64), net.add_inbox("B", 64));
/// net.set_monitor(Box::new(monitor));
/// // Data sent before B ever advertised a window is a violation.
/// let mut p = Packet::new(Kind::Data);
/// p.seq = 0;
/// p.data = bytes::Bytes::from_static(b"too early");
/// net.send(a, b, codec::encode(&p));
/// let r = report.lock().unwrap();
/// assert_eq!((r.checked, r.violations), (1, 1));
/// assert!(r.first.as_ref().unwrap().contains("data seq 0"), "{:?}", r.first);
/// ```
#[derive(Debug, Default)]
pub struct WindowMonitor {
    /// Go mode: per direction, (largest data seq, its CumulBytesTransmitted).
    go_cumul: std::collections::BTreeMap<(usize, usize), (i64, i64)>,
    /// Largest (seq edge, byte edge) delivered to the sender, per direction
    /// (index = sender inbox id, receiver inbox id).
    edges: std::collections::BTreeMap<(usize, usize), (u64, u64)>,
    report: Arc<Mutex<WindowReport>>,
}

impl WindowMonitor {
    /// A monitor and a handle to read its report.
    ///
    /// ```
    /// use swp::testkit::WindowMonitor;
    /// let (monitor, report) = WindowMonitor::new();
    /// let mut net = swp::simnet::SimNet::new(1);
    /// net.set_monitor(Box::new(monitor)); // the network owns the monitor ...
    /// assert_eq!(report.lock().unwrap().violations, 0); // ... the handle reads it
    /// ```
    pub fn new() -> (Self, Arc<Mutex<WindowReport>>) {
        let m = WindowMonitor::default();
        let r = m.report.clone();
        (m, r)
    }
}

/// What the monitor needs of a packet, in either wire format.
struct Seen {
    kind: u8,
    data: bool,
    seq: u64,
    /// End offset of a data packet (Go: not comparable with byte edges).
    end: Option<u64>,
    wnd_seq: u64,
    wnd_bytes: u64,
}

fn violation(r: &mut WindowReport, what: impl FnOnce() -> String) {
    r.violations += 1;
    if r.first.is_none() {
        r.first = Some(what());
    }
}

impl WindowMonitor {
    /// Decodes a packet; for Go's format also checks what a Go peer needs:
    /// that its decoder accepts the packet, sentinel sequence numbers, the
    /// data checksum, and `CumulBytesTransmitted` never going backwards
    /// (a Go receiver panics on that).
    fn see(&mut self, env: &Envelope, sending: bool, r: &mut WindowReport) -> Option<Seen> {
        if !gocodec::looks_like_go(&env.payload) {
            let p = codec::decode(&env.payload).ok()?;
            return Some(Seen {
                kind: p.kind as u8,
                data: p.kind == Kind::Data,
                seq: p.seq,
                end: Some(p.cumul_bytes),
                wnd_seq: p.wnd_seq,
                wnd_bytes: p.wnd_bytes,
            });
        }
        let g = match gocodec::decode_packet(&env.payload) {
            Ok(g) => g,
            Err(e) => {
                if sending {
                    violation(r, || format!("a Go peer would reject this packet: {e}"));
                }
                return None;
            }
        };
        if sending {
            let expect = match g.tcp_event {
                3 => Some(golink::SEQ_SYN),
                4 | 5 | 9 | 10 => Some(golink::SEQ_ACK),
                8 => Some(golink::SEQ_FIN),
                12 => Some(golink::SEQ_KEEPALIVE),
                11 => None,
                e => {
                    violation(r, || format!("Go packet with TcpEvent {e}"));
                    None
                }
            };
            if let Some(x) = expect
                && (g.seq_num != x || g.seq_retry != x)
            {
                violation(r, || {
                    format!(
                        "Go event {} with SeqNum {} (want {x})",
                        g.tcp_event, g.seq_num
                    )
                });
            }
            if g.ack_num < -1 {
                violation(r, || format!("Go AckNum {}", g.ack_num));
            }
            if g.tcp_event == 11 {
                if g.seq_num < 0
                    || g.blake2b_checksum != golink::checksum(&g.data) && !g.data.is_empty()
                {
                    violation(r, || {
                        format!("Go data seq {} with a bad seq or checksum", g.seq_num)
                    });
                }
                let (largest, cumul) = self
                    .go_cumul
                    .get(&(env.from.0, env.to.0))
                    .copied()
                    .unwrap_or((-1, 0));
                if g.seq_num > largest {
                    if g.cumul_bytes_transmitted < cumul {
                        violation(r, || {
                            format!(
                                "Go CumulBytesTransmitted went back from {cumul} to {} at seq {}",
                                g.cumul_bytes_transmitted, g.seq_num
                            )
                        });
                    }
                    self.go_cumul.insert(
                        (env.from.0, env.to.0),
                        (g.seq_num, g.cumul_bytes_transmitted),
                    );
                }
            }
        }
        Some(Seen {
            kind: g.tcp_event.clamp(0, 255) as u8,
            data: g.tcp_event == 11,
            seq: g.seq_num.max(0) as u64,
            end: None,
            // Go's caps are relative to the AckNum in the same packet.
            wnd_seq: (g.ack_num + 1).max(0) as u64 + g.avail_reader_msg_cap.max(0) as u64,
            wnd_bytes: u64::MAX,
        })
    }
}

impl Monitor for WindowMonitor {
    fn on_send(&mut self, env: &Envelope, _now: Duration) {
        let report = self.report.clone();
        let mut r = report.lock().expect("monitor lock");
        let Some(p) = self.see(env, true, &mut r) else {
            return;
        };
        *r.by_kind.entry(p.kind).or_default() += 1;
        if !p.data {
            return;
        }
        r.checked += 1;
        let (seq_edge, byte_edge) = self
            .edges
            .get(&(env.from.0, env.to.0))
            .copied()
            .unwrap_or((0, 0));
        if p.seq >= seq_edge || p.end.is_some_and(|e| e > byte_edge) {
            violation(&mut r, || {
                format!(
                    "data seq {} (end offset {:?}) sent with window edges seq<{} bytes<={}",
                    p.seq, p.end, seq_edge, byte_edge
                )
            });
        }
    }

    fn on_deliver(&mut self, env: &Envelope, now: Duration) {
        let report = self.report.clone();
        let mut r = report.lock().expect("monitor lock");
        let Some(p) = self.see(env, false, &mut r) else {
            return;
        };
        r.last_delivery.insert((env.from.0, env.to.0), now);
        // A packet from Y delivered to X carries Y's edges for X's data.
        let e = self.edges.entry((env.to.0, env.from.0)).or_insert((0, 0));
        e.0 = e.0.max(p.wnd_seq);
        e.1 = e.1.max(p.wnd_bytes);
    }

    fn on_drop(&mut self, _env: &Envelope, _reason: DropReason, _now: Duration) {}
}
