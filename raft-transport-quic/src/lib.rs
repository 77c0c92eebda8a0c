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
//! - **Authentication**: every node holds a certificate from the cluster CA ([`pki`]). A peer
//!   must present one naming the node id it claims; a connection without one, or from another
//!   CA, is refused and logged, and a message whose `from` differs from the connection's node
//!   is dropped. Clients (ALPN `raft-client/1`) verify the node against the CA.
//! - **Bad input** (oversized, truncated or garbled frames, unknown message types) closes the
//!   offending stream and connection with a logged error; the node keeps serving everyone else.
//! - [`QuicNode::shutdown`] drains queued messages before closing.
#![deny(missing_docs)]

mod error;
pub mod frame;
mod node;
mod peer;
pub mod pki;
mod rpc;
pub mod tls;

pub use error::{RpcError, TransportError};
pub use node::{QuicConfig, QuicNode};
pub use peer::BULK_THRESHOLD;
pub use rpc::{RequestHandler, RpcClient};
