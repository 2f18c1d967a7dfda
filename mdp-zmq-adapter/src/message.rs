//! Sending and receiving one multipart message without blocking: the part
//! the broker's ROUTER and the DEALERs of the client and the worker share.

use bytes::Bytes;
use mdp_core::Multipart;

/// How a send without blocking ended, when libzmq raised no other error.
pub(crate) enum Sent {
    /// The whole message was taken.
    All,
    /// The first frame was refused, so nothing was sent: `EAGAIN` (the
    /// pipe is full) or, on a ROUTER with `ROUTER_MANDATORY`,
    /// `EHOSTUNREACH` (no such peer). The caller decides what that means.
    Refused(zmq::Error),
}

/// Sends `frames` as one message without blocking.
///
/// Only the first frame can be refused: libzmq checks the pipe, and a
/// ROUTER the identity, when a message starts, and once it has taken the
/// first frame it takes the rest. So an error after the first frame is a
/// failure of the socket itself, returned as `Err`.
pub(crate) fn send_message<'a>(
    socket: &zmq::Socket,
    frames: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Sent, zmq::Error> {
    let mut frames = frames.into_iter().peekable();
    let mut first = true;
    while let Some(frame) = frames.next() {
        let more = if frames.peek().is_some() { zmq::SNDMORE } else { 0 };
        match socket.send(frame, zmq::DONTWAIT | more) {
            Ok(()) => first = false,
            Err(e) if first => return Ok(Sent::Refused(e)),
            Err(e) => return Err(e),
        }
    }
    Ok(Sent::All)
}

/// One whole message without blocking, or `None` if there is none.
///
/// libzmq delivers a multipart message whole or not at all, so once its
/// first frame is read the rest are there; a signal between two frames
/// (`EINTR`) leaves them there.
pub(crate) fn recv_message(socket: &zmq::Socket) -> Result<Option<Multipart>, zmq::Error> {
    Ok(recv_message_from(socket, false)?.map(|(frames, _)| frames))
}

/// [`recv_message`], and if `named`, the ZAP User-Id libzmq attached to the
/// message (the name the ZAP handler gave its peer), if any.
pub(crate) fn recv_message_from(socket: &zmq::Socket, named: bool) -> Result<Option<Received>, zmq::Error> {
    let mut frames = Vec::new();
    let mut user = None;
    loop {
        let mut msg = match socket.recv_msg(zmq::DONTWAIT) {
            Ok(msg) => msg,
            Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) if frames.is_empty() => return Ok(None),
            Err(zmq::Error::EINTR) => continue,
            Err(e) => return Err(e),
        };
        if named && user.is_none() {
            // A ROUTER's identity frame is made by the socket and carries no
            // metadata: the User-Id is on the frames that came from the
            // peer. Only a named peer has a non-empty one.
            user = msg.gets("User-Id").filter(|u| !u.is_empty()).map(|u| Bytes::copy_from_slice(u.as_bytes()));
        }
        let more = msg.get_more();
        frames.push(frame(msg));
        if !more {
            return Ok(Some((frames, user)));
        }
    }
}

/// A message's frames, and its peer's ZAP User-Id.
pub(crate) type Received = (Multipart, Option<Bytes>);

/// Frames at least this long are handed to the core without a copy. libzmq's
/// decoder reads frames shorter than its 8 KiB input batch into one shared
/// buffer, and keeping such a frame would keep the whole buffer; a frame of
/// at least 8 KiB never fits there and has an allocation of its own.
const ZERO_COPY_MIN: usize = 8192;

/// A libzmq message as the buffer of a [`Bytes`].
struct Frame(zmq::Message);

impl AsRef<[u8]> for Frame {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// One received frame as `Bytes`: a large one as it is (so a flood of large
/// requests costs the receiving thread no copy, and it keeps ahead of
/// libzmq's reading), a small one copied into a buffer of its own size.
fn frame(msg: zmq::Message) -> Bytes {
    if msg.len() >= ZERO_COPY_MIN {
        Bytes::from_owner(Frame(msg))
    } else {
        Bytes::copy_from_slice(&msg)
    }
}
