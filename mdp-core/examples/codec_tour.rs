//! Decodes one request in each MDP dialect and prints what it found.

use bytes::Bytes;
use mdp_core::{Dialect, PeerCommand};

fn main() {
    for dialect in Dialect::ALL {
        let request =
            PeerCommand::Request { service: Bytes::from_static(b"echo"), body: vec![Bytes::from_static(b"hello")] };
        let frames = request.encode(dialect).expect("a request encodes in every dialect");
        let shown: Vec<String> = frames.iter().map(|f| format!("{:?}", String::from_utf8_lossy(f))).collect();
        let (seen, command) = PeerCommand::decode(frames).expect("what we encode decodes");
        println!("{dialect:>20}: [{}] -> {seen}, {command:?}", shown.join(", "));
    }
}
