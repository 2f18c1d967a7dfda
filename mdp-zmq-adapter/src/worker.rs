//! A blocking MDP worker over a DEALER socket.
//!
//! # Design: the handler runs inline, a keeper heartbeats for it
//!
//! The thread that calls [`Worker::run`] owns the socket, the
//! [`mdp_core::Worker`] and the handler, and calls the handler itself: a
//! request goes from the socket to the handler and back with no hand-off
//! between threads, which on a loaded machine is most of what a request
//! costs (see `BENCHMARKS.md`).
//!
//! A worker must still heartbeat while its handler works, or the broker
//! takes it for dead (the Guide's single-threaded worker cannot). So the
//! socket and the core sit behind a mutex, which the serving thread lets go
//! of while the handler runs, and a second thread, the *keeper*, wakes a
//! few times per heartbeat interval: if the handler is running, it takes the
//! mutex and does what the serving thread would do when idle (reads the
//! broker's messages, fires the core's timers, sends heartbeats). While no
//! handler runs the keeper finds nothing to do, so quick requests never wake
//! it and never wait for it. Moving a ZeroMQ socket between threads is
//! allowed behind a full memory barrier, which the mutex provides.

use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use mdp_core::{Multipart, PeerTransmit};
use mdp_core::{ReplyToken, WorkerConfig, WorkerEvent, WorkerUsageError};

use crate::curve::CurveClient;
use crate::poll::{poll, poll_ms};
use crate::socket::Connection;
use crate::{AdapterError, StopHandle};

/// Streams PARTIAL replies from inside a handler (MDP/0.2 dialects).
pub struct PartSink<'a> {
    token: &'a ReplyToken,
    link: &'a Mutex<Link>,
}

impl PartSink<'_> {
    /// Sends one PARTIAL now; the handler's return value is the FINAL.
    /// In MDP/0.1 the core rejects PARTIAL, and the part is logged and
    /// dropped.
    pub fn send(&self, body: Multipart) {
        lock(self.link).answer(self.token, body, Piece::Partial);
    }
}

/// A blocking MDP worker: registers one service and answers its requests
/// with a handler.
pub struct Worker {
    conn: Connection,
    config: WorkerConfig,
    stop: StopHandle,
}

impl Worker {
    /// A worker for `config.service`, connected to the broker at `endpoint`
    /// (`tcp://127.0.0.1:5555`). It registers (sends READY) when
    /// [`run`](Self::run) starts, so the broker hands it nothing before.
    ///
    /// A configuration that cannot work is refused here, with
    /// [`AdapterError::Config`] carrying the core's
    /// [`mdp_core::ConfigError`], before any socket is made.
    pub fn connect(endpoint: &str, config: WorkerConfig) -> Result<Self, AdapterError> {
        Self::connect_with(endpoint, config, None)
    }

    /// [`connect`](Self::connect) over CURVE, to a broker started with
    /// [`BrokerRunner::bind_curve`](crate::BrokerRunner::bind_curve).
    pub fn connect_curve(endpoint: &str, config: WorkerConfig, curve: CurveClient) -> Result<Self, AdapterError> {
        Self::connect_with(endpoint, config, Some(curve))
    }

    fn connect_with(endpoint: &str, config: WorkerConfig, curve: Option<CurveClient>) -> Result<Self, AdapterError> {
        config.validate()?;
        let conn = Connection::open(&zmq::Context::new(), endpoint, curve)?;
        Ok(Worker { conn, config, stop: StopHandle::new() })
    }

    /// This worker, stopped by `stop` (shared with others) instead of its own.
    pub(crate) fn with_stop(mut self, stop: StopHandle) -> Self {
        self.stop = stop;
        self
    }

    /// A handle that makes [`run`](Self::run) send DISCONNECT and return
    /// (once the handler call in progress, if any, returns); take it before
    /// `run`, which consumes the worker.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Serves requests until [`StopHandle::stop`] is called on a handle from
    /// [`stop_handle`](Self::stop_handle). The handler gets each
    /// request's frames and returns the reply's (the FINAL); it may stream
    /// PARTIALs first through the [`PartSink`]. It runs on the calling
    /// thread, one request at a time; heartbeats flow however long it takes
    /// (see the module docs). A panic in the handler ends `run` with it.
    pub fn run<H>(self, mut handler: H) -> Result<(), AdapterError>
    where
        H: FnMut(Multipart, &PartSink<'_>) -> Multipart,
    {
        // The core starts its clocks now, not at connect: the broker has
        // heard nothing from this worker yet.
        let core = mdp_core::Worker::new(self.config.clone(), Instant::now())?;
        let link = Arc::new(Mutex::new(Link { core, conn: self.conn, pending: None, in_handler: false, failed: None }));
        // READY now, not after the first poll.
        lock(&link).flush();
        let _keeper = Keeper::start(link.clone(), keeper_period(&self.config))?;
        let result = serve(&link, &self.stop, &mut handler);
        let mut link = lock(&link);
        link.core.disconnect(Instant::now());
        link.flush();
        // The last FINAL and the DISCONNECT must reach the broker: what the
        // pipe had no room for yet is sent first, then the socket lingers.
        if let Err(e) = link.conn.drain_backlog() {
            tracing::debug!(error = %e, "sending the last messages");
        }
        link.conn.linger_on_close();
        result.and(link.failed.take().map_or(Ok(()), Err))
    }
}

/// How often the keeper looks: four times per heartbeat interval, so a
/// heartbeat goes out at most a quarter interval late.
fn keeper_period(config: &WorkerConfig) -> Duration {
    (config.heartbeat_interval / 4).max(Duration::from_millis(1))
}

/// The serving loop: wait for a request with the lock held, run the handler
/// without it, answer with it.
fn serve<H>(link: &Mutex<Link>, stop: &StopHandle, handler: &mut H) -> Result<(), AdapterError>
where
    H: FnMut(Multipart, &PartSink<'_>) -> Multipart,
{
    while !stop.is_stopped() {
        let (token, body) = {
            let mut guard = lock(link);
            if let Some(e) = guard.failed.take() {
                return Err(e);
            }
            let Some(request) = guard.start_request() else {
                guard.wait_and_serve()?;
                continue;
            };
            request
        };
        let reply = handler(body, &PartSink { token: &token, link });
        let mut guard = lock(link);
        guard.in_handler = false;
        guard.answer(&token, reply, Piece::Last);
    }
    Ok(())
}

/// Takes the lock even if another thread panicked holding it: the state is
/// a socket and a state machine that stay usable, and the serving thread
/// must still be able to send DISCONNECT.
fn lock(link: &Mutex<Link>) -> MutexGuard<'_, Link> {
    link.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What the serving thread and the keeper share.
struct Link {
    core: mdp_core::Worker,
    conn: Connection,
    /// A request the core handed out that the handler has not started.
    pending: Option<(ReplyToken, Multipart)>,
    /// The handler is running: the keeper does the housekeeping.
    in_handler: bool,
    /// A socket error seen where it could not be returned (in the keeper,
    /// or in [`PartSink::send`]); `run` returns it.
    failed: Option<AdapterError>,
}

impl Link {
    /// Moves the pending request to the handler: its token and body.
    fn start_request(&mut self) -> Option<(ReplyToken, Multipart)> {
        let request = self.pending.take()?;
        self.in_handler = true;
        Some(request)
    }

    /// Waits for input or the core's next timer, then handles what came.
    fn wait_and_serve(&mut self) -> Result<(), AdapterError> {
        let ms = poll_ms(self.core.poll_timeout(), Instant::now());
        poll(&mut [self.conn.socket.as_poll_item(self.conn.events())], ms)?;
        self.serve_ready()
    }

    /// Handles, without blocking, everything the socket has and every timer
    /// that is due.
    fn serve_ready(&mut self) -> Result<(), AdapterError> {
        self.conn.flush_backlog()?;
        while let Some(frames) = self.conn.try_recv()? {
            self.core.handle_message(Instant::now(), frames);
            self.flush();
        }
        if self.conn.lost(Instant::now()) {
            // The broker went away: register again after the backoff rather
            // than after its silence.
            self.core.handle_connection_lost(Instant::now());
            self.flush();
        }
        self.core.handle_timeout(Instant::now());
        self.flush();
        self.failed.take().map_or(Ok(()), Err)
    }

    /// Passes a part of the answer to the core ([`Piece::pass`]) and sends
    /// it.
    fn answer(&mut self, token: &ReplyToken, body: Multipart, piece: Piece) {
        piece.pass(&mut self.core, token, body);
        self.flush();
    }

    /// The drain rule: every transmit, then every event. A socket error is
    /// kept in `failed` for `run` to return.
    fn flush(&mut self) {
        loop {
            while let Some(t) = self.core.poll_transmit() {
                let sent = match t {
                    PeerTransmit::Send(frames) => self.conn.send(frames),
                    PeerTransmit::Reconnect => self.conn.replace(),
                };
                if let Err(e) = sent {
                    self.failed.get_or_insert(e);
                }
            }
            let Some(event) = self.core.poll_event() else { return };
            self.on_event(event);
        }
    }

    fn on_event(&mut self, event: WorkerEvent) {
        match event {
            WorkerEvent::Request { token, body } => {
                // The core hands out one request at a time, and a
                // reconnect (below) clears any that has not started.
                if self.pending.is_some() {
                    tracing::error!("worker core handed out a request while one was pending; the older is dropped");
                }
                self.pending = Some((token, body));
            }
            WorkerEvent::Disconnected { reason, dropped } => {
                tracing::info!(%reason, dropped = dropped.is_some(), "worker reconnecting");
                // A request not yet started belonged to the old connection:
                // the core would refuse its answer, so the handler is not
                // called for it. One at the handler is refused in `answer`.
                self.pending = None;
            }
            WorkerEvent::Discarded { reason } => tracing::debug!(%reason, "worker dropped a message"),
            other => tracing::debug!(?other, "worker event"),
        }
    }
}

/// Which piece of an answer the handler gave (the blocking and the async
/// worker alike).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Piece {
    /// One streamed part (PARTIAL); more follow.
    Partial,
    /// The last or only part (FINAL, or REPLY in MDP/0.1).
    Last,
}

impl Piece {
    /// Passes this piece of the answer to the request `token` names to the
    /// core, which queues it to send. The core tells whether that is still
    /// the request in progress: a reconnect while the handler ran drops it,
    /// and the core then refuses the answer, as it must, since it could not
    /// reach the client; that is logged, not returned.
    pub(crate) fn pass(self, core: &mut mdp_core::Worker, token: &ReplyToken, body: Multipart) {
        let now = Instant::now();
        let result = match self {
            Piece::Partial => core.partial(now, token, body),
            Piece::Last => core.reply(now, token, body),
        };
        match result {
            Ok(()) => {}
            // Expected after a reconnect (the latest dropped request, or an
            // older one): the Disconnected event was logged already.
            Err(e @ (WorkerUsageError::RequestDropped | WorkerUsageError::StaleToken)) => {
                tracing::debug!(error = %e, "the handler's answer is for a dropped request");
            }
            Err(e) => tracing::warn!(error = %e, "worker could not send the handler's answer"),
        }
    }
}

/// The keeper thread; stopping and joining it is this guard's drop.
struct Keeper {
    stop: StopHandle,
    thread: Option<thread::JoinHandle<()>>,
}

impl Keeper {
    fn start(link: Arc<Mutex<Link>>, period: Duration) -> Result<Keeper, AdapterError> {
        let stop = StopHandle::new();
        let stopped = stop.clone();
        let thread = thread::Builder::new()
            .name("mdp-worker-keep".into())
            .spawn(move || {
                while !stopped.is_stopped() {
                    thread::park_timeout(period);
                    keep(&link);
                }
            })
            .map_err(|source| AdapterError::Thread { what: "worker's keeper", source })?;
        Ok(Keeper { stop, thread: Some(thread) })
    }
}

/// One look of the keeper: housekeeping if, and only if, a handler runs.
/// `try_lock` fails while the serving thread holds the lock, which it does
/// whenever no handler runs.
fn keep(link: &Mutex<Link>) {
    let Ok(mut guard) = link.try_lock() else { return };
    if guard.in_handler {
        if let Err(e) = guard.serve_ready() {
            guard.failed.get_or_insert(e);
        }
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}
