//! One broker, 4 clients and 4 workers mixing all three dialects on both
//! sides, 10,000 requests, no faults: every request answered, each reply to
//! its own request. With one lane per client, replies come in request order
//! per client and service; with four, a client has up to four requests per
//! service served at once, one per lane, and replies overtake each other,
//! in order per lane.

use std::time::Duration;

use bytes::Bytes;
use mdp_core::Dialect;
use mdp_testkit::{Link, ModelCounts, Sim, SimConfig, SimStats};

const REQUESTS_PER_CLIENT: usize = 2500;

fn ten_thousand_requests(lanes: usize) -> (Sim, ModelCounts, SimStats) {
    let mut config = SimConfig::new(0x5ce0);
    config.client_lanes = lanes;
    // Jitter, so that workers finish in another order than they started.
    config.link = Link::new(Duration::from_millis(1), Duration::from_millis(2));
    let mut sim = Sim::new(config);
    let (alpha, beta) = (Bytes::from_static(b"alpha"), Bytes::from_static(b"beta"));
    // Each service has a 0.1 worker and a 0.2 one, so 0.2 clients get
    // PARTIALs from one and none from the other, and 0.1 clients get both
    // joined into one REPLY.
    sim.add_worker(alpha.clone(), Dialect::V01);
    sim.add_worker(alpha.clone(), Dialect::Majortomo);
    sim.add_worker(beta.clone(), Dialect::V02);
    sim.add_worker(beta.clone(), Dialect::V01);
    let clients: Vec<usize> =
        [Dialect::V01, Dialect::V02, Dialect::Majortomo, Dialect::V02].map(|d| sim.add_client(d)).to_vec();
    for &c in &clients {
        // Blocks of 25 requests per service, alternating: a majortomo lane
        // carries one request at a time, whatever its service.
        let workload =
            (0..REQUESTS_PER_CLIENT).map(|n| if (n / 25 + c) % 2 == 0 { alpha.clone() } else { beta.clone() });
        sim.submit(c, workload);
    }

    sim.quiesce(2_000_000).unwrap_or_else(|e| panic!("{e}"));
    let counts = sim.finish();

    assert_eq!(counts.issued, 10_000);
    assert_eq!(counts.answered, 10_000, "{}", sim.describe());
    assert_eq!(counts.failed, 0);
    assert_eq!(counts.restarted, 0);
    assert!(counts.partials > 0, "0.2 clients served by 0.2 workers get PARTIALs");
    let stats = sim.stats();
    assert_eq!(stats.requeued, 0);
    assert_eq!(stats.dispatched, 10_000);
    assert_eq!(stats.client_reconnects + stats.worker_reconnects, 0);
    assert_eq!(sim.broker(0).stats().replies_sent, 10_000);
    println!("lanes {lanes}: {counts:?}\n{stats:?}\n{:?}\nvirtual time {:?}", sim.net_stats(), sim.elapsed());
    (sim, counts, stats)
}

#[test]
fn ten_thousand_requests_across_all_dialects() {
    let (_, counts, _) = ten_thousand_requests(1);
    assert_eq!(counts.overtaking, 0, "one lane: replies per client and service in request order");
}

#[test]
fn ten_thousand_requests_across_all_dialects_on_four_lanes() {
    let (_, counts, _) = ten_thousand_requests(4);
    assert!(counts.overtaking > 100, "four lanes: requests for one service served side by side: {counts:?}");
}
