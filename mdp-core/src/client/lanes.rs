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
    /// all) whose broker may take it (`brokers`). Of those: a lane not on
    /// `failed_on`, the broker the request just left, if there is one; when
    /// every broker is avoided, one on the broker whose backoff ends first;
    /// the least loaded; and the first from the cursor on.
    pub(super) fn free_lane(&self, state: &ServiceState, failed_on: Option<usize>) -> Option<usize> {
        let majortomo = self.config.dialect == Dialect::Majortomo;
        let every_avoided = self.every_broker_avoided();
        let n = self.lanes.len();
        let rank = |lane: usize| {
            let broker = self.broker_index(lane);
            let ends = if every_avoided { self.backoff_end(broker) } else { None };
            (Some(broker) == failed_on, ends.is_none() && every_avoided, ends, self.lanes[lane].len())
        };
        (0..n)
            .map(|k| (self.cursor + k) % n)
            .filter(|&lane| state.on_lane[lane].is_none() && (!majortomo || self.lanes[lane].is_empty()))
            .filter(|&lane| self.lane_usable(lane, every_avoided))
            .min_by_key(|&lane| rank(lane))
    }

    /// Sends the requests waiting for `service` while a lane can take them.
    pub(super) fn send_waiting(&mut self, now: Instant, service: &Bytes) {
        while self.send_next(now, service) {}
    }

    /// Sends the oldest request waiting for `service`, if a lane can take
    /// it; returns whether it went.
    pub(super) fn send_next(&mut self, now: Instant, service: &Bytes) -> bool {
        let Some(state) = self.services.get(service) else { return false };
        let Some(&id) = state.waiting.front() else { return false };
        let failed_on = self.pending.get(&id).and_then(|p| p.failed_on);
        let Some(lane) = self.free_lane(state, failed_on) else { return false };
        if let Some(state) = self.services.get_mut(service) {
            state.waiting.pop_front();
            state.on_lane[lane] = Some(id);
        }
        self.lanes[lane].push(id);
        self.cursor = (lane + 1) % self.lanes.len();
        if let Some(p) = self.pending.get_mut(&id) {
            p.lane = Some(lane);
        }
        self.transmit_request(id, now);
        true
    }

    /// A lane slot of `service` was freed (a request answered, failed or
    /// cancelled): the next request waiting for it may go out. In the
    /// majortomo dialect the freed lane can take any service: the oldest
    /// waiting requests go first, whatever their service (a lane that can
    /// take one there can take any, so that is `send_all_waiting`).
    pub(super) fn after_freed(&mut self, now: Instant, service: &Bytes) {
        if self.config.dialect == Dialect::Majortomo {
            self.send_all_waiting(now);
        } else {
            self.send_waiting(now, service);
        }
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
    /// the wire on it, in the order they were put on the lane. With one
    /// broker a resend keeps its place on the lane. With several, a timeout
    /// or a lost connection is a failure of the lane's broker: it is avoided
    /// (`brokers`), and the requests leave the lane to be placed again,
    /// ahead of those that wait, on a lane of another broker; then so do
    /// those on the broker's other lanes (each of which is replaced too),
    /// using a try only if their own deadline passed.
    pub(super) fn reconnect(&mut self, now: Instant, lane: usize, why: Resend) {
        if why == Resend::Cancelled || !self.fails_over() {
            self.replace_lane(now, lane, why, false);
            return;
        }
        self.broker_failed(now, lane);
        let broker = self.broker_index(lane);
        let others: Vec<usize> = (0..self.lanes.len())
            .filter(|&other| other != lane && self.broker_index(other) == broker && !self.lanes[other].is_empty())
            .collect();
        let mut moved = self.replace_lane(now, lane, why, true);
        for other in others {
            moved.extend(self.replace_lane(now, other, Resend::Timeout, true));
        }
        for service in moved {
            self.after_freed(now, &service);
        }
        if self.every_broker_avoided() {
            // The last broker not avoided just failed: every lane may take
            // requests again, so what waits for any service may go out.
            self.send_all_waiting(now);
        }
    }

    /// `Reconnect` for `lane`, then each request on it is retried: resent in
    /// place, or (`fail_over`) taken off the lane; returns the services of
    /// those taken off.
    fn replace_lane(&mut self, now: Instant, lane: usize, why: Resend, fail_over: bool) -> Vec<Bytes> {
        self.shell.transmit(ClientTransmit { lane: Lane(lane), transmit: PeerTransmit::Reconnect });
        let on_lane = self.lanes[lane].clone();
        let mut moved = Vec::new();
        for id in on_lane {
            if self.retry(id, now, why, fail_over) {
                moved.extend(self.take_off_lane(id));
            }
        }
        moved
    }

    /// After a reconnect: fail `id` if this send used a try (it timed out,
    /// or its connection was lost) and none is left, else send it again: on
    /// the new connection, or, if `fail_over`, later, wherever it is placed
    /// (then this returns true). A request resent only because another on
    /// its lane timed out or was cancelled uses no try.
    pub(super) fn retry(&mut self, id: RequestId, now: Instant, why: Resend, fail_over: bool) -> bool {
        let timed_out = self.timers.get(ClientTimer::RequestTimeout(id)).is_some_and(|d| d <= now);
        let Some(p) = self.pending.get_mut(&id) else { return false };
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
            self.complete(id, now);
            return false;
        }
        if used_try {
            p.tries += 1;
        }
        if p.parts_delivered {
            p.parts_delivered = false;
            self.shell.event(ClientEvent::Restarted { id });
        }
        if fail_over {
            return true;
        }
        self.transmit_request(id, now);
        false
    }

    /// Takes `id` off the lane it is on the wire on and back into its
    /// service's waiting queue, in id order (so ahead of newer requests);
    /// returns its service.
    fn take_off_lane(&mut self, id: RequestId) -> Option<Bytes> {
        let p = self.pending.get_mut(&id)?;
        let lane = p.lane.take()?;
        p.failed_on = Some(lane % self.config.brokers);
        self.timers.clear(ClientTimer::RequestTimeout(id));
        self.lanes[lane].retain(|&other| other != id);
        let state = self.services.get_mut(&p.service)?;
        state.on_lane[lane] = None;
        let at = state.waiting.partition_point(|&other| other < id);
        state.waiting.insert(at, id);
        Some(p.service.clone())
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
