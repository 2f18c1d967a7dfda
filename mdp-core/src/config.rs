//! What the three roles' configurations share: the error for a setting that
//! cannot work.

use crate::codec::Found;

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
