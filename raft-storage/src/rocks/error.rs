//! Errors of the RocksDB backend. Every error that concerns a data directory names it.

use std::path::{Path, PathBuf};

use raft_core::UpdateError;

use super::layout::StorageIdentity;

/// Why the RocksDB backend could not open a data directory, read it, or persist an update.
#[derive(Debug, thiserror::Error)]
pub enum RocksError {
    /// `open` was given a directory that does not exist (use `create` for a new node).
    #[error("data directory {path} does not exist (create it with RocksDbPersister::create)")]
    Missing {
        /// The directory.
        path: PathBuf,
    },
    /// The path exists but is not a directory.
    #[error("{path} is not a directory")]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// The directory exists but holds no Raft data (no RocksDB database, or no identity
    /// record): refusing to treat it as an empty log.
    #[error("{path} is not a Raft data directory: {reason}")]
    NotADataDir {
        /// The directory.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// `create` was given a directory that already holds a database.
    #[error("{path} already holds a database; open it instead of creating a new one")]
    AlreadyInitialized {
        /// The directory.
        path: PathBuf,
    },
    /// `create` was given a directory that is not empty (but holds no complete database):
    /// `create` never deletes or overwrites anything, so it refuses. If the directory held this
    /// node's data, the data is damaged: see `docs/faults.md`.
    #[error("{path} is not empty (it holds {found:?}); create needs an absent or empty directory")]
    NotEmpty {
        /// The directory.
        path: PathBuf,
        /// The name of one entry found in it.
        found: String,
    },
    /// Another process (or another persister in this one) has the directory open.
    #[error("data directory {path} is locked by another process or persister")]
    Locked {
        /// The directory.
        path: PathBuf,
    },
    /// The directory belongs to another node or cluster.
    #[error("data directory {path} belongs to cluster {} node {}, not cluster {} node {}", found.cluster_id, found.node_id, expected.cluster_id, expected.node_id)]
    WrongIdentity {
        /// The directory.
        path: PathBuf,
        /// The identity asked for.
        expected: StorageIdentity,
        /// The identity stored.
        found: StorageIdentity,
    },
    /// The directory was written by an incompatible version of this layout.
    #[error(
        "data directory {path} has layout version {found}, this build reads version {supported}"
    )]
    UnsupportedFormat {
        /// The directory.
        path: PathBuf,
        /// The stored version.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// The stored data is damaged or inconsistent.
    #[error("data directory {path} is corrupt: {what}")]
    Corrupt {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A file system operation of this backend (locking, creating, renaming, syncing) failed.
    #[error("cannot {action} for data directory {path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// RocksDB failed.
    #[error("RocksDB error in {path}: {source}")]
    Db {
        /// The directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: rocksdb::Error,
    },
    /// The update does not fit the stored state (a gap, a stale snapshot, a truncation into the
    /// snapshot); nothing was written.
    #[error("refused update: {0}")]
    Update(#[from] UpdateError),
    /// An earlier write failed (for instance its fsync): what is on disk is unknown, so this
    /// persister accepts no more writes. Reopen the directory to continue from what is durable.
    #[error("an earlier write to {path} failed ({cause}); reopen the data directory")]
    Poisoned {
        /// The directory.
        path: PathBuf,
        /// The first failure.
        cause: String,
    },
    /// The persister was shut down.
    #[error("the persister for {path} is shut down")]
    Closed {
        /// The directory.
        path: PathBuf,
    },
}

impl RocksError {
    /// Classifies a RocksDB error concerning the directory `path`, by its kind only: corruption
    /// is [`RocksError::Corrupt`], everything else [`RocksError::Db`] (whose source keeps
    /// RocksDB's kind and message).
    pub(crate) fn from_db(path: &Path, error: rocksdb::Error) -> Self {
        let path = path.to_path_buf();
        match error.kind() {
            rocksdb::ErrorKind::Corruption => RocksError::Corrupt {
                path,
                what: error.into_string(),
            },
            _ => RocksError::Db {
                path,
                source: error,
            },
        }
    }

    /// A failed file system operation on `path`.
    pub(crate) fn io(path: &Path, action: &'static str, source: std::io::Error) -> Self {
        RocksError::Io {
            path: path.to_path_buf(),
            action,
            source,
        }
    }
}
