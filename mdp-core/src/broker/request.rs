//! A client's request: its record and what it is charged, the limits it
//! must pass, and whether it waits in a queue or goes to an idle worker at
//! once.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::mmi::MMI_PREFIX;
use super::service::{Books, Service, Tally};
use super::{Access, Broker, BrokerConfig, Limit};
use crate::time::deadline;
use crate::{Dialect, Multipart, PeerId};

/// A request waiting for, or held by, a worker.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) client: PeerId,
    pub(crate) dialect: Dialect,
    pub(crate) body: Multipart,
    /// When it arrived: its deadline follows (see [`Request::deadline`]),
    /// and so does its time in the queue.
    pub(crate) received: Instant,
    /// How many times it has been handed to a worker.
    pub(crate) dispatches: u32,
    /// What it is charged against the byte budget: see [`Request::charge`].
    pub(crate) charge: usize,
}

impl Request {
    /// When it expires if it is still queued: `request_timeout` after it
    /// arrived. Computed, not stored, to keep a queued request small.
    pub(crate) fn deadline(&self, request_timeout: Duration) -> Option<Instant> {
        deadline(self.received, request_timeout)
    }

    /// The bytes a request from `client` with `body` is charged against
    /// [`BrokerConfig::max_queued_bytes`](BrokerConfig::max_queued_bytes):
    /// the identity and every body frame, each with the frame overhead.
    pub(crate) fn charge(client: &PeerId, body: &Multipart) -> usize {
        client.0.len() + BrokerConfig::FRAME_OVERHEAD + frames_charge(body)
    }
}

/// What `frames` are charged against the byte budget: their bytes, plus the
/// frame overhead for each.
pub(crate) fn frames_charge(frames: &Multipart) -> usize {
    frames.iter().map(|f| f.len() + BrokerConfig::FRAME_OVERHEAD).sum()
}

/// Where an admitted request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admitted {
    /// To an idle worker, without waiting: it is counted in flight already.
    AtOnce,
    /// To the back of its client's queue.
    Queue,
}

impl Broker {
    pub(super) fn client_request(
        &mut self,
        client: PeerId,
        name: Option<&Bytes>,
        dialect: Dialect,
        service: Bytes,
        body: Multipart,
    ) {
        self.stats.requests_received += 1;
        if service.starts_with(MMI_PREFIX) {
            return self.mmi(client, name, dialect, service, body);
        }
        if !self.may(name, Access::Call, &service) {
            return self.denied(client, name, Access::Call, service);
        }
        if service.len() > self.config.max_service_name_bytes {
            return self.limit_hit(client, Limit::ServiceName);
        }
        let charge = Request::charge(&client, &body);
        let Some(sid) = self.service_slot(&service) else { return self.limit_hit(client, Limit::Services) };
        let Some((name, s)) = self.services.entry_at_mut(sid) else { return };
        let admitted = match admit(&self.config, &self.totals, s, &client, charge) {
            Ok(admitted) => admitted,
            Err(limit) => {
                self.forget_if_unused(sid);
                return self.limit_hit(client, limit);
            }
        };
        s.counters.received += 1;
        let request = Request { client, dialect, body, received: self.now, dispatches: 0, charge };
        if admitted == Admitted::AtOnce {
            return self.dispatch(sid, Some(request));
        }
        // The timers hold the service's own name, not this message's copy.
        s.enqueue(request, Books { totals: &mut self.totals, timers: &mut self.request_timers, service: name });
        // Without an idle worker there is nothing to dispatch, and the
        // service holds this request, so it stays.
        let idle = s.idle_workers() > 0;
        if s.workers == 0 && s.workerless.is_none() {
            self.mark_workerless(sid);
        }
        if idle {
            self.dispatch(sid, None);
        }
    }
}

/// Whether a request charged `charge` from `client` to service `s` passes
/// the byte budget and the queue limits, and if so where it goes.
fn admit(
    config: &BrokerConfig,
    totals: &Tally,
    s: &mut Service,
    client: &PeerId,
    charge: usize,
) -> Result<Admitted, Limit> {
    // The byte budget counts requests at workers as well as queued ones,
    // so it applies to a request an idle worker would take at once too.
    if let Some(limit) = over_budget(config, s.tally(), *totals, charge) {
        return Err(limit);
    }
    let (queued, queued_total) = (s.tally().queued(), totals.queued());
    // A request an idle worker takes at once never waits in a queue, so
    // a full queue does not refuse it. A queue pushed *past* its limit by
    // re-queued requests refuses even that one: otherwise each such request
    // could be re-queued in turn, and the requests held (queued or at
    // workers) would grow past max_queue_total + max_workers.
    let over = queued > config.max_queue_per_service || queued_total > config.max_queue_total;
    if !over && s.begin_at_once(client) {
        Ok(Admitted::AtOnce)
    } else if queued >= config.max_queue_per_service {
        Err(Limit::QueuePerService)
    } else if queued_total >= config.max_queue_total {
        Err(Limit::QueueTotal)
    } else {
        Ok(Admitted::Queue)
    }
}

/// The byte limit that `cost` more bytes, charged to a service whose tally
/// is `service` in a broker whose totals are `totals`, would break, if any.
pub(super) fn over_budget(config: &BrokerConfig, service: Tally, totals: Tally, cost: usize) -> Option<Limit> {
    if service.bytes() + cost > config.max_queued_bytes_per_service {
        Some(Limit::QueuedBytesPerService)
    } else if totals.bytes() + cost > config.max_queued_bytes {
        Some(Limit::QueuedBytes)
    } else {
        None
    }
}
