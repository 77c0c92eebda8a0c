//! Errors of the QUIC transport.

use std::net::SocketAddr;

use raft_core::NodeId;

/// Why the transport could not start, send, or serve.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The UDP socket could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The configuration is inconsistent (for example a request limit above the buffer budget).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The TLS material is unusable (bad certificate or key, CA missing).
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// Certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Pki(String),
    /// Reading or writing certificate files failed.
    #[error("cannot access {path}: {source}")]
    Files {
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A message for a node this transport does not know.
    #[error("no address for node {0}")]
    UnknownPeer(NodeId),
    /// The queue to this peer is full (it is slow, down, or not reading): the message was
    /// dropped.
    #[error("queue to node {0} full; message dropped")]
    QueueFull(NodeId),
    /// The message does not fit in one frame.
    #[error(transparent)]
    Frame(#[from] crate::frame::FrameError),
    /// The transport is shutting down.
    #[error("transport shut down")]
    Shutdown,
}

/// Why a client request failed.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// No connection to the server could be made (unreachable, or its certificate is not
    /// signed by the cluster's CA).
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// The server.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The connection failed during the request.
    #[error("request to {addr} failed: {reason}")]
    Failed {
        /// The server.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The request or the response does not fit in a frame, or is malformed.
    #[error(transparent)]
    Frame(#[from] crate::frame::FrameError),
    /// TLS setup of the client failed.
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// No answer within the client's timeout.
    #[error("no answer from {addr} within {timeout:?}")]
    Timeout {
        /// The server.
        addr: SocketAddr,
        /// The timeout.
        timeout: std::time::Duration,
    },
}
