//! Random sequences of operations (client requests and cancels, worker
//! joins and crashes, clock ticks, lost messages, partitions, broker
//! restarts) run against the simulation and a small reference model, with
//! each client's number of lanes (1 to 4) drawn too.
//!
//! The simulation checks its invariants after every step, the lane rules
//! and what cancelling promises among them (see `mdp_testkit::model`). The
//! model here predicts what the API must do (which requests are accepted,
//! the ids they get, which cancels take effect, which workers run) and,
//! once the faults stop, that the system has recovered: every request so far
//! was answered, failed or cancelled, and with a fresh worker per service
//! every new request is answered.
//!
//! Clients pipeline freely, several requests per service included: each
//! lane carries one request per service and the rest wait in the client, so
//! lost messages and broker restarts cost resends, never a wrong answer.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use mdp_core::{ClientUsageError, Dialect, RequestId};
use mdp_testkit::{Node, Sim, SimConfig};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

const STEPS: u64 = 1_000_000;
const CLIENTS: [Dialect; 3] = [Dialect::V01, Dialect::V02, Dialect::Majortomo];

fn service(beta: bool) -> Bytes {
    Bytes::from_static(if beta { b"beta" } else { b"alpha" })
}

#[derive(Debug, Clone)]
enum Op {
    Request {
        client: usize,
        beta: bool,
    },
    /// Client `client` cancels the `nth` request it ever made (modulo how
    /// many it made), outstanding or not.
    Cancel {
        client: usize,
        nth: usize,
    },
    Join {
        beta: bool,
        dialect: Dialect,
    },
    Crash {
        worker: usize,
    },
    Tick {
        ms: u64,
    },
    DropNext {
        node: Node,
    },
    Partition {
        worker: Option<usize>,
        client: usize,
        ms: u64,
    },
    RestartBroker,
}

fn dialect() -> impl Strategy<Value = Dialect> {
    prop::sample::select(Dialect::ALL.to_vec())
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..CLIENTS.len(), any::<bool>()).prop_map(|(client, beta)| Op::Request { client, beta }),
        2 => (0..CLIENTS.len(), any::<usize>()).prop_map(|(client, nth)| Op::Cancel { client, nth }),
        2 => (any::<bool>(), dialect()).prop_map(|(beta, dialect)| Op::Join { beta, dialect }),
        2 => (0..8usize).prop_map(|worker| Op::Crash { worker }),
        6 => prop_oneof![1..50u64, 50..3_000u64, 3_000..12_000u64].prop_map(|ms| Op::Tick { ms }),
        2 => prop_oneof![
            (0..8usize).prop_map(|w| Op::DropNext { node: Node::Worker(w) }),
            (0..CLIENTS.len()).prop_map(|c| Op::DropNext { node: Node::Client(c) }),
        ],
        1 => (prop::option::of(0..8usize), 0..CLIENTS.len(), 100..12_000u64)
            .prop_map(|(worker, client, ms)| Op::Partition { worker, client, ms }),
        1 => Just(Op::RestartBroker),
    ]
}

/// The reference model.
#[derive(Debug, Default)]
struct Model {
    /// Per client: the next request id.
    next_id: Vec<u64>,
    /// Per client: every request it made.
    made: Vec<Vec<RequestId>>,
    /// Running workers, by index.
    alive: BTreeSet<usize>,
    workers: usize,
    issued: u64,
    cancelled: u64,
}

fn run(ops: Vec<Op>, lanes: Vec<usize>, seed: u64) {
    let mut c = SimConfig::new(seed);
    c.service_time = Duration::from_millis(20);
    let window = c.client_window;
    let mut sim = Sim::new(c);
    let mut model = Model::default();
    for (d, lanes) in CLIENTS.into_iter().zip(lanes) {
        sim.add_client_with_lanes(d, lanes);
        model.next_id.push(0);
        model.made.push(Vec::new());
    }
    for (beta, d) in [(false, Dialect::V02), (true, Dialect::V01)] {
        model.alive.insert(sim.add_worker(service(beta), d));
        model.workers += 1;
    }

    for op in ops {
        match op {
            Op::Request { client, beta } => {
                // Whatever its service, a request waits in the client until
                // a lane can take it: refused only past the window.
                let full = sim.checker.outstanding(client) >= window;
                match sim.request(client, service(beta)) {
                    Ok(id) => {
                        assert!(!full, "client {client} took more than {window} requests");
                        assert_eq!(id.get(), model.next_id[client], "request ids count up per client");
                        model.next_id[client] += 1;
                        model.made[client].push(id);
                        model.issued += 1;
                    }
                    Err(ClientUsageError::TooManyOutstanding { .. }) if full => {}
                    Err(e) => panic!("unexpected refusal: {e}"),
                }
            }
            Op::Cancel { client, nth } => {
                let made = &model.made[client];
                if made.is_empty() {
                    continue;
                }
                let id = made[nth % made.len()];
                let outstanding = sim.checker.is_outstanding(client, id);
                assert_eq!(sim.cancel(client, id), outstanding, "cancel({id}) takes effect iff outstanding");
                assert!(!sim.client(client).is_outstanding(id));
                model.cancelled += u64::from(outstanding);
            }
            Op::Join { beta, dialect } => {
                let j = sim.add_worker(service(beta), dialect);
                assert_eq!(j, model.workers);
                model.alive.insert(j);
                model.workers += 1;
            }
            Op::Crash { worker } => {
                let j = worker % model.workers;
                sim.crash_worker(j);
                model.alive.remove(&j);
            }
            Op::Tick { ms } => {
                sim.run_for(Duration::from_millis(ms), STEPS).unwrap_or_else(|e| panic!("{e}"));
            }
            Op::DropNext { node: Node::Worker(w) } => sim.net.drop_next(Node::Worker(w % model.workers), 1),
            Op::DropNext { node } => sim.net.drop_next(node, 1),
            Op::Partition { worker, client, ms } => {
                let node = worker.map_or(Node::Client(client), |w| Node::Worker(w % model.workers));
                sim.partition(node, Duration::from_millis(ms));
            }
            Op::RestartBroker => sim.restart_broker(0),
        }
        assert_eq!(sim.live_workers(), model.alive.iter().copied().collect::<Vec<_>>());
        assert_eq!(sim.counts().issued, model.issued);
        assert_eq!(sim.counts().cancelled, model.cancelled);
    }

    // The faults stop. Everything so far ends answered, failed or cancelled.
    sim.stop_faults();
    sim.quiesce(STEPS).unwrap_or_else(|e| panic!("{e}"));
    let before = sim.finish();
    assert_eq!(before.issued, model.issued);
    assert_eq!(before.cancelled, model.cancelled);

    // The system recovers (dead workers expire, see `Sim::await_recovery`);
    // a fresh worker per service joins. Then every new request is answered,
    // none fails.
    sim.await_recovery(STEPS).unwrap_or_else(|e| panic!("{e}"));
    sim.add_worker(service(false), Dialect::V02);
    sim.add_worker(service(true), Dialect::Majortomo);
    for beta in [false, true] {
        for client in 0..CLIENTS.len() {
            sim.request(client, service(beta)).unwrap();
        }
        sim.quiesce(STEPS).unwrap_or_else(|e| panic!("{e}"));
    }
    let after = sim.finish();
    let probes = 2 * CLIENTS.len() as u64;
    assert_eq!(
        after.answered,
        before.answered + probes,
        "every request after the faults is answered: {}",
        sim.describe()
    );
    assert_eq!(after.failed, before.failed);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("proptest-regressions/proptest_sim.txt"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_operations_keep_the_invariants(
        ops in prop::collection::vec(op(), 1..40),
        lanes in prop::collection::vec(1..=4usize, CLIENTS.len()),
        seed in any::<u64>(),
    ) {
        run(ops, lanes, seed);
    }
}
