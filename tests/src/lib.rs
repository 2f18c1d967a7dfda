//! Cross-crate integration, simulation and interoperability tests for
//! mdp-rs. The simulation itself is the published `mdp-testkit` crate; the
//! tests in `tests/` are built on its public API, as a user's would be.

/// The workspace README's Rust examples, compiled and run as doctests. They
/// live here, in the crate that is never published, because a published
/// crate cannot include a file from outside its package.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
