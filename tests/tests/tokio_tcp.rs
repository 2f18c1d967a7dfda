//! The tokio TCP transport of `mdp-core/examples/tokio_tcp.rs`, under test:
//! a thousand requests across dialects, a worker lost in the middle of a
//! request, a broker restart, and the framing's limits.
//!
//! Every wait is for a condition (a broker event, a reply), bounded by
//! [`WAIT`], so a failure fails instead of hanging.

#[path = "../../mdp-core/examples/tokio_tcp/transport.rs"]
mod transport;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use mdp_core::{Backoff, BrokerConfig, BrokerEvent, ClientConfig, Dialect, GoneReason, PeerId, WorkerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::task::JoinHandle;
use tokio_util::codec::{Decoder, Encoder};
use transport::{spawn_broker, spawn_client, spawn_worker, BrokerHandle, ClientHandle, MultipartCodec, TcpOptions};

/// The longest any one condition may take.
const WAIT: Duration = Duration::from_secs(10);
/// Short heartbeats, so that lost peers are noticed in a few hundred ms.
const HEARTBEAT: Duration = Duration::from_millis(50);

fn echo() -> Bytes {
    Bytes::from_static(b"echo")
}

fn options() -> TcpOptions {
    TcpOptions { redial: Duration::from_millis(10), ..TcpOptions::default() }
}

fn broker_config(heartbeat: Duration) -> BrokerConfig {
    let mut config = BrokerConfig::default();
    config.heartbeat_interval = heartbeat;
    config
}

fn worker_config(dialect: Dialect, heartbeat: Duration, seed: u64) -> WorkerConfig {
    let mut config = WorkerConfig::new(echo(), dialect);
    config.heartbeat_interval = heartbeat;
    let mut backoff = Backoff::default();
    backoff.initial = Duration::from_millis(20);
    backoff.max = Duration::from_millis(200);
    backoff.seed = seed;
    config.backoff = backoff;
    config
}

fn client_config(dialect: Dialect, timeout: Duration) -> ClientConfig {
    let mut config = ClientConfig::new(dialect);
    config.timeout = timeout;
    config.tries = 5;
    config
}

async fn start_broker(heartbeat: Duration) -> BrokerHandle {
    spawn_broker("127.0.0.1:0".parse().unwrap(), broker_config(heartbeat), options()).await.unwrap()
}

/// Awaits `f`, failing the test if it takes longer than [`WAIT`].
async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f).await.unwrap_or_else(|_| panic!("{what}: not within {WAIT:?}"))
}

/// A worker that answers `[name, body...]`: in the 0.2 dialects as a PARTIAL
/// `[name]` and a FINAL `body`, which the broker (for an MDP/0.1 client) or
/// the client transport joins.
fn spawn_echo(
    addr: SocketAddr,
    name: &'static str,
    dialect: Dialect,
    heartbeat: Duration,
    seed: u64,
) -> JoinHandle<()> {
    let mut worker = spawn_worker(addr, worker_config(dialect, heartbeat, seed), options()).unwrap();
    tokio::spawn(async move {
        while let Some(job) = worker.next_job().await {
            let tag = Bytes::from_static(name.as_bytes());
            let body = job.body.clone();
            if dialect.supports_partial() {
                job.partial(vec![tag]).await;
                job.reply(body).await;
            } else {
                let mut reply = vec![tag];
                reply.extend(body);
                job.reply(reply).await;
            }
        }
    })
}

/// The next broker event that `pick` maps to something.
async fn next_event<T>(
    events: &mut broadcast::Receiver<BrokerEvent>,
    what: &str,
    pick: impl Fn(BrokerEvent) -> Option<T>,
) -> T {
    within(what, async {
        loop {
            match events.recv().await {
                Ok(event) => {
                    if let Some(found) = pick(event) {
                        return found;
                    }
                }
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => panic!("{what}: the broker stopped"),
            }
        }
    })
    .await
}

/// Waits for a worker to register and returns its identity and dialect.
async fn worker_ready(events: &mut broadcast::Receiver<BrokerEvent>) -> (PeerId, Dialect) {
    next_event(events, "WorkerReady", |e| match e {
        BrokerEvent::WorkerReady { worker, dialect, .. } => Some((worker, dialect)),
        _ => None,
    })
    .await
}

fn body(tag: &str, i: usize) -> Vec<Bytes> {
    vec![Bytes::from(format!("{tag}-{i}")), Bytes::from_static(b"\x00\xffbinary"), Bytes::new()]
}

/// Sends `n` requests, at most `window` at a time, checks every reply
/// against its request, and counts the replies per worker name.
async fn exchange(client: &ClientHandle, tag: &str, n: usize, window: usize) -> HashMap<Bytes, usize> {
    let answers: Vec<_> = futures::stream::iter(0..n)
        .map(|i| async move {
            let body = body(tag, i);
            (body.clone(), client.request(echo(), body).await)
        })
        .buffer_unordered(window)
        .collect()
        .await;
    let mut by_worker = HashMap::new();
    for (body, reply) in answers {
        let reply = reply.unwrap_or_else(|e| panic!("{}: {e}", body[0].escape_ascii()));
        assert_eq!(reply.get(1..), Some(&body[..]), "reply to {}", body[0].escape_ascii());
        *by_worker.entry(reply[0].clone()).or_insert(0) += 1;
    }
    by_worker
}

const MAJORTOMO_WORKER: &str = "majortomo-worker";
const V02_WORKER: &str = "v02-worker";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_requests_across_dialects() {
    // Heartbeats long enough that a loaded machine cannot make a worker give
    // up its broker mid-run: this test is about throughput and matching.
    let heartbeat = Duration::from_millis(500);
    let mut broker = start_broker(heartbeat).await;
    let _workers = [
        spawn_echo(broker.addr(), MAJORTOMO_WORKER, Dialect::Majortomo, heartbeat, 1),
        spawn_echo(broker.addr(), V02_WORKER, Dialect::V02, heartbeat, 2),
    ];
    worker_ready(&mut broker.events).await;
    worker_ready(&mut broker.events).await;
    let timeout = Duration::from_secs(5);
    let v01 = spawn_client(broker.addr(), client_config(Dialect::V01, timeout), options()).unwrap();
    let v02 = spawn_client(broker.addr(), client_config(Dialect::V02, timeout), options()).unwrap();

    let (a, b) = within("1,000 requests", async {
        tokio::join!(exchange(&v01, "v01-client", 500, 32), exchange(&v02, "v02-client", 500, 32))
    })
    .await;

    assert_eq!(a.values().sum::<usize>(), 500, "v01 client: {a:?}");
    assert_eq!(b.values().sum::<usize>(), 500, "v02 client: {b:?}");
    // Which worker serves which client depends on timing; that both serve
    // does not (the broker hands work to the least recently used worker).
    for worker in [MAJORTOMO_WORKER, V02_WORKER] {
        let name = Bytes::from_static(worker.as_bytes());
        let served = a.get(&name).unwrap_or(&0) + b.get(&name).unwrap_or(&0);
        assert!(served > 0, "{worker} served nothing: {a:?} {b:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_client_with_four_lanes_keeps_four_workers_busy_at_once() {
    // Each worker holds its request until all four hold one: with fewer
    // than four served at once, nobody answers and the test times out.
    const N: usize = 4;
    let heartbeat = Duration::from_millis(500);
    let mut broker = start_broker(heartbeat).await;
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(N));
    let mut workers = Vec::new();
    for seed in 0..N as u64 {
        let mut worker = spawn_worker(broker.addr(), worker_config(Dialect::V02, heartbeat, seed), options()).unwrap();
        let barrier = barrier.clone();
        workers.push(tokio::spawn(async move {
            while let Some(job) = worker.next_job().await {
                barrier.wait().await;
                let body = job.body.clone();
                job.reply(body).await;
            }
        }));
    }
    for _ in 0..N {
        worker_ready(&mut broker.events).await;
    }
    let config = client_config(Dialect::V02, Duration::from_secs(30)).with_lanes(N);
    let client = spawn_client(broker.addr(), config, options()).unwrap();
    let replies = within("four requests served at once", async {
        futures::future::join_all((0..N).map(|i| {
            let client = client.clone();
            async move { client.request(echo(), vec![Bytes::from(format!("r{i}"))]).await }
        }))
        .await
    })
    .await;
    for (i, reply) in replies.into_iter().enumerate() {
        assert_eq!(reply.unwrap(), vec![Bytes::from(format!("r{i}"))]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_closed_mid_request_has_it_redispatched() {
    // Heartbeats slow enough that no expiry can be what moves the request:
    // only the closed connection can.
    let slow = Duration::from_secs(2);
    let mut broker = start_broker(slow).await;
    let addr = broker.addr();
    let mut first = spawn_worker(addr, worker_config(Dialect::V02, slow, 1), options()).unwrap();
    let (first_id, _) = worker_ready(&mut broker.events).await;

    let client = spawn_client(addr, client_config(Dialect::V01, Duration::from_secs(5)), options()).unwrap();
    let request = vec![Bytes::from_static(b"in flight")];
    let reply = tokio::spawn({
        let (client, request) = (client.clone(), request.clone());
        async move { client.request(echo(), request).await }
    });
    let job = within("the request at the first worker", first.next_job()).await.expect("a job");
    assert_eq!(job.body, request);

    let _second = spawn_echo(addr, "second", Dialect::Majortomo, slow, 2);
    let (second_id, _) = worker_ready(&mut broker.events).await;

    // The first worker's process dies: its connection closes, request unanswered.
    drop(first);
    drop(job);

    let gone = next_event(&mut broker.events, "WorkerGone", |e| match e {
        BrokerEvent::WorkerGone { worker, reason, .. } => Some((worker, reason)),
        _ => None,
    })
    .await;
    assert_eq!(gone, (first_id, GoneReason::Unreachable));
    next_event(&mut broker.events, "RequestRequeued", |e| {
        matches!(e, BrokerEvent::RequestRequeued { .. }).then_some(())
    })
    .await;
    let to = next_event(&mut broker.events, "RequestDispatched", |e| match e {
        BrokerEvent::RequestDispatched { worker, .. } => Some(worker),
        _ => None,
    })
    .await;
    assert_eq!(to, second_id);

    let reply = within("the reply", reply).await.expect("request task").expect("a reply");
    assert_eq!(reply, vec![Bytes::from_static(b"second"), Bytes::from_static(b"in flight")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_a_broker_restart_the_workers_register_and_serve_again() {
    let mut broker = start_broker(HEARTBEAT).await;
    let addr = broker.addr();
    let _workers = [
        spawn_echo(addr, MAJORTOMO_WORKER, Dialect::Majortomo, HEARTBEAT, 1),
        spawn_echo(addr, V02_WORKER, Dialect::V02, HEARTBEAT, 2),
    ];
    worker_ready(&mut broker.events).await;
    worker_ready(&mut broker.events).await;
    // A short client timeout: its connection dies with the broker, and only
    // its timeout (the core's reconnect) replaces it. MDP/0.1, so that a
    // worker giving up the broker mid-request on a loaded machine cannot
    // leave the client with the PARTIALs of two attempts (0.1 replies are
    // joined at the broker, per attempt).
    let client = spawn_client(addr, client_config(Dialect::V01, Duration::from_millis(300)), options()).unwrap();
    let before = within("requests before the restart", exchange(&client, "before", 10, 1)).await;
    assert_eq!(before.len(), 2, "both workers serve: {before:?}");

    broker.kill().await;
    let mut broker = spawn_broker(addr, broker_config(HEARTBEAT), options()).await.expect("the same port again");

    let mut dialects = vec![worker_ready(&mut broker.events).await.1, worker_ready(&mut broker.events).await.1];
    dialects.sort_by_key(|d| d.to_string());
    let mut expected = vec![Dialect::Majortomo, Dialect::V02];
    expected.sort_by_key(|d| d.to_string());
    assert_eq!(dialects, expected);

    let after = within("requests after the restart", exchange(&client, "after", 20, 1)).await;
    assert_eq!(after.values().sum::<usize>(), 20);
    assert_eq!(after.len(), 2, "both workers serve again: {after:?}");
}

/// Client timeouts and heartbeats far longer than [`WAIT`]: only the
/// transport's report of a lost connection (`handle_connection_lost`) lets
/// the client resend and the worker register again in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_connection_is_acted_on_at_once_not_after_the_timeouts() {
    const SLOW: Duration = Duration::from_secs(30);
    let mut broker = start_broker(SLOW).await;
    let addr = broker.addr();
    let client = spawn_client(addr, client_config(Dialect::V02, Duration::from_secs(60)), options()).unwrap();
    // No worker yet: the request waits at the broker, and dies with it.
    let pending = {
        let client = client.clone();
        tokio::spawn(async move { client.request(echo(), vec![Bytes::from_static(b"lost")]).await })
    };
    broker.kill().await;
    broker = spawn_broker(addr, broker_config(SLOW), options()).await.expect("the same port again");
    let _worker = spawn_echo(addr, V02_WORKER, Dialect::V02, SLOW, 3);
    worker_ready(&mut broker.events).await;
    let reply = within("the resent request's reply", pending).await.expect("request task").expect("a reply");
    assert_eq!(reply, vec![Bytes::from_static(V02_WORKER.as_bytes()), Bytes::from_static(b"lost")]);

    // The registered worker loses its broker: it registers with the next.
    broker.kill().await;
    let mut broker = spawn_broker(addr, broker_config(SLOW), options()).await.expect("the same port again");
    worker_ready(&mut broker.events).await;
    let after = within("a request after the second restart", client.request(echo(), vec![Bytes::from_static(b"x")]));
    assert_eq!(after.await.expect("a reply")[1].as_ref(), b"x");
}

#[tokio::test]
async fn a_peer_announcing_too_much_is_disconnected() {
    let broker = start_broker(HEARTBEAT).await;
    // One frame of 4 GiB - 1, then 4 billion frames: refused from the header.
    let headers: [&[u8]; 2] = [&[0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff], &[0xff, 0xff, 0xff, 0xff]];
    for header in headers {
        let mut stream = TcpStream::connect(broker.addr()).await.unwrap();
        stream.write_all(header).await.unwrap();
        let mut buf = [0u8; 64];
        // Closed: end of stream, or a reset because our bytes went unread.
        let read = within("the broker closing the connection", stream.read(&mut buf)).await;
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
}

#[test]
fn the_codec_round_trips_whatever_the_chunking() {
    let mut codec = MultipartCodec::default();
    let message =
        vec![Bytes::new(), Bytes::from_static(b"MDPC01"), Bytes::from_static(b"echo"), Bytes::from(vec![7u8; 300])];
    let mut wire = BytesMut::new();
    codec.encode(message.clone(), &mut wire).unwrap();
    assert_eq!(wire[..12], [0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 6]);
    assert_eq!(wire.len(), 4 + 4 * 4 + 6 + 4 + 300);

    // Two messages back to back, fed a byte at a time: each decodes exactly
    // when its last byte arrives.
    let stream: Vec<u8> = wire.iter().chain(wire.iter()).copied().collect();
    let mut src = BytesMut::new();
    let mut decoded = Vec::new();
    for (i, byte) in stream.iter().enumerate() {
        src.put_u8(*byte);
        if let Some(m) = codec.decode(&mut src).unwrap() {
            decoded.push((i + 1, m));
        }
    }
    assert_eq!(decoded, vec![(wire.len(), message.clone()), (2 * wire.len(), message)]);
    assert!(src.is_empty());
}

#[test]
fn the_codec_enforces_its_limits_both_ways() {
    let mut codec = MultipartCodec::new(2, 10);
    let mut dst = BytesMut::new();
    assert!(codec.encode(vec![Bytes::new(); 3], &mut dst).is_err());
    assert!(codec.encode(vec![Bytes::from(vec![0u8; 11])], &mut dst).is_err());
    assert!(dst.is_empty(), "nothing written for a refused message");
    codec.encode(vec![Bytes::from(vec![0u8; 4]), Bytes::from(vec![0u8; 6])], &mut dst).unwrap();
    assert_eq!(codec.decode(&mut dst).unwrap().map(|m| m.len()), Some(2));

    // Refused as soon as the header is in, before the bytes it announces.
    let mut src = BytesMut::new();
    src.put_u32(3);
    assert!(codec.decode(&mut src).is_err());
    let mut src = BytesMut::new();
    src.put_u32(2);
    src.put_u32(6);
    src.extend_from_slice(b"abcdef");
    src.put_u32(5);
    assert!(codec.decode(&mut src).is_err());
}
