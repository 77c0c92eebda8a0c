//! Error types of the core.

use crate::log::LogError;
use crate::types::{LogIndex, NodeId, Term};

/// A configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The voter list is empty.
    #[error("the cluster has no voters")]
    NoVoters,
    /// The node's own id is not among the voters.
    #[error("node {0} is not in its own voter list")]
    SelfNotVoter(NodeId),
    /// A voter id appears twice.
    #[error("voter {0} is listed twice")]
    DuplicateVoter(NodeId),
    /// The election timeout range is empty or zero.
    #[error("election timeout range [{min}, {max}) ticks is empty or starts at 0")]
    ElectionTimeout {
        /// The configured lower bound.
        min: u32,
        /// The configured upper bound.
        max: u32,
    },
    /// The heartbeat interval is zero or not below the election timeout.
    #[error("heartbeat interval {heartbeat} must be at least 1 and below the election timeout minimum {election_min}")]
    HeartbeatInterval {
        /// The configured heartbeat interval.
        heartbeat: u32,
        /// The configured minimum election timeout.
        election_min: u32,
    },
    /// `max_inflight_appends` or `max_inflight_bytes` is zero, so nothing could ever be
    /// replicated.
    #[error("max_inflight_appends and max_inflight_bytes must be at least 1")]
    ZeroInflight,
    /// Lease reads rely on check-quorum's leader lease.
    #[error("lease_reads requires check_quorum")]
    LeaseWithoutCheckQuorum,
    /// `snapshot_chunk_bytes` is zero, so no snapshot could ever be sent.
    #[error("snapshot_chunk_bytes must be at least 1")]
    ZeroSnapshotChunk,
}

/// Why a node could not be rebuilt from its durable state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The stored log is not a valid log.
    #[error("stored log is inconsistent: {0}")]
    Log(#[from] LogError),
    /// The stored vote names a node outside the cluster.
    #[error("stored vote for {0}, which is not a voter")]
    UnknownVote(NodeId),
    /// The stored log holds entries from a term later than the stored current term.
    #[error("stored log has an entry of term {log_term}, after the stored current term {term}")]
    LogAheadOfTerm {
        /// The stored current term.
        term: Term,
        /// The last term found in the log.
        log_term: Term,
    },
}

/// Why a proposal was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// Only the leader accepts proposals. `leader_hint` is the leader this node last heard
    /// from in its current term, if any.
    #[error("not the leader (leader hint: {leader_hint:?})")]
    NotLeader {
        /// Where to retry, if known.
        leader_hint: Option<NodeId>,
    },
}

/// Why a persist update cannot be applied to durable state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    /// The update's entries do not start right after what is stored (after its truncation).
    #[error("persist update appends at index {found}, but the stored log continues at {expected}")]
    Gap {
        /// Where the stored log continues.
        expected: LogIndex,
        /// Where the update's entries start.
        found: LogIndex,
    },
    /// The update's snapshot is not newer than the stored one.
    #[error("persist update carries a snapshot up to {found}, not newer than the stored one up to {stored}")]
    StaleSnapshot {
        /// Last index of the stored snapshot.
        stored: LogIndex,
        /// Last index of the update's snapshot.
        found: LogIndex,
    },
    /// The update truncates entries that a snapshot already covers.
    #[error("persist update truncates from {cut}, inside the snapshot up to {snapshot_index}")]
    TruncateCompacted {
        /// Where the truncation starts.
        cut: LogIndex,
        /// Last index of the snapshot.
        snapshot_index: LogIndex,
    },
}

/// Why the service's request to compact the log was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CompactError {
    /// The log is already compacted up to `snapshot_index`, at or beyond the request.
    #[error("log already compacted up to {snapshot_index}; cannot compact to {index}")]
    AlreadyCompacted {
        /// The requested index.
        index: LogIndex,
        /// Where the current snapshot ends.
        snapshot_index: LogIndex,
    },
    /// The index has not been handed to the service for applying yet, so the service's state
    /// cannot include it.
    #[error("cannot compact to {index}: only entries up to {applied_index} have been applied")]
    NotApplied {
        /// The requested index.
        index: LogIndex,
        /// The highest index handed to the service.
        applied_index: LogIndex,
    },
}

/// Why a read requested with [`RaftNode::read_index`](crate::RaftNode::read_index) failed.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize,
)]
pub enum ReadError {
    /// This node does not lead and knows no leader to ask (or forwarding is off).
    #[error("not the leader and no leader known (leader hint: {leader_hint:?})")]
    NotLeader {
        /// Where to retry, if known.
        leader_hint: Option<NodeId>,
    },
    /// Leadership changed before the read could be confirmed.
    #[error("leadership changed before the read was confirmed")]
    LeadershipLost,
    /// No answer from the leader within an election timeout.
    #[error("the leader did not confirm the read in time")]
    Timeout,
}
