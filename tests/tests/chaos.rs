//! Randomized fault schedules beyond the lab scenarios: arbitrary partitions, crashes (losing
//! writes in progress), restarts, a lossy network with duplication and long reordering, varied
//! cluster sizes, batching limits, snapshot settings and drivers. Safety is checked at every step; at the end the network
//! calms down and the cluster must elect a leader within 5 s and commit within 10 s, keeping
//! every value it acknowledged.

use raft_tests::{cmd, ensure, seed_suite, DriverMode, NetConfig, Outcome, Sim, SimConfig};

const SEEDS: u64 = 200;

/// Every driver the contract allows: one action at a time, independent lanes, lanes at random
/// depths.
const DRIVERS: [DriverMode; 3] = [
    DriverMode::Sequential,
    DriverMode::Lanes,
    DriverMode::RandomDepth,
];

fn chaos(seed: u64) -> Outcome {
    let mut picker = raft_core::rng::SplitMix64::new(seed ^ 0xC4A0_5EED);
    let nodes = [3, 5, 7][picker.range(0, 3) as usize];
    let mut config = SimConfig::new(nodes, seed);
    config.net = NetConfig::unreliable();
    config.net.duplicate_rate = 0.05;
    // Small batches and few appends in flight exercise splitting and flow control.
    config.raft.max_append_bytes = [64, 1024, 64 * 1024][picker.range(0, 3) as usize];
    config.raft.max_inflight_appends = [1, 4, 32][picker.range(0, 3) as usize];
    config.disk_latency_ms = [(0, 0), (0, 3), (1, 20)][picker.range(0, 3) as usize];
    // Classic Raft on some seeds: pre-vote repeats the up-to-date check and could mask a bug in
    // the real vote.
    config.raft.pre_vote = picker.chance(0.5);
    config.raft.check_quorum = picker.chance(0.5);
    // Log compaction on most seeds, with snapshots of one to many chunks.
    config.snapshot_every = [None, Some(3), Some(10), Some(40)][picker.range(0, 4) as usize];
    config.snapshot_padding = [0, 3000][picker.range(0, 2) as usize];
    config.raft.snapshot_chunk_bytes = [100, 16 * 1024][picker.range(0, 2) as usize];
    config.driver = DRIVERS[picker.range(0, 3) as usize];
    let mut sim = Sim::new(config);
    let mut acknowledged: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut proposed: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut next_value = 0u64;
    for _ in 0..40 {
        // Clients: propose a few commands at whoever leads.
        for _ in 0..sim.random(0, 4) {
            let leaders = sim.leaders();
            if let Some(&(slot, _)) =
                leaders.get(sim.random(0, leaders.len().max(1) as u64) as usize)
            {
                next_value += 1;
                let value = cmd(next_value);
                if let Some((index, _)) = sim.propose(slot, value.clone()) {
                    proposed.push((index, value));
                }
            }
        }
        // Faults.
        match sim.random(0, 10) {
            0 | 1 => {
                let i = sim.random(0, nodes as u64) as usize;
                sim.crash(i);
            }
            2 | 3 => {
                let i = sim.random(0, nodes as u64) as usize;
                sim.restart(i);
            }
            4 | 5 => {
                let mut groups = vec![Vec::new(), Vec::new(), Vec::new()];
                for i in 0..nodes {
                    groups[sim.random(0, 3) as usize].push(i);
                }
                sim.partition(&groups);
            }
            6 => sim.heal(),
            7 => {
                let long = !sim.net().long_reordering;
                sim.set_long_reordering(long);
            }
            _ => {}
        }
        let pause = sim.random(50, 800);
        sim.sleep(pause)?;
        // A proposal counts as acknowledged once some node applied it at its index.
        proposed.retain(|(index, value)| {
            let applied = (0..nodes).find_map(|i| sim.applied(i, *index).cloned());
            match applied {
                Some(entry) if entry.command() == Some(&value[..]) => {
                    acknowledged.push((*index, value.clone()));
                    false
                }
                Some(_) => false, // another entry won the index: never acknowledged
                None => true,
            }
        });
    }
    // Calm: heal, restart everyone, reliable network.
    sim.heal();
    sim.set_net(NetConfig::reliable());
    for i in 0..nodes {
        if !sim.is_alive(i) {
            sim.restart(i);
        }
    }
    sim.check_one_leader()?;
    let last = sim.one(cmd(u64::MAX), nodes, true)?;
    for (index, value) in &acknowledged {
        ensure!(
            sim,
            *index <= last,
            "acknowledged index {index} beyond the final log {last}"
        );
        let (count, command) = sim.n_committed(*index)?;
        ensure!(
            sim,
            count > 0 && command.as_deref() == Some(&value[..]),
            "acknowledged value at index {index} lost"
        );
    }
    Ok(())
}

seed_suite!(random_faults_then_calm, SEEDS, chaos);

/// Crashes aimed at writes in progress: a node crashes before its write is durable, while the
/// messages listed before that write may already be out. Durability-ordering bugs (a vote or an
/// acknowledgement sent before it is durable, a leader counting its own write early) show here.
fn crash_during_writes(seed: u64) -> Outcome {
    let mut picker = raft_core::rng::SplitMix64::new(seed ^ 0xD15C);
    let nodes = [3, 5][picker.range(0, 2) as usize];
    let mut config = SimConfig::new(nodes, seed);
    config.disk_latency_ms = (1, 30);
    config.crash_during_write = [0.01, 0.03, 0.08][picker.range(0, 3) as usize];
    config.raft.pre_vote = picker.chance(0.5);
    config.raft.check_quorum = picker.chance(0.5);
    config.raft.max_append_bytes = [1, 64 * 1024][picker.range(0, 2) as usize];
    // Snapshots too: a crash may hit a snapshot write (taken here or installed from a leader).
    config.snapshot_every = [None, Some(7), Some(25)][picker.range(0, 3) as usize];
    config.raft.snapshot_chunk_bytes = 8;
    config.driver = DRIVERS[picker.range(0, 3) as usize];
    let mut sim = Sim::new(config);
    let mut next = 0u64;
    for _ in 0..300 {
        for slot in 0..nodes {
            next += 1;
            sim.propose(slot, cmd(next));
        }
        let pause = sim.random(1, 40);
        sim.sleep(pause)?;
    }
    sim.set_crash_during_write(0.0);
    for i in 0..nodes {
        if !sim.is_alive(i) {
            sim.restart(i);
        }
    }
    sim.check_one_leader()?;
    sim.one(cmd(u64::MAX), nodes, true)?;
    Ok(())
}

seed_suite!(crash_during_write, SEEDS, crash_during_writes);
