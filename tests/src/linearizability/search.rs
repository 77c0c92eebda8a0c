//! The Wing & Gong search, with Lowe's memoization, over one key's operations.
//!
//! Every operation contributes two entries, its call and its return, to a list sorted by time
//! (a call before a return at equal times, so touching intervals are concurrent; a return at
//! +infinity for an unknown outcome). An operation can be linearized next iff its call comes
//! before the first return still in the list: every operation whose return precedes it must
//! already be linearized. In each configuration the search lists those calls (the candidates)
//! and tries them in order; linearizing one (when its step is legal and the resulting
//! configuration is not known to fail) lifts its call and return out of the list and enters the
//! new configuration; when no candidate works, the configuration fails: it is memoized and the
//! last choice undone (re-linking its entries, which kept their own links: dancing links), and
//! the search goes on with the next candidate of the configuration before. The history is
//! linearizable iff the list empties.
//!
//! Unknown outcomes need nothing special for correctness: with a return at +infinity and an
//! unconstrained answer, such an operation can always be linearized last, after every other
//! operation, which is the same as never taking effect. (For speed, the memo treats them
//! specially: see [`Memo`].)

use super::history::{OpId, Time};
use super::memo::{Bitset, Memo};
use super::model::Step;
use super::starvation::Starvation;
use super::values::{to_u32, ValueId, Values, ABSENT};

/// One operation of the key, as the search sees it.
#[derive(Clone, Debug)]
pub(super) struct KeyOp {
    /// Its id in the history.
    pub(super) id: OpId,
    pub(super) invoked: Time,
    /// `None`: unknown outcome, read as +infinity.
    pub(super) completed: Option<Time>,
    pub(super) step: Step,
}

/// How the search ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    Linearizable,
    /// No linearization exists. `longest` is the longest linearizable prefix the search found
    /// (indices into the key's operations, in order).
    Illegal {
        longest: Vec<usize>,
    },
    /// The step budget ran out first.
    OutOfSteps,
}

/// What the search found and what it cost.
#[derive(Debug)]
pub(super) struct Outcome {
    pub(super) verdict: Verdict,
    /// Loop iterations: one per configuration entered, candidate tried or choice undone.
    pub(super) steps: u64,
    /// Failed configurations memoized.
    pub(super) configurations: usize,
}

const NONE: u32 = u32::MAX;

/// The doubly linked list of call and return entries. Node 0 is the head sentinel and the last
/// node the tail sentinel.
struct Entries {
    next: Vec<u32>,
    prev: Vec<u32>,
    /// The operation of each entry (`NONE` for sentinels).
    op: Vec<u32>,
    /// For a call entry, its return entry; `NONE` for returns and sentinels.
    ret: Vec<u32>,
}

impl Entries {
    fn new(ops: &[KeyOp]) -> Entries {
        // (time, after all finite times?, return after call, op)
        let mut events: Vec<(bool, Time, bool, usize)> = Vec::with_capacity(2 * ops.len());
        for (i, op) in ops.iter().enumerate() {
            events.push((false, op.invoked, false, i));
            match op.completed {
                Some(t) => events.push((false, t, true, i)),
                None => events.push((true, 0, true, i)),
            }
        }
        events.sort_unstable();
        let len = events.len() + 2;
        let mut entries = Entries {
            next: (1..=len).map(to_u32).collect(),
            prev: (0..len).map(|i| to_u32(i.wrapping_sub(1))).collect(),
            op: vec![NONE; len],
            ret: vec![NONE; len],
        };
        entries.prev[0] = NONE;
        entries.next[len - 1] = NONE;
        let mut call_node = vec![0; ops.len()];
        for (k, &(_, _, is_return, i)) in events.iter().enumerate() {
            let node = k + 1;
            entries.op[node] = to_u32(i);
            if is_return {
                entries.ret[call_node[i]] = to_u32(node);
            } else {
                call_node[i] = node;
            }
        }
        entries
    }

    fn head_next(&self) -> u32 {
        self.next[0]
    }

    fn is_tail(&self, node: u32) -> bool {
        node as usize == self.next.len() - 1
    }

    fn unlink(&mut self, n: u32) {
        let (p, x) = (self.prev[n as usize], self.next[n as usize]);
        self.next[p as usize] = x;
        self.prev[x as usize] = p;
    }

    fn relink(&mut self, n: u32) {
        let (p, x) = (self.prev[n as usize], self.next[n as usize]);
        self.next[p as usize] = n;
        self.prev[x as usize] = n;
    }

    /// Removes a call entry and its return entry.
    fn lift(&mut self, call: u32) {
        self.unlink(call);
        self.unlink(self.ret[call as usize]);
    }

    /// Undoes [`Entries::lift`] (the most recent one still in effect).
    fn unlift(&mut self, call: u32) {
        self.relink(self.ret[call as usize]);
        self.relink(call);
    }
}

/// Which way the search goes next.
enum Move {
    /// Arrived at a new configuration: list what can come next.
    Enter,
    /// Try the candidates `buf[idx..end]` of the current configuration (`buf[start..end]`).
    Try {
        start: usize,
        end: usize,
        idx: usize,
    },
    /// The current configuration fails: record it and undo the last choice.
    Backtrack,
}

/// A choice on the current path.
struct Frame {
    /// The call entry of the operation linearized.
    call: u32,
    /// The state before it.
    before: ValueId,
    /// The candidates of the configuration it left, `buf[start..end]`, and its own index there.
    start: usize,
    end: usize,
    idx: usize,
    /// A read-only step taken without considering alternatives.
    forced: bool,
}

/// The linearized set, split between completed operations and those of unknown outcome (see
/// [`Memo`]).
struct Linearized {
    done: Bitset,
    unknown: Bitset,
    /// For each operation: whether its outcome is unknown, and its index in its set.
    slot: Vec<(bool, usize)>,
}

impl Linearized {
    fn new(ops: &[KeyOp]) -> Linearized {
        let (mut done, mut unknown) = (0, 0);
        let slot = ops
            .iter()
            .map(|o| {
                let counter = if o.completed.is_some() {
                    &mut done
                } else {
                    &mut unknown
                };
                *counter += 1;
                (o.completed.is_none(), *counter - 1)
            })
            .collect();
        Linearized {
            done: Bitset::new(done),
            unknown: Bitset::new(unknown),
            slot,
        }
    }

    fn set(&mut self, op: usize) {
        match self.slot[op] {
            (false, i) => self.done.set(i),
            (true, i) => self.unknown.set(i),
        }
    }

    fn clear(&mut self, op: usize) {
        match self.slot[op] {
            (false, i) => self.done.clear(i),
            (true, i) => self.unknown.clear(i),
        }
    }

    fn known_to_fail(&self, memo: &Memo, state: ValueId) -> bool {
        memo.covers(&self.done, &self.unknown, state)
    }

    fn record_failure(&self, memo: &mut Memo, state: ValueId) {
        memo.insert(&self.done, &self.unknown, state);
    }
}

/// Searches for a linearization of `ops` (sorted by invocation), spending at most `budget`
/// steps if given.
///
/// Candidates are tried in invocation order, as porcupine does (measured better than earliest
/// completion first, mostly because an operation of unknown outcome that did take effect
/// usually did so soon after its invocation). Beyond the plain search:
/// - a read-only step that can come next and is legal is taken without trying alternatives: if
///   any linearization exists, one takes it now (it changes nothing, and moving it earlier
///   breaks no real-time order, since nothing still waiting completed before it was invoked);
/// - doomed configurations are abandoned early ([`Starvation`]);
/// - failures are memoized with subsumption over operations of unknown outcome ([`Memo`]).
pub(super) fn search(ops: &[KeyOp], values: &mut Values, budget: Option<u64>) -> Outcome {
    let mut entries = Entries::new(ops);
    let read_only: Vec<bool> = ops.iter().map(|o| o.step.is_read_only()).collect();

    let mut starvation = Starvation::new(ops, values);
    let mut linearized = Linearized::new(ops);
    let mut memo = Memo::default();
    let mut frames: Vec<Frame> = Vec::new();
    let mut buf: Vec<u32> = Vec::new();
    let mut longest: Vec<usize> = Vec::new();
    let mut state = ABSENT;
    let mut steps: u64 = 0;
    let mut next = Move::Enter;
    let op_of = |entries: &Entries, call: u32| entries.op[call as usize] as usize;
    let verdict = loop {
        if budget.is_some_and(|b| steps >= b) {
            break Verdict::OutOfSteps;
        }
        steps += 1;
        next = match next {
            Move::Enter => {
                if entries.is_tail(entries.head_next()) {
                    break Verdict::Linearizable;
                }
                if starvation.doomed(state) {
                    next = Move::Backtrack;
                    continue;
                }
                // The candidates: every call before the first remaining return.
                let start = buf.len();
                let mut n = entries.head_next();
                while entries.ret[n as usize] != NONE {
                    buf.push(n);
                    n = entries.next[n as usize];
                }
                let end = buf.len();
                let forced = (start..end).find(|&k| {
                    let op = op_of(&entries, buf[k]);
                    read_only[op] && ops[op].step.apply(values, state).is_ok()
                });
                if let Some(idx) = forced {
                    let call = buf[idx];
                    let op = op_of(&entries, call);
                    linearized.set(op);
                    if linearized.known_to_fail(&memo, state) {
                        // Taking it fails, so everything here does.
                        linearized.clear(op);
                        buf.truncate(start);
                        Move::Backtrack
                    } else {
                        frames.push(Frame {
                            call,
                            before: state,
                            start,
                            end,
                            idx,
                            forced: true,
                        });
                        entries.lift(call);
                        starvation.place(op);
                        Move::Enter
                    }
                } else {
                    Move::Try {
                        start,
                        end,
                        idx: start,
                    }
                }
            }
            Move::Try { start, end, idx } if idx < end => {
                let call = buf[idx];
                let op = op_of(&entries, call);
                let mut moved = false;
                if let Ok(after) = ops[op].step.apply(values, state) {
                    linearized.set(op);
                    if linearized.known_to_fail(&memo, after) {
                        linearized.clear(op);
                    } else {
                        frames.push(Frame {
                            call,
                            before: state,
                            start,
                            end,
                            idx,
                            forced: false,
                        });
                        state = after;
                        entries.lift(call);
                        starvation.place(op);
                        moved = true;
                    }
                }
                if moved {
                    Move::Enter
                } else {
                    Move::Try {
                        start,
                        end,
                        idx: idx + 1,
                    }
                }
            }
            Move::Try { start, .. } => {
                buf.truncate(start);
                Move::Backtrack
            }
            Move::Backtrack => {
                if frames.len() > longest.len() {
                    longest.clear();
                    longest.extend(frames.iter().map(|f| op_of(&entries, f.call)));
                }
                linearized.record_failure(&mut memo, state);
                let Some(f) = frames.pop() else {
                    break Verdict::Illegal { longest };
                };
                entries.unlift(f.call);
                let op = op_of(&entries, f.call);
                starvation.unplace(op);
                linearized.clear(op);
                state = f.before;
                if f.forced {
                    // Taking it was as good as any alternative, so they fail too.
                    buf.truncate(f.start);
                    Move::Backtrack
                } else {
                    Move::Try {
                        start: f.start,
                        end: f.end,
                        idx: f.idx + 1,
                    }
                }
            }
        };
    };
    Outcome {
        verdict,
        steps,
        configurations: memo.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linearizability::history::{Op, Output};

    fn op(values: &mut Values, t: (Time, Option<Time>), op: Op, out: Option<Output>) -> KeyOp {
        KeyOp {
            id: OpId(0),
            invoked: t.0,
            completed: t.1,
            step: Step::compile(values, &op, out.as_ref()),
        }
    }

    /// Walks the list from the head, giving (op, is call) per entry.
    fn walk(e: &Entries) -> Vec<(u32, bool)> {
        let mut out = Vec::new();
        let mut n = e.head_next();
        while !e.is_tail(n) {
            out.push((e.op[n as usize], e.ret[n as usize] != NONE));
            n = e.next[n as usize];
        }
        out
    }

    #[test]
    fn entries_sort_calls_before_returns_and_unknown_last() {
        let mut v = Values::new();
        let ops = [
            op(&mut v, (0, None), Op::put("k", "a"), None),
            op(&mut v, (0, Some(5)), Op::put("k", "b"), Some(Output::Ok)),
            op(&mut v, (5, Some(6)), Op::put("k", "c"), Some(Output::Ok)),
        ];
        let mut e = Entries::new(&ops);
        let all = vec![
            (0, true),
            (1, true),
            (2, true), // invoked at 5: before the return at 5
            (1, false),
            (2, false),
            (0, false), // unknown: +infinity
        ];
        assert_eq!(walk(&e), all);
        let call_of_2 = 3;
        e.lift(call_of_2);
        assert_eq!(walk(&e), vec![(0, true), (1, true), (1, false), (0, false)]);
        e.lift(1);
        assert_eq!(walk(&e), vec![(1, true), (1, false)]);
        e.unlift(1);
        e.unlift(call_of_2);
        assert_eq!(walk(&e), all);
    }

    #[test]
    fn search_finds_the_one_interleaving_that_works() {
        let mut v = Values::new();
        // Put a [0,100] and Put b [10,20]; a Get at [30,40] reads a, so b went first.
        let ops = [
            op(&mut v, (0, Some(100)), Op::put("k", "a"), Some(Output::Ok)),
            op(&mut v, (10, Some(20)), Op::put("k", "b"), Some(Output::Ok)),
            op(
                &mut v,
                (30, Some(40)),
                Op::get("k"),
                Some(Output::found("a")),
            ),
        ];
        let out = search(&ops, &mut v, None);
        assert_eq!(out.verdict, Verdict::Linearizable);
    }

    #[test]
    fn search_reports_the_longest_prefix_and_respects_the_budget() {
        let mut v = Values::new();
        let ops = [
            op(&mut v, (0, Some(1)), Op::put("k", "a"), Some(Output::Ok)),
            op(&mut v, (2, Some(3)), Op::put("k", "b"), Some(Output::Ok)),
            op(&mut v, (4, Some(5)), Op::get("k"), Some(Output::found("a"))),
        ];
        let out = search(&ops, &mut v, None);
        assert_eq!(
            out.verdict,
            Verdict::Illegal {
                longest: vec![0, 1]
            }
        );
        let out = search(&ops, &mut v, Some(2));
        assert_eq!(out.verdict, Verdict::OutOfSteps);
        assert_eq!(out.steps, 2);
    }
}
