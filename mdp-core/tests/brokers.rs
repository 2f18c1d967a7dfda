//! A client that knows several brokers: requests spread over them, a broker
//! that fails is avoided for its backoff, and its requests go to another.
#![allow(clippy::disallowed_methods)] // stands in for the application, which reads the clock

use std::time::{Duration, Instant};

use bytes::Bytes;
use mdp_core::{
    Client, ClientConfig, ClientEvent, ClientTimer, ConfigError, Dialect, FailReason, Lane, Multipart, PeerCommand,
    PeerTransmit, RequestId,
};

const TIMEOUT: Duration = Duration::from_millis(2500);
/// The backoff of the clients here: shorter than the timeout (the default
/// is the default timeout), so backoffs and timeouts do not coincide.
const BACKOFF: Duration = Duration::from_secs(1);

fn b(s: &'static [u8]) -> Bytes {
    Bytes::from_static(s)
}

/// A V0.2 client with `brokers` brokers and one lane to each, and a
/// backoff of [`BACKOFF`] without jitter, so its delays are exact.
fn client(brokers: usize, t0: Instant) -> Client {
    let mut config = ClientConfig::new(Dialect::V02).with_brokers(brokers);
    config.broker_backoff.jitter = 0.0;
    config.broker_backoff.initial = BACKOFF;
    Client::new(config, t0).expect("valid config")
}

/// What the client sent since the last drain: `(lane, Some(service))` per
/// request, `(lane, None)` per reconnect. Events are returned apart.
fn drain(c: &mut Client) -> (Vec<(usize, Option<Bytes>)>, Vec<ClientEvent>) {
    let mut sent = Vec::new();
    while let Some(t) = c.poll_transmit() {
        let what = match t.transmit {
            PeerTransmit::Reconnect => None,
            PeerTransmit::Send(frames) => match PeerCommand::decode(frames) {
                Ok((_, PeerCommand::Request { service, .. })) => Some(service),
                other => panic!("the client sent {other:?}"),
            },
        };
        sent.push((t.lane.0, what));
    }
    let events = std::iter::from_fn(|| c.poll_event()).collect();
    (sent, events)
}

fn ask(c: &mut Client, now: Instant, service: &'static [u8]) -> RequestId {
    c.request(now, b(service), vec![b(b"body")]).expect("request accepted")
}

fn final_for(service: &[u8]) -> Multipart {
    vec![b(b"MDPC02"), b(&[0x03]), Bytes::copy_from_slice(service), b(b"answer")]
}

#[test]
fn lane_l_is_on_broker_l_mod_brokers_and_a_client_has_lanes_per_broker() {
    let config = ClientConfig::new(Dialect::V02).with_lanes(2).with_brokers(3);
    assert_eq!(config.total_lanes(), 6);
    let c = Client::new(config, Instant::now()).unwrap();
    assert_eq!(c.lane_count(), 6);
    let brokers: Vec<usize> = (0..6).map(|l| c.broker_of(Lane(l))).collect();
    assert_eq!(brokers, [0, 1, 2, 0, 1, 2]);
}

#[test]
fn zero_brokers_is_refused() {
    let config = ClientConfig::new(Dialect::V01).with_brokers(0);
    assert_eq!(Client::new(config, Instant::now()).unwrap_err(), ConfigError::Zero("brokers"));
}

#[test]
fn requests_one_after_another_go_to_the_brokers_in_turn() {
    let t0 = Instant::now();
    let mut c = client(3, t0);
    let mut lanes = Vec::new();
    for _ in 0..6 {
        ask(&mut c, t0, b"echo");
        let (sent, _) = drain(&mut c);
        let lane = sent[0].0;
        lanes.push(c.broker_of(Lane(lane)));
        c.handle_message(t0, Lane(lane), final_for(b"echo"));
        drain(&mut c);
    }
    assert_eq!(lanes, [0, 1, 2, 0, 1, 2]);
}

#[test]
fn a_timed_out_request_is_retried_on_another_broker_and_the_failed_one_is_avoided_until_its_backoff_ends() {
    let t0 = Instant::now();
    let mut c = client(2, t0);
    let id = ask(&mut c, t0, b"echo");
    assert_eq!(drain(&mut c).0, [(0, Some(b(b"echo")))]);

    // No answer from broker 0: the lane is replaced, the retry goes to broker 1.
    let t1 = t0 + TIMEOUT;
    c.handle_timeout(t1);
    assert_eq!(drain(&mut c).0, [(0, None), (1, Some(b(b"echo")))]);
    assert_eq!(c.lane_of(id), Some(Lane(1)));
    assert!(c.is_avoided(0) && !c.is_avoided(1));
    assert_eq!(c.next_timer(), Some((t1 + BACKOFF, ClientTimer::BrokerBackoff(0))));

    // While broker 0 is avoided, a request for a service lane 1 is busy
    // with waits rather than go to it; one for another service goes to
    // broker 1.
    let waiting = ask(&mut c, t1, b"echo");
    let other = ask(&mut c, t1, b"other");
    assert_eq!(drain(&mut c).0, [(1, Some(b(b"other")))]);
    assert_eq!(c.lane_of(waiting), None);
    assert_eq!(c.lane_of(other), Some(Lane(1)));

    // The backoff ends: what waited goes to broker 0 again.
    c.handle_timeout(t1 + BACKOFF);
    assert!(!c.is_avoided(0));
    assert_eq!(drain(&mut c).0, [(0, Some(b(b"echo")))]);
    assert_eq!(c.lane_of(waiting), Some(Lane(0)));
}

#[test]
fn a_second_failure_in_a_row_doubles_the_backoff_and_a_reply_resets_it() {
    let t0 = Instant::now();
    let mut c = client(2, t0);
    let answered = |c: &mut Client, now: Instant, lane: usize, service: &'static [u8]| {
        c.handle_message(now, Lane(lane), final_for(service));
        let (_, events) = drain(c);
        assert!(matches!(events[..], [ClientEvent::Reply { .. }]), "{events:?}");
    };
    ask(&mut c, t0, b"echo");
    drain(&mut c);
    // Broker 0's connection is lost: avoided for 1 s; `echo` goes to
    // broker 1, which answers it.
    c.handle_connection_lost(t0, Lane(0));
    assert_eq!(drain(&mut c).0, [(0, None), (1, Some(b(b"echo")))]);
    answered(&mut c, t0, 1, b"echo");
    assert_eq!(c.next_timer(), Some((t0 + BACKOFF, ClientTimer::BrokerBackoff(0))));
    c.handle_timeout(t0 + BACKOFF);
    assert!(!c.is_avoided(0));

    // It fails again before any reply from it: 2 s this time.
    let t1 = t0 + BACKOFF;
    c.handle_connection_lost(t1, Lane(0));
    drain(&mut c);
    assert_eq!(c.next_timer(), Some((t1 + 2 * BACKOFF, ClientTimer::BrokerBackoff(0))));
    ask(&mut c, t1, b"x");
    assert_eq!(drain(&mut c).0, [(1, Some(b(b"x")))], "broker 0 is avoided");
    answered(&mut c, t1, 1, b"x");

    // Its backoff ends; it takes the next request and answers it, which
    // resets the count: the next failure costs 1 s again.
    let t2 = t1 + 2 * BACKOFF;
    c.handle_timeout(t2);
    ask(&mut c, t2, b"y");
    assert_eq!(drain(&mut c).0, [(0, Some(b(b"y")))]);
    answered(&mut c, t2, 0, b"y");
    c.handle_connection_lost(t2, Lane(0));
    drain(&mut c);
    assert_eq!(c.next_timer(), Some((t2 + BACKOFF, ClientTimer::BrokerBackoff(0))));
}

#[test]
fn a_reply_from_an_avoided_broker_ends_its_avoidance() {
    let t0 = Instant::now();
    // A backoff longer than the timeout, so broker 1 is still avoided when
    // broker 0 fails too.
    let mut config = ClientConfig::new(Dialect::V02).with_brokers(2);
    config.broker_backoff.initial = 4 * TIMEOUT;
    let mut c = Client::new(config, t0).unwrap();
    // One request on each broker.
    let a = ask(&mut c, t0, b"a");
    let b_id = ask(&mut c, t0, b"b");
    assert_eq!(drain(&mut c).0, [(0, Some(b(b"a"))), (1, Some(b(b"b")))]);
    // Lane 1 is lost: broker 1 avoided, `b` moves to broker 0.
    c.handle_connection_lost(t0, Lane(1));
    assert_eq!(drain(&mut c).0, [(1, None), (0, Some(b(b"b")))]);
    assert!(c.is_avoided(1));
    // Broker 0 answers `a`; then lane 0 times out, so broker 0 is avoided
    // too: every broker is, so every lane may take requests again, and `b`
    // goes back to broker 1.
    c.handle_message(t0, Lane(0), final_for(b"a"));
    assert!(!c.is_outstanding(a));
    drain(&mut c);
    c.handle_timeout(t0 + TIMEOUT);
    let (sent, _) = drain(&mut c);
    assert_eq!(sent, [(0, None), (1, Some(b(b"b")))]);
    assert!(c.is_avoided(0) && c.is_avoided(1));
    // Broker 1 answers: it is no longer avoided.
    c.handle_message(t0 + TIMEOUT, Lane(1), final_for(b"b"));
    let (_, events) = drain(&mut c);
    assert!(matches!(events[..], [ClientEvent::Reply { id, .. }] if id == b_id));
    assert!(!c.is_avoided(1) && c.is_avoided(0));
}

#[test]
fn tries_count_across_brokers() {
    let t0 = Instant::now();
    let mut c = client(3, t0);
    let id = ask(&mut c, t0, b"echo");
    let mut brokers = vec![c.broker_of(c.lane_of(id).unwrap())];
    let mut now = t0;
    for _ in 0..2 {
        now += TIMEOUT;
        c.handle_timeout(now);
        drain(&mut c);
        brokers.push(c.broker_of(c.lane_of(id).expect("sent again")));
    }
    assert_eq!(brokers, [0, 1, 2], "each try on another broker");
    c.handle_timeout(now + TIMEOUT);
    let (_, events) = drain(&mut c);
    assert_eq!(events, [ClientEvent::Failed { id, reason: FailReason::RetriesExhausted { tries: 3 } }]);
}

#[test]
fn requests_on_other_lanes_of_a_failed_broker_stay_until_their_own_deadline() {
    let t0 = Instant::now();
    let mut config = ClientConfig::new(Dialect::V02).with_brokers(2).with_lanes(2);
    config.broker_backoff.jitter = 0.0;
    config.broker_backoff.initial = BACKOFF;
    let mut c = Client::new(config, t0).unwrap();
    // Lanes 0 and 2 are on broker 0.
    let first = ask(&mut c, t0, b"echo");
    let t1 = t0 + Duration::from_millis(100);
    let second = ask(&mut c, t1, b"echo");
    let third = ask(&mut c, t1, b"echo");
    drain(&mut c);
    assert_eq!(c.lane_of(first), Some(Lane(0)));
    assert_eq!(c.lane_of(second), Some(Lane(1)));
    assert_eq!(c.lane_of(third), Some(Lane(2)));
    c.handle_timeout(t0 + TIMEOUT);
    // `first` leaves broker 0; lane 3 (broker 1) is free for it.
    assert_eq!(drain(&mut c).0, [(0, None), (3, Some(b(b"echo")))]);
    assert_eq!(c.lane_of(third), Some(Lane(2)), "not timed out yet: it stays");
}

#[test]
fn by_default_a_failed_broker_is_avoided_for_about_one_timeout() {
    let config = ClientConfig::new(Dialect::V02);
    assert_eq!(config.broker_backoff.initial, config.timeout);
}

#[test]
fn a_broker_on_probation_takes_one_request_at_a_time_until_it_answers() {
    let t0 = Instant::now();
    let mut config = ClientConfig::new(Dialect::V02).with_brokers(2).with_lanes(2);
    config.broker_backoff.jitter = 0.0;
    config.broker_backoff.initial = BACKOFF;
    let mut c = Client::new(config, t0).unwrap();
    // Broker 1 (lanes 1 and 3) fails.
    c.handle_connection_lost(t0, Lane(1));
    drain(&mut c);
    assert!(c.is_avoided(1));
    // Its backoff ends: on probation, it takes one request.
    let t1 = t0 + BACKOFF;
    c.handle_timeout(t1);
    assert!(!c.is_avoided(1) && c.is_on_probation(1));
    for service in [&b"a"[..], b"b", b"c", b"d"] {
        c.request(t1, Bytes::copy_from_slice(service), vec![b(b"body")]).unwrap();
    }
    let (sent, _) = drain(&mut c);
    let to_broker_1: Vec<usize> = sent.iter().map(|(lane, _)| *lane).filter(|lane| lane % 2 == 1).collect();
    assert_eq!(sent.len(), 4, "lanes 0 and 2 take two services each: {sent:?}");
    assert_eq!(to_broker_1.len(), 1, "one request to the broker on probation: {sent:?}");
    // It answers: probation over, it takes requests as the others do.
    let (lane, service) = sent.iter().find(|(lane, _)| lane % 2 == 1).cloned().unwrap();
    c.handle_message(t1, Lane(lane), final_for(&service.unwrap()));
    drain(&mut c);
    assert!(!c.is_on_probation(1));
    for service in [&b"e"[..], b"f"] {
        c.request(t1, Bytes::copy_from_slice(service), vec![b(b"body")]).unwrap();
    }
    let (sent, _) = drain(&mut c);
    assert_eq!(sent.iter().filter(|(lane, _)| lane % 2 == 1).count(), 2, "{sent:?}");
}

#[test]
fn one_death_seen_on_several_lanes_is_one_failure() {
    let t0 = Instant::now();
    let mut config = ClientConfig::new(Dialect::V02).with_brokers(2).with_lanes(3);
    config.broker_backoff.jitter = 0.0;
    config.broker_backoff.initial = BACKOFF;
    let mut c = Client::new(config, t0).unwrap();
    // Broker 0's three lanes (0, 2, 4) all lose their connections.
    for lane in [0, 2, 4] {
        c.handle_connection_lost(t0, Lane(lane));
    }
    drain(&mut c);
    assert_eq!(c.next_timer(), Some((t0 + BACKOFF, ClientTimer::BrokerBackoff(0))), "not doubled per lane");
}
