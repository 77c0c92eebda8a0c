//! Basic vocabulary of the protocol: ids, terms, indexes, log entries and the durable hard state.

use serde::{Deserialize, Serialize};

/// Identifies one member of a Raft cluster. Ids are chosen by the user and must be unique.
pub type NodeId = u64;

/// A Raft term: a logical clock that increases with every election.
pub type Term = u64;

/// A logical position in the replicated log. The first entry has index 1; index 0 means
/// "before the first entry" (its term is 0).
pub type LogIndex = u64;

/// What a log entry carries.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Payload {
    /// An empty entry a new leader appends to commit the entries of earlier terms
    /// (Raft §5.4.2). Services skip it when applying.
    Noop,
    /// An opaque command proposed by the service.
    Command(#[serde(with = "serde_bytes")] Vec<u8>),
}

/// One entry of the replicated log.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entry {
    /// Position of the entry in the log.
    pub index: LogIndex,
    /// Term of the leader that created the entry.
    pub term: Term,
    /// The entry's content.
    pub payload: Payload,
}

impl Entry {
    /// Approximate size of the entry in bytes, used for batching limits: the payload plus the
    /// fixed-size header.
    pub fn size_hint(&self) -> usize {
        const HEADER: usize = 16;
        HEADER
            + match &self.payload {
                Payload::Noop => 0,
                Payload::Command(data) => data.len(),
            }
    }

    /// The command bytes, or `None` for a no-op entry.
    pub fn command(&self) -> Option<&[u8]> {
        match &self.payload {
            Payload::Noop => None,
            Payload::Command(data) => Some(data),
        }
    }
}

/// The part of a node's state that must survive a crash besides the log: the current term and
/// the vote cast in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HardState {
    /// The latest term this node has seen.
    pub term: Term,
    /// The candidate this node voted for in `term`, if any.
    pub voted_for: Option<NodeId>,
}

/// Identifies the state a snapshot captures: the last log entry folded into it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// Index of the last entry the snapshot covers.
    pub last_index: LogIndex,
    /// Term of that entry.
    pub last_term: Term,
}

/// A snapshot of the service's state machine, replacing the log up to `meta.last_index`.
///
/// The bytes are opaque to Raft: the service produces them in
/// [`RaftNode::compact`](crate::RaftNode::compact) and receives them back in
/// [`Action::InstallSnapshot`](crate::Action::InstallSnapshot).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Snapshot {
    /// Which log prefix the snapshot replaces.
    pub meta: SnapshotMeta,
    /// The service's serialized state after applying entries `1..=meta.last_index`.
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}
