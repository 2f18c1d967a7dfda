//! libzmq's `ZMQ_FD` in tokio's reactor: the one place where a socket meets
//! tokio. The rules that make it work are in the module docs of
//! [`async_tokio`](super); this file keeps the registration's lifetime
//! inside the socket's.

use std::future::Future;
use std::os::fd::{AsRawFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::time::Sleep;

use crate::socket::Connection;
use crate::AdapterError;

/// A socket's `ZMQ_FD`, borrowed: libzmq owns the descriptor (it is the
/// socket's mailbox signal) and closes it with the socket, so the
/// [`AsyncFd`] around it must go first. [`Watch`] makes sure it does.
struct ZmqFd(RawFd);

impl AsRawFd for ZmqFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// tokio's registrations of one [`Connection`]'s two sockets: the DEALER
/// and the PAIR on its monitor.
///
/// **Lifetime.** A `Watch` must be dropped before the connection's
/// sockets are closed or replaced ([`Connection::replace`]), or tokio would
/// deregister a descriptor libzmq has closed, and perhaps already reused for
/// something else. Every owner keeps it in a field declared *before* the
/// connection (fields drop in order) and drops it by hand before calling
/// `replace`; then it makes a new one for the new sockets.
///
/// That is the safety condition of `AsyncFd::register_with_interest`, the
/// one `unsafe` call of this crate (tokio deprecated the safe
/// `with_interest` because it cannot check it): the descriptor stays open
/// and the same while the `AsyncFd` lives, which the field order and the
/// drop before `replace` guarantee.
pub(crate) struct Watch {
    socket: AsyncFd<ZmqFd>,
    monitor: AsyncFd<ZmqFd>,
}

/// Which of a connection's sockets tokio saw signal since the last look.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Signalled {
    /// The DEALER: messages, or room to send.
    pub(crate) socket: bool,
    /// The monitor: a connection event.
    pub(crate) monitor: bool,
}

impl Watch {
    /// Registers both sockets of `conn` with the current runtime's reactor.
    /// Must run inside a tokio runtime with IO enabled; outside one, or in
    /// one without IO, tokio panics, and that becomes
    /// [`AdapterError::NoRuntime`] (after the panic hook has printed
    /// tokio's message, which says what is missing).
    pub(crate) fn new(conn: &Connection) -> Result<Watch, AdapterError> {
        let fd = |socket: &zmq::Socket| socket.get_fd().map_err(AdapterError::zmq("get ZMQ_FD"));
        let (socket, monitor) = (fd(&conn.socket)?, fd(conn.monitor())?);
        let register = |fd| {
            // ZMQ_FD only ever becomes readable: libzmq writes to it when a
            // command reaches the socket's mailbox.
            #[allow(unsafe_code)]
            // SAFETY: `fd` is the open ZMQ_FD of a socket the `Connection`
            // owns, and it stays open and the same until the `Watch` holding
            // this registration is dropped, which every owner does before
            // the socket is closed or replaced (see `Watch`).
            let registered = unsafe { AsyncFd::register_with_interest(ZmqFd(fd), Interest::READABLE) };
            registered.map_err(|e| AdapterError::Zmq {
                what: "register ZMQ_FD with tokio".into(),
                source: io_to_zmq(&e.into_parts().1),
            })
        };
        let socket = in_runtime(|| register(socket))??;
        let monitor = in_runtime(|| register(monitor))??;
        Ok(Watch { socket, monitor })
    }

    /// Which sockets signalled since the last look, clearing tokio's
    /// readiness of each and registering `cx` for the next signal.
    ///
    /// The caller must then go over each socket that signalled *until
    /// `ZMQ_EVENTS` says there is nothing to do* ([`settle`]): clearing
    /// first and checking after means a signal that comes in between is
    /// either seen by that check or wakes the task again. A reactor that is
    /// gone (the runtime shutting down) counts as a signal: the caller
    /// looks, finds the sockets as they are, and the task ends with the
    /// runtime.
    pub(crate) fn poll(&self, cx: &mut Context<'_>) -> Signalled {
        Signalled { socket: poll_fd(&self.socket, cx), monitor: poll_fd(&self.monitor, cx) }
    }
}

/// Whether `fd` was ready; clears it and registers `cx`. Loops because
/// `clear_ready` keeps readiness that arrived after the guard was made: the
/// next `poll_read_ready` then says Ready again, and Pending only once
/// nothing new came, which is what registers the waker.
fn poll_fd(fd: &AsyncFd<ZmqFd>, cx: &mut Context<'_>) -> bool {
    let mut ready = false;
    // Bounded: a signal that keeps arriving is looked at by the caller.
    for _ in 0..4 {
        match fd.poll_read_ready(cx) {
            Poll::Ready(Ok(mut guard)) => {
                guard.clear_ready();
                ready = true;
            }
            Poll::Ready(Err(_)) => return true,
            Poll::Pending => return ready,
        }
    }
    // Still ready after four clears: make sure the task runs again.
    cx.waker().wake_by_ref();
    true
}

/// One connection as [`settle`] sees it: the sockets, and what to do with
/// what comes from them.
pub(crate) trait Driven {
    /// The connection.
    fn conn(&mut self) -> &mut Connection;
    /// Receives until `EAGAIN`, handing each message to the core and
    /// acting on what the core asks (sends, a replaced connection). May
    /// stop early because the reader of these messages fell behind:
    /// [`Next::Paused`].
    fn read(&mut self) -> Result<Next, AdapterError>;
    /// The monitor reported the end of the connection: tell the core.
    fn lost(&mut self) -> Result<Next, AdapterError>;
}

/// Goes over one connection until its `ZMQ_EVENTS` says there is nothing
/// to do: no input (unless reading is paused), no room for messages held
/// back, no monitor event. This is the rule that keeps an edge-triggered
/// `ZMQ_FD` from leaving a task asleep with messages waiting: a signal is
/// consumed by *any* operation on the socket (a send or a receive reads
/// libzmq's mailbox), so whoever touched the socket last must look at
/// `ZMQ_EVENTS` before anyone sleeps on the descriptor.
///
/// `monitor`: whether the monitor signalled (or is new), so must be read.
/// Stops at once if the connection was replaced ([`Next::Replaced`]): the
/// caller makes a [`Watch`] for the new sockets and settles them.
pub(crate) fn settle(d: &mut impl Driven, mut monitor: bool) -> Result<Next, AdapterError> {
    loop {
        if monitor {
            if d.conn().read_monitor() && d.lost()? == Next::Replaced {
                return Ok(Next::Replaced);
            }
            // An event that came while reading shows as POLLIN: read again.
            let events = d.conn().monitor().get_events().map_err(AdapterError::zmq("monitor ZMQ_EVENTS"))?;
            monitor = events.contains(zmq::POLLIN);
        }
        d.conn().flush_backlog()?;
        let reading = match d.read()? {
            Next::Replaced => return Ok(Next::Replaced),
            Next::Paused => false,
            Next::Same => true,
        };
        let conn = d.conn();
        let events = conn.socket.get_events().map_err(AdapterError::zmq("ZMQ_EVENTS"))?;
        let more_in = reading && events.contains(zmq::POLLIN);
        let more_out = conn.has_backlog() && events.contains(zmq::POLLOUT);
        if !more_in && !more_out && !monitor {
            return Ok(if reading { Next::Same } else { Next::Paused });
        }
    }
}

/// What became of a connection during [`settle`] or one of its callbacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Still the same sockets; all read.
    Same,
    /// Still the same sockets, but the caller stopped reading them for now
    /// (a reader fell behind); what is left waits in libzmq.
    Paused,
    /// The connection was replaced: its [`Watch`] is gone, and the new
    /// sockets need one, then a pass of their own.
    Replaced,
}

/// A timer for the core's next deadline, reset only when it moves.
pub(crate) struct Timer {
    sleep: Pin<Box<Sleep>>,
    armed: Option<Instant>,
}

impl Timer {
    /// A timer not yet set. Needs the runtime's time driver, like
    /// [`Watch::new`].
    pub(crate) fn new() -> Result<Timer, AdapterError> {
        let sleep = in_runtime(|| Box::pin(tokio::time::sleep_until(tokio::time::Instant::now())))?;
        Ok(Timer { sleep, armed: None })
    }

    /// The deadline it is set for.
    pub(crate) fn armed(&self) -> Option<Instant> {
        self.armed
    }

    /// Whether `deadline` (the core's `poll_timeout`) has come; if not,
    /// `cx` is woken when it does. `None`: no deadline, nothing to wait for.
    pub(crate) fn poll(&mut self, deadline: Option<Instant>, cx: &mut Context<'_>) -> bool {
        let Some(at) = deadline else {
            self.armed = None;
            return false;
        };
        if self.armed != Some(at) {
            self.armed = Some(at);
            self.sleep.as_mut().reset(tokio::time::Instant::from_std(at));
        }
        self.sleep.as_mut().poll(cx).is_ready()
    }
}

/// `f`, which needs a tokio runtime with IO and time: tokio's panic when
/// there is none becomes [`AdapterError::NoRuntime`].
fn in_runtime<T>(f: impl FnOnce() -> T) -> Result<T, AdapterError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(AdapterError::NoRuntime);
    }
    catch_unwind(AssertUnwindSafe(f)).map_err(|_| AdapterError::NoRuntime)
}

/// An IO error from tokio's registration as the closest libzmq error, so
/// that it fits [`AdapterError::Zmq`] (its message names the operation).
fn io_to_zmq(e: &std::io::Error) -> zmq::Error {
    match e.raw_os_error() {
        Some(errno) => zmq::Error::from_raw(errno),
        None => zmq::Error::EINVAL,
    }
}
