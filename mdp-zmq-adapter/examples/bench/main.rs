//! End-to-end benchmark: clients, a broker and echo workers in one process,
//! over TCP on 127.0.0.1, measured from the clients' side.
//!
//! ```sh
//! cargo run --release -p mdp-zmq-adapter --example bench -- [options]
//! cargo run --release -p mdp-zmq-adapter --example bench -- --help
//! ```
//!
//! The transports run the same loads, one after the other:
//!
//! * `adapter`: our [`BrokerRunner`](mdp_zmq_adapter::BrokerRunner) on its
//!   own thread, [`Client`](mdp_zmq_adapter::Client)s (one thread each,
//!   `send`/`recv` for pipelining) and [`Worker`](mdp_zmq_adapter::Worker)s
//!   with an echo handler. See `adapter.rs`. With `--brokers 1,2` each
//!   load runs once with one broker and once with two, in turn: with two,
//!   each worker is a [`Workers`](mdp_zmq_adapter::Workers) registered with
//!   both and each client a `Client::connect_many` of both, with half its
//!   lanes to each (the same number of connections per client).
//! * `async` (with `--features tokio`): the `adapter` runs' broker, with
//!   [`AsyncClient`](mdp_zmq_adapter::AsyncClient)s and
//!   [`AsyncWorker`](mdp_zmq_adapter::AsyncWorker)s on a tokio runtime
//!   instead of a thread each. See `over_async.rs`.
//! * `tokio`: the same mdp-core state machines over the tokio TCP transport
//!   of `mdp-core/examples/tokio_tcp/transport.rs` (included below with
//!   `#[path]`). See `over_tokio.rs`.
//! * `raw`: a ROUTER-ROUTER proxy with no MDP logic, and raw DEALER clients
//!   and workers moving the same frames: the ceiling for a one-thread broker
//!   on libzmq. See `raw.rs`.
//! * `external`: someone else's broker, already running, named with
//!   `--broker NAME=URL` (repeatable), driven by the `adapter` run's workers
//!   and clients, so that another MDP broker is measured in the same run as
//!   ours. Its own CPU time is not in the figures (it is another process).
//!
//! With `--metrics off,on` each `adapter` load runs once without and once
//! with [`BrokerRunner::serve_metrics`](mdp_zmq_adapter::BrokerRunner::serve_metrics)
//! on every broker, in turn, and a scraper thread that GETs `/metrics`
//! once a second, as Prometheus does (see `adapter.rs`).
//!
//! Loads: `seq` (1 client, 1 request at a time, 1 worker); `pipe` (8 clients
//! with 16 requests outstanding each, 8 workers, one service); `pipe-svc`
//! (the same, each client spreading its requests over 8 services, one
//! worker each); `fanout` (1 client with 64 requests outstanding, 8 workers
//! whose handler sleeps 5 ms: what a client that pipelines to one service
//! gets from a broker that spreads its requests, against the ideal of
//! workers / service time); `fanout-dealer` (the same through an MDP broker,
//! but the client is a raw DEALER that sends MDP requests and matches
//! replies by a tag, as third-party clients do). mdp-core's client keeps one
//! request per service on the wire per lane, and the MDP clients have
//! `--lanes` lanes (16: all 16 of `pipe` on the wire; `fanout` uses one lane
//! per worker). The raw proxy has no services: its `pipe` has all 16 of each
//! client on the wire, and it is the ceiling for both MDP pipelined loads.
//! `pipe-wire` runs the raw proxy only, with 1 request per client on the
//! wire: a reference for what a one-lane MDP client gets.
//!
//! Besides req/s and latency, each run reports the CPU time of the whole
//! process per request and its split between the broker, the clients and the
//! workers (each with its ZeroMQ context's threads), and the context switches
//! per request, from `/proc/self/task`. On a shared machine those move less
//! than wall-clock figures.
//!
//! Latency is per request, at the client, from the call that sends it to its
//! final reply (time waiting in the MDP client behind an earlier request for
//! the same service included). Throughput counts replies received during
//! the measured window, after a warm-up.

#[allow(dead_code)]
#[path = "../../../mdp-core/examples/tokio_tcp/transport.rs"]
mod transport;

mod adapter;
mod over_async;
mod over_tokio;
mod raw;

use std::fmt;
use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use mdp_core::Dialect;

/// End-to-end MDP benchmark over TCP loopback: our libzmq adapter, the tokio
/// TCP transport and a raw libzmq ROUTER-ROUTER proxy, side by side.
#[derive(Parser, Debug, Clone)]
struct Args {
    /// Measured seconds per run (after the warm-up).
    #[arg(long, value_name = "SECONDS", default_value_t = 3.0)]
    duration: f64,
    /// Unmeasured seconds per run before measuring starts.
    #[arg(long, value_name = "SECONDS", default_value_t = 0.5)]
    warmup: f64,
    /// Measure this many replies per run instead of a fixed duration.
    #[arg(long, value_name = "N")]
    requests: Option<u64>,
    /// Body sizes in bytes (at least 8: the raw clients tag their requests).
    #[arg(long, value_delimiter = ',', default_value = "16,4096", value_parser = clap::value_parser!(u32).range(8..))]
    sizes: Vec<u32>,
    /// Loads to run.
    #[arg(long, value_delimiter = ',', default_value = "seq,pipe,pipe-svc,fanout,fanout-dealer")]
    loads: Vec<LoadKind>,
    /// Transports to run.
    #[arg(long, value_delimiter = ',', default_value = "adapter,tokio,raw")]
    transports: Vec<Transport>,
    /// Clients in the pipelined loads.
    #[arg(long, value_name = "N", default_value_t = 8)]
    clients: usize,
    /// Requests each client keeps outstanding in the pipelined loads.
    #[arg(long, value_name = "N", default_value_t = 16)]
    depth: usize,
    /// Workers in the pipelined loads (spread over the services in `pipe-svc`).
    #[arg(long, value_name = "N", default_value_t = 8)]
    workers: usize,
    /// Services in `pipe-svc`.
    #[arg(long, value_name = "N", default_value_t = 8)]
    services: usize,
    /// Lanes (connections) of each MDP client in `pipe` and `pipe-svc`
    /// (`fanout` has one per worker).
    #[arg(long, value_name = "N", default_value_t = 16)]
    lanes: usize,
    /// Requests the client keeps outstanding in the `fanout` loads.
    #[arg(long, value_name = "N", default_value_t = 64)]
    fanout_depth: usize,
    /// The broker's `max_in_flight_per_client` [default: no limit]; 1 is
    /// how mdp-rs served a client before parallel dispatch.
    #[arg(long, value_name = "N")]
    max_in_flight: Option<std::num::NonZeroUsize>,
    /// Lanes of the MDP client in `fanout` [default: one per worker].
    #[arg(long, value_name = "N")]
    fanout_lanes: Option<usize>,
    /// How long a worker's handler sleeps per request in the `fanout` loads.
    #[arg(long, value_name = "MS", default_value_t = 5.0)]
    service_ms: f64,
    /// MDP dialect of the MDP clients and workers.
    #[arg(long, default_value = "v02")]
    dialect: DialectArg,
    /// Run the whole matrix this many times, the transports taking turns
    /// for each load and size; the tables give the median of the runs.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// Another broker, already running, for the `external` transport: our
    /// workers and clients (or, in `fanout-dealer`, the raw DEALER client)
    /// against it. Repeatable; NAME labels its rows.
    #[arg(long = "broker", value_name = "NAME=URL", value_parser = parse_broker)]
    brokers: Vec<(String, String)>,
    /// Threads of the tokio runtime that runs the tokio and async clients
    /// and workers (the tokio broker always has one thread of its own).
    #[arg(long, value_name = "N", default_value_t = 2)]
    tokio_threads: usize,
    /// The async workers' handler awaits `tokio::time::sleep` for the
    /// service time (rounded up by tokio's timer to its next millisecond),
    /// instead of sleeping it exactly on tokio's blocking pool.
    #[arg(long)]
    async_tokio_sleep: bool,
    /// How many of our brokers the `adapter` runs use; each number is a run
    /// of its own, in turn with the other transports. With N > 1 every
    /// worker is registered with all N brokers (one handler slot each), and
    /// every MDP client connects to all N with its lanes split evenly
    /// between them (`--lanes` / N each, at least one), so a client has as
    /// many connections as with one broker. `fanout-dealer` runs with one.
    #[arg(long = "brokers", value_name = "N", value_delimiter = ',', default_value = "1",
          value_parser = clap::value_parser!(u32).range(1..64))]
    broker_counts: Vec<u32>,
    /// Whether the `adapter` runs' brokers serve metrics (`on`: each
    /// broker's `serve_metrics`, and a thread scraping each once a second);
    /// `off,on` runs each load both ways, in turn.
    #[arg(long, value_delimiter = ',', default_value = "off")]
    metrics: Vec<OnOff>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OnOff {
    Off,
    On,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LoadKind {
    /// One client, one request at a time, one worker.
    Seq,
    /// Pipelined, one service.
    Pipe,
    /// Pipelined, each client over several services.
    PipeSvc,
    /// Raw proxy only: pipelined with one request per client on the wire,
    /// as many as a one-lane MDP client puts there for one service. A
    /// reference, not a ceiling: the ratios are against the raw `pipe`.
    PipeWire,
    /// One client, many outstanding, workers that take time.
    Fanout,
    /// `fanout` with a raw DEALER client (adapter and external only).
    FanoutDealer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Transport {
    /// mdp-zmq-adapter: BrokerRunner, Client, Worker.
    Adapter,
    /// mdp-zmq-adapter's BrokerRunner, AsyncClient and AsyncWorker (needs
    /// `--features tokio`).
    Async,
    /// mdp-core over the tokio TCP example transport.
    Tokio,
    /// Raw libzmq ROUTER-ROUTER proxy, no MDP.
    Raw,
    /// Our workers and clients against each `--broker` (someone else's).
    External,
}

fn parse_broker(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((name, url)) if !name.is_empty() && !url.is_empty() => Ok((name.to_owned(), url.to_owned())),
        _ => Err(format!("expected NAME=URL, got {arg:?}")),
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Adapter => "adapter",
            Transport::Async => "async",
            Transport::Tokio => "tokio",
            Transport::Raw => "raw proxy",
            Transport::External => "external",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DialectArg {
    V01,
    V02,
    Majortomo,
}

impl From<DialectArg> for Dialect {
    fn from(d: DialectArg) -> Dialect {
        match d {
            DialectArg::V01 => Dialect::V01,
            DialectArg::V02 => Dialect::V02,
            DialectArg::Majortomo => Dialect::Majortomo,
        }
    }
}

/// One run: a transport, a load and a body size.
#[derive(Debug, Clone)]
pub struct Spec {
    pub load_name: String,
    pub clients: usize,
    /// Requests outstanding per client.
    pub depth: usize,
    pub workers: usize,
    /// Services the workers are spread over; request `k` of a client goes
    /// to service `k % services`.
    pub services: usize,
    pub size: usize,
    pub dialect: Dialect,
    pub tokio_threads: usize,
    /// Lanes of each MDP client.
    pub lanes: usize,
    /// How long a worker's handler takes per request.
    pub service_time: Duration,
    /// The client is a raw DEALER (`raw::client`) instead of an MDP client.
    pub raw_client: bool,
    /// The MDP brokers' `max_in_flight_per_client`.
    pub max_in_flight: Option<std::num::NonZeroUsize>,
    /// The endpoint of a broker that is already running (`--broker`), used
    /// instead of starting ours.
    pub external: Option<String>,
    /// How many of our brokers to start (`--brokers`); `lanes` is split
    /// evenly between them.
    pub brokers: usize,
    /// `--async-tokio-sleep`.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub async_tokio_sleep: bool,
    /// Our brokers serve metrics, scraped once a second (`--metrics on`).
    pub metrics: bool,
}

impl Spec {
    /// The name of service `i`.
    pub fn service(&self, i: usize) -> Bytes {
        if self.services == 1 {
            Bytes::from_static(b"echo")
        } else {
            Bytes::from(format!("echo{i}"))
        }
    }

    /// The configuration of the MDP brokers.
    pub fn broker_config(&self) -> mdp_core::BrokerConfig {
        let mut config = mdp_core::BrokerConfig::default();
        config.max_in_flight_per_client = self.max_in_flight;
        config
    }

    /// The most replies a second the workers can give: workers / service
    /// time, if they take time.
    pub fn ideal_rate(&self) -> Option<f64> {
        (!self.service_time.is_zero()).then(|| self.workers as f64 / self.service_time.as_secs_f64())
    }

    /// Lanes of each MDP client to each broker: `lanes` split between them.
    pub fn lanes_per_broker(&self) -> usize {
        (self.lanes / self.brokers).max(1)
    }

    /// A request body of `size` bytes.
    pub fn body(&self) -> Bytes {
        Bytes::from((0..self.size).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
    }
}

/// What the clients and the main thread share during a run.
#[derive(Default)]
pub struct Shared {
    /// Set after the warm-up; replies are counted while it is set.
    measuring: AtomicBool,
    /// Set at the end: clients stop sending.
    pub stop: AtomicBool,
    /// Replies received since the start (for the progress line).
    done: AtomicU64,
    /// Replies received while measuring.
    measured: AtomicU64,
    /// Requests that failed or got a wrong reply.
    pub failures: AtomicU64,
}

impl Shared {
    /// Records a reply that took `latency`.
    pub fn complete(&self, latency: Duration, samples: &mut Vec<u64>) {
        self.done.fetch_add(1, Ordering::Relaxed);
        if self.measuring.load(Ordering::Relaxed) {
            samples.push(latency.as_nanos() as u64);
            self.measured.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn fail(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// How long to measure.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    warmup: Duration,
    duration: Duration,
    requests: Option<u64>,
}

/// A safety net for `--requests`: no run measures longer than this.
const MAX_MEASURE: Duration = Duration::from_secs(120);

/// CPU time and context switches of this whole process (every thread), from
/// `/proc/self/task/*/{schedstat,status,comm}` (Linux; zero elsewhere).
///
/// CPU time is also split by role, from the thread's name. libzmq's I/O
/// and reaper threads inherit the name of the thread that created the
/// context, so each role includes its contexts' threads (the runs create
/// them on named threads for that reason): [`BROKER`], [`CLIENT`],
/// [`WORKER`]. The tokio runtime's threads run clients and workers both.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcStats {
    cpu_ns: u64,
    switches: u64,
    /// CPU ns of the broker, clients, workers, tokio peers, anything else.
    by_role: [u64; 5],
}

/// Thread names, by role (at most 15 bytes: Linux truncates the rest).
pub const BROKER: &str = "broker";
pub const CLIENT: &str = "client";
pub const WORKER: &str = "worker";
pub const TOKIO_PEERS: &str = "tokio-peers";
/// The metrics listener's thread (the adapter names it): the broker's.
pub const METRICS: &str = "mdp-metrics";

fn role(comm: &str) -> usize {
    match comm {
        BROKER | "tokio-broker" | METRICS => 0,
        CLIENT => 1,
        WORKER | "mdp-worker-keep" => 2,
        TOKIO_PEERS => 3,
        _ => 4,
    }
}

impl ProcStats {
    fn now() -> ProcStats {
        let mut stats = ProcStats::default();
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return stats };
        for task in tasks.flatten() {
            let path = task.path();
            if let Ok(s) = std::fs::read_to_string(path.join("schedstat")) {
                let ns = s.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
                let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
                stats.cpu_ns += ns;
                stats.by_role[role(comm.trim_end())] += ns;
            }
            if let Ok(s) = std::fs::read_to_string(path.join("status")) {
                for line in s.lines() {
                    if line.starts_with("voluntary_ctxt_switches") || line.starts_with("nonvoluntary_ctxt_switches") {
                        stats.switches +=
                            line.split_whitespace().nth(1).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
                    }
                }
            }
        }
        stats
    }

    fn since(self, earlier: ProcStats) -> ProcStats {
        let mut by_role = [0; 5];
        for (i, r) in by_role.iter_mut().enumerate() {
            *r = self.by_role[i].saturating_sub(earlier.by_role[i]);
        }
        ProcStats {
            cpu_ns: self.cpu_ns.saturating_sub(earlier.cpu_ns),
            switches: self.switches.saturating_sub(earlier.switches),
            by_role,
        }
    }
}

/// What [`Window::run`] measured.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    pub elapsed: Duration,
    pub proc: ProcStats,
}

impl Window {
    /// Called by a transport once its clients are running: waits out the
    /// warm-up, measures, prints progress on stderr each second, then sets
    /// `stop`. Returns the measured time, and the process's CPU time and
    /// context switches during it.
    pub fn run(&self, shared: &Shared, label: &str) -> Measured {
        eprint!("\r  {label:<34} warming up for {:.1} s   ", self.warmup.as_secs_f64());
        let _ = std::io::stderr().flush();
        std::thread::sleep(self.warmup);
        let proc0 = ProcStats::now();
        shared.measuring.store(true, Ordering::Relaxed);
        let t0 = Instant::now();
        let mut last_tick = t0;
        let mut last_done = shared.done.load(Ordering::Relaxed);
        let t1 = loop {
            let now = Instant::now();
            let over = match self.requests {
                Some(n) => shared.measured.load(Ordering::Relaxed) >= n || now - t0 >= MAX_MEASURE,
                None => now - t0 >= self.duration,
            };
            if over {
                break now;
            }
            // The progress line, once a second.
            if now - last_tick >= Duration::from_secs(1) {
                let done = shared.done.load(Ordering::Relaxed);
                let rate = (done - last_done) as f64 / (now - last_tick).as_secs_f64();
                last_done = done;
                last_tick = now;
                let goal = match self.requests {
                    Some(n) => format!("{}/{n} replies", shared.measured.load(Ordering::Relaxed)),
                    None => format!("{:.0}/{:.0} s", (now - t0).as_secs_f64(), self.duration.as_secs_f64()),
                };
                eprint!("\r  {label:<34} measured {goal:>16}, {rate:>8.0} req/s in the last second   ");
                let _ = std::io::stderr().flush();
            }
            // Short sleeps so that a fixed duration ends on time.
            let left = match self.requests {
                Some(_) => Duration::from_millis(10),
                None => self.duration.saturating_sub(now - t0),
            };
            std::thread::sleep(left.min(Duration::from_millis(100)));
        };
        shared.measuring.store(false, Ordering::Relaxed);
        let proc = ProcStats::now().since(proc0);
        shared.stop.store(true, Ordering::Relaxed);
        eprint!("\r{:120}\r", "");
        Measured { elapsed: t1 - t0, proc }
    }
}

/// Runs `spec.clients` threads named [`CLIENT`], each calling `client`,
/// while [`Window::run`] measures; returns the window's figures and every
/// client's latency samples, or the first client's error.
pub fn run_clients<E>(
    spec: &Spec,
    shared: &Shared,
    window: &Window,
    label: &str,
    client: impl Fn() -> Result<Vec<u64>, E> + Sync,
) -> Result<(Measured, Vec<u64>), BoxError>
where
    E: Into<BoxError> + Send,
{
    std::thread::scope(|s| {
        let clients = (0..spec.clients)
            .map(|_| std::thread::Builder::new().name(CLIENT.into()).spawn_scoped(s, &client))
            .collect::<Result<Vec<_>, _>>()?;
        let elapsed = window.run(shared, label);
        let mut samples = Vec::new();
        let mut failed = None;
        for c in clients {
            match c.join().expect("client thread panicked") {
                Ok(mine) => samples.extend(mine),
                Err(e) => failed = Some(e),
            }
        }
        match failed {
            Some(e) => Err(e.into()),
            None => Ok((elapsed, samples)),
        }
    })
}

/// Longest wait for the tokio transports' clients' last requests after the
/// window closes.
const DRAIN: Duration = Duration::from_secs(10);

/// What the tokio transports' client tasks gave, each its latency samples:
/// all of them, or the first error; the outer `Err` if they did not all
/// end within [`DRAIN`] after the window.
type Drained = Result<Result<Vec<u64>, BoxError>, tokio::time::error::Elapsed>;

/// Waits on `rt` for the client tasks `slots` of a tokio transport (see
/// [`Drained`]).
pub fn drain_tasks<E>(rt: &tokio::runtime::Runtime, slots: Vec<tokio::task::JoinHandle<Result<Vec<u64>, E>>>) -> Drained
where
    E: Into<BoxError>,
{
    rt.block_on(async {
        tokio::time::timeout(DRAIN, async {
            let mut samples = Vec::new();
            for slot in slots {
                samples.extend(slot.await?.map_err(Into::into)?);
            }
            Ok::<_, BoxError>(samples)
        })
        .await
    })
}

/// What one run measured.
#[derive(Debug, Clone)]
struct Outcome {
    transport: Transport,
    /// The transport's name, or the external broker's.
    who: String,
    load: LoadKind,
    spec: Spec,
    replies: u64,
    seconds: f64,
    proc: ProcStats,
    p50_us: f64,
    p99_us: f64,
    failures: u64,
    load_avg: String,
}

impl Outcome {
    fn rate(&self) -> f64 {
        self.replies as f64 / self.seconds
    }

    /// CPU µs (all threads) per reply.
    fn cpu_us(&self) -> f64 {
        self.proc.cpu_ns as f64 / 1000.0 / self.replies as f64
    }

    /// CPU µs per reply of the threads of one role (see [`ProcStats`]).
    fn role_us(&self, role: usize) -> f64 {
        self.proc.by_role[role] as f64 / 1000.0 / self.replies as f64
    }

    /// "broker / clients / workers" CPU µs per reply.
    fn split(&self) -> String {
        let peers = if matches!(self.transport, Transport::Tokio | Transport::Async) {
            format!("{:.0} (tokio runtime)", self.role_us(3))
        } else {
            format!("{:.0} / {:.0}", self.role_us(1), self.role_us(2))
        };
        format!("{:.0} / {peers}", self.role_us(0))
    }

    /// Context switches (all threads) per reply.
    fn switches(&self) -> f64 {
        self.proc.switches as f64 / self.replies as f64
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nbench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn run(args: &Args) -> Result<(), BoxError> {
    let window = Window {
        warmup: Duration::from_secs_f64(args.warmup),
        duration: Duration::from_secs_f64(args.duration),
        requests: args.requests,
    };
    let dialect = Dialect::from(args.dialect);
    println!(
        "# mdp-rs end-to-end bench: TCP 127.0.0.1, dialect {dialect}, {} cpus, load average at start {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    match args.requests {
        Some(n) => println!("# warm-up {} s, then {n} replies measured per run", args.warmup),
        None => println!("# warm-up {} s, then {} s measured per run", args.warmup, args.duration),
    }
    let mut outcomes = Vec::new();
    for &load in &args.loads {
        for &size in &args.sizes {
            // Each external broker is a run of its own, in turn with the
            // others, and so is each count of our brokers for `adapter`.
            let runs = (0..args.repeat).flat_map(|_| args.transports.iter().copied()).flat_map(|t| {
                // (external broker, our brokers, metrics on)
                type Variant<'a> = (Option<&'a (String, String)>, usize, bool);
                let variants: Vec<Variant<'_>> = match t {
                    Transport::External => args.brokers.iter().map(|e| (Some(e), 1, false)).collect(),
                    Transport::Adapter => args
                        .broker_counts
                        .iter()
                        .flat_map(|&n| args.metrics.iter().map(move |&m| (None, n as usize, m == OnOff::On)))
                        .collect(),
                    _ => vec![(None, 1, false)],
                };
                variants.into_iter().map(move |(e, n, m)| (t, e, n, m))
            });
            for (transport, external, brokers, metrics) in runs {
                // The raw proxy has no services: one pipelined run serves as
                // the ceiling for both MDP pipelined loads.
                if transport == Transport::Raw && load == LoadKind::PipeSvc && args.loads.contains(&LoadKind::Pipe) {
                    continue;
                }
                if transport != Transport::Raw && load == LoadKind::PipeWire {
                    continue;
                }
                if !matches!(transport, Transport::Adapter | Transport::External) && load == LoadKind::FanoutDealer {
                    continue;
                }
                // The raw DEALER client has one socket, to one broker.
                if brokers > 1 && load == LoadKind::FanoutDealer {
                    continue;
                }
                let mut spec = spec_for(args, transport, load, size as usize, dialect, brokers);
                spec.external = external.map(|(_, url)| url.clone());
                spec.metrics = metrics;
                let who = match external {
                    Some((name, _)) => name.clone(),
                    None if brokers > 1 => format!("{transport} ×{brokers}"),
                    None => transport.to_string(),
                };
                let who = if metrics { format!("{who} +metrics") } else { who };
                let label = format!("{who} {} {} B", spec.load_name, spec.size);
                let load_avg = load_average();
                let shared = Arc::new(Shared::default());
                let (measured, mut samples) = match transport {
                    Transport::Adapter | Transport::External => adapter::run(&spec, &shared, &window, &label)?,
                    Transport::Tokio => over_tokio::run(&spec, &shared, &window, &label)?,
                    Transport::Async => over_async::run(&spec, &shared, &window, &label)?,
                    Transport::Raw => raw::run(&spec, &shared, &window, &label)?,
                };
                samples.sort_unstable();
                let pct = |p: usize| {
                    if samples.is_empty() {
                        f64::NAN
                    } else {
                        samples[(samples.len() * p / 100).min(samples.len() - 1)] as f64 / 1000.0
                    }
                };
                let outcome = Outcome {
                    transport,
                    who,
                    load,
                    replies: samples.len() as u64,
                    seconds: measured.elapsed.as_secs_f64(),
                    proc: measured.proc,
                    p50_us: pct(50),
                    p99_us: pct(99),
                    failures: shared.failures.load(Ordering::Relaxed),
                    load_avg,
                    spec,
                };
                println!(
                    "{:<10} {:<15} {:>5} B  {:>8.0} req/s  p50 {:>8.1} µs  p99 {:>8.1} µs  cpu {:>5.1} µs/req (broker / clients / workers {})  {:>4.1} cs/req  ({} replies in {:.2} s{}, load {})",
                    outcome.who,
                    outcome.spec.load_name,
                    outcome.spec.size,
                    outcome.rate(),
                    outcome.p50_us,
                    outcome.p99_us,
                    outcome.cpu_us(),
                    outcome.split(),
                    outcome.switches(),
                    outcome.replies,
                    outcome.seconds,
                    if outcome.failures > 0 { format!(", {} FAILED", outcome.failures) } else { String::new() },
                    outcome.load_avg,
                );
                outcomes.push(outcome);
            }
        }
    }
    println!("# load average at end {}", load_average());
    print_tables(&outcomes);
    print_broker_scaling(&outcomes);
    let failures: u64 = outcomes.iter().map(|o| o.failures).sum();
    if failures > 0 {
        println!("\n{failures} requests failed or got a wrong reply (see the lines above)");
    }
    Ok(())
}

fn spec_for(args: &Args, transport: Transport, load: LoadKind, size: usize, dialect: Dialect, brokers: usize) -> Spec {
    let (clients, depth, workers, services) = match load {
        LoadKind::Seq => (1, 1, 1, 1),
        LoadKind::Pipe => (args.clients, args.depth, args.workers, 1),
        LoadKind::PipeSvc => (args.clients, args.depth, args.workers.max(args.services), args.services),
        LoadKind::PipeWire => (args.clients, 1, args.workers, 1),
        LoadKind::Fanout | LoadKind::FanoutDealer => (1, args.fanout_depth, args.workers, 1),
    };
    let fanout = matches!(load, LoadKind::Fanout | LoadKind::FanoutDealer);
    let lanes = match load {
        LoadKind::Seq | LoadKind::PipeWire => 1,
        LoadKind::Pipe | LoadKind::PipeSvc => args.lanes,
        LoadKind::Fanout | LoadKind::FanoutDealer => args.fanout_lanes.unwrap_or(workers),
    };
    // Split evenly between the brokers, so the label says how many there
    // really are.
    let lanes = (lanes / brokers).max(1) * brokers;
    let service_ms = if fanout { args.service_ms } else { 0.0 };
    let load_name = match (transport, load) {
        (_, LoadKind::Seq) => "seq".to_owned(),
        (_, LoadKind::PipeWire) => format!("pipe {clients}x{depth} (wire)"),
        (Transport::Raw, LoadKind::Fanout) => format!("fanout 1x{depth} {service_ms} ms"),
        (Transport::Raw, _) => format!("pipe {clients}x{depth}"),
        (_, LoadKind::Pipe) => format!("pipe {clients}x{depth} {lanes}L"),
        (_, LoadKind::PipeSvc) => format!("pipe {clients}x{depth}/{services}svc {lanes}L"),
        (_, LoadKind::Fanout) => format!("fanout 1x{depth} {lanes}L {service_ms} ms"),
        (_, LoadKind::FanoutDealer) => format!("fanout 1x{depth} DEALER {service_ms} ms"),
    };
    Spec {
        load_name,
        clients,
        depth,
        workers,
        services,
        size,
        dialect,
        tokio_threads: args.tokio_threads,
        lanes,
        service_time: Duration::from_secs_f64(service_ms / 1000.0),
        raw_client: load == LoadKind::FanoutDealer,
        max_in_flight: args.max_in_flight,
        external: None,
        brokers,
        async_tokio_sleep: args.async_tokio_sleep,
        metrics: false,
    }
}

/// The median (and range) of the repeats of one transport, load and size.
struct Summary<'a> {
    first: &'a Outcome,
    runs: usize,
    rate: f64,
    rate_range: (f64, f64),
    p50_us: f64,
    p50_range: (f64, f64),
    p99_us: f64,
    cpu_us: f64,
    /// CPU µs per reply of the broker's threads.
    broker_us: f64,
    split: String,
    switches: f64,
    load_avg: String,
}

fn median(mut values: Vec<f64>) -> (f64, (f64, f64)) {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let mid = if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 };
    (mid, (values[0], values[n - 1]))
}

fn summarise(outcomes: &[Outcome]) -> Vec<Summary<'_>> {
    let mut summaries: Vec<Summary<'_>> = Vec::new();
    for o in outcomes {
        let same = |x: &&Outcome| x.who == o.who && x.load == o.load && x.spec.size == o.spec.size;
        if summaries.iter().any(|s| same(&s.first)) {
            continue;
        }
        let runs: Vec<&Outcome> = outcomes.iter().filter(same).collect();
        let pick = |f: fn(&Outcome) -> f64| median(runs.iter().map(|r| f(r)).collect());
        let (rate, rate_range) = pick(Outcome::rate);
        let (p50_us, p50_range) = pick(|r| r.p50_us);
        let loads: Vec<&str> = runs.iter().map(|r| r.load_avg.split(' ').next().unwrap_or("?")).collect();
        summaries.push(Summary {
            first: o,
            runs: runs.len(),
            rate,
            rate_range,
            p50_us,
            p50_range,
            p99_us: pick(|r| r.p99_us).0,
            cpu_us: pick(Outcome::cpu_us).0,
            broker_us: pick(|r| r.role_us(0)).0,
            // The split of the run whose total CPU is the median's (or nearest).
            split: runs
                .iter()
                .min_by(|a, b| {
                    let m = pick(Outcome::cpu_us).0;
                    (a.cpu_us() - m).abs().total_cmp(&(b.cpu_us() - m).abs())
                })
                .map_or_else(String::new, |r| r.split()),
            switches: pick(Outcome::switches).0,
            load_avg: loads.join(", "),
        });
    }
    summaries
}

fn print_tables(outcomes: &[Outcome]) {
    let summaries = summarise(outcomes);
    let repeated = summaries.iter().any(|s| s.runs > 1);
    if repeated {
        println!(
            "\nMedians of the runs; ranges are min–max; load avg is the 1-minute figure at the start of each run."
        );
    }
    println!(
        "\n| load | body | transport | req/s | p50 µs | p99 µs | CPU µs/req | broker / clients / workers | switches/req | vs raw req/s | vs raw p50 | vs ideal req/s | load avg |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    // The ceiling: the raw run of the same body size and kind of load:
    // sequential, pipelined (`pipe`, or `pipe-svc` without it), or fanout.
    let raw_for = |o: &Outcome| {
        let raw = |load: LoadKind| {
            summaries.iter().find(|r| {
                r.first.transport == Transport::Raw && r.first.spec.size == o.spec.size && r.first.load == load
            })
        };
        match o.load {
            LoadKind::Seq => raw(LoadKind::Seq),
            LoadKind::Fanout | LoadKind::FanoutDealer => raw(LoadKind::Fanout),
            _ => raw(LoadKind::Pipe).or_else(|| raw(LoadKind::PipeSvc)),
        }
    };
    for s in &summaries {
        let o = s.first;
        let (vs_rate, vs_p50) = match raw_for(o) {
            Some(r) if !std::ptr::eq(r.first, o) => {
                (format!("{:.2}×", s.rate / r.rate), format!("{:.2}×", s.p50_us / r.p50_us))
            }
            _ => ("".into(), "".into()),
        };
        let vs_ideal = o.spec.ideal_rate().map_or_else(String::new, |ideal| format!("{:.3}", s.rate / ideal));
        let (rate, p50) = if repeated {
            (
                format!("{:.0} ({:.0}–{:.0})", s.rate, s.rate_range.0, s.rate_range.1),
                format!("{:.1} ({:.1}–{:.1})", s.p50_us, s.p50_range.0, s.p50_range.1),
            )
        } else {
            (format!("{:.0}", s.rate), format!("{:.1}", s.p50_us))
        };
        println!(
            "| {} | {} B | {} | {rate} | {p50} | {:.1} | {:.1} | {} | {:.1} | {vs_rate} | {vs_p50} | {vs_ideal} | {} |",
            o.spec.load_name, o.spec.size, o.who, s.p99_us, s.cpu_us, s.split, s.switches, s.load_avg
        );
    }
    println!(
        "\nTargets: seq p50 ≤ 1.15× the raw proxy; pipe req/s ≥ 0.95× the raw proxy and the broker's CPU per \
         request ≤ 1.2× the raw proxy's; fanout req/s ≥ 0.93 of the ideal (workers / service time)."
    );
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    for s in summaries.iter() {
        let o = s.first;
        let line = |what: &str, value: String, met: Option<bool>| {
            println!(
                "  {:<9} {:<30} {:>5} B  {what:<12} {value:<14} {}",
                o.who,
                o.spec.load_name,
                o.spec.size,
                met.map_or("(reference)", verdict)
            );
        };
        if let Some(ideal) = o.spec.ideal_rate() {
            let efficiency = s.rate / ideal;
            let met = (o.transport != Transport::Raw).then_some(efficiency >= 0.93);
            line("vs ideal", format!("{efficiency:.3}"), met);
            continue;
        }
        if o.transport == Transport::Raw {
            continue;
        }
        let Some(r) = raw_for(o) else { continue };
        match o.load {
            LoadKind::Seq => {
                let ratio = s.p50_us / r.p50_us;
                line("p50", format!("{ratio:.2}× raw"), Some(ratio <= 1.15));
            }
            LoadKind::Pipe => {
                let ratio = s.rate / r.rate;
                line("req/s", format!("{ratio:.2}× raw"), Some(ratio >= 0.95));
                let cpu = s.broker_us / r.broker_us;
                line("broker CPU", format!("{cpu:.2}× raw"), Some(cpu <= 1.2));
            }
            _ => {
                let ratio = s.rate / r.rate;
                line("req/s", format!("{ratio:.2}× raw"), None);
            }
        }
    }
}

/// For each run of the adapter with several brokers: its req/s against the
/// same load and body with one broker (medians of the repeats).
fn print_broker_scaling(outcomes: &[Outcome]) {
    let summaries = summarise(outcomes);
    let one = |o: &Outcome| {
        summaries.iter().find(|s| {
            s.first.transport == Transport::Adapter
                && s.first.spec.brokers == 1
                && s.first.spec.external.is_none()
                && s.first.load == o.load
                && s.first.spec.size == o.spec.size
        })
    };
    let mut header = false;
    for s in summaries.iter().filter(|s| s.first.spec.brokers > 1) {
        let Some(base) = one(s.first) else { continue };
        if !header {
            println!("\nSeveral brokers: req/s and CPU per request against one broker, same load and body.");
            header = true;
        }
        println!(
            "  {:<13} {:<30} {:>5} B  {:>8.0} against {:>8.0} req/s = {:.2}×   CPU {:.1} against {:.1} µs/req = {:.2}×",
            s.first.who,
            s.first.spec.load_name,
            s.first.spec.size,
            s.rate,
            base.rate,
            s.rate / base.rate,
            s.cpu_us,
            base.cpu_us,
            s.cpu_us / base.cpu_us,
        );
    }
}
