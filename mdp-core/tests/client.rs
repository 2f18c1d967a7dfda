//! The client state machine through its public API, under virtual time.
#![allow(clippy::disallowed_methods)] // stands in for the application, which reads the clock

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mdp_core::{
    BrokerCommand, Client, ClientConfig, ClientDiscardReason, ClientEvent, ClientTimer, ClientUsageError, Command,
    ConfigError, Dialect, FailReason, Lane, Multipart, PeerTransmit, RequestId,
};
use proptest::prelude::*;

const TIMEOUT: Duration = Duration::from_millis(2500);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn frames(parts: &[&[u8]]) -> Multipart {
    parts.iter().map(|p| Bytes::copy_from_slice(p)).collect()
}

fn b(s: &'static [u8]) -> Bytes {
    Bytes::from_static(s)
}

fn client(dialect: Dialect, t0: Instant) -> Client {
    Client::new(ClientConfig::new(dialect), t0).expect("valid config")
}

/// Drains a one-lane client: what it sent (all on lane 0) and its events.
fn drain(c: &mut Client) -> (Vec<PeerTransmit>, Vec<ClientEvent>) {
    let mut sent = Vec::new();
    while let Some(t) = c.poll_transmit() {
        assert_eq!(t.lane, Lane(0), "a one-lane client sent on another lane");
        sent.push(t.transmit);
    }
    let mut events = Vec::new();
    while let Some(e) = c.poll_event() {
        events.push(e);
    }
    (sent, events)
}

fn send(parts: &[&[u8]]) -> PeerTransmit {
    PeerTransmit::Send(frames(parts))
}

/// The frames of a REQUEST for `service` with a one-frame body.
fn request_frames(dialect: Dialect, service: &[u8], body: &[u8]) -> PeerTransmit {
    match dialect {
        Dialect::V01 => send(&[b"", b"MDPC01", service, body]),
        Dialect::V02 => send(&[b"MDPC02", &[0x01], service, body]),
        Dialect::Majortomo => send(&[b"", b"MDPC02", &[0x02], service, body]),
    }
}

/// Sends a request and checks it went out.
fn ask(c: &mut Client, now: Instant, service: &'static [u8], body: &'static [u8]) -> RequestId {
    let id = c.request(now, b(service), frames(&[body])).expect("request accepted");
    assert_eq!(drain(c), (vec![request_frames(c.dialect(), service, body)], vec![]));
    id
}

/// Makes a request that must wait: one for its service is on the wire.
fn queue(c: &mut Client, now: Instant, service: &'static [u8], body: &'static [u8]) -> RequestId {
    let id = c.request(now, b(service), frames(&[body])).expect("request accepted");
    assert_eq!(drain(c), (vec![], vec![]), "a second request for one service waits its turn");
    id
}

/// Passes one message in; returns the events and what was sent.
fn feed(c: &mut Client, now: Instant, message: Multipart) -> (Vec<PeerTransmit>, Vec<ClientEvent>) {
    c.handle_message(now, Lane(0), message);
    drain(c)
}

/// A reply from the broker; `service` is left out in the majortomo dialect.
fn reply(dialect: Dialect, partial: bool, service: &'static [u8], body: &'static [u8]) -> Multipart {
    let service = (dialect != Dialect::Majortomo).then(|| b(service));
    let body = frames(&[body]);
    let command =
        if partial { BrokerCommand::Partial { service, body } } else { BrokerCommand::Final { service, body } };
    command.encode(dialect).expect("encodable")
}

fn final_(dialect: Dialect, service: &'static [u8], body: &'static [u8]) -> Multipart {
    reply(dialect, false, service, body)
}

fn partial(dialect: Dialect, service: &'static [u8], body: &'static [u8]) -> Multipart {
    reply(dialect, true, service, body)
}

/// Passes one message in and returns the one event it caused.
fn receive(c: &mut Client, now: Instant, message: Multipart) -> ClientEvent {
    c.handle_message(now, Lane(0), message);
    let (sent, mut events) = drain(c);
    assert!(sent.is_empty(), "a reply makes the client send nothing");
    assert_eq!(events.len(), 1, "{events:?}");
    events.remove(0)
}

fn got_reply(id: RequestId, body: &'static [u8]) -> ClientEvent {
    ClientEvent::Reply { id, body: frames(&[body]) }
}

fn got_partial(id: RequestId, body: &'static [u8]) -> ClientEvent {
    ClientEvent::Partial { id, body: frames(&[body]) }
}

fn unmatched(command: Command, service: Option<&'static [u8]>) -> ClientEvent {
    let service = service.map(|s| mdp_core::Found(b(s)));
    ClientEvent::Discarded { reason: ClientDiscardReason::Unmatched { command, service, lane: Lane(0) } }
}

// ---- requests and replies ----

#[test]
fn request_frames_in_each_dialect() {
    let t0 = Instant::now();
    for dialect in Dialect::ALL {
        let mut c = client(dialect, t0);
        let first = ask(&mut c, t0, b"echo", b"hello");
        let second = c.request(t0, b(b"echo"), frames(&[b"a", b"b"])).unwrap();
        assert_eq!(drain(&mut c), (vec![], vec![]), "{dialect}: the second waits for the first");
        assert!(second > first, "ids increase");
        assert_eq!(second.get(), first.get() + 1);
        assert_eq!(c.outstanding(), 2);
        assert_eq!(c.poll_timeout(), Some(t0 + TIMEOUT));
        let expected = match dialect {
            Dialect::V01 => send(&[b"", b"MDPC01", b"echo", b"a", b"b"]),
            Dialect::V02 => send(&[b"MDPC02", &[0x01], b"echo", b"a", b"b"]),
            Dialect::Majortomo => send(&[b"", b"MDPC02", &[0x02], b"echo", b"a", b"b"]),
        };
        let answered = feed(&mut c, t0 + ms(5), final_(dialect, b"echo", b"r"));
        assert_eq!(answered, (vec![expected], vec![got_reply(first, b"r")]), "{dialect}");
        assert_eq!(c.poll_timeout(), Some(t0 + ms(5) + TIMEOUT), "its deadline starts when it is sent");
    }
}

#[test]
fn reply_in_each_dialect() {
    let t0 = Instant::now();
    for dialect in Dialect::ALL {
        let mut c = client(dialect, t0);
        let id = ask(&mut c, t0, b"echo", b"hello");
        // Exact broker frames, written out rather than encoded.
        let message = match dialect {
            Dialect::V01 => frames(&[b"", b"MDPC01", b"echo", b"hello"]),
            Dialect::V02 => frames(&[b"MDPC02", &[0x03], b"echo", b"hello"]),
            Dialect::Majortomo => frames(&[b"", b"MDPC02", &[0x04], b"hello"]),
        };
        assert_eq!(receive(&mut c, t0 + ms(1), message), got_reply(id, b"hello"), "{dialect}");
        assert!(!c.is_outstanding(id));
        assert_eq!(c.poll_timeout(), None);
    }
}

#[test]
fn v01_gets_one_reply_per_request() {
    let t0 = Instant::now();
    let mut c = client(Dialect::V01, t0);
    let first = ask(&mut c, t0, b"echo", b"1");
    let second = queue(&mut c, t0, b"echo", b"2");
    let answered = feed(&mut c, t0, final_(Dialect::V01, b"echo", b"r1"));
    assert_eq!(answered, (vec![request_frames(Dialect::V01, b"echo", b"2")], vec![got_reply(first, b"r1")]));
    assert_eq!(receive(&mut c, t0, final_(Dialect::V01, b"echo", b"r2")), got_reply(second, b"r2"));
    assert_eq!(receive(&mut c, t0, final_(Dialect::V01, b"echo", b"r3")), unmatched(Command::Final, Some(b"echo")));
}

#[test]
fn replies_match_fifo_per_service_across_two_services() {
    let t0 = Instant::now();
    let d = Dialect::V02;
    let mut c = client(d, t0);
    let a1 = ask(&mut c, t0, b"a", b"a1");
    let b1 = ask(&mut c, t0, b"b", b"b1");
    let a2 = queue(&mut c, t0, b"a", b"a2");
    let b2 = queue(&mut c, t0, b"b", b"b2");
    let a3 = queue(&mut c, t0, b"a", b"a3");
    // Each step: what comes in, the event it causes, and the request it lets
    // go out (the next one waiting for that service).
    type Step = (Multipart, ClientEvent, Option<(&'static [u8], &'static [u8])>);
    let script: Vec<Step> = vec![
        (partial(d, b"b", b"x"), got_partial(b1, b"x"), None),
        (final_(d, b"b", b"y"), got_reply(b1, b"y"), Some((b"b", b"b2"))),
        (final_(d, b"a", b"z"), got_reply(a1, b"z"), Some((b"a", b"a2"))),
        (partial(d, b"a", b"p"), got_partial(a2, b"p"), None),
        (partial(d, b"a", b"q"), got_partial(a2, b"q"), None),
        (final_(d, b"a", b"r"), got_reply(a2, b"r"), Some((b"a", b"a3"))),
        (final_(d, b"b", b"s"), got_reply(b2, b"s"), None),
        (partial(d, b"b", b"t"), unmatched(Command::Partial, Some(b"b")), None),
        (final_(d, b"c", b"u"), unmatched(Command::Final, Some(b"c")), None),
        (final_(d, b"a", b"v"), got_reply(a3, b"v"), None),
    ];
    for (i, (message, event, next)) in script.into_iter().enumerate() {
        let sent: Vec<PeerTransmit> = next.map(|(s, body)| request_frames(d, s, body)).into_iter().collect();
        assert_eq!(feed(&mut c, t0 + ms(i as u64), message), (sent, vec![event]), "step {i}");
    }
    assert_eq!(c.outstanding(), 0);
}

#[test]
fn majortomo_matches_the_oldest_request_overall() {
    let t0 = Instant::now();
    let d = Dialect::Majortomo;
    let mut c = client(d, t0);
    let first = ask(&mut c, t0, b"echo", b"1");
    let second = queue(&mut c, t0, b"echo", b"2");
    assert_eq!(receive(&mut c, t0, partial(d, b"", b"p")), got_partial(first, b"p"));
    let answered = feed(&mut c, t0, final_(d, b"", b"f"));
    assert_eq!(answered, (vec![request_frames(d, b"echo", b"2")], vec![got_reply(first, b"f")]));
    assert_eq!(receive(&mut c, t0, final_(d, b"", b"g")), got_reply(second, b"g"));
    assert_eq!(receive(&mut c, t0, final_(d, b"", b"h")), unmatched(Command::Final, None));
}

#[test]
fn majortomo_sends_a_second_service_when_the_lane_is_free() {
    let t0 = Instant::now();
    let d = Dialect::Majortomo;
    let mut c = client(d, t0);
    let echo = ask(&mut c, t0, b"echo", b"1");
    // Majortomo replies name no service: a lane carries one request at a
    // time, so a request for another service waits, and so does one for the
    // same service behind it, in order.
    let time = queue(&mut c, t0, b"time", b"2");
    let echo2 = queue(&mut c, t0, b"echo", b"3");
    let answered = feed(&mut c, t0, final_(d, b"", b"r1"));
    assert_eq!(answered, (vec![request_frames(d, b"time", b"2")], vec![got_reply(echo, b"r1")]));
    let answered = feed(&mut c, t0, final_(d, b"", b"r2"));
    assert_eq!(answered, (vec![request_frames(d, b"echo", b"3")], vec![got_reply(time, b"r2")]));
    assert_eq!(receive(&mut c, t0, final_(d, b"", b"r3")), got_reply(echo2, b"r3"));
    assert_eq!(c.outstanding(), 0);
}

#[test]
fn other_dialects_allow_any_mix_of_services() {
    let t0 = Instant::now();
    for dialect in [Dialect::V01, Dialect::V02] {
        let mut c = client(dialect, t0);
        ask(&mut c, t0, b"echo", b"1");
        ask(&mut c, t0, b"time", b"2");
    }
}

// ---- usage errors ----

#[test]
fn request_usage_errors() {
    let t0 = Instant::now();
    let mut c = client(Dialect::V02, t0);
    assert_eq!(c.request(t0, Bytes::new(), frames(&[b"x"])), Err(ClientUsageError::EmptyService));
    assert_eq!(c.request(t0, b(b"echo"), vec![]), Err(ClientUsageError::EmptyBody));
    assert_eq!(drain(&mut c), (vec![], vec![]));
    assert_eq!(c.outstanding(), 0);
}

#[test]
fn config_errors() {
    let t0 = Instant::now();
    let mut config = ClientConfig::new(Dialect::V01);
    config.timeout = Duration::ZERO;
    assert_eq!(Client::new(config, t0).err(), Some(ConfigError::Zero("timeout")));
    let mut config = ClientConfig::new(Dialect::V01);
    config.tries = 0;
    assert_eq!(Client::new(config, t0).err(), Some(ConfigError::Zero("tries")));
    let config = ClientConfig::new(Dialect::V01).with_lanes(0);
    assert_eq!(Client::new(config, t0).err(), Some(ConfigError::Zero("lanes")));
    let config = ClientConfig::new(Dialect::V01);
    assert_eq!((config.timeout, config.tries, config.max_outstanding, config.lanes), (TIMEOUT, 3, 1024, 1));
}

#[test]
fn max_outstanding_is_enforced() {
    let t0 = Instant::now();
    let mut config = ClientConfig::new(Dialect::V02);
    config.max_outstanding = 2;
    let mut c = Client::new(config, t0).unwrap();
    let first = ask(&mut c, t0, b"a", b"1");
    ask(&mut c, t0, b"b", b"2");
    assert_eq!(c.request(t0, b(b"a"), frames(&[b"3"])), Err(ClientUsageError::TooManyOutstanding { max: 2 }));
    assert_eq!(drain(&mut c), (vec![], vec![]));
    assert_eq!(receive(&mut c, t0, final_(Dialect::V02, b"a", b"r")), got_reply(first, b"r"));
    ask(&mut c, t0, b"a", b"3");
}

#[test]
fn error_messages_say_what_was_wrong() {
    let err = ClientUsageError::TooManyOutstanding { max: 2 };
    assert_eq!(err.to_string(), "2 requests are outstanding already (max_outstanding)");
    let found = Some(mdp_core::Found(b(b"a")));
    let reason = ClientDiscardReason::Unmatched { command: Command::Final, service: found, lane: Lane(0) };
    assert_eq!(reason.to_string(), "FINAL from service \"a\" on lane 0 matches no request on the wire");
    let reason = ClientDiscardReason::Unmatched { command: Command::Partial, service: None, lane: Lane(3) };
    assert_eq!(reason.to_string(), "PARTIAL on lane 3 matches no request on the wire");
    let reason = ClientDiscardReason::NoSuchLane { lane: Lane(3), lanes: 2 };
    assert_eq!(reason.to_string(), "message for lane 3, but this client has 2 lanes");
    assert_eq!(FailReason::RetriesExhausted { tries: 3 }.to_string(), "no reply to any of 3 tries");
}

// ---- timeouts and retries ----

#[test]
fn timeout_reconnects_resends_and_fails_after_the_last_try() {
    let t0 = Instant::now();
    for dialect in Dialect::ALL {
        let mut c = client(dialect, t0);
        let id = ask(&mut c, t0, b"echo", b"x");
        for attempt in 1..=2u32 {
            let due = t0 + TIMEOUT * attempt;
            assert_eq!(c.poll_timeout(), Some(due));
            c.handle_timeout(due - Duration::from_nanos(1));
            assert_eq!(drain(&mut c), (vec![], vec![]), "one nanosecond early");
            c.handle_timeout(due);
            let resend = request_frames(dialect, b"echo", b"x");
            assert_eq!(drain(&mut c), (vec![PeerTransmit::Reconnect, resend], vec![]), "{dialect} try {attempt}");
        }
        c.handle_timeout(t0 + TIMEOUT * 3);
        let failed = ClientEvent::Failed { id, reason: FailReason::RetriesExhausted { tries: 3 } };
        assert_eq!(drain(&mut c), (vec![PeerTransmit::Reconnect], vec![failed]), "{dialect}");
        assert_eq!(c.poll_timeout(), None);
        assert_eq!(c.outstanding(), 0);
    }
}

#[test]
fn one_try_fails_with_timeout() {
    let t0 = Instant::now();
    let mut config = ClientConfig::new(Dialect::V02);
    config.tries = 1;
    config.timeout = ms(100);
    let mut c = Client::new(config, t0).unwrap();
    let id = ask(&mut c, t0, b"echo", b"x");
    c.handle_timeout(t0 + ms(100));
    let failed = ClientEvent::Failed { id, reason: FailReason::Timeout };
    assert_eq!(drain(&mut c), (vec![PeerTransmit::Reconnect], vec![failed]));
}

#[test]
fn a_timeout_resends_every_outstanding_request_in_order_without_using_their_tries() {
    let t0 = Instant::now();
    let d = Dialect::V02;
    let mut c = client(d, t0);
    let a1 = ask(&mut c, t0, b"a", b"a1");
    let b1 = ask(&mut c, t0 + ms(1000), b"b", b"b1");
    let a2 = queue(&mut c, t0 + ms(2000), b"a", b"a2");
    // a1 times out; b1 goes along to the new connection; a2 still waits.
    c.handle_timeout(t0 + TIMEOUT);
    let expected = vec![PeerTransmit::Reconnect, request_frames(d, b"a", b"a1"), request_frames(d, b"b", b"b1")];
    assert_eq!(drain(&mut c), (expected, vec![]));
    // Both now share one fresh deadline.
    assert_eq!(c.poll_timeout(), Some(t0 + TIMEOUT * 2));
    // a1's answer lets a2 go, with its own deadline.
    let answered = feed(&mut c, t0 + ms(2600), final_(d, b"a", b"r"));
    assert_eq!(answered, (vec![request_frames(d, b"a", b"a2")], vec![got_reply(a1, b"r")]));
    // b1 times out at 5.0 s (its second try); a2 (first try) is resent with it.
    c.handle_timeout(t0 + TIMEOUT * 2);
    let resent = vec![PeerTransmit::Reconnect, request_frames(d, b"b", b"b1"), request_frames(d, b"a", b"a2")];
    assert_eq!(drain(&mut c), (resent, vec![]));
    // 7.5 s: both time out: b1's third try, a2's second.
    c.handle_timeout(t0 + TIMEOUT * 3);
    drain(&mut c);
    // 10 s: b1 is out of tries; a2, resent without using a try at 5 s, goes on.
    c.handle_timeout(t0 + TIMEOUT * 4 - ms(1));
    assert_eq!(drain(&mut c), (vec![], vec![]));
    c.handle_timeout(t0 + TIMEOUT * 4);
    let exhausted = FailReason::RetriesExhausted { tries: 3 };
    let events = vec![ClientEvent::Failed { id: b1, reason: exhausted }];
    assert_eq!(drain(&mut c), (vec![PeerTransmit::Reconnect, request_frames(d, b"a", b"a2")], events));
    c.handle_timeout(t0 + TIMEOUT * 5);
    assert_eq!(drain(&mut c), (vec![PeerTransmit::Reconnect], vec![ClientEvent::Failed { id: a2, reason: exhausted }]));
}

#[test]
fn connection_lost_resends_what_was_on_the_wire_each_using_a_try() {
    let t0 = Instant::now();
    let d = Dialect::V02;
    let mut config = ClientConfig::new(d);
    config.tries = 2;
    let mut c = Client::new(config, t0).unwrap();
    // With nothing outstanding, only a new connection.
    c.handle_connection_lost(t0, Lane(0));
    assert_eq!(drain(&mut c), (vec![PeerTransmit::Reconnect], vec![]));
    let a1 = ask(&mut c, t0, b"a", b"a1");
    let b1 = ask(&mut c, t0 + ms(1000), b"b", b"b1");
    let a2 = queue(&mut c, t0 + ms(1000), b"a", b"a2");
    // Long before any timeout: both on the wire go again, a2 still waits.
    c.handle_connection_lost(t0 + ms(1100), Lane(0));
    let resent = vec![PeerTransmit::Reconnect, request_frames(d, b"a", b"a1"), request_frames(d, b"b", b"b1")];
    assert_eq!(drain(&mut c), (resent, vec![]));
    assert_eq!(c.poll_timeout(), Some(t0 + ms(1100) + TIMEOUT), "fresh deadlines");
    // Lost again: both used their 2 tries; a2 goes out on the new connection.
    c.handle_connection_lost(t0 + ms(1200), Lane(0));
    let lost = FailReason::ConnectionLost { tries: 2 };
    let failed = vec![ClientEvent::Failed { id: a1, reason: lost }, ClientEvent::Failed { id: b1, reason: lost }];
    assert_eq!(drain(&mut c), (vec![PeerTransmit::Reconnect, request_frames(d, b"a", b"a2")], failed));
    assert!(c.is_outstanding(a2));
    assert_eq!(lost.to_string(), "the connection was lost with the last of 2 tries");
}

#[test]
fn requests_not_timed_out_keep_their_tries() {
    let t0 = Instant::now();
    let mut config = ClientConfig::new(Dialect::V01);
    config.tries = 2;
    let mut c = Client::new(config, t0).unwrap();
    let old = ask(&mut c, t0, b"a", b"1");
    let young = ask(&mut c, t0 + ms(2000), b"b", b"2");
    c.handle_timeout(t0 + TIMEOUT); // old: try 2; young resent, still on try 1
    drain(&mut c);
    c.handle_timeout(t0 + TIMEOUT * 2); // old fails; young: try 2
    let (sent, events) = drain(&mut c);
    let failed = ClientEvent::Failed { id: old, reason: FailReason::RetriesExhausted { tries: 2 } };
    assert_eq!(events, vec![failed]);
    assert_eq!(sent, vec![PeerTransmit::Reconnect, request_frames(Dialect::V01, b"b", b"2")]);
    assert!(c.is_outstanding(young));
}

#[test]
fn resending_after_partials_emits_restarted() {
    let t0 = Instant::now();
    let d = Dialect::V02;
    let mut c = client(d, t0);
    let streamed = ask(&mut c, t0, b"a", b"1");
    let _quiet = ask(&mut c, t0, b"b", b"2");
    assert_eq!(receive(&mut c, t0 + ms(1), partial(d, b"a", b"p1")), got_partial(streamed, b"p1"));
    c.handle_timeout(t0 + TIMEOUT);
    let (sent, events) = drain(&mut c);
    assert_eq!(sent.len(), 3);
    // Only the request whose parts were delivered is restarted.
    assert_eq!(events, vec![ClientEvent::Restarted { id: streamed }]);
    // The new attempt streams from its first part again.
    assert_eq!(receive(&mut c, t0 + TIMEOUT, partial(d, b"a", b"p1")), got_partial(streamed, b"p1"));
    assert_eq!(receive(&mut c, t0 + TIMEOUT, final_(d, b"a", b"f")), got_reply(streamed, b"f"));
}

#[test]
fn a_late_reply_after_failure_is_discarded_not_given_to_a_newer_request() {
    let t0 = Instant::now();
    let d = Dialect::V02;
    let mut config = ClientConfig::new(d);
    config.tries = 1;
    let mut c = Client::new(config, t0).unwrap();
    let old = ask(&mut c, t0, b"a", b"old");
    c.handle_timeout(t0 + TIMEOUT);
    // The failure comes with a reconnect, so the old connection, where the
    // late reply would arrive, is gone before any newer request is sent.
    let (sent, events) = drain(&mut c);
    assert_eq!(sent, vec![PeerTransmit::Reconnect]);
    assert_eq!(events, vec![ClientEvent::Failed { id: old, reason: FailReason::Timeout }]);
    // A late reply that still slips through matches nothing.
    assert_eq!(receive(&mut c, t0 + TIMEOUT + ms(1), final_(d, b"a", b"late")), unmatched(Command::Final, Some(b"a")));
    let new = ask(&mut c, t0 + TIMEOUT + ms(2), b"a", b"new");
    assert_eq!(receive(&mut c, t0 + TIMEOUT + ms(3), final_(d, b"a", b"fresh")), got_reply(new, b"fresh"));
}

// ---- bad input ----

#[test]
fn malformed_and_misdirected_input_is_discarded() {
    let t0 = Instant::now();
    let d = Dialect::V02;
    let mut c = client(d, t0);
    let id = ask(&mut c, t0, b"a", b"1");
    let malformed: Vec<Multipart> = vec![
        vec![],
        frames(&[b"junk"]),
        frames(&[b"MDPC02"]),
        frames(&[b"MDPC02", &[0x03]]),       // FINAL without a service
        frames(&[b"MDPC02", &[0x03], b""]),  // empty service
        frames(&[b"MDPC02", &[0x01], b"a"]), // REQUEST goes the other way
        frames(&[b"MDPC02", &[0x03, 0x03], b"a"]),
    ];
    for (i, message) in malformed.into_iter().enumerate() {
        let event = receive(&mut c, t0, message);
        assert!(
            matches!(event, ClientEvent::Discarded { reason: ClientDiscardReason::Malformed(_) }),
            "{i}: {event:?}"
        );
    }
    let heartbeat = BrokerCommand::Heartbeat.encode(d).unwrap();
    let not_for_clients =
        ClientEvent::Discarded { reason: ClientDiscardReason::NotForClients { command: Command::Heartbeat } };
    assert_eq!(receive(&mut c, t0, heartbeat), not_for_clients);
    let wrong = ClientEvent::Discarded {
        reason: ClientDiscardReason::WrongDialect { expected: Dialect::V02, found: Dialect::V01 },
    };
    assert_eq!(receive(&mut c, t0, final_(Dialect::V01, b"a", b"x")), wrong);
    // None of it touched the outstanding request.
    assert!(c.is_outstanding(id));
    assert_eq!(receive(&mut c, t0, final_(d, b"a", b"ok")), got_reply(id, b"ok"));
}

// ---- the timer contract ----

#[test]
fn handle_timeout_early_or_repeated_does_nothing() {
    let t0 = Instant::now();
    let mut c = client(Dialect::V02, t0);
    c.handle_timeout(t0);
    assert_eq!(drain(&mut c), (vec![], vec![]), "nothing outstanding");
    ask(&mut c, t0, b"a", b"1");
    c.handle_timeout(t0 + ms(2499));
    assert_eq!(drain(&mut c), (vec![], vec![]));
    c.handle_timeout(t0 + TIMEOUT);
    assert_eq!(drain(&mut c).0.len(), 2);
    for _ in 0..3 {
        c.handle_timeout(t0 + TIMEOUT);
        assert_eq!(drain(&mut c), (vec![], vec![]));
    }
}

#[test]
fn poll_timeout_is_never_before_now() {
    let t0 = Instant::now();
    let mut c = client(Dialect::V02, t0);
    ask(&mut c, t0, b"a", b"1");
    // The deadline passes without handle_timeout being called.
    let late = t0 + TIMEOUT * 2;
    c.handle_message(late, Lane(0), vec![]);
    drain(&mut c);
    assert_eq!(c.poll_timeout(), Some(late));
}

// ---- lanes ----

fn lanes_client(dialect: Dialect, lanes: usize, t0: Instant) -> Client {
    Client::new(ClientConfig::new(dialect).with_lanes(lanes), t0).expect("valid config")
}

/// Drains a client with several lanes: (lane, transmit) pairs and events.
fn drain_lanes(c: &mut Client) -> (Vec<(usize, PeerTransmit)>, Vec<ClientEvent>) {
    let mut sent = Vec::new();
    while let Some(t) = c.poll_transmit() {
        sent.push((t.lane.0, t.transmit));
    }
    let mut events = Vec::new();
    while let Some(e) = c.poll_event() {
        events.push(e);
    }
    (sent, events)
}

fn on(lane: usize, t: PeerTransmit) -> (usize, PeerTransmit) {
    (lane, t)
}

#[test]
fn requests_for_one_service_spread_over_the_lanes() {
    let t0 = Instant::now();
    let d = Dialect::V02;
    let mut c = lanes_client(d, 3, t0);
    let ids: Vec<RequestId> = [b"0", b"1", b"2", b"3", b"4"]
        .iter()
        .map(|body| c.request(t0, b(b"echo"), frames(&[*body])).unwrap())
        .collect();
    // One per lane; the fourth and fifth wait.
    let sent = vec![
        on(0, request_frames(d, b"echo", b"0")),
        on(1, request_frames(d, b"echo", b"1")),
        on(2, request_frames(d, b"echo", b"2")),
    ];
    assert_eq!(drain_lanes(&mut c), (sent, vec![]));
    assert_eq!((c.outstanding(), c.on_wire()), (5, 3));
    assert_eq!(c.lane_of(ids[3]), None);
    // Lane 1 answers first: its reply is for request 1, and the oldest
    // waiting request takes lane 1.
    c.handle_message(t0 + ms(5), Lane(1), final_(d, b"echo", b"r1"));
    let sent = vec![on(1, request_frames(d, b"echo", b"3"))];
    assert_eq!(drain_lanes(&mut c), (sent, vec![got_reply(ids[1], b"r1")]));
    assert_eq!(c.lane_of(ids[3]), Some(Lane(1)));
    // A reply on lane 0 is lane 0's request's, whatever came before.
    c.handle_message(t0 + ms(6), Lane(0), final_(d, b"echo", b"r0"));
    let sent = vec![on(0, request_frames(d, b"echo", b"4"))];
    assert_eq!(drain_lanes(&mut c), (sent, vec![got_reply(ids[0], b"r0")]));
}

#[test]
fn a_reply_on_a_lane_with_nothing_on_the_wire_for_its_service_is_discarded() {
    let t0 = Instant::now();
    let d = Dialect::V01;
    let mut c = lanes_client(d, 2, t0);
    let first = c.request(t0, b(b"echo"), frames(&[b"x"])).unwrap();
    drain_lanes(&mut c);
    c.handle_message(t0, Lane(1), final_(d, b"echo", b"r"));
    let reason = ClientDiscardReason::Unmatched {
        command: Command::Final,
        service: Some(mdp_core::Found(b(b"echo"))),
        lane: Lane(1),
    };
    assert_eq!(drain_lanes(&mut c), (vec![], vec![ClientEvent::Discarded { reason }]));
    assert!(c.is_outstanding(first), "lane 0's request is not touched");
    c.handle_message(t0, Lane(2), final_(d, b"echo", b"r"));
    let reason = ClientDiscardReason::NoSuchLane { lane: Lane(2), lanes: 2 };
    assert_eq!(drain_lanes(&mut c), (vec![], vec![ClientEvent::Discarded { reason }]));
}

#[test]
fn a_request_goes_to_the_least_loaded_lane_free_for_its_service() {
    let t0 = Instant::now();
    let d = Dialect::V02;
    let mut c = lanes_client(d, 2, t0);
    let lane = |c: &mut Client, service: &'static [u8]| {
        let id = c.request(t0, b(service), frames(&[b"x"])).unwrap();
        drain_lanes(c);
        c.lane_of(id)
    };
    assert_eq!(lane(&mut c, b"a"), Some(Lane(0)));
    assert_eq!(lane(&mut c, b"b"), Some(Lane(1)), "least loaded");
    assert_eq!(lane(&mut c, b"a"), Some(Lane(1)), "the only lane free for a");
    assert_eq!(lane(&mut c, b"c"), Some(Lane(0)), "one on the wire against two");
    assert_eq!(lane(&mut c, b"a"), None, "both lanes have one for a");
}

#[test]
fn a_timeout_replaces_only_its_own_lane() {
    let t0 = Instant::now();
    let d = Dialect::V02;
    let mut c = lanes_client(d, 2, t0);
    let first = c.request(t0, b(b"echo"), frames(&[b"0"])).unwrap();
    let second = c.request(t0 + ms(1000), b(b"echo"), frames(&[b"1"])).unwrap();
    let other = c.request(t0 + ms(1000), b(b"time"), frames(&[b"2"])).unwrap();
    drain_lanes(&mut c);
    assert_eq!([c.lane_of(first), c.lane_of(second), c.lane_of(other)], [Some(Lane(0)), Some(Lane(1)), Some(Lane(0))]);
    c.handle_timeout(t0 + TIMEOUT);
    // Lane 0 is replaced: the request that timed out and the one beside it
    // go again on the new connection; lane 1 is left alone.
    let sent = vec![
        on(0, PeerTransmit::Reconnect),
        on(0, request_frames(d, b"echo", b"0")),
        on(0, request_frames(d, b"time", b"2")),
    ];
    assert_eq!(drain_lanes(&mut c), (sent, vec![]));
    assert_eq!(c.poll_timeout(), Some(t0 + ms(1000) + TIMEOUT), "lane 1's deadline is next");
    c.handle_timeout(t0 + ms(1000) + TIMEOUT);
    let sent = vec![on(1, PeerTransmit::Reconnect), on(1, request_frames(d, b"echo", b"1"))];
    assert_eq!(drain_lanes(&mut c), (sent, vec![]));
}

#[test]
fn a_lost_connection_replaces_only_its_lane() {
    let t0 = Instant::now();
    let d = Dialect::V01;
    let mut config = ClientConfig::new(d).with_lanes(2);
    config.tries = 1;
    let mut c = Client::new(config, t0).unwrap();
    let first = c.request(t0, b(b"echo"), frames(&[b"0"])).unwrap();
    let second = c.request(t0, b(b"echo"), frames(&[b"1"])).unwrap();
    let third = c.request(t0, b(b"echo"), frames(&[b"2"])).unwrap();
    drain_lanes(&mut c);
    c.handle_connection_lost(t0 + ms(10), Lane(1));
    // Its one try used: the request on lane 1 fails, and the waiting one
    // goes on lane 1's new connection.
    let failed = ClientEvent::Failed { id: second, reason: FailReason::ConnectionLost { tries: 1 } };
    let sent = vec![on(1, PeerTransmit::Reconnect), on(1, request_frames(d, b"echo", b"2"))];
    assert_eq!(drain_lanes(&mut c), (sent, vec![failed]));
    assert_eq!((c.lane_of(first), c.lane_of(third)), (Some(Lane(0)), Some(Lane(1))));
    c.handle_connection_lost(t0, Lane(5));
    assert_eq!(drain_lanes(&mut c), (vec![], vec![]), "a lane it does not have is ignored");
}

#[test]
fn majortomo_lanes_carry_one_request_each_whatever_its_service() {
    let t0 = Instant::now();
    let d = Dialect::Majortomo;
    let mut c = lanes_client(d, 2, t0);
    let echo = c.request(t0, b(b"echo"), frames(&[b"1"])).unwrap();
    let time = c.request(t0, b(b"time"), frames(&[b"2"])).unwrap();
    let echo2 = c.request(t0, b(b"echo"), frames(&[b"3"])).unwrap();
    let time2 = c.request(t0, b(b"time"), frames(&[b"4"])).unwrap();
    let sent = vec![on(0, request_frames(d, b"echo", b"1")), on(1, request_frames(d, b"time", b"2"))];
    assert_eq!(drain_lanes(&mut c), (sent, vec![]));
    // Replies name no service: lane 1's is time's. The oldest waiting
    // request, whatever its service, takes the lane.
    c.handle_message(t0, Lane(1), final_(d, b"", b"t"));
    let sent = vec![on(1, request_frames(d, b"echo", b"3"))];
    assert_eq!(drain_lanes(&mut c), (sent, vec![got_reply(time, b"t")]));
    c.handle_message(t0, Lane(0), final_(d, b"", b"e"));
    let sent = vec![on(0, request_frames(d, b"time", b"4"))];
    assert_eq!(drain_lanes(&mut c), (sent, vec![got_reply(echo, b"e")]));
    assert_eq!((c.lane_of(echo2), c.lane_of(time2)), (Some(Lane(1)), Some(Lane(0))));
}

// ---- cancel ----

#[test]
fn cancelling_a_waiting_request_sends_nothing() {
    let t0 = Instant::now();
    let mut c = client(Dialect::V02, t0);
    let first = ask(&mut c, t0, b"echo", b"1");
    let second = queue(&mut c, t0, b"echo", b"2");
    assert!(c.cancel(t0, second));
    assert_eq!(drain(&mut c), (vec![], vec![]));
    assert!(!c.cancel(t0, second), "cancelled already");
    assert_eq!(c.outstanding(), 1);
    // The first's answer sends nothing more: the second is gone.
    let answered = feed(&mut c, t0, final_(Dialect::V02, b"echo", b"r"));
    assert_eq!(answered, (vec![], vec![got_reply(first, b"r")]));
    assert_eq!(c.outstanding(), 0);
}

#[test]
fn cancelling_a_request_on_the_wire_replaces_its_lane_and_sends_the_next() {
    let t0 = Instant::now();
    let d = Dialect::V02;
    let mut config = ClientConfig::new(d);
    config.tries = 1;
    let mut c = Client::new(config, t0).unwrap();
    let slow = ask(&mut c, t0, b"echo", b"slow");
    let beside = ask(&mut c, t0 + ms(100), b"time", b"beside");
    let next = queue(&mut c, t0 + ms(200), b"echo", b"next");
    assert!(c.cancel(t0 + ms(500), slow));
    // A new connection, so the cancelled request's late reply can never
    // arrive; what was beside it goes again; the next request goes out.
    let sent =
        vec![PeerTransmit::Reconnect, request_frames(d, b"time", b"beside"), request_frames(d, b"echo", b"next")];
    assert_eq!(drain(&mut c), (sent, vec![]));
    // The resend used no try: with tries = 1, `beside` is still outstanding,
    // and fails only when its fresh deadline passes.
    assert_eq!(c.poll_timeout(), Some(t0 + ms(500) + TIMEOUT));
    assert_eq!(receive(&mut c, t0 + ms(600), final_(d, b"echo", b"n")), got_reply(next, b"n"));
    c.handle_timeout(t0 + ms(500) + TIMEOUT);
    let failed = ClientEvent::Failed { id: beside, reason: FailReason::Timeout };
    assert_eq!(drain(&mut c), (vec![PeerTransmit::Reconnect], vec![failed]));
}

#[test]
fn after_cancel_no_event_names_the_request() {
    let t0 = Instant::now();
    let d = Dialect::V02;
    let mut c = client(d, t0);
    let id = ask(&mut c, t0, b"echo", b"x");
    // A PARTIAL arrives and the application cancels before draining.
    c.handle_message(t0, Lane(0), partial(d, b"echo", b"p"));
    assert!(c.cancel(t0, id));
    assert_eq!(drain(&mut c), (vec![PeerTransmit::Reconnect], vec![]));
    // Its deadline is gone too: nothing fires.
    assert_eq!(c.poll_timeout(), None);
    c.handle_timeout(t0 + TIMEOUT * 5);
    assert_eq!(drain(&mut c), (vec![], vec![]));
    assert!(!c.is_outstanding(id));
}

#[test]
fn cancel_after_the_reply_came_drops_the_queued_reply_too() {
    let t0 = Instant::now();
    let d = Dialect::V02;
    let mut c = client(d, t0);
    let id = ask(&mut c, t0, b"echo", b"x");
    // The reply is in before the application cancels, and not yet polled.
    c.handle_message(t0, Lane(0), final_(d, b"echo", b"r"));
    assert!(!c.cancel(t0, id), "it was answered already");
    assert_eq!(drain(&mut c), (vec![], vec![]), "no event names a cancelled request");
}

#[test]
fn cancelling_frees_the_lane_slot_for_the_next_request() {
    let t0 = Instant::now();
    let d = Dialect::V02;
    let mut c = lanes_client(d, 2, t0);
    let ids: Vec<RequestId> = (0..3).map(|_| c.request(t0, b(b"echo"), frames(&[b"x"])).unwrap()).collect();
    drain_lanes(&mut c);
    assert!(c.cancel(t0, ids[1]));
    // Lane 1 is replaced and the waiting request goes on it; lane 0 keeps
    // its request and its connection.
    let sent = vec![on(1, PeerTransmit::Reconnect), on(1, request_frames(d, b"echo", b"x"))];
    assert_eq!(drain_lanes(&mut c), (sent, vec![]));
    assert_eq!((c.lane_of(ids[0]), c.lane_of(ids[2])), (Some(Lane(0)), Some(Lane(1))));
}

// ---- properties ----

#[derive(Debug, Clone)]
enum Op {
    Request(bool),
    Junk(Vec<Vec<u8>>),
    Reply { partial: bool, service_b: bool, lane: u8 },
    Timeout,
    Lost(u8),
    Cancel(u8),
    Wait(u16),
}

fn op() -> impl Strategy<Value = Op> {
    let frame = prop::collection::vec(any::<u8>(), 0..8);
    prop_oneof![
        any::<bool>().prop_map(Op::Request),
        prop::collection::vec(frame, 0..6).prop_map(Op::Junk),
        (any::<bool>(), any::<bool>(), 0u8..4).prop_map(|(partial, service_b, lane)| Op::Reply {
            partial,
            service_b,
            lane
        }),
        Just(Op::Timeout),
        (0u8..4).prop_map(Op::Lost),
        any::<u8>().prop_map(Op::Cancel),
        (0u16..3000).prop_map(Op::Wait),
    ]
}

fn dialect() -> impl Strategy<Value = Dialect> {
    prop_oneof![Just(Dialect::V01), Just(Dialect::V02), Just(Dialect::Majortomo)]
}

proptest! {
    /// Whatever the broker sends, on whichever lane and whenever, and
    /// whatever the application cancels: the client never names an id it
    /// did not issue, never names an id after its Reply, Failed or cancel,
    /// keeps within max_outstanding, answers a message with at most one
    /// event, keeps at most one request per service (majortomo: one in all)
    /// on the wire on each lane, sends only on lanes it has, and never asks
    /// to be woken before the latest `now`.
    #[test]
    fn client_events_only_name_live_ids(
        dialect in dialect(),
        lanes in 1usize..4,
        ops in prop::collection::vec(op(), 0..200),
    ) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut passed_in = now;
        let mut config = ClientConfig::new(dialect).with_lanes(lanes);
        config.max_outstanding = 6;
        let mut c = Client::new(config, now).unwrap();
        let mut live: HashMap<RequestId, &'static [u8]> = HashMap::new();
        let mut done: HashSet<RequestId> = HashSet::new();
        for op in ops {
            let mut from_broker = false;
            match op.clone() {
                Op::Request(service_b) => {
                    let service: &'static [u8] = if service_b { b"b" } else { b"a" };
                    if let Ok(id) = c.request(now, b(service), frames(&[b"x"])) {
                        prop_assert!(live.insert(id, service).is_none() && !done.contains(&id), "fresh id");
                    }
                }
                Op::Junk(parts) => {
                    c.handle_message(now, Lane(0), parts.into_iter().map(Bytes::from).collect());
                    from_broker = true;
                }
                Op::Reply { partial, service_b, lane } => {
                    let service: &'static [u8] = if service_b { b"b" } else { b"a" };
                    // MDP/0.1 has no PARTIAL: send its FINAL instead.
                    let partial = partial && dialect != Dialect::V01;
                    c.handle_message(now, Lane(usize::from(lane)), reply(dialect, partial, service, b"r"));
                    from_broker = true;
                }
                Op::Timeout => {
                    now = c.poll_timeout().unwrap_or(now);
                    c.handle_timeout(now);
                }
                Op::Lost(lane) => c.handle_connection_lost(now, Lane(usize::from(lane))),
                Op::Cancel(pick) => {
                    let mut ids: Vec<RequestId> = live.keys().copied().collect();
                    ids.sort();
                    if let Some(&id) = ids.get(usize::from(pick) % ids.len().max(1)) {
                        prop_assert!(c.cancel(now, id));
                        live.remove(&id);
                        done.insert(id);
                    }
                }
                Op::Wait(n) => now += ms(u64::from(n)),
            }
            if !matches!(op, Op::Wait(_)) {
                passed_in = now;
            }
            let (sent, events) = drain_lanes(&mut c);
            prop_assert!(sent.iter().all(|(lane, _)| *lane < lanes));
            if from_broker {
                prop_assert!(events.len() <= 1);
            }
            for event in events {
                let (id, ends) = match event {
                    ClientEvent::Partial { id, .. } | ClientEvent::Restarted { id } => (id, false),
                    ClientEvent::Reply { id, .. } | ClientEvent::Failed { id, .. } => (id, true),
                    _ => continue,
                };
                prop_assert!(live.contains_key(&id), "event for {} which is not live", id);
                if ends {
                    live.remove(&id);
                    done.insert(id);
                }
            }
            prop_assert_eq!(c.outstanding(), live.len());
            prop_assert!(c.outstanding() <= 6);
            let mut slots = HashSet::new();
            for (&id, &service) in &live {
                if let Some(lane) = c.lane_of(id) {
                    let key = if dialect == Dialect::Majortomo { (lane, &b""[..]) } else { (lane, service) };
                    prop_assert!(slots.insert(key), "two requests on the wire on {:?} for {:?}", lane, service);
                }
            }
            prop_assert_eq!(c.on_wire(), slots.len());
            // Nothing waits while a lane could carry it.
            for (&id, &service) in &live {
                if c.lane_of(id).is_none() {
                    let key = if dialect == Dialect::Majortomo { &b""[..] } else { service };
                    let busy = (0..lanes).filter(|&l| slots.contains(&(Lane(l), key))).count();
                    prop_assert_eq!(busy, lanes, "{} waits for {:?} while a lane is free", id, service);
                }
            }
            if let Some(t) = c.poll_timeout() {
                prop_assert!(t >= passed_in);
            }
        }
    }
}

#[test]
fn next_timer_names_the_request_that_times_out_first() {
    let t0 = Instant::now();
    let mut c = client(Dialect::V02, t0);
    let first = ask(&mut c, t0, b"echo", b"x");
    let second = ask(&mut c, t0 + ms(10), b"time", b"y");
    assert_eq!(c.next_timer(), Some((t0 + TIMEOUT, ClientTimer::RequestTimeout(first))));
    // The first is answered: its timer goes, the second's is next.
    receive(&mut c, t0 + ms(20), final_(Dialect::V02, b"echo", b"x"));
    assert_eq!(c.next_timer(), Some((t0 + ms(10) + TIMEOUT, ClientTimer::RequestTimeout(second))));
    // A request waiting in the client has no timer until it is sent.
    let waiting = queue(&mut c, t0 + ms(30), b"time", b"z");
    c.cancel(t0 + ms(40), second);
    drain(&mut c);
    assert_eq!(c.next_timer(), Some((t0 + ms(40) + TIMEOUT, ClientTimer::RequestTimeout(waiting))));
    receive(&mut c, t0 + ms(50), final_(Dialect::V02, b"time", b"z"));
    assert_eq!(c.next_timer(), None);
}
