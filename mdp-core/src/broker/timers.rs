//! The broker's timers: each worker's heartbeat and expiry, and the expiry
//! of each client's queue of requests to a service. Both live in lazy
//! deadline queues (`crate::time`), whose stale entries are recognised here.

use bytes::Bytes;

use super::service::Books;
use super::{Broker, BrokerEvent, Farewell, GoneReason};
use crate::lazy::Token;
use crate::time::{deadline, passed};
use crate::{BrokerCommand, PeerId};

impl Broker {
    /// The timer entry `token` of worker `id` fired.
    pub(super) fn worker_timer(&mut self, id: PeerId, token: Token) {
        let now = self.now;
        let Some(w) = self.workers.get_mut(&id).filter(|w| w.timer == Some(token)) else { return };
        if passed(w.expires_at(&self.config), now) {
            return self.remove_worker(&id, GoneReason::Expired, Farewell::Disconnect);
        }
        if passed(w.job_deadline(&self.config), now) {
            return self.remove_worker(&id, GoneReason::JobTooLong, Farewell::Disconnect);
        }
        let dialect = w.dialect;
        let heartbeat = passed(w.next_heartbeat, now);
        if heartbeat {
            w.next_heartbeat = deadline(now, self.config.heartbeat_interval);
        }
        w.arm(&id, &self.config, &mut self.worker_timers);
        if heartbeat {
            self.send(id, dialect, BrokerCommand::Heartbeat);
        }
    }

    /// The expiry timer entry `token` of `client`'s queue for `service`
    /// fired.
    pub(super) fn request_timer(&mut self, service: Bytes, client: PeerId, token: Token) {
        let Some((sid, s)) = self.services.get_full_mut(&service) else { return };
        let mut expired = Vec::new();
        let books = Books { totals: &mut self.totals, timers: &mut self.request_timers, service: &service };
        s.expire(&client, token, self.now, &mut expired, books);
        s.counters.expired += expired.len() as u64;
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
        let workers = &self.workers;
        self.worker_timers.compact(workers.len(), |id, t| workers.get(id).is_some_and(|w| w.timer == Some(t)));
        // A queue has a live entry only while it holds requests, so there
        // are at most as many live entries as queued requests.
        let services = &self.services;
        self.request_timers.compact(self.totals.queued(), |(name, client), t| {
            services.get(name).and_then(|s| s.timer_of(client)) == Some(t)
        });
    }
}
