//! The broker's timers: each worker's heartbeat and expiry, and the expiry
//! of each client's queue of requests to a service. Both live in lazy
//! deadline queues (`crate::time`), whose stale entries are recognised here.

use bytes::Bytes;

use super::{Broker, BrokerEvent, Farewell, GoneReason};
use crate::time::{add_saturating, DeadlineQueue};
use crate::BrokerCommand;
use crate::PeerId;
use std::time::Instant;

impl Broker {
    pub(super) fn worker_timer(&mut self, id: PeerId, gen: u64, at: Instant) {
        let now = self.now;
        let Some(w) = self.workers.get_mut(&id).filter(|w| w.gen == gen && w.timer_at == at) else { return };
        if w.expires_at(&self.config) <= now {
            return self.remove_worker(&id, GoneReason::Expired, Farewell::Disconnect);
        }
        if w.job_deadline(&self.config).is_some_and(|d| d <= now) {
            return self.remove_worker(&id, GoneReason::JobTooLong, Farewell::Disconnect);
        }
        let dialect = w.dialect;
        let heartbeat = w.next_heartbeat <= now;
        if heartbeat {
            w.next_heartbeat = add_saturating(now, self.config.heartbeat_interval);
        }
        w.timer_at = w.next_deadline(&self.config);
        self.worker_timers.push(w.timer_at, (id.clone(), gen));
        if heartbeat {
            self.send(id, dialect, BrokerCommand::Heartbeat);
        }
    }

    /// The expiry timer of `client`'s queue for `service`, set for `at`.
    pub(super) fn request_timer(&mut self, service: Bytes, client: PeerId, at: Instant) {
        let Some((sid, s)) = self.services.get_full_mut(&service) else { return };
        let mut expired = Vec::new();
        if let Some(next) = s.expire(&client, at, self.now, &mut expired, &mut self.totals) {
            self.request_timers.push(next, (service.clone(), client));
        }
        for r in expired {
            self.stats.expired += 1;
            self.events.push_back(BrokerEvent::RequestExpired { client: r.client, service: service.clone() });
        }
        self.forget_if_unused(sid);
    }

    /// Stale timer entries (of gone workers, of dispatched requests) are
    /// dropped once they outnumber live ones, so the timer queues stay
    /// proportional to what the broker holds, whatever the message rate.
    pub(super) fn compact_timers(&mut self) {
        if self.worker_timers.len() > 2 * self.workers.len() + 64 {
            let workers = &self.workers;
            self.worker_timers.retain(|(id, gen)| workers.get(id).is_some_and(|w| w.gen == *gen));
        }
        // A queue has at most one live entry, and only while it holds
        // requests: rebuild from the queues when stale entries pile up.
        if self.request_timers.len() > 2 * self.totals.queued() + 64 {
            let mut live = DeadlineQueue::default();
            for (name, s) in self.services.iter() {
                for (at, client) in s.timers() {
                    live.push(at, (name.clone(), client.clone()));
                }
            }
            self.request_timers = live;
        }
    }
}
