//! Log compaction and InstallSnapshot suites: the labs' 2D tests, plus snapshots spanning many
//! chunks under loss and reordering, and followers crashing while they receive one.
//!
//! Every node's service snapshots its state every `SNAPSHOT_INTERVAL` applied entries (as the
//! labs' tester does) and the checker verifies, at every apply and every snapshot install or
//! restart, that the service's state equals the committed log applied from the start.

use raft_core::progress::ReplicationState;
use raft_tests::{cmd, ensure, seed_suite, NetConfig, Outcome, Sim, SimConfig};

const SEEDS: u64 = 100;
/// The labs' `SnapShotInterval`.
const SNAPSHOT_INTERVAL: u64 = 10;
/// The labs' `MAXLOGSIZE`: the persisted Raft state (snapshot excluded) must stay below it.
const MAX_LOG_SIZE: u64 = 2000;

fn snapshot_config(nodes: usize, seed: u64, reliable: bool) -> SimConfig {
    let mut config = SimConfig::new(nodes, seed);
    config.snapshot_every = Some(SNAPSHOT_INTERVAL);
    if !reliable {
        config.net = NetConfig::unreliable();
    }
    config
}

fn check_log_size(sim: &Sim) -> Outcome {
    let size = sim.log_size();
    ensure!(
        sim,
        size < MAX_LOG_SIZE,
        "Log size too large: {size} bytes (limit {MAX_LOG_SIZE})"
    );
    Ok(())
}

/// The labs' `snapcommon`: 30 rounds in which a victim (a follower, or every third round the
/// leader) is disconnected or crashed while the others commit 5-14 more entries and compact;
/// when it returns it must catch up, through InstallSnapshot when it is too far behind.
fn snapcommon(seed: u64, disconnect: bool, reliable: bool, crash: bool) -> Outcome {
    let mut sim = Sim::new(snapshot_config(3, seed, reliable));
    let value = sim.random_command();
    sim.one(value, 3, true)?;
    let mut leader = sim.check_one_leader()?;
    for round in 0..30 {
        let (mut victim, mut sender) = ((leader + 1) % 3, leader);
        if round % 3 == 1 {
            std::mem::swap(&mut victim, &mut sender);
        }
        if disconnect {
            sim.disconnect(victim);
            let value = sim.random_command();
            sim.one(value, 2, true)?;
        }
        if crash {
            sim.crash(victim);
            let value = sim.random_command();
            sim.one(value, 2, true)?;
        }
        // Raw proposals at the sender, which may or may not lead.
        let count = SNAPSHOT_INTERVAL / 2 + sim.random(0, SNAPSHOT_INTERVAL);
        for _ in 0..count {
            let value = sim.random_command();
            sim.propose(sender, value);
        }
        let value = sim.random_command();
        let expected = if disconnect || crash { 2 } else { 3 };
        sim.one(value, expected, true)?;
        check_log_size(&sim)?;
        if disconnect {
            sim.connect(victim);
            let value = sim.random_command();
            sim.one(value, 3, true)?;
            leader = sim.check_one_leader()?;
        }
        if crash {
            sim.restart(victim);
            sim.connect(victim);
            let value = sim.random_command();
            sim.one(value, 3, true)?;
            leader = sim.check_one_leader()?;
        }
    }
    Ok(())
}

// TestSnapshotBasic2D.
seed_suite!(snapshot_basic, SEEDS, |seed| snapcommon(
    seed, false, true, false
));
// TestSnapshotInstall2D.
seed_suite!(snapshot_install, SEEDS, |seed| snapcommon(
    seed, true, true, false
));
// TestSnapshotInstallUnreliable2D.
seed_suite!(snapshot_install_unreliable, SEEDS, |seed| snapcommon(
    seed, true, false, false
));
// TestSnapshotInstallCrash2D.
seed_suite!(snapshot_install_crash, SEEDS, |seed| snapcommon(
    seed, false, true, true
));
// TestSnapshotInstallUnCrash2D.
seed_suite!(snapshot_install_uncrash, SEEDS, |seed| snapcommon(
    seed, false, false, true
));

/// Crashes and restarts every node.
fn restart_all(sim: &mut Sim) {
    for slot in 0..sim.len() {
        sim.restart(slot);
        sim.connect(slot);
    }
}

// TestSnapshotAllCrash2D: after a whole-cluster crash the log must continue where it was.
seed_suite!(snapshot_all_crash, SEEDS, |seed| {
    let mut sim = Sim::new(snapshot_config(3, seed, true));
    let value = sim.random_command();
    sim.one(value, 3, true)?;
    for _ in 0..5 {
        let count = SNAPSHOT_INTERVAL / 2 + sim.random(0, SNAPSHOT_INTERVAL);
        for _ in 0..count {
            let value = sim.random_command();
            sim.one(value, 3, true)?;
        }
        let value = sim.random_command();
        let index1 = sim.one(value, 3, true)?;
        restart_all(&mut sim);
        let value = sim.random_command();
        let index2 = sim.one(value, 3, true)?;
        ensure!(
            sim,
            index2 > index1,
            "index decreased from {index1} to {index2}"
        );
    }
    Ok(())
});

// TestSnapshotInit2D: a restarted node must keep its snapshot across further restarts.
seed_suite!(snapshot_init, SEEDS, |seed| {
    let mut sim = Sim::new(snapshot_config(3, seed, true));
    let value = sim.random_command();
    sim.one(value, 3, true)?;
    for _ in 0..=SNAPSHOT_INTERVAL {
        let value = sim.random_command();
        sim.one(value, 3, true)?;
    }
    restart_all(&mut sim);
    let value = sim.random_command();
    sim.one(value, 3, true)?;
    for slot in 0..3 {
        ensure!(
            sim,
            sim.disk(slot).snapshot.is_some(),
            "node {} lost its snapshot across a restart",
            slot + 1
        );
    }
    restart_all(&mut sim);
    let value = sim.random_command();
    sim.one(value, 3, true)?;
    Ok(())
});

/// Disconnects `victim`, commits enough for the others to compact past it, and reconnects it.
fn leave_behind(sim: &mut Sim, victim: usize, entries: u64) -> Outcome {
    sim.disconnect(victim);
    for _ in 0..entries {
        let value = sim.random_command();
        sim.one(value, sim.len() - 1, true)?;
    }
    let leader = sim.check_one_leader()?;
    let snapshot_index = sim.node(leader).map_or(0, |n| n.log().snapshot_index());
    let victim_last = sim.node(victim).map_or(0, |n| n.log().last_index());
    ensure!(
        sim,
        snapshot_index > victim_last,
        "the leader compacted only to {snapshot_index}, not past the victim's log end {victim_last}"
    );
    sim.connect(victim);
    Ok(())
}

// A snapshot of many chunks (about 200 KiB in 4 KiB chunks) to a follower far behind, on the
// labs' unreliable network (loss, duplication, reordering) with 5 nodes.
seed_suite!(large_snapshot_unreliable, SEEDS, |seed| {
    let mut config = snapshot_config(5, seed, false);
    config.snapshot_padding = 200 * 1024 + sim_offset(seed);
    config.raft.snapshot_chunk_bytes = 4 * 1024;
    let mut sim = Sim::new(config);
    sim.one(cmd(1), 5, true)?;
    let leader = sim.check_one_leader()?;
    let victim = (leader + 1) % 5;
    leave_behind(&mut sim, victim, 3 * SNAPSHOT_INTERVAL)?;
    let index = sim.one(cmd(2), 5, true)?;
    let caught_up = sim.node(victim).map_or(0, |n| n.applied_index());
    ensure!(
        sim,
        caught_up >= index,
        "victim applied only up to {caught_up}"
    );
    Ok(())
});

/// A chunk count that varies with the seed, so the last chunk is sometimes short, sometimes
/// full.
fn sim_offset(seed: u64) -> usize {
    (seed % 7) as usize * 1000
}

// A follower that crashes in the middle of receiving a snapshot (after some chunks but before
// the last) restarts with nothing of it and must still catch up; then the same with the crash
// aimed at its write of the snapshot.
seed_suite!(follower_crash_mid_snapshot, SEEDS, |seed| {
    let mut config = snapshot_config(3, seed, true);
    config.snapshot_padding = 64 * 1024;
    config.raft.snapshot_chunk_bytes = 2 * 1024;
    config.disk_latency_ms = (1, 5);
    let mut sim = Sim::new(config);
    sim.one(cmd(1), 3, true)?;
    let leader = sim.check_one_leader()?;
    let victim = (leader + 1) % 3;
    leave_behind(&mut sim, victim, 2 * SNAPSHOT_INTERVAL)?;
    // Wait for the transfer to be under way, then crash the victim.
    let mut crashed = false;
    for _ in 0..2_000 {
        sim.sleep(1)?;
        let under_way = sim
            .node(leader)
            .and_then(|n| n.progress(victim as u64 + 1))
            .is_some_and(|p| {
                p.state == ReplicationState::Snapshot
                    && p.snapshot_transfer()
                        .is_some_and(|t| t.next_offset > 4 * 1024)
            });
        if under_way {
            sim.crash(victim);
            crashed = true;
            break;
        }
    }
    ensure!(sim, crashed, "the snapshot transfer never got under way");
    let pause = sim.random(0, 300);
    sim.sleep(pause)?;
    sim.restart(victim);
    let index = sim.one(cmd(2), 3, true)?;
    sim.wait(index, 3, None)?;
    // Again, with crashes aimed at the victim's writes while it installs.
    let victim = (sim.check_one_leader()? + 1) % 3;
    leave_behind(&mut sim, victim, 2 * SNAPSHOT_INTERVAL)?;
    sim.set_crash_during_write(0.3);
    sim.sleep(2_000)?;
    sim.set_crash_during_write(0.0);
    for slot in 0..3 {
        if !sim.is_alive(slot) {
            sim.restart(slot);
        }
    }
    let index = sim.one(cmd(3), 3, true)?;
    sim.wait(index, 3, None)?;
    Ok(())
});
