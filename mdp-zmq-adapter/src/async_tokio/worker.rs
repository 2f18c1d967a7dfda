//! [`AsyncWorker`]: an async handler, `concurrency` requests at once.
//!
//! Each of the `concurrency` slots is a tokio task with its own DEALER and
//! its own [`mdp_core::Worker`] (MDP gives a worker one request at a time,
//! so N at once take N workers). The task polls the handler's future and
//! the socket side by side: between two polls of the handler it reads the
//! broker's messages, fires the core's timers and sends heartbeats, so
//! they flow however long the future takes, with no second thread.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use mdp_core::{Multipart, PeerTransmit, ReplyToken, WorkerConfig, WorkerEvent};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::fd::{settle, Driven, Next, Timer, Watch};
use crate::socket::{Connection, CLOSING_LINGER_MS};
use crate::worker::Piece;
use crate::{AdapterError, StopHandle};

/// PARTIALs a handler may have sent that its slot has not passed to the
/// socket yet; a handler that sends more waits in [`AsyncPartSink::send`].
const PART_QUEUE: usize = 16;

/// How long a slot that has answered after a stop waits for the broker to
/// hand it the next request (which shows the broker has read its FINAL)
/// before it takes it that the broker had none (see [`serve`]).
const DEPARTURE_QUIET: std::time::Duration = std::time::Duration::from_millis(100);

/// Most rounds of socket work one poll of a slot does before it yields.
const MAX_ROUNDS: usize = 16;

/// Streams PARTIALs from inside an [`AsyncWorker`]'s handler (MDP/0.2
/// dialects): the async counterpart of the blocking [`PartSink`](crate::PartSink).
///
/// Cheap to clone; a clone may be moved into another task, but every part
/// must be sent before the handler's future completes, whose output is the
/// FINAL: parts sent later are dropped (and logged).
#[derive(Debug, Clone)]
pub struct AsyncPartSink {
    tx: mpsc::Sender<Multipart>,
}

impl AsyncPartSink {
    /// Sends one PARTIAL. Waits while 16 parts are queued and the socket
    /// to the broker has no room, so a handler that streams faster than
    /// the broker takes is slowed down, not buffered without bound. In
    /// MDP/0.1 the core rejects PARTIAL, and the part is logged and dropped;
    /// so is a part for a request the worker lost (a reconnect while the
    /// handler ran: the broker gives the request to another worker).
    pub async fn send(&self, body: Multipart) {
        if self.tx.send(body).await.is_err() {
            tracing::warn!("a PARTIAL sent after its handler returned was dropped");
        }
    }
}

/// An MDP worker for tokio applications: registers one service and answers
/// its requests with an async handler, up to `concurrency` at once.
///
/// Each of the `concurrency` slots is one connection to the broker with
/// its own [`mdp_core::Worker`], so the broker sees `concurrency` workers
/// and hands each one request at a time; each runs as its own tokio task
/// (on a multi-threaded runtime, in parallel). Heartbeats flow however long
/// a handler's future takes: the slot's task serves the socket between two
/// polls of the future. A handler must not block its thread, though (use
/// `tokio::task::spawn_blocking` for blocking work): while it does, nothing
/// else on that task runs, heartbeats included.
///
/// **Stopping.** [`stop_handle`](Self::stop_handle) hands out a
/// [`StopHandle`]; after [`StopHandle::stop`] no handler starts, the
/// handlers running finish and their answers are sent, and each slot sends
/// DISCONNECT: an idle slot at once, the others together once the last
/// handler has finished and the broker has read every FINAL (they go on
/// heartbeating meanwhile; up to 0.1 s more). A request the broker had
/// sent to a slot that had not started it is given back: the broker
/// re-queues the request of a worker that disconnects (at the head of its
/// queue), for another worker. Leaving together means each slot gives
/// back at most one request, once; slots leaving one by one could pass
/// one request from each to the next (the broker hands the next queued
/// request to a worker as soon as it answers), using up its dispatches
/// (`BrokerConfig::max_dispatches`).
/// [`run`](Self::run) returns when every slot has stopped and its last
/// messages are sent (or half a second has passed). Dropping `run`'s
/// future instead stops every slot at once without DISCONNECT; the broker
/// then finds the workers gone by their silence.
///
/// **Memory.** Each slot holds at most one request (its handler's future)
/// and 16 PARTIALs queued for the socket; what a handler holds is the
/// handler's.
pub struct AsyncWorker {
    ctx: zmq::Context,
    conns: Vec<Connection>,
    config: WorkerConfig,
    stop: StopHandle,
}

impl std::fmt::Debug for AsyncWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncWorker")
            .field("service", &self.config.service)
            .field("concurrency", &self.conns.len())
            .finish_non_exhaustive()
    }
}

impl AsyncWorker {
    /// A worker for `config.service` at the broker at `endpoint`
    /// (`tcp://127.0.0.1:5555`), serving up to `concurrency` requests at
    /// once: that many connections, each a worker to the broker. Nothing
    /// is registered until [`run`](Self::run).
    ///
    /// Needs no runtime. A configuration that cannot work, or a
    /// `concurrency` of 0, is refused with [`AdapterError::Config`] before
    /// any socket is made.
    pub fn connect(endpoint: &str, config: WorkerConfig, concurrency: usize) -> Result<Self, AdapterError> {
        config.validate()?;
        if concurrency == 0 {
            return Err(mdp_core::ConfigError::Zero("concurrency").into());
        }
        let ctx = zmq::Context::new();
        let conns = (0..concurrency).map(|_| Connection::open(&ctx, endpoint, None)).collect::<Result<_, _>>()?;
        Ok(AsyncWorker { ctx, conns, config, stop: StopHandle::new() })
    }

    /// How many requests it serves at once.
    pub fn concurrency(&self) -> usize {
        self.conns.len()
    }

    /// A handle that stops [`run`](Self::run) gracefully (see the type's
    /// docs), from any thread or task; take it before `run`, which consumes
    /// the worker.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Registers every slot and serves requests until stopped. The handler
    /// gets each request's frames and an [`AsyncPartSink`] for PARTIALs,
    /// and its future's output is the reply (the FINAL).
    ///
    /// Must run inside a tokio runtime with IO and time enabled (it spawns
    /// a task per slot); elsewhere it returns [`AdapterError::NoRuntime`].
    /// If a slot fails (a socket error, or a handler that panics: then
    /// [`AdapterError::HandlerPanicked`], and that slot sends DISCONNECT so
    /// the broker re-queues its request) the others are stopped as by the
    /// stop handle, and the first error is returned.
    pub async fn run<H, F>(self, handler: H) -> Result<(), AdapterError>
    where
        H: Fn(Multipart, AsyncPartSink) -> F + Send + Sync + 'static,
        F: Future<Output = Multipart> + Send + 'static,
    {
        tokio::runtime::Handle::try_current().map_err(|_| AdapterError::NoRuntime)?;
        let AsyncWorker { ctx, conns, config, stop } = self;
        // Every slot before any task, so that a failure here leaves none
        // registered. The core starts its clocks now, not at connect: the
        // broker has heard nothing from this worker yet.
        let slots = conns
            .into_iter()
            .map(|conn| Slot::new(conn, mdp_core::Worker::new(config.clone(), Instant::now())?))
            .collect::<Result<Vec<_>, AdapterError>>()?;
        let (handler, busy) = (Arc::new(handler), Arc::new(Busy::default()));
        let mut tasks = JoinSet::new();
        for slot in slots {
            tasks.spawn(serve(slot, handler.clone(), stop.clone(), busy.clone()));
        }
        let mut result = Ok(());
        while let Some(joined) = tasks.join_next().await {
            // A slot's task only ends by returning (it catches its
            // handler's panics), or cancelled as its runtime shuts down.
            let slot = joined.unwrap_or(Err(AdapterError::NoRuntime));
            if slot.is_err() {
                stop.stop();
            }
            result = result.and(slot);
        }
        // The slots' last messages linger in libzmq until sent; closing the
        // context waits for that, off the runtime's threads.
        let _ = tokio::task::spawn_blocking(move || drop(ctx)).await;
        result
    }
}

/// One slot's life: register, serve until stopped, DISCONNECT.
///
/// A slot that is idle when stopped disconnects at once. The slots that
/// finish a request after the stop leave together, once the broker has
/// seen every one of their FINALs. MDP has no "last answer": the broker
/// takes a FINAL for "ready for more" and at once hands the slot a queued
/// request, if it has one, which the DISCONNECT then gives back. Slots
/// leaving one by one would pass the request at the head of the queue
/// from one to the next, each pass using one of the broker's
/// `max_dispatches`, until it is dropped. So a slot that has answered
/// waits, heartbeating, until the broker has handed it a request (proof
/// that its FINAL was read) or [`DEPARTURE_QUIET`] has passed (the broker
/// had none to give), and until every other slot still serving has done
/// the same; each then gives back at most one request, once.
async fn serve<H, F>(mut slot: Slot, handler: Arc<H>, stop: StopHandle, busy: Arc<Busy>) -> Result<(), AdapterError>
where
    H: Fn(Multipart, AsyncPartSink) -> F,
    F: Future<Output = Multipart>,
{
    // READY now, not at the first poll.
    let mut result = slot.flush().and_then(|()| slot.settle_now());
    while result.is_ok() {
        let (token, body) = match std::future::poll_fn(|cx| slot.poll_request(cx, &stop)).await {
            Ok(Some(request)) => request,
            Ok(None) => break,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        let mut serving = Some(busy.start());
        let (tx, mut rx) = mpsc::channel(PART_QUEUE);
        // The handler's synchronous part may panic too, before there is a
        // future to poll: that ends the slot as a panic in the future does.
        let made = catch_unwind(AssertUnwindSafe(|| handler(body, AsyncPartSink { tx })));
        let Ok(reply) = made else {
            result = Err(AdapterError::HandlerPanicked);
            break;
        };
        let mut reply = pin!(reply);
        result = std::future::poll_fn(|cx| slot.poll_serving(cx, &token, &mut rx, reply.as_mut())).await;
        if result.is_ok() && stop.is_stopped() {
            let mut quiet = Box::pin(tokio::time::sleep(DEPARTURE_QUIET));
            result = std::future::poll_fn(|cx| slot.poll_departure(cx, &busy, &mut serving, quiet.as_mut())).await;
            break;
        }
    }
    slot.core.disconnect(Instant::now());
    let sent = slot.flush().and_then(|()| slot.settle_now());
    // What the pipe had no room for yet (the last FINAL, the DISCONNECT)
    // goes out before the socket closes, for up to the closing linger;
    // the linger alone would drop it, since libzmq has not taken it.
    let until = Instant::now() + std::time::Duration::from_millis(CLOSING_LINGER_MS.unsigned_abs().into());
    while slot.conn.has_backlog() && Instant::now() < until && slot.conn.flush_backlog().is_ok() {
        if slot.conn.has_backlog() {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
    slot.close();
    result.and(sent)
}

/// How many slots of one worker run a handler or wait for their FINAL to
/// be read after a stop, and the slots waiting for none to (see [`serve`]).
#[derive(Default)]
struct Busy {
    count: AtomicUsize,
    /// One waker per waiting slot at most.
    waiting: Mutex<Vec<Waker>>,
}

/// Counts one slot in [`Busy`] until dropped (so a slot whose handler
/// panics is not counted for ever).
struct Serving<'a>(&'a Busy);

impl Busy {
    fn start(&self) -> Serving<'_> {
        self.count.fetch_add(1, Ordering::SeqCst);
        Serving(self)
    }

    /// Whether no handler runs; if one does, `cx` is woken when none does.
    fn poll_none(&self, cx: &mut Context<'_>) -> bool {
        let mut waiting = self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if !waiting.iter().any(|w| w.will_wake(cx.waker())) {
            waiting.push(cx.waker().clone());
        }
        // The last handler to end takes the lock to wake: a count that
        // reaches zero after this look wakes this task.
        self.count.load(Ordering::SeqCst) == 0
    }
}

impl Drop for Serving<'_> {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            let waiting = std::mem::take(&mut *self.0.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
            waiting.into_iter().for_each(Waker::wake);
        }
    }
}

/// One connection, its core, and the request it has been handed.
struct Slot {
    /// Declared before `conn`, so dropped before it (see [`Watch`]);
    /// `None` from a replace until the new sockets are registered.
    watch: Option<Watch>,
    conn: Connection,
    core: mdp_core::Worker,
    timer: Timer,
    /// A request the core handed out that no handler has started.
    pending: Option<(ReplyToken, Multipart)>,
    /// The monitor must be read: it signalled, or is new.
    monitor_due: bool,
    /// The watch was made since the task last polled it, so tokio does not
    /// know whom to wake for it yet.
    unpolled: bool,
    /// Counts replacements, to tell when a callback replaced the sockets.
    generation: u64,
}

impl Slot {
    fn new(conn: Connection, core: mdp_core::Worker) -> Result<Slot, AdapterError> {
        let watch = Some(Watch::new(&conn)?);
        let timer = Timer::new()?;
        Ok(Slot { watch, conn, core, timer, pending: None, monitor_due: true, unpolled: true, generation: 0 })
    }

    /// Waits for a request: `None` once stopped. A request the core
    /// handed out but no handler started is not served after a stop: the
    /// DISCONNECT that follows gives it back to the broker.
    fn poll_request(
        &mut self,
        cx: &mut Context<'_>,
        stop: &StopHandle,
    ) -> Poll<Result<Option<(ReplyToken, Multipart)>, AdapterError>> {
        if stop.poll_stopped(cx) {
            return Poll::Ready(Ok(None));
        }
        if let Err(e) = self.poll_io(cx) {
            return Poll::Ready(Err(e));
        }
        match self.pending.take() {
            Some(request) => Poll::Ready(Ok(Some(request))),
            None => Poll::Pending,
        }
    }

    /// Serves the socket (heartbeats; a request the broker sends now is
    /// kept, not started) until this slot may leave (`serving` is dropped
    /// once the broker handed it a request or `quiet` has passed) and no
    /// other slot is serving or waiting for its own FINAL to be read.
    fn poll_departure(
        &mut self,
        cx: &mut Context<'_>,
        busy: &Busy,
        serving: &mut Option<Serving<'_>>,
        quiet: Pin<&mut tokio::time::Sleep>,
    ) -> Poll<Result<(), AdapterError>> {
        if let Err(e) = self.poll_io(cx) {
            return Poll::Ready(Err(e));
        }
        if serving.is_some() && (self.pending.is_some() || quiet.poll(cx).is_ready()) {
            *serving = None;
        }
        if serving.is_none() && busy.poll_none(cx) {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    /// Serves the socket while the handler's future runs; sends its
    /// PARTIALs as they come and its output as the FINAL.
    fn poll_serving(
        &mut self,
        cx: &mut Context<'_>,
        token: &ReplyToken,
        parts: &mut mpsc::Receiver<Multipart>,
        reply: Pin<&mut impl Future<Output = Multipart>>,
    ) -> Poll<Result<(), AdapterError>> {
        if let Err(e) = self.poll_io(cx) {
            return Poll::Ready(Err(e));
        }
        // Parts only while the socket takes them; when it does again its
        // ZMQ_FD signals, and this runs again.
        while !self.conn.has_backlog() {
            match parts.poll_recv(cx) {
                Poll::Ready(Some(part)) => {
                    if let Err(e) = self.answer(token, part, Piece::Partial) {
                        return Poll::Ready(Err(e));
                    }
                }
                Poll::Ready(None) | Poll::Pending => break,
            }
        }
        let body = match catch_unwind(AssertUnwindSafe(|| reply.poll(cx))) {
            Ok(Poll::Pending) => return self.pending_after_io(cx),
            Ok(Poll::Ready(body)) => body,
            Err(_) => {
                tracing::error!("an async worker's handler panicked; its request goes back to the broker");
                return Poll::Ready(Err(AdapterError::HandlerPanicked));
            }
        };
        // Every part the handler sent before it returned, then the FINAL.
        parts.close();
        let mut sent = Ok(());
        while let Ok(part) = parts.try_recv() {
            sent = sent.and(self.answer(token, part, Piece::Partial));
        }
        Poll::Ready(sent.and(self.answer(token, body, Piece::Last)))
    }

    /// `Pending`, once a watch made since the last [`poll_io`](Self::poll_io)
    /// (sends that replaced the connection) has been polled too.
    fn pending_after_io<T>(&mut self, cx: &mut Context<'_>) -> Poll<Result<T, AdapterError>> {
        if self.unpolled {
            if let Err(e) = self.poll_io(cx) {
                return Poll::Ready(Err(e));
            }
        }
        Poll::Pending
    }

    /// Reads the socket, fires the core's timers, and arranges to be woken
    /// for the next message or deadline.
    fn poll_io(&mut self, cx: &mut Context<'_>) -> Result<(), AdapterError> {
        for _ in 0..MAX_ROUNDS {
            let mut again = false;
            let signalled = match &self.watch {
                None => true,
                Some(watch) => {
                    self.unpolled = false;
                    let s = watch.poll(cx);
                    self.monitor_due |= s.monitor;
                    s.socket || s.monitor
                }
            };
            if signalled {
                self.settle_now()?;
                // A new watch has not been polled: it registers `cx` below.
                again = true;
            }
            let now = Instant::now();
            if self.core.poll_timeout().is_some_and(|at| at <= now) {
                self.core.handle_timeout(now);
                self.flush()?;
                self.settle_now()?;
                again = true;
            }
            if self.timer.poll(self.core.poll_timeout(), cx) {
                again = true;
            }
            if !again {
                return Ok(());
            }
        }
        cx.waker().wake_by_ref();
        Ok(())
    }

    /// Settles the connection (see [`settle`]), registering new sockets
    /// first and settling those too if it is replaced meanwhile.
    fn settle_now(&mut self) -> Result<(), AdapterError> {
        loop {
            if self.watch.is_none() {
                self.watch = Some(Watch::new(&self.conn)?);
                self.monitor_due = true;
                self.unpolled = true;
            }
            let monitor = std::mem::take(&mut self.monitor_due);
            if settle(self, monitor)? != Next::Replaced {
                return Ok(());
            }
        }
    }

    /// Passes a part of the handler's answer to the core ([`Piece::pass`])
    /// and sends it.
    fn answer(&mut self, token: &ReplyToken, body: Multipart, piece: Piece) -> Result<(), AdapterError> {
        piece.pass(&mut self.core, token, body);
        self.flush()?;
        self.settle_now()
    }

    /// The drain rule: every transmit, then every event.
    fn flush(&mut self) -> Result<(), AdapterError> {
        loop {
            while let Some(t) = self.core.poll_transmit() {
                match t {
                    PeerTransmit::Send(frames) => self.conn.send(frames)?,
                    PeerTransmit::Reconnect => {
                        // The registration goes before the sockets it watches.
                        self.watch = None;
                        self.conn.replace()?;
                        self.generation += 1;
                        self.monitor_due = true;
                    }
                }
            }
            let Some(event) = self.core.poll_event() else { return Ok(()) };
            match event {
                WorkerEvent::Request { token, body } => {
                    // One at a time: the core hands out the next only after
                    // the reply, and a reconnect clears one not started.
                    if self.pending.replace((token, body)).is_some() {
                        tracing::error!("worker core handed out a request while one was pending; the older is dropped");
                    }
                }
                WorkerEvent::Disconnected { reason, dropped } => {
                    tracing::info!(%reason, dropped = dropped.is_some(), "worker reconnecting");
                    // Not started, and the core would refuse its answer.
                    self.pending = None;
                }
                WorkerEvent::Discarded { reason } => tracing::debug!(%reason, "worker dropped a message"),
                other => tracing::debug!(?other, "worker event"),
            }
        }
    }

    /// Lets the socket's last messages go out after it closes (see
    /// `CLOSING_LINGER_MS`), and unregisters it.
    fn close(mut self) {
        self.watch = None;
        self.conn.linger_on_close();
    }
}

impl Driven for Slot {
    fn conn(&mut self) -> &mut Connection {
        &mut self.conn
    }

    fn read(&mut self) -> Result<Next, AdapterError> {
        let before = self.generation;
        while let Some(frames) = self.conn.try_recv()? {
            self.core.handle_message(Instant::now(), frames);
            self.flush()?;
            if self.generation != before {
                return Ok(Next::Replaced);
            }
        }
        Ok(Next::Same)
    }

    fn lost(&mut self) -> Result<Next, AdapterError> {
        let before = self.generation;
        // The broker went away: register again after the backoff rather
        // than after its silence.
        self.core.handle_connection_lost(Instant::now());
        self.flush()?;
        Ok(if self.generation != before { Next::Replaced } else { Next::Same })
    }
}
