//! Client settings.

use std::time::Duration;

use crate::codec::Dialect;

use crate::config::{nonzero, ConfigError};

/// How a [`Client`](super::Client) behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// How many connections (*lanes*) to the broker the client keeps, each
    /// with its own identity. Each lane carries at most one request per
    /// service, so up to `lanes` requests for one service are served at
    /// once. Default 1. Must not be zero.
    ///
    /// The broker sees each lane as a client of its own, so its fairness
    /// between clients counts lanes: a client with 8 lanes gets 8 turns
    /// where a client with one gets one.
    pub lanes: usize,
}

impl ClientConfig {
    /// A configuration with the defaults for everything but the dialect.
    pub fn new(dialect: Dialect) -> Self {
        ClientConfig { dialect, timeout: Duration::from_millis(2500), tries: 3, max_outstanding: 1024, lanes: 1 }
    }

    /// This configuration with `lanes` lanes.
    pub fn with_lanes(mut self, lanes: usize) -> Self {
        self.lanes = lanes;
        self
    }

    /// Checks the settings that have no meaning when zero.
    pub fn validate(&self) -> Result<(), ConfigError> {
        nonzero(self.timeout.is_zero(), "timeout")?;
        nonzero(self.tries == 0, "tries")?;
        nonzero(self.lanes == 0, "lanes")
    }
}
