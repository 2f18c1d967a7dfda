//! One broker, 4 clients and 4 workers mixing all three dialects on both
//! sides, 10,000 requests, no faults: every request answered, each reply to
//! its own request, in request order per client and service.

use bytes::Bytes;
use mdp_core::Dialect;
use mdp_tests::{Sim, SimConfig};

const REQUESTS_PER_CLIENT: usize = 2500;

#[test]
fn ten_thousand_requests_across_all_dialects() {
    let mut sim = Sim::new(SimConfig::new(0x5ce0));
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
        // Blocks of 25 requests per service, alternating: the majortomo
        // client must let one service's requests finish before the next.
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
    assert_eq!(sim.broker().stats().replies_sent, 10_000);
    println!("{counts:?}\n{stats:?}\n{:?}\nvirtual time {:?}", sim.net_stats(), sim.elapsed());
}
