//! The `adapter` runs: our [`BrokerRunner`] on its own thread, one thread
//! per [`Client`] (pipelining with `send`/`recv`, `spec.lanes` lanes), and
//! [`Worker`]s whose handler echoes the body (after sleeping the service
//! time, if any). Each client and worker has its own ZeroMQ context, as
//! `Client::connect` and `Worker::connect` make one; a client's lanes share it.
//! For `fanout-dealer` the client is the raw proxy's DEALER client
//! (`raw::client`), sending MDP requests straight to our broker. With
//! `spec.external` (the `external` transport) the same workers and clients
//! use that broker, and ours is not started.
//!
//! With `spec.brokers` > 1, that many of our brokers run, each on its own
//! thread; each worker is a [`Workers`] registered with all of them (one
//! connection and one handler slot per broker), and each client a
//! [`Client::connect_many`] of all of them with `spec.lanes_per_broker()`
//! lanes to each.
//!
//! With `spec.metrics` (`--metrics on`) each broker also serves metrics
//! ([`BrokerRunner::serve_metrics`] on a free port) and a thread named
//! `scraper` GETs its `/metrics` once a second until the broker stops, as
//! Prometheus would; the listener's thread counts as the broker's in the
//! CPU split, the scraper's as nobody's (it is in the total).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mdp_core::RequestId;
use mdp_core::{ClientConfig, ClientEvent, WorkerConfig};
use mdp_zmq_adapter::{BrokerRunner, Client, ClientError, PartSink, StopHandle, Worker, Workers};

use crate::{run_clients, BoxError, Measured, Shared, Spec, Window, BROKER, WORKER};

pub fn run(spec: &Spec, shared: &Shared, window: &Window, label: &str) -> Result<(Measured, Vec<u64>), BoxError> {
    let mut endpoints = Vec::new();
    let mut brokers = Vec::new();
    match &spec.external {
        Some(url) => endpoints.push(url.clone()),
        None => {
            for _ in 0..spec.brokers {
                let (endpoint, stop, thread) = start_broker(spec)?;
                endpoints.push(endpoint);
                brokers.push((stop, thread));
            }
        }
    }
    let mut worker_stops = Vec::new();
    let mut workers = Vec::new();
    for w in 0..spec.workers {
        let config = WorkerConfig::new(spec.service(w % spec.services), spec.dialect);
        let (stop, thread) = start_worker(&endpoints, config, spec.service_time)?;
        worker_stops.push(stop);
        workers.push(thread);
    }

    let clients = if spec.raw_client {
        run_clients(spec, shared, window, label, || {
            crate::raw::client(spec, &endpoints[0], shared, crate::raw::Replies::Mdp)
        })
    } else {
        run_clients(spec, shared, window, label, || client(spec, &endpoints, shared).map_err(BoxError::from))
    };

    for stop in &worker_stops {
        stop.stop();
    }
    for w in workers {
        w.join().expect("worker thread panicked")?;
    }
    for (stop, thread) in brokers {
        stop.stop();
        thread.join().expect("broker thread panicked")?;
    }
    clients
}

type BrokerThread = thread::JoinHandle<Result<(), mdp_zmq_adapter::AdapterError>>;
type WorkerThread = BrokerThread;

/// An echo worker (sleeping `service_time` first, if any) on a thread of its
/// own: its stop handle and its thread. It connects on that thread, so that
/// its ZeroMQ context's I/O and reaper threads, which libzmq starts with the
/// first socket, are named after it and count as the worker's in the CPU
/// split (connected on the main thread, they counted as nobody's).
///
/// With one endpoint it is a plain [`Worker`], as before `--brokers`
/// existed, so those figures stay comparable with the earlier ones; with
/// several, a [`Workers`], whose threads take this thread's name too.
fn start_worker(
    endpoints: &[String],
    config: WorkerConfig,
    service_time: Duration,
) -> Result<(StopHandle, WorkerThread), BoxError> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let endpoints = endpoints.to_vec();
    let echo = move |body, _: &PartSink<'_>| {
        if !service_time.is_zero() {
            thread::sleep(service_time);
        }
        body
    };
    let thread = thread::Builder::new().name(WORKER.into()).spawn(move || {
        if let [endpoint] = endpoints.as_slice() {
            let worker = Worker::connect(endpoint, config)?;
            let _ = ready_tx.send(worker.stop_handle());
            worker.run(echo)
        } else {
            let worker = Workers::connect(&endpoints, config)?;
            let _ = ready_tx.send(worker.stop_handle());
            worker.run(echo)
        }
    })?;
    match ready_rx.recv() {
        Ok(stop) => Ok((stop, thread)),
        Err(_) => Err(thread.join().expect("worker thread panicked").err().map_or("no worker".into(), Into::into)),
    }
}

/// Our broker on a thread of its own, bound to a free port: its endpoint,
/// its stop handle and its thread.
fn start_broker(spec: &Spec) -> Result<(String, StopHandle, BrokerThread), BoxError> {
    // The broker binds on its own thread, so that its ZeroMQ context's
    // threads are named after it (see `ProcStats`).
    let (bound_tx, bound_rx) = mpsc::channel();
    let config = spec.broker_config();
    let metrics = spec.metrics;
    let broker_thread = thread::Builder::new().name(BROKER.into()).spawn(move || {
        let mut broker = BrokerRunner::bind(&["tcp://127.0.0.1:*"], config)?;
        // Kept until `run` returns: dropping it stops the listener.
        let server = match metrics {
            true => Some(
                broker
                    .serve_metrics("127.0.0.1:0")
                    .map_err(|source| mdp_zmq_adapter::AdapterError::Thread { what: "metrics listener", source })?,
            ),
            false => None,
        };
        let stop = broker.stop_handle();
        if let Some(server) = &server {
            let (addr, stop) = (server.local_addr(), stop.clone());
            thread::Builder::new()
                .name("scraper".into())
                .spawn(move || scrape_every_second(addr, &stop))
                .map_err(|source| mdp_zmq_adapter::AdapterError::Thread { what: "scraper", source })?;
        }
        let _ = bound_tx.send((broker.endpoints()[0].clone(), stop));
        broker.run(|_| {})
    })?;
    match bound_rx.recv() {
        Ok((endpoint, stop)) => Ok((endpoint, stop, broker_thread)),
        Err(_) => {
            Err(broker_thread.join().expect("broker thread panicked").err().map_or("no broker".into(), Into::into))
        }
    }
}

/// GETs `http://addr/metrics` once a second until `stop`; a failed scrape
/// is reported on stderr.
fn scrape_every_second(addr: SocketAddr, stop: &StopHandle) {
    let mut next = Instant::now();
    while !stop.is_stopped() {
        if Instant::now() >= next {
            next += Duration::from_secs(1);
            let scraped = TcpStream::connect(addr).and_then(|mut conn| {
                conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")?;
                let mut response = Vec::new();
                conn.read_to_end(&mut response)?;
                Ok(response)
            });
            match scraped {
                Ok(r) if r.starts_with(b"HTTP/1.1 200 ") => {}
                Ok(r) => eprintln!("\nscrape: {}", String::from_utf8_lossy(&r[..r.len().min(80)])),
                Err(e) => eprintln!("\nscrape: {e}"),
            }
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// One client: `depth` requests outstanding, request slot `k` always to
/// service `k % services`; each reply is timed and its slot sent again.
fn client(spec: &Spec, endpoints: &[String], shared: &Shared) -> Result<Vec<u64>, ClientError> {
    let config = ClientConfig::new(spec.dialect).with_lanes(spec.lanes_per_broker());
    let mut client = Client::connect_many(endpoints, config)?;
    let body = spec.body();
    let services: Vec<Bytes> = (0..spec.services).map(|i| spec.service(i)).collect();
    let mut sent: HashMap<RequestId, (Instant, usize)> = HashMap::with_capacity(spec.depth);
    let mut samples = Vec::with_capacity(1 << 16);
    for slot in 0..spec.depth {
        let t = Instant::now();
        let id = client.send(services[slot % services.len()].clone(), vec![body.clone()])?;
        sent.insert(id, (t, slot));
    }
    while !shared.stopped() {
        let response = match client.recv(Duration::from_millis(100)) {
            Ok(r) => r,
            Err(ClientError::Timeout(_)) => continue,
            Err(e) => return Err(e),
        };
        let (id, ok) = match response {
            ClientEvent::Reply { id, body: reply } => (id, reply.len() == 1 && reply[0] == body),
            ClientEvent::Failed { id, .. } => (id, false),
            _ => continue,
        };
        let Some((t, slot)) = sent.remove(&id) else { continue };
        if ok {
            shared.complete(t.elapsed(), &mut samples);
        } else {
            shared.fail();
        }
        let t = Instant::now();
        let id = client.send(services[slot % services.len()].clone(), vec![body.clone()])?;
        sent.insert(id, (t, slot));
    }
    Ok(samples)
}
