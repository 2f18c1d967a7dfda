//! `mdp-broker`: a Majordomo broker that speaks MDP/0.1, MDP/0.2 (RFC 18)
//! and majortomo's dialect. Its flags are a superset of majortomo's broker.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use mdp_core::BrokerConfig;
use mdp_zmq_adapter::{curve_available, AllowList, BrokerRunner, CurveServer, Key, KeyError};

/// A Majordomo Protocol broker (MDP/0.1, MDP/0.2 and majortomo's dialect).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Endpoint to bind; repeat for several.
    #[arg(short, long = "bind", value_name = "URL", default_value = "tcp://127.0.0.1:5555")]
    bind: Vec<String>,
    /// Send HEARTBEAT to a worker after this long without other traffic.
    #[arg(short = 'i', long, value_name = "SECONDS", default_value_t = 2.5)]
    heartbeat_interval: f64,
    /// Remove a worker silent for this long [default: interval × liveness].
    /// Sets liveness to ceil(timeout / interval).
    #[arg(short = 't', long, value_name = "SECONDS")]
    heartbeat_timeout: Option<f64>,
    /// Heartbeat intervals of silence before an idle worker is removed.
    #[arg(long, value_name = "N", default_value_t = 3)]
    liveness: u32,
    /// Remove a busy worker silent for this long [default: the idle window].
    #[arg(short = 'B', long, value_name = "SECONDS")]
    busy_worker_timeout: Option<f64>,
    /// Disconnect a worker that holds one request this long, heartbeats or
    /// not, and re-queue the request [default: no limit].
    #[arg(long, value_name = "SECONDS")]
    max_job_time: Option<f64>,
    /// Expire a queued request no worker has taken this long after arrival.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    request_timeout: f64,
    /// Times a request may be handed to a worker before it is dropped.
    #[arg(long, value_name = "N", default_value_t = 3)]
    max_dispatches: u32,
    /// Most requests of one client to one service at workers at once
    /// [default: no limit]. 1 serves each client's requests to a service one
    /// at a time, so its replies come back in request order.
    #[arg(long, value_name = "N")]
    max_in_flight_per_client: Option<NonZeroUsize>,
    /// Most services known at once. A worker of a new service evicts the
    /// service that has been without workers longest when the table is full.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    max_services: usize,
    /// Most workers registered at once.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    max_workers: usize,
    /// Most requests queued for one service.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    max_queue_per_service: usize,
    /// Most requests queued in all.
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    max_queue_total: usize,
    /// Most frames in one message.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    max_message_frames: usize,
    /// Most bytes in one message. Also libzmq's ZMQ_MAXMSGSIZE: a peer that
    /// sends a larger frame is disconnected before the frame is read.
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20)]
    max_message_bytes: usize,
    /// Most bytes held for requests in all: queued, at workers, and replies
    /// being joined for MDP/0.1 clients (each frame counts 192 bytes more).
    #[arg(long, value_name = "BYTES", default_value_t = 256 << 20)]
    max_queued_bytes: usize,
    /// Most of --max-queued-bytes that one service's requests may take.
    #[arg(long, value_name = "BYTES", default_value_t = 128 << 20)]
    max_queued_bytes_per_service: usize,
    /// Longest service name.
    #[arg(long, value_name = "BYTES", default_value_t = 255)]
    max_service_name_bytes: usize,
    /// Make every endpoint a CURVE server with this secret key (a NAME.key
    /// from `mdp keygen`); its NAME.pub is what clients and workers are
    /// given. Plaintext peers are refused.
    #[arg(long, value_name = "FILE")]
    curve_key: Option<PathBuf>,
    /// With --curve-key: admit only peers whose public key is in a *.pub
    /// file in DIR, each named after its file (alice.pub: alice).
    #[arg(long, value_name = "DIR", requires = "curve_key")]
    allow_keys: Option<PathBuf>,
    /// With --allow-keys: who may serve and call which services. One grant
    /// per line, `#` comments:
    ///   serve NAME SERVICE...   NAME may register as a worker for SERVICE
    ///   call  NAME SERVICE...   NAME may send SERVICE requests
    /// NAME is a key's name or * (every peer); SERVICE is a name or a prefix
    /// ending in * (* alone: every service). Without a policy every admitted
    /// peer may do everything.
    #[arg(long, value_name = "FILE", requires = "allow_keys", verbatim_doc_comment)]
    policy: Option<PathBuf>,
    /// Serve the broker's metrics in the Prometheus text format at
    /// http://ADDR/metrics (127.0.0.1:9464; port 0 picks a free one). The
    /// address bound is logged at start, in a line "serving metrics".
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// How log lines look: `text` for people, `json` (one object a line)
    /// for log shippers.
    #[arg(long, value_name = "FORMAT", default_value = "text", hide_possible_values = true)]
    log_format: LogFormat,
    /// Log each worker and request event.
    #[arg(short, long)]
    verbose: bool,
    /// Log everything, every dispatch included.
    #[arg(short = 'D', long)]
    debug: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// One line per event, for a terminal (coloured only on a terminal).
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `message`
    /// and the event's fields at the top level.
    Json,
}

fn seconds(name: &str, s: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s).map_err(|_| format!("--{name}: {s} is not a duration in seconds"))
}

impl Args {
    fn config(&self) -> Result<BrokerConfig, String> {
        let mut c = BrokerConfig::default();
        c.heartbeat_interval = seconds("heartbeat-interval", self.heartbeat_interval)?;
        c.liveness = self.liveness;
        if let Some(t) = self.heartbeat_timeout {
            let timeout = seconds("heartbeat-timeout", t)?;
            c.liveness = (timeout.as_secs_f64() / c.heartbeat_interval.as_secs_f64()).ceil() as u32;
        }
        c.busy_worker_timeout = self.busy_worker_timeout.map(|s| seconds("busy-worker-timeout", s)).transpose()?;
        c.max_job_time = self.max_job_time.map(|s| seconds("max-job-time", s)).transpose()?;
        c.request_timeout = seconds("request-timeout", self.request_timeout)?;
        c.max_dispatches = self.max_dispatches;
        c.max_services = self.max_services;
        c.max_workers = self.max_workers;
        c.max_queue_per_service = self.max_queue_per_service;
        c.max_queue_total = self.max_queue_total;
        c.max_message_frames = self.max_message_frames;
        c.max_message_bytes = self.max_message_bytes;
        c.max_queued_bytes = self.max_queued_bytes;
        c.max_queued_bytes_per_service = self.max_queued_bytes_per_service;
        c.max_service_name_bytes = self.max_service_name_bytes;
        c.max_in_flight_per_client = self.max_in_flight_per_client;
        if let Some(path) = &self.policy {
            let text = std::fs::read_to_string(path).map_err(|e| format!("--policy {}: {e}", path.display()))?;
            c.policy = Some(text.parse().map_err(|e| format!("--policy {}: {e}", path.display()))?);
        }
        // The core says which settings cannot work; no second list here.
        c.validate().map_err(|e| format!("invalid configuration: {e}"))?;
        Ok(c)
    }
}

impl Args {
    /// The CURVE settings the flags ask for.
    fn curve(&self) -> Result<Option<CurveServer>, String> {
        let Some(key) = &self.curve_key else { return Ok(None) };
        if !curve_available() {
            return Err(format!("--curve-key: {}", KeyError::NoCurve));
        }
        let secret = Key::read(key).map_err(|e| format!("--curve-key: {e}"))?;
        let allowed = self.allow_keys.as_deref().map(AllowList::read_dir).transpose();
        let allowed = allowed.map_err(|e| format!("--allow-keys: {e}"))?;
        if let Some(list) = &allowed {
            tracing::warn!(keys = list.len(), "CURVE: admitting only the allowed keys");
        }
        Ok(Some(CurveServer { secret, allowed }))
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let level = if args.debug {
        "debug"
    } else if args.verbose {
        "info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| level.into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    let config = match args.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mdp-broker: {e}");
            return ExitCode::from(2);
        }
    };
    let curve = match args.curve() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mdp-broker: {e}");
            return ExitCode::from(2);
        }
    };
    let bound = match curve {
        Some(curve) => BrokerRunner::bind_curve(&args.bind, config, curve),
        None => BrokerRunner::bind(&args.bind, config),
    };
    let mut runner = match bound {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mdp-broker: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Kept until the end: dropping it stops the listener.
    let metrics = match args.metrics.map(|addr| runner.serve_metrics(addr)).transpose() {
        Ok(server) => server,
        Err(e) => {
            eprintln!("mdp-broker: --metrics {}: {e}", args.metrics.map(|a| a.to_string()).unwrap_or_default());
            return ExitCode::FAILURE;
        }
    };
    if let Some(server) = &metrics {
        let addr = server.local_addr();
        tracing::warn!(%addr, url = format!("http://{addr}/metrics"), "serving metrics");
    }
    let stop = runner.stop_handle();
    if let Err(e) = ctrlc::set_handler(move || stop.stop()) {
        eprintln!("mdp-broker: cannot handle signals: {e}");
        return ExitCode::FAILURE;
    }
    tracing::warn!(endpoints = ?runner.endpoints(), "mdp-broker listening");
    match runner.run(|_| {}) {
        Ok(()) => {
            tracing::warn!(stats = ?runner.broker().stats(), "mdp-broker stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mdp-broker: {e}");
            ExitCode::FAILURE
        }
    }
}
