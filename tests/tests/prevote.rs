//! Pre-vote and check-quorum suites: a node that was cut off does not disturb a healthy cluster
//! when it comes back, and a leader that lost its majority stops leading.

use raft_tests::{cmd, ensure, seed_suite, NetConfig, Sim, SimConfig};

const SEEDS: u64 = 200;

// An isolated follower keeps timing out for seconds; when it rejoins, the leader and every term
// stay exactly as they were.
seed_suite!(
    isolated_follower_rejoins_without_raising_terms,
    SEEDS,
    |seed| {
        let mut sim = Sim::new(SimConfig::new(5, seed));
        let leader = sim.check_one_leader()?;
        sim.one(cmd(1), 5, false)?;
        let term = sim.check_terms()?;
        let victim = (leader + 1 + sim.random(0, 4) as usize) % 5;
        sim.disconnect(victim);
        sim.sleep(5_000)?;
        ensure!(
            sim,
            sim.node(victim).is_some_and(|n| n.term() == term),
            "the isolated node raised its term from {term} to {:?}",
            sim.node(victim).map(|n| n.term())
        );
        sim.connect(victim);
        sim.one(cmd(2), 5, false)?;
        sim.sleep(2_000)?;
        ensure!(
            sim,
            sim.check_terms()? == term,
            "a term changed after the node rejoined"
        );
        ensure!(
            sim,
            sim.leaders() == vec![(leader, term)],
            "leadership changed: {:?}",
            sim.leaders()
        );
        Ok(())
    }
);

// On a lossy network, a minority partition (two followers that can never elect anyone) keeps
// its term while cut off, and the cluster makes progress once it rejoins. (The majority itself
// may change leaders on a lossy network, so only the minority's terms are checked.)
seed_suite!(minority_partition_keeps_its_term, SEEDS, |seed| {
    let mut config = SimConfig::new(5, seed);
    config.net = NetConfig::unreliable();
    let mut sim = Sim::new(config);
    let leader = sim.check_one_leader()?;
    sim.one(cmd(1), 5, true)?;
    let a = (leader + 1) % 5;
    let b = (leader + 2) % 5;
    let term_a = sim.node(a).map(|n| n.term());
    let term_b = sim.node(b).map(|n| n.term());
    let rest: Vec<usize> = (0..5).filter(|&i| i != a && i != b).collect();
    sim.partition(&[vec![a, b], rest]);
    sim.sleep(4_000)?;
    ensure!(
        sim,
        sim.node(a).map(|n| n.term()) == term_a && sim.node(b).map(|n| n.term()) == term_b,
        "the minority raised its terms: {:?} -> {:?}",
        (term_a, term_b),
        (sim.node(a).map(|n| n.term()), sim.node(b).map(|n| n.term()))
    );
    sim.heal();
    sim.one(cmd(2), 5, true)?;
    Ok(())
});

// A leader cut off from the majority steps down within two check-quorum windows, while the
// majority elects a new leader and keeps committing.
seed_suite!(partitioned_leader_steps_down, SEEDS, |seed| {
    let mut sim = Sim::new(SimConfig::new(5, seed));
    let old = sim.check_one_leader()?;
    let partner = (old + 1) % 5;
    let majority: Vec<usize> = (0..5).filter(|&i| i != old && i != partner).collect();
    sim.partition(&[vec![old, partner], majority]);
    let window = sim.config().tick_ms * u64::from(sim.config().raft.election_timeout_max);
    sim.sleep(2 * window + 50)?;
    ensure!(
        sim,
        sim.node(old).is_some_and(|n| !n.is_leader()),
        "the partitioned leader still leads after {} ms",
        2 * window + 50
    );
    ensure!(
        sim,
        sim.propose(old, cmd(7)).is_none(),
        "the partitioned leader accepted a proposal"
    );
    let index = sim.one(cmd(8), 3, true)?;
    sim.heal();
    sim.wait(index, 5, None)?;
    Ok(())
});
