//! Reading the stored state back, checking it as it goes: a directory that does not hold a
//! consistent state is reported corrupt, never half-loaded.

use std::path::Path;

use raft_core::{DurableState, Entry, Snapshot};
use rocksdb::{ColumnFamily, Direction, IteratorMode, DB};

use super::error::RocksError;
use super::layout::{self, HardStateRecord, IdentityRecord, SnapshotRecord};

/// The column family `name`, which every data directory has.
pub fn cf<'a>(db: &'a DB, path: &Path, name: &str) -> Result<&'a ColumnFamily, RocksError> {
    db.cf_handle(name).ok_or_else(|| RocksError::NotADataDir {
        path: path.to_path_buf(),
        reason: format!("column family {name:?} missing"),
    })
}

fn corrupt(path: &Path, what: impl Into<String>) -> RocksError {
    RocksError::Corrupt {
        path: path.to_path_buf(),
        what: what.into(),
    }
}

fn db_error(path: &Path) -> impl Fn(rocksdb::Error) -> RocksError + '_ {
    move |source| RocksError::from_db(path, source)
}

/// The identity record.
pub fn identity(db: &DB, path: &Path) -> Result<IdentityRecord, RocksError> {
    let meta = cf(db, path, layout::CF_META)?;
    let bytes = db
        .get_cf(meta, layout::KEY_IDENTITY)
        .map_err(db_error(path))?
        .ok_or_else(|| RocksError::NotADataDir {
            path: path.to_path_buf(),
            reason: "no identity record".into(),
        })?;
    layout::decode(&bytes).ok_or_else(|| corrupt(path, "undecodable identity record"))
}

/// The whole durable state, checked: a hard state record, a snapshot whose chunks are all
/// there, entries consecutive right after it, and a log that ends exactly where the hard state
/// record (written in the same batch as the last change to the log) says it does.
///
/// Everything is read from one RocksDB snapshot, so a write committed meanwhile is either
/// entirely seen or not at all.
pub fn load(db: &DB, path: &Path) -> Result<DurableState, RocksError> {
    let view = db.snapshot();
    let meta = cf(db, path, layout::CF_META)?;
    let record: HardStateRecord = match view
        .get_cf(meta, layout::KEY_HARD_STATE)
        .map_err(db_error(path))?
    {
        Some(bytes) => {
            layout::decode(&bytes).ok_or_else(|| corrupt(path, "undecodable hard state record"))?
        }
        None => return Err(corrupt(path, "hard state record missing")),
    };
    let snapshot = match view
        .get_cf(meta, layout::KEY_SNAPSHOT)
        .map_err(db_error(path))?
    {
        Some(bytes) => {
            let record: SnapshotRecord = layout::decode(&bytes)
                .ok_or_else(|| corrupt(path, "undecodable snapshot record"))?;
            Some(load_snapshot(db, &view, path, &record)?)
        }
        None => None,
    };
    let snapshot_index = snapshot.as_ref().map_or(0, |s| s.meta.last_index);
    let entries = load_entries(db, &view, path, snapshot_index + 1)?;
    let last_index = entries.last().map_or(snapshot_index, |e| e.index);
    if last_index != record.last_index {
        return Err(corrupt(
            path,
            format!(
                "the log ends at index {last_index} but the hard state record written with its \
                 last change says {}: {}",
                record.last_index,
                if last_index < record.last_index {
                    "acknowledged entries were lost"
                } else {
                    "the hard state was rolled back"
                }
            ),
        ));
    }
    Ok(DurableState {
        hard_state: record.hard_state,
        snapshot,
        entries,
    })
}

fn load_snapshot(
    db: &DB,
    view: &rocksdb::Snapshot<'_>,
    path: &Path,
    record: &SnapshotRecord,
) -> Result<Snapshot, RocksError> {
    let chunks = cf(db, path, layout::CF_SNAPSHOT)?;
    let len = usize::try_from(record.len).map_err(|_| corrupt(path, "snapshot too large"))?;
    let mut data = Vec::with_capacity(len);
    for chunk in 0..record.chunks {
        let key = layout::chunk_key(record.meta.last_index, chunk);
        let bytes = view
            .get_cf(chunks, key)
            .map_err(db_error(path))?
            .ok_or_else(|| {
                corrupt(
                    path,
                    format!(
                        "chunk {chunk} of the snapshot up to {} missing",
                        record.meta.last_index
                    ),
                )
            })?;
        data.extend_from_slice(&bytes);
    }
    if data.len() != len {
        return Err(corrupt(
            path,
            format!(
                "snapshot up to {} has {} bytes, its record says {len}",
                record.meta.last_index,
                data.len()
            ),
        ));
    }
    Ok(Snapshot {
        meta: record.meta,
        data,
    })
}

/// The stored entries from `first` on, which must be consecutive. (Raft's own checks of the
/// log, such as terms never decreasing, are the node's, at restore.)
fn load_entries(
    db: &DB,
    view: &rocksdb::Snapshot<'_>,
    path: &Path,
    first: u64,
) -> Result<Vec<Entry>, RocksError> {
    let column = cf(db, path, layout::CF_ENTRIES)?;
    let start = layout::entry_key(first);
    let mut entries: Vec<Entry> = Vec::new();
    for item in view.iterator_cf(column, IteratorMode::From(&start, Direction::Forward)) {
        let (key, value) = item.map_err(db_error(path))?;
        let index = layout::decode_entry_key(&key)
            .ok_or_else(|| corrupt(path, format!("malformed entry key {key:?}")))?;
        let entry: Entry = layout::decode(&value)
            .ok_or_else(|| corrupt(path, format!("undecodable entry {index}")))?;
        if entry.index != index {
            return Err(corrupt(
                path,
                format!(
                    "entry stored under index {index} says it is {}",
                    entry.index
                ),
            ));
        }
        let expected = entries.last().map_or(first, |e| e.index + 1);
        if index != expected {
            return Err(corrupt(
                path,
                format!("log has a gap: entry {index} stored where {expected} was expected"),
            ));
        }
        entries.push(entry);
    }
    Ok(entries)
}
