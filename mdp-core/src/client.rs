//! The MDP client state machine.
