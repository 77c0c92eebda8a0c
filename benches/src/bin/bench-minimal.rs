//! The library's write path in openraft's `bench-minimal` shape (see
//! [`raft_benches::minimal`]), with the columns and flags of `../shared/tools/openraft-compare`
//! so that the two run side by side:
//!
//! ```text
//! cargo run --release -p raft-benches --bin bench-minimal -- -c 1,256,1024 -t 1000000 -w 2
//! ```

use clap::Parser;
use raft_benches::minimal;

/// Committed writes per second of three raft-node drivers in one process (channels, memory
/// persister), with N client tasks each awaiting its own write.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Client counts, one fresh cluster each (comma-separated).
    #[arg(
        short = 'c',
        long = "clients",
        value_delimiter = ',',
        default_value = "1,256,1024"
    )]
    clients: Vec<usize>,
    /// Writes per run, split evenly over the clients.
    #[arg(short = 't', long = "total", default_value_t = 1_000_000)]
    total: u64,
    /// Writes per client (overrides --total).
    #[arg(short = 'n', long = "ops-per-client")]
    per_client: Option<u64>,
    /// Tokio worker threads.
    #[arg(short = 'w', long = "workers", default_value_t = 2)]
    workers: usize,
}

fn loadavg() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn us(d: std::time::Duration) -> String {
    format!("{:.1}us", d.as_nanos() as f64 / 1000.0)
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if args.workers == 0 || args.clients.contains(&0) {
        eprintln!("bench-minimal: --workers and every client count must be at least 1");
        return std::process::ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("bench-minimal: cannot start a runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!(
        "raft-node, 3 voters in-process, memory persister, tokio workers={}, loadavg before: {}",
        args.workers,
        loadavg()
    );
    for &clients in &args.clients {
        let per_client = args
            .per_client
            .unwrap_or_else(|| (args.total / clients as u64).max(1));
        let report = match runtime.block_on(minimal::run(clients, per_client)) {
            Ok(report) => report,
            Err(e) => {
                eprintln!("bench-minimal: {clients} clients: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        println!(
            "clients={:<5} ops/client={:<7} total={:<8} time={:.3}s  writes/s={:<9.0} mean={} p50={} p99={}  load={}",
            clients,
            per_client,
            report.writes,
            report.elapsed.as_secs_f64(),
            report.writes_per_sec(),
            us(report.mean()),
            us(report.latency(0.5)),
            us(report.latency(0.99)),
            loadavg(),
        );
    }
    std::process::ExitCode::SUCCESS
}
