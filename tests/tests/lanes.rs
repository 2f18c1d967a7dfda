//! Lanes, parallel dispatch and fairness, through the public API under
//! virtual time.
//!
//! * One client with 8 lanes keeps 8 workers busy at once; with one lane it
//!   keeps one busy per service, however many requests it has outstanding.
//! * A raw client pipelining 64 requests on one connection gets every idle
//!   worker; `max_in_flight_per_client = Some(1)` serves it one request at a
//!   time, in order. The limit is per connection and service, so a client
//!   with 8 lanes (8 connections) keeps its 8 workers under it.
//! * A light client, one request at a time, beside a flooding client: each
//!   of its requests is dispatched within a bounded number of dispatches
//!   and of virtual time, and the workers are shared.
//! * Lanes are independent: a timeout replaces only its own lane.

use std::time::Duration;

use bytes::Bytes;
use mdp_core::{BrokerEvent, Dialect, Lane, PeerId};
use mdp_testkit::{Link, Node, Sim, SimConfig};

const STEPS: u64 = 1_000_000;
const WORKERS: usize = 8;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn echo() -> Bytes {
    Bytes::from_static(b"echo")
}

/// 8 workers of `echo` (every dialect), 50 ms per request, no PARTIALs.
fn eight_workers(config: SimConfig) -> Sim {
    let mut sim = Sim::new(config);
    for j in 0..WORKERS {
        sim.add_worker(echo(), Dialect::ALL[j % 3]);
    }
    sim
}

fn config(seed: u64) -> SimConfig {
    let mut c = SimConfig::new(seed);
    c.service_time = ms(50);
    c.partials = 0;
    c.client_window = 64;
    c.record_broker_events = true;
    c
}

/// Runs to quiescence; returns the most workers busy at once while client
/// `i` had at least 8 requests outstanding (`None`: the raw client 0).
fn most_busy(sim: &mut Sim, i: Option<usize>) -> usize {
    let mut most = 0;
    sim.run_until(
        |s| {
            let outstanding = i.map_or_else(|| s.raw_outstanding(0), |i| s.client(i).outstanding());
            if outstanding >= 8 {
                most = most.max(s.broker(0).stats().busy_workers);
            }
            s.is_quiet()
        },
        STEPS,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    sim.finish();
    most
}

#[test]
fn eight_lanes_keep_eight_workers_busy() {
    for dialect in Dialect::ALL {
        let mut sim = eight_workers(config(1));
        let c = sim.add_client_with_lanes(dialect, 8);
        sim.submit(c, std::iter::repeat_n(echo(), 64));
        assert_eq!(most_busy(&mut sim, Some(c)), 8, "{dialect}: 8 lanes, 8 requests at workers at once");
        // 64 requests in 8 rounds of 50 ms, plus round trips.
        assert!(sim.elapsed() < ms(500), "{dialect}: 8 lanes took {:?}", sim.elapsed());
        assert_eq!(sim.counts().answered, 64);

        let mut sim = eight_workers(config(1));
        let c = sim.add_client_with_lanes(dialect, 1);
        sim.submit(c, std::iter::repeat_n(echo(), 64));
        assert_eq!(most_busy(&mut sim, Some(c)), 1, "{dialect}: one lane, one request per service at a time");
        assert!(sim.elapsed() >= ms(64 * 50), "{dialect}: one lane took {:?}", sim.elapsed());
        assert_eq!(sim.counts().answered, 64);
    }
}

/// A raw client that sends 64 requests for one service on one connection
/// before any reply comes back, as a third-party client pipelining on one
/// DEALER socket does, gets all 8 workers, and all 64 answers.
#[test]
fn a_raw_client_pipelining_64_requests_gets_every_worker() {
    for dialect in Dialect::ALL {
        let mut sim = eight_workers(config(2));
        let k = sim.add_raw_client(dialect);
        sim.submit_raw(k, std::iter::repeat_n(echo(), 64));
        assert_eq!(most_busy(&mut sim, None), 8, "{dialect}");
        assert_eq!(sim.raw_answers(k).len(), 64, "{dialect}");
        assert!(sim.elapsed() < ms(500), "{dialect}: took {:?}", sim.elapsed());
    }
}

/// Raw clients of every dialect pipeline 100 requests each on one
/// connection, beside a 3-lane client, while workers crash mid-request and
/// come back: the crashed workers' requests go back to the queue and are
/// answered, so a raw client, which never resends, still gets every answer
/// (the simulation's `finish` checks it), with or without a limit in flight.
/// Workers send no PARTIALs here: a request whose PARTIALs reached its
/// client is dropped instead, and only a client that resends recovers it.
#[test]
fn raw_clients_lose_nothing_when_workers_crash() {
    for seed in 0..12u64 {
        let mut c = config(seed);
        c.link = Link::new(ms(1), ms(5));
        c.service_time = ms(20 + seed % 50);
        // Requests held by a crashed worker wait out its liveness window.
        c.broker.request_timeout = Duration::from_secs(120);
        c.broker.max_in_flight_per_client = std::num::NonZeroUsize::new(seed as usize % 4);
        let mut sim = Sim::new(c);
        for j in 0..6 {
            sim.add_worker(echo(), Dialect::ALL[j % 3]);
        }
        for d in Dialect::ALL {
            let k = sim.add_raw_client(d);
            sim.submit_raw(k, std::iter::repeat_n(echo(), 100));
        }
        let c = sim.add_client_with_lanes(Dialect::V02, 3);
        sim.submit(c, std::iter::repeat_n(echo(), 100));
        for r in 0..3 {
            let j = ((seed + r) % 6) as usize;
            sim.run_until(|s| s.worker(j).is_some_and(|w| w.is_busy()), STEPS).unwrap();
            sim.crash_worker(j);
            sim.run_for(ms(100), STEPS).unwrap();
            sim.restart_worker(j);
        }
        sim.quiesce(STEPS).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let counts = sim.finish();
        assert_eq!(counts.answered, 400);
        assert!(sim.stats().requeued >= 3, "seed {seed}: {:?}", sim.stats());
    }
}

/// Whether the tags in `answers` (`r0.{n}`) come in request order.
fn in_order(answers: &[Bytes]) -> bool {
    let n: Vec<u64> = answers.iter().map(|t| std::str::from_utf8(&t[3..]).unwrap().parse().unwrap()).collect();
    n.windows(2).all(|w| w[0] < w[1])
}

/// `max_in_flight_per_client` counts per connection and service. What is
/// asserted, with 8 workers whose links have jitter (so workers finish in
/// another order than they started):
///
/// * a raw client with 64 requests for one service on one connection:
///   without a limit, 8 at workers at once and the answers out of order;
///   with `Some(1)`, at most 1 at a time and the answers in request order;
///   with `Some(2)`, at most 2;
/// * the same raw client with 32 requests for each of two services, under
///   `Some(1)`: 2 at once, one per service;
/// * a client with 8 lanes under `Some(1)`: still 8 at once, since each
///   lane is its own connection with one request per service on it.
#[test]
fn max_in_flight_per_client_counts_per_connection_and_service() {
    let jittery = |limit: Option<usize>| {
        let mut c = config(3);
        c.link = Link::new(ms(1), ms(10));
        c.broker.max_in_flight_per_client = limit.and_then(std::num::NonZeroUsize::new);
        c
    };
    let raw = |limit, services: &[&'static [u8]]| {
        let mut sim = eight_workers(jittery(limit));
        for s in services.iter().skip(1) {
            for j in 0..WORKERS {
                sim.add_worker(Bytes::from_static(s), Dialect::ALL[j % 3]);
            }
        }
        let k = sim.add_raw_client(Dialect::V02);
        let per = 64 / services.len();
        sim.submit_raw(k, services.iter().flat_map(|s| std::iter::repeat_n(Bytes::from_static(s), per)));
        let most = most_busy(&mut sim, None);
        (most, in_order(sim.raw_answers(k)))
    };

    assert_eq!(raw(None, &[b"echo"]), (8, false), "no limit: every worker, answers out of order");
    assert_eq!(raw(Some(1), &[b"echo"]), (1, true), "Some(1): one at a time, in request order");
    assert_eq!(raw(Some(2), &[b"echo"]).0, 2, "Some(2): two at a time");
    assert_eq!(raw(Some(1), &[b"echo", b"other"]).0, 2, "Some(1): one per service");

    let mut sim = eight_workers(jittery(Some(1)));
    let c = sim.add_client_with_lanes(Dialect::V02, 8);
    sim.submit(c, std::iter::repeat_n(echo(), 64));
    assert_eq!(most_busy(&mut sim, Some(c)), 8, "Some(1) with 8 lanes: one per lane, 8 at once");
}

/// Dispatches of client connections `of` in `log`, and of everyone.
fn dispatches(log: &[(Duration, usize, BrokerEvent)], of: impl Fn(&PeerId) -> bool) -> (usize, usize) {
    let all = log.iter().filter(|(_, _, e)| matches!(e, BrokerEvent::RequestDispatched { .. })).count();
    let mine =
        log.iter().filter(|(_, _, e)| matches!(e, BrokerEvent::RequestDispatched { client, .. } if of(client))).count();
    (mine, all)
}

/// Runs light client `light`'s 20 requests one at a time beside a flood
/// already under way. Returns, worst over its requests, how many other
/// requests were dispatched between its sending one and that one's
/// dispatch, and how long it took to be answered; the dispatches of the
/// light client and of everyone meanwhile; and whether the flood was still
/// going when the light client was done.
fn light_beside_a_flood(sim: &mut Sim, light: usize) -> (usize, Duration, (usize, usize), bool) {
    // Any connection the light client had (it reconnects if a request
    // times out).
    let is_light = |sim: &Sim, peer: &PeerId| sim.net.node_of(peer) == Some(Node::Client(light));
    let start = sim.broker_log().len();
    let (mut worst_ahead, mut worst_wait) = (0, Duration::ZERO);
    for _ in 0..20 {
        let (n0, t0) = (sim.broker_log().len(), sim.elapsed());
        sim.request(light, echo()).unwrap();
        sim.run_until(|s| s.client(light).outstanding() == 0, STEPS).unwrap_or_else(|e| panic!("{e}"));
        let log = &sim.broker_log()[n0..];
        let at = log
            .iter()
            .position(|(_, _, e)| matches!(e, BrokerEvent::RequestDispatched { client, .. } if is_light(sim, client)))
            .expect("the light request was dispatched");
        worst_ahead = worst_ahead.max(dispatches(&log[..at], |_| true).1);
        worst_wait = worst_wait.max(sim.elapsed() - t0);
    }
    let shared = dispatches(&sim.broker_log()[start..], |c| is_light(sim, c));
    (worst_ahead, worst_wait, shared, !sim.is_quiet())
}

/// Fairness between a flooding client and a light one. 4 workers, 50 ms
/// per request. Each dispatch serves the next client connection in turn,
/// so a light request waits for at most one turn of every other connection
/// with requests queued: a raw client flooding on one connection puts at
/// most 1 dispatch ahead of it (a broker serving requests in arrival order
/// would put hundreds), a client with 8 lanes at most 8. Each light request
/// is then answered within ceil((ahead + 1) / 4 workers) + 1 service times
/// and a few round trips, while the flood keeps the other workers.
#[test]
fn a_light_client_beside_a_flood_is_served_within_a_turn() {
    let mut c = config(4);
    c.client_window = 256;
    let workers = 4;
    for (flood_lanes, ahead_bound) in [(None, 1), (Some(8), 8)] {
        let mut sim = Sim::new(c.clone());
        for j in 0..workers {
            sim.add_worker(echo(), Dialect::ALL[j % 3]);
        }
        match flood_lanes {
            None => {
                let k = sim.add_raw_client(Dialect::V02);
                sim.submit_raw(k, std::iter::repeat_n(echo(), 400));
            }
            Some(lanes) => {
                let f = sim.add_client_with_lanes(Dialect::V02, lanes);
                sim.submit(f, std::iter::repeat_n(echo(), 400));
            }
        }
        let light = sim.add_client_with_lanes(Dialect::V01, 1);
        sim.run_for(ms(200), STEPS).unwrap();
        let (ahead, wait, (light_dispatches, all), flooding) = light_beside_a_flood(&mut sim, light);
        println!("flood lanes {flood_lanes:?}: at most {ahead} dispatches ahead, waited at most {wait:?}; light {light_dispatches} of {all} dispatches");
        assert!(ahead <= ahead_bound, "flood {flood_lanes:?}: {ahead} dispatches ahead of a light request");
        // Waiting for the (ahead + 1)th worker to free up takes at most
        // ceil((ahead + 1) / workers) service times, then its own.
        let rounds = (ahead_bound + workers).div_ceil(workers) as u32 + 1;
        let bound = c.service_time * rounds + ms(20);
        assert!(wait <= bound, "flood {flood_lanes:?}: a light request took {wait:?}, more than {bound:?}");
        // The workers are shared: the light client got its 20 dispatches,
        // the flood the rest, most of them.
        assert_eq!(light_dispatches, 20);
        assert!(all - light_dispatches >= 3 * light_dispatches, "flood {flood_lanes:?}: {all} dispatches in all");
        assert!(flooding, "the flood outlasts the light client");
        sim.quiesce(STEPS).unwrap();
        sim.finish();
    }
}

/// A majortomo lane carries one request at a time, whatever its service:
/// with two lanes, requests for two services go out side by side, and a
/// third waits in the client until a lane is free.
#[test]
fn majortomo_lanes_carry_one_request_each() {
    let mut sim = eight_workers(config(6));
    let other = Bytes::from_static(b"other");
    sim.add_worker(other.clone(), Dialect::V02);
    let c = sim.add_client_with_lanes(Dialect::Majortomo, 2);
    let ids = [echo(), other.clone(), other].map(|s| sim.request(c, s).unwrap());
    let lanes = ids.map(|id| sim.client(c).lane_of(id));
    assert_eq!(lanes, [Some(Lane(0)), Some(Lane(1)), None]);
    assert_eq!(sim.client(c).on_wire(), 2);
    sim.quiesce(STEPS).unwrap();
    assert_eq!(sim.finish().answered, 3);
}

/// A timeout replaces only its own lane: the message carrying lane 0's
/// request is lost, lane 1's request is answered at once on its original
/// connection, and lane 0 alone reconnects and resends.
#[test]
fn a_timeout_replaces_only_its_own_lane() {
    let mut sim = eight_workers(config(5));
    let c = sim.add_client_with_lanes(Dialect::V02, 2);
    sim.run_for(ms(10), STEPS).unwrap();
    let before = sim.client_peers(c).to_vec();
    sim.net.drop_next(Node::Client(c), 1);
    let first = sim.request(c, echo()).unwrap();
    let second = sim.request(c, echo()).unwrap();
    assert_eq!((sim.client(c).lane_of(first), sim.client(c).lane_of(second)), (Some(Lane(0)), Some(Lane(1))));
    sim.run_until(|s| !s.client(c).is_outstanding(second), STEPS).unwrap();
    assert!(sim.elapsed() < ms(100), "lane 1 was not held up by lane 0");
    assert_eq!(sim.stats().client_reconnects, 0);
    sim.quiesce(STEPS).unwrap();
    let counts = sim.finish();
    assert_eq!((counts.answered, counts.failed), (2, 0));
    assert_eq!(sim.stats().client_reconnects, 1);
    assert_ne!(sim.client_peer(c, Lane(0)), &before[0], "lane 0 replaced");
    assert_eq!(sim.client_peer(c, Lane(1)), &before[1], "lane 1 untouched");
    assert!(sim.elapsed() >= sim.config().client_timeout);
}
