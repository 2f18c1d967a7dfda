//! The main job: a broker, an `echo` worker and a `square` worker, and a
//! client that sends a few requests and prints each with its reply; then
//! one client with four lanes keeping four `slow` workers busy at once.
//!
//! Everything runs in this one process, over TCP on loopback (an unused
//! port picked by the OS), speaking three dialects at once: the echo worker
//! speaks MDP/0.2 (RFC 18) and streams its answer in two parts, the square
//! worker speaks MDP/0.1, and the clients use all three dialects.
//!
//! ```sh
//! cargo run -p mdp-zmq-adapter --example demo
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mdp_core::{ClientConfig, ClientEvent, Dialect, WorkerConfig};
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

/// Workers of `slow`, how long each takes, lanes of the one client, requests.
const SLOW_WORKERS: usize = 4;
const SLOW: Duration = Duration::from_millis(200);
const REQUESTS: usize = 8;

/// One client with a lane per worker sends 8 requests to `slow`, whose 4
/// workers take 200 ms each: the broker spreads them over every worker.
fn every_worker_at_once(endpoint: &str) -> Result<(), Box<dyn std::error::Error>> {
    let (busy, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut stops = Vec::new();
    let mut workers = Vec::new();
    for w in 1..=SLOW_WORKERS {
        let worker = Worker::connect(endpoint, WorkerConfig::new(Bytes::from_static(b"slow"), Dialect::V02))?;
        stops.push(worker.stop_handle());
        let (busy, peak) = (busy.clone(), peak.clone());
        workers.push(thread::spawn(move || {
            worker.run(move |_, _| {
                let now = busy.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                thread::sleep(SLOW);
                busy.fetch_sub(1, Ordering::SeqCst);
                vec![Bytes::from(format!("slow-{w}"))]
            })
        }));
    }
    let mut client = Client::connect(endpoint, ClientConfig::new(Dialect::V01).with_lanes(SLOW_WORKERS))?;
    // Requests sent before every worker has registered wait at the broker,
    // so make sure all of them are there (mmi.service cannot count them).
    thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    for i in 0..REQUESTS {
        client.send("slow", vec![Bytes::from(i.to_string())])?;
    }
    let mut served: BTreeMap<String, usize> = BTreeMap::new();
    while served.values().sum::<usize>() < REQUESTS {
        if let ClientEvent::Reply { body, .. } = client.recv(Duration::from_secs(10))? {
            *served.entry(String::from_utf8_lossy(&body[0]).into_owned()).or_default() += 1;
        }
    }
    let took = start.elapsed();
    let by: Vec<String> = served.iter().map(|(w, n)| format!("{w} ×{n}")).collect();
    println!(
        "\none MDP/0.1 client with {SLOW_WORKERS} lanes, {REQUESTS} requests to `slow` ({SLOW_WORKERS} workers, {} ms each):",
        SLOW.as_millis()
    );
    println!("  answered by {}", by.join(", "));
    println!(
        "  {} workers busy at once at most; {:.1} s in all, where one worker at a time would take {:.1} s",
        peak.load(Ordering::SeqCst),
        took.as_secs_f64(),
        (SLOW * REQUESTS as u32).as_secs_f64()
    );
    for s in &stops {
        s.stop();
    }
    for w in workers {
        w.join().expect("worker thread")?;
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut broker = BrokerRunner::bind(&["tcp://127.0.0.1:*"], Default::default())?;
    let endpoint = broker.endpoints()[0].clone();
    println!("broker listening on {endpoint}\n");
    println!("{:>20} {:>11} {:<34}    reply", "client dialect", "service", "request");
    let stop_broker = broker.stop_handle();
    let broker_thread = thread::spawn(move || broker.run(|_| {}));

    let echo = Worker::connect(&endpoint, WorkerConfig::new(Bytes::from_static(b"echo"), Dialect::V02))?;
    let square_worker = Worker::connect(&endpoint, WorkerConfig::new(Bytes::from_static(b"square"), Dialect::V01))?;
    let stops = [echo.stop_handle(), square_worker.stop_handle()];
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

    every_worker_at_once(&endpoint)?;

    for s in &stops {
        s.stop();
    }
    for w in workers {
        w.join().expect("worker thread")?;
    }
    stop_broker.stop();
    broker_thread.join().expect("broker thread")?;
    println!("done");
    Ok(())
}
