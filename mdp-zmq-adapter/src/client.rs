//! A blocking MDP client over a DEALER socket.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mdp_core::client::{ClientConfig, ClientEvent, ClientUsageError, FailReason, RequestId};
use mdp_core::{Lane, Multipart, PeerTransmit};

use crate::socket::{poll, poll_ms, Connection};
use crate::AdapterError;

/// What went wrong with a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The request was not valid (see [`ClientUsageError`]).
    #[error(transparent)]
    Usage(#[from] ClientUsageError),
    /// Nothing answered before the deadline passed to the call.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The core gave the request up after its retries.
    #[error("request failed: {0}")]
    Failed(FailReason),
    /// The socket failed.
    #[error(transparent)]
    Adapter(#[from] AdapterError),
}

/// One piece of an answer, from [`Client::recv`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Response {
    /// A streamed part of the reply to `id`; more follow.
    Partial {
        /// The request.
        id: RequestId,
        /// The part's frames.
        body: Multipart,
    },
    /// The last part of the reply to `id`.
    Reply {
        /// The request.
        id: RequestId,
        /// The part's frames.
        body: Multipart,
    },
    /// `id` was resent after some of its parts arrived: drop those parts.
    Restarted {
        /// The request.
        id: RequestId,
    },
    /// `id` got no reply after every try.
    Failed {
        /// The request.
        id: RequestId,
        /// Why.
        reason: FailReason,
    },
}

impl Response {
    /// The request this is about.
    pub fn id(&self) -> RequestId {
        match self {
            Response::Partial { id, .. }
            | Response::Reply { id, .. }
            | Response::Restarted { id }
            | Response::Failed { id, .. } => *id,
        }
    }
}

/// A blocking MDP client: one DEALER socket, driven by an
/// [`mdp_core::Client`] that decides retries and reconnects.
pub struct Client {
    _ctx: zmq::Context,
    conn: Connection,
    core: mdp_core::Client,
    /// Answers read while waiting for another request's.
    ready: VecDeque<Response>,
    /// Requests whose caller stopped waiting; their answers are dropped.
    abandoned: HashSet<RequestId>,
}

impl Client {
    /// Connects to a broker (`tcp://127.0.0.1:5555`).
    pub fn connect(endpoint: &str, config: ClientConfig) -> Result<Self, ClientError> {
        let core = mdp_core::Client::new(config, Instant::now())?;
        let ctx = zmq::Context::new();
        let conn = Connection::open(&ctx, endpoint)?;
        Ok(Client { _ctx: ctx, conn, core, ready: VecDeque::new(), abandoned: HashSet::new() })
    }

    /// Sends a request and returns at once; answers come from
    /// [`recv`](Self::recv). Many may be outstanding.
    pub fn send(&mut self, service: impl Into<Bytes>, body: Multipart) -> Result<RequestId, ClientError> {
        let id = self.core.request(Instant::now(), service.into(), body)?;
        self.flush()?;
        Ok(id)
    }

    /// The next answer to any outstanding request, waiting up to `timeout`.
    pub fn recv(&mut self, timeout: Duration) -> Result<Response, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(r) = self.ready.pop_front() {
                return Ok(r);
            }
            if Instant::now() >= deadline {
                return Err(ClientError::Timeout(timeout));
            }
            self.step(deadline)?;
        }
    }

    /// Sends a request and waits for its whole answer: the frames of every
    /// PARTIAL, then those of the FINAL, joined in order (what the broker
    /// gives an MDP/0.1 client). Waits up to `timeout` in all; the core's
    /// retries happen within it.
    pub fn request(
        &mut self,
        service: impl Into<Bytes>,
        body: Multipart,
        timeout: Duration,
    ) -> Result<Multipart, ClientError> {
        let mut parts = self.parts(service, body, timeout)?;
        let mut joined = Vec::new();
        for part in &mut parts {
            joined.extend(part?);
        }
        Ok(joined)
    }

    /// Sends a request and returns an iterator over the parts of its answer
    /// as they arrive: each PARTIAL, then the FINAL. Like majortomo's
    /// `recv_part`. A resend after partial delivery restarts the answer; the
    /// iterator hides that by yielding parts only once per position.
    pub fn parts(
        &mut self,
        service: impl Into<Bytes>,
        body: Multipart,
        timeout: Duration,
    ) -> Result<Parts<'_>, ClientError> {
        let id = self.send(service, body)?;
        Ok(Parts { client: self, id, deadline: Instant::now() + timeout, timeout, seen: 0, delivered: 0, done: false })
    }

    /// Requests outstanding in the core.
    pub fn outstanding(&self) -> usize {
        self.core.outstanding()
    }

    /// The next answer for `id`, keeping others for [`recv`](Self::recv).
    fn next_for(&mut self, id: RequestId, deadline: Instant) -> Result<Option<Response>, ClientError> {
        loop {
            if let Some(pos) = self.ready.iter().position(|r| r.id() == id) {
                return Ok(self.ready.remove(pos));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            self.step(deadline)?;
        }
    }

    /// Waits for input or a timer, feeds the core and collects answers.
    fn step(&mut self, deadline: Instant) -> Result<(), ClientError> {
        let ms = poll_ms(Instant::now(), &[Some(deadline), self.core.poll_timeout()]);
        let socket = self.conn.socket.as_poll_item(self.conn.events());
        poll(&mut [socket, self.conn.monitor.as_poll_item(zmq::POLLIN)], ms)?;
        self.conn.flush_backlog()?;
        while let Some(frames) = self.conn.try_recv()? {
            self.core.handle_message(Instant::now(), Lane(0), frames);
            self.flush()?;
        }
        if self.conn.lost() {
            // The broker went away (a restart, say): resend now rather
            // than at the requests' timeouts.
            self.core.handle_connection_lost(Instant::now(), Lane(0));
            self.flush()?;
        }
        self.core.handle_timeout(Instant::now());
        self.flush()
    }

    /// The drain rule: every transmit, then every event.
    fn flush(&mut self) -> Result<(), ClientError> {
        while let Some(t) = self.core.poll_transmit() {
            match t.transmit {
                PeerTransmit::Send(frames) => self.conn.send(frames)?,
                PeerTransmit::Reconnect => self.conn.replace()?,
            }
        }
        while let Some(event) = self.core.poll_event() {
            let response = match event {
                ClientEvent::Partial { id, body } => Response::Partial { id, body },
                ClientEvent::Reply { id, body } => Response::Reply { id, body },
                ClientEvent::Restarted { id } => Response::Restarted { id },
                ClientEvent::Failed { id, reason } => Response::Failed { id, reason },
                ClientEvent::Discarded { reason } => {
                    tracing::debug!(%reason, "client dropped a message from the broker");
                    continue;
                }
                other => {
                    tracing::debug!(?other, "client event");
                    continue;
                }
            };
            let id = response.id();
            let last = matches!(response, Response::Reply { .. } | Response::Failed { .. });
            if self.abandoned.contains(&id) {
                if last {
                    self.abandoned.remove(&id);
                }
                continue;
            }
            self.ready.push_back(response);
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
    /// Parts seen since the last restart.
    seen: usize,
    /// Parts handed to the caller.
    delivered: usize,
    done: bool,
}

impl Parts<'_> {
    /// The request these parts answer.
    pub fn id(&self) -> RequestId {
        self.id
    }

    /// Whether the caller still gets this part: after a restart the parts
    /// already delivered come again and are skipped.
    fn fresh(&mut self) -> bool {
        self.seen += 1;
        if self.seen > self.delivered {
            self.delivered = self.seen;
            true
        } else {
            false
        }
    }
}

impl Iterator for Parts<'_> {
    type Item = Result<Multipart, ClientError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let response = match self.client.next_for(self.id, self.deadline) {
                Ok(Some(r)) => r,
                Ok(None) => {
                    self.done = true;
                    if self.client.core.is_outstanding(self.id) {
                        self.client.abandoned.insert(self.id);
                    }
                    return Some(Err(ClientError::Timeout(self.timeout)));
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            match response {
                Response::Partial { body, .. } => {
                    if self.fresh() {
                        return Some(Ok(body));
                    }
                }
                Response::Reply { body, .. } => {
                    self.done = true;
                    // A FINAL after a restart may repeat a part the caller
                    // already has only if the worker's answer changed; the
                    // FINAL is always new.
                    return Some(Ok(body));
                }
                Response::Restarted { .. } => self.seen = 0,
                Response::Failed { reason, .. } => {
                    self.done = true;
                    return Some(Err(ClientError::Failed(reason)));
                }
            }
        }
        None
    }
}

impl Drop for Parts<'_> {
    /// A caller that stops reading early abandons the rest of the answer.
    fn drop(&mut self) {
        if !self.done && self.client.core.is_outstanding(self.id) {
            self.client.abandoned.insert(self.id);
        }
    }
}
