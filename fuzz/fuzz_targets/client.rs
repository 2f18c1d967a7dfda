//! Drives one [`Client`] with arbitrary requests, broker messages and time,
//! against a reference model written from the `client` module's docs.
//!
//! Input: a configuration (dialect, timeout, tries, `max_outstanding` from
//! the input, zero and `Duration::MAX` included: [`Client::new`] must refuse
//! exactly the invalid ones), then operations:
//!
//! * `request` for a service from a few (or an empty or arbitrary one), with
//!   zero or more body frames;
//! * a message from the broker: mostly a well-formed PARTIAL or FINAL built
//!   with [`BrokerCommand::encode`] (usually in the client's dialect, naming
//!   the service of an outstanding request), sometimes other commands, other
//!   dialects, one frame removed, inserted or replaced or the last frames cut
//!   off (an [`Edit`]), or raw frames;
//! * a clock step (zero to years), `handle_timeout` (at `poll_timeout` or
//!   now).
//!
//! The model holds the outstanding requests in the order they were made,
//! each with its service, body, tries, deadline, whether it is on the wire
//! (one per service at a time) and whether parts of it were delivered. After
//! every input the target drains `poll_transmit` and `poll_event` (more than
//! [`DRAIN_BOUND`] items is a livelock) and checks that the client did
//! exactly what the model says:
//!
//! * `request` succeeds or fails with the documented error, and on success
//!   returns a new id and sends that REQUEST, in the client's dialect, unless
//!   another request for its service is outstanding: then it waits, unsent;
//! * a reply goes to the request on the wire for the service it names (in
//!   the majortomo dialect, which names none, to the oldest request), else it
//!   is discarded with the documented reason; a message queues at most one
//!   event, and a FINAL sends the next request waiting for its service;
//! * a timeout (only once the earliest deadline passed) sends `Reconnect`,
//!   then, for each request on the wire in the order made, fails it if it is
//!   out of tries (and sends the next for its service) or else resends it,
//!   announcing `Restarted` if parts of it were delivered;
//! * a lost connection does the same at once, every request on the wire
//!   using a try (failing as `ConnectionLost`), and sends only `Reconnect`
//!   when nothing is on the wire;
//! * `poll_timeout()` is the earliest deadline of a request on the wire,
//!   never before the latest `now`; `handle_timeout` before it does nothing;
//! * the client never names an id it did not issue, never replies to an id
//!   twice, and names no id after its `Reply` or `Failed`;
//!   `outstanding()` and `is_outstanding` agree.
#![no_main]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Result, Unstructured};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use mdp_core::client::{ClientDiscardReason, ClientUsageError, FailReason, RequestId};
use mdp_core::codec::Found;
use mdp_core::{BrokerCommand, Client, ClientConfig, ClientEvent, Dialect, Multipart, PeerCommand, PeerTransmit};
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

#[derive(Debug, Arbitrary)]
struct ConfigSel {
    dialect: u8,
    timeout: DurationSel,
    tries: u8,
    max_outstanding: u8,
}

impl ConfigSel {
    fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new(Dialect::ALL[usize::from(self.dialect) % Dialect::ALL.len()]);
        c.timeout = match self.timeout {
            DurationSel::Millis(ms) => Duration::from_millis(u64::from(ms % 10_001)),
            DurationSel::Max => Duration::MAX,
        };
        c.tries = u32::from(self.tries % 5);
        c.max_outstanding = usize::from(self.max_outstanding % 6);
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

/// The service a reply names.
#[derive(Debug)]
enum ReplyService {
    /// That of the `n`th outstanding request (modulo their number).
    Outstanding(u8),
    Other(ServiceSel),
}

impl<'a> Arbitrary<'a> for ReplyService {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match pick(u, &[6, 1])? {
            0 => ReplyService::Outstanding(u.arbitrary()?),
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

#[derive(Debug)]
enum Op {
    Request { service: ServiceSel, body: Vec<Frame> },
    Message { earlier_ms: Option<u16>, msg: Msg },
    Advance(Delay),
    Timeout { jump: bool },
    ConnectionLost,
}

impl<'a> Arbitrary<'a> for Op {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match pick(u, &[25, 45, 12, 18, 4])? {
            0 => Op::Request { service: u.arbitrary()?, body: frames(u, 0, 3)? },
            1 => {
                let earlier_ms = if u.ratio(1, 16)? { Some(u.arbitrary()?) } else { None };
                Op::Message { earlier_ms, msg: u.arbitrary()? }
            }
            2 => Op::Advance(u.arbitrary()?),
            3 => Op::Timeout { jump: u.ratio(3, 4)? },
            _ => Op::ConnectionLost,
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
    tries: u32,
    /// On the wire: the oldest outstanding request for its service.
    sent: bool,
    deadline: Option<Instant>,
    parts: bool,
}

struct Harness {
    client: Client,
    config: ClientConfig,
    clock: Instant,
    /// The latest `now` passed to the client.
    latest: Instant,
    /// Outstanding requests, in the order first sent.
    pending: Vec<Pending>,
    issued: HashSet<RequestId>,
    /// Ids answered or failed, as the model says.
    finished: HashSet<RequestId>,
    /// Ids the client sent a Reply for, and ids it failed: no event may
    /// name them again.
    replied: HashSet<RequestId>,
    failed: HashSet<RequestId>,
    last_id: Option<RequestId>,
}

impl Harness {
    fn now(&mut self, earlier_ms: Option<u16>) -> Instant {
        match earlier_ms {
            None => {
                self.latest = self.latest.max(self.clock);
                self.clock
            }
            Some(ms) => self.latest.checked_sub(Duration::from_millis(u64::from(ms))).unwrap_or(self.latest),
        }
    }

    fn run(&mut self, op: &Op) {
        match op {
            Op::Request { service, body } => self.request(service.bytes(), to_multipart(body)),
            Op::Message { earlier_ms, msg } => {
                let Some(frames) = self.frames(msg) else { return };
                let now = self.now(*earlier_ms);
                let expected = self.expect_message(frames.clone());
                self.client.handle_message(now, frames);
                let got = self.settle();
                assert_eq!(got, expected, "what a message from the broker made the client do");
            }
            Op::Advance(d) => self.clock = self.clock.checked_add(d.duration()).unwrap_or(self.clock),
            Op::Timeout { jump } => {
                if *jump {
                    if let Some(t) = self.client.poll_timeout() {
                        self.clock = self.clock.max(t);
                    }
                }
                let now = self.now(None);
                let expected = self.expect_timeout(now);
                self.client.handle_timeout(now);
                let got = self.settle();
                assert_eq!(got, expected, "what handle_timeout did");
            }
            Op::ConnectionLost => {
                let now = self.now(None);
                let expected = self.expect_reconnect(now, true);
                self.client.handle_connection_lost(now);
                let got = self.settle();
                assert_eq!(got, expected, "what handle_connection_lost did");
            }
        }
        self.check();
    }

    fn request(&mut self, service: Bytes, body: Multipart) {
        let now = self.now(None);
        let expected_error = if service.is_empty() {
            Some(ClientUsageError::EmptyService)
        } else if body.is_empty() {
            Some(ClientUsageError::EmptyBody)
        } else if self.pending.len() >= self.config.max_outstanding {
            Some(ClientUsageError::TooManyOutstanding { max: self.config.max_outstanding })
        } else {
            match self.pending.first() {
                Some(p) if self.config.dialect == Dialect::Majortomo && p.service != service => {
                    Some(ClientUsageError::OtherServiceOutstanding {
                        outstanding: Found(p.service.clone()),
                        requested: Found(service.clone()),
                    })
                }
                _ => None,
            }
        };
        let result = self.client.request(now, service.clone(), body.clone());
        let (transmits, events) = self.settle();
        assert!(events.is_empty(), "request() reported {events:?}");
        match (result, expected_error) {
            (Ok(id), None) => {
                assert!(self.last_id.is_none_or(|last| id > last), "id {id} is not new (last {:?})", self.last_id);
                self.last_id = Some(id);
                self.issued.insert(id);
                // One request per service on the wire: it goes out only if
                // none is outstanding for its service.
                let sent = !self.pending.iter().any(|p| p.service == service);
                if sent {
                    let request = self.encode_request(&service, &body);
                    assert_eq!(transmits, vec![PeerTransmit::Send(request)], "what request() sent");
                } else {
                    assert!(transmits.is_empty(), "request() sent {transmits:?} behind another for its service");
                }
                let deadline = if sent { self.latest.checked_add(self.config.timeout) } else { None };
                self.pending.push(Pending { id, service, body, tries: 1, sent, deadline, parts: false });
            }
            (Err(e), Some(expected)) => {
                let _ = e.to_string();
                assert_eq!(e, expected);
                assert!(transmits.is_empty(), "a refused request sent {transmits:?}");
            }
            (got, expected) => panic!("request() gave {got:?}, expected error {expected:?}"),
        }
    }

    fn encode_request(&self, service: &Bytes, body: &Multipart) -> Multipart {
        let command = PeerCommand::Request { service: service.clone(), body: body.clone() };
        command.encode(self.config.dialect).expect("a valid request encodes")
    }

    fn frames(&self, msg: &Msg) -> Option<Multipart> {
        let encode = |dialect: Dialect, cmd: &Cmd| {
            let service = |s: &ReplyService| {
                let name = match s {
                    ReplyService::Outstanding(n) if !self.pending.is_empty() => {
                        self.pending[usize::from(*n) % self.pending.len()].service.clone()
                    }
                    ReplyService::Outstanding(_) => Bytes::from_static(b"echo"),
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
            Msg::Command { dialect, cmd } => encode(dialect.unwrap_or(self.config.dialect), cmd),
            Msg::Mangled { cmd, edit } => {
                let mut frames = encode(self.config.dialect, cmd)?;
                edit.apply(&mut frames);
                Some(frames)
            }
            Msg::Raw(f) => Some(to_multipart(f)),
        }
    }

    /// What a message from the broker must make the client do, per the
    /// docs: one event, and after a reply the next request for its service
    /// goes out. The model is updated as the client must update itself.
    fn expect_message(&mut self, frames: Multipart) -> (Vec<PeerTransmit>, Vec<ClientEvent>) {
        let dialect = self.config.dialect;
        let discarded = |reason| (Vec::new(), vec![ClientEvent::Discarded { reason }]);
        let (found, command) = match BrokerCommand::decode(frames) {
            Err(e) => return discarded(ClientDiscardReason::Malformed(e)),
            Ok(ok) => ok,
        };
        if found != dialect {
            return discarded(ClientDiscardReason::WrongDialect { expected: dialect, found });
        }
        let (service, body, last) = match command {
            BrokerCommand::Partial { service, body } => (service, body, false),
            BrokerCommand::Final { service, body } => (service, body, true),
            BrokerCommand::Request { .. } => {
                return discarded(ClientDiscardReason::NotForClients { command: "REQUEST" })
            }
            BrokerCommand::Heartbeat => return discarded(ClientDiscardReason::NotForClients { command: "HEARTBEAT" }),
            BrokerCommand::Disconnect => {
                return discarded(ClientDiscardReason::NotForClients { command: "DISCONNECT" })
            }
        };
        // The request on the wire for the service named: the oldest
        // outstanding for it. With no service named (majortomo), the oldest
        // of all, if it is on the wire.
        let index = self.pending.iter().position(|p| service.as_ref().is_none_or(|s| *s == p.service));
        let Some(index) = index.filter(|&i| self.pending[i].sent) else {
            let command = if last { "FINAL" } else { "PARTIAL" };
            return discarded(ClientDiscardReason::Unmatched { command, service: service.map(Found) });
        };
        if last {
            let id = self.pending[index].id;
            let mut transmits = Vec::new();
            self.complete(index, &mut transmits);
            (transmits, vec![ClientEvent::Reply { id, body }])
        } else {
            self.pending[index].parts = true;
            (Vec::new(), vec![ClientEvent::Partial { id: self.pending[index].id, body }])
        }
    }

    /// Request `index` is answered or failed: it goes, and the next request
    /// for its service (if any) goes on the wire.
    fn complete(&mut self, index: usize, transmits: &mut Vec<PeerTransmit>) {
        let p = self.pending.remove(index);
        self.finished.insert(p.id);
        if let Some(next) = self.pending.iter().position(|q| q.service == p.service) {
            transmits.push(self.send(next));
        }
    }

    /// Puts request `index` on the wire (again) at the latest `now`.
    fn send(&mut self, index: usize) -> PeerTransmit {
        let (latest, timeout) = (self.latest, self.config.timeout);
        let p = &mut self.pending[index];
        p.sent = true;
        p.parts = false;
        p.deadline = latest.checked_add(timeout);
        let (service, body) = (p.service.clone(), p.body.clone());
        PeerTransmit::Send(self.encode_request(&service, &body))
    }

    /// What `handle_timeout(now)` must do, per the docs; the model is
    /// updated as the client must update itself.
    fn expect_timeout(&mut self, now: Instant) -> (Vec<PeerTransmit>, Vec<ClientEvent>) {
        if self.earliest_deadline().is_none_or(|d| d > now) {
            return (Vec::new(), Vec::new());
        }
        self.expect_reconnect(now, false)
    }

    /// What a reconnect at `now` must do: for a timeout, the requests past
    /// their deadline use a try; for a lost connection (`lost`), every
    /// request on the wire does, and one out of tries fails as
    /// `ConnectionLost`.
    fn expect_reconnect(&mut self, now: Instant, lost: bool) -> (Vec<PeerTransmit>, Vec<ClientEvent>) {
        let mut transmits = vec![PeerTransmit::Reconnect];
        let mut events = Vec::new();
        let tries = self.config.tries;
        // Each request on the wire when the timeout fired, in the order made.
        let on_wire: Vec<RequestId> = self.pending.iter().filter(|p| p.sent).map(|p| p.id).collect();
        for id in on_wire {
            let Some(index) = self.pending.iter().position(|p| p.id == id) else { continue };
            let p = &mut self.pending[index];
            let timed_out = lost || p.deadline.is_some_and(|d| d <= now);
            if timed_out && p.tries >= tries {
                let reason = if lost {
                    FailReason::ConnectionLost { tries }
                } else if tries == 1 {
                    FailReason::Timeout
                } else {
                    FailReason::RetriesExhausted { tries }
                };
                events.push(ClientEvent::Failed { id, reason });
                self.complete(index, &mut transmits);
                continue;
            }
            if timed_out {
                p.tries += 1;
            }
            if p.parts {
                events.push(ClientEvent::Restarted { id });
            }
            transmits.push(self.send(index));
        }
        (transmits, events)
    }

    /// The earliest deadline of a request on the wire.
    fn earliest_deadline(&self) -> Option<Instant> {
        self.pending.iter().filter(|p| p.sent).filter_map(|p| p.deadline).min()
    }

    /// Drains the client and checks what holds after any input.
    fn settle(&mut self) -> (Vec<PeerTransmit>, Vec<ClientEvent>) {
        let transmits = drain("poll_transmit", || self.client.poll_transmit());
        let events = drain("poll_event", || self.client.poll_event());
        assert!(transmits.len() + events.len() <= DRAIN_BOUND);
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
            match e {
                ClientEvent::Reply { .. } => {
                    self.replied.insert(id);
                }
                ClientEvent::Failed { reason, .. } => {
                    let _ = reason.to_string();
                    self.failed.insert(id);
                }
                _ => {}
            }
        }
        (transmits, events)
    }

    fn check(&mut self) {
        assert_eq!(self.client.outstanding(), self.pending.len(), "outstanding()");
        for p in &self.pending {
            assert!(self.client.is_outstanding(p.id), "is_outstanding({})", p.id);
        }
        for id in &self.finished {
            assert!(!self.client.is_outstanding(*id), "is_outstanding({id}) after it finished");
        }
        let earliest = self.earliest_deadline();
        assert_eq!(self.client.poll_timeout(), earliest.map(|d| d.max(self.latest)), "poll_timeout()");
        // Before the deadline, handle_timeout does nothing.
        if earliest.is_none_or(|d| d > self.latest) {
            self.client.handle_timeout(self.latest);
            assert!(self.client.poll_transmit().is_none(), "handle_timeout before the deadline sent something");
            assert!(self.client.poll_event().is_none(), "handle_timeout before the deadline reported something");
        }
    }
}

fuzz_target!(|input: Input| {
    let config = input.config.config();
    let clock = Instant::now();
    let expected_error = if config.timeout.is_zero() {
        Some(ClientUsageError::ZeroTimeout)
    } else if config.tries == 0 {
        Some(ClientUsageError::ZeroTries)
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
    let mut h = Harness {
        client,
        config,
        clock,
        latest: clock,
        pending: Vec::new(),
        issued: HashSet::new(),
        finished: HashSet::new(),
        replied: HashSet::new(),
        failed: HashSet::new(),
        last_id: None,
    };
    for op in &input.ops {
        h.run(op);
    }
});
