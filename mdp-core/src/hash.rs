//! A seeded, deterministic hasher for the broker's maps.
//!
//! `std`'s `RandomState` reads randomness from the operating system, which a
//! sans-IO core must not do: it would make iteration order, and so the order
//! of some outputs, differ from run to run. Keys (identities, service names)
//! come from peers, so the hasher is SipHash, keyed by a seed the application
//! passes in ([`BrokerConfig::hash_seed`](crate::BrokerConfig::hash_seed)).

use std::collections::hash_map::DefaultHasher;
use std::hash::{BuildHasher, Hasher};

/// Builds SipHash hashers whose state starts from a seed.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Seeded(pub(crate) u64);

impl BuildHasher for Seeded {
    type Hasher = DefaultHasher;

    fn build_hasher(&self) -> DefaultHasher {
        let mut h = DefaultHasher::new();
        h.write_u64(self.0);
        h
    }
}

/// A `HashMap` with the seeded hasher.
pub(crate) type Map<K, V> = std::collections::HashMap<K, V, Seeded>;
