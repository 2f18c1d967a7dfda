//! Worker settings.

use std::time::Duration;

use bytes::Bytes;

use crate::codec::{Dialect, Found};
use crate::config::{nonzero, Backoff, ConfigError};

/// How a [`Worker`](super::Worker) behaves.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct WorkerConfig {
    /// The service to register. Must not be empty nor start with `mmi.`.
    pub service: Bytes,
    /// The dialect to speak; the broker must answer in the same one.
    pub dialect: Dialect,
    /// Send a HEARTBEAT after this long without sending anything. Default
    /// 2.5 s, as in the ZeroMQ Guide. Must not be zero.
    pub heartbeat_interval: Duration,
    /// Give the broker up after this many intervals without hearing from it.
    /// Default 3. Must not be zero.
    pub liveness: u32,
    /// Delays between registration attempts. An attempt fails when the
    /// broker goes silent or sends DISCONNECT before it sent a HEARTBEAT or
    /// REQUEST on that connection; a HEARTBEAT or REQUEST resets the count.
    pub backoff: Backoff,
}

impl WorkerConfig {
    /// A configuration with the defaults for everything but the service and
    /// the dialect.
    pub fn new(service: Bytes, dialect: Dialect) -> Self {
        WorkerConfig {
            service,
            dialect,
            heartbeat_interval: Duration::from_millis(2500),
            liveness: 3,
            backoff: Backoff::default(),
        }
    }

    /// Checks the settings: a service name that a broker accepts, and
    /// non-zero heartbeat interval and liveness, backoff jitter within
    /// `0.0..=1.0`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.service.is_empty() {
            return Err(ConfigError::EmptyService);
        }
        if self.service.starts_with(b"mmi.") {
            return Err(ConfigError::ReservedService(Found(self.service.clone())));
        }
        nonzero(self.heartbeat_interval.is_zero(), "heartbeat_interval")?;
        nonzero(self.liveness == 0, "liveness")?;
        self.backoff.validate()
    }

    /// How long the broker may stay silent.
    pub(super) fn silence_limit(&self) -> Duration {
        self.heartbeat_interval.saturating_mul(self.liveness)
    }
}
