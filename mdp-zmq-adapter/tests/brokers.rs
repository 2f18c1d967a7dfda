//! One worker registered with several brokers at once, over real sockets.
#![allow(clippy::disallowed_methods)] // stands in for the application, which reads the clock

use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mdp_core::{BrokerConfig, ClientConfig, Dialect, WorkerConfig};
use mdp_zmq_adapter::{AdapterError, BrokerRunner, Client, StopHandle, Workers};

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
}
