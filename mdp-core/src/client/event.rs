//! What a client tells the application, and the errors of its API.

use std::fmt;

use crate::codec::{Command, DecodeError, Dialect, Found, Multipart};

use super::Lane;

/// Names a request in the events about it. Ids increase with every
/// [`Client::request`](super::Client::request) and are never reused by one
/// client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub(crate) u64);

impl RequestId {
    /// The id as a number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// What a [`Client`](super::Client) tells the application.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// One streamed part of the reply to `id` (0.2 dialects). More follow.
    Partial {
        /// The request.
        id: RequestId,
        /// The part's frames.
        body: Multipart,
    },
    /// The last part of the reply to `id` (FINAL; in MDP/0.1 the one REPLY).
    /// The request is complete: no more events name it.
    Reply {
        /// The request.
        id: RequestId,
        /// The part's frames.
        body: Multipart,
    },
    /// `id`'s send was given up after PARTIALs of it had been delivered,
    /// and it is sent again: throw those parts away, the answer starts
    /// again from its first part (and may differ, if another worker gives
    /// it). With one broker it has been sent again on its lane's new
    /// connection already; with several it leaves the lane of the broker
    /// that failed and may wait in the client for a lane of another one
    /// (no part of the old send can arrive meanwhile: that lane was
    /// replaced).
    Restarted {
        /// The request.
        id: RequestId,
    },
    /// `id` got no reply in time, however often it was sent. No more events
    /// name it.
    Failed {
        /// The request.
        id: RequestId,
        /// Why.
        reason: FailReason,
    },
    /// A message from the broker was dropped.
    Discarded {
        /// Why.
        reason: ClientDiscardReason,
    },
}

impl ClientEvent {
    /// The request this event is about, if any.
    pub fn id(&self) -> Option<RequestId> {
        match self {
            ClientEvent::Partial { id, .. }
            | ClientEvent::Reply { id, .. }
            | ClientEvent::Restarted { id }
            | ClientEvent::Failed { id, .. } => Some(*id),
            ClientEvent::Discarded { .. } => None,
        }
    }
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FailReason {
    /// No reply within the timeout, and the request was to be sent once only
    /// (`tries` is 1).
    #[error("no reply within the timeout")]
    Timeout,
    /// No reply within the timeout to any of `tries` sends.
    #[error("no reply to any of {tries} tries")]
    RetriesExhausted {
        /// How many times the request was sent.
        tries: u32,
    },
    /// The connection carrying the last of `tries` sends was lost
    /// ([`Client::handle_connection_lost`](super::Client::handle_connection_lost)),
    /// and no try was left.
    #[error("the connection was lost with the last of {tries} tries")]
    ConnectionLost {
        /// How many times the request was sent.
        tries: u32,
    },
}

/// Why a [`Client`](super::Client) dropped a message from the broker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientDiscardReason {
    /// The frames are not an MDP command.
    #[error("malformed message from the broker: {0}")]
    Malformed(DecodeError),
    /// A valid command, in another dialect than the client speaks.
    #[error("message in {found}, but this client speaks {expected}")]
    WrongDialect {
        /// The client's dialect.
        expected: Dialect,
        /// The message's dialect.
        found: Dialect,
    },
    /// A command the broker sends only to workers.
    #[error("{command} is sent to workers, not to clients")]
    NotForClients {
        /// The command.
        command: Command,
    },
    /// A reply for which no request is on the wire on its lane: a late
    /// reply to a request that failed, or a broker sending what nobody asked
    /// for.
    #[error("{command}{} on lane {} matches no request on the wire", for_service(.service), .lane.0)]
    Unmatched {
        /// PARTIAL or FINAL.
        command: Command,
        /// The service the reply named (`None` in the majortomo dialect).
        service: Option<Found>,
        /// The lane it came on.
        lane: Lane,
    },
    /// The transport passed a message in for a lane this client does not
    /// have ([`ClientConfig::lanes`](super::ClientConfig::lanes)): a bug in
    /// the transport.
    #[error("message for lane {}, but this client has {lanes} lanes", .lane.0)]
    NoSuchLane {
        /// The lane the transport named.
        lane: Lane,
        /// How many lanes the client has.
        lanes: usize,
    },
}

fn for_service(service: &Option<Found>) -> String {
    service.as_ref().map(|s| format!(" from service {s}")).unwrap_or_default()
}

/// A mistake in how the application uses a [`Client`](super::Client).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientUsageError {
    /// The service name is empty.
    #[error("the service name is empty")]
    EmptyService,
    /// The body has no frames; MDP requests need at least one.
    #[error("the request body has no frames; MDP needs at least one")]
    EmptyBody,
    /// `max_outstanding` requests are outstanding already.
    #[error("{max} requests are outstanding already (max_outstanding)")]
    TooManyOutstanding {
        /// [`ClientConfig::max_outstanding`](super::ClientConfig::max_outstanding).
        max: usize,
    },
}
