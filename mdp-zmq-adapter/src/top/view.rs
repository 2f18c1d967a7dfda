//! From samples to figures: a [`Snapshot`] gathers one scrape's metrics by
//! service; [`View::new`] turns two snapshots and the time between them
//! into rates and percentiles.

use std::collections::BTreeMap;
use std::time::Duration;

use super::parse::Sample;

/// A latency histogram as scraped: cumulative bucket counts by upper bound.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// `(le, count)`: the number of observations at most `le` seconds long,
    /// sorted by `le`; the last bound is `+Inf` when the broker sends it.
    pub buckets: Vec<(f64, f64)>,
    /// The sum of the observations, in seconds.
    pub sum: f64,
    /// The number of observations.
    pub count: f64,
}

/// A percentile estimated from a [`Histogram`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantile {
    /// The estimate, in seconds.
    pub seconds: f64,
    /// The percentile falls in the last, unbounded bucket: it is at least
    /// `seconds`, the highest finite bound, and could be anything above.
    pub at_least: bool,
}

impl Histogram {
    /// The observations made since `earlier`, bucket by bucket. A bucket
    /// that went down (the broker restarted, or forgot the service and
    /// learned of it again) means the counts started again from zero: then
    /// the answer is `self` whole.
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        let mut buckets = Vec::with_capacity(self.buckets.len());
        for &(le, count) in &self.buckets {
            let before = earlier.buckets.iter().find(|(l, _)| *l == le).map_or(0.0, |&(_, c)| c);
            if count < before {
                return self.clone();
            }
            buckets.push((le, count - before));
        }
        if self.count < earlier.count {
            return self.clone();
        }
        Histogram { buckets, sum: self.sum - earlier.sum, count: self.count - earlier.count }
    }

    /// The `q` quantile (0.5 for the median, 0.99 for p99), or `None` with
    /// no observations.
    ///
    /// As Prometheus' `histogram_quantile` does: find the bucket where the
    /// `q × total`-th observation falls and interpolate linearly between
    /// its lower bound (the bucket before's `le`, or 0) and its upper bound
    /// (its `le`), assuming observations spread evenly inside it. The
    /// estimate is only as fine as the buckets. In the `+Inf` bucket there
    /// is no upper bound: the answer is the highest finite one, marked
    /// [`Quantile::at_least`].
    pub fn quantile(&self, q: f64) -> Option<Quantile> {
        let total = self.buckets.last().map_or(0.0, |&(_, c)| c);
        if total <= 0.0 || !q.is_finite() {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total;
        let (mut lower, mut below) = (0.0, 0.0);
        for &(le, count) in &self.buckets {
            if count >= rank && count > below {
                if le.is_infinite() {
                    return Some(Quantile { seconds: lower, at_least: true });
                }
                let seconds = lower + (le - lower) * (rank - below) / (count - below);
                return Some(Quantile { seconds, at_least: false });
            }
            (lower, below) = (le, count);
        }
        // The counts never reach the total: not a histogram Prometheus
        // would write. Say what the last bucket says.
        Some(Quantile { seconds: lower, at_least: true })
    }

    fn add(&mut self, le: f64, count: f64) {
        match self.buckets.iter_mut().find(|(l, _)| *l == le) {
            Some((_, c)) => *c += count,
            None => {
                let at = self.buckets.partition_point(|(l, _)| *l < le);
                self.buckets.insert(at, (le, count));
            }
        }
    }
}

/// One service's metrics in one scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceMetrics {
    /// `mdp_requests_total{outcome="answered"}`.
    pub answered: f64,
    /// `mdp_requests_total{outcome="expired"}`.
    pub expired: f64,
    /// `mdp_requests_total{outcome="dropped"}`.
    pub dropped: f64,
    /// `mdp_requests_received_total`.
    pub received: f64,
    /// `mdp_requests_dispatched_total`.
    pub dispatched: f64,
    /// `mdp_requests_requeued_total`.
    pub requeued: f64,
    /// `mdp_workers{state="idle"}`.
    pub idle: f64,
    /// `mdp_workers{state="busy"}`.
    pub busy: f64,
    /// `mdp_queued_requests`.
    pub queued: f64,
    /// `mdp_queued_bytes`.
    pub queued_bytes: f64,
    /// `mdp_request_queue_seconds`: from arrival to first dispatch.
    pub queue_time: Histogram,
    /// `mdp_request_service_seconds`: from dispatch to the last part.
    pub service_time: Histogram,
}

/// The metrics of one scrape of `mdp-broker --metrics`, by service.
///
/// Samples of the same series are added up, so a label the broker may add
/// later (one `mdp top` does not know) sums over. Samples of other names
/// are ignored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Each service named by a `service` label, by name.
    pub services: BTreeMap<String, ServiceMetrics>,
    /// `mdp_services`, if the broker sent it.
    pub service_count: Option<f64>,
    /// `mdp_held_bytes`, if the broker sent it.
    pub held_bytes: Option<f64>,
    /// `mdp_requests_dropped_total`, by `reason`.
    pub dropped: BTreeMap<String, f64>,
    /// `mdp_misbehaviour_total`, by `kind`.
    pub misbehaviour: BTreeMap<String, f64>,
    /// `mdp_limit_hits_total`, by `limit`.
    pub limit_hits: BTreeMap<String, f64>,
    /// `mdp_access_denied_total`.
    pub access_denied: f64,
}

impl Snapshot {
    /// Gathers the `mdp_` samples of a scrape.
    pub fn from_samples(samples: &[Sample]) -> Snapshot {
        let mut s = Snapshot::default();
        for sample in samples {
            let v = sample.value;
            let label = |name| sample.label(name).unwrap_or("").to_owned();
            fn entry<'a>(s: &'a mut Snapshot, sample: &Sample) -> &'a mut ServiceMetrics {
                s.services.entry(sample.label("service").unwrap_or("").to_owned()).or_default()
            }
            match sample.name.as_str() {
                "mdp_requests_total" => match sample.label("outcome") {
                    Some("answered") => entry(&mut s, sample).answered += v,
                    Some("expired") => entry(&mut s, sample).expired += v,
                    Some("dropped") => entry(&mut s, sample).dropped += v,
                    _ => {}
                },
                "mdp_requests_received_total" => entry(&mut s, sample).received += v,
                "mdp_requests_dispatched_total" => entry(&mut s, sample).dispatched += v,
                "mdp_requests_requeued_total" => entry(&mut s, sample).requeued += v,
                "mdp_workers" => match sample.label("state") {
                    Some("idle") => entry(&mut s, sample).idle += v,
                    Some("busy") => entry(&mut s, sample).busy += v,
                    _ => {}
                },
                "mdp_queued_requests" => entry(&mut s, sample).queued += v,
                "mdp_queued_bytes" => entry(&mut s, sample).queued_bytes += v,
                "mdp_request_queue_seconds_bucket" | "mdp_request_service_seconds_bucket" => {
                    let Some(le) = sample.label("le").and_then(|le| le.parse::<f64>().ok()) else { continue };
                    let queue = sample.name.starts_with("mdp_request_queue");
                    let m = entry(&mut s, sample);
                    let h = if queue { &mut m.queue_time } else { &mut m.service_time };
                    h.add(le, v);
                }
                "mdp_request_queue_seconds_sum" => entry(&mut s, sample).queue_time.sum += v,
                "mdp_request_queue_seconds_count" => entry(&mut s, sample).queue_time.count += v,
                "mdp_request_service_seconds_sum" => entry(&mut s, sample).service_time.sum += v,
                "mdp_request_service_seconds_count" => entry(&mut s, sample).service_time.count += v,
                "mdp_requests_dropped_total" => *s.dropped.entry(label("reason")).or_default() += v,
                "mdp_misbehaviour_total" => *s.misbehaviour.entry(label("kind")).or_default() += v,
                "mdp_limit_hits_total" => *s.limit_hits.entry(label("limit")).or_default() += v,
                "mdp_access_denied_total" => s.access_denied += v,
                "mdp_services" => *s.service_count.get_or_insert(0.0) += v,
                "mdp_held_bytes" => *s.held_bytes.get_or_insert(0.0) += v,
                _ => {}
            }
        }
        s
    }
}

/// How the rows are sorted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Busiest first: by answered requests per second, highest first (a
    /// row with no rate yet counts as 0), then by name.
    #[default]
    Rate,
    /// By service name, in byte order.
    Name,
}

/// A counter's total and what it gained since the scrape before.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Count {
    /// The total since the broker started.
    pub total: f64,
    /// The increase since the scrape before; `None` on the first scrape.
    pub new: Option<f64>,
}

/// The broker-wide figures at the top of the view.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Totals {
    /// Services the broker knows (`mdp_services`, or the rows' number).
    pub services: f64,
    /// Idle workers, over all services.
    pub idle: f64,
    /// Busy workers, over all services.
    pub busy: f64,
    /// Queued requests, over all services.
    pub queued: f64,
    /// Requests answered per second, over all services.
    pub rate: Option<f64>,
    /// Requests dropped, for every reason.
    pub drops: Count,
    /// Misbehaviour seen, of every kind.
    pub misbehaviour: Count,
    /// Limits hit, of every kind.
    pub limit_hits: Count,
    /// Peers refused by the access policy.
    pub access_denied: Count,
    /// Bytes the broker holds, if it says.
    pub held_bytes: Option<f64>,
}

/// One service's line.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Row {
    /// The service's name, unescaped (render makes it printable).
    pub service: String,
    /// Idle workers.
    pub idle: f64,
    /// Busy workers.
    pub busy: f64,
    /// Requests waiting for a worker.
    pub queued: f64,
    /// Requests answered per second between the two scrapes; `None` on the
    /// first one.
    pub rate: Option<f64>,
    /// Median time from arrival to first dispatch.
    pub queue_p50: Option<Quantile>,
    /// 99th percentile of the same.
    pub queue_p99: Option<Quantile>,
    /// Median time from dispatch to the last part of the answer.
    pub service_p50: Option<Quantile>,
    /// 99th percentile of the same.
    pub service_p99: Option<Quantile>,
    /// Requests of this service dropped since the broker learned of it.
    pub drops: f64,
}

/// What the screen shows: a title, an optional status, totals, rows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct View {
    /// Where the metrics come from (the URL).
    pub source: String,
    /// Something to tell above the figures: the broker cannot be reached,
    /// say. [`View::new`] leaves it `None`.
    pub status: Option<String>,
    /// How [`View::rows`] are sorted.
    pub order: Order,
    /// The time between the two scrapes the rates come from; `None` for a
    /// view of one scrape.
    pub interval: Option<Duration>,
    /// The broker-wide figures.
    pub totals: Totals,
    /// One row per service in the newer scrape, sorted by `order`.
    pub rows: Vec<Row>,
}

/// What a counter gained from `before` to `now`; a counter that went down
/// started again from zero (the broker restarted), so it gained `now`.
fn gained(now: f64, before: f64) -> f64 {
    if now >= before {
        now - before
    } else {
        now
    }
}

fn count(now: f64, before: Option<f64>) -> Count {
    Count { total: now, new: before.map(|b| gained(now, b)) }
}

/// From 0: `Sum` for floats starts from -0, which prints as `-0`.
fn sum<'a>(values: impl IntoIterator<Item = &'a f64>) -> f64 {
    values.into_iter().fold(0.0, |a, b| a + b)
}

impl View {
    /// The view of `now`, with rates and percentiles over the time since
    /// `previous` when given: `(the scrape before, the time between them)`.
    ///
    /// * Requests per second: the increase of a service's answered counter
    ///   over the time between the scrapes (a zero time gives no rate).
    ///   Without a previous scrape there is no rate.
    /// * Percentiles: from the bucket counts gained between the scrapes,
    ///   so they describe the last interval ([`Histogram::since`]; none when
    ///   nothing was observed in it), or from the cumulative buckets, since
    ///   the broker learned of the service, without a previous scrape.
    ///   Estimated within a bucket by linear interpolation
    ///   ([`Histogram::quantile`]).
    /// * Drops, misbehaviour, limit hits: totals, and what they gained.
    pub fn new(source: &str, now: &Snapshot, previous: Option<(&Snapshot, Duration)>, order: Order) -> View {
        let seconds = previous.map(|(_, d)| d.as_secs_f64()).filter(|&s| s > 0.0);
        let before = previous.map(|(p, _)| p);
        let empty = ServiceMetrics::default();
        let mut rows = Vec::with_capacity(now.services.len());
        for (name, m) in &now.services {
            let earlier = before.map(|p| p.services.get(name).unwrap_or(&empty));
            let rate = match (earlier, seconds) {
                (Some(e), Some(s)) => Some(gained(m.answered, e.answered) / s),
                _ => None,
            };
            let (queue, service) = match earlier {
                Some(e) => (m.queue_time.since(&e.queue_time), m.service_time.since(&e.service_time)),
                None => (m.queue_time.clone(), m.service_time.clone()),
            };
            rows.push(Row {
                service: name.clone(),
                idle: m.idle,
                busy: m.busy,
                queued: m.queued,
                rate,
                queue_p50: queue.quantile(0.5),
                queue_p99: queue.quantile(0.99),
                service_p50: service.quantile(0.5),
                service_p99: service.quantile(0.99),
                drops: m.dropped,
            });
        }
        match order {
            // BTreeMap order already is byte order.
            Order::Name => {}
            Order::Rate => rows.sort_by(|a, b| {
                let (ra, rb) = (a.rate.unwrap_or(0.0), b.rate.unwrap_or(0.0));
                rb.total_cmp(&ra).then_with(|| a.service.cmp(&b.service))
            }),
        }
        let totals = Totals {
            services: now.service_count.unwrap_or(now.services.len() as f64),
            idle: sum(rows.iter().map(|r| &r.idle)),
            busy: sum(rows.iter().map(|r| &r.busy)),
            queued: sum(rows.iter().map(|r| &r.queued)),
            rate: seconds.and_then(|s| {
                let before = before?;
                let gain = now
                    .services
                    .iter()
                    .map(|(name, m)| gained(m.answered, before.services.get(name).map_or(0.0, |e| e.answered)));
                Some(gain.sum::<f64>() / s)
            }),
            drops: count(sum(now.dropped.values()), before.map(|p| sum(p.dropped.values()))),
            misbehaviour: count(sum(now.misbehaviour.values()), before.map(|p| sum(p.misbehaviour.values()))),
            limit_hits: count(sum(now.limit_hits.values()), before.map(|p| sum(p.limit_hits.values()))),
            access_denied: count(now.access_denied, before.map(|p| p.access_denied)),
            held_bytes: now.held_bytes,
        };
        View { source: source.to_owned(), status: None, order, interval: previous.map(|(_, d)| d), totals, rows }
    }
}
