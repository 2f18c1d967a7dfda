//! What the broker reports to the application, and its statistics.

use bytes::Bytes;

use super::Access;
use crate::{Command, DecodeError, Dialect, PeerId};

/// Something the broker did or saw. Drain with
/// [`Broker::poll_event`](crate::Broker::poll_event).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BrokerEvent {
    /// A worker sent READY and was registered.
    WorkerReady {
        /// The worker.
        worker: PeerId,
        /// The service it serves.
        service: Bytes,
        /// The dialect it speaks.
        dialect: Dialect,
    },
    /// A worker was forgotten; the broker sends it nothing more.
    WorkerGone {
        /// The worker.
        worker: PeerId,
        /// The service it served.
        service: Bytes,
        /// Why.
        reason: GoneReason,
    },
    /// A request was handed to a worker.
    RequestDispatched {
        /// The client that sent it.
        client: PeerId,
        /// The service it asked for.
        service: Bytes,
        /// The worker that got it.
        worker: PeerId,
    },
    /// A request whose worker was lost went back to the head of its queue.
    RequestRequeued {
        /// The client that sent it.
        client: PeerId,
        /// The service it asked for.
        service: Bytes,
        /// How many times it has been dispatched so far.
        dispatches: u32,
    },
    /// A queued request waited longer than
    /// [`request_timeout`](crate::BrokerConfig::request_timeout) and was dropped.
    RequestExpired {
        /// The client that sent it.
        client: PeerId,
        /// The service it asked for.
        service: Bytes,
    },
    /// A request, or the reply to it, was dropped.
    RequestDropped {
        /// The client that sent it.
        client: PeerId,
        /// The service it asked for.
        service: Bytes,
        /// Why.
        reason: DropReason,
    },
    /// A message would have crossed a limit and was dropped.
    LimitHit {
        /// The peer that sent it.
        peer: PeerId,
        /// The limit.
        limit: Limit,
    },
    /// The [`policy`](crate::BrokerConfig::policy) refused a peer: a READY
    /// (the peer was sent DISCONNECT and not registered) or a REQUEST (it
    /// was dropped; the client gets no answer).
    AccessDenied {
        /// The peer.
        peer: PeerId,
        /// Its authenticated name, if it has one.
        name: Option<Bytes>,
        /// What it asked to do.
        access: Access,
        /// With which service.
        service: Bytes,
    },
    /// A peer sent something the protocol does not allow. If it was a
    /// registered worker, a [`WorkerGone`](BrokerEvent::WorkerGone) follows.
    PeerMisbehaved {
        /// The peer.
        peer: PeerId,
        /// What it sent: the command, or `None` for a message that is not
        /// MDP at all.
        sent: Option<Command>,
        /// Why it was rejected.
        reason: Misbehavior,
    },
}

/// Why a worker was forgotten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GoneReason {
    /// It sent DISCONNECT.
    Disconnected,
    /// It was silent for longer than its liveness window.
    Expired,
    /// It held one request for longer than
    /// [`max_job_time`](crate::BrokerConfig::max_job_time); it was sent
    /// DISCONNECT and its request re-queued.
    JobTooLong,
    /// It broke the protocol and was sent DISCONNECT.
    Misbehaved,
    /// The transport reported it unreachable
    /// ([`Broker::handle_unreachable`](crate::Broker::handle_unreachable)).
    Unreachable,
    /// The broker is shutting down ([`Broker::shutdown`](crate::Broker::shutdown)).
    Shutdown,
}

/// Why a request was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DropReason {
    /// Its workers kept dying: it was dispatched
    /// [`max_dispatches`](crate::BrokerConfig::max_dispatches) times.
    TooManyDispatches,
    /// The streamed reply for an MDP/0.1 client grew past the message limits,
    /// so it could not be joined into one REPLY. The rest of it is discarded.
    ReplyTooLarge,
    /// The broker shut down before the request was answered.
    Shutdown,
    /// Its worker was lost after PARTIALs of the answer had reached the
    /// (MDP/0.2) client. Another worker's answer would start again from the
    /// first part, and the client could not tell it from a continuation, so
    /// the request is not re-queued: the client times out and resends it.
    PartlyAnswered,
    /// Its service had no workers and was evicted to make room for a worker
    /// of a new service (see
    /// [`max_services`](crate::BrokerConfig::max_services)).
    Evicted,
    /// Holding the next PARTIAL of the streamed reply for an MDP/0.1 client,
    /// to join it into one REPLY, would have taken the bytes the broker holds
    /// past the limit named ([`Limit::QueuedBytes`] or
    /// [`Limit::QueuedBytesPerService`]). The rest of the reply is
    /// discarded, as for [`ReplyTooLarge`](DropReason::ReplyTooLarge).
    ReplyOverBudget(Limit),
}

/// Which limit was hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Limit {
    /// [`max_services`](crate::BrokerConfig::max_services).
    Services,
    /// [`max_workers`](crate::BrokerConfig::max_workers).
    Workers,
    /// [`max_queue_per_service`](crate::BrokerConfig::max_queue_per_service).
    QueuePerService,
    /// [`max_queue_total`](crate::BrokerConfig::max_queue_total).
    QueueTotal,
    /// [`max_message_frames`](crate::BrokerConfig::max_message_frames).
    MessageFrames,
    /// [`max_message_bytes`](crate::BrokerConfig::max_message_bytes).
    MessageBytes,
    /// [`max_queued_bytes`](crate::BrokerConfig::max_queued_bytes).
    QueuedBytes,
    /// [`max_queued_bytes_per_service`](crate::BrokerConfig::max_queued_bytes_per_service).
    QueuedBytesPerService,
    /// [`max_service_name_bytes`](crate::BrokerConfig::max_service_name_bytes).
    ServiceName,
}

/// How a peer broke the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Misbehavior {
    /// The message is not MDP.
    #[error("malformed message: {0}")]
    Malformed(#[from] DecodeError),
    /// A registered worker sent READY again.
    #[error("READY from a worker that is already registered")]
    ReadyTwice,
    /// A worker sent something other than READY or DISCONNECT first.
    #[error("worker command before READY")]
    BeforeReady,
    /// A worker replied for a client it was not serving.
    #[error("reply for a client the worker is not serving")]
    NotServingClient,
    /// A worker tried to register a service whose name starts with `mmi.`.
    #[error("READY for a reserved mmi. service")]
    ReservedService,
    /// A worker sent a command in another dialect than its READY.
    #[error("worker switched from {registered} to {sent}")]
    DialectChanged {
        /// The dialect of its READY.
        registered: Dialect,
        /// The dialect of this message.
        sent: Dialect,
    },
}

/// A snapshot of the broker's state and running totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct BrokerStats {
    /// Services known now (with workers or queued requests).
    pub services: usize,
    /// Workers waiting for a request.
    pub idle_workers: usize,
    /// Workers holding a request.
    pub busy_workers: usize,
    /// Requests waiting for a worker.
    pub queued_requests: usize,
    /// Bytes charged for the requests waiting for a worker (see
    /// [`max_queued_bytes`](crate::BrokerConfig::max_queued_bytes)).
    pub queued_bytes: usize,
    /// Bytes charged for the requests workers hold and the PARTIALs being
    /// joined for MDP/0.1 clients. `queued_bytes + held_bytes` never passes
    /// [`max_queued_bytes`](crate::BrokerConfig::max_queued_bytes); both are
    /// 0 when nothing is queued and no worker is busy.
    pub held_bytes: usize,
    /// Requests received from clients, MMI included.
    pub requests_received: u64,
    /// Final replies sent to clients, MMI included.
    pub replies_sent: u64,
    /// Requests handed to workers (a re-dispatch counts again).
    pub dispatched: u64,
    /// Requests put back in a queue after their worker was lost.
    pub requeued: u64,
    /// Requests that expired in a queue.
    pub expired: u64,
    /// Requests dropped for another reason (see [`DropReason`]).
    pub dropped: u64,
    /// Workers removed because they went silent.
    pub workers_expired: u64,
    /// Messages rejected because their sender broke the protocol.
    pub misbehaviors: u64,
    /// Messages dropped because they would have crossed a limit.
    pub limits_hit: u64,
    /// READYs and REQUESTs the policy refused.
    pub denied: u64,
}
