//! Frames to commands. Reads the header to tell the dialect and the
//! sub-protocol, then the command; never copies a frame.

use bytes::Bytes;

use super::dialect::{ccmd, wcmd, Sub};
use super::{BrokerCommand, Command, DecodeError, Dialect, Found, Multipart, PeerCommand};
use super::{MDPC01, MDPC02, MDPW01, MDPW02};

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
    fn addressed(mut self, body: Body) -> Result<(Bytes, Multipart), DecodeError> {
        let client = self.next("client address")?;
        self.empty("empty delimiter after the client address")?;
        let body = match body {
            Body::Required => self.body()?,
            Body::MayBeEmpty => self.rest(),
        };
        Ok((client, body))
    }
}

/// Whether a command's body may have no frames.
#[derive(Debug, Clone, Copy)]
enum Body {
    /// At least one frame (a REQUEST's).
    Required,
    /// Any number, none included (a reply's).
    MayBeEmpty,
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
///
/// `#[inline]`: inlined into each `decode`, the decoders it is passed become
/// direct calls. Without the hint that depends on how the crate's modules
/// fall into codegen units: splitting `codec.rs` into files left it out of
/// line, at ~150 instructions (3 %) per broker round trip.
#[inline]
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
                let (client, body) = r.addressed(Body::MayBeEmpty)?;
                PeerCommand::Final { client, body }
            }
            (false, V02_PARTIAL) => {
                let (client, body) = r.addressed(Body::MayBeEmpty)?;
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
}

impl BrokerCommand {
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
                let (client, body) = r.addressed(Body::Required)?;
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::encode::byte;

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
    fn error_messages_name_frame_expected_and_found() {
        let err = PeerCommand::decode(frames(&[b"", b"MDPX01"])).unwrap_err();
        assert_eq!(err.to_string(), "frame 1: expected MDPC01, MDPW01, MDPC02 or MDPW02, found \"MDPX01\"");
    }
}
