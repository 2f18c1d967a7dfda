//! Worker settings, and the backoff between reconnection attempts.

use std::time::Duration;

use bytes::Bytes;

use crate::codec::{Dialect, Found};
use crate::config::{nonzero, ConfigError};
use crate::SplitMix64;

/// How long a worker waits before registering again after losing the broker.
///
/// The delay for the `n`th consecutive failed attempt (counting from 0) is
/// `min(initial × 2ⁿ, max)`, shortened by a random fraction of up to `jitter`
/// of itself, so it lies in `(base × (1 − jitter), base]` and never exceeds
/// `max`. The jitter keeps many workers that lost the same broker from all
/// coming back in the same instant. An attempt fails when the broker goes
/// silent or sends DISCONNECT before it sent a HEARTBEAT or REQUEST on that
/// connection; a HEARTBEAT or REQUEST resets the count.
///
/// The randomness is a small deterministic generator seeded with `seed`: two
/// workers with the same seed wait the same delays, so tests can predict
/// them. Give each worker of a fleet its own seed.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Backoff {
    /// The first delay. Default 1 s.
    pub initial: Duration,
    /// The longest delay. Default 30 s.
    pub max: Duration,
    /// The largest fraction of the delay that jitter may take off, in
    /// `0.0..=1.0`. Default 0.25.
    pub jitter: f64,
    /// Seed of the jitter's generator. Default 0.
    pub seed: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { initial: Duration::from_secs(1), max: Duration::from_secs(30), jitter: 0.25, seed: 0 }
    }
}

impl Backoff {
    /// The delay before the attempt after `failures` consecutive failures.
    pub(super) fn delay(&self, failures: u32, rng: &mut SplitMix64) -> Duration {
        let mut base = self.initial.min(self.max);
        // 64 doublings take any non-zero duration past Duration::MAX, so the
        // loop stays short however long the broker stays away.
        for _ in 0..failures.min(64) {
            base = base.saturating_mul(2).min(self.max);
        }
        let factor = 1.0 - self.jitter * rng.unit();
        // try_: a huge `max` times a factor near 1 may round past what a
        // Duration holds; then the unjittered delay will do.
        Duration::try_from_secs_f64(base.as_secs_f64() * factor).map_or(base, |d| d.min(base))
    }
}

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
    /// Delays between reconnection attempts.
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
        // `contains` is false for NaN too.
        if !(0.0..=1.0).contains(&self.backoff.jitter) {
            return Err(ConfigError::InvalidJitter(self.backoff.jitter));
        }
        Ok(())
    }

    /// How long the broker may stay silent.
    pub(super) fn silence_limit(&self) -> Duration {
        self.heartbeat_interval.saturating_mul(self.liveness)
    }
}
