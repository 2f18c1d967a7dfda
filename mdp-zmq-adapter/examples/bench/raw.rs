//! The `raw` runs: the ceiling for a one-thread broker on libzmq.
//!
//! * **Proxy** (one thread, one context): a frontend ROUTER for the clients
//!   and a backend ROUTER for the workers, both on 127.0.0.1, with the least
//!   recently used worker queue of the ZeroMQ Guide's load-balancing broker.
//!   It polls the backend always and the frontend only while a worker is
//!   idle. A backend message `[worker, "READY"]` queues the worker; any other
//!   `[worker, client, frames…]` is sent on as `[client, frames…]` to the
//!   frontend and queues the worker again. A frontend message
//!   `[client, frames…]` goes to the worker longest idle as
//!   `[worker, client, frames…]`. Each wake-up drains every readable message.
//!   Frames are moved as `zmq::Message`s, never copied or parsed: no MDP.
//! * **Client** (one thread, its own context, a DEALER): sends the frames
//!   of a client REQUEST in the bench's dialect (RFC 18's `["MDPC02", 0x01,
//!   service, body]` by default; the worker echoes whatever comes),
//!   keeps `depth` of them outstanding (all on the wire: the proxy has no
//!   one-per-service rule), and times each from its send to its reply. The
//!   body's first 8 bytes carry the request's slot, so replies that come
//!   back out of order are matched.
//! * **Worker** (one thread, its own context, a DEALER): sends `READY` once,
//!   then sends every message it gets straight back (`[client, "MDPC02",
//!   0x01, service, body]`, five frames, as an MDP worker's REQUEST and
//!   FINAL have), after sleeping the service time, if any.
//!
//! The client also runs against our broker (`fanout-dealer`), and against
//! another one (`--broker`): what it sends is a real MDP REQUEST.
//!
//! So per request each hop carries as many frames as in MDP/0.2 and the
//! same body; the MDP headers differ by a few bytes.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use mdp_core::Dialect;

use crate::{run_clients, BoxError, Measured, Shared, Spec, Window, BROKER, WORKER};

const POLL_MS: i64 = 100;

pub fn run(spec: &Spec, shared: &Shared, window: &Window, label: &str) -> Result<(Measured, Vec<u64>), BoxError> {
    // The proxy makes its context and sockets on its own thread, so that
    // the context's threads are named after it (see `ProcStats`).
    let servers_stop = Arc::new(AtomicBool::new(false));
    let (endpoints_tx, endpoints_rx) = mpsc::channel();
    let proxy_thread = {
        let stop = servers_stop.clone();
        thread::Builder::new().name(BROKER.into()).spawn(move || -> Result<(), BoxError> {
            let ctx = zmq::Context::new();
            let frontend = router(&ctx)?;
            let backend = router(&ctx)?;
            let front = frontend.get_last_endpoint()?.map_err(|_| "endpoint is not UTF-8")?;
            let back = backend.get_last_endpoint()?.map_err(|_| "endpoint is not UTF-8")?;
            let _ = endpoints_tx.send((front, back));
            Ok(proxy(&frontend, &backend, &stop)?)
        })?
    };
    let Ok((front_ep, back_ep)) = endpoints_rx.recv() else {
        return Err(proxy_thread.join().expect("proxy thread panicked").err().unwrap_or_else(|| "no proxy".into()));
    };
    let mut workers = Vec::new();
    for _ in 0..spec.workers {
        let stop = servers_stop.clone();
        let ep = back_ep.clone();
        let service_time = spec.service_time;
        workers.push(thread::Builder::new().name(WORKER.into()).spawn(move || worker(&ep, &stop, service_time))?);
    }

    let result = run_clients(spec, shared, window, label, || client(spec, &front_ep, shared, Replies::Echoed));

    servers_stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("worker thread panicked")?;
    }
    proxy_thread.join().expect("proxy thread panicked")?;
    result
}

fn router(ctx: &zmq::Context) -> zmq::Result<zmq::Socket> {
    let socket = ctx.socket(zmq::ROUTER)?;
    socket.set_linger(0)?;
    socket.bind("tcp://127.0.0.1:*")?;
    Ok(socket)
}

fn dealer(ctx: &zmq::Context, endpoint: &str) -> zmq::Result<zmq::Socket> {
    let socket = ctx.socket(zmq::DEALER)?;
    socket.set_linger(0)?;
    socket.connect(endpoint)?;
    Ok(socket)
}

/// Waits up to [`POLL_MS`] for input; EINTR is a wake-up.
fn poll(items: &mut [zmq::PollItem<'_>]) -> zmq::Result<()> {
    match zmq::poll(items, POLL_MS) {
        Ok(_) | Err(zmq::Error::EINTR) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Reads one whole message into `parts` without waiting; `false` if none.
fn recv_parts(socket: &zmq::Socket, parts: &mut Vec<zmq::Message>) -> zmq::Result<bool> {
    parts.clear();
    let mut msg = zmq::Message::new();
    match socket.recv(&mut msg, zmq::DONTWAIT) {
        Ok(()) => {}
        Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => return Ok(false),
        Err(e) => return Err(e),
    }
    loop {
        let more = msg.get_more();
        parts.push(msg);
        if !more {
            return Ok(true);
        }
        msg = zmq::Message::new();
        // The rest of a multipart message is there once its first frame is.
        socket.recv(&mut msg, 0)?;
    }
}

/// Sends `parts` as one message, moving each frame (no copy).
fn send_parts(socket: &zmq::Socket, parts: impl ExactSizeIterator<Item = zmq::Message>) -> zmq::Result<()> {
    let last = parts.len().saturating_sub(1);
    for (i, part) in parts.enumerate() {
        socket.send(part, if i == last { 0 } else { zmq::SNDMORE })?;
    }
    Ok(())
}

fn proxy(frontend: &zmq::Socket, backend: &zmq::Socket, stop: &AtomicBool) -> zmq::Result<()> {
    let mut idle: VecDeque<zmq::Message> = VecDeque::new();
    let mut parts = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let front_events = if idle.is_empty() { zmq::PollEvents::empty() } else { zmq::POLLIN };
        poll(&mut [backend.as_poll_item(zmq::POLLIN), frontend.as_poll_item(front_events)])?;
        while recv_parts(backend, &mut parts)? {
            let mut frames = parts.drain(..);
            let Some(worker) = frames.next() else { continue };
            if frames.len() > 1 {
                // [client, frames…]: the reply, on to the client.
                send_parts(frontend, frames)?;
            } else {
                drop(frames); // READY
            }
            idle.push_back(worker);
        }
        while !idle.is_empty() && recv_parts(frontend, &mut parts)? {
            let worker = idle.pop_front().expect("a worker is idle");
            backend.send(worker, zmq::SNDMORE)?;
            send_parts(backend, parts.drain(..))?;
        }
    }
    Ok(())
}

fn worker(endpoint: &str, stop: &AtomicBool, service_time: Duration) -> zmq::Result<()> {
    let ctx = zmq::Context::new();
    let socket = dealer(&ctx, endpoint)?;
    socket.send(&b"READY"[..], 0)?;
    let mut parts = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        poll(&mut [socket.as_poll_item(zmq::POLLIN)])?;
        while recv_parts(&socket, &mut parts)? {
            if !service_time.is_zero() {
                thread::sleep(service_time);
            }
            send_parts(&socket, parts.drain(..))?;
        }
    }
    Ok(())
}

/// A DEALER client with `spec.depth` requests on the wire, matching replies
/// by the slot tag in the body.
pub fn client(spec: &Spec, endpoint: &str, shared: &Shared, replies: Replies) -> Result<Vec<u64>, BoxError> {
    let ctx = zmq::Context::new();
    let socket = dealer(&ctx, endpoint)?;
    let service = spec.service(0);
    let bodies: Vec<Vec<u8>> = (0..spec.depth)
        .map(|slot| {
            let mut body = spec.body().to_vec();
            body[..8].copy_from_slice(&(slot as u64).to_le_bytes());
            body
        })
        .collect();
    let header = request_header(spec.dialect, &service);
    let reply_frames = match replies {
        Replies::Echoed => header.len() + 1,
        Replies::Mdp => MDP_REPLY_FRAMES,
    };
    let send = |slot: usize| -> zmq::Result<()> {
        for frame in &header {
            socket.send(&frame[..], zmq::SNDMORE)?;
        }
        socket.send(&bodies[slot][..], 0)
    };
    let mut sent = vec![Instant::now(); spec.depth];
    for (slot, t) in sent.iter_mut().enumerate() {
        *t = Instant::now();
        send(slot)?;
    }
    let mut samples = Vec::with_capacity(1 << 16);
    let mut parts = Vec::new();
    while !shared.stopped() {
        poll(&mut [socket.as_poll_item(zmq::POLLIN)])?;
        while recv_parts(&socket, &mut parts)? {
            let body = match parts.last() {
                Some(body) if parts.len() == reply_frames && body.len() == spec.size => body,
                _ => {
                    // Cannot happen with these workers; the slot is lost.
                    shared.fail();
                    continue;
                }
            };
            let slot = u64::from_le_bytes(body[..8].try_into().expect("8 bytes")) as usize;
            if slot >= spec.depth {
                shared.fail();
                continue;
            }
            shared.complete(sent[slot].elapsed(), &mut samples);
            sent[slot] = Instant::now();
            send(slot)?;
        }
    }
    Ok(samples)
}

/// The frames of a client REQUEST before its body, as each dialect writes
/// them on a DEALER (see `mdp_core`'s codec): MDP/0.1 and majortomo lead
/// with the empty frame a REQ socket would add, MDP/0.2 has none.
fn request_header(dialect: Dialect, service: &[u8]) -> Vec<Vec<u8>> {
    match dialect {
        Dialect::V01 => vec![vec![], b"MDPC01".to_vec(), service.to_vec()],
        Dialect::V02 => vec![b"MDPC02".to_vec(), vec![0x01], service.to_vec()],
        Dialect::Majortomo => vec![vec![], b"MDPC02".to_vec(), vec![0x02], service.to_vec()],
    }
}

/// What the client's replies look like.
#[derive(Debug, Clone, Copy)]
pub enum Replies {
    /// The raw proxy's workers send the request's own frames back.
    Echoed,
    /// An MDP broker sends a FINAL (or, in MDP/0.1, a REPLY).
    Mdp,
}

/// A one-frame MDP reply has four frames in every dialect: MDP/0.1 `["",
/// MDPC01, service, body]`, MDP/0.2 `[MDPC02, FINAL, service, body]`,
/// majortomo `["", MDPC02, FINAL, body]` (no service frame).
const MDP_REPLY_FRAMES: usize = 4;
