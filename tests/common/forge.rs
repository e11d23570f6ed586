//! A hostile third party's forgeries, shared by the tests that flood
//! sessions with them (over SimNet and over a real nats-server).

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use swp::proto::{Kind, Packet, codec};

/// What was forged towards one inbox, by the counter that must show it.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forged {
    /// Garbage, and real packets with a flipped bit: fail to decode.
    pub invalid: u64,
    /// Real packets with a wrong destination nonce.
    pub foreign: u64,
    /// Acks of data never sent, data far beyond the window.
    pub impossible: u64,
    /// Real packets sent again (not counted anywhere in particular).
    pub replays: u64,
}

impl Forged {
    /// The forgeries a session must count as dropped.
    pub fn dropped(&self) -> u64 {
        self.invalid + self.foreign + self.impossible
    }
}

/// How many real packets a [`Forger`] keeps to replay.
const KEEP: usize = 4096;

/// Forges, from the real packets it has seen (as anyone allowed to
/// subscribe to the inboxes' subjects sees them), what no correct peer
/// sends and the protocol promises never to believe: garbage, a real
/// packet with a bit flipped, with a wrong nonce, data with the right
/// nonces far beyond the window, acks with the right nonces of data never
/// sent, and replays of old packets. Never in-window data or Resets with
/// the right nonces: a plain session cannot tell those from its peer's
/// (sealed sessions can).
pub struct Forger {
    rng: SmallRng,
    /// The highest data seq each inbox sent: acks beyond it are impossible.
    top_seq: HashMap<String, u64>,
    /// The latest real packet towards each inbox (its nonces to copy).
    towards: HashMap<String, Packet>,
    /// Real packets to replay (at most [`KEEP`], a sample once full).
    old: Vec<Bytes>,
    seen: u64,
    /// What was forged, by destination inbox.
    pub sent: HashMap<String, Forged>,
}

impl Forger {
    pub fn new(seed: u64) -> Forger {
        Forger {
            rng: SmallRng::seed_from_u64(seed),
            top_seq: HashMap::new(),
            towards: HashMap::new(),
            old: Vec::new(),
            seen: 0,
            sent: HashMap::new(),
        }
    }

    /// Its random choices, for the caller's own (where, how many).
    pub fn rng(&mut self) -> &mut SmallRng {
        &mut self.rng
    }

    /// Learns from a real packet on the wire.
    pub fn saw(&mut self, raw: &Bytes) {
        let Ok(p) = codec::decode(raw) else { return };
        if p.kind == Kind::Data {
            let top = self.top_seq.entry(p.from.to_string()).or_default();
            *top = (*top).max(p.seq);
        }
        self.seen += 1;
        if self.old.len() < KEEP {
            self.old.push(raw.clone());
        } else {
            let i = self.rng.gen_range(0..self.seen);
            if (i as usize) < KEEP {
                self.old[i as usize] = raw.clone();
            }
        }
        if !p.dest_nonce.is_empty() && !p.from_nonce.is_empty() {
            self.towards.insert(p.dest.to_string(), p);
        }
    }

    /// One forgery towards `inbox`; `None` until a real packet to it with
    /// both nonces was seen.
    pub fn forge(&mut self, inbox: &str) -> Option<Bytes> {
        let real = self.towards.get(inbox)?.clone();
        let rng = &mut self.rng;
        let f = self.sent.entry(inbox.to_string()).or_default();
        Some(match rng.gen_range(0..6) {
            0 => {
                f.invalid += 1;
                let len = rng.gen_range(0..300);
                (0..len)
                    .map(|_| rng.r#gen::<u8>())
                    .collect::<Vec<u8>>()
                    .into()
            }
            1 => {
                f.invalid += 1;
                let mut v = codec::encode(&real).to_vec();
                let i = rng.gen_range(0..v.len());
                v[i] ^= 1 << rng.gen_range(0..8);
                v.into()
            }
            2 => {
                f.foreign += 1;
                let mut p = real;
                p.dest_nonce = format!("forged{}", rng.r#gen::<u32>()).into();
                codec::encode(&p)
            }
            3 => {
                f.impossible += 1;
                let mut p = Packet::new(Kind::Ack);
                (p.from, p.dest) = (real.from.clone(), real.dest.clone());
                (p.from_nonce, p.dest_nonce) = (real.from_nonce.clone(), real.dest_nonce.clone());
                let theirs = self.top_seq.get(inbox).copied().unwrap_or(0);
                p.ack = theirs + 1_000_000;
                (p.wnd_seq, p.wnd_bytes) = (real.wnd_seq, real.wnd_bytes);
                codec::encode(&p)
            }
            4 => {
                f.impossible += 1;
                let mut p = real;
                (p.kind, p.flags) = (Kind::Data, 0);
                p.seq = p.seq.max(p.ack) + 1_000_000;
                p.data = Bytes::from_static(b"not yours");
                codec::encode(&p)
            }
            _ => {
                f.replays += 1;
                self.old[rng.gen_range(0..self.old.len())].clone()
            }
        })
    }

    /// Everything forged, towards every inbox.
    pub fn total(&self) -> Forged {
        let mut t = Forged::default();
        for f in self.sent.values() {
            t.invalid += f.invalid;
            t.foreign += f.foreign;
            t.impossible += f.impossible;
            t.replays += f.replays;
        }
        t
    }
}
