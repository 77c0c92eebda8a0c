//! How durability reports (`persisted(id)`) release promises, and what survives a restart:
//! bulk reports, reports of persists not handed out yet, compactions that back nothing, the
//! durable index across a snapshot install, forwarded reads across two starts. Each test is the
//! smallest hand-driven scenario of a problem an outside review found in the first version of
//! the stream-wide ordering contract.

mod common;

use common::*;
use raft_core::{Action, AppendResult, Message, MessageBody};

/// The `Accepted` answers in `actions`, by match index.
fn accepted(actions: &[Action]) -> Vec<u64> {
    sends(actions)
        .iter()
        .filter_map(|m| match m.body {
            MessageBody::AppendResponse {
                result: AppendResult::Accepted { match_index },
                ..
            } => Some(match_index),
            _ => None,
        })
        .collect()
}

/// `last_persist_id()` is offered "for drivers that report durability in bulk", but it counts
/// persists the node has queued and not yet handed out. A bulk driver that takes a list,
/// writes it, handles a message, and then reports `last_persist_id()` tells the node that a
/// write it has never seen is durable: the node lets out an `Accepted` for entries on no disk.
#[test]
fn bulk_report_of_last_persist_id_must_not_cover_persists_not_yet_taken() {
    let mut node = follower_with(vec![entry(1, 1)], 1);
    node.step(append((1, 1), vec![entry(2, 1)], 1));
    let first = node.take_actions();
    // The driver writes `first` (one persist) ... and meanwhile a new append arrives.
    node.step(append((2, 1), vec![entry(3, 1)], 1));
    // Bulk report, as the accessor's doc suggests, once the list it took is written.
    node.persisted(node.last_persist_id());
    let second = node.take_actions();
    let written_later = second
        .iter()
        .any(|a| matches!(a, Action::Persist(u) if u.entries.iter().any(|e| e.index == 3)));
    assert!(
        !(written_later && accepted(&second).contains(&3)),
        "entry 3 acknowledged in the same list that first hands out its write: \
         first {first:?}\nsecond {second:?}"
    );
}

/// A report of an id still queued inside the node is accepted; later updates are then merged
/// into that same (already "durable") id, and promises backed by them leave at once, in the
/// very list that first hands the write out.
#[test]
fn a_reported_id_must_not_absorb_later_updates() {
    let mut node = follower_with(vec![entry(1, 1)], 1);
    // A stale answer of a higher term: the follower adopts term 2 (one persist, no message).
    node.step(Message {
        from: 3,
        to: 2,
        term: 2,
        body: MessageBody::AppendResponse {
            request_term: 2,
            result: AppendResult::Accepted { match_index: 0 },
            read_seq: 0,
        },
    });
    // Reported before the driver took it (e.g. `persisted(last_persist_id())` after the
    // previous list was written): the node accepts an id it never handed out.
    let id = node.last_persist_id();
    node.persisted(id);
    // The leader of term 2 sends entry 2: its write merges into the queued persist `id`, and
    // the answer is not held, since `id` already counts as durable.
    node.step(append((1, 1), vec![entry(2, 2)], 2));
    let actions = node.take_actions();
    assert!(
        !accepted(&actions).contains(&2),
        "entry 2 acknowledged in the list that first hands out its write (reported id {id}): \
         {actions:?}"
    );
}

/// Sanity check for the two tests above: the same sequence with the report made only for
/// the list actually taken is correct.
#[test]
fn report_of_the_taken_list_holds_the_later_answer() {
    let mut node = follower_with(vec![entry(1, 1)], 1);
    node.step(append((1, 1), vec![entry(2, 1)], 1));
    let first = node.take_actions();
    node.step(append((2, 1), vec![entry(3, 1)], 1));
    node.persisted(last_persist_id(&first));
    let second = node.take_actions();
    assert_eq!(accepted(&second), vec![2], "{second:?}");
}

/// The forwarded-read numbering protects against an answer delayed across a restart only if
/// the driver passes a fresh `Config::seed` at every start; `Config::new` derives the seed from
/// the id, so with the defaults every start numbers its forwarded reads alike. A leader's answer
/// to the first start's read then releases the second start's read with the old read index,
/// missing a write committed before the second read began.
#[test]
fn answer_to_a_previous_start_does_not_release_a_read_with_the_default_config() {
    let disk = raft_core::DurableState {
        hard_state: raft_core::HardState {
            term: 1,
            voted_for: None,
        },
        entries: (1..=6).map(|i| entry(i, 1)).collect(),
        snapshot: None,
    };
    // Both starts use the configuration a driver builds the same way each time.
    let start = || {
        let mut node = raft_core::RaftNode::restore(config(2, &[1, 2, 3]), &disk).unwrap();
        // The leader's heartbeat at the follower's match point 5 (entry 6, committed on the
        // leader and node 3, is acknowledged to its client).
        let mut heartbeat = append((5, 1), vec![], 1);
        if let MessageBody::AppendRequest { leader_commit, .. } = &mut heartbeat.body {
            *leader_commit = 6;
        }
        node.step(heartbeat);
        report_all_persisted(&mut node);
        node
    };
    let forwarded = |node: &mut raft_core::RaftNode, read| {
        node.read_index(read);
        sends(&node.take_actions())
            .iter()
            .find_map(|m| match m.body {
                MessageBody::ReadIndexRequest { id } => Some(id),
                _ => None,
            })
            .expect("the read is forwarded")
    };
    let mut first = start();
    let old_wire = forwarded(&mut first, 100);
    // The first start crashes; its read was confirmed by the leader at index 5, the answer
    // is delayed. The node starts again and a client asks a new read, after entry 6 committed.
    drop(first);
    let mut second = start();
    let new_wire = forwarded(&mut second, 200);
    second.step(Message {
        from: 1,
        to: 2,
        term: 1,
        body: MessageBody::ReadIndexResponse {
            id: old_wire,
            index: Some(5),
        },
    });
    let actions = second.take_actions();
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::ReadReady { id: 200, .. })),
        "read 200 released by the answer to the previous start's read (wire ids {old_wire} and \
         {new_wire}), at index 5 although 6 was committed before it began: {actions:?}"
    );
}

/// A follower's own compaction writes a snapshot of entries that are already durable: it backs
/// no promise. Yet every `Accepted` emitted while it is in flight waits for it, since a promise
/// waits for *every* persist emitted before it. A service snapshot can take far longer to
/// write than an election timeout; followers that compact at the same index (a common policy:
/// every N entries) then all stop answering heartbeats at once, and the leader loses
/// check-quorum and stalls its read rounds although every follower is up and durable.
#[test]
fn heartbeat_answer_does_not_wait_for_an_unrelated_compaction_write() {
    let disk = raft_core::DurableState {
        hard_state: raft_core::HardState {
            term: 1,
            voted_for: None,
        },
        entries: (1..=5).map(|i| entry(i, 1)).collect(),
        snapshot: None,
    };
    let mut node = raft_core::RaftNode::restore(config(2, &[1, 2, 3]), &disk).unwrap();
    let heartbeat = || {
        let mut m = append((5, 1), vec![], 1);
        if let MessageBody::AppendRequest { leader_commit, .. } = &mut m.body {
            *leader_commit = 5;
        }
        m
    };
    node.step(heartbeat());
    let first = node.take_actions();
    assert_eq!(
        accepted(&first),
        vec![5],
        "entries 1-5 are on disk: {first:?}"
    );
    // The service applied 1-5 and compacts; the (large) snapshot write starts.
    node.compact(5, vec![0; 1024]).unwrap();
    let compaction = node.take_actions();
    assert!(compaction
        .iter()
        .any(|a| matches!(a, Action::Persist(u) if u.snapshot.is_some())));
    // The next heartbeats promise nothing beyond entries 1-5, durable long ago.
    node.step(heartbeat());
    let answer = node.take_actions();
    assert_eq!(
        accepted(&answer),
        vec![5],
        "heartbeat answer held behind the follower's own snapshot write: {answer:?}"
    );
}

/// `durable_index` ("highest index the driver reported durable") is lowered to a received
/// snapshot's last index when the snapshot replaces a conflicting log, before the snapshot's
/// write is reported: it then names an index whose durable entry is the replaced one. Harmless
/// today (a node leads only after all its writes are reported), but the bookkeeping the leader
/// commits with is wrong in that window.
#[test]
fn durable_index_does_not_count_a_snapshot_before_its_write_is_reported() {
    let disk = raft_core::DurableState {
        hard_state: raft_core::HardState {
            term: 2,
            voted_for: None,
        },
        entries: (1..=5).map(|i| entry(i, 1)).collect(),
        snapshot: None,
    };
    let mut node = raft_core::RaftNode::restore(config(2, &[1, 2, 3]), &disk).unwrap();
    node.step(Message {
        from: 1,
        to: 2,
        term: 2,
        body: MessageBody::InstallSnapshotRequest {
            meta: raft_core::SnapshotMeta {
                last_index: 4,
                last_term: 2,
            },
            offset: 0,
            data: vec![7],
            done: true,
        },
    });
    let status = node.status();
    assert!(
        status.durable_index < 4,
        "index 4 of term 2 counted durable before the snapshot write was reported (disk holds \
         entry 4 of term 1): {status:?}"
    );
}
