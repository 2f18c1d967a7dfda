//! A seeded, deterministic hasher for the broker's maps.
//!
//! `std`'s `RandomState` reads randomness from the operating system, which a
//! sans-IO core must not do: it would make iteration order, and so the order
//! of some outputs, differ from run to run. Keys (identities, service names)
//! come from peers, so the hasher is SipHash-1-3 (what `std` uses), keyed by
//! a seed the application passes in
//! ([`BrokerConfig::hash_seed`](crate::BrokerConfig::hash_seed)).
//!
//! It is our own implementation rather than `std`'s `DefaultHasher` because
//! the broker hashes short keys (5-byte identities, short service names) on
//! every message, and `std`'s streaming code spends more on bookkeeping than
//! on SipHash rounds for them. This one computes exactly the same function
//! over the same bytes (the tests check it against `std` and against a plain
//! reference), with cheaper paths for what a `Bytes` key writes: an aligned
//! 8-byte length prefix (one compression, no buffering), then a short slice.

use std::hash::{BuildHasher, Hasher};

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

/// SipHash-1-3 (one compression round per 8-byte block, three finalisation
/// rounds) over the concatenation of every `write`, as `std`'s hasher
/// computes it.
#[derive(Debug, Clone)]
pub(crate) struct SipHasher13 {
    v0: u64,
    v1: u64,
    v2: u64,
    v3: u64,
    /// Bytes written but not yet compressed (fewer than 8), little-endian:
    /// the first of them in the low byte.
    tail: u64,
    ntail: usize,
    /// Bytes written in all; its low byte goes into the last block.
    length: usize,
}

impl SipHasher13 {
    pub(crate) fn new_with_keys(k0: u64, k1: u64) -> Self {
        SipHasher13 {
            v0: k0 ^ 0x736f_6d65_7073_6575,
            v1: k1 ^ 0x646f_7261_6e64_6f6d,
            v2: k0 ^ 0x6c79_6765_6e65_7261,
            v3: k1 ^ 0x7465_6462_7974_6573,
            tail: 0,
            ntail: 0,
            length: 0,
        }
    }

    #[inline(always)]
    fn round(&mut self) {
        self.v0 = self.v0.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(13) ^ self.v0;
        self.v0 = self.v0.rotate_left(32);
        self.v2 = self.v2.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(16) ^ self.v2;
        self.v0 = self.v0.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(21) ^ self.v0;
        self.v2 = self.v2.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(17) ^ self.v2;
        self.v2 = self.v2.rotate_left(32);
    }

    /// Absorbs one 8-byte message block.
    #[inline(always)]
    fn compress(&mut self, m: u64) {
        self.v3 ^= m;
        self.round();
        self.v0 ^= m;
    }
}

impl SipHasher13 {
    /// `write` when the bytes do not fit in the pending block. Out of line,
    /// so that the short case inlines into every map lookup.
    #[inline(never)]
    fn write_long(&mut self, mut msg: &[u8]) {
        self.length = self.length.wrapping_add(msg.len());
        if self.ntail > 0 {
            // Fill the pending block first.
            let take = msg.len().min(8 - self.ntail);
            let (head, rest) = msg.split_at(take);
            self.tail |= load_short(head) << (8 * self.ntail);
            self.ntail += take;
            if self.ntail < 8 {
                return;
            }
            self.compress(self.tail);
            msg = rest;
        }
        while let Some((block, rest)) = msg.split_first_chunk::<8>() {
            self.compress(u64::from_le_bytes(*block));
            msg = rest;
        }
        self.tail = load_short(msg);
        self.ntail = msg.len();
    }
}

impl Hasher for SipHasher13 {
    /// A short key (an identity) after its length prefix only fills the
    /// pending block.
    #[inline(always)]
    fn write(&mut self, msg: &[u8]) {
        if self.ntail + msg.len() < 8 {
            self.length = self.length.wrapping_add(msg.len());
            self.tail |= load_short(msg) << (8 * self.ntail);
            self.ntail += msg.len();
        } else {
            self.write_long(msg);
        }
    }

    /// A slice key's length prefix lands here, usually on a block boundary:
    /// then it is one compression, with no buffering.
    #[inline(always)]
    fn write_usize(&mut self, n: usize) {
        let bytes = n.to_ne_bytes();
        match <[u8; 8]>::try_from(bytes.as_slice()) {
            Ok(block) if self.ntail == 0 => {
                self.length = self.length.wrapping_add(8);
                self.compress(u64::from_le_bytes(block));
            }
            _ => self.write_long(&bytes),
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        if self.ntail == 0 {
            self.length = self.length.wrapping_add(8);
            self.compress(u64::from_le_bytes(n.to_ne_bytes()));
        } else {
            self.write_long(&n.to_ne_bytes());
        }
    }

    #[inline(always)]
    fn finish(&self) -> u64 {
        let mut s = self.clone();
        let last = ((self.length as u64 & 0xff) << 56) | self.tail;
        s.compress(last);
        s.v2 ^= 0xff;
        s.round();
        s.round();
        s.round();
        s.v0 ^ s.v1 ^ s.v2 ^ s.v3
    }
}

/// The bytes of `s` (fewer than 8) as a little-endian integer.
#[inline(always)]
fn load_short(s: &[u8]) -> u64 {
    let mut out = 0;
    let mut at = 0;
    if let Some(word) = s.first_chunk::<4>() {
        out = u64::from(u32::from_le_bytes(*word));
        at = 4;
    }
    if let Some(half) = s.get(at..).and_then(<[u8]>::first_chunk::<2>) {
        out |= u64::from(u16::from_le_bytes(*half)) << (8 * at);
        at += 2;
    }
    if let Some(&byte) = s.get(at) {
        out |= u64::from(byte) << (8 * at);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    // `DefaultHasher::new()` is SipHash-1-3 with key 0 (`SipHasher13` itself
    // is not public).
    use std::collections::hash_map::DefaultHasher;
    use std::hash::Hash;

    /// SipHash-1-3 written plainly from the paper: the message padded with
    /// zeros to a multiple of 8 bytes, the length's low byte last.
    fn reference(k0: u64, k1: u64, msg: &[u8]) -> u64 {
        let mut v =
            [k0 ^ 0x736f6d6570736575, k1 ^ 0x646f72616e646f6d, k0 ^ 0x6c7967656e657261, k1 ^ 0x7465646279746573];
        fn sipround(v: &mut [u64; 4]) {
            v[0] = v[0].wrapping_add(v[1]);
            v[1] = v[1].rotate_left(13);
            v[1] ^= v[0];
            v[0] = v[0].rotate_left(32);
            v[2] = v[2].wrapping_add(v[3]);
            v[3] = v[3].rotate_left(16);
            v[3] ^= v[2];
            v[0] = v[0].wrapping_add(v[3]);
            v[3] = v[3].rotate_left(21);
            v[3] ^= v[0];
            v[2] = v[2].wrapping_add(v[1]);
            v[1] = v[1].rotate_left(17);
            v[1] ^= v[2];
            v[2] = v[2].rotate_left(32);
        }
        let mut padded = msg.to_vec();
        while padded.len() % 8 != 7 {
            padded.push(0);
        }
        padded.push(msg.len() as u8);
        for block in padded.chunks(8) {
            let mut m = 0u64;
            for (i, b) in block.iter().enumerate() {
                m |= (*b as u64) << (8 * i);
            }
            v[3] ^= m;
            sipround(&mut v);
            v[0] ^= m;
        }
        v[2] ^= 0xff;
        for _ in 0..3 {
            sipround(&mut v);
        }
        v[0] ^ v[1] ^ v[2] ^ v[3]
    }

    fn ours(k0: u64, k1: u64, writes: &[Vec<u8>]) -> u64 {
        let mut h = SipHasher13::new_with_keys(k0, k1);
        for w in writes {
            h.write(w);
        }
        h.finish()
    }

    #[test]
    fn zero_key_matches_std_on_every_length() {
        let msg: Vec<u8> = (0..64u8).collect();
        for len in 0..=msg.len() {
            let mut std = DefaultHasher::new();
            std.write(&msg[..len]);
            assert_eq!(ours(0, 0, &[msg[..len].to_vec()]), std.finish(), "length {len}");
        }
    }

    #[test]
    fn keys_as_maps_hash_them_match_std() {
        // What a map hashes for a Bytes or PeerId key: length prefix, bytes.
        for key in [&b""[..], b"\0w\0\0\0\x07", b"service-0001", b"a long service name, over 16 bytes"] {
            let mut std = DefaultHasher::new();
            key.hash(&mut std);
            let mut h = SipHasher13::new_with_keys(0, 0);
            bytes::Bytes::copy_from_slice(key).hash(&mut h);
            assert_eq!(h.finish(), std.finish());
            let mut h = SipHasher13::new_with_keys(0, 0);
            crate::PeerId::from(bytes::Bytes::copy_from_slice(key)).hash(&mut h);
            assert_eq!(h.finish(), std.finish(), "PeerId hashes as its bytes do");
        }
    }

    #[test]
    fn seeds_give_different_keys() {
        let (a, b) = (Seeded::new(0), Seeded::new(1));
        assert_ne!((a.k0, a.k1), (b.k0, b.k1));
        assert_ne!(a.k0, a.k1);
        assert_ne!(a.hash_one(b"id"), b.hash_one(b"id"));
    }

    proptest! {
        /// Zero key, one write: exactly std's DefaultHasher.
        #[test]
        fn one_write_matches_std(msg in proptest::collection::vec(any::<u8>(), 0..100)) {
            let mut std = DefaultHasher::new();
            std.write(&msg);
            prop_assert_eq!(reference(0, 0, &msg), std.finish());
            prop_assert_eq!(ours(0, 0, &[msg]), std.finish());
        }

        /// Any key, any split of the message into writes (the length-prefix
        /// and u64 fast paths included): the plain reference over the
        /// concatenated bytes.
        #[test]
        fn any_writes_match_reference(
            k0 in any::<u64>(),
            k1 in any::<u64>(),
            writes in proptest::collection::vec(
                prop_oneof![
                    proptest::collection::vec(any::<u8>(), 0..20).prop_map(Write::Bytes),
                    any::<usize>().prop_map(Write::Usize),
                    any::<u64>().prop_map(Write::U64),
                ],
                0..8,
            ),
        ) {
            let mut h = SipHasher13::new_with_keys(k0, k1);
            let mut all = Vec::new();
            for w in &writes {
                match w {
                    Write::Bytes(b) => {
                        h.write(b);
                        all.extend_from_slice(b);
                    }
                    Write::Usize(n) => {
                        h.write_usize(*n);
                        all.extend_from_slice(&n.to_ne_bytes());
                    }
                    Write::U64(n) => {
                        h.write_u64(*n);
                        all.extend_from_slice(&n.to_ne_bytes());
                    }
                }
            }
            prop_assert_eq!(h.finish(), reference(k0, k1, &all));
        }
    }

    #[derive(Debug, Clone)]
    enum Write {
        Bytes(Vec<u8>),
        Usize(usize),
        U64(u64),
    }
}
