//! The async client and worker (the `tokio` feature): a broker, one
//! `AsyncWorker` serving 8 requests at once with a handler that awaits
//! 5 ms (as one that calls a database would), and a thousand tasks sharing
//! one `AsyncClient`. Then a request given up by a timeout, which cancels
//! it, and a graceful stop. Prints a summary and exits 0.
//!
//! ```sh
//! cargo run -p mdp-zmq-adapter --features tokio --example async_demo
//! ```
#![allow(clippy::disallowed_methods)] // stands in for the application, which reads the clock

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mdp_core::{BrokerConfig, Dialect, WorkerConfig};
use mdp_zmq_adapter::{AsyncClient, AsyncWorker, BrokerRunner};

const SLOTS: usize = 8;
const TASKS: usize = 1000;
const SERVICE_TIME: Duration = Duration::from_millis(5);

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut broker = BrokerRunner::bind(&["tcp://127.0.0.1:*"], BrokerConfig::default())?;
    let endpoint = broker.endpoints()[0].clone();
    let stop_broker = broker.stop_handle();
    let broker = thread::spawn(move || broker.run(|_| {}));
    println!("broker listening on {endpoint}");

    // The worker: 8 slots; each handler streams a PARTIAL, then awaits 5 ms
    // (heartbeats go on meanwhile), or a second for a request named `slow`.
    let (busy, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (b, p) = (busy.clone(), peak.clone());
    let worker = AsyncWorker::connect(&endpoint, WorkerConfig::new(Bytes::from_static(b"echo"), Dialect::V02), SLOTS)?;
    let stop_worker = worker.stop_handle();
    let worker = tokio::spawn(worker.run(move |body, parts| {
        let (busy, peak) = (b.clone(), p.clone());
        async move {
            peak.fetch_max(busy.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
            parts.send(vec![Bytes::from_static(b"echo:")]).await;
            let slow = body.first().is_some_and(|f| f.as_ref() == b"slow");
            tokio::time::sleep(if slow { Duration::from_secs(1) } else { SERVICE_TIME }).await;
            busy.fetch_sub(1, Ordering::SeqCst);
            body
        }
    }));

    // The client: one for every task, 16 lanes (AsyncClient::config).
    let client = AsyncClient::connect(&endpoint, AsyncClient::config(Dialect::V02))?;
    println!("one AsyncClient ({} lanes), one AsyncWorker ({SLOTS} slots)", client.lane_count());

    let t0 = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let body = vec![Bytes::from(format!("request {i}"))];
                let reply = client.request("echo", body.clone()).await?;
                Ok::<bool, Error>(reply == [vec![Bytes::from_static(b"echo:")], body].concat())
            })
        })
        .collect();
    let mut own = 0;
    for task in tasks {
        own += usize::from(task.await??);
    }
    let took = t0.elapsed();
    println!();
    println!("{TASKS} tasks, one request each: {own} answered, each with its own body, in {:.2} s", took.as_secs_f64());
    println!(
        "  {} handlers at once at most; one at a time, {TASKS} × {} ms would take {:.1} s",
        peak.load(Ordering::SeqCst),
        SERVICE_TIME.as_millis(),
        (SERVICE_TIME * TASKS as u32).as_secs_f64()
    );

    // A caller that stops waiting: the timeout drops the future, which
    // cancels the request, and the next one does not wait behind it.
    let given_up =
        tokio::time::timeout(Duration::from_millis(50), client.request("echo", vec![Bytes::from("slow")])).await;
    let t1 = Instant::now();
    client.request("echo", vec![Bytes::from("after")]).await?;
    println!(
        "  a request given up after 50 ms ({}) left {} outstanding; the next came back in {} ms",
        if given_up.is_err() { "timed out" } else { "answered?" },
        client.outstanding(),
        t1.elapsed().as_millis()
    );

    // The slow handler is still running: the stop lets it finish, then
    // every slot sends DISCONNECT.
    let t2 = Instant::now();
    stop_worker.stop();
    worker.await??;
    println!("worker stopped gracefully in {:.2} s (its last handler finished first)", t2.elapsed().as_secs_f64());
    stop_broker.stop();
    broker.join().map_err(|_| "broker thread panicked")??;
    if own != TASKS || given_up.is_ok() {
        return Err("unexpected replies".into());
    }
    println!("done");
    Ok(())
}
