//! The broker's metrics under virtual time, against scripted scenarios
#![allow(clippy::disallowed_methods)] // stands in for the application, which reads the clock
//! whose every figure is known.

mod common;

use std::time::Duration;

use common::{id, ms, Harness};
use mdp_core::{BrokerConfig, Dialect, DropReason, Limit, ServiceMetrics, LATENCY_BOUNDS};

fn service<'a>(h: &'a Harness, name: &str) -> ServiceMetrics<'a> {
    h.broker.service_metrics().find(|s| s.name.as_ref() == name.as_bytes()).expect("the service is known")
}

/// The bucket a duration lands in: the index of the first bound at least
/// as long.
fn bucket_of(d: Duration) -> usize {
    LATENCY_BOUNDS.iter().position(|&b| d <= b).unwrap_or(LATENCY_BOUNDS.len())
}

/// Per bucket (not cumulative) counts of a histogram.
fn per_bucket(cumulative: impl Iterator<Item = (Option<Duration>, u64)>) -> Vec<u64> {
    let c: Vec<u64> = cumulative.map(|(_, n)| n).collect();
    c.iter().enumerate().map(|(i, &n)| n - if i == 0 { 0 } else { c[i - 1] }).collect()
}

#[test]
fn queue_and_service_times_and_outcomes_are_counted_from_the_given_clock() {
    let mut h = Harness::default();
    let (w1, w2, c) = (id("w1"), id("w2"), id("c"));
    h.ready(&w1, Dialect::V02, "echo");
    // Three requests at t=0: w1 takes the first at once (0 ms queued).
    for n in ["a", "b", "c"] {
        h.request(&c, Dialect::V01, "echo", &[n]);
    }
    let s = service(&h, "echo");
    assert_eq!((s.idle_workers, s.busy_workers, s.queued_requests, s.clients), (0, 1, 2, 1));
    assert_eq!((s.counters.received, s.counters.dispatched), (3, 1));
    assert!(s.queued_bytes > 0);
    // w2 arrives at 30 ms and takes the second (30 ms queued).
    h.set_time(ms(30));
    h.ready(&w2, Dialect::V02, "echo");
    // w1 answers at 40 ms (40 ms at the worker), then takes the third
    // (40 ms queued).
    h.set_time(ms(40));
    h.reply(&w1, Dialect::V02, &c, &["a"]);
    // w2 streams: a PARTIAL at 100 ms, the FINAL at 230 ms (200 ms at it).
    h.set_time(ms(100));
    h.partial(&w2, Dialect::V02, &c, &["b1"]);
    h.set_time(ms(230));
    h.reply(&w2, Dialect::V02, &c, &["b2"]);
    let s = service(&h, "echo");
    assert_eq!((s.idle_workers, s.busy_workers, s.queued_requests, s.queued_bytes), (1, 1, 0, 0));
    // The client's last request is at w1: it is still known.
    assert_eq!(s.clients, 1);
    let k = s.counters;
    assert_eq!((k.received, k.dispatched, k.answered, k.requeued, k.expired, k.dropped_total()), (3, 3, 2, 0, 0, 0));
    assert_eq!(k.queue_time.count(), 3);
    assert_eq!(k.queue_time.sum(), ms(70));
    let mut expected = vec![0; LATENCY_BOUNDS.len() + 1];
    for d in [ms(0), ms(30), ms(40)] {
        expected[bucket_of(d)] += 1;
    }
    assert_eq!(per_bucket(k.queue_time.cumulative()), expected);
    assert_eq!((k.service_time.count(), k.service_time.sum()), (2, ms(240)));
    let mut expected = vec![0; LATENCY_BOUNDS.len() + 1];
    for d in [ms(40), ms(200)] {
        expected[bucket_of(d)] += 1;
    }
    assert_eq!(per_bucket(k.service_time.cumulative()), expected);
    h.set_time(ms(250));
    h.reply(&w1, Dialect::V02, &c, &["c"]);
    assert_eq!(service(&h, "echo").clients, 0, "nothing held for it: the broker forgets the client");
}

#[test]
fn requeues_expiries_and_drops_are_counted_by_service_and_reason() {
    let mut config = BrokerConfig::default();
    config.max_dispatches = 2;
    config.request_timeout = ms(5000);
    let mut h = Harness::new(config);
    let (w1, w2, w3, c, other) = (id("w1"), id("w2"), id("w3"), id("c"), id("other"));
    // w3 is busy throughout, so "work" stays known.
    h.ready(&w3, Dialect::V02, "work");
    h.request(&other, Dialect::V02, "work", &["long"]);
    h.ready(&w1, Dialect::V02, "work");
    h.ready(&w2, Dialect::V02, "work");
    h.request(&c, Dialect::V02, "work", &["x"]);
    // Its worker leaves: re-queued, then w2 takes it (2nd dispatch) and
    // leaves too: dropped, too many dispatches.
    h.disconnect(&w1, Dialect::V02);
    h.disconnect(&w2, Dialect::V02);
    // A request for a service nobody serves expires after 5 s.
    h.request(&c, Dialect::V02, "nobody", &["y"]);
    h.run_until(ms(4000));
    let nobody = service(&h, "nobody");
    assert_eq!((nobody.counters.received, nobody.queued_requests, nobody.counters.expired), (1, 1, 0));
    h.heartbeat(&w3, Dialect::V02);
    h.run_until(ms(6000));
    let k = service(&h, "work").counters.clone();
    assert_eq!((k.received, k.dispatched, k.requeued, k.answered), (2, 3, 1, 0));
    assert_eq!((k.dropped(DropReason::TooManyDispatches), k.dropped_total()), (1, 1));
    // Queue time is counted once per request, at its first dispatch.
    assert_eq!(k.queue_time.count(), 2);
    // "nobody" expired its request and, with nothing left, was forgotten:
    // its series went with it. So does "work" once its last worker goes
    // (and the request it held expires, being past its deadline).
    assert!(h.broker.service_metrics().all(|s| s.name.as_ref() != b"nobody"));
    assert_eq!(h.broker.stats().expired, 1);
    h.disconnect(&w3, Dialect::V02);
    assert_eq!(h.broker.service_metrics().count(), 0);
    // The broker-wide count by reason stays.
    assert_eq!(h.broker.counters().dropped(DropReason::TooManyDispatches), 1);
    assert_eq!(h.broker.counters().dropped(DropReason::PartlyAnswered), 0);
}

#[test]
fn an_expiry_is_counted_while_its_service_is_still_known() {
    let mut config = BrokerConfig::default();
    config.request_timeout = ms(1000);
    let mut h = Harness::new(config);
    let (w, c1, c2) = (id("w"), id("c1"), id("c2"));
    h.ready(&w, Dialect::V02, "slow");
    h.request(&c1, Dialect::V02, "slow", &["held"]);
    h.request(&c2, Dialect::V02, "slow", &["waits"]);
    h.run_until(ms(1500));
    let s = service(&h, "slow");
    assert_eq!((s.counters.expired, s.queued_requests, s.busy_workers), (1, 0, 1));
}

#[test]
fn limit_hits_and_misbehaviour_are_counted_by_kind() {
    let mut config = BrokerConfig::default();
    config.max_queue_per_service = 1;
    let mut h = Harness::new(config);
    let (w, c) = (id("w"), id("c"));
    h.request(&c, Dialect::V02, "q", &["1"]);
    h.request(&c, Dialect::V02, "q", &["2"]);
    h.request(&c, Dialect::V02, "q", &["3"]);
    h.send(&c, vec![bytes::Bytes::from_static(b"not MDP")]);
    h.ready(&w, Dialect::V02, "s");
    h.ready(&w, Dialect::V02, "s");
    let counters = h.broker.counters();
    assert_eq!(counters.limit_hits(Limit::QueuePerService), 2);
    let hits: u64 = counters.limit_hits_by_limit().map(|(_, n)| n).sum();
    assert_eq!(hits, 2);
    let kinds: Vec<(&str, u64)> = counters.misbehaviour_by_kind().filter(|&(_, n)| n > 0).collect();
    assert_eq!(kinds, [("malformed", 1), ("ready_twice", 1)]);
    assert_eq!(h.broker.stats().misbehaviors, 2);
}
