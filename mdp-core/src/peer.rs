//! Peer identities.

use std::fmt;
use std::hash::{Hash, Hasher};

use bytes::Bytes;

/// The identity of a peer connected to the broker, as a ZeroMQ ROUTER socket
/// reports it, or whatever stable per-connection id another transport uses.
///
/// Identities are opaque bytes: libzmq's generated ones start with a zero
/// byte and are not text. [`Display`](fmt::Display) shows them in hex.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PeerId(pub Bytes);

/// As `[u8]` hashes (length, then bytes), which is what a derive gives, but
/// inlined: the broker hashes an identity for nearly every message.
impl Hash for PeerId {
    #[inline(always)]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_usize(self.0.len());
        state.write(&self.0);
    }
}

impl PeerId {
    /// The identity's bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }
}

impl From<Bytes> for PeerId {
    fn from(b: Bytes) -> Self {
        PeerId(b)
    }
}

impl From<&'static [u8]> for PeerId {
    fn from(b: &'static [u8]) -> Self {
        PeerId(Bytes::from_static(b))
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0.iter().take(32) {
            write!(f, "{b:02x}")?;
        }
        if self.0.len() > 32 {
            f.write_str("…")?;
        }
        Ok(())
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({self})")
    }
}

/// What a client or worker state machine asks its transport to do.
///
/// Drain these in order: a [`Reconnect`](PeerTransmit::Reconnect) applies to
/// every [`Send`](PeerTransmit::Send) after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerTransmit {
    /// Send this message to the broker on the current connection.
    Send(crate::Multipart),
    /// Close the current connection and open a new one (for ZeroMQ: a new
    /// DEALER socket, so a new identity). Nothing received on the old
    /// connection may be passed to the state machine afterwards: that is what
    /// keeps a late reply from being taken for the answer to a newer request.
    Reconnect,
}
