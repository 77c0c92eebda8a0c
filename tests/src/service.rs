//! The services the simulator hosts: [`SimService`] is what runs on each simulated node next to
//! its [`RaftNode`] — the node's state-machine lane and its clients' requests.
//!
//! The simulator owns the node and carries out its storage and network lanes; the service gets
//! the state-machine actions when the configured [`DriverMode`](crate::DriverMode) runs them, the
//! client requests that reach the node, and a [`settle`](SimService::settle) call after each
//! pass. Requests and replies are bytes, as on a real wire, so any service fits. The built-in
//! [`ToyService`] (a hash chain over the applied entries) serves the Raft suites; the KV
//! service's adapter lives in [`crate::kv`].

use std::any::Any;

use raft_core::{
    Action, CompactError, DurableState, Entry, LogIndex, NodeId, PersistUpdate, RaftNode,
};

use crate::invariants::entry_hash;
use crate::sim::Millis;

/// A service hosted by the simulator on one node (one incarnation: a crash drops it, a restart
/// builds a new one from the disk with the [`ServiceFactory`]).
pub trait SimService: Any {
    /// A client request with the simulator's id for it; the answer comes out of
    /// [`take_replies`](Self::take_replies) with the same id, now or later.
    fn request(&mut self, node: &mut RaftNode, now: Millis, id: u64, request: Vec<u8>);

    /// The node ticked at simulated time `now`.
    fn tick(&mut self, _now: Millis) {}

    /// The node emitted this persist (shown in stream order when the driver takes it).
    fn persisting(&mut self, _update: &PersistUpdate) {}

    /// Carries out one state-machine action: `Apply` (the simulator passes one entry at a time),
    /// `InstallSnapshot`, or `ReadReady`/`ReadFailed` for a read the service asked for. An
    /// error is a failure of the run (for example a snapshot the service cannot decode).
    fn run(&mut self, node: &mut RaftNode, action: Action) -> Result<(), String>;

    /// The end of a pass over the node's actions: hand new reads to the node, snapshot, answer
    /// what a lost leadership orphaned.
    fn settle(&mut self, _node: &mut RaftNode) {}

    /// Answers produced so far, by request id.
    fn take_replies(&mut self) -> Vec<(u64, Vec<u8>)> {
        Vec::new()
    }

    /// The last log index the state reflects (applied, or covered by a snapshot).
    fn applied_index(&self) -> LogIndex;

    /// The state's digest in the checker's hash chain over the committed log, if the service
    /// keeps one: the simulator then checks it after every apply and snapshot.
    fn chain_digest(&self) -> Option<u64> {
        None
    }

    /// The service, for downcasting in tests.
    fn as_any(&self) -> &dyn Any;
}

/// Builds the service of a node starting (or restarting) on `disk`: it must load the stored
/// snapshot, if any, before it serves anything.
pub type ServiceFactory = Box<dyn Fn(NodeId, &DurableState) -> Result<Box<dyn SimService>, String>>;

/// The toy state machine of the Raft suites: the digest of the entries applied so far (the same
/// hash chain the checker computes over the committed log). Its snapshots carry the applied
/// index and digest, plus padding.
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

    /// The state a snapshot holds, checked against the index its metadata names.
    fn from_snapshot(data: &[u8], last_index: LogIndex) -> Result<Self, String> {
        let state = Self::decode(data).ok_or("a snapshot it cannot decode")?;
        if state.applied != last_index {
            return Err(format!(
                "a snapshot labelled up to {last_index} that holds the state at {}",
                state.applied
            ));
        }
        Ok(state)
    }
}

/// The service of the Raft suites: applies entries to a [`ToyState`] and, like the labs'
/// tester, snapshots every `snapshot_every` applied entries. It takes no client requests.
#[derive(Debug)]
pub struct ToyService {
    /// The state machine.
    pub state: ToyState,
    snapshot_every: Option<LogIndex>,
    padding: usize,
}

impl ToyService {
    /// The factory of toy services snapshotting every `snapshot_every` entries, with
    /// `padding` filler bytes in each snapshot.
    pub fn factory(snapshot_every: Option<LogIndex>, padding: usize) -> ServiceFactory {
        Box::new(move |_, disk: &DurableState| {
            let state = match &disk.snapshot {
                Some(snapshot) => {
                    ToyState::from_snapshot(&snapshot.data, snapshot.meta.last_index)?
                }
                None => ToyState::default(),
            };
            Ok(Box::new(ToyService {
                state,
                snapshot_every,
                padding,
            }) as Box<dyn SimService>)
        })
    }
}

impl SimService for ToyService {
    fn request(&mut self, _: &mut RaftNode, _: Millis, _: u64, _: Vec<u8>) {}

    fn run(&mut self, node: &mut RaftNode, action: Action) -> Result<(), String> {
        match action {
            Action::Apply(entries) => {
                for entry in &entries {
                    self.state.apply(entry);
                    if self
                        .snapshot_every
                        .is_some_and(|every| entry.index % every == 0)
                    {
                        self.snapshot(node)?;
                    }
                }
            }
            Action::InstallSnapshot(snapshot) => {
                self.state = ToyState::from_snapshot(&snapshot.data, snapshot.meta.last_index)?;
            }
            // The toy asks for no reads of its own.
            _ => {}
        }
        Ok(())
    }

    fn applied_index(&self) -> LogIndex {
        self.state.applied
    }

    fn chain_digest(&self) -> Option<u64> {
        Some(self.state.digest)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl ToyService {
    /// Snapshots the state and asks the node to compact its log, as the labs' tester does
    /// from its applier.
    fn snapshot(&mut self, node: &mut RaftNode) -> Result<(), String> {
        match node.compact(self.state.applied, self.state.encode(self.padding)) {
            // The node got ahead of its service: it installed a newer snapshot from the leader
            // while this service was still applying older entries. Nothing to do.
            Ok(()) | Err(CompactError::AlreadyCompacted { .. }) => Ok(()),
            Err(err) => Err(format!(
                "refused to compact at applied index {}: {err}",
                self.state.applied
            )),
        }
    }
}
