//! The logic of `mdp top`, a live view of a broker's metrics (feature
//! `cli`).
//!
//! `mdp-broker --metrics ADDR` serves its metrics in the Prometheus text
//! format at `http://ADDR/metrics`. `mdp top --metrics URL` scrapes that
//! page every second and shows the broker's totals and one row per
//! service. Everything but the terminal lives here, in four steps that
//! each take plain values, so each is tested alone:
//!
//! 1. [`fetch`] GETs the page over a [`std::net::TcpStream`] (HTTP/1.1,
//!    `Connection: close`; a body by length, chunked, or to the end).
//! 2. [`parse`] turns the text into [`Sample`]s: name, labels (unescaped),
//!    value. Comment lines (`# HELP`, `# TYPE`, `# EOF`) are skipped.
//! 3. [`Snapshot::from_samples`] gathers the `mdp_` samples by service,
//!    and [`View::new`] compares two snapshots, with the time between the
//!    scrapes, into a [`View`]:
//!    * requests per second is the increase of a service's
//!      `mdp_requests_total{outcome="answered"}` over that time (none on the
//!      first scrape; a counter that went down is taken to have restarted
//!      from zero, as Prometheus' `rate` does);
//!    * the p50 and p99 of queue time (`mdp_request_queue_seconds`) and
//!      service time (`mdp_request_service_seconds`) come from the
//!      histogram's bucket counts gained between the scrapes, so they tell
//!      of the last second, or from the cumulative counts when there is no
//!      scrape before. Within the bucket the percentile falls in, it is
//!      estimated by linear interpolation between the bucket's bounds (as
//!      Prometheus' `histogram_quantile`), so it is only as precise as the
//!      buckets (0.5 ms to 60 s); past the last finite bound it shows as
//!      `>60.0s`;
//!    * rows are sorted by requests per second, busiest first, then by
//!      name ([`Order::Rate`]), or by name alone ([`Order::Name`]).
//! 4. [`render`] writes the view as text cut to the terminal's width.
//!
//! The `mdp` binary only adds the terminal (raw mode, the alternate
//! screen, keys) and the clock: it scrapes on a thread of its own, so a
//! broker that does not answer leaves the keys working, and a failed
//! scrape shows as the view's status line, above the last figures it had,
//! while it goes on trying.

mod http;
mod parse;
mod render;
mod view;

pub use http::{fetch, FetchError, Target, MAX_RESPONSE};
pub use parse::{parse, ParseError, Sample};
pub use render::render;
pub use view::{Count, Histogram, Order, Quantile, Row, ServiceMetrics, Snapshot, Totals, View};

#[cfg(test)]
mod tests;
