//! Several brokers (issue 17): clients that know every broker, worker
//! processes that serve every broker, and what happens when one broker
//! dies for good and another restarts.
//!
//! The model checks every step (see `mdp_testkit::model`): no reply to the
//! wrong request, none twice, a lane never carries two requests of one
//! service, none waits in a client while a lane of a broker it does not
//! avoid could take it; at the end every request was answered or reported
//! failed.

use std::time::Duration;

use bytes::Bytes;
use mdp_core::{ClientConfig, Dialect, Lane, RequestId};
use mdp_testkit::{Faults, Link, ModelCounts, Node, Sim, SimConfig};

const STEPS: u64 = 50_000_000;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn alpha() -> Bytes {
    Bytes::from_static(b"alpha")
}

fn beta() -> Bytes {
    Bytes::from_static(b"beta")
}

// ---- the scenario ----

const BROKERS: usize = 3;
const WORKERS: usize = 6;
const CLIENTS: usize = 20;

/// The broker stopped for good, and when.
const KILLED: usize = 1;
const KILL_AT: Duration = Duration::from_secs(7);
/// The broker restarted, and when: after the measurements of the stop, so
/// that they measure the stop alone.
const RESTARTED: usize = 2;
const RESTART_AT: Duration = Duration::from_secs(15);
/// The pre-stop window starts here: every worker has long registered with
/// every broker, and the clients' first requests are long over.
const BEFORE_FROM: Duration = Duration::from_secs(2);

/// How the clients load the fleet.
#[derive(Debug, Clone, Copy)]
struct Load {
    /// Requests outstanding per client at most.
    window: usize,
    /// A request per client this often on average (zero: as soon as the
    /// window allows).
    interval: Duration,
    /// Requests per client in all: enough to last past the measurements
    /// (checked) and some seconds past the restart.
    requests: usize,
}

/// What one run measured: answers per virtual second over the 5 s before
/// the stop, over the timeout right after it, and over the timeout after
/// that, [stop + timeout, stop + 2 × timeout).
#[derive(Debug, Clone, Copy)]
struct Figures {
    before: f64,
    first_timeout: f64,
    second_timeout: f64,
    counts: ModelCounts,
    /// Replies broker [`RESTARTED`] sent since it restarted.
    restarted_replies: u64,
}

/// 3 brokers; 6 worker processes, each registered with all 3 (two
/// services, every dialect); 20 clients of every dialect, each knowing all
/// 3 with mdp-core's default ClientConfig (3 tries, 2.5 s timeout, 2.5 s
/// broker backoff doubling to 30 s, one lane per broker); 20 ms of work
/// per request. The faults are the fault tests' usual ones: latency with
/// jitter, reordering across connections, ghost requests, loss on every
/// link. The loss rates are the soak test's, lower than the lighter fault
/// tests': at this load every lost REQUEST or FINAL pins a worker's slot
/// at its broker until `max_job_time`, and at their rates so many slots are
/// pinned that the fleet starves before the stop.
fn fleet(seed: u64, load: Load) -> Sim {
    let mut c = SimConfig::new(seed);
    c.brokers = BROKERS;
    c.link = Link::new(ms(2), ms(8));
    c.faults = Faults { reorder: 0.05, reorder_delay: ms(100), ghost_requests: 0.05, ..Faults::default() };
    c.broker.max_job_time = Some(Duration::from_secs(5));
    c.service_time = ms(20);
    c.client_window = load.window;
    c.client_interval = load.interval;
    // The client defaults are what the scenario is about.
    let defaults = ClientConfig::new(Dialect::V02);
    assert_eq!((c.client_timeout, c.client_tries), (defaults.timeout, defaults.tries));
    assert_eq!(c.client_broker_backoff, defaults.broker_backoff);
    let mut sim = Sim::new(c);
    for k in 0..WORKERS {
        sim.add_worker(if k % 2 == 0 { alpha() } else { beta() }, Dialect::ALL[k % 3]);
    }
    for i in 0..CLIENTS {
        let c = sim.add_client(Dialect::ALL[i % 3]);
        // Alternating services in blocks of 10.
        sim.submit(c, (0..load.requests).map(|k| if (k / 10 + i) % 2 == 0 { alpha() } else { beta() }));
    }
    for j in 0..WORKERS {
        sim.net.set_link(Node::Worker(j), Link::new(ms(2), ms(8)).lossy(0.0005));
    }
    for i in 0..CLIENTS {
        sim.net.set_link(Node::Client(i), Link::new(ms(2), ms(8)).lossy(0.001));
    }
    sim
}

/// Runs until `at` (virtual time since the start); returns the answers so
/// far.
fn answered_at(sim: &mut Sim, at: Duration) -> u64 {
    sim.run_for(at.saturating_sub(sim.elapsed()), STEPS).unwrap_or_else(|e| panic!("{e}"));
    sim.counts().answered
}

fn rate(answers: u64, window: Duration) -> f64 {
    answers as f64 / window.as_secs_f64()
}

/// The scenario with `seed`: broker [`KILLED`] stopped for good at
/// [`KILL_AT`] and broker [`RESTARTED`] restarted at [`RESTART_AT`], or,
/// as a control with the same seed, neither (`faults` false).
fn scenario(seed: u64, load: Load, faults: bool) -> Figures {
    let mut sim = fleet(seed, load);
    let timeout = sim.config().client_timeout;
    let a0 = answered_at(&mut sim, BEFORE_FROM);
    let a1 = answered_at(&mut sim, KILL_AT);
    if faults {
        sim.kill_broker(KILLED);
    }
    let a2 = answered_at(&mut sim, KILL_AT + timeout);
    let a3 = answered_at(&mut sim, KILL_AT + 2 * timeout);
    for i in 0..CLIENTS {
        assert!(sim.workload_left(i) > 0, "seed {seed}: client {i} ran out of work before the measurements ended");
    }
    if faults {
        // The fault tests' process faults too, after the measurements (so
        // that the rates above are the brokers' story alone): a worker
        // crashes and comes back, a client is cut off for a second.
        sim.crash_worker(0);
        sim.partition(Node::Client(3), Duration::from_secs(1));
        answered_at(&mut sim, KILL_AT + 2 * timeout + Duration::from_secs(1));
        sim.restart_worker(0);
    }
    answered_at(&mut sim, RESTART_AT);
    if faults {
        sim.restart_broker(RESTARTED);
    }
    sim.quiesce(STEPS).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    let counts = sim.finish();
    assert_eq!(counts.issued, (CLIENTS * load.requests) as u64);
    Figures {
        before: rate(a1 - a0, KILL_AT - BEFORE_FROM),
        first_timeout: rate(a2 - a1, timeout),
        second_timeout: rate(a3 - a2, timeout),
        counts,
        restarted_replies: sim.broker(RESTARTED).stats().replies_sent,
    }
}

fn print(name: &str, seed: u64, f: &Figures) {
    let c = f.counts;
    eprintln!(
        "{name}, seed {seed}: {:.0}/s before the stop; {:.0}/s in the timeout after it ({:.2}), {:.0}/s in the \
         next ({:.2}); {} requests, {} answered, {} failed ({:.3} %), {} moved to another broker's lane",
        f.before,
        f.first_timeout,
        f.first_timeout / f.before,
        f.second_timeout,
        f.second_timeout / f.before,
        c.issued,
        c.answered,
        c.failed,
        100.0 * c.failed as f64 / c.issued as f64,
        c.moved,
    );
}

/// Pipelining clients at a load two brokers can carry: each keeps up to
/// 16 requests outstanding and makes one every 90 ms on average, ~220
/// answers a second in all. Measured for comparison (seeds 0-7): with the
/// windows kept full, the 18 worker slots (6 workers × 3 brokers) give
/// 370-415/s under these faults, and the 12 left after the stop 190-300/s,
/// depending on how many slots lost messages pin; 2/3 of the pre-stop rate
/// is then all that 12 slots can give at best, and most seeds fall short of
/// it (0.52-0.73). Paced at one request every 60 ms (~330/s) the two
/// brokers left fall short on seed 4 of 0-9 (0.66). At 90 ms the fleet has
/// to carry its whole load through two brokers from one timeout after the
/// stop on, and can.
const PIPELINING: Load = Load { window: 16, interval: Duration::from_millis(90), requests: 250 };

/// The scenario, for five seeds: broker 1 stops for good at 7 s,
/// broker 2 restarts at 15 s.
///
/// Throughput: answers per virtual second over [2 s, 7 s), and over
/// [stop + timeout, stop + 2 × timeout). Every request on the wire to the
/// dead broker at the stop times out within one timeout of it and is then
/// sent on a lane of a live broker, and by then (nearly) every client has
/// had its first timeout there and avoids it; so from stop + timeout on
/// the fleet runs on the two brokers left, while each client's backoff for
/// the dead one (2.5 s, then 5 s, …) ends now and then and sends it one
/// request again (probation), which costs that request a timeout. That window must
/// show at least 2/3 of the rate before the stop. The timeout right after
/// the stop is printed, not asserted on: requests are stranded at the dead
/// broker then (with a window of 16 each client routes its other requests
/// around the one or two stranded, so at this load that dip is small too).
/// A control run without the stop or the restart, same seed, shows that
/// the two windows measure the same rate when nothing happens.
///
/// Failures: requests failed for any reason, the dead broker or the other
/// faults, must stay under 0.1 % with the default 3 tries. (A request that
/// was at the dead broker used one try there; it fails only if its two
/// others time out too.) This is what catches broken fail-over: with
/// `fails_over()` returning false 1.5 % of the requests fail, while at
/// this load the throughput hardly changes (0.96 of the pre-stop rate).
#[test]
fn one_broker_dies_another_restarts() {
    let control = scenario(0, PIPELINING, false);
    print("control", 0, &control);
    let ratio = control.second_timeout / control.before;
    assert!((0.9..1.1).contains(&ratio), "control: the windows measure different rates without a stop: {ratio:.2}");
    assert_eq!(control.counts.failed, 0);
    // Every seed's figures first, so that they are all printed.
    let runs: Vec<(u64, Figures)> = (0..5).map(|seed| (seed, scenario(seed, PIPELINING, true))).collect();
    for (seed, f) in &runs {
        print("scenario", *seed, f);
    }
    for (seed, f) in runs {
        let c = f.counts;
        assert!(c.failed * 1000 < c.issued, "seed {seed}: {} of {} requests failed, 0.1 % or more", c.failed, c.issued);
        assert!(
            f.second_timeout >= f.before * 2.0 / 3.0,
            "seed {seed}: {:.0}/s in [stop + timeout, stop + 2 × timeout), less than 2/3 of the {:.0}/s before",
            f.second_timeout,
            f.before
        );
        assert!(
            c.moved > 2 * control.counts.moved,
            "seed {seed}: {} requests moved to another broker, hardly more than the {} of the control run",
            c.moved,
            control.counts.moved
        );
        assert!(f.restarted_replies > 0, "seed {seed}: no client came back to the restarted broker");
    }
}

/// The same with clients that keep one request outstanding and make the
/// next as soon as it is answered, as a synchronous caller does. Their
/// throughput is bound by the clients, not by the workers, so every
/// request stranded at the dead broker stalls its client for a whole
/// timeout, and so does every probe of the dead broker after a backoff.
/// With the first backoff as long as the timeout (the default), a client's
/// first probe comes about a timeout after its first failure there, so the
/// window [stop + timeout, stop + 2 × timeout) is mostly clear of them
/// (measured, seeds 0-3: 0.77-0.89 of the pre-stop rate there, 3-32 % in
/// the timeout right after the stop, which is not asserted on). With the
/// earlier default of 1 s, the probe came inside that window and the
/// clients reached only 0.38-0.44.
#[test]
fn one_at_a_time_clients_recover_within_a_timeout() {
    let one_at_a_time = Load { window: 1, interval: Duration::ZERO, requests: 250 };
    let runs: Vec<(u64, Figures)> = (0..4).map(|seed| (seed, scenario(seed, one_at_a_time, true))).collect();
    for (seed, f) in &runs {
        print("one at a time", *seed, f);
    }
    for (seed, f) in runs {
        assert!(f.counts.failed * 1000 < f.counts.issued, "seed {seed}: {:?}", f.counts);
        assert!(f.second_timeout >= f.before * 2.0 / 3.0, "seed {seed}: {f:?}");
    }
}

// ---- one client, two brokers ----

/// Runs until client `c`'s request `id` is answered (or failed).
fn until_done(sim: &mut Sim, c: usize, id: RequestId) {
    sim.run_until(|s| !s.client(c).is_outstanding(id), STEPS).unwrap_or_else(|e| panic!("{e}"));
}

/// Runs until request `id` of client `c` leaves lane `lane`; returns how
/// long that took.
fn until_off(sim: &mut Sim, c: usize, id: RequestId, lane: Lane) -> Duration {
    let from = sim.elapsed();
    sim.run_until(|s| s.client(c).lane_of(id) != Some(lane), STEPS).unwrap_or_else(|e| panic!("{e}"));
    sim.elapsed() - from
}

/// A client with two brokers, broker 1 stopped for good, one request at a
/// time. The request that goes to broker 1's lane times out and is sent
/// again at once on broker 0's lane (its second try), and answered there;
/// broker 1 is then avoided for its backoff (default: 2.5 s less up to 25 %
/// jitter), during which every new request goes to broker 0; when the
/// backoff ends broker 1 is on probation and gets a request again, which
/// times out in turn, moves to broker 0, and broker 1 is avoided for twice
/// as long.
#[test]
fn a_timed_out_request_moves_to_the_other_broker_and_the_dead_one_is_avoided() {
    let mut config = SimConfig::new(5);
    config.brokers = 2;
    let mut sim = Sim::new(config);
    sim.add_worker(alpha(), Dialect::V02);
    let c = sim.add_client(Dialect::V02);
    assert_eq!((sim.client(c).broker_of(Lane(0)), sim.client(c).broker_of(Lane(1))), (0, 1));
    let timeout = sim.config().client_timeout;
    let backoff = sim.config().client_broker_backoff.clone();
    let jittered = |base: Duration| base.mul_f64(1.0 - backoff.jitter)..=base;
    // The worker registers with both brokers; then broker 1 dies.
    sim.run_for(ms(100), STEPS).unwrap();
    sim.kill_broker(1);

    // Lanes take requests in turn: the first goes to lane 0, the second to
    // lane 1, broker 1's.
    let first = sim.request(c, alpha()).unwrap();
    assert_eq!(sim.client(c).lane_of(first), Some(Lane(0)));
    until_done(&mut sim, c, first);
    let stranded = sim.request(c, alpha()).unwrap();
    assert_eq!(sim.client(c).lane_of(stranded), Some(Lane(1)));
    assert!(!sim.client(c).is_avoided(1));

    // It times out and is sent again, on broker 0's lane.
    assert_eq!(until_off(&mut sim, c, stranded, Lane(1)), timeout);
    assert_eq!(sim.client(c).lane_of(stranded), Some(Lane(0)), "the retry went to the other broker");
    assert!(sim.client(c).is_avoided(1) && !sim.client(c).is_avoided(0));
    let failed_at = sim.elapsed();
    until_done(&mut sim, c, stranded);
    assert_eq!((sim.counts().answered, sim.counts().failed, sim.counts().moved), (2, 0, 1));

    // While broker 1 is avoided, every request goes to broker 0.
    let mut while_avoided = 0;
    while sim.client(c).is_avoided(1) {
        let id = sim.request(c, alpha()).unwrap();
        assert_eq!(sim.client(c).lane_of(id), Some(Lane(0)), "request {while_avoided} went to the avoided broker");
        while_avoided += 1;
        // Stop the moment the backoff ends, to time it.
        sim.run_until(|s| !s.client(c).is_outstanding(id) || !s.client(c).is_avoided(1), STEPS).unwrap();
        if sim.client(c).is_outstanding(id) {
            until_done(&mut sim, c, id);
            break;
        }
    }
    let avoided_for = sim.elapsed() - failed_at;
    assert!(while_avoided > 100, "{while_avoided} requests while avoided");
    assert!(jittered(backoff.initial).contains(&avoided_for), "avoided for {avoided_for:?}");

    // After its backoff broker 1 gets the next request (its lane is next
    // in turn), which times out and moves too; the second failure in a row
    // doubles the backoff.
    let probe = sim.request(c, alpha()).unwrap();
    assert_eq!(sim.client(c).lane_of(probe), Some(Lane(1)), "broker 1 got no request after its backoff");
    assert_eq!(until_off(&mut sim, c, probe, Lane(1)), timeout);
    assert_eq!(sim.client(c).lane_of(probe), Some(Lane(0)));
    let failed_at = sim.elapsed();
    sim.run_until(|s| !s.client(c).is_avoided(1), STEPS).unwrap();
    let avoided_for = sim.elapsed() - failed_at;
    assert!(jittered(backoff.initial * 2).contains(&avoided_for), "avoided for {avoided_for:?} the second time");

    sim.quiesce(STEPS).unwrap();
    let counts = sim.finish();
    assert_eq!((counts.answered, counts.failed, counts.moved), (while_avoided + 3, 0, 2));
    eprintln!("two brokers: {while_avoided} requests while broker 1 was avoided, {counts:?}");
}
