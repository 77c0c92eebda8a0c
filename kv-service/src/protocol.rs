//! What clients and servers say to each other: requests, replies and errors.
//!
//! These are plain `serde` values; [`codec`](crate::codec) turns them into versioned bytes. The
//! same types travel over QUIC in the real server and between cores in the simulator.

use raft_core::NodeId;
use serde::{Deserialize, Serialize};

use crate::codec::CodecError;

/// A client session. Its id is the log index of the entry that registered it, so it comes from
/// the log (never from a clock or a random number) and is never reused.
pub type SessionId = u64;

/// A request's number within its session. A retry carries the same number.
pub type Seq = u64;

/// Identifies one request handed to a service core; chosen by the driver (for instance from the
/// connection and the RPC id) and echoed in the reply, so the driver can route it.
pub type RequestId = u64;

/// A change to the store, executed exactly once per (session, sequence).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteOp {
    /// Sets `key` to `value`.
    Put {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The new value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// Appends `value` to the value of `key`; acts as [`WriteOp::Put`] when `key` is absent.
    Append {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The bytes to append.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// Removes `key`.
    Delete {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Sets `key` to `new` if its current value is `expected` (`None`: the key is absent).
    CompareAndSwap {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The value the key must hold (`None`: the key must be absent).
        #[serde(with = "serde_bytes")]
        expected: Option<Vec<u8>>,
        /// The value to store when the comparison holds.
        #[serde(with = "serde_bytes")]
        new: Vec<u8>,
    },
}

impl WriteOp {
    /// The key the operation changes.
    pub fn key(&self) -> &[u8] {
        match self {
            WriteOp::Put { key, .. }
            | WriteOp::Append { key, .. }
            | WriteOp::Delete { key }
            | WriteOp::CompareAndSwap { key, .. } => key,
        }
    }
}

/// The result of a [`WriteOp`]. Recorded in the session so that a retry gets the same answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteOutput {
    /// A `Put` or `Append` took effect.
    Done,
    /// A `Delete` took effect; `existed` says whether the key was present.
    Deleted {
        /// Whether the key was present before.
        existed: bool,
    },
    /// A `CompareAndSwap` was evaluated.
    Swapped {
        /// Whether the value was replaced.
        swapped: bool,
        /// The value before the operation (`None`: absent).
        #[serde(with = "serde_bytes")]
        previous: Option<Vec<u8>>,
    },
}

/// A client's request to a server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientRequest {
    /// Opens a session (through the log). Answered with [`Response::SessionRegistered`].
    RegisterSession,
    /// Keeps an idle session alive (through the log). Answered with [`Response::KeptAlive`].
    KeepAlive {
        /// The session to refresh.
        session: SessionId,
    },
    /// A write, executed exactly once per `(session, seq)`. Answered with
    /// [`Response::Written`].
    Write {
        /// The client's session.
        session: SessionId,
        /// The request's number; a retry reuses it.
        seq: Seq,
        /// The lowest sequence number the client still waits for (at most `seq`): the service
        /// forgets the replies below it.
        lowest_unacked: Seq,
        /// What to do.
        op: WriteOp,
    },
    /// A linearizable read (ReadIndex, never through the log). Answered with
    /// [`Response::Value`]. Reads need no session: they change nothing.
    Get {
        /// The key to read.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// This server's view of itself and the cluster, answered at once from local state (not
    /// linearizable; for monitoring). Answered with [`Response::Status`].
    Status,
}

/// A successful answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The session was registered with this id.
    SessionRegistered {
        /// The new session's id.
        session: SessionId,
    },
    /// The session was refreshed.
    KeptAlive,
    /// The write was executed (now or, for a retry, before) with this result.
    Written(WriteOutput),
    /// The value of the key read (`None`: absent, which differs from an empty value).
    Value(#[serde(with = "serde_bytes")] Option<Vec<u8>>),
    /// The server's status.
    Status(NodeStatus),
}

/// One server's view of itself, as `kv status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The server's node id.
    pub id: NodeId,
    /// Its role: `follower`, `pre-candidate`, `candidate` or `leader`.
    pub role: String,
    /// Its current term.
    pub term: u64,
    /// The leader of the current term, if it knows one.
    pub leader: Option<NodeId>,
    /// Highest index it knows committed.
    pub commit_index: u64,
    /// Highest index its state machine applied.
    pub applied_index: u64,
    /// Index of its last log entry.
    pub last_index: u64,
    /// Last index its snapshot covers (0 without one).
    pub snapshot_index: u64,
    /// Size of its persisted Raft state (hard state and log), in bytes.
    pub raft_state_bytes: u64,
    /// Size of its latest snapshot's data, in bytes.
    pub snapshot_bytes: u64,
    /// Number of keys stored.
    pub keys: u64,
    /// Number of live client sessions.
    pub sessions: u64,
    /// Whether it stopped serving because a snapshot from the leader could not be loaded.
    pub unavailable: bool,
    /// How it serves reads as leader: `read-index` (a confirmation round per batch of reads)
    /// or `lease` (`kv-server --lease-reads`).
    pub read_mode: String,
}

/// A server's answer to a [`ClientRequest`].
pub type Reply = Result<Response, KvError>;

/// Why a request did not succeed. Each variant says whether the request may have been executed;
/// [`KvError::is_retryable`] tells a client whether retrying the same request can help.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum KvError {
    /// This server does not lead; the request was not proposed here. Retry at `leader_hint` if
    /// known, else at another server.
    #[error("not the leader (leader hint: {leader_hint:?})")]
    NotLeader {
        /// The leader this server knows of, if any.
        leader_hint: Option<NodeId>,
    },
    /// Too many requests wait at this server; nothing was proposed. Retry later.
    #[error("server busy: too many requests waiting")]
    Busy,
    /// The request is larger than the server accepts; nothing was proposed. Retrying cannot
    /// help.
    #[error("request of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The request's encoded size.
        size: u64,
        /// The server's limit.
        limit: u64,
    },
    /// The session is unknown or has expired: this request was not executed (an earlier copy
    /// of it may have been, before the session expired). The session will never come back.
    #[error("session expired or unknown")]
    SessionExpired,
    /// The server cannot tell whether the request took effect (leadership changed, or another
    /// entry took its place in the log). Retry the same request: sessions make that safe.
    #[error("outcome unknown at this server, retry: {reason:?}")]
    Retry {
        /// What happened.
        reason: RetryReason,
    },
    /// `seq` is below the session's lowest unacknowledged sequence: the client said it no
    /// longer waits for it, so its reply is gone. Not executed now.
    #[error("sequence {seq} is below the lowest unacknowledged sequence {lowest_unacked}")]
    StaleRequest {
        /// The request's sequence.
        seq: Seq,
        /// The session's lowest unacknowledged sequence.
        lowest_unacked: Seq,
    },
    /// `seq` is too far ahead of the session's lowest unacknowledged sequence (the client's
    /// pipelining window is larger than the server's). Not executed.
    #[error("sequence {seq} is beyond the window of {window} after {lowest_unacked}")]
    WindowExceeded {
        /// The request's sequence.
        seq: Seq,
        /// The session's lowest unacknowledged sequence.
        lowest_unacked: Seq,
        /// The server's window.
        window: u64,
    },
    /// The request's `lowest_unacked` is above its own `seq`. Not executed.
    #[error("lowest unacknowledged sequence {lowest_unacked} is above the request's {seq}")]
    BadSequence {
        /// The request's sequence.
        seq: Seq,
        /// The request's lowest unacknowledged sequence.
        lowest_unacked: Seq,
    },
    /// The request (or the log entry carrying it) could not be decoded, for instance because
    /// client and server speak different protocol versions. Not executed.
    #[error("cannot decode: {0}")]
    Codec(CodecError),
    /// The server cannot serve (its state machine failed to load a snapshot). Try another.
    #[error("server unavailable")]
    Unavailable,
}

/// Why a server cannot tell the outcome of a request ([`KvError::Retry`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RetryReason {
    /// The server stopped leading (or a new term began) before the request's entry applied.
    LeadershipLost,
    /// Another entry took the request's place in the log, or a snapshot covered it.
    Superseded,
    /// The read could not be confirmed in time.
    ReadTimeout,
}

impl KvError {
    /// Whether retrying the same request (possibly at another server) can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            KvError::NotLeader { .. }
                | KvError::Busy
                | KvError::Retry { .. }
                | KvError::Unavailable
        )
    }
}
