//! Which lane a request goes on, and sending, resending and forgetting
//! requests: the client's rules for the wire.

use std::time::Instant;

use bytes::Bytes;

use super::ServiceState;
use super::{Client, ClientEvent, ClientTimer, ClientTransmit, ClientUsageError, FailReason, Lane, RequestId, Resend};
use crate::codec::{Dialect, Multipart, PeerCommand};
use crate::time::deadline;
use crate::PeerTransmit;

impl Client {
    pub(super) fn check_request(&self, service: &Bytes, body: &Multipart) -> Result<(), ClientUsageError> {
        if service.is_empty() {
            return Err(ClientUsageError::EmptyService);
        }
        if body.is_empty() {
            return Err(ClientUsageError::EmptyBody);
        }
        if self.pending.len() >= self.config.max_outstanding {
            return Err(ClientUsageError::TooManyOutstanding { max: self.config.max_outstanding });
        }
        Ok(())
    }

    /// The lane a request for a service in `state` may go on now: one with
    /// nothing on the wire for it (in the majortomo dialect, nothing at
    /// all), the least loaded first.
    pub(super) fn free_lane(&self, state: &ServiceState) -> Option<usize> {
        let majortomo = self.config.dialect == Dialect::Majortomo;
        (0..self.lanes.len())
            .filter(|&lane| state.on_lane[lane].is_none() && (!majortomo || self.lanes[lane].is_empty()))
            .min_by_key(|&lane| self.lanes[lane].len())
    }

    /// Sends the requests waiting for `service` while a lane can take them.
    pub(super) fn send_waiting(&mut self, now: Instant, service: &Bytes) {
        while self.send_next(now, service) {}
    }

    /// Sends the oldest request waiting for `service`, if a lane can take
    /// it; returns whether it went.
    pub(super) fn send_next(&mut self, now: Instant, service: &Bytes) -> bool {
        let Some(state) = self.services.get(service) else { return false };
        let (Some(&id), Some(lane)) = (state.waiting.front(), self.free_lane(state)) else { return false };
        if let Some(state) = self.services.get_mut(service) {
            state.waiting.pop_front();
            state.on_lane[lane] = Some(id);
        }
        self.lanes[lane].push(id);
        if let Some(p) = self.pending.get_mut(&id) {
            p.lane = Some(lane);
        }
        self.transmit_request(id, now);
        true
    }

    /// A lane slot of `service` was freed (a request answered, failed or
    /// cancelled): the next request waiting for it may go out. In the
    /// majortomo dialect the freed lane can take any service: the oldest
    /// waiting requests go first, whatever their service.
    pub(super) fn after_freed(&mut self, now: Instant, service: &Bytes) {
        if self.config.dialect != Dialect::Majortomo {
            return self.send_waiting(now, service);
        }
        while let Some(oldest) = self.oldest_waiting() {
            if !self.send_next(now, &oldest) {
                return;
            }
        }
    }

    /// The service of the oldest request waiting in the client.
    pub(super) fn oldest_waiting(&self) -> Option<Bytes> {
        let fronts = self.services.iter().filter_map(|(name, s)| Some((*s.waiting.front()?, name)));
        fronts.min_by_key(|(id, _)| *id).map(|(_, name)| name.clone())
    }

    /// Sends (or resends) request `id` on its lane and starts its deadline.
    pub(super) fn transmit_request(&mut self, id: RequestId, now: Instant) {
        let Some(p) = self.pending.get_mut(&id) else { return };
        let Some(lane) = p.lane else { return };
        self.timers.set(ClientTimer::RequestTimeout(id), deadline(now, self.config.timeout));
        p.parts_delivered = false;
        let command = PeerCommand::Request { service: p.service.clone(), body: p.body.clone() };
        // `check_request` ruled out the only failures (empty service, empty
        // body), so nothing is lost here.
        if let Ok(frames) = command.encode(self.config.dialect) {
            self.shell.transmit(ClientTransmit { lane: Lane(lane), transmit: PeerTransmit::Send(frames) });
        }
    }

    /// Replaces `lane`'s connection and resends (or fails) every request on
    /// the wire on it, in the order they were put on the lane (a resend
    /// keeps its place).
    pub(super) fn reconnect(&mut self, now: Instant, lane: usize, why: Resend) {
        self.shell.transmit(ClientTransmit { lane: Lane(lane), transmit: PeerTransmit::Reconnect });
        let on_lane = self.lanes[lane].clone();
        for id in on_lane {
            self.retry(id, now, why);
        }
    }

    /// After a reconnect: fail `id` if this send used a try (it timed out,
    /// or its connection was lost) and none is left, else send it again on
    /// the new connection. A request resent only because another on its lane
    /// timed out or was cancelled uses no try.
    pub(super) fn retry(&mut self, id: RequestId, now: Instant, why: Resend) {
        let timed_out = self.timers.get(ClientTimer::RequestTimeout(id)).is_some_and(|d| d <= now);
        let Some(p) = self.pending.get_mut(&id) else { return };
        let used_try = match why {
            Resend::ConnectionLost => true,
            Resend::Timeout => timed_out,
            Resend::Cancelled => false,
        };
        if used_try && p.tries >= self.config.tries {
            let reason = match (why, self.config.tries) {
                (Resend::Timeout, 1) => FailReason::Timeout,
                (Resend::Timeout, tries) => FailReason::RetriesExhausted { tries },
                (_, tries) => FailReason::ConnectionLost { tries },
            };
            self.shell.event(ClientEvent::Failed { id, reason });
            return self.complete(id, now);
        }
        if used_try {
            p.tries += 1;
        }
        if p.parts_delivered {
            self.shell.event(ClientEvent::Restarted { id });
        }
        self.transmit_request(id, now);
    }

    /// Removes `id` from every record; returns its service and the lane it
    /// was on the wire on.
    pub(super) fn forget(&mut self, id: RequestId) -> Option<(Bytes, Option<usize>)> {
        let p = self.pending.remove(&id)?;
        self.timers.clear(ClientTimer::RequestTimeout(id));
        if let Some(lane) = p.lane {
            self.lanes[lane].retain(|&other| other != id);
        }
        if let Some(state) = self.services.get_mut(&p.service) {
            match p.lane {
                Some(lane) => state.on_lane[lane] = None,
                None => state.waiting.retain(|&other| other != id),
            }
            if state.is_empty() {
                // Keep the map to services with requests outstanding.
                self.services.remove(&p.service);
            }
        }
        Some((p.service, p.lane))
    }

    /// `id` is answered or failed: forget it, and send the next request
    /// waiting for its lane slot.
    pub(super) fn complete(&mut self, id: RequestId, now: Instant) {
        if let Some((service, _)) = self.forget(id) {
            self.after_freed(now, &service);
        }
    }
}
