//! mdp-core over plain TCP with tokio: no ZeroMQ anywhere.
//!
//! ```sh
//! cargo run -p mdp-core --example tokio_tcp
//! ```
//!
//! A broker, an `echo` worker (MDP/0.2) and a client (MDP/0.1), each a tokio
//! task, talk over 127.0.0.1 on a port the OS picks. The client prints each
//! request with its reply; the process exits 0.
//!
//! # Layout
//!
//! The transport (framing, connections, the three loops) is in
//! `examples/tokio_tcp/transport.rs`. This file and the test
//! `tests/tests/tokio_tcp.rs` both include it with `#[path]`: the test runs
//! the very code shown here, and tokio stays a dev-dependency of mdp-core and
//! mdp-tests, with no cyclic dependency between the two crates.
//!
//! # Framing
//!
//! ZeroMQ gives MDP multipart messages; a TCP stream gives bytes. Each message
//! is written as
//!
//! ```text
//! count:u32, then count × (length:u32, length bytes)      (big-endian)
//! ```
//!
//! so `["", "MDPC01", "echo", "hi"]` is `00000004 00000000 00000006 MDPC01
//! 00000004 echo 00000002 hi`. The reader refuses more than 1,024 frames or
//! 64 MiB in one message (the broker's default limits) as soon as a header
//! announces it, and closes the connection: a peer cannot make it allocate
//! 4 GiB. There is no identity frame on the wire: the broker names each
//! accepted connection with a [`PeerId`](mdp_core::PeerId) of its own.
//!
//! # Porting
//!
//! The README's "Porting to another transport" section explains what a
//! transport must provide and how each ZeroMQ behaviour maps onto TCP.
#![allow(clippy::disallowed_methods)] // stands in for the application, which reads the clock

// The test uses parts of the transport this example does not (partial
// replies, broker events, killing a broker).
#[allow(dead_code)]
#[path = "tokio_tcp/transport.rs"]
mod transport;

use std::time::Duration;

use bytes::Bytes;
use mdp_core::{BrokerConfig, ClientConfig, Dialect, WorkerConfig};
use transport::{spawn_broker, spawn_client, spawn_worker, TcpOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Bounded, so that a bug shows as a failure, not a hang.
    tokio::time::timeout(Duration::from_secs(30), run()).await?
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let options = TcpOptions::default();
    let broker = spawn_broker("127.0.0.1:0".parse()?, BrokerConfig::default(), options.clone()).await?;
    println!("broker listening on {}", broker.addr());

    let service = Bytes::from_static(b"echo");
    let mut worker = spawn_worker(broker.addr(), WorkerConfig::new(service.clone(), Dialect::V02), options.clone())?;
    tokio::spawn(async move {
        while let Some(job) = worker.next_job().await {
            let body = job.body.clone();
            job.reply(body).await;
        }
    });

    let client = spawn_client(broker.addr(), ClientConfig::new(Dialect::V01), options)?;
    let requests: [&[&[u8]]; 4] = [&[b"hello"], &[b"ahoj", b"svete"], &[b"\x00\xffbinary"], &[b"multi", b"", b"part"]];
    for frames in requests {
        let body: Vec<Bytes> = frames.iter().map(|f| Bytes::copy_from_slice(f)).collect();
        let reply = client.request(service.clone(), body.clone()).await?;
        println!("request {} -> reply {}", show(&body), show(&reply));
        if reply != body {
            return Err("the echo worker changed the body".into());
        }
    }
    Ok(())
}

fn show(frames: &[Bytes]) -> String {
    let shown: Vec<String> = frames.iter().map(|f| format!("\"{}\"", f.escape_ascii())).collect();
    format!("[{}]", shown.join(", "))
}
