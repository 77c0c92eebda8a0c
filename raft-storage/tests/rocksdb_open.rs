//! Opening RocksDB data directories that cannot be used: each gets a typed error naming the
//! directory, never a panic, and never an empty log over existing data.
#![cfg(feature = "rocksdb")]

use raft_core::{Entry, Payload, PersistUpdate, Persister};
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

/// A directory holding one node's data with three entries.
fn populated(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let path = dir.path().join("node");
    let disk = RocksDbPersister::create(&path, ME).unwrap();
    let update = PersistUpdate {
        entries: (1..=3)
            .map(|index| Entry {
                index,
                term: 1,
                payload: Payload::Command(vec![7; 10]),
            })
            .collect(),
        ..PersistUpdate::default()
    };
    block_on(disk.persist(&update)).unwrap();
    disk.close();
    path
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
            let names = ["meta", "entries", "snapshot"];
            let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), &path, names).unwrap();
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

/// `Locked` used to be any IO error whose message contained "lock", and RocksDB's messages
/// contain the path: under a directory named "blocks", every IO error looked like a lock held by
/// someone else. (Here the IO error is a `LOCK` file that became a directory.)
#[test]
fn an_io_error_is_not_locked_whatever_the_path() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("blocks")).unwrap();
    let path = root.path().join("blocks").join("node");
    drop(RocksDbPersister::create(&path, ME).unwrap());
    std::fs::remove_file(path.join("LOCK")).unwrap();
    std::fs::create_dir(path.join("LOCK")).unwrap();
    let error = RocksDbPersister::open(&path, ME).unwrap_err();
    names_path(&error, &path);
    assert!(matches!(error, RocksError::Db { .. }), "{error}");
}

#[test]
fn another_applications_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node");
    {
        let db = rocksdb::DB::open_default(&path).unwrap();
        db.put(b"key", b"value").unwrap();
    }
    let error = RocksDbPersister::open(&path, ME).unwrap_err();
    names_path(&error, &path);
    assert!(matches!(error, RocksError::NotADataDir { .. }), "{error}");
    let error = RocksDbPersister::create(&path, ME).unwrap_err();
    assert!(
        matches!(error, RocksError::AlreadyInitialized { .. }),
        "{error}"
    );
}
