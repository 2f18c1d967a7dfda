//! A [`Scenario`]: a whole simulated deployment (services with the user's
//! handlers, clients with their workloads, faults, the user's check) as a
//! function of a seed, run to a [`Report`].
//!
//! [`Scenario::run`] builds a [`Sim`] for a seed, runs it until every
//! workload is done and every scheduled fault applied, and checks that
//! nothing was lost. It stops at the first broken invariant or failed
//! check. Runs are fast because nothing is written down as they go; when
//! one fails, the scenario runs that seed again with a timeline on, up to
//! the failing step, so the report carries the last steps before it (and
//! says whether the second run failed the same way, which it does unless a
//! handler or check is not a function of its input).
//! [`Scenario::replay`] does the same for any seed.
//!
//! ```
//! use bytes::Bytes;
//! use mdp_core::{ClientConfig, Dialect};
//! use mdp_testkit::{Fault, FaultPlan, Scenario, ServiceTime, SimConfig};
//! use std::time::Duration;
//!
//! let double = |req: &[Bytes]| -> Vec<Bytes> {
//!     let n: u64 = std::str::from_utf8(&req[0]).unwrap().parse().unwrap();
//!     vec![Bytes::from((2 * n).to_string())]
//! };
//! let scenario = Scenario::new(SimConfig::new(0))
//!     .workers("double", Dialect::V02, 3, move || double, ServiceTime::Fixed(Duration::from_millis(5)))
//!     .clients(2, ClientConfig::new(Dialect::V01), |_rng, i| {
//!         (0..50).map(|n| (Bytes::from_static(b"double"), vec![Bytes::from(format!("{}", 100 * i + n))])).collect()
//!     })
//!     .faults(FaultPlan::new().at(Duration::from_millis(40), Fault::CrashWorker(0)))
//!     .check(|call, answer| {
//!         let n: u64 = std::str::from_utf8(&call.body[0]).unwrap().parse().unwrap();
//!         match answer.last.as_slice() {
//!             [got] if *got == (2 * n).to_string().as_bytes() => Ok(()),
//!             other => Err(format!("{n} doubled is not {other:?}")),
//!         }
//!     });
//! let report = scenario.run(7);
//! assert!(report.passed(), "{report}");
//! assert_eq!(report.counts.answered, 100);
//! scenario.explore(0..20).unwrap_or_else(|failed| panic!("{failed}"));
//! ```

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use mdp_core::{ClientConfig, Dialect, Multipart};

use crate::app::{Answer, Call, Handler, MakeHandler, ServiceTime};
use crate::fault::{DrawSpec, FaultPlan};
use crate::model::{ModelCounts, Violation};
use crate::net::NetStats;
use crate::rng::Rng;
use crate::sim::{Sim, SimConfig, SimError, SimStats};

/// Lines of timeline a failed run's report carries.
pub const TIMELINE: usize = 48;

/// A client workload: the requests (service, body) client `i` makes, drawn
/// from its own generator.
type Workload = Rc<dyn Fn(&mut Rng, usize) -> Vec<(Bytes, Multipart)>>;

/// The user's check, shared by every run of a scenario.
type SharedCheck = Rc<dyn Fn(&Call, &Answer) -> Result<(), String>>;

#[derive(Clone)]
struct Service {
    name: Bytes,
    dialect: Dialect,
    workers: usize,
    make: MakeHandler,
    time: ServiceTime,
}

#[derive(Clone)]
struct Clients {
    count: usize,
    config: ClientConfig,
    workload: Workload,
}

/// A simulated deployment, to run for any number of seeds. See the
/// [module docs](self).
#[derive(Clone)]
pub struct Scenario {
    config: SimConfig,
    services: Vec<Service>,
    clients: Vec<Clients>,
    plan: FaultPlan,
    drawn: Option<DrawSpec>,
    check: Option<SharedCheck>,
    max_steps: u64,
    max_failed: u64,
}

impl fmt::Debug for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scenario")
            .field("config", &self.config)
            .field("services", &self.services.iter().map(|s| (&s.name, s.workers)).collect::<Vec<_>>())
            .field("clients", &self.clients.iter().map(|c| c.count).sum::<usize>())
            .field("plan", &self.plan)
            .field("drawn", &self.drawn)
            .finish_non_exhaustive()
    }
}

impl Scenario {
    /// A scenario on a simulation set up as `config` says (its seed and
    /// timeline are replaced by each run's), with no peers yet, no faults
    /// scheduled, a budget of 10 million steps per run, and no request
    /// allowed to fail ([`max_failed`](Self::max_failed)).
    ///
    /// Of `config`, the client settings (`client_timeout`, `client_tries`,
    /// `client_lanes`) do not apply: a scenario's clients are configured
    /// by the `ClientConfig` given to [`clients`](Self::clients). The
    /// window, `client_window`, does, as an upper bound.
    ///
    /// Loss in `config.link` hits every node, workers too. Mind what that
    /// does to MDP: a worker's lost FINAL (or a lost REQUEST to it) leaves
    /// the broker counting the worker busy while its heartbeats keep it
    /// registered, so it is never given work again, and a small fleet soon
    /// has none left. ZeroMQ loses messages on the way *to* a peer whose
    /// pipe is full, which is the clients' side here: put loss on client
    /// links ([`Fault::SetLink`](crate::Fault::SetLink) at time zero).
    pub fn new(config: SimConfig) -> Self {
        Scenario {
            config,
            services: Vec::new(),
            clients: Vec::new(),
            plan: FaultPlan::new(),
            drawn: None,
            check: None,
            max_steps: 10_000_000,
            max_failed: 0,
        }
    }

    /// Adds `count` worker processes of `service`, speaking `dialect`, each
    /// with a [`Handler`] made by `make` (afresh when it restarts) that
    /// takes a time drawn from `time` per request. Worker processes are
    /// numbered in the order they are added, from 0 ([`Fault`]s name them
    /// so).
    ///
    /// [`Fault`]: crate::Fault
    pub fn workers<H: Handler + 'static>(
        mut self,
        service: impl Into<Bytes>,
        dialect: Dialect,
        count: usize,
        make: impl Fn() -> H + 'static,
        time: ServiceTime,
    ) -> Self {
        let make: MakeHandler = Rc::new(move || Box::new(make()) as Box<dyn Handler>);
        self.services.push(Service { name: service.into(), dialect, workers: count, make, time });
        self
    }

    /// Adds `count` clients configured as `config` says (dialect, lanes,
    /// timeout, tries), numbered on from the ones before. Client `i`'s
    /// workload is `workload(rng, i)`: the requests it makes, in order, as
    /// (service, body); `rng` is the client's own generator, seeded from
    /// the run's seed.
    pub fn clients(
        mut self,
        count: usize,
        config: ClientConfig,
        workload: impl Fn(&mut Rng, usize) -> Vec<(Bytes, Multipart)> + 'static,
    ) -> Self {
        self.clients.push(Clients { count, config, workload: Rc::new(workload) });
        self
    }

    /// Applies `plan` in every run (added to any plan given before).
    pub fn faults(mut self, plan: FaultPlan) -> Self {
        self.plan.faults.extend(plan.faults);
        self
    }

    /// Draws a plan as `spec` says for each run, from the run's seed
    /// ([`FaultPlan::draw`]), besides any plan given with
    /// [`faults`](Self::faults); replaces a spec given before. The spec's
    /// counts of workers, clients and brokers are replaced by the
    /// scenario's own, so that every drawn fault names a peer that exists.
    pub fn draw_faults(mut self, spec: DrawSpec) -> Self {
        self.drawn = Some(spec);
        self
    }

    /// Checks every answer against its request with `check` (see
    /// [`Check`](crate::Check)); replaces a check given before. One check
    /// serves every run of the scenario: state kept in it carries from one
    /// run to the next, and makes failures unrepeatable.
    pub fn check(mut self, check: impl Fn(&Call, &Answer) -> Result<(), String> + 'static) -> Self {
        self.check = Some(Rc::new(check));
        self
    }

    /// A run that takes more than `max_steps` steps is reported
    /// [`Verdict::Stuck`].
    pub fn max_steps(mut self, max_steps: u64) -> Self {
        self.max_steps = max_steps;
        self
    }

    /// A run in which more than `max_failed` requests failed (their
    /// client gave up after its tries) is reported
    /// [`Verdict::TooManyFailed`]. Default: 0. A failed request is not a
    /// broken invariant: MDP reports it, and under heavy faults some fail
    /// by design. But a run where they all fail (a misspelt service, no
    /// worker that lives) must not pass.
    pub fn max_failed(mut self, max_failed: u64) -> Self {
        self.max_failed = max_failed;
        self
    }

    /// The simulation this scenario builds for `seed`, set up and not yet
    /// run: to drive it by hand, or to look at it. Its checker collects
    /// violations instead of panicking on them
    /// (`sim.checker.violations()`), as a scenario's runs need.
    pub fn build(&self, seed: u64) -> Sim {
        self.build_with(seed, self.config.timeline, &self.plan_for(seed))
    }

    /// `plan` is [`plan_for`](Self::plan_for)`(seed)`, which the caller
    /// may want too.
    fn build_with(&self, seed: u64, timeline: usize, plan: &FaultPlan) -> Sim {
        let mut config = self.config.clone();
        (config.seed, config.timeline) = (seed, timeline);
        let mut sim = Sim::new(config);
        sim.checker.panic_on_violation = false;
        if let Some(check) = &self.check {
            let check = Rc::clone(check);
            sim.set_check(move |call: &Call, answer: &Answer| check(call, answer));
        }
        for s in &self.services {
            for _ in 0..s.workers {
                sim.add_worker_made(s.name.clone(), s.dialect, Rc::clone(&s.make), s.time.clone());
            }
        }
        let mut rng = Rng::new(seed ^ 0x3041_C0AD_0000_0000);
        for c in &self.clients {
            for _ in 0..c.count {
                let i = sim.add_client_with_config(c.config.clone());
                let requests = (c.workload)(&mut rng.fork(i as u64), i);
                sim.submit_requests(i, requests);
            }
        }
        sim.schedule_plan(plan);
        sim
    }

    /// Every fault a run of `seed` schedules: the given plan, then the
    /// drawn one.
    pub fn plan_for(&self, seed: u64) -> FaultPlan {
        let mut plan = self.plan.clone();
        if let Some(spec) = &self.drawn {
            let mut spec = spec.clone();
            spec.workers = self.services.iter().map(|s| s.workers).sum();
            spec.clients = self.clients.iter().map(|c| c.count).sum();
            spec.brokers = self.config.brokers.max(1);
            plan.faults.extend(FaultPlan::draw(seed, &spec).faults);
        }
        plan
    }

    /// Runs the scenario for `seed`; see the [module docs](self).
    pub fn run(&self, seed: u64) -> Report {
        let first = self.run_with(seed, 0, None);
        match &first.verdict {
            Verdict::Violated { step, .. } => {
                let step = *step;
                let mut again = self.run_with(seed, TIMELINE, Some(step));
                if again.steps == step && again.verdict.violation() == first.verdict.violation() {
                    if let Verdict::Violated { repeated, .. } = &mut again.verdict {
                        *repeated = true;
                    }
                    again
                } else {
                    // The seed does not bring it back: report the first
                    // run, which has no timeline, and say so.
                    first
                }
            }
            Verdict::Panicked { step, .. } => {
                // Again, up to the step that panicked, for its timeline.
                let step = *step;
                let again = self.run_with(seed, TIMELINE, Some(step));
                let mut first = first;
                if let Verdict::Panicked { timeline, .. } = &mut first.verdict {
                    *timeline = again.timeline;
                }
                first
            }
            _ => first,
        }
    }

    /// Runs `seed` again with a timeline of the last [`TIMELINE`] steps
    /// (up to the first violation, if there is one).
    pub fn replay(&self, seed: u64) -> Report {
        self.run_with(seed, TIMELINE, None)
    }

    /// Runs every seed of `seeds`; the report of the first that does not
    /// pass, if any.
    pub fn explore(&self, seeds: impl IntoIterator<Item = u64>) -> Result<(), Box<Report>> {
        for seed in seeds {
            let report = self.run(seed);
            if !report.passed() {
                return Err(Box::new(report));
            }
        }
        Ok(())
    }

    /// One run; with `timeline` lines kept, and stopping after `stop_at`
    /// steps if given (where the first run found its violation).
    fn run_with(&self, seed: u64, timeline: usize, stop_at: Option<u64>) -> Report {
        let plan = self.plan_for(seed);
        let mut sim = None;
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let s = sim.insert(self.build_with(seed, timeline, &plan));
            drive(s, self.max_steps, self.max_failed, stop_at)
        }));
        let verdict = match outcome {
            Ok(verdict) => verdict,
            Err(panic) => Verdict::Panicked {
                message: panic_message(&*panic),
                // The step that panicked is the one after those done.
                step: sim.as_ref().map_or(0, |s| s.stats().steps + 1),
                timeline: Vec::new(),
            },
        };
        let verdict = match (verdict, &sim) {
            (Verdict::Violated { violation, step, .. }, Some(sim)) => Verdict::Violated {
                violation,
                step,
                timeline: sim.timeline().map(str::to_owned).collect(),
                repeated: false,
            },
            (verdict, _) => verdict,
        };
        let mut report = Report::new(seed, sim.as_ref(), verdict);
        report.timeline = sim.as_ref().map_or_else(Vec::new, |s| s.timeline().map(str::to_owned).collect());
        report.faults = plan;
        report
    }
}

/// Steps `sim` until its workloads are done and its faults applied, then
/// checks nothing was lost; stops at the first violation, or after
/// `stop_at` steps.
fn drive(sim: &mut Sim, max_steps: u64, max_failed: u64, stop_at: Option<u64>) -> Verdict {
    let first = |sim: &Sim| sim.checker.violations().first().cloned();
    let done = |sim: &Sim| sim.is_quiet() && sim.faults_pending() == 0;
    let stop = |sim: &Sim| first(sim).is_some() || done(sim) || stop_at.is_some_and(|s| sim.stats().steps >= s);
    if let Err(e) = sim.run_until(stop, max_steps) {
        return first(sim).map_or(Verdict::Stuck(e), |v| violated(sim, v));
    }
    if done(sim) && first(sim).is_none() {
        let now = sim.now();
        sim.checker.check_nothing_lost(now);
    }
    match first(sim) {
        Some(v) => violated(sim, v),
        None if done(sim) && sim.counts().failed > max_failed => {
            Verdict::TooManyFailed { failed: sim.counts().failed, allowed: max_failed }
        }
        None => Verdict::Passed,
    }
}

fn violated(sim: &Sim, violation: Violation) -> Verdict {
    Verdict::Violated { violation, step: sim.stats().steps, timeline: Vec::new(), repeated: false }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    match (panic.downcast_ref::<String>(), panic.downcast_ref::<&str>()) {
        (Some(s), _) => s.clone(),
        (None, Some(s)) => (*s).to_owned(),
        _ => "a panic without a message".to_owned(),
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every workload done, every invariant and check held, nothing lost,
    /// and no more requests failed than [`Scenario::max_failed`] allows.
    Passed,
    /// An invariant broke, or the user's check failed.
    Violated {
        /// The first violation.
        violation: Violation,
        /// The step after which it was found (steps count from 1).
        step: u64,
        /// The last steps up to it (see [`TIMELINE`]), oldest first.
        timeline: Vec<String>,
        /// Whether running the seed again failed the same way at the same
        /// step. Not so means a handler, workload or check is not a
        /// function of its input, and the seed alone cannot replay it.
        repeated: bool,
    },
    /// Every invariant held, but more requests failed (their clients gave
    /// up after their tries) than [`Scenario::max_failed`] allows.
    TooManyFailed {
        /// Requests that failed.
        failed: u64,
        /// The most allowed.
        allowed: u64,
    },
    /// The run did not finish within its step budget
    /// ([`SimError::OutOfSteps`]), or had nothing left to do before its
    /// workloads were done ([`SimError::Idle`]).
    Stuck(SimError),
    /// Something panicked: a handler or check, a workload the client
    /// refused, or the simulation on a livelock.
    Panicked {
        /// The panic's message.
        message: String,
        /// The step that panicked.
        step: u64,
        /// The last steps before it (see [`TIMELINE`]), oldest first.
        timeline: Vec<String>,
    },
}

impl Verdict {
    /// The violation, if the run had one.
    pub fn violation(&self) -> Option<&Violation> {
        match self {
            Verdict::Violated { violation, .. } => Some(violation),
            _ => None,
        }
    }
}

/// What a run did: its seed, counts and [`Verdict`]. Its `Display` is
/// what to print for a failed run: the seed, the violation, the timeline,
/// and how to replay it. (`PartialEq` only: the fault plan holds
/// probabilities.)
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The run's seed: [`Scenario::run`] or [`Scenario::replay`] with it
    /// runs exactly this case again.
    pub seed: u64,
    /// Steps taken.
    pub steps: u64,
    /// Virtual time the run took.
    pub elapsed: Duration,
    /// Requests issued, answered, failed, cancelled, …
    pub counts: ModelCounts,
    /// The simulation's totals (dispatches, crashes, reconnects, …).
    pub stats: SimStats,
    /// The network's totals (sent, lost, duplicated, …).
    pub net: NetStats,
    /// Every fault the run scheduled, given and drawn.
    pub faults: FaultPlan,
    /// The run's last steps, if it kept a timeline ([`Scenario::replay`]
    /// does); a failed run's verdict has its own.
    pub timeline: Vec<String>,
    /// How it ended.
    pub verdict: Verdict,
}

impl Report {
    fn new(seed: u64, sim: Option<&Sim>, verdict: Verdict) -> Self {
        Report {
            seed,
            steps: sim.map_or(0, |s| s.stats().steps),
            elapsed: sim.map_or(Duration::ZERO, Sim::elapsed),
            counts: sim.map_or_else(ModelCounts::default, Sim::counts),
            stats: sim.map_or_else(SimStats::default, Sim::stats),
            net: sim.map_or_else(NetStats::default, Sim::net_stats),
            faults: FaultPlan::new(),
            timeline: Vec::new(),
            verdict,
        }
    }

    /// Whether the run passed.
    pub fn passed(&self) -> bool {
        self.verdict == Verdict::Passed
    }
}

fn write_timeline(f: &mut fmt::Formatter<'_>, timeline: &[String]) -> fmt::Result {
    if timeline.is_empty() {
        return Ok(());
    }
    writeln!(f, "  the last {} steps before it:", timeline.len())?;
    for line in timeline {
        writeln!(f, "    {line}")?;
    }
    Ok(())
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        write!(
            f,
            "seed {}: {} requests, {} answered, {} failed, {} cancelled, in {:?} of virtual time and {} steps",
            self.seed, c.issued, c.answered, c.failed, c.cancelled, self.elapsed, self.steps
        )?;
        match &self.verdict {
            Verdict::Passed => write!(f, ": passed"),
            Verdict::Violated { violation, step, timeline, repeated } => {
                writeln!(f, ": FAILED at step {step}")?;
                writeln!(f, "  {violation}")?;
                write_timeline(f, timeline)?;
                if *repeated {
                    write!(f, "  replay it with `scenario.replay({})`", self.seed)
                } else {
                    write!(f, "  the seed ran again did NOT fail the same way: is a handler, workload or check not a function of its input?")
                }
            }
            Verdict::TooManyFailed { failed, allowed } => {
                write!(f, ": {failed} requests FAILED (their clients gave up), more than the {allowed} allowed")
            }
            Verdict::Stuck(e) => write!(f, ": STUCK: {e}"),
            Verdict::Panicked { message, step, timeline } => {
                writeln!(f, ": PANICKED at step {step}: {message}")?;
                write_timeline(f, timeline)?;
                write!(f, "  replay it with `scenario.replay({})`", self.seed)
            }
        }
    }
}
