//! A hash map whose entries also have a stable index.
//!
//! The broker finds a worker or a service by key once per message (the
//! sender's identity, the requested service), but then follows links between
//! records: a service's idle list names workers, a worker names its service.
//! Following such a link by key costs a SipHash and a probe; by index it is
//! a bounds check. So records live in a `Vec` of slots, the keyed map only
//! maps a key to its slot, and links hold slot indices.
//!
//! An index stays valid while its entry lives. When an entry is removed its
//! slot is reused by a later insert, so a link that may outlive its target
//! must be checked against something the target holds: the broker's lazy
//! queues (`crate::lazy`) name records by slot and token, and a record
//! keeps the token of its live entry.
//!
//! The slots are the `slab` crate's: storage is bounded by the most entries
//! ever held at once, as free slots are reused before it grows.

use std::borrow::Borrow;
use std::collections::hash_map::Entry;
use std::hash::Hash;

use crate::hash::{Map, Seeded};

#[derive(Debug)]
pub(crate) struct Slab<K, V> {
    ids: Map<K, usize>,
    slots: slab::Slab<(K, V)>,
}

impl<K: Hash + Eq + Clone, V> Slab<K, V> {
    pub(crate) fn new(seed: Seeded) -> Self {
        Slab { ids: Map::with_hasher(seed), slots: slab::Slab::new() }
    }

    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    /// The index of `key`'s entry.
    pub(crate) fn id<Q>(&self, key: &Q) -> Option<usize>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.ids.get(key).copied()
    }

    pub(crate) fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.ids.contains_key(key)
    }

    pub(crate) fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.at(self.id(key)?)
    }

    pub(crate) fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get_full_mut(key).map(|(_, v)| v)
    }

    /// `key`'s entry and its index.
    pub(crate) fn get_full_mut<Q>(&mut self, key: &Q) -> Option<(usize, &mut V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let id = self.id(key)?;
        Some((id, self.at_mut(id)?))
    }

    /// The entry at index `id`, if that slot is in use.
    pub(crate) fn at(&self, id: usize) -> Option<&V> {
        self.slots.get(id).map(|(_, v)| v)
    }

    pub(crate) fn at_mut(&mut self, id: usize) -> Option<&mut V> {
        self.entry_at_mut(id).map(|(_, v)| v)
    }

    /// The key and entry at index `id`, if that slot is in use.
    pub(crate) fn entry_at_mut(&mut self, id: usize) -> Option<(&K, &mut V)> {
        self.slots.get_mut(id).map(|(k, v)| (&*k, v))
    }

    /// Inserts or replaces `key`'s entry; returns its index (unchanged on
    /// replacement).
    pub(crate) fn insert(&mut self, key: K, value: V) -> usize {
        match self.ids.entry(key) {
            Entry::Occupied(e) => {
                let id = *e.get();
                if let Some((_, v)) = self.slots.get_mut(id) {
                    *v = value;
                }
                id
            }
            Entry::Vacant(e) => {
                let id = self.slots.insert((e.key().clone(), value));
                e.insert(id);
                id
            }
        }
    }

    pub(crate) fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let id = self.ids.remove(key)?;
        self.slots.try_remove(id).map(|(_, v)| v)
    }

    /// Removes the entry at index `id`, if that slot is in use, and returns
    /// its key and value.
    pub(crate) fn remove_at(&mut self, id: usize) -> Option<(K, V)> {
        let (key, value) = self.slots.try_remove(id)?;
        self.ids.remove(&key);
        Some((key, value))
    }

    /// Every entry, in index order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.slots.iter().map(|(_, (k, v))| (k, v))
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &K> {
        self.iter().map(|(k, _)| k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_are_stable_and_slots_reused() {
        let mut s: Slab<u32, &str> = Slab::new(Seeded::new(7));
        let a = s.insert(1, "a");
        let b = s.insert(2, "b");
        assert_ne!(a, b);
        assert_eq!(s.insert(1, "A"), a, "replacing keeps the index");
        assert_eq!(s.at(a), Some(&"A"));
        assert_eq!(s.get_full_mut(&2).map(|(id, v)| (id, *v)), Some((b, "b")));
        assert_eq!(s.remove(&1), Some("A"));
        assert_eq!(s.at(a), None);
        assert_eq!(s.id(&1), None);
        assert_eq!(s.insert(3, "c"), a, "a free slot is reused before growing");
        assert_eq!(s.remove_at(b), Some((2, "b")));
        assert_eq!(s.remove_at(b), None);
        assert_eq!(s.len(), 1);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![(&3, &"c")]);
        // Storage is bounded by the most entries held at once.
        for n in 10..1000 {
            let id = s.insert(n, "n");
            assert!(id < 2, "slot {id} for at most two entries");
            s.remove(&n);
        }
    }
}
