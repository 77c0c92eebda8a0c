//! Damage to the write-ahead log, done to the `*.log` files' bytes after a clean close or a
//! SIGKILL. Acknowledged entries must never be rolled back silently: damage inside a WAL, a
//! deleted WAL and a cut or deleted closed WAL are refused as corrupt. What cannot be detected
//! (the live WAL cut short) is pinned down too, as documented in `docs/faults.md`.
#![cfg(feature = "rocksdb")]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use raft_core::{Entry, Payload, PersistUpdate, Persister};
use raft_storage::{RocksDbPersister, RocksError, StorageIdentity};

const ME: StorageIdentity = StorageIdentity {
    cluster_id: 3,
    node_id: 1,
};
/// The identity `storage-crash-child` creates its directory with.
const CHILD: StorageIdentity = StorageIdentity {
    cluster_id: 0xC0FFEE,
    node_id: 1,
};
const PAYLOAD: usize = 100;

/// Between fork and exec a child process holds copies of this process's open files, the
/// data directories' lock files included, so a test that closes and reopens a directory while
/// another test spawns a child could see it `Locked`. Every test holds this for reading; the
/// one that spawns holds it for writing around the spawn.
static SPAWNING: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Keeps child processes from being started while the caller holds it.
fn no_spawn() -> std::sync::RwLockReadGuard<'static, ()> {
    // The guarded value is `()`: a panic elsewhere cannot leave it inconsistent.
    SPAWNING
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(future)
}

/// The byte entry `index`'s payload is made of (distinct for indexes 1..=250).
fn fill(index: u64) -> u8 {
    (index % 251) as u8
}

/// Persists entries `range`, one update each, with payloads of `bytes` bytes.
fn append(disk: &RocksDbPersister, range: std::ops::RangeInclusive<u64>, bytes: usize) {
    for index in range {
        let update = PersistUpdate {
            entries: vec![Entry {
                index,
                term: 1,
                payload: Payload::Command(vec![fill(index); bytes]),
            }],
            ..PersistUpdate::default()
        };
        block_on(disk.persist(&update)).unwrap();
    }
}

fn reopen(disk: RocksDbPersister) -> RocksDbPersister {
    let path = disk.path().to_path_buf();
    disk.close();
    RocksDbPersister::open(path, ME).unwrap()
}

/// The directory of the report: 200 entries, 1..=100 in SST files, 101..=200 only in the WAL,
/// closed cleanly.
fn reported_directory(root: &tempfile::TempDir) -> PathBuf {
    let path = root.path().join("node");
    let disk = RocksDbPersister::create(&path, ME).unwrap();
    append(&disk, 1..=100, PAYLOAD);
    // Reopening replays the WAL into SST files and starts a new one.
    let disk = reopen(disk);
    append(&disk, 101..=200, PAYLOAD);
    disk.close();
    path
}

/// The WAL files in `path`, oldest first.
fn wal_files(path: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|file| file.extension().is_some_and(|ext| ext == "log"))
        .collect();
    // Names are zero-padded numbers, so they sort in creation order.
    files.sort();
    files
}

/// Offset of the first run of `len` bytes equal to `byte` in `data` at or after `from`.
fn find_run(data: &[u8], byte: u8, len: usize, from: usize) -> Option<usize> {
    let needle = vec![byte; len];
    data.get(from..)?
        .windows(len)
        .position(|window| window == needle.as_slice())
        .map(|at| from + at)
}

/// Flips one byte in the middle of the payload of entry `index` (or of the first entry after
/// it whose payload is stored in one piece), in `wal`.
fn flip_payload_byte(wal: &Path, index: u64) {
    let mut data = std::fs::read(wal).unwrap();
    let at = (index..index + 20)
        .find_map(|i| find_run(&data, fill(i), PAYLOAD, 0))
        .expect("entry payload in the WAL");
    data[at + PAYLOAD / 2] ^= 0x01;
    std::fs::write(wal, data).unwrap();
}

fn cut_to_half(file: &Path) {
    let len = std::fs::metadata(file).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(file)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
}

fn assert_corrupt(path: &Path, case: &str) {
    assert_corrupt_as(path, ME, case);
}

fn assert_corrupt_as(path: &Path, identity: StorageIdentity, case: &str) {
    match RocksDbPersister::open(path, identity) {
        Err(RocksError::Corrupt { what, .. }) => eprintln!("{case}: {what}"),
        Err(other) => panic!("{case}: expected Corrupt, got {other}"),
        Ok(disk) => panic!(
            "{case}: opened with {} entries instead of refusing",
            block_on(disk.load()).unwrap().last_index()
        ),
    }
}

/// The report: a flipped byte in the middle of the WAL opened with 150 of 200 entries.
#[test]
fn a_flipped_byte_inside_the_wal_is_refused() {
    let _no_spawn = no_spawn();
    let root = tempfile::tempdir().unwrap();
    let path = reported_directory(&root);
    let wals = wal_files(&path);
    assert_eq!(wals.len(), 1, "{wals:?}");
    flip_payload_byte(&wals[0], 150);
    assert_corrupt(&path, "flipped byte in the WAL");
}

/// The report: a deleted WAL opened with the 100 entries of the SST files.
#[test]
fn a_deleted_wal_is_refused() {
    let _no_spawn = no_spawn();
    let root = tempfile::tempdir().unwrap();
    let path = reported_directory(&root);
    for wal in wal_files(&path) {
        std::fs::remove_file(wal).unwrap();
    }
    assert_corrupt(&path, "deleted WAL");
}

/// A directory written with payloads large enough that the writer starts new WALs (every
/// 1 MiB): several WAL files, all but the last closed.
fn directory_with_closed_wals(root: &tempfile::TempDir) -> (PathBuf, Vec<PathBuf>) {
    let path = root.path().join("node");
    let disk = RocksDbPersister::create(&path, ME).unwrap();
    append(&disk, 1..=60, 64 << 10);
    disk.close();
    let wals = wal_files(&path);
    assert!(wals.len() >= 3, "expected several WALs: {wals:?}");
    (path, wals)
}

/// A closed WAL (the writer moved on to a newer one) that is cut, deleted or damaged is
/// refused: its size is recorded in the MANIFEST and in its successor.
#[test]
fn a_damaged_or_missing_closed_wal_is_refused() {
    let _no_spawn = no_spawn();
    type Damage = fn(&[PathBuf]);
    let damages: [(&str, Damage); 4] = [
        ("oldest WAL cut to half", |wals| cut_to_half(&wals[0])),
        ("a middle WAL cut to half", |wals| cut_to_half(&wals[1])),
        ("oldest WAL deleted", |wals| {
            std::fs::remove_file(&wals[0]).unwrap()
        }),
        ("every WAL but the live one deleted", |wals| {
            for wal in &wals[..wals.len() - 1] {
                std::fs::remove_file(wal).unwrap();
            }
        }),
    ];
    for (case, damage) in damages {
        let root = tempfile::tempdir().unwrap();
        let (path, wals) = directory_with_closed_wals(&root);
        damage(&wals);
        assert_corrupt(&path, case);
    }
    let root = tempfile::tempdir().unwrap();
    let (path, wals) = directory_with_closed_wals(&root);
    let mut data = std::fs::read(&wals[0]).unwrap();
    let at = find_run(&data, fill(3), 1 << 10, 0).expect("payload of entry 3");
    data[at + 100] ^= 0x80;
    std::fs::write(&wals[0], data).unwrap();
    assert_corrupt(&path, "flipped byte in a closed WAL");
}

/// What cannot be detected: the live WAL cut short (as a disk that loses the tail of a file it
/// acknowledged would do) opens with the writes before the cut, which is a consistent earlier
/// state. The writer's WAL rotation bounds how much this can lose (docs/faults.md).
#[test]
fn the_live_wal_cut_short_opens_with_an_earlier_consistent_state() {
    let _no_spawn = no_spawn();
    let root = tempfile::tempdir().unwrap();
    let path = reported_directory(&root);
    let wals = wal_files(&path);
    cut_to_half(&wals[0]);
    let disk = RocksDbPersister::open(&path, ME).unwrap();
    let loaded = block_on(disk.load()).unwrap();
    let last = loaded.last_index();
    assert!((100..200).contains(&last), "{last}");
    // The entries are exactly those written up to `last`.
    for (entry, index) in loaded.entries.iter().zip(1..) {
        assert_eq!(entry.index, index);
        assert_eq!(entry.command(), Some(&[fill(index); PAYLOAD][..]));
    }
}

/// Damage after a SIGKILL (the WAL then also ends with whatever the killed writer left): a
/// flipped byte in the middle of a WAL is refused.
#[test]
fn a_flipped_byte_in_the_wal_after_a_sigkill_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("node");
    let spawning = SPAWNING
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut child = Command::new(env!("CARGO_BIN_EXE_storage-crash-child"))
        .arg(&path)
        .arg("11")
        .arg(PAYLOAD.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the crash child");
    drop(spawning);
    let stdout = child.stdout.take().expect("piped stdout");
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("child output");
        let durable: u64 = line
            .strip_prefix("durable ")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        if durable >= 400 {
            break;
        }
    }
    child.kill().expect("kill the child");
    child.wait().expect("reap the child");

    // The largest WAL, damaged in an entry payload near its middle. The payload must lie well
    // before the end of the file: the killed writer may have left its last record incomplete,
    // and damage inside that record is indistinguishable from the tear itself.
    let wal = wal_files(&path)
        .into_iter()
        .max_by_key(|wal| std::fs::metadata(wal).unwrap().len())
        .expect("a WAL");
    let mut data = std::fs::read(&wal).unwrap();
    let before_the_tail = |at: &usize| at + PAYLOAD + (64 << 10) <= data.len();
    let run_from = |from: usize| {
        (0..=255u8)
            .filter_map(|byte| find_run(&data, byte, PAYLOAD, from))
            .filter(before_the_tail)
            .min()
    };
    let at = run_from(data.len() / 2)
        .or_else(|| run_from(0))
        .expect("an entry payload in the WAL, well before its end");
    data[at + PAYLOAD / 2] ^= 0x01;
    std::fs::write(&wal, data).unwrap();
    assert_corrupt_as(&path, CHILD, "flipped byte in the WAL after SIGKILL");
}
