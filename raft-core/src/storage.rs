//! Durable state and the [`Persister`] trait that stores it.

use async_trait::async_trait;

use crate::action::PersistUpdate;
use crate::error::UpdateError;
use crate::types::{Entry, HardState, LogIndex};

/// Everything a node keeps across a crash: its hard state and its log.
///
/// This is also the reference model of [`PersistUpdate`] semantics: a [`Persister`] must behave
/// as if it held a `DurableState` and called [`DurableState::apply`] for each update, atomically.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DurableState {
    /// The stored term and vote.
    pub hard_state: HardState,
    /// The stored log entries, consecutive from index 1.
    pub entries: Vec<Entry>,
}

impl DurableState {
    /// Index of the last stored entry (0 when the log is empty).
    pub fn last_index(&self) -> LogIndex {
        self.entries.last().map_or(0, |e| e.index)
    }

    /// Applies `update` as described on [`PersistUpdate`]. Refuses (changing nothing) an update
    /// whose entries would leave a gap in the log.
    pub fn apply(&mut self, update: &PersistUpdate) -> Result<(), UpdateError> {
        update.check_continues(self.last_index())?;
        if let Some(hard_state) = update.hard_state {
            self.hard_state = hard_state;
        }
        if let Some(cut) = update.truncate_from {
            let first = self.entries.first().map_or(1, |e| e.index);
            let keep = cut.saturating_sub(first) as usize;
            self.entries.truncate(keep);
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
