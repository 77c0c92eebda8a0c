//! What `raft_state_size()` counts.
//!
//! The persisted Raft state's size is the postcard-encoded size of the hard state plus the sum of
//! the postcard-encoded sizes of the stored log entries. Snapshots are not counted: the service
//! compares this figure with its `maxraftstate` to decide when to snapshot, exactly as the labs
//! compare `RaftStateSize()`. Backends report this logical size, not their on-disk footprint
//! (which includes their own framing and compaction lag).

use raft_core::{DurableState, Entry, HardState};

/// Encoded size of one value, in bytes.
fn encoded_len<T: serde::Serialize>(value: &T) -> u64 {
    // Serializing into the size-counting flavor cannot fail for these plain types; 0 would only
    // under-count, never panic.
    postcard::serialize_with_flavor(value, postcard::ser_flavors::Size::default()).unwrap_or(0)
        as u64
}

/// Encoded size of a hard state.
pub fn hard_state_size(hard_state: &HardState) -> u64 {
    encoded_len(hard_state)
}

/// Encoded size of a log entry.
pub fn entry_size(entry: &Entry) -> u64 {
    encoded_len(entry)
}

/// `raft_state_size()` of a whole stored state: its hard state and entries.
pub fn of_state(state: &DurableState) -> u64 {
    hard_state_size(&state.hard_state) + state.entries.iter().map(entry_size).sum::<u64>()
}
