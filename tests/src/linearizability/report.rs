//! What a check concludes, and the explanation of a violation.

use std::fmt::{self, Write as _};

use super::history::{Bytes, History, OpId};
use super::search::KeyOp;
use super::starvation::produces;
use super::values::{Values, ABSENT};

/// The verdict on a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckResult {
    /// Every key's operations are linearizable.
    Ok,
    /// Some key's operations are not (the first such key in byte order).
    Illegal(Box<Violation>),
    /// No violation was found, but the search on these keys (in byte order) ran out of steps
    /// before deciding.
    Timeout {
        /// The undecided keys.
        keys: Vec<Vec<u8>>,
    },
}

impl CheckResult {
    /// Whether the history was found linearizable.
    pub fn is_ok(&self) -> bool {
        matches!(self, CheckResult::Ok)
    }

    /// The violation found, if any.
    pub fn violation(&self) -> Option<&Violation> {
        match self {
            CheckResult::Illegal(v) => Some(v),
            CheckResult::Ok | CheckResult::Timeout { .. } => None,
        }
    }

    /// The key whose operations are not linearizable, if any.
    pub fn illegal_key(&self) -> Option<&[u8]> {
        self.violation().map(|v| v.key.as_slice())
    }
}

impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckResult::Ok => write!(f, "linearizable"),
            CheckResult::Illegal(v) => v.fmt(f),
            CheckResult::Timeout { keys } => {
                write!(f, "undecided: the search ran out of steps on key")?;
                if keys.len() > 1 {
                    write!(f, "s")?;
                }
                for (i, key) in keys.iter().enumerate() {
                    let sep = if i == 0 { " " } else { ", " };
                    write!(f, "{sep}{}", Bytes(key))?;
                }
                Ok(())
            }
        }
    }
}

/// A key whose operations have no linearization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The key.
    pub key: Vec<u8>,
    /// The longest linearizable prefix the search found, in linearization order.
    pub linearized: Vec<OpId>,
    /// The key's other operations, which could not be placed after that prefix.
    pub unplaced: Vec<OpId>,
    /// A readable account: the prefix with the value after each operation, and why each
    /// operation that could come next in real time cannot.
    pub explanation: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.explanation)
    }
}

/// Prefix operations shown at most (the last ones, nearest the failure).
const PREFIX_SHOWN: usize = 30;
/// Unplaced operations shown at most.
const UNPLACED_SHOWN: usize = 20;

/// Builds the [`Violation`] for `key`, whose operations `ops` have `longest` (indices into
/// `ops`) as their longest linearizable prefix.
pub(super) fn violation(
    history: &History,
    key: &[u8],
    ops: &[KeyOp],
    values: &mut Values,
    longest: &[usize],
) -> Violation {
    let show = |i: usize| {
        let id = ops[i].id;
        match history.get(id) {
            Some(op) => format!("{id} {op}"),
            None => id.to_string(),
        }
    };
    let unknown = ops.iter().filter(|o| o.completed.is_none()).count();
    let mut text = format!(
        "key {} is not linearizable ({} operations on it, {unknown} of unknown outcome)\n",
        Bytes(key),
        ops.len()
    );

    // Replay the prefix for the value after each operation.
    let mut state = ABSENT;
    let mut after = Vec::with_capacity(longest.len());
    for &i in longest {
        // The search applied exactly these steps in this order, so they are legal.
        state = ops[i].step.apply(values, state).unwrap_or(state);
        after.push(state);
    }
    if longest.is_empty() {
        let _ = writeln!(text, "longest linearizable prefix found: none");
    } else {
        let _ = writeln!(
            text,
            "longest linearizable prefix found: {} of {} operations, with the value after each:",
            longest.len(),
            ops.len()
        );
    }
    let skip = longest.len().saturating_sub(PREFIX_SHOWN);
    if skip > 0 {
        let _ = writeln!(text, "  ... {skip} earlier operations");
    }
    for (&i, &s) in longest.iter().zip(&after).skip(skip) {
        let _ = writeln!(text, "  {}  => {}", show(i), values.show(s));
    }

    // Why nothing else can come next.
    let mut placed = vec![false; ops.len()];
    longest.iter().for_each(|&i| placed[i] = true);
    let rest: Vec<usize> = (0..ops.len()).filter(|&i| !placed[i]).collect();
    let held = values.show(state);
    let stuck = match rest.len() {
        1 => "the remaining operation cannot come next".to_string(),
        n => format!("none of the {n} remaining operations can come next"),
    };
    let _ = writeln!(text, "after it the key holds {held}, and {stuck}.");

    // Reads that no remaining write can satisfy any more.
    let starving: Vec<(usize, Vec<usize>)> = rest
        .iter()
        .filter_map(|&r| {
            let o = &ops[r];
            let required = o.step.required_state().filter(|_| o.step.is_read_only())?;
            let deadline = o.completed?;
            let writers: Vec<usize> = (0..ops.len())
                .filter(|&w| {
                    !ops[w].step.is_read_only()
                        && ops[w].invoked <= deadline
                        && produces(values, &ops[w], required)
                })
                .collect();
            (required != state && writers.iter().all(|&w| placed[w])).then_some((r, writers))
        })
        .collect();
    if !starving.is_empty() {
        let _ = writeln!(
            text,
            "reads that nothing left can satisfy (the key holds another value, and every write \
             that could produce theirs is placed):"
        );
        for (r, writers) in starving.iter().take(UNPLACED_SHOWN) {
            let ids: Vec<String> = writers.iter().map(|&w| ops[w].id.to_string()).collect();
            let why = match ids.len() {
                0 => "no operation that may precede it writes that value".to_string(),
                1 => format!("only {} could write that value, and it is placed", ids[0]),
                _ => format!(
                    "only {} could write that value, and they are placed",
                    ids.join(", ")
                ),
            };
            let _ = writeln!(text, "  {}: {why}", show(*r));
        }
        if starving.len() > UNPLACED_SHOWN {
            let _ = writeln!(text, "  ... {} more", starving.len() - UNPLACED_SHOWN);
        }
    }

    // The operations that real time allows next: all but those invoked after the earliest
    // completion among the rest.
    let first_return = rest
        .iter()
        .filter_map(|&i| ops[i].completed.map(|t| (t, i)))
        .min();
    let (next, later): (Vec<usize>, Vec<usize>) = rest
        .iter()
        .partition(|&&i| first_return.is_none_or(|(t, _)| ops[i].invoked <= t));
    let _ = writeln!(text, "operations that could come next, and why they fail:");
    for &i in next.iter().take(UNPLACED_SHOWN) {
        let why = match ops[i].step.apply(values, state) {
            Err(refusal) => refusal.explain().to_string(),
            Ok(_) => "legal here, but the search found no way to go on after it".to_string(),
        };
        let _ = writeln!(text, "  {}: {why}", show(i));
    }
    if next.len() > UNPLACED_SHOWN {
        let _ = writeln!(text, "  ... {} more", next.len() - UNPLACED_SHOWN);
    }
    if let (Some((t, j)), false) = (first_return, later.is_empty()) {
        let others = match later.len() {
            1 => "the other operation".to_string(),
            n => format!("the other {n} operations"),
        };
        let _ = writeln!(
            text,
            "{others} must follow {} (completed at {t}).",
            ops[j].id
        );
    }
    Violation {
        key: key.to_vec(),
        linearized: longest.iter().map(|&i| ops[i].id).collect(),
        unplaced: rest.iter().map(|&i| ops[i].id).collect(),
        explanation: text,
    }
}
