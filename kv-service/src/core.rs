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
//! The logic lives in [`KvService`]; a driver that runs the state-machine lane itself (the
//! simulator) uses that directly, with the node in its own hands.
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

use raft_core::{
    Action, DurableState, Lane, LogIndex, Message, NodeId, PersistId, PersistUpdate, RaftNode,
    RestoreError, Status,
};

use crate::codec::CodecError;
use crate::config::{ServiceConfig, ServiceConfigError};
use crate::machine::KvStateMachine;
use crate::protocol::{ClientRequest, Reply, RequestId};
use crate::service::KvService;

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

/// One replica of the KV service: a [`RaftNode`] and a [`KvService`], driven by method calls
/// and answering with [`ServiceAction`]s. See the [module docs](self).
#[derive(Debug)]
pub struct ServiceCore {
    raft: RaftNode,
    service: KvService,
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
        let raft_config = config.raft.clone();
        let service = KvService::restore(config, state)?;
        let raft = RaftNode::restore(raft_config, state)?;
        Ok(Self {
            raft,
            service,
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
        self.service.config()
    }

    /// The Raft node.
    pub fn raft(&self) -> &RaftNode {
        &self.raft
    }

    /// The service logic.
    pub fn service(&self) -> &KvService {
        &self.service
    }

    /// The state machine.
    pub fn machine(&self) -> &KvStateMachine {
        self.service.machine()
    }

    /// Whether this replica leads its current term.
    pub fn is_leader(&self) -> bool {
        self.raft.is_leader()
    }

    /// The persisted Raft state's size as the core counts it (see the [module docs](self)).
    pub fn raft_state_size(&self) -> u64 {
        self.service.raft_state_size()
    }

    /// A summary of the core's state.
    pub fn status(&self) -> ServiceStatus {
        let machine = self.service.machine();
        ServiceStatus {
            raft: self.raft.status(),
            keys: machine.len(),
            sessions: machine.sessions().len(),
            clock_ms: machine.clock_ms(),
            raft_state_size: self.service.raft_state_size(),
            pending_proposals: self.service.pending_proposals(),
            pending_reads: self.service.pending_reads(),
            unavailable: self.service.is_unavailable(),
        }
    }

    // ----- Inputs -----

    /// Advances logical time by one Raft tick; `now_ms` is the driver's clock.
    pub fn tick(&mut self, now_ms: u64) {
        self.service.tick(now_ms);
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
        self.service
            .handle_request(&mut self.raft, now_ms, id, request);
    }

    /// Returns the actions accumulated since the last call, in the order the driver must carry
    /// them out (see the [module docs](self)). Call it after every batch of inputs.
    pub fn take_actions(&mut self) -> Vec<ServiceAction> {
        loop {
            for action in self.raft.take_actions() {
                match action {
                    Action::Persist(update) => {
                        self.service.persisting(&update);
                        self.actions.push(ServiceAction::Persist(update));
                    }
                    Action::Send(message) => self.actions.push(ServiceAction::Send(message)),
                    other => {
                        debug_assert_eq!(other.lane(), Lane::StateMachine);
                        self.service.run(other);
                    }
                }
            }
            // Applies first, then leadership: a proposal whose index another entry took is
            // told so, rather than just "leadership lost".
            self.service.settle(&mut self.raft);
            if !self.raft.has_actions() {
                break;
            }
        }
        for (id, reply) in self.service.take_replies() {
            self.actions.push(ServiceAction::Reply { id, reply });
        }
        std::mem::take(&mut self.actions)
    }
}
