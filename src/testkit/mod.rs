//! Running the real protocol engine over the simulated network.
//!
//! [`Pair`] connects two [`Connection`](crate::proto::Connection)s through a [`SimNet`](simnet::SimNet) and drives them
//! in virtual time: each [`step`](Pair::step) jumps straight to the next event
//! (a packet arrival or a protocol timer), so a transfer that would take
//! minutes of real time runs in milliseconds, and a run is a pure function of
//! its seed.
//!
//! A [`WindowMonitor`] watches every packet on the wire and records any data
//! packet sent beyond the window its receiver had advertised to the sender,
//! and, for sessions in Go's wire format, any packet a Go peer would reject
//! or choke on: tests assert that there are none.
//!
//! ```
//! use swp::testkit::{Pair, transfer, TransferSpec};
//! use swp::simnet::LinkConfig;
//! use std::time::Duration;
//!
//! let link = LinkConfig::new().latency(Duration::from_millis(1)).loss(0.1);
//! let mut pair = Pair::new(7, link, Pair::default_config("A", "B"), Pair::default_config("B", ""));
//! let report = transfer(&mut pair, &TransferSpec::new(256 * 1024)).unwrap();
//! assert_eq!(report.bytes, 256 * 1024);
//! assert_eq!(pair.window_violations(), 0);
//! ```

mod monitor;
mod pair;
mod sessions;
mod transfer;

pub use crate::file::hold::stall::StalledDisk;
pub use monitor::{WindowMonitor, WindowReport};
pub use pair::{INBOX_CAPACITY, Pair, SIM_WALL_CLOCK_NS, Side, epoch};
pub use sessions::session_pair;
pub use transfer::{
    TransferReport, TransferSpec, deliver_messages, drain_messages, pattern_byte, transfer,
};
