//! The tools around the swp library: the benchmark behind `swp bench` and
//! `cargo bench --bench nats_bench`, and the nats CLI's contexts
//! ([`context`]). The `swp` command itself is this
//! package's binary (src/main.rs).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bench;
pub mod context;
pub mod duration;
pub mod size;
