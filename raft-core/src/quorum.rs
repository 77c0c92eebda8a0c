//! Majority arithmetic as small pure functions.

use crate::types::LogIndex;

/// Number of votes that make a majority of `voters`.
pub fn majority(voters: usize) -> usize {
    voters / 2 + 1
}

/// The highest index that a majority of `match_indexes` (one per voter) have reached.
///
/// ```
/// assert_eq!(raft_core::quorum::committed_index(&mut [5, 3, 9]), 5);
/// assert_eq!(raft_core::quorum::committed_index(&mut [1, 1, 7, 7]), 1);
/// ```
pub fn committed_index(match_indexes: &mut [LogIndex]) -> LogIndex {
    if match_indexes.is_empty() {
        return 0;
    }
    match_indexes.sort_unstable_by(|a, b| b.cmp(a));
    match_indexes[majority(match_indexes.len()) - 1]
}

/// Whether `granted` votes out of `voters` make a majority.
pub fn has_majority(granted: usize, voters: usize) -> bool {
    granted >= majority(voters)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majorities() {
        assert_eq!(majority(1), 1);
        assert_eq!(majority(2), 2);
        assert_eq!(majority(3), 2);
        assert_eq!(majority(4), 3);
        assert_eq!(majority(5), 3);
        assert!(has_majority(3, 5));
        assert!(!has_majority(2, 5));
        assert_eq!(committed_index(&mut [2, 9, 4, 4, 1]), 4);
        assert_eq!(committed_index(&mut [8]), 8);
    }
}
