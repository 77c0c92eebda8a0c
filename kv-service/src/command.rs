//! What the service writes into the Raft log.

use serde::{Deserialize, Serialize};

use crate::codec::{Kind, Wire};
use crate::protocol::{Seq, SessionId, WriteOp};

/// One log entry's command, stamped with the proposing leader's clock.
///
/// Replicas expire sessions by these stamps alone (never by their own clocks), so every replica
/// expires the same sessions at the same log position. A leader stamps
/// `max(its clock, the last stamp it applied or proposed)`, so stamps never decrease along the
/// log even when leaders' clocks disagree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogCommand {
    /// The leader's clock when it proposed the entry, in milliseconds.
    pub stamp_ms: u64,
    /// What to do.
    pub command: Command,
}

impl Wire for LogCommand {
    const KIND: Kind = Kind::Command;
}

/// A replicated command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Opens a session whose id is this entry's log index.
    RegisterSession,
    /// Refreshes a session.
    KeepAlive {
        /// The session.
        session: SessionId,
    },
    /// A write of a session, executed once per `(session, seq)`.
    Write {
        /// The session.
        session: SessionId,
        /// The request's number in the session.
        seq: Seq,
        /// The lowest sequence the client still waits for.
        lowest_unacked: Seq,
        /// The write.
        op: WriteOp,
    },
}
