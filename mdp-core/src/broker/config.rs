//! Broker settings and limits.

use std::num::NonZeroUsize;
use std::time::Duration;

use super::Policy;
use crate::config::{nonzero, ConfigError};

/// How the broker times peers, and how much a peer may make it hold.
///
/// [`validate`](Self::validate) says which values cannot work;
/// [`Broker::new`](crate::Broker::new) refuses them.
///
/// Every limit exists so that nothing a peer sends can grow the broker's
/// memory without bound. Hitting one emits [`BrokerEvent::LimitHit`] and
/// drops the message that would have crossed it.
///
/// [`BrokerEvent::LimitHit`]: crate::BrokerEvent::LimitHit
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BrokerConfig {
    /// The broker sends HEARTBEAT to a worker it has sent nothing else for
    /// this long. Default: 2.5 s (the Guide's and majortomo's). Must not be
    /// zero: a heartbeat due at once, forever, would keep `handle_timeout`
    /// from ever returning.
    pub heartbeat_interval: Duration,
    /// A worker that has sent nothing for `liveness × heartbeat_interval` is
    /// removed. Default: 3 (the Guide's). Must not be zero.
    pub liveness: u32,
    /// How long a worker that holds a request may stay silent before it is
    /// removed and its request re-queued. `None` (the default) uses the same
    /// window as for idle workers. majortomo's workers do not heartbeat while
    /// they work; give this a larger value to host slow majortomo workers.
    pub busy_worker_timeout: Option<Duration>,
    /// The longest a worker may hold one request, heartbeats or not. Past
    /// it the worker is sent DISCONNECT, forgotten, and its request
    /// re-queued. `None` (the default): no limit. Over ZeroMQ or TCP a
    /// message is never lost inside a live connection, so a worker that
    /// heartbeats is working; over a transport that can lose a REQUEST or a
    /// FINAL while the connection stays up, set this, or such a worker stays
    /// "busy" for ever. (majortomo's broker calls this its busy worker
    /// timeout, 900 s by default.)
    pub max_job_time: Option<Duration>,
    /// A queued request that no worker has taken this long after it arrived
    /// expires with [`BrokerEvent::RequestExpired`](crate::BrokerEvent::RequestExpired).
    /// Time spent at a worker that then died counts too. Default: 10 s.
    pub request_timeout: Duration,
    /// How many times one request may be handed to a worker. A request whose
    /// worker dies is re-queued at the head of its service until it has been
    /// dispatched this often, then dropped with an event. (One whose worker
    /// had streamed PARTIALs to an MDP/0.2 client is dropped at once:
    /// [`DropReason::PartlyAnswered`](crate::DropReason::PartlyAnswered).)
    /// Default: 3.
    pub max_dispatches: u32,
    /// Most requests of one client to one service that workers hold at
    /// once. `None` (the default): no limit, so a client that pipelines to a
    /// service gets every idle worker of it, and its replies may come back
    /// in another order than its requests (as from every MDP broker that
    /// dispatches in parallel). `Some(1)` serves each (client, service) one
    /// request at a time, so replies come back in request order, for
    /// clients that keep several requests for one service on one connection
    /// and match replies by order. Fairness between clients holds either
    /// way: each dispatch serves the next client in turn.
    pub max_in_flight_per_client: Option<NonZeroUsize>,
    /// Who may serve and call which services, by the names the transport
    /// authenticated ([`Broker::handle_authenticated`](crate::Broker::handle_authenticated)).
    /// `None` (the default): every peer may do everything, as in plain MDP.
    /// See [`Policy`].
    pub policy: Option<Policy>,
    /// Most services known at once (a service exists while it has workers or
    /// queued requests). Default: 10,000.
    ///
    /// A READY for a new service when the table is full makes room by
    /// evicting the service that has been without workers longest (since it
    /// was created by a request, or since its last worker left); its queued
    /// requests are dropped with
    /// [`DropReason::Evicted`](crate::DropReason::Evicted). So names that
    /// clients make up never keep a worker from registering, and never push
    /// out a service that has workers. The READY is refused with
    /// [`Limit::Services`](crate::Limit::Services) only when every known
    /// service has workers. A request for a new service when the table is
    /// full evicts nothing: it is dropped with `Limit::Services`.
    pub max_services: usize,
    /// Most workers registered at once. Default: 100,000.
    pub max_workers: usize,
    /// Most requests queued for one service. Default: 100,000. Applied as
    /// [`max_queue_total`](Self::max_queue_total) is.
    pub max_queue_per_service: usize,
    /// Most requests queued across all services. Default: 1,000,000.
    ///
    /// The queue limits decide whether a new request is admitted. A request
    /// that an idle worker takes at once never waits in a queue, so it is
    /// admitted even when the queues are full. A request whose worker is lost
    /// goes back to its queue even past the limits: it was admitted already
    /// and the broker held it all along, so the queues may pass the limits by
    /// as many requests as were in flight. While a queue is past its limit it
    /// admits nothing, not even a request an idle worker would take at once,
    /// so the broker never holds more than `max_queue_total + max_workers`
    /// requests, queued or at workers.
    pub max_queue_total: usize,
    /// Most frames in one message from a peer, and in a reply joined for an
    /// MDP/0.1 client. Default: 1,024.
    pub max_message_frames: usize,
    /// Most bytes (all frames added up) in one message from a peer, and in a
    /// reply joined for an MDP/0.1 client. Default: 64 MiB.
    ///
    /// `mdp_zmq_adapter::BrokerRunner` also sets libzmq's `ZMQ_MAXMSGSIZE`
    /// to this, so that a frame too large for any message is refused as soon
    /// as its header announces it, before it is read.
    pub max_message_bytes: usize,
    /// Most bytes of peer data the broker holds for requests, in all: the
    /// requests waiting in queues, the requests workers are working on (kept
    /// whole, to be re-queued if the worker is lost), and the PARTIALs of
    /// replies being joined for MDP/0.1 clients. Default: 256 MiB.
    ///
    /// A request is charged its body's bytes, its client's identity's, and
    /// [`FRAME_OVERHEAD`](Self::FRAME_OVERHEAD) bytes for each of those
    /// frames (so a thousand empty frames are not free); a PARTIAL being
    /// joined is charged its frames likewise. A request that does not fit is
    /// dropped with [`Limit::QueuedBytes`](crate::Limit::QueuedBytes), whether
    /// it would wait in a queue or an idle worker would take it at once: a
    /// request at a worker is held as much as a queued one. A PARTIAL that
    /// does not fit drops its request with
    /// [`DropReason::ReplyOverBudget`](crate::DropReason::ReplyOverBudget).
    ///
    /// Unlike the count limits, this one is never passed: only admitting a
    /// request and joining a PARTIAL add bytes, and both are checked. A
    /// request that goes to a worker, or back to its queue when the worker
    /// is lost, moves between the two figures of
    /// [`BrokerStats`](crate::BrokerStats) (`queued_bytes`, `held_bytes`)
    /// without changing their sum, so `queued_bytes + held_bytes <=
    /// max_queued_bytes` at all times.
    ///
    /// Why 256 MiB: room for three of the largest messages the defaults
    /// allow, or for about 660,000 requests of one small frame (each
    /// charged about 400 bytes); of the order of what the count limits let
    /// request records take (about 1 GiB, below), so neither part of the
    /// bound dwarfs the other; and a figure any machine that runs a broker
    /// has. Workers that each hold a large request need `workers × request
    /// size` of it: raise it for them.
    ///
    /// # The most memory the broker can hold
    ///
    /// What the core holds because of its peers is at most
    ///
    /// ```text
    ///   max_queued_bytes                                  request bodies, identities, PARTIALs
    /// + (max_queue_total + max_workers) × 1 KiB           request records
    /// + max_workers × (512 B + identity)                  worker records
    /// + max_services × (1 KiB + max_service_name_bytes)   service records and names
    /// + max_message_bytes + 192 B × max_message_frames    the message being handled
    /// ```
    ///
    /// A request record is the request's own fields, its client's entry and
    /// turn in the service, and its timer entries, stale ones included with
    /// what they keep alive (a client identity, a service name);
    /// `max_queue_total + max_workers` is the most requests held at once,
    /// queued or at workers (see [`max_queue_total`](Self::max_queue_total)).
    /// Identities come from the transport: at most 255 bytes over ZeroMQ.
    /// Storage freed by a peer is kept for the next (the maps and queues do
    /// not shrink), so the figures are for the most the limits allow at
    /// once, not for what is held now. They are upper bounds with room to
    /// spare over what was measured, counting the allocator's rounding: up
    /// to 330 B per queued request and 360 B per request at a worker,
    /// 420 B + identity per worker, about 1.2 KiB + name per service
    /// without workers.
    ///
    /// With the defaults: 256 MiB + 1.1 M × 1 KiB + 100,000 × 767 B +
    /// 10,000 × 1,279 B + 64.2 MiB ≈ 256 + 1,074 + 73 + 12 + 64 MiB ≈
    /// **1,480 MiB (1.45 GiB)**, on top of the process's own few MiB.
    /// Reaching it takes every limit at once: a million requests held, each
    /// from a client with a 255-byte identity, and the byte budget full
    /// beside them.
    ///
    /// The transport holds more of its own, which these limits do not
    /// bound. Over ZeroMQ: what libzmq has read but the broker has not yet
    /// (up to `ZMQ_RCVHWM`, 1,000 by default, messages per connected peer,
    /// each frame at most `max_message_bytes`), what it is still to write
    /// (up to `ZMQ_SNDHWM` messages per peer; past that the broker drops
    /// them), and the kernel's socket buffers.
    pub max_queued_bytes: usize,
    /// Most of [`max_queued_bytes`](Self::max_queued_bytes) that the
    /// requests of one service (queued and at its workers, with their
    /// joined PARTIALs) may take, so that a service whose workers are gone
    /// while its clients keep sending cannot take the whole budget. A
    /// request past it is dropped with
    /// [`Limit::QueuedBytesPerService`](crate::Limit::QueuedBytesPerService).
    /// Default: 128 MiB, half the budget (and room for one request of
    /// [`max_message_bytes`](Self::max_message_bytes)), so one service
    /// always leaves the other half to the rest.
    pub max_queued_bytes_per_service: usize,
    /// Longest service name, in bytes, of a request or a READY. Default:
    /// 255 (as long as a ZeroMQ identity may be). The broker keeps the name
    /// of every service it knows, and a name is peer data like any other:
    /// without this limit [`max_services`](Self::max_services) names of up
    /// to [`max_message_bytes`](Self::max_message_bytes) each could be held.
    /// A request with a longer name is dropped, a READY refused with
    /// DISCONNECT, both with
    /// [`Limit::ServiceName`](crate::Limit::ServiceName).
    pub max_service_name_bytes: usize,
    /// Seeds the hash of peer identities and service names. Pass a random
    /// value in production to resist hash flooding; keep it fixed in tests
    /// for reproducible iteration order. `None` (the default): the core,
    /// which reads no randomness, uses the fixed seed 0, which a peer can
    /// plan collisions against; a transport should fill in a random seed
    /// (`mdp_zmq_adapter::BrokerRunner::bind` does, from the OS).
    pub hash_seed: Option<u64>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            heartbeat_interval: Duration::from_millis(2500),
            liveness: 3,
            busy_worker_timeout: None,
            max_job_time: None,
            request_timeout: Duration::from_secs(10),
            max_dispatches: 3,
            max_in_flight_per_client: None,
            policy: None,
            max_services: 10_000,
            max_workers: 100_000,
            max_queue_per_service: 100_000,
            max_queue_total: 1_000_000,
            max_message_frames: 1024,
            max_message_bytes: 64 << 20,
            max_queued_bytes: 256 << 20,
            max_queued_bytes_per_service: 128 << 20,
            max_service_name_bytes: 255,
            hash_seed: None,
        }
    }
}

impl BrokerConfig {
    /// What [`max_queued_bytes`](Self::max_queued_bytes) charges for each
    /// frame held, beyond its bytes: the frame's 32-byte handle, and what
    /// keeping its buffer costs beyond the bytes. For a frame copied into a
    /// buffer of its own that is up to 31 bytes of allocator rounding and a
    /// 32-byte shared header once the broker hands the frame on; for a
    /// large frame that `mdp_zmq_adapter` passes on without a copy, libzmq's
    /// 40-byte message header and the 96-byte block that keeps the libzmq
    /// message alive. 192 covers either.
    pub const FRAME_OVERHEAD: usize = 192;

    /// Checks the settings that cannot work: zero intervals, windows and
    /// limits that would make the broker refuse everything or spin, and a
    /// message limit below the shortest MDP command. [`Broker::new`] refuses
    /// a configuration this refuses.
    ///
    /// [`Broker::new`]: crate::Broker::new
    pub fn validate(&self) -> Result<(), ConfigError> {
        // A zero interval would set a heartbeat's timer at `now` itself, so
        // `handle_timeout` would never be done.
        nonzero(self.heartbeat_interval.is_zero(), "heartbeat_interval")?;
        nonzero(self.liveness == 0, "liveness")?;
        nonzero(self.request_timeout.is_zero(), "request_timeout")?;
        nonzero(self.max_dispatches == 0, "max_dispatches")?;
        nonzero(self.max_services == 0, "max_services")?;
        nonzero(self.max_workers == 0, "max_workers")?;
        nonzero(self.max_message_bytes == 0, "max_message_bytes")?;
        nonzero(self.max_queued_bytes == 0, "max_queued_bytes")?;
        nonzero(self.max_queued_bytes_per_service == 0, "max_queued_bytes_per_service")?;
        nonzero(self.max_service_name_bytes == 0, "max_service_name_bytes")?;
        if self.max_message_frames < 2 {
            return Err(ConfigError::TooSmall {
                setting: "max_message_frames",
                value: self.max_message_frames,
                min: 2,
                why: "the shortest MDP command (an RFC 18 HEARTBEAT) has 2 frames",
            });
        }
        Ok(())
    }

    /// [`max_in_flight_per_client`](Self::max_in_flight_per_client) as a
    /// number, `usize::MAX` for no limit.
    pub(crate) fn in_flight_limit(&self) -> usize {
        self.max_in_flight_per_client.map_or(usize::MAX, NonZeroUsize::get)
    }

    /// The silence after which an idle worker is removed.
    pub fn idle_worker_timeout(&self) -> Duration {
        self.heartbeat_interval.saturating_mul(self.liveness)
    }

    /// The silence after which a busy worker is removed.
    pub fn busy_timeout(&self) -> Duration {
        self.busy_worker_timeout.unwrap_or_else(|| self.idle_worker_timeout())
    }
}
