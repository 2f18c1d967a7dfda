//! The kit's own tests: each fault takes effect, and each invariant, the
//! user's check and the verdicts fire on a deliberately broken handler,
//! network or scripted peer. A check that cannot fail is a defect.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mdp_core::{BrokerConfig, BrokerStats, ClientConfig, Dialect};
use mdp_testkit::{
    Answer, Call, Checker, DrawSpec, Fault, FaultPlan, Faults, Link, Node, Scenario, ServiceTime, Sim, SimConfig,
    Verdict,
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn number(body: &[Bytes]) -> u64 {
    std::str::from_utf8(&body[0]).unwrap().parse().unwrap()
}

fn square(request: &[Bytes]) -> Vec<Bytes> {
    let n = number(request);
    vec![Bytes::from((n * n).to_string())]
}

fn squares_only(call: &Call, answer: &Answer) -> Result<(), String> {
    let n = number(&call.body);
    match answer.last.as_slice() {
        [got] if *got == (n * n).to_string().as_bytes() => Ok(()),
        other => Err(format!("{n}² is not {other:?}")),
    }
}

/// `clients` V02 clients of 2 lanes, each asking the squares of its own
/// `n` numbers, of 3 `square` workers made by `worker`.
fn squares<H: mdp_testkit::Handler + 'static>(
    config: SimConfig,
    clients: usize,
    n: u64,
    worker: impl Fn() -> H + 'static,
) -> Scenario {
    Scenario::new(config)
        .workers("square", Dialect::V02, 3, worker, ServiceTime::Fixed(ms(3)))
        .clients(clients, ClientConfig::new(Dialect::V02).with_lanes(2), move |_rng, i| {
            (0..n)
                .map(|k| (Bytes::from_static(b"square"), vec![Bytes::from((1000 * i as u64 + k).to_string())]))
                .collect()
        })
        .check(squares_only)
}

// ---- the user's check and the verdicts ----

#[test]
fn a_correct_handler_passes_and_its_answers_are_checked() {
    let checked = Rc::new(Cell::new(0u64));
    let seen = Rc::clone(&checked);
    let scenario = squares(SimConfig::new(0), 3, 40, || square).check(move |call, answer| {
        seen.set(seen.get() + 1);
        squares_only(call, answer)
    });
    let report = scenario.run(5);
    assert!(report.passed(), "{report}");
    assert_eq!((report.counts.issued, report.counts.answered), (120, 120));
    assert_eq!(checked.get(), 120, "the check saw every answer");
}

#[test]
fn a_wrong_answer_fails_the_user_check_with_a_seed_a_step_and_a_timeline() {
    let off_by_one = || |req: &[Bytes]| if number(req) == 1017 { vec![Bytes::from_static(b"0")] } else { square(req) };
    let scenario = squares(SimConfig::new(0), 3, 40, off_by_one);
    let report = scenario.run(9);
    let Verdict::Violated { violation, step, timeline, repeated } = &report.verdict else {
        panic!("the check did not fire: {report}");
    };
    assert!(violation.what.contains("the user's check failed for client 1's request"), "{violation}");
    assert!(violation.what.contains("1017² is not"), "{violation}");
    assert_eq!(*step, report.steps);
    assert!(!timeline.is_empty() && timeline.len() <= mdp_testkit::scenario::TIMELINE);
    assert!(timeline.last().unwrap().contains("c1.17/final"), "{timeline:?}");
    assert!(*repeated, "the same seed fails the same way");
    let text = report.to_string();
    assert!(text.contains("seed 9") && text.contains("replay(9)"), "{text}");
    // A replay is the same case.
    let again = scenario.replay(9);
    assert_eq!((again.steps, again.verdict.violation()), (report.steps, report.verdict.violation()));
}

#[test]
fn a_handler_that_drops_its_state_on_retries_is_found_only_under_faults() {
    let once_only = || {
        let mut done = std::collections::HashSet::new();
        move |req: &[Bytes]| if done.insert(number(req)) { square(req) } else { vec![Bytes::from_static(b"done")] }
    };
    let clean = squares(SimConfig::new(0), 4, 30, once_only);
    clean.explore(0..5).unwrap_or_else(|r| panic!("no faults, yet: {r}"));
    let mut plan = FaultPlan::new();
    for i in 0..4 {
        plan = plan.at(Duration::ZERO, Fault::SetLink { node: Node::Client(i), link: Link::default().lossy(0.05) });
    }
    let lossy = clean.faults(plan);
    let failed = lossy.explore(0..20).expect_err("the kit misses a retried request answered wrongly");
    assert!(failed.verdict.violation().unwrap().what.contains("is not [b\"done\"]"), "{failed}");
}

#[test]
fn a_handler_that_is_not_a_function_of_its_input_is_reported_unrepeatable() {
    // A counter shared by every run: the second run of a seed is not the
    // first.
    let calls = Rc::new(Cell::new(0u64));
    let worker = move || {
        let calls = Rc::clone(&calls);
        move |req: &[Bytes]| {
            calls.set(calls.get() + 1);
            if calls.get() == 25 {
                vec![Bytes::from_static(b"glitch")]
            } else {
                square(req)
            }
        }
    };
    let report = squares(SimConfig::new(0), 2, 20, worker).run(3);
    let Verdict::Violated { repeated, .. } = report.verdict else { panic!("no glitch: {report}") };
    assert!(!repeated, "a failure the seed does not reproduce must be flagged");
}

#[test]
fn a_panicking_handler_and_a_run_out_of_steps_are_verdicts_not_hangs() {
    let panics = || {
        |req: &[Bytes]| -> Vec<Bytes> {
            if number(req) == 5 {
                panic!("handler bug on 5")
            } else {
                square(req)
            }
        }
    };
    let report = squares(SimConfig::new(0), 1, 10, panics).run(1);
    let Verdict::Panicked { message, step, timeline } = &report.verdict else { panic!("not a panic: {report}") };
    assert!(message.contains("handler bug on 5"), "{report}");
    assert_eq!(*step, report.steps + 1, "the step that panicked is the one after those done");
    assert!(!timeline.is_empty() && report.to_string().contains("replay(1)"), "{report}");
    let report = squares(SimConfig::new(0), 1, 10, || square).max_steps(20).run(1);
    assert!(matches!(report.verdict, Verdict::Stuck(_)), "{report}");
}

#[test]
fn streamed_answers_reach_the_check_part_by_part_in_every_dialect_pairing() {
    let counting = || {
        |req: &[Bytes]| {
            let n = number(req);
            Answer { parts: (0..n % 4).map(|i| vec![Bytes::from(i.to_string())]).collect(), last: square(req) }
        }
    };
    // Parts 0, 1, … n % 4 - 1, in order: joined for 0.1 clients by the
    // broker, and by the worker for 0.1 workers, which cannot stream.
    let check = |streams: bool| {
        move |call: &Call, answer: &Answer| {
            let n = number(&call.body);
            let parts: Vec<Bytes> = answer.parts.iter().flatten().cloned().collect();
            let mut expected: Vec<Bytes> = (0..n % 4).map(|i| Bytes::from(i.to_string())).collect();
            let mut last = answer.last.clone();
            if !streams {
                // The parts come first in the one REPLY.
                let tail = last.split_off(expected.len());
                assert_eq!(last, expected, "{n}: joined parts");
                last = tail;
                expected.clear();
            }
            if parts != expected || answer.parts.iter().any(|p| p.len() != 1) {
                return Err(format!("{n}: parts {:?}", answer.parts));
            }
            squares_only(call, &Answer::reply(last))
        }
    };
    for worker in [Dialect::V01, Dialect::V02] {
        for client in [Dialect::V01, Dialect::V02] {
            let scenario = Scenario::new(SimConfig::new(0))
                .workers("square", worker, 2, counting, ServiceTime::Exponential { mean: ms(4) })
                .clients(2, ClientConfig::new(client), |_rng, i| {
                    (0..20u64)
                        .map(|k| (Bytes::from_static(b"square"), vec![Bytes::from((10 * i as u64 + k).to_string())]))
                        .collect()
                })
                .check(check(worker.supports_partial()));
            let report = scenario.run(2);
            assert!(report.passed(), "worker {worker}, client {client}: {report}");
            assert_eq!(report.counts.answered, 40);
        }
    }
}

#[test]
fn workloads_are_drawn_from_the_seed() {
    let scenario = Scenario::new(SimConfig::new(0))
        .workers("square", Dialect::V02, 2, || square, ServiceTime::Uniform { min: ms(1), max: ms(9) })
        .clients(2, ClientConfig::new(Dialect::V02), |rng, _| {
            let n = 5 + rng.below(20);
            (0..n).map(|k| (Bytes::from_static(b"square"), vec![Bytes::from(k.to_string())])).collect()
        })
        .check(squares_only);
    let (a, b) = (scenario.run(1), scenario.run(1));
    assert_eq!(a, b, "a run is a function of its seed");
    let issued: Vec<u64> = (0..8).map(|seed| scenario.run(seed).counts.issued).collect();
    assert!(issued.windows(2).any(|w| w[0] != w[1]), "every seed drew the same workload: {issued:?}");
}

// ---- each fault takes effect ----

/// A simulation of `square` with 2 workers and one client that asks 30
/// squares, with `plan` scheduled; run to its end.
fn with_plan(config: SimConfig, plan: FaultPlan) -> Sim {
    let scenario = squares(config, 1, 30, || square).faults(plan);
    let mut sim = scenario.build(1);
    sim.run_until(|s| s.is_quiet() && s.faults_pending() == 0, 1_000_000).unwrap();
    assert!(sim.checker.violations().is_empty(), "{:?}", sim.checker.violations());
    sim
}

#[test]
fn each_fault_takes_effect_at_its_time() {
    let at = ms(20);
    let sim = with_plan(SimConfig::new(0), FaultPlan::new().at(at, Fault::CrashWorker(1)));
    assert_eq!(sim.stats().worker_crashes, 1);
    assert_eq!(sim.live_workers(), [0, 2]);

    let sim = with_plan(SimConfig::new(0), FaultPlan::new().at(at, Fault::RestartWorker(1)));
    assert_eq!((sim.stats().worker_crashes, sim.live_workers().len()), (1, 3));

    let plan = FaultPlan::new().at(at, Fault::StopBroker { broker: 0, down_for: ms(500) });
    let sim = with_plan(SimConfig::new(0), plan);
    assert_eq!(sim.stats().broker_restarts, 1);
    assert!(sim.net_stats().dropped_broker > 0 || sim.stats().client_reconnects > 0);

    let sim = with_plan(SimConfig::new(0), FaultPlan::new().at(at, Fault::RestartBroker(0)));
    assert_eq!(sim.stats().broker_restarts, 1);

    let mut two = SimConfig::new(0);
    two.brokers = 2;
    let sim = with_plan(two.clone(), FaultPlan::new().at(at, Fault::KillBroker(1)));
    assert!(sim.broker_is_dead(1) && !sim.broker_is_dead(0));
    // A stop does not bring a killed broker back; a restart does.
    let stop = Fault::StopBroker { broker: 1, down_for: ms(10) };
    let sim = with_plan(two.clone(), FaultPlan::new().at(at, Fault::KillBroker(1)).at(at * 2, stop));
    assert!(sim.broker_is_dead(1));
    let sim = with_plan(two, FaultPlan::new().at(at, Fault::KillBroker(1)).at(at * 2, Fault::RestartBroker(1)));
    assert!(sim.broker_is_up(1) && sim.stats().broker_restarts == 1);

    let plan = FaultPlan::new().at(at, Fault::Partition { node: Node::Worker(0), duration: ms(300) });
    assert!(with_plan(SimConfig::new(0), plan).net_stats().held > 0);

    let plan = FaultPlan::new().at(at, Fault::DropNext { node: Node::Client(0), count: 2 });
    assert_eq!(with_plan(SimConfig::new(0), plan).net_stats().lost, 2);

    let lossy = Link::default().lossy(0.2);
    let plan = FaultPlan::new().at(at, Fault::SetLink { node: Node::Client(0), link: lossy });
    assert!(with_plan(SimConfig::new(0), plan).net_stats().lost > 0);

    let ghosts = Faults { ghost_requests: 0.5, ..Faults::default() };
    let plan = FaultPlan::new().at(at, Fault::SetFaults(ghosts));
    assert!(with_plan(SimConfig::new(0), plan).net_stats().ghosts > 0);

    // Latency: 30 answers one after another over 2 lanes take longer.
    let quick = with_plan(SimConfig::new(0), FaultPlan::new()).elapsed();
    let slow = Link::new(ms(20), ms(10));
    let plan = FaultPlan::new().at(Duration::ZERO, Fault::SetLink { node: Node::Client(0), link: slow });
    let slowed = with_plan(SimConfig::new(0), plan).elapsed();
    assert!(slowed > quick + ms(20 * 15), "{quick:?} then {slowed:?}");

    let reorder = Faults { reorder: 0.5, reorder_delay: ms(10), ..Faults::default() };
    let plan = FaultPlan::new().at(at, Fault::SetFaults(reorder));
    assert!(with_plan(SimConfig::new(0), plan).net_stats().reordered > 0);

    // Loss from the start, stopped at 20 ms: less is lost than without the
    // stop. (A loss in SimConfig::link is the configured link, which
    // StopFaults goes back to.)
    let lossy = FaultPlan::new().at(Duration::ZERO, Fault::SetLink { node: Node::Client(0), link: lossy });
    let stopped = with_plan(SimConfig::new(0), lossy.clone().at(at, Fault::StopFaults)).net_stats().lost;
    let kept = with_plan(SimConfig::new(0), lossy).net_stats().lost;
    assert!(stopped < kept, "lost {stopped} with the faults stopped, {kept} without");
}

#[test]
fn faults_are_applied_at_their_virtual_time_in_order() {
    let mut sim = Sim::new(SimConfig::new(0));
    sim.add_worker(Bytes::from_static(b"echo"), Dialect::V02);
    sim.add_worker(Bytes::from_static(b"echo"), Dialect::V02);
    sim.schedule(ms(50), Fault::RestartWorker(0));
    sim.schedule(ms(50), Fault::CrashWorker(0));
    sim.schedule(ms(10), Fault::CrashWorker(1));
    sim.run_for(ms(9), 10_000).unwrap();
    assert_eq!((sim.faults_pending(), sim.stats().worker_crashes), (3, 0));
    sim.run_for(ms(2), 10_000).unwrap();
    assert_eq!((sim.faults_pending(), sim.live_workers()), (2, vec![0]));
    sim.run_for(ms(40), 10_000).unwrap();
    // Restarted, then crashed: the order they were scheduled in.
    assert_eq!((sim.faults_pending(), sim.live_workers()), (0, vec![]));
}

#[test]
fn a_drawn_plan_crashes_and_partitions_and_the_fleet_survives_it() {
    let mut spec = DrawSpec::new(Duration::from_secs(2), 3, 3);
    (spec.worker_crashes, spec.partitions, spec.broker_restarts) = (3, 2, 1);
    spec.max_down = Duration::from_secs(1);
    let scenario = squares(SimConfig::new(0), 3, 200, || square).draw_faults(spec);
    for seed in 0..4 {
        let report = scenario.run(seed);
        assert!(report.passed(), "{report}");
        assert!(report.stats.worker_crashes >= 3 && report.stats.broker_restarts == 1, "{report:?}");
        assert!(report.net.held > 0 || report.stats.client_reconnects > 0, "{report:?}");
    }
}

// ---- each built-in invariant fires ----

#[test]
fn duplicated_messages_break_reply_matching_and_the_checker_says_so() {
    // Within one connection ZeroMQ never duplicates; the network here can.
    // A duplicated FINAL is a second answer to a request that has one,
    // which the client takes for the next request's: the checker reports
    // the answer to the wrong request. A duplicated REQUEST reaches a
    // worker that holds one already.
    let mut seen = Vec::new();
    for seed in 0..6 {
        let mut config = SimConfig::new(0);
        config.faults = Faults { duplicate: 0.1, ..Faults::default() };
        let report = squares(config, 2, 100, || square).run(seed);
        let what = report.verdict.violation().expect("duplicates went unnoticed").what.clone();
        assert!(!what.contains("user's check"), "the built-in invariants fire first: {what}");
        seen.push(what);
    }
    assert!(seen.iter().any(|w| w.contains("answers another request than")), "{seen:#?}");
    assert!(seen.iter().any(|w| w.contains("was sent a REQUEST by broker 0 while busy")), "{seen:#?}");
}

#[test]
fn a_request_never_accounted_for_is_reported_lost() {
    // A scripted end: the run is cut short with a request outstanding.
    let mut sim = Sim::new(SimConfig::new(0));
    sim.checker.panic_on_violation = false;
    let c = sim.add_client(Dialect::V02);
    sim.request(c, Bytes::from_static(b"nobody")).unwrap();
    sim.run_for(ms(5), 1000).unwrap();
    let now = sim.now();
    sim.checker.check_nothing_lost(now);
    let v = sim.checker.violations();
    assert!(v.len() == 1 && v[0].what.contains("neither answered, failed nor cancelled"), "{v:?}");
}

#[test]
fn a_broker_past_its_limits_is_reported() {
    let t0 = Instant::now();
    let mut checker = Checker::new(t0, 0, 1);
    checker.panic_on_violation = false;
    let config = BrokerConfig::default();
    let mut stats = BrokerStats::default();
    checker.check_broker(t0, 0, &config, &stats);
    assert!(checker.violations().is_empty(), "{:?}", checker.violations());
    stats.services = config.max_services + 1;
    checker.check_broker(t0, 0, &config, &stats);
    let v = checker.violations();
    assert!(v.len() == 1 && v[0].what.contains("max_services"), "{v:?}");
}

// ---- what a run that is not wrong but not right reports ----

#[test]
fn a_run_whose_requests_all_fail_does_not_pass() {
    // A misspelt service: every request times out and fails.
    let scenario = Scenario::new(SimConfig::new(0))
        .workers("square", Dialect::V02, 1, || square, ServiceTime::Fixed(ms(1)))
        .clients(1, ClientConfig::new(Dialect::V02), |_rng, _| {
            (0..3u64).map(|k| (Bytes::from_static(b"sqaure"), vec![Bytes::from(k.to_string())])).collect()
        });
    let report = scenario.run(1);
    assert_eq!(report.verdict, Verdict::TooManyFailed { failed: 3, allowed: 0 }, "{report}");
    assert!(report.to_string().contains("3 requests FAILED"), "{report}");
    assert!(scenario.max_failed(3).run(1).passed());
}

#[test]
fn a_client_allowing_fewer_outstanding_than_the_window_is_kept_within_it() {
    let mut config = ClientConfig::new(Dialect::V02);
    config.max_outstanding = 2;
    let scenario = Scenario::new(SimConfig::new(0))
        .workers("square", Dialect::V02, 3, || square, ServiceTime::Fixed(ms(2)))
        .clients(1, config, |_rng, _| {
            (0..30u64).map(|k| (Bytes::from_static(b"square"), vec![Bytes::from(k.to_string())])).collect()
        })
        .check(squares_only);
    let report = scenario.run(1);
    assert!(report.passed(), "{report}");
    assert_eq!(report.counts.answered, 30);
}

#[test]
fn an_empty_body_is_refused_as_the_core_refuses_it() {
    let scenario = Scenario::new(SimConfig::new(0))
        .workers("square", Dialect::V02, 1, || square, ServiceTime::Fixed(ms(1)))
        .clients(1, ClientConfig::new(Dialect::V02), |_rng, _| vec![(Bytes::from_static(b"square"), vec![])]);
    let report = scenario.run(1);
    let Verdict::Panicked { message, .. } = &report.verdict else { panic!("an empty body went through: {report}") };
    assert!(message.contains("could not issue") && message.contains("no frames"), "{message}");
}

#[test]
fn application_frames_that_look_like_markers_are_the_applications() {
    // An echo of frames spelt like the kit's markers, but not exactly.
    let echo = || |req: &[Bytes]| req.to_vec();
    for (worker, client) in [(Dialect::V02, Dialect::V02), (Dialect::V02, Dialect::V01), (Dialect::V01, Dialect::V02)] {
        let scenario = Scenario::new(SimConfig::new(0))
            .workers("echo", worker, 1, echo, ServiceTime::Fixed(ms(1)))
            .clients(1, ClientConfig::new(client), |_rng, _| {
                ["c0.0/p+1", "c0.1/p01", "c0.2/final/", "c0.0/p0"]
                    .map(|f| (Bytes::from_static(b"echo"), vec![Bytes::from_static(f.as_bytes())]))
                    .to_vec()
            })
            .check(|call, answer| if answer.last == call.body { Ok(()) } else { Err(format!("{answer:?}")) });
        let report = scenario.run(1);
        assert!(report.passed(), "{worker} -> {client}: {report}");
    }
}

#[test]
fn a_replay_keeps_a_timeline_that_names_the_faults() {
    let plan = FaultPlan::new().at(ms(15), Fault::CrashWorker(2));
    let scenario = squares(SimConfig::new(0), 1, 5, || square).faults(plan.clone());
    let report = scenario.replay(3);
    assert!(report.passed(), "{report}");
    assert_eq!(report.faults, plan);
    assert!(report.timeline.iter().any(|l| l.contains("fault CrashWorker(2)")), "{:#?}", report.timeline);
    assert!(scenario.run(3).timeline.is_empty(), "a plain run keeps none");
}
