//! A worker's reply, passed on to the client in the client's dialect; for an
//! MDP/0.1 client, PARTIALs are joined with the FINAL into one REPLY.

use bytes::Bytes;

use super::service::{frames_charge, Service};
use super::worker::Progress;
use super::{Broker, BrokerEvent, DropReason, Limit, Misbehavior, Part};
use crate::{Command, Dialect, Multipart, PeerId};

impl Broker {
    /// A PARTIAL or FINAL from worker `from` for `client`.
    pub(super) fn worker_reply(&mut self, from: PeerId, dialect: Dialect, client: Bytes, body: Multipart, part: Part) {
        let is_final = part == Part::Final;
        let sent = match part {
            Part::Partial => Command::Partial,
            Part::Final => Command::Final,
        };
        let limits = (self.config.max_message_frames, self.config.max_message_bytes);
        let Some(wid) = self.known_worker(&from, dialect, sent) else { return };
        let Some(w) = self.workers.at_mut(wid) else { return };
        let service = w.service.clone();
        let sid = w.service_id;
        let Some(job) = w.job.as_mut().filter(|j| j.request.client.0 == client) else {
            return self.misbehaved(from, Some(sent), None, Misbehavior::NotServingClient);
        };
        let to = job.request.client.clone();
        let client_dialect = job.request.dialect;
        if job.discarding {
            if is_final {
                self.finish_job(wid);
            }
            return;
        }
        if client_dialect == Dialect::V01 {
            // 0.1 has one REPLY per request: join the parts.
            job.joined_bytes += body.iter().map(Bytes::len).sum::<usize>();
            // A PARTIAL is held until the FINAL, so it takes its share of
            // the byte budget; a FINAL goes out at once.
            let cost = if is_final { 0 } else { frames_charge(&body) };
            let service_bytes = self.services.at(sid).map_or(0, Service::bytes);
            let reason = if job.joined.len() + body.len() > limits.0 || job.joined_bytes > limits.1 {
                Some(DropReason::ReplyTooLarge)
            } else if cost > 0 && service_bytes + cost > self.config.max_queued_bytes_per_service {
                Some(DropReason::ReplyOverBudget(Limit::QueuedBytesPerService))
            } else if cost > 0 && self.queued_bytes + self.held_bytes + cost > self.config.max_queued_bytes {
                Some(DropReason::ReplyOverBudget(Limit::QueuedBytes))
            } else {
                None
            };
            if let Some(reason) = reason {
                job.discarding = true;
                job.joined = Vec::new();
                let freed = std::mem::take(&mut job.joined_charge);
                self.release_held(sid, freed);
                self.stats.dropped += 1;
                self.events.push_back(BrokerEvent::RequestDropped { client: to, service, reason });
                if is_final {
                    self.finish_job(wid);
                }
                return;
            }
            job.joined_charge += cost;
            if job.joined.is_empty() {
                // The usual case, no PARTIAL before: the FINAL's own frames
                // (and buffer) become the REPLY.
                job.joined = body;
            } else {
                job.joined.extend(body);
            }
            if !is_final {
                self.held_bytes += cost;
                if let Some(s) = self.services.at_mut(sid) {
                    s.held_bytes += cost;
                }
                return;
            }
            let joined = std::mem::take(&mut job.joined);
            self.stats.replies_sent += 1;
            self.send_client(to, client_dialect, &service, Part::Final, joined);
        } else if is_final {
            self.stats.replies_sent += 1;
            self.send_client(to, client_dialect, &service, Part::Final, body);
        } else {
            job.progress = Progress::Streamed;
            return self.send_client(to, client_dialect, &service, Part::Partial, body);
        }
        self.finish_job(wid);
    }
}
