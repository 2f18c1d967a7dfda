//! Frames ⇄ typed commands, for every MDP dialect in use.
//!
//! MDP has two sub-protocols (client and worker) and two directions. This
//! module splits commands by direction, because that is what each role sees:
//!
//! * [`PeerCommand`]: what a client or a worker sends **to the broker**.
//! * [`BrokerCommand`]: what the broker sends **to a client or a worker**.
//!
//! Splitting by direction also resolves the one place where MDP frames are
//! ambiguous: in MDP/0.1 a client REQUEST and the broker's REPLY have the same
//! frames (`""`, `MDPC01`, service, body). [`PeerCommand::decode`] reads them as
//! a request, [`BrokerCommand::decode`] as a reply.
//!
//! Across dialects there is no ambiguity: the leading empty frame and the
//! protocol header (`MDPC01`/`MDPW01`/`MDPC02`/`MDPW02`) always tell them
//! apart, so every frame list decodes to at most one dialect:
//!
//! | first frames            | dialect                |
//! |-------------------------|------------------------|
//! | `""`, `MDPC01`/`MDPW01` | [`Dialect::V01`]       |
//! | `MDPC02`/`MDPW02`       | [`Dialect::V02`]       |
//! | `""`, `MDPC02`/`MDPW02` | [`Dialect::Majortomo`] |
//!
//! Decoding never copies a frame: services, addresses and bodies are
//! [`Bytes`] handles into the frames passed in. It never panics; bad input is
//! a [`DecodeError`] that names the frame, what was expected and what was
//! found.

use std::fmt;

use bytes::Bytes;

/// A multipart message: one [`Bytes`] per frame.
///
/// Any ROUTER identity frame is *not* part of it: the transport strips it on
/// receipt and adds it back on send, and passes it separately as a
/// [`PeerId`](crate::PeerId).
pub type Multipart = Vec<Bytes>;

/// Client sub-protocol header of MDP/0.1.
pub const MDPC01: &[u8] = b"MDPC01";
/// Worker sub-protocol header of MDP/0.1.
pub const MDPW01: &[u8] = b"MDPW01";
/// Client sub-protocol header of MDP/0.2.
pub const MDPC02: &[u8] = b"MDPC02";
/// Worker sub-protocol header of MDP/0.2.
pub const MDPW02: &[u8] = b"MDPW02";

/// The dialects of MDP found in the wild. See `shared/MDP.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dialect {
    /// MDP/0.1 as in RFC 7: a leading empty frame, `MDPC01`/`MDPW01`, one
    /// REPLY per request.
    V01,
    /// MDP/0.2 as RFC 18 writes it: no leading empty frame, streamed
    /// PARTIAL/FINAL replies that carry the service name.
    V02,
    /// MDP/0.2 as majortomo (Python) sends it: the 0.1 leading empty frame,
    /// client REQUEST is `0x02`, replies to clients are PARTIAL `0x03` /
    /// FINAL `0x04` with no service frame; worker commands as in RFC 18.
    Majortomo,
}

impl Dialect {
    /// Every dialect, for tests and for iterating.
    pub const ALL: [Dialect; 3] = [Dialect::V01, Dialect::V02, Dialect::Majortomo];

    /// Whether replies can be streamed as PARTIALs (0.2 in either form).
    pub fn supports_partial(self) -> bool {
        !matches!(self, Dialect::V01)
    }

    /// Whether every message starts with an empty frame.
    fn leading_empty(self) -> bool {
        !matches!(self, Dialect::V02)
    }

    fn client_header(self) -> &'static [u8] {
        match self {
            Dialect::V01 => MDPC01,
            Dialect::V02 | Dialect::Majortomo => MDPC02,
        }
    }

    fn worker_header(self) -> &'static [u8] {
        match self {
            Dialect::V01 => MDPW01,
            Dialect::V02 | Dialect::Majortomo => MDPW02,
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, so that width and alignment flags apply.
        f.pad(match self {
            Dialect::V01 => "MDP/0.1",
            Dialect::V02 => "MDP/0.2",
            Dialect::Majortomo => "MDP/0.2 (majortomo)",
        })
    }
}

/// Command bytes of the worker sub-protocol, per version.
mod wcmd {
    pub const V01_READY: u8 = 0x01;
    pub const V01_REQUEST: u8 = 0x02;
    pub const V01_REPLY: u8 = 0x03;
    pub const V01_HEARTBEAT: u8 = 0x04;
    pub const V01_DISCONNECT: u8 = 0x05;

    pub const V02_READY: u8 = 0x01;
    pub const V02_REQUEST: u8 = 0x02;
    pub const V02_PARTIAL: u8 = 0x03;
    pub const V02_FINAL: u8 = 0x04;
    pub const V02_HEARTBEAT: u8 = 0x05;
    pub const V02_DISCONNECT: u8 = 0x06;
}

/// Command bytes of the client sub-protocol (0.2 only; 0.1 has none).
mod ccmd {
    pub const RFC18_REQUEST: u8 = 0x01;
    pub const RFC18_PARTIAL: u8 = 0x02;
    pub const RFC18_FINAL: u8 = 0x03;

    pub const MAJORTOMO_REQUEST: u8 = 0x02;
    pub const MAJORTOMO_PARTIAL: u8 = 0x03;
    pub const MAJORTOMO_FINAL: u8 = 0x04;
}

/// The name of an MDP command, as the RFCs write it, for events and errors.
/// MDP/0.1's REPLY is [`Final`](Command::Final): the last (in 0.1 the only)
/// part of a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Command {
    /// REQUEST (client to broker, broker to worker).
    Request,
    /// PARTIAL (MDP/0.2 only).
    Partial,
    /// FINAL (MDP/0.2), REPLY (MDP/0.1).
    Final,
    /// READY (worker to broker).
    Ready,
    /// HEARTBEAT (broker and worker).
    Heartbeat,
    /// DISCONNECT (broker and worker).
    Disconnect,
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Command::Request => "REQUEST",
            Command::Partial => "PARTIAL",
            Command::Final => "FINAL",
            Command::Ready => "READY",
            Command::Heartbeat => "HEARTBEAT",
            Command::Disconnect => "DISCONNECT",
        })
    }
}

/// A command sent by a client or a worker to the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerCommand {
    /// Client REQUEST: ask `service` to handle `body` (one or more frames).
    Request {
        /// The service name: opaque, non-empty bytes.
        service: Bytes,
        /// The request body, one or more frames.
        body: Multipart,
    },
    /// Worker READY: register as a worker of `service`.
    Ready {
        /// The service name: opaque, non-empty bytes.
        service: Bytes,
    },
    /// Worker PARTIAL (0.2 only): one streamed part of the reply to `client`.
    Partial {
        /// The client address the broker handed over with the request.
        client: Bytes,
        /// The part's frames (may be empty).
        body: Multipart,
    },
    /// Worker FINAL (0.2) or REPLY (0.1): the last part of the reply.
    Final {
        /// The client address the broker handed over with the request.
        client: Bytes,
        /// The part's frames (may be empty).
        body: Multipart,
    },
    /// Worker HEARTBEAT.
    Heartbeat,
    /// Worker DISCONNECT.
    Disconnect,
}

/// A command sent by the broker to a client or a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerCommand {
    /// PARTIAL to a client (0.2 only): one streamed part of a reply.
    Partial {
        /// The service that answered. Present in MDP/0.2 as RFC 18 writes
        /// it, absent (`None`) in the majortomo dialect, which sends none.
        service: Option<Bytes>,
        /// The part's frames (may be empty).
        body: Multipart,
    },
    /// FINAL (0.2) or REPLY (0.1) to a client: the last part of a reply.
    Final {
        /// The service that answered: `Some` in MDP/0.1 and RFC 18, `None` in
        /// the majortomo dialect.
        service: Option<Bytes>,
        /// The part's frames (may be empty).
        body: Multipart,
    },
    /// REQUEST to a worker, on behalf of the client at `client`.
    Request {
        /// The client's address; the worker echoes it in its reply.
        client: Bytes,
        /// The request body, one or more frames.
        body: Multipart,
    },
    /// HEARTBEAT to a worker.
    Heartbeat,
    /// DISCONNECT to a worker.
    Disconnect,
}

/// A frame's content as shown in an error: hex-escaped, cut after 32 bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Found(pub Bytes);

impl fmt::Debug for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 32;
        f.write_str("\"")?;
        for &b in self.0.iter().take(SHOWN) {
            write!(f, "{}", std::ascii::escape_default(b))?;
        }
        if self.0.len() > SHOWN {
            write!(f, "…\" ({} bytes)", self.0.len())
        } else {
            f.write_str("\"")
        }
    }
}

/// Why a multipart message is not a valid MDP command.
///
/// Frame indexes count from 0 and do not include the ROUTER identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The message has no frames at all.
    #[error("empty message: expected an MDP command")]
    Empty,
    /// The message ended before a frame the command needs.
    #[error("frame {index} missing: expected {expected}, but the message ends before it")]
    Missing {
        /// Index of the missing frame.
        index: usize,
        /// What that frame should have held.
        expected: &'static str,
    },
    /// A frame holds something other than what the command needs there.
    #[error("frame {index}: expected {expected}, found {found}")]
    Unexpected {
        /// Index of the wrong frame.
        index: usize,
        /// What that frame should have held.
        expected: &'static str,
        /// What it held.
        found: Found,
    },
    /// The command byte is not one this dialect and direction define.
    #[error("frame {index}: unknown {dialect} command {found} (expected {expected})")]
    UnknownCommand {
        /// Index of the command frame.
        index: usize,
        /// The dialect recognised from the header.
        dialect: Dialect,
        /// The command frame as found.
        found: Found,
        /// The commands allowed there.
        expected: &'static str,
    },
    /// The service name frame is empty.
    #[error("frame {index}: empty service name")]
    EmptyService {
        /// Index of the service frame.
        index: usize,
    },
    /// The command takes a fixed number of frames and got more.
    #[error("{command} takes {expected} frames, found {found}")]
    TrailingFrames {
        /// The command.
        command: Command,
        /// How many frames it takes.
        expected: usize,
        /// How many the message had.
        found: usize,
    },
}

/// Why a command cannot be written in a dialect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// PARTIAL does not exist in MDP/0.1.
    #[error("{0} has no PARTIAL command")]
    NoPartial(Dialect),
    /// The dialect carries a service frame in replies and none was given.
    #[error("{0} replies carry a service name, but none was given")]
    MissingService(Dialect),
    /// The majortomo dialect carries no service frame in replies.
    #[error("{0} replies carry no service name, but one was given")]
    UnexpectedService(Dialect),
    /// A REQUEST needs at least one body frame.
    #[error("a REQUEST needs at least one body frame")]
    EmptyBody,
    /// Service names must not be empty.
    #[error("empty service name")]
    EmptyService,
}

/// Which sub-protocol a header names.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sub {
    Client,
    Worker,
}

/// Reads frames front to back, keeping track of the index for errors.
struct Reader {
    frames: Multipart,
    pos: usize,
}

impl Reader {
    fn next(&mut self, expected: &'static str) -> Result<Bytes, DecodeError> {
        match self.frames.get_mut(self.pos) {
            Some(frame) => {
                self.pos += 1;
                Ok(std::mem::take(frame))
            }
            None => Err(DecodeError::Missing { index: self.pos, expected }),
        }
    }

    fn empty(&mut self, expected: &'static str) -> Result<(), DecodeError> {
        let index = self.pos;
        let frame = self.next(expected)?;
        if frame.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Unexpected { index, expected, found: Found(frame) })
        }
    }

    fn service(&mut self) -> Result<Bytes, DecodeError> {
        let index = self.pos;
        let frame = self.next("service name")?;
        if frame.is_empty() {
            Err(DecodeError::EmptyService { index })
        } else {
            Ok(frame)
        }
    }

    /// Reads a one-byte command frame.
    fn command(&mut self) -> Result<(usize, Bytes), DecodeError> {
        let index = self.pos;
        let frame = self.next("command byte")?;
        Ok((index, frame))
    }

    /// The remaining frames, without copying them. They are swapped to the
    /// front rather than drained there: the header frames behind them are
    /// empty or small, and a body is usually one frame.
    fn rest(mut self) -> Multipart {
        let body = self.frames.len().saturating_sub(self.pos);
        for i in 0..body {
            self.frames.swap(i, self.pos + i);
        }
        self.frames.truncate(body);
        self.frames
    }

    /// The remaining frames, of which there must be at least one.
    fn body(self) -> Result<Multipart, DecodeError> {
        if self.pos >= self.frames.len() {
            return Err(DecodeError::Missing { index: self.pos, expected: "request body (1 or more frames)" });
        }
        Ok(self.rest())
    }

    /// The message must end here.
    fn end(&self, command: Command) -> Result<(), DecodeError> {
        if self.frames.len() > self.pos {
            Err(DecodeError::TrailingFrames { command, expected: self.pos, found: self.frames.len() })
        } else {
            Ok(())
        }
    }

    /// `client address`, `""`, then the rest as the body.
    fn addressed(mut self, body_required: bool) -> Result<(Bytes, Multipart), DecodeError> {
        let client = self.next("client address")?;
        self.empty("empty delimiter after the client address")?;
        let body = if body_required { self.body()? } else { self.rest() };
        Ok((client, body))
    }
}

/// Reads the leading frames and tells the dialect and sub-protocol.
fn header(frames: Multipart) -> Result<(Dialect, Sub, Reader), DecodeError> {
    const EXPECTED_FIRST: &str = "an empty frame (MDP/0.1, majortomo) or MDPC02/MDPW02 (MDP/0.2)";
    const EXPECTED_AFTER_EMPTY: &str = "MDPC01, MDPW01, MDPC02 or MDPW02";
    // The first frame is only looked at: it stays in place and goes with the
    // rest of the header when the body is taken.
    let Some(first) = frames.first() else {
        return Err(DecodeError::Empty);
    };
    if !first.is_empty() {
        let sub = match first.as_ref() {
            MDPC02 => Sub::Client,
            MDPW02 => Sub::Worker,
            _ => {
                let found = Found(first.clone());
                return Err(DecodeError::Unexpected { index: 0, expected: EXPECTED_FIRST, found });
            }
        };
        return Ok((Dialect::V02, sub, Reader { frames, pos: 1 }));
    }
    let mut r = Reader { frames, pos: 1 };
    let head = r.next(EXPECTED_AFTER_EMPTY)?;
    let (dialect, sub) = match head.as_ref() {
        MDPC01 => (Dialect::V01, Sub::Client),
        MDPW01 => (Dialect::V01, Sub::Worker),
        MDPC02 => (Dialect::Majortomo, Sub::Client),
        MDPW02 => (Dialect::Majortomo, Sub::Worker),
        _ => {
            let found = Found(head);
            return Err(DecodeError::Unexpected { index: 1, expected: EXPECTED_AFTER_EMPTY, found });
        }
    };
    Ok((dialect, sub, r))
}

fn one_byte(index: usize, frame: &Bytes, dialect: Dialect, expected: &'static str) -> Result<u8, DecodeError> {
    match frame.as_ref() {
        [b] => Ok(*b),
        _ => Err(DecodeError::UnknownCommand { index, dialect, found: Found(frame.clone()), expected }),
    }
}

fn unknown(index: usize, frame: Bytes, dialect: Dialect, expected: &'static str) -> DecodeError {
    DecodeError::UnknownCommand { index, dialect, found: Found(frame), expected }
}

/// Reads the header, then hands the rest to the sub-protocol's decoder
/// (worker commands get their command frame already read).
fn decode_with<T>(
    frames: Multipart,
    client: fn(Dialect, Reader) -> Result<T, DecodeError>,
    worker: fn(Dialect, usize, Bytes, Reader) -> Result<T, DecodeError>,
) -> Result<(Dialect, T), DecodeError> {
    let (dialect, sub, mut r) = header(frames)?;
    let command = match sub {
        Sub::Client => client(dialect, r)?,
        Sub::Worker => {
            let (index, frame) = r.command()?;
            worker(dialect, index, frame, r)?
        }
    };
    Ok((dialect, command))
}

impl PeerCommand {
    /// Which command this is.
    pub fn command(&self) -> Command {
        match self {
            PeerCommand::Request { .. } => Command::Request,
            PeerCommand::Ready { .. } => Command::Ready,
            PeerCommand::Partial { .. } => Command::Partial,
            PeerCommand::Final { .. } => Command::Final,
            PeerCommand::Heartbeat => Command::Heartbeat,
            PeerCommand::Disconnect => Command::Disconnect,
        }
    }

    /// Decodes a message sent to the broker, and tells the dialect it is in.
    pub fn decode(frames: Multipart) -> Result<(Dialect, PeerCommand), DecodeError> {
        decode_with(frames, Self::decode_client, Self::decode_worker)
    }

    fn decode_client(dialect: Dialect, mut r: Reader) -> Result<PeerCommand, DecodeError> {
        let expected_request = match dialect {
            Dialect::V01 => None,
            Dialect::V02 => Some((ccmd::RFC18_REQUEST, "REQUEST (0x01)")),
            Dialect::Majortomo => Some((ccmd::MAJORTOMO_REQUEST, "REQUEST (0x02)")),
        };
        if let Some((byte, expected)) = expected_request {
            let (index, frame) = r.command()?;
            if one_byte(index, &frame, dialect, expected)? != byte {
                return Err(unknown(index, frame, dialect, expected));
            }
        }
        let service = r.service()?;
        let body = r.body()?;
        Ok(PeerCommand::Request { service, body })
    }

    fn decode_worker(dialect: Dialect, index: usize, frame: Bytes, r: Reader) -> Result<PeerCommand, DecodeError> {
        use wcmd::*;
        let v01 = dialect == Dialect::V01;
        let expected = if v01 {
            "READY, REPLY, HEARTBEAT or DISCONNECT (0x01, 0x03-0x05)"
        } else {
            "READY, PARTIAL, FINAL, HEARTBEAT or DISCONNECT (0x01, 0x03-0x06)"
        };
        let byte = one_byte(index, &frame, dialect, expected)?;
        let cmd = match (v01, byte) {
            (true, V01_READY) | (false, V02_READY) => Self::ready(r)?,
            (true, V01_REPLY) | (false, V02_FINAL) => {
                let (client, body) = r.addressed(false)?;
                PeerCommand::Final { client, body }
            }
            (false, V02_PARTIAL) => {
                let (client, body) = r.addressed(false)?;
                PeerCommand::Partial { client, body }
            }
            (true, V01_HEARTBEAT) | (false, V02_HEARTBEAT) => {
                r.end(Command::Heartbeat)?;
                PeerCommand::Heartbeat
            }
            (true, V01_DISCONNECT) | (false, V02_DISCONNECT) => {
                r.end(Command::Disconnect)?;
                PeerCommand::Disconnect
            }
            _ => return Err(unknown(index, frame, dialect, expected)),
        };
        Ok(cmd)
    }

    fn ready(mut r: Reader) -> Result<PeerCommand, DecodeError> {
        let service = r.service()?;
        r.end(Command::Ready)?;
        Ok(PeerCommand::Ready { service })
    }

    /// Encodes this command in `dialect`.
    ///
    /// Fails for a command the dialect cannot express (PARTIAL in MDP/0.1), a
    /// REQUEST with no body, or an empty service name.
    pub fn encode(self, dialect: Dialect) -> Result<Multipart, EncodeError> {
        use wcmd::*;
        let v01 = dialect == Dialect::V01;
        let mut out = Vec::new();
        match self {
            PeerCommand::Request { service, body } => {
                check_service(&service)?;
                if body.is_empty() {
                    return Err(EncodeError::EmptyBody);
                }
                let head_len = start_len(dialect) + usize::from(dialect != Dialect::V01) + 1;
                return Ok(prepend(body, head_len, |out| {
                    start(out, dialect, Sub::Client);
                    match dialect {
                        Dialect::V01 => {}
                        Dialect::V02 => out.push(byte(ccmd::RFC18_REQUEST)),
                        Dialect::Majortomo => out.push(byte(ccmd::MAJORTOMO_REQUEST)),
                    }
                    out.push(service);
                }));
            }
            PeerCommand::Ready { service } => {
                check_service(&service)?;
                start(&mut out, dialect, Sub::Worker);
                out.push(byte(if v01 { V01_READY } else { V02_READY }));
                out.push(service);
            }
            PeerCommand::Partial { client, body } => {
                if v01 {
                    return Err(EncodeError::NoPartial(dialect));
                }
                return Ok(addressed(dialect, V02_PARTIAL, client, body));
            }
            PeerCommand::Final { client, body } => {
                return Ok(addressed(dialect, if v01 { V01_REPLY } else { V02_FINAL }, client, body));
            }
            PeerCommand::Heartbeat => {
                start(&mut out, dialect, Sub::Worker);
                out.push(byte(if v01 { V01_HEARTBEAT } else { V02_HEARTBEAT }));
            }
            PeerCommand::Disconnect => {
                start(&mut out, dialect, Sub::Worker);
                out.push(byte(if v01 { V01_DISCONNECT } else { V02_DISCONNECT }));
            }
        }
        Ok(out)
    }
}

impl BrokerCommand {
    /// Which command this is.
    pub fn command(&self) -> Command {
        match self {
            BrokerCommand::Partial { .. } => Command::Partial,
            BrokerCommand::Final { .. } => Command::Final,
            BrokerCommand::Request { .. } => Command::Request,
            BrokerCommand::Heartbeat => Command::Heartbeat,
            BrokerCommand::Disconnect => Command::Disconnect,
        }
    }

    /// Decodes a message sent by the broker, and tells the dialect it is in.
    pub fn decode(frames: Multipart) -> Result<(Dialect, BrokerCommand), DecodeError> {
        decode_with(frames, Self::decode_client, Self::decode_worker)
    }

    fn decode_client(dialect: Dialect, mut r: Reader) -> Result<BrokerCommand, DecodeError> {
        let partial = match dialect {
            Dialect::V01 => false,
            Dialect::V02 | Dialect::Majortomo => {
                let (partial_byte, final_byte, expected) = if dialect == Dialect::V02 {
                    (ccmd::RFC18_PARTIAL, ccmd::RFC18_FINAL, "PARTIAL or FINAL (0x02, 0x03)")
                } else {
                    (ccmd::MAJORTOMO_PARTIAL, ccmd::MAJORTOMO_FINAL, "PARTIAL or FINAL (0x03, 0x04)")
                };
                let (index, frame) = r.command()?;
                match one_byte(index, &frame, dialect, expected)? {
                    b if b == partial_byte => true,
                    b if b == final_byte => false,
                    _ => return Err(unknown(index, frame, dialect, expected)),
                }
            }
        };
        let service = match dialect {
            Dialect::Majortomo => None,
            Dialect::V01 | Dialect::V02 => Some(r.service()?),
        };
        let body = r.rest();
        Ok(if partial { BrokerCommand::Partial { service, body } } else { BrokerCommand::Final { service, body } })
    }

    fn decode_worker(dialect: Dialect, index: usize, frame: Bytes, r: Reader) -> Result<BrokerCommand, DecodeError> {
        use wcmd::*;
        let v01 = dialect == Dialect::V01;
        let expected = if v01 {
            "REQUEST, HEARTBEAT or DISCONNECT (0x02, 0x04, 0x05)"
        } else {
            "REQUEST, HEARTBEAT or DISCONNECT (0x02, 0x05, 0x06)"
        };
        let byte = one_byte(index, &frame, dialect, expected)?;
        let cmd = match (v01, byte) {
            (true, V01_REQUEST) | (false, V02_REQUEST) => {
                let (client, body) = r.addressed(true)?;
                BrokerCommand::Request { client, body }
            }
            (true, V01_HEARTBEAT) | (false, V02_HEARTBEAT) => {
                r.end(Command::Heartbeat)?;
                BrokerCommand::Heartbeat
            }
            (true, V01_DISCONNECT) | (false, V02_DISCONNECT) => {
                r.end(Command::Disconnect)?;
                BrokerCommand::Disconnect
            }
            _ => return Err(unknown(index, frame, dialect, expected)),
        };
        Ok(cmd)
    }

    /// Encodes this command in `dialect`.
    ///
    /// Fails for a command the dialect cannot express: PARTIAL in MDP/0.1, a
    /// reply without a service name in MDP/0.1 or RFC 18, a reply with one in
    /// the majortomo dialect, or a REQUEST with no body.
    pub fn encode(self, dialect: Dialect) -> Result<Multipart, EncodeError> {
        use wcmd::*;
        let v01 = dialect == Dialect::V01;
        let mut out = Vec::new();
        match self {
            BrokerCommand::Partial { service, body } => {
                let command = match dialect {
                    Dialect::V01 => return Err(EncodeError::NoPartial(dialect)),
                    Dialect::V02 => ccmd::RFC18_PARTIAL,
                    Dialect::Majortomo => ccmd::MAJORTOMO_PARTIAL,
                };
                return client_reply(dialect, Some(command), service, body);
            }
            BrokerCommand::Final { service, body } => {
                let command = match dialect {
                    Dialect::V01 => None,
                    Dialect::V02 => Some(ccmd::RFC18_FINAL),
                    Dialect::Majortomo => Some(ccmd::MAJORTOMO_FINAL),
                };
                return client_reply(dialect, command, service, body);
            }
            BrokerCommand::Request { client, body } => {
                if body.is_empty() {
                    return Err(EncodeError::EmptyBody);
                }
                return Ok(addressed(dialect, if v01 { V01_REQUEST } else { V02_REQUEST }, client, body));
            }
            BrokerCommand::Heartbeat => {
                start(&mut out, dialect, Sub::Worker);
                out.push(byte(if v01 { V01_HEARTBEAT } else { V02_HEARTBEAT }));
            }
            BrokerCommand::Disconnect => {
                start(&mut out, dialect, Sub::Worker);
                out.push(byte(if v01 { V01_DISCONNECT } else { V02_DISCONNECT }));
            }
        }
        Ok(out)
    }
}

fn check_service(service: &Bytes) -> Result<(), EncodeError> {
    if service.is_empty() {
        Err(EncodeError::EmptyService)
    } else {
        Ok(())
    }
}

/// A one-byte command frame, without allocating.
fn byte(b: u8) -> Bytes {
    const TABLE: [u8; 8] = [0, 1, 2, 3, 4, 5, 6, 7];
    match TABLE.get(usize::from(b)) {
        Some(_) => Bytes::from_static(&TABLE[usize::from(b)..usize::from(b) + 1]),
        None => Bytes::copy_from_slice(&[b]),
    }
}

/// Pushes the optional empty frame and the protocol header.
fn start(out: &mut Multipart, dialect: Dialect, sub: Sub) {
    if dialect.leading_empty() {
        out.push(Bytes::new());
    }
    out.push(Bytes::from_static(match sub {
        Sub::Client => dialect.client_header(),
        Sub::Worker => dialect.worker_header(),
    }));
}

/// Writes the frames `head` pushes in front of `body`, in `body`'s buffer when
/// it has room. A decoded message leaves its header's slots free in front of
/// its body, so re-addressing it (a worker's FINAL becoming a client's reply)
/// needs no allocation.
fn prepend(mut body: Multipart, head_len: usize, head: impl FnOnce(&mut Multipart)) -> Multipart {
    if body.capacity() - body.len() < head_len {
        // No room: one new buffer of the exact size, as a growth would
        // reallocate anyway.
        let mut out = Vec::with_capacity(head_len + body.len());
        head(&mut out);
        debug_assert_eq!(out.len(), head_len, "head_len is the number of frames head pushes");
        out.append(&mut body);
        return out;
    }
    let len = body.len();
    head(&mut body);
    debug_assert_eq!(body.len(), len + head_len, "head_len is the number of frames head pushes");
    body.rotate_right(head_len);
    body
}

/// Frames `start` pushes.
fn start_len(dialect: Dialect) -> usize {
    usize::from(dialect.leading_empty()) + 1
}

/// Header, command, client address, empty delimiter, body.
fn addressed(dialect: Dialect, command: u8, client: Bytes, body: Multipart) -> Multipart {
    prepend(body, start_len(dialect) + 3, |out| {
        start(out, dialect, Sub::Worker);
        out.push(byte(command));
        out.push(client);
        out.push(Bytes::new());
    })
}

/// The REQUEST the broker sends a worker, in one allocation. The body is
/// borrowed: the broker keeps it to re-queue the request if the worker is
/// lost, so the frames are cloned (reference counts, not bytes).
pub(crate) fn worker_request(dialect: Dialect, client: Bytes, body: &[Bytes]) -> Multipart {
    debug_assert!(!body.is_empty(), "a REQUEST has a body");
    let command = if dialect == Dialect::V01 { wcmd::V01_REQUEST } else { wcmd::V02_REQUEST };
    let mut out = Vec::with_capacity(start_len(dialect) + 3 + body.len());
    start(&mut out, dialect, Sub::Worker);
    out.push(byte(command));
    out.push(client);
    out.push(Bytes::new());
    out.extend_from_slice(body);
    out
}

fn client_reply(
    dialect: Dialect,
    command: Option<u8>,
    service: Option<Bytes>,
    body: Multipart,
) -> Result<Multipart, EncodeError> {
    let service = match (dialect, service) {
        (Dialect::Majortomo, None) => None,
        (Dialect::Majortomo, Some(_)) => return Err(EncodeError::UnexpectedService(dialect)),
        (_, None) => return Err(EncodeError::MissingService(dialect)),
        (_, Some(service)) => {
            check_service(&service)?;
            Some(service)
        }
    };
    let head_len = start_len(dialect) + usize::from(command.is_some()) + usize::from(service.is_some());
    Ok(prepend(body, head_len, |out| {
        start(out, dialect, Sub::Client);
        if let Some(command) = command {
            out.push(byte(command));
        }
        out.extend(service);
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(parts: &[&[u8]]) -> Multipart {
        parts.iter().map(|p| Bytes::copy_from_slice(p)).collect()
    }

    #[test]
    fn body_is_not_copied() {
        let body = Bytes::from(vec![7u8; 100]);
        let input = vec![Bytes::from_static(MDPC02), byte(1), Bytes::from_static(b"echo"), body.clone()];
        let (_, cmd) = PeerCommand::decode(input).unwrap();
        let PeerCommand::Request { body: decoded, .. } = cmd else { panic!("not a request") };
        assert_eq!(decoded[0].as_ptr(), body.as_ptr());
    }

    #[test]
    fn a_decoded_final_is_readdressed_in_its_own_buffer() {
        for dialect in Dialect::ALL {
            let fin = PeerCommand::Final { client: Bytes::from_static(b"c"), body: vec![Bytes::from_static(b"hi")] };
            let frames = fin.encode(dialect).unwrap();
            let buffer = frames.as_ptr();
            let (_, PeerCommand::Final { body, .. }) = PeerCommand::decode(frames).unwrap() else {
                panic!("not a FINAL")
            };
            let service = (dialect != Dialect::Majortomo).then(|| Bytes::from_static(b"echo"));
            let reply = BrokerCommand::Final { service, body }.encode(dialect).unwrap();
            assert_eq!(reply.as_ptr(), buffer, "{dialect}");
            assert_eq!(BrokerCommand::decode(reply).unwrap().0, dialect);
        }
    }

    #[test]
    fn worker_request_matches_encode() {
        for dialect in Dialect::ALL {
            let (client, body) = (Bytes::from_static(b"c"), vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]);
            let direct = worker_request(dialect, client.clone(), &body);
            assert_eq!(direct.capacity(), direct.len());
            assert_eq!(direct, BrokerCommand::Request { client, body }.encode(dialect).unwrap());
        }
    }

    #[test]
    fn byte_frames_are_static() {
        for b in 0..=255u8 {
            assert_eq!(byte(b).as_ref(), &[b]);
        }
    }

    #[test]
    fn found_is_escaped_and_cut() {
        let f = Found(Bytes::from(vec![0u8; 40]));
        let s = f.to_string();
        assert!(s.starts_with("\"\\x00"), "{s}");
        assert!(s.ends_with("(40 bytes)"), "{s}");
        assert_eq!(Found(Bytes::from_static(b"ab\n")).to_string(), "\"ab\\n\"");
    }

    #[test]
    fn error_messages_name_frame_expected_and_found() {
        let err = PeerCommand::decode(frames(&[b"", b"MDPX01"])).unwrap_err();
        assert_eq!(err.to_string(), "frame 1: expected MDPC01, MDPW01, MDPC02 or MDPW02, found \"MDPX01\"");
    }
}
