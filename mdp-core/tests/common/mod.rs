//! A virtual-time harness around [`Broker`] for the integration tests.
//!
//! Every input goes through the public API, and every call returns what the
//! broker produced because of it (the drain rule: all transmits, all events).
#![allow(dead_code)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use mdp_core::{Broker, BrokerCommand, BrokerConfig, BrokerEvent, Dialect, Multipart, PeerCommand, PeerId, Transmit};

/// Milliseconds.
pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A peer identity from text.
pub fn id(s: &str) -> PeerId {
    PeerId(Bytes::copy_from_slice(s.as_bytes()))
}

/// Frames from byte strings.
pub fn frames(parts: &[&[u8]]) -> Multipart {
    parts.iter().map(|p| Bytes::copy_from_slice(p)).collect()
}

/// Frames from text.
pub fn body(parts: &[&str]) -> Multipart {
    parts.iter().map(|p| Bytes::copy_from_slice(p.as_bytes())).collect()
}

/// What the broker produced after one input.
#[derive(Debug, Default, Clone)]
pub struct Out {
    pub transmits: Vec<Transmit>,
    pub events: Vec<BrokerEvent>,
}

impl Out {
    pub fn is_empty(&self) -> bool {
        self.transmits.is_empty() && self.events.is_empty()
    }

    /// Raw frames sent to `peer`, in order.
    pub fn to(&self, peer: &PeerId) -> Vec<Multipart> {
        self.transmits.iter().filter(|t| &t.to == peer).map(|t| t.frames.clone()).collect()
    }

    /// Commands sent to `peer`, decoded, in order.
    pub fn cmds_to(&self, peer: &PeerId) -> Vec<(Dialect, BrokerCommand)> {
        self.to(peer).into_iter().map(|f| BrokerCommand::decode(f).expect("broker sent undecodable frames")).collect()
    }

    /// Commands sent to `peer`, decoded, without the dialect.
    pub fn commands_to(&self, peer: &PeerId) -> Vec<BrokerCommand> {
        self.cmds_to(peer).into_iter().map(|(_, c)| c).collect()
    }

    /// (worker, client address, body) of every REQUEST sent, in order.
    pub fn requests(&self) -> Vec<(PeerId, Bytes, Multipart)> {
        self.transmits
            .iter()
            .filter_map(|t| match BrokerCommand::decode(t.frames.clone()) {
                Ok((_, BrokerCommand::Request { client, body })) => Some((t.to.clone(), client, body)),
                _ => None,
            })
            .collect()
    }

    /// The peers that were sent a HEARTBEAT, in order.
    pub fn heartbeats(&self) -> Vec<PeerId> {
        self.transmits
            .iter()
            .filter(|t| matches!(BrokerCommand::decode(t.frames.clone()), Ok((_, BrokerCommand::Heartbeat))))
            .map(|t| t.to.clone())
            .collect()
    }

    /// (client, worker) of every RequestDispatched event, in order.
    pub fn dispatched(&self) -> Vec<(PeerId, PeerId)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                BrokerEvent::RequestDispatched { client, worker, .. } => Some((client.clone(), worker.clone())),
                _ => None,
            })
            .collect()
    }

    /// Appends another output to this one.
    pub fn extend(&mut self, other: Out) {
        self.transmits.extend(other.transmits);
        self.events.extend(other.events);
    }
}

/// A broker under a virtual clock that starts at `t0`.
pub struct Harness {
    pub broker: Broker,
    pub t0: Instant,
    pub now: Instant,
}

impl Default for Harness {
    fn default() -> Self {
        Self::new(BrokerConfig::default())
    }
}

impl Harness {
    pub fn new(config: BrokerConfig) -> Self {
        let t0 = Instant::now();
        Harness { broker: Broker::new(config, t0).expect("a valid broker configuration"), t0, now: t0 }
    }

    /// `t0 + d`.
    pub fn at(&self, d: Duration) -> Instant {
        self.t0 + d
    }

    /// Moves the clock to `t0 + d` (without firing timers).
    pub fn set_time(&mut self, d: Duration) {
        let t = self.t0 + d;
        assert!(t >= self.now, "the harness clock never goes back");
        self.now = t;
    }

    /// Every transmit and event the broker has pending.
    pub fn drain(&mut self) -> Out {
        let mut out = Out::default();
        while let Some(t) = self.broker.poll_transmit() {
            out.transmits.push(t);
        }
        while let Some(e) = self.broker.poll_event() {
            out.events.push(e);
        }
        out
    }

    /// Delivers raw frames from `from` at the current time.
    pub fn send(&mut self, from: &PeerId, frames: Multipart) -> Out {
        self.broker.handle_message(self.now, from.clone(), frames);
        self.drain()
    }

    /// Delivers raw frames from `from`, authenticated as `name`.
    pub fn send_as(&mut self, from: &PeerId, name: &str, frames: Multipart) -> Out {
        let name = Bytes::copy_from_slice(name.as_bytes());
        self.broker.handle_authenticated(self.now, from.clone(), name, frames);
        self.drain()
    }

    /// Delivers a command from `from`, encoded in `dialect`.
    pub fn cmd(&mut self, from: &PeerId, dialect: Dialect, cmd: PeerCommand) -> Out {
        let frames = cmd.encode(dialect).expect("test built an unencodable command");
        self.send(from, frames)
    }

    pub fn ready(&mut self, worker: &PeerId, dialect: Dialect, service: &str) -> Out {
        self.cmd(worker, dialect, PeerCommand::Ready { service: Bytes::copy_from_slice(service.as_bytes()) })
    }

    pub fn request(&mut self, client: &PeerId, dialect: Dialect, service: &str, parts: &[&str]) -> Out {
        let service = Bytes::copy_from_slice(service.as_bytes());
        self.cmd(client, dialect, PeerCommand::Request { service, body: body(parts) })
    }

    pub fn partial(&mut self, worker: &PeerId, dialect: Dialect, client: &PeerId, parts: &[&str]) -> Out {
        self.cmd(worker, dialect, PeerCommand::Partial { client: client.0.clone(), body: body(parts) })
    }

    /// FINAL (0.2) or REPLY (0.1).
    pub fn reply(&mut self, worker: &PeerId, dialect: Dialect, client: &PeerId, parts: &[&str]) -> Out {
        self.cmd(worker, dialect, PeerCommand::Final { client: client.0.clone(), body: body(parts) })
    }

    pub fn heartbeat(&mut self, worker: &PeerId, dialect: Dialect) -> Out {
        self.cmd(worker, dialect, PeerCommand::Heartbeat)
    }

    pub fn disconnect(&mut self, worker: &PeerId, dialect: Dialect) -> Out {
        self.cmd(worker, dialect, PeerCommand::Disconnect)
    }

    /// Moves the clock to `t0 + d` and calls `handle_timeout` once.
    pub fn tick(&mut self, d: Duration) -> Out {
        self.set_time(d);
        self.broker.handle_timeout(self.now);
        self.drain()
    }

    /// Fires every deadline up to `t0 + d` at its own time, as a real loop
    /// would, and returns everything produced. Bounded, so a livelock fails.
    pub fn run_until(&mut self, d: Duration) -> Out {
        let target = self.t0 + d;
        let mut out = Out::default();
        for _ in 0..1_000_000 {
            match self.broker.poll_timeout() {
                Some(t) if t <= target => {
                    assert!(t >= self.now, "poll_timeout went back in time");
                    self.now = t;
                    self.broker.handle_timeout(t);
                    out.extend(self.drain());
                    if self.broker.poll_timeout() == Some(t) {
                        panic!("poll_timeout still says {t:?} after handle_timeout at that time");
                    }
                }
                _ => {
                    self.now = target;
                    self.broker.handle_timeout(target);
                    out.extend(self.drain());
                    return out;
                }
            }
        }
        panic!("run_until did not reach its target: livelock?");
    }
}
