//! Cross-crate integration, simulation and interoperability tests for mdp-rs.
