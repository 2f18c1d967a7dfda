//! A blocking MDP worker over a DEALER socket.
//!
//! # Design: the handler runs on its own thread
//!
//! The thread that calls [`Worker::run`] owns the socket and the
//! [`mdp_core::Worker`], and never runs application code. The handler runs
//! on a second thread. So however long the handler takes, the first thread
//! keeps polling the socket and firing the core's timers: heartbeats keep
//! flowing and the broker does not take a slow worker for a dead one (the
//! Guide's single-threaded worker cannot do this).
//!
//! The handler thread hands its parts back over a channel and rings an
//! `inproc` PAIR socket, so the socket thread wakes at once without polling
//! the channel on a timer.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use mdp_core::worker::{ReplyToken, WorkerConfig, WorkerEvent};
use mdp_core::{Multipart, PeerTransmit};

use crate::socket::{poll, poll_ms, Connection};
use crate::AdapterError;

/// Streams PARTIAL replies from inside a handler (MDP/0.2 dialects).
pub struct PartSink<'a> {
    job: u64,
    out: &'a mpsc::Sender<Output>,
    bell: &'a Bell,
}

impl PartSink<'_> {
    /// Sends one PARTIAL now; the handler's return value is the FINAL.
    /// In MDP/0.1 the core rejects PARTIAL, and the part is logged and
    /// dropped.
    pub fn send(&self, body: Multipart) {
        if self.out.send(Output { job: self.job, body, last: false }).is_ok() {
            self.bell.ring();
        }
    }
}

/// A part of an answer, from the handler thread to the socket thread.
struct Output {
    job: u64,
    body: Multipart,
    last: bool,
}

/// The handler thread's doorbell: one empty message on an inproc PAIR.
struct Bell(zmq::Socket);

impl Bell {
    fn ring(&self) {
        // A full pipe means the socket thread already has a ring pending.
        let _ = self.0.send(&[][..], zmq::DONTWAIT);
    }
}

/// A blocking MDP worker: registers one service and answers its requests
/// with a handler.
pub struct Worker {
    endpoint: String,
    config: WorkerConfig,
    stop: Arc<AtomicBool>,
}

impl Worker {
    /// A worker for `config.service` at the broker `endpoint`.
    pub fn new(endpoint: &str, config: WorkerConfig) -> Self {
        Worker { endpoint: endpoint.to_owned(), config, stop: Arc::new(AtomicBool::new(false)) }
    }

    /// Set it to make [`run`](Self::run) send DISCONNECT and return.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Serves requests until the stop flag is set. The handler gets each
    /// request's frames and returns the reply's (the FINAL); it may stream
    /// PARTIALs first through the [`PartSink`].
    pub fn run<H>(self, handler: H) -> Result<(), AdapterError>
    where
        H: FnMut(Multipart, &PartSink<'_>) -> Multipart + Send + 'static,
    {
        let core = mdp_core::Worker::new(self.config.clone(), Instant::now())
            .map_err(|e| AdapterError::Config(e.to_string()))?;
        let ctx = zmq::Context::new();
        let bell_addr = format!("inproc://mdp-worker-bell-{}", next_bell());
        let bell_rx = ctx.socket(zmq::PAIR).map_err(AdapterError::zmq("socket(PAIR)"))?;
        bell_rx.bind(&bell_addr).map_err(AdapterError::zmq("bind bell"))?;
        let bell_tx = ctx.socket(zmq::PAIR).map_err(AdapterError::zmq("socket(PAIR)"))?;
        bell_tx.connect(&bell_addr).map_err(AdapterError::zmq("connect bell"))?;
        let (job_tx, job_rx) = mpsc::channel::<(u64, Multipart)>();
        let (out_tx, out_rx) = mpsc::channel::<Output>();
        let app = thread::Builder::new()
            .name("mdp-worker-handler".into())
            .spawn(move || handler_thread(handler, job_rx, out_tx, Bell(bell_tx)))
            .map_err(|e| AdapterError::Config(format!("cannot start the handler thread: {e}")))?;
        let conn = Connection::open(&ctx, &self.endpoint)?;
        let mut driver = Driver {
            core,
            conn,
            bell: bell_rx,
            jobs: job_tx,
            outputs: out_rx,
            inline: None,
            current: None,
            next_job: 0,
        };
        let result = driver.run(&self.stop);
        drop(driver); // closes the job channel: the handler thread ends
        let _ = app.join();
        result
    }

    /// Like [`run`](Self::run), but calls the handler on the socket thread
    /// itself: no hand-off to a second thread, so each request costs two
    /// thread wake-ups less (an experiment recorded in `BENCHMARKS.md`
    /// measured about 20% more throughput). While the handler runs nothing
    /// else happens, no
    /// heartbeat included: use it only for handlers far quicker than the
    /// heartbeat interval, or the broker takes the worker for dead. No
    /// PARTIALs: the handler returns the one reply.
    pub fn run_inline<H>(self, handler: H) -> Result<(), AdapterError>
    where
        H: FnMut(Multipart) -> Multipart + 'static,
    {
        let core = mdp_core::Worker::new(self.config.clone(), Instant::now())
            .map_err(|e| AdapterError::Config(e.to_string()))?;
        let ctx = zmq::Context::new();
        // No handler thread rings it; it is polled and stays quiet.
        let bell = ctx.socket(zmq::PAIR).map_err(AdapterError::zmq("socket(PAIR)"))?;
        let (jobs, _) = mpsc::channel();
        let (_, outputs) = mpsc::channel();
        let conn = Connection::open(&ctx, &self.endpoint)?;
        let inline: Option<Box<dyn FnMut(Multipart) -> Multipart>> = Some(Box::new(handler));
        let mut driver = Driver { core, conn, bell, jobs, outputs, inline, current: None, next_job: 0 };
        driver.run(&self.stop)
    }
}

/// Unique names for the inproc doorbells of workers in one process.
fn next_bell() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn handler_thread<H>(mut handler: H, jobs: mpsc::Receiver<(u64, Multipart)>, out: mpsc::Sender<Output>, bell: Bell)
where
    H: FnMut(Multipart, &PartSink<'_>) -> Multipart,
{
    while let Ok((job, body)) = jobs.recv() {
        let sink = PartSink { job, out: &out, bell: &bell };
        let reply = handler(body, &sink);
        if out.send(Output { job, body: reply, last: true }).is_err() {
            return;
        }
        bell.ring();
    }
}

/// The socket thread: the core, the DEALER, and the link to the handler.
struct Driver {
    core: mdp_core::Worker,
    conn: Connection,
    bell: zmq::Socket,
    jobs: mpsc::Sender<(u64, Multipart)>,
    outputs: mpsc::Receiver<Output>,
    /// The handler, when it runs on this thread ([`Worker::run_inline`]).
    inline: Option<Box<dyn FnMut(Multipart) -> Multipart>>,
    /// The request at the handler, by job number.
    current: Option<(u64, ReplyToken)>,
    next_job: u64,
}

impl Driver {
    fn run(&mut self, stop: &AtomicBool) -> Result<(), AdapterError> {
        self.flush()?;
        while !stop.load(Ordering::Relaxed) {
            let ms = poll_ms(Instant::now(), &[self.core.poll_timeout()]);
            let mut items = [self.conn.socket.as_poll_item(self.conn.events()), self.bell.as_poll_item(zmq::POLLIN)];
            poll(&mut items, ms)?;
            self.conn.flush_backlog()?;
            while let Some(frames) = self.conn.try_recv()? {
                self.core.handle_message(Instant::now(), frames);
                self.flush()?;
            }
            while self.bell.recv_bytes(zmq::DONTWAIT).is_ok() {}
            while let Ok(output) = self.outputs.try_recv() {
                self.answer(output);
                self.flush()?;
            }
            self.core.handle_timeout(Instant::now());
            self.flush()?;
        }
        self.core.disconnect(Instant::now());
        self.flush()
    }

    /// Passes a part from the handler to the core, if it still answers the
    /// request in progress (a reconnect may have dropped it).
    fn answer(&mut self, output: Output) {
        let Some((job, token)) = &self.current else { return };
        if *job != output.job {
            return;
        }
        let now = Instant::now();
        let result = if output.last {
            self.core.reply(now, token, output.body)
        } else {
            self.core.partial(now, token, output.body)
        };
        if output.last {
            self.current = None;
        }
        if let Err(e) = result {
            tracing::warn!(error = %e, "worker could not send the handler's answer");
        }
    }

    /// The drain rule: every transmit, then every event.
    fn flush(&mut self) -> Result<(), AdapterError> {
        loop {
            while let Some(t) = self.core.poll_transmit() {
                match t {
                    PeerTransmit::Send(frames) => self.conn.send(frames)?,
                    PeerTransmit::Reconnect => self.conn.replace()?,
                }
            }
            let Some(event) = self.core.poll_event() else { return Ok(()) };
            self.on_event(event);
        }
    }

    fn on_event(&mut self, event: WorkerEvent) {
        match event {
            WorkerEvent::Request { token, body } => {
                let job = self.next_job;
                self.next_job += 1;
                self.current = Some((job, token));
                if let Some(handler) = self.inline.as_mut() {
                    let body = handler(body);
                    self.answer(Output { job, body, last: true });
                } else if self.jobs.send((job, body)).is_err() {
                    tracing::error!("the handler thread is gone");
                }
            }
            WorkerEvent::Disconnected { reason, dropped } => {
                tracing::info!(%reason, dropped = dropped.is_some(), "worker reconnecting");
                self.current = None;
            }
            WorkerEvent::Discarded { reason } => tracing::debug!(%reason, "worker dropped a message"),
            other => tracing::debug!(?other, "worker event"),
        }
    }
}
