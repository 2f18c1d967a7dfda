//! Deadline-ordered queues for timers.
//!
//! Timers in the broker are many (one per worker, and one per client's queue
//! of requests to a service, not one per request: a queue is in deadline
//! order, so only its front can be due) and move often (every message from a
//! worker pushes its expiry later). Re-keying a heap on every message would
//! cost O(log n) each time, so this queue is *lazy*: an entry may be stale,
//! and its owner checks on [`pop_due`] whether it still means anything,
//! re-inserting it with the real deadline if that moved later. Each live
//! timer has one live entry, so a tick costs O(log n) per timer that is
//! actually due and never scans every timer. Stale entries are dropped when
//! they outnumber live ones (the broker's `compact_timers`), so the queue
//! stays proportional to what the broker holds.
//!
//! [`pop_due`]: DeadlineQueue::pop_due

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

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

/// A min-heap of `(deadline, key)`, with stale entries allowed.
#[derive(Debug)]
pub(crate) struct DeadlineQueue<K: Ord> {
    heap: BinaryHeap<Reverse<(Instant, K)>>,
}

impl<K: Ord> Default for DeadlineQueue<K> {
    fn default() -> Self {
        DeadlineQueue { heap: BinaryHeap::new() }
    }
}

impl<K: Ord> DeadlineQueue<K> {
    /// Adds an entry.
    pub(crate) fn push(&mut self, at: Instant, key: K) {
        self.heap.push(Reverse((at, key)));
    }

    /// The earliest deadline, stale or not.
    pub(crate) fn peek(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Removes and returns the earliest entry if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, K)> {
        if self.peek()? <= now {
            self.heap.pop().map(|Reverse(entry)| entry)
        } else {
            None
        }
    }

    /// Number of entries, stale ones included.
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Drops the entries `live` rejects. O(n); callers run it only when
    /// stale entries outnumber live ones, so its cost is amortised.
    pub(crate) fn retain(&mut self, mut live: impl FnMut(&K) -> bool) {
        self.heap.retain(|Reverse((_, k))| live(k));
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
        q.push(t0 + Duration::from_secs(3), 'c');
        q.push(t0 + Duration::from_secs(1), 'a');
        q.push(t0 + Duration::from_secs(2), 'b');
        assert_eq!(q.peek(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(q.pop_due(t0), None);
        let now = t0 + Duration::from_secs(2);
        assert_eq!(q.pop_due(now).map(|e| e.1), Some('a'));
        assert_eq!(q.pop_due(now).map(|e| e.1), Some('b'));
        assert_eq!(q.pop_due(now), None);
        q.retain(|k| *k != 'c');
        assert_eq!(q.len(), 0);
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
