//! The KV service in the simulator: [`KvSim`] runs the real [`kv_service::KvService`] on every
//! node ([`KvSimService`]) and the real [`Clerk`] in every simulated client, over the
//! simulator's network with all its faults, and records every client operation in a
//! [`History`] for the [linearizability checker](crate::linearizability).
//!
//! ```
//! use kv_client::{OpOutput, Operation};
//! use raft_tests::kv::{KvConfig, KvSim};
//!
//! let mut kv = KvSim::new(KvConfig::new(3, 11));
//! let client = kv.add_client();
//! kv.run_op(client, Operation::put("k", "v"), 10_000).unwrap();
//! let got = kv.run_op(client, Operation::get("k"), 10_000).unwrap();
//! assert_eq!(got, OpOutput::Value(Some(b"v".to_vec())));
//! kv.check_linearizable().unwrap();
//! ```

pub mod lab;
mod service;

use std::collections::BTreeMap;

use kv_client::{
    Clerk, ClerkAction, ClerkConfig, ClerkError, OpId, OpOutput, Operation, RequestId,
};
use kv_service::{codec, ServiceConfig, WriteOp, WriteOutput};
use raft_core::NodeId;

pub use service::KvSimService;

use crate::harness::{Failure, Outcome};
use crate::linearizability::{self, CheckResult, History, Op, Output};
use crate::sim::{ClientId, Millis, Sim, SimConfig};

/// Parameters of a simulated KV cluster and its clients.
#[derive(Clone, Debug)]
pub struct KvConfig {
    /// The cluster (its `raft` part configures every node).
    pub sim: SimConfig,
    /// Every server's service configuration (its `raft` part is replaced per node).
    pub service: ServiceConfig,
    /// Every client's Clerk configuration (`servers` and `seed` are set per client).
    pub clerk: ClerkConfig,
}

impl KvConfig {
    /// `servers` servers with the simulator's defaults and the service's defaults (no
    /// snapshots), Clerks with a 300 ms request timeout and backoff from 10 to 300 ms.
    pub fn new(servers: usize, seed: u64) -> Self {
        let sim = SimConfig::new(servers, seed);
        let service = ServiceConfig::new(sim.raft.clone());
        let clerk = ClerkConfig {
            request_timeout_ms: 300,
            backoff_min_ms: 10,
            backoff_max_ms: 300,
            ..ClerkConfig::new((1..=servers as NodeId).collect())
        };
        Self {
            sim,
            service,
            clerk,
        }
    }
}

/// One simulated client: a Clerk and what it was asked.
struct SimClient {
    clerk: Clerk,
    /// The simulator's id of each transmission still expecting a reply, to the Clerk's.
    wire: BTreeMap<u64, RequestId>,
    /// Operations submitted and not finished: their history entry (if recorded) and the op.
    pending: BTreeMap<OpId, (Option<linearizability::OpId>, Operation)>,
    /// Finished operations not yet taken.
    finished: BTreeMap<OpId, Result<OpOutput, ClerkError>>,
    next_op: OpId,
}

/// Transmissions remembered per client before the oldest is forgotten (its reply, if it ever
/// comes, is dropped as a transport would drop a reply to a closed stream).
const WIRE_MEMORY: usize = 4_096;

/// A simulated KV cluster with simulated clients; see the [module docs](self).
pub struct KvSim {
    /// The simulator (faults, crashes, partitions, time).
    pub sim: Sim,
    config: KvConfig,
    clients: Vec<SimClient>,
    history: History,
    /// Logical time of the history: increases with every invocation and completion, so the
    /// real-time order of the harness's events is kept exactly.
    clock: u64,
    /// A failure the harness found (a Clerk answer the operation cannot have).
    harness_failure: Option<String>,
}

impl KvSim {
    /// Starts the cluster, every node running the KV service.
    pub fn new(config: KvConfig) -> Self {
        let factory = KvSimService::factory(config.service.clone(), config.sim.raft.clone());
        let sim = Sim::with_service(config.sim.clone(), factory);
        Self {
            sim,
            config,
            clients: Vec::new(),
            history: History::new(),
            clock: 0,
            harness_failure: None,
        }
    }

    /// Adds a client (a Clerk over every server, reaching every server); returns its number.
    pub fn add_client(&mut self) -> ClientId {
        let client = self.sim.add_client();
        let mut config = self.config.clerk.clone();
        config.seed = self
            .config
            .sim
            .seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(client as u64 + 1);
        // A config built from `KvConfig` is valid; a test that breaks it learns at once.
        let clerk = Clerk::new(config).expect("valid Clerk configuration");
        self.clients.push(SimClient {
            clerk,
            wire: BTreeMap::new(),
            pending: BTreeMap::new(),
            finished: BTreeMap::new(),
            next_op: 1,
        });
        client
    }

    /// Number of clients.
    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    /// The Clerk of `client`.
    pub fn clerk(&self, client: ClientId) -> &Clerk {
        &self.clients[client].clerk
    }

    /// Submits `op` for `client` now; it is recorded in the history. Returns its id.
    pub fn submit(&mut self, client: ClientId, op: Operation) -> OpId {
        self.submit_with(client, op, true)
    }

    /// Submits `op`, recording it in the history only if `record`.
    pub fn submit_with(&mut self, client: ClientId, op: Operation, record: bool) -> OpId {
        let now = self.sim.now();
        let time = self.tick_clock();
        let c = &mut self.clients[client];
        let id = c.next_op;
        c.next_op += 1;
        let entry = record.then(|| self.history.invoke(client as u64, time, to_model(&op)));
        let c = &mut self.clients[client];
        // Ids come from `next_op` and are never reused.
        c.clerk
            .submit(now, id, op.clone())
            .expect("fresh operation id");
        c.pending.insert(id, (entry, op));
        self.pump(client);
        id
    }

    /// The outcome of `client`'s operation `op`, once it finished (taken: asked once).
    pub fn take_outcome(
        &mut self,
        client: ClientId,
        op: OpId,
    ) -> Option<Result<OpOutput, ClerkError>> {
        self.clients[client].finished.remove(&op)
    }

    /// Whether `client`'s operation `op` is still running.
    pub fn is_pending(&self, client: ClientId, op: OpId) -> bool {
        self.clients[client].pending.contains_key(&op)
    }

    /// Runs until `client`'s operation `op` finishes, at most `budget_ms`.
    pub fn wait(
        &mut self,
        client: ClientId,
        op: OpId,
        budget_ms: Millis,
    ) -> Outcome<Result<OpOutput, ClerkError>> {
        let until = self.sim.now() + budget_ms;
        loop {
            if let Some(outcome) = self.take_outcome(client, op) {
                return Ok(outcome);
            }
            self.sim.check_safety()?;
            if self.sim.now() >= until {
                return Err(self.failure(format!(
                    "client {client}'s operation {op} did not finish within {budget_ms} ms"
                )));
            }
            self.step();
        }
    }

    /// Submits `op` for `client` and waits for it (at most `budget_ms`); a definite failure
    /// is a failed check.
    pub fn run_op(
        &mut self,
        client: ClientId,
        op: Operation,
        budget_ms: Millis,
    ) -> Outcome<OpOutput> {
        let id = self.submit(client, op.clone());
        match self.wait(client, id, budget_ms)? {
            Ok(output) => Ok(output),
            Err(error) => Err(self.failure(format!("{op:?} by client {client} failed: {error}"))),
        }
    }

    /// Gets `key` through `client` (recorded), at most `budget_ms`.
    pub fn get(
        &mut self,
        client: ClientId,
        key: &str,
        budget_ms: Millis,
    ) -> Outcome<Option<Vec<u8>>> {
        self.get_with(client, key, budget_ms, true)
    }

    /// Gets `key` through `client`, recorded in the history only if `record` (a key whose
    /// writes are not recorded must not have recorded reads).
    pub fn get_with(
        &mut self,
        client: ClientId,
        key: &str,
        budget_ms: Millis,
        record: bool,
    ) -> Outcome<Option<Vec<u8>>> {
        let id = self.submit_with(client, Operation::get(key), record);
        match self.wait(client, id, budget_ms)? {
            Ok(OpOutput::Value(value)) => Ok(value),
            other => Err(self.failure(format!(
                "Get({key}) by client {client} ended with {other:?}"
            ))),
        }
    }

    /// Runs the cluster and the clients for `duration` simulated milliseconds.
    pub fn run_for(&mut self, duration: Millis) {
        let until = self.sim.now() + duration;
        while self.sim.now() < until && self.sim.violation().is_none() {
            self.step();
        }
    }

    /// One simulated millisecond: the network and nodes run, replies reach the Clerks, due
    /// Clerks tick, and whatever they send leaves.
    pub fn step(&mut self) {
        self.sim.run_for(1);
        let now = self.sim.now();
        for reply in self.sim.take_client_replies() {
            let Some(c) = self.clients.get_mut(reply.client) else {
                continue;
            };
            if let Some(request) = c.wire.remove(&reply.id) {
                c.clerk.on_reply_bytes(now, request, &reply.reply);
            }
        }
        for client in 0..self.clients.len() {
            let c = &mut self.clients[client];
            if c.clerk.next_deadline().is_some_and(|at| at <= now) {
                c.clerk.tick(now);
            }
            self.pump(client);
        }
    }

    /// Carries out `client`'s Clerk actions: transmissions leave, outcomes are recorded.
    fn pump(&mut self, client: ClientId) {
        let actions = self.clients[client].clerk.take_actions();
        for action in actions {
            match action {
                ClerkAction::Send {
                    request,
                    server,
                    message,
                } => {
                    let slot = server.saturating_sub(1) as usize;
                    let id = self.sim.client_send(client, slot, codec::encode(&message));
                    let wire = &mut self.clients[client].wire;
                    wire.insert(id, request);
                    if wire.len() > WIRE_MEMORY {
                        wire.pop_first();
                    }
                }
                ClerkAction::Completed { op, output } => {
                    let time = self.tick_clock();
                    let c = &mut self.clients[client];
                    let Some((entry, operation)) = c.pending.remove(&op) else {
                        continue;
                    };
                    c.finished.insert(op, Ok(output.clone()));
                    if let Some(entry) = entry {
                        let result = self.history.complete(entry, time, to_output(&output));
                        if let Err(error) = result {
                            let message = format!(
                                "client {client}: {operation:?} answered {output:?}: {error}"
                            );
                            self.sim_fail(message);
                        }
                    }
                }
                ClerkAction::Failed { op, error } => {
                    let c = &mut self.clients[client];
                    let Some((entry, _)) = c.pending.remove(&op) else {
                        continue;
                    };
                    c.finished.insert(op, Err(error));
                    if let Some(entry) = entry {
                        // Whether it took effect is unknown (or it certainly did not, which
                        // the checker's "unknown" covers too).
                        let _ = self.history.unknown(entry);
                    }
                }
            }
        }
    }

    fn tick_clock(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn sim_fail(&mut self, message: String) {
        self.harness_failure.get_or_insert(message);
    }

    // ----- Checks -----

    /// A failure at the current time (a safety violation or a harness failure first).
    pub fn failure(&self, message: String) -> Failure {
        match &self.harness_failure {
            Some(first) => self.sim.failure(format!("{first} (then: {message})")),
            None => self.sim.failure(message),
        }
    }

    /// The history recorded so far.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Checks the recorded history for linearizability (and the run for safety violations).
    pub fn check_linearizable(&self) -> Outcome {
        self.sim.check_safety()?;
        if let Some(message) = &self.harness_failure {
            return Err(self.failure(message.clone()));
        }
        let started = std::time::Instant::now();
        let (result, stats) = linearizability::check_with_stats(&self.history, None);
        tracing::info!(
            operations = self.history.len(),
            keys = stats.keys,
            steps = stats.steps,
            max_key_steps = stats.max_key_steps,
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "linearizability check"
        );
        match result {
            CheckResult::Ok => Ok(()),
            CheckResult::Illegal(violation) => Err(self.failure(format!(
                "history of {} operations is not linearizable: {violation}",
                self.history.len()
            ))),
            CheckResult::Timeout { keys } => Err(self.failure(format!(
                "the linearizability check ran out of steps on {} keys",
                keys.len()
            ))),
        }
    }

    /// Checks that every running server that applied as far as the others holds the same
    /// state (snapshot bytes) as every other at that index.
    pub fn check_replicas_agree(&self) -> Outcome {
        let mut states: BTreeMap<u64, (usize, Vec<u8>)> = BTreeMap::new();
        for slot in 0..self.sim.len() {
            let Some(kv) = self.sim.service::<KvSimService>(slot) else {
                continue;
            };
            let machine = kv.service().machine();
            let bytes = machine.snapshot();
            match states.get(&machine.applied_index()) {
                Some((other, theirs)) if *theirs != bytes => {
                    return Err(self.failure(format!(
                        "servers {} and {} hold different states at index {}",
                        other + 1,
                        slot + 1,
                        machine.applied_index()
                    )));
                }
                Some(_) => {}
                None => {
                    states.insert(machine.applied_index(), (slot, bytes));
                }
            }
        }
        Ok(())
    }

    /// The largest persisted Raft state (hard state and log) of any server, in bytes (the
    /// labs' `LogSize`).
    pub fn log_size(&self) -> u64 {
        self.sim.log_size()
    }

    /// The largest stored snapshot of any server, in bytes (the labs' `SnapshotSize`).
    pub fn snapshot_size(&self) -> u64 {
        (0..self.sim.len())
            .map(|slot| {
                self.sim
                    .disk(slot)
                    .snapshot
                    .as_ref()
                    .map_or(0, |s| s.data.len() as u64)
            })
            .max()
            .unwrap_or(0)
    }
}

/// The checker's model of a Clerk operation.
pub fn to_model(op: &Operation) -> Op {
    match op {
        Operation::Get { key } => Op::get(key),
        Operation::Write(WriteOp::Put { key, value }) => Op::put(key, value),
        Operation::Write(WriteOp::Append { key, value }) => Op::append(key, value),
        Operation::Write(WriteOp::Delete { key }) => Op::delete(key),
        Operation::Write(WriteOp::CompareAndSwap { key, expected, new }) => {
            Op::cas(key, expected.as_deref(), new)
        }
    }
}

/// The checker's model of a Clerk's answer.
pub fn to_output(output: &OpOutput) -> Output {
    match output {
        OpOutput::Value(value) => Output::Value(value.clone()),
        OpOutput::Written(WriteOutput::Done) => Output::Ok,
        OpOutput::Written(WriteOutput::Deleted { existed }) => Output::Deleted(*existed),
        OpOutput::Written(WriteOutput::Swapped { swapped, previous }) => {
            Output::cas(*swapped, previous.as_deref())
        }
    }
}
