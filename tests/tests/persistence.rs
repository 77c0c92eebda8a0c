//! Persistence, Figure 8 and churn suites (the labs' 2C tests), each over many seeds.
//!
//! A crash here loses all volatile state and every write still in progress on the simulated
//! disk; a restart rebuilds the node from what its disk holds.

use raft_tests::{cmd, ensure, seed_suite, Outcome, Sim, SimConfig};

const SEEDS: u64 = 200;

/// The labs' `start1(i)` followed by `connect(i)`.
fn restart_and_connect(sim: &mut Sim, slot: usize) {
    sim.restart(slot);
    sim.connect(slot);
}

// TestPersist12C.
seed_suite!(persist1, SEEDS, |seed| {
    let mut sim = Sim::new(SimConfig::new(3, seed));
    sim.one(cmd(11), 3, true)?;
    // Crash and restart all.
    for i in 0..3 {
        restart_and_connect(&mut sim, i);
    }
    sim.one(cmd(12), 3, true)?;
    let leader1 = sim.check_one_leader()?;
    sim.disconnect(leader1);
    restart_and_connect(&mut sim, leader1);
    sim.one(cmd(13), 3, true)?;
    let leader2 = sim.check_one_leader()?;
    sim.disconnect(leader2);
    let index14 = sim.one(cmd(14), 2, true)?;
    restart_and_connect(&mut sim, leader2);
    // Wait for the restarted leader2 to join in.
    sim.wait(index14, 3, None)?;
    let i3 = (sim.check_one_leader()? + 1) % 3;
    sim.disconnect(i3);
    sim.one(cmd(15), 2, true)?;
    restart_and_connect(&mut sim, i3);
    sim.one(cmd(16), 3, true)?;
    Ok(())
});

// TestPersist22C.
seed_suite!(persist2, SEEDS, |seed| {
    let mut sim = Sim::new(SimConfig::new(5, seed));
    let mut index = 1;
    for _ in 0..5 {
        sim.one(cmd(10 + index), 5, true)?;
        index += 1;
        let leader1 = sim.check_one_leader()?;
        sim.disconnect((leader1 + 1) % 5);
        sim.disconnect((leader1 + 2) % 5);
        sim.one(cmd(10 + index), 3, true)?;
        index += 1;
        sim.disconnect(leader1);
        sim.disconnect((leader1 + 3) % 5);
        sim.disconnect((leader1 + 4) % 5);
        restart_and_connect(&mut sim, (leader1 + 1) % 5);
        restart_and_connect(&mut sim, (leader1 + 2) % 5);
        sim.sleep(1_000)?;
        restart_and_connect(&mut sim, (leader1 + 3) % 5);
        sim.one(cmd(10 + index), 3, true)?;
        index += 1;
        sim.connect((leader1 + 4) % 5);
        sim.connect(leader1);
    }
    sim.one(cmd(1000), 5, true)?;
    Ok(())
});

// TestPersist32C: a partitioned leader and one peer crash; the other peer rejoins.
seed_suite!(persist3, SEEDS, |seed| {
    let mut sim = Sim::new(SimConfig::new(3, seed));
    sim.one(cmd(101), 3, true)?;
    let leader = sim.check_one_leader()?;
    sim.disconnect((leader + 2) % 3);
    sim.one(cmd(102), 2, true)?;
    sim.crash(leader);
    sim.crash((leader + 1) % 3);
    sim.connect((leader + 2) % 3);
    restart_and_connect(&mut sim, leader);
    sim.one(cmd(103), 2, true)?;
    restart_and_connect(&mut sim, (leader + 1) % 3);
    sim.one(cmd(104), 3, true)?;
    Ok(())
});

/// The Figure 8 suites vary replication per seed: besides the defaults, appends of a single
/// entry with one in flight, and slow disks. Old-term entries then reach a majority one at a
/// time, which opens the window in which a leader might wrongly commit them by counting.
fn figure8_config(seed: u64) -> SimConfig {
    let mut config = SimConfig::new(5, seed);
    match seed % 3 {
        0 => {}
        1 => {
            config.raft.max_append_bytes = 1;
            config.raft.max_inflight_appends = 1;
        }
        _ => {
            config.raft.max_append_bytes = 1;
            config.disk_latency_ms = (1, 25);
        }
    }
    config
}

/// The labs' sleep between Figure 8 iterations: up to 0.5 s one time in ten, else up to 13 ms.
fn figure8_pause(sim: &mut Sim) -> u64 {
    if sim.random(0, 1000) < 100 {
        sim.random(0, 500)
    } else {
        sim.random(0, 13)
    }
}

// TestFigure82C: leaders crash right after proposing, over and over; the checker verifies
// state machine safety at every step, and the cluster must still agree at the end.
seed_suite!(figure8, SEEDS, |seed| {
    let mut sim = Sim::new(figure8_config(seed));
    let c = sim.random_command();
    sim.one(c, 1, true)?;
    let mut up = 5;
    for _ in 0..1000 {
        let mut leader = None;
        for i in 0..5 {
            let c = sim.random_command();
            if sim.propose(i, c).is_some() {
                leader = Some(i);
            }
        }
        let pause = figure8_pause(&mut sim);
        sim.sleep(pause)?;
        if let Some(leader) = leader {
            sim.crash(leader);
            up -= 1;
        }
        if up < 3 {
            let s = sim.random(0, 5) as usize;
            if !sim.is_alive(s) {
                restart_and_connect(&mut sim, s);
                up += 1;
            }
        }
    }
    for i in 0..5 {
        if !sim.is_alive(i) {
            restart_and_connect(&mut sim, i);
        }
    }
    let c = sim.random_command();
    sim.one(c, 5, true)?;
    Ok(())
});

/// Proposes every command and keeps resubmitting each until `expected` nodes applied it, like
/// the labs' concurrent `one(..., retry=true)` goroutines. Fails after 10 s.
fn agree_all(sim: &mut Sim, commands: Vec<Vec<u8>>, expected: usize) -> Outcome {
    // (command, index it was last proposed at, when)
    let mut pending: Vec<(Vec<u8>, Option<u64>, u64)> =
        commands.into_iter().map(|c| (c, None, 0)).collect();
    let started = sim.now();
    while !pending.is_empty() {
        ensure!(
            sim,
            sim.now() - started < 10_000,
            "{} commands failed to reach agreement",
            pending.len()
        );
        let mut still = Vec::new();
        for (command, index, at) in pending {
            if let Some(index) = index {
                let (count, applied) = sim.n_committed(index)?;
                if count >= expected && applied.as_deref() == Some(&command[..]) {
                    continue;
                }
                if sim.now() - at < 2_000 {
                    still.push((command, Some(index), at));
                    continue;
                }
            }
            let slot = (0..sim.len()).find(|&i| sim.node(i).is_some_and(|n| n.is_leader()));
            let proposed = slot.and_then(|s| sim.propose(s, command.clone()));
            still.push((command, proposed.map(|(i, _)| i), sim.now()));
        }
        pending = still;
        sim.sleep(20)?;
    }
    Ok(())
}

// TestUnreliableAgree2C: 245 commands over a lossy, duplicating, reordering network.
seed_suite!(unreliable_agree, SEEDS, |seed| {
    let mut config = SimConfig::new(5, seed);
    config.net = raft_tests::NetConfig::unreliable();
    let mut sim = Sim::new(config);
    for iter in 1..50u64 {
        let commands = (0..5).map(|j| cmd(100 * iter + j)).collect();
        agree_all(&mut sim, commands, 1)?;
    }
    sim.set_reliable(true);
    sim.one(cmd(100), 5, true)?;
    Ok(())
});

// TestFigure8Unreliable2C: leaders are partitioned away right after proposing, on a lossy
// network that also reorders by up to 2.2 s from iteration 200 on.
seed_suite!(figure8_unreliable, SEEDS, |seed| {
    let mut config = SimConfig::new(5, seed);
    config.net = raft_tests::NetConfig::unreliable();
    let mut sim = Sim::new(config);
    let c = cmd(sim.random(0, 10_000));
    sim.one(c, 1, true)?;
    let mut up = 5;
    for iter in 0..1000 {
        if iter == 200 {
            sim.set_long_reordering(true);
        }
        let mut leader = None;
        for i in 0..5 {
            let c = cmd(sim.random(0, 10_000));
            if sim.propose(i, c).is_some() && sim.is_connected(i) {
                leader = Some(i);
            }
        }
        let pause = figure8_pause(&mut sim);
        sim.sleep(pause)?;
        if let Some(leader) = leader {
            if sim.random(0, 1000) < 500 {
                sim.disconnect(leader);
                up -= 1;
            }
        }
        if up < 3 {
            let s = sim.random(0, 5) as usize;
            if !sim.is_connected(s) {
                sim.connect(s);
                up += 1;
            }
        }
    }
    for i in 0..5 {
        sim.connect(i);
    }
    // Still unreliable with long reordering.
    let c = cmd(sim.random(0, 10_000));
    sim.one(c, 5, true)?;
    Ok(())
});

/// One of the churn test's clients: proposes to every live node, then polls for the command.
struct ChurnClient {
    id: u64,
    /// Committed values this client saw.
    seen: Vec<Vec<u8>>,
    state: ClientState,
}

enum ClientState {
    /// Propose at this time.
    Idle { at: u64 },
    /// Poll `index` for `command` at `at`; `polls` done so far.
    Polling {
        index: u64,
        command: Vec<u8>,
        polls: usize,
        at: u64,
    },
}

const POLL_PAUSES: [u64; 5] = [10, 20, 50, 100, 200];

impl ChurnClient {
    fn step(&mut self, sim: &mut Sim) -> Outcome {
        let now = sim.now();
        match &mut self.state {
            ClientState::Idle { at } if *at <= now => {
                let x = sim.random_command();
                let mut accepted = None;
                for i in 0..sim.len() {
                    if let Some((index, _)) = sim.propose(i, x.clone()) {
                        accepted = Some(index);
                    }
                }
                self.state = match accepted {
                    Some(index) => ClientState::Polling {
                        index,
                        command: x,
                        polls: 0,
                        at: now + POLL_PAUSES[0],
                    },
                    None => ClientState::Idle {
                        at: now + 79 + self.id * 17,
                    },
                };
            }
            ClientState::Polling {
                index,
                command,
                polls,
                at,
            } if *at <= now => {
                let (count, applied) = sim.n_committed(*index)?;
                if count > 0 && applied.as_deref() == Some(&command[..]) {
                    self.seen.push(std::mem::take(command));
                    self.state = ClientState::Idle { at: now };
                } else if *polls + 1 >= POLL_PAUSES.len() {
                    self.state = ClientState::Idle { at: now };
                } else {
                    *polls += 1;
                    *at = now + POLL_PAUSES[*polls];
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Runs the simulation for `duration`, letting the clients act every 10 ms.
fn run_with_clients(sim: &mut Sim, clients: &mut [ChurnClient], duration: u64) -> Outcome {
    let until = sim.now() + duration;
    while sim.now() < until {
        for client in clients.iter_mut() {
            client.step(sim)?;
        }
        sim.sleep(10.min(until - sim.now()))?;
    }
    Ok(())
}

/// The labs' `internalChurn`: clients propose while nodes are disconnected, crashed and
/// restarted at random; every value a client saw committed must be in the final log.
fn churn(seed: u64, unreliable: bool) -> Outcome {
    let mut config = SimConfig::new(5, seed);
    if unreliable {
        config.net = raft_tests::NetConfig::unreliable();
    }
    let mut sim = Sim::new(config);
    let mut clients: Vec<ChurnClient> = (0..3)
        .map(|id| ChurnClient {
            id,
            seen: Vec::new(),
            state: ClientState::Idle { at: 0 },
        })
        .collect();
    for _ in 0..20 {
        if sim.random(0, 1000) < 200 {
            let i = sim.random(0, 5) as usize;
            sim.disconnect(i);
        }
        if sim.random(0, 1000) < 500 {
            let i = sim.random(0, 5) as usize;
            if !sim.is_alive(i) {
                sim.restart(i);
            }
            sim.connect(i);
        }
        if sim.random(0, 1000) < 200 {
            let i = sim.random(0, 5) as usize;
            if sim.is_alive(i) {
                sim.crash(i);
            }
        }
        // Half an election timeout or so, as in the labs.
        run_with_clients(&mut sim, &mut clients, 700)?;
    }
    run_with_clients(&mut sim, &mut clients, 1_000)?;
    sim.set_reliable(true);
    for i in 0..5 {
        if !sim.is_alive(i) {
            sim.restart(i);
        }
        sim.connect(i);
    }
    // Stop the clients.
    let seen: Vec<Vec<u8>> = clients.into_iter().flat_map(|c| c.seen).collect();
    sim.sleep(1_000)?;
    let c = sim.random_command();
    let last = sim.one(c, 5, true)?;
    let mut really = Vec::new();
    for index in 1..=last {
        if let Some(command) = sim.wait(index, 5, None)? {
            really.push(command);
        }
    }
    for value in &seen {
        ensure!(
            sim,
            really.contains(value),
            "didn't find a value a client saw committed"
        );
    }
    Ok(())
}

// TestReliableChurn2C.
seed_suite!(reliable_churn, SEEDS, |seed| churn(seed, false));

// TestUnreliableChurn2C.
seed_suite!(unreliable_churn, SEEDS, |seed| churn(seed, true));
