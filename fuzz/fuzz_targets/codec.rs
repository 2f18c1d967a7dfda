//! The codec in both directions, from both ends.
//!
//! * **Arbitrary frames** are decoded as a [`PeerCommand`] and as a
//!   [`BrokerCommand`]. Whatever decodes must re-encode in the dialect it was
//!   read in, to exactly the frames it came from (the encoding is canonical:
//!   one frame list per command and dialect), and so decode again to the same
//!   command. Whatever fails must fail with an error that formats.
//! * **Arbitrary commands** (with arbitrary service names, addresses and
//!   bodies) are encoded in an arbitrary dialect. Whatever encodes must
//!   decode, in the same direction, to the same command and dialect; and
//!   encoding must fail exactly when, and with the error, the codec's docs
//!   say (PARTIAL in MDP/0.1, a missing, unexpected or empty service name, a
//!   REQUEST without a body).
//!
//! Neither may panic.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use mdp_core::{BrokerCommand, Dialect, EncodeError, Multipart, PeerCommand};

#[derive(Debug)]
enum Input {
    Frames(Vec<Vec<u8>>),
    Peer(Dialect, PeerCommand),
    Broker(Dialect, BrokerCommand),
}

fn bytes(u: &mut Unstructured<'_>) -> arbitrary::Result<Bytes> {
    Ok(Bytes::from(Vec::<u8>::arbitrary(u)?))
}

fn body(u: &mut Unstructured<'_>) -> arbitrary::Result<Multipart> {
    let n = u.int_in_range(0..=4)?;
    (0..n).map(|_| bytes(u)).collect()
}

impl<'a> Arbitrary<'a> for Input {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u.int_in_range(0..=3)? {
            // Raw frames twice as often: they reach every decode error.
            0 | 1 => Input::Frames(Vec::arbitrary(u)?),
            2 => {
                let dialect = *u.choose(&Dialect::ALL)?;
                let cmd = match u.int_in_range(0..=5)? {
                    0 => PeerCommand::Request { service: bytes(u)?, body: body(u)? },
                    1 => PeerCommand::Ready { service: bytes(u)? },
                    2 => PeerCommand::Partial { client: bytes(u)?, body: body(u)? },
                    3 => PeerCommand::Final { client: bytes(u)?, body: body(u)? },
                    4 => PeerCommand::Heartbeat,
                    _ => PeerCommand::Disconnect,
                };
                Input::Peer(dialect, cmd)
            }
            _ => {
                let dialect = *u.choose(&Dialect::ALL)?;
                let service = if u.arbitrary()? { Some(bytes(u)?) } else { None };
                let cmd = match u.int_in_range(0..=4)? {
                    0 => BrokerCommand::Partial { service, body: body(u)? },
                    1 => BrokerCommand::Final { service, body: body(u)? },
                    2 => BrokerCommand::Request { client: bytes(u)?, body: body(u)? },
                    3 => BrokerCommand::Heartbeat,
                    _ => BrokerCommand::Disconnect,
                };
                Input::Broker(dialect, cmd)
            }
        })
    }
}

fn frames_round_trip(frames: Multipart) {
    match PeerCommand::decode(frames.clone()) {
        Ok((dialect, cmd)) => {
            let encoded = cmd.clone().encode(dialect).expect("a decoded command re-encodes");
            assert_eq!(encoded, frames, "{cmd:?} in {dialect} re-encodes to other frames");
            assert_eq!(PeerCommand::decode(encoded), Ok((dialect, cmd)));
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    match BrokerCommand::decode(frames.clone()) {
        Ok((dialect, cmd)) => {
            let encoded = cmd.clone().encode(dialect).expect("a decoded command re-encodes");
            assert_eq!(encoded, frames, "{cmd:?} in {dialect} re-encodes to other frames");
            assert_eq!(BrokerCommand::decode(encoded), Ok((dialect, cmd)));
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// Why `cmd` cannot be written in `dialect`, per the codec's docs.
fn peer_refusal(cmd: &PeerCommand, dialect: Dialect) -> Option<EncodeError> {
    match cmd {
        PeerCommand::Request { service, .. } | PeerCommand::Ready { service } if service.is_empty() => {
            Some(EncodeError::EmptyService)
        }
        PeerCommand::Request { body, .. } if body.is_empty() => Some(EncodeError::EmptyBody),
        PeerCommand::Partial { .. } if dialect == Dialect::V01 => Some(EncodeError::NoPartial(dialect)),
        _ => None,
    }
}

/// Why `cmd` cannot be written in `dialect`, per the codec's docs.
fn broker_refusal(cmd: &BrokerCommand, dialect: Dialect) -> Option<EncodeError> {
    match cmd {
        BrokerCommand::Partial { .. } if dialect == Dialect::V01 => Some(EncodeError::NoPartial(dialect)),
        BrokerCommand::Partial { service, .. } | BrokerCommand::Final { service, .. } => match (dialect, service) {
            (Dialect::Majortomo, None) => None,
            (Dialect::Majortomo, Some(_)) => Some(EncodeError::UnexpectedService(dialect)),
            (_, None) => Some(EncodeError::MissingService(dialect)),
            (_, Some(s)) if s.is_empty() => Some(EncodeError::EmptyService),
            (_, Some(_)) => None,
        },
        BrokerCommand::Request { body, .. } if body.is_empty() => Some(EncodeError::EmptyBody),
        _ => None,
    }
}

fuzz_target!(|input: Input| {
    match input {
        Input::Frames(frames) => frames_round_trip(frames.into_iter().map(Bytes::from).collect()),
        Input::Peer(dialect, cmd) => match (cmd.clone().encode(dialect), peer_refusal(&cmd, dialect)) {
            (Ok(frames), None) => assert_eq!(PeerCommand::decode(frames), Ok((dialect, cmd))),
            (Err(e), Some(expected)) => {
                let _ = e.to_string();
                assert_eq!(e, expected, "{cmd:?} in {dialect}: {e}");
            }
            (got, expected) => panic!("{cmd:?} in {dialect}: encoded to {got:?}, expected refusal {expected:?}"),
        },
        Input::Broker(dialect, cmd) => match (cmd.clone().encode(dialect), broker_refusal(&cmd, dialect)) {
            (Ok(frames), None) => assert_eq!(BrokerCommand::decode(frames), Ok((dialect, cmd))),
            (Err(e), Some(expected)) => {
                let _ = e.to_string();
                assert_eq!(e, expected, "{cmd:?} in {dialect}: {e}");
            }
            (got, expected) => panic!("{cmd:?} in {dialect}: encoded to {got:?}, expected refusal {expected:?}"),
        },
    }
});
