//! A worker's reply, passed on to the client in the client's dialect; for an
//! MDP/0.1 client, PARTIALs are joined with the FINAL into one REPLY (see
//! `Job::join`).

use bytes::Bytes;

use super::request::over_budget;
use super::service::{Service, Tally};
use super::worker::{Joined, Progress};
use super::{Broker, Misbehavior, Part};
use crate::{Command, Dialect, Multipart, PeerId};

impl Broker {
    /// A PARTIAL or FINAL from worker `from` for `client`.
    pub(super) fn worker_reply(&mut self, from: PeerId, dialect: Dialect, client: Bytes, body: Multipart, part: Part) {
        let sent = match part {
            Part::Partial => Command::Partial,
            Part::Final => Command::Final,
        };
        let Some(wid) = self.known_worker(&from, dialect, sent) else { return };
        let Some(w) = self.workers.at_mut(wid) else { return };
        let service = w.service.clone();
        let sid = w.service_id;
        let Some(job) = w.job.as_mut().filter(|j| j.request.client.0 == client) else {
            return self.misbehaved(from, Some(sent), None, Misbehavior::NotServingClient);
        };
        let to = job.request.client.clone();
        let (client_dialect, started) = (job.request.dialect, job.started);
        if job.discarding {
            return self.finish_if_final(wid, part);
        }
        let reply = if client_dialect == Dialect::V01 {
            let limits = (self.config.max_message_frames, self.config.max_message_bytes);
            let tally = self.services.at(sid).map_or(Tally::default(), Service::tally);
            let (config, totals) = (&self.config, self.totals);
            match job.join(body, part, limits, |cost| over_budget(config, tally, totals, cost)) {
                Joined::Held { cost } => return self.hold(sid, cost),
                Joined::Reply(joined) => joined,
                Joined::Dropped { reason, freed } => {
                    self.release_held(sid, freed);
                    self.request_dropped(Some(sid), to, service, reason);
                    return self.finish_if_final(wid, part);
                }
            }
        } else if part == Part::Partial {
            job.progress = Progress::Streamed;
            return self.send_client(to, client_dialect, &service, Part::Partial, body);
        } else {
            body
        };
        self.stats.replies_sent += 1;
        if let Some(s) = self.services.at_mut(sid) {
            s.counters.answered += 1;
            s.counters.service_time.record(self.now.saturating_duration_since(started));
        }
        self.send_client(to, client_dialect, &service, Part::Final, reply);
        self.finish_job(wid);
    }

    /// The worker at slab index `wid` is done with its job once its FINAL
    /// is in, whatever became of the reply.
    fn finish_if_final(&mut self, wid: usize, part: Part) {
        if part == Part::Final {
            self.finish_job(wid);
        }
    }
}
