//! Messages exchanged between Raft nodes. Every message is one-way: a reply is simply another
//! message. Messages are plain `serde` values, so any transport can frame them.

use serde::{Deserialize, Serialize};

use crate::types::{Entry, LogIndex, NodeId, Term};

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
    },
    /// The answer to an `AppendRequest`.
    AppendResponse(AppendResult),
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
        )
    }
}
