//! # raft-storage
//!
//! Implementations of [`raft_core::Persister`], chosen with Cargo features:
//!
//! | feature | backend | durable across a machine crash |
//! |---|---|---|
//! | `memory` (default) | [`MemoryPersister`] | no: for tests, benches and the embedded demo |
//! | `rocksdb` | [`RocksDbPersister`] | yes: every persist is fsynced (group commit) |
//!
//! Every backend implements the semantics of [`raft_core::DurableState::apply`], and reports
//! [`raft_core::Persister::raft_state_size`] as described in [`size`].
//!
//! ```
//! use raft_core::{Entry, Payload, PersistUpdate, Persister};
//! use raft_storage::MemoryPersister;
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let disk = MemoryPersister::new();
//! let update = PersistUpdate {
//!     entries: vec![Entry { index: 1, term: 1, payload: Payload::Command(b"x".to_vec()) }],
//!     ..PersistUpdate::default()
//! };
//! disk.persist(&update).await.unwrap();
//! assert_eq!(disk.load().await.unwrap().last_index(), 1);
//! assert!(disk.raft_state_size() > 0);
//! # });
//! ```
#![deny(missing_docs)]

#[cfg(feature = "memory")]
mod memory;
pub mod size;
pub mod workload;

#[cfg(feature = "rocksdb")]
pub mod rocks;

#[cfg(feature = "memory")]
pub use memory::{MemoryError, MemoryPersister};
#[cfg(feature = "rocksdb")]
pub use rocks::{RocksDbPersister, RocksError, StorageIdentity, WriteStats};
