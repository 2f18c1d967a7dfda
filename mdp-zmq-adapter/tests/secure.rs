//! CURVE and the policy over real sockets: an encrypted broker, keys it
//! admits by name, and what each name may serve and call.
#![allow(clippy::disallowed_methods)] // stands in for the application, which reads the clock

use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mdp_core::{BrokerConfig, ClientConfig, Dialect, WorkerConfig};
use mdp_zmq_adapter::{
    AllowList, BrokerRunner, Client, ClientError, CurveClient, CurveServer, KeyPair, StopHandle, Worker,
};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// Long enough for a handshake and a round trip on a loaded machine; short
/// enough that a test of silence takes seconds.
const ANSWER: Duration = Duration::from_secs(5);
const SILENCE: Duration = Duration::from_millis(1500);

/// A CURVE broker admitting `shop`, `pay-w` and `mallory` under `POLICY`,
/// with keys for each, stopped on drop.
struct Secure {
    endpoint: String,
    broker_key: KeyPair,
    keys: Vec<(&'static str, KeyPair)>,
    stops: Vec<StopHandle>,
    threads: Vec<thread::JoinHandle<()>>,
}

const POLICY: &str = "
    serve pay-w payments
    serve *     echo
    call  shop  payments echo
    call  mallory echo
";

impl Secure {
    fn new(policy: Option<&str>) -> Secure {
        let broker_key = KeyPair::generate().expect("this build has CURVE");
        let keys: Vec<_> =
            ["shop", "pay-w", "mallory"].into_iter().map(|n| (n, KeyPair::generate().unwrap())).collect();
        let mut allowed = AllowList::default();
        for (name, pair) in &keys {
            allowed.insert(pair.public, *name);
        }
        let mut config = BrokerConfig::default();
        config.policy = policy.map(|p| p.parse().unwrap());
        let curve = CurveServer { secret: broker_key.secret, allowed: Some(allowed) };
        let mut runner = BrokerRunner::bind_curve(&["tcp://127.0.0.1:*"], config, curve).unwrap();
        let endpoint = runner.endpoints()[0].clone();
        let stops = vec![runner.stop_handle()];
        let threads = vec![thread::spawn(move || runner.run(|_| {}).unwrap())];
        Secure { endpoint, broker_key, keys, stops, threads }
    }

    fn curve(&self, name: &str) -> CurveClient {
        let own = self.keys.iter().find(|(n, _)| *n == name).map(|(_, k)| *k).unwrap();
        CurveClient { server: self.broker_key.public, own }
    }

    /// An echo worker for `service`, connecting with `name`'s key.
    fn worker(&mut self, name: &str, service: &str, dialect: Dialect) {
        let config = WorkerConfig::new(b(service), dialect);
        let worker = Worker::connect_curve(&self.endpoint, config, self.curve(name)).unwrap();
        self.stops.push(worker.stop_handle());
        let tag = b(name);
        self.threads.push(thread::spawn(move || {
            worker
                .run(move |mut body, _| {
                    body.push(tag.clone());
                    body
                })
                .unwrap()
        }));
    }

    fn client(&self, name: &str, dialect: Dialect) -> Client {
        let mut config = ClientConfig::new(dialect);
        config.tries = 1;
        Client::connect_curve(&self.endpoint, config, self.curve(name)).unwrap()
    }
}

impl Drop for Secure {
    fn drop(&mut self) {
        // Workers first, the broker last, so that DISCONNECTs can go out.
        for stop in self.stops.iter().rev() {
            stop.stop();
        }
        for t in self.threads.drain(..).rev() {
            let _ = t.join();
        }
    }
}

/// Waits until `client`'s `mmi.service` query for `service` says 200.
fn await_service(client: &mut Client, service: &str) {
    let deadline = Instant::now() + ANSWER;
    while Instant::now() < deadline {
        if client.request(b("mmi.service"), vec![b(service)], ANSWER).ok() == Some(vec![b("200")]) {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    panic!("{service} never got a worker");
}

#[test]
fn this_build_has_curve() {
    assert!(mdp_zmq_adapter::curve_available(), "libzmq was built without libsodium");
}

#[test]
fn a_curve_client_and_worker_talk_through_a_curve_broker_in_every_dialect() {
    let mut s = Secure::new(None);
    for d in Dialect::ALL {
        let service = format!("echo-{d}");
        s.worker("pay-w", &service, d);
        let mut client = s.client("shop", d);
        await_service(&mut client, &service);
        let reply = client.request(b(&service), vec![b("hello")], ANSWER).unwrap();
        assert_eq!(reply, vec![b("hello"), b("pay-w")], "{d}");
    }
}

#[test]
fn a_plaintext_client_gets_nothing_and_the_broker_carries_on() {
    let mut s = Secure::new(None);
    s.worker("pay-w", "echo", Dialect::V02);
    let mut config = ClientConfig::new(Dialect::V02);
    config.tries = 1;
    let mut plain = Client::connect(&s.endpoint, config).unwrap();
    // The broker drops its connection at the handshake: the request times
    // out or fails for the lost connection, and never gets an answer.
    match plain.request(b("echo"), vec![b("hi")], SILENCE) {
        Err(ClientError::Timeout(_) | ClientError::Failed(_)) => {}
        other => panic!("a plaintext client got {other:?}"),
    }
    let mut client = s.client("shop", Dialect::V02);
    await_service(&mut client, "echo");
    assert_eq!(client.request(b("echo"), vec![b("hi")], ANSWER).unwrap(), vec![b("hi"), b("pay-w")]);
}

#[test]
fn a_key_the_broker_does_not_admit_gets_a_clear_error() {
    let mut s = Secure::new(None);
    s.worker("pay-w", "echo", Dialect::V02);
    let stranger = CurveClient { server: s.broker_key.public, own: KeyPair::generate().unwrap() };
    let mut config = ClientConfig::new(Dialect::V02);
    config.tries = 1;
    let mut client = Client::connect_curve(&s.endpoint, config, stranger).unwrap();
    let started = Instant::now();
    match client.request(b("echo"), vec![b("hi")], SILENCE) {
        Err(e @ ClientError::NoHandshake { .. }) => assert!(e.to_string().contains("--curve-server"), "{e}"),
        other => panic!("an unknown key got {other:?}"),
    }
    assert!(started.elapsed() < SILENCE * 2, "it did not hang");
}

#[test]
fn a_wrong_server_key_fails_cleanly_naming_the_likely_cause() {
    let s = Secure::new(None);
    let mut wrong = s.curve("shop");
    wrong.server = KeyPair::generate().unwrap().public;
    let mut config = ClientConfig::new(Dialect::V02);
    config.tries = 1;
    let mut client = Client::connect_curve(&s.endpoint, config, wrong).unwrap();
    match client.request(b("echo"), vec![b("hi")], SILENCE) {
        Err(e @ ClientError::NoHandshake { .. }) => assert!(e.to_string().contains(&s.endpoint), "{e}"),
        other => panic!("a wrong server key got {other:?}"),
    }
}

#[test]
fn a_worker_may_not_serve_what_the_policy_does_not_grant() {
    let mut s = Secure::new(Some(POLICY));
    // mallory may not serve payments; pay-w may serve echo (everyone may).
    s.worker("mallory", "payments", Dialect::V02);
    s.worker("pay-w", "echo", Dialect::V02);
    let mut shop = s.client("shop", Dialect::V02);
    await_service(&mut shop, "echo");
    let reply = shop.request(b("mmi.service"), vec![b("payments")], ANSWER).unwrap();
    assert_eq!(reply, vec![b("404")], "mallory's READY for payments was refused");
    match shop.request(b("payments"), vec![b("pay 10")], SILENCE) {
        Err(ClientError::Timeout(_)) => {}
        other => panic!("payments answered without an allowed worker: {other:?}"),
    }
    s.worker("pay-w", "payments", Dialect::V02);
    await_service(&mut shop, "payments");
    assert_eq!(shop.request(b("payments"), vec![b("pay 10")], ANSWER).unwrap(), vec![b("pay 10"), b("pay-w")]);
}

#[test]
fn a_client_may_not_call_what_the_policy_does_not_grant() {
    let mut s = Secure::new(Some(POLICY));
    s.worker("pay-w", "payments", Dialect::V02);
    let mut shop = s.client("shop", Dialect::V02);
    await_service(&mut shop, "payments");
    let mut mallory = s.client("mallory", Dialect::V02);
    let reply = mallory.request(b("mmi.service"), vec![b("payments")], ANSWER).unwrap();
    assert_eq!(reply, vec![b("404")], "mallory learns nothing about payments");
    match mallory.request(b("payments"), vec![b("pay 1000")], SILENCE) {
        Err(ClientError::Timeout(_)) => {}
        other => panic!("mallory's payment got {other:?}"),
    }
    assert_eq!(shop.request(b("payments"), vec![b("ok")], ANSWER).unwrap(), vec![b("ok"), b("pay-w")]);
}

/// A client of two CURVE brokers that share one key pair
/// (`Client::connect_many_curve`): its lanes to both are encrypted and
/// served, one request through each. With a wrong server key no lane
/// completes a handshake, and the error names both brokers.
#[test]
fn a_client_of_two_curve_brokers_is_served_by_both_or_names_both() {
    let broker_key = KeyPair::generate().unwrap();
    let peer = || CurveClient { server: broker_key.public, own: KeyPair::generate().unwrap() };
    let (mut endpoints, mut brokers, mut workers) = (Vec::new(), Vec::new(), Vec::new());
    for tag in ["via a", "via b"] {
        let curve = CurveServer { secret: broker_key.secret, allowed: None };
        let mut runner = BrokerRunner::bind_curve(&["tcp://127.0.0.1:*"], BrokerConfig::default(), curve).unwrap();
        let endpoint = runner.endpoints()[0].clone();
        brokers.push((runner.stop_handle(), thread::spawn(move || runner.run(|_| {}).unwrap())));
        let worker = Worker::connect_curve(&endpoint, WorkerConfig::new(b("echo"), Dialect::V02), peer()).unwrap();
        let stop = worker.stop_handle();
        let served = thread::spawn(move || {
            worker
                .run(move |mut body, _| {
                    body.push(b(tag));
                    body
                })
                .unwrap()
        });
        workers.push((stop, served));
        endpoints.push(endpoint);
    }

    let mut client = Client::connect_many_curve(&endpoints, ClientConfig::new(Dialect::V02), peer()).unwrap();
    // Lanes 0 and 1, one to each broker; a request waits at its broker
    // until the worker there has registered.
    for i in 0..2 {
        client.send(b("echo"), vec![b(&i.to_string())]).unwrap();
    }
    let mut tags: Vec<Bytes> = (0..2)
        .map(|_| match client.recv(ANSWER).unwrap() {
            mdp_core::ClientEvent::Reply { body, .. } => body[1].clone(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    tags.sort();
    assert_eq!(tags, [b("via a"), b("via b")]);

    let wrong = CurveClient { server: KeyPair::generate().unwrap().public, own: KeyPair::generate().unwrap() };
    let mut config = ClientConfig::new(Dialect::V02);
    config.tries = 1;
    let mut lost = Client::connect_many_curve(&endpoints, config, wrong).unwrap();
    match lost.request(b("echo"), vec![b("hi")], SILENCE) {
        Err(e @ ClientError::NoHandshake { .. }) => {
            let says = e.to_string();
            assert!(endpoints.iter().all(|end| says.contains(end.as_str())), "{says}");
            let ClientError::NoHandshake { endpoints: named, .. } = e else { unreachable!() };
            assert_eq!(named, endpoints);
        }
        other => panic!("a wrong server key got {other:?}"),
    }
    // Workers first, the brokers last, so that DISCONNECTs can go out.
    for (stop, thread) in workers.into_iter().chain(brokers) {
        stop.stop();
        thread.join().unwrap();
    }
}
