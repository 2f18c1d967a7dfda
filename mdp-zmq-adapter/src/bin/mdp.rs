//! `mdp`: a command-line Majordomo client and echo worker, and `mdp top`,
//! a live view of a broker's metrics.
//!
//! ```sh
//! mdp call echo hello world          # prints each reply frame on a line
//! mdp call -n 64 --lanes 8 echo hi   # 64 at once over 8 connections
//! mdp -b tcp://127.0.0.1:5555 -b tcp://127.0.0.1:5556 call echo hi
//!                                    # two brokers: fails over if one dies
//! mdp service echo                   # asks mmi.service: 200 or 404
//! mdp worker echo                    # serves `echo` until Ctrl-C
//! mdp keygen alice                   # writes alice.pub and alice.key
//! mdp top --metrics 127.0.0.1:9464   # watches `mdp-broker --metrics`
//! ```
//!
//! `mdp top` is a thin terminal around the library's `top` module, which
//! scrapes, parses, computes and renders: here are only the keys, the
//! screen, and the thread that scrapes on a clock.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

// Not `src/bin/top.rs`: cargo would take that for a binary of its own.
#[path = "mdp/top.rs"]
mod top;

use bytes::Bytes;
use clap::{Parser, Subcommand, ValueEnum};
use mdp_core::{ClientConfig, ClientEvent, Dialect, RequestId, WorkerConfig};
use mdp_zmq_adapter::{curve_available, Client, ClientError, CurveClient, Key, KeyError, KeyPair, Workers};

/// A Majordomo Protocol client and worker for the command line, and a live
/// view of a broker's metrics (`mdp top`).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The broker to connect to. Repeat the flag for several brokers that
    /// serve the same services: a worker registers with each; a client
    /// spreads its connections over them and, when one fails (a request
    /// times out or the connection is lost), sends its requests to the
    /// others.
    #[arg(short, long, global = true, value_name = "URL", default_value = "tcp://127.0.0.1:5555")]
    broker: Vec<String>,
    /// The dialect to speak.
    #[arg(short, long, global = true, value_enum, default_value_t = DialectArg::V01)]
    dialect: DialectArg,
    /// Log what the client or worker does.
    #[arg(short, long, global = true)]
    verbose: bool,
    /// Talk CURVE to a broker with this public key (its NAME.pub).
    #[arg(long, global = true, value_name = "FILE", requires = "curve_key")]
    curve_server: Option<PathBuf>,
    /// With --curve-server: our secret key (a NAME.key from `mdp keygen`;
    /// the NAME.pub beside it is read too).
    #[arg(long, global = true, value_name = "FILE", requires = "curve_server")]
    curve_key: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Send a request and print each reply frame on its own line.
    Call {
        /// Give up after this long in all (retries included).
        #[arg(short, long, value_name = "SECONDS", default_value_t = 5.0)]
        timeout: f64,
        /// Connections to each broker: up to this many copies of the
        /// request per broker are served at once, by as many workers.
        #[arg(short, long, value_name = "N", default_value_t = 1)]
        lanes: usize,
        /// Send the request this many times, all at once; the replies are
        /// printed as they come, each followed by an empty line.
        #[arg(short = 'n', long, value_name = "N", default_value_t = 1)]
        count: usize,
        /// The service to call.
        service: String,
        /// The request body, one argument per frame.
        #[arg(required = true)]
        frames: Vec<String>,
    },
    /// Ask the broker whether a service has workers (mmi.service).
    Service {
        /// Give up after this long.
        #[arg(short, long, value_name = "SECONDS", default_value_t = 5.0)]
        timeout: f64,
        /// The service to ask about.
        name: String,
    },
    /// Write a new CURVE key pair: NAME.pub (the public key, to give to
    /// peers or to the broker's --allow-keys directory) and NAME.key (the
    /// secret key, readable by its owner only).
    Keygen {
        /// Path and name of the two files, without extension.
        name: PathBuf,
    },
    /// Watch a broker's metrics live: broker totals, and a row per service.
    ///
    /// Scrapes the page that `mdp-broker --metrics ADDR` serves at
    /// http://ADDR/metrics every --interval and redraws. Keys: q, Esc or
    /// Ctrl-C quit; s sorts by req/s (busiest first, the default) or by name.
    ///
    /// Per service: IDLE and BUSY workers; QUEUED requests waiting for one;
    /// REQ/S requests answered per second between the last two scrapes;
    /// QUEUE p50/p99, the time from arrival to first dispatch, and SERV
    /// p50/p99, from dispatch to the answer's last part, both over the last
    /// interval (since the broker learned of the service, on the first
    /// scrape), estimated from the histogram buckets by linear
    /// interpolation within a bucket; DROPS, the service's requests dropped
    /// in all. A `-` has nothing to compute from yet, `>60.0s` is past the
    /// last bucket. Above the rows: drops, misbehaviour, limit hits and
    /// refused peers, in all and (+N) since the scrape before.
    ///
    /// A broker that cannot be reached shows as a status line above the
    /// last figures, and mdp top keeps trying.
    Top {
        /// The broker's metrics page: http://HOST:PORT/PATH, or HOST:PORT
        /// for http://HOST:PORT/metrics.
        #[arg(short, long, value_name = "URL")]
        metrics: String,
        /// Time between scrapes.
        #[arg(short, long, value_name = "SECONDS", default_value_t = 1.0)]
        interval: f64,
        /// The order of the rows.
        #[arg(short, long, value_enum, default_value_t = SortArg::Rate)]
        sort: SortArg,
        /// Print one view to standard output and exit, no terminal needed:
        /// two scrapes --interval apart, so with rates. $COLUMNS sets the
        /// width (default: the terminal's, or 120).
        #[arg(long)]
        once: bool,
    },
    /// Run a worker until Ctrl-C.
    Worker {
        /// What the worker does.
        #[arg(value_enum)]
        kind: WorkerKind,
        /// The service to register [default: the kind's name].
        #[arg(short, long)]
        service: Option<String>,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum WorkerKind {
    /// Answers each request with its own frames.
    Echo,
}

/// `mdp top --sort`.
#[derive(ValueEnum, Clone, Copy, Debug)]
enum SortArg {
    /// Busiest first: requests answered per second, then name.
    Rate,
    /// By service name.
    Name,
}

impl From<SortArg> for mdp_zmq_adapter::top::Order {
    fn from(s: SortArg) -> Self {
        match s {
            SortArg::Rate => Self::Rate,
            SortArg::Name => Self::Name,
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum DialectArg {
    /// MDP/0.1 (RFC 7), as the ZeroMQ Guide's examples speak it.
    #[value(name = "0.1")]
    V01,
    /// MDP/0.2 as RFC 18 writes it.
    #[value(name = "0.2")]
    V02,
    /// MDP/0.2 as majortomo sends it.
    Majortomo,
}

impl From<DialectArg> for Dialect {
    fn from(d: DialectArg) -> Self {
        match d {
            DialectArg::V01 => Dialect::V01,
            DialectArg::V02 => Dialect::V02,
            DialectArg::Majortomo => Dialect::Majortomo,
        }
    }
}

fn seconds(s: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s).map_err(|_| format!("{s} is not a duration in seconds"))
}

/// The CURVE settings the flags ask for.
fn curve(args: &Args) -> Result<Option<CurveClient>, String> {
    let (Some(server), Some(key)) = (&args.curve_server, &args.curve_key) else { return Ok(None) };
    if !curve_available() {
        return Err(format!("--curve-server: {}", KeyError::NoCurve));
    }
    let server = Key::read(server).map_err(|e| format!("--curve-server: {e}"))?;
    let own = KeyPair::read(key).map_err(|e| format!("--curve-key: {e}"))?;
    Ok(Some(CurveClient { server, own }))
}

/// A client of every `--broker`, with `lanes` connections to each.
fn client(args: &Args, lanes: usize) -> Result<Client, String> {
    let config = ClientConfig::new(args.dialect.into()).with_lanes(lanes);
    let connected = match curve(args)? {
        Some(curve) => Client::connect_many_curve(&args.broker, config, curve),
        None => Client::connect_many(&args.broker, config),
    };
    connected.map_err(|e| e.to_string())
}

fn keygen(name: &Path) -> Result<(), String> {
    let pair = KeyPair::generate().map_err(|e| e.to_string())?;
    let (public, secret) = pair.write(name).map_err(|e| e.to_string())?;
    println!("{}", public.display());
    println!("{}", secret.display());
    Ok(())
}

fn describe(args: &Args, e: ClientError) -> String {
    match e {
        ClientError::Timeout(t) => format!("no reply from {} within {t:?}", args.broker.join(", ")),
        other => other.to_string(),
    }
}

fn call(args: &Args, service: &str, frames: Vec<Bytes>, timeout: f64) -> Result<Vec<Bytes>, String> {
    let timeout = seconds(timeout)?;
    let mut client = client(args, 1)?;
    client.request(Bytes::copy_from_slice(service.as_bytes()), frames, timeout).map_err(|e| describe(args, e))
}

/// `count` copies of one request at once over `lanes` lanes; prints each
/// reply as it comes. Fails at the first request that fails.
fn call_many(
    args: &Args,
    service: &str,
    frames: Vec<Bytes>,
    timeout: f64,
    lanes: usize,
    count: usize,
) -> Result<(), String> {
    let timeout = seconds(timeout)?;
    let deadline = Instant::now() + timeout;
    let mut client = client(args, lanes)?;
    let service = Bytes::copy_from_slice(service.as_bytes());
    let mut parts: HashMap<RequestId, Vec<Bytes>> = HashMap::new();
    for _ in 0..count {
        let id = client.send(service.clone(), frames.clone()).map_err(|e| describe(args, e))?;
        parts.insert(id, Vec::new());
    }
    while !parts.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        match client.recv(left).map_err(|e| describe(args, e))? {
            ClientEvent::Partial { id, body } => parts.entry(id).or_default().extend(body),
            ClientEvent::Restarted { id } => parts.entry(id).or_default().clear(),
            ClientEvent::Reply { id, body } => {
                let mut reply = parts.remove(&id).unwrap_or_default();
                reply.extend(body);
                print_frames(&reply);
                println!();
            }
            ClientEvent::Failed { reason, .. } => return Err(format!("request failed: {reason}")),
            _ => {}
        }
    }
    Ok(())
}

fn print_frames(frames: &[Bytes]) {
    for f in frames {
        println!("{}", String::from_utf8_lossy(f));
    }
}

fn run(args: &Args) -> Result<(), String> {
    match &args.command {
        Command::Call { timeout, lanes, count, service, frames } => {
            let body = frames.iter().map(|f| Bytes::copy_from_slice(f.as_bytes())).collect();
            if *count == 1 && *lanes == 1 {
                print_frames(&call(args, service, body, *timeout)?);
                Ok(())
            } else {
                call_many(args, service, body, *timeout, *lanes, *count)
            }
        }
        Command::Service { timeout, name } => {
            let reply = call(args, "mmi.service", vec![Bytes::copy_from_slice(name.as_bytes())], *timeout)?;
            print_frames(&reply);
            match reply.first().map(|f| f.as_ref()) {
                Some(b"200") => Ok(()),
                _ => Err(format!("service {name:?} has no workers")),
            }
        }
        Command::Keygen { name } => keygen(name),
        Command::Top { metrics, interval, sort, once } => {
            let interval = seconds(*interval)?;
            if interval.is_zero() {
                return Err("--interval must be more than 0".to_owned());
            }
            let target = mdp_zmq_adapter::top::Target::parse(metrics).map_err(|e| format!("--metrics: {e}"))?;
            if *once {
                top::once(&target, interval, (*sort).into())
            } else {
                top::live(target, interval, (*sort).into())
            }
        }
        Command::Worker { kind: WorkerKind::Echo, service } => {
            let service = Bytes::from(service.clone().unwrap_or_else(|| "echo".to_owned()));
            let config = WorkerConfig::new(service, args.dialect.into());
            let worker = match curve(args)? {
                Some(curve) => Workers::connect_curve(&args.broker, config, curve),
                None => Workers::connect(&args.broker, config),
            };
            let worker = worker.map_err(|e| e.to_string())?;
            let stop = worker.stop_handle();
            ctrlc::set_handler(move || stop.stop()).map_err(|e| e.to_string())?;
            worker.run(|body, _| body).map_err(|e| e.to_string())
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let level = if args.verbose { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| level.into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mdp: {e}");
            ExitCode::FAILURE
        }
    }
}
