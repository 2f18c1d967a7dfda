//! Drives one [`Client`] with arbitrary requests, cancels, broker messages on
//! any lane, lost connections and time, against a reference model written
//! from the `client` module's docs.
//!
//! Input: a configuration (dialect, timeout, tries, `max_outstanding`,
//! `lanes`, `brokers` and the broker backoff's delays, without jitter, from
//! the input; zero and `Duration::MAX` included: [`Client::new`] must refuse
//! exactly the invalid ones, zero lanes or brokers too), then operations:
//!
//! * `request` for a service from a few (or an empty or arbitrary one), with
//!   zero or more body frames;
//! * `cancel` of an id on the wire, waiting in the client, or stale (already
//!   answered, failed or cancelled);
//! * a message from the broker on a lane: mostly the lane of a request on the
//!   wire, sometimes any of the client's lanes or one it does not have; mostly
//!   a well-formed PARTIAL or FINAL built with [`BrokerCommand::encode`]
//!   (usually in the client's dialect, naming the service of a request on
//!   the wire on that lane), sometimes other commands, other dialects, one
//!   frame removed, inserted or replaced or the last frames cut off (an
//!   [`Edit`]), or raw frames;
//! * `handle_connection_lost` on a lane chosen the same way;
//! * a clock step (zero to years), `handle_timeout` (at `poll_timeout` or
//!   now);
//! * `Hold`: the next operation's output is left queued and drained together
//!   with the one after it (so `cancel` meets queued events naming its id).
//!
//! The model holds the outstanding requests in the order they were made,
//! each with its service, body, tries used, lane (`None` while it waits in
//! the client), deadline and whether parts of its current send were
//! delivered; per lane the requests on the wire in the order sent; and the
//! transmits and events the client must have queued. After every input
//! (unless held) the target drains `poll_transmit` and `poll_event` (more
//! than [`DRAIN_BOUND`] items is a livelock) and checks that the client did
//! exactly what the model says:
//!
//! * `request` succeeds or fails with the documented error, and on success
//!   returns a new id. It goes out on a lane with nothing on the wire for its
//!   service (majortomo: nothing at all) whose broker is not avoided (unless
//!   every broker is), the one with the fewest requests on the wire, on a
//!   tie the first from the cursor (the lane after the one last taken),
//!   unless such a request waits already; otherwise it waits in the client,
//!   in order;
//! * a message for a lane the client does not have is discarded as
//!   `NoSuchLane`; a reply on lane `L` goes to the request on the wire on `L`
//!   for the service it names (majortomo: to the one request on `L`), else it
//!   is discarded as `Unmatched` with its lane; a message queues at most one
//!   event; a FINAL frees the slot, and the oldest request waiting for that
//!   service (majortomo: of any service) goes out on the least loaded lane
//!   free for it;
//! * a timeout (only once a deadline passed) replaces each lane with a
//!   passed deadline, lowest lane first: `Reconnect` for that lane, then for
//!   each request on the wire on it, in the order sent, a request past its
//!   deadline uses a try and fails if it has none left (`Timeout` with one
//!   try, else `RetriesExhausted`), and then the next waiting request for its
//!   slot goes out; the others on the lane are resent using no try, with
//!   `Restarted` if parts of them were delivered. Other lanes are untouched;
//! * a lost connection does the same to its lane at once, every request on
//!   it using a try (failing as `ConnectionLost`); on a lane with nothing on
//!   the wire only `Reconnect`; on a lane the client does not have, nothing;
//! * with several brokers, a timeout or lost connection of a lane also fails
//!   its broker (lane `l` is on broker `l % brokers`): it is avoided for
//!   `min(initial × 2ⁿ, max)` after its `n`th failure in a row (a failure
//!   while it is avoided does not count and changes nothing), and the
//!   requests that go again leave the lane to wait, and go out (their
//!   services in the lane's order) on lanes of brokers not avoided; if that
//!   failure leaves every broker avoided, what waits for any service goes
//!   out next, oldest first, on any lane. A reply
//!   or PARTIAL from a broker ends its avoidance and resets its count; a
//!   backoff's end (a `handle_timeout` deadline too) puts the broker on
//!   probation (one request on the wire to it at a time, until it answers)
//!   and lets what waits go out, oldest first, before any lane's timeout is
//!   handled;
//! * `cancel` returns whether the id was outstanding; a waiting request just
//!   goes; one on the wire replaces its lane (the others on it are resent
//!   using no try), then the next waiting request for its slot goes out,
//!   and if its broker is on probation what waits for any service may go
//!   out after it, oldest first;
//!   queued events naming it are purged, also when it had ended already (a
//!   queued `Reply` or `Failed` of it is dropped);
//! * `poll_timeout()` is the earliest deadline of a request on the wire,
//!   never before the latest `now`; `handle_timeout` before it does nothing;
//! * the getters agree with the model (`outstanding`, `on_wire`,
//!   `is_outstanding`, `lane_of`), and, from the getters alone, each lane has
//!   at most one request per service on the wire (majortomo: at most one),
//!   and no request waits while a lane is free for it;
//! * the client never names an id it did not issue, never replies to an id
//!   twice, and names no id after its `Reply`, `Failed` or any `cancel` of
//!   it.
//!
//! A lane's order is the order requests were put on it (the docs: a resend
//! keeps its place), so a waiting request that takes a freed slot during a
//! reconnect comes after the requests resent behind it, even though it went
//! out before them.
#![no_main]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Result, Unstructured};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use mdp_core::Found;
use mdp_core::{
    BrokerCommand, Client, ClientConfig, ClientEvent, ClientTransmit, Command, ConfigError, Dialect, Lane, Multipart,
    PeerCommand, PeerTransmit,
};
use mdp_core::{ClientDiscardReason, ClientUsageError, FailReason, RequestId};
use mdp_fuzz::{dialect, drain, frames, pick, to_multipart, Delay, Edit, Frame, DRAIN_BOUND};

/// Services requests go to: a few, and an empty one.
const SERVICES: &[&[u8]] = &[b"echo", b"a", b"b", b""];

#[derive(Debug)]
enum DurationSel {
    Millis(u16),
    Max,
}

impl<'a> Arbitrary<'a> for DurationSel {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match pick(u, &[15, 1])? {
            0 => DurationSel::Millis(u.arbitrary()?),
            _ => DurationSel::Max,
        })
    }
}

/// How many lanes: 1 to 4, sometimes zero (refused).
#[derive(Debug)]
struct LanesSel(usize);

impl<'a> Arbitrary<'a> for LanesSel {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(LanesSel(pick(u, &[1, 6, 5, 4, 4])?))
    }
}

/// How many brokers: mostly 1, up to 3, sometimes zero (refused).
#[derive(Debug)]
struct BrokersSel(usize);

impl<'a> Arbitrary<'a> for BrokersSel {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(BrokersSel(pick(u, &[1, 10, 6, 4])?))
    }
}

#[derive(Debug, Arbitrary)]
struct ConfigSel {
    dialect: u8,
    timeout: DurationSel,
    tries: u8,
    max_outstanding: u8,
    lanes: LanesSel,
    brokers: BrokersSel,
    backoff_initial_ms: u16,
    backoff_max: DurationSel,
}

impl ConfigSel {
    fn config(&self) -> ClientConfig {
        let mut c =
            ClientConfig::new(Dialect::ALL[usize::from(self.dialect) % Dialect::ALL.len()]).with_lanes(self.lanes.0);
        c.timeout = match self.timeout {
            DurationSel::Millis(ms) => Duration::from_millis(u64::from(ms % 10_001)),
            DurationSel::Max => Duration::MAX,
        };
        c.tries = u32::from(self.tries % 5);
        // Up to 9: with 4 lanes and two services, 8 can be on the wire.
        c.max_outstanding = usize::from(self.max_outstanding % 10);
        c.brokers = self.brokers.0;
        // No jitter, so the model knows every delay exactly.
        c.broker_backoff.jitter = 0.0;
        c.broker_backoff.initial = Duration::from_millis(u64::from(self.backoff_initial_ms % 5001));
        c.broker_backoff.max = match self.backoff_max {
            DurationSel::Millis(ms) => Duration::from_millis(u64::from(ms)),
            DurationSel::Max => Duration::MAX,
        };
        c
    }
}

#[derive(Debug)]
enum ServiceSel {
    Named(usize),
    Raw(Vec<u8>),
}

impl<'a> Arbitrary<'a> for ServiceSel {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match pick(u, &[12, 1])? {
            0 => ServiceSel::Named(u.choose_index(SERVICES.len())?),
            _ => ServiceSel::Raw(Vec::arbitrary(u)?),
        })
    }
}

impl ServiceSel {
    fn bytes(&self) -> Bytes {
        match self {
            ServiceSel::Named(i) => Bytes::from_static(SERVICES[*i]),
            ServiceSel::Raw(b) => Bytes::copy_from_slice(b),
        }
    }
}

/// The lane a message or a lost connection is for.
#[derive(Debug)]
enum LaneSel {
    /// The lane of the `n`th request on the wire (modulo their number; lane
    /// `n` modulo the lanes if none is).
    OfWire(u8),
    /// Lane `n` modulo the lanes.
    Any(u8),
    /// `n` lanes past the last one: a lane the client does not have.
    Beyond(u8),
}

impl<'a> Arbitrary<'a> for LaneSel {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match pick(u, &[12, 4, 1])? {
            0 => LaneSel::OfWire(u.arbitrary()?),
            1 => LaneSel::Any(u.arbitrary()?),
            _ => LaneSel::Beyond(u.arbitrary()?),
        })
    }
}

/// The service a reply names.
#[derive(Debug)]
enum ReplyService {
    /// That of the `n`th request on the wire on the message's lane (modulo
    /// their number), else of the `n`th outstanding request.
    OnLane(u8),
    /// That of the `n`th outstanding request (modulo their number).
    Outstanding(u8),
    Other(ServiceSel),
}

impl<'a> Arbitrary<'a> for ReplyService {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match pick(u, &[10, 2, 1])? {
            0 => ReplyService::OnLane(u.arbitrary()?),
            1 => ReplyService::Outstanding(u.arbitrary()?),
            _ => ReplyService::Other(u.arbitrary()?),
        })
    }
}

#[derive(Debug)]
enum Cmd {
    Final { service: ReplyService, body: Vec<Frame> },
    Partial { service: ReplyService, body: Vec<Frame> },
    Request { client: Vec<u8>, body: Vec<Frame> },
    Heartbeat,
    Disconnect,
}

impl<'a> Arbitrary<'a> for Cmd {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match pick(u, &[50, 35, 5, 5, 5])? {
            0 => Cmd::Final { service: u.arbitrary()?, body: frames(u, 0, 3)? },
            1 => Cmd::Partial { service: u.arbitrary()?, body: frames(u, 0, 3)? },
            2 => Cmd::Request { client: u.arbitrary()?, body: frames(u, 1, 3)? },
            3 => Cmd::Heartbeat,
            _ => Cmd::Disconnect,
        })
    }
}

#[derive(Debug)]
enum Msg {
    /// In the client's dialect, or in `Some` other.
    Command {
        dialect: Option<Dialect>,
        cmd: Cmd,
    },
    Mangled {
        cmd: Cmd,
        edit: Edit,
    },
    Raw(Vec<Frame>),
}

impl<'a> Arbitrary<'a> for Msg {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match pick(u, &[75, 9, 8, 8])? {
            0 => Msg::Command { dialect: None, cmd: u.arbitrary()? },
            1 => Msg::Command { dialect: Some(dialect(u)?), cmd: u.arbitrary()? },
            2 => Msg::Mangled { cmd: u.arbitrary()?, edit: u.arbitrary()? },
            _ => Msg::Raw(frames(u, 0, 8)?),
        })
    }
}

/// The id `cancel` is called with.
#[derive(Debug)]
enum CancelSel {
    /// The `n`th request on the wire.
    OnWire(u8),
    /// The `n`th request waiting in the client.
    Waiting(u8),
    /// The `n`th id no longer outstanding (answered, failed or cancelled).
    Stale(u8),
}

impl<'a> Arbitrary<'a> for CancelSel {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match pick(u, &[5, 3, 2])? {
            0 => CancelSel::OnWire(u.arbitrary()?),
            1 => CancelSel::Waiting(u.arbitrary()?),
            _ => CancelSel::Stale(u.arbitrary()?),
        })
    }
}

#[derive(Debug)]
enum Op {
    Request { service: ServiceSel, body: Vec<Frame> },
    Message { lane: LaneSel, earlier_ms: Option<u16>, msg: Msg },
    Advance(Delay),
    Timeout { jump: bool },
    ConnectionLost { lane: LaneSel },
    Cancel(CancelSel),
    Hold,
}

impl<'a> Arbitrary<'a> for Op {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match pick(u, &[24, 40, 10, 14, 4, 7, 2])? {
            0 => Op::Request { service: u.arbitrary()?, body: frames(u, 0, 3)? },
            1 => {
                let lane = u.arbitrary()?;
                let earlier_ms = if u.ratio(1, 16)? { Some(u.arbitrary()?) } else { None };
                Op::Message { lane, earlier_ms, msg: u.arbitrary()? }
            }
            2 => Op::Advance(u.arbitrary()?),
            3 => Op::Timeout { jump: u.ratio(3, 4)? },
            4 => Op::ConnectionLost { lane: u.arbitrary()? },
            5 => Op::Cancel(u.arbitrary()?),
            _ => Op::Hold,
        })
    }
}

#[derive(Debug, Arbitrary)]
struct Input {
    config: ConfigSel,
    ops: Vec<Op>,
}

/// An outstanding request, as the model sees it.
#[derive(Debug)]
struct Pending {
    id: RequestId,
    service: Bytes,
    body: Multipart,
    /// Tries used, the current send's included.
    tries: u32,
    /// The lane it is on the wire on; `None` while it waits in the client.
    lane: Option<usize>,
    deadline: Option<Instant>,
    /// Whether PARTIALs of the current send were delivered.
    parts: bool,
}

/// Why a lane is replaced.
#[derive(Debug, Clone, Copy)]
enum Cause {
    /// Deadlines passed at this instant: those requests use a try.
    Timeout(Instant),
    /// The connection was lost: every request on it uses a try.
    Lost,
    /// A request on it was cancelled: the others use no try.
    Cancelled,
}

/// What the model knows of one broker's health.
#[derive(Debug, Clone, Copy, Default)]
struct Health {
    /// Failures since its last reply.
    failures: u32,
    avoided: bool,
    /// Its backoff ended and it has not answered since: one request at a
    /// time.
    probation: bool,
    /// When its avoidance ends (never, if too far away for `Instant`).
    until: Option<Instant>,
}

/// The reference model: what the client must hold and must have queued.
struct Model {
    config: ClientConfig,
    /// The latest `now` passed to the client.
    latest: Instant,
    /// Outstanding requests, in the order made.
    pending: Vec<Pending>,
    /// Per lane, the requests on the wire on it, in the order they were put
    /// on it.
    wire: Vec<Vec<RequestId>>,
    /// Where the search for a lane starts: after the lane last taken.
    cursor: usize,
    /// Per broker.
    brokers: Vec<Health>,
    /// What the client must have queued since the last drain.
    transmits: Vec<ClientTransmit>,
    events: Vec<ClientEvent>,
}

impl Model {
    fn majortomo(&self) -> bool {
        self.config.dialect == Dialect::Majortomo
    }

    fn index(&self, id: RequestId) -> Option<usize> {
        self.pending.iter().position(|p| p.id == id)
    }

    fn get(&self, id: RequestId) -> &Pending {
        &self.pending[self.index(id).expect("the model knows every id on its lanes")]
    }

    /// Whether lane `lane` may take requests as far as its broker goes: it
    /// is not avoided, or every broker is.
    fn usable(&self, lane: usize) -> bool {
        let every = self.brokers.iter().all(|b| b.avoided);
        let n = self.brokers.len();
        let broker = lane % n;
        let h = self.brokers[broker];
        let on_wire: usize = (0..self.wire.len()).filter(|l| l % n == broker).map(|l| self.wire[l].len()).sum();
        let busy_probe = h.probation && on_wire > 0;
        every || !(h.avoided || busy_probe)
    }

    /// The lane a request for `service` may go on now: one with nothing on
    /// the wire for it (majortomo: nothing at all) whose broker is usable,
    /// the least loaded, and of those the first from the cursor on.
    fn free_lane(&self, service: &Bytes) -> Option<usize> {
        let n = self.wire.len();
        (0..n)
            .map(|k| (self.cursor + k) % n)
            .filter(|&l| {
                if self.majortomo() {
                    self.wire[l].is_empty()
                } else {
                    !self.wire[l].iter().any(|id| self.get(*id).service == *service)
                }
            })
            .filter(|&l| self.usable(l))
            .min_by_key(|&l| self.wire[l].len())
    }

    /// The delay after `failures` failures in a row (no jitter).
    fn backoff(&self, failures: u32) -> Duration {
        let b = &self.config.broker_backoff;
        let mut base = b.initial.min(b.max);
        for _ in 0..failures.min(64) {
            base = base.saturating_mul(2).min(b.max);
        }
        base
    }

    /// `lane`'s broker failed at the latest `now`.
    fn broker_failed(&mut self, lane: usize) {
        let broker = lane % self.brokers.len();
        if self.brokers[broker].avoided {
            return;
        }
        let delay = self.backoff(self.brokers[broker].failures);
        let h = &mut self.brokers[broker];
        h.failures = h.failures.saturating_add(1);
        h.avoided = true;
        h.probation = false;
        h.until = self.latest.checked_add(delay);
    }

    /// A reply or PARTIAL came on `lane`: its broker is up.
    fn broker_answered(&mut self, lane: usize) {
        let broker = lane % self.brokers.len();
        let was_limited = self.brokers[broker].avoided || self.brokers[broker].probation;
        self.brokers[broker] = Health::default();
        if was_limited {
            self.send_all_waiting();
        }
    }

    /// Sends what waits, oldest first: each time the oldest request that is
    /// first of its service's waiting ones and has a lane free.
    fn send_all_waiting(&mut self) {
        loop {
            let next = (0..self.pending.len()).find_map(|i| {
                let p = &self.pending[i];
                let first = self.pending[..i].iter().all(|o| o.lane.is_some() || o.service != p.service);
                (p.lane.is_none() && first).then(|| self.free_lane(&p.service).map(|lane| (i, lane))).flatten()
            });
            let Some((index, lane)) = next else { return };
            self.send(index, lane);
        }
    }

    /// The oldest request waiting in the client that the slot of `service`
    /// may go to: one for that service (majortomo: for any).
    fn oldest_waiting(&self, service: &Bytes) -> Option<usize> {
        self.pending.iter().position(|p| p.lane.is_none() && (self.majortomo() || p.service == *service))
    }

    fn encode_request(&self, service: &Bytes, body: &Multipart) -> Multipart {
        let command = PeerCommand::Request { service: service.clone(), body: body.clone() };
        command.encode(self.config.dialect).expect("a valid request encodes")
    }

    /// Puts request `index` on the wire on `lane` at the latest `now`, last
    /// in the lane's order.
    fn send(&mut self, index: usize, lane: usize) {
        self.cursor = (lane + 1) % self.wire.len();
        self.pending[index].lane = Some(lane);
        self.wire[lane].push(self.pending[index].id);
        self.transmit(index);
    }

    /// Sends request `index` (again) on its lane at the latest `now`, with
    /// a fresh deadline.
    fn transmit(&mut self, index: usize) {
        let (latest, timeout) = (self.latest, self.config.timeout);
        let p = &mut self.pending[index];
        p.parts = false;
        p.deadline = latest.checked_add(timeout);
        let lane = p.lane.expect("a request sent has a lane");
        let (service, body) = (p.service.clone(), p.body.clone());
        let frames = self.encode_request(&service, &body);
        self.transmits.push(ClientTransmit { lane: Lane(lane), transmit: PeerTransmit::Send(frames) });
    }

    /// A slot for `service` was freed (a request answered, failed or
    /// cancelled): the waiting requests it may take go out while a lane can
    /// take them.
    fn freed(&mut self, service: &Bytes) {
        while let Some(index) = self.oldest_waiting(service) {
            let Some(lane) = self.free_lane(&self.pending[index].service.clone()) else { break };
            self.send(index, lane);
        }
    }

    /// Forgets request `index`; returns it.
    fn remove(&mut self, index: usize) -> Pending {
        let p = self.pending.remove(index);
        if let Some(lane) = p.lane {
            self.wire[lane].retain(|id| *id != p.id);
        }
        p
    }

    /// Replaces `lane`'s connection: `Reconnect`, then each request on the
    /// wire on it, in the lane's order, fails (and a waiting request takes
    /// its slot at once) or goes again, keeping its place in that order.
    /// With several brokers a timeout or a lost connection fails the lane's
    /// broker, and the requests that go again leave the lane to wait, then
    /// go out wherever a lane takes them (their services in the lane's
    /// order).
    fn reconnect(&mut self, lane: usize, cause: Cause) {
        self.transmits.push(ClientTransmit { lane: Lane(lane), transmit: PeerTransmit::Reconnect });
        let fail_over = !matches!(cause, Cause::Cancelled) && self.brokers.len() > 1;
        if fail_over {
            self.broker_failed(lane);
        }
        let mut moved = Vec::new();
        let tries = self.config.tries;
        for id in self.wire[lane].clone() {
            let index = self.index(id).expect("a request on a lane is outstanding");
            let p = &mut self.pending[index];
            let used_a_try = match cause {
                Cause::Timeout(now) => p.deadline.is_some_and(|d| d <= now),
                Cause::Lost => true,
                Cause::Cancelled => false,
            };
            if used_a_try && p.tries >= tries {
                let reason = match cause {
                    Cause::Lost => FailReason::ConnectionLost { tries },
                    _ if tries == 1 => FailReason::Timeout,
                    _ => FailReason::RetriesExhausted { tries },
                };
                self.events.push(ClientEvent::Failed { id, reason });
                let p = self.remove(index);
                self.freed(&p.service);
                continue;
            }
            if used_a_try {
                p.tries += 1;
            }
            if p.parts {
                p.parts = false;
                self.events.push(ClientEvent::Restarted { id });
            }
            if fail_over {
                p.lane = None;
                p.deadline = None;
                moved.push(p.service.clone());
                self.wire[lane].retain(|other| *other != id);
            } else {
                self.transmit(index);
            }
        }
        for service in moved {
            self.freed(&service);
        }
        if fail_over && self.brokers.iter().all(|b| b.avoided) {
            self.send_all_waiting();
        }
    }

    fn request(&mut self, service: Bytes, body: Multipart) -> Option<ClientUsageError> {
        if service.is_empty() {
            Some(ClientUsageError::EmptyService)
        } else if body.is_empty() {
            Some(ClientUsageError::EmptyBody)
        } else if self.pending.len() >= self.config.max_outstanding {
            Some(ClientUsageError::TooManyOutstanding { max: self.config.max_outstanding })
        } else {
            None
        }
    }

    /// Request `id` was accepted at the latest `now`.
    fn requested(&mut self, id: RequestId, service: Bytes, body: Multipart) {
        let behind = self.oldest_waiting(&service).is_some();
        self.pending.push(Pending {
            id,
            service: service.clone(),
            body,
            tries: 1,
            lane: None,
            deadline: None,
            parts: false,
        });
        if !behind {
            if let Some(lane) = self.free_lane(&service) {
                self.send(self.pending.len() - 1, lane);
            }
        }
    }

    /// What a message from the broker on `lane` must make the client do.
    fn message(&mut self, lane: usize, frames: Multipart) {
        let dialect = self.config.dialect;
        let mut discard = |reason| self.events.push(ClientEvent::Discarded { reason });
        let lanes = self.wire.len();
        if lane >= lanes {
            return discard(ClientDiscardReason::NoSuchLane { lane: Lane(lane), lanes });
        }
        let (found, command) = match BrokerCommand::decode(frames) {
            Err(e) => return discard(ClientDiscardReason::Malformed(e)),
            Ok(ok) => ok,
        };
        if found != dialect {
            return discard(ClientDiscardReason::WrongDialect { expected: dialect, found });
        }
        let (service, body, last) = match command {
            BrokerCommand::Partial { service, body } => (service, body, false),
            BrokerCommand::Final { service, body } => (service, body, true),
            BrokerCommand::Request { .. } => {
                return discard(ClientDiscardReason::NotForClients { command: Command::Request })
            }
            BrokerCommand::Heartbeat => {
                return discard(ClientDiscardReason::NotForClients { command: Command::Heartbeat })
            }
            BrokerCommand::Disconnect => {
                return discard(ClientDiscardReason::NotForClients { command: Command::Disconnect })
            }
        };
        // The request on the wire on this lane for the service named; with
        // none named (majortomo), the one request on the lane.
        let matched = self.wire[lane].iter().copied().find(|id| match &service {
            Some(s) => self.get(*id).service == *s,
            None => true,
        });
        let Some(id) = matched else {
            let command = if last { Command::Final } else { Command::Partial };
            let reason = ClientDiscardReason::Unmatched { command, service: service.map(Found), lane: Lane(lane) };
            return self.events.push(ClientEvent::Discarded { reason });
        };
        let index = self.index(id).expect("a request on a lane is outstanding");
        if last {
            self.events.push(ClientEvent::Reply { id, body });
            let p = self.remove(index);
            self.freed(&p.service);
        } else {
            self.pending[index].parts = true;
            self.events.push(ClientEvent::Partial { id, body });
        }
        self.broker_answered(lane);
    }

    /// What `handle_timeout(now)` must do: end every backoff due (earliest
    /// first; each lets what waits go out), then replace every lane on
    /// which a deadline passed, lowest first.
    fn timeout(&mut self, now: Instant) {
        let mut ended: Vec<(Instant, usize)> = (0..self.brokers.len())
            .filter_map(|b| Some((self.brokers[b].until?, b)))
            .filter(|(at, _)| *at <= now)
            .collect();
        ended.sort();
        for (_, b) in ended {
            self.brokers[b].avoided = false;
            self.brokers[b].probation = true;
            self.brokers[b].until = None;
            self.send_all_waiting();
        }
        for lane in 0..self.wire.len() {
            let due = self.wire[lane].iter().any(|id| self.get(*id).deadline.is_some_and(|d| d <= now));
            if due {
                self.reconnect(lane, Cause::Timeout(now));
            }
        }
    }

    /// What `cancel(id)` must do; returns what it must return.
    fn cancel(&mut self, id: RequestId) -> bool {
        self.events.retain(|e| e.id() != Some(id));
        let Some(index) = self.index(id) else { return false };
        let p = self.remove(index);
        if let Some(lane) = p.lane {
            self.reconnect(lane, Cause::Cancelled);
        }
        self.freed(&p.service);
        if p.lane.is_some_and(|lane| self.brokers[lane % self.brokers.len()].probation) {
            self.send_all_waiting();
        }
        true
    }

    /// The earliest deadline of a request on the wire or of a backoff.
    fn earliest_deadline(&self) -> Option<Instant> {
        let requests = self.pending.iter().filter(|p| p.lane.is_some()).filter_map(|p| p.deadline);
        requests.chain(self.brokers.iter().filter_map(|b| b.until)).min()
    }
}

struct Harness {
    client: Client,
    model: Model,
    clock: Instant,
    issued: Vec<RequestId>,
    /// Ids answered, failed or cancelled, as the model says.
    finished: Vec<RequestId>,
    /// Ids the client sent a Reply for, failed, or that a `cancel` that
    /// returned true forgot: no event may name them again.
    replied: HashSet<RequestId>,
    failed: HashSet<RequestId>,
    cancelled: HashSet<RequestId>,
    /// Leave the next operation's output queued.
    hold: bool,
}

impl Harness {
    fn now(&mut self, earlier_ms: Option<u16>) -> Instant {
        let latest = &mut self.model.latest;
        match earlier_ms {
            None => {
                *latest = (*latest).max(self.clock);
                self.clock
            }
            Some(ms) => latest.checked_sub(Duration::from_millis(u64::from(ms))).unwrap_or(*latest),
        }
    }

    fn lane(&self, sel: &LaneSel) -> usize {
        let lanes = self.model.wire.len();
        match sel {
            LaneSel::OfWire(n) => {
                let on_wire: Vec<usize> = self.model.pending.iter().filter_map(|p| p.lane).collect();
                match on_wire.len() {
                    0 => usize::from(*n) % lanes,
                    len => on_wire[usize::from(*n) % len],
                }
            }
            LaneSel::Any(n) => usize::from(*n) % lanes,
            LaneSel::Beyond(n) => lanes + usize::from(*n),
        }
    }

    fn run(&mut self, op: &Op) {
        let hold = std::mem::take(&mut self.hold);
        match op {
            Op::Request { service, body } => self.request(service.bytes(), to_multipart(body)),
            Op::Message { lane, earlier_ms, msg } => {
                let lane = self.lane(lane);
                let Some(frames) = self.frames(lane, msg) else { return };
                let now = self.now(*earlier_ms);
                self.model.message(lane, frames.clone());
                self.client.handle_message(now, Lane(lane), frames);
            }
            Op::Advance(d) => self.clock = self.clock.checked_add(d.duration()).unwrap_or(self.clock),
            Op::Timeout { jump } => {
                if *jump {
                    if let Some(t) = self.client.poll_timeout() {
                        self.clock = self.clock.max(t);
                    }
                }
                let now = self.now(None);
                self.model.timeout(now);
                self.client.handle_timeout(now);
            }
            Op::ConnectionLost { lane } => {
                let lane = self.lane(lane);
                let now = self.now(None);
                if lane < self.model.wire.len() {
                    self.model.reconnect(lane, Cause::Lost);
                }
                self.client.handle_connection_lost(now, Lane(lane));
            }
            Op::Cancel(sel) => {
                let ids: Vec<RequestId> = match sel {
                    CancelSel::OnWire(_) => {
                        self.model.pending.iter().filter(|p| p.lane.is_some()).map(|p| p.id).collect()
                    }
                    CancelSel::Waiting(_) => {
                        self.model.pending.iter().filter(|p| p.lane.is_none()).map(|p| p.id).collect()
                    }
                    CancelSel::Stale(_) => self.finished.clone(),
                };
                let (CancelSel::OnWire(n) | CancelSel::Waiting(n) | CancelSel::Stale(n)) = sel;
                // An empty choice falls back to any id issued.
                let pool = if ids.is_empty() { &self.issued } else { &ids };
                let Some(&id) = pool.get(usize::from(*n) % pool.len().max(1)) else { return };
                let now = self.now(None);
                let expected = self.model.cancel(id);
                assert_eq!(self.client.cancel(now, id), expected, "cancel({id})");
                if expected {
                    self.finished.push(id);
                }
                self.cancelled.insert(id);
            }
            Op::Hold => {
                self.hold = true;
                return;
            }
        }
        if !hold {
            self.settle();
        }
        self.check();
    }

    fn request(&mut self, service: Bytes, body: Multipart) {
        let now = self.now(None);
        let expected_error = self.model.request(service.clone(), body.clone());
        let result = self.client.request(now, service.clone(), body.clone());
        match (result, expected_error) {
            (Ok(id), None) => {
                let last = self.issued.last();
                assert!(last.is_none_or(|last| id > *last), "id {id} is not new (last {last:?})");
                self.issued.push(id);
                self.model.requested(id, service, body);
            }
            (Err(e), Some(expected)) => {
                let _ = e.to_string();
                assert_eq!(e, expected);
            }
            (got, expected) => panic!("request() gave {got:?}, expected error {expected:?}"),
        }
    }

    fn frames(&self, lane: usize, msg: &Msg) -> Option<Multipart> {
        let pending = &self.model.pending;
        let encode = |dialect: Dialect, cmd: &Cmd| {
            let nth_outstanding = |n: &u8| match pending.len() {
                0 => Bytes::from_static(b"echo"),
                len => pending[usize::from(*n) % len].service.clone(),
            };
            let service = |s: &ReplyService| {
                let name = match s {
                    ReplyService::OnLane(n) => {
                        let on_lane = self.model.wire.get(lane).map_or(&[][..], Vec::as_slice);
                        match on_lane.len() {
                            0 => nth_outstanding(n),
                            len => self.model.get(on_lane[usize::from(*n) % len]).service.clone(),
                        }
                    }
                    ReplyService::Outstanding(n) => nth_outstanding(n),
                    ReplyService::Other(s) => s.bytes(),
                };
                (dialect != Dialect::Majortomo).then_some(name)
            };
            let cmd = match cmd {
                Cmd::Final { service: s, body } => {
                    BrokerCommand::Final { service: service(s), body: to_multipart(body) }
                }
                Cmd::Partial { service: s, body } => {
                    BrokerCommand::Partial { service: service(s), body: to_multipart(body) }
                }
                Cmd::Request { client, body } => {
                    BrokerCommand::Request { client: Bytes::copy_from_slice(client), body: to_multipart(body) }
                }
                Cmd::Heartbeat => BrokerCommand::Heartbeat,
                Cmd::Disconnect => BrokerCommand::Disconnect,
            };
            cmd.encode(dialect).ok()
        };
        match msg {
            Msg::Command { dialect, cmd } => encode(dialect.unwrap_or(self.model.config.dialect), cmd),
            Msg::Mangled { cmd, edit } => {
                let mut frames = encode(self.model.config.dialect, cmd)?;
                edit.apply(&mut frames);
                Some(frames)
            }
            Msg::Raw(f) => Some(to_multipart(f)),
        }
    }

    /// Drains the client, compares with what the model has queued, and
    /// checks the ids the events name.
    fn settle(&mut self) {
        let transmits = drain("poll_transmit", || self.client.poll_transmit());
        let events = drain("poll_event", || self.client.poll_event());
        assert!(transmits.len() + events.len() <= DRAIN_BOUND);
        let expected = std::mem::take(&mut self.model.transmits);
        assert!(transmits == expected, "what the client sent:\n got {}\nwant {}", short(&transmits), short(&expected));
        let expected = std::mem::take(&mut self.model.events);
        assert!(events == expected, "what the client reported:\n got {}\nwant {}", short(&events), short(&expected));
        for e in &events {
            let id = match e {
                ClientEvent::Partial { id, .. }
                | ClientEvent::Restarted { id }
                | ClientEvent::Reply { id, .. }
                | ClientEvent::Failed { id, .. } => *id,
                ClientEvent::Discarded { reason } => {
                    let _ = reason.to_string();
                    continue;
                }
                _ => continue,
            };
            assert!(self.issued.contains(&id), "an event names {id}, which the client never issued: {e:?}");
            assert!(!self.replied.contains(&id), "an event names {id} after its Reply: {e:?}");
            assert!(!self.failed.contains(&id), "an event names {id} after it failed: {e:?}");
            assert!(!self.cancelled.contains(&id), "an event names {id} after it was cancelled: {e:?}");
            match e {
                ClientEvent::Reply { .. } => {
                    self.replied.insert(id);
                    self.finished.push(id);
                }
                ClientEvent::Failed { reason, .. } => {
                    let _ = reason.to_string();
                    self.failed.insert(id);
                    self.finished.push(id);
                }
                _ => {}
            }
        }
    }

    /// What holds after any input, drained or not.
    fn check(&mut self) {
        let model = &self.model;
        let lanes = model.wire.len();
        assert_eq!(self.client.lane_count(), lanes, "lane_count()");
        for (b, h) in model.brokers.iter().enumerate() {
            assert_eq!(self.client.is_avoided(b), h.avoided, "is_avoided({b})");
            assert_eq!(self.client.is_on_probation(b), h.probation, "is_on_probation({b})");
        }
        for l in 0..lanes {
            assert_eq!(self.client.broker_of(Lane(l)), l % model.brokers.len(), "broker_of({l})");
        }
        assert_eq!(self.client.outstanding(), model.pending.len(), "outstanding()");
        let on_wire = model.pending.iter().filter(|p| p.lane.is_some()).count();
        assert_eq!(self.client.on_wire(), on_wire, "on_wire()");
        for p in &model.pending {
            assert!(self.client.is_outstanding(p.id), "is_outstanding({})", p.id);
            assert_eq!(self.client.lane_of(p.id), p.lane.map(Lane), "lane_of({})", p.id);
        }
        for id in &self.issued {
            if model.index(*id).is_none() {
                assert!(!self.client.is_outstanding(*id), "is_outstanding({id}) after it finished");
                assert_eq!(self.client.lane_of(*id), None, "lane_of({id}) after it finished");
            }
        }
        // From the client's getters alone: one request per service (in
        // majortomo one in all) on the wire on each lane, and none waits
        // while a lane could carry it whose broker is not avoided (unless
        // every broker is).
        let brokers = model.brokers.len();
        let every_avoided = (0..brokers).all(|b| self.client.is_avoided(b));
        let on_wire_at = |broker: usize| {
            let lane_of = |p: &Pending| self.client.lane_of(p.id);
            model.pending.iter().filter_map(lane_of).filter(|l| self.client.broker_of(*l) == broker).count()
        };
        let usable: Vec<usize> = (0..lanes)
            .filter(|&l| {
                let broker = self.client.broker_of(Lane(l));
                let probing = self.client.is_on_probation(broker) && on_wire_at(broker) > 0;
                every_avoided || !(self.client.is_avoided(broker) || probing)
            })
            .collect();
        let key = |p: &Pending| if model.majortomo() { Bytes::new() } else { p.service.clone() };
        let mut slots = HashSet::new();
        for p in &model.pending {
            if let Some(Lane(lane)) = self.client.lane_of(p.id) {
                assert!(lane < lanes, "{} on lane {lane} of {lanes}", p.id);
                assert!(slots.insert((lane, key(p))), "two requests for {:?} on the wire on lane {lane}", p.service);
            }
        }
        for p in &model.pending {
            if self.client.lane_of(p.id).is_none() {
                let busy = usable.iter().filter(|l| slots.contains(&(**l, key(p)))).count();
                assert_eq!(busy, usable.len(), "{} waits for {:?} while a lane is free for it", p.id, p.service);
            }
        }
        let earliest = model.earliest_deadline();
        assert_eq!(self.client.poll_timeout(), earliest.map(|d| d.max(model.latest)), "poll_timeout()");
        // Before the deadline, handle_timeout does nothing (what it queues is
        // compared with the model, which expects nothing, at the next drain).
        if earliest.is_none_or(|d| d > model.latest) {
            self.client.handle_timeout(model.latest);
        }
    }
}

/// `items` for a failure message, each frame cut to its first 12 bytes.
fn short<T: std::fmt::Debug>(items: &[T]) -> String {
    let full = format!("{items:?}");
    // Debug prints frames as b"..."; cut each long one.
    let mut out = String::new();
    let mut rest = full.as_str();
    while let Some(start) = rest.find("b\"") {
        out.push_str(&rest[..start + 2]);
        rest = &rest[start + 2..];
        let end = rest.find('"').unwrap_or(rest.len());
        let frame = &rest[..end];
        match frame.char_indices().nth(48) {
            Some((cut, _)) => out.push_str(&format!("{}…({} chars)", &frame[..cut], frame.len())),
            None => out.push_str(frame),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

fuzz_target!(|input: Input| {
    let config = input.config.config();
    let clock = Instant::now();
    let expected_error = if config.timeout.is_zero() {
        Some(ConfigError::Zero("timeout"))
    } else if config.tries == 0 {
        Some(ConfigError::Zero("tries"))
    } else if config.lanes == 0 {
        Some(ConfigError::Zero("lanes"))
    } else if config.brokers == 0 {
        Some(ConfigError::Zero("brokers"))
    } else {
        None
    };
    let client = match (Client::new(config.clone(), clock), expected_error) {
        (Ok(client), None) => client,
        (Err(e), Some(expected)) => {
            let _ = e.to_string();
            assert_eq!(e, expected);
            return;
        }
        (got, expected) => panic!("Client::new({config:?}) gave {got:?}, expected error {expected:?}"),
    };
    let (lanes, brokers) = (config.total_lanes(), config.brokers);
    let model = Model {
        config,
        latest: clock,
        pending: Vec::new(),
        wire: vec![Vec::new(); lanes],
        cursor: 0,
        brokers: vec![Health::default(); brokers],
        transmits: Vec::new(),
        events: Vec::new(),
    };
    let mut h = Harness {
        client,
        model,
        clock,
        issued: Vec::new(),
        finished: Vec::new(),
        replied: HashSet::new(),
        failed: HashSet::new(),
        cancelled: HashSet::new(),
        hold: false,
    };
    for op in &input.ops {
        h.run(op);
    }
    h.settle();
});
