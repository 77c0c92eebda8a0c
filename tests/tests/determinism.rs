//! The simulator is deterministic: a seed fully determines the run.

use raft_tests::{cmd, NetConfig, Outcome, Sim, SimConfig};

/// A busy scenario touching every source of randomness: lossy network with duplication and
/// long reordering, disk latency, crashes, restarts and partitions.
fn busy_run(seed: u64) -> Outcome<Sim> {
    let mut config = SimConfig::new(5, seed);
    config.net = NetConfig::unreliable();
    config.net.long_reordering = true;
    let mut sim = Sim::new(config);
    for round in 0..30u64 {
        if let Some(&(leader, _)) = sim.leaders().first() {
            for k in 0..3 {
                sim.propose(leader, cmd(round * 10 + k));
            }
        }
        match sim.random(0, 4) {
            0 => {
                let i = sim.random(0, 5) as usize;
                sim.restart(i);
            }
            1 => {
                let a = sim.random(0, 5) as usize;
                sim.partition(&[
                    vec![a, (a + 1) % 5],
                    vec![(a + 2) % 5, (a + 3) % 5, (a + 4) % 5],
                ]);
            }
            2 => sim.heal(),
            _ => {}
        }
        sim.sleep(300)?;
    }
    Ok(sim)
}

#[test]
fn same_seed_gives_the_same_event_trace() {
    for seed in [1, 2, 99] {
        let a = busy_run(seed).expect("run a");
        let b = busy_run(seed).expect("run b");
        assert_eq!(a.trace_digest(), b.trace_digest(), "seed {seed}");
        assert_eq!(
            a.stats().messages_sent,
            b.stats().messages_sent,
            "seed {seed}"
        );
        for i in 0..5 {
            assert_eq!(a.disk(i), b.disk(i), "seed {seed}: disk of node {}", i + 1);
        }
        assert!(a.trace_digest().1 > 1000, "the scenario should be busy");
    }
}

#[test]
fn different_seeds_give_different_traces() {
    let a = busy_run(5).expect("run a");
    let b = busy_run(6).expect("run b");
    assert_ne!(a.trace_digest(), b.trace_digest());
}
