//! Frames ⇄ typed commands, for every MDP dialect in use.
//!
//! MDP has two sub-protocols (client and worker) and two directions. This
//! module splits commands by direction, because that is what each role sees:
//!
//! * [`PeerCommand`]: what a client or a worker sends **to the broker**.
//! * [`BrokerCommand`]: what the broker sends **to a client or a worker**.
//!
//! Splitting by direction also resolves the one place where MDP frames are
//! ambiguous: in MDP/0.1 a client REQUEST and the broker's REPLY have the same
//! frames (`""`, `MDPC01`, service, body). [`PeerCommand::decode`] reads them as
//! a request, [`BrokerCommand::decode`] as a reply.
//!
//! Across dialects there is no ambiguity: the leading empty frame and the
//! protocol header (`MDPC01`/`MDPW01`/`MDPC02`/`MDPW02`) always tell them
//! apart, so every frame list decodes to at most one dialect:
//!
//! | first frames            | dialect                |
//! |-------------------------|------------------------|
//! | `""`, `MDPC01`/`MDPW01` | [`Dialect::V01`]       |
//! | `MDPC02`/`MDPW02`       | [`Dialect::V02`]       |
//! | `""`, `MDPC02`/`MDPW02` | [`Dialect::Majortomo`] |
//!
//! Decoding never copies a frame: services, addresses and bodies are
//! [`Bytes`] handles into the frames passed in. It never panics; bad input is
//! a [`DecodeError`] that names the frame, what was expected and what was
//! found.
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
