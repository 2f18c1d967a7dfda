//! # mdp-core: the Majordomo Protocol without IO
//!
//! A sans-IO implementation of the ZeroMQ Majordomo Protocol: MDP/0.1
//! (RFC 7), MDP/0.2 (RFC 18), the dialect majortomo really sends, and MMI
//! (RFC 8). It holds the frame codec and the broker, client and worker state
//! machines. It opens no socket, starts no thread and never reads the clock:
//! every entry point takes `now: Instant`, so every timing edge case can be a
//! deterministic test.
//!
//! ## The codec
//!
//! MDP has two sub-protocols (client and worker) and two directions. The
//! codec splits commands by direction, because that is what each role sees:
//!
//! * [`PeerCommand`]: what a client or a worker sends **to the broker**.
//! * [`BrokerCommand`]: what the broker sends **to a client or a worker**.
//!
//! Splitting by direction also resolves the one place where MDP frames are
//! ambiguous: in MDP/0.1 a client REQUEST and the broker's REPLY have the same
//! frames (`""`, `MDPC01`, service, body). [`PeerCommand::decode`] reads them as
//! a request, [`BrokerCommand::decode`] as a reply.
//!
//! Across dialects there is no ambiguity: the leading empty frame and the
//! protocol header (`MDPC01`/`MDPW01`/`MDPC02`/`MDPW02`) always tell them
//! apart, so every frame list decodes to at most one dialect:
//!
//! | first frames            | dialect                |
//! |-------------------------|------------------------|
//! | `""`, `MDPC01`/`MDPW01` | [`Dialect::V01`]       |
//! | `MDPC02`/`MDPW02`       | [`Dialect::V02`]       |
//! | `""`, `MDPC02`/`MDPW02` | [`Dialect::Majortomo`] |
//!
//! Decoding never copies a frame: services, addresses and bodies are
//! [`Bytes`](bytes::Bytes) handles into the frames passed in. It never panics; bad input is
//! a [`DecodeError`] that names the frame, what was expected and what was
//! found.
//!
//! ```
//! use bytes::Bytes;
//! use mdp_core::{Dialect, PeerCommand};
//!
//! // What a majortomo client sends (the ROUTER identity already removed).
//! let frames = vec![
//!     Bytes::new(),
//!     Bytes::from_static(b"MDPC02"),
//!     Bytes::from_static(&[0x02]),
//!     Bytes::from_static(b"echo"),
//!     Bytes::from_static(b"hello"),
//! ];
//! let (dialect, command) = PeerCommand::decode(frames.clone()).unwrap();
//! assert_eq!(dialect, Dialect::Majortomo);
//! assert_eq!(
//!     command,
//!     PeerCommand::Request { service: Bytes::from_static(b"echo"), body: vec![Bytes::from_static(b"hello")] }
//! );
//! assert_eq!(command.encode(dialect).unwrap(), frames);
//! ```
//!
//! ## The contract: input, drain, sleep
//!
//! Every state machine here ([`Broker`], [`Client`], [`Worker`]) has the same
//! shape, borrowed from quinn-proto and str0m:
//!
//! * `handle_*` methods take input: a message from a peer, a timeout, or a
//!   call from the application. Each takes `now: Instant`; time never goes
//!   backwards (an earlier `now` is treated as the latest one seen).
//! * `poll_transmit` and `poll_event` give output.
//! * `poll_timeout` says when to call `handle_timeout` next.
//!
//! **The drain rule:** after *every* input, call `poll_transmit` until it
//! returns `None` and `poll_event` until it returns `None`, then ask
//! `poll_timeout` and wait for the next message or that deadline, whichever
//! comes first. `handle_timeout` is idempotent: calling it early, late or
//! twice does no harm.
//!
//! Nothing a peer sends makes these panic, and every queue a peer can grow
//! has a limit in the configuration.
//!
//! ## A complete broker loop
//!
//! The transport here is a pair of in-memory queues; over ZeroMQ it is a
//! ROUTER socket (see `mdp-zmq-adapter`), over TCP a map of connections.
//!
//! ```
//! use std::collections::VecDeque;
//! use std::time::{Duration, Instant};
//! use bytes::Bytes;
//! use mdp_core::{Broker, BrokerConfig, BrokerEvent, Dialect, PeerCommand, PeerId};
//!
//! // Messages "on the wire" to the broker, and what it sent back.
//! let mut inbox: VecDeque<(PeerId, Vec<Bytes>)> = VecDeque::new();
//! let mut outbox = Vec::new();
//!
//! let worker = PeerId::from(&b"worker-1"[..]);
//! let client = PeerId::from(&b"client-1"[..]);
//! let ready = PeerCommand::Ready { service: Bytes::from_static(b"echo") };
//! inbox.push_back((worker.clone(), ready.encode(Dialect::V01).unwrap()));
//! let request = PeerCommand::Request {
//!     service: Bytes::from_static(b"echo"),
//!     body: vec![Bytes::from_static(b"hi")],
//! };
//! inbox.push_back((client.clone(), request.encode(Dialect::V02).unwrap()));
//!
//! let start = Instant::now(); // the application reads the clock, not the core
//! let mut broker = Broker::new(BrokerConfig::default(), start).unwrap();
//! let mut now = start;
//! for _ in 0..10 {
//!     // 1. Input: a message if one is waiting, else the timeout.
//!     match inbox.pop_front() {
//!         Some((from, frames)) => broker.handle_message(now, from, frames),
//!         None => broker.handle_timeout(now),
//!     }
//!     // 2. Drain every output.
//!     while let Some(t) = broker.poll_transmit() {
//!         outbox.push(t);
//!     }
//!     while let Some(event) = broker.poll_event() {
//!         if let BrokerEvent::WorkerReady { service, .. } = &event {
//!             assert_eq!(service.as_ref(), b"echo");
//!         }
//!     }
//!     // 3. Sleep until the next deadline (here: jump virtual time to it).
//!     if inbox.is_empty() {
//!         now = broker.poll_timeout().unwrap_or(now + Duration::from_secs(1));
//!     }
//! }
//! // The request went to the worker, in the worker's dialect (0.1) ...
//! assert_eq!(outbox[0].to, worker);
//! assert_eq!(outbox[0].frames[1].as_ref(), b"MDPW01");
//! // ... and the idle worker got heartbeats after that.
//! assert!(outbox[1..].iter().all(|t| t.to == worker));
//! ```
//!
//! ## Features
//!
//! None is on by default. `arbitrary` implements `arbitrary::Arbitrary` for
//! [`Dialect`], [`PeerCommand`] and [`BrokerCommand`], so that a cargo-fuzz
//! target can draw commands from its input: an arbitrary `PeerCommand`
//! encodes in every dialect but a PARTIAL in MDP/0.1, an arbitrary
//! `BrokerCommand` in the dialect drawn first from the same input, and
//! `PeerCommand::arbitrary_in` and `BrokerCommand::arbitrary_in` draw one
//! that encodes in a given dialect. (mdp-testkit has proptest strategies
//! for the same, and its own `arbitrary` feature for faults.)
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "arbitrary")]
mod arbitrary_impls;
mod broker;
mod client;
mod codec;
mod config;
mod hash;
mod lazy;
mod peer;
mod rng;
mod shell;
mod slab;
mod time;
mod worker;

pub use broker::{
    Access, Broker, BrokerConfig, BrokerCounters, BrokerEvent, BrokerStats, DropReason, GoneReason, Grant, Histogram,
    Limit, Misbehavior, PeerPattern, Policy, PolicyError, PolicyErrorKind, ServiceCounters, ServiceMetrics,
    ServicePattern, Transmit, LATENCY_BOUNDS,
};
pub use config::{Backoff, ConfigError};
pub use peer::{PeerId, PeerTransmit};
pub use rng::SplitMix64;

pub use client::{
    Client, ClientConfig, ClientDiscardReason, ClientEvent, ClientTimer, ClientTransmit, ClientUsageError, FailReason,
    Lane, RequestId,
};
pub use worker::{
    DisconnectReason, ReplyToken, Worker, WorkerConfig, WorkerDiscardReason, WorkerEvent, WorkerTimer, WorkerUsageError,
};

pub use codec::{
    BrokerCommand, Command, DecodeError, Dialect, EncodeError, Found, Multipart, PeerCommand, MDPC01, MDPC02, MDPW01,
    MDPW02,
};
