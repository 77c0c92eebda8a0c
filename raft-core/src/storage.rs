//! Durable state and the [`Persister`] trait that stores it.

use async_trait::async_trait;

use crate::action::PersistUpdate;
use crate::error::UpdateError;
use crate::types::{Entry, HardState, LogIndex, Snapshot};

/// Everything a node keeps across a crash: its hard state, its latest snapshot and the log
/// after it.
///
/// This is also the reference model of [`PersistUpdate`] semantics: a [`Persister`] must behave
/// as if it held a `DurableState` and called [`DurableState::apply`] for each update, atomically.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DurableState {
    /// The stored term and vote.
    pub hard_state: HardState,
    /// The latest snapshot, if the log was ever compacted.
    pub snapshot: Option<Snapshot>,
    /// The stored log entries, consecutive from the entry after the snapshot (index 1 without
    /// one).
    pub entries: Vec<Entry>,
}

impl DurableState {
    /// Index of the last entry the snapshot covers (0 without a snapshot).
    pub fn snapshot_index(&self) -> LogIndex {
        self.snapshot.as_ref().map_or(0, |s| s.meta.last_index)
    }

    /// Index of the last stored entry (the snapshot's last index when no entry follows it).
    pub fn last_index(&self) -> LogIndex {
        self.entries
            .last()
            .map_or(self.snapshot_index(), |e| e.index)
    }

    /// Applies `update` as described on [`PersistUpdate`]. Refuses (changing nothing) an update
    /// whose snapshot is not newer than the stored one, that truncates into the snapshot, or
    /// whose entries would leave a gap in the log.
    pub fn apply(&mut self, update: &PersistUpdate) -> Result<(), UpdateError> {
        update.check_continues(self.snapshot_index(), self.last_index())?;
        if let Some(hard_state) = update.hard_state {
            self.hard_state = hard_state;
        }
        if let Some(snapshot) = &update.snapshot {
            let covered = snapshot.meta.last_index;
            self.entries.retain(|e| e.index > covered);
            self.snapshot = Some(snapshot.clone());
        }
        if let Some(cut) = update.truncate_from {
            self.entries.retain(|e| e.index < cut);
        }
        self.entries.extend(update.entries.iter().cloned());
        Ok(())
    }
}

/// Stores a node's [`DurableState`].
///
/// # Contract
/// - **Atomic**: after a crash at any moment, each [`persist`](Persister::persist) call has
///   taken effect entirely or not at all.
/// - **Durable**: when `persist` returns `Ok`, the update survives a crash of the process and of
///   the machine (it has been fsynced). Updates take effect in the order their calls return.
/// - **Faithful**: [`load`](Persister::load) returns exactly the state produced by applying every
///   acknowledged update, in order, to the state loaded at start (the semantics of
///   [`DurableState::apply`]); it never returns a half-written update, and never silently returns
///   an empty state over existing data it cannot read.
///
/// Implementations live in the `raft-storage` crate.
#[async_trait]
pub trait Persister: Send + Sync {
    /// The implementation's error type.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Reads the durable state, for a node starting or restarting.
    async fn load(&self) -> Result<DurableState, Self::Error>;

    /// Makes `update` durable and atomic, as described in the trait docs. Concurrent calls may be
    /// grouped into one write and one fsync.
    async fn persist(&self, update: &PersistUpdate) -> Result<(), Self::Error>;

    /// Size in bytes of the persisted Raft state (hard state and log), as the service compares
    /// with its `maxraftstate` to decide when to snapshot.
    fn raft_state_size(&self) -> u64;
}
