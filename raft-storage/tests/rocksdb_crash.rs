//! Crash safety of the RocksDB backend: a child process persists a deterministic workload
//! (appends, overwrites, compactions, snapshots up to 3 MiB, eight updates queued at a time) and
//! is killed with SIGKILL at an arbitrary moment. The parent then reopens the directory and
//! checks that the state is exactly the state after some prefix of the workload that includes
//! every update the child reported durable: nothing acknowledged lost, nothing half-written.
//!
//! A child killed at an arbitrary moment of `create` must leave either no data directory
//! (which `create` then makes) or a complete one (which `open` opens).
#![cfg(feature = "rocksdb")]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use raft_core::{DurableState, Persister};
use raft_storage::workload::Workload;
use raft_storage::{RocksDbPersister, RocksError, StorageIdentity};

const IDENTITY: StorageIdentity = StorageIdentity {
    cluster_id: 0xC0FFEE,
    node_id: 1,
};
const ENTRY_BYTES: usize = 100;
/// Updates the child may have queued beyond the last one it reported durable.
const QUEUE: u64 = 8;

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(future)
}

/// The count in a `durable <n>` line (0 for anything else).
fn parse_durable(line: &str) -> u64 {
    line.strip_prefix("durable ")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Runs the child on `seed`, kills it once it has reported `kill_after` durable updates, and
/// returns the last count it reported before it died.
fn run_child_and_kill(dir: &std::path::Path, seed: u64, kill_after: u64) -> u64 {
    let mut child = Command::new(env!("CARGO_BIN_EXE_storage-crash-child"))
        .arg(dir)
        .arg(seed.to_string())
        .arg(ENTRY_BYTES.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the crash child");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut reported = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while reported < kill_after && Instant::now() < deadline {
        let Some(line) = lines.next() else { break };
        reported = reported.max(parse_durable(&line.expect("child output")));
    }
    // SIGKILL: no destructor, no flush, no clean shutdown of RocksDB.
    child.kill().expect("kill the child");
    child.wait().expect("reap the child");
    // The child may have got further than the lines read so far: what it printed before dying
    // is still in the pipe.
    for line in lines {
        let Ok(line) = line else { break };
        reported = reported.max(parse_durable(&line));
    }
    reported
}

#[test]
fn sigkill_mid_workload_keeps_every_durable_update_and_nothing_half_written() {
    for (seed, kill_after) in [(1, 50), (2, 333), (3, 1000), (4, 2500), (5, 17)] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node");
        let reported = run_child_and_kill(&path, seed, kill_after);
        assert!(reported >= kill_after.min(17), "child made no progress");
        let disk = RocksDbPersister::open(&path, IDENTITY).expect("reopen after SIGKILL");
        let loaded = block_on(disk.load()).expect("load after SIGKILL");
        // The loaded state must be the state after some prefix of at least `reported` updates.
        let mut workload = Workload::new(seed, ENTRY_BYTES);
        for _ in 0..reported {
            workload.next_update();
        }
        let mut survived = false;
        for _ in 0..=QUEUE + 1 {
            if workload.model() == &loaded {
                survived = true;
                break;
            }
            workload.next_update();
        }
        assert!(
            survived,
            "seed {seed}: after SIGKILL with {reported} updates reported durable, the directory \
             holds no prefix of the workload of at least that length (last index {}, snapshot {:?})",
            loaded.last_index(),
            loaded.snapshot.as_ref().map(|s| s.meta)
        );
        // And the writer's view of the directory matches it.
        assert_eq!(
            disk.raft_state_size(),
            raft_storage::size::of_state(&loaded)
        );
    }
}

/// The report: killed at random moments during `create`, 1-5 of 24 directories could be neither
/// opened nor created. Kills here are spread over the time a whole `create` takes (measured
/// first); every outcome must be one of the two allowed, whatever the moment.
#[test]
fn sigkill_during_create_leaves_no_directory_or_a_complete_one() {
    let child = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_storage-crash-child"));
        command
            .arg("create")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    };
    let probe = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let status = child().arg(probe.path().join("node")).status().unwrap();
    let whole = started.elapsed();
    assert!(status.success(), "create in the probe directory failed");

    const RUNS: u32 = 24;
    let (mut absent, mut complete) = (0, 0);
    for run in 0..RUNS {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("node");
        let mut running = child().arg(&path).spawn().unwrap();
        std::thread::sleep(whole * run / (RUNS - 4));
        // It may have finished already; then there is nothing to kill.
        let _ = running.kill();
        running.wait().unwrap();
        match RocksDbPersister::open(&path, IDENTITY) {
            Ok(disk) => {
                assert_eq!(block_on(disk.load()).unwrap(), DurableState::default());
                complete += 1;
            }
            Err(RocksError::Missing { .. } | RocksError::NotADataDir { .. }) => {
                let empty = !path.exists() || std::fs::read_dir(&path).unwrap().next().is_none();
                assert!(
                    empty,
                    "run {run}: killed after {:?}, left a directory that is neither complete nor \
                     empty: {:?}",
                    whole * run / (RUNS - 4),
                    std::fs::read_dir(&path).unwrap().collect::<Vec<_>>()
                );
                RocksDbPersister::create(&path, IDENTITY)
                    .unwrap_or_else(|e| panic!("run {run}: cannot create after the kill: {e}"));
                absent += 1;
            }
            Err(e) => panic!("run {run}: after a kill during create: {e}"),
        }
    }
    eprintln!(
        "create takes {whole:?}; killed during it: {absent} left nothing, {complete} complete"
    );
}
