//! Runs a scenario over many seeds and reports failing seeds with a replay command.
//!
//! Environment variables:
//! - `RAFT_SEEDS`: how many seeds per suite (default: the suite's own, at least 200 in CI).
//! - `RAFT_SEED_START`: first seed (default 0), to soak new ground.
//! - `RAFT_SEED`: run exactly this one seed (replay).
//! - `RAFT_THREADS`: worker threads per suite (default 1; the test harness already runs
//!   suites in parallel).
//! - `RAFT_FAIL_FAST=1`: stop a suite at its first failing seed (for mutation runs).
//! - `RUST_LOG`: log level; `debug` prints the simulator's event trace.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use crate::harness::Outcome;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Installs a tracing subscriber reading `RUST_LOG` (once per process).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// The seeds a suite runs, from the environment or `default_count`.
pub fn seeds(default_count: u64) -> Vec<u64> {
    if let Some(seed) = env_u64("RAFT_SEED") {
        return vec![seed];
    }
    let count = env_u64("RAFT_SEEDS").unwrap_or(default_count);
    let start = env_u64("RAFT_SEED_START").unwrap_or(0);
    (start..start.saturating_add(count)).collect()
}

/// Runs `scenario` once per seed. Panics (failing the test) if any seed fails, listing up to
/// ten failing seeds, each with the command that replays it.
pub fn run_seeds<F>(test_file: &str, test_name: &str, default_count: u64, scenario: F)
where
    F: Fn(u64) -> Outcome + Sync,
{
    init_tracing();
    let seeds = seeds(default_count);
    let threads = env_u64("RAFT_THREADS").unwrap_or(1).max(1) as usize;
    let fail_fast = env_u64("RAFT_FAIL_FAST").unwrap_or(0) != 0;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let next = AtomicUsize::new(0);
    let failures: Mutex<Vec<(u64, String)>> = Mutex::new(Vec::new());
    let ran = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(&seed) = seeds.get(k) else { break };
                let result = catch_unwind(AssertUnwindSafe(|| scenario(seed)));
                ran.fetch_add(1, Ordering::Relaxed);
                let message = match result {
                    Ok(Ok(())) => continue,
                    Ok(Err(failure)) => failure.to_string(),
                    Err(panic) => format!(
                        "panicked: {}",
                        panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default()
                    ),
                };
                let mut list = failures.lock().unwrap_or_else(|e| e.into_inner());
                list.push((seed, message));
                if fail_fast {
                    stop.store(true, Ordering::Relaxed);
                }
            });
        }
    });
    let mut failures = failures.into_inner().unwrap_or_else(|e| e.into_inner());
    failures.sort();
    let elapsed = started.elapsed().as_secs_f64();
    let total = ran.load(Ordering::Relaxed);
    if failures.is_empty() {
        eprintln!("{test_file}::{test_name}: {total} seeds passed in {elapsed:.1}s");
        return;
    }
    let mut report = format!(
        "{test_file}::{test_name}: {} of {total} seeds failed\n",
        failures.len()
    );
    for (seed, message) in failures.iter().take(10) {
        report.push_str(&format!(
            "  seed {seed}: {message}\n    replay: RAFT_SEED={seed} RUST_LOG=debug cargo test --release -p raft-tests --test {test_file} -- {test_name} --exact --nocapture\n"
        ));
    }
    panic!("{report}");
}

/// Declares a `#[test]` that runs a scenario over many seeds with [`run_seeds`].
///
/// ```no_run
/// use raft_tests::{Sim, SimConfig};
/// raft_tests::seed_suite!(elects_a_leader, 200, |seed| {
///     let mut sim = Sim::new(SimConfig::new(3, seed));
///     sim.check_one_leader().map(|_| ())
/// });
/// ```
#[macro_export]
macro_rules! seed_suite {
    ($name:ident, $seeds:expr, $scenario:expr) => {
        #[test]
        fn $name() {
            $crate::seeds::run_seeds(module_path!(), stringify!($name), $seeds, $scenario);
        }
    };
}
