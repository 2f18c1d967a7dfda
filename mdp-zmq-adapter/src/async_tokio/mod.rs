//! The async client and worker, for tokio (the `tokio` feature, Unix).
//!
//! [`AsyncClient`] is shared by any number of tasks, each awaiting its own
//! requests; [`AsyncWorker`] runs an async handler, `concurrency` requests
//! at once. Both drive the same [`mdp_core`] state machines as the blocking
//! [`Client`](crate::Client) and [`Worker`](crate::Worker), over the same
//! DEALER sockets, monitors and send backlog; only the waiting is tokio's.
//!
//! ```
//! use bytes::Bytes;
//! use mdp_core::{BrokerConfig, Dialect, WorkerConfig};
//! use mdp_zmq_adapter::{AsyncClient, AsyncWorker, BrokerRunner};
//!
//! let mut broker = BrokerRunner::bind(&["tcp://127.0.0.1:*"], BrokerConfig::default())?;
//! let endpoint = broker.endpoints()[0].clone();
//! let stop_broker = broker.stop_handle();
//! let broker = std::thread::spawn(move || broker.run(|_| {}));
//!
//! let runtime = tokio::runtime::Runtime::new()?;
//! runtime.block_on(async {
//!     // An echo worker serving 4 requests at once, streaming a PARTIAL first.
//!     let worker = AsyncWorker::connect(&endpoint, WorkerConfig::new(Bytes::from_static(b"echo"), Dialect::V02), 4)?;
//!     let stop_worker = worker.stop_handle();
//!     let worker = tokio::spawn(worker.run(|body, parts| async move {
//!         parts.send(vec![Bytes::from_static(b"echo:")]).await;
//!         body
//!     }));
//!
//!     // One client, shared by 100 tasks.
//!     let client = AsyncClient::connect(&endpoint, AsyncClient::config(Dialect::V02))?;
//!     let tasks: Vec<_> = (0..100)
//!         .map(|i| tokio::spawn(client.request("echo", vec![Bytes::from(format!("hi {i}"))])))
//!         .collect();
//!     for (i, task) in tasks.into_iter().enumerate() {
//!         let reply = task.await??;
//!         assert_eq!(reply, [Bytes::from_static(b"echo:"), Bytes::from(format!("hi {i}"))]);
//!     }
//!
//!     stop_worker.stop();
//!     worker.await??;
//!     Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
//! })
//! .map_err(|e| e as Box<dyn std::error::Error>)?;
//!
//! stop_broker.stop();
//! broker.join().expect("broker thread")?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # How the sockets meet tokio
//!
//! A libzmq socket is not a file descriptor tokio can read; it has one,
//! `ZMQ_FD`, that libzmq signals when a command reaches the socket's
//! mailbox (a message arrived on an empty pipe, room came free, a
//! connection went up). Each socket's `ZMQ_FD` (and its monitor's) is
//! registered with tokio's reactor through [`tokio::io::unix::AsyncFd`],
//! by hand, with no crate in between (tmq and async-zmq wrap the same
//! mechanism, but here `zmq-sys` is patched, and the edge rules below are
//! what makes or breaks the adapter, so they are kept in view, in
//! `fd.rs`). The alternative, a thread per socket blocking in
//! `zmq_poll` and handing messages over a channel, costs a thread and two
//! hand-offs per message; `AsyncFd` costs neither.
//!
//! `ZMQ_FD` is edge-triggered and only ever readable, and any operation
//! on the socket (a send, a receive, reading `ZMQ_EVENTS`) takes the
//! signal with it. So:
//!
//! * **Settle after every touch.** Whoever sends or receives on a socket
//!   then reads `ZMQ_EVENTS` and receives until `EAGAIN`, flushes what was
//!   held back while there is room, and reads `ZMQ_EVENTS` again, until it
//!   says there is nothing to do. A send can consume the signal of a
//!   message that arrived meanwhile, so this runs after sends too, not only
//!   when tokio says the descriptor is readable.
//! * **Clear, then check.** When tokio reports the descriptor readable its
//!   readiness is cleared first, then the socket is settled as above:
//!   a signal that comes in between is either seen by that last look or
//!   wakes the task again. The task returns `Pending` only after both.
//! * **Unregister first.** An `AsyncFd` is dropped before the socket it
//!   watches is closed or replaced (a lane or a worker connection replaced
//!   on the core's `Reconnect`), and the new socket is registered before
//!   anyone sleeps on it. This is the safety condition of
//!   `AsyncFd::register_with_interest`, the crate's one `unsafe` call
//!   (tokio deprecated the safe `with_interest` because it cannot check
//!   it).
//!
//! The client's requests send on the caller's task, under the client's
//! lock, and settle the lane themselves; one driver task per client reads
//! the lanes and fires the core's timers. Each worker slot is one task that
//! owns its socket and polls its handler's future in between. Details are
//! on [`AsyncClient`] and [`AsyncWorker`].
//!
//! Constructors do not panic outside a runtime: [`AsyncClient::connect`]
//! and [`AsyncWorker::run`] return [`AdapterError::NoRuntime`](crate::AdapterError::NoRuntime)
//! outside a tokio runtime or in one without IO or time
//! (`Builder::enable_all` turns both on). [`AsyncWorker::connect`] needs no
//! runtime.

mod client;
mod fd;
mod worker;

pub use client::{AsyncClient, PartStream};
pub use worker::{AsyncPartSink, AsyncWorker};
