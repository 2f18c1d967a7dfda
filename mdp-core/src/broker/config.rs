//! Broker settings and limits.

use std::num::NonZeroUsize;
use std::time::Duration;

/// How the broker times peers, and how much a peer may make it hold.
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
    /// this long. Default: 2.5 s (the Guide's and majortomo's). Zero is
    /// taken as 1 ms: a heartbeat due at once, forever, would keep
    /// `handle_timeout` from ever returning.
    pub heartbeat_interval: Duration,
    /// A worker that has sent nothing for `liveness × heartbeat_interval` is
    /// removed. Default: 3 (the Guide's).
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
    /// Most services known at once (a service exists while it has workers or
    /// queued requests). Default: 10,000.
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
    pub max_message_bytes: usize,
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
            max_services: 10_000,
            max_workers: 100_000,
            max_queue_per_service: 100_000,
            max_queue_total: 1_000_000,
            max_message_frames: 1024,
            max_message_bytes: 64 << 20,
            hash_seed: None,
        }
    }
}

impl BrokerConfig {
    /// The interval the broker heartbeats at: `heartbeat_interval`, but at
    /// least 1 ms, so that a heartbeat's timer is always set after `now`.
    pub(crate) fn heartbeat_period(&self) -> Duration {
        self.heartbeat_interval.max(Duration::from_millis(1))
    }

    /// [`max_in_flight_per_client`](Self::max_in_flight_per_client) as a
    /// number, `usize::MAX` for no limit.
    pub(crate) fn in_flight_limit(&self) -> usize {
        self.max_in_flight_per_client.map_or(usize::MAX, NonZeroUsize::get)
    }

    /// The silence after which an idle worker is removed.
    pub fn idle_worker_timeout(&self) -> Duration {
        self.heartbeat_period().saturating_mul(self.liveness.max(1))
    }

    /// The silence after which a busy worker is removed.
    pub fn busy_timeout(&self) -> Duration {
        self.busy_worker_timeout.unwrap_or_else(|| self.idle_worker_timeout())
    }
}
