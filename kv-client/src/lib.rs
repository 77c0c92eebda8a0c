//! # kv-client: the Clerk, an exactly-once client for the KV service
//!
//! [`Clerk`] holds the whole retry logic, sans-IO like the service it talks to: operations,
//! replies, transport errors and time go in; "send this request to that server", "this
//! operation completed" and "this operation failed" come out ([`ClerkAction`]). It remembers
//! the leader, follows hints, rotates servers on timeouts and transport errors with capped,
//! jittered backoff (jitter from a seed in its configuration), registers and renews its session,
//! pipelines up to a window of operations, and reports an operation only once it took effect
//! exactly once, or with a definite error. The deterministic simulator runs it as is; the async
//! API over QUIC is a thin loop around it (encode the request with [`kv_service::codec`], send
//! it, feed the reply bytes to [`Clerk::on_reply_bytes`] or the failure to
//! [`Clerk::on_transport_error`], and call [`Clerk::tick`] at [`Clerk::next_deadline`]).
//!
//! ## Example: a Clerk against a one-node cluster
//!
//! ```
//! use kv_client::{Clerk, ClerkAction, ClerkConfig, OpOutput, Operation};
//! use kv_service::testkit::LocalCluster;
//!
//! let mut cluster = LocalCluster::new(1, |_| {}).unwrap();
//! cluster.elect(100).unwrap();
//! let mut clerk = Clerk::new(ClerkConfig::new(vec![1])).unwrap();
//! let now = cluster.now_ms();
//! clerk.submit(now, 7, Operation::put("k", "v")).unwrap();
//! clerk.submit(now, 8, Operation::get("k")).unwrap();
//! let mut done = Vec::new();
//! while done.len() < 2 {
//!     for action in clerk.take_actions() {
//!         match action {
//!             // The Clerk's request ids double as the cluster's request ids here.
//!             ClerkAction::Send { request, server, message } => {
//!                 cluster.request(server, request, message).unwrap();
//!             }
//!             ClerkAction::Completed { op, output } => done.push((op, output)),
//!             ClerkAction::Failed { op, error } => panic!("op {op} failed: {error}"),
//!         }
//!     }
//!     for (_, request, reply) in cluster.take_replies() {
//!         clerk.on_reply(now, request, reply);
//!     }
//! }
//! // Both were in flight together, so the Get may or may not see the Put; once the Put is
//! // done, a new Get must.
//! assert!(done.iter().any(|(op, _)| *op == 7));
//! clerk.submit(now, 9, Operation::get("k")).unwrap();
//! let Some(ClerkAction::Send { request, server, message }) = clerk.take_actions().pop() else {
//!     panic!("the Clerk sends the read");
//! };
//! cluster.request(server, request, message).unwrap();
//! for (_, request, reply) in cluster.take_replies() {
//!     clerk.on_reply(now, request, reply);
//! }
//! assert_eq!(
//!     clerk.take_actions(),
//!     vec![ClerkAction::Completed { op: 9, output: OpOutput::Value(Some(b"v".to_vec())) }]
//! );
//! ```
#![deny(missing_docs)]

mod backoff;
pub mod blocking;
pub mod clerk;
mod client;
pub mod config;
pub mod op;

pub use clerk::{Clerk, SubmitError};
pub use client::{Client, ClientError, ClientOptions, ConnectError};
pub use config::{ClerkConfig, ClerkConfigError};
pub use op::{ClerkAction, ClerkError, OpId, OpOutput, Operation, RequestId};
