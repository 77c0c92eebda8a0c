//! Configuration of a service core.

use raft_core::{Config, ConfigError};

use crate::machine::MachineConfig;

/// How a [`ServiceCore`](crate::ServiceCore) is set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceConfig {
    /// The Raft node's configuration (its seed is the only source of randomness).
    pub raft: Config,
    /// The replicated session rules; identical on every replica.
    pub machine: MachineConfig,
    /// Snapshot and compact the log when the persisted Raft state reaches this many bytes
    /// (`None`: never). The [core's docs](crate::core#snapshots) say how it is counted.
    pub max_raft_state: Option<u64>,
    /// Largest accepted request, in bytes: the encoded log command for writes, the key for
    /// reads. Larger ones get [`KvError::TooLarge`](crate::KvError::TooLarge).
    pub max_request_bytes: usize,
    /// Most proposals waiting to apply at this leader; more get
    /// [`KvError::Busy`](crate::KvError::Busy).
    pub max_pending_proposals: usize,
    /// Most reads waiting at this leader; more get [`KvError::Busy`](crate::KvError::Busy).
    pub max_pending_reads: usize,
}

impl ServiceConfig {
    /// Defaults around `raft`: default session rules, no snapshots, 1 MiB requests, 1024
    /// waiting proposals and 4096 waiting reads.
    pub fn new(raft: Config) -> Self {
        Self {
            raft,
            machine: MachineConfig::default(),
            max_raft_state: None,
            max_request_bytes: 1 << 20,
            max_pending_proposals: 1024,
            max_pending_reads: 4096,
        }
    }

    /// Checks for values that would make the service misbehave.
    pub fn validate(&self) -> Result<(), ServiceConfigError> {
        self.raft.validate()?;
        let m = &self.machine;
        if m.session_timeout_ms == 0 || m.max_sessions == 0 || m.window == 0 {
            return Err(ServiceConfigError::Sessions);
        }
        if self.max_raft_state == Some(0) {
            return Err(ServiceConfigError::ZeroMaxRaftState);
        }
        if self.max_request_bytes == 0
            || self.max_pending_proposals == 0
            || self.max_pending_reads == 0
        {
            return Err(ServiceConfigError::ZeroLimit);
        }
        Ok(())
    }
}

/// A configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceConfigError {
    /// The Raft configuration is invalid.
    #[error(transparent)]
    Raft(#[from] ConfigError),
    /// A session rule is zero.
    #[error("session timeout, session count and window must be at least 1")]
    Sessions,
    /// `max_raft_state` is `Some(0)` (use `None` to turn snapshots off).
    #[error("max_raft_state must be at least 1 byte (None turns snapshots off)")]
    ZeroMaxRaftState,
    /// A request limit is zero, so no request could be served.
    #[error("max_request_bytes, max_pending_proposals and max_pending_reads must be at least 1")]
    ZeroLimit,
}
