//! A service: its idle workers, and its clients' queued requests.
//!
//! How it serves its clients (fairness, parallelism, order) is documented
//! on [`Broker`](super::Broker).

use std::collections::hash_map::Entry;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::metrics::ServiceCounters;
use super::request::Request;
use super::QueueKey;
use crate::hash::{Map, Seeded};
use crate::lazy::{Ring, Token};
use crate::time::{passed, DeadlineQueue};
use crate::PeerId;

/// The broker's request timers: one live entry per client queue that holds
/// requests, for its front request's deadline.
pub(crate) type RequestTimers = DeadlineQueue<QueueKey>;

/// What a service's queue methods keep up to date besides the service
/// itself: the broker's totals, and its request timers, whose keys name the
/// service.
pub(crate) struct Books<'a> {
    pub(crate) totals: &'a mut Tally,
    pub(crate) timers: &'a mut RequestTimers,
    /// The service's own name (the broker's key for it).
    pub(crate) service: &'a Bytes,
}

/// Requests queued, and the bytes charged for them and for those workers
/// hold: of one service, or summed over the broker's services.
///
/// Each service keeps its own, and the broker keeps the sum. Only the
/// service's queue methods below write either, always both at once, so the
/// sum cannot drift from its parts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tally {
    queued: usize,
    queued_bytes: usize,
    held_bytes: usize,
}

impl Tally {
    /// Requests waiting in a queue.
    pub(crate) fn queued(&self) -> usize {
        self.queued
    }

    /// Bytes charged for the queued requests.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Bytes charged for the requests workers hold, and for the PARTIALs
    /// being joined for MDP/0.1 clients.
    pub(crate) fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// Bytes charged, queued and held.
    pub(crate) fn bytes(&self) -> usize {
        self.queued_bytes + self.held_bytes
    }
}

/// One client's requests to one service.
#[derive(Debug, Default)]
struct ClientQueue {
    requests: VecDeque<Request>,
    /// How many of this client's requests to this service workers hold.
    in_flight: usize,
    /// Set while the client has a turn in the service's round-robin ring:
    /// the token of its live entry there. Every client with requests queued
    /// and room for one more in flight has a turn.
    turn: Option<Token>,
    /// This queue's live expiry timer entry: its deadline and token. One
    /// entry per queue, not per request: the queue is in deadline order, so
    /// only its front can be due.
    timer: Option<(Instant, Token)>,
}

impl ClientQueue {
    /// A request with `deadline` joined `client`'s queue: pushes a new timer
    /// entry if the live one (if any) would fire too late.
    /// A deadline that is never needs no entry.
    fn arm(&mut self, deadline: Option<Instant>, client: &PeerId, books: &mut Books) {
        let Some(deadline) = deadline else { return };
        if self.timer.is_some_and(|(at, _)| at <= deadline) {
            return;
        }
        let token = books.timers.push(deadline, (books.service.clone(), client.clone()));
        self.timer = Some((deadline, token));
    }

    /// Gives `client` (whose queue this is) a turn, at the back of the ring
    /// or, for a re-queued request, at the front, unless it has one already.
    fn give_turn(&mut self, turns: &mut Ring<PeerId>, client: &PeerId, place: Place) {
        if self.turn.is_none() {
            self.turn = Some(match place {
                Place::Front => turns.push_front(client.clone()),
                Place::Back => turns.push_back(client.clone()),
            });
        }
    }

    /// Takes the client's turn away; its ring entry turns stale.
    fn revoke_turn(&mut self, turns: &mut Ring<PeerId>) {
        if self.turn.take().is_some() {
            turns.forget();
        }
    }

    /// Nothing queued and nothing in flight: the entry can go (a ring entry
    /// it may still have turns stale).
    fn is_idle(&self) -> bool {
        self.requests.is_empty() && self.in_flight == 0
    }
}

/// Where in the ring a client's new turn goes.
#[derive(Debug, Clone, Copy)]
enum Place {
    /// Next: a re-queued request was first in line before its worker was lost.
    Front,
    /// Last: the usual place of a client that waited for nothing.
    Back,
}

#[derive(Debug)]
pub(crate) struct Service {
    /// Registered workers, idle or busy.
    pub(crate) workers: usize,
    /// Idle workers (their index in the broker's worker slab), least
    /// recently used first; each worker keeps its entry's token while idle.
    idle: Ring<usize>,
    /// Clients with queued requests and room for one more in flight, in
    /// turn order.
    turns: Ring<PeerId>,
    clients: Map<PeerId, ClientQueue>,
    /// What this service queues and holds; written only together with the
    /// broker's sum, by the methods below.
    tally: Tally,
    /// Set while the service has no workers: its token in the broker's
    /// ring of worker-less services, oldest first, the eviction order.
    pub(crate) workerless: Option<Token>,
    /// Most requests of one client at workers at once.
    max_in_flight: usize,
    /// How long a request may wait in its queue (`BrokerConfig::request_timeout`).
    request_timeout: Duration,
    /// Its running totals, for [`Broker::service_metrics`](super::Broker::service_metrics)
    /// (boxed: they are read a few times a minute, the rest on every message).
    pub(crate) counters: Box<ServiceCounters>,
}

impl Service {
    /// `max_in_flight`: most requests of one client at workers at once;
    /// `request_timeout`: how long a request may wait in a queue.
    pub(crate) fn new(seed: Seeded, max_in_flight: usize, request_timeout: Duration) -> Self {
        Service {
            workers: 0,
            idle: Ring::default(),
            turns: Ring::default(),
            clients: Map::with_hasher(seed),
            tally: Tally::default(),
            workerless: None,
            max_in_flight: max_in_flight.max(1),
            request_timeout,
            counters: Box::default(),
        }
    }

    /// Nothing refers to this service any more; it can be forgotten.
    pub(crate) fn is_unused(&self) -> bool {
        self.workers == 0 && self.tally.queued == 0 && self.clients.is_empty()
    }

    /// What this service queues and holds.
    pub(crate) fn tally(&self) -> Tally {
        self.tally
    }

    /// A request charged `charge` joined a queue.
    fn count_queued(&mut self, charge: usize, total: &mut Tally) {
        for t in [&mut self.tally, total] {
            t.queued += 1;
            t.queued_bytes += charge;
        }
    }

    /// A request charged `charge` left a queue.
    fn count_unqueued(&mut self, charge: usize, total: &mut Tally) {
        for t in [&mut self.tally, total] {
            t.queued -= 1;
            t.queued_bytes -= charge;
        }
    }

    /// A worker of this service now holds `bytes` more: a request, or a
    /// PARTIAL joined for an MDP/0.1 client.
    pub(crate) fn hold(&mut self, bytes: usize, total: &mut Tally) {
        self.tally.held_bytes += bytes;
        total.held_bytes += bytes;
    }

    /// A worker of this service no longer holds `bytes`.
    pub(crate) fn release(&mut self, bytes: usize, total: &mut Tally) {
        self.tally.held_bytes -= bytes;
        total.held_bytes -= bytes;
    }

    /// Clients with a request queued here or at one of its workers.
    pub(crate) fn clients(&self) -> usize {
        self.clients.len()
    }

    pub(crate) fn idle_workers(&self) -> usize {
        self.idle.live()
    }

    /// Adds the worker at slab index `worker` to the back of the idle list;
    /// it keeps the token while it is idle.
    pub(crate) fn push_idle(&mut self, worker: usize) -> Token {
        self.idle.push_back(worker)
    }

    /// Takes the least recently used idle worker off the list, skipping
    /// stale entries (`is_live` tells them apart).
    pub(crate) fn take_idle(&mut self, is_live: impl FnMut(&usize, Token) -> bool) -> Option<usize> {
        self.idle.pop(is_live)
    }

    /// An idle worker died, and dropped its token: its entry is now stale.
    pub(crate) fn forget_idle(&mut self, is_live: impl FnMut(&usize, Token) -> bool) {
        self.idle.forget();
        self.idle.compact(is_live);
    }

    /// If a request from `client` can go to a worker at once, without
    /// waiting in the queue (a worker is idle, the client has nothing queued
    /// here and room for one more in flight), counts it in flight and
    /// returns true: the caller hands the request over itself, and it is
    /// never queued. Otherwise changes nothing. (While a worker is idle,
    /// every queued request belongs to a client with no room in flight, so
    /// this jumps no one.)
    pub(crate) fn begin_at_once(&mut self, client: &PeerId) -> bool {
        if self.idle.live() == 0 {
            return false;
        }
        let q = self.clients.entry(client.clone()).or_default();
        if q.requests.is_empty() && q.in_flight < self.max_in_flight {
            q.in_flight += 1;
            true
        } else {
            false
        }
    }

    /// Queues a request at the back of its client's FIFO. Returns the time
    /// for a new expiry timer entry of the queue, if it needs one.
    pub(crate) fn enqueue(&mut self, mut request: Request, mut books: Books) {
        // The frames' buffer still has room for the header frames decoding
        // removed: 32 bytes a frame that a waiting request need not hold.
        request.body.shrink_to_fit();
        let client = request.client.clone();
        let q = self.clients.entry(client.clone()).or_default();
        let deadline = request.deadline(self.request_timeout);
        if q.requests.capacity() == 0 {
            // Most clients have one request waiting, not the four a first
            // push would make room for.
            q.requests.reserve_exact(1);
        }
        let charge = request.charge;
        q.requests.push_back(request);
        q.arm(deadline, &client, &mut books);
        if q.in_flight < self.max_in_flight {
            q.give_turn(&mut self.turns, &client, Place::Back);
        }
        self.count_queued(charge, books.totals);
    }

    /// Puts a request whose worker was lost back at the head of the queue:
    /// first in its client's FIFO, and its client first in turn. Returns the
    /// time for a new expiry timer entry of the queue, if it needs one.
    pub(crate) fn requeue(&mut self, request: Request, mut books: Books) {
        let client = request.client.clone();
        let q = self.clients.entry(client.clone()).or_default();
        q.in_flight = q.in_flight.saturating_sub(1);
        let deadline = request.deadline(self.request_timeout);
        let charge = request.charge;
        q.requests.push_front(request);
        q.arm(deadline, &client, &mut books);
        q.give_turn(&mut self.turns, &client, Place::Front);
        self.count_queued(charge, books.totals);
    }

    /// The next request to dispatch: the front of the queue of the next
    /// client in turn. Counts it in flight; the client goes to the back of
    /// the ring if it has more queued and room for more in flight.
    pub(crate) fn next_request(&mut self, total: &mut Tally) -> Option<Request> {
        while let Some((client, token)) = self.turns.pop_front() {
            // One lookup for the check and the change: hence not `pop`.
            let Some(q) = self.clients.get_mut(&client) else { continue };
            if q.turn != Some(token) {
                continue;
            }
            q.turn = None;
            self.turns.took();
            if q.in_flight >= self.max_in_flight {
                // It gets a turn back when one of its requests is over.
                continue;
            }
            let Some(request) = q.requests.pop_front() else {
                if q.is_idle() {
                    self.clients.remove(&client);
                }
                continue;
            };
            q.in_flight += 1;
            if q.requests.is_empty() {
                // Nothing left to expire: the timer entry goes stale.
                q.timer = None;
            } else if q.in_flight < self.max_in_flight {
                q.give_turn(&mut self.turns, &client, Place::Back);
            }
            self.count_unqueued(request.charge, total);
            return Some(request);
        }
        None
    }

    /// One in-flight request of `client` is over (answered or dropped).
    pub(crate) fn finish(&mut self, client: PeerId) {
        let Entry::Occupied(mut e) = self.clients.entry(client) else { return };
        let q = e.get_mut();
        q.in_flight = q.in_flight.saturating_sub(1);
        if !q.requests.is_empty() {
            let client = e.key().clone();
            e.into_mut().give_turn(&mut self.turns, &client, Place::Back);
        } else if q.in_flight == 0 {
            e.remove().revoke_turn(&mut self.turns);
            self.compact_ring();
        }
    }

    /// Sweeps stale turns out of the ring, if that is due.
    fn compact_ring(&mut self) {
        let clients = &self.clients;
        self.turns.compact(|c, t| clients.get(c).is_some_and(|q| q.turn == Some(t)));
    }

    /// The expiry timer entry of `client`'s queue with `token` fired:
    /// removes the requests due at `now` (queues are in deadline order, so
    /// they are at the front) into `expired`, and arms the queue's next
    /// entry if it still holds requests. A stale entry does nothing.
    pub(crate) fn expire(
        &mut self,
        client: &PeerId,
        token: Token,
        now: Instant,
        expired: &mut Vec<Request>,
        mut books: Books,
    ) {
        let Some(q) = self.clients.get_mut(client) else { return };
        if q.timer.map(|(_, t)| t) != Some(token) {
            return;
        }
        q.timer = None;
        let timeout = self.request_timeout;
        while q.requests.front().is_some_and(|r| passed(r.deadline(timeout), now)) {
            if let Some(r) = q.requests.pop_front() {
                // `count_unqueued`, on the fields: `q` borrows the client map.
                for t in [&mut self.tally, &mut *books.totals] {
                    t.queued -= 1;
                    t.queued_bytes -= r.charge;
                }
                expired.push(r);
            }
        }
        if let Some(front) = q.requests.front() {
            return q.arm(front.deadline(timeout), client, &mut books);
        }
        // Nothing queued: no turn either, so a later request of this client
        // queues behind those that came before it.
        q.revoke_turn(&mut self.turns);
        if q.is_idle() {
            self.clients.remove(client);
        }
        self.compact_ring();
    }

    /// The token of `client`'s live expiry timer entry, if it has one.
    pub(crate) fn timer_of(&self, client: &PeerId) -> Option<Token> {
        Some(self.clients.get(client)?.timer?.1)
    }

    /// Empties every queue (for shutdown and eviction, when no worker holds
    /// a request of this service).
    pub(crate) fn drain_queued(&mut self, total: &mut Tally) -> impl Iterator<Item = Request> + '_ {
        total.queued -= self.tally.queued;
        total.queued_bytes -= self.tally.queued_bytes;
        self.tally.queued = 0;
        self.tally.queued_bytes = 0;
        self.turns.clear();
        self.clients.drain().flat_map(|(_, q)| q.requests)
    }
}
