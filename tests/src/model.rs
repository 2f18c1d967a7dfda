//! The reference model and the invariants (after firezone's `tunnel_test`).
//!
//! The [`Checker`] is told everything that crosses the simulated network and
//! every event the state machines emit, keeps its own small model of what
//! must be true, and reports a [`Violation`] the moment it is not:
//!
//! * a client only gets answers to requests it has outstanding, each the
//!   answer to *that* request (see [`part_body`] and [`final_body`]), parts in
//!   order, nothing after the last part, and replies per (client, service)
//!   in request order;
//! * every request is answered once or reported failed, never both, never
//!   twice, and after quiescence none is left unaccounted for;
//! * a worker never holds two requests: the broker dispatches only to a
//!   registered, idle worker, a REQUEST on the wire always matches such a
//!   dispatch, and no worker is handed a REQUEST while busy;
//! * a crashed worker is removed by the broker within its liveness window
//!   after its last message arrived;
//! * the broker stays within its configured limits;
//! * no state machine asks to be woken in the past.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mdp_core::{
    BrokerCommand, BrokerConfig, BrokerEvent, BrokerStats, ClientEvent, Dialect, PeerCommand, PeerId, RequestId,
};

/// The body of the `i`th PARTIAL a simulated worker sends for a request
/// whose body is `tag`.
pub fn part_body(tag: &[u8], i: usize) -> Bytes {
    let mut b = tag.to_vec();
    b.extend_from_slice(format!("/p{i}").as_bytes());
    Bytes::from(b)
}

/// The body of the FINAL a simulated worker sends for a request whose body
/// is `tag`.
pub fn final_body(tag: &[u8]) -> Bytes {
    let mut b = tag.to_vec();
    b.extend_from_slice(b"/final");
    Bytes::from(b)
}

/// A broken invariant: what, and when (time since the simulation started).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Virtual time since the start.
    pub at: Duration,
    /// What was wrong, precisely.
    pub what: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invariant violated at t+{:?}: {}", self.at, self.what)
    }
}

/// A request outstanding at a client, as the model sees it.
#[derive(Debug, Clone)]
struct Outstanding {
    service: Bytes,
    tag: Bytes,
    /// Index of the next PARTIAL expected.
    next_part: usize,
}

/// What the model knows of a worker registered with the current broker.
#[derive(Debug, Clone)]
struct Registered {
    /// The broker handed it a request it has not answered with FINAL.
    holding: bool,
    /// When its last message reached the broker.
    last_delivered: Instant,
}

/// Running totals of what the model saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelCounts {
    /// Requests issued by clients.
    pub issued: u64,
    /// Requests answered (a Reply reached their client).
    pub answered: u64,
    /// Requests their client reported Failed.
    pub failed: u64,
    /// PARTIALs delivered to clients.
    pub partials: u64,
    /// Requests restarted by their client.
    pub restarted: u64,
}

/// The reference model and invariant checker. See the [module docs](self).
#[derive(Debug)]
pub struct Checker {
    t0: Instant,
    /// Panic on the first violation (the default), or collect them.
    pub panic_on_violation: bool,
    violations: Vec<Violation>,
    /// Per client: its dialect and its outstanding requests.
    clients: Vec<(Dialect, HashMap<RequestId, Outstanding>)>,
    /// Last answered id per (client, service).
    last_answered: HashMap<(usize, Bytes), RequestId>,
    /// PARTIALs per streamed answer from a 0.2 worker.
    partials: usize,
    workers: HashMap<PeerId, Registered>,
    /// Dispatches announced by events, not yet seen as a REQUEST transmit.
    announced: HashMap<PeerId, u32>,
    /// Crashed worker connections, still registered, and when they crashed.
    crashed: HashMap<PeerId, Instant>,
    counts: ModelCounts,
}

impl Checker {
    /// A checker for workers that stream `partials` PARTIALs per answer.
    pub fn new(t0: Instant, partials: usize) -> Self {
        Checker {
            t0,
            panic_on_violation: true,
            violations: Vec::new(),
            clients: Vec::new(),
            last_answered: HashMap::new(),
            partials,
            workers: HashMap::new(),
            announced: HashMap::new(),
            crashed: HashMap::new(),
            counts: ModelCounts::default(),
        }
    }

    /// What the model counted.
    pub fn counts(&self) -> ModelCounts {
        self.counts
    }

    /// The violations collected (only when not panicking on them).
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// Requests outstanding at client `client`, as the model sees them.
    pub fn outstanding(&self, client: usize) -> usize {
        self.clients.get(client).map_or(0, |c| c.1.len())
    }

    /// Requests outstanding at client `client` for `service`.
    pub fn outstanding_for(&self, client: usize, service: &[u8]) -> usize {
        self.clients.get(client).map_or(0, |c| c.1.values().filter(|o| o.service == service).count())
    }

    /// Whether the model thinks `worker` is registered with the broker.
    pub fn is_registered(&self, worker: &PeerId) -> bool {
        self.workers.contains_key(worker)
    }

    /// Reports a violation: panics, or records it.
    pub fn violate(&mut self, now: Instant, what: String) {
        let v = Violation { at: now.saturating_duration_since(self.t0), what };
        if self.panic_on_violation {
            panic!("{v}");
        }
        self.violations.push(v);
    }

    // ---- clients ----

    /// A client was added; returns its index.
    pub fn add_client(&mut self, dialect: Dialect) -> usize {
        self.clients.push((dialect, HashMap::new()));
        self.clients.len() - 1
    }

    /// Client `client` issued request `id` for `service` with body `[tag]`.
    pub fn issued(&mut self, now: Instant, client: usize, id: RequestId, service: Bytes, tag: Bytes) {
        self.counts.issued += 1;
        let old = self.clients[client].1.insert(id, Outstanding { service, tag, next_part: 0 });
        if old.is_some() {
            self.violate(now, format!("client {client} reused request id {id}"));
        }
    }

    /// Client `client` emitted `event`. `lossy` says whether a PARTIAL was
    /// ever lost in the network, so that answers may have gaps.
    pub fn client_event(&mut self, now: Instant, client: usize, event: &ClientEvent, lossy: bool) {
        match event {
            ClientEvent::Partial { id, body } => self.partial(now, client, *id, body, lossy),
            ClientEvent::Reply { id, body } => self.reply(now, client, *id, body, lossy),
            ClientEvent::Restarted { id } => {
                self.counts.restarted += 1;
                match self.clients[client].1.get_mut(id) {
                    Some(o) => o.next_part = 0,
                    None => self.violate(now, format!("client {client}: Restarted for {id}, which is not outstanding")),
                }
            }
            ClientEvent::Failed { id, .. } => {
                self.counts.failed += 1;
                if self.clients[client].1.remove(id).is_none() {
                    self.violate(now, format!("client {client}: Failed for {id}, which is not outstanding"));
                }
            }
            ClientEvent::Discarded { reason } => {
                self.violate(now, format!("client {client} got a message it did not ask for: {reason}"))
            }
            other => self.violate(now, format!("client {client}: unknown event {other:?}")),
        }
    }

    fn partial(&mut self, now: Instant, client: usize, id: RequestId, body: &[Bytes], lossy: bool) {
        self.counts.partials += 1;
        let Some(o) = self.clients[client].1.get_mut(&id) else {
            return self.violate(now, format!("client {client}: PARTIAL for {id}, which is not outstanding"));
        };
        let index = match body {
            [part] => part_index(&o.tag, part),
            _ => None,
        };
        let expected = o.next_part;
        match index {
            Some(i) if i == expected || (lossy && i > expected) => o.next_part = i + 1,
            _ => {
                let tag = String::from_utf8_lossy(&o.tag).into_owned();
                self.violate(
                    now,
                    format!(
                        "client {client}: PARTIAL {body:?} for {id} (body {tag:?}); expected part {expected} of it"
                    ),
                )
            }
        }
    }

    fn reply(&mut self, now: Instant, client: usize, id: RequestId, body: &[Bytes], lossy: bool) {
        self.counts.answered += 1;
        let dialect = self.clients[client].0;
        let Some(o) = self.clients[client].1.remove(&id) else {
            return self.violate(now, format!("client {client}: Reply for {id}, which is not outstanding"));
        };
        let tag = String::from_utf8_lossy(&o.tag).into_owned();
        // MDP/0.1 clients get the parts joined into the one REPLY.
        let (parts, last) = match body.split_last() {
            Some((last, parts)) if dialect == Dialect::V01 => (parts, last),
            Some((last, [])) => (&[][..], last),
            _ => {
                return self
                    .violate(now, format!("client {client}: Reply {body:?} for {id} (body {tag:?}) is malformed"))
            }
        };
        let mut next = if dialect == Dialect::V01 { 0 } else { o.next_part };
        for part in parts {
            match part_index(&o.tag, part) {
                Some(i) if i == next || (lossy && i > next) => next = i + 1,
                _ => {
                    return self.violate(
                        now,
                        format!("client {client}: joined Reply {body:?} for {id} (body {tag:?}): part {next} expected"),
                    )
                }
            }
        }
        if last != &final_body(&o.tag) {
            return self.violate(
                now,
                format!("client {client}: Reply {last:?} for {id} answers another request than {tag:?}"),
            );
        }
        if !lossy && next != 0 && next != self.partials {
            let want = self.partials;
            return self.violate(
                now,
                format!("client {client}: Reply for {id} (body {tag:?}) after {next} parts, not 0 or {want}"),
            );
        }
        let key = (client, o.service.clone());
        if let Some(&last_id) = self.last_answered.get(&key) {
            if last_id > id {
                let service = String::from_utf8_lossy(&o.service).into_owned();
                self.violate(
                    now,
                    format!("client {client}: Reply for {id} after the reply for the later {last_id} ({service})"),
                );
            }
        }
        self.last_answered.insert(key, id);
    }

    // ---- broker ----

    /// A message from `from` reached the broker.
    pub fn delivered_to_broker(&mut self, now: Instant, from: &PeerId, frames: &[Bytes]) {
        let Some(w) = self.workers.get_mut(from) else { return };
        w.last_delivered = now;
        if matches!(PeerCommand::decode(frames.to_vec()), Ok((_, PeerCommand::Final { .. }))) {
            w.holding = false;
        }
    }

    /// The broker emitted `event`.
    pub fn broker_event(&mut self, now: Instant, event: &BrokerEvent) {
        match event {
            BrokerEvent::WorkerReady { worker, .. } => {
                self.workers.insert(worker.clone(), Registered { holding: false, last_delivered: now });
            }
            BrokerEvent::WorkerGone { worker, .. } => {
                self.workers.remove(worker);
                self.crashed.remove(worker);
            }
            BrokerEvent::RequestDispatched { worker, client, .. } => match self.workers.get_mut(worker) {
                None => self
                    .violate(now, format!("broker dispatched {client}'s request to {worker}, not a registered worker")),
                Some(w) if w.holding => self
                    .violate(now, format!("broker dispatched {client}'s request to {worker}, which holds one already")),
                Some(w) => {
                    w.holding = true;
                    *self.announced.entry(worker.clone()).or_default() += 1;
                }
            },
            _ => {}
        }
    }

    /// The broker sent `frames` to `to`.
    pub fn broker_transmit(&mut self, now: Instant, to: &PeerId, frames: &[Bytes]) {
        if !matches!(BrokerCommand::decode(frames.to_vec()), Ok((_, BrokerCommand::Request { .. }))) {
            return;
        }
        match self.announced.get_mut(to) {
            Some(n) if *n > 0 => *n -= 1,
            _ => {
                self.violate(now, format!("broker sent a REQUEST to {to}, not a dispatch to a registered idle worker"))
            }
        }
    }

    /// A new broker replaced the old one (or the broker went down).
    pub fn broker_restarted(&mut self) {
        self.workers.clear();
        self.announced.clear();
        self.crashed.clear();
    }

    // ---- workers ----

    /// The worker on connection `peer` crashed at `now`.
    pub fn worker_crashed(&mut self, now: Instant, peer: &PeerId) {
        if self.workers.contains_key(peer) {
            self.crashed.insert(peer.clone(), now);
        }
    }

    // ---- every step ----

    /// Checks what must hold after every step: crashed workers removed in
    /// time, the broker within its limits.
    pub fn check_broker(&mut self, now: Instant, config: &BrokerConfig, stats: &BrokerStats) {
        for (peer, crashed_at) in &self.crashed {
            let Some(w) = self.workers.get(peer) else { continue };
            let window = if w.holding { config.busy_timeout() } else { config.idle_worker_timeout() };
            let deadline = w.last_delivered + window;
            if now > deadline {
                let (peer, late, crashed) =
                    (peer.clone(), now - deadline, crashed_at.saturating_duration_since(self.t0));
                let last = w.last_delivered.saturating_duration_since(self.t0);
                return self.violate(
                    now,
                    format!("crashed worker {peer} (crashed at t+{crashed:?}, last heard t+{last:?}, holding: {}) still registered {late:?} after its {window:?} window", w.holding),
                );
            }
        }
        let mut over = Vec::new();
        if stats.services > config.max_services {
            over.push(format!("{} services > max_services {}", stats.services, config.max_services));
        }
        if stats.idle_workers + stats.busy_workers > config.max_workers {
            over.push(format!(
                "{} workers > max_workers {}",
                stats.idle_workers + stats.busy_workers,
                config.max_workers
            ));
        }
        // Requests re-queued after their worker was lost may take the queues
        // past max_queue_total (BrokerConfig::max_queue_total says so); what
        // the broker promises is a bound on every request it holds.
        let held = stats.queued_requests + stats.busy_workers;
        let bound = config.max_queue_total.saturating_add(config.max_workers);
        if held > bound {
            over.push(format!(
                "{} requests held ({} queued, {} at workers) > max_queue_total + max_workers = {bound}",
                held, stats.queued_requests, stats.busy_workers
            ));
        }
        // The byte budget, unlike the counts, is never passed: re-queueing
        // moves bytes from held to queued without changing their sum
        // (BrokerConfig::max_queued_bytes says so).
        let bytes = stats.queued_bytes + stats.held_bytes;
        if bytes > config.max_queued_bytes {
            over.push(format!(
                "{bytes} bytes held ({} queued, {} at workers) > max_queued_bytes {}",
                stats.queued_bytes, stats.held_bytes, config.max_queued_bytes
            ));
        }
        // What is charged is released: no bytes without requests to hold them.
        if stats.queued_requests == 0 && stats.queued_bytes != 0 {
            over.push(format!("{} bytes queued with no request queued", stats.queued_bytes));
        }
        if stats.busy_workers == 0 && stats.held_bytes != 0 {
            over.push(format!("{} bytes held with no worker busy", stats.held_bytes));
        }
        for what in over {
            self.violate(now, format!("broker over its limits: {what}"));
        }
        let holding = self.workers.values().filter(|w| w.holding).count();
        let idle = self.workers.len() - holding;
        if (stats.busy_workers, stats.idle_workers) != (holding, idle) {
            let (busy, broker_idle) = (stats.busy_workers, stats.idle_workers);
            self.violate(
                now,
                format!("broker counts {busy} busy and {broker_idle} idle workers; the model {holding} and {idle}"),
            );
        }
    }

    /// Checks that a state machine's `poll_timeout` is not in the past.
    pub fn check_timeout(&mut self, now: Instant, who: &dyn fmt::Display, timeout: Option<Instant>) {
        if let Some(t) = timeout.filter(|&t| t < now) {
            self.violate(now, format!("{who}'s poll_timeout is {:?} in the past", now - t));
        }
    }

    /// At quiescence: every request issued was answered or reported failed.
    pub fn check_nothing_lost(&mut self, now: Instant) {
        let lost: Vec<String> = self
            .clients
            .iter()
            .enumerate()
            .flat_map(|(i, (_, o))| {
                o.iter().map(move |(id, r)| format!("client {i} {id} ({})", String::from_utf8_lossy(&r.tag)))
            })
            .take(10)
            .collect();
        if !lost.is_empty() {
            return self.violate(now, format!("requests neither answered nor failed: {}", lost.join(", ")));
        }
        let c = self.counts;
        if c.issued != c.answered + c.failed {
            self.violate(now, format!("{} issued != {} answered + {} failed", c.issued, c.answered, c.failed));
        }
    }
}

/// `i` if `part` is `{tag}/p{i}`.
fn part_index(tag: &[u8], part: &[u8]) -> Option<usize> {
    let rest = part.strip_prefix(tag)?.strip_prefix(b"/p")?;
    std::str::from_utf8(rest).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_parse() {
        assert_eq!(part_index(b"c1.2", &part_body(b"c1.2", 3)), Some(3));
        assert_eq!(part_index(b"c1.2", &part_body(b"c1.20", 3)), None);
        assert_eq!(part_index(b"c1.2", &final_body(b"c1.2")), None);
    }
}
