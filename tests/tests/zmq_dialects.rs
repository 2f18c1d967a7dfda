//! Our MDP/0.1, RFC 18 and majortomo-dialect clients and workers, mixed on
//! one broker over TCP loopback, through the libzmq adapter.

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use mdp_core::{BrokerConfig, BrokerEvent, ClientConfig, ClientEvent, Dialect, WorkerConfig};
use mdp_zmq_adapter::{BrokerRunner, Client, StopHandle, Worker};

const WAIT: Duration = Duration::from_secs(20);

/// A broker on an OS-picked loopback port, running on its own thread.
struct TestBroker {
    endpoint: String,
    stop: StopHandle,
    events: Arc<Mutex<Vec<BrokerEvent>>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl TestBroker {
    fn start() -> Self {
        Self::with_config(BrokerConfig::default())
    }

    fn with_config(config: BrokerConfig) -> Self {
        let mut runner = BrokerRunner::bind(&["tcp://127.0.0.1:*"], config).unwrap();
        let endpoint = runner.endpoints()[0].clone();

        let events = Arc::new(Mutex::new(Vec::new()));
        let (stop, log) = (runner.stop_handle(), events.clone());
        let thread = thread::spawn(move || runner.run(|e| log.lock().unwrap().push(e.clone())).unwrap());
        TestBroker { endpoint, stop, events, thread: Some(thread) }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A worker of `service` in `dialect` that answers each request with
/// `[tag, frames...]`, streaming one PARTIAL `[tag, "part"]` first in 0.2.
fn spawn_worker(endpoint: &str, service: &'static str, dialect: Dialect) -> (StopHandle, thread::JoinHandle<()>) {
    let worker = Worker::connect(endpoint, WorkerConfig::new(Bytes::from_static(service.as_bytes()), dialect)).unwrap();
    let stop = worker.stop_handle();
    let tag = Bytes::from(format!("{dialect}"));
    let handle = thread::spawn(move || {
        worker
            .run(move |body, parts| {
                if dialect.supports_partial() {
                    parts.send(vec![tag.clone(), Bytes::from_static(b"part")]);
                }
                let mut reply = vec![tag.clone()];
                reply.extend(body);
                reply
            })
            .unwrap()
    });
    (stop, handle)
}

fn body(client: usize, i: usize) -> Vec<Bytes> {
    vec![Bytes::from(format!("c{client}-r{i}")), Bytes::from_static(b"\x00\xffbinary"), Bytes::new()]
}

#[test]
fn every_dialect_served_by_every_dialect_over_tcp() {
    let broker = TestBroker::start();
    let workers: Vec<_> = Dialect::ALL.iter().map(|&d| spawn_worker(&broker.endpoint, "echo", d)).collect();

    let per_client = 60;
    let clients: Vec<_> = Dialect::ALL
        .iter()
        .enumerate()
        .map(|(c, &dialect)| {
            let endpoint = broker.endpoint.clone();
            thread::spawn(move || {
                let mut client = Client::connect(&endpoint, ClientConfig::new(dialect)).unwrap();
                let mut served_by = std::collections::BTreeSet::new();
                for i in 0..per_client {
                    let reply = client.request("echo", body(c, i), WAIT).unwrap();
                    // The worker's tag, then (for 0.2 workers) the joined part.
                    let tag = reply[0].clone();
                    served_by.insert(String::from_utf8_lossy(&tag).into_owned());
                    let rest = if reply.get(1).is_some_and(|f| f.as_ref() == b"part") {
                        assert_eq!(reply[2], tag, "the FINAL follows the PARTIAL from the same worker");
                        &reply[3..]
                    } else {
                        &reply[1..]
                    };
                    assert_eq!(rest, &body(c, i)[..], "client {dialect} request {i}");
                }
                served_by
            })
        })
        .collect();
    let mut all_served_by = std::collections::BTreeSet::new();
    for c in clients {
        all_served_by.extend(c.join().unwrap());
    }
    assert_eq!(all_served_by.len(), 3, "requests reached workers of every dialect: {all_served_by:?}");
    for (stop, handle) in workers {
        stop.stop();
        handle.join().unwrap();
    }
}

#[test]
fn parts_arrive_one_by_one_and_many_requests_can_be_outstanding() {
    let broker = TestBroker::start();
    let (stop_a, a) = spawn_worker(&broker.endpoint, "a", Dialect::V02);
    let (stop_b, b) = spawn_worker(&broker.endpoint, "b", Dialect::Majortomo);

    let mut client = Client::connect(&broker.endpoint, ClientConfig::new(Dialect::V02)).unwrap();
    let parts: Vec<_> = client.parts("a", body(0, 0), WAIT).unwrap().map(Result::unwrap).collect();
    let tag = Bytes::from(Dialect::V02.to_string());
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0], vec![tag.clone(), Bytes::from_static(b"part")]);
    assert_eq!(parts[1][1..], body(0, 0)[..]);

    // Twenty requests outstanding across two services, answered in order
    // per service.
    let mut ids = Vec::new();
    for i in 0..20 {
        let service = if i % 2 == 0 { "a" } else { "b" };
        ids.push((client.send(service, body(1, i)).unwrap(), i));
    }
    let mut finals = std::collections::HashMap::new();
    while finals.len() < ids.len() {
        match client.recv(WAIT).unwrap() {
            ClientEvent::Reply { id, body } => {
                finals.insert(id, body);
            }
            ClientEvent::Partial { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    for (id, i) in ids {
        assert_eq!(finals[&id][1..], body(1, i)[..], "request {i} got its own reply");
    }
    for (stop, handle) in [(stop_a, a), (stop_b, b)] {
        stop.stop();
        handle.join().unwrap();
    }
}

#[test]
fn heartbeats_flow_while_a_slow_handler_works() {
    // The broker gives a silent worker 3 × 50 ms; the handler takes 600 ms.
    let mut config = BrokerConfig::default();
    config.heartbeat_interval = Duration::from_millis(50);
    let broker = TestBroker::with_config(config);
    let mut worker_config = WorkerConfig::new(Bytes::from_static(b"slow"), Dialect::V01);
    worker_config.heartbeat_interval = Duration::from_millis(50);
    let worker = Worker::connect(&broker.endpoint, worker_config).unwrap();
    let stop = worker.stop_handle();
    let handle = thread::spawn(move || {
        worker
            .run(|body, _| {
                thread::sleep(Duration::from_millis(600));
                body
            })
            .unwrap()
    });
    let mut client = Client::connect(&broker.endpoint, ClientConfig::new(Dialect::V01)).unwrap();
    let reply = client.request("slow", body(0, 0), WAIT).unwrap();
    assert_eq!(reply, body(0, 0));
    stop.stop();
    handle.join().unwrap();
    let events = broker.events.lock().unwrap();
    let dispatched = events.iter().filter(|e| matches!(e, BrokerEvent::RequestDispatched { .. })).count();
    assert_eq!(dispatched, 1, "answered by its first worker, never re-dispatched: {events:?}");
    assert!(
        !events.iter().any(|e| matches!(e, BrokerEvent::WorkerGone { reason: mdp_core::GoneReason::Expired, .. })),
        "the busy worker was never taken for dead: {events:?}"
    );
}

#[test]
fn a_majortomo_worker_serves_every_client_dialect() {
    let broker = TestBroker::start();
    let worker =
        Worker::connect(&broker.endpoint, WorkerConfig::new(Bytes::from_static(b"inline"), Dialect::Majortomo))
            .unwrap();
    let stop = worker.stop_handle();
    let handle = thread::spawn(move || {
        worker
            .run(|mut body, _| {
                body.insert(0, Bytes::from_static(b"inline"));
                body
            })
            .unwrap()
    });
    for (c, dialect) in Dialect::ALL.into_iter().enumerate() {
        let mut client = Client::connect(&broker.endpoint, ClientConfig::new(dialect)).unwrap();
        for i in 0..50 {
            let reply = client.request("inline", body(c, i), WAIT).unwrap();
            assert_eq!(reply[0].as_ref(), b"inline");
            assert_eq!(reply[1..], body(c, i)[..], "{dialect} request {i}");
        }
    }
    stop.stop();
    handle.join().unwrap();
}
