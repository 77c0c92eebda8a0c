//! Checked decoding of the stored records.
//!
//! Everything read back from disk goes through these functions, and none of them trusts what it
//! reads: a record may pass RocksDB's checksums and still hold hostile values (written by a bug,
//! a tool, or damage that happened before the checksum was computed). Each decoder either returns
//! a record whose values can be used without overflow or unbounded allocation, or says what is
//! wrong, for a [`Corrupt`](super::RocksError::Corrupt) error.

use raft_core::Entry;

use super::layout::{self, HardStateRecord, IdentityRecord, SnapshotRecord, SNAPSHOT_CHUNK_BYTES};

/// The identity record.
pub fn identity(bytes: &[u8]) -> Result<IdentityRecord, String> {
    layout::decode(bytes).ok_or_else(|| "undecodable identity record".to_string())
}

/// The hard state record.
pub fn hard_state(bytes: &[u8]) -> Result<HardStateRecord, String> {
    layout::decode(bytes).ok_or_else(|| "undecodable hard state record".to_string())
}

/// The snapshot record, with a size that fits in memory addresses and a chunk count that
/// matches it, so that [`chunk_len`] can be trusted for every chunk.
pub fn snapshot_record(bytes: &[u8]) -> Result<SnapshotRecord, String> {
    let record: SnapshotRecord =
        layout::decode(bytes).ok_or_else(|| "undecodable snapshot record".to_string())?;
    if record.meta.last_index == 0 {
        // Every snapshot replaces at least entry 1; the writer refuses one at index 0.
        return Err("snapshot record at index 0".into());
    }
    if usize::try_from(record.len).is_err() {
        return Err(format!(
            "snapshot up to {} claims {} bytes, more than this machine can address",
            record.meta.last_index, record.len
        ));
    }
    let expected = SnapshotRecord::chunks_for(record.len);
    if u64::from(record.chunks) != expected {
        return Err(format!(
            "snapshot up to {} claims {} bytes in {} chunks; that size takes {expected}",
            record.meta.last_index, record.len, record.chunks
        ));
    }
    Ok(record)
}

/// The length chunk `chunk` of a snapshot described by `record` (checked by
/// [`snapshot_record`]) must have: every chunk is full but the last, which holds the rest.
/// `None` if `chunk` is not one of the record's chunks.
pub fn chunk_len(record: &SnapshotRecord, chunk: u32) -> Option<usize> {
    let last = record.chunks.checked_sub(1)?;
    if chunk < last {
        Some(SNAPSHOT_CHUNK_BYTES)
    } else if chunk == last {
        let before = u64::from(last).checked_mul(SNAPSHOT_CHUNK_BYTES as u64)?;
        usize::try_from(record.len.checked_sub(before)?).ok()
    } else {
        None
    }
}

/// The entry stored under `key`, which must be the 8-byte key of the entry's own index.
pub fn entry(key: &[u8], value: &[u8]) -> Result<Entry, String> {
    let index =
        layout::decode_entry_key(key).ok_or_else(|| format!("malformed entry key {key:?}"))?;
    let entry: Entry = layout::decode(value).ok_or_else(|| format!("undecodable entry {index}"))?;
    if entry.index != index {
        return Err(format!(
            "entry stored under index {index} says it is {}",
            entry.index
        ));
    }
    Ok(entry)
}

#[cfg(test)]
mod tests {
    //! Every decoder, fed arbitrary bytes, returns a usable record or an error, never a panic;
    //! and every record the writer produces decodes back to itself.

    use super::*;
    use proptest::prelude::*;
    use raft_core::{HardState, Payload, SnapshotMeta};

    fn check_snapshot_record(record: &SnapshotRecord) {
        // What the loader relies on: the chunk lengths add up to `len`, without overflow.
        let total: u64 = (0..record.chunks)
            .map(|k| chunk_len(record, k).expect("every chunk has a length") as u64)
            .sum();
        assert_eq!(total, record.len);
        assert_eq!(chunk_len(record, record.chunks), None);
        assert!(record.meta.last_index > 0);
    }

    fn payload() -> impl Strategy<Value = Payload> {
        prop_oneof![
            Just(Payload::Noop),
            proptest::collection::vec(any::<u8>(), 0..64).prop_map(Payload::Command),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
            let _ = identity(&bytes);
            let _ = hard_state(&bytes);
            if let Ok(record) = snapshot_record(&bytes) {
                check_snapshot_record(&record);
            }
            let key = bytes.get(..8).unwrap_or(&[]);
            let value = bytes.get(8..).unwrap_or(&[]);
            if let Ok(entry) = entry(key, value) {
                let expected_key = layout::entry_key(entry.index);
                prop_assert_eq!(expected_key.as_slice(), key);
            }
            let _ = entry(&bytes, &bytes);
        }

        /// Hostile but well-formed snapshot records: any size, any chunk count, any index.
        #[test]
        fn hostile_snapshot_records_are_refused_or_consistent(
            last_index in any::<u64>(),
            last_term in any::<u64>(),
            len in prop_oneof![any::<u64>(), 0u64..(4 << 20), Just(1 << 40), Just(u64::MAX)],
            chunks in prop_oneof![any::<u32>(), 0u32..8, Just(u32::MAX)],
        ) {
            let record = SnapshotRecord {
                meta: SnapshotMeta { last_index, last_term },
                len,
                chunks,
            };
            if let Ok(decoded) = snapshot_record(&layout::encode(&record)) {
                prop_assert_eq!(decoded, record);
                check_snapshot_record(&decoded);
            }
        }

        #[test]
        fn records_round_trip(
            term in any::<u64>(),
            voted_for in any::<Option<u64>>(),
            last_index in any::<u64>(),
            index in any::<u64>(),
            payload in payload(),
            len in 0u64..(16 << 20),
            snapshot_index in 1u64..,
        ) {
            let record = HardStateRecord {
                hard_state: HardState { term, voted_for },
                last_index,
            };
            prop_assert_eq!(hard_state(&layout::encode(&record)), Ok(record));
            let stored = Entry { index, term, payload };
            prop_assert_eq!(
                entry(&layout::entry_key(index), &layout::encode(&stored)),
                Ok(stored.clone())
            );
            // Trailing bytes are not part of a record.
            let mut longer = layout::encode(&stored);
            longer.push(0);
            prop_assert!(entry(&layout::entry_key(index), &longer).is_err());
            // Under another index's key, the entry is refused.
            prop_assert!(entry(&layout::entry_key(index.wrapping_add(1)), &layout::encode(&stored)).is_err());
            let snapshot = SnapshotRecord {
                meta: SnapshotMeta { last_index: snapshot_index, last_term: term },
                len,
                chunks: u32::try_from(SnapshotRecord::chunks_for(len)).expect("small"),
            };
            prop_assert_eq!(snapshot_record(&layout::encode(&snapshot)), Ok(snapshot));
        }
    }

    #[test]
    fn the_reported_hostile_records_are_refused() {
        let meta = SnapshotMeta {
            last_index: 5,
            last_term: 1,
        };
        // 2^40 bytes claimed in one chunk: the loader once tried to allocate all of it.
        let huge = SnapshotRecord {
            meta,
            len: 1 << 40,
            chunks: 1,
        };
        assert!(snapshot_record(&layout::encode(&huge)).is_err());
        // The same size with the matching chunk count is well-formed: the loader reads chunk
        // by chunk, so it allocates only what is actually stored.
        let consistent = SnapshotRecord {
            chunks: 1 << 20,
            ..huge
        };
        assert_eq!(chunk_len(&consistent, 0), Some(SNAPSHOT_CHUNK_BYTES));
        assert!(snapshot_record(&layout::encode(&SnapshotRecord {
            len: 0,
            chunks: 1,
            ..huge
        }))
        .is_err());
    }
}
