//! The worker state machine through its public API, under virtual time.
#![allow(clippy::disallowed_methods)] // stands in for the application, which reads the clock

use std::time::{Duration, Instant};

use bytes::Bytes;
use mdp_core::{
    Backoff, BrokerCommand, ConfigError, Dialect, DisconnectReason, Multipart, PeerTransmit, ReplyToken, Worker,
    WorkerConfig, WorkerDiscardReason, WorkerEvent, WorkerTimer, WorkerUsageError,
};
use proptest::prelude::*;

const INTERVAL: Duration = Duration::from_millis(2500);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn frames(parts: &[&[u8]]) -> Multipart {
    parts.iter().map(|p| Bytes::copy_from_slice(p)).collect()
}

fn config(dialect: Dialect) -> WorkerConfig {
    WorkerConfig::new(Bytes::from_static(b"echo"), dialect)
}

/// A config with no jitter, so every delay is exact.
fn exact(dialect: Dialect) -> WorkerConfig {
    let mut c = config(dialect);
    c.backoff.jitter = 0.0;
    c
}

fn start(c: WorkerConfig, t0: Instant) -> Worker {
    let mut w = Worker::new(c, t0).expect("valid config");
    let (sent, events) = drain(&mut w);
    assert_eq!(sent.len(), 1, "READY only");
    assert!(events.is_empty());
    w
}

fn drain(w: &mut Worker) -> (Vec<PeerTransmit>, Vec<WorkerEvent>) {
    let mut sent = Vec::new();
    while let Some(t) = w.poll_transmit() {
        sent.push(t);
    }
    let mut events = Vec::new();
    while let Some(e) = w.poll_event() {
        events.push(e);
    }
    (sent, events)
}

fn send(parts: &[&[u8]]) -> PeerTransmit {
    PeerTransmit::Send(frames(parts))
}

fn broker(dialect: Dialect, command: BrokerCommand) -> Multipart {
    command.encode(dialect).expect("encodable")
}

fn request(dialect: Dialect, client: &'static [u8], body: &'static [u8]) -> Multipart {
    let command = BrokerCommand::Request { client: Bytes::from_static(client), body: frames(&[body]) };
    broker(dialect, command)
}

fn heartbeat(dialect: Dialect) -> Multipart {
    broker(dialect, BrokerCommand::Heartbeat)
}

/// Delivers a request and returns its token.
fn give_request(w: &mut Worker, now: Instant, client: &'static [u8]) -> ReplyToken {
    w.handle_message(now, request(w.dialect(), client, b"job"));
    let (sent, mut events) = drain(w);
    assert!(sent.is_empty());
    match events.pop() {
        Some(WorkerEvent::Request { token, body }) if events.is_empty() => {
            assert_eq!(body, frames(&[b"job"]));
            token
        }
        other => panic!("expected one request, got {other:?} and {events:?}"),
    }
}

fn ready_frames(dialect: Dialect) -> PeerTransmit {
    match dialect {
        Dialect::V01 => send(&[b"", b"MDPW01", &[0x01], b"echo"]),
        Dialect::V02 => send(&[b"MDPW02", &[0x01], b"echo"]),
        Dialect::Majortomo => send(&[b"", b"MDPW02", &[0x01], b"echo"]),
    }
}

fn heartbeat_frames(dialect: Dialect) -> PeerTransmit {
    match dialect {
        Dialect::V01 => send(&[b"", b"MDPW01", &[0x04]]),
        Dialect::V02 => send(&[b"MDPW02", &[0x05]]),
        Dialect::Majortomo => send(&[b"", b"MDPW02", &[0x05]]),
    }
}

fn disconnected(reason: DisconnectReason, dropped: Option<ReplyToken>) -> WorkerEvent {
    WorkerEvent::Disconnected { reason, dropped }
}

// ---- registration and heartbeats ----

#[test]
fn ready_at_start_in_each_dialect() {
    let t0 = Instant::now();
    for dialect in Dialect::ALL {
        let mut w = Worker::new(config(dialect), t0).unwrap();
        assert_eq!(drain(&mut w), (vec![ready_frames(dialect)], vec![]), "{dialect}");
        assert!(w.is_registered() && !w.is_busy() && !w.is_stopped());
        assert_eq!(w.dialect(), dialect);
        assert_eq!(w.service(), &Bytes::from_static(b"echo"));
        assert_eq!(w.poll_timeout(), Some(t0 + INTERVAL));
    }
}

#[test]
fn heartbeats_every_interval_while_idle_and_broker_alive() {
    let t0 = Instant::now();
    for dialect in Dialect::ALL {
        let mut w = start(config(dialect), t0);
        for i in 1..=10u32 {
            let due = t0 + INTERVAL * i;
            assert_eq!(w.poll_timeout(), Some(due), "{dialect} beat {i}");
            w.handle_message(due - ms(1), heartbeat(dialect));
            assert_eq!(drain(&mut w), (vec![], vec![]));
            w.handle_timeout(due);
            assert_eq!(drain(&mut w), (vec![heartbeat_frames(dialect)], vec![]), "{dialect} beat {i}");
        }
    }
}

#[test]
fn heartbeats_while_busy() {
    let t0 = Instant::now();
    let mut w = start(config(Dialect::V02), t0);
    let _token = give_request(&mut w, t0 + ms(100), b"c1");
    assert!(w.is_busy());
    for i in 1..=4u32 {
        let due = t0 + INTERVAL * i;
        w.handle_message(due - ms(1), heartbeat(Dialect::V02));
        w.handle_timeout(due);
        assert_eq!(drain(&mut w), (vec![heartbeat_frames(Dialect::V02)], vec![]));
        assert!(w.is_busy(), "still working on the request");
    }
}

#[test]
fn no_heartbeat_while_other_traffic_flows() {
    let t0 = Instant::now();
    let mut w = start(config(Dialect::V02), t0);
    // A request every 2 s, each answered at once: the worker sends a FINAL
    // every 2 s, so it never goes an interval without sending.
    for i in 1..=10u32 {
        let now = t0 + ms(2000) * i;
        let token = give_request(&mut w, now, b"c1");
        w.reply(now, &token, frames(&[b"ok"])).unwrap();
        let (sent, _) = drain(&mut w);
        assert_eq!(sent.len(), 1);
        assert_eq!(w.poll_timeout(), Some(now + INTERVAL));
        w.handle_timeout(now + ms(1999));
        assert_eq!(drain(&mut w), (vec![], vec![]), "no heartbeat at round {i}");
    }
}

#[test]
fn partials_count_as_traffic_too() {
    let t0 = Instant::now();
    let mut w = start(config(Dialect::Majortomo), t0);
    let token = give_request(&mut w, t0, b"c1");
    for i in 1..=5u32 {
        let now = t0 + ms(2000) * i;
        w.handle_message(now, heartbeat(Dialect::Majortomo));
        w.partial(now, &token, frames(&[b"part"])).unwrap();
        w.handle_timeout(now + ms(1999));
        let (sent, _) = drain(&mut w);
        assert_eq!(sent.len(), 1, "the PARTIAL and no heartbeat");
    }
}

// ---- liveness and reconnection ----

#[test]
fn silent_broker_gives_reconnect_after_liveness_intervals_since_ready() {
    let t0 = Instant::now();
    for dialect in Dialect::ALL {
        let mut w = start(exact(dialect), t0);
        w.handle_timeout(t0 + INTERVAL);
        w.handle_timeout(t0 + INTERVAL * 2);
        assert_eq!(drain(&mut w).0, vec![heartbeat_frames(dialect); 2]);
        assert_eq!(w.poll_timeout(), Some(t0 + INTERVAL * 3));
        w.handle_timeout(t0 + INTERVAL * 3 - Duration::from_nanos(1));
        assert_eq!(drain(&mut w), (vec![], vec![]), "one nanosecond early");
        w.handle_timeout(t0 + INTERVAL * 3);
        // Reconnect and nothing else: no heartbeat to a broker given up.
        let expected = (vec![PeerTransmit::Reconnect], vec![disconnected(DisconnectReason::BrokerSilent, None)]);
        assert_eq!(drain(&mut w), expected, "{dialect}");
        assert!(!w.is_registered());
    }
}

#[test]
fn liveness_counts_from_the_last_message_heard() {
    let t0 = Instant::now();
    let mut w = start(exact(Dialect::V01), t0);
    w.handle_message(t0 + ms(3000), heartbeat(Dialect::V01));
    w.handle_timeout(t0 + ms(3000) + INTERVAL * 3 - ms(1));
    assert!(!drain(&mut w).0.contains(&PeerTransmit::Reconnect));
    w.handle_timeout(t0 + ms(3000) + INTERVAL * 3);
    assert_eq!(drain(&mut w).0, vec![PeerTransmit::Reconnect]);
}

#[test]
fn ready_again_after_the_backoff_and_nothing_sent_while_waiting() {
    let t0 = Instant::now();
    for dialect in Dialect::ALL {
        let mut w = start(exact(dialect), t0);
        let lost = t0 + INTERVAL * 3;
        w.handle_timeout(lost);
        drain(&mut w);
        assert_eq!(w.poll_timeout(), Some(lost + ms(1000)));
        // Nothing goes out while waiting, whatever is called.
        w.handle_timeout(lost + ms(999));
        w.handle_message(lost + ms(999), heartbeat(dialect));
        let (sent, events) = drain(&mut w);
        assert!(sent.is_empty());
        assert_eq!(events, vec![WorkerEvent::Discarded { reason: WorkerDiscardReason::NotRegistered }]);
        w.handle_timeout(lost + ms(1000));
        assert_eq!(drain(&mut w), (vec![ready_frames(dialect)], vec![]), "{dialect}");
        assert!(w.is_registered());
        // Both clocks restart at the new READY.
        assert_eq!(w.poll_timeout(), Some(lost + ms(1000) + INTERVAL));
    }
}

/// Lets the broker stay silent until the worker gives up; returns when, and
/// the delay before the next READY.
fn lose_broker(w: &mut Worker, registered_at: Instant) -> (Instant, Duration) {
    let lost = registered_at + INTERVAL * 3;
    w.handle_timeout(lost);
    let (sent, _) = drain(w);
    assert_eq!(sent.last(), Some(&PeerTransmit::Reconnect));
    let ready_at = w.poll_timeout().expect("a backoff deadline");
    (lost, ready_at - lost)
}

fn silent_delays(c: WorkerConfig, n: usize) -> Vec<Duration> {
    let t0 = Instant::now();
    let mut w = start(c, t0);
    let mut registered_at = t0;
    let mut delays = Vec::new();
    for _ in 0..n {
        let (lost, delay) = lose_broker(&mut w, registered_at);
        delays.push(delay);
        registered_at = lost + delay;
        w.handle_timeout(registered_at);
        assert!(matches!(drain(&mut w).0.as_slice(), [PeerTransmit::Send(_)]), "READY");
    }
    delays
}

#[test]
fn backoff_doubles_up_to_max() {
    let mut c = exact(Dialect::V02);
    c.backoff.initial = ms(1000);
    c.backoff.max = ms(5000);
    let got = silent_delays(c, 6);
    assert_eq!(got, vec![ms(1000), ms(2000), ms(4000), ms(5000), ms(5000), ms(5000)]);
}

#[test]
fn backoff_resets_once_the_broker_is_heard_from() {
    let t0 = Instant::now();
    let mut w = start(exact(Dialect::V02), t0);
    let (lost, d1) = lose_broker(&mut w, t0);
    let ready = lost + d1;
    w.handle_timeout(ready);
    let (lost, d2) = lose_broker(&mut w, ready);
    assert_eq!((d1, d2), (ms(1000), ms(2000)));
    let ready = lost + d2;
    w.handle_timeout(ready);
    w.handle_message(ready + ms(10), heartbeat(Dialect::V02));
    let (_, d3) = lose_broker(&mut w, ready + ms(10));
    assert_eq!(d3, ms(1000));
}

#[test]
fn jitter_is_deterministic_by_seed_and_within_bounds() {
    let with_seed = |seed| {
        let mut c = config(Dialect::V01);
        c.backoff.seed = seed;
        c.backoff.max = ms(8000);
        silent_delays(c, 8)
    };
    let a = with_seed(7);
    assert_eq!(a, with_seed(7), "same seed, same delays");
    assert_ne!(a, with_seed(8), "another seed, other delays");
    let bases = [1000, 2000, 4000, 8000, 8000, 8000, 8000, 8000];
    for (delay, base) in a.iter().zip(bases) {
        assert!(*delay <= ms(base) && *delay > ms(base) * 3 / 4, "{delay:?} vs base {base} ms");
    }
    assert!(a.iter().zip(bases).any(|(d, b)| *d != ms(b)), "jitter shortened some delay");
}

#[test]
fn disconnect_from_broker_reconnects_and_drops_the_request() {
    let t0 = Instant::now();
    for dialect in Dialect::ALL {
        let mut w = start(exact(dialect), t0);
        let token = give_request(&mut w, t0 + ms(10), b"c1");
        w.handle_message(t0 + ms(20), broker(dialect, BrokerCommand::Disconnect));
        let expected = disconnected(DisconnectReason::BrokerDisconnected, Some(token.clone()));
        assert_eq!(drain(&mut w), (vec![PeerTransmit::Reconnect], vec![expected]), "{dialect}");
        assert!(!w.is_busy());
        assert_eq!(w.reply(t0 + ms(30), &token, vec![]), Err(WorkerUsageError::RequestDropped));
        assert_eq!(w.poll_timeout(), Some(t0 + ms(1020)));
        w.handle_timeout(t0 + ms(1020));
        assert_eq!(drain(&mut w).0, vec![ready_frames(dialect)]);
    }
}

#[test]
fn connection_lost_reconnects_at_once_and_drops_the_request() {
    let t0 = Instant::now();
    for dialect in Dialect::ALL {
        let mut w = start(exact(dialect), t0);
        let token = give_request(&mut w, t0 + ms(10), b"c1");
        w.handle_connection_lost(t0 + ms(20));
        let expected = disconnected(DisconnectReason::ConnectionLost, Some(token.clone()));
        assert_eq!(drain(&mut w), (vec![PeerTransmit::Reconnect], vec![expected]), "{dialect}");
        assert!(!w.is_busy());
        assert_eq!(w.reply(t0 + ms(30), &token, vec![]), Err(WorkerUsageError::RequestDropped));
        // The new connection is lost too during the backoff: another new one,
        // and READY still waits for the end of the backoff (not reset).
        w.handle_connection_lost(t0 + ms(500));
        assert_eq!(drain(&mut w), (vec![PeerTransmit::Reconnect], vec![]), "{dialect}");
        assert_eq!(w.poll_timeout(), Some(t0 + ms(1020)));
        w.handle_timeout(t0 + ms(1020));
        assert_eq!(drain(&mut w).0, vec![ready_frames(dialect)]);
        // Once stopped, a lost connection changes nothing.
        w.disconnect(t0 + ms(1100));
        drain(&mut w);
        w.handle_connection_lost(t0 + ms(1200));
        assert_eq!(drain(&mut w), (vec![], vec![]), "{dialect}");
    }
}

#[test]
fn silence_drops_the_request_in_progress() {
    let t0 = Instant::now();
    let mut w = start(exact(Dialect::V02), t0);
    let token = give_request(&mut w, t0 + ms(10), b"c1");
    w.handle_timeout(t0 + ms(10) + INTERVAL * 3);
    let (_, events) = drain(&mut w);
    assert_eq!(events, vec![disconnected(DisconnectReason::BrokerSilent, Some(token.clone()))]);
    assert_eq!(w.partial(t0 + ms(7600), &token, vec![]), Err(WorkerUsageError::RequestDropped));
}

// ---- requests and answers ----

#[test]
fn request_event_and_reply_frames_in_each_dialect() {
    let t0 = Instant::now();
    for dialect in Dialect::ALL {
        let mut w = start(config(dialect), t0);
        let token = give_request(&mut w, t0, b"\x00client");
        assert_eq!(token.client().as_bytes(), &Bytes::from_static(b"\x00client"));
        w.reply(t0 + ms(5), &token, frames(&[b"a", b"b"])).unwrap();
        let expected = match dialect {
            Dialect::V01 => send(&[b"", b"MDPW01", &[0x03], b"\x00client", b"", b"a", b"b"]),
            Dialect::V02 => send(&[b"MDPW02", &[0x04], b"\x00client", b"", b"a", b"b"]),
            Dialect::Majortomo => send(&[b"", b"MDPW02", &[0x04], b"\x00client", b"", b"a", b"b"]),
        };
        assert_eq!(drain(&mut w), (vec![expected], vec![]), "{dialect}");
        assert!(!w.is_busy());
    }
}

#[test]
fn partials_then_reply_in_the_0_2_dialects() {
    let t0 = Instant::now();
    for dialect in [Dialect::V02, Dialect::Majortomo] {
        let mut w = start(config(dialect), t0);
        let token = give_request(&mut w, t0, b"c9");
        w.partial(t0, &token, frames(&[b"p1"])).unwrap();
        w.partial(t0, &token, frames(&[b"p2"])).unwrap();
        assert!(w.is_busy(), "a PARTIAL does not end the request");
        w.reply(t0, &token, vec![]).unwrap();
        let lead: &[&[u8]] = if dialect == Dialect::V02 { &[b"MDPW02"] } else { &[b"", b"MDPW02"] };
        let with = |cmd: &'static [u8], body: &[&'static [u8]]| {
            let mut parts = lead.to_vec();
            parts.extend([cmd, b"c9", b""]);
            parts.extend(body);
            send(&parts)
        };
        let expected = vec![with(&[0x03], &[b"p1"]), with(&[0x03], &[b"p2"]), with(&[0x04], &[])];
        assert_eq!(drain(&mut w), (expected, vec![]), "{dialect}");
    }
}

#[test]
fn next_request_after_reply_gets_a_new_token() {
    let t0 = Instant::now();
    let mut w = start(config(Dialect::V01), t0);
    let first = give_request(&mut w, t0, b"c1");
    w.reply(t0, &first, vec![]).unwrap();
    drain(&mut w);
    let second = give_request(&mut w, t0, b"c1");
    assert_ne!(first, second);
    assert_eq!(w.reply(t0, &first, vec![]), Err(WorkerUsageError::StaleToken));
    w.reply(t0, &second, vec![]).unwrap();
}

#[test]
fn request_while_busy_is_discarded_and_the_first_still_answerable() {
    let t0 = Instant::now();
    let mut w = start(config(Dialect::V02), t0);
    let token = give_request(&mut w, t0, b"c1");
    w.handle_message(t0 + ms(1), request(Dialect::V02, b"c2", b"other"));
    let reason = WorkerDiscardReason::RequestWhileBusy { client: Bytes::from_static(b"c2").into() };
    assert_eq!(drain(&mut w), (vec![], vec![WorkerEvent::Discarded { reason }]));
    w.reply(t0 + ms(2), &token, frames(&[b"done"])).unwrap();
    assert_eq!(drain(&mut w).0, vec![send(&[b"MDPW02", &[0x04], b"c1", b"", b"done"])]);
}

// ---- usage errors ----

#[test]
fn stale_token_after_reply() {
    let t0 = Instant::now();
    let mut w = start(config(Dialect::V02), t0);
    let token = give_request(&mut w, t0, b"c1");
    w.reply(t0, &token, vec![]).unwrap();
    drain(&mut w);
    assert_eq!(w.reply(t0, &token, vec![]), Err(WorkerUsageError::StaleToken));
    assert_eq!(w.partial(t0, &token, vec![]), Err(WorkerUsageError::StaleToken));
    assert_eq!(drain(&mut w), (vec![], vec![]), "nothing sent for a usage error");
}

#[test]
fn token_of_another_worker_is_stale() {
    let t0 = Instant::now();
    let mut a = start(config(Dialect::V02), t0);
    let mut b = start(config(Dialect::V02), t0);
    let token = give_request(&mut a, t0, b"c1");
    assert_eq!(b.reply(t0, &token, vec![]), Err(WorkerUsageError::StaleToken));
}

#[test]
fn partial_in_v01_is_a_usage_error() {
    let t0 = Instant::now();
    let mut w = start(config(Dialect::V01), t0);
    let token = give_request(&mut w, t0, b"c1");
    assert_eq!(w.partial(t0, &token, frames(&[b"x"])), Err(WorkerUsageError::PartialInV01));
    assert!(w.is_busy());
    w.reply(t0, &token, frames(&[b"x"])).unwrap();
}

#[test]
fn only_the_latest_dropped_request_reports_request_dropped() {
    let t0 = Instant::now();
    let mut w = start(exact(Dialect::V02), t0);
    let old = give_request(&mut w, t0, b"c1");
    w.handle_message(t0, broker(Dialect::V02, BrokerCommand::Disconnect));
    w.handle_timeout(t0 + ms(1000));
    drain(&mut w);
    let answered = give_request(&mut w, t0 + ms(1001), b"c2");
    w.reply(t0 + ms(1001), &answered, vec![]).unwrap();
    w.handle_message(t0 + ms(1002), broker(Dialect::V02, BrokerCommand::Disconnect));
    drain(&mut w);
    assert_eq!(w.reply(t0 + ms(1003), &old, vec![]), Err(WorkerUsageError::RequestDropped));
    assert_eq!(w.reply(t0 + ms(1003), &answered, vec![]), Err(WorkerUsageError::StaleToken));
}

#[test]
fn config_errors() {
    let t0 = Instant::now();
    let with = |f: fn(&mut WorkerConfig)| {
        let mut c = config(Dialect::V02);
        f(&mut c);
        Worker::new(c, t0).err()
    };
    assert_eq!(with(|c| c.service = Bytes::new()), Some(ConfigError::EmptyService));
    assert!(matches!(with(|c| c.service = Bytes::from_static(b"mmi.service")), Some(ConfigError::ReservedService(_))));
    // A prefix test, not a substring test.
    assert_eq!(with(|c| c.service = Bytes::from_static(b"x.mmi.service")), None);
    assert_eq!(with(|c| c.service = Bytes::from_static(b"mmi")), None);
    assert_eq!(with(|c| c.heartbeat_interval = Duration::ZERO), Some(ConfigError::Zero("heartbeat_interval")));
    assert_eq!(with(|c| c.liveness = 0), Some(ConfigError::Zero("liveness")));
    assert_eq!(with(|c| c.backoff.jitter = 1.5), Some(ConfigError::InvalidJitter(1.5)));
    assert_eq!(with(|c| c.backoff.jitter = -0.1), Some(ConfigError::InvalidJitter(-0.1)));
    assert!(matches!(with(|c| c.backoff.jitter = f64::NAN), Some(ConfigError::InvalidJitter(_))));
    assert_eq!(with(|c| c.backoff.jitter = 1.0), None);
}

#[test]
fn error_messages_say_what_was_wrong() {
    let err = ConfigError::ReservedService(mdp_core::Found(Bytes::from_static(b"mmi.x")));
    assert_eq!(err.to_string(), "service \"mmi.x\" starts with \"mmi.\", which is reserved for the broker");
    assert_eq!(ConfigError::Zero("liveness").to_string(), "liveness is zero");
    let reason = WorkerDiscardReason::WrongDialect { expected: Dialect::V01, found: Dialect::V02 };
    assert_eq!(reason.to_string(), "message in MDP/0.2, but this worker speaks MDP/0.1");
}

// ---- disconnect() ----

#[test]
fn disconnect_sends_disconnect_and_stops() {
    let t0 = Instant::now();
    for dialect in Dialect::ALL {
        let mut w = start(config(dialect), t0);
        let token = give_request(&mut w, t0, b"c1");
        w.disconnect(t0 + ms(1));
        let expected = match dialect {
            Dialect::V01 => send(&[b"", b"MDPW01", &[0x05]]),
            Dialect::V02 => send(&[b"MDPW02", &[0x06]]),
            Dialect::Majortomo => send(&[b"", b"MDPW02", &[0x06]]),
        };
        assert_eq!(drain(&mut w), (vec![expected], vec![]));
        assert!(w.is_stopped() && !w.is_busy());
        assert_eq!(w.poll_timeout(), None);
        w.disconnect(t0 + ms(2));
        w.handle_timeout(t0 + INTERVAL * 100);
        assert_eq!(drain(&mut w), (vec![], vec![]), "nothing after stopping");
        assert_eq!(w.reply(t0, &token, vec![]), Err(WorkerUsageError::Stopped));
        w.handle_message(t0 + ms(3), heartbeat(dialect));
        let (sent, events) = drain(&mut w);
        assert!(sent.is_empty());
        assert_eq!(events, vec![WorkerEvent::Discarded { reason: WorkerDiscardReason::Stopped }]);
    }
}

#[test]
fn disconnect_while_waiting_to_reconnect() {
    let t0 = Instant::now();
    let mut w = start(exact(Dialect::V02), t0);
    w.handle_message(t0, broker(Dialect::V02, BrokerCommand::Disconnect));
    drain(&mut w);
    w.disconnect(t0 + ms(1));
    assert_eq!(drain(&mut w).0, vec![send(&[b"MDPW02", &[0x06]])]);
    assert_eq!(w.poll_timeout(), None);
}

// ---- bad input ----

#[test]
fn malformed_input_is_discarded_and_does_not_count_as_heard() {
    let t0 = Instant::now();
    let mut w = start(exact(Dialect::V02), t0);
    let bad: Vec<Multipart> = vec![
        vec![],
        frames(&[b""]),
        frames(&[b"garbage"]),
        frames(&[b"MDPW02"]),
        frames(&[b"MDPW02", &[0x01], b"echo"]),         // READY goes the other way
        frames(&[b"MDPW02", &[0x02], b"client"]),       // REQUEST with no delimiter
        frames(&[b"MDPW02", &[0x02], b"client", b"x"]), // delimiter not empty
        frames(&[b"MDPW02", &[0x05], b"extra"]),        // HEARTBEAT takes no frames
        frames(&[b"MDPW02", &[0x02, 0x00]]),            // two-byte command
    ];
    for (i, message) in bad.into_iter().enumerate() {
        w.handle_message(t0 + ms(i as u64), message);
        let (sent, events) = drain(&mut w);
        assert!(sent.is_empty());
        assert!(
            matches!(events.as_slice(), [WorkerEvent::Discarded { reason: WorkerDiscardReason::Malformed(_) }]),
            "message {i}: {events:?}"
        );
    }
    // Garbage proves nothing about the broker: liveness still runs from READY.
    w.handle_timeout(t0 + INTERVAL * 3);
    assert!(drain(&mut w).0.contains(&PeerTransmit::Reconnect));
}

#[test]
fn client_commands_and_other_dialects_are_discarded() {
    let t0 = Instant::now();
    let mut w = start(config(Dialect::V02), t0);
    let final_ = BrokerCommand::Final { service: Some(Bytes::from_static(b"echo")), body: vec![] };
    w.handle_message(t0, broker(Dialect::V02, final_));
    w.handle_message(t0, heartbeat(Dialect::V01));
    w.handle_message(t0, request(Dialect::Majortomo, b"c1", b"x"));
    let (sent, events) = drain(&mut w);
    assert!(sent.is_empty());
    let wrong =
        |found| WorkerEvent::Discarded { reason: WorkerDiscardReason::WrongDialect { expected: Dialect::V02, found } };
    let expected = vec![
        WorkerEvent::Discarded { reason: WorkerDiscardReason::NotForWorkers { command: mdp_core::Command::Final } },
        wrong(Dialect::V01),
        wrong(Dialect::Majortomo),
    ];
    assert_eq!(events, expected);
    assert!(!w.is_busy());
}

// ---- the timer contract ----

#[test]
fn handle_timeout_early_or_repeated_does_nothing() {
    let t0 = Instant::now();
    let mut w = start(config(Dialect::V02), t0);
    for early in [t0, t0 + ms(1), t0 + ms(2499)] {
        w.handle_timeout(early);
        assert_eq!(drain(&mut w), (vec![], vec![]));
    }
    w.handle_timeout(t0 + INTERVAL);
    assert_eq!(drain(&mut w).0.len(), 1);
    for _ in 0..3 {
        w.handle_timeout(t0 + INTERVAL);
        assert_eq!(drain(&mut w), (vec![], vec![]));
    }
}

#[test]
fn poll_timeout_is_never_before_now() {
    let t0 = Instant::now();
    let mut w = start(config(Dialect::V02), t0);
    // Deadlines passed without handle_timeout being called.
    let late = t0 + INTERVAL * 2;
    w.handle_message(late, request(Dialect::V02, b"c", b"x"));
    assert_eq!(w.poll_timeout(), Some(late));
    // An earlier `now` is taken as the latest one: the overdue heartbeat
    // goes out now, and the next deadline is after it.
    w.handle_timeout(t0);
    assert_eq!(drain(&mut w).0, vec![heartbeat_frames(Dialect::V02)]);
    assert_eq!(w.poll_timeout(), Some(late + INTERVAL));
}

// ---- properties ----

#[derive(Debug, Clone)]
enum Op {
    /// Arbitrary frames from the broker.
    Junk(Vec<Vec<u8>>),
    Request,
    Heartbeat,
    Disconnect,
    Timeout,
    Reply,
    Partial,
    Wait(u16),
}

fn op() -> impl Strategy<Value = Op> {
    let frame = prop::collection::vec(any::<u8>(), 0..8);
    prop_oneof![
        prop::collection::vec(frame, 0..6).prop_map(Op::Junk),
        Just(Op::Request),
        Just(Op::Heartbeat),
        Just(Op::Disconnect),
        Just(Op::Timeout),
        Just(Op::Reply),
        Just(Op::Partial),
        (0u16..4000).prop_map(Op::Wait),
    ]
}

fn dialect() -> impl Strategy<Value = Dialect> {
    prop_oneof![Just(Dialect::V01), Just(Dialect::V02), Just(Dialect::Majortomo)]
}

proptest! {
    /// Whatever the broker sends and whenever: no panic, a bounded output per
    /// input, poll_timeout never before now, at most one request in
    /// progress, and nothing but READY after a Reconnect.
    #[test]
    fn worker_survives_anything(dialect in dialect(), ops in prop::collection::vec(op(), 0..200)) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut w = Worker::new(config(dialect), now).unwrap();
        let mut passed_in = now;
        drain(&mut w);
        let mut tokens: Vec<ReplyToken> = Vec::new();
        let mut in_progress = 0usize;
        let mut awaiting_ready = false;
        for op in ops {
            // Whether `now` was passed in.
            let passed = match op {
                Op::Junk(parts) => { w.handle_message(now, parts.into_iter().map(Bytes::from).collect()); true }
                Op::Request => { w.handle_message(now, request(dialect, b"c", b"x")); true }
                Op::Heartbeat => { w.handle_message(now, heartbeat(dialect)); true }
                Op::Disconnect => { w.handle_message(now, broker(dialect, BrokerCommand::Disconnect)); true }
                Op::Timeout => {
                    now = w.poll_timeout().unwrap_or(now);
                    w.handle_timeout(now);
                    true
                }
                Op::Reply => tokens.last().is_some_and(|t| {
                    if w.reply(now, t, vec![]).is_ok() { in_progress -= 1; }
                    true
                }),
                Op::Partial => tokens.last().is_some_and(|t| { let _ = w.partial(now, t, vec![]); true }),
                Op::Wait(n) => { now += ms(u64::from(n)); false }
            };
            if passed { passed_in = now; }
            let (sent, events) = drain(&mut w);
            prop_assert!(sent.len() <= 1 && events.len() <= 1);
            for t in sent {
                match t {
                    PeerTransmit::Reconnect => awaiting_ready = true,
                    PeerTransmit::Send(frames) => {
                        if awaiting_ready {
                            prop_assert_eq!(PeerTransmit::Send(frames), ready_frames(dialect));
                            awaiting_ready = false;
                        }
                    }
                }
            }
            for e in events {
                match e {
                    WorkerEvent::Request { token, .. } => { tokens.push(token); in_progress += 1; }
                    WorkerEvent::Disconnected { dropped: Some(_), .. } => in_progress -= 1,
                    _ => {}
                }
            }
            prop_assert!(in_progress <= 1);
            prop_assert_eq!(w.is_busy(), in_progress == 1);
            if let Some(t) = w.poll_timeout() { prop_assert!(t >= passed_in); }
        }
    }
}

#[test]
fn backoff_default_values() {
    let b = Backoff::default();
    assert_eq!((b.initial, b.max, b.jitter, b.seed), (ms(1000), ms(30000), 0.25, 0));
    let c = config(Dialect::V01);
    assert_eq!((c.heartbeat_interval, c.liveness), (INTERVAL, 3));
}

#[test]
fn next_timer_says_why_each_deadline_is_set() {
    let t0 = Instant::now();
    let mut c = exact(Dialect::V02);
    c.liveness = 2;
    let mut w = start(c, t0);
    // READY just went out: the heartbeat comes before the broker's silence.
    assert_eq!(w.next_timer(), Some((t0 + INTERVAL, WorkerTimer::Heartbeat)));
    // Heartbeats go out while the broker stays silent; then it is given up.
    w.handle_timeout(t0 + INTERVAL);
    drain(&mut w);
    assert_eq!(w.next_timer(), Some((t0 + INTERVAL * 2, WorkerTimer::BrokerSilence)));
    w.handle_timeout(t0 + INTERVAL * 2);
    let (_, events) = drain(&mut w);
    assert_eq!(events, [disconnected(DisconnectReason::BrokerSilent, None)]);
    // Waiting out the first backoff (1 s, no jitter): READY is next.
    assert_eq!(w.next_timer(), Some((t0 + INTERVAL * 2 + ms(1000), WorkerTimer::Register)));
    assert_eq!(w.poll_timeout(), Some(t0 + INTERVAL * 2 + ms(1000)));
    w.disconnect(t0 + INTERVAL * 2);
    assert_eq!(w.next_timer(), None);
}
