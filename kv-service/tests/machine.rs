//! KvStateMachine: operation semantics, sessions (exactly-once, pipelining, expiry, bound) and
//! snapshots.

use kv_service::codec;
use kv_service::{
    Command, KvError, KvStateMachine, LogCommand, MachineConfig, Reply, Response, Seq, SessionId,
    WriteOp, WriteOutput,
};
use raft_core::{Entry, Payload};

/// Applies commands at consecutive log indexes, like a log would.
struct Log {
    kv: KvStateMachine,
    next_index: u64,
}

impl Log {
    fn new(config: MachineConfig) -> Self {
        Self {
            kv: KvStateMachine::new(config),
            next_index: 1,
        }
    }

    fn apply(&mut self, stamp_ms: u64, command: Command) -> Reply {
        let index = self.next_index;
        self.next_index += 1;
        let entry = Entry {
            index,
            term: 1,
            payload: Payload::Command(codec::encode(&LogCommand { stamp_ms, command })),
        };
        self.kv.apply(&entry).expect("a command entry is answered")
    }

    fn register(&mut self, stamp_ms: u64) -> SessionId {
        match self.apply(stamp_ms, Command::RegisterSession) {
            Ok(Response::SessionRegistered { session }) => session,
            other => panic!("registration failed: {other:?}"),
        }
    }

    fn write(
        &mut self,
        stamp_ms: u64,
        session: SessionId,
        seq: Seq,
        lowest: Seq,
        op: WriteOp,
    ) -> Reply {
        self.apply(
            stamp_ms,
            Command::Write {
                session,
                seq,
                lowest_unacked: lowest,
                op,
            },
        )
    }

    fn get(&self, key: &str) -> Option<String> {
        self.kv
            .get(key.as_bytes())
            .map(|v| String::from_utf8(v.to_vec()).unwrap())
    }
}

fn put(key: &str, value: &str) -> WriteOp {
    WriteOp::Put {
        key: key.into(),
        value: value.into(),
    }
}

fn append(key: &str, value: &str) -> WriteOp {
    WriteOp::Append {
        key: key.into(),
        value: value.into(),
    }
}

fn cas(key: &str, expected: Option<&str>, new: &str) -> WriteOp {
    WriteOp::CompareAndSwap {
        key: key.into(),
        expected: expected.map(Into::into),
        new: new.into(),
    }
}

fn written(output: WriteOutput) -> Reply {
    Ok(Response::Written(output))
}

fn config() -> MachineConfig {
    MachineConfig {
        session_timeout_ms: 1_000,
        max_sessions: 100,
        window: 8,
    }
}

#[test]
fn operations_follow_the_labs_semantics() {
    let mut log = Log::new(config());
    let s = log.register(0);
    assert_eq!(log.get("k"), None);
    // Append to an absent key acts as Put.
    assert_eq!(
        log.write(0, s, 1, 1, append("k", "a")),
        written(WriteOutput::Done)
    );
    assert_eq!(log.get("k").as_deref(), Some("a"));
    assert_eq!(
        log.write(0, s, 2, 2, append("k", "b")),
        written(WriteOutput::Done)
    );
    assert_eq!(log.get("k").as_deref(), Some("ab"));
    assert_eq!(
        log.write(0, s, 3, 3, put("k", "c")),
        written(WriteOutput::Done)
    );
    assert_eq!(log.get("k").as_deref(), Some("c"));
    // An empty value differs from an absent key.
    assert_eq!(
        log.write(0, s, 4, 4, put("e", "")),
        written(WriteOutput::Done)
    );
    assert_eq!(log.kv.get(b"e"), Some(&b""[..]));
    assert_eq!(log.kv.get(b"absent"), None);
    // Delete says whether the key was there.
    let delete = |key: &str| WriteOp::Delete { key: key.into() };
    assert_eq!(
        log.write(0, s, 5, 5, delete("e")),
        written(WriteOutput::Deleted { existed: true })
    );
    assert_eq!(log.kv.get(b"e"), None);
    assert_eq!(
        log.write(0, s, 6, 6, delete("e")),
        written(WriteOutput::Deleted { existed: false })
    );
    assert_eq!(log.kv.len(), 1);
}

#[test]
fn compare_and_swap_reports_what_was_there() {
    let mut log = Log::new(config());
    let s = log.register(0);
    // Expected absent, key absent: swaps.
    assert_eq!(
        log.write(0, s, 1, 1, cas("k", None, "1")),
        written(WriteOutput::Swapped {
            swapped: true,
            previous: None
        })
    );
    // Expected absent, key present: no swap, reports the value.
    assert_eq!(
        log.write(0, s, 2, 2, cas("k", None, "2")),
        written(WriteOutput::Swapped {
            swapped: false,
            previous: Some(b"1".to_vec())
        })
    );
    // Wrong expected value: no swap.
    assert_eq!(
        log.write(0, s, 3, 3, cas("k", Some("0"), "2")),
        written(WriteOutput::Swapped {
            swapped: false,
            previous: Some(b"1".to_vec())
        })
    );
    assert_eq!(log.get("k").as_deref(), Some("1"));
    // Right expected value: swaps.
    assert_eq!(
        log.write(0, s, 4, 4, cas("k", Some("1"), "2")),
        written(WriteOutput::Swapped {
            swapped: true,
            previous: Some(b"1".to_vec())
        })
    );
    assert_eq!(log.get("k").as_deref(), Some("2"));
    // Expected empty is not expected absent.
    assert_eq!(
        log.write(0, s, 5, 5, cas("z", Some(""), "x")),
        written(WriteOutput::Swapped {
            swapped: false,
            previous: None
        })
    );
    assert_eq!(log.get("z"), None);
}

#[test]
fn a_duplicate_is_answered_from_the_session_and_not_executed_again() {
    let mut log = Log::new(config());
    let s = log.register(0);
    let first = log.write(0, s, 1, 1, append("k", "x"));
    // The same request appears again in the log (a retry, or a duplicated message).
    let second = log.write(0, s, 1, 1, append("k", "x"));
    assert_eq!(first, second);
    assert_eq!(log.get("k").as_deref(), Some("x"));
    // A CAS retried after another write still gets its original answer.
    let swap = log.write(0, s, 2, 2, cas("k", Some("x"), "y"));
    // Request 3 is sent while the client still waits for 2 (its reply was lost).
    log.write(0, s, 3, 2, put("k", "z")).unwrap();
    assert_eq!(log.write(0, s, 2, 2, cas("k", Some("x"), "y")), swap);
    assert_eq!(log.get("k").as_deref(), Some("z"));
    assert_eq!(log.kv.cached_reply(s, 3), Some(&WriteOutput::Done));
}

#[test]
fn pipelined_requests_execute_in_log_order_and_replies_are_pruned_by_lowest_unacked() {
    let mut log = Log::new(config());
    let s = log.register(0);
    // Three requests in flight, applied out of order; each carries lowest = 1.
    log.write(0, s, 3, 1, append("k", "3")).unwrap();
    log.write(0, s, 1, 1, append("k", "1")).unwrap();
    log.write(0, s, 2, 1, append("k", "2")).unwrap();
    assert_eq!(log.get("k").as_deref(), Some("312"));
    let replies = |log: &Log| {
        log.kv
            .sessions()
            .get(s)
            .unwrap()
            .replies
            .keys()
            .copied()
            .collect::<Vec<_>>()
    };
    assert_eq!(replies(&log), vec![1, 2, 3]);
    // The client got replies 1 and 2; its next request says it waits for 3 and up.
    log.write(0, s, 4, 3, append("k", "4")).unwrap();
    assert_eq!(replies(&log), vec![3, 4]);
    // A late copy of request 1: not executed again, and its reply is gone.
    assert_eq!(
        log.write(0, s, 1, 1, append("k", "1")),
        Err(KvError::StaleRequest {
            seq: 1,
            lowest_unacked: 3
        })
    );
    assert_eq!(log.get("k").as_deref(), Some("3124"));
    // The lowest never goes back: a late request carrying lowest = 1 prunes nothing back.
    assert_eq!(
        log.write(0, s, 3, 1, append("k", "3")),
        written(WriteOutput::Done)
    );
    assert_eq!(replies(&log), vec![3, 4]);
    assert_eq!(log.get("k").as_deref(), Some("3124"));
}

#[test]
fn requests_beyond_the_window_are_refused_unexecuted() {
    let mut log = Log::new(MachineConfig {
        window: 4,
        ..config()
    });
    let s = log.register(0);
    assert_eq!(
        log.write(0, s, 5, 1, put("k", "5")),
        Err(KvError::WindowExceeded {
            seq: 5,
            lowest_unacked: 1,
            window: 4
        })
    );
    assert_eq!(log.get("k"), None);
    assert_eq!(
        log.write(0, s, 4, 1, put("k", "4")),
        written(WriteOutput::Done)
    );
    // Once the client acknowledges below 2, 5 fits.
    assert_eq!(
        log.write(0, s, 5, 2, put("k", "5")),
        written(WriteOutput::Done)
    );
    let session = log.kv.sessions().get(s).unwrap();
    assert!(session.replies.len() <= 4);
}

#[test]
fn sessions_expire_by_log_stamps_only() {
    let mut log = Log::new(config()); // timeout 1000 ms
    let a = log.register(0);
    let b = log.register(500);
    // However many entries apply, only stamps move the clock.
    for seq in 1..=5 {
        log.write(1_000, a, seq, seq, append("a", ".")).unwrap();
    }
    assert_eq!(log.kv.clock_ms(), 1_000);
    // A stamp lower than the clock does not move it back.
    log.write(10, b, 1, 1, put("b", "1")).unwrap();
    assert_eq!(log.kv.clock_ms(), 1_000);
    // b was last active at 1000 (the clock when its write applied), a at 1000 too.
    // At 2000 both are exactly at the timeout: alive.
    assert_eq!(
        log.apply(2_000, Command::KeepAlive { session: a }),
        Ok(Response::KeptAlive)
    );
    // At 2001, b (inactive since 1000) expires; a was refreshed at 2000.
    assert_eq!(
        log.write(2_001, b, 2, 2, put("b", "2")),
        Err(KvError::SessionExpired)
    );
    assert_eq!(
        log.get("b").as_deref(),
        Some("1"),
        "the request was not executed"
    );
    assert!(log.kv.sessions().get(b).is_none());
    // An expired session never comes back, even for a retry of an executed request.
    assert_eq!(
        log.write(2_001, b, 1, 1, put("b", "1")),
        Err(KvError::SessionExpired)
    );
    assert_eq!(
        log.apply(2_001, Command::KeepAlive { session: b }),
        Err(KvError::SessionExpired)
    );
    // An unknown session is treated the same way.
    assert_eq!(
        log.write(2_001, 999, 1, 1, put("x", "1")),
        Err(KvError::SessionExpired)
    );
    assert_eq!(log.get("x"), None);
    assert!(log.kv.sessions().get(a).is_some());
}

#[test]
fn the_session_table_is_bounded_and_evicts_the_least_recently_active() {
    let mut log = Log::new(MachineConfig {
        max_sessions: 3,
        ..config()
    });
    let s1 = log.register(10);
    let s2 = log.register(10);
    let s3 = log.register(20);
    // s1 becomes the most recently active; s2 (stamp 10) is now the least.
    log.write(30, s1, 1, 1, put("k", "1")).unwrap();
    let s4 = log.register(30);
    let ids = |log: &Log| {
        log.kv
            .sessions()
            .sessions()
            .keys()
            .copied()
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&log), vec![s1, s3, s4]);
    assert_eq!(
        log.write(30, s2, 1, 1, put("k", "2")),
        Err(KvError::SessionExpired)
    );
    // s3 (20) goes next; then s1 and s4 tie at 30 and the older id, s1, goes first.
    let s5 = log.register(30);
    assert_eq!(ids(&log), vec![s1, s4, s5]);
    let s6 = log.register(30);
    assert_eq!(ids(&log), vec![s4, s5, s6]);
    assert_eq!(log.kv.sessions().len(), 3);
}

#[test]
fn session_ids_are_log_indexes() {
    let mut log = Log::new(config());
    log.apply(0, Command::RegisterSession).unwrap();
    log.next_index = 42;
    assert_eq!(log.register(0), 42);
}

#[test]
fn noops_undecodable_and_old_entries() {
    let mut kv = KvStateMachine::new(config());
    let noop = Entry {
        index: 1,
        term: 1,
        payload: Payload::Noop,
    };
    assert_eq!(kv.apply(&noop), None);
    assert_eq!(kv.applied_index(), 1);
    let mut bytes = codec::encode(&LogCommand {
        stamp_ms: 5,
        command: Command::RegisterSession,
    });
    bytes[1] += 1; // another protocol version
    let future = Entry {
        index: 2,
        term: 1,
        payload: Payload::Command(bytes),
    };
    assert!(matches!(kv.apply(&future), Some(Err(KvError::Codec(_)))));
    assert_eq!(kv.applied_index(), 2);
    assert_eq!(kv.undecodable_entries(), 1);
    assert!(kv.sessions().is_empty(), "nothing executed");
    let register = Entry {
        index: 2,
        term: 1,
        payload: Payload::Command(codec::encode(&LogCommand {
            stamp_ms: 5,
            command: Command::RegisterSession,
        })),
    };
    assert_eq!(kv.apply(&register), None, "index 2 is already applied");
    assert!(kv.sessions().is_empty());
}

#[test]
fn snapshot_round_trips_data_sessions_and_clock() {
    let mut log = Log::new(config());
    let s = log.register(7);
    log.write(9, s, 1, 1, put("k", "v")).unwrap();
    log.write(9, s, 2, 1, put("", "")).unwrap();
    let bytes = log.kv.snapshot();
    let restored = KvStateMachine::restore(config(), &bytes).unwrap();
    assert_eq!(restored, log.kv);
    assert_eq!(restored.snapshot(), bytes);
    assert_eq!(restored.applied_index(), 3);
    assert_eq!(restored.clock_ms(), 9);
    assert_eq!(restored.cached_reply(s, 2), Some(&WriteOutput::Done));
    // Damaged or foreign bytes are refused, never panic.
    assert!(KvStateMachine::restore(config(), &bytes[..bytes.len() - 1]).is_err());
    assert!(KvStateMachine::restore(
        config(),
        &codec::encode(&kv_service::ClientRequest::RegisterSession)
    )
    .is_err());
    let mut other_version = bytes.clone();
    other_version[1] += 1;
    assert!(matches!(
        KvStateMachine::restore(config(), &other_version),
        Err(kv_service::CodecError::UnsupportedVersion { .. })
    ));
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// A step of a random history: a command at some stamp increment.
    #[derive(Clone, Debug)]
    enum Step {
        Register,
        KeepAlive(u8),
        Write {
            session: u8,
            seq: u8,
            lowest: u8,
            key: u8,
            kind: u8,
            value: u8,
        },
    }

    fn step() -> impl Strategy<Value = (u64, Step)> {
        let step = prop_oneof![
            1 => Just(Step::Register),
            1 => any::<u8>().prop_map(Step::KeepAlive),
            8 => (any::<u8>(), 0u8..12, 0u8..12, 0u8..4, 0u8..5, any::<u8>()).prop_map(
                |(session, seq, lowest, key, kind, value)| Step::Write {
                    session, seq, lowest, key, kind, value
                }
            ),
        ];
        (0u64..400, step)
    }

    /// Turns a step into a command; sessions are picked among the ids registered so far.
    fn command(step: &Step, sessions: &[SessionId]) -> Command {
        let pick = |i: u8| {
            if sessions.is_empty() {
                1000 + u64::from(i)
            } else {
                sessions[usize::from(i) % sessions.len()]
            }
        };
        match *step {
            Step::Register => Command::RegisterSession,
            Step::KeepAlive(s) => Command::KeepAlive { session: pick(s) },
            Step::Write {
                session,
                seq,
                lowest,
                key,
                kind,
                value,
            } => {
                let key = vec![b'k', key];
                let value = vec![value];
                let op = match kind {
                    0 => WriteOp::Put { key, value },
                    1 => WriteOp::Append { key, value },
                    2 => WriteOp::Delete { key },
                    3 => WriteOp::CompareAndSwap {
                        key,
                        expected: None,
                        new: value,
                    },
                    _ => WriteOp::CompareAndSwap {
                        key,
                        expected: Some(value.clone()),
                        new: vec![],
                    },
                };
                Command::Write {
                    session: pick(session),
                    seq: u64::from(seq),
                    lowest_unacked: u64::from(lowest.min(seq)),
                    op,
                }
            }
        }
    }

    /// Applies a history from a machine, returning every reply.
    fn run(
        kv: &mut KvStateMachine,
        from_index: u64,
        steps: &[(u64, Step)],
        clock: &mut u64,
        sessions: &mut Vec<SessionId>,
    ) -> Vec<Reply> {
        let mut replies = Vec::new();
        for (i, (advance, step)) in steps.iter().enumerate() {
            *clock += advance;
            let index = from_index + i as u64;
            let cmd = LogCommand {
                stamp_ms: *clock,
                command: command(step, sessions),
            };
            let entry = Entry {
                index,
                term: 1,
                payload: Payload::Command(codec::encode(&cmd)),
            };
            let reply = kv.apply(&entry).expect("command entries are answered");
            if let Ok(Response::SessionRegistered { session }) = &reply {
                sessions.push(*session);
            }
            replies.push(reply);
        }
        replies
    }

    fn small() -> MachineConfig {
        MachineConfig {
            session_timeout_ms: 1_000,
            max_sessions: 3,
            window: 6,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Two replicas applying the same log produce the same snapshot bytes, and restoring
        /// a snapshot taken at any point then continuing gives exactly the replies and state of
        /// continuing without it.
        #[test]
        fn snapshots_are_deterministic_and_restore_is_transparent(
            steps in proptest::collection::vec(step(), 1..80),
            cut in any::<prop::sample::Index>(),
        ) {
            let cut = cut.index(steps.len() + 1);
            let (head, tail) = steps.split_at(cut);

            let mut a = KvStateMachine::new(small());
            let (mut clock_a, mut sessions_a) = (0, Vec::new());
            let replies_a_head = run(&mut a, 1, head, &mut clock_a, &mut sessions_a);

            let mut b = KvStateMachine::new(small());
            let (mut clock_b, mut sessions_b) = (0, Vec::new());
            let replies_b_head = run(&mut b, 1, head, &mut clock_b, &mut sessions_b);
            prop_assert_eq!(&replies_a_head, &replies_b_head);
            let snapshot = a.snapshot();
            prop_assert_eq!(&snapshot, &b.snapshot());

            let mut restored = KvStateMachine::restore(small(), &snapshot).unwrap();
            prop_assert_eq!(restored.snapshot(), snapshot.clone());
            let next = cut as u64 + 1;
            let replies_a = run(&mut a, next, tail, &mut clock_a, &mut sessions_a);
            let replies_r = run(&mut restored, next, tail, &mut clock_b, &mut sessions_b);
            prop_assert_eq!(replies_a, replies_r);
            prop_assert_eq!(a.snapshot(), restored.snapshot());
            // Bounds hold whatever the history.
            prop_assert!(a.sessions().len() <= small().max_sessions);
            for session in a.sessions().sessions().values() {
                prop_assert!(session.replies.len() as u64 <= small().window);
                prop_assert!(session.replies.keys().all(|&s| s >= session.lowest_unacked));
            }
        }
    }
}
