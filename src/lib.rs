//! # swp: TCP-style sessions over NATS
//!
//! Core NATS is fire-and-forget: a publisher that outruns its subscriber
//! loses messages silently. swp runs a sliding-window protocol end to end
//! between two NATS clients: reliable, ordered, exactly-once delivery, flow
//! control tied to the receiving subscription's real capacity, RTT-based
//! retransmission with selective acks, keepalives and a graceful close.
//!
//! * [`Session`]: the async session (AsyncRead/AsyncWrite, messages), over
//!   any [`transport::Transport`]: NATS ([`transport::NatsTransport`]) or
//!   the simulator ([`transport::SimTransport`]).
//! * [`Service`]: many sessions on one subject, each moved to a private
//!   inbox after its handshake; a session limit; scale-out by queue group.
//!   Clients connect with [`Session::connect_to`].
//! * [`mod@file`]: `send_file` / `recv_file`: streamed, BLAKE2b-verified,
//!   resumable file transfer over a session.
//! * [`proto`]: the sans-IO protocol engine ([`proto::Connection`]).
//! * [`testkit`] (feature `sim`): drives two engines over [`simnet`] in
//!   virtual time.
//! * [`server`] (feature `server`): starts a local `nats-server` for tests,
//!   demos, benchmarks.
//!
//! By default the crate is the library alone; the features add the
//! simulator (`sim`: `transport::SimNetwork` and the `testkit` harness) and
//! the local-server helper (`server`). The `swp`
//! command and the benchmarks are the `swp-tools` package.
//!
//! The wire format and state machine are specified in docs/PROTOCOL.md.
//!
//! ## The engine on its own
//!
//! The driver owns the clock and the network; the engine only answers.
//!
//! ```
//! use swp::proto::{Config, Connection, Recv};
//! use std::time::Instant;
//!
//! let t0 = Instant::now(); // the driver's clock
//! let mut a = Connection::connect(Config::new("A", "B"), t0, 1).unwrap();
//! let mut b = Connection::listen(Config::new("B", ""), t0, 2).unwrap();
//! a.write(b"hello").unwrap();
//! // A perfect, instant network: shuttle packets until both are quiet.
//! loop {
//!     let mut moved = false;
//!     while let Some(t) = a.poll_transmit(t0) { b.handle_packet(t0, t.payload); moved = true; }
//!     while let Some(t) = b.poll_transmit(t0) { a.handle_packet(t0, t.payload); moved = true; }
//!     if !moved { break; }
//! }
//! let mut buf = [0u8; 16];
//! assert_eq!(b.read(&mut buf).unwrap(), Recv::Data(5));
//! assert_eq!(&buf[..5], b"hello");
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod digest;
pub mod file;
pub mod keys;
pub mod proto;
#[cfg(feature = "server")]
pub mod server;
pub mod service;
pub mod session;
#[cfg(feature = "sim")]
pub mod testkit;
pub mod transport;

/// The README's examples, compiled as doctests so they cannot rot.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

pub use service::{Service, ServiceConfig, ServiceStats};
pub use session::{
    AbortHandle, Listener, ReadHalf, Session, SessionError, SessionStats, WriteHalf,
};
#[cfg(feature = "sim")]
pub use simnet;
