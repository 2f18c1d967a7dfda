//! Drives one [`Broker`] with arbitrary peers, messages and time, and checks
//! its invariants after every input.
//!
//! Input: a configuration (timers and limits from the input, limits small so
//! that every limit is reachable; `max_in_flight_per_client` none, 1, 2 or
//! 3), then a sequence of operations:
//!
//! * a message from one of [`PEERS`] identities (few, so peers recur and act
//!   as clients and workers): mostly a well-formed command built with
//!   [`PeerCommand::encode`] in a random dialect (usually the peer's own, so
//!   workers stay registered and the state machine gets deep), sometimes such
//!   a command with one frame removed, inserted or replaced or with its last
//!   frames cut off (an [`Edit`]), sometimes raw frames; sent at the current
//!   time or a little in the past;
//! * a streamed answer from a worker: PARTIALs then a FINAL for the client
//!   it holds (so that long answers to MDP/0.1 clients, which the broker
//!   joins, reach the message limits);
//! * a clock step (zero to years);
//! * `handle_timeout`, at `poll_timeout` or at the current time;
//! * `handle_unreachable` for a peer, or `shutdown`.
//!
//! After every input the target drains `poll_transmit` and `poll_event`
//! (more than [`DRAIN_BOUND`] items is a livelock) and checks:
//!
//! * nothing panics (a panic on peer input is a bug);
//! * `poll_timeout()` is never earlier than the latest `now` passed in, and
//!   right after `handle_timeout(now)` it is later than `now` (else a driver
//!   that sleeps until the deadline spins); a second `handle_timeout` at the
//!   same `now` emits nothing and changes no statistic (idempotence);
//! * every transmit decodes with [`BrokerCommand::decode`], and no body is
//!   larger than the message limits;
//! * REQUEST and HEARTBEAT go only to registered workers (READY seen, no
//!   `WorkerGone` since: tracked here from the events), in their dialect;
//!   a worker never gets a REQUEST while it holds one (it holds it until it
//!   sends FINAL/REPLY for that client address, or is gone); one
//!   `RequestDispatched` event per REQUEST sent; a DISCONNECT never goes to a
//!   worker that stays registered;
//! * replies (PARTIAL/FINAL/REPLY) go only to peers that sent a REQUEST in
//!   the dialect of the reply;
//! * requests, tracked per (client, service) from the input and the events:
//!   a REQUEST (not MMI) with no `LimitHit` for its sender is queued;
//!   `RequestDispatched` takes one from that queue (there must be one) to
//!   that worker, which must serve that service and be sent a REQUEST with
//!   that client address; the worker holds it until it answers the client
//!   (FINAL/REPLY, in size and dialect) or is gone; right after the
//!   `WorkerGone` of a worker that held one comes what became of it
//!   (`RequestRequeued` back into the queue, or `RequestDropped` or
//!   `RequestExpired`), and those events come at no other time except
//!   `RequestExpired` and the shutdown's `RequestDropped` of a queued
//!   request, `Evicted` for a queued one of a service with no workers, and
//!   `ReplyTooLarge` or `ReplyOverBudget` for a held one; the queues add up
//!   to `stats().queued_requests`;
//! * a client never has more than `max_in_flight_per_client` requests of
//!   one service at workers;
//! * work conservation: after every input, no registered worker is idle
//!   while a client with fewer than `max_in_flight_per_client` requests at
//!   workers of its service has one queued for it;
//! * authorization: peers `p1`, `p2`, `p4`, ... (two in three) have names
//!   (`n0` to `n3`) and come in through `handle_authenticated`, the others
//!   unnamed; with a policy from the input, every `WorkerReady` and every
//!   `RequestDispatched` is one the policy allows for that name, every
//!   `AccessDenied` one it refuses (a refused READY gets DISCONNECT and no
//!   registration, a refused REQUEST is not queued);
//! * `stats()` agrees with the tracked model (registered and busy workers,
//!   `is_worker`, `worker_count` per service) and stays within the limits:
//!   `services <= max_services`, `idle + busy <= max_workers`,
//!   `queued + busy <= max_queue_total + max_workers`, and
//!   `queued_bytes + held_bytes <= max_queued_bytes`, each zero when nothing
//!   is queued or no worker is busy.
//!
//! Why that last bound and not `queued <= max_queue_total`: a request whose
//! worker is lost goes back to the head of its queue without a limit check
//! (it was admitted already). Dispatching and re-queueing both keep
//! `queued + busy` unchanged, and only admissions raise it: one that waits
//! needs `queued < max_queue_total`, so it leaves `queued + busy <=
//! max_queue_total + busy <= max_queue_total + max_workers`; one an idle
//! worker takes at once needs `queued <= max_queue_total` (a queue pushed
//! past its limit by re-queues admits nothing) and leaves `busy <=
//! max_workers - 1` before it, so the same bound holds. The queues may pass
//! `max_queue_total` by at most the requests workers held.
#![no_main]

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Result, Unstructured};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use mdp_core::{
    Access, Broker, BrokerCommand, BrokerConfig, BrokerEvent, ConfigError, Dialect, DropReason, Multipart, PeerCommand,
    PeerId, PeerPattern, Policy, ServicePattern, Transmit,
};
use mdp_fuzz::{dialect, drain, frames, pick, to_multipart, Delay, Edit, Frame, DRAIN_BOUND};

/// Number of distinct peer identities.
const PEERS: u8 = 12;

/// Service names: more ordinary ones than `max_services`, MMI names, and
/// names that only look like MMI.
const SERVICES: &[&[u8]] =
    &[b"echo", b"a", b"b", b"c", b"d", b"e", b"f", b"g", b"h", b"i", b"mmi.service", b"mmi.x", b"mmi", b"xmmi.echo"];

fn peer(i: u8) -> PeerId {
    PeerId(Bytes::from(vec![0, b'p', i % PEERS]))
}

/// The authenticated name of peer `p`: two peers in three have one, and
/// names repeat (`n0` to `n3`), as several connections of one key would.
fn name_of(p: &PeerId) -> Option<Bytes> {
    let i = p.0.last().copied().unwrap_or(0);
    (i % 3 != 0).then(|| Bytes::from(format!("n{}", i % 4)))
}

/// A policy: a few grants over the names and the service set.
#[derive(Debug, Arbitrary)]
struct PolicySel {
    /// Per grant: who (`n0`..`n3`, or every peer), serve or call, which
    /// service, and whether only its first byte as a prefix.
    grants: [(u8, bool, u8, bool); 6],
    count: u8,
}

impl PolicySel {
    fn policy(&self) -> Policy {
        let n = usize::from(self.count % 7);
        self.grants[..n].iter().fold(Policy::new(), |policy, &(who, serve, svc, prefix)| {
            let peer = match who % 5 {
                4 => PeerPattern::Any,
                k => PeerPattern::Named(Bytes::from(format!("n{k}"))),
            };
            let access = if serve { Access::Serve } else { Access::Call };
            let name = SERVICES[usize::from(svc) % SERVICES.len()];
            let services = match prefix {
                true => ServicePattern::Prefix(Bytes::copy_from_slice(&name[..1])),
                false => ServicePattern::Exact(Bytes::from_static(name)),
            };
            policy.grant(peer, access, services)
        })
    }
}

/// The dialect a peer speaks until it uses another: peers 0, 3, 6, 9 MDP/0.1,
/// 1, 4, 7, 10 RFC 18, the rest majortomo.
fn natural_dialect(p: &PeerId) -> Dialect {
    let i = p.0.last().copied().unwrap_or(0);
    Dialect::ALL[usize::from(i) % Dialect::ALL.len()]
}

/// A configured duration: mostly milliseconds (zero included), sometimes the
/// largest there is (an application's "never").
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

impl DurationSel {
    fn duration(&self, max_ms: u16) -> Duration {
        match self {
            DurationSel::Millis(ms) => Duration::from_millis(u64::from(ms % (max_ms + 1))),
            DurationSel::Max => Duration::MAX,
        }
    }
}

/// The broker's configuration: timers and limits from the input, limits small.
#[derive(Debug, Arbitrary)]
struct ConfigSel {
    heartbeat: DurationSel,
    liveness: u8,
    busy: Option<DurationSel>,
    max_job: Option<DurationSel>,
    request: DurationSel,
    max_dispatches: u8,
    /// Limits: services and workers 1 to 8, queues 1 to 12 per service and
    /// 1 to 16 in all, messages 8 to 16 frames and 64 to 4096 bytes; from
    /// the high bits of the queue bytes, byte budgets of 1 to 16 KiB in all
    /// and 512 B to 8 KiB per service (a few requests' worth, each frame
    /// charged 192 B besides its bytes).
    limits: [u8; 6],
    hash_seed: u64,
    /// `max_in_flight_per_client`: none (twice as likely), 1, 2 or 3.
    in_flight: u8,
    /// Who may serve and call what (`None`: no policy, every peer may do
    /// everything).
    policy: Option<PolicySel>,
}

impl ConfigSel {
    fn config(&self) -> BrokerConfig {
        let mut c = BrokerConfig::default();
        c.heartbeat_interval = self.heartbeat.duration(3000);
        // 1 to 4, and zero (which `Broker::new` refuses) for one byte in 256.
        c.liveness = rarely_zero(self.liveness, 4);
        c.busy_worker_timeout = self.busy.as_ref().map(|d| d.duration(20_000));
        c.max_job_time = self.max_job.as_ref().map(|d| d.duration(20_000));
        c.request_timeout = self.request.duration(20_000);
        c.max_dispatches = rarely_zero(self.max_dispatches, 4);
        let limit = |i: usize, max: u8| usize::from(1 + self.limits[i] % max);
        c.max_services = limit(0, 8);
        c.max_workers = limit(1, 8);
        c.max_queue_per_service = limit(2, 12);
        c.max_queue_total = limit(3, 16);
        c.max_message_frames = 8 + usize::from(self.limits[4] % 9);
        c.max_message_bytes = 64 << (self.limits[5] % 7);
        c.max_queued_bytes = (1 + usize::from(self.limits[3] >> 4)) << 10;
        c.max_queued_bytes_per_service = (1 + usize::from(self.limits[2] >> 4)) << 9;
        c.hash_seed = Some(self.hash_seed);
        c.max_in_flight_per_client = NonZeroUsize::new(usize::from(self.in_flight % 5).saturating_sub(1));
        c.policy = self.policy.as_ref().map(PolicySel::policy);
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
        Ok(match pick(u, &[9, 1])? {
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

/// The client address a worker puts in its reply.
#[derive(Debug)]
enum ClientSel {
    /// The client of the request this worker holds (as the target tracks it).
    Held,
    /// Some peer's identity.
    Peer(u8),
    /// Anything.
    Raw(Vec<u8>),
}

impl<'a> Arbitrary<'a> for ClientSel {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match pick(u, &[8, 1, 1])? {
            0 => ClientSel::Held,
            1 => ClientSel::Peer(u.arbitrary()?),
            _ => ClientSel::Raw(Vec::arbitrary(u)?),
        })
    }
}

#[derive(Debug)]
enum DialectSel {
    /// The peer's own: its READY's if it is a worker, else the last it used,
    /// else one fixed per identity (so every pairing of dialects is common).
    Own,
    Any(Dialect),
}

impl<'a> Arbitrary<'a> for DialectSel {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match pick(u, &[4, 1])? {
            0 => DialectSel::Own,
            _ => DialectSel::Any(dialect(u)?),
        })
    }
}

#[derive(Debug)]
enum Cmd {
    Request { service: ServiceSel, body: Vec<Frame> },
    Ready { service: ServiceSel },
    Partial { client: ClientSel, body: Vec<Frame> },
    Final { client: ClientSel, body: Vec<Frame> },
    Heartbeat,
    Disconnect,
}

impl<'a> Arbitrary<'a> for Cmd {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match pick(u, &[35, 15, 10, 25, 10, 5])? {
            0 => Cmd::Request { service: u.arbitrary()?, body: frames(u, 1, 18)? },
            1 => Cmd::Ready { service: u.arbitrary()? },
            2 => Cmd::Partial { client: u.arbitrary()?, body: frames(u, 0, 18)? },
            3 => Cmd::Final { client: u.arbitrary()?, body: frames(u, 0, 18)? },
            4 => Cmd::Heartbeat,
            _ => Cmd::Disconnect,
        })
    }
}

#[derive(Debug)]
enum Msg {
    Command { dialect: DialectSel, cmd: Cmd },
    Mangled { dialect: DialectSel, cmd: Cmd, edit: Edit },
    Raw(Vec<Frame>),
}

impl<'a> Arbitrary<'a> for Msg {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match pick(u, &[80, 10, 10])? {
            0 => Msg::Command { dialect: u.arbitrary()?, cmd: u.arbitrary()? },
            1 => Msg::Mangled { dialect: u.arbitrary()?, cmd: u.arbitrary()?, edit: u.arbitrary()? },
            _ => Msg::Raw(frames(u, 0, 20)?),
        })
    }
}

/// When an input happens.
#[derive(Debug)]
enum At {
    Now,
    /// This many milliseconds before the latest `now`: the broker must take
    /// it as the latest `now`.
    Earlier(u16),
}

impl<'a> Arbitrary<'a> for At {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match pick(u, &[15, 1])? {
            0 => At::Now,
            _ => At::Earlier(u.arbitrary()?),
        })
    }
}

#[derive(Debug)]
enum Op {
    Message {
        peer: u8,
        at: At,
        msg: Msg,
    },
    /// A streamed answer: PARTIALs with these bodies, then a FINAL with the
    /// last, all for the client the worker holds, in its dialect.
    Stream {
        peer: u8,
        parts: Vec<Vec<Frame>>,
    },
    Advance(Delay),
    /// `handle_timeout`, at `poll_timeout()` if `jump` (and it is later).
    Timeout {
        jump: bool,
        at: At,
    },
    Unreachable {
        peer: u8,
    },
    Shutdown,
}

impl<'a> Arbitrary<'a> for Op {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match pick(u, &[72, 6, 10, 8, 3, 1])? {
            0 => Op::Message { peer: u.arbitrary()?, at: u.arbitrary()?, msg: u.arbitrary()? },
            1 => {
                let n = u.int_in_range(2..=5)?;
                let parts = (0..n).map(|_| frames(u, 0, 6)).collect::<Result<_>>()?;
                Op::Stream { peer: u.arbitrary()?, parts }
            }
            2 => Op::Advance(u.arbitrary()?),
            3 => Op::Timeout { jump: u.ratio(3, 4)?, at: u.arbitrary()? },
            4 => Op::Unreachable { peer: u.arbitrary()? },
            _ => Op::Shutdown,
        })
    }
}

#[derive(Debug, Arbitrary)]
struct Input {
    config: ConfigSel,
    ops: Vec<Op>,
}

/// The broker, the clock, and what the target knows the broker must hold.
struct Harness {
    broker: Broker,
    config: BrokerConfig,
    /// The harness's clock.
    clock: Instant,
    /// The latest `now` passed to the broker.
    latest: Instant,
    /// Registered workers (from `WorkerReady`/`WorkerGone`), with their
    /// dialect and service.
    ready: HashMap<PeerId, (Dialect, Bytes)>,
    /// Workers holding a request (from `RequestDispatched` until the worker
    /// answers it or is gone), with the request's client and service.
    held: HashMap<PeerId, (PeerId, Bytes)>,
    /// Requests queued per (client, service): admitted, re-queued, less
    /// those dispatched, expired or dropped from the queue.
    queued: HashMap<(PeerId, Bytes), usize>,
    /// Peers that sent a decodable REQUEST, and in which dialect.
    requested: HashSet<(PeerId, Dialect)>,
    /// The dialect each peer last used, for [`DialectSel::Own`].
    last_dialect: HashMap<PeerId, Dialect>,
}

/// `1..=max` from `b`, or 0 when `b` is 0.
fn rarely_zero(b: u8, max: u8) -> u32 {
    if b == 0 {
        0
    } else {
        1 + u32::from((b - 1) % max)
    }
}

/// The error [`Broker::new`] must give for `c`, if any: the first setting,
/// in `BrokerConfig::validate`'s documented order, that cannot work.
fn refusal(c: &BrokerConfig) -> Option<ConfigError> {
    let zero = [
        (c.heartbeat_interval.is_zero(), "heartbeat_interval"),
        (c.liveness == 0, "liveness"),
        (c.request_timeout.is_zero(), "request_timeout"),
        (c.max_dispatches == 0, "max_dispatches"),
        (c.max_services == 0, "max_services"),
        (c.max_workers == 0, "max_workers"),
        (c.max_message_bytes == 0, "max_message_bytes"),
        (c.max_queued_bytes == 0, "max_queued_bytes"),
        (c.max_queued_bytes_per_service == 0, "max_queued_bytes_per_service"),
        (c.max_service_name_bytes == 0, "max_service_name_bytes"),
    ];
    if let Some((_, name)) = zero.iter().find(|(is_zero, _)| *is_zero) {
        return Some(ConfigError::Zero(name));
    }
    (c.max_message_frames < 2).then(|| ConfigError::TooSmall {
        setting: "max_message_frames",
        value: c.max_message_frames,
        min: 2,
        why: "the shortest MDP command (an RFC 18 HEARTBEAT) has 2 frames",
    })
}

impl Harness {
    /// A harness around a new broker; `None` if `Broker::new` refused the
    /// configuration, which it must do exactly when [`refusal`] says so.
    fn new(config: BrokerConfig) -> Option<Self> {
        let clock = Instant::now();
        let broker = match (Broker::new(config.clone(), clock), refusal(&config)) {
            (Ok(broker), None) => broker,
            (Err(e), Some(expected)) => {
                assert_eq!(e, expected);
                let _ = e.to_string();
                return None;
            }
            (Ok(_), Some(expected)) => panic!("Broker::new accepted {config:?}, expected {expected}"),
            (Err(e), None) => panic!("Broker::new refused {config:?}: {e}"),
        };
        Some(Harness {
            broker,
            config,
            clock,
            latest: clock,
            ready: HashMap::new(),
            held: HashMap::new(),
            queued: HashMap::new(),
            requested: HashSet::new(),
            last_dialect: HashMap::new(),
        })
    }

    fn time(&mut self, at: &At) -> Instant {
        match at {
            At::Now => {
                self.latest = self.latest.max(self.clock);
                self.clock
            }
            At::Earlier(ms) => self.latest.checked_sub(Duration::from_millis(u64::from(*ms))).unwrap_or(self.latest),
        }
    }

    fn run(&mut self, op: &Op) {
        match op {
            Op::Message { peer: p, at, msg } => self.message(peer(*p), at, msg),
            Op::Stream { peer: p, parts } => {
                for (i, body) in parts.iter().enumerate() {
                    let client = ClientSel::Held;
                    let body = body.clone();
                    let cmd =
                        if i + 1 < parts.len() { Cmd::Partial { client, body } } else { Cmd::Final { client, body } };
                    self.message(peer(*p), &At::Now, &Msg::Command { dialect: DialectSel::Own, cmd });
                }
            }
            Op::Advance(d) => self.clock = self.clock.checked_add(d.duration()).unwrap_or(self.clock),
            Op::Timeout { jump, at } => self.timeout(*jump, at),
            Op::Unreachable { peer: p } => {
                let now = self.time(&At::Now);
                self.broker.handle_unreachable(now, &peer(*p));
                self.settle(None);
            }
            Op::Shutdown => {
                let now = self.time(&At::Now);
                self.broker.shutdown(now);
                self.settle(None);
                let s = self.broker.stats();
                assert_eq!((s.services, s.idle_workers, s.busy_workers, s.queued_requests), (0, 0, 0, 0));
                assert!(self.broker.poll_timeout().is_none(), "timers left after shutdown");
            }
        }
    }

    fn message(&mut self, from: PeerId, at: &At, msg: &Msg) {
        let Some(frames) = self.frames(&from, msg) else { return };
        let over_size = frames.len() > self.config.max_message_frames
            || frames.iter().map(Bytes::len).sum::<usize>() > self.config.max_message_bytes;
        // A REQUEST the broker must queue or dispatch, unless a limit stops it.
        let mut admitted = None;
        match PeerCommand::decode(frames.clone()) {
            Ok((d, PeerCommand::Final { client, .. })) => {
                // The broker frees a worker that answers the client it holds
                // (if the message is refused for its size or dialect, the
                // worker is removed instead, and WorkerGone says so).
                let holds = self.held.get(&from).is_some_and(|(c, _)| c.0 == client);
                if holds && !over_size && self.ready.get(&from).is_some_and(|r| r.0 == d) {
                    self.held.remove(&from);
                }
                self.last_dialect.insert(from.clone(), d);
            }
            Ok((d, PeerCommand::Request { service, .. })) => {
                self.requested.insert((from.clone(), d));
                self.last_dialect.insert(from.clone(), d);
                if !service.starts_with(b"mmi.") {
                    admitted = Some((from.clone(), service));
                }
            }
            Ok((d, _)) => {
                self.last_dialect.insert(from.clone(), d);
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
        let now = self.time(at);
        match name_of(&from) {
            Some(name) => self.broker.handle_authenticated(now, from, name, frames),
            None => self.broker.handle_message(now, from, frames),
        }
        self.settle(admitted);
    }

    fn frames(&self, from: &PeerId, msg: &Msg) -> Option<Multipart> {
        match msg {
            Msg::Raw(f) => Some(to_multipart(f)),
            Msg::Command { dialect, cmd } => self.encode(from, dialect, cmd),
            Msg::Mangled { dialect, cmd, edit } => {
                let mut frames = self.encode(from, dialect, cmd)?;
                edit.apply(&mut frames);
                Some(frames)
            }
        }
    }

    fn encode(&self, from: &PeerId, dialect: &DialectSel, cmd: &Cmd) -> Option<Multipart> {
        let dialect = match dialect {
            DialectSel::Any(d) => *d,
            DialectSel::Own => match self.ready.get(from) {
                Some((d, _)) => *d,
                None => self.last_dialect.get(from).copied().unwrap_or_else(|| natural_dialect(from)),
            },
        };
        let client = |c: &ClientSel| match c {
            ClientSel::Held => self.held.get(from).map_or_else(|| Bytes::from_static(b"nobody"), |(c, _)| c.0.clone()),
            ClientSel::Peer(p) => peer(*p).0,
            ClientSel::Raw(b) => Bytes::copy_from_slice(b),
        };
        let cmd = match cmd {
            Cmd::Request { service, body } => {
                PeerCommand::Request { service: service.bytes(), body: to_multipart(body) }
            }
            Cmd::Ready { service } => PeerCommand::Ready { service: service.bytes() },
            Cmd::Partial { client: c, body } => PeerCommand::Partial { client: client(c), body: to_multipart(body) },
            Cmd::Final { client: c, body } => PeerCommand::Final { client: client(c), body: to_multipart(body) },
            Cmd::Heartbeat => PeerCommand::Heartbeat,
            Cmd::Disconnect => PeerCommand::Disconnect,
        };
        // PARTIAL has no 0.1 form, and a raw service may be empty: skip those.
        cmd.encode(dialect).ok()
    }

    fn timeout(&mut self, jump: bool, at: &At) {
        if jump {
            if let Some(t) = self.broker.poll_timeout() {
                self.clock = self.clock.max(t);
            }
        }
        let now = self.time(at);
        self.broker.handle_timeout(now);
        self.settle(None);
        if let Some(t) = self.broker.poll_timeout() {
            assert!(t > self.latest, "handle_timeout({:?}) left a timer due at {:?}", self.latest, t);
        }
        // Idempotence: nothing more is due at the same time.
        let stats = self.broker.stats();
        self.broker.handle_timeout(now);
        assert!(self.broker.poll_transmit().is_none(), "second handle_timeout at the same time sent something");
        assert!(self.broker.poll_event().is_none(), "second handle_timeout at the same time reported something");
        assert_eq!(self.broker.stats(), stats, "second handle_timeout at the same time changed the stats");
    }

    /// Drains the broker and checks every invariant. `admitted`: the client
    /// and service of a REQUEST this input carried (not MMI), which the
    /// broker took unless a `LimitHit` for that client says otherwise.
    fn settle(&mut self, admitted: Option<(PeerId, Bytes)>) {
        let transmits = drain("poll_transmit", || self.broker.poll_transmit());
        let events = drain("poll_event", || self.broker.poll_event());
        assert!(transmits.len() + events.len() <= DRAIN_BOUND, "livelock: too much output for one input");

        // Registrations first: a worker that READYs may get a REQUEST at once.
        for e in &events {
            if let BrokerEvent::WorkerReady { worker, service, dialect } = e {
                assert!(
                    self.may(worker, Access::Serve, service),
                    "{worker} registered for {service:?} against the policy"
                );
                let before = self.ready.insert(worker.clone(), (*dialect, service.clone()));
                assert!(before.is_none(), "WorkerReady for {worker}, already registered");
            }
        }

        // REQUESTs sent, with the client address each carried.
        let mut requested_to: HashMap<PeerId, Bytes> = HashMap::new();
        let mut disconnected = Vec::new();
        for Transmit { to, frames } in &transmits {
            let (dialect, cmd) = match BrokerCommand::decode(frames.clone()) {
                Ok(ok) => ok,
                Err(e) => panic!("transmit to {to} does not decode: {e}: {frames:?}"),
            };
            match cmd {
                BrokerCommand::Request { client, body } => {
                    let registered = self.ready.get(to).map(|r| r.0);
                    assert_eq!(registered, Some(dialect), "REQUEST to {to}, registered as {registered:?}");
                    assert!(!self.held.contains_key(to), "REQUEST to {to} while it holds one");
                    self.check_body(&body);
                    let before = requested_to.insert(to.clone(), client);
                    assert!(before.is_none(), "two REQUESTs to {to} for one input");
                }
                BrokerCommand::Heartbeat => {
                    let registered = self.ready.get(to).map(|r| r.0);
                    assert_eq!(registered, Some(dialect), "HEARTBEAT to {to}, registered as {registered:?}");
                }
                BrokerCommand::Disconnect => disconnected.push(to.clone()),
                BrokerCommand::Partial { body, .. } | BrokerCommand::Final { body, .. } => {
                    assert!(
                        self.requested.contains(&(to.clone(), dialect)),
                        "reply to {to}, which sent no {dialect} REQUEST"
                    );
                    self.check_body(&body);
                }
            }
        }

        if let Some(key) = admitted {
            let refused = events.iter().any(|e| match e {
                BrokerEvent::LimitHit { peer, .. } | BrokerEvent::AccessDenied { peer, .. } => *peer == key.0,
                _ => false,
            });
            if !refused {
                *self.queued.entry(key).or_default() += 1;
            }
        }
        // The events in order. Right after a busy worker's WorkerGone comes
        // what happened to its request: re-queued, dropped or expired.
        let limit = self.config.max_in_flight_per_client.map_or(usize::MAX, NonZeroUsize::get);
        let mut dispatched = 0;
        let mut lost: Option<(PeerId, Bytes)> = None;
        for e in &events {
            let was_lost = lost.take();
            let mut settles_lost = false;
            match e {
                BrokerEvent::WorkerGone { worker, service, .. } => {
                    assert!(self.ready.remove(worker).is_some(), "WorkerGone for {worker}, not registered");
                    if let Some((client, held)) = self.held.remove(worker) {
                        assert_eq!(held, *service, "WorkerGone names another service than its request's");
                        lost = Some((client, held));
                    }
                }
                BrokerEvent::RequestDispatched { client, service, worker } => {
                    dispatched += 1;
                    assert!(
                        self.may(client, Access::Call, service),
                        "{client}'s {service:?} dispatched against the policy"
                    );
                    assert_eq!(requested_to.get(worker), Some(&client.0), "RequestDispatched to {worker}");
                    let registered = self.ready.get(worker).map(|r| &r.1);
                    assert_eq!(registered, Some(service), "{service:?} dispatched to {worker}");
                    let key = (client.clone(), service.clone());
                    let queued = self.queued.get_mut(&key).filter(|n| **n > 0);
                    let queued = queued.unwrap_or_else(|| panic!("dispatched for {key:?}, which has nothing queued"));
                    *queued -= 1;
                    let before = self.held.insert(worker.clone(), key.clone());
                    assert!(before.is_none(), "{worker} dispatched to while it holds a request");
                    let in_flight = self.in_flight(&key);
                    assert!(in_flight <= limit, "{in_flight} requests of {key:?} at workers, limit {limit}");
                }
                BrokerEvent::RequestRequeued { client, service, .. } => {
                    let key = (client.clone(), service.clone());
                    assert_eq!(was_lost.as_ref(), Some(&key), "re-queued, but no worker holding it was lost");
                    settles_lost = true;
                    *self.queued.entry(key).or_default() += 1;
                }
                BrokerEvent::RequestExpired { client, service } => {
                    let key = (client.clone(), service.clone());
                    if was_lost.as_ref() == Some(&key) {
                        settles_lost = true;
                    } else {
                        self.unqueue(&key);
                    }
                }
                BrokerEvent::RequestDropped { client, service, reason } => {
                    let key = (client.clone(), service.clone());
                    match reason {
                        // The worker keeps it until its FINAL; nothing queued.
                        DropReason::ReplyTooLarge | DropReason::ReplyOverBudget(_) => {}
                        DropReason::Shutdown if was_lost.as_ref() != Some(&key) => self.unqueue(&key),
                        // A READY for a new service made room: only a service
                        // without workers is evicted, with its queued requests.
                        DropReason::Evicted => {
                            let served = self.ready.values().any(|r| r.1 == *service);
                            assert!(!served, "{service:?} evicted while it has workers");
                            self.unqueue(&key);
                        }
                        _ => {
                            assert_eq!(was_lost.as_ref(), Some(&key), "{reason:?}, but no worker holding it was lost");
                            settles_lost = true;
                        }
                    }
                }
                BrokerEvent::AccessDenied { peer, name, access, service } => {
                    assert_eq!(*name, name_of(peer), "AccessDenied names {peer} wrongly");
                    assert!(!self.may(peer, *access, service), "{peer} denied {access} {service:?}, which it may");
                    if *access == Access::Serve {
                        assert!(disconnected.contains(peer), "a refused READY from {peer} got no DISCONNECT");
                        assert!(!self.ready.contains_key(peer), "{peer} refused, yet registered");
                    }
                }
                BrokerEvent::PeerMisbehaved { peer, reason, .. } => {
                    let _ = (peer.to_string(), reason.to_string());
                }
                _ => {}
            }
            if let Some(key) = was_lost.filter(|_| !settles_lost) {
                panic!("the request of a lost worker ({key:?}) was neither re-queued, dropped nor expired: {e:?}");
            }
        }
        if let Some(key) = lost {
            panic!("the request of a lost worker ({key:?}) was neither re-queued, dropped nor expired");
        }
        assert_eq!(requested_to.len(), dispatched, "REQUESTs sent and RequestDispatched events differ");
        for p in &disconnected {
            assert!(!self.ready.contains_key(p), "DISCONNECT to {p}, which stays registered");
        }

        self.check_stats();
        self.check_dispatch();
        if let Some(t) = self.broker.poll_timeout() {
            assert!(t >= self.latest, "poll_timeout {t:?} is before the latest now {:?}", self.latest);
        }
    }

    /// Whether the configuration's policy lets `peer` `access` `service`.
    fn may(&self, peer: &PeerId, access: Access, service: &[u8]) -> bool {
        let name = name_of(peer);
        self.config.policy.as_ref().is_none_or(|p| p.allows(name.as_deref(), access, service))
    }

    /// Requests of `key`'s client to its service at workers.
    fn in_flight(&self, key: &(PeerId, Bytes)) -> usize {
        self.held.values().filter(|held| *held == key).count()
    }

    /// One request of `key` left its queue (expired, or dropped at shutdown).
    fn unqueue(&mut self, key: &(PeerId, Bytes)) {
        let queued = self.queued.get_mut(key).filter(|n| **n > 0);
        *queued.unwrap_or_else(|| panic!("a request of {key:?} left its queue, which held none")) -= 1;
    }

    /// Work conservation: no registered worker is idle while a client below
    /// its in-flight limit has a request queued for the worker's service.
    fn check_dispatch(&mut self) {
        self.queued.retain(|_, n| *n > 0);
        let queued: usize = self.queued.values().sum();
        assert_eq!(self.broker.stats().queued_requests, queued, "queued requests, by client: {:?}", self.queued);
        let limit = self.config.max_in_flight_per_client.map_or(usize::MAX, NonZeroUsize::get);
        for (worker, (_, service)) in &self.ready {
            if self.held.contains_key(worker) {
                continue;
            }
            for (key, n) in &self.queued {
                if key.1 == *service {
                    let in_flight = self.in_flight(key);
                    assert!(
                        in_flight >= limit,
                        "{worker} idle while {key:?} has {n} queued and {in_flight} at workers (limit {limit})"
                    );
                }
            }
        }
    }

    fn check_body(&self, body: &Multipart) {
        assert!(body.len() <= self.config.max_message_frames, "a body of {} frames went out", body.len());
        let bytes: usize = body.iter().map(Bytes::len).sum();
        assert!(bytes <= self.config.max_message_bytes, "a body of {bytes} bytes went out");
    }

    fn check_stats(&self) {
        let c = &self.config;
        let s = self.broker.stats();
        assert!(s.services <= c.max_services, "{} services", s.services);
        assert!(s.idle_workers + s.busy_workers <= c.max_workers, "{s:?}");
        assert!(s.queued_requests + s.busy_workers <= c.max_queue_total + c.max_workers, "{s:?}");
        assert_eq!(s.idle_workers + s.busy_workers, self.ready.len(), "registered workers: {s:?}");
        assert_eq!(s.busy_workers, self.held.len(), "busy workers: {s:?}");
        // The byte budget is never passed (only admission and joining add
        // bytes, and both are checked), and drains to nothing.
        assert!(s.queued_bytes + s.held_bytes <= c.max_queued_bytes, "{s:?}");
        assert!(s.queued_requests > 0 || s.queued_bytes == 0, "bytes charged with nothing queued: {s:?}");
        assert!(s.busy_workers > 0 || s.held_bytes == 0, "bytes held with no worker busy: {s:?}");
        for i in 0..PEERS {
            let p = peer(i);
            assert_eq!(self.broker.is_worker(&p), self.ready.contains_key(&p), "is_worker({p})");
        }
        let mut per_service: HashMap<&Bytes, usize> = HashMap::new();
        for (_, service) in self.ready.values() {
            *per_service.entry(service).or_default() += 1;
        }
        for (service, n) in per_service {
            assert_eq!(self.broker.worker_count(service), n, "worker_count({service:?})");
        }
    }
}

fuzz_target!(|input: Input| {
    let Some(mut h) = Harness::new(input.config.config()) else { return };
    for op in &input.ops {
        h.run(op);
    }
});
