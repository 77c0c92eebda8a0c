//! Crash safety of the RocksDB backend: a child process persists a deterministic workload
//! (appends, overwrites, compactions, snapshots up to 3 MiB, eight updates queued at a time) and
//! is killed with SIGKILL at an arbitrary moment. The parent then reopens the directory and
//! checks that the state is exactly the state after some prefix of the workload that includes
//! every update the child reported durable: nothing acknowledged lost, nothing half-written.
#![cfg(feature = "rocksdb")]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use raft_core::Persister;
use raft_storage::workload::Workload;
use raft_storage::{RocksDbPersister, StorageIdentity};

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
