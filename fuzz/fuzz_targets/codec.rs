//! Decode arbitrary frames in both directions; whatever decodes must
//! re-encode in its own dialect and decode again to the same command.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use mdp_core::{BrokerCommand, PeerCommand};

fuzz_target!(|input: Vec<Vec<u8>>| {
    let frames: Vec<Bytes> = input.into_iter().map(Bytes::from).collect();
    if let Ok((dialect, cmd)) = PeerCommand::decode(frames.clone()) {
        let encoded = cmd.clone().encode(dialect).expect("a decoded command re-encodes");
        assert_eq!(PeerCommand::decode(encoded), Ok((dialect, cmd)));
    }
    if let Ok((dialect, cmd)) = BrokerCommand::decode(frames) {
        let encoded = cmd.clone().encode(dialect).expect("a decoded command re-encodes");
        assert_eq!(BrokerCommand::decode(encoded), Ok((dialect, cmd)));
    }
});
