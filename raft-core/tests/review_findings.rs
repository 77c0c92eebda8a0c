//! Findings of an outside review of the ordering contract (promises held until durable,
//! persist ids). Each test is the smallest hand-driven scenario showing one problem.

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
