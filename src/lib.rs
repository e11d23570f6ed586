//! # swp: TCP-style sessions over NATS
//!
//! Core NATS is fire-and-forget: a publisher that outruns its subscriber
//! loses messages silently. swp runs a sliding-window protocol end to end
//! between two NATS clients: reliable, ordered, exactly-once delivery, flow
//! control tied to the receiving subscription's real capacity, RTT-based
//! retransmission with selective acks, keepalives and a graceful close.
//!
//! * [`proto`]: the sans-IO protocol engine ([`proto::Connection`]).
//! * [`sim`]: drives two engines over [`simnet`] in virtual time.
//!
//! The wire format and state machine are specified in docs/PROTOCOL.md.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod proto;
pub mod sim;

pub use simnet;
