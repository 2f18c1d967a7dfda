//! The `async` runs (the `tokio` feature): our [`BrokerRunner`] on its own
//! thread, as in the `adapter` runs, and the clients and workers of the
//! `adapter` runs as [`AsyncClient`]s and [`AsyncWorker`]s on one
//! multi-thread tokio runtime (`--tokio-threads`, named `tokio-peers`).
//!
//! * A client is one `AsyncClient` (`spec.lanes` lanes) shared by `depth`
//!   tasks, each sending one request at a time, so `depth` are outstanding
//!   as in the adapter's `send`/`recv` client; request slot `k` always goes
//!   to service `k % services`.
//! * A worker is one `AsyncWorker` with one slot (so `spec.workers`
//!   connections, as in the adapter runs) echoing the body. With a service
//!   time its handler sleeps on tokio's blocking pool
//!   (`spawn_blocking(thread::sleep)`), so that the service time is what
//!   the adapter's workers sleep; with `--async-tokio-sleep` it awaits
//!   `tokio::time::sleep`, which tokio's timer rounds up to its next
//!   millisecond.
//!
//! Everything is made on a runtime thread, so that each ZeroMQ context's
//! I/O thread is named after the runtime and counts as its CPU.

#[cfg(not(feature = "tokio"))]
pub fn run(
    _: &crate::Spec,
    _: &std::sync::Arc<crate::Shared>,
    _: &crate::Window,
    _: &str,
) -> Result<(crate::Measured, Vec<u64>), crate::BoxError> {
    Err("the async transport needs the tokio feature: cargo run --release -p mdp-zmq-adapter --features tokio --example bench".into())
}

#[cfg(feature = "tokio")]
pub use with_tokio::run;

#[cfg(feature = "tokio")]
mod with_tokio {
    use std::sync::{mpsc, Arc};
    use std::thread;
    use std::time::{Duration, Instant};

    use mdp_core::{ClientConfig, WorkerConfig};
    use mdp_zmq_adapter::{AdapterError, AsyncClient, AsyncWorker, BrokerRunner, ClientError, StopHandle};

    use crate::{drain_tasks, BoxError, Measured, Shared, Spec, Window, BROKER, TOKIO_PEERS};

    pub fn run(
        spec: &Spec,
        shared: &Arc<Shared>,
        window: &Window,
        label: &str,
    ) -> Result<(Measured, Vec<u64>), BoxError> {
        if spec.external.is_some() || spec.brokers > 1 {
            return Err("the async transport runs against one broker of ours".into());
        }
        let (endpoint, stop_broker, broker) = start_broker(spec)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(spec.tokio_threads)
            .thread_name(TOKIO_PEERS)
            .enable_all()
            .build()?;

        let mut workers: Vec<(StopHandle, tokio::task::JoinHandle<Result<(), AdapterError>>)> = Vec::new();
        for w in 0..spec.workers {
            let config = WorkerConfig::new(spec.service(w % spec.services), spec.dialect);
            let (endpoint, service_time, tokio_sleep) = (endpoint.clone(), spec.service_time, spec.async_tokio_sleep);
            let worker = rt.block_on(rt.spawn(async move { AsyncWorker::connect(&endpoint, config, 1) }))??;
            let stop = worker.stop_handle();
            let task = rt.spawn(worker.run(move |body, _| async move {
                if !service_time.is_zero() {
                    if tokio_sleep {
                        tokio::time::sleep(service_time).await;
                    } else {
                        let _ = tokio::task::spawn_blocking(move || thread::sleep(service_time)).await;
                    }
                }
                body
            }));
            workers.push((stop, task));
        }

        let mut slots = Vec::new();
        for _ in 0..spec.clients {
            let config = ClientConfig::new(spec.dialect).with_lanes(spec.lanes);
            let endpoint = endpoint.clone();
            let client = rt.block_on(rt.spawn(async move { AsyncClient::connect(&endpoint, config) }))??;
            for slot in 0..spec.depth {
                let (client, shared) = (client.clone(), shared.clone());
                let (service, body) = (spec.service(slot % spec.services), spec.body());
                slots.push(rt.spawn(async move {
                    let mut samples = Vec::with_capacity(1 << 14);
                    while !shared.stopped() {
                        let t = Instant::now();
                        match client.request(service.clone(), vec![body.clone()]).await {
                            Ok(reply) if reply.len() == 1 && reply[0] == body => {
                                shared.complete(t.elapsed(), &mut samples)
                            }
                            Ok(_) | Err(ClientError::Failed(_)) => shared.fail(),
                            Err(e) => return Err(e),
                        }
                    }
                    Ok(samples)
                }));
            }
        }

        let elapsed = window.run(shared, label);
        let result = drain_tasks(&rt, slots);
        for (stop, _) in &workers {
            stop.stop();
        }
        let stopped = rt.block_on(async {
            for (_, task) in workers {
                task.await??;
            }
            Ok::<_, BoxError>(())
        });
        rt.shutdown_timeout(Duration::from_secs(1));
        stop_broker.stop();
        broker.join().expect("broker thread panicked")?;
        stopped?;
        let samples = result.map_err(|_| "the clients' last requests got no reply")??;
        Ok((elapsed, samples))
    }

    type BrokerThread = thread::JoinHandle<Result<(), AdapterError>>;

    /// Our broker on a thread of its own named [`BROKER`], bound to a free
    /// port (as in `adapter.rs`).
    fn start_broker(spec: &Spec) -> Result<(String, StopHandle, BrokerThread), BoxError> {
        let (bound_tx, bound_rx) = mpsc::channel();
        let config = spec.broker_config();
        let thread = thread::Builder::new().name(BROKER.into()).spawn(move || {
            let mut broker = BrokerRunner::bind(&["tcp://127.0.0.1:*"], config)?;
            let _ = bound_tx.send((broker.endpoints()[0].clone(), broker.stop_handle()));
            broker.run(|_| {})
        })?;
        match bound_rx.recv() {
            Ok((endpoint, stop)) => Ok((endpoint, stop, thread)),
            Err(_) => Err(thread.join().expect("broker thread panicked").err().map_or("no broker".into(), Into::into)),
        }
    }
}
