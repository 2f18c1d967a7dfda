//! A `square` service with a deliberate bug, found by the test kit and
//! replayed from its seed.
//!
//! ```text
//! cargo run -p mdp-testkit --example square
//! ```
//!
//! The buggy worker keeps state across requests: it remembers every number
//! it squared and answers `already done` when asked again, as if a request
//! could only come twice by mistake. But an MDP client sends a request
//! again when its reply is lost, and the broker may give the retry to the
//! same worker. Without faults every run passes; when 2% of what the
//! clients send or are sent is lost, the kit finds a failing seed, prints the violation
//! with the steps before it, and replays it.
//!
//! Exits 0 when the correct worker passes every seed and the buggy one is
//! caught and replayed the same way; 1 otherwise.

use std::collections::HashSet;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use mdp_core::{ClientConfig, Dialect};
use mdp_testkit::{Answer, Call, Fault, FaultPlan, Link, Node, Scenario, ServiceTime, SimConfig};

/// The number in a one-frame body.
fn number(body: &[Bytes]) -> Option<u64> {
    std::str::from_utf8(body.first()?).ok()?.parse().ok()
}

/// The correct worker: the square of the number, or `bad request`.
fn square(request: &[Bytes]) -> Vec<Bytes> {
    match number(request) {
        Some(n) => vec![Bytes::from((n * n).to_string())],
        None => vec![Bytes::from_static(b"bad request")],
    }
}

/// The buggy worker: it answers each number once.
#[derive(Default)]
struct OnceOnly {
    done: HashSet<u64>,
}

impl OnceOnly {
    fn handle(&mut self, request: &[Bytes]) -> Vec<Bytes> {
        match number(request) {
            Some(n) if !self.done.insert(n) => vec![Bytes::from_static(b"already done")],
            _ => square(request),
        }
    }
}

/// Every answer to `n` is `n²`.
fn check(call: &Call, answer: &Answer) -> Result<(), String> {
    let n = number(&call.body).ok_or("the workload sends numbers")?;
    match answer.last.as_slice() {
        [got] if got.as_ref() == (n * n).to_string().as_bytes() => Ok(()),
        other => Err(format!("asked for {n}², got {other:?}")),
    }
}

/// 4 clients of 2 lanes each, each asking for the squares of its own 50
/// numbers, served by 3 workers; 2% of what the clients send or are sent
/// is lost.
fn scenario<H: mdp_testkit::Handler + 'static>(worker: impl Fn() -> H + 'static) -> Scenario {
    // Loss on the clients' links: a ROUTER drops what it sends to a peer
    // whose pipe is full. (A lost FINAL from a worker would leave the
    // broker counting that worker busy, as every MDP broker would.)
    let lossy = Link::default().lossy(0.02);
    let mut plan = FaultPlan::new();
    for i in 0..4 {
        plan = plan.at(Duration::ZERO, Fault::SetLink { node: Node::Client(i), link: lossy });
    }
    let millis = ServiceTime::Uniform { min: Duration::from_millis(1), max: Duration::from_millis(8) };
    Scenario::new(SimConfig::new(0))
        .workers("square", Dialect::V02, 3, worker, millis)
        .clients(4, ClientConfig::new(Dialect::V02).with_lanes(2), |_rng, i| {
            let numbers = (0..50u64).map(move |k| 1000 * i as u64 + k);
            numbers.map(|n| (Bytes::from_static(b"square"), vec![Bytes::from(n.to_string())])).collect()
        })
        .faults(plan)
        .check(check)
}

fn main() -> ExitCode {
    let seeds = 0..20;
    let good = scenario(|| square);
    if let Err(report) = good.explore(seeds.clone()) {
        println!("the correct worker failed:\n{report}");
        return ExitCode::FAILURE;
    }
    println!("the correct worker passed seeds {seeds:?}: {}", good.run(seeds.start));

    let buggy = scenario(|| {
        let mut worker = OnceOnly::default();
        move |request: &[Bytes]| worker.handle(request)
    });
    let Err(report) = buggy.explore(seeds.clone()) else {
        println!("the buggy worker passed seeds {seeds:?}: the kit missed its bug");
        return ExitCode::FAILURE;
    };
    println!("the buggy worker failed:\n{report}\n");
    let again = buggy.replay(report.seed);
    let same = again.verdict.violation() == report.verdict.violation() && again.steps == report.steps;
    println!(
        "replayed seed {}: {}",
        report.seed,
        if same { "the same violation at the same step" } else { "NOT the same" }
    );
    if same {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
