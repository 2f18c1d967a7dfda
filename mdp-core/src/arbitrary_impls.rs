//! [`Arbitrary`] for the codec's types (feature `arbitrary`), so that a
//! cargo-fuzz target can draw MDP commands from its input.
//!
//! What each gives:
//!
//! * [`Dialect`]: any of the three.
//! * [`PeerCommand`]: a command that encodes in MDP/0.2 and in the
//!   majortomo dialect; in MDP/0.1 every one but a PARTIAL, which 0.1 does
//!   not have.
//! * [`BrokerCommand`]: a command that encodes in the dialect drawn first
//!   from the same input. Which dialects that is can be read off the
//!   command: a reply (PARTIAL or FINAL) with a service name encodes in
//!   MDP/0.2, and in MDP/0.1 unless it is a PARTIAL; one without encodes
//!   in the majortomo dialect only; a REQUEST, HEARTBEAT or DISCONNECT in
//!   every dialect.
//!
//! [`PeerCommand::arbitrary_in`] and [`BrokerCommand::arbitrary_in`] draw
//! a command valid in a dialect of the caller's choosing.
//!
//! Frames are short (at most `MAX_FRAMES` body frames of at most
//! `MAX_FRAME_BYTES` bytes, empty ones included), and service names
//! mostly recur, so that a fuzzer's commands meet: a READY and a REQUEST
//! for the same service, a FINAL for a client that asked.

use arbitrary::{Arbitrary, Result, Unstructured};
use bytes::Bytes;

use crate::{BrokerCommand, Dialect, Multipart, PeerCommand};

/// Most body frames in an arbitrary command.
const MAX_FRAMES: usize = 4;
/// Most bytes in one arbitrary frame (a body frame, a service name, a
/// client address).
const MAX_FRAME_BYTES: usize = 64;
/// Service names drawn more often than made-up ones: an ordinary one, the
/// one MMI service the broker answers, and an MMI name it does not know.
const SERVICES: [&[u8]; 4] = [b"echo", b"work", b"mmi.service", b"mmi.nope"];
/// Client addresses drawn more often than made-up ones.
const CLIENTS: [&[u8]; 2] = [b"\x00client-a", b"\x00client-b"];

/// Up to `max` bytes, fewer when the input runs out.
fn frame(u: &mut Unstructured<'_>, max: usize) -> Result<Bytes> {
    let n = u.int_in_range(0..=max)?.min(u.len());
    Ok(Bytes::copy_from_slice(u.bytes(n)?))
}

/// `min..=MAX_FRAMES` frames.
fn body(u: &mut Unstructured<'_>, min: usize) -> Result<Multipart> {
    let n = u.int_in_range(min..=MAX_FRAMES)?;
    (0..n).map(|_| frame(u, MAX_FRAME_BYTES)).collect()
}

/// A non-empty service name.
fn service(u: &mut Unstructured<'_>) -> Result<Bytes> {
    let i = u.int_in_range(0..=SERVICES.len())?;
    if let Some(name) = SERVICES.get(i) {
        return Ok(Bytes::from_static(name));
    }
    let name = frame(u, MAX_FRAME_BYTES)?;
    Ok(if name.is_empty() { Bytes::from_static(SERVICES[0]) } else { name })
}

/// A client address: opaque to the codec, empty included.
fn client(u: &mut Unstructured<'_>) -> Result<Bytes> {
    let i = u.int_in_range(0..=CLIENTS.len())?;
    match CLIENTS.get(i) {
        Some(address) => Ok(Bytes::from_static(address)),
        None => frame(u, MAX_FRAME_BYTES),
    }
}

/// Feature `arbitrary`: any of the three dialects.
impl<'a> Arbitrary<'a> for Dialect {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(Dialect::ALL[u.int_in_range(0..=Dialect::ALL.len() - 1)?])
    }

    fn size_hint(_depth: usize) -> (usize, Option<usize>) {
        (1, Some(1))
    }
}

/// Feature `arbitrary`: a command that encodes in MDP/0.2 and in the
/// majortomo dialect, and in MDP/0.1 unless it is a PARTIAL.
/// [`PeerCommand::arbitrary_in`] draws one for a given dialect.
impl<'a> Arbitrary<'a> for PeerCommand {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        // MDP/0.2 has every command.
        PeerCommand::arbitrary_in(u, Dialect::V02)
    }
}

/// Feature `arbitrary`: a command that encodes in the dialect drawn first
/// from the same input. A reply (PARTIAL or FINAL) with a service name
/// encodes in MDP/0.2, and in MDP/0.1 unless it is a PARTIAL; one without
/// encodes in the majortomo dialect only; a REQUEST, HEARTBEAT or
/// DISCONNECT in every dialect. [`BrokerCommand::arbitrary_in`] draws one
/// for a given dialect.
impl<'a> Arbitrary<'a> for BrokerCommand {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let dialect = Dialect::arbitrary(u)?;
        BrokerCommand::arbitrary_in(u, dialect)
    }
}

impl PeerCommand {
    /// A command drawn from `u` that [`encode`](Self::encode)s in
    /// `dialect`: a REQUEST, READY, FINAL (REPLY), HEARTBEAT or DISCONNECT,
    /// or a PARTIAL if the dialect has it. Feature `arbitrary`.
    pub fn arbitrary_in(u: &mut Unstructured<'_>, dialect: Dialect) -> Result<Self> {
        let last = if dialect.supports_partial() { 5 } else { 4 };
        Ok(match u.int_in_range(0..=last)? {
            0 => PeerCommand::Request { service: service(u)?, body: body(u, 1)? },
            1 => PeerCommand::Ready { service: service(u)? },
            2 => PeerCommand::Final { client: client(u)?, body: body(u, 0)? },
            3 => PeerCommand::Heartbeat,
            4 => PeerCommand::Disconnect,
            _ => PeerCommand::Partial { client: client(u)?, body: body(u, 0)? },
        })
    }
}

impl BrokerCommand {
    /// A command drawn from `u` that [`encode`](Self::encode)s in
    /// `dialect`: a FINAL (REPLY), REQUEST, HEARTBEAT or DISCONNECT, or a
    /// PARTIAL if the dialect has it; replies carry a service name except in
    /// the majortomo dialect. Feature `arbitrary`.
    pub fn arbitrary_in(u: &mut Unstructured<'_>, dialect: Dialect) -> Result<Self> {
        let last = if dialect.supports_partial() { 4 } else { 3 };
        let choice = u.int_in_range(0..=last)?;
        let reply_service = |u: &mut Unstructured<'_>| match dialect {
            Dialect::Majortomo => Ok(None),
            Dialect::V01 | Dialect::V02 => service(u).map(Some),
        };
        Ok(match choice {
            0 => BrokerCommand::Final { service: reply_service(u)?, body: body(u, 0)? },
            1 => BrokerCommand::Request { client: client(u)?, body: body(u, 1)? },
            2 => BrokerCommand::Heartbeat,
            3 => BrokerCommand::Disconnect,
            _ => BrokerCommand::Partial { service: reply_service(u)?, body: body(u, 0)? },
        })
    }
}
