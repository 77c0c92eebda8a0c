//! The memory backend against the reference semantics of `DurableState::apply`, with random
//! operation sequences, plus crash/restart of a node on top of it.

use proptest::prelude::*;
use raft_core::{
    DurableState, Entry, HardState, Payload, PersistUpdate, Persister, Snapshot, SnapshotMeta,
};
use raft_storage::{size, MemoryPersister};

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(future)
}

/// An abstract operation, made valid for whatever log it is applied to: hard state, snapshot
/// point and bytes, cut point, new entries.
type Op = (
    Option<(u64, Option<u64>)>,
    Option<(u64, Vec<u8>)>,
    Option<u64>,
    Vec<(u64, Vec<u8>)>,
);

fn op_strategy() -> impl Strategy<Value = Op> {
    (
        proptest::option::of((0u64..20, proptest::option::of(1u64..6))),
        proptest::option::of((any::<u64>(), proptest::collection::vec(any::<u8>(), 0..16))),
        proptest::option::of(any::<u64>()),
        proptest::collection::vec(
            (1u64..20, proptest::collection::vec(any::<u8>(), 0..40)),
            0..6,
        ),
    )
}

/// Turns `op` into a valid update for `state`: the snapshot (if any) ends after the stored one
/// (possibly past the log's end), the cut (if any) lands after the snapshot and at most one past
/// the log's end, and the new entries continue the log after both.
fn to_update((hard_state, snapshot, cut, new): Op, state: &DurableState) -> PersistUpdate {
    let stored_snapshot = state.snapshot_index();
    let snapshot = snapshot.map(|(raw, data)| {
        let last_index = stored_snapshot + 1 + raw % (state.last_index() - stored_snapshot + 3);
        Snapshot {
            meta: SnapshotMeta {
                last_index,
                last_term: raw % 7,
            },
            data,
        }
    });
    let snapshot_index = snapshot
        .as_ref()
        .map_or(stored_snapshot, |s| s.meta.last_index);
    let last = state.last_index().max(snapshot_index);
    let cut = cut.map(|raw| snapshot_index + 1 + raw % (last - snapshot_index + 1));
    let base = cut.map_or(last, |c| last.min(c - 1));
    let entries = new
        .into_iter()
        .enumerate()
        .map(|(k, (term, data))| Entry {
            index: base + 1 + k as u64,
            term,
            payload: Payload::Command(data),
        })
        .collect();
    PersistUpdate {
        hard_state: hard_state.map(|(term, voted_for)| HardState { term, voted_for }),
        truncate_from: cut,
        entries,
        snapshot,
    }
}

fn recomputed_size(state: &DurableState) -> u64 {
    size::hard_state_size(&state.hard_state)
        + state.entries.iter().map(size::entry_size).sum::<u64>()
}

proptest! {
    #[test]
    fn matches_the_reference_model_and_keeps_an_exact_size(
        ops in proptest::collection::vec(op_strategy(), 1..40)
    ) {
        let disk = MemoryPersister::new();
        let mut model = DurableState::default();
        for op in ops {
            let update = to_update(op, &model);
            model.apply(&update).expect("generated updates are valid");
            block_on(disk.persist(&update)).expect("valid update accepted");
            prop_assert_eq!(&disk.state(), &model);
            prop_assert_eq!(disk.raft_state_size(), recomputed_size(&model));
        }
        // Reopening (a new persister over the same state) reports the same size.
        let reopened = MemoryPersister::with_state(disk.state());
        prop_assert_eq!(reopened.raft_state_size(), disk.raft_state_size());
    }
}

#[test]
fn refuses_a_gap_and_changes_nothing() {
    let disk = MemoryPersister::new();
    let gap = PersistUpdate {
        entries: vec![Entry {
            index: 3,
            term: 1,
            payload: Payload::Noop,
        }],
        ..PersistUpdate::default()
    };
    assert!(block_on(disk.persist(&gap)).is_err());
    assert_eq!(disk.state(), DurableState::default());
    assert_eq!(
        disk.raft_state_size(),
        recomputed_size(&DurableState::default())
    );
}

#[test]
fn a_node_restarts_from_what_was_acknowledged() {
    use raft_core::{Action, Config, RaftNode};
    let disk = MemoryPersister::new();
    let mut config = Config::new(1, vec![1]);
    config.pre_vote = false;
    let mut node = RaftNode::new(config.clone()).unwrap();
    for _ in 0..config.election_timeout_max {
        node.tick();
    }
    node.propose(b"kept".to_vec()).unwrap();
    for action in node.take_actions() {
        if let Action::Persist(update) = action {
            block_on(disk.persist(&update)).unwrap();
        }
    }
    drop(node); // crash
    let restarted = RaftNode::restore(config, &block_on(disk.load()).unwrap()).unwrap();
    assert_eq!(restarted.term(), 1);
    assert_eq!(
        restarted.log().entry(2).and_then(|e| e.command()),
        Some(&b"kept"[..])
    );
}
