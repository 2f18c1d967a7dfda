//! Cross-crate integration, simulation and interoperability tests for mdp-rs.
//!
//! The library half of this crate is a deterministic simulation harness for
//! mdp-core's state machines; the tests in `tests/` are built on it.
//!
//! * [`sim`]: [`Sim`] wires one or more brokers, N clients (each with one
//!   or more lanes to every broker, one connection per lane), raw
//!   pipelining clients and M worker processes (each serving every broker)
//!   together over a virtual clock, drives simulated applications (a
//!   workload per client, which may cancel some of its requests, a service
//!   per worker), and steps one event at a time.
//! * [`net`]: [`Net`], the in-memory network, with seeded latency, jitter,
//!   loss, reordering, partitions and ghost requests, and brokers that go
//!   down and come back one by one.
//! * [`model`]: [`Checker`], the reference model, checked after every step.
//! * [`rng`]: a tiny seeded generator; every run is a function of its seed.
//!
//! Time never comes from the operating system inside a run: the simulation
//! reads `Instant::now()` once for its epoch and moves a virtual clock from
//! there, jumping to the next deadline whenever nothing is due.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod model;
pub mod net;
pub mod rng;
pub mod sim;

pub use model::{Checker, ModelCounts, Violation};
pub use net::{Dir, Faults, Link, Net, NetStats, Node};
pub use rng::Rng;
pub use sim::{Sim, SimConfig, SimError, SimStats};

/// The workspace README's Rust examples, compiled and run as doctests. They
/// live here, in the crate that is never published, because a published
/// crate cannot include a file from outside its package.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
