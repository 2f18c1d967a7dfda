//! What the three roles' configurations share: the error for a setting that
//! cannot work, and the backoff after failures.

use std::time::Duration;

use crate::codec::Found;
use crate::SplitMix64;

/// A setting that cannot work, found by [`BrokerConfig::validate`],
/// [`ClientConfig::validate`] or [`WorkerConfig::validate`], and so by
/// `Broker::new`, `Client::new` and `Worker::new`, which refuse such a
/// configuration instead of changing it behind the application's back.
///
/// [`BrokerConfig::validate`]: crate::BrokerConfig::validate
/// [`ClientConfig::validate`]: crate::ClientConfig::validate
/// [`WorkerConfig::validate`]: crate::WorkerConfig::validate
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A duration or count that has no meaning when zero.
    #[error("{0} is zero")]
    Zero(&'static str),
    /// A count below the least that can work.
    #[error("{setting} is {value}, below the least that works, {min}: {why}")]
    TooSmall {
        /// The setting, by its field name.
        setting: &'static str,
        /// Its value.
        value: usize,
        /// The least value that works.
        min: usize,
        /// Why.
        why: &'static str,
    },
    /// The worker's service name is empty.
    #[error("the service name is empty")]
    EmptyService,
    /// The worker's service name starts with `mmi.`, which RFC 8 reserves
    /// for the broker: brokers disconnect workers that register such a name.
    #[error("service {0} starts with \"mmi.\", which is reserved for the broker")]
    ReservedService(Found),
    /// The backoff's jitter is not within `0.0..=1.0`.
    #[error("backoff jitter {0} is not within 0.0..=1.0")]
    InvalidJitter(f64),
}

/// `Err(Zero(name))` if `zero`.
pub(crate) fn nonzero(zero: bool, name: &'static str) -> Result<(), ConfigError> {
    if zero {
        Err(ConfigError::Zero(name))
    } else {
        Ok(())
    }
}

/// How long to wait after failures before trying again: a worker before
/// registering again after losing its broker
/// ([`WorkerConfig::backoff`](crate::WorkerConfig::backoff)), a client before
/// sending to a broker that failed again
/// ([`ClientConfig::broker_backoff`](crate::ClientConfig::broker_backoff)).
///
/// The delay for the `n`th consecutive failed attempt (counting from 0) is
/// `min(initial × 2ⁿ, max)`, shortened by a random fraction of up to `jitter`
/// of itself, so it lies in `(base × (1 − jitter), base]` and never exceeds
/// `max`. The jitter keeps many peers that lost the same broker from all
/// coming back in the same instant. What counts as a failure, and what
/// resets the count, each role says where it uses the backoff.
///
/// The randomness is a small deterministic generator seeded with `seed`: two
/// peers with the same seed wait the same delays, so tests can predict
/// them. Give each peer of a fleet its own seed.
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
    /// Checks that the jitter is within `0.0..=1.0`.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        // `contains` is false for NaN too.
        if (0.0..=1.0).contains(&self.jitter) {
            Ok(())
        } else {
            Err(ConfigError::InvalidJitter(self.jitter))
        }
    }

    /// The delay before the attempt after `failures` consecutive failures.
    pub(crate) fn delay(&self, failures: u32, rng: &mut SplitMix64) -> Duration {
        let mut base = self.initial.min(self.max);
        // 64 doublings take any non-zero duration past Duration::MAX, so the
        // loop stays short however long the broker stays away.
        for _ in 0..failures.min(64) {
            base = base.saturating_mul(2).min(self.max);
        }
        if self.jitter == 0.0 {
            // Exact: no round trip through floating point.
            return base;
        }
        let factor = 1.0 - self.jitter * rng.unit();
        // try_: a huge `max` times a factor near 1 may round past what a
        // Duration holds; then the unjittered delay will do.
        Duration::try_from_secs_f64(base.as_secs_f64() * factor).map_or(base, |d| d.min(base))
    }
}
