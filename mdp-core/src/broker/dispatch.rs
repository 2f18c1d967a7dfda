//! Handing requests to idle workers, and taking them back when a worker
//! finishes or is lost.

use super::request::Request;
use super::service::Books;
use super::worker::{Job, Progress};
use super::{Broker, BrokerEvent, DropReason, Transmit};
use crate::time::{deadline, earlier, passed};

impl Broker {
    /// The request of the worker at slab index `wid` is answered: the
    /// worker goes idle and the client's next request to this service may
    /// go.
    pub(super) fn finish_job(&mut self, wid: usize) {
        let Some(w) = self.workers.at_mut(wid) else { return };
        let Some(job) = w.job.take() else { return };
        let sid = w.service_id;
        self.busy_workers -= 1;
        self.make_idle(wid);
        let Some(s) = self.services.at_mut(sid) else { return };
        s.release(job.charge(), &mut self.totals);
        s.finish(job.request.client);
        // With nothing queued there is nothing to hand out, and the service
        // (which has this worker) stays: dispatch would do nothing.
        if s.tally().queued() > 0 {
            self.dispatch(sid, None);
        }
    }

    pub(super) fn make_idle(&mut self, wid: usize) {
        let Some(w) = self.workers.at_mut(wid) else { return };
        if let Some(s) = self.services.at_mut(w.service_id) {
            w.idle_token = Some(s.push_idle(wid));
        }
    }

    /// Hands `first` (a request already marked in flight, see
    /// `Service::begin_at_once`), then queued requests of the service at
    /// slab index `sid`, to its idle workers; forgets the service if nothing
    /// refers to it any more.
    pub(super) fn dispatch(&mut self, sid: usize, first: Option<Request>) {
        let mut more = match first {
            Some(request) => self.dispatch_one(sid, request),
            None => true,
        };
        while more {
            let Some(request) = self.next_queued(sid) else { break };
            more = self.dispatch_one(sid, request);
        }
        self.forget_if_unused(sid);
    }

    /// Hands `request` to the least recently used idle worker of the
    /// service at slab index `sid`. False if it has none, which is
    /// unreachable while its idle count is accurate: the request goes back.
    fn dispatch_one(&mut self, sid: usize, request: Request) -> bool {
        match self.take_idle(sid) {
            Some(wid) => {
                self.hand_over(wid, request);
                true
            }
            None => {
                self.put_back(sid, request);
                false
            }
        }
    }

    /// The next queued request of the service at slab index `sid`, if it has
    /// an idle worker to take it.
    fn next_queued(&mut self, sid: usize) -> Option<Request> {
        let s = self.services.at_mut(sid)?;
        if s.idle_workers() == 0 {
            return None;
        }
        s.next_request(&mut self.totals)
    }

    /// The service's least recently used idle worker, off its idle list.
    fn take_idle(&mut self, sid: usize) -> Option<usize> {
        let s = self.services.at_mut(sid)?;
        let workers = &self.workers;
        // An entry is stale if its worker left the list since (it died, and
        // its slot may hold another worker by now).
        s.take_idle(|&wid, token| workers.at(wid).is_some_and(|w| w.is_idle_entry(sid, token)))
    }

    /// Hands `request` to the worker at slab index `wid`, just taken off
    /// its service's idle list.
    fn hand_over(&mut self, wid: usize, mut request: Request) {
        let Some((id, w)) = self.workers.entry_at_mut(wid) else { return };
        if let Some(s) = self.services.at_mut(w.service_id) {
            s.hold(request.charge, &mut self.totals);
            s.counters.dispatched += 1;
            if request.dispatches == 0 {
                // Most requests go to a worker as they arrive: no need to
                // subtract instants for those.
                let waited = if request.received == self.now {
                    std::time::Duration::ZERO
                } else {
                    self.now.saturating_duration_since(request.received)
                };
                s.counters.queue_time.record(waited);
            }
        }
        request.dispatches += 1;
        w.idle_token = None;
        w.next_heartbeat = deadline(self.now, self.config.heartbeat_interval);
        let frames = crate::codec::worker_request(w.dialect, request.client.0.clone(), &request.body);
        let client = request.client.clone();
        w.job = Some(Job::new(request, self.now));
        // A busy window shorter than the idle one moves the expiry earlier.
        if earlier(w.next_deadline(&self.config), w.timer_at) {
            w.arm(id, &self.config, &mut self.worker_timers);
        }
        self.busy_workers += 1;
        self.stats.dispatched += 1;
        let service = w.service.clone();
        self.events.push_back(BrokerEvent::RequestDispatched { client, service, worker: id.clone() });
        self.transmits.push_back(Transmit { to: id.clone(), frames });
    }

    /// Puts `request` back at the head of its queue in the service at slab
    /// index `sid`.
    fn put_back(&mut self, sid: usize, request: Request) {
        let Some((service, s)) = self.services.entry_at_mut(sid) else { return };
        s.requeue(request, Books { totals: &mut self.totals, timers: &mut self.request_timers, service });
    }

    /// A request whose worker was lost: back to the head of the queue, or
    /// dropped if part of its answer reached the client already,
    /// if it has been dispatched too often, or if it is past its deadline.
    pub(super) fn requeue(&mut self, sid: usize, request: Request, progress: Progress) {
        let Some((service, s)) = self.services.entry_at_mut(sid) else { return };
        let (client, service) = (request.client.clone(), service.clone());
        let dropped = if progress == Progress::Streamed {
            Some(DropReason::PartlyAnswered)
        } else if request.dispatches >= self.config.max_dispatches {
            Some(DropReason::TooManyDispatches)
        } else {
            None
        };
        if let Some(reason) = dropped {
            s.finish(client.clone());
            return self.request_dropped(Some(sid), client, service, reason);
        }
        let event = if passed(request.deadline(self.config.request_timeout), self.now) {
            s.finish(client.clone());
            s.counters.expired += 1;
            self.stats.expired += 1;
            BrokerEvent::RequestExpired { client, service }
        } else {
            s.counters.requeued += 1;
            let dispatches = request.dispatches;
            self.put_back(sid, request);
            self.stats.requeued += 1;
            BrokerEvent::RequestRequeued { client, service, dispatches }
        };
        self.events.push_back(event);
    }
}
