//! The broker's figures for Prometheus: a snapshot of the core's metrics,
//! its encoding in the Prometheus text format (version 0.0.4), and a small
//! HTTP listener that serves it at `GET /metrics` (the `metrics` feature).
//!
//! # Keeping the broker's loop fast
//!
//! The broker's state lives on its loop's thread, and only that thread may
//! read it. A scrape therefore goes like this:
//!
//! 1. The listener thread ([`MetricsServer`]) accepts a connection and reads
//!    the request. For `GET /metrics` it raises a shared counter, the
//!    *generation wanted*, and waits for a snapshot of that generation on a
//!    channel, for at most [`SNAPSHOT_WAIT`].
//! 2. The loop ([`BrokerRunner::run`](crate::BrokerRunner::run)) compares
//!    the generation wanted with the last it served, once per iteration
//!    (one relaxed atomic load). When a scrape is waiting it copies the
//!    figures into an owned [`MetricsSnapshot`] (each service's name,
//!    counts and histograms; no text) and sends it on a channel, which
//!    never blocks. That copy takes about 0.1 µs for one service and about
//!    1 ms for 10,000 (BENCHMARKS.md, "Serving metrics").
//! 3. The listener thread sorts and encodes the snapshot and writes the
//!    response. All the text is made there, off the loop.
//!
//! The loop polls for at most 100 ms, so a snapshot usually comes within a
//! tenth of a second; a loop that does not answer within [`SNAPSHOT_WAIT`]
//! gets the scrape a `503 Service Unavailable`, and a snapshot that comes
//! late is thrown away by the next scrape (it is of an older generation).
//! The listener serves one connection at a time and closes each after its
//! response (`Connection: close`); a connection that sends nothing for
//! [`IO_TIMEOUT`] is closed. Other paths get `404 Not Found`, other methods
//! `405 Method Not Allowed`, a request that is not HTTP/1.x (or whose head
//! passes 8 KiB) `400 Bad Request`. The listener does not authenticate: bind it
//! to an address only trusted scrapers reach.
//!
//! # The metrics
//!
//! Every name has the prefix `mdp_`. Per service (label `service`):
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `mdp_requests_total` | counter | `service`, `outcome` | requests that ended: `answered`, `expired` (waited past the request timeout) or `dropped` (any [`DropReason`](mdp_core::DropReason)) |
//! | `mdp_requests_received_total` | counter | `service` | requests admitted to the service |
//! | `mdp_requests_dispatched_total` | counter | `service` | hand-overs to a worker, re-dispatches included |
//! | `mdp_requests_requeued_total` | counter | `service` | requests put back in the queue after their worker was lost |
//! | `mdp_workers` | gauge | `service`, `state` | registered workers, `idle` or `busy` |
//! | `mdp_queued_requests` | gauge | `service` | requests waiting for a worker |
//! | `mdp_queued_bytes` | gauge | `service` | the bytes they are charged |
//! | `mdp_request_queue_seconds` | histogram | `service` | from a request's arrival to its first dispatch |
//! | `mdp_request_service_seconds` | histogram | `service` | from dispatch to the last part of the answer |
//!
//! Broker-wide:
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `mdp_requests_dropped_total` | counter | `reason` | requests dropped, over every service, forgotten ones too ([`DropReason::name`](mdp_core::DropReason::name)) |
//! | `mdp_misbehaviour_total` | counter | `kind` | messages rejected because their sender broke the protocol ([`Misbehavior::kind`](mdp_core::Misbehavior::kind)) |
//! | `mdp_limit_hits_total` | counter | `limit` | messages dropped at a limit ([`Limit::name`](mdp_core::Limit::name)) |
//! | `mdp_access_denied_total` | counter | | READYs and REQUESTs the policy refused |
//! | `mdp_services` | gauge | | services known |
//! | `mdp_peers` | gauge | `role` | `worker`: registered workers; `client`: clients with a request queued or at a worker, once per service they wait on (the broker keeps no record of a client it holds nothing for) |
//! | `mdp_held_bytes` | gauge | | bytes charged for requests at workers and replies being joined |
//!
//! Every `reason`, `kind` and `limit` is present, zeros included. The
//! histograms' buckets are [`LATENCY_BOUNDS`] in seconds (`le="0.0005"`
//! to `le="60"`) and `le="+Inf"`, with `_sum` in seconds and `_count`.
//!
//! A service's series live as long as the broker knows the service: a
//! service it forgets (no workers and nothing queued, or evicted) drops
//! its series, and if it comes back its counters start again from zero,
//! which Prometheus's `rate()` takes as a counter reset.
//!
//! The `service` label is the service name decoded as UTF-8, invalid bytes
//! replaced by U+FFFD, and escaped as the text format wants (`\\`, `\"`,
//! `\n`), so a worker that registers a name with quotes or line breaks
//! cannot forge series. Two names that differ only in invalid bytes get the
//! same label value.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use mdp_core::{Broker, BrokerCounters, BrokerStats, Histogram, ServiceCounters, LATENCY_BOUNDS};
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// How long a scrape waits for the broker's loop to hand over a snapshot
/// before it is answered `503 Service Unavailable`.
pub const SNAPSHOT_WAIT: Duration = Duration::from_secs(1);

/// How long the listener waits for a request's bytes, or for the scraper
/// to take the response's, before it closes the connection.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// The `Content-Type` of the responses to `GET /metrics`.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Most bytes of a request's line and headers read; a longer head is
/// answered `400 Bad Request`.
const MAX_HEAD: usize = 8 * 1024;

/// The figures of one service at one moment, owned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceSnapshot {
    /// The service's name, decoded as UTF-8 with invalid bytes replaced.
    pub name: String,
    /// Registered workers waiting for a request.
    pub idle_workers: usize,
    /// Registered workers holding a request.
    pub busy_workers: usize,
    /// Requests waiting in its queues.
    pub queued_requests: usize,
    /// The bytes they are charged.
    pub queued_bytes: usize,
    /// Clients with a request queued or at a worker of it.
    pub clients: usize,
    /// Its running totals and latency histograms.
    pub counters: ServiceCounters,
}

/// Everything `GET /metrics` shows, copied out of a [`Broker`] at one
/// moment, so that it can be encoded on another thread.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Every service the broker knows, in no particular order.
    pub services: Vec<ServiceSnapshot>,
    /// The broker-wide counters by kind.
    pub counters: BrokerCounters,
    /// The broker's statistics (services, held bytes, denials).
    pub stats: BrokerStats,
}

impl MetricsSnapshot {
    /// Copies the figures of `broker`. Costs a few counts per service and
    /// one allocation per service name; makes no text.
    pub fn of(broker: &Broker) -> Self {
        let services = broker
            .service_metrics()
            .map(|s| ServiceSnapshot {
                name: String::from_utf8_lossy(s.name).into_owned(),
                idle_workers: s.idle_workers,
                busy_workers: s.busy_workers,
                queued_requests: s.queued_requests,
                queued_bytes: s.queued_bytes,
                clients: s.clients,
                counters: s.counters.clone(),
            })
            .collect();
        MetricsSnapshot { services, counters: broker.counters().clone(), stats: broker.stats() }
    }

    /// The snapshot in the Prometheus text format (version 0.0.4), services
    /// in the order of [`services`](Self::services).
    pub fn encode(&self) -> String {
        self.clone().into_text()
    }

    /// [`encode`](Self::encode), without copying the snapshot first.
    pub fn into_text(self) -> String {
        let mut registry = Registry::with_prefix("mdp");
        registry.register_collector(Box::new(Collector(self)));
        let mut text = String::new();
        // Writing to a String cannot fail, and the collector fails only
        // when its writer does.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry);
        text
    }
}

/// Encodes one snapshot, once: a registry is made per scrape around it.
#[derive(Debug)]
struct Collector(MetricsSnapshot);

impl prometheus_client::collector::Collector for Collector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let snap = &self.0;
        let services = &snap.services;

        let mut family = encoder.encode_descriptor(
            "requests",
            "Requests that ended, by service and outcome (answered, expired, dropped)",
            None,
            MetricType::Counter,
        )?;
        for s in services {
            let c = &s.counters;
            for (outcome, n) in [("answered", c.answered), ("expired", c.expired), ("dropped", c.dropped_total())] {
                counter(&mut family, &[("service", s.name.as_str()), ("outcome", outcome)], n)?;
            }
        }
        per_service_counter(&mut encoder, "requests_received", "Requests admitted to the service", services, |c| {
            c.received
        })?;
        per_service_counter(
            &mut encoder,
            "requests_dispatched",
            "Requests handed to a worker, re-dispatches included",
            services,
            |c| c.dispatched,
        )?;
        per_service_counter(
            &mut encoder,
            "requests_requeued",
            "Requests put back in the queue after their worker was lost",
            services,
            |c| c.requeued,
        )?;

        let mut family = encoder.encode_descriptor(
            "requests_dropped",
            "Requests dropped over every service, by reason",
            None,
            MetricType::Counter,
        )?;
        for (reason, n) in snap.counters.dropped_by_reason() {
            counter(&mut family, &[("reason", reason.name())], n)?;
        }

        let mut family = encoder.encode_descriptor(
            "workers",
            "Registered workers, by service and state (idle, busy)",
            None,
            MetricType::Gauge,
        )?;
        for s in services {
            for (state, n) in [("idle", s.idle_workers), ("busy", s.busy_workers)] {
                gauge(&mut family, &[("service", s.name.as_str()), ("state", state)], n)?;
            }
        }
        let mut family =
            encoder.encode_descriptor("queued_requests", "Requests waiting for a worker", None, MetricType::Gauge)?;
        for s in services {
            gauge(&mut family, &[("service", s.name.as_str())], s.queued_requests)?;
        }
        let mut family = encoder.encode_descriptor(
            "queued_bytes",
            "Bytes charged for the requests waiting for a worker",
            None,
            MetricType::Gauge,
        )?;
        for s in services {
            gauge(&mut family, &[("service", s.name.as_str())], s.queued_bytes)?;
        }

        let mut family = encoder.encode_descriptor(
            "request_queue_seconds",
            "Time from a request's arrival to its first dispatch",
            None,
            MetricType::Histogram,
        )?;
        for s in services {
            histogram(&mut family, &s.name, &s.counters.queue_time)?;
        }
        let mut family = encoder.encode_descriptor(
            "request_service_seconds",
            "Time from dispatch to the last part of the answer",
            None,
            MetricType::Histogram,
        )?;
        for s in services {
            histogram(&mut family, &s.name, &s.counters.service_time)?;
        }

        let mut family = encoder.encode_descriptor(
            "misbehaviour",
            "Messages rejected because their sender broke the protocol, by kind",
            None,
            MetricType::Counter,
        )?;
        for (kind, n) in snap.counters.misbehaviour_by_kind() {
            counter(&mut family, &[("kind", kind)], n)?;
        }
        let mut family = encoder.encode_descriptor(
            "limit_hits",
            "Messages dropped because they would have crossed a limit, by limit",
            None,
            MetricType::Counter,
        )?;
        for (limit, n) in snap.counters.limit_hits_by_limit() {
            counter(&mut family, &[("limit", limit.name())], n)?;
        }

        let family = encoder.encode_descriptor(
            "access_denied",
            "READYs and REQUESTs the policy refused",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(snap.stats.denied).encode(family)?;
        let family = encoder.encode_descriptor("services", "Services known", None, MetricType::Gauge)?;
        ConstGauge::new(snap.stats.services).encode(family)?;
        let mut family = encoder.encode_descriptor(
            "peers",
            "Peers the broker knows: registered workers, and clients with a request in it (once per service)",
            None,
            MetricType::Gauge,
        )?;
        let clients = services.iter().map(|s| s.clients).sum();
        gauge(&mut family, &[("role", "worker")], snap.stats.idle_workers + snap.stats.busy_workers)?;
        gauge(&mut family, &[("role", "client")], clients)?;
        let family = encoder.encode_descriptor(
            "held_bytes",
            "Bytes charged for the requests workers hold and the replies being joined",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(snap.stats.held_bytes).encode(family)
    }
}

fn counter(family: &mut MetricEncoder, labels: &[(&str, &str)], n: u64) -> Result<(), fmt::Error> {
    ConstCounter::new(n).encode(family.encode_family(&labels)?)
}

fn gauge(family: &mut MetricEncoder, labels: &[(&str, &str)], n: usize) -> Result<(), fmt::Error> {
    ConstGauge::new(n).encode(family.encode_family(&labels)?)
}

fn per_service_counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    services: &[ServiceSnapshot],
    value: impl Fn(&ServiceCounters) -> u64,
) -> Result<(), fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for s in services {
        counter(&mut family, &[("service", s.name.as_str())], value(&s.counters))?;
    }
    Ok(())
}

fn histogram(family: &mut MetricEncoder, service: &str, h: &Histogram) -> Result<(), fmt::Error> {
    // The encoder wants each bucket's own count and adds them up itself;
    // the core's are cumulative. The last bucket, past every bound, is
    // the encoder's `+Inf`, which it gives the total count.
    let mut below = 0;
    let mut buckets = [(0.0, 0); LATENCY_BOUNDS.len()];
    for (slot, (bound, cumulative)) in buckets.iter_mut().zip(h.cumulative()) {
        *slot = (bound.map_or(f64::INFINITY, |b| b.as_secs_f64()), cumulative - below);
        below = cumulative;
    }
    let labels = [("service", service)];
    family.encode_family(&labels)?.encode_histogram::<NoLabelSet>(h.sum().as_secs_f64(), h.count(), &buckets, None)
}

/// The loop's end of the hand-over: see the [module docs](self).
#[derive(Debug)]
pub(crate) struct MetricsTap {
    wanted: Arc<AtomicU64>,
    served: u64,
    snapshots: Sender<(u64, MetricsSnapshot)>,
}

impl MetricsTap {
    /// Called once per iteration of the loop: if a scrape is waiting, hands
    /// it a snapshot of `broker`.
    pub(crate) fn serve(&mut self, broker: &Broker) {
        let wanted = self.wanted.load(Ordering::Relaxed);
        if wanted != self.served {
            self.served = wanted;
            // A listener that is gone wants nothing: nothing to do.
            let _ = self.snapshots.send((wanted, MetricsSnapshot::of(broker)));
        }
    }
}

/// The HTTP listener of the [module docs](self), on a thread of its own
/// (named `mdp-metrics`). Made by
/// [`BrokerRunner::serve_metrics`](crate::BrokerRunner::serve_metrics);
/// dropping it stops the thread.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Binds the listener and starts its thread; the tap goes to the loop.
    pub(crate) fn bind(addr: impl ToSocketAddrs) -> io::Result<(MetricsServer, MetricsTap)> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let wanted = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let listen = Listener { wanted: wanted.clone(), snapshots: rx, stop: stop.clone() };
        let thread = thread::Builder::new().name("mdp-metrics".into()).spawn(move || listen.run(listener))?;
        let tap = MetricsTap { wanted, served: 0, snapshots: tx };
        Ok((MetricsServer { addr, stop, thread: Some(thread) }, tap))
    }

    /// The address bound, with a port 0 resolved.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the blocking accept with a connection of our own.
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(if wake.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
        }
        if TcpStream::connect_timeout(&wake, Duration::from_secs(1)).is_ok() {
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

struct Listener {
    wanted: Arc<AtomicU64>,
    snapshots: Receiver<(u64, MetricsSnapshot)>,
    stop: Arc<AtomicBool>,
}

impl Listener {
    fn run(self, listener: TcpListener) {
        for conn in listener.incoming() {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            match conn {
                Ok(conn) => {
                    if let Err(e) = self.answer(conn) {
                        tracing::debug!(error = %e, "metrics: connection failed");
                    }
                }
                // Out of descriptors, say: wait a little rather than spin.
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: accept failed");
                    thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    fn answer(&self, mut conn: TcpStream) -> io::Result<()> {
        conn.set_read_timeout(Some(IO_TIMEOUT))?;
        conn.set_write_timeout(Some(IO_TIMEOUT))?;
        let response = match read_head(&mut conn)? {
            None => Response::text("400 Bad Request", "bad request\n"),
            Some(head) => match route(&head) {
                Route::Metrics => match self.snapshot() {
                    Some(snap) => Response { status: "200 OK", content_type: CONTENT_TYPE, body: encode_sorted(snap) },
                    None => Response::text("503 Service Unavailable", "the broker did not answer in time\n"),
                },
                Route::NotFound => Response::text("404 Not Found", "not found: the metrics are at /metrics\n"),
                Route::BadMethod => Response::text("405 Method Not Allowed", "only GET\n"),
                Route::Bad => Response::text("400 Bad Request", "bad request\n"),
            },
        };
        response.write(&mut conn)?;
        // Say we are done, then let the scraper close first.
        conn.shutdown(Shutdown::Write)
    }

    /// Asks the loop for a snapshot and waits for it, at most
    /// [`SNAPSHOT_WAIT`].
    fn snapshot(&self) -> Option<MetricsSnapshot> {
        let generation = self.wanted.fetch_add(1, Ordering::Relaxed) + 1;
        let deadline = Instant::now() + SNAPSHOT_WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.snapshots.recv_timeout(left) {
                // One of an earlier scrape that came too late: skip it.
                Ok((g, _)) if g < generation => continue,
                Ok((_, snap)) => return Some(snap),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }
}

fn encode_sorted(mut snap: MetricsSnapshot) -> Vec<u8> {
    snap.services.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    snap.into_text().into_bytes()
}

enum Route {
    Metrics,
    NotFound,
    BadMethod,
    Bad,
}

/// Where a request's line (`GET /metrics HTTP/1.1`) goes.
fn route(head: &str) -> Route {
    let line = head.lines().next().unwrap_or_default();
    let mut words = line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (words.next(), words.next(), words.next(), words.next())
    else {
        return Route::Bad;
    };
    if !version.starts_with("HTTP/1.") {
        return Route::Bad;
    }
    if method != "GET" {
        return Route::BadMethod;
    }
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    if path == "/metrics" {
        Route::Metrics
    } else {
        Route::NotFound
    }
}

/// The request's line and headers, up to the blank line; `None` if the
/// connection ends first, they are not UTF-8, or they pass [`MAX_HEAD`].
fn read_head(conn: &mut TcpStream) -> io::Result<Option<String>> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0; 1024];
    loop {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Ok(None);
        }
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            head.truncate(end);
            return Ok(String::from_utf8(head).ok());
        }
        if head.len() > MAX_HEAD {
            return Ok(None);
        }
    }
}

struct Response {
    status: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
}

impl Response {
    fn text(status: &'static str, body: &str) -> Self {
        Response { status, content_type: "text/plain; charset=utf-8", body: body.as_bytes().to_vec() }
    }

    fn write(&self, conn: &mut TcpStream) -> io::Result<()> {
        let head = format!(
            "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.status,
            self.content_type,
            self.body.len()
        );
        conn.write_all(head.as_bytes())?;
        conn.write_all(&self.body)?;
        conn.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_routed_by_method_and_path() {
        assert!(matches!(route("GET /metrics HTTP/1.1\r\nHost: x"), Route::Metrics));
        assert!(matches!(route("GET /metrics?name[]=x HTTP/1.0"), Route::Metrics));
        assert!(matches!(route("GET / HTTP/1.1"), Route::NotFound));
        assert!(matches!(route("GET /metrics/ HTTP/1.1"), Route::NotFound));
        assert!(matches!(route("POST /metrics HTTP/1.1"), Route::BadMethod));
        assert!(matches!(route("GET /metrics"), Route::Bad));
        assert!(matches!(route("GET /metrics SPDY/3"), Route::Bad));
    }

    #[test]
    fn a_late_snapshot_is_skipped_for_the_current_one() {
        let wanted = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::channel();
        let listener = Listener { wanted: wanted.clone(), snapshots: rx, stop: Arc::default() };
        // A snapshot for generation 1 that nobody waited for any more.
        wanted.store(1, Ordering::Relaxed);
        let mut stale = MetricsSnapshot::default();
        stale.stats.services = 1;
        tx.send((1, stale)).unwrap();
        let mut fresh = MetricsSnapshot::default();
        fresh.stats.services = 2;
        let sender = thread::spawn(move || {
            while wanted.load(Ordering::Relaxed) < 2 {
                thread::yield_now();
            }
            tx.send((2, fresh)).unwrap();
            tx
        });
        let got = listener.snapshot().expect("the snapshot of generation 2");
        assert_eq!(got.stats.services, 2);
        drop(sender.join());
    }

    #[test]
    fn no_snapshot_within_the_wait_is_none() {
        let (tx, rx) = mpsc::channel();
        let listener = Listener { wanted: Arc::default(), snapshots: rx, stop: Arc::default() };
        drop(tx);
        assert!(listener.snapshot().is_none());
    }
}
