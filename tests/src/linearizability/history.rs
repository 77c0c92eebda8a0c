//! Recording a history: the operations clients invoked, when, and what they were told.

use std::fmt;

/// Who issued an operation. Only used to label operations in explanations; the checker puts no
/// constraint on how many operations one client has outstanding.
pub type ClientId = u64;

/// An abstract point in time (the simulator's milliseconds, or an event counter). Only the
/// order of times matters; see [`History`] for how ties are read.
pub type Time = u64;

/// The index of an operation in its [`History`], returned by [`History::invoke`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub usize);

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A request to the key/value service.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// Reads a key. Answered with [`Output::Value`].
    Get {
        /// The key read.
        key: Vec<u8>,
    },
    /// Sets a key. Answered with [`Output::Ok`].
    Put {
        /// The key written.
        key: Vec<u8>,
        /// Its new value.
        value: Vec<u8>,
    },
    /// Appends to a key's value; on an absent key it acts as a `Put`. Answered with
    /// [`Output::Ok`].
    Append {
        /// The key written.
        key: Vec<u8>,
        /// The bytes appended.
        arg: Vec<u8>,
    },
    /// Removes a key. Answered with [`Output::Deleted`] (whether the key existed, which the
    /// checker then verifies) or [`Output::Ok`] (not saying, so not checked).
    Delete {
        /// The key removed.
        key: Vec<u8>,
    },
    /// Sets `key` to `new` if and only if its value is `expected` (`None`: if the key is
    /// absent). Answered with [`Output::Cas`].
    CompareAndSwap {
        /// The key compared and perhaps written.
        key: Vec<u8>,
        /// The value the key must hold for the swap to happen; `None` means "absent".
        expected: Option<Vec<u8>>,
        /// The value written if the swap happens.
        new: Vec<u8>,
    },
}

impl Op {
    /// `Get(key)`.
    pub fn get(key: impl AsRef<[u8]>) -> Op {
        Op::Get {
            key: key.as_ref().to_vec(),
        }
    }

    /// `Put(key, value)`.
    pub fn put(key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Op {
        Op::Put {
            key: key.as_ref().to_vec(),
            value: value.as_ref().to_vec(),
        }
    }

    /// `Append(key, arg)`.
    pub fn append(key: impl AsRef<[u8]>, arg: impl AsRef<[u8]>) -> Op {
        Op::Append {
            key: key.as_ref().to_vec(),
            arg: arg.as_ref().to_vec(),
        }
    }

    /// `Delete(key)`.
    pub fn delete(key: impl AsRef<[u8]>) -> Op {
        Op::Delete {
            key: key.as_ref().to_vec(),
        }
    }

    /// `CompareAndSwap(key, expected, new)`; `expected: None` means "only if absent".
    pub fn cas(key: impl AsRef<[u8]>, expected: Option<&[u8]>, new: impl AsRef<[u8]>) -> Op {
        Op::CompareAndSwap {
            key: key.as_ref().to_vec(),
            expected: expected.map(<[u8]>::to_vec),
            new: new.as_ref().to_vec(),
        }
    }

    /// The key the operation touches.
    pub fn key(&self) -> &[u8] {
        match self {
            Op::Get { key }
            | Op::Put { key, .. }
            | Op::Append { key, .. }
            | Op::Delete { key }
            | Op::CompareAndSwap { key, .. } => key,
        }
    }

    /// The operation's name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Get { .. } => "Get",
            Op::Put { .. } => "Put",
            Op::Append { .. } => "Append",
            Op::Delete { .. } => "Delete",
            Op::CompareAndSwap { .. } => "CompareAndSwap",
        }
    }

    /// Whether `output` is a possible kind of answer to this operation.
    pub fn accepts(&self, output: &Output) -> bool {
        matches!(
            (self, output),
            (Op::Get { .. }, Output::Value(_))
                | (Op::Put { .. } | Op::Append { .. }, Output::Ok)
                | (Op::Delete { .. }, Output::Ok | Output::Deleted(_))
                | (Op::CompareAndSwap { .. }, Output::Cas { .. })
        )
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Get { key } => write!(f, "Get({})", Bytes(key)),
            Op::Put { key, value } => write!(f, "Put({}, {})", Bytes(key), Bytes(value)),
            Op::Append { key, arg } => write!(f, "Append({}, {})", Bytes(key), Bytes(arg)),
            Op::Delete { key } => write!(f, "Delete({})", Bytes(key)),
            Op::CompareAndSwap { key, expected, new } => write!(
                f,
                "CompareAndSwap({}, expected {}, new {})",
                Bytes(key),
                MaybeBytes(expected.as_deref()),
                Bytes(new)
            ),
        }
    }
}

/// What the service answered.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Output {
    /// The answer to a `Get`: the value, or `None` if the key is absent (distinct from
    /// `Some(vec![])`, an empty value).
    Value(Option<Vec<u8>>),
    /// The answer to a `Put` or an `Append`, or to a `Delete` that does not say whether the key
    /// existed.
    Ok,
    /// The answer to a `Delete`: whether the key existed just before.
    Deleted(bool),
    /// The answer to a `CompareAndSwap`.
    Cas {
        /// Whether the value was replaced. Must be true exactly when `previous` equals the
        /// operation's `expected`.
        swapped: bool,
        /// The key's value just before the operation (`None`: absent).
        previous: Option<Vec<u8>>,
    },
}

impl Output {
    /// A `Get` that found `value`.
    pub fn found(value: impl AsRef<[u8]>) -> Output {
        Output::Value(Some(value.as_ref().to_vec()))
    }

    /// A `Get` that found the key absent.
    pub fn absent() -> Output {
        Output::Value(None)
    }

    /// A `CompareAndSwap` answer.
    pub fn cas(swapped: bool, previous: Option<&[u8]>) -> Output {
        Output::Cas {
            swapped,
            previous: previous.map(<[u8]>::to_vec),
        }
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Output::Value(v) => write!(f, "{}", MaybeBytes(v.as_deref())),
            Output::Ok => write!(f, "ok"),
            Output::Deleted(existed) => write!(f, "existed: {existed}"),
            Output::Cas { swapped, previous } => write!(
                f,
                "swapped: {swapped}, previous {}",
                MaybeBytes(previous.as_deref())
            ),
        }
    }
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Completion {
    /// No answer recorded yet. The checker treats such operations as [`Completion::Unknown`].
    Pending,
    /// The client was answered at `time` with `output`.
    Completed {
        /// When the answer arrived.
        time: Time,
        /// The answer.
        output: Output,
    },
    /// The client will never know: the operation may or may not have taken effect, at any
    /// time after its invocation (a request that timed out, a client that gave up).
    Unknown,
}

/// One operation of a [`History`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    /// Who invoked it.
    pub client: ClientId,
    /// When it was invoked.
    pub invoked: Time,
    /// What was asked.
    pub op: Op,
    /// How it ended.
    pub completion: Completion,
}

impl Operation {
    /// The completion time, or `None` if the outcome is unknown (or still pending), which the
    /// checker reads as "+infinity".
    pub fn completed_at(&self) -> Option<Time> {
        match self.completion {
            Completion::Completed { time, .. } => Some(time),
            Completion::Pending | Completion::Unknown => None,
        }
    }

    /// The answer, if one arrived.
    pub fn output(&self) -> Option<&Output> {
        match &self.completion {
            Completion::Completed { output, .. } => Some(output),
            Completion::Pending | Completion::Unknown => None,
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.completion {
            Completion::Completed { time, output } => write!(
                f,
                "client {} [{}, {}] {} -> {}",
                self.client, self.invoked, time, self.op, output
            ),
            Completion::Pending | Completion::Unknown => write!(
                f,
                "client {} [{}, ?] {} -> unknown outcome",
                self.client, self.invoked, self.op
            ),
        }
    }
}

/// Why a [`History`] refused a record. Each is a bug in the code that records the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HistoryError {
    /// No operation has this id.
    NoSuchOperation(OpId),
    /// The operation was already completed or marked unknown.
    AlreadyFinished(OpId),
    /// The completion time is before the invocation time.
    CompletedBeforeInvoked {
        /// The operation.
        id: OpId,
        /// Its invocation time.
        invoked: Time,
        /// The completion time given.
        completed: Time,
    },
    /// The output is not an answer this kind of operation can get.
    WrongOutput {
        /// The operation.
        id: OpId,
        /// Its kind (`Get`, `Put`, ...).
        op: &'static str,
        /// The output given.
        output: Output,
    },
}

impl fmt::Display for HistoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HistoryError::NoSuchOperation(id) => write!(f, "no operation {id} in the history"),
            HistoryError::AlreadyFinished(id) => {
                write!(f, "operation {id} was already completed or marked unknown")
            }
            HistoryError::CompletedBeforeInvoked {
                id,
                invoked,
                completed,
            } => write!(
                f,
                "operation {id} invoked at {invoked} cannot complete at {completed}"
            ),
            HistoryError::WrongOutput { id, op, output } => {
                write!(f, "operation {id} ({op}) cannot answer {output:?}")
            }
        }
    }
}

impl std::error::Error for HistoryError {}

/// A concurrent history of key/value operations, recorded as they happen.
///
/// Each operation spans the interval from its invocation to its completion. **Operation A
/// precedes B in real time iff `A.completion < B.invocation`, strictly**: intervals that touch
/// (A completes at the very time B is invoked) are concurrent, so the checker may order them
/// either way. With coarse times (simulated milliseconds) this never raises a false alarm but
/// can miss a violation between operations that share a timestamp; an event counter (a time
/// that increases at every recorded event) keeps every order.
///
/// An operation whose outcome is unknown ([`History::unknown`], or still pending when checked)
/// may have taken effect at any time after its invocation, or never; its output is
/// unconstrained.
///
/// ```
/// use raft_tests::linearizability::{check, History, Op, Output};
/// let mut h = History::new();
/// let put = h.invoke(1, 0, Op::put("k", "a"));
/// let get = h.invoke(2, 1, Op::get("k"));
/// h.complete(get, 2, Output::found("a")).unwrap(); // the Put took effect before the Get ...
/// h.complete(put, 3, Output::Ok).unwrap(); // ... though its answer came later
/// assert!(check(&h, None).is_ok());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    ops: Vec<Operation>,
}

impl History {
    /// An empty history.
    pub fn new() -> History {
        History::default()
    }

    /// Records that `client` invoked `op` at `time`; returns its id for
    /// [`complete`](History::complete) or [`unknown`](History::unknown).
    pub fn invoke(&mut self, client: ClientId, time: Time, op: Op) -> OpId {
        self.ops.push(Operation {
            client,
            invoked: time,
            op,
            completion: Completion::Pending,
        });
        OpId(self.ops.len() - 1)
    }

    /// Records that operation `id` was answered with `output` at `time`.
    pub fn complete(&mut self, id: OpId, time: Time, output: Output) -> Result<(), HistoryError> {
        let operation = self.pending_mut(id)?;
        if time < operation.invoked {
            return Err(HistoryError::CompletedBeforeInvoked {
                id,
                invoked: operation.invoked,
                completed: time,
            });
        }
        if !operation.op.accepts(&output) {
            return Err(HistoryError::WrongOutput {
                id,
                op: operation.op.name(),
                output,
            });
        }
        operation.completion = Completion::Completed { time, output };
        Ok(())
    }

    /// Records that the outcome of operation `id` will never be known.
    pub fn unknown(&mut self, id: OpId) -> Result<(), HistoryError> {
        self.pending_mut(id)?.completion = Completion::Unknown;
        Ok(())
    }

    /// Records a whole operation at once: invoked at `invoked`, answered `output` at
    /// `completed`.
    pub fn record(
        &mut self,
        client: ClientId,
        invoked: Time,
        completed: Time,
        op: Op,
        output: Output,
    ) -> Result<OpId, HistoryError> {
        let id = self.invoke(client, invoked, op);
        match self.complete(id, completed, output) {
            Ok(()) => Ok(id),
            Err(e) => {
                self.ops.pop(); // leave no half-recorded operation behind
                Err(e)
            }
        }
    }

    /// The operations, indexed by [`OpId`].
    pub fn operations(&self) -> &[Operation] {
        &self.ops
    }

    /// Operation `id`, if it exists.
    pub fn get(&self, id: OpId) -> Option<&Operation> {
        self.ops.get(id.0)
    }

    /// How many operations were recorded.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether no operation was recorded.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    fn pending_mut(&mut self, id: OpId) -> Result<&mut Operation, HistoryError> {
        let operation = self
            .ops
            .get_mut(id.0)
            .ok_or(HistoryError::NoSuchOperation(id))?;
        if operation.completion != Completion::Pending {
            return Err(HistoryError::AlreadyFinished(id));
        }
        Ok(operation)
    }
}

/// Shows bytes as a quoted, escaped string, eliding the middle of long values.
pub(crate) struct Bytes<'a>(pub &'a [u8]);

/// Values longer than this are shown as their head and tail.
const SHOWN: usize = 96;

impl fmt::Display for Bytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        if b.len() <= SHOWN {
            write!(f, "\"{}\"", b.escape_ascii())
        } else {
            let head = &b[..SHOWN / 2];
            let tail = &b[b.len() - SHOWN / 2..];
            write!(
                f,
                "\"{}\"..({} bytes)..\"{}\"",
                head.escape_ascii(),
                b.len(),
                tail.escape_ascii()
            )
        }
    }
}

/// Shows an optional value: `absent` or the quoted bytes.
pub(crate) struct MaybeBytes<'a>(pub Option<&'a [u8]>);

impl fmt::Display for MaybeBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => write!(f, "absent"),
            Some(b) => Bytes(b).fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_refuse_bad_completions() {
        let mut h = History::new();
        let get = h.invoke(1, 10, Op::get("k"));
        assert_eq!(
            h.complete(get, 9, Output::absent()),
            Err(HistoryError::CompletedBeforeInvoked {
                id: get,
                invoked: 10,
                completed: 9
            })
        );
        assert!(matches!(
            h.complete(get, 11, Output::Ok),
            Err(HistoryError::WrongOutput { .. })
        ));
        assert_eq!(h.complete(get, 10, Output::absent()), Ok(()));
        assert_eq!(
            h.complete(get, 12, Output::absent()),
            Err(HistoryError::AlreadyFinished(get))
        );
        assert_eq!(h.unknown(get), Err(HistoryError::AlreadyFinished(get)));
        assert_eq!(
            h.unknown(OpId(7)),
            Err(HistoryError::NoSuchOperation(OpId(7)))
        );
        assert!(h.record(1, 5, 4, Op::put("k", "v"), Output::Ok).is_err());
        assert_eq!(h.len(), 1, "a refused record leaves nothing behind");
    }

    #[test]
    fn outputs_match_their_operations() {
        let del = Op::delete("k");
        assert!(del.accepts(&Output::Ok) && del.accepts(&Output::Deleted(true)));
        assert!(!del.accepts(&Output::absent()));
        assert!(Op::cas("k", None, "v").accepts(&Output::cas(true, None)));
        assert!(!Op::put("k", "v").accepts(&Output::Deleted(false)));
        assert!(!Op::append("k", "v").accepts(&Output::found("v")));
    }

    #[test]
    fn long_values_are_elided() {
        let long = vec![b'x'; 1000];
        let shown = Bytes(&long).to_string();
        assert!(shown.contains("1000 bytes") && shown.len() < 200, "{shown}");
        assert_eq!(Bytes(b"a\n\xff").to_string(), "\"a\\n\\xff\"");
        assert_eq!(MaybeBytes(None).to_string(), "absent");
    }
}
