//! The MDP worker state machine.
//!
//! A [`Worker`] registers one service with a broker, turns the broker's
//! REQUESTs into [`WorkerEvent::Request`]s, and sends the application's
//! answers back. It keeps the connection alive with heartbeats, notices a
//! silent or disconnecting broker, and reconnects after a growing, jittered
//! delay ([`Backoff`]).
//!
//! It does no IO and never reads the clock. After any input
//! ([`handle_message`](Worker::handle_message),
//! [`handle_timeout`](Worker::handle_timeout),
//! [`handle_connection_lost`](Worker::handle_connection_lost), [`reply`](Worker::reply),
//! [`partial`](Worker::partial), [`disconnect`](Worker::disconnect)) the
//! caller drains [`poll_transmit`](Worker::poll_transmit) and
//! [`poll_event`](Worker::poll_event) until both return `None`, then sleeps
//! until [`poll_timeout`](Worker::poll_timeout) or the next message.
//!
//! ## Timing
//!
//! * READY goes out at start and again after every reconnect's backoff.
//! * HEARTBEAT goes out whenever nothing else was sent for one
//!   `heartbeat_interval`, also while the application is busy with a request.
//! * Every valid message from the broker proves it alive. After `liveness`
//!   intervals without one (counted from the last one heard, or from READY),
//!   the worker gives the broker up: it emits [`PeerTransmit::Reconnect`] and
//!   [`WorkerEvent::Disconnected`], drops the request in progress, waits out
//!   the backoff and sends READY on the new connection. A DISCONNECT from the
//!   broker does the same at once, and so does
//!   [`handle_connection_lost`](Worker::handle_connection_lost), for a
//!   transport that knows its connection ended.
//!
//! ## Example: the event loop
//!
//! ```
//! use std::time::{Duration, Instant};
//! use bytes::Bytes;
//! use mdp_core::{Dialect, Multipart, PeerTransmit, Worker, WorkerConfig, WorkerEvent};
//!
//! // Stands in for the socket: what the worker asked to send.
//! fn drain(worker: &mut Worker, sent: &mut Vec<Multipart>, events: &mut Vec<WorkerEvent>) {
//!     while let Some(t) = worker.poll_transmit() {
//!         match t {
//!             PeerTransmit::Send(frames) => sent.push(frames),
//!             PeerTransmit::Reconnect => { /* close the socket, open a new one */ }
//!         }
//!     }
//!     while let Some(e) = worker.poll_event() {
//!         events.push(e);
//!     }
//! }
//!
//! let t0 = Instant::now(); // the adapter reads the clock, the worker never does
//! let config = WorkerConfig::new(Bytes::from_static(b"echo"), Dialect::V02);
//! let mut worker = Worker::new(config, t0)?;
//! let (mut sent, mut events) = (Vec::new(), Vec::new());
//! drain(&mut worker, &mut sent, &mut events);
//! assert_eq!(sent.pop().unwrap()[1], Bytes::from_static(&[0x01])); // READY
//!
//! // A REQUEST arrives from the broker.
//! let request: Multipart = vec![
//!     Bytes::from_static(b"MDPW02"),
//!     Bytes::from_static(&[0x02]),
//!     Bytes::from_static(b"client-7"),
//!     Bytes::new(),
//!     Bytes::from_static(b"hello"),
//! ];
//! worker.handle_message(t0 + Duration::from_millis(10), request);
//! drain(&mut worker, &mut sent, &mut events);
//! let Some(WorkerEvent::Request { token, body }) = events.pop() else { panic!("no request") };
//!
//! // The application answers; the worker sends FINAL.
//! worker.reply(t0 + Duration::from_millis(20), &token, body)?;
//! drain(&mut worker, &mut sent, &mut events);
//! assert_eq!(sent.pop().unwrap()[1], Bytes::from_static(&[0x04]));
//!
//! // Nothing else to do until the next heartbeat.
//! assert_eq!(worker.poll_timeout(), Some(t0 + Duration::from_millis(20) + Duration::from_millis(2500)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Memory
//!
//! The worker holds at most one request (its client address only; the body
//! goes to the application). Each input queues at most one transmit and one
//! event, so a caller that drains after every input, as above, keeps the
//! queues bounded whatever the broker sends.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::codec::{BrokerCommand, Command, DecodeError, Dialect, Found, Multipart, PeerCommand};
use crate::config::{nonzero, ConfigError};
use crate::{PeerId, PeerTransmit, SplitMix64};

/// How long a worker waits before registering again after losing the broker.
///
/// The delay for the `n`th consecutive failed attempt (counting from 0) is
/// `min(initial × 2ⁿ, max)`, shortened by a random fraction of up to `jitter`
/// of itself, so it lies in `(base × (1 − jitter), base]` and never exceeds
/// `max`. The jitter keeps many workers that lost the same broker from all
/// coming back in the same instant. An attempt fails when the broker goes
/// silent or sends DISCONNECT before it sent a HEARTBEAT or REQUEST on that
/// connection; a HEARTBEAT or REQUEST resets the count.
///
/// The randomness is a small deterministic generator seeded with `seed`: two
/// workers with the same seed wait the same delays, so tests can predict
/// them. Give each worker of a fleet its own seed.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Backoff {
    /// The first delay. Default 1 s.
    pub initial: Duration,
    /// The longest delay. Default 30 s.
    pub max: Duration,
    /// The largest fraction of the delay that jitter may take off, in
    /// `0.0..=1.0`. Default 0.25.
    pub jitter: f64,
    /// Seed of the jitter's generator. Default 0.
    pub seed: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { initial: Duration::from_secs(1), max: Duration::from_secs(30), jitter: 0.25, seed: 0 }
    }
}

impl Backoff {
    /// The delay before the attempt after `failures` consecutive failures.
    fn delay(&self, failures: u32, rng: &mut SplitMix64) -> Duration {
        let mut base = self.initial.min(self.max);
        // 64 doublings take any non-zero duration past Duration::MAX, so the
        // loop stays short however long the broker stays away.
        for _ in 0..failures.min(64) {
            base = base.saturating_mul(2).min(self.max);
        }
        let factor = 1.0 - self.jitter * rng.unit();
        // try_: a huge `max` times a factor near 1 may round past what a
        // Duration holds; then the unjittered delay will do.
        Duration::try_from_secs_f64(base.as_secs_f64() * factor).map_or(base, |d| d.min(base))
    }
}

/// How a [`Worker`] behaves.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct WorkerConfig {
    /// The service to register. Must not be empty nor start with `mmi.`.
    pub service: Bytes,
    /// The dialect to speak; the broker must answer in the same one.
    pub dialect: Dialect,
    /// Send a HEARTBEAT after this long without sending anything. Default
    /// 2.5 s, as in the ZeroMQ Guide. Must not be zero.
    pub heartbeat_interval: Duration,
    /// Give the broker up after this many intervals without hearing from it.
    /// Default 3. Must not be zero.
    pub liveness: u32,
    /// Delays between reconnection attempts.
    pub backoff: Backoff,
}

impl WorkerConfig {
    /// A configuration with the defaults for everything but the service and
    /// the dialect.
    pub fn new(service: Bytes, dialect: Dialect) -> Self {
        WorkerConfig {
            service,
            dialect,
            heartbeat_interval: Duration::from_millis(2500),
            liveness: 3,
            backoff: Backoff::default(),
        }
    }

    /// Checks the settings: a service name that a broker accepts, and
    /// non-zero heartbeat interval and liveness, backoff jitter within
    /// `0.0..=1.0`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.service.is_empty() {
            return Err(ConfigError::EmptyService);
        }
        if self.service.starts_with(b"mmi.") {
            return Err(ConfigError::ReservedService(Found(self.service.clone())));
        }
        nonzero(self.heartbeat_interval.is_zero(), "heartbeat_interval")?;
        nonzero(self.liveness == 0, "liveness")?;
        // `contains` is false for NaN too.
        if !(0.0..=1.0).contains(&self.backoff.jitter) {
            return Err(ConfigError::InvalidJitter(self.backoff.jitter));
        }
        Ok(())
    }

    /// How long the broker may stay silent.
    fn silence_limit(&self) -> Duration {
        self.heartbeat_interval.saturating_mul(self.liveness)
    }
}

/// Names the request a [`WorkerEvent::Request`] handed over; give it back to
/// [`Worker::reply`] or [`Worker::partial`].
///
/// It holds the client's address, the connection the request came on, and
/// the request's sequence number, so the worker can tell an answer to the
/// request in progress from one to a request already answered or dropped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReplyToken {
    client: Bytes,
    epoch: u64,
    seq: u64,
}

impl ReplyToken {
    /// The address of the client that sent the request, as the broker gave
    /// it: opaque bytes, for logging.
    pub fn client(&self) -> PeerId {
        PeerId(self.client.clone())
    }
}

/// What a [`Worker`] tells the application.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum WorkerEvent {
    /// A request to handle. Answer it with [`Worker::reply`], optionally
    /// preceded by [`Worker::partial`]s.
    Request {
        /// Names this request in the answer.
        token: ReplyToken,
        /// The request body, one or more frames.
        body: Multipart,
    },
    /// The worker gave up its connection; it registers again after the
    /// backoff.
    Disconnected {
        /// Why.
        reason: DisconnectReason,
        /// The request that was in progress, if any. It cannot be answered
        /// any more: its client will time out and retry.
        dropped: Option<ReplyToken>,
    },
    /// A message from the broker was dropped.
    Discarded {
        /// Why.
        reason: WorkerDiscardReason,
    },
}

/// Why a [`Worker`] gave up its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// Nothing came from the broker for `liveness` heartbeat intervals.
    #[error("the broker sent nothing for liveness × heartbeat interval")]
    BrokerSilent,
    /// The broker sent DISCONNECT.
    #[error("the broker sent DISCONNECT")]
    BrokerDisconnected,
    /// The transport reported the connection lost
    /// ([`Worker::handle_connection_lost`]).
    #[error("the connection to the broker was lost")]
    ConnectionLost,
}

/// Why a [`Worker`] dropped a message from the broker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerDiscardReason {
    /// The frames are not an MDP command.
    #[error("malformed message from the broker: {0}")]
    Malformed(DecodeError),
    /// A valid command, in another dialect than the worker speaks.
    #[error("message in {found}, but this worker speaks {expected}")]
    WrongDialect {
        /// The worker's dialect.
        expected: Dialect,
        /// The message's dialect.
        found: Dialect,
    },
    /// A command the broker sends only to clients.
    #[error("{command} is sent to clients, not to workers")]
    NotForWorkers {
        /// The command.
        command: Command,
    },
    /// A REQUEST arrived while another was in progress. A worker handles one
    /// request at a time (RFC 7, RFC 18), so a broker that sends a second one
    /// is broken; queueing it would let such a broker grow the worker's
    /// memory, and answering it would need concurrency the application did
    /// not ask for. Its client will time out and retry.
    #[error("REQUEST from client {client} while another request is in progress")]
    RequestWhileBusy {
        /// The client the dropped request came from.
        client: PeerId,
    },
    /// A message arrived while the worker waits to register again: the new
    /// connection has sent no READY, so the broker has no business writing.
    #[error("message before READY on this connection (waiting out the reconnect backoff)")]
    NotRegistered,
    /// A message arrived after [`Worker::disconnect`].
    #[error("message after the worker disconnected")]
    Stopped,
}

/// A mistake in how the application uses a [`Worker`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerUsageError {
    /// The token does not name the request in progress: it was answered
    /// already, or the token belongs to another worker.
    #[error("the token does not name the request in progress (answered already?)")]
    StaleToken,
    /// The request this token names was dropped by a reconnect (the
    /// [`WorkerEvent::Disconnected`] that reported it); it cannot be answered.
    #[error("the request was dropped when the worker reconnected")]
    RequestDropped,
    /// MDP/0.1 has no PARTIAL: answer with one [`Worker::reply`].
    #[error("MDP/0.1 has no PARTIAL; send the whole answer with reply()")]
    PartialInV01,
    /// The worker was stopped with [`Worker::disconnect`].
    #[error("the worker has disconnected")]
    Stopped,
}

/// Where the worker is with its connection.
#[derive(Debug, Clone, Copy)]
enum Link {
    /// READY was sent on the current connection.
    Registered {
        /// When the worker last sent anything: the heartbeat clock.
        last_sent: Instant,
        /// When the broker was last heard from (or READY sent): the liveness clock.
        last_heard: Instant,
    },
    /// The connection was replaced; READY goes out at `until` (`None`: a
    /// delay too long for `Instant` to hold, so never).
    Waiting { until: Option<Instant> },
    /// [`Worker::disconnect`] was called.
    Stopped,
}

/// The request in progress.
#[derive(Debug, Clone)]
struct Current {
    client: Bytes,
    seq: u64,
}

/// The sans-IO MDP worker. See the [module documentation](self).
#[derive(Debug)]
pub struct Worker {
    config: WorkerConfig,
    link: Link,
    /// The latest `now` passed in; time never goes back from it.
    now: Instant,
    /// Counts connections; tokens carry it to tell dropped requests apart.
    epoch: u64,
    next_seq: u64,
    current: Option<Current>,
    /// The sequence number of the request the last reconnect dropped.
    last_dropped: Option<u64>,
    /// Consecutive failed connection attempts, for the backoff.
    failures: u32,
    rng: SplitMix64,
    transmits: VecDeque<PeerTransmit>,
    events: VecDeque<WorkerEvent>,
}

impl Worker {
    /// Starts a worker and queues its READY.
    ///
    /// Fails if the configuration is unusable: an empty or `mmi.` service, a
    /// zero heartbeat interval or liveness, or a jitter outside `0.0..=1.0`.
    pub fn new(config: WorkerConfig, now: Instant) -> Result<Worker, ConfigError> {
        config.validate()?;
        let rng = SplitMix64::new(config.backoff.seed);
        let mut worker = Worker {
            config,
            link: Link::Stopped,
            now,
            epoch: 0,
            next_seq: 0,
            current: None,
            last_dropped: None,
            failures: 0,
            rng,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        };
        worker.register(now);
        Ok(worker)
    }

    /// The configuration this worker was started with.
    pub fn config(&self) -> &WorkerConfig {
        &self.config
    }

    /// The service this worker registers.
    pub fn service(&self) -> &Bytes {
        &self.config.service
    }

    /// The dialect this worker speaks.
    pub fn dialect(&self) -> Dialect {
        self.config.dialect
    }

    /// Whether a request is in progress (handed to the application and not
    /// yet answered with [`reply`](Self::reply)).
    pub fn is_busy(&self) -> bool {
        self.current.is_some()
    }

    /// Whether READY was sent on the current connection (false while waiting
    /// out a reconnect backoff and after [`disconnect`](Self::disconnect)).
    pub fn is_registered(&self) -> bool {
        matches!(self.link, Link::Registered { .. })
    }

    /// Whether [`disconnect`](Self::disconnect) was called.
    pub fn is_stopped(&self) -> bool {
        matches!(self.link, Link::Stopped)
    }

    /// Takes in a message the broker sent.
    pub fn handle_message(&mut self, now: Instant, frames: Multipart) {
        let now = self.advance(now);
        match self.link {
            Link::Registered { .. } => {}
            Link::Waiting { .. } => return self.discard(WorkerDiscardReason::NotRegistered),
            Link::Stopped => return self.discard(WorkerDiscardReason::Stopped),
        }
        let command = match BrokerCommand::decode(frames) {
            Err(e) => return self.discard(WorkerDiscardReason::Malformed(e)),
            Ok((found, _)) if found != self.config.dialect => {
                return self.discard(WorkerDiscardReason::WrongDialect { expected: self.config.dialect, found });
            }
            Ok((_, command)) => command,
        };
        match command {
            BrokerCommand::Heartbeat => self.heard(now),
            BrokerCommand::Request { client, body } => {
                self.heard(now);
                self.accept(client, body);
            }
            BrokerCommand::Disconnect => self.reconnect(now, DisconnectReason::BrokerDisconnected),
            other @ (BrokerCommand::Partial { .. } | BrokerCommand::Final { .. }) => {
                self.discard(WorkerDiscardReason::NotForWorkers { command: other.command() })
            }
        }
    }

    /// The transport saw the connection to the broker end (for TCP: the
    /// peer closed it or it failed) after it was up. A registered worker
    /// does at once what a silent broker makes it do later: it gives up the
    /// connection ([`WorkerEvent::Disconnected`] with
    /// [`DisconnectReason::ConnectionLost`], the request in progress
    /// dropped), asks for [`PeerTransmit::Reconnect`] and registers again
    /// after the backoff. During the backoff it only asks for another new
    /// connection (READY goes out on it when the backoff ends); once
    /// stopped, nothing.
    ///
    /// Optional: without it the broker's silence does the same, later. Call
    /// it once per connection, not for a connection still being dialled.
    pub fn handle_connection_lost(&mut self, now: Instant) {
        let now = self.advance(now);
        match self.link {
            Link::Registered { .. } => self.reconnect(now, DisconnectReason::ConnectionLost),
            Link::Waiting { .. } => self.transmits.push_back(PeerTransmit::Reconnect),
            Link::Stopped => {}
        }
    }

    /// Acts on the deadlines that have passed: heartbeat, broker liveness,
    /// end of the backoff. Calling it early or twice does nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.advance(now);
        match self.link {
            Link::Registered { last_sent, last_heard } => {
                if passed(last_heard, self.config.silence_limit(), now) {
                    self.reconnect(now, DisconnectReason::BrokerSilent);
                } else if passed(last_sent, self.config.heartbeat_interval, now) {
                    self.send(PeerCommand::Heartbeat, now);
                }
            }
            Link::Waiting { until: Some(until) } if until <= now => self.register(now),
            Link::Waiting { .. } | Link::Stopped => {}
        }
    }

    /// The next transmit to perform, in order.
    pub fn poll_transmit(&mut self) -> Option<PeerTransmit> {
        self.transmits.pop_front()
    }

    /// The next event for the application, in order.
    pub fn poll_event(&mut self) -> Option<WorkerEvent> {
        self.events.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next: the
    /// earliest of the heartbeat, the broker's liveness and the end of the
    /// backoff, never earlier than the latest `now` passed in. `None` after
    /// [`disconnect`](Self::disconnect).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let deadline = match self.link {
            Link::Registered { last_sent, last_heard } => {
                let heartbeat = last_sent.checked_add(self.config.heartbeat_interval);
                let liveness = last_heard.checked_add(self.config.silence_limit());
                earliest(heartbeat, liveness)
            }
            Link::Waiting { until } => until,
            Link::Stopped => None,
        };
        deadline.map(|d| d.max(self.now))
    }

    /// Sends the last (or only) part of the answer to the request `token`
    /// names: FINAL in the 0.2 dialects, REPLY in MDP/0.1. The worker is then
    /// free for the next request. The body may be empty.
    pub fn reply(&mut self, now: Instant, token: &ReplyToken, body: Multipart) -> Result<(), WorkerUsageError> {
        let now = self.advance(now);
        let client = self.check_token(token)?;
        self.current = None;
        self.send(PeerCommand::Final { client, body }, now);
        Ok(())
    }

    /// Sends one streamed part of the answer (PARTIAL; 0.2 dialects only).
    /// The request stays in progress until [`reply`](Self::reply).
    pub fn partial(&mut self, now: Instant, token: &ReplyToken, body: Multipart) -> Result<(), WorkerUsageError> {
        let now = self.advance(now);
        if !self.config.dialect.supports_partial() {
            return Err(WorkerUsageError::PartialInV01);
        }
        let client = self.check_token(token)?;
        self.send(PeerCommand::Partial { client, body }, now);
        Ok(())
    }

    /// Sends DISCONNECT and stops: no transmits, events of messages dropped
    /// only, no timeouts. A request in progress is abandoned (its client
    /// times out). Calling it again does nothing.
    pub fn disconnect(&mut self, now: Instant) {
        let now = self.advance(now);
        if self.is_stopped() {
            return;
        }
        self.current = None;
        self.send(PeerCommand::Disconnect, now);
        self.link = Link::Stopped;
    }

    /// Moves the clock forward (never back) and returns the time to use.
    fn advance(&mut self, now: Instant) -> Instant {
        self.now = self.now.max(now);
        self.now
    }

    /// Sends READY on the current connection and starts both clocks.
    fn register(&mut self, now: Instant) {
        self.link = Link::Registered { last_sent: now, last_heard: now };
        self.send(PeerCommand::Ready { service: self.config.service.clone() }, now);
    }

    /// Queues a command and restarts the heartbeat clock.
    fn send(&mut self, command: PeerCommand, now: Instant) {
        // Only PARTIAL in MDP/0.1 or an empty service fails to encode; the
        // callers rule out both (`partial` and `validate`), so nothing is
        // lost here.
        if let Ok(frames) = command.encode(self.config.dialect) {
            self.transmits.push_back(PeerTransmit::Send(frames));
        }
        if let Link::Registered { last_sent, .. } = &mut self.link {
            *last_sent = now;
        }
    }

    /// The broker showed it is alive and has us registered.
    fn heard(&mut self, now: Instant) {
        if let Link::Registered { last_heard, .. } = &mut self.link {
            *last_heard = now;
        }
        self.failures = 0;
    }

    fn accept(&mut self, client: Bytes, body: Multipart) {
        if self.current.is_some() {
            return self.discard(WorkerDiscardReason::RequestWhileBusy { client: PeerId(client) });
        }
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        let token = ReplyToken { client: client.clone(), epoch: self.epoch, seq };
        self.current = Some(Current { client, seq });
        self.events.push_back(WorkerEvent::Request { token, body });
    }

    /// Gives up the connection: a new socket now, READY after the backoff.
    fn reconnect(&mut self, now: Instant, reason: DisconnectReason) {
        let dropped = self.current.take().map(|c| ReplyToken { client: c.client, epoch: self.epoch, seq: c.seq });
        if let Some(token) = &dropped {
            self.last_dropped = Some(token.seq);
        }
        self.epoch = self.epoch.wrapping_add(1);
        let delay = self.config.backoff.delay(self.failures, &mut self.rng);
        self.failures = self.failures.saturating_add(1);
        self.link = Link::Waiting { until: now.checked_add(delay) };
        self.transmits.push_back(PeerTransmit::Reconnect);
        self.events.push_back(WorkerEvent::Disconnected { reason, dropped });
    }

    /// The client address to answer, if `token` names the request in progress.
    fn check_token(&self, token: &ReplyToken) -> Result<Bytes, WorkerUsageError> {
        if self.is_stopped() {
            return Err(WorkerUsageError::Stopped);
        }
        match &self.current {
            Some(c) if token.epoch == self.epoch && token.seq == c.seq => Ok(c.client.clone()),
            // One request at a time means a reconnect drops at most one; the
            // latest is remembered. Older dropped tokens report StaleToken.
            _ if token.epoch < self.epoch && self.last_dropped == Some(token.seq) => {
                Err(WorkerUsageError::RequestDropped)
            }
            _ => Err(WorkerUsageError::StaleToken),
        }
    }

    fn discard(&mut self, reason: WorkerDiscardReason) {
        self.events.push_back(WorkerEvent::Discarded { reason });
    }
}

/// Whether `since + period` is at or before `now`. A deadline too far away
/// for `Instant` to hold never passes.
fn passed(since: Instant, period: Duration, now: Instant) -> bool {
    since.checked_add(period).is_some_and(|deadline| deadline <= now)
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
