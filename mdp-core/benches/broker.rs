//! Broker round trips through the state machine alone (no IO), in round
//! trips per second.
//!
//! A round trip is a client REQUEST in through `handle_message`, the REQUEST
//! to the worker drained, the worker's FINAL in, the client's reply drained,
//! and every event drained. Scenarios (see `common/mod.rs`):
//!
//! * `idle_workers/N`: N idle workers of one service, one client.
//! * `idle_workers_100_services/10000`: 10,000 workers over 100 services,
//!   requests rotating over the services.
//! * `queued/100000`: 100 busy workers, 1,000 clients, 100,000 requests
//!   queued; a step is one FINAL (reply out, next request dispatched) and
//!   one new REQUEST (queued).
//! * `baseline/clone_inputs`: cloning the two pre-built input `Vec`s, the
//!   harness's own cost per round trip, measured in the same run.
//!
//! Run: `cargo bench -p mdp-core --bench broker`
#![allow(clippy::disallowed_methods)] // stands in for the application, which reads the clock

#[path = "common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn round_trips(c: &mut Criterion) {
    let mut g = c.benchmark_group("broker");
    g.throughput(Throughput::Elements(1));

    let mut rig = common::RoundTrips::new(1, 1);
    g.bench_function("baseline/clone_inputs", |b| b.iter(|| black_box(rig.inputs())));

    for workers in [1, 10, 100, 10_000] {
        let mut rig = common::RoundTrips::new(workers, 1);
        g.bench_function(BenchmarkId::new("idle_workers", workers), |b| b.iter(|| black_box(rig.step())));
    }

    let mut rig = common::RoundTrips::new(10_000, 100);
    g.bench_function(BenchmarkId::new("idle_workers_100_services", 10_000), |b| b.iter(|| black_box(rig.step())));

    let mut rig = common::Queued::new(100, 1_000, 100_000);
    g.bench_function(BenchmarkId::new("queued", 100_000), |b| b.iter(|| black_box(rig.step())));

    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = round_trips
}
criterion_main!(benches);
