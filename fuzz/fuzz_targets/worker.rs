//! Drives one [`Worker`] with arbitrary broker messages, time and
//! application calls, and checks its invariants after every input.
//!
//! Input: a configuration (service, dialect, heartbeat, liveness and backoff
//! from the input, including zero, `Duration::MAX` and out-of-range jitter:
//! [`Worker::new`] must refuse exactly the invalid ones), then operations:
//!
//! * a message from the broker: mostly well-formed, built with
//!   [`BrokerCommand::encode`] (usually in the worker's dialect, and a
//!   REQUEST's client address from a few), sometimes with one frame removed,
//!   inserted or replaced or the last frames cut off (an [`Edit`]), sometimes
//!   raw frames; at the current time or a little in the past;
//! * a clock step (zero to years), `handle_timeout` (at `poll_timeout` or
//!   now);
//! * `reply` or `partial` with the token of the request in progress, or of
//!   an earlier request (answered or dropped), and `disconnect`.
//!
//! After every input it drains `poll_transmit` and `poll_event` (more than
//! [`DRAIN_BOUND`] items is a livelock) and checks:
//!
//! * nothing panics, and each input queues at most one transmit and one
//!   event (the worker's documented memory bound);
//! * `poll_timeout()` is never before the latest `now`; when it is later (or
//!   `None`), `handle_timeout` at the latest `now` does nothing; and a few
//!   `handle_timeout`s at one `now` always reach a deadline after it;
//! * every `Send` decodes with [`PeerCommand::decode`], in the worker's
//!   dialect; after a `Reconnect` the first `Send` is READY for the
//!   configured service; after `disconnect` nothing is sent but the
//!   DISCONNECT; `is_registered()` holds from READY to the next `Reconnect`
//!   or `disconnect`;
//! * a `Request` event never comes while another request is in progress
//!   (tracked here: from the event until `reply` succeeds, `disconnect`, or
//!   `Disconnected` names it as dropped); `is_busy()` agrees;
//! * `reply`/`partial` succeed exactly for the token in progress (`partial`
//!   not in MDP/0.1) and then send exactly one FINAL/PARTIAL to that token's
//!   client; otherwise they fail and send nothing.
#![no_main]

use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Result, Unstructured};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use mdp_core::{Backoff, ReplyToken, WorkerUsageError};
use mdp_core::{
    BrokerCommand, ConfigError, Dialect, Multipart, PeerCommand, PeerTransmit, Worker, WorkerConfig, WorkerEvent,
};
use mdp_fuzz::{dialect, drain, frames, pick, to_multipart, Delay, Edit, Frame, DRAIN_BOUND};

/// Service names the configuration picks from: valid ones, an empty one, an
/// `mmi.` one and one that only looks like it.
const SERVICES: &[&[u8]] = &[b"echo", b"a", b"", b"mmi.echo", b"mmi", b"xmmi.echo"];

/// Client addresses the broker's REQUESTs carry.
const CLIENTS: &[&[u8]] = &[b"\x00c1", b"\x00c2", b"", b"client"];

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

#[derive(Debug)]
enum JitterSel {
    Fraction(u8),
    Other(f64),
}

impl<'a> Arbitrary<'a> for JitterSel {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match pick(u, &[15, 1])? {
            0 => JitterSel::Fraction(u.arbitrary()?),
            _ => JitterSel::Other(u.arbitrary()?),
        })
    }
}

#[derive(Debug, Arbitrary)]
struct ConfigSel {
    service: u8,
    dialect: u8,
    heartbeat: DurationSel,
    liveness: u8,
    initial: DurationSel,
    max: DurationSel,
    jitter: JitterSel,
    seed: u64,
}

impl ConfigSel {
    fn config(&self) -> WorkerConfig {
        let service = Bytes::from_static(SERVICES[usize::from(self.service) % SERVICES.len()]);
        let dialect = Dialect::ALL[usize::from(self.dialect) % Dialect::ALL.len()];
        let mut c = WorkerConfig::new(service, dialect);
        c.heartbeat_interval = self.heartbeat.duration(3000);
        c.liveness = u32::from(self.liveness % 5);
        let mut backoff = Backoff::default();
        backoff.initial = self.initial.duration(5000);
        backoff.max = self.max.duration(30_000);
        backoff.jitter = match self.jitter {
            JitterSel::Fraction(f) => f64::from(f) / 255.0,
            JitterSel::Other(x) => x,
        };
        backoff.seed = self.seed;
        c.backoff = backoff;
        c
    }
}

/// The error [`Worker::new`] must give for `c`, if any.
fn refusal(c: &WorkerConfig) -> Option<ConfigError> {
    if c.service.is_empty() {
        Some(ConfigError::EmptyService)
    } else if c.service.starts_with(b"mmi.") {
        Some(ConfigError::ReservedService(mdp_core::Found(c.service.clone())))
    } else if c.heartbeat_interval.is_zero() {
        Some(ConfigError::Zero("heartbeat_interval"))
    } else if c.liveness == 0 {
        Some(ConfigError::Zero("liveness"))
    } else if !(0.0..=1.0).contains(&c.backoff.jitter) {
        Some(ConfigError::InvalidJitter(c.backoff.jitter))
    } else {
        None
    }
}

#[derive(Debug)]
enum Cmd {
    Request {
        client: u8,
        body: Vec<Frame>,
    },
    Heartbeat,
    Disconnect,
    /// A client-side command, which a worker must drop.
    Final {
        service: Option<Vec<u8>>,
        body: Vec<Frame>,
    },
    Partial {
        service: Option<Vec<u8>>,
        body: Vec<Frame>,
    },
}

impl<'a> Arbitrary<'a> for Cmd {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match pick(u, &[50, 25, 8, 4, 3])? {
            0 => Cmd::Request { client: u.arbitrary()?, body: frames(u, 1, 4)? },
            1 => Cmd::Heartbeat,
            2 => Cmd::Disconnect,
            3 => Cmd::Final { service: u.arbitrary()?, body: frames(u, 0, 4)? },
            _ => Cmd::Partial { service: u.arbitrary()?, body: frames(u, 0, 4)? },
        })
    }
}

#[derive(Debug)]
enum Msg {
    /// In the worker's dialect, or in `Some` other.
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
        Ok(match pick(u, &[70, 10, 10, 10])? {
            0 => Msg::Command { dialect: None, cmd: u.arbitrary()? },
            1 => Msg::Command { dialect: Some(dialect(u)?), cmd: u.arbitrary()? },
            2 => Msg::Mangled { cmd: u.arbitrary()?, edit: u.arbitrary()? },
            _ => Msg::Raw(frames(u, 0, 8)?),
        })
    }
}

#[derive(Debug)]
enum TokenSel {
    /// The request in progress (or the latest seen if none is).
    Current,
    /// The `n`th latest token seen.
    Seen(u8),
}

impl<'a> Arbitrary<'a> for TokenSel {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match pick(u, &[6, 1])? {
            0 => TokenSel::Current,
            _ => TokenSel::Seen(u.arbitrary()?),
        })
    }
}

#[derive(Debug)]
enum Op {
    Message { earlier_ms: Option<u16>, msg: Msg },
    Advance(Delay),
    Timeout { jump: bool },
    Reply { token: TokenSel, body: Vec<Frame> },
    Partial { token: TokenSel, body: Vec<Frame> },
    Disconnect,
    ConnectionLost,
}

impl<'a> Arbitrary<'a> for Op {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match pick(u, &[45, 12, 15, 15, 10, 1, 3])? {
            0 => {
                let earlier_ms = if u.ratio(1, 16)? { Some(u.arbitrary()?) } else { None };
                Op::Message { earlier_ms, msg: u.arbitrary()? }
            }
            1 => Op::Advance(u.arbitrary()?),
            2 => Op::Timeout { jump: u.ratio(3, 4)? },
            3 => Op::Reply { token: u.arbitrary()?, body: frames(u, 0, 3)? },
            4 => Op::Partial { token: u.arbitrary()?, body: frames(u, 0, 3)? },
            5 => Op::Disconnect,
            _ => Op::ConnectionLost,
        })
    }
}

#[derive(Debug, Arbitrary)]
struct Input {
    config: ConfigSel,
    ops: Vec<Op>,
}

struct Harness {
    worker: Worker,
    dialect: Dialect,
    service: Bytes,
    clock: Instant,
    /// The latest `now` passed to the worker.
    latest: Instant,
    /// The request in progress, from its `Request` event.
    in_progress: Option<ReplyToken>,
    /// Every token seen, latest last.
    seen: Vec<ReplyToken>,
    /// A `Reconnect` was sent and READY not yet.
    awaiting_ready: bool,
    stopped: bool,
}

impl Harness {
    fn run(&mut self, op: &Op) {
        match op {
            Op::Message { earlier_ms, msg } => {
                let Some(frames) = self.frames(msg) else { return };
                let now = self.now(*earlier_ms);
                self.worker.handle_message(now, frames);
                self.settle();
            }
            Op::Advance(d) => self.clock = self.clock.checked_add(d.duration()).unwrap_or(self.clock),
            Op::Timeout { jump } => self.timeout(*jump),
            Op::Reply { token, body } => self.answer(token, body, true),
            Op::Partial { token, body } => self.answer(token, body, false),
            Op::Disconnect => {
                let now = self.now(None);
                let was_stopped = self.stopped;
                self.worker.disconnect(now);
                self.in_progress = None;
                self.stopped = true;
                let sent = self.settle();
                if was_stopped {
                    assert!(sent.is_empty(), "a second disconnect sent {sent:?}");
                } else {
                    assert_eq!(sent.len(), 1, "disconnect sent {sent:?}");
                    assert_eq!(sent[0], PeerCommand::Disconnect);
                }
                assert!(self.worker.poll_timeout().is_none(), "a timer is set after disconnect");
            }
            Op::ConnectionLost => {
                let now = self.now(None);
                let registered = self.worker.is_registered();
                self.worker.handle_connection_lost(now);
                let reconnecting = self.awaiting_ready;
                self.awaiting_ready = false;
                let sent = self.settle();
                assert!(sent.is_empty(), "a lost connection sent {sent:?}");
                // Registered or in its backoff, the worker asks for a new
                // connection; stopped, for nothing (settle checks that).
                assert_eq!(self.awaiting_ready, !self.stopped, "Reconnect after a lost connection");
                self.awaiting_ready |= reconnecting;
                if registered {
                    assert!(!self.worker.is_registered() && !self.worker.is_busy(), "still registered");
                }
            }
        }
    }

    fn now(&mut self, earlier_ms: Option<u16>) -> Instant {
        match earlier_ms {
            None => {
                self.latest = self.latest.max(self.clock);
                self.clock
            }
            Some(ms) => self.latest.checked_sub(Duration::from_millis(u64::from(ms))).unwrap_or(self.latest),
        }
    }

    fn frames(&self, msg: &Msg) -> Option<Multipart> {
        let encode = |dialect: Dialect, cmd: &Cmd| {
            let cmd = match cmd {
                Cmd::Request { client, body } => BrokerCommand::Request {
                    client: Bytes::from_static(CLIENTS[usize::from(*client) % CLIENTS.len()]),
                    body: to_multipart(body),
                },
                Cmd::Heartbeat => BrokerCommand::Heartbeat,
                Cmd::Disconnect => BrokerCommand::Disconnect,
                Cmd::Final { service, body } => {
                    let service = service.as_ref().map(|s| Bytes::copy_from_slice(s));
                    BrokerCommand::Final { service, body: to_multipart(body) }
                }
                Cmd::Partial { service, body } => {
                    let service = service.as_ref().map(|s| Bytes::copy_from_slice(s));
                    BrokerCommand::Partial { service, body: to_multipart(body) }
                }
            };
            cmd.encode(dialect).ok()
        };
        match msg {
            Msg::Command { dialect, cmd } => encode(dialect.unwrap_or(self.dialect), cmd),
            Msg::Mangled { cmd, edit } => {
                let mut frames = encode(self.dialect, cmd)?;
                edit.apply(&mut frames);
                Some(frames)
            }
            Msg::Raw(f) => Some(to_multipart(f)),
        }
    }

    fn token(&self, sel: &TokenSel) -> Option<ReplyToken> {
        match sel {
            TokenSel::Current => self.in_progress.clone().or_else(|| self.seen.last().cloned()),
            TokenSel::Seen(n) => {
                let n = usize::from(*n);
                (n < self.seen.len()).then(|| self.seen[self.seen.len() - 1 - n].clone())
            }
        }
    }

    fn answer(&mut self, sel: &TokenSel, body: &[Frame], last: bool) {
        let Some(token) = self.token(sel) else { return };
        let now = self.now(None);
        let body = to_multipart(body);
        let result = if last {
            self.worker.reply(now, &token, body.clone())
        } else {
            self.worker.partial(now, &token, body.clone())
        };
        let valid = self.in_progress.as_ref() == Some(&token) && !self.stopped;
        if result.is_ok() && last {
            self.in_progress = None;
        }
        let sent = self.settle();
        match result {
            Ok(()) => {
                assert!(valid, "answer with token {token:?} accepted, but {:?} is in progress", self.in_progress);
                assert!(last || self.dialect != Dialect::V01, "PARTIAL accepted in MDP/0.1");
                let client = token.client().0;
                let expected =
                    if last { PeerCommand::Final { client, body } } else { PeerCommand::Partial { client, body } };
                assert_eq!(sent, vec![expected], "what the answer sent");
            }
            Err(e) => {
                let _ = e.to_string();
                let partial_in_v01 = !last && self.dialect == Dialect::V01;
                assert!(!valid || partial_in_v01, "answer with the token in progress failed: {e}");
                if partial_in_v01 {
                    assert_eq!(e, WorkerUsageError::PartialInV01);
                }
                assert!(sent.is_empty(), "a failed answer sent {sent:?}");
            }
        }
        assert_eq!(self.worker.is_busy(), self.in_progress.is_some(), "is_busy()");
    }

    fn timeout(&mut self, jump: bool) {
        if jump {
            if let Some(t) = self.worker.poll_timeout() {
                self.clock = self.clock.max(t);
            }
        }
        let now = self.now(None);
        // A zero backoff makes the reconnect's READY due at the same `now`;
        // nothing else can be: a few calls reach a deadline after `now`.
        for _ in 0..4 {
            self.worker.handle_timeout(now);
            self.settle();
            if self.worker.poll_timeout().is_none_or(|t| t > self.latest) {
                return;
            }
        }
        panic!("handle_timeout({now:?}) four times, and a deadline is still due: {:?}", self.worker.poll_timeout());
    }

    /// Drains the worker, checks the invariants, and returns what was sent.
    fn settle(&mut self) -> Vec<PeerCommand> {
        let transmits = drain("poll_transmit", || self.worker.poll_transmit());
        let events = drain("poll_event", || self.worker.poll_event());
        assert!(transmits.len() + events.len() <= DRAIN_BOUND);
        assert!(transmits.len() <= 1, "one input queued {} transmits: {transmits:?}", transmits.len());
        assert!(events.len() <= 1, "one input queued {} events: {events:?}", events.len());

        let mut sent = Vec::new();
        for t in transmits {
            match t {
                PeerTransmit::Reconnect => {
                    assert!(!self.stopped, "Reconnect after disconnect");
                    self.awaiting_ready = true;
                }
                PeerTransmit::Send(frames) => {
                    let (dialect, cmd) = match PeerCommand::decode(frames.clone()) {
                        Ok(ok) => ok,
                        Err(e) => panic!("the worker sent what does not decode: {e}: {frames:?}"),
                    };
                    assert_eq!(dialect, self.dialect, "sent {cmd:?} in another dialect");
                    // A DISCONNECT may go at any time, even before READY.
                    if self.awaiting_ready && cmd != PeerCommand::Disconnect {
                        assert_eq!(cmd, PeerCommand::Ready { service: self.service.clone() }, "first after Reconnect");
                        self.awaiting_ready = false;
                    }
                    if self.stopped {
                        assert_eq!(cmd, PeerCommand::Disconnect, "sent after disconnect");
                    }
                    sent.push(cmd);
                }
            }
        }
        for e in events {
            match e {
                WorkerEvent::Request { token, body } => {
                    assert!(!self.stopped, "a Request event after disconnect");
                    assert!(
                        self.in_progress.is_none(),
                        "Request {token:?} while {:?} is in progress",
                        self.in_progress
                    );
                    assert!(!body.is_empty(), "a request with no body");
                    self.in_progress = Some(token.clone());
                    self.seen.push(token);
                }
                WorkerEvent::Disconnected { reason, dropped } => {
                    let _ = reason.to_string();
                    assert_eq!(dropped, self.in_progress, "Disconnected names another request as dropped");
                    self.in_progress = None;
                }
                WorkerEvent::Discarded { reason } => {
                    let _ = reason.to_string();
                }
                _ => {}
            }
        }
        assert_eq!(self.worker.is_busy(), self.in_progress.is_some(), "is_busy()");
        assert_eq!(self.worker.is_stopped(), self.stopped, "is_stopped()");
        let registered = !self.stopped && !self.awaiting_ready;
        assert_eq!(self.worker.is_registered(), registered, "is_registered()");

        if let Some(t) = self.worker.poll_timeout() {
            assert!(t >= self.latest, "poll_timeout {t:?} is before the latest now {:?}", self.latest);
        }
        // Before its deadline, handle_timeout does nothing.
        if self.worker.poll_timeout().is_none_or(|t| t > self.latest) {
            self.worker.handle_timeout(self.latest);
            assert!(self.worker.poll_transmit().is_none(), "handle_timeout before the deadline sent something");
            assert!(self.worker.poll_event().is_none(), "handle_timeout before the deadline reported something");
        }
        sent
    }
}

fuzz_target!(|input: Input| {
    let config = input.config.config();
    let clock = Instant::now();
    let worker = match (Worker::new(config.clone(), clock), refusal(&config)) {
        (Ok(worker), None) => worker,
        (Err(e), Some(expected)) => {
            let _ = e.to_string();
            match (&e, &expected) {
                // NaN is not equal to itself: compare the bits.
                (ConfigError::InvalidJitter(a), ConfigError::InvalidJitter(b)) => {
                    assert_eq!(a.to_bits(), b.to_bits())
                }
                _ => assert_eq!(e, expected),
            }
            return;
        }
        (Ok(_), Some(expected)) => panic!("Worker::new accepted {config:?}, expected {expected}"),
        (Err(e), None) => panic!("Worker::new refused {config:?}: {e}"),
    };
    let mut h = Harness {
        dialect: config.dialect,
        service: config.service.clone(),
        worker,
        clock,
        latest: clock,
        in_progress: None,
        seen: Vec::new(),
        awaiting_ready: false,
        stopped: false,
    };
    // READY goes out at start.
    let sent = h.settle();
    assert_eq!(sent, vec![PeerCommand::Ready { service: h.service.clone() }], "what a new worker sends");
    for op in &input.ops {
        h.run(op);
    }
});
