//! The [`Transport`] trait that carries messages between nodes.

use async_trait::async_trait;

use crate::message::Message;

/// Moves [`Message`]s between the nodes of a cluster.
///
/// # Contract
/// - **At most once, best effort**: a sent message is delivered zero or one time. The protocol
///   tolerates loss; a transport drops messages rather than queueing them without bound.
/// - **Unordered**: messages may arrive in any order, also between the same pair of nodes.
/// - **Authenticated**: a received message's `from` is the node that sent it; a transport drops
///   messages whose claimed sender does not match the peer's identity.
/// - **Non-blocking send**: [`send`](Transport::send) only queues; it never waits for the network.
///
/// Implementations live in `raft-transport-quic`; the simulator in `raft-tests` models one.
#[async_trait]
pub trait Transport: Send + Sync {
    /// The implementation's error type.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Queues `message` for delivery to `message.to`. `Ok` means queued, not delivered; an
    /// error means it was dropped at once (unknown peer, queue full, shut down).
    fn send(&self, message: Message) -> Result<(), Self::Error>;

    /// Waits for the next message addressed to this node; `None` once the transport has shut
    /// down.
    async fn recv(&self) -> Option<Message>;
}
