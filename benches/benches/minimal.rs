//! The library's write path in openraft's `bench-minimal` shape: three raft-node drivers in
//! one process over channels with the memory persister, N client tasks each awaiting its own
//! write, on a 2-worker runtime (see `raft_benches::minimal`).
//!
//! `cargo bench -p raft-benches --bench minimal`

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use raft_benches::minimal::MinimalCluster;

fn writes(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let mut group = c.benchmark_group("minimal/writes_3_nodes");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    for &(clients, per_client) in &[(1usize, 2_000u64), (256, 40), (1024, 20)] {
        group.throughput(Throughput::Elements(clients as u64 * per_client));
        let cluster = runtime
            .block_on(MinimalCluster::start())
            .expect("a cluster");
        group.bench_function(BenchmarkId::new("clients", clients), |b| {
            b.iter_custom(|rounds| {
                let mut spent = Duration::ZERO;
                for _ in 0..rounds {
                    let report = runtime
                        .block_on(cluster.run(clients, per_client))
                        .expect("a run");
                    spent += report.elapsed;
                }
                spent
            })
        });
        runtime.block_on(cluster.shutdown());
    }
    group.finish();
}

criterion_group!(benches, writes);
criterion_main!(benches);
