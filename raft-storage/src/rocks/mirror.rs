//! What the writer knows of the stored state without reading it back: the snapshot and log
//! boundaries (to validate updates before writing them, and for the hard state record written
//! with every batch), the hard state, and the size of every stored entry (to keep
//! `raft_state_size` exact as entries come and go).

use std::collections::VecDeque;

use raft_core::{DurableState, HardState, PersistUpdate, UpdateError};

use super::layout::HardStateRecord;

use crate::size::{entry_size, hard_state_size};

/// Boundaries and sizes of the stored state.
#[derive(Debug, Default)]
pub struct Mirror {
    snapshot_index: u64,
    /// Sizes of the stored entries `snapshot_index + 1 ..`, in order.
    entry_sizes: VecDeque<u64>,
    hard_state: HardState,
    hard_state_size: u64,
    entries_size: u64,
}

impl Mirror {
    /// The mirror of a state loaded from disk.
    pub fn of(state: &DurableState) -> Self {
        let entry_sizes: VecDeque<u64> = state.entries.iter().map(entry_size).collect();
        Self {
            snapshot_index: state.snapshot_index(),
            entries_size: entry_sizes.iter().sum(),
            entry_sizes,
            hard_state: state.hard_state,
            hard_state_size: hard_state_size(&state.hard_state),
        }
    }

    fn last_index(&self) -> u64 {
        self.snapshot_index + self.entry_sizes.len() as u64
    }

    /// The hard state record describing the stored state.
    pub fn record(&self) -> HardStateRecord {
        HardStateRecord {
            hard_state: self.hard_state,
            last_index: self.last_index(),
        }
    }

    /// The persisted Raft state's size (see [`crate::size`]).
    pub fn raft_state_size(&self) -> u64 {
        self.hard_state_size + self.entries_size
    }

    /// Checks that `update` fits the stored state.
    pub fn check(&self, update: &PersistUpdate) -> Result<(), UpdateError> {
        update.check_continues(self.snapshot_index, self.last_index())
    }

    /// Records `update` (already checked) as stored.
    pub fn apply(&mut self, update: &PersistUpdate) {
        if let Some(hard_state) = &update.hard_state {
            self.hard_state = *hard_state;
            self.hard_state_size = hard_state_size(hard_state);
        }
        if let Some(snapshot) = &update.snapshot {
            let covered = snapshot.meta.last_index;
            while self.snapshot_index < covered {
                match self.entry_sizes.pop_front() {
                    Some(size) => self.entries_size -= size,
                    None => break,
                }
                self.snapshot_index += 1;
            }
            self.snapshot_index = covered;
        }
        if let Some(cut) = update.truncate_from {
            while self.last_index() >= cut {
                match self.entry_sizes.pop_back() {
                    Some(size) => self.entries_size -= size,
                    None => break,
                }
            }
        }
        for entry in &update.entries {
            let size = entry_size(entry);
            self.entry_sizes.push_back(size);
            self.entries_size += size;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_core::{Entry, HardState, Payload, Snapshot, SnapshotMeta};

    fn entries(range: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
        range
            .map(|index| Entry {
                index,
                term: 1,
                payload: Payload::Command(vec![0; index as usize]),
            })
            .collect()
    }

    /// The mirror follows the reference model through appends, truncation and compaction.
    #[test]
    fn tracks_the_reference_model() {
        let updates = [
            PersistUpdate {
                hard_state: Some(HardState {
                    term: 1,
                    voted_for: Some(2),
                }),
                entries: entries(1..=6),
                ..PersistUpdate::default()
            },
            PersistUpdate {
                truncate_from: Some(5),
                entries: entries(5..=7),
                ..PersistUpdate::default()
            },
            PersistUpdate {
                snapshot: Some(Snapshot {
                    meta: SnapshotMeta {
                        last_index: 3,
                        last_term: 1,
                    },
                    data: vec![1],
                }),
                ..PersistUpdate::default()
            },
            PersistUpdate {
                snapshot: Some(Snapshot {
                    meta: SnapshotMeta {
                        last_index: 10,
                        last_term: 1,
                    },
                    data: vec![2],
                }),
                ..PersistUpdate::default()
            },
            PersistUpdate {
                entries: entries(11..=12),
                ..PersistUpdate::default()
            },
        ];
        let mut model = DurableState::default();
        let mut mirror = Mirror::of(&model);
        for update in &updates {
            mirror.check(update).unwrap();
            model.apply(update).unwrap();
            mirror.apply(update);
            assert_eq!(
                mirror.raft_state_size(),
                Mirror::of(&model).raft_state_size()
            );
            assert_eq!(mirror.last_index(), model.last_index());
            assert_eq!(mirror.record().hard_state, model.hard_state);
        }
        assert!(mirror
            .check(&PersistUpdate {
                entries: entries(14..=14),
                ..PersistUpdate::default()
            })
            .is_err());
    }
}
