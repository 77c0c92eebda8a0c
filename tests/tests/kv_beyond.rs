//! KV suites beyond the labs: session expiry while a client is away, pipelined clients under
//! every fault the simulator has, a retry whose first copy committed before a leader change and
//! a snapshot, and CompareAndSwap under contention. Every history is checked for
//! linearizability.

use kv_client::{ClerkError, OpId, OpOutput, Operation};
use kv_service::{KvError, WriteOutput};
use raft_core::rng::SplitMix64;
use raft_tests::harness::Outcome;
use raft_tests::kv::lab::{check_get, put, OP_BUDGET_MS};
use raft_tests::kv::{KvConfig, KvSim};
use raft_tests::{seed_suite, ClientId, DriverMode, NetConfig};

const SEEDS: u64 = 200;

/// How many times `element` occurs in `value`.
fn occurrences(value: &[u8], element: &str) -> usize {
    String::from_utf8_lossy(value).matches(element).count()
}

/// Sessions expire (by the leader's stamps) while a client is cut off with a write in flight.
/// When it comes back, its retry must fail cleanly with `OutcomeUnknown` — never execute under
/// the expired session, never be re-issued under a new one — the write must be there at most
/// once, and the client must then work again under a new session.
fn session_expires_while_partitioned(seed: u64) -> Outcome {
    let mut rng = SplitMix64::new(seed ^ 0x5E55_1011);
    let mut config = KvConfig::new(3, seed);
    config.service.machine.session_timeout_ms = 2_000;
    config.clerk.session_timeout_ms = 1_000;
    config.clerk.keepalive_interval_ms = Some(300);
    if rng.chance(0.5) {
        config.sim.net = NetConfig::unreliable();
    }
    if rng.chance(0.5) {
        config.service.max_raft_state = Some(2_000);
    }
    let mut kv = KvSim::new(config);
    let away = kv.add_client();
    let other = kv.add_client();
    put(&mut kv, away, "k", "a;")?;
    // The write leaves, and the client is cut off a random moment later: before the request
    // arrives, after it executed but before the reply, or anywhere between.
    let write = kv.submit(away, Operation::append("k", "lost;"));
    let delay = rng.range(0, 30);
    kv.run_for(delay);
    if let Some(outcome) = kv.take_outcome(away, write) {
        // It finished before the cut: nothing left to test but exactly-once.
        outcome.map_err(|e| kv.failure(format!("the write failed: {e}")))?;
        let value = kv.get(other, "k", OP_BUDGET_MS)?.unwrap_or_default();
        if occurrences(&value, "lost;") != 1 {
            return Err(kv.failure(format!(
                "the write is there {} times",
                occurrences(&value, "lost;")
            )));
        }
        return kv.check_linearizable();
    }
    kv.sim.set_client_links(away, &[]);
    // Other traffic moves the log's clock well past the session timeout. With sessions this
    // short, the bystander's own session may expire too while one of its writes waits out an
    // election on the lossy network: its Put then ends OutcomeUnknown, which is correct only
    // if more than the timeout passed since its previous write started (that write's stamp,
    // the session's last activity, is no earlier).
    let mut previous_start = kv.sim.now();
    for i in 0..40 {
        let started = kv.sim.now();
        let op = kv.submit(other, Operation::put(format!("o{i}"), "x"));
        match kv.wait(other, op, OP_BUDGET_MS)? {
            Ok(_) => {}
            Err(ClerkError::OutcomeUnknown {
                cause: KvError::SessionExpired,
            }) if kv.sim.now() - previous_start > 2_000 => {}
            Err(error) => {
                return Err(kv.failure(format!(
                    "the bystander's Put failed {} ms after its previous write started: {error}",
                    kv.sim.now() - previous_start
                )))
            }
        }
        previous_start = started;
        kv.run_for(100);
    }
    let all: Vec<usize> = (0..kv.sim.len()).collect();
    kv.sim.set_client_links(away, &all);
    // Either the write had left under the old session — then its retry must end with
    // OutcomeUnknown(SessionExpired) and the write be there at most once — or it was still
    // waiting for a session when the client was cut off (its registration lost), and then
    // it runs once under a new session.
    let outcome = kv.wait(away, write, OP_BUDGET_MS)?;
    let value = kv.get(other, "k", OP_BUDGET_MS)?.unwrap_or_default();
    let copies = occurrences(&value, "lost;");
    match outcome {
        Err(ClerkError::OutcomeUnknown {
            cause: KvError::SessionExpired,
        }) if copies <= 1 => {}
        Ok(OpOutput::Written(WriteOutput::Done)) if copies == 1 => {}
        other => {
            return Err(kv.failure(format!(
                "the write cut off with an expiring session ended with {other:?} and is there {copies} times"
            )))
        }
    }
    // The client works again, under a new session, exactly once. (Its new session may expire
    // too if this write waits out an election for longer than the timeout; then it tries
    // again with a new value.)
    for attempt in 1.. {
        let tag = format!("again{attempt};");
        let started = kv.sim.now();
        let op = kv.submit(away, Operation::append("k", tag.clone()));
        let outcome = kv.wait(away, op, OP_BUDGET_MS)?;
        let waited = kv.sim.now() - started;
        let value = kv.get(other, "k", OP_BUDGET_MS)?.unwrap_or_default();
        match outcome {
            Ok(_) if occurrences(&value, &tag) == 1 && occurrences(&value, "lost;") == copies => {
                break
            }
            Err(ClerkError::OutcomeUnknown {
                cause: KvError::SessionExpired,
            }) if waited > 2_000 && attempt < 5 && occurrences(&value, &tag) <= 1 => {}
            other => {
                return Err(kv.failure(format!(
                    "after the new session: {other:?} after {waited} ms, value {:?}",
                    String::from_utf8_lossy(&value)
                )))
            }
        }
    }
    kv.check_replicas_agree()?;
    kv.check_linearizable()
}

/// Pipelined clients (up to 8 operations in flight each) under chaos: an unreliable network
/// with long delays and replays, one-way link cuts, partitions, crashes aimed at writes in
/// progress, a random driver, and snapshots. Each client appends to its own key (each element
/// must be there exactly once at the end), and all of them mix Puts, Deletes, CompareAndSwaps
/// and Gets on shared keys (checked for linearizability).
fn pipelined_chaos(seed: u64) -> Outcome {
    let mut rng = SplitMix64::new(seed ^ 0xC4A0_5000);
    let servers = [3, 5][rng.range(0, 2) as usize];
    let mut config = KvConfig::new(servers, seed);
    config.sim.driver = [
        DriverMode::Sequential,
        DriverMode::Lanes,
        DriverMode::RandomDepth,
    ][rng.range(0, 3) as usize];
    config.sim.net = NetConfig::unreliable();
    config.sim.net.long_delay_rate = [0.0, 0.01][rng.range(0, 2) as usize];
    config.sim.net.replay_rate = [0.0, 0.01][rng.range(0, 2) as usize];
    config.sim.crash_during_write = [0.0, 0.002][rng.range(0, 2) as usize];
    config.service.max_raft_state = [None, Some(1_000), Some(4_000)][rng.range(0, 3) as usize];
    config.clerk.window = 8;
    let mut kv = KvSim::new(config);
    let clients: Vec<ClientId> = (0..4).map(|_| kv.add_client()).collect();
    let mut own = vec![0u64; clients.len()];
    let mut in_flight: Vec<Vec<OpId>> = vec![Vec::new(); clients.len()];
    let end = kv.sim.now() + 8_000;
    let mut next_fault = kv.sim.now() + 500;
    while kv.sim.now() < end {
        if kv.sim.now() >= next_fault {
            next_fault = kv.sim.now() + rng.range(200, 1_000);
            match rng.range(0, 6) {
                0 => {
                    let victim = rng.range(0, servers as u64) as usize;
                    kv.sim.crash(victim);
                    let back = rng.range(100, 1_500);
                    kv.run_for(back);
                    kv.sim.restart(victim);
                }
                1 => {
                    let mut sides = [Vec::new(), Vec::new()];
                    for slot in 0..servers {
                        sides[rng.range(0, 2) as usize].push(slot);
                    }
                    kv.sim.partition(&sides);
                }
                2 => {
                    let from = rng.range(0, servers as u64) as usize;
                    let to = rng.range(0, servers as u64) as usize;
                    if from != to {
                        kv.sim.cut_one_way(from, to);
                    }
                }
                3 => kv.sim.replay_random(20),
                _ => kv.sim.heal(),
            }
        }
        for (i, &client) in clients.iter().enumerate() {
            in_flight[i].retain(|&op| kv.is_pending(client, op));
            while in_flight[i].len() < 8 && rng.chance(0.3) {
                let shared = format!("s{}", rng.range(0, 3));
                // Own-key appends are checked for exactly-once at the end rather than by the
                // linearizability checker: eight of them in flight at once, read only at the
                // end, would make it search every interleaving. The shared keys take
                // overwrites from a small set of values, which the checker handles at any
                // concurrency.
                let (op, record) = match rng.range(0, 8) {
                    0 | 1 => {
                        own[i] += 1;
                        let value = format!("x {i} {} y", own[i] - 1);
                        (Operation::append(format!("own{i}"), value), false)
                    }
                    2 => (
                        Operation::put(shared, format!("p{}", rng.range(0, 4))),
                        true,
                    ),
                    3 => (Operation::delete(shared), true),
                    4 => {
                        let expected = [None, Some(format!("p{}", rng.range(0, 4)).into_bytes())]
                            [rng.range(0, 2) as usize]
                            .clone();
                        let new = format!("p{}", rng.range(0, 4));
                        (Operation::compare_and_swap(shared, expected, new), true)
                    }
                    _ => (Operation::get(shared), true),
                };
                in_flight[i].push(kv.submit_with(client, op, record));
            }
        }
        kv.step();
        kv.sim.check_safety()?;
    }
    kv.sim.heal();
    for slot in 0..servers {
        if !kv.sim.is_alive(slot) {
            kv.sim.restart(slot);
        }
    }
    let give_up = kv.sim.now() + OP_BUDGET_MS;
    for (i, &client) in clients.iter().enumerate() {
        for &op in &in_flight[i] {
            while kv.is_pending(client, op) {
                if kv.sim.now() >= give_up {
                    return Err(kv.failure(format!("client {i}'s operations did not finish")));
                }
                kv.step();
            }
        }
    }
    for (i, &client) in clients.iter().enumerate() {
        let value = kv
            .get_with(client, &format!("own{i}"), OP_BUDGET_MS, false)?
            .unwrap_or_default();
        for k in 0..own[i] {
            let copies = occurrences(&value, &format!("x {i} {k} y"));
            if copies != 1 {
                return Err(kv.failure(format!("client {i}'s append {k} is there {copies} times")));
            }
        }
    }
    kv.run_for(1_000);
    kv.check_replicas_agree()?;
    kv.check_linearizable()
}

/// A write commits, its reply is lost, the leader is replaced, the log is compacted into a
/// snapshot (the session with its recorded reply must be in it), and every server restarts
/// from its snapshot. The client's retry must get the recorded answer, not a second execution.
fn retry_after_leader_change_and_snapshot(seed: u64) -> Outcome {
    let mut rng = SplitMix64::new(seed ^ 0x0E7A_1F00);
    let mut config = KvConfig::new(3, seed);
    config.service.max_raft_state = Some(600);
    let mut kv = KvSim::new(config);
    let client = kv.add_client();
    let helper = kv.add_client();
    put(&mut kv, client, "k", "a;")?;
    // The write goes out; every reply to the client is lost from now on.
    kv.sim.set_client_deaf(client, true);
    let write = kv.submit(client, Operation::append("k", "once;"));
    let deadline = kv.sim.now() + OP_BUDGET_MS;
    loop {
        let value = kv.get(helper, "k", OP_BUDGET_MS)?.unwrap_or_default();
        if occurrences(&value, "once;") == 1 {
            break;
        }
        if kv.sim.now() >= deadline {
            return Err(kv.failure("the write never took effect".into()));
        }
        kv.run_for(rng.range(1, 20));
    }
    // A leader change.
    let leader = kv.sim.check_one_leader()?;
    kv.sim.disconnect(leader);
    kv.run_for(1_000);
    kv.sim.connect(leader);
    // Enough traffic for every server to snapshot past the write.
    for i in 0..60 {
        put(&mut kv, helper, &format!("fill{}", i % 7), &"f".repeat(20))?;
    }
    kv.run_for(500);
    if kv.snapshot_size() == 0 {
        return Err(kv.failure("no server took a snapshot".into()));
    }
    // Every server restarts from its snapshot.
    for slot in 0..kv.sim.len() {
        kv.sim.crash(slot);
    }
    kv.run_for(rng.range(50, 500));
    for slot in 0..kv.sim.len() {
        kv.sim.restart(slot);
    }
    kv.sim.set_client_deaf(client, false);
    match kv.wait(client, write, OP_BUDGET_MS)? {
        Ok(OpOutput::Written(WriteOutput::Done)) => {}
        other => return Err(kv.failure(format!("the retried write ended with {other:?}"))),
    }
    let value = kv.get(helper, "k", OP_BUDGET_MS)?.unwrap_or_default();
    let copies = occurrences(&value, "once;");
    if copies != 1 {
        return Err(kv.failure(format!("the retried write is there {copies} times")));
    }
    check_get(&mut kv, client, "k", "a;once;")?;
    kv.check_replicas_agree()?;
    kv.check_linearizable()
}

/// Clients increment a counter with read-then-CompareAndSwap loops under an unreliable
/// network, partitions and crashes. The counter must end at the number of swaps that
/// reported success, and the history (with CAS in the model) must be linearizable.
fn cas_contention(seed: u64) -> Outcome {
    let mut rng = SplitMix64::new(seed ^ 0xCA5C_A5CA);
    let mut config = KvConfig::new(5, seed);
    config.sim.net = NetConfig::unreliable();
    config.service.max_raft_state = [None, Some(2_000)][rng.range(0, 2) as usize];
    let mut kv = KvSim::new(config);
    let clients: Vec<ClientId> = (0..5).map(|_| kv.add_client()).collect();
    put(&mut kv, clients[0], "counter", "0")?;
    /// What a client is waiting for.
    enum Step {
        Read(OpId),
        Swap(OpId),
    }
    let mut steps: Vec<Option<Step>> = (0..clients.len()).map(|_| None).collect();
    let mut swapped = 0u64;
    let end = kv.sim.now() + 6_000;
    let mut next_fault = kv.sim.now() + 700;
    while kv.sim.now() < end || steps.iter().any(Option::is_some) {
        if kv.sim.now() >= end + OP_BUDGET_MS {
            return Err(kv.failure("operations did not finish".into()));
        }
        if kv.sim.now() < end && kv.sim.now() >= next_fault {
            next_fault = kv.sim.now() + rng.range(300, 1_200);
            match rng.range(0, 4) {
                0 => {
                    let victim = rng.range(0, 5) as usize;
                    kv.sim.restart(victim);
                }
                1 => {
                    let mut sides = [Vec::new(), Vec::new()];
                    for slot in 0..5 {
                        sides[rng.range(0, 2) as usize].push(slot);
                    }
                    kv.sim.partition(&sides);
                }
                _ => kv.sim.heal(),
            }
        }
        if kv.sim.now() >= end {
            kv.sim.heal();
        }
        for (i, &client) in clients.iter().enumerate() {
            let next = match &steps[i] {
                None if kv.sim.now() < end => {
                    Some(Step::Read(kv.submit(client, Operation::get("counter"))))
                }
                None => None,
                Some(Step::Read(op)) => match kv.take_outcome(client, *op) {
                    None => continue,
                    Some(Ok(OpOutput::Value(value))) => {
                        let current = value.unwrap_or_default();
                        let n: u64 = String::from_utf8_lossy(&current).parse().unwrap_or(0);
                        let swap = Operation::compare_and_swap(
                            "counter",
                            Some(current),
                            (n + 1).to_string(),
                        );
                        Some(Step::Swap(kv.submit(client, swap)))
                    }
                    Some(other) => return Err(kv.failure(format!("a Get ended with {other:?}"))),
                },
                Some(Step::Swap(op)) => match kv.take_outcome(client, *op) {
                    None => continue,
                    Some(Ok(OpOutput::Written(WriteOutput::Swapped { swapped: true, .. }))) => {
                        swapped += 1;
                        None
                    }
                    Some(Ok(OpOutput::Written(WriteOutput::Swapped {
                        swapped: false, ..
                    }))) => None,
                    Some(other) => return Err(kv.failure(format!("a CAS ended with {other:?}"))),
                },
            };
            steps[i] = next;
        }
        kv.step();
        kv.sim.check_safety()?;
    }
    check_get(&mut kv, clients[0], "counter", &swapped.to_string())?;
    kv.check_replicas_agree()?;
    kv.check_linearizable()
}

seed_suite!(
    sessions_expire_while_a_client_is_partitioned_away,
    SEEDS,
    session_expires_while_partitioned
);
seed_suite!(pipelined_clients_under_chaos, SEEDS, pipelined_chaos);
seed_suite!(
    a_retry_after_a_leader_change_and_a_snapshot_applies_once,
    SEEDS,
    retry_after_leader_change_and_snapshot
);
seed_suite!(compare_and_swap_under_contention, SEEDS, cas_contention);
