//! `arbitrary::Arbitrary` for the fault types (feature `arbitrary`), so
//! that a cargo-fuzz target can draw the faults of a [`Sim`](crate::Sim)
//! run from its input. The commands' impls are mdp-core's (its
//! `arbitrary` feature, which this one turns on).
//!
//! The ranges are sane rather than whole: indices below 8 (a
//! [`Sim`](crate::Sim) ignores a fault naming a worker or broker it lacks),
//! probabilities in `0..=1`, delays up to 1 s, outages up to 10 s, plans of
//! up to 16 faults within the first minute.

use std::time::Duration;

use arbitrary::{Arbitrary, Result, Unstructured};

use crate::fault::{Fault, FaultPlan};
use crate::net::{Faults, Link, Node};

/// Largest peer index drawn.
const MAX_INDEX: usize = 7;
/// Longest latency, jitter or reordering delay drawn.
const MAX_DELAY: Duration = Duration::from_secs(1);
/// Longest outage (a broker down, a partition) drawn.
const MAX_DOWN: Duration = Duration::from_secs(10);
/// Latest time of a fault in a plan.
const MAX_AT: Duration = Duration::from_secs(60);
/// Most faults in a plan.
const MAX_FAULTS: usize = 16;

fn index(u: &mut Unstructured<'_>) -> Result<usize> {
    u.int_in_range(0..=MAX_INDEX)
}

/// A duration in `0..=max`, at millisecond resolution.
fn duration(u: &mut Unstructured<'_>, max: Duration) -> Result<Duration> {
    let max = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
    Ok(Duration::from_millis(u.int_in_range(0..=max)?))
}

/// A probability in `0..=1`, in steps of 1/1000.
fn probability(u: &mut Unstructured<'_>) -> Result<f64> {
    Ok(f64::from(u.int_in_range(0..=1000u16)?) / 1000.0)
}

/// Feature `arbitrary`: a client or worker most of the time (index below
/// 8), else a raw client or the ghost connection.
impl<'a> Arbitrary<'a> for Node {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match u.int_in_range(0..=7u8)? {
            0..=2 => Node::Client(index(u)?),
            3..=5 => Node::Worker(index(u)?),
            6 => Node::Raw(index(u)?),
            _ => Node::Ghost,
        })
    }
}

/// Feature `arbitrary`: latency and jitter up to 1 s each, loss in `0..=1`.
impl<'a> Arbitrary<'a> for Link {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(Link { latency: duration(u, MAX_DELAY)?, jitter: duration(u, MAX_DELAY)?, loss: probability(u)? })
    }
}

/// Feature `arbitrary`: every probability in `0..=1`, a reordering delay up
/// to 1 s. This covers the whole type, faults ZeroMQ never shows included
/// (`duplicate` above 0, `fifo` off), under which MDP cannot be correct and
/// the [`Checker`](crate::Checker) reports violations: set `duplicate` to
/// 0 and `fifo` to `true` for a run that should pass.
impl<'a> Arbitrary<'a> for Faults {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(Faults {
            reorder: probability(u)?,
            reorder_delay: duration(u, MAX_DELAY)?,
            ghost_requests: probability(u)?,
            duplicate: probability(u)?,
            fifo: u.arbitrary()?,
        })
    }
}

/// Feature `arbitrary`: any fault, [`Fault::KillBroker`] included, naming
/// peers by an index below 8, lasting at most 10 s, dropping at most 16
/// messages, with [`Link`]s and [`Faults`] as their own impls draw them.
impl<'a> Arbitrary<'a> for Fault {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match u.int_in_range(0..=9u8)? {
            0 => Fault::CrashWorker(index(u)?),
            1 => Fault::RestartWorker(index(u)?),
            2 => Fault::StopBroker { broker: index(u)?, down_for: duration(u, MAX_DOWN)? },
            3 => Fault::RestartBroker(index(u)?),
            4 => Fault::KillBroker(index(u)?),
            5 => Fault::Partition { node: u.arbitrary()?, duration: duration(u, MAX_DOWN)? },
            6 => Fault::DropNext { node: u.arbitrary()?, count: u.int_in_range(0..=16)? },
            7 => Fault::SetFaults(u.arbitrary()?),
            8 => Fault::SetLink { node: u.arbitrary()?, link: u.arbitrary()? },
            _ => Fault::StopFaults,
        })
    }
}

/// Feature `arbitrary`: up to 16 arbitrary [`Fault`]s, each at a time in
/// the first minute.
impl<'a> Arbitrary<'a> for FaultPlan {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let n = u.int_in_range(0..=MAX_FAULTS)?;
        let mut faults = Vec::with_capacity(n);
        for _ in 0..n {
            faults.push((duration(u, MAX_AT)?, u.arbitrary()?));
        }
        Ok(FaultPlan { faults })
    }
}
