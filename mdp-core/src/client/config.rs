//! Client settings.

use std::time::Duration;

use crate::codec::Dialect;
use crate::config::{nonzero, Backoff, ConfigError};

/// How a [`Client`](super::Client) behaves.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The dialect to speak; the broker must answer in the same one.
    pub dialect: Dialect,
    /// How long to wait for the whole reply to one send of a request.
    /// Default 2.5 s, as in the ZeroMQ Guide. Must not be zero.
    pub timeout: Duration,
    /// How many times to send a request before giving up. Default 3. Must not
    /// be zero.
    pub tries: u32,
    /// How many requests may be outstanding at once, waiting in the client
    /// or on the wire. Default 1024.
    pub max_outstanding: usize,
    /// How many connections (*lanes*) to each broker the client keeps, each
    /// with its own identity. Each lane carries at most one request per
    /// service, so up to `lanes × brokers` requests for one service are
    /// served at once. Default 1. Must not be zero.
    ///
    /// The broker sees each lane as a client of its own, so its fairness
    /// between clients counts lanes: a client with 8 lanes gets 8 turns
    /// where a client with one gets one.
    pub lanes: usize,
    /// How many brokers the client knows, all serving the same services
    /// (see [`Client`](super::Client), "Several brokers"). The transport
    /// connects lane `l` to broker `l % brokers`
    /// ([`Client::broker_of`](super::Client::broker_of)). Default 1. Must not
    /// be zero.
    pub brokers: usize,
    /// How long a broker that failed is avoided: after a request on it timed
    /// out or its connection was lost, new requests and retries go to the
    /// other brokers for this long. Then it takes one request at a time
    /// until it answers one. Each failure in a row doubles it, up to its
    /// `max` (failures seen while the broker is avoided, on its other
    /// lanes, do not count); a reply from the broker resets it. Only used with more than
    /// one broker. Default 2.5 s (the default timeout: a broker that did
    /// not answer within a timeout is not asked again sooner), doubling up
    /// to 30 s, with jitter 0.25.
    pub broker_backoff: Backoff,
}

impl ClientConfig {
    /// A configuration with the defaults for everything but the dialect.
    pub fn new(dialect: Dialect) -> Self {
        ClientConfig {
            dialect,
            timeout: Duration::from_millis(2500),
            tries: 3,
            max_outstanding: 1024,
            lanes: 1,
            brokers: 1,
            broker_backoff: Backoff { initial: Duration::from_millis(2500), ..Backoff::default() },
        }
    }

    /// This configuration with `lanes` lanes.
    pub fn with_lanes(mut self, lanes: usize) -> Self {
        self.lanes = lanes;
        self
    }

    /// This configuration for `brokers` brokers.
    pub fn with_brokers(mut self, brokers: usize) -> Self {
        self.brokers = brokers;
        self
    }

    /// How many lanes the client has in all: `lanes × brokers`.
    pub fn total_lanes(&self) -> usize {
        self.lanes.saturating_mul(self.brokers)
    }

    /// Checks the settings that have no meaning when zero, and the backoff's
    /// jitter.
    pub fn validate(&self) -> Result<(), ConfigError> {
        nonzero(self.timeout.is_zero(), "timeout")?;
        nonzero(self.tries == 0, "tries")?;
        nonzero(self.lanes == 0, "lanes")?;
        nonzero(self.brokers == 0, "brokers")?;
        self.broker_backoff.validate()
    }
}
