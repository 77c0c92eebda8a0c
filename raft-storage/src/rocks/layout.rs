//! How Raft state is laid out in RocksDB.
//!
//! Three column families, so that each has the access pattern RocksDB handles best:
//!
//! | column family | key | value |
//! |---|---|---|
//! | `meta` | `identity`, `hard_state`, `snapshot` | postcard records below |
//! | `entries` | log index, 8 bytes big-endian | postcard [`Entry`](raft_core::Entry) |
//! | `snapshot` | snapshot last index (8 bytes BE) ++ chunk number (4 bytes BE) | chunk bytes |
//!
//! Big-endian keys sort in index order, so a log suffix (truncation) or prefix (compaction), and
//! the chunks of older snapshots, are each one contiguous key range, removed with one range
//! delete. The `snapshot` record in `meta` is written in the same atomic batch as the new
//! snapshot's chunks and the deletion of the old ones, so after a crash the record and the
//! chunks it names always belong together.
//!
//! Every write batch also stores the [`HardStateRecord`]: the term and vote, and the index the
//! log ends at once the batch is applied. The record and the entries it describes therefore
//! always change together, and a log that does not end exactly where the record says (entries
//! lost while the record survived, or the record rolled back while entries survived) is
//! refused as corrupt when the directory is opened.
//!
//! Format versions: 1 stored the bare [`HardState`] under `hard_state`; 2 (this one) stores the
//! [`HardStateRecord`]. A directory of another version is refused, not converted.

use raft_core::{HardState, LogIndex, NodeId, SnapshotMeta};
use serde::{Deserialize, Serialize};

/// Column family of the small records.
pub const CF_META: &str = "meta";
/// Column family of the log entries.
pub const CF_ENTRIES: &str = "entries";
/// Column family of the snapshot chunks.
pub const CF_SNAPSHOT: &str = "snapshot";
/// Every column family the layout uses.
pub const COLUMN_FAMILIES: [&str; 3] = [CF_META, CF_ENTRIES, CF_SNAPSHOT];

/// Key of the identity record in `meta`.
pub const KEY_IDENTITY: &[u8] = b"identity";
/// Key of the [`HardStateRecord`] in `meta`.
pub const KEY_HARD_STATE: &[u8] = b"hard_state";
/// Key of the snapshot record in `meta`.
pub const KEY_SNAPSHOT: &[u8] = b"snapshot";

/// Version of this layout, stored in the identity record.
pub const FORMAT_VERSION: u32 = 2;
/// Size of the pieces a snapshot is stored in.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;

/// Which node of which cluster a data directory belongs to. Opening a directory with another
/// identity is refused, so a node never starts from another node's (or cluster's) log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StorageIdentity {
    /// The cluster the directory belongs to, chosen when the cluster is created.
    pub cluster_id: u64,
    /// The node the directory belongs to.
    pub node_id: NodeId,
}

/// The identity record: format version and owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityRecord {
    /// [`FORMAT_VERSION`] of the writer.
    pub format: u32,
    /// The owner.
    pub identity: StorageIdentity,
}

/// The hard state record, written in every batch: the term and vote, and where the log ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardStateRecord {
    /// The term and vote.
    pub hard_state: HardState,
    /// Index of the last stored entry after the batch that wrote this record (the snapshot's
    /// last index when no entry follows it, 0 for an empty log).
    pub last_index: LogIndex,
}

/// The snapshot record: which snapshot the chunks hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    /// The log prefix the snapshot replaces.
    pub meta: SnapshotMeta,
    /// Total size of the snapshot's bytes.
    pub len: u64,
    /// Number of chunks (`len` split in [`SNAPSHOT_CHUNK_BYTES`] pieces).
    pub chunks: u32,
}

impl SnapshotRecord {
    /// The number of chunks a snapshot of `len` bytes is stored in: `len` divided by
    /// [`SNAPSHOT_CHUNK_BYTES`], rounded up (0 for an empty snapshot).
    pub fn chunks_for(len: u64) -> u64 {
        len.div_ceil(SNAPSHOT_CHUNK_BYTES as u64)
    }
}

/// Key of entry `index` in `entries`.
pub fn entry_key(index: LogIndex) -> [u8; 8] {
    index.to_be_bytes()
}

/// A key after every entry key (entry keys are 8 bytes; this is 9 bytes of 0xFF), the end of
/// the range delete that truncates a suffix.
pub const ENTRIES_END: [u8; 9] = [0xFF; 9];

/// Key of chunk `chunk` of the snapshot ending at `last_index`, in `snapshot`.
pub fn chunk_key(last_index: LogIndex, chunk: u32) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[..8].copy_from_slice(&last_index.to_be_bytes());
    key[8..].copy_from_slice(&chunk.to_be_bytes());
    key
}

/// Decodes an entry key.
pub fn decode_entry_key(key: &[u8]) -> Option<LogIndex> {
    Some(LogIndex::from_be_bytes(key.try_into().ok()?))
}

/// Encodes a record.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs into a growable buffer cannot fail.
    postcard::to_allocvec(value).unwrap_or_default()
}

/// Decodes a record, or `None` if the bytes are not exactly one (trailing bytes included).
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Option<T> {
    match postcard::take_from_bytes(bytes) {
        Ok((value, [])) => Some(value),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_in_index_order() {
        let mut keys: Vec<[u8; 8]> = [300u64, 1, 256, 255, u64::MAX - 1]
            .iter()
            .map(|&i| entry_key(i))
            .collect();
        keys.sort();
        let order: Vec<u64> = keys.iter().filter_map(|k| decode_entry_key(k)).collect();
        assert_eq!(order, [1, 255, 256, 300, u64::MAX - 1]);
        assert!(entry_key(u64::MAX)[..] < ENTRIES_END[..]);
        assert!(chunk_key(9, u32::MAX) < chunk_key(10, 0));
    }
}
