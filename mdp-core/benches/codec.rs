//! Codec throughput: decode and encode of the commands on the hot path, in
//! every dialect, in messages per second.
//!
//! * `PeerCommand` REQUEST (client → broker) and FINAL (worker → broker);
//! * `BrokerCommand` REQUEST (broker → worker) and FINAL (broker → client).
//!
//! Inputs are pre-built: decode gets a clone of a `Vec<Bytes>` of static
//! frames (one `Vec` allocation, no refcounting), encode a clone of the typed
//! command. `baseline/clone_*` times those clones alone, in the same run, so
//! the codec's own share is the difference.
//!
//! Run: `cargo bench -p mdp-core --bench codec`
#![allow(clippy::disallowed_methods)] // stands in for the application, which reads the clock

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mdp_core::{BrokerCommand, Dialect, PeerCommand};

const SERVICE: Bytes = Bytes::from_static(b"echo");
const CLIENT: Bytes = Bytes::from_static(b"\x00\x6b\x8b\x45\x67");
const BODY: Bytes = Bytes::from_static(b"0123456789abcdef");

fn dialect_name(d: Dialect) -> &'static str {
    match d {
        Dialect::V01 => "v01",
        Dialect::V02 => "v02",
        Dialect::Majortomo => "majortomo",
    }
}

fn peer_commands() -> [(&'static str, PeerCommand); 2] {
    [
        ("peer_request", PeerCommand::Request { service: SERVICE, body: vec![BODY] }),
        ("peer_final", PeerCommand::Final { client: CLIENT, body: vec![BODY] }),
    ]
}

fn broker_commands(dialect: Dialect) -> [(&'static str, BrokerCommand); 2] {
    // The majortomo dialect's replies carry no service frame.
    let service = (dialect != Dialect::Majortomo).then_some(SERVICE);
    [
        ("broker_request", BrokerCommand::Request { client: CLIENT, body: vec![BODY] }),
        ("broker_final", BrokerCommand::Final { service, body: vec![BODY] }),
    ]
}

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(1));

    // What the harness itself costs per message.
    let frames = PeerCommand::Request { service: SERVICE, body: vec![BODY] }.encode(Dialect::V02).unwrap();
    g.bench_function("baseline/clone_frames", |b| b.iter(|| black_box(black_box(&frames).clone())));
    let command = PeerCommand::Request { service: SERVICE, body: vec![BODY] };
    g.bench_function("baseline/clone_command", |b| b.iter(|| black_box(black_box(&command).clone())));

    for dialect in Dialect::ALL {
        let d = dialect_name(dialect);
        for (name, cmd) in peer_commands() {
            let frames = cmd.clone().encode(dialect).unwrap();
            g.bench_with_input(BenchmarkId::new(format!("decode/{name}"), d), &frames, |b, f| {
                b.iter(|| PeerCommand::decode(black_box(f).clone()).unwrap())
            });
            g.bench_with_input(BenchmarkId::new(format!("encode/{name}"), d), &cmd, |b, cmd| {
                b.iter(|| black_box(cmd).clone().encode(dialect).unwrap())
            });
        }
        for (name, cmd) in broker_commands(dialect) {
            let frames = cmd.clone().encode(dialect).unwrap();
            g.bench_with_input(BenchmarkId::new(format!("decode/{name}"), d), &frames, |b, f| {
                b.iter(|| BrokerCommand::decode(black_box(f).clone()).unwrap())
            });
            g.bench_with_input(BenchmarkId::new(format!("encode/{name}"), d), &cmd, |b, cmd| {
                b.iter(|| black_box(cmd).clone().encode(dialect).unwrap())
            });
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = codec
}
criterion_main!(benches);
