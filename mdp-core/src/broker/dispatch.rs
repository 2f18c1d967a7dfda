//! Handing requests to idle workers, and taking them back when a worker
//! finishes or is lost.

use super::service::Request;
use super::worker::{Job, Progress};
use super::{Broker, BrokerEvent, DropReason, Transmit};
use crate::time::add_saturating;

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
        let charge = job.charge();
        self.held_bytes -= charge;
        let Some(s) = self.services.at_mut(sid) else { return };
        s.held_bytes -= charge;
        s.finish(job.request.client);
        // With nothing queued there is nothing to hand out, and the service
        // (which has this worker) stays: dispatch would do nothing.
        if s.queued > 0 {
            self.dispatch(sid, None);
        }
    }

    pub(super) fn make_idle(&mut self, wid: usize) {
        let token = self.next_seq;
        self.next_seq += 1;
        let Some(w) = self.workers.at_mut(wid) else { return };
        w.idle_token = Some(token);
        if let Some(s) = self.services.at_mut(w.service_id) {
            s.push_idle(wid, token);
        }
    }

    /// Hands `first` (a request already marked in flight, see
    /// `Service::begin_at_once`), then queued requests of the service at
    /// slab index `sid`, to its idle workers; forgets the service if nothing
    /// refers to it any more.
    pub(super) fn dispatch(&mut self, sid: usize, mut first: Option<Request>) {
        let Some((service, s)) = self.services.entry_at_mut(sid) else { return };
        loop {
            let mut request = match first.take() {
                Some(request) => request,
                None if s.idle_workers() > 0 => match s.next_request() {
                    Some(request) => {
                        self.queued -= 1;
                        self.queued_bytes -= request.charge;
                        request
                    }
                    None => break,
                },
                None => break,
            };
            // The least recently used idle worker; stale entries (of workers
            // that died) are skipped.
            let idle = loop {
                let Some((wid, token)) = s.pop_idle_entry() else { break None };
                match self.workers.entry_at_mut(wid) {
                    Some((id, w)) if w.idle_token == Some(token) => break Some((id, w)),
                    _ => continue,
                }
            };
            let Some((id, w)) = idle else {
                // Unreachable while `idle_workers` is accurate; put it back.
                let client = request.client.clone();
                self.queued_bytes += request.charge;
                if let Some(at) = s.requeue(request) {
                    self.request_timers.push(at, (service.clone(), client));
                }
                self.queued += 1;
                break;
            };
            s.took_idle();
            s.held_bytes += request.charge;
            self.held_bytes += request.charge;
            request.dispatches += 1;
            w.idle_token = None;
            w.next_heartbeat = add_saturating(self.now, self.config.heartbeat_interval);
            let frames = crate::codec::worker_request(w.dialect, request.client.0.clone(), &request.body);
            let client = request.client.clone();
            w.job = Some(Job::new(request, self.now));
            // A busy window shorter than the idle one moves the expiry earlier.
            let deadline = w.next_deadline(&self.config);
            if deadline < w.timer_at {
                w.timer_at = deadline;
                self.worker_timers.push(deadline, (id.clone(), w.gen));
            }
            self.busy_workers += 1;
            self.stats.dispatched += 1;
            self.events.push_back(BrokerEvent::RequestDispatched {
                client,
                service: service.clone(),
                worker: id.clone(),
            });
            self.transmits.push_back(Transmit { to: id.clone(), frames });
        }
        if s.is_unused() {
            self.services.remove_at(sid);
        }
    }

    /// A request whose worker was lost: back to the head of the queue, or
    /// dropped if part of its answer reached the client already,
    /// if it has been dispatched too often, or if it is past its deadline.
    pub(super) fn requeue(&mut self, sid: usize, request: Request, progress: Progress) {
        let Some((service, s)) = self.services.entry_at_mut(sid) else { return };
        let client = request.client.clone();
        let event = if progress == Progress::Streamed {
            s.finish(client.clone());
            self.stats.dropped += 1;
            BrokerEvent::RequestDropped { client, service: service.clone(), reason: DropReason::PartlyAnswered }
        } else if request.dispatches >= self.config.max_dispatches {
            s.finish(client.clone());
            self.stats.dropped += 1;
            BrokerEvent::RequestDropped { client, service: service.clone(), reason: DropReason::TooManyDispatches }
        } else if request.deadline <= self.now {
            s.finish(client.clone());
            self.stats.expired += 1;
            BrokerEvent::RequestExpired { client, service: service.clone() }
        } else {
            let dispatches = request.dispatches;
            self.queued_bytes += request.charge;
            if let Some(at) = s.requeue(request) {
                self.request_timers.push(at, (service.clone(), client.clone()));
            }
            self.queued += 1;
            self.stats.requeued += 1;
            BrokerEvent::RequestRequeued { client, service: service.clone(), dispatches }
        };
        self.events.push_back(event);
    }
}
