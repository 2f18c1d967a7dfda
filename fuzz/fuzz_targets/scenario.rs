//! Runs a whole system, one broker or two with clients and workers of every
//! dialect on `mdp-testkit`' simulated network, through a scenario drawn from
//! the input, as firezone fuzzes its tunnel from `arbitrary::Unstructured`.
//!
//! Input: the setup (network latency and jitter, reordering across
//! connections, ghost requests, `ROUTER_MANDATORY`, service time and PARTIALs
//! per answer, client timeout, tries and window, the share of workload
//! requests cancelled, worker heartbeat and liveness, the broker's request
//! timeout, dispatch limit, job time limit and in-flight limit per client,
//! the first clients' dialects and lanes, one broker or two), then up to [`MAX_OPS`]
//! operations: requests and workloads, cancels, clients and workers
//! joining, workers crashing and restarting, time passing, lost messages,
//! lossy links, partitions, broker restarts and outages. Only faults ZeroMQ and TCP can show are used: no duplication and
//! no reordering within a connection (the simulation's tests show those
//! break MDP's order-based reply matching by design).
//!
//! What is checked:
//!
//! * after every step, the simulation's [`Checker`](mdp_testkit::Checker):
//!   each reply is the answer to its own request, parts in order, replies
//!   per client, lane and service in request order, at most one request per
//!   service on the wire on a lane, none waiting while a lane is free, a
//!   cancelled request's lane replaced and no event naming it after, no
//!   request answered twice or both answered and failed, a worker never
//!   holds two requests, crashed
//!   workers removed within their window, the broker within its limits, no
//!   `poll_timeout` in the past; [`Sim::step`] panics on a livelock;
//! * every operation finishes within a step budget;
//! * when the faults stop (partitions healed, links clean, no more reordering
//!   or ghost requests, the broker up),
//!   everything settles and every request issued was answered, reported
//!   failed or cancelled;
//! * the system recovers: once the broker is up, every held message has
//!   arrived, and dead workers and abandoned queued requests have had their
//!   expiry windows, with a fresh worker per service, every client's next
//!   request to each service (one at a time) is answered, none fails.
#![no_main]

use std::time::Duration;

use arbitrary::{Arbitrary, Result, Unstructured};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use mdp_core::{ClientUsageError, Dialect};
use mdp_fuzz::pick;
use mdp_testkit::{Faults, Link, Node, Sim, SimConfig};
use std::num::NonZeroUsize;

/// Most operations one input runs.
const MAX_OPS: usize = 48;
/// Most clients and workers, and lanes per client.
const MAX_CLIENTS: usize = 4;
const MAX_LANES: u8 = 4;
const MAX_WORKERS: usize = 8;
/// Step budget of one operation, and of settling at the end.
const STEPS: u64 = 200_000;

fn service(beta: bool) -> Bytes {
    Bytes::from_static(if beta { b"beta" } else { b"alpha" })
}

fn dialect(i: u8) -> Dialect {
    Dialect::ALL[usize::from(i) % Dialect::ALL.len()]
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[derive(Debug, Arbitrary)]
struct Setup {
    seed: u64,
    latency_ms: u8,
    jitter_ms: u8,
    reorder: u8,
    ghosts: u8,
    router_mandatory: bool,
    service_ms: u16,
    partials: u8,
    client_timeout_ms: u16,
    client_tries: u8,
    client_window: u8,
    /// Per mille of workload requests cancelled (up to 20 %).
    cancel_permille: u8,
    worker_heartbeat_ms: u16,
    worker_liveness: u8,
    request_timeout_ms: u16,
    max_dispatches: u8,
    max_job_ms: Option<u16>,
    /// The broker's in-flight limit per client and service: 0 for none.
    max_in_flight: u8,
    /// Two brokers instead of one: every worker registered with both, every
    /// client knowing both.
    two_brokers: bool,
    /// Dialects and lanes of the first clients (at least one), one worker per service.
    clients: Vec<(u8, u8)>,
    workers: [u8; 2],
}

impl Setup {
    fn config(&self) -> SimConfig {
        let mut c = SimConfig::new(self.seed);
        c.link = Link::new(ms(u64::from(self.latency_ms % 11)), ms(u64::from(self.jitter_ms % 11)));
        c.faults = Faults {
            reorder: f64::from(self.reorder) / 255.0 * 0.3,
            ghost_requests: f64::from(self.ghosts) / 255.0 * 0.2,
            ..Faults::default()
        };
        c.router_mandatory = self.router_mandatory;
        c.service_time = ms(u64::from(self.service_ms % 1001));
        c.partials = usize::from(self.partials % 4);
        // A client waits longer than an answer takes, even behind one other
        // request (a ghost of its own, say), with room for latency and
        // reordering; else requests fail however well the rest works.
        c.client_timeout = 2 * c.service_time + ms(300 + u64::from(self.client_timeout_ms % 5000));
        c.client_tries = 1 + u32::from(self.client_tries % 4);
        c.client_window = 1 + usize::from(self.client_window % 8);
        c.cancel_fraction = f64::from(self.cancel_permille % 201) / 1000.0;
        // Broker and workers agree on the heartbeat interval, as MDP requires;
        // a worker gives the broker at least two intervals (with one, any
        // latency makes it reconnect at every heartbeat), and an interval is
        // far longer than the network's worst delay (10 + 10 ms, held back
        // 50 ms more when reordered); else healthy peers time each other out.
        c.worker_heartbeat = ms(500 + u64::from(self.worker_heartbeat_ms % 2001));
        c.broker.heartbeat_interval = c.worker_heartbeat;
        c.worker_liveness = 2 + u32::from(self.worker_liveness % 3);
        // Likewise, a queued request waits at the broker for at least that
        // long before it expires.
        c.broker.request_timeout = 2 * c.service_time + ms(300 + u64::from(self.request_timeout_ms % 20_000));
        c.broker.max_dispatches = 1 + u32::from(self.max_dispatches % 4);
        c.broker.max_job_time = self.max_job_ms.map(|n| c.service_time + ms(1000 + u64::from(n % 20_000)));
        c.broker.max_in_flight_per_client = NonZeroUsize::new(usize::from(self.max_in_flight % 4));
        c.brokers = if self.two_brokers { 2 } else { 1 };
        c
    }
}

#[derive(Debug)]
enum Op {
    /// Client `client` sends one request now.
    Request {
        client: u8,
        beta: bool,
    },
    /// Client `client`'s workload gets `n` more requests.
    Submit {
        client: u8,
        beta: bool,
        n: u8,
    },
    /// Client `client` cancels its `nth` outstanding request.
    Cancel {
        client: u8,
        nth: u8,
    },
    AddClient {
        dialect: u8,
        lanes: u8,
    },
    Join {
        beta: bool,
        dialect: u8,
    },
    Crash {
        worker: u8,
    },
    Restart {
        worker: u8,
    },
    Tick {
        ms: u16,
    },
    DropNext {
        node: NodeSel,
        n: u8,
    },
    Lossy {
        node: NodeSel,
        permille: u8,
    },
    Partition {
        node: NodeSel,
        ms: u16,
    },
    RestartBroker {
        broker: u8,
    },
    StopBroker {
        broker: u8,
        ms: u16,
    },
}

#[derive(Debug, Arbitrary)]
enum NodeSel {
    Client(u8),
    Worker(u8),
}

impl<'a> Arbitrary<'a> for Op {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match pick(u, &[14, 4, 3, 1, 3, 3, 2, 14, 3, 2, 2, 1, 1])? {
            0 => Op::Request { client: u.arbitrary()?, beta: u.arbitrary()? },
            1 => Op::Submit { client: u.arbitrary()?, beta: u.arbitrary()?, n: u.arbitrary()? },
            2 => Op::Cancel { client: u.arbitrary()?, nth: u.arbitrary()? },
            3 => Op::AddClient { dialect: u.arbitrary()?, lanes: u.arbitrary()? },
            4 => Op::Join { beta: u.arbitrary()?, dialect: u.arbitrary()? },
            5 => Op::Crash { worker: u.arbitrary()? },
            6 => Op::Restart { worker: u.arbitrary()? },
            7 => Op::Tick { ms: u.arbitrary()? },
            8 => Op::DropNext { node: u.arbitrary()?, n: u.arbitrary()? },
            9 => Op::Lossy { node: u.arbitrary()?, permille: u.arbitrary()? },
            10 => Op::Partition { node: u.arbitrary()?, ms: u.arbitrary()? },
            11 => Op::RestartBroker { broker: u.arbitrary()? },
            _ => Op::StopBroker { broker: u.arbitrary()?, ms: u.arbitrary()? },
        })
    }
}

#[derive(Debug, Arbitrary)]
struct Input {
    setup: Setup,
    ops: Vec<Op>,
}

fn lanes_of(n: u8) -> usize {
    usize::from(1 + n % MAX_LANES)
}

fn node(sim: &Sim, sel: &NodeSel) -> Node {
    match sel {
        NodeSel::Client(i) => Node::Client(usize::from(*i) % sim.clients()),
        NodeSel::Worker(j) => Node::Worker(usize::from(*j) % sim.workers()),
    }
}

fn run(input: &Input) {
    let config = input.setup.config();
    let mut sim = Sim::new(config.clone());
    for &(d, lanes) in input.setup.clients.iter().take(MAX_CLIENTS) {
        sim.add_client_with_lanes(dialect(d), lanes_of(lanes));
    }
    if sim.clients() == 0 {
        sim.add_client(Dialect::V02);
    }
    for (beta, &d) in [false, true].into_iter().zip(&input.setup.workers) {
        sim.add_worker(service(beta), dialect(d));
    }

    for op in input.ops.iter().take(MAX_OPS) {
        match op {
            Op::Request { client, beta } => {
                let i = usize::from(*client) % sim.clients();
                match sim.request(i, service(*beta)) {
                    Ok(_) => {}
                    // The application asked for more than the client allows:
                    // a refusal, documented, and nothing else happens.
                    Err(ClientUsageError::TooManyOutstanding { .. }) => {}
                    Err(e) => panic!("client {i} refused a valid request: {e}"),
                }
            }
            Op::Submit { client, beta, n } => {
                let i = usize::from(*client) % sim.clients();
                sim.submit(i, std::iter::repeat_n(service(*beta), usize::from(*n % 16)));
            }
            Op::Cancel { client, nth } => {
                let i = usize::from(*client) % sim.clients();
                let ids = sim.checker.outstanding_ids(i);
                if let Some(&id) = ids.get(usize::from(*nth) % ids.len().max(1)) {
                    // The checker holds `cancel`'s answer against its model.
                    sim.cancel(i, id);
                }
            }
            Op::AddClient { dialect: d, lanes } if sim.clients() < MAX_CLIENTS => {
                sim.add_client_with_lanes(dialect(*d), lanes_of(*lanes));
            }
            Op::Join { beta, dialect: d } if sim.workers() < MAX_WORKERS => {
                sim.add_worker(service(*beta), dialect(*d));
            }
            Op::Crash { worker } => sim.crash_worker(usize::from(*worker) % sim.workers()),
            Op::Restart { worker } => sim.restart_worker(usize::from(*worker) % sim.workers()),
            Op::Tick { ms: n } => {
                // Up to 16 s, mostly short.
                let d = ms(u64::from(*n % 16_384));
                sim.run_for(d, STEPS).unwrap_or_else(|e| panic!("{e}"));
            }
            Op::DropNext { node: sel, n } => {
                let node = node(&sim, sel);
                sim.net.drop_next(node, u32::from(n % 4) + 1);
            }
            Op::Lossy { node: sel, permille } => {
                let node = node(&sim, sel);
                let link = config.link.lossy(f64::from(*permille % 101) / 1000.0);
                sim.net.set_link(node, link);
            }
            Op::Partition { node: sel, ms: n } => {
                let node = node(&sim, sel);
                sim.partition(node, ms(u64::from(*n % 16_384)));
            }
            Op::RestartBroker { broker } => sim.restart_broker(usize::from(*broker) % sim.brokers()),
            Op::StopBroker { broker, ms: n } => {
                let b = usize::from(*broker) % sim.brokers();
                if sim.broker_is_up(b) {
                    sim.stop_broker(b, ms(u64::from(*n % 16_384)));
                }
            }
            Op::AddClient { .. } | Op::Join { .. } => {}
        }
    }

    // The faults stop, reordering and ghost requests included (two ghosts
    // queued ahead of a probe can outlast its client's timeout). Everything
    // so far ends answered or failed.
    sim.stop_faults();
    sim.quiesce(STEPS).unwrap_or_else(|e| panic!("{e}"));
    let before = sim.finish();

    // The system recovers (see `Sim::await_recovery` for what that waits
    // for), a fresh worker per service joins, and every client's next
    // request to each service is answered.
    sim.await_recovery(STEPS).unwrap_or_else(|e| panic!("{e}"));
    sim.add_worker(service(false), Dialect::V02);
    sim.add_worker(service(true), Dialect::V01);
    // One request at a time, so that none waits behind another probe.
    for beta in [false, true] {
        for i in 0..sim.clients() {
            sim.request(i, service(beta)).unwrap_or_else(|e| panic!("client {i}, after quiescence: {e}"));
            sim.quiesce(STEPS).unwrap_or_else(|e| panic!("{e}"));
        }
    }
    let after = sim.finish();
    let probes = 2 * sim.clients() as u64;
    assert_eq!(
        after.answered,
        before.answered + probes,
        "a request after the faults went unanswered: {}",
        sim.describe()
    );
    assert_eq!(after.failed, before.failed, "a request after the faults failed: {}", sim.describe());
}

fuzz_target!(|input: Input| run(&input));
