//! Several brokers: which lanes may take a request, and avoiding a broker
//! that failed for a while.
//!
//! Lane `l` is connected to broker `l % brokers`, so lanes taken in turn
//! go to the brokers in turn. A broker *fails* when a request on one of its
//! lanes times out or the connection of one of its lanes is lost. It is
//! then *avoided* for its backoff: requests go to lanes of the other
//! brokers, unless every broker is avoided, when every lane may take them
//! again (there is nowhere better to go). When the backoff ends the broker
//! is *on probation*: it takes one request at a time, so that a broker
//! still dead costs one request a timeout, not one per lane and service. A
//! reply from a broker ends its avoidance or probation and resets its
//! backoff. With one broker none of this applies: a failed lane is
//! reconnected and its requests are sent again on it.

use std::time::Instant;

use super::{Client, ClientTimer, Lane};
use crate::time::deadline;

/// What the client knows of one broker's health.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Health {
    /// Failures since its last reply.
    failures: u32,
    /// New requests and retries avoid it (see the module docs). Its
    /// `BrokerBackoff` timer ends this, unless its backoff is too long for
    /// `Instant`, in which case a reply does.
    avoided: bool,
    /// Its backoff ended and it has not answered since: one request at a
    /// time may be on the wire to it.
    probation: bool,
}

impl Client {
    /// The broker `lane` is connected to.
    pub(super) fn broker_index(&self, lane: usize) -> usize {
        lane % self.config.brokers
    }

    /// Whether `lane` may take a request now, as far as its broker's health
    /// goes.
    pub(super) fn lane_usable(&self, lane: usize, every_broker_avoided: bool) -> bool {
        let broker = self.broker_index(lane);
        let health = self.health[broker];
        if every_broker_avoided {
            return true;
        }
        let busy_probe = health.probation && self.on_wire_at(broker) > 0;
        !(health.avoided || busy_probe)
    }

    /// How many requests are on the wire on `broker`'s lanes.
    fn on_wire_at(&self, broker: usize) -> usize {
        self.lanes.iter().skip(broker).step_by(self.config.brokers).map(Vec::len).sum()
    }

    /// Whether every broker is avoided (then none is).
    pub(super) fn every_broker_avoided(&self) -> bool {
        self.health.iter().all(|h| h.avoided)
    }

    /// Whether a failure of `lane` sends its requests elsewhere: only when
    /// there is another broker to go to.
    pub(super) fn fails_over(&self) -> bool {
        self.config.brokers > 1
    }

    /// `lane`'s broker failed: avoid it for its next backoff. A broker
    /// already avoided stays so, its backoff unchanged: one death seen on
    /// several lanes (each connection lost, each request timing out) is one
    /// failure, not one per lane.
    pub(super) fn broker_failed(&mut self, now: Instant, lane: usize) {
        let broker = self.broker_index(lane);
        let health = &mut self.health[broker];
        if health.avoided {
            return;
        }
        let delay = self.config.broker_backoff.delay(health.failures, &mut self.rng);
        health.failures = health.failures.saturating_add(1);
        health.avoided = true;
        health.probation = false;
        self.timers.set(ClientTimer::BrokerBackoff(broker), deadline(now, delay));
    }

    /// A reply or PARTIAL came on `lane`: its broker is up. If it was
    /// avoided, the requests waiting in the client may go to it again.
    pub(super) fn broker_answered(&mut self, now: Instant, lane: usize) {
        let broker = self.broker_index(lane);
        let health = &mut self.health[broker];
        if health.failures == 0 && !health.avoided && !health.probation {
            return;
        }
        let was_limited = health.avoided || health.probation;
        *health = Health::default();
        self.timers.clear(ClientTimer::BrokerBackoff(broker));
        if was_limited {
            self.send_all_waiting(now);
        }
    }

    /// `broker`'s backoff is over: it may take a request again, one at a
    /// time until it answers.
    pub(super) fn backoff_ended(&mut self, now: Instant, broker: usize) {
        self.timers.clear(ClientTimer::BrokerBackoff(broker));
        if let Some(health) = self.health.get_mut(broker) {
            health.avoided = false;
            health.probation = true;
        }
        self.send_all_waiting(now);
    }

    /// Sends what waits in the client while lanes can take it, oldest
    /// first: each time, the oldest request at the front of its service's
    /// queue for which a lane is free. (Ids, not the map's order, decide,
    /// so the order is the same on every run and platform.)
    pub(super) fn send_all_waiting(&mut self, now: Instant) {
        loop {
            let placeable = self.services.iter().filter_map(|(name, state)| {
                let id = *state.waiting.front()?;
                self.free_lane(state).map(|_| (id, name))
            });
            let Some((_, service)) = placeable.min_by_key(|(id, _)| *id) else { return };
            let service = service.clone();
            self.send_next(now, &service);
        }
    }

    // ---- public view ----

    /// The broker `lane` is to be connected to, by its index in the list of
    /// [`ClientConfig::brokers`](super::ClientConfig::brokers):
    /// `lane % brokers`.
    pub fn broker_of(&self, lane: Lane) -> usize {
        self.broker_index(lane.0)
    }

    /// Whether the client avoids `broker` now, because a request on it
    /// timed out or a connection to it was lost and its backoff has not
    /// ended yet (see [`ClientConfig::broker_backoff`](super::ClientConfig::broker_backoff)).
    /// False for a broker the client does not have.
    pub fn is_avoided(&self, broker: usize) -> bool {
        self.health.get(broker).is_some_and(|h| h.avoided)
    }

    /// Whether `broker` is on probation: its backoff ended and it has not
    /// answered since, so it takes one request at a time (unless every
    /// broker is avoided). False for a broker the client does not have.
    pub fn is_on_probation(&self, broker: usize) -> bool {
        self.health.get(broker).is_some_and(|h| h.probation)
    }
}
