//! ReadIndex suites: reads served without writing to the log must be linearizable.
//!
//! Lease reads are on for some seeds (with check-quorum, which they require); the simulator's
//! clocks tick at the same rate, the assumption leases rest on.
//!
//! The simulator checks every served read as it is released: the state the read observes must
//! include every entry known committed when the read was requested (so no read returns a value
//! older than a write that had completed), and must have applied the read index. Reads go to
//! leaders and followers alike (followers forward them), including old leaders cut off in a
//! minority that still believe they lead.

use raft_tests::{cmd, ensure, seed_suite, NetConfig, Outcome, ReadOutcome, Sim, SimConfig};

const SEEDS: u64 = 200;

/// Proposes a command at every node that claims to lead (stale leaders included) and asks a few
/// random nodes for reads.
fn client_step(sim: &mut Sim, next: &mut u64, reads: &mut Vec<u64>) {
    for slot in 0..sim.len() {
        if sim.node(slot).is_some_and(|n| n.is_leader()) {
            *next += 1;
            sim.propose(slot, cmd(*next));
        }
    }
    for _ in 0..sim.random(1, 4) {
        let slot = sim.random(0, sim.len() as u64) as usize;
        reads.push(sim.read(slot));
    }
}

/// Once calm, every read still waiting must be answered, and a read at the current leader must
/// be served within a second.
fn read_served_when_calm(sim: &mut Sim) -> Outcome {
    sim.check_reads_settle(3_000)?;
    let leader = sim.check_one_leader()?;
    let id = sim.read(leader);
    for _ in 0..100 {
        sim.sleep(10)?;
        match sim.read_outcome(id) {
            ReadOutcome::Served { .. } => return Ok(()),
            ReadOutcome::Failed(error) => {
                return Err(sim.failure(format!("read at a calm leader failed: {error}")))
            }
            ReadOutcome::Pending => {}
        }
    }
    Err(sim.failure("read at a calm leader not served within 1 s".into()))
}

/// The old leader and one follower are cut off; the majority elects a leader and keeps
/// writing while clients read everywhere, old leader included. With check-quorum off (half the
/// seeds) the old leader believes it leads until the partition heals.
fn stale_leader(seed: u64) -> Outcome {
    let mut config = SimConfig::new(5, seed);
    config.raft.check_quorum = seed % 2 == 0;
    config.raft.pre_vote = seed % 4 < 2;
    // Lease reads on a third of the seeds with check-quorum.
    config.raft.lease_reads = config.raft.check_quorum && seed % 3 == 0;
    let mut sim = Sim::new(config);
    let mut next = 0;
    let mut reads = Vec::new();
    sim.one(cmd(0), 5, true)?;
    for _ in 0..3 {
        let old = sim.check_one_leader()?;
        let buddy = (old + 1) % 5;
        let majority: Vec<usize> = (0..5).filter(|&i| i != old && i != buddy).collect();
        sim.partition(&[vec![old, buddy], majority]);
        for _ in 0..60 {
            client_step(&mut sim, &mut next, &mut reads);
            let pause = sim.random(5, 40);
            sim.sleep(pause)?;
        }
        sim.heal();
        for _ in 0..20 {
            client_step(&mut sim, &mut next, &mut reads);
            let pause = sim.random(5, 40);
            sim.sleep(pause)?;
        }
    }
    sim.sleep(2_000)?;
    read_served_when_calm(&mut sim)?;
    let served = reads
        .iter()
        .filter(|&&id| matches!(sim.read_outcome(id), ReadOutcome::Served { .. }))
        .count();
    ensure!(
        sim,
        served * 4 >= reads.len(),
        "only {served} of {} reads served",
        reads.len()
    );
    Ok(())
}

seed_suite!(stale_leader_partition, SEEDS, stale_leader);

/// Reads and writes under random partitions, crashes, loss, duplication and long reordering,
/// with log compaction on some seeds.
fn chaos_reads(seed: u64) -> Outcome {
    let mut picker = raft_core::rng::SplitMix64::new(seed ^ 0x2EAD);
    let nodes = [3, 5][picker.range(0, 2) as usize];
    let mut config = SimConfig::new(nodes, seed);
    config.net = NetConfig::unreliable();
    config.raft.check_quorum = picker.chance(0.5);
    config.raft.lease_reads = config.raft.check_quorum && picker.chance(0.5);
    config.snapshot_every = [None, Some(10)][picker.range(0, 2) as usize];
    let mut sim = Sim::new(config);
    let mut next = 0;
    let mut reads = Vec::new();
    for _ in 0..30 {
        for _ in 0..5 {
            client_step(&mut sim, &mut next, &mut reads);
            let pause = sim.random(5, 60);
            sim.sleep(pause)?;
        }
        match sim.random(0, 8) {
            0 => {
                let i = sim.random(0, nodes as u64) as usize;
                sim.crash(i);
            }
            1 => {
                let i = sim.random(0, nodes as u64) as usize;
                sim.restart(i);
            }
            2 | 3 => {
                let mut groups = vec![Vec::new(), Vec::new()];
                for i in 0..nodes {
                    groups[sim.random(0, 2) as usize].push(i);
                }
                sim.partition(&groups);
            }
            4 => sim.heal(),
            5 => {
                let long = !sim.net().long_reordering;
                sim.set_long_reordering(long);
            }
            _ => {}
        }
    }
    sim.heal();
    sim.set_net(NetConfig::reliable());
    for i in 0..nodes {
        if !sim.is_alive(i) {
            sim.restart(i);
        }
    }
    sim.sleep(1_000)?;
    read_served_when_calm(&mut sim)?;
    ensure!(sim, sim.reads_served() > 0, "no read was ever served");
    Ok(())
}

seed_suite!(reads_under_chaos, SEEDS, chaos_reads);

// A follower's read is forwarded to the leader and served once the follower has applied the
// leader's read index; many concurrent reads complete.
seed_suite!(follower_reads, SEEDS, |seed| {
    let mut sim = Sim::new(SimConfig::new(3, seed));
    sim.one(cmd(1), 3, true)?;
    let leader = sim.check_one_leader()?;
    let follower = (leader + 1) % 3;
    let mut reads = Vec::new();
    for k in 0..50 {
        sim.propose(leader, cmd(100 + k));
        reads.push(sim.read(follower));
        reads.push(sim.read(leader));
        let pause = sim.random(0, 5);
        sim.sleep(pause)?;
    }
    sim.sleep(1_000)?;
    for id in reads {
        ensure!(
            sim,
            matches!(sim.read_outcome(id), ReadOutcome::Served { .. }),
            "read {id} not served: {:?}",
            sim.read_outcome(id)
        );
    }
    Ok(())
});

/// Lease reads across a restart: the leader L holds a lease from heartbeats acknowledged by A
/// and B while C and D are cut off. Then A restarts, forgetting it ever heard from L, and finds
/// itself with C and D: a majority that could elect a new leader and commit writes while L's
/// lease still lets it serve reads. A restarted node must grant no vote until any lease it may
/// have backed has expired.
fn lease_restarts(seed: u64) -> Outcome {
    let mut config = SimConfig::new(5, seed);
    config.raft.lease_reads = true;
    config.raft.pre_vote = seed % 2 == 0;
    let mut sim = Sim::new(config);
    let mut next = 0;
    let mut reads = Vec::new();
    sim.one(cmd(0), 5, true)?;
    for _ in 0..5 {
        let l = sim.check_one_leader()?;
        let [a, b, c, d] = [1, 2, 3, 4].map(|k| (l + k) % 5);
        sim.partition(&[vec![l, a, b], vec![c, d]]);
        // Only reads meanwhile: C and D stay as up to date as A, so A may vote for them.
        for _ in 0..20 {
            let slot = sim.random(0, 5) as usize;
            reads.push(sim.read(slot));
            let pause = sim.random(10, 60);
            sim.sleep(pause)?;
        }
        sim.restart(a);
        sim.partition(&[vec![l, b], vec![a, c, d]]);
        for _ in 0..60 {
            client_step(&mut sim, &mut next, &mut reads);
            let pause = sim.random(2, 20);
            sim.sleep(pause)?;
        }
        sim.heal();
        sim.sleep(1_000)?;
    }
    read_served_when_calm(&mut sim)?;
    Ok(())
}

seed_suite!(lease_reads_with_restarts, SEEDS, lease_restarts);
