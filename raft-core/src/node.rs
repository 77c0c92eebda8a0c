//! [`RaftNode`]: the protocol as a deterministic state machine.
//!
//! Inputs are method calls ([`tick`](RaftNode::tick), [`step`](RaftNode::step),
//! [`propose`](RaftNode::propose), [`persisted`](RaftNode::persisted)); outputs are the
//! [`Action`]s returned by [`take_actions`](RaftNode::take_actions). Each role has its own
//! handlers; everything a reply changes is checked against the current term first.

use std::collections::BTreeMap;

use tracing::{debug, trace, warn};

use crate::action::{Action, PersistId, PersistUpdate, ReadId};
use crate::config::Config;
use crate::error::{CompactError, ProposeError, ReadError, RestoreError};
use crate::log::RaftLog;
use crate::message::{AppendResult, Message, MessageBody, SnapshotResult};
use crate::progress::{Progress, ReplicationState};
use crate::quorum::{self, TallyResult, VoteTally};
use crate::read::{PendingRead, ReadTracker};
use crate::rng::SplitMix64;
use crate::storage::DurableState;
use crate::types::{Entry, HardState, LogIndex, NodeId, Payload, Snapshot, SnapshotMeta, Term};

/// The role a node plays in its current term.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Asks whether it could win an election, without raising its term (pre-vote).
    PreCandidate,
    /// Asks for votes to become leader.
    Candidate,
    /// Accepts proposals and replicates the log.
    Leader,
}

/// A snapshot of a node's volatile and durable state, for monitoring and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// The node's id.
    pub id: NodeId,
    /// Current term.
    pub term: Term,
    /// Vote cast in the current term.
    pub voted_for: Option<NodeId>,
    /// Current role.
    pub role: Role,
    /// The leader of the current term, if known.
    pub leader_id: Option<NodeId>,
    /// Highest index known to be committed.
    pub commit_index: LogIndex,
    /// Highest index handed to the service in an [`Action::Apply`].
    pub applied_index: LogIndex,
    /// Index of the last log entry.
    pub last_index: LogIndex,
    /// Highest index the driver reported durable.
    pub durable_index: LogIndex,
    /// Last index covered by the node's snapshot (0 without one).
    pub snapshot_index: LogIndex,
}

/// Role-specific volatile state.
#[derive(Debug)]
enum RoleState {
    Follower,
    PreCandidate(VoteTally),
    Candidate(VoteTally),
    Leader {
        progress: BTreeMap<NodeId, Progress>,
    },
}

/// One member of a Raft cluster, as a pure state machine.
///
/// See the [crate docs](crate) for a complete example driving three nodes, and
/// [`action`](crate::action) for the ordering contract of the actions it emits.
#[derive(Debug)]
pub struct RaftNode {
    config: Config,
    /// Every voter but this node, sorted.
    peers: Vec<NodeId>,
    rng: SplitMix64,

    // Durable state (mirrored by the persist actions emitted so far).
    term: Term,
    voted_for: Option<NodeId>,
    log: RaftLog,

    // Volatile state.
    role: RoleState,
    leader_id: Option<NodeId>,
    commit_index: LogIndex,
    applied_index: LogIndex,
    /// Highest index the driver reported durable (see `persisted`).
    durable_index: LogIndex,
    /// Leader entries appended in memory from this index on, not yet in a persist action.
    unpersisted_from: Option<LogIndex>,
    /// Id of the latest persist emitted (0: none since this start).
    emitted_persist_id: PersistId,
    /// Id of the latest persist handed to the driver by `take_actions`: only those can be
    /// reported durable.
    handed_out_persist_id: PersistId,
    /// Id of the latest persist that a promise can rest on: one that changes the term, the vote
    /// or the log, or stores a snapshot received from the leader. A compaction of the node's
    /// own (durable) entries backs nothing, so promises do not wait for it.
    backing_persist_id: PersistId,
    /// Highest persist id the driver reported durable.
    durable_persist_id: PersistId,
    /// Persists emitted and not yet reported durable, with their last entry, in order.
    unreported: std::collections::VecDeque<(PersistId, Option<(LogIndex, Term)>)>,
    /// Messages that promise durable state (granted votes, acknowledgements, vote requests),
    /// held until the persist they wait for is reported durable.
    held: std::collections::VecDeque<(PersistId, Message)>,
    /// The leader has new entries to send to its followers at the next `take_actions`.
    replication_pending: bool,
    election_elapsed: u32,
    election_timeout: u32,
    heartbeat_elapsed: u32,
    /// Leader: ticks into the current check-quorum window.
    check_quorum_elapsed: u32,
    /// Consecutive election timeouts without hearing from a leader; widens the randomized
    /// timeout (see `reset_election_timer`).
    failed_elections: u32,

    /// The latest snapshot (taken here or installed from a leader), kept to send to followers
    /// that need compacted entries.
    snapshot: Option<Snapshot>,
    /// Follower: the snapshot being received, chunk by chunk.
    incoming_snapshot: Option<Snapshot>,
    /// ReadIndex reads in progress.
    reads: ReadTracker,
    /// Ticks since this node started (its local clock).
    ticks: u64,
    /// Leader, lease reads: heartbeat rounds sent and not yet confirmed, with the tick each was
    /// sent at.
    lease_rounds: std::collections::VecDeque<(u64, u64)>,
    /// Leader, lease reads: the lease holds while `ticks` is below this.
    lease_until: u64,

    actions: Vec<Action>,
}

impl RaftNode {
    /// A node that has never run: term 0, no vote, empty log.
    pub fn new(config: Config) -> Result<Self, RestoreError> {
        Self::restore(config, &DurableState::default())
    }

    /// A node restarting from what it had made durable before.
    ///
    /// If `state` holds a snapshot, the service must restore its state machine from that
    /// snapshot before driving the node: the node's first [`Action::Apply`] continues right after
    /// the snapshot's last index.
    pub fn restore(config: Config, state: &DurableState) -> Result<Self, RestoreError> {
        config.validate()?;
        let hard_state = state.hard_state;
        if let Some(vote) = hard_state.voted_for {
            if !config.voters.contains(&vote) {
                return Err(RestoreError::UnknownVote(vote));
            }
        }
        let meta = state.snapshot.as_ref().map(|s| s.meta).unwrap_or_default();
        let log = RaftLog::from_parts(meta.last_index, meta.last_term, state.entries.clone())?;
        if log.last_term() > hard_state.term {
            return Err(RestoreError::LogAheadOfTerm {
                term: hard_state.term,
                log_term: log.last_term(),
            });
        }
        let mut peers: Vec<NodeId> = config
            .voters
            .iter()
            .copied()
            .filter(|&v| v != config.id)
            .collect();
        peers.sort_unstable();
        let mut rng = SplitMix64::new(config.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ config.id);
        // Forwarded reads are numbered from a random point, so that answers to an earlier
        // incarnation's requests match none of this one's (see `MessageBody::ReadIndexRequest`).
        let reads = ReadTracker::new(rng.next_u64());
        let snapshot_index = log.snapshot_index();
        let durable_index = log.last_index();
        let mut node = Self {
            config,
            peers,
            rng,
            term: hard_state.term,
            voted_for: hard_state.voted_for,
            log,
            role: RoleState::Follower,
            leader_id: None,
            commit_index: snapshot_index,
            applied_index: snapshot_index,
            durable_index,
            unpersisted_from: None,
            emitted_persist_id: 0,
            handed_out_persist_id: 0,
            backing_persist_id: 0,
            durable_persist_id: 0,
            unreported: std::collections::VecDeque::new(),
            held: std::collections::VecDeque::new(),
            replication_pending: false,
            election_elapsed: 0,
            election_timeout: 0,
            heartbeat_elapsed: 0,
            check_quorum_elapsed: 0,
            failed_elections: 0,
            snapshot: state.snapshot.clone(),
            incoming_snapshot: None,
            reads,
            ticks: 0,
            lease_rounds: std::collections::VecDeque::new(),
            lease_until: 0,
            actions: Vec::new(),
        };
        node.reset_election_timer();
        Ok(node)
    }

    // ----- Accessors -----

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.config.id
    }

    /// The current term.
    pub fn term(&self) -> Term {
        self.term
    }

    /// The current role.
    pub fn role(&self) -> Role {
        match self.role {
            RoleState::Follower => Role::Follower,
            RoleState::PreCandidate(_) => Role::PreCandidate,
            RoleState::Candidate(_) => Role::Candidate,
            RoleState::Leader { .. } => Role::Leader,
        }
    }

    /// Whether this node is the leader of its current term.
    pub fn is_leader(&self) -> bool {
        matches!(self.role, RoleState::Leader { .. })
    }

    /// The leader of the current term, if known.
    pub fn leader_id(&self) -> Option<NodeId> {
        self.leader_id
    }

    /// Highest index known to be committed.
    pub fn commit_index(&self) -> LogIndex {
        self.commit_index
    }

    /// Highest index handed to the service (by an [`Action::Apply`] or
    /// [`Action::InstallSnapshot`]).
    pub fn applied_index(&self) -> LogIndex {
        self.applied_index
    }

    /// The latest snapshot this node holds, if any.
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }

    /// Number of reads requested with [`read_index`](Self::read_index) (or forwarded to this
    /// leader) that have not been released or failed yet.
    pub fn pending_reads(&self) -> usize {
        self.reads.pending()
    }

    /// The in-memory log.
    pub fn log(&self) -> &RaftLog {
        &self.log
    }

    /// The configuration the node was built with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Replication progress of follower `peer`, when this node leads.
    pub fn progress(&self, peer: NodeId) -> Option<&Progress> {
        match &self.role {
            RoleState::Leader { progress } => progress.get(&peer),
            _ => None,
        }
    }

    /// A summary of the node's state.
    pub fn status(&self) -> Status {
        Status {
            id: self.config.id,
            term: self.term,
            voted_for: self.voted_for,
            role: self.role(),
            leader_id: self.leader_id,
            commit_index: self.commit_index,
            applied_index: self.applied_index,
            last_index: self.log.last_index(),
            durable_index: self.durable_index,
            snapshot_index: self.log.snapshot_index(),
        }
    }

    fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            voted_for: self.voted_for,
        }
    }

    // ----- Inputs -----

    /// Advances logical time by one tick: followers and candidates count toward their election
    /// timeout, leaders toward their next heartbeat and check-quorum.
    pub fn tick(&mut self) {
        self.ticks += 1;
        for id in self.reads.tick_forwarded() {
            self.push(Action::ReadFailed {
                id,
                error: ReadError::Timeout,
            });
        }
        if self.is_leader() {
            self.heartbeat_elapsed += 1;
            if self.heartbeat_elapsed >= self.config.heartbeat_interval {
                self.heartbeat_elapsed = 0;
                self.broadcast_heartbeat();
            }
            self.check_quorum_elapsed += 1;
            if self.check_quorum_elapsed >= self.config.election_timeout_max {
                self.check_quorum_elapsed = 0;
                self.check_quorum();
            }
        } else {
            self.election_elapsed += 1;
            if self.election_elapsed % self.config.heartbeat_interval == 0 {
                self.resend_vote_requests();
            }
            if self.election_elapsed >= self.election_timeout {
                self.failed_elections = self.failed_elections.saturating_add(1);
                if self.config.pre_vote {
                    self.pre_campaign();
                } else {
                    self.campaign();
                }
            }
        }
    }

    /// Appends `command` to the log if this node leads; replication starts at the next
    /// [`take_actions`](Self::take_actions). Returns the entry's index and term: the command took
    /// effect only if the entry applied at that index has that term.
    pub fn propose(&mut self, command: Vec<u8>) -> Result<(LogIndex, Term), ProposeError> {
        if !self.is_leader() {
            return Err(ProposeError::NotLeader {
                leader_hint: self.leader_id,
            });
        }
        Ok(self.append_as_leader(Payload::Command(command)))
    }

    /// Compacts the log: the service's state after applying every entry up to `index` is
    /// `data`. The node drops the entries up to `index`, keeps the snapshot to send to followers
    /// that fall behind, and emits one [`Action::Persist`] carrying the snapshot (stored
    /// atomically with the log change).
    ///
    /// Refused when `index` is not beyond the current snapshot, or has not been handed to the
    /// service yet (so the service's state cannot include it).
    ///
    /// ```
    /// # use raft_core::{Action, Config, RaftNode, CompactError};
    /// let mut node = RaftNode::new(Config::new(1, vec![1])).unwrap();
    /// for _ in 0..30 { node.tick(); }              // a single node elects itself
    /// for action in node.take_actions() {
    ///     if let Action::Persist(update) = action {
    ///         node.persisted(update.id);
    ///     }
    /// }
    /// assert_eq!(node.applied_index(), 1);        // the leader's no-op
    /// assert!(node.compact(1, b"state".to_vec()).is_ok());
    /// assert_eq!(node.compact(1, vec![]), Err(CompactError::AlreadyCompacted { index: 1, snapshot_index: 1 }));
    /// assert!(matches!(node.compact(2, vec![]), Err(CompactError::NotApplied { .. })));
    /// ```
    pub fn compact(&mut self, index: LogIndex, data: Vec<u8>) -> Result<(), CompactError> {
        let snapshot_index = self.log.snapshot_index();
        if index <= snapshot_index {
            return Err(CompactError::AlreadyCompacted {
                index,
                snapshot_index,
            });
        }
        let not_applied = CompactError::NotApplied {
            index,
            applied_index: self.applied_index,
        };
        if index > self.applied_index {
            return Err(not_applied);
        }
        // Applied entries are held in the log (applied <= commit <= last index, above the
        // snapshot), so the term is known; the check keeps this panic-free regardless.
        let Some(term) = self.log.term(index) else {
            return Err(not_applied);
        };
        // Entries appended by the leader but not yet listed in a persist must be listed before
        // the log forgets them.
        self.flush_unpersisted();
        self.log.compact_to(index, term);
        if self
            .incoming_snapshot
            .as_ref()
            .is_some_and(|s| s.meta.last_index <= index)
        {
            self.incoming_snapshot = None;
        }
        let snapshot = Snapshot {
            meta: SnapshotMeta {
                last_index: index,
                last_term: term,
            },
            data,
        };
        debug!(node = self.config.id, index, term, "log compacted");
        self.snapshot = Some(snapshot.clone());
        // A compaction covers applied entries, which are committed and written here by an
        // earlier persist: no promise waits for it.
        self.push_persist(
            PersistUpdate {
                snapshot: Some(snapshot),
                ..PersistUpdate::default()
            },
            false,
        );
        Ok(())
    }

    /// Requests a linearizable read without writing to the log (ReadIndex, Raft thesis §6.4).
    ///
    /// A leader notes its commit index, confirms with one heartbeat round acknowledged by a
    /// majority that it still leads (after it has committed an entry of its own term), and
    /// emits [`Action::ReadReady`] once the service has applied up to that index; concurrent
    /// reads share rounds. A follower forwards the read to its leader and emits `ReadReady` once
    /// its own state machine has caught up with the leader's read index. Otherwise, or when
    /// leadership changes or the leader does not answer within an election timeout, the node
    /// emits [`Action::ReadFailed`].
    pub fn read_index(&mut self, id: ReadId) {
        match self.role {
            RoleState::Leader { .. } => {
                let committed_in_term = self.log.term(self.commit_index) == Some(self.term);
                if self.config.lease_reads && committed_in_term && self.ticks < self.lease_until {
                    trace!(node = self.config.id, id, "read served under the lease");
                    self.reads.push_ready(id, self.commit_index);
                    self.release_ready_reads();
                } else {
                    self.reads.queue(PendingRead { id, from: None });
                }
            }
            RoleState::Follower => match self.leader_id {
                Some(leader) => {
                    let ticks = self.config.election_timeout_max;
                    let wire = self.reads.forward(id, leader, self.term, ticks);
                    self.send(leader, MessageBody::ReadIndexRequest { id: wire });
                }
                None => self.push(Action::ReadFailed {
                    id,
                    error: ReadError::NotLeader { leader_hint: None },
                }),
            },
            RoleState::Candidate(_) | RoleState::PreCandidate(_) => self.push(Action::ReadFailed {
                id,
                error: ReadError::NotLeader { leader_hint: None },
            }),
        }
    }

    /// Reports that the persist with id `id` ([`PersistUpdate::id`]), and with it every persist
    /// emitted before it, is durable. A driver may report each persist or only the latest of
    /// several. The node then counts its own copy of the entries (a leader toward its commit
    /// index) and lets out the messages that were waiting for that write (granted votes,
    /// acknowledgements): they appear in the next [`take_actions`](Self::take_actions).
    ///
    /// Reports of ids already reported, or of persists not yet handed out by `take_actions`,
    /// are ignored. Ids start at 1 at every start of a node: a driver that builds a new
    /// `RaftNode` must not report writes of the previous one to it.
    pub fn persisted(&mut self, id: PersistId) {
        if id <= self.durable_persist_id {
            return;
        }
        if id > self.handed_out_persist_id {
            warn!(
                node = self.config.id,
                id,
                handed_out = self.handed_out_persist_id,
                "report of a persist not handed out yet; ignored"
            );
            return;
        }
        self.durable_persist_id = id;
        while let Some(&(pending, last_entry)) = self.unreported.front() {
            if pending > id {
                break;
            }
            self.unreported.pop_front();
            if let Some((index, term)) = last_entry {
                // Entries replaced since (a later persist truncated them) do not count.
                if index > self.durable_index && self.log.term(index) == Some(term) {
                    self.durable_index = index;
                }
            }
        }
        while self.held.front().is_some_and(|(needs, _)| *needs <= id) {
            let Some((_, message)) = self.held.pop_front() else {
                break;
            };
            if message.term == self.term {
                self.push_raw(Action::Send(message));
            } else {
                // The term moved on while the write was in flight: what the message promised
                // was about a term this node has left (a later leader may have replaced the
                // entries it acknowledged). Dropping it is a message loss, which Raft tolerates.
                debug!(
                    node = self.config.id,
                    ?message,
                    "held message of an old term dropped"
                );
            }
        }
        if self.is_leader() {
            self.maybe_commit();
        }
    }

    /// Id of the latest persist handed to the driver by [`take_actions`](Self::take_actions)
    /// (0 if none since the node started). A driver that reports durability in bulk reports
    /// this once every persist it took is durable.
    pub fn last_persist_id(&self) -> PersistId {
        self.handed_out_persist_id
    }

    /// Handles a message from a peer. Messages that are not for this node, come from outside
    /// the cluster or are malformed are dropped with a warning.
    pub fn step(&mut self, message: Message) {
        if message.to != self.config.id || !self.peers.contains(&message.from) {
            warn!(
                node = self.config.id,
                from = message.from,
                to = message.to,
                "dropping message not addressed to this node or from outside the cluster"
            );
            return;
        }
        trace!(node = self.config.id, ?message, "step");
        let from = message.from;
        if message.term > self.term {
            let vote_request = matches!(
                message.body,
                MessageBody::VoteRequest { .. } | MessageBody::PreVoteRequest { .. }
            );
            if vote_request && self.config.check_quorum && self.in_leader_lease() {
                // The leader was heard from recently: a node asking to replace it is partitioned
                // or slow. Ignoring it keeps the term, and the healthy leader, in place.
                debug!(
                    node = self.config.id,
                    from, "vote request ignored during leader lease"
                );
                return;
            }
            if vote_request && self.config.lease_reads && self.ticks < self.lease_quiet_ticks() {
                // Restarted: this node may have acknowledged a leader whose read lease still
                // holds, and forgot it. It votes only once any such lease has expired.
                debug!(
                    node = self.config.id,
                    from, "vote request ignored just after a restart (lease reads)"
                );
                return;
            }
            match message.body {
                // Pre-votes never change the receiver's term, and a granted pre-vote echoes the
                // term the pre-candidate proposed.
                MessageBody::PreVoteRequest { .. }
                | MessageBody::PreVoteResponse { granted: true } => {}
                _ => {
                    let leader = matches!(
                        message.body,
                        MessageBody::AppendRequest { .. }
                            | MessageBody::InstallSnapshotRequest { .. }
                    )
                    .then_some(from);
                    debug!(
                        node = self.config.id,
                        term = self.term,
                        new_term = message.term,
                        from,
                        "higher term seen; becoming follower"
                    );
                    if leader.is_none() && matches!(self.role, RoleState::Follower) {
                        // A follower adopts a candidate's (or a stale answer's) higher term but
                        // keeps its election timer running: Raft resets it only on hearing from
                        // the leader or granting a vote. Otherwise a candidate that cannot win
                        // (its log is behind) would hold back, election after election, the
                        // nodes that could.
                        self.adopt_term(message.term);
                    } else {
                        self.become_follower(message.term, leader);
                    }
                }
            }
        } else if message.term < self.term {
            self.answer_stale_request(message);
            return;
        }
        if let MessageBody::AppendResponse { request_term, .. }
        | MessageBody::InstallSnapshotResponse { request_term, .. } = message.body
        {
            if request_term != self.term {
                // An answer to a request of an earlier term (this node's earlier leadership, or
                // an earlier incarnation's): it proves nothing about this term's leadership, so
                // it counts for nothing, not even as contact for check-quorum.
                debug!(
                    node = self.config.id,
                    from, request_term, "answer to a request of another term ignored"
                );
                return;
            }
        }
        if let RoleState::Leader { progress } = &mut self.role {
            if let Some(pr) = progress.get_mut(&from) {
                pr.recent_active = true;
            }
        }
        match message.body {
            MessageBody::PreVoteRequest {
                last_log_index,
                last_log_term,
            } => self.handle_pre_vote_request(from, message.term, last_log_index, last_log_term),
            MessageBody::PreVoteResponse { granted } => {
                self.handle_pre_vote_response(from, message.term, granted)
            }
            MessageBody::VoteRequest {
                last_log_index,
                last_log_term,
            } => self.handle_vote_request(from, last_log_index, last_log_term),
            MessageBody::VoteResponse { granted } => self.handle_vote_response(from, granted),
            MessageBody::AppendRequest {
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
                read_seq,
            } => {
                if self.accept_leader(from) {
                    self.handle_append_request(
                        from,
                        prev_log_index,
                        prev_log_term,
                        entries,
                        leader_commit,
                        read_seq,
                    );
                }
            }
            MessageBody::AppendResponse {
                result, read_seq, ..
            } => self.handle_append_response(from, result, read_seq),
            MessageBody::InstallSnapshotRequest {
                meta,
                offset,
                data,
                done,
            } => {
                if self.accept_leader(from) {
                    self.handle_snapshot_chunk(from, message.term, meta, offset, data, done);
                }
            }
            MessageBody::InstallSnapshotResponse {
                last_index, result, ..
            } => self.handle_snapshot_answer(from, last_index, result),
            MessageBody::ReadIndexRequest { id } => self.handle_read_index_request(from, id),
            MessageBody::ReadIndexResponse { id, index } => {
                self.handle_read_index_response(from, id, index)
            }
        }
    }

    /// Called for a leader's message of our term: a candidate gives up, a leader drops it
    /// (two leaders in one term would be a bug elsewhere). Returns whether to handle it.
    fn accept_leader(&mut self, from: NodeId) -> bool {
        match self.role {
            RoleState::Leader { .. } => {
                warn!(
                    node = self.config.id,
                    term = self.term,
                    from,
                    "message from another leader of the same term; dropped"
                );
                false
            }
            RoleState::Candidate(_) | RoleState::PreCandidate(_) => {
                self.become_follower(self.term, Some(from));
                true
            }
            RoleState::Follower => true,
        }
    }

    /// Returns the actions accumulated since the last call, in the order the driver must carry
    /// them out (see [`action`](crate::action)). Call it after every batch of inputs.
    pub fn take_actions(&mut self) -> Vec<Action> {
        if std::mem::take(&mut self.replication_pending) && self.is_leader() {
            for i in 0..self.peers.len() {
                self.send_append(self.peers[i]);
            }
        }
        if self.is_leader() {
            self.start_read_round();
        }
        self.flush_unpersisted();
        self.handed_out_persist_id = self.emitted_persist_id;
        std::mem::take(&mut self.actions)
    }

    /// Whether [`take_actions`](Self::take_actions) would return anything.
    pub fn has_actions(&self) -> bool {
        !self.actions.is_empty()
            || self.unpersisted_from.is_some()
            || (self.replication_pending && self.is_leader())
            || (self.is_leader()
                && self.log.term(self.commit_index) == Some(self.term)
                && self.reads.can_start_round())
    }

    // ----- Output helpers -----

    /// Queues an action. Anything but a send first flushes the leader's unpersisted entries, so
    /// persists reach the driver in the order the in-memory log changed. Adjacent persists are
    /// merged into one atomic update.
    fn push(&mut self, action: Action) {
        if !matches!(action, Action::Send(_)) {
            self.flush_unpersisted();
        }
        self.push_raw(action);
    }

    fn push_raw(&mut self, action: Action) {
        match action {
            Action::Persist(update) => self.push_persist(update, true),
            other => self.actions.push(other),
        }
    }

    /// Queues a persist, merged into the previous action if that is a persist too (never one
    /// already handed out: `take_actions` empties the list). With `backs_promises`, messages
    /// emitted after it wait for it (see `send_backed`).
    fn push_persist(&mut self, mut update: PersistUpdate, backs_promises: bool) {
        match self.actions.last_mut() {
            Some(Action::Persist(previous)) if previous.can_merge(&update) => {
                // The previous persist is the latest emitted, not yet taken by the driver: it
                // absorbs this one and keeps its id, which now stands for both.
                previous.merge(update);
                let last_entry = previous.last_entry();
                if let Some(back) = self.unreported.back_mut() {
                    back.1 = last_entry;
                }
            }
            _ => {
                self.emitted_persist_id += 1;
                update.id = self.emitted_persist_id;
                if backs_promises {
                    self.backing_persist_id = update.id;
                }
                self.unreported.push_back((update.id, update.last_entry()));
                self.actions.push(Action::Persist(update));
            }
        }
    }

    /// Sends a message that promises durable state (a granted vote, an acknowledgement of
    /// entries or of a snapshot, a candidate's vote request): it leaves only once every persist
    /// emitted so far that changes the term, the vote or the log (the one that backs the
    /// promise among them) is reported durable. Until then it is held (see
    /// [`persisted`](Self::persisted)). A compaction of the node's own entries is not waited
    /// for: it covers entries already durable.
    fn send_backed(&mut self, to: NodeId, body: MessageBody) {
        self.flush_unpersisted();
        let message = Message {
            from: self.config.id,
            to,
            term: self.term,
            body,
        };
        if self.backing_persist_id <= self.durable_persist_id {
            self.push_raw(Action::Send(message));
        } else {
            // Backing ids only grow, so the held queue stays ordered by the id it waits for.
            self.held.push_back((self.backing_persist_id, message));
        }
    }

    fn flush_unpersisted(&mut self) {
        if let Some(from) = self.unpersisted_from.take() {
            let entries = self.log.slice(from, self.log.last_index(), usize::MAX);
            self.push_raw(Action::Persist(PersistUpdate {
                entries,
                ..PersistUpdate::default()
            }));
        }
    }

    fn persist_hard_state(&mut self) {
        let hard_state = self.hard_state();
        self.push(Action::Persist(PersistUpdate {
            hard_state: Some(hard_state),
            ..PersistUpdate::default()
        }));
    }

    fn send(&mut self, to: NodeId, body: MessageBody) {
        self.send_with_term(to, self.term, body);
    }

    fn send_with_term(&mut self, to: NodeId, term: Term, body: MessageBody) {
        let message = Message {
            from: self.config.id,
            to,
            term,
            body,
        };
        self.push(Action::Send(message));
    }

    fn emit_committed(&mut self) {
        if self.commit_index > self.applied_index {
            let entries = self
                .log
                .slice(self.applied_index + 1, self.commit_index, usize::MAX);
            self.applied_index = self.commit_index;
            self.push(Action::Apply(entries));
        }
        self.release_ready_reads();
    }

    /// Emits `ReadReady` for confirmed reads whose index has been handed to the service.
    fn release_ready_reads(&mut self) {
        for (id, index) in self.reads.take_ready(self.applied_index) {
            self.push(Action::ReadReady { id, index });
        }
    }

    // ----- Role transitions -----

    /// Restarts the election timer with a random timeout. After consecutive elections that
    /// produced no leader, the random spread doubles (up to four times the configured spread):
    /// when round trips are slow compared with the timeout, competing candidates keep cutting
    /// each other's elections short, and a wider spread lets one of them finish.
    fn reset_election_timer(&mut self) {
        const MAX_BACKOFF_SHIFT: u32 = 2;
        self.election_elapsed = 0;
        let min = u64::from(self.config.election_timeout_min);
        let spread = u64::from(self.config.election_timeout_max) - min;
        let shift = self
            .failed_elections
            .saturating_sub(1)
            .min(MAX_BACKOFF_SHIFT);
        let timeout = self.rng.range(min, min + (spread << shift));
        self.election_timeout = u32::try_from(timeout).unwrap_or(u32::MAX);
    }

    /// A follower moves to a later term, with no vote and no known leader yet.
    fn adopt_term(&mut self, term: Term) {
        self.flush_unpersisted();
        self.term = term;
        self.voted_for = None;
        self.leader_id = None;
        self.persist_hard_state();
    }

    fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        self.flush_unpersisted();
        if self.is_leader() {
            self.fail_unconfirmed_reads();
        }
        if term > self.term {
            self.term = term;
            self.voted_for = None;
            self.persist_hard_state();
        }
        self.role = RoleState::Follower;
        self.leader_id = leader;
        self.replication_pending = false;
        // A node stepping down must restart its timer, or it may time out again at once and
        // elections never settle.
        self.reset_election_timer();
    }

    /// Ticks after a start during which a node grants no vote when lease reads are on.
    fn lease_quiet_ticks(&self) -> u64 {
        u64::from(self.config.election_timeout_min)
    }

    /// Whether this node heard from a live leader recently enough to refuse to replace it.
    fn in_leader_lease(&self) -> bool {
        match self.role {
            RoleState::Leader { .. } => true,
            _ => {
                self.leader_id.is_some() && self.election_elapsed < self.config.election_timeout_min
            }
        }
    }

    /// Pre-vote: ask whether a majority would vote for us in the next term, without raising ours.
    fn pre_campaign(&mut self) {
        self.flush_unpersisted();
        self.leader_id = None;
        self.role = RoleState::PreCandidate(VoteTally::with_self(self.config.id));
        self.reset_election_timer();
        debug!(node = self.config.id, term = self.term, "starting pre-vote");
        if quorum::has_majority(1, self.config.voters.len()) {
            self.campaign();
            return;
        }
        self.request_votes(self.term + 1, true);
    }

    /// A (pre-)candidate asks again, every heartbeat interval, the peers that have not answered
    /// yet: a lost request or answer then costs a heartbeat interval instead of a whole election
    /// timeout (and, with pre-vote, a second round). Asking twice is harmless: a voter grants
    /// the same candidate again in the same term.
    fn resend_vote_requests(&mut self) {
        let (term, pre_vote) = match &self.role {
            RoleState::PreCandidate(_) => (self.term + 1, true),
            RoleState::Candidate(_) => (self.term, false),
            RoleState::Follower | RoleState::Leader { .. } => return,
        };
        self.request_votes(term, pre_vote);
    }

    /// Asks every peer that has not answered yet for its vote (or pre-vote) in `term`,
    /// describing our last log entry.
    fn request_votes(&mut self, term: Term, pre_vote: bool) {
        let (last_log_index, last_log_term) = (self.log.last_index(), self.log.last_term());
        for i in 0..self.peers.len() {
            let answered = match &self.role {
                RoleState::PreCandidate(tally) | RoleState::Candidate(tally) => {
                    tally.has_answered(self.peers[i])
                }
                RoleState::Follower | RoleState::Leader { .. } => false,
            };
            if answered {
                continue;
            }
            if pre_vote {
                let body = MessageBody::PreVoteRequest {
                    last_log_index,
                    last_log_term,
                };
                self.send_with_term(self.peers[i], term, body);
            } else {
                // A vote request leaves once the candidate's term and self-vote are durable.
                let body = MessageBody::VoteRequest {
                    last_log_index,
                    last_log_term,
                };
                self.send_backed(self.peers[i], body);
            }
        }
    }

    /// Check-quorum: a leader that has not heard from a majority during the last window steps
    /// down, so a partitioned leader stops accepting proposals it can never commit.
    fn check_quorum(&mut self) {
        if !self.config.check_quorum {
            return;
        }
        let voters = self.config.voters.len();
        let RoleState::Leader { progress } = &mut self.role else {
            return;
        };
        let active = 1 + progress.values().filter(|p| p.recent_active).count();
        progress.values_mut().for_each(|p| p.recent_active = false);
        if !quorum::has_majority(active, voters) {
            debug!(
                node = self.config.id,
                term = self.term,
                active,
                "lost contact with a majority; stepping down"
            );
            self.become_follower(self.term, None);
        }
    }

    fn campaign(&mut self) {
        self.term += 1;
        self.voted_for = Some(self.config.id);
        self.leader_id = None;
        self.role = RoleState::Candidate(VoteTally::with_self(self.config.id));
        self.reset_election_timer();
        debug!(node = self.config.id, term = self.term, "starting election");
        // The new term and self-vote are listed before the requests: durable before they leave.
        self.persist_hard_state();
        if quorum::has_majority(1, self.config.voters.len()) {
            self.become_leader();
            return;
        }
        self.request_votes(self.term, false);
    }

    fn become_leader(&mut self) {
        debug!(node = self.config.id, term = self.term, "became leader");
        let last_index = self.log.last_index();
        let progress = self
            .peers
            .iter()
            .map(|&peer| (peer, Progress::new(last_index)))
            .collect();
        self.role = RoleState::Leader { progress };
        self.leader_id = Some(self.config.id);
        self.lease_rounds.clear();
        self.lease_until = 0;
        self.heartbeat_elapsed = 0;
        self.check_quorum_elapsed = 0;
        self.failed_elections = 0;
        // An entry of the new term lets the leader commit everything before it (§5.4.2).
        self.append_as_leader(Payload::Noop);
    }

    fn append_as_leader(&mut self, payload: Payload) -> (LogIndex, Term) {
        let index = self.log.last_index() + 1;
        self.log.append(Entry {
            index,
            term: self.term,
            payload,
        });
        self.unpersisted_from.get_or_insert(index);
        self.replication_pending = true;
        (index, self.term)
    }

    // ----- Message handlers -----

    /// A request from an older term gets an answer carrying our term, so its sender steps down.
    fn answer_stale_request(&mut self, message: Message) {
        match message.body {
            MessageBody::PreVoteRequest { .. } => self.send(
                message.from,
                MessageBody::PreVoteResponse { granted: false },
            ),
            MessageBody::VoteRequest { .. } => {
                self.send(message.from, MessageBody::VoteResponse { granted: false })
            }
            MessageBody::AppendRequest {
                prev_log_index,
                read_seq,
                ..
            } => self.send(
                message.from,
                MessageBody::AppendResponse {
                    request_term: message.term,
                    result: AppendResult::Rejected {
                        prev_log_index,
                        conflict_term: None,
                        conflict_index: self.log.last_index() + 1,
                    },
                    read_seq,
                },
            ),
            MessageBody::InstallSnapshotRequest { meta, .. } => self.send(
                message.from,
                MessageBody::InstallSnapshotResponse {
                    request_term: message.term,
                    last_index: meta.last_index,
                    result: SnapshotResult::Continue { next_offset: 0 },
                },
            ),
            MessageBody::ReadIndexRequest { id } => self.send(
                message.from,
                MessageBody::ReadIndexResponse { id, index: None },
            ),
            MessageBody::PreVoteResponse { .. }
            | MessageBody::VoteResponse { .. }
            | MessageBody::AppendResponse { .. }
            | MessageBody::InstallSnapshotResponse { .. }
            | MessageBody::ReadIndexResponse { .. } => {}
        }
    }

    fn handle_pre_vote_request(
        &mut self,
        candidate: NodeId,
        proposed_term: Term,
        last_log_index: LogIndex,
        last_log_term: Term,
    ) {
        // Granting promises nothing and changes nothing, so nothing is persisted.
        let granted = proposed_term > self.term
            && !self.in_leader_lease()
            && self.log.is_up_to_date(last_log_index, last_log_term);
        let term = if granted { proposed_term } else { self.term };
        self.send_with_term(candidate, term, MessageBody::PreVoteResponse { granted });
    }

    fn handle_pre_vote_response(&mut self, voter: NodeId, term: Term, granted: bool) {
        let voters = self.config.voters.len();
        let proposed = self.term + 1;
        let RoleState::PreCandidate(tally) = &mut self.role else {
            return;
        };
        if granted && term != proposed {
            return; // a grant for a term we no longer propose
        }
        match tally.record(voter, granted, voters) {
            TallyResult::Won => self.campaign(),
            TallyResult::Lost => self.become_follower(self.term, None),
            TallyResult::Pending => {}
        }
    }

    fn handle_vote_request(
        &mut self,
        candidate: NodeId,
        last_log_index: LogIndex,
        last_log_term: Term,
    ) {
        let can_vote = self.voted_for == Some(candidate)
            || (self.voted_for.is_none() && self.leader_id.is_none());
        let granted = can_vote && self.log.is_up_to_date(last_log_index, last_log_term);
        debug!(
            node = self.config.id,
            term = self.term,
            candidate,
            granted,
            "vote request"
        );
        if !granted {
            self.send(candidate, MessageBody::VoteResponse { granted });
            return;
        }
        if self.voted_for != Some(candidate) {
            // A first grant: store the vote, and give the candidate an election timeout to win.
            // A repeated request (the candidate resends to voters it has not heard from) is
            // granted again but restarts nothing: a candidate that can send but not receive
            // would otherwise hold every voter's timer back forever, and no one else could be
            // elected.
            self.voted_for = Some(candidate);
            self.persist_hard_state();
            self.reset_election_timer();
        }
        // Leaves only once the vote is durable.
        self.send_backed(candidate, MessageBody::VoteResponse { granted });
    }

    fn handle_vote_response(&mut self, voter: NodeId, granted: bool) {
        let voters = self.config.voters.len();
        let RoleState::Candidate(tally) = &mut self.role else {
            return;
        };
        match tally.record(voter, granted, voters) {
            TallyResult::Won => self.become_leader(),
            TallyResult::Lost => self.become_follower(self.term, None),
            TallyResult::Pending => {}
        }
    }

    fn handle_append_request(
        &mut self,
        leader: NodeId,
        prev_log_index: LogIndex,
        prev_log_term: Term,
        entries: Vec<Entry>,
        leader_commit: LogIndex,
        read_seq: u64,
    ) {
        self.leader_id = Some(leader);
        self.election_elapsed = 0;
        self.failed_elections = 0;

        if let Err(problem) = validate_entries(prev_log_index, prev_log_term, self.term, &entries) {
            warn!(
                node = self.config.id,
                from = leader,
                problem,
                "malformed AppendEntries dropped"
            );
            return;
        }

        // Consistency check on the entry before the new ones. Compacted entries are committed,
        // so they match the leader's by the leader completeness property.
        if prev_log_index >= self.log.snapshot_index() {
            match self.log.term(prev_log_index) {
                None => {
                    let result = AppendResult::Rejected {
                        prev_log_index,
                        conflict_term: None,
                        conflict_index: self.log.last_index() + 1,
                    };
                    let request_term = self.term;
                    let body = MessageBody::AppendResponse {
                        request_term,
                        result,
                        read_seq,
                    };
                    self.send(leader, body);
                    return;
                }
                Some(term) if term != prev_log_term => {
                    let result = AppendResult::Rejected {
                        prev_log_index,
                        conflict_term: Some(term),
                        conflict_index: self.log.first_index_of_term_at(prev_log_index),
                    };
                    let request_term = self.term;
                    let body = MessageBody::AppendResponse {
                        request_term,
                        result,
                        read_seq,
                    };
                    self.send(leader, body);
                    return;
                }
                Some(_) => {}
            }
        }

        // Skip entries we already hold; truncate only at the first real conflict, so a stale,
        // duplicated or reordered request never deletes matching entries.
        let mut update = PersistUpdate::default();
        let mut first_new = entries.len();
        for (k, entry) in entries.iter().enumerate() {
            if entry.index <= self.log.snapshot_index() {
                continue;
            }
            match self.log.term(entry.index) {
                Some(term) if term == entry.term => continue,
                Some(_) => {
                    if entry.index <= self.commit_index {
                        warn!(
                            node = self.config.id,
                            from = leader,
                            index = entry.index,
                            commit = self.commit_index,
                            "AppendEntries conflicts with a committed entry; dropped"
                        );
                        return;
                    }
                    self.log.truncate_from(entry.index);
                    self.durable_index = self.durable_index.min(entry.index - 1);
                    update.truncate_from = Some(entry.index);
                    first_new = k;
                    break;
                }
                None => {
                    first_new = k;
                    break;
                }
            }
        }
        if first_new < entries.len() {
            let new_entries = entries[first_new..].to_vec();
            for entry in &new_entries {
                self.log.append(entry.clone());
            }
            update.entries = new_entries;
        }
        if !update.is_empty() {
            self.push(Action::Persist(update));
        }

        let last_new = prev_log_index + entries.len() as LogIndex;
        let new_commit = leader_commit.min(last_new);
        if new_commit > self.commit_index {
            self.commit_index = new_commit;
        }
        // Leaves once the acknowledged entries are durable, whichever earlier persist (of this
        // request or of a duplicate's) wrote them.
        self.send_backed(
            leader,
            MessageBody::AppendResponse {
                request_term: self.term,
                result: AppendResult::Accepted {
                    match_index: last_new,
                },
                read_seq,
            },
        );
        self.emit_committed();
    }

    fn handle_append_response(&mut self, follower: NodeId, result: AppendResult, read_seq: u64) {
        // Any answer of our term, accepted or not, shows the follower still took us as leader
        // when it received the request, which carried read round `read_seq`.
        self.record_read_ack(follower, read_seq);
        let last_index = self.log.last_index();
        let RoleState::Leader { progress } = &mut self.role else {
            return;
        };
        let Some(pr) = progress.get_mut(&follower) else {
            return;
        };
        match result {
            AppendResult::Accepted { match_index } => {
                if match_index > last_index {
                    warn!(
                        node = self.config.id,
                        follower,
                        match_index,
                        last_index,
                        "acknowledgement beyond our log; dropped"
                    );
                    return;
                }
                if pr.on_accepted(match_index) {
                    self.maybe_commit();
                }
            }
            AppendResult::Rejected {
                prev_log_index,
                conflict_term,
                conflict_index,
            } => {
                pr.on_rejected(prev_log_index);
                if pr.is_stale_rejection(prev_log_index) {
                    return;
                }
                // Jump back a whole term at a time using the follower's hint.
                let next = match conflict_term {
                    None => conflict_index,
                    Some(term) => self
                        .log
                        .last_index_of_term(term, prev_log_index)
                        .map_or(conflict_index, |index| index + 1),
                };
                // Always move strictly backwards from the rejected probe, never to 0.
                let next = next.min(prev_log_index).max(1);
                debug!(
                    node = self.config.id,
                    follower,
                    prev_log_index,
                    ?conflict_term,
                    conflict_index,
                    next,
                    "append rejected"
                );
                pr.become_probe(next);
            }
        }
        self.send_append(follower);
    }

    // ----- Leader replication -----

    /// Sends entries from the follower's `next_index`, unless its progress is paused. In probe
    /// state an empty append is sent too (it finds the match point). A follower that needs
    /// compacted entries is sent the snapshot instead.
    fn send_append(&mut self, follower: NodeId) {
        let (max_inflight, max_bytes) = (
            self.config.max_inflight_appends,
            self.config.max_inflight_bytes,
        );
        let read_seq = self.reads.seq();
        let RoleState::Leader { progress } = &mut self.role else {
            return;
        };
        let Some(pr) = progress.get_mut(&follower) else {
            return;
        };
        let prev_log_index = pr.next_index - 1;
        let prev_log_term = match self.log.term(prev_log_index) {
            Some(term) if pr.state != ReplicationState::Snapshot => term,
            _ => return self.send_snapshot_chunk(follower),
        };
        if pr.is_paused(max_inflight, max_bytes) {
            return;
        }
        // A probe sent while earlier appends still fill the byte window only looks for the
        // match point.
        let entries = if pr.window_full(max_inflight, max_bytes) {
            Vec::new()
        } else {
            self.log.slice(
                pr.next_index,
                self.log.last_index(),
                self.config.max_append_bytes,
            )
        };
        if entries.is_empty() && pr.state == ReplicationState::Replicate {
            return;
        }
        let bytes = entries.iter().map(Entry::size_hint).sum();
        pr.on_sent(prev_log_index, entries.last().map(|e| e.index), bytes);
        let body = MessageBody::AppendRequest {
            prev_log_index,
            prev_log_term,
            entries,
            leader_commit: self.commit_index,
            read_seq,
        };
        self.send(follower, body);
    }

    /// Sends the next chunk of the snapshot to a follower that needs compacted entries, starting
    /// (or restarting, when the leader has compacted again since) the transfer if needed.
    fn send_snapshot_chunk(&mut self, follower: NodeId) {
        let chunk_bytes = self.config.snapshot_chunk_bytes;
        let RoleState::Leader { progress } = &mut self.role else {
            return;
        };
        let Some(pr) = progress.get_mut(&follower) else {
            return;
        };
        let Some(snapshot) = &self.snapshot else {
            // The log is compacted only together with a snapshot, which the node keeps.
            warn!(
                node = self.config.id,
                follower, "follower needs compacted entries but no snapshot is held"
            );
            return;
        };
        let meta = snapshot.meta;
        if pr.snapshot_transfer().map(|t| t.last_index) != Some(meta.last_index) {
            debug!(
                node = self.config.id,
                follower,
                snapshot = meta.last_index,
                bytes = snapshot.data.len(),
                "sending snapshot"
            );
            pr.become_snapshot(meta.last_index);
        }
        if pr.is_paused(usize::MAX, usize::MAX) {
            return;
        }
        let Some(transfer) = pr.snapshot_transfer() else {
            return;
        };
        let len = snapshot.data.len();
        let start = usize::try_from(transfer.next_offset).map_or(len, |o| o.min(len));
        let end = start.saturating_add(chunk_bytes).min(len);
        let data = snapshot.data[start..end].to_vec();
        pr.on_chunk_sent();
        let body = MessageBody::InstallSnapshotRequest {
            meta,
            offset: start as u64,
            data,
            done: end == len,
        };
        self.send(follower, body);
    }

    fn broadcast_heartbeat(&mut self) {
        if self.config.lease_reads {
            // Every heartbeat is a round: once a majority echoes it, the lease extends from the
            // time it was sent.
            let seq = self.reads.bump();
            self.lease_rounds.push_back((seq, self.ticks));
            let keep =
                (self.config.election_timeout_max / self.config.heartbeat_interval) as usize + 2;
            while self.lease_rounds.len() > keep {
                self.lease_rounds.pop_front();
            }
        }
        for i in 0..self.peers.len() {
            let follower = self.peers[i];
            let RoleState::Leader { progress } = &mut self.role else {
                return;
            };
            let Some(pr) = progress.get_mut(&follower) else {
                continue;
            };
            if pr.on_heartbeat() {
                // Probing or sending a snapshot (or fell back to probing): resend from where
                // the follower stands.
                self.send_append(follower);
                continue;
            }
            self.send_heartbeat(follower);
        }
    }

    /// An empty append at the follower's known match point: carries the commit index and the
    /// read round without disturbing the entries in flight. A replicating follower only.
    fn send_heartbeat(&mut self, follower: NodeId) {
        let RoleState::Leader { progress } = &self.role else {
            return;
        };
        let Some(pr) = progress.get(&follower) else {
            return;
        };
        let prev_log_index = pr.match_index;
        let Some(prev_log_term) = self.log.term(prev_log_index) else {
            // The match point was compacted: the follower needs the snapshot.
            return self.send_snapshot_chunk(follower);
        };
        let body = MessageBody::AppendRequest {
            prev_log_index,
            prev_log_term,
            entries: Vec::new(),
            leader_commit: self.commit_index,
            read_seq: self.reads.seq(),
        };
        self.send(follower, body);
    }

    /// Advances the commit index to the highest index a majority holds durably, if that entry
    /// is from the current term (Figure 8: older entries commit only indirectly).
    fn maybe_commit(&mut self) {
        let RoleState::Leader { progress } = &self.role else {
            return;
        };
        let mut matches: Vec<LogIndex> = progress.values().map(|p| p.match_index).collect();
        matches.push(self.durable_index);
        let candidate = quorum::committed_index(&mut matches);
        if candidate > self.commit_index && self.log.term(candidate) == Some(self.term) {
            trace!(node = self.config.id, commit = candidate, "commit advanced");
            self.commit_index = candidate;
            self.emit_committed();
        }
    }

    // ----- Snapshots (follower side and answers) -----

    /// A chunk of the leader's snapshot. Chunks must arrive in order; anything else is answered
    /// with the offset expected next, so the leader resends from there.
    fn handle_snapshot_chunk(
        &mut self,
        leader: NodeId,
        message_term: Term,
        meta: SnapshotMeta,
        offset: u64,
        data: Vec<u8>,
        done: bool,
    ) {
        self.leader_id = Some(leader);
        self.election_elapsed = 0;
        self.failed_elections = 0;
        if meta.last_term > message_term || meta.last_index == 0 {
            warn!(
                node = self.config.id,
                from = leader,
                ?meta,
                "malformed InstallSnapshot dropped"
            );
            return;
        }
        let last_index = meta.last_index;
        if last_index <= self.commit_index {
            // Stale or duplicated: we already hold (committed) everything it covers.
            self.answer_snapshot(leader, last_index, SnapshotResult::Installed);
            return;
        }
        if offset == 0 && self.incoming_snapshot.as_ref().map(|s| s.meta) != Some(meta) {
            // The first chunk of a new snapshot (a first chunk of the one being received is a
            // duplicate: it is answered with the offset expected next).
            self.incoming_snapshot = Some(Snapshot {
                meta,
                data: Vec::new(),
            });
        }
        let expected = match &self.incoming_snapshot {
            Some(incoming) if incoming.meta == meta => incoming.data.len() as u64,
            _ => 0,
        };
        if offset != expected {
            let result = SnapshotResult::Continue {
                next_offset: expected,
            };
            self.answer_snapshot(leader, last_index, result);
            return;
        }
        let Some(incoming) = &mut self.incoming_snapshot else {
            return; // offset == expected == 0 implies a buffer was just created
        };
        incoming.data.extend_from_slice(&data);
        if !done {
            let result = SnapshotResult::Continue {
                next_offset: incoming.data.len() as u64,
            };
            self.answer_snapshot(leader, last_index, result);
            return;
        }
        if let Some(snapshot) = self.incoming_snapshot.take() {
            self.install_snapshot(snapshot);
        }
        self.answer_snapshot(leader, last_index, SnapshotResult::Installed);
    }

    /// Answers a snapshot chunk of the current term. `Installed` promises that a state covering
    /// `last_index` is durable here, so it leaves only once every persist emitted so far is
    /// (covering both a snapshot just stored and committed entries written by earlier persists).
    fn answer_snapshot(&mut self, leader: NodeId, last_index: LogIndex, result: SnapshotResult) {
        let body = MessageBody::InstallSnapshotResponse {
            request_term: self.term,
            last_index,
            result,
        };
        match result {
            SnapshotResult::Installed => self.send_backed(leader, body),
            SnapshotResult::Continue { .. } => self.send(leader, body),
        }
    }

    /// Replaces the log prefix with a complete snapshot from the leader: keeps the entries after
    /// it if the log holds the snapshot's last entry, drops the whole log otherwise; stores the
    /// snapshot and hands it to the service.
    fn install_snapshot(&mut self, snapshot: Snapshot) {
        let meta = snapshot.meta;
        let keep_suffix = self.log.term(meta.last_index) == Some(meta.last_term);
        debug!(
            node = self.config.id,
            last_index = meta.last_index,
            last_term = meta.last_term,
            keep_suffix,
            "installing snapshot"
        );
        let old_snapshot_index = self.log.snapshot_index();
        self.log.compact_to(meta.last_index, meta.last_term);
        let truncate_from = if keep_suffix {
            None
        } else {
            // The disk holds the old snapshot and entries that conflict somewhere after it:
            // only the old snapshot is known to match until this write is reported.
            self.durable_index = self.durable_index.min(old_snapshot_index);
            Some(meta.last_index + 1)
        };
        self.push(Action::Persist(PersistUpdate {
            snapshot: Some(snapshot.clone()),
            truncate_from,
            ..PersistUpdate::default()
        }));
        self.snapshot = Some(snapshot.clone());
        self.commit_index = self.commit_index.max(meta.last_index);
        self.applied_index = meta.last_index;
        self.push(Action::InstallSnapshot(snapshot));
        self.emit_committed();
    }

    fn handle_snapshot_answer(
        &mut self,
        follower: NodeId,
        last_index: LogIndex,
        result: SnapshotResult,
    ) {
        let RoleState::Leader { progress } = &mut self.role else {
            return;
        };
        let Some(pr) = progress.get_mut(&follower) else {
            return;
        };
        match result {
            SnapshotResult::Installed => {
                if last_index > self.log.last_index() {
                    return; // not a snapshot of ours
                }
                let was_snapshot = pr.state == ReplicationState::Snapshot;
                if !was_snapshot && last_index <= pr.match_index {
                    return; // a late duplicate
                }
                let advanced = pr.on_accepted(last_index);
                debug!(
                    node = self.config.id,
                    follower, last_index, "follower installed snapshot"
                );
                if advanced {
                    self.maybe_commit();
                }
            }
            SnapshotResult::Continue { next_offset } => {
                if pr.state != ReplicationState::Snapshot {
                    return;
                }
                pr.on_chunk_answer(last_index, next_offset);
            }
        }
        self.send_append(follower);
    }

    // ----- Reads -----

    /// Leader: starts a confirmation round for the reads waiting for one, once the leader has
    /// committed an entry of its term (before that its commit index may lag behind entries
    /// committed by earlier leaders).
    fn start_read_round(&mut self) {
        if self.log.term(self.commit_index) != Some(self.term) {
            return;
        }
        let Some(seq) = self.reads.start_round(self.commit_index) else {
            return;
        };
        trace!(node = self.config.id, seq, "read round started");
        if self.peers.is_empty() {
            self.confirm_reads();
            return;
        }
        for i in 0..self.peers.len() {
            let follower = self.peers[i];
            let replicating = self
                .progress(follower)
                .is_some_and(|p| p.state == ReplicationState::Replicate);
            if replicating {
                self.send_heartbeat(follower);
            } else {
                // Probing or receiving a snapshot: its next append carries the round.
                self.send_append(follower);
            }
        }
    }

    /// Leader: records that `follower` echoed read round `read_seq`, confirming rounds a
    /// majority has now echoed.
    fn record_read_ack(&mut self, follower: NodeId, read_seq: u64) {
        let RoleState::Leader { progress } = &mut self.role else {
            return;
        };
        let Some(pr) = progress.get_mut(&follower) else {
            return;
        };
        if read_seq > pr.read_seq_acked {
            pr.read_seq_acked = read_seq;
            self.confirm_reads();
        }
    }

    /// Leader: releases the reads of the round in flight if a majority (this node included) has
    /// echoed it: local reads wait for their index to be applied, forwarded ones are answered.
    fn confirm_reads(&mut self) {
        let RoleState::Leader { progress } = &self.role else {
            return;
        };
        let mut acked: Vec<u64> = progress.values().map(|p| p.read_seq_acked).collect();
        acked.push(self.reads.seq());
        let quorum_seq = quorum::committed_index(&mut acked);
        while let Some(&(seq, sent_at)) = self.lease_rounds.front() {
            if seq > quorum_seq {
                break;
            }
            self.lease_rounds.pop_front();
            let until = sent_at + u64::from(self.config.lease_ticks());
            self.lease_until = self.lease_until.max(until);
        }
        for (read, index) in self.reads.confirm(quorum_seq) {
            match read.from {
                None => self.reads.push_ready(read.id, index),
                Some(follower) => self.send(
                    follower,
                    MessageBody::ReadIndexResponse {
                        id: read.id,
                        index: Some(index),
                    },
                ),
            }
        }
        self.release_ready_reads();
    }

    /// Fails every read not confirmed yet: this node stops leading.
    fn fail_unconfirmed_reads(&mut self) {
        for read in self.reads.take_unconfirmed() {
            match read.from {
                None => self.push(Action::ReadFailed {
                    id: read.id,
                    error: ReadError::LeadershipLost,
                }),
                Some(follower) => self.send(
                    follower,
                    MessageBody::ReadIndexResponse {
                        id: read.id,
                        index: None,
                    },
                ),
            }
        }
    }

    fn handle_read_index_request(&mut self, follower: NodeId, id: u64) {
        if self.is_leader() {
            self.reads.queue(PendingRead {
                id,
                from: Some(follower),
            });
        } else {
            self.send(follower, MessageBody::ReadIndexResponse { id, index: None });
        }
    }

    fn handle_read_index_response(&mut self, leader: NodeId, wire: u64, index: Option<LogIndex>) {
        let Some(id) = self.reads.answer_forwarded(wire, leader, self.term) else {
            return; // a duplicate, late or foreign answer
        };
        match index {
            Some(index) => {
                self.reads.push_ready(id, index);
                self.release_ready_reads();
            }
            None => self.push(Action::ReadFailed {
                id,
                error: ReadError::LeadershipLost,
            }),
        }
    }
}

/// Checks that an AppendEntries' entries are consecutive after `prev_log_index`, with terms that
/// never decrease, start at or above `prev_log_term` and stay at or below the message's term.
fn validate_entries(
    prev_log_index: LogIndex,
    prev_log_term: Term,
    message_term: Term,
    entries: &[Entry],
) -> Result<(), &'static str> {
    if prev_log_term > message_term {
        return Err("previous entry's term is after the message's term");
    }
    let mut expected = prev_log_index.checked_add(1).ok_or("index overflow")?;
    let mut previous_term = prev_log_term;
    for entry in entries {
        if entry.index != expected {
            return Err("entries are not consecutive");
        }
        if entry.term < previous_term || entry.term > message_term {
            return Err("entry terms out of order");
        }
        expected = expected.checked_add(1).ok_or("index overflow")?;
        previous_term = entry.term;
    }
    Ok(())
}
