//! # kv-service: a linearizable, exactly-once key/value service on raft-core
//!
//! The pieces, from the inside out:
//!
//! - [`KvStateMachine`]: the store (`Get`, `Put`, `Append`, `Delete`, `CompareAndSwap` over byte
//!   keys and values) with client sessions, applied one committed log entry at a time. Pure and
//!   deterministic: equal logs give equal states and byte-identical [snapshots](KvStateMachine::snapshot).
//! - Sessions ([`session`], Raft thesis §6.3): a client registers a session through the log (its
//!   id is the index of that entry), numbers its writes, and may pipeline several; the service
//!   executes each `(session, seq)` once and answers retries from the recorded reply, keeping
//!   only the replies the client may still ask for (each request carries the lowest sequence the
//!   client still waits for). Sessions expire by the leader's clock stamped into the log, never
//!   by a replica's own clock; at most `max_sessions` exist (the least recently active is
//!   evicted first).
//! - [`KvService`]: the service's logic on one replica, with the Raft node lent to each call,
//!   for drivers that run the node's state-machine lane themselves (the simulator does).
//! - [`ServiceCore`]: one replica, sans-IO like raft-core. Requests, peer messages, ticks and
//!   "durable" news in; persists, sends and replies out ([`ServiceAction`]). It tracks each
//!   waiting request by `(index, term)`, serves reads through ReadIndex, bounds what it accepts,
//!   and snapshots at `max_raft_state`. The simulator and the real server run this same code.
//! - [`codec`]: the one versioned postcard codec for requests, replies, log commands and
//!   snapshots.
//! - [`testkit`]: a minimal in-memory driver for a few cores (examples and tests).
//!
//! Time is always passed in, the only randomness is raft-core's (seeded from its config), and no
//! observable behaviour depends on hash-map order: a deterministic simulator can host any number
//! of cores.
//!
//! ## Example: one replica, driven by hand
//!
//! ```
//! use kv_service::{ClientRequest, Response, ServiceAction, ServiceConfig, ServiceCore, WriteOp};
//! use raft_core::{Config, DurableState};
//!
//! let mut core = ServiceCore::new(ServiceConfig::new(Config::new(1, vec![1]))).unwrap();
//! let mut disk = DurableState::default();
//! let mut replies = Vec::new();
//! // A trivial driver: persist, report durable, collect replies (one node sends nothing).
//! let mut drive = |core: &mut ServiceCore, replies: &mut Vec<_>| loop {
//!     let actions = core.take_actions();
//!     if actions.is_empty() {
//!         break;
//!     }
//!     for action in actions {
//!         match action {
//!             ServiceAction::Persist(update) => {
//!                 disk.apply(&update).unwrap();
//!                 core.persisted(update.id);
//!             }
//!             ServiceAction::Send(_) => unreachable!("a single node has no peers"),
//!             ServiceAction::Reply { id, reply } => replies.push((id, reply)),
//!         }
//!     }
//! };
//! let mut now = 0;
//! while !core.is_leader() {
//!     now += 10;
//!     core.tick(now);
//!     drive(&mut core, &mut replies);
//! }
//! core.handle_request(now, 1, ClientRequest::RegisterSession);
//! drive(&mut core, &mut replies);
//! let Some((1, Ok(Response::SessionRegistered { session }))) = replies.pop() else { panic!() };
//! let put = WriteOp::Put { key: b"k".to_vec(), value: b"v".to_vec() };
//! core.handle_request(now, 2, ClientRequest::Write { session, seq: 1, lowest_unacked: 1, op: put });
//! drive(&mut core, &mut replies);
//! core.handle_request(now, 3, ClientRequest::Get { key: b"k".to_vec() });
//! drive(&mut core, &mut replies);
//! assert_eq!(replies.pop(), Some((3, Ok(Response::Value(Some(b"v".to_vec()))))));
//! ```
#![deny(missing_docs)]

pub mod codec;
pub mod command;
pub mod config;
pub mod core;
pub mod machine;
pub mod node;
pub mod protocol;
mod raft_size;
pub mod server;
pub mod service;
pub mod session;
pub mod testkit;

pub use crate::core::{ServiceAction, ServiceCore, ServiceError, ServiceStatus};
pub use crate::service::KvService;
pub use codec::{CodecError, PROTOCOL_VERSION};
pub use command::{Command, LogCommand};
pub use config::{ServiceConfig, ServiceConfigError};
pub use machine::{KvStateMachine, MachineConfig};
pub use protocol::{
    ClientRequest, KvError, NodeStatus, Reply, RequestId, Response, RetryReason, Seq, SessionId,
    WriteOp, WriteOutput,
};
pub use raft_core::NodeId;
