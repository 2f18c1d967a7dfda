//! # mdp-core: the Majordomo Protocol without IO
//!
//! A sans-IO implementation of the ZeroMQ Majordomo Protocol: MDP/0.1
//! (RFC 7), MDP/0.2 (RFC 18), the dialect majortomo really sends, and MMI
//! (RFC 8). It holds the frame codec and the broker, client and worker state
//! machines. It opens no socket, starts no thread and never reads the clock:
//! every entry point takes `now: Instant`, so every timing edge case can be a
//! deterministic test.
//!
//! ## The codec
//!
//! ```
//! use bytes::Bytes;
//! use mdp_core::{Dialect, PeerCommand};
//!
//! // What a majortomo client sends (the ROUTER identity already removed).
//! let frames = vec![
//!     Bytes::new(),
//!     Bytes::from_static(b"MDPC02"),
//!     Bytes::from_static(&[0x02]),
//!     Bytes::from_static(b"echo"),
//!     Bytes::from_static(b"hello"),
//! ];
//! let (dialect, command) = PeerCommand::decode(frames.clone()).unwrap();
//! assert_eq!(dialect, Dialect::Majortomo);
//! assert_eq!(
//!     command,
//!     PeerCommand::Request { service: Bytes::from_static(b"echo"), body: vec![Bytes::from_static(b"hello")] }
//! );
//! assert_eq!(command.encode(dialect).unwrap(), frames);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod client;
pub mod codec;
mod peer;
pub mod worker;

pub use peer::{PeerId, PeerTransmit};

pub use client::{Client, ClientConfig, ClientDiscardReason, ClientEvent, ClientUsageError, FailReason, RequestId};
pub use worker::{
    Backoff, DisconnectReason, ReplyToken, Worker, WorkerConfig, WorkerDiscardReason, WorkerEvent, WorkerUsageError,
};

pub use codec::{BrokerCommand, DecodeError, Dialect, EncodeError, Multipart, PeerCommand};
