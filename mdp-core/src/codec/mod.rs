//! Frames ⇄ typed commands, for every MDP dialect in use.
//!
//! What it promises is documented in the crate docs ("The codec").
//!
//! ## The files, top-down
//!
//! * `dialect.rs`: the protocol headers, [`Dialect`], and the command bytes
//!   each dialect gives each command.
//! * `command.rs`: the typed commands, [`Command`], [`PeerCommand`] and
//!   [`BrokerCommand`].
//! * `decode.rs`: frames to commands (`PeerCommand::decode`,
//!   `BrokerCommand::decode`).
//! * `encode.rs`: commands to frames (`encode` on either), written in the
//!   body's own buffer where it has room.
//! * `error.rs`: [`DecodeError`], [`EncodeError`] and [`Found`], how a bad
//!   frame is shown.

use bytes::Bytes;

mod command;
mod decode;
mod dialect;
mod encode;
mod error;

pub use command::{BrokerCommand, Command, PeerCommand};
pub use dialect::{Dialect, MDPC01, MDPC02, MDPW01, MDPW02};
pub(crate) use encode::worker_request;
pub use error::{DecodeError, EncodeError, Found};

/// A multipart message: one [`Bytes`] per frame.
///
/// Any ROUTER identity frame is *not* part of it: the transport strips it on
/// receipt and adds it back on send, and passes it separately as a
/// [`PeerId`](crate::PeerId).
pub type Multipart = Vec<Bytes>;
