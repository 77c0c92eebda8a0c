//! The durable backend: a [`Persister`] on RocksDB (feature `rocksdb`).
//!
//! - **Atomic and durable**: every update becomes one RocksDB write batch, written with
//!   `sync = true` (the WAL is fsynced) before `persist` returns. A crash at any moment leaves
//!   each update entirely applied or not at all, snapshots included (see [`layout`]).
//! - **Group commit**: one writer thread takes every update waiting when it is free, checks
//!   them in order, and writes them as one batch with one fsync. Concurrent callers therefore
//!   share fsyncs; [`RocksDbPersister::stats`] counts them.
//! - **Range deletes**: truncating a log suffix, compacting a prefix and dropping an old
//!   snapshot are each one range delete.
//! - **Safe creation**: [`RocksDbPersister::create`] initializes a directory for one node of one
//!   cluster, atomically (built aside, then renamed into place), and only where nothing is:
//!   it refuses any non-empty directory and never deletes anything.
//! - **Safe opening**: [`RocksDbPersister::open`] refuses a missing, foreign, locked or corrupt
//!   directory with a [`RocksError`] naming it, and never starts empty over existing data.
//!   Damage inside a write-ahead log, a missing or cut WAL that RocksDB tracks, and a log that
//!   does not end where the hard state written with it says are all refused as
//!   [`RocksError::Corrupt`]; `docs/faults.md` lists what cannot be detected.
//!
//! ```no_run
//! use raft_core::Persister;
//! use raft_storage::{RocksDbPersister, StorageIdentity};
//!
//! # async fn example() -> Result<(), raft_storage::RocksError> {
//! let me = StorageIdentity { cluster_id: 7, node_id: 1 };
//! let disk = RocksDbPersister::create("/var/lib/raft/node1", me)?;
//! drop(disk);
//! // Later, after a restart:
//! let disk = RocksDbPersister::open("/var/lib/raft/node1", me)?;
//! let state = disk.load().await?;
//! # Ok(()) }
//! ```

pub mod layout;

mod create;
mod decode;
mod error;
mod lock;
mod mirror;
mod options;
mod reader;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use async_trait::async_trait;
use raft_core::{DurableState, PersistUpdate, Persister};
use rocksdb::{Options, DB};

pub use error::RocksError;
pub use layout::StorageIdentity;

use layout::FORMAT_VERSION;
use lock::DirLock;
use mirror::Mirror;
use writer::{Request, Writer};

/// Counters of the writes a [`RocksDbPersister`] made, for measuring group commit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Write batches fsynced.
    pub syncs: u64,
    /// Updates persisted (each reported durable by one `persist` call).
    pub updates: u64,
    /// Log entries persisted.
    pub entries: u64,
}

/// Counters shared between the persister and its writer thread.
#[derive(Debug, Default)]
struct Counters {
    syncs: AtomicU64,
    updates: AtomicU64,
    entries: AtomicU64,
    raft_state_size: AtomicU64,
}

/// A [`Persister`] storing one node's state in a RocksDB database. See the
/// [module docs](self).
#[derive(Debug)]
pub struct RocksDbPersister {
    path: PathBuf,
    db: Arc<DB>,
    counters: Arc<Counters>,
    requests: Mutex<Option<mpsc::Sender<Request>>>,
    writer: Option<JoinHandle<()>>,
    /// Held until the database is closed (fields drop in order, after `Drop::drop`).
    _lock: DirLock,
}

/// Whether `path` holds a RocksDB database (RocksDB's `CURRENT` file names its manifest).
fn holds_database(path: &Path) -> bool {
    path.join("CURRENT").exists()
}

/// Refuses a database whose column families are not exactly this layout's (another
/// application's database). Only asked after RocksDB refused the column families: listing them
/// does not check the MANIFEST, whose damage opening reports.
fn check_column_families(path: &Path) -> Result<(), RocksError> {
    let mut found =
        DB::list_cf(&Options::default(), path).map_err(|e| RocksError::from_db(path, e))?;
    found.sort();
    let expected = options::expected_column_families();
    if found != expected {
        return Err(RocksError::NotADataDir {
            path: path.to_path_buf(),
            reason: format!("column families {found:?}, expected {expected:?}"),
        });
    }
    Ok(())
}

impl RocksDbPersister {
    /// Initializes a new data directory at `path` for node `identity`, with an empty log and
    /// term 0, and opens it.
    ///
    /// `path` must be absent (its parent is created if needed) or an empty directory; anything
    /// else is refused ([`RocksError::AlreadyInitialized`] over a database,
    /// [`RocksError::NotEmpty`] over anything else) and left untouched. The directory is built
    /// beside `path` and renamed into place, so a crash during `create` leaves either no data
    /// directory or a complete one (see `create.rs`). `path` must not be a mount point: mount
    /// the volume at its parent.
    pub fn create(path: impl AsRef<Path>, identity: StorageIdentity) -> Result<Self, RocksError> {
        let path = path.as_ref();
        let lock = create::build(path, identity)?;
        Self::open_locked(path, identity, lock)
    }

    /// Opens the data directory of node `identity` at `path`, refusing a directory that is
    /// missing, holds no Raft data, belongs to another node or cluster, is locked by another
    /// process or persister, or is corrupt.
    pub fn open(path: impl AsRef<Path>, identity: StorageIdentity) -> Result<Self, RocksError> {
        let path = path.as_ref();
        if !path.exists() {
            return Err(RocksError::Missing {
                path: path.to_path_buf(),
            });
        }
        if !path.is_dir() {
            return Err(RocksError::NotADirectory {
                path: path.to_path_buf(),
            });
        }
        if !holds_database(path) {
            return Err(RocksError::NotADataDir {
                path: path.to_path_buf(),
                reason: "no RocksDB database in it (CURRENT file missing)".into(),
            });
        }
        let lock = DirLock::acquire(path)?;
        Self::open_locked(path, identity, lock)
    }

    /// Opens the database at `path`, whose lock the caller holds, and checks it is `identity`'s.
    fn open_locked(
        path: &Path,
        identity: StorageIdentity,
        lock: DirLock,
    ) -> Result<Self, RocksError> {
        let options = options::db(false).map_err(|e| RocksError::from_db(path, e))?;
        let db = match DB::open_cf_descriptors(&options, path, options::descriptors()) {
            Ok(db) => db,
            Err(e) if e.kind() == rocksdb::ErrorKind::InvalidArgument => {
                // Perhaps another application's database, with other column families.
                check_column_families(path)?;
                return Err(RocksError::from_db(path, e));
            }
            Err(e) => return Err(RocksError::from_db(path, e)),
        };
        let record = reader::identity(&db, path)?;
        if record.format != FORMAT_VERSION {
            return Err(RocksError::UnsupportedFormat {
                path: path.to_path_buf(),
                found: record.format,
                supported: FORMAT_VERSION,
            });
        }
        if record.identity != identity {
            return Err(RocksError::WrongIdentity {
                path: path.to_path_buf(),
                expected: identity,
                found: record.identity,
            });
        }
        let state = reader::load(&db, path)?;
        Self::start(path, db, &state, lock)
    }

    fn start(path: &Path, db: DB, state: &DurableState, lock: DirLock) -> Result<Self, RocksError> {
        let db = Arc::new(db);
        let mirror = Mirror::of(state);
        let counters = Arc::new(Counters::default());
        counters
            .raft_state_size
            .store(mirror.raft_state_size(), Ordering::Relaxed);
        let (sender, receiver) = mpsc::channel();
        let writer = Writer::new(
            path.to_path_buf(),
            Arc::clone(&db),
            mirror,
            Arc::clone(&counters),
        )?;
        let handle = std::thread::Builder::new()
            .name("raft-storage-writer".into())
            .spawn(move || writer.run(receiver))
            .map_err(|e| RocksError::io(path, "start the writer thread", e))?;
        Ok(Self {
            path: path.to_path_buf(),
            db,
            counters,
            requests: Mutex::new(Some(sender)),
            writer: Some(handle),
            _lock: lock,
        })
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Counters of the writes made so far.
    pub fn stats(&self) -> WriteStats {
        WriteStats {
            syncs: self.counters.syncs.load(Ordering::Relaxed),
            updates: self.counters.updates.load(Ordering::Relaxed),
            entries: self.counters.entries.load(Ordering::Relaxed),
        }
    }

    fn sender(&self) -> Option<mpsc::Sender<Request>> {
        // A panic while holding this lock leaves the Option intact; recover it.
        self.requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Stops the writer after the updates already submitted, and closes the database.
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(handle) = self.writer.take() {
            // The writer only exits its loop; a panic in it has already failed its callers.
            let _ = handle.join();
        }
    }
}

impl Drop for RocksDbPersister {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl RocksDbPersister {
    /// Queues `update` for the writer now, and returns a future that resolves once it is durable
    /// (or refused). Updates are written in the order `submit` is called, so a driver can queue
    /// several consecutive updates before awaiting any: they then share fsyncs (group commit).
    /// [`Persister::persist`] is `submit(update).await`.
    pub fn submit(
        &self,
        update: &PersistUpdate,
    ) -> impl std::future::Future<Output = Result<(), RocksError>> + Send + 'static {
        let path = self.path.clone();
        let (reply, answer) = tokio::sync::oneshot::channel();
        let queued = match self.sender() {
            Some(sender) => sender
                .send(Request {
                    update: update.clone(),
                    reply,
                })
                .is_ok(),
            None => false,
        };
        async move {
            if !queued {
                return Err(RocksError::Closed { path });
            }
            answer.await.map_err(|_| RocksError::Closed { path })?
        }
    }
}

#[async_trait]
impl Persister for RocksDbPersister {
    type Error = RocksError;

    async fn load(&self) -> Result<DurableState, RocksError> {
        reader::load(&self.db, &self.path)
    }

    async fn persist(&self, update: &PersistUpdate) -> Result<(), RocksError> {
        self.submit(update).await
    }

    fn raft_state_size(&self) -> u64 {
        self.counters.raft_state_size.load(Ordering::Relaxed)
    }
}
