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
    Action, CompactError, Config, DurableState, Entry, LogIndex, Message, NodeId, PersistUpdate,
    RaftNode, ReadError, ReadId, Role, Snapshot, Term,
};
use tracing::debug;

use crate::invariants::{entry_hash, Checker};
use crate::network::{NetConfig, NetStats, Topology};

/// Simulated milliseconds.
pub type Millis = u64;

/// Parameters of a simulated cluster.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Number of nodes; ids are 1..=nodes.
    pub nodes: usize,
    /// Seed of the one random generator behind everything.
    pub seed: u64,
    /// Simulated milliseconds between two ticks of a node.
    pub tick_ms: Millis,
    /// Election timeout range in ticks, `[min, max)`.
    pub election_ticks: (u32, u32),
    /// Heartbeat interval in ticks.
    pub heartbeat_ticks: u32,
    /// Per-AppendEntries size limit handed to the nodes.
    pub max_append_bytes: usize,
    /// Appends in flight per follower handed to the nodes.
    pub max_inflight: usize,
    /// Time a persist takes to become durable, inclusive range in milliseconds. A crash loses
    /// writes still in progress.
    pub disk_latency_ms: (Millis, Millis),
    /// Network behaviour.
    pub net: NetConfig,
    /// Pre-vote, handed to the nodes.
    pub pre_vote: bool,
    /// Check-quorum, handed to the nodes.
    pub check_quorum: bool,
    /// Lease reads, handed to the nodes (requires `check_quorum`).
    pub lease_reads: bool,
    /// Probability that a node crashes *while* a write it started is still in progress (at a
    /// random moment before the write completes), to be restarted `restart_after_ms` later. This
    /// aims faults at the window where the ordering contract matters.
    pub crash_during_write: f64,
    /// Delay before a node crashed by `crash_during_write` restarts.
    pub restart_after_ms: (Millis, Millis),
    /// Each node's service snapshots its state and compacts the log whenever it applies an
    /// index that is a multiple of this (the labs snapshot every 10 entries); `None` never.
    pub snapshot_every: Option<LogIndex>,
    /// Extra bytes in every snapshot, to make snapshots span many chunks.
    pub snapshot_padding: usize,
    /// InstallSnapshot chunk size handed to the nodes.
    pub snapshot_chunk_bytes: usize,
    /// Bytes of entries in flight per follower handed to the nodes.
    pub max_inflight_bytes: usize,
}

impl SimConfig {
    /// Defaults in the labs' spirit: 10 ms ticks, heartbeats every 100 ms (at most 10 per
    /// second), election timeouts of 300-800 ms, 0-3 ms disk writes, a reliable network.
    pub fn new(nodes: usize, seed: u64) -> Self {
        Self {
            nodes,
            seed,
            tick_ms: 10,
            election_ticks: (30, 80),
            heartbeat_ticks: 10,
            max_append_bytes: 64 * 1024,
            max_inflight: 32,
            disk_latency_ms: (0, 3),
            net: NetConfig::reliable(),
            pre_vote: true,
            check_quorum: true,
            lease_reads: false,
            crash_during_write: 0.0,
            restart_after_ms: (50, 500),
            snapshot_every: None,
            snapshot_padding: 0,
            snapshot_chunk_bytes: 16 * 1024,
            max_inflight_bytes: 1 << 20,
        }
    }
}

/// The toy state machine every simulated service runs: the digest of the entries applied so
/// far (the same hash chain the checker computes over the committed log). Its snapshots carry
/// the applied index and digest, plus padding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ToyState {
    /// Last index applied (or covered by the snapshot restored).
    pub applied: LogIndex,
    /// Digest of the state.
    pub digest: u64,
}

impl ToyState {
    fn apply(&mut self, entry: &Entry) {
        self.applied = entry.index;
        self.digest = entry_hash(self.digest, entry);
    }

    /// Encodes the state as snapshot bytes, followed by `padding` filler bytes.
    pub fn encode(&self, padding: usize) -> Vec<u8> {
        let mut data = Vec::with_capacity(16 + padding);
        data.extend_from_slice(&self.applied.to_le_bytes());
        data.extend_from_slice(&self.digest.to_le_bytes());
        data.extend((0..padding).map(|i| (i % 251) as u8));
        data
    }

    /// Decodes snapshot bytes made by [`encode`](Self::encode).
    pub fn decode(data: &[u8]) -> Option<Self> {
        let applied = u64::from_le_bytes(data.get(0..8)?.try_into().ok()?);
        let digest = u64::from_le_bytes(data.get(8..16)?.try_into().ok()?);
        Some(Self { applied, digest })
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
    outcome: ReadOutcome,
}

#[derive(Debug)]
enum EventKind {
    Tick { slot: usize, incarnation: u64 },
    Deliver { message: Message },
    DiskDone { slot: usize, incarnation: u64 },
    Crash { slot: usize, incarnation: u64 },
    Restart { slot: usize, incarnation: u64 },
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
    /// Actions waiting to be carried out, in order.
    queue: VecDeque<Action>,
    /// A write in progress; later actions wait for it.
    writing: Option<PersistUpdate>,
    /// Every entry this machine ever applied (or received in a snapshot), by index, kept across
    /// crashes like the labs' `logs[i]`: what `n_committed` counts.
    applied: Vec<Option<Entry>>,
    /// The service's state machine (volatile: rebuilt from the snapshot at a restart).
    state: ToyState,
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
    /// Starts a cluster of `config.nodes` fresh nodes, all connected.
    pub fn new(config: SimConfig) -> Self {
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
                    writing: None,
                    applied: Vec::new(),
                    state: ToyState::default(),
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

    /// The state machine of `slot`'s service.
    pub fn state(&self, slot: usize) -> ToyState {
        self.slots[slot].state
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
        s.writing = None;
        s.state = ToyState::default();
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
        let c = &self.config;
        let voters: Vec<NodeId> = (1..=c.nodes as NodeId).collect();
        let mut config = Config::new(slot as NodeId + 1, voters);
        config.election_timeout_min = c.election_ticks.0;
        config.election_timeout_max = c.election_ticks.1;
        config.heartbeat_interval = c.heartbeat_ticks;
        config.max_append_bytes = c.max_append_bytes;
        config.max_inflight_appends = c.max_inflight;
        config.pre_vote = c.pre_vote;
        config.check_quorum = c.check_quorum;
        config.lease_reads = c.lease_reads;
        config.snapshot_chunk_bytes = c.snapshot_chunk_bytes;
        config.max_inflight_bytes = c.max_inflight_bytes;
        config.seed = self.rng.next_u64();
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
        s.state = ToyState::default();
        let incarnation = s.incarnation;
        if let Some(snapshot) = self.slots[slot].disk.snapshot.clone() {
            self.restore_state(slot, &snapshot);
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

    /// Replaces `slot`'s state machine with a snapshot's, after checking it against the
    /// committed log.
    fn restore_state(&mut self, slot: usize, snapshot: &Snapshot) {
        let Some(state) = ToyState::decode(&snapshot.data) else {
            self.fail(format!("node {} got a snapshot it cannot decode", slot + 1));
            return;
        };
        if state.applied != snapshot.meta.last_index {
            let message = format!(
                "node {}: snapshot labelled up to {} holds the state at {}",
                slot + 1,
                snapshot.meta.last_index,
                state.applied
            );
            self.fail(message);
            return;
        }
        self.checker
            .on_install_snapshot(slot, state.applied, state.digest);
        let s = &mut self.slots[slot];
        s.state = state;
        let upto = state.applied as usize;
        if s.applied.len() <= upto {
            s.applied.resize(upto + 1, None);
        }
        let committed = self.checker.committed();
        for (k, entry) in committed.iter().take(upto).enumerate() {
            s.applied[k + 1] = Some(entry.clone());
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
            outcome: ReadOutcome::Pending,
        };
        self.reads.insert(id, record);
        if let Some(node) = self.slots[slot].node.as_mut() {
            node.read_index(id);
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

    /// Number of reads served so far.
    pub fn reads_served(&self) -> usize {
        self.reads
            .values()
            .filter(|r| matches!(r.outcome, ReadOutcome::Served { .. }))
            .count()
    }

    /// A node released read `id` at `read_index`: check it against the state it would read.
    fn serve_read(&mut self, slot: usize, id: ReadId, result: Result<LogIndex, ReadError>) {
        let state_index = self.slots[slot].state.applied;
        let incarnation = self.slots[slot].incarnation;
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
                if let Some(node) = self.slots[slot].node.as_mut() {
                    node.tick();
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
                if let Some(update) = self.slots[slot].writing.take() {
                    self.complete_write(slot, update);
                }
                self.pump(slot);
            }
        }
    }

    fn slot_of(&self, id: NodeId) -> Option<usize> {
        let slot = id.checked_sub(1)? as usize;
        (slot < self.slots.len()).then_some(slot)
    }

    /// Carries out `slot`'s actions in order until it has none left or a write is in progress.
    fn pump(&mut self, slot: usize) {
        loop {
            let s = &mut self.slots[slot];
            let Some(node) = s.node.as_mut() else {
                return;
            };
            s.queue.extend(node.take_actions());
            if s.writing.is_some() {
                break;
            }
            let Some(action) = s.queue.pop_front() else {
                break;
            };
            match action {
                Action::Send(message) => self.send(message),
                Action::Apply(entries) => self.apply(slot, entries),
                Action::InstallSnapshot(snapshot) => self.restore_state(slot, &snapshot),
                Action::ReadReady { id, index } => self.serve_read(slot, id, Ok(index)),
                Action::ReadFailed { id, error } => self.serve_read(slot, id, Err(error)),
                Action::Persist(update) => {
                    let (lo, hi) = self.config.disk_latency_ms;
                    let latency = self.rng.range(lo, hi + 1);
                    if latency == 0 {
                        self.complete_write(slot, update);
                    } else {
                        let incarnation = self.slots[slot].incarnation;
                        self.slots[slot].writing = Some(update);
                        self.schedule(latency, EventKind::DiskDone { slot, incarnation });
                        if self.rng.chance(self.config.crash_during_write) {
                            let at = self.rng.range(0, latency);
                            self.schedule(at, EventKind::Crash { slot, incarnation });
                        }
                    }
                }
            }
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
        if let (Some((index, term)), Some(node)) = (update.last_entry(), s.node.as_mut()) {
            node.persisted(index, term);
        }
    }

    fn apply(&mut self, slot: usize, entries: Vec<Entry>) {
        let before = self.checker.committed().len();
        let term = self.slots[slot].node.as_ref().map_or(0, |n| n.term());
        for entry in entries {
            self.checker.on_apply(slot, &entry, term);
            let s = &mut self.slots[slot];
            s.state.apply(&entry);
            let index = entry.index;
            let position = index as usize;
            if s.applied.len() <= position {
                s.applied.resize(position + 1, None);
            }
            s.applied[position] = Some(entry);
            // The state machine must equal the committed log applied from the start.
            if self.checker.committed_digest(index) != Some(self.slots[slot].state.digest) {
                let message = format!(
                    "state machine of node {} differs from the committed log after applying {index}",
                    slot + 1
                );
                self.fail(message);
                return;
            }
            if let Some(every) = self.config.snapshot_every {
                if index % every == 0 {
                    self.take_snapshot(slot);
                }
            }
        }
        self.note_commits(before);
    }

    /// The service snapshots its state and asks its node to compact the log, as the labs'
    /// tester does from its applier.
    fn take_snapshot(&mut self, slot: usize) {
        let padding = self.config.snapshot_padding;
        let s = &mut self.slots[slot];
        let state = s.state;
        let Some(node) = s.node.as_mut() else {
            return;
        };
        match node.compact(state.applied, state.encode(padding)) {
            // The node got ahead of its service: it installed a newer snapshot from the leader
            // while this service was still applying older entries. Nothing to do.
            Ok(()) | Err(CompactError::AlreadyCompacted { .. }) => {}
            Err(err) => self.fail(format!(
                "node {} refused to compact at applied index {}: {err}",
                slot + 1,
                state.applied
            )),
        }
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

    fn send(&mut self, message: Message) {
        self.stats.messages_sent += 1;
        self.stats.bytes_sent += encoded_len(&message);
        let (Some(from), Some(to)) = (self.slot_of(message.from), self.slot_of(message.to)) else {
            return;
        };
        if !self.topology.link_ok(from, to) {
            return;
        }
        let extra = self.node_delay_ms[from] + self.node_delay_ms[to];
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

/// Encoded size of a message, as a transport would frame it.
fn encoded_len(message: &Message) -> u64 {
    // Counting into the size flavor cannot fail for these plain types; 0 would only under-count.
    postcard::serialize_with_flavor(message, postcard::ser_flavors::Size::default()).unwrap_or(0)
        as u64
}
