//! A seeded, deterministic hasher for the broker's maps.
//!
//! `std`'s `RandomState` reads randomness from the operating system, which a
//! sans-IO core must not do: it would make iteration order, and so the order
//! of some outputs, differ from run to run. Keys (identities, service names)
//! come from peers, so the hasher is SipHash-1-3 (what `std` uses), keyed by
//! a seed the application passes in
//! ([`BrokerConfig::hash_seed`](crate::BrokerConfig::hash_seed)).
//!
//! SipHash-1-3 itself is the `siphasher` crate's (`std` does not export its
//! own with a key). It replaced a hand-written one with cheaper paths for
//! short `Bytes` keys, which saved about 1% of a broker round trip: less
//! than the 5% the issue set for keeping our own (see `BENCHMARKS.md`, "Code
//! shape (issue 15)").

use std::hash::BuildHasher;

use siphasher::sip::SipHasher13;

use crate::SplitMix64;

/// Builds SipHash-1-3 hashers keyed from a 64-bit seed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seeded {
    k0: u64,
    k1: u64,
}

impl Seeded {
    /// The 128-bit SipHash key is derived from `seed` by SplitMix64, so that
    /// every bit of the seed affects both halves; the same seed always gives
    /// the same key, and so the same iteration order.
    pub(crate) fn new(seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed);
        let k0 = rng.next_u64();
        Seeded { k0, k1: rng.next_u64() }
    }
}

impl BuildHasher for Seeded {
    type Hasher = SipHasher13;

    fn build_hasher(&self) -> SipHasher13 {
        SipHasher13::new_with_keys(self.k0, self.k1)
    }
}

/// A `HashMap` with the seeded hasher.
pub(crate) type Map<K, V> = std::collections::HashMap<K, V, Seeded>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_give_different_keys() {
        let (a, b) = (Seeded::new(0), Seeded::new(1));
        assert_ne!((a.k0, a.k1), (b.k0, b.k1));
        assert_ne!(a.k0, a.k1);
        assert_ne!(a.hash_one(b"id"), b.hash_one(b"id"));
    }

    #[test]
    fn the_same_seed_gives_the_same_hashes() {
        let (a, b) = (Seeded::new(7), Seeded::new(7));
        for key in [&b""[..], b"\0w\0\0\0\x07", b"a long service name, over 16 bytes"] {
            assert_eq!(a.hash_one(key), b.hash_one(key));
        }
    }

    #[test]
    fn zero_key_is_std_and_a_seed_is_not() {
        // Keyed with zeros it is exactly `std`'s `DefaultHasher::new()`
        // (SipHash-1-3, key 0), for the bytes a map hashes for a `Bytes` or
        // `PeerId` key; a seed's key gives something else.
        use std::hash::{Hash, Hasher};
        let key = bytes::Bytes::from_static(b"worker-1");
        let mut std = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut std);
        let std = std.finish();
        let zero = |k: &dyn Fn(&mut SipHasher13)| {
            let mut h = SipHasher13::new_with_keys(0, 0);
            k(&mut h);
            h.finish()
        };
        assert_eq!(zero(&|h| key.hash(h)), std);
        assert_eq!(zero(&|h| crate::PeerId::from(key.clone()).hash(h)), std, "PeerId hashes as its bytes do");
        assert_ne!(Seeded::new(0).hash_one(&key), std);
    }
}
