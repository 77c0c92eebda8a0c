//! The linearizability checker against known histories, a brute-force reference, histories
//! generated from real executions (which must pass) and their mutations (which must not), and a
//! timing report on a large history.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use raft_tests::linearizability::{
    check, check_with_stats, CheckResult, History, Op, OpId, Output, DEFAULT_STEPS_PER_KEY,
};

const BUDGET: Option<u64> = Some(DEFAULT_STEPS_PER_KEY);

/// One recorded operation: `(client, invoked, completed, op, output)`; `completed: None` is an
/// unknown outcome.
type Rec = (u64, u64, Option<(u64, Output)>, Op);

fn history(recs: &[Rec]) -> History {
    let mut h = History::new();
    for (client, invoked, end, op) in recs {
        let id = h.invoke(*client, *invoked, op.clone());
        match end {
            Some((t, out)) => h.complete(id, *t, out.clone()).expect("a valid record"),
            None => h.unknown(id).expect("a fresh operation"),
        }
    }
    h
}

fn done(client: u64, invoked: u64, completed: u64, op: Op, out: Output) -> Rec {
    (client, invoked, Some((completed, out)), op)
}

fn unknown(client: u64, invoked: u64, op: Op) -> Rec {
    (client, invoked, None, op)
}

#[track_caller]
fn assert_ok(recs: &[Rec]) {
    let result = check(&history(recs), BUDGET);
    assert!(result.is_ok(), "expected linearizable, got: {result}");
}

/// Asserts the history is refused on `key`; returns the explanation.
#[track_caller]
fn assert_illegal(recs: &[Rec], key: &str) -> String {
    let result = check(&history(recs), BUDGET);
    assert_eq!(
        result.illegal_key(),
        Some(key.as_bytes()),
        "expected a violation on {key:?}, got: {result}"
    );
    result.to_string()
}

/// A decoy key whose operations are fine, so the tests also check the right key is named.
fn decoy() -> Vec<Rec> {
    vec![
        done(9, 0, 100, Op::put("a-fine-key", "1"), Output::Ok),
        done(9, 101, 102, Op::get("a-fine-key"), Output::found("1")),
        done(8, 50, 150, Op::append("z-fine-key", "x"), Output::Ok),
        done(8, 151, 160, Op::get("z-fine-key"), Output::found("x")),
    ]
}

fn with_decoys(mut recs: Vec<Rec>) -> Vec<Rec> {
    recs.extend(decoy());
    recs
}

// ---- Known violations -------------------------------------------------------------------

#[test]
fn stale_read_is_refused() {
    let recs = with_decoys(vec![
        done(1, 0, 10, Op::put("k", "old"), Output::Ok),
        done(1, 20, 30, Op::put("k", "new"), Output::Ok),
        done(2, 40, 50, Op::get("k"), Output::found("old")),
    ]);
    let text = assert_illegal(&recs, "k");
    assert!(
        text.contains("longest linearizable prefix found: 2 of 3"),
        "{text}"
    );
    assert!(text.contains("after it the key holds \"new\""), "{text}");
    assert!(
        text.contains("#2 client 2 [40, 50] Get(\"k\") -> \"old\": only #0 could write that"),
        "{text}"
    );
}

#[test]
fn lost_acknowledged_write_is_refused() {
    let recs = with_decoys(vec![
        done(1, 0, 10, Op::put("k", "v"), Output::Ok),
        done(2, 20, 30, Op::get("k"), Output::absent()),
    ]);
    assert_illegal(&recs, "k");
    // Also when the write was an acknowledged append on top of another value.
    let recs = with_decoys(vec![
        done(1, 0, 10, Op::put("k", "a"), Output::Ok),
        done(1, 11, 20, Op::append("k", "b"), Output::Ok),
        done(2, 30, 40, Op::get("k"), Output::found("a")),
    ]);
    assert_illegal(&recs, "k");
}

#[test]
fn duplicated_append_is_refused() {
    let recs = with_decoys(vec![
        done(1, 0, 10, Op::append("k", "x"), Output::Ok),
        done(2, 5, 30, Op::append("k", "y"), Output::Ok),
        done(3, 40, 50, Op::get("k"), Output::found("xyx")),
    ]);
    assert_illegal(&recs, "k");
    // Even when the append's outcome is unknown: it takes effect at most once.
    let recs = with_decoys(vec![
        unknown(1, 0, Op::append("k", "x")),
        done(3, 40, 50, Op::get("k"), Output::found("xx")),
    ]);
    assert_illegal(&recs, "k");
}

#[test]
fn read_of_a_value_never_written_is_refused() {
    let recs = with_decoys(vec![
        done(1, 0, 10, Op::put("k", "a"), Output::Ok),
        done(2, 0, 10, Op::get("k"), Output::found("b")),
    ]);
    let text = assert_illegal(&recs, "k");
    assert!(
        text.contains("Get(\"k\") -> \"b\": no operation that may precede it writes that"),
        "{text}"
    );
    // An empty value is not an absent key, nor the reverse.
    let recs = with_decoys(vec![
        done(1, 0, 10, Op::put("k", ""), Output::Ok),
        done(2, 20, 30, Op::get("k"), Output::absent()),
    ]);
    assert_illegal(&recs, "k");
    let recs = with_decoys(vec![done(2, 20, 30, Op::get("k"), Output::found(""))]);
    assert_illegal(&recs, "k");
}

#[test]
fn cas_claiming_success_against_the_wrong_value_is_refused() {
    // The key holds "a"; a CAS expecting "b" cannot have swapped.
    let recs = with_decoys(vec![
        done(1, 0, 10, Op::put("k", "a"), Output::Ok),
        done(
            2,
            20,
            30,
            Op::cas("k", Some(b"b"), "c"),
            Output::cas(true, Some(b"b")),
        ),
    ]);
    assert_illegal(&recs, "k");
    // Nor can it report "a" as the previous value and claim to have swapped.
    let recs = with_decoys(vec![
        done(1, 0, 10, Op::put("k", "a"), Output::Ok),
        done(
            2,
            20,
            30,
            Op::cas("k", Some(b"b"), "c"),
            Output::cas(true, Some(b"a")),
        ),
    ]);
    assert_illegal(&recs, "k");
    // A CAS that failed although the key held the expected value.
    let recs = with_decoys(vec![
        done(1, 0, 10, Op::put("k", "a"), Output::Ok),
        done(
            2,
            20,
            30,
            Op::cas("k", Some(b"a"), "c"),
            Output::cas(false, Some(b"a")),
        ),
    ]);
    assert_illegal(&recs, "k");
    // A swap that did not take: the later read still sees the old value.
    let recs = with_decoys(vec![
        done(2, 0, 10, Op::cas("k", None, "c"), Output::cas(true, None)),
        done(3, 20, 30, Op::get("k"), Output::absent()),
    ]);
    assert_illegal(&recs, "k");
}

#[test]
fn delete_existence_is_checked_when_reported() {
    let recs = with_decoys(vec![done(1, 0, 10, Op::delete("k"), Output::Deleted(true))]);
    assert_illegal(&recs, "k");
    let recs = with_decoys(vec![
        done(1, 0, 10, Op::put("k", "v"), Output::Ok),
        done(1, 20, 30, Op::delete("k"), Output::Deleted(false)),
    ]);
    assert_illegal(&recs, "k");
    // Unreported existence is not checked; the delete still takes effect.
    assert_ok(&[
        done(1, 0, 10, Op::delete("k"), Output::Ok),
        done(1, 20, 30, Op::put("k", "v"), Output::Ok),
        done(1, 40, 50, Op::delete("k"), Output::Deleted(true)),
        done(1, 60, 70, Op::get("k"), Output::absent()),
    ]);
    assert_illegal(
        &[
            done(1, 20, 30, Op::put("k", "v"), Output::Ok),
            done(1, 40, 50, Op::delete("k"), Output::Ok),
            done(1, 60, 70, Op::get("k"), Output::found("v")),
        ],
        "k",
    );
}

#[test]
fn read_from_the_future_is_refused() {
    // The Get completed before the Put it reads was even invoked.
    let recs = with_decoys(vec![
        done(1, 0, 10, Op::get("k"), Output::found("v")),
        done(2, 20, 30, Op::put("k", "v"), Output::Ok),
    ]);
    let text = assert_illegal(&recs, "k");
    assert!(text.contains("must follow #0 (completed at 10)"), "{text}");
    // Two sequential reads that go back in time.
    let recs = with_decoys(vec![
        done(1, 0, 100, Op::put("k", "v"), Output::Ok),
        done(2, 10, 20, Op::get("k"), Output::found("v")),
        done(3, 30, 40, Op::get("k"), Output::absent()),
    ]);
    assert_illegal(&recs, "k");
}

#[test]
fn touching_intervals_are_concurrent_but_disjoint_ones_are_ordered() {
    // The Put completes at 10 and the Get is invoked at 10: concurrent, either order works.
    assert_ok(&[
        done(1, 0, 10, Op::put("k", "v"), Output::Ok),
        done(2, 10, 20, Op::get("k"), Output::absent()),
    ]);
    // The Get completes at 10 and the Put it reads is invoked at 10: concurrent too.
    assert_ok(&[
        done(2, 0, 10, Op::get("k"), Output::found("v")),
        done(1, 10, 20, Op::put("k", "v"), Output::Ok),
    ]);
    // One tick later the Put precedes the Get.
    assert_illegal(
        &[
            done(1, 0, 10, Op::put("k", "v"), Output::Ok),
            done(2, 11, 20, Op::get("k"), Output::absent()),
        ],
        "k",
    );
}

#[test]
fn explanation_shows_the_prefix_and_the_stuck_operations() {
    let recs = vec![
        done(1, 0, 10, Op::put("k", "a"), Output::Ok),
        done(2, 20, 30, Op::append("k", "b"), Output::Ok),
        done(3, 40, 50, Op::get("k"), Output::found("a")),
        done(1, 60, 70, Op::put("k", "c"), Output::Ok),
    ];
    let result = check(&history(&recs), BUDGET);
    let v = result.violation().expect("a violation");
    assert_eq!(v.key, b"k");
    assert_eq!(v.linearized, vec![OpId(0), OpId(1)]);
    assert_eq!(v.unplaced, vec![OpId(2), OpId(3)]);
    let text = &v.explanation;
    for needle in [
        "key \"k\" is not linearizable (4 operations on it, 0 of unknown outcome)",
        "#0 client 1 [0, 10] Put(\"k\", \"a\") -> ok  => \"a\"",
        "#1 client 2 [20, 30] Append(\"k\", \"b\") -> ok  => \"ab\"",
        "after it the key holds \"ab\", and none of the 2 remaining operations can come next",
        "#2 client 3 [40, 50] Get(\"k\") -> \"a\": only #0 could write that value",
        "#2 client 3 [40, 50] Get(\"k\") -> \"a\": the key holds another value",
        "the other operation must follow #2 (completed at 50).",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

// ---- Valid histories ------------------------------------------------------------------------

#[test]
fn only_a_nontrivial_interleaving_works() {
    // Put a spans everything; the reads force: Put b, Put a, Append c.
    assert_ok(&[
        done(1, 0, 100, Op::put("k", "a"), Output::Ok),
        done(2, 10, 20, Op::put("k", "b"), Output::Ok),
        done(3, 21, 30, Op::get("k"), Output::found("b")),
        done(2, 40, 110, Op::append("k", "c"), Output::Ok),
        done(3, 50, 60, Op::get("k"), Output::found("a")),
        done(3, 120, 130, Op::get("k"), Output::found("ac")),
    ]);
    // Concurrent CASes: exactly one of two racing CAS(absent -> x) wins, and the loser reports
    // the winner's value.
    assert_ok(&[
        done(
            1,
            0,
            50,
            Op::cas("k", None, "one"),
            Output::cas(false, Some(b"two")),
        ),
        done(
            2,
            10,
            40,
            Op::cas("k", None, "two"),
            Output::cas(true, None),
        ),
        done(3, 60, 70, Op::get("k"), Output::found("two")),
    ]);
    // Appends in an order other than their invocations.
    assert_ok(&[
        done(1, 0, 100, Op::append("k", "1"), Output::Ok),
        done(2, 5, 100, Op::append("k", "2"), Output::Ok),
        done(3, 10, 100, Op::append("k", "3"), Output::Ok),
        done(4, 15, 100, Op::get("k"), Output::found("32")),
        done(4, 101, 102, Op::get("k"), Output::found("321")),
    ]);
}

#[test]
fn unknown_writes_may_or_may_not_take_effect() {
    // It did take effect (after its client gave up).
    assert_ok(&[
        unknown(1, 0, Op::put("k", "v")),
        done(2, 1000, 1010, Op::get("k"), Output::found("v")),
    ]);
    // It did not.
    assert_ok(&[
        unknown(1, 0, Op::put("k", "v")),
        done(2, 1000, 1010, Op::get("k"), Output::absent()),
    ]);
    // It took effect late: after a read that did not see it.
    assert_ok(&[
        done(1, 0, 10, Op::put("k", "a"), Output::Ok),
        unknown(1, 20, Op::append("k", "b")),
        done(2, 30, 40, Op::get("k"), Output::found("a")),
        done(2, 50, 60, Op::get("k"), Output::found("ab")),
    ]);
    // But once seen, it cannot be unseen.
    assert_illegal(
        &[
            done(1, 0, 10, Op::put("k", "a"), Output::Ok),
            unknown(1, 20, Op::append("k", "b")),
            done(2, 30, 40, Op::get("k"), Output::found("ab")),
            done(2, 50, 60, Op::get("k"), Output::found("a")),
        ],
        "k",
    );
    // Nor take effect before it was invoked.
    assert_illegal(
        &[
            done(2, 0, 10, Op::get("k"), Output::found("v")),
            unknown(1, 20, Op::put("k", "v")),
        ],
        "k",
    );
    // Unknown CAS and Delete take effect according to the state they meet, or not at all.
    assert_ok(&[
        done(1, 0, 10, Op::put("k", "a"), Output::Ok),
        unknown(2, 20, Op::cas("k", Some(b"a"), "b")),
        unknown(3, 20, Op::delete("k")),
        done(1, 30, 40, Op::get("k"), Output::found("b")),
        done(1, 50, 60, Op::get("k"), Output::absent()),
    ]);
    // Pending operations (neither completed nor marked) count as unknown.
    let mut h = history(&[done(2, 1000, 1010, Op::get("k"), Output::found("v"))]);
    h.invoke(1, 0, Op::put("k", "v"));
    assert!(check(&h, BUDGET).is_ok());
}

#[test]
fn unknown_gets_are_dropped() {
    let (result, stats) = check_with_stats(
        &history(&[
            done(1, 0, 10, Op::put("k", "v"), Output::Ok),
            unknown(2, 0, Op::get("k")),
            unknown(2, 20, Op::get("k")),
        ]),
        BUDGET,
    );
    assert!(result.is_ok(), "{result}");
    assert_eq!((stats.dropped, stats.operations), (2, 1));
}

#[test]
fn keys_are_checked_independently() {
    // Each key alone is fine; mixed into one register the reads would contradict each other.
    assert_ok(&[
        done(1, 0, 10, Op::put("k1", "v"), Output::Ok),
        done(2, 20, 30, Op::get("k2"), Output::absent()),
        done(2, 40, 50, Op::put("k2", "w"), Output::Ok),
        done(1, 60, 70, Op::get("k1"), Output::found("v")),
        done(1, 80, 90, Op::append("k2", "x"), Output::Ok),
        done(2, 100, 110, Op::get("k2"), Output::found("wx")),
        done(3, 0, 110, Op::get("k3"), Output::absent()),
    ]);
    // Binary keys, with a violation on the second one only.
    let recs = vec![
        done(1, 0, 10, Op::put([0u8, 1], "v"), Output::Ok),
        done(1, 20, 30, Op::get([0u8, 1]), Output::found("v")),
        done(1, 0, 10, Op::put([0xffu8], "v"), Output::Ok),
        done(1, 20, 30, Op::get([0xffu8]), Output::absent()),
    ];
    let result = check(&history(&recs), BUDGET);
    assert_eq!(result.illegal_key(), Some(&[0xffu8][..]), "{result}");
    assert!(result.to_string().contains("key \"\\xff\""), "{result}");
}

/// `n` concurrent appends of the same byte, then a read of one byte too many: every subset of
/// the appends gives a distinct configuration, so refusing it takes 2^n steps.
fn pathological(n: u64) -> Vec<Rec> {
    let mut recs: Vec<Rec> = (0..n)
        .map(|i| done(i, 0, 1000, Op::append("slow", "x"), Output::Ok))
        .collect();
    let too_many = "x".repeat(n as usize + 1);
    recs.push(done(
        99,
        2000,
        2001,
        Op::get("slow"),
        Output::found(too_many),
    ));
    recs
}

#[test]
fn a_pathological_history_times_out_and_does_not_hide_a_violation() {
    let recs = pathological(30);
    let (result, stats) = check_with_stats(&history(&recs), Some(100_000));
    assert_eq!(
        result,
        CheckResult::Timeout {
            keys: vec![b"slow".to_vec()]
        }
    );
    assert_eq!(stats.max_key_steps, 100_000);
    assert!(result
        .to_string()
        .contains("ran out of steps on key \"slow\""));
    // A violation on another key is still found and wins.
    let mut with_violation = recs.clone();
    with_violation.push(done(1, 0, 1, Op::get("t"), Output::found("x")));
    let result = check(&history(&with_violation), Some(100_000));
    assert_eq!(result.illegal_key(), Some(&b"t"[..]), "{result}");
    // A small version is decided.
    let (result, stats) = check_with_stats(&history(&pathological(8)), BUDGET);
    assert_eq!(result.illegal_key(), Some(&b"slow"[..]), "{result}");
    assert!(stats.steps > 256, "{stats:?}");
}

// ---- A brute-force reference on small random histories ------------------------------------

/// SplitMix64: a tiny seeded generator, so every run sees the same histories.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

type State = BTreeMap<Vec<u8>, Vec<u8>>;

/// The sequential KV service, written independently of the checker's model: applies `op`
/// and returns the answer.
fn execute(state: &mut State, op: &Op) -> Output {
    match op {
        Op::Get { key } => Output::Value(state.get(key).cloned()),
        Op::Put { key, value } => {
            state.insert(key.clone(), value.clone());
            Output::Ok
        }
        Op::Append { key, arg } => {
            state.entry(key.clone()).or_default().extend_from_slice(arg);
            Output::Ok
        }
        Op::Delete { key } => Output::Deleted(state.remove(key).is_some()),
        Op::CompareAndSwap { key, expected, new } => {
            let previous = state.get(key).cloned();
            let swapped = previous == *expected;
            if swapped {
                state.insert(key.clone(), new.clone());
            }
            Output::Cas { swapped, previous }
        }
    }
}

/// Whether `answer` is what the service could give for `op` (a `Delete` may answer `Ok`).
fn answer_matches(op: &Op, real: &Output, answer: &Output) -> bool {
    real == answer || (matches!(op, Op::Delete { .. }) && *answer == Output::Ok)
}

/// The reference: a plain exhaustive search over all orders (and, for unknown outcomes, over
/// leaving them out), remembering only which (remaining operations, state) pairs failed.
fn brute_force(recs: &[Rec]) -> bool {
    let all = (1u32 << recs.len()) - 1;
    exhaust(recs, all, &mut State::new(), &mut HashSet::new())
}

fn exhaust(
    recs: &[Rec],
    remaining: u32,
    state: &mut State,
    failed: &mut HashSet<(u32, State)>,
) -> bool {
    let waiting = |i: usize| remaining & (1 << i) != 0;
    if (0..recs.len()).all(|i| !waiting(i) || recs[i].2.is_none()) {
        return true; // the unknown rest never takes effect
    }
    if failed.contains(&(remaining, state.clone())) {
        return false;
    }
    for i in (0..recs.len()).filter(|&i| waiting(i)) {
        let (_, invoked, end, op) = &recs[i];
        // It can go next iff no other remaining op completed before it was invoked.
        let blocked = (0..recs.len()).any(|j| {
            j != i
                && waiting(j)
                && matches!(&recs[j].2, Some((completed, _)) if completed < invoked)
        });
        if blocked {
            continue;
        }
        let saved = state.clone();
        let real = execute(state, op);
        let fits = end
            .as_ref()
            .is_none_or(|(_, answer)| answer_matches(op, &real, answer));
        if fits && exhaust(recs, remaining & !(1 << i), state, failed) {
            return true;
        }
        *state = saved;
        // An unknown op may also never take effect.
        if end.is_none() && exhaust(recs, remaining & !(1 << i), state, failed) {
            return true;
        }
    }
    failed.insert((remaining, state.clone()));
    false
}

fn random_op(rng: &mut Rng, keys: &[&str], values: &[&str]) -> Op {
    let key = *rng.pick(keys);
    let value = *rng.pick(values);
    match rng.below(9) {
        0..=2 => Op::get(key),
        3 | 4 => Op::put(key, value),
        5 | 6 => Op::append(key, value),
        7 => Op::delete(key),
        _ => {
            let expected = if rng.chance(30) {
                None
            } else {
                Some(rng.pick(values).as_bytes())
            };
            Op::cas(key, expected, value)
        }
    }
}

/// A random value (or absence), drawn from small sets so that it is often right.
fn random_value(rng: &mut Rng, values: &[&str]) -> Option<Vec<u8>> {
    match rng.below(4) {
        0 => None,
        1 => Some(rng.pick(values).as_bytes().to_vec()),
        _ => {
            let a = rng.pick(values).as_bytes();
            let b = rng.pick(values).as_bytes();
            Some([a, b].concat())
        }
    }
}

/// A random answer for `op`.
fn random_output(rng: &mut Rng, op: &Op, values: &[&str]) -> Output {
    match op {
        Op::Get { .. } => Output::Value(random_value(rng, values)),
        Op::Put { .. } | Op::Append { .. } => Output::Ok,
        Op::Delete { .. } => match rng.below(3) {
            0 => Output::Ok,
            n => Output::Deleted(n == 1),
        },
        Op::CompareAndSwap { .. } => Output::Cas {
            swapped: rng.chance(50),
            previous: random_value(rng, values),
        },
    }
}

/// A small random history (at most `max_ops` operations) on one or two keys: either answered by a real execution, each
/// operation taking effect at a random point of its interval (or, for some of unknown
/// outcome, never), then perhaps perturbed; or answered at random.
fn small_history(rng: &mut Rng, max_ops: u64) -> Vec<Rec> {
    let n = 1 + rng.below(max_ops) as usize;
    let keys: &[&str] = if rng.chance(50) { &["k"] } else { &["k", "j"] };
    let values = ["", "a", "b", "ab", "ba", "c"];
    let honest = rng.chance(60);
    let mut recs: Vec<Rec> = Vec::new();
    let mut points = Vec::new();
    for i in 0..n {
        let op = random_op(rng, keys, &values);
        let invoked = rng.below(20);
        let completed = invoked + rng.below(10);
        // Twice the time plus one, so that no point ties with an endpoint of another interval.
        let point = 2 * (invoked + rng.below(completed - invoked + 1)) + 1;
        let unknown = rng.chance(20);
        let takes_effect = !unknown || rng.chance(50);
        if takes_effect {
            points.push((point, i));
        }
        let out = random_output(rng, &op, &values);
        let end = (!unknown).then_some((completed, out));
        recs.push((rng.below(3), invoked, end, op));
    }
    if honest {
        points.sort_unstable();
        let mut state = State::new();
        for (_, i) in points {
            let real = execute(&mut state, &recs[i].3);
            if let Some((_, out)) = &mut recs[i].2 {
                *out = real;
            }
        }
        for (_, _, end, op) in &mut recs {
            if let Some((_, out)) = end {
                if matches!(op, Op::Delete { .. }) && rng.chance(30) {
                    *out = Output::Ok;
                }
                if rng.chance(8) {
                    *out = random_output(rng, op, &values);
                }
            }
        }
    }
    recs
}

#[test]
fn agrees_with_brute_force_on_small_random_histories() {
    let mut rng = Rng(0x5eed);
    let (mut legal, mut illegal) = (0, 0);
    for case in 0..5000 {
        let recs = small_history(&mut rng, if case % 10 == 0 { 14 } else { 8 });
        let expected = brute_force(&recs);
        let result = check(&history(&recs), BUDGET);
        assert!(
            !matches!(result, CheckResult::Timeout { .. }),
            "case {case}: {result}"
        );
        assert_eq!(
            result.is_ok(),
            expected,
            "case {case}: the checker says {result}\nfor {recs:#?}"
        );
        if expected {
            legal += 1;
        } else {
            illegal += 1;
        }
    }
    assert!(
        legal > 1200 && illegal > 1200,
        "{legal} legal, {illegal} illegal"
    );
}

// ---- Histories generated from real executions ----------------------------------------------

/// Parameters of a generated history.
#[derive(Clone, Copy)]
struct Workload {
    clients: u64,
    ops: usize,
    keys: usize,
    /// Percent of operations whose client gives up (unknown outcome).
    unknown: u64,
    /// Times are event counts divided by this (coarser times: more ties).
    coarsen: u64,
    /// Percent of `Delete`s whose answer says whether the key existed.
    report_existed: u64,
}

enum Client {
    Idle,
    /// Invoked, not yet applied.
    Invoked {
        rec: usize,
    },
    /// Applied; waiting to hear the answer.
    Applied {
        rec: usize,
        out: Output,
    },
}

/// Runs clients against a real sequential map: each operation is applied at one random
/// moment between its invocation and its completion, so the history is linearizable by
/// construction. A client that gives up leaves its operation to be applied later, or never.
fn generate(seed: u64, w: Workload) -> Vec<Rec> {
    let mut rng = Rng(seed);
    let keys: Vec<String> = (0..w.keys).map(|k| format!("key{k}")).collect();
    let mut state = State::new();
    let mut clients: Vec<Client> = (0..w.clients).map(|_| Client::Idle).collect();
    let mut abandoned: Vec<usize> = Vec::new();
    let mut recs: Vec<Rec> = Vec::new();
    let mut clock = 0u64;
    let mut issued = 0usize;
    let mut running = 0usize;
    while issued < w.ops || running > 0 {
        clock += 1;
        let now = clock / w.coarsen;
        // Now and then an abandoned operation takes effect after all.
        if !abandoned.is_empty() && rng.chance(2) {
            let rec = abandoned.swap_remove(rng.below(abandoned.len() as u64) as usize);
            execute(&mut state, &recs[rec].3);
        }
        let c = rng.below(w.clients) as usize;
        clients[c] = match std::mem::replace(&mut clients[c], Client::Idle) {
            Client::Idle if issued < w.ops => {
                issued += 1;
                running += 1;
                let key = rng.pick(&keys).clone();
                let n = recs.len();
                let op = match rng.below(20) {
                    0..=7 => Op::get(&key),
                    8..=10 => Op::put(&key, format!("p{n};")),
                    11..=14 => Op::append(&key, format!("a{n}.")),
                    15 => Op::delete(&key),
                    _ => {
                        // Usually expect the current value, so that swaps happen.
                        let expected = if rng.chance(70) {
                            state.get(key.as_bytes()).cloned()
                        } else {
                            Some(b"p0;".to_vec())
                        };
                        Op::CompareAndSwap {
                            key: key.into_bytes(),
                            expected,
                            new: format!("s{n};").into_bytes(),
                        }
                    }
                };
                recs.push((c as u64, now, None, op));
                Client::Invoked { rec: n }
            }
            Client::Idle => Client::Idle,
            Client::Invoked { rec } if rng.chance(w.unknown) => {
                // The client gives up; the operation may still happen later.
                if rng.chance(50) {
                    abandoned.push(rec);
                }
                running -= 1;
                Client::Idle
            }
            Client::Invoked { rec } => {
                let mut out = execute(&mut state, &recs[rec].3);
                if matches!(out, Output::Deleted(_)) && !rng.chance(w.report_existed) {
                    out = Output::Ok;
                }
                Client::Applied { rec, out }
            }
            Client::Applied { .. } if rng.chance(w.unknown) => {
                // Applied, but the answer is lost: the client gives up all the same.
                running -= 1;
                Client::Idle
            }
            Client::Applied { rec, out } => {
                recs[rec].2 = Some((now, out));
                running -= 1;
                Client::Idle
            }
        };
    }
    recs
}

const SMALL: Workload = Workload {
    clients: 5,
    ops: 200,
    keys: 3,
    unknown: 5,
    coarsen: 1,
    report_existed: 50,
};

#[test]
fn generated_histories_pass() {
    for seed in 0..60 {
        let w = Workload {
            coarsen: 1 + seed % 4,
            ..SMALL
        };
        let recs = generate(seed, w);
        let (result, stats) = check_with_stats(&history(&recs), BUDGET);
        assert!(result.is_ok(), "seed {seed}: {result}");
        assert_eq!(stats.keys, 3);
    }
}

/// Indices of completed records satisfying `pred`.
fn completed_where(recs: &[Rec], pred: impl Fn(&Op, &Output) -> bool) -> Vec<usize> {
    (0..recs.len())
        .filter(|&i| matches!(&recs[i].2, Some((_, out)) if pred(&recs[i].3, out)))
        .collect()
}

#[track_caller]
fn assert_mutation_refused(seed: u64, recs: &[Rec], mutated: usize, what: &str) {
    let result = check(&history(recs), BUDGET);
    let key = recs[mutated].3.key();
    let v = result.violation().unwrap_or_else(|| {
        panic!("seed {seed}: {what} in #{mutated} not refused: {result}");
    });
    assert_eq!(v.key, key, "seed {seed}: {what}: wrong key in {result}");
    assert!(
        v.unplaced.contains(&OpId(mutated)),
        "seed {seed}: {what}: #{mutated} should be unplaced: {result}"
    );
}

#[test]
fn mutated_generated_histories_fail() {
    let mut mutations = [0usize; 3];
    for seed in 0..60 {
        let recs = generate(seed, SMALL);
        let mut rng = Rng(seed ^ 0xabcd);
        // A read of a value never written.
        let gets = completed_where(&recs, |op, _| matches!(op, Op::Get { .. }));
        if !gets.is_empty() {
            let i = *rng.pick(&gets);
            let mut bad = recs.clone();
            if let Some((_, out)) = &mut bad[i].2 {
                *out = Output::found(b"\xffnever written");
            }
            assert_mutation_refused(seed, &bad, i, "a read of a value never written");
            mutations[0] += 1;
        }
        // A read that shows an append twice (appended strings are unique).
        let seen_appends = completed_where(
            &recs,
            |_, out| matches!(out, Output::Value(Some(v)) if v.contains(&b'a')),
        );
        if !seen_appends.is_empty() {
            let i = *rng.pick(&seen_appends);
            let mut bad = recs.clone();
            if let Some((_, Output::Value(Some(v)))) = &mut bad[i].2 {
                let start = v.iter().position(|&b| b == b'a').unwrap_or(0);
                let len = v[start..]
                    .iter()
                    .position(|&b| b == b'.')
                    .map_or(1, |p| p + 1);
                let arg = v[start..start + len].to_vec();
                v.extend_from_slice(&arg);
            }
            assert_mutation_refused(seed, &bad, i, "a duplicated append");
            mutations[1] += 1;
        }
        // A CAS whose answer contradicts itself (swapped iff previous == expected).
        let cases = completed_where(&recs, |op, _| matches!(op, Op::CompareAndSwap { .. }));
        if !cases.is_empty() {
            let i = *rng.pick(&cases);
            let mut bad = recs.clone();
            if let Some((_, Output::Cas { swapped, .. })) = &mut bad[i].2 {
                *swapped = !*swapped;
            }
            assert_mutation_refused(seed, &bad, i, "a CAS with a flipped outcome");
            mutations[2] += 1;
        }
    }
    assert!(mutations.iter().all(|&m| m >= 40), "{mutations:?}");
}

// ---- Timing ---------------------------------------------------------------------------------

/// Not a pass/fail benchmark: prints what large histories cost (run with `--nocapture`).
/// The only assertion is that they are decided, and legal, within the default step budget.
#[test]
fn timing_on_large_histories() {
    let cases = [
        (
            "10 clients, 5000 ops, 10 keys",
            Workload {
                clients: 10,
                ops: 5000,
                keys: 10,
                unknown: 1,
                coarsen: 1,
                report_existed: 50,
            },
        ),
        (
            "10 clients, 5000 ops, 10 keys, times in 5s (ties)",
            Workload {
                clients: 10,
                ops: 5000,
                keys: 10,
                unknown: 1,
                coarsen: 5,
                report_existed: 50,
            },
        ),
        (
            "20 clients, 3000 ops, 1 key",
            Workload {
                clients: 20,
                ops: 3000,
                keys: 1,
                unknown: 1,
                coarsen: 1,
                report_existed: 50,
            },
        ),
        (
            "10 clients, 2000 ops, 1 key, 5% unknown outcomes",
            Workload {
                clients: 10,
                ops: 2000,
                keys: 1,
                unknown: 5,
                coarsen: 1,
                report_existed: 50,
            },
        ),
    ];
    for (name, w) in cases {
        let recs = generate(7, w);
        let h = history(&recs);
        let started = Instant::now();
        let (result, stats) = check_with_stats(&h, BUDGET);
        let elapsed = started.elapsed();
        println!(
            "checker: {name}: {result} in {:.1} ms; {} ops searched ({} of unknown outcome dropped, {} touched), \
             {} steps (max {} on one key), {} configurations, {} values",
            elapsed.as_secs_f64() * 1e3,
            stats.operations,
            stats.dropped,
            stats.touched,
            stats.steps,
            stats.max_key_steps,
            stats.configurations,
            stats.values,
        );
        assert!(result.is_ok(), "{name}: {result}");
    }
}
