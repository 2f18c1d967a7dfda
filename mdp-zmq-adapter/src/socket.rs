//! What the client and the worker share: a DEALER connection to the broker
//! that can be replaced when the core asks for it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mdp_core::Multipart;

use crate::curve::CurveClient;
use crate::message::{recv_message, send_message, Sent};
use crate::AdapterError;

/// Most messages held back while the socket's pipe is full.
const MAX_BACKLOG: usize = 10_000;

/// How long a socket closed after its last words (a worker's FINAL and
/// DISCONNECT) may still take to hand them to the broker. Sockets are made
/// with linger 0 so that a replaced connection drops what was meant for the
/// old one; a worker that leaves wants the opposite, or the broker misses
/// its DISCONNECT and keeps dispatching to it until its heartbeats expire.
pub(crate) const CLOSING_LINGER_MS: i32 = 500;

/// How often the socket monitor is read. It is not in the poll set: every
/// socket polled costs each wake-up a few system calls (libzmq checks its
/// mailbox), and a lost connection is rare, so it is enough to notice it
/// within a poll or two.
const MONITOR_PERIOD: Duration = Duration::from_millis(50);

/// A DEALER socket connected to one broker endpoint.
pub(crate) struct Connection {
    ctx: zmq::Context,
    endpoint: String,
    pub(crate) socket: zmq::Socket,
    /// The other end of the socket's libzmq monitor: it reports when an
    /// established TCP connection to the broker ends (`DISCONNECTED`), which
    /// libzmq otherwise hides by redialling.
    monitor: zmq::Socket,
    /// When [`lost`](Self::lost) next reads the monitor.
    monitor_due: Instant,
    /// CURVE settings, for this socket and every replacement.
    curve: Option<CurveClient>,
    /// Whether a CURVE handshake with the broker ever succeeded on this
    /// connection or one it replaced: if not, a wrong server key (or our key
    /// not being allowed) is the likely cause of silence.
    pub(crate) handshaken: bool,
    /// Messages the socket could not take yet (its pipe was full). A lost
    /// FINAL would leave the broker holding our request for ever, so they
    /// wait here, in order, and go out when the socket can take them.
    backlog: VecDeque<Multipart>,
}

impl Connection {
    pub(crate) fn open(ctx: &zmq::Context, endpoint: &str, curve: Option<CurveClient>) -> Result<Self, AdapterError> {
        let (socket, monitor) = dealer(ctx, endpoint, curve.as_ref())?;
        let (ctx, endpoint, monitor_due) = (ctx.clone(), endpoint.to_owned(), Instant::now());
        let backlog = VecDeque::new();
        Ok(Connection { ctx, endpoint, socket, monitor, monitor_due, curve, handshaken: false, backlog })
    }

    /// Lets what the socket still holds go out after it is closed, for up
    /// to [`CLOSING_LINGER_MS`]: for a worker's last messages.
    pub(crate) fn linger_on_close(&self) {
        if let Err(e) = self.socket.set_linger(CLOSING_LINGER_MS) {
            tracing::debug!(error = %e, "set LINGER");
        }
    }

    /// Whether CURVE is on and no handshake with the broker has succeeded.
    pub(crate) fn never_handshaken(&self) -> bool {
        self.curve.is_some() && !self.handshaken
    }

    /// Closes the socket and opens a new one: a new identity, so nothing
    /// meant for the old one can reach the core (the contract of
    /// [`mdp_core::PeerTransmit::Reconnect`]). What the old socket had not
    /// sent yet was meant for the old connection and goes with it.
    pub(crate) fn replace(&mut self) -> Result<(), AdapterError> {
        (self.socket, self.monitor) = dealer(&self.ctx, &self.endpoint, self.curve.as_ref())?;
        self.backlog.clear();
        Ok(())
    }

    /// Whether the monitor reported that the socket's connection to the
    /// broker ended since it was last read. Reads every pending event
    /// without blocking, at most every [`MONITOR_PERIOD`]; `false` between.
    pub(crate) fn lost(&mut self, now: Instant) -> bool {
        if now < self.monitor_due {
            return false;
        }
        self.monitor_due = now + MONITOR_PERIOD;
        self.read_monitor()
    }

    /// Whether the monitor reported that the socket's connection to the
    /// broker ended since it was last read: reads every pending event now,
    /// without blocking. (The tokio adapter calls it when the monitor's
    /// `ZMQ_FD` signals, instead of [`lost`](Self::lost)'s period.)
    pub(crate) fn read_monitor(&mut self) -> bool {
        let mut lost = false;
        // An event is two frames: 2 bytes of event number and 4 of value,
        // then the endpoint.
        while let Ok(frames) = self.monitor.recv_multipart(zmq::DONTWAIT) {
            let event = frames.first().and_then(|f| f.get(..2)).map(|b| u16::from_le_bytes([b[0], b[1]]));
            lost |= event == Some(zmq::SocketEvent::DISCONNECTED as u16);
            self.handshaken |= event == Some(zmq::SocketEvent::HANDSHAKE_SUCCEEDED as u16);
        }
        lost
    }

    /// Sends without blocking, after anything held back.
    pub(crate) fn send(&mut self, frames: Multipart) -> Result<(), AdapterError> {
        if self.backlog.len() >= MAX_BACKLOG {
            tracing::warn!(endpoint = %self.endpoint, "send backlog full; message dropped");
            return Ok(());
        }
        self.backlog.push_back(frames);
        self.flush_backlog()
    }

    /// Whether messages wait for room in the socket's pipe.
    pub(crate) fn has_backlog(&self) -> bool {
        !self.backlog.is_empty()
    }

    /// Sends what is held back, waiting up to [`CLOSING_LINGER_MS`] for
    /// room: for a worker's last messages (a FINAL, the DISCONNECT) before
    /// it closes, which the linger alone would not send, since libzmq has
    /// not taken them yet. Blocks; what is left after that is dropped with
    /// the socket.
    pub(crate) fn drain_backlog(&mut self) -> Result<(), AdapterError> {
        let deadline = Instant::now() + Duration::from_millis(CLOSING_LINGER_MS.unsigned_abs().into());
        self.flush_backlog()?;
        while self.has_backlog() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!(endpoint = %self.endpoint, held = self.backlog.len(), "closing with messages unsent");
                break;
            }
            let ms = i64::try_from(left.as_millis()).unwrap_or(i64::MAX).max(1);
            self.socket.poll(zmq::POLLOUT, ms).map_err(AdapterError::zmq("poll"))?;
            self.flush_backlog()?;
        }
        Ok(())
    }

    /// Sends what it can of the backlog, in order.
    pub(crate) fn flush_backlog(&mut self) -> Result<(), AdapterError> {
        while let Some(frames) = self.backlog.front() {
            if !send_now(&self.socket, frames)? {
                return Ok(());
            }
            self.backlog.pop_front();
        }
        Ok(())
    }

    /// The poll events to wait for: input, and room to send if held back.
    pub(crate) fn events(&self) -> zmq::PollEvents {
        if self.backlog.is_empty() {
            zmq::POLLIN
        } else {
            zmq::POLLIN | zmq::POLLOUT
        }
    }

    /// The monitor's PAIR socket, whose `ZMQ_FD` the tokio adapter watches.
    #[cfg(all(feature = "tokio", unix))]
    pub(crate) fn monitor(&self) -> &zmq::Socket {
        &self.monitor
    }

    /// One message without blocking.
    pub(crate) fn try_recv(&self) -> Result<Option<Multipart>, AdapterError> {
        recv_message(&self.socket).map_err(AdapterError::zmq("recv"))
    }
}

/// Sends one message if the socket takes it now; `false` if its pipe is
/// full (a DEALER refuses nothing else).
fn send_now(socket: &zmq::Socket, frames: &Multipart) -> Result<bool, AdapterError> {
    match send_message(socket, frames.iter().map(|f| f.as_ref())) {
        Ok(Sent::All) => Ok(true),
        Ok(Sent::Refused(zmq::Error::EAGAIN)) => Ok(false),
        Ok(Sent::Refused(e)) | Err(e) => Err(AdapterError::zmq("send")(e)),
    }
}

/// A DEALER connected to `endpoint`, and a PAIR on its monitor.
fn dealer(
    ctx: &zmq::Context,
    endpoint: &str,
    curve: Option<&CurveClient>,
) -> Result<(zmq::Socket, zmq::Socket), AdapterError> {
    let socket = ctx.socket(zmq::DEALER).map_err(AdapterError::zmq("socket(DEALER)"))?;
    socket.set_linger(0).map_err(AdapterError::zmq("set LINGER"))?;
    let mut events = zmq::SocketEvent::DISCONNECTED as i32;
    if let Some(curve) = curve {
        curve.apply(&socket)?;
        events |= zmq::SocketEvent::HANDSHAKE_SUCCEEDED as i32;
    }
    let address = format!("inproc://mdp-monitor-{}", next_monitor());
    socket.monitor(&address, events).map_err(AdapterError::zmq("monitor"))?;
    let monitor = ctx.socket(zmq::PAIR).map_err(AdapterError::zmq("socket(PAIR)"))?;
    monitor.set_linger(0).map_err(AdapterError::zmq("set LINGER"))?;
    monitor.connect(&address).map_err(AdapterError::zmq(format!("connect {address}")))?;
    socket.connect(endpoint).map_err(AdapterError::zmq(format!("connect {endpoint}")))?;
    Ok((socket, monitor))
}

/// Unique names for the monitors of the DEALERs of one process.
fn next_monitor() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
