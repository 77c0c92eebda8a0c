//! Throughput of the protocol itself: a 3-node cluster in one thread, no IO.
//!
//! `cargo bench -p raft-benches --bench core`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use raft_benches::LocalCluster;

fn replicate(c: &mut Criterion) {
    let mut group = c.benchmark_group("core/replicate_3_nodes");
    for &(batch, size) in &[(1usize, 128usize), (64, 128), (1024, 128), (64, 4096)] {
        let commands: Vec<Vec<u8>> = (0..batch).map(|i| vec![i as u8; size]).collect();
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(format!("batch{batch}x{size}B")),
            &commands,
            |b, commands| {
                let mut cluster = LocalCluster::new(3);
                let leader = cluster.elect();
                b.iter(|| cluster.propose_and_commit(leader, commands));
            },
        );
    }
    group.finish();
}

criterion_group!(benches, replicate);
criterion_main!(benches);
