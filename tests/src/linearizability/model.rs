//! The sequential specification of one key: its state is its value (or absence), and each
//! operation, with the answer the client got, is either legal in a state (giving the next state)
//! or not.

use super::history::{Op, Output};
use super::values::{ValueId, Values, ABSENT, UNSEEN};

/// One operation with its answer, compiled against a key's [`Values`]. Fields that are `None`
/// were not observed (an unknown outcome, or a `Delete` answered only `Ok`) and constrain
/// nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    Get {
        saw: Option<ValueId>,
    },
    Put {
        value: ValueId,
    },
    Append {
        piece: u32,
    },
    Delete {
        existed: Option<bool>,
    },
    /// Makes an absent key hold [`UNSEEN`]; no effect on a present one. Stands for a write of
    /// unknown outcome that no answer reveals (see `prepare`).
    Touch,
    Cas {
        expected: ValueId,
        new: ValueId,
        answer: Option<(bool, ValueId)>,
    },
}

/// Why a step is illegal in a state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// A `Get` saw another value.
    Read,
    /// A `Delete` said the key existed (or not) and it did not (or did).
    Existed,
    /// A `CompareAndSwap` said it swapped and could not have, or the reverse.
    Swapped,
    /// A `CompareAndSwap` reported another previous value.
    Previous,
}

impl Step {
    /// Compiles `op`, answered `output` (`None`: outcome unknown).
    pub(super) fn compile(values: &mut Values, op: &Op, output: Option<&Output>) -> Step {
        match op {
            Op::Get { .. } => Step::Get {
                saw: match output {
                    Some(Output::Value(v)) => Some(values.intern(v.as_deref())),
                    // History::complete admits only `Value` for a Get.
                    _ => None,
                },
            },
            Op::Put { value, .. } => Step::Put {
                value: values.intern(Some(value)),
            },
            Op::Append { arg, .. } => Step::Append {
                piece: values.piece(arg),
            },
            Op::Delete { .. } => Step::Delete {
                existed: match output {
                    Some(Output::Deleted(existed)) => Some(*existed),
                    _ => None,
                },
            },
            Op::CompareAndSwap { expected, new, .. } => Step::Cas {
                expected: values.intern(expected.as_deref()),
                new: values.intern(Some(new)),
                answer: match output {
                    Some(Output::Cas { swapped, previous }) => {
                        Some((*swapped, values.intern(previous.as_deref())))
                    }
                    _ => None,
                },
            },
        }
    }

    /// Whether every legal application of the step leaves the state as it was: a `Get` with
    /// a known answer, a `Delete` that found nothing, a `CompareAndSwap` known to have failed
    /// (or to have written the value it expected). Such a step, when it can come next and is
    /// legal, can always be taken at once (see the search).
    pub(super) fn is_read_only(&self) -> bool {
        match *self {
            Step::Get { saw } => saw.is_some(),
            Step::Delete { existed } => existed == Some(false),
            Step::Cas {
                expected,
                new,
                answer,
            } => match answer {
                Some((swapped, _)) => !swapped || expected == new,
                None => false,
            },
            Step::Put { .. } | Step::Append { .. } | Step::Touch => false,
        }
    }

    /// For a read-only step (see [`Step::is_read_only`]), the one state it is legal in.
    pub(super) fn required_state(&self) -> Option<ValueId> {
        match *self {
            Step::Get { saw } => saw,
            Step::Delete {
                existed: Some(false),
            } => Some(ABSENT),
            Step::Cas {
                expected,
                new,
                answer: Some((swapped, previous)),
            } if !swapped || expected == new => Some(previous),
            _ => None,
        }
    }

    /// The state after this step in `state`, or why the step is illegal there.
    pub(super) fn apply(&self, values: &mut Values, state: ValueId) -> Result<ValueId, Refusal> {
        match *self {
            Step::Get { saw } => match saw {
                Some(saw) if saw != state => Err(Refusal::Read),
                _ => Ok(state),
            },
            Step::Put { value } => Ok(value),
            Step::Append { piece } => Ok(values.append(state, piece)),
            Step::Delete { existed } => match existed {
                Some(existed) if existed != (state != ABSENT) => Err(Refusal::Existed),
                _ => Ok(ABSENT),
            },
            Step::Touch => Ok(if state == ABSENT { UNSEEN } else { state }),
            Step::Cas {
                expected,
                new,
                answer,
            } => {
                let swaps = state == expected;
                match answer {
                    Some((swapped, _)) if swapped != swaps => Err(Refusal::Swapped),
                    Some((_, previous)) if previous != state => Err(Refusal::Previous),
                    _ => Ok(if swaps { new } else { state }),
                }
            }
        }
    }
}

impl Refusal {
    /// Says why the step is illegal in the key's current value.
    pub(super) fn explain(self) -> &'static str {
        match self {
            Refusal::Read => "the key holds another value",
            Refusal::Existed => "wrong about whether the key exists",
            Refusal::Swapped => "whether it swapped does not fit the key's value",
            Refusal::Previous => "the key holds another value than the previous one reported",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(values: &mut Values, op: Op, output: Output) -> Step {
        Step::compile(values, &op, Some(&output))
    }

    #[test]
    fn steps_follow_the_kv_contract() {
        let mut v = Values::new();
        let a = v.intern(Some(b"a"));
        let ab = v.intern(Some(b"ab"));
        let get_a = compile(&mut v, Op::get("k"), Output::found("a"));
        let get_absent = compile(&mut v, Op::get("k"), Output::absent());
        assert_eq!(get_a.apply(&mut v, a), Ok(a));
        assert_eq!(get_a.apply(&mut v, ABSENT), Err(Refusal::Read));
        assert_eq!(get_absent.apply(&mut v, ABSENT), Ok(ABSENT));

        let append_b = compile(&mut v, Op::append("k", "b"), Output::Ok);
        assert_eq!(append_b.apply(&mut v, a), Ok(ab));
        let b = v.intern(Some(b"b"));
        assert_eq!(
            append_b.apply(&mut v, ABSENT),
            Ok(b),
            "append to absent puts"
        );

        let deleted = compile(&mut v, Op::delete("k"), Output::Deleted(true));
        let not_deleted = compile(&mut v, Op::delete("k"), Output::Deleted(false));
        let delete_unchecked = compile(&mut v, Op::delete("k"), Output::Ok);
        assert_eq!(deleted.apply(&mut v, a), Ok(ABSENT));
        assert_eq!(deleted.apply(&mut v, ABSENT), Err(Refusal::Existed));
        assert_eq!(not_deleted.apply(&mut v, a), Err(Refusal::Existed));
        assert_eq!(delete_unchecked.apply(&mut v, ABSENT), Ok(ABSENT));

        let cas_ok = compile(
            &mut v,
            Op::cas("k", Some(b"a"), "b"),
            Output::cas(true, Some(b"a")),
        );
        assert_eq!(cas_ok.apply(&mut v, a), Ok(b));
        assert_eq!(cas_ok.apply(&mut v, ab), Err(Refusal::Swapped));
        let cas_failed = compile(
            &mut v,
            Op::cas("k", None, "b"),
            Output::cas(false, Some(b"a")),
        );
        assert_eq!(cas_failed.apply(&mut v, a), Ok(a));
        assert_eq!(cas_failed.apply(&mut v, ab), Err(Refusal::Previous));
        assert_eq!(cas_failed.apply(&mut v, ABSENT), Err(Refusal::Swapped));
        let cas_unknown = Step::compile(&mut v, &Op::cas("k", None, "b"), None);
        assert_eq!(cas_unknown.apply(&mut v, ABSENT), Ok(b));
        assert_eq!(cas_unknown.apply(&mut v, a), Ok(a));
    }

    #[test]
    fn read_only_steps_never_change_the_state() {
        let mut v = Values::new();
        let a = v.intern(Some(b"a"));
        let states = [ABSENT, a, v.intern(Some(b"b"))];
        let outputs = [
            Output::absent(),
            Output::found("a"),
            Output::Deleted(false),
            Output::Deleted(true),
            Output::Ok,
            Output::cas(false, Some(b"a")),
            Output::cas(false, None),
            Output::cas(true, Some(b"a")),
            Output::cas(true, None),
        ];
        let ops = [
            Op::get("k"),
            Op::put("k", "a"),
            Op::append("k", "a"),
            Op::delete("k"),
            Op::cas("k", Some(b"a"), "a"),
            Op::cas("k", Some(b"a"), "b"),
            Op::cas("k", None, "a"),
        ];
        let mut read_only = 0;
        for op in &ops {
            for out in outputs
                .iter()
                .filter(|o| op.accepts(o))
                .map(Some)
                .chain([None])
            {
                let step = Step::compile(&mut v, op, out);
                if !step.is_read_only() {
                    continue;
                }
                read_only += 1;
                for &s in &states {
                    if let Ok(next) = step.apply(&mut v, s) {
                        assert_eq!(next, s, "{op} -> {out:?} changed the state");
                    }
                }
            }
        }
        // Get absent or "a"; Delete false; failed CAS (2 outputs x 3 ops); CAS a -> a done (2).
        assert_eq!(read_only, 2 + 1 + 6 + 2);
    }
}
