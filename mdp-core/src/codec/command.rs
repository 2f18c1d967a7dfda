//! The typed commands, split by direction (see the module docs).

use std::fmt;

use bytes::Bytes;

use super::Multipart;

/// The name of an MDP command, as the RFCs write it, for events and errors.
/// MDP/0.1's REPLY is [`Final`](Command::Final): the last (in 0.1 the only)
/// part of a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Command {
    /// REQUEST (client to broker, broker to worker).
    Request,
    /// PARTIAL (MDP/0.2 only).
    Partial,
    /// FINAL (MDP/0.2), REPLY (MDP/0.1).
    Final,
    /// READY (worker to broker).
    Ready,
    /// HEARTBEAT (broker and worker).
    Heartbeat,
    /// DISCONNECT (broker and worker).
    Disconnect,
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Command::Request => "REQUEST",
            Command::Partial => "PARTIAL",
            Command::Final => "FINAL",
            Command::Ready => "READY",
            Command::Heartbeat => "HEARTBEAT",
            Command::Disconnect => "DISCONNECT",
        })
    }
}

/// A command sent by a client or a worker to the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerCommand {
    /// Client REQUEST: ask `service` to handle `body` (one or more frames).
    Request {
        /// The service name: opaque, non-empty bytes.
        service: Bytes,
        /// The request body, one or more frames.
        body: Multipart,
    },
    /// Worker READY: register as a worker of `service`.
    Ready {
        /// The service name: opaque, non-empty bytes.
        service: Bytes,
    },
    /// Worker PARTIAL (0.2 only): one streamed part of the reply to `client`.
    Partial {
        /// The client address the broker handed over with the request.
        client: Bytes,
        /// The part's frames (may be empty).
        body: Multipart,
    },
    /// Worker FINAL (0.2) or REPLY (0.1): the last part of the reply.
    Final {
        /// The client address the broker handed over with the request.
        client: Bytes,
        /// The part's frames (may be empty).
        body: Multipart,
    },
    /// Worker HEARTBEAT.
    Heartbeat,
    /// Worker DISCONNECT.
    Disconnect,
}

/// A command sent by the broker to a client or a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerCommand {
    /// PARTIAL to a client (0.2 only): one streamed part of a reply.
    Partial {
        /// The service that answered. Present in MDP/0.2 as RFC 18 writes
        /// it, absent (`None`) in the majortomo dialect, which sends none.
        service: Option<Bytes>,
        /// The part's frames (may be empty).
        body: Multipart,
    },
    /// FINAL (0.2) or REPLY (0.1) to a client: the last part of a reply.
    Final {
        /// The service that answered: `Some` in MDP/0.1 and RFC 18, `None` in
        /// the majortomo dialect.
        service: Option<Bytes>,
        /// The part's frames (may be empty).
        body: Multipart,
    },
    /// REQUEST to a worker, on behalf of the client at `client`.
    Request {
        /// The client's address; the worker echoes it in its reply.
        client: Bytes,
        /// The request body, one or more frames.
        body: Multipart,
    },
    /// HEARTBEAT to a worker.
    Heartbeat,
    /// DISCONNECT to a worker.
    Disconnect,
}

impl PeerCommand {
    /// Which command this is.
    pub fn command(&self) -> Command {
        match self {
            PeerCommand::Request { .. } => Command::Request,
            PeerCommand::Ready { .. } => Command::Ready,
            PeerCommand::Partial { .. } => Command::Partial,
            PeerCommand::Final { .. } => Command::Final,
            PeerCommand::Heartbeat => Command::Heartbeat,
            PeerCommand::Disconnect => Command::Disconnect,
        }
    }
}

impl BrokerCommand {
    /// Which command this is.
    pub fn command(&self) -> Command {
        match self {
            BrokerCommand::Partial { .. } => Command::Partial,
            BrokerCommand::Final { .. } => Command::Final,
            BrokerCommand::Request { .. } => Command::Request,
            BrokerCommand::Heartbeat => Command::Heartbeat,
            BrokerCommand::Disconnect => Command::Disconnect,
        }
    }
}
