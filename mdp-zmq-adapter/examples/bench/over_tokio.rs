//! The `tokio` runs: the same mdp-core state machines over the tokio TCP
//! transport of `mdp-core/examples/tokio_tcp/transport.rs`, with its default
//! options. The broker has a current-thread runtime on a thread of its own
//! (as the libzmq broker has one application thread); the clients and
//! workers are tasks of one multi-thread runtime (`--tokio-threads`). A
//! client is one `ClientHandle` (`spec.lanes` connections, one mdp-core
//! `Client`) with `depth` tasks, each sending one request at a time; a
//! worker is a `WorkerHandle` and a task that echoes each job's body (after
//! sleeping the service time, if any).

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use mdp_core::{ClientConfig, WorkerConfig};

use crate::transport::{spawn_broker, spawn_client, spawn_worker, RequestError, TcpOptions};
use crate::{drain_tasks, BoxError, Measured, Shared, Spec, Window, TOKIO_PEERS};

pub fn run(spec: &Spec, shared: &Arc<Shared>, window: &Window, label: &str) -> Result<(Measured, Vec<u64>), BoxError> {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let config = spec.broker_config();
    let broker_thread = thread::Builder::new().name("tokio-broker".into()).spawn(move || -> Result<(), BoxError> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(async move {
            let addr = "127.0.0.1:0".parse().expect("an address");
            let broker = spawn_broker(addr, config, TcpOptions::default()).await?;
            let _ = addr_tx.send(broker.addr());
            let _ = stop_rx.await;
            drop(broker);
            Ok(())
        })
    })?;
    let Ok(addr) = addr_rx.recv() else {
        return Err(broker_thread.join().expect("broker thread panicked").err().unwrap_or_else(|| "no broker".into()));
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(spec.tokio_threads)
        .thread_name(TOKIO_PEERS)
        .enable_all()
        .build()?;
    let _entered = rt.enter();
    let mut workers = Vec::new();
    for w in 0..spec.workers {
        let config = WorkerConfig::new(spec.service(w % spec.services), spec.dialect);
        let mut handle = spawn_worker(addr, config, TcpOptions::default()).map_err(|e| e.to_string())?;
        let service_time = spec.service_time;
        workers.push(rt.spawn(async move {
            while let Some(mut job) = handle.next_job().await {
                if !service_time.is_zero() {
                    tokio::time::sleep(service_time).await;
                }
                let body = std::mem::take(&mut job.body);
                job.reply(body).await;
            }
        }));
    }
    let mut slots = Vec::new();
    for _ in 0..spec.clients {
        let config = ClientConfig::new(spec.dialect).with_lanes(spec.lanes);
        let client = spawn_client(addr, config, TcpOptions::default()).map_err(|e| e.to_string())?;
        for slot in 0..spec.depth {
            let client = client.clone();
            let shared = shared.clone();
            let service = spec.service(slot % spec.services);
            let body = spec.body();
            slots.push(rt.spawn(async move {
                let mut samples = Vec::with_capacity(1 << 14);
                while !shared.stopped() {
                    let t = Instant::now();
                    match client.request(service.clone(), vec![body.clone()]).await {
                        Ok(reply) if reply.len() == 1 && reply[0].len() == body.len() => {
                            shared.complete(t.elapsed(), &mut samples)
                        }
                        Ok(_) | Err(RequestError::Failed(_)) => shared.fail(),
                        Err(e) => return Err(e),
                    }
                }
                Ok(samples)
            }));
        }
    }

    let elapsed = window.run(shared, label);
    let result = drain_tasks(&rt, slots);
    for w in &workers {
        w.abort();
    }
    drop(_entered);
    rt.shutdown_timeout(Duration::from_secs(1));
    let _ = stop_tx.send(());
    broker_thread.join().expect("broker thread panicked")?;
    let samples = result.map_err(|_| "the clients' last requests got no reply")??;
    Ok((elapsed, samples))
}
