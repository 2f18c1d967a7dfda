//! Why frames are not a command, or a command cannot be written, and how a
//! bad frame is shown.

use std::fmt;

use bytes::Bytes;

use super::{Command, Dialect};

/// A frame's content as shown in an error: hex-escaped, cut after 32 bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Found(pub Bytes);

impl fmt::Debug for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 32;
        f.write_str("\"")?;
        for &b in self.0.iter().take(SHOWN) {
            write!(f, "{}", std::ascii::escape_default(b))?;
        }
        if self.0.len() > SHOWN {
            write!(f, "…\" ({} bytes)", self.0.len())
        } else {
            f.write_str("\"")
        }
    }
}

/// Why a multipart message is not a valid MDP command.
///
/// Frame indexes count from 0 and do not include the ROUTER identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The message has no frames at all.
    #[error("empty message: expected an MDP command")]
    Empty,
    /// The message ended before a frame the command needs.
    #[error("frame {index} missing: expected {expected}, but the message ends before it")]
    Missing {
        /// Index of the missing frame.
        index: usize,
        /// What that frame should have held.
        expected: &'static str,
    },
    /// A frame holds something other than what the command needs there.
    #[error("frame {index}: expected {expected}, found {found}")]
    Unexpected {
        /// Index of the wrong frame.
        index: usize,
        /// What that frame should have held.
        expected: &'static str,
        /// What it held.
        found: Found,
    },
    /// The command byte is not one this dialect and direction define.
    #[error("frame {index}: unknown {dialect} command {found} (expected {expected})")]
    UnknownCommand {
        /// Index of the command frame.
        index: usize,
        /// The dialect recognised from the header.
        dialect: Dialect,
        /// The command frame as found.
        found: Found,
        /// The commands allowed there.
        expected: &'static str,
    },
    /// The service name frame is empty.
    #[error("frame {index}: empty service name")]
    EmptyService {
        /// Index of the service frame.
        index: usize,
    },
    /// The command takes a fixed number of frames and got more.
    #[error("{command} takes {expected} frames, found {found}")]
    TrailingFrames {
        /// The command.
        command: Command,
        /// How many frames it takes.
        expected: usize,
        /// How many the message had.
        found: usize,
    },
}

/// Why a command cannot be written in a dialect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// PARTIAL does not exist in MDP/0.1.
    #[error("{0} has no PARTIAL command")]
    NoPartial(Dialect),
    /// The dialect carries a service frame in replies and none was given.
    #[error("{0} replies carry a service name, but none was given")]
    MissingService(Dialect),
    /// The majortomo dialect carries no service frame in replies.
    #[error("{0} replies carry no service name, but one was given")]
    UnexpectedService(Dialect),
    /// A REQUEST needs at least one body frame.
    #[error("a REQUEST needs at least one body frame")]
    EmptyBody,
    /// Service names must not be empty.
    #[error("empty service name")]
    EmptyService,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn found_is_escaped_and_cut() {
        let f = Found(Bytes::from(vec![0u8; 40]));
        let s = f.to_string();
        assert!(s.starts_with("\"\\x00"), "{s}");
        assert!(s.ends_with("(40 bytes)"), "{s}");
        assert_eq!(Found(Bytes::from_static(b"ab\n")).to_string(), "\"ab\\n\"");
    }
}
