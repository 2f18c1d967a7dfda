//! The MDP client state machine.
//!
//! A [`Client`] sends requests to services through a broker, matches the
//! replies to them, and retries requests that get no answer in time.
//!
//! It does no IO and never reads the clock. After any input
//! ([`request`](Client::request), [`handle_message`](Client::handle_message),
//! [`handle_timeout`](Client::handle_timeout)) the caller drains
//! [`poll_transmit`](Client::poll_transmit) and
//! [`poll_event`](Client::poll_event) until both return `None`, then sleeps
//! until [`poll_timeout`](Client::poll_timeout) or the next message.
//!
//! ## Matching replies to requests
//!
//! MDP carries no request id: a reply names only its service (and in the
//! majortomo dialect not even that). So replies are matched by order:
//!
//! * A PARTIAL or FINAL naming service `S` belongs to the **oldest outstanding
//!   request for `S`**. PARTIALs become [`ClientEvent::Partial`]s of it; the
//!   FINAL (in MDP/0.1 the one REPLY) becomes [`ClientEvent::Reply`] and
//!   completes it.
//! * To keep that exact whatever the broker does, the client puts **one
//!   request per service on the wire at a time**. Further requests for the
//!   same service wait in the client, in order, and each is sent when the one
//!   before it is answered or has failed. Requests for different services go
//!   out at once, side by side.
//!
//!   With several requests for one service on the wire, a single one lost
//!   without a word would shift every later reply onto the wrong request: a
//!   broker that drops or expires a request, a broker that restarts while
//!   ZeroMQ silently reconnects the socket, or a broker (the ZeroMQ Guide's,
//!   majortomo's) that hands one client's requests to several workers at once
//!   and so answers them out of order. With one on the wire, a reply for `S`
//!   can only be for that one request. The price is one round trip per
//!   request to one service; mdp-rs's broker serves one request per (client,
//!   service) at a time anyway, for the same reason.
//! * Majortomo-dialect replies carry no service name, so they are matched to
//!   the request on the wire. To keep that exact, a majortomo client may only
//!   have requests for one service outstanding at a time:
//!   [`request`](Client::request) for another service fails with
//!   [`ClientUsageError::OtherServiceOutstanding`].
//! * A reply that matches no outstanding request is dropped with
//!   [`ClientEvent::Discarded`].
//!
//! ## Timeouts and retries
//!
//! Each send of a request has a deadline, `timeout` after it was sent; the
//! deadline covers the whole reply, PARTIALs included. A request waiting
//! behind another for its service has no deadline yet. When a deadline
//! passes, the client follows RFC 7's advice and replaces its connection: it
//! emits [`PeerTransmit::Reconnect`] first, then, for each request on the
//! wire,
//!
//! * if its deadline passed it has used a try: after `tries` tries it fails
//!   ([`ClientEvent::Failed`]) and the next request for its service goes out,
//!   otherwise it is sent again;
//! * otherwise it is sent again too, because its reply would come to the old
//!   connection, which is gone. This costs it no try.
//!
//! A transport that knows the connection ended (TCP closed) may say so with
//! [`Client::handle_connection_lost`]: the same happens at once, as if every
//! request on the wire had timed out.
//!
//! Each request sent gets a fresh deadline. A
//! resent request whose PARTIALs were already delivered is announced with
//! [`ClientEvent::Restarted`]: the parts delivered so far must be thrown away,
//! because the answer starts again from its first part.
//!
//! Failing a request always comes with a reconnect, so its late reply can
//! never arrive and be taken for the reply to a newer request for the same
//! service. That relies on the adapter keeping [`PeerTransmit::Reconnect`]'s
//! contract: nothing from the old connection is passed in afterwards.
//!
//! ## Example: the event loop
//!
//! ```
//! use std::time::{Duration, Instant};
//! use bytes::Bytes;
//! use mdp_core::{Client, ClientConfig, ClientEvent, Dialect, Multipart, PeerTransmit};
//!
//! fn drain(client: &mut Client, sent: &mut Vec<Multipart>, events: &mut Vec<ClientEvent>) {
//!     while let Some(t) = client.poll_transmit() {
//!         match t {
//!             PeerTransmit::Send(frames) => sent.push(frames),
//!             PeerTransmit::Reconnect => { /* close the socket, open a new one */ }
//!         }
//!     }
//!     while let Some(e) = client.poll_event() {
//!         events.push(e);
//!     }
//! }
//!
//! let t0 = Instant::now(); // the adapter reads the clock, the client never does
//! let mut client = Client::new(ClientConfig::new(Dialect::V02), t0)?;
//! let (mut sent, mut events) = (Vec::new(), Vec::new());
//! let id = client.request(t0, Bytes::from_static(b"echo"), vec![Bytes::from_static(b"hi")])?;
//! drain(&mut client, &mut sent, &mut events);
//! assert_eq!(sent.len(), 1); // MDPC02, 0x01, "echo", "hi"
//!
//! // The broker answers with FINAL.
//! let reply: Multipart = vec![
//!     Bytes::from_static(b"MDPC02"),
//!     Bytes::from_static(&[0x03]),
//!     Bytes::from_static(b"echo"),
//!     Bytes::from_static(b"hi"),
//! ];
//! client.handle_message(t0 + Duration::from_millis(3), reply);
//! drain(&mut client, &mut sent, &mut events);
//! assert_eq!(events, vec![ClientEvent::Reply { id, body: vec![Bytes::from_static(b"hi")] }]);
//! assert_eq!(client.poll_timeout(), None); // nothing outstanding
//! # Ok::<(), mdp_core::ClientUsageError>(())
//! ```
//!
//! ## Memory
//!
//! The client keeps each outstanding request's body for resending, and at
//! most `max_outstanding` of them. A message from the broker queues at most
//! one event and holds on to nothing else, so whatever the broker sends, a
//! caller that drains after every input keeps memory bounded.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::codec::{BrokerCommand, DecodeError, Dialect, Found, Multipart, PeerCommand};
use crate::PeerTransmit;

/// How a [`Client`] behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The dialect to speak; the broker must answer in the same one.
    pub dialect: Dialect,
    /// How long to wait for the whole reply to one send of a request.
    /// Default 2.5 s, as in the ZeroMQ Guide. Must not be zero.
    pub timeout: Duration,
    /// How many times to send a request before giving up. Default 3. Must not
    /// be zero.
    pub tries: u32,
    /// How many requests may be outstanding at once. Default 1024.
    pub max_outstanding: usize,
}

impl ClientConfig {
    /// A configuration with the defaults for everything but the dialect.
    pub fn new(dialect: Dialect) -> Self {
        ClientConfig { dialect, timeout: Duration::from_millis(2500), tries: 3, max_outstanding: 1024 }
    }
}

/// Names a request in the events about it. Ids increase with every
/// [`Client::request`] and are never reused by one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(u64);

impl RequestId {
    /// The id as a number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// What a [`Client`] tells the application.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// One streamed part of the reply to `id` (0.2 dialects). More follow.
    Partial {
        /// The request.
        id: RequestId,
        /// The part's frames.
        body: Multipart,
    },
    /// The last part of the reply to `id` (FINAL; in MDP/0.1 the one REPLY).
    /// The request is complete: no more events name it.
    Reply {
        /// The request.
        id: RequestId,
        /// The part's frames.
        body: Multipart,
    },
    /// `id` was sent again after PARTIALs of it had been delivered: throw
    /// those parts away, the answer starts again.
    Restarted {
        /// The request.
        id: RequestId,
    },
    /// `id` got no reply in time, however often it was sent. No more events
    /// name it.
    Failed {
        /// The request.
        id: RequestId,
        /// Why.
        reason: FailReason,
    },
    /// A message from the broker was dropped.
    Discarded {
        /// Why.
        reason: ClientDiscardReason,
    },
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FailReason {
    /// No reply within the timeout, and the request was to be sent once only
    /// (`tries` is 1).
    #[error("no reply within the timeout")]
    Timeout,
    /// No reply within the timeout to any of `tries` sends.
    #[error("no reply to any of {tries} tries")]
    RetriesExhausted {
        /// How many times the request was sent.
        tries: u32,
    },
    /// The connection carrying the last of `tries` sends was lost
    /// ([`Client::handle_connection_lost`]), and no try was left.
    #[error("the connection was lost with the last of {tries} tries")]
    ConnectionLost {
        /// How many times the request was sent.
        tries: u32,
    },
}

/// Why the client replaces its connection and resends what was on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resend {
    /// A deadline passed: the requests that timed out use a try.
    Timeout,
    /// The transport lost the connection: every request on it uses a try.
    ConnectionLost,
}

/// Why a [`Client`] dropped a message from the broker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientDiscardReason {
    /// The frames are not an MDP command.
    #[error("malformed message from the broker: {0}")]
    Malformed(DecodeError),
    /// A valid command, in another dialect than the client speaks.
    #[error("message in {found}, but this client speaks {expected}")]
    WrongDialect {
        /// The client's dialect.
        expected: Dialect,
        /// The message's dialect.
        found: Dialect,
    },
    /// A command the broker sends only to workers.
    #[error("{command} is sent to workers, not to clients")]
    NotForClients {
        /// The command, as the RFCs name it.
        command: &'static str,
    },
    /// A reply for which no request is outstanding: a late reply to a request
    /// that failed, or a broker sending what nobody asked for.
    #[error("{command}{} matches no outstanding request", for_service(.service))]
    Unmatched {
        /// PARTIAL or FINAL.
        command: &'static str,
        /// The service the reply named (`None` in the majortomo dialect).
        service: Option<Found>,
    },
}

fn for_service(service: &Option<Found>) -> String {
    service.as_ref().map(|s| format!(" from service {s}")).unwrap_or_default()
}

/// A mistake in how the application uses a [`Client`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientUsageError {
    /// The service name is empty.
    #[error("the service name is empty")]
    EmptyService,
    /// The body has no frames; MDP requests need at least one.
    #[error("the request body has no frames; MDP needs at least one")]
    EmptyBody,
    /// `max_outstanding` requests are outstanding already.
    #[error("{max} requests are outstanding already (max_outstanding)")]
    TooManyOutstanding {
        /// [`ClientConfig::max_outstanding`].
        max: usize,
    },
    /// In the majortomo dialect replies carry no service name, so requests
    /// for only one service may be outstanding at a time.
    #[error("requests for service {outstanding} are outstanding; majortomo replies name no service, so a request for {requested} must wait")]
    OtherServiceOutstanding {
        /// The service of the requests outstanding.
        outstanding: Found,
        /// The service asked for.
        requested: Found,
    },
    /// [`ClientConfig::timeout`] is zero.
    #[error("the timeout is zero")]
    ZeroTimeout,
    /// [`ClientConfig::tries`] is zero.
    #[error("tries is zero: a request must be sent at least once")]
    ZeroTries,
}

/// An outstanding request.
#[derive(Debug)]
struct Pending {
    service: Bytes,
    /// Kept to resend it; `Bytes` frames, so a resend copies no data.
    body: Multipart,
    /// How many times it was sent.
    tries: u32,
    /// Whether it is on the wire: the oldest outstanding request for its
    /// service. The others wait their turn unsent.
    sent: bool,
    /// When the current send times out (`None`: not sent, or too far away
    /// for `Instant`).
    deadline: Option<Instant>,
    /// Whether PARTIALs of the current send were delivered.
    parts_delivered: bool,
}

/// The sans-IO MDP client. See the [module documentation](self).
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    /// The latest `now` passed in; time never goes back from it.
    now: Instant,
    next_id: u64,
    /// Outstanding requests in the order they were made.
    pending: BTreeMap<RequestId, Pending>,
    /// Outstanding request ids per service, oldest first: whom a reply is for.
    by_service: HashMap<Bytes, VecDeque<RequestId>>,
    transmits: VecDeque<PeerTransmit>,
    events: VecDeque<ClientEvent>,
}

impl Client {
    /// Starts a client. Fails if the timeout or the number of tries is zero.
    pub fn new(config: ClientConfig, now: Instant) -> Result<Client, ClientUsageError> {
        if config.timeout.is_zero() {
            return Err(ClientUsageError::ZeroTimeout);
        }
        if config.tries == 0 {
            return Err(ClientUsageError::ZeroTries);
        }
        Ok(Client {
            config,
            now,
            next_id: 0,
            pending: BTreeMap::new(),
            by_service: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        })
    }

    /// The configuration this client was started with.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The dialect this client speaks.
    pub fn dialect(&self) -> Dialect {
        self.config.dialect
    }

    /// How many requests are outstanding (sent and neither answered nor failed).
    pub fn outstanding(&self) -> usize {
        self.pending.len()
    }

    /// Whether `id` is outstanding.
    pub fn is_outstanding(&self, id: RequestId) -> bool {
        self.pending.contains_key(&id)
    }

    /// Sends `body` to `service` and returns the id the events about it carry.
    ///
    /// Fails for an empty service or body, when `max_outstanding` requests are
    /// outstanding, and in the majortomo dialect when requests for another
    /// service are outstanding (see the [module documentation](self)).
    pub fn request(&mut self, now: Instant, service: Bytes, body: Multipart) -> Result<RequestId, ClientUsageError> {
        let now = self.advance(now);
        self.check_request(&service, &body)?;
        let id = RequestId(self.next_id);
        self.next_id += 1;
        let pending =
            Pending { service: service.clone(), body, tries: 1, sent: false, deadline: None, parts_delivered: false };
        self.pending.insert(id, pending);
        let queue = self.by_service.entry(service).or_default();
        queue.push_back(id);
        if queue.len() == 1 {
            self.send(id, now);
        }
        Ok(id)
    }

    /// Takes in a message the broker sent.
    pub fn handle_message(&mut self, now: Instant, frames: Multipart) {
        self.advance(now);
        let command = match BrokerCommand::decode(frames) {
            Err(e) => return self.discard(ClientDiscardReason::Malformed(e)),
            Ok((found, _)) if found != self.config.dialect => {
                return self.discard(ClientDiscardReason::WrongDialect { expected: self.config.dialect, found });
            }
            Ok((_, command)) => command,
        };
        match command {
            BrokerCommand::Partial { service, body } => self.partial(service, body),
            BrokerCommand::Final { service, body } => self.reply(service, body),
            BrokerCommand::Request { .. } => self.discard(ClientDiscardReason::NotForClients { command: "REQUEST" }),
            BrokerCommand::Heartbeat => self.discard(ClientDiscardReason::NotForClients { command: "HEARTBEAT" }),
            BrokerCommand::Disconnect => self.discard(ClientDiscardReason::NotForClients { command: "DISCONNECT" }),
        }
    }

    /// Acts on passed deadlines: reconnects, resends, fails requests out of
    /// tries. Calling it early or twice does nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.advance(now);
        if !self.first_deadline().is_some_and(|d| d <= now) {
            return;
        }
        self.reconnect(now, Resend::Timeout);
    }

    /// The transport saw the connection to the broker end (for TCP: the
    /// peer closed it or it failed) after it was up. Every reply still due
    /// on it is lost, so the client does at once what a timeout of every
    /// request on the wire would do: it asks for [`PeerTransmit::Reconnect`]
    /// and sends each of them again, each using a try (so a broker that
    /// drops every connection cannot make the client resend for ever), and
    /// fails those out of tries. With nothing on the wire it only asks for
    /// the new connection.
    ///
    /// Optional: without it the requests' timeouts do the same, later.
    /// Call it once per connection, not for a connection still being
    /// dialled.
    pub fn handle_connection_lost(&mut self, now: Instant) {
        let now = self.advance(now);
        self.reconnect(now, Resend::ConnectionLost);
    }

    /// Replaces the connection and resends (or fails) every request on the
    /// wire, in order.
    fn reconnect(&mut self, now: Instant, why: Resend) {
        self.transmits.push_back(PeerTransmit::Reconnect);
        let on_wire: Vec<RequestId> = self.pending.iter().filter(|(_, p)| p.sent).map(|(id, _)| *id).collect();
        for id in on_wire {
            self.retry(id, now, why);
        }
    }

    /// The next transmit to perform, in order.
    pub fn poll_transmit(&mut self) -> Option<PeerTransmit> {
        self.transmits.pop_front()
    }

    /// The next event for the application, in order.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next: the
    /// earliest deadline of an outstanding request, never earlier than the
    /// latest `now` passed in. `None` when nothing is outstanding.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.first_deadline().map(|d| d.max(self.now))
    }

    /// The earliest deadline of a request on the wire: one per service.
    fn first_deadline(&self) -> Option<Instant> {
        let heads = self.by_service.values().filter_map(|ids| ids.front());
        heads.filter_map(|id| self.pending.get(id)?.deadline).min()
    }

    fn check_request(&self, service: &Bytes, body: &Multipart) -> Result<(), ClientUsageError> {
        if service.is_empty() {
            return Err(ClientUsageError::EmptyService);
        }
        if body.is_empty() {
            return Err(ClientUsageError::EmptyBody);
        }
        if self.pending.len() >= self.config.max_outstanding {
            return Err(ClientUsageError::TooManyOutstanding { max: self.config.max_outstanding });
        }
        if self.config.dialect == Dialect::Majortomo {
            if let Some(other) = self.pending.values().next().filter(|p| p.service != service) {
                let outstanding = Found(other.service.clone());
                return Err(ClientUsageError::OtherServiceOutstanding {
                    outstanding,
                    requested: Found(service.clone()),
                });
            }
        }
        Ok(())
    }

    /// Moves the clock forward (never back) and returns the time to use.
    fn advance(&mut self, now: Instant) -> Instant {
        self.now = self.now.max(now);
        self.now
    }

    /// Sends (or resends) request `id` and starts its deadline.
    fn send(&mut self, id: RequestId, now: Instant) {
        let Some(p) = self.pending.get_mut(&id) else { return };
        p.sent = true;
        p.deadline = now.checked_add(self.config.timeout);
        p.parts_delivered = false;
        let command = PeerCommand::Request { service: p.service.clone(), body: p.body.clone() };
        // `check_request` ruled out the only failures (empty service, empty
        // body), so nothing is lost here.
        if let Ok(frames) = command.encode(self.config.dialect) {
            self.transmits.push_back(PeerTransmit::Send(frames));
        }
    }

    /// After a reconnect: fail `id` if this send used a try (it timed out,
    /// or its connection was lost) and none is left, else send it again on
    /// the new connection. A request resent only because another timed out
    /// uses no try.
    fn retry(&mut self, id: RequestId, now: Instant, why: Resend) {
        let Some(p) = self.pending.get_mut(&id) else { return };
        let used_try = why == Resend::ConnectionLost || p.deadline.is_some_and(|d| d <= now);
        if used_try && p.tries >= self.config.tries {
            let reason = match (why, self.config.tries) {
                (Resend::ConnectionLost, tries) => FailReason::ConnectionLost { tries },
                (Resend::Timeout, 1) => FailReason::Timeout,
                (Resend::Timeout, tries) => FailReason::RetriesExhausted { tries },
            };
            self.events.push_back(ClientEvent::Failed { id, reason });
            self.complete(id, now);
            return;
        }
        if used_try {
            p.tries += 1;
        }
        if p.parts_delivered {
            self.events.push_back(ClientEvent::Restarted { id });
        }
        self.send(id, now);
    }

    /// The request a reply naming `service` (or none) belongs to: the one
    /// on the wire for that service. In the majortomo dialect all requests
    /// are for one service, so the oldest is the one on the wire.
    fn matching(&self, service: Option<&Bytes>) -> Option<RequestId> {
        let id = match service {
            Some(service) => self.by_service.get(service).and_then(|ids| ids.front().copied()),
            None => self.pending.keys().next().copied(),
        };
        id.filter(|id| self.pending.get(id).is_some_and(|p| p.sent))
    }

    fn partial(&mut self, service: Option<Bytes>, body: Multipart) {
        let Some(id) = self.matching(service.as_ref()) else {
            return self.unmatched("PARTIAL", service);
        };
        if let Some(p) = self.pending.get_mut(&id) {
            p.parts_delivered = true;
        }
        self.events.push_back(ClientEvent::Partial { id, body });
    }

    fn reply(&mut self, service: Option<Bytes>, body: Multipart) {
        let Some(id) = self.matching(service.as_ref()) else {
            return self.unmatched("FINAL", service);
        };
        self.events.push_back(ClientEvent::Reply { id, body });
        let now = self.now;
        self.complete(id, now);
    }

    /// `id` is answered or failed: forget it, and send the next request
    /// waiting for its service.
    fn complete(&mut self, id: RequestId, now: Instant) {
        let Some(p) = self.pending.remove(&id) else { return };
        let Some(ids) = self.by_service.get_mut(&p.service) else { return };
        ids.retain(|&other| other != id);
        match ids.front().copied() {
            Some(next) => self.send(next, now),
            // Forget the service, so the map holds only outstanding ones.
            None => {
                self.by_service.remove(&p.service);
            }
        }
    }

    fn unmatched(&mut self, command: &'static str, service: Option<Bytes>) {
        self.discard(ClientDiscardReason::Unmatched { command, service: service.map(Found) });
    }

    fn discard(&mut self, reason: ClientDiscardReason) {
        self.events.push_back(ClientEvent::Discarded { reason });
    }
}
