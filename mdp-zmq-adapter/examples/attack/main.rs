//! Attacks an `mdp-broker` process, with its default limits, as issue 14
//! describes, and reports its resident memory in each attack, against the
//! bound `BrokerConfig::max_queued_bytes` documents, while a normal client
//! asks an echo worker for answers throughout.
//!
//! ```sh
//! cargo build --release -p mdp-zmq-adapter --bin mdp-broker --example attack
//! target/release/examples/attack            # every attack, one fresh broker each
//! target/release/examples/attack big names  # some of them
//! ```
//!
//! The attacks, over plain DEALER sockets:
//!
//! * `big`: 1,000 requests of 8 MiB to a service with no worker;
//! * `big-spread`: the same over 10 such services, to fill the whole budget;
//! * `unread`: 100,000 requests of 1 KiB to the echo service from a client
//!   that never reads its replies;
//! * `names`: 200,000 requests to invented service names, then a worker of
//!   a new service, which must be registered at once.
//!
//! Flags: `--broker PATH` (default: `mdp-broker` beside this example's
//! directory, i.e. `target/release/mdp-broker`); `--big-count N` requests
//! in the `big` attacks instead of 1,000. The broker is started with no
//! limit flags, so with its defaults, which are `BrokerConfig`'s: any
//! version of `mdp-broker` can be attacked, the one before the byte
//! budget too.
#![allow(clippy::disallowed_methods)] // stands in for the application, which reads the clock

mod rig;

use std::time::{Duration, Instant};

use bytes::Bytes;
use mdp_core::{ClientConfig, Dialect};
use mdp_zmq_adapter::Client;
use rig::{mib, BrokerProcess, Limits, NormalClient, RssSampler};

const ATTACKS: [&str; 4] = ["big", "big-spread", "unread", "names"];

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut flag = |name: &str| {
        let i = args.iter().position(|a| a == name)?;
        let value = args.get(i + 1).cloned().unwrap_or_else(|| panic!("{name} needs a value"));
        args.drain(i..i + 2);
        Some(value)
    };
    let broker = flag("--broker").unwrap_or_else(|| {
        let exe = std::env::current_exe().unwrap();
        let dir = exe.parent().and_then(|examples| examples.parent()).unwrap();
        dir.join("mdp-broker").to_string_lossy().into_owned()
    });
    let big_count: usize = flag("--big-count").map_or(1000, |n| n.parse().expect("--big-count N"));
    let attacks: Vec<&str> = if args.is_empty() { ATTACKS.to_vec() } else { args.iter().map(String::as_str).collect() };
    let limits = Limits::defaults();
    println!("broker: {broker}, default limits; core bound {:.0} MiB", mib(limits.core_bound()));
    println!();
    println!(
        "{:<11} {:>9} {:>10} {:>9} {:>9} {:>8} | {:>8} {:>6} {:>9}",
        "attack", "base MiB", "peak MiB", "HWM MiB", "end MiB", "took s", "answered", "failed", "slowest"
    );
    for attack in attacks {
        run(&broker, &limits, attack, big_count);
    }
}

fn run(bin: &str, limits: &Limits, attack: &str, big_count: usize) {
    let broker = BrokerProcess::start(bin, &[]);
    let endpoint = broker.endpoint.clone();
    let workers = [rig::echo_worker(&endpoint, "echo"), rig::echo_worker(&endpoint, "echo")];
    let normal = NormalClient::start(&endpoint, "echo");
    while normal.answered() < 20 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let base = broker.rss();
    let sampler = RssSampler::start(broker.pid());
    let before = normal.answered();
    let started = Instant::now();
    let mut note = String::new();
    match attack {
        "big" | "big-spread" => {
            let socket = rig::dealer(&endpoint, 4);
            let body = vec![b'x'; 8 << 20];
            for i in 0..big_count {
                let service = if attack == "big" { "nobody".to_owned() } else { format!("nobody-{}", i % 10) };
                rig::send_request(&socket, &service, &body);
            }
            rig::barrier(&socket, Duration::from_secs(120));
        }
        "unread" => {
            let socket = rig::dealer(&endpoint, 1000);
            let body = vec![b'u'; 1024];
            for _ in 0..100_000 {
                rig::send_request(&socket, "echo", &body);
            }
            // Never read: wait out the request timeout, by which time every
            // request has been answered (into a full pipe) or has expired.
            std::thread::sleep(Duration::from_secs(12));
            drop(socket);
        }
        "names" => {
            let socket = rig::dealer(&endpoint, 1000);
            for i in 0..200_000 {
                rig::send_request(&socket, &format!("made-up-{i}"), b"?");
            }
            rig::barrier(&socket, Duration::from_secs(120));
            // A worker of a new service: registered at once, as mmi.service
            // shows, and serving.
            let registering = Instant::now();
            let fresh = rig::echo_worker(&endpoint, "fresh");
            let mut client = Client::connect(&endpoint, ClientConfig::new(Dialect::V02)).unwrap();
            let registered = loop {
                let reply = client.request("mmi.service", vec![Bytes::from_static(b"fresh")], Duration::from_secs(10));
                if reply.is_ok_and(|r| r == [Bytes::from_static(b"200")]) {
                    break registering.elapsed();
                }
                assert!(registering.elapsed() < Duration::from_secs(30), "the fresh worker never registered");
                std::thread::sleep(Duration::from_millis(1));
            };
            let body = vec![Bytes::from_static(b"hello")];
            let answer = client.request("fresh", body.clone(), Duration::from_secs(10));
            assert_eq!(answer.as_ref().ok(), Some(&body), "the fresh worker does not serve");
            note = format!("fresh worker registered {registered:.1?} after it started, and served");
            fresh.0.stop();
            fresh.1.join().unwrap();
        }
        other => panic!("unknown attack {other}: one of {ATTACKS:?}"),
    }
    let took = started.elapsed();
    // The normal client keeps going a little after the attack.
    let during = normal.answered() - before;
    std::thread::sleep(Duration::from_millis(300));
    let peak = sampler.stop();
    let served = normal.stop();
    let (hwm, end) = (broker.peak_rss(), broker.rss());
    println!(
        "{:<11} {:>9.1} {:>10.1} {:>9.1} {:>9.1} {:>8.1} | {:>8} {:>6} {:>9.1?}",
        attack,
        mib(base),
        mib(peak),
        mib(hwm),
        mib(end),
        took.as_secs_f64(),
        during,
        served.failed,
        served.slowest
    );
    if !note.is_empty() {
        println!("            {note}");
    }
    let bound = base + limits.core_bound();
    if hwm > bound {
        println!(
            "            OVER the documented bound: {:.1} MiB > base + core bound = {:.1} MiB",
            mib(hwm),
            mib(bound)
        );
    }
    for (stop, handle) in workers {
        stop.stop();
        handle.join().unwrap();
    }
}
