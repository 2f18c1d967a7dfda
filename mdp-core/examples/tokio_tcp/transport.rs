//! mdp-core over plain tokio TCP: framing, connections, and the loops that
//! drive a [`Broker`], a [`Client`] and a [`Worker`].
//!
//! This file is shared: `examples/tokio_tcp.rs` and the test
//! `tests/tests/tokio_tcp.rs` both include it with `#[path]`, so the test
//! exercises exactly the transport the example shows, and tokio stays a
//! dev-dependency (mdp-core itself depends on no runtime).
//!
//! The transport carries frames and nothing else. It never parses MDP and
//! makes no heartbeat, retry or expiry decision: those are the core's. What it
//! does on its own is what a ZeroMQ socket would do:
//!
//! * **Framing** ([`MultipartCodec`]): one message is a `u32` frame count, then
//!   per frame a `u32` length and that many bytes (big-endian). Counts and
//!   lengths are checked against limits before anything is buffered for them.
//! * **Identity**: the broker names each accepted connection with a fresh
//!   [`PeerId`] (a counter's 8 bytes), as a ROUTER socket does.
//! * **Dialling**: a client's or worker's connection is dialled again every
//!   [`TcpOptions::redial`] until it connects, and messages sent meanwhile wait
//!   in its queue, as with a DEALER socket. A connection that was up and then
//!   drops is *not* dialled again: it stays dead until the core asks for
//!   [`PeerTransmit::Reconnect`]. Silently dialling again would let a reply to
//!   a request sent on the new connection be matched to an older request lost
//!   with the old one.
//! * **High-water mark**: each connection queues at most
//!   [`TcpOptions::send_queue`] messages; more are dropped, and the core's
//!   timers recover, as ZeroMQ drops at its HWM (EAGAIN).
//! * **Unreachable peers**: a broker transmit to a connection that is gone, or
//!   whose queue is full, is reported with [`Broker::handle_unreachable`]
//!   (ZeroMQ: `EHOSTUNREACH` with `ROUTER_MANDATORY`, or `EAGAIN`), and so is
//!   every connection that closes, so a worker that disconnects mid-request
//!   has its request re-queued at once.
//!
//! Every loop has the shape the crate docs prescribe: drain `poll_transmit`
//! and `poll_event` until both are empty, then `select!` over the inputs and
//! a sleep until `poll_timeout`; each input is followed by the next drain.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use mdp_core::{
    Broker, BrokerConfig, BrokerEvent, Client, ClientConfig, ClientEvent, ClientUsageError, ConfigError, FailReason,
    Lane, Multipart, PeerId, PeerTransmit, ReplyToken, RequestId, Worker, WorkerConfig, WorkerEvent,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::codec::{Decoder, Encoder, FramedRead, FramedWrite};

// ---- framing ----

/// Multipart messages over a byte stream.
///
/// ```text
/// message = count:u32  frame{count}
/// frame   = length:u32 byte{length}          (all integers big-endian)
/// ```
///
/// A message of more than `max_frames` frames or `max_bytes` bytes (frame
/// contents added up) is an error on reading, which closes the connection,
/// and is refused on writing. Both are checked as soon as the count or length
/// is read, before any of the bytes it announces arrive, so a peer cannot make
/// the reader hold more than `max_bytes` plus the headers. Decoded frames are
/// [`Bytes`] slices of one buffer: no frame is copied.
#[derive(Debug, Clone, Copy)]
pub struct MultipartCodec {
    max_frames: usize,
    max_bytes: usize,
}

impl MultipartCodec {
    /// A codec with these limits. `max_bytes` is capped at `u32::MAX`.
    pub fn new(max_frames: usize, max_bytes: usize) -> Self {
        MultipartCodec { max_frames, max_bytes: max_bytes.min(u32::MAX as usize) }
    }

    /// Why `frames` cannot be sent with these limits, if it cannot.
    fn check(&self, frames: &Multipart) -> io::Result<()> {
        let bytes: usize = frames.iter().map(Bytes::len).sum();
        if frames.len() > self.max_frames {
            return Err(invalid(format!("{} frames, at most {} allowed", frames.len(), self.max_frames)));
        }
        if bytes > self.max_bytes {
            return Err(invalid(format!("{bytes} bytes, at most {} allowed", self.max_bytes)));
        }
        Ok(())
    }
}

impl Default for MultipartCodec {
    /// The broker's default message limits: 1,024 frames, 64 MiB.
    fn default() -> Self {
        let config = BrokerConfig::default();
        MultipartCodec::new(config.max_message_frames, config.max_message_bytes)
    }
}

impl Decoder for MultipartCodec {
    type Item = Multipart;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<Multipart>> {
        // Walk the headers that have arrived, checking each; take the message
        // out only once all of it is buffered.
        let Some(count) = u32_at(src, 0) else { return Ok(None) };
        let count = count as usize;
        if count > self.max_frames {
            return Err(invalid(format!("peer announced {count} frames, at most {} allowed", self.max_frames)));
        }
        let (mut end, mut total) = (4, 0usize);
        for _ in 0..count {
            let Some(len) = u32_at(src, end) else { return Ok(None) };
            total = total.saturating_add(len as usize);
            if total > self.max_bytes {
                return Err(invalid(format!("peer announced over {} bytes in one message", self.max_bytes)));
            }
            end += 4 + len as usize;
            if src.len() < end {
                return Ok(None);
            }
        }
        let mut message = src.split_to(end).freeze();
        message.advance(4);
        let mut frames = Vec::with_capacity(count);
        for _ in 0..count {
            let len = message.get_u32() as usize;
            frames.push(message.split_to(len));
        }
        Ok(Some(frames))
    }
}

impl Encoder<Multipart> for MultipartCodec {
    type Error = io::Error;

    fn encode(&mut self, frames: Multipart, dst: &mut BytesMut) -> io::Result<()> {
        self.check(&frames)?;
        // `check` bounds the count and every length by `max_bytes` ≤ u32::MAX.
        let bytes: usize = frames.iter().map(Bytes::len).sum();
        dst.reserve(4 + 4 * frames.len() + bytes);
        dst.put_u32(frames.len() as u32);
        for frame in &frames {
            dst.put_u32(frame.len() as u32);
            dst.extend_from_slice(frame);
        }
        Ok(())
    }
}

fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    let bytes: [u8; 4] = buf.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

// ---- connections ----

/// What the transport does on its own; none of it is MDP.
#[derive(Debug, Clone)]
pub struct TcpOptions {
    /// Wait between attempts to dial the broker. Default 100 ms (ZeroMQ's
    /// `RECONNECT_IVL`).
    pub redial: Duration,
    /// Most messages waiting to be written to one connection; more are
    /// dropped. Default 1,000 (ZeroMQ's send high-water mark).
    pub send_queue: usize,
    /// Framing limits.
    pub codec: MultipartCodec,
}

impl Default for TcpOptions {
    fn default() -> Self {
        TcpOptions { redial: Duration::from_millis(100), send_queue: 1000, codec: MultipartCodec::default() }
    }
}

/// Aborts a task when dropped: dropping a handle stops its loop, which drops
/// its connections, which closes their sockets.
struct AbortOnDrop(Option<JoinHandle<()>>);

impl AbortOnDrop {
    /// Aborts the task and waits until it is gone (its sockets closed).
    async fn abort_and_wait(mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

/// Why [`pump`] returned.
enum Ended {
    /// The peer closed the connection, or reading or writing failed.
    Connection,
    /// The side that owns the channels is gone.
    Owner,
}

/// Carries messages both ways on one connection until it ends. Reading and
/// writing run concurrently, so a peer that is slow to read never stops us
/// reading from it.
async fn pump<T>(
    stream: TcpStream,
    codec: MultipartCodec,
    outbound: &mut mpsc::Receiver<Multipart>,
    inbound: &mpsc::Sender<T>,
    wrap: impl Fn(Multipart) -> T,
) -> Ended {
    let _ = stream.set_nodelay(true);
    let (read_half, write_half) = stream.into_split();
    let mut reader = FramedRead::new(read_half, codec);
    let mut writer = FramedWrite::new(write_half, codec);
    let read = async {
        // A framing error (over the limits, or EOF mid-message) ends it too.
        while let Some(Ok(frames)) = reader.next().await {
            if inbound.send(wrap(frames)).await.is_err() {
                return Ended::Owner;
            }
        }
        Ended::Connection
    };
    let write = async {
        while let Some(frames) = outbound.recv().await {
            // Too large for the peer to accept: dropped, the connection kept.
            if codec.check(&frames).is_err() {
                continue;
            }
            if writer.send(frames).await.is_err() {
                return Ended::Connection;
            }
        }
        Ended::Owner
    };
    tokio::select! {
        ended = read => ended,
        ended = write => ended,
    }
}

/// A client's or worker's connection to the broker: at most one TCP
/// connection over its life, dialled until it connects. Replacing the `Link`
/// (for [`PeerTransmit::Reconnect`]) drops the old connection and its
/// channels, so nothing read from it can reach the core afterwards.
struct Link {
    outbound: mpsc::Sender<Multipart>,
    inbound: mpsc::Receiver<Multipart>,
    /// The end of the connection was reported to the core.
    lost: bool,
    _task: AbortOnDrop,
}

/// What a [`Link`] delivers.
enum Incoming {
    /// A message from the broker.
    Message(Multipart),
    /// The connection, which was up, ended (once per link).
    Lost,
}

impl Link {
    fn open(addr: SocketAddr, options: &TcpOptions) -> Link {
        let (outbound, out_rx) = mpsc::channel(options.send_queue);
        let (in_tx, inbound) = mpsc::channel(options.send_queue);
        let task = tokio::spawn(dial(addr, options.clone(), out_rx, in_tx));
        Link { outbound, inbound, lost: false, _task: AbortOnDrop(Some(task)) }
    }

    /// The next message, or the news that the connection ended; after
    /// that, nothing (until the core replaces the link).
    async fn recv(&mut self) -> Incoming {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// [`recv`](Self::recv) as a poll, so that a client can wait on all of
    /// its lanes' links at once.
    fn poll_recv(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Incoming> {
        if self.lost {
            return std::task::Poll::Pending;
        }
        self.inbound.poll_recv(cx).map(|got| match got {
            Some(frames) => Incoming::Message(frames),
            // The dial task ended: only a connection that was up ends.
            None => {
                self.lost = true;
                Incoming::Lost
            }
        })
    }

    /// Queues a message; drops it if the queue is full or the connection is
    /// gone. The core's timers recover from a lost message.
    fn send(&self, frames: Multipart) {
        let _ = self.outbound.try_send(frames);
    }

    /// Carries out one of a client's or worker's transmits: a message to
    /// send, or a new connection (which forgets the old one's messages).
    fn transmit(&mut self, t: PeerTransmit, addr: SocketAddr, options: &TcpOptions) {
        match t {
            PeerTransmit::Send(frames) => self.send(frames),
            PeerTransmit::Reconnect => *self = Link::open(addr, options),
        }
    }
}

async fn dial(
    addr: SocketAddr,
    options: TcpOptions,
    mut outbound: mpsc::Receiver<Multipart>,
    inbound: mpsc::Sender<Multipart>,
) {
    let stream = loop {
        match TcpStream::connect(addr).await {
            Ok(stream) => break stream,
            Err(_) => tokio::time::sleep(options.redial).await,
        }
    };
    pump(stream, options.codec, &mut outbound, &inbound, |frames| frames).await;
    // The connection is gone; sends to it are dropped until the core
    // replaces the link.
}

/// Sleeps until `deadline`, or forever if there is none.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

// ---- broker ----

/// A running broker. Dropping it stops the broker and closes every
/// connection, like killing a broker process.
pub struct BrokerHandle {
    addr: SocketAddr,
    /// Every [`BrokerEvent`], from the first on. A receiver that falls more
    /// than 4,096 events behind loses the oldest
    /// ([`broadcast::error::RecvError::Lagged`]).
    pub events: broadcast::Receiver<BrokerEvent>,
    task: AbortOnDrop,
}

impl BrokerHandle {
    /// The address the broker listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the broker and waits until its listener and connections are
    /// closed, so a new broker can bind the same address at once.
    pub async fn kill(self) {
        self.task.abort_and_wait().await;
    }
}

/// Binds `addr` (port 0: any free port) and runs a [`Broker`] there on a
/// new task.
pub async fn spawn_broker(addr: SocketAddr, config: BrokerConfig, options: TcpOptions) -> io::Result<BrokerHandle> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (events_tx, events) = broadcast::channel(4096);
    let broker = Broker::new(config, Instant::now()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let task = tokio::spawn(run_broker(broker, listener, options, events_tx));
    Ok(BrokerHandle { addr, events, task: AbortOnDrop(Some(task)) })
}

/// From a connection's task to the broker loop.
enum Inbound {
    Message(PeerId, Multipart),
    Closed(PeerId),
}

async fn run_broker(
    mut broker: Broker,
    listener: TcpListener,
    options: TcpOptions,
    events: broadcast::Sender<BrokerEvent>,
) {
    let (in_tx, mut inbound) = mpsc::channel(options.send_queue);
    // The write queue of each open connection, by the identity given it.
    let mut peers: HashMap<PeerId, mpsc::Sender<Multipart>> = HashMap::new();
    // Dropped with this task: aborting the broker closes every connection.
    let mut connections = JoinSet::new();
    let mut accepted: u64 = 0;
    loop {
        drain_broker(&mut broker, &peers, &events);
        tokio::select! {
            conn = listener.accept() => {
                // An accept error (out of file descriptors, a connection
                // reset before it was accepted) loses only that connection.
                let Ok((stream, _)) = conn else { continue };
                accepted += 1;
                let peer = PeerId(Bytes::copy_from_slice(&accepted.to_be_bytes()));
                let (out_tx, out_rx) = mpsc::channel(options.send_queue);
                peers.insert(peer.clone(), out_tx);
                connections.spawn(serve_peer(stream, peer, options.codec, out_rx, in_tx.clone()));
            }
            Some(message) = inbound.recv() => match message {
                Inbound::Message(peer, frames) => broker.handle_message(Instant::now(), peer, frames),
                Inbound::Closed(peer) => {
                    peers.remove(&peer);
                    // Re-queues a worker's request at once; nothing for a client.
                    broker.handle_unreachable(Instant::now(), &peer);
                }
            },
            () = sleep_until(broker.poll_timeout()) => broker.handle_timeout(Instant::now()),
            // Reap finished connection tasks so the set does not grow.
            Some(_) = connections.join_next() => {}
        }
    }
}

/// The drain rule: every transmit, then every event.
fn drain_broker(
    broker: &mut Broker,
    peers: &HashMap<PeerId, mpsc::Sender<Multipart>>,
    events: &broadcast::Sender<BrokerEvent>,
) {
    while let Some(t) = broker.poll_transmit() {
        // Closed or unknown: the connection is gone. Full: the peer reads too
        // slowly, and the message is dropped, as at ZeroMQ's high-water mark.
        // Either way it is lost, and a worker must not be left holding a
        // request it never got (its heartbeats would keep it alive, busy,
        // for ever): the core forgets it and re-queues the request. A live
        // worker then gets DISCONNECT on its next HEARTBEAT and registers
        // again; for a client there is nothing to do (it retries).
        let delivered = peers.get(&t.to).is_some_and(|queue| queue.try_send(t.frames).is_ok());
        if !delivered {
            broker.handle_unreachable(Instant::now(), &t.to);
        }
    }
    while let Some(event) = broker.poll_event() {
        // No receiver is fine: then nobody is watching.
        let _ = events.send(event);
    }
}

async fn serve_peer(
    stream: TcpStream,
    peer: PeerId,
    codec: MultipartCodec,
    mut outbound: mpsc::Receiver<Multipart>,
    inbound: mpsc::Sender<Inbound>,
) {
    let from = peer.clone();
    let ended = pump(stream, codec, &mut outbound, &inbound, |frames| Inbound::Message(from.clone(), frames)).await;
    if let Ended::Connection = ended {
        let _ = inbound.send(Inbound::Closed(peer)).await;
    }
}

// ---- client ----

/// Why a request got no answer.
#[derive(Debug)]
pub enum RequestError {
    /// The core refused the request (empty service or body, too many
    /// outstanding, ...).
    Usage(ClientUsageError),
    /// The core gave the request up after its tries.
    Failed(FailReason),
    /// The client's task is gone.
    Stopped,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::Usage(e) => write!(f, "request refused: {e}"),
            RequestError::Failed(e) => write!(f, "request failed: {e}"),
            RequestError::Stopped => f.write_str("the client has stopped"),
        }
    }
}

impl std::error::Error for RequestError {}

type Answer = oneshot::Sender<Result<Multipart, RequestError>>;

struct ClientRequest {
    service: Bytes,
    body: Multipart,
    answer: Answer,
}

/// A running client. Clones share one [`Client`] and its connections (one
/// per lane, [`ClientConfig::lanes`]); the client stops when the last clone
/// is dropped.
#[derive(Clone)]
pub struct ClientHandle {
    requests: mpsc::Sender<ClientRequest>,
    _task: Arc<AbortOnDrop>,
}

impl ClientHandle {
    /// Sends a request and waits for its whole answer: the frames of every
    /// PARTIAL, then those of the FINAL, joined in order. Any number may be
    /// outstanding at once (up to the core's `max_outstanding`).
    pub async fn request(&self, service: Bytes, body: Multipart) -> Result<Multipart, RequestError> {
        let (answer, reply) = oneshot::channel();
        self.requests.send(ClientRequest { service, body, answer }).await.map_err(|_| RequestError::Stopped)?;
        reply.await.map_err(|_| RequestError::Stopped)?
    }
}

/// Starts a [`Client`] of the broker at `addr` on a new task.
pub fn spawn_client(addr: SocketAddr, config: ClientConfig, options: TcpOptions) -> Result<ClientHandle, ConfigError> {
    let core = Client::new(config, Instant::now())?;
    let (requests, rx) = mpsc::channel(64);
    let task = tokio::spawn(run_client(core, addr, options, rx));
    Ok(ClientHandle { requests, _task: Arc::new(AbortOnDrop(Some(task))) })
}

async fn run_client(
    mut core: Client,
    addr: SocketAddr,
    options: TcpOptions,
    mut requests: mpsc::Receiver<ClientRequest>,
) {
    // One link (connection) per lane, each with its own identity at the broker.
    let mut links: Vec<Link> = (0..core.config().lanes).map(|_| Link::open(addr, &options)).collect();
    // Each outstanding request's caller, with the parts received so far.
    let mut waiting: HashMap<RequestId, (Multipart, Answer)> = HashMap::new();
    // The lane polled first next time, so that no lane starves the others.
    let mut first = 0;
    loop {
        // The drain rule: every transmit, then every event.
        while let Some(t) = core.poll_transmit() {
            if let Some(link) = links.get_mut(t.lane.0) {
                link.transmit(t.transmit, addr, &options);
            }
        }
        while let Some(event) = core.poll_event() {
            match event {
                ClientEvent::Partial { id, body } => {
                    if let Some((parts, _)) = waiting.get_mut(&id) {
                        parts.extend(body);
                    }
                }
                ClientEvent::Restarted { id } => {
                    if let Some((parts, _)) = waiting.get_mut(&id) {
                        parts.clear();
                    }
                }
                ClientEvent::Reply { id, body } => {
                    if let Some((mut parts, answer)) = waiting.remove(&id) {
                        parts.extend(body);
                        let _ = answer.send(Ok(parts));
                    }
                }
                ClientEvent::Failed { id, reason } => {
                    if let Some((_, answer)) = waiting.remove(&id) {
                        let _ = answer.send(Err(RequestError::Failed(reason)));
                    }
                }
                // Discarded messages, and whatever later versions add.
                _ => {}
            }
        }
        tokio::select! {
            request = requests.recv() => {
                let Some(r) = request else { return };
                match core.request(Instant::now(), r.service, r.body) {
                    Ok(id) => {
                        waiting.insert(id, (Vec::new(), r.answer));
                    }
                    Err(e) => {
                        let _ = r.answer.send(Err(RequestError::Usage(e)));
                    }
                }
            }
            (lane, incoming) = recv_any(&mut links, &mut first) => match incoming {
                Incoming::Message(frames) => core.handle_message(Instant::now(), lane, frames),
                // Resend what was on that lane at once rather than at the
                // requests' timeouts.
                Incoming::Lost => core.handle_connection_lost(Instant::now(), lane),
            },
            () = sleep_until(core.poll_timeout()) => core.handle_timeout(Instant::now()),
        }
    }
}

/// The next thing any lane's link delivers, and its lane. The lanes are
/// polled in turn from `first`, which moves on after each delivery.
async fn recv_any(links: &mut [Link], first: &mut usize) -> (Lane, Incoming) {
    std::future::poll_fn(|cx| {
        let n = links.len();
        for k in 0..n {
            let lane = (*first + k) % n;
            if let std::task::Poll::Ready(incoming) = links[lane].poll_recv(cx) {
                *first = (lane + 1) % n;
                return std::task::Poll::Ready((Lane(lane), incoming));
            }
        }
        std::task::Poll::Pending
    })
    .await
}

// ---- worker ----

/// A request handed to the application. Answer it with [`reply`](Job::reply),
/// optionally after [`partial`](Job::partial)s. The worker loop keeps
/// heartbeating however long that takes.
pub struct Job {
    /// The request's frames.
    pub body: Multipart,
    seq: u64,
    answers: mpsc::Sender<JobAnswer>,
}

struct JobAnswer {
    seq: u64,
    body: Multipart,
    last: bool,
}

impl Job {
    /// Streams one part of the answer (PARTIAL; dropped in MDP/0.1).
    pub async fn partial(&self, body: Multipart) {
        let _ = self.answers.send(JobAnswer { seq: self.seq, body, last: false }).await;
    }

    /// Sends the last part of the answer (FINAL, or REPLY in MDP/0.1). An
    /// answer to a request the worker dropped when it reconnected is ignored.
    pub async fn reply(self, body: Multipart) {
        let _ = self.answers.send(JobAnswer { seq: self.seq, body, last: true }).await;
    }
}

/// A running worker. Dropping it stops the worker and closes its connection,
/// like killing a worker process.
pub struct WorkerHandle {
    jobs: mpsc::UnboundedReceiver<Job>,
    _task: AbortOnDrop,
}

impl WorkerHandle {
    /// The next request to answer.
    pub async fn next_job(&mut self) -> Option<Job> {
        self.jobs.recv().await
    }
}

/// Starts a [`Worker`] for the broker at `addr` on a new task.
pub fn spawn_worker(addr: SocketAddr, config: WorkerConfig, options: TcpOptions) -> Result<WorkerHandle, ConfigError> {
    let core = Worker::new(config, Instant::now())?;
    // Unbounded, yet small: the core hands over one request at a time, and
    // only a reconnect can leave an unread, dropped one behind.
    let (jobs_tx, jobs) = mpsc::unbounded_channel();
    let task = tokio::spawn(run_worker(core, addr, options, jobs_tx));
    Ok(WorkerHandle { jobs, _task: AbortOnDrop(Some(task)) })
}

async fn run_worker(mut core: Worker, addr: SocketAddr, options: TcpOptions, jobs: mpsc::UnboundedSender<Job>) {
    let mut link = Link::open(addr, &options);
    let (answers_tx, mut answers) = mpsc::channel(16);
    // The request at the application: its job number and the core's token.
    let mut current: Option<(u64, ReplyToken)> = None;
    let mut next_seq = 0;
    loop {
        // The drain rule: every transmit, then every event.
        while let Some(t) = core.poll_transmit() {
            link.transmit(t, addr, &options);
        }
        while let Some(event) = core.poll_event() {
            match event {
                WorkerEvent::Request { token, body } => {
                    let seq = next_seq;
                    next_seq += 1;
                    current = Some((seq, token));
                    let _ = jobs.send(Job { body, seq, answers: answers_tx.clone() });
                }
                WorkerEvent::Disconnected { .. } => current = None,
                // Discarded messages, and whatever later versions add.
                _ => {}
            }
        }
        tokio::select! {
            incoming = link.recv() => match incoming {
                Incoming::Message(frames) => core.handle_message(Instant::now(), frames),
                // Register again after the backoff rather than after the
                // broker's silence.
                Incoming::Lost => core.handle_connection_lost(Instant::now()),
            },
            Some(answer) = answers.recv() => {
                let Some((seq, token)) = &current else { continue };
                if *seq != answer.seq {
                    continue; // an answer to a request dropped by a reconnect
                }
                let now = Instant::now();
                // An error means the core refused the part (e.g. PARTIAL in
                // MDP/0.1): it is dropped, the request stays in progress.
                let _ = if answer.last {
                    core.reply(now, token, answer.body)
                } else {
                    core.partial(now, token, answer.body)
                };
                if answer.last {
                    current = None;
                }
            }
            () = sleep_until(core.poll_timeout()) => core.handle_timeout(Instant::now()),
        }
    }
}
