//! What a node asks its driver to do, and in which order.
//!
//! # The ordering contract
//!
//! Every call of [`RaftNode::take_actions`](crate::RaftNode::take_actions) returns the next
//! part of **one stream** of actions; the contract is about that stream, not about each list on
//! its own. Each action belongs to one of three [`Lane`]s, and a driver may run the lanes
//! independently of each other:
//!
//! - **Storage** ([`Action::Persist`]): carry out persists in stream order, each atomically. A
//!   driver may start a persist before earlier ones are durable (queue several to a
//!   group-commit writer) provided they become durable in stream order. Once a persist is
//!   durable, report it with [`RaftNode::persisted`](crate::RaftNode::persisted)`(update.id)`;
//!   reporting an id says that it and every earlier persist are durable, so a driver may report
//!   only the latest of a group.
//! - **Network** ([`Action::Send`]): a message may leave **at once**, in any order, whatever is
//!   still being written, in this list or an earlier one. The node emits a message only when
//!   everything it promises is already durable: a granted vote, an acknowledgement of entries
//!   (`Accepted`) or of a snapshot (`Installed`), and a candidate's vote request are held inside
//!   the node until the driver reports the persist that backs them, whichever list that persist
//!   was in, and they appear in a later `take_actions` (or are dropped, if the node's term moved
//!   on meanwhile). Every other message promises nothing about the sender's disk. In
//!   particular a leader's AppendEntries overtake its own pending write of the same entries:
//!   the leader replicates while it writes, and counts its own copy toward a quorum only after
//!   the report.
//! - **State machine** ([`Action::Apply`], [`Action::InstallSnapshot`], [`Action::ReadReady`],
//!   [`Action::ReadFailed`]): carry them out in stream order with respect to each other. They
//!   need not wait for any persist: an `Apply` carries only committed entries (durable on a
//!   majority, whatever this node's disk holds yet), and after a crash the service's state is
//!   rebuilt from the stored snapshot and log. A `ReadReady` follows the `Apply` that reaches its
//!   read index, so serving the read when its turn comes reads a recent enough state.
//!
//! A driver that runs the whole stream sequentially, waiting for each persist to be durable
//! and reporting it before going on, also satisfies the contract. [`Action::lane`] and
//! [`Lanes`] sort a list into the three queues.
//!
//! ```
//! use raft_core::{Action, Config, Lanes, RaftNode};
//! let mut node = RaftNode::new(Config::new(1, vec![1])).unwrap();
//! for _ in 0..30 { node.tick(); } // a single node elects itself
//! let lanes = Lanes::from(node.take_actions());
//! assert!(lanes.network.is_empty()); // nothing to send in a one-node cluster
//! for update in &lanes.storage {
//!     // ... write `update` durably (in order), then:
//!     node.persisted(update.id);
//! }
//! // The leader's no-op entry commits once its own write is reported.
//! let lanes = Lanes::from(node.take_actions());
//! assert!(matches!(lanes.state_machine.as_slice(), [Action::Apply(entries)] if entries.len() == 1));
//! ```

use crate::error::{ReadError, UpdateError};
use crate::message::Message;
use crate::types::{Entry, HardState, LogIndex, Snapshot, Term};

/// Identifies a [`PersistUpdate`] within one run of a node: ids grow by one with every persist
/// the node emits, starting at 1 each time the node starts.
pub type PersistId = u64;

/// The three independent queues of a driver (see the [module docs](self)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lane {
    /// [`Action::Persist`]: in order, each durable before it is reported.
    Storage,
    /// [`Action::Send`]: at once, in any order.
    Network,
    /// [`Action::Apply`], [`Action::InstallSnapshot`], [`Action::ReadReady`],
    /// [`Action::ReadFailed`]: in order with respect to each other.
    StateMachine,
}

impl Action {
    /// The lane this action belongs to: what it may and may not wait for.
    pub fn lane(&self) -> Lane {
        match self {
            Action::Persist(_) => Lane::Storage,
            Action::Send(_) => Lane::Network,
            Action::Apply(_)
            | Action::InstallSnapshot(_)
            | Action::ReadReady { .. }
            | Action::ReadFailed { .. } => Lane::StateMachine,
        }
    }
}

/// A list of actions sorted into its [`Lane`]s, each in stream order. Every action of every
/// lane may start now, as far as the other lanes are concerned; within a lane, order matters
/// for storage and the state machine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lanes {
    /// Persists, in order.
    pub storage: Vec<PersistUpdate>,
    /// Messages, free to leave at once.
    pub network: Vec<Message>,
    /// `Apply`, `InstallSnapshot`, `ReadReady` and `ReadFailed`, in order.
    pub state_machine: Vec<Action>,
}

impl From<Vec<Action>> for Lanes {
    fn from(actions: Vec<Action>) -> Self {
        let mut lanes = Lanes::default();
        for action in actions {
            match action {
                Action::Persist(update) => lanes.storage.push(update),
                Action::Send(message) => lanes.network.push(message),
                other => lanes.state_machine.push(other),
            }
        }
        lanes
    }
}

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

/// A change to durable state, to be written atomically, then reported with
/// [`RaftNode::persisted`](crate::RaftNode::persisted)`(id)`.
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
    /// The node's id for this update, to report it durable (0 in updates not made by a node).
    pub id: PersistId,
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
    /// Whether the update changes nothing (whatever its id).
    pub fn is_empty(&self) -> bool {
        self.hard_state.is_none()
            && self.truncate_from.is_none()
            && self.entries.is_empty()
            && self.snapshot.is_none()
    }

    /// Index and term of the last appended entry (or, without entries, of the last entry the
    /// snapshot covers).
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
