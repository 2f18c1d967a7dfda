//! The main job: a broker, an `echo` worker and a `square` worker, and a
//! client that sends a few requests and prints each with its reply.
//!
//! Everything runs in this one process, over TCP on loopback (an unused
//! port picked by the OS), speaking three dialects at once: the echo worker
//! speaks MDP/0.2 (RFC 18) and streams its answer in two parts, the square
//! worker speaks MDP/0.1, and the clients use all three dialects.
//!
//! ```sh
//! cargo run -p mdp-zmq-adapter --example demo
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use mdp_core::{ClientConfig, Dialect, WorkerConfig};
use mdp_zmq_adapter::{BrokerRunner, Client, Worker};

fn text(frames: &[Bytes]) -> String {
    let parts: Vec<String> = frames.iter().map(|f| format!("{:?}", String::from_utf8_lossy(f))).collect();
    format!("[{}]", parts.join(", "))
}

/// The square of the decimal number in the first frame, or an error text.
fn square(body: &[Bytes]) -> Bytes {
    let input = body.first().map(|f| String::from_utf8_lossy(f).trim().to_owned()).unwrap_or_default();
    match input.parse::<i64>() {
        Ok(n) => match n.checked_mul(n) {
            Some(sq) => Bytes::from(sq.to_string()),
            None => Bytes::from_static(b"error: overflow"),
        },
        Err(_) => Bytes::from(format!("error: {input:?} is not a whole number")),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut broker = BrokerRunner::bind(Default::default(), &["tcp://127.0.0.1:*".to_owned()])?;
    let endpoint = broker.endpoints()[0].clone();
    println!("broker listening on {endpoint}\n");
    println!("{:>20} {:>11} {:<34}    reply", "client dialect", "service", "request");
    let stop_broker = Arc::new(AtomicBool::new(false));
    let stop = stop_broker.clone();
    let broker_thread = thread::spawn(move || broker.run(&stop, |_| {}));

    let echo = Worker::new(&endpoint, WorkerConfig::new(Bytes::from_static(b"echo"), Dialect::V02));
    let square_worker = Worker::new(&endpoint, WorkerConfig::new(Bytes::from_static(b"square"), Dialect::V01));
    let stops = [echo.stop_flag(), square_worker.stop_flag()];
    let workers = [
        thread::spawn(move || {
            echo.run(|body, parts| {
                parts.send(vec![Bytes::from_static(b"echo:")]);
                body
            })
        }),
        thread::spawn(move || square_worker.run(|body, _| vec![square(&body)])),
    ];

    let requests: [(Dialect, &str, &str); 5] = [
        (Dialect::V01, "echo", "hello from an MDP/0.1 client"),
        (Dialect::V02, "echo", "hello from an RFC 18 client"),
        (Dialect::Majortomo, "square", "12"),
        (Dialect::V01, "square", "-7"),
        (Dialect::V02, "square", "not a number"),
    ];
    for (dialect, service, body) in requests {
        let mut client = Client::connect(&endpoint, ClientConfig::new(dialect))?;
        let reply = client.request(service, vec![Bytes::from(body)], Duration::from_secs(10))?;
        println!("{dialect:>20} {service:>11} {:<34} -> {}", text(&[Bytes::from(body)]), text(&reply));
    }
    let mut mmi = Client::connect(&endpoint, ClientConfig::new(Dialect::V01))?;
    for name in ["echo", "nope"] {
        let reply = mmi.request("mmi.service", vec![Bytes::from(name)], Duration::from_secs(10))?;
        println!("{:>20} {:>11} {:<34} -> {}", Dialect::V01, "mmi.service", text(&[Bytes::from(name)]), text(&reply));
    }

    for s in &stops {
        s.store(true, Ordering::Relaxed);
    }
    for w in workers {
        w.join().expect("worker thread")?;
    }
    stop_broker.store(true, Ordering::Relaxed);
    broker_thread.join().expect("broker thread")?;
    println!("done");
    Ok(())
}
