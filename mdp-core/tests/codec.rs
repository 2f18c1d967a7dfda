//! The codec through its public API: golden frames for every command of every
//! dialect, one test per kind of rejection, and property tests.
//!
//! The frames of the golden and rejection tests are written out byte for byte
//! from the tables in `shared/MDP.md`, never produced by the codec under test.
#![allow(clippy::disallowed_methods)] // stands in for the application, which reads the clock

use bytes::Bytes;
use mdp_core::Found;
use mdp_core::{BrokerCommand, Command, DecodeError, Dialect, EncodeError, Multipart, PeerCommand};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::Union;

// ---------------------------------------------------------------------------
// Helpers

fn frames(parts: &[&[u8]]) -> Multipart {
    parts.iter().map(|p| Bytes::copy_from_slice(p)).collect()
}

fn b(s: &'static [u8]) -> Bytes {
    Bytes::from_static(s)
}

fn found(s: &'static [u8]) -> Found {
    Found(Bytes::from_static(s))
}

/// A client address as libzmq generates them: binary, starting with 0x00.
const ADDR: &[u8] = b"\x00\x6b\x8b\x45\x67";

/// Checks that `wire` decodes to `command` in `dialect` when sent to the
/// broker, and that `command` encodes to exactly `wire`.
#[track_caller]
fn golden_peer(dialect: Dialect, command: PeerCommand, wire: &[&[u8]]) {
    assert_eq!(PeerCommand::decode(frames(wire)), Ok((dialect, command.clone())), "decoding {wire:?}");
    assert_eq!(command.encode(dialect), Ok(frames(wire)), "encoding in {dialect}");
}

/// Checks that `wire` decodes to `command` in `dialect` when sent by the
/// broker, and that `command` encodes to exactly `wire`.
#[track_caller]
fn golden_broker(dialect: Dialect, command: BrokerCommand, wire: &[&[u8]]) {
    assert_eq!(BrokerCommand::decode(frames(wire)), Ok((dialect, command.clone())), "decoding {wire:?}");
    assert_eq!(command.encode(dialect), Ok(frames(wire)), "encoding in {dialect}");
}

#[track_caller]
fn peer_err(wire: &[&[u8]]) -> DecodeError {
    match PeerCommand::decode(frames(wire)) {
        Ok(ok) => panic!("{wire:?} decoded as {ok:?}, expected an error"),
        Err(err) => err,
    }
}

#[track_caller]
fn broker_err(wire: &[&[u8]]) -> DecodeError {
    match BrokerCommand::decode(frames(wire)) {
        Ok(ok) => panic!("{wire:?} decoded as {ok:?}, expected an error"),
        Err(err) => err,
    }
}

// ---------------------------------------------------------------------------
// Golden frames: MDP/0.1 (RFC 7)

#[test]
fn v01_client_request() {
    golden_peer(
        Dialect::V01,
        PeerCommand::Request { service: b(b"echo"), body: vec![b(b"hello")] },
        &[b"", b"MDPC01", b"echo", b"hello"],
    );
    golden_peer(
        Dialect::V01,
        PeerCommand::Request { service: b(b"echo"), body: vec![b(b"one"), b(b""), b(b"three")] },
        &[b"", b"MDPC01", b"echo", b"one", b"", b"three"],
    );
}

#[test]
fn v01_worker_ready() {
    golden_peer(Dialect::V01, PeerCommand::Ready { service: b(b"echo") }, &[b"", b"MDPW01", b"\x01", b"echo"]);
}

#[test]
fn v01_worker_reply() {
    golden_peer(
        Dialect::V01,
        PeerCommand::Final { client: b(ADDR), body: vec![b(b"world")] },
        &[b"", b"MDPW01", b"\x03", ADDR, b"", b"world"],
    );
}

#[test]
fn v01_worker_heartbeat() {
    golden_peer(Dialect::V01, PeerCommand::Heartbeat, &[b"", b"MDPW01", b"\x04"]);
}

#[test]
fn v01_worker_disconnect() {
    golden_peer(Dialect::V01, PeerCommand::Disconnect, &[b"", b"MDPW01", b"\x05"]);
}

#[test]
fn v01_worker_partial_does_not_exist() {
    let partial = PeerCommand::Partial { client: b(ADDR), body: vec![b(b"part")] };
    assert_eq!(partial.encode(Dialect::V01), Err(EncodeError::NoPartial(Dialect::V01)));
    // The byte V02 uses for a worker PARTIAL is REPLY in 0.1.
    assert_eq!(
        PeerCommand::decode(frames(&[b"", b"MDPW01", b"\x03", ADDR, b"", b"part"])),
        Ok((Dialect::V01, PeerCommand::Final { client: b(ADDR), body: vec![b(b"part")] }))
    );
}

#[test]
fn v01_broker_reply_to_client() {
    golden_broker(
        Dialect::V01,
        BrokerCommand::Final { service: Some(b(b"echo")), body: vec![b(b"world")] },
        &[b"", b"MDPC01", b"echo", b"world"],
    );
}

#[test]
fn v01_broker_request_to_worker() {
    golden_broker(
        Dialect::V01,
        BrokerCommand::Request { client: b(ADDR), body: vec![b(b"hello"), b(b"again")] },
        &[b"", b"MDPW01", b"\x02", ADDR, b"", b"hello", b"again"],
    );
}

#[test]
fn v01_broker_heartbeat() {
    golden_broker(Dialect::V01, BrokerCommand::Heartbeat, &[b"", b"MDPW01", b"\x04"]);
}

#[test]
fn v01_broker_disconnect() {
    golden_broker(Dialect::V01, BrokerCommand::Disconnect, &[b"", b"MDPW01", b"\x05"]);
}

#[test]
fn v01_broker_partial_does_not_exist() {
    let partial = BrokerCommand::Partial { service: Some(b(b"echo")), body: vec![b(b"part")] };
    assert_eq!(partial.encode(Dialect::V01), Err(EncodeError::NoPartial(Dialect::V01)));
    let partial = BrokerCommand::Partial { service: None, body: vec![] };
    assert_eq!(partial.encode(Dialect::V01), Err(EncodeError::NoPartial(Dialect::V01)));
}

// ---------------------------------------------------------------------------
// Golden frames: MDP/0.2 as RFC 18 writes it

#[test]
fn v02_client_request() {
    golden_peer(
        Dialect::V02,
        PeerCommand::Request { service: b(b"echo"), body: vec![b(b"hello")] },
        &[b"MDPC02", b"\x01", b"echo", b"hello"],
    );
}

#[test]
fn v02_worker_ready() {
    golden_peer(Dialect::V02, PeerCommand::Ready { service: b(b"echo") }, &[b"MDPW02", b"\x01", b"echo"]);
}

#[test]
fn v02_worker_partial() {
    golden_peer(
        Dialect::V02,
        PeerCommand::Partial { client: b(ADDR), body: vec![b(b"part")] },
        &[b"MDPW02", b"\x03", ADDR, b"", b"part"],
    );
}

#[test]
fn v02_worker_final() {
    golden_peer(
        Dialect::V02,
        PeerCommand::Final { client: b(ADDR), body: vec![b(b"last"), b(b"frame")] },
        &[b"MDPW02", b"\x04", ADDR, b"", b"last", b"frame"],
    );
    // A FINAL may carry no body at all after a run of PARTIALs.
    golden_peer(Dialect::V02, PeerCommand::Final { client: b(ADDR), body: vec![] }, &[b"MDPW02", b"\x04", ADDR, b""]);
}

#[test]
fn v02_worker_heartbeat() {
    golden_peer(Dialect::V02, PeerCommand::Heartbeat, &[b"MDPW02", b"\x05"]);
}

#[test]
fn v02_worker_disconnect() {
    golden_peer(Dialect::V02, PeerCommand::Disconnect, &[b"MDPW02", b"\x06"]);
}

#[test]
fn v02_broker_partial_to_client() {
    golden_broker(
        Dialect::V02,
        BrokerCommand::Partial { service: Some(b(b"echo")), body: vec![b(b"part")] },
        &[b"MDPC02", b"\x02", b"echo", b"part"],
    );
}

#[test]
fn v02_broker_final_to_client() {
    golden_broker(
        Dialect::V02,
        BrokerCommand::Final { service: Some(b(b"echo")), body: vec![b(b"last")] },
        &[b"MDPC02", b"\x03", b"echo", b"last"],
    );
    golden_broker(
        Dialect::V02,
        BrokerCommand::Final { service: Some(b(b"echo")), body: vec![] },
        &[b"MDPC02", b"\x03", b"echo"],
    );
}

#[test]
fn v02_broker_request_to_worker() {
    golden_broker(
        Dialect::V02,
        BrokerCommand::Request { client: b(ADDR), body: vec![b(b"hello")] },
        &[b"MDPW02", b"\x02", ADDR, b"", b"hello"],
    );
}

#[test]
fn v02_broker_heartbeat() {
    golden_broker(Dialect::V02, BrokerCommand::Heartbeat, &[b"MDPW02", b"\x05"]);
}

#[test]
fn v02_broker_disconnect() {
    golden_broker(Dialect::V02, BrokerCommand::Disconnect, &[b"MDPW02", b"\x06"]);
}

// ---------------------------------------------------------------------------
// Golden frames: MDP/0.2 as majortomo sends it

#[test]
fn majortomo_client_request() {
    golden_peer(
        Dialect::Majortomo,
        PeerCommand::Request { service: b(b"echo"), body: vec![b(b"hello")] },
        &[b"", b"MDPC02", b"\x02", b"echo", b"hello"],
    );
}

#[test]
fn majortomo_worker_ready() {
    golden_peer(Dialect::Majortomo, PeerCommand::Ready { service: b(b"echo") }, &[b"", b"MDPW02", b"\x01", b"echo"]);
}

#[test]
fn majortomo_worker_partial() {
    golden_peer(
        Dialect::Majortomo,
        PeerCommand::Partial { client: b(ADDR), body: vec![b(b"part")] },
        &[b"", b"MDPW02", b"\x03", ADDR, b"", b"part"],
    );
}

#[test]
fn majortomo_worker_final() {
    golden_peer(
        Dialect::Majortomo,
        PeerCommand::Final { client: b(ADDR), body: vec![b(b"last")] },
        &[b"", b"MDPW02", b"\x04", ADDR, b"", b"last"],
    );
}

#[test]
fn majortomo_worker_heartbeat() {
    golden_peer(Dialect::Majortomo, PeerCommand::Heartbeat, &[b"", b"MDPW02", b"\x05"]);
}

#[test]
fn majortomo_worker_disconnect() {
    golden_peer(Dialect::Majortomo, PeerCommand::Disconnect, &[b"", b"MDPW02", b"\x06"]);
}

#[test]
fn majortomo_broker_partial_to_client_has_no_service() {
    golden_broker(
        Dialect::Majortomo,
        BrokerCommand::Partial { service: None, body: vec![b(b"part")] },
        &[b"", b"MDPC02", b"\x03", b"part"],
    );
}

#[test]
fn majortomo_broker_final_to_client_has_no_service() {
    golden_broker(
        Dialect::Majortomo,
        BrokerCommand::Final { service: None, body: vec![b(b"last"), b(b"frame")] },
        &[b"", b"MDPC02", b"\x04", b"last", b"frame"],
    );
    golden_broker(Dialect::Majortomo, BrokerCommand::Final { service: None, body: vec![] }, &[b"", b"MDPC02", b"\x04"]);
}

#[test]
fn majortomo_broker_request_to_worker() {
    golden_broker(
        Dialect::Majortomo,
        BrokerCommand::Request { client: b(ADDR), body: vec![b(b"hello")] },
        &[b"", b"MDPW02", b"\x02", ADDR, b"", b"hello"],
    );
}

#[test]
fn majortomo_broker_heartbeat() {
    golden_broker(Dialect::Majortomo, BrokerCommand::Heartbeat, &[b"", b"MDPW02", b"\x05"]);
}

#[test]
fn majortomo_broker_disconnect() {
    golden_broker(Dialect::Majortomo, BrokerCommand::Disconnect, &[b"", b"MDPW02", b"\x06"]);
}

// ---------------------------------------------------------------------------
// Encoding errors

#[test]
fn reply_service_must_match_the_dialect() {
    for dialect in [Dialect::V01, Dialect::V02] {
        let reply = BrokerCommand::Final { service: None, body: vec![b(b"x")] };
        assert_eq!(reply.encode(dialect), Err(EncodeError::MissingService(dialect)));
    }
    let partial = BrokerCommand::Partial { service: None, body: vec![b(b"x")] };
    assert_eq!(partial.encode(Dialect::V02), Err(EncodeError::MissingService(Dialect::V02)));

    let reply = BrokerCommand::Final { service: Some(b(b"echo")), body: vec![b(b"x")] };
    assert_eq!(reply.encode(Dialect::Majortomo), Err(EncodeError::UnexpectedService(Dialect::Majortomo)));
    let partial = BrokerCommand::Partial { service: Some(b(b"echo")), body: vec![b(b"x")] };
    assert_eq!(partial.encode(Dialect::Majortomo), Err(EncodeError::UnexpectedService(Dialect::Majortomo)));
}

#[test]
fn requests_need_a_body_and_services_a_name() {
    for dialect in Dialect::ALL {
        let request = PeerCommand::Request { service: b(b"echo"), body: vec![] };
        assert_eq!(request.encode(dialect), Err(EncodeError::EmptyBody), "{dialect}");
        let request = BrokerCommand::Request { client: b(ADDR), body: vec![] };
        assert_eq!(request.encode(dialect), Err(EncodeError::EmptyBody), "{dialect}");

        let request = PeerCommand::Request { service: Bytes::new(), body: vec![b(b"x")] };
        assert_eq!(request.encode(dialect), Err(EncodeError::EmptyService), "{dialect}");
        let ready = PeerCommand::Ready { service: Bytes::new() };
        assert_eq!(ready.encode(dialect), Err(EncodeError::EmptyService), "{dialect}");
    }
    for dialect in [Dialect::V01, Dialect::V02] {
        let reply = BrokerCommand::Final { service: Some(Bytes::new()), body: vec![b(b"x")] };
        assert_eq!(reply.encode(dialect), Err(EncodeError::EmptyService), "{dialect}");
    }
    let partial = BrokerCommand::Partial { service: Some(Bytes::new()), body: vec![b(b"x")] };
    assert_eq!(partial.encode(Dialect::V02), Err(EncodeError::EmptyService));
}

#[test]
fn encode_error_display() {
    assert_eq!(EncodeError::NoPartial(Dialect::V01).to_string(), "MDP/0.1 has no PARTIAL command");
    assert_eq!(
        EncodeError::UnexpectedService(Dialect::Majortomo).to_string(),
        "MDP/0.2 (majortomo) replies carry no service name, but one was given"
    );
}

// ---------------------------------------------------------------------------
// Decoding errors, one kind at a time

#[test]
fn reject_empty_message() {
    assert_eq!(PeerCommand::decode(vec![]), Err(DecodeError::Empty));
    assert_eq!(BrokerCommand::decode(vec![]), Err(DecodeError::Empty));
    assert_eq!(DecodeError::Empty.to_string(), "empty message: expected an MDP command");
}

#[test]
fn reject_missing_header() {
    let expected = "MDPC01, MDPW01, MDPC02 or MDPW02";
    assert_eq!(peer_err(&[b""]), DecodeError::Missing { index: 1, expected });
    assert_eq!(broker_err(&[b""]), DecodeError::Missing { index: 1, expected });
}

#[test]
fn reject_missing_command_byte() {
    let expected = "command byte";
    assert_eq!(peer_err(&[b"MDPW02"]), DecodeError::Missing { index: 1, expected });
    assert_eq!(peer_err(&[b"", b"MDPC02"]), DecodeError::Missing { index: 2, expected });
    assert_eq!(broker_err(&[b"MDPC02"]), DecodeError::Missing { index: 1, expected });
    assert_eq!(broker_err(&[b"", b"MDPW01"]), DecodeError::Missing { index: 2, expected });
}

#[test]
fn reject_request_without_body() {
    let expected = "request body (1 or more frames)";
    assert_eq!(peer_err(&[b"", b"MDPC01", b"echo"]), DecodeError::Missing { index: 3, expected });
    assert_eq!(peer_err(&[b"MDPC02", b"\x01", b"echo"]), DecodeError::Missing { index: 3, expected });
    assert_eq!(peer_err(&[b"", b"MDPC02", b"\x02", b"echo"]), DecodeError::Missing { index: 4, expected });
    assert_eq!(broker_err(&[b"MDPW02", b"\x02", ADDR, b""]), DecodeError::Missing { index: 4, expected });
    assert_eq!(broker_err(&[b"", b"MDPW01", b"\x02", ADDR, b""]), DecodeError::Missing { index: 5, expected });
    assert_eq!(
        peer_err(&[b"", b"MDPC01", b"echo"]).to_string(),
        "frame 3 missing: expected request body (1 or more frames), but the message ends before it"
    );
}

#[test]
fn reject_request_without_service() {
    let expected = "service name";
    assert_eq!(peer_err(&[b"", b"MDPC01"]), DecodeError::Missing { index: 2, expected });
    assert_eq!(peer_err(&[b"MDPC02", b"\x01"]), DecodeError::Missing { index: 2, expected });
    assert_eq!(broker_err(&[b"MDPC02", b"\x03"]), DecodeError::Missing { index: 2, expected });
}

#[test]
fn reject_ready_without_service() {
    let expected = "service name";
    assert_eq!(peer_err(&[b"", b"MDPW01", b"\x01"]), DecodeError::Missing { index: 3, expected });
    assert_eq!(peer_err(&[b"MDPW02", b"\x01"]), DecodeError::Missing { index: 2, expected });
    assert_eq!(peer_err(&[b"", b"MDPW02", b"\x01"]), DecodeError::Missing { index: 3, expected });
}

#[test]
fn reject_worker_reply_without_address_or_delimiter() {
    let delimiter = "empty delimiter after the client address";
    assert_eq!(peer_err(&[b"", b"MDPW01", b"\x03", ADDR]), DecodeError::Missing { index: 4, expected: delimiter });
    assert_eq!(peer_err(&[b"MDPW02", b"\x03", ADDR]), DecodeError::Missing { index: 3, expected: delimiter });
    assert_eq!(peer_err(&[b"", b"MDPW02", b"\x04", ADDR]), DecodeError::Missing { index: 4, expected: delimiter });
    assert_eq!(peer_err(&[b"MDPW02", b"\x04"]), DecodeError::Missing { index: 2, expected: "client address" });
    assert_eq!(broker_err(&[b"MDPW02", b"\x02", ADDR]), DecodeError::Missing { index: 3, expected: delimiter });
}

#[test]
fn reject_bad_first_frame() {
    let expected = "an empty frame (MDP/0.1, majortomo) or MDPC02/MDPW02 (MDP/0.2)";
    // MDP/0.1 without its leading empty frame.
    let err = peer_err(&[b"MDPC01", b"echo", b"hello"]);
    assert_eq!(err, DecodeError::Unexpected { index: 0, expected, found: found(b"MDPC01") });
    assert_eq!(
        err.to_string(),
        "frame 0: expected an empty frame (MDP/0.1, majortomo) or MDPC02/MDPW02 (MDP/0.2), found \"MDPC01\""
    );
    // A ROUTER identity left in front of the message.
    assert_eq!(
        broker_err(&[ADDR, b"MDPW02", b"\x05"]),
        DecodeError::Unexpected { index: 0, expected, found: found(ADDR) }
    );
}

#[test]
fn reject_bad_header_after_empty() {
    let expected = "MDPC01, MDPW01, MDPC02 or MDPW02";
    assert_eq!(
        peer_err(&[b"", b"MDPX01", b"echo", b"hello"]),
        DecodeError::Unexpected { index: 1, expected, found: found(b"MDPX01") }
    );
    // Headers are case sensitive.
    assert_eq!(
        broker_err(&[b"", b"mdpw01", b"\x04"]),
        DecodeError::Unexpected { index: 1, expected, found: found(b"mdpw01") }
    );
    // Two leading empty frames.
    assert_eq!(
        peer_err(&[b"", b"", b"MDPC01", b"echo", b"hello"]),
        DecodeError::Unexpected { index: 1, expected, found: found(b"") }
    );
}

#[test]
fn reject_non_empty_delimiter_after_client_address() {
    let expected = "empty delimiter after the client address";
    assert_eq!(
        peer_err(&[b"", b"MDPW01", b"\x03", ADDR, b"oops", b"world"]),
        DecodeError::Unexpected { index: 4, expected, found: found(b"oops") }
    );
    assert_eq!(
        peer_err(&[b"MDPW02", b"\x03", ADDR, b"\x00", b"part"]),
        DecodeError::Unexpected { index: 3, expected, found: found(b"\x00") }
    );
    assert_eq!(
        broker_err(&[b"", b"MDPW02", b"\x02", ADDR, b"hello"]),
        DecodeError::Unexpected { index: 4, expected, found: found(b"hello") }
    );
}

const V01_TO_BROKER: &str = "READY, REPLY, HEARTBEAT or DISCONNECT (0x01, 0x03-0x05)";
const V02_TO_BROKER: &str = "READY, PARTIAL, FINAL, HEARTBEAT or DISCONNECT (0x01, 0x03-0x06)";
const V01_TO_WORKER: &str = "REQUEST, HEARTBEAT or DISCONNECT (0x02, 0x04, 0x05)";
const V02_TO_WORKER: &str = "REQUEST, HEARTBEAT or DISCONNECT (0x02, 0x05, 0x06)";

#[test]
fn reject_unknown_worker_command_byte() {
    assert_eq!(
        peer_err(&[b"MDPW02", b"\x07"]),
        DecodeError::UnknownCommand { index: 1, dialect: Dialect::V02, found: found(b"\x07"), expected: V02_TO_BROKER }
    );
    // 0x06 is DISCONNECT in 0.2 but nothing in 0.1.
    assert_eq!(
        peer_err(&[b"", b"MDPW01", b"\x06"]),
        DecodeError::UnknownCommand { index: 2, dialect: Dialect::V01, found: found(b"\x06"), expected: V01_TO_BROKER }
    );
    assert_eq!(
        broker_err(&[b"", b"MDPW02", b"\x00"]),
        DecodeError::UnknownCommand {
            index: 2,
            dialect: Dialect::Majortomo,
            found: found(b"\x00"),
            expected: V02_TO_WORKER,
        }
    );
    // ASCII digits are not command bytes.
    assert_eq!(
        broker_err(&[b"", b"MDPW01", b"4"]),
        DecodeError::UnknownCommand { index: 2, dialect: Dialect::V01, found: found(b"4"), expected: V01_TO_WORKER }
    );
}

#[test]
fn reject_command_frame_of_wrong_length() {
    assert_eq!(
        peer_err(&[b"", b"MDPW01", b"\x01\x00", b"echo"]),
        DecodeError::UnknownCommand {
            index: 2,
            dialect: Dialect::V01,
            found: found(b"\x01\x00"),
            expected: V01_TO_BROKER,
        }
    );
    assert_eq!(
        broker_err(&[b"MDPW02", b""]),
        DecodeError::UnknownCommand { index: 1, dialect: Dialect::V02, found: found(b""), expected: V02_TO_WORKER }
    );
    assert_eq!(
        peer_err(&[b"MDPC02", b"\x00\x01", b"echo", b"hello"]),
        DecodeError::UnknownCommand {
            index: 1,
            dialect: Dialect::V02,
            found: found(b"\x00\x01"),
            expected: "REQUEST (0x01)",
        }
    );
    assert_eq!(
        broker_err(&[b"", b"MDPC02", b"\x04\x04", b"last"]),
        DecodeError::UnknownCommand {
            index: 2,
            dialect: Dialect::Majortomo,
            found: found(b"\x04\x04"),
            expected: "PARTIAL or FINAL (0x03, 0x04)",
        }
    );
}

#[test]
fn reject_client_request_byte_of_the_other_dialect() {
    // An RFC 18 REQUEST byte behind majortomo's leading empty frame.
    let err = peer_err(&[b"", b"MDPC02", b"\x01", b"echo", b"hello"]);
    assert_eq!(
        err,
        DecodeError::UnknownCommand {
            index: 2,
            dialect: Dialect::Majortomo,
            found: found(b"\x01"),
            expected: "REQUEST (0x02)",
        }
    );
    assert_eq!(err.to_string(), r#"frame 2: unknown MDP/0.2 (majortomo) command "\x01" (expected REQUEST (0x02))"#);
}

#[test]
fn reject_client_reply_sent_to_the_broker() {
    // RFC 18 PARTIAL and FINAL.
    for byte in [b"\x02", b"\x03"] {
        assert_eq!(
            peer_err(&[b"MDPC02", byte, b"echo", b"part"]),
            DecodeError::UnknownCommand {
                index: 1,
                dialect: Dialect::V02,
                found: found(byte),
                expected: "REQUEST (0x01)"
            }
        );
    }
    // majortomo PARTIAL and FINAL.
    for byte in [b"\x03", b"\x04"] {
        assert_eq!(
            peer_err(&[b"", b"MDPC02", byte, b"part"]),
            DecodeError::UnknownCommand {
                index: 2,
                dialect: Dialect::Majortomo,
                found: found(byte),
                expected: "REQUEST (0x02)",
            }
        );
    }
}

#[test]
fn reject_client_request_sent_by_the_broker() {
    assert_eq!(
        broker_err(&[b"MDPC02", b"\x01", b"echo", b"hello"]),
        DecodeError::UnknownCommand {
            index: 1,
            dialect: Dialect::V02,
            found: found(b"\x01"),
            expected: "PARTIAL or FINAL (0x02, 0x03)",
        }
    );
    assert_eq!(
        broker_err(&[b"", b"MDPC02", b"\x02", b"echo", b"hello"]),
        DecodeError::UnknownCommand {
            index: 2,
            dialect: Dialect::Majortomo,
            found: found(b"\x02"),
            expected: "PARTIAL or FINAL (0x03, 0x04)",
        }
    );
}

#[test]
fn reject_worker_request_sent_to_the_broker() {
    assert_eq!(
        peer_err(&[b"", b"MDPW01", b"\x02", ADDR, b"", b"hello"]),
        DecodeError::UnknownCommand { index: 2, dialect: Dialect::V01, found: found(b"\x02"), expected: V01_TO_BROKER }
    );
    assert_eq!(
        peer_err(&[b"MDPW02", b"\x02", ADDR, b"", b"hello"]),
        DecodeError::UnknownCommand { index: 1, dialect: Dialect::V02, found: found(b"\x02"), expected: V02_TO_BROKER }
    );
    assert_eq!(
        peer_err(&[b"", b"MDPW02", b"\x02", ADDR, b"", b"hello"]),
        DecodeError::UnknownCommand {
            index: 2,
            dialect: Dialect::Majortomo,
            found: found(b"\x02"),
            expected: V02_TO_BROKER,
        }
    );
}

#[test]
fn reject_worker_commands_sent_by_the_broker() {
    // READY and REPLY go to the broker, never from it.
    assert_eq!(
        broker_err(&[b"", b"MDPW01", b"\x01", b"echo"]),
        DecodeError::UnknownCommand { index: 2, dialect: Dialect::V01, found: found(b"\x01"), expected: V01_TO_WORKER }
    );
    assert_eq!(
        broker_err(&[b"", b"MDPW01", b"\x03", ADDR, b"", b"world"]),
        DecodeError::UnknownCommand { index: 2, dialect: Dialect::V01, found: found(b"\x03"), expected: V01_TO_WORKER }
    );
    for byte in [b"\x01", b"\x03", b"\x04"] {
        assert_eq!(
            broker_err(&[b"MDPW02", byte, ADDR, b"", b"part"]),
            DecodeError::UnknownCommand {
                index: 1,
                dialect: Dialect::V02,
                found: found(byte),
                expected: V02_TO_WORKER
            }
        );
    }
}

#[test]
fn reject_empty_service_in_request() {
    assert_eq!(peer_err(&[b"", b"MDPC01", b"", b"hello"]), DecodeError::EmptyService { index: 2 });
    assert_eq!(peer_err(&[b"MDPC02", b"\x01", b"", b"hello"]), DecodeError::EmptyService { index: 2 });
    assert_eq!(peer_err(&[b"", b"MDPC02", b"\x02", b"", b"hello"]), DecodeError::EmptyService { index: 3 });
    assert_eq!(DecodeError::EmptyService { index: 2 }.to_string(), "frame 2: empty service name");
}

#[test]
fn reject_empty_service_in_ready() {
    assert_eq!(peer_err(&[b"", b"MDPW01", b"\x01", b""]), DecodeError::EmptyService { index: 3 });
    assert_eq!(peer_err(&[b"MDPW02", b"\x01", b""]), DecodeError::EmptyService { index: 2 });
    assert_eq!(peer_err(&[b"", b"MDPW02", b"\x01", b""]), DecodeError::EmptyService { index: 3 });
}

#[test]
fn reject_empty_service_in_reply() {
    assert_eq!(broker_err(&[b"MDPC02", b"\x02", b"", b"part"]), DecodeError::EmptyService { index: 2 });
    assert_eq!(broker_err(&[b"MDPC02", b"\x03", b""]), DecodeError::EmptyService { index: 2 });
    assert_eq!(broker_err(&[b"", b"MDPC01", b"", b"world"]), DecodeError::EmptyService { index: 2 });
}

#[test]
fn reject_trailing_frames_after_ready() {
    let err = peer_err(&[b"", b"MDPW01", b"\x01", b"echo", b"extra"]);
    assert_eq!(err, DecodeError::TrailingFrames { command: Command::Ready, expected: 4, found: 5 });
    assert_eq!(err.to_string(), "READY takes 4 frames, found 5");
    assert_eq!(
        peer_err(&[b"MDPW02", b"\x01", b"echo", b""]),
        DecodeError::TrailingFrames { command: Command::Ready, expected: 3, found: 4 }
    );
}

#[test]
fn reject_trailing_frames_after_heartbeat() {
    assert_eq!(
        peer_err(&[b"", b"MDPW01", b"\x04", b"x", b"y"]),
        DecodeError::TrailingFrames { command: Command::Heartbeat, expected: 3, found: 5 }
    );
    assert_eq!(
        broker_err(&[b"MDPW02", b"\x05", b""]),
        DecodeError::TrailingFrames { command: Command::Heartbeat, expected: 2, found: 3 }
    );
}

#[test]
fn reject_trailing_frames_after_disconnect() {
    let wire: &[&[u8]] = &[b"", b"MDPW02", b"\x06", b"bye"];
    let expected = DecodeError::TrailingFrames { command: Command::Disconnect, expected: 3, found: 4 };
    assert_eq!(peer_err(wire), expected);
    assert_eq!(broker_err(wire), expected);
    assert_eq!(
        broker_err(&[b"", b"MDPW01", b"\x05", b""]),
        DecodeError::TrailingFrames { command: Command::Disconnect, expected: 3, found: 4 }
    );
}

#[test]
fn v01_request_and_reply_share_frames() {
    let wire: &[&[u8]] = &[b"", b"MDPC01", b"echo", b"hello"];
    assert_eq!(
        PeerCommand::decode(frames(wire)),
        Ok((Dialect::V01, PeerCommand::Request { service: b(b"echo"), body: vec![b(b"hello")] }))
    );
    assert_eq!(
        BrokerCommand::decode(frames(wire)),
        Ok((Dialect::V01, BrokerCommand::Final { service: Some(b(b"echo")), body: vec![b(b"hello")] }))
    );
}

// ---------------------------------------------------------------------------
// No copies

/// Heap frames with distinct contents, so that a copy would have another address.
fn heap(tag: u8) -> Bytes {
    Bytes::from(vec![tag; 48])
}

fn ptrs(frames: &[Bytes]) -> Vec<*const u8> {
    frames.iter().map(|f| f.as_ptr()).collect()
}

#[test]
fn decode_and_encode_never_copy_frames() {
    for dialect in Dialect::ALL {
        let body = vec![heap(1), heap(2)];
        let service = heap(3);
        let client = heap(4);

        let peer = [
            PeerCommand::Request { service: service.clone(), body: body.clone() },
            PeerCommand::Final { client: client.clone(), body: body.clone() },
        ];
        let peer = peer.into_iter().chain(
            dialect.supports_partial().then(|| PeerCommand::Partial { client: client.clone(), body: body.clone() }),
        );
        for command in peer {
            let wire = command.encode(dialect).unwrap();
            // The encoded message holds the command's own frames.
            assert_eq!(ptrs(&wire[wire.len() - 2..]), ptrs(&body), "{dialect}: encode copied the body");
            let sent = ptrs(&wire);
            let (_, decoded) = PeerCommand::decode(wire).unwrap();
            let (head, decoded_body) = match decoded {
                PeerCommand::Request { service, body } => (service, body),
                PeerCommand::Final { client, body } | PeerCommand::Partial { client, body } => (client, body),
                other => panic!("{other:?}"),
            };
            assert_eq!(ptrs(&decoded_body), sent[sent.len() - 2..], "{dialect}: decode copied the body");
            assert!(sent.contains(&head.as_ptr()), "{dialect}: decode copied the service or address");
        }

        let service = (dialect != Dialect::Majortomo).then(|| service.clone());
        let broker = [
            BrokerCommand::Request { client: client.clone(), body: body.clone() },
            BrokerCommand::Final { service: service.clone(), body: body.clone() },
        ];
        let broker = broker.into_iter().chain(
            dialect.supports_partial().then(|| BrokerCommand::Partial { service: service.clone(), body: body.clone() }),
        );
        for command in broker {
            let wire = command.encode(dialect).unwrap();
            assert_eq!(ptrs(&wire[wire.len() - 2..]), ptrs(&body), "{dialect}: encode copied the body");
            let sent = ptrs(&wire);
            let (_, decoded) = BrokerCommand::decode(wire).unwrap();
            let (head, decoded_body) = match decoded {
                BrokerCommand::Request { client, body } => (Some(client), body),
                BrokerCommand::Final { service, body } | BrokerCommand::Partial { service, body } => (service, body),
                other => panic!("{other:?}"),
            };
            assert_eq!(ptrs(&decoded_body), sent[sent.len() - 2..], "{dialect}: decode copied the body");
            if let Some(head) = head {
                assert!(sent.contains(&head.as_ptr()), "{dialect}: decode copied the service or address");
            }
        }
    }
}

#[test]
fn decoded_body_points_into_the_input_frame() {
    let input = vec![b(b""), b(b"MDPW02"), b(b"\x04"), heap(9), b(b""), heap(10)];
    let body_ptr = input[5].as_ptr();
    let client_ptr = input[3].as_ptr();
    let (dialect, command) = PeerCommand::decode(input).unwrap();
    assert_eq!(dialect, Dialect::Majortomo);
    let PeerCommand::Final { client, body } = command else { panic!("not a FINAL: {command:?}") };
    assert_eq!(body.len(), 1);
    assert_eq!(body[0].as_ptr(), body_ptr);
    assert_eq!(client.as_ptr(), client_ptr);
}

// ---------------------------------------------------------------------------
// Property tests

fn any_dialect() -> impl Strategy<Value = Dialect> {
    proptest::sample::select(Dialect::ALL.to_vec())
}

fn bytes(len: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), len).prop_map(Bytes::from)
}

/// 0..=4 frames (at least `min`) of 0..=32 arbitrary bytes.
fn body(min: usize) -> impl Strategy<Value = Multipart> {
    proptest::collection::vec(bytes(0..=32), min..=4)
}

/// Non-empty, arbitrary bytes: not UTF-8, with 0x00, anything.
fn service() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        4 => bytes(1..=32),
        1 => Just(b(b"\x00")),
        1 => Just(b(b"\xff\xfe\x00echo")),
        1 => Just(b(b"mmi.service")),
    ]
}

/// Opaque client address; the codec does not look inside.
fn client() -> impl Strategy<Value = Bytes> {
    bytes(0..=32)
}

fn peer_command(dialect: Dialect) -> BoxedStrategy<PeerCommand> {
    let mut arms = vec![
        (service(), body(1)).prop_map(|(service, body)| PeerCommand::Request { service, body }).boxed(),
        service().prop_map(|service| PeerCommand::Ready { service }).boxed(),
        (client(), body(0)).prop_map(|(client, body)| PeerCommand::Final { client, body }).boxed(),
        Just(PeerCommand::Heartbeat).boxed(),
        Just(PeerCommand::Disconnect).boxed(),
    ];
    if dialect.supports_partial() {
        arms.push((client(), body(0)).prop_map(|(client, body)| PeerCommand::Partial { client, body }).boxed());
    }
    Union::new(arms).boxed()
}

fn broker_command(dialect: Dialect) -> BoxedStrategy<BrokerCommand> {
    let reply_service =
        if dialect == Dialect::Majortomo { Just(None).boxed() } else { service().prop_map(Some).boxed() };
    let mut arms = vec![
        (reply_service.clone(), body(0)).prop_map(|(service, body)| BrokerCommand::Final { service, body }).boxed(),
        (client(), body(1)).prop_map(|(client, body)| BrokerCommand::Request { client, body }).boxed(),
        Just(BrokerCommand::Heartbeat).boxed(),
        Just(BrokerCommand::Disconnect).boxed(),
    ];
    if dialect.supports_partial() {
        arms.push(
            (reply_service, body(0)).prop_map(|(service, body)| BrokerCommand::Partial { service, body }).boxed(),
        );
    }
    Union::new(arms).boxed()
}

/// A frame as a fuzzer should try them: mostly the frames MDP is made of.
fn wire_frame() -> impl Strategy<Value = Bytes> {
    let headers: Vec<&'static [u8]> = vec![b"MDPC01", b"MDPW01", b"MDPC02", b"MDPW02"];
    prop_oneof![
        3 => Just(Bytes::new()),
        3 => proptest::sample::select(headers).prop_map(Bytes::from_static),
        3 => (0u8..=7).prop_map(|c| Bytes::copy_from_slice(&[c])),
        2 => bytes(0..=64),
    ]
}

fn wire() -> impl Strategy<Value = Multipart> {
    proptest::collection::vec(wire_frame(), 0..=12)
}

#[derive(Debug, Clone)]
enum Edit {
    Remove(Index),
    Insert(Index, Bytes),
    Replace(Index, Bytes),
    /// Keeps 1 or more frames: `Remove` and the random frames cover the empty message.
    Truncate(Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<Index>().prop_map(Edit::Remove),
        (any::<Index>(), wire_frame()).prop_map(|(i, f)| Edit::Insert(i, f)),
        (any::<Index>(), wire_frame()).prop_map(|(i, f)| Edit::Replace(i, f)),
        any::<Index>().prop_map(Edit::Truncate),
    ]
}

/// A valid message in either direction with a few frames removed, inserted
/// or replaced: reaches the deeper checks more often than random frames.
fn mutated_wire() -> impl Strategy<Value = Multipart> {
    let valid = any_dialect().prop_flat_map(|d| {
        prop_oneof![
            peer_command(d).prop_map(move |c| c.encode(d).expect("a valid command encodes")),
            broker_command(d).prop_map(move |c| c.encode(d).expect("a valid command encodes")),
        ]
    });
    (valid, proptest::collection::vec(edit(), 0..=3)).prop_map(|(mut frames, edits)| {
        for edit in edits {
            match edit {
                Edit::Insert(i, f) => frames.insert(i.index(frames.len() + 1), f),
                _ if frames.is_empty() => {}
                Edit::Remove(i) => {
                    frames.remove(i.index(frames.len()));
                }
                Edit::Replace(i, f) => {
                    let i = i.index(frames.len());
                    frames[i] = f;
                }
                Edit::Truncate(i) => frames.truncate(i.index(frames.len()) + 1),
            }
        }
        frames
    })
}

/// The dialect the first two frames name, from the table in the codec's docs.
fn header_dialect(frames: &[Bytes]) -> Option<Dialect> {
    let first = frames.first().map(|f| f.as_ref());
    let second = frames.get(1).map(|f| f.as_ref());
    match (first, second) {
        (Some(b""), Some(b"MDPC01" | b"MDPW01")) => Some(Dialect::V01),
        (Some(b""), Some(b"MDPC02" | b"MDPW02")) => Some(Dialect::Majortomo),
        (Some(b"MDPC02" | b"MDPW02"), _) => Some(Dialect::V02),
        _ => None,
    }
}

/// A decode error must describe the input it came from.
fn check_error(err: &DecodeError, input: &[Bytes]) -> Result<(), TestCaseError> {
    match err {
        DecodeError::Empty => prop_assert!(input.is_empty()),
        DecodeError::Missing { index, .. } => prop_assert_eq!(*index, input.len()),
        DecodeError::Unexpected { index, found, .. } => prop_assert_eq!(Some(&found.0), input.get(*index)),
        DecodeError::UnknownCommand { index, dialect, found, .. } => {
            prop_assert_eq!(Some(&found.0), input.get(*index));
            prop_assert_eq!(Some(*dialect), header_dialect(input));
        }
        DecodeError::EmptyService { index } => prop_assert_eq!(input.get(*index).map(Bytes::len), Some(0)),
        DecodeError::TrailingFrames { expected, found, .. } => {
            prop_assert_eq!(*found, input.len());
            prop_assert!(*expected < *found);
        }
        other => return Err(TestCaseError::fail(format!("unchecked DecodeError variant: {other:?}"))),
    }
    prop_assert!(!err.to_string().is_empty());
    Ok(())
}

/// Decodes `input` in both directions: no panic; whatever decodes re-encodes
/// to exactly `input`; whatever fails says why in terms of `input`.
fn check_decode(input: &Multipart) -> Result<(), TestCaseError> {
    match PeerCommand::decode(input.clone()) {
        Ok((dialect, command)) => {
            prop_assert_eq!(Some(dialect), header_dialect(input));
            prop_assert_eq!(command.encode(dialect), Ok(input.clone()));
        }
        Err(err) => check_error(&err, input)?,
    }
    match BrokerCommand::decode(input.clone()) {
        Ok((dialect, command)) => {
            prop_assert_eq!(Some(dialect), header_dialect(input));
            prop_assert_eq!(command.encode(dialect), Ok(input.clone()));
        }
        Err(err) => check_error(&err, input)?,
    }
    Ok(())
}

proptest! {
    #[test]
    fn peer_command_round_trips((dialect, command) in any_dialect().prop_flat_map(|d| (Just(d), peer_command(d)))) {
        let wire = command.clone().encode(dialect).expect("a command valid for its dialect encodes");
        prop_assert_eq!(PeerCommand::decode(wire), Ok((dialect, command)));
    }

    #[test]
    fn broker_command_round_trips((dialect, command) in any_dialect().prop_flat_map(|d| (Just(d), broker_command(d)))) {
        let wire = command.clone().encode(dialect).expect("a command valid for its dialect encodes");
        prop_assert_eq!(BrokerCommand::decode(wire), Ok((dialect, command)));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn arbitrary_frames_decode_or_fail_cleanly(input in wire()) {
        check_decode(&input)?;
    }

    #[test]
    fn mutated_messages_decode_or_fail_cleanly(input in mutated_wire()) {
        check_decode(&input)?;
    }
}
