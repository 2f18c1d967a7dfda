//! The MDP broker state machine. What it promises is documented on
//! [`Broker`].
//!
//! The code is split by what each part handles: `request` (a client's
//! request, what it is charged, and its limits), `dispatch` (requests to idle workers and back),
//! `reply` (a worker's answer, joined for MDP/0.1 clients), `worker`
//! (registration and removal), `timers`, `mmi`, `eviction` (services without
//! workers), and `service` (one service's queues and idle list).

mod config;
mod dispatch;
mod event;
mod eviction;
mod metrics;
mod mmi;
mod policy;
mod reply;
mod request;
mod service;
mod timers;
mod worker;

use std::time::Instant;

use bytes::Bytes;

pub use config::BrokerConfig;
pub use event::{BrokerEvent, BrokerStats, DropReason, GoneReason, Limit, Misbehavior};
pub use metrics::{BrokerCounters, Histogram, ServiceCounters, ServiceMetrics, LATENCY_BOUNDS};
pub use policy::{Access, Grant, PeerPattern, Policy, PolicyError, PolicyErrorKind, ServicePattern};

use crate::hash::Seeded;
use crate::lazy::Ring;
use crate::slab::Slab;
use crate::time::DeadlineQueue;
use crate::{BrokerCommand, Command, ConfigError, Dialect, Multipart, PeerCommand, PeerId};
use service::{RequestTimers, Service, Tally};
use worker::WorkerRec;

/// A message for the transport to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The peer to send it to (for ZeroMQ: the ROUTER identity frame).
    pub to: PeerId,
    /// The frames, without the identity.
    pub frames: Multipart,
}

/// Which part of a reply a worker sent, or the broker sends a client: a
/// PARTIAL (MDP/0.2; more follows) or the FINAL (or 0.1's one REPLY).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Partial,
    Final,
}

/// Whether a worker being forgotten is told so. A worker that left
/// (DISCONNECT) or cannot be reached is not; one the broker drops is sent
/// DISCONNECT, so that it registers again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Farewell {
    Disconnect,
    Silent,
}

/// Timer key of a client's queue of requests to a service.
type QueueKey = (Bytes, PeerId);

/// The sans-IO MDP broker.
///
/// [`Broker`] routes client requests to workers of the named service, answers
/// MMI queries itself, heartbeats and expires workers, and queues and expires
/// requests. It speaks every dialect and answers each peer in its own; any
/// client can be served by any worker:
///
/// | worker sends    | MDP/0.1 client gets                     | MDP/0.2 or majortomo client gets |
/// |-----------------|-----------------------------------------|----------------------------------|
/// | REPLY (0.1)     | REPLY                                   | FINAL                            |
/// | PARTIAL (0.2)   | nothing yet: the part is buffered       | PARTIAL                          |
/// | FINAL (0.2)     | one REPLY: every buffered part's frames, then the FINAL's | FINAL          |
///
/// MDP/0.1 has no PARTIAL, so a 0.1 client gets a streamed reply joined into
/// one REPLY. The joined reply is held to the same limits as a message
/// ([`BrokerConfig::max_message_frames`], [`BrokerConfig::max_message_bytes`]);
/// past them the request is dropped with [`DropReason::ReplyTooLarge`], the
/// rest of the reply is discarded, and the client gets nothing, as if the
/// reply had been lost (it times out and may retry).
///
/// Routing is least-recently-used worker first, with clients served round
/// robin, each dispatch to the next client in turn.
///
/// # Fairness
///
/// Each client has its own FIFO of requests per service, and the service
/// serves its clients round robin: each dispatch takes the next request of
/// the next client in turn, so a client that floods a service waits its turn
/// behind every other client with a request queued there. A lone client gets
/// every idle worker; two flooding clients get half each.
///
/// # Parallelism and order
///
/// A client may have as many requests at workers at once as
/// [`BrokerConfig::max_in_flight_per_client`] allows (by default any
/// number): a client that pipelines to one service uses every idle worker
/// of it. Workers finish in their own time, so the replies to one client's
/// requests to one service may come back in another order than the
/// requests, as with every other MDP broker. MDP carries no request id, so a
/// client that keeps several requests for one service on one connection
/// must not rely on order; mdp-rs's own [`Client`](crate::Client) keeps one
/// per service on each of its connections (lanes), which makes matching
/// exact whatever the order. A limit of 1 serves one request per (client,
/// service) at a time, so replies come back in request order.
///
/// See the [crate docs](crate) for the loop that drives it.
#[derive(Debug)]
pub struct Broker {
    config: BrokerConfig,
    now: Instant,
    /// Workers and services by key, and by slab index for the links between
    /// them (a service's idle list, a worker's service): see `crate::slab`.
    workers: Slab<PeerId, WorkerRec>,
    services: Slab<Bytes, Service>,
    /// Keys every map (the services' client maps too).
    seed: Seeded,
    /// One live entry per worker, whose token the worker keeps.
    worker_timers: DeadlineQueue<PeerId>,
    /// One live entry per client queue that holds requests.
    request_timers: RequestTimers,
    transmits: std::collections::VecDeque<Transmit>,
    events: std::collections::VecDeque<BrokerEvent>,
    stats: BrokerStats,
    counters: BrokerCounters,
    busy_workers: usize,
    /// The sum of the services' tallies, written only by `Service`.
    totals: Tally,
    /// Services without workers, by slab index, in the order they became
    /// worker-less: the eviction order. Each such service keeps its token.
    workerless: Ring<usize>,
}

impl Broker {
    /// A broker with no workers and nothing queued. Fails if the
    /// configuration cannot work ([`BrokerConfig::validate`]).
    pub fn new(config: BrokerConfig, now: Instant) -> Result<Self, ConfigError> {
        config.validate()?;
        let seed = Seeded::new(config.hash_seed.unwrap_or(0));
        Ok(Broker {
            config,
            now,
            workers: Slab::new(seed),
            services: Slab::new(seed),
            seed,
            worker_timers: DeadlineQueue::default(),
            request_timers: RequestTimers::default(),
            transmits: Default::default(),
            events: Default::default(),
            stats: BrokerStats::default(),
            counters: BrokerCounters::default(),
            busy_workers: 0,
            totals: Tally::default(),
            workerless: Ring::default(),
        })
    }

    // ---- getters ----

    /// The configuration this broker runs with.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// Current counts and running totals.
    pub fn stats(&self) -> BrokerStats {
        BrokerStats {
            services: self.services.len(),
            idle_workers: self.workers.len() - self.busy_workers,
            busy_workers: self.busy_workers,
            queued_requests: self.totals.queued(),
            queued_bytes: self.totals.queued_bytes(),
            held_bytes: self.totals.held_bytes(),
            ..self.stats
        }
    }

    /// Whether `peer` is a registered worker.
    pub fn is_worker(&self, peer: &PeerId) -> bool {
        self.workers.contains_key(peer)
    }

    /// Registered workers of `service`, idle or busy.
    pub fn worker_count(&self, service: &[u8]) -> usize {
        self.services.get(service).map_or(0, |s| s.workers)
    }

    // ---- input ----

    /// Handles one message from `from` (the identity frame already removed).
    /// The peer has no authenticated name: under a
    /// [`policy`](BrokerConfig::policy) it gets what every peer is granted.
    pub fn handle_message(&mut self, now: Instant, from: PeerId, frames: Multipart) {
        self.handle(now, from, None, frames)
    }

    /// Handles one message from `from`, whose transport authenticated it as
    /// `name` (over ZeroMQ with ZAP: the User-Id of the message's first
    /// frame). The [`policy`](BrokerConfig::policy) decides what `name` may
    /// serve and call; without one, this is [`handle_message`](Self::handle_message).
    pub fn handle_authenticated(&mut self, now: Instant, from: PeerId, name: Bytes, frames: Multipart) {
        self.handle(now, from, Some(&name), frames)
    }

    fn handle(&mut self, now: Instant, from: PeerId, name: Option<&Bytes>, frames: Multipart) {
        self.advance(now);
        if let Some(limit) = self.over_size(&frames) {
            self.limit_hit(from.clone(), limit);
            if self.workers.contains_key(&from) {
                self.remove_worker(&from, GoneReason::Misbehaved, Farewell::Disconnect);
            }
            return;
        }
        match PeerCommand::decode(frames) {
            Err(e) => self.misbehaved(from, None, None, Misbehavior::Malformed(e)),
            Ok((dialect, PeerCommand::Request { service, body })) => {
                self.client_request(from, name, dialect, service, body)
            }
            Ok((dialect, PeerCommand::Ready { service })) => self.ready(from, name, dialect, service),
            Ok((dialect, PeerCommand::Partial { client, body })) => {
                self.worker_reply(from, dialect, client, body, Part::Partial)
            }
            Ok((dialect, PeerCommand::Final { client, body })) => {
                self.worker_reply(from, dialect, client, body, Part::Final)
            }
            Ok((dialect, PeerCommand::Heartbeat)) => {
                self.known_worker(&from, dialect, Command::Heartbeat);
            }
            Ok((_, PeerCommand::Disconnect)) => {
                if self.workers.contains_key(&from) {
                    self.remove_worker(&from, GoneReason::Disconnected, Farewell::Silent);
                }
            }
        }
    }

    /// Fires every timer due at `now`: heartbeats to workers, expiry of
    /// silent workers, expiry of queued requests. Calling it early or twice
    /// does nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        let now = self.now;
        while let Some((token, id)) = self.worker_timers.pop_due(now) {
            self.worker_timer(id, token);
        }
        while let Some((token, (service, client))) = self.request_timers.pop_due(now) {
            self.request_timer(service, client, token);
        }
        self.compact_timers();
    }

    /// The transport could not deliver to `peer` (for ZeroMQ: `EHOSTUNREACH`
    /// with `ZMQ_ROUTER_MANDATORY`). A worker is forgotten and its request
    /// re-queued; for a client there is nothing to do (it will retry).
    pub fn handle_unreachable(&mut self, now: Instant, peer: &PeerId) {
        self.advance(now);
        if self.workers.contains_key(peer) {
            self.remove_worker(peer, GoneReason::Unreachable, Farewell::Silent);
        }
    }

    /// Sends DISCONNECT to every worker, forgets them, and drops every
    /// request, each with an event. The broker is empty afterwards.
    pub fn shutdown(&mut self, now: Instant) {
        self.advance(now);
        let mut ids: Vec<PeerId> = self.workers.keys().cloned().collect();
        ids.sort();
        for id in ids {
            self.remove_worker_quiet(&id, GoneReason::Shutdown);
        }
        let mut names: Vec<Bytes> = self.services.keys().cloned().collect();
        names.sort();
        for name in names {
            let Some(mut s) = self.services.remove(&name) else { continue };
            for r in s.drain_queued(&mut self.totals) {
                self.request_dropped(None, r.client, name.clone(), DropReason::Shutdown);
            }
        }
        // Every request was dropped, and every service forgotten.
        debug_assert_eq!(self.totals, Tally::default());
        self.workerless.clear();
        self.request_timers = RequestTimers::default();
        self.worker_timers = DeadlineQueue::default();
    }

    // ---- output ----

    /// The next message to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<BrokerEvent> {
        self.events.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next. Never
    /// earlier than the latest `now` passed in; `None` when no timer is set.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let next = match (self.worker_timers.peek(), self.request_timers.peek()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        next.map(|t| t.max(self.now))
    }

    /// Sends a reply part to a client in its dialect.
    fn send_client(&mut self, to: PeerId, dialect: Dialect, service: &Bytes, part: Part, body: Multipart) {
        let service = (dialect != Dialect::Majortomo).then(|| service.clone());
        let cmd = match part {
            Part::Partial => BrokerCommand::Partial { service, body },
            Part::Final => BrokerCommand::Final { service, body },
        };
        self.send(to, dialect, cmd);
    }

    fn send(&mut self, to: PeerId, dialect: Dialect, cmd: BrokerCommand) {
        match cmd.encode(dialect) {
            Ok(frames) => self.transmits.push_back(Transmit { to, frames }),
            // Only reachable through a bug in this module: the broker never
            // builds a command its peer's dialect cannot carry.
            Err(e) => debug_assert!(false, "broker built an unencodable command: {e}"),
        }
    }

    // ---- bookkeeping ----

    fn advance(&mut self, now: Instant) {
        if now > self.now {
            self.now = now;
        }
    }

    fn over_size(&self, frames: &Multipart) -> Option<Limit> {
        if frames.len() > self.config.max_message_frames {
            return Some(Limit::MessageFrames);
        }
        let bytes: usize = frames.iter().map(Bytes::len).sum();
        (bytes > self.config.max_message_bytes).then_some(Limit::MessageBytes)
    }

    /// A request is dropped for `reason`; its service, at slab index `sid`
    /// if it is still known, counts it too.
    fn request_dropped(&mut self, sid: Option<usize>, client: PeerId, service: Bytes, reason: DropReason) {
        self.stats.dropped += 1;
        self.counters.drop_one(reason);
        if let Some(s) = sid.and_then(|sid| self.services.at_mut(sid)) {
            s.counters.drop_one(reason);
        }
        self.events.push_back(BrokerEvent::RequestDropped { client, service, reason });
    }

    fn limit_hit(&mut self, peer: PeerId, limit: Limit) {
        self.stats.limits_hit += 1;
        self.counters.limit_hit(limit);
        self.events.push_back(BrokerEvent::LimitHit { peer, limit });
    }

    /// A peer broke the protocol. A registered worker is sent DISCONNECT and
    /// forgotten; an unregistered peer whose dialect is known (it sent a
    /// worker command before READY) is sent DISCONNECT, which is how workers
    /// learn to register again after a broker restart.
    /// Whether the peer named `name` may `access` `service`.
    fn may(&self, name: Option<&Bytes>, access: Access, service: &[u8]) -> bool {
        self.config.policy.as_ref().map_or(true, |p| p.allows(name.map(|n| n.as_ref()), access, service))
    }

    fn denied(&mut self, peer: PeerId, name: Option<&Bytes>, access: Access, service: Bytes) {
        self.stats.denied += 1;
        self.events.push_back(BrokerEvent::AccessDenied { peer, name: name.cloned(), access, service });
    }

    fn misbehaved(&mut self, peer: PeerId, sent: Option<Command>, dialect: Option<Dialect>, reason: Misbehavior) {
        self.stats.misbehaviors += 1;
        self.counters.misbehaved(&reason);
        self.events.push_back(BrokerEvent::PeerMisbehaved { peer: peer.clone(), sent, reason });
        if self.workers.contains_key(&peer) {
            self.remove_worker(&peer, GoneReason::Misbehaved, Farewell::Disconnect);
        } else if let Some(dialect) = dialect {
            self.send(peer, dialect, BrokerCommand::Disconnect);
        }
    }

    /// Bytes the service at slab index `sid` now holds at a worker, on top
    /// of what it held.
    fn hold(&mut self, sid: usize, bytes: usize) {
        if let Some(s) = self.services.at_mut(sid) {
            s.hold(bytes, &mut self.totals);
        }
    }

    /// Bytes the service at slab index `sid` no longer holds at a worker.
    fn release_held(&mut self, sid: usize, bytes: usize) {
        if let Some(s) = self.services.at_mut(sid) {
            s.release(bytes, &mut self.totals);
        }
    }

    fn forget_if_unused(&mut self, sid: usize) {
        if self.services.at(sid).is_some_and(Service::is_unused) {
            if let Some((_, s)) = self.services.remove_at(sid) {
                self.forget_workerless(s.workerless);
            }
        }
    }
}
