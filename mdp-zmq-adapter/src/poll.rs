//! How long to poll, and the poll itself: one piece for the broker, the
//! client and the worker.

use std::time::{Duration, Instant};

use crate::AdapterError;

/// Longest wait in one poll, so that a stop request is seen promptly even
/// when no timer is due.
pub(crate) const MAX_POLL: Duration = Duration::from_millis(100);

/// Milliseconds to poll for: until `deadline`, at most [`MAX_POLL`], and
/// [`MAX_POLL`] when there is none.
///
/// Rounds up: libzmq polls in whole milliseconds, and a deadline 0.3 ms away
/// rounded down would be polled for 0 ms, over and over, until it passes (a
/// busy loop of up to a millisecond before every timer). Waking up to a
/// millisecond late costs nothing: the cores' timers are far coarser.
pub(crate) fn poll_ms(deadline: Option<Instant>, now: Instant) -> i64 {
    let wait = deadline.map_or(MAX_POLL, |d| d.saturating_duration_since(now)).min(MAX_POLL);
    // At most MAX_POLL's 100_000 µs, so the cast cannot truncate.
    wait.as_micros().div_ceil(1000) as i64
}

/// The earlier of two deadlines, either of which may be absent.
pub(crate) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Polls the given items for `ms` milliseconds, treating EINTR (a signal,
/// such as the one a Ctrl-C handler catches) as a wake-up, not an error.
pub(crate) fn poll(items: &mut [zmq::PollItem<'_>], ms: i64) -> Result<(), AdapterError> {
    match zmq::poll(items, ms) {
        Ok(_) | Err(zmq::Error::EINTR) => Ok(()),
        Err(e) => Err(AdapterError::zmq("poll")(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_under_a_millisecond_away_is_one_millisecond_not_zero() {
        let now = Instant::now();
        assert_eq!(poll_ms(Some(now + Duration::from_micros(300)), now), 1);
        assert_eq!(poll_ms(Some(now + Duration::from_micros(1)), now), 1);
    }

    #[test]
    fn whole_milliseconds_stay_and_fractions_round_up() {
        let now = Instant::now();
        assert_eq!(poll_ms(Some(now + Duration::from_millis(7)), now), 7);
        assert_eq!(poll_ms(Some(now + Duration::from_micros(7_001)), now), 8);
    }

    #[test]
    fn no_deadline_or_a_far_one_waits_max_poll() {
        let now = Instant::now();
        let max = MAX_POLL.as_millis() as i64;
        assert_eq!(poll_ms(None, now), max);
        assert_eq!(poll_ms(Some(now + Duration::from_secs(60)), now), max);
    }

    #[test]
    fn a_deadline_now_or_past_does_not_wait() {
        let now = Instant::now() + Duration::from_secs(1);
        assert_eq!(poll_ms(Some(now), now), 0);
        assert_eq!(poll_ms(Some(now - Duration::from_millis(5)), now), 0);
    }

    #[test]
    fn earliest_takes_the_earlier_or_the_only_one() {
        let now = Instant::now();
        let later = now + Duration::from_secs(1);
        assert_eq!(earliest(Some(later), Some(now)), Some(now));
        assert_eq!(earliest(None, Some(later)), Some(later));
        assert_eq!(earliest(Some(now), None), Some(now));
        assert_eq!(earliest(None, None), None);
    }
}
