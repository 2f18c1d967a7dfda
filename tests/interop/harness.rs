//! What both interop test files (`tests/tests/interop_majortomo.rs` and
//! `mdp-zmq-adapter/tests/async_interop_majortomo.rs`) need from the Python
//! side, included by each with `#[path]`: the venv, a script as a child
//! process, majortomo's broker, and the frame rule of `rule.py` in Rust.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use bytes::Bytes;

/// This directory, from either crate (both sit at the workspace root).
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
pub struct Script(Child);

impl Script {
    pub fn start(name: &str, args: &[&str]) -> Self {
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
    pub fn finish(mut self) -> (i32, String) {
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
pub fn their_broker() -> (Script, String) {
    let mut script = Script::start("mt_broker.py", &["tcp://127.0.0.1:*"]);
    let stdout = script.0.stdout.as_mut().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("read the broker's READY line");
    let endpoint = line.strip_prefix("READY ").unwrap_or_else(|| panic!("unexpected broker line {line:?}"));
    (script, endpoint.trim().to_owned())
}

/// Request `i`'s frames (`rule.py`'s `request`).
pub fn request(i: usize) -> Vec<Bytes> {
    let mut third = vec![0x00, 0xff];
    third.extend_from_slice(&(i as u32).to_be_bytes());
    let big: Vec<u8> = (0..=255u8).cycle().take(256 * (i % 4)).collect();
    vec![Bytes::from_static(b"req"), Bytes::from(i.to_string()), Bytes::from(third), Bytes::new(), Bytes::from(big)]
}

/// The `j`th PARTIAL of the answer to `req`.
pub fn partial(j: usize, req: &[Bytes]) -> Vec<Bytes> {
    let mut part = vec![Bytes::from_static(b"part"), Bytes::from(j.to_string())];
    part.extend(req.iter().cloned());
    part
}

/// The FINAL of the answer to `req`.
pub fn final_part(req: &[Bytes]) -> Vec<Bytes> {
    let mut part = vec![Bytes::from_static(b"final")];
    part.extend(req.iter().rev().cloned());
    part
}
