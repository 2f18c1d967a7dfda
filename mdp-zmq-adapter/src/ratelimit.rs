//! Bounding the broker's log: at most [`LINES_PER_WINDOW`] lines of each
//! kind per [`WINDOW`], then one line saying how many were left out, so a
//! hostile peer (a flood of malformed messages, of READYs from ever new
//! identities, of requests past a limit) cannot flood the log.

use std::time::{Duration, Instant};

/// Lines of one kind logged per window; the rest are counted.
pub(crate) const LINES_PER_WINDOW: u32 = 10;

/// The window.
pub(crate) const WINDOW: Duration = Duration::from_secs(1);

/// What a line is about; each kind has its own budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogKind {
    WorkerReady,
    WorkerGone,
    Misbehaviour,
    LimitHit,
    RequestDropped,
    RequestExpired,
    AccessDenied,
    PipeFull,
    KeyRefused,
}

impl LogKind {
    const ALL: [LogKind; 9] = [
        LogKind::WorkerReady,
        LogKind::WorkerGone,
        LogKind::Misbehaviour,
        LogKind::LimitHit,
        LogKind::RequestDropped,
        LogKind::RequestExpired,
        LogKind::AccessDenied,
        LogKind::PipeFull,
        LogKind::KeyRefused,
    ];

    /// The `kind` field of the summary line.
    pub(crate) fn name(self) -> &'static str {
        match self {
            LogKind::WorkerReady => "worker_ready",
            LogKind::WorkerGone => "worker_gone",
            LogKind::Misbehaviour => "misbehaviour",
            LogKind::LimitHit => "limit_hit",
            LogKind::RequestDropped => "request_dropped",
            LogKind::RequestExpired => "request_expired",
            LogKind::AccessDenied => "access_denied",
            LogKind::PipeFull => "pipe_full",
            LogKind::KeyRefused => "key_refused",
        }
    }

    /// Whether its lines are warnings (the rest are info): the summary has
    /// the level of the lines it stands for.
    fn is_warning(self) -> bool {
        !matches!(self, LogKind::WorkerReady | LogKind::WorkerGone | LogKind::RequestExpired)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The budgets of the current window.
#[derive(Debug, Default)]
pub(crate) struct LogLimit {
    /// When the current window began; none before the first line.
    start: Option<Instant>,
    logged: [u32; LogKind::ALL.len()],
    suppressed: [u64; LogKind::ALL.len()],
}

impl LogLimit {
    /// Whether a line of `kind` may be logged at `now`; if not, it is
    /// counted for the summary.
    pub(crate) fn allow(&mut self, kind: LogKind, now: Instant) -> bool {
        self.roll(now);
        let i = kind.index();
        if self.logged[i] < LINES_PER_WINDOW {
            self.logged[i] += 1;
            true
        } else {
            self.suppressed[i] += 1;
            false
        }
    }

    /// Ends the window if it is over, logging a summary line for each kind
    /// that had lines left out. The loop calls it every iteration, so a
    /// summary comes within a poll's wait of its window's end even when
    /// the flood has stopped.
    pub(crate) fn roll(&mut self, now: Instant) {
        match self.start {
            Some(start) if now.saturating_duration_since(start) < WINDOW => {}
            Some(_) => {
                for kind in LogKind::ALL {
                    let n = self.suppressed[kind.index()];
                    if n > 0 {
                        summary(kind, n);
                    }
                }
                *self = LogLimit { start: Some(now), ..LogLimit::default() };
            }
            None => self.start = Some(now),
        }
    }

    /// Logs the summary lines of the current window now, over or not: for
    /// the end of a run, which no later window follows.
    pub(crate) fn flush(&mut self) {
        if let Some(start) = self.start {
            self.roll(start + WINDOW);
        }
    }

    #[cfg(test)]
    fn suppressed(&self, kind: LogKind) -> u64 {
        self.suppressed[kind.index()]
    }
}

fn summary(kind: LogKind, suppressed: u64) {
    let (warning, kind, limit) = (kind.is_warning(), kind.name(), LINES_PER_WINDOW);
    if warning {
        tracing::warn!(kind, suppressed, limit, "log lines suppressed: more than `limit` in a second");
    } else {
        tracing::info!(kind, suppressed, limit, "log lines suppressed: more than `limit` in a second");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_own_budget_per_window() {
        let t = Instant::now();
        let mut limit = LogLimit::default();
        let allowed = (0..100).filter(|_| limit.allow(LogKind::Misbehaviour, t)).count();
        assert_eq!(allowed, LINES_PER_WINDOW as usize);
        assert_eq!(limit.suppressed(LogKind::Misbehaviour), 100 - u64::from(LINES_PER_WINDOW));
        // Another kind is not held back by the flood.
        assert!(limit.allow(LogKind::WorkerReady, t + Duration::from_millis(500)));
        // A new window: the budget is back and the count starts again.
        assert!(limit.allow(LogKind::Misbehaviour, t + WINDOW));
        assert_eq!(limit.suppressed(LogKind::Misbehaviour), 0);
    }

    #[test]
    fn flush_ends_the_window_at_once() {
        let t = Instant::now();
        let mut limit = LogLimit::default();
        for _ in 0..20 {
            limit.allow(LogKind::LimitHit, t);
        }
        assert_eq!(limit.suppressed(LogKind::LimitHit), 20 - u64::from(LINES_PER_WINDOW));
        limit.flush();
        assert_eq!(limit.suppressed(LogKind::LimitHit), 0);
        assert!(limit.allow(LogKind::LimitHit, t));
    }

    #[test]
    fn names_follow_the_list() {
        for (i, kind) in LogKind::ALL.into_iter().enumerate() {
            assert_eq!(kind.index(), i);
        }
        assert!(LogKind::Misbehaviour.is_warning() && !LogKind::WorkerGone.is_warning());
    }
}
