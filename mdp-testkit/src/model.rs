//! The reference model and the invariants (after firezone's `tunnel_test`).
//!
//! The [`Checker`] is told everything that crosses the simulated network and
//! every event the state machines emit, keeps its own small model of what
//! must be true, and reports a [`Violation`] the moment it is not:
//!
//! * a client only gets answers to requests it has outstanding, each the
//!   answer to *that* request (see [`part_body`] and [`final_body`]), parts in
//!   order, nothing after the last part;
//! * a client's lanes keep matching exact: the model follows each lane's
//!   connection from what the client transmits, and checks that a lane
//!   carries at most one request per service on the wire (in the majortomo
//!   dialect one request at all), that requests for a service go out in the
//!   order they were made (their first sends; a request sent again may go
//!   ahead of newer ones), that none waits in the client while a lane could
//!   take it, that a reply or PARTIAL taken on a lane is for the request on
//!   the wire there, and that the client's own view
//!   ([`Client::lane_of`], [`Client::on_wire`], [`Client::outstanding`])
//!   agrees with the model's;
//! * with several brokers, all of the above holds across them: a client's
//!   lanes go to different brokers ([`Client::broker_of`]), and a request
//!   that times out on one may be sent again on a lane of another. A lane
//!   "could take" a waiting request only if the client does not avoid its
//!   broker ([`Client::is_avoided`]) and, if the broker is on probation
//!   ([`Client::is_on_probation`]), has no request on the wire to it, or if
//!   the client avoids every broker (then every lane may take requests
//!   again);
//! * replies per (client, lane, service) come in request order, among
//!   requests only ever sent on that lane. For a one-lane client that is the
//!   old rule, replies per (client, service) in request order: it holds
//!   because the lane carries one request per service and the next one goes
//!   out only when that one is over. A client with several lanes has several
//!   requests for a service served at once, one per lane, and their replies
//!   come in any order (the broker dispatches them in parallel); per lane the
//!   rule still holds. A request that moved to another lane (with several
//!   brokers, after a timeout on its broker) may arrive on a lane after newer
//!   requests were answered there; it is exempt;
//! * every request is answered once, reported failed, or cancelled by its
//!   application, and only one of these; a request that failed or was
//!   cancelled while on the wire had its lane's connection replaced (so that
//!   its late reply can never be taken for another request's); no event
//!   names a cancelled request; after quiescence none is left unaccounted
//!   for (issued = answered + failed + cancelled);
//! * a raw client (one connection, many requests per service on it, no
//!   retries) gets only answers to its own requests, each once, whole and in
//!   part order, and all of them;
//! * a worker never holds two requests from one broker: each broker
//!   dispatches only to a worker registered with it and idle there, a
//!   REQUEST on the wire always matches such a dispatch, and no worker is
//!   handed a REQUEST while busy for that broker. The model knows
//!   registrations per broker: a worker process serving several brokers has
//!   one connection to each and can hold one request from each at once;
//! * a crashed worker is removed by each broker within its liveness window
//!   after its last message arrived there;
//! * each broker stays within its configured limits;
//! * no state machine asks to be woken in the past.
//!
//! [`Client::broker_of`]: mdp_core::Client::broker_of
//! [`Client::is_avoided`]: mdp_core::Client::is_avoided
//! [`Client::is_on_probation`]: mdp_core::Client::is_on_probation
//! [`Client::lane_of`]: mdp_core::Client::lane_of
//! [`Client::on_wire`]: mdp_core::Client::on_wire
//! [`Client::outstanding`]: mdp_core::Client::outstanding

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mdp_core::{
    BrokerCommand, BrokerConfig, BrokerEvent, BrokerStats, Client, ClientEvent, Dialect, Lane, PeerCommand, PeerId,
    PeerTransmit, RequestId,
};

/// The marker frame that starts the `i`th PARTIAL a simulated worker sends
/// for the request tagged `tag` (see [`app`](crate::app)).
pub fn part_body(tag: &[u8], i: usize) -> Bytes {
    let mut b = tag.to_vec();
    b.extend_from_slice(format!("/p{i}").as_bytes());
    Bytes::from(b)
}

/// The marker frame that starts the FINAL (or REPLY) a simulated worker
/// sends for the request tagged `tag`.
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
    /// Whether it was ever sent (requests for a service go out in order).
    sent: bool,
    /// The lane of its latest send.
    last_lane: Option<usize>,
    /// Whether it was ever sent on another lane than its previous send.
    moved: bool,
}

impl Outstanding {
    fn new(service: Bytes, tag: Bytes) -> Self {
        Outstanding { service, tag, next_part: 0, sent: false, last_lane: None, moved: false }
    }
}

/// What the model knows of one client.
#[derive(Debug)]
struct ClientModel {
    dialect: Dialect,
    /// How many brokers it knows.
    brokers: usize,
    /// Outstanding requests (neither answered, failed nor cancelled).
    outstanding: BTreeMap<RequestId, Outstanding>,
    /// The outstanding request of each tag (tags are unique per client).
    by_tag: HashMap<Bytes, RequestId>,
    /// Cancelled requests, and their tags.
    cancelled: HashSet<RequestId>,
    cancelled_tags: HashSet<Bytes>,
    /// Per lane, the requests sent on its current connection whose answer
    /// may still come on it, in the order sent, with their services: sent
    /// since the lane's last reconnect and not answered. A request that
    /// fails or is cancelled stays here until its lane is replaced.
    wire: Vec<Vec<(RequestId, Bytes)>>,
    /// What the message the client is handling must become, as the model
    /// matches it: a PARTIAL (`false`) or the reply (`true`) of this
    /// request, which was on the wire on this lane.
    expect: Option<(RequestId, usize, bool)>,
}

impl ClientModel {
    /// The lane `id` is on the wire on, as the model sees it.
    fn lane_of(&self, id: RequestId) -> Option<usize> {
        self.wire.iter().position(|w| w.iter().any(|(other, _)| *other == id))
    }

    /// Whether lane `lane` could take a request for `service` now.
    fn lane_takes(&self, lane: usize, service: &[u8]) -> bool {
        let wire = &self.wire[lane];
        if self.dialect == Dialect::Majortomo {
            wire.is_empty()
        } else {
            wire.iter().all(|(_, s)| s != service)
        }
    }

    /// Forgets outstanding request `id` (answered, failed or cancelled).
    fn end(&mut self, id: RequestId) -> Option<Outstanding> {
        let o = self.outstanding.remove(&id)?;
        self.by_tag.remove(&o.tag);
        Some(o)
    }

    /// Why an event naming `id` is wrong: it is not outstanding.
    fn not_outstanding(&self, client: usize, what: &str, id: RequestId) -> String {
        if self.cancelled.contains(&id) {
            format!("client {client}: {what} for {id}, which the application cancelled")
        } else {
            format!("client {client}: {what} for {id}, which is not outstanding")
        }
    }
}

/// What the model knows of one raw client: its requests by tag.
#[derive(Debug)]
struct RawModel {
    dialect: Dialect,
    outstanding: BTreeMap<Bytes, Outstanding>,
}

/// What the model knows of a worker connection registered with its broker.
#[derive(Debug, Clone)]
struct Registered {
    /// The broker handed it a request it has not answered with FINAL.
    holding: bool,
    /// When its last message reached the broker.
    last_delivered: Instant,
}

/// Running totals of what the model saw (raw clients' requests included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelCounts {
    /// Requests issued by clients.
    pub issued: u64,
    /// Requests answered (a Reply reached their client).
    pub answered: u64,
    /// Requests their client reported Failed.
    pub failed: u64,
    /// Requests their application cancelled ([`Client::cancel`]) while
    /// they were outstanding.
    pub cancelled: u64,
    /// PARTIALs delivered to clients.
    pub partials: u64,
    /// Requests restarted by their client.
    pub restarted: u64,
    /// Replies that came while an older request of the same client for the
    /// same service was still outstanding: they overtook it. Only a client
    /// with several lanes can see that (one lane answers a service's
    /// requests one at a time, in order).
    pub overtaking: u64,
    /// Sends of a request on another lane than its previous send: with
    /// several brokers, a request leaving a broker that failed.
    pub moved: u64,
}

/// What the model knows of one broker (the current incarnation of it).
#[derive(Debug, Default)]
struct BrokerModel {
    /// Worker connections registered with it.
    workers: HashMap<PeerId, Registered>,
    /// Dispatches announced by events, not yet seen as a REQUEST transmit.
    announced: HashMap<PeerId, u32>,
    /// Crashed worker connections, still registered, and when they crashed.
    /// (Ordered: the first late one is the one reported, whatever the
    /// hasher.)
    crashed: BTreeMap<PeerId, Instant>,
}

/// The reference model and invariant checker. See the [module docs](self).
#[derive(Debug)]
pub struct Checker {
    t0: Instant,
    /// Panic on the first violation (the default), or collect them.
    pub panic_on_violation: bool,
    violations: Vec<Violation>,
    /// Per client: what the model knows of it.
    clients: Vec<ClientModel>,
    /// Per raw client: its outstanding requests.
    raws: Vec<RawModel>,
    /// Last answered id per (client, lane, service).
    last_answered: HashMap<(usize, usize, Bytes), RequestId>,
    /// PARTIALs per streamed answer from a 0.2 worker; `None` once
    /// [`any_parts`](Self::any_parts) said the applications choose.
    partials: Option<usize>,
    /// Per broker, by index.
    brokers: Vec<BrokerModel>,
    counts: ModelCounts,
}

impl Checker {
    /// A checker for `brokers` brokers (at least one) and workers that
    /// stream `partials` PARTIALs per answer.
    pub fn new(t0: Instant, partials: usize, brokers: usize) -> Self {
        Checker {
            t0,
            panic_on_violation: true,
            violations: Vec::new(),
            clients: Vec::new(),
            raws: Vec::new(),
            last_answered: HashMap::new(),
            partials: Some(partials),
            brokers: (0..brokers.max(1)).map(|_| BrokerModel::default()).collect(),
            counts: ModelCounts::default(),
        }
    }

    /// From now on the workers' applications answer with any number of
    /// PARTIALs (user [`Handler`](crate::Handler)s): a whole answer is no
    /// longer checked to have [`SimConfig::partials`](crate::SimConfig::partials)
    /// of them. Parts must still come in order, each once.
    pub fn any_parts(&mut self) {
        self.partials = None;
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
        self.clients.get(client).map_or(0, |c| c.outstanding.len())
    }

    /// Requests outstanding at client `client` for `service`.
    pub fn outstanding_for(&self, client: usize, service: &[u8]) -> usize {
        self.clients.get(client).map_or(0, |c| c.outstanding.values().filter(|o| o.service == service).count())
    }

    /// Whether request `id` of client `client` is outstanding, as the model
    /// sees it.
    pub fn is_outstanding(&self, client: usize, id: RequestId) -> bool {
        self.clients.get(client).is_some_and(|c| c.outstanding.contains_key(&id))
    }

    /// The outstanding requests of client `client`, oldest first.
    pub fn outstanding_ids(&self, client: usize) -> Vec<RequestId> {
        self.clients.get(client).map_or_else(Vec::new, |c| c.outstanding.keys().copied().collect())
    }

    /// The lane request `id` of client `client` is on the wire on, as the
    /// model follows the client's transmits (`None` while it waits in the
    /// client, or once it is over).
    pub fn lane_of(&self, client: usize, id: RequestId) -> Option<Lane> {
        let c = self.clients.get(client)?;
        c.outstanding.contains_key(&id).then(|| c.lane_of(id).map(Lane)).flatten()
    }

    /// Requests outstanding at raw client `raw`.
    pub fn raw_outstanding(&self, raw: usize) -> usize {
        self.raws.get(raw).map_or(0, |r| r.outstanding.len())
    }

    /// Whether the model thinks worker connection `worker` is registered
    /// with broker `broker`.
    pub fn is_registered(&self, broker: usize, worker: &PeerId) -> bool {
        self.brokers.get(broker).is_some_and(|b| b.workers.contains_key(worker))
    }

    /// Reports a violation: panics, or records it.
    pub fn violate(&mut self, now: Instant, what: String) {
        let v = Violation { at: now.saturating_duration_since(self.t0), what };
        if self.panic_on_violation {
            panic!("{v}");
        }
        self.violations.push(v);
    }

    fn violate_if(&mut self, now: Instant, what: Option<String>) {
        if let Some(what) = what {
            self.violate(now, what);
        }
    }

    // ---- clients ----

    /// A client with `lanes` lanes in all, to `brokers` brokers, was added;
    /// returns its index.
    pub fn add_client(&mut self, dialect: Dialect, lanes: usize, brokers: usize) -> usize {
        self.clients.push(ClientModel {
            dialect,
            brokers: brokers.max(1),
            outstanding: BTreeMap::new(),
            by_tag: HashMap::new(),
            cancelled: HashSet::new(),
            cancelled_tags: HashSet::new(),
            wire: vec![Vec::new(); lanes.max(1)],
            expect: None,
        });
        self.clients.len() - 1
    }

    /// Client `client` issued request `id` for `service` with body `[tag]`.
    pub fn issued(&mut self, now: Instant, client: usize, id: RequestId, service: Bytes, tag: Bytes) {
        self.counts.issued += 1;
        let c = &mut self.clients[client];
        let old = c.outstanding.insert(id, Outstanding::new(service, tag.clone()));
        let tag_reused = c.by_tag.insert(tag.clone(), id).is_some();
        if old.is_some() {
            self.violate(now, format!("client {client} reused request id {id}"));
        }
        if tag_reused {
            self.violate(now, format!("the simulation reused tag {tag:?} at client {client}"));
        }
    }

    /// Client `client` asked its transport to do `transmit` on `lane`.
    pub fn client_transmit(&mut self, now: Instant, client: usize, lane: Lane, transmit: &PeerTransmit) {
        let what = self.transmit(client, lane.0, transmit).err();
        self.violate_if(now, what);
    }

    fn transmit(&mut self, client: usize, lane: usize, transmit: &PeerTransmit) -> Result<(), String> {
        let c = &mut self.clients[client];
        let lanes = c.wire.len();
        if lane >= lanes {
            return Err(format!("client {client} transmits on lane {lane}; it has {lanes}"));
        }
        let frames = match transmit {
            PeerTransmit::Reconnect => {
                c.wire[lane].clear();
                return Ok(());
            }
            PeerTransmit::Send(frames) => frames,
        };
        let (service, tag) = match PeerCommand::decode(frames.clone()) {
            Ok((d, PeerCommand::Request { service, body })) if d == c.dialect => {
                (service, body.first().cloned().unwrap_or_default())
            }
            other => return Err(format!("client {client} sent {other:?} on lane {lane}, not a {} REQUEST", c.dialect)),
        };
        let Some(&id) = c.by_tag.get(&tag) else {
            return Err(if c.cancelled_tags.contains(&tag) {
                format!("client {client} sent {tag:?} on lane {lane}, which the application cancelled")
            } else {
                format!("client {client} sent {tag:?} on lane {lane}, which is not outstanding")
            });
        };
        if let Some(other) = c.lane_of(id) {
            return Err(format!(
                "client {client} sent {id} ({tag:?}) on lane {lane} while it is on the wire on lane {other}, \
                 whose connection was not replaced"
            ));
        }
        if !c.lane_takes(lane, &service) {
            let on: Vec<String> = c.wire[lane].iter().map(|(id, s)| format!("{id} ({s:?})")).collect();
            return Err(format!(
                "client {client} ({}) sent {id} for {service:?} on lane {lane}, which carries {} already: \
                 their replies could not be told apart",
                c.dialect,
                on.join(", ")
            ));
        }
        let o = &c.outstanding[&id];
        if o.service != service {
            return Err(format!("client {client} sent {id} for {service:?}; it was made for {:?}", o.service));
        }
        if !o.sent {
            let older = c.outstanding.range(..id).find(|(_, other)| !other.sent && other.service == service);
            if let Some((older, _)) = older {
                return Err(format!(
                    "client {client} sent {id} for {service:?} before the older {older}, which still waits"
                ));
            }
        }
        let mut moved = false;
        if let Some(o) = c.outstanding.get_mut(&id) {
            o.sent = true;
            moved = o.last_lane.is_some_and(|last| last != lane);
            o.moved |= moved;
            o.last_lane = Some(lane);
        }
        self.counts.moved += u64::from(moved);
        c.wire[lane].push((id, service));
        Ok(())
    }

    /// The application of client `client` called `cancel(id)`, which
    /// returned `took_effect`. Call it after the cancel and before draining
    /// the client: the model then checks that the lane the request was on is
    /// replaced before anything else goes out on it, and that no event
    /// names it.
    pub fn cancel(&mut self, now: Instant, client: usize, id: RequestId, took_effect: bool) {
        let c = &mut self.clients[client];
        let was = c.outstanding.contains_key(&id);
        if was && took_effect {
            if let Some(o) = c.end(id) {
                c.cancelled_tags.insert(o.tag);
            }
            c.cancelled.insert(id);
            self.counts.cancelled += 1;
        }
        if was != took_effect {
            self.violate(now, format!("client {client}: cancel({id}) returned {took_effect}; outstanding: {was}"));
        }
    }

    /// The broker's message `frames` came to client `client` on `lane`.
    /// Call it before the client handles it: the model matches a PARTIAL or
    /// FINAL to the request on the wire for its service on that lane (in
    /// the majortomo dialect, to the one request on it), and the client's
    /// event must name the same request.
    pub fn client_message(&mut self, client: usize, lane: Lane, frames: &[Bytes]) {
        let c = &mut self.clients[client];
        c.expect = None;
        let (service, last) = match BrokerCommand::decode(frames.to_vec()) {
            Ok((found, BrokerCommand::Partial { service, .. })) if found == c.dialect => (service, false),
            Ok((found, BrokerCommand::Final { service, .. })) if found == c.dialect => (service, true),
            // Anything else the client must discard, and a Discarded event
            // is a violation of its own.
            _ => return,
        };
        let Some(wire) = c.wire.get_mut(lane.0) else { return };
        let at = match &service {
            Some(service) => wire.iter().position(|(_, s)| s == service),
            None if wire.is_empty() => None,
            None => Some(0),
        };
        if let Some(at) = at {
            let id = wire[at].0;
            if last {
                // Its answer is over: nothing more for it comes on the lane.
                wire.remove(at);
            }
            c.expect = Some((id, lane.0, last));
        }
    }

    /// Client `client` emitted `event`. `lossy` says whether a PARTIAL was
    /// ever lost in the network, so that answers may have gaps.
    pub fn client_event(&mut self, now: Instant, client: usize, event: &ClientEvent, lossy: bool) {
        let what = match event {
            ClientEvent::Partial { id, body } => self.partial(client, *id, body, lossy).err(),
            ClientEvent::Reply { id, body } => self.reply(client, *id, body, lossy).err(),
            ClientEvent::Restarted { id } => {
                self.counts.restarted += 1;
                let c = &mut self.clients[client];
                let (brokers, on_wire) = (c.brokers, c.lane_of(*id).is_some());
                match c.outstanding.get_mut(id) {
                    // With one broker a request is sent again on its lane's
                    // new connection at once. With several it leaves the
                    // lane of the broker that failed, and may wait for a
                    // lane of another; it is off its old connection either
                    // way (else the model would still have it there), so
                    // no part of the old send can come any more.
                    Some(o) if on_wire || (brokers > 1 && o.sent) => {
                        o.next_part = 0;
                        None
                    }
                    Some(_) => Some(format!("client {client}: Restarted {id}, which it did not send again")),
                    None => Some(c.not_outstanding(client, "Restarted", *id)),
                }
            }
            ClientEvent::Failed { id, .. } => {
                self.counts.failed += 1;
                let c = &mut self.clients[client];
                match c.end(*id) {
                    // Its lane must be replaced first (the transmits are
                    // drained before the events), else its late reply could
                    // be taken for the next request's on that lane.
                    Some(_) => c.lane_of(*id).map(|lane| {
                        format!(
                            "client {client}: {id} failed while on the wire on lane {lane}, whose connection \
                             was not replaced"
                        )
                    }),
                    None => Some(c.not_outstanding(client, "Failed", *id)),
                }
            }
            ClientEvent::Discarded { reason } => {
                Some(format!("client {client} got a message it did not ask for: {reason}"))
            }
            other => Some(format!("client {client}: unknown event {other:?}")),
        };
        self.violate_if(now, what);
    }

    /// The client took the message it was handling for a PARTIAL (`last`
    /// false) or the reply of `id`: the model must have matched it so.
    /// Returns the lane it came on.
    fn check_match(&mut self, client: usize, id: RequestId, last: bool) -> Result<usize, String> {
        let c = &mut self.clients[client];
        let what = if last { "Reply" } else { "PARTIAL" };
        if !c.outstanding.contains_key(&id) {
            return Err(c.not_outstanding(client, what, id));
        }
        match c.expect.take() {
            Some((expected, lane, is_last)) if (expected, is_last) == (id, last) => Ok(lane),
            Some((expected, lane, _)) => Err(format!(
                "client {client}: {what} for {id}; the message on lane {lane} was for {expected}, the request on \
                 the wire there for its service"
            )),
            None => Err(format!(
                "client {client}: {what} for {id}, but the message matches no request on the wire on its lane \
                 (or there was no message)"
            )),
        }
    }

    fn partial(&mut self, client: usize, id: RequestId, body: &[Bytes], lossy: bool) -> Result<(), String> {
        self.counts.partials += 1;
        self.check_match(client, id, false)?;
        let o = self.clients[client].outstanding.get_mut(&id).expect("outstanding");
        next_part(o, body, lossy).map_err(|e| format!("client {client}: {e} ({id})"))
    }

    fn reply(&mut self, client: usize, id: RequestId, body: &[Bytes], lossy: bool) -> Result<(), String> {
        self.counts.answered += 1;
        let lane = self.check_match(client, id, true)?;
        let c = &mut self.clients[client];
        let dialect = c.dialect;
        let o = c.end(id).expect("outstanding");
        let overtook = c.outstanding.range(..id).any(|(_, older)| older.service == o.service);
        self.counts.overtaking += u64::from(overtook);
        check_answer(&o, dialect, body, lossy, self.partials).map_err(|e| format!("client {client}: {e} ({id})"))?;
        if o.moved {
            // It came to this lane from another, maybe after newer requests
            // were answered here (see the module docs).
            return Ok(());
        }
        let key = (client, lane, o.service.clone());
        let last = self.last_answered.insert(key, id);
        match last {
            Some(last) if last > id => {
                let service = String::from_utf8_lossy(&o.service).into_owned();
                Err(format!(
                    "client {client}: Reply for {id} after the reply for the later {last} ({service}, lane {lane})"
                ))
            }
            _ => Ok(()),
        }
    }

    /// After client `client` was drained: the message it handled, if it
    /// matched a request, became that request's event; every request the
    /// model has on the wire is outstanding (one that failed or was
    /// cancelled there had its lane replaced); none waits while a lane could
    /// take it (a lane of a broker the client avoids cannot, unless it
    /// avoids them all); and the client's own view agrees with the model's.
    pub fn check_client(&mut self, now: Instant, client: usize, core: &Client) {
        if let Some((id, lane, last)) = self.clients[client].expect.take() {
            let what = if last { "FINAL" } else { "PARTIAL" };
            self.violate(now, format!("client {client} took the {what} for {id} on lane {lane} for nothing"));
        }
        let what = self.client_state(client, core).err();
        self.violate_if(now, what);
    }

    fn client_state(&self, client: usize, core: &Client) -> Result<(), String> {
        let c = &self.clients[client];
        for (lane, wire) in c.wire.iter().enumerate() {
            if let Some((id, _)) = wire.iter().find(|(id, _)| !c.outstanding.contains_key(id)) {
                let why = if c.cancelled.contains(id) { "was cancelled" } else { "failed" };
                return Err(format!(
                    "client {client}: {id} {why} while on the wire on lane {lane}, whose connection was not \
                     replaced: its late reply could be taken for another request's"
                ));
            }
        }
        // Whether lane `l` may take requests at all: the client avoids a
        // broker that failed lately, unless it avoids every broker, and
        // sends one request at a time to a broker on probation.
        let every_avoided = (0..core.config().brokers).all(|b| core.is_avoided(b));
        let on_wire_at = |b: usize| -> usize {
            (0..c.wire.len()).filter(|&l| core.broker_of(Lane(l)) == b).map(|l| c.wire[l].len()).sum()
        };
        let usable = |l: usize| {
            let b = core.broker_of(Lane(l));
            let busy_probe = core.is_on_probation(b) && on_wire_at(b) > 0;
            every_avoided || !(core.is_avoided(b) || busy_probe)
        };
        let mut on_wire = 0;
        for (&id, o) in &c.outstanding {
            let lane = c.lane_of(id);
            on_wire += usize::from(lane.is_some());
            if core.lane_of(id) != lane.map(Lane) {
                return Err(format!(
                    "client {client}: lane_of({id}) is {:?}; the model has it on the wire on {lane:?}",
                    core.lane_of(id)
                ));
            }
            if lane.is_none() {
                if let Some(free) = (0..c.wire.len()).find(|&l| usable(l) && c.lane_takes(l, &o.service)) {
                    return Err(format!(
                        "client {client}: {id} for {:?} waits in the client, though lane {free} could take it \
                         (its broker {} neither avoided nor busy with a probe)",
                        o.service,
                        core.broker_of(Lane(free))
                    ));
                }
            }
        }
        if (core.outstanding(), core.on_wire()) != (c.outstanding.len(), on_wire) {
            return Err(format!(
                "client {client} has {} outstanding, {} on the wire; the model {} and {on_wire}",
                core.outstanding(),
                core.on_wire(),
                c.outstanding.len()
            ));
        }
        Ok(())
    }

    // ---- raw clients ----

    /// A raw client speaking `dialect` was added; returns its index.
    pub fn add_raw(&mut self, dialect: Dialect) -> usize {
        self.raws.push(RawModel { dialect, outstanding: BTreeMap::new() });
        self.raws.len() - 1
    }

    /// Raw client `raw` sent a request for `service` with body `[tag]`.
    pub fn raw_issued(&mut self, now: Instant, raw: usize, service: Bytes, tag: Bytes) {
        self.counts.issued += 1;
        if self.raws[raw].outstanding.insert(tag.clone(), Outstanding::new(service, tag.clone())).is_some() {
            self.violate(now, format!("the simulation reused tag {tag:?} at raw client {raw}"));
        }
    }

    /// The broker sent `frames` to raw client `raw`. Returns the tag of the
    /// request it answered, if it was a whole answer.
    pub fn raw_message(&mut self, now: Instant, raw: usize, frames: &[Bytes], lossy: bool) -> Option<Bytes> {
        match self.raw(raw, frames, lossy) {
            Ok(done) => done,
            Err(what) => {
                self.violate(now, format!("raw client {raw}: {what}"));
                None
            }
        }
    }

    fn raw(&mut self, raw: usize, frames: &[Bytes], lossy: bool) -> Result<Option<Bytes>, String> {
        let r = &mut self.raws[raw];
        let (found, command) = BrokerCommand::decode(frames.to_vec()).map_err(|e| format!("undecodable {e}"))?;
        if found != r.dialect {
            return Err(format!("got {found}, speaks {}", r.dialect));
        }
        let (service, body, last) = match command {
            BrokerCommand::Partial { service, body } => (service, body, false),
            BrokerCommand::Final { service, body } => (service, body, true),
            other => return Err(format!("got {other:?}")),
        };
        // The answer names its request: it starts `tag/p{i}` or `tag/final`.
        let tag = body.first().and_then(|b| tag_of(b)).ok_or_else(|| format!("answer {body:?} names no request"))?;
        let Some(o) = r.outstanding.get_mut(&tag) else {
            return Err(format!("answer {body:?} for {tag:?}, which is not outstanding"));
        };
        if service.as_ref().is_some_and(|s| *s != o.service) {
            return Err(format!("answer for {tag:?} names service {service:?}, not {:?}", o.service));
        }
        if !last {
            self.counts.partials += 1;
            return next_part(o, &body, lossy).map(|()| None);
        }
        self.counts.answered += 1;
        let (dialect, partials) = (r.dialect, self.partials);
        let o = r.outstanding.remove(&tag).expect("outstanding");
        check_answer(&o, dialect, &body, lossy, partials)?;
        Ok(Some(tag))
    }

    // ---- brokers ----

    /// A message from `from` reached broker `broker`.
    pub fn delivered_to_broker(&mut self, now: Instant, broker: usize, from: &PeerId, frames: &[Bytes]) {
        let Some(w) = self.brokers[broker].workers.get_mut(from) else { return };
        w.last_delivered = now;
        if matches!(PeerCommand::decode(frames.to_vec()), Ok((_, PeerCommand::Final { .. }))) {
            w.holding = false;
        }
    }

    /// Broker `broker` emitted `event`.
    pub fn broker_event(&mut self, now: Instant, broker: usize, event: &BrokerEvent) {
        let b = &mut self.brokers[broker];
        match event {
            BrokerEvent::WorkerReady { worker, .. } => {
                b.workers.insert(worker.clone(), Registered { holding: false, last_delivered: now });
            }
            BrokerEvent::WorkerGone { worker, .. } => {
                b.workers.remove(worker);
                b.crashed.remove(worker);
            }
            BrokerEvent::RequestDispatched { worker, client, .. } => match b.workers.get_mut(worker) {
                None => self.violate(
                    now,
                    format!(
                        "broker {broker} dispatched {client}'s request to {worker}, not a worker registered with it"
                    ),
                ),
                Some(w) if w.holding => self.violate(
                    now,
                    format!("broker {broker} dispatched {client}'s request to {worker}, which holds one already"),
                ),
                Some(w) => {
                    w.holding = true;
                    *b.announced.entry(worker.clone()).or_default() += 1;
                }
            },
            _ => {}
        }
    }

    /// Broker `broker` sent `frames` to `to`.
    pub fn broker_transmit(&mut self, now: Instant, broker: usize, to: &PeerId, frames: &[Bytes]) {
        if !matches!(BrokerCommand::decode(frames.to_vec()), Ok((_, BrokerCommand::Request { .. }))) {
            return;
        }
        match self.brokers[broker].announced.get_mut(to) {
            Some(n) if *n > 0 => *n -= 1,
            _ => self.violate(
                now,
                format!("broker {broker} sent a REQUEST to {to}, not a dispatch to a registered idle worker"),
            ),
        }
    }

    /// A new broker replaced broker `broker` (or it went down): what the
    /// model knew of it is gone with it. The other brokers are not touched.
    pub fn broker_restarted(&mut self, broker: usize) {
        self.brokers[broker] = BrokerModel::default();
    }

    // ---- workers ----

    /// The worker on connection `peer` to broker `broker` crashed at `now`.
    pub fn worker_crashed(&mut self, now: Instant, broker: usize, peer: &PeerId) {
        let b = &mut self.brokers[broker];
        if b.workers.contains_key(peer) {
            b.crashed.insert(peer.clone(), now);
        }
    }

    // ---- every step ----

    /// Checks what must hold after every step at broker `broker` (while it
    /// is up): crashed workers removed in time, the broker within its
    /// limits.
    pub fn check_broker(&mut self, now: Instant, broker: usize, config: &BrokerConfig, stats: &BrokerStats) {
        let b = &self.brokers[broker];
        for (peer, crashed_at) in &b.crashed {
            let Some(w) = b.workers.get(peer) else { continue };
            let window = if w.holding { config.busy_timeout() } else { config.idle_worker_timeout() };
            let deadline = w.last_delivered + window;
            if now > deadline {
                let (peer, late, crashed) =
                    (peer.clone(), now - deadline, crashed_at.saturating_duration_since(self.t0));
                let last = w.last_delivered.saturating_duration_since(self.t0);
                return self.violate(
                    now,
                    format!("crashed worker {peer} (crashed at t+{crashed:?}, last heard t+{last:?}, holding: {}) still registered with broker {broker} {late:?} after its {window:?} window", w.holding),
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
            self.violate(now, format!("broker {broker} over its limits: {what}"));
        }
        let workers = &self.brokers[broker].workers;
        let holding = workers.values().filter(|w| w.holding).count();
        let idle = workers.len() - holding;
        if (stats.busy_workers, stats.idle_workers) != (holding, idle) {
            let (busy, broker_idle) = (stats.busy_workers, stats.idle_workers);
            self.violate(
                now,
                format!(
                    "broker {broker} counts {busy} busy and {broker_idle} idle workers; the model {holding} and {idle}"
                ),
            );
        }
    }

    /// Checks that a state machine's `poll_timeout` is not in the past.
    pub fn check_timeout(&mut self, now: Instant, who: &dyn fmt::Display, timeout: Option<Instant>) {
        if let Some(t) = timeout.filter(|&t| t < now) {
            self.violate(now, format!("{who}'s poll_timeout is {:?} in the past", now - t));
        }
    }

    /// At quiescence: every request issued was answered, reported failed or
    /// cancelled; every raw client's request was answered.
    pub fn check_nothing_lost(&mut self, now: Instant) {
        let clients = self.clients.iter().enumerate().flat_map(|(i, c)| {
            c.outstanding.iter().map(move |(id, r)| format!("client {i} {id} ({})", String::from_utf8_lossy(&r.tag)))
        });
        let raws = self.raws.iter().enumerate().flat_map(|(k, r)| {
            r.outstanding.keys().map(move |tag| format!("raw client {k} {}", String::from_utf8_lossy(tag)))
        });
        let lost: Vec<String> = clients.chain(raws).take(10).collect();
        if !lost.is_empty() {
            return self.violate(now, format!("requests neither answered, failed nor cancelled: {}", lost.join(", ")));
        }
        let c = self.counts;
        if c.issued != c.answered + c.failed + c.cancelled {
            self.violate(
                now,
                format!(
                    "{} issued != {} answered + {} failed + {} cancelled",
                    c.issued, c.answered, c.failed, c.cancelled
                ),
            );
        }
    }
}

/// Checks PARTIAL `body` of `o` against the part expected next (with gaps
/// allowed when PARTIALs were lost) and moves on.
fn next_part(o: &mut Outstanding, body: &[Bytes], lossy: bool) -> Result<(), String> {
    let index = match pieces(&o.tag, body).as_deref() {
        Some([(Piece::Part(i), _)]) => Some(*i),
        _ => None,
    };
    let expected = o.next_part;
    match index {
        Some(i) if i == expected || (lossy && i > expected) => {
            o.next_part = i + 1;
            Ok(())
        }
        _ => {
            let tag = String::from_utf8_lossy(&o.tag);
            Err(format!("PARTIAL {body:?} for request {tag:?}; expected part {expected} of it"))
        }
    }
}

/// Checks that `body`, the reply a `dialect` client got for `o`, is the
/// whole answer to `o`: the parts not yet delivered (an MDP/0.1 client gets
/// them joined into the REPLY) and `o`'s FINAL.
fn check_answer(
    o: &Outstanding,
    dialect: Dialect,
    body: &[Bytes],
    lossy: bool,
    partials: Option<usize>,
) -> Result<(), String> {
    let tag = String::from_utf8_lossy(&o.tag).into_owned();
    let Some(pieces) = pieces(&o.tag, body) else {
        return Err(format!("Reply {body:?} answers another request than {tag:?}"));
    };
    // MDP/0.1 clients get the parts joined into the one REPLY.
    let (parts, last) = match pieces.split_last() {
        Some((last, parts)) if dialect == Dialect::V01 => (parts, last),
        Some((last, [])) => (&[][..], last),
        _ => return Err(format!("Reply {body:?} for {tag:?} is malformed")),
    };
    let mut next = if dialect == Dialect::V01 { 0 } else { o.next_part };
    for part in parts {
        match part.0 {
            Piece::Part(i) if i == next || (lossy && i > next) => next = i + 1,
            _ => return Err(format!("joined Reply {body:?} for {tag:?}: part {next} expected")),
        }
    }
    if last.0 != Piece::Final {
        return Err(format!("Reply {body:?} for {tag:?} does not end with its FINAL"));
    }
    if let Some(partials) = partials.filter(|&p| !lossy && next != 0 && next != p) {
        return Err(format!("Reply for {tag:?} after {next} parts, not 0 or {partials}"));
    }
    Ok(())
}

/// What one piece of an answer is: the marker frame that starts it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Piece {
    /// The `i`th PARTIAL (marker [`part_body`]).
    Part(usize),
    /// The FINAL (marker [`final_body`]).
    Final,
}

/// Splits `frames`, an answer to the request `tag` as it crossed the
/// network, into its pieces: each starts with a marker frame naming `tag`
/// and the piece, and goes on with the application's frames up to the next
/// marker. `None` if the first frame is not a marker of `tag`.
pub(crate) fn pieces<'a>(tag: &[u8], frames: &'a [Bytes]) -> Option<Vec<(Piece, &'a [Bytes])>> {
    let final_marker = final_body(tag);
    let marker = |f: &Bytes| {
        if *f == final_marker {
            Some(Piece::Final)
        } else {
            part_index(tag, f).map(Piece::Part)
        }
    };
    let mut out: Vec<(Piece, &[Bytes])> = Vec::new();
    let mut start = None;
    for (k, f) in frames.iter().enumerate() {
        if let Some(piece) = marker(f) {
            if let Some((p, s)) = start.replace((piece, k)) {
                out.push((p, &frames[s + 1..k]));
            }
        } else if start.is_none() {
            return None;
        }
    }
    let (p, s) = start?;
    out.push((p, &frames[s + 1..]));
    Some(out)
}

/// The tag a part or final body `b` (`{tag}/p{i}` or `{tag}/final`) names.
fn tag_of(b: &[u8]) -> Option<Bytes> {
    let slash = b.iter().rposition(|&c| c == b'/')?;
    let (tag, rest) = (&b[..slash], &b[slash + 1..]);
    let is_part = rest.strip_prefix(b"p").is_some_and(|n| !n.is_empty() && n.iter().all(u8::is_ascii_digit));
    (rest == b"final" || is_part).then(|| Bytes::copy_from_slice(tag))
}

/// `i` if `part` is `{tag}/p{i}`, with `i` written as [`part_body`] writes
/// it (digits, no sign, no leading zero), so that fewer of an
/// application's frames can pass for a marker.
fn part_index(tag: &[u8], part: &[u8]) -> Option<usize> {
    let rest = part.strip_prefix(tag)?.strip_prefix(b"/p")?;
    let canonical = rest.iter().all(u8::is_ascii_digit) && (rest == b"0" || !rest.starts_with(b"0"));
    if !canonical {
        return None;
    }
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
        assert_eq!(part_index(b"c1.2", b"c1.2/p0"), Some(0));
        for not_ours in [&b"c1.2/p+1"[..], b"c1.2/p007", b"c1.2/p", b"c1.2/p-1"] {
            assert_eq!(part_index(b"c1.2", not_ours), None, "{not_ours:?}");
        }
        assert_eq!(tag_of(&part_body(b"r0.7", 12)).as_deref(), Some(&b"r0.7"[..]));
        assert_eq!(tag_of(&final_body(b"r0.7")).as_deref(), Some(&b"r0.7"[..]));
        assert_eq!(tag_of(b"r0.7/p"), None);
        assert_eq!(tag_of(b"r0.7"), None);
    }

    #[test]
    fn answers_split_into_pieces_at_their_markers() {
        let (tag, u) = (&b"c0.1"[..], Bytes::from_static(b"user"));
        let joined = vec![part_body(tag, 0), u.clone(), part_body(tag, 1), final_body(tag), u.clone(), u.clone()];
        let got = pieces(tag, &joined).unwrap();
        let got: Vec<(Piece, usize)> = got.iter().map(|(p, f)| (*p, f.len())).collect();
        assert_eq!(got, [(Piece::Part(0), 1), (Piece::Part(1), 0), (Piece::Final, 2)]);
        // Another request's marker is the application's frame, and an
        // answer must start with a marker of its own request.
        let other = vec![final_body(tag), final_body(b"c0.2")];
        assert_eq!(pieces(tag, &other).unwrap()[0].1.len(), 1);
        assert_eq!(pieces(tag, &[u.clone(), final_body(tag)]), None);
        assert_eq!(pieces(tag, &[]), None);
    }

    // The lane checks must be able to fail: each test below feeds the
    // checker a real client's output with one lie in it.

    fn echo() -> Bytes {
        Bytes::from_static(b"echo")
    }

    fn final_for(tag: &[u8]) -> Vec<Bytes> {
        let command = BrokerCommand::Final { service: Some(echo()), body: vec![final_body(tag)] };
        command.encode(Dialect::V02).unwrap()
    }

    /// A checker that collects violations, with a `model_lanes`-lane V02
    /// client, and a real client with `lanes` lanes that sent requests
    /// `tags` for `echo`; the transmits go to the checker on the lanes
    /// `lie` returns.
    fn setup(
        model_lanes: usize,
        lanes: usize,
        tags: &[&'static [u8]],
        lie: impl Fn(Lane) -> Lane,
    ) -> (Checker, Client, Vec<RequestId>, Instant) {
        let t0 = Instant::now();
        let mut checker = Checker::new(t0, 0, 1);
        checker.panic_on_violation = false;
        checker.add_client(Dialect::V02, model_lanes, 1);
        let mut client = Client::new(mdp_core::ClientConfig::new(Dialect::V02).with_lanes(lanes), t0).unwrap();
        let mut ids = Vec::new();
        for tag in tags {
            let tag = Bytes::from_static(tag);
            let id = client.request(t0, echo(), vec![tag.clone()]).unwrap();
            checker.issued(t0, 0, id, echo(), tag);
            ids.push(id);
        }
        while let Some(t) = client.poll_transmit() {
            checker.client_transmit(t0, 0, lie(t.lane), &t.transmit);
        }
        (checker, client, ids, t0)
    }

    #[test]
    fn the_truth_passes() {
        let (mut checker, mut client, ids, t0) = setup(2, 2, &[b"a", b"b"], |l| l);
        checker.check_client(t0, 0, &client);
        checker.client_message(0, Lane(1), &final_for(b"b"));
        client.handle_message(t0, Lane(1), final_for(b"b"));
        while let Some(e) = client.poll_event() {
            checker.client_event(t0, 0, &e, false);
        }
        checker.check_client(t0, 0, &client);
        assert!(client.cancel(t0, ids[0]));
        checker.cancel(t0, 0, ids[0], true);
        while let Some(t) = client.poll_transmit() {
            checker.client_transmit(t0, 0, t.lane, &t.transmit);
        }
        checker.check_client(t0, 0, &client);
        checker.check_nothing_lost(t0);
        assert_eq!(checker.violations(), &[]);
        assert_eq!((checker.counts().answered, checker.counts().cancelled), (1, 1));
    }

    #[test]
    fn two_requests_for_a_service_on_one_lane_are_caught() {
        let (checker, ..) = setup(2, 2, &[b"a", b"b"], |_| Lane(0));
        assert!(checker.violations()[0].what.contains("could not be told apart"), "{:?}", checker.violations());
    }

    #[test]
    fn a_request_waiting_while_a_lane_is_free_is_caught() {
        // The model has two lanes, the client one: the second request waits.
        let (mut checker, client, ..) = setup(2, 1, &[b"a", b"b"], |l| l);
        checker.check_client(Instant::now(), 0, &client);
        assert!(checker.violations()[0].what.contains("though lane 1 could take it"), "{:?}", checker.violations());
    }

    #[test]
    fn a_lane_of_an_avoided_broker_does_not_count_as_free() {
        // Two brokers, one lane each. `a` goes to lane 0 (broker 0), `b`
        // half a second later to lane 1 (broker 1). `a` times out: broker
        // 0 is avoided (for 1.875 s to 2.5 s), and `a` waits, though lane 0
        // carries nothing: the rule must not count it. Then `b` times out
        // too: with every broker avoided every lane may take requests
        // again, and both go out.
        let t0 = Instant::now();
        let mut checker = Checker::new(t0, 0, 2);
        checker.panic_on_violation = false;
        checker.add_client(Dialect::V02, 2, 2);
        let config = mdp_core::ClientConfig::new(Dialect::V02).with_brokers(2);
        let timeout = config.timeout;
        let mut client = Client::new(config, t0).unwrap();
        let drain = |checker: &mut Checker, client: &mut Client, now: Instant| {
            while let Some(t) = client.poll_transmit() {
                checker.client_transmit(now, 0, t.lane, &t.transmit);
            }
            while let Some(e) = client.poll_event() {
                checker.client_event(now, 0, &e, false);
            }
            checker.check_client(now, 0, client);
        };
        let issue = |checker: &mut Checker, client: &mut Client, now: Instant, tag: &'static [u8]| {
            let id = client.request(now, echo(), vec![Bytes::from_static(tag)]).unwrap();
            checker.issued(now, 0, id, echo(), Bytes::from_static(tag));
            drain(checker, client, now);
            id
        };
        let a = issue(&mut checker, &mut client, t0, b"a");
        let t1 = t0 + Duration::from_millis(500);
        issue(&mut checker, &mut client, t1, b"b");
        client.handle_timeout(t0 + timeout);
        drain(&mut checker, &mut client, t0 + timeout);
        assert!(client.is_avoided(0) && !client.is_avoided(1));
        assert_eq!(checker.lane_of(0, a), None, "a waits");
        assert_eq!(checker.violations(), &[]);
        client.handle_timeout(t1 + timeout);
        drain(&mut checker, &mut client, t1 + timeout);
        assert!(client.is_avoided(0) && client.is_avoided(1));
        assert!(checker.lane_of(0, a).is_some(), "a is on the wire again");
        assert_eq!(checker.violations(), &[]);
    }

    #[test]
    fn a_cancel_without_a_reconnect_is_caught() {
        let (mut checker, mut client, ids, t0) = setup(1, 1, &[b"a"], |l| l);
        assert!(client.cancel(t0, ids[0]));
        checker.cancel(t0, 0, ids[0], true);
        // The Reconnect is not passed on.
        while client.poll_transmit().is_some() {}
        checker.check_client(t0, 0, &client);
        assert!(checker.violations()[0].what.contains("was cancelled while on the wire"), "{:?}", checker.violations());
    }

    #[test]
    fn a_reply_taken_on_the_wrong_lane_is_caught() {
        let (mut checker, mut client, ..) = setup(2, 2, &[b"a", b"b"], |l| l);
        // The message comes on lane 0 (the model is told so) but is handed
        // to the client as if on lane 1: it is taken for b's reply.
        checker.client_message(0, Lane(0), &final_for(b"a"));
        client.handle_message(Instant::now(), Lane(1), final_for(b"a"));
        while let Some(e) = client.poll_event() {
            checker.client_event(Instant::now(), 0, &e, false);
        }
        assert!(checker.violations()[0].what.contains("was for #0"), "{:?}", checker.violations());
    }
}
