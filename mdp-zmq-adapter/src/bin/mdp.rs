//! `mdp`: a command-line Majordomo client and echo worker.
//!
//! ```sh
//! mdp call echo hello world          # prints each reply frame on a line
//! mdp service echo                   # asks mmi.service: 200 or 404
//! mdp worker echo                    # serves `echo` until Ctrl-C
//! ```

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use clap::{Parser, Subcommand, ValueEnum};
use mdp_core::{ClientConfig, Dialect, WorkerConfig};
use mdp_zmq_adapter::{Client, ClientError, Worker};

/// A Majordomo Protocol client and worker for the command line.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The broker to connect to.
    #[arg(short, long, global = true, value_name = "URL", default_value = "tcp://127.0.0.1:5555")]
    broker: String,
    /// The dialect to speak.
    #[arg(short, long, global = true, value_enum, default_value_t = DialectArg::V01)]
    dialect: DialectArg,
    /// Log what the client or worker does.
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Send one request and print each reply frame on its own line.
    Call {
        /// Give up after this long in all (retries included).
        #[arg(short, long, value_name = "SECONDS", default_value_t = 5.0)]
        timeout: f64,
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

fn call(args: &Args, service: &str, frames: Vec<Bytes>, timeout: f64) -> Result<Vec<Bytes>, String> {
    let timeout = seconds(timeout)?;
    let mut client =
        Client::connect(&args.broker, ClientConfig::new(args.dialect.into())).map_err(|e| e.to_string())?;
    client.request(Bytes::copy_from_slice(service.as_bytes()), frames, timeout).map_err(|e| match e {
        ClientError::Timeout(t) => format!("no reply from {} within {t:?}", args.broker),
        other => other.to_string(),
    })
}

fn print_frames(frames: &[Bytes]) {
    for f in frames {
        println!("{}", String::from_utf8_lossy(f));
    }
}

fn run(args: &Args) -> Result<(), String> {
    match &args.command {
        Command::Call { timeout, service, frames } => {
            let body = frames.iter().map(|f| Bytes::copy_from_slice(f.as_bytes())).collect();
            print_frames(&call(args, service, body, *timeout)?);
            Ok(())
        }
        Command::Service { timeout, name } => {
            let reply = call(args, "mmi.service", vec![Bytes::copy_from_slice(name.as_bytes())], *timeout)?;
            print_frames(&reply);
            match reply.first().map(|f| f.as_ref()) {
                Some(b"200") => Ok(()),
                _ => Err(format!("service {name:?} has no workers")),
            }
        }
        Command::Worker { kind: WorkerKind::Echo, service } => {
            let service = Bytes::from(service.clone().unwrap_or_else(|| "echo".to_owned()));
            let worker = Worker::new(&args.broker, WorkerConfig::new(service, args.dialect.into()));
            let stop = worker.stop_flag();
            ctrlc::set_handler(move || stop.store(true, Ordering::Relaxed)).map_err(|e| e.to_string())?;
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
