//! Runs a broker scenario for a given number of round trips and nothing
//! else: a small binary to profile, or to count instructions with on a
//! machine whose timings are noisy (instruction counts do not depend on what
//! else runs):
//!
//! ```sh
//! cargo bench -p mdp-core --bench steps --no-run
//! B=$(ls target/release/deps/steps-* | grep -v '\.d$')
//! for n in 0 100000; do valgrind --tool=callgrind --callgrind-out-file=/dev/null $B idle 10 1 $n; done
//! ```
//!
//! The difference of the two totals over 100,000 is the cost of one round
//! trip. Arguments: `idle WORKERS SERVICES N` or `queued WORKERS CLIENTS
//! QUEUED N`. Without arguments (as `cargo bench` runs it) it does a short
//! run of each scenario.
#![allow(clippy::disallowed_methods)] // stands in for the application, which reads the clock

#[path = "common/mod.rs"]
mod common;

use std::hint::black_box;

fn arg(args: &[String], i: usize) -> usize {
    args.get(i).and_then(|a| a.parse().ok()).unwrap_or_else(|| panic!("argument {i}: a number"))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    match args.first().map(String::as_str) {
        Some("idle") => {
            let mut rig = common::RoundTrips::new(arg(&args, 1), arg(&args, 2));
            for _ in 0..arg(&args, 3) {
                black_box(rig.step());
            }
        }
        Some("queued") => {
            let mut rig = common::Queued::new(arg(&args, 1), arg(&args, 2), arg(&args, 3));
            for _ in 0..arg(&args, 4) {
                black_box(rig.step());
            }
        }
        Some(other) => panic!("unknown scenario {other}: idle or queued"),
        None => {
            let mut rig = common::RoundTrips::new(10, 1);
            for _ in 0..1000 {
                black_box(rig.step());
            }
            let mut rig = common::Queued::new(10, 100, 1000);
            for _ in 0..1000 {
                black_box(rig.step());
            }
            println!("steps: ran 1,000 round trips of each scenario; see the file's doc for counting instructions");
        }
    }
}
