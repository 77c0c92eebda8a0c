//! The leader's view of one follower's replication, with flow control.
//!
//! A follower is either *probed* (the leader does not know where their logs diverge: one
//! AppendEntries at a time, sent again at each heartbeat until answered) or *replicated* (the
//! logs are known to match up to `match_index`: the leader streams entries optimistically,
//! advancing `next_index` as it sends, with at most `max_inflight` messages unacknowledged).

use std::collections::VecDeque;

use crate::types::LogIndex;

/// How the leader is currently replicating to a follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicationState {
    /// Searching for the point where the logs match; one message at a time.
    Probe,
    /// Streaming entries after a known match.
    Replicate,
}

/// Replication progress of one follower, as tracked by the leader.
#[derive(Clone, Debug)]
pub struct Progress {
    /// Highest index known to be replicated (and durable) on the follower.
    pub match_index: LogIndex,
    /// Index of the next entry to send.
    pub next_index: LogIndex,
    /// The replication mode.
    pub state: ReplicationState,
    /// In `Probe`: a probe is outstanding, send nothing more until it is answered or the next
    /// heartbeat.
    probe_sent: bool,
    /// In `Replicate`: last index of each unacknowledged AppendEntries, oldest first.
    inflight: VecDeque<LogIndex>,
    /// Whether the follower acknowledged new entries since the last heartbeat. Answers that
    /// prove nothing new (heartbeat acknowledgements at the old match) do not count: a
    /// follower whose appends were lost still answers heartbeats.
    progressed_since_heartbeat: bool,
    /// Whether the follower answered anything during the current check-quorum window.
    pub recent_active: bool,
}

impl Progress {
    /// A fresh progress for a new leader whose last log index is `last_index`: probe from the
    /// end of the leader's log.
    pub fn new(last_index: LogIndex) -> Self {
        Self {
            match_index: 0,
            next_index: last_index + 1,
            state: ReplicationState::Probe,
            probe_sent: false,
            inflight: VecDeque::new(),
            progressed_since_heartbeat: false,
            recent_active: false,
        }
    }

    /// Whether the leader must hold further appends to this follower.
    pub fn is_paused(&self, max_inflight: usize) -> bool {
        match self.state {
            ReplicationState::Probe => self.probe_sent,
            ReplicationState::Replicate => self.inflight.len() >= max_inflight,
        }
    }

    /// Number of unacknowledged appends in flight.
    pub fn inflight(&self) -> usize {
        self.inflight.len()
    }

    /// Records that an append ending at `last_sent` (or a probe, in `Probe`) was sent.
    pub fn on_sent(&mut self, last_sent: Option<LogIndex>) {
        match self.state {
            ReplicationState::Probe => self.probe_sent = true,
            ReplicationState::Replicate => {
                if let Some(last) = last_sent {
                    self.next_index = last + 1;
                    self.inflight.push_back(last);
                }
            }
        }
    }

    /// Records an acknowledgement up to `index`; returns whether `match_index` advanced.
    pub fn on_accepted(&mut self, index: LogIndex) -> bool {
        let advanced = index > self.match_index;
        if advanced {
            self.match_index = index;
            self.progressed_since_heartbeat = true;
        }
        self.next_index = self.next_index.max(self.match_index + 1);
        while self.inflight.front().is_some_and(|&last| last <= index) {
            self.inflight.pop_front();
        }
        if self.state == ReplicationState::Probe {
            self.become_replicate();
        }
        advanced
    }

    /// Whether a rejection of an append whose previous index was `prev_log_index` is stale
    /// (answers a message older than the current state) and must be ignored.
    pub fn is_stale_rejection(&self, prev_log_index: LogIndex) -> bool {
        match self.state {
            ReplicationState::Replicate => prev_log_index < self.match_index,
            ReplicationState::Probe => prev_log_index + 1 != self.next_index,
        }
    }

    /// Starts probing at `next_index` (clamped above `match_index`).
    pub fn become_probe(&mut self, next_index: LogIndex) {
        self.state = ReplicationState::Probe;
        self.next_index = next_index.max(self.match_index + 1);
        self.probe_sent = false;
        self.inflight.clear();
    }

    fn become_replicate(&mut self) {
        self.state = ReplicationState::Replicate;
        self.next_index = self.match_index + 1;
        self.probe_sent = false;
        self.inflight.clear();
    }

    /// Called at every leader heartbeat: lifts a probe's pause, and falls back to probing when
    /// a replicating follower has had appends outstanding for a whole heartbeat interval without
    /// acknowledging any of them (they were probably lost). Returns whether entries must be
    /// resent.
    pub fn on_heartbeat(&mut self) -> bool {
        let heard = std::mem::replace(&mut self.progressed_since_heartbeat, false);
        match self.state {
            ReplicationState::Probe => {
                self.probe_sent = false;
                true
            }
            ReplicationState::Replicate => {
                if !self.inflight.is_empty() && !heard {
                    self.become_probe(self.match_index + 1);
                    true
                } else {
                    false
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_then_replicate_then_fall_back() {
        let mut pr = Progress::new(10);
        assert_eq!(pr.next_index, 11);
        assert!(!pr.is_paused(4));
        pr.on_sent(Some(10));
        assert!(pr.is_paused(4));
        assert!(!pr.is_stale_rejection(10));
        assert!(pr.is_stale_rejection(7));
        pr.become_probe(6);
        assert_eq!(pr.next_index, 6);
        assert!(pr.on_accepted(5));
        assert_eq!(pr.state, ReplicationState::Replicate);
        assert_eq!(pr.next_index, 6);
        pr.on_sent(Some(8));
        pr.on_sent(Some(9));
        assert_eq!(pr.next_index, 10);
        assert_eq!(pr.inflight(), 2);
        assert!(pr.is_paused(2));
        pr.on_accepted(8);
        assert_eq!(pr.inflight(), 1);
        // Acknowledged something during this interval: keep streaming.
        assert!(!pr.on_heartbeat());
        // Answering heartbeats at the old match is not progress: the append ending at 9 is
        // presumed lost, so probe again from the match.
        pr.on_accepted(8);
        assert!(pr.on_heartbeat());
        assert_eq!(pr.state, ReplicationState::Probe);
        assert_eq!(pr.next_index, 9);
    }
}
