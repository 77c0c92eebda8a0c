//! [`ClientLimits`]: what a node grants the clients (and anyone else who is not a member) that
//! connect to it, so that no mix of hostile connections can exhaust its memory or lock its
//! peers out.
//!
//! What clients can make a node hold is bounded by these limits:
//! `16 MiB + buffer_bytes + max_connections × (connection_window_bytes +
//! max_concurrent_requests × 4 KiB + 128 KiB)`: the client budget, and per connection (or
//! handshake) its QUIC receive buffers, the first 4 KiB of each request in progress (outside the
//! budget) and its state, over the process's base. With the defaults that is 192 MiB; a node
//! with the defaults stays below 256 MiB however clients behave (measured under the worst
//! attacks we built: under 80 MiB; see `docs/faults.md`).

use std::time::Duration;

use crate::error::TransportError;

/// Limits on client connections and requests. Every field has a documented default
/// ([`Default`]); a service exposes them as flags.
///
/// Connections from a member's configured address are not counted here: each member address
/// has a small reserve of its own (4 connections), so clients cannot lock the peers out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientLimits {
    /// Connections open or in their handshake at once, from addresses that are not members'
    /// (default 256). Further attempts are refused at once.
    pub max_connections: usize,
    /// Of those, connections from one source address (IPv6: one /64) (default 16).
    pub max_connections_per_ip: usize,
    /// Requests in progress at once on one connection (default 16): QUIC's stream limit, so a
    /// client simply waits for a slot. Clients can open no other kind of stream.
    pub max_concurrent_requests: u32,
    /// Largest request accepted, in bytes (default 1 MiB). A larger announced length resets the
    /// stream before anything is read.
    pub max_request_bytes: usize,
    /// Bytes of requests and responses the node holds for all clients together (default
    /// 64 MiB). A request draws its announced length beyond its first 4 KiB when its header
    /// arrives (its buffer then grows only as bytes arrive) and keeps it until its answer is
    /// acknowledged; a request the budget cannot cover at once is refused (stream code 5, "busy":
    /// retry), while requests of 4 KiB or less never depend on it. A response larger than its
    /// request is refused likewise. Must be at least `max_request_bytes`.
    pub buffer_bytes: usize,
    /// QUIC receive window of a client connection, in bytes (default 256 KiB): what one
    /// connection can make the node buffer before the node reads it.
    pub connection_window_bytes: u32,
    /// Time a client has to send a whole request once it opened its stream (default 5 s).
    pub read_timeout: Duration,
    /// Time the node has to answer a request, writing included (default 10 s); then the stream
    /// is reset.
    pub handler_timeout: Duration,
    /// A client connection with no request in progress for this long is closed (default 30 s).
    pub idle_timeout: Duration,
}

impl Default for ClientLimits {
    fn default() -> Self {
        Self {
            max_connections: 256,
            max_connections_per_ip: 16,
            max_concurrent_requests: 16,
            max_request_bytes: 1 << 20,
            buffer_bytes: 64 << 20,
            connection_window_bytes: 256 << 10,
            read_timeout: Duration::from_secs(5),
            handler_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
        }
    }
}

impl ClientLimits {
    /// Checks that the limits can be honoured together.
    pub(crate) fn validate(&self) -> Result<(), TransportError> {
        let invalid = |what: &str| Err(TransportError::Config(what.to_string()));
        if self.max_connections == 0 || self.max_connections_per_ip == 0 {
            return invalid("client connection limits must be at least 1");
        }
        if self.max_concurrent_requests == 0 {
            return invalid("max_concurrent_requests must be at least 1");
        }
        if self.max_request_bytes > self.buffer_bytes {
            return invalid(
                "max_request_bytes exceeds buffer_bytes: such a request could never be read",
            );
        }
        if u32::try_from(self.max_request_bytes).is_err() {
            return invalid("max_request_bytes must fit a frame's 32-bit length");
        }
        Ok(())
    }
}
