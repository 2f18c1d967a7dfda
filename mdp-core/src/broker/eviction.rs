//! Services without workers, and which one goes first when the service
//! table is full.

use super::{Broker, DropReason};
use crate::lazy::Token;

impl Broker {
    /// The service at slab index `sid` has no workers from now on: it goes
    /// to the back of the eviction order.
    pub(super) fn mark_workerless(&mut self, sid: usize) {
        let Some(s) = self.services.at_mut(sid) else { return };
        s.workerless = Some(self.workerless.push_back(sid));
    }

    /// A service dropped `token`, its place in the eviction order (it got a
    /// worker, or is gone); the entry turns stale.
    pub(super) fn forget_workerless(&mut self, token: Option<Token>) {
        if token.is_none() {
            return;
        }
        self.workerless.forget();
        let services = &self.services;
        self.workerless.compact(|&sid, t| services.at(sid).is_some_and(|s| s.workerless == Some(t)));
    }

    /// Forgets the service that has been without workers longest, dropping
    /// its queued requests with [`DropReason::Evicted`]. False if every
    /// service has workers. Each stale entry is skipped once, so this is
    /// amortised O(1) plus the requests dropped.
    pub(super) fn evict_workerless(&mut self) -> bool {
        let services = &self.services;
        let Some(sid) = self.workerless.pop(|&sid, t| services.at(sid).is_some_and(|s| s.workerless == Some(t))) else {
            return false;
        };
        let Some((name, mut s)) = self.services.remove_at(sid) else { return false };
        // No workers, so no request of it is held: all are queued.
        debug_assert_eq!(s.tally().held_bytes(), 0);
        for r in s.drain_queued(&mut self.totals) {
            self.request_dropped(None, r.client, name.clone(), DropReason::Evicted);
        }
        true
    }
}
