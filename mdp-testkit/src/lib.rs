//! Deterministic simulation of Majordomo (MDP) deployments built on
//! mdp-core: brokers, clients and workers on an in-memory network under a
//! virtual clock, with seeded faults and invariants checked after every
//! step.
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

pub mod app;
pub mod fault;
pub mod model;
pub mod net;
pub mod rng;
pub mod scenario;
pub mod sim;

pub use app::{Answer, Call, Check, Handler, MakeHandler, ServiceTime};
pub use fault::{DrawSpec, Fault, FaultPlan};
pub use model::{Checker, ModelCounts, Violation};
pub use net::{Dir, Faults, Link, Net, NetStats, Node};
pub use rng::Rng;
pub use scenario::{Report, Scenario, Verdict};
pub use sim::{Sim, SimConfig, SimError, SimStats};
