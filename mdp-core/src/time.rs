//! Timers, and the one rule for deadlines too far away.
//!
//! Two shapes, for two sizes:
//! * [`TimerTable`]: a client's or a worker's few timers, each named by why
//!   it is set (a [`WorkerTimer`], a request's id). Exact: setting a timer
//!   replaces its deadline, so the earliest entry is always a live one.
//! * [`DeadlineQueue`]: the broker's many, lazily re-checked (below).
//!
//! A deadline too far away for `Instant` to hold never comes: [`deadline`]
//! returns `None` for it, and no timer is set.
//!
//! [`WorkerTimer`]: crate::WorkerTimer
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
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::time::{Duration, Instant};

use crate::lazy::{compaction_due, Token, Tokens};

/// `at + d`, or `None` (never) if that is too far away for `Instant` to
/// hold: an application may well configure `Duration::MAX` to mean "never".
pub(crate) fn deadline(at: Instant, d: Duration) -> Option<Instant> {
    at.checked_add(d)
}

/// Whether `deadline` has come at `now`; never, for a deadline that is never.
pub(crate) fn passed(deadline: Option<Instant>, now: Instant) -> bool {
    deadline.is_some_and(|at| at <= now)
}

/// Whether deadline `a` comes before `b`, a deadline that is never coming
/// after every other.
pub(crate) fn earlier(a: Option<Instant>, b: Option<Instant>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a < b,
        (a, b) => a.is_some() && b.is_none(),
    }
}

/// The earlier of two deadlines, either of which may be never.
pub(crate) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
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

/// Timers named by `K`, the reason each is set: at most one deadline per
/// reason. O(log n) to set, clear or find the earliest.
#[derive(Debug, Clone)]
pub(crate) struct TimerTable<K> {
    by_reason: BTreeMap<K, Instant>,
    by_time: BTreeSet<(Instant, K)>,
}

impl<K> Default for TimerTable<K> {
    fn default() -> Self {
        TimerTable { by_reason: BTreeMap::new(), by_time: BTreeSet::new() }
    }
}

impl<K: Ord + Copy> TimerTable<K> {
    /// Sets (or moves) the timer for `reason` to `at`; `None` (never)
    /// clears it.
    pub(crate) fn set(&mut self, reason: K, at: Option<Instant>) {
        self.clear(reason);
        if let Some(at) = at {
            self.by_reason.insert(reason, at);
            self.by_time.insert((at, reason));
        }
    }

    /// Clears the timer for `reason`, if set.
    pub(crate) fn clear(&mut self, reason: K) {
        if let Some(old) = self.by_reason.remove(&reason) {
            self.by_time.remove(&(old, reason));
        }
    }

    /// Clears every timer.
    pub(crate) fn clear_all(&mut self) {
        self.by_reason.clear();
        self.by_time.clear();
    }

    /// When the timer for `reason` fires, if it is set.
    pub(crate) fn get(&self, reason: K) -> Option<Instant> {
        self.by_reason.get(&reason).copied()
    }

    /// The earliest timer and why it is set, never earlier than `now`: a
    /// timer already due is due now, so a driver that sleeps until it does
    /// not sleep into the past.
    pub(crate) fn next(&self, now: Instant) -> Option<(Instant, K)> {
        self.by_time.first().map(|&(at, why)| (at.max(now), why))
    }

    /// The reasons whose timers are due at `now`, earliest first.
    pub(crate) fn due(&self, now: Instant) -> impl Iterator<Item = K> + '_ {
        self.by_time.iter().take_while(move |(at, _)| *at <= now).map(|(_, k)| *k)
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
    fn a_timer_table_keeps_one_deadline_per_reason() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut t = TimerTable::default();
        t.set('a', Some(t0 + s(5)));
        t.set('b', Some(t0 + s(3)));
        assert_eq!(t.next(t0), Some((t0 + s(3), 'b')));
        assert_eq!(t.next(t0 + s(4)), Some((t0 + s(4), 'b')), "a due timer is due now");
        t.set('b', Some(t0 + s(9))); // moved later: 'a' is now the earliest
        assert_eq!(t.next(t0), Some((t0 + s(5), 'a')));
        assert_eq!(t.get('b'), Some(t0 + s(9)));
        assert_eq!(t.due(t0 + s(9)).collect::<Vec<_>>(), ['a', 'b']);
        t.clear('a');
        assert_eq!(t.due(t0 + s(8)).count(), 0);
        t.set('b', None); // never
        assert_eq!(t.get('b'), None);
        t.set('c', Some(t0));
        t.clear_all();
        assert_eq!(t.next(t0), None);
    }

    #[test]
    fn too_far_away_is_never() {
        let t0 = Instant::now();
        let soon = deadline(t0, Duration::from_secs(5));
        assert_eq!(soon, Some(t0 + Duration::from_secs(5)));
        assert_eq!(deadline(t0, Duration::MAX), None);
        assert!(passed(soon, t0 + Duration::from_secs(5)) && !passed(soon, t0));
        assert!(!passed(None, t0 + Duration::from_secs(1 << 40)));
        assert_eq!(earliest(None, soon), soon);
        assert_eq!(earliest(soon, Some(t0)), Some(t0));
        assert_eq!(earliest(None, None), None);
        assert!(earlier(Some(t0), soon) && earlier(soon, None));
        assert!(!earlier(soon, soon) && !earlier(None, soon) && !earlier(None, None));
    }
}
