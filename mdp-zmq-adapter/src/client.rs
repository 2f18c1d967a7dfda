//! A blocking MDP client over DEALER sockets, one per lane.

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
    /// with the broker ever succeeded: the broker's public key given to the
    /// client is most likely wrong, or the broker does not admit the
    /// client's key (or the broker speaks no CURVE, or is not there).
    #[error("no CURVE handshake with the broker at {endpoint} succeeded ({cause}): check the broker's public key (--curve-server) and that the broker admits this client's key")]
    NoHandshake {
        /// The broker's endpoint.
        endpoint: String,
        /// What ended the request: its timeout or failure.
        cause: Box<ClientError>,
    },
    /// The socket failed.
    #[error(transparent)]
    Adapter(#[from] AdapterError),
}

/// A blocking MDP client: one DEALER socket per lane
/// ([`ClientConfig::lanes`]), all on one ZeroMQ context, driven by an
/// [`mdp_core::Client`] that decides where each request goes, retries and
/// reconnects.
///
/// With one lane the client has one request per service on the wire at a
/// time; with `L` lanes, up to `L` per service are served at once, by as
/// many workers.
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
    /// The broker's endpoint, for error messages.
    endpoint: String,
}

impl Client {
    /// Connects to a broker (`tcp://127.0.0.1:5555`) with
    /// `config.lanes` connections.
    ///
    /// A configuration that cannot work is refused here, with
    /// [`ClientError::Config`] carrying the core's [`mdp_core::ConfigError`],
    /// before any socket is made.
    pub fn connect(endpoint: &str, config: ClientConfig) -> Result<Self, ClientError> {
        Self::connect_with(endpoint, config, None)
    }

    /// [`connect`](Self::connect) over CURVE: every lane encrypted, to a
    /// broker started with [`BrokerRunner::bind_curve`](crate::BrokerRunner::bind_curve).
    /// A request that gets nowhere because no handshake succeeds ends in
    /// [`ClientError::NoHandshake`], which names the likely cause.
    pub fn connect_curve(endpoint: &str, config: ClientConfig, curve: CurveClient) -> Result<Self, ClientError> {
        Self::connect_with(endpoint, config, Some(curve))
    }

    fn connect_with(endpoint: &str, config: ClientConfig, curve: Option<CurveClient>) -> Result<Self, ClientError> {
        let core = mdp_core::Client::new(config, Instant::now())?;
        let ctx = zmq::Context::new();
        let open = |_| Connection::open(&ctx, endpoint, curve);
        let lanes = (0..core.config().lanes).map(open).collect::<Result<_, _>>()?;
        let endpoint = endpoint.to_owned();
        Ok(Client { _ctx: ctx, lanes, core, ready: VecDeque::new(), endpoint })
    }

    /// `e`, or if it is a timeout or a failure of a CURVE client that never
    /// completed a handshake, [`ClientError::NoHandshake`] around it.
    fn explain(&self, e: ClientError) -> ClientError {
        let silent = self.lanes.iter().all(Connection::never_handshaken);
        match e {
            ClientError::Timeout(_) | ClientError::Failed(_) if silent => {
                ClientError::NoHandshake { endpoint: self.endpoint.clone(), cause: Box::new(e) }
            }
            e => e,
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
        Ok(())
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
