//! Seeded fault scenarios. Every one checks the invariants after every step
//! (see `mdp_testkit::model`) and, at the end, that nothing was silently lost:
//! every request issued was answered, reported failed or cancelled at its
//! client.
//!
//! Every scenario runs with each fleet of [`FLEETS`]: four clients of one
//! lane each, and three clients of four lanes (one per dialect) beside a
//! one-lane client. A four-lane client has up to four requests per service
//! at workers at once, with their replies in any order; the model checks
//! each reply against the request on the wire for its service on its lane.

use std::time::Duration;

use bytes::Bytes;
use mdp_core::Dialect;
use mdp_testkit::{Faults, Link, ModelCounts, Node, Sim, SimConfig};

const STEPS: u64 = 5_000_000;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn alpha() -> Bytes {
    Bytes::from_static(b"alpha")
}

fn beta() -> Bytes {
    Bytes::from_static(b"beta")
}

/// Lanes of the fleet's four clients (MDP/0.1, MDP/0.2, majortomo, MDP/0.2):
/// one each, then four for one client of each dialect.
const FLEETS: [[usize; 4]; 2] = [[1, 1, 1, 1], [4, 4, 4, 1]];

/// 4 clients (every dialect) with `lanes` lanes, and 6 workers (every
/// dialect) on two services.
fn fleet(config: SimConfig, lanes: [usize; 4]) -> Sim {
    let mut sim = Sim::new(config);
    for (service, dialect) in [
        (alpha(), Dialect::V01),
        (alpha(), Dialect::V02),
        (alpha(), Dialect::Majortomo),
        (beta(), Dialect::V01),
        (beta(), Dialect::V02),
        (beta(), Dialect::Majortomo),
    ] {
        sim.add_worker(service, dialect);
    }
    for (dialect, lanes) in [Dialect::V01, Dialect::V02, Dialect::Majortomo, Dialect::V02].into_iter().zip(lanes) {
        sim.add_client_with_lanes(dialect, lanes);
    }
    sim
}

/// Each fleet of [`FLEETS`] with each seed in `0..seeds`.
fn runs(seeds: u64) -> impl Iterator<Item = ([usize; 4], u64)> {
    FLEETS.into_iter().flat_map(move |lanes| (0..seeds).map(move |seed| (lanes, seed)))
}

/// `n` requests per client, alternating services in blocks of 10.
fn workload(sim: &mut Sim, n: usize) {
    for c in 0..sim.clients() {
        sim.submit(c, (0..n).map(|k| if (k / 10 + c) % 2 == 0 { alpha() } else { beta() }));
    }
}

/// Runs to quiescence and checks nothing was silently lost.
fn finish(mut sim: Sim, name: &str) -> (Sim, ModelCounts) {
    let lanes: Vec<usize> = (0..sim.clients()).map(|i| sim.client_lanes(i)).collect();
    sim.quiesce(STEPS).unwrap_or_else(|e| panic!("{name}, lanes {lanes:?}: {e}"));
    let counts = sim.finish();
    println!(
        "{name}, lanes {lanes:?}: {counts:?}\n  {:?}\n  {:?}\n  t+{:?}",
        sim.stats(),
        sim.net_stats(),
        sim.elapsed()
    );
    (sim, counts)
}

#[test]
fn latency_and_jitter() {
    for (lanes, seed) in runs(3) {
        let mut c = SimConfig::new(seed);
        c.link = Link::new(ms(5), ms(20));
        let mut sim = fleet(c, lanes);
        // One slow link, one fast.
        sim.net.set_link(Node::Worker(1), Link::new(ms(80), ms(40)));
        sim.net.set_link(Node::Client(2), Link::new(Duration::ZERO, ms(1)));
        workload(&mut sim, 300);
        let (_, counts) = finish(sim, "latency and jitter");
        assert_eq!((counts.answered, counts.failed), (1200, 0));
    }
}

#[test]
fn reordering_across_connections() {
    for (lanes, seed) in runs(3) {
        let mut c = SimConfig::new(seed);
        c.link = Link::new(ms(2), ms(5));
        c.faults = Faults { reorder: 0.2, reorder_delay: ms(300), ..Faults::default() };
        let mut sim = fleet(c, lanes);
        workload(&mut sim, 300);
        let (sim, counts) = finish(sim, "reordering");
        assert!(sim.net_stats().reordered > 100);
        assert_eq!((counts.answered, counts.failed), (1200, 0));
    }
}

/// Loss on every link, workers' and clients'. A lost REQUEST or FINAL would
/// pin its worker "busy" for ever (it keeps heartbeating), so the broker
/// runs with `max_job_time`; clients pipeline freely, since a client keeps
/// one request per service on each lane's connection, and a loss costs a
/// timeout and a resend.
#[test]
fn message_loss() {
    for (lanes, seed) in runs(3) {
        let mut c = SimConfig::new(seed);
        c.broker.max_job_time = Some(Duration::from_secs(5));
        let mut sim = fleet(c, lanes);
        for j in 0..sim.workers() {
            sim.net.set_link(Node::Worker(j), Link::default().lossy(0.01));
        }
        for i in 0..sim.clients() {
            sim.net.set_link(Node::Client(i), Link::default().lossy(if i == 1 { 0.05 } else { 0.01 }));
        }
        workload(&mut sim, 300);
        let (sim, counts) = finish(sim, "loss");
        assert!(sim.net_stats().lost > 20);
        // Lost messages cost retries; a request fails only if it is lost
        // on all three tries. Before max_job_time, about 150 were answered.
        assert!(counts.answered > 1100, "{counts:?}");
        assert_eq!(counts.answered + counts.failed, 1200);
    }
}

#[test]
fn ghost_requests_are_served_and_go_nowhere() {
    for (lanes, seed) in runs(3) {
        let mut c = SimConfig::new(seed);
        c.faults = Faults { ghost_requests: 0.2, ..Faults::default() };
        let mut sim = fleet(c, lanes);
        workload(&mut sim, 300);
        let (sim, counts) = finish(sim, "ghosts");
        assert_eq!((counts.answered, counts.failed), (1200, 0));
        assert!(sim.net_stats().ghosts > 100);
        // The broker does the ghosts' work too; their answers are dropped.
        assert!(sim.stats().dispatched > 1200 + sim.net_stats().ghosts / 2);
    }
}

/// A busy worker is cut off for longer than its liveness window: the broker
/// expires it and re-dispatches its request to another worker, and the client
/// still gets the answer on its original connection (its timeout is longer
/// than the worker's liveness). Another one is cut off for less than its
/// window: its messages are late, and nothing else happens.
#[test]
fn partition_of_a_busy_worker_redispatches_its_request() {
    for (lanes, seed) in runs(3) {
        let mut c = SimConfig::new(seed);
        c.link = Link::new(ms(1), ms(4));
        c.client_timeout = Duration::from_secs(30);
        c.service_time = ms(200);
        let mut sim = fleet(c, lanes);
        workload(&mut sim, 100);
        sim.run_until(|s| s.worker(1).is_some_and(|w| w.is_busy()), STEPS).unwrap();
        sim.partition(Node::Worker(1), Duration::from_secs(20));
        sim.run_for(ms(500), STEPS).unwrap();
        sim.run_until(|s| s.worker(4).is_some_and(|w| w.is_busy()), STEPS).unwrap();
        sim.partition(Node::Worker(4), Duration::from_secs(5));
        let (sim, counts) = finish(sim, "partition");
        assert_eq!(sim.stats().requeued, 1, "the request of the worker cut off for long re-dispatched");
        assert!(sim.net_stats().held > 0);
        assert_eq!((counts.answered, counts.failed), (400, 0));
        assert_eq!(counts.restarted, 0, "answered on the original connection, no resend");
    }
}

/// Workers crash while busy and come back later as new processes. Their
/// requests are re-dispatched and answered on the clients' original
/// connections (client timeouts outlast the workers' liveness), or, if
/// PARTIALs of them had reached the client, dropped by the broker and resent
/// by the client. The checker verifies each crashed worker is removed within
/// its liveness window. Clients keep one request outstanding: with timeouts
/// this long, a pipelining client would take a later reply for the dropped
/// request's (see `regressions::a_dropped_request_does_not_shift_later_replies`).
#[test]
fn worker_crash_and_restart() {
    for (lanes, seed) in runs(3) {
        let mut c = SimConfig::new(seed);
        c.link = Link::new(ms(1), ms(4));
        c.client_timeout = Duration::from_secs(30);
        c.client_window = 1;
        c.service_time = ms(100);
        let mut sim = fleet(c, lanes);
        workload(&mut sim, 150);
        for j in [0, 4, 2] {
            sim.run_until(|s| s.worker(j).is_some_and(|w| w.is_busy()), STEPS).unwrap();
            sim.crash_worker(j);
            sim.run_for(ms(300), STEPS).unwrap();
        }
        sim.run_for(Duration::from_secs(10), STEPS).unwrap();
        for j in [0, 4, 2] {
            sim.restart_worker(j);
        }
        let (sim, counts) = finish(sim, "crash and restart");
        // Re-dispatched, or dropped as PartlyAnswered and resent.
        let stats = sim.stats();
        assert!(stats.requeued >= 1 && stats.requeued + stats.dropped >= 3, "{stats:?}");
        assert!(stats.workers_gone >= 3);
        assert_eq!((counts.answered, counts.failed), (600, 0));
    }
}

/// Workers crash mid-stream under pipelining clients with default timeouts:
/// clients resend what the crashes cost them. (With 100 ms service times and
/// 2 of 6 workers left, the load outruns the 2.5 s client timeout and
/// requests fail in a resend storm; at 20 ms it does not.)
#[test]
fn worker_crash_under_pipelining_clients() {
    for (lanes, seed) in runs(3) {
        let mut c = SimConfig::new(seed);
        c.link = Link::new(ms(1), ms(4));
        c.service_time = ms(20);
        let mut sim = fleet(c, lanes);
        workload(&mut sim, 150);
        for j in [1, 2, 4, 5] {
            sim.run_until(|s| s.worker(j).is_some_and(|w| w.is_busy()), STEPS).unwrap();
            sim.run_for(ms(40), STEPS).unwrap();
            sim.crash_worker(j);
        }
        sim.run_for(Duration::from_secs(10), STEPS).unwrap();
        sim.restart_worker(1);
        sim.restart_worker(5);
        let (sim, counts) = finish(sim, "crash under pipelining");
        assert!(sim.stats().client_reconnects > 0);
        assert_eq!((counts.answered, counts.failed), (600, 0));
    }
}

/// The same with a busy timeout longer than the idle one: a worker that
/// crashes right after answering must still be removed by the idle window.
#[test]
fn worker_crash_with_a_long_busy_timeout() {
    for (lanes, seed) in runs(3) {
        let mut c = SimConfig::new(seed);
        c.link = Link::new(ms(1), ms(4));
        c.broker.busy_worker_timeout = Some(Duration::from_secs(20));
        c.client_timeout = Duration::from_secs(60);
        c.service_time = ms(100);
        let mut sim = fleet(c, lanes);
        workload(&mut sim, 150);
        for j in [1, 3, 5] {
            // Busy, then idle again: crash right after its FINAL went out.
            sim.run_until(|s| s.worker(j).is_some_and(|w| w.is_busy()), STEPS).unwrap();
            sim.run_until(|s| s.worker(j).is_some_and(|w| !w.is_busy()), STEPS).unwrap();
            sim.crash_worker(j);
        }
        sim.run_for(Duration::from_secs(30), STEPS).unwrap();
        let (sim, counts) = finish(sim, "crash with a long busy timeout");
        assert!(sim.stats().workers_gone >= 3);
        assert_eq!(counts.failed, 0);
    }
}

/// With `ZMQ_ROUTER_MANDATORY` the broker learns at once that a crashed
/// worker is gone, when it next sends to it.
#[test]
fn crashed_worker_reported_unreachable() {
    for lanes in FLEETS {
        let mut c = SimConfig::new(7);
        c.router_mandatory = true;
        c.client_timeout = Duration::from_secs(30);
        let mut sim = fleet(c, lanes);
        workload(&mut sim, 200);
        for j in [0, 1, 3] {
            sim.run_until(|s| s.worker(j).is_some_and(|w| !w.is_busy()), STEPS).unwrap();
            sim.crash_worker(j);
        }
        let (sim, counts) = finish(sim, "unreachable");
        assert!(sim.stats().unreachable > 0);
        assert_eq!(counts.failed, 0);
    }
}

/// The broker restarts during the workload, twice, once with downtime.
/// Queued and in-flight requests are lost with it; clients resend them on
/// new connections, workers register again.
#[test]
fn broker_restart() {
    for (lanes, seed) in runs(3) {
        let mut c = SimConfig::new(seed);
        c.service_time = ms(20);
        c.client_tries = 5;
        let mut sim = fleet(c, lanes);
        workload(&mut sim, 200);
        sim.run_for(ms(700), STEPS).unwrap();
        sim.restart_broker(0);
        sim.run_for(Duration::from_secs(4), STEPS).unwrap();
        sim.stop_broker(0, Duration::from_secs(3));
        let (sim, counts) = finish(sim, "broker restart");
        assert_eq!(sim.stats().broker_restarts, 2);
        assert!(sim.stats().workers_ready >= 12, "every worker registered with each broker");
        assert!(sim.stats().client_reconnects > 0);
        assert_eq!(counts.failed, 0, "five tries outlast the downtime");
        assert_eq!(counts.answered, 800);
    }
}

/// Everything at once, for several seeds.
#[test]
fn everything_at_once() {
    for (lanes, seed) in runs(4) {
        let mut c = SimConfig::new(seed);
        c.link = Link::new(ms(2), ms(8));
        c.faults = Faults { reorder: 0.05, reorder_delay: ms(100), ghost_requests: 0.05, ..Faults::default() };
        c.service_time = ms(30);
        let mut sim = fleet(c, lanes);
        for j in [0, 2, 4] {
            sim.net.set_link(Node::Worker(j), Link::new(ms(2), ms(8)).lossy(0.002));
        }
        sim.net.set_link(Node::Client(2), Link::new(ms(2), ms(8)).lossy(0.01));
        sim.set_window(2, 1);
        workload(&mut sim, 250);
        sim.run_for(Duration::from_secs(1), STEPS).unwrap();
        sim.crash_worker(seed as usize % 6);
        sim.partition(Node::Client(1), Duration::from_secs(3));
        sim.run_for(Duration::from_secs(2), STEPS).unwrap();
        sim.restart_worker(seed as usize % 6);
        sim.partition(Node::Worker(5 - seed as usize % 6), Duration::from_secs(9));
        sim.run_for(Duration::from_secs(2), STEPS).unwrap();
        sim.restart_broker(0);
        finish(sim, "everything");
    }
}

/// Duplication and reordering *within* a connection, which ZeroMQ never
/// does, break MDP's order-based reply matching (a reply is taken for the
/// answer to another request): the checker must notice, with lanes too.
/// This shows the invariants are not vacuous.
#[test]
fn in_connection_faults_are_caught() {
    for lanes in FLEETS {
        for (name, faults) in [
            ("duplication", Faults { duplicate: 0.05, ..Faults::default() }),
            (
                "in-connection reordering",
                Faults { reorder: 0.3, reorder_delay: ms(20), fifo: false, ..Faults::default() },
            ),
        ] {
            let mut c = SimConfig::new(11);
            c.faults = faults;
            let mut sim = fleet(c, lanes);
            sim.checker.panic_on_violation = false;
            workload(&mut sim, 200);
            let _ = sim.quiesce(STEPS);
            let violations = sim.checker.violations();
            assert!(!violations.is_empty(), "{name}, lanes {lanes:?}: the checker saw nothing wrong");
            println!("{name}, lanes {lanes:?}: {} violations, first: {}", violations.len(), violations[0]);
        }
    }
}

/// Loss in the middle of the connection of a client with many requests
/// outstanding per service used to shift its later replies onto the wrong
/// requests. The client now keeps one request per service on each lane's
/// connection, so a lost message costs a timeout and a resend, never a
/// wrong answer.
#[test]
fn loss_on_a_pipelining_client_costs_time_not_correctness() {
    for lanes in FLEETS {
        let c = SimConfig::new(11);
        let mut sim = fleet(c, lanes);
        sim.net.set_link(Node::Client(1), Link::default().lossy(0.05));
        workload(&mut sim, 200);
        let (sim, counts) = finish(sim, "loss on a pipelining client");
        assert!(sim.net_stats().lost > 10, "{:?}", sim.net_stats());
        assert_eq!(counts.answered + counts.failed, 4 * 200, "every request answered or reported: {counts:?}");
    }
}

/// The applications cancel a fifth of their requests, each within 300 ms
/// of issuing it, under latency, reordering across connections, ghost
/// requests, loss on every link and a worker crash: every cancelled request
/// is accounted for, never named by an event again, and its lane replaced
/// if it was on the wire (the checker holds the client to that after each
/// step); the others are answered or reported failed.
#[test]
fn cancelled_requests_under_faults() {
    for (lanes, seed) in runs(3) {
        let mut c = SimConfig::new(seed);
        c.link = Link::new(ms(2), ms(6));
        c.faults = Faults { reorder: 0.05, reorder_delay: ms(100), ghost_requests: 0.05, ..Faults::default() };
        c.broker.max_job_time = Some(Duration::from_secs(5));
        c.service_time = ms(40);
        c.cancel_fraction = 0.2;
        c.cancel_delay = ms(300);
        // Few waiting in the client, so that many cancels hit requests on the wire.
        c.client_window = 4;
        let mut sim = fleet(c, lanes);
        for i in 0..sim.clients() {
            sim.net.set_link(Node::Client(i), Link::new(ms(2), ms(6)).lossy(0.005));
        }
        for j in 0..sim.workers() {
            sim.net.set_link(Node::Worker(j), Link::new(ms(2), ms(6)).lossy(0.002));
        }
        workload(&mut sim, 250);
        sim.run_for(Duration::from_secs(1), STEPS).unwrap();
        sim.crash_worker(seed as usize % 6);
        let (sim, counts) = finish(sim, "cancel under faults");
        let stats = sim.stats();
        assert!(stats.cancelled > 100, "{stats:?}");
        assert_eq!(counts.cancelled, stats.cancelled);
        assert_eq!(counts.answered + counts.failed + counts.cancelled, 1000, "{counts:?}");
        // Cancelling a request on the wire replaces its lane.
        assert!(stats.cancelled_on_wire > 10, "{stats:?}");
        assert!(stats.client_reconnects >= stats.cancelled_on_wire, "{stats:?}");
    }
}

/// With tiny queue limits, busy workers crash while their service's queue is
/// full: their requests go back to the queue past `max_queue_total`, as
/// `BrokerConfig` documents, and the checker holds the broker to the bound it
/// promises instead (queued + at workers ≤ max_queue_total + max_workers).
/// Requests refused at the limit are resent by their clients or reported
/// failed; none is silently lost.
#[test]
fn requeue_past_a_full_queue_stays_within_the_held_bound() {
    let mut c = SimConfig::new(11);
    c.link = Link::new(ms(1), ms(2));
    c.broker.max_queue_total = 2;
    c.broker.max_queue_per_service = 2;
    c.service_time = ms(50);
    c.partials = 0;
    let mut sim = Sim::new(c);
    for _ in 0..2 {
        sim.add_worker(alpha(), Dialect::V02);
    }
    for _ in 0..6 {
        let i = sim.add_client(Dialect::V02);
        sim.submit(i, (0..20).map(|_| alpha()));
    }
    let full =
        |s: &Sim| s.broker(0).stats().queued_requests == 2 && (0..2).all(|j| s.worker(j).is_some_and(|w| w.is_busy()));
    sim.run_until(full, STEPS).unwrap();
    sim.crash_worker(0);
    sim.crash_worker(1);
    let mut most_queued = 0;
    sim.run_until(
        |s| {
            most_queued = most_queued.max(s.broker(0).stats().queued_requests);
            s.broker(0).stats().idle_workers + s.broker(0).stats().busy_workers == 0
        },
        STEPS,
    )
    .unwrap();
    assert_eq!(most_queued, 4, "both crashed workers' requests went back to the full queue");
    sim.restart_worker(0);
    sim.restart_worker(1);
    let (sim, counts) = finish(sim, "re-queue past a full queue");
    assert_eq!(counts.answered + counts.failed, 120);
    assert!(sim.stats().requeued >= 2, "{:?}", sim.stats());
}
