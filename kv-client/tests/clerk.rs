//! The Clerk against scripted servers: every reply, timeout and transport error is chosen by
//! the test.

use kv_client::{
    Clerk, ClerkAction, ClerkConfig, ClerkConfigError, ClerkError, OpOutput, Operation, RequestId,
    SubmitError,
};
use kv_service::{ClientRequest, KvError, NodeId, Reply, Response, RetryReason, WriteOutput};

const TIMEOUT: u64 = 100;

fn config() -> ClerkConfig {
    ClerkConfig {
        servers: vec![1, 2, 3],
        window: 4,
        request_timeout_ms: TIMEOUT,
        backoff_min_ms: 10,
        backoff_max_ms: 80,
        session_timeout_ms: 1_000,
        keepalive_interval_ms: None,
        seed: 9,
    }
}

fn clerk(config: ClerkConfig) -> Clerk {
    Clerk::new(config).expect("valid configuration")
}

/// The transmissions among `actions`, as `(request, server, message)`.
fn sends(actions: &[ClerkAction]) -> Vec<(RequestId, NodeId, ClientRequest)> {
    actions
        .iter()
        .filter_map(|a| match a {
            ClerkAction::Send {
                request,
                server,
                message,
            } => Some((*request, *server, message.clone())),
            _ => None,
        })
        .collect()
}

/// The single transmission among the Clerk's pending actions.
fn one_send(clerk: &mut Clerk) -> (RequestId, NodeId, ClientRequest) {
    let actions = clerk.take_actions();
    let mut sent = sends(&actions);
    assert_eq!(sent.len(), 1, "one transmission expected: {actions:?}");
    sent.remove(0)
}

/// The operations finished among `actions`.
fn finished(actions: &[ClerkAction]) -> Vec<ClerkAction> {
    actions
        .iter()
        .filter(|a| !matches!(a, ClerkAction::Send { .. }))
        .cloned()
        .collect()
}

const DONE: Reply = Ok(Response::Written(WriteOutput::Done));

/// Registers session `session` for a Clerk whose first write was just submitted.
fn register(clerk: &mut Clerk, now: u64, session: u64) {
    let (request, _, message) = one_send(clerk);
    assert_eq!(message, ClientRequest::RegisterSession);
    clerk.on_reply(now, request, Ok(Response::SessionRegistered { session }));
}

fn write_seq(message: &ClientRequest) -> (u64, u64, u64) {
    match message {
        ClientRequest::Write {
            session,
            seq,
            lowest_unacked,
            ..
        } => (*session, *seq, *lowest_unacked),
        other => panic!("expected a write, got {other:?}"),
    }
}

#[test]
fn a_session_is_registered_before_the_first_write_and_writes_are_numbered() {
    let mut c = clerk(config());
    c.submit(0, 1, Operation::put("k", "v")).unwrap();
    register(&mut c, 0, 42);
    assert_eq!(c.session(), Some(42));
    let (request, server, message) = one_send(&mut c);
    assert_eq!(server, 1);
    assert_eq!(write_seq(&message), (42, 1, 1));
    c.on_reply(5, request, DONE);
    assert_eq!(
        c.take_actions(),
        vec![ClerkAction::Completed {
            op: 1,
            output: OpOutput::Written(WriteOutput::Done)
        }]
    );
    c.submit(6, 2, Operation::append("k", "w")).unwrap();
    let (_, _, message) = one_send(&mut c);
    assert_eq!(write_seq(&message), (42, 2, 2), "no second registration");
}

#[test]
fn reads_need_no_session() {
    let mut c = clerk(config());
    c.submit(0, 1, Operation::get("k")).unwrap();
    let (request, _, message) = one_send(&mut c);
    assert_eq!(message, ClientRequest::Get { key: b"k".to_vec() });
    c.on_reply(1, request, Ok(Response::Value(None)));
    assert_eq!(
        c.take_actions(),
        vec![ClerkAction::Completed {
            op: 1,
            output: OpOutput::Value(None)
        }]
    );
    assert_eq!(c.session(), None);
}

#[test]
fn leader_hints_are_followed_at_once_and_remembered() {
    let mut c = clerk(config());
    c.submit(0, 1, Operation::get("k")).unwrap();
    let (request, server, _) = one_send(&mut c);
    assert_eq!(server, 1);
    c.on_reply(
        1,
        request,
        Err(KvError::NotLeader {
            leader_hint: Some(3),
        }),
    );
    let (request, server, _) = one_send(&mut c);
    assert_eq!(server, 3, "the hint is followed without waiting");
    c.on_reply(2, request, Ok(Response::Value(Some(b"v".to_vec()))));
    assert_eq!(c.leader(), 3);
    c.take_actions();
    c.submit(3, 2, Operation::get("k")).unwrap();
    assert_eq!(one_send(&mut c).1, 3);
    // A hint naming the server itself, or nobody, moves on to the next server.
    c.submit(3, 3, Operation::get("j")).unwrap();
    let (request, server, _) = one_send(&mut c);
    assert_eq!(server, 3);
    c.on_reply(
        4,
        request,
        Err(KvError::NotLeader {
            leader_hint: Some(3),
        }),
    );
    assert_eq!(one_send(&mut c).1, 1);
}

#[test]
fn timeouts_and_transport_errors_rotate_then_back_off_within_the_cap() {
    let cfg = config();
    let mut c = clerk(cfg.clone());
    c.submit(0, 1, Operation::get("k")).unwrap();
    let (_, server, _) = one_send(&mut c);
    assert_eq!(server, 1);
    assert_eq!(c.next_deadline(), Some(TIMEOUT));
    c.tick(TIMEOUT - 1);
    assert!(c.take_actions().is_empty(), "not timed out yet");
    c.tick(TIMEOUT);
    let (request, server, _) = one_send(&mut c);
    assert_eq!(server, 2, "a timeout moves to the next server at once");
    c.on_transport_error(TIMEOUT, request);
    let (request, server, _) = one_send(&mut c);
    assert_eq!(server, 3);
    // Every server failed once: from now on, wait before each retry.
    let mut now = TIMEOUT;
    let mut expected_server = 1;
    let mut last = request;
    for _ in 0..20 {
        c.on_transport_error(now, last);
        assert!(c.take_actions().is_empty(), "backing off");
        let at = c.next_deadline().expect("a retry is scheduled");
        let wait = at - now;
        assert!(
            (cfg.backoff_min_ms / 2..=cfg.backoff_max_ms).contains(&wait),
            "waits {wait}"
        );
        c.tick(at);
        let (request, server, _) = one_send(&mut c);
        assert_eq!(server, expected_server);
        expected_server = expected_server % 3 + 1;
        last = request;
        now = at;
    }
    c.on_reply(now, last, Ok(Response::Value(None)));
    assert_eq!(finished(&c.take_actions()).len(), 1);
}

#[test]
fn busy_and_retry_answers_wait_and_ask_the_same_server_again() {
    let mut c = clerk(config());
    c.submit(0, 1, Operation::get("k")).unwrap();
    let (request, _, _) = one_send(&mut c);
    c.on_reply(0, request, Err(KvError::Busy));
    assert!(c.take_actions().is_empty());
    let at = c.next_deadline().unwrap();
    assert!(at >= 5);
    c.tick(at);
    let (request, server, _) = one_send(&mut c);
    assert_eq!(server, 1);
    let retry = KvError::Retry {
        reason: RetryReason::LeadershipLost,
    };
    c.on_reply(at, request, Err(retry));
    assert!(c.take_actions().is_empty());
    c.tick(c.next_deadline().unwrap());
    assert_eq!(one_send(&mut c).1, 1);
}

#[test]
fn retries_reuse_the_sequence_and_any_transmission_can_complete_the_write_once() {
    let mut c = clerk(config());
    c.submit(0, 1, Operation::append("k", "x")).unwrap();
    register(&mut c, 0, 7);
    let (first, server, message) = one_send(&mut c);
    assert_eq!(server, 1);
    c.tick(TIMEOUT);
    let (second, server, retry) = one_send(&mut c);
    assert_eq!(server, 2);
    assert_eq!(retry, message, "the same request, same sequence");
    // The first transmission's answer arrives late: it completes the write.
    c.on_reply(TIMEOUT + 1, first, DONE);
    assert_eq!(finished(&c.take_actions()).len(), 1);
    // The second's answer, and a duplicate of the first, change nothing.
    c.on_reply(TIMEOUT + 2, second, DONE);
    c.on_reply(TIMEOUT + 2, first, DONE);
    assert!(c.take_actions().is_empty());
    assert_eq!(c.pending(), 0);
}

#[test]
fn an_error_from_an_older_transmission_is_ignored() {
    let mut c = clerk(config());
    c.submit(0, 1, Operation::get("k")).unwrap();
    let (first, _, _) = one_send(&mut c);
    c.tick(TIMEOUT);
    let (second, server, _) = one_send(&mut c);
    assert_eq!(server, 2);
    c.on_reply(
        TIMEOUT,
        first,
        Err(KvError::NotLeader { leader_hint: None }),
    );
    c.on_transport_error(TIMEOUT, first);
    assert!(
        c.take_actions().is_empty(),
        "the transmission to 2 is still pending"
    );
    c.on_reply(TIMEOUT, second, Ok(Response::Value(None)));
    assert_eq!(finished(&c.take_actions()).len(), 1);
}

#[test]
fn the_window_bounds_operations_in_flight_and_the_span_of_sequences() {
    let mut c = clerk(ClerkConfig {
        window: 2,
        ..config()
    });
    for op in 1..=4 {
        c.submit(0, op, Operation::append("k", vec![b'0' + op as u8]))
            .unwrap();
    }
    register(&mut c, 0, 5);
    let sent = sends(&c.take_actions());
    assert_eq!(sent.len(), 2);
    assert_eq!(write_seq(&sent[0].2), (5, 1, 1));
    assert_eq!(write_seq(&sent[1].2), (5, 2, 1));
    // Sequence 2 completes, but 1 is still unanswered: 3 would be two past it.
    c.on_reply(1, sent[1].0, DONE);
    let actions = c.take_actions();
    assert!(sends(&actions).is_empty(), "{actions:?}");
    assert_eq!(c.in_flight(), 1);
    // Operations start in submission order: a read waits behind the writes.
    c.submit(1, 9, Operation::get("k")).unwrap();
    assert!(sends(&c.take_actions()).is_empty());
    c.on_reply(2, sent[0].0, DONE);
    let sent = sends(&c.take_actions());
    assert_eq!(sent.len(), 2);
    assert_eq!(write_seq(&sent[0].2), (5, 3, 3));
    assert_eq!(write_seq(&sent[1].2), (5, 4, 3));
    c.on_reply(3, sent[1].0, DONE);
    let (_, _, read) = one_send(&mut c);
    assert_eq!(read, ClientRequest::Get { key: b"k".to_vec() });
    // A retry of 3 now says the Clerk waits for nothing below 3.
    c.tick(3 + TIMEOUT);
    let retried = sends(&c.take_actions());
    assert!(retried
        .iter()
        .any(|(_, _, m)| matches!(m, ClientRequest::Write { .. }) && write_seq(m) == (5, 3, 3)));
}

#[test]
fn too_large_is_definite_only_when_the_write_was_sent_once() {
    let too_large = KvError::TooLarge {
        size: 100,
        limit: 50,
    };
    let mut c = clerk(config());
    c.submit(0, 1, Operation::put("k", "v")).unwrap();
    register(&mut c, 0, 1);
    let (request, _, _) = one_send(&mut c);
    c.on_reply(0, request, Err(too_large.clone()));
    assert_eq!(
        finished(&c.take_actions()),
        vec![ClerkAction::Failed {
            op: 1,
            error: ClerkError::TooLarge {
                size: 100,
                limit: 50
            }
        }]
    );
    // Sent twice: the first copy may have executed somewhere with a larger limit.
    c.submit(1, 2, Operation::put("k", "v")).unwrap();
    one_send(&mut c);
    c.tick(1 + TIMEOUT);
    let (request, _, _) = one_send(&mut c);
    c.on_reply(1 + TIMEOUT, request, Err(too_large.clone()));
    assert_eq!(
        finished(&c.take_actions()),
        vec![ClerkAction::Failed {
            op: 2,
            error: ClerkError::OutcomeUnknown {
                cause: too_large.clone()
            }
        }]
    );
    // A read changes nothing: always definite.
    c.submit(2 + TIMEOUT, 3, Operation::get("k")).unwrap();
    one_send(&mut c);
    c.tick(2 + 2 * TIMEOUT);
    let (request, _, _) = one_send(&mut c);
    c.on_reply(2 + 2 * TIMEOUT, request, Err(too_large));
    assert!(matches!(
        finished(&c.take_actions())[..],
        [ClerkAction::Failed {
            op: 3,
            error: ClerkError::TooLarge { .. }
        }]
    ));
}

#[test]
fn an_expired_session_ends_sent_writes_as_unknown_and_restarts_unsent_ones() {
    let mut c = clerk(ClerkConfig {
        window: 1,
        ..config()
    });
    c.submit(0, 1, Operation::append("k", "1")).unwrap();
    c.submit(0, 2, Operation::append("k", "2")).unwrap();
    c.submit(0, 3, Operation::get("k")).unwrap();
    register(&mut c, 0, 10);
    let (first, _, _) = one_send(&mut c);
    // The first transmission times out; the retry is answered "session expired".
    c.tick(TIMEOUT);
    let (retry, _, _) = one_send(&mut c);
    c.on_reply(TIMEOUT, retry, Err(KvError::SessionExpired));
    let actions = c.take_actions();
    assert_eq!(
        finished(&actions),
        vec![ClerkAction::Failed {
            op: 1,
            error: ClerkError::OutcomeUnknown {
                cause: KvError::SessionExpired
            }
        }]
    );
    // Op 2 was never sent: it starts again under a new session, as sequence 1.
    let sent = sends(&actions);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].2, ClientRequest::RegisterSession);
    assert_eq!(c.session(), None);
    c.on_reply(
        TIMEOUT,
        sent[0].0,
        Ok(Response::SessionRegistered { session: 20 }),
    );
    let (request, _, message) = one_send(&mut c);
    assert_eq!(write_seq(&message), (20, 1, 1));
    // The late answer to op 1's first transmission is ignored: op 1 is over.
    c.on_reply(TIMEOUT + 1, first, DONE);
    assert!(c.take_actions().is_empty());
    c.on_reply(TIMEOUT + 1, request, DONE);
    let actions = c.take_actions();
    assert_eq!(
        finished(&actions),
        vec![ClerkAction::Completed {
            op: 2,
            output: OpOutput::Written(WriteOutput::Done)
        }]
    );
    assert_eq!(
        sends(&actions)[0].2,
        ClientRequest::Get { key: b"k".to_vec() }
    );
}

#[test]
fn session_expired_from_an_older_transmission_also_ends_the_write() {
    let mut c = clerk(config());
    c.submit(0, 1, Operation::put("k", "v")).unwrap();
    register(&mut c, 0, 3);
    let (first, _, _) = one_send(&mut c);
    c.tick(TIMEOUT);
    one_send(&mut c);
    c.on_reply(TIMEOUT, first, Err(KvError::SessionExpired));
    assert!(matches!(
        finished(&c.take_actions())[..],
        [ClerkAction::Failed {
            op: 1,
            error: ClerkError::OutcomeUnknown { .. }
        }]
    ));
    assert_eq!(c.pending(), 0);
}

#[test]
fn an_idle_clerk_keeps_its_session_alive() {
    let mut c = clerk(ClerkConfig {
        keepalive_interval_ms: Some(300),
        ..config()
    });
    c.submit(0, 1, Operation::put("k", "v")).unwrap();
    register(&mut c, 0, 8);
    let (request, _, _) = one_send(&mut c);
    c.on_reply(10, request, DONE);
    c.take_actions();
    // The write was sent at 0: the session is proven alive as of 0.
    assert_eq!(c.next_deadline(), Some(300));
    c.tick(300);
    let (request, _, message) = one_send(&mut c);
    assert_eq!(message, ClientRequest::KeepAlive { session: 8 });
    c.on_reply(310, request, Ok(Response::KeptAlive));
    assert_eq!(c.next_deadline(), Some(600));
    // A keep-alive answered "expired" drops the session; the next write registers again.
    c.tick(600);
    let (request, _, _) = one_send(&mut c);
    c.on_reply(600, request, Err(KvError::SessionExpired));
    assert_eq!(c.session(), None);
    assert!(c.take_actions().is_empty());
    c.submit(700, 2, Operation::put("k", "w")).unwrap();
    assert_eq!(one_send(&mut c).2, ClientRequest::RegisterSession);
}

#[test]
fn a_session_not_proven_alive_lately_is_replaced_before_the_next_write() {
    let mut c = clerk(config()); // no keep-alives; trust lasts 1000 ms
    c.submit(0, 1, Operation::put("k", "v")).unwrap();
    register(&mut c, 0, 8);
    let (request, _, _) = one_send(&mut c);
    c.on_reply(0, request, DONE);
    c.take_actions();
    c.submit(1_000, 2, Operation::put("k", "w")).unwrap();
    let (request, _, message) = one_send(&mut c);
    assert_eq!(
        write_seq(&message),
        (8, 2, 2),
        "still trusted at exactly 1000 ms"
    );
    c.on_reply(1_000, request, DONE);
    c.take_actions();
    // The last proof was the write sent at 1000; at 2001 the session is not trusted.
    c.submit(2_001, 3, Operation::put("k", "x")).unwrap();
    register(&mut c, 2_001, 9);
    let (_, _, message) = one_send(&mut c);
    assert_eq!(write_seq(&message), (9, 1, 1));
}

#[test]
fn operation_ids_must_be_unique_among_unfinished_operations() {
    let mut c = clerk(config());
    c.submit(0, 1, Operation::get("k")).unwrap();
    assert_eq!(
        c.submit(0, 1, Operation::get("j")),
        Err(SubmitError::DuplicateOpId(1))
    );
    let (request, _, _) = one_send(&mut c);
    c.on_reply(0, request, Ok(Response::Value(None)));
    c.submit(0, 1, Operation::get("j")).unwrap();
}

#[test]
fn undecodable_reply_bytes_count_as_a_transport_error() {
    let mut c = clerk(config());
    c.submit(0, 1, Operation::get("k")).unwrap();
    let (request, server, _) = one_send(&mut c);
    assert_eq!(server, 1);
    c.on_reply_bytes(0, request, b"garbage");
    let (request, server, _) = one_send(&mut c);
    assert_eq!(server, 2);
    let reply: Reply = Ok(Response::Value(Some(b"v".to_vec())));
    c.on_reply_bytes(0, request, &kv_service::codec::encode(&reply));
    assert_eq!(finished(&c.take_actions()).len(), 1);
}

#[test]
fn invalid_configurations_are_refused() {
    let bad = |f: fn(&mut ClerkConfig)| {
        let mut cfg = config();
        f(&mut cfg);
        Clerk::new(cfg).err()
    };
    assert_eq!(
        bad(|c| c.servers.clear()),
        Some(ClerkConfigError::NoServers)
    );
    assert_eq!(
        bad(|c| c.servers = vec![1, 2, 1]),
        Some(ClerkConfigError::DuplicateServer(1))
    );
    assert_eq!(bad(|c| c.window = 0), Some(ClerkConfigError::ZeroWindow));
    assert_eq!(
        bad(|c| c.request_timeout_ms = 0),
        Some(ClerkConfigError::ZeroTimeout)
    );
    assert!(matches!(
        bad(|c| c.backoff_max_ms = 1),
        Some(ClerkConfigError::Backoff { .. })
    ));
    assert!(matches!(
        bad(|c| c.keepalive_interval_ms = Some(5_000)),
        Some(ClerkConfigError::KeepAlive { .. })
    ));
    assert_eq!(bad(|_| {}), None);
}
