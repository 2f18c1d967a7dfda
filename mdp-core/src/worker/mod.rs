//! The MDP worker state machine: its public API and rules here, its
//! settings in `config`, what it tells the application in `event`. What it
//! promises is documented on [`Worker`].

mod config;
mod event;

use std::time::Instant;

use bytes::Bytes;

pub use config::WorkerConfig;
pub use event::{DisconnectReason, ReplyToken, WorkerDiscardReason, WorkerEvent, WorkerUsageError};

use crate::codec::{BrokerCommand, Dialect, Multipart, PeerCommand};
use crate::config::ConfigError;
use crate::shell::{Shell, Unreadable};
use crate::time::{deadline, TimerTable};
use crate::{PeerId, PeerTransmit, SplitMix64};

/// Why a [`Worker`] has a deadline set ([`Worker::next_timer`]).
///
/// When two are due at the same instant, the one listed first here is the
/// one [`Worker::next_timer`] names, and the one acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum WorkerTimer {
    /// The broker is given up: nothing came from it for `liveness`
    /// intervals.
    BrokerSilence,
    /// A HEARTBEAT is due: nothing was sent for one heartbeat interval.
    Heartbeat,
    /// The reconnect backoff ends: READY goes out.
    Register,
}

/// Where the worker is with its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// READY was sent on the current connection; the heartbeat and the
    /// broker's silence are timed.
    Registered,
    /// The connection was replaced; READY goes out when the `Register`
    /// timer fires (never, if the backoff is too long for `Instant`).
    Waiting,
    /// [`Worker::disconnect`] was called; no timer is set.
    Stopped,
}

/// The request in progress.
#[derive(Debug, Clone)]
struct Current {
    client: Bytes,
    seq: u64,
}

/// The sans-IO MDP worker.
///
/// A [`Worker`] registers one service with a broker, turns the broker's
/// REQUESTs into [`WorkerEvent::Request`]s, and sends the application's
/// answers back. It keeps the connection alive with heartbeats, notices a
/// silent or disconnecting broker, and reconnects after a growing, jittered
/// delay ([`Backoff`](crate::Backoff)).
///
/// It does no IO and never reads the clock. After any input
/// ([`handle_message`](Worker::handle_message),
/// [`handle_timeout`](Worker::handle_timeout),
/// [`handle_connection_lost`](Worker::handle_connection_lost), [`reply`](Worker::reply),
/// [`partial`](Worker::partial), [`disconnect`](Worker::disconnect)) the
/// caller drains [`poll_transmit`](Worker::poll_transmit) and
/// [`poll_event`](Worker::poll_event) until both return `None`, then sleeps
/// until [`poll_timeout`](Worker::poll_timeout) or the next message.
/// ([`next_timer`](Worker::next_timer) says why that deadline is set.)
///
/// ## Timing
///
/// * READY goes out at start and again after every reconnect's backoff.
/// * HEARTBEAT goes out whenever nothing else was sent for one
///   `heartbeat_interval`, also while the application is busy with a request.
/// * Every valid message from the broker proves it alive. After `liveness`
///   intervals without one (counted from the last one heard, or from READY),
///   the worker gives the broker up: it emits [`PeerTransmit::Reconnect`] and
///   [`WorkerEvent::Disconnected`], drops the request in progress, waits out
///   the backoff and sends READY on the new connection. A DISCONNECT from the
///   broker does the same at once, and so does
///   [`handle_connection_lost`](Worker::handle_connection_lost), for a
///   transport that knows its connection ended.
///
/// ## Example: the event loop
///
/// ```
/// use std::time::{Duration, Instant};
/// use bytes::Bytes;
/// use mdp_core::{Dialect, Multipart, PeerTransmit, Worker, WorkerConfig, WorkerEvent};
///
/// // Stands in for the socket: what the worker asked to send.
/// fn drain(worker: &mut Worker, sent: &mut Vec<Multipart>, events: &mut Vec<WorkerEvent>) {
///     while let Some(t) = worker.poll_transmit() {
///         match t {
///             PeerTransmit::Send(frames) => sent.push(frames),
///             PeerTransmit::Reconnect => { /* close the socket, open a new one */ }
///         }
///     }
///     while let Some(e) = worker.poll_event() {
///         events.push(e);
///     }
/// }
///
/// let t0 = Instant::now(); // the adapter reads the clock, the worker never does
/// let config = WorkerConfig::new(Bytes::from_static(b"echo"), Dialect::V02);
/// let mut worker = Worker::new(config, t0)?;
/// let (mut sent, mut events) = (Vec::new(), Vec::new());
/// drain(&mut worker, &mut sent, &mut events);
/// assert_eq!(sent.pop().unwrap()[1], Bytes::from_static(&[0x01])); // READY
///
/// // A REQUEST arrives from the broker.
/// let request: Multipart = vec![
///     Bytes::from_static(b"MDPW02"),
///     Bytes::from_static(&[0x02]),
///     Bytes::from_static(b"client-7"),
///     Bytes::new(),
///     Bytes::from_static(b"hello"),
/// ];
/// worker.handle_message(t0 + Duration::from_millis(10), request);
/// drain(&mut worker, &mut sent, &mut events);
/// let Some(WorkerEvent::Request { token, body }) = events.pop() else { panic!("no request") };
///
/// // The application answers; the worker sends FINAL.
/// worker.reply(t0 + Duration::from_millis(20), &token, body)?;
/// drain(&mut worker, &mut sent, &mut events);
/// assert_eq!(sent.pop().unwrap()[1], Bytes::from_static(&[0x04]));
///
/// // Nothing else to do until the next heartbeat.
/// assert_eq!(worker.poll_timeout(), Some(t0 + Duration::from_millis(20) + Duration::from_millis(2500)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// ## Memory
///
/// The worker holds at most one request (its client address only; the body
/// goes to the application). Each input queues at most one transmit and one
/// event, so a caller that drains after every input, as above, keeps the
/// queues bounded whatever the broker sends.
#[derive(Debug)]
pub struct Worker {
    config: WorkerConfig,
    link: Link,
    timers: TimerTable<WorkerTimer>,
    /// Counts connections; tokens carry it to tell dropped requests apart.
    epoch: u64,
    next_seq: u64,
    current: Option<Current>,
    /// The sequence number of the request the last reconnect dropped.
    last_dropped: Option<u64>,
    /// Consecutive failed connection attempts, for the backoff.
    failures: u32,
    rng: SplitMix64,
    shell: Shell<PeerTransmit, WorkerEvent>,
}

impl Worker {
    /// Starts a worker and queues its READY.
    ///
    /// Fails if the configuration is unusable: an empty or `mmi.` service, a
    /// zero heartbeat interval or liveness, or a jitter outside `0.0..=1.0`.
    pub fn new(config: WorkerConfig, now: Instant) -> Result<Worker, ConfigError> {
        config.validate()?;
        let mut worker = Worker {
            rng: SplitMix64::new(config.backoff.seed),
            shell: Shell::new(now, config.dialect),
            config,
            link: Link::Stopped,
            timers: TimerTable::default(),
            epoch: 0,
            next_seq: 0,
            current: None,
            last_dropped: None,
            failures: 0,
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
        self.link == Link::Registered
    }

    /// Whether [`disconnect`](Self::disconnect) was called.
    pub fn is_stopped(&self) -> bool {
        self.link == Link::Stopped
    }

    /// Takes in a message the broker sent.
    pub fn handle_message(&mut self, now: Instant, frames: Multipart) {
        let now = self.shell.advance(now);
        match self.link {
            Link::Registered => {}
            Link::Waiting => return self.discard(WorkerDiscardReason::NotRegistered),
            Link::Stopped => return self.discard(WorkerDiscardReason::Stopped),
        }
        let command = match self.shell.read(frames) {
            Ok(command) => command,
            Err(unreadable) => return self.discard(unreadable.into()),
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
        let now = self.shell.advance(now);
        match self.link {
            Link::Registered => self.reconnect(now, DisconnectReason::ConnectionLost),
            Link::Waiting => self.shell.transmit(PeerTransmit::Reconnect),
            Link::Stopped => {}
        }
    }

    /// Acts on the deadlines that have passed: heartbeat, broker liveness,
    /// end of the backoff. Calling it early or twice does nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.shell.advance(now);
        // The broker's silence outranks a heartbeat due at the same time: a
        // worker that gives the broker up has no use for a heartbeat.
        let due = |t: &TimerTable<WorkerTimer>, reason| t.get(reason).is_some_and(|at| at <= now);
        if due(&self.timers, WorkerTimer::BrokerSilence) {
            self.reconnect(now, DisconnectReason::BrokerSilent);
        } else if due(&self.timers, WorkerTimer::Heartbeat) {
            self.send(PeerCommand::Heartbeat, now);
        } else if due(&self.timers, WorkerTimer::Register) {
            self.register(now);
        }
    }

    /// The next transmit to perform, in order.
    pub fn poll_transmit(&mut self) -> Option<PeerTransmit> {
        self.shell.poll_transmit()
    }

    /// The next event for the application, in order.
    pub fn poll_event(&mut self) -> Option<WorkerEvent> {
        self.shell.poll_event()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next: the
    /// earliest of the heartbeat, the broker's liveness and the end of the
    /// backoff, never earlier than the latest `now` passed in. `None` after
    /// [`disconnect`](Self::disconnect).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_timer().map(|(at, _)| at)
    }

    /// The deadline [`poll_timeout`](Self::poll_timeout) returns, and why
    /// it is set.
    pub fn next_timer(&self) -> Option<(Instant, WorkerTimer)> {
        self.timers.next(self.shell.now())
    }

    /// Sends the last (or only) part of the answer to the request `token`
    /// names: FINAL in the 0.2 dialects, REPLY in MDP/0.1. The worker is then
    /// free for the next request. The body may be empty.
    pub fn reply(&mut self, now: Instant, token: &ReplyToken, body: Multipart) -> Result<(), WorkerUsageError> {
        let now = self.shell.advance(now);
        let client = self.check_token(token)?;
        self.current = None;
        self.send(PeerCommand::Final { client, body }, now);
        Ok(())
    }

    /// Sends one streamed part of the answer (PARTIAL; 0.2 dialects only).
    /// The request stays in progress until [`reply`](Self::reply).
    pub fn partial(&mut self, now: Instant, token: &ReplyToken, body: Multipart) -> Result<(), WorkerUsageError> {
        let now = self.shell.advance(now);
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
        let now = self.shell.advance(now);
        if self.is_stopped() {
            return;
        }
        self.current = None;
        self.send(PeerCommand::Disconnect, now);
        self.link = Link::Stopped;
        self.timers.clear_all();
    }

    /// Sends READY on the current connection and starts both clocks.
    fn register(&mut self, now: Instant) {
        self.link = Link::Registered;
        self.timers.clear(WorkerTimer::Register);
        self.timers.set(WorkerTimer::BrokerSilence, deadline(now, self.config.silence_limit()));
        self.send(PeerCommand::Ready { service: self.config.service.clone() }, now);
    }

    /// Queues a command and restarts the heartbeat clock.
    fn send(&mut self, command: PeerCommand, now: Instant) {
        // Only PARTIAL in MDP/0.1 or an empty service fails to encode; the
        // callers rule out both (`partial` and `validate`), so nothing is
        // lost here.
        if let Ok(frames) = command.encode(self.config.dialect) {
            self.shell.transmit(PeerTransmit::Send(frames));
        }
        if self.link == Link::Registered {
            self.timers.set(WorkerTimer::Heartbeat, deadline(now, self.config.heartbeat_interval));
        }
    }

    /// The broker showed it is alive and has us registered.
    fn heard(&mut self, now: Instant) {
        if self.link == Link::Registered {
            self.timers.set(WorkerTimer::BrokerSilence, deadline(now, self.config.silence_limit()));
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
        self.shell.event(WorkerEvent::Request { token, body });
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
        self.link = Link::Waiting;
        self.timers.clear_all();
        self.timers.set(WorkerTimer::Register, deadline(now, delay));
        self.shell.transmit(PeerTransmit::Reconnect);
        self.shell.event(WorkerEvent::Disconnected { reason, dropped });
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
        self.shell.event(WorkerEvent::Discarded { reason });
    }
}

impl From<Unreadable> for WorkerDiscardReason {
    fn from(u: Unreadable) -> Self {
        match u {
            Unreadable::Malformed(e) => WorkerDiscardReason::Malformed(e),
            Unreadable::WrongDialect { expected, found } => WorkerDiscardReason::WrongDialect { expected, found },
        }
    }
}
