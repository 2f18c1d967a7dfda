//! The in-memory network between the brokers and their peers, with seeded
//! faults (after str0m's `netem` and firezone's `BufferedTransmits`).
//!
//! Every client or worker *connection* has a [`PeerId`], as a ROUTER socket
//! would see it, and goes to one broker, by its index
//! ([`Net::broker_of`]). Ids are never reused, not even across brokers: a
//! reconnect opens a new connection with a new id, and whatever was in
//! flight to or from the old one is dropped, as ZeroMQ does when a socket
//! is closed. (A connection to broker `b > 0` has `@b` at the end of its
//! id, for reading logs; the ids of broker 0's connections are what they
//! were when the network had one broker.)
//!
//! A connection belongs to a [`Node`], a simulated process. A client with
//! several lanes has one connection per lane, all of the one
//! [`Node::Client`], and a worker process serving several brokers one per
//! broker, all of the one [`Node::Worker`]: the faults of a node (its
//! [`Link`], its partitions, [`Net::drop_next`]) hit every connection of
//! that process, to every broker, as a host's network would hit every
//! socket of a process on it, while order is kept per connection, so
//! messages on different connections of one process overtake each other.
//!
//! Each broker goes down and comes back on its own
//! ([`Net::broker_restarted`]): what is in flight to or from it is lost,
//! the other brokers' connections are not touched.
//!
//! # What the faults model
//!
//! ZeroMQ over TCP keeps each connection's messages in order and never
//! duplicates them, and MDP relies on that: it has no request ids, so a
//! client matches replies to requests by order alone. The faults here are
//! therefore of two kinds.
//!
//! *Transport faults* ZeroMQ can show, which mdp-rs must survive:
//!
//! * **latency and jitter** per link, with per-connection order kept (a
//!   delayed message holds back the ones behind it, as TCP does), so
//!   messages on *different* connections overtake each other;
//! * **reordering**: a message is held back by up to
//!   [`Faults::reorder_delay`] (a TCP retransmission), delaying its
//!   connection but not the others;
//! * **loss** per link ([`Link::loss`], or [`Net::drop_next`] for a chosen
//!   message): a ROUTER whose pipe to a peer is full drops what it sends
//!   there, and the mdp-zmq-adapter then moves on. Loss in the middle of a
//!   connection that carries several requests for one service would break
//!   order-based matching (the next reply taken for the lost one's), but
//!   mdp-rs's client keeps at most one request per service on each lane, so
//!   on its links a loss costs a timeout and a resend, never a wrong answer;
//!   tests put loss on client links as on worker links. (A raw client,
//!   [`Node::Raw`], has no retries: a loss on its link loses a request for
//!   good, so tests keep its link clean.)
//! * **partitions**: a node is cut off for a time window; what it sends or
//!   is sent meanwhile is held and arrives, in order, when the partition
//!   heals, as TCP does for an outage shorter than its retransmission
//!   timeout. Peers that hear nothing for their liveness window give up on
//!   each other meanwhile;
//! * **ghost requests**: a client REQUEST is also delivered from a
//!   connection that is already closed, as when a client gave up on a
//!   request, reconnected and resent it while the broker still held the
//!   first copy. The broker serves both; the ghost's answer goes nowhere.
//!
//! *Faults ZeroMQ never shows* ([`Faults::duplicate`] and turning off
//! [`Faults::fifo`]): duplication and reordering *within* one connection.
//! Under them MDP cannot be correct (a duplicated reply is taken for the
//! answer to the next request); they exist so a test can show that the
//! invariant checker notices.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mdp_core::{BrokerCommand, Multipart, PeerCommand, PeerId};

use crate::rng::Rng;

/// A simulated process other than a broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Node {
    /// The client with this index.
    Client(usize),
    /// The worker with this index.
    Worker(usize),
    /// The raw client with this index: a peer that pipelines requests on
    /// one connection without mdp-rs's client (see
    /// [`Sim::add_raw_client`](crate::Sim::add_raw_client)).
    Raw(usize),
    /// The closed connection a ghost request comes from.
    Ghost,
}

/// Which way a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    /// From a client or worker to the connection's broker.
    ToBroker,
    /// From the connection's broker to a client or worker.
    FromBroker,
}

/// One node's link to the brokers, the same both ways and to each broker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    /// The fixed part of the one-way delay.
    pub latency: Duration,
    /// A random extra delay in `0..=jitter`, drawn per message.
    pub jitter: Duration,
    /// Probability that a message is lost (see the [module docs](self)).
    pub loss: f64,
}

impl Link {
    /// A lossless link with this latency and jitter.
    pub fn new(latency: Duration, jitter: Duration) -> Self {
        Link { latency, jitter, loss: 0.0 }
    }

    /// This link, losing messages with probability `loss`.
    pub fn lossy(self, loss: f64) -> Self {
        Link { loss, ..self }
    }

    /// The longest one-way delay without reordering.
    pub fn max_delay(&self) -> Duration {
        self.latency + self.jitter
    }
}

impl Default for Link {
    /// 1 ms, no jitter.
    fn default() -> Self {
        Link::new(Duration::from_millis(1), Duration::ZERO)
    }
}

/// Seeded faults, applied to every message sent (loss is per [`Link`]).
/// See the [module docs](self).
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// Probability that a message is held back by up to `reorder_delay`.
    pub reorder: f64,
    /// The longest hold-back of a reordered message.
    pub reorder_delay: Duration,
    /// Probability that a client REQUEST is also delivered from a ghost
    /// connection.
    pub ghost_requests: f64,
    /// Probability that a message is delivered twice, the copy at its own
    /// time, out of order. **ZeroMQ never does this.**
    pub duplicate: f64,
    /// Keep each connection's messages in order (as TCP does). `false`
    /// lets a held-back message be overtaken on its own connection too.
    /// **ZeroMQ never does that.**
    pub fifo: bool,
}

impl Default for Faults {
    /// No faults.
    fn default() -> Self {
        Faults {
            reorder: 0.0,
            reorder_delay: Duration::from_millis(50),
            ghost_requests: 0.0,
            duplicate: 0.0,
            fifo: true,
        }
    }
}

/// A message in flight.
#[derive(Debug, Clone)]
pub struct Packet {
    /// When it arrives.
    pub at: Instant,
    seq: u64,
    /// The client or worker connection it is from or to.
    pub peer: PeerId,
    /// Which way it goes.
    pub dir: Dir,
    /// The frames.
    pub frames: Multipart,
    /// The incarnation of the connection's broker it was sent to or from.
    epoch: u64,
}

impl PartialEq for Packet {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Packet {}
impl PartialOrd for Packet {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Packet {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[derive(Debug)]
struct Conn {
    node: Node,
    /// The broker it goes to.
    broker: usize,
    open: bool,
    /// After closing: still deliver what it sent before (a crashed process's
    /// last messages are on the wire already).
    deliver_sent: bool,
}

/// What the network did, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Messages handed to the network.
    pub sent: u64,
    /// Messages delivered (duplicates included).
    pub delivered: u64,
    /// Messages lost to [`Link::loss`] or [`Net::drop_next`].
    pub lost: u64,
    /// Messages dropped because their connection was closed.
    pub dropped_closed: u64,
    /// Messages held back by a partition.
    pub held: u64,
    /// Messages dropped because their broker was down or restarted.
    pub dropped_broker: u64,
    /// Messages held back by [`Faults::reorder`].
    pub reordered: u64,
    /// Messages delivered twice ([`Faults::duplicate`]).
    pub duplicated: u64,
    /// Ghost requests delivered ([`Faults::ghost_requests`]).
    pub ghosts: u64,
    /// PARTIALs lost, either way. While this is zero, every streamed
    /// answer must arrive whole.
    pub lost_partials: u64,
}

/// What the network knows of one broker.
#[derive(Debug, Clone, Copy)]
struct BrokerLink {
    /// Counts its restarts: a message sent to or from an older incarnation
    /// is lost.
    epoch: u64,
    up: bool,
}

/// The network. See the [module docs](self).
#[derive(Debug)]
pub struct Net {
    rng: Rng,
    /// The faults applied from now on; change them at any time.
    pub faults: Faults,
    default_link: Link,
    links: HashMap<Node, Link>,
    queue: BinaryHeap<Reverse<Packet>>,
    next_seq: u64,
    /// Arrival time of the last message per (connection, direction), to keep
    /// each connection in order.
    last_at: HashMap<(PeerId, Dir), Instant>,
    conns: HashMap<PeerId, Conn>,
    next_conn: u64,
    cut: HashMap<Node, Instant>,
    /// Per broker: its incarnation and whether it is up.
    brokers: Vec<BrokerLink>,
    drop_next: HashMap<Node, u32>,
    stats: NetStats,
}

impl Net {
    /// An empty network to `brokers` brokers (at least one), all up;
    /// `link` is every node's link unless set otherwise.
    pub fn new(seed: u64, link: Link, faults: Faults, brokers: usize) -> Self {
        Net {
            rng: Rng::new(seed),
            faults,
            default_link: link,
            links: HashMap::new(),
            queue: BinaryHeap::new(),
            next_seq: 0,
            last_at: HashMap::new(),
            conns: HashMap::new(),
            next_conn: 0,
            cut: HashMap::new(),
            brokers: vec![BrokerLink { epoch: 0, up: true }; brokers.max(1)],
            drop_next: HashMap::new(),
            stats: NetStats::default(),
        }
    }

    /// Counts so far.
    pub fn stats(&self) -> NetStats {
        self.stats
    }

    /// Messages in flight.
    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }

    /// Sets `node`'s link.
    pub fn set_link(&mut self, node: Node, link: Link) {
        self.links.insert(node, link);
    }

    /// `node`'s link.
    pub fn link(&self, node: Node) -> Link {
        self.links.get(&node).copied().unwrap_or(self.default_link)
    }

    /// The longest one-way delay of any link, reordering aside.
    pub fn max_delay(&self) -> Duration {
        self.links.values().chain([&self.default_link]).map(Link::max_delay).max().unwrap_or_default()
    }

    /// How many brokers the network reaches.
    pub fn brokers(&self) -> usize {
        self.brokers.len()
    }

    /// Opens a new connection from `node` to broker `broker` and returns its id.
    ///
    /// # Panics
    ///
    /// If the network has no such broker.
    pub fn connect(&mut self, node: Node, broker: usize) -> PeerId {
        assert!(broker < self.brokers.len(), "no broker {broker}: the network has {}", self.brokers.len());
        let n = self.next_conn;
        self.next_conn += 1;
        let mut name = match node {
            Node::Client(i) => format!("c{i}#{n}"),
            Node::Worker(i) => format!("w{i}#{n}"),
            Node::Raw(i) => format!("r{i}#{n}"),
            Node::Ghost => format!("ghost#{n}"),
        };
        if broker > 0 {
            name.push_str(&format!("@{broker}"));
        }
        let id = PeerId(Bytes::from(name));
        self.conns.insert(id.clone(), Conn { node, broker, open: true, deliver_sent: false });
        id
    }

    /// The broker a connection goes to.
    pub fn broker_of(&self, peer: &PeerId) -> Option<usize> {
        self.conns.get(peer).map(|c| c.broker)
    }

    /// Closes a connection. Messages to it are dropped from now on; messages
    /// from it still in flight are dropped too unless `deliver_sent`.
    pub fn close(&mut self, peer: &PeerId, deliver_sent: bool) {
        if let Some(c) = self.conns.get_mut(peer) {
            c.open = false;
            c.deliver_sent = deliver_sent;
        }
        self.last_at.remove(&(peer.clone(), Dir::FromBroker));
    }

    /// Whether `peer` is an open connection.
    pub fn is_open(&self, peer: &PeerId) -> bool {
        self.conns.get(peer).is_some_and(|c| c.open)
    }

    /// The node a connection belongs to.
    pub fn node_of(&self, peer: &PeerId) -> Option<Node> {
        self.conns.get(peer).map(|c| c.node)
    }

    /// Cuts `node` off every broker until `until`: what it sends or is sent
    /// meanwhile arrives after `until`.
    pub fn partition(&mut self, node: Node, until: Instant) {
        self.cut.insert(node, until);
    }

    /// Whether `node` is cut off at `now`.
    pub fn is_cut(&self, node: Node, now: Instant) -> bool {
        self.cut.get(&node).is_some_and(|&until| now < until)
    }

    /// Heals every partition.
    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Replaces the faults applied to messages sent from now on (messages
    /// already in flight keep theirs).
    pub fn set_faults(&mut self, faults: Faults) {
        self.faults = faults;
    }

    /// Loses the next `n` messages sent to or from `node`, whatever they are.
    pub fn drop_next(&mut self, node: Node, n: u32) {
        *self.drop_next.entry(node).or_default() += n;
    }

    /// Forgets every pending [`drop_next`](Self::drop_next).
    pub fn clear_drop_next(&mut self) {
        self.drop_next.clear();
    }

    /// Broker `broker` went down (`up == false`) or a new one came up in
    /// its place: every connection to the old one breaks, so everything in
    /// flight to or from it is lost. The other brokers' connections are not
    /// touched.
    ///
    /// # Panics
    ///
    /// If the network has no such broker.
    pub fn broker_restarted(&mut self, broker: usize, up: bool) {
        let b = &mut self.brokers[broker];
        b.epoch += 1;
        b.up = up;
        let conns = &self.conns;
        self.last_at.retain(|(peer, _), _| conns.get(peer).is_some_and(|c| c.broker != broker));
    }

    /// Whether broker `broker` is up, as far as the network goes.
    pub fn broker_is_up(&self, broker: usize) -> bool {
        self.brokers.get(broker).is_some_and(|b| b.up)
    }

    /// Sends `frames` on connection `peer` in direction `dir`, applying the faults.
    pub fn send(&mut self, now: Instant, peer: PeerId, dir: Dir, frames: Multipart) {
        self.stats.sent += 1;
        let Some(conn) = self.conns.get(&peer) else {
            self.stats.dropped_closed += 1;
            return;
        };
        let (node, broker) = (conn.node, conn.broker);
        if !conn.open {
            self.stats.dropped_closed += 1;
            return;
        }
        if !self.brokers[broker].up {
            self.stats.dropped_broker += 1;
            return;
        }
        let link = self.link(node);
        let chosen = self.drop_next.get_mut(&node).filter(|n| **n > 0).map(|n| *n -= 1).is_some();
        if chosen || self.rng.chance(link.loss) {
            self.stats.lost += 1;
            self.count_lost_partial(dir, &frames);
            return;
        }
        if dir == Dir::ToBroker && node != Node::Ghost && self.rng.chance(self.faults.ghost_requests) {
            self.ghost(now, broker, &frames);
        }
        let mut at = now + link.latency + self.rng.duration(link.jitter);
        if self.rng.chance(self.faults.reorder) {
            self.stats.reordered += 1;
            at += self.rng.duration(self.faults.reorder_delay);
        }
        if let Some(&until) = self.cut.get(&node).filter(|&&until| now < until) {
            self.stats.held += 1;
            at = at.max(until);
        }
        if self.faults.fifo {
            let last = self.last_at.entry((peer.clone(), dir)).or_insert(at);
            at = at.max(*last);
            *last = at;
        }
        if self.rng.chance(self.faults.duplicate) {
            self.stats.duplicated += 1;
            let copy_at = at + self.rng.duration(self.faults.reorder_delay + link.max_delay());
            self.push(copy_at, peer.clone(), broker, dir, frames.clone());
        }
        self.push(at, peer, broker, dir, frames);
    }

    /// A copy of a client REQUEST to `broker` from a connection that closes
    /// at once.
    fn ghost(&mut self, now: Instant, broker: usize, frames: &Multipart) {
        if !matches!(PeerCommand::decode(frames.clone()), Ok((_, PeerCommand::Request { .. }))) {
            return;
        }
        self.stats.ghosts += 1;
        let ghost = self.connect(Node::Ghost, broker);
        self.close(&ghost, true);
        let at = now + self.default_link.latency + self.rng.duration(self.faults.reorder_delay);
        self.push(at, ghost, broker, Dir::ToBroker, frames.clone());
    }

    fn push(&mut self, at: Instant, peer: PeerId, broker: usize, dir: Dir, frames: Multipart) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let epoch = self.brokers[broker].epoch;
        self.queue.push(Reverse(Packet { at, seq, peer, dir, frames, epoch }));
    }

    fn count_lost_partial(&mut self, dir: Dir, frames: &Multipart) {
        let partial = match dir {
            Dir::ToBroker => matches!(PeerCommand::decode(frames.clone()), Ok((_, PeerCommand::Partial { .. }))),
            Dir::FromBroker => matches!(BrokerCommand::decode(frames.clone()), Ok((_, BrokerCommand::Partial { .. }))),
        };
        self.stats.lost_partials += u64::from(partial);
    }

    /// When the next message arrives (it may turn out to be dropped then).
    pub fn next_at(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse(p)| p.at)
    }

    /// The next message due at `now` that survives to be delivered. Messages
    /// whose connection closed or whose broker is gone (down, or restarted
    /// since they were sent) are dropped on the way; those of a node cut
    /// off meanwhile wait for the partition to heal.
    pub fn pop_due(&mut self, now: Instant) -> Option<Packet> {
        while self.queue.peek().is_some_and(|Reverse(p)| p.at <= now) {
            let Reverse(p) = self.queue.pop()?;
            // Connections are never forgotten, so every packet's is known.
            let Some(conn) = self.conns.get(&p.peer) else {
                self.stats.dropped_closed += 1;
                continue;
            };
            let broker = self.brokers[conn.broker];
            if p.epoch != broker.epoch || !broker.up {
                self.stats.dropped_broker += 1;
                continue;
            }
            let deliverable = conn.open || (p.dir == Dir::ToBroker && conn.deliver_sent);
            if !deliverable {
                self.stats.dropped_closed += 1;
                continue;
            }
            if let Some(&until) = self.cut.get(&conn.node).filter(|&&until| now < until) {
                // Later messages of this connection are due no earlier, so
                // order is kept: they are held back behind this one.
                self.stats.held += 1;
                self.queue.push(Reverse(Packet { at: until, ..p }));
                continue;
            }
            self.stats.delivered += 1;
            return Some(p);
        }
        None
    }
}
