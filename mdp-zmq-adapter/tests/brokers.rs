//! Several brokers over real sockets: one worker registered with several at
//! once, and a client of several.
#![allow(clippy::disallowed_methods)] // stands in for the application, which reads the clock

use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mdp_core::{BrokerConfig, ClientConfig, ClientEvent, Dialect, WorkerConfig};
use mdp_zmq_adapter::{AdapterError, BrokerRunner, Client, ClientError, StopHandle, Worker, Workers};

const WAIT: Duration = Duration::from_secs(10);

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// A broker on a free port, on its own thread.
fn broker() -> (String, StopHandle, thread::JoinHandle<()>) {
    let mut runner = BrokerRunner::bind(&["tcp://127.0.0.1:*"], BrokerConfig::default()).unwrap();
    let endpoint = runner.endpoints()[0].clone();
    let stop = runner.stop_handle();
    (endpoint, stop, thread::spawn(move || runner.run(|_| {}).unwrap()))
}

fn client(endpoint: &str) -> Client {
    Client::connect(endpoint, ClientConfig::new(Dialect::V02)).unwrap()
}

/// Echoes, after sleeping as many milliseconds as the second frame says.
fn echo_slowly(body: mdp_core::Multipart, _: &mdp_zmq_adapter::PartSink<'_>) -> mdp_core::Multipart {
    let ms = body.get(1).and_then(|f| std::str::from_utf8(f).ok()?.parse().ok()).unwrap_or(0);
    thread::sleep(Duration::from_millis(ms));
    body
}

#[test]
fn one_worker_serves_two_brokers_and_is_busy_for_each_only_with_its_own_request() {
    let ((a, stop_a, broker_a), (b_end, stop_b, broker_b)) = (broker(), broker());
    let workers = Workers::connect(&[&a, &b_end], WorkerConfig::new(b("echo"), Dialect::V02)).unwrap();
    let stop = workers.stop_handle();
    let served = thread::spawn(move || workers.run(echo_slowly));

    let (mut via_a, mut via_b) = (client(&a), client(&b_end));
    assert_eq!(via_a.request(b("echo"), vec![b("a"), b("0")], WAIT).unwrap(), vec![b("a"), b("0")]);
    assert_eq!(via_b.request(b("echo"), vec![b("b"), b("0")], WAIT).unwrap(), vec![b("b"), b("0")]);

    // A slow request through A does not hold up B: B's slot is free.
    let slow = thread::spawn(move || via_a.request(b("echo"), vec![b("slow"), b("800")], WAIT).unwrap());
    thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    assert_eq!(via_b.request(b("echo"), vec![b("fast"), b("0")], WAIT).unwrap(), vec![b("fast"), b("0")]);
    assert!(started.elapsed() < Duration::from_millis(500), "B waited for A's request: {:?}", started.elapsed());
    assert_eq!(slow.join().unwrap(), vec![b("slow"), b("800")]);

    // Broker A goes away for good: B goes on being served.
    stop_a.stop();
    broker_a.join().unwrap();
    for i in 0..20 {
        let frame = b(&i.to_string());
        assert_eq!(via_b.request(b("echo"), vec![frame.clone(), b("0")], WAIT).unwrap(), vec![frame, b("0")]);
    }
    stop.stop();
    served.join().unwrap().unwrap();
    stop_b.stop();
    broker_b.join().unwrap();
}

#[test]
fn an_empty_broker_list_is_refused() {
    let none: [&str; 0] = [];
    let refused = Workers::connect(&none, WorkerConfig::new(b("echo"), Dialect::V02));
    assert!(matches!(refused, Err(AdapterError::NoEndpoint)));
    let refused = Client::connect_many(&none, ClientConfig::new(Dialect::V02));
    assert!(matches!(refused, Err(ClientError::Adapter(AdapterError::NoEndpoint))));
}

/// Lane `l` is connected to broker `l % brokers`, as the core expects: with
/// 2 lanes to each of two brokers, requests sent at once take lanes 0, 1, 2,
/// 3 in turn, so two go through one broker each, and four two each. (Lanes
/// 0 and 1 both to the first broker would answer the two from it alone.)
/// Each broker has a worker of its own that says which it is.
#[test]
fn a_client_of_two_brokers_has_lanes_to_each() {
    let ((a, stop_a, broker_a), (b_end, stop_b, broker_b)) = (broker(), broker());
    let tagging = |endpoint: &str, tag: &'static str| {
        let worker = Worker::connect(endpoint, WorkerConfig::new(b("echo"), Dialect::V02)).unwrap();
        let stop = worker.stop_handle();
        let served = thread::spawn(move || {
            worker.run(move |mut body, _| {
                body.push(b(tag));
                body
            })
        });
        (stop, served)
    };
    let workers = [tagging(&a, "via a"), tagging(&b_end, "via b")];
    // The list decides how many brokers there are, whatever the config said.
    let config = ClientConfig::new(Dialect::V02).with_lanes(2).with_brokers(7);
    let mut client = Client::connect_many(&[&a, &b_end], config).unwrap();
    let mut at_once = |n: usize| {
        for i in 0..n {
            client.send(b("echo"), vec![b(&i.to_string())]).unwrap();
        }
        let mut tags: Vec<Bytes> = (0..n)
            .map(|_| match client.recv(WAIT).unwrap() {
                ClientEvent::Reply { body, .. } => body[1].clone(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        tags.sort();
        tags
    };
    assert_eq!(at_once(2), [b("via a"), b("via b")]);
    assert_eq!(at_once(4), [b("via a"), b("via a"), b("via b"), b("via b")]);
    for (stop, served) in workers {
        stop.stop();
        served.join().unwrap().unwrap();
    }
    for (stop, broker) in [(stop_a, broker_a), (stop_b, broker_b)] {
        stop.stop();
        broker.join().unwrap();
    }
}
