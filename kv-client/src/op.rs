//! What a user asks of the Clerk and what the Clerk answers.

use kv_service::{ClientRequest, KvError, NodeId, WriteOp, WriteOutput};
use serde::{Deserialize, Serialize};

/// Identifies an operation submitted to the Clerk; chosen by the user, unique among the
/// operations not yet finished.
pub type OpId = u64;

/// Identifies one transmission of a request; chosen by the Clerk and unique over its lifetime.
/// The driver hands it back with the reply (or the transport error) to that transmission.
pub type RequestId = u64;

/// An operation on the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operation {
    /// Reads a key (linearizable; no session needed).
    Get {
        /// The key.
        key: Vec<u8>,
    },
    /// Changes the store, exactly once.
    Write(WriteOp),
}

impl Operation {
    /// `Get(key)`.
    pub fn get(key: impl Into<Vec<u8>>) -> Self {
        Operation::Get { key: key.into() }
    }

    /// `Put(key, value)`.
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Operation::Write(WriteOp::Put {
            key: key.into(),
            value: value.into(),
        })
    }

    /// `Append(key, value)` (a `Put` when the key is absent).
    pub fn append(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Operation::Write(WriteOp::Append {
            key: key.into(),
            value: value.into(),
        })
    }

    /// `Delete(key)`.
    pub fn delete(key: impl Into<Vec<u8>>) -> Self {
        Operation::Write(WriteOp::Delete { key: key.into() })
    }

    /// `CompareAndSwap(key, expected, new)`; `expected: None` means "the key is absent".
    pub fn compare_and_swap(
        key: impl Into<Vec<u8>>,
        expected: Option<Vec<u8>>,
        new: impl Into<Vec<u8>>,
    ) -> Self {
        Operation::Write(WriteOp::CompareAndSwap {
            key: key.into(),
            expected,
            new: new.into(),
        })
    }

    /// Whether the operation changes the store (and so needs a session).
    pub fn is_write(&self) -> bool {
        matches!(self, Operation::Write(_))
    }
}

/// The result of a completed operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpOutput {
    /// The value read (`None`: the key is absent).
    Value(Option<Vec<u8>>),
    /// The write took effect exactly once, with this result.
    Written(WriteOutput),
}

/// A definite failure of an operation. The Clerk reports one only when it knows the outcome
/// cannot change any more.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ClerkError {
    /// The write may or may not have taken effect (exactly once if it did), and no server can
    /// tell any more: its session expired, or a server answered in a way that leaves the
    /// outcome open. The Clerk never re-issues such a write as a new operation.
    #[error("outcome unknown: the write may have taken effect once, or not at all ({cause})")]
    OutcomeUnknown {
        /// The server's answer that ended the retries.
        cause: KvError,
    },
    /// The request is larger than the servers accept; it did not take effect.
    #[error("request of {size} bytes exceeds the servers' limit of {limit} bytes")]
    TooLarge {
        /// The request's size as the server counted it.
        size: u64,
        /// The server's limit.
        limit: u64,
    },
}

/// One thing the driver must do for the Clerk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClerkAction {
    /// Send `message` to `server`; report the outcome with
    /// [`Clerk::on_reply`](crate::Clerk::on_reply) or
    /// [`Clerk::on_transport_error`](crate::Clerk::on_transport_error) and `request`. Sending
    /// nothing back is fine too: the Clerk times the request out.
    Send {
        /// This transmission's id.
        request: RequestId,
        /// The server to send to.
        server: NodeId,
        /// What to send.
        message: ClientRequest,
    },
    /// Operation `op` took effect (exactly once, for a write) with this result.
    Completed {
        /// The operation.
        op: OpId,
        /// Its result.
        output: OpOutput,
    },
    /// Operation `op` failed definitely.
    Failed {
        /// The operation.
        op: OpId,
        /// Why.
        error: ClerkError,
    },
}
