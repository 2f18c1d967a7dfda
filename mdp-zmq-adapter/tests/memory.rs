//! What a hostile peer can make the broker hold, over real sockets: a
//! frame too large is refused before it is read.
#![allow(clippy::disallowed_methods)] // stands in for the application, which reads the clock

#[path = "../examples/attack/rig.rs"]
mod rig;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use mdp_core::{BrokerConfig, BrokerEvent, Limit};
use mdp_zmq_adapter::BrokerRunner;

/// The next event of a DEALER's monitor, waiting up to `limit`.
fn monitor_event(monitor: &zmq::Socket, limit: Duration) -> Option<u16> {
    if monitor.poll(zmq::POLLIN, limit.as_millis() as i64).unwrap() == 0 {
        return None;
    }
    let frames = monitor.recv_multipart(0).unwrap();
    frames.first().and_then(|f| f.get(..2)).map(|b| u16::from_le_bytes([b[0], b[1]]))
}

#[test]
fn a_frame_larger_than_max_message_bytes_is_refused_before_it_is_read() {
    let limit = 64 << 10;
    let mut config = BrokerConfig::default();
    config.max_message_bytes = limit;
    let mut runner = BrokerRunner::bind(config, &["tcp://127.0.0.1:*".to_owned()]).unwrap();
    let endpoint = runner.endpoints()[0].clone();
    let events = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let broker = {
        let (events, stop) = (events.clone(), stop.clone());
        thread::spawn(move || {
            runner.run(&stop, |e| events.lock().unwrap().push(e.clone())).unwrap();
            runner
        })
    };
    let ctx = zmq::Context::new();
    let peer = ctx.socket(zmq::DEALER).unwrap();
    peer.set_linger(0).unwrap();
    peer.monitor("inproc://peer-monitor", zmq::SocketEvent::DISCONNECTED as i32).unwrap();
    let monitor = ctx.socket(zmq::PAIR).unwrap();
    monitor.connect("inproc://peer-monitor").unwrap();
    peer.connect(&endpoint).unwrap();
    rig::barrier(&peer, Duration::from_secs(10));
    let limit_hits = || {
        let events = events.lock().unwrap();
        events.iter().filter(|e| matches!(e, BrokerEvent::LimitHit { limit: Limit::MessageBytes, .. })).count()
    };

    // Two frames of 40 KiB: each within ZMQ_MAXMSGSIZE (it limits frames),
    // so libzmq reads the message and the core refuses it whole.
    let half = vec![b'h'; 40 << 10];
    rig::send(&peer, &rig::request_frames("echo", &[&half, &half]));
    rig::barrier(&peer, Duration::from_secs(10));
    assert_eq!(limit_hits(), 1, "the core saw the 80 KiB message and refused it");
    assert_eq!(monitor_event(&monitor, Duration::ZERO), None, "no disconnect for frames within the limit");

    // One frame a byte over the limit: libzmq drops the connection as soon
    // as the frame's header announces its size, and the core never sees it.
    let over = vec![b'o'; limit + 1];
    rig::send(&peer, &rig::request_frames("echo", &[&over]));
    let event = monitor_event(&monitor, Duration::from_secs(10));
    assert_eq!(event, Some(zmq::SocketEvent::DISCONNECTED as u16), "the peer is disconnected");
    // The DEALER redials; the broker serves it again (as a new peer).
    rig::barrier(&peer, Duration::from_secs(10));
    stop.store(true, Ordering::Relaxed);
    let runner = broker.join().unwrap();
    assert_eq!(limit_hits(), 1, "the oversized frame never reached the core");
    let stats = runner.broker().stats();
    assert_eq!((stats.limits_hit, stats.queued_requests), (1, 0), "{stats:?}");
}
