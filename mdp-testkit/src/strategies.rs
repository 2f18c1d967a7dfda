//! [proptest](mod@proptest) strategies for MDP traffic and fault schedules, so that a
//! property test of your own code can generate what peers send and what
//! goes wrong (feature `proptest`, on by default).
//!
//! * Names and frames: [`dialect`], [`service`], [`identity`], [`body`].
//! * Commands that are valid in a dialect, so that `encode` succeeds, and
//!   their frames: [`peer_command`] and [`peer_frames`] (what clients and
//!   workers send the broker), [`broker_command`] and [`broker_frames`]
//!   (what the broker sends them).
//! * What a broken or hostile peer sends: [`hostile_frames`].
//! * Faults for a [`Sim`](crate::Sim): [`fault`], [`timed_fault`] and
//!   [`fault_plan`] for a [`DrawSpec`], and the network settings [`link`]
//!   and [`net_faults`].
//!
//! Sizes are small (bodies of at most 4 frames of at most 32 bytes,
//! service names of at most 16), and a few names recur, so that generated
//! commands meet: a READY and a REQUEST for one service, a FINAL for a
//! client that asked.
//!
//! # Example
//!
//! Every command valid in a dialect goes through the codec and back:
//!
//! ```
//! use mdp_core::PeerCommand;
//! use mdp_testkit::strategies::{dialect, peer_command};
//! use proptest::prelude::*;
//!
//! proptest! {
//!     fn peer_commands_round_trip(
//!         (dialect, command) in dialect().prop_flat_map(|d| (Just(d), peer_command(d)))
//!     ) {
//!         let frames = command.clone().encode(dialect).expect("valid in its dialect");
//!         prop_assert_eq!(PeerCommand::decode(frames), Ok((dialect, command)));
//!     }
//! }
//! # fn main() {
//! peer_commands_round_trip();
//! # }
//! ```

use std::ops::RangeInclusive;
use std::time::Duration;

use bytes::Bytes;
use mdp_core::{BrokerCommand, Dialect, Multipart, PeerCommand, PeerId, MDPC01, MDPC02, MDPW01, MDPW02};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::strategy::Union;

use crate::fault::{DrawSpec, Fault, FaultPlan};
use crate::net::{Faults, Link, Node};

/// Service names drawn more often than made-up ones: ordinary ones, the
/// MMI service the broker answers, and an MMI name it does not know.
const SERVICES: [&[u8]; 5] = [b"echo", b"work", b"a", b"mmi.service", b"mmi.nope"];

/// The four protocol headers.
const HEADERS: [&[u8]; 4] = [MDPC01, MDPW01, MDPC02, MDPW02];

fn bytes(len: RangeInclusive<usize>) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), len).prop_map(Bytes::from)
}

/// Any of the three [`Dialect`]s.
pub fn dialect() -> impl Strategy<Value = Dialect> {
    select(Dialect::ALL.to_vec())
}

/// A service name: never empty, at most 16 bytes. Mostly one of a few
/// names, `mmi.service` among them (the broker answers it itself) and an
/// MMI name the broker does not know; else arbitrary bytes, not UTF-8 and
/// with zero bytes included.
pub fn service() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        3 => select(SERVICES.to_vec()).prop_map(Bytes::from_static),
        1 => bytes(1..=16),
    ]
}

/// One body frame: empty one time in four, else up to 32 arbitrary bytes.
fn frame() -> impl Strategy<Value = Bytes> {
    prop_oneof![1 => Just(Bytes::new()), 3 => bytes(1..=32)]
}

/// `min..=4` body frames.
fn frames(min: usize) -> impl Strategy<Value = Multipart> {
    vec(frame(), min..=4)
}

/// A message body: 0 to 4 frames of 0 to 32 bytes, empty frames included.
/// (A REQUEST needs at least one frame; [`peer_command`] and
/// [`broker_command`] see to that.)
pub fn body() -> impl Strategy<Value = Multipart> {
    frames(0)
}

/// A peer's identity as a ROUTER socket sees it: 1 to 32 bytes. Mostly
/// libzmq's generated form (a zero byte, then four bytes), else a name the
/// peer chose (ASCII, not starting with a zero byte) or arbitrary bytes.
pub fn identity() -> impl Strategy<Value = PeerId> {
    let generated = any::<[u8; 4]>().prop_map(|b| Bytes::from(vec![0, b[0], b[1], b[2], b[3]]));
    let chosen = "[a-z][a-z0-9-]{0,15}".prop_map(Bytes::from);
    prop_oneof![2 => generated, 1 => chosen, 1 => bytes(1..=32)].prop_map(PeerId)
}

/// A client address in a worker's reply or the broker's REQUEST: mostly an
/// identity, sometimes any bytes, empty included (the codec does not look
/// inside).
fn address() -> impl Strategy<Value = Bytes> {
    prop_oneof![3 => identity().prop_map(|p| p.0), 1 => bytes(0..=8)]
}

/// A command a client or worker sends the broker that is valid in
/// `dialect` ([`PeerCommand::encode`] succeeds): REQUEST, READY, FINAL
/// (REPLY in MDP/0.1), HEARTBEAT, DISCONNECT, and PARTIAL unless the
/// dialect is MDP/0.1.
pub fn peer_command(dialect: Dialect) -> impl Strategy<Value = PeerCommand> {
    let mut arms = vec![
        (4, (service(), frames(1)).prop_map(|(service, body)| PeerCommand::Request { service, body }).boxed()),
        (2, service().prop_map(|service| PeerCommand::Ready { service }).boxed()),
        (2, (address(), body()).prop_map(|(client, body)| PeerCommand::Final { client, body }).boxed()),
        (1, Just(PeerCommand::Heartbeat).boxed()),
        (1, Just(PeerCommand::Disconnect).boxed()),
    ];
    if dialect.supports_partial() {
        arms.push((2, (address(), body()).prop_map(|(client, body)| PeerCommand::Partial { client, body }).boxed()));
    }
    Union::new_weighted(arms)
}

/// A command the broker sends a client or worker that is valid in
/// `dialect` ([`BrokerCommand::encode`] succeeds): FINAL (REPLY in
/// MDP/0.1), REQUEST, HEARTBEAT, DISCONNECT, and PARTIAL unless the
/// dialect is MDP/0.1. Replies carry a service name, except in the
/// majortomo dialect, which has none.
pub fn broker_command(dialect: Dialect) -> impl Strategy<Value = BrokerCommand> {
    let reply_service = move || match dialect {
        Dialect::Majortomo => Just(None).boxed(),
        Dialect::V01 | Dialect::V02 => service().prop_map(Some).boxed(),
    };
    let mut arms = vec![
        (3, (reply_service(), body()).prop_map(|(service, body)| BrokerCommand::Final { service, body }).boxed()),
        (3, (address(), frames(1)).prop_map(|(client, body)| BrokerCommand::Request { client, body }).boxed()),
        (1, Just(BrokerCommand::Heartbeat).boxed()),
        (1, Just(BrokerCommand::Disconnect).boxed()),
    ];
    if dialect.supports_partial() {
        let partial = (reply_service(), body()).prop_map(|(service, body)| BrokerCommand::Partial { service, body });
        arms.push((2, partial.boxed()));
    }
    Union::new_weighted(arms)
}

/// The frames of a [`peer_command`] in `dialect`.
pub fn peer_frames(dialect: Dialect) -> impl Strategy<Value = Multipart> {
    peer_command(dialect).prop_map(move |c| c.encode(dialect).expect("a command valid in its dialect encodes"))
}

/// The frames of a [`broker_command`] in `dialect`.
pub fn broker_frames(dialect: Dialect) -> impl Strategy<Value = Multipart> {
    broker_command(dialect).prop_map(move |c| c.encode(dialect).expect("a command valid in its dialect encodes"))
}

/// A frame as MDP messages are made of, for random messages: empty
/// frames, protocol headers, command bytes, names, and anything.
fn wire_frame() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        3 => Just(Bytes::new()),
        3 => select(HEADERS.to_vec()).prop_map(Bytes::from_static),
        3 => (0u8..=7).prop_map(|c| Bytes::copy_from_slice(&[c])),
        1 => select(SERVICES.to_vec()).prop_map(Bytes::from_static),
        2 => bytes(0..=40),
    ]
}

/// How [`hostile_frames`] breaks a valid message.
#[derive(Debug, Clone)]
enum Mutation {
    /// Cut it short: keep fewer frames than it has.
    Truncate(Index),
    /// Remove one frame.
    Drop(Index),
    /// Send one frame twice.
    Duplicate(Index),
    /// Replace the protocol header.
    Header(Bytes),
    /// Replace the frame after the header (the command byte, or an MDP/0.1
    /// client's service) with a command byte no dialect has there.
    Command(Bytes),
    /// Put another dialect's header (leading empty frame included or not)
    /// in front of the rest.
    Dialect(Dialect),
    /// Replace one frame with another.
    Replace(Index, Bytes),
}

/// Where the protocol header is: after the leading empty frame, if any.
fn header_index(frames: &[Bytes]) -> usize {
    usize::from(frames.first().is_some_and(Bytes::is_empty))
}

impl Mutation {
    fn apply(self, mut frames: Multipart) -> Multipart {
        let len = frames.len();
        match self {
            Mutation::Truncate(i) => frames.truncate(i.index(len.max(1))),
            Mutation::Drop(i) if len > 0 => {
                frames.remove(i.index(len));
            }
            Mutation::Duplicate(i) if len > 0 => {
                let i = i.index(len);
                frames.insert(i, frames[i].clone());
            }
            Mutation::Replace(i, frame) if len > 0 => frames[i.index(len)] = frame,
            Mutation::Header(header) => {
                let at = header_index(&frames);
                if let Some(slot) = frames.get_mut(at) {
                    *slot = header;
                }
            }
            Mutation::Command(command) => {
                let at = header_index(&frames) + 1;
                if let Some(slot) = frames.get_mut(at) {
                    *slot = command;
                }
            }
            Mutation::Dialect(dialect) => {
                let at = header_index(&frames);
                // Client or worker: the header's fourth byte (MDPC.. or MDPW..).
                let worker = frames.get(at).is_some_and(|h| h.get(3) == Some(&b'W'));
                let header: &'static [u8] = match (dialect, worker) {
                    (Dialect::V01, false) => MDPC01,
                    (Dialect::V01, true) => MDPW01,
                    (_, false) => MDPC02,
                    (_, true) => MDPW02,
                };
                let rest = frames.split_off((at + 1).min(len));
                frames.clear();
                if dialect != Dialect::V02 {
                    frames.push(Bytes::new());
                }
                frames.push(Bytes::from_static(header));
                frames.extend(rest);
            }
            Mutation::Drop(_) | Mutation::Duplicate(_) | Mutation::Replace(..) => {}
        }
        frames
    }
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let not_headers: Vec<&'static [u8]> = vec![b"", b"MDPX01", b"MDPC03", b"mdpc01", b"MDPC0", b"MDPW021"];
    let wrong_header = prop_oneof![
        select(HEADERS.to_vec()).prop_map(Bytes::from_static),
        select(not_headers).prop_map(Bytes::from_static),
        bytes(0..=8),
    ];
    // 0x00 and 0x07.. are no command in any dialect; nor is a frame of
    // more or less than one byte.
    let unknown_command = prop_oneof![
        prop_oneof![Just(0u8), 7u8..=255].prop_map(|b| Bytes::copy_from_slice(&[b])),
        Just(Bytes::new()),
        bytes(2..=4),
    ];
    prop_oneof![
        2 => any::<Index>().prop_map(Mutation::Truncate),
        2 => any::<Index>().prop_map(Mutation::Drop),
        2 => any::<Index>().prop_map(Mutation::Duplicate),
        2 => wrong_header.prop_map(Mutation::Header),
        2 => unknown_command.prop_map(Mutation::Command),
        2 => dialect().prop_map(Mutation::Dialect),
        1 => (any::<Index>(), wire_frame()).prop_map(|(i, f)| Mutation::Replace(i, f)),
    ]
}

/// What a broken or hostile peer sends the broker: mostly a valid message
/// (a [`peer_command`], or a [`broker_command`] sent the wrong way) broken
/// by one or two of: cutting it short, dropping a frame, sending a frame
/// twice, a wrong protocol header, an unknown command byte, the rest of
/// the message under another dialect's header, a frame replaced; else up
/// to 8 random frames made mostly of what MDP messages are made of.
///
/// Some of these are valid messages after all (another dialect's header
/// in front of a worker command, say): a broker must take those as what
/// they are, and reject the rest without harm.
pub fn hostile_frames() -> impl Strategy<Value = Multipart> {
    let valid = dialect().prop_flat_map(|d| prop_oneof![3 => peer_frames(d), 1 => broker_frames(d)]);
    let broken = (valid, vec(mutation(), 1..=2))
        .prop_map(|(frames, mutations)| mutations.into_iter().fold(frames, |frames, m| m.apply(frames)));
    prop_oneof![4 => broken, 1 => vec(wire_frame(), 0..=8)]
}

/// A duration in `0..=max`, at microsecond resolution.
fn duration(max: Duration) -> impl Strategy<Value = Duration> {
    (0..=u64::try_from(max.as_micros()).unwrap_or(u64::MAX)).prop_map(Duration::from_micros)
}

/// A probability in `0..=max`.
fn probability(max: f64) -> impl Strategy<Value = f64> {
    prop_oneof![1 => Just(0.0), 3 => 0.0..=max]
}

/// A node's link as a LAN or a slow network has it: latency up to 50 ms,
/// jitter up to 20 ms, loss up to 20 %.
pub fn link() -> impl Strategy<Value = Link> {
    (duration(Duration::from_millis(50)), duration(Duration::from_millis(20)), probability(0.2))
        .prop_map(|(latency, jitter, loss)| Link::new(latency, jitter).lossy(loss))
}

/// The network's [`Faults`], of the kinds ZeroMQ can show only:
/// reordering across connections (up to half the messages, held back up to
/// 200 ms) and ghost requests (up to a fifth), never duplication nor
/// reordering within a connection, under which MDP cannot be correct (see
/// [`net`](crate::net)).
pub fn net_faults() -> impl Strategy<Value = Faults> {
    (probability(0.5), duration(Duration::from_millis(200)), probability(0.2)).prop_map(
        |(reorder, reorder_delay, ghost_requests)| Faults {
            reorder,
            reorder_delay,
            ghost_requests,
            ..Faults::default()
        },
    )
}

/// A worker or client of `spec`, as [`FaultPlan::draw`] picks them.
fn node(spec: &DrawSpec) -> impl Strategy<Value = Node> {
    let workers = spec.workers;
    (0..(workers + spec.clients).max(1))
        .prop_map(move |k| if k < workers { Node::Worker(k) } else { Node::Client(k - workers) })
}

/// One fault that names only peers `spec` has, and that lasts at most
/// `spec.max_down`: a worker crash or restart (if the spec has workers), a
/// broker restart or stop (if it has brokers), a partition, lost messages
/// ([`Fault::DropNext`], 1 to 4) or a new [`link`] for a worker or client
/// (if it has any), new [`net_faults`], or the end of every fault.
///
/// The counts of the spec (`worker_crashes` and so on) are for
/// [`fault_plan`]; this ignores them. It never kills a broker for good
/// ([`Fault::KillBroker`]), as [`FaultPlan::draw`] never does: a run is
/// meant to recover.
pub fn fault(spec: &DrawSpec) -> impl Strategy<Value = Fault> {
    let (workers, brokers, nodes) = (spec.workers, spec.brokers, spec.workers + spec.clients);
    let max_down = spec.max_down;
    let mut arms: Vec<(u32, BoxedStrategy<Fault>)> = Vec::new();
    if workers > 0 {
        arms.push((2, (0..workers).prop_map(Fault::CrashWorker).boxed()));
        arms.push((2, (0..workers).prop_map(Fault::RestartWorker).boxed()));
    }
    if brokers > 0 {
        arms.push((1, (0..brokers).prop_map(Fault::RestartBroker).boxed()));
        let stop =
            (0..brokers, duration(max_down)).prop_map(|(broker, down_for)| Fault::StopBroker { broker, down_for });
        arms.push((1, stop.boxed()));
    }
    if nodes > 0 {
        let partition =
            (node(spec), duration(max_down)).prop_map(|(node, duration)| Fault::Partition { node, duration });
        arms.push((2, partition.boxed()));
        arms.push((2, (node(spec), 1..=4u32).prop_map(|(node, count)| Fault::DropNext { node, count }).boxed()));
        arms.push((1, (node(spec), link()).prop_map(|(node, link)| Fault::SetLink { node, link }).boxed()));
    }
    arms.push((1, net_faults().prop_map(Fault::SetFaults).boxed()));
    arms.push((1, Just(Fault::StopFaults).boxed()));
    Union::new_weighted(arms)
}

/// A [`fault`] at a time in `0..=spec.span`.
pub fn timed_fault(spec: &DrawSpec) -> impl Strategy<Value = (Duration, Fault)> {
    (duration(spec.span), fault(spec))
}

/// A plan of the faults `spec` counts, as [`FaultPlan::draw`] draws them but
/// shrinkable: up to `worker_crashes` worker crashes, each with its restart
/// after up to `max_down`; up to `broker_restarts` broker restarts and
/// `broker_stops` broker stops (each down for up to `max_down`); up to
/// `partitions` partitions of a worker or a client (each for up to
/// `max_down`). Counts are maxima, so that a failing case shrinks to fewer
/// faults. Every fault names a peer the spec has and comes at a time in
/// `0..=spec.span`; a restart that would come later comes at the end of
/// the span.
///
/// For a plan of any faults, collect [`timed_fault`]s:
///
/// ```
/// use std::time::Duration;
/// use mdp_testkit::strategies::timed_fault;
/// use mdp_testkit::{DrawSpec, FaultPlan};
/// use proptest::prelude::*;
///
/// let spec = DrawSpec::new(Duration::from_secs(5), 2, 1);
/// let plans = proptest::collection::vec(timed_fault(&spec), 0..8).prop_map(|faults| FaultPlan { faults });
/// # let _ = plans;
/// ```
pub fn fault_plan(spec: &DrawSpec) -> impl Strategy<Value = FaultPlan> {
    let (span, max_down) = (spec.span, spec.max_down);
    let count = |n: u32, peers: usize| if peers == 0 { 0 } else { n as usize };
    let (workers, brokers, nodes) = (spec.workers.max(1), spec.brokers.max(1), spec.workers + spec.clients);
    let crash = (duration(span), 0..workers, duration(max_down))
        .prop_map(move |(at, j, down)| [(at, Fault::CrashWorker(j)), ((at + down).min(span), Fault::RestartWorker(j))]);
    let restart = (duration(span), 0..brokers).prop_map(|(at, b)| (at, Fault::RestartBroker(b)));
    let stop = (duration(span), 0..brokers, duration(max_down))
        .prop_map(|(at, broker, down_for)| (at, Fault::StopBroker { broker, down_for }));
    let partition = (duration(span), node(spec), duration(max_down))
        .prop_map(|(at, node, duration)| (at, Fault::Partition { node, duration }));
    (
        vec(crash, 0..=count(spec.worker_crashes, spec.workers)),
        vec(restart, 0..=count(spec.broker_restarts, spec.brokers)),
        vec(stop, 0..=count(spec.broker_stops, spec.brokers)),
        vec(partition, 0..=count(spec.partitions, nodes)),
    )
        .prop_map(|(crashes, restarts, stops, partitions)| {
            let mut faults: Vec<(Duration, Fault)> = crashes.into_iter().flatten().collect();
            faults.extend(restarts);
            faults.extend(stops);
            faults.extend(partitions);
            FaultPlan { faults }
        })
}
