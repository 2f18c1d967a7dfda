//! Parallel dispatch over real sockets: a third-party client that pipelines
//! on one socket (a raw DEALER, as the Guide's `mdcliapi2` and NetMQ's async
//! client do) gets every worker of the service at once, and loses nothing;
//! so does our client with a lane per worker.
#![allow(clippy::disallowed_methods)] // stands in for the application, which reads the clock

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mdp_core::{BrokerCommand, BrokerConfig, ClientConfig, ClientEvent, Dialect, PeerCommand, WorkerConfig};
use mdp_zmq_adapter::{BrokerRunner, Client, Worker};

const WORKERS: usize = 8;
const REQUESTS: usize = 64;

/// How many handlers run at once, and the most that ever did.
#[derive(Default)]
struct Busy {
    now: usize,
    peak: usize,
}

/// A rendezvous: each handler waits (up to `patience`) until `WORKERS`
/// handlers have been busy at the same moment. If the broker served the
/// client's requests one at a time, that moment never comes, the handlers
/// give up waiting, and `peak` stays below `WORKERS`.
fn rendezvous(busy: &(Mutex<Busy>, Condvar), patience: Duration) {
    let (lock, cvar) = busy;
    let mut b = lock.lock().unwrap();
    b.now += 1;
    b.peak = b.peak.max(b.now);
    cvar.notify_all();
    let (mut b, _) = cvar.wait_timeout_while(b, patience, |b| b.peak < WORKERS).unwrap();
    b.now -= 1;
}

fn recv(socket: &zmq::Socket, deadline: Instant) -> Option<Vec<Bytes>> {
    while Instant::now() < deadline {
        if socket.poll(zmq::POLLIN, 50).unwrap() > 0 {
            return Some(socket.recv_multipart(0).unwrap().into_iter().map(Bytes::from).collect());
        }
    }
    None
}

/// A broker and `WORKERS` echo workers whose handlers meet at the
/// rendezvous; `client` runs against it and returns the bodies of the
/// replies it got. Checks that every request was answered once with its
/// own body, and that all the workers were busy at once.
fn every_worker_busy_at_once(client: impl FnOnce(&str, &BTreeSet<Bytes>) -> BTreeSet<Bytes>) {
    let mut runner = BrokerRunner::bind(&["tcp://127.0.0.1:*"], BrokerConfig::default()).unwrap();
    let endpoint = runner.endpoints()[0].clone();
    let stop = runner.stop_handle();
    let broker = thread::spawn(move || runner.run(|_| {}));
    let busy = Arc::new((Mutex::new(Busy::default()), Condvar::new()));
    let mut stops = Vec::new();
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let worker = Worker::connect(&endpoint, WorkerConfig::new(Bytes::from_static(b"echo"), Dialect::V02)).unwrap();
        stops.push(worker.stop_handle());
        let busy = busy.clone();
        workers.push(thread::spawn(move || {
            worker.run(|body, _| {
                rendezvous(&busy, Duration::from_secs(10));
                body
            })
        }));
    }
    // Workers may still be registering: requests sent before their READY
    // queue, and each READY takes one, so the rendezvous holds either way.
    let sent: BTreeSet<Bytes> = (0..REQUESTS).map(|i| Bytes::from(format!("request {i}"))).collect();
    let got = client(&endpoint, &sent);

    for s in &stops {
        s.stop();
    }
    for w in workers {
        w.join().unwrap().unwrap();
    }
    stop.stop();
    broker.join().unwrap().unwrap();

    assert_eq!(got, sent, "every request answered once, with its own body");
    let peak = busy.0.lock().unwrap().peak;
    assert_eq!(peak, WORKERS, "the most workers busy at once");
}

/// A raw DEALER client speaking `dialect` sends all 64 requests before it
/// reads any reply.
fn raw_dealer_client_gets_every_worker(dialect: Dialect) {
    every_worker_busy_at_once(|endpoint, bodies| {
        let ctx = zmq::Context::new();
        let client = ctx.socket(zmq::DEALER).unwrap();
        client.set_linger(0).unwrap();
        client.connect(endpoint).unwrap();
        for tag in bodies {
            let request = PeerCommand::Request { service: Bytes::from_static(b"echo"), body: vec![tag.clone()] };
            let frames = request.encode(dialect).unwrap();
            client.send_multipart(frames.iter().map(|f| f.as_ref()), 0).unwrap();
        }
        let mut got = BTreeSet::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while got.len() < bodies.len() {
            let Some(reply) = recv(&client, deadline) else { break };
            match BrokerCommand::decode(reply) {
                Ok((d, BrokerCommand::Final { body, .. })) if d == dialect && body.len() == 1 => {
                    assert!(got.insert(body[0].clone()), "a second reply to {:?}", body[0]);
                }
                other => panic!("unexpected message to the client: {other:?}"),
            }
        }
        got
    });
}

#[test]
fn a_raw_dealer_pipelining_mdp_0_1_keeps_all_eight_workers_busy() {
    raw_dealer_client_gets_every_worker(Dialect::V01);
}

#[test]
fn a_raw_dealer_pipelining_mdp_0_2_keeps_all_eight_workers_busy() {
    raw_dealer_client_gets_every_worker(Dialect::V02);
}

#[test]
fn our_client_with_eight_lanes_keeps_all_eight_workers_busy() {
    every_worker_busy_at_once(|endpoint, bodies| {
        let mut client = Client::connect(endpoint, ClientConfig::new(Dialect::V01).with_lanes(WORKERS)).unwrap();
        let mut sent = HashMap::new();
        for tag in bodies {
            sent.insert(client.send("echo", vec![tag.clone()]).unwrap(), tag.clone());
        }
        let mut got = BTreeSet::new();
        while got.len() < bodies.len() {
            match client.recv(Duration::from_secs(60)).unwrap() {
                ClientEvent::Reply { id, body } => {
                    assert_eq!(body, vec![sent[&id].clone()], "the reply to {id} is its own");
                    assert!(got.insert(body[0].clone()));
                }
                other => panic!("unexpected event: {other:?}"),
            }
        }
        got
    });
}

#[test]
fn the_runner_seeds_the_hash_from_the_os_unless_configured() {
    let bind = |config| BrokerRunner::bind(&["tcp://127.0.0.1:*"], config).unwrap();
    let a = bind(BrokerConfig::default()).broker().config().hash_seed;
    let b = bind(BrokerConfig::default()).broker().config().hash_seed;
    assert!(a.is_some() && b.is_some());
    assert_ne!(a, b, "two brokers got the same seed");
    let mut fixed = BrokerConfig::default();
    fixed.hash_seed = Some(7);
    assert_eq!(bind(fixed).broker().config().hash_seed, Some(7));
}
