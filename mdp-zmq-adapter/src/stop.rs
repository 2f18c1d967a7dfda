//! The one way to stop a run loop: [`StopHandle`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Asks a run loop to stop, from any thread: a Ctrl-C handler, a test, the
/// thread that started it.
///
/// [`BrokerRunner::stop_handle`](crate::BrokerRunner::stop_handle) and
/// [`Worker::stop_handle`](crate::Worker::stop_handle) hand one out; clones
/// share one flag. The loop looks at it between polls, so it stops within
/// a tenth of a second (and, for a worker, once the handler call in
/// progress returns). A stop cannot be undone: a runner stopped once
/// returns at once from every later `run`.
///
/// With the `tokio` feature, `AsyncWorker::stop_handle` hands out the same
/// type; [`stop`](Self::stop) also wakes the async worker's tasks, so they
/// see it at once rather than at a poll.
#[derive(Debug, Clone)]
pub struct StopHandle(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    stopped: AtomicBool,
    /// The tasks of async workers waiting on this handle, woken by `stop`.
    /// One entry per task (a task that looks again replaces nothing: its
    /// waker is already there), so at most one per async worker slot.
    #[cfg(feature = "tokio")]
    wakers: std::sync::Mutex<Vec<std::task::Waker>>,
}

impl StopHandle {
    /// A handle not yet stopped, for a runner to keep.
    pub(crate) fn new() -> Self {
        StopHandle(Arc::new(Inner::default()))
    }

    /// Asks the loop to stop. Calling it again does nothing.
    pub fn stop(&self) {
        // Relaxed: the flag orders nothing else; the loop only has to see
        // it eventually, and does at its next look. (A woken task sees it
        // through the lock below.)
        self.0.stopped.store(true, Ordering::Relaxed);
        #[cfg(feature = "tokio")]
        {
            let wakers = std::mem::take(&mut *self.wakers());
            for waker in wakers {
                waker.wake();
            }
        }
    }

    /// Whether [`stop`](Self::stop) was called on this handle or a clone.
    pub fn is_stopped(&self) -> bool {
        self.0.stopped.load(Ordering::Relaxed)
    }

    /// Whether it is stopped; if not, `cx`'s task is woken when it is.
    #[cfg(feature = "tokio")]
    pub(crate) fn poll_stopped(&self, cx: &mut std::task::Context<'_>) -> bool {
        if self.is_stopped() {
            return true;
        }
        let mut wakers = self.wakers();
        if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
            wakers.push(cx.waker().clone());
        }
        // `stop` sets the flag before it takes the lock, which is held
        // here: a stop since the first look is seen now, or wakes us later.
        self.is_stopped()
    }

    #[cfg(feature = "tokio")]
    fn wakers(&self) -> std::sync::MutexGuard<'_, Vec<std::task::Waker>> {
        // Nothing panics while holding it, but a poisoned list is still a list.
        self.0.wakers.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_one_flag() {
        let handle = StopHandle::new();
        let clone = handle.clone();
        assert!(!handle.is_stopped());
        clone.stop();
        assert!(handle.is_stopped() && clone.is_stopped());
    }
}
