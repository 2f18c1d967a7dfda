//! Services without workers, and which one goes first when the service
//! table is full.

use super::{Broker, BrokerEvent, DropReason};

impl Broker {
    /// The service at slab index `sid` has no workers from now on: it goes
    /// to the back of the eviction order.
    pub(super) fn mark_workerless(&mut self, sid: usize) {
        let token = self.next_seq;
        self.next_seq += 1;
        let Some(s) = self.services.at_mut(sid) else { return };
        s.workerless = Some(token);
        self.workerless.push_back((sid, token));
        if self.workerless.len() > 2 * self.services.len() + 64 {
            let services = &self.services;
            self.workerless.retain(|&(sid, token)| services.at(sid).is_some_and(|s| s.workerless == Some(token)));
        }
    }

    /// Forgets the service that has been without workers longest, dropping
    /// its queued requests with [`DropReason::Evicted`]. False if every
    /// service has workers. Each stale entry is skipped once, so this is
    /// amortised O(1) plus the requests dropped.
    pub(super) fn evict_workerless(&mut self) -> bool {
        while let Some((sid, token)) = self.workerless.pop_front() {
            let Some((name, s)) = self.services.entry_at_mut(sid) else { continue };
            if s.workerless != Some(token) {
                continue;
            }
            let name = name.clone();
            let Some(mut s) = self.services.remove_at(sid) else { return false };
            // No workers, so no request of it is held: all are queued.
            debug_assert_eq!(s.tally().held_bytes(), 0);
            for r in s.drain_queued(&mut self.totals) {
                self.stats.dropped += 1;
                let reason = DropReason::Evicted;
                self.events.push_back(BrokerEvent::RequestDropped { client: r.client, service: name.clone(), reason });
            }
            return true;
        }
        false
    }
}
