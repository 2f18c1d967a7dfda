//! The async client and worker (the `tokio` feature) against majortomo
//! 0.2.0's broker, in majortomo's dialect, 1,000 requests each with
//! multi-frame bodies and 3 PARTIALs, every frame checked:
//!
//! 1. our `AsyncClient`, 1,000 requests at once, with majortomo's worker;
//! 2. our `AsyncWorker`, 4 slots, with majortomo's client.
//!
//! As in `tests/tests/interop_majortomo.rs` (the same convention: the venv
//! is made on first use by `tests/interop/setup-venv.sh`, which needs
//! python3 and PyPI, and a test fails, not skips, when it cannot be made),
//! with the same Python scripts and the frame rule of
//! `tests/interop/rule.py`, which `request`, `partial` and `final_part`
//! below repeat in Rust.
#![cfg(unix)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use mdp_core::{Dialect, WorkerConfig};
use mdp_zmq_adapter::{AsyncClient, AsyncWorker};

const COUNT: usize = 1000;
const PARTIALS: usize = 3;
const WAIT: Duration = Duration::from_secs(60);

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/interop")
}

/// The venv's python, made once per test binary.
fn python() -> &'static Path {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        let out = Command::new("bash")
            .arg(interop_dir().join("setup-venv.sh"))
            .stderr(Stdio::inherit())
            .output()
            .expect("run tests/interop/setup-venv.sh");
        assert!(out.status.success(), "setup-venv.sh failed: is PyPI reachable?");
        let stdout = String::from_utf8(out.stdout).expect("utf-8 path");
        PathBuf::from(stdout.lines().last().expect("setup-venv.sh prints the python path").trim())
    })
}

/// A Python script of `tests/interop/`, killed when dropped.
struct Script(Child);

impl Script {
    fn start(name: &str, args: &[&str]) -> Self {
        let child = Command::new(python())
            .arg(interop_dir().join(name))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Script(child)
    }

    /// Waits for it to exit; returns its exit code and stdout.
    fn finish(mut self) -> (i32, String) {
        let mut out = String::new();
        if let Some(stdout) = self.0.stdout.take() {
            for line in BufReader::new(stdout).lines() {
                out.push_str(&line.unwrap_or_default());
                out.push('\n');
            }
        }
        let status = self.0.wait().expect("wait for script");
        (status.code().unwrap_or(-1), out)
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// majortomo's broker on a free loopback port; returns it and its endpoint.
fn their_broker() -> (Script, String) {
    let mut script = Script::start("mt_broker.py", &["tcp://127.0.0.1:*"]);
    let stdout = script.0.stdout.as_mut().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("read the broker's READY line");
    let endpoint = line.strip_prefix("READY ").unwrap_or_else(|| panic!("unexpected broker line {line:?}"));
    (script, endpoint.trim().to_owned())
}

fn request(i: usize) -> Vec<Bytes> {
    let mut third = vec![0x00, 0xff];
    third.extend_from_slice(&(i as u32).to_be_bytes());
    let big: Vec<u8> = (0..=255u8).cycle().take(256 * (i % 4)).collect();
    vec![Bytes::from_static(b"req"), Bytes::from(i.to_string()), Bytes::from(third), Bytes::new(), Bytes::from(big)]
}

fn partial(j: usize, req: &[Bytes]) -> Vec<Bytes> {
    let mut part = vec![Bytes::from_static(b"part"), Bytes::from(j.to_string())];
    part.extend(req.iter().cloned());
    part
}

fn final_part(req: &[Bytes]) -> Vec<Bytes> {
    let mut part = vec![Bytes::from_static(b"final")];
    part.extend(req.iter().rev().cloned());
    part
}

fn args<'a>(endpoint: &'a str, count: &'a str, partials: &'a str) -> [&'a str; 8] {
    ["--broker", endpoint, "--service", "echo", "--partials", partials, "--count", count]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_async_client_with_their_worker_through_their_broker() {
    let (_broker, endpoint) = their_broker();
    let (count, partials) = (COUNT.to_string(), PARTIALS.to_string());
    let worker = Script::start("mt_worker.py", &args(&endpoint, &count, &partials));
    let client = AsyncClient::connect(&endpoint, AsyncClient::config(Dialect::Majortomo)).unwrap();
    // All at once: the client's 16 lanes carry one each (majortomo's replies
    // name no service), the rest wait in the core.
    let requests: Vec<_> = (0..COUNT)
        .map(|i| {
            let mut parts = client.parts("echo", request(i));
            tokio::spawn(async move {
                let mut got = Vec::new();
                while let Some(part) = parts.next().await {
                    got.push(part.unwrap_or_else(|e| panic!("request {i}: {e}")));
                }
                got
            })
        })
        .collect();
    for (i, task) in requests.into_iter().enumerate() {
        let parts = tokio::time::timeout(WAIT, task).await.expect("answered in time").unwrap();
        let req = request(i);
        assert_eq!(parts.len(), PARTIALS + 1, "request {i}: {PARTIALS} PARTIALs and a FINAL");
        for (j, part) in parts[..PARTIALS].iter().enumerate() {
            assert_eq!(part, &partial(j, &req), "request {i} part {j}");
        }
        assert_eq!(parts[PARTIALS], final_part(&req), "request {i} final");
    }
    let (code, out) = tokio::task::spawn_blocking(move || worker.finish()).await.unwrap();
    assert_eq!(code, 0, "majortomo worker: {out}");
    assert!(out.contains(&format!("served={COUNT}")), "majortomo worker: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn their_client_with_our_async_worker_through_their_broker() {
    let (_broker, endpoint) = their_broker();
    let config = WorkerConfig::new(Bytes::from_static(b"echo"), Dialect::Majortomo);
    let worker = AsyncWorker::connect(&endpoint, config, 4).unwrap();
    let stop = worker.stop_handle();
    let worker = tokio::spawn(worker.run(|req, parts| async move {
        for j in 0..PARTIALS {
            parts.send(partial(j, &req)).await;
        }
        final_part(&req)
    }));
    let (count, partials) = (COUNT.to_string(), PARTIALS.to_string());
    let client = Script::start("mt_client.py", &args(&endpoint, &count, &partials));
    let (code, out) = tokio::task::spawn_blocking(move || client.finish()).await.unwrap();
    assert_eq!(code, 0, "majortomo client failed: {out}");
    assert!(out.contains(&format!("OK n={COUNT}")), "majortomo client did not report every request: {out}");
    stop.stop();
    tokio::time::timeout(WAIT, worker).await.expect("the worker stopped").unwrap().unwrap();
}
