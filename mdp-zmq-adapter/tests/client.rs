//! The blocking client over real sockets: cancelling when the caller stops
//! waiting, and answers that restart after a resend.
#![allow(clippy::disallowed_methods)] // stands in for the application, which reads the clock

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use mdp_core::{BrokerConfig, ClientConfig, Dialect, Multipart, WorkerConfig};
use mdp_zmq_adapter::{BrokerRunner, Client, ClientError, PartSink, StopHandle, Worker};

const WAIT: Duration = Duration::from_secs(20);

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// A broker on a free port and workers of one service, all stopped on drop.
struct Setup {
    endpoint: String,
    stop: StopHandle,
    broker: Option<thread::JoinHandle<()>>,
    workers: Vec<(StopHandle, thread::JoinHandle<()>)>,
}

impl Setup {
    fn new() -> Setup {
        let mut runner = BrokerRunner::bind(&["tcp://127.0.0.1:*"], BrokerConfig::default()).unwrap();
        let endpoint = runner.endpoints()[0].clone();
        let stop = runner.stop_handle();
        let broker = thread::spawn(move || runner.run(|_| {}).unwrap());
        Setup { endpoint, stop, broker: Some(broker), workers: Vec::new() }
    }

    /// Starts a worker of `service` running `handler`.
    fn worker<H>(&mut self, service: &str, handler: H)
    where
        H: FnMut(Multipart, &PartSink<'_>) -> Multipart + Send + 'static,
    {
        let worker = Worker::connect(&self.endpoint, WorkerConfig::new(b(service), Dialect::V02)).unwrap();
        let stop = worker.stop_handle();
        self.workers.push((stop, thread::spawn(move || worker.run(handler).unwrap())));
    }

    fn client(&self, config: ClientConfig) -> Client {
        Client::connect(&self.endpoint, config).unwrap()
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        for (stop, _) in &self.workers {
            stop.stop();
        }
        for (_, w) in self.workers.drain(..) {
            let _ = w.join();
        }
        self.stop.stop();
        if let Some(b) = self.broker.take() {
            let _ = b.join();
        }
    }
}

/// A gate a handler waits at until the test opens it.
#[derive(Clone)]
struct Gate(Arc<Mutex<mpsc::Receiver<()>>>);

impl Gate {
    fn new() -> (mpsc::Sender<()>, Gate) {
        let (tx, rx) = mpsc::channel();
        (tx, Gate(Arc::new(Mutex::new(rx))))
    }

    fn wait(&self) {
        let _ = self.0.lock().unwrap().recv_timeout(WAIT);
    }
}

/// Two workers: one that takes `slow`, sends a first part and holds the
/// rest until the gate opens, one idle. The client (one lane: one request per service on the wire)
/// gives up on `slow` with `give_up`, then asks for `fast`: it must be
/// answered by the idle worker while `slow` is still held. Without the
/// cancel, `fast` would wait in the client behind `slow` until the gate
/// opens, which is after this `fast` request's own deadline.
fn after_giving_up_the_next_request_goes_to_the_idle_worker(give_up: impl FnOnce(&mut Client)) {
    let mut setup = Setup::new();
    let (open, gate) = Gate::new();
    let held = Arc::new(AtomicBool::new(false));
    for _ in 0..2 {
        let (gate, held) = (gate.clone(), held.clone());
        setup.worker("echo", move |body, parts| {
            if body[0].as_ref() == b"slow" {
                held.store(true, Ordering::SeqCst);
                parts.send(vec![b("started")]);
                gate.wait();
            }
            body
        });
    }
    let mut client = setup.client(ClientConfig::new(Dialect::V02));
    give_up(&mut client);
    // (A request cancelled before libzmq sent it never leaves the client;
    // both ways of giving up here come after a worker took it.)
    let deadline = std::time::Instant::now() + WAIT;
    while !held.load(Ordering::SeqCst) {
        assert!(std::time::Instant::now() < deadline, "no worker took the slow request");
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(client.outstanding(), 0, "the slow request was cancelled");
    let reply = client.request("echo", vec![b("fast")], Duration::from_secs(5)).unwrap();
    assert_eq!(reply, vec![b("fast")]);
    open.send(()).unwrap();
}

#[test]
fn a_caller_timeout_cancels_the_request_and_frees_its_lane() {
    after_giving_up_the_next_request_goes_to_the_idle_worker(|client| {
        let err = client.request("echo", vec![b("slow")], Duration::from_millis(500)).unwrap_err();
        assert!(matches!(err, ClientError::Timeout(_)), "{err}");
    });
}

#[test]
fn dropping_parts_cancels_the_request_and_frees_its_lane() {
    after_giving_up_the_next_request_goes_to_the_idle_worker(|client| {
        // The caller reads the first part, then stops reading.
        let mut parts = client.parts("echo", vec![b("slow")], WAIT).unwrap();
        let id = parts.id();
        assert_eq!(parts.next().unwrap().unwrap(), vec![b("started")]);
        drop(parts);
        assert!(!client.cancel(id).unwrap(), "dropping Parts cancelled it already");
    });
}

/// Workers whose first answer (one PARTIAL, then nothing until the gate
/// opens) differs from every later one (PARTIAL `second 1`, FINAL
/// `second 2`). The client's 300 ms timeout resends the request, which
/// another worker answers from the start.
fn restarting_answers(setup: &mut Setup) -> mpsc::Sender<()> {
    let (open, gate) = Gate::new();
    let calls = Arc::new(AtomicUsize::new(0));
    for _ in 0..2 {
        let (gate, calls) = (gate.clone(), calls.clone());
        setup.worker("echo", move |_, parts| {
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                parts.send(vec![b("first 1")]);
                gate.wait();
                return vec![b("first 2")];
            }
            parts.send(vec![b("second 1")]);
            vec![b("second 2")]
        });
    }
    open
}

fn restarting_client(setup: &Setup) -> Client {
    let mut config = ClientConfig::new(Dialect::V02);
    config.timeout = Duration::from_millis(300);
    setup.client(config)
}

#[test]
fn parts_says_the_answer_restarted_instead_of_splicing_two_answers() {
    let mut setup = Setup::new();
    let open = restarting_answers(&mut setup);
    let mut client = restarting_client(&setup);
    let parts: Vec<Result<Multipart, String>> = client
        .parts("echo", vec![b("x")], WAIT)
        .unwrap()
        .map(|p| {
            p.map_err(|e| match e {
                ClientError::Restarted(_) => "restarted".to_owned(),
                other => other.to_string(),
            })
        })
        .collect();
    let expected: Vec<Result<Multipart, String>> =
        vec![Ok(vec![b("first 1")]), Err("restarted".into()), Ok(vec![b("second 1")]), Ok(vec![b("second 2")])];
    assert_eq!(parts, expected);
    open.send(()).unwrap();
}

#[test]
fn request_returns_the_frames_of_one_answer_only() {
    let mut setup = Setup::new();
    let open = restarting_answers(&mut setup);
    let mut client = restarting_client(&setup);
    let reply = client.request("echo", vec![b("x")], WAIT).unwrap();
    assert_eq!(reply, vec![b("second 1"), b("second 2")]);
    open.send(()).unwrap();
}
