//! Log agreement suites (the labs' 2B tests), each over many seeds.
//!
//! Index numbering differs from the labs by the leader's no-op entry: every new leader appends
//! one, so the first command of a fresh cluster lands at index 2. Where a lab test asserts an
//! exact index, these suites assert the same relation relative to the index of an earlier
//! command.

use raft_tests::{cmd, ensure, seed_suite, Outcome, Sim, SimConfig};

const SEEDS: u64 = 200;

// TestBasicAgree2B.
seed_suite!(basic_agree, SEEDS, |seed| {
    let mut sim = Sim::new(SimConfig::new(3, seed));
    let mut first = None;
    for k in 1..=3u64 {
        if let Some(first) = first {
            let expected = first + k - 1;
            let (count, _) = sim.n_committed(expected)?;
            ensure!(
                sim,
                count == 0,
                "some have committed index {expected} before Start()"
            );
        }
        let index = sim.one(cmd(k * 100), 3, false)?;
        let first = *first.get_or_insert(index);
        ensure!(
            sim,
            index == first + k - 1,
            "got index {index} but expected {}",
            first + k - 1
        );
    }
    Ok(())
});

// TestRPCBytes2B: each command's bytes should cross the network about once per follower.
seed_suite!(rpc_bytes, SEEDS, |seed| {
    let mut sim = Sim::new(SimConfig::new(3, seed));
    let first = sim.one(cmd(99), 3, false)?;
    let before = sim.stats().bytes_sent;
    let mut sent = 0u64;
    for k in 1..=10u64 {
        let command: Vec<u8> = (0..5000)
            .map(|_| sim.random(b'a'.into(), b'z'.into()) as u8)
            .collect();
        sent += command.len() as u64;
        let index = sim.one(command, 3, false)?;
        ensure!(
            sim,
            index == first + k,
            "got index {index} but expected {}",
            first + k
        );
    }
    let got = sim.stats().bytes_sent - before;
    let expected = 3 * sent;
    ensure!(
        sim,
        got <= expected + 50_000,
        "too many RPC bytes; got {got}, expected at most {}",
        expected + 50_000
    );
    Ok(())
});

// TestFollowerFailure2B.
seed_suite!(follower_failure, SEEDS, |seed| {
    let mut sim = Sim::new(SimConfig::new(3, seed));
    sim.one(cmd(101), 3, false)?;
    // One follower leaves: the other two still agree.
    let leader1 = sim.check_one_leader()?;
    sim.disconnect((leader1 + 1) % 3);
    sim.one(cmd(102), 2, false)?;
    sim.sleep(1_000)?;
    let index103 = sim.one(cmd(103), 2, false)?;
    // Both followers leave: nothing may commit.
    let leader2 = sim.check_one_leader()?;
    sim.disconnect((leader2 + 1) % 3);
    sim.disconnect((leader2 + 2) % 3);
    let Some((index, _)) = sim.propose(leader2, cmd(104)) else {
        return Err(sim.failure("leader rejected Start()".into()));
    };
    ensure!(
        sim,
        index > index103,
        "Start() returned index {index}, not after {index103}"
    );
    sim.sleep(2_000)?;
    let (count, _) = sim.n_committed(index)?;
    ensure!(sim, count == 0, "{count} committed but no majority");
    Ok(())
});

// TestLeaderFailure2B.
seed_suite!(leader_failure, SEEDS, |seed| {
    let mut sim = Sim::new(SimConfig::new(3, seed));
    sim.one(cmd(101), 3, false)?;
    let leader1 = sim.check_one_leader()?;
    sim.disconnect(leader1);
    sim.one(cmd(102), 2, false)?;
    sim.sleep(1_000)?;
    let index103 = sim.one(cmd(103), 2, false)?;
    let leader2 = sim.check_one_leader()?;
    sim.disconnect(leader2);
    // Every node accepts or refuses 104; with at most one connected, none may commit it.
    let mut proposed = Vec::new();
    for i in 0..3 {
        if let Some((index, _)) = sim.propose(i, cmd(104)) {
            proposed.push(index);
        }
    }
    sim.sleep(2_000)?;
    for index in (index103 + 1)..=(index103 + 3) {
        let (count, command) = sim.n_committed(index)?;
        ensure!(
            sim,
            count == 0,
            "index {index} committed ({command:?}) without a majority (proposed at {proposed:?})"
        );
    }
    Ok(())
});

// TestFailAgree2B: a follower that missed entries catches up when it reconnects.
seed_suite!(fail_agree, SEEDS, |seed| {
    let mut sim = Sim::new(SimConfig::new(3, seed));
    sim.one(cmd(101), 3, false)?;
    let leader = sim.check_one_leader()?;
    sim.disconnect((leader + 1) % 3);
    sim.one(cmd(102), 2, false)?;
    sim.one(cmd(103), 2, false)?;
    sim.sleep(1_000)?;
    sim.one(cmd(104), 2, false)?;
    sim.one(cmd(105), 2, false)?;
    sim.connect((leader + 1) % 3);
    sim.one(cmd(106), 3, true)?;
    sim.sleep(1_000)?;
    sim.one(cmd(107), 3, true)?;
    Ok(())
});

// TestFailNoAgree2B: no agreement without a majority; afterwards the log is repaired.
seed_suite!(fail_no_agree, SEEDS, |seed| {
    let mut sim = Sim::new(SimConfig::new(5, seed));
    let index10 = sim.one(cmd(10), 5, false)?;
    let leader = sim.check_one_leader()?;
    for k in 1..=3 {
        sim.disconnect((leader + k) % 5);
    }
    let Some((index, _)) = sim.propose(leader, cmd(20)) else {
        return Err(sim.failure("leader rejected Start()".into()));
    };
    ensure!(
        sim,
        index == index10 + 1,
        "expected index {}, got {index}",
        index10 + 1
    );
    sim.sleep(2_000)?;
    let (count, _) = sim.n_committed(index)?;
    ensure!(sim, count == 0, "{count} committed but no majority");
    for k in 1..=3 {
        sim.connect((leader + k) % 5);
    }
    // The disconnected majority may have chosen a new leader; either way the next command lands
    // right after index10 plus at most two entries (20 and a no-op).
    let leader2 = sim.check_one_leader()?;
    let Some((index2, _)) = sim.propose(leader2, cmd(30)) else {
        return Err(sim.failure("leader2 rejected Start()".into()));
    };
    ensure!(
        sim,
        (index10 + 1..=index10 + 3).contains(&index2),
        "unexpected index {index2} (after {index10})"
    );
    sim.one(cmd(1000), 5, true)?;
    Ok(())
});

// TestConcurrentStarts2B.
seed_suite!(concurrent_starts, SEEDS, |seed| {
    let mut sim = Sim::new(SimConfig::new(3, seed));
    'attempt: for attempt in 0..5 {
        if attempt > 0 {
            sim.sleep(3_000)?;
        }
        let leader = sim.check_one_leader()?;
        let Some((_, term)) = sim.propose(leader, cmd(1)) else {
            continue;
        };
        let mut indexes = Vec::new();
        for i in 0..5u64 {
            match sim.propose(leader, cmd(100 + i)) {
                Some((index, t)) if t == term => indexes.push(index),
                _ => continue 'attempt,
            }
        }
        if (0..3).any(|j| sim.node(j).is_some_and(|n| n.term() != term)) {
            continue;
        }
        let mut committed = Vec::new();
        for index in indexes {
            match sim.wait(index, 3, Some(term))? {
                Some(command) => committed.push(command),
                None => continue 'attempt,
            }
        }
        for i in 0..5u64 {
            ensure!(
                sim,
                committed.contains(&cmd(100 + i)),
                "cmd {} missing",
                100 + i
            );
        }
        return Ok(());
    }
    Err(sim.failure("term changed too often".into()))
});

// TestRejoin2B: a partitioned leader's uncommitted entries are overwritten when it rejoins.
seed_suite!(rejoin, SEEDS, |seed| {
    let mut sim = Sim::new(SimConfig::new(3, seed));
    sim.one(cmd(101), 3, true)?;
    let leader1 = sim.check_one_leader()?;
    sim.disconnect(leader1);
    for c in [102, 103, 104] {
        sim.propose(leader1, cmd(c));
    }
    sim.one(cmd(103), 2, true)?;
    let leader2 = sim.check_one_leader()?;
    sim.disconnect(leader2);
    sim.connect(leader1);
    sim.one(cmd(104), 2, true)?;
    sim.connect(leader2);
    sim.one(cmd(105), 3, true)?;
    Ok(())
});

fn backup(seed: u64) -> Outcome {
    let mut sim = Sim::new(SimConfig::new(5, seed));
    let c = sim.random_command();
    sim.one(c, 5, true)?;
    // Put the leader and one follower in a partition.
    let leader1 = sim.check_one_leader()?;
    for k in 2..=4 {
        sim.disconnect((leader1 + k) % 5);
    }
    // Lots of commands that won't commit.
    for _ in 0..50 {
        let c = sim.random_command();
        sim.propose(leader1, c);
    }
    sim.sleep(500)?;
    sim.disconnect(leader1);
    sim.disconnect((leader1 + 1) % 5);
    // Allow the other partition to recover.
    for k in 2..=4 {
        sim.connect((leader1 + k) % 5);
    }
    for _ in 0..50 {
        let c = sim.random_command();
        sim.one(c, 3, true)?;
    }
    // Now another partitioned leader and one follower.
    let leader2 = sim.check_one_leader()?;
    let mut other = (leader1 + 2) % 5;
    if leader2 == other {
        other = (leader2 + 1) % 5;
    }
    sim.disconnect(other);
    for _ in 0..50 {
        let c = sim.random_command();
        sim.propose(leader2, c);
    }
    sim.sleep(500)?;
    // Bring the original leader back to life: a majority with stale, unequal logs.
    for i in 0..5 {
        sim.disconnect(i);
    }
    sim.connect(leader1);
    sim.connect((leader1 + 1) % 5);
    sim.connect(other);
    for _ in 0..50 {
        let c = sim.random_command();
        sim.one(c, 3, true)?;
    }
    for i in 0..5 {
        sim.connect(i);
    }
    let c = sim.random_command();
    sim.one(c, 5, true)?;
    Ok(())
}

// TestBackup2B: needs fast log backtracking to fit the 10 s budget of every one().
seed_suite!(backup_fast, SEEDS, backup);

// TestCount2B: bounds on the number of requests.
seed_suite!(rpc_count, SEEDS, |seed| {
    // Acknowledgements leave as soon as their write is reported, as a production driver sends
    // them. A strictly sequential driver queues an acknowledgement released by one write
    // behind the next write (it comes later in the stream), so acks lag one write; on this
    // reordering network that costs one RPC over the labs' exact bound in about 1 seed of
    // 2,000 (soak: 9 of 20,000), none with the lanes driver.
    let mut config = SimConfig::new(3, seed);
    config.driver = raft_tests::DriverMode::Lanes;
    let mut sim = Sim::new(config);
    sim.check_one_leader()?;
    let total1 = sim.stats().total_requests_received();
    ensure!(
        sim,
        (1..=30).contains(&total1),
        "too many or few RPCs ({total1}) to elect initial leader"
    );
    let iters = 10u64;
    let mut success = false;
    let mut total2 = 0;
    'attempt: for attempt in 0..5 {
        if attempt > 0 {
            sim.sleep(3_000)?;
        }
        let leader = sim.check_one_leader()?;
        let total1 = sim.stats().total_requests_received();
        let Some((start, term)) = sim.propose(leader, cmd(1)) else {
            continue;
        };
        let mut cmds = Vec::new();
        for i in 1..iters + 2 {
            let x = sim.random_command();
            cmds.push(x.clone());
            let Some((index, t)) = sim.propose(leader, x) else {
                continue 'attempt;
            };
            if t != term {
                continue 'attempt;
            }
            ensure!(
                sim,
                start + i == index,
                "Start() failed: index {index}, expected {}",
                start + i
            );
        }
        for i in 1..=iters {
            match sim.wait(start + i, 3, Some(term))? {
                Some(c) => ensure!(
                    sim,
                    c == cmds[(i - 1) as usize],
                    "wrong value {c:?} committed for index {}",
                    start + i
                ),
                None => continue 'attempt,
            }
        }
        if (0..3).any(|j| sim.node(j).is_some_and(|n| n.term() != term)) {
            continue;
        }
        total2 = sim.stats().total_requests_received();
        ensure!(
            sim,
            total2 - total1 <= (iters + 1 + 3) * 3,
            "too many RPCs ({}) for {iters} entries",
            total2 - total1
        );
        success = true;
        break;
    }
    ensure!(sim, success, "term changed too often");
    sim.sleep(1_000)?;
    let total3 = sim.stats().total_requests_received();
    ensure!(
        sim,
        total3 - total2 <= 3 * 20,
        "too many RPCs ({}) for 1 second of idleness",
        total3 - total2
    );
    Ok(())
});
