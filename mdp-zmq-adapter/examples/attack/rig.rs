//! What the attack program and the memory test share: an `mdp-broker`
//! process with given limits, its resident memory, the documented bound for
//! those limits, an echo worker, a normal client, and raw DEALER sockets that
//! send whatever an attacker likes.
//!
//! `tests/memory.rs` includes this file with `#[path]`.
#![allow(dead_code)] // each includer uses part of it
#![allow(clippy::disallowed_methods)] // stands in for the application, which reads the clock

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mdp_core::{BrokerConfig, ClientConfig, Dialect, PeerCommand, WorkerConfig};
use mdp_zmq_adapter::{Client, StopHandle, Worker};

/// A free loopback port: bind to port 0, read it, release it.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The broker limits an `mdp-broker` is started with, and the bound on its
/// memory that `BrokerConfig::max_queued_bytes` documents for them.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_queued_bytes: usize,
    pub max_queued_bytes_per_service: usize,
    pub max_queue_total: usize,
    pub max_queue_per_service: usize,
    pub max_workers: usize,
    pub max_services: usize,
    pub max_service_name_bytes: usize,
    pub max_message_bytes: usize,
    pub max_message_frames: usize,
}

/// Longest identity libzmq gives a peer.
const MAX_IDENTITY: u64 = 255;

impl Limits {
    /// `mdp-broker`'s defaults, which are `BrokerConfig`'s.
    pub fn defaults() -> Self {
        let c = BrokerConfig::default();
        Limits {
            max_queued_bytes: c.max_queued_bytes,
            max_queued_bytes_per_service: c.max_queued_bytes_per_service,
            max_queue_total: c.max_queue_total,
            max_queue_per_service: c.max_queue_per_service,
            max_workers: c.max_workers,
            max_services: c.max_services,
            max_service_name_bytes: c.max_service_name_bytes,
            max_message_bytes: c.max_message_bytes,
            max_message_frames: c.max_message_frames,
        }
    }

    /// The command-line flags that set these limits.
    pub fn args(&self) -> Vec<String> {
        let flags = [
            ("--max-queued-bytes", self.max_queued_bytes),
            ("--max-queued-bytes-per-service", self.max_queued_bytes_per_service),
            ("--max-queue-total", self.max_queue_total),
            ("--max-queue-per-service", self.max_queue_per_service),
            ("--max-workers", self.max_workers),
            ("--max-services", self.max_services),
            ("--max-service-name-bytes", self.max_service_name_bytes),
            ("--max-message-bytes", self.max_message_bytes),
            ("--max-message-frames", self.max_message_frames),
        ];
        flags.iter().flat_map(|(flag, n)| [flag.to_string(), n.to_string()]).collect()
    }

    /// The most the broker core can hold for these limits, as
    /// `BrokerConfig::max_queued_bytes` writes it: the byte budget, a
    /// request record per request queued or at a worker, a worker record
    /// per worker, a service record per service, and the message in hand.
    pub fn core_bound(&self) -> u64 {
        let n = |x: usize| x as u64;
        n(self.max_queued_bytes)
            + (n(self.max_queue_total) + n(self.max_workers)) * 1024
            + n(self.max_workers) * (512 + MAX_IDENTITY)
            + n(self.max_services) * (1024 + n(self.max_service_name_bytes))
            + n(self.max_message_bytes)
            + n(BrokerConfig::FRAME_OVERHEAD) * n(self.max_message_frames)
    }
}

/// An `mdp-broker` process, killed when dropped.
pub struct BrokerProcess {
    child: Child,
    pub endpoint: String,
}

impl BrokerProcess {
    /// Starts `bin` on a free loopback port with `args` (e.g.
    /// [`Limits::args`]), its log thrown away (it warns once per message a
    /// limit drops).
    pub fn start(bin: &str, args: &[String]) -> Self {
        let endpoint = format!("tcp://127.0.0.1:{}", free_port());
        let child = Command::new(bin)
            .args(["-b", &endpoint])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let broker = BrokerProcess { child, endpoint };
        broker.wait_until_up();
        broker
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A field of `/proc/PID/status` in bytes (`VmRSS`, `VmHWM`).
    pub fn status_bytes(&self, field: &str) -> u64 {
        status_bytes(self.pid(), field).unwrap_or_else(|| panic!("no {field} for broker {}", self.pid()))
    }

    /// Resident memory now.
    pub fn rss(&self) -> u64 {
        self.status_bytes("VmRSS")
    }

    /// The most resident memory the process has had.
    pub fn peak_rss(&self) -> u64 {
        self.status_bytes("VmHWM")
    }

    /// Waits until the broker answers an MMI request.
    fn wait_until_up(&self) {
        let socket = dealer(&self.endpoint, 1000);
        let deadline = Instant::now() + Duration::from_secs(20);
        send(&socket, &request_frames("mmi.service", &[b"x"]));
        loop {
            if socket.poll(zmq::POLLIN, 100).unwrap() > 0 {
                socket.recv_multipart(0).unwrap();
                return;
            }
            assert!(Instant::now() < deadline, "mdp-broker did not come up on {}", self.endpoint);
        }
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A field of `/proc/PID/status` (given in kB there) in bytes.
pub fn status_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    let kb: u64 = line[field.len() + 1..].trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024)
}

/// Samples a process's `VmRSS` every few milliseconds until stopped, and
/// keeps the largest.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    max: Arc<AtomicU64>,
    handle: Option<JoinHandle<()>>,
}

impl RssSampler {
    pub fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let max = Arc::new(AtomicU64::new(0));
        let handle = {
            let (stop, max) = (stop.clone(), max.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(rss) = status_bytes(pid, "VmRSS") {
                        max.fetch_max(rss, Ordering::Relaxed);
                    }
                    thread::sleep(Duration::from_millis(5));
                }
            })
        };
        RssSampler { stop, max, handle: Some(handle) }
    }

    /// The largest `VmRSS` seen so far.
    pub fn max(&self) -> u64 {
        self.max.load(Ordering::Relaxed)
    }

    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.join().unwrap();
        }
        self.max()
    }
}

/// A raw DEALER connected to `endpoint` that queues at most `sndhwm`
/// messages in its own process (so the attacker's memory stays small).
pub fn dealer(endpoint: &str, sndhwm: i32) -> zmq::Socket {
    let ctx = zmq::Context::new();
    let socket = ctx.socket(zmq::DEALER).unwrap();
    socket.set_linger(0).unwrap();
    socket.set_sndhwm(sndhwm).unwrap();
    socket.connect(endpoint).unwrap();
    socket
}

/// The frames of an RFC 18 REQUEST.
pub fn request_frames(service: &str, body: &[&[u8]]) -> Vec<Bytes> {
    let body = body.iter().map(|b| Bytes::copy_from_slice(b)).collect();
    PeerCommand::Request { service: Bytes::copy_from_slice(service.as_bytes()), body }.encode(Dialect::V02).unwrap()
}

/// Sends one message, blocking while the socket's pipe is full.
pub fn send(socket: &zmq::Socket, frames: &[Bytes]) {
    socket.send_multipart(frames.iter().map(|f| f.as_ref()), 0).unwrap();
}

/// Sends a REQUEST whose body is `body`, without copying it into frames
/// first (bodies of megabytes, sent a thousand times).
pub fn send_request(socket: &zmq::Socket, service: &str, body: &[u8]) {
    socket.send("MDPC02", zmq::SNDMORE).unwrap();
    socket.send([0x01u8].as_slice(), zmq::SNDMORE).unwrap();
    socket.send(service, zmq::SNDMORE).unwrap();
    socket.send(body, 0).unwrap();
}

/// Waits until the broker has read everything `socket` sent before: an MMI
/// request goes after it on the same connection, and its answer comes back
/// only once the broker has read what was ahead of it. Replies to earlier
/// requests that arrive meanwhile are read and dropped.
pub fn barrier(socket: &zmq::Socket, limit: Duration) {
    send(socket, &request_frames("mmi.service", &[b"barrier"]));
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if socket.poll(zmq::POLLIN, 50).unwrap() > 0 {
            let frames = socket.recv_multipart(0).unwrap();
            if frames.get(2).is_some_and(|s| s == b"mmi.service") {
                return;
            }
        }
    }
    panic!("the broker did not answer the barrier within {limit:?}");
}

/// An echo worker for `service`, on its own thread, until the flag is set.
pub fn echo_worker(endpoint: &str, service: &'static str) -> (StopHandle, JoinHandle<()>) {
    let worker =
        Worker::connect(endpoint, WorkerConfig::new(Bytes::from_static(service.as_bytes()), Dialect::V02)).unwrap();
    let stop = worker.stop_handle();
    (stop, thread::spawn(move || worker.run(|body, _| body).unwrap()))
}

/// What a normal client saw.
#[derive(Debug, Default, Clone, Copy)]
pub struct Served {
    pub answered: u64,
    pub failed: u64,
    pub slowest: Duration,
}

/// A client that asks `service` for an echo, one request at a time, until
/// stopped; every answer must be its own request's body.
pub struct NormalClient {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Served>>,
    answered: Arc<AtomicU64>,
}

impl NormalClient {
    pub fn start(endpoint: &str, service: &'static str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let mut client = Client::connect(endpoint, ClientConfig::new(Dialect::V02)).unwrap();
        let handle = {
            let (stop, answered) = (stop.clone(), answered.clone());
            thread::spawn(move || {
                let mut served = Served::default();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let body = vec![Bytes::from(format!("normal {i}"))];
                    let sent = Instant::now();
                    match client.request(service, body.clone(), Duration::from_secs(10)) {
                        Ok(reply) if reply == body => {
                            served.answered += 1;
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => served.failed += 1,
                    }
                    served.slowest = served.slowest.max(sent.elapsed());
                    i += 1;
                    thread::sleep(Duration::from_millis(2));
                }
                served
            })
        };
        NormalClient { stop, handle: Some(handle), answered }
    }

    /// Answers so far.
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    pub fn stop(mut self) -> Served {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().map(|h| h.join().unwrap()).unwrap_or_default()
    }
}

/// Bytes as MiB, for printing.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}
