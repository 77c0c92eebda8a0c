//! # raft-tests: a deterministic simulator for raft-core
//!
//! [`Sim`] runs a cluster of [`raft_core::RaftNode`]s in simulated time, with one seeded random
//! generator behind every choice: message loss, delay, duplication and reordering, partitions,
//! disks whose writes take time, and crashes that keep only what had become durable. After every
//! step it checks Raft's safety invariants ([`invariants`]). The lab-style helpers in
//! [`harness`] (`check_one_leader`, `one`, `n_committed`, ...) express the MIT 6.5840 tests, and
//! [`seeds`] runs a scenario over many seeds, printing the seed and a replay command for any
//! failure.
//!
//! ```
//! use raft_tests::{cmd, Sim, SimConfig};
//! let mut sim = Sim::new(SimConfig::new(5, 42));
//! let leader = sim.check_one_leader().unwrap();
//! sim.disconnect(leader);
//! sim.one(cmd(7), 4, true).unwrap(); // the other four agree without the old leader
//! sim.connect(leader);
//! sim.one(cmd(8), 5, true).unwrap(); // and the old leader catches up
//! ```
#![deny(missing_docs)]

pub mod harness;
pub mod invariants;
pub mod kv;
pub mod linearizability;
pub mod network;
pub mod seeds;
pub mod service;
pub mod sim;

pub use harness::{cmd, Failure, Outcome};
pub use network::{NetConfig, NetStats, Topology};
pub use service::{ServiceFactory, SimService, ToyService, ToyState};
pub use sim::{ClientId, ClientReply, DriverMode, Millis, Note, ReadOutcome, Sim, SimConfig};
