//! The KV lab tests (MIT 6.5840 Lab 3A and 3B, `kvraft/test_test.go`) in the simulator, each
//! over many seeds, every history checked for linearizability, with the labs' 5 s of client
//! work per iteration. See `raft_tests::kv::lab` for the scenarios and
//! `../shared/lab-tests.md` §6 for the originals.

use raft_tests::kv::lab::{
    generic, one_partition, snapshot_rpc, snapshot_size, speed, unreliable_one_key, Generic,
};
use raft_tests::seed_suite;

/// Seeds per suite in CI (`RAFT_SEEDS` overrides).
const SEEDS: u64 = 200;
/// The labs' `maxraftstate` in 3B.
const MAX_RAFT_STATE: Option<u64> = Some(1000);

/// `GenericTest(part, clients, servers, unreliable, crash, partitions, maxraftstate,
/// randomkeys)`, as the labs write it. The clients work 5 s per iteration, as in the labs, or
/// `KV_RUN_MS` milliseconds (shorter runs let a soak cover more seeds).
#[allow(clippy::too_many_arguments)]
fn lab(
    clients: usize,
    servers: usize,
    unreliable: bool,
    crash: bool,
    partitions: bool,
    max_raft_state: Option<u64>,
    random_keys: bool,
) -> Generic {
    Generic {
        unreliable,
        crash,
        partitions,
        max_raft_state,
        random_keys,
        run_ms: std::env::var("KV_RUN_MS")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(5_000),
        ..Generic::new(clients, servers)
    }
}

// ----- 3A -----

seed_suite!(basic_3a, SEEDS, |seed| generic(
    seed,
    lab(1, 5, false, false, false, None, false)
));
seed_suite!(speed_3a, SEEDS, |seed| speed(seed, None));
seed_suite!(concurrent_3a, SEEDS, |seed| generic(
    seed,
    lab(5, 5, false, false, false, None, false)
));
seed_suite!(unreliable_3a, SEEDS, |seed| generic(
    seed,
    lab(5, 5, true, false, false, None, false)
));
seed_suite!(unreliable_one_key_3a, SEEDS, unreliable_one_key);
seed_suite!(one_partition_3a, SEEDS, one_partition);
seed_suite!(many_partitions_one_client_3a, SEEDS, |seed| generic(
    seed,
    lab(1, 5, false, false, true, None, false)
));
seed_suite!(many_partitions_many_clients_3a, SEEDS, |seed| generic(
    seed,
    lab(5, 5, false, false, true, None, false)
));
seed_suite!(persist_one_client_3a, SEEDS, |seed| generic(
    seed,
    lab(1, 5, false, true, false, None, false)
));
seed_suite!(persist_concurrent_3a, SEEDS, |seed| generic(
    seed,
    lab(5, 5, false, true, false, None, false)
));
seed_suite!(persist_concurrent_unreliable_3a, SEEDS, |seed| generic(
    seed,
    lab(5, 5, true, true, false, None, false)
));
seed_suite!(persist_partition_3a, SEEDS, |seed| generic(
    seed,
    lab(5, 5, false, true, true, None, false)
));
seed_suite!(persist_partition_unreliable_3a, SEEDS, |seed| generic(
    seed,
    lab(5, 5, true, true, true, None, false)
));
seed_suite!(
    persist_partition_unreliable_linearizable_3a,
    SEEDS,
    |seed| { generic(seed, lab(15, 7, true, true, true, None, true)) }
);

// ----- 3B -----

seed_suite!(snapshot_rpc_3b, SEEDS, snapshot_rpc);
seed_suite!(snapshot_size_3b, SEEDS, snapshot_size);
seed_suite!(speed_3b, SEEDS, |seed| speed(seed, MAX_RAFT_STATE));
seed_suite!(snapshot_recover_3b, SEEDS, |seed| generic(
    seed,
    lab(1, 5, false, true, false, MAX_RAFT_STATE, false)
));
seed_suite!(snapshot_recover_many_clients_3b, SEEDS, |seed| generic(
    seed,
    lab(20, 5, false, true, false, MAX_RAFT_STATE, false)
));
seed_suite!(snapshot_unreliable_3b, SEEDS, |seed| generic(
    seed,
    lab(5, 5, true, false, false, MAX_RAFT_STATE, false)
));
seed_suite!(snapshot_unreliable_recover_3b, SEEDS, |seed| generic(
    seed,
    lab(5, 5, true, true, false, MAX_RAFT_STATE, false)
));
seed_suite!(
    snapshot_unreliable_recover_concurrent_partition_3b,
    SEEDS,
    |seed| generic(seed, lab(5, 5, true, true, true, MAX_RAFT_STATE, false))
);
seed_suite!(
    snapshot_unreliable_recover_concurrent_partition_linearizable_3b,
    SEEDS,
    |seed| generic(seed, lab(15, 7, true, true, true, MAX_RAFT_STATE, true))
);
