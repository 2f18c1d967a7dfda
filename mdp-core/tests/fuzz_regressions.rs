//! Inputs the fuzz targets in `fuzz/` found to break the core, each reduced
//! to the smallest case that showed the bug, so it stays fixed.

use std::time::{Duration, Instant};

use bytes::Bytes;
use mdp_core::{Broker, BrokerCommand, BrokerConfig, Dialect, PeerCommand, PeerId};

/// Found by `fuzz/fuzz_targets/broker.rs` (an out-of-memory crash): with a
/// zero `heartbeat_interval` and a non-zero `busy_worker_timeout`, a busy
/// worker's timer was re-armed at `now` itself, so `handle_timeout` popped it
/// again forever, queueing a HEARTBEAT each time. A zero interval is now
/// taken as 1 ms.
#[test]
fn zero_heartbeat_interval_does_not_spin_handle_timeout() {
    let t0 = Instant::now();
    let mut config = BrokerConfig::default();
    config.heartbeat_interval = Duration::ZERO;
    config.busy_worker_timeout = Some(Duration::from_secs(10));
    let mut broker = Broker::new(config, t0);
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
