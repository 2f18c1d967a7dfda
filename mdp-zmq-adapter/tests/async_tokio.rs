//! The async client and worker (the `tokio` feature) over real sockets,
//! through a `BrokerRunner` on a thread: many tasks sharing one client,
//! cancelling by dropping a future, heartbeats during a long handler, a
//! graceful stop, streamed and restarted answers, a reader that falls
//! behind, and constructors outside a runtime.
#![cfg(unix)]
#![allow(clippy::disallowed_methods)] // stands in for the application, which reads the clock

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mdp_core::{BrokerConfig, BrokerEvent, ClientConfig, Dialect, GoneReason, Multipart, PeerId, WorkerConfig};
use mdp_zmq_adapter::{AdapterError, AsyncClient, AsyncPartSink, AsyncWorker, BrokerRunner, ClientError, StopHandle};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// The longest any test waits for anything; far above what each needs.
const WAIT: Duration = Duration::from_secs(30);

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// A broker on a free port on its own thread, recording its events.
struct Broker {
    endpoint: String,
    stop: StopHandle,
    thread: Option<thread::JoinHandle<()>>,
    events: Arc<Mutex<Vec<BrokerEvent>>>,
}

impl Broker {
    fn start(config: BrokerConfig) -> Broker {
        let mut runner = BrokerRunner::bind(&["tcp://127.0.0.1:*"], config).unwrap();
        let endpoint = runner.endpoints()[0].clone();
        let stop = runner.stop_handle();
        let events = Arc::new(Mutex::new(Vec::new()));
        let log = events.clone();
        let thread = thread::spawn(move || runner.run(|e| log.lock().unwrap().push(e.clone())).unwrap());
        Broker { endpoint, stop, thread: Some(thread), events }
    }

    fn events(&self) -> Vec<BrokerEvent> {
        self.events.lock().unwrap().clone()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An async worker of `service` with `concurrency` slots, running on its
/// own task; returns its stop handle and the task.
fn spawn_worker<H, F>(
    endpoint: &str,
    config: WorkerConfig,
    concurrency: usize,
    handler: H,
) -> (StopHandle, JoinHandle<Result<(), AdapterError>>)
where
    H: Fn(Multipart, AsyncPartSink) -> F + Send + Sync + 'static,
    F: Future<Output = Multipart> + Send + 'static,
{
    let worker = AsyncWorker::connect(endpoint, config, concurrency).unwrap();
    let stop = worker.stop_handle();
    (stop, tokio::spawn(worker.run(handler)))
}

fn echo_config() -> WorkerConfig {
    WorkerConfig::new(b("echo"), Dialect::V02)
}

/// Waits (polling) until `done` holds, or fails after [`WAIT`].
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_tasks_share_one_client_and_each_gets_its_own_reply() {
    const TASKS: usize = 1000;
    const WORKERS: usize = 8;
    let broker = Broker::start(BrokerConfig::default());
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        workers.push(spawn_worker(&broker.endpoint, echo_config(), 1, move |body, parts| async move {
            // A PARTIAL, and a little waiting, so that answers interleave.
            parts.send(vec![b("from"), Bytes::from(w.to_string())]).await;
            if body[1].len() % 3 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let mut reply = vec![Bytes::from(w.to_string())];
            reply.extend(body);
            reply
        }));
    }
    let client = AsyncClient::connect(&broker.endpoint, AsyncClient::config(Dialect::V02)).unwrap();
    let tasks: Vec<JoinHandle<(Multipart, Result<Multipart, ClientError>)>> = (0..TASKS)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                // Unique bodies, of different lengths.
                let body = vec![b("request"), Bytes::from("x".repeat(i % 7)), Bytes::from(i.to_string())];
                (body.clone(), client.request("echo", body).await)
            })
        })
        .collect();
    let mut served = BTreeMap::new();
    let all = async {
        for task in tasks {
            let (body, reply) = task.await.unwrap();
            let reply = reply.unwrap_or_else(|e| panic!("{body:?}: {e}"));
            // The PARTIAL and the FINAL of one worker, around this body.
            let w = reply[1].clone();
            assert_eq!(reply[0], b("from"), "{body:?}");
            assert_eq!(reply[2], w, "{body:?}: the PARTIAL and the FINAL come from one worker");
            assert_eq!(reply[3..], body[..], "a reply to another request");
            *served.entry(w).or_insert(0) += 1;
        }
    };
    tokio::time::timeout(WAIT, all).await.expect("every request answered in time");
    assert_eq!(served.values().sum::<usize>(), TASKS);
    assert_eq!(served.len(), WORKERS, "every worker served some: {served:?}");
    assert_eq!(client.outstanding(), 0);
    for (stop, _) in &workers {
        stop.stop();
    }
    for (_, task) in workers {
        task.await.unwrap().unwrap();
    }
}

/// How a caller gives up on a request that a worker holds.
type GiveUp = fn(AsyncClient, Arc<Notify>) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// Two workers; one takes `slow` and holds it (after a first PARTIAL)
/// until the test ends. The client has one lane, so one request per
/// service on the wire: the `fast` request sent after giving up on `slow`
/// goes out at once only if giving up cancelled `slow` in the core.
/// Otherwise it waits behind `slow` until the core's retries of `slow` run
/// out, 3 × 2.5 s, and the assertion on its time fails.
async fn after_giving_up_the_next_request_is_not_delayed(give_up: GiveUp) {
    let broker = Broker::start(BrokerConfig::default());
    let (held, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let (h, r) = (held.clone(), release.clone());
    let (stop, worker) = spawn_worker(&broker.endpoint, echo_config(), 2, move |body, parts| {
        let (held, release) = (h.clone(), r.clone());
        async move {
            if body[0] == b("slow") {
                parts.send(vec![b("started")]).await;
                held.notify_one();
                let _ = tokio::time::timeout(WAIT, release.notified()).await;
            }
            body
        }
    });
    let client = AsyncClient::connect(&broker.endpoint, ClientConfig::new(Dialect::V02)).unwrap();
    assert_eq!(client.lane_count(), 1);
    tokio::time::timeout(WAIT, give_up(client.clone(), held)).await.expect("the slow request reached a worker");
    assert_eq!(client.outstanding(), 0, "the slow request was cancelled");
    let t0 = Instant::now();
    let reply = tokio::time::timeout(WAIT, client.request("echo", vec![b("fast")])).await.unwrap().unwrap();
    let took = t0.elapsed();
    assert_eq!(reply, vec![b("fast")]);
    assert!(took < Duration::from_millis(1500), "the next request waited {took:?} behind the one given up");
    release.notify_waiters();
    stop.stop();
    worker.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_request_future_cancels_it_and_frees_its_lane() {
    after_giving_up_the_next_request_is_not_delayed(|client, held| {
        Box::pin(async move {
            let request = client.request("echo", vec![b("slow")]);
            tokio::select! {
                _ = request => panic!("the slow request was answered"),
                _ = held.notified() => {}
            }
            // `request` is dropped here, while the worker holds it.
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tokio_timeout_cancels_the_request() {
    after_giving_up_the_next_request_is_not_delayed(|client, held| {
        Box::pin(async move {
            let request =
                tokio::spawn(tokio::time::timeout(Duration::from_secs(1), client.request("echo", vec![b("slow")])));
            held.notified().await;
            assert!(request.await.unwrap().is_err(), "timed out");
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_timeout_cancels_the_request() {
    after_giving_up_the_next_request_is_not_delayed(|client, held| {
        Box::pin(async move {
            let request = tokio::spawn(client.request_timeout("echo", vec![b("slow")], Duration::from_secs(1)));
            held.notified().await;
            let err = request.await.unwrap().unwrap_err();
            assert!(matches!(err, ClientError::Timeout(_)), "{err}");
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_part_stream_cancels_the_request() {
    after_giving_up_the_next_request_is_not_delayed(|client, held| {
        Box::pin(async move {
            let mut parts = client.parts("echo", vec![b("slow")]);
            assert_eq!(parts.next().await.unwrap().unwrap(), vec![b("started")]);
            held.notified().await;
            drop(parts);
        })
    })
    .await;
}

/// The broker and the worker both give a peer up after 3 × 50 ms of
/// silence; the handler awaits 600 ms, four times that. If the worker did
/// not heartbeat meanwhile, the broker would expire it (and re-queue the
/// request), or the worker would give the broker up and register again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_awaiting_longer_than_three_heartbeat_windows_keeps_its_worker_registered() {
    let interval = Duration::from_millis(50);
    let mut broker_config = BrokerConfig::default();
    broker_config.heartbeat_interval = interval;
    broker_config.liveness = 3;
    let broker = Broker::start(broker_config);
    let mut config = echo_config();
    config.heartbeat_interval = interval;
    config.liveness = 3;
    let window = interval * config.liveness;
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let (stop, worker) = spawn_worker(&broker.endpoint, config, 1, move |body, _| {
        c.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(window * 4).await;
            body
        }
    });
    let client = AsyncClient::connect(&broker.endpoint, ClientConfig::new(Dialect::V02)).unwrap();
    for i in 0..2 {
        let t0 = Instant::now();
        let body = vec![Bytes::from(format!("long {i}"))];
        let reply = tokio::time::timeout(WAIT, client.request("echo", body.clone())).await.unwrap().unwrap();
        assert_eq!(reply, body);
        assert!(t0.elapsed() >= window * 3, "the handler ran for three windows");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2, "each request was served once, none re-queued");
    stop.stop();
    worker.await.unwrap().unwrap();
    let events = broker.events();
    let ready: Vec<&PeerId> = events
        .iter()
        .filter_map(|e| if let BrokerEvent::WorkerReady { worker, .. } = e { Some(worker) } else { None })
        .collect();
    assert_eq!(ready.len(), 1, "the worker registered once: {events:?}");
    let dispatched: Vec<&PeerId> = events
        .iter()
        .filter_map(|e| if let BrokerEvent::RequestDispatched { worker, .. } = e { Some(worker) } else { None })
        .collect();
    assert_eq!(dispatched, [ready[0], ready[0]], "both requests went to that one registration");
    eventually("the broker has the worker's DISCONNECT", || {
        broker.events().iter().any(|e| matches!(e, BrokerEvent::WorkerGone { .. }))
    })
    .await;
    let events = broker.events();
    let gone: Vec<&BrokerEvent> = events.iter().filter(|e| matches!(e, BrokerEvent::WorkerGone { .. })).collect();
    assert!(
        matches!(gone[..], [BrokerEvent::WorkerGone { reason: GoneReason::Disconnected, .. }]),
        "the worker left only by its DISCONNECT: {gone:?}"
    );
}

/// Worker A (4 slots, each handler 1 s) holds 4 of 12 requests when it is
/// stopped: it answers those 4, starts no other, and says DISCONNECT from
/// every slot. Worker B, started only after A has returned, serves the
/// rest, including those the broker had sent to a slot of A after its
/// FINAL (each slot's, as the queue is full). The client tries each
/// request once, so a request lost on the way would fail instead of being
/// resent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_answers_the_requests_in_hand_and_loses_none() {
    const REQUESTS: usize = 12;
    let broker = Broker::start(BrokerConfig::default());
    let started = Arc::new(AtomicUsize::new(0));
    let s = started.clone();
    let (stop_a, worker_a) = spawn_worker(&broker.endpoint, echo_config(), 4, move |body, _| {
        s.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            [vec![b("A")], body].concat()
        }
    });
    let mut config = AsyncClient::config(Dialect::V02);
    config.tries = 1;
    config.timeout = WAIT;
    let client = AsyncClient::connect(&broker.endpoint, config).unwrap();
    let requests: Vec<_> = (0..REQUESTS)
        .map(|i| {
            let body = vec![Bytes::from(format!("request {i}"))];
            (body.clone(), tokio::spawn(client.request("echo", body)))
        })
        .collect();
    eventually("worker A holds 4 requests", || started.load(Ordering::SeqCst) == 4).await;
    let t0 = Instant::now();
    stop_a.stop();
    tokio::time::timeout(WAIT, worker_a).await.unwrap().unwrap().unwrap();
    let stopping = t0.elapsed();
    assert!(stopping >= Duration::from_millis(500), "A returned after {stopping:?}, before its handlers finished");
    assert_eq!(started.load(Ordering::SeqCst), 4, "A started nothing after the stop");
    let (stop_b, worker_b) =
        spawn_worker(&broker.endpoint, echo_config(), 4, |body, _| async move { [vec![b("B")], body].concat() });
    let mut by = BTreeMap::new();
    for (body, request) in requests {
        let reply = tokio::time::timeout(WAIT, request)
            .await
            .unwrap_or_else(|_| panic!("{body:?} got no answer; the broker's events: {:#?}", broker.events()));
        let reply = reply.unwrap().unwrap();
        assert_eq!(reply[1..], body[..]);
        *by.entry(reply[0].clone()).or_insert(0) += 1;
    }
    assert_eq!(by.get(&b("A")), Some(&4), "A answered the 4 it held: {by:?}");
    assert_eq!(by.get(&b("B")), Some(&(REQUESTS - 4)), "B the rest: {by:?}");
    stop_b.stop();
    worker_b.await.unwrap().unwrap();
    // Every slot of A and B left at once, none by expiry. A slot's last
    // FINAL frees it at the broker, which may send it a queued request
    // just before its DISCONNECT arrives: then the broker re-queues the
    // request when it reads the DISCONNECT, or, if the slot's socket has
    // closed already, when its send finds the peer gone (`Unreachable`).
    let gone = || -> Vec<(PeerId, GoneReason)> {
        let events = broker.events().into_iter();
        events
            .filter_map(|e| {
                if let BrokerEvent::WorkerGone { worker, reason, .. } = e {
                    Some((worker, reason))
                } else {
                    None
                }
            })
            .collect()
    };
    eventually("every slot of A and B is gone", || gone().len() == 8).await;
    // A's slots left together, each giving back at most one request once
    // (see `AsyncWorker`, "Stopping"), so none was dropped for having been
    // dispatched too often.
    for e in broker.events() {
        match e {
            BrokerEvent::RequestRequeued { dispatches, .. } => {
                assert_eq!(dispatches, 1, "a request passed from slot to slot")
            }
            BrokerEvent::RequestDropped { .. } => panic!("{e:?}"),
            _ => {}
        }
    }
    let gone = gone();
    assert_eq!(gone.iter().map(|(w, _)| w).collect::<HashSet<_>>().len(), 8);
    assert!(
        gone.iter().all(|(_, reason)| matches!(reason, GoneReason::Disconnected | GoneReason::Unreachable)),
        "{gone:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_arrive_in_order_and_request_joins_them() {
    let broker = Broker::start(BrokerConfig::default());
    let (stop, worker) = spawn_worker(&broker.endpoint, echo_config(), 1, |body, parts| async move {
        for i in 0..3 {
            parts.send(vec![Bytes::from(format!("part {i}"))]).await;
        }
        body
    });
    let client = AsyncClient::connect(&broker.endpoint, ClientConfig::new(Dialect::V02)).unwrap();
    let mut parts = client.parts("echo", vec![b("x")]);
    assert_eq!(parts.id(), None, "nothing is sent before the first poll");
    let mut got = Vec::new();
    while let Some(part) = tokio::time::timeout(WAIT, parts.next()).await.unwrap() {
        got.push(part.unwrap());
    }
    assert_eq!(got, [vec![b("part 0")], vec![b("part 1")], vec![b("part 2")], vec![b("x")]]);
    let joined = client.request("echo", vec![b("y")]).await.unwrap();
    assert_eq!(joined, [b("part 0"), b("part 1"), b("part 2"), b("y")]);
    stop.stop();
    worker.await.unwrap().unwrap();
}

/// A worker streams 800 PARTIALs; the reader waits before reading any.
/// The client stops reading the lane once 128 are unread, and reads on as
/// the reader catches up: every part arrives, in order, none twice.
///
/// What the client does not read waits in libzmq: its socket's receive
/// pipe and the broker's send pipe to it, 1,000 messages each by default,
/// and the broker drops what does not fit. With 2,000 parts, as this test
/// once sent, about one run in six on a loaded 2-core machine waited for
/// the rest of the stream until the 30 s timeout restarted it, which is
/// what a dropped tail looks like (not traced further). 800 leave room,
/// and still make the client pause and resume a dozen times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_falls_behind_a_long_stream_gets_every_part_in_order() {
    const PARTS: usize = 800;
    let broker = Broker::start(BrokerConfig::default());
    let (stop, worker) = spawn_worker(&broker.endpoint, echo_config(), 1, |body, parts| async move {
        for i in 0..PARTS {
            parts.send(vec![Bytes::from(i.to_string())]).await;
        }
        body
    });
    let mut config = ClientConfig::new(Dialect::V02);
    config.timeout = WAIT;
    let client = AsyncClient::connect(&broker.endpoint, config).unwrap();
    let mut parts = client.parts("echo", vec![b("end")]);
    let first = tokio::time::timeout(WAIT, parts.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(first, vec![b("0")]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 1..PARTS {
        let part = tokio::time::timeout(WAIT, parts.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(part, vec![Bytes::from(i.to_string())]);
    }
    assert_eq!(tokio::time::timeout(WAIT, parts.next()).await.unwrap().unwrap().unwrap(), vec![b("end")]);
    assert!(parts.next().await.is_none());
    stop.stop();
    worker.await.unwrap().unwrap();
}

/// Two workers whose first answer (a PARTIAL, then nothing for a while)
/// differs from every later one. The client's 300 ms timeout resends the
/// request to the other worker, which answers from the start: the stream
/// says so, and `request` keeps only the second answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_restarts_is_reported_not_spliced() {
    let broker = Broker::start(BrokerConfig::default());
    let calls = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Notify::new());
    let (c, r) = (calls.clone(), release.clone());
    let (stop, worker) = spawn_worker(&broker.endpoint, echo_config(), 2, move |_, parts| {
        // Calls 0 and 2 are first answers; 1 and 3 their resends.
        let (first, release) = (matches!(c.fetch_add(1, Ordering::SeqCst), 0 | 2), r.clone());
        async move {
            if first {
                parts.send(vec![b("first 1")]).await;
                let _ = tokio::time::timeout(WAIT, release.notified()).await;
                return vec![b("first 2")];
            }
            parts.send(vec![b("second 1")]).await;
            vec![b("second 2")]
        }
    });
    let mut config = ClientConfig::new(Dialect::V02);
    config.timeout = Duration::from_millis(300);
    let client = AsyncClient::connect(&broker.endpoint, config).unwrap();
    let mut parts = client.parts("echo", vec![b("x")]);
    let mut got = Vec::new();
    while let Some(part) = tokio::time::timeout(WAIT, parts.next()).await.unwrap() {
        got.push(part.map_err(|e| match e {
            ClientError::Restarted(_) => "restarted".to_owned(),
            other => other.to_string(),
        }));
    }
    let expected: Vec<Result<Multipart, String>> =
        vec![Ok(vec![b("first 1")]), Err("restarted".into()), Ok(vec![b("second 1")]), Ok(vec![b("second 2")])];
    assert_eq!(got, expected);
    // The first call's worker lets go (its late answer goes to the lane
    // the resend replaced, and is lost with it). The third call is a
    // first again, and restarts on the fourth.
    release.notify_waiters();
    let joined = tokio::time::timeout(WAIT, client.request("echo", vec![b("y")])).await.unwrap().unwrap();
    assert_eq!(joined, [b("second 1"), b("second 2")]);
    release.notify_waiters();
    stop.stop();
    worker.await.unwrap().unwrap();
}

#[test]
fn outside_a_runtime_the_constructors_return_an_error() {
    let broker = Broker::start(BrokerConfig::default());
    let refused = AsyncClient::connect(&broker.endpoint, ClientConfig::new(Dialect::V02)).unwrap_err();
    assert!(matches!(refused, ClientError::Adapter(AdapterError::NoRuntime)), "{refused}");
    // The worker needs no runtime to be made, only to run.
    let worker = AsyncWorker::connect(&broker.endpoint, echo_config(), 2).unwrap();
    let refused = futures::executor::block_on(worker.run(|body, _| async { body })).unwrap_err();
    assert!(matches!(refused, AdapterError::NoRuntime), "{refused}");
    // A runtime without IO: tokio would panic; the constructor does not.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let refused = runtime
        .block_on(async { AsyncClient::connect(&broker.endpoint, ClientConfig::new(Dialect::V02)) })
        .unwrap_err();
    assert!(matches!(refused, ClientError::Adapter(AdapterError::NoRuntime)), "{refused}");
}

#[test]
fn the_client_is_shared_across_tasks_and_its_futures_can_be_spawned() {
    fn send_sync<T: Send + Sync + Clone + 'static>(_: &T) {}
    fn spawnable<T: Future + Send + 'static>(_: &T) {}
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _entered = runtime.enter();
    let client = AsyncClient::connect("tcp://127.0.0.1:9", ClientConfig::new(Dialect::V02)).unwrap();
    send_sync(&client);
    spawnable(&client.request("echo", vec![b("x")]));
    spawnable(&client.request_timeout("echo", vec![b("x")], Duration::from_secs(1)));
    let parts = client.parts("echo", vec![b("x")]);
    let _: &dyn futures::Stream<Item = Result<Multipart, ClientError>> = &parts;
    spawnable(&async move { drop(parts) });
}

#[test]
fn a_bad_configuration_is_refused_before_any_socket() {
    let config = ClientConfig::new(Dialect::V02).with_lanes(0);
    let refused = AsyncClient::connect("nowhere", config).unwrap_err();
    assert!(matches!(refused, ClientError::Config(mdp_core::ConfigError::Zero("lanes"))), "{refused}");
    let refused = AsyncWorker::connect("nowhere", echo_config(), 0).unwrap_err();
    assert!(matches!(refused, AdapterError::Config(mdp_core::ConfigError::Zero("concurrency"))), "{refused}");
    let refused = AsyncWorker::connect("nowhere", echo_config(), 1).unwrap_err();
    assert!(matches!(refused, AdapterError::Zmq { .. }), "{refused}");
}

/// A handler that panics before it even makes its future ends `run` with
/// `HandlerPanicked`, as a panic inside the future does, and its slot
/// still says DISCONNECT, so the broker hands the request to another
/// worker instead of waiting for this one's heartbeats to expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_panics_before_its_future_ends_run_and_disconnects() {
    let broker = Broker::start(BrokerConfig::default());
    let (_stop, worker) = spawn_worker(&broker.endpoint, echo_config(), 1, |body: Multipart, _parts| {
        if body.first().is_some_and(|f| f.as_ref() == b"boom") {
            panic!("the handler's synchronous part panics");
        }
        async move { body }
    });
    let client = AsyncClient::connect(&broker.endpoint, AsyncClient::config(Dialect::V02)).unwrap();
    let request = tokio::spawn(client.request("echo", vec![b("boom")]));
    let ended = tokio::time::timeout(WAIT, worker).await.expect("run ended").expect("task");
    assert!(matches!(ended, Err(AdapterError::HandlerPanicked)), "{ended:?}");
    eventually("the broker has the worker's DISCONNECT", || {
        broker.events().iter().any(|e| matches!(e, BrokerEvent::WorkerGone { reason: GoneReason::Disconnected, .. }))
    })
    .await;
    request.abort();
}
