//! The size of the persisted Raft state, as the service compares it with `maxraftstate`.
//!
//! The service core sees every [`PersistUpdate`] it hands to its driver, so it keeps a mirror of
//! the sizes of the stored entries and applies each update to it with the semantics of
//! [`DurableState::apply`]. Sizes are counted with [`raft_storage::size`], the definition every
//! `Persister::raft_state_size` reports (postcard size of the hard state plus that of each
//! entry, snapshot excluded), so the core's figure equals the persister's once the updates are
//! durable. It runs ahead of the disk by the writes in flight, which only makes snapshots start
//! a little earlier. Nothing here needs the driver's help, so the simulator and the real server
//! get the same figure from the same inputs.

use std::collections::VecDeque;

use raft_core::{DurableState, LogIndex, PersistUpdate};
use raft_storage::size;

/// Mirror of the sizes of the persisted hard state and log entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RaftStateSize {
    hard_state: u64,
    /// `(index, encoded size)` of each stored entry, in log order.
    entries: VecDeque<(LogIndex, u64)>,
    entry_bytes: u64,
}

impl RaftStateSize {
    /// The sizes of a state loaded from disk.
    pub fn of_state(state: &DurableState) -> Self {
        let entries: VecDeque<(LogIndex, u64)> = state
            .entries
            .iter()
            .map(|e| (e.index, size::entry_size(e)))
            .collect();
        Self {
            hard_state: size::hard_state_size(&state.hard_state),
            entry_bytes: entries.iter().map(|&(_, s)| s).sum(),
            entries,
        }
    }

    /// Accounts for `update`, in the order [`DurableState::apply`] applies it.
    pub fn apply(&mut self, update: &PersistUpdate) {
        if let Some(hard_state) = &update.hard_state {
            self.hard_state = size::hard_state_size(hard_state);
        }
        if let Some(snapshot) = &update.snapshot {
            let covered = snapshot.meta.last_index;
            while let Some(&(index, bytes)) = self.entries.front() {
                if index > covered {
                    break;
                }
                self.entry_bytes -= bytes;
                self.entries.pop_front();
            }
        }
        if let Some(cut) = update.truncate_from {
            while let Some(&(index, bytes)) = self.entries.back() {
                if index < cut {
                    break;
                }
                self.entry_bytes -= bytes;
                self.entries.pop_back();
            }
        }
        for entry in &update.entries {
            let bytes = size::entry_size(entry);
            self.entry_bytes += bytes;
            self.entries.push_back((entry.index, bytes));
        }
    }

    /// Total size in bytes.
    pub fn total(&self) -> u64 {
        self.hard_state + self.entry_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_core::{Entry, HardState, Payload, Snapshot, SnapshotMeta};

    fn entries(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
        range
            .map(|index| Entry {
                index,
                term,
                payload: Payload::Command(vec![7; index as usize]),
            })
            .collect()
    }

    /// The mirror must agree with `raft_storage::size::of_state` after every update.
    #[test]
    fn mirrors_the_durable_state() {
        let updates = vec![
            PersistUpdate {
                hard_state: Some(HardState {
                    term: 1,
                    voted_for: Some(1),
                }),
                entries: entries(1..=6, 1),
                ..Default::default()
            },
            PersistUpdate {
                truncate_from: Some(4),
                entries: entries(4..=5, 2),
                hard_state: Some(HardState {
                    term: 200,
                    voted_for: None,
                }),
                ..Default::default()
            },
            PersistUpdate {
                snapshot: Some(Snapshot {
                    meta: SnapshotMeta {
                        last_index: 3,
                        last_term: 1,
                    },
                    data: vec![1; 100],
                }),
                ..Default::default()
            },
            PersistUpdate {
                entries: entries(6..=9, 2),
                ..Default::default()
            },
            PersistUpdate {
                snapshot: Some(Snapshot {
                    meta: SnapshotMeta {
                        last_index: 12,
                        last_term: 3,
                    },
                    data: vec![],
                }),
                truncate_from: Some(13),
                ..Default::default()
            },
        ];
        let mut disk = DurableState::default();
        let mut mirror = RaftStateSize::of_state(&disk);
        for update in &updates {
            disk.apply(update).unwrap();
            mirror.apply(update);
            assert_eq!(mirror.total(), size::of_state(&disk), "after {update:?}");
            assert_eq!(RaftStateSize::of_state(&disk), mirror);
        }
    }
}
