//! [`LocalCluster`]: the simplest possible driver for a few [`ServiceCore`]s in one thread.
//!
//! Meant for examples, unit tests and demos, not as a simulator: writes become durable at once
//! (the [`DurableState`] of each node is its disk), messages are delivered in FIFO order, time
//! moves only when the caller says so, and faults are explicit calls (isolate a node, crash and
//! restart it, drop or duplicate messages by editing the queue). It is deterministic: the same
//! calls give the same run.

use std::collections::{BTreeSet, VecDeque};

use raft_core::{Config, DurableState, Message, NodeId, UpdateError};

use crate::config::ServiceConfig;
use crate::core::{ServiceAction, ServiceCore, ServiceError};
use crate::protocol::{ClientRequest, Reply, RequestId};

/// Why a [`LocalCluster`] could not carry on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocalError {
    /// A core could not be built or restored.
    #[error("node {node}: {error}")]
    Service {
        /// The node.
        node: NodeId,
        /// What went wrong.
        error: ServiceError,
    },
    /// A core emitted a persist that does not fit its disk (a bug in the core).
    #[error("node {node} emitted an invalid persist: {error}")]
    Persist {
        /// The node.
        node: NodeId,
        /// What went wrong.
        error: UpdateError,
    },
    /// No node with this id.
    #[error("no node {0}")]
    NoSuchNode(NodeId),
}

/// One node: its configuration, its disk and, unless crashed, its core.
#[derive(Debug)]
struct Slot {
    config: ServiceConfig,
    disk: DurableState,
    core: Option<ServiceCore>,
    /// How far this node's clock runs ahead of the cluster's.
    skew_ms: u64,
    /// Starts so far (each start gets its own Raft seed).
    starts: u64,
}

/// The Raft seed of start number `start` of `node`: fixed, so that a run is reproducible, and
/// different for every start, as raft-core asks of drivers.
fn seed_of(node: NodeId, start: u64) -> u64 {
    raft_core::rng::SplitMix64::new(node.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ start).next_u64()
}

/// A few service cores wired together in memory. Node ids are `1..=n`.
#[derive(Debug)]
pub struct LocalCluster {
    slots: Vec<Slot>,
    network: VecDeque<Message>,
    isolated: BTreeSet<NodeId>,
    now_ms: u64,
    tick_ms: u64,
    replies: Vec<(NodeId, RequestId, Reply)>,
}

impl LocalCluster {
    /// `n` nodes with default configurations, each adjusted by `tweak`; ticks are 10 ms apart.
    /// Each start of a node gets a Raft seed fixed by its id and start count (any seed `tweak`
    /// sets is replaced), so the same calls give the same run.
    pub fn new(n: u64, mut tweak: impl FnMut(&mut ServiceConfig)) -> Result<Self, LocalError> {
        let voters: Vec<NodeId> = (1..=n).collect();
        let mut slots = Vec::new();
        for &id in &voters {
            let mut config = ServiceConfig::new(Config::new(id, voters.clone()));
            tweak(&mut config);
            config.raft.seed = seed_of(id, 0);
            let core = ServiceCore::new(config.clone())
                .map_err(|error| LocalError::Service { node: id, error })?;
            slots.push(Slot {
                config,
                disk: DurableState::default(),
                core: Some(core),
                skew_ms: 0,
                starts: 1,
            });
        }
        Ok(Self {
            slots,
            network: VecDeque::new(),
            isolated: BTreeSet::new(),
            now_ms: 0,
            tick_ms: 10,
            replies: Vec::new(),
        })
    }

    /// The current time, in milliseconds.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// The ids of the nodes.
    pub fn ids(&self) -> Vec<NodeId> {
        (1..=self.slots.len() as NodeId).collect()
    }

    fn slot(&self, node: NodeId) -> Option<&Slot> {
        self.slots.get(usize::try_from(node.checked_sub(1)?).ok()?)
    }

    fn slot_mut(&mut self, node: NodeId) -> Result<&mut Slot, LocalError> {
        node.checked_sub(1)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.slots.get_mut(i))
            .ok_or(LocalError::NoSuchNode(node))
    }

    /// The core of `node`, unless it is crashed.
    pub fn core(&self, node: NodeId) -> Option<&ServiceCore> {
        self.slot(node)?.core.as_ref()
    }

    /// The disk of `node`.
    pub fn disk(&self, node: NodeId) -> Option<&DurableState> {
        self.slot(node).map(|s| &s.disk)
    }

    /// The live, connected node that leads the highest term, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.slots
            .iter()
            .filter_map(|s| s.core.as_ref())
            .filter(|c| c.is_leader() && !self.isolated.contains(&c.id()))
            .max_by_key(|c| c.raft().term())
            .map(ServiceCore::id)
    }

    /// The message queue, to drop, duplicate or reorder messages.
    pub fn network_mut(&mut self) -> &mut VecDeque<Message> {
        &mut self.network
    }

    /// Cuts `node` off: messages to and from it are dropped.
    pub fn isolate(&mut self, node: NodeId) {
        self.isolated.insert(node);
    }

    /// Reconnects `node`.
    pub fn heal_node(&mut self, node: NodeId) {
        self.isolated.remove(&node);
    }

    /// Reconnects every node.
    pub fn heal(&mut self) {
        self.isolated.clear();
    }

    /// Whether `node` is cut off.
    pub fn is_isolated(&self, node: NodeId) -> bool {
        self.isolated.contains(&node)
    }

    /// Crashes `node`: its core is dropped, its disk kept.
    pub fn crash(&mut self, node: NodeId) -> Result<(), LocalError> {
        self.slot_mut(node)?.core = None;
        Ok(())
    }

    /// Restarts a crashed `node` from its disk.
    pub fn restart(&mut self, node: NodeId) -> Result<(), LocalError> {
        let slot = self.slot_mut(node)?;
        let mut config = slot.config.clone();
        config.raft.seed = seed_of(node, slot.starts);
        slot.starts += 1;
        let core = ServiceCore::restore(config, &slot.disk)
            .map_err(|error| LocalError::Service { node, error })?;
        slot.core = Some(core);
        Ok(())
    }

    /// Hands a client request to `node` (a crashed node drops it) and runs the cluster.
    pub fn request(
        &mut self,
        node: NodeId,
        id: RequestId,
        request: ClientRequest,
    ) -> Result<(), LocalError> {
        self.submit(node, id, request)?;
        self.run()
    }

    /// Hands a client request to `node` (a crashed node drops it) without running anything.
    pub fn submit(
        &mut self,
        node: NodeId,
        id: RequestId,
        request: ClientRequest,
    ) -> Result<(), LocalError> {
        let now = self.clock_of(node);
        if let Some(core) = self.slot_mut(node)?.core.as_mut() {
            core.handle_request(now, id, request);
        }
        Ok(())
    }

    /// Makes `node`'s clock run `ms` milliseconds ahead of the cluster's.
    pub fn set_skew(&mut self, node: NodeId, ms: u64) -> Result<(), LocalError> {
        self.slot_mut(node)?.skew_ms = ms;
        Ok(())
    }

    fn clock_of(&self, node: NodeId) -> u64 {
        self.now_ms + self.slot(node).map_or(0, |s| s.skew_ms)
    }

    /// Takes the replies collected so far, as `(node, request id, reply)`.
    pub fn take_replies(&mut self) -> Vec<(NodeId, RequestId, Reply)> {
        std::mem::take(&mut self.replies)
    }

    /// Takes the replies to request `id` collected so far, leaving the others.
    pub fn take_replies_to(&mut self, id: RequestId) -> Vec<Reply> {
        let (mine, others) = std::mem::take(&mut self.replies)
            .into_iter()
            .partition(|&(_, rid, _)| rid == id);
        self.replies = others;
        mine.into_iter().map(|(_, _, reply)| reply).collect()
    }

    /// Advances time by one tick, ticks every live core, and runs the cluster.
    pub fn tick(&mut self) -> Result<(), LocalError> {
        self.now_ms += self.tick_ms;
        let now = self.now_ms;
        for slot in &mut self.slots {
            if let Some(core) = slot.core.as_mut() {
                core.tick(now + slot.skew_ms);
            }
        }
        self.run()
    }

    /// Ticks until a connected node leads (at most `max_ticks` times); returns it.
    pub fn elect(&mut self, max_ticks: u32) -> Result<Option<NodeId>, LocalError> {
        for _ in 0..max_ticks {
            if let Some(leader) = self.leader() {
                return Ok(Some(leader));
            }
            self.tick()?;
        }
        Ok(self.leader())
    }

    /// Carries out every core's actions and delivers every message, until nothing is left.
    pub fn run(&mut self) -> Result<(), LocalError> {
        loop {
            let acted = self.run_actions()?;
            let delivered = self.deliver_all();
            if !acted && !delivered {
                return Ok(());
            }
        }
    }

    /// Carries out every core's actions (persists, replies; messages go to the queue) without
    /// delivering anything. Returns whether there was any action.
    pub fn run_actions(&mut self) -> Result<bool, LocalError> {
        let mut acted = false;
        for i in 0..self.slots.len() {
            let node = i as NodeId + 1;
            loop {
                let slot = &mut self.slots[i];
                let Some(core) = slot.core.as_mut() else {
                    break;
                };
                let actions = core.take_actions();
                if actions.is_empty() {
                    break;
                }
                acted = true;
                for action in actions {
                    match action {
                        ServiceAction::Persist(update) => {
                            slot.disk
                                .apply(&update)
                                .map_err(|error| LocalError::Persist { node, error })?;
                            core.persisted(update.id);
                        }
                        ServiceAction::Send(message) => self.network.push_back(message),
                        ServiceAction::Reply { id, reply } => self.replies.push((node, id, reply)),
                    }
                }
            }
        }
        Ok(acted)
    }

    /// Delivers the queued messages (those sent meanwhile wait for the next call), dropping
    /// those to or from an isolated or crashed node. Returns whether the queue held any.
    pub fn deliver_all(&mut self) -> bool {
        let batch = std::mem::take(&mut self.network);
        let any = !batch.is_empty();
        for message in batch {
            self.deliver(message);
        }
        any
    }

    /// Delivers one message now (unless `from` or `to` is isolated or crashed), whether or not
    /// it came from the queue.
    pub fn deliver(&mut self, message: Message) {
        if self.isolated.contains(&message.from) || self.isolated.contains(&message.to) {
            return;
        }
        if let Ok(slot) = self.slot_mut(message.to) {
            if let Some(core) = slot.core.as_mut() {
                core.step(message);
            }
        }
    }
}
