//! A client's request: the limits it must pass, and whether it waits in a
//! queue or goes to an idle worker at once.

use bytes::Bytes;

use super::mmi::MMI_PREFIX;
use super::service::Request;
use super::{Broker, Limit};
use crate::time::add_saturating;
use crate::{Dialect, Multipart, PeerId};

impl Broker {
    pub(super) fn client_request(&mut self, client: PeerId, dialect: Dialect, service: Bytes, body: Multipart) {
        self.stats.requests_received += 1;
        if service.starts_with(MMI_PREFIX) {
            return self.mmi(client, dialect, service, body);
        }
        if service.len() > self.config.max_service_name_bytes {
            return self.limit_hit(client, Limit::ServiceName);
        }
        let queued_total = self.queued;
        let bytes_total = self.queued_bytes + self.held_bytes;
        let charge = Request::charge(&client, &body);
        let Some(sid) = self.service_slot(&service) else { return self.limit_hit(client, Limit::Services) };
        let Some((name, s)) = self.services.entry_at_mut(sid) else { return };
        // The byte budget counts requests at workers as well as queued ones,
        // so it applies to a request an idle worker would take at once too.
        let over_bytes = if s.bytes() + charge > self.config.max_queued_bytes_per_service {
            Some(Limit::QueuedBytesPerService)
        } else if bytes_total + charge > self.config.max_queued_bytes {
            Some(Limit::QueuedBytes)
        } else {
            None
        };
        if let Some(limit) = over_bytes {
            self.forget_if_unused(sid);
            return self.limit_hit(client, limit);
        }
        // A request an idle worker takes at once never waits in a queue, so
        // a full queue does not refuse it, and it skips the queue. A queue
        // pushed *past* its limit by re-queued requests refuses even that
        // one: otherwise each such request could be re-queued in turn, and
        // the requests held (queued or at workers) would grow past
        // max_queue_total + max_workers.
        let over = s.queued > self.config.max_queue_per_service || queued_total > self.config.max_queue_total;
        let at_once = !over && s.begin_at_once(&client);
        let limit = if at_once {
            None
        } else if s.queued >= self.config.max_queue_per_service {
            Some(Limit::QueuePerService)
        } else if queued_total >= self.config.max_queue_total {
            Some(Limit::QueueTotal)
        } else {
            None
        };
        if let Some(limit) = limit {
            self.forget_if_unused(sid);
            return self.limit_hit(client, limit);
        }
        let deadline = add_saturating(self.now, self.config.request_timeout);
        let request = Request { client: client.clone(), dialect, body, deadline, dispatches: 0, charge };
        let first = if at_once {
            Some(request)
        } else {
            // The timer holds the service's own name, not this message's
            // copy of it.
            if let Some(at) = s.enqueue(request) {
                self.request_timers.push(at, (name.clone(), client));
            }
            self.queued += 1;
            self.queued_bytes += charge;
            if s.workers == 0 && s.workerless.is_none() {
                self.mark_workerless(sid);
            }
            None
        };
        self.dispatch(sid, first);
    }
}
