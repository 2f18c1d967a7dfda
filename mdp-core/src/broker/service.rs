//! A service: its idle workers, and its clients' queued requests.
//!
//! # Fairness and order
//!
//! Each client has its own FIFO of requests per service, and the service
//! serves its clients round robin: a client that floods a service waits its
//! turn behind every other client with a request queued there.
//!
//! A client has at most one request *in flight* per service. MDP carries no
//! request ids, so a client can only match replies to requests by order; if
//! two workers served one client's requests to one service at once, replies
//! could overtake each other and be matched to the wrong request. Serving one
//! at a time per (client, service) makes order-based matching exact. Requests
//! from different clients, or to different services, still run in parallel.

use std::collections::hash_map::Entry;
use std::collections::VecDeque;
use std::time::Instant;

use crate::hash::{Map, Seeded};
use crate::{Dialect, Multipart, PeerId};

/// A request waiting for, or held by, a worker.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) client: PeerId,
    pub(crate) dialect: Dialect,
    pub(crate) body: Multipart,
    /// When it expires if it is still queued.
    pub(crate) deadline: Instant,
    /// How many times it has been handed to a worker.
    pub(crate) dispatches: u32,
}

/// One client's requests to one service.
#[derive(Debug, Default)]
struct ClientQueue {
    requests: VecDeque<Request>,
    /// A worker holds one of this client's requests to this service.
    in_flight: bool,
    /// Set while the client has a turn in the service's round-robin ring;
    /// matches the ring entry that is live.
    turn: Option<u64>,
    /// The deadline of this queue's live expiry timer entry. One entry per
    /// queue, not per request: the queue is in deadline order, so only its
    /// front can be due. Entries at other times are stale.
    timer_at: Option<Instant>,
}

impl ClientQueue {
    /// A request with `deadline` joined the queue: returns the time for a new
    /// timer entry if the live one (if any) would fire too late.
    fn arm(&mut self, deadline: Instant) -> Option<Instant> {
        if self.timer_at.is_some_and(|t| t <= deadline) {
            return None;
        }
        self.timer_at = Some(deadline);
        Some(deadline)
    }

    /// Nothing queued and nothing in flight: the entry can go (a ring entry
    /// it may still have turns stale).
    fn is_idle(&self) -> bool {
        self.requests.is_empty() && !self.in_flight
    }
}

#[derive(Debug)]
pub(crate) struct Service {
    /// Registered workers, idle or busy.
    pub(crate) workers: usize,
    /// Idle workers (their index in the broker's worker slab), least
    /// recently used first. Entries carry the worker's idle token; an entry
    /// whose token no longer matches is stale (the worker died, and its slot
    /// may hold another worker by now) and is skipped, so removal is O(1).
    idle: VecDeque<(usize, u64)>,
    idle_live: usize,
    /// Clients with queued requests and nothing in flight, in turn order.
    /// Entries carry the client's turn token; an entry whose token no longer
    /// matches is stale (the client's last request expired) and is skipped.
    ring: VecDeque<(PeerId, u64)>,
    ring_live: usize,
    next_turn: u64,
    clients: Map<PeerId, ClientQueue>,
    pub(crate) queued: usize,
}

impl Service {
    pub(crate) fn new(seed: Seeded) -> Self {
        Service {
            workers: 0,
            idle: VecDeque::new(),
            idle_live: 0,
            ring: VecDeque::new(),
            ring_live: 0,
            next_turn: 0,
            clients: Map::with_hasher(seed),
            queued: 0,
        }
    }

    /// Nothing refers to this service any more; it can be forgotten.
    pub(crate) fn is_unused(&self) -> bool {
        self.workers == 0 && self.queued == 0 && self.clients.is_empty()
    }

    pub(crate) fn idle_workers(&self) -> usize {
        self.idle_live
    }

    pub(crate) fn push_idle(&mut self, worker: usize, token: u64) {
        self.idle.push_back((worker, token));
        self.idle_live += 1;
    }

    /// Pops the least recently used idle-list entry, live or stale. The
    /// caller checks it against the worker's token and, if it is live,
    /// calls [`took_idle`](Self::took_idle).
    pub(crate) fn pop_idle_entry(&mut self) -> Option<(usize, u64)> {
        self.idle.pop_front()
    }

    /// The entry just popped was live: one idle worker fewer.
    pub(crate) fn took_idle(&mut self) {
        self.idle_live -= 1;
    }

    /// An idle worker died: its entry is now stale. Compacts the list when
    /// stale entries outnumber live ones, so it stays O(live) in size.
    pub(crate) fn forget_idle(&mut self, mut valid: impl FnMut(usize, u64) -> bool) {
        self.idle_live -= 1;
        if self.idle.len() > 2 * self.idle_live + 8 {
            self.idle.retain(|(w, t)| valid(*w, *t));
        }
    }

    /// If a request from `client` can go to a worker at once, without
    /// waiting in the queue (a worker is idle and the client has nothing
    /// queued or in flight here), marks the client as having one in flight
    /// and returns true: the caller hands the request over itself, and it
    /// is never queued. Otherwise changes nothing. (While a worker is idle,
    /// every queued request belongs to a client that has one in flight.)
    pub(crate) fn begin_at_once(&mut self, client: &PeerId) -> bool {
        if self.idle_live == 0 {
            return false;
        }
        let q = self.clients.entry(client.clone()).or_default();
        if q.is_idle() && q.turn.is_none() {
            q.in_flight = true;
            true
        } else {
            false
        }
    }

    /// Queues a request at the back of its client's FIFO. Returns the time
    /// for a new expiry timer entry of the queue, if it needs one.
    pub(crate) fn enqueue(&mut self, mut request: Request) -> Option<Instant> {
        // The frames' buffer still has room for the header frames decoding
        // removed: 32 bytes a frame that a waiting request need not hold.
        request.body.shrink_to_fit();
        let client = request.client.clone();
        let token = self.next_turn;
        let q = self.clients.entry(client.clone()).or_default();
        let deadline = request.deadline;
        if q.requests.capacity() == 0 {
            // Most clients have one request waiting, not the four a first
            // push would make room for.
            q.requests.reserve_exact(1);
        }
        q.requests.push_back(request);
        self.queued += 1;
        let timer = q.arm(deadline);
        if !q.in_flight && q.turn.is_none() {
            q.turn = Some(token);
            self.next_turn += 1;
            self.ring_live += 1;
            self.ring.push_back((client, token));
        }
        timer
    }

    /// Puts a request whose worker was lost back at the head of the queue:
    /// first in its client's FIFO, and its client first in turn. Returns the
    /// time for a new expiry timer entry of the queue, if it needs one.
    pub(crate) fn requeue(&mut self, request: Request) -> Option<Instant> {
        let client = request.client.clone();
        let token = self.next_turn;
        let q = self.clients.entry(client.clone()).or_default();
        q.in_flight = false;
        let deadline = request.deadline;
        q.requests.push_front(request);
        self.queued += 1;
        let timer = q.arm(deadline);
        if q.turn.is_none() {
            q.turn = Some(token);
            self.next_turn += 1;
            self.ring_live += 1;
            self.ring.push_front((client, token));
        }
        timer
    }

    /// The next request to dispatch, by client turn. Marks it in flight.
    pub(crate) fn next_request(&mut self) -> Option<Request> {
        while let Some((client, token)) = self.ring.pop_front() {
            let Some(q) = self.clients.get_mut(&client) else { continue };
            if q.turn != Some(token) {
                continue;
            }
            q.turn = None;
            self.ring_live -= 1;
            if q.in_flight {
                continue;
            }
            match q.requests.pop_front() {
                Some(request) => {
                    q.in_flight = true;
                    self.queued -= 1;
                    if q.requests.is_empty() {
                        // Nothing left to expire: the timer entry goes stale.
                        q.timer_at = None;
                    }
                    return Some(request);
                }
                None => {
                    self.clients.remove(&client);
                }
            }
        }
        None
    }

    /// The in-flight request of `client` is over (answered or dropped).
    pub(crate) fn finish(&mut self, client: PeerId) {
        let token = self.next_turn;
        let Entry::Occupied(mut e) = self.clients.entry(client) else { return };
        let q = e.get_mut();
        q.in_flight = false;
        if !q.requests.is_empty() {
            if q.turn.is_none() {
                q.turn = Some(token);
                self.next_turn += 1;
                self.ring_live += 1;
                self.ring.push_back((e.key().clone(), token));
            }
        } else {
            if e.remove().turn.is_some() {
                self.ring_live -= 1;
            }
            self.compact_ring();
        }
    }

    /// Forgets a client with nothing queued or in flight; its ring entry,
    /// if any, turns stale.
    fn remove_client(&mut self, client: &PeerId) {
        if let Some(q) = self.clients.remove(client) {
            if q.turn.is_some() {
                self.ring_live -= 1;
            }
        }
        self.compact_ring();
    }

    /// Compacts the ring when stale entries outnumber live ones, so it
    /// stays O(live) in size.
    fn compact_ring(&mut self) {
        if self.ring.len() > 2 * self.ring_live + 8 {
            let clients = &self.clients;
            self.ring.retain(|(c, t)| clients.get(c).is_some_and(|q| q.turn == Some(*t)));
        }
    }

    /// The expiry timer entry of `client`'s queue, set for `at`, fired:
    /// removes the requests due at `now` (queues are in deadline order, so
    /// they are at the front) into `expired`, and returns the time for the
    /// queue's next entry, if it still holds requests. A stale entry does
    /// nothing.
    pub(crate) fn expire(
        &mut self,
        client: &PeerId,
        at: Instant,
        now: Instant,
        expired: &mut Vec<Request>,
    ) -> Option<Instant> {
        let q = self.clients.get_mut(client)?;
        if q.timer_at != Some(at) {
            return None;
        }
        q.timer_at = None;
        while q.requests.front().is_some_and(|r| r.deadline <= now) {
            expired.extend(q.requests.pop_front());
            self.queued -= 1;
        }
        let next = q.requests.front().map(|r| r.deadline);
        if let Some(next) = next {
            q.timer_at = Some(next);
        } else if q.is_idle() {
            self.remove_client(client);
        }
        next
    }

    /// Every live expiry timer entry, to rebuild the timer queue.
    pub(crate) fn timers(&self) -> impl Iterator<Item = (Instant, &PeerId)> {
        self.clients.iter().filter_map(|(client, q)| Some((q.timer_at?, client)))
    }

    /// Empties every queue (for shutdown).
    pub(crate) fn drain_queued(&mut self) -> impl Iterator<Item = Request> + '_ {
        self.queued = 0;
        self.ring.clear();
        self.ring_live = 0;
        self.clients.drain().flat_map(|(_, q)| q.requests)
    }
}
