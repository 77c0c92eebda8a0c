//! One key's operations made ready for the search: compiled against the key's values, sorted,
//! and rid of operations of unknown outcome that cannot matter.
//!
//! An operation of unknown outcome is a candidate from its invocation to the end of the search,
//! so each one multiplies the configurations to explore. Two kinds can be left out without
//! changing the verdict, because linearizing them last (after everything, where they are always
//! legal) is as good as any other place:
//!
//! - a `Get`: it neither changes nor constrains the state;
//! - a write whose effect no answer could reveal. After a `Put(u)` (or a swap to `u`) the key's
//!   value starts with `u` until it is next overwritten; after an `Append(a)` it contains `a`.
//!   If no value any client saw (a `Get`'s answer, a `CompareAndSwap`'s previous value) and no
//!   `CompareAndSwap`'s expected value starts with `u` (contains `a`), then in any linearization
//!   nothing between the write and the next overwrite observes the value, except operations of
//!   unknown outcome that had no effect (a swap that did not happen): moving the write and
//!   those to the end yields a linearization too. Such writes are typically requests that
//!   never took effect, or whose effect was overwritten before anyone looked.
//!
//! One observation escapes that argument: a `Delete` that reports the key existed sees that
//! the key is present, which such a write may have caused (on an absent key). On a key with
//! such a `Delete`, the write is instead replaced by [`Step::Touch`], which makes an absent key
//! hold a value nobody can have seen and leaves a present key alone: that keeps the only thing
//! an answer could reveal (presence), and is far cheaper to search, since on a present key it
//! changes nothing (so the memo's subsumption prunes it). A swap from an expected value never
//! makes an absent key exist, so it is still left out.
//!
//! `Delete`s of unknown outcome are always kept.

use super::history::{History, Op, OpId, Output};
use super::model::Step;
use super::search::KeyOp;
use super::values::Values;

/// A key's operations, ready for the search.
pub(super) struct Prepared {
    /// Sorted by invocation (so that early operations fill the low bits of the bitsets).
    pub(super) ops: Vec<KeyOp>,
    pub(super) values: Values,
    /// Operations of unknown outcome left out.
    pub(super) dropped: usize,
    /// Operations of unknown outcome replaced by [`Step::Touch`].
    pub(super) touched: usize,
}

/// What the key's answers reveal about its values.
struct Evidence<'a> {
    /// Values seen by clients, and values compared against.
    seen: Vec<&'a [u8]>,
    /// Whether some `Delete` reported that the key existed.
    deleted_something: bool,
}

/// What becomes of an operation of unknown outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Keep,
    Drop,
    /// Replace by [`Step::Touch`].
    Touch,
}

impl Evidence<'_> {
    /// What to do with `op`, of unknown outcome.
    fn fate(&self, op: &Op) -> Fate {
        let unseen = match op {
            Op::Get { .. } => return Fate::Drop,
            Op::Delete { .. } => return Fate::Keep,
            Op::Put { value: u, .. } | Op::CompareAndSwap { new: u, .. } => {
                !self.seen.iter().any(|v| v.starts_with(u))
            }
            Op::Append { arg, .. } => {
                !arg.is_empty() && !self.seen.iter().any(|v| contains(v, arg))
            }
        };
        // Only a write that can make an absent key exist can matter to a Delete that found
        // the key: a swap from some expected value happens on a present key only.
        let creates = !matches!(
            op,
            Op::CompareAndSwap {
                expected: Some(_),
                ..
            }
        );
        match (unseen, creates && self.deleted_something) {
            (false, _) => Fate::Keep,
            (true, false) => Fate::Drop,
            (true, true) => Fate::Touch,
        }
    }
}

/// Whether `needle` (non-empty) occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    let last_start = haystack.len().saturating_sub(needle.len());
    haystack.len() >= needle.len()
        && haystack[..=last_start]
            .iter()
            .enumerate()
            .any(|(i, &b)| b == first && haystack[i + 1..].starts_with(rest))
}

/// Prepares the operations `ids` of `history` (all on one key).
pub(super) fn prepare(history: &History, ids: &[OpId]) -> Prepared {
    let operations: Vec<_> = ids
        .iter()
        .filter_map(|&id| history.get(id).map(|o| (id, o)))
        .collect();
    let mut evidence = Evidence {
        seen: Vec::new(),
        deleted_something: false,
    };
    for (_, o) in &operations {
        if let Op::CompareAndSwap {
            expected: Some(e), ..
        } = &o.op
        {
            evidence.seen.push(e);
        }
        match o.output() {
            Some(
                Output::Value(Some(v))
                | Output::Cas {
                    previous: Some(v), ..
                },
            ) => evidence.seen.push(v),
            Some(Output::Deleted(true)) => evidence.deleted_something = true,
            _ => {}
        }
    }
    let mut values = Values::new();
    let mut ops = Vec::with_capacity(operations.len());
    let (mut dropped, mut touched) = (0, 0);
    for &(id, o) in &operations {
        let fate = match o.completed_at() {
            Some(_) => Fate::Keep,
            None => evidence.fate(&o.op),
        };
        let step = match fate {
            Fate::Drop => {
                dropped += 1;
                continue;
            }
            Fate::Touch => {
                touched += 1;
                Step::Touch
            }
            Fate::Keep => Step::compile(&mut values, &o.op, o.output()),
        };
        ops.push(KeyOp {
            id,
            invoked: o.invoked,
            completed: o.completed_at(),
            step,
        });
    }
    ops.sort_by_key(|o| (o.invoked, o.completed.is_none(), o.completed, o.id));
    Prepared {
        ops,
        values,
        dropped,
        touched,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substring_search() {
        assert!(contains(b"abcd", b"cd"));
        assert!(contains(b"abcd", b"abcd"));
        assert!(contains(b"abcd", b"a"));
        assert!(!contains(b"abcd", b"abcde"));
        assert!(!contains(b"abcd", b"ce"));
        assert!(!contains(b"", b"a"));
        assert!(contains(b"aab", b"ab"));
    }

    /// (dropped, touched)
    fn reduced(recs: &[(Op, Option<Output>)]) -> (usize, usize) {
        let mut h = History::new();
        for (t, (op, out)) in recs.iter().enumerate() {
            let id = h.invoke(1, t as u64, op.clone());
            match out {
                Some(out) => h.complete(id, t as u64, out.clone()).unwrap(),
                None => h.unknown(id).unwrap(),
            }
        }
        let ids: Vec<OpId> = (0..h.len()).map(OpId).collect();
        let p = prepare(&h, &ids);
        (p.dropped, p.touched)
    }

    fn dropped(recs: &[(Op, Option<Output>)]) -> usize {
        let (dropped, touched) = reduced(recs);
        assert_eq!(touched, 0);
        dropped
    }

    #[test]
    fn only_writes_nobody_could_have_seen_are_dropped() {
        let get = |v: &str| (Op::get("k"), Some(Output::found(v)));
        assert_eq!(dropped(&[(Op::get("k"), None)]), 1);
        assert_eq!(dropped(&[(Op::put("k", "u"), None), get("x")]), 1);
        assert_eq!(dropped(&[(Op::put("k", "u"), None), get("ux")]), 0);
        assert_eq!(dropped(&[(Op::put("k", "u"), None), get("xu")]), 1);
        assert_eq!(dropped(&[(Op::append("k", "a"), None), get("xay")]), 0);
        assert_eq!(dropped(&[(Op::append("k", "a"), None), get("xy")]), 1);
        assert_eq!(dropped(&[(Op::append("k", ""), None), get("xy")]), 0);
        assert_eq!(dropped(&[(Op::cas("k", None, "n"), None), get("m")]), 1);
        assert_eq!(dropped(&[(Op::cas("k", None, "n"), None), get("n")]), 0);
        assert_eq!(dropped(&[(Op::delete("k"), None), get("x")]), 0);
        // A compare against the value could reveal it.
        let cas = |e: &[u8]| {
            let answer = Output::cas(false, Some(b"q"));
            (Op::cas("k", Some(e), "z"), Some(answer))
        };
        assert_eq!(dropped(&[(Op::put("k", "u"), None), cas(b"u")]), 0);
        assert_eq!(dropped(&[(Op::append("k", "a"), None), cas(b"a")]), 0);
        let seen_by_cas = (
            Op::cas("k", None, "z"),
            Some(Output::cas(false, Some(b"u"))),
        );
        assert_eq!(dropped(&[(Op::put("k", "u"), None), seen_by_cas]), 0);
    }

    #[test]
    fn a_delete_that_found_the_key_turns_drops_into_touches() {
        let deleted = || (Op::delete("k"), Some(Output::Deleted(true)));
        assert_eq!(reduced(&[(Op::put("k", "u"), None), deleted()]), (0, 1));
        assert_eq!(reduced(&[(Op::append("k", "a"), None), deleted()]), (0, 1));
        assert_eq!(
            reduced(&[(Op::cas("k", None, "n"), None), deleted()]),
            (0, 1)
        );
        // A swap from an expected value never makes the key exist.
        assert_eq!(
            reduced(&[(Op::cas("k", Some(b"e"), "n"), None), deleted()]),
            (1, 0)
        );
        // Seen writes are kept, as ever.
        let get = (Op::get("k"), Some(Output::found("u")));
        assert_eq!(
            reduced(&[(Op::put("k", "u"), None), deleted(), get]),
            (0, 0)
        );
        // A Delete that did not find the key, or did not say, changes nothing.
        let not_found = (Op::delete("k"), Some(Output::Deleted(false)));
        assert_eq!(reduced(&[(Op::put("k", "u"), None), not_found]), (1, 0));
    }
}
