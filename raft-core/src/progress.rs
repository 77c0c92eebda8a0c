//! The leader's view of one follower's replication, with flow control.
//!
//! A follower is *probed* (the leader does not know where their logs diverge: one AppendEntries
//! at a time, sent again at each heartbeat until answered), *replicated* (the logs are known to
//! match up to `match_index`: the leader streams entries optimistically, advancing `next_index`
//! as it sends, with a bounded number of messages and of bytes unacknowledged), or *sent a
//! snapshot* (it needs entries the leader has compacted: the snapshot goes one chunk at a time).
//! In every state the entries or chunks in flight to one follower are bounded, so a slow or dead
//! follower costs the leader bounded memory.

use crate::types::LogIndex;

/// Heartbeat intervals a replicating follower may leave appends unacknowledged before the
/// leader presumes them lost and probes again. Counted at heartbeats, so the wait is between two
/// and three intervals: a round trip up to twice the heartbeat interval never makes the leader
/// resend (and pile up) whole windows. A lost append followed by others is found sooner, by the
/// follower's rejection of the gap.
pub const SILENT_INTERVALS_BEFORE_PROBE: u32 = 3;

/// How the leader is currently replicating to a follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicationState {
    /// Searching for the point where the logs match; one message at a time.
    Probe,
    /// Streaming entries after a known match.
    Replicate,
    /// Sending the leader's snapshot, because the follower needs compacted entries.
    Snapshot,
}

/// Where a snapshot transfer to one follower stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotTransfer {
    /// Last index of the snapshot being sent.
    pub last_index: LogIndex,
    /// Offset of the next chunk to send: the follower holds the bytes before it. It moves only
    /// on the follower's answers, so a chunk lost in flight is resent from the same offset.
    pub next_offset: u64,
    /// Whether a chunk is unacknowledged; the next one waits for its answer.
    pub chunk_in_flight: bool,
}

/// An AppendEntries with entries that has not been answered yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct InflightAppend {
    /// Its `prev_log_index`, which a rejection names.
    prev: LogIndex,
    /// Index of its last entry, which an acceptance covers.
    last: LogIndex,
    /// Size of its entries.
    bytes: usize,
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
    /// Every AppendEntries with entries sent and not answered yet, in any state: an answer
    /// (acceptance or rejection) or the retransmission timeout removes it. Going back to probe
    /// after a rejection keeps the others, which are still on their way, so the window bounds
    /// what is actually unanswered, not just what was sent since the last state change.
    inflight: Vec<InflightAppend>,
    /// Total size of the entries in `inflight`.
    inflight_bytes: usize,
    /// In `Snapshot`: the transfer.
    snapshot: Option<SnapshotTransfer>,
    /// Highest read-confirmation round the follower has echoed (see `RaftNode::read_index`).
    pub read_seq_acked: u64,
    /// Whether the follower acknowledged new entries since the last heartbeat. Answers that
    /// prove nothing new (heartbeat acknowledgements at the old match) do not count: a
    /// follower whose appends were lost still answers heartbeats.
    progressed_since_heartbeat: bool,
    /// Consecutive heartbeat intervals with appends outstanding and no progress.
    silent_intervals: u32,
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
            inflight: Vec::new(),
            inflight_bytes: 0,
            snapshot: None,
            read_seq_acked: 0,
            progressed_since_heartbeat: false,
            silent_intervals: 0,
            recent_active: false,
        }
    }

    /// Whether the leader must hold further appends (or chunks) to this follower: a probe or a
    /// snapshot chunk is unanswered, or `max_inflight` appends or `max_inflight_bytes` bytes of
    /// entries are unacknowledged.
    pub fn is_paused(&self, max_inflight: usize, max_inflight_bytes: usize) -> bool {
        match self.state {
            ReplicationState::Probe => self.probe_sent,
            ReplicationState::Replicate => self.window_full(max_inflight, max_inflight_bytes),
            ReplicationState::Snapshot => self.snapshot.is_some_and(|t| t.chunk_in_flight),
        }
    }

    /// Whether `max_inflight` appends or `max_inflight_bytes` bytes of entries are unanswered;
    /// a probe sent then carries no entries.
    pub fn window_full(&self, max_inflight: usize, max_inflight_bytes: usize) -> bool {
        self.inflight.len() >= max_inflight || self.inflight_bytes >= max_inflight_bytes
    }

    /// Number of unacknowledged appends in flight.
    pub fn inflight(&self) -> usize {
        self.inflight.len()
    }

    /// Total size (by [`Entry::size_hint`](crate::Entry::size_hint)) of the entries in
    /// unacknowledged appends.
    pub fn inflight_bytes(&self) -> usize {
        self.inflight_bytes
    }

    /// The snapshot transfer, in `Snapshot` state.
    pub fn snapshot_transfer(&self) -> Option<&SnapshotTransfer> {
        self.snapshot.as_ref()
    }

    /// Records that an append after `prev` ending at `last_sent` (`None` without entries) and
    /// carrying `bytes` of entries was sent (a probe, in `Probe`).
    pub fn on_sent(&mut self, prev: LogIndex, last_sent: Option<LogIndex>, bytes: usize) {
        if let Some(last) = last_sent {
            self.inflight.push(InflightAppend { prev, last, bytes });
            self.inflight_bytes += bytes;
        }
        match self.state {
            ReplicationState::Probe => self.probe_sent = true,
            ReplicationState::Replicate => {
                if let Some(last) = last_sent {
                    self.next_index = last + 1;
                }
            }
            ReplicationState::Snapshot => {}
        }
    }

    /// Records a rejection of the append after `prev`: it is no longer in flight.
    pub fn on_rejected(&mut self, prev: LogIndex) {
        if let Some(k) = self.inflight.iter().position(|a| a.prev == prev) {
            let answered = self.inflight.remove(k);
            self.inflight_bytes -= answered.bytes;
        }
    }

    /// Starts (or restarts) sending the snapshot ending at `last_index`.
    pub fn become_snapshot(&mut self, last_index: LogIndex) {
        self.state = ReplicationState::Snapshot;
        self.probe_sent = false;
        self.clear_inflight();
        self.snapshot = Some(SnapshotTransfer {
            last_index,
            next_offset: 0,
            chunk_in_flight: false,
        });
    }

    /// Records that the chunk at `next_offset` was sent.
    pub fn on_chunk_sent(&mut self) {
        if let Some(transfer) = &mut self.snapshot {
            transfer.chunk_in_flight = true;
        }
    }

    /// Records the follower's answer to a chunk of the snapshot ending at `last_index`: it
    /// expects the chunk at `next_offset` (which may rewind the transfer, after a lost chunk or a
    /// follower restart). Answers about another snapshot are ignored.
    pub fn on_chunk_answer(&mut self, last_index: LogIndex, next_offset: u64) {
        if let Some(transfer) = &mut self.snapshot {
            if transfer.last_index == last_index {
                transfer.next_offset = next_offset;
                transfer.chunk_in_flight = false;
                self.progressed_since_heartbeat = true;
            }
        }
    }

    fn clear_inflight(&mut self) {
        self.inflight.clear();
        self.inflight_bytes = 0;
    }

    /// Records an acknowledgement up to `index`; returns whether `match_index` advanced. During
    /// a snapshot transfer, an acknowledgement short of the snapshot (a late answer to an older
    /// append) does not end the transfer.
    pub fn on_accepted(&mut self, index: LogIndex) -> bool {
        if self.snapshot.is_some_and(|t| index < t.last_index) {
            let advanced = index > self.match_index;
            self.match_index = self.match_index.max(index);
            return advanced;
        }
        let advanced = index > self.match_index;
        if advanced {
            self.match_index = index;
            self.progressed_since_heartbeat = true;
        }
        self.next_index = self.next_index.max(self.match_index + 1);
        let mut freed = 0;
        self.inflight.retain(|a| {
            let answered = a.last <= index;
            if answered {
                freed += a.bytes;
            }
            !answered
        });
        self.inflight_bytes -= freed;
        if self.state != ReplicationState::Replicate {
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
            // Appends do not drive a snapshot transfer.
            ReplicationState::Snapshot => true,
        }
    }

    /// Starts probing at `next_index` (clamped above `match_index`), after a rejection. The
    /// appends still in flight stay counted until answered.
    pub fn become_probe(&mut self, next_index: LogIndex) {
        self.state = ReplicationState::Probe;
        self.next_index = next_index.max(self.match_index + 1);
        self.probe_sent = false;
        self.snapshot = None;
    }

    fn become_replicate(&mut self) {
        self.state = ReplicationState::Replicate;
        self.silent_intervals = 0;
        self.next_index = self.match_index + 1;
        self.probe_sent = false;
        self.snapshot = None;
    }

    /// Called at every leader heartbeat: lifts a probe's pause, falls back to probing when a
    /// replicating follower has had appends outstanding for [`SILENT_INTERVALS_BEFORE_PROBE`]
    /// heartbeat intervals without acknowledging any of them (they were probably lost), and
    /// resends a snapshot chunk that went unanswered for a whole interval. Returns whether
    /// entries (or the chunk) must be resent.
    pub fn on_heartbeat(&mut self) -> bool {
        let heard = std::mem::replace(&mut self.progressed_since_heartbeat, false);
        match self.state {
            ReplicationState::Probe => {
                self.probe_sent = false;
                true
            }
            ReplicationState::Replicate => {
                if self.inflight.is_empty() || heard {
                    self.silent_intervals = 0;
                    return false;
                }
                self.silent_intervals += 1;
                if self.silent_intervals < SILENT_INTERVALS_BEFORE_PROBE {
                    return false;
                }
                // Presumed lost (or their answers were): stop counting them, probe again.
                self.clear_inflight();
                self.become_probe(self.match_index + 1);
                true
            }
            ReplicationState::Snapshot => {
                if let Some(transfer) = &mut self.snapshot {
                    if !heard {
                        transfer.chunk_in_flight = false;
                    }
                }
                true
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
        assert!(!pr.is_paused(4, usize::MAX));
        pr.on_sent(10, Some(10), 100);
        assert!(pr.is_paused(4, usize::MAX));
        assert!(!pr.is_stale_rejection(10));
        assert!(pr.is_stale_rejection(7));
        pr.on_rejected(10);
        pr.become_probe(6);
        assert_eq!(pr.next_index, 6);
        assert_eq!(pr.inflight_bytes(), 0, "the rejected probe is answered");
        assert!(pr.on_accepted(5));
        assert_eq!(pr.state, ReplicationState::Replicate);
        assert_eq!(pr.next_index, 6);
        pr.on_sent(5, Some(8), 300);
        pr.on_sent(8, Some(9), 100);
        assert_eq!(pr.next_index, 10);
        assert_eq!(pr.inflight(), 2);
        assert_eq!(pr.inflight_bytes(), 400);
        assert!(pr.is_paused(2, usize::MAX));
        assert!(pr.is_paused(8, 400), "the byte bound pauses too");
        assert!(!pr.is_paused(8, 401));
        pr.on_accepted(8);
        assert_eq!(pr.inflight(), 1);
        assert_eq!(pr.inflight_bytes(), 100);
        // Acknowledged something during this interval: keep streaming.
        assert!(!pr.on_heartbeat());
        // Answering heartbeats at the old match is not progress: after three silent intervals
        // the append ending at 9 is presumed lost, so probe again from the match.
        for _ in 1..SILENT_INTERVALS_BEFORE_PROBE {
            pr.on_accepted(8);
            assert!(
                !pr.on_heartbeat(),
                "a silent interval may be a slow round trip"
            );
        }
        pr.on_accepted(8);
        assert!(pr.on_heartbeat());
        assert_eq!(pr.state, ReplicationState::Probe);
        assert_eq!(pr.next_index, 9);
        assert_eq!(pr.inflight_bytes(), 0);
    }

    #[test]
    fn going_back_after_a_rejection_keeps_counting_appends_still_in_flight() {
        let mut pr = Progress::new(0);
        pr.on_accepted(0);
        for (prev, last) in [(0, 10), (10, 20), (20, 30)] {
            pr.on_sent(prev, Some(last), 100);
        }
        // The append after 10 overtook the one after 0 and was rejected: go back.
        pr.on_rejected(10);
        pr.become_probe(1);
        assert_eq!((pr.inflight(), pr.inflight_bytes()), (2, 200));
        // The first one arrives after all and is accepted; the one after 20 is still out.
        pr.on_accepted(10);
        assert_eq!(pr.state, ReplicationState::Replicate);
        assert_eq!((pr.inflight(), pr.inflight_bytes()), (1, 100));
        assert!(
            pr.is_paused(8, 100),
            "the old append still fills the byte window"
        );
        assert!(!pr.is_paused(8, 101));
    }

    #[test]
    fn snapshot_transfer_is_stop_and_wait_and_resends_after_silence() {
        let mut pr = Progress::new(100);
        pr.become_snapshot(90);
        assert!(!pr.is_paused(4, usize::MAX));
        pr.on_chunk_sent();
        assert!(pr.is_paused(4, usize::MAX));
        // An answer about another snapshot changes nothing.
        pr.on_chunk_answer(80, 0);
        assert!(pr.is_paused(4, usize::MAX));
        pr.on_chunk_answer(90, 10);
        assert!(!pr.is_paused(4, usize::MAX));
        pr.on_chunk_sent();
        assert!(pr.on_heartbeat(), "answered during the interval: send on");
        assert!(pr.is_paused(4, usize::MAX));
        assert!(pr.on_heartbeat());
        assert!(
            !pr.is_paused(4, usize::MAX),
            "silent for an interval: resend"
        );
        // The follower lost its partial copy: the transfer rewinds.
        pr.on_chunk_answer(90, 0);
        assert_eq!(pr.snapshot_transfer().map(|t| t.next_offset), Some(0));
        assert!(
            pr.is_stale_rejection(5),
            "appends do not drive a snapshot transfer"
        );
        // Installed: replicate after the snapshot.
        pr.on_accepted(90);
        assert_eq!(pr.state, ReplicationState::Replicate);
        assert_eq!(pr.next_index, 91);
        assert!(pr.snapshot_transfer().is_none());
    }
}
