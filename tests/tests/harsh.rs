//! Faults beyond the labs' model, and the bugs an outside check found with them.
//!
//! Each suite here targets one of: a fault the simulator could not produce before (one-way
//! links, long delays on requests as well as responses, replays of messages from long ago and
//! from earlier incarnations of restarted nodes, drivers that pipeline as far as the ordering
//! contract allows) or one of three bugs those faults exposed:
//!
//! 1. a restarted leader counted a follower's answer to its *earlier incarnation's* heartbeat as
//!    a confirmation of a read round of its new term, and served a stale read;
//! 2. without pre-vote, a candidate that can send but not receive kept every voter's election
//!    timer from firing by asking again and again, and no leader was ever elected;
//! 3. a node's durability promises (a granted vote, `Accepted`, `Installed`) were backed by
//!    writes listed in earlier action lists, which a pipelining driver could still be writing.
//!
//! Besides the invariant checker, the simulator checks that every promise a node emits is on its
//! disk, that every commit a node declares is on a majority of disks, and (here) that no read
//! waits forever once the network calms.

use raft_core::{MessageBody, Role};
use raft_tests::{cmd, seed_suite, DriverMode, NetConfig, Outcome, ReadOutcome, Sim, SimConfig};

const SEEDS: u64 = 200;

/// How long reads may stay unanswered once the network is calm: a forwarded read times out
/// after an election timeout (800 ms at most here), a leader's round takes a round trip, and a
/// partitioned node needs a heartbeat interval or two to hear of the new leader.
const READS_SETTLE_MS: u64 = 3_000;

/// Proposes at every node that claims to lead and asks random nodes for reads.
fn client_step(sim: &mut Sim, next: &mut u64) {
    for slot in 0..sim.len() {
        if sim.node(slot).is_some_and(|n| n.is_leader()) {
            *next += 1;
            sim.propose(slot, cmd(*next));
        }
    }
    for _ in 0..sim.random(1, 4) {
        let slot = sim.random(0, sim.len() as u64) as usize;
        sim.read(slot);
    }
}

/// Heals, restarts every crashed node and calms the network; then a leader must be elected, a
/// command committed by all, and every read still waiting answered.
fn calm_and_check(sim: &mut Sim) -> Outcome {
    sim.heal();
    sim.set_net(NetConfig::reliable());
    for slot in 0..sim.len() {
        if !sim.is_alive(slot) {
            sim.restart(slot);
        }
    }
    sim.check_one_leader()?;
    let n = sim.len();
    sim.one(cmd(u64::MAX), n, true)?;
    sim.check_reads_settle(READS_SETTLE_MS)
}

/// Bug 1. A leader runs many read rounds and restarts; once a restarted node leads again, the
/// network delivers the heartbeats its earlier incarnation sent (their answers echo read rounds
/// of that incarnation, in the new term); then the leader and one follower are cut off while
/// the majority commits, and clients read at the old leader. No read may miss the majority's
/// write, and none may wait forever after the heal.
fn stale_echo_after_leader_restart(seed: u64) -> Outcome {
    let mut config = SimConfig::new(5, seed);
    config.raft.check_quorum = seed % 2 == 0;
    config.raft.pre_vote = seed % 4 < 2;
    config.raft.lease_reads = config.raft.check_quorum && seed % 3 == 0;
    let mut sim = Sim::new(config);
    let mut next = 0;
    sim.one(cmd(0), 5, true)?;
    for _ in 0..3 {
        // Restart leaders until a restarted node leads again (each builds read rounds first),
        // keeping the heartbeats each sent just before its restart.
        let mut restarted = None;
        let mut old = Vec::new();
        for _ in 0..8 {
            let leader = sim.check_one_leader()?;
            if restarted == Some(leader) {
                break;
            }
            for _ in 0..sim.random(5, 15) {
                sim.read(leader);
                let pause = sim.random(5, 30);
                sim.sleep(pause)?;
            }
            let id = leader as u64 + 1;
            old = sim.recorded_messages(|m| {
                m.from == id && matches!(m.body, MessageBody::AppendRequest { .. })
            });
            sim.restart(leader);
            restarted = Some(leader);
        }
        let leader = sim.check_one_leader()?;
        // The leader commits in its new term first (reads wait for that anyway).
        next += 1;
        sim.one(cmd(next), 5, true)?;
        let buddy = (leader + 1 + sim.random(0, 4) as usize) % 5;
        let echo = (0..5)
            .filter(|&i| i != leader && i != buddy)
            .nth(sim.random(0, 3) as usize)
            .unwrap_or(0);
        if restarted != Some(leader) {
            old.clear(); // another node's earlier messages: only random replays then
        }
        // The earlier incarnation's heartbeats to one follower arrive now (its answers, in the
        // new term, echo read rounds of the earlier incarnation), with random old messages.
        sim.replay_random(10);
        for message in old.into_iter().filter(|m| m.to == echo as u64 + 1) {
            let delay = sim.random(0, 30);
            sim.redeliver(message, delay);
        }
        sim.sleep(60)?;
        // The leader and its buddy are cut off; the follower that echoed is in the majority.
        let majority: Vec<usize> = (0..5).filter(|&i| i != leader && i != buddy).collect();
        sim.partition(&[vec![leader, buddy], majority]);
        next += 1;
        sim.one(cmd(next), 3, true)?;
        for _ in 0..20 {
            sim.read(leader);
            sim.read(buddy);
            let pause = sim.random(5, 30);
            sim.sleep(pause)?;
        }
        sim.heal();
        sim.sleep(500)?;
    }
    calm_and_check(&mut sim)
}

seed_suite!(
    stale_echo_after_a_leader_restart,
    SEEDS,
    stale_echo_after_leader_restart
);

/// Bug 2. A node that can send but not receive (pre-vote off, check-quorum on half the seeds)
/// while the leader is lost: the other nodes must still elect a leader and commit, again and
/// again.
fn deaf_candidate(seed: u64) -> Outcome {
    let mut picker = raft_core::rng::SplitMix64::new(seed ^ 0xDEAF);
    let nodes = [3, 5][picker.range(0, 2) as usize];
    let mut config = SimConfig::new(nodes, seed);
    config.raft.pre_vote = false;
    config.raft.check_quorum = picker.chance(0.5);
    let mut sim = Sim::new(config);
    let leader = sim.check_one_leader()?;
    sim.one(cmd(0), nodes, true)?;
    // A follower goes deaf. (A deaf *leader* keeps sending heartbeats and, without
    // check-quorum, holds the cluster forever: that is what check-quorum is for.)
    let deaf = (leader + 1 + sim.random(0, nodes as u64 - 1) as usize) % nodes;
    sim.deafen(deaf);
    for round in 1..=4 {
        // Lose the leader (a deaf node never wins an election: it hears no votes).
        let leader = sim.leaders().first().map(|&(slot, _)| slot);
        if let Some(leader) = leader.filter(|&l| l != deaf) {
            sim.crash(leader);
            let pause = sim.random(100, 1_000);
            sim.sleep(pause)?;
            sim.restart(leader);
        }
        // Everyone but the deaf node must agree, within the labs' 10 s.
        sim.one(cmd(round), nodes - 1, true)?;
    }
    Ok(())
}

seed_suite!(deaf_candidate_without_pre_vote, SEEDS, deaf_candidate);

/// Bug 3. Drivers that pipeline as far as the contract allows (lanes, or lanes at random
/// depths), slow disks, crashes aimed at writes in progress, lossy network, reads; every
/// promise checked against the sender's disk when it is emitted, every declared commit against
/// a majority of disks.
fn pipelined_driver(seed: u64) -> Outcome {
    let mut picker = raft_core::rng::SplitMix64::new(seed ^ 0x919E);
    let nodes = [3, 5][picker.range(0, 2) as usize];
    let mut config = SimConfig::new(nodes, seed);
    config.driver = if picker.chance(0.5) {
        DriverMode::Lanes
    } else {
        DriverMode::RandomDepth
    };
    config.disk_latency_ms = [(1, 10), (5, 60)][picker.range(0, 2) as usize];
    config.crash_during_write = [0.0, 0.02, 0.05][picker.range(0, 3) as usize];
    config.net = if picker.chance(0.5) {
        NetConfig::unreliable()
    } else {
        NetConfig::reliable()
    };
    config.raft.pre_vote = picker.chance(0.5);
    config.raft.check_quorum = picker.chance(0.5);
    config.raft.lease_reads = config.raft.check_quorum && picker.chance(0.3);
    config.raft.max_append_bytes = [1, 64 * 1024][picker.range(0, 2) as usize];
    config.snapshot_every = [None, Some(9), Some(30)][picker.range(0, 3) as usize];
    config.raft.snapshot_chunk_bytes = [8, 16 * 1024][picker.range(0, 2) as usize];
    let mut sim = Sim::new(config);
    let mut next = 0;
    for _ in 0..150 {
        client_step(&mut sim, &mut next);
        // Duplicates of recent appends keep arriving while their writes are in flight.
        sim.replay_random(2);
        let pause = sim.random(1, 40);
        sim.sleep(pause)?;
    }
    sim.set_crash_during_write(0.0);
    calm_and_check(&mut sim)
}

seed_suite!(pipelined_drivers_with_crashes, SEEDS, pipelined_driver);

/// New fault: one-way links. Random links fail in one direction, whole nodes go deaf or mute,
/// on a lossy network with crashes and reads; pre-vote and check-quorum vary. Then calm.
fn one_way_links(seed: u64) -> Outcome {
    let mut picker = raft_core::rng::SplitMix64::new(seed ^ 0x0E3A);
    let nodes = [3, 5][picker.range(0, 2) as usize];
    let mut config = SimConfig::new(nodes, seed);
    config.net = NetConfig::unreliable();
    config.raft.pre_vote = picker.chance(0.5);
    config.raft.check_quorum = picker.chance(0.5);
    config.raft.lease_reads = config.raft.check_quorum && picker.chance(0.3);
    let mut sim = Sim::new(config);
    let mut next = 0;
    for _ in 0..30 {
        client_step(&mut sim, &mut next);
        let a = sim.random(0, nodes as u64) as usize;
        let b = (a + 1 + sim.random(0, nodes as u64 - 1) as usize) % nodes;
        match sim.random(0, 10) {
            0..=2 => sim.cut_one_way(a, b),
            3 => sim.restore_one_way(a, b),
            4 => sim.deafen(a),
            5 => sim.mute(a),
            6 => sim.heal(),
            7 => sim.restart(a),
            _ => {}
        }
        let pause = sim.random(50, 600);
        sim.sleep(pause)?;
    }
    // A deaf follower alone must not stop the others (the leader lost meanwhile). A deaf
    // leader without check-quorum would hold the cluster forever: not a fault Raft survives.
    sim.heal();
    sim.set_net(NetConfig::reliable());
    for slot in 0..nodes {
        if !sim.is_alive(slot) {
            sim.restart(slot);
        }
    }
    let leader = sim.check_one_leader()?;
    let deaf = (leader + 1 + sim.random(0, nodes as u64 - 1) as usize) % nodes;
    sim.deafen(deaf);
    sim.restart(leader);
    sim.one(cmd(u64::MAX - 1), nodes - 1, true)?;
    calm_and_check(&mut sim)
}

seed_suite!(one_way_link_failures, SEEDS, one_way_links);

/// New fault: long delays on requests as well as responses (a few percent of every message
/// held back 0.2-2.2 s), with partitions, restarts and reads.
fn long_request_delays(seed: u64) -> Outcome {
    let mut picker = raft_core::rng::SplitMix64::new(seed ^ 0x10D6);
    let nodes = [3, 5][picker.range(0, 2) as usize];
    let mut config = SimConfig::new(nodes, seed);
    config.net = NetConfig::unreliable();
    config.net.long_delay_rate = [0.02, 0.05][picker.range(0, 2) as usize];
    config.net.long_reordering = picker.chance(0.3);
    config.raft.pre_vote = picker.chance(0.5);
    config.raft.check_quorum = picker.chance(0.5);
    config.raft.lease_reads = config.raft.check_quorum && picker.chance(0.3);
    config.snapshot_every = [None, Some(10)][picker.range(0, 2) as usize];
    let mut sim = Sim::new(config);
    let mut next = 0;
    for _ in 0..30 {
        client_step(&mut sim, &mut next);
        match sim.random(0, 8) {
            0 | 1 => {
                let mut groups = vec![Vec::new(), Vec::new()];
                for slot in 0..nodes {
                    groups[sim.random(0, 2) as usize].push(slot);
                }
                sim.partition(&groups);
            }
            2 | 3 => sim.heal(),
            4 => {
                let slot = sim.random(0, nodes as u64) as usize;
                sim.restart(slot);
            }
            5 => {
                // Restart whoever leads: its earlier heartbeats may arrive after it leads again.
                if let Some(&(leader, _)) = sim.leaders().first() {
                    sim.restart(leader);
                }
            }
            _ => {}
        }
        let pause = sim.random(50, 600);
        sim.sleep(pause)?;
    }
    // Messages held back still arrive during the calm.
    calm_and_check(&mut sim)
}

seed_suite!(long_delays_on_requests, SEEDS, long_request_delays);

/// New fault: replays. The network keeps delivering random earlier messages of the run,
/// including those of earlier incarnations of restarted nodes, while leaders restart, the
/// cluster splits and clients read.
fn replayed_messages(seed: u64) -> Outcome {
    let mut picker = raft_core::rng::SplitMix64::new(seed ^ 0x4E91);
    let nodes = [3, 5][picker.range(0, 2) as usize];
    let mut config = SimConfig::new(nodes, seed);
    config.net.replay_rate = [0.01, 0.05][picker.range(0, 2) as usize];
    config.raft.pre_vote = picker.chance(0.5);
    config.raft.check_quorum = picker.chance(0.5);
    config.raft.lease_reads = config.raft.check_quorum && picker.chance(0.3);
    config.snapshot_every = [None, Some(10)][picker.range(0, 2) as usize];
    config.raft.snapshot_chunk_bytes = 64;
    let mut sim = Sim::new(config);
    let mut next = 0;
    for _ in 0..25 {
        for _ in 0..5 {
            client_step(&mut sim, &mut next);
            let pause = sim.random(5, 40);
            sim.sleep(pause)?;
        }
        match sim.random(0, 6) {
            0 | 1 => {
                // Restart whoever leads: its earlier incarnation's messages are in the record.
                if let Some(&(leader, _)) = sim.leaders().first() {
                    sim.restart(leader);
                }
            }
            2 => {
                let slot = sim.random(0, nodes as u64) as usize;
                let other = (slot + 1) % nodes;
                let rest: Vec<usize> = (0..nodes).filter(|&i| i != slot && i != other).collect();
                sim.partition(&[vec![slot, other], rest]);
            }
            3 => sim.heal(),
            _ => {}
        }
        let replays = sim.random(0, 20) as usize;
        sim.replay_random(replays);
    }
    calm_and_check(&mut sim)
}

seed_suite!(replayed_old_messages, SEEDS, replayed_messages);

/// The faults above are real: a deaf node hears nothing, a one-way cut passes one direction
/// only, a replay re-delivers an old message.
#[test]
fn new_faults_do_what_they_say() {
    let mut sim = Sim::new(SimConfig::new(3, 1));
    let leader = sim.check_one_leader().expect("a leader");
    let follower = (leader + 1) % 3;
    // The leader no longer hears the follower, but the follower still hears the leader.
    sim.cut_one_way(follower, leader);
    sim.sleep(500).expect("safe");
    assert_eq!(
        sim.node(follower).map(|n| n.leader_id()),
        Some(Some(leader as u64 + 1))
    );
    sim.heal();
    // A deaf follower stops hearing the leader and becomes a candidate (pre-vote off here
    // would raise its term; with pre-vote it stays a pre-candidate).
    sim.deafen(follower);
    sim.sleep(2_000).expect("safe");
    assert_ne!(
        sim.node(follower).map(|n| n.role()),
        Some(Role::Follower),
        "a deaf follower heard its leader"
    );
    sim.heal();
    let old = sim.recorded_messages(|m| m.from == leader as u64 + 1);
    assert!(!old.is_empty(), "the record holds the leader's messages");
    let id = sim.read(leader);
    sim.sleep(500).expect("safe");
    ensure_served(&sim, id);
}

fn ensure_served(sim: &Sim, id: u64) {
    assert!(
        matches!(sim.read_outcome(id), ReadOutcome::Served { .. }),
        "{:?}",
        sim.read_outcome(id)
    );
}
