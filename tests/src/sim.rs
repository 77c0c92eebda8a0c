//! The deterministic cluster simulator.
//!
//! Simulated time advances only through the event queue; every random choice (network delays
//! and losses, disk latencies, node seeds) comes from one generator seeded by the caller. Running
//! the same scenario with the same seed therefore produces the same event trace, which
//! [`Sim::trace_digest`] summarizes.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::hash::{Hash, Hasher};

use raft_core::rng::SplitMix64;
use raft_core::{
    Action, AppendResult, Config, DurableState, Entry, Lane, LogIndex, Message, MessageBody,
    NodeId, PersistUpdate, RaftNode, ReadError, ReadId, Role, Snapshot, SnapshotResult, Term,
};
use tracing::debug;

use crate::invariants::Checker;
use crate::network::{NetConfig, NetStats, Topology};
use crate::service::{ServiceFactory, SimService, ToyService, ToyState};

/// Simulated milliseconds.
pub type Millis = u64;

/// How the simulated driver carries out a node's actions (see `raft_core::action` for the
/// contract each mode must respect).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriverMode {
    /// One action at a time in stream order, each write durable (and reported) before the next
    /// action starts: the most conservative reading of the contract.
    Sequential,
    /// As far as the contract allows: three independent lanes. Writes start at once, several in
    /// flight, becoming durable in order; messages leave at once; state-machine actions run at
    /// once, in order.
    Lanes,
    /// The lanes of [`DriverMode::Lanes`], each started at a random depth: every time the node
    /// produces actions, each lane carries out a random number of its waiting actions and the
    /// rest a few milliseconds later, so every interleaving the contract allows gets a chance.
    RandomDepth,
}

/// Parameters of a simulated cluster.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Number of nodes; ids are 1..=nodes.
    pub nodes: usize,
    /// Seed of the one random generator behind everything.
    pub seed: u64,
    /// Simulated milliseconds between two ticks of a node.
    pub tick_ms: Millis,
    /// The nodes' protocol configuration (timeouts in ticks, batching and flow-control limits,
    /// snapshot chunks, pre-vote, check-quorum, lease reads). Its `id`, `voters` and `seed`
    /// are set per node at every start (the seed drawn from the simulation's generator).
    pub raft: Config,
    /// Time a persist takes to become durable, inclusive range in milliseconds. A crash loses
    /// writes still in progress.
    pub disk_latency_ms: (Millis, Millis),
    /// Network behaviour.
    pub net: NetConfig,
    /// Probability that a node crashes *while* a write it started is still in progress (at a
    /// random moment before the write completes), to be restarted `restart_after_ms` later. This
    /// aims faults at the window where the ordering contract matters.
    pub crash_during_write: f64,
    /// Delay before a node crashed by `crash_during_write` restarts.
    pub restart_after_ms: (Millis, Millis),
    /// The toy service ([`Sim::new`]) snapshots its state and compacts the log whenever it
    /// applies an index that is a multiple of this (the labs snapshot every 10 entries); `None`
    /// never. Other services decide for themselves.
    pub snapshot_every: Option<LogIndex>,
    /// Extra bytes in every toy snapshot, to make snapshots span many chunks.
    pub snapshot_padding: usize,
    /// How the driver carries out actions.
    pub driver: DriverMode,
}

impl SimConfig {
    /// Defaults in the labs' spirit: 10 ms ticks, heartbeats every 100 ms (at most 10 per
    /// second), election timeouts of 300-800 ms, 64 KiB per AppendEntries, 32 appends or 1 MiB
    /// in flight per follower, 16 KiB snapshot chunks, pre-vote and check-quorum on, 0-3 ms
    /// disk writes, a reliable network.
    pub fn new(nodes: usize, seed: u64) -> Self {
        let mut raft = Config::new(1, (1..=nodes.max(1) as NodeId).collect());
        raft.election_timeout_min = 30;
        raft.election_timeout_max = 80;
        raft.heartbeat_interval = 10;
        raft.max_append_bytes = 64 * 1024;
        raft.max_inflight_appends = 32;
        raft.max_inflight_bytes = 1 << 20;
        raft.snapshot_chunk_bytes = 16 * 1024;
        Self {
            nodes,
            seed,
            tick_ms: 10,
            raft,
            disk_latency_ms: (0, 3),
            net: NetConfig::reliable(),
            crash_during_write: 0.0,
            restart_after_ms: (50, 500),
            snapshot_every: None,
            snapshot_padding: 0,
            driver: DriverMode::Sequential,
        }
    }
}

/// How a read requested with [`Sim::read`] ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// Not answered yet (or the node crashed first).
    Pending,
    /// Served: the state read had applied up to `state_index`.
    Served {
        /// The read index the node released the read at.
        read_index: LogIndex,
        /// The last index applied by the state machine the read observed.
        state_index: LogIndex,
    },
    /// Refused by the node.
    Failed(ReadError),
}

/// A read requested with [`Sim::read`].
#[derive(Clone, Debug)]
struct ReadRecord {
    slot: usize,
    incarnation: u64,
    /// Entries known committed when the read was requested: the read must observe them all.
    required: LogIndex,
    /// When the read was requested.
    at: Millis,
    outcome: ReadOutcome,
}

#[derive(Debug)]
enum EventKind {
    Tick {
        slot: usize,
        incarnation: u64,
    },
    Deliver {
        message: Message,
    },
    DiskDone {
        slot: usize,
        incarnation: u64,
    },
    /// The random-depth driver continues with the actions it left waiting.
    Wake {
        slot: usize,
        incarnation: u64,
    },
    Crash {
        slot: usize,
        incarnation: u64,
    },
    Restart {
        slot: usize,
        incarnation: u64,
    },
    /// A client's request reaches a node.
    ClientRequest {
        slot: usize,
        client: ClientId,
        id: u64,
        request: Vec<u8>,
    },
    /// A node's reply reaches a client.
    ClientReply {
        slot: usize,
        client: ClientId,
        id: u64,
        reply: Vec<u8>,
    },
}

#[derive(Debug)]
struct Event {
    at: Millis,
    seq: u64,
    kind: EventKind,
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Event {}
impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Event {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// One simulated machine: a node (absent while crashed), its disk and its pending actions.
struct Slot {
    node: Option<RaftNode>,
    incarnation: u64,
    disk: DurableState,
    /// Actions waiting to be carried out, in order (every lane, in sequential mode; the state
    /// machine lane otherwise).
    queue: VecDeque<Action>,
    /// Lane drivers: writes and messages waiting to start.
    storage_queue: VecDeque<PersistUpdate>,
    network_queue: VecDeque<Message>,
    /// Writes in progress, oldest first; they become durable in this order. In sequential mode
    /// at most one, and later actions wait for it.
    writing: VecDeque<PersistUpdate>,
    /// When the newest write in progress completes (writes complete in order).
    last_write_done: Millis,
    /// A `Wake` event is scheduled (random-depth driver).
    wake_pending: bool,
    /// Random-depth driver: the latest write durable but not reported yet (it reports late,
    /// and then only the latest of several, as a bulk-reporting driver does).
    unreported: Option<raft_core::PersistId>,
    /// Highest commit index of this incarnation already checked against the disks.
    commit_checked: LogIndex,
    /// Reads asked of this incarnation: the id the node sees (numbered from 1 at every start,
    /// as a real service's counter restarts) to the simulator's id.
    local_reads: BTreeMap<ReadId, ReadId>,
    /// Every entry this machine ever applied (or received in a snapshot), by index, kept across
    /// crashes like the labs' `logs[i]`: what `n_committed` counts.
    applied: Vec<Option<Entry>>,
    /// The service (volatile: rebuilt from the disk at a restart).
    service: Option<Box<dyn SimService>>,
}

/// Something worth telling a human, recorded when narration is on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    /// A node became leader.
    Elected {
        /// Simulated time.
        at: Millis,
        /// The new leader.
        node: NodeId,
        /// Its term.
        term: Term,
    },
    /// The cluster's committed prefix grew.
    Committed {
        /// Simulated time.
        at: Millis,
        /// The new highest applied index on any node.
        index: LogIndex,
    },
}

/// A simulated cluster of [`RaftNode`]s.
///
/// ```
/// use raft_tests::{Sim, SimConfig};
/// let mut sim = Sim::new(SimConfig::new(3, 7));
/// let leader = sim.check_one_leader().unwrap();
/// let index = sim.one(b"hello".to_vec(), 3, false).unwrap();
/// assert_eq!(index, 2); // index 1 is the leader's no-op entry
/// assert!(sim.node(leader).is_some());
/// ```
pub struct Sim {
    config: SimConfig,
    now: Millis,
    rng: SplitMix64,
    events: BinaryHeap<Reverse<Event>>,
    next_seq: u64,
    slots: Vec<Slot>,
    topology: Topology,
    net: NetConfig,
    stats: NetStats,
    checker: Checker,
    trace: std::hash::DefaultHasher,
    events_processed: u64,
    narrate: bool,
    notes: Vec<Note>,
    /// A failure found by the simulator itself (a node that cannot restart, a persist that
    /// does not fit the disk).
    failure: Option<String>,
    /// Next simulated time at which the debug trace shows the whole cluster's state.
    next_state_log: Millis,
    /// Events processed at the current simulated instant (livelock guard).
    events_this_instant: u64,
    /// Reads requested with [`Sim::read`], by id.
    reads: BTreeMap<ReadId, ReadRecord>,
    next_read_id: ReadId,
    /// Extra delay on every message to or from each node (a slow link).
    node_delay_ms: Vec<Millis>,
    /// Extra delay on each directed link, `[from * n + to]`.
    link_delay_ms: Vec<Millis>,
    /// Earlier messages of the run, for replays: a uniform sample of the whole run (reservoir)
    /// and the latest few of each directed link, earlier incarnations' included.
    history: MessageHistory,
    /// Builds each node's service at every start.
    factory: ServiceFactory,
    /// Per client: whether it reaches each node.
    clients: Vec<Vec<bool>>,
    /// Per client: replies to it are lost (its requests still arrive).
    deaf_clients: Vec<bool>,
    /// Replies that reached their clients, not yet taken.
    client_inbox: Vec<ClientReply>,
    /// Sequence number of the next client request (the low bits of its id name the client).
    next_client_seq: u64,
}

/// A simulated client's number, from [`Sim::add_client`].
pub type ClientId = usize;

/// A reply that reached a client ([`Sim::take_client_replies`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientReply {
    /// The client.
    pub client: ClientId,
    /// The node that answered.
    pub slot: usize,
    /// The id [`Sim::client_send`] returned for the request.
    pub id: u64,
    /// The reply's bytes.
    pub reply: Vec<u8>,
}

/// Bits of a client request id that name the client.
const CLIENT_BITS: u32 = 16;

/// Read ids of [`Sim::read`] start here, apart from any ids a service allocates.
const SIM_READ_IDS: ReadId = 1 << 62;

/// Messages recorded for replay.
#[derive(Default)]
struct MessageHistory {
    sample: Vec<Message>,
    seen: u64,
    /// The latest messages of each directed link, per incarnation of the sender: a restarted
    /// node's last messages before its crash stay replayable after it has sent many more.
    recent: BTreeMap<(NodeId, NodeId, u64), VecDeque<Message>>,
}

/// Messages kept in the uniform sample of the run.
const HISTORY_SAMPLE: usize = 512;
/// Latest messages kept per directed link and sender incarnation.
const HISTORY_PER_LINK: usize = 6;
/// Incarnations of a sender whose latest messages are kept.
const HISTORY_INCARNATIONS: u64 = 3;
/// Messages larger than this (encoded) are not recorded, to bound memory.
const HISTORY_MAX_BYTES: u64 = 16 * 1024;

impl MessageHistory {
    fn record(&mut self, message: &Message, incarnation: u64, rng: &mut SplitMix64) {
        self.seen += 1;
        if self.sample.len() < HISTORY_SAMPLE {
            self.sample.push(message.clone());
        } else {
            let k = rng.range(0, self.seen) as usize;
            if k < HISTORY_SAMPLE {
                self.sample[k] = message.clone();
            }
        }
        if !self
            .recent
            .contains_key(&(message.from, message.to, incarnation))
        {
            // A new incarnation of the sender: forget its oldest ones.
            let oldest = incarnation.saturating_sub(HISTORY_INCARNATIONS);
            self.recent
                .retain(|&(from, _, i), _| from != message.from || i > oldest);
        }
        let link = self
            .recent
            .entry((message.from, message.to, incarnation))
            .or_default();
        if link.len() == HISTORY_PER_LINK {
            link.pop_front();
        }
        link.push_back(message.clone());
    }

    fn len(&self) -> usize {
        self.sample.len() + self.recent.values().map(VecDeque::len).sum::<usize>()
    }

    fn get(&self, k: usize) -> Option<&Message> {
        if k < self.sample.len() {
            return self.sample.get(k);
        }
        self.recent.values().flatten().nth(k - self.sample.len())
    }
}

/// Events at one simulated instant beyond which the run is declared livelocked: nodes that keep
/// producing zero-delay work never let simulated time advance.
pub const MAX_EVENTS_PER_INSTANT: u64 = 200_000;
/// Events in one run beyond which it is declared runaway (a storm of messages).
pub const MAX_EVENTS_PER_RUN: u64 = 50_000_000;
/// Invariant checks (entries persisted and applied, steps inspected) in one run beyond which it
/// is declared runaway: nodes rewriting their logs over and over.
pub const MAX_CHECKS_PER_RUN: u64 = 20_000_000;
/// Encoded message bytes in one run beyond which it is declared runaway: a leader resending
/// large batches that never stick. Normal runs send a few megabytes.
pub const MAX_BYTES_PER_RUN: u64 = 512 << 20;

impl Sim {
    /// Starts a cluster of `config.nodes` fresh nodes, all connected, each running the toy
    /// service ([`ToyService`]).
    pub fn new(config: SimConfig) -> Self {
        let factory = ToyService::factory(config.snapshot_every, config.snapshot_padding);
        Self::with_service(config, factory)
    }

    /// Starts a cluster of `config.nodes` fresh nodes, all connected, each running the service
    /// `factory` builds (at every start).
    pub fn with_service(config: SimConfig, factory: ServiceFactory) -> Self {
        let n = config.nodes;
        let mut sim = Self {
            now: 0,
            rng: SplitMix64::new(config.seed),
            events: BinaryHeap::new(),
            next_seq: 0,
            slots: (0..n)
                .map(|_| Slot {
                    node: None,
                    incarnation: 0,
                    disk: DurableState::default(),
                    queue: VecDeque::new(),
                    storage_queue: VecDeque::new(),
                    network_queue: VecDeque::new(),
                    writing: VecDeque::new(),
                    last_write_done: 0,
                    wake_pending: false,
                    unreported: None,
                    commit_checked: 0,
                    local_reads: BTreeMap::new(),
                    applied: Vec::new(),
                    service: None,
                })
                .collect(),
            topology: Topology::full(n),
            net: config.net.clone(),
            stats: NetStats {
                requests_received: vec![0; n],
                ..NetStats::default()
            },
            checker: Checker::new(n),
            trace: std::hash::DefaultHasher::new(),
            events_processed: 0,
            narrate: false,
            notes: Vec::new(),
            failure: None,
            next_state_log: 0,
            events_this_instant: 0,
            reads: BTreeMap::new(),
            next_read_id: 1,
            node_delay_ms: vec![0; n],
            link_delay_ms: vec![0; n * n],
            history: MessageHistory::default(),
            factory,
            clients: Vec::new(),
            deaf_clients: Vec::new(),
            client_inbox: Vec::new(),
            next_client_seq: 0,
            config,
        };
        for slot in 0..n {
            sim.start_node(slot);
        }
        sim
    }

    // ----- Observation -----

    /// Current simulated time.
    pub fn now(&self) -> Millis {
        self.now
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the cluster has no nodes.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The configuration the simulator was built with.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// The node in 0-based slot `slot`, unless it is crashed.
    pub fn node(&self, slot: usize) -> Option<&RaftNode> {
        self.slots[slot].node.as_ref()
    }

    /// Whether the node in `slot` is running.
    pub fn is_alive(&self, slot: usize) -> bool {
        self.slots[slot].node.is_some()
    }

    /// Whether the node in `slot` is connected to the network.
    pub fn is_connected(&self, slot: usize) -> bool {
        self.topology.is_connected(slot)
    }

    /// The durable state of `slot`'s disk.
    pub fn disk(&self, slot: usize) -> &DurableState {
        &self.slots[slot].disk
    }

    /// The entry `slot` applied at `index`, if it ever did.
    pub fn applied(&self, slot: usize, index: LogIndex) -> Option<&Entry> {
        self.slots[slot]
            .applied
            .get(index as usize)
            .and_then(Option::as_ref)
    }

    /// The toy state machine of `slot`'s service (the default state if the node is down or
    /// runs another service).
    pub fn state(&self, slot: usize) -> ToyState {
        self.service::<ToyService>(slot)
            .map_or_else(ToyState::default, |toy| toy.state)
    }

    /// `slot`'s service, if the node runs and its service is a `T`.
    pub fn service<T: SimService>(&self, slot: usize) -> Option<&T> {
        self.slots[slot].service.as_ref()?.as_any().downcast_ref()
    }

    /// The last index `slot`'s service state reflects (0 while the node is down).
    pub fn service_applied(&self, slot: usize) -> LogIndex {
        self.slots[slot]
            .service
            .as_ref()
            .map_or(0, |service| service.applied_index())
    }

    /// Size in bytes of `slot`'s persisted Raft state (hard state and log, not the snapshot),
    /// as `raft_storage` counts it: what the labs' `RaftStateSize()` measures.
    pub fn raft_state_size(&self, slot: usize) -> u64 {
        raft_storage::size::of_state(&self.slots[slot].disk)
    }

    /// The labs' `LogSize()`: the largest persisted Raft state of any node.
    pub fn log_size(&self) -> u64 {
        (0..self.len())
            .map(|slot| self.raft_state_size(slot))
            .max()
            .unwrap_or(0)
    }

    /// Encoded bytes of the messages on their way to `slot` (scheduled, not yet delivered).
    pub fn bytes_in_flight_to(&self, slot: usize) -> u64 {
        let to = slot as NodeId + 1;
        self.events
            .iter()
            .filter_map(|Reverse(event)| match &event.kind {
                EventKind::Deliver { message } if message.to == to => Some(encoded_len(message)),
                _ => None,
            })
            .sum()
    }

    /// Traffic counters.
    pub fn stats(&self) -> &NetStats {
        &self.stats
    }

    /// The invariant checker.
    pub fn checker(&self) -> &Checker {
        &self.checker
    }

    /// The first safety violation, if any.
    pub fn violation(&self) -> Option<&str> {
        self.checker.violation().or(self.failure.as_deref())
    }

    /// A digest of every event processed so far (time, kind, participants, message sizes): two
    /// runs with the same seed and inputs have the same digest.
    pub fn trace_digest(&self) -> (u64, u64) {
        (self.trace.finish(), self.events_processed)
    }

    /// Turns on recording of [`Note`]s (elections, commits) for a human-readable trace.
    pub fn set_narration(&mut self, on: bool) {
        self.narrate = on;
    }

    /// Takes the notes recorded since the last call.
    pub fn take_notes(&mut self) -> Vec<Note> {
        std::mem::take(&mut self.notes)
    }

    /// A random number in `[lo, hi)` from the simulation's generator, for scenarios.
    pub fn random(&mut self, lo: u64, hi: u64) -> u64 {
        self.rng.range(lo, hi)
    }

    /// `true` with probability `p`, from the simulation's generator.
    pub fn chance(&mut self, p: f64) -> bool {
        self.rng.chance(p)
    }

    // ----- Faults -----

    /// Replaces the network behaviour.
    pub fn set_net(&mut self, net: NetConfig) {
        self.net = net;
    }

    /// The current network behaviour.
    pub fn net(&self) -> &NetConfig {
        &self.net
    }

    /// Turns loss/delay/duplication on (the labs' unreliable network) or off.
    pub fn set_reliable(&mut self, reliable: bool) {
        let long = self.net.long_reordering;
        self.net = if reliable {
            NetConfig::reliable()
        } else {
            NetConfig::unreliable()
        };
        self.net.long_reordering = long;
    }

    /// Changes the probability of crashes aimed at writes in progress (see
    /// [`SimConfig::crash_during_write`]).
    pub fn set_crash_during_write(&mut self, probability: f64) {
        self.config.crash_during_write = probability;
    }

    /// Turns the labs' long reordering on or off.
    pub fn set_long_reordering(&mut self, on: bool) {
        self.net.long_reordering = on;
    }

    /// Adds `extra` milliseconds to the delivery of every message to or from `slot`.
    pub fn set_node_delay(&mut self, slot: usize, extra: Millis) {
        self.node_delay_ms[slot] = extra;
    }

    /// Adds `extra` milliseconds to the delivery of every message from `from` to `to` (one
    /// direction only).
    pub fn set_link_delay(&mut self, from: usize, to: usize, extra: Millis) {
        let n = self.len();
        self.link_delay_ms[from * n + to] = extra;
    }

    /// Cuts the link from `from` to `to` in that direction only: `to` no longer hears `from`,
    /// while `from` still hears `to`. [`heal`](Self::heal) restores it.
    pub fn cut_one_way(&mut self, from: usize, to: usize) {
        debug!(t = self.now, from = from + 1, to = to + 1, "cut one way");
        self.topology.set_one_way_cut(from, to, true);
    }

    /// Restores the link from `from` to `to`.
    pub fn restore_one_way(&mut self, from: usize, to: usize) {
        debug!(
            t = self.now,
            from = from + 1,
            to = to + 1,
            "restore one way"
        );
        self.topology.set_one_way_cut(from, to, false);
    }

    /// `slot` can still send to everyone but hears no one.
    pub fn deafen(&mut self, slot: usize) {
        for other in (0..self.len()).filter(|&o| o != slot) {
            self.cut_one_way(other, slot);
        }
    }

    /// Everyone still reaches `slot`, but no one hears it.
    pub fn mute(&mut self, slot: usize) {
        for other in (0..self.len()).filter(|&o| o != slot) {
            self.cut_one_way(slot, other);
        }
    }

    /// Number of links currently cut in one direction.
    pub fn one_way_cuts(&self) -> usize {
        self.topology.one_way_cuts()
    }

    /// Earlier messages of the run that `pred` selects, from the simulator's record: a uniform
    /// sample of the whole run plus the latest few of each directed link, including messages
    /// sent by earlier incarnations of nodes that restarted since.
    pub fn recorded_messages(&self, pred: impl Fn(&Message) -> bool) -> Vec<Message> {
        let mut found: Vec<Message> = Vec::new();
        for k in 0..self.history.len() {
            if let Some(message) = self.history.get(k) {
                if pred(message) && !found.contains(message) {
                    found.push(message.clone());
                }
            }
        }
        found
    }

    /// Delivers `message` (typically an old one, see
    /// [`recorded_messages`](Self::recorded_messages)) again after `delay` milliseconds, as a
    /// network that kept it would. It passes only if the link is up when it arrives.
    pub fn redeliver(&mut self, message: Message, delay: Millis) {
        debug!(t = self.now, ?message, delay, "replay");
        self.schedule(delay, EventKind::Deliver { message });
    }

    /// Delivers `count` random earlier messages of the run again, each after 0-50 ms.
    pub fn replay_random(&mut self, count: usize) {
        for _ in 0..count {
            let len = self.history.len() as u64;
            if len == 0 {
                return;
            }
            let k = self.rng.range(0, len) as usize;
            if let Some(message) = self.history.get(k).cloned() {
                let delay = self.rng.range(0, 51);
                self.redeliver(message, delay);
            }
        }
    }

    /// Cuts `slot` off from every other node.
    pub fn disconnect(&mut self, slot: usize) {
        debug!(t = self.now, node = slot + 1, "disconnect");
        self.topology.disconnect(slot);
    }

    /// Reconnects `slot`.
    pub fn connect(&mut self, slot: usize) {
        debug!(t = self.now, node = slot + 1, "connect");
        self.topology.connect(slot);
    }

    /// Splits the cluster into groups of slots; unlisted slots are isolated.
    pub fn partition(&mut self, groups: &[Vec<usize>]) {
        debug!(t = self.now, ?groups, "partition");
        self.topology.partition(groups);
    }

    /// Heals all partitions and reconnects every node.
    pub fn heal(&mut self) {
        debug!(t = self.now, "heal");
        self.topology.heal();
    }

    /// Crashes `slot`: its volatile state and any write still in progress are lost; its disk
    /// keeps what was durable.
    pub fn crash(&mut self, slot: usize) {
        debug!(t = self.now, node = slot + 1, "crash");
        let s = &mut self.slots[slot];
        s.node = None;
        s.incarnation += 1;
        s.queue.clear();
        s.storage_queue.clear();
        s.network_queue.clear();
        s.writing.clear();
        s.wake_pending = false;
        s.unreported = None;
        s.commit_checked = 0;
        s.local_reads.clear();
        s.service = None;
        self.checker.on_crash(slot);
    }

    /// Crashes `slot` if it runs, then starts it again from its disk.
    pub fn restart(&mut self, slot: usize) {
        if self.is_alive(slot) {
            self.crash(slot);
        }
        debug!(t = self.now, node = slot + 1, "restart");
        self.start_node(slot);
    }

    fn start_node(&mut self, slot: usize) {
        let mut config = self.config.raft.clone();
        config.id = slot as NodeId + 1;
        config.voters = (1..=self.config.nodes as NodeId).collect();
        config.seed = self.rng.next_u64();
        let id = config.id;
        let s = &mut self.slots[slot];
        s.incarnation += 1;
        match RaftNode::restore(config, &s.disk) {
            Ok(node) => s.node = Some(node),
            Err(err) => {
                self.fail(format!("node {} failed to restart: {err}", slot + 1));
                return;
            }
        }
        // The service restores its state machine from the stored snapshot, as a real one does.
        match (self.factory)(id, &s.disk) {
            Ok(service) => s.service = Some(service),
            Err(err) => {
                s.node = None;
                self.fail(format!(
                    "node {}'s service failed to start: {err}",
                    slot + 1
                ));
                return;
            }
        }
        let incarnation = s.incarnation;
        if let Some(snapshot) = self.slots[slot].disk.snapshot.clone() {
            self.after_install(slot, &snapshot);
        }
        // Nodes tick out of phase with each other.
        let phase = self.rng.range(0, self.config.tick_ms.max(1));
        self.schedule(phase, EventKind::Tick { slot, incarnation });
    }

    /// Records a failure found by the simulator itself (not by the checker); the first wins.
    fn fail(&mut self, message: String) {
        if self.failure.is_none() {
            self.failure = Some(message);
        }
    }

    /// Hands `slot`'s service a snapshot from the leader.
    fn install_snapshot(&mut self, slot: usize, snapshot: Snapshot) {
        if let Err(err) = self.run_service(slot, Action::InstallSnapshot(snapshot.clone())) {
            self.fail(format!("node {}'s service: {err}", slot + 1));
            return;
        }
        self.after_install(slot, &snapshot);
    }

    /// Checks `slot`'s service state after it loaded `snapshot` (from the leader, or from its
    /// disk at a start) against the committed log, and counts the snapshot's entries as
    /// applied there.
    fn after_install(&mut self, slot: usize, snapshot: &Snapshot) {
        let Some(service) = self.slots[slot].service.as_ref() else {
            return;
        };
        let index = service.applied_index();
        if index != snapshot.meta.last_index {
            let message = format!(
                "node {}: after loading a snapshot up to {} its service is at {index}",
                slot + 1,
                snapshot.meta.last_index
            );
            self.fail(message);
            return;
        }
        self.checker
            .on_install_snapshot(slot, index, service.chain_digest());
        let s = &mut self.slots[slot];
        let upto = index as usize;
        if s.applied.len() <= upto {
            s.applied.resize(upto + 1, None);
        }
        let committed = self.checker.committed();
        for (k, entry) in committed.iter().take(upto).enumerate() {
            s.applied[k + 1] = Some(entry.clone());
        }
    }

    /// Runs one state-machine action on `slot`'s service (if the node runs).
    fn run_service(&mut self, slot: usize, action: Action) -> Result<(), String> {
        let s = &mut self.slots[slot];
        match (s.node.as_mut(), s.service.as_mut()) {
            (Some(node), Some(service)) => service.run(node, action),
            _ => Ok(()),
        }
    }

    // ----- Driving the nodes -----

    /// Asks `slot` for a linearizable read (ReadIndex); returns the read's id, whose outcome
    /// [`read_outcome`](Self::read_outcome) tells. The read must observe every entry known
    /// committed now; the simulator fails the run if a node serves it from an older state.
    pub fn read(&mut self, slot: usize) -> ReadId {
        let id = self.next_read_id;
        self.next_read_id += 1;
        let record = ReadRecord {
            slot,
            incarnation: self.slots[slot].incarnation,
            required: self.checker.committed().len() as LogIndex,
            at: self.now,
            outcome: ReadOutcome::Pending,
        };
        self.reads.insert(id, record);
        let s = &mut self.slots[slot];
        if let Some(node) = s.node.as_mut() {
            let local = SIM_READ_IDS + s.local_reads.len() as ReadId + 1;
            s.local_reads.insert(local, id);
            node.read_index(local);
            self.pump(slot);
        }
        id
    }

    /// How the read `id` ended so far.
    pub fn read_outcome(&self, id: ReadId) -> ReadOutcome {
        self.reads
            .get(&id)
            .map_or(ReadOutcome::Pending, |r| r.outcome.clone())
    }

    /// Reads still waiting for an answer from a node that runs in the incarnation that was
    /// asked, requested at or before `asked_by`: with the network calm, none may wait long.
    pub fn unsettled_reads(&self, asked_by: Millis) -> Vec<ReadId> {
        self.reads
            .iter()
            .filter(|(_, r)| {
                r.outcome == ReadOutcome::Pending
                    && r.at <= asked_by
                    && self.is_alive(r.slot)
                    && self.slots[r.slot].incarnation == r.incarnation
            })
            .map(|(&id, _)| id)
            .collect()
    }

    /// Number of reads served so far.
    pub fn reads_served(&self) -> usize {
        self.reads
            .values()
            .filter(|r| matches!(r.outcome, ReadOutcome::Served { .. }))
            .count()
    }

    /// A node released read `id` at `read_index`: check it against the state it would read.
    fn serve_read(&mut self, slot: usize, local: ReadId, result: Result<LogIndex, ReadError>) {
        let state_index = self.service_applied(slot);
        let incarnation = self.slots[slot].incarnation;
        let Some(&id) = self.slots[slot].local_reads.get(&local) else {
            self.fail(format!(
                "node {} released read {local} it was never asked",
                slot + 1
            ));
            return;
        };
        let Some(record) = self.reads.get_mut(&id) else {
            self.fail(format!("node {} released unknown read {id}", slot + 1));
            return;
        };
        if record.slot != slot || record.incarnation != incarnation {
            let message = format!("node {} released read {id} it was never asked", slot + 1);
            self.fail(message);
            return;
        }
        if record.outcome != ReadOutcome::Pending {
            let message = format!("node {} released read {id} twice", slot + 1);
            self.fail(message);
            return;
        }
        let read_index = match result {
            Ok(index) => index,
            Err(error) => {
                record.outcome = ReadOutcome::Failed(error);
                return;
            }
        };
        record.outcome = ReadOutcome::Served {
            read_index,
            state_index,
        };
        let required = record.required;
        if state_index < read_index {
            let message = format!(
                "node {} released read {id} at index {read_index} with only {state_index} applied",
                slot + 1
            );
            self.fail(message);
        } else if state_index < required {
            let message = format!(
                "linearizability: node {} served read {id} from the state at index {state_index}, but index {required} was committed before the read began",
                slot + 1
            );
            self.fail(message);
        }
    }

    /// Proposes `command` at `slot` if it runs and leads; returns its index and term.
    pub fn propose(&mut self, slot: usize, command: Vec<u8>) -> Option<(LogIndex, Term)> {
        let node = self.slots[slot].node.as_mut()?;
        let result = node.propose(command).ok();
        self.pump(slot);
        result
    }

    /// Runs the simulation for `duration` simulated milliseconds (or until a violation).
    pub fn run_for(&mut self, duration: Millis) {
        let until = self.now + duration;
        while self.violation().is_none() {
            match self.events.peek() {
                Some(Reverse(event)) if event.at <= until => {}
                _ => break,
            }
            let Some(Reverse(event)) = self.events.pop() else {
                break;
            };
            if event.at == self.now {
                self.events_this_instant += 1;
            } else {
                self.events_this_instant = 0;
            }
            if self.events_this_instant > MAX_EVENTS_PER_INSTANT {
                let message = format!(
                    "livelock: more than {MAX_EVENTS_PER_INSTANT} events at t={}ms [{}]",
                    self.now,
                    self.describe()
                );
                self.fail(message);
                break;
            }
            if self.events_processed > MAX_EVENTS_PER_RUN
                || self.checker.checks() > MAX_CHECKS_PER_RUN
                || self.stats.bytes_sent > MAX_BYTES_PER_RUN
            {
                let message = format!(
                    "runaway: {} events, {} invariant checks, {} bytes sent by t={}ms (budgets {MAX_EVENTS_PER_RUN}, {MAX_CHECKS_PER_RUN}, {MAX_BYTES_PER_RUN}) [{}]",
                    self.events_processed,
                    self.checker.checks(),
                    self.stats.bytes_sent,
                    self.now,
                    self.describe()
                );
                self.fail(message);
                break;
            }
            self.process(event);
        }
        if self.violation().is_none() {
            self.now = until;
        }
    }

    fn schedule(&mut self, delay: Millis, kind: EventKind) {
        let event = Event {
            at: self.now + delay,
            seq: self.next_seq,
            kind,
        };
        self.next_seq += 1;
        self.events.push(Reverse(event));
    }

    fn record(&mut self, tag: u8, a: u64, b: u64) {
        self.events_processed += 1;
        (self.now, tag, a, b).hash(&mut self.trace);
    }

    fn process(&mut self, event: Event) {
        if event.at >= self.next_state_log && tracing::enabled!(tracing::Level::DEBUG) {
            self.next_state_log = event.at - event.at % 500 + 500;
            debug!(t = event.at, "cluster: {}", self.describe());
        }
        self.now = event.at;
        match event.kind {
            EventKind::Tick { slot, incarnation } => {
                if self.slots[slot].incarnation != incarnation || !self.is_alive(slot) {
                    return;
                }
                self.record(1, slot as u64, 0);
                let now = self.now;
                let s = &mut self.slots[slot];
                if let Some(node) = s.node.as_mut() {
                    node.tick();
                }
                if let Some(service) = s.service.as_mut() {
                    service.tick(now);
                }
                self.pump(slot);
                self.schedule(self.config.tick_ms, EventKind::Tick { slot, incarnation });
            }
            EventKind::Deliver { message } => {
                let (Some(from), Some(to)) = (self.slot_of(message.from), self.slot_of(message.to))
                else {
                    return;
                };
                if !self.topology.link_ok(from, to) || !self.is_alive(to) {
                    return;
                }
                self.record(2, message.from, message.to);
                debug!(t = self.now, ?message, "deliver");
                if message.is_request() {
                    self.stats.requests_received[to] += 1;
                }
                if let Some(node) = self.slots[to].node.as_mut() {
                    node.step(message);
                }
                self.pump(to);
            }
            EventKind::Crash { slot, incarnation } => {
                if self.slots[slot].incarnation != incarnation || !self.is_alive(slot) {
                    return;
                }
                self.record(4, slot as u64, 0);
                self.crash(slot);
                let (lo, hi) = self.config.restart_after_ms;
                let delay = self.rng.range(lo, hi + 1);
                let incarnation = self.slots[slot].incarnation;
                self.schedule(delay, EventKind::Restart { slot, incarnation });
            }
            EventKind::Restart { slot, incarnation } => {
                // Only if nothing else restarted (or crashed and restarted) it meanwhile.
                if self.slots[slot].incarnation != incarnation || self.is_alive(slot) {
                    return;
                }
                self.record(5, slot as u64, 0);
                self.start_node(slot);
            }
            EventKind::DiskDone { slot, incarnation } => {
                if self.slots[slot].incarnation != incarnation {
                    return;
                }
                self.record(3, slot as u64, 0);
                // Writes complete in the order they started.
                if let Some(update) = self.slots[slot].writing.pop_front() {
                    self.complete_write(slot, update);
                }
                self.pump(slot);
            }
            EventKind::ClientRequest {
                slot,
                client,
                id,
                request,
            } => {
                if !self.is_alive(slot) || !self.client_reaches(client, slot) {
                    return;
                }
                self.record(7, slot as u64, id);
                let now = self.now;
                let s = &mut self.slots[slot];
                if let (Some(node), Some(service)) = (s.node.as_mut(), s.service.as_mut()) {
                    service.request(node, now, id, request);
                }
                self.pump(slot);
            }
            EventKind::ClientReply {
                slot,
                client,
                id,
                reply,
            } => {
                if !self.client_reaches(client, slot) || self.deaf_clients[client] {
                    return;
                }
                self.record(8, client as u64, id);
                self.client_inbox.push(ClientReply {
                    client,
                    slot,
                    id,
                    reply,
                });
            }
            EventKind::Wake { slot, incarnation } => {
                if self.slots[slot].incarnation != incarnation {
                    return;
                }
                self.record(6, slot as u64, 0);
                self.slots[slot].wake_pending = false;
                self.report_durable(slot);
                self.pump(slot);
            }
        }
    }

    fn slot_of(&self, id: NodeId) -> Option<usize> {
        let slot = id.checked_sub(1)? as usize;
        (slot < self.slots.len()).then_some(slot)
    }

    /// Carries out `slot`'s actions as the configured [`DriverMode`] does, then checks the
    /// node's state.
    fn pump(&mut self, slot: usize) {
        match self.config.driver {
            DriverMode::Sequential => self.pump_sequential(slot),
            DriverMode::Lanes => self.pump_lanes(slot, false),
            DriverMode::RandomDepth => self.pump_lanes(slot, true),
        }
        if let Some(node) = self.slots[slot].node.as_ref() {
            let was_leader_terms = self.checker.leader_terms();
            let was_committed = self.checker.committed().len();
            self.checker.after_step(slot, node);
            if self.narrate && self.checker.leader_terms() > was_leader_terms {
                self.notes.push(Note::Elected {
                    at: self.now,
                    node: slot as NodeId + 1,
                    term: node.term(),
                });
            }
            self.note_commits(was_committed);
        }
        self.check_commit_on_disks(slot);
    }

    /// Takes the node's new actions, checking every message against the sender's disk as it
    /// is emitted (the node may emit a message only once what it promises is durable).
    fn take_actions(&mut self, slot: usize) -> Vec<Action> {
        let Some(node) = self.slots[slot].node.as_mut() else {
            return Vec::new();
        };
        let actions = node.take_actions();
        for action in &actions {
            match action {
                Action::Send(message) => self.check_promise(slot, message),
                Action::Persist(update) => {
                    if let Some(service) = self.slots[slot].service.as_mut() {
                        service.persisting(update);
                    }
                }
                _ => {}
            }
        }
        actions
    }

    /// Sequential driver: one action at a time, each write durable before the next action.
    fn pump_sequential(&mut self, slot: usize) {
        loop {
            let actions = self.take_actions(slot);
            let s = &mut self.slots[slot];
            if s.node.is_none() {
                return;
            }
            s.queue.extend(actions);
            if !s.writing.is_empty() {
                break;
            }
            let Some(action) = s.queue.pop_front() else {
                // A pass is over: the service settles, which may give the node more to do.
                self.settle(slot);
                if self.node_has_actions(slot) {
                    continue;
                }
                break;
            };
            match action {
                Action::Send(message) => self.send(message),
                Action::Persist(update) => self.start_write(slot, update),
                other => self.run_state_machine_action(slot, other),
            }
        }
    }

    /// Lane drivers: writes, messages and state-machine actions each in their own queue. With
    /// `random_depth`, each pass carries out a random prefix of each queue and leaves the rest
    /// for a wake-up a few milliseconds later.
    fn pump_lanes(&mut self, slot: usize, random_depth: bool) {
        loop {
            let actions = self.take_actions(slot);
            let s = &mut self.slots[slot];
            if s.node.is_none() {
                return;
            }
            for action in actions {
                match action.lane() {
                    Lane::Storage => {
                        if let Action::Persist(update) = action {
                            s.storage_queue.push_back(update);
                        }
                    }
                    Lane::Network => {
                        if let Action::Send(message) = action {
                            s.network_queue.push_back(message);
                        }
                    }
                    Lane::StateMachine => s.queue.push_back(action),
                }
            }
            let depth = |sim: &mut Self, len: usize| {
                if random_depth {
                    sim.rng.range(0, len as u64 + 1) as usize
                } else {
                    len
                }
            };
            let mut progress = false;
            let writes = depth(self, self.slots[slot].storage_queue.len());
            for _ in 0..writes {
                let Some(update) = self.slots[slot].storage_queue.pop_front() else {
                    break;
                };
                progress = true;
                self.start_write(slot, update);
            }
            let sends = depth(self, self.slots[slot].network_queue.len());
            for _ in 0..sends {
                let Some(message) = self.slots[slot].network_queue.pop_front() else {
                    break;
                };
                progress = true;
                self.send(message);
            }
            let steps = depth(self, self.slots[slot].queue.len());
            for _ in 0..steps {
                if self.slots[slot].node.is_none() {
                    return;
                }
                let Some(action) = self.slots[slot].queue.pop_front() else {
                    break;
                };
                progress = true;
                self.run_state_machine_action(slot, action);
            }
            self.settle(slot);
            if !progress && !self.node_has_actions(slot) {
                break;
            }
        }
        let s = &self.slots[slot];
        let waiting =
            !s.storage_queue.is_empty() || !s.network_queue.is_empty() || !s.queue.is_empty();
        if waiting && !s.wake_pending && s.node.is_some() {
            let incarnation = s.incarnation;
            self.slots[slot].wake_pending = true;
            let delay = self.rng.range(1, 6);
            self.schedule(delay, EventKind::Wake { slot, incarnation });
        }
    }

    fn run_state_machine_action(&mut self, slot: usize, action: Action) {
        match action {
            Action::Apply(entries) => self.apply(slot, entries),
            Action::InstallSnapshot(snapshot) => self.install_snapshot(slot, snapshot),
            Action::ReadReady { id, index } if id >= SIM_READ_IDS => {
                self.serve_read(slot, id, Ok(index))
            }
            Action::ReadFailed { id, error } if id >= SIM_READ_IDS => {
                self.serve_read(slot, id, Err(error))
            }
            read @ (Action::ReadReady { .. } | Action::ReadFailed { .. }) => {
                if let Err(err) = self.run_service(slot, read) {
                    self.fail(format!("node {}'s service: {err}", slot + 1));
                }
            }
            Action::Send(message) => self.send(message),
            Action::Persist(update) => self.start_write(slot, update),
        }
    }

    /// Starts a write: it becomes durable after the disk's latency, and never before a write
    /// started earlier. A crash may be aimed at the window while it is in progress.
    fn start_write(&mut self, slot: usize, update: PersistUpdate) {
        let (lo, hi) = self.config.disk_latency_ms;
        let latency = self.rng.range(lo, hi + 1);
        let s = &self.slots[slot];
        if latency == 0 && s.writing.is_empty() {
            self.complete_write(slot, update);
            return;
        }
        let done_at = (self.now + latency).max(s.last_write_done);
        let incarnation = s.incarnation;
        let s = &mut self.slots[slot];
        s.writing.push_back(update);
        s.last_write_done = done_at;
        self.schedule(
            done_at - self.now,
            EventKind::DiskDone { slot, incarnation },
        );
        if self.rng.chance(self.config.crash_during_write) {
            let at = self.rng.range(0, (done_at - self.now).max(1));
            self.schedule(at, EventKind::Crash { slot, incarnation });
        }
    }

    /// Fails the run if `slot` emits a message promising durable state its disk does not hold:
    /// a granted vote or a vote request without the vote stored, an acknowledgement of entries
    /// or of a snapshot the disk does not hold.
    fn check_promise(&mut self, slot: usize, message: &Message) {
        let s = &self.slots[slot];
        let disk = &s.disk;
        let voted = |candidate: NodeId| {
            disk.hard_state.term == message.term && disk.hard_state.voted_for == Some(candidate)
        };
        let problem = match &message.body {
            MessageBody::VoteResponse { granted: true } if !voted(message.to) => Some(format!(
                "granted its vote in term {} to {} with {:?} on disk",
                message.term, message.to, disk.hard_state
            )),
            MessageBody::VoteRequest { .. } if !voted(message.from) => Some(format!(
                "asked for votes in term {} with {:?} on disk",
                message.term, disk.hard_state
            )),
            MessageBody::AppendResponse {
                result: AppendResult::Accepted { match_index },
                ..
            } => {
                let term = s.node.as_ref().and_then(|n| n.log().term(*match_index));
                (!disk_holds(disk, *match_index, term)).then(|| {
                    format!(
                        "acknowledged entries up to {match_index} (term {term:?}) with {} on disk",
                        describe_disk(disk)
                    )
                })
            }
            MessageBody::InstallSnapshotResponse {
                result: SnapshotResult::Installed,
                last_index,
                ..
            } => {
                let term = s.node.as_ref().and_then(|n| n.log().term(*last_index));
                (!disk_holds(disk, *last_index, term)).then(|| {
                    format!(
                        "acknowledged a snapshot up to {last_index} (term {term:?}) with {} on disk",
                        describe_disk(disk)
                    )
                })
            }
            _ => None,
        };
        if let Some(problem) = problem {
            self.fail(format!(
                "durability promise: node {} {problem} (message {message:?})",
                slot + 1
            ));
        }
    }

    /// Fails the run if `slot` declares committed an entry that a majority of disks does not
    /// hold.
    fn check_commit_on_disks(&mut self, slot: usize) {
        let Some(node) = self.slots[slot].node.as_ref() else {
            return;
        };
        let commit = node.commit_index();
        if commit <= self.slots[slot].commit_checked {
            return;
        }
        let term = node.log().term(commit);
        self.slots[slot].commit_checked = commit;
        let holding = self
            .slots
            .iter()
            .filter(|other| disk_holds(&other.disk, commit, term))
            .count();
        if holding * 2 <= self.slots.len() {
            let message = format!(
                "commit durability: node {} declares index {commit} (term {term:?}) committed, but only {holding} of {} disks hold it",
                slot + 1,
                self.slots.len()
            );
            self.fail(message);
        }
    }

    fn complete_write(&mut self, slot: usize, update: PersistUpdate) {
        self.checker.on_persist(slot, &update);
        let s = &mut self.slots[slot];
        if let Err(err) = s.disk.apply(&update) {
            let message = format!(
                "node {} emitted a persist that does not continue its durable log: {err}",
                slot + 1
            );
            self.fail(message);
            return;
        }
        if self.config.driver == DriverMode::RandomDepth && self.rng.chance(0.5) {
            // Report later (at the next wake-up), maybe together with later writes.
            let s = &mut self.slots[slot];
            s.unreported = Some(update.id);
            if !s.wake_pending {
                s.wake_pending = true;
                let incarnation = s.incarnation;
                let delay = self.rng.range(1, 6);
                self.schedule(delay, EventKind::Wake { slot, incarnation });
            }
            return;
        }
        let s = &mut self.slots[slot];
        s.unreported = None;
        if let Some(node) = s.node.as_mut() {
            node.persisted(update.id);
        }
    }

    /// Reports the latest durable write not reported yet (random-depth driver).
    fn report_durable(&mut self, slot: usize) {
        let s = &mut self.slots[slot];
        if let (Some(id), Some(node)) = (s.unreported.take(), s.node.as_mut()) {
            node.persisted(id);
        }
    }

    /// Hands committed entries to `slot`'s service one at a time, checking each against the
    /// committed log (and the service's state digest against the log's, if it keeps one).
    fn apply(&mut self, slot: usize, entries: Vec<Entry>) {
        let before = self.checker.committed().len();
        let term = self.slots[slot].node.as_ref().map_or(0, |n| n.term());
        for entry in entries {
            self.checker.on_apply(slot, &entry, term);
            let index = entry.index;
            let s = &mut self.slots[slot];
            let position = index as usize;
            if s.applied.len() <= position {
                s.applied.resize(position + 1, None);
            }
            s.applied[position] = Some(entry.clone());
            if let Err(err) = self.run_service(slot, Action::Apply(vec![entry])) {
                self.fail(format!("node {}'s service: {err}", slot + 1));
                return;
            }
            let Some(service) = self.slots[slot].service.as_ref() else {
                return;
            };
            let digest = service.chain_digest();
            // The state machine must equal the committed log applied from the start.
            if digest.is_some() && self.checker.committed_digest(index) != digest {
                let message = format!(
                    "state machine of node {} differs from the committed log after applying {index}",
                    slot + 1
                );
                self.fail(message);
                return;
            }
        }
        self.note_commits(before);
    }

    /// Ends a pass over `slot`'s actions: the service settles and its replies leave for their
    /// clients.
    fn settle(&mut self, slot: usize) {
        let s = &mut self.slots[slot];
        let (Some(node), Some(service)) = (s.node.as_mut(), s.service.as_mut()) else {
            return;
        };
        service.settle(node);
        let replies = service.take_replies();
        for (id, reply) in replies {
            let client = (id & ((1 << CLIENT_BITS) - 1)) as ClientId;
            self.send_to_client(slot, client, id, reply);
        }
    }

    fn node_has_actions(&self, slot: usize) -> bool {
        self.slots[slot]
            .node
            .as_ref()
            .is_some_and(RaftNode::has_actions)
    }

    /// Records a `Note::Committed` if the committed prefix grew beyond `before` entries.
    fn note_commits(&mut self, before: usize) {
        let after = self.checker.committed().len();
        if self.narrate && after > before {
            self.notes.push(Note::Committed {
                at: self.now,
                index: after as LogIndex,
            });
        }
    }

    // ----- Clients -----

    /// Adds a client that reaches every node; returns its number (0, 1, ...). At most
    /// 2^16 clients: request ids carry the client's number in their low 16 bits.
    pub fn add_client(&mut self) -> ClientId {
        // More clients would share request ids and get each other's replies: a harness bug,
        // not a fault to simulate.
        assert!(
            self.clients.len() < 1 << CLIENT_BITS,
            "at most {} simulated clients",
            1u64 << CLIENT_BITS
        );
        self.clients.push(vec![true; self.len()]);
        self.deaf_clients.push(false);
        self.clients.len() - 1
    }

    /// Makes every reply to `client` get lost (or arrive again), while its requests still
    /// reach the nodes: the window where a request took effect but its client cannot know.
    pub fn set_client_deaf(&mut self, client: ClientId, deaf: bool) {
        if let Some(flag) = self.deaf_clients.get_mut(client) {
            *flag = deaf;
        }
    }

    /// Lets `client` reach exactly the nodes in `slots` (both ways), as the labs' partitions
    /// put each client with a group of servers.
    pub fn set_client_links(&mut self, client: ClientId, slots: &[usize]) {
        let n = self.len();
        if let Some(links) = self.clients.get_mut(client) {
            *links = (0..n).map(|slot| slots.contains(&slot)).collect();
        }
    }

    /// Whether messages pass between `client` and `slot`.
    pub fn client_reaches(&self, client: ClientId, slot: usize) -> bool {
        self.clients
            .get(client)
            .and_then(|links| links.get(slot))
            .copied()
            .unwrap_or(false)
    }

    /// Sends a request from `client` to `slot` over the simulated network (with its loss,
    /// duplication and delays) and returns the request's id; the reply, if one arrives, comes
    /// out of [`take_client_replies`](Self::take_client_replies) with that id.
    pub fn client_send(&mut self, client: ClientId, slot: usize, request: Vec<u8>) -> u64 {
        let id = (self.next_client_seq << CLIENT_BITS) | client as u64;
        self.next_client_seq += 1;
        self.stats.messages_sent += 1;
        self.stats.bytes_sent += request.len() as u64;
        if slot >= self.len() || !self.client_reaches(client, slot) {
            return id;
        }
        let extra = self.node_delay_ms[slot];
        for delay in self.net.delays(&mut self.rng, true) {
            let kind = EventKind::ClientRequest {
                slot,
                client,
                id,
                request: request.clone(),
            };
            self.schedule(delay + extra, kind);
        }
        id
    }

    /// Replies that reached their clients since the last call, in arrival order.
    pub fn take_client_replies(&mut self) -> Vec<ClientReply> {
        std::mem::take(&mut self.client_inbox)
    }

    fn send_to_client(&mut self, slot: usize, client: ClientId, id: u64, reply: Vec<u8>) {
        self.stats.messages_sent += 1;
        self.stats.bytes_sent += reply.len() as u64;
        if !self.client_reaches(client, slot) {
            return;
        }
        let extra = self.node_delay_ms[slot];
        for delay in self.net.delays(&mut self.rng, false) {
            let kind = EventKind::ClientReply {
                slot,
                client,
                id,
                reply: reply.clone(),
            };
            self.schedule(delay + extra, kind);
        }
    }

    fn send(&mut self, message: Message) {
        let size = encoded_len(&message);
        self.stats.messages_sent += 1;
        self.stats.bytes_sent += size;
        if size <= HISTORY_MAX_BYTES {
            let incarnation = self
                .slot_of(message.from)
                .map_or(0, |slot| self.slots[slot].incarnation);
            self.history.record(&message, incarnation, &mut self.rng);
        }
        if self.net.replay_rate > 0.0 && self.rng.chance(self.net.replay_rate) {
            self.replay_random(1);
        }
        let (Some(from), Some(to)) = (self.slot_of(message.from), self.slot_of(message.to)) else {
            return;
        };
        if !self.topology.link_ok(from, to) {
            return;
        }
        let n = self.len();
        let extra =
            self.node_delay_ms[from] + self.node_delay_ms[to] + self.link_delay_ms[from * n + to];
        for delay in self.net.delays(&mut self.rng, message.is_request()) {
            let delay = delay + extra;
            let message = message.clone();
            self.schedule(delay, EventKind::Deliver { message });
        }
    }

    /// One line describing every node (role, term, commit, last index, connectivity), for
    /// failure messages.
    pub fn describe(&self) -> String {
        (0..self.len())
            .map(|i| match self.node(i) {
                None => format!("{}:crashed", i + 1),
                Some(n) => {
                    let s = n.status();
                    format!(
                        "{}:{:?}/t{}/c{}/l{}{}",
                        i + 1,
                        s.role,
                        s.term,
                        s.commit_index,
                        s.last_index,
                        if self.is_connected(i) { "" } else { "/cut" }
                    )
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    // ----- Queries used by the lab-style helpers -----

    /// Slots of running, connected nodes that claim leadership, with their terms.
    pub fn leaders(&self) -> Vec<(usize, Term)> {
        (0..self.len())
            .filter(|&i| self.is_connected(i))
            .filter_map(|i| {
                let node = self.node(i)?;
                (node.role() == Role::Leader).then(|| (i, node.term()))
            })
            .collect()
    }
}

/// Whether `disk` durably holds index `index` (with term `term`, when given): covered by its
/// snapshot (which holds only committed entries), or present in its log.
fn disk_holds(disk: &DurableState, index: LogIndex, term: Option<Term>) -> bool {
    if index == 0 {
        return true;
    }
    if disk
        .snapshot
        .as_ref()
        .is_some_and(|s| s.meta.last_index >= index)
    {
        return true;
    }
    let Some(first) = disk.entries.first().map(|e| e.index) else {
        return false;
    };
    let Some(entry) = index
        .checked_sub(first)
        .and_then(|k| disk.entries.get(k as usize))
    else {
        return false;
    };
    term.is_none_or(|t| entry.term == t)
}

/// A short description of a disk's log, for failure messages.
fn describe_disk(disk: &DurableState) -> String {
    format!(
        "snapshot {:?}, entries {:?}..={:?}",
        disk.snapshot.as_ref().map(|s| s.meta.last_index),
        disk.entries.first().map(|e| (e.index, e.term)),
        disk.entries.last().map(|e| (e.index, e.term))
    )
}

/// Encoded size of a message, as a transport would frame it.
fn encoded_len(message: &Message) -> u64 {
    // Counting into the size flavor cannot fail for these plain types; 0 would only under-count.
    postcard::serialize_with_flavor(message, postcard::ser_flavors::Size::default()).unwrap_or(0)
        as u64
}
