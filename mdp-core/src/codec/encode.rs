//! Commands to frames. A body is not copied: the header is written in front
//! of it, in its own buffer when it has room.

use bytes::Bytes;

use super::dialect::{ccmd, wcmd, Sub};
use super::{BrokerCommand, Dialect, EncodeError, Multipart, PeerCommand};

impl PeerCommand {
    /// Encodes this command in `dialect`.
    ///
    /// Fails for a command the dialect cannot express (PARTIAL in MDP/0.1), a
    /// REQUEST with no body, or an empty service name.
    pub fn encode(self, dialect: Dialect) -> Result<Multipart, EncodeError> {
        use wcmd::*;
        let v01 = dialect == Dialect::V01;
        match self {
            PeerCommand::Request { service, body } => client_request(dialect, service, body),
            PeerCommand::Ready { service } => {
                check_service(&service)?;
                let mut out = worker_command(dialect, if v01 { V01_READY } else { V02_READY });
                out.push(service);
                Ok(out)
            }
            PeerCommand::Partial { client, body } => {
                if v01 {
                    return Err(EncodeError::NoPartial(dialect));
                }
                Ok(addressed(dialect, V02_PARTIAL, client, body))
            }
            PeerCommand::Final { client, body } => {
                Ok(addressed(dialect, if v01 { V01_REPLY } else { V02_FINAL }, client, body))
            }
            PeerCommand::Heartbeat => Ok(worker_command(dialect, if v01 { V01_HEARTBEAT } else { V02_HEARTBEAT })),
            PeerCommand::Disconnect => Ok(worker_command(dialect, if v01 { V01_DISCONNECT } else { V02_DISCONNECT })),
        }
    }
}

impl BrokerCommand {
    /// Encodes this command in `dialect`.
    ///
    /// Fails for a command the dialect cannot express: PARTIAL in MDP/0.1, a
    /// reply without a service name in MDP/0.1 or RFC 18, a reply with one in
    /// the majortomo dialect, or a REQUEST with no body.
    pub fn encode(self, dialect: Dialect) -> Result<Multipart, EncodeError> {
        use wcmd::*;
        let v01 = dialect == Dialect::V01;
        match self {
            BrokerCommand::Partial { service, body } => {
                let command = match dialect {
                    Dialect::V01 => return Err(EncodeError::NoPartial(dialect)),
                    Dialect::V02 => ccmd::RFC18_PARTIAL,
                    Dialect::Majortomo => ccmd::MAJORTOMO_PARTIAL,
                };
                client_reply(dialect, Some(command), service, body)
            }
            BrokerCommand::Final { service, body } => {
                let command = match dialect {
                    Dialect::V01 => None,
                    Dialect::V02 => Some(ccmd::RFC18_FINAL),
                    Dialect::Majortomo => Some(ccmd::MAJORTOMO_FINAL),
                };
                client_reply(dialect, command, service, body)
            }
            BrokerCommand::Request { client, body } => {
                if body.is_empty() {
                    return Err(EncodeError::EmptyBody);
                }
                Ok(addressed(dialect, if v01 { V01_REQUEST } else { V02_REQUEST }, client, body))
            }
            BrokerCommand::Heartbeat => Ok(worker_command(dialect, if v01 { V01_HEARTBEAT } else { V02_HEARTBEAT })),
            BrokerCommand::Disconnect => Ok(worker_command(dialect, if v01 { V01_DISCONNECT } else { V02_DISCONNECT })),
        }
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
pub(super) fn byte(b: u8) -> Bytes {
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

/// Header and command byte: all of HEARTBEAT and DISCONNECT, READY before its
/// service frame.
fn worker_command(dialect: Dialect, command: u8) -> Multipart {
    let mut out = Vec::new();
    start(&mut out, dialect, Sub::Worker);
    out.push(byte(command));
    out
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

/// Header, command (none in MDP/0.1), service, body.
fn client_request(dialect: Dialect, service: Bytes, body: Multipart) -> Result<Multipart, EncodeError> {
    check_service(&service)?;
    if body.is_empty() {
        return Err(EncodeError::EmptyBody);
    }
    let head_len = start_len(dialect) + usize::from(dialect != Dialect::V01) + 1;
    Ok(prepend(body, head_len, |out| {
        start(out, dialect, Sub::Client);
        match dialect {
            Dialect::V01 => {}
            Dialect::V02 => out.push(byte(ccmd::RFC18_REQUEST)),
            Dialect::Majortomo => out.push(byte(ccmd::MAJORTOMO_REQUEST)),
        }
        out.push(service);
    }))
}

/// Header, command (none in MDP/0.1), service (none in majortomo), body.
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
}
