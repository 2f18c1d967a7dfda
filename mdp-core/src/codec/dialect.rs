//! The protocol headers, the dialects they tell apart, and each dialect's
//! command bytes.

use std::fmt;

/// Client sub-protocol header of MDP/0.1.
pub const MDPC01: &[u8] = b"MDPC01";
/// Worker sub-protocol header of MDP/0.1.
pub const MDPW01: &[u8] = b"MDPW01";
/// Client sub-protocol header of MDP/0.2.
pub const MDPC02: &[u8] = b"MDPC02";
/// Worker sub-protocol header of MDP/0.2.
pub const MDPW02: &[u8] = b"MDPW02";

/// The dialects of MDP found in the wild. See `shared/MDP.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dialect {
    /// MDP/0.1 as in RFC 7: a leading empty frame, `MDPC01`/`MDPW01`, one
    /// REPLY per request.
    V01,
    /// MDP/0.2 as RFC 18 writes it: no leading empty frame, streamed
    /// PARTIAL/FINAL replies that carry the service name.
    V02,
    /// MDP/0.2 as majortomo (Python) sends it: the 0.1 leading empty frame,
    /// client REQUEST is `0x02`, replies to clients are PARTIAL `0x03` /
    /// FINAL `0x04` with no service frame; worker commands as in RFC 18.
    Majortomo,
}

impl Dialect {
    /// Every dialect, for tests and for iterating.
    pub const ALL: [Dialect; 3] = [Dialect::V01, Dialect::V02, Dialect::Majortomo];

    /// Whether replies can be streamed as PARTIALs (0.2 in either form).
    pub fn supports_partial(self) -> bool {
        !matches!(self, Dialect::V01)
    }

    /// Whether every message starts with an empty frame.
    pub(super) fn leading_empty(self) -> bool {
        !matches!(self, Dialect::V02)
    }

    pub(super) fn client_header(self) -> &'static [u8] {
        match self {
            Dialect::V01 => MDPC01,
            Dialect::V02 | Dialect::Majortomo => MDPC02,
        }
    }

    pub(super) fn worker_header(self) -> &'static [u8] {
        match self {
            Dialect::V01 => MDPW01,
            Dialect::V02 | Dialect::Majortomo => MDPW02,
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, so that width and alignment flags apply.
        f.pad(match self {
            Dialect::V01 => "MDP/0.1",
            Dialect::V02 => "MDP/0.2",
            Dialect::Majortomo => "MDP/0.2 (majortomo)",
        })
    }
}

/// Which sub-protocol a header names.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Sub {
    Client,
    Worker,
}

/// Command bytes of the worker sub-protocol, per version.
pub(super) mod wcmd {
    pub const V01_READY: u8 = 0x01;
    pub const V01_REQUEST: u8 = 0x02;
    pub const V01_REPLY: u8 = 0x03;
    pub const V01_HEARTBEAT: u8 = 0x04;
    pub const V01_DISCONNECT: u8 = 0x05;

    pub const V02_READY: u8 = 0x01;
    pub const V02_REQUEST: u8 = 0x02;
    pub const V02_PARTIAL: u8 = 0x03;
    pub const V02_FINAL: u8 = 0x04;
    pub const V02_HEARTBEAT: u8 = 0x05;
    pub const V02_DISCONNECT: u8 = 0x06;
}

/// Command bytes of the client sub-protocol (0.2 only; 0.1 has none).
pub(super) mod ccmd {
    pub const RFC18_REQUEST: u8 = 0x01;
    pub const RFC18_PARTIAL: u8 = 0x02;
    pub const RFC18_FINAL: u8 = 0x03;

    pub const MAJORTOMO_REQUEST: u8 = 0x02;
    pub const MAJORTOMO_PARTIAL: u8 = 0x03;
    pub const MAJORTOMO_FINAL: u8 = 0x04;
}
