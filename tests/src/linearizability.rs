//! A linearizability checker for key/value histories (the algorithm of porcupine).
//!
//! Record what clients did in a [`History`] (each operation's invocation and completion times,
//! and the answer), then [`check`] it: the history is linearizable iff every operation can be
//! placed at one instant between its invocation and its completion so that, in that order,
//! each answer is what a single sequential key/value map would give.
//!
//! How:
//! - **P-compositionality.** Every operation touches one key and keys are independent, so the
//!   history is linearizable iff each key's sub-history is. Keys are checked one by one, in byte
//!   order, and the first illegal key is reported.
//! - **Wing & Gong's search with Lowe's memoization** on each key, as porcupine does it: a
//!   depth-first search for a linearization over a doubly linked list of call and return
//!   entries (lifted out and restored as choices are made and undone), trying candidates in
//!   invocation order and skipping any (set of linearized operations, value) configuration
//!   known to fail. Sets are bitsets; values are interned so the state is a `u32`.
//! - **Three prunings porcupine does not have**, each sound (see `search`, `starvation` and
//!   `memo` for the arguments) and each checked against a brute-force reference in the tests:
//!   a read that can come next and is legal is taken without trying alternatives; a
//!   configuration where some waiting read can no longer be satisfied (every write that could
//!   produce its value is placed) is abandoned at once, not when the search reaches the read's
//!   deadline; and a failed configuration also rules out those that differ from it only by
//!   extra operations of unknown outcome linearized.
//! - **Unknown outcomes** ([`History::unknown`], or still pending): as in porcupine, the
//!   operation's return is at +infinity and its answer unconstrained, so it may take effect at
//!   any point after its invocation, or never (by being linearized after everything else).
//!   Each one stays a candidate for the rest of the search, which multiplies the work, so those
//!   that cannot matter are left out first ([`CheckStats::dropped`]): a `Get` of unknown
//!   outcome (it constrains nothing), and a write whose value no client ever saw (nor compared
//!   against), which can always be linearized last instead. (A `Delete` that reports the key
//!   existed could have seen that such a write created the key; on a key with one, the write
//!   is searched as a mere "make the key exist if absent" instead.)
//! - **Real-time order:** A precedes B iff A completed strictly before B was invoked; equal
//!   times are concurrent (see [`History`]).
//! - **Budget:** the search on one key stops after a given number of steps (one step: one
//!   configuration entered, candidate tried or choice undone) and the result is then
//!   [`CheckResult::Timeout`] unless another key is illegal. Steps, not wall-clock time, so a
//!   verdict never depends on the machine's load. The budget is per key, so a pathological key
//!   does not hide a violation on another; a check costs at most keys x budget steps.
//!
//! An illegal key comes with a [`Violation`]: the longest linearizable prefix found (with the
//! value after each operation), the reads that nothing left could satisfy, and why each
//! operation that real time allows next cannot come next.
//!
//! ```
//! use raft_tests::linearizability::{check, CheckResult, History, Op, Output};
//! let mut h = History::new();
//! h.record(1, 0, 10, Op::put("x", "1"), Output::Ok).unwrap();
//! h.record(2, 20, 30, Op::put("x", "2"), Output::Ok).unwrap();
//! h.record(3, 40, 50, Op::get("x"), Output::found("1")).unwrap(); // stale
//! let result = check(&h, Some(1_000_000));
//! assert_eq!(result.illegal_key(), Some(&b"x"[..]));
//! assert!(result.to_string().contains("only #0 could write that value"));
//! println!("{result}"); // the prefix Put 1, Put 2, and why the Get cannot follow
//! // key "x" is not linearizable (3 operations on it, 0 of unknown outcome)
//! // longest linearizable prefix found: 2 of 3 operations, with the value after each:
//! //   #0 client 1 [0, 10] Put("x", "1") -> ok  => "1"
//! //   #1 client 2 [20, 30] Put("x", "2") -> ok  => "2"
//! // after it the key holds "2", and the remaining operation cannot come next.
//! // reads that nothing left can satisfy (...):
//! //   #2 client 3 [40, 50] Get("x") -> "1": only #0 could write that value, and it is placed
//! // operations that could come next, and why they fail:
//! //   #2 client 3 [40, 50] Get("x") -> "1": the key holds another value
//! ```

mod history;
mod memo;
mod model;
mod prepare;
mod report;
mod search;
mod starvation;
mod values;

use std::collections::BTreeMap;

pub use history::{ClientId, Completion, History, HistoryError, Op, OpId, Operation, Output, Time};
pub use report::{CheckResult, Violation};

use search::Verdict;

/// A step budget per key that decides realistic histories with room to spare (10 clients and
/// 5,000 operations over 10 keys take about 10,000 steps in all; 20 clients hammering one key
/// with 3,000 operations about a million) while bounding a pathological key to about a second
/// (a step costs roughly 0.1 to 0.2 µs).
pub const DEFAULT_STEPS_PER_KEY: u64 = 10_000_000;

/// What a check cost.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckStats {
    /// Keys searched (all of them, unless an illegal key stopped the check early).
    pub keys: usize,
    /// Operations searched.
    pub operations: usize,
    /// Operations of unknown outcome left out because no answer could reveal them (see the
    /// module's documentation).
    pub dropped: usize,
    /// Writes of unknown outcome whose value no answer could reveal, but whose creating the key
    /// a `Delete` could have seen: searched as "make the key exist", which is much cheaper.
    pub touched: usize,
    /// Search steps, over all keys.
    pub steps: u64,
    /// The most steps one key took.
    pub max_key_steps: u64,
    /// Configurations memoized, over all keys.
    pub configurations: usize,
    /// Distinct values interned, over all keys.
    pub values: usize,
}

/// Checks that `history` is linearizable, spending at most `steps_per_key` search steps on
/// each key (`None`: no limit; see [`DEFAULT_STEPS_PER_KEY`]).
pub fn check(history: &History, steps_per_key: Option<u64>) -> CheckResult {
    check_with_stats(history, steps_per_key).0
}

/// [`check`], also saying what the check cost.
pub fn check_with_stats(
    history: &History,
    steps_per_key: Option<u64>,
) -> (CheckResult, CheckStats) {
    let mut by_key: BTreeMap<&[u8], Vec<OpId>> = BTreeMap::new();
    for (i, operation) in history.operations().iter().enumerate() {
        by_key.entry(operation.op.key()).or_default().push(OpId(i));
    }
    let mut stats = CheckStats::default();
    let mut undecided = Vec::new();
    for (key, ids) in by_key {
        let prepare::Prepared {
            ops,
            mut values,
            dropped,
            touched,
        } = prepare::prepare(history, &ids);
        stats.dropped += dropped;
        stats.touched += touched;
        let outcome = search::search(&ops, &mut values, steps_per_key);
        stats.keys += 1;
        stats.operations += ops.len();
        stats.steps += outcome.steps;
        stats.max_key_steps = stats.max_key_steps.max(outcome.steps);
        stats.configurations += outcome.configurations;
        stats.values += values.len();
        match outcome.verdict {
            Verdict::Linearizable => {}
            Verdict::OutOfSteps => undecided.push(key.to_vec()),
            Verdict::Illegal { longest } => {
                let violation = report::violation(history, key, &ops, &mut values, &longest);
                return (CheckResult::Illegal(Box::new(violation)), stats);
            }
        }
    }
    let result = if undecided.is_empty() {
        CheckResult::Ok
    } else {
        CheckResult::Timeout { keys: undecided }
    };
    (result, stats)
}
