//! The driver's metrics, through the [`metrics`](::metrics) facade: a binary installs an
//! exporter (Prometheus, for example); without one they cost next to nothing.
//!
//! | name | kind | what |
//! |---|---|---|
//! | `raft_term` | gauge | current term |
//! | `raft_role` | gauge | 0 follower, 1 pre-candidate, 2 candidate, 3 leader |
//! | `raft_leader` | gauge | the leader's id (0: unknown) |
//! | `raft_commit_index`, `raft_applied_index`, `raft_last_index`, `raft_durable_index`, `raft_snapshot_index` | gauge | the node's indexes |
//! | `raft_messages_sent_total{peer}` | counter | messages handed to the transport |
//! | `raft_send_failures_total{peer}` | counter | messages the transport refused at once |
//! | `raft_messages_received_total` | counter | messages stepped |
//! | `raft_requests_total` | counter | client requests handed to the service |
//! | `raft_persist_updates_total`, `raft_persist_writes_total` | counter | persists emitted, and writes after folding |
//! | `raft_entries_applied_total` | counter | committed entries applied |
//! | `raft_fsync_seconds` | histogram | time of one durable write |
//! | `raft_apply_seconds` | histogram | time the service took for one state-machine action |

use std::collections::HashMap;
use std::time::Duration;

use ::metrics::{counter, gauge, histogram, Counter};
use raft_core::{NodeId, Role, Status};

/// Publishes the node's status as gauges.
pub fn status(status: &Status) {
    gauge!("raft_term").set(status.term as f64);
    let role = match status.role {
        Role::Follower => 0.0,
        Role::PreCandidate => 1.0,
        Role::Candidate => 2.0,
        Role::Leader => 3.0,
    };
    gauge!("raft_role").set(role);
    gauge!("raft_leader").set(status.leader_id.unwrap_or(0) as f64);
    gauge!("raft_commit_index").set(status.commit_index as f64);
    gauge!("raft_applied_index").set(status.applied_index as f64);
    gauge!("raft_last_index").set(status.last_index as f64);
    gauge!("raft_durable_index").set(status.durable_index as f64);
    gauge!("raft_snapshot_index").set(status.snapshot_index as f64);
}

/// A backlog of `updates` persists went out as `writes` writes.
pub fn persist_batch(updates: usize, writes: usize) {
    counter!("raft_persist_updates_total").increment(updates as u64);
    counter!("raft_persist_writes_total").increment(writes as u64);
}

/// One durable write took `elapsed`.
pub fn fsync(elapsed: Duration) {
    histogram!("raft_fsync_seconds").record(elapsed.as_secs_f64());
}

/// One state-machine action took `elapsed` and applied `entries` entries.
pub fn apply(elapsed: Duration, entries: usize) {
    histogram!("raft_apply_seconds").record(elapsed.as_secs_f64());
    counter!("raft_entries_applied_total").increment(entries as u64);
}

/// Per-peer message counters, registered once per peer.
#[derive(Default)]
pub struct PeerCounters {
    sent: HashMap<NodeId, Counter>,
    failed: HashMap<NodeId, Counter>,
}

impl PeerCounters {
    /// A message to `peer` was handed to the transport (`ok`) or refused at once.
    pub fn sent(&mut self, peer: NodeId, ok: bool) {
        let (map, name) = if ok {
            (&mut self.sent, "raft_messages_sent_total")
        } else {
            (&mut self.failed, "raft_send_failures_total")
        };
        map.entry(peer)
            .or_insert_with(|| counter!(name, "peer" => peer.to_string()))
            .increment(1);
    }
}
