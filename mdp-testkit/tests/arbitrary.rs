//! The `arbitrary` feature: faults drawn from arbitrary input stay in the
//! ranges the docs give, every kind is drawn, a simulation survives the
//! plans, and mdp-core's commands (the feature turns on its impls) encode
//! in the dialect drawn with them.
#![cfg(feature = "arbitrary")]

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use mdp_core::{BrokerCommand, Dialect, PeerCommand};
use mdp_testkit::{Fault, FaultPlan, Faults, Link, Node, Rng, Sim, SimConfig};

/// `n` buffers of 0 to 511 bytes, from the kit's own seeded generator:
/// the same buffers on every run.
fn buffers(n: usize) -> impl Iterator<Item = Vec<u8>> {
    let mut rng = Rng::new(0xFA17_0000_0000_0021);
    (0..n).map(move |_| (0..rng.below(512)).map(|_| rng.next_u64() as u8).collect())
}

/// Draws with `draw` until the input runs out (at most 64 times).
fn draw_all<T>(buffer: &[u8], mut draw: impl FnMut(&mut Unstructured<'_>) -> T) -> Vec<T> {
    let mut u = Unstructured::new(buffer);
    let mut out = vec![draw(&mut u)];
    while !u.is_empty() && out.len() < 64 {
        out.push(draw(&mut u));
    }
    out
}

fn probability_ok(p: f64) -> bool {
    (0.0..=1.0).contains(&p)
}

fn node_ok(node: &Node) -> bool {
    match node {
        Node::Client(i) | Node::Worker(i) | Node::Raw(i) => *i < 8,
        Node::Ghost => true,
    }
}

fn link_ok(link: &Link) -> bool {
    probability_ok(link.loss) && link.latency <= Duration::from_secs(1) && link.jitter <= Duration::from_secs(1)
}

fn faults_ok(f: &Faults) -> bool {
    [f.reorder, f.ghost_requests, f.duplicate].into_iter().all(probability_ok)
        && f.reorder_delay <= Duration::from_secs(1)
}

/// The fault's kind, and whether it is in the documented ranges.
fn check(fault: &Fault) -> (&'static str, bool) {
    let down = Duration::from_secs(10);
    match fault {
        Fault::CrashWorker(j) => ("crash", *j < 8),
        Fault::RestartWorker(j) => ("restart worker", *j < 8),
        Fault::StopBroker { broker, down_for } => ("stop", *broker < 8 && *down_for <= down),
        Fault::RestartBroker(b) => ("restart broker", *b < 8),
        Fault::KillBroker(b) => ("kill", *b < 8),
        Fault::Partition { node, duration } => ("partition", node_ok(node) && *duration <= down),
        Fault::DropNext { node, count } => ("drop", node_ok(node) && *count <= 16),
        Fault::SetFaults(f) => ("faults", faults_ok(f)),
        Fault::SetLink { node, link } => ("link", node_ok(node) && link_ok(link)),
        Fault::StopFaults => ("stop faults", true),
    }
}

#[test]
fn arbitrary_faults_are_in_range_and_of_every_kind() {
    let mut kinds = BTreeSet::new();
    let (mut lossy, mut duplicating, mut unordered) = (0, 0, 0);
    for buffer in buffers(2_000) {
        for fault in draw_all(&buffer, |u| Fault::arbitrary(u).unwrap()) {
            let (kind, ok) = check(&fault);
            assert!(ok, "out of range: {fault:?}");
            kinds.insert(kind);
            match fault {
                Fault::SetLink { link, .. } => lossy += u32::from(link.loss > 0.0),
                Fault::SetFaults(f) => {
                    duplicating += u32::from(f.duplicate > 0.0);
                    unordered += u32::from(!f.fifo);
                }
                _ => {}
            }
        }
        for faults in draw_all(&buffer, |u| Faults::arbitrary(u).unwrap()) {
            assert!(faults_ok(&faults), "{faults:?}");
        }
        for link in draw_all(&buffer, |u| Link::arbitrary(u).unwrap()) {
            assert!(link_ok(&link), "{link:?}");
        }
    }
    assert_eq!(kinds.len(), 10, "every kind of fault is drawn: {kinds:?}");
    assert!(lossy > 0 && duplicating > 0 && unordered > 0, "{lossy} {duplicating} {unordered}");
}

#[test]
fn arbitrary_nodes_are_of_every_kind() {
    let mut kinds = HashSet::new();
    for buffer in buffers(500) {
        for node in draw_all(&buffer, |u| Node::arbitrary(u).unwrap()) {
            assert!(node_ok(&node), "{node:?}");
            kinds.insert(std::mem::discriminant(&node));
        }
    }
    assert_eq!(kinds.len(), 4);
}

#[test]
fn arbitrary_plans_are_short_and_in_the_first_minute() {
    let mut longest = 0;
    for buffer in buffers(2_000) {
        let plan = FaultPlan::arbitrary(&mut Unstructured::new(&buffer)).unwrap();
        assert!(plan.faults.len() <= 16, "{} faults", plan.faults.len());
        longest = longest.max(plan.faults.len());
        for (at, fault) in &plan.faults {
            assert!(*at <= Duration::from_secs(60), "{at:?}");
            assert!(check(fault).1, "out of range: {fault:?}");
        }
    }
    assert!(longest > 8, "plans of many faults are drawn too");
}

/// Commands from the same input as the faults: mdp-core's impls, turned on
/// by this crate's feature.
#[test]
fn arbitrary_commands_encode_in_the_dialect_drawn_with_them() {
    for buffer in buffers(1_000) {
        let mut u = Unstructured::new(&buffer);
        let dialect = Dialect::arbitrary(&mut u).unwrap();
        let peer = PeerCommand::arbitrary_in(&mut u, dialect).unwrap();
        let frames = peer.clone().encode(dialect).unwrap_or_else(|e| panic!("{dialect}: {peer:?}: {e}"));
        assert_eq!(PeerCommand::decode(frames), Ok((dialect, peer)));
        let broker = BrokerCommand::arbitrary_in(&mut u, dialect).unwrap();
        let frames = broker.clone().encode(dialect).unwrap_or_else(|e| panic!("{dialect}: {broker:?}: {e}"));
        assert_eq!(BrokerCommand::decode(frames), Ok((dialect, broker)));
    }
}

/// A small simulation runs an arbitrary plan (with the faults ZeroMQ never
/// shows taken out) to the end within its step budget: every request is
/// answered or reported failed.
#[test]
fn a_sim_runs_arbitrary_plans_to_the_end() {
    const STEPS: u64 = 1_000_000;
    for (k, buffer) in buffers(12).enumerate() {
        let mut plan = FaultPlan::arbitrary(&mut Unstructured::new(&buffer)).unwrap();
        for (_, fault) in &mut plan.faults {
            if let Fault::SetFaults(f) = fault {
                (f.duplicate, f.fifo) = (0.0, true);
            }
        }
        let mut config = SimConfig::new(k as u64);
        // Requests over the first half minute, while the faults come.
        config.client_interval = Duration::from_secs(3);
        let mut sim = Sim::new(config);
        let echo = Bytes::from_static(b"echo");
        sim.add_worker(echo.clone(), Dialect::V02);
        sim.add_worker(echo.clone(), Dialect::V01);
        let c = sim.add_client(Dialect::ALL[k % 3]);
        sim.schedule_plan(&plan);
        sim.submit(c, std::iter::repeat_n(echo, 10));
        sim.run_for(Duration::from_secs(60), STEPS).unwrap_or_else(|e| panic!("{plan:?}: {e}"));
        sim.stop_faults();
        sim.quiesce(STEPS).unwrap_or_else(|e| panic!("{plan:?}: {e}"));
        let counts = sim.finish();
        assert_eq!(counts.answered + counts.failed, 10, "{counts:?}");
    }
}
