//! # raft-node: run a raft-core node and your service on tokio
//!
//! [`raft_core`] is sans-IO: it says what to persist, send and apply, and a driver must carry
//! that out in the order its [contract](raft_core::action) demands. That loop is where
//! durability is easiest to break, so it lives here, once: [`spawn`] starts a task that owns a
//! [`RaftNode`](raft_core::RaftNode) and your [`Service`], ticks the node, steps the messages
//! the [`Transport`](raft_core::Transport) receives, hands your clients' requests to the
//! service, and runs the three lanes:
//!
//! - **storage**: a task writes persists through the [`Persister`](raft_core::Persister) in
//!   stream order, folding a backlog into one write (one fsync), and reports them durable;
//! - **network**: messages leave at once (the leader replicates while it writes);
//! - **state machine**: applies, snapshots and read releases go to the service in order, on the
//!   driver task: no lock stands between applying and the request path.
//!
//! The crate depends on raft-core alone; storage backends (`raft-storage`) and transports
//! (`raft-transport-quic`) plug in beside it. The KV service (`kv-service`) is its first user.
//! Metrics go through the [`metrics`](::metrics) facade ([`metrics`] lists them).
//!
//! ## Example: a replicated counter in a page
//!
//! Three nodes in one process, over an in-memory transport, with the memory persister. The
//! service adds the numbers its log commits and answers each `Add` with the new total once
//! its entry applies.
//!
//! ```
//! use std::collections::HashMap;
//! use std::sync::{Arc, Mutex};
//!
//! use raft_core::{Action, Config, Message, Payload, RaftNode, Transport};
//! use raft_node::{NodeConfig, RequestId, Service};
//! use raft_storage::MemoryPersister;
//! use tokio::sync::mpsc;
//!
//! /// Adds up the numbers committed to the log.
//! #[derive(Default)]
//! struct Counter {
//!     total: u64,
//!     waiting: HashMap<u64, RequestId>, // log index -> request
//!     replies: Vec<(RequestId, Result<u64, String>)>,
//! }
//!
//! impl Service for Counter {
//!     type Request = u64;
//!     type Reply = Result<u64, String>;
//!
//!     fn handle_request(&mut self, raft: &mut RaftNode, _now: u64, id: RequestId, add: u64) {
//!         match raft.propose(add.to_le_bytes().to_vec()) {
//!             Ok((index, _term)) => drop(self.waiting.insert(index, id)),
//!             Err(e) => self.replies.push((id, Err(e.to_string()))),
//!         }
//!     }
//!
//!     fn apply(&mut self, _raft: &mut RaftNode, action: Action) {
//!         if let Action::Apply(entries) = action {
//!             for entry in entries {
//!                 if let Payload::Command(bytes) = &entry.payload {
//!                     self.total += u64::from_le_bytes(bytes[..8].try_into().unwrap());
//!                 }
//!                 if let Some(id) = self.waiting.remove(&entry.index) {
//!                     self.replies.push((id, Ok(self.total)));
//!                 }
//!             }
//!         }
//!     }
//!
//!     fn take_replies(&mut self) -> Vec<(RequestId, Self::Reply)> {
//!         std::mem::take(&mut self.replies)
//!     }
//! }
//!
//! /// Channels between the nodes of one process.
//! struct Channels {
//!     peers: HashMap<u64, mpsc::UnboundedSender<Message>>,
//!     inbox: tokio::sync::Mutex<mpsc::UnboundedReceiver<Message>>,
//! }
//!
//! #[async_trait::async_trait]
//! impl Transport for Channels {
//!     type Error = std::io::Error;
//!     fn send(&self, message: Message) -> Result<(), Self::Error> {
//!         let peer = self.peers.get(&message.to).ok_or(std::io::ErrorKind::NotFound)?;
//!         peer.send(message).map_err(|_| std::io::ErrorKind::BrokenPipe.into())
//!     }
//!     async fn recv(&self) -> Option<Message> {
//!         self.inbox.lock().await.recv().await
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let ids = [1, 2, 3];
//! let (senders, mut inboxes): (HashMap<_, _>, HashMap<_, _>) = ids
//!     .iter()
//!     .map(|&id| {
//!         let (tx, rx) = mpsc::unbounded_channel();
//!         ((id, tx), (id, rx))
//!     })
//!     .unzip();
//! let mut nodes = Vec::new();
//! for id in ids {
//!     let mut config = Config::new(id, ids.to_vec());
//!     config.seed = id;
//!     let transport = Arc::new(Channels {
//!         peers: senders.clone(),
//!         inbox: tokio::sync::Mutex::new(inboxes.remove(&id).unwrap()),
//!     });
//!     let raft = RaftNode::new(config).unwrap();
//!     let persister = Arc::new(MemoryPersister::new());
//!     nodes.push(raft_node::spawn(raft, Counter::default(), persister, transport, NodeConfig::default()));
//! }
//! // Ask every node until one leads and commits the request.
//! let mut total = None;
//! while total.is_none() {
//!     tokio::time::sleep(std::time::Duration::from_millis(20)).await;
//!     for node in &nodes {
//!         // (A leader deposed before it commits never answers; hence the timeout.)
//!         let client = node.client();
//!         let call = client.call(5);
//!         let answer = tokio::time::timeout(std::time::Duration::from_secs(1), call).await;
//!         if let Ok(Ok(Ok(sum))) = answer {
//!             total = Some(sum);
//!             break;
//!         }
//!     }
//! }
//! assert_eq!(total, Some(5));
//! for node in nodes {
//!     node.shutdown().await.unwrap();
//! }
//! # }
//! ```
#![deny(missing_docs)]

mod driver;
mod merge;
pub mod metrics;
mod service;
mod storage;

pub use driver::{spawn, NodeClient, NodeConfig, NodeError, NodeHandle, NodeStopped};
pub use merge::fold;
pub use service::{RequestId, Service};
