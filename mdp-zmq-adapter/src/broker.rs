//! The broker runner: one ROUTER socket, one [`Broker`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mdp_core::{Broker, BrokerConfig, BrokerEvent, PeerId, Transmit};

use crate::AdapterError;

/// Longest wait in one poll, so that a stop request is seen promptly even
/// when no timer is due.
const MAX_POLL: Duration = Duration::from_millis(100);
/// Messages read per wake-up before timers get a turn, so a flood of input
/// cannot starve heartbeats.
const READ_BATCH: usize = 1024;

/// Drives a [`Broker`] over a ROUTER socket.
pub struct BrokerRunner {
    _ctx: zmq::Context,
    socket: zmq::Socket,
    broker: Broker,
    endpoints: Vec<String>,
}

impl BrokerRunner {
    /// Binds a ROUTER socket to every endpoint (`tcp://127.0.0.1:5555`,
    /// `ipc://…`, `tcp://127.0.0.1:*` for any free port).
    ///
    /// Unless `config` sets [`BrokerConfig::hash_seed`], the broker's hash
    /// of peer identities is seeded from the operating system's randomness,
    /// so that peers cannot plan collisions.
    ///
    /// # Oversized input is refused before it is read
    ///
    /// The ROUTER's `ZMQ_MAXMSGSIZE` is set to
    /// [`BrokerConfig::max_message_bytes`]. libzmq applies it to each
    /// *frame* (what libzmq calls a message part), not to a multipart
    /// message as a whole: its decoder compares a frame's announced length
    /// with the limit as soon as the frame's header arrives, before it
    /// allocates or reads the body. A frame larger than
    /// `max_message_bytes` could never be part of an acceptable message, so
    /// nothing acceptable is refused.
    ///
    /// libzmq takes such a frame as a protocol error of the connection: it
    /// closes the connection at once and discards the frames of that message
    /// received so far. Nothing reaches the core, so no
    /// [`BrokerEvent`] says so. The peer sees its TCP connection end. A
    /// DEALER (every MDP client and worker) redials after its
    /// `ZMQ_RECONNECT_IVL` (100 ms by default): the oversized message is
    /// lost, messages it had queued behind it go out on the new connection,
    /// and the broker sees a new peer (a new routing id). So a worker must
    /// register again (`mdp_zmq_adapter::Worker` notices the lost
    /// connection and does after its reconnect backoff; another gets
    /// DISCONNECT for its next HEARTBEAT), and replies to a client's earlier
    /// requests find no one.
    ///
    /// What `ZMQ_MAXMSGSIZE` does not cover: a message of many frames, each
    /// within the limit, is still read whole (libzmq holds a multipart
    /// message until its last frame arrives, and has no limit on the number
    /// of frames); the core applies [`BrokerConfig::max_message_frames`]
    /// and `max_message_bytes` to it once it is read.
    pub fn bind(mut config: BrokerConfig, endpoints: &[String]) -> Result<Self, AdapterError> {
        config.hash_seed = config.hash_seed.or_else(|| Some(random_seed()));
        // A configuration that cannot work is refused before any socket.
        let broker = Broker::new(config, Instant::now())?;
        let config = broker.config();
        let ctx = zmq::Context::new();
        let socket = ctx.socket(zmq::ROUTER).map_err(AdapterError::zmq("socket(ROUTER)"))?;
        let max_frame = i64::try_from(config.max_message_bytes).unwrap_or(i64::MAX);
        socket.set_maxmsgsize(max_frame).map_err(AdapterError::zmq("set MAXMSGSIZE"))?;
        // Unroutable messages fail with EHOSTUNREACH instead of vanishing,
        // so a gone worker is noticed at once.
        socket.set_router_mandatory(true).map_err(AdapterError::zmq("set ROUTER_MANDATORY"))?;
        socket.set_linger(0).map_err(AdapterError::zmq("set LINGER"))?;
        let mut bound = Vec::new();
        for endpoint in endpoints {
            socket.bind(endpoint).map_err(AdapterError::zmq(format!("bind {endpoint}")))?;
            let last = socket.get_last_endpoint().map_err(AdapterError::zmq("get LAST_ENDPOINT"))?;
            bound.push(last.unwrap_or_else(|_| endpoint.clone()));
        }
        Ok(BrokerRunner { _ctx: ctx, socket, broker, endpoints: bound })
    }

    /// The endpoints bound, with any wildcard port resolved.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The broker state machine, for its statistics.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// Runs until `stop` is set, then sends DISCONNECT to every worker and
    /// returns. Every [`BrokerEvent`] is passed to `on_event`.
    pub fn run(&mut self, stop: &AtomicBool, mut on_event: impl FnMut(&BrokerEvent)) -> Result<(), AdapterError> {
        while !stop.load(Ordering::Relaxed) {
            self.wait()?;
            let mut read = 0;
            while read < READ_BATCH {
                let Some((from, frames)) = self.recv()? else { break };
                self.broker.handle_message(Instant::now(), from, frames);
                self.drain(&mut on_event)?;
                read += 1;
            }
            self.broker.handle_timeout(Instant::now());
            self.drain(&mut on_event)?;
        }
        self.broker.shutdown(Instant::now());
        self.drain(&mut on_event)
    }

    /// Waits for input or the broker's next deadline.
    fn wait(&self) -> Result<(), AdapterError> {
        let now = Instant::now();
        let until = self.broker.poll_timeout().map_or(MAX_POLL, |t| t.saturating_duration_since(now));
        let ms = until.min(MAX_POLL).as_millis() as i64;
        let mut items = [self.socket.as_poll_item(zmq::POLLIN)];
        match zmq::poll(&mut items, ms) {
            Ok(_) | Err(zmq::Error::EINTR) => Ok(()),
            Err(e) => Err(AdapterError::zmq("poll")(e)),
        }
    }

    /// One message without blocking: the identity, then the MDP frames.
    /// libzmq delivers a multipart message whole or not at all, so once its
    /// first frame is read the rest are there.
    fn recv(&self) -> Result<Option<(PeerId, Vec<Bytes>)>, AdapterError> {
        let mut frames = Vec::new();
        loop {
            let msg = match self.socket.recv_msg(zmq::DONTWAIT) {
                Ok(msg) => msg,
                Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) if frames.is_empty() => return Ok(None),
                // A signal between two frames: the rest is still there.
                Err(zmq::Error::EINTR) => continue,
                Err(e) => return Err(AdapterError::zmq("recv")(e)),
            };
            let more = msg.get_more();
            frames.push(frame(msg));
            if !more {
                break;
            }
        }
        let mut frames = frames.into_iter();
        let Some(identity) = frames.next() else { return Ok(None) };
        Ok(Some((PeerId(identity), frames.collect())))
    }

    fn drain(&mut self, on_event: &mut impl FnMut(&BrokerEvent)) -> Result<(), AdapterError> {
        loop {
            while let Some(t) = self.broker.poll_transmit() {
                self.send(t)?;
            }
            let Some(event) = self.broker.poll_event() else { return Ok(()) };
            log_event(&event);
            on_event(&event);
        }
    }

    /// Sends without blocking. A peer that is gone or whose pipe is full is
    /// reported, not waited for.
    fn send(&mut self, t: Transmit) -> Result<(), AdapterError> {
        match send_routed(&self.socket, &t) {
            Ok(()) => Ok(()),
            // Either way the message is lost. For a worker that would leave
            // it holding a request it never got, while its heartbeats keep
            // it alive: so the core forgets it and re-queues the request. A
            // live worker then gets DISCONNECT on its next HEARTBEAT and
            // registers again. A client simply retries.
            Err(zmq::Error::EHOSTUNREACH) => {
                tracing::debug!(peer = %t.to, "peer unreachable; message dropped");
                self.broker.handle_unreachable(Instant::now(), &t.to);
                Ok(())
            }
            Err(zmq::Error::EAGAIN) => {
                tracing::warn!(peer = %t.to, "peer's pipe is full; message dropped");
                self.broker.handle_unreachable(Instant::now(), &t.to);
                Ok(())
            }
            Err(e) => Err(AdapterError::zmq(format!("send to {}", t.to))(e)),
        }
    }
}

/// Frames at least this long are handed to the core without a copy. libzmq's
/// decoder reads frames shorter than its 8 KiB input batch into one shared
/// buffer, and keeping such a frame would keep the whole buffer; a frame of
/// at least 8 KiB never fits there and has an allocation of its own.
const ZERO_COPY_MIN: usize = 8192;

/// A libzmq message as the buffer of a [`Bytes`].
struct Frame(zmq::Message);

impl AsRef<[u8]> for Frame {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// One received frame as `Bytes`: a large one as it is (so a flood of large
/// requests costs the broker's thread no copy, and it keeps ahead of
/// libzmq's reading), a small one copied into a buffer of its own size.
fn frame(msg: zmq::Message) -> Bytes {
    if msg.len() >= ZERO_COPY_MIN {
        Bytes::from_owner(Frame(msg))
    } else {
        Bytes::copy_from_slice(&msg)
    }
}

/// A seed from the OS's randomness (std's `RandomState` keys are drawn from
/// it once per process, then varied per instance).
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish()
}

/// Identity frame, then the message. Only the first frame can fail for
/// routing reasons; once it is accepted the rest of the message follows.
fn send_routed(socket: &zmq::Socket, t: &Transmit) -> Result<(), zmq::Error> {
    let more = if t.frames.is_empty() { 0 } else { zmq::SNDMORE };
    socket.send(t.to.0.as_ref(), zmq::DONTWAIT | more)?;
    let last = t.frames.len().saturating_sub(1);
    for (i, frame) in t.frames.iter().enumerate() {
        let flags = if i == last { 0 } else { zmq::SNDMORE };
        socket.send(frame.as_ref(), flags)?;
    }
    Ok(())
}

fn log_event(event: &BrokerEvent) {
    match event {
        BrokerEvent::WorkerReady { worker, service, dialect } => {
            tracing::info!(%worker, service = %String::from_utf8_lossy(service), %dialect, "worker ready");
        }
        BrokerEvent::WorkerGone { worker, service, reason } => {
            tracing::info!(%worker, service = %String::from_utf8_lossy(service), ?reason, "worker gone");
        }
        BrokerEvent::PeerMisbehaved { peer, sent, reason } => {
            let sent = sent.map_or_else(|| "a message that is not MDP".to_owned(), |c| c.to_string());
            tracing::warn!(%peer, sent, %reason, "peer misbehaved");
        }
        BrokerEvent::LimitHit { peer, limit } => tracing::warn!(%peer, ?limit, "limit hit; message dropped"),
        BrokerEvent::RequestDropped { client, service, reason } => {
            tracing::warn!(%client, service = %String::from_utf8_lossy(service), ?reason, "request dropped");
        }
        BrokerEvent::RequestExpired { client, service } => {
            tracing::info!(%client, service = %String::from_utf8_lossy(service), "request expired");
        }
        other => tracing::debug!(?other),
    }
}
