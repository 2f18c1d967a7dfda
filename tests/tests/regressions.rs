//! Minimal scenarios for bugs the simulation found, one test each.

use std::time::Duration;

use bytes::Bytes;
use mdp_core::Dialect;
use mdp_testkit::{Sim, SimConfig};

const STEPS: u64 = 1_000_000;

/// A worker dies after its first PARTIAL reached an MDP/0.2 client. If the
/// broker hands the request to another worker, that worker's answer starts
/// again at the first part, and the client (which has no way to tell) sees
/// `p0, p0, p1, final`: the checker flags the second `p0`. The broker must
/// drop such a request instead; the client then times out and resends it
/// (with `Restarted`), and gets one whole answer.
#[test]
fn no_redispatch_after_a_partial_reached_the_client() {
    for (client, second) in [(Dialect::V02, Dialect::V02), (Dialect::Majortomo, Dialect::V01)] {
        let mut c = SimConfig::new(1);
        c.service_time = Duration::from_millis(300);
        c.client_timeout = Duration::from_secs(30);
        let mut sim = Sim::new(c);
        let echo = Bytes::from_static(b"echo");
        let first = sim.add_worker(echo.clone(), Dialect::V02);
        let c = sim.add_client(client);
        sim.request(c, echo.clone()).unwrap();
        sim.run_until(|s| s.counts().partials == 1, STEPS).unwrap();
        sim.crash_worker(first);
        sim.add_worker(echo, second);
        sim.quiesce(STEPS).unwrap();
        let counts = sim.finish();
        assert_eq!((counts.answered, counts.restarted), (1, 1), "{client}: resent once, answered once");
    }
}

/// Fixed by configuration: a REQUEST lost on a worker connection that stays
/// up leaves the broker thinking the worker is busy for ever. The worker is
/// idle and keeps heartbeating, so it never expires, and it is never handed
/// another request. A lost FINAL does the same. ZeroMQ and TCP never lose a
/// message inside a live connection (and mdp-zmq-adapter now treats a full
/// pipe like an unreachable peer), but a lossy transport can:
/// `BrokerConfig::max_job_time` bounds how long a worker may hold one
/// request, after which it is disconnected and the request re-queued.
#[test]
fn a_lost_request_does_not_pin_the_worker() {
    let mut c = SimConfig::new(2);
    c.client_timeout = Duration::from_secs(1);
    c.broker.max_job_time = Some(Duration::from_secs(5));
    let mut sim = Sim::new(c);
    let echo = Bytes::from_static(b"echo");
    sim.add_worker(echo.clone(), Dialect::V02);
    let client = sim.add_client(Dialect::V02);
    sim.run_for(Duration::from_millis(10), STEPS).unwrap();
    // The next message on the worker's link is the REQUEST.
    sim.net.drop_next(mdp_testkit::Node::Worker(0), 1);
    sim.request(client, echo.clone()).unwrap();
    sim.quiesce(STEPS).unwrap();
    // The client resent it twice on new connections; the broker queued
    // those, with its only worker still "busy".
    sim.run_for(Duration::from_secs(30), STEPS).unwrap();
    sim.request(client, echo).unwrap();
    sim.quiesce(STEPS).unwrap();
    let counts = sim.finish();
    assert!(counts.answered >= 1, "no request answered in 30 s: {}", sim.describe());
}

/// Fixed: when the broker drops a request (expired in its queue, dispatched
/// too often, or `PartlyAnswered`), a client with a later request for the
/// same service outstanding on the same connection took the later request's
/// reply for the dropped one's, since replies are matched by order. The
/// client now puts one request per service on the wire at a time, so the
/// later request is not sent until the first is answered or has failed.
#[test]
fn a_dropped_request_does_not_shift_later_replies() {
    let mut c = SimConfig::new(3);
    c.broker.request_timeout = Duration::from_secs(1);
    c.client_timeout = Duration::from_secs(30);
    let mut sim = Sim::new(c);
    let echo = Bytes::from_static(b"echo");
    let client = sim.add_client(Dialect::V02);
    sim.request(client, echo.clone()).unwrap();
    sim.run_for(Duration::from_millis(500), STEPS).unwrap();
    sim.request(client, echo.clone()).unwrap();
    // The first request expires in the broker's queue at 1 s; a worker
    // arrives at 1.2 s and answers the second, which the client matches to
    // the first: the checker panics.
    sim.run_for(Duration::from_millis(700), STEPS).unwrap();
    sim.add_worker(echo, Dialect::V02);
    sim.quiesce(STEPS).unwrap();
    sim.finish();
}

/// Fixed: when the broker restarts, a client's DEALER reconnects to the new
/// broker without the client state machine hearing of it. A request it had
/// at the old broker is gone; a later request for the same service, answered
/// by the new broker, was taken for the lost one's answer. With one request
/// per service on the wire, the later request waits until the lost one times
/// out and is resent.
#[test]
fn a_broker_restart_does_not_shift_later_replies() {
    let mut c = SimConfig::new(4);
    c.service_time = Duration::from_millis(500);
    let mut sim = Sim::new(c);
    let echo = Bytes::from_static(b"echo");
    sim.add_worker(echo.clone(), Dialect::V02);
    let client = sim.add_client(Dialect::V02);
    sim.request(client, echo.clone()).unwrap();
    sim.run_for(Duration::from_millis(100), STEPS).unwrap();
    sim.restart_broker(0);
    sim.run_for(Duration::from_millis(100), STEPS).unwrap();
    // Answered by the new broker once the worker registers again; the
    // client matches it to the first request: the checker panics.
    sim.request(client, echo).unwrap();
    sim.quiesce(STEPS).unwrap();
    sim.finish();
}

/// Fixed by `Client::cancel`: an application gave up on a request after
/// 0.5 s, which a worker takes 2 s to answer. The adapter only hid its
/// answer and the core kept it on the wire, so the next request to that
/// service waited the remaining 1.5 s behind it, though a second worker was
/// idle. Cancelling replaces the lane at once, so the next request goes to
/// the idle worker, and the late answer, which comes to the old connection,
/// can never be taken for the new request's (the checker would flag it).
#[test]
fn a_cancelled_request_does_not_hold_up_the_next() {
    for cancel in [false, true] {
        let mut c = SimConfig::new(5);
        c.service_time = Duration::from_secs(2);
        c.client_timeout = Duration::from_secs(30);
        let mut sim = Sim::new(c);
        let echo = Bytes::from_static(b"echo");
        sim.add_worker(echo.clone(), Dialect::V02);
        sim.add_worker(echo.clone(), Dialect::V01);
        let client = sim.add_client(Dialect::V02);
        let first = sim.request(client, echo.clone()).unwrap();
        sim.run_for(Duration::from_millis(500), STEPS).unwrap();
        if cancel {
            assert!(sim.cancel(client, first));
        }
        let sent = sim.elapsed();
        let second = sim.request(client, echo.clone()).unwrap();
        sim.run_until(|s| !s.client(client).is_outstanding(second), STEPS).unwrap();
        let waited = sim.elapsed() - sent;
        if cancel {
            assert!(waited < Duration::from_millis(2100), "cancelled: the next request waited {waited:?}");
        } else {
            assert!(waited >= Duration::from_millis(3500), "not cancelled: the next request waited {waited:?}");
        }
        sim.quiesce(STEPS).unwrap();
        let counts = sim.finish();
        assert_eq!((counts.answered, counts.cancelled), (if cancel { 1 } else { 2 }, u64::from(cancel)));
    }
}
