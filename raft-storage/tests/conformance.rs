//! One conformance suite, run against every backend: round trips, overwrites, compaction,
//! snapshot replacement, refusals that change nothing, reopening, exact `raft_state_size`, and
//! random operation sequences (with reopens) against the reference model.

use proptest::prelude::*;
use raft_core::{
    DurableState, Entry, HardState, Payload, PersistUpdate, Persister, Snapshot, SnapshotMeta,
};
use raft_storage::size;
use raft_storage::workload::Workload;

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(future)
}

/// A storage backend under test: how to get a fresh persister and how to reopen one.
trait Backend {
    type P: Persister;
    /// A persister over new, empty storage.
    fn fresh(&mut self) -> Self::P;
    /// Shuts `persister` down cleanly and opens its storage again.
    fn reopen(&mut self, persister: Self::P) -> Self::P;
}

struct Memory;

impl Backend for Memory {
    type P = raft_storage::MemoryPersister;
    fn fresh(&mut self) -> Self::P {
        raft_storage::MemoryPersister::new()
    }
    fn reopen(&mut self, persister: Self::P) -> Self::P {
        raft_storage::MemoryPersister::with_state(persister.state())
    }
}

#[cfg(feature = "rocksdb")]
struct Rocks {
    dirs: Vec<tempfile::TempDir>,
}

#[cfg(feature = "rocksdb")]
const IDENTITY: raft_storage::StorageIdentity = raft_storage::StorageIdentity {
    cluster_id: 42,
    node_id: 3,
};

#[cfg(feature = "rocksdb")]
impl Backend for Rocks {
    type P = raft_storage::RocksDbPersister;
    fn fresh(&mut self) -> Self::P {
        let dir = tempfile::tempdir().expect("temp dir");
        let persister =
            raft_storage::RocksDbPersister::create(dir.path().join("node"), IDENTITY).unwrap();
        self.dirs.push(dir);
        persister
    }
    fn reopen(&mut self, persister: Self::P) -> Self::P {
        let path = persister.path().to_path_buf();
        persister.close();
        raft_storage::RocksDbPersister::open(path, IDENTITY).unwrap()
    }
}

fn entries(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
    range
        .map(|index| Entry {
            index,
            term,
            payload: Payload::Command(vec![index as u8; 10]),
        })
        .collect()
}

fn snapshot(last_index: u64, last_term: u64, len: usize) -> Snapshot {
    Snapshot {
        meta: SnapshotMeta {
            last_index,
            last_term,
        },
        data: (0..len).map(|i| i as u8).collect(),
    }
}

fn recomputed_size(state: &DurableState) -> u64 {
    size::of_state(state)
}

/// Persists `updates` one by one, checking the stored state against the model after each.
fn check_sequence<B: Backend>(backend: &mut B, updates: &[PersistUpdate]) -> B::P {
    let disk = backend.fresh();
    let mut model = DurableState::default();
    for update in updates {
        model.apply(update).expect("test updates are valid");
        block_on(disk.persist(update)).expect("valid update accepted");
        assert_eq!(block_on(disk.load()).unwrap(), model);
        assert_eq!(disk.raft_state_size(), recomputed_size(&model));
    }
    disk
}

fn hard_state_round_trip<B: Backend>(mut backend: B) {
    let hs = HardState {
        term: 7,
        voted_for: Some(2),
    };
    let disk = check_sequence(
        &mut backend,
        &[PersistUpdate {
            hard_state: Some(hs),
            ..PersistUpdate::default()
        }],
    );
    let disk = backend.reopen(disk);
    assert_eq!(block_on(disk.load()).unwrap().hard_state, hs);
}

fn append_and_overwrite_suffix<B: Backend>(mut backend: B) {
    let disk = check_sequence(
        &mut backend,
        &[
            PersistUpdate {
                entries: entries(1..=10, 1),
                ..PersistUpdate::default()
            },
            PersistUpdate {
                truncate_from: Some(6),
                entries: entries(6..=7, 2),
                ..PersistUpdate::default()
            },
            PersistUpdate {
                truncate_from: Some(8),
                ..PersistUpdate::default()
            },
        ],
    );
    let state = block_on(backend.reopen(disk).load()).unwrap();
    assert_eq!(state.last_index(), 7);
    assert_eq!(state.entries[6].term, 2);
}

fn compaction_and_snapshot_replacement<B: Backend>(mut backend: B) {
    let disk = check_sequence(
        &mut backend,
        &[
            PersistUpdate {
                entries: entries(1..=10, 1),
                ..PersistUpdate::default()
            },
            // Compaction keeps the suffix.
            PersistUpdate {
                snapshot: Some(snapshot(4, 1, 100)),
                ..PersistUpdate::default()
            },
            // A newer snapshot replaces it; more than one storage chunk (1 MiB).
            PersistUpdate {
                snapshot: Some(snapshot(8, 1, (1 << 20) + 12345)),
                entries: vec![],
                ..PersistUpdate::default()
            },
            // A leader's snapshot beyond the log replaces the whole log.
            PersistUpdate {
                snapshot: Some(snapshot(20, 3, 10)),
                truncate_from: Some(21),
                ..PersistUpdate::default()
            },
            PersistUpdate {
                entries: entries(21..=22, 3),
                ..PersistUpdate::default()
            },
        ],
    );
    let before = disk.raft_state_size();
    let disk = backend.reopen(disk);
    let state = block_on(disk.load()).unwrap();
    assert_eq!(state.snapshot, Some(snapshot(20, 3, 10)));
    assert_eq!(
        state.entries.iter().map(|e| e.index).collect::<Vec<_>>(),
        [21, 22]
    );
    assert_eq!(disk.raft_state_size(), before, "size survives a reopen");
}

fn refusals_change_nothing<B: Backend>(mut backend: B) {
    let disk = check_sequence(
        &mut backend,
        &[
            PersistUpdate {
                entries: entries(1..=5, 1),
                ..PersistUpdate::default()
            },
            PersistUpdate {
                snapshot: Some(snapshot(3, 1, 10)),
                ..PersistUpdate::default()
            },
        ],
    );
    let before = block_on(disk.load()).unwrap();
    let size = disk.raft_state_size();
    let bad = [
        // A gap.
        PersistUpdate {
            entries: entries(8..=8, 1),
            ..PersistUpdate::default()
        },
        // A snapshot not newer than the stored one.
        PersistUpdate {
            snapshot: Some(snapshot(3, 1, 1)),
            ..PersistUpdate::default()
        },
        // A truncation into the snapshot, with a new hard state that must not be stored either.
        PersistUpdate {
            hard_state: Some(HardState {
                term: 9,
                voted_for: None,
            }),
            truncate_from: Some(2),
            entries: entries(2..=2, 9),
            ..PersistUpdate::default()
        },
    ];
    for update in &bad {
        assert!(block_on(disk.persist(update)).is_err(), "{update:?}");
        assert_eq!(block_on(disk.load()).unwrap(), before);
        assert_eq!(disk.raft_state_size(), size);
    }
    // Still usable afterwards.
    block_on(disk.persist(&PersistUpdate {
        entries: entries(6..=6, 1),
        ..PersistUpdate::default()
    }))
    .unwrap();
}

fn long_workload_with_reopens<B: Backend>(mut backend: B) {
    let mut workload = Workload::new(99, 50);
    let mut disk = backend.fresh();
    for round in 0..10 {
        for _ in 0..100 {
            let update = workload.next_update();
            block_on(disk.persist(&update)).unwrap();
        }
        assert_eq!(
            &block_on(disk.load()).unwrap(),
            workload.model(),
            "round {round}"
        );
        assert_eq!(disk.raft_state_size(), recomputed_size(workload.model()));
        disk = backend.reopen(disk);
    }
}

/// An abstract operation made valid for the state it is applied to: hard state, snapshot point
/// and size, cut point, new entries, and whether to reopen afterwards.
type Op = (
    Option<(u64, Option<u64>)>,
    Option<(u64, u16)>,
    Option<u64>,
    Vec<(u64, Vec<u8>)>,
    bool,
);

fn op_strategy() -> impl Strategy<Value = Op> {
    (
        proptest::option::of((0u64..20, proptest::option::of(1u64..6))),
        proptest::option::weighted(0.2, (any::<u64>(), any::<u16>())),
        proptest::option::weighted(0.3, any::<u64>()),
        proptest::collection::vec(
            (1u64..20, proptest::collection::vec(any::<u8>(), 0..40)),
            0..6,
        ),
        proptest::bool::weighted(0.1),
    )
}

fn to_update(op: &Op, state: &DurableState) -> PersistUpdate {
    let (hard_state, snap, cut, new, _) = op;
    let stored_snapshot = state.snapshot_index();
    let snapshot = snap.map(|(raw, len)| {
        let last_index = stored_snapshot + 1 + raw % (state.last_index() - stored_snapshot + 3);
        snapshot(last_index, raw % 7, len as usize % 3000)
    });
    let snapshot_index = snapshot
        .as_ref()
        .map_or(stored_snapshot, |s| s.meta.last_index);
    let last = state.last_index().max(snapshot_index);
    let cut = cut.map(|raw| snapshot_index + 1 + raw % (last - snapshot_index + 1));
    let base = cut.map_or(last, |c| last.min(c - 1));
    PersistUpdate {
        id: 0,
        hard_state: hard_state.map(|(term, voted_for)| HardState { term, voted_for }),
        snapshot,
        truncate_from: cut,
        entries: new
            .iter()
            .enumerate()
            .map(|(k, (term, data))| Entry {
                index: base + 1 + k as u64,
                term: *term,
                payload: Payload::Command(data.clone()),
            })
            .collect(),
    }
}

fn matches_the_model<B: Backend>(mut backend: B, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut disk = backend.fresh();
    let mut model = DurableState::default();
    for op in &ops {
        let update = to_update(op, &model);
        model.apply(&update).expect("generated updates are valid");
        block_on(disk.persist(&update)).expect("valid update accepted");
        if op.4 {
            disk = backend.reopen(disk);
        }
        prop_assert_eq!(&block_on(disk.load()).unwrap(), &model);
        prop_assert_eq!(disk.raft_state_size(), recomputed_size(&model));
    }
    Ok(())
}

macro_rules! conformance {
    ($module:ident, $backend:expr, $cases:expr) => {
        mod $module {
            use super::*;

            #[test]
            fn hard_state_round_trip() {
                super::hard_state_round_trip($backend);
            }
            #[test]
            fn append_and_overwrite_suffix() {
                super::append_and_overwrite_suffix($backend);
            }
            #[test]
            fn compaction_and_snapshot_replacement() {
                super::compaction_and_snapshot_replacement($backend);
            }
            #[test]
            fn refusals_change_nothing() {
                super::refusals_change_nothing($backend);
            }
            #[test]
            fn long_workload_with_reopens() {
                super::long_workload_with_reopens($backend);
            }
            proptest! {
                #![proptest_config(ProptestConfig {
                    cases: $cases,
                    failure_persistence: None,
                    ..ProptestConfig::default()
                })]
                #[test]
                fn random_sequences_match_the_model(
                    ops in proptest::collection::vec(op_strategy(), 1..40)
                ) {
                    matches_the_model($backend, ops)?;
                }
            }
        }
    };
}

conformance!(memory, Memory, 256);
#[cfg(feature = "rocksdb")]
conformance!(rocksdb, Rocks { dirs: Vec::new() }, 48);

/// The memory backend's crash: a persist that never completed (the process died between the
/// write and its sync) leaves the old state.
#[test]
fn memory_persist_dropped_before_completion_leaves_the_old_state() {
    let disk = raft_storage::MemoryPersister::new();
    block_on(disk.persist(&PersistUpdate {
        entries: entries(1..=3, 1),
        ..PersistUpdate::default()
    }))
    .unwrap();
    let before = disk.state();
    let update = PersistUpdate {
        entries: entries(4..=4, 1),
        ..PersistUpdate::default()
    };
    let pending = disk.persist(&update);
    drop(pending);
    assert_eq!(disk.state(), before);
}
