//! Crash-test child.
//!
//! `storage-crash-child <dir> <seed> <entry-bytes>` creates the RocksDB data directory, then
//! persists the deterministic [`Workload`] from `seed`, keeping up to eight updates queued at
//! once (so they share fsyncs), and prints `durable <n>` after the first `n` updates are
//! durable. It runs until killed; the parent kills it with SIGKILL at an arbitrary moment and
//! checks what survived.
//!
//! `storage-crash-child create <dir>` only creates the data directory, prints `created` and
//! exits; the parent kills it at an arbitrary moment of `create`.

use std::collections::VecDeque;
use std::io::Write;

use raft_storage::workload::Workload;
use raft_storage::{RocksDbPersister, StorageIdentity};

const IDENTITY: StorageIdentity = StorageIdentity {
    cluster_id: 0xC0FFEE,
    node_id: 1,
};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let (Some("create"), Some(dir), None) =
        (args.get(1).map(String::as_str), args.get(2), args.get(3))
    {
        match RocksDbPersister::create(dir, IDENTITY) {
            Ok(disk) => {
                disk.close();
                println!("created");
                return;
            }
            Err(e) => {
                eprintln!("cannot create {dir}: {e}");
                std::process::exit(1);
            }
        }
    }
    let (Some(dir), Some(seed), Some(entry_bytes)) = (
        args.get(1),
        args.get(2).and_then(|s| s.parse::<u64>().ok()),
        args.get(3).and_then(|s| s.parse::<usize>().ok()),
    ) else {
        eprintln!("usage: storage-crash-child <dir> <seed> <entry-bytes> | create <dir>");
        std::process::exit(2);
    };
    let disk = match RocksDbPersister::create(dir, IDENTITY) {
        Ok(disk) => disk,
        Err(e) => {
            eprintln!("cannot create {dir}: {e}");
            std::process::exit(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start a runtime: {e}");
            std::process::exit(1);
        }
    };
    runtime.block_on(async {
        let mut workload = Workload::new(seed, entry_bytes);
        let mut queued = VecDeque::new();
        let mut stdout = std::io::stdout();
        loop {
            while queued.len() < 8 {
                queued.push_back(disk.submit(&workload.next_update()));
            }
            if let Some(oldest) = queued.pop_front() {
                if let Err(e) = oldest.await {
                    eprintln!("persist failed: {e}");
                    std::process::exit(1);
                }
            }
            let durable = workload.generated() - queued.len() as u64;
            // The parent reads these lines; if it is gone there is nobody to tell.
            if writeln!(stdout, "durable {durable}")
                .and_then(|()| stdout.flush())
                .is_err()
            {
                std::process::exit(0);
            }
        }
    });
}
