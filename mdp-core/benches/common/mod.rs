//! Scenarios shared by the `broker` (criterion) and `alloc` benches.
//!
//! A scenario is a [`Broker`] with workers registered (and, for one of them,
//! requests queued) plus pre-built input frames. Each step feeds those frames
//! through `handle_message` and drains every output, as the crate doc's loop
//! does, so what is timed is the state machine alone: no IO, no codec work
//! outside the broker, no frame building (inputs are `Vec<Bytes>` of static
//! `Bytes`, cloned per step: one `Vec` allocation and no refcounting).
//!
//! Virtual time moves 1 µs per round trip and `handle_timeout` runs whenever
//! `poll_timeout` says it is due, so timer work (worker heartbeat timers,
//! request expiry, timer-queue compaction) is paid as a real driver pays it.

#![allow(dead_code)] // each bench binary uses part of this module

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mdp_core::{Broker, BrokerConfig, Dialect, PeerCommand, PeerId, Transmit};

/// Virtual time per round trip.
pub const TICK: Duration = Duration::from_micros(1);

/// A body of `len` bytes.
pub fn body(len: usize) -> Bytes {
    Bytes::from(vec![b'x'; len])
}

/// A `'static` copy of `bytes`, so that cloning a `Bytes` of it is free
/// (no promotion of a Vec-backed buffer, no refcount).
pub fn leak(bytes: Vec<u8>) -> Bytes {
    Bytes::from_static(Box::leak(bytes.into_boxed_slice()))
}

/// A libzmq-like generated identity: a zero byte, then a 32-bit number.
pub fn identity(prefix: u8, n: u32) -> Vec<u8> {
    let mut id = vec![0, prefix];
    id.extend_from_slice(&n.to_be_bytes());
    id
}

/// Client REQUEST frames (RFC 18 dialect).
pub fn request_frames(service: &Bytes, body: Bytes) -> Vec<Bytes> {
    let cmd = PeerCommand::Request { service: service.clone(), body: vec![body] };
    cmd.encode(Dialect::V02).expect("valid request")
}

/// Worker FINAL frames (RFC 18 dialect) answering `client`.
pub fn final_frames(client: &PeerId, body: &Bytes) -> Vec<Bytes> {
    let cmd = PeerCommand::Final { client: client.0.clone(), body: vec![body.clone()] };
    cmd.encode(Dialect::V02).expect("valid final")
}

/// Worker READY frames (RFC 18 dialect).
pub fn ready_frames(service: &Bytes) -> Vec<Bytes> {
    PeerCommand::Ready { service: service.clone() }.encode(Dialect::V02).expect("valid ready")
}

/// The service name of scenario service `i`.
pub fn service_name(i: usize) -> Bytes {
    leak(format!("service-{i:04}").into_bytes())
}

/// Configuration for the benches: defaults, with room for the largest
/// scenario's queue.
pub fn config() -> BrokerConfig {
    let mut config = BrokerConfig::default();
    config.max_queue_per_service = 1 << 20;
    config
}

/// Idle-worker round trips: one client asks, the least recently used idle
/// worker of the service answers.
pub struct RoundTrips {
    pub broker: Broker,
    pub now: Instant,
    pub client: PeerId,
    /// One pre-built REQUEST per service; step `i` asks service `i % len`.
    pub requests: Vec<Vec<Bytes>>,
    /// The worker's FINAL (the same frames whichever worker answers).
    pub reply: Vec<Bytes>,
    next: usize,
}

impl RoundTrips {
    /// `workers` idle workers spread evenly over `services` services.
    pub fn new(workers: usize, services: usize) -> Self {
        let now = Instant::now();
        let mut broker = Broker::new(config(), now).expect("a valid configuration");
        let names: Vec<Bytes> = (0..services).map(service_name).collect();
        for w in 0..workers {
            let id = PeerId(leak(identity(b'w', w as u32)));
            broker.handle_message(now, id, ready_frames(&names[w % services]));
        }
        drain(&mut broker);
        let client = PeerId(leak(identity(b'c', 0)));
        let body = Bytes::from_static(b"0123456789abcdef");
        let requests = names.iter().map(|s| request_frames(s, body.clone())).collect();
        let reply = final_frames(&client, &body);
        RoundTrips { broker, now, client, requests, reply, next: 0 }
    }

    /// The inputs of the next round trip: (REQUEST frames, FINAL frames).
    /// Built outside the measured part in the alloc bench.
    pub fn inputs(&mut self) -> (Vec<Bytes>, Vec<Bytes>) {
        let request = self.requests[self.next].clone();
        self.next = (self.next + 1) % self.requests.len();
        (request, self.reply.clone())
    }

    /// One round trip with the given inputs. Returns the client's reply.
    pub fn run(&mut self, request: Vec<Bytes>, reply: Vec<Bytes>) -> Transmit {
        self.now += TICK;
        let now = self.now;
        self.broker.handle_message(now, self.client.clone(), request);
        let to_worker = self.broker.poll_transmit().expect("the request goes to an idle worker");
        drain(&mut self.broker);
        self.broker.handle_message(now, to_worker.to, reply);
        let to_client = self.broker.poll_transmit().expect("the reply goes to the client");
        drain(&mut self.broker);
        tick(&mut self.broker, now);
        to_client
    }

    /// One round trip.
    pub fn step(&mut self) -> Transmit {
        let (request, reply) = self.inputs();
        self.run(request, reply)
    }
}

/// Steady state with a long queue: every worker is busy, `queued` requests
/// wait. A step is one worker's FINAL (the client gets its reply and the
/// worker gets the next queued request) and that client's next REQUEST
/// (which is queued), so the queue length stays put.
pub struct Queued {
    pub broker: Broker,
    pub now: Instant,
    /// Per client: its identity, its REQUEST, and the FINAL answering it.
    pub clients: Vec<(PeerId, Vec<Bytes>, Vec<Bytes>)>,
    /// (worker, index of the client it serves), oldest dispatch first.
    pub busy: VecDeque<(PeerId, usize)>,
}

impl Queued {
    /// `workers` workers and `clients` clients of one service, with `queued`
    /// requests waiting (spread evenly over the clients).
    pub fn new(workers: usize, clients: usize, queued: usize) -> Self {
        let now = Instant::now();
        let mut broker = Broker::new(config(), now).expect("a valid configuration");
        let service = service_name(0);
        let body = Bytes::from_static(b"0123456789abcdef");
        let request = request_frames(&service, body.clone());
        let clients: Vec<(PeerId, Vec<Bytes>, Vec<Bytes>)> = (0..clients)
            .map(|c| {
                let id = PeerId(leak(identity(b'c', c as u32)));
                let reply = final_frames(&id, &body);
                (id, request.clone(), reply)
            })
            .collect();
        for w in 0..workers {
            let id = PeerId(leak(identity(b'w', w as u32)));
            broker.handle_message(now, id, ready_frames(&service));
        }
        let mut busy = VecDeque::new();
        for i in 0..queued + workers {
            let c = i % clients.len();
            broker.handle_message(now, clients[c].0.clone(), clients[c].1.clone());
            while let Some(t) = broker.poll_transmit() {
                busy.push_back((t.to, c));
            }
            while broker.poll_event().is_some() {}
        }
        assert_eq!(busy.len(), workers, "every worker is busy");
        assert_eq!(broker.stats().queued_requests, queued);
        Queued { broker, now, clients, busy }
    }

    /// The inputs of the next step: (worker, FINAL frames, client, REQUEST frames).
    pub fn inputs(&mut self) -> (PeerId, Vec<Bytes>, usize, Vec<Bytes>) {
        let (worker, c) = self.busy.pop_front().expect("a busy worker");
        let (_, request, reply) = &self.clients[c];
        (worker, reply.clone(), c, request.clone())
    }

    /// One step with the given inputs. Returns the client's reply.
    pub fn run(&mut self, worker: PeerId, reply: Vec<Bytes>, c: usize, request: Vec<Bytes>) -> Transmit {
        self.now += TICK;
        let now = self.now;
        self.broker.handle_message(now, worker, reply);
        let to_client = self.broker.poll_transmit().expect("the reply goes to the client");
        let to_worker = self.broker.poll_transmit().expect("the worker gets the next request");
        drain(&mut self.broker);
        self.busy.push_back((to_worker.to, client_index(&to_worker.frames)));
        self.broker.handle_message(now, self.clients[c].0.clone(), request);
        drain(&mut self.broker);
        tick(&mut self.broker, now);
        to_client
    }

    /// One step.
    pub fn step(&mut self) -> Transmit {
        let (worker, reply, c, request) = self.inputs();
        self.run(worker, reply, c, request)
    }
}

/// The client index in an RFC 18 REQUEST sent to a worker (`MDPW02`, `0x02`,
/// client, `""`, body). Identities are built by [`identity`], so the number
/// is in the address frame. Reads the frame in place: no allocation.
fn client_index(frames: &[Bytes]) -> usize {
    assert_eq!(frames[1].as_ref(), [0x02], "a worker REQUEST");
    u32::from_be_bytes(frames[2][2..6].try_into().expect("a 6-byte identity")) as usize
}

/// Drains every transmit and event, dropping them.
pub fn drain(broker: &mut Broker) {
    while broker.poll_transmit().is_some() {}
    while broker.poll_event().is_some() {}
}

/// Fires due timers, as the drive loop does before sleeping.
pub fn tick(broker: &mut Broker, now: Instant) {
    if broker.poll_timeout().is_some_and(|t| t <= now) {
        broker.handle_timeout(now);
        drain(broker);
    }
}
