//! # mdp-zmq-adapter: mdp-core over libzmq
//!
//! A thin layer that moves frames between libzmq sockets and the
//! [`mdp_core`] state machines. It holds no protocol logic: parsing,
//! heartbeats, retries, expiry, cancelling, and telling an answer to the
//! current request from a stale one all live in the core. Each piece
//! follows the core's loop: feed input, drain transmits and events, then
//! poll the socket until the core's next deadline.
//!
//! What the adapter does add is plumbing around the core's decisions: a
//! bounded backlog of messages a full pipe refused (sent in order later),
//! the socket monitor that reports a lost connection, the worker's keeper
//! thread, and, in the blocking [`Client`], a wait bounded by each call's
//! timeout, after which it cancels the request through
//! [`mdp_core::Client::cancel`] and keeps events for other requests until
//! they are asked for.
//!
//! * [`BrokerRunner`]: a ROUTER socket bound to one or more endpoints,
//!   driving a [`mdp_core::Broker`]. It never blocks on a send.
//! * [`Client`]: a blocking client with one DEALER socket per lane (see
//!   [`mdp_core::ClientConfig::lanes`]), [`Client::request`], a streaming
//!   [`Client::parts`] iterator, a [`Client::send`]/[`Client::recv`] pair
//!   for many outstanding requests, and [`Client::cancel`]. Given several
//!   brokers ([`Client::connect_many`]) it spreads its lanes over them and
//!   sends the requests of a broker that fails to the others.
//! * [`Worker`]: a blocking worker that calls its handler on its own
//!   thread, with no hand-off per request, while a keeper thread keeps the
//!   heartbeats flowing during a long handler call.
//! * [`Workers`]: one service served to several brokers at once, one
//!   [`Worker`] and one handler slot per broker.
//! * With the `tokio` feature: `AsyncClient`, shared by many tasks, and
//!   `AsyncWorker`, an async handler serving several requests at once
//!   (see the `async_tokio` module's docs for how the sockets meet tokio).
//!
//! The client and the worker watch each DEALER with libzmq's socket
//! monitor: when an established connection to the broker ends (a broker
//! killed or restarted), they tell the core within a tenth of a second
//! (`handle_connection_lost`) instead of waiting for a request timeout or
//! the broker's silence, which libzmq's silent redialling would otherwise
//! leave them to. (The monitor is read every 50 ms, not polled: each socket
//! in a poll costs every wake-up some system calls.)
//!
//! # One shape for the three
//!
//! * **Made** by a constructor that takes the endpoint(s), then the core's
//!   configuration, and returns a `Result`: [`BrokerRunner::bind`] (it
//!   binds its ROUTER), [`Client::connect`] and [`Worker::connect`] (they
//!   connect DEALERs), and for several brokers [`Client::connect_many`] and
//!   [`Workers::connect`]. A configuration the core would refuse is refused
//!   there, before any socket, with the core's [`mdp_core::ConfigError`]
//!   as it is: [`AdapterError::Config`] (broker and worker) or
//!   [`ClientError::Config`] (the client, whose calls all return
//!   [`ClientError`]).
//! * **Stopped** through a [`StopHandle`], which the two that have a run
//!   loop hand out the same way: [`BrokerRunner::stop_handle`] and
//!   [`Worker::stop_handle`]. Take it before `run` and call
//!   [`StopHandle::stop`] from any thread (a Ctrl-C handler, say). The
//!   client has no run loop: each of its calls returns by its own timeout.
//!
//! ```
//! use std::thread;
//! use std::time::Duration;
//!
//! use bytes::Bytes;
//! use mdp_core::{BrokerConfig, ClientConfig, Dialect, WorkerConfig};
//! use mdp_zmq_adapter::{BrokerRunner, Client, Worker};
//!
//! let mut broker = BrokerRunner::bind(&["tcp://127.0.0.1:*"], BrokerConfig::default())?;
//! let endpoint = broker.endpoints()[0].clone();
//! let stop_broker = broker.stop_handle();
//! let broker = thread::spawn(move || broker.run(|_| {}));
//!
//! let worker = Worker::connect(&endpoint, WorkerConfig::new(Bytes::from_static(b"echo"), Dialect::V02))?;
//! let stop_worker = worker.stop_handle();
//! let worker = thread::spawn(move || worker.run(|body, _| body));
//!
//! let mut client = Client::connect(&endpoint, ClientConfig::new(Dialect::V01))?;
//! let reply = client.request("echo", vec![Bytes::from_static(b"hi")], Duration::from_secs(10))?;
//! assert_eq!(reply, [Bytes::from_static(b"hi")]);
//!
//! stop_worker.stop();
//! worker.join().expect("worker thread")?;
//! stop_broker.stop();
//! broker.join().expect("broker thread")?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The `zmq` crate builds its own libzmq, so nothing needs installing.
//!
//! # Features
//!
//! * `cli` (default): the command-line tools `mdp-broker` and `mdp`, and
//!   what only they need (`clap`, `ctrlc`, `tracing-subscriber`,
//!   `crossterm`, and the `metrics` feature for `mdp-broker --metrics`). A
//!   program that uses only the library can leave it out:
//!   `mdp-zmq-adapter = { version = "0.1", default-features = false }`.
//!   With it comes the `top` module: the scraping, parsing and rendering
//!   of a broker's metrics behind `mdp top`.
//! * `tokio` (off by default, Unix only): `AsyncClient` and `AsyncWorker`
//!   (with `PartStream` and `AsyncPartSink`) for tokio applications, in
//!   the `async_tokio` module, whose docs say how the sockets meet tokio.
//!   It adds `tokio` (`rt`, `net`, `time`, `sync`) and `futures-core`;
//!   without it the adapter depends on no async runtime. (They are in
//!   these docs when built with the feature: `cargo doc --features tokio`.)
//! * `metrics` (on with `cli`, otherwise off): the `metrics` module and
//!   [`BrokerRunner::serve_metrics`], the broker's per-service figures in
//!   the Prometheus text format over HTTP from a thread of its own. It
//!   adds `prometheus-client`.
//!
//! CURVE (RFC 26) with ZAP (RFC 27) is not a feature: in this workspace
//! libzmq is always built with libsodium (a patched `zmq-sys`), so
//! [`BrokerRunner::bind_curve`], [`Client::connect_curve`] and
//! [`Worker::connect_curve`] work; built against crates.io's `zmq-sys`
//! they return [`KeyError::NoCurve`], and [`curve_available`] says which.
//! See the README, "How CURVE gets into the build".
// One `unsafe` call, audited: registering libzmq's ZMQ_FD with tokio
// (`async_tokio/fd.rs`). Nothing else may use `unsafe`.
#![deny(unsafe_code)]
#![deny(missing_docs)]

#[cfg(all(feature = "tokio", unix))]
pub mod async_tokio;
mod broker;
mod client;
mod curve;
mod error;
mod message;
#[cfg(feature = "metrics")]
pub mod metrics;
mod once;
mod poll;
mod ratelimit;
mod socket;
mod stop;
#[cfg(feature = "cli")]
pub mod top;
mod worker;
mod workers;

#[cfg(all(feature = "tokio", unix))]
pub use async_tokio::{AsyncClient, AsyncPartSink, AsyncWorker, PartStream};
pub use broker::BrokerRunner;
pub use client::{Client, ClientError, Parts};
pub use curve::{curve_available, AllowList, CurveClient, CurveServer, Key, KeyError, KeyPair};
pub use error::AdapterError;
pub use stop::StopHandle;
pub use worker::{PartSink, Worker};
pub use workers::Workers;
