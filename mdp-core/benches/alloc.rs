//! Heap use of the broker, counted by a wrapping global allocator.
//!
//! Prints:
//!
//! * heap allocations per round trip and per routed message (a round trip
//!   routes two: the request and the reply), counting only inside
//!   `handle_message` and the drain of its outputs (and `handle_timeout`
//!   when due): the input frames are built before the count starts;
//! * bytes held per idle worker: live heap after registering N workers
//!   minus live heap before, over N;
//! * bytes held per queued request: the same for N queued requests, minus
//!   the body bytes.
//!
//! Run: `cargo bench -p mdp-core --bench alloc`
#![allow(clippy::disallowed_methods)] // stands in for the application, which reads the clock

#[path = "common/mod.rs"]
mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use bytes::Bytes;
use mdp_core::{Broker, PeerId};

/// Counts every allocation (a `realloc` counts as one) and the bytes
/// allocated and freed, then defers to the system allocator.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static ALLOCATED: AtomicU64 = AtomicU64::new(0);
static FREED: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged; the counters do not affect what is returned.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        ALLOCATED.fetch_add(layout.size() as u64, Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        ALLOCATED.fetch_add(layout.size() as u64, Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        FREED.fetch_add(layout.size() as u64, Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        ALLOCATED.fetch_add(new_size as u64, Relaxed);
        FREED.fetch_add(layout.size() as u64, Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A reading of the counters.
#[derive(Clone, Copy)]
struct Snap {
    allocs: u64,
    allocated: u64,
    freed: u64,
}

fn snap() -> Snap {
    Snap { allocs: ALLOCS.load(Relaxed), allocated: ALLOCATED.load(Relaxed), freed: FREED.load(Relaxed) }
}

impl Snap {
    /// Live heap bytes.
    fn live(self) -> i64 {
        self.allocated as i64 - self.freed as i64
    }
}

/// Counts accumulated over the measured sections only.
#[derive(Default)]
struct Tally {
    allocs: u64,
    bytes: u64,
}

impl Tally {
    fn measure<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let before = snap();
        let out = f();
        let after = snap();
        self.allocs += after.allocs - before.allocs;
        self.bytes += after.allocated - before.allocated;
        out
    }
}

const WARM_UP: usize = 20_000;
const ROUND_TRIPS: usize = 100_000;

fn report_round_trips(name: &str, t: &Tally) {
    let per_rt = t.allocs as f64 / ROUND_TRIPS as f64;
    let bytes = t.bytes as f64 / ROUND_TRIPS as f64;
    println!(
        "{name:<64} {per_rt:>6.2} allocs/round trip  {:>5.2} allocs/message  {bytes:>7.1} B allocated/round trip",
        per_rt / 2.0
    );
}

/// Static input frames: what the broker itself allocates.
fn idle_round_trips(workers: usize) {
    let mut rig = common::RoundTrips::new(workers, 1);
    for _ in 0..WARM_UP {
        rig.step();
    }
    let mut t = Tally::default();
    for _ in 0..ROUND_TRIPS {
        let (request, reply) = rig.inputs();
        let out = t.measure(|| rig.run(request, reply));
        black_box(out);
    }
    report_round_trips(&format!("round trip, {workers} idle worker(s), static frames"), &t);
}

fn queued_round_trips(queued: usize) {
    let mut rig = common::Queued::new(100, 1_000, queued);
    for _ in 0..WARM_UP {
        rig.step();
    }
    let mut t = Tally::default();
    for _ in 0..ROUND_TRIPS {
        let (worker, reply, c, request) = rig.inputs();
        let out = t.measure(|| rig.run(worker, reply, c, request));
        black_box(out);
    }
    report_round_trips(&format!("answer one + queue one, {queued} queued, static frames"), &t);
}

/// Frames as `mdp-zmq-adapter` hands them over: every frame, identities
/// included, a fresh `Bytes::from(Vec<u8>)` per message. Cloning such a
/// `Bytes` the first time allocates (it moves to a shared, counted buffer).
fn owned(frames: &[Bytes]) -> Vec<Bytes> {
    frames.iter().map(|f| Bytes::from(f.to_vec())).collect()
}

fn idle_round_trips_owned_frames(workers: usize) {
    let mut rig = common::RoundTrips::new(workers, 1);
    for _ in 0..WARM_UP {
        rig.step();
    }
    let mut t = Tally::default();
    for _ in 0..ROUND_TRIPS {
        rig.now += common::TICK;
        let now = rig.now;
        let broker: &mut Broker = &mut rig.broker;
        let client = PeerId(Bytes::from(rig.client.0.to_vec()));
        let request = owned(&rig.requests[0]);
        let to_worker = t.measure(|| {
            broker.handle_message(now, client, request);
            let to_worker = broker.poll_transmit().expect("the request goes to a worker");
            common::drain(broker);
            to_worker
        });
        let worker = PeerId(Bytes::from(to_worker.to.0.to_vec()));
        drop(to_worker);
        let reply = owned(&rig.reply);
        let to_client = t.measure(|| {
            broker.handle_message(now, worker, reply);
            let to_client = broker.poll_transmit().expect("the reply goes to the client");
            common::drain(broker);
            common::tick(broker, now);
            to_client
        });
        black_box(to_client);
    }
    report_round_trips(&format!("round trip, {workers} idle worker(s), Vec-backed frames (adapter)"), &t);
}

/// Live bytes per idle worker after registering `n`.
fn bytes_per_idle_worker(n: usize, owned_ids: bool) {
    let now = Instant::now();
    let mut broker = Broker::new(common::config(), now).expect("a valid configuration");
    let service = common::service_name(0);
    let before = snap().live();
    let inputs: Vec<(PeerId, Vec<Bytes>)> = (0..n)
        .map(|w| {
            let id = common::identity(b'w', w as u32);
            let id = if owned_ids { Bytes::from(id) } else { common::leak(id) };
            (PeerId(id), common::ready_frames(&service))
        })
        .collect();
    for (id, frames) in inputs {
        broker.handle_message(now, id, frames);
        common::drain(&mut broker);
    }
    let after = snap().live();
    assert_eq!(broker.stats().idle_workers, n);
    let per = (after - before) as f64 / n as f64;
    let what = if owned_ids { "6-byte Vec-backed identities (counted)" } else { "static identities" };
    println!("{:<64} {per:>7.1} B/idle worker", format!("idle workers: {n}, {what}"));
    black_box(broker);
}

/// Live bytes per queued request after queueing `n` from `clients` clients,
/// for a service with no worker, less the `BODY`-byte bodies.
fn bytes_per_queued_request(n: usize, clients: usize) {
    const BODY: usize = 16;
    let now = Instant::now();
    let mut broker = Broker::new(common::config(), now).expect("a valid configuration");
    let service = common::service_name(0);
    let ids: Vec<PeerId> = (0..clients).map(|c| PeerId(common::leak(common::identity(b'c', c as u32)))).collect();
    let before = snap().live();
    let inputs: Vec<(PeerId, Vec<Bytes>)> =
        (0..n).map(|i| (ids[i % clients].clone(), common::request_frames(&service, common::body(BODY)))).collect();
    for (id, frames) in inputs {
        broker.handle_message(now, id, frames);
        common::drain(&mut broker);
    }
    let after = snap().live();
    assert_eq!(broker.stats().queued_requests, n);
    let per = (after - before) as f64 / n as f64;
    println!(
        "{:<64} {:>7.1} B/queued request + {BODY} B body ({per:.1} B in all)",
        format!("queued requests: {n} from {clients} client(s), no worker"),
        per - BODY as f64
    );
    black_box(broker);
}

fn main() {
    // `cargo bench` passes `--bench`; this binary takes no options.
    println!("mdp-core heap use (counting global allocator; see BENCHMARKS.md)");
    println!("-- allocations (inputs built outside the count; {ROUND_TRIPS} round trips after {WARM_UP} warm-up)");
    idle_round_trips(1);
    idle_round_trips(10_000);
    queued_round_trips(100_000);
    idle_round_trips_owned_frames(1);
    idle_round_trips_owned_frames(10_000);
    println!("-- memory held (live heap delta / N)");
    bytes_per_idle_worker(10_000, false);
    bytes_per_idle_worker(10_000, true);
    bytes_per_queued_request(100_000, 1);
    bytes_per_queued_request(100_000, 1_000);
    bytes_per_queued_request(100_000, 100_000);
}
