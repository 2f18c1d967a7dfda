//! The broker's behaviour, through its public API only, under virtual time.
#![allow(clippy::disallowed_methods)] // stands in for the application, which reads the clock

mod common;

use std::num::NonZeroUsize;
use std::time::Duration;

use bytes::Bytes;
use common::{body, frames, id, ms, Harness, Out};
use mdp_core::{
    BrokerConfig, BrokerEvent, BrokerStats, Command, Dialect, DropReason, GoneReason, Limit, Misbehavior, PeerCommand,
    PeerId,
};

use Dialect::{Majortomo, V01, V02};

/// The default configuration, changed by `f` (it is `#[non_exhaustive]`).
fn config(f: impl FnOnce(&mut BrokerConfig)) -> BrokerConfig {
    let mut c = BrokerConfig::default();
    f(&mut c);
    c
}

/// The exact frames of a REQUEST the broker sends a worker.
fn worker_request(d: Dialect, client: &PeerId, parts: &[&str]) -> Vec<Bytes> {
    let mut f: Vec<&[u8]> = match d {
        V01 => vec![b"", b"MDPW01", &[0x02]],
        V02 => vec![b"MDPW02", &[0x02]],
        Majortomo => vec![b"", b"MDPW02", &[0x02]],
    };
    f.push(client.as_bytes());
    f.push(b"");
    f.extend(parts.iter().map(|p| p.as_bytes()));
    frames(&f)
}

/// The exact frames of a reply the broker sends a client.
fn client_reply(d: Dialect, service: &str, partial: bool, parts: &[&str]) -> Vec<Bytes> {
    let mut f: Vec<&[u8]> = match (d, partial) {
        (V01, false) => vec![b"", b"MDPC01", service.as_bytes()],
        (V01, true) => panic!("MDP/0.1 has no PARTIAL"),
        (V02, false) => vec![b"MDPC02", &[0x03], service.as_bytes()],
        (V02, true) => vec![b"MDPC02", &[0x02], service.as_bytes()],
        (Majortomo, false) => vec![b"", b"MDPC02", &[0x04]],
        (Majortomo, true) => vec![b"", b"MDPC02", &[0x03]],
    };
    f.extend(parts.iter().map(|p| p.as_bytes()));
    frames(&f)
}

/// The exact frames of HEARTBEAT / DISCONNECT to a worker.
fn worker_cmd(d: Dialect, heartbeat: bool) -> Vec<Bytes> {
    let byte: u8 = match (d, heartbeat) {
        (V01, true) => 0x04,
        (V01, false) => 0x05,
        (_, true) => 0x05,
        (_, false) => 0x06,
    };
    match d {
        V01 => frames(&[b"", b"MDPW01", &[byte]]),
        V02 => frames(&[b"MDPW02", &[byte]]),
        Majortomo => frames(&[b"", b"MDPW02", &[byte]]),
    }
}

fn disconnect(d: Dialect) -> Vec<Bytes> {
    worker_cmd(d, false)
}

fn heartbeat(d: Dialect) -> Vec<Bytes> {
    worker_cmd(d, true)
}

fn svc(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn gone(worker: &PeerId, service: &str, reason: GoneReason) -> BrokerEvent {
    BrokerEvent::WorkerGone { worker: worker.clone(), service: svc(service), reason }
}

fn misbehaved(peer: &PeerId, sent: Command, reason: Misbehavior) -> BrokerEvent {
    BrokerEvent::PeerMisbehaved { peer: peer.clone(), sent: Some(sent), reason }
}

fn limit(peer: &PeerId, limit: Limit) -> BrokerEvent {
    BrokerEvent::LimitHit { peer: peer.clone(), limit }
}

/// Runs the clock to `until` and asserts nothing at all was sent to `peer`.
fn assert_silent_to(h: &mut Harness, peer: &PeerId, until: Duration) {
    let out = h.run_until(until);
    assert_eq!(out.to(peer), Vec::<Vec<Bytes>>::new(), "the broker sent {peer} something after forgetting it");
}

/// A worker that misbehaved: it got exactly one DISCONNECT in `d`, is no longer
/// registered, and gets nothing more.
fn assert_disconnected(h: &mut Harness, out: &Out, worker: &PeerId, d: Dialect) {
    assert_eq!(out.to(worker), vec![disconnect(d)]);
    assert!(!h.broker.is_worker(worker));
    let later = h.now - h.t0 + Duration::from_secs(30);
    assert_silent_to(h, worker, later);
}

// ---------------------------------------------------------------- routing

#[test]
fn request_goes_to_a_worker_of_the_named_service() {
    let mut h = Harness::default();
    let (echo, other, client) = (id("w-echo"), id("w-other"), id("c"));
    h.ready(&other, V01, "other");
    h.ready(&echo, V01, "echo");
    let out = h.request(&client, V01, "echo", &["x"]);
    assert_eq!(out.to(&echo), vec![worker_request(V01, &client, &["x"])]);
    assert!(out.to(&other).is_empty());
    assert_eq!(
        out.events,
        vec![BrokerEvent::RequestDispatched { client: client.clone(), service: svc("echo"), worker: echo.clone() }]
    );
}

#[test]
fn least_recently_used_worker_goes_first() {
    let mut h = Harness::default();
    let ws = [id("w1"), id("w2"), id("w3")];
    let cs = [id("c1"), id("c2"), id("c3")];
    for w in &ws {
        h.ready(w, V01, "echo");
    }
    // Three requests from three clients: the workers in READY order.
    let mut got = Vec::new();
    for c in &cs {
        got.extend(h.request(c, V01, "echo", &["x"]).requests().into_iter().map(|r| r.0));
    }
    assert_eq!(got, ws.to_vec());
    // They finish in the order w2, w3, w1: that is the new LRU order.
    for (w, c) in [(1, 1), (2, 2), (0, 0)] {
        h.reply(&ws[w], V01, &cs[c], &["y"]);
    }
    let mut got = Vec::new();
    for c in &cs {
        got.extend(h.request(c, V01, "echo", &["x"]).requests().into_iter().map(|r| r.0));
    }
    assert_eq!(got, vec![ws[1].clone(), ws[2].clone(), ws[0].clone()]);
}

#[test]
fn a_flooding_client_does_not_starve_another() {
    let mut h = Harness::default();
    let (w, a, b) = (id("w"), id("a"), id("b"));
    h.ready(&w, V01, "echo");
    for i in 0..100 {
        h.request(&a, V01, "echo", &[&format!("a{i}")]);
    }
    h.request(&b, V01, "echo", &["b0"]);
    assert_eq!(h.broker.stats().queued_requests, 100);
    // A's first request is at the worker. A queued its second before B
    // came, so A's turn is first; then B's: B waits for one of A's
    // requests, not for A's hundred.
    let out = h.reply(&w, V01, &a, &["r"]);
    assert_eq!(out.requests(), vec![(w.clone(), a.0.clone(), body(&["a1"]))]);
    let out = h.reply(&w, V01, &a, &["r"]);
    assert_eq!(out.requests(), vec![(w.clone(), b.0.clone(), body(&["b0"]))]);
    // Then A's, in A's order.
    let out = h.reply(&w, V01, &b, &["r"]);
    assert_eq!(out.requests(), vec![(w.clone(), a.0.clone(), body(&["a2"]))]);
}

#[test]
fn with_one_in_flight_per_client_a_flooding_client_waits_behind_another() {
    let mut h = Harness::new(config(|c| c.max_in_flight_per_client = NonZeroUsize::new(1)));
    let (w, a, b) = (id("w"), id("a"), id("b"));
    h.ready(&w, V01, "echo");
    for i in 0..100 {
        h.request(&a, V01, "echo", &[&format!("a{i}")]);
    }
    h.request(&b, V01, "echo", &["b0"]);
    // A's first request is in flight, so A had no turn: B's is next.
    let out = h.reply(&w, V01, &a, &["r"]);
    assert_eq!(out.requests(), vec![(w.clone(), b.0.clone(), body(&["b0"]))]);
    let out = h.reply(&w, V01, &b, &["r"]);
    assert_eq!(out.requests(), vec![(w.clone(), a.0.clone(), body(&["a1"]))]);
}

#[test]
fn a_lone_client_gets_every_idle_worker() {
    let mut h = Harness::default();
    let ws: Vec<PeerId> = (0..8).map(|i| id(&format!("w{i}"))).collect();
    let c = id("c");
    for w in &ws {
        h.ready(w, V02, "echo");
    }
    let mut dispatched = Vec::new();
    for i in 0..64 {
        dispatched.extend(h.request(&c, V01, "echo", &[&format!("r{i}")]).requests());
    }
    // The first eight went at once, one to each worker, least recently
    // used first; the rest wait.
    let expected: Vec<_> = (0..8).map(|i| (ws[i].clone(), c.0.clone(), body(&[&format!("r{i}")]))).collect();
    assert_eq!(dispatched, expected);
    let s = h.broker.stats();
    assert_eq!((s.busy_workers, s.idle_workers, s.queued_requests), (8, 0, 56));
    // Each answer sends the next request, in the client's order, to the
    // worker it freed; all 64 are answered.
    let mut answered = 0;
    for round in 0..8 {
        for (i, w) in ws.iter().enumerate() {
            let out = h.reply(w, V02, &c, &["y"]);
            assert_eq!(out.to(&c).len(), 1);
            answered += 1;
            let next = 8 * (round + 1) + i;
            if next < 64 {
                assert_eq!(out.requests(), vec![(w.clone(), c.0.clone(), body(&[&format!("r{next}")]))]);
            } else {
                assert!(out.requests().is_empty());
            }
        }
    }
    assert_eq!(answered, 64);
    let s = h.broker.stats();
    assert_eq!((s.busy_workers, s.idle_workers, s.queued_requests, s.dispatched), (0, 8, 0, 64));
}

#[test]
fn two_flooding_clients_get_half_the_workers_each() {
    let mut h = Harness::default();
    let ws: Vec<PeerId> = (0..4).map(|i| id(&format!("w{i}"))).collect();
    let (a, b) = (id("a"), id("b"));
    for w in &ws {
        h.ready(w, V01, "echo");
    }
    // Both flood, in turns: their first requests take two workers each.
    for i in 0..100 {
        h.request(&a, V01, "echo", &[&format!("a{i}")]);
        h.request(&b, V01, "echo", &[&format!("b{i}")]);
    }
    // Who holds each worker's request, and how many each client got.
    let mut holder: Vec<PeerId> = vec![a.clone(), b.clone(), a.clone(), b.clone()];
    let mut served = [0usize; 2];
    for round in 0..20 {
        for (i, w) in ws.iter().enumerate() {
            let out = h.reply(w, V01, &holder[i], &["y"]);
            let requests = out.requests();
            let [(to, client, _)] = requests.as_slice() else { panic!("one dispatch per answer: {requests:?}") };
            let client = client.clone();
            assert_eq!(to, w);
            holder[i] = PeerId(client);
            served[usize::from(holder[i] == b)] += 1;
        }
        let busy_for_b = holder.iter().filter(|c| **c == b).count();
        assert_eq!(busy_for_b, 2, "round {round}: B holds {busy_for_b} of 4 workers");
    }
    assert_eq!(served, [40, 40], "dispatches to A and B");
}

#[test]
fn replies_to_one_client_may_come_back_out_of_order() {
    let mut h = Harness::default();
    let (w1, w2, c) = (id("w1"), id("w2"), id("c"));
    h.ready(&w1, V02, "echo");
    h.ready(&w2, V02, "echo");
    assert_eq!(h.request(&c, V02, "echo", &["first"]).dispatched(), vec![(c.clone(), w1.clone())]);
    assert_eq!(h.request(&c, V02, "echo", &["second"]).dispatched(), vec![(c.clone(), w2.clone())]);
    // w2 is quicker: the answer to the second request reaches the client first.
    let out = h.reply(&w2, V02, &c, &["to second"]);
    assert_eq!(out.to(&c), vec![client_reply(V02, "echo", false, &["to second"])]);
    let out = h.reply(&w1, V02, &c, &["to first"]);
    assert_eq!(out.to(&c), vec![client_reply(V02, "echo", false, &["to first"])]);
}

#[test]
fn max_in_flight_per_client_caps_one_clients_share_of_the_workers() {
    let mut h = Harness::new(config(|c| c.max_in_flight_per_client = NonZeroUsize::new(3)));
    let ws: Vec<PeerId> = (0..8).map(|i| id(&format!("w{i}"))).collect();
    let (a, b) = (id("a"), id("b"));
    for w in &ws {
        h.ready(w, V01, "echo");
    }
    let mut got = Vec::new();
    for i in 0..10 {
        got.extend(h.request(&a, V01, "echo", &[&format!("a{i}")]).dispatched());
    }
    assert_eq!(got, (0..3).map(|i| (a.clone(), ws[i].clone())).collect::<Vec<_>>());
    assert_eq!(h.broker.stats().idle_workers, 5);
    // Another client still gets the idle workers.
    let out = h.request(&b, V01, "echo", &["b0"]);
    assert_eq!(out.dispatched(), vec![(b.clone(), ws[3].clone())]);
    // One of A's answered: exactly one more of A's goes.
    let out = h.reply(&ws[1], V01, &a, &["y"]);
    assert_eq!(out.requests(), vec![(ws[4].clone(), a.0.clone(), body(&["a3"]))]);
}

#[test]
fn one_request_per_client_and_service_in_flight_when_configured() {
    let mut h = Harness::new(config(|c| c.max_in_flight_per_client = NonZeroUsize::new(1)));
    let (w1, w2, a, b) = (id("w1"), id("w2"), id("a"), id("b"));
    h.ready(&w1, V01, "echo");
    h.ready(&w2, V01, "echo");
    let out = h.request(&a, V01, "echo", &["a0"]);
    assert_eq!(out.dispatched(), vec![(a.clone(), w1.clone())]);
    // A's second request waits although w2 is idle.
    let out = h.request(&a, V01, "echo", &["a1"]);
    assert!(out.transmits.is_empty(), "{out:?}");
    assert_eq!(h.broker.stats().queued_requests, 1);
    assert_eq!(h.broker.stats().idle_workers, 1);
    // B's request takes the idle w2.
    let out = h.request(&b, V01, "echo", &["b0"]);
    assert_eq!(out.requests(), vec![(w2.clone(), b.0.clone(), body(&["b0"]))]);
    // When A's first is answered, A's second goes to w1 (now idle).
    let out = h.reply(&w1, V01, &a, &["r0"]);
    assert_eq!(out.to(&a), vec![client_reply(V01, "echo", false, &["r0"])]);
    assert_eq!(out.requests(), vec![(w1.clone(), a.0.clone(), body(&["a1"]))]);
}

#[test]
fn a_lost_worker_s_request_goes_to_another_idle_worker_at_once() {
    let mut h = Harness::default();
    let ws: Vec<PeerId> = (0..3).map(|i| id(&format!("w{i}"))).collect();
    let c = id("c");
    for w in &ws[..2] {
        h.ready(w, V01, "echo");
    }
    for i in 0..4 {
        h.request(&c, V01, "echo", &[&format!("r{i}")]);
    }
    // r0 at w0, r1 at w1, r2 and r3 queued. w0 dies: r0 goes back to the
    // head, ahead of r2, and a new worker takes it.
    let out = h.disconnect(&ws[0], V01);
    assert!(out.events.contains(&BrokerEvent::RequestRequeued {
        client: c.clone(),
        service: svc("echo"),
        dispatches: 1
    }));
    assert_eq!(h.broker.stats().queued_requests, 3);
    let out = h.ready(&ws[2], V01, "echo");
    assert_eq!(out.requests(), vec![(ws[2].clone(), c.0.clone(), body(&["r0"]))]);
    let out = h.reply(&ws[1], V01, &c, &["y"]);
    assert_eq!(out.requests(), vec![(ws[1].clone(), c.0.clone(), body(&["r2"]))]);
}

#[test]
fn a_client_may_have_requests_in_flight_to_different_services() {
    let mut h = Harness::default();
    let (w1, w2, a) = (id("w1"), id("w2"), id("a"));
    h.ready(&w1, V01, "s1");
    h.ready(&w2, V01, "s2");
    assert_eq!(h.request(&a, V01, "s1", &["x"]).dispatched(), vec![(a.clone(), w1.clone())]);
    assert_eq!(h.request(&a, V01, "s2", &["x"]).dispatched(), vec![(a.clone(), w2.clone())]);
}

// ---------------------------------------------------------------- dialects

#[test]
fn every_client_dialect_with_every_worker_dialect() {
    for cd in Dialect::ALL {
        for wd in Dialect::ALL {
            let mut h = Harness::default();
            let (w, c) = (id("\0w-binary"), id("\0\x01c-binary"));
            let out = h.ready(&w, wd, "echo");
            assert_eq!(out.transmits, vec![], "no answer to READY");
            let out = h.request(&c, cd, "echo", &["hello", "world"]);
            assert_eq!(out.to(&w), vec![worker_request(wd, &c, &["hello", "world"])], "{cd} client, {wd} worker");
            assert!(out.to(&c).is_empty());
            let out = h.reply(&w, wd, &c, &["hi", "there"]);
            assert_eq!(out.to(&c), vec![client_reply(cd, "echo", false, &["hi", "there"])], "{cd} client, {wd} worker");
            assert_eq!(out.transmits.len(), 1);
            assert_eq!(h.broker.stats().replies_sent, 1);
            assert_eq!(h.broker.stats().idle_workers, 1);
        }
    }
}

#[test]
fn client_request_frames_of_each_dialect_are_understood() {
    // The client side spelled out by hand, not through the codec.
    let cases: [(Dialect, Vec<Bytes>); 3] = [
        (V01, frames(&[b"", b"MDPC01", b"echo", b"x"])),
        (V02, frames(&[b"MDPC02", &[0x01], b"echo", b"x"])),
        (Majortomo, frames(&[b"", b"MDPC02", &[0x02], b"echo", b"x"])),
    ];
    for (d, request) in cases {
        let mut h = Harness::default();
        let (w, c) = (id("w"), id("c"));
        h.ready(&w, V02, "echo");
        let out = h.send(&c, request);
        assert_eq!(out.to(&w), vec![worker_request(V02, &c, &["x"])]);
        let out = h.reply(&w, V02, &c, &["y"]);
        assert_eq!(out.to(&c), vec![client_reply(d, "echo", false, &["y"])]);
    }
}

#[test]
fn partials_are_forwarded_to_0_2_clients() {
    for cd in [V02, Majortomo] {
        for wd in [V02, Majortomo] {
            let mut h = Harness::default();
            let (w, c) = (id("w"), id("c"));
            h.ready(&w, wd, "echo");
            h.request(&c, cd, "echo", &["q"]);
            let out = h.partial(&w, wd, &c, &["p1a", "p1b"]);
            assert_eq!(out.to(&c), vec![client_reply(cd, "echo", true, &["p1a", "p1b"])]);
            let out = h.partial(&w, wd, &c, &[]);
            assert_eq!(out.to(&c), vec![client_reply(cd, "echo", true, &[])]);
            assert_eq!(h.broker.stats().busy_workers, 1, "a PARTIAL does not end the request");
            let out = h.reply(&w, wd, &c, &["f"]);
            assert_eq!(out.to(&c), vec![client_reply(cd, "echo", false, &["f"])]);
            assert_eq!(h.broker.stats().idle_workers, 1);
            assert_eq!(h.broker.stats().replies_sent, 1, "parts are not counted as replies");
        }
    }
}

#[test]
fn partials_are_joined_into_one_reply_for_a_0_1_client() {
    for wd in [V02, Majortomo] {
        let mut h = Harness::default();
        let (w, c) = (id("w"), id("c"));
        h.ready(&w, wd, "echo");
        h.request(&c, V01, "echo", &["q"]);
        assert!(h.partial(&w, wd, &c, &["p1a", "p1b"]).transmits.is_empty());
        assert!(h.partial(&w, wd, &c, &["p2"]).transmits.is_empty());
        let out = h.reply(&w, wd, &c, &["f1", "f2"]);
        assert_eq!(out.to(&c), vec![client_reply(V01, "echo", false, &["p1a", "p1b", "p2", "f1", "f2"])]);
        assert_eq!(out.transmits.len(), 1);
        // The buffer is gone: the next request's reply starts fresh.
        h.request(&c, V01, "echo", &["q2"]);
        let out = h.reply(&w, wd, &c, &["only"]);
        assert_eq!(out.to(&c), vec![client_reply(V01, "echo", false, &["only"])]);
    }
}

/// A joined 0.1 reply past a limit: dropped, nothing to the client, and the
/// worker goes idle after its FINAL and takes the next request.
fn joined_reply_over_limit(config: BrokerConfig, parts: [&[&str]; 3], at_final: bool) {
    let mut h = Harness::new(config);
    let (w, c, c2) = (id("w"), id("c"), id("c2"));
    h.ready(&w, Majortomo, "echo");
    h.request(&c, V01, "echo", &["q"]);
    h.request(&c2, V02, "echo", &["next"]);
    let drop =
        BrokerEvent::RequestDropped { client: c.clone(), service: svc("echo"), reason: DropReason::ReplyTooLarge };
    let out = h.partial(&w, Majortomo, &c, parts[0]);
    assert!(out.is_empty(), "{out:?}");
    let out = h.partial(&w, Majortomo, &c, parts[1]);
    if at_final {
        assert!(out.is_empty(), "{out:?}");
        let out = h.reply(&w, Majortomo, &c, parts[2]);
        assert_eq!(out.events[0], drop);
        assert!(out.to(&c).is_empty());
        assert_eq!(out.requests(), vec![(w.clone(), c2.0.clone(), body(&["next"]))]);
    } else {
        assert_eq!(out.events, vec![drop]);
        assert!(out.transmits.is_empty());
        assert_eq!(h.broker.stats().busy_workers, 1, "the worker is busy until its FINAL");
        let out = h.reply(&w, Majortomo, &c, parts[2]);
        assert!(out.to(&c).is_empty(), "the client gets nothing");
        assert!(!out.events.iter().any(|e| matches!(e, BrokerEvent::RequestDropped { .. })));
        assert_eq!(out.requests(), vec![(w.clone(), c2.0.clone(), body(&["next"]))]);
    }
    assert!(h.broker.is_worker(&w));
    assert_eq!(h.broker.stats().dropped, 1);
    assert_eq!(h.broker.stats().replies_sent, 0);
}

#[test]
fn joined_reply_over_the_frame_limit_is_dropped() {
    // A majortomo PARTIAL has 5 header frames, so 12 lets 7 body frames in.
    let config = config(|c| c.max_message_frames = 12);
    let seven: &[&str] = &["1", "2", "3", "4", "5", "6", "7"];
    joined_reply_over_limit(config.clone(), [seven, seven, &["f"]], false);
    joined_reply_over_limit(config, [&["1", "2", "3", "4"], &["5", "6", "7", "8"], &["9", "a", "b", "c", "d"]], true);
}

#[test]
fn joined_reply_over_the_byte_limit_is_dropped() {
    let config = config(|c| c.max_message_bytes = 100);
    let forty = "x".repeat(40);
    let f: &str = &forty;
    joined_reply_over_limit(config.clone(), [&[f], &[f], &[f]], true);
    let sixty = "y".repeat(61);
    joined_reply_over_limit(config, [&[f], &[&sixty], &[f]], false);
}

#[test]
fn joined_reply_exactly_at_the_limits_is_delivered() {
    let config = config(|c| {
        c.max_message_frames = 8;
        c.max_message_bytes = 30;
    });
    let mut h = Harness::new(config);
    let (w, c) = (id("w"), id("c"));
    h.ready(&w, V02, "echo");
    h.request(&c, V01, "echo", &["q"]);
    // 8 frames and 30 bytes in all, each message within the limits too.
    assert!(h.partial(&w, V02, &c, &["aaaaaaaaaa", "bbbbb", ""]).is_empty());
    assert!(h.partial(&w, V02, &c, &["ccccc", "d", ""]).is_empty());
    let out = h.reply(&w, V02, &c, &["eeeeeeee", "f"]);
    let joined = ["aaaaaaaaaa", "bbbbb", "", "ccccc", "d", "", "eeeeeeee", "f"];
    assert_eq!(out.to(&c), vec![client_reply(V01, "echo", false, &joined)]);
    assert!(h.broker.is_worker(&w));
}

// ---------------------------------------------------------------- worker lifecycle

#[test]
fn ready_registers_a_worker() {
    let mut h = Harness::default();
    let w = id("w");
    assert!(!h.broker.is_worker(&w));
    let out = h.ready(&w, Majortomo, "echo");
    assert_eq!(
        out.events,
        vec![BrokerEvent::WorkerReady { worker: w.clone(), service: svc("echo"), dialect: Majortomo }]
    );
    assert!(out.transmits.is_empty());
    assert!(h.broker.is_worker(&w));
    assert_eq!(h.broker.worker_count(b"echo"), 1);
    assert_eq!(h.broker.worker_count(b"other"), 0);
    h.ready(&id("w2"), V01, "echo");
    assert_eq!(h.broker.worker_count(b"echo"), 2);
    assert_eq!(h.broker.stats().idle_workers, 2);
    assert_eq!(h.broker.stats().services, 1);
}

#[test]
fn second_ready_from_an_idle_worker_disconnects_it() {
    for d in Dialect::ALL {
        let mut h = Harness::default();
        let w = id("w");
        h.ready(&w, d, "echo");
        let out = h.ready(&w, d, "echo");
        assert_eq!(
            out.events,
            vec![misbehaved(&w, Command::Ready, Misbehavior::ReadyTwice), gone(&w, "echo", GoneReason::Misbehaved)]
        );
        assert_eq!(h.broker.worker_count(b"echo"), 0);
        assert_disconnected(&mut h, &out, &w, d);
        // It gets no request either.
        let out = h.request(&id("c"), V01, "echo", &["x"]);
        assert!(out.transmits.is_empty());
    }
}

#[test]
fn second_ready_from_a_busy_worker_disconnects_it_and_requeues_its_request() {
    let mut h = Harness::default();
    let (w1, w2, c) = (id("w1"), id("w2"), id("c"));
    h.ready(&w1, V01, "echo");
    h.request(&c, V01, "echo", &["x"]);
    h.ready(&w2, V02, "echo");
    assert_eq!(h.broker.stats().idle_workers, 1);
    let out = h.ready(&w1, V01, "echo");
    // Not back on the idle list: disconnected; its request goes to w2.
    assert_eq!(out.to(&w2), vec![worker_request(V02, &c, &["x"])]);
    assert!(out.events.contains(&misbehaved(&w1, Command::Ready, Misbehavior::ReadyTwice)));
    assert!(out.events.contains(&gone(&w1, "echo", GoneReason::Misbehaved)));
    assert!(out.events.contains(&BrokerEvent::RequestRequeued {
        client: c.clone(),
        service: svc("echo"),
        dispatches: 1
    }));
    let stats = h.broker.stats();
    assert_eq!((stats.idle_workers, stats.busy_workers), (0, 1));
    assert_eq!(h.broker.worker_count(b"echo"), 1);
    // w1's late REPLY is not forwarded; w2's is.
    assert_eq!(out.to(&w1), vec![disconnect(V01)]);
    let late = h.reply(&w1, V01, &c, &["late"]);
    assert!(late.to(&c).is_empty());
    let ok = h.reply(&w2, V02, &c, &["ok"]);
    assert_eq!(ok.to(&c), vec![client_reply(V01, "echo", false, &["ok"])]);
    assert_silent_to(&mut h, &w1, Duration::from_secs(30));
}

#[test]
fn worker_commands_before_ready_get_disconnect() {
    for d in Dialect::ALL {
        let cmds: Vec<(Command, PeerCommand)> = {
            let mut v = vec![
                (Command::Heartbeat, PeerCommand::Heartbeat),
                (Command::Final, PeerCommand::Final { client: svc("c"), body: body(&["x"]) }),
            ];
            if d != V01 {
                v.push((Command::Partial, PeerCommand::Partial { client: svc("c"), body: body(&["x"]) }));
            }
            v
        };
        for (sent, cmd) in cmds {
            let mut h = Harness::default();
            let (w, c) = (id("stranger"), id("c"));
            let out = h.cmd(&w, d, cmd);
            assert_eq!(out.events, vec![misbehaved(&w, sent, Misbehavior::BeforeReady)]);
            assert_eq!(out.to(&c), Vec::<Vec<Bytes>>::new());
            assert_disconnected(&mut h, &out, &w, d);
            assert_eq!(h.broker.stats().misbehaviors, 1);
            assert_eq!(h.broker.stats().services, 0);
        }
    }
}

#[test]
fn reply_for_a_client_an_idle_worker_is_not_serving_is_not_forwarded() {
    let mut h = Harness::default();
    let (w, victim) = (id("w"), id("victim"));
    h.ready(&w, V02, "echo");
    let out = h.reply(&w, V02, &victim, &["forged"]);
    assert!(out.to(&victim).is_empty());
    assert_eq!(
        out.events,
        vec![misbehaved(&w, Command::Final, Misbehavior::NotServingClient), gone(&w, "echo", GoneReason::Misbehaved)]
    );
    assert_disconnected(&mut h, &out, &w, V02);
}

#[test]
fn reply_for_a_client_a_busy_worker_is_not_serving_is_not_forwarded() {
    for final_ in [true, false] {
        let mut h = Harness::default();
        let (w, c, victim) = (id("w"), id("c"), id("victim"));
        h.ready(&w, Majortomo, "echo");
        h.request(&c, Majortomo, "echo", &["x"]);
        h.request(&victim, Majortomo, "echo", &["y"]);
        let out = if final_ {
            h.reply(&w, Majortomo, &victim, &["forged"])
        } else {
            h.partial(&w, Majortomo, &victim, &["forged"])
        };
        assert!(out.to(&victim).is_empty());
        assert!(out.to(&c).is_empty());
        let sent = if final_ { Command::Final } else { Command::Partial };
        assert_eq!(out.events[0], misbehaved(&w, sent, Misbehavior::NotServingClient));
        assert!(out.events.contains(&BrokerEvent::RequestRequeued {
            client: c.clone(),
            service: svc("echo"),
            dispatches: 1
        }));
        assert_eq!(h.broker.stats().queued_requests, 2);
        // The re-queued request is the first to go to the next worker.
        let w2 = id("w2");
        let next = h.ready(&w2, V01, "echo");
        assert_eq!(next.requests(), vec![(w2.clone(), c.0.clone(), body(&["x"]))]);
        assert_disconnected(&mut h, &out, &w, Majortomo);
    }
}

#[test]
fn ready_for_an_mmi_service_is_refused() {
    for d in Dialect::ALL {
        let mut h = Harness::default();
        let w = id("w");
        let out = h.ready(&w, d, "mmi.foo");
        assert_eq!(out.events, vec![misbehaved(&w, Command::Ready, Misbehavior::ReservedService)]);
        assert_eq!(h.broker.worker_count(b"mmi.foo"), 0);
        assert_eq!(h.broker.stats().services, 0);
        assert_disconnected(&mut h, &out, &w, d);
    }
}

#[test]
fn ready_for_a_name_that_merely_contains_mmi_is_accepted() {
    let mut h = Harness::default();
    let w = id("w");
    let out = h.ready(&w, V01, "xmmi.foo");
    assert!(out.transmits.is_empty());
    assert!(h.broker.is_worker(&w));
}

#[test]
fn disconnect_from_a_worker_forgets_it() {
    for busy in [false, true] {
        let mut h = Harness::default();
        let (w, c) = (id("w"), id("c"));
        h.ready(&w, V02, "echo");
        if busy {
            h.request(&c, V02, "echo", &["x"]);
        }
        let out = h.disconnect(&w, V02);
        assert!(out.transmits.is_empty(), "nothing is sent to a worker that said DISCONNECT");
        assert_eq!(out.events[0], gone(&w, "echo", GoneReason::Disconnected));
        assert!(!h.broker.is_worker(&w));
        assert_eq!(h.broker.worker_count(b"echo"), 0);
        if busy {
            assert_eq!(h.broker.stats().queued_requests, 1);
            assert_eq!(h.broker.stats().services, 1);
        } else {
            assert_eq!(h.broker.stats().services, 0);
        }
        assert_silent_to(&mut h, &w, Duration::from_secs(30));
    }
}

#[test]
fn disconnect_before_ready_gets_no_answer() {
    for d in Dialect::ALL {
        let mut h = Harness::default();
        let w = id("w");
        let out = h.disconnect(&w, d);
        assert!(out.is_empty(), "{out:?}");
        assert_silent_to(&mut h, &w, Duration::from_secs(30));
    }
}

#[test]
fn heartbeat_from_an_unknown_peer_gets_disconnect_in_its_dialect() {
    for d in Dialect::ALL {
        let mut h = Harness::default();
        let w = id("after-broker-restart");
        let out = h.heartbeat(&w, d);
        assert_eq!(out.to(&w), vec![disconnect(d)]);
        assert_eq!(out.events, vec![misbehaved(&w, Command::Heartbeat, Misbehavior::BeforeReady)]);
        assert!(!h.broker.is_worker(&w));
        // It can register afterwards.
        h.ready(&w, d, "echo");
        assert!(h.broker.is_worker(&w));
    }
}

#[test]
fn a_worker_switching_dialect_is_disconnected() {
    for (registered, switched) in [(V01, V02), (V02, Majortomo), (Majortomo, V01)] {
        let mut h = Harness::default();
        let w = id("w");
        h.ready(&w, registered, "echo");
        let out = h.heartbeat(&w, switched);
        assert_eq!(
            out.events,
            vec![
                misbehaved(&w, Command::Heartbeat, Misbehavior::DialectChanged { registered, sent: switched }),
                gone(&w, "echo", GoneReason::Misbehaved)
            ]
        );
        assert_disconnected(&mut h, &out, &w, registered);
    }
}

// ---------------------------------------------------------------- heartbeats

#[test]
fn heartbeat_defaults() {
    let c = BrokerConfig::default();
    assert_eq!(c.heartbeat_interval, ms(2500));
    assert_eq!(c.liveness, 3);
    assert_eq!(c.idle_worker_timeout(), ms(7500));
    assert_eq!(c.busy_timeout(), ms(7500));
}

#[test]
fn idle_worker_gets_heartbeat_after_exactly_one_interval() {
    for d in Dialect::ALL {
        let mut h = Harness::default();
        let w = id("w");
        h.set_time(ms(100));
        h.ready(&w, d, "echo");
        assert_eq!(h.broker.poll_timeout(), Some(h.at(ms(2600))));
        let out = h.tick(ms(2599));
        assert!(out.is_empty(), "{out:?}");
        let out = h.tick(ms(2600));
        assert_eq!(out.to(&w), vec![heartbeat(d)]);
        assert_eq!(out.transmits.len(), 1);
        // And again one interval later (the worker keeps talking).
        h.set_time(ms(4000));
        h.heartbeat(&w, d);
        assert!(h.tick(ms(5099)).is_empty());
        assert_eq!(h.tick(ms(5100)).to(&w), vec![heartbeat(d)]);
    }
}

#[test]
fn sending_a_request_resets_the_heartbeat_timer() {
    let mut h = Harness::default();
    let (w, c) = (id("w"), id("c"));
    h.ready(&w, V01, "echo");
    h.set_time(ms(1000));
    h.request(&c, V01, "echo", &["x"]);
    h.set_time(ms(1200));
    h.reply(&w, V01, &c, &["y"]);
    // No HEARTBEAT at 2.5 s: the broker sent a REQUEST at 1 s.
    let out = h.run_until(ms(3499));
    assert!(out.heartbeats().is_empty(), "{out:?}");
    let out = h.run_until(ms(3500));
    assert_eq!(out.to(&w), vec![heartbeat(V01)]);
}

#[test]
fn a_silent_worker_is_removed_at_exactly_liveness_times_interval() {
    let mut h = Harness::default();
    let w = id("w");
    h.ready(&w, V02, "echo");
    let out = h.run_until(ms(7499));
    assert_eq!(out.heartbeats(), vec![w.clone(), w.clone()], "heartbeats at 2.5 s and 5 s");
    assert!(h.broker.is_worker(&w));
    h.set_time(Duration::from_nanos(7_499_999_999));
    h.broker.handle_timeout(h.now);
    assert!(h.drain().is_empty());
    assert!(h.broker.is_worker(&w));
    let out = h.tick(ms(7500));
    assert_eq!(out.events, vec![gone(&w, "echo", GoneReason::Expired)]);
    assert_eq!(out.to(&w), vec![disconnect(V02)]);
    assert_eq!(out.transmits.len(), 1);
    assert!(!h.broker.is_worker(&w));
    assert_eq!(h.broker.stats().workers_expired, 1);
    assert_eq!(h.broker.stats().services, 0);
    assert_silent_to(&mut h, &w, Duration::from_secs(60));
}

#[test]
fn any_message_from_a_worker_refreshes_its_liveness() {
    // HEARTBEAT, PARTIAL and FINAL all count.
    for how in ["heartbeat", "partial", "final"] {
        let mut h = Harness::default();
        let (w, c) = (id("w"), id("c"));
        h.ready(&w, V02, "echo");
        h.request(&c, V02, "echo", &["x"]);
        h.set_time(ms(5000));
        match how {
            "heartbeat" => h.heartbeat(&w, V02),
            "partial" => h.partial(&w, V02, &c, &["p"]),
            _ => h.reply(&w, V02, &c, &["f"]),
        };
        let out = h.run_until(ms(12_499));
        assert!(out.events.is_empty(), "{how}: {out:?}");
        assert!(h.broker.is_worker(&w), "{how}");
        let out = h.run_until(ms(12_500));
        // (A request the worker still held then expires too: its time is up.)
        assert_eq!(out.events[0], gone(&w, "echo", GoneReason::Expired), "{how}");
    }
}

#[test]
fn heartbeat_interval_and_liveness_are_configurable() {
    let config = config(|c| {
        c.heartbeat_interval = ms(1000);
        c.liveness = 5;
    });
    let mut h = Harness::new(config);
    let w = id("w");
    h.ready(&w, V01, "echo");
    assert!(h.tick(ms(999)).is_empty());
    assert_eq!(h.tick(ms(1000)).heartbeats(), vec![w.clone()]);
    let out = h.run_until(ms(4999));
    assert_eq!(out.heartbeats().len(), 3);
    assert!(h.broker.is_worker(&w));
    let out = h.run_until(ms(5000));
    assert_eq!(out.events, vec![gone(&w, "echo", GoneReason::Expired)]);
}

// ---------------------------------------------------------------- known faults of other brokers

#[test]
fn a_dead_worker_behind_a_live_one_is_purged_and_gets_nothing() {
    let mut h = Harness::default();
    let (live, dead) = (id("live"), id("dead"));
    h.ready(&live, V01, "echo");
    h.ready(&dead, V01, "echo");
    for t in [2000, 4000, 6000, 8000] {
        h.set_time(ms(t));
        h.heartbeat(&live, V01);
    }
    let out = h.run_until(ms(8000));
    assert_eq!(out.events, vec![gone(&dead, "echo", GoneReason::Expired)]);
    assert_eq!(h.broker.worker_count(b"echo"), 1);
    // Two requests: the first to the live one, the second waits for it.
    let (c1, c2) = (id("c1"), id("c2"));
    let out = h.request(&c1, V01, "echo", &["1"]);
    assert_eq!(out.dispatched(), vec![(c1.clone(), live.clone())]);
    let out = h.request(&c2, V01, "echo", &["2"]);
    assert!(out.transmits.is_empty());
    let out = h.reply(&live, V01, &c1, &["r"]);
    assert_eq!(out.dispatched(), vec![(c2.clone(), live.clone())]);
}

#[test]
fn xmmi_is_not_mmi() {
    let mut h = Harness::default();
    let c = id("c");
    let out = h.request(&c, V01, "xmmi.foo", &["x"]);
    assert!(out.transmits.is_empty(), "no 501: {out:?}");
    assert_eq!(h.broker.stats().queued_requests, 1);
    assert_eq!(h.broker.stats().services, 1);
    let w = id("w");
    let out = h.ready(&w, V01, "xmmi.foo");
    assert_eq!(out.requests(), vec![(w.clone(), c.0.clone(), body(&["x"]))]);
}

#[test]
fn the_mmi_check_is_on_the_service_not_the_sender() {
    let mut h = Harness::default();
    let (c, w) = (id("mmi.client"), id("mmi.worker"));
    h.ready(&w, V01, "echo");
    assert!(h.broker.is_worker(&w));
    let out = h.request(&c, V01, "echo", &["x"]);
    assert_eq!(out.requests(), vec![(w.clone(), c.0.clone(), body(&["x"]))]);
}

// ---------------------------------------------------------------- busy workers

#[test]
fn a_silent_busy_worker_expires_and_its_request_goes_back_to_the_head() {
    let mut h = Harness::default();
    let (w1, w2, a, b, c) = (id("w1"), id("w2"), id("a"), id("b"), id("c"));
    h.ready(&w1, V01, "echo");
    h.request(&a, V01, "echo", &["a"]);
    h.set_time(ms(1000));
    h.request(&b, V01, "echo", &["b"]);
    h.request(&c, V01, "echo", &["c"]);
    let out = h.run_until(ms(7499));
    assert!(out.events.is_empty(), "{out:?}");
    let out = h.run_until(ms(7500));
    assert_eq!(
        out.events,
        vec![
            gone(&w1, "echo", GoneReason::Expired),
            BrokerEvent::RequestRequeued { client: a.clone(), service: svc("echo"), dispatches: 1 }
        ]
    );
    assert_eq!(out.to(&w1), vec![disconnect(V01)]);
    assert_eq!(h.broker.stats().queued_requests, 3);
    assert_eq!(h.broker.stats().requeued, 1);
    // The next worker gets A's request first, then B's, then C's.
    h.set_time(ms(8000));
    let out = h.ready(&w2, V02, "echo");
    assert_eq!(out.requests(), vec![(w2.clone(), a.0.clone(), body(&["a"]))]);
    assert_eq!(h.reply(&w2, V02, &a, &["r"]).dispatched(), vec![(b.clone(), w2.clone())]);
    assert_eq!(h.reply(&w2, V02, &b, &["r"]).dispatched(), vec![(c.clone(), w2.clone())]);
}

#[test]
fn max_job_time_frees_a_worker_whose_answer_never_comes() {
    // The worker keeps heartbeating (so it never expires), but its FINAL
    // was lost: without a limit it would stay busy for ever.
    let mut h = Harness::new(config(|c| c.max_job_time = Some(Duration::from_secs(9))));
    let (w1, w2, a) = (id("w1"), id("w2"), id("a"));
    h.ready(&w1, V02, "echo");
    h.request(&a, V02, "echo", &["a"]);
    for t in 1..=3 {
        h.set_time(ms(t * 2800));
        h.heartbeat(&w1, V02);
        assert!(h.tick(ms(t * 2800)).events.is_empty(), "still working at {} ms", t * 2800);
    }
    assert!(h.run_until(ms(8_999)).events.is_empty());
    let out = h.run_until(ms(9_000));
    assert_eq!(
        out.events,
        vec![
            gone(&w1, "echo", GoneReason::JobTooLong),
            BrokerEvent::RequestRequeued { client: a.clone(), service: svc("echo"), dispatches: 1 }
        ]
    );
    assert_eq!(out.to(&w1).last(), Some(&disconnect(V02)));
    // Another worker answers it.
    let out = h.ready(&w2, V02, "echo");
    assert_eq!(out.requests(), vec![(w2.clone(), a.0.clone(), body(&["a"]))]);
}

#[test]
fn without_max_job_time_a_heartbeating_worker_may_work_as_long_as_it_likes() {
    let mut h = Harness::default();
    let (w1, a) = (id("w1"), id("a"));
    h.ready(&w1, V02, "echo");
    h.request(&a, V02, "echo", &["a"]);
    for t in 1..=100 {
        h.set_time(ms(t * 2000));
        h.heartbeat(&w1, V02);
        assert!(h.tick(ms(t * 2000)).events.is_empty());
    }
    assert_eq!(h.broker.stats().busy_workers, 1);
    assert_eq!(h.reply(&w1, V02, &a, &["r"]).to(&a).len(), 1);
}

#[test]
fn re_dispatch_is_capped_by_max_dispatches() {
    let mut h = Harness::new(config(|c| c.max_dispatches = 2));
    let (w1, w2, w3, c) = (id("w1"), id("w2"), id("w3"), id("c"));
    h.ready(&w1, V01, "echo");
    h.ready(&w2, V01, "echo");
    h.request(&c, V01, "echo", &["x"]);
    let out = h.disconnect(&w1, V01);
    assert!(out.events.contains(&BrokerEvent::RequestRequeued {
        client: c.clone(),
        service: svc("echo"),
        dispatches: 1
    }));
    assert_eq!(out.requests(), vec![(w2.clone(), c.0.clone(), body(&["x"]))]);
    let out = h.disconnect(&w2, V01);
    assert_eq!(
        out.events,
        vec![
            gone(&w2, "echo", GoneReason::Disconnected),
            BrokerEvent::RequestDropped {
                client: c.clone(),
                service: svc("echo"),
                reason: DropReason::TooManyDispatches
            }
        ]
    );
    assert_eq!(h.broker.stats().dropped, 1);
    assert_eq!(h.broker.stats().queued_requests, 0);
    assert_eq!(h.broker.stats().services, 0);
    // Nothing left for the next worker; the client may send again.
    assert!(h.ready(&w3, V01, "echo").transmits.is_empty());
    assert_eq!(h.request(&c, V01, "echo", &["y"]).dispatched(), vec![(c.clone(), w3.clone())]);
}

#[test]
fn busy_worker_timeout_longer_than_idle() {
    let mut h = Harness::new(config(|c| c.busy_worker_timeout = Some(Duration::from_secs(20))));
    let (busy, idle, c) = (id("busy"), id("idle"), id("c"));
    h.ready(&busy, Majortomo, "echo");
    h.request(&c, Majortomo, "echo", &["x"]);
    h.ready(&idle, Majortomo, "echo");
    let out = h.run_until(ms(7500));
    assert_eq!(out.events, vec![gone(&idle, "echo", GoneReason::Expired)]);
    assert!(h.broker.is_worker(&busy));
    let out = h.run_until(ms(19_999));
    assert!(out.events.is_empty(), "{out:?}");
    let out = h.run_until(ms(20_000));
    assert_eq!(out.events[0], gone(&busy, "echo", GoneReason::Expired));
}

#[test]
fn busy_worker_timeout_shorter_than_the_heartbeat_interval() {
    let mut h = Harness::new(config(|c| c.busy_worker_timeout = Some(ms(1000))));
    let (w, c) = (id("w"), id("c"));
    h.ready(&w, V02, "echo");
    h.set_time(ms(500));
    h.heartbeat(&w, V02);
    h.request(&c, V02, "echo", &["x"]);
    assert_eq!(h.broker.poll_timeout(), Some(h.at(ms(1500))));
    let out = h.run_until(ms(1499));
    assert!(out.is_empty(), "{out:?}");
    let out = h.run_until(ms(1500));
    assert_eq!(out.events[0], gone(&w, "echo", GoneReason::Expired));
    // Once idle again, the idle window applies.
    let w2 = id("w2");
    h.ready(&w2, V02, "echo");
    h.set_time(ms(2000));
    h.reply(&w2, V02, &c, &["y"]);
    let out = h.run_until(ms(9499));
    assert!(out.events.is_empty(), "{out:?}");
    assert_eq!(h.run_until(ms(9500)).events, vec![gone(&w2, "echo", GoneReason::Expired)]);
}

// ---------------------------------------------------------------- unknown services

#[test]
fn request_for_a_service_without_workers_expires_at_request_timeout() {
    let mut h = Harness::default();
    let c = id("c");
    h.set_time(ms(1000));
    let out = h.request(&c, V02, "nobody", &["x"]);
    assert!(out.is_empty(), "{out:?}");
    let stats = h.broker.stats();
    assert_eq!((stats.services, stats.queued_requests), (1, 1));
    assert_eq!(h.broker.poll_timeout(), Some(h.at(ms(11_000))));
    assert!(h.tick(ms(10_999)).is_empty());
    let out = h.tick(ms(11_000));
    assert_eq!(out.events, vec![BrokerEvent::RequestExpired { client: c.clone(), service: svc("nobody") }]);
    assert!(out.transmits.is_empty(), "the client gets nothing");
    let stats = h.broker.stats();
    assert_eq!((stats.services, stats.queued_requests, stats.expired), (0, 0, 1));
}

#[test]
fn a_flood_of_made_up_service_names_leaves_nothing_behind() {
    let mut h = Harness::default();
    for round in 0..3u64 {
        h.set_time(Duration::from_secs(round * 20));
        for i in 0..10_000 {
            let out = h.request(&id(&format!("c{}", i % 7)), V01, &format!("made-up-{round}-{i}"), &["x"]);
            assert!(out.is_empty(), "{out:?}");
        }
        let stats = h.broker.stats();
        assert_eq!((stats.services, stats.queued_requests), (10_000, 10_000), "round {round}");
        let out = h.run_until(Duration::from_secs(round * 20 + 10));
        assert_eq!(out.events.len(), 10_000);
        assert!(out.events.iter().all(|e| matches!(e, BrokerEvent::RequestExpired { .. })));
        let stats = h.broker.stats();
        assert_eq!((stats.services, stats.queued_requests), (0, 0), "round {round}");
        assert_eq!(h.broker.poll_timeout(), None, "no timer left behind");
    }
    assert_eq!(h.broker.stats().limits_hit, 0);
}

#[test]
fn a_worker_that_arrives_before_expiry_gets_the_queued_request() {
    let mut h = Harness::default();
    let (w, c) = (id("w"), id("c"));
    h.request(&c, V01, "late", &["x"]);
    h.set_time(ms(9999));
    let out = h.ready(&w, V02, "late");
    assert_eq!(out.to(&w), vec![worker_request(V02, &c, &["x"])]);
    let out = h.run_until(ms(10_000));
    assert!(out.events.is_empty(), "a dispatched request does not expire: {out:?}");
    let out = h.reply(&w, V02, &c, &["y"]);
    assert_eq!(out.to(&c), vec![client_reply(V01, "late", false, &["y"])]);
}

#[test]
fn a_client_whose_request_expired_does_not_jump_the_queue_when_it_comes_back() {
    let mut h = Harness::new(config(|c| c.busy_worker_timeout = Some(Duration::from_secs(60))));
    let (w, x, a, b) = (id("w"), id("x"), id("a"), id("b"));
    h.ready(&w, V01, "s");
    h.request(&x, V01, "s", &["x"]); // w is busy with it for a while
    h.request(&a, V01, "s", &["a-old"]);
    for t in [2000, 4000, 6000, 8000, 10_000] {
        h.set_time(ms(t));
        h.heartbeat(&w, V01);
    }
    let out = h.run_until(ms(10_000));
    assert!(out.events.contains(&BrokerEvent::RequestExpired { client: a.clone(), service: svc("s") }));
    h.request(&b, V01, "s", &["b"]);
    h.request(&a, V01, "s", &["a-new"]);
    // B asked before A came back: B first.
    assert_eq!(h.reply(&w, V01, &x, &["r"]).requests(), vec![(w.clone(), b.0.clone(), body(&["b"]))]);
    assert_eq!(h.reply(&w, V01, &b, &["r"]).requests(), vec![(w.clone(), a.0.clone(), body(&["a-new"]))]);
    assert!(h.reply(&w, V01, &a, &["r"]).requests().is_empty());
    assert_eq!(h.broker.stats().queued_requests, 0);
}

// ---------------------------------------------------------------- MMI

#[test]
fn mmi_service_answers_200_or_404_in_the_clients_dialect() {
    for d in Dialect::ALL {
        let mut h = Harness::default();
        let c = id("c");
        let out = h.request(&c, d, "mmi.service", &["echo"]);
        assert_eq!(out.to(&c), vec![client_reply(d, "mmi.service", false, &["404"])]);
        h.ready(&id("w"), V01, "echo");
        let out = h.request(&c, d, "mmi.service", &["echo"]);
        assert_eq!(out.to(&c), vec![client_reply(d, "mmi.service", false, &["200"])]);
        assert_eq!(out.transmits.len(), 1);
        // Queued requests alone do not make a service known.
        h.request(&id("c2"), V01, "queued", &["x"]);
        let out = h.request(&c, d, "mmi.service", &["queued"]);
        assert_eq!(out.to(&c), vec![client_reply(d, "mmi.service", false, &["404"])]);
        // MMI requests are neither queued nor services.
        let stats = h.broker.stats();
        assert_eq!((stats.services, stats.queued_requests, stats.replies_sent), (2, 1, 3));
    }
}

#[test]
fn mmi_service_frames_are_exact() {
    let mut h = Harness::default();
    let c = id("c");
    h.ready(&id("w"), V01, "echo");
    let out = h.send(&c, frames(&[b"", b"MDPC01", b"mmi.service", b"echo"]));
    assert_eq!(out.to(&c), vec![frames(&[b"", b"MDPC01", b"mmi.service", b"200"])]);
    let out = h.send(&c, frames(&[b"MDPC02", &[0x01], b"mmi.service", b"nope"]));
    assert_eq!(out.to(&c), vec![frames(&[b"MDPC02", &[0x03], b"mmi.service", b"404"])]);
    let out = h.send(&c, frames(&[b"", b"MDPC02", &[0x02], b"mmi.service", b"echo"]));
    assert_eq!(out.to(&c), vec![frames(&[b"", b"MDPC02", &[0x04], b"200"])]);
}

#[test]
fn other_mmi_services_answer_501() {
    for d in Dialect::ALL {
        let mut h = Harness::default();
        let c = id("c");
        let out = h.request(&c, d, "mmi.foo", &["x"]);
        assert_eq!(out.to(&c), vec![client_reply(d, "mmi.foo", false, &["501"])]);
        assert_eq!(h.broker.stats().services, 0);
    }
}

// ---------------------------------------------------------------- limits

#[test]
fn max_services() {
    let mut h = Harness::new(config(|c| c.max_services = 2));
    let c = id("c");
    h.request(&c, V01, "s1", &["x"]);
    h.request(&c, V01, "s2", &["x"]);
    let out = h.request(&c, V01, "s3", &["x"]);
    assert_eq!(out.events, vec![limit(&c, Limit::Services)]);
    assert!(out.transmits.is_empty());
    // Once every service has workers, a worker of a new service gets
    // DISCONNECT: there is nothing to evict.
    assert_eq!(h.ready(&id("w1"), V01, "s1").requests().len(), 1);
    assert_eq!(h.ready(&id("w2"), V01, "s2").requests().len(), 1);
    let w = id("w");
    let out = h.ready(&w, V02, "s4");
    assert_eq!(out.events, vec![limit(&w, Limit::Services)]);
    assert_eq!(out.to(&w), vec![disconnect(V02)]);
    assert!(!h.broker.is_worker(&w));
    // Existing services still take requests and workers.
    assert!(h.request(&c, V01, "s1", &["y"]).events.is_empty());
    assert!(h.ready(&id("w3"), V01, "s2").events.len() == 1);
    let stats = h.broker.stats();
    assert_eq!((stats.services, stats.limits_hit), (2, 2));
}

fn dropped(client: &PeerId, service: &str, reason: DropReason) -> BrokerEvent {
    BrokerEvent::RequestDropped { client: client.clone(), service: svc(service), reason }
}

fn ready_event(worker: &PeerId, service: &str, dialect: Dialect) -> BrokerEvent {
    BrokerEvent::WorkerReady { worker: worker.clone(), service: svc(service), dialect }
}

#[test]
fn a_ready_for_a_new_service_evicts_the_service_without_workers_longest() {
    let mut h = Harness::new(config(|c| c.max_services = 3));
    let (a, b, c) = (id("a"), id("b"), id("c"));
    h.request(&a, V01, "old", &["1"]);
    h.set_time(ms(1));
    h.request(&b, V02, "mid", &["2"]);
    h.request(&c, V02, "mid", &["3"]);
    h.set_time(ms(2));
    h.request(&c, V01, "new", &["4"]);
    let before = h.broker.stats();
    assert_eq!((before.services, before.queued_requests), (3, 4));
    // The table is full; a worker of a new service makes room at once.
    let w1 = id("w1");
    let out = h.ready(&w1, V02, "real");
    assert_eq!(out.events, vec![dropped(&a, "old", DropReason::Evicted), ready_event(&w1, "real", V02)]);
    assert!(out.to(&w1).is_empty(), "nothing to do yet, and no DISCONNECT");
    assert!(h.broker.is_worker(&w1));
    let stats = h.broker.stats();
    assert_eq!((stats.services, stats.queued_requests, stats.dropped), (3, 3, 1));
    assert_eq!(stats.queued_bytes, before.queued_bytes - charge(&a, &["1"]));
    // Next: "mid", with both its requests; "new" stays.
    let w2 = id("w2");
    let mut out = h.ready(&w2, V01, "real2");
    assert_eq!(out.events.pop(), Some(ready_event(&w2, "real2", V01)));
    let mut evicted = out.events;
    evicted.sort_by_key(|e| format!("{e:?}"));
    assert_eq!(evicted, vec![dropped(&b, "mid", DropReason::Evicted), dropped(&c, "mid", DropReason::Evicted)]);
    assert_eq!(h.broker.stats().queued_bytes, charge(&c, &["4"]));
    // The evicted requests are gone for good: they never expire.
    let w3 = id("w3");
    let out = h.ready(&w3, V01, "new");
    assert_eq!(out.requests(), vec![(w3.clone(), c.0.clone(), body(&["4"]))]);
    h.reply(&w3, V01, &c, &["r"]);
    let out = h.run_until(Duration::from_secs(11));
    assert!(out.events.iter().all(|e| matches!(e, BrokerEvent::WorkerGone { .. })), "{:?}", out.events);
    let stats = h.broker.stats();
    assert_eq!((stats.queued_requests, stats.queued_bytes, stats.limits_hit), (0, 0, 0));
}

#[test]
fn a_service_whose_last_worker_left_is_evicted_in_the_order_it_lost_it() {
    let mut h = Harness::new(config(|c| c.max_services = 2));
    let (w, c) = (id("w"), id("c"));
    h.ready(&w, V02, "was-served");
    h.set_time(ms(1));
    h.request(&c, V01, "made-up", &["x"]);
    // The worker leaves while a request waits for it: "was-served" is now
    // without workers, after "made-up".
    h.request(&c, V01, "was-served", &["busy"]);
    h.request(&c, V01, "was-served", &["waiting"]);
    h.set_time(ms(2));
    h.disconnect(&w, V02);
    assert_eq!(h.broker.stats().queued_requests, 3);
    let out = h.ready(&id("n1"), V02, "n1");
    assert_eq!(out.events[0], dropped(&c, "made-up", DropReason::Evicted));
    let out = h.ready(&id("n2"), V02, "n2");
    assert_eq!(
        out.events[..2],
        [dropped(&c, "was-served", DropReason::Evicted), dropped(&c, "was-served", DropReason::Evicted)]
    );
    let stats = h.broker.stats();
    assert_eq!((stats.services, stats.idle_workers, stats.queued_requests, stats.queued_bytes), (2, 2, 0, 0));
    // Both services now have workers: the next new one is refused.
    let n3 = id("n3");
    assert_eq!(h.ready(&n3, V02, "n3").events, vec![limit(&n3, Limit::Services)]);
}

#[test]
fn a_flood_of_made_up_names_never_evicts_a_service_with_workers() {
    let mut h = Harness::new(config(|cfg| cfg.max_services = 100));
    let (wa, wb, attacker, user) = (id("wa"), id("wb"), id("attacker"), id("user"));
    h.ready(&wa, V02, "a");
    // "b" waits for a worker first, so it is without workers for a while.
    h.request(&user, V02, "b", &["early"]);
    h.ready(&wb, V02, "b");
    h.reply(&wb, V02, &user, &["r"]);
    let mut refused = 0;
    for i in 0..20_000 {
        let out = h.request(&attacker, V02, &format!("made-up-{i}"), &["x"]);
        refused += usize::from(out.events == vec![limit(&attacker, Limit::Services)]);
        if i % 1000 == 999 {
            // The real services keep their workers and keep serving.
            assert_eq!((h.broker.worker_count(b"a"), h.broker.worker_count(b"b")), (1, 1));
            for (service, w) in [("a", &wa), ("b", &wb)] {
                assert_eq!(h.request(&user, V02, service, &["q"]).dispatched(), vec![(user.clone(), w.clone())]);
                h.reply(w, V02, &user, &["r"]);
            }
        }
    }
    assert_eq!(refused, 20_000 - 98, "the table holds 98 made-up names beside a and b");
    // Workers of new services, more than the table holds: each registers at
    // once while a made-up name is left to evict, and none of them pushes out
    // a service that has a worker.
    let mut registered = 0;
    for i in 0..150 {
        let w = id(&format!("new-{i}"));
        let out = h.ready(&w, V02, &format!("new-{i}"));
        if h.broker.is_worker(&w) {
            registered += 1;
            assert!(out.events.contains(&ready_event(&w, &format!("new-{i}"), V02)));
        } else {
            assert_eq!(out.events, vec![limit(&w, Limit::Services)]);
        }
    }
    assert_eq!(registered, 98);
    assert_eq!((h.broker.worker_count(b"a"), h.broker.worker_count(b"b")), (1, 1));
    let stats = h.broker.stats();
    assert_eq!((stats.services, stats.queued_requests, stats.queued_bytes), (100, 0, 0));
}

#[test]
fn max_workers() {
    let mut h = Harness::new(config(|c| c.max_workers = 2));
    h.ready(&id("w1"), V01, "a");
    h.ready(&id("w2"), V01, "b");
    let w3 = id("w3");
    let out = h.ready(&w3, Majortomo, "a");
    assert_eq!(out.events, vec![limit(&w3, Limit::Workers)]);
    assert_eq!(out.to(&w3), vec![disconnect(Majortomo)]);
    assert!(!h.broker.is_worker(&w3));
    assert_eq!(h.broker.worker_count(b"a"), 1);
    assert_eq!(h.broker.stats().idle_workers, 2);
    // Room again once one leaves.
    h.disconnect(&id("w1"), V01);
    assert!(h.ready(&w3, Majortomo, "a").transmits.is_empty());
    assert!(h.broker.is_worker(&w3));
}

#[test]
fn max_queue_per_service() {
    let mut h = Harness::new(config(|c| c.max_queue_per_service = 3));
    for i in 0..3 {
        assert!(h.request(&id(&format!("c{i}")), V01, "a", &["x"]).is_empty());
    }
    let c = id("c3");
    assert_eq!(h.request(&c, V01, "a", &["x"]).events, vec![limit(&c, Limit::QueuePerService)]);
    // The same client's backlog counts as well, and another service has room.
    assert_eq!(h.request(&id("c0"), V01, "a", &["x"]).events, vec![limit(&id("c0"), Limit::QueuePerService)]);
    assert!(h.request(&c, V01, "b", &["x"]).is_empty());
    assert_eq!(h.broker.stats().queued_requests, 4);
    // The request was dropped, not queued: a worker gets only the three.
    let w = id("w");
    let mut served = h.ready(&w, V01, "a").requests().len();
    for i in 0..3 {
        served += h.reply(&w, V01, &id(&format!("c{i}")), &["r"]).requests().len();
    }
    assert_eq!(served, 3);
}

#[test]
fn a_full_service_queue_does_not_block_a_client_an_idle_worker_can_serve() {
    // With one request per client in flight, a queue can be full while a
    // worker is idle.
    let mut h = Harness::new(config(|c| {
        c.max_queue_per_service = 3;
        c.max_in_flight_per_client = NonZeroUsize::new(1);
    }));
    let (w1, w2, a, b) = (id("w1"), id("w2"), id("a"), id("b"));
    h.ready(&w1, V01, "s");
    h.ready(&w2, V01, "s");
    // A floods: one in flight, three queued behind it, the fifth refused.
    for i in 0..4 {
        h.request(&a, V01, "s", &[&i.to_string()]);
    }
    assert_eq!(h.request(&a, V01, "s", &["4"]).events, vec![limit(&a, Limit::QueuePerService)]);
    // B's request would not wait in the queue: w2 is idle.
    assert_eq!(h.request(&b, V01, "s", &["b"]).dispatched(), vec![(b.clone(), w2.clone())]);
    assert_eq!(h.broker.stats().queued_requests, 3);
}

#[test]
fn max_queue_total() {
    let mut h = Harness::new(config(|c| c.max_queue_total = 3));
    let c = id("c");
    for s in ["a", "b", "c"] {
        assert!(h.request(&c, V01, s, &["x"]).is_empty());
    }
    let out = h.request(&c, V01, "d", &["x"]);
    assert_eq!(out.events, vec![limit(&c, Limit::QueueTotal)]);
    assert_eq!(h.request(&c, V01, "a", &["y"]).events, vec![limit(&c, Limit::QueueTotal)]);
    let stats = h.broker.stats();
    assert_eq!((stats.queued_requests, stats.services, stats.limits_hit), (3, 3, 2));
    // A request an idle worker takes at once is never queued: full queues
    // elsewhere do not block a service that has room.
    let w = id("w");
    h.ready(&w, V01, "e");
    assert_eq!(h.request(&c, V01, "e", &["x"]).dispatched(), vec![(c.clone(), w.clone())]);
}

#[test]
fn max_message_frames() {
    let mut h = Harness::new(config(|c| c.max_message_frames = 6));
    let (c, w) = (id("c"), id("w"));
    h.ready(&w, V01, "echo");
    // 3 header frames + 3 body frames = 6: fine; 7 is not.
    assert_eq!(h.request(&c, V01, "echo", &["1", "2", "3"]).dispatched().len(), 1);
    let out = h.request(&id("c2"), V01, "echo", &["1", "2", "3", "4"]);
    assert_eq!(out.events, vec![limit(&id("c2"), Limit::MessageFrames)]);
    assert!(out.transmits.is_empty());
    assert_eq!(h.broker.stats().queued_requests, 0);
    // From a worker: dropped, and the worker is disconnected.
    let out = h.reply(&w, V01, &c, &["1", "2"]);
    assert_eq!(out.to(&c), Vec::<Vec<Bytes>>::new());
    assert_eq!(out.events[0], limit(&w, Limit::MessageFrames));
    assert!(out.events.contains(&gone(&w, "echo", GoneReason::Misbehaved)));
    assert_eq!(out.to(&w), vec![disconnect(V01)]);
}

#[test]
fn max_message_bytes() {
    let mut h = Harness::new(config(|c| c.max_message_bytes = 32));
    let c = id("c");
    // "" + "MDPC01" + "q" = 7 bytes of header.
    assert!(h.request(&c, V01, "q", &[&"x".repeat(25)]).events.is_empty());
    let out = h.request(&c, V01, "q", &[&"x".repeat(26)]);
    assert_eq!(out.events, vec![limit(&c, Limit::MessageBytes)]);
    assert_eq!(h.broker.stats().queued_requests, 1);
}

/// What a request from `client` with `parts` is charged against the byte
/// budget, as `BrokerConfig::max_queued_bytes` documents it.
fn charge(client: &PeerId, parts: &[&str]) -> usize {
    let frame = BrokerConfig::FRAME_OVERHEAD;
    client.as_bytes().len() + frame + parts.iter().map(|p| p.len() + frame).sum::<usize>()
}

/// A body of `n` bytes.
fn big(n: usize) -> String {
    "x".repeat(n)
}

#[test]
fn the_byte_budget_drops_what_does_not_fit_and_returns_to_zero() {
    let mib = big(1 << 20);
    let one = charge(&id("c0"), &[&mib]);
    let mut h = Harness::new(config(|c| {
        c.max_queued_bytes = 3 * one + 1000;
        c.max_queued_bytes_per_service = usize::MAX;
    }));
    // Three 1 MiB requests fit, the fourth does not, whatever its service.
    for i in 0..3 {
        assert!(h.request(&id(&format!("c{i}")), V01, "big", &[&mib]).is_empty());
    }
    let c3 = id("c3");
    let out = h.request(&c3, V01, "big", &[&mib]);
    assert_eq!(out.events, vec![limit(&c3, Limit::QueuedBytes)]);
    let out = h.request(&c3, V01, "other", &[&mib]);
    assert_eq!(out.events, vec![limit(&c3, Limit::QueuedBytes)]);
    assert_eq!(h.broker.stats().services, 1, "the refused request leaves no service behind");
    // A small one still fits in what is left.
    assert!(h.request(&c3, V01, "other", &["small"]).is_empty());
    let stats = h.broker.stats();
    assert_eq!(
        (stats.queued_requests, stats.queued_bytes, stats.held_bytes),
        (4, 3 * one + charge(&c3, &["small"]), 0)
    );
    assert_eq!(stats.limits_hit, 2);
    // A worker takes them one by one: the bytes move from queued to held,
    // and are gone once answered.
    let w = id("w");
    assert_eq!(h.ready(&w, V02, "big").requests().len(), 1);
    let stats = h.broker.stats();
    assert_eq!((stats.queued_bytes, stats.held_bytes), (2 * one + charge(&c3, &["small"]), one));
    for i in 0..3 {
        h.reply(&w, V02, &id(&format!("c{i}")), &["done"]);
    }
    let stats = h.broker.stats();
    assert_eq!((stats.queued_bytes, stats.held_bytes), (charge(&c3, &["small"]), 0));
    // The last one expires: nothing is charged any more.
    h.run_until(Duration::from_secs(11));
    let stats = h.broker.stats();
    assert_eq!((stats.queued_requests, stats.busy_workers, stats.queued_bytes, stats.held_bytes), (0, 0, 0, 0));
    // And the budget is whole again.
    for i in 0..3 {
        assert!(h.request(&id(&format!("c{i}")), V01, "big", &[&mib]).events.is_empty());
    }
}

#[test]
fn many_empty_frames_are_charged_too() {
    let mut h = Harness::new(config(|c| {
        c.max_queued_bytes = 100 * BrokerConfig::FRAME_OVERHEAD;
        c.max_message_frames = 1024;
    }));
    let c = id("c");
    let empty = [""; 200];
    assert_eq!(h.request(&c, V01, "s", &empty).events, vec![limit(&c, Limit::QueuedBytes)]);
    assert_eq!(h.broker.stats().queued_bytes, 0);
    assert!(h.request(&c, V01, "s", &empty[..90]).events.is_empty());
    assert_eq!(h.broker.stats().queued_bytes, charge(&c, &empty[..90]));
}

#[test]
fn one_service_cannot_take_more_than_its_share_of_the_bytes() {
    let body = big(10_000);
    let one = charge(&id("c"), &[&body]);
    let mut h = Harness::new(config(|c| {
        c.max_queued_bytes = 10 * one;
        c.max_queued_bytes_per_service = 2 * one;
    }));
    let c = id("c");
    assert!(h.request(&c, V02, "stuck", &[&body]).is_empty());
    assert!(h.request(&c, V02, "stuck", &[&body]).is_empty());
    assert_eq!(h.request(&c, V02, "stuck", &[&body]).events, vec![limit(&c, Limit::QueuedBytesPerService)]);
    // Other services still have room.
    assert!(h.request(&c, V02, "fine", &[&body]).is_empty());
    // Requests at its workers count in the service's share too.
    let w = id("w");
    h.ready(&w, V02, "fine");
    assert!(h.request(&id("d"), V02, "fine", &[&body]).events.is_empty());
    let stats = h.broker.stats();
    assert_eq!((stats.queued_bytes, stats.held_bytes), (3 * one, one));
    assert_eq!(h.request(&c, V02, "fine", &[&body]).events, vec![limit(&c, Limit::QueuedBytesPerService)]);
}

#[test]
fn a_request_an_idle_worker_takes_at_once_is_charged_and_moves_back_to_the_queue_if_the_worker_is_lost() {
    let body = big(50_000);
    let one = charge(&id("a"), &[&body]);
    let mut h = Harness::new(config(|c| c.max_queued_bytes = one));
    let (w, a, b) = (id("w"), id("a"), id("b"));
    h.ready(&w, V01, "s");
    assert_eq!(h.request(&a, V01, "s", &[&body]).dispatched(), vec![(a.clone(), w.clone())]);
    assert_eq!((h.broker.stats().queued_bytes, h.broker.stats().held_bytes), (0, one));
    // The worker holds all the budget: nothing else fits, not even for
    // another idle worker.
    h.ready(&id("w2"), V01, "t");
    assert_eq!(h.request(&b, V01, "t", &[&body]).events, vec![limit(&b, Limit::QueuedBytes)]);
    // The worker is lost: its request goes back to the queue, same bytes.
    let out = h.disconnect(&w, V01);
    assert!(out.events.contains(&BrokerEvent::RequestRequeued { client: a.clone(), service: svc("s"), dispatches: 1 }));
    assert_eq!((h.broker.stats().queued_bytes, h.broker.stats().held_bytes), (one, 0));
    assert_eq!(h.request(&b, V01, "t", &[&body]).events, vec![limit(&b, Limit::QueuedBytes)]);
    // Served by the next worker: all free.
    let w3 = id("w3");
    assert_eq!(h.ready(&w3, V01, "s").dispatched(), vec![(a.clone(), w3.clone())]);
    h.reply(&w3, V01, &a, &["r"]);
    assert_eq!((h.broker.stats().queued_bytes, h.broker.stats().held_bytes), (0, 0));
    assert_eq!(h.request(&b, V01, "t", &[&body]).dispatched().len(), 1);
}

#[test]
fn partials_joined_for_a_0_1_client_are_charged_and_dropped_past_the_budget() {
    let part = big(10_000);
    let c = id("c");
    let request = charge(&c, &["q"]);
    let partial = part.len() + BrokerConfig::FRAME_OVERHEAD;
    let mut h = Harness::new(config(|cfg| cfg.max_queued_bytes = request + partial + 10));
    let w = id("w");
    h.ready(&w, V02, "s");
    h.request(&c, V01, "s", &["q"]);
    assert!(h.partial(&w, V02, &c, &[&part]).is_empty());
    assert_eq!(h.broker.stats().held_bytes, request + partial);
    // The next part would pass the budget: the request is dropped, the
    // parts held are freed, and the rest of the reply is thrown away.
    let out = h.partial(&w, V02, &c, &[&part]);
    assert_eq!(out.events, vec![dropped(&c, "s", DropReason::ReplyOverBudget(Limit::QueuedBytes))]);
    assert!(out.to(&c).is_empty());
    assert_eq!(h.broker.stats().held_bytes, request);
    assert!(h.partial(&w, V02, &c, &[&part]).is_empty());
    let out = h.reply(&w, V02, &c, &["end"]);
    assert!(out.to(&c).is_empty(), "the client gets nothing of a dropped reply");
    let stats = h.broker.stats();
    assert_eq!((stats.idle_workers, stats.held_bytes, stats.queued_bytes), (1, 0, 0));
    // A reply that fits is joined and delivered, and frees its bytes.
    h.request(&c, V01, "s", &["q"]);
    h.partial(&w, V02, &c, &[&part]);
    let out = h.reply(&w, V02, &c, &["end"]);
    assert_eq!(out.to(&c).len(), 1);
    assert_eq!(h.broker.stats().held_bytes, 0);
}

#[test]
fn partials_joined_count_in_the_service_s_share() {
    let part = big(10_000);
    let c = id("c");
    let request = charge(&c, &["q"]);
    let partial = part.len() + BrokerConfig::FRAME_OVERHEAD;
    let mut h = Harness::new(config(|cfg| cfg.max_queued_bytes_per_service = request + partial));
    let w = id("w");
    h.ready(&w, V02, "s");
    h.request(&c, V01, "s", &["q"]);
    assert!(h.partial(&w, V02, &c, &[&part]).is_empty());
    let out = h.partial(&w, V02, &c, &["1"]);
    assert_eq!(out.events, vec![dropped(&c, "s", DropReason::ReplyOverBudget(Limit::QueuedBytesPerService))]);
    // The parts were freed: the service has room for another request.
    let d = id("d");
    assert!(h.request(&d, V01, "s", &["q"]).is_empty());
    assert_eq!(h.broker.stats().held_bytes, request);
    // A worker lost mid-request: the request goes back to the queue with
    // its bytes.
    let out = h.disconnect(&w, V02);
    assert!(out.events.contains(&BrokerEvent::RequestRequeued { client: c.clone(), service: svc("s"), dispatches: 1 }));
    let stats = h.broker.stats();
    assert_eq!((stats.held_bytes, stats.queued_bytes), (0, request + charge(&d, &["q"])));
}

#[test]
fn service_names_longer_than_the_limit_are_refused() {
    let mut h = Harness::default();
    let (c, w) = (id("c"), id("w"));
    let long = big(256);
    assert_eq!(h.request(&c, V02, &long, &["x"]).events, vec![limit(&c, Limit::ServiceName)]);
    let out = h.ready(&w, V02, &long);
    assert_eq!(out.events, vec![limit(&w, Limit::ServiceName)]);
    assert_eq!(out.to(&w), vec![disconnect(V02)]);
    assert_eq!(h.broker.stats().services, 0);
    // 255 bytes is fine.
    let ok = big(255);
    assert!(h.ready(&w, V02, &ok).events.len() == 1);
    assert_eq!(h.request(&c, V02, &ok, &["x"]).dispatched(), vec![(c.clone(), w.clone())]);
}

#[test]
fn a_request_whose_worker_is_lost_is_requeued_even_past_the_queue_limit() {
    let mut h = Harness::new(config(|c| c.max_queue_total = 1));
    let (w, a, b) = (id("w"), id("a"), id("b"));
    h.ready(&w, V01, "echo");
    h.request(&a, V01, "echo", &["a"]);
    h.request(&b, V01, "echo", &["b"]);
    assert_eq!(h.request(&id("c"), V01, "echo", &["c"]).events, vec![limit(&id("c"), Limit::QueueTotal)]);
    let out = h.disconnect(&w, V01);
    assert!(out.events.contains(&BrokerEvent::RequestRequeued {
        client: a.clone(),
        service: svc("echo"),
        dispatches: 1
    }));
    assert_eq!(h.broker.stats().queued_requests, 2);
    // Both are served, A's first.
    let w2 = id("w2");
    assert_eq!(h.ready(&w2, V01, "echo").dispatched(), vec![(a.clone(), w2.clone())]);
    assert_eq!(h.reply(&w2, V01, &a, &["r"]).dispatched(), vec![(b.clone(), w2.clone())]);
}

#[test]
fn memory_never_exceeds_the_limits() {
    let mut h = Harness::new(config(|c| {
        c.max_services = 5;
        c.max_workers = 4;
        c.max_queue_per_service = 3;
        c.max_queue_total = 7;
        c.max_queued_bytes = 2000;
    }));
    for i in 0..200 {
        let t = i % 9;
        h.request(&id(&format!("c{}", i % 13)), Dialect::ALL[i % 3], &format!("s{t}"), &[&big(150)]);
        if i % 5 == 0 {
            h.ready(&id(&format!("w{i}")), V02, &format!("s{}", i % 11));
        }
        let stats = h.broker.stats();
        assert!(stats.services <= 5, "{stats:?}");
        assert!(stats.idle_workers + stats.busy_workers <= 4, "{stats:?}");
        assert!(stats.queued_requests <= 7, "{stats:?}");
        assert!(stats.queued_bytes + stats.held_bytes <= 2000, "{stats:?}");
    }
    assert!(h.broker.stats().limits_hit > 0);
}

// ---------------------------------------------------------------- events

#[test]
fn unreachable_worker_is_forgotten_and_its_request_requeued() {
    let mut h = Harness::default();
    let (w1, w2, c) = (id("w1"), id("w2"), id("c"));
    h.ready(&w1, V01, "echo");
    h.request(&c, V01, "echo", &["x"]);
    h.ready(&w2, V02, "echo");
    h.broker.handle_unreachable(h.now, &w1);
    let out = h.drain();
    assert_eq!(
        out.events,
        vec![
            gone(&w1, "echo", GoneReason::Unreachable),
            BrokerEvent::RequestRequeued { client: c.clone(), service: svc("echo"), dispatches: 1 },
            BrokerEvent::RequestDispatched { client: c.clone(), service: svc("echo"), worker: w2.clone() },
        ]
    );
    assert!(out.to(&w1).is_empty(), "nothing is sent to an unreachable worker");
    assert_eq!(out.to(&w2), vec![worker_request(V02, &c, &["x"])]);
    // An unreachable client: nothing to do.
    h.broker.handle_unreachable(h.now, &c);
    assert!(h.drain().is_empty());
    assert_eq!(h.broker.stats().busy_workers, 1);
}

#[test]
fn shutdown_disconnects_every_worker_and_drops_every_request() {
    let mut h = Harness::default();
    let (idle, busy, c1, c2) = (id("idle"), id("busy"), id("c1"), id("c2"));
    h.ready(&busy, V02, "echo");
    h.request(&c1, V01, "echo", &["x"]);
    h.ready(&idle, V01, "other");
    h.request(&c2, Majortomo, "nobody", &["y"]);
    h.set_time(ms(100));
    h.broker.shutdown(h.now);
    let out = h.drain();
    assert_eq!(out.to(&idle), vec![disconnect(V01)]);
    assert_eq!(out.to(&busy), vec![disconnect(V02)]);
    assert!(out.to(&c1).is_empty() && out.to(&c2).is_empty());
    let mut events = out.events.clone();
    events.sort_by_key(|e| format!("{e:?}"));
    let mut expected = vec![
        gone(&idle, "other", GoneReason::Shutdown),
        gone(&busy, "echo", GoneReason::Shutdown),
        BrokerEvent::RequestDropped { client: c1.clone(), service: svc("echo"), reason: DropReason::Shutdown },
        BrokerEvent::RequestDropped { client: c2.clone(), service: svc("nobody"), reason: DropReason::Shutdown },
    ];
    expected.sort_by_key(|e| format!("{e:?}"));
    assert_eq!(events, expected);
    let s = h.broker.stats();
    assert_eq!((s.services, s.idle_workers, s.busy_workers, s.queued_requests, s.dropped), (0, 0, 0, 0, 2));
    assert_eq!(h.broker.poll_timeout(), None);
    assert!(h.run_until(Duration::from_secs(60)).is_empty());
}

#[test]
fn undecodable_messages_are_reported_and_dropped() {
    let mut h = Harness::default();
    let (stranger, w) = (id("stranger"), id("w"));
    let junk: [Vec<Bytes>; 5] = [
        vec![],
        frames(&[b"junk"]),
        frames(&[b"", b"MDPC01"]),
        frames(&[b"MDPW02", &[0x09]]),
        frames(&[b"", b"MDPW01", &[0x01]]),
    ];
    for frames in junk.clone() {
        let out = h.send(&stranger, frames);
        assert!(out.transmits.is_empty(), "{out:?}");
        assert!(
            matches!(
                &out.events[..],
                [BrokerEvent::PeerMisbehaved { peer, sent: None, reason: Misbehavior::Malformed(_) }]
                    if peer == &stranger
            ),
            "{out:?}"
        );
    }
    assert_eq!(h.broker.stats().misbehaviors, junk.len() as u64);
    // From a registered worker: it is disconnected too.
    h.ready(&w, Majortomo, "echo");
    let out = h.send(&w, frames(&[b"", b"MDPW02", &[0x05], b"extra"]));
    assert_eq!(out.events.len(), 2, "{out:?}");
    assert_eq!(out.events[1], gone(&w, "echo", GoneReason::Misbehaved));
    assert_disconnected(&mut h, &out, &w, Majortomo);
}

// ---------------------------------------------------------------- statistics

#[test]
fn statistics_follow_a_scenario() {
    let mut h = Harness::new(config(|c| {
        c.max_queue_total = 2;
        c.max_in_flight_per_client = NonZeroUsize::new(1);
    }));
    let (w1, w2, a, b) = (id("w1"), id("w2"), id("a"), id("b"));
    let check = |h: &Harness, now: [usize; 4], totals: [u64; 9]| {
        let s: BrokerStats = h.broker.stats();
        assert_eq!([s.services, s.idle_workers, s.busy_workers, s.queued_requests], now, "{s:?}");
        let got = [
            s.requests_received,
            s.replies_sent,
            s.dispatched,
            s.requeued,
            s.expired,
            s.dropped,
            s.workers_expired,
            s.misbehaviors,
            s.limits_hit,
        ];
        assert_eq!(got, totals, "{s:?}");
    };
    check(&h, [0, 0, 0, 0], [0; 9]);
    h.ready(&w1, V01, "echo");
    h.ready(&w2, V01, "echo");
    check(&h, [1, 2, 0, 0], [0; 9]);
    h.request(&a, V01, "echo", &["1"]);
    h.request(&a, V01, "echo", &["2"]);
    check(&h, [1, 1, 1, 1], [2, 0, 1, 0, 0, 0, 0, 0, 0]);
    h.request(&b, V01, "nobody", &["x"]);
    h.request(&b, V01, "nobody2", &["x"]);
    check(&h, [2, 1, 1, 2], [4, 0, 1, 0, 0, 0, 0, 0, 1]);
    h.request(&b, V01, "mmi.service", &["echo"]);
    check(&h, [2, 1, 1, 2], [5, 1, 1, 0, 0, 0, 0, 0, 1]);
    h.reply(&w1, V01, &a, &["r"]); // a's second goes to w2, idle for longer
    check(&h, [2, 1, 1, 1], [5, 2, 2, 0, 0, 0, 0, 0, 1]);
    h.disconnect(&w2, V01); // it is re-queued and goes to w1
    check(&h, [2, 0, 1, 1], [5, 2, 3, 1, 0, 0, 0, 0, 1]);
    h.heartbeat(&id("stranger"), V02);
    check(&h, [2, 0, 1, 1], [5, 2, 3, 1, 0, 0, 0, 1, 1]);
    // At 7.5 s w1 (silent since its reply) expires and a's request goes back
    // to the queue; at 10 s it and b's request for "nobody" expire.
    h.run_until(ms(7500));
    check(&h, [2, 0, 0, 2], [5, 2, 3, 2, 0, 0, 1, 1, 1]);
    h.run_until(ms(10_000));
    check(&h, [0, 0, 0, 0], [5, 2, 3, 2, 2, 0, 1, 1, 1]);
}

// ---------------------------------------------------------------- timers

#[test]
fn poll_timeout_is_the_earliest_deadline() {
    let mut h = Harness::new(config(|c| c.request_timeout = ms(2000)));
    assert_eq!(h.broker.poll_timeout(), None);
    h.set_time(ms(100));
    h.ready(&id("w"), V01, "echo");
    assert_eq!(h.broker.poll_timeout(), Some(h.at(ms(2600))), "the worker's heartbeat");
    h.set_time(ms(200));
    h.request(&id("c"), V01, "nobody", &["x"]);
    assert_eq!(h.broker.poll_timeout(), Some(h.at(ms(2200))), "the request's expiry");
    let out = h.tick(ms(2200));
    assert_eq!(out.events.len(), 1);
    assert_eq!(h.broker.poll_timeout(), Some(h.at(ms(2600))));
}

#[test]
fn early_or_repeated_handle_timeout_does_nothing() {
    let mut h = Harness::default();
    let w = id("w");
    h.ready(&w, V01, "echo");
    h.request(&id("c"), V01, "nobody", &["x"]);
    let deadline = h.broker.poll_timeout().unwrap();
    for t in [0, 1, 1000, 2499] {
        assert!(h.tick(ms(t)).is_empty());
        assert!(h.tick(ms(t)).is_empty());
        assert_eq!(h.broker.poll_timeout(), Some(deadline));
    }
    assert_eq!(h.tick(ms(2500)).to(&w), vec![heartbeat(V01)]);
    assert!(h.tick(ms(2500)).is_empty(), "a second call at the same time does nothing");
    // Time never goes backwards: an earlier `now` is taken as the latest.
    h.broker.handle_timeout(h.t0);
    assert!(h.drain().is_empty());
    assert_eq!(h.broker.poll_timeout(), Some(h.at(ms(5000))));
}

// ---------------------------------------------------------------- expiry complexity

#[test]
fn ten_thousand_refreshed_workers_produce_nothing_when_nothing_is_due() {
    let mut h = Harness::default();
    let ws: Vec<PeerId> = (0..10_000).map(|i| id(&format!("w{i}"))).collect();
    for w in &ws {
        h.ready(w, V01, "echo");
    }
    h.set_time(ms(1000));
    for w in &ws {
        h.heartbeat(w, V01);
    }
    let out = h.tick(ms(2000));
    assert!(out.is_empty());
    assert_eq!(h.broker.poll_timeout(), Some(h.at(ms(2500))));
    assert_eq!(h.tick(ms(2500)).heartbeats().len(), 10_000);
    assert!(h.tick(ms(4999)).is_empty());
}

#[test]
fn among_ten_thousand_workers_only_the_silent_one_expires() {
    let mut h = Harness::default();
    let ws: Vec<PeerId> = (0..10_000).map(|i| id(&format!("w{i}"))).collect();
    let silent = ws[4321].clone();
    for w in &ws {
        h.ready(w, V02, "echo");
    }
    for t in [2000, 4000, 6000] {
        h.set_time(ms(t));
        for w in ws.iter().filter(|w| **w != silent) {
            h.heartbeat(w, V02);
        }
    }
    let out = h.run_until(ms(7500));
    let gone_events: Vec<_> = out.events.iter().filter(|e| matches!(e, BrokerEvent::WorkerGone { .. })).collect();
    assert_eq!(gone_events, vec![&gone(&silent, "echo", GoneReason::Expired)]);
    assert_eq!(h.broker.stats().idle_workers, 9_999);
    assert_eq!(h.broker.worker_count(b"echo"), 9_999);
    // The rest still get requests, the silent one never.
    let out = h.request(&id("c"), V01, "echo", &["x"]);
    assert_eq!(out.dispatched().len(), 1);
    assert_ne!(out.dispatched()[0].1, silent);
}

// ---------------------------------------------------------------- no input panics the broker

mod random_input {
    use std::collections::HashMap;

    use mdp_core::{BrokerCommand, Transmit};
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    const PEERS: [&[u8]; 6] = [b"\0\x01", b"\0\x02", b"w3", b"w4", b"c5", b"mmi.x"];
    const SERVICES: [&str; 5] = ["echo", "a", "mmi.service", "mmi.x", "xmmi.y"];
    /// Mostly real services, so that workers register and serve.
    const READY_SERVICES: [&str; 5] = ["echo", "echo", "a", "xmmi.y", "mmi.x"];
    const HEADERS: [&[u8]; 6] = [b"", b"MDPC01", b"MDPW01", b"MDPC02", b"MDPW02", b"\x01"];

    #[derive(Debug, Clone)]
    enum Cmd {
        Ready(usize),
        Request(usize, Vec<Vec<u8>>),
        Partial(usize, Vec<Vec<u8>>),
        Final(usize, Vec<Vec<u8>>),
        /// PARTIAL or FINAL to the client of the last REQUEST this peer got.
        ReplyCurrent(bool, Vec<Vec<u8>>),
        Heartbeat,
        Disconnect,
    }

    #[derive(Debug, Clone)]
    enum Step {
        /// Random frames, often after a real header.
        Raw(usize, Option<usize>, Vec<Vec<u8>>),
        /// A command from a peer, in its own dialect unless overridden.
        Cmd(usize, Option<usize>, Cmd),
        /// Moves the clock on by this many ms and calls `handle_timeout`.
        Advance(u64),
        Unreachable(usize),
    }

    fn frame() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![4 => vec(any::<u8>(), 0..4), 2 => vec(0u8..8, 1..2), 1 => vec(any::<u8>(), 0..80)]
    }

    fn cmd() -> impl Strategy<Value = Cmd> {
        let idx = 0..PEERS.len();
        prop_oneof![
            3 => (0..READY_SERVICES.len()).prop_map(Cmd::Ready),
            4 => (0..SERVICES.len(), vec(frame(), 1..4)).prop_map(|(s, b)| Cmd::Request(s, b)),
            1 => (idx.clone(), vec(frame(), 0..4)).prop_map(|(c, b)| Cmd::Partial(c, b)),
            1 => (idx, vec(frame(), 0..4)).prop_map(|(c, b)| Cmd::Final(c, b)),
            4 => (any::<bool>(), vec(frame(), 0..5)).prop_map(|(f, b)| Cmd::ReplyCurrent(f, b)),
            2 => Just(Cmd::Heartbeat),
            1 => Just(Cmd::Disconnect),
        ]
    }

    fn step() -> impl Strategy<Value = Step> {
        let peer = 0..PEERS.len();
        prop_oneof![
            1 => (peer.clone(), proptest::option::of(0..HEADERS.len()), vec(frame(), 0..9))
                .prop_map(|(p, h, f)| Step::Raw(p, h, f)),
            8 => (peer.clone(), proptest::option::weighted(0.1, 0..3usize), cmd())
                .prop_map(|(p, d, c)| Step::Cmd(p, d, c)),
            2 => prop_oneof![0..50u64, 0..4000u64].prop_map(Step::Advance),
            1 => peer.prop_map(Step::Unreachable),
        ]
    }

    fn bytes(parts: &[Vec<u8>]) -> Vec<Bytes> {
        parts.iter().map(|p| Bytes::copy_from_slice(p)).collect()
    }

    fn small_limits() -> BrokerConfig {
        config(|c| {
            c.heartbeat_interval = ms(1000);
            c.request_timeout = ms(3000);
            c.max_dispatches = 2;
            c.max_services = 3;
            c.max_workers = 3;
            c.max_queue_per_service = 3;
            c.max_queue_total = 5;
            c.max_message_frames = 9;
            c.max_message_bytes = 120;
            // A few requests' worth, so that the byte limits are reached as
            // often as the count limits.
            c.max_queued_bytes = 1500;
            c.max_queued_bytes_per_service = 1000;
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn random_input_never_breaks_the_broker(steps in vec(step(), 1..60)) {
            let mut h = Harness::new(small_limits());
            let max = h.broker.config().clone();
            let peers: Vec<PeerId> = PEERS.iter().map(|p| PeerId(Bytes::from_static(p))).collect();
            // What the events say is registered, and what each peer was last asked.
            let mut registered: HashMap<PeerId, Bytes> = HashMap::new();
            let mut current: HashMap<PeerId, Bytes> = HashMap::new();
            // Re-queued requests may pass the queue limits (see BrokerConfig).
            let mut requeued = 0;
            for step in steps {
                let out = match step {
                    Step::Raw(p, header, f) => {
                        let mut frames = bytes(&f);
                        if let Some(i) = header {
                            frames.insert(0, Bytes::from_static(HEADERS[i]));
                        }
                        h.send(&peers[p], frames)
                    }
                    Step::Cmd(p, d, cmd) => {
                        let d = Dialect::ALL[d.unwrap_or(p % 3)];
                        let service = |i: usize| Bytes::from_static(SERVICES[i].as_bytes());
                        let command = match cmd {
                            Cmd::Ready(s) => PeerCommand::Ready { service: Bytes::from_static(READY_SERVICES[s].as_bytes()) },
                            Cmd::Request(s, b) => PeerCommand::Request { service: service(s), body: bytes(&b) },
                            Cmd::Partial(c, b) => PeerCommand::Partial { client: peers[c].0.clone(), body: bytes(&b) },
                            Cmd::Final(c, b) => PeerCommand::Final { client: peers[c].0.clone(), body: bytes(&b) },
                            Cmd::ReplyCurrent(is_final, b) => {
                                let client = current.get(&peers[p]).cloned().unwrap_or_default();
                                if is_final || d == V01 {
                                    PeerCommand::Final { client, body: bytes(&b) }
                                } else {
                                    PeerCommand::Partial { client, body: bytes(&b) }
                                }
                            }
                            Cmd::Heartbeat => PeerCommand::Heartbeat,
                            Cmd::Disconnect => PeerCommand::Disconnect,
                        };
                        match command.clone().encode(d) {
                            Ok(frames) => h.send(&peers[p], frames),
                            Err(_) => continue, // e.g. PARTIAL in MDP/0.1
                        }
                    }
                    Step::Advance(n) => {
                        let to = h.now - h.t0 + ms(n);
                        h.tick(to)
                    }
                    Step::Unreachable(p) => {
                        h.broker.handle_unreachable(h.now, &peers[p]);
                        h.drain()
                    }
                };
                for t in &out.transmits {
                    if let Some(client) = request_client(t) {
                        current.insert(t.to.clone(), client);
                    }
                }
                for e in &out.events {
                    match e {
                        BrokerEvent::WorkerReady { worker, service, .. } => {
                            prop_assert!(registered.insert(worker.clone(), service.clone()).is_none());
                        }
                        BrokerEvent::WorkerGone { worker, service, .. } => {
                            prop_assert_eq!(registered.remove(worker), Some(service.clone()));
                        }
                        BrokerEvent::RequestRequeued { .. } => requeued += 1,
                        _ => {}
                    }
                }
                let stats = h.broker.stats();
                let workers = peers.iter().filter(|p| h.broker.is_worker(p)).count();
                prop_assert_eq!(workers, registered.len());
                prop_assert_eq!(stats.idle_workers + stats.busy_workers, workers, "{:?}", stats);
                let mut services: Vec<&Bytes> = registered.values().collect();
                services.sort();
                services.dedup();
                let counted: usize = services.iter().map(|s| h.broker.worker_count(s)).sum();
                prop_assert_eq!(counted, workers);
                prop_assert!(stats.services <= max.max_services, "{:?}", stats);
                prop_assert!(workers <= max.max_workers);
                prop_assert!(stats.queued_requests <= max.max_queue_total + requeued, "{:?}", stats);
                prop_assert!(stats.queued_bytes + stats.held_bytes <= max.max_queued_bytes, "{:?}", stats);
                prop_assert!(stats.queued_requests > 0 || stats.queued_bytes == 0, "bytes of nothing queued: {:?}", stats);
                prop_assert!(stats.busy_workers > 0 || stats.held_bytes == 0, "bytes held by no one: {:?}", stats);
                match h.broker.poll_timeout() {
                    Some(t) => prop_assert!(t >= h.now, "poll_timeout in the past"),
                    None => prop_assert!(workers == 0 && stats.queued_requests == 0, "no timer: {:?}", stats),
                }
            }
        }
    }

    /// Decodes a transmit (it must decode) and returns the client address
    /// if it is a REQUEST.
    fn request_client(t: &Transmit) -> Option<Bytes> {
        match BrokerCommand::decode(t.frames.clone()) {
            Ok((_, BrokerCommand::Request { client, .. })) => Some(client),
            Ok(_) => None,
            Err(e) => panic!("the broker sent undecodable frames {:?}: {e}", t.frames),
        }
    }
}
