//! Opening and creating RocksDB data directories that cannot be used: each gets a typed error
//! naming the directory, never a panic, never an empty log over existing data, and `create`
//! never touches anything that is already there.
#![cfg(feature = "rocksdb")]

use std::path::{Path, PathBuf};

use raft_core::{DurableState, Entry, HardState, Payload, PersistUpdate, Persister, SnapshotMeta};
use raft_storage::rocks::layout::{self, HardStateRecord, IdentityRecord, SnapshotRecord};
use raft_storage::{RocksDbPersister, RocksError, StorageIdentity};

const ME: StorageIdentity = StorageIdentity {
    cluster_id: 1,
    node_id: 1,
};

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(future)
}

fn names_path(error: &RocksError, path: &std::path::Path) {
    let message = error.to_string();
    assert!(
        message.contains(&path.display().to_string()),
        "error does not name {}: {message}",
        path.display()
    );
}

fn entries(range: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
    range
        .map(|index| Entry {
            index,
            term: 1,
            payload: Payload::Command(vec![7; 10]),
        })
        .collect()
}

fn append(disk: &RocksDbPersister, range: std::ops::RangeInclusive<u64>) {
    let update = PersistUpdate {
        entries: entries(range),
        ..PersistUpdate::default()
    };
    block_on(disk.persist(&update)).unwrap();
}

/// A directory holding one node's data with three entries.
fn populated(dir: &tempfile::TempDir) -> PathBuf {
    let path = dir.path().join("node");
    let disk = RocksDbPersister::create(&path, ME).unwrap();
    append(&disk, 1..=3);
    disk.close();
    path
}

/// The database at `path` opened directly, bypassing the persister's checks, to damage it.
fn raw(path: &Path) -> rocksdb::DB {
    rocksdb::DB::open_cf(
        &rocksdb::Options::default(),
        path,
        ["meta", "entries", "snapshot"],
    )
    .unwrap()
}

/// Writes `value` under `key` in column family `cf` of the database at `path`.
fn put_raw(path: &Path, cf: &str, key: &[u8], value: &[u8]) {
    let db = raw(path);
    db.put_cf(db.cf_handle(cf).unwrap(), key, value).unwrap();
}

/// Names and sizes of everything in `dir`, to check that nothing was touched.
fn listing(dir: &Path) -> Vec<(String, u64)> {
    let mut found: Vec<(String, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            (name, entry.metadata().unwrap().len())
        })
        .collect();
    found.sort();
    found
}

fn names(dir: &Path) -> Vec<String> {
    listing(dir).into_iter().map(|(name, _)| name).collect()
}

fn open_error(path: &Path) -> RocksError {
    let error = RocksDbPersister::open(path, ME).unwrap_err();
    names_path(&error, path);
    error
}

#[test]
fn missing_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nothing-here");
    let error = RocksDbPersister::open(&path, ME).unwrap_err();
    assert!(matches!(error, RocksError::Missing { .. }), "{error}");
    names_path(&error, &path);
    assert!(!path.exists(), "open must not create a directory");
}

#[test]
fn a_file_instead_of_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("file");
    std::fs::write(&path, b"hello").unwrap();
    let error = RocksDbPersister::open(&path, ME).unwrap_err();
    assert!(matches!(error, RocksError::NotADirectory { .. }), "{error}");
    let error = RocksDbPersister::create(&path, ME).unwrap_err();
    assert!(matches!(error, RocksError::NotADirectory { .. }), "{error}");
}

#[test]
fn a_directory_without_raft_data() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"not a database").unwrap();
    let error = RocksDbPersister::open(dir.path(), ME).unwrap_err();
    assert!(matches!(error, RocksError::NotADataDir { .. }), "{error}");
    names_path(&error, dir.path());
}

#[test]
fn create_refuses_existing_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = populated(&dir);
    let error = RocksDbPersister::create(&path, ME).unwrap_err();
    assert!(
        matches!(error, RocksError::AlreadyInitialized { .. }),
        "{error}"
    );
    // The data is intact.
    let disk = RocksDbPersister::open(&path, ME).unwrap();
    assert_eq!(block_on(disk.load()).unwrap().last_index(), 3);
}

#[test]
fn locked_by_another_opener() {
    let dir = tempfile::tempdir().unwrap();
    let path = populated(&dir);
    let first = RocksDbPersister::open(&path, ME).unwrap();
    let error = RocksDbPersister::open(&path, ME).unwrap_err();
    assert!(matches!(error, RocksError::Locked { .. }), "{error}");
    names_path(&error, &path);
    drop(first);
    assert!(
        RocksDbPersister::open(&path, ME).is_ok(),
        "lock released on drop"
    );
}

#[test]
fn another_node_or_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let path = populated(&dir);
    for other in [
        StorageIdentity {
            cluster_id: 1,
            node_id: 2,
        },
        StorageIdentity {
            cluster_id: 9,
            node_id: 1,
        },
    ] {
        let error = RocksDbPersister::open(&path, other).unwrap_err();
        assert!(
            matches!(error, RocksError::WrongIdentity { found, .. } if found == ME),
            "{error}"
        );
        names_path(&error, &path);
    }
}

/// Damage written through RocksDB itself: undecodable records and a hole in the log.
#[test]
fn corrupt_records_and_a_hole_in_the_log() {
    /// Column family, key, and the value to write there (`None`: delete the key).
    type Damage<'a> = (&'a str, &'a [u8], Option<&'a [u8]>);
    let damages: [Damage; 3] = [
        (
            "meta",
            b"hard_state",
            Some(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"),
        ),
        ("entries", &2u64.to_be_bytes(), None),
        ("entries", &3u64.to_be_bytes(), Some(b"garbage")),
    ];
    for (cf, key, value) in damages {
        let dir = tempfile::tempdir().unwrap();
        let path = populated(&dir);
        {
            let db = raw(&path);
            let handle = db.cf_handle(cf).unwrap();
            match value {
                Some(value) => db.put_cf(handle, key, value).unwrap(),
                None => db.delete_cf(handle, key).unwrap(),
            }
        }
        let error = RocksDbPersister::open(&path, ME).unwrap_err();
        assert!(
            matches!(error, RocksError::Corrupt { .. }),
            "{cf}/{key:?}: {error}"
        );
        names_path(&error, &path);
    }
}

/// Damage to RocksDB's own files: a truncated manifest pointer, a garbled manifest.
#[test]
fn damaged_database_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = populated(&dir);
    std::fs::write(path.join("CURRENT"), b"MANIFEST-999999\n").unwrap();
    let error = RocksDbPersister::open(&path, ME).unwrap_err();
    names_path(&error, &path);

    let dir = tempfile::tempdir().unwrap();
    let path = populated(&dir);
    let manifest = std::fs::read_dir(&path)
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().starts_with("MANIFEST-"))
        .unwrap()
        .path();
    std::fs::write(&manifest, vec![0xAB; 4096]).unwrap();
    let error = RocksDbPersister::open(&path, ME).unwrap_err();
    names_path(&error, &path);
    assert!(
        matches!(error, RocksError::Corrupt { .. } | RocksError::Db { .. }),
        "{error}"
    );
}

/// `create` over anything that is not absent or empty refuses, and leaves it exactly as it was.
#[test]
fn create_refuses_a_directory_holding_anything_and_touches_nothing() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("node");
    std::fs::create_dir(&path).unwrap();
    std::fs::write(path.join("notes.txt"), b"not a database").unwrap();
    let before = listing(&path);
    let error = RocksDbPersister::create(&path, ME).unwrap_err();
    assert!(
        matches!(&error, RocksError::NotEmpty { found, .. } if found == "notes.txt"),
        "{error}"
    );
    names_path(&error, &path);
    assert_eq!(listing(&path), before);
    assert_eq!(names(root.path()), ["node"], "nothing left beside it");
}

/// The reported data loss: a data directory whose `CURRENT` file was lost. `create` used to
/// succeed over it (RocksDB deleted the SST files of 200 entries), or, with a WAL present, fail
/// after writing a new MANIFEST and CURRENT, so that neither `open` nor `create` worked after.
#[test]
fn create_over_a_database_without_its_current_file_deletes_nothing() {
    for entries_in_the_wal in [false, true] {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("node");
        let disk = RocksDbPersister::create(&path, ME).unwrap();
        append(&disk, 1..=100);
        // Reopening flushes the WAL into SST files.
        let disk = reopen(disk);
        append(&disk, 101..=200);
        let disk = reopen(disk);
        if entries_in_the_wal {
            disk.close();
        } else {
            drop(reopen(disk));
        }
        let current = std::fs::read(path.join("CURRENT")).unwrap();
        std::fs::remove_file(path.join("CURRENT")).unwrap();
        let before = listing(&path);

        let error = RocksDbPersister::create(&path, ME).unwrap_err();
        assert!(matches!(error, RocksError::NotEmpty { .. }), "{error}");
        names_path(&error, &path);
        assert_eq!(listing(&path), before, "create changed the directory");
        assert!(matches!(open_error(&path), RocksError::NotADataDir { .. }));

        // Nothing was lost: with its CURRENT file back, the directory opens with every entry.
        std::fs::write(path.join("CURRENT"), current).unwrap();
        let disk = RocksDbPersister::open(&path, ME).unwrap();
        assert_eq!(block_on(disk.load()).unwrap().last_index(), 200);
    }
}

fn reopen(disk: RocksDbPersister) -> RocksDbPersister {
    let path = disk.path().to_path_buf();
    disk.close();
    RocksDbPersister::open(path, ME).unwrap()
}

#[test]
fn create_in_an_empty_directory_or_under_missing_parents() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("empty");
    std::fs::create_dir(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o750)).unwrap();
    let disk = RocksDbPersister::create(&path, ME).unwrap();
    append(&disk, 1..=3);
    disk.close();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o777,
        0o750,
        "the empty directory's permissions are kept"
    );
    assert_eq!(names(root.path()), ["empty"], "nothing left beside it");
    assert_eq!(
        block_on(RocksDbPersister::open(&path, ME).unwrap().load())
            .unwrap()
            .last_index(),
        3
    );

    let deep = root.path().join("a").join("b").join("node");
    drop(RocksDbPersister::create(&deep, ME).unwrap());
    assert!(RocksDbPersister::open(&deep, ME).is_ok());
}

#[test]
fn another_applications_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node");
    {
        let db = rocksdb::DB::open_default(&path).unwrap();
        db.put(b"key", b"value").unwrap();
    }
    let error = open_error(&path);
    assert!(matches!(error, RocksError::NotADataDir { .. }), "{error}");
    let error = RocksDbPersister::create(&path, ME).unwrap_err();
    assert!(
        matches!(error, RocksError::AlreadyInitialized { .. }),
        "{error}"
    );
}

/// `Locked` used to be any IO error whose message contained "lock", and RocksDB's messages
/// contain the path: under a directory named "blocks", every IO error looked like a lock held by
/// someone else. (Here the IO error is a `LOCK` file that became a directory.)
#[test]
fn an_io_error_is_not_locked_whatever_the_path() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("blocks")).unwrap();
    let path = populated_at(&root.path().join("blocks").join("node"));
    std::fs::remove_file(path.join("LOCK")).unwrap();
    std::fs::create_dir(path.join("LOCK")).unwrap();
    let error = open_error(&path);
    assert!(matches!(error, RocksError::Db { .. }), "{error}");
}

fn populated_at(path: &Path) -> PathBuf {
    let disk = RocksDbPersister::create(path, ME).unwrap();
    append(&disk, 1..=3);
    disk.close();
    path.to_path_buf()
}

/// Records that pass RocksDB's checksums but hold hostile values. A snapshot record claiming
/// 2^40 bytes aborted the process (the loader allocated it up front); one at index `u64::MAX`
/// panicked on an overflow.
#[test]
fn hostile_snapshot_records_are_corrupt_not_a_crash() {
    let meta = |last_index| SnapshotMeta {
        last_index,
        last_term: 1,
    };
    let cases: [(SnapshotRecord, &[(u32, usize)]); 6] = [
        (
            SnapshotRecord {
                meta: meta(2),
                len: 1 << 40,
                chunks: 1,
            },
            &[(0, 10)],
        ),
        (
            SnapshotRecord {
                meta: meta(2),
                len: 1 << 40,
                chunks: 1 << 20,
            },
            &[(0, 1 << 20)],
        ),
        (
            SnapshotRecord {
                meta: meta(u64::MAX),
                len: 0,
                chunks: 0,
            },
            &[],
        ),
        (
            SnapshotRecord {
                meta: meta(u64::MAX),
                len: 10,
                chunks: 1,
            },
            &[(0, 10)],
        ),
        // A chunk longer than its record says.
        (
            SnapshotRecord {
                meta: meta(2),
                len: 10,
                chunks: 1,
            },
            &[(0, 11)],
        ),
        (
            SnapshotRecord {
                meta: meta(0),
                len: 0,
                chunks: 0,
            },
            &[],
        ),
    ];
    for (record, chunks) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = populated(&dir);
        {
            let db = raw(&path);
            let meta_cf = db.cf_handle("meta").unwrap();
            db.put_cf(meta_cf, layout::KEY_SNAPSHOT, layout::encode(&record))
                .unwrap();
            let chunk_cf = db.cf_handle("snapshot").unwrap();
            for &(chunk, len) in chunks {
                let key = layout::chunk_key(record.meta.last_index, chunk);
                db.put_cf(chunk_cf, key, vec![1u8; len]).unwrap();
            }
        }
        let error = open_error(&path);
        assert!(
            matches!(error, RocksError::Corrupt { .. }),
            "{record:?}: {error}"
        );
    }
}

/// The hard state record is written with every change to the log and says where the log ends.
/// A log that ends earlier lost acknowledged entries; one that ends later has a hard state
/// that was rolled back (a vote could be forgotten). Both used to open silently.
#[test]
fn a_log_that_does_not_end_where_its_hard_state_says_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = populated(&dir);
    {
        let db = raw(&path);
        db.delete_cf(db.cf_handle("entries").unwrap(), layout::entry_key(3))
            .unwrap();
    }
    let error = open_error(&path);
    assert!(
        matches!(&error, RocksError::Corrupt { what, .. } if what.contains("lost")),
        "{error}"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = populated(&dir);
    let extra = &entries(4..=4)[0];
    put_raw(
        &path,
        "entries",
        &layout::entry_key(4),
        &layout::encode(extra),
    );
    let error = open_error(&path);
    assert!(
        matches!(&error, RocksError::Corrupt { what, .. } if what.contains("rolled back")),
        "{error}"
    );

    // A record that agrees with the log opens.
    let dir = tempfile::tempdir().unwrap();
    let path = populated(&dir);
    let record = HardStateRecord {
        hard_state: HardState {
            term: 9,
            voted_for: Some(2),
        },
        last_index: 3,
    };
    put_raw(
        &path,
        "meta",
        layout::KEY_HARD_STATE,
        &layout::encode(&record),
    );
    let loaded: DurableState = block_on(RocksDbPersister::open(&path, ME).unwrap().load()).unwrap();
    assert_eq!(loaded.hard_state, record.hard_state);
}

/// Format 1 stored the hard state without the index the log ends at: refused, not misread.
#[test]
fn a_directory_of_the_previous_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = populated(&dir);
    let old = IdentityRecord {
        format: 1,
        identity: ME,
    };
    put_raw(&path, "meta", layout::KEY_IDENTITY, &layout::encode(&old));
    let error = open_error(&path);
    assert!(
        matches!(
            error,
            RocksError::UnsupportedFormat {
                found: 1,
                supported: 2,
                ..
            }
        ),
        "{error}"
    );
}

/// Damage to the SST files (where entries live once flushed): a flipped byte fails the block's
/// checksum when `open` reads the log; a deleted file is missing from what the MANIFEST lists.
#[test]
fn a_damaged_or_missing_sst_file_is_refused() {
    // Incompressible payloads, so that entry 50's bytes can be found in the file.
    let payload = |index: u64| {
        let mut rng = raft_core::rng::SplitMix64::new(index);
        (0..100).map(|_| rng.next_u64() as u8).collect::<Vec<u8>>()
    };
    for delete in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node");
        let disk = RocksDbPersister::create(&path, ME).unwrap();
        let update = PersistUpdate {
            entries: (1..=100)
                .map(|index| Entry {
                    index,
                    term: 1,
                    payload: Payload::Command(payload(index)),
                })
                .collect(),
            ..PersistUpdate::default()
        };
        block_on(disk.persist(&update)).unwrap();
        // Reopening flushes the WAL into an SST file.
        disk.close();
        RocksDbPersister::open(&path, ME).unwrap().close();
        let sst = std::fs::read_dir(&path)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|file| file.extension().is_some_and(|ext| ext == "sst"))
            .max_by_key(|file| std::fs::metadata(file).unwrap().len())
            .expect("an SST file");
        if delete {
            std::fs::remove_file(&sst).unwrap();
        } else {
            let mut data = std::fs::read(&sst).unwrap();
            let needle = payload(50);
            let at = data
                .windows(needle.len())
                .position(|window| window == needle.as_slice())
                .expect("entry 50 in the SST file");
            data[at + 50] ^= 0x01;
            std::fs::write(&sst, data).unwrap();
        }
        let error = open_error(&path);
        assert!(matches!(error, RocksError::Corrupt { .. }), "{error}");
    }
}
