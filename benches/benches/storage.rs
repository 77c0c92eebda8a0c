//! Persist throughput of the storage backends, against this machine's fsync latency.
//!
//! `cargo bench -p raft-benches --bench storage` (memory backend and the fsync baseline);
//! `cargo bench -p raft-benches --features rocksdb --bench storage` adds RocksDB.
//!
//! - `storage/fsync_baseline`: write 4 KiB to a file and `fdatasync` it: the physical limit of
//!   one durable write on this machine.
//! - `storage/<backend>/append`: one persist at a time, awaited, of batches of entries of
//!   several sizes (entries/s and bytes/s).
//! - `storage/rocksdb/group_commit`: eight single-entry updates queued before awaiting (a
//!   pipelined driver); the fsyncs they cost are printed as fsyncs per entry.

use std::io::Write;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use raft_core::Persister;
use raft_storage::workload::Workload;
use raft_storage::MemoryPersister;

const SHAPES: [(usize, usize); 5] = [(1, 100), (16, 100), (256, 100), (1, 4096), (16, 4096)];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

fn fsync_baseline(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut file = std::fs::File::create(dir.path().join("baseline")).expect("file");
    let block = vec![0x5A; 4096];
    c.bench_function("storage/fsync_baseline/4KiB", |b| {
        b.iter(|| {
            file.write_all(&block).expect("write");
            file.sync_data().expect("fdatasync");
        })
    });
}

fn append<P: Persister>(c: &mut Criterion, name: &str, mut make: impl FnMut() -> P) {
    let rt = runtime();
    let mut group = c.benchmark_group(format!("storage/{name}/append"));
    for (batch, size) in SHAPES {
        group.throughput(Throughput::Elements(batch as u64));
        let id = BenchmarkId::from_parameter(format!("batch{batch}x{size}B"));
        group.bench_function(id, |b| {
            let disk = make();
            let mut workload = Workload::new(1, size);
            b.iter(|| {
                let update = workload.next_append(batch);
                rt.block_on(disk.persist(&update)).expect("persist");
            });
        });
    }
    group.finish();
}

fn memory(c: &mut Criterion) {
    append(c, "memory", MemoryPersister::new);
}

#[cfg(feature = "rocksdb")]
fn rocksdb(c: &mut Criterion) {
    use raft_storage::{RocksDbPersister, StorageIdentity};
    let dir = tempfile::tempdir().expect("temp dir");
    let identity = StorageIdentity {
        cluster_id: 1,
        node_id: 1,
    };
    let mut n = 0;
    append(c, "rocksdb", || {
        n += 1;
        RocksDbPersister::create(dir.path().join(format!("append{n}")), identity).expect("create")
    });

    let rt = runtime();
    let disk = RocksDbPersister::create(dir.path().join("group"), identity).expect("create");
    let mut workload = Workload::new(2, 100);
    let mut group = c.benchmark_group("storage/rocksdb/group_commit");
    group.throughput(Throughput::Elements(8));
    group.bench_function("8_queued_single_entry_updates", |b| {
        b.iter(|| {
            let pending: Vec<_> = (0..8)
                .map(|_| disk.submit(&workload.next_append(1)))
                .collect();
            rt.block_on(async {
                for p in pending {
                    p.await.expect("persist");
                }
            });
        })
    });
    group.finish();
    let stats = disk.stats();
    println!(
        "group commit: {} entries in {} fsyncs = {:.3} fsyncs per entry",
        stats.entries,
        stats.syncs,
        stats.syncs as f64 / stats.entries.max(1) as f64
    );
}

#[cfg(not(feature = "rocksdb"))]
fn rocksdb(_: &mut Criterion) {}

criterion_group!(benches, fsync_baseline, memory, rocksdb);
criterion_main!(benches);
