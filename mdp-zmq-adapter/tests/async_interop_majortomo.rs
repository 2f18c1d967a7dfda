//! The async client and worker (the `tokio` feature) against majortomo
//! 0.2.0's broker, in majortomo's dialect, 1,000 requests each with
//! multi-frame bodies and 3 PARTIALs, every frame checked:
//!
//! 1. our `AsyncClient`, 1,000 requests at once, with majortomo's worker;
//! 2. our `AsyncWorker`, 4 slots, with majortomo's client.
//!
//! As in `tests/tests/interop_majortomo.rs` (the same convention: the venv
//! is made on first use by `tests/interop/setup-venv.sh`, which needs
//! python3 and PyPI, and a test fails, not skips, when it cannot be made),
//! with the same Python scripts and the frame rule of
//! `tests/interop/rule.py`, which `request`, `partial` and `final_part`
//! below repeat in Rust.
#![cfg(unix)]

use std::time::Duration;

use bytes::Bytes;
use mdp_core::{Dialect, WorkerConfig};
use mdp_zmq_adapter::{AsyncClient, AsyncWorker};

#[path = "../../tests/interop/harness.rs"]
mod harness;
use harness::{final_part, partial, request, their_broker, Script};

const COUNT: usize = 1000;
const PARTIALS: usize = 3;
const WAIT: Duration = Duration::from_secs(60);

fn args<'a>(endpoint: &'a str, count: &'a str, partials: &'a str) -> [&'a str; 8] {
    ["--broker", endpoint, "--service", "echo", "--partials", partials, "--count", count]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_async_client_with_their_worker_through_their_broker() {
    let (_broker, endpoint) = their_broker();
    let (count, partials) = (COUNT.to_string(), PARTIALS.to_string());
    let worker = Script::start("mt_worker.py", &args(&endpoint, &count, &partials));
    let client = AsyncClient::connect(&endpoint, AsyncClient::config(Dialect::Majortomo)).unwrap();
    // All at once: the client's 16 lanes carry one each (majortomo's replies
    // name no service), the rest wait in the core.
    let requests: Vec<_> = (0..COUNT)
        .map(|i| {
            let mut parts = client.parts("echo", request(i));
            tokio::spawn(async move {
                let mut got = Vec::new();
                while let Some(part) = parts.next().await {
                    got.push(part.unwrap_or_else(|e| panic!("request {i}: {e}")));
                }
                got
            })
        })
        .collect();
    for (i, task) in requests.into_iter().enumerate() {
        let parts = tokio::time::timeout(WAIT, task).await.expect("answered in time").unwrap();
        let req = request(i);
        assert_eq!(parts.len(), PARTIALS + 1, "request {i}: {PARTIALS} PARTIALs and a FINAL");
        for (j, part) in parts[..PARTIALS].iter().enumerate() {
            assert_eq!(part, &partial(j, &req), "request {i} part {j}");
        }
        assert_eq!(parts[PARTIALS], final_part(&req), "request {i} final");
    }
    let (code, out) = tokio::task::spawn_blocking(move || worker.finish()).await.unwrap();
    assert_eq!(code, 0, "majortomo worker: {out}");
    assert!(out.contains(&format!("served={COUNT}")), "majortomo worker: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn their_client_with_our_async_worker_through_their_broker() {
    let (_broker, endpoint) = their_broker();
    let config = WorkerConfig::new(Bytes::from_static(b"echo"), Dialect::Majortomo);
    let worker = AsyncWorker::connect(&endpoint, config, 4).unwrap();
    let stop = worker.stop_handle();
    let worker = tokio::spawn(worker.run(|req, parts| async move {
        for j in 0..PARTIALS {
            parts.send(partial(j, &req)).await;
        }
        final_part(&req)
    }));
    let (count, partials) = (COUNT.to_string(), PARTIALS.to_string());
    let client = Script::start("mt_client.py", &args(&endpoint, &count, &partials));
    let (code, out) = tokio::task::spawn_blocking(move || client.finish()).await.unwrap();
    assert_eq!(code, 0, "majortomo client failed: {out}");
    assert!(out.contains(&format!("OK n={COUNT}")), "majortomo client did not report every request: {out}");
    stop.stop();
    tokio::time::timeout(WAIT, worker).await.expect("the worker stopped").unwrap().unwrap();
}
