//! Support code for the criterion benchmarks in `benches/`.
//!
//! [`LocalCluster`] drives raft-core nodes in one thread with an instant, lossless network and
//! in-memory disks: it measures the protocol's own cost, without any IO.
#![deny(missing_docs)]

pub mod minimal;

use std::collections::VecDeque;

use raft_core::{Action, Config, DurableState, LogIndex, Message, NodeId, RaftNode};

/// A cluster of raft-core nodes driven in-process.
///
/// ```
/// let mut cluster = raft_benches::LocalCluster::new(3);
/// let leader = cluster.elect();
/// cluster.propose_and_commit(leader, &[b"x".to_vec()]);
/// assert!(cluster.applied(leader) >= 2);
/// ```
pub struct LocalCluster {
    nodes: Vec<RaftNode>,
    disks: Vec<DurableState>,
    applied: Vec<LogIndex>,
    network: VecDeque<Message>,
}

impl LocalCluster {
    /// Starts `n` fresh nodes with ids 1..=n.
    pub fn new(n: usize) -> Self {
        let voters: Vec<NodeId> = (1..=n as NodeId).collect();
        let nodes = voters
            .iter()
            .map(|&id| RaftNode::new(Config::new(id, voters.clone())).expect("valid config"))
            .collect();
        Self {
            nodes,
            disks: vec![DurableState::default(); n],
            applied: vec![0; n],
            network: VecDeque::new(),
        }
    }

    /// Ticks every node until one leads; returns its 0-based slot.
    pub fn elect(&mut self) -> usize {
        loop {
            if let Some(leader) = self.nodes.iter().position(RaftNode::is_leader) {
                // Let the leader's no-op commit so followers stream rather than probe.
                for _ in 0..4 {
                    self.tick_all();
                }
                return leader;
            }
            self.tick_all();
        }
    }

    fn tick_all(&mut self) {
        for node in &mut self.nodes {
            node.tick();
        }
        self.settle();
    }

    /// Proposes every command at `leader` and runs until the leader has applied them all.
    pub fn propose_and_commit(&mut self, leader: usize, commands: &[Vec<u8>]) {
        let mut last = 0;
        for command in commands {
            last = self.nodes[leader]
                .propose(command.clone())
                .expect("leader accepts")
                .0;
        }
        while self.applied[leader] < last {
            self.settle();
            if self.applied[leader] < last {
                self.tick_all();
            }
        }
    }

    /// Highest index `slot` has applied.
    pub fn applied(&self, slot: usize) -> LogIndex {
        self.applied[slot]
    }

    /// Carries out every action and delivers every message until the cluster is quiet.
    fn settle(&mut self) {
        loop {
            let mut idle = true;
            for slot in 0..self.nodes.len() {
                for action in self.nodes[slot].take_actions() {
                    idle = false;
                    match action {
                        Action::Persist(update) => {
                            self.disks[slot]
                                .apply(&update)
                                .expect("updates continue the log");
                            self.nodes[slot].persisted(update.id);
                        }
                        Action::Send(message) => self.network.push_back(message),
                        Action::Apply(entries) => {
                            if let Some(last) = entries.last() {
                                self.applied[slot] = last.index;
                            }
                        }
                        Action::InstallSnapshot(snapshot) => {
                            self.applied[slot] = snapshot.meta.last_index;
                        }
                        // The benches never ask for reads.
                        Action::ReadReady { .. } | Action::ReadFailed { .. } => {}
                    }
                }
            }
            while let Some(message) = self.network.pop_front() {
                idle = false;
                let to = (message.to - 1) as usize;
                self.nodes[to].step(message);
            }
            if idle {
                return;
            }
        }
    }
}
