//! # kv-service
//!
//! The key/value state machine, client deduplication, snapshot policy and node driver built on
//! `raft-core`. Not built yet (see the project's issue tracker); until it lands this crate
//! exports nothing.
#![deny(missing_docs)]
