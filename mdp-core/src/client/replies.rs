//! Matching the broker's PARTIAL and FINAL to the request on the wire.

use bytes::Bytes;

use super::{Client, ClientDiscardReason, ClientEvent, Lane, RequestId};
use crate::codec::{Command, Found, Multipart};

impl Client {
    /// The request a reply on `lane` naming `service` (or none, in the
    /// majortomo dialect) belongs to: the one on the wire for that service
    /// on that lane.
    pub(super) fn matching(&self, lane: usize, service: Option<&Bytes>) -> Option<RequestId> {
        match service {
            Some(service) => self.services.get(service)?.on_lane[lane],
            None => self.lanes[lane].first().copied(),
        }
    }

    pub(super) fn partial(&mut self, lane: usize, service: Option<Bytes>, body: Multipart) {
        let Some(id) = self.matching(lane, service.as_ref()) else {
            return self.unmatched(Command::Partial, lane, service);
        };
        if let Some(p) = self.pending.get_mut(&id) {
            p.parts_delivered = true;
        }
        self.shell.event(ClientEvent::Partial { id, body });
        let now = self.shell.now();
        self.broker_answered(now, lane);
    }

    pub(super) fn reply(&mut self, lane: usize, service: Option<Bytes>, body: Multipart) {
        let Some(id) = self.matching(lane, service.as_ref()) else {
            return self.unmatched(Command::Final, lane, service);
        };
        self.shell.event(ClientEvent::Reply { id, body });
        let now = self.shell.now();
        // The broker is up: say so before the freed slot is given out.
        self.broker_answered(now, lane);
        self.complete(id, now);
    }

    pub(super) fn unmatched(&mut self, command: Command, lane: usize, service: Option<Bytes>) {
        self.discard(ClientDiscardReason::Unmatched { command, service: service.map(Found), lane: Lane(lane) });
    }

    pub(super) fn discard(&mut self, reason: ClientDiscardReason) {
        self.shell.event(ClientEvent::Discarded { reason });
    }
}
