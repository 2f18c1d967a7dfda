//! A blocking MDP client over DEALER sockets, one per lane, to one broker or
//! several.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mdp_core::{ClientConfig, ClientEvent, ClientUsageError, FailReason, RequestId};
use mdp_core::{Lane, Multipart, PeerTransmit};

use crate::curve::CurveClient;
use crate::poll::{earliest, poll, poll_ms};
use crate::socket::Connection;
use crate::AdapterError;

/// What went wrong with a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The request was not valid (see [`ClientUsageError`]).
    #[error(transparent)]
    Usage(#[from] ClientUsageError),
    /// The configuration cannot work (see [`mdp_core::ConfigError`]).
    #[error("invalid configuration: {0}")]
    Config(#[from] mdp_core::ConfigError),
    /// Nothing answered before the deadline passed to the call. The
    /// request was cancelled.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The core gave the request up after its retries.
    #[error("request failed: {0}")]
    Failed(FailReason),
    /// The request was sent again after some parts of its answer had
    /// arrived: those parts are void, and the answer starts again from its
    /// first part, perhaps different (another worker may give it). Only
    /// [`Parts`] yields this, and it goes on after it.
    #[error("the answer to {0} restarted: drop the parts received so far")]
    Restarted(RequestId),
    /// A CURVE client's request timed out or failed and no CURVE handshake
    /// with any of its brokers ever succeeded: the brokers' public key given
    /// to the client is most likely wrong, or the brokers do not admit the
    /// client's key (or they speak no CURVE, or are not there). While one
    /// broker has completed a handshake this is not returned: the client's
    /// requests could go there, so silence elsewhere is not the cause.
    #[error("no CURVE handshake with {} succeeded ({cause}): check the broker's public key (--curve-server) and that the broker admits this client's key", brokers_at(.endpoints))]
    NoHandshake {
        /// The endpoints of the brokers that never completed a handshake:
        /// all of the client's.
        endpoints: Vec<String>,
        /// What ended the request: its timeout or failure.
        cause: Box<ClientError>,
    },
    /// The socket failed.
    #[error(transparent)]
    Adapter(#[from] AdapterError),
}

/// A blocking MDP client: one DEALER socket per lane, all on one ZeroMQ
/// context, driven by an [`mdp_core::Client`] that decides where each
/// request goes, retries and reconnects.
///
/// With one lane the client has one request per service on the wire at a
/// time; with `L` lanes ([`ClientConfig::lanes`]), up to `L` per service are
/// served at once, by as many workers.
///
/// **Several brokers.** [`connect_many`](Self::connect_many) takes a list
/// of brokers that serve the same services, and opens `lanes` connections
/// to each: lane `l` goes to broker `l % brokers`
/// ([`mdp_core::Client::broker_of`]), so requests taken in turn go to the
/// brokers in turn. When a request on a broker's lane times out, or a
/// connection to it is lost (the broker killed or restarted: the socket
/// monitor sees it within a tenth of a second), the core avoids that broker
/// for a backoff ([`ClientConfig::broker_backoff`]) and sends its requests
/// again on the other brokers' lanes; a warning names the broker's endpoint
/// when that starts. A request is on the wire on one lane at a time, but
/// one that timed out at a slow broker may still be served there (its
/// answer goes to the replaced connection and is never taken for another
/// request's): as with any retry, requests should be safe to repeat.
///
/// It has no run loop, so it needs no [`StopHandle`](crate::StopHandle):
/// it does its work inside the calls, each of which returns by the timeout
/// passed to it. Dropping it closes its sockets.
pub struct Client {
    _ctx: zmq::Context,
    lanes: Vec<Connection>,
    core: mdp_core::Client,
    /// Events read while waiting for another request's.
    ready: VecDeque<ClientEvent>,
    /// The brokers' endpoints, by the core's broker index, for error
    /// messages and logs.
    endpoints: Vec<String>,
    /// Per broker, what was last logged about its health.
    health: Vec<HealthLog>,
}

/// How often at most a broker's becoming avoided is logged at `warn`. A
/// broker that fails again and again (a zero backoff, a tiny timeout) would
/// otherwise log a line per failed request; the lines in between are
/// counted and the next one says how many.
const HEALTH_LOG_PERIOD: Duration = Duration::from_secs(10);

/// What the client last logged about one broker's health.
#[derive(Debug, Default, Clone, Copy)]
struct HealthLog {
    /// Whether the core avoided it when last looked at.
    avoided: bool,
    /// When a warning about it was last logged.
    warned: Option<Instant>,
    /// Times it became avoided since that warning, not logged.
    unlogged: u32,
}

impl Client {
    /// Connects to a broker (`tcp://127.0.0.1:5555`) with
    /// `config.lanes` connections: [`connect_many`](Self::connect_many)
    /// with one endpoint.
    ///
    /// A configuration that cannot work is refused here, with
    /// [`ClientError::Config`] carrying the core's [`mdp_core::ConfigError`],
    /// before any socket is made.
    pub fn connect(endpoint: &str, config: ClientConfig) -> Result<Self, ClientError> {
        Self::connect_with(&[endpoint], config, None)
    }

    /// [`connect`](Self::connect) over CURVE: every lane encrypted, to a
    /// broker started with [`BrokerRunner::bind_curve`](crate::BrokerRunner::bind_curve).
    /// A request that gets nowhere because no handshake succeeds ends in
    /// [`ClientError::NoHandshake`], which names the likely cause.
    pub fn connect_curve(endpoint: &str, config: ClientConfig, curve: CurveClient) -> Result<Self, ClientError> {
        Self::connect_with(&[endpoint], config, Some(curve))
    }

    /// Connects to every broker in `endpoints`, all serving the same
    /// services, with `config.lanes` connections to each (see "Several
    /// brokers" above): lane `i` to `endpoints[i % endpoints.len()]`.
    ///
    /// `config.brokers` is set to `endpoints.len()`, whatever it was: the
    /// list is what says how many brokers there are.
    ///
    /// An empty list is refused with [`AdapterError::NoEndpoint`] (in
    /// [`ClientError::Adapter`]), and a configuration that cannot work with
    /// [`ClientError::Config`], both before any socket is made.
    pub fn connect_many(endpoints: &[impl AsRef<str>], config: ClientConfig) -> Result<Self, ClientError> {
        Self::connect_with(endpoints, config, None)
    }

    /// [`connect_many`](Self::connect_many) over CURVE; every broker must
    /// have the public key in `curve.server`, as for
    /// [`Workers::connect_curve`](crate::Workers::connect_curve).
    pub fn connect_many_curve(
        endpoints: &[impl AsRef<str>],
        config: ClientConfig,
        curve: CurveClient,
    ) -> Result<Self, ClientError> {
        Self::connect_with(endpoints, config, Some(curve))
    }

    fn connect_with(
        endpoints: &[impl AsRef<str>],
        mut config: ClientConfig,
        curve: Option<CurveClient>,
    ) -> Result<Self, ClientError> {
        if endpoints.is_empty() {
            return Err(AdapterError::NoEndpoint.into());
        }
        config.brokers = endpoints.len();
        let core = mdp_core::Client::new(config, Instant::now())?;
        let endpoints: Vec<String> = endpoints.iter().map(|e| e.as_ref().to_owned()).collect();
        let ctx = zmq::Context::new();
        // The core says which broker each lane belongs to; the lane count
        // is its too (lanes × brokers), not `config.lanes`.
        let open = |lane| Connection::open(&ctx, &endpoints[core.broker_of(Lane(lane))], curve);
        let lanes = (0..core.lane_count()).map(open).collect::<Result<_, _>>()?;
        let health = vec![HealthLog::default(); endpoints.len()];
        Ok(Client { _ctx: ctx, lanes, core, ready: VecDeque::new(), endpoints, health })
    }

    /// `e`, or if it is a timeout or a failure of a CURVE client none of
    /// whose lanes ever completed a handshake, [`ClientError::NoHandshake`]
    /// around it.
    fn explain(&self, e: ClientError) -> ClientError {
        let silent = self.lanes.iter().all(Connection::never_handshaken);
        match e {
            ClientError::Timeout(_) | ClientError::Failed(_) if silent => {
                ClientError::NoHandshake { endpoints: self.endpoints.clone(), cause: Box::new(e) }
            }
            e => e,
        }
    }

    /// Logs each broker that the core has started to avoid since the last
    /// look (see [`HEALTH_LOG_PERIOD`]), and, at `debug`, each it took back.
    /// With one broker the core never avoids it, and there is nothing to do.
    fn log_health(&mut self) {
        if self.endpoints.len() < 2 {
            return;
        }
        for (broker, log) in self.health.iter_mut().enumerate() {
            let avoided = self.core.is_avoided(broker);
            if avoided == log.avoided {
                continue;
            }
            log.avoided = avoided;
            let endpoint = &self.endpoints[broker];
            if !avoided {
                tracing::debug!(%endpoint, "broker taken back after its backoff or a reply");
                continue;
            }
            let now = Instant::now();
            if log.warned.is_some_and(|at| now.duration_since(at) < HEALTH_LOG_PERIOD) {
                log.unlogged = log.unlogged.saturating_add(1);
                continue;
            }
            let before = std::mem::take(&mut log.unlogged);
            log.warned = Some(now);
            tracing::warn!(
                %endpoint,
                also_since_last_line = before,
                "broker failed (a request timed out or the connection was lost): \
                 avoided for a backoff, its requests go to the other brokers"
            );
        }
    }

    /// Sends a request and returns at once; what comes of it comes from
    /// [`recv`](Self::recv). Many may be outstanding.
    pub fn send(&mut self, service: impl Into<Bytes>, body: Multipart) -> Result<RequestId, ClientError> {
        let id = self.core.request(Instant::now(), service.into(), body)?;
        self.flush()?;
        Ok(id)
    }

    /// The next event about any outstanding request, waiting up to
    /// `timeout`: a [`ClientEvent::Partial`], `Reply`, `Restarted` or
    /// `Failed`. (Messages the core discards are logged, not returned.)
    pub fn recv(&mut self, timeout: Duration) -> Result<ClientEvent, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Ok(e);
            }
            if Instant::now() >= deadline {
                return Err(self.explain(ClientError::Timeout(timeout)));
            }
            self.step(deadline)?;
        }
    }

    /// Forgets request `id` (see [`mdp_core::Client::cancel`]): if a worker
    /// has it, its late answer can never be taken for another's, and the
    /// next request waiting for a lane goes out. Events about it not yet
    /// read are dropped. Returns whether it was outstanding.
    pub fn cancel(&mut self, id: RequestId) -> Result<bool, ClientError> {
        let was = self.core.cancel(Instant::now(), id);
        self.ready.retain(|e| e.id() != Some(id));
        self.flush()?;
        Ok(was)
    }

    /// Sends a request and waits for its whole answer: the frames of every
    /// PARTIAL, then those of the FINAL, joined in order (what the broker
    /// gives an MDP/0.1 client). If the answer restarts (see
    /// [`ClientError::Restarted`]) the parts so far are dropped, so the
    /// frames returned are those of one answer only. Waits up to `timeout`
    /// in all, the core's retries within it; then cancels the request.
    pub fn request(
        &mut self,
        service: impl Into<Bytes>,
        body: Multipart,
        timeout: Duration,
    ) -> Result<Multipart, ClientError> {
        let mut joined = Vec::new();
        for part in self.parts(service, body, timeout)? {
            match part {
                Ok(frames) => joined.extend(frames),
                Err(ClientError::Restarted(_)) => joined.clear(),
                Err(e) => return Err(e),
            }
        }
        Ok(joined)
    }

    /// Sends a request and returns an iterator over the parts of its answer
    /// as they arrive: each PARTIAL, then the FINAL. Like majortomo's
    /// `recv_part`. If the answer restarts it yields
    /// [`ClientError::Restarted`] and goes on with the new answer from its
    /// first part; every other error ends it. Waits up to `timeout` in all;
    /// past it, or when the iterator is dropped early, the request is
    /// cancelled.
    pub fn parts(
        &mut self,
        service: impl Into<Bytes>,
        body: Multipart,
        timeout: Duration,
    ) -> Result<Parts<'_>, ClientError> {
        let id = self.send(service, body)?;
        Ok(Parts { client: self, id, deadline: Instant::now() + timeout, timeout, done: false })
    }

    /// Requests outstanding in the core, on the wire or waiting for a lane.
    pub fn outstanding(&self) -> usize {
        self.core.outstanding()
    }

    /// The next event for `id`, keeping others for [`recv`](Self::recv).
    fn next_for(&mut self, id: RequestId, deadline: Instant) -> Result<Option<ClientEvent>, ClientError> {
        loop {
            if let Some(pos) = self.ready.iter().position(|e| e.id() == Some(id)) {
                return Ok(self.ready.remove(pos));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            self.step(deadline)?;
        }
    }

    /// Waits for input on any lane or a timer, feeds the core and collects
    /// events. Only the lanes the poll found ready are read, so a wake-up
    /// costs a call per ready socket, not per lane.
    fn step(&mut self, deadline: Instant) -> Result<(), ClientError> {
        let ms = poll_ms(earliest(Some(deadline), self.core.poll_timeout()), Instant::now());
        let mut items: Vec<zmq::PollItem<'_>> =
            self.lanes.iter().map(|conn| conn.socket.as_poll_item(conn.events())).collect();
        poll(&mut items, ms)?;
        let ready: Vec<bool> = items.iter().map(|item| !item.get_revents().is_empty()).collect();
        drop(items);
        for (lane, ready) in ready.into_iter().enumerate() {
            if ready {
                self.lanes[lane].flush_backlog()?;
                while let Some(frames) = self.lanes[lane].try_recv()? {
                    self.core.handle_message(Instant::now(), Lane(lane), frames);
                    self.flush()?;
                }
            }
            if self.lanes[lane].lost(Instant::now()) {
                // The broker went away (a restart, say): resend now rather
                // than at the requests' timeouts.
                self.core.handle_connection_lost(Instant::now(), Lane(lane));
                self.flush()?;
            }
        }
        self.core.handle_timeout(Instant::now());
        self.flush()
    }

    /// The drain rule: every transmit, then every event.
    fn flush(&mut self) -> Result<(), ClientError> {
        while let Some(t) = self.core.poll_transmit() {
            let Some(conn) = self.lanes.get_mut(t.lane.0) else { continue };
            match t.transmit {
                PeerTransmit::Send(frames) => conn.send(frames)?,
                PeerTransmit::Reconnect => conn.replace()?,
            }
        }
        while let Some(event) = self.core.poll_event() {
            match event {
                ClientEvent::Discarded { reason } => {
                    tracing::debug!(%reason, "client dropped a message from the broker");
                }
                event if event.id().is_some() => self.ready.push_back(event),
                other => tracing::debug!(?other, "client event"),
            }
        }
        // Every input to the core is followed by a flush, so each change of
        // a broker's health is seen here.
        self.log_health();
        Ok(())
    }
}

/// "the broker at A" or "any of the brokers at A, B", for error messages.
fn brokers_at(endpoints: &[String]) -> String {
    match endpoints {
        [one] => format!("the broker at {one}"),
        many => format!("any of the brokers at {}", many.join(", ")),
    }
}

/// The parts of one answer, as they arrive. See [`Client::parts`].
pub struct Parts<'a> {
    client: &'a mut Client,
    id: RequestId,
    deadline: Instant,
    timeout: Duration,
    done: bool,
}

impl Parts<'_> {
    /// The request these parts answer.
    pub fn id(&self) -> RequestId {
        self.id
    }

    /// Ends the iteration with `result`; a request still outstanding (the
    /// caller stopped waiting) is cancelled.
    fn end(&mut self, result: Result<Multipart, ClientError>) -> Option<Result<Multipart, ClientError>> {
        self.done = true;
        match self.client.cancel(self.id) {
            Ok(_) => Some(result),
            Err(e) => Some(Err(e)),
        }
    }
}

impl Iterator for Parts<'_> {
    type Item = Result<Multipart, ClientError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let event = match self.client.next_for(self.id, self.deadline) {
                Ok(Some(e)) => e,
                Ok(None) => {
                    let timeout = self.client.explain(ClientError::Timeout(self.timeout));
                    return self.end(Err(timeout));
                }
                Err(e) => return self.end(Err(e)),
            };
            match event {
                ClientEvent::Partial { body, .. } => return Some(Ok(body)),
                ClientEvent::Reply { body, .. } => {
                    self.done = true;
                    return Some(Ok(body));
                }
                ClientEvent::Restarted { id } => return Some(Err(ClientError::Restarted(id))),
                ClientEvent::Failed { reason, .. } => {
                    self.done = true;
                    return Some(Err(self.client.explain(ClientError::Failed(reason))));
                }
                // Only events naming this request come here, and those are
                // all of them; whatever later versions add is skipped.
                other => tracing::debug!(?other, "client event"),
            }
        }
        None
    }
}

impl Drop for Parts<'_> {
    /// A caller that stops reading early gives up the rest of the answer:
    /// the request is cancelled.
    fn drop(&mut self) {
        if !self.done {
            let _ = self.client.cancel(self.id);
        }
    }
}
