//! What the broker knows of one worker, and how workers register and are
//! forgotten.

use std::time::Instant;

use bytes::Bytes;

use super::mmi::MMI_PREFIX;
use super::request::{frames_charge, Request};
use super::service::Service;
use super::{Access, Broker, BrokerConfig, BrokerEvent, DropReason, Farewell, GoneReason, Limit, Misbehavior, Part};
use crate::lazy::Token;
use crate::time::{deadline, earliest, DeadlineQueue};
use crate::{BrokerCommand, Command, Dialect, Multipart, PeerId};

#[derive(Debug)]
pub(crate) struct WorkerRec {
    pub(crate) service: Bytes,
    /// The service's index in the broker's service slab: valid while the
    /// worker is registered, as a service with workers is never removed.
    pub(crate) service_id: usize,
    pub(crate) dialect: Dialect,
    pub(crate) last_heard: Instant,
    /// When the broker must send a HEARTBEAT if it sends nothing else.
    pub(crate) next_heartbeat: Option<Instant>,
    /// The token of this worker's live entry in the broker's worker timers,
    /// and its deadline. Deadlines usually move later, and the entry is
    /// re-checked when it fires; when one moves earlier (a busy window
    /// shorter than the idle one) a new entry replaces it. Tokens are never
    /// reused, so an entry of an earlier registration of the same identity
    /// cannot touch this one.
    pub(crate) timer: Option<Token>,
    pub(crate) timer_at: Option<Instant>,
    /// Set while the worker is in its service's idle list: the token of its
    /// live entry there.
    pub(crate) idle_token: Option<Token>,
    /// Boxed: an idle worker then costs a pointer, not a whole request.
    pub(crate) job: Option<Box<Job>>,
}

/// The request a busy worker holds.
#[derive(Debug)]
pub(crate) struct Job {
    /// Kept whole so it can be re-queued if the worker is lost.
    pub(crate) request: Request,
    /// When it was handed to the worker.
    pub(crate) started: Instant,
    /// For an MDP/0.1 client, the PARTIALs received so far, to be joined
    /// with the FINAL into the one REPLY that 0.1 allows.
    pub(crate) joined: Multipart,
    pub(crate) joined_bytes: usize,
    /// What the PARTIALs in `joined` are charged against the byte budget
    /// (their bytes and frame overhead), on top of the request's own charge.
    pub(crate) joined_charge: usize,
    /// The reply grew past the limits: the rest of it is thrown away.
    pub(crate) discarding: bool,
    /// Whether part of the answer reached the client already.
    pub(crate) progress: Progress,
}

/// What a part of a reply for an MDP/0.1 client came to, once joined.
#[derive(Debug)]
pub(crate) enum Joined {
    /// A PARTIAL, held until the FINAL: its worker holds `cost` bytes more.
    Held { cost: usize },
    /// The FINAL: the whole reply, to go out as the one REPLY.
    Reply(Multipart),
    /// Past a limit: what was joined is thrown away, and so is the rest of
    /// the reply as it comes. `freed` bytes are no longer held.
    Dropped { reason: DropReason, freed: usize },
}

/// How much of a job's answer its client has seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Nothing yet (MDP/0.1 PARTIALs being joined count as nothing): if the
    /// worker is lost, the request can go to another worker.
    Unanswered,
    /// A PARTIAL was forwarded to the (0.2) client: another worker's answer
    /// could not continue this one, so the request is not re-queued.
    Streamed,
}

impl Job {
    pub(crate) fn new(request: Request, started: Instant) -> Box<Self> {
        Box::new(Job {
            request,
            started,
            joined: Vec::new(),
            joined_bytes: 0,
            joined_charge: 0,
            discarding: false,
            progress: Progress::Unanswered,
        })
    }

    /// Joins `body`, a PARTIAL or the FINAL, into the one REPLY that MDP/0.1
    /// allows. The joined reply is held to the message limits
    /// `(max frames, max bytes)`; `over_budget(cost)` says which byte limit
    /// holding `cost` bytes more would break.
    pub(crate) fn join(
        &mut self,
        body: Multipart,
        part: Part,
        limits: (usize, usize),
        over_budget: impl FnOnce(usize) -> Option<Limit>,
    ) -> Joined {
        self.joined_bytes += body.iter().map(Bytes::len).sum::<usize>();
        // A PARTIAL is held until the FINAL, so it takes its share of the
        // byte budget; a FINAL goes out at once.
        let cost = if part == Part::Final { 0 } else { frames_charge(&body) };
        let reason = if self.joined.len() + body.len() > limits.0 || self.joined_bytes > limits.1 {
            Some(DropReason::ReplyTooLarge)
        } else if cost > 0 {
            over_budget(cost).map(DropReason::ReplyOverBudget)
        } else {
            None
        };
        if let Some(reason) = reason {
            self.discarding = true;
            self.joined = Vec::new();
            return Joined::Dropped { reason, freed: std::mem::take(&mut self.joined_charge) };
        }
        self.joined_charge += cost;
        if self.joined.is_empty() {
            // The usual case, no PARTIAL before: the FINAL's own frames (and
            // buffer) become the REPLY.
            self.joined = body;
        } else {
            self.joined.extend(body);
        }
        match part {
            Part::Partial => Joined::Held { cost },
            Part::Final => Joined::Reply(std::mem::take(&mut self.joined)),
        }
    }

    /// Everything this job holds is charged: the request and the PARTIALs
    /// joined so far.
    pub(crate) fn charge(&self) -> usize {
        self.request.charge + self.joined_charge
    }
}

impl WorkerRec {
    /// Worker `id` of `service` (at slab index `service_id`), registered
    /// at `now` and idle, with its first entry pushed to `timers`.
    pub(crate) fn new(
        id: &PeerId,
        (service, service_id): (Bytes, usize),
        dialect: Dialect,
        now: Instant,
        config: &BrokerConfig,
        timers: &mut DeadlineQueue<PeerId>,
    ) -> Self {
        let mut rec = WorkerRec {
            service,
            service_id,
            dialect,
            last_heard: now,
            next_heartbeat: deadline(now, config.heartbeat_interval),
            // Set by `arm`, below.
            timer: None,
            timer_at: None,
            idle_token: None,
            job: None,
        };
        rec.arm(id, config, timers);
        rec
    }

    /// Pushes a timer entry for the worker's next deadline, which becomes
    /// its live one (the one before, if any, turns stale).
    /// A deadline that is never gets no entry.
    pub(crate) fn arm(&mut self, id: &PeerId, config: &BrokerConfig, timers: &mut DeadlineQueue<PeerId>) {
        self.timer_at = self.next_deadline(config);
        self.timer = self.timer_at.map(|at| timers.push(at, id.clone()));
    }

    /// Whether this worker, of the service at slab index `sid`, holds the
    /// idle-list entry `token` of that service. (Tokens are unique within
    /// one service's list; slots in the worker slab are shared by all.)
    pub(crate) fn is_idle_entry(&self, sid: usize, token: Token) -> bool {
        self.service_id == sid && self.idle_token == Some(token)
    }

    /// When the worker is removed if it stays silent.
    pub(crate) fn expires_at(&self, config: &BrokerConfig) -> Option<Instant> {
        let window = if self.job.is_some() { config.busy_timeout() } else { config.idle_worker_timeout() };
        deadline(self.last_heard, window)
    }

    /// When the job it holds has taken too long, if there is a limit.
    pub(crate) fn job_deadline(&self, config: &BrokerConfig) -> Option<Instant> {
        let job = self.job.as_ref()?;
        deadline(job.started, config.max_job_time?)
    }

    /// The worker's next deadline, for its timer entry.
    pub(crate) fn next_deadline(&self, config: &BrokerConfig) -> Option<Instant> {
        let next = earliest(self.expires_at(config), self.next_heartbeat);
        earliest(next, self.job_deadline(config))
    }
}

impl Broker {
    /// The slab index of worker `from`, heard from now, if it is registered
    /// and speaks `dialect`; otherwise deals with the violation and returns
    /// `None`. One map lookup: every worker message comes through here.
    #[inline]
    pub(super) fn known_worker(&mut self, from: &PeerId, dialect: Dialect, sent: Command) -> Option<usize> {
        let now = self.now;
        let registered = match self.workers.get_full_mut(from) {
            Some((wid, w)) if w.dialect == dialect => {
                w.last_heard = now;
                return Some(wid);
            }
            other => other.map(|(_, w)| w.dialect),
        };
        match registered {
            None => self.misbehaved(from.clone(), Some(sent), Some(dialect), Misbehavior::BeforeReady),
            Some(registered) => self.misbehaved(
                from.clone(),
                Some(sent),
                None,
                Misbehavior::DialectChanged { registered, sent: dialect },
            ),
        }
        None
    }

    /// The slab index of `service`, added if it is new; `None` if it is new
    /// and `max_services` are known already.
    pub(super) fn service_slot(&mut self, service: &Bytes) -> Option<usize> {
        match self.services.id(service) {
            Some(sid) => Some(sid),
            None if self.services.len() >= self.config.max_services => None,
            None => Some(self.services.insert(
                service.clone(),
                Service::new(self.seed, self.config.in_flight_limit(), self.config.request_timeout),
            )),
        }
    }

    pub(super) fn ready(&mut self, from: PeerId, name: Option<&Bytes>, dialect: Dialect, service: Bytes) {
        if self.workers.contains_key(&from) {
            return self.misbehaved(from, Some(Command::Ready), None, Misbehavior::ReadyTwice);
        }
        if service.starts_with(MMI_PREFIX) {
            return self.misbehaved(from, Some(Command::Ready), Some(dialect), Misbehavior::ReservedService);
        }
        if !self.may(name, Access::Serve, &service) {
            self.send(from.clone(), dialect, BrokerCommand::Disconnect);
            return self.denied(from, name, Access::Serve, service);
        }
        let service_id = match self.worker_slot(&service) {
            Ok(sid) => sid,
            Err(limit) => {
                self.send(from.clone(), dialect, BrokerCommand::Disconnect);
                return self.limit_hit(from, limit);
            }
        };
        // The worker keeps the service's own name, not this message's copy.
        let Some((name, s)) = self.services.entry_at_mut(service_id) else { return };
        let service = name.clone();
        s.workers += 1;
        let was_workerless = s.workerless.take();
        let slot = (service.clone(), service_id);
        let rec = WorkerRec::new(&from, slot, dialect, self.now, &self.config, &mut self.worker_timers);
        self.forget_workerless(was_workerless);
        let worker = self.workers.insert(from.clone(), rec);
        self.events.push_back(BrokerEvent::WorkerReady { worker: from, service, dialect });
        self.make_idle(worker);
        self.dispatch(service_id, None);
    }

    /// The slab index of the service a new worker registers for, if the
    /// limits let it.
    fn worker_slot(&mut self, service: &Bytes) -> Result<usize, Limit> {
        if self.workers.len() >= self.config.max_workers {
            Err(Limit::Workers)
        } else if service.len() > self.config.max_service_name_bytes {
            Err(Limit::ServiceName)
        } else {
            match self.service_slot(service) {
                Some(sid) => Ok(sid),
                // A real worker before made-up names: make room.
                None if self.evict_workerless() => self.service_slot(service).ok_or(Limit::Services),
                None => Err(Limit::Services),
            }
        }
    }

    /// Forgets a worker. Its request, if it held one, goes back to the head
    /// of its service's queue (unless PARTIALs of it reached the client).
    pub(super) fn remove_worker(&mut self, id: &PeerId, reason: GoneReason, farewell: Farewell) {
        let Some(w) = self.workers.remove(id) else { return };
        if farewell == Farewell::Disconnect {
            self.send(id.clone(), w.dialect, BrokerCommand::Disconnect);
        }
        if reason == GoneReason::Expired {
            self.stats.workers_expired += 1;
        }
        self.unlink(&w);
        let sid = w.service_id;
        self.events.push_back(BrokerEvent::WorkerGone { worker: id.clone(), service: w.service, reason });
        if let Some(job) = w.job {
            let job = *job;
            self.release_held(sid, job.charge());
            self.requeue(sid, job.request, job.progress);
        }
        self.dispatch(sid, None);
    }

    /// Shutdown's removal: DISCONNECT, and the request is dropped, not
    /// re-queued.
    pub(super) fn remove_worker_quiet(&mut self, id: &PeerId, reason: GoneReason) {
        let Some(w) = self.workers.remove(id) else { return };
        self.send(id.clone(), w.dialect, BrokerCommand::Disconnect);
        self.unlink(&w);
        self.events.push_back(BrokerEvent::WorkerGone { worker: id.clone(), service: w.service.clone(), reason });
        if let Some(job) = w.job {
            self.release_held(w.service_id, job.charge());
            self.request_dropped(Some(w.service_id), job.request.client, w.service, DropReason::Shutdown);
        }
    }

    /// Removes a forgotten worker from its service's counts and idle list.
    pub(super) fn unlink(&mut self, w: &WorkerRec) {
        if w.job.is_some() {
            self.busy_workers -= 1;
        }
        let Some(s) = self.services.at_mut(w.service_id) else { return };
        s.workers -= 1;
        let workerless = s.workers == 0;
        if w.idle_token.is_some() {
            let (workers, sid) = (&self.workers, w.service_id);
            s.forget_idle(|&wid, token| workers.at(wid).is_some_and(|w| w.is_idle_entry(sid, token)));
        }
        if workerless {
            self.mark_workerless(w.service_id);
        }
    }
}
