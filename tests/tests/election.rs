//! Leader election suites (the labs' 2A tests), each over many seeds.

use raft_tests::{ensure, seed_suite, Sim, SimConfig};

const SEEDS: u64 = 200;

// TestInitialElection2A, stricter: with no faults the term must not change at all.
seed_suite!(initial_election, SEEDS, |seed| {
    let mut sim = Sim::new(SimConfig::new(3, seed));
    sim.check_one_leader()?;
    sim.sleep(50)?;
    let term1 = sim.check_terms()?;
    ensure!(sim, term1 >= 1, "term is {term1}, but should be at least 1");
    sim.sleep(2_000)?;
    let term2 = sim.check_terms()?;
    ensure!(
        sim,
        term1 == term2,
        "term changed from {term1} to {term2} with no failures"
    );
    sim.check_one_leader()?;
    Ok(())
});

// TestReElection2A.
seed_suite!(re_election, SEEDS, |seed| {
    let mut sim = Sim::new(SimConfig::new(3, seed));
    let leader1 = sim.check_one_leader()?;
    // The leader leaves: a new one is elected.
    sim.disconnect(leader1);
    sim.check_one_leader()?;
    // The old leader rejoins: it must not disturb the new leader.
    sim.connect(leader1);
    let leader2 = sim.check_one_leader()?;
    // No quorum: no leader may be elected.
    sim.disconnect(leader2);
    sim.disconnect((leader2 + 1) % 3);
    sim.sleep(2_000)?;
    sim.check_no_leader()?;
    // A quorum again: a leader is elected.
    sim.connect((leader2 + 1) % 3);
    sim.check_one_leader()?;
    // The last node rejoins: there is still a leader.
    sim.connect(leader2);
    sim.check_one_leader()?;
    Ok(())
});

// TestManyElections2A: 7 nodes, up to three disconnected at a time.
seed_suite!(many_elections, SEEDS, |seed| {
    let mut sim = Sim::new(SimConfig::new(7, seed));
    sim.check_one_leader()?;
    for _ in 0..10 {
        let picks: Vec<usize> = (0..3).map(|_| sim.random(0, 7) as usize).collect();
        for &i in &picks {
            sim.disconnect(i);
        }
        // Either the current leader survives or a new one is elected among the rest.
        sim.check_one_leader()?;
        for &i in &picks {
            sim.connect(i);
        }
    }
    sim.check_one_leader()?;
    Ok(())
});
