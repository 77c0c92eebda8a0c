//! The service core on a hand-driven cluster (`testkit::LocalCluster`): requests, bounds,
//! leadership changes, reads, snapshots and restarts.

use kv_service::codec;
use kv_service::testkit::LocalCluster;
use kv_service::{
    ClientRequest, Command, KvError, LogCommand, NodeId, Reply, RequestId, Response, RetryReason,
    Seq, ServiceConfig, SessionId, WriteOp, WriteOutput,
};
use raft_core::{Entry, Message, MessageBody, Payload, SnapshotMeta};

fn cluster(n: u64, tweak: impl FnMut(&mut ServiceConfig)) -> LocalCluster {
    LocalCluster::new(n, tweak).expect("valid configuration")
}

fn elect(c: &mut LocalCluster) -> NodeId {
    c.elect(1_000).unwrap().expect("a leader is elected")
}

/// Ticks a few times so followers learn the leader's commit index.
fn settle(c: &mut LocalCluster) {
    for _ in 0..5 {
        c.tick().unwrap();
    }
}

fn put(key: &str, value: &str) -> WriteOp {
    WriteOp::Put {
        key: key.into(),
        value: value.into(),
    }
}

fn append(key: &str, value: &str) -> WriteOp {
    WriteOp::Append {
        key: key.into(),
        value: value.into(),
    }
}

fn write(session: SessionId, seq: Seq, op: WriteOp) -> ClientRequest {
    ClientRequest::Write {
        session,
        seq,
        lowest_unacked: seq,
        op,
    }
}

fn get(key: &str) -> ClientRequest {
    ClientRequest::Get { key: key.into() }
}

/// The single reply to `id`.
fn reply_to(c: &mut LocalCluster, id: RequestId) -> Reply {
    let mut replies = c.take_replies_to(id);
    assert_eq!(replies.len(), 1, "exactly one reply to {id}: {replies:?}");
    replies.remove(0)
}

fn register(c: &mut LocalCluster, node: NodeId, id: RequestId) -> SessionId {
    c.request(node, id, ClientRequest::RegisterSession).unwrap();
    match reply_to(c, id) {
        Ok(Response::SessionRegistered { session }) => session,
        other => panic!("registration failed: {other:?}"),
    }
}

fn value(c: &LocalCluster, node: NodeId, key: &str) -> Option<Vec<u8>> {
    c.core(node)
        .unwrap()
        .machine()
        .get(key.as_bytes())
        .map(<[u8]>::to_vec)
}

fn last_index(c: &LocalCluster, node: NodeId) -> u64 {
    c.core(node).unwrap().raft().status().last_index
}

const DONE: Reply = Ok(Response::Written(WriteOutput::Done));

#[test]
fn writes_replicate_and_reads_go_through_read_index_not_the_log() {
    let mut c = cluster(3, |_| {});
    let leader = elect(&mut c);
    let session = register(&mut c, leader, 1);
    c.request(leader, 2, write(session, 1, put("k", "v")))
        .unwrap();
    assert_eq!(reply_to(&mut c, 2), DONE);
    let before = last_index(&c, leader);
    c.request(leader, 3, get("k")).unwrap();
    assert_eq!(
        reply_to(&mut c, 3),
        Ok(Response::Value(Some(b"v".to_vec())))
    );
    c.request(leader, 4, get("absent")).unwrap();
    assert_eq!(reply_to(&mut c, 4), Ok(Response::Value(None)));
    assert_eq!(last_index(&c, leader), before, "reads add no log entry");
    settle(&mut c);
    for node in c.ids() {
        assert_eq!(value(&c, node, "k"), Some(b"v".to_vec()), "node {node}");
    }
}

#[test]
fn concurrent_reads_share_one_confirmation_round() {
    let mut c = cluster(3, |_| {});
    let leader = elect(&mut c);
    let session = register(&mut c, leader, 1);
    c.request(leader, 2, write(session, 1, put("k", "v")))
        .unwrap();
    settle(&mut c);
    c.take_replies();
    for id in 10..20 {
        c.submit(leader, id, get("k")).unwrap();
    }
    c.run_actions().unwrap();
    let round: Vec<&Message> = c
        .network_mut()
        .iter()
        .filter(|m| matches!(m.body, MessageBody::AppendRequest { .. }))
        .collect();
    assert_eq!(round.len(), 2, "one heartbeat per follower for ten reads");
    c.run().unwrap();
    let replies = c.take_replies();
    assert_eq!(replies.len(), 10);
    assert!(replies
        .iter()
        .all(|(_, _, r)| r == &Ok(Response::Value(Some(b"v".to_vec())))));
}

#[test]
fn followers_answer_not_leader_with_the_leader_they_know() {
    let mut c = cluster(3, |_| {});
    let leader = elect(&mut c);
    settle(&mut c);
    let follower = c.ids().into_iter().find(|&n| n != leader).unwrap();
    c.request(follower, 1, get("k")).unwrap();
    c.request(follower, 2, ClientRequest::RegisterSession)
        .unwrap();
    c.request(follower, 3, write(1, 1, put("k", "v"))).unwrap();
    let hint = Err(KvError::NotLeader {
        leader_hint: Some(leader),
    });
    for id in 1..=3 {
        assert_eq!(reply_to(&mut c, id), hint);
    }
    // A node that knows no leader says so.
    let mut alone = cluster(3, |_| {});
    alone.request(1, 4, get("k")).unwrap();
    assert_eq!(
        reply_to(&mut alone, 4),
        Err(KvError::NotLeader { leader_hint: None })
    );
}

#[test]
fn too_large_requests_are_refused_before_anything_is_proposed() {
    let mut c = cluster(3, |config| config.max_request_bytes = 64);
    let leader = elect(&mut c);
    let session = register(&mut c, leader, 1);
    let before = last_index(&c, leader);
    c.request(leader, 2, write(session, 1, put("k", &"x".repeat(64))))
        .unwrap();
    assert!(matches!(
        reply_to(&mut c, 2),
        Err(KvError::TooLarge { limit: 64, .. })
    ));
    c.request(leader, 3, get(&"k".repeat(65))).unwrap();
    assert_eq!(
        reply_to(&mut c, 3),
        Err(KvError::TooLarge {
            size: 65,
            limit: 64
        })
    );
    assert_eq!(last_index(&c, leader), before);
    // The limit comes before leadership: a follower gives the same definite answer.
    let follower = c.ids().into_iter().find(|&n| n != leader).unwrap();
    c.request(follower, 4, write(session, 1, put("k", &"x".repeat(64))))
        .unwrap();
    assert!(matches!(reply_to(&mut c, 4), Err(KvError::TooLarge { .. })));
    // Just under the limit is fine.
    c.request(leader, 5, write(session, 1, put("k", "x")))
        .unwrap();
    assert_eq!(reply_to(&mut c, 5), DONE);
}

#[test]
fn busy_when_too_many_proposals_or_reads_wait() {
    let mut c = cluster(3, |config| {
        config.max_pending_proposals = 2;
        config.max_pending_reads = 1;
    });
    let leader = elect(&mut c);
    let session = register(&mut c, leader, 1);
    settle(&mut c);
    // Cut the followers off so nothing commits.
    for node in c.ids().into_iter().filter(|&n| n != leader) {
        c.isolate(node);
    }
    c.request(leader, 2, write(session, 1, append("k", "1")))
        .unwrap();
    c.request(leader, 3, write(session, 2, append("k", "2")))
        .unwrap();
    c.request(leader, 4, write(session, 3, append("k", "3")))
        .unwrap();
    assert_eq!(reply_to(&mut c, 4), Err(KvError::Busy));
    c.request(leader, 5, get("k")).unwrap();
    c.request(leader, 6, get("k")).unwrap();
    assert_eq!(reply_to(&mut c, 6), Err(KvError::Busy));
    c.heal();
    settle(&mut c);
    let replies = c.take_replies();
    let answered = |id| replies.iter().filter(|&&(_, rid, _)| rid == id).count();
    assert_eq!((answered(2), answered(3), answered(5)), (1, 1, 1));
    assert_eq!(value(&c, leader, "k"), Some(b"12".to_vec()));
    // Room again.
    c.request(leader, 7, write(session, 3, append("k", "3")))
        .unwrap();
    assert_eq!(reply_to(&mut c, 7), DONE);
}

#[test]
fn a_retry_of_an_executed_write_is_answered_from_the_session() {
    let mut c = cluster(3, |_| {});
    let leader = elect(&mut c);
    let session = register(&mut c, leader, 1);
    c.request(leader, 2, write(session, 1, append("k", "x")))
        .unwrap();
    assert_eq!(reply_to(&mut c, 2), DONE);
    settle(&mut c);
    let before = last_index(&c, leader);
    // The retry reaches the leader, and another copy a follower: both answered at once.
    c.request(leader, 3, write(session, 1, append("k", "x")))
        .unwrap();
    assert_eq!(reply_to(&mut c, 3), DONE);
    let follower = c.ids().into_iter().find(|&n| n != leader).unwrap();
    c.request(follower, 4, write(session, 1, append("k", "x")))
        .unwrap();
    assert_eq!(reply_to(&mut c, 4), DONE);
    assert_eq!(last_index(&c, leader), before, "no new entry");
    assert_eq!(value(&c, leader, "k"), Some(b"x".to_vec()));
}

#[test]
fn copies_of_a_write_in_the_log_share_its_entry() {
    let mut c = cluster(3, |_| {});
    let leader = elect(&mut c);
    let session = register(&mut c, leader, 1);
    let before = last_index(&c, leader);
    c.submit(leader, 2, write(session, 1, append("k", "x")))
        .unwrap();
    c.submit(leader, 3, write(session, 1, append("k", "x")))
        .unwrap();
    c.run().unwrap();
    let replies = c.take_replies();
    assert_eq!(replies.len(), 2);
    assert!(replies.iter().all(|(_, _, r)| r == &DONE));
    assert_eq!(last_index(&c, leader), before + 1);
    assert_eq!(value(&c, leader, "k"), Some(b"x".to_vec()));
}

#[test]
fn bad_sequence_numbers_are_refused() {
    let mut c = cluster(1, |_| {});
    let leader = elect(&mut c);
    let session = register(&mut c, leader, 1);
    let request = ClientRequest::Write {
        session,
        seq: 3,
        lowest_unacked: 4,
        op: put("k", "v"),
    };
    c.request(leader, 2, request).unwrap();
    assert_eq!(
        reply_to(&mut c, 2),
        Err(KvError::BadSequence {
            seq: 3,
            lowest_unacked: 4
        })
    );
    assert_eq!(value(&c, leader, "k"), None);
}

/// A leader that loses leadership tells its waiting clients to retry; the retry, sent to the new
/// leader, executes the write exactly once, whether or not the old leader's entry survived.
#[test]
fn waiting_proposals_are_told_to_retry_when_leadership_is_lost() {
    for survives in [false, true] {
        let mut c = cluster(3, |_| {});
        let old = elect(&mut c);
        let session = register(&mut c, old, 1);
        settle(&mut c);
        let others: Vec<NodeId> = c.ids().into_iter().filter(|&n| n != old).collect();
        let (heir, other) = (others[0], others[1]);
        c.isolate(other);
        c.submit(old, 2, write(session, 1, append("k", "x")))
            .unwrap();
        c.run_actions().unwrap();
        // The append reaches the heir (or not), and every answer is lost.
        let appends: Vec<Message> = c.network_mut().drain(..).collect();
        if survives {
            for m in appends.into_iter().filter(|m| m.to == heir) {
                c.deliver(m);
            }
            c.run_actions().unwrap();
            c.network_mut().clear();
        }
        c.isolate(old);
        c.heal_node(other);
        let new = c.elect(1_000).unwrap().expect("a new leader");
        assert_ne!(new, old);
        c.heal();
        settle(&mut c);
        // The old leader answers once it learns of the new term: "retry" (with a step-down
        // and the overwrite seen in one batch, the entry there is another one: "superseded"),
        // or, when its own entry is the one that committed, the true result.
        match reply_to(&mut c, 2) {
            Err(KvError::Retry { .. }) => {}
            reply if survives => assert_eq!(reply, DONE),
            reply => panic!("the entry was lost, yet the reply is {reply:?}"),
        }
        // The client retries at the new leader.
        c.request(new, 3, write(session, 1, append("k", "x")))
            .unwrap();
        settle(&mut c);
        assert_eq!(reply_to(&mut c, 3), DONE);
        for node in c.ids() {
            assert_eq!(
                value(&c, node, "k"),
                Some(b"x".to_vec()),
                "survives={survives}"
            );
        }
    }
}

/// A leader cut off from its followers steps down (check-quorum) and tells its waiting clients
/// to retry right away, without waiting for the partition to heal.
#[test]
fn a_leader_that_steps_down_tells_waiting_clients_to_retry_at_once() {
    let mut c = cluster(3, |_| {});
    let leader = elect(&mut c);
    let session = register(&mut c, leader, 1);
    settle(&mut c);
    for node in c.ids().into_iter().filter(|&n| n != leader) {
        c.isolate(node);
    }
    c.request(leader, 2, write(session, 1, append("k", "x")))
        .unwrap();
    let timeout = c.core(leader).unwrap().config().raft.election_timeout_max;
    for _ in 0..2 * timeout {
        c.tick().unwrap();
    }
    assert!(!c.core(leader).unwrap().is_leader(), "stepped down");
    assert_eq!(
        reply_to(&mut c, 2),
        Err(KvError::Retry {
            reason: RetryReason::LeadershipLost
        })
    );
}

/// When the entry applied at a proposal's index has another term, the proposal is answered with
/// `Retry { Superseded }`, never with the other entry's result.
#[test]
fn a_proposal_whose_index_another_entry_took_is_told_to_retry() {
    let mut c = cluster(3, |_| {});
    let leader = elect(&mut c);
    let session = register(&mut c, leader, 1);
    settle(&mut c);
    let status = c.core(leader).unwrap().raft().status();
    let (index, term) = (status.last_index, status.term);
    c.submit(leader, 2, write(session, 1, append("k", "x")))
        .unwrap();
    c.run_actions().unwrap();
    c.network_mut().clear();
    // A new leader of a later term overwrites index + 1 and commits it, in one message.
    let usurper = c.ids().into_iter().find(|&n| n != leader).unwrap();
    c.deliver(Message {
        from: usurper,
        to: leader,
        term: term + 1,
        body: MessageBody::AppendRequest {
            prev_log_index: index,
            prev_log_term: term,
            entries: vec![Entry {
                index: index + 1,
                term: term + 1,
                payload: Payload::Command(codec::encode(&LogCommand {
                    stamp_ms: 0,
                    command: Command::RegisterSession,
                })),
            }],
            leader_commit: index + 1,
            read_seq: 0,
        },
    });
    c.run_actions().unwrap();
    assert_eq!(
        reply_to(&mut c, 2),
        Err(KvError::Retry {
            reason: RetryReason::Superseded
        })
    );
    assert_eq!(value(&c, leader, "k"), None);
}

#[test]
fn sessions_do_not_expire_without_log_traffic_and_expire_by_stamps() {
    let timeout = 1_000;
    let mut c = cluster(3, |config| config.machine.session_timeout_ms = timeout);
    let leader = elect(&mut c);
    let idle = register(&mut c, leader, 1);
    // Much more than the timeout passes, with ticks but no commands.
    for _ in 0..(3 * timeout / 10) {
        c.tick().unwrap();
    }
    for node in c.ids() {
        assert!(c
            .core(node)
            .unwrap()
            .machine()
            .sessions()
            .get(idle)
            .is_some());
    }
    // The next command carries a stamp past the timeout: the idle session expires everywhere.
    let busy = register(&mut c, leader, 2);
    settle(&mut c);
    for node in c.ids() {
        let sessions = c.core(node).unwrap().machine().sessions();
        assert!(sessions.get(idle).is_none(), "node {node}");
        assert!(sessions.get(busy).is_some());
    }
    c.request(leader, 3, write(idle, 1, put("k", "v"))).unwrap();
    assert_eq!(reply_to(&mut c, 3), Err(KvError::SessionExpired));
    c.request(leader, 4, ClientRequest::KeepAlive { session: idle })
        .unwrap();
    assert_eq!(reply_to(&mut c, 4), Err(KvError::SessionExpired));
    c.request(leader, 5, ClientRequest::KeepAlive { session: busy })
        .unwrap();
    assert_eq!(reply_to(&mut c, 5), Ok(Response::KeptAlive));
    assert_eq!(value(&c, leader, "k"), None);
}

/// Stamps never decrease along the log, even when a new leader's clock is behind the old one's.
#[test]
fn leader_stamps_are_monotone_across_leaders() {
    let mut c = cluster(3, |_| {});
    let first = elect(&mut c);
    c.set_skew(first, 50_000).unwrap();
    let session = register(&mut c, first, 1);
    c.request(first, 2, write(session, 1, put("k", "1")))
        .unwrap();
    settle(&mut c);
    let ahead = c.core(first).unwrap().machine().clock_ms();
    assert!(ahead >= 50_000);
    c.crash(first).unwrap();
    let second = elect(&mut c);
    c.request(second, 3, write(session, 2, put("k", "2")))
        .unwrap();
    assert_eq!(
        reply_to(&mut c, 3),
        DONE,
        "the session did not expire early"
    );
    let stamps: Vec<u64> = c
        .disk(second)
        .unwrap()
        .entries
        .iter()
        .filter_map(|e| e.command())
        .map(|bytes| codec::decode::<LogCommand>(bytes).unwrap().stamp_ms)
        .collect();
    assert_eq!(stamps.len(), 3);
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "{stamps:?}");
    assert!(stamps[2] >= ahead);
}

/// The persisted Raft state stays near `max_raft_state`; the core's accounting equals the
/// persister's definition; snapshots at one index are identical on every node; a restarted
/// cluster restores its state from the snapshots before serving.
#[test]
fn snapshots_bound_the_log_and_survive_a_full_restart() {
    let max = 1_000;
    let mut c = cluster(3, |config| config.max_raft_state = Some(max));
    let leader = elect(&mut c);
    let session = register(&mut c, leader, 1);
    for seq in 1..=150u64 {
        let id = 100 + seq;
        c.request(
            leader,
            id,
            write(session, seq, append(&format!("k{}", seq % 5), "x")),
        )
        .unwrap();
        assert_eq!(reply_to(&mut c, id), DONE);
        for node in c.ids() {
            let core = c.core(node).unwrap();
            let disk = c.disk(node).unwrap();
            assert_eq!(core.raft_state_size(), raft_storage::size::of_state(disk));
            assert!(
                core.raft_state_size() < max + 200,
                "node {node}: {} bytes",
                core.raft_state_size()
            );
        }
    }
    settle(&mut c);
    let snapshots: Vec<_> = c
        .ids()
        .into_iter()
        .map(|n| {
            c.disk(n)
                .unwrap()
                .snapshot
                .clone()
                .expect("every node snapshotted")
        })
        .collect();
    for a in &snapshots {
        for b in &snapshots {
            if a.meta == b.meta {
                assert_eq!(a.data, b.data, "same index, same bytes");
            }
        }
    }
    let expected: Vec<_> = (0..5)
        .map(|k| value(&c, leader, &format!("k{k}")))
        .collect();
    assert_eq!(expected[0], Some(b"x".repeat(30)));
    for node in c.ids() {
        c.crash(node).unwrap();
    }
    for node in c.ids() {
        c.restart(node).unwrap();
        let core = c.core(node).unwrap();
        let snapshot = c.disk(node).unwrap().snapshot.clone().unwrap();
        assert_eq!(core.machine().applied_index(), snapshot.meta.last_index);
        assert_eq!(
            core.machine().snapshot(),
            snapshot.data,
            "loaded before serving"
        );
    }
    let leader = elect(&mut c);
    settle(&mut c);
    for k in 0..5 {
        let id = 1_000 + k;
        c.request(leader, id, get(&format!("k{k}"))).unwrap();
        assert_eq!(
            reply_to(&mut c, id),
            Ok(Response::Value(expected[k as usize].clone()))
        );
    }
    // The session survived too: a retry of the last write is answered, not executed.
    c.request(leader, 2_000, write(session, 150, append("k0", "x")))
        .unwrap();
    assert_eq!(reply_to(&mut c, 2_000), DONE);
    assert_eq!(value(&c, leader, "k0"), expected[0]);
}

#[test]
fn no_snapshot_without_max_raft_state() {
    let mut c = cluster(3, |_| {});
    let leader = elect(&mut c);
    let session = register(&mut c, leader, 1);
    for seq in 1..=100 {
        c.request(leader, 10 + seq, write(session, seq, put("k", "v")))
            .unwrap();
    }
    settle(&mut c);
    for node in c.ids() {
        assert!(c.disk(node).unwrap().snapshot.is_none());
        assert!(c.core(node).unwrap().raft_state_size() > 1_000);
    }
}

#[test]
fn a_lagging_follower_catches_up_from_a_snapshot() {
    let mut c = cluster(3, |config| {
        config.max_raft_state = Some(600);
        config.raft.snapshot_chunk_bytes = 64;
    });
    let leader = elect(&mut c);
    let session = register(&mut c, leader, 1);
    settle(&mut c);
    let lagging = c.ids().into_iter().find(|&n| n != leader).unwrap();
    c.isolate(lagging);
    for seq in 1..=60 {
        c.request(leader, 10 + seq, write(session, seq, append("k", "y")))
            .unwrap();
    }
    let compacted = c.core(leader).unwrap().raft().status().snapshot_index;
    assert!(compacted > c.core(lagging).unwrap().raft().status().last_index);
    c.heal();
    settle(&mut c);
    settle(&mut c);
    let lagging_core = c.core(lagging).unwrap();
    assert!(lagging_core.raft().status().snapshot_index >= compacted);
    assert_eq!(value(&c, lagging, "k"), Some(b"y".repeat(60)));
    assert_eq!(
        lagging_core.machine().snapshot(),
        c.core(leader).unwrap().machine().snapshot()
    );
}

/// A snapshot from the leader that cannot be loaded makes the replica refuse to serve, instead
/// of serving from a state it cannot trust.
#[test]
fn an_unloadable_snapshot_makes_the_replica_unavailable() {
    let mut c = cluster(3, |_| {});
    let leader = elect(&mut c);
    settle(&mut c);
    let follower = c.ids().into_iter().find(|&n| n != leader).unwrap();
    let status = c.core(leader).unwrap().raft().status();
    c.deliver(Message {
        from: leader,
        to: follower,
        term: status.term,
        body: MessageBody::InstallSnapshotRequest {
            meta: SnapshotMeta {
                last_index: status.last_index + 10,
                last_term: status.term,
            },
            offset: 0,
            data: b"not a snapshot".to_vec(),
            done: true,
        },
    });
    c.run_actions().unwrap();
    assert!(c.core(follower).unwrap().status().unavailable);
    c.network_mut().clear();
    c.submit(follower, 1, get("k")).unwrap();
    c.run_actions().unwrap();
    assert_eq!(reply_to(&mut c, 1), Err(KvError::Unavailable));
}

#[test]
fn status_is_answered_at_once_by_leader_and_followers_without_touching_the_log() {
    let mut c = cluster(3, |_| {});
    let leader = elect(&mut c);
    let session = register(&mut c, leader, 1);
    c.request(leader, 2, write(session, 1, put("k", "v")))
        .unwrap();
    assert_eq!(reply_to(&mut c, 2), DONE);
    settle(&mut c);
    let before = last_index(&c, leader);
    for (id, node) in (10..).zip(c.ids()) {
        c.request(node, id, ClientRequest::Status).unwrap();
        let Ok(Response::Status(status)) = reply_to(&mut c, id) else {
            panic!("node {node} answers a status");
        };
        assert_eq!(status.id, node);
        let expected_role = if node == leader { "leader" } else { "follower" };
        assert_eq!(status.role, expected_role, "node {node}");
        assert_eq!(status.leader, Some(leader), "node {node}");
        assert_eq!(status.last_index, before, "node {node}");
        assert_eq!(status.applied_index, before, "node {node}");
        assert_eq!(status.commit_index, before, "node {node}");
        assert_eq!((status.keys, status.sessions), (1, 1), "node {node}");
        let core = c.core(node).unwrap();
        assert_eq!(status.term, core.raft().term());
        assert_eq!(status.raft_state_bytes, core.raft_state_size());
        assert!(status.raft_state_bytes > 0);
        assert!(!status.unavailable);
    }
    assert_eq!(last_index(&c, leader), before, "a status adds no log entry");
}
