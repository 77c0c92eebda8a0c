//! Static configuration of a node.

use std::hash::{BuildHasher, Hasher};

use crate::error::ConfigError;
use crate::types::NodeId;

/// A seed that differs at every call: the keys of the standard library's `RandomState` come
/// from the operating system once per thread and change with every instance. Only
/// [`Config::new`] uses it, as a default; the protocol itself never draws randomness but from
/// the seed it is given.
fn fresh_seed() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0x5EED);
    hasher.finish()
}

/// How a node is set up. Timeouts are counted in ticks: the driver calls
/// [`RaftNode::tick`](crate::RaftNode::tick) at a fixed interval of its choosing.
///
/// ```
/// let config = raft_core::Config::new(1, vec![1, 2, 3]);
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// This node's id; must appear in `voters`.
    pub id: NodeId,
    /// Every voting member of the cluster, this node included.
    pub voters: Vec<NodeId>,
    /// Lower bound (inclusive) of the randomized election timeout, in ticks.
    pub election_timeout_min: u32,
    /// Upper bound (exclusive) of the randomized election timeout, in ticks.
    pub election_timeout_max: u32,
    /// Interval between leader heartbeats, in ticks. Must be below `election_timeout_min`.
    pub heartbeat_interval: u32,
    /// Soft limit on the total size of the entries in one AppendEntries message, in bytes.
    /// A single larger entry is still sent on its own.
    pub max_append_bytes: usize,
    /// Maximum number of AppendEntries messages with entries in flight to one follower while
    /// replicating optimistically.
    pub max_inflight_appends: usize,
    /// Bound on the total size of entries in unacknowledged AppendEntries to one follower, in
    /// bytes (by [`Entry::size_hint`](crate::Entry::size_hint)). With `max_inflight_appends`
    /// it caps what a slow follower costs the leader.
    pub max_inflight_bytes: usize,
    /// Size of one InstallSnapshot chunk, in bytes. Chunks go one at a time, and heartbeats and
    /// elections never wait behind more than one.
    pub snapshot_chunk_bytes: usize,
    /// Pre-vote (Raft thesis §9.6): before raising its term, a node asks whether a majority would
    /// vote for it. A node that rejoins after a partition, or that cannot win, then never bumps
    /// terms and never deposes a healthy leader.
    pub pre_vote: bool,
    /// Check-quorum: a leader that has not heard from a majority within `election_timeout_max`
    /// ticks steps down, and a follower that heard from its leader within
    /// `election_timeout_min` ticks ignores requests to vote in a later term (the leader's lease).
    pub check_quorum: bool,
    /// Lease reads (Raft thesis §6.4.1): a leader serves a read without a confirmation round
    /// while its lease holds, that is for `election_timeout_min` ticks (minus a margin for clock
    /// drift, see [`Config::lease_ticks`]) after a heartbeat round a majority acknowledged.
    ///
    /// **Clock assumption**: every node's tick runs at the same rate within that margin. The
    /// lease rests on check-quorum's rule that a follower which heard from its leader within
    /// `election_timeout_min` ticks does not vote in a later term, and on a restarted node
    /// granting no vote for its first `election_timeout_min` ticks; a node whose clock runs fast
    /// enough to break the margin can make a deposed leader serve a stale read. Requires
    /// `check_quorum`. Off by default: without it, reads always take a confirmation round, which
    /// relies on no clock at all.
    pub lease_reads: bool,
    /// Seed of the node's random number generator (election timeouts, and the point from which
    /// forwarded reads are numbered). Two nodes with the same seed and id behave identically
    /// given the same inputs. Every start of a node needs a seed of its own ([`Config::new`]
    /// draws one; a simulator draws them from its own seeded generator): forwarded reads of two
    /// starts with the same seed are numbered alike, and an answer delayed across a restart
    /// could then release a read of the new start with an old read index.
    pub seed: u64,
}

impl Config {
    /// A configuration with the defaults: election timeout 10-20 ticks, heartbeat every 2
    /// ticks, 1 MiB per AppendEntries, 64 appends or 8 MiB of entries in flight per follower,
    /// 1 MiB snapshot chunks, pre-vote and check-quorum on, and a seed that differs at every
    /// call (from the standard library's per-process random hasher keys), so two starts of a
    /// node never number their forwarded reads alike. Set `seed` for a reproducible run.
    pub fn new(id: NodeId, voters: Vec<NodeId>) -> Self {
        Self {
            id,
            voters,
            election_timeout_min: 10,
            election_timeout_max: 20,
            heartbeat_interval: 2,
            max_append_bytes: 1 << 20,
            max_inflight_appends: 64,
            max_inflight_bytes: 8 << 20,
            snapshot_chunk_bytes: 1 << 20,
            pre_vote: true,
            check_quorum: true,
            lease_reads: false,
            seed: fresh_seed() ^ id,
        }
    }

    /// How long a leader's read lease lasts after the heartbeat round that established it, in
    /// ticks: `election_timeout_min` minus a margin of two ticks and a tenth (tick phase and
    /// clock drift between nodes).
    pub fn lease_ticks(&self) -> u32 {
        self.election_timeout_min
            .saturating_sub(2 + self.election_timeout_min / 10)
    }

    /// Checks the configuration for mistakes that would make the protocol misbehave.
    ///
    /// ```
    /// let a = raft_core::Config::new(1, vec![1, 2, 3]);
    /// let b = raft_core::Config::new(1, vec![1, 2, 3]);
    /// assert_ne!(a.seed, b.seed, "every start gets its own seed");
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.voters.is_empty() {
            return Err(ConfigError::NoVoters);
        }
        if !self.voters.contains(&self.id) {
            return Err(ConfigError::SelfNotVoter(self.id));
        }
        let mut sorted = self.voters.clone();
        sorted.sort_unstable();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(ConfigError::DuplicateVoter(w[0]));
        }
        if self.election_timeout_min == 0 || self.election_timeout_max <= self.election_timeout_min
        {
            return Err(ConfigError::ElectionTimeout {
                min: self.election_timeout_min,
                max: self.election_timeout_max,
            });
        }
        if self.heartbeat_interval == 0 || self.heartbeat_interval >= self.election_timeout_min {
            return Err(ConfigError::HeartbeatInterval {
                heartbeat: self.heartbeat_interval,
                election_min: self.election_timeout_min,
            });
        }
        if self.max_inflight_appends == 0 || self.max_inflight_bytes == 0 {
            return Err(ConfigError::ZeroInflight);
        }
        if self.snapshot_chunk_bytes == 0 {
            return Err(ConfigError::ZeroSnapshotChunk);
        }
        if self.lease_reads && !self.check_quorum {
            return Err(ConfigError::LeaseWithoutCheckQuorum);
        }
        Ok(())
    }
}
