//! The broker runner: one ROUTER socket, one [`Broker`].

use std::iter;
use std::time::Instant;

use bytes::Bytes;
use mdp_core::{Broker, BrokerConfig, BrokerEvent, Multipart, PeerId, Transmit};

use crate::curve::{CurveServer, Zap};
use crate::message::{recv_message_from, send_message, Sent};
use crate::once::Once;
use crate::poll::{poll, poll_ms};
use crate::ratelimit::{LogKind, LogLimit};
use crate::{AdapterError, StopHandle};

/// Messages read per wake-up before timers get a turn, so a flood of input
/// cannot starve heartbeats.
const READ_BATCH: usize = 1024;

/// Drives a [`Broker`] over a ROUTER socket.
pub struct BrokerRunner {
    _ctx: zmq::Context,
    socket: zmq::Socket,
    broker: Broker,
    endpoints: Vec<String>,
    stop: StopHandle,
    /// With CURVE and an allow list: the handler that names peers, whose
    /// names go to the core with each message.
    zap: Option<Zap>,
    /// Peers refused by the policy so far, to log each once.
    refused: Once<PeerId>,
    /// The log's budget per kind of line (see `ratelimit`).
    log_limit: LogLimit,
    /// With [`serve_metrics`](Self::serve_metrics): the loop's end of the
    /// hand-over of snapshots to the HTTP thread.
    #[cfg(feature = "metrics")]
    metrics: Option<crate::metrics::MetricsTap>,
}

impl BrokerRunner {
    /// Binds a ROUTER socket to every endpoint (`tcp://127.0.0.1:5555`,
    /// `ipc://…`, `tcp://127.0.0.1:*` for any free port).
    ///
    /// A configuration that cannot work is refused before any socket is
    /// made, with [`AdapterError::Config`] carrying the core's
    /// [`mdp_core::ConfigError`].
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
    pub fn bind(endpoints: &[impl AsRef<str>], config: BrokerConfig) -> Result<Self, AdapterError> {
        Self::bind_with(endpoints, config, None)
    }

    /// [`bind`](Self::bind), with every endpoint a CURVE server: traffic is
    /// encrypted, and peers that do not speak CURVE to this broker's key are
    /// refused. With [`CurveServer::allowed`], only those keys get in, and
    /// each message goes to the core with its peer's name, for
    /// [`BrokerConfig::policy`] to judge.
    ///
    /// Fails with [`AdapterError::Key`] if libzmq has no CURVE.
    pub fn bind_curve(
        endpoints: &[impl AsRef<str>],
        config: BrokerConfig,
        curve: CurveServer,
    ) -> Result<Self, AdapterError> {
        Self::bind_with(endpoints, config, Some(curve))
    }

    fn bind_with(
        endpoints: &[impl AsRef<str>],
        mut config: BrokerConfig,
        curve: Option<CurveServer>,
    ) -> Result<Self, AdapterError> {
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
        let mut zap = None;
        if let Some(curve) = curve {
            curve.apply(&socket)?;
            // The handler must be there before the first peer connects.
            zap = curve.allowed.map(|allowed| Zap::bind(&ctx, allowed)).transpose()?;
        }
        let mut bound = Vec::new();
        for endpoint in endpoints.iter().map(AsRef::as_ref) {
            socket.bind(endpoint).map_err(AdapterError::zmq(format!("bind {endpoint}")))?;
            let last = socket.get_last_endpoint().map_err(AdapterError::zmq("get LAST_ENDPOINT"))?;
            bound.push(last.unwrap_or_else(|_| endpoint.to_owned()));
        }
        let (endpoints, stop, refused) = (bound, StopHandle::new(), Once::default());
        Ok(BrokerRunner {
            _ctx: ctx,
            socket,
            broker,
            endpoints,
            stop,
            zap,
            refused,
            log_limit: LogLimit::default(),
            #[cfg(feature = "metrics")]
            metrics: None,
        })
    }

    /// The endpoints bound, with any wildcard port resolved.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The broker state machine, for its statistics.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// Serves the broker's figures in the Prometheus text format at
    /// `GET /metrics` on `addr` (`127.0.0.1:9464`; port 0 for any free
    /// one), from a thread of its own, while [`run`](Self::run) runs. The
    /// loop hands that thread a snapshot when a scrape waits, and does
    /// nothing more: see the [`metrics`](crate::metrics) module for how,
    /// and for the metrics. Call it before `run`; a second call replaces
    /// the first listener's hand-over (that listener then answers 503).
    ///
    /// The returned server has the address bound; dropping it stops the
    /// listener.
    #[cfg(feature = "metrics")]
    pub fn serve_metrics(
        &mut self,
        addr: impl std::net::ToSocketAddrs,
    ) -> std::io::Result<crate::metrics::MetricsServer> {
        let (server, tap) = crate::metrics::MetricsServer::bind(addr)?;
        self.metrics = Some(tap);
        Ok(server)
    }

    /// A handle that makes [`run`](Self::run) return; take it before `run`
    /// (which borrows the runner) and keep it on another thread.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Runs until [`StopHandle::stop`] is called on a handle from
    /// [`stop_handle`](Self::stop_handle), then sends DISCONNECT to every
    /// worker and returns. Every [`BrokerEvent`] is passed to `on_event`.
    ///
    /// Workers joining and leaving, misbehaving peers, limit hits, dropped
    /// and expired requests and policy refusals are logged with `tracing`
    /// (workers and expiries at `info`, the rest at `warn`), as are CURVE
    /// keys the allow list refuses (once per key), at most 10
    /// lines of each kind a second: past that they are counted, and one
    /// line when the second is over says how many of that kind were left
    /// out (`kind`, `suppressed`).
    pub fn run(&mut self, mut on_event: impl FnMut(&BrokerEvent)) -> Result<(), AdapterError> {
        while !self.stop.is_stopped() {
            self.wait()?;
            let mut read = 0;
            if let Some(zap) = &mut self.zap {
                zap.serve(&mut self.log_limit)?;
            }
            while read < READ_BATCH {
                let Some((from, name, frames)) = self.recv()? else { break };
                match name {
                    Some(name) => self.broker.handle_authenticated(Instant::now(), from, name, frames),
                    None => self.broker.handle_message(Instant::now(), from, frames),
                }
                self.drain(&mut on_event)?;
                read += 1;
            }
            let now = Instant::now();
            self.broker.handle_timeout(now);
            self.drain(&mut on_event)?;
            self.log_limit.roll(now);
            #[cfg(feature = "metrics")]
            if let Some(tap) = &mut self.metrics {
                tap.serve(&self.broker);
            }
        }
        self.broker.shutdown(Instant::now());
        let drained = self.drain(&mut on_event);
        self.log_limit.flush();
        drained
    }

    /// Waits for input or the broker's next deadline.
    fn wait(&self) -> Result<(), AdapterError> {
        let ms = poll_ms(self.broker.poll_timeout(), Instant::now());
        let item = self.socket.as_poll_item(zmq::POLLIN);
        match &self.zap {
            Some(zap) => poll(&mut [item, zap.poll_item()], ms),
            None => poll(&mut [item], ms),
        }
    }

    /// One message without blocking: the identity, the peer's name (with a
    /// ZAP handler), then the MDP frames.
    fn recv(&self) -> Result<Option<(PeerId, Option<Bytes>, Multipart)>, AdapterError> {
        let named = self.zap.is_some();
        let Some((frames, name)) = recv_message_from(&self.socket, named).map_err(AdapterError::zmq("recv"))? else {
            return Ok(None);
        };
        let mut frames = frames.into_iter();
        let Some(identity) = frames.next() else { return Ok(None) };
        Ok(Some((PeerId(identity), name, frames.collect())))
    }

    fn drain(&mut self, on_event: &mut impl FnMut(&BrokerEvent)) -> Result<(), AdapterError> {
        loop {
            while let Some(t) = self.broker.poll_transmit() {
                self.send(t)?;
            }
            let Some(event) = self.broker.poll_event() else { return Ok(()) };
            match &event {
                BrokerEvent::AccessDenied { peer, name, access, service } => {
                    if self.refused.first(peer.clone()) && self.log_limit.allow(LogKind::AccessDenied, Instant::now()) {
                        let name = name.as_ref().map(|n| String::from_utf8_lossy(n).into_owned());
                        let service = String::from_utf8_lossy(service);
                        tracing::warn!(%peer, ?name, %access, %service, "refused by the policy (logged once per peer)");
                    }
                }
                other => log_event(&mut self.log_limit, other),
            }
            on_event(&event);
        }
    }

    /// Sends without blocking. A peer that is gone or whose pipe is full is
    /// reported, not waited for.
    fn send(&mut self, t: Transmit) -> Result<(), AdapterError> {
        // The identity frame first: the ROUTER routes by it and keeps it
        // off the wire.
        let frames = iter::once(t.to.0.as_ref()).chain(t.frames.iter().map(|f| f.as_ref()));
        match send_message(&self.socket, frames) {
            Ok(Sent::All) => Ok(()),
            // Either way the message is lost. For a worker that would leave
            // it holding a request it never got, while its heartbeats keep
            // it alive: so the core forgets it and re-queues the request. A
            // live worker then gets DISCONNECT on its next HEARTBEAT and
            // registers again. A client simply retries.
            Ok(Sent::Refused(zmq::Error::EHOSTUNREACH)) => {
                tracing::debug!(peer = %t.to, "peer unreachable; message dropped");
                self.broker.handle_unreachable(Instant::now(), &t.to);
                Ok(())
            }
            Ok(Sent::Refused(zmq::Error::EAGAIN)) => {
                if self.log_limit.allow(LogKind::PipeFull, Instant::now()) {
                    tracing::warn!(peer = %t.to, "peer's pipe is full; message dropped");
                }
                self.broker.handle_unreachable(Instant::now(), &t.to);
                Ok(())
            }
            Ok(Sent::Refused(e)) | Err(e) => Err(AdapterError::zmq(format!("send to {}", t.to))(e)),
        }
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

/// Logs the events an operator wants to see, each kind within its budget.
fn log_event(limit: &mut LogLimit, event: &BrokerEvent) {
    let kind = match event {
        BrokerEvent::WorkerReady { .. } => LogKind::WorkerReady,
        BrokerEvent::WorkerGone { .. } => LogKind::WorkerGone,
        BrokerEvent::PeerMisbehaved { .. } => LogKind::Misbehaviour,
        BrokerEvent::LimitHit { .. } => LogKind::LimitHit,
        BrokerEvent::RequestDropped { .. } => LogKind::RequestDropped,
        BrokerEvent::RequestExpired { .. } => LogKind::RequestExpired,
        other => {
            tracing::debug!(?other);
            return;
        }
    };
    if !limit.allow(kind, Instant::now()) {
        return;
    }
    match event {
        BrokerEvent::WorkerReady { worker, service, dialect } => {
            tracing::info!(%worker, service = %String::from_utf8_lossy(service), %dialect, "worker ready");
        }
        BrokerEvent::WorkerGone { worker, service, reason } => {
            tracing::info!(%worker, service = %String::from_utf8_lossy(service), ?reason, "worker gone");
        }
        BrokerEvent::PeerMisbehaved { peer, sent, reason } => {
            let sent = sent.map_or_else(|| "a message that is not MDP".to_owned(), |c| c.to_string());
            tracing::warn!(%peer, kind = reason.kind(), sent, %reason, "peer misbehaved");
        }
        BrokerEvent::LimitHit { peer, limit } => {
            tracing::warn!(%peer, limit = limit.name(), "limit hit; message dropped");
        }
        BrokerEvent::RequestDropped { client, service, reason } => {
            let service = String::from_utf8_lossy(service);
            tracing::warn!(%client, %service, reason = reason.name(), "request dropped");
        }
        BrokerEvent::RequestExpired { client, service } => {
            tracing::info!(%client, service = %String::from_utf8_lossy(service), "request expired");
        }
        _ => {}
    }
}
