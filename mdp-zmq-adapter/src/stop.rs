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
#[derive(Debug, Clone)]
pub struct StopHandle(Arc<AtomicBool>);

impl StopHandle {
    /// A handle not yet stopped, for a runner to keep.
    pub(crate) fn new() -> Self {
        StopHandle(Arc::new(AtomicBool::new(false)))
    }

    /// Asks the loop to stop. Calling it again does nothing.
    pub fn stop(&self) {
        // Relaxed: the flag orders nothing else; the loop only has to see
        // it eventually, and does at its next look.
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether [`stop`](Self::stop) was called on this handle or a clone.
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::Relaxed)
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
