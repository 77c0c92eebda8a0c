//! [`KvService`]: the KV service's logic on one replica, with the Raft node lent to it.
//!
//! [`ServiceCore`](crate::ServiceCore) is this plus the [`RaftNode`] and the simplest way of
//! running the node's state-machine lane (at once, in order). A driver that wants to run that
//! lane itself — the deterministic simulator, which starts it at random depths — owns the node
//! and calls these methods directly, in this pattern:
//!
//! 1. client requests go to [`handle_request`](KvService::handle_request), clock ticks to
//!    [`tick`](KvService::tick) (and to the node);
//! 2. every [`Action::Persist`] the node emits is shown to
//!    [`persisting`](KvService::persisting) when the driver takes it (size accounting for the
//!    snapshot trigger);
//! 3. every state-machine action (`Apply`, `InstallSnapshot`, `ReadReady`, `ReadFailed`) goes
//!    to [`run`](KvService::run), in the node's order;
//! 4. after each batch, [`settle`](KvService::settle) hands new reads to the node, snapshots at
//!    `max_raft_state` and answers the proposals a lost leadership orphaned;
//! 5. [`take_replies`](KvService::take_replies) returns the answers, which may leave at once.
//!
//! See [`crate::core`] for what each request does.

use std::collections::BTreeMap;

use raft_core::{
    Action, CompactError, DurableState, Entry, LogIndex, NodeId, PersistUpdate, RaftNode,
    ReadError, ReadId, Role, Snapshot, Term,
};
use tracing::{debug, error, warn};

use crate::codec;
use crate::command::{Command, LogCommand};
use crate::config::ServiceConfig;
use crate::core::ServiceError;
use crate::machine::KvStateMachine;
use crate::protocol::{
    ClientRequest, KvError, NodeStatus, Reply, RequestId, Response, RetryReason, Seq, SessionId,
};
use crate::raft_size::RaftStateSize;

/// A proposal waiting for its entry to apply.
#[derive(Debug)]
struct Proposal {
    term: Term,
    /// Every request answered by this entry (copies of one write share it).
    requests: Vec<RequestId>,
    /// The write's `(session, seq)`, for sharing.
    write: Option<(SessionId, Seq)>,
}

/// The KV service on one replica, without its Raft node: see the [module docs](self).
///
/// ```
/// use kv_service::{ClientRequest, KvError, KvService, ServiceConfig};
/// use raft_core::{Config, DurableState, RaftNode};
///
/// let config = ServiceConfig::new(Config::new(1, vec![1, 2, 3]));
/// let disk = DurableState::default();
/// let mut node = RaftNode::restore(config.raft.clone(), &disk).unwrap();
/// let mut service = KvService::restore(config, &disk).unwrap();
/// // A follower that knows no leader turns requests away with a hint-less NotLeader.
/// service.handle_request(&mut node, 0, 1, ClientRequest::Get { key: b"k".to_vec() });
/// assert_eq!(
///     service.take_replies(),
///     vec![(1, Err(KvError::NotLeader { leader_hint: None }))]
/// );
/// ```
#[derive(Debug)]
pub struct KvService {
    config: ServiceConfig,
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
    /// Reads accepted since the last `settle`, not yet handed to the node.
    new_reads: Vec<(RequestId, Vec<u8>)>,
    /// Reads handed to the node, by read id.
    reads: BTreeMap<ReadId, Vec<(RequestId, Vec<u8>)>>,
    pending_reads: usize,
    next_read_id: ReadId,
    /// A snapshot from the leader could not be loaded: the state machine is not trustworthy
    /// until another snapshot loads.
    unavailable: bool,
    replies: Vec<(RequestId, Reply)>,
    /// Size of the latest snapshot's data (stored at start, made or installed since).
    snapshot_bytes: u64,
}

impl KvService {
    /// The service of a replica (re)starting from what it had made durable: the state machine
    /// is loaded from the stored snapshot, if any. The node must be restored from the same
    /// `state`.
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
        let last_stamp_ms = machine.clock_ms();
        Ok(Self {
            size: RaftStateSize::of_state(state),
            config,
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
            replies: Vec::new(),
            snapshot_bytes: state.snapshot.as_ref().map_or(0, |s| s.data.len() as u64),
        })
    }

    // ----- Accessors -----

    /// The configuration.
    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    /// The state machine.
    pub fn machine(&self) -> &KvStateMachine {
        &self.machine
    }

    /// The persisted Raft state's size as the service counts it from the persists shown to
    /// [`persisting`](Self::persisting).
    pub fn raft_state_size(&self) -> u64 {
        self.size.total()
    }

    /// Proposals waiting to apply.
    pub fn pending_proposals(&self) -> usize {
        self.proposals.len()
    }

    /// Reads waiting to be served.
    pub fn pending_reads(&self) -> usize {
        self.pending_reads
    }

    /// Whether the service stopped serving because a snapshot from the leader could not be
    /// loaded.
    pub fn is_unavailable(&self) -> bool {
        self.unavailable
    }

    fn id(&self) -> NodeId {
        self.config.raft.id
    }

    // ----- Inputs -----

    /// The driver's clock moved to `now_ms` (milliseconds; it never goes back here).
    pub fn tick(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
    }

    /// Handles a client request; the answer comes from [`take_replies`](Self::take_replies)
    /// with `id`, now or after later inputs. `now_ms` is the driver's clock.
    pub fn handle_request(
        &mut self,
        raft: &mut RaftNode,
        now_ms: u64,
        id: RequestId,
        request: ClientRequest,
    ) {
        self.tick(now_ms);
        // A status answers even when the state machine is unavailable: it says so.
        if self.unavailable && request != ClientRequest::Status {
            self.reply(id, Err(KvError::Unavailable));
            return;
        }
        match request {
            ClientRequest::Get { key } => self.admit_read(raft, id, key),
            ClientRequest::Status => {
                let status = self.node_status(raft);
                self.reply(id, Ok(Response::Status(status)));
            }
            ClientRequest::RegisterSession => {
                self.admit_command(raft, id, Command::RegisterSession)
            }
            ClientRequest::KeepAlive { session } => {
                self.admit_command(raft, id, Command::KeepAlive { session })
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
                self.admit_command(raft, id, command);
            }
        }
    }

    /// Shows the service a persist the node emitted, in stream order, when the driver takes it.
    pub fn persisting(&mut self, update: &PersistUpdate) {
        self.size.apply(update);
        if let Some(snapshot) = &update.snapshot {
            self.snapshot_bytes = snapshot.data.len() as u64;
        }
    }

    /// This replica's status, as a [`ClientRequest::Status`] is answered.
    pub fn node_status(&self, raft: &RaftNode) -> NodeStatus {
        let status = raft.status();
        let role = match status.role {
            Role::Follower => "follower",
            Role::PreCandidate => "pre-candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        };
        NodeStatus {
            id: status.id,
            role: role.to_string(),
            term: status.term,
            leader: status.leader_id,
            commit_index: status.commit_index,
            applied_index: self.machine.applied_index(),
            last_index: status.last_index,
            snapshot_index: status.snapshot_index,
            raft_state_bytes: self.size.total(),
            snapshot_bytes: self.snapshot_bytes,
            keys: self.machine.len() as u64,
            sessions: self.machine.sessions().len() as u64,
            unavailable: self.unavailable,
            read_mode: if self.config.raft.lease_reads {
                "lease"
            } else {
                "read-index"
            }
            .to_string(),
        }
    }

    /// Carries out one of the node's state-machine actions (`Apply`, `InstallSnapshot`,
    /// `ReadReady`, `ReadFailed`), in the node's order. Other actions are not the service's
    /// business and are ignored.
    pub fn run(&mut self, action: Action) {
        match action {
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
            Action::Persist(_) | Action::Send(_) => {}
        }
    }

    /// Ends a batch: hands the reads accepted since the last call to the node (one read id for
    /// all of them), snapshots and compacts once the persisted Raft state reaches
    /// `max_raft_state`, and answers `Retry` to every waiting proposal if this node no longer
    /// leads the term it proposed them in. Call it after each batch of inputs and actions, and
    /// take the node's actions again if it has new ones.
    pub fn settle(&mut self, raft: &mut RaftNode) {
        if !self.new_reads.is_empty() {
            let read_id = self.allocate_read_id();
            self.reads
                .insert(read_id, std::mem::take(&mut self.new_reads));
            raft.read_index(read_id);
        }
        self.maybe_snapshot(raft);
        self.check_leadership(raft);
    }

    /// The answers produced so far, in order; they may leave at once.
    pub fn take_replies(&mut self) -> Vec<(RequestId, Reply)> {
        std::mem::take(&mut self.replies)
    }

    // ----- Admission -----

    fn admit_read(&mut self, raft: &RaftNode, id: RequestId, key: Vec<u8>) {
        let limit = self.config.max_request_bytes;
        if key.len() > limit {
            let error = KvError::TooLarge {
                size: key.len() as u64,
                limit: limit as u64,
            };
            self.reply(id, Err(error));
        } else if !raft.is_leader() {
            let error = KvError::NotLeader {
                leader_hint: raft.leader_id(),
            };
            self.reply(id, Err(error));
        } else if self.pending_reads >= self.config.max_pending_reads {
            self.reply(id, Err(KvError::Busy));
        } else {
            self.pending_reads += 1;
            self.new_reads.push((id, key));
        }
    }

    fn admit_command(&mut self, raft: &mut RaftNode, id: RequestId, command: Command) {
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
        if !raft.is_leader() {
            let error = KvError::NotLeader {
                leader_hint: raft.leader_id(),
            };
            self.reply(id, Err(error));
            return;
        }
        self.check_leadership(raft);
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
        match raft.propose(bytes) {
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

    // ----- The node's state-machine lane -----

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
                    node = self.id(),
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
                    node = self.id(),
                    last_index, "state machine replaced by snapshot"
                );
                self.machine = machine;
                self.unavailable = false;
            }
            Ok(machine) => {
                error!(
                    node = self.id(),
                    last_index,
                    data_index = machine.applied_index(),
                    "snapshot state is not at its index; refusing to serve"
                );
                self.unavailable = true;
            }
            Err(err) => {
                error!(node = self.id(), last_index, %err, "snapshot cannot be decoded; refusing to serve");
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
                    node = self.id(),
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

    // ----- End of a batch -----

    /// Answers every waiting proposal with `Retry` once this node stops leading the term it
    /// proposed them in.
    fn check_leadership(&mut self, raft: &RaftNode) {
        let current = raft.is_leader().then(|| raft.term());
        if current == self.leading {
            return;
        }
        self.leading = current;
        self.writes_in_log.clear();
        let proposals = std::mem::take(&mut self.proposals);
        if !proposals.is_empty() {
            debug!(
                node = self.id(),
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
    fn maybe_snapshot(&mut self, raft: &mut RaftNode) {
        let Some(limit) = self.config.max_raft_state else {
            return;
        };
        if self.unavailable || self.size.total() < limit {
            return;
        }
        // The machine's applied index, not the node's: a lane driver may not have run every
        // Apply the node emitted yet, and the snapshot must hold exactly that state.
        let applied = self.machine.applied_index();
        if applied <= raft.status().snapshot_index {
            return;
        }
        let size = self.size.total();
        match raft.compact(applied, self.machine.snapshot()) {
            Ok(()) => debug!(node = self.id(), applied, size, limit, "snapshot taken"),
            Err(CompactError::AlreadyCompacted { .. } | CompactError::NotApplied { .. }) => {}
        }
    }

    /// A read id never used by this node, in this incarnation or an earlier one.
    ///
    /// Ids start from the driver's clock (`now_ms * 1024`, a clock that keeps running across
    /// restarts) and only increase, so a late answer meant for an earlier incarnation can never
    /// match a new read (raft-core numbers forwarded reads on its own, so this is a second line
    /// of defence).
    fn allocate_read_id(&mut self) -> ReadId {
        const IDS_PER_MS: u64 = 1024;
        let id = self
            .next_read_id
            .max(self.now_ms.saturating_mul(IDS_PER_MS));
        self.next_read_id = id.saturating_add(1);
        id
    }

    fn reply(&mut self, id: RequestId, reply: Reply) {
        self.replies.push((id, reply));
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
        let mut service = KvService::restore(config.clone(), &DurableState::default()).unwrap();
        service.tick(5_000);
        let first = service.allocate_read_id();
        let second = service.allocate_read_id();
        assert!(second > first);
        let mut restarted = KvService::restore(config, &DurableState::default()).unwrap();
        restarted.tick(5_001);
        assert!(restarted.allocate_read_id() > second);
    }
}
