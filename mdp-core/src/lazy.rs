//! Lazy deletion: the one scheme behind the broker's queues, used by its
//! idle lists, client turns, worker-less services ([`Ring`]) and timers
//! (`crate::time::DeadlineQueue`).
//!
//! Each such queue holds entries that name a record kept elsewhere (a
//! worker, a client's queue, a service), and records leave a queue far more
//! often than the queue is read: a worker dies, a client is served, a
//! deadline moves. Removing from the middle of a deque or a heap costs
//! O(n), so removal is lazy:
//! - each push issues a [`Token`], never reused within that queue;
//! - the record keeps the token of its one live entry, and drops it when it
//!   leaves the queue;
//! - an entry whose record no longer holds its token is stale: it is skipped
//!   when it reaches the front, and swept out in one O(n) pass once stale
//!   entries outnumber live ones ([`compaction_due`]). The owner runs the
//!   sweep after records leave, where it can look them up.
//!
//! So a queue stays O(live) in size, and each operation is amortised O(1)
//! (O(log n) for the heap).
//!
//! The liveness check belongs to the queue's owner, who knows where the
//! records are. Where the records' keys are shared by several queues (slab
//! slots reused across services), the check must also make sure that the
//! record belongs to this queue: tokens are unique only within one.

use std::collections::VecDeque;

/// Names one entry of a lazy queue: see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Token(u64);

/// Issues a queue's tokens, each once.
#[derive(Debug, Default)]
pub(crate) struct Tokens(u64);

impl Tokens {
    pub(crate) fn issue(&mut self) -> Token {
        let token = Token(self.0);
        self.0 += 1;
        token
    }
}

/// Whether a lazy queue of `len` entries, `live` of them live, should sweep
/// out its stale ones: once they outnumber the live ones, with some slack
/// so that a small queue is not swept on every removal. The one rule for
/// every lazy queue.
pub(crate) fn compaction_due(len: usize, live: usize) -> bool {
    len > 2 * live + 16
}

/// A FIFO of keys, each entry pushed at the back (or, to go next, at the
/// front), with lazy removal. It counts its live entries itself: its owner
/// tells it when one goes ([`Ring::forget`], [`Ring::took`]).
#[derive(Debug)]
pub(crate) struct Ring<K> {
    entries: VecDeque<(K, Token)>,
    live: usize,
    tokens: Tokens,
}

impl<K> Default for Ring<K> {
    fn default() -> Self {
        Ring { entries: VecDeque::new(), live: 0, tokens: Tokens::default() }
    }
}

impl<K> Ring<K> {
    /// How many entries are live.
    pub(crate) fn live(&self) -> usize {
        self.live
    }

    /// Adds a live entry for `key` at the back; its record keeps the token.
    pub(crate) fn push_back(&mut self, key: K) -> Token {
        let token = self.tokens.issue();
        self.entries.push_back((key, token));
        self.live += 1;
        token
    }

    /// Adds a live entry for `key` at the front, to go next.
    pub(crate) fn push_front(&mut self, key: K) -> Token {
        let token = self.tokens.issue();
        self.entries.push_front((key, token));
        self.live += 1;
        token
    }

    /// Pops the front entry, live or stale. The caller checks it and, if it
    /// is live, drops its record's token and calls [`took`](Self::took).
    /// (For callers whose check finds the record they then change, so that
    /// it is found once: otherwise use [`pop`](Self::pop).)
    pub(crate) fn pop_front(&mut self) -> Option<(K, Token)> {
        self.entries.pop_front()
    }

    /// The entry just popped was live, and its record dropped the token.
    pub(crate) fn took(&mut self) {
        self.live -= 1;
    }

    /// Pops the front live entry, skipping stale ones; `is_live` tells them
    /// apart. The caller drops the record's token.
    pub(crate) fn pop(&mut self, mut is_live: impl FnMut(&K, Token) -> bool) -> Option<K> {
        while let Some((key, token)) = self.entries.pop_front() {
            if is_live(&key, token) {
                self.live -= 1;
                return Some(key);
            }
        }
        None
    }

    /// A record dropped the token of its live entry, which is now stale.
    /// The owner calls [`compact`](Self::compact) once it can.
    pub(crate) fn forget(&mut self) {
        self.live -= 1;
    }

    /// Sweeps out the stale entries if [`compaction_due`] says so; `is_live`
    /// tells them apart.
    pub(crate) fn compact(&mut self, mut is_live: impl FnMut(&K, Token) -> bool) {
        if compaction_due(self.entries.len(), self.live) {
            self.entries.retain(|(key, token)| is_live(key, *token));
        }
    }

    /// Drops every entry (their records are gone too).
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.live = 0;
    }

    /// Number of entries, stale ones included.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records are a map from key to the token they hold.
    type Records = std::collections::HashMap<u32, Token>;

    #[test]
    fn pop_skips_stale_entries_and_front_goes_first() {
        let mut ring = Ring::default();
        let mut held = Records::new();
        for k in 0..3 {
            held.insert(k, ring.push_back(k));
        }
        held.insert(9, ring.push_front(9));
        held.remove(&0);
        ring.forget();
        assert_eq!(ring.live(), 3);
        let mut popped = Vec::new();
        while let Some(k) = ring.pop(|k, t| held.get(k) == Some(&t)) {
            held.remove(&k);
            popped.push(k);
        }
        assert_eq!(popped, [9, 1, 2]);
        assert_eq!(ring.live(), 0);
    }

    #[test]
    fn a_re_pushed_key_leaves_its_old_entry_stale() {
        let mut ring = Ring::default();
        let mut held = Records::new();
        held.insert(1, ring.push_back(1));
        held.insert(2, ring.push_back(2));
        // Key 1 leaves and comes back: only its new entry, behind 2, counts.
        held.remove(&1);
        ring.forget();
        held.insert(1, ring.push_back(1));
        let first = ring.pop(|k, t| held.get(k) == Some(&t));
        assert_eq!(first, Some(2));
    }

    #[test]
    fn stale_entries_are_swept_once_they_outnumber_live_ones() {
        let mut ring = Ring::default();
        let mut held = Records::new();
        held.insert(0, ring.push_back(0));
        for k in 1..1000 {
            held.insert(k, ring.push_back(k));
            held.remove(&k);
            ring.forget();
            ring.compact(|k, t| held.get(k) == Some(&t));
            assert!(ring.len() <= 2 * ring.live() + 17, "{} entries for {} live", ring.len(), ring.live());
        }
        assert_eq!(ring.live(), 1);
        assert_eq!(ring.pop(|k, t| held.get(k) == Some(&t)), Some(0));
    }
}
