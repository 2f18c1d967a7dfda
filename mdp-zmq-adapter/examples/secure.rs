//! An encrypted, authorized setup: a CURVE broker that admits three keys by
//! name, a policy that says who may serve and call `payments`, an allowed
//! worker and client, and a client the policy refuses.
//!
//! ```sh
//! cargo run -p mdp-zmq-adapter --example secure
//! ```
//!
//! The same with the binaries is in the README's security section.

use std::thread;
use std::time::Duration;

use bytes::Bytes;
use mdp_core::{BrokerConfig, BrokerEvent, ClientConfig, Dialect, WorkerConfig};
use mdp_zmq_adapter::{curve_available, AllowList, BrokerRunner, Client, CurveClient, CurveServer, KeyPair, Worker};

const POLICY: &str = "
    serve payments-worker payments
    call  shop            payments
";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if !curve_available() {
        return Err(mdp_zmq_adapter::KeyError::NoCurve.into());
    }
    // Keys: in a real setup each side makes its own (`mdp keygen NAME`) and
    // hands over only the public key.
    let broker_key = KeyPair::generate()?;
    let names = ["payments-worker", "shop", "mallory"];
    let keys: Vec<KeyPair> = names.iter().map(|_| KeyPair::generate()).collect::<Result<_, _>>()?;
    let mut allowed = AllowList::default();
    for (name, pair) in names.iter().zip(&keys) {
        allowed.insert(pair.public, *name);
    }
    let as_peer = |i: usize| CurveClient { server: broker_key.public, own: keys[i] };

    let mut config = BrokerConfig::default();
    config.policy = Some(POLICY.parse()?);
    let curve = CurveServer { secret: broker_key.secret, allowed: Some(allowed) };
    let mut runner = BrokerRunner::bind_curve(&["tcp://127.0.0.1:*"], config, curve)?;
    let endpoint = runner.endpoints()[0].clone();
    let stop_broker = runner.stop_handle();
    let broker = thread::spawn(move || {
        runner.run(|event| {
            if let BrokerEvent::AccessDenied { name, access, service, .. } = event {
                let name = name.as_ref().map(|n| String::from_utf8_lossy(n).into_owned());
                println!("broker: refused {name:?} to {access} {}", String::from_utf8_lossy(service));
            }
        })
    });
    println!("CURVE broker on {endpoint}, admitting {names:?}");

    let worker_config = WorkerConfig::new(Bytes::from_static(b"payments"), Dialect::V02);
    let worker = Worker::connect_curve(&endpoint, worker_config, as_peer(0))?;
    let stop_worker = worker.stop_handle();
    let worker = thread::spawn(move || worker.run(|body, _| [&[Bytes::from_static(b"paid:")][..], &body].concat()));

    let mut client_config = ClientConfig::new(Dialect::V02);
    client_config.tries = 1;
    let mut shop = Client::connect_curve(&endpoint, client_config.clone(), as_peer(1))?;
    let reply =
        shop.request(Bytes::from_static(b"payments"), vec![Bytes::from_static(b"10 EUR")], Duration::from_secs(5))?;
    println!("shop -> payments: {:?}", reply.iter().map(|f| String::from_utf8_lossy(f)).collect::<Vec<_>>());

    let mut mallory = Client::connect_curve(&endpoint, client_config, as_peer(2))?;
    let probe = mallory.request(
        Bytes::from_static(b"mmi.service"),
        vec![Bytes::from_static(b"payments")],
        Duration::from_secs(5),
    )?;
    println!("mallory asks mmi.service about payments: {}", String::from_utf8_lossy(&probe[0]));
    match mallory.request(
        Bytes::from_static(b"payments"),
        vec![Bytes::from_static(b"1000 EUR")],
        Duration::from_secs(1),
    ) {
        Ok(reply) => println!("mallory -> payments: {reply:?} (should not happen)"),
        Err(e) => println!("mallory -> payments: {e}"),
    }

    stop_worker.stop();
    worker.join().map_err(|_| "the worker panicked")??;
    stop_broker.stop();
    broker.join().map_err(|_| "the broker panicked")??;
    Ok(())
}
