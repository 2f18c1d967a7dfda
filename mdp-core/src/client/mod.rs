//! The MDP client state machine: its public API here, the rules for lanes
//! and the wire in `lanes`, reply matching in `replies`. What it promises is
//! documented on [`Client`].

mod brokers;
mod config;
mod event;
mod lanes;
mod replies;

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use bytes::Bytes;

pub use config::ClientConfig;
pub use event::{ClientDiscardReason, ClientEvent, ClientUsageError, FailReason, RequestId};

use crate::codec::{BrokerCommand, Dialect, Multipart};
use crate::config::ConfigError;
use crate::hash::{Map, Seeded};
use crate::shell::{Shell, Unreadable};
use crate::time::TimerTable;
use crate::{PeerTransmit, SplitMix64};

/// One of a client's connections to the broker: `Lane(0)` to
/// `Lane(lanes - 1)` (see [`Client`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Lane(pub usize);

/// What a [`Client`] asks its transport to do, and on which lane.
///
/// Drain these in order: a [`Reconnect`](PeerTransmit::Reconnect) of a lane
/// applies to every later [`Send`](PeerTransmit::Send) on that lane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTransmit {
    /// The connection it is for.
    pub lane: Lane,
    /// What to do on it.
    pub transmit: PeerTransmit,
}

/// Why a [`Client`] has a deadline set ([`Client::next_timer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ClientTimer {
    /// The request on the wire times out: its lane is replaced and it is
    /// sent again, or fails.
    RequestTimeout(RequestId),
    /// The broker with this index, avoided since it failed, may take
    /// requests again.
    BrokerBackoff(usize),
}

/// Why the client replaces a lane's connection and resends what was on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resend {
    /// A deadline passed: the requests that timed out use a try.
    Timeout,
    /// The transport lost the connection: every request on it uses a try.
    ConnectionLost,
    /// A request on it was cancelled: the others use no try.
    Cancelled,
}

/// An outstanding request.
#[derive(Debug)]
struct Pending {
    service: Bytes,
    /// Kept to resend it; `Bytes` frames, so a resend copies no data.
    body: Multipart,
    /// How many times it was sent.
    tries: u32,
    /// The lane it is on the wire on; `None` while it waits in the client.
    /// While it is on the wire, a `RequestTimeout` timer is set for it
    /// (unless its timeout is too far away for `Instant`: never).
    lane: Option<usize>,
    /// Whether PARTIALs of the current send were delivered.
    parts_delivered: bool,
}

/// Requests for one service, on the wire and waiting.
#[derive(Debug)]
struct ServiceState {
    /// The request on the wire for this service on each lane.
    on_lane: Vec<Option<RequestId>>,
    /// Requests waiting for a lane, oldest first.
    waiting: VecDeque<RequestId>,
}

impl ServiceState {
    fn is_empty(&self) -> bool {
        self.waiting.is_empty() && self.on_lane.iter().all(Option::is_none)
    }
}

/// The sans-IO MDP client.
///
/// A [`Client`] sends requests to services through a broker, matches the
/// replies to them, and retries requests that get no answer in time.
///
/// It does no IO and never reads the clock. After any input
/// ([`request`](Client::request), [`cancel`](Client::cancel),
/// [`handle_message`](Client::handle_message),
/// [`handle_connection_lost`](Client::handle_connection_lost),
/// [`handle_timeout`](Client::handle_timeout)) the caller drains
/// [`poll_transmit`](Client::poll_transmit) and
/// [`poll_event`](Client::poll_event) until both return `None`, then sleeps
/// until [`poll_timeout`](Client::poll_timeout) or the next message.
/// ([`next_timer`](Client::next_timer) says why that deadline is set.)
///
/// ## Lanes
///
/// A client keeps [`ClientConfig::lanes`] connections to the broker, each
/// with its own identity: its *lanes*. Every [`ClientTransmit`] names the
/// lane it is for, and the transport says on which lane each message came
/// in ([`Client::handle_message`]). With one lane (the default) a client is
/// one connection.
///
/// ## Matching replies to requests
///
/// MDP carries no request id: a reply names only its service (and in the
/// majortomo dialect not even that), and a broker that serves several
/// requests of one connection at once answers them in any order. So the
/// client keeps **at most one request per service on the wire on each
/// lane**, and a reply for service `S` on lane `L` belongs to the one request
/// for `S` on `L`. Matching is exact whatever the broker does: drop or
/// expire a request, restart while ZeroMQ silently reconnects the socket, or
/// answer out of order.
///
/// * A new request goes to a lane with nothing on the wire for its service,
///   the least loaded first (fewest requests on the wire; on a tie, the
///   first after the lane taken last, so lanes take requests in turn). If
///   every lane has one for that service, it waits in the client, behind
///   the others waiting for that service, and goes out when a lane frees
///   up. So a client with `L` lanes has up to `L` requests per service
///   being served at once, and requests for different services go out side
///   by side.
/// * PARTIALs become [`ClientEvent::Partial`]s of the matched request; the
///   FINAL (in MDP/0.1 the one REPLY) becomes [`ClientEvent::Reply`] and
///   completes it. Replies to requests on different lanes may come in any
///   order.
/// * Majortomo-dialect replies carry no service name, so a majortomo lane
///   carries one request at a time, whatever its service; the reply on it is
///   for that one.
/// * A reply that matches no request on the wire is dropped with
///   [`ClientEvent::Discarded`].
///
/// ## Timeouts, retries and cancelling
///
/// Each send of a request has a deadline, `timeout` after it was sent; the
/// deadline covers the whole reply, PARTIALs included. A request waiting in
/// the client has no deadline yet. When a deadline passes, the client
/// follows RFC 7's advice and replaces **that request's lane**: it emits
/// [`PeerTransmit::Reconnect`] for the lane, then, for each request on the
/// wire on it, in the order they were put on the lane,
///
/// * if its deadline passed it has used a try: after `tries` tries it fails
///   ([`ClientEvent::Failed`]) and the next request waiting for its service
///   goes out, otherwise it is sent again on the new connection;
/// * otherwise it is sent again too, because its reply would come to the old
///   connection, which is gone. This costs it no try.
///
/// Other lanes are not touched. A transport that knows a lane's connection
/// ended (TCP closed) may say so with [`Client::handle_connection_lost`]:
/// the same happens at once, as if every request on the lane had timed out.
///
/// [`Client::cancel`] forgets a request. If it was on the wire, its lane is
/// replaced the same way (the others on the lane are resent at no cost of a
/// try), so that its late reply can never be taken for the answer to a
/// later request; then the next waiting request goes out.
///
/// Each request sent gets a fresh deadline. A request resent (or, with
/// several brokers, taken off its lane to be sent again elsewhere) whose
/// PARTIALs were already delivered is announced with
/// [`ClientEvent::Restarted`]: the parts delivered so far must be thrown
/// away, because the answer starts again from its first part.
///
/// Failing or cancelling a request on the wire always comes with a
/// reconnect, so its late reply can never arrive and be taken for the reply
/// to a newer request for the same service. That relies on the transport
/// keeping [`PeerTransmit::Reconnect`]'s contract: nothing from the old
/// connection is passed in afterwards.
///
/// ## Several brokers
///
/// A client may know [`ClientConfig::brokers`] brokers that serve the same
/// services (every worker registered with all of them). It then has
/// `lanes` lanes to each, [`ClientConfig::total_lanes`] in all, and lane
/// `l` is connected to broker `l % brokers` ([`Client::broker_of`]). A new
/// request goes to the least loaded lane that can take it, and lanes tie
/// in turn, so requests go to the brokers in turn.
///
/// When a request times out or a lane's connection is lost, the lane's
/// broker has *failed*: the client avoids it for its
/// [`ClientConfig::broker_backoff`] ([`Client::is_avoided`]). The lane is
/// replaced as above, but its requests leave it (at the same cost in tries)
/// and go to lanes of brokers that are not avoided, ahead of newer requests
/// for their service; they wait in the client if those lanes are busy with
/// their service. While any broker is not avoided, no request goes to one
/// that is; if every broker is avoided, every lane may take requests again.
/// When the backoff ends the broker is on probation
/// ([`Client::is_on_probation`]): it takes one request at a time until it
/// answers one, so a broker still dead costs one request a timeout.
/// Requests already on other lanes of a failed broker stay there until
/// their own deadlines. The backoff ends with its timer
/// ([`ClientTimer::BrokerBackoff`]) or with a reply from the broker; each
/// failure in a row doubles it, up to its `max` (a failure seen while the
/// broker is avoided, on another of its lanes, does not count), and a reply
/// resets it and ends any probation.
/// Matching stays exact: each lane is one connection to one broker.
///
/// With one broker (the default) a failed lane's requests are resent on
/// the lane's new connection, as described above.
///
/// ## Example: the event loop
///
/// ```
/// use std::time::{Duration, Instant};
/// use bytes::Bytes;
/// use mdp_core::{Client, ClientConfig, ClientEvent, ClientTransmit, Dialect, Lane, Multipart, PeerTransmit};
///
/// fn drain(client: &mut Client, sent: &mut Vec<(Lane, Multipart)>, events: &mut Vec<ClientEvent>) {
///     while let Some(ClientTransmit { lane, transmit }) = client.poll_transmit() {
///         match transmit {
///             PeerTransmit::Send(frames) => sent.push((lane, frames)),
///             PeerTransmit::Reconnect => { /* close lane's socket, open a new one */ }
///         }
///     }
///     while let Some(e) = client.poll_event() {
///         events.push(e);
///     }
/// }
///
/// let t0 = Instant::now(); // the adapter reads the clock, the client never does
/// let mut client = Client::new(ClientConfig::new(Dialect::V02).with_lanes(2), t0)?;
/// let (mut sent, mut events) = (Vec::new(), Vec::new());
/// let echo = Bytes::from_static(b"echo");
/// let first = client.request(t0, echo.clone(), vec![Bytes::from_static(b"one")])?;
/// let second = client.request(t0, echo.clone(), vec![Bytes::from_static(b"two")])?;
/// drain(&mut client, &mut sent, &mut events);
/// // One request for "echo" on each lane.
/// assert_eq!(sent.iter().map(|(lane, _)| *lane).collect::<Vec<_>>(), [Lane(0), Lane(1)]);
///
/// // The broker answers the second first, on lane 1, with FINAL.
/// let reply: Multipart = vec![
///     Bytes::from_static(b"MDPC02"),
///     Bytes::from_static(&[0x03]),
///     echo.clone(),
///     Bytes::from_static(b"to two"),
/// ];
/// client.handle_message(t0 + Duration::from_millis(3), Lane(1), reply);
/// drain(&mut client, &mut sent, &mut events);
/// assert_eq!(events, vec![ClientEvent::Reply { id: second, body: vec![Bytes::from_static(b"to two")] }]);
/// assert!(client.is_outstanding(first));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// ## Memory
///
/// The client keeps each outstanding request's body for resending, and at
/// most `max_outstanding` of them. A message from the broker queues at most
/// one event and holds on to nothing else, so whatever the broker sends, a
/// caller that drains after every input keeps memory bounded.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    next_id: u64,
    /// Outstanding requests, oldest first.
    pending: BTreeMap<RequestId, Pending>,
    /// Services with requests outstanding, only those.
    services: Map<Bytes, ServiceState>,
    /// Per lane, the requests on the wire on it, in the order they were sent.
    lanes: Vec<Vec<RequestId>>,
    /// Where the search for a lane starts: after the lane last taken, so
    /// lanes (and the brokers behind them) take requests in turn.
    cursor: usize,
    /// Per broker, whether it failed lately.
    health: Vec<brokers::Health>,
    /// The backoff's jitter.
    rng: SplitMix64,
    timers: TimerTable<ClientTimer>,
    shell: Shell<ClientTransmit, ClientEvent>,
}

impl Client {
    /// Starts a client. Fails if the configuration is not valid
    /// ([`ClientConfig::validate`]).
    pub fn new(config: ClientConfig, now: Instant) -> Result<Client, ConfigError> {
        config.validate()?;
        Ok(Client {
            lanes: vec![Vec::new(); config.total_lanes()],
            cursor: 0,
            health: vec![brokers::Health::default(); config.brokers],
            rng: SplitMix64::new(config.broker_backoff.seed),
            shell: Shell::new(now, config.dialect),
            config,
            next_id: 0,
            pending: BTreeMap::new(),
            // Service names come from the application, not from peers, so a
            // fixed key is enough (and keeps runs reproducible).
            services: Map::with_hasher(Seeded::new(0)),
            timers: TimerTable::default(),
        })
    }

    // ---- getters ----

    /// The configuration this client was started with.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The dialect this client speaks.
    pub fn dialect(&self) -> Dialect {
        self.config.dialect
    }

    /// How many requests are outstanding (neither answered, failed nor
    /// cancelled), on the wire or waiting in the client.
    pub fn outstanding(&self) -> usize {
        self.pending.len()
    }

    /// How many lanes the client has: [`ClientConfig::total_lanes`].
    pub fn lane_count(&self) -> usize {
        self.lanes.len()
    }

    /// How many requests are on the wire, on every lane.
    pub fn on_wire(&self) -> usize {
        self.lanes.iter().map(Vec::len).sum()
    }

    /// Whether `id` is outstanding.
    pub fn is_outstanding(&self, id: RequestId) -> bool {
        self.pending.contains_key(&id)
    }

    /// The lane `id` is on the wire on, if it is outstanding and not waiting
    /// in the client.
    pub fn lane_of(&self, id: RequestId) -> Option<Lane> {
        self.pending.get(&id)?.lane.map(Lane)
    }

    // ---- input ----

    /// Sends `body` to `service` (or queues it in the client until a lane
    /// can take it) and returns the id the events about it carry.
    ///
    /// Fails for an empty service or body, and when `max_outstanding`
    /// requests are outstanding.
    pub fn request(&mut self, now: Instant, service: Bytes, body: Multipart) -> Result<RequestId, ClientUsageError> {
        let now = self.shell.advance(now);
        self.check_request(&service, &body)?;
        let id = RequestId(self.next_id);
        self.next_id += 1;
        let pending = Pending { service: service.clone(), body, tries: 1, lane: None, parts_delivered: false };
        self.pending.insert(id, pending);
        let lanes = self.lanes.len();
        let state = self
            .services
            .entry(service.clone())
            .or_insert_with(|| ServiceState { on_lane: vec![None; lanes], waiting: VecDeque::new() });
        state.waiting.push_back(id);
        self.send_waiting(now, &service);
        Ok(id)
    }

    /// Forgets request `id`: after it, no event names it, not even one
    /// already queued and not yet polled (a `Reply` or `Failed` of a request
    /// that ended before this call is dropped too). Returns whether it was
    /// outstanding.
    ///
    /// If it was on the wire, its lane is replaced ([`PeerTransmit::Reconnect`]),
    /// so that its late reply can never be taken for the answer to a later
    /// request; the other requests on that lane are sent again on the new
    /// connection, using no try. Then the next request waiting for a lane
    /// goes out.
    pub fn cancel(&mut self, now: Instant, id: RequestId) -> bool {
        let now = self.shell.advance(now);
        self.shell.retain_events(|e| e.id() != Some(id));
        let Some((service, lane)) = self.forget(id) else { return false };
        if let Some(lane) = lane {
            self.reconnect(now, lane, Resend::Cancelled);
        }
        self.after_freed(now, &service);
        if lane.is_some_and(|lane| self.is_on_probation(self.broker_index(lane))) {
            // It may have been the probe of a broker on probation, which
            // may now take a request for any service.
            self.send_all_waiting(now);
        }
        true
    }

    /// Takes in a message the broker sent on `lane`.
    pub fn handle_message(&mut self, now: Instant, lane: Lane, frames: Multipart) {
        self.shell.advance(now);
        if lane.0 >= self.lanes.len() {
            return self.discard(ClientDiscardReason::NoSuchLane { lane, lanes: self.lanes.len() });
        }
        let command = match self.shell.read(frames) {
            Ok(command) => command,
            Err(unreadable) => return self.discard(unreadable.into()),
        };
        match command {
            BrokerCommand::Partial { service, body } => self.partial(lane.0, service, body),
            BrokerCommand::Final { service, body } => self.reply(lane.0, service, body),
            other => self.discard(ClientDiscardReason::NotForClients { command: other.command() }),
        }
    }

    /// Acts on passed deadlines: replaces the lanes of the requests that
    /// timed out, resends, fails requests out of tries. Calling it early or
    /// twice does nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.shell.advance(now);
        let due: Vec<ClientTimer> = self.timers.due(now).collect();
        let mut lanes = Vec::new();
        for timer in due {
            match timer {
                ClientTimer::RequestTimeout(id) => lanes.extend(self.pending.get(&id).and_then(|p| p.lane)),
                ClientTimer::BrokerBackoff(broker) => self.backoff_ended(now, broker),
            }
        }
        lanes.sort_unstable();
        lanes.dedup();
        for lane in lanes {
            self.reconnect(now, lane, Resend::Timeout);
        }
    }

    /// The transport saw `lane`'s connection to the broker end (for TCP:
    /// the peer closed it or it failed) after it was up. Every reply still
    /// due on it is lost, so the client does at once what a timeout of every
    /// request on the lane would do: it asks for [`PeerTransmit::Reconnect`]
    /// on the lane and sends each of them again, each using a try (so a
    /// broker that drops every connection cannot make the client resend for
    /// ever), and fails those out of tries. With nothing on the lane it only
    /// asks for the new connection. Other lanes are not touched.
    ///
    /// Optional: without it the requests' timeouts do the same, later.
    /// Call it once per connection, not for a connection still being
    /// dialled. A lane this client does not have is ignored.
    pub fn handle_connection_lost(&mut self, now: Instant, lane: Lane) {
        let now = self.shell.advance(now);
        if lane.0 < self.lanes.len() {
            self.reconnect(now, lane.0, Resend::ConnectionLost);
        }
    }

    // ---- output ----

    /// The next transmit to perform, in order.
    pub fn poll_transmit(&mut self) -> Option<ClientTransmit> {
        self.shell.poll_transmit()
    }

    /// The next event for the application, in order.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.shell.poll_event()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next: the
    /// earliest deadline of a request on the wire, never earlier than the
    /// latest `now` passed in. `None` when nothing is on the wire.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_timer().map(|(at, _)| at)
    }

    /// The deadline [`poll_timeout`](Self::poll_timeout) returns, and why
    /// it is set.
    pub fn next_timer(&self) -> Option<(Instant, ClientTimer)> {
        self.timers.next(self.shell.now())
    }
}

impl From<Unreadable> for ClientDiscardReason {
    fn from(u: Unreadable) -> Self {
        match u {
            Unreadable::Malformed(e) => ClientDiscardReason::Malformed(e),
            Unreadable::WrongDialect { expected, found } => ClientDiscardReason::WrongDialect { expected, found },
        }
    }
}
