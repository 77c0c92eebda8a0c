//! # raft-transport-quic
//!
//! An implementation of [`raft_core::Transport`] over QUIC. Not built yet (see the project's
//! issue tracker); until it lands this crate exports nothing.
#![deny(missing_docs)]
