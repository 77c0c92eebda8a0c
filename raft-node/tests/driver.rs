//! The driver against a counting persister and a silent transport: time catches up before any
//! input after a stall, requests that arrive together share one write, shutdown writes what
//! was emitted, and a failed write stops the node.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use raft_core::{
    Action, Config, DurableState, Message, PersistUpdate, Persister, RaftNode, Role, Transport,
};
use raft_node::{NodeConfig, NodeError, NodeStopped, RequestId, Service};
use raft_storage::MemoryPersister;

/// A persister that counts writes and can be made to fail.
#[derive(Default)]
struct Counting {
    inner: MemoryPersister,
    writes: AtomicUsize,
    fail: AtomicBool,
}

#[derive(Debug, thiserror::Error)]
#[error("disk on fire")]
struct DiskError;

#[async_trait]
impl Persister for Counting {
    type Error = DiskError;
    async fn load(&self) -> Result<DurableState, DiskError> {
        Ok(self.inner.state())
    }
    async fn persist(&self, update: &PersistUpdate) -> Result<(), DiskError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(DiskError);
        }
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.persist(update).await.map_err(|_| DiskError)
    }
    fn raft_state_size(&self) -> u64 {
        self.inner.raft_state_size()
    }
}

/// A network where nothing ever arrives and everything sent is lost.
struct Silent;

#[async_trait]
impl Transport for Silent {
    type Error = std::io::Error;
    fn send(&self, _message: Message) -> Result<(), Self::Error> {
        Ok(())
    }
    async fn recv(&self) -> Option<Message> {
        std::future::pending().await
    }
}

/// Proposes each request; answers with the role the node had when the request arrived, once
/// the entry applies (or at once, on a follower).
#[derive(Default)]
struct Probe {
    waiting: Vec<(u64, RequestId, Role)>,
    replies: Vec<(RequestId, Role)>,
}

impl Service for Probe {
    type Request = ();
    type Reply = Role;
    fn handle_request(&mut self, raft: &mut RaftNode, _now: u64, id: RequestId, _: ()) {
        let role = raft.role();
        match raft.propose(vec![1]) {
            Ok((index, _)) => self.waiting.push((index, id, role)),
            Err(_) => self.replies.push((id, role)),
        }
    }
    fn apply(&mut self, _raft: &mut RaftNode, action: Action) {
        if let Action::Apply(entries) = action {
            let last = entries.last().map_or(0, |e| e.index);
            let (done, waiting) = self.waiting.drain(..).partition(|w| w.0 <= last);
            self.waiting = waiting;
            let done: Vec<(u64, RequestId, Role)> = done;
            self.replies
                .extend(done.into_iter().map(|(_, id, role)| (id, role)));
        }
    }
    fn take_replies(&mut self) -> Vec<(RequestId, Role)> {
        std::mem::take(&mut self.replies)
    }
}

fn node(voters: Vec<u64>) -> RaftNode {
    let mut config = Config::new(1, voters);
    config.seed = 7;
    RaftNode::new(config).unwrap()
}

fn config() -> NodeConfig {
    NodeConfig {
        tick_interval: Duration::from_millis(10),
        ..NodeConfig::default()
    }
}

#[test]
fn ticks_that_fell_due_during_a_stall_happen_before_the_next_input() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // Nodes 2 and 3 never answer: node 1 stays a follower until its election timeout
        // (10-20 ticks), then campaigns.
        let handle = raft_node::spawn(
            node(vec![1, 2, 3]),
            Probe::default(),
            Arc::new(Counting::default()),
            Arc::new(Silent),
            config(),
        );
        tokio::task::yield_now().await; // the driver waits in its loop
        let client = handle.client();
        let call = tokio::spawn(async move { client.call(()).await });
        // The process stalls (as under SIGSTOP) for 100 ticks: the only thread is blocked.
        std::thread::sleep(Duration::from_secs(1));
        let role = call.await.unwrap().unwrap();
        assert_ne!(
            role,
            Role::Follower,
            "the request was handled before the node's clock caught up"
        );
        handle.shutdown().await.unwrap();
    });
}

/// A one-node cluster's driver, elected.
async fn elected(persister: Arc<Counting>) -> raft_node::NodeHandle<Probe> {
    let handle = raft_node::spawn(
        node(vec![1]),
        Probe::default(),
        persister,
        Arc::new(Silent),
        config(),
    );
    let mut status = handle.client().watch_status();
    while status.borrow().role != Role::Leader {
        status.changed().await.unwrap();
    }
    handle
}

#[test]
fn requests_that_arrive_together_share_one_write() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let persister = Arc::new(Counting::default());
        let handle = elected(persister.clone()).await;
        // Let the leader's own no-op entry settle.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let before = persister.writes.load(Ordering::SeqCst);
        let calls: Vec<_> = (0..200)
            .map(|_| {
                let client = handle.client();
                tokio::spawn(async move { client.call(()).await })
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.unwrap(), Ok(Role::Leader));
        }
        let writes = persister.writes.load(Ordering::SeqCst) - before;
        assert!(
            writes <= 2,
            "200 requests queued together took {writes} writes"
        );
        let entries = persister.inner.state().entries.len();
        assert_eq!(entries, 201, "the no-op and the 200 proposals");
        handle.shutdown().await.unwrap();
    });
}

#[test]
fn a_failed_write_stops_the_node_and_fails_what_waits() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let persister = Arc::new(Counting::default());
        let handle = elected(persister.clone()).await;
        persister.fail.store(true, Ordering::SeqCst);
        let answer = handle.client().call(()).await;
        assert_eq!(answer, Err(NodeStopped));
        assert_eq!(
            handle.join().await,
            Err(NodeError::Storage("disk on fire".into()))
        );
    });
}

#[test]
fn shutdown_writes_everything_already_emitted() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let persister = Arc::new(Counting::default());
    let statuses = Arc::new(Mutex::new(Vec::new()));
    runtime.block_on(async {
        let handle = elected(persister.clone()).await;
        let client = handle.client();
        for _ in 0..5 {
            let answer = client.call(()).await;
            statuses.lock().unwrap().push(answer);
        }
        handle.shutdown().await.unwrap();
        assert_eq!(
            client.call(()).await,
            Err(NodeStopped),
            "no request after shutdown"
        );
    });
    assert!(statuses.lock().unwrap().iter().all(|s| s.is_ok()));
    assert_eq!(persister.inner.state().entries.len(), 6);
}
