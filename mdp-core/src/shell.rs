//! What the client and the worker share around their rules: the clock that
//! never goes back, the queues of transmits and events the application
//! drains, and reading a broker's message in the dialect they speak.

use std::collections::VecDeque;
use std::time::Instant;

use crate::codec::{BrokerCommand, DecodeError, Dialect, Multipart};

/// Why a message from the broker cannot be taken as a command at all.
#[derive(Debug)]
pub(crate) enum Unreadable {
    /// It is not an MDP command.
    Malformed(DecodeError),
    /// It is one, in another dialect than ours.
    WrongDialect { expected: Dialect, found: Dialect },
}

/// The clock and the output queues of a client or a worker.
#[derive(Debug)]
pub(crate) struct Shell<T, E> {
    /// The latest `now` passed in; time never goes back from it.
    now: Instant,
    dialect: Dialect,
    transmits: VecDeque<T>,
    events: VecDeque<E>,
}

impl<T, E> Shell<T, E> {
    pub(crate) fn new(now: Instant, dialect: Dialect) -> Self {
        Shell { now, dialect, transmits: VecDeque::new(), events: VecDeque::new() }
    }

    /// Moves the clock forward (never back) and returns the time to use.
    pub(crate) fn advance(&mut self, now: Instant) -> Instant {
        self.now = self.now.max(now);
        self.now
    }

    /// The latest `now` passed in.
    pub(crate) fn now(&self) -> Instant {
        self.now
    }

    /// Decodes a message from the broker, if it is a command in our dialect.
    pub(crate) fn read(&self, frames: Multipart) -> Result<BrokerCommand, Unreadable> {
        match BrokerCommand::decode(frames) {
            Err(e) => Err(Unreadable::Malformed(e)),
            Ok((found, _)) if found != self.dialect => Err(Unreadable::WrongDialect { expected: self.dialect, found }),
            Ok((_, command)) => Ok(command),
        }
    }

    pub(crate) fn transmit(&mut self, t: T) {
        self.transmits.push_back(t);
    }

    pub(crate) fn event(&mut self, e: E) {
        self.events.push_back(e);
    }

    pub(crate) fn poll_transmit(&mut self) -> Option<T> {
        self.transmits.pop_front()
    }

    pub(crate) fn poll_event(&mut self) -> Option<E> {
        self.events.pop_front()
    }

    /// Drops the queued events `keep` rejects.
    pub(crate) fn retain_events(&mut self, keep: impl FnMut(&E) -> bool) {
        self.events.retain(keep);
    }
}
