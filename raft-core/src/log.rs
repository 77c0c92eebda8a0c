//! The in-memory replicated log, addressed by logical index.
//!
//! Entries before `first_index()` may have been compacted into a snapshot; the log remembers the
//! index and term of the last compacted entry so that consistency checks at that boundary still
//! work. All conversion between logical indexes and vector positions happens in one private
//! helper, `RaftLog::pos`.

use crate::types::{Entry, LogIndex, Term};

/// Why a sequence of entries cannot form a log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// An entry's index does not follow its predecessor's.
    #[error("log entry has index {found}, expected {expected}")]
    NotConsecutive {
        /// The index the entry should have had.
        expected: LogIndex,
        /// The index it had.
        found: LogIndex,
    },
    /// An entry's term is lower than its predecessor's.
    #[error("log entry {index} has term {term}, lower than the term {previous} before it")]
    TermDecreases {
        /// Index of the offending entry.
        index: LogIndex,
        /// Its term.
        term: Term,
        /// The term of the entry (or snapshot) before it.
        previous: Term,
    },
}

/// The replicated log held in memory by a node.
///
/// ```
/// use raft_core::{RaftLog, Entry, Payload};
/// let mut log = RaftLog::default();
/// log.append(Entry { index: 1, term: 1, payload: Payload::Noop });
/// assert_eq!(log.last_index(), 1);
/// assert_eq!(log.term(1), Some(1));
/// assert_eq!(log.term(0), Some(0));
/// assert_eq!(log.term(2), None);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaftLog {
    /// Index of the last entry folded into the snapshot (0 if none).
    snapshot_index: LogIndex,
    /// Term of that entry (0 if none).
    snapshot_term: Term,
    /// `entries[k].index == snapshot_index + 1 + k`.
    entries: Vec<Entry>,
}

impl RaftLog {
    /// Rebuilds a log from a snapshot boundary and the entries after it, checking that indexes
    /// are consecutive and terms never decrease.
    pub fn from_parts(
        snapshot_index: LogIndex,
        snapshot_term: Term,
        entries: Vec<Entry>,
    ) -> Result<Self, LogError> {
        let mut previous = snapshot_term;
        for (expected, entry) in (snapshot_index + 1..).zip(&entries) {
            if entry.index != expected {
                return Err(LogError::NotConsecutive {
                    expected,
                    found: entry.index,
                });
            }
            if entry.term < previous {
                return Err(LogError::TermDecreases {
                    index: entry.index,
                    term: entry.term,
                    previous,
                });
            }
            previous = entry.term;
        }
        Ok(Self {
            snapshot_index,
            snapshot_term,
            entries,
        })
    }

    /// Index of the last entry covered by the snapshot (0 when nothing was compacted).
    pub fn snapshot_index(&self) -> LogIndex {
        self.snapshot_index
    }

    /// Term of the last entry covered by the snapshot (0 when nothing was compacted).
    pub fn snapshot_term(&self) -> Term {
        self.snapshot_term
    }

    /// Index of the first entry still held in memory.
    pub fn first_index(&self) -> LogIndex {
        self.snapshot_index + 1
    }

    /// Index of the last entry (the snapshot index when the log holds no entries).
    pub fn last_index(&self) -> LogIndex {
        self.snapshot_index + self.entries.len() as LogIndex
    }

    /// Term of the last entry (the snapshot term when the log holds no entries).
    pub fn last_term(&self) -> Term {
        self.entries.last().map_or(self.snapshot_term, |e| e.term)
    }

    /// Number of entries held in memory.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entries are held in memory (some may be compacted into the snapshot).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Position of `index` in `entries`, if the entry is held in memory.
    fn pos(&self, index: LogIndex) -> Option<usize> {
        if index <= self.snapshot_index || index > self.last_index() {
            return None;
        }
        // In range: the difference is below entries.len(), which fits in usize.
        Some((index - self.snapshot_index - 1) as usize)
    }

    /// Term of the entry at `index`: known for the snapshot boundary and held entries, `None`
    /// for compacted entries before the boundary and for indexes past the end.
    pub fn term(&self, index: LogIndex) -> Option<Term> {
        if index == self.snapshot_index {
            return Some(self.snapshot_term);
        }
        self.pos(index).map(|p| self.entries[p].term)
    }

    /// The entry at `index`, if held in memory.
    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        self.pos(index).map(|p| &self.entries[p])
    }

    /// All entries held in memory, in index order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Entries from `from` to `to` inclusive (clamped to what is held), stopping once their
    /// total `size_hint` would exceed `max_bytes`; at least one entry is returned when any is
    /// in range, so an oversized entry still makes progress.
    pub fn slice(&self, from: LogIndex, to: LogIndex, max_bytes: usize) -> Vec<Entry> {
        let from = from.max(self.first_index());
        let to = to.min(self.last_index());
        let (Some(start), Some(end)) = (self.pos(from), self.pos(to)) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for entry in &self.entries[start..=end] {
            bytes += entry.size_hint();
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(entry.clone());
        }
        out
    }

    /// Appends one entry. The caller guarantees `entry.index == last_index() + 1`.
    pub fn append(&mut self, entry: Entry) {
        debug_assert_eq!(
            entry.index,
            self.last_index() + 1,
            "append must be contiguous"
        );
        self.entries.push(entry);
    }

    /// Removes every entry with index `>= from`. Entries already compacted are not touched.
    pub fn truncate_from(&mut self, from: LogIndex) {
        let keep = from.saturating_sub(self.first_index()) as usize;
        self.entries.truncate(keep);
    }

    /// Drops every entry up to and including `index`, which becomes the new snapshot boundary
    /// with term `term`. Entries after `index` are kept only if the entry at `index` is held and
    /// has term `term`; otherwise the whole log is discarded (it conflicts with the snapshot).
    pub fn compact_to(&mut self, index: LogIndex, term: Term) {
        if index <= self.snapshot_index {
            return;
        }
        if self.term(index) == Some(term) {
            let drop = (index - self.snapshot_index) as usize;
            self.entries.drain(..drop);
        } else {
            self.entries.clear();
        }
        self.snapshot_index = index;
        self.snapshot_term = term;
    }

    /// The first index of the run of entries with the same term as the entry at `index`,
    /// scanning backwards; stops at the first held entry. Used for the conflict hint of a
    /// rejected AppendEntries.
    pub fn first_index_of_term_at(&self, index: LogIndex) -> LogIndex {
        let Some(term) = self.term(index) else {
            return index;
        };
        let mut first = index;
        while first > self.first_index() && self.term(first - 1) == Some(term) {
            first -= 1;
        }
        first
    }

    /// The highest index `<= upto` whose entry has term `term`, if the log holds one.
    /// Terms never decrease along the log, so the scan stops at the first lower term.
    pub fn last_index_of_term(&self, term: Term, upto: LogIndex) -> Option<LogIndex> {
        let mut index = upto.min(self.last_index());
        loop {
            match self.term(index) {
                Some(t) if t == term => return Some(index),
                Some(t) if t < term => return None,
                Some(_) if index > self.snapshot_index => index -= 1,
                _ => return None,
            }
        }
    }

    /// Raft's up-to-date rule (§5.4.1): a candidate whose last entry is `(last_index,
    /// last_term)` is at least as up to date as this log.
    pub fn is_up_to_date(&self, last_index: LogIndex, last_term: Term) -> bool {
        last_term > self.last_term()
            || (last_term == self.last_term() && last_index >= self.last_index())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Payload;

    fn log_of(terms: &[Term]) -> RaftLog {
        let entries = terms
            .iter()
            .enumerate()
            .map(|(i, &term)| Entry {
                index: i as LogIndex + 1,
                term,
                payload: Payload::Command(vec![i as u8]),
            })
            .collect();
        RaftLog::from_parts(0, 0, entries).unwrap()
    }

    #[test]
    fn from_parts_rejects_gaps_and_decreasing_terms() {
        let e = |index, term| Entry {
            index,
            term,
            payload: Payload::Noop,
        };
        assert!(matches!(
            RaftLog::from_parts(0, 0, vec![e(1, 1), e(3, 1)]),
            Err(LogError::NotConsecutive {
                expected: 2,
                found: 3
            })
        ));
        assert!(matches!(
            RaftLog::from_parts(0, 0, vec![e(1, 2), e(2, 1)]),
            Err(LogError::TermDecreases { index: 2, .. })
        ));
        assert!(matches!(
            RaftLog::from_parts(5, 3, vec![e(6, 2)]),
            Err(LogError::TermDecreases { index: 6, .. })
        ));
    }

    #[test]
    fn term_lookup_and_bounds() {
        let log = log_of(&[1, 1, 2, 3]);
        assert_eq!(log.first_index(), 1);
        assert_eq!(log.last_index(), 4);
        assert_eq!(log.last_term(), 3);
        assert_eq!(log.term(0), Some(0));
        assert_eq!(log.term(3), Some(2));
        assert_eq!(log.term(5), None);
    }

    #[test]
    fn truncate_and_slice() {
        let mut log = log_of(&[1, 1, 2, 3]);
        log.truncate_from(3);
        assert_eq!(log.last_index(), 2);
        assert_eq!(log.slice(1, 10, usize::MAX).len(), 2);
        // A size budget smaller than one entry still yields that entry.
        assert_eq!(log.slice(1, 2, 1).len(), 1);
        assert!(log.slice(3, 4, usize::MAX).is_empty());
    }

    #[test]
    fn conflict_hint_helpers() {
        let log = log_of(&[1, 1, 2, 2, 2, 4]);
        assert_eq!(log.first_index_of_term_at(5), 3);
        assert_eq!(log.first_index_of_term_at(2), 1);
        assert_eq!(log.last_index_of_term(2, 6), Some(5));
        assert_eq!(log.last_index_of_term(3, 6), None);
        assert_eq!(log.last_index_of_term(2, 4), Some(4));
        assert_eq!(log.last_index_of_term(4, 6), Some(6));
    }

    #[test]
    fn compaction_keeps_matching_suffix_and_offsets() {
        let mut log = log_of(&[1, 1, 2, 3]);
        log.compact_to(2, 1);
        assert_eq!(log.first_index(), 3);
        assert_eq!(log.term(2), Some(1));
        assert_eq!(log.term(1), None);
        assert_eq!(log.entry(3).map(|e| e.term), Some(2));
        assert_eq!(log.last_index(), 4);
        log.truncate_from(4);
        assert_eq!(log.last_index(), 3);
        // A snapshot that conflicts with the log drops everything.
        log.compact_to(3, 9);
        assert!(log.is_empty());
        assert_eq!(log.last_index(), 3);
        assert_eq!(log.last_term(), 9);
    }

    #[test]
    fn up_to_date_rule() {
        let log = log_of(&[1, 2]);
        assert!(log.is_up_to_date(2, 2));
        assert!(log.is_up_to_date(1, 3));
        assert!(!log.is_up_to_date(5, 1));
        assert!(!log.is_up_to_date(1, 2));
    }
}
