//! What a worker tells the application, and the errors of its API.

use bytes::Bytes;

use crate::codec::{Command, DecodeError, Dialect, Multipart};
use crate::PeerId;

/// Names the request a [`WorkerEvent::Request`] handed over; give it back to
/// [`Worker::reply`](super::Worker::reply) or [`Worker::partial`](super::Worker::partial).
///
/// It holds the client's address, the connection the request came on, and
/// the request's sequence number, so the worker can tell an answer to the
/// request in progress from one to a request already answered or dropped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReplyToken {
    pub(super) client: Bytes,
    pub(super) epoch: u64,
    pub(super) seq: u64,
}

impl ReplyToken {
    /// The address of the client that sent the request, as the broker gave
    /// it: opaque bytes, for logging.
    pub fn client(&self) -> PeerId {
        PeerId(self.client.clone())
    }
}

/// What a [`Worker`](super::Worker) tells the application.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum WorkerEvent {
    /// A request to handle. Answer it with [`Worker::reply`](super::Worker::reply), optionally
    /// preceded by [`Worker::partial`](super::Worker::partial)s.
    Request {
        /// Names this request in the answer.
        token: ReplyToken,
        /// The request body, one or more frames.
        body: Multipart,
    },
    /// The worker gave up its connection; it registers again after the
    /// backoff.
    Disconnected {
        /// Why.
        reason: DisconnectReason,
        /// The request that was in progress, if any. It cannot be answered
        /// any more: its client will time out and retry.
        dropped: Option<ReplyToken>,
    },
    /// A message from the broker was dropped.
    Discarded {
        /// Why.
        reason: WorkerDiscardReason,
    },
}

/// Why a [`Worker`](super::Worker) gave up its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// Nothing came from the broker for `liveness` heartbeat intervals.
    #[error("the broker sent nothing for liveness × heartbeat interval")]
    BrokerSilent,
    /// The broker sent DISCONNECT.
    #[error("the broker sent DISCONNECT")]
    BrokerDisconnected,
    /// The transport reported the connection lost
    /// ([`Worker::handle_connection_lost`](super::Worker::handle_connection_lost)).
    #[error("the connection to the broker was lost")]
    ConnectionLost,
}

/// Why a [`Worker`](super::Worker) dropped a message from the broker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerDiscardReason {
    /// The frames are not an MDP command.
    #[error("malformed message from the broker: {0}")]
    Malformed(DecodeError),
    /// A valid command, in another dialect than the worker speaks.
    #[error("message in {found}, but this worker speaks {expected}")]
    WrongDialect {
        /// The worker's dialect.
        expected: Dialect,
        /// The message's dialect.
        found: Dialect,
    },
    /// A command the broker sends only to clients.
    #[error("{command} is sent to clients, not to workers")]
    NotForWorkers {
        /// The command.
        command: Command,
    },
    /// A REQUEST arrived while another was in progress. A worker handles one
    /// request at a time (RFC 7, RFC 18), so a broker that sends a second one
    /// is broken; queueing it would let such a broker grow the worker's
    /// memory, and answering it would need concurrency the application did
    /// not ask for. Its client will time out and retry.
    #[error("REQUEST from client {client} while another request is in progress")]
    RequestWhileBusy {
        /// The client the dropped request came from.
        client: PeerId,
    },
    /// A message arrived while the worker waits to register again: the new
    /// connection has sent no READY, so the broker has no business writing.
    #[error("message before READY on this connection (waiting out the reconnect backoff)")]
    NotRegistered,
    /// A message arrived after [`Worker::disconnect`](super::Worker::disconnect).
    #[error("message after the worker disconnected")]
    Stopped,
}

/// A mistake in how the application uses a [`Worker`](super::Worker).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerUsageError {
    /// The token does not name the request in progress: it was answered
    /// already, or the token belongs to another worker.
    #[error("the token does not name the request in progress (answered already?)")]
    StaleToken,
    /// The request this token names was dropped by a reconnect (the
    /// [`WorkerEvent::Disconnected`] that reported it); it cannot be answered.
    #[error("the request was dropped when the worker reconnected")]
    RequestDropped,
    /// MDP/0.1 has no PARTIAL: answer with one [`Worker::reply`](super::Worker::reply).
    #[error("MDP/0.1 has no PARTIAL; send the whole answer with reply()")]
    PartialInV01,
    /// The worker was stopped with [`Worker::disconnect`](super::Worker::disconnect).
    #[error("the worker has disconnected")]
    Stopped,
}
