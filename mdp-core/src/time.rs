//! Deadline-ordered queues for timers.
//!
//! Timers in the broker are many (one per worker, and one per client's queue
//! of requests to a service, not one per request: a queue is in deadline
//! order, so only its front can be due) and move often (every message from a
//! worker pushes its expiry later). Re-keying a heap on every message would
//! cost O(log n) each time, so this queue is *lazy* (`crate::lazy`): each
//! push issues a [`Token`], the timer's owner keeps the token of its live
//! entry, and on [`pop_due`] the owner checks whether the entry is still
//! the live one, pushing a new entry if the real deadline moved later. Each
//! live timer has one live entry, so a tick costs O(log n) per timer that
//! is actually due and never scans every timer. Stale entries are swept out
//! when they outnumber live ones (the broker's `compact_timers`), so the
//! queue stays proportional to what the broker holds.
//!
//! [`pop_due`]: DeadlineQueue::pop_due

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use crate::lazy::{compaction_due, Token, Tokens};

/// `at + d`, or the latest instant after `at` that can be represented if that
/// overflows: a timer set so far away never fires in practice, and an
/// application may well configure `Duration::MAX` to mean "never".
pub(crate) fn add_saturating(at: Instant, d: Duration) -> Instant {
    if let Some(t) = at.checked_add(d) {
        return t;
    }
    // Add ever smaller steps: at most one success per step size after the
    // first failure, so this takes about 2 × 96 tries at worst.
    let (mut t, mut step) = (at, d / 2);
    while !step.is_zero() {
        match t.checked_add(step) {
            Some(later) => t = later,
            None => step /= 2,
        }
    }
    t
}

/// One entry: ordered by deadline, then by token, which is unique, so keys
/// are never compared.
#[derive(Debug)]
struct Entry<K> {
    at: Instant,
    token: Token,
    key: K,
}

impl<K> PartialEq for Entry<K> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.token) == (other.at, other.token)
    }
}

impl<K> Eq for Entry<K> {}

impl<K> PartialOrd for Entry<K> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<K> Ord for Entry<K> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.token).cmp(&(other.at, other.token))
    }
}

/// A min-heap of `(deadline, token, key)`, with stale entries allowed.
#[derive(Debug)]
pub(crate) struct DeadlineQueue<K> {
    heap: BinaryHeap<Reverse<Entry<K>>>,
    tokens: Tokens,
}

impl<K> Default for DeadlineQueue<K> {
    fn default() -> Self {
        DeadlineQueue { heap: BinaryHeap::new(), tokens: Tokens::default() }
    }
}

impl<K> DeadlineQueue<K> {
    /// Adds an entry; the timer's owner keeps the token to know it later.
    pub(crate) fn push(&mut self, at: Instant, key: K) -> Token {
        let token = self.tokens.issue();
        self.heap.push(Reverse(Entry { at, token, key }));
        token
    }

    /// The earliest deadline, stale or not.
    pub(crate) fn peek(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(e)| e.at)
    }

    /// Removes and returns the earliest entry if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Token, K)> {
        if self.peek()? <= now {
            self.heap.pop().map(|Reverse(e)| (e.token, e.key))
        } else {
            None
        }
    }

    /// Number of entries, stale ones included.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Sweeps out the entries `is_live` rejects, if [`compaction_due`] says
    /// so for `live` live entries. O(n) when it sweeps, so amortised O(1).
    pub(crate) fn compact(&mut self, live: usize, mut is_live: impl FnMut(&K, Token) -> bool) {
        if compaction_due(self.heap.len(), live) {
            self.heap.retain(|Reverse(e)| is_live(&e.key, e.token));
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // a test starts its virtual clock from the real one
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pops_in_deadline_order_and_only_when_due() {
        let t0 = Instant::now();
        let mut q = DeadlineQueue::default();
        let c = q.push(t0 + Duration::from_secs(3), 'c');
        let a = q.push(t0 + Duration::from_secs(1), 'a');
        q.push(t0 + Duration::from_secs(2), 'b');
        assert_ne!(a, c);
        assert_eq!(q.peek(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(q.pop_due(t0), None);
        let now = t0 + Duration::from_secs(2);
        assert_eq!(q.pop_due(now), Some((a, 'a')));
        assert_eq!(q.pop_due(now).map(|e| e.1), Some('b'));
        assert_eq!(q.pop_due(now), None);
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn equal_deadlines_pop_in_push_order_and_compaction_keeps_live_entries() {
        let t0 = Instant::now();
        let mut q = DeadlineQueue::default();
        let tokens: Vec<Token> = (0..100).map(|k| q.push(t0, k)).collect();
        // Only the entry of key 7 is live: the rest are swept out.
        q.compact(1, |k, t| *k == 7 && t == tokens[7]);
        assert_eq!(q.len(), 1);
        assert_eq!(q.pop_due(t0), Some((tokens[7], 7)));
        let (first, second) = (q.push(t0, 1), q.push(t0, 2));
        assert_eq!(q.pop_due(t0), Some((first, 1)));
        assert_eq!(q.pop_due(t0), Some((second, 2)));
    }

    #[test]
    fn add_saturating_adds_or_stops_at_the_last_instant() {
        let t0 = Instant::now();
        assert_eq!(add_saturating(t0, Duration::from_secs(5)), t0 + Duration::from_secs(5));
        let far = add_saturating(t0, Duration::MAX);
        assert!(far > t0 + Duration::from_secs(1 << 40));
        assert_eq!(far.checked_add(Duration::from_nanos(1)), None);
        assert_eq!(add_saturating(far, Duration::from_secs(1)), far);
    }
}
