//! Deterministic sequences of valid persist updates, for conformance tests, crash tests and
//! benchmarks: appends, term and vote changes, suffix overwrites, and compactions with snapshots
//! (some spanning several storage chunks, some beyond the log's end).
//!
//! A [`Workload`] keeps the reference model of what it generated, so a test that knows how many
//! updates were made durable can rebuild the expected state by replaying the same seed.
//!
//! ```
//! use raft_storage::workload::Workload;
//! let mut a = Workload::new(7, 64);
//! let mut b = Workload::new(7, 64);
//! for _ in 0..100 {
//!     assert_eq!(a.next_update(), b.next_update());
//! }
//! assert_eq!(a.model(), b.model());
//! ```

use raft_core::rng::SplitMix64;
use raft_core::{DurableState, Entry, HardState, Payload, PersistUpdate, Snapshot, SnapshotMeta};

/// A seeded generator of valid updates, with the model state they produce.
#[derive(Clone, Debug)]
pub struct Workload {
    rng: SplitMix64,
    entry_bytes: usize,
    model: DurableState,
    term: u64,
    generated: u64,
}

impl Workload {
    /// A workload from `seed` whose entries carry about `entry_bytes` bytes each.
    pub fn new(seed: u64, entry_bytes: usize) -> Self {
        Self {
            rng: SplitMix64::new(seed),
            entry_bytes,
            model: DurableState::default(),
            term: 1,
            generated: 0,
        }
    }

    /// The state after every update generated so far.
    pub fn model(&self) -> &DurableState {
        &self.model
    }

    /// Number of updates generated so far.
    pub fn generated(&self) -> u64 {
        self.generated
    }

    /// Only appends of `batch` entries each, for throughput measurements.
    pub fn next_append(&mut self, batch: usize) -> PersistUpdate {
        let first = self.model.last_index() + 1;
        let update = PersistUpdate {
            entries: self.entries(first, batch),
            ..PersistUpdate::default()
        };
        self.record(update)
    }

    /// The next update: mostly appends, sometimes a new term, an overwritten suffix or a
    /// snapshot.
    pub fn next_update(&mut self) -> PersistUpdate {
        let last = self.model.last_index();
        let snapshot_index = self.model.snapshot_index();
        let roll = self.rng.range(0, 100);
        let update = if roll < 70 {
            let count = self.rng.range(1, 9) as usize;
            PersistUpdate {
                entries: self.entries(last + 1, count),
                ..PersistUpdate::default()
            }
        } else if roll < 80 {
            self.term += 1;
            let voted_for = self.rng.chance(0.5).then(|| self.rng.range(1, 6));
            PersistUpdate {
                hard_state: Some(HardState {
                    term: self.term,
                    voted_for,
                }),
                ..PersistUpdate::default()
            }
        } else if roll < 90 && last > snapshot_index {
            // A new leader overwrites a suffix.
            let cut = self.rng.range(snapshot_index + 1, last + 1);
            self.term += 1;
            let count = self.rng.range(1, 5) as usize;
            PersistUpdate {
                hard_state: Some(HardState {
                    term: self.term,
                    voted_for: None,
                }),
                truncate_from: Some(cut),
                entries: self.entries(cut, count),
                ..PersistUpdate::default()
            }
        } else if roll < 97 && last > snapshot_index {
            // Compaction up to an index in the log; the suffix stays.
            let index = self.rng.range(snapshot_index + 1, last + 1);
            let term = self
                .model
                .entries
                .iter()
                .find(|e| e.index == index)
                .map_or(self.term, |e| e.term);
            PersistUpdate {
                snapshot: Some(self.snapshot(index, term)),
                ..PersistUpdate::default()
            }
        } else {
            // A snapshot from a leader, beyond the log: the log is replaced.
            let index = last + self.rng.range(1, 20);
            PersistUpdate {
                snapshot: Some(self.snapshot(index, self.term)),
                truncate_from: Some(index + 1),
                ..PersistUpdate::default()
            }
        };
        self.record(update)
    }

    fn record(&mut self, update: PersistUpdate) -> PersistUpdate {
        // Every update is built to fit the model; a refusal would be a bug in this generator.
        if let Err(e) = self.model.apply(&update) {
            panic!("workload generated an invalid update: {e}");
        }
        self.generated += 1;
        update
    }

    fn entries(&mut self, first: u64, count: usize) -> Vec<Entry> {
        (0..count as u64)
            .map(|k| {
                let index = first + k;
                let fill = (index.wrapping_mul(31) ^ self.generated) as u8;
                Entry {
                    index,
                    term: self.term,
                    payload: Payload::Command(vec![fill; self.entry_bytes]),
                }
            })
            .collect()
    }

    fn snapshot(&mut self, last_index: u64, last_term: u64) -> Snapshot {
        // Mostly small; sometimes larger than a storage chunk (1 MiB).
        let len = if self.rng.chance(0.1) {
            self.rng.range(1 << 20, 3 << 20)
        } else {
            self.rng.range(0, 4096)
        } as usize;
        let seed = self.rng.next_u64();
        Snapshot {
            meta: SnapshotMeta {
                last_index,
                last_term,
            },
            data: (0..len).map(|i| (seed as usize + i * 7) as u8).collect(),
        }
    }
}
