//! What the broker knows of one worker.

use std::time::Instant;

use bytes::Bytes;

use super::service::Request;
use super::BrokerConfig;
use crate::time::add_saturating;
use crate::{Dialect, Multipart};

#[derive(Debug)]
pub(crate) struct WorkerRec {
    pub(crate) service: Bytes,
    /// The service's index in the broker's service slab: valid while the
    /// worker is registered, as a service with workers is never removed.
    pub(crate) service_id: usize,
    pub(crate) dialect: Dialect,
    /// Tells this registration apart from earlier ones of the same identity,
    /// so that a stale timer entry cannot touch a newer worker.
    pub(crate) gen: u64,
    pub(crate) last_heard: Instant,
    /// When the broker must send a HEARTBEAT if it sends nothing else.
    pub(crate) next_heartbeat: Instant,
    /// The deadline of this worker's live timer entry. Deadlines usually
    /// move later and the entry is re-checked lazily when it fires; when one
    /// moves earlier (a busy window shorter than the idle one) a new entry is
    /// pushed and older ones are recognised as stale by this field.
    pub(crate) timer_at: Instant,
    /// Set while the worker is in its service's idle list; matches the
    /// list entry that is live.
    pub(crate) idle_token: Option<u64>,
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

    /// Everything this job holds is charged: the request and the PARTIALs
    /// joined so far.
    pub(crate) fn charge(&self) -> usize {
        self.request.charge + self.joined_charge
    }
}

impl WorkerRec {
    /// When the worker is removed if it stays silent.
    pub(crate) fn expires_at(&self, config: &BrokerConfig) -> Instant {
        let window = if self.job.is_some() { config.busy_timeout() } else { config.idle_worker_timeout() };
        add_saturating(self.last_heard, window)
    }

    /// When the job it holds has taken too long, if there is a limit.
    pub(crate) fn job_deadline(&self, config: &BrokerConfig) -> Option<Instant> {
        let job = self.job.as_ref()?;
        job.started.checked_add(config.max_job_time?)
    }

    /// The worker's next deadline, for its timer entry.
    pub(crate) fn next_deadline(&self, config: &BrokerConfig) -> Instant {
        let next = self.expires_at(config).min(self.next_heartbeat);
        self.job_deadline(config).map_or(next, |job| next.min(job))
    }
}
