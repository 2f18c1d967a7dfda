//! Input vocabulary shared by the fuzz targets in `fuzz_targets/`.
//!
//! The targets build their inputs with [`arbitrary`], from these pieces:
//! frames (including large ones that cost a few input bytes, so the
//! message-size limits are reachable), dialects, edits that make a
//! well-formed message slightly malformed, and time steps that range from
//! zero to years. Weighted choices are made with [`pick`], so that most
//! inputs are close to valid MDP and reach deep states, while the rest stay
//! arbitrary.

use std::time::Duration;

use arbitrary::{Arbitrary, Result, Unstructured};
use bytes::Bytes;
use mdp_core::{Dialect, Multipart};

/// Picks an index into `weights`, each index with probability proportional
/// to its weight.
pub fn pick(u: &mut Unstructured<'_>, weights: &[u32]) -> Result<usize> {
    let total: u32 = weights.iter().sum();
    let mut x = u.int_in_range(0..=total - 1)?;
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return Ok(i);
        }
        x -= w;
    }
    Ok(weights.len() - 1)
}

/// Any dialect, uniformly.
pub fn dialect(u: &mut Unstructured<'_>) -> Result<Dialect> {
    u.choose(&Dialect::ALL).copied()
}

/// One frame of a message.
#[derive(Debug, Clone)]
pub enum Frame {
    /// These bytes.
    Bytes(Vec<u8>),
    /// `len` copies of `byte`: a large frame from three input bytes.
    Filled {
        /// Length, at most 8 KiB (twice the broker target's largest byte limit).
        len: u16,
        /// The byte repeated.
        byte: u8,
    },
}

impl Frame {
    /// The frame's bytes.
    pub fn to_bytes(&self) -> Bytes {
        match self {
            Frame::Bytes(b) => Bytes::copy_from_slice(b),
            Frame::Filled { len, byte } => Bytes::from(vec![*byte; usize::from(*len)]),
        }
    }
}

impl<'a> Arbitrary<'a> for Frame {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(match pick(u, &[9, 1])? {
            0 => Frame::Bytes(Vec::arbitrary(u)?),
            // Log-uniform lengths, so every limit from 64 bytes to 4 KiB is
            // as likely to be just crossed as not.
            _ => {
                let bits = u.int_in_range(0..=13)?;
                Frame::Filled { len: u.int_in_range(0..=1 << bits)?, byte: u.arbitrary()? }
            }
        })
    }
}

/// Between `min` and `max` frames.
pub fn frames(u: &mut Unstructured<'_>, min: usize, max: usize) -> Result<Vec<Frame>> {
    let n = u.int_in_range(min..=max)?;
    (0..n).map(|_| Frame::arbitrary(u)).collect()
}

/// Turns frames into a message.
pub fn to_multipart(frames: &[Frame]) -> Vec<Bytes> {
    frames.iter().map(Frame::to_bytes).collect()
}

/// One change to a well-formed message, so that the state machines also
/// get nearly valid input. Positions wrap around the message's length.
#[derive(Debug, Clone, Arbitrary)]
pub enum Edit {
    /// Remove the frame at this position (nothing, if there are no frames).
    Remove(u8),
    /// Insert this frame at this position (the end included).
    Insert(u8, Frame),
    /// Replace the frame at this position (nothing, if there are no frames).
    Replace(u8, Frame),
    /// Keep only this many frames, from none to all.
    Truncate(u8),
}

impl Edit {
    /// Makes the change to `frames`.
    pub fn apply(&self, frames: &mut Multipart) {
        let at = |i: &u8, n: usize| usize::from(*i) % n.max(1);
        match self {
            Edit::Remove(i) if !frames.is_empty() => {
                frames.remove(at(i, frames.len()));
            }
            Edit::Insert(i, f) => frames.insert(at(i, frames.len() + 1), f.to_bytes()),
            Edit::Replace(i, f) if !frames.is_empty() => {
                let i = at(i, frames.len());
                frames[i] = f.to_bytes();
            }
            Edit::Truncate(i) => frames.truncate(at(i, frames.len() + 1)),
            _ => {}
        }
    }
}

/// How far the clock moves: zero, around the timers' scale, or very far.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Delay {
    /// Not at all.
    Zero,
    /// Up to about a minute, in milliseconds.
    Millis(u16),
    /// Up to about 18 hours, in seconds.
    Secs(u16),
    /// Up to about 136 years, in seconds.
    Huge(u32),
}

impl Delay {
    /// The step as a duration.
    pub fn duration(self) -> Duration {
        match self {
            Delay::Zero => Duration::ZERO,
            Delay::Millis(ms) => Duration::from_millis(u64::from(ms)),
            Delay::Secs(s) => Duration::from_secs(u64::from(s)),
            Delay::Huge(s) => Duration::from_secs(u64::from(s)),
        }
    }
}

/// Most items one input may make a state machine emit before the target
/// calls it a livelock. Far above what the targets' small limits allow.
pub const DRAIN_BOUND: usize = 10_000;

/// Calls `poll` until it returns `None`, panicking after [`DRAIN_BOUND`]
/// items: a state machine that never runs dry is livelocked.
pub fn drain<T>(what: &str, mut poll: impl FnMut() -> Option<T>) -> Vec<T> {
    let mut out = Vec::new();
    while let Some(item) = poll() {
        out.push(item);
        assert!(out.len() <= DRAIN_BOUND, "livelock: {what} gave more than {DRAIN_BOUND} items for one input");
    }
    out
}
