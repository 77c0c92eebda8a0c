//! # raft-transport-quic
//!
//! raft-core's [`Transport`](raft_core::Transport) over QUIC ([quinn]), with mutual TLS between
//! the nodes of a cluster, plus a request/response service for clients on the same UDP port.
//!
//! - **One connection per peer**, re-established with capped exponential backoff when the peer
//!   is down. Messages are postcard values in length-prefixed [`frame`]s with a size limit.
//! - **No head-of-line blocking**: small messages and large ones (snapshot chunks, big batches)
//!   travel on separate QUIC streams, the small ones at a higher priority.
//! - **Bounded memory**: each peer has a bounded queue (messages and bytes); when a peer is slow
//!   or stops reading, `send` drops instead of queueing (Raft retransmits). Received messages
//!   wait in a bounded queue too.
//! - **Authentication**: every node and every client holds a certificate from the cluster CA
//!   ([`pki`]); a connection without one, or with one from another CA, is refused in the TLS
//!   handshake. A peer's certificate must name a member (or the connection is closed at once)
//!   and its streams must introduce that member; a message whose `from` differs from the
//!   connection's member is dropped. Clients (ALPN `raft-client/1`) verify the node against
//!   the CA.
//! - **Hostile clients** cannot exhaust a node: connections are limited in total and per
//!   source address (members' addresses have a reserve of their own), requests in number per
//!   connection, in size, and in the bytes held for all clients together, and each request has
//!   deadlines to arrive and to be answered; idle connections are closed ([`ClientLimits`]).
//! - **Bad input** (oversized, truncated or garbled frames, unknown message types) closes the
//!   offending stream and connection; the node keeps serving everyone else.
//! - **Observable**: every drop and refusal is counted per peer and reason
//!   ([`QuicNode::stats`]) and logged at most once per peer and reason per interval, with the
//!   count.
//! - [`QuicNode::shutdown`] drains queued messages before closing, within its deadline.
//!
//! `docs/faults.md` lists the transport faults a node survives, detects and refuses, or cannot
//! detect.
#![deny(missing_docs)]

mod admission;
mod budget;
mod client;
mod error;
pub mod frame;
mod inbound;
mod limits;
mod node;
mod peer;
pub mod pki;
mod rpc;
pub mod socket;
mod stats;
pub mod tls;

pub use client::RpcClient;
pub use error::{RpcError, TransportError};
pub use limits::ClientLimits;
pub use node::{QuicConfig, QuicNode};
pub use peer::BULK_THRESHOLD;
pub use rpc::RequestHandler;
pub use stats::{DropReason, Refusal, TransportStats};
