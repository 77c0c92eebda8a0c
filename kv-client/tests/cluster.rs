//! Clerks against a hand-driven cluster of service cores (`testkit::LocalCluster`): failover,
//! duplicated requests, lost replies, hints, bounds, snapshots, restarts and session expiry.

use std::collections::{BTreeMap, BTreeSet};

use kv_client::{
    Clerk, ClerkAction, ClerkConfig, ClerkError, OpId, OpOutput, Operation, RequestId,
};
use kv_service::testkit::LocalCluster;
use kv_service::{KvError, NodeId, ServiceConfig, WriteOutput};

/// Clerks and a cluster, with the client links in between.
struct World {
    cluster: LocalCluster,
    clerks: Vec<Clerk>,
    /// Server-side request id -> (clerk, the clerk's transmission id).
    routes: BTreeMap<u64, (usize, RequestId)>,
    next_route: u64,
    outcomes: Vec<BTreeMap<OpId, Result<OpOutput, ClerkError>>>,
    /// Deliver every client request twice.
    duplicate_requests: bool,
    /// Lose every n-th reply on its way back (the server did the work).
    lose_every_nth_reply: Option<u64>,
    replies_seen: u64,
    /// Servers each clerk cannot reach (requests and replies are lost).
    unreachable: Vec<BTreeSet<NodeId>>,
    /// Transmissions per clerk.
    transmissions: Vec<u64>,
}

impl World {
    fn new(nodes: u64, tweak: impl FnMut(&mut ServiceConfig), clerks: Vec<ClerkConfig>) -> Self {
        let mut cluster = LocalCluster::new(nodes, tweak).unwrap();
        cluster.elect(1_000).unwrap().expect("a leader");
        let n = clerks.len();
        Self {
            cluster,
            clerks: clerks.into_iter().map(|c| Clerk::new(c).unwrap()).collect(),
            routes: BTreeMap::new(),
            next_route: 1,
            outcomes: vec![BTreeMap::new(); n],
            duplicate_requests: false,
            lose_every_nth_reply: None,
            replies_seen: 0,
            unreachable: vec![BTreeSet::new(); n],
            transmissions: vec![0; n],
        }
    }

    fn now(&self) -> u64 {
        self.cluster.now_ms()
    }

    /// Moves requests and replies between clerks and servers until nothing moves.
    fn exchange(&mut self) {
        for _ in 0..100_000 {
            let mut moved = false;
            for i in 0..self.clerks.len() {
                for action in self.clerks[i].take_actions() {
                    moved = true;
                    match action {
                        ClerkAction::Send {
                            request,
                            server,
                            message,
                        } => {
                            self.transmissions[i] += 1;
                            if self.unreachable[i].contains(&server) {
                                continue;
                            }
                            let copies = if self.duplicate_requests { 2 } else { 1 };
                            for _ in 0..copies {
                                let route = self.next_route;
                                self.next_route += 1;
                                self.routes.insert(route, (i, request));
                                self.cluster.submit(server, route, message.clone()).unwrap();
                            }
                        }
                        ClerkAction::Completed { op, output } => {
                            let old = self.outcomes[i].insert(op, Ok(output));
                            assert!(old.is_none(), "clerk {i} reported op {op} twice");
                        }
                        ClerkAction::Failed { op, error } => {
                            let old = self.outcomes[i].insert(op, Err(error));
                            assert!(old.is_none(), "clerk {i} reported op {op} twice");
                        }
                    }
                }
            }
            self.cluster.run().unwrap();
            let now = self.now();
            for (node, route, reply) in self.cluster.take_replies() {
                moved = true;
                let Some((i, request)) = self.routes.remove(&route) else {
                    continue;
                };
                if self.unreachable[i].contains(&node) {
                    continue;
                }
                self.replies_seen += 1;
                if let Some(n) = self.lose_every_nth_reply {
                    if self.replies_seen % n == 0 {
                        continue;
                    }
                }
                self.clerks[i].on_reply(now, request, reply);
            }
            if !moved {
                return;
            }
        }
        panic!("clerks and servers keep exchanging messages without time passing (live-lock)");
    }

    /// One tick of time for everyone.
    fn step(&mut self) {
        self.cluster.tick().unwrap();
        let now = self.now();
        for clerk in &mut self.clerks {
            clerk.tick(now);
        }
        self.exchange();
    }

    fn steps(&mut self, n: u32) {
        for _ in 0..n {
            self.step();
        }
    }

    fn submit(&mut self, clerk: usize, op: OpId, operation: Operation) {
        let now = self.now();
        self.clerks[clerk].submit(now, op, operation).unwrap();
        self.exchange();
    }

    fn outcome(&self, clerk: usize, op: OpId) -> Option<&Result<OpOutput, ClerkError>> {
        self.outcomes[clerk].get(&op)
    }

    /// Steps until `op` of `clerk` finished (at most `max_steps`).
    fn wait(&mut self, clerk: usize, op: OpId, max_steps: u32) -> Result<OpOutput, ClerkError> {
        for _ in 0..max_steps {
            if let Some(outcome) = self.outcome(clerk, op) {
                return outcome.clone();
            }
            self.step();
        }
        panic!("op {op} of clerk {clerk} did not finish in {max_steps} steps");
    }

    /// Steps until every submitted op of every clerk finished.
    fn wait_all(&mut self, max_steps: u32) {
        for _ in 0..max_steps {
            if self.clerks.iter().all(|c| c.pending() == 0) {
                return;
            }
            self.step();
        }
        panic!("operations still pending after {max_steps} steps");
    }

    fn read(&mut self, clerk: usize, op: OpId, key: &str) -> Option<String> {
        self.submit(clerk, op, Operation::get(key));
        match self.wait(clerk, op, 3_000) {
            Ok(OpOutput::Value(v)) => v.map(|v| String::from_utf8(v).unwrap()),
            other => panic!("read failed: {other:?}"),
        }
    }

    /// The leader, once there is one (time runs until then; 3 s of election time at most).
    fn leader(&mut self) -> NodeId {
        for _ in 0..300 {
            if let Some(leader) = self.cluster.leader() {
                return leader;
            }
            self.step();
        }
        panic!("no leader within 3 s");
    }

    fn crash_leader(&mut self) -> NodeId {
        let leader = self.leader();
        self.cluster.crash(leader).unwrap();
        leader
    }
}

fn clerk_config(servers: Vec<NodeId>, seed: u64) -> ClerkConfig {
    ClerkConfig {
        request_timeout_ms: 200,
        backoff_min_ms: 10,
        backoff_max_ms: 200,
        seed,
        ..ClerkConfig::new(servers)
    }
}

const DONE: Result<OpOutput, ClerkError> = Ok(OpOutput::Written(WriteOutput::Done));

/// Each element `x<i>y` must appear exactly once in `value`; with `ordered`, in order too.
fn check_appends(value: &str, prefix: &str, count: u64, ordered: bool) {
    let mut last = 0;
    for i in 0..count {
        let element = format!("{prefix}{i}y");
        let found: Vec<usize> = value.match_indices(&element).map(|(at, _)| at).collect();
        assert_eq!(
            found.len(),
            1,
            "{element} appears {} times in {value}",
            found.len()
        );
        if ordered {
            assert!(found[0] >= last, "{element} out of order in {value}");
            last = found[0];
        }
    }
}

#[test]
fn sequential_appends_survive_failover_duplicates_and_lost_replies_exactly_once() {
    let mut w = World::new(3, |_| {}, vec![clerk_config(vec![1, 2, 3], 1)]);
    w.duplicate_requests = true;
    w.lose_every_nth_reply = Some(3);
    let mut crashed = None;
    for i in 0..60 {
        match i {
            15 => crashed = Some(w.crash_leader()),
            30 => {
                if let Some(node) = crashed.take() {
                    w.cluster.restart(node).unwrap();
                }
            }
            40 => {
                let leader = w.leader();
                w.cluster.isolate(leader);
            }
            50 => w.cluster.heal(),
            _ => {}
        }
        w.submit(0, i, Operation::append("k", format!("x{i}y")));
        assert_eq!(w.wait(0, i, 3_000), DONE, "op {i}");
    }
    let value = w.read(0, 1_000, "k").unwrap();
    check_appends(&value, "x", 60, true);
    w.steps(20);
    for node in w.cluster.ids() {
        let stored = w.cluster.core(node).unwrap().machine().get(b"k").unwrap();
        assert_eq!(stored, value.as_bytes(), "node {node}");
    }
}

#[test]
fn pipelined_clerks_are_exactly_once_through_crashes_and_partitions() {
    let clerks = (0..3)
        .map(|i| ClerkConfig {
            window: 4,
            ..clerk_config(vec![1, 2, 3, 4, 5], 10 + i)
        })
        .collect();
    let mut w = World::new(5, |_| {}, clerks);
    w.duplicate_requests = true;
    w.lose_every_nth_reply = Some(5);
    for i in 0..40 {
        for c in 0..3 {
            w.submit(c, i, Operation::append("k", format!("c{c}-{i}y")));
        }
        match i {
            8 => {
                w.crash_leader();
            }
            16 => {
                let leader = w.leader();
                w.cluster.isolate(leader);
            }
            24 => {
                w.cluster.heal();
                for node in w.cluster.ids() {
                    if w.cluster.core(node).is_none() {
                        w.cluster.restart(node).unwrap();
                    }
                }
            }
            _ => {}
        }
        w.steps(2);
    }
    w.wait_all(5_000);
    for c in 0..3 {
        for i in 0..40 {
            assert_eq!(w.outcome(c, i), Some(&DONE), "clerk {c} op {i}");
        }
    }
    let value = w.read(0, 1_000, "k").unwrap();
    for c in 0..3 {
        check_appends(&value, &format!("c{c}-"), 40, false);
    }
}

#[test]
fn the_clerk_finds_the_leader_and_remembers_it() {
    let mut w = World::new(3, |_| {}, vec![]);
    let leader = w.cluster.leader().unwrap();
    w.steps(5);
    // Put the leader last in the clerk's list.
    let mut servers: Vec<NodeId> = w
        .cluster
        .ids()
        .into_iter()
        .filter(|&n| n != leader)
        .collect();
    servers.push(leader);
    w.clerks.push(Clerk::new(clerk_config(servers, 3)).unwrap());
    w.outcomes.push(BTreeMap::new());
    w.unreachable.push(BTreeSet::new());
    w.transmissions.push(0);
    w.submit(0, 1, Operation::put("k", "v"));
    assert_eq!(w.wait(0, 1, 100), DONE);
    assert_eq!(w.clerks[0].leader(), leader);
    let before = w.transmissions[0];
    assert_eq!(w.read(0, 2, "k").as_deref(), Some("v"));
    assert_eq!(w.transmissions[0] - before, 1, "straight to the leader");
}

#[test]
fn busy_servers_slow_clerks_down_without_duplicating_or_losing_writes() {
    let clerks = (0..2)
        .map(|i| ClerkConfig {
            window: 6,
            ..clerk_config(vec![1, 2, 3], 20 + i)
        })
        .collect();
    let mut w = World::new(
        3,
        |config| {
            config.max_pending_proposals = 2;
            config.max_pending_reads = 1;
        },
        clerks,
    );
    for i in 0..30 {
        for c in 0..2 {
            w.submit(c, i, Operation::append("k", format!("c{c}-{i}y")));
        }
    }
    w.wait_all(5_000);
    let value = w.read(0, 100, "k").unwrap();
    for c in 0..2 {
        check_appends(&value, &format!("c{c}-"), 30, false);
    }
}

#[test]
fn a_too_large_write_fails_definitely_and_changes_nothing() {
    let mut w = World::new(
        3,
        |config| config.max_request_bytes = 100,
        vec![clerk_config(vec![1, 2, 3], 4)],
    );
    w.submit(0, 1, Operation::put("k", "small"));
    assert_eq!(w.wait(0, 1, 100), DONE);
    w.submit(0, 2, Operation::put("k", "x".repeat(200)));
    assert!(matches!(
        w.wait(0, 2, 100),
        Err(ClerkError::TooLarge { limit: 100, .. })
    ));
    assert_eq!(w.read(0, 3, "k").as_deref(), Some("small"));
}

#[test]
fn snapshots_bound_the_log_and_a_full_restart_loses_nothing() {
    let max = 1_000;
    let mut w = World::new(
        3,
        |config| config.max_raft_state = Some(max),
        vec![ClerkConfig {
            window: 3,
            ..clerk_config(vec![1, 2, 3], 5)
        }],
    );
    for i in 0..120 {
        w.submit(
            0,
            i,
            Operation::append(format!("k{}", i % 3), format!("x{i}y")),
        );
        if i == 60 {
            // Every server crashes with requests in flight, and comes back from its disk.
            for node in w.cluster.ids() {
                w.cluster.crash(node).unwrap();
            }
            w.steps(3);
            for node in w.cluster.ids() {
                w.cluster.restart(node).unwrap();
            }
        }
        w.step();
        for node in w.cluster.ids() {
            if let Some(core) = w.cluster.core(node) {
                assert!(core.raft_state_size() <= 2 * max, "node {node}");
            }
        }
    }
    w.wait_all(5_000);
    for i in 0..120 {
        assert_eq!(w.outcome(0, i), Some(&DONE));
    }
    for k in 0..3u64 {
        let value = w.read(0, 1_000 + k, &format!("k{k}")).unwrap();
        for i in (k..120).step_by(3) {
            assert_eq!(
                value.matches(&format!("x{i}y")).count(),
                1,
                "x{i}y in {value}"
            );
        }
    }
    assert!(w
        .cluster
        .ids()
        .iter()
        .all(|&n| w.cluster.disk(n).unwrap().snapshot.is_some()));
}

#[test]
fn a_write_stuck_past_its_session_expiry_ends_unknown_and_is_never_reissued() {
    let server_timeout = 1_000;
    let clerks = (0..2)
        .map(|i| ClerkConfig {
            session_timeout_ms: 800,
            keepalive_interval_ms: None,
            ..clerk_config(vec![1, 2, 3], 30 + i)
        })
        .collect();
    let mut w = World::new(
        3,
        |config| config.machine.session_timeout_ms = server_timeout,
        clerks,
    );
    w.submit(0, 1, Operation::put("a", "1"));
    assert_eq!(w.wait(0, 1, 100), DONE);
    let first_session = w.clerks[0].session().unwrap();
    // Clerk 0 loses every server, then submits a write.
    w.unreachable[0] = w.cluster.ids().into_iter().collect();
    w.submit(0, 2, Operation::append("a", "w"));
    // Meanwhile clerk 1 keeps the log (and its clock) moving for twice the session timeout.
    for i in 0..20 {
        w.submit(1, i, Operation::put("b", format!("{i}")));
        assert_eq!(w.wait(1, i, 1_000), DONE);
        w.steps(10);
    }
    assert!(
        w.outcome(0, 2).is_none(),
        "still retrying while unreachable"
    );
    w.unreachable[0].clear();
    assert_eq!(
        w.wait(0, 2, 1_000),
        Err(ClerkError::OutcomeUnknown {
            cause: KvError::SessionExpired
        })
    );
    // The write was not silently re-issued under a new session.
    assert_eq!(w.read(0, 3, "a").as_deref(), Some("1"));
    // New writes go through, under a new session.
    w.submit(0, 4, Operation::append("a", "2"));
    assert_eq!(w.wait(0, 4, 1_000), DONE);
    assert_ne!(w.clerks[0].session(), Some(first_session));
    assert_eq!(w.read(0, 5, "a").as_deref(), Some("12"));
}

#[test]
fn an_idle_clerk_keeps_its_session_with_keepalives_or_replaces_it_without() {
    for keepalive in [Some(200), None] {
        let clerks = (0..2)
            .map(|i| ClerkConfig {
                session_timeout_ms: 800,
                keepalive_interval_ms: keepalive,
                ..clerk_config(vec![1, 2, 3], 40 + i)
            })
            .collect();
        let mut w = World::new(
            3,
            |config| config.machine.session_timeout_ms = 1_000,
            clerks,
        );
        w.submit(0, 1, Operation::put("a", "1"));
        assert_eq!(w.wait(0, 1, 100), DONE);
        let session = w.clerks[0].session().unwrap();
        // Clerk 0 idles for three session timeouts while clerk 1 moves the log clock.
        for i in 0..30 {
            w.submit(1, i, Operation::put("b", format!("{i}")));
            assert_eq!(w.wait(1, i, 1_000), DONE);
            w.steps(10);
        }
        let alive = w
            .cluster
            .core(1)
            .unwrap()
            .machine()
            .sessions()
            .get(session)
            .is_some();
        assert_eq!(alive, keepalive.is_some(), "keepalive {keepalive:?}");
        w.submit(0, 2, Operation::append("a", "2"));
        assert_eq!(w.wait(0, 2, 1_000), DONE, "keepalive {keepalive:?}");
        assert_eq!(w.clerks[0].session() == Some(session), keepalive.is_some());
        assert_eq!(w.read(0, 3, "a").as_deref(), Some("12"));
    }
}

/// Like the labs' TestOnePartition: a clerk that reaches only a deposed leader gets no answer,
/// never a stale one; once it reaches the majority it reads the latest value.
#[test]
fn a_read_at_a_partitioned_leader_waits_instead_of_returning_stale_data() {
    let clerks = (0..2)
        .map(|i| clerk_config(vec![1, 2, 3, 4, 5], 50 + i))
        .collect();
    let mut w = World::new(5, |_| {}, clerks);
    w.submit(0, 1, Operation::put("k", "old"));
    assert_eq!(w.wait(0, 1, 100), DONE);
    let old_leader = w.cluster.leader().unwrap();
    w.cluster.isolate(old_leader);
    // Clerk 0 reaches only the old leader; clerk 1 reaches only the others.
    w.unreachable[0] = w
        .cluster
        .ids()
        .into_iter()
        .filter(|&n| n != old_leader)
        .collect();
    w.unreachable[1] = BTreeSet::from([old_leader]);
    w.submit(1, 1, Operation::put("k", "new"));
    assert_eq!(w.wait(1, 1, 1_000), DONE);
    w.submit(0, 2, Operation::get("k"));
    w.submit(0, 3, Operation::put("k", "minority"));
    w.steps(200);
    assert!(w.outcome(0, 2).is_none(), "no answer from a minority");
    assert!(w.outcome(0, 3).is_none());
    w.cluster.heal();
    w.unreachable[0].clear();
    let read = w.wait(0, 2, 1_000);
    assert!(
        read == Ok(OpOutput::Value(Some(b"new".to_vec())))
            || read == Ok(OpOutput::Value(Some(b"minority".to_vec()))),
        "{read:?}"
    );
    assert_eq!(w.wait(0, 3, 1_000), DONE);
    assert_eq!(w.read(1, 2, "k").as_deref(), Some("minority"));
}
