//! The `arbitrary` feature: commands drawn from arbitrary input encode in
//! the dialects the docs promise and decode back to themselves.
#![cfg(feature = "arbitrary")]

use std::collections::BTreeSet;

use arbitrary::{Arbitrary, Unstructured};
use mdp_core::{BrokerCommand, Command, Dialect, PeerCommand};

/// A 64-bit linear congruential generator (Knuth's MMIX constants): the
/// same buffers on every run.
struct Lcg(u64);

impl Lcg {
    fn byte(&mut self) -> u8 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 56) as u8
    }

    /// A buffer of 0 to 511 bytes.
    fn buffer(&mut self) -> Vec<u8> {
        let len = usize::from(self.byte()) * 2 + usize::from(self.byte() & 1);
        (0..len).map(|_| self.byte()).collect()
    }
}

const BUFFERS: usize = 2_000;

fn buffers() -> impl Iterator<Item = Vec<u8>> {
    let mut lcg = Lcg(0x5EED_0000_0000_0021);
    (0..BUFFERS).map(move |_| lcg.buffer())
}

/// Draws with `draw` until the input runs out (at most 64 times).
fn draw_all<T>(buffer: &[u8], mut draw: impl FnMut(&mut Unstructured<'_>) -> T) -> Vec<T> {
    let mut u = Unstructured::new(buffer);
    let mut out = vec![draw(&mut u)];
    while !u.is_empty() && out.len() < 64 {
        out.push(draw(&mut u));
    }
    out
}

/// Whether the docs say `command` encodes in `dialect`.
fn broker_encodes_in(command: &BrokerCommand, dialect: Dialect) -> bool {
    match command {
        BrokerCommand::Partial { service, .. } => match service {
            Some(_) => dialect == Dialect::V02,
            None => dialect == Dialect::Majortomo,
        },
        BrokerCommand::Final { service, .. } => service.is_some() != (dialect == Dialect::Majortomo),
        BrokerCommand::Request { .. } | BrokerCommand::Heartbeat | BrokerCommand::Disconnect => true,
    }
}

#[test]
fn every_dialect_is_drawn() {
    let mut seen = BTreeSet::new();
    for buffer in buffers() {
        for dialect in draw_all(&buffer, |u| Dialect::arbitrary(u).unwrap()) {
            seen.insert(dialect);
        }
    }
    assert_eq!(seen, Dialect::ALL.into_iter().collect());
}

#[test]
fn peer_commands_drawn_for_a_dialect_encode_in_it_and_round_trip() {
    for dialect in Dialect::ALL {
        let mut seen = BTreeSet::new();
        for buffer in buffers() {
            for command in draw_all(&buffer, |u| PeerCommand::arbitrary_in(u, dialect).unwrap()) {
                seen.insert(format!("{}", command.command()));
                let frames = command.clone().encode(dialect).unwrap_or_else(|e| panic!("{dialect}: {command:?}: {e}"));
                assert_eq!(PeerCommand::decode(frames), Ok((dialect, command)), "{dialect}");
            }
        }
        let expected = if dialect.supports_partial() { 6 } else { 5 };
        assert_eq!(seen.len(), expected, "{dialect}: every command it has is drawn: {seen:?}");
    }
}

#[test]
fn broker_commands_drawn_for_a_dialect_encode_in_it_and_round_trip() {
    for dialect in Dialect::ALL {
        let mut seen = BTreeSet::new();
        for buffer in buffers() {
            for command in draw_all(&buffer, |u| BrokerCommand::arbitrary_in(u, dialect).unwrap()) {
                seen.insert(format!("{}", command.command()));
                let frames = command.clone().encode(dialect).unwrap_or_else(|e| panic!("{dialect}: {command:?}: {e}"));
                assert_eq!(BrokerCommand::decode(frames), Ok((dialect, command)), "{dialect}");
            }
        }
        let expected = if dialect.supports_partial() { 5 } else { 4 };
        assert_eq!(seen.len(), expected, "{dialect}: every command it has is drawn: {seen:?}");
    }
}

#[test]
fn an_arbitrary_peer_command_encodes_in_every_dialect_but_a_partial_in_0_1() {
    let mut partials = 0;
    for buffer in buffers() {
        for command in draw_all(&buffer, |u| PeerCommand::arbitrary(u).unwrap()) {
            for dialect in Dialect::ALL {
                let partial_in_01 = dialect == Dialect::V01 && command.command() == Command::Partial;
                partials += u32::from(partial_in_01);
                match command.clone().encode(dialect) {
                    Ok(frames) => {
                        assert!(!partial_in_01, "a PARTIAL encoded in MDP/0.1");
                        assert_eq!(PeerCommand::decode(frames), Ok((dialect, command.clone())), "{dialect}");
                    }
                    Err(e) => assert!(partial_in_01, "{dialect}: {command:?}: {e}"),
                }
            }
        }
    }
    assert!(partials > 0, "PARTIALs are drawn too");
}

#[test]
fn an_arbitrary_broker_command_encodes_in_the_dialect_drawn_first() {
    let mut dialects = BTreeSet::new();
    for buffer in buffers() {
        let dialect = Dialect::arbitrary(&mut Unstructured::new(&buffer)).unwrap();
        let command = BrokerCommand::arbitrary(&mut Unstructured::new(&buffer)).unwrap();
        let frames = command.clone().encode(dialect).unwrap_or_else(|e| panic!("{dialect}: {command:?}: {e}"));
        assert_eq!(BrokerCommand::decode(frames), Ok((dialect, command.clone())));
        dialects.insert(dialect);
        // And in exactly the dialects the docs say, read off the command.
        for other in Dialect::ALL {
            let encodes = command.clone().encode(other).is_ok();
            assert_eq!(encodes, broker_encodes_in(&command, other), "{other}: {command:?}");
        }
    }
    assert_eq!(dialects.len(), 3);
}
