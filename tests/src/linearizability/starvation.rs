//! A look-ahead that abandons doomed configurations early: a read that can no longer be
//! satisfied.
//!
//! A read-only operation (a `Get`, a failed `CompareAndSwap`, ...) is legal in exactly one
//! state, its *required* value `r`. When it is finally linearized the key must hold `r`, so
//! unless the key holds `r` already, some write still to be linearized must produce `r` and come
//! before it: a write that can result in `r` (a `Put` of `r`, a swap to `r`, a `Delete` if `r`
//! is absence, an `Append` of a suffix of `r`) and that was invoked no later than the read
//! completed. Once every such write is linearized, the read *starves*: if it is still waiting
//! and the key does not hold `r`, no completion of the configuration exists, however far away
//! the read's own deadline is. Plain Wing & Gong search only notices when it reaches that
//! deadline, after exploring every interleaving of the operations in between.

use super::model::Step;
use super::search::KeyOp;
use super::values::{to_u32, ValueId, Values, ABSENT};

/// Tracks, for every read-only operation, how many of its possible last writers are not yet
/// linearized, and which reads starve.
pub(super) struct Starvation {
    /// For each operation: the reads it could be the last writer for.
    serves: Vec<Vec<u32>>,
    /// For each operation: its required value if it is read-only.
    required: Vec<Option<ValueId>>,
    /// For each read: possible last writers not yet linearized.
    writers_left: Vec<u32>,
    /// Whether each operation is linearized.
    placed: Vec<bool>,
    /// For each value: how many starving reads (waiting, no writer left) require it.
    starving: Vec<u32>,
    /// How many values have starving reads.
    distinct: u32,
}

impl Starvation {
    pub(super) fn new(ops: &[KeyOp], values: &Values) -> Starvation {
        let required: Vec<Option<ValueId>> = ops
            .iter()
            .map(|o| {
                if o.step.is_read_only() {
                    o.step.required_state()
                } else {
                    None
                }
            })
            .collect();
        let mut serves = vec![Vec::new(); ops.len()];
        let mut writers_left = vec![0u32; ops.len()];
        for (r, req) in required.iter().enumerate() {
            let (Some(req), Some(deadline)) = (*req, ops[r].completed) else {
                continue;
            };
            for (w, op) in ops.iter().enumerate() {
                if required[w].is_none() && op.invoked <= deadline && produces(values, op, req) {
                    serves[w].push(to_u32(r));
                    writers_left[r] += 1;
                }
            }
        }
        let mut s = Starvation {
            serves,
            required,
            writers_left,
            placed: vec![false; ops.len()],
            starving: vec![0; values.len()],
            distinct: 0,
        };
        for r in 0..ops.len() {
            if s.writers_left[r] == 0 {
                s.add(r);
            }
        }
        s
    }

    /// Whether some waiting read can never be satisfied from a configuration in `state`.
    pub(super) fn doomed(&self, state: ValueId) -> bool {
        match self.distinct {
            0 => false,
            1 => self.starving.get(state as usize).is_none_or(|&n| n == 0),
            _ => true,
        }
    }

    /// Operation `op` was linearized.
    pub(super) fn place(&mut self, op: usize) {
        if self.writers_left[op] == 0 {
            self.remove(op);
        }
        self.placed[op] = true;
        for k in 0..self.serves[op].len() {
            let r = self.serves[op][k] as usize;
            self.writers_left[r] -= 1;
            if self.writers_left[r] == 0 {
                self.add(r);
            }
        }
    }

    /// Undoes [`Starvation::place`] of `op`.
    pub(super) fn unplace(&mut self, op: usize) {
        for k in 0..self.serves[op].len() {
            let r = self.serves[op][k] as usize;
            if self.writers_left[r] == 0 {
                self.remove(r);
            }
            self.writers_left[r] += 1;
        }
        self.placed[op] = false;
        if self.writers_left[op] == 0 {
            self.add(op);
        }
    }

    /// Counts read `r` as starving if it is a waiting read.
    fn add(&mut self, r: usize) {
        if let (Some(req), false) = (self.required[r], self.placed[r]) {
            let n = &mut self.starving[req as usize];
            if *n == 0 {
                self.distinct += 1;
            }
            *n += 1;
        }
    }

    /// Stops counting read `r` as starving (if it was).
    fn remove(&mut self, r: usize) {
        if let (Some(req), false) = (self.required[r], self.placed[r]) {
            let n = &mut self.starving[req as usize];
            *n -= 1;
            if *n == 0 {
                self.distinct -= 1;
            }
        }
    }
}

/// Whether `op`, a write, can leave the key holding `value`.
pub(super) fn produces(values: &Values, op: &KeyOp, value: ValueId) -> bool {
    match op.step {
        Step::Put { value: v } => v == value,
        Step::Cas { new, .. } => new == value,
        Step::Delete { .. } => value == ABSENT,
        Step::Append { piece } => values.ends_with(value, piece),
        Step::Get { .. } | Step::Touch => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linearizability::history::{Op, OpId, Output};

    fn op(values: &mut Values, t: (u64, u64), op: Op, out: Output) -> KeyOp {
        KeyOp {
            id: OpId(0),
            invoked: t.0,
            completed: Some(t.1),
            step: Step::compile(values, &op, Some(&out)),
        }
    }

    #[test]
    fn a_read_starves_once_its_writers_are_placed() {
        let mut v = Values::new();
        let ops = [
            op(&mut v, (0, 10), Op::put("k", "a"), Output::Ok),
            // Invoked when the read completes: concurrent with it, so a possible writer.
            op(&mut v, (20, 30), Op::append("k", "a"), Output::Ok),
            op(&mut v, (5, 20), Op::get("k"), Output::found("a")),
            // Invoked after the read completed: cannot be its writer.
            op(&mut v, (21, 40), Op::put("k", "a"), Output::Ok),
        ];
        let a = v.intern(Some(b"a"));
        let b = v.intern(Some(b"b"));
        let mut s = Starvation::new(&ops, &v);
        assert!(!s.doomed(ABSENT), "two writers left");
        s.place(0);
        assert!(!s.doomed(b), "the append is left");
        s.place(1);
        assert!(s.doomed(b), "no writer left and the key holds b");
        assert!(!s.doomed(a), "the key holds what it needs");
        s.place(2);
        assert!(!s.doomed(b), "the read is placed");
        s.unplace(2);
        assert!(s.doomed(b));
        s.unplace(1);
        assert!(!s.doomed(b));
        s.unplace(0);
        assert!(!s.doomed(b));
    }

    #[test]
    fn reads_of_values_nobody_writes_starve_from_the_start() {
        let mut v = Values::new();
        let ops = [
            op(&mut v, (0, 10), Op::get("k"), Output::absent()),
            op(&mut v, (0, 10), Op::get("k"), Output::found("x")),
        ];
        let s = Starvation::new(&ops, &v);
        let x = v.intern(Some(b"x"));
        assert!(s.doomed(ABSENT) && s.doomed(x), "two values needed at once");
        let s = Starvation::new(&ops[..1], &v);
        assert!(
            !s.doomed(ABSENT) && s.doomed(x),
            "absent is needed, and held at first"
        );
    }
}
