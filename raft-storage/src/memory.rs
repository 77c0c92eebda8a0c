//! The in-memory backend.

use std::sync::Mutex;

use async_trait::async_trait;
use raft_core::{DurableState, PersistUpdate, Persister, UpdateError};

use crate::size::{entry_size, hard_state_size};

/// Why the memory backend refused an update.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// The update does not continue the stored log (a driver bug); nothing was changed.
    #[error("invalid persist update: {0}")]
    InvalidUpdate(#[from] UpdateError),
}

#[derive(Debug)]
struct Stored {
    state: DurableState,
    /// `raft_state_size()`, kept up to date incrementally.
    size: u64,
}

/// A [`Persister`] that keeps the durable state in memory.
///
/// "Durable" here means: it survives the node, not the process. Share one `MemoryPersister`
/// between successive incarnations of a node (drop the node, build a new one from
/// [`load`](Persister::load)) to emulate a crash and restart: everything acknowledged by
/// [`persist`](Persister::persist) is there, nothing else.
#[derive(Debug)]
pub struct MemoryPersister {
    stored: Mutex<Stored>,
}

impl Default for MemoryPersister {
    fn default() -> Self {
        Self::with_state(DurableState::default())
    }
}

impl MemoryPersister {
    /// An empty store: term 0, no vote, no log.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store holding `state`, as if it had been persisted earlier.
    pub fn with_state(state: DurableState) -> Self {
        let size = crate::size::of_state(&state);
        Self {
            stored: Mutex::new(Stored { state, size }),
        }
    }

    /// A copy of the stored state: exactly what a node restarting now would load.
    pub fn state(&self) -> DurableState {
        self.lock().state.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Stored> {
        // A panic while holding the lock cannot leave `Stored` half-updated: `apply` validates
        // before it mutates, and the size is recomputed from the state's own figures below.
        self.stored
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn apply(&self, update: &PersistUpdate) -> Result<(), MemoryError> {
        let mut stored = self.lock();
        let Stored { state, size } = &mut *stored;
        let old_hard_state = hard_state_size(&state.hard_state);
        // Entries the update deletes: those its snapshot covers and those it truncates.
        let covered = update.snapshot.as_ref().map_or(0, |s| s.meta.last_index);
        let cut = update.truncate_from.unwrap_or(u64::MAX);
        // The log is sorted by index, so the covered entries are a prefix and the truncated
        // ones a suffix: only those are visited (a plain append visits none).
        let entries = &state.entries;
        let prefix = entries.partition_point(|e| e.index <= covered);
        let suffix = entries.partition_point(|e| e.index < cut).max(prefix);
        let removed: u64 = entries[..prefix]
            .iter()
            .chain(&entries[suffix..])
            .map(entry_size)
            .sum();
        state.apply(update)?;
        *size = *size - old_hard_state - removed
            + hard_state_size(&state.hard_state)
            + update.entries.iter().map(entry_size).sum::<u64>();
        Ok(())
    }
}

#[async_trait]
impl Persister for MemoryPersister {
    type Error = MemoryError;

    async fn load(&self) -> Result<DurableState, MemoryError> {
        Ok(self.state())
    }

    async fn persist(&self, update: &PersistUpdate) -> Result<(), MemoryError> {
        self.apply(update)
    }

    fn raft_state_size(&self) -> u64 {
        self.lock().size
    }
}
