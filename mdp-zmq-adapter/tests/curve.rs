//! CURVE in the build (the `curve` feature): libzmq has the mechanism, a
//! CURVE client and server talk over loopback, and a ZAP handler (RFC 27)
//! decides who may connect and names them. Each test fails when CURVE is
//! not really there: libzmq refuses the `set_curve_*` options with ENOTSUP.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use mdp_zmq_adapter::curve_available;

/// How long a reply that should come may take.
const RECV_TIMEOUT_MS: i32 = 5_000;
/// How long to watch for a message that should not come.
const SILENCE_MS: i64 = 300;

/// The endpoint libzmq sends ZAP requests to (RFC 27), in the server's context.
const ZAP_ENDPOINT: &str = "inproc://zeromq.zap.01";

struct Keys {
    public: [u8; 32],
    secret: [u8; 32],
}

fn keys() -> Keys {
    let pair = zmq::CurveKeyPair::new().expect("CURVE key pair (libzmq without CURVE says ENOTSUP)");
    Keys { public: pair.public_key, secret: pair.secret_key }
}

/// A ROUTER that is a CURVE server, bound to a loopback port; with its endpoint.
fn curve_server(ctx: &zmq::Context, server: &Keys) -> (zmq::Socket, String) {
    let router = ctx.socket(zmq::ROUTER).unwrap();
    router.set_linger(0).unwrap();
    router.set_rcvtimeo(RECV_TIMEOUT_MS).unwrap();
    router.set_curve_server(true).expect("set_curve_server");
    router.set_curve_secretkey(&server.secret).expect("set_curve_secretkey");
    router.bind("tcp://127.0.0.1:*").unwrap();
    let endpoint = router.get_last_endpoint().unwrap().unwrap();
    (router, endpoint)
}

/// A DEALER that is a CURVE client of the server whose public key is given.
fn curve_client(ctx: &zmq::Context, endpoint: &str, server_public: &[u8; 32], client: &Keys) -> zmq::Socket {
    let dealer = ctx.socket(zmq::DEALER).unwrap();
    dealer.set_linger(0).unwrap();
    dealer.set_rcvtimeo(RECV_TIMEOUT_MS).unwrap();
    dealer.set_curve_serverkey(server_public).expect("set_curve_serverkey");
    dealer.set_curve_publickey(&client.public).expect("set_curve_publickey");
    dealer.set_curve_secretkey(&client.secret).expect("set_curve_secretkey");
    dealer.connect(endpoint).unwrap();
    dealer
}

/// Receives one message on the ROUTER: (routing id, body, the body frame's User-Id).
fn recv_on_router(router: &zmq::Socket) -> (Vec<u8>, Vec<u8>, Option<String>) {
    let routing_id = router.recv_msg(0).expect("routing id (timed out?)");
    assert!(router.get_rcvmore().unwrap(), "a body after the routing id");
    let mut body = router.recv_msg(0).expect("body");
    assert!(!router.get_rcvmore().unwrap(), "one body frame");
    let user_id = body.gets("User-Id").map(str::to_owned);
    (routing_id.to_vec(), body.to_vec(), user_id)
}

/// Nothing arrives on `socket` within SILENCE_MS.
fn stays_silent(socket: &zmq::Socket) -> bool {
    socket.poll(zmq::POLLIN, SILENCE_MS).unwrap() == 0
}

#[test]
fn libzmq_is_built_with_curve() {
    assert!(curve_available(), "zmq::has(\"curve\") is false: libzmq was built without libsodium");
    let pair = zmq::CurveKeyPair::new().expect("CurveKeyPair::new");
    assert_ne!(pair.public_key, pair.secret_key);
}

#[test]
fn curve_client_and_server_round_trip_over_loopback() {
    let ctx = zmq::Context::new();
    let server_keys = keys();
    let (router, endpoint) = curve_server(&ctx, &server_keys);
    let client = curve_client(&ctx, &endpoint, &server_keys.public, &keys());

    client.send("ping", 0).unwrap();
    let (routing_id, body, _) = recv_on_router(&router);
    assert_eq!(body, b"ping");
    router.send_multipart([routing_id.as_slice(), b"pong"], 0).unwrap();
    assert_eq!(client.recv_bytes(0).expect("the reply (timed out?)"), b"pong");

    // The handshake really checks keys: a client that has the wrong server
    // key cannot get a message through.
    let impostor_server = keys();
    let misled = curve_client(&ctx, &endpoint, &impostor_server.public, &keys());
    misled.send("lost", 0).unwrap();
    assert!(stays_silent(&router), "a client with the wrong server key got through");
}

/// A ZAP handler (RFC 27) on a REP socket: it admits the one CURVE public
/// key it is given, as `user_id`, and denies every other request.
struct ZapHandler {
    stop: Arc<AtomicBool>,
    denied: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl ZapHandler {
    fn start(ctx: &zmq::Context, admitted: [u8; 32], user_id: &'static str) -> ZapHandler {
        // Bound before any server socket handshakes, in the server's context.
        let rep = ctx.socket(zmq::REP).unwrap();
        rep.set_linger(0).unwrap();
        rep.bind(ZAP_ENDPOINT).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let denied = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (stop, denied) = (Arc::clone(&stop), Arc::clone(&denied));
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if rep.poll(zmq::POLLIN, 50).unwrap() == 0 {
                        continue;
                    }
                    let request = rep.recv_multipart(0).unwrap();
                    let reply = zap_reply(&request, &admitted, user_id);
                    if reply[2] != b"200" {
                        denied.fetch_add(1, Ordering::SeqCst);
                    }
                    rep.send_multipart(reply, 0).unwrap();
                }
            })
        };
        ZapHandler { stop, denied, thread: Some(thread) }
    }

    fn denied(&self) -> usize {
        self.denied.load(Ordering::SeqCst)
    }
}

impl Drop for ZapHandler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// RFC 27: a request is version ("1.0"), request id, domain, address,
/// identity, mechanism, then the mechanism's credentials (for CURVE, the
/// client's 32-byte long-term public key). The reply is version, the same
/// request id, status code ("200" admitted, "400" denied), status text,
/// user id, metadata.
fn zap_reply(request: &[Vec<u8>], admitted: &[u8; 32], user_id: &str) -> Vec<Vec<u8>> {
    let request_id = request.get(1).cloned().unwrap_or_default();
    let deny = |why: &str| vec![b"1.0".to_vec(), request_id.clone(), b"400".to_vec(), why.into(), vec![], vec![]];
    if request.len() < 6 || request[0] != b"1.0" {
        return deny("malformed ZAP request");
    }
    if request[5] != b"CURVE" {
        return deny("CURVE only");
    }
    match request.get(6) {
        Some(key) if key == admitted => {
            vec![b"1.0".to_vec(), request_id, b"200".to_vec(), b"OK".to_vec(), user_id.into(), vec![]]
        }
        _ => deny("unknown key"),
    }
}

#[test]
fn zap_handler_admits_one_key_and_names_it() {
    let ctx = zmq::Context::new();
    let alice = keys();
    let zap = ZapHandler::start(&ctx, alice.public, "alice");
    let server_keys = keys();
    let (router, endpoint) = curve_server(&ctx, &server_keys);

    // Admitted: the message carries the User-Id the handler gave.
    let client = curve_client(&ctx, &endpoint, &server_keys.public, &alice);
    client.send("hello", 0).unwrap();
    let (routing_id, body, user_id) = recv_on_router(&router);
    assert_eq!(body, b"hello");
    assert_eq!(user_id.as_deref(), Some("alice"), "User-Id from the ZAP reply");
    router.send_multipart([routing_id.as_slice(), b"welcome"], 0).unwrap();
    assert_eq!(client.recv_bytes(0).expect("the reply (timed out?)"), b"welcome");
    assert_eq!(zap.denied(), 0);

    // Another key, same server key: the handler denies it, and nothing
    // of it reaches the server.
    let mallory = curve_client(&ctx, &endpoint, &server_keys.public, &keys());
    mallory.send("let me in", 0).unwrap();
    let deadline = Instant::now() + Duration::from_millis(RECV_TIMEOUT_MS as u64);
    while zap.denied() == 0 {
        assert!(Instant::now() < deadline, "the ZAP handler was never asked about the second client");
        thread::sleep(Duration::from_millis(10));
    }
    assert!(stays_silent(&router), "a client the ZAP handler denied got a message through");
    assert!(stays_silent(&mallory), "a denied client received something");
}
