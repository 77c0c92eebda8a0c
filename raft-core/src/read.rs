//! Bookkeeping of ReadIndex reads (Raft thesis §6.4): reads waiting for a leadership
//! confirmation round, the round in flight, confirmed reads waiting for the state machine to
//! catch up, and (on followers) reads forwarded to the leader.
//!
//! The protocol decisions (when a round may start, what confirms it) live in
//! [`RaftNode`](crate::RaftNode); this module only keeps the queues consistent.

use std::collections::BTreeMap;

use crate::action::ReadId;
use crate::types::{LogIndex, NodeId, Term};

/// A read waiting for the leader to confirm its leadership.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PendingRead {
    /// The requester's id for the read.
    pub id: ReadId,
    /// The follower that forwarded the read, or `None` for a read of the leader's own service.
    pub from: Option<NodeId>,
}

/// A confirmation round: one heartbeat exchange that, once a majority echoes `seq`, proves the
/// leader still led when `index` was its commit index.
#[derive(Debug)]
struct ReadRound {
    seq: u64,
    index: LogIndex,
    reads: Vec<PendingRead>,
}

/// A read this follower forwarded to its leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Forwarded {
    /// The service's id for the read.
    id: ReadId,
    /// The leader asked, and the term it was asked in: only its answer in that term counts.
    leader: NodeId,
    term: Term,
    /// Ticks left before the read times out.
    ticks: u32,
}

/// The read queues of one node.
#[derive(Debug)]
pub(crate) struct ReadTracker {
    /// The latest round started by this node (rounds are numbered from 1; 0 means none).
    seq: u64,
    /// Reads that arrived after the round in flight started: they wait for the next round.
    unconfirmed: Vec<PendingRead>,
    /// The round in flight. One at a time: reads arriving meanwhile share the next round, so
    /// the confirmation traffic is one heartbeat exchange per round trip, whatever the read rate.
    round: Option<ReadRound>,
    /// Confirmed local reads, with their read index, waiting until it is applied.
    ready: Vec<(ReadId, LogIndex)>,
    /// Follower: reads forwarded to the leader, by forwarding id.
    forwarded: BTreeMap<u64, Forwarded>,
    /// The next forwarding id.
    next_forward_id: u64,
}

impl ReadTracker {
    /// Empty queues; forwarding ids start at `first_forward_id`, which should differ between
    /// two starts of the node (the node draws it from its seeded generator).
    pub fn new(first_forward_id: u64) -> Self {
        Self {
            seq: 0,
            unconfirmed: Vec::new(),
            round: None,
            ready: Vec::new(),
            forwarded: BTreeMap::new(),
            next_forward_id: first_forward_id,
        }
    }

    /// The latest round number, carried by every AppendEntries the leader sends.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Starts a round without reads (a lease-renewing heartbeat); returns its number.
    pub fn bump(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Queues a read for the next round.
    pub fn queue(&mut self, read: PendingRead) {
        self.unconfirmed.push(read);
    }

    /// Whether [`start_round`](Self::start_round) would start a round now.
    pub fn can_start_round(&self) -> bool {
        self.round.is_none() && !self.unconfirmed.is_empty()
    }

    /// Starts a round for the queued reads, at read index `commit_index`, unless one is in
    /// flight or none waits. Returns the new round's number.
    pub fn start_round(&mut self, commit_index: LogIndex) -> Option<u64> {
        if self.round.is_some() || self.unconfirmed.is_empty() {
            return None;
        }
        self.seq += 1;
        self.round = Some(ReadRound {
            seq: self.seq,
            index: commit_index,
            reads: std::mem::take(&mut self.unconfirmed),
        });
        Some(self.seq)
    }

    /// Ends the round in flight if a majority has echoed a round at least as recent
    /// (`quorum_seq`), returning its reads with their read index.
    pub fn confirm(&mut self, quorum_seq: u64) -> Vec<(PendingRead, LogIndex)> {
        match &self.round {
            Some(round) if round.seq <= quorum_seq => {}
            _ => return Vec::new(),
        }
        let Some(round) = self.round.take() else {
            return Vec::new();
        };
        round.reads.into_iter().map(|r| (r, round.index)).collect()
    }

    /// Removes every read not yet confirmed (leadership was lost).
    pub fn take_unconfirmed(&mut self) -> Vec<PendingRead> {
        let mut reads = self.round.take().map(|r| r.reads).unwrap_or_default();
        reads.append(&mut self.unconfirmed);
        reads
    }

    /// Records a confirmed local read, to be released once `index` is applied.
    pub fn push_ready(&mut self, id: ReadId, index: LogIndex) {
        self.ready.push((id, index));
    }

    /// Removes and returns the confirmed reads whose index is at most `applied`.
    pub fn take_ready(&mut self, applied: LogIndex) -> Vec<(ReadId, LogIndex)> {
        let (now, later): (Vec<_>, Vec<_>) = self
            .ready
            .drain(..)
            .partition(|&(_, index)| index <= applied);
        self.ready = later;
        now
    }

    /// Records read `id` forwarded to `leader` in `term`, timing out after `ticks`; returns
    /// the forwarding id to put in the request.
    pub fn forward(&mut self, id: ReadId, leader: NodeId, term: Term, ticks: u32) -> u64 {
        let wire = self.next_forward_id;
        self.next_forward_id = self.next_forward_id.wrapping_add(1);
        let forwarded = Forwarded {
            id,
            leader,
            term,
            ticks,
        };
        self.forwarded.insert(wire, forwarded);
        wire
    }

    /// Takes the forwarded read that `leader`'s answer in `term` with forwarding id `wire`
    /// answers, returning the service's id; `None` for a duplicate, late or foreign answer
    /// (another node's, another term's, or one to an earlier incarnation's request).
    pub fn answer_forwarded(&mut self, wire: u64, leader: NodeId, term: Term) -> Option<ReadId> {
        let forwarded = self.forwarded.get(&wire)?;
        if forwarded.leader != leader || forwarded.term != term {
            return None;
        }
        self.forwarded.remove(&wire).map(|f| f.id)
    }

    /// Counts one tick for forwarded reads; returns those that timed out.
    pub fn tick_forwarded(&mut self) -> Vec<ReadId> {
        let mut expired = Vec::new();
        self.forwarded.retain(|_, forwarded| {
            forwarded.ticks = forwarded.ticks.saturating_sub(1);
            if forwarded.ticks == 0 {
                expired.push(forwarded.id);
            }
            forwarded.ticks > 0
        });
        expired
    }

    /// Number of reads not yet released, in every queue.
    pub fn pending(&self) -> usize {
        self.unconfirmed.len()
            + self.round.as_ref().map_or(0, |r| r.reads.len())
            + self.ready.len()
            + self.forwarded.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(id: ReadId) -> PendingRead {
        PendingRead { id, from: None }
    }

    #[test]
    fn reads_share_rounds_one_at_a_time() {
        let mut t = ReadTracker::new(0);
        assert_eq!(t.start_round(5), None, "nothing queued");
        t.queue(local(1));
        t.queue(local(2));
        assert_eq!(t.start_round(5), Some(1));
        t.queue(local(3));
        assert_eq!(t.start_round(6), None, "one round in flight at a time");
        assert!(t.confirm(0).is_empty());
        let confirmed = t.confirm(1);
        assert_eq!(confirmed, vec![(local(1), 5), (local(2), 5)]);
        assert_eq!(t.start_round(7), Some(2));
        assert_eq!(t.take_unconfirmed(), vec![local(3)]);
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn ready_reads_wait_for_apply_and_forwarded_reads_time_out() {
        let mut t = ReadTracker::new(1000);
        t.push_ready(1, 10);
        t.push_ready(2, 12);
        assert_eq!(t.take_ready(11), vec![(1, 10)]);
        assert_eq!(t.take_ready(12), vec![(2, 12)]);
        let first = t.forward(7, 2, 3, 2);
        let second = t.forward(8, 2, 3, 5);
        assert_ne!(first, second);
        assert!(t.tick_forwarded().is_empty());
        assert_eq!(t.tick_forwarded(), vec![7]);
        assert_eq!(
            t.answer_forwarded(second, 3, 3),
            None,
            "not the leader asked"
        );
        assert_eq!(
            t.answer_forwarded(second, 2, 4),
            None,
            "not the term asked in"
        );
        assert_eq!(t.answer_forwarded(second, 2, 3), Some(8));
        assert_eq!(
            t.answer_forwarded(second, 2, 3),
            None,
            "a duplicate is not pending"
        );
    }

    #[test]
    fn forwarding_ids_of_two_incarnations_do_not_collide() {
        // Two starts of one node draw different first ids; an answer to the first
        // incarnation's request matches nothing pending in the second.
        let mut before = ReadTracker::new(17);
        let mut after = ReadTracker::new(0xdead_beef);
        let old_wire = before.forward(1, 2, 3, 10);
        after.forward(1, 2, 3, 10);
        assert_eq!(after.answer_forwarded(old_wire, 2, 3), None);
    }
}
