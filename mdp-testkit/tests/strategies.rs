//! The proptest strategies (`mdp_testkit::strategies`) give what their docs
//! say: commands valid in their dialect, hostile frames a real broker
//! survives, fault plans within their spec, and plans a small simulation
//! recovers from.
#![cfg(feature = "proptest")]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mdp_core::{Broker, BrokerCommand, BrokerConfig, BrokerEvent, Dialect, Multipart, PeerCommand, PeerId};
use mdp_testkit::strategies::{
    body, broker_command, broker_frames, dialect, fault, fault_plan, hostile_frames, identity, link, net_faults,
    peer_command, peer_frames, service, timed_fault,
};
use mdp_testkit::{DrawSpec, Fault, FaultPlan, Node, Sim, SimConfig};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

const STEPS: u64 = 1_000_000;

proptest! {
    #[test]
    fn peer_commands_encode_in_their_dialect_and_round_trip(
        (d, command) in dialect().prop_flat_map(|d| (Just(d), peer_command(d)))
    ) {
        let frames = command.clone().encode(d);
        prop_assert!(frames.is_ok(), "{}: {:?}: {:?}", d, command, frames);
        prop_assert_eq!(PeerCommand::decode(frames.unwrap()), Ok((d, command)));
    }

    #[test]
    fn broker_commands_encode_in_their_dialect_and_round_trip(
        (d, command) in dialect().prop_flat_map(|d| (Just(d), broker_command(d)))
    ) {
        let frames = command.clone().encode(d);
        prop_assert!(frames.is_ok(), "{}: {:?}: {:?}", d, command, frames);
        prop_assert_eq!(BrokerCommand::decode(frames.unwrap()), Ok((d, command)));
    }

    #[test]
    fn frames_decode_in_their_dialect(
        (d, peer, broker) in dialect().prop_flat_map(|d| (Just(d), peer_frames(d), broker_frames(d)))
    ) {
        prop_assert_eq!(PeerCommand::decode(peer).map(|(d, _)| d), Ok(d));
        prop_assert_eq!(BrokerCommand::decode(broker).map(|(d, _)| d), Ok(d));
    }

    #[test]
    fn names_and_bodies_are_in_range(service in service(), identity in identity(), body in body()) {
        prop_assert!((1..=16).contains(&service.len()), "{:?}", service);
        prop_assert!((1..=32).contains(&identity.0.len()), "{}", identity);
        prop_assert!(body.len() <= 4 && body.iter().all(|f| f.len() <= 32), "{:?}", body);
    }

    #[test]
    fn links_and_net_faults_are_sane(link in link(), faults in net_faults()) {
        prop_assert!((0.0..=0.2).contains(&link.loss), "{:?}", link);
        prop_assert!(link.max_delay() <= Duration::from_millis(70), "{:?}", link);
        prop_assert!((0.0..=0.5).contains(&faults.reorder), "{:?}", faults);
        prop_assert!((0.0..=0.2).contains(&faults.ghost_requests), "{:?}", faults);
        // Only what ZeroMQ can show.
        prop_assert!(faults.duplicate == 0.0 && faults.fifo, "{:?}", faults);
    }
}

// ---------------------------------------------------------------------------
// Hostile frames against a real broker

/// Small limits, so that hostile and valid traffic reach them.
fn small_limits() -> BrokerConfig {
    let mut c = BrokerConfig::default();
    c.max_services = 3;
    c.max_workers = 3;
    c.max_queue_per_service = 3;
    c.max_queue_total = 5;
    c.max_message_frames = 8;
    c.max_message_bytes = 160;
    c.max_queued_bytes = 1500;
    c.max_queued_bytes_per_service = 1000;
    c.max_service_name_bytes = 12;
    c.hash_seed = Some(21);
    c
}

#[derive(Debug, Clone)]
enum Input {
    /// Frames from one of the peers.
    Message(Index, Multipart),
    /// Time passes, then `handle_timeout`.
    Tick(u64),
}

fn input() -> impl Strategy<Value = Input> {
    let valid = dialect().prop_flat_map(peer_frames);
    // READYs and REQUESTs for one service, so that requests reach workers.
    let echo = || Bytes::from_static(b"echo");
    let ready = dialect().prop_map(move |d| PeerCommand::Ready { service: echo() }.encode(d).unwrap());
    let request = (dialect(), body()).prop_map(move |(d, mut body)| {
        body.push(Bytes::from_static(b"x"));
        PeerCommand::Request { service: echo(), body }.encode(d).unwrap()
    });
    prop_oneof![
        4 => (any::<Index>(), hostile_frames()).prop_map(|(p, f)| Input::Message(p, f)),
        2 => (any::<Index>(), valid).prop_map(|(p, f)| Input::Message(p, f)),
        1 => (any::<Index>(), ready).prop_map(|(p, f)| Input::Message(p, f)),
        2 => (any::<Index>(), request).prop_map(|(p, f)| Input::Message(p, f)),
        1 => (0..10_000u64).prop_map(Input::Tick),
    ]
}

/// Drains the broker (a bounded number of times: more is a livelock) and
/// checks every transmit decodes, and the stats keep the limits.
fn drain(
    broker: &mut Broker,
    registered: &mut HashMap<PeerId, Bytes>,
    requeued: &mut usize,
) -> Result<(), TestCaseError> {
    let max = broker.config().clone();
    let mut n = 0;
    while let Some(t) = broker.poll_transmit() {
        n += 1;
        prop_assert!(n < 1000, "poll_transmit does not end");
        let decoded = BrokerCommand::decode(t.frames.clone());
        prop_assert!(decoded.is_ok(), "the broker sent what does not decode: {:?}: {:?}", t.frames, decoded);
        prop_assert!(t.frames.len() <= max.max_message_frames + 6, "{:?}", t.frames);
    }
    let mut n = 0;
    while let Some(event) = broker.poll_event() {
        n += 1;
        prop_assert!(n < 1000, "poll_event does not end");
        match event {
            BrokerEvent::WorkerReady { worker, service, .. } => {
                prop_assert!(registered.insert(worker, service).is_none(), "registered twice");
            }
            BrokerEvent::WorkerGone { worker, service, .. } => {
                prop_assert_eq!(registered.remove(&worker), Some(service));
            }
            BrokerEvent::RequestRequeued { .. } => *requeued += 1,
            _ => {}
        }
    }
    let stats = broker.stats();
    for (worker, service) in registered.iter() {
        prop_assert!(broker.is_worker(worker), "{} registered, the broker says not", worker);
        prop_assert!(broker.worker_count(service) > 0);
    }
    prop_assert_eq!(stats.idle_workers + stats.busy_workers, registered.len(), "{:?}", stats);
    prop_assert!(stats.services <= max.max_services, "{:?}", stats);
    prop_assert!(registered.len() <= max.max_workers, "{:?}", stats);
    prop_assert!(stats.queued_requests <= max.max_queue_total + *requeued, "{:?}", stats);
    prop_assert!(stats.queued_requests + stats.busy_workers <= max.max_queue_total + max.max_workers, "{:?}", stats);
    prop_assert!(stats.queued_bytes + stats.held_bytes <= max.max_queued_bytes, "{:?}", stats);
    prop_assert!(stats.queued_requests > 0 || stats.queued_bytes == 0, "bytes of nothing queued: {:?}", stats);
    prop_assert!(stats.busy_workers > 0 || stats.held_bytes == 0, "bytes held by no one: {:?}", stats);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn hostile_frames_never_break_a_broker(peers in vec(identity(), 1..=4), inputs in vec(input(), 1..60)) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut broker = Broker::new(small_limits(), now).unwrap();
        let (mut registered, mut requeued) = (HashMap::new(), 0);
        let (mut misbehaviors, mut hostile) = (0, 0);
        for input in inputs {
            match input {
                Input::Message(p, frames) => {
                    hostile += u64::from(PeerCommand::decode(frames.clone()).is_err());
                    broker.handle_message(now, peers[p.index(peers.len())].clone(), frames);
                }
                Input::Tick(ms) => {
                    now += Duration::from_millis(ms);
                    broker.handle_timeout(now);
                }
            }
            drain(&mut broker, &mut registered, &mut requeued)?;
            if let Some(t) = broker.poll_timeout() {
                prop_assert!(t >= now, "poll_timeout in the past");
            }
            misbehaviors = broker.stats().misbehaviors + broker.stats().limits_hit;
        }
        // Every message that does not decode is rejected (as malformed, or
        // before it is decoded, as too large).
        prop_assert!(misbehaviors >= hostile, "{} undecodable, {} rejected", hostile, misbehaviors);
    }
}

// ---------------------------------------------------------------------------
// Fault plans

/// One broker, two workers, one client, and some of every fault.
fn spec() -> DrawSpec {
    let mut spec = DrawSpec::new(Duration::from_secs(4), 2, 1);
    (spec.worker_crashes, spec.broker_restarts, spec.broker_stops, spec.partitions) = (2, 1, 1, 2);
    spec.max_down = Duration::from_secs(3);
    spec
}

/// Whether `fault` names only peers of `spec` and lasts at most `max_down`.
fn within(spec: &DrawSpec, fault: &Fault) -> bool {
    let node_ok = |node: &Node| match node {
        Node::Worker(j) => *j < spec.workers,
        Node::Client(i) => *i < spec.clients,
        Node::Raw(_) | Node::Ghost => false,
    };
    match fault {
        Fault::CrashWorker(j) | Fault::RestartWorker(j) => *j < spec.workers,
        Fault::RestartBroker(b) => *b < spec.brokers,
        Fault::StopBroker { broker, down_for } => *broker < spec.brokers && *down_for <= spec.max_down,
        Fault::KillBroker(_) => false,
        Fault::Partition { node, duration } => node_ok(node) && *duration <= spec.max_down,
        Fault::DropNext { node, count } => node_ok(node) && (1..=4).contains(count),
        Fault::SetLink { node, link } => node_ok(node) && (0.0..=1.0).contains(&link.loss),
        Fault::SetFaults(f) => f.duplicate == 0.0 && f.fifo,
        Fault::StopFaults => true,
    }
}

/// Specs with few and with no peers of each kind.
fn any_spec() -> impl Strategy<Value = DrawSpec> {
    (0..4usize, 0..3usize, 0..3usize, 0..4u32, 0..3u32, 0..3u32, 0..4u32, 0..5_000u64, 0..3_000u64).prop_map(
        |(workers, clients, brokers, crashes, restarts, stops, partitions, span, down)| {
            let mut spec = DrawSpec::new(Duration::from_millis(span), workers, clients);
            spec.brokers = brokers;
            (spec.worker_crashes, spec.broker_restarts, spec.broker_stops, spec.partitions) =
                (crashes, restarts, stops, partitions);
            spec.max_down = Duration::from_millis(down);
            spec
        },
    )
}

proptest! {
    #[test]
    fn a_plan_names_only_peers_of_its_spec_within_its_span(
        (spec, plan) in any_spec().prop_flat_map(|s| (Just(s.clone()), fault_plan(&s)))
    ) {
        let mut counts = [0u32; 4];
        for (at, fault) in &plan.faults {
            prop_assert!(*at <= spec.span, "{:?} after the span {:?}", at, spec.span);
            prop_assert!(within(&spec, fault), "{:?} not in {:?}", fault, spec);
            match fault {
                Fault::CrashWorker(_) => counts[0] += 1,
                Fault::RestartBroker(_) => counts[1] += 1,
                Fault::StopBroker { .. } => counts[2] += 1,
                Fault::Partition { .. } => counts[3] += 1,
                Fault::RestartWorker(_) => {}
                other => return Err(TestCaseError::fail(format!("not a fault a plan draws: {other:?}"))),
            }
        }
        let restarts = plan.faults.iter().filter(|(_, f)| matches!(f, Fault::RestartWorker(_))).count();
        prop_assert_eq!(restarts as u32, counts[0], "every crash has its restart");
        let max = [spec.worker_crashes, spec.broker_restarts, spec.broker_stops, spec.partitions];
        prop_assert!(counts.iter().zip(max).all(|(n, max)| *n <= max), "{:?} > {:?}", counts, max);
        // Each crash comes before (or with) its restart, of the same worker.
        for pair in plan.faults.windows(2) {
            if let [(crash, Fault::CrashWorker(a)), (restart, Fault::RestartWorker(b))] = pair {
                prop_assert!(a == b && crash <= restart, "{:?}", pair);
            }
        }
    }

    #[test]
    fn a_fault_names_only_peers_of_its_spec(
        (spec, fault) in any_spec().prop_flat_map(|s| (Just(s.clone()), fault(&s)))
    ) {
        prop_assert!(within(&spec, &fault), "{:?} not in {:?}", fault, spec);
    }

    #[test]
    fn a_timed_fault_names_only_peers_of_its_spec_within_its_span(
        (spec, (at, fault)) in any_spec().prop_flat_map(|s| (Just(s.clone()), timed_fault(&s)))
    ) {
        prop_assert!(at <= spec.span, "{:?} after the span {:?}", at, spec.span);
        prop_assert!(within(&spec, &fault), "{:?} not in {:?}", fault, spec);
    }
}

/// `n` values of `strategy`, the same on every run.
fn sample<S: Strategy>(strategy: S, n: usize) -> Vec<S::Value> {
    let mut runner = TestRunner::deterministic();
    (0..n).map(|_| strategy.new_tree(&mut runner).unwrap().current()).collect()
}

#[test]
fn a_fault_is_of_every_kind_its_spec_has_peers_for() {
    let kinds = |spec: &DrawSpec| {
        let mut kinds: Vec<_> = sample(fault(spec), 2_000).iter().map(std::mem::discriminant).collect();
        kinds.sort_by_key(|k| format!("{k:?}"));
        kinds.dedup();
        kinds.len()
    };
    // Every kind but KillBroker.
    assert_eq!(kinds(&spec()), 9);
    // No peers: only the network's faults and their end.
    let mut none = DrawSpec::new(Duration::from_secs(1), 0, 0);
    none.brokers = 0;
    assert_eq!(kinds(&none), 2);
}

/// Hostile frames fail to decode in every way the codec tells apart, and
/// some are valid after all.
#[test]
fn hostile_frames_break_messages_in_every_way() {
    let mut errors = std::collections::BTreeSet::new();
    let mut valid = 0;
    for frames in sample(hostile_frames(), 5_000) {
        match PeerCommand::decode(frames) {
            Ok(_) => valid += 1,
            Err(e) => {
                errors.insert(format!("{e:?}").split([' ', '{', '(']).next().unwrap_or_default().to_owned());
            }
        }
    }
    let expected = ["Empty", "EmptyService", "Missing", "TrailingFrames", "Unexpected", "UnknownCommand"];
    assert_eq!(errors.iter().map(String::as_str).collect::<Vec<_>>(), expected);
    assert!((500..2_500).contains(&valid), "{valid} of 5,000 valid");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// One broker, two workers and a client; a plan of faults while the
    /// client's requests go on, and a few more faults of any kind. Then the
    /// faults stop: every request ends answered or failed, and after
    /// recovery every new one is answered.
    #[test]
    fn a_small_sim_recovers_from_a_plan(
        seed in any::<u64>(),
        plan in fault_plan(&spec()),
        more in vec(timed_fault(&spec()), 0..=3),
        (client, w0, w1) in (dialect(), dialect(), dialect()),
    ) {
        let mut config = SimConfig::new(seed);
        // Spread the requests over the span of the faults.
        config.client_interval = Duration::from_millis(200);
        let mut sim = Sim::new(config);
        let echo = Bytes::from_static(b"echo");
        sim.add_worker(echo.clone(), w0);
        sim.add_worker(echo.clone(), w1);
        let c = sim.add_client(client);
        let plan = FaultPlan { faults: plan.faults.into_iter().chain(more).collect() };
        sim.schedule_plan(&plan);
        sim.submit(c, std::iter::repeat_n(echo.clone(), 20));

        // Past the last fault, then no more.
        sim.run_for(spec().span, STEPS).map_err(|e| TestCaseError::fail(e.to_string()))?;
        sim.stop_faults();
        sim.quiesce(STEPS).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let before = sim.finish();
        prop_assert_eq!(before.issued, 20);
        prop_assert_eq!(before.answered + before.failed, 20, "{:?}", before);

        sim.await_recovery(STEPS).map_err(|e| TestCaseError::fail(e.to_string()))?;
        // A fresh worker, in case the old ones have not registered again yet.
        sim.add_worker(echo.clone(), Dialect::V02);
        for _ in 0..3 {
            sim.request(c, echo.clone()).unwrap();
        }
        sim.quiesce(STEPS).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let after = sim.finish();
        prop_assert_eq!(after.answered, before.answered + 3, "{}", sim.describe());
        prop_assert_eq!(after.failed, before.failed);
    }
}
