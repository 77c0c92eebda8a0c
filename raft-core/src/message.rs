//! Messages exchanged between Raft nodes. Every message is one-way: a reply is simply another
//! message. Messages are plain `serde` values, so any transport can frame them.

use serde::{Deserialize, Serialize};

use crate::types::{Entry, LogIndex, NodeId, SnapshotMeta, Term};

/// A message from one node to another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The sender.
    pub from: NodeId,
    /// The intended receiver.
    pub to: NodeId,
    /// The sender's current term when it sent the message.
    pub term: Term,
    /// What the message says.
    pub body: MessageBody,
}

/// The kinds of message of the protocol.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageBody {
    /// Pre-vote: a would-be candidate asks whether the receiver would vote for it in
    /// `Message::term` (its current term + 1). Neither side changes its term.
    PreVoteRequest {
        /// Index of the sender's last log entry.
        last_log_index: LogIndex,
        /// Term of the sender's last log entry.
        last_log_term: Term,
    },
    /// The answer to a `PreVoteRequest`. When granted, `Message::term` echoes the request's
    /// term; when refused, it is the voter's own term.
    PreVoteResponse {
        /// Whether the voter would vote for the sender.
        granted: bool,
    },
    /// RequestVote: a candidate asks for the receiver's vote in `Message::term`.
    VoteRequest {
        /// Index of the candidate's last log entry.
        last_log_index: LogIndex,
        /// Term of the candidate's last log entry.
        last_log_term: Term,
    },
    /// The answer to a `VoteRequest`.
    VoteResponse {
        /// Whether the vote was granted.
        granted: bool,
    },
    /// AppendEntries: the leader replicates entries (none for a heartbeat).
    AppendRequest {
        /// Index of the entry just before `entries`.
        prev_log_index: LogIndex,
        /// Term of that entry.
        prev_log_term: Term,
        /// Entries to store, consecutive from `prev_log_index + 1`.
        entries: Vec<Entry>,
        /// The leader's commit index.
        leader_commit: LogIndex,
        /// The leader's latest read-confirmation round (0 before any); echoed in the answer so
        /// the leader knows which rounds the follower has confirmed (ReadIndex).
        read_seq: u64,
    },
    /// The answer to an `AppendRequest`.
    AppendResponse {
        /// The term of the request this answers (`Message::term` is the sender's own term,
        /// which is higher when it answers a stale request). A leader counts an answer, for
        /// replication, reads, leases and check-quorum alike, only when this is its current
        /// term: a node leads a term at most once, so the answer then belongs to this very
        /// leadership and not to an earlier one of the same node.
        request_term: Term,
        /// Whether the entries were accepted.
        result: AppendResult,
        /// The request's `read_seq`, echoed.
        read_seq: u64,
    },
    /// One chunk of the leader's snapshot, for a follower that needs entries the leader has
    /// compacted. Chunks are sent in order, one at a time; `offset` is where `data` starts in
    /// the snapshot's bytes.
    InstallSnapshotRequest {
        /// The snapshot being transferred.
        meta: SnapshotMeta,
        /// Position of `data` in the snapshot's bytes.
        offset: u64,
        /// The chunk.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        /// Whether this is the last chunk.
        done: bool,
    },
    /// The answer to an `InstallSnapshotRequest`.
    InstallSnapshotResponse {
        /// The term of the request this answers (see `AppendResponse::request_term`).
        request_term: Term,
        /// The `meta.last_index` of the snapshot the answer is about.
        last_index: LogIndex,
        /// What the follower holds now.
        result: SnapshotResult,
    },
    /// A follower asks the leader to confirm a read (ReadIndex forwarding).
    ReadIndexRequest {
        /// The follower's id for this forwarding, echoed in the answer. It is not the
        /// service's [`ReadId`](crate::ReadId): the follower draws it from a sequence that starts at a random
        /// point at every start, so an answer to a request of an earlier incarnation of the
        /// follower (a service may reuse its read ids after a restart) matches nothing.
        id: u64,
    },
    /// The leader's answer to a `ReadIndexRequest`.
    ReadIndexResponse {
        /// The forwarding id of the request.
        id: u64,
        /// The read index once confirmed, or `None` when the leader could not confirm it.
        index: Option<LogIndex>,
    },
}

/// The outcome of an `InstallSnapshotRequest` at the follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotResult {
    /// The follower holds (durably) a state covering `last_index`: the snapshot was installed,
    /// or the follower had already committed that far.
    Installed,
    /// The follower holds the snapshot's bytes before `next_offset` and expects the chunk
    /// starting there.
    Continue {
        /// The offset of the next chunk the follower expects.
        next_offset: u64,
    },
}

/// The outcome of an `AppendRequest` at the follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppendResult {
    /// The follower's log matches the leader's up to and including `match_index`, and those
    /// entries are durable on the follower.
    Accepted {
        /// The last index this request proved to match (`prev_log_index + entries.len()`),
        /// not the follower's last index: later entries may be stale.
        match_index: LogIndex,
    },
    /// The consistency check failed at `prev_log_index`.
    Rejected {
        /// The `prev_log_index` of the rejected request, so stale rejections can be told apart.
        prev_log_index: LogIndex,
        /// Term of the follower's conflicting entry at `prev_log_index`, or `None` when the
        /// follower's log is too short to hold it.
        conflict_term: Option<Term>,
        /// With `conflict_term`: the first index the follower holds with that term. Without it:
        /// the follower's last index + 1 (its log length).
        conflict_index: LogIndex,
    },
}

impl Message {
    /// Whether the message asks for an answer (a request rather than a response). Transports
    /// and simulators use this for accounting; the protocol does not need it.
    pub fn is_request(&self) -> bool {
        matches!(
            self.body,
            MessageBody::PreVoteRequest { .. }
                | MessageBody::VoteRequest { .. }
                | MessageBody::AppendRequest { .. }
                | MessageBody::InstallSnapshotRequest { .. }
                | MessageBody::ReadIndexRequest { .. }
        )
    }
}
