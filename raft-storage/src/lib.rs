//! # raft-storage
//!
//! Implementations of [`raft_core::Persister`]: an in-memory backend and a RocksDB backend,
//! chosen with Cargo features. The backends are being built (see the project's issue tracker);
//! until they land this crate exports nothing. The semantics every backend must follow are
//! specified by [`raft_core::DurableState::apply`].
#![deny(missing_docs)]
