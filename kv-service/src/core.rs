//! [`ServiceCore`]: one replica of the KV service, sans-IO.
//!
//! The core owns a [`RaftNode`] and a [`KvStateMachine`]. Its inputs are method calls — a client
//! request ([`handle_request`](ServiceCore::handle_request)), a peer message
//! ([`step`](ServiceCore::step)), a clock tick ([`tick`](ServiceCore::tick)) and the news that a
//! write is durable ([`persisted`](ServiceCore::persisted)) — and its outputs are the
//! [`ServiceAction`]s returned by [`take_actions`](ServiceCore::take_actions): persist, send,
//! reply. It consumes the node's `Apply`, `InstallSnapshot`, `ReadReady` and `ReadFailed`
//! actions itself and passes `Persist` and `Send` through, in their order.
//!
//! # Ordering contract
//!
//! The driver runs raft-core's [ordering contract](raft_core::action) in lanes:
//! [`ServiceAction::Persist`]s in order, each atomically, reported with
//! [`persisted`](ServiceCore::persisted)`(update.id)` once durable; [`ServiceAction::Send`]s at
//! once (the node holds back any message that promises durable state until the write behind it
//! is reported); [`ServiceAction::Reply`]s at once. The core runs the state-machine lane itself
//! (it applies committed entries and releases reads when it takes the node's actions), so a
//! reply reports only committed state, durable on a majority, or a read confirmed by a
//! ReadIndex round: it need not wait for this node's writes.

//! # Requests
//!
//! - **Writes**, session registrations and keep-alives go through the log. The core remembers the
//!   `(index, term)` of each proposal and answers when that index applies: with the entry's
//!   result if the entry there has that term, else with [`KvError::Retry`]. A leader that loses
//!   leadership (or enters a new term) answers every waiting proposal with `Retry`: the client
//!   retries the same `(session, seq)` and the session makes that exactly-once. Two copies of one
//!   `(session, seq)` arriving while the first is in the log share one entry; a copy of a request
//!   that already executed is answered at once from the session's recorded reply.
//! - **Reads** go through [`RaftNode::read_index`], never through the log and never from local
//!   state alone. Reads that arrive between two [`take_actions`](ServiceCore::take_actions)
//!   share one read id (and raft-core lets reads share confirmation rounds).
//! - Bounds: requests larger than `max_request_bytes` get [`KvError::TooLarge`]; more than
//!   `max_pending_proposals` waiting proposals or `max_pending_reads` waiting reads get
//!   [`KvError::Busy`]; a follower answers [`KvError::NotLeader`] with the leader it knows.
//!
//! # Time
//!
//! The driver passes its clock (milliseconds, any origin, ideally shared by the servers) to
//! [`tick`](ServiceCore::tick) and [`handle_request`](ServiceCore::handle_request). It is used
//! only to stamp the commands this node proposes as leader, as
//! `max(clock, last stamp applied or proposed)`; replicas expire sessions by stamps alone.
//!
//! # Snapshots
//!
//! When the persisted Raft state reaches `max_raft_state` bytes, the core snapshots its state
//! machine and compacts the log up to the applied index. The size is the core's own accounting
//! of the persist actions it emitted, counted with [`raft_storage::size`] (see
//! `raft_size.rs`): the same figure as `Persister::raft_state_size`, without help from the
//! driver. A core restarted with [`ServiceCore::restore`] loads its state machine from the stored
//! snapshot before it serves anything.

use std::collections::BTreeMap;

use raft_core::{
    Action, CompactError, DurableState, Entry, LogIndex, Message, NodeId, PersistId, PersistUpdate,
    RaftNode, ReadError, ReadId, RestoreError, Snapshot, Status, Term,
};
use tracing::{debug, error, warn};

use crate::codec::{self, CodecError};
use crate::command::{Command, LogCommand};
use crate::config::{ServiceConfig, ServiceConfigError};
use crate::machine::KvStateMachine;
use crate::protocol::{
    ClientRequest, KvError, Reply, RequestId, Response, RetryReason, Seq, SessionId,
};
use crate::raft_size::RaftStateSize;

/// One thing the driver must do for the core, in order (see the [module docs](self)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceAction {
    /// Make this update durable, atomically, then report it with
    /// [`ServiceCore::persisted`].
    Persist(PersistUpdate),
    /// Deliver this message to `message.to` (best effort).
    Send(Message),
    /// Answer the request the driver handed in with this id.
    Reply {
        /// The driver's id of the request.
        id: RequestId,
        /// The answer.
        reply: Reply,
    },
}

/// Why a core could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ServiceConfigError),
    /// The Raft node could not be restored from the durable state.
    #[error(transparent)]
    Raft(#[from] RestoreError),
    /// The stored snapshot cannot be decoded.
    #[error("stored snapshot cannot be decoded: {0}")]
    Snapshot(#[from] CodecError),
    /// The stored snapshot's state is not at the index its metadata names.
    #[error("stored snapshot covers index {meta} but its state is at index {data}")]
    SnapshotIndex {
        /// The index in the snapshot's metadata.
        meta: LogIndex,
        /// The applied index inside the snapshot's data.
        data: LogIndex,
    },
}

/// A summary of a core's state, for monitoring and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceStatus {
    /// The Raft node's status.
    pub raft: Status,
    /// Number of keys in the store.
    pub keys: usize,
    /// Number of live sessions.
    pub sessions: usize,
    /// The log clock (highest stamp applied), in milliseconds.
    pub clock_ms: u64,
    /// The persisted Raft state's size as the core counts it, in bytes.
    pub raft_state_size: u64,
    /// Proposals waiting to apply.
    pub pending_proposals: usize,
    /// Reads waiting to be served.
    pub pending_reads: usize,
    /// Whether the core stopped serving because a snapshot from the leader could not be loaded.
    pub unavailable: bool,
}

/// A proposal waiting for its entry to apply.
#[derive(Debug)]
struct Proposal {
    term: Term,
    /// Every request answered by this entry (copies of one write share it).
    requests: Vec<RequestId>,
    /// The write's `(session, seq)`, for sharing.
    write: Option<(SessionId, Seq)>,
}

/// One replica of the KV service: a [`RaftNode`] and a [`KvStateMachine`], driven by method
/// calls and answering with [`ServiceAction`]s. See the [module docs](self).
#[derive(Debug)]
pub struct ServiceCore {
    config: ServiceConfig,
    raft: RaftNode,
    machine: KvStateMachine,
    size: RaftStateSize,
    /// The driver's clock, as last passed in.
    now_ms: u64,
    /// The last stamp this node proposed.
    last_stamp_ms: u64,
    /// The term in which every waiting proposal was made (`None`: not leading).
    leading: Option<Term>,
    /// Waiting proposals, by log index.
    proposals: BTreeMap<LogIndex, Proposal>,
    /// Index of the waiting proposal of each write.
    writes_in_log: BTreeMap<(SessionId, Seq), LogIndex>,
    /// Reads accepted since the last `take_actions`, not yet handed to the node.
    new_reads: Vec<(RequestId, Vec<u8>)>,
    /// Reads handed to the node, by read id.
    reads: BTreeMap<ReadId, Vec<(RequestId, Vec<u8>)>>,
    pending_reads: usize,
    next_read_id: ReadId,
    /// A snapshot from the leader could not be loaded: the state machine is not trustworthy
    /// until another snapshot loads.
    unavailable: bool,
    actions: Vec<ServiceAction>,
}

impl ServiceCore {
    /// A replica that has never run.
    pub fn new(config: ServiceConfig) -> Result<Self, ServiceError> {
        Self::restore(config, &DurableState::default())
    }

    /// A replica restarting from what it had made durable: the state machine is loaded from the
    /// stored snapshot first, then the node continues from the stored log.
    pub fn restore(config: ServiceConfig, state: &DurableState) -> Result<Self, ServiceError> {
        config.validate()?;
        let machine = match &state.snapshot {
            Some(snapshot) => {
                let machine = KvStateMachine::restore(config.machine, &snapshot.data)?;
                if machine.applied_index() != snapshot.meta.last_index {
                    return Err(ServiceError::SnapshotIndex {
                        meta: snapshot.meta.last_index,
                        data: machine.applied_index(),
                    });
                }
                machine
            }
            None => KvStateMachine::new(config.machine),
        };
        let raft = RaftNode::restore(config.raft.clone(), state)?;
        let last_stamp_ms = machine.clock_ms();
        Ok(Self {
            size: RaftStateSize::of_state(state),
            config,
            raft,
            machine,
            now_ms: 0,
            last_stamp_ms,
            leading: None,
            proposals: BTreeMap::new(),
            writes_in_log: BTreeMap::new(),
            new_reads: Vec::new(),
            reads: BTreeMap::new(),
            pending_reads: 0,
            next_read_id: 1,
            unavailable: false,
            actions: Vec::new(),
        })
    }

    // ----- Accessors -----

    /// This replica's node id.
    pub fn id(&self) -> NodeId {
        self.raft.id()
    }

    /// The configuration.
    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    /// The Raft node.
    pub fn raft(&self) -> &RaftNode {
        &self.raft
    }

    /// The state machine.
    pub fn machine(&self) -> &KvStateMachine {
        &self.machine
    }

    /// Whether this replica leads its current term.
    pub fn is_leader(&self) -> bool {
        self.raft.is_leader()
    }

    /// The persisted Raft state's size as the core counts it (see the [module docs](self)).
    pub fn raft_state_size(&self) -> u64 {
        self.size.total()
    }

    /// A summary of the core's state.
    pub fn status(&self) -> ServiceStatus {
        ServiceStatus {
            raft: self.raft.status(),
            keys: self.machine.len(),
            sessions: self.machine.sessions().len(),
            clock_ms: self.machine.clock_ms(),
            raft_state_size: self.size.total(),
            pending_proposals: self.proposals.len(),
            pending_reads: self.pending_reads,
            unavailable: self.unavailable,
        }
    }

    // ----- Inputs -----

    /// Advances logical time by one Raft tick; `now_ms` is the driver's clock.
    pub fn tick(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
        self.raft.tick();
    }

    /// Handles a message from a peer.
    pub fn step(&mut self, message: Message) {
        self.raft.step(message);
    }

    /// Reports that the persist with id `id` ([`PersistUpdate::id`]), and every persist before
    /// it, is durable.
    pub fn persisted(&mut self, id: PersistId) {
        self.raft.persisted(id);
    }

    /// Handles a client request; the answer comes as a [`ServiceAction::Reply`] with `id`, now
    /// or after later inputs. `now_ms` is the driver's clock.
    pub fn handle_request(&mut self, now_ms: u64, id: RequestId, request: ClientRequest) {
        self.now_ms = self.now_ms.max(now_ms);
        if self.unavailable {
            self.reply(id, Err(KvError::Unavailable));
            return;
        }
        match request {
            ClientRequest::Get { key } => self.admit_read(id, key),
            ClientRequest::RegisterSession => self.admit_command(id, Command::RegisterSession),
            ClientRequest::KeepAlive { session } => {
                self.admit_command(id, Command::KeepAlive { session })
            }
            ClientRequest::Write {
                session,
                seq,
                lowest_unacked,
                op,
            } => {
                if lowest_unacked > seq {
                    let error = KvError::BadSequence {
                        seq,
                        lowest_unacked,
                    };
                    self.reply(id, Err(error));
                    return;
                }
                if let Some(output) = self.machine.cached_reply(session, seq) {
                    // Executed already (the state machine holds only committed entries).
                    let reply = Ok(Response::Written(output.clone()));
                    self.reply(id, reply);
                    return;
                }
                let command = Command::Write {
                    session,
                    seq,
                    lowest_unacked,
                    op,
                };
                self.admit_command(id, command);
            }
        }
    }

    /// Returns the actions accumulated since the last call, in the order the driver must carry
    /// them out (see the [module docs](self)). Call it after every batch of inputs.
    pub fn take_actions(&mut self) -> Vec<ServiceAction> {
        loop {
            if !self.new_reads.is_empty() {
                let read_id = self.allocate_read_id();
                self.reads
                    .insert(read_id, std::mem::take(&mut self.new_reads));
                self.raft.read_index(read_id);
            }
            let actions = self.raft.take_actions();
            if actions.is_empty() {
                break;
            }
            for action in actions {
                self.carry_out(action);
            }
            self.maybe_snapshot();
        }
        self.check_leadership();
        std::mem::take(&mut self.actions)
    }

    // ----- Admission -----

    fn admit_read(&mut self, id: RequestId, key: Vec<u8>) {
        let limit = self.config.max_request_bytes;
        if key.len() > limit {
            let error = KvError::TooLarge {
                size: key.len() as u64,
                limit: limit as u64,
            };
            self.reply(id, Err(error));
        } else if !self.raft.is_leader() {
            let error = KvError::NotLeader {
                leader_hint: self.raft.leader_id(),
            };
            self.reply(id, Err(error));
        } else if self.pending_reads >= self.config.max_pending_reads {
            self.reply(id, Err(KvError::Busy));
        } else {
            self.pending_reads += 1;
            self.new_reads.push((id, key));
        }
    }

    fn admit_command(&mut self, id: RequestId, command: Command) {
        let write = match &command {
            Command::Write { session, seq, .. } => Some((*session, *seq)),
            Command::RegisterSession | Command::KeepAlive { .. } => None,
        };
        let stamp_ms = self
            .now_ms
            .max(self.last_stamp_ms)
            .max(self.machine.clock_ms());
        let bytes = codec::encode(&LogCommand { stamp_ms, command });
        let limit = self.config.max_request_bytes;
        if bytes.len() > limit {
            let error = KvError::TooLarge {
                size: bytes.len() as u64,
                limit: limit as u64,
            };
            self.reply(id, Err(error));
            return;
        }
        if !self.raft.is_leader() {
            let error = KvError::NotLeader {
                leader_hint: self.raft.leader_id(),
            };
            self.reply(id, Err(error));
            return;
        }
        self.check_leadership();
        if let Some(index) = write.and_then(|w| self.writes_in_log.get(&w)) {
            // A copy of a write already in the log in this term: it shares that entry.
            if let Some(proposal) = self.proposals.get_mut(index) {
                proposal.requests.push(id);
                return;
            }
        }
        if self.proposals.len() >= self.config.max_pending_proposals {
            self.reply(id, Err(KvError::Busy));
            return;
        }
        match self.raft.propose(bytes) {
            Ok((index, term)) => {
                self.last_stamp_ms = stamp_ms;
                self.leading = Some(term);
                self.proposals.insert(
                    index,
                    Proposal {
                        term,
                        requests: vec![id],
                        write,
                    },
                );
                if let Some(w) = write {
                    self.writes_in_log.insert(w, index);
                }
            }
            Err(raft_core::ProposeError::NotLeader { leader_hint }) => {
                self.reply(id, Err(KvError::NotLeader { leader_hint }));
            }
        }
    }

    // ----- The node's actions -----

    fn carry_out(&mut self, action: Action) {
        match action {
            Action::Persist(update) => {
                self.size.apply(&update);
                self.actions.push(ServiceAction::Persist(update));
            }
            Action::Send(message) => self.actions.push(ServiceAction::Send(message)),
            Action::Apply(entries) => {
                for entry in &entries {
                    self.apply_entry(entry);
                }
            }
            Action::InstallSnapshot(snapshot) => self.install_snapshot(&snapshot),
            Action::ReadReady { id, index } => self.serve_reads(id, index),
            Action::ReadFailed { id, error } => {
                let error = match error {
                    ReadError::NotLeader { leader_hint } => KvError::NotLeader { leader_hint },
                    ReadError::LeadershipLost => KvError::Retry {
                        reason: RetryReason::LeadershipLost,
                    },
                    ReadError::Timeout => KvError::Retry {
                        reason: RetryReason::ReadTimeout,
                    },
                };
                self.fail_reads(id, error);
            }
        }
    }

    fn apply_entry(&mut self, entry: &Entry) {
        let result = if self.unavailable {
            None
        } else {
            self.machine.apply(entry)
        };
        let Some(proposal) = self.proposals.remove(&entry.index) else {
            return;
        };
        if let Some(w) = proposal.write {
            self.writes_in_log.remove(&w);
        }
        let reply = match result {
            _ if self.unavailable => Err(KvError::Unavailable),
            Some(reply) if proposal.term == entry.term => reply,
            _ => {
                debug!(
                    node = self.raft.id(),
                    index = entry.index,
                    "another entry took the proposal's place"
                );
                Err(KvError::Retry {
                    reason: RetryReason::Superseded,
                })
            }
        };
        for id in proposal.requests {
            self.reply(id, reply.clone());
        }
    }

    fn install_snapshot(&mut self, snapshot: &Snapshot) {
        let last_index = snapshot.meta.last_index;
        match KvStateMachine::restore(self.config.machine, &snapshot.data) {
            Ok(machine) if machine.applied_index() == last_index => {
                debug!(
                    node = self.raft.id(),
                    last_index, "state machine replaced by snapshot"
                );
                self.machine = machine;
                self.unavailable = false;
            }
            Ok(machine) => {
                error!(
                    node = self.raft.id(),
                    last_index,
                    data_index = machine.applied_index(),
                    "snapshot state is not at its index; refusing to serve"
                );
                self.unavailable = true;
            }
            Err(err) => {
                error!(node = self.raft.id(), last_index, %err, "snapshot cannot be decoded; refusing to serve");
                self.unavailable = true;
            }
        }
        // Proposals the snapshot covers can no longer be matched with their entries.
        let later = self.proposals.split_off(&(last_index + 1));
        let covered = std::mem::replace(&mut self.proposals, later);
        for (_, proposal) in covered {
            if let Some(w) = proposal.write {
                self.writes_in_log.remove(&w);
            }
            let reason = RetryReason::Superseded;
            for id in proposal.requests {
                self.reply(id, Err(KvError::Retry { reason }));
            }
        }
    }

    fn serve_reads(&mut self, read_id: ReadId, index: LogIndex) {
        let Some(batch) = self.reads.remove(&read_id) else {
            return;
        };
        self.pending_reads -= batch.len();
        for (id, key) in batch {
            let reply = if self.unavailable {
                Err(KvError::Unavailable)
            } else if self.machine.applied_index() < index {
                // The node releases a read only once its index is applied; kept safe anyway.
                warn!(
                    node = self.raft.id(),
                    index,
                    applied = self.machine.applied_index(),
                    "read released before its index applied"
                );
                Err(KvError::Retry {
                    reason: RetryReason::ReadTimeout,
                })
            } else {
                Ok(Response::Value(self.machine.get(&key).map(<[u8]>::to_vec)))
            };
            self.reply(id, reply);
        }
    }

    fn fail_reads(&mut self, read_id: ReadId, error: KvError) {
        let Some(batch) = self.reads.remove(&read_id) else {
            return;
        };
        self.pending_reads -= batch.len();
        for (id, _) in batch {
            self.reply(id, Err(error.clone()));
        }
    }

    /// Answers every waiting proposal with `Retry` once this node stops leading the term it
    /// proposed them in.
    fn check_leadership(&mut self) {
        let current = self.raft.is_leader().then(|| self.raft.term());
        if current == self.leading {
            return;
        }
        self.leading = current;
        self.writes_in_log.clear();
        let proposals = std::mem::take(&mut self.proposals);
        if !proposals.is_empty() {
            debug!(
                node = self.raft.id(),
                waiting = proposals.len(),
                "leadership changed; waiting proposals told to retry"
            );
        }
        let reason = RetryReason::LeadershipLost;
        for (_, proposal) in proposals {
            for id in proposal.requests {
                self.reply(id, Err(KvError::Retry { reason }));
            }
        }
    }

    /// Snapshots and compacts once the persisted Raft state reaches `max_raft_state`.
    fn maybe_snapshot(&mut self) {
        let Some(limit) = self.config.max_raft_state else {
            return;
        };
        if self.unavailable || self.size.total() < limit {
            return;
        }
        let applied = self.raft.applied_index();
        if applied <= self.raft.status().snapshot_index {
            return;
        }
        if self.machine.applied_index() != applied {
            warn!(
                node = self.raft.id(),
                applied,
                machine = self.machine.applied_index(),
                "state machine and node disagree on the applied index; not snapshotting"
            );
            return;
        }
        let size = self.size.total();
        match self.raft.compact(applied, self.machine.snapshot()) {
            Ok(()) => debug!(
                node = self.raft.id(),
                applied, size, limit, "snapshot taken"
            ),
            Err(CompactError::AlreadyCompacted { .. } | CompactError::NotApplied { .. }) => {}
        }
    }

    /// A read id never used by this node, in this incarnation or an earlier one.
    ///
    /// A read forwarded to the leader is answered by a message carrying its id. If a restarted
    /// node reused ids from 1, a late answer meant for its previous incarnation could release a
    /// new read at an older read index: a stale read. Ids therefore start from the driver's clock
    /// (`now_ms * 1024`, a clock that keeps running across restarts) and only increase.
    fn allocate_read_id(&mut self) -> ReadId {
        const IDS_PER_MS: u64 = 1024;
        let id = self
            .next_read_id
            .max(self.now_ms.saturating_mul(IDS_PER_MS));
        self.next_read_id = id.saturating_add(1);
        id
    }

    fn reply(&mut self, id: RequestId, reply: Reply) {
        self.actions.push(ServiceAction::Reply { id, reply });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_core::Config;

    /// Read ids grow with the clock, so a restarted node never reuses an id a late answer may
    /// still carry.
    #[test]
    fn read_ids_are_never_reused_across_restarts() {
        let config = ServiceConfig::new(Config::new(1, vec![1, 2, 3]));
        let mut core = ServiceCore::new(config.clone()).unwrap();
        core.tick(5_000);
        let first = core.allocate_read_id();
        let second = core.allocate_read_id();
        assert!(second > first);
        let mut restarted = ServiceCore::restore(config, &DurableState::default()).unwrap();
        restarted.tick(5_001);
        assert!(restarted.allocate_read_id() > second);
    }
}
