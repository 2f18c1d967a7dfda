//! Interoperability with majortomo 0.2.0 (Python, from PyPI), in four
//! pairings of 1,000 requests each, with multi-frame bodies and PARTIALs,
//! every frame checked on both sides:
//!
//! 1. majortomo's client and worker through our broker;
//! 2. our client and worker through majortomo's broker (majortomo dialect);
//! 3. our client with majortomo's worker, through our broker;
//! 4. majortomo's client with our worker, through our broker;
//!
//! and a fifth, over CURVE: a raw MDP/0.2 client in pyzmq (whose libzmq has
//! CURVE) through our CURVE broker, admitted by its key, to our CURVE worker.
//!
//! The Python side lives in `tests/interop/` (see its `NOTES.md`); the venv
//! is made on first use by `tests/interop/setup-venv.sh`, which needs PyPI.
//! The frame rule both sides check is in `tests/interop/rule.py`; `request`,
//! `partial` and `final_part` below are the same rule in Rust.

use std::thread;
use std::time::Duration;

use bytes::Bytes;
use mdp_core::{BrokerConfig, ClientConfig, Dialect, WorkerConfig};
use mdp_zmq_adapter::{BrokerRunner, Client, StopHandle, Worker};

#[path = "../interop/harness.rs"]
mod harness;
use harness::{final_part, partial, request, their_broker, Script};

const COUNT: usize = 1000;
const PARTIALS: usize = 3;
const WAIT: Duration = Duration::from_secs(30);

/// Our broker on a free loopback port, on its own thread.
struct OurBroker {
    endpoint: String,
    stop: StopHandle,
    thread: Option<thread::JoinHandle<()>>,
}

impl OurBroker {
    fn start() -> Self {
        // majortomo's worker lets its idle heartbeats drift to 2-3 intervals
        // apart (NOTES.md); give it majortomo's own 10 s window.
        let mut config = BrokerConfig::default();
        config.liveness = 4;
        let mut runner = BrokerRunner::bind(&["tcp://127.0.0.1:*"], config).unwrap();
        let endpoint = runner.endpoints()[0].clone();
        let stop = runner.stop_handle();
        let thread = thread::spawn(move || runner.run(|_| {}).unwrap());
        OurBroker { endpoint, stop, thread: Some(thread) }
    }
}

impl Drop for OurBroker {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn their_worker(endpoint: &str) -> Script {
    let (count, partials) = (COUNT.to_string(), PARTIALS.to_string());
    let args = ["--broker", endpoint, "--service", "echo", "--partials", &partials, "--count", &count];
    Script::start("mt_worker.py", &args)
}

fn their_client(endpoint: &str) -> Script {
    let (count, partials) = (COUNT.to_string(), PARTIALS.to_string());
    let args = ["--broker", endpoint, "--service", "echo", "--partials", &partials, "--count", &count];
    Script::start("mt_client.py", &args)
}

/// Our worker applying the rule, on its own thread.
fn our_worker(endpoint: &str, dialect: Dialect) -> (StopHandle, thread::JoinHandle<()>) {
    let worker = Worker::connect(endpoint, WorkerConfig::new(Bytes::from_static(b"echo"), dialect)).unwrap();
    let stop = worker.stop_handle();
    let handle = thread::spawn(move || {
        worker
            .run(|req, parts| {
                for j in 0..PARTIALS {
                    parts.send(partial(j, &req));
                }
                final_part(&req)
            })
            .unwrap()
    });
    (stop, handle)
}

/// Our client sends COUNT requests and checks every frame of every part.
fn our_client(endpoint: &str, dialect: Dialect) {
    let mut client = Client::connect(endpoint, ClientConfig::new(dialect)).unwrap();
    for i in 0..COUNT {
        let req = request(i);
        let parts: Vec<Vec<Bytes>> = client.parts("echo", req.clone(), WAIT).unwrap().map(Result::unwrap).collect();
        assert_eq!(parts.len(), PARTIALS + 1, "request {i}: {PARTIALS} PARTIALs and a FINAL");
        for (j, part) in parts[..PARTIALS].iter().enumerate() {
            assert_eq!(part, &partial(j, &req), "request {i} part {j}");
        }
        assert_eq!(parts[PARTIALS], final_part(&req), "request {i} final");
    }
}

fn assert_ok(who: &str, (code, out): (i32, String)) {
    assert_eq!(code, 0, "{who} failed: {out}");
    assert!(out.contains(&format!("OK n={COUNT}")), "{who} did not report every request: {out}");
}

#[test]
fn pairing_1_their_client_and_worker_through_our_broker() {
    let broker = OurBroker::start();
    let worker = their_worker(&broker.endpoint);
    let client = their_client(&broker.endpoint);
    assert_ok("majortomo client", client.finish());
    let (code, out) = worker.finish();
    assert_eq!(code, 0, "majortomo worker: {out}");
    assert!(out.contains(&format!("served={COUNT}")), "majortomo worker: {out}");
}

#[test]
fn pairing_2_our_client_and_worker_through_their_broker() {
    let (_broker, endpoint) = their_broker();
    let (stop, worker) = our_worker(&endpoint, Dialect::Majortomo);
    our_client(&endpoint, Dialect::Majortomo);
    stop.stop();
    worker.join().unwrap();
}

#[test]
fn pairing_3_our_client_with_their_worker_through_our_broker() {
    let broker = OurBroker::start();
    let worker = their_worker(&broker.endpoint);
    // An RFC 18 client: our broker translates between the dialects.
    our_client(&broker.endpoint, Dialect::V02);
    let (code, out) = worker.finish();
    assert_eq!(code, 0, "majortomo worker: {out}");
}

#[test]
fn pairing_4_their_client_with_our_worker_through_our_broker() {
    let broker = OurBroker::start();
    // An RFC 18 worker: our broker translates between the dialects.
    let (stop, worker) = our_worker(&broker.endpoint, Dialect::V02);
    assert_ok("majortomo client", their_client(&broker.endpoint).finish());
    stop.stop();
    worker.join().unwrap();
}

#[test]
fn pairing_5_a_pyzmq_curve_client_through_our_curve_broker() {
    use mdp_zmq_adapter::{AllowList, CurveClient, CurveServer, KeyPair};
    let (broker_key, client_key, worker_key) =
        (KeyPair::generate().unwrap(), KeyPair::generate().unwrap(), KeyPair::generate().unwrap());
    let mut allowed = AllowList::default();
    allowed.insert(client_key.public, "py-client");
    allowed.insert(worker_key.public, "our-worker");
    let curve = CurveServer { secret: broker_key.secret, allowed: Some(allowed) };
    let mut runner = BrokerRunner::bind_curve(&["tcp://127.0.0.1:*"], BrokerConfig::default(), curve).unwrap();
    let endpoint = runner.endpoints()[0].clone();
    let stop_broker = runner.stop_handle();
    let broker = thread::spawn(move || runner.run(|_| {}).unwrap());
    let worker_curve = CurveClient { server: broker_key.public, own: worker_key };
    let worker =
        Worker::connect_curve(&endpoint, WorkerConfig::new(Bytes::from_static(b"echo"), Dialect::V01), worker_curve)
            .unwrap();
    let stop_worker = worker.stop_handle();
    let worker = thread::spawn(move || worker.run(|body, _| body).unwrap());
    let (server, public, secret) = (broker_key.public.to_z85(), client_key.public.to_z85(), client_key.secret.to_z85());
    // Z85 has '-' in its alphabet, and argparse takes a separate value that
    // starts with '-' for an option: one key in about 85 broke this test.
    // The `--name=value` form is never read that way.
    let args = [
        format!("--broker={endpoint}"),
        format!("--server-key={server}"),
        format!("--public={public}"),
        format!("--secret={secret}"),
        format!("--count={COUNT}"),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let client = Script::start("curve_client.py", &args);
    assert_ok("pyzmq CURVE client", client.finish());
    stop_worker.stop();
    worker.join().unwrap();
    stop_broker.stop();
    broker.join().unwrap();
}
