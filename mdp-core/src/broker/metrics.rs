//! What an operator watches: per-service counters and latency histograms,
//! and broker-wide counters of misbehaviour, limit hits and drops by kind.
//!
//! The broker keeps them as it goes, from the `now` it is given (it reads
//! no clock); [`Broker::service_metrics`] and [`Broker::counters`] read
//! them without copying. A service's figures live in the service, so a
//! service the broker forgets (no workers, nothing queued) drops its
//! series, and there are at most [`max_services`] of them.
//!
//! The names ([`Limit::name`], [`Misbehavior::kind`], [`DropReason::name`])
//! are stable `snake_case` strings, fit for metric labels.
//!
//! [`max_services`]: crate::BrokerConfig::max_services

use std::time::Duration;

use bytes::Bytes;

use super::{Broker, DropReason, Limit, Misbehavior};

/// The upper bounds of the latency histograms' buckets, from 0.5 ms to
/// 60 s; a last bucket takes everything longer.
pub const LATENCY_BOUNDS: [Duration; 16] = [
    Duration::from_micros(500),
    Duration::from_millis(1),
    Duration::from_micros(2500),
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(25),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_micros(2_500_000),
    Duration::from_secs(5),
    Duration::from_secs(10),
    Duration::from_secs(30),
    Duration::from_secs(60),
];

/// [`LATENCY_BOUNDS`] in nanoseconds: a comparison of integers per bucket
/// rather than of `Duration`s, since a request's histograms are written
/// twice per round trip.
const BOUNDS_NS: [u64; LATENCY_BOUNDS.len()] = {
    let mut ns = [0; LATENCY_BOUNDS.len()];
    let mut i = 0;
    while i < ns.len() {
        ns[i] = LATENCY_BOUNDS[i].as_nanos() as u64;
        i += 1;
    }
    ns
};

/// A latency histogram with the fixed buckets of [`LATENCY_BOUNDS`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    /// Per bucket, not cumulative; the last one is past every bound.
    counts: [u64; LATENCY_BOUNDS.len() + 1],
    /// The sum in nanoseconds, saturating (at 584 years).
    sum_ns: u64,
}

impl Histogram {
    /// Counts one duration.
    pub fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        // Most durations are short: a scan from the first bucket ends soon.
        let bucket = BOUNDS_NS.iter().position(|&bound| ns <= bound).unwrap_or(BOUNDS_NS.len());
        self.counts[bucket] += 1;
        self.sum_ns = self.sum_ns.saturating_add(ns);
    }

    /// Durations counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Their sum (saturating).
    pub fn sum(&self) -> Duration {
        Duration::from_nanos(self.sum_ns)
    }

    /// Each bucket's upper bound (`None` for the last, unbounded one) with
    /// the number of durations at most that long: cumulative, as
    /// Prometheus histograms are.
    pub fn cumulative(&self) -> impl Iterator<Item = (Option<Duration>, u64)> + '_ {
        let bounds = LATENCY_BOUNDS.iter().copied().map(Some).chain([None]);
        bounds.zip(self.counts.iter().scan(0, |total, &n| {
            *total += n;
            Some(*total)
        }))
    }
}

/// One service's running totals since the broker learned of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceCounters {
    /// Requests admitted to the service (past every limit).
    pub received: u64,
    /// Hand-overs to a worker, re-dispatches included.
    pub dispatched: u64,
    /// Requests whose whole answer went to their client.
    pub answered: u64,
    /// Requests put back in the queue after their worker was lost.
    pub requeued: u64,
    /// Requests that waited past `request_timeout`.
    pub expired: u64,
    /// Requests dropped, by reason, indexed as [`DropReason::ALL`].
    dropped: [u64; DropReason::ALL.len()],
    /// From arrival to first dispatch, per dispatched request.
    pub queue_time: Histogram,
    /// From dispatch to the last part of the answer, per answered request.
    pub service_time: Histogram,
}

impl ServiceCounters {
    /// Requests dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason.index()]
    }

    /// Requests dropped, for any reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }

    pub(super) fn drop_one(&mut self, reason: DropReason) {
        self.dropped[reason.index()] += 1;
    }
}

/// A view of one service, for [`Broker::service_metrics`].
#[derive(Debug, Clone, Copy)]
pub struct ServiceMetrics<'a> {
    /// The service's name.
    pub name: &'a Bytes,
    /// Registered workers waiting for a request.
    pub idle_workers: usize,
    /// Registered workers holding a request.
    pub busy_workers: usize,
    /// Requests waiting in its queues.
    pub queued_requests: usize,
    /// The bytes they are charged.
    pub queued_bytes: usize,
    /// Clients with a request queued here or at one of its workers (the
    /// broker keeps no record of a client it holds nothing for).
    pub clients: usize,
    /// Its running totals.
    pub counters: &'a ServiceCounters,
}

/// The broker's running totals by kind, for [`Broker::counters`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerCounters {
    limit_hits: [u64; Limit::ALL.len()],
    misbehaviour: [u64; Misbehavior::KINDS.len()],
    dropped: [u64; DropReason::ALL.len()],
}

impl BrokerCounters {
    /// Messages dropped at `limit`.
    pub fn limit_hits(&self, limit: Limit) -> u64 {
        self.limit_hits[limit.index()]
    }

    /// Every limit with its hits, in [`Limit::ALL`] order.
    pub fn limit_hits_by_limit(&self) -> impl Iterator<Item = (Limit, u64)> + '_ {
        Limit::ALL.into_iter().zip(self.limit_hits.iter().copied())
    }

    /// Every kind of misbehaviour ([`Misbehavior::kind`]) with its count,
    /// in [`Misbehavior::KINDS`] order.
    pub fn misbehaviour_by_kind(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Misbehavior::KINDS.into_iter().zip(self.misbehaviour.iter().copied())
    }

    /// Requests dropped for `reason`, over every service (forgotten ones
    /// too: a service evicted or shut down goes with its own counters).
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason.index()]
    }

    /// Every drop reason with its count, in [`DropReason::ALL`] order.
    pub fn dropped_by_reason(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.into_iter().zip(self.dropped.iter().copied())
    }

    pub(super) fn limit_hit(&mut self, limit: Limit) {
        self.limit_hits[limit.index()] += 1;
    }

    pub(super) fn misbehaved(&mut self, reason: &Misbehavior) {
        self.misbehaviour[reason.index()] += 1;
    }

    pub(super) fn drop_one(&mut self, reason: DropReason) {
        self.dropped[reason.index()] += 1;
    }
}

impl Limit {
    /// Every limit.
    pub const ALL: [Limit; 9] = [
        Limit::Services,
        Limit::Workers,
        Limit::QueuePerService,
        Limit::QueueTotal,
        Limit::MessageFrames,
        Limit::MessageBytes,
        Limit::QueuedBytes,
        Limit::QueuedBytesPerService,
        Limit::ServiceName,
    ];

    /// A stable `snake_case` name: the configuration field without `max_`.
    pub fn name(self) -> &'static str {
        match self {
            Limit::Services => "services",
            Limit::Workers => "workers",
            Limit::QueuePerService => "queue_per_service",
            Limit::QueueTotal => "queue_total",
            Limit::MessageFrames => "message_frames",
            Limit::MessageBytes => "message_bytes",
            Limit::QueuedBytes => "queued_bytes",
            Limit::QueuedBytesPerService => "queued_bytes_per_service",
            Limit::ServiceName => "service_name_bytes",
        }
    }

    fn index(self) -> usize {
        Limit::ALL.iter().position(|&l| l == self).unwrap_or_default()
    }
}

impl DropReason {
    /// Every reason (a [`ReplyOverBudget`](DropReason::ReplyOverBudget)
    /// for [`Limit::QueuedBytes`] stands for both of its limits).
    pub const ALL: [DropReason; 6] = [
        DropReason::TooManyDispatches,
        DropReason::ReplyTooLarge,
        DropReason::Shutdown,
        DropReason::PartlyAnswered,
        DropReason::Evicted,
        DropReason::ReplyOverBudget(Limit::QueuedBytes),
    ];

    /// A stable `snake_case` name.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::TooManyDispatches => "too_many_dispatches",
            DropReason::ReplyTooLarge => "reply_too_large",
            DropReason::Shutdown => "shutdown",
            DropReason::PartlyAnswered => "partly_answered",
            DropReason::Evicted => "evicted",
            DropReason::ReplyOverBudget(_) => "reply_over_budget",
        }
    }

    fn index(self) -> usize {
        match self {
            DropReason::TooManyDispatches => 0,
            DropReason::ReplyTooLarge => 1,
            DropReason::Shutdown => 2,
            DropReason::PartlyAnswered => 3,
            DropReason::Evicted => 4,
            DropReason::ReplyOverBudget(_) => 5,
        }
    }
}

impl Misbehavior {
    /// Every [`kind`](Misbehavior::kind).
    pub const KINDS: [&'static str; 6] =
        ["malformed", "ready_twice", "before_ready", "not_serving_client", "reserved_service", "dialect_changed"];

    /// A stable `snake_case` name of the kind of misbehaviour, without its
    /// details.
    pub fn kind(&self) -> &'static str {
        Misbehavior::KINDS[self.index()]
    }

    /// Its kind's place in [`KINDS`](Misbehavior::KINDS).
    fn index(&self) -> usize {
        match self {
            Misbehavior::Malformed(_) => 0,
            Misbehavior::ReadyTwice => 1,
            Misbehavior::BeforeReady => 2,
            Misbehavior::NotServingClient => 3,
            Misbehavior::ReservedService => 4,
            Misbehavior::DialectChanged { .. } => 5,
        }
    }
}

impl Broker {
    /// Every service the broker knows, with its workers, queue and running
    /// totals, in no particular order. Cheap: it copies nothing but a few
    /// counts per service.
    pub fn service_metrics(&self) -> impl Iterator<Item = ServiceMetrics<'_>> + '_ {
        self.services.iter().map(|(name, s)| {
            let idle = s.idle_workers();
            ServiceMetrics {
                name,
                idle_workers: idle,
                busy_workers: s.workers.saturating_sub(idle),
                queued_requests: s.tally().queued(),
                queued_bytes: s.tally().queued_bytes(),
                clients: s.clients(),
                counters: &s.counters,
            }
        })
    }

    /// The broker's running totals by kind: limit hits, misbehaviour and
    /// drops.
    pub fn counters(&self) -> &BrokerCounters {
        &self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_fall_in_the_first_bucket_that_holds_them() {
        let mut h = Histogram::default();
        for ms in [0, 1, 2, 7, 7, 70_000] {
            h.record(Duration::from_millis(ms));
        }
        let got: Vec<(Option<Duration>, u64)> = h.cumulative().collect();
        assert_eq!(got.len(), LATENCY_BOUNDS.len() + 1);
        // 0 ms ≤ 0.5 ms; 1 ms ≤ 1 ms (bounds are inclusive); 2 ms ≤ 2.5 ms;
        // 7 ms twice ≤ 10 ms; 70 s past every bound.
        assert_eq!(got[0], (Some(Duration::from_micros(500)), 1));
        assert_eq!(got[1], (Some(Duration::from_millis(1)), 2));
        assert_eq!(got[2], (Some(Duration::from_micros(2500)), 3));
        assert_eq!(got[3].1, 3);
        assert_eq!(got[4], (Some(Duration::from_millis(10)), 5));
        assert_eq!(got[15], (Some(Duration::from_secs(60)), 5));
        assert_eq!(got[16], (None, 6));
        assert_eq!((h.count(), h.sum()), (6, Duration::from_millis(70_017)));
    }

    #[test]
    fn names_are_distinct_and_indices_follow_the_lists() {
        for (i, l) in Limit::ALL.into_iter().enumerate() {
            assert_eq!(l.index(), i);
        }
        for (i, r) in DropReason::ALL.into_iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        let mut names: Vec<&str> = Limit::ALL.iter().map(|l| l.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Limit::ALL.len());
        let over = DropReason::ReplyOverBudget(Limit::QueuedBytesPerService);
        assert_eq!(over.index(), DropReason::ReplyOverBudget(Limit::QueuedBytes).index());
        assert_eq!(
            Misbehavior::DialectChanged { registered: crate::Dialect::V01, sent: crate::Dialect::V02 }.kind(),
            "dialect_changed"
        );
    }
}
