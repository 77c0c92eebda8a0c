//! Safety invariants, checked incrementally after every simulated step.
//!
//! - **Election safety**: at most one leader per term.
//! - **Log matching**: two durable logs holding an entry with the same index and term hold the
//!   same entries up to it (checked with a hash chain over each durable log).
//! - **Leader completeness**: a new leader's log holds every entry committed in an earlier term.
//!   (A leader of an *older* term can still be elected after a later term committed something:
//!   votes cast before the voters moved on may arrive late. It can never commit, and owes
//!   nothing to later terms.)
//! - **State machine safety**: every node applies the same entry at each index, and each node
//!   applies indexes strictly consecutively.
//! - **Commit monotonicity**: a live node's commit index never decreases.
//! - **Durable vote safety**: a node's persisted term never decreases, and within a term its
//!   persisted vote never changes once cast.
//! - **Snapshot safety**: a snapshot covers only committed entries and its state equals the
//!   state obtained by applying the committed log from the start (compared by digest); a node
//!   never installs a snapshot older than the state it has applied, and never keeps entries
//!   after a snapshot that do not continue it.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};

use raft_core::{Entry, HardState, LogIndex, PersistUpdate, RaftNode, Role, SnapshotMeta, Term};

/// Per-node bookkeeping of the checker.
#[derive(Clone, Debug, Default)]
struct NodeWatch {
    /// Last index applied by the current incarnation.
    last_applied: LogIndex,
    /// Highest commit index seen from the current incarnation.
    commit_seen: LogIndex,
    /// Hash chain of the durable log: `chain[k]` covers entries 1..=k+1.
    chain: Vec<u64>,
    /// The durable hard state.
    hard_state: HardState,
}

/// Checks the Raft safety properties as the simulation runs. The first violation is kept;
/// the simulator stops at it.
#[derive(Clone, Debug)]
pub struct Checker {
    nodes: Vec<NodeWatch>,
    /// Leader of each term, by 0-based slot.
    leaders: BTreeMap<Term, usize>,
    /// The entry applied at each index (index k at position k-1): the committed log.
    committed: Vec<Entry>,
    /// `committed_digests[k-1]`: digest of the state after applying committed entries 1..=k
    /// (the hash chain over them, which is also what the durable-log chains hold).
    committed_digests: Vec<u64>,
    /// `committed_in[k-1]`: a term by which entry k is known to have been committed (the lowest
    /// current term of any node seen applying it or declaring it committed).
    committed_in: Vec<Term>,
    /// Chain hash of every durable (index, term) seen on any node.
    chains: HashMap<(LogIndex, Term), u64>,
    violation: Option<String>,
    /// Number of invariant checks performed.
    checks: u64,
}

/// One link of the hash chain over a log: the digest of the state after applying `entry` to the
/// state whose digest is `previous` (the empty state's digest is 0). The simulator's toy state
/// machine uses the same chain, so a state can be compared with the committed log's by digest.
pub fn entry_hash(previous: u64, entry: &Entry) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    previous.hash(&mut hasher);
    entry.hash(&mut hasher);
    hasher.finish()
}

impl Checker {
    /// A checker for a cluster of `nodes` nodes.
    pub fn new(nodes: usize) -> Self {
        Self {
            nodes: vec![NodeWatch::default(); nodes],
            leaders: BTreeMap::new(),
            committed: Vec::new(),
            committed_digests: Vec::new(),
            committed_in: Vec::new(),
            chains: HashMap::new(),
            violation: None,
            checks: 0,
        }
    }

    /// The first violation found, if any.
    pub fn violation(&self) -> Option<&str> {
        self.violation.as_deref()
    }

    /// Entries known committed: applied by some node, or declared committed by some node's
    /// commit index. The committed prefix of the log.
    pub fn committed(&self) -> &[Entry] {
        &self.committed
    }

    /// Digest of the state after applying the committed entries up to `index` (0 for index 0),
    /// if they are all known.
    pub fn committed_digest(&self, index: LogIndex) -> Option<u64> {
        match index {
            0 => Some(0),
            _ => self.committed_digests.get(index as usize - 1).copied(),
        }
    }

    /// Appends a newly committed entry to the committed log, seen by a node in term `term`.
    fn push_committed(&mut self, entry: Entry, term: Term) {
        let previous = self.committed_digests.last().copied().unwrap_or(0);
        self.committed_digests.push(entry_hash(previous, &entry));
        self.committed.push(entry);
        self.committed_in.push(term);
    }

    /// A node in term `term` saw committed entry at `position`: the entry was committed by then.
    fn seen_committed(&mut self, position: usize, term: Term) {
        if let Some(bound) = self.committed_in.get_mut(position) {
            *bound = (*bound).min(term);
        }
    }

    /// Checks that a snapshot of the state after applying entries up to `index` with digest
    /// `digest` matches the committed log; returns the failure message otherwise.
    fn check_snapshot_state(&self, index: LogIndex, digest: Option<u64>) -> Result<(), String> {
        match self.committed_digest(index) {
            None => Err(format!(
                "snapshot safety: a snapshot covers index {index}, beyond the {} entries known committed",
                self.committed.len()
            )),
            Some(expected) if digest.is_some_and(|digest| digest != expected) => Err(format!(
                "snapshot safety: the snapshot state at index {index} differs from the state of the committed log"
            )),
            Some(_) => Ok(()),
        }
    }

    /// Records that node `slot` handed its service a snapshot of the state at `index` with
    /// state digest `digest`, if the service keeps one (installed from a leader, or loaded from
    /// disk at a restart). The node's next apply must be `index + 1`.
    pub fn on_install_snapshot(&mut self, slot: usize, index: LogIndex, digest: Option<u64>) {
        self.checks += 1;
        if let Err(message) = self.check_snapshot_state(index, digest) {
            self.fail(format!("node {}: {message}", slot + 1));
            return;
        }
        let watch = &mut self.nodes[slot];
        if index < watch.last_applied {
            let msg = format!(
                "snapshot safety: node {} installed a snapshot at index {index} after applying up to {}",
                slot + 1,
                watch.last_applied
            );
            self.fail(msg);
            return;
        }
        watch.last_applied = index;
    }

    fn fail(&mut self, message: String) {
        if self.violation.is_none() {
            self.violation = Some(message);
        }
    }

    /// Records that node `slot` made `update` durable. Call before applying it to the disk.
    pub fn on_persist(&mut self, slot: usize, update: &PersistUpdate) {
        self.checks += 1 + update.entries.len() as u64;
        let watch = &mut self.nodes[slot];
        if let Some(new) = update.hard_state {
            let old = watch.hard_state;
            if new.term < old.term {
                let msg = format!(
                    "durable vote safety: node {} persisted term {} after term {}",
                    slot + 1,
                    new.term,
                    old.term
                );
                self.fail(msg);
                return;
            }
            if new.term == old.term && old.voted_for.is_some() && new.voted_for != old.voted_for {
                let msg = format!(
                    "durable vote safety: node {} changed its persisted vote in term {} from {:?} to {:?}",
                    slot + 1,
                    new.term,
                    old.voted_for,
                    new.voted_for
                );
                self.fail(msg);
                return;
            }
            watch.hard_state = new;
        }
        if let Some(snapshot) = &update.snapshot {
            if let Err(message) = self.persist_snapshot(slot, snapshot.meta, update.truncate_from) {
                self.fail(message);
                return;
            }
        }
        let watch = &mut self.nodes[slot];
        if let Some(cut) = update.truncate_from {
            watch.chain.truncate(cut.saturating_sub(1) as usize);
        }
        let mut conflict = None;
        for entry in &update.entries {
            if entry.index != watch.chain.len() as LogIndex + 1 {
                conflict = Some(format!(
                    "node {} persisted entry {} after a durable log of length {}",
                    slot + 1,
                    entry.index,
                    watch.chain.len()
                ));
                break;
            }
            let previous = watch.chain.last().copied().unwrap_or(0);
            let hash = entry_hash(previous, entry);
            watch.chain.push(hash);
            match self.chains.get(&(entry.index, entry.term)) {
                Some(&seen) if seen != hash => {
                    conflict = Some(format!(
                        "log matching: node {} holds entry (index {}, term {}) with a different prefix than another node",
                        slot + 1,
                        entry.index,
                        entry.term
                    ));
                    break;
                }
                Some(_) => {}
                None => {
                    self.chains.insert((entry.index, entry.term), hash);
                }
            }
        }
        if let Some(message) = conflict {
            self.fail(message);
        }
    }

    /// The durable log of `slot` becomes a snapshot up to `meta.last_index` plus the entries
    /// after it: its chain up to there becomes the committed log's. Entries after the snapshot
    /// may stay only if the log held the snapshot's last entry, or the update truncates them.
    fn persist_snapshot(
        &mut self,
        slot: usize,
        meta: SnapshotMeta,
        truncate_from: Option<LogIndex>,
    ) -> Result<(), String> {
        let last = meta.last_index as usize;
        let Some(expected) = self.committed_digest(meta.last_index) else {
            return Err(format!(
                "snapshot safety: node {} persisted a snapshot up to {}, beyond the {} entries known committed",
                slot + 1,
                meta.last_index,
                self.committed.len()
            ));
        };
        let committed_term = self.committed.get(last.wrapping_sub(1)).map(|e| e.term);
        if last > 0 && committed_term != Some(meta.last_term) {
            return Err(format!(
                "snapshot safety: node {} persisted a snapshot ending at ({}, term {}), but the committed entry there has term {:?}",
                slot + 1,
                meta.last_index,
                meta.last_term,
                committed_term
            ));
        }
        let watch = &mut self.nodes[slot];
        let matches = watch.chain.get(last.wrapping_sub(1)) == Some(&expected);
        let keeps_suffix = truncate_from.is_none_or(|cut| cut as usize > watch.chain.len());
        if !matches && watch.chain.len() > last && keeps_suffix {
            return Err(format!(
                "snapshot safety: node {} kept log entries after a snapshot up to {} that its log did not match",
                slot + 1,
                meta.last_index
            ));
        }
        if watch.chain.len() < last {
            watch.chain.resize(last, 0);
        }
        watch.chain[..last].copy_from_slice(&self.committed_digests[..last]);
        Ok(())
    }

    /// Records that node `slot`, in term `term`, applied `entry`.
    pub fn on_apply(&mut self, slot: usize, entry: &Entry, term: Term) {
        self.checks += 1;
        let watch = &mut self.nodes[slot];
        if entry.index != watch.last_applied + 1 {
            let msg = format!(
                "state machine safety: node {} applied index {} after {}",
                slot + 1,
                entry.index,
                watch.last_applied
            );
            self.fail(msg);
            return;
        }
        watch.last_applied = entry.index;
        let position = (entry.index - 1) as usize;
        match self.committed.get(position) {
            Some(first) if first != entry => {
                let msg = format!(
                    "state machine safety: node {} applied {:?} at index {}, another node applied {:?}",
                    slot + 1,
                    entry,
                    entry.index,
                    first
                );
                self.fail(msg);
            }
            Some(_) => self.seen_committed(position, term),
            None => self.push_committed(entry.clone(), term),
        }
    }

    /// Checks a node's volatile state after it handled an input.
    pub fn after_step(&mut self, slot: usize, node: &RaftNode) {
        self.checks += 1;
        let commit = node.commit_index();
        let watch = &mut self.nodes[slot];
        if commit < watch.commit_seen {
            let msg = format!(
                "commit index of node {} went back from {} to {}",
                slot + 1,
                watch.commit_seen,
                commit
            );
            self.fail(msg);
            return;
        }
        let previously = watch.commit_seen;
        watch.commit_seen = commit;
        let term = node.term();
        // Whatever a node declares committed is committed: record it (or compare it with what
        // was recorded), so a wrong declaration is caught even before anyone applies it.
        for index in (previously + 1)..=commit {
            let Some(entry) = node.log().entry(index) else {
                continue; // compacted into a snapshot
            };
            let position = (index - 1) as usize;
            match self.committed.get(position) {
                Some(recorded) if recorded != entry => {
                    let msg = format!(
                        "state machine safety: node {} declares {:?} committed at index {index}, but {:?} was committed there",
                        slot + 1,
                        entry,
                        recorded
                    );
                    self.fail(msg);
                    return;
                }
                Some(_) => self.seen_committed(position, term),
                None if position == self.committed.len() => {
                    self.push_committed(entry.clone(), term)
                }
                None => {} // a gap can only follow a snapshot install; applies fill it in order
            }
        }
        if node.role() != Role::Leader {
            return;
        }
        match self.leaders.get(&term) {
            Some(&leader) if leader == slot => {}
            Some(&leader) => {
                let msg = format!(
                    "election safety: nodes {} and {} both lead term {}",
                    leader + 1,
                    slot + 1,
                    term
                );
                self.fail(msg);
            }
            None => {
                self.leaders.insert(term, slot);
                self.check_leader_completeness(slot, node);
            }
        }
    }

    fn check_leader_completeness(&mut self, slot: usize, node: &RaftNode) {
        let log = node.log();
        for (committed, &by_term) in self.committed.iter().zip(&self.committed_in) {
            if committed.index <= log.snapshot_index() || by_term >= node.term() {
                continue;
            }
            if log.entry(committed.index) != Some(committed) {
                let msg = format!(
                    "leader completeness: node {} leads term {} without committed entry {:?} (it holds {:?})",
                    slot + 1,
                    node.term(),
                    committed,
                    log.entry(committed.index)
                );
                self.fail(msg);
                return;
            }
        }
    }

    /// Forgets node `slot`'s volatile state (it crashed); its durable state is kept.
    pub fn on_crash(&mut self, slot: usize) {
        let watch = &mut self.nodes[slot];
        watch.last_applied = 0;
        watch.commit_seen = 0;
    }

    /// Number of invariant checks performed so far.
    pub fn checks(&self) -> u64 {
        self.checks
    }

    /// Number of terms that had a leader.
    pub fn leader_terms(&self) -> usize {
        self.leaders.len()
    }
}
