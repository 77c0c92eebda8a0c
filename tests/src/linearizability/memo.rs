//! Lowe's memoization: the (linearized operations, state) configurations the search has found
//! to fail. Reaching one again can only repeat work already done, so the search skips it.
//!
//! Sets of linearized operations are bitsets over a key's operations numbered in invocation
//! order. In a long history the early operations are soon all linearized and the late ones not
//! yet touched, so each configuration is stored in a compact form: the index of the first word
//! that is not all ones, and the words from there to the last non-zero one. Stored bitsets share
//! one arena, and the table maps a precomputed 64-bit hash to a chain of entries.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::values::{to_u32, ValueId};

/// A set of operation indices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Bitset {
    words: Vec<u64>,
}

impl Bitset {
    /// An empty set able to hold `0..n`.
    pub(super) fn new(n: usize) -> Bitset {
        Bitset {
            words: vec![0; n.div_ceil(64)],
        }
    }

    pub(super) fn set(&mut self, i: usize) {
        self.words[i / 64] |= 1 << (i % 64);
    }

    pub(super) fn clear(&mut self, i: usize) {
        self.words[i / 64] &= !(1 << (i % 64));
    }

    /// The compact form: `(lo, words[lo..hi])` with every word before `lo` all ones and every
    /// word from `hi` on zero. Two sets of the same capacity are equal iff their forms are.
    fn compact(&self) -> (usize, &[u64]) {
        let lo = self
            .words
            .iter()
            .position(|&w| w != u64::MAX)
            .unwrap_or(self.words.len());
        let hi = self.words[lo..]
            .iter()
            .rposition(|&w| w != 0)
            .map_or(lo, |i| lo + i + 1);
        (lo, &self.words[lo..hi])
    }
}

/// A hasher for keys that are already well-mixed hashes.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not used for u64 keys; a plain fold keeps it correct for anything else.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// No next entry in a chain.
const NONE: u32 = u32::MAX;

#[derive(Debug)]
struct Entry {
    /// Where the entry's words start in the arena: `len` words of the compact completed set
    /// (whose first word is word `lo` of the set), then the unknown set.
    start: usize,
    lo: u32,
    len: u32,
    state: ValueId,
    next: u32,
}

/// Configurations known to fail.
///
/// A configuration is the set of operations linearized, split in two: those that completed and
/// those of unknown outcome, and the state. The failures are stored, and a configuration is
/// known to fail if a stored one has the same completed set and state and a **subset** of its
/// unknown-outcome operations: anything the larger one can still do, the smaller one can too,
/// since the extra operations, which have no deadline and whose answers are unconstrained, can
/// be linearized last.
#[derive(Default)]
pub(super) struct Memo {
    /// The compact completed sets, then for each entry its unknown set in full
    /// (`unknown_words` words), in one arena.
    words: Vec<u64>,
    entries: Vec<Entry>,
    heads: HashMap<u64, u32, BuildHasherDefault<PassThrough>>,
}

impl Memo {
    /// Records that `(done, unknown, state)` fails.
    pub(super) fn insert(&mut self, done: &Bitset, unknown: &Bitset, state: ValueId) {
        let (lo, words) = done.compact();
        let hash = hash(lo, words, state);
        let head = self.heads.get(&hash).copied().unwrap_or(NONE);
        self.entries.push(Entry {
            start: self.words.len(),
            lo: to_u32(lo),
            len: to_u32(words.len()),
            state,
            next: head,
        });
        self.words.extend_from_slice(words);
        self.words.extend_from_slice(&unknown.words);
        self.heads.insert(hash, to_u32(self.entries.len() - 1));
    }

    /// Whether `(done, unknown, state)` is known to fail.
    pub(super) fn covers(&self, done: &Bitset, unknown: &Bitset, state: ValueId) -> bool {
        let (lo, words) = done.compact();
        let Some(&head) = self.heads.get(&hash(lo, words, state)) else {
            return false;
        };
        let lo = to_u32(lo);
        let mut at = head;
        while at != NONE {
            let e = &self.entries[at as usize];
            let stored = &self.words[e.start..];
            let (stored_done, stored_unknown) = stored.split_at(e.len as usize);
            if e.lo == lo
                && e.state == state
                && stored_done == words
                && stored_unknown
                    .iter()
                    .zip(&unknown.words)
                    .all(|(&s, &u)| s & !u == 0)
            {
                return true;
            }
            at = e.next;
        }
        false
    }

    /// How many failed configurations are stored.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}

fn hash(lo: usize, words: &[u64], state: ValueId) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = (lo as u64) ^ (u64::from(state) << 32);
    for &w in words {
        h = (h.rotate_left(23) ^ w).wrapping_mul(K);
    }
    // MurmurHash3's finalizer, so every bit of the result depends on every input bit.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_form_is_canonical() {
        let mut s = Bitset::new(200);
        assert_eq!(s.compact(), (0, &[][..]));
        for i in 0..64 {
            s.set(i);
        }
        assert_eq!(s.compact(), (1, &[][..]));
        s.set(130);
        assert_eq!(s.compact(), (1, &[0, 1 << 2][..]));
        s.clear(3);
        assert_eq!(s.compact(), (0, &[!(1 << 3), 0, 1 << 2][..]));
        let mut full = Bitset::new(128);
        (0..128).for_each(|i| full.set(i));
        assert_eq!(full.compact(), (2, &[][..]));
    }

    #[test]
    fn memo_tells_configurations_apart() {
        let mut memo = Memo::default();
        let none = Bitset::new(0);
        let mut s = Bitset::new(300);
        assert!(!memo.covers(&s, &none, 0));
        memo.insert(&s, &none, 0);
        assert!(memo.covers(&s, &none, 0));
        assert!(!memo.covers(&s, &none, 1), "same set, other state");
        s.set(299);
        assert!(!memo.covers(&s, &none, 0), "other set, same state");
        memo.insert(&s, &none, 0);
        s.clear(299);
        s.set(5);
        assert!(!memo.covers(&s, &none, 0));
        (0..64).for_each(|i| s.set(i));
        assert!(!memo.covers(&s, &none, 0));
        memo.insert(&s, &none, 0);
        assert!(memo.covers(&s, &none, 0));
        assert_eq!(memo.len(), 3);
    }

    #[test]
    fn a_failure_covers_supersets_of_its_unknown_operations() {
        let mut memo = Memo::default();
        let done = Bitset::new(10);
        let mut unknown = Bitset::new(100);
        unknown.set(3);
        memo.insert(&done, &unknown, 7);
        assert!(memo.covers(&done, &unknown, 7));
        unknown.set(90);
        assert!(memo.covers(&done, &unknown, 7), "a superset fails too");
        assert!(!memo.covers(&done, &unknown, 8), "but not in another state");
        unknown.clear(3);
        assert!(!memo.covers(&done, &unknown, 7), "nor a set without 3");
        let mut other_done = done.clone();
        other_done.set(1);
        unknown.set(3);
        assert!(!memo.covers(&other_done, &unknown, 7));
    }

    #[test]
    fn hash_collisions_are_resolved_by_comparison() {
        let mut memo = Memo::default();
        let none = Bitset::new(0);
        let mut a = Bitset::new(64);
        a.set(1);
        let mut b = Bitset::new(64);
        b.set(2);
        // Plant b's entry under a's hash: lookups must still compare the stored configuration.
        let (lo, words) = a.compact();
        let fake_hash = hash(lo, words, 0);
        memo.heads.insert(fake_hash, 0);
        memo.entries.push(Entry {
            start: 0,
            lo: 0,
            len: 1,
            state: 0,
            next: NONE,
        });
        memo.words.push(b.words[0]);
        assert!(!memo.covers(&a, &none, 0), "a differs from the planted b");
        memo.insert(&a, &none, 0);
        assert!(memo.covers(&a, &none, 0));
    }
}
