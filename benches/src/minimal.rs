//! The library's write path in the shape of openraft's `bench-minimal`: three nodes in one
//! process, each a [`raft_node`] driver on its own tokio task, messages over channels, the
//! in-memory persister, and N client tasks that each await their write's commit and apply on
//! the leader before they issue the next.
//!
//! `../shared/tools/openraft-compare` runs the same shape on openraft; the `bench-minimal`
//! binary prints the same columns, so the two can run side by side.
//!
//! ```
//! # tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap().block_on(async {
//! let report = raft_benches::minimal::run(4, 100).await.unwrap();
//! assert_eq!(report.writes, 400);
//! assert!(report.writes_per_sec() > 0.0);
//! # });
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use raft_core::{Action, Config, LogIndex, Message, NodeId, RaftNode, Role, Transport};
use raft_node::{NodeClient, NodeConfig, NodeHandle, RequestId, Service};
use raft_storage::MemoryPersister;
use tokio::sync::mpsc;

/// Entries applied between two snapshots (openraft's default policy in `bench-minimal`).
pub const SNAPSHOT_EVERY: u64 = 5000;

/// Why a run did not finish.
#[derive(Debug, thiserror::Error)]
pub enum MinimalError {
    /// No leader was elected within 30 s.
    #[error("no leader within 30 s")]
    NoLeader,
    /// The leader lost its leadership during the run (a write was refused).
    #[error("write refused: {0}")]
    Refused(String),
    /// A node's driver stopped.
    #[error("a node stopped during the run")]
    Stopped,
    /// A follower did not apply every write within 30 s of the run's end.
    #[error("node {0} did not catch up")]
    Behind(NodeId),
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct MinimalReport {
    /// Client tasks.
    pub clients: usize,
    /// Writes committed and applied, in all.
    pub writes: u64,
    /// Wall time from the first write to the last answer.
    pub elapsed: Duration,
    /// Latency of every write, in nanoseconds, sorted.
    pub latencies_ns: Vec<u64>,
}

impl MinimalReport {
    /// Committed writes per second.
    pub fn writes_per_sec(&self) -> f64 {
        self.writes as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The latency at quantile `q` (0.0..=1.0).
    pub fn latency(&self, q: f64) -> Duration {
        let n = self.latencies_ns.len();
        if n == 0 {
            return Duration::ZERO;
        }
        let rank = ((n as f64 * q).ceil() as usize).clamp(1, n) - 1;
        Duration::from_nanos(self.latencies_ns[rank])
    }

    /// The mean latency.
    pub fn mean(&self) -> Duration {
        let n = self.latencies_ns.len().max(1) as u128;
        let sum: u128 = self.latencies_ns.iter().map(|&l| u128::from(l)).sum();
        Duration::from_nanos((sum / n) as u64)
    }
}

/// The replicated service of the bench: every request is one empty write; its answer comes
/// when the write applies. It snapshots (and so compacts the log) every [`SNAPSHOT_EVERY`]
/// applied entries.
#[derive(Default)]
pub struct Writes {
    applied: LogIndex,
    snapshot_at: LogIndex,
    waiting: HashMap<LogIndex, RequestId>,
    replies: Vec<(RequestId, Result<LogIndex, String>)>,
}

impl Service for Writes {
    type Request = ();
    type Reply = Result<LogIndex, String>;

    fn handle_request(&mut self, raft: &mut RaftNode, _now_ms: u64, id: RequestId, _: ()) {
        match raft.propose(Vec::new()) {
            Ok((index, _term)) => {
                self.waiting.insert(index, id);
            }
            Err(e) => self.replies.push((id, Err(e.to_string()))),
        }
    }

    fn apply(&mut self, _raft: &mut RaftNode, action: Action) {
        match action {
            Action::Apply(entries) => {
                for entry in entries {
                    self.applied = entry.index;
                    if let Some(id) = self.waiting.remove(&entry.index) {
                        self.replies.push((id, Ok(entry.index)));
                    }
                }
            }
            Action::InstallSnapshot(snapshot) => {
                self.applied = snapshot.meta.last_index;
                self.snapshot_at = snapshot.meta.last_index;
            }
            _ => {}
        }
    }

    fn settle(&mut self, raft: &mut RaftNode) {
        if self.applied >= self.snapshot_at + SNAPSHOT_EVERY
            && raft
                .compact(self.applied, self.applied.to_le_bytes().to_vec())
                .is_ok()
        {
            self.snapshot_at = self.applied;
        }
        if raft.role() != Role::Leader && !self.waiting.is_empty() {
            for (_, id) in self.waiting.drain() {
                self.replies.push((id, Err("leadership lost".into())));
            }
        }
    }

    fn take_replies(&mut self) -> Vec<(RequestId, Self::Reply)> {
        std::mem::take(&mut self.replies)
    }
}

/// The network between the nodes of one process: an unbounded channel into each node.
pub struct Channels {
    peers: HashMap<NodeId, mpsc::UnboundedSender<Message>>,
    inbox: tokio::sync::Mutex<mpsc::UnboundedReceiver<Message>>,
}

/// A peer is gone (its driver stopped).
#[derive(Debug, thiserror::Error)]
#[error("node {0} is unreachable")]
pub struct Unreachable(NodeId);

#[async_trait::async_trait]
impl Transport for Channels {
    type Error = Unreachable;

    fn send(&self, message: Message) -> Result<(), Unreachable> {
        let to = message.to;
        match self.peers.get(&to) {
            Some(peer) => peer.send(message).map_err(|_| Unreachable(to)),
            None => Err(Unreachable(to)),
        }
    }

    async fn recv(&self) -> Option<Message> {
        self.inbox.lock().await.recv().await
    }
}

/// Three running nodes and the leader's client.
pub struct MinimalCluster {
    nodes: Vec<NodeHandle<Writes>>,
    leader: NodeClient<Writes>,
}

impl MinimalCluster {
    /// Starts three fresh nodes on the current runtime and waits until one leads and every node
    /// has applied its first entry.
    pub async fn start() -> Result<Self, MinimalError> {
        let ids: Vec<NodeId> = vec![1, 2, 3];
        let (senders, mut inboxes): (HashMap<_, _>, HashMap<_, _>) = ids
            .iter()
            .map(|&id| {
                let (tx, rx) = mpsc::unbounded_channel();
                ((id, tx), (id, rx))
            })
            .unzip();
        let mut nodes = Vec::new();
        for &id in &ids {
            let mut config = Config::new(id, ids.clone());
            config.seed = id;
            let transport = Arc::new(Channels {
                peers: senders.clone(),
                // Filled just above for every id.
                inbox: tokio::sync::Mutex::new(inboxes.remove(&id).expect("an inbox per node")),
            });
            // The configuration is valid: three distinct voters including `id`.
            let raft = RaftNode::new(config).expect("a valid configuration");
            let persister = Arc::new(MemoryPersister::new());
            let node = raft_node::spawn(
                raft,
                Writes::default(),
                persister,
                transport,
                NodeConfig::default(),
            );
            nodes.push(node);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if Instant::now() > deadline {
                return Err(MinimalError::NoLeader);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            let statuses: Vec<_> = nodes.iter().map(|n| n.client().status()).collect();
            let Some(leader) = statuses.iter().position(|s| s.role == Role::Leader) else {
                continue;
            };
            let first = statuses[leader].commit_index;
            if first > 0 && statuses.iter().all(|s| s.applied_index >= first) {
                let leader = nodes[leader].client();
                return Ok(Self { nodes, leader });
            }
        }
    }

    /// `clients` tasks, each issuing `writes_per_client` writes one after another on the
    /// leader.
    pub async fn run(
        &self,
        clients: usize,
        writes_per_client: u64,
    ) -> Result<MinimalReport, MinimalError> {
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..clients {
            let leader = self.leader.clone();
            tasks.spawn(async move {
                let mut latencies = Vec::with_capacity(writes_per_client as usize);
                for _ in 0..writes_per_client {
                    let t = Instant::now();
                    match leader.call(()).await {
                        Ok(Ok(_index)) => latencies.push(t.elapsed().as_nanos() as u64),
                        Ok(Err(e)) => return Err(MinimalError::Refused(e)),
                        Err(_) => return Err(MinimalError::Stopped),
                    }
                }
                Ok(latencies)
            });
        }
        let mut latencies_ns = Vec::with_capacity(clients * writes_per_client as usize);
        while let Some(done) = tasks.join_next().await {
            latencies_ns.extend(done.map_err(|_| MinimalError::Stopped)??);
        }
        let elapsed = started.elapsed();
        latencies_ns.sort_unstable();
        // Every node applies every write: the followers kept up, not just the leader.
        let target = self.leader.status().applied_index;
        for node in &self.nodes {
            let client = node.client();
            let mut status = client.watch_status();
            let caught_up = tokio::time::timeout(
                Duration::from_secs(30),
                status.wait_for(|s| s.applied_index >= target),
            )
            .await;
            if !matches!(caught_up, Ok(Ok(_))) {
                return Err(MinimalError::Behind(client.status().id));
            }
        }
        Ok(MinimalReport {
            clients,
            writes: latencies_ns.len() as u64,
            elapsed,
            latencies_ns,
        })
    }

    /// Stops the three nodes.
    pub async fn shutdown(self) {
        for node in self.nodes {
            let _ = node.shutdown().await;
        }
    }
}

/// One run on a fresh cluster: `clients` tasks, `writes_per_client` writes each.
pub async fn run(clients: usize, writes_per_client: u64) -> Result<MinimalReport, MinimalError> {
    let cluster = MinimalCluster::start().await?;
    let report = cluster.run(clients, writes_per_client).await;
    cluster.shutdown().await;
    report
}
