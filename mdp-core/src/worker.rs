//! The MDP worker state machine.
