//! The deterministic simulation: one or more [`Broker`]s, N [`Client`]s and
//! M worker processes on a [`Net`], under a virtual clock (after quinn's
//! `Pair` and str0m's `progress`).
//!
//! # Brokers
//!
//! A simulation has [`SimConfig::brokers`] brokers (one unless set), by
//! index from 0. Each is its own [`Broker`] with its own up or down state:
//! [`Sim::stop_broker`] takes one down for a while, [`Sim::restart_broker`]
//! replaces it at once, [`Sim::kill_broker`] stops it for good. What is in
//! flight to or from a broker that goes down is lost; the others carry on.
//!
//! Every client knows every broker (`ClientConfig::with_brokers`): its lane
//! `l` is a connection to broker [`Client::broker_of`]`(l)`, and
//! [`SimConfig::client_lanes`] counts its lanes *per broker*. Every worker
//! process serves every broker, as `mdp_zmq_adapter::Workers` does: one
//! connection and one [`Worker`] per broker, each registering,
//! heartbeating and backing off on its own, and one handler slot per
//! broker, so a worker process answers one request from each broker at
//! once (a broker never sees it idle while it works for that broker). Raw
//! clients talk to broker 0 only.
//!
//! With one broker this is the single-broker simulation it always was: the
//! same connections, the same order of events, the same run for a seed.
//!
//! # Clients and lanes
//!
//! A client has [`SimConfig::client_lanes`] lanes per broker unless added
//! with [`Sim::add_client_with_lanes`]: one connection ([`PeerId`]) per
//! lane, all of them on the client's one [`Node::Client`], so the client's
//! link, partitions and [`Net::drop_next`] hit every lane (one process, one
//! host), while each lane keeps its own order and messages on different
//! lanes overtake each other. Each [`ClientTransmit`] goes to its lane's
//! connection; a [`Reconnect`](PeerTransmit::Reconnect) closes only that
//! lane's connection and opens a new one to the same broker (what was in
//! flight to the old one is dropped), and a message from a broker is handed
//! to the client with the lane of the connection it came on.
//!
//! A *raw client* ([`Sim::add_raw_client`]) is a peer without mdp-rs's
//! client: one connection that sends every request of its workload at once,
//! many for one service, and tells the answers apart by their bodies, as a
//! third-party client that pipelines on one DEALER socket does. It has no
//! timeouts and no retries, so scenarios with raw clients lose no message on
//! their links and do not restart broker 0.
//!
//! # Stepping
//!
//! [`Sim::step`] does exactly one thing: it finds the earliest thing due —
//! a message arriving, a state machine's `poll_timeout`, a simulated worker
//! application sending its next part, a client's workload issuing its next
//! request, a broker coming back up — jumps the clock to it if it lies
//! ahead, does it, and drains every output of the state machine it touched
//! (the drain rule), feeding transmits to the network and events to the
//! [`Checker`]. Then it checks the invariants. Ties go to messages first,
//! then the brokers (by index), clients, workers (by worker, then broker),
//! worker applications (likewise), workloads, raw clients' sends and the
//! workloads' cancels, so a run is a pure function of its seed.
//!
//! [`Sim::run_until`] steps until a condition holds and fails with a
//! [`SimError`] instead of hanging when it does not within a step budget;
//! [`Sim::step`] itself panics on a livelock (too many steps without the
//! clock moving).
//!
//! # The simulated applications
//!
//! A worker's application (each of its handler slots, one per broker)
//! answers each request `[tag]` after
//! [`SimConfig::service_time`]: in the 0.2 dialects it first sends
//! [`SimConfig::partials`] PARTIALs `tag/p0`, `tag/p1`, …, spread over the
//! service time, then the FINAL `tag/final`; in MDP/0.1 only the REPLY
//! `tag/final` (see [`part_body`]). A client's
//! workload is a list of services; it issues one request per entry, each
//! with a unique tag, keeping at most [`SimConfig::client_window`]
//! outstanding, whatever their services: the client itself keeps what its
//! lanes cannot carry yet waiting, in order (a majortomo lane carries one
//! request at a time, so such a client's requests for another service
//! wait there, not in the workload). It issues each as soon as its window
//! allows, unless [`SimConfig::client_interval`] paces it: then one every
//! interval on average, at random times, so that the load on the brokers
//! is what the applications ask for rather than what the fleet can carry.
//!
//! # The user's applications
//!
//! [`Sim::add_worker_with`] gives a worker process the user's
//! [`Handler`] and [`ServiceTime`] instead of the built-in application;
//! [`Sim::submit_requests`] and [`Sim::request_with`] give requests bodies
//! of the user's; [`Sim::add_client_with_config`] a client of the user's
//! own `ClientConfig`; [`Sim::set_check`] checks every answer against its
//! request. The kit's tag and markers wrap the application's frames on the
//! wire (see [`app`](crate::app)), so the checker matches answers exactly
//! whatever the bodies are.
//!
//! # Faults at chosen times
//!
//! [`Sim::schedule`] applies a [`Fault`] at a virtual time,
//! [`Sim::schedule_plan`] a whole [`FaultPlan`]; [`Sim::apply`] applies
//! one at once.
//!
//! # Timeline
//!
//! With [`SimConfig::timeline`] the simulation keeps a line for each of
//! its last steps ([`Sim::timeline`]): the time, the step, and what it did
//! (a message decoded, or the timer, application or workload it ran).
//!
//! # Cancelling
//!
//! [`Sim::cancel`] cancels a request as an application would
//! ([`Client::cancel`]). With [`SimConfig::cancel_fraction`] the workloads
//! cancel that fraction of their requests, each at a seeded random time
//! within [`SimConfig::cancel_delay`] after it was issued (if it is still
//! outstanding then). The [`Checker`] accounts for every cancelled request
//! and holds the client to its promises about it: its lane is replaced if it
//! was on the wire, and no later event names it.
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use mdp_core::Dialect;
//! use mdp_testkit::{Sim, SimConfig};
//!
//! let mut sim = Sim::new(SimConfig::new(1));
//! let echo = Bytes::from_static(b"echo");
//! sim.add_worker(echo.clone(), Dialect::V02);
//! let c = sim.add_client(Dialect::V01);
//! sim.submit(c, std::iter::repeat(echo).take(10));
//! sim.quiesce(10_000).unwrap();
//! assert_eq!(sim.counts().answered, 10);
//! sim.finish();
//! ```
//!
//! Lanes and cancelling: a client with two lanes sends two requests for one
//! service side by side, then gives up on the first.
//!
//! ```
//! use bytes::Bytes;
//! use mdp_core::{Dialect, Lane};
//! use mdp_testkit::{Sim, SimConfig};
//!
//! let mut sim = Sim::new(SimConfig::new(2));
//! let echo = Bytes::from_static(b"echo");
//! sim.add_worker(echo.clone(), Dialect::V01);
//! sim.add_worker(echo.clone(), Dialect::V02);
//! let c = sim.add_client_with_lanes(Dialect::V02, 2);
//! let first = sim.request(c, echo.clone()).unwrap();
//! let second = sim.request(c, echo).unwrap();
//! assert_eq!(sim.client(c).lane_of(second), Some(Lane(1)));
//! assert!(sim.cancel(c, first));
//! sim.quiesce(10_000).unwrap();
//! let counts = sim.finish();
//! assert_eq!((counts.answered, counts.cancelled), (1, 1));
//! assert_eq!(sim.stats().client_reconnects, 1, "lane 0 replaced");
//! ```
//!
//! Several brokers: a client and a worker process know both; broker 1
//! stops for good, and the request that went to it is answered through
//! broker 0 after one timeout.
//!
//! ```
//! use std::time::Duration;
//! use bytes::Bytes;
//! use mdp_core::{Dialect, Lane};
//! use mdp_testkit::{Sim, SimConfig};
//!
//! let mut config = SimConfig::new(3);
//! config.brokers = 2;
//! let mut sim = Sim::new(config);
//! let echo = Bytes::from_static(b"echo");
//! sim.add_worker(echo.clone(), Dialect::V02);
//! let c = sim.add_client(Dialect::V02);
//! assert_eq!(sim.client_lanes(c), 2, "one lane to each broker");
//! sim.kill_broker(1);
//! sim.request(c, echo.clone()).unwrap();
//! let second = sim.request(c, echo).unwrap();
//! assert_eq!(sim.client(c).lane_of(second), Some(Lane(1)));
//! assert_eq!(sim.client(c).broker_of(Lane(1)), 1);
//! sim.quiesce(100_000).unwrap();
//! assert!(sim.elapsed() >= Duration::from_millis(2500), "answered after one timeout");
//! let counts = sim.finish();
//! assert_eq!((counts.answered, counts.failed, counts.moved), (2, 0, 1));
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mdp_core::{
    Backoff, Broker, BrokerConfig, BrokerEvent, Client, ClientConfig, ClientEvent, ClientTransmit, ClientUsageError,
    Dialect, Lane, Multipart, PeerCommand, PeerId, PeerTransmit, ReplyToken, RequestId, Worker, WorkerConfig,
    WorkerDiscardReason, WorkerEvent,
};

use crate::app::{Answer, Call, Check, Handler, MakeHandler, ServiceTime};
use crate::fault::{Fault, FaultPlan};
use crate::model::{final_body, part_body, pieces, Checker, ModelCounts, Piece};
use crate::net::{Dir, Faults, Link, Net, NetStats, Node};
use crate::rng::Rng;

/// How a simulation is set up.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Seeds every random choice (faults, backoff jitter).
    pub seed: u64,
    /// How many brokers (at least one). Default: 1.
    pub brokers: usize,
    /// Every broker's configuration (also for brokers started later).
    pub broker: BrokerConfig,
    /// Each client's timeout per send of a request.
    pub client_timeout: Duration,
    /// Each client's number of tries per request.
    pub client_tries: u32,
    /// How long each client avoids a broker that failed (the seed is
    /// replaced per client). Only used with several brokers. Default:
    /// mdp-core's.
    pub client_broker_backoff: Backoff,
    /// Most requests a client's workload keeps outstanding.
    pub client_window: usize,
    /// How often a client's workload issues a request: each request at a
    /// random time within `0..=2 × client_interval` after the one before
    /// (one per interval on average), as an application whose requests
    /// come from outside, while the window allows. Zero (the default): as
    /// soon as the window allows, so the workload keeps its window full.
    pub client_interval: Duration,
    /// The workers' heartbeat interval.
    pub worker_heartbeat: Duration,
    /// The workers' liveness (intervals of silence before they reconnect).
    pub worker_liveness: u32,
    /// The workers' reconnect backoff (the seed is replaced per worker).
    pub backoff: Backoff,
    /// Every node's link unless set otherwise with [`Net::set_link`].
    pub link: Link,
    /// The network's faults.
    pub faults: Faults,
    /// Report sends to closed connections to a broker with
    /// `handle_unreachable`, as the ZeroMQ adapter does with
    /// `ZMQ_ROUTER_MANDATORY`. Off by default, so that dead workers are
    /// found by their silence alone.
    pub router_mandatory: bool,
    /// How long a worker application takes to answer a request.
    pub service_time: Duration,
    /// PARTIALs per answer from a 0.2-dialect worker.
    pub partials: usize,
    /// Keep every broker event, for [`Sim::broker_log`].
    pub record_broker_events: bool,
    /// Lanes (connections) *to each broker* of each client added with
    /// [`Sim::add_client`]: it has `client_lanes × brokers` in all.
    /// Default: 1.
    pub client_lanes: usize,
    /// The fraction of the workloads' requests that their applications
    /// cancel (see [`cancel_delay`](Self::cancel_delay)). Default: none.
    pub cancel_fraction: f64,
    /// A request the workload cancels is cancelled at a random time in
    /// `0..=cancel_delay` after it was issued, if it is still outstanding
    /// then. Default: 100 ms.
    pub cancel_delay: Duration,
    /// Steps without the clock moving before [`Sim::step`] reports a livelock.
    pub livelock_steps: u64,
    /// Keep a line for each of the last `timeline` steps ([`Sim::timeline`]).
    /// Default: 0, none (formatting them costs time).
    pub timeline: usize,
}

impl SimConfig {
    /// Defaults: one broker, mdp-core's default timings, 1 ms links without
    /// faults, 2 ms service time with 2 PARTIALs, 16 requests outstanding
    /// per client.
    pub fn new(seed: u64) -> Self {
        SimConfig {
            seed,
            brokers: 1,
            broker: BrokerConfig::default(),
            client_timeout: Duration::from_millis(2500),
            client_tries: 3,
            client_broker_backoff: ClientConfig::new(Dialect::V02).broker_backoff,
            client_window: 16,
            client_interval: Duration::ZERO,
            worker_heartbeat: Duration::from_millis(2500),
            worker_liveness: 3,
            backoff: Backoff::default(),
            link: Link::default(),
            faults: Faults::default(),
            router_mandatory: false,
            service_time: Duration::from_millis(2),
            partials: 2,
            record_broker_events: false,
            client_lanes: 1,
            cancel_fraction: 0.0,
            cancel_delay: Duration::from_millis(100),
            livelock_steps: 100_000,
            timeline: 0,
        }
    }
}

/// Why a run stopped before its condition held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimError {
    /// The step budget ran out: a livelock, or a condition that never holds.
    OutOfSteps {
        /// The budget.
        steps: u64,
        /// Virtual time since the start when it ran out.
        at: Duration,
        /// What was still going on.
        state: String,
    },
    /// Nothing at all was left to do, and the condition did not hold.
    Idle {
        /// Virtual time since the start.
        at: Duration,
    },
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::OutOfSteps { steps, at, state } => {
                write!(f, "condition not met within {steps} steps (at t+{at:?}; {state})")
            }
            SimError::Idle { at } => write!(f, "nothing left to do at t+{at:?} and the condition does not hold"),
        }
    }
}

impl std::error::Error for SimError {}

/// Running totals of the simulation itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Steps taken.
    pub steps: u64,
    /// `RequestDispatched` events.
    pub dispatched: u64,
    /// `RequestRequeued` events: requests re-dispatched after their worker was lost.
    pub requeued: u64,
    /// `RequestExpired` events.
    pub expired: u64,
    /// `RequestDropped` events.
    pub dropped: u64,
    /// `WorkerReady` events.
    pub workers_ready: u64,
    /// `WorkerGone` events.
    pub workers_gone: u64,
    /// `PeerMisbehaved` events (workers talking to a broker that forgot them, mostly).
    pub misbehaved: u64,
    /// Client reconnects.
    pub client_reconnects: u64,
    /// Worker reconnects.
    pub worker_reconnects: u64,
    /// Worker crashes.
    pub worker_crashes: u64,
    /// Brokers started again after going down (any of them).
    pub broker_restarts: u64,
    /// Calls of `handle_unreachable`.
    pub unreachable: u64,
    /// Worker `Discarded` events (other than a REQUEST while busy, which is a violation).
    pub worker_discards: u64,
    /// Requests cancelled while outstanding (by [`Sim::cancel`] or the workloads).
    pub cancelled: u64,
    /// Of those, requests that were on the wire (so their lane was replaced).
    pub cancelled_on_wire: u64,
    /// Cancels that came too late: the request was over already.
    pub cancels_late: u64,
}

/// A simulated client: the state machine, its connections and its workload.
#[derive(Debug)]
struct ClientNode {
    client: Client,
    /// The current connection of each lane.
    peers: Vec<PeerId>,
    /// (service, body) of each request still to issue; no body for the
    /// built-in workload's requests, whose body is the kit's tag alone.
    workload: VecDeque<(Bytes, Option<Multipart>)>,
    /// With a [`Check`]: each outstanding request's tag, what the
    /// application asked and the parts it got so far.
    calls: BTreeMap<RequestId, (Bytes, Call, Vec<Multipart>)>,
    /// The service of the latest request.
    service: Option<Bytes>,
    issued: u64,
    /// Most requests the workload keeps outstanding.
    window: usize,
    /// The workload issues its next request no earlier than this.
    next_issue: Instant,
}

/// A simulated raw client: one connection, requests pipelined on it.
#[derive(Debug)]
struct RawNode {
    peer: PeerId,
    dialect: Dialect,
    workload: VecDeque<Bytes>,
    window: usize,
    issued: u64,
    outstanding: usize,
    /// The tags of the requests answered, in the order the answers came.
    answers: Vec<Bytes>,
}

/// The request a worker process's handler slot is answering.
#[derive(Debug)]
struct Job {
    token: ReplyToken,
    /// The bodies still to send, each a marker and the application's
    /// frames (see [`app`](crate::app)); the last one is the FINAL.
    pieces: VecDeque<Multipart>,
    gap: Duration,
    next_at: Instant,
}

/// A simulated worker process: one slot per broker.
#[derive(Debug)]
struct WorkerNode {
    /// By broker index.
    slots: Vec<Slot>,
    config: WorkerConfig,
    incarnation: u64,
    /// The user's application, if any; else the built-in one that answers
    /// with [`SimConfig::partials`] empty parts after
    /// [`SimConfig::service_time`].
    app: Option<App>,
}

/// A user's application in a worker process.
struct App {
    make: MakeHandler,
    /// `None` while the process is crashed.
    handler: Option<Box<dyn Handler>>,
    time: ServiceTime,
}

impl fmt::Debug for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("App").field("running", &self.handler.is_some()).field("time", &self.time).finish()
    }
}

/// The user's check, in a box that `Sim` can print.
struct UserCheck(Check);

impl fmt::Debug for UserCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UserCheck(..)")
    }
}

/// What a worker process has for one broker: a connection, a state machine
/// (`None` while the process is crashed) and a handler slot.
#[derive(Debug)]
struct Slot {
    worker: Option<Worker>,
    peer: PeerId,
    job: Option<Job>,
}

impl WorkerNode {
    fn is_running(&self) -> bool {
        self.slots.iter().any(|s| s.worker.is_some())
    }
}

/// A simulated broker.
#[derive(Debug)]
struct BrokerNode {
    broker: Broker,
    state: BrokerState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BrokerState {
    Up,
    /// Down; a new broker starts then.
    DownUntil(Instant),
    /// Stopped for good.
    Dead,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    Packet,
    BrokerUp(usize),
    Broker(usize),
    Client(usize),
    /// Worker process, broker.
    Worker(usize, usize),
    /// Worker process, broker: the handler slot for that broker.
    App(usize, usize),
    Issue(usize),
    RawIssue(usize),
    Cancel,
    /// A scheduled [`Fault`].
    Fault,
}

/// The simulation. See the [module docs](self).
#[derive(Debug)]
pub struct Sim {
    config: SimConfig,
    t0: Instant,
    now: Instant,
    /// By index.
    brokers: Vec<BrokerNode>,
    clients: Vec<ClientNode>,
    raws: Vec<RawNode>,
    workers: Vec<WorkerNode>,
    /// Draws which workload requests are cancelled, and when.
    cancel_rng: Rng,
    /// Draws the workloads' intervals ([`SimConfig::client_interval`]).
    interval_rng: Rng,
    /// Cancels the workloads will make: (when, order) to (client, request).
    cancels: BTreeMap<(Instant, u64), (usize, RequestId)>,
    next_cancel: u64,
    /// Scheduled faults: (when, order) to fault.
    faults: BTreeMap<(Instant, u64), Fault>,
    next_fault: u64,
    /// Draws the user applications' service times.
    service_rng: Rng,
    check: Option<UserCheck>,
    /// The last [`SimConfig::timeline`] steps, described.
    timeline: VecDeque<String>,
    /// The network; change its faults, links and partitions at any time.
    pub net: Net,
    /// The reference model and invariants.
    pub checker: Checker,
    stats: SimStats,
    broker_log: Vec<(Duration, usize, BrokerEvent)>,
    last_moved: (Instant, u64),
}

impl Sim {
    /// A simulation with [`SimConfig::brokers`] brokers (at least one) and
    /// no peers, at virtual time zero.
    pub fn new(mut config: SimConfig) -> Self {
        config.brokers = config.brokers.max(1);
        let t0 = Instant::now();
        let net = Net::new(config.seed, config.link, config.faults.clone(), config.brokers);
        let brokers = (0..config.brokers)
            .map(|_| BrokerNode {
                broker: Broker::new(config.broker.clone(), t0).expect("a valid broker configuration"),
                state: BrokerState::Up,
            })
            .collect();
        Sim {
            brokers,
            clients: Vec::new(),
            raws: Vec::new(),
            workers: Vec::new(),
            cancel_rng: Rng::new(config.seed ^ 0xCA9C_E15E_ED00_0000),
            interval_rng: Rng::new(config.seed ^ 0x1E7E_0A15_0000_0000),
            cancels: BTreeMap::new(),
            next_cancel: 0,
            faults: BTreeMap::new(),
            next_fault: 0,
            service_rng: Rng::new(config.seed ^ 0x5E4F_1CE0_0000_0000),
            check: None,
            timeline: VecDeque::new(),
            net,
            checker: Checker::new(t0, config.partials, config.brokers),
            stats: SimStats::default(),
            broker_log: Vec::new(),
            last_moved: (t0, 0),
            config,
            t0,
            now: t0,
        }
    }

    // ---- getters ----

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    /// The configuration.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// How many brokers the simulation has.
    pub fn brokers(&self) -> usize {
        self.brokers.len()
    }

    /// Broker `b` (while it is down or stopped for good, the one that went
    /// down).
    ///
    /// # Panics
    ///
    /// If there is no broker `b`.
    pub fn broker(&self, b: usize) -> &Broker {
        &self.brokers[b].broker
    }

    /// Whether broker `b` is up.
    pub fn broker_is_up(&self, b: usize) -> bool {
        self.brokers[b].state == BrokerState::Up
    }

    /// Whether broker `b` was stopped for good ([`Sim::kill_broker`]).
    pub fn broker_is_dead(&self, b: usize) -> bool {
        self.brokers[b].state == BrokerState::Dead
    }

    /// Client `i`'s state machine.
    pub fn client(&self, i: usize) -> &Client {
        &self.clients[i].client
    }

    /// The current connection of client `i`'s lane `lane`.
    ///
    /// # Panics
    ///
    /// If the client has no such lane.
    pub fn client_peer(&self, i: usize, lane: Lane) -> &PeerId {
        &self.clients[i].peers[lane.0]
    }

    /// The current connections of client `i`, one per lane, by lane.
    pub fn client_peers(&self, i: usize) -> &[PeerId] {
        &self.clients[i].peers
    }

    /// Client `i`'s number of lanes, to every broker.
    pub fn client_lanes(&self, i: usize) -> usize {
        self.clients[i].peers.len()
    }

    /// The client and lane whose current connection is `peer`.
    pub fn client_of(&self, peer: &PeerId) -> Option<(usize, Lane)> {
        let Some(Node::Client(i)) = self.net.node_of(peer) else { return None };
        let lane = self.clients.get(i)?.peers.iter().position(|p| p == peer)?;
        Some((i, Lane(lane)))
    }

    /// The service of client `i`'s latest request.
    pub fn last_service(&self, i: usize) -> Option<&Bytes> {
        self.clients[i].service.as_ref()
    }

    /// Requests left in client `i`'s workload, not issued yet.
    pub fn workload_left(&self, i: usize) -> usize {
        self.clients[i].workload.len()
    }

    /// Worker process `j`'s state machine for broker 0, `None` while
    /// crashed. (With one broker, its only one.)
    pub fn worker(&self, j: usize) -> Option<&Worker> {
        self.worker_for(j, 0)
    }

    /// Worker process `j`'s state machine for broker `b`, `None` while
    /// crashed.
    pub fn worker_for(&self, j: usize, b: usize) -> Option<&Worker> {
        self.workers[j].slots[b].worker.as_ref()
    }

    /// Worker process `j`'s current connection to broker 0.
    pub fn worker_peer(&self, j: usize) -> &PeerId {
        self.worker_peer_for(j, 0)
    }

    /// Worker process `j`'s current connection to broker `b`.
    pub fn worker_peer_for(&self, j: usize, b: usize) -> &PeerId {
        &self.workers[j].slots[b].peer
    }

    /// Number of clients (raw clients not included).
    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    /// Number of raw clients.
    pub fn raw_clients(&self) -> usize {
        self.raws.len()
    }

    /// Raw client `k`'s connection.
    pub fn raw_peer(&self, k: usize) -> &PeerId {
        &self.raws[k].peer
    }

    /// Requests raw client `k` sent and has no whole answer to yet.
    pub fn raw_outstanding(&self, k: usize) -> usize {
        self.raws[k].outstanding
    }

    /// The tags (bodies) of raw client `k`'s requests answered so far, in
    /// the order their answers arrived.
    pub fn raw_answers(&self, k: usize) -> &[Bytes] {
        &self.raws[k].answers
    }

    /// Number of worker processes, crashed ones included.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Indices of the worker processes that are running.
    pub fn live_workers(&self) -> Vec<usize> {
        (0..self.workers.len()).filter(|&j| self.workers[j].is_running()).collect()
    }

    /// What the model counted: issued, answered, failed, …
    pub fn counts(&self) -> ModelCounts {
        self.checker.counts()
    }

    /// The simulation's own totals.
    pub fn stats(&self) -> SimStats {
        self.stats
    }

    /// The network's totals.
    pub fn net_stats(&self) -> NetStats {
        self.net.stats()
    }

    /// Every broker event so far, with its time since the start and the
    /// index of the broker that emitted it (only with
    /// [`SimConfig::record_broker_events`]).
    pub fn broker_log(&self) -> &[(Duration, usize, BrokerEvent)] {
        &self.broker_log
    }

    /// Whether every workload is done and no request is outstanding, raw
    /// clients' included.
    pub fn is_quiet(&self) -> bool {
        self.clients.iter().all(|c| c.workload.is_empty() && c.client.outstanding() == 0)
            && self.raws.iter().all(|r| r.workload.is_empty() && r.outstanding == 0)
    }

    // ---- setting up ----

    /// Adds a client speaking `dialect` with [`SimConfig::client_lanes`]
    /// lanes to each broker; returns its index.
    pub fn add_client(&mut self, dialect: Dialect) -> usize {
        self.add_client_with_lanes(dialect, self.config.client_lanes)
    }

    /// Adds a client speaking `dialect` that knows every broker, with
    /// `lanes` lanes (at least 1) to each, each its own connection; returns
    /// its index.
    pub fn add_client_with_lanes(&mut self, dialect: Dialect, lanes: usize) -> usize {
        let mut config = ClientConfig::new(dialect).with_lanes(lanes.max(1));
        config.timeout = self.config.client_timeout;
        config.tries = self.config.client_tries;
        config.max_outstanding = self.config.client_window.max(1);
        config.broker_backoff = self.config.client_broker_backoff.clone();
        self.add_client_with_config(config)
    }

    /// Adds a client with the user's own `config` (dialect, lanes per
    /// broker, timeout, tries, …) that knows every broker; returns its
    /// index. The simulation sets `brokers` to its own count and seeds the
    /// broker backoff's jitter per client. Its workload keeps at most
    /// [`SimConfig::client_window`] requests outstanding.
    ///
    /// # Panics
    ///
    /// If mdp-core refuses the configuration.
    pub fn add_client_with_config(&mut self, mut config: ClientConfig) -> usize {
        let i = self.clients.len();
        let dialect = config.dialect;
        config.brokers = self.brokers.len();
        // Each client its own jitter, as `Backoff` asks of a fleet.
        config.broker_backoff.seed = self.config.seed ^ 0xB0FF_0000_0000_0000 ^ i as u64;
        let client = Client::new(config, self.now).unwrap_or_else(|e| panic!("client {i}'s configuration: {e}"));
        let total = client.lane_count();
        let checker_index = self.checker.add_client(dialect, total, self.brokers.len());
        debug_assert_eq!(checker_index, i);
        let peers = (0..total).map(|l| self.net.connect(Node::Client(i), client.broker_of(Lane(l)))).collect();
        // The workload never asks more of the client than its own limit.
        let window = self.config.client_window.min(client.config().max_outstanding).max(1);
        let next_issue = self.now + self.next_interval();
        self.clients.push(ClientNode {
            client,
            peers,
            workload: VecDeque::new(),
            calls: BTreeMap::new(),
            service: None,
            issued: 0,
            window,
            next_issue,
        });
        i
    }

    /// Adds a raw client speaking `dialect` (see the [module docs](self));
    /// returns its index. It sends its workload ([`Sim::submit_raw`]) at
    /// once, up to [`SimConfig::client_window`] requests outstanding, on its
    /// one connection, to broker 0.
    pub fn add_raw_client(&mut self, dialect: Dialect) -> usize {
        let k = self.checker.add_raw(dialect);
        let peer = self.net.connect(Node::Raw(k), 0);
        let window = self.config.client_window.max(1);
        self.raws.push(RawNode {
            peer,
            dialect,
            workload: VecDeque::new(),
            window,
            issued: 0,
            outstanding: 0,
            answers: Vec::new(),
        });
        k
    }

    /// Appends requests for `services` to raw client `k`'s workload.
    pub fn submit_raw(&mut self, k: usize, services: impl IntoIterator<Item = Bytes>) {
        self.raws[k].workload.extend(services);
    }

    /// Client `i`'s workload keeps at most `window` requests outstanding
    /// (at most [`SimConfig::client_window`]).
    pub fn set_window(&mut self, i: usize, window: usize) {
        self.clients[i].window = window.clamp(1, self.config.client_window.max(1));
    }

    /// Adds and starts a worker process of `service` speaking `dialect`,
    /// serving every broker; returns its index.
    pub fn add_worker(&mut self, service: Bytes, dialect: Dialect) -> usize {
        self.add_worker_process(service, dialect, None)
    }

    /// Adds and starts a worker process of `service` speaking `dialect`,
    /// serving every broker, whose application is the user's: `make` makes
    /// its [`Handler`] each time the process starts, and each request takes
    /// it a time drawn from `time`. Returns its index.
    ///
    /// From now on the checker accepts any number of PARTIALs per answer
    /// ([`Checker::any_parts`]).
    pub fn add_worker_with<H: Handler + 'static>(
        &mut self,
        service: Bytes,
        dialect: Dialect,
        make: impl Fn() -> H + 'static,
        time: ServiceTime,
    ) -> usize {
        let make: MakeHandler = std::rc::Rc::new(move || Box::new(make()) as Box<dyn Handler>);
        self.add_worker_made(service, dialect, make, time)
    }

    /// [`add_worker_with`](Self::add_worker_with) for a maker already
    /// shared (a [`Scenario`](crate::Scenario)'s, one per run).
    pub(crate) fn add_worker_made(
        &mut self,
        service: Bytes,
        dialect: Dialect,
        make: MakeHandler,
        time: ServiceTime,
    ) -> usize {
        self.checker.any_parts();
        self.add_worker_process(service, dialect, Some(App { make, handler: None, time }))
    }

    fn add_worker_process(&mut self, service: Bytes, dialect: Dialect, app: Option<App>) -> usize {
        let mut config = WorkerConfig::new(service, dialect);
        config.heartbeat_interval = self.config.worker_heartbeat;
        config.liveness = self.config.worker_liveness;
        config.backoff = self.config.backoff.clone();
        let j = self.workers.len();
        let slots = (0..self.brokers.len())
            .map(|b| Slot { worker: None, peer: self.net.connect(Node::Worker(j), b), job: None })
            .collect();
        self.workers.push(WorkerNode { slots, config, incarnation: 0, app });
        self.start_worker(j);
        j
    }

    /// Starts worker process `j`'s state machines on its current
    /// connections, one per broker.
    fn start_worker(&mut self, j: usize) {
        let node = &mut self.workers[j];
        node.incarnation += 1;
        if let Some(app) = &mut node.app {
            app.handler = Some((app.make)());
        }
        for b in 0..node.slots.len() {
            let mut config = node.config.clone();
            // Each connection its own jitter; broker 0's seed is the one a
            // single-broker simulation always used.
            config.backoff.seed = self.config.seed ^ ((j as u64) << 32) ^ ((b as u64) << 48) ^ node.incarnation;
            node.slots[b].worker = Some(Worker::new(config, self.now).expect("valid worker config"));
        }
        for b in 0..self.brokers.len() {
            self.drain_worker(j, b);
        }
    }

    /// Appends requests for `services`, each with an empty body, to client
    /// `i`'s workload.
    pub fn submit(&mut self, i: usize, services: impl IntoIterator<Item = Bytes>) {
        self.clients[i].workload.extend(services.into_iter().map(|s| (s, None)));
    }

    /// Appends `requests`, each a service and a body, to client `i`'s
    /// workload. A generator is taken whole: bound it (`take(n)`). An
    /// empty body is refused when its turn comes, as mdp-core's client
    /// refuses it (`ClientUsageError::EmptyBody`), and the simulation
    /// panics saying so: the workload is wrong, not the service.
    pub fn submit_requests(&mut self, i: usize, requests: impl IntoIterator<Item = (Bytes, Multipart)>) {
        self.clients[i].workload.extend(requests.into_iter().map(|(s, b)| (s, Some(b))));
    }

    /// Client `i` sends a request for `service` with an empty body now,
    /// outside its workload.
    pub fn request(&mut self, i: usize, service: Bytes) -> Result<RequestId, ClientUsageError> {
        self.issue_now(i, service, None)
    }

    /// Client `i` sends a request for `service` with `body` now, outside
    /// its workload. An empty body is refused as mdp-core's client refuses
    /// it.
    pub fn request_with(&mut self, i: usize, service: Bytes, body: Multipart) -> Result<RequestId, ClientUsageError> {
        self.issue_now(i, service, Some(body))
    }

    /// Checks every answer a client gets against its request with `check`
    /// (see [`Check`]); a failed check is a violation. Set it before the
    /// first request: requests made earlier are not checked.
    pub fn set_check(&mut self, check: impl FnMut(&Call, &Answer) -> Result<(), String> + 'static) {
        self.check = Some(UserCheck(Box::new(check)));
    }

    /// Faults scheduled ([`schedule`](Self::schedule)) and not applied yet.
    pub fn faults_pending(&self) -> usize {
        self.faults.len()
    }

    /// The last [`SimConfig::timeline`] steps, one line each, oldest first:
    /// the time, the step's number and what it did.
    pub fn timeline(&self) -> impl Iterator<Item = &str> {
        self.timeline.iter().map(String::as_str)
    }

    /// Client `i`'s application cancels request `id` now
    /// ([`Client::cancel`]); returns whether it was outstanding. The checker
    /// is told, and holds the client to what cancelling promises.
    pub fn cancel(&mut self, i: usize, id: RequestId) -> bool {
        let now = self.now;
        let on_wire = self.clients[i].client.lane_of(id).is_some();
        let took_effect = self.clients[i].client.cancel(now, id);
        self.clients[i].calls.remove(&id);
        self.checker.cancel(now, i, id, took_effect);
        if took_effect {
            self.stats.cancelled += 1;
            self.stats.cancelled_on_wire += u64::from(on_wire);
        } else {
            self.stats.cancels_late += 1;
        }
        self.drain_client(i);
        took_effect
    }

    // ---- faults ----

    /// Worker process `j` dies: it is driven no more, messages to it are
    /// lost (from every broker), the ones it sent already still arrive.
    pub fn crash_worker(&mut self, j: usize) {
        let now = self.now;
        let node = &mut self.workers[j];
        if !node.is_running() {
            return;
        }
        if let Some(app) = &mut node.app {
            app.handler = None;
        }
        for (b, slot) in node.slots.iter_mut().enumerate() {
            slot.worker = None;
            slot.job = None;
            self.net.close(&slot.peer, true);
            self.checker.worker_crashed(now, b, &slot.peer);
        }
        self.stats.worker_crashes += 1;
    }

    /// Worker process `j` is started again as a new process on new
    /// connections (crashing the old one first if it runs).
    pub fn restart_worker(&mut self, j: usize) {
        self.crash_worker(j);
        for b in 0..self.brokers.len() {
            self.workers[j].slots[b].peer = self.net.connect(Node::Worker(j), b);
        }
        self.start_worker(j);
    }

    /// A new broker replaces broker `b` at once; everything in flight to or
    /// from it is lost. A broker stopped for good comes back too.
    pub fn restart_broker(&mut self, b: usize) {
        self.take_down(b, BrokerState::Dead);
        self.start_broker(b);
    }

    /// Broker `b` goes down for `down_for`, then a new one starts in its
    /// place. Messages sent to it meanwhile are lost.
    pub fn stop_broker(&mut self, b: usize, down_for: Duration) {
        self.take_down(b, BrokerState::DownUntil(self.now + down_for));
    }

    /// Broker `b` stops for good: it never comes back (unless
    /// [`restart_broker`](Self::restart_broker) says so). Messages sent to
    /// it from now on are lost; its peers find out by their timeouts.
    pub fn kill_broker(&mut self, b: usize) {
        self.take_down(b, BrokerState::Dead);
    }

    /// Takes broker `b` down until `state` says. A broker stopped for
    /// good stays so (only [`restart_broker`](Self::restart_broker) brings
    /// it back), and of two outages the later end holds.
    fn take_down(&mut self, b: usize, state: BrokerState) {
        let state = match (self.brokers[b].state, state) {
            (BrokerState::Dead, BrokerState::DownUntil(_)) => return,
            (BrokerState::DownUntil(a), BrokerState::DownUntil(b)) => BrokerState::DownUntil(a.max(b)),
            (_, state) => state,
        };
        self.net.broker_restarted(b, false);
        self.checker.broker_restarted(b);
        self.brokers[b].state = state;
    }

    fn start_broker(&mut self, b: usize) {
        let broker = Broker::new(self.config.broker.clone(), self.now).expect("a valid broker configuration");
        self.brokers[b] = BrokerNode { broker, state: BrokerState::Up };
        self.net.broker_restarted(b, true);
        self.stats.broker_restarts += 1;
    }

    /// Applies `fault` at `at` after the start of the run (at once if that
    /// is past). Faults scheduled for one time are applied in the order
    /// they were scheduled.
    pub fn schedule(&mut self, at: Duration, fault: Fault) {
        let at = (self.t0 + at).max(self.now);
        self.faults.insert((at, self.next_fault), fault);
        self.next_fault += 1;
    }

    /// Schedules every fault of `plan` ([`schedule`](Self::schedule)).
    pub fn schedule_plan(&mut self, plan: &FaultPlan) {
        for (at, fault) in &plan.faults {
            self.schedule(*at, fault.clone());
        }
    }

    /// Applies `fault` now. A fault naming a worker or broker that does not
    /// exist is ignored (a drawn plan may name more than a scenario has).
    pub fn apply(&mut self, fault: Fault) {
        if self.config.timeline > 0 {
            self.note(format!("fault {fault:?}"));
        }
        let (workers, brokers) = (self.workers.len(), self.brokers.len());
        match fault {
            Fault::CrashWorker(j) if j < workers => self.crash_worker(j),
            Fault::RestartWorker(j) if j < workers => self.restart_worker(j),
            Fault::StopBroker { broker, down_for } if broker < brokers => self.stop_broker(broker, down_for),
            Fault::RestartBroker(b) if b < brokers => self.restart_broker(b),
            Fault::KillBroker(b) if b < brokers => self.kill_broker(b),
            Fault::Partition { node, duration } => self.partition(node, duration),
            Fault::DropNext { node, count } => self.net.drop_next(node, count),
            Fault::SetFaults(faults) => self.net.set_faults(faults),
            Fault::SetLink { node, link } => self.net.set_link(node, link),
            Fault::StopFaults => self.stop_faults(),
            _ => {}
        }
    }

    /// Cuts `node` off every broker for `duration`.
    pub fn partition(&mut self, node: Node, duration: Duration) {
        self.net.partition(node, self.now + duration);
    }

    /// Ends every fault for what is sent from now on: partitions healed,
    /// pending drops cleared, no reordering or ghost requests, every node's
    /// link back to the configured one. Messages already in flight keep
    /// what was done to them (a partition's held messages still arrive late).
    pub fn stop_faults(&mut self) {
        self.net.set_faults(Faults::default());
        self.net.heal();
        self.net.clear_drop_next();
        let link = self.config.link;
        for i in 0..self.clients() {
            self.net.set_link(Node::Client(i), link);
        }
        for j in 0..self.workers() {
            self.net.set_link(Node::Worker(j), link);
        }
        for k in 0..self.raw_clients() {
            self.net.set_link(Node::Raw(k), link);
        }
    }

    /// After [`stop_faults`](Self::stop_faults), runs until what the faults
    /// left behind is gone: every stopped broker is back up (but those
    /// stopped for good), the network holds nothing (a crashed worker's
    /// READY held by a partition may arrive now and register a worker that
    /// is already dead), then for the brokers' longest window, so that dead
    /// workers have expired and so have the queued requests of clients that
    /// gave up and reconnected (MDP cannot cancel them; ahead of a new
    /// request they would outlast its timeout).
    pub fn await_recovery(&mut self, max_steps: u64) -> Result<(), SimError> {
        let all_up = |s: &Sim| s.brokers.iter().all(|b| !matches!(b.state, BrokerState::DownUntil(_)));
        self.run_until(|s| all_up(s) && s.net.in_flight() == 0, max_steps)?;
        let broker = &self.config.broker;
        let window = broker.idle_worker_timeout().max(broker.busy_timeout()).max(broker.request_timeout);
        self.run_for(window + Duration::from_secs(1), max_steps)?;
        Ok(())
    }

    // ---- running ----

    /// Steps until `cond` holds; fails after `max_steps` steps, or if nothing
    /// is left to do. Returns the steps taken.
    pub fn run_until(&mut self, mut cond: impl FnMut(&Sim) -> bool, max_steps: u64) -> Result<u64, SimError> {
        let mut steps = 0;
        while !cond(self) {
            if steps == max_steps {
                return Err(SimError::OutOfSteps { steps, at: self.elapsed(), state: self.describe() });
            }
            if !self.step() {
                return Err(SimError::Idle { at: self.elapsed() });
            }
            steps += 1;
        }
        Ok(steps)
    }

    /// Runs everything due within `duration`, then moves the clock to its
    /// end. Fails after `max_steps` steps.
    pub fn run_for(&mut self, duration: Duration, max_steps: u64) -> Result<u64, SimError> {
        let end = self.now + duration;
        let mut steps = 0;
        while self.next_due().is_some_and(|(at, _)| at <= end) {
            if steps == max_steps {
                return Err(SimError::OutOfSteps { steps, at: self.elapsed(), state: self.describe() });
            }
            self.step();
            steps += 1;
        }
        self.now = end;
        self.check();
        Ok(steps)
    }

    /// Runs until every workload is done and nothing is outstanding
    /// ([`is_quiet`](Self::is_quiet)).
    pub fn quiesce(&mut self, max_steps: u64) -> Result<u64, SimError> {
        self.run_until(Sim::is_quiet, max_steps)
    }

    /// The end-of-scenario check: quiet, and every request issued was
    /// answered, reported failed or cancelled (every raw client's request
    /// answered). Panics otherwise.
    pub fn finish(&mut self) -> ModelCounts {
        let now = self.now;
        for (i, c) in self.clients.iter().enumerate() {
            assert!(c.workload.is_empty(), "client {i} has {} requests left to issue", c.workload.len());
            assert_eq!(c.client.outstanding(), 0, "client {i} still has requests outstanding");
        }
        for (k, r) in self.raws.iter().enumerate() {
            assert!(r.workload.is_empty(), "raw client {k} has {} requests left to send", r.workload.len());
            assert_eq!(r.outstanding, 0, "raw client {k} still has requests outstanding");
        }
        self.checker.check_nothing_lost(now);
        self.checker.counts()
    }

    /// A one-line summary of the state, for failure messages.
    pub fn describe(&self) -> String {
        let outstanding: Vec<(usize, usize)> =
            self.clients.iter().map(|c| (c.client.outstanding(), c.client.on_wire())).collect();
        let left: Vec<usize> = self.clients.iter().map(|c| c.workload.len()).collect();
        let raw: Vec<(usize, usize)> = self.raws.iter().map(|r| (r.outstanding, r.workload.len())).collect();
        let brokers: Vec<String> = self
            .brokers
            .iter()
            .map(|b| match b.state {
                BrokerState::Up => format!("{:?}", b.broker.stats()),
                BrokerState::DownUntil(until) => format!("down until t+{:?}", until - self.t0),
                BrokerState::Dead => "stopped for good".to_owned(),
            })
            .collect();
        let brokers = brokers.join("; ");
        format!(
            "(outstanding, on the wire) per client {outstanding:?}, left to issue {left:?}, raw clients (outstanding, left) {raw:?}, live workers {:?}, brokers [{brokers}], {:?}, in flight {}",
            self.live_workers(),
            self.checker.counts(),
            self.net.in_flight()
        )
    }

    /// Does the one earliest thing due (jumping the clock to it), drains
    /// outputs and checks the invariants. Returns `false` if nothing at all
    /// is left to do.
    ///
    /// # Panics
    ///
    /// On a broken invariant (unless the checker collects them), and when
    /// [`SimConfig::livelock_steps`] steps pass without the clock moving.
    pub fn step(&mut self) -> bool {
        let Some((at, due)) = self.next_due() else { return false };
        if at > self.now {
            self.now = at;
        }
        if self.now > self.last_moved.0 {
            self.last_moved = (self.now, self.stats.steps);
        } else if self.stats.steps - self.last_moved.1 > self.config.livelock_steps {
            panic!(
                "livelock: {} steps at t+{:?} without the clock moving; now doing {due:?}; {}",
                self.config.livelock_steps,
                self.elapsed(),
                self.describe()
            );
        }
        if self.config.timeline > 0 && !matches!(due, Due::Packet | Due::Fault | Due::Cancel) {
            self.note(format!("{due:?}"));
        }
        match due {
            Due::Packet => {
                if let Some(p) = self.net.pop_due(self.now) {
                    if self.config.timeline > 0 {
                        self.note(self.describe_packet(&p.peer, p.dir, &p.frames));
                    }
                    self.deliver(p.peer, p.dir, p.frames);
                }
            }
            Due::BrokerUp(b) => self.start_broker(b),
            Due::Broker(b) => {
                self.brokers[b].broker.handle_timeout(self.now);
                self.drain_broker(b);
            }
            Due::Client(i) => {
                self.clients[i].client.handle_timeout(self.now);
                self.drain_client(i);
            }
            Due::Worker(j, b) => {
                if let Some(w) = &mut self.workers[j].slots[b].worker {
                    w.handle_timeout(self.now);
                }
                self.drain_worker(j, b);
            }
            Due::App(j, b) => self.work(j, b),
            Due::Issue(i) => {
                if let Some((service, body)) = self.clients[i].workload.pop_front() {
                    self.clients[i].next_issue = self.now + self.next_interval();
                    match self.issue_now(i, service, body) {
                        Ok(id) => self.maybe_schedule_cancel(i, id),
                        Err(e) => panic!("client {i}'s workload could not issue a request: {e}"),
                    }
                }
            }
            Due::RawIssue(k) => self.raw_issue(k),
            Due::Cancel => {
                if let Some((_, (i, id))) = self.cancels.pop_first() {
                    if self.config.timeline > 0 {
                        self.note(format!("client {i}'s application cancels {id}"));
                    }
                    self.cancel(i, id);
                }
            }
            Due::Fault => {
                if let Some((_, fault)) = self.faults.pop_first() {
                    self.apply(fault);
                }
            }
        }
        self.stats.steps += 1;
        self.check();
        true
    }

    /// Keeps `what` the step does in the timeline, dropping its oldest line
    /// past [`SimConfig::timeline`].
    fn note(&mut self, what: String) {
        if self.timeline.len() == self.config.timeline {
            self.timeline.pop_front();
        }
        // Steps count from 1 here, as `SimStats::steps` counts them once
        // the step is done.
        let line = format!("t+{:?} step {}: {what}", self.elapsed(), self.stats.steps + 1);
        self.timeline.push_back(line);
    }

    /// A packet for the timeline: who, which way, and the command it holds.
    fn describe_packet(&self, peer: &PeerId, dir: Dir, frames: &[Bytes]) -> String {
        let who = match self.net.node_of(peer) {
            Some(Node::Client(i)) => match self.client_of(peer) {
                Some((_, lane)) => format!("client {i} lane {}", lane.0),
                None => format!("client {i} (old connection)"),
            },
            Some(node) => format!("{node:?}"),
            None => "?".to_owned(),
        };
        let b = self.net.broker_of(peer).unwrap_or_default();
        let command = match dir {
            Dir::ToBroker => format!("{who} -> broker {b}: {:?}", PeerCommand::decode(frames.to_vec())),
            Dir::FromBroker => {
                format!("broker {b} -> {who}: {:?}", mdp_core::BrokerCommand::decode(frames.to_vec()))
            }
        };
        // Long bodies would drown the timeline.
        match command.char_indices().nth(240) {
            Some((cut, _)) => format!("{}…", &command[..cut]),
            None => command,
        }
    }

    /// The earliest thing due; ties in the order of [`Due`].
    fn next_due(&self) -> Option<(Instant, Due)> {
        let mut best: Option<(Instant, Due)> = None;
        let mut consider = |at: Option<Instant>, due: Due| {
            if let Some(at) = at {
                if !matches!(best, Some((b, _)) if b <= at) {
                    best = Some((at, due));
                }
            }
        };
        consider(self.net.next_at(), Due::Packet);
        for (b, broker) in self.brokers.iter().enumerate() {
            match broker.state {
                BrokerState::DownUntil(until) => consider(Some(until), Due::BrokerUp(b)),
                BrokerState::Up => consider(broker.broker.poll_timeout(), Due::Broker(b)),
                BrokerState::Dead => {}
            }
        }
        for (i, c) in self.clients.iter().enumerate() {
            consider(c.client.poll_timeout(), Due::Client(i));
        }
        for (j, w) in self.workers.iter().enumerate() {
            for (b, slot) in w.slots.iter().enumerate() {
                if let Some(worker) = &slot.worker {
                    consider(worker.poll_timeout(), Due::Worker(j, b));
                }
            }
        }
        for (j, w) in self.workers.iter().enumerate() {
            for (b, slot) in w.slots.iter().enumerate() {
                consider(slot.job.as_ref().map(|job| job.next_at), Due::App(j, b));
            }
        }
        for (i, c) in self.clients.iter().enumerate() {
            if self.can_issue(i) {
                consider(Some(c.next_issue.max(self.now)), Due::Issue(i));
            }
        }
        for (k, r) in self.raws.iter().enumerate() {
            if !r.workload.is_empty() && r.outstanding < r.window {
                consider(Some(self.now), Due::RawIssue(k));
            }
        }
        consider(self.cancels.first_key_value().map(|((at, _), _)| *at), Due::Cancel);
        consider(self.faults.first_key_value().map(|((at, _), _)| *at), Due::Fault);
        best
    }

    /// Whether client `i`'s workload has a request to issue, now or at its
    /// next interval. Its window is the only other limit: the client keeps
    /// waiting what its lanes cannot carry yet (a majortomo request for
    /// another service included, which the workload once had to hold back
    /// itself).
    fn can_issue(&self, i: usize) -> bool {
        let c = &self.clients[i];
        !c.workload.is_empty() && c.client.outstanding() < c.window
    }

    /// The time from a workload's request to its next one: none without
    /// [`SimConfig::client_interval`] (and then nothing is drawn, so runs
    /// without it are what they always were).
    fn next_interval(&mut self) -> Duration {
        let mean = self.config.client_interval;
        if mean.is_zero() {
            Duration::ZERO
        } else {
            self.interval_rng.duration(mean * 2)
        }
    }

    /// Client `i` sends a request: `body` is the application's (`None`
    /// for the built-in workload's, which is the tag alone). The kit's tag
    /// goes first either way, so an empty application body, which the
    /// core would refuse, is refused here.
    fn issue_now(&mut self, i: usize, service: Bytes, body: Option<Multipart>) -> Result<RequestId, ClientUsageError> {
        let body = match body {
            Some(body) if body.is_empty() => return Err(ClientUsageError::EmptyBody),
            body => body.unwrap_or_default(),
        };
        let c = &mut self.clients[i];
        let tag = Bytes::from(format!("c{i}.{}", c.issued));
        let mut frames = Vec::with_capacity(body.len() + 1);
        frames.push(tag.clone());
        frames.extend(body.iter().cloned());
        let id = c.client.request(self.now, service.clone(), frames)?;
        c.issued += 1;
        c.service = Some(service.clone());
        if self.check.is_some() {
            let call = Call { client: i, id, service: service.clone(), body };
            c.calls.insert(id, (tag.clone(), call, Vec::new()));
        }
        self.checker.issued(self.now, i, id, service, tag);
        self.drain_client(i);
        Ok(id)
    }

    /// With [`SimConfig::cancel_fraction`], maybe schedules a cancel of the
    /// workload's request `id` of client `i`.
    fn maybe_schedule_cancel(&mut self, i: usize, id: RequestId) {
        if !self.cancel_rng.chance(self.config.cancel_fraction) {
            return;
        }
        let at = self.now + self.cancel_rng.duration(self.config.cancel_delay);
        self.cancels.insert((at, self.next_cancel), (i, id));
        self.next_cancel += 1;
    }

    /// Raw client `k` sends the next request of its workload.
    fn raw_issue(&mut self, k: usize) {
        let now = self.now;
        let r = &mut self.raws[k];
        let Some(service) = r.workload.pop_front() else { return };
        let tag = Bytes::from(format!("r{k}.{}", r.issued));
        r.issued += 1;
        r.outstanding += 1;
        let command = PeerCommand::Request { service: service.clone(), body: vec![tag.clone()] };
        let frames = command.encode(r.dialect).expect("a request with a service and a body encodes");
        let peer = r.peer.clone();
        self.checker.raw_issued(now, k, service, tag);
        self.net.send(now, peer, Dir::ToBroker, frames);
    }

    fn deliver(&mut self, peer: PeerId, dir: Dir, frames: Vec<Bytes>) {
        let now = self.now;
        match dir {
            Dir::ToBroker => {
                // The network only delivers to a broker that is up.
                let b = self.net.broker_of(&peer).unwrap_or_default();
                self.checker.delivered_to_broker(now, b, &peer, &frames);
                self.brokers[b].broker.handle_message(now, peer, frames);
                self.drain_broker(b);
            }
            Dir::FromBroker => match self.net.node_of(&peer) {
                Some(Node::Client(i)) if self.clients[i].peers.contains(&peer) => {
                    let lane = Lane(self.clients[i].peers.iter().position(|p| *p == peer).unwrap_or_default());
                    self.checker.client_message(i, lane, &frames);
                    self.clients[i].client.handle_message(now, lane, frames);
                    self.drain_client(i);
                }
                Some(Node::Raw(k)) if self.raws[k].peer == peer => {
                    let lossy = self.net.stats().lost_partials > 0;
                    if let Some(tag) = self.checker.raw_message(now, k, &frames, lossy) {
                        let r = &mut self.raws[k];
                        r.outstanding = r.outstanding.saturating_sub(1);
                        r.answers.push(tag);
                    }
                }
                Some(Node::Worker(j)) if self.workers[j].slots.iter().any(|s| s.peer == peer) => {
                    let b = self.workers[j].slots.iter().position(|s| s.peer == peer).unwrap_or_default();
                    let slot = &mut self.workers[j].slots[b];
                    let Some(worker) = &mut slot.worker else { return };
                    if slot.job.is_some() || worker.is_busy() {
                        let is_request = matches!(
                            mdp_core::BrokerCommand::decode(frames.clone()),
                            Ok((_, mdp_core::BrokerCommand::Request { .. }))
                        );
                        if is_request {
                            self.checker.violate(
                                now,
                                format!("worker {j} ({peer}) was sent a REQUEST by broker {b} while busy for it"),
                            );
                        }
                    }
                    if let Some(worker) = &mut self.workers[j].slots[b].worker {
                        worker.handle_message(now, frames);
                    }
                    self.drain_worker(j, b);
                }
                other => self
                    .checker
                    .violate(now, format!("the network delivered to {peer} ({other:?}), not a live connection")),
            },
        }
    }

    /// Drains broker `b`; with `router_mandatory`, reports sends to closed
    /// connections back to it and drains again.
    fn drain_broker(&mut self, b: usize) {
        let now = self.now;
        loop {
            let broker = &mut self.brokers[b].broker;
            let mut events = Vec::new();
            while let Some(e) = broker.poll_event() {
                events.push(e);
            }
            let mut transmits = Vec::new();
            while let Some(t) = broker.poll_transmit() {
                transmits.push(t);
            }
            if events.is_empty() && transmits.is_empty() {
                return;
            }
            for e in events {
                self.checker.broker_event(now, b, &e);
                match &e {
                    BrokerEvent::RequestDispatched { .. } => self.stats.dispatched += 1,
                    BrokerEvent::RequestRequeued { .. } => self.stats.requeued += 1,
                    BrokerEvent::RequestExpired { .. } => self.stats.expired += 1,
                    BrokerEvent::RequestDropped { .. } => self.stats.dropped += 1,
                    BrokerEvent::WorkerReady { .. } => self.stats.workers_ready += 1,
                    BrokerEvent::WorkerGone { .. } => self.stats.workers_gone += 1,
                    BrokerEvent::PeerMisbehaved { .. } => self.stats.misbehaved += 1,
                    _ => {}
                }
                if self.config.record_broker_events {
                    self.broker_log.push((self.now - self.t0, b, e));
                }
            }
            let mut unreachable = Vec::new();
            for t in transmits {
                self.checker.broker_transmit(now, b, &t.to, &t.frames);
                if self.config.router_mandatory && !self.net.is_open(&t.to) {
                    unreachable.push(t.to);
                } else {
                    self.net.send(now, t.to, Dir::FromBroker, t.frames);
                }
            }
            for peer in unreachable {
                self.stats.unreachable += 1;
                self.brokers[b].broker.handle_unreachable(now, &peer);
            }
        }
    }

    /// Drains client `i` after an input: its transmits go to their lanes'
    /// connections, then its events to the checker.
    fn drain_client(&mut self, i: usize) {
        let now = self.now;
        while let Some(ClientTransmit { lane, transmit }) = self.clients[i].client.poll_transmit() {
            self.checker.client_transmit(now, i, lane, &transmit);
            let Some(peer) = self.clients[i].peers.get(lane.0).cloned() else { continue };
            match transmit {
                PeerTransmit::Send(frames) => self.net.send(now, peer, Dir::ToBroker, frames),
                PeerTransmit::Reconnect => {
                    self.net.close(&peer, false);
                    let b = self.clients[i].client.broker_of(lane);
                    self.clients[i].peers[lane.0] = self.net.connect(Node::Client(i), b);
                    self.stats.client_reconnects += 1;
                }
            }
        }
        let lossy = self.net.stats().lost_partials > 0;
        while let Some(e) = self.clients[i].client.poll_event() {
            self.checker.client_event(now, i, &e, lossy);
            if self.check.is_some() {
                self.user_check(i, &e);
            }
        }
        self.checker.check_client(now, i, &self.clients[i].client);
    }

    /// Follows client `i`'s answers for the user's [`Check`], and runs it
    /// on each whole one.
    fn user_check(&mut self, i: usize, event: &ClientEvent) {
        let calls = &mut self.clients[i].calls;
        let (id, body, last) = match event {
            ClientEvent::Partial { id, body } => (*id, body, false),
            ClientEvent::Reply { id, body } => (*id, body, true),
            ClientEvent::Restarted { id } => {
                // The parts come again from the start.
                if let Some(call) = calls.get_mut(id) {
                    call.2.clear();
                }
                return;
            }
            ClientEvent::Failed { id, .. } => {
                calls.remove(id);
                return;
            }
            _ => return,
        };
        let Some((tag, _, parts)) = calls.get_mut(&id) else { return };
        // An answer that is not its request's is the checker's to report.
        let Some(mut got) = pieces(tag, body) else { return };
        let final_piece = if last { got.pop() } else { None };
        parts.extend(got.into_iter().map(|(_, frames)| frames.to_vec()));
        let Some((Piece::Final, final_frames)) = final_piece else { return };
        let (tag, call, parts) = calls.remove(&id).expect("looked up above");
        let answer = Answer { parts, last: final_frames.to_vec() };
        let Some(UserCheck(check)) = &mut self.check else { return };
        if let Err(what) = check(&call, &answer) {
            let service = String::from_utf8_lossy(&call.service);
            let what = format!("the user's check failed for client {i}'s request {tag:?} ({service}): {what}");
            self.checker.violate(self.now, what);
        }
    }

    /// Drains worker process `j`'s state machine for broker `b`: its
    /// transmits go to its connection to that broker, a request it hands
    /// over to the handler slot for that broker.
    fn drain_worker(&mut self, j: usize, b: usize) {
        let now = self.now;
        let Some(worker) = &mut self.workers[j].slots[b].worker else { return };
        let mut transmits = Vec::new();
        while let Some(t) = worker.poll_transmit() {
            transmits.push(t);
        }
        let mut events = Vec::new();
        while let Some(e) = worker.poll_event() {
            events.push(e);
        }
        for t in transmits {
            let slot = &mut self.workers[j].slots[b];
            match t {
                PeerTransmit::Send(frames) => self.net.send(now, slot.peer.clone(), Dir::ToBroker, frames),
                PeerTransmit::Reconnect => {
                    self.net.close(&slot.peer, false);
                    slot.peer = self.net.connect(Node::Worker(j), b);
                    self.stats.worker_reconnects += 1;
                }
            }
        }
        for e in events {
            match e {
                WorkerEvent::Request { token, body } => {
                    if self.workers[j].slots[b].job.is_some() {
                        let who = self.worker_name(j, b);
                        self.checker.violate(now, format!("{who} was handed a request while answering another"));
                    }
                    let (pieces, time) = self.answer(j, &body);
                    let gap = time / pieces.len() as u32;
                    self.workers[j].slots[b].job = Some(Job { token, pieces, gap, next_at: now + gap });
                }
                WorkerEvent::Disconnected { .. } => self.workers[j].slots[b].job = None,
                WorkerEvent::Discarded { reason: WorkerDiscardReason::RequestWhileBusy { client } } => {
                    let who = self.worker_name(j, b);
                    self.checker.violate(now, format!("{who} got a REQUEST from {client} while busy"));
                }
                WorkerEvent::Discarded { .. } => self.stats.worker_discards += 1,
                other => {
                    let who = self.worker_name(j, b);
                    self.checker.violate(now, format!("{who}: unknown event {other:?}"));
                }
            }
        }
    }

    /// How violations name worker process `j`'s part for broker `b`: as
    /// they always did with one broker.
    fn worker_name(&self, j: usize, b: usize) -> String {
        if self.brokers.len() == 1 {
            format!("worker {j}")
        } else {
            format!("worker {j} for broker {b}")
        }
    }

    /// Worker process `j`'s answer to the request whose body (the kit's
    /// tag, then the application's frames) is `body`: the bodies to send,
    /// each a marker and the application's frames, the FINAL last; and how
    /// long the application takes over them.
    fn answer(&mut self, j: usize, body: &[Bytes]) -> (VecDeque<Multipart>, Duration) {
        let node = &mut self.workers[j];
        let streams = node.config.dialect.supports_partial();
        let tag = body.first().cloned().unwrap_or_default();
        let (answer, time) = match &mut node.app {
            Some(App { handler: Some(handler), time, .. }) => {
                (handler.handle(body.get(1..).unwrap_or_default()), time.draw(&mut self.service_rng))
            }
            _ => {
                let parts = if streams { self.config.partials } else { 0 };
                (Answer { parts: vec![Vec::new(); parts], last: Vec::new() }, self.config.service_time)
            }
        };
        let marked = |marker: Bytes, frames: &mut dyn Iterator<Item = Bytes>| {
            std::iter::once(marker).chain(frames).collect::<Multipart>()
        };
        let mut pieces = VecDeque::new();
        if streams {
            for (i, part) in answer.parts.into_iter().enumerate() {
                pieces.push_back(marked(part_body(&tag, i), &mut part.into_iter()));
            }
            pieces.push_back(marked(final_body(&tag), &mut answer.last.into_iter()));
        } else {
            // MDP/0.1 cannot stream: the parts go joined into the REPLY.
            let mut frames = answer.parts.into_iter().flatten().chain(answer.last);
            pieces.push_back(marked(final_body(&tag), &mut frames));
        }
        (pieces, time)
    }

    /// Worker process `j`'s handler slot for broker `b` sends its next part.
    fn work(&mut self, j: usize, b: usize) {
        let now = self.now;
        let slot = &mut self.workers[j].slots[b];
        let (Some(worker), Some(job)) = (&mut slot.worker, &mut slot.job) else { return };
        let body = job.pieces.pop_front().unwrap_or_default();
        let result = if job.pieces.is_empty() {
            let token = job.token.clone();
            slot.job = None;
            worker.reply(now, &token, body)
        } else {
            job.next_at = now + job.gap;
            worker.partial(now, &job.token, body)
        };
        if let Err(e) = result {
            self.checker.violate(now, format!("worker {j}'s application (broker {b}) could not answer: {e}"));
        }
        self.drain_worker(j, b);
    }

    /// The invariants that hold after every step.
    fn check(&mut self) {
        let now = self.now;
        for b in 0..self.brokers.len() {
            let node = &self.brokers[b];
            if node.state == BrokerState::Up {
                let t = node.broker.poll_timeout();
                self.checker.check_timeout(now, &format_args!("broker {b}"), t);
                self.checker.check_broker(now, b, node.broker.config(), &node.broker.stats());
            }
        }
        for i in 0..self.clients.len() {
            let t = self.clients[i].client.poll_timeout();
            self.checker.check_timeout(now, &format_args!("client {i}"), t);
        }
        for j in 0..self.workers.len() {
            for b in 0..self.brokers.len() {
                if let Some(w) = &self.workers[j].slots[b].worker {
                    let t = w.poll_timeout();
                    self.checker.check_timeout(now, &format_args!("worker {j} for broker {b}"), t);
                }
            }
        }
    }
}
