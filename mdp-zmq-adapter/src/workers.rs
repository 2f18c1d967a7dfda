//! One service served to several brokers at once.
//!
//! The design, one handler slot per broker, is on [`Workers`].

use mdp_core::{Multipart, WorkerConfig};

use crate::curve::CurveClient;
use crate::{AdapterError, PartSink, StopHandle, Worker};

/// A blocking MDP worker registered with several brokers at once.
///
/// It is one [`Worker`] per broker endpoint, each with its own connection,
/// [`mdp_core::Worker`] and thread, all calling one shared handler. A broker
/// dying, restarting or going silent costs only its own connection, which
/// heartbeats, backs off and registers again on its own.
///
/// **One handler slot per broker.** MDP has no way for a worker to say
/// "busy" except by holding a request, and a broker hands a request to any
/// worker it believes idle. A worker with one handler for several brokers
/// would, while busy for one, look idle to the others, and their requests
/// would wait at a worker that cannot take them while other workers could.
/// Here each broker gets its own slot instead, so no broker ever sees the
/// worker as idle while its handler works for that broker. With `N`
/// brokers up to `N` requests run at once, one from each; the handler must
/// be [`Sync`] for that. A handler that must not run twice at once (it
/// holds a resource) should serve one broker.
pub struct Workers {
    workers: Vec<Worker>,
    stop: StopHandle,
}

impl Workers {
    /// A worker for `config.service` at every broker in `endpoints`, one
    /// connection each. Refuses a configuration that cannot work, and an
    /// empty list, before any socket is made.
    pub fn connect(endpoints: &[impl AsRef<str>], config: WorkerConfig) -> Result<Self, AdapterError> {
        Self::connect_with(endpoints, config, None)
    }

    /// [`connect`](Self::connect) over CURVE; every broker must have the
    /// public key in `curve.server`.
    pub fn connect_curve(
        endpoints: &[impl AsRef<str>],
        config: WorkerConfig,
        curve: CurveClient,
    ) -> Result<Self, AdapterError> {
        Self::connect_with(endpoints, config, Some(curve))
    }

    fn connect_with(
        endpoints: &[impl AsRef<str>],
        config: WorkerConfig,
        curve: Option<CurveClient>,
    ) -> Result<Self, AdapterError> {
        config.validate()?;
        if endpoints.is_empty() {
            return Err(AdapterError::NoEndpoint);
        }
        let stop = StopHandle::new();
        let connect = |endpoint: &str| {
            let worker = match curve {
                Some(curve) => Worker::connect_curve(endpoint, config.clone(), curve),
                None => Worker::connect(endpoint, config.clone()),
            };
            worker.map(|w| w.with_stop(stop.clone()))
        };
        let workers = endpoints.iter().map(|e| connect(e.as_ref())).collect::<Result<_, _>>()?;
        Ok(Workers { workers, stop })
    }

    /// A handle that stops every broker's worker: each sends DISCONNECT to
    /// its broker once its handler call in progress, if any, returns.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Serves requests from every broker until stopped, each on its own
    /// thread, with `handler` shared (see [`Worker::run`] for what it gets
    /// and returns). If one broker's worker fails (a socket error, or a
    /// panic in the handler), the others are stopped and the first error is
    /// returned; a broker that goes away is not a failure.
    pub fn run<H>(self, handler: H) -> Result<(), AdapterError>
    where
        H: Fn(Multipart, &PartSink<'_>) -> Multipart + Sync,
    {
        let (handler, stop) = (&handler, &self.stop);
        std::thread::scope(|scope| {
            let threads: Vec<_> = self
                .workers
                .into_iter()
                .map(|worker| {
                    scope.spawn(move || {
                        let result = worker.run(handler);
                        if result.is_err() {
                            stop.stop();
                        }
                        result
                    })
                })
                .collect();
            let mut first = Ok(());
            for thread in threads {
                let result = thread.join().unwrap_or_else(|_| {
                    stop.stop();
                    Err(AdapterError::HandlerPanicked)
                });
                first = first.and(result);
            }
            first
        })
    }
}
