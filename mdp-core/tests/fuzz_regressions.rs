//! Inputs the fuzz targets in `fuzz/` found to break the core, each reduced
//! to the smallest case that showed the bug, so it stays fixed.
#![allow(clippy::disallowed_methods)] // stands in for the application, which reads the clock

use std::time::{Duration, Instant};

use bytes::Bytes;
use mdp_core::{Broker, BrokerCommand, BrokerConfig, BrokerEvent, ConfigError, Dialect, Limit, PeerCommand, PeerId};

/// Found by `fuzz/fuzz_targets/broker.rs` (an out-of-memory crash): with a
/// zero `heartbeat_interval` and a non-zero `busy_worker_timeout`, a busy
/// worker's timer was re-armed at `now` itself, so `handle_timeout` popped it
/// again forever, queueing a HEARTBEAT each time. A zero interval is now
/// refused by `Broker::new`, and the shortest one (1 ns) does not spin.
#[test]
fn zero_heartbeat_interval_does_not_spin_handle_timeout() {
    let t0 = Instant::now();
    let mut config = BrokerConfig::default();
    config.heartbeat_interval = Duration::ZERO;
    config.busy_worker_timeout = Some(Duration::from_secs(10));
    assert_eq!(Broker::new(config.clone(), t0).err(), Some(ConfigError::Zero("heartbeat_interval")));
    config.heartbeat_interval = Duration::from_nanos(1);
    let mut broker = Broker::new(config, t0).unwrap();
    let worker = PeerId::from(&b"worker"[..]);
    let client = PeerId::from(&b"client"[..]);
    let ready = PeerCommand::Ready { service: Bytes::from_static(b"echo") };
    broker.handle_message(t0, worker.clone(), ready.encode(Dialect::V01).unwrap());
    let request = PeerCommand::Request { service: Bytes::from_static(b"echo"), body: vec![Bytes::new()] };
    broker.handle_message(t0, client, request.encode(Dialect::V01).unwrap());
    while broker.poll_transmit().is_some() {}
    while broker.poll_event().is_some() {}

    // The worker is busy; its first heartbeat is due. One handle_timeout
    // sends at most one HEARTBEAT and leaves the next deadline in the future.
    let now = t0 + Duration::from_millis(1);
    broker.handle_timeout(now);
    let mut heartbeats = 0;
    while let Some(t) = broker.poll_transmit() {
        assert_eq!(t.to, worker);
        assert_eq!(BrokerCommand::decode(t.frames).unwrap().1, BrokerCommand::Heartbeat);
        heartbeats += 1;
    }
    assert_eq!(heartbeats, 1);
    assert!(broker.poll_timeout().is_some_and(|t| t > now));
}

/// Found by `fuzz/fuzz_targets/broker.rs` (a panic): `request_timeout =
/// Duration::MAX` (an application's "never") made the first REQUEST panic
/// with "overflow when adding duration to instant"; `heartbeat_interval` and
/// `busy_worker_timeout` did the same on READY and on a busy worker's timer.
/// Deadlines now saturate at the last representable instant.
#[test]
fn duration_max_in_the_config_does_not_overflow() {
    let t0 = Instant::now();
    let mut config = BrokerConfig::default();
    config.request_timeout = Duration::MAX;
    config.heartbeat_interval = Duration::MAX;
    config.busy_worker_timeout = Some(Duration::MAX);
    let mut broker = Broker::new(config, t0).unwrap();
    let client = PeerId::from(&b"client"[..]);
    let request = PeerCommand::Request { service: Bytes::from_static(b"echo"), body: vec![Bytes::new()] };
    broker.handle_message(t0, client.clone(), request.encode(Dialect::V02).unwrap());
    let ready = PeerCommand::Ready { service: Bytes::from_static(b"echo") };
    broker.handle_message(t0, PeerId::from(&b"worker"[..]), ready.encode(Dialect::V02).unwrap());
    let sent = broker.poll_transmit().expect("the queued request goes to the new worker");
    assert!(matches!(BrokerCommand::decode(sent.frames).unwrap().1, BrokerCommand::Request { .. }));
    for later in [Duration::from_secs(1), Duration::from_secs(1 << 30)] {
        broker.handle_timeout(t0 + later);
        assert!(broker.poll_transmit().is_none(), "nothing is due before the end of time");
    }
    assert_eq!(broker.stats().busy_workers, 1);
}

/// Found by `fuzz/fuzz_targets/broker.rs` (its bound on requests held,
/// `queued + busy <= max_queue_total + max_workers`, failed). A request an
/// idle worker takes at once is exempt from the queue limits; but once
/// re-queued requests had pushed the queues past their limits, that
/// exemption kept admitting requests, each of which could be re-queued in
/// turn when its worker was lost: with `max_queue_total = 1` and
/// `max_workers = 2` the broker held 4 requests, and repeating the cycle
/// grows that without bound. Now a queue past its limit admits nothing until
/// it is back within it.
#[test]
fn queues_past_their_limit_admit_nothing_even_for_an_idle_worker() {
    let t0 = Instant::now();
    let mut config = BrokerConfig::default();
    config.max_queue_total = 1;
    config.max_workers = 2;
    let mut broker = Broker::new(config, t0).unwrap();
    let mut send = |from: &'static [u8], command: PeerCommand| {
        broker.handle_message(t0, PeerId::from(from), command.encode(Dialect::V01).unwrap());
        while broker.poll_transmit().is_some() {}
        let events: Vec<_> = std::iter::from_fn(|| broker.poll_event()).collect();
        (broker.stats(), events)
    };
    let ready = |s: &'static [u8]| PeerCommand::Ready { service: Bytes::from_static(s) };
    let request = |s: &'static [u8]| PeerCommand::Request { service: Bytes::from_static(s), body: vec![Bytes::new()] };

    send(b"w1", ready(b"x"));
    send(b"w2", ready(b"a"));
    send(b"c1", request(b"x")); // to w1 at once
    send(b"c2", request(b"a")); // to w2 at once
    let (stats, _) = send(b"c3", request(b"a")); // waits: the queue is full
    assert_eq!((stats.queued_requests, stats.busy_workers), (1, 2));
    // w1 breaks the protocol and is dropped: c1's request goes back to its
    // queue, past the limit.
    let (stats, _) = send(b"w1", ready(b"b"));
    assert_eq!((stats.queued_requests, stats.busy_workers), (2, 1));
    // w1 comes back for another service; a request to it would be taken at
    // once, but the queues are past their limit.
    send(b"w1", ready(b"e"));
    let (stats, events) = send(b"c4", request(b"e"));
    assert!(events.iter().any(|e| matches!(e, BrokerEvent::LimitHit { limit: Limit::QueueTotal, .. })), "{events:?}");
    assert_eq!((stats.queued_requests, stats.busy_workers, stats.idle_workers), (2, 1, 1));
}
