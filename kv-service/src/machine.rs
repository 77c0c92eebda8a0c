//! [`KvStateMachine`]: the store and its sessions, applied one log entry at a time.

use std::collections::BTreeMap;

use raft_core::{Entry, LogIndex};
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use crate::codec::{self, CodecError, Kind};
use crate::command::{Command, LogCommand};
use crate::protocol::{KvError, Reply, Response, Seq, SessionId, WriteOp, WriteOutput};
use crate::session::{Session, SessionTable};

/// The replicated rules of sessions. **Every replica must use the same values**: they decide
/// which requests execute, so replicas with different values would diverge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MachineConfig {
    /// A session expires once an entry is applied whose stamp is more than this many
    /// milliseconds after the session's last activity.
    pub session_timeout_ms: u64,
    /// At most this many sessions; registering one more evicts the least recently active.
    pub max_sessions: usize,
    /// A session's requests execute only when `seq < lowest_unacked + window`; so a session keeps
    /// at most `window` replies. Clients must pipeline at most this many writes.
    pub window: u64,
}

impl Default for MachineConfig {
    /// One-minute sessions, 10 000 of them, windows of 64 requests.
    fn default() -> Self {
        Self {
            session_timeout_ms: 60_000,
            max_sessions: 10_000,
            window: 64,
        }
    }
}

/// The key/value store with its client sessions: a pure, deterministic function of the log.
///
/// Keys and values are bytes; a `Get` of an absent key (`None`) is distinguishable from an
/// empty value (`Some(vec![])`). Snapshots cover the data, every session, the last applied
/// index and the log clock, and encode deterministically: two replicas at the same index produce
/// the same bytes.
///
/// ```
/// use kv_service::{Command, KvStateMachine, LogCommand, MachineConfig, Response, WriteOp};
///
/// let mut kv = KvStateMachine::new(MachineConfig::default());
/// let register = LogCommand { stamp_ms: 0, command: Command::RegisterSession };
/// assert_eq!(kv.apply_command(1, &register), Ok(Response::SessionRegistered { session: 1 }));
/// let append = |seq| LogCommand {
///     stamp_ms: 10,
///     command: Command::Write {
///         session: 1,
///         seq,
///         lowest_unacked: seq,
///         op: WriteOp::Append { key: b"k".to_vec(), value: b"x".to_vec() },
///     },
/// };
/// kv.apply_command(2, &append(1)).unwrap();
/// kv.apply_command(3, &append(1)).unwrap(); // a retry: answered, not executed again
/// assert_eq!(kv.get(b"k"), Some(&b"x"[..]));
/// assert_eq!(kv.get(b"absent"), None);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvStateMachine {
    config: MachineConfig,
    data: BTreeMap<Vec<u8>, Vec<u8>>,
    sessions: SessionTable,
    applied_index: LogIndex,
    clock_ms: u64,
    undecodable: u64,
}

/// What a snapshot holds, borrowed for encoding.
#[derive(Serialize)]
struct SnapshotRef<'a> {
    applied_index: LogIndex,
    clock_ms: u64,
    data: &'a BTreeMap<Vec<u8>, Vec<u8>>,
    sessions: &'a BTreeMap<SessionId, Session>,
}

/// What a snapshot holds, owned for decoding. Same layout as [`SnapshotRef`].
#[derive(Deserialize)]
struct SnapshotOwned {
    applied_index: LogIndex,
    clock_ms: u64,
    data: BTreeMap<Vec<u8>, Vec<u8>>,
    sessions: BTreeMap<SessionId, Session>,
}

impl KvStateMachine {
    /// An empty store with no sessions, before the first log entry.
    pub fn new(config: MachineConfig) -> Self {
        Self {
            config,
            data: BTreeMap::new(),
            sessions: SessionTable::default(),
            applied_index: 0,
            clock_ms: 0,
            undecodable: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &MachineConfig {
        &self.config
    }

    /// Index of the last entry applied (or covered by the restored snapshot).
    pub fn applied_index(&self) -> LogIndex {
        self.applied_index
    }

    /// The log clock: the highest stamp applied so far, in milliseconds.
    pub fn clock_ms(&self) -> u64 {
        self.clock_ms
    }

    /// The value of `key`, or `None` if absent.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.data.get(key).map(Vec::as_slice)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the store holds no key.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The sessions.
    pub fn sessions(&self) -> &SessionTable {
        &self.sessions
    }

    /// Number of command entries that could not be decoded (and were skipped) since this value
    /// was created; not part of snapshots.
    pub fn undecodable_entries(&self) -> u64 {
        self.undecodable
    }

    /// The recorded reply of `(session, seq)`, if that request executed and its reply is still
    /// kept. A server may answer a retry with it directly: the request took effect exactly once.
    pub fn cached_reply(&self, session: SessionId, seq: Seq) -> Option<&WriteOutput> {
        self.sessions.get(session)?.replies.get(&seq)
    }

    /// Applies a committed log entry. Returns `None` for a no-op entry or an entry at or below
    /// the applied index (already covered), else the command's reply. A command that cannot be
    /// decoded changes nothing but the applied index, on every replica alike, and is answered
    /// with [`KvError::Codec`].
    pub fn apply(&mut self, entry: &Entry) -> Option<Reply> {
        if entry.index <= self.applied_index {
            return None;
        }
        let Some(bytes) = entry.command() else {
            self.applied_index = entry.index;
            return None;
        };
        match codec::decode::<LogCommand>(bytes) {
            Ok(command) => Some(self.apply_command(entry.index, &command)),
            Err(error) => {
                warn!(index = entry.index, %error, "skipping a log command that cannot be decoded");
                self.undecodable += 1;
                self.applied_index = entry.index;
                Some(Err(KvError::Codec(error)))
            }
        }
    }

    /// Applies a decoded command found at log `index`.
    pub fn apply_command(&mut self, index: LogIndex, command: &LogCommand) -> Reply {
        self.applied_index = self.applied_index.max(index);
        self.clock_ms = self.clock_ms.max(command.stamp_ms);
        let now = self.clock_ms;
        let expired = self.sessions.expire(now, self.config.session_timeout_ms);
        if !expired.is_empty() {
            debug!(index, now, ?expired, "sessions expired");
        }
        match &command.command {
            Command::RegisterSession => {
                let evicted = self.sessions.register(index, now, self.config.max_sessions);
                if !evicted.is_empty() {
                    debug!(index, ?evicted, "sessions evicted to make room");
                }
                Ok(Response::SessionRegistered { session: index })
            }
            Command::KeepAlive { session } => match self.sessions.touch(*session, now) {
                Some(_) => Ok(Response::KeptAlive),
                None => Err(KvError::SessionExpired),
            },
            Command::Write {
                session,
                seq,
                lowest_unacked,
                op,
            } => self.apply_write(*session, *seq, *lowest_unacked, op),
        }
    }

    fn apply_write(
        &mut self,
        session: SessionId,
        seq: Seq,
        lowest_unacked: Seq,
        op: &WriteOp,
    ) -> Reply {
        let window = self.config.window;
        let Some(s) = self.sessions.touch(session, self.clock_ms) else {
            return Err(KvError::SessionExpired);
        };
        s.acknowledge_below(lowest_unacked);
        if seq < s.lowest_unacked {
            return Err(KvError::StaleRequest {
                seq,
                lowest_unacked: s.lowest_unacked,
            });
        }
        if let Some(reply) = s.replies.get(&seq) {
            return Ok(Response::Written(reply.clone()));
        }
        if seq - s.lowest_unacked >= window {
            return Err(KvError::WindowExceeded {
                seq,
                lowest_unacked: s.lowest_unacked,
                window,
            });
        }
        let output = execute(&mut self.data, op);
        s.replies.insert(seq, output.clone());
        Ok(Response::Written(output))
    }

    /// The snapshot of the whole state: data, sessions, applied index and log clock.
    /// Deterministic: equal states give equal bytes.
    pub fn snapshot(&self) -> Vec<u8> {
        codec::encode_as(
            Kind::Snapshot,
            &SnapshotRef {
                applied_index: self.applied_index,
                clock_ms: self.clock_ms,
                data: &self.data,
                sessions: self.sessions.sessions(),
            },
        )
    }

    /// Rebuilds a state machine from [`snapshot`](Self::snapshot) bytes.
    pub fn restore(config: MachineConfig, bytes: &[u8]) -> Result<Self, CodecError> {
        let s: SnapshotOwned = codec::decode_as(Kind::Snapshot, bytes)?;
        Ok(Self {
            config,
            data: s.data,
            sessions: SessionTable::from_sessions(s.sessions),
            applied_index: s.applied_index,
            clock_ms: s.clock_ms,
            undecodable: 0,
        })
    }
}

/// Executes a write on the data.
fn execute(data: &mut BTreeMap<Vec<u8>, Vec<u8>>, op: &WriteOp) -> WriteOutput {
    match op {
        WriteOp::Put { key, value } => {
            data.insert(key.clone(), value.clone());
            WriteOutput::Done
        }
        WriteOp::Append { key, value } => {
            data.entry(key.clone())
                .or_default()
                .extend_from_slice(value);
            WriteOutput::Done
        }
        WriteOp::Delete { key } => WriteOutput::Deleted {
            existed: data.remove(key).is_some(),
        },
        WriteOp::CompareAndSwap { key, expected, new } => {
            let previous = data.get(key).cloned();
            let swapped = previous == *expected;
            if swapped {
                data.insert(key.clone(), new.clone());
            }
            WriteOutput::Swapped { swapped, previous }
        }
    }
}
