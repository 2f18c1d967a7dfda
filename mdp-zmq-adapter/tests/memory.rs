//! What a hostile peer can make the broker hold, over real sockets: a
//! frame too large is refused before it is read, and a flood of large
//! requests for a service with no worker leaves `mdp-broker`'s resident
//! memory within the bound `BrokerConfig::max_queued_bytes` documents, while
//! a normal client keeps getting answers.
#![allow(clippy::disallowed_methods)] // stands in for the application, which reads the clock

#[path = "../examples/attack/rig.rs"]
mod rig;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mdp_core::{BrokerConfig, BrokerEvent, ClientConfig, Dialect, Limit, WorkerConfig};
use mdp_zmq_adapter::{BrokerRunner, Client, Worker};
use rig::{mib, BrokerProcess, Limits, NormalClient, RssSampler};

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
    let mut runner = BrokerRunner::bind(&["tcp://127.0.0.1:*"], config).unwrap();
    let endpoint = runner.endpoints()[0].clone();
    let events = Arc::new(Mutex::new(Vec::new()));
    let stop = runner.stop_handle();
    let broker = {
        let events = events.clone();
        thread::spawn(move || {
            runner.run(|e| events.lock().unwrap().push(e.clone())).unwrap();
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
    stop.stop();
    let runner = broker.join().unwrap();
    assert_eq!(limit_hits(), 1, "the oversized frame never reached the core");
    let stats = runner.broker().stats();
    assert_eq!((stats.limits_hit, stats.queued_requests), (1, 0), "{stats:?}");
}

/// A flood of 1 MiB requests, twenty times the byte budget, for a service with
/// no worker. It goes in bursts, each followed by a barrier, so that at most
/// one burst sits in libzmq ahead of the broker (libzmq's queues are the
/// transport's part of the memory, outside the core's bound; the `attack`
/// example floods without pauses). A normal client is served throughout, and
/// a worker that comes for the flooded service afterwards gets exactly the
/// requests that fitted in the budget.
#[test]
fn a_flood_of_large_requests_stays_within_the_byte_budget() {
    const BODY: usize = 1 << 20;
    const BURST: usize = 16;
    const BURSTS: usize = 20;
    let limits = Limits {
        max_queued_bytes: 16 << 20,
        max_queued_bytes_per_service: 16 << 20,
        max_queue_total: 1000,
        max_queue_per_service: 1000,
        max_workers: 8,
        max_services: 32,
        max_service_name_bytes: 255,
        max_message_bytes: BODY + 4096,
        max_message_frames: 1024,
    };
    // Long enough that nothing queued expires during the test.
    let args = [limits.args(), vec!["--request-timeout".into(), "120".into()]].concat();
    let broker = BrokerProcess::start(env!("CARGO_BIN_EXE_mdp-broker"), &args);
    let endpoint = broker.endpoint.clone();
    let (echo_stop, echo) = rig::echo_worker(&endpoint, "echo");
    let background = NormalClient::start(&endpoint, "echo");
    let mut normal = Client::connect(&endpoint, ClientConfig::new(Dialect::V02)).unwrap();
    let ask = |client: &mut Client, i: usize| {
        let body = vec![Bytes::from(format!("normal {i}"))];
        let reply = client.request("echo", body.clone(), Duration::from_secs(30));
        assert_eq!(reply.ok(), Some(body), "the normal client got no answer during burst {i}");
    };
    ask(&mut normal, 0);
    let base = broker.rss();
    let sampler = RssSampler::start(broker.pid());

    let flood = rig::dealer(&endpoint, 4);
    let body = vec![b'x'; BODY];
    for burst in 1..=BURSTS {
        for _ in 0..BURST {
            rig::send_request(&flood, "nobody", &body);
        }
        // While the broker reads the burst, a normal request goes through.
        ask(&mut normal, burst);
        rig::barrier(&flood, Duration::from_secs(60));
    }
    let peak = sampler.stop().max(broker.peak_rss());
    let served = background.stop();
    assert_eq!(served.failed, 0, "the background client lost requests: {served:?}");
    assert!(served.answered > 0, "{served:?}");

    // The core's bound for these limits, plus one burst that libzmq may
    // hold, plus the allocator's slack of a few MiB.
    let burst = (BURST * BODY) as u64;
    let bound = base + limits.core_bound() + burst + (8 << 20);
    assert!(
        peak <= bound,
        "peak resident memory {:.1} MiB > {:.1} MiB (started at {:.1} MiB, core bound {:.1} MiB, a burst {:.1} MiB)",
        mib(peak),
        mib(bound),
        mib(base),
        mib(limits.core_bound()),
        mib(burst)
    );
    eprintln!("peak {:.1} MiB, bound {:.1} MiB", mib(peak), mib(bound));
    // Without the budget it would hold the whole flood, far past the bound.
    assert!(((BURSTS * BURST * BODY) as u64) > 4 * (bound - base));

    // What the budget admitted: requests of 1 MiB, each charged its body,
    // the flooding peer's 5-byte libzmq identity and two frame overheads.
    let charge = BODY + 5 + 2 * BrokerConfig::FRAME_OVERHEAD;
    let fitted = limits.max_queued_bytes / charge;
    let got = Arc::new(AtomicUsize::new(0));
    let worker = Worker::connect(&endpoint, WorkerConfig::new(Bytes::from_static(b"nobody"), Dialect::V02)).unwrap();
    let nobody_stop = worker.stop_handle();
    let nobody = {
        let got = got.clone();
        thread::spawn(move || {
            worker
                .run(|body, _| {
                    if body.first().is_some_and(|f| f.len() == BODY) {
                        got.fetch_add(1, Ordering::Relaxed);
                        return vec![Bytes::from_static(b"ok")];
                    }
                    body
                })
                .unwrap()
        })
    };
    // A last small request queues behind whatever is left of the flood (one
    // client's requests to one service are served in order): once it is
    // answered, every admitted request has been served.
    rig::send(&flood, &rig::request_frames("nobody", &[b"last"]));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "the flooded service's queue never drained");
        if flood.poll(zmq::POLLIN, 100).unwrap() > 0 {
            let reply = flood.recv_multipart(0).unwrap();
            if reply.get(3).is_some_and(|f| f == b"last") {
                break;
            }
        }
    }
    assert_eq!(got.load(Ordering::Relaxed), fitted, "requests admitted within the byte budget");
    for (stop, handle) in [(nobody_stop, nobody), (echo_stop, echo)] {
        stop.stop();
        handle.join().unwrap();
    }
}
