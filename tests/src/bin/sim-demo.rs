//! A guided tour of the protocol: a 5-node cluster in the deterministic simulator, under message
//! loss, a partition that isolates the leader, crashes of followers and of the leader. It prints
//! elections, commits, faults and the invariant checks as they happen, then a one-line summary.
//!
//! ```text
//! cargo run --release -p raft-tests --bin sim-demo -- --seed 7
//! ```

use clap::Parser;
use raft_tests::{cmd, Note, Outcome, Sim, SimConfig};

/// Command-line options of the demo.
#[derive(Parser, Debug)]
#[command(about = "Runs a 5-node Raft cluster in the deterministic simulator and narrates it")]
struct Options {
    /// Seed of the run; the same seed always tells the same story.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// Number of nodes.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u8).range(3..=9))]
    nodes: u8,
    /// Message loss rate while the network is lossy.
    #[arg(long, default_value_t = 0.1)]
    loss: f64,
}

struct Demo {
    sim: Sim,
    next_command: u64,
    last_reported_commit: u64,
}

impl Demo {
    fn say(&self, text: &str) {
        println!("[{:>8.3}s] {text}", self.sim.now() as f64 / 1000.0);
    }

    /// Runs for `duration` ms with a client proposing to the leader every 50 ms, narrating.
    fn run(&mut self, duration: u64) -> Outcome {
        let until = self.sim.now() + duration;
        while self.sim.now() < until {
            if let Some(&(leader, _)) = self.sim.leaders().first() {
                self.next_command += 1;
                let _ = self.sim.propose(leader, cmd(self.next_command));
            }
            self.sim.sleep(50)?;
            self.narrate();
        }
        Ok(())
    }

    fn narrate(&mut self) {
        let mut committed = None;
        for note in self.sim.take_notes() {
            match note {
                Note::Elected { at, node, term } => println!(
                    "[{:>8.3}s] node {node} won the election for term {term}",
                    at as f64 / 1000.0
                ),
                Note::Committed { index, .. } => committed = Some(index),
            }
        }
        if let Some(index) = committed {
            if index >= self.last_reported_commit + 20 {
                self.last_reported_commit = index;
                self.say(&format!(
                    "log committed up to index {index}; invariants hold after {} checks",
                    self.sim.checker().checks()
                ));
            }
        }
    }

    fn leader(&mut self) -> Outcome<usize> {
        let leader = self.sim.check_one_leader()?;
        self.narrate();
        Ok(leader)
    }
}

fn main() {
    raft_tests::seeds::init_tracing();
    let options = Options::parse();
    let nodes = usize::from(options.nodes);
    let mut config = SimConfig::new(nodes, options.seed);
    config.net.drop_rate = options.loss.clamp(0.0, 0.9);
    config.net.delay_ms = (0, 20);
    let mut sim = Sim::new(config);
    sim.set_narration(true);
    let mut demo = Demo {
        sim,
        next_command: 0,
        last_reported_commit: 0,
    };
    println!(
        "Simulating {nodes} Raft nodes (seed {}), {:.0}% message loss, 0-20 ms delays.",
        options.seed,
        options.loss * 100.0
    );
    match tour(&mut demo, nodes) {
        Ok(()) => {
            let sim = &demo.sim;
            let (_, events) = sim.trace_digest();
            println!(
                "summary: seed {} | {:.1}s simulated | {} events | {} elections | {} entries committed | {} messages | {} invariant checks | 0 violations",
                options.seed,
                sim.now() as f64 / 1000.0,
                events,
                sim.checker().leader_terms(),
                sim.checker().committed().len(),
                sim.stats().messages_sent,
                sim.checker().checks()
            );
        }
        Err(failure) => {
            println!("FAILED {failure}");
            println!(
                "summary: seed {} | FAILED | replay with: cargo run --release -p raft-tests --bin sim-demo -- --seed {}",
                options.seed, options.seed
            );
            std::process::exit(1);
        }
    }
}

fn tour(demo: &mut Demo, nodes: usize) -> Outcome {
    demo.say("all nodes start as followers; the first election timeout fires soon");
    let leader = demo.leader()?;
    demo.run(2_000)?;

    let minority: Vec<usize> = (0..nodes / 2).map(|k| (leader + k) % nodes).collect();
    let majority: Vec<usize> = (0..nodes).filter(|i| !minority.contains(i)).collect();
    demo.say(&format!(
        "FAULT: partition {:?} | {:?} (the leader, node {}, is in the minority)",
        ids(&minority),
        ids(&majority),
        leader + 1
    ));
    demo.sim.partition(&[minority.clone(), majority.clone()]);
    demo.run(3_000)?;
    let new_leader = demo.leader()?;
    demo.say(&format!(
        "the majority side is led by node {}; the old leader cannot commit anything",
        new_leader + 1
    ));

    demo.say("HEAL: the partition ends; the old leader steps down and catches up");
    demo.sim.heal();
    demo.run(2_000)?;

    let leader = demo.leader()?;
    let victims: Vec<usize> = (1..=(nodes - 1) / 2)
        .map(|k| (leader + k) % nodes)
        .collect();
    demo.say(&format!(
        "FAULT: crash followers {:?} (writes in progress are lost)",
        ids(&victims)
    ));
    for &v in &victims {
        demo.sim.crash(v);
    }
    demo.run(2_000)?;
    demo.say(&format!(
        "RESTART: {:?} come back from their disks and catch up",
        ids(&victims)
    ));
    for &v in &victims {
        demo.sim.restart(v);
    }
    demo.run(2_000)?;

    let leader = demo.leader()?;
    demo.say(&format!("FAULT: crash the leader, node {}", leader + 1));
    demo.sim.crash(leader);
    demo.run(3_000)?;
    demo.sim.restart(leader);
    demo.say(&format!(
        "RESTART: node {} rejoins as a follower",
        leader + 1
    ));
    demo.run(2_000)?;

    demo.say("the network calms down; final check that every node agrees");
    demo.sim.set_reliable(true);
    let index = demo.sim.one(cmd(u64::MAX), nodes, true)?;
    demo.narrate();
    demo.say(&format!(
        "all {nodes} nodes applied the same {index} entries, in the same order"
    ));
    Ok(())
}

fn ids(slots: &[usize]) -> Vec<usize> {
    slots.iter().map(|s| s + 1).collect()
}
