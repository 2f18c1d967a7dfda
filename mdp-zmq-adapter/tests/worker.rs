//! The blocking worker over real sockets: what its stop promises.

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mdp_core::{BrokerConfig, BrokerEvent, ClientConfig, Dialect, GoneReason, WorkerConfig};
use mdp_zmq_adapter::{BrokerRunner, Client, Worker};

/// Waits up to `within` for `cond`; returns how long it took, or `None`.
fn wait_for(within: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        if cond() {
            return Some(start.elapsed());
        }
        thread::sleep(Duration::from_millis(10));
    }
    None
}

/// A stopped worker says DISCONNECT and the broker hears it: the broker
/// forgets the worker at once, instead of dispatching to it until its
/// heartbeats expire (3 × 2.5 s by default). Five workers in turn, each
/// must be gone by DISCONNECT and none by anything else. (The worker's
/// socket closes right after the DISCONNECT is queued, and it lingers so
/// that the message still goes out; on an idle localhost it usually gets
/// out even without the linger, so this test guards the DISCONNECT, not
/// the linger, which matters on a loaded machine or a slow link.)
#[test]
fn a_stopped_worker_is_gone_from_the_broker_by_its_disconnect() {
    let mut runner = BrokerRunner::bind(&["tcp://127.0.0.1:*"], BrokerConfig::default()).unwrap();
    let endpoint = runner.endpoints()[0].clone();
    let stop_broker = runner.stop_handle();
    let events = Arc::new(Mutex::new(Vec::new()));
    let log = events.clone();
    let broker = thread::spawn(move || runner.run(|e| log.lock().unwrap().push(e.clone())));

    for round in 0..5 {
        let worker = Worker::connect(&endpoint, WorkerConfig::new(Bytes::from_static(b"echo"), Dialect::V02)).unwrap();
        let stop = worker.stop_handle();
        let running = thread::spawn(move || worker.run(|body, _| body));
        let mut client = Client::connect(&endpoint, ClientConfig::new(Dialect::V01)).unwrap();
        let hi = vec![Bytes::from_static(b"hi")];
        assert_eq!(client.request("echo", hi.clone(), Duration::from_secs(10)).unwrap(), hi);

        stop.stop();
        running.join().expect("worker thread").expect("worker run");
        let gone = |reason: fn(&GoneReason) -> bool| {
            let log = events.lock().unwrap();
            log.iter().filter(|e| matches!(e, BrokerEvent::WorkerGone { reason: r, .. } if reason(r))).count()
        };
        let took = wait_for(Duration::from_secs(5), || gone(|r| *r == GoneReason::Disconnected) > round);
        assert!(took.is_some(), "round {round}: the broker never got the worker's DISCONNECT");
        assert_eq!(gone(|r| *r != GoneReason::Disconnected), 0, "a worker left otherwise than by DISCONNECT");
    }
    stop_broker.stop();
    broker.join().expect("broker thread").unwrap();
}
