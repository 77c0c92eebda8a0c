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

/// What a vote count says so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TallyResult {
    /// A majority granted.
    Won,
    /// A majority refused.
    Lost,
    /// Neither yet.
    Pending,
}

/// The votes (or pre-votes) a candidate has received, one per voter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VoteTally {
    granted: std::collections::BTreeSet<crate::types::NodeId>,
    rejected: std::collections::BTreeSet<crate::types::NodeId>,
}

impl VoteTally {
    /// A tally holding the candidate's own vote.
    pub fn with_self(id: crate::types::NodeId) -> Self {
        Self {
            granted: std::collections::BTreeSet::from([id]),
            rejected: std::collections::BTreeSet::new(),
        }
    }

    /// Whether `voter` has answered (either way).
    pub fn has_answered(&self, voter: crate::types::NodeId) -> bool {
        self.granted.contains(&voter) || self.rejected.contains(&voter)
    }

    /// Records `voter`'s answer (a repeated answer counts once) and says where the election
    /// stands among `voters` voters.
    pub fn record(
        &mut self,
        voter: crate::types::NodeId,
        granted: bool,
        voters: usize,
    ) -> TallyResult {
        if granted {
            self.granted.insert(voter);
        } else {
            self.rejected.insert(voter);
        }
        if has_majority(self.granted.len(), voters) {
            TallyResult::Won
        } else if has_majority(self.rejected.len(), voters) {
            TallyResult::Lost
        } else {
            TallyResult::Pending
        }
    }
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

    #[test]
    fn tally_counts_each_voter_once() {
        let mut tally = VoteTally::with_self(1);
        assert_eq!(tally.record(2, true, 5), TallyResult::Pending);
        assert_eq!(tally.record(2, true, 5), TallyResult::Pending);
        assert_eq!(tally.record(3, true, 5), TallyResult::Won);
        let mut tally = VoteTally::with_self(1);
        for voter in [2, 3] {
            assert_eq!(tally.record(voter, false, 5), TallyResult::Pending);
        }
        assert_eq!(tally.record(4, false, 5), TallyResult::Lost);
    }
}
