//! What a node asks its driver to do, and in which order.
//!
//! # The ordering contract
//!
//! [`RaftNode::take_actions`](crate::RaftNode::take_actions) returns a `Vec<Action>` that the
//! driver must carry out **in order**, with one relaxation: an action may start only once every
//! [`Action::Persist`] *before it in the list* is durable (fsynced), but it need not wait for
//! persists that come after it. Concretely:
//!
//! - A [`Action::Send`] listed before a `Persist` may leave at once. The node uses this for a
//!   leader's AppendEntries, which it lists *before* the persist of the same entries: the leader
//!   replicates while its own write is in flight (as etcd's raft does) and counts itself toward a
//!   quorum only after the driver reports the write with
//!   [`RaftNode::persisted`](crate::RaftNode::persisted).
//! - Every message that promises something about durable state is listed *after* the persist
//!   that makes it true: a granted vote after the vote is stored, a follower's acknowledgement
//!   after the acknowledged entries are stored, a candidate's vote requests after its new term
//!   and self-vote are stored.
//! - An [`Action::Apply`] is listed after the persist of the entries it carries, so a node never
//!   applies an entry that it could forget in a crash; likewise an [`Action::InstallSnapshot`]
//!   comes after the persist that stores the snapshot.
//! - An [`Action::ReadReady`] comes after the `Apply` that reaches its read index, so a driver
//!   that serves the read when it reaches the action reads a state at least that recent.
//!
//! A driver that simply executes the list sequentially, waiting for each persist to be durable,
//! satisfies the contract. After a `Persist` carrying entries is durable, the driver reports it
//! with `persisted(index, term)` of [`PersistUpdate::last_entry`]; until then a leader does not
//! count its own copy of those entries.

use crate::error::{ReadError, UpdateError};
use crate::message::Message;
use crate::types::{Entry, HardState, LogIndex, Snapshot, Term};

/// Identifies a read requested with [`RaftNode::read_index`](crate::RaftNode::read_index); chosen
/// by the service and echoed in [`Action::ReadReady`] or [`Action::ReadFailed`].
pub type ReadId = u64;

/// One thing the driver must do for the node. See the [module docs](self) for the ordering
/// contract.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Make this update durable, atomically (all of it or none of it after a crash).
    Persist(PersistUpdate),
    /// Deliver this message to `message.to`. Delivery is best effort: the protocol tolerates
    /// loss, duplication, delay and reordering.
    Send(Message),
    /// Apply these committed entries to the service's state machine, in order. Consecutive
    /// `Apply` actions continue each other without gaps, and continue the last
    /// [`Action::InstallSnapshot`].
    Apply(Vec<Entry>),
    /// Replace the service's state machine with this snapshot (received from the leader). Later
    /// `Apply` actions continue from `snapshot.meta.last_index + 1`.
    InstallSnapshot(Snapshot),
    /// The read `id` may be served: the state machine has applied (in an earlier action) every
    /// entry up to `index`, which covers every write acknowledged before the read was requested.
    ReadReady {
        /// The service's id for the read.
        id: ReadId,
        /// The read index: serve the read from a state that includes this index.
        index: LogIndex,
    },
    /// The read `id` cannot be served here; the service should retry, possibly elsewhere.
    ReadFailed {
        /// The service's id for the read.
        id: ReadId,
        /// Why.
        error: ReadError,
    },
}

/// A change to durable state, to be written atomically.
///
/// Applying it to stored state means, in this order:
/// 1. store `hard_state` if present;
/// 2. if `snapshot` is present, store it in place of the stored snapshot, and delete every
///    stored entry with index `<= snapshot.meta.last_index` (entries after it are kept);
/// 3. delete every stored entry with index `>= truncate_from` if present;
/// 4. append `entries`, which continue the stored log (after steps 2 and 3) without a gap.
///
/// [`crate::DurableState::apply`] is the reference implementation of these semantics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PersistUpdate {
    /// The new term and vote, if they changed.
    pub hard_state: Option<HardState>,
    /// Delete stored entries from this index on, before appending.
    pub truncate_from: Option<LogIndex>,
    /// Entries to append.
    pub entries: Vec<Entry>,
    /// A snapshot replacing the log prefix it covers (and the stored snapshot).
    pub snapshot: Option<Snapshot>,
}

impl PersistUpdate {
    /// Whether the update changes nothing.
    pub fn is_empty(&self) -> bool {
        self.hard_state.is_none()
            && self.truncate_from.is_none()
            && self.entries.is_empty()
            && self.snapshot.is_none()
    }

    /// Index and term of the last appended entry (or, without entries, of the last entry the
    /// snapshot covers): what the driver reports with
    /// [`RaftNode::persisted`](crate::RaftNode::persisted) once the update is durable.
    pub fn last_entry(&self) -> Option<(LogIndex, Term)> {
        match (self.entries.last(), &self.snapshot) {
            (Some(e), _) => Some((e.index, e.term)),
            (None, Some(s)) => Some((s.meta.last_index, s.meta.last_term)),
            (None, None) => None,
        }
    }

    /// Whether [`merge`](Self::merge) can fold `next` into `self`. Updates carrying a snapshot
    /// are kept apart, so each snapshot write is its own atomic step.
    pub fn can_merge(&self, next: &PersistUpdate) -> bool {
        self.snapshot.is_none() && next.snapshot.is_none()
    }

    /// Folds `next` (which follows `self`) into `self`, so that applying the result equals
    /// applying `self` then `next`. Neither may carry a snapshot (see
    /// [`can_merge`](Self::can_merge)).
    pub fn merge(&mut self, next: PersistUpdate) {
        debug_assert!(self.can_merge(&next), "snapshot updates are never merged");
        if next.hard_state.is_some() {
            self.hard_state = next.hard_state;
        }
        if let Some(cut) = next.truncate_from {
            match self.entries.first().map(|e| e.index) {
                Some(first) if cut > first => {
                    // The cut falls inside our own entries: keep the ones before it.
                    self.entries.truncate((cut - first) as usize);
                }
                _ => {
                    // The cut removes all our entries and possibly stored ones too.
                    self.entries.clear();
                    self.truncate_from = Some(self.truncate_from.map_or(cut, |t| t.min(cut)));
                }
            }
        }
        self.entries.extend(next.entries);
    }

    /// Checks that the update fits a stored log whose snapshot ends at `stored_snapshot` and
    /// whose last index is `stored_last`: a newer snapshot, no truncation into the snapshot, and
    /// entries that continue the log. [`crate::DurableState::apply`] and every
    /// [`crate::Persister`] refuse an update that does not fit, changing nothing.
    pub fn check_continues(
        &self,
        stored_snapshot: LogIndex,
        stored_last: LogIndex,
    ) -> Result<(), UpdateError> {
        let mut snapshot_index = stored_snapshot;
        let mut last = stored_last;
        if let Some(snapshot) = &self.snapshot {
            if snapshot.meta.last_index <= stored_snapshot {
                return Err(UpdateError::StaleSnapshot {
                    stored: stored_snapshot,
                    found: snapshot.meta.last_index,
                });
            }
            snapshot_index = snapshot.meta.last_index;
            last = last.max(snapshot_index);
        }
        if let Some(cut) = self.truncate_from {
            if cut <= snapshot_index {
                return Err(UpdateError::TruncateCompacted {
                    cut,
                    snapshot_index,
                });
            }
        }
        let base = self
            .truncate_from
            .map_or(last, |t| last.min(t.saturating_sub(1)));
        match self.entries.first() {
            Some(first) if first.index != base + 1 => Err(UpdateError::Gap {
                expected: base + 1,
                found: first.index,
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::DurableState;
    use crate::types::Payload;

    fn entries(range: std::ops::RangeInclusive<u64>, term: Term) -> Vec<Entry> {
        range
            .map(|index| Entry {
                index,
                term,
                payload: Payload::Command(vec![index as u8, term as u8]),
            })
            .collect()
    }

    fn base() -> DurableState {
        let mut state = DurableState::default();
        state
            .apply(&PersistUpdate {
                entries: entries(1..=5, 1),
                ..Default::default()
            })
            .unwrap();
        state
    }

    /// Merging must be equivalent to applying the updates one after the other.
    fn assert_merge_equivalent(a: PersistUpdate, b: PersistUpdate) {
        let mut sequential = base();
        sequential.apply(&a).unwrap();
        sequential.apply(&b).unwrap();
        let mut merged = a.clone();
        merged.merge(b.clone());
        let mut at_once = base();
        at_once.apply(&merged).unwrap();
        assert_eq!(
            sequential, at_once,
            "merge of {a:?} and {b:?} gave {merged:?}"
        );
    }

    #[test]
    fn merge_is_sequential_application() {
        let hs = |term| HardState {
            term,
            voted_for: Some(1),
        };
        // Append then append.
        assert_merge_equivalent(
            PersistUpdate {
                entries: entries(6..=7, 2),
                ..Default::default()
            },
            PersistUpdate {
                hard_state: Some(hs(3)),
                entries: entries(8..=8, 3),
                ..Default::default()
            },
        );
        // Append then a cut inside the appended entries.
        assert_merge_equivalent(
            PersistUpdate {
                entries: entries(6..=9, 2),
                ..Default::default()
            },
            PersistUpdate {
                truncate_from: Some(8),
                entries: entries(8..=8, 3),
                ..Default::default()
            },
        );
        // Append then a cut below the appended entries, into stored ones.
        assert_merge_equivalent(
            PersistUpdate {
                entries: entries(6..=9, 2),
                ..Default::default()
            },
            PersistUpdate {
                truncate_from: Some(4),
                entries: entries(4..=4, 3),
                ..Default::default()
            },
        );
        // Cut then a deeper cut.
        assert_merge_equivalent(
            PersistUpdate {
                truncate_from: Some(5),
                entries: entries(5..=6, 2),
                ..Default::default()
            },
            PersistUpdate {
                truncate_from: Some(3),
                entries: entries(3..=3, 3),
                ..Default::default()
            },
        );
        // Cut at exactly the first appended entry.
        assert_merge_equivalent(
            PersistUpdate {
                truncate_from: Some(5),
                entries: entries(5..=6, 2),
                ..Default::default()
            },
            PersistUpdate {
                truncate_from: Some(5),
                entries: entries(5..=5, 3),
                ..Default::default()
            },
        );
    }
}
