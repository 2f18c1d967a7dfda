//! Authorization: the broker's policy, by the names the transport
//! authenticated, through the public API under virtual time.
#![allow(clippy::disallowed_methods)] // stands in for the application, which reads the clock

mod common;

use bytes::Bytes;
use common::{body, id, Harness, Out};
use mdp_core::{Access, BrokerCommand, BrokerConfig, BrokerEvent, Dialect, PeerCommand, PeerId, Policy};

/// Workers named `pay-w` may serve `payments`; `shop` may call `payments`
/// and `shop.*`; everyone may serve and call `echo`.
const POLICY: &str = "
    serve pay-w payments
    call  shop  payments shop.*
    serve *     echo
    call  *     echo
";

fn harness() -> Harness {
    let mut config = BrokerConfig::default();
    config.policy = Some(POLICY.parse().expect("the test policy parses"));
    Harness::new(config)
}

fn ready_as(h: &mut Harness, worker: &PeerId, name: &str, service: &str) -> Out {
    let ready = PeerCommand::Ready { service: Bytes::copy_from_slice(service.as_bytes()) };
    h.send_as(worker, name, ready.encode(Dialect::V02).expect("encodable"))
}

fn request_as(h: &mut Harness, client: &PeerId, name: &str, service: &str, parts: &[&str]) -> Out {
    let request = PeerCommand::Request { service: Bytes::copy_from_slice(service.as_bytes()), body: body(parts) };
    h.send_as(client, name, request.encode(Dialect::V02).expect("encodable"))
}

fn denied(peer: &PeerId, name: Option<&str>, access: Access, service: &str) -> BrokerEvent {
    BrokerEvent::AccessDenied {
        peer: peer.clone(),
        name: name.map(|n| Bytes::copy_from_slice(n.as_bytes())),
        access,
        service: Bytes::copy_from_slice(service.as_bytes()),
    }
}

/// The body of the reply to an `mmi.service` query `client` made as `name`.
fn mmi_as(h: &mut Harness, client: &PeerId, name: &str, service: &str) -> Bytes {
    let out = request_as(h, client, name, "mmi.service", &[service]);
    match out.commands_to(client).as_slice() {
        [BrokerCommand::Final { body, .. }] => body[0].clone(),
        other => panic!("expected one answer to mmi.service, got {other:?}"),
    }
}

#[test]
fn a_worker_may_register_only_for_what_it_may_serve() {
    let mut h = harness();
    let (rogue, worker) = (id("rogue"), id("worker"));
    let out = ready_as(&mut h, &rogue, "shop", "payments");
    assert_eq!(out.commands_to(&rogue), vec![BrokerCommand::Disconnect], "refused with DISCONNECT");
    assert_eq!(out.events, vec![denied(&rogue, Some("shop"), Access::Serve, "payments")]);
    assert_eq!(h.broker.worker_count(b"payments"), 0);
    assert!(!h.broker.is_worker(&rogue));
    let out = ready_as(&mut h, &worker, "pay-w", "payments");
    assert!(matches!(out.events.as_slice(), [BrokerEvent::WorkerReady { .. }]));
    assert_eq!(h.broker.worker_count(b"payments"), 1);
    assert_eq!(h.broker.stats().denied, 1);
}

#[test]
fn a_refused_worker_never_sees_the_requests_for_that_service() {
    let mut h = harness();
    let (rogue, shop) = (id("rogue"), id("shop-client"));
    ready_as(&mut h, &rogue, "mallory", "payments");
    let out = request_as(&mut h, &shop, "shop", "payments", &["pay 10"]);
    assert!(out.to(&rogue).is_empty(), "nothing reached the refused worker");
    assert_eq!(h.broker.stats().queued_requests, 1, "the request waits for a worker that may serve it");
    let worker = id("worker");
    let out = ready_as(&mut h, &worker, "pay-w", "payments");
    assert_eq!(out.requests(), vec![(worker, Bytes::from_static(b"shop-client"), body(&["pay 10"]))]);
}

#[test]
fn a_request_the_client_may_not_make_is_dropped() {
    let mut h = harness();
    let (worker, intruder) = (id("worker"), id("intruder"));
    ready_as(&mut h, &worker, "pay-w", "payments");
    let out = request_as(&mut h, &intruder, "mallory", "payments", &["pay 1000"]);
    assert!(out.transmits.is_empty(), "no answer, and nothing to the worker");
    assert_eq!(out.events, vec![denied(&intruder, Some("mallory"), Access::Call, "payments")]);
    assert_eq!(h.broker.stats().queued_requests, 0);
    // A prefix grant: shop may call shop.cart, and mallory may call echo.
    ready_as(&mut h, &id("cart-w"), "pay-w", "shop.cart");
    ready_as(&mut h, &id("echo-w"), "anyone", "echo");
    assert_eq!(
        request_as(&mut h, &id("shop"), "shop", "shop.cart", &["x"]).requests().len(),
        0,
        "no worker may serve it"
    );
    assert_eq!(request_as(&mut h, &intruder, "mallory", "echo", &["hi"]).requests().len(), 1);
}

#[test]
fn mmi_service_says_404_for_a_service_the_client_may_not_call() {
    let mut h = harness();
    ready_as(&mut h, &id("worker"), "pay-w", "payments");
    assert_eq!(mmi_as(&mut h, &id("c1"), "shop", "payments"), "200");
    assert_eq!(mmi_as(&mut h, &id("c2"), "mallory", "payments"), "404", "it exists, but mallory may not know");
    assert_eq!(h.broker.stats().denied, 0, "an MMI query needs no permission");
}

#[test]
fn a_peer_without_a_name_gets_what_every_peer_gets() {
    let mut h = harness();
    let (w, c) = (id("w"), id("c"));
    let out = h.ready(&w, Dialect::V02, "payments");
    assert_eq!(out.events, vec![denied(&w, None, Access::Serve, "payments")]);
    h.ready(&id("echo-w"), Dialect::V02, "echo");
    assert_eq!(h.request(&c, Dialect::V02, "echo", &["hi"]).requests().len(), 1);
    let out = h.request(&c, Dialect::V02, "payments", &["x"]);
    assert_eq!(out.events, vec![denied(&c, None, Access::Call, "payments")]);
}

#[test]
fn without_a_policy_a_named_peer_may_do_everything() {
    let mut h = Harness::default();
    let (w, c) = (id("w"), id("c"));
    ready_as(&mut h, &w, "anyone", "payments");
    assert_eq!(request_as(&mut h, &c, "whoever", "payments", &["x"]).requests().len(), 1);
    assert_eq!(h.broker.stats().denied, 0);
}

#[test]
fn an_empty_policy_refuses_everything_but_mmi() {
    let mut config = BrokerConfig::default();
    config.policy = Some(Policy::new());
    let mut h = Harness::new(config);
    let out = ready_as(&mut h, &id("w"), "w", "echo");
    assert_eq!(out.commands_to(&id("w")), vec![BrokerCommand::Disconnect]);
    assert_eq!(mmi_as(&mut h, &id("c"), "c", "echo"), "404");
}

mod generated {
    //! Random policies against random named traffic: the broker's decisions
    //! always agree with `Policy::allows`.
    use super::*;
    use mdp_core::{PeerPattern, ServicePattern};
    use proptest::prelude::*;

    const NAMES: [&str; 3] = ["n0", "n1", "n2"];
    const SERVICES: [&str; 4] = ["pay", "pay.x", "shop", "echo"];

    fn grant() -> impl Strategy<Value = (Option<usize>, bool, usize, bool)> {
        (proptest::option::of(0..NAMES.len()), any::<bool>(), 0..SERVICES.len(), any::<bool>())
    }

    fn policy(grants: &[(Option<usize>, bool, usize, bool)]) -> Policy {
        grants.iter().fold(Policy::new(), |p, &(who, serve, svc, prefix)| {
            let peer = who.map_or(PeerPattern::Any, |i| PeerPattern::Named(Bytes::from_static(NAMES[i].as_bytes())));
            let access = if serve { Access::Serve } else { Access::Call };
            let name = SERVICES[svc];
            let services = match prefix {
                true => ServicePattern::Prefix(Bytes::copy_from_slice(&name.as_bytes()[..2])),
                false => ServicePattern::parse(name),
            };
            p.grant(peer, access, services)
        })
    }

    proptest! {
        #[test]
        fn decisions_follow_the_policy(
            grants in proptest::collection::vec(grant(), 0..6),
            steps in proptest::collection::vec((any::<bool>(), 0..6u8, 0..SERVICES.len()), 1..40),
        ) {
            let policy = policy(&grants);
            let mut config = BrokerConfig::default();
            config.policy = Some(policy.clone());
            let mut h = Harness::new(config);
            for (ready, peer, svc) in steps {
                // Peers 0..3 are named n0..n2, 3..6 have no name.
                let name = NAMES.get(usize::from(peer)).copied();
                let who = id(&format!("peer-{peer}-{ready}"));
                let command = if ready {
                    PeerCommand::Ready { service: Bytes::from_static(SERVICES[svc].as_bytes()) }
                } else {
                    PeerCommand::Request { service: Bytes::from_static(SERVICES[svc].as_bytes()), body: body(&["x"]) }
                };
                let frames = command.encode(Dialect::V02).expect("encodable");
                let out = match name {
                    Some(n) => h.send_as(&who, n, frames),
                    None => h.send(&who, frames),
                };
                let allows = |peer: &PeerId, access, service: &[u8]| {
                    let name = peer.as_bytes().split(|b| *b == b'-').nth(1).and_then(|i| NAMES.get(usize::from(i[0] - b'0')));
                    policy.allows(name.map(|n| n.as_bytes()), access, service)
                };
                for e in &out.events {
                    match e {
                        BrokerEvent::WorkerReady { worker, service, .. } => {
                            prop_assert!(allows(worker, Access::Serve, service));
                        }
                        BrokerEvent::RequestDispatched { client, service, .. } => {
                            prop_assert!(allows(client, Access::Call, service));
                        }
                        BrokerEvent::AccessDenied { peer, access, service, .. } => {
                            prop_assert!(!allows(peer, *access, service));
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}
