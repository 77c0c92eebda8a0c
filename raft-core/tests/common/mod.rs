//! Helpers shared by the hand-driven contract tests.
#![allow(dead_code)] // each test binary uses a different subset

use raft_core::{
    Action, Config, DurableState, Entry, Message, MessageBody, Payload, RaftNode, Role,
};

pub fn config(id: u64, voters: &[u64]) -> Config {
    let mut c = Config::new(id, voters.to_vec());
    c.election_timeout_min = 10;
    c.election_timeout_max = 11;
    c.heartbeat_interval = 2;
    c.max_inflight_appends = 1;
    // These scenarios drive elections by hand; pre-vote and check-quorum have their own tests.
    c.pre_vote = false;
    c.check_quorum = false;
    c
}

pub fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        payload: Payload::Command(vec![index as u8, term as u8]),
    }
}

pub fn sends(actions: &[Action]) -> Vec<&Message> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(m) => Some(m),
            _ => None,
        })
        .collect()
}

pub fn position(actions: &[Action], pred: impl Fn(&Action) -> bool) -> usize {
    actions.iter().position(pred).expect("action present")
}

/// Takes the node's actions and reports every persist in them as durable.
pub fn report_all_persisted(node: &mut RaftNode) {
    for action in node.take_actions() {
        if let Action::Persist(update) = action {
            node.persisted(update.id);
        }
    }
}

/// Takes the node's actions as a driver whose writes complete at once: the actions, then
/// every persist among them reported durable, then the actions that released (the messages the
/// node held until those writes were durable).
pub fn take_and_persist(node: &mut RaftNode) -> Vec<Action> {
    let mut actions = node.take_actions();
    if let Some(id) = actions.iter().rev().find_map(|a| match a {
        Action::Persist(update) => Some(update.id),
        _ => None,
    }) {
        node.persisted(id);
        actions.extend(node.take_actions());
    }
    actions
}

/// The id of the last persist in `actions`.
pub fn last_persist_id(actions: &[Action]) -> u64 {
    actions
        .iter()
        .rev()
        .find_map(|a| match a {
            Action::Persist(update) => Some(update.id),
            _ => None,
        })
        .expect("a persist in the actions")
}

/// Lets node 1's election timer fire (pre-vote off) and grants it the votes of `voters`.
pub fn win_election(node: &mut RaftNode, voters: &[u64]) {
    for _ in 0..10 {
        node.tick();
    }
    assert_eq!(node.role(), Role::Candidate);
    node.take_actions();
    for &voter in voters {
        node.step(Message {
            from: voter,
            to: 1,
            term: node.term(),
            body: MessageBody::VoteResponse { granted: true },
        });
    }
    assert!(node.is_leader());
}

/// Makes node 1 of {1,2,3} leader of term 1 and returns it with its log persisted.
pub fn leader() -> RaftNode {
    let mut node = RaftNode::new(config(1, &[1, 2, 3])).unwrap();
    win_election(&mut node, &[2]);
    report_all_persisted(&mut node);
    node
}

/// Node 2 of {1,2,3}, restored with `entries` in `term`.
pub fn follower_with(entries: Vec<Entry>, term: u64) -> RaftNode {
    let state = DurableState {
        hard_state: raft_core::HardState {
            term,
            voted_for: None,
        },
        entries,
        snapshot: None,
    };
    RaftNode::restore(config(2, &[1, 2, 3]), &state).unwrap()
}

/// An AppendEntries from leader 1 to node 2.
pub fn append(prev: (u64, u64), entries: Vec<Entry>, term: u64) -> Message {
    Message {
        from: 1,
        to: 2,
        term,
        body: MessageBody::AppendRequest {
            prev_log_index: prev.0,
            prev_log_term: prev.1,
            entries,
            leader_commit: 0,
            read_seq: 0,
        },
    }
}
