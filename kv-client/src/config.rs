//! Configuration of a Clerk.

use kv_service::NodeId;

/// How a [`Clerk`](crate::Clerk) behaves. Times are in milliseconds of the driver's clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClerkConfig {
    /// The servers, in the order the Clerk rotates through them.
    pub servers: Vec<NodeId>,
    /// Most operations in flight at once (reads and writes). Writes are also kept within this
    /// many sequence numbers of the oldest unanswered one, so it must not exceed the servers'
    /// [`MachineConfig::window`](kv_service::MachineConfig::window).
    pub window: usize,
    /// How long to wait for an answer before trying the next server.
    pub request_timeout_ms: u64,
    /// First retry delay once backing off; doubles with each failure.
    pub backoff_min_ms: u64,
    /// Largest retry delay.
    pub backoff_max_ms: u64,
    /// How long the Clerk trusts its session after the last request that proved it alive was
    /// sent. Past that, with no write in flight, it registers a new session before the next
    /// write rather than risk an expired one. Set it below the servers'
    /// [`MachineConfig::session_timeout_ms`](kv_service::MachineConfig::session_timeout_ms),
    /// with a margin for clock differences between clients and servers.
    pub session_timeout_ms: u64,
    /// While no write is in flight, refresh the session this often (`None`: never; an idle
    /// Clerk then lets its session lapse and registers a new one when it writes again).
    pub keepalive_interval_ms: Option<u64>,
    /// Seed of the retry jitter, the Clerk's only randomness.
    pub seed: u64,
}

impl ClerkConfig {
    /// Defaults for `servers`: 8 operations in flight, 1 s request timeout, backoff from 10 ms
    /// to 1 s, 30 s session trust (half the servers' default timeout), keep-alive every 10 s,
    /// seed 0.
    pub fn new(servers: Vec<NodeId>) -> Self {
        Self {
            servers,
            window: 8,
            request_timeout_ms: 1_000,
            backoff_min_ms: 10,
            backoff_max_ms: 1_000,
            session_timeout_ms: 30_000,
            keepalive_interval_ms: Some(10_000),
            seed: 0,
        }
    }

    /// Checks for values that would make the Clerk misbehave.
    pub fn validate(&self) -> Result<(), ClerkConfigError> {
        if self.servers.is_empty() {
            return Err(ClerkConfigError::NoServers);
        }
        let mut sorted = self.servers.clone();
        sorted.sort_unstable();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(ClerkConfigError::DuplicateServer(w[0]));
        }
        if self.window == 0 {
            return Err(ClerkConfigError::ZeroWindow);
        }
        if self.request_timeout_ms == 0 || self.session_timeout_ms == 0 {
            return Err(ClerkConfigError::ZeroTimeout);
        }
        if self.backoff_min_ms == 0 || self.backoff_max_ms < self.backoff_min_ms {
            return Err(ClerkConfigError::Backoff {
                min: self.backoff_min_ms,
                max: self.backoff_max_ms,
            });
        }
        if let Some(interval) = self.keepalive_interval_ms {
            if interval == 0 || interval >= self.session_timeout_ms {
                return Err(ClerkConfigError::KeepAlive {
                    interval,
                    session_timeout: self.session_timeout_ms,
                });
            }
        }
        Ok(())
    }
}

/// A configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClerkConfigError {
    /// The server list is empty.
    #[error("no servers")]
    NoServers,
    /// A server is listed twice.
    #[error("server {0} is listed twice")]
    DuplicateServer(NodeId),
    /// The window is zero, so nothing could be sent.
    #[error("window must be at least 1")]
    ZeroWindow,
    /// A timeout is zero.
    #[error("request and session timeouts must be at least 1 ms")]
    ZeroTimeout,
    /// The backoff range is empty or starts at zero.
    #[error("backoff range {min}..={max} ms is empty or starts at 0")]
    Backoff {
        /// The configured minimum.
        min: u64,
        /// The configured maximum.
        max: u64,
    },
    /// The keep-alive interval is zero or not below the session timeout.
    #[error("keep-alive interval {interval} ms must be at least 1 and below the session timeout {session_timeout} ms")]
    KeepAlive {
        /// The configured interval.
        interval: u64,
        /// The configured session timeout.
        session_timeout: u64,
    },
}
