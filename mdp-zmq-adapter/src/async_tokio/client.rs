//! [`AsyncClient`]: one [`mdp_core::Client`] shared by many tasks.
//!
//! The core, the lanes' sockets and a slot per outstanding request sit
//! behind one mutex. A request's future does its own sending: it takes the
//! lock, hands the request to the core and sends what the core says, on
//! the caller's task, with no hand-off. A driver task, spawned by
//! [`AsyncClient::connect`], waits for the sockets' `ZMQ_FD`s and the
//! core's next deadline, reads the replies and puts each event in its
//! request's slot, waking that request's task. Whoever touches a socket
//! settles it before letting go of the lock (see the module docs of
//! [`async_tokio`](super)), so a signal consumed by a send is never lost.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mdp_core::{ClientConfig, ClientEvent, Dialect, Lane, Multipart, PeerTransmit, RequestId};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::fd::{settle, Driven, Next, Timer, Watch};
use crate::socket::Connection;
use crate::{AdapterError, ClientError};

/// Most events a request's slot holds unread before the driver stops
/// reading that request's lane: a reader that falls behind a worker's
/// stream of PARTIALs is then waited for, with what is left queued in
/// libzmq (up to this socket's receive high-water mark, then the broker's
/// send high-water mark towards it, 1,000 messages each by default)
/// instead of in this process without bound. Past those the broker drops
/// what it cannot send (it logs `peer's pipe is full`), and the request
/// times out and restarts. Reading resumes when the reader has taken half
/// of them.
const MAX_UNREAD: usize = 128;

/// Most rounds one wake-up of the driver takes before it yields to other
/// tasks (and runs again at once).
const MAX_ROUNDS: usize = 16;

/// An MDP client for tokio applications: cheap to clone, `Send + Sync`,
/// so that any number of tasks share one, each awaiting its own requests.
///
/// It is the blocking [`Client`](crate::Client)'s machinery, one
/// [`mdp_core::Client`] with one DEALER socket per lane, driven by a tokio
/// task instead of the caller's thread (how the sockets meet tokio is in
/// the module docs). Concurrency comes from the lanes: each lane carries
/// at most one request per service, so up to `lanes` requests to one
/// service are served at once and the rest wait in the core, in order
/// ([`ClientConfig::lanes`]). [`AsyncClient::config`] gives a configuration
/// sized for many tasks ([`AsyncClient::DEFAULT_LANES`]); a configuration
/// passed to [`connect`](Self::connect) is used as it is.
///
/// * [`request`](Self::request) awaits the whole answer;
///   [`parts`](Self::parts) yields its parts as they arrive (a
///   [`futures_core::Stream`]).
/// * **Dropping a request's future** (or its [`PartStream`]) before the
///   answer is complete cancels the request in the core
///   ([`mdp_core::Client::cancel`]): if it was on the wire, its lane is
///   replaced, so a late answer can never be taken for another request's,
///   and the next request waiting for a lane goes out at once.
/// * **Timeouts.** Each request ends by the core's retries
///   ([`ClientConfig::timeout`] × [`ClientConfig::tries`]) with
///   [`ClientError::Failed`]. A shorter wait is the caller's:
///   `tokio::time::timeout` around the future, or
///   [`request_timeout`](Self::request_timeout); either drops the future,
///   which cancels the request.
/// * **Room.** At most [`ClientConfig::max_outstanding`] requests are
///   outstanding at once; a request beyond that waits for one to end,
///   first come first served, instead of failing with
///   [`ClientUsageError::TooManyOutstanding`](mdp_core::ClientUsageError::TooManyOutstanding)
///   as the blocking client does. (With `max_outstanding` 0 every request
///   fails with it.)
///
/// **Memory.** The core holds at most `max_outstanding` requests (their
/// bodies, kept to resend them); each has a slot here holding the events
/// its reader has not taken yet, at most 128 (past that the driver stops
/// reading that request's lane until the reader catches up, so a worker
/// streaming PARTIALs faster than they are read is held back in libzmq,
/// not here; past libzmq's high-water marks on both sides, 1,000 messages
/// each by default, the broker drops the parts it cannot send, and the
/// request times out). The request's timeout
/// ([`ClientConfig::timeout`]) still runs meanwhile and covers the whole
/// answer, so a [`parts`](Self::parts) reader that falls behind for longer
/// than the timeout gets its request restarted or failed, and the other
/// requests on that lane wait with it: read streams promptly, or give
/// them a timeout that covers the reader. What a caller keeps is the caller's:
/// [`request`](Self::request) joins the whole answer in memory, so use
/// [`parts`](Self::parts) for answers of unbounded length. Requests
/// waiting for room are held by their futures.
///
/// **Lifetime.** The driver task runs on the runtime that was current in
/// [`connect`](Self::connect), until the last clone of the client and the
/// last of its requests are dropped; then the sockets close. If that
/// runtime shuts down first, requests end with [`AdapterError::NoRuntime`].
#[derive(Clone)]
pub struct AsyncClient {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for AsyncClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.handle.shared.lock();
        f.debug_struct("AsyncClient")
            .field("lanes", &state.lanes.len())
            .field("outstanding", &state.core.outstanding())
            .finish_non_exhaustive()
    }
}

impl AsyncClient {
    /// The lanes of [`AsyncClient::config`]: 16, so that 16 requests to one
    /// service are served at once (by 16 workers, if there are that many)
    /// and any number of tasks can share the client. Each lane is one
    /// connection to the broker, which counts it as a client in its round
    /// robin.
    pub const DEFAULT_LANES: usize = 16;

    /// A configuration for a client shared by many tasks:
    /// [`ClientConfig::new`] with [`DEFAULT_LANES`](Self::DEFAULT_LANES)
    /// lanes. Change any of it before [`connect`](Self::connect), which
    /// uses what it is given as it is.
    pub fn config(dialect: Dialect) -> ClientConfig {
        ClientConfig::new(dialect).with_lanes(Self::DEFAULT_LANES)
    }

    /// Connects to a broker (`tcp://127.0.0.1:5555`) with `config.lanes`
    /// connections, and spawns the task that reads them on the current
    /// tokio runtime.
    ///
    /// A configuration that cannot work is refused with
    /// [`ClientError::Config`], before any socket is made. Must be called
    /// inside a tokio runtime with IO and time enabled; elsewhere it
    /// returns [`AdapterError::NoRuntime`] (in [`ClientError::Adapter`])
    /// rather than panic.
    pub fn connect(endpoint: &str, config: ClientConfig) -> Result<Self, ClientError> {
        Self::connect_many(&[endpoint], config)
    }

    /// Connects to every broker in `endpoints`, all serving the same
    /// services, with `config.lanes` connections to each: lane `i` goes to
    /// `endpoints[core.broker_of(Lane(i))]` (see [`mdp_core::Client`],
    /// "Several brokers", for how requests are spread and failed over).
    /// `config.brokers` is set to `endpoints.len()`: the list says how many
    /// brokers there are. An empty list is refused with
    /// [`AdapterError::NoEndpoint`]. Otherwise as
    /// [`connect`](Self::connect).
    pub fn connect_many(endpoints: &[impl AsRef<str>], mut config: ClientConfig) -> Result<Self, ClientError> {
        if endpoints.is_empty() {
            return Err(AdapterError::NoEndpoint.into());
        }
        config.brokers = endpoints.len();
        let core = mdp_core::Client::new(config, Instant::now())?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| AdapterError::NoRuntime)?;
        let ctx = zmq::Context::new();
        let open = |lane| Connection::open(&ctx, endpoints[core.broker_of(Lane(lane))].as_ref(), None);
        let lanes: Vec<Connection> = (0..core.lane_count()).map(open).collect::<Result<_, _>>()?;
        // Registered here, not in the driver, so that a runtime without IO
        // or time is refused now, with an error.
        let watches = lanes.iter().map(|c| Watch::new(c).map(Some)).collect::<Result<Vec<_>, _>>()?;
        let timer = Timer::new()?;
        let n = lanes.len();
        let room = match core.config().max_outstanding {
            0 => None,
            max => Some(Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS)))),
        };
        let state = State {
            watches,
            lanes,
            core,
            slots: HashMap::new(),
            dirty: (0..n).collect(),
            is_dirty: vec![true; n],
            monitor_due: vec![true; n],
            generation: vec![0; n],
            paused: vec![None; n],
            behind: None,
            driver: None,
            armed: None,
            closing: false,
            failed: None,
            driver_gone: false,
        };
        let shared = Arc::new(Shared { state: Mutex::new(state), room });
        runtime.spawn(Driver { shared: shared.clone(), timer });
        Ok(AsyncClient { handle: Arc::new(Handle { shared }) })
    }

    /// Sends a request and awaits its whole answer: the frames of every
    /// PARTIAL, then those of the FINAL, joined in order (what the broker
    /// gives an MDP/0.1 client). If the answer restarts
    /// ([`ClientError::Restarted`]) the parts so far are dropped, so the
    /// frames returned are those of one answer only.
    ///
    /// The future owns what it needs (spawn it, or keep it in a
    /// collection); dropping it before it completes cancels the request.
    /// Nothing is sent until it is first polled.
    pub fn request(
        &self,
        service: impl Into<Bytes>,
        body: Multipart,
    ) -> impl Future<Output = Result<Multipart, ClientError>> + Send + 'static {
        let mut parts = self.parts(service, body);
        async move {
            let mut joined = Vec::new();
            while let Some(part) = parts.next().await {
                match part {
                    Ok(frames) => joined.extend(frames),
                    Err(ClientError::Restarted(_)) => joined.clear(),
                    Err(e) => return Err(e),
                }
            }
            Ok(joined)
        }
    }

    /// [`request`](Self::request), given up after `timeout` with
    /// [`ClientError::Timeout`] (and cancelled, as any dropped request).
    pub fn request_timeout(
        &self,
        service: impl Into<Bytes>,
        body: Multipart,
        timeout: Duration,
    ) -> impl Future<Output = Result<Multipart, ClientError>> + Send + 'static {
        let request = self.request(service, body);
        async move { tokio::time::timeout(timeout, request).await.unwrap_or(Err(ClientError::Timeout(timeout))) }
    }

    /// Sends a request and returns a stream of the parts of its answer as
    /// they arrive: each PARTIAL, then the FINAL, like the blocking
    /// [`Client::parts`](crate::Client::parts). If the answer restarts it
    /// yields [`ClientError::Restarted`] and goes on with the new answer
    /// from its first part; every other error ends it. Dropping the stream
    /// before its end cancels the request. Nothing is sent until it is
    /// first polled.
    pub fn parts(&self, service: impl Into<Bytes>, body: Multipart) -> PartStream {
        PartStream { client: self.clone(), step: Step::Start { service: service.into(), body } }
    }

    /// Requests outstanding in the core, on the wire or waiting for a lane
    /// (not those waiting for room).
    pub fn outstanding(&self) -> usize {
        self.handle.shared.lock().core.outstanding()
    }

    /// How many lanes (connections) the client has: `lanes × brokers`.
    pub fn lane_count(&self) -> usize {
        self.handle.shared.lock().lanes.len()
    }
}

/// What every clone of one [`AsyncClient`] shares; its drop, when the last
/// clone goes, stops the driver.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.closing = true;
        state.wake_driver();
    }
}

/// The state, and the room for requests.
struct Shared {
    state: Mutex<State>,
    /// One permit per request the core may hold (`max_outstanding`);
    /// `None` when that is 0.
    room: Option<Arc<Semaphore>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding it; if something did, the core and
        // the sockets are still usable.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The events of one outstanding request not taken yet, and who waits.
#[derive(Default)]
struct Slot {
    events: VecDeque<ClientEvent>,
    waker: Option<Waker>,
}

/// Everything behind the lock.
struct State {
    /// One per lane, `None` from a replace until the driver registers the
    /// new sockets. Declared before `lanes`, so dropped before them (see
    /// [`Watch`]).
    watches: Vec<Option<Watch>>,
    lanes: Vec<Connection>,
    core: mdp_core::Client,
    slots: HashMap<RequestId, Slot>,
    /// Lanes touched since they were last settled (sent on, replaced, new,
    /// or signalled), each once.
    dirty: Vec<usize>,
    is_dirty: Vec<bool>,
    /// Lanes whose monitor must be read: it signalled, or is new.
    monitor_due: Vec<bool>,
    /// Counts each lane's replacements, to tell when a callback replaced it.
    generation: Vec<u64>,
    /// Per lane, the request whose reader fell behind, while reading that
    /// lane waits for it.
    paused: Vec<Option<RequestId>>,
    /// Set by `dispatch` when a slot overflows; taken by `read`, which
    /// pauses the lane that request is on.
    behind: Option<RequestId>,
    /// The driver task, to wake when it has something to do.
    driver: Option<Waker>,
    /// The deadline the driver's timer is set for.
    armed: Option<Instant>,
    /// The last clone of the client was dropped.
    closing: bool,
    /// A socket failed; every request ends with this.
    failed: Option<AdapterError>,
    /// The driver task ended (its runtime shut down).
    driver_gone: bool,
}

impl State {
    fn mark(&mut self, lane: usize) {
        if !self.is_dirty[lane] {
            self.is_dirty[lane] = true;
            self.dirty.push(lane);
        }
    }

    fn wake_driver(&self) {
        if let Some(waker) = &self.driver {
            waker.wake_by_ref();
        }
    }

    /// The drain rule: every transmit, then every event.
    fn flush(&mut self) -> Result<(), AdapterError> {
        while let Some(t) = self.core.poll_transmit() {
            let lane = t.lane.0;
            if lane >= self.lanes.len() {
                continue;
            }
            match t.transmit {
                PeerTransmit::Send(frames) => self.lanes[lane].send(frames)?,
                PeerTransmit::Reconnect => {
                    // The registration goes before the sockets it watches.
                    self.watches[lane] = None;
                    self.lanes[lane].replace()?;
                    self.generation[lane] += 1;
                    self.monitor_due[lane] = true;
                    // The old connection's unread messages went with it.
                    self.paused[lane] = None;
                }
            }
            self.mark(lane);
        }
        while let Some(event) = self.core.poll_event() {
            self.dispatch(event);
        }
        Ok(())
    }

    /// Puts an event in its request's slot and wakes the request's task.
    fn dispatch(&mut self, event: ClientEvent) {
        let Some(id) = event.id() else {
            match event {
                ClientEvent::Discarded { reason } => {
                    tracing::debug!(%reason, "client dropped a message from the broker")
                }
                other => tracing::debug!(?other, "client event"),
            }
            return;
        };
        // Every outstanding request has a slot; the core names no other.
        let Some(slot) = self.slots.get_mut(&id) else { return };
        slot.events.push_back(event);
        if slot.events.len() >= MAX_UNREAD {
            self.behind = Some(id);
        }
        if let Some(waker) = slot.waker.take() {
            waker.wake();
        }
    }

    /// Settles every dirty lane; see [`settle`].
    fn settle_dirty(&mut self) -> Result<(), AdapterError> {
        while let Some(lane) = self.dirty.pop() {
            self.is_dirty[lane] = false;
            let monitor = std::mem::take(&mut self.monitor_due[lane]);
            if settle(&mut LaneRef { state: self, lane }, monitor)? == Next::Replaced {
                // New sockets: settle them too (the driver registers them).
                self.mark(lane);
            }
        }
        Ok(())
    }

    /// After a caller's operation: settle what it touched, and wake the
    /// driver if it has new sockets to register or an earlier deadline.
    fn after_call(&mut self) {
        if let Err(e) = self.flush().and_then(|()| self.settle_dirty()) {
            self.fail(e);
        }
        let unwatched = self.watches.iter().any(Option::is_none);
        let earlier = match (self.core.poll_timeout(), self.armed) {
            (Some(at), Some(armed)) => at < armed,
            (at, _) => at.is_some(),
        };
        if unwatched || earlier {
            self.wake_driver();
        }
    }

    /// A socket failed: the client cannot go on. Every request ends with
    /// the error.
    fn fail(&mut self, e: AdapterError) {
        tracing::error!(error = %e, "async client failed");
        self.failed.get_or_insert(e);
        self.wake_all();
    }

    fn wake_all(&mut self) {
        for slot in self.slots.values_mut() {
            if let Some(waker) = slot.waker.take() {
                waker.wake();
            }
        }
    }

    /// Why requests cannot go on, if they cannot.
    fn broken(&self) -> Option<AdapterError> {
        match &self.failed {
            Some(e) => Some(duplicate(e)),
            None if self.driver_gone => Some(AdapterError::NoRuntime),
            None => None,
        }
    }

    /// The request `id` ended or was given up: forget its slot and read
    /// the lane it held up, if any.
    fn forget(&mut self, id: RequestId) {
        self.slots.remove(&id);
        self.resume(id);
    }

    /// Reading a lane paused for `id` resumes.
    fn resume(&mut self, id: RequestId) {
        for lane in 0..self.paused.len() {
            if self.paused[lane] == Some(id) {
                self.paused[lane] = None;
                self.mark(lane);
            }
        }
    }
}

/// One lane of the state, as [`settle`] drives it.
struct LaneRef<'a> {
    state: &'a mut State,
    lane: usize,
}

impl LaneRef<'_> {
    /// What a callback did to the lane, `before` being its generation.
    fn next(&self, before: u64) -> Next {
        if self.state.generation[self.lane] != before {
            Next::Replaced
        } else {
            Next::Same
        }
    }
}

impl Driven for LaneRef<'_> {
    fn conn(&mut self) -> &mut Connection {
        &mut self.state.lanes[self.lane]
    }

    fn read(&mut self) -> Result<Next, AdapterError> {
        let (lane, before) = (self.lane, self.state.generation[self.lane]);
        loop {
            if self.state.paused[lane].is_some() {
                return Ok(Next::Paused);
            }
            let Some(frames) = self.state.lanes[lane].try_recv()? else { return Ok(Next::Same) };
            self.state.core.handle_message(Instant::now(), Lane(lane), frames);
            self.state.flush()?;
            if let Some(id) = self.state.behind.take() {
                // The lane to hold is the one the request is on: any flush
                // (a timeout's `Restarted`, say) may have filled its slot,
                // not only this lane's message.
                if let Some(Lane(on)) = self.state.core.lane_of(id) {
                    self.state.paused[on] = Some(id);
                }
            }
            if self.next(before) == Next::Replaced {
                return Ok(Next::Replaced);
            }
        }
    }

    fn lost(&mut self) -> Result<Next, AdapterError> {
        let before = self.state.generation[self.lane];
        // The broker went away (a restart, say): resend now rather than at
        // the requests' timeouts.
        self.state.core.handle_connection_lost(Instant::now(), Lane(self.lane));
        self.state.flush()?;
        Ok(self.next(before))
    }
}

/// The task that waits for the sockets and the core's deadlines.
struct Driver {
    shared: Arc<Shared>,
    timer: Timer,
}

impl Future for Driver {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let mut state = this.shared.lock();
        if state.closing {
            return Poll::Ready(());
        }
        if !state.driver.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            state.driver = Some(cx.waker().clone());
        }
        for _ in 0..MAX_ROUNDS {
            match drive(&mut state, &mut this.timer, cx) {
                Ok(true) => continue,
                Ok(false) => return Poll::Pending,
                Err(e) => {
                    state.fail(e);
                    return Poll::Ready(());
                }
            }
        }
        // Busy: let other tasks run, then go on.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// One round of the driver: register new sockets, settle those that
/// signalled, fire the core's timers. `Ok(true)` if it should look again
/// before sleeping.
fn drive(state: &mut State, timer: &mut Timer, cx: &mut Context<'_>) -> Result<bool, AdapterError> {
    let mut fresh = false;
    for lane in 0..state.lanes.len() {
        match &state.watches[lane] {
            None => {
                state.watches[lane] = Some(Watch::new(&state.lanes[lane])?);
                state.monitor_due[lane] = true;
                state.mark(lane);
                // Polled next round: that registers this task for its signals.
                fresh = true;
            }
            Some(watch) => {
                let signalled = watch.poll(cx);
                if signalled.monitor {
                    state.monitor_due[lane] = true;
                }
                if signalled.socket || signalled.monitor {
                    state.mark(lane);
                }
            }
        }
    }
    state.settle_dirty()?;
    let mut again = fresh || state.watches.iter().any(Option::is_none);
    let now = Instant::now();
    if state.core.poll_timeout().is_some_and(|at| at <= now) {
        state.core.handle_timeout(now);
        state.flush()?;
        state.settle_dirty()?;
        again = true;
    }
    if timer.poll(state.core.poll_timeout(), cx) {
        again = true;
    }
    state.armed = timer.armed();
    Ok(again)
}

impl Drop for Driver {
    /// The driver ends when the client is dropped, or when its runtime
    /// shuts down: then waiting requests learn it.
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.watches.iter_mut().for_each(|w| *w = None);
        state.driver_gone = true;
        state.driver = None;
        state.wake_all();
    }
}

/// The parts of one answer, as they arrive: see [`AsyncClient::parts`].
///
/// A [`futures_core::Stream`] of `Result<Multipart, ClientError>`, also
/// read with [`next`](Self::next). Dropping it before its end cancels the
/// request.
#[must_use = "a request is sent when its stream is first polled"]
pub struct PartStream {
    client: AsyncClient,
    step: Step,
}

impl std::fmt::Debug for PartStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartStream").field("id", &self.id()).finish_non_exhaustive()
    }
}

/// Where a [`PartStream`] is.
enum Step {
    /// Not polled yet.
    Start { service: Bytes, body: Multipart },
    /// Waiting for room (`max_outstanding` requests are outstanding).
    Room { service: Bytes, body: Multipart, permit: Pin<Box<dyn Future<Output = Permit> + Send>> },
    /// In the core.
    Sent { id: RequestId, _permit: Option<OwnedSemaphorePermit> },
    /// Ended: answered, failed or refused.
    Done,
}

type Permit = Result<OwnedSemaphorePermit, tokio::sync::AcquireError>;

impl PartStream {
    /// The request these parts answer, once it is sent.
    pub fn id(&self) -> Option<RequestId> {
        match self.step {
            Step::Sent { id, .. } => Some(id),
            _ => None,
        }
    }

    /// The next part, `None` after the last (the FINAL, or an error other
    /// than [`ClientError::Restarted`]).
    pub async fn next(&mut self) -> Option<Result<Multipart, ClientError>> {
        std::future::poll_fn(|cx| self.poll_part(cx)).await
    }

    fn poll_part(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Multipart, ClientError>>> {
        loop {
            match std::mem::replace(&mut self.step, Step::Done) {
                Step::Done => return Poll::Ready(None),
                Step::Start { service, body } => {
                    let permit = match &self.client.handle.shared.room {
                        None => None,
                        Some(room) => match room.clone().try_acquire_owned() {
                            Ok(permit) => Some(permit),
                            Err(_) => {
                                let permit = Box::pin(room.clone().acquire_owned());
                                self.step = Step::Room { service, body, permit };
                                continue;
                            }
                        },
                    };
                    if let Some(end) = self.send(service, body, permit) {
                        return Poll::Ready(Some(Err(end)));
                    }
                }
                Step::Room { service, body, mut permit } => match permit.as_mut().poll(cx) {
                    Poll::Pending => {
                        self.step = Step::Room { service, body, permit };
                        return Poll::Pending;
                    }
                    // The semaphore is never closed; if it were, go without.
                    Poll::Ready(permit) => {
                        if let Some(end) = self.send(service, body, permit.ok()) {
                            return Poll::Ready(Some(Err(end)));
                        }
                    }
                },
                Step::Sent { id, _permit } => {
                    let mut state = self.client.handle.shared.lock();
                    // What already came is given out before a failure of
                    // the client ends the stream.
                    let queued = state.slots.get(&id).is_some_and(|slot| !slot.events.is_empty());
                    if let Some(e) = state.broken().filter(|_| !queued) {
                        state.core.cancel(Instant::now(), id);
                        state.forget(id);
                        return Poll::Ready(Some(Err(e.into())));
                    }
                    let Some(slot) = state.slots.get_mut(&id) else { return Poll::Ready(None) };
                    let Some(event) = slot.events.pop_front() else {
                        if !slot.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                            slot.waker = Some(cx.waker().clone());
                        }
                        self.step = Step::Sent { id, _permit };
                        return Poll::Pending;
                    };
                    let left = slot.events.len();
                    let part = match event {
                        ClientEvent::Partial { body, .. } => Some(Ok(body)),
                        ClientEvent::Restarted { id } => Some(Err(ClientError::Restarted(id))),
                        ClientEvent::Reply { body, .. } => {
                            state.forget(id);
                            state.after_call();
                            return Poll::Ready(Some(Ok(body)));
                        }
                        ClientEvent::Failed { reason, .. } => {
                            state.forget(id);
                            state.after_call();
                            return Poll::Ready(Some(Err(ClientError::Failed(reason))));
                        }
                        // Only events naming this request come here; whatever
                        // later versions add is skipped.
                        other => {
                            tracing::debug!(?other, "client event");
                            None
                        }
                    };
                    if left <= MAX_UNREAD / 2 && state.paused.contains(&Some(id)) {
                        state.resume(id);
                        state.after_call();
                    }
                    drop(state);
                    self.step = Step::Sent { id, _permit };
                    if let Some(part) = part {
                        return Poll::Ready(Some(part));
                    }
                }
            }
        }
    }

    /// Hands the request to the core and sends it. `Some(error)` if it
    /// could not be (the stream then ends with it).
    fn send(&mut self, service: Bytes, body: Multipart, permit: Option<OwnedSemaphorePermit>) -> Option<ClientError> {
        let mut state = self.client.handle.shared.lock();
        if let Some(e) = state.broken() {
            return Some(e.into());
        }
        let id = match state.core.request(Instant::now(), service, body) {
            Ok(id) => id,
            Err(e) => return Some(e.into()),
        };
        // Before anything can put an event there.
        state.slots.insert(id, Slot::default());
        state.after_call();
        self.step = Step::Sent { id, _permit: permit };
        None
    }
}

impl futures_core::Stream for PartStream {
    type Item = Result<Multipart, ClientError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_part(cx)
    }
}

impl futures_core::FusedStream for PartStream {
    fn is_terminated(&self) -> bool {
        matches!(self.step, Step::Done)
    }
}

impl Drop for PartStream {
    /// A caller that stops reading early gives up the rest of the answer:
    /// the request is cancelled, here and now (no runtime needed).
    fn drop(&mut self) {
        if let Step::Sent { id, .. } = self.step {
            let mut state = self.client.handle.shared.lock();
            state.core.cancel(Instant::now(), id);
            state.forget(id);
            state.after_call();
        }
    }
}

/// A copy of an error the driver met, for every request it ends. Only
/// socket errors and a missing runtime happen there.
fn duplicate(e: &AdapterError) -> AdapterError {
    match e {
        AdapterError::Zmq { what, source } => AdapterError::Zmq { what: what.clone(), source: *source },
        AdapterError::NoRuntime => AdapterError::NoRuntime,
        other => AdapterError::Zmq { what: other.to_string(), source: zmq::Error::EFAULT },
    }
}
