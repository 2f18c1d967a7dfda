//! Deterministic simulation of Majordomo (MDP) deployments built on
//! mdp-core: brokers, clients and workers on an in-memory network under a
//! virtual clock, with seeded faults and invariants checked after every
//! step, for testing your own services.
//!
//! Start with a [`Scenario`]: your worker [`Handler`]s, your client
//! workloads, faults, and your [`Check`] of each answer; run it for a seed
//! and read the [`Report`].
//!
//! ```
//! use std::time::Duration;
//! use bytes::Bytes;
//! use mdp_core::{ClientConfig, Dialect};
//! use mdp_testkit::{DrawSpec, Scenario, ServiceTime, SimConfig};
//!
//! let upper = |req: &[Bytes]| -> Vec<Bytes> { req.iter().map(|f| Bytes::from(f.to_ascii_uppercase())).collect() };
//! let mut faults = DrawSpec::new(Duration::from_secs(1), 2, 1);
//! faults.worker_crashes = 1;
//! let scenario = Scenario::new(SimConfig::new(0))
//!     .workers("upper", Dialect::V02, 2, move || upper, ServiceTime::Fixed(Duration::from_millis(3)))
//!     .clients(1, ClientConfig::new(Dialect::V02), |_rng, _| {
//!         (0..20).map(|k| (Bytes::from_static(b"upper"), vec![Bytes::from(format!("word {k}"))])).collect()
//!     })
//!     .draw_faults(faults)
//!     .check(|call, answer| match (call.body.as_slice(), answer.last.as_slice()) {
//!         ([asked], [got]) if got.as_ref() == asked.to_ascii_uppercase().as_slice() => Ok(()),
//!         _ => Err(format!("{answer:?} does not answer {call:?}")),
//!     });
//! let report = scenario.run(42);
//! assert!(report.passed(), "{report}");
//! assert_eq!(report.counts.answered, 20);
//! assert_eq!(report.stats.worker_crashes, 1);
//! ```
//!
//! The parts, from the top down:
//!
//! * [`scenario`]: [`Scenario`], a deployment as a function of a seed, run
//!   to a [`Report`] with a [`Verdict`]; [`Scenario::replay`] runs a seed
//!   again with a timeline.
//! * [`app`]: the user's side: [`Handler`], [`Answer`], [`ServiceTime`],
//!   and the [`Check`] of each [`Call`]'s answer.
//! * [`fault`]: [`Fault`]s at chosen virtual times, and [`FaultPlan`]s
//!   drawn from a seed ([`DrawSpec`]).
//! * [`sim`]: [`Sim`] wires one or more brokers, N clients (each with one
//!   or more lanes to every broker, one connection per lane), raw
//!   pipelining clients and M worker processes (each serving every broker)
//!   together over a virtual clock, drives the simulated applications, and
//!   steps one event at a time. The project's own tests drive it by hand.
//! * [`net`]: [`Net`], the in-memory network, with seeded latency, jitter,
//!   loss, reordering, partitions and ghost requests, and brokers that go
//!   down and come back one by one.
//! * [`model`]: [`Checker`], the reference model, checked after every step.
//! * [`rng`]: a tiny seeded generator; every run is a function of its seed.
//! * `strategies` (feature `proptest`, on by default): proptest strategies
//!   for commands, frames and fault plans.
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
#[cfg(feature = "proptest")]
pub mod strategies;

#[cfg(feature = "arbitrary")]
mod arbitrary_impls;

pub use app::{Answer, Call, Check, Handler, MakeHandler, ServiceTime};
pub use fault::{DrawSpec, Fault, FaultPlan};
pub use model::{Checker, ModelCounts, Violation};
pub use net::{Dir, Faults, Link, Net, NetStats, Node};
pub use rng::Rng;
pub use scenario::{Report, Scenario, Verdict};
pub use sim::{Sim, SimConfig, SimError, SimStats};
