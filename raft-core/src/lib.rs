//! # raft-core: the Raft protocol as a pure state machine
//!
//! This crate implements Raft consensus (leader election, log replication, persistence rules)
//! without doing any IO: no clock, socket, file, thread or global random generator. A
//! [`RaftNode`] takes inputs — a logical [`tick`](RaftNode::tick), a peer [`Message`], a
//! [`propose`](RaftNode::propose)d command, and the news that a write became durable
//! ([`persisted`](RaftNode::persisted)) — and answers with an ordered list of [`Action`]s:
//! persist this, send that, apply these committed entries. Given the same configuration
//! (seed included) and the same inputs, it produces the same actions, which is what makes the
//! protocol testable in a deterministic simulator.
//!
//! The driver (a real server, a test harness, the example below) owns the IO. It carries out
//! the actions in three independent lanes, as the [ordering contract](action) says: persists in
//! order, each reported with [`persisted`](RaftNode::persisted) once durable; messages at once
//! (the node holds back any message that promises durable state until the write behind it is
//! reported); state-machine actions in order. The
//! [`Persister`] and [`Transport`] traits describe what durable storage and the network must
//! guarantee; implementations live in `raft-storage` and `raft-transport-quic`.
//!
//! Beyond the inputs above, the service can [`compact`](RaftNode::compact) the log into a
//! snapshot of its state (the node sends it in chunks to followers that fall behind and hands a
//! received one back in [`Action::InstallSnapshot`]), and ask for linearizable reads without
//! writing to the log with [`read_index`](RaftNode::read_index) (answered by
//! [`Action::ReadReady`] once the state machine is recent enough). `docs/divergences.md` in the
//! repository lists every place the protocol goes beyond the Raft paper's Figure 2.
//!
//! ## Example: three nodes driven by hand
//!
//! ```
//! use std::collections::VecDeque;
//! use raft_core::{Action, Config, DurableState, Message, RaftNode, Role};
//!
//! let ids = [1, 2, 3];
//! let mut nodes: Vec<RaftNode> = ids
//!     .iter()
//!     .map(|&id| RaftNode::new(Config::new(id, ids.to_vec())).expect("valid config"))
//!     .collect();
//! let mut disks = vec![DurableState::default(); 3];
//! let mut network: VecDeque<Message> = VecDeque::new();
//! let mut applied: Vec<Vec<Vec<u8>>> = vec![Vec::new(); 3];
//!
//! // Carry out every pending action of every node: store, send, apply.
//! let mut drive = |nodes: &mut Vec<RaftNode>| {
//!     loop {
//!         let mut idle = true;
//!         for (i, node) in nodes.iter_mut().enumerate() {
//!             for action in node.take_actions() {
//!                 idle = false;
//!                 match action {
//!                     Action::Persist(update) => {
//!                         disks[i].apply(&update).expect("updates continue the log");
//!                         node.persisted(update.id);
//!                     }
//!                     Action::Send(message) => network.push_back(message),
//!                     Action::Apply(entries) => applied[i]
//!                         .extend(entries.iter().filter_map(|e| e.command().map(<[u8]>::to_vec))),
//!                     // This example never compacts its log nor reads without writing.
//!                     _ => {}
//!                 }
//!             }
//!         }
//!         while let Some(message) = network.pop_front() {
//!             idle = false;
//!             nodes[(message.to - 1) as usize].step(message);
//!         }
//!         if idle {
//!             break;
//!         }
//!     }
//! };
//!
//! // Tick until someone times out and wins the election.
//! while !nodes.iter().any(|n| n.role() == Role::Leader) {
//!     for node in nodes.iter_mut() {
//!         node.tick();
//!     }
//!     drive(&mut nodes);
//! }
//! let leader = nodes.iter().position(|n| n.is_leader()).unwrap();
//! nodes[leader].propose(b"x=1".to_vec()).expect("the leader accepts proposals");
//! drive(&mut nodes);
//! // Followers learn the new commit index with the next heartbeat.
//! for _ in 0..2 {
//!     for node in nodes.iter_mut() {
//!         node.tick();
//!     }
//!     drive(&mut nodes);
//! }
//! assert!(applied.iter().all(|a| a == &vec![b"x=1".to_vec()]));
//! ```
#![deny(missing_docs)]

pub mod action;
pub mod config;
pub mod error;
pub mod log;
pub mod message;
pub mod node;
pub mod progress;
pub mod quorum;
mod read;
pub mod rng;
pub mod storage;
pub mod transport;
pub mod types;

pub use action::{Action, Lane, Lanes, PersistId, PersistUpdate, ReadId};
pub use config::Config;
pub use error::{CompactError, ConfigError, ProposeError, ReadError, RestoreError, UpdateError};
pub use log::{LogError, RaftLog};
pub use message::{AppendResult, Message, MessageBody, SnapshotResult};
pub use node::{RaftNode, Role, Status};
pub use storage::{DurableState, Persister};
pub use transport::Transport;
pub use types::{Entry, HardState, LogIndex, NodeId, Payload, Snapshot, SnapshotMeta, Term};
