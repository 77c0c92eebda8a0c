//! Folding consecutive persists into one, so that a backlog costs one write and one fsync.

use raft_core::PersistUpdate;

/// Folds `next` into `first` when the result, applied alone, leaves storage exactly as applying
/// `first` then `next` would (the semantics of [`raft_core::DurableState::apply`]); otherwise
/// returns `next` and leaves `first` untouched. Updates carrying a snapshot are never folded,
/// nor are entries that do not follow on (the store must judge those, as it would have).
///
/// The folded update takes `next`'s id, so reporting it durable reports both.
pub fn fold(first: &mut PersistUpdate, next: PersistUpdate) -> Result<(), PersistUpdate> {
    if first.snapshot.is_some() || next.snapshot.is_some() {
        return Err(next);
    }
    // `first` leaves the stored log cut below `first.truncate_from`, followed by its entries;
    // `next` then cuts below its own `truncate_from`, which may reach into either part.
    let kept = match next.truncate_from {
        Some(cut) => first.entries.partition_point(|e| e.index < cut),
        None => first.entries.len(),
    };
    if let (Some(last), Some(head)) = (kept.checked_sub(1), next.entries.first()) {
        if head.index != first.entries[last].index + 1 {
            return Err(next);
        }
    }
    first.entries.truncate(kept);
    if let Some(cut) = next.truncate_from {
        first.truncate_from = Some(first.truncate_from.map_or(cut, |c| c.min(cut)));
    }
    first.entries.extend(next.entries);
    if next.hard_state.is_some() {
        first.hard_state = next.hard_state;
    }
    first.id = next.id;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use raft_core::{DurableState, Entry, HardState, Payload, Snapshot, SnapshotMeta};

    fn entries(from: u64, count: u64, term: u64) -> Vec<Entry> {
        (from..from + count)
            .map(|index| Entry {
                index,
                term,
                payload: Payload::Command(vec![index as u8]),
            })
            .collect()
    }

    /// An update of a random shape: some cut near the stored log's end, some entries that
    /// usually (not always) follow on.
    fn update(id: u64, last: u64, knobs: (u8, u8, u8, u8, bool)) -> PersistUpdate {
        let (cut_back, count, skew, term, vote) = knobs;
        let truncate_from =
            (cut_back % 4 != 0).then(|| (last + 1).saturating_sub(cut_back as u64 % 4).max(1));
        let base = truncate_from.map_or(last, |t| last.min(t - 1));
        let from = match skew % 8 {
            0 => base + 2,    // a gap
            1 => base.max(1), // an overlap
            _ => base + 1,
        };
        PersistUpdate {
            id,
            hard_state: vote.then_some(HardState {
                term: term as u64,
                voted_for: Some(1),
            }),
            truncate_from,
            entries: entries(from, (count % 4) as u64, term as u64),
            snapshot: None,
        }
    }

    proptest! {
        #[test]
        fn folding_changes_nothing_a_store_would_see(
            stored in 0u64..6,
            knobs in proptest::collection::vec((any::<u8>(), any::<u8>(), any::<u8>(), 1u8..5, any::<bool>()), 2..6),
            with_snapshot in any::<bool>(),
        ) {
            let mut start = DurableState::default();
            if with_snapshot {
                start.snapshot = Some(Snapshot {
                    meta: SnapshotMeta { last_index: 1, last_term: 1 },
                    data: vec![9],
                });
            }
            start.entries = entries(start.snapshot_index() + 1, stored, 1);
            // Build updates valid against the sequential state where possible.
            let mut sequential = start.clone();
            let mut updates = Vec::new();
            for (i, k) in knobs.into_iter().enumerate() {
                let u = update(i as u64 + 1, sequential.last_index(), k);
                if sequential.apply(&u).is_err() {
                    break; // the folds below must stop here too
                }
                updates.push(u);
            }
            let mut folded = start.clone();
            let mut iter = updates.into_iter();
            if let Some(mut acc) = iter.next() {
                for u in iter {
                    if let Err(u) = fold(&mut acc, u) {
                        folded.apply(&acc).unwrap();
                        acc = u;
                    }
                }
                folded.apply(&acc).expect("a fold of valid updates is valid");
            }
            prop_assert_eq!(folded, sequential);
        }
    }

    #[test]
    fn a_gap_is_not_folded_away() {
        let mut first = PersistUpdate {
            id: 1,
            entries: entries(1, 2, 1),
            ..Default::default()
        };
        let before = first.clone();
        let next = PersistUpdate {
            id: 2,
            entries: entries(5, 1, 1),
            ..Default::default()
        };
        assert_eq!(fold(&mut first, next.clone()), Err(next));
        assert_eq!(first, before);
    }

    #[test]
    fn snapshots_are_not_folded() {
        let snapshot = Snapshot {
            meta: SnapshotMeta {
                last_index: 3,
                last_term: 1,
            },
            data: vec![],
        };
        let mut first = PersistUpdate {
            id: 1,
            entries: entries(1, 2, 1),
            ..Default::default()
        };
        let next = PersistUpdate {
            id: 2,
            snapshot: Some(snapshot),
            ..Default::default()
        };
        assert!(fold(&mut first, next).is_err());
    }

    #[test]
    fn a_later_cut_reaches_into_the_first_updates_entries() {
        let mut first = PersistUpdate {
            id: 1,
            entries: entries(1, 3, 1),
            ..Default::default()
        };
        let next = PersistUpdate {
            id: 2,
            truncate_from: Some(2),
            entries: entries(2, 1, 2),
            ..Default::default()
        };
        fold(&mut first, next).unwrap();
        assert_eq!(first.id, 2);
        assert_eq!(first.truncate_from, Some(2));
        assert_eq!(
            first
                .entries
                .iter()
                .map(|e| (e.index, e.term))
                .collect::<Vec<_>>(),
            vec![(1, 1), (2, 2)]
        );
    }
}
