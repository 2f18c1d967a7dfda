//! Faults at chosen virtual times: a [`FaultPlan`] is a list of
//! [`Fault`]s, each with the time since the start of the run at which the
//! simulation applies it ([`Sim::schedule`](crate::Sim::schedule)).
//!
//! The network's own faults (latency, jitter, loss, duplication,
//! reordering, ghost requests) are drawn per message from [`Faults`] and
//! [`Link`]; a plan changes them at a time with
//! [`Fault::SetFaults`] and [`Fault::SetLink`]. The faults of processes
//! (crashes, restarts, partitions) happen only when a plan or the test
//! says so. [`FaultPlan::draw`] draws a plan from a seed, so that a run
//! stays a pure function of its seeds.

use std::time::Duration;

use crate::net::{Faults, Link, Node};
use crate::rng::Rng;

/// One fault, applied by [`Sim::apply`](crate::Sim::apply).
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Worker process `j` dies ([`Sim::crash_worker`](crate::Sim::crash_worker)).
    CrashWorker(usize),
    /// Worker process `j` starts again as a new process, crashing first if
    /// it runs ([`Sim::restart_worker`](crate::Sim::restart_worker)).
    RestartWorker(usize),
    /// A broker goes down for a while, then a new one starts in its place
    /// ([`Sim::stop_broker`](crate::Sim::stop_broker)).
    StopBroker {
        /// The broker's index.
        broker: usize,
        /// How long it stays down.
        down_for: Duration,
    },
    /// A new broker replaces broker `b` at once
    /// ([`Sim::restart_broker`](crate::Sim::restart_broker)).
    RestartBroker(usize),
    /// Broker `b` stops for good ([`Sim::kill_broker`](crate::Sim::kill_broker)).
    KillBroker(usize),
    /// A node is cut off every broker for a while
    /// ([`Sim::partition`](crate::Sim::partition)).
    Partition {
        /// The node cut off.
        node: Node,
        /// For how long.
        duration: Duration,
    },
    /// The next `count` messages to or from `node` are lost
    /// ([`Net::drop_next`](crate::Net::drop_next)).
    DropNext {
        /// Whose messages.
        node: Node,
        /// How many.
        count: u32,
    },
    /// The network's faults for what is sent from now on.
    SetFaults(Faults),
    /// A node's link for what is sent from now on.
    SetLink {
        /// Whose link.
        node: Node,
        /// The new link.
        link: Link,
    },
    /// Every fault ends for what is sent from now on
    /// ([`Sim::stop_faults`](crate::Sim::stop_faults)).
    StopFaults,
}

/// Faults, each at a time since the start of the run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultPlan {
    /// The faults, in any order: the simulation applies them by time, and
    /// those at the same time in this order.
    pub faults: Vec<(Duration, Fault)>,
}

/// What [`FaultPlan::draw`] draws: how many of each fault, over how long,
/// among how many peers.
#[derive(Debug, Clone, PartialEq)]
pub struct DrawSpec {
    /// Faults are drawn at times in `0..=span` (a restart after a crash,
    /// or the end of an outage, may fall later).
    pub span: Duration,
    /// Worker processes to pick from (crashes and restarts).
    pub workers: usize,
    /// Clients to pick from (partitions).
    pub clients: usize,
    /// Brokers to pick from (restarts and stops; a drawn plan kills none).
    pub brokers: usize,
    /// Worker crashes; each crashed worker restarts after a time drawn in
    /// `0..=max_down`. Two crashes of one worker may overlap: the second
    /// restart then finds it running and restarts it once more.
    pub worker_crashes: u32,
    /// Broker restarts (down for no time).
    pub broker_restarts: u32,
    /// Broker stops, each down for a time in `0..=max_down`.
    pub broker_stops: u32,
    /// Partitions of a worker or a client, each for a time in `0..=max_down`.
    pub partitions: u32,
    /// The longest a crash, a stop or a partition lasts.
    pub max_down: Duration,
}

impl DrawSpec {
    /// Nothing to draw yet, over `span`, among `workers` workers, `clients`
    /// clients and one broker, with faults that last at most 5 s.
    pub fn new(span: Duration, workers: usize, clients: usize) -> Self {
        DrawSpec {
            span,
            workers,
            clients,
            brokers: 1,
            worker_crashes: 0,
            broker_restarts: 0,
            broker_stops: 0,
            partitions: 0,
            max_down: Duration::from_secs(5),
        }
    }
}

impl FaultPlan {
    /// An empty plan.
    pub fn new() -> Self {
        FaultPlan::default()
    }

    /// The plan with `fault` at `at` after the start added.
    pub fn at(mut self, at: Duration, fault: Fault) -> Self {
        self.faults.push((at, fault));
        self
    }

    /// A plan drawn from `seed` as `spec` says. The same seed and spec
    /// give the same plan.
    pub fn draw(seed: u64, spec: &DrawSpec) -> Self {
        let mut rng = Rng::new(seed ^ 0xFA17_0000_0000_0000);
        let mut plan = FaultPlan::new();
        let span = spec.span;
        for _ in 0..if spec.workers == 0 { 0 } else { spec.worker_crashes } {
            let (at, j) = (rng.duration(span), rng.below(spec.workers as u64) as usize);
            let back = at + rng.duration(spec.max_down);
            plan = plan.at(at, Fault::CrashWorker(j)).at(back, Fault::RestartWorker(j));
        }
        for _ in 0..if spec.brokers == 0 { 0 } else { spec.broker_restarts } {
            let (at, b) = (rng.duration(span), rng.below(spec.brokers as u64) as usize);
            plan = plan.at(at, Fault::RestartBroker(b));
        }
        for _ in 0..if spec.brokers == 0 { 0 } else { spec.broker_stops } {
            let (at, broker) = (rng.duration(span), rng.below(spec.brokers as u64) as usize);
            plan = plan.at(at, Fault::StopBroker { broker, down_for: rng.duration(spec.max_down) });
        }
        let nodes = spec.workers + spec.clients;
        for _ in 0..if nodes == 0 { 0 } else { spec.partitions } {
            let at = rng.duration(span);
            let k = rng.below(nodes as u64) as usize;
            let node = if k < spec.workers { Node::Worker(k) } else { Node::Client(k - spec.workers) };
            plan = plan.at(at, Fault::Partition { node, duration: rng.duration(spec.max_down) });
        }
        plan
    }

    /// The faults in the order the simulation applies them: by time, then
    /// as listed.
    pub fn sorted(&self) -> Vec<(Duration, Fault)> {
        let mut faults = self.faults.clone();
        faults.sort_by_key(|(at, _)| *at);
        faults
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drawn_plan_is_a_function_of_its_seed_and_spec() {
        let mut spec = DrawSpec::new(Duration::from_secs(10), 4, 3);
        (spec.worker_crashes, spec.broker_restarts, spec.broker_stops, spec.partitions) = (3, 1, 1, 2);
        let a = FaultPlan::draw(7, &spec);
        assert_eq!(a, FaultPlan::draw(7, &spec));
        assert_ne!(a, FaultPlan::draw(8, &spec));
        // Each crash comes with its restart.
        assert_eq!(a.faults.len(), 3 * 2 + 1 + 1 + 2);
        for (at, fault) in a.sorted() {
            match fault {
                Fault::CrashWorker(j) | Fault::RestartWorker(j) => assert!(j < 4),
                Fault::Partition { node: Node::Worker(j), .. } => assert!(j < 4),
                Fault::Partition { node: Node::Client(i), .. } => assert!(i < 3),
                Fault::RestartBroker(b) | Fault::StopBroker { broker: b, .. } => assert_eq!(b, 0),
                other => panic!("not drawn: {other:?}"),
            }
            assert!(at <= Duration::from_secs(15), "{at:?}");
        }
    }

    #[test]
    fn nothing_to_pick_from_draws_nothing() {
        let mut spec = DrawSpec::new(Duration::from_secs(1), 0, 0);
        spec.brokers = 0;
        (spec.worker_crashes, spec.broker_restarts, spec.broker_stops, spec.partitions) = (3, 3, 3, 3);
        assert_eq!(FaultPlan::draw(1, &spec), FaultPlan::new());
    }
}
