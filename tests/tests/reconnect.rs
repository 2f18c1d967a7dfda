//! A worker is served again after a broker restart within
//! `liveness × heartbeat_interval + backoff.max` of the new broker starting,
//! in every dialect, whatever the downtime and wherever in its heartbeat
//! cycle the worker was.
//!
//! Why that bound: when the new broker comes up, the worker is either
//! waiting out a backoff (READY within `backoff.max`), or registered on a
//! connection the new broker does not know; then its next HEARTBEAT (within
//! one interval) is answered with DISCONNECT, or its liveness runs out
//! first, and it registers again after at most `backoff.max`. Link latency
//! (1 ms here) fits in the `liveness - 1` spare intervals.

use std::time::Duration;

use bytes::Bytes;
use mdp_core::{BrokerEvent, Dialect};
use mdp_testkit::{Node, Sim, SimConfig};

const STEPS: u64 = 100_000;

fn config(seed: u64, interval: Duration, backoff: (Duration, Duration)) -> SimConfig {
    let mut c = SimConfig::new(seed);
    c.broker.heartbeat_interval = interval;
    c.worker_heartbeat = interval;
    // Long enough that the request sent to the new broker waits for the
    // worker rather than expiring or being resent.
    c.broker.request_timeout = Duration::from_secs(600);
    c.client_timeout = Duration::from_secs(600);
    c.backoff.initial = backoff.0;
    c.backoff.max = backoff.1;
    c.record_broker_events = true;
    c
}

/// Restarts the broker `offset` into the worker's life, keeps it down for
/// `down`, and returns how long after the new broker started a request was
/// dispatched to the worker.
fn served_after_restart(config: SimConfig, dialect: Dialect, offset: Duration, down: Duration) -> Duration {
    let mut sim = Sim::new(config);
    let echo = Bytes::from_static(b"echo");
    let w = sim.add_worker(echo.clone(), dialect);
    let c = sim.add_client(dialect);
    sim.request(c, echo.clone()).unwrap();
    sim.run_until(|s| s.counts().answered == 1, STEPS).unwrap();
    sim.run_for(offset, STEPS).unwrap();

    sim.stop_broker(0, down);
    sim.run_until(Sim::is_quiet, STEPS).unwrap();
    sim.run_until(|s| s.broker_is_up(0), STEPS).unwrap();
    let up = sim.elapsed();
    sim.request(c, echo).unwrap();
    sim.run_until(|s| s.counts().answered == 2, STEPS).unwrap_or_else(|e| panic!("{e}"));
    sim.finish();

    let served = sim
        .broker_log()
        .iter()
        .find_map(|(at, _, e)| match e {
            BrokerEvent::RequestDispatched { worker, .. }
                if *at >= up && sim.net.node_of(worker) == Some(Node::Worker(w)) =>
            {
                Some(*at)
            }
            _ => None,
        })
        .expect("the request was dispatched to the worker");
    served - up
}

fn check_bound(name: &str, config: SimConfig, downtimes: &[Duration]) {
    let bound = config.broker.heartbeat_interval * config.worker_liveness + config.backoff.max;
    let interval = config.worker_heartbeat;
    let mut worst = Duration::ZERO;
    for dialect in Dialect::ALL {
        // Restart at several points of the heartbeat cycle, for downtimes
        // from none to many backoff cycles.
        for offset in [Duration::ZERO, interval / 3, interval * 2 / 3, interval - Duration::from_millis(1)] {
            for &down in downtimes {
                let delay = served_after_restart(config.clone(), dialect, offset, down);
                assert!(
                    delay <= bound,
                    "{name}, {dialect}, restart at +{offset:?}, down {down:?}: served {delay:?} after the new broker started, more than liveness × interval + backoff max = {bound:?}"
                );
                worst = worst.max(delay);
            }
        }
    }
    println!("{name}: worst {worst:?} within the bound {bound:?}");
}

#[test]
fn served_again_within_liveness_and_backoff_with_defaults() {
    // 2.5 s × 3 + 30 s.
    let downtimes = [0, 1, 700, 3_000, 8_000, 20_000, 61_000, 100_000].map(Duration::from_millis);
    let c = config(1, Duration::from_millis(2500), (Duration::from_secs(1), Duration::from_secs(30)));
    check_bound("defaults", c, &downtimes);
}

#[test]
fn served_again_within_liveness_and_backoff_with_tight_timings() {
    // 1 s × 3 + 2 s: the backoff reaches its maximum during long downtimes.
    // Downtimes every 130 ms up to 26 s hit every phase of the worker's
    // silence-and-backoff cycle, the worst ones included.
    let downtimes: Vec<Duration> = (0..200).map(|n| Duration::from_millis(130 * n)).collect();
    let c = config(2, Duration::from_secs(1), (Duration::from_millis(500), Duration::from_secs(2)));
    check_bound("tight", c, &downtimes);
}

#[test]
fn immediate_restart_is_noticed_at_the_next_heartbeat() {
    // With no downtime, the worker's next HEARTBEAT reaches the new broker,
    // which answers DISCONNECT; READY follows after the first backoff.
    let c = config(3, Duration::from_millis(2500), (Duration::from_secs(1), Duration::from_secs(30)));
    for dialect in Dialect::ALL {
        let delay = served_after_restart(c.clone(), dialect, Duration::ZERO, Duration::ZERO);
        let fast = c.worker_heartbeat + c.backoff.initial + Duration::from_millis(10);
        assert!(delay <= fast, "{dialect}: served {delay:?} after an immediate restart, expected within {fast:?}");
    }
}
