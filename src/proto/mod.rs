//! The sans-IO protocol core.
//!
//! Everything here is a plain state machine: packets (bytes) and `now` go in;
//! packets to send, the next deadline and events come out. No async runtime,
//! no NATS client, no clock reads, no unseeded randomness (scripts/test.sh
//! greps for them). The async [`Session`](crate::Session) and the simulator harness
//! ([`crate::testkit`]) are thin drivers around [`Connection`].
//!
//! Layout: [`packet`] (the packet model), [`codec`] (bytes ↔ packet),
//! [`batch`] (several messages in one data packet),
//! `send`/`recv` (the two halves of the sliding window), [`rtt`] (RFC 6298),
//! `timer` (the timer table), [`config`], [`stats`], [`error`],
//! [`connection`] (the state machine), `dialect` (the one seam where a
//! go-sliding-window peer needs other rules) and [`go`] (its wire format). docs/PROTOCOL.md is the
//! specification this module implements.

pub mod batch;
pub mod codec;
pub mod config;
pub mod connection;
mod dialect;
pub mod error;
pub mod go;
pub mod packet;
mod phase;
mod recv;
pub mod rtt;
pub mod seal;
mod send;
pub mod stats;
mod str;
mod timer;

pub use codec::{DecodeError, WireFormat};
pub use config::{Config, ConfigError, Tuning};
pub use connection::{Connection, Event, MessageId, Recv};
pub use error::{CloseReason, MAX_RESET_MESSAGE, ReadError, ResetCode, WriteError};
pub use packet::{Kind, Packet, Transmit, flags};
pub use phase::State;
pub use rtt::RttEstimator;
pub use stats::{
    AppStats, DataStats, DropStats, LossStats, RttStats, Stats, WindowStats, WireStats,
};
pub use str::Str;
