//! Lab-style helpers on [`Sim`]: the checks the MIT 6.5840 tester performs, with its bounds,
//! in simulated time.

use raft_core::{LogIndex, Term};

use crate::sim::{Millis, Sim};

/// A failed check: what went wrong and when (simulated milliseconds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Simulated time of the failure.
    pub at: Millis,
    /// What went wrong.
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at t={}ms: {}", self.at, self.message)
    }
}

impl std::error::Error for Failure {}

/// The result of a scenario or check.
pub type Outcome<T = ()> = Result<T, Failure>;

/// Fails the enclosing scenario with a formatted message unless `cond` holds.
#[macro_export]
macro_rules! ensure {
    ($sim:expr, $cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err($sim.failure(format!($($fmt)+)));
        }
    };
}

/// How long `check_one_leader` waits in all: the labs' 10 polls of 450-549 ms.
pub const LEADER_POLLS: usize = 10;
/// Budget of [`Sim::one`], as in the labs.
pub const ONE_TIMEOUT_MS: Millis = 10_000;

impl Sim {
    /// A failure at the current time (reporting a safety violation first, if there is one).
    pub fn failure(&self, message: String) -> Failure {
        let message = match self.violation() {
            Some(violation) => format!("{violation} (while checking: {message})"),
            None => message,
        };
        Failure {
            at: self.now(),
            message,
        }
    }

    /// Fails if a safety invariant has been violated.
    pub fn check_safety(&self) -> Outcome {
        match self.violation() {
            Some(v) => Err(Failure {
                at: self.now(),
                message: v.to_string(),
            }),
            None => Ok(()),
        }
    }

    /// Runs for `duration` and then checks safety.
    pub fn sleep(&mut self, duration: Millis) -> Outcome {
        self.run_for(duration);
        self.check_safety()
    }

    /// Waits (up to about 5 s, polling like the labs) for a connected leader; returns the slot of
    /// the leader with the highest term. Two leaders in one term are caught by the checker.
    pub fn check_one_leader(&mut self) -> Outcome<usize> {
        for _ in 0..LEADER_POLLS {
            let pause = self.random(450, 550);
            self.sleep(pause)?;
            if let Some(&(slot, _)) = self.leaders().iter().max_by_key(|(_, term)| *term) {
                return Ok(slot);
            }
        }
        Err(self.failure(format!(
            "expected one leader, got none [{}]",
            self.describe()
        )))
    }

    /// Checks that every running, connected node has the same term, and returns it.
    pub fn check_terms(&self) -> Outcome<Term> {
        let mut term = None;
        for slot in 0..self.len() {
            let Some(node) = self.node(slot).filter(|_| self.is_connected(slot)) else {
                continue;
            };
            match term {
                None => term = Some(node.term()),
                Some(t) if t != node.term() => {
                    return Err(self.failure("servers disagree on term".into()))
                }
                Some(_) => {}
            }
        }
        term.ok_or_else(|| self.failure("no connected server to ask for its term".into()))
    }

    /// Fails if any running, connected node claims to lead.
    pub fn check_no_leader(&self) -> Outcome {
        match self.leaders().first() {
            Some(&(slot, term)) => Err(self.failure(format!(
                "expected no leader among connected servers, but node {} claims to lead term {term}",
                slot + 1
            ))),
            None => Ok(()),
        }
    }

    /// How many nodes have applied an entry at `index`, and its command (`None` for a no-op).
    pub fn n_committed(&self, index: LogIndex) -> Outcome<(usize, Option<Vec<u8>>)> {
        self.check_safety()?;
        let mut count = 0;
        let mut command = None;
        for slot in 0..self.len() {
            if let Some(entry) = self.applied(slot, index) {
                let this = entry.command().map(<[u8]>::to_vec);
                if count > 0 && this != command {
                    return Err(
                        self.failure(format!("committed values do not match at index {index}"))
                    );
                }
                command = this;
                count += 1;
            }
        }
        Ok((count, command))
    }

    /// The highest term of any running node.
    pub fn max_term(&self) -> Term {
        (0..self.len())
            .filter_map(|slot| self.node(slot).map(|n| n.term()))
            .max()
            .unwrap_or(0)
    }

    /// Waits (about 30 s at most, with the labs' doubling polls) for `n` nodes to apply `index`;
    /// returns the command, or `None` if some node moved past `start_term` meanwhile.
    pub fn wait(
        &mut self,
        index: LogIndex,
        n: usize,
        start_term: Option<Term>,
    ) -> Outcome<Option<Vec<u8>>> {
        let mut pause = 10;
        for _ in 0..30 {
            let (count, _) = self.n_committed(index)?;
            if count >= n {
                break;
            }
            self.sleep(pause)?;
            if pause < 1000 {
                pause *= 2;
            }
            if let Some(term) = start_term {
                if self.max_term() > term {
                    return Ok(None);
                }
            }
        }
        let (count, command) = self.n_committed(index)?;
        if count < n {
            return Err(self.failure(format!(
                "only {count} decided for index {index}; wanted {n}"
            )));
        }
        Ok(command)
    }

    /// The labs' `one()`: submits `command` to a leader (trying connected nodes round robin) and
    /// waits up to 2 s for `expected` nodes to apply it, within an overall 10 s budget. With
    /// `retry` it resubmits after a failed wait. Returns the index.
    pub fn one(&mut self, command: Vec<u8>, expected: usize, retry: bool) -> Outcome<LogIndex> {
        let started = self.now();
        let mut start = self.random(0, self.len() as u64) as usize;
        while self.now() - started < ONE_TIMEOUT_MS {
            let mut index = None;
            for _ in 0..self.len() {
                start = (start + 1) % self.len();
                if self.is_connected(start) {
                    if let Some((i, _)) = self.propose(start, command.clone()) {
                        index = Some(i);
                        break;
                    }
                }
            }
            if let Some(index) = index {
                let submitted = self.now();
                while self.now() - submitted < 2_000 {
                    let (count, applied) = self.n_committed(index)?;
                    if count > 0 && count >= expected && applied.as_deref() == Some(&command[..]) {
                        return Ok(index);
                    }
                    self.sleep(20)?;
                }
                if !retry {
                    return Err(self.failure(format!(
                        "one({}) failed to reach agreement [{}]",
                        describe(&command),
                        self.describe()
                    )));
                }
            } else {
                self.sleep(50)?;
            }
        }
        Err(self.failure(format!(
            "one({}) failed to reach agreement within {} ms [{}]",
            describe(&command),
            ONE_TIMEOUT_MS,
            self.describe()
        )))
    }
}

impl Sim {
    /// Once the network has calmed (healed and reliable), no read may wait forever: runs for
    /// `within` and fails if a read requested before now, at a node still running in the
    /// incarnation asked, is still unanswered (neither served nor failed).
    pub fn check_reads_settle(&mut self, within: Millis) -> Outcome {
        let asked_by = self.now();
        self.sleep(within)?;
        let stuck = self.unsettled_reads(asked_by);
        if !stuck.is_empty() {
            return Err(self.failure(format!(
                "reads {stuck:?} still unanswered {within} ms after the network calmed [{}]",
                self.describe()
            )));
        }
        Ok(())
    }
}

fn describe(command: &[u8]) -> String {
    match <[u8; 8]>::try_from(command) {
        Ok(bytes) => u64::from_le_bytes(bytes).to_string(),
        Err(_) => format!("<{} bytes>", command.len()),
    }
}

/// Encodes a number as an 8-byte command, the way the suites name commands.
pub fn cmd(value: u64) -> Vec<u8> {
    value.to_le_bytes().to_vec()
}

impl Sim {
    /// A random 8-byte command from the simulation's generator (the labs' `rand.Int()`).
    pub fn random_command(&mut self) -> Vec<u8> {
        cmd(self.random(0, 1 << 60))
    }
}
