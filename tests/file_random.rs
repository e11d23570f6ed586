//! Randomized, oracle-checked file transfers over SimNet, in virtual time.
//!
//! A case is a pure function of its seed. It draws:
//! * the API: `send_file` -> `recv_file` (into a directory, with or without
//!   replacing files), a pipe of unknown length (`send_reader`, read in
//!   random pieces with pauses, some longer than the idle heartbeat) ->
//!   `recv_file`, `send_bytes` -> `recv_bytes` with a limit at the size's
//!   edges, and `send_file` -> `recv_to_writer` into a writer that may fail;
//! * the size, drawn towards the edges (0, 1, a packet and one either side,
//!   the 1 MiB read-ahead chunk and one either side, two chunks);
//! * both sides' packet sizes, windows and send buffers, and the link
//!   (latency, jitter, loss, duplication, reordering, corruption);
//! * what the receiver's directory holds before: nothing; a part of every
//!   length with its size record, right or tampered (one byte flipped), or
//!   with a record for another size, a garbage record or none; a part
//!   longer than the file; the destination itself, identical, of the same
//!   size but other bytes, of another size, or a directory;
//! * a fault once the sender has handed `at` bytes to its session: a
//!   partition, either side aborting its session with a reason, either
//!   side's task dropped (a program that gives up), either side's transfer
//!   future cancelled with its session kept, then, for files, a second
//!   attempt on a fresh network into the same directory; or, on loss-free
//!   links, an outage (both directions, or towards one side) of 30-99% of
//!   the smaller dead-peer budget that heals, after which the transfer
//!   must succeed as if nothing had happened (PROTOCOL.md §8's promise);
//!   or a hostile third party that sees every packet and floods both
//!   inboxes from the start with forgeries (`common::forge`), after which
//!   the transfer must succeed as if nothing had happened and each side
//!   must have counted every forgery that reached it as dropped, by its
//!   counter.
//!
//! The oracle derives what must happen from the directory as it is before
//! each attempt (a model of the resume rule: a part is offered when its
//! record names this size and it is no longer than the file, and resumed
//! only when its bytes are the sender's first bytes; an existing file is
//! kept unless it is this file or replacing was asked for), then checks:
//! every success is byte-exact with both sides' metadata and digest equal,
//! `resumed_from` and `bytes_sent` are what the model says, nothing but the
//! file is left in the directory; every refusal is told to the other side
//! in its words and changes nothing; after a fault both sides fail, the
//! destination does not appear (or is untouched), a part holds only the
//! sender's first bytes (or what was there before), and the side that did
//! not fail learns it within a bound far below its dead-peer budget (the
//! partition within that budget); and every attempt ends in bounded
//! virtual time.
//!
//! `SWP_FILE_CASES=N` runs N cases (default 1000, about 10 s), `SWP_FILE_FIRST=S` starts
//! at seed S, `SWP_FILE_CASE=S` runs seed S alone (and prints its traffic's
//! fingerprints). A failure prints its seed and the whole case. A second
//! test runs the first `SWP_FILE_REPLAYS` seeds (default 100) twice each and
//! demands the same traffic, packet for packet: a seed replays its run.

mod common;

use blake2::{Blake2b512, Digest};
use bytes::Bytes;
use common::TempDir;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use swp::file::{self, FileError, Progress, ReceiveOptions, SendReport};
use swp::proto::Config;
use swp::simnet::LinkConfig;
use swp::transport::SimNetwork;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

const CHUNK: u64 = 1 << 20;
/// Every attempt ends within this much virtual time.
const ATTEMPT_BOUND: Duration = Duration::from_secs(600);
/// A side whose peer failed on purpose (a Reset, a dropped task, a writer
/// that failed) learns it within this, whatever its dead-peer budget.
const TOLD_BOUND: Duration = Duration::from_secs(5);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn pick<T: Copy>(rng: &mut ChaCha8Rng, from: &[T]) -> T {
    from[rng.gen_range(0..from.len())]
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// `send_file` -> `recv_file_with`.
    File,
    /// A pipe read in pieces of `piece` bytes, pausing `pause` every
    /// `every` pieces -> `recv_file_with`.
    Pipe {
        piece: usize,
        every: u32,
        pause: Duration,
    },
    /// `send_bytes` -> `recv_bytes(limit)`.
    Memory { limit: u64 },
    /// `send_file` -> `recv_to_writer`, the writer failing once it has
    /// taken `fail_at` bytes.
    Writer { fail_at: Option<u64> },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Record {
    Right,
    OtherSize,
    Garbage,
    Missing,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Before {
    Nothing,
    /// A part of `len` bytes of the source, byte `flip` flipped.
    Part {
        len: u64,
        flip: Option<u64>,
        record: Record,
    },
    /// The destination exists: the source itself.
    Same,
    /// The destination exists: as long as the source, other bytes.
    SameSizeOther,
    /// The destination exists: `len` other bytes.
    OtherSize {
        len: u64,
    },
    /// The destination is a directory.
    Directory,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    None,
    Partition {
        at: u64,
    },
    AbortReceiver {
        at: u64,
    },
    AbortSender {
        at: u64,
    },
    DropReceiver {
        at: u64,
    },
    DropSender {
        at: u64,
    },
    /// The side's transfer future is dropped; its session is kept.
    CancelReceiver {
        at: u64,
    },
    CancelSender {
        at: u64,
    },
    /// A partition (both directions, or only towards one side) that heals
    /// after `lasts`, shorter than the smaller dead-peer budget, on a
    /// loss-free link: by §8's promise nothing may fail.
    Outage {
        at: u64,
        lasts: Duration,
        towards: Towards,
    },
    /// A third party that sees every packet floods both inboxes from the
    /// start with forgeries (`common::forge`: garbage, bit flips, wrong
    /// nonces, impossible acks and data, replays), in bursts of up to
    /// `burst` every 1-5 ms: nothing may fail, and each side must count
    /// what reached it as dropped, by its counter.
    Forger {
        burst: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Towards {
    Both,
    Sender,
    Receiver,
}

impl Fault {
    fn at(&self) -> Option<u64> {
        match *self {
            Fault::None | Fault::Forger { .. } => None,
            Fault::Partition { at }
            | Fault::AbortReceiver { at }
            | Fault::AbortSender { at }
            | Fault::DropReceiver { at }
            | Fault::DropSender { at }
            | Fault::CancelReceiver { at }
            | Fault::CancelSender { at }
            | Fault::Outage { at, .. } => Some(at),
        }
    }

    /// Whether the fault makes the attempt fail (an outage shorter than
    /// the budget must not).
    fn fails(&self) -> bool {
        !matches!(
            self,
            Fault::None | Fault::Outage { .. } | Fault::Forger { .. }
        )
    }
}

#[derive(Debug, Clone)]
struct SideCfg {
    max_payload: usize,
    window: (u64, u64),
    send_buffer: u64,
    batch: bool,
    keepalive: (Duration, u32),
}

#[derive(Debug, Clone)]
struct Case {
    seed: u64,
    mode: Mode,
    size: u64,
    name: &'static str,
    salt: u8,
    overwrite: bool,
    before: Before,
    fault: Fault,
    a: SideCfg,
    b: SideCfg,
    latency: Duration,
    jitter: Duration,
    loss: f64,
    duplicate: f64,
    reorder: f64,
    corrupt: f64,
}

fn side_cfg(rng: &mut ChaCha8Rng) -> SideCfg {
    let max_payload = pick(rng, &[64, 700, 1024, 4096, 16 << 10, 63 << 10]);
    let packets = pick(rng, &[1, 2, 8, 64, 1024]);
    let window_bytes = pick(
        rng,
        &[max_payload as u64, packets * max_payload as u64, 16 << 20],
    )
    .max(max_payload as u64);
    let send_buffer = pick(rng, &[max_payload as u64, 64 << 10, 16 << 20]).max(max_payload as u64);
    SideCfg {
        max_payload,
        window: (packets, window_bytes),
        send_buffer,
        batch: rng.gen_bool(0.7),
        keepalive: pick(rng, &[(ms(200), 5), (ms(1000), 10), (ms(3000), 10)]),
    }
}

impl Case {
    fn draw(seed: u64) -> Case {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xf11e_f11e);
        let a = side_cfg(&mut rng);
        let b = if rng.gen_bool(0.2) {
            a.clone()
        } else {
            side_cfg(&mut rng)
        };
        let lossy = rng.gen_bool(0.6);
        // Keep a case to some ten thousand packets, and to a few hundred
        // round trips where a window lets one packet fly.
        let small = a.max_payload.min(b.max_payload) as u64;
        let flight = a
            .window
            .0
            .min(b.window.0)
            .min(a.window.1.min(b.window.1) / small);
        let cap = (3 * CHUNK)
            .min(10_000 * small)
            .min(if lossy { 200 } else { 1000 } * flight.max(1) * small);
        let p = a.max_payload as u64;
        let edges = [
            0,
            1,
            2,
            p - 1,
            p,
            p + 1,
            CHUNK - 1,
            CHUNK,
            CHUNK + 1,
            2 * CHUNK,
            2 * CHUNK + 1,
        ];
        let size = match rng.gen_range(0..3) {
            0 => {
                let fits: Vec<u64> = edges.iter().copied().filter(|&s| s <= cap).collect();
                pick(&mut rng, &fits)
            }
            _ => rng.gen_range(0..=cap),
        };
        let mode = match rng.gen_range(0..10) {
            0..=4 => Mode::File,
            5 | 6 => Mode::Pipe {
                piece: pick(&mut rng, &[1, 100, 4096, 65536, 1 << 20]).min(size.max(1) as usize),
                every: pick(&mut rng, &[1, 7, 50, u32::MAX]),
                pause: pick(&mut rng, &[ms(0), ms(5), ms(300), Duration::from_secs(25)]),
            },
            7 => {
                let limit = match rng.gen_range(0..4) {
                    0 => size.saturating_sub(1),
                    1 => size,
                    2 => size + 1,
                    _ => u64::MAX,
                };
                Mode::Memory { limit }
            }
            _ => Mode::Writer {
                fail_at: rng.gen_bool(0.3).then(|| rng.gen_range(0..=size)),
            },
        };
        // A pipe of many tiny pieces with long pauses would take hours of
        // virtual time; keep its pauses to a few hundred.
        let mode = match mode {
            Mode::Pipe {
                piece,
                every,
                pause,
            } => {
                let pieces = size / piece as u64;
                let every = if pause >= Duration::from_secs(1) {
                    every.max((pieces / 3).max(1) as u32)
                } else {
                    every.max((pieces / 300).max(1) as u32)
                };
                Mode::Pipe {
                    piece,
                    every,
                    pause,
                }
            }
            m => m,
        };
        let before = if matches!(mode, Mode::File | Mode::Pipe { .. }) {
            match rng.gen_range(0..12) {
                0..=3 => Before::Nothing,
                4..=7 => {
                    let len = match rng.gen_range(0..4) {
                        0 => pick(&mut rng, &[0, 1, size.saturating_sub(1), size]),
                        1 => pick(&mut rng, &[CHUNK - 1, CHUNK, CHUNK + 1]).min(size),
                        _ => rng.gen_range(0..=size),
                    };
                    let flip = (len > 0 && rng.gen_bool(0.25)).then(|| rng.gen_range(0..len));
                    let record = match rng.gen_range(0..8) {
                        0 => Record::OtherSize,
                        1 => Record::Garbage,
                        2 => Record::Missing,
                        _ => Record::Right,
                    };
                    let len = if rng.gen_bool(0.05) { size + 1 } else { len };
                    Before::Part { len, flip, record }
                }
                8 => Before::Same,
                9 if size > 0 => Before::SameSizeOther,
                10 => Before::OtherSize {
                    len: pick(&mut rng, &[0, 1, size + 1, size / 2]),
                },
                11 => Before::Directory,
                _ => Before::Nothing,
            }
        } else {
            Before::Nothing
        };
        let fault = if !matches!(mode, Mode::Memory { .. }) && size > 0 && rng.gen_bool(0.35) {
            let at = rng.gen_range(0..size);
            match rng.gen_range(0..7) {
                0 => Fault::Partition { at },
                1 => Fault::AbortReceiver { at },
                2 => Fault::AbortSender { at },
                3 => Fault::DropReceiver { at },
                4 => Fault::DropSender { at },
                5 => Fault::CancelReceiver { at },
                _ => Fault::CancelSender { at },
            }
        } else if !lossy && size > 0 && rng.gen_bool(0.15) {
            // §8 promises it on loss-free paths only.
            let budget = |c: &SideCfg| c.keepalive.0 * c.keepalive.1;
            let shorter = budget(&a).min(budget(&b));
            Fault::Outage {
                at: rng.gen_range(0..size),
                lasts: shorter.mul_f64(pick(&mut rng, &[0.3, 0.7, 0.95, 0.99])),
                towards: pick(
                    &mut rng,
                    &[Towards::Both, Towards::Sender, Towards::Receiver],
                ),
            }
        } else if rng.gen_bool(0.15) {
            Fault::Forger {
                burst: pick(&mut rng, &[1, 4, 16, 64]),
            }
        } else {
            Fault::None
        };
        Case {
            seed,
            mode,
            size,
            name: pick(&mut rng, &["f.bin", "sub/dir/f.bin", "a name with spaces"]),
            salt: rng.r#gen(),
            overwrite: rng.gen_bool(0.3),
            before,
            fault,
            a,
            b,
            latency: Duration::from_micros(pick(&mut rng, &[0, 100, 1000, 5000, 20_000])),
            jitter: Duration::from_micros(pick(&mut rng, &[0, 0, 200, 2000])),
            loss: if lossy {
                pick(&mut rng, &[0.01, 0.05, 0.1])
            } else {
                0.0
            },
            duplicate: if lossy {
                pick(&mut rng, &[0.0, 0.02, 0.1])
            } else {
                0.0
            },
            reorder: if lossy {
                pick(&mut rng, &[0.0, 0.05, 0.2])
            } else {
                0.0
            },
            corrupt: if lossy {
                pick(&mut rng, &[0.0, 0.01])
            } else {
                0.0
            },
        }
    }

    fn network(&self, attempt: u64) -> SimNetwork {
        SimNetwork::new(
            self.seed.wrapping_mul(31).wrapping_add(attempt),
            LinkConfig::new()
                .latency(self.latency)
                .jitter(self.jitter)
                .loss(self.loss)
                .duplicate(self.duplicate)
                .reorder(self.reorder)
                .reorder_delay(self.jitter + ms(2))
                .corrupt(self.corrupt),
        )
    }

    fn config(&self, c: &SideCfg, local: &str, remote: &str) -> Config {
        Config::new(local, remote)
            .max_payload(c.max_payload)
            .window(c.window.0, c.window.1)
            .send_buffer(c.send_buffer)
            .batch_messages(c.batch)
            .keepalive(c.keepalive.0, c.keepalive.1)
            .connect(Duration::from_secs(2), 40)
    }

    /// The dead-peer budget of the side with the longer one.
    fn budget(&self) -> Duration {
        let b = |c: &SideCfg| c.keepalive.0 * c.keepalive.1;
        b(&self.a).max(b(&self.b))
    }

    fn source(&self) -> Vec<u8> {
        (0..self.size)
            .map(|i| swp::testkit::pattern_byte(i) ^ self.salt)
            .collect()
    }
}

/// What the directory makes of an attempt, by the resume rule.
#[derive(Debug, PartialEq)]
enum Expect {
    /// Received, having resumed from this offset.
    Resumed(u64),
    /// Refused: the destination exists.
    Exists,
    /// Fails once every byte is there: a directory cannot be replaced.
    NotReplaceable,
    /// Refused: larger than the receiver takes into memory.
    OverLimit,
}

fn model(dir: &Path, name: &str, src: &[u8], size_known: bool, overwrite: bool) -> Expect {
    let target = dir.join(name);
    let size = src.len() as u64;
    if let Ok(m) = std::fs::symlink_metadata(&target) {
        if size_known && m.is_file() && m.len() == size {
            if std::fs::read(&target).unwrap() == src {
                return Expect::Resumed(size);
            }
            return if overwrite {
                Expect::Resumed(0)
            } else {
                Expect::Exists
            };
        }
        if !overwrite {
            return Expect::Exists;
        }
        if m.is_dir() {
            return Expect::NotReplaceable;
        }
    }
    if !size_known {
        return Expect::Resumed(0);
    }
    let (part, record) = part_files(dir, name);
    let recorded = std::fs::read_to_string(record).ok();
    if recorded == Some(format!("{size}\n"))
        && let Ok(have) = std::fs::read(part)
        && have.len() as u64 <= size
        && have[..] == src[..have.len()]
    {
        return Expect::Resumed(have.len() as u64);
    }
    Expect::Resumed(0)
}

fn part_files(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let target = dir.join(name);
    let file = target.file_name().unwrap().to_str().unwrap().to_string();
    let parent = target.parent().unwrap().to_path_buf();
    (
        parent.join(format!(".{file}.swp-part")),
        parent.join(format!(".{file}.swp-part.meta")),
    )
}

/// Every regular file under `dir`, relative, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, d: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn prepare(case: &Case, dir: &Path, src: &[u8]) {
    let target = dir.join(case.name);
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    let (part, record) = part_files(dir, case.name);
    let size = case.size;
    let other: Vec<u8> = (0..size.max(1))
        .map(|i| (i as u8) ^ 0x5a ^ case.salt)
        .collect();
    match case.before {
        Before::Nothing => {}
        Before::Part {
            len,
            flip,
            record: r,
        } => {
            let mut bytes: Vec<u8> = if len <= size {
                src[..len as usize].to_vec()
            } else {
                let mut v = src.to_vec();
                v.resize(len as usize, 0xee);
                v
            };
            if let Some(f) = flip {
                bytes[f as usize] ^= 0x01;
            }
            std::fs::write(&part, bytes).unwrap();
            match r {
                Record::Right => std::fs::write(&record, format!("{size}\n")).unwrap(),
                Record::OtherSize => std::fs::write(&record, format!("{}\n", size + 7)).unwrap(),
                Record::Garbage => std::fs::write(&record, "not a size\n").unwrap(),
                Record::Missing => {}
            }
        }
        Before::Same => std::fs::write(&target, src).unwrap(),
        Before::SameSizeOther => {
            let mut v = src.to_vec();
            let i = v.len() / 2;
            v[i] ^= 0x80;
            std::fs::write(&target, v).unwrap()
        }
        Before::OtherSize { len } => {
            let mut v = other.clone();
            v.resize(len as usize, 0x33);
            std::fs::write(&target, v).unwrap()
        }
        Before::Directory => std::fs::create_dir_all(target.join("inside")).unwrap(),
    }
}

/// A writer into memory that fails once it has taken `fail_at` bytes.
struct TestWriter {
    got: Vec<u8>,
    fail_at: Option<u64>,
    /// When it first refused a write.
    failed: Option<Instant>,
}

impl AsyncWrite for TestWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if let Some(f) = self.fail_at
            && self.got.len() as u64 + buf.len() as u64 > f
        {
            self.failed.get_or_insert_with(Instant::now);
            return Poll::Ready(Err(std::io::Error::other("the test's disk is full")));
        }
        self.got.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// How one side of an attempt ended, and when (virtual time).
type Ended<T> = Option<(Result<T, FileError>, Instant)>;

/// What the sender says it sent.
enum Sent {
    Report(SendReport),
    /// `send_bytes` reports the metadata only.
    Meta(file::FileMeta),
}

impl Sent {
    fn meta(&self) -> &file::FileMeta {
        match self {
            Sent::Report(r) => &r.meta,
            Sent::Meta(m) => m,
        }
    }
}

enum Got {
    Saved(PathBuf),
    Bytes(Bytes),
}

/// The receiver's directory before an attempt.
struct Snapshot {
    files: Vec<String>,
    /// The part's bytes, if there is one.
    part: Option<Vec<u8>>,
}

struct Attempt {
    /// When it started (virtual time).
    start: Instant,
    sent: Ended<Sent>,
    got: Ended<(file::FileMeta, Got)>,
    /// When the fault struck, if the sender got as far as `at`.
    struck: Option<Instant>,
    /// When the receiver's writer failed.
    writer_failed: Option<Instant>,
    /// The largest message the sender, and the receiver, can send.
    most: (u64, u64),
    /// Resets towards the sender and towards the receiver: sent, and
    /// delivered (a side none of whose Resets arrived could not be told).
    resets: Arc<Mutex<Resets>>,
    /// What a hostile third party did, if there was one.
    forgeries: Option<Forgeries>,
}

/// A hostile third party's work and what the sides made of it.
struct Forgeries {
    /// What it forged, as it says.
    sent: common::forge::Forged,
    /// Its forgeries that reached a side: where, when, what they are.
    landed: Vec<(swp::simnet::InboxId, Instant, Landed)>,
    /// Each side's inbox, and when its transfer ended with what it had
    /// dropped by then.
    sides: [(
        swp::simnet::InboxId,
        Option<(Instant, swp::proto::DropStats)>,
    ); 2],
}

impl Forgeries {
    /// Every forgery that reached a side before its transfer ended was
    /// dropped, by the counter that must show it (a replay is a duplicate,
    /// counted nowhere in particular).
    fn check(&self) -> Result<(), String> {
        for (side, (inbox, end)) in ["sender", "receiver"].iter().zip(&self.sides) {
            let Some((end, d)) = end else { continue };
            let count = |k: Landed| {
                self.landed
                    .iter()
                    .filter(|(to, t, kind)| to == inbox && t < end && *kind == k)
                    .count() as u64
            };
            let (invalid, foreign, impossible) = (
                count(Landed::Invalid),
                count(Landed::Foreign),
                count(Landed::Impossible),
            );
            if d.invalid < invalid
                || d.foreign < foreign
                || d.impossible + d.beyond_window < impossible
            {
                return Err(format!(
                    "the {side} was sent {invalid} invalid, {foreign} foreign and {impossible} \
                     impossible forgeries but dropped only {d:?} (forger: {:?})",
                    self.sent
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Resets {
    to_sender: (u32, u32),
    to_receiver: (u32, u32),
    /// Why the others were lost (both ways): loss, partition, overflow.
    lost: (u32, u32, u32),
    /// A fingerprint of every message sent: when, which way, its kind and
    /// size (not its bytes: they carry wall-clock times; the schedule must
    /// not vary).
    trace: u64,
}

/// Counts the Resets the network carries each way, sent and delivered
/// intact (a corrupted copy cannot be believed, so it tells nobody), and
/// fingerprints all the traffic.
struct ResetTap {
    sender: swp::simnet::InboxId,
    counts: Arc<Mutex<Resets>>,
    sent: Vec<Bytes>,
    /// A hostile third party's inbox, and where it gets its copies of
    /// everything else sent.
    attacker: Option<(swp::simnet::InboxId, Arc<Mutex<Vec<Bytes>>>)>,
    /// Its forgeries that reached a side: where, when, and which counter
    /// must show them.
    landed: Arc<Mutex<Vec<(swp::simnet::InboxId, Instant, Landed)>>>,
    /// Every real packet sent (with an attacker: its replays are these).
    real: std::collections::HashSet<Bytes>,
}

/// What a forgery that reached a side is, by its own bytes (not by what
/// the forger says it made).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Landed {
    Invalid,
    Foreign,
    Impossible,
    /// A copy of a real packet: a duplicate, counted nowhere in particular.
    Replay,
}

impl Landed {
    fn of(payload: &Bytes, real: &std::collections::HashSet<Bytes>) -> Landed {
        if real.contains(payload) {
            return Landed::Replay;
        }
        match swp::proto::codec::decode(payload) {
            Err(_) => Landed::Invalid,
            Ok(p) if p.dest_nonce.starts_with("forged") => Landed::Foreign,
            // Real nonces, content no correct peer sends.
            Ok(_) => Landed::Impossible,
        }
    }
}

impl ResetTap {
    fn is_reset(env: &swp::simnet::Envelope) -> bool {
        swp::proto::codec::decode(&env.payload).is_ok_and(|p| p.kind == swp::proto::Kind::Reset)
    }

    fn count(&mut self, env: &swp::simnet::Envelope, delivered: bool) {
        if !Self::is_reset(env) {
            return;
        }
        if !delivered {
            self.sent.push(env.payload.clone());
        } else if !self.sent.contains(&env.payload) {
            return; // corrupted on the way
        }
        let mut c = self.counts.lock().unwrap();
        let way = if env.to == self.sender {
            &mut c.to_sender
        } else {
            &mut c.to_receiver
        };
        if delivered {
            way.1 += 1;
        } else {
            way.0 += 1;
        }
    }
}

impl swp::simnet::Monitor for ResetTap {
    fn on_send(&mut self, env: &swp::simnet::Envelope, now: Duration) {
        {
            use std::hash::{Hash, Hasher};
            let mut c = self.counts.lock().unwrap();
            let mut h = std::hash::DefaultHasher::new();
            c.trace.hash(&mut h);
            (now, env.to == self.sender, env.payload.len()).hash(&mut h);
            swp::proto::codec::decode(&env.payload)
                .map(|p| p.kind as u8)
                .ok()
                .hash(&mut h);
            c.trace = h.finish();
        }
        match &self.attacker {
            Some((x, _)) if env.from == *x => return,
            Some((_, copies)) => {
                copies.lock().unwrap().push(env.payload.clone());
                self.real.insert(env.payload.clone());
            }
            None => {}
        }
        self.count(env, false);
    }
    fn on_deliver(&mut self, env: &swp::simnet::Envelope, _: Duration) {
        if let Some((x, _)) = &self.attacker
            && env.from == *x
        {
            let kind = Landed::of(&env.payload, &self.real);
            self.landed
                .lock()
                .unwrap()
                .push((env.to, Instant::now(), kind));
            return;
        }
        self.count(env, true);
    }
    fn on_drop(&mut self, env: &swp::simnet::Envelope, why: swp::simnet::DropReason, _: Duration) {
        use swp::simnet::DropReason;
        let forged = self.attacker.as_ref().is_some_and(|(x, _)| env.from == *x);
        if forged || !Self::is_reset(env) {
            return;
        }
        let mut c = self.counts.lock().unwrap();
        match why {
            DropReason::Loss => c.lost.0 += 1,
            DropReason::Partition => c.lost.1 += 1,
            _ => c.lost.2 += 1,
        }
    }
}

const RECEIVER_REASON: &str = "the test's receiver gives up";
const SENDER_REASON: &str = "the test's sender gives up";

async fn attempt(
    case: &Case,
    n: u64,
    dir: &Path,
    src_path: &Path,
    src: &[u8],
    fault: Fault,
) -> Attempt {
    let start = Instant::now();
    let net = case.network(n);
    let (a_in, b_in) = (format!("A{n}"), format!("B{n}"));
    let (mut a, mut b) = swp::testkit::session_pair(
        &net,
        case.config(&case.a, &a_in, &b_in),
        case.config(&case.b, &b_in, ""),
    )
    .await
    .unwrap_or_else(|e| panic!("sessions over SimNet start: {e}"));
    let (a_abort, b_abort) = (a.abort_handle(), b.abort_handle());
    let resets = Arc::new(Mutex::new(Resets::default()));
    let (ia, ib) = (
        net.with(|x| x.lookup(&a_in).unwrap()),
        net.with(|x| x.lookup(&b_in).unwrap()),
    );
    // A hostile third party, from the start, if the case has one.
    let landed = Arc::new(Mutex::new(Vec::new()));
    let copies = Arc::new(Mutex::new(Vec::new()));
    let evil = match fault {
        Fault::Forger { burst } => Some((net.transport(&format!("X{n}"), 1024), burst)),
        _ => None,
    };
    let tap = ResetTap {
        sender: ia,
        counts: resets.clone(),
        sent: Vec::new(),
        attacker: evil.as_ref().map(|(x, _)| (x.inbox(), copies.clone())),
        landed: landed.clone(),
        real: Default::default(),
    };
    net.with(|x| x.set_monitor(Box::new(tap)));
    let halt = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let attacker = evil.map(|(x, burst)| {
        let (halt, names) = (halt.clone(), [a_in.clone(), b_in.clone()]);
        let seed = case.seed ^ (n << 32) ^ 0xF0_96E5;
        tokio::spawn(async move {
            use swp::transport::Transport;
            let mut forger = common::forge::Forger::new(seed);
            while !halt.load(std::sync::atomic::Ordering::SeqCst) {
                for raw in std::mem::take(&mut *copies.lock().unwrap()) {
                    forger.saw(&raw);
                }
                let to = &names[forger.rng().gen_range(0..2usize)];
                for _ in 0..forger.rng().gen_range(1..=burst) {
                    let Some(f) = forger.forge(to) else { break };
                    let _ = x.publish(to, f).await;
                }
                let pause = forger.rng().gen_range(1000..5000);
                tokio::time::sleep(Duration::from_micros(pause)).await;
            }
            forger.total()
        })
    });
    // What each side can deliver: its send buffer, the peer's window in
    // bytes and in packets of its own size.
    let most = |own: &SideCfg, peer: &SideCfg| {
        own.send_buffer
            .min(peer.window.1)
            .min(peer.window.0 * own.max_payload as u64)
    };
    let most = (most(&case.a, &case.b), most(&case.b, &case.a));
    assert_eq!(
        (a.max_message_size(), b.max_message_size()),
        (Some(most.0), Some(most.1)),
        "the largest message each side can send"
    );
    let (ptx, mut prx) = watch::channel(Progress::default());
    let mode = case.mode;
    let src_path = src_path.to_path_buf();
    let data = Bytes::copy_from_slice(src);
    let name = case.name.to_string();
    let (cancel_a, cancelled_a) = tokio::sync::oneshot::channel::<()>();
    let (cancel_b, cancelled_b) = tokio::sync::oneshot::channel::<()>();
    // Resolves when the test cancels a side's transfer (never if it does not).
    let cancelled = |rx: tokio::sync::oneshot::Receiver<()>| async move {
        if rx.await.is_err() {
            std::future::pending::<()>().await
        }
    };
    let sender = tokio::spawn(async move {
        let transfer = async {
            match mode {
                Mode::File | Mode::Writer { .. } => {
                    file::send_file_as(&mut a, &src_path, &name, Some(&ptx))
                        .await
                        .map(Sent::Report)
                }
                Mode::Pipe {
                    piece,
                    every,
                    pause,
                } => {
                    let (mut w, r) = tokio::io::duplex(64 << 10);
                    let feed = async move {
                        for (i, c) in data.chunks(piece.max(1)).enumerate() {
                            if w.write_all(c).await.is_err() {
                                return;
                            }
                            if (i as u32 + 1).is_multiple_of(every) && !pause.is_zero() {
                                tokio::time::sleep(pause).await;
                            }
                        }
                        let _ = w.shutdown().await;
                    };
                    // The pipe's reading end goes when the sender is done, so
                    // a feed blocked on a full pipe ends too (as a writer to a
                    // closed pipe does).
                    let send = async {
                        let mut r = r;
                        file::send_reader(&mut a, &mut r, &name, Some(&ptx)).await
                    };
                    // The feed is the program's input, not the sender: a
                    // sender that is done does not wait for it.
                    let feed = tokio::spawn(feed);
                    let r = send.await;
                    feed.abort();
                    r.map(Sent::Report)
                }
                Mode::Memory { .. } => file::send_bytes(&mut a, &name, data).await.map(Sent::Meta),
            }
        };
        // A cancelled transfer is dropped; its session lives on.
        let r = tokio::select! {
            r = transfer => Some(r),
            () = cancelled(cancelled_a) => None,
        };
        // A side that ended drops its session, as a program does; a
        // cancelled one keeps it open, as a caller that goes on would.
        let dropped = a.stats().protocol.dropped;
        let keep = r.is_none().then_some(a);
        (r, Instant::now(), keep, dropped)
    });
    let opts = ReceiveOptions::new().overwrite(case.overwrite);
    let dir2 = dir.to_path_buf();
    let (wtx, wrx) = tokio::sync::oneshot::channel();
    let receiver = tokio::spawn(async move {
        let transfer = async {
            match mode {
                Mode::File | Mode::Pipe { .. } => file::recv_file_with(&mut b, &dir2, &opts, None)
                    .await
                    .map(|(m, p)| (m, Got::Saved(p))),
                Mode::Memory { limit } => file::recv_bytes(&mut b, limit)
                    .await
                    .map(|(m, d)| (m, Got::Bytes(d))),
                Mode::Writer { fail_at } => {
                    let mut w = TestWriter {
                        got: Vec::new(),
                        fail_at,
                        failed: None,
                    };
                    let r = file::recv_to_writer(&mut b, &mut w, None).await;
                    let _ = wtx.send(w.failed);
                    r.map(|m| (m, Got::Bytes(Bytes::from(w.got))))
                }
            }
        };
        let r = tokio::select! {
            r = transfer => Some(r),
            () = cancelled(cancelled_b) => None,
        };
        // A side that ended drops its session, as a program does; a
        // cancelled one keeps it open, as a caller that goes on would.
        let dropped = b.stats().protocol.dropped;
        let keep = r.is_none().then_some(b);
        (r, Instant::now(), keep, dropped)
    });
    // The fault, once the sender has handed `at` bytes to its session.
    let mut struck = None;
    let (mut sender, mut receiver) = (Some(sender), Some(receiver));
    if let Some(at) = fault.at() {
        let reached = async {
            loop {
                if prx.borrow_and_update().bytes_sent >= at.max(1) {
                    return true;
                }
                if prx.changed().await.is_err() {
                    return false;
                }
            }
        };
        if reached.await {
            struck = Some(Instant::now());
            match fault {
                Fault::Partition { .. } => net.with(|x| x.partition(ia, ib)),
                Fault::AbortReceiver { .. } => {
                    b_abort.abort_with(RECEIVER_REASON);
                }
                Fault::AbortSender { .. } => {
                    a_abort.abort_with(SENDER_REASON);
                }
                Fault::DropReceiver { .. } => receiver.take().unwrap().abort(),
                Fault::DropSender { .. } => sender.take().unwrap().abort(),
                Fault::CancelReceiver { .. } => {
                    let _ = cancel_b.send(());
                }
                Fault::CancelSender { .. } => {
                    let _ = cancel_a.send(());
                }
                Fault::Outage { lasts, towards, .. } => {
                    let cut = move |x: &mut swp::simnet::SimNet, on: bool| match (towards, on) {
                        (Towards::Both, true) => x.partition(ia, ib),
                        (Towards::Both, false) => x.heal(ia, ib),
                        (Towards::Sender, on) => x.set_black_hole(ia, on),
                        (Towards::Receiver, on) => x.set_black_hole(ib, on),
                    };
                    net.with(|x| cut(x, true));
                    // The outage's length is the fault itself, in virtual
                    // time: it heals on its own while both sides go on.
                    let net = net.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(lasts).await;
                        net.with(|x| cut(x, false));
                    });
                }
                Fault::None | Fault::Forger { .. } => unreachable!(),
            }
        }
    }
    // Both sessions live until both sides are done (a cancelled side's
    // session stays open, as a caller's would).
    let (sent, a, a_dropped) = match sender {
        Some(s) => {
            let (r, t, a, d) = s.await.unwrap();
            (r.map(|r| (r, t)), a, Some((t, d)))
        }
        None => (None, None, None),
    };
    let (got, b, b_dropped) = match receiver {
        Some(s) => {
            let (r, t, b, d) = s.await.unwrap();
            (r.map(|r| (r, t)), b, Some((t, d)))
        }
        None => (None, None, None),
    };
    drop((a, b));
    let forgeries = match attacker {
        Some(task) => {
            halt.store(true, std::sync::atomic::Ordering::SeqCst);
            Some(Forgeries {
                sent: task.await.unwrap(),
                landed: std::mem::take(&mut *landed.lock().unwrap()),
                sides: [(ia, a_dropped), (ib, b_dropped)],
            })
        }
        None => None,
    };
    let writer_failed = wrx.await.unwrap_or(None);
    Attempt {
        start,
        sent,
        got,
        struck,
        writer_failed,
        most,
        resets,
        forgeries,
    }
}

fn digest(d: &[u8]) -> [u8; 64] {
    let mut out = [0u8; 64];
    out.copy_from_slice(&Blake2b512::digest(d));
    out
}

/// Checks one attempt against the model; returns whether it succeeded.
///
/// The part a dropped or cancelled receiver left holds exactly what it had
/// written when it went: over SimNet the file layer's write jobs run in
/// line, so none finishes after the drop (over a real transport the last
/// one may, and a resume then starts later than a model of the part taken
/// at once would say, never earlier).
fn check(
    case: &Case,
    dir: &Path,
    src: &[u8],
    expect: &Expect,
    att: &Attempt,
    before: &Snapshot,
) -> Result<bool, String> {
    if let Some(f) = &att.forgeries {
        f.check()?;
    }
    let (start, before_files) = (att.start, &before.files[..]);
    let show = |e: &Result<_, FileError>| match e {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("error: {e}"),
    };
    // Every attempt ends in bounded virtual time.
    for (who, t) in [
        ("sender", att.sent.as_ref().map(|s| s.1)),
        ("receiver", att.got.as_ref().map(|g| g.1)),
    ] {
        if let Some(t) = t
            && t - start > ATTEMPT_BOUND
        {
            return Err(format!("the {who} took {:?}", t - start));
        }
    }
    let target = dir.join(case.name);
    // Windows too small for the exchange's control messages: refused
    // before any data, by the side that finds it, saying what to raise;
    // the other side learns at once.
    let too_small = |r: Option<&FileError>, most: u64| -> Result<bool, String> {
        match r {
            Some(FileError::WindowTooSmall { needed, most: m }) => {
                if *m != most || *needed <= *m || *needed > 400 {
                    return Err(format!(
                        "a false refusal: needs {needed}, at most {m} (really {most})"
                    ));
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    };
    let sender_small = too_small(
        att.sent.as_ref().and_then(|s| s.0.as_ref().err()),
        att.most.0,
    )?;
    let receiver_small = too_small(
        att.got.as_ref().and_then(|g| g.0.as_ref().err()),
        att.most.1,
    )?;
    if sender_small || receiver_small {
        for (who, end) in [
            ("sender", att.sent.as_ref().map(|s| (s.0.is_ok(), s.1))),
            ("receiver", att.got.as_ref().map(|g| (g.0.is_ok(), g.1))),
        ] {
            if let Some((ok, t)) = end {
                if ok {
                    return Err(format!("the {who} succeeded although its peer refused"));
                }
                if t - start > TOLD_BOUND {
                    return Err(format!("the {who} ended {:?} after the start", t - start));
                }
            }
        }
        if receiver_small {
            let se = att.sent.as_ref().unwrap().0.as_ref().err().unwrap();
            if !se.to_string().contains("a file transfer needs") {
                return Err(format!("the sender was not told why: {se}"));
            }
        }
        if files_under(dir) != before_files {
            return Err("a refusal changed the directory".into());
        }
        return Ok(false);
    }
    let struck = att.struck.is_some() && case.fault.fails();
    let writer_fails = att.writer_failed.is_some();
    if !struck && !writer_fails {
        let (sent, _) = att.sent.as_ref().ok_or("the sender is missing")?;
        let (got, _) = att.got.as_ref().ok_or("the receiver is missing")?;
        match expect {
            Expect::Resumed(from) => {
                let report = sent
                    .as_ref()
                    .map_err(|e| format!("sender failed: {e}; receiver {}", show(got)))?;
                let (meta, saved) = got.as_ref().map_err(|e| format!("receiver failed: {e}"))?;
                if report.meta() != meta {
                    return Err(format!("metadata differ: {:?} vs {meta:?}", report.meta()));
                }
                if meta.size != case.size || meta.blake2b != digest(src) || meta.name != case.name {
                    return Err(format!("wrong metadata {meta:?}"));
                }
                if let Sent::Report(report) = report
                    && (report.resumed_from != *from
                        || report.bytes_sent != case.size - report.resumed_from)
                {
                    return Err(format!(
                        "resumed from {} and sent {}, the model says from {from}",
                        report.resumed_from, report.bytes_sent
                    ));
                }
                match saved {
                    Got::Saved(p) => {
                        if p != &target {
                            return Err(format!("saved as {}", p.display()));
                        }
                        if std::fs::read(p).map_err(|e| e.to_string())? != src {
                            return Err("the saved file differs from the source".into());
                        }
                        let files = files_under(dir);
                        let others: Vec<_> = files
                            .iter()
                            .filter(|f| dir.join(f) != target && !f.ends_with("inside"))
                            .collect();
                        if !others.is_empty() {
                            return Err(format!("left beside the file: {others:?}"));
                        }
                    }
                    Got::Bytes(b) => {
                        if b[..] != src[..] {
                            return Err(format!(
                                "{} bytes arrived, they differ from the source",
                                b.len()
                            ));
                        }
                    }
                }
                Ok(true)
            }
            Expect::Exists => {
                let e = got
                    .as_ref()
                    .err()
                    .ok_or("the receiver replaced an existing file")?;
                if !matches!(e, FileError::Exists { .. }) {
                    return Err(format!("receiver: {e}, expected 'exists'"));
                }
                let se = sent
                    .as_ref()
                    .err()
                    .ok_or("the sender succeeded although the receiver refused")?;
                if !se.to_string().contains("already exists") {
                    return Err(format!("the sender was not told why: {se}"));
                }
                if files_under(dir) != before_files {
                    return Err(format!(
                        "a refusal changed the directory: {:?} -> {:?}",
                        before_files,
                        files_under(dir)
                    ));
                }
                Ok(false)
            }
            Expect::OverLimit => {
                let e = got
                    .as_ref()
                    .err()
                    .ok_or("a file over the memory limit was received")?;
                let se = sent
                    .as_ref()
                    .err()
                    .ok_or("the sender succeeded over the limit")?;
                if !e.to_string().contains("allowed in memory")
                    || !se.to_string().contains("allowed in memory")
                {
                    return Err(format!("over the limit: receiver '{e}', sender '{se}'"));
                }
                Ok(false)
            }
            Expect::NotReplaceable => {
                let e = got
                    .as_ref()
                    .err()
                    .ok_or("a directory was replaced by a file")?;
                let se = sent
                    .as_ref()
                    .err()
                    .ok_or("the sender succeeded although the receiver failed")?;
                // In the receiver's words: by its failure Verdict, or by
                // its Reset when an outage swallowed the Verdict.
                if !se.to_string().contains(&e.to_string()) {
                    return Err(format!("the sender was not told why: {se} (receiver: {e})"));
                }
                if !target.is_dir() {
                    return Err("the directory is gone".into());
                }
                Ok(false)
            }
        }
    } else {
        // A fault struck (or the writer failed): both sides fail, the side
        // that did not fail on purpose learns it in time, nothing false is
        // presented.
        // The first failure (the fault, the writer's) starts the clock;
        // a side that ends with an error names one of the failures that
        // happened.
        let fault_at = att.struck.filter(|_| case.fault.fails());
        let first_at = [fault_at, att.writer_failed]
            .into_iter()
            .flatten()
            .min()
            .unwrap();
        // A partition keeps any story from the other side. So does a lossy
        // link or an outage that swallowed every Reset the failing side
        // sent (it sent at least one: a side that says nothing is a
        // defect): the side then ends by its dead-peer rule, which is the
        // truth as it sees it.
        let partition = matches!(case.fault, Fault::Partition { .. }) && fault_at.is_some();
        let seen = *att.resets.lock().unwrap();
        let unheard = |(sent, delivered): (u32, u32)| partition || (sent > 0 && delivered == 0);
        let (sender_unheard, receiver_unheard) =
            (unheard(seen.to_sender), unheard(seen.to_receiver));
        let long = case.budget() * 2 + Duration::from_secs(30);
        let late = |t: Instant, unheard: bool| {
            t.saturating_duration_since(first_at) > if unheard { long } else { TOLD_BOUND }
        };
        // What each side may be told: the other side's failures, and a
        // side that aborts is told its own reason.
        let (mut to_sender, mut to_receiver) = (vec![], vec![]);
        if writer_fails {
            to_sender.push("the test's disk is full");
            to_receiver.push("the test's disk is full");
        }
        match case.fault {
            Fault::AbortReceiver { .. } if fault_at.is_some() => {
                to_sender.push(RECEIVER_REASON);
                to_receiver.push(RECEIVER_REASON);
            }
            Fault::AbortSender { .. } if fault_at.is_some() => {
                to_receiver.push(SENDER_REASON);
                to_sender.push(SENDER_REASON);
            }
            _ => {}
        }
        // What the receiver finds by itself may come first, and is the
        // truth too.
        let refusal = match expect {
            Expect::Exists => Some("already exists"),
            Expect::OverLimit => Some("allowed in memory"),
            Expect::NotReplaceable => Some("Is a directory"),
            _ => None,
        };
        let told = |e: &FileError, reasons: &[&str], unheard: bool| {
            reasons.is_empty()
                || reasons.iter().any(|r| e.to_string().contains(r))
                || refusal.is_some_and(|r| e.to_string().contains(r))
                || (unheard && e.to_string().contains("peer unreachable"))
        };
        // A side that failed learnt it in time and was told why.
        let failed_well = |who: &str,
                           e: &FileError,
                           t: Instant,
                           reasons: &[&str],
                           unheard: bool|
         -> Result<(), String> {
            if late(t, unheard) {
                return Err(format!(
                    "the {who} learnt it {:?} after the first failure ({seen:?}): {e}",
                    t.saturating_duration_since(first_at)
                ));
            }
            if !told(e, reasons, unheard) {
                return Err(format!(
                    "the {who} was not told why ({reasons:?}, {seen:?}): {e}"
                ));
            }
            Ok(())
        };
        let whole = || target.is_file() && std::fs::read(&target).unwrap() == src;
        if let Some((r, t)) = &att.sent {
            match r {
                // Only a fault that struck after the receiver had it all
                // can leave the sender a success, and then the file must
                // be there, whole.
                Ok(rep) if !matches!(case.mode, Mode::Writer { .. }) && !whole() => {
                    return Err(format!(
                        "the sender succeeded ({:?}) but no whole file is there",
                        rep.meta()
                    ));
                }
                Ok(_) if writer_fails => {
                    return Err("the sender succeeded though the writer failed".into());
                }
                Ok(_) => {}
                Err(e) => failed_well("sender", e, *t, &to_sender, sender_unheard)?,
            }
        }
        if let Some((r, t)) = &att.got {
            match r {
                Ok(_) if !matches!(case.mode, Mode::Writer { .. }) && !whole() => {
                    return Err("the receiver succeeded but the file is not whole".into());
                }
                Ok(_) => {}
                Err(e) => failed_well("receiver", e, *t, &to_receiver, receiver_unheard)?,
            }
        }
        // Nothing false on disk: the destination is the source or what was
        // there before; a part holds only the source's first bytes or what
        // was there before.
        if matches!(case.mode, Mode::File | Mode::Pipe { .. }) {
            if let Ok(m) = std::fs::symlink_metadata(&target) {
                let whole = m.is_file() && std::fs::read(&target).unwrap() == src;
                if !whole && !before_files.iter().any(|f| dir.join(f) == target) && !m.is_dir() {
                    return Err("a destination that is not the source appeared".into());
                }
            }
            let (part, _) = part_files(dir, case.name);
            if let Ok(have) = std::fs::read(&part) {
                let prefix = have.len() <= src.len() && have[..] == src[..have.len()];
                let untouched = before.part.as_ref() == Some(&have);
                if !prefix && !untouched {
                    return Err(format!(
                        "a part of {} bytes that is neither the source's beginning nor what was there",
                        have.len()
                    ));
                }
            }
        }
        Ok(false)
    }
}

/// Runs a case's attempts; the fingerprint of each one's traffic.
/// What a case that kept every promise did.
#[derive(Debug, PartialEq)]
struct Ran {
    /// The fingerprint of each attempt's traffic.
    traces: Vec<u64>,
    /// With a hostile third party: how many of its forgeries (other than
    /// replays) reached a side.
    landed: Option<u64>,
}

/// Its files live in a directory of their own, named after `tag`.
async fn run_case(case: &Case, tag: &str) -> Result<Ran, String> {
    let tmp = TempDir::new(&format!("{tag}-{}", case.seed));
    let src = case.source();
    let src_path = tmp.0.join("source.bin");
    std::fs::write(&src_path, &src).unwrap();
    let dir = tmp.0.join("out");
    std::fs::create_dir_all(&dir).unwrap();
    prepare(case, &dir, &src);
    let size_known = !matches!(case.mode, Mode::Pipe { .. });
    let mut fault = case.fault;
    let mut ran = Ran {
        traces: Vec::new(),
        landed: None,
    };
    for n in 0..2 {
        let before = Snapshot {
            files: files_under(&dir),
            part: std::fs::read(part_files(&dir, case.name).0).ok(),
        };
        let expect = match case.mode {
            Mode::File | Mode::Pipe { .. } => {
                model(&dir, case.name, &src, size_known, case.overwrite)
            }
            Mode::Memory { limit } if case.size > limit => Expect::OverLimit,
            _ => Expect::Resumed(0),
        };
        let att = tokio::time::timeout(
            ATTEMPT_BOUND + Duration::from_secs(60),
            attempt(case, n, &dir, &src_path, &src, fault),
        )
        .await
        .map_err(|_| format!("attempt {n} did not end within {ATTEMPT_BOUND:?} of virtual time"))?;
        let ok = check(case, &dir, &src, &expect, &att, &before).map_err(|e| {
            // Both sides' ends, in virtual time since the attempt began.
            let end = |r: Option<(String, Instant)>| match r {
                Some((r, t)) => format!("{r} at {:?}", t - att.start),
                None => "gone".into(),
            };
            let says = |r: Result<(), &FileError>| match r {
                Ok(()) => "ok".to_string(),
                Err(e) => format!("'{e}'"),
            };
            let sender = att.sent.as_ref().map(|(r, t)| (says(r.as_ref().map(|_| ())), *t));
            let receiver = att.got.as_ref().map(|(r, t)| (says(r.as_ref().map(|_| ())), *t));
            let struck = att.struck.map(|t| t - att.start);
            format!(
                "attempt {n}: {e} (expected {expect:?}; sender {}, receiver {}, fault struck at {struck:?})",
                end(sender),
                end(receiver)
            )
        })?;
        ran.traces.push(att.resets.lock().unwrap().trace);
        if let Some(f) = &att.forgeries {
            let landed = f.landed.iter().filter(|l| l.2 != Landed::Replay).count();
            *ran.landed.get_or_insert(0) += landed as u64;
        }
        let again = att.struck.is_some() && case.fault.fails() && !ok;
        if !again || !matches!(case.mode, Mode::File) {
            return Ok(ran);
        }
        fault = Fault::None;
    }
    Ok(ran)
}

/// Runs one seed; a failure says what broke, with the seed and the case.
fn run(seed: u64) -> Result<Ran, String> {
    run_tagged(seed, "file-random")
}

fn run_tagged(seed: u64, tag: &str) -> Result<Ran, String> {
    let case = Case::draw(seed);
    if std::env::var("SWP_FILE_SHOW").is_ok() {
        eprintln!("{case:#?}");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(run_case(&case, tag)).map_err(|e| {
        format!("seed {seed} failed: {e}\nSWP_FILE_CASE={seed} reproduces it\n{case:#?}")
    })
}

#[test]
fn file_transfers_across_the_parameter_space_keep_every_promise() {
    if let Ok(s) = std::env::var("SWP_FILE_CASE") {
        match run(s.parse().expect("SWP_FILE_CASE is a seed")) {
            Ok(ran) => eprintln!("traffic fingerprints: {:016x?}", ran.traces),
            Err(e) => panic!("{e}"),
        }
        return;
    }
    let n: u64 = std::env::var("SWP_FILE_CASES")
        .ok()
        .map(|v| v.parse().expect("SWP_FILE_CASES is a number"))
        .unwrap_or(1000);
    let first: u64 = std::env::var("SWP_FILE_FIRST")
        .ok()
        .map(|v| v.parse().expect("SWP_FILE_FIRST is a number"))
        .unwrap_or(0);
    // Every seed runs; the failures are listed together, the first in full.
    let (mut failed, mut flooded) = (Vec::new(), Vec::new());
    for seed in first..first + n {
        match run(seed) {
            Ok(ran) => flooded.extend(ran.landed),
            Err(e) => failed.push(e),
        }
    }
    if !failed.is_empty() {
        let heads: Vec<&str> = failed.iter().map(|f| f.lines().next().unwrap()).collect();
        panic!(
            "{} of {n} cases failed:\n{}\n\nthe first:\n{}",
            failed.len(),
            heads.join("\n"),
            failed[0]
        );
    }
    // The flood must reach the sides often enough to prove something (a
    // tiny transfer can end before the forger has seen a packet).
    let reached = flooded.iter().filter(|&&l| l > 0).count();
    assert!(
        flooded.len() < 20 || reached * 2 >= flooded.len(),
        "the hostile third party reached a side in only {reached} of its {} cases",
        flooded.len()
    );
}

/// A seed replays its run: the same packets, each way, at the same virtual
/// instants, every time (so a failing seed reproduces its failure). The
/// file layer's disk and hashing jobs are what threatens it: on blocking
/// threads their finishing moments reorder the tasks of one instant (a
/// quarter of these attempts then differed between two runs).
#[test]
fn a_seed_replays_its_run_packet_for_packet() {
    let n: u64 = std::env::var("SWP_FILE_REPLAYS")
        .ok()
        .map(|v| v.parse().expect("SWP_FILE_REPLAYS is a number"))
        .unwrap_or(100);
    let mut differ = Vec::new();
    for seed in 0..n {
        // A seed that fails the same way twice is the other test's to
        // report; failing once is a difference.
        let replay = || run_tagged(seed, "file-replay");
        let (first, again) = (replay(), replay());
        if first != again {
            let head = |r: &Result<Ran, String>| match r {
                Ok(r) => format!("{:016x?}", r.traces),
                Err(e) => e.lines().next().unwrap_or_default().to_string(),
            };
            differ.push(format!(
                "seed {seed}: {} then {}",
                head(&first),
                head(&again)
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {n} seeds ran differently the second time:\n{}",
        differ.len(),
        differ.join("\n")
    );
}
