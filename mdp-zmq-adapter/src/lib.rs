//! Drives the [`mdp_core`] state machines over libzmq sockets.
