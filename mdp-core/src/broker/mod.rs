//! The sans-IO MDP broker.
//!
//! [`Broker`] routes client requests to workers of the named service, answers
//! MMI queries itself, heartbeats and expires workers, and queues and expires
//! requests. It speaks every dialect and answers each peer in its own; any
//! client can be served by any worker:
//!
//! | worker sends    | MDP/0.1 client gets                     | MDP/0.2 or majortomo client gets |
//! |-----------------|-----------------------------------------|----------------------------------|
//! | REPLY (0.1)     | REPLY                                   | FINAL                            |
//! | PARTIAL (0.2)   | nothing yet: the part is buffered       | PARTIAL                          |
//! | FINAL (0.2)     | one REPLY: every buffered part's frames, then the FINAL's | FINAL          |
//!
//! MDP/0.1 has no PARTIAL, so a 0.1 client gets a streamed reply joined into
//! one REPLY. The joined reply is held to the same limits as a message
//! ([`BrokerConfig::max_message_frames`], [`BrokerConfig::max_message_bytes`]);
//! past them the request is dropped with [`DropReason::ReplyTooLarge`], the
//! rest of the reply is discarded, and the client gets nothing, as if the
//! reply had been lost (it times out and may retry).
//!
//! Routing is least-recently-used worker first, with clients served round
//! robin, each dispatch to the next client in turn. A client's requests to
//! a service go to as many idle workers as there are (up to
//! [`BrokerConfig::max_in_flight_per_client`]), so their replies may come
//! back in another order than the requests: see the `service` module's
//! notes on fairness and order.

mod config;
mod event;
mod eviction;
mod mmi;
mod service;
mod timers;
mod worker;

use std::time::Instant;

use bytes::Bytes;

pub use config::BrokerConfig;
pub use event::{BrokerEvent, BrokerStats, DropReason, GoneReason, Limit, Misbehavior};

use crate::hash::Seeded;
use crate::slab::Slab;
use crate::time::{add_saturating, DeadlineQueue};
use crate::{BrokerCommand, Command, ConfigError, Dialect, Multipart, PeerCommand, PeerId};
use mmi::MMI_PREFIX;
use service::{frames_charge, Request, Service};
use worker::{Job, Progress, WorkerRec};

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

/// The MDP broker state machine. See the [crate docs](crate) for the loop
/// that drives it.
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
    worker_timers: DeadlineQueue<(PeerId, u64)>,
    request_timers: DeadlineQueue<QueueKey>,
    transmits: std::collections::VecDeque<Transmit>,
    events: std::collections::VecDeque<BrokerEvent>,
    stats: BrokerStats,
    busy_workers: usize,
    /// Requests queued across all services.
    queued: usize,
    /// Bytes charged for the requests queued across all services, and for
    /// those workers hold with their joined PARTIALs.
    queued_bytes: usize,
    held_bytes: usize,
    /// Services without workers, by slab index and token, in the order they
    /// became worker-less: the eviction order. Stale entries (the service
    /// got a worker, or is gone) are skipped, and dropped when they
    /// outnumber the services.
    workerless: std::collections::VecDeque<(usize, u64)>,
    next_gen: u64,
    next_seq: u64,
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
            request_timers: DeadlineQueue::default(),
            transmits: Default::default(),
            events: Default::default(),
            stats: BrokerStats::default(),
            busy_workers: 0,
            queued: 0,
            queued_bytes: 0,
            held_bytes: 0,
            workerless: Default::default(),
            next_gen: 0,
            next_seq: 0,
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
            queued_requests: self.queued,
            queued_bytes: self.queued_bytes,
            held_bytes: self.held_bytes,
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
    pub fn handle_message(&mut self, now: Instant, from: PeerId, frames: Multipart) {
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
            Ok((dialect, PeerCommand::Request { service, body })) => self.client_request(from, dialect, service, body),
            Ok((dialect, PeerCommand::Ready { service })) => self.ready(from, dialect, service),
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
        while let Some((at, (id, gen))) = self.worker_timers.pop_due(now) {
            self.worker_timer(id, gen, at);
        }
        while let Some((at, (service, client))) = self.request_timers.pop_due(now) {
            self.request_timer(service, client, at);
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
            for r in s.drain_queued() {
                self.stats.dropped += 1;
                let reason = DropReason::Shutdown;
                self.events.push_back(BrokerEvent::RequestDropped { client: r.client, service: name.clone(), reason });
            }
        }
        self.queued = 0;
        self.queued_bytes = 0;
        self.held_bytes = 0;
        self.workerless.clear();
        self.request_timers = DeadlineQueue::default();
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

    // ---- clients ----

    fn client_request(&mut self, client: PeerId, dialect: Dialect, service: Bytes, body: Multipart) {
        self.stats.requests_received += 1;
        if service.starts_with(MMI_PREFIX) {
            return self.mmi(client, dialect, service, body);
        }
        if service.len() > self.config.max_service_name_bytes {
            return self.limit_hit(client, Limit::ServiceName);
        }
        let queued_total = self.queued;
        let bytes_total = self.queued_bytes + self.held_bytes;
        let charge = Request::charge(&client, &body);
        let Some(sid) = self.service_slot(&service) else { return self.limit_hit(client, Limit::Services) };
        let Some((name, s)) = self.services.entry_at_mut(sid) else { return };
        // The byte budget counts requests at workers as well as queued ones,
        // so it applies to a request an idle worker would take at once too.
        let over_bytes = if s.bytes() + charge > self.config.max_queued_bytes_per_service {
            Some(Limit::QueuedBytesPerService)
        } else if bytes_total + charge > self.config.max_queued_bytes {
            Some(Limit::QueuedBytes)
        } else {
            None
        };
        if let Some(limit) = over_bytes {
            self.forget_if_unused(sid);
            return self.limit_hit(client, limit);
        }
        // A request an idle worker takes at once never waits in a queue, so
        // a full queue does not refuse it, and it skips the queue. A queue
        // pushed *past* its limit by re-queued requests refuses even that
        // one: otherwise each such request could be re-queued in turn, and
        // the requests held (queued or at workers) would grow past
        // max_queue_total + max_workers.
        let over = s.queued > self.config.max_queue_per_service || queued_total > self.config.max_queue_total;
        let at_once = !over && s.begin_at_once(&client);
        let limit = if at_once {
            None
        } else if s.queued >= self.config.max_queue_per_service {
            Some(Limit::QueuePerService)
        } else if queued_total >= self.config.max_queue_total {
            Some(Limit::QueueTotal)
        } else {
            None
        };
        if let Some(limit) = limit {
            self.forget_if_unused(sid);
            return self.limit_hit(client, limit);
        }
        let deadline = add_saturating(self.now, self.config.request_timeout);
        let request = Request { client: client.clone(), dialect, body, deadline, dispatches: 0, charge };
        let first = if at_once {
            Some(request)
        } else {
            // The timer holds the service's own name, not this message's
            // copy of it.
            if let Some(at) = s.enqueue(request) {
                self.request_timers.push(at, (name.clone(), client));
            }
            self.queued += 1;
            self.queued_bytes += charge;
            if s.workers == 0 && s.workerless.is_none() {
                self.mark_workerless(sid);
            }
            None
        };
        self.dispatch(sid, first);
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

    fn worker_reply(&mut self, from: PeerId, dialect: Dialect, client: Bytes, body: Multipart, part: Part) {
        let is_final = part == Part::Final;
        let sent = match part {
            Part::Partial => Command::Partial,
            Part::Final => Command::Final,
        };
        let limits = (self.config.max_message_frames, self.config.max_message_bytes);
        let Some(wid) = self.known_worker(&from, dialect, sent) else { return };
        let Some(w) = self.workers.at_mut(wid) else { return };
        let service = w.service.clone();
        let sid = w.service_id;
        let Some(job) = w.job.as_mut().filter(|j| j.request.client.0 == client) else {
            return self.misbehaved(from, Some(sent), None, Misbehavior::NotServingClient);
        };
        let to = job.request.client.clone();
        let client_dialect = job.request.dialect;
        if job.discarding {
            if is_final {
                self.finish_job(wid);
            }
            return;
        }
        if client_dialect == Dialect::V01 {
            // 0.1 has one REPLY per request: join the parts.
            job.joined_bytes += body.iter().map(Bytes::len).sum::<usize>();
            // A PARTIAL is held until the FINAL, so it takes its share of
            // the byte budget; a FINAL goes out at once.
            let cost = if is_final { 0 } else { frames_charge(&body) };
            let service_bytes = self.services.at(sid).map_or(0, Service::bytes);
            let reason = if job.joined.len() + body.len() > limits.0 || job.joined_bytes > limits.1 {
                Some(DropReason::ReplyTooLarge)
            } else if cost > 0 && service_bytes + cost > self.config.max_queued_bytes_per_service {
                Some(DropReason::ReplyOverBudget(Limit::QueuedBytesPerService))
            } else if cost > 0 && self.queued_bytes + self.held_bytes + cost > self.config.max_queued_bytes {
                Some(DropReason::ReplyOverBudget(Limit::QueuedBytes))
            } else {
                None
            };
            if let Some(reason) = reason {
                job.discarding = true;
                job.joined = Vec::new();
                let freed = std::mem::take(&mut job.joined_charge);
                self.release_held(sid, freed);
                self.stats.dropped += 1;
                self.events.push_back(BrokerEvent::RequestDropped { client: to, service, reason });
                if is_final {
                    self.finish_job(wid);
                }
                return;
            }
            job.joined_charge += cost;
            if job.joined.is_empty() {
                // The usual case, no PARTIAL before: the FINAL's own frames
                // (and buffer) become the REPLY.
                job.joined = body;
            } else {
                job.joined.extend(body);
            }
            if !is_final {
                self.held_bytes += cost;
                if let Some(s) = self.services.at_mut(sid) {
                    s.held_bytes += cost;
                }
                return;
            }
            let joined = std::mem::take(&mut job.joined);
            self.stats.replies_sent += 1;
            self.send_client(to, client_dialect, &service, Part::Final, joined);
        } else if is_final {
            self.stats.replies_sent += 1;
            self.send_client(to, client_dialect, &service, Part::Final, body);
        } else {
            job.progress = Progress::Streamed;
            return self.send_client(to, client_dialect, &service, Part::Partial, body);
        }
        self.finish_job(wid);
    }

    /// The request of the worker at slab index `wid` is answered: the
    /// worker goes idle and the client's next request to this service may
    /// go.
    fn finish_job(&mut self, wid: usize) {
        let Some(w) = self.workers.at_mut(wid) else { return };
        let Some(job) = w.job.take() else { return };
        let sid = w.service_id;
        self.busy_workers -= 1;
        self.make_idle(wid);
        let charge = job.charge();
        self.held_bytes -= charge;
        let Some(s) = self.services.at_mut(sid) else { return };
        s.held_bytes -= charge;
        s.finish(job.request.client);
        // With nothing queued there is nothing to hand out, and the service
        // (which has this worker) stays: dispatch would do nothing.
        if s.queued > 0 {
            self.dispatch(sid, None);
        }
    }

    fn make_idle(&mut self, wid: usize) {
        let token = self.next_seq;
        self.next_seq += 1;
        let Some(w) = self.workers.at_mut(wid) else { return };
        w.idle_token = Some(token);
        if let Some(s) = self.services.at_mut(w.service_id) {
            s.push_idle(wid, token);
        }
    }

    /// Hands `first` (a request already marked in flight, see
    /// `Service::begin_at_once`), then queued requests of the service at
    /// slab index `sid`, to its idle workers; forgets the service if nothing
    /// refers to it any more.
    fn dispatch(&mut self, sid: usize, mut first: Option<Request>) {
        let Some((service, s)) = self.services.entry_at_mut(sid) else { return };
        loop {
            let mut request = match first.take() {
                Some(request) => request,
                None if s.idle_workers() > 0 => match s.next_request() {
                    Some(request) => {
                        self.queued -= 1;
                        self.queued_bytes -= request.charge;
                        request
                    }
                    None => break,
                },
                None => break,
            };
            // The least recently used idle worker; stale entries (of workers
            // that died) are skipped.
            let idle = loop {
                let Some((wid, token)) = s.pop_idle_entry() else { break None };
                match self.workers.entry_at_mut(wid) {
                    Some((id, w)) if w.idle_token == Some(token) => break Some((id, w)),
                    _ => continue,
                }
            };
            let Some((id, w)) = idle else {
                // Unreachable while `idle_workers` is accurate; put it back.
                let client = request.client.clone();
                self.queued_bytes += request.charge;
                if let Some(at) = s.requeue(request) {
                    self.request_timers.push(at, (service.clone(), client));
                }
                self.queued += 1;
                break;
            };
            s.took_idle();
            s.held_bytes += request.charge;
            self.held_bytes += request.charge;
            request.dispatches += 1;
            w.idle_token = None;
            w.next_heartbeat = add_saturating(self.now, self.config.heartbeat_interval);
            let frames = crate::codec::worker_request(w.dialect, request.client.0.clone(), &request.body);
            let client = request.client.clone();
            w.job = Some(Job::new(request, self.now));
            // A busy window shorter than the idle one moves the expiry earlier.
            let deadline = w.next_deadline(&self.config);
            if deadline < w.timer_at {
                w.timer_at = deadline;
                self.worker_timers.push(deadline, (id.clone(), w.gen));
            }
            self.busy_workers += 1;
            self.stats.dispatched += 1;
            self.events.push_back(BrokerEvent::RequestDispatched {
                client,
                service: service.clone(),
                worker: id.clone(),
            });
            self.transmits.push_back(Transmit { to: id.clone(), frames });
        }
        if s.is_unused() {
            self.services.remove_at(sid);
        }
    }

    /// A request whose worker was lost: back to the head of the queue, or
    /// dropped if part of its answer reached the client already,
    /// if it has been dispatched too often, or if it is past its deadline.
    fn requeue(&mut self, sid: usize, request: Request, progress: Progress) {
        let Some((service, s)) = self.services.entry_at_mut(sid) else { return };
        let client = request.client.clone();
        let event = if progress == Progress::Streamed {
            s.finish(client.clone());
            self.stats.dropped += 1;
            BrokerEvent::RequestDropped { client, service: service.clone(), reason: DropReason::PartlyAnswered }
        } else if request.dispatches >= self.config.max_dispatches {
            s.finish(client.clone());
            self.stats.dropped += 1;
            BrokerEvent::RequestDropped { client, service: service.clone(), reason: DropReason::TooManyDispatches }
        } else if request.deadline <= self.now {
            s.finish(client.clone());
            self.stats.expired += 1;
            BrokerEvent::RequestExpired { client, service: service.clone() }
        } else {
            let dispatches = request.dispatches;
            self.queued_bytes += request.charge;
            if let Some(at) = s.requeue(request) {
                self.request_timers.push(at, (service.clone(), client.clone()));
            }
            self.queued += 1;
            self.stats.requeued += 1;
            BrokerEvent::RequestRequeued { client, service: service.clone(), dispatches }
        };
        self.events.push_back(event);
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

    fn limit_hit(&mut self, peer: PeerId, limit: Limit) {
        self.stats.limits_hit += 1;
        self.events.push_back(BrokerEvent::LimitHit { peer, limit });
    }

    /// A peer broke the protocol. A registered worker is sent DISCONNECT and
    /// forgotten; an unregistered peer whose dialect is known (it sent a
    /// worker command before READY) is sent DISCONNECT, which is how workers
    /// learn to register again after a broker restart.
    fn misbehaved(&mut self, peer: PeerId, sent: Option<Command>, dialect: Option<Dialect>, reason: Misbehavior) {
        self.stats.misbehaviors += 1;
        self.events.push_back(BrokerEvent::PeerMisbehaved { peer: peer.clone(), sent, reason });
        if self.workers.contains_key(&peer) {
            self.remove_worker(&peer, GoneReason::Misbehaved, Farewell::Disconnect);
        } else if let Some(dialect) = dialect {
            self.send(peer, dialect, BrokerCommand::Disconnect);
        }
    }

    /// Bytes the service at slab index `sid` no longer holds at a worker.
    fn release_held(&mut self, sid: usize, bytes: usize) {
        self.held_bytes -= bytes;
        if let Some(s) = self.services.at_mut(sid) {
            s.held_bytes -= bytes;
        }
    }

    fn forget_if_unused(&mut self, sid: usize) {
        if self.services.at(sid).is_some_and(Service::is_unused) {
            self.services.remove_at(sid);
        }
    }
}
