//! Reading the stored state back, checking it as it goes: a directory that does not hold a
//! consistent state is reported corrupt, never half-loaded. Every value read passes through
//! [`decode`](super::decode) before it is used to size an allocation or compute an index.

use std::path::Path;

use raft_core::{DurableState, Entry, Snapshot};
use rocksdb::{ColumnFamily, Direction, IteratorMode, DB};

use super::decode;
use super::error::RocksError;
use super::layout::{self, IdentityRecord, SnapshotRecord};

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
    decode::identity(&bytes).map_err(|what| corrupt(path, what))
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
    let record = match view
        .get_cf(meta, layout::KEY_HARD_STATE)
        .map_err(db_error(path))?
    {
        Some(bytes) => decode::hard_state(&bytes).map_err(|what| corrupt(path, what))?,
        None => return Err(corrupt(path, "hard state record missing")),
    };
    let snapshot = match view
        .get_cf(meta, layout::KEY_SNAPSHOT)
        .map_err(db_error(path))?
    {
        Some(bytes) => {
            let stored = decode::snapshot_record(&bytes).map_err(|what| corrupt(path, what))?;
            Some(load_snapshot(db, &view, path, &stored)?)
        }
        None => None,
    };
    let snapshot_index = snapshot.as_ref().map_or(0, |s| s.meta.last_index);
    let entries = match snapshot_index.checked_add(1) {
        Some(first) => load_entries(db, &view, path, first)?,
        // A snapshot up to the last possible index leaves no room for entries.
        None => Vec::new(),
    };
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

/// The snapshot `record` (checked by [`decode::snapshot_record`]) describes. The bytes are
/// gathered chunk by chunk, each checked to have exactly its expected length before it is kept,
/// so memory grows only with what is actually stored, whatever size the record claims.
fn load_snapshot(
    db: &DB,
    view: &rocksdb::Snapshot<'_>,
    path: &Path,
    record: &SnapshotRecord,
) -> Result<Snapshot, RocksError> {
    let chunks = cf(db, path, layout::CF_SNAPSHOT)?;
    let last_index = record.meta.last_index;
    let mut data = Vec::new();
    for chunk in 0..record.chunks {
        let key = layout::chunk_key(last_index, chunk);
        let bytes = view
            .get_cf(chunks, key)
            .map_err(db_error(path))?
            .ok_or_else(|| {
                corrupt(
                    path,
                    format!("chunk {chunk} of the snapshot up to {last_index} missing"),
                )
            })?;
        // `chunk` is one of the record's chunks, so it has a length.
        let expected = decode::chunk_len(record, chunk).unwrap_or(0);
        if bytes.len() != expected {
            return Err(corrupt(
                path,
                format!(
                    "chunk {chunk} of the snapshot up to {last_index} has {} bytes, its record \
                     says {expected}",
                    bytes.len()
                ),
            ));
        }
        data.extend_from_slice(&bytes);
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
        let entry = decode::entry(&key, &value).map_err(|what| corrupt(path, what))?;
        let expected = match entries.last() {
            None => first,
            Some(previous) => previous
                .index
                .checked_add(1)
                .ok_or_else(|| corrupt(path, "an entry is stored after the last possible index"))?,
        };
        if entry.index != expected {
            return Err(corrupt(
                path,
                format!(
                    "log has a gap: entry {} stored where {expected} was expected",
                    entry.index
                ),
            ));
        }
        entries.push(entry);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    //! The loader fed hostile records through a real database: a valid stored state, then a few
    //! of its records replaced by arbitrary bytes or by well-formed records with hostile values
    //! (sizes up to 2^40, indexes up to `u64::MAX`), deleted, or joined by extra ones. An
    //! untouched state loads exactly; a damaged one loads as a consistent state or is
    //! `Corrupt`, never a panic, and never an allocation a record merely claims.

    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    use raft_core::{HardState, Payload, SnapshotMeta};
    use rocksdb::WriteBatch;

    use super::*;
    use crate::rocks::layout::HardStateRecord;
    use crate::rocks::options;

    /// A stored record: column family, key, value.
    type Record = (&'static str, Vec<u8>, Vec<u8>);

    /// A valid state and the records that store it.
    fn valid_state() -> impl Strategy<Value = (DurableState, Vec<Record>)> {
        (
            any::<u64>(),
            any::<Option<u64>>(),
            proptest::option::of((
                prop_oneof![1u64..4, Just(u64::MAX - 3), Just(u64::MAX)],
                0usize..4,
            )),
            0u64..5,
        )
            .prop_map(|(term, voted_for, snapshot, count)| {
                let hard_state = HardState { term, voted_for };
                let snapshot = snapshot.map(|(last_index, len)| Snapshot {
                    meta: SnapshotMeta {
                        last_index,
                        last_term: 1,
                    },
                    data: vec![7; len],
                });
                let snapshot_index = snapshot.as_ref().map_or(0, |s| s.meta.last_index);
                let entries: Vec<Entry> = (1..=count)
                    .map_while(|k| snapshot_index.checked_add(k))
                    .map(|index| Entry {
                        index,
                        term: 1,
                        payload: Payload::Command(vec![index as u8]),
                    })
                    .collect();
                let state = DurableState {
                    hard_state,
                    snapshot,
                    entries,
                };
                let mut records: Vec<Record> = vec![(
                    layout::CF_META,
                    layout::KEY_HARD_STATE.to_vec(),
                    layout::encode(&HardStateRecord {
                        hard_state,
                        last_index: state.last_index(),
                    }),
                )];
                if let Some(snapshot) = &state.snapshot {
                    let len = snapshot.data.len() as u64;
                    let record = SnapshotRecord {
                        meta: snapshot.meta,
                        len,
                        chunks: SnapshotRecord::chunks_for(len) as u32,
                    };
                    records.push((
                        layout::CF_META,
                        layout::KEY_SNAPSHOT.to_vec(),
                        layout::encode(&record),
                    ));
                    if !snapshot.data.is_empty() {
                        let key = layout::chunk_key(snapshot.meta.last_index, 0);
                        records.push((layout::CF_SNAPSHOT, key.to_vec(), snapshot.data.clone()));
                    }
                }
                for entry in &state.entries {
                    let key = layout::entry_key(entry.index).to_vec();
                    records.push((layout::CF_ENTRIES, key, layout::encode(entry)));
                }
                (state, records)
            })
    }

    fn index() -> impl Strategy<Value = u64> {
        prop_oneof![0u64..8, Just(u64::MAX - 1), Just(u64::MAX), any::<u64>()]
    }

    fn bytes() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..24)
    }

    /// A snapshot record with any size, and a chunk count that is small, arbitrary, or the one
    /// that size takes (so that hostile sizes also come with a consistent count).
    fn hostile_snapshot_record() -> impl Strategy<Value = Vec<u8>> {
        (
            index(),
            prop_oneof![0u64..4, Just(1 << 40), any::<u64>()],
            0u8..3,
            any::<u32>(),
        )
            .prop_map(|(last_index, len, how, n)| {
                layout::encode(&SnapshotRecord {
                    meta: SnapshotMeta {
                        last_index,
                        last_term: 1,
                    },
                    len,
                    chunks: match how {
                        0 => n % 3,
                        1 => n,
                        _ => u32::try_from(SnapshotRecord::chunks_for(len)).unwrap_or(u32::MAX),
                    },
                })
            })
    }

    /// One change to the stored records.
    #[derive(Clone, Debug)]
    enum Damage {
        /// Replace the value of the `n`-th record (modulo their number).
        Replace(usize, Vec<u8>),
        /// Delete the `n`-th record.
        Delete(usize),
        /// Store this hard state record instead.
        HardState(Vec<u8>),
        /// Store this snapshot record instead.
        Snapshot(Vec<u8>),
        /// Add an entry under `key` (an entry key for an index, or arbitrary bytes).
        Entry(Vec<u8>, Vec<u8>),
        /// Add a chunk of the snapshot ending at an index.
        Chunk(u64, u32, Vec<u8>),
    }

    fn damage() -> impl Strategy<Value = Damage> {
        let entry_value = (index(), bytes()).prop_map(|(index, payload)| {
            layout::encode(&Entry {
                index,
                term: 1,
                payload: Payload::Command(payload),
            })
        });
        prop_oneof![
            (any::<usize>(), bytes()).prop_map(|(n, b)| Damage::Replace(n, b)),
            any::<usize>().prop_map(Damage::Delete),
            prop_oneof![
                bytes(),
                (any::<u64>(), index()).prop_map(|(term, last_index)| layout::encode(
                    &HardStateRecord {
                        hard_state: HardState {
                            term,
                            voted_for: None
                        },
                        last_index,
                    }
                )),
            ]
            .prop_map(Damage::HardState),
            prop_oneof![bytes(), hostile_snapshot_record()].prop_map(Damage::Snapshot),
            (
                prop_oneof![index().prop_map(|i| layout::entry_key(i).to_vec()), bytes()],
                prop_oneof![bytes(), entry_value],
            )
                .prop_map(|(k, v)| Damage::Entry(k, v)),
            (index(), 0u32..3, bytes()).prop_map(|(i, c, b)| Damage::Chunk(i, c, b)),
        ]
    }

    fn apply(records: &mut Vec<Record>, damage: &Damage) {
        match damage.clone() {
            Damage::Replace(n, value) => {
                let count = records.len();
                records[n % count].2 = value;
            }
            Damage::Delete(n) => {
                let count = records.len();
                records.remove(n % count);
            }
            Damage::HardState(value) => {
                records.retain(|r| !(r.0 == layout::CF_META && r.1 == layout::KEY_HARD_STATE));
                records.push((layout::CF_META, layout::KEY_HARD_STATE.to_vec(), value));
            }
            Damage::Snapshot(value) => {
                records.retain(|r| !(r.0 == layout::CF_META && r.1 == layout::KEY_SNAPSHOT));
                records.push((layout::CF_META, layout::KEY_SNAPSHOT.to_vec(), value));
            }
            Damage::Entry(key, value) => records.push((layout::CF_ENTRIES, key, value)),
            Damage::Chunk(index, chunk, value) => {
                let key = layout::chunk_key(index, chunk).to_vec();
                records.push((layout::CF_SNAPSHOT, key, value));
            }
        }
    }

    /// One database for every case; each case first empties it.
    #[test]
    fn hostile_records_load_as_a_consistent_state_or_corrupt() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path();
        let options = options::db(true).expect("options");
        let db = DB::open_cf_descriptors(&options, path, options::descriptors()).expect("db");
        let config = Config {
            cases: 2048,
            failure_persistence: None,
            ..Config::default()
        };
        let strategy = (valid_state(), proptest::collection::vec(damage(), 0..3));
        let result = TestRunner::new(config).run(&strategy, |((state, mut records), damages)| {
            for damage in &damages {
                if !records.is_empty() {
                    apply(&mut records, damage);
                }
            }
            let mut batch = WriteBatch::default();
            for name in layout::COLUMN_FAMILIES {
                // Every key used here is shorter than 16 bytes, so sorts before this one.
                let column = cf(&db, path, name).unwrap();
                batch.delete_range_cf(column, &[][..], &[0xFFu8; 16][..]);
            }
            for (name, key, value) in &records {
                batch.put_cf(cf(&db, path, name).unwrap(), key, value);
            }
            db.write(batch).unwrap();

            match load(&db, path) {
                Ok(loaded) if damages.is_empty() => prop_assert_eq!(loaded, state),
                Ok(loaded) => {
                    // Whatever loads is a state the writer could have produced, and is what
                    // the stored records say.
                    let stored = |key: &[u8]| {
                        records
                            .iter()
                            .find(|r| r.0 == layout::CF_META && r.1 == key)
                            .map(|r| r.2.clone())
                    };
                    let hard_state = stored(layout::KEY_HARD_STATE).map(|b| decode::hard_state(&b));
                    let Some(Ok(hard_state)) = hard_state else {
                        return Err(TestCaseError::fail("loaded without a hard state record"));
                    };
                    prop_assert_eq!(hard_state.hard_state, loaded.hard_state);
                    prop_assert_eq!(hard_state.last_index, loaded.last_index());
                    let first = loaded.snapshot_index().checked_add(1);
                    for (entry, k) in loaded.entries.iter().zip(0u64..) {
                        prop_assert_eq!(Some(entry.index), first.and_then(|f| f.checked_add(k)));
                    }
                    let record = stored(layout::KEY_SNAPSHOT).map(|b| decode::snapshot_record(&b));
                    match (&loaded.snapshot, record) {
                        (None, None) => {}
                        (Some(snapshot), Some(Ok(record))) => {
                            prop_assert!(snapshot.meta.last_index > 0);
                            prop_assert_eq!(snapshot.meta, record.meta);
                            prop_assert_eq!(snapshot.data.len() as u64, record.len);
                        }
                        (loaded, stored) => prop_assert!(
                            false,
                            "loaded snapshot {:?} from record {:?}",
                            loaded.as_ref().map(|s| s.meta),
                            stored
                        ),
                    }
                }
                Err(RocksError::Corrupt { .. }) if !damages.is_empty() => {}
                Err(other) => prop_assert!(false, "{} for {:?}", other, damages),
            }
            Ok(())
        });
        if let Err(failure) = result {
            panic!("{failure}");
        }
    }
}
