//! The writer thread: group commit of persist requests.
//!
//! It blocks for one request, then takes every other request already waiting (up to a bound),
//! checks each against the stored state in order, and writes the accepted ones as one batch with
//! one fsync. Each caller hears back only after that fsync. A failed write poisons the writer:
//! what reached the disk is unknown, so it accepts nothing more (the node must reopen the
//! directory, which reads back exactly what is durable).
//!
//! Every batch ends with the hard state record (term, vote and the index the log now ends at),
//! so the record and the log always change together (see [`layout`](super::layout)).
//!
//! WAL rotation: after every [`WAL_ROTATION_BYTES`] written, the writer flushes the small
//! `meta` column family, which makes RocksDB start a new WAL. A closed WAL's size is then
//! recorded in the MANIFEST and in its successor, so a closed WAL that is later cut or deleted
//! is refused at open. Only the live WAL's tail, at most about that many bytes of the latest
//! writes, can be lost without a trace (see `docs/faults.md`).

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};

use raft_core::PersistUpdate;
use rocksdb::{FlushOptions, WriteBatch, WriteOptions, DB};
use tokio::sync::oneshot;
use tracing::{debug, error, trace, warn};

use super::error::RocksError;
use super::layout::{self, SnapshotRecord, SNAPSHOT_CHUNK_BYTES};
use super::mirror::Mirror;
use super::reader;
use super::Counters;

/// At most this many updates go into one batch.
const MAX_GROUP: usize = 1024;

/// Bytes of write batches after which the writer starts a new WAL (see the module docs).
pub const WAL_ROTATION_BYTES: usize = 1 << 20;

/// One `persist` call waiting for the writer.
pub struct Request {
    /// The update to make durable.
    pub update: PersistUpdate,
    /// Where to report the outcome.
    pub reply: oneshot::Sender<Result<(), RocksError>>,
}

/// The writer's state.
pub struct Writer {
    path: PathBuf,
    db: Arc<DB>,
    mirror: Mirror,
    counters: Arc<Counters>,
    /// The first write failure, after which everything is refused.
    poisoned: Option<String>,
    /// Bytes written since the last WAL rotation.
    unrotated: usize,
}

impl Writer {
    /// A writer for the database at `path` whose stored state `mirror` describes.
    pub fn new(
        path: PathBuf,
        db: Arc<DB>,
        mirror: Mirror,
        counters: Arc<Counters>,
    ) -> Result<Self, RocksError> {
        // Fail at open, not at the first write, if the layout is incomplete.
        for name in layout::COLUMN_FAMILIES {
            reader::cf(&db, &path, name)?;
        }
        Ok(Self {
            path,
            db,
            mirror,
            counters,
            poisoned: None,
            unrotated: 0,
        })
    }

    /// Serves requests until every sender is gone.
    pub fn run(mut self, requests: mpsc::Receiver<Request>) {
        while let Ok(first) = requests.recv() {
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match requests.try_recv() {
                    Ok(request) => group.push(request),
                    Err(_) => break,
                }
            }
            self.commit(group);
        }
    }

    fn commit(&mut self, group: Vec<Request>) {
        if let Some(cause) = &self.poisoned {
            for request in group {
                let _ = request.reply.send(Err(RocksError::Poisoned {
                    path: self.path.clone(),
                    cause: cause.clone(),
                }));
            }
            return;
        }
        let mut batch = WriteBatch::default();
        let mut accepted = Vec::with_capacity(group.len());
        let mut entries = 0u64;
        for request in group {
            if let Err(refused) = self.mirror.check(&request.update) {
                // Nothing of a refused update is written; the caller hears why. A reply nobody
                // waits for any more (the caller gave up) needs no delivery.
                let _ = request.reply.send(Err(RocksError::Update(refused)));
                continue;
            }
            if let Err(e) = self.add_to_batch(&mut batch, &request.update) {
                let _ = request.reply.send(Err(e));
                continue;
            }
            self.mirror.apply(&request.update);
            entries += request.update.entries.len() as u64;
            accepted.push(request.reply);
        }
        if accepted.is_empty() {
            return;
        }
        match reader::cf(&self.db, &self.path, layout::CF_META) {
            Ok(meta) => batch.put_cf(
                meta,
                layout::KEY_HARD_STATE,
                layout::encode(&self.mirror.record()),
            ),
            // Checked to exist when the writer was made; RocksDB never drops it by itself.
            Err(e) => {
                for reply in accepted {
                    let _ = reply.send(Err(RocksError::Poisoned {
                        path: self.path.clone(),
                        cause: e.to_string(),
                    }));
                }
                self.poisoned = Some(e.to_string());
                return;
            }
        }
        let bytes = batch.size_in_bytes();
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        match self.db.write_opt(batch, &sync) {
            Ok(()) => {
                self.counters.syncs.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .updates
                    .fetch_add(accepted.len() as u64, Ordering::Relaxed);
                self.counters.entries.fetch_add(entries, Ordering::Relaxed);
                self.counters
                    .raft_state_size
                    .store(self.mirror.raft_state_size(), Ordering::Relaxed);
                trace!(updates = accepted.len(), entries, "group committed");
                for reply in accepted {
                    let _ = reply.send(Ok(()));
                }
                self.unrotated = self.unrotated.saturating_add(bytes);
                if self.unrotated >= WAL_ROTATION_BYTES {
                    self.rotate_wal();
                }
            }
            Err(e) => {
                error!(path = %self.path.display(), error = %e, "write failed; refusing further writes");
                let cause = e.to_string();
                self.poisoned = Some(cause.clone());
                for reply in accepted {
                    let _ = reply.send(Err(RocksError::Poisoned {
                        path: self.path.clone(),
                        cause: cause.clone(),
                    }));
                }
            }
        }
    }

    /// Starts a new WAL by flushing the `meta` column family (without waiting for the flush
    /// itself: RocksDB switches the WAL before it returns). A failure costs only detection, not
    /// durability, so it is logged and retried after the next write.
    fn rotate_wal(&mut self) {
        let mut options = FlushOptions::default();
        options.set_wait(false);
        let result = reader::cf(&self.db, &self.path, layout::CF_META).and_then(|meta| {
            self.db
                .flush_cf_opt(meta, &options)
                .map_err(|e| RocksError::from_db(&self.path, e))
        });
        match result {
            Ok(()) => {
                debug!(bytes = self.unrotated, "started a new WAL");
                self.unrotated = 0;
            }
            Err(e) => warn!(path = %self.path.display(), error = %e, "cannot start a new WAL"),
        }
    }

    /// Adds the writes of one update to the batch, in the order of its semantics: snapshot (and
    /// the compaction it implies), truncation, appends. (The hard state is in the record
    /// [`commit`](Self::commit) adds once per batch.)
    fn add_to_batch(
        &self,
        batch: &mut WriteBatch,
        update: &PersistUpdate,
    ) -> Result<(), RocksError> {
        let meta = reader::cf(&self.db, &self.path, layout::CF_META)?;
        let entries = reader::cf(&self.db, &self.path, layout::CF_ENTRIES)?;
        let chunks = reader::cf(&self.db, &self.path, layout::CF_SNAPSHOT)?;
        if let Some(snapshot) = &update.snapshot {
            let last = snapshot.meta.last_index;
            let pieces: Vec<&[u8]> = snapshot.data.chunks(SNAPSHOT_CHUNK_BYTES).collect();
            let record = SnapshotRecord {
                meta: snapshot.meta,
                len: snapshot.data.len() as u64,
                chunks: u32::try_from(pieces.len()).map_err(|_| RocksError::Corrupt {
                    path: self.path.clone(),
                    what: "snapshot too large to store".into(),
                })?,
            };
            // Older snapshots are dropped in the same batch that names the new one.
            batch.delete_range_cf(chunks, layout::chunk_key(0, 0), layout::chunk_key(last, 0));
            for (k, piece) in pieces.iter().enumerate() {
                // k < pieces.len(), which was just checked to fit in u32.
                batch.put_cf(chunks, layout::chunk_key(last, k as u32), piece);
            }
            batch.put_cf(meta, layout::KEY_SNAPSHOT, layout::encode(&record));
            batch.delete_range_cf(
                entries,
                layout::entry_key(0),
                layout::entry_key(last.saturating_add(1)),
            );
        }
        if let Some(cut) = update.truncate_from {
            batch.delete_range_cf(
                entries,
                &layout::entry_key(cut)[..],
                &layout::ENTRIES_END[..],
            );
        }
        for entry in &update.entries {
            batch.put_cf(
                entries,
                layout::entry_key(entry.index),
                layout::encode(entry),
            );
        }
        Ok(())
    }
}
