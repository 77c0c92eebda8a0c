//! `kv bench`: a load generator in the shape of etcd's `benchmark` tool, with HDR latency
//! histograms.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use kv_client::{Client, ClientOptions};
use raft_transport_quic::pki::ClientTls;
use serde_json::json;

use crate::args::{exit, parse_mix, BenchArgs, ReadMode};
use crate::output::Format;

const KINDS: [&str; 3] = ["put", "get", "append"];

/// Latencies (microseconds) and errors of one kind of operation.
struct Tally {
    latency: Histogram<u64>,
    errors: u64,
}

impl Tally {
    fn new() -> Self {
        Self {
            // 1 us to 100 s at 3 significant digits; the bounds are constants that hdrhistogram
            // accepts.
            latency: Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid bounds"),
            errors: 0,
        }
    }

    fn add(&mut self, other: &Tally) {
        // Same bounds on both sides: adding cannot fail.
        let _ = self.latency.add(&other.latency);
        self.errors += other.errors;
    }
}

/// SplitMix64: the key and operation choices, reproducible from `--seed`.
fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Key number `index` as `size` bytes: zero-padded decimal, cut to its last `size` digits.
fn key_bytes(index: u64, size: usize) -> Vec<u8> {
    let text = format!("{index:0size$}");
    text.as_bytes()[text.len() - size..].to_vec()
}

pub async fn run(
    args: &BenchArgs,
    endpoints: &[(u64, SocketAddr)],
    tls: &ClientTls,
    mut options: ClientOptions,
    format: Format,
) -> u8 {
    let weights = match parse_mix(&args.mix) {
        Ok(weights) => weights,
        Err(e) => return crate::error(exit::USAGE, &e),
    };
    if args.conns == 0 || args.clients == 0 || args.key_space == 0 || args.key_size == 0 {
        return crate::error(
            exit::USAGE,
            "--conns, --clients, --key-space and --key-size must be at least 1",
        );
    }
    let conns = args.conns.min(args.clients);
    // Each connection's Clerk pipelines its share of the workers (up to the servers' window).
    options.clerk.window = args.clients.div_ceil(conns).clamp(1, 64);
    let mut clients = Vec::with_capacity(conns);
    for _ in 0..conns {
        match Client::with_options(endpoints.to_vec(), tls, options.clone()) {
            Ok(client) => clients.push(client),
            Err(e) => return crate::error(exit::SETUP, &e.to_string()),
        }
    }
    if args.reads == ReadMode::Lease && weights[1] > 0 {
        let mut modes = Vec::new();
        for &(_, addr) in endpoints {
            if let Ok(status) = clients[0].status(addr).await {
                if status.role == "leader" {
                    modes.push(status.read_mode);
                }
            }
        }
        if modes.iter().any(|m| m != "lease") || modes.is_empty() {
            return crate::error(
                exit::SETUP,
                "--reads lease: the leader serves reads with read-index (start the servers with --lease-reads)",
            );
        }
    }
    let total = match (args.total, args.duration) {
        (Some(total), _) => Some(total),
        (None, Some(_)) => None,
        (None, None) => Some(10_000),
    };
    let deadline = args.duration.map(Duration::from_secs_f64);
    // Connections and sessions are set up before the clock starts, as etcd's `benchmark` does:
    // otherwise the first operation of every connection carries a TLS handshake and a session
    // registration, and in a short run those are the whole p99.
    if let Err(e) = warm_up(&clients).await {
        return crate::error(exit::SETUP, &format!("warm-up failed: {e}"));
    }
    let issued = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let value = Arc::new(vec![b'x'; args.val_size]);

    let bar = if args.quiet || format == Format::Json {
        ProgressBar::hidden()
    } else {
        let (length, template) = match (total, deadline) {
            (Some(total), _) => (total, "{bar:40} {pos}/{len} ops  {per_sec}  eta {eta}"),
            (None, Some(d)) => (d.as_secs().max(1), "{bar:40} {pos}/{len} s"),
            (None, None) => (1, "{bar:40}"),
        };
        let bar = ProgressBar::new(length);
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        bar
    };

    let started = Instant::now();
    // One tally per connection, shared by its workers (a histogram per worker would take
    // hundreds of megabytes at 1,000 workers, in the process that is being measured against).
    let shared: Vec<_> = (0..conns)
        .map(|_| Arc::new(Mutex::new([Tally::new(), Tally::new(), Tally::new()])))
        .collect();
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..args.clients {
        let client = clients[worker % conns].clone();
        let tallies = Arc::clone(&shared[worker % conns]);
        let (issued, done, stop, value) =
            (issued.clone(), done.clone(), stop.clone(), value.clone());
        let args = args.clone();
        workers.spawn(async move {
            loop {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let n = issued.fetch_add(1, Ordering::Relaxed);
                if total.is_some_and(|total| n >= total) {
                    break;
                }
                let draw = mix64(args.seed ^ mix64(n));
                let index = if args.sequential_keys {
                    n % args.key_space
                } else {
                    draw % args.key_space
                };
                let key = key_bytes(index, args.key_size);
                let pick = (mix64(draw) % u64::from(weights.iter().sum::<u32>())) as u32;
                let kind = if pick < weights[0] {
                    0
                } else if pick < weights[0] + weights[1] {
                    1
                } else {
                    2
                };
                let t = Instant::now();
                let ok = match kind {
                    0 => client.put(key, value.as_slice()).await.is_ok(),
                    1 => client.get(key).await.is_ok(),
                    _ => client.append(key, value.as_slice()).await.is_ok(),
                };
                let micros = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
                let mut tallies = tallies.lock().unwrap_or_else(PoisonError::into_inner);
                let tally = &mut tallies[kind];
                if ok {
                    tally.latency.saturating_record(micros.max(1));
                } else {
                    tally.errors += 1;
                }
                drop(tallies);
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    // The progress bar and the duration limit.
    let ticker = {
        let (done, stop, bar) = (done.clone(), stop.clone(), bar.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(100));
            loop {
                every.tick().await;
                let elapsed = started.elapsed();
                match deadline {
                    Some(limit) => {
                        bar.set_position(elapsed.as_secs());
                        if elapsed >= limit {
                            stop.store(true, Ordering::Relaxed);
                            return;
                        }
                    }
                    None => bar.set_position(done.load(Ordering::Relaxed)),
                }
            }
        })
    };
    while workers.join_next().await.is_some() {}
    let mut tallies = [Tally::new(), Tally::new(), Tally::new()];
    for connection in &shared {
        let connection = connection.lock().unwrap_or_else(PoisonError::into_inner);
        for (total, part) in tallies.iter_mut().zip(connection.iter()) {
            total.add(part);
        }
    }
    let elapsed = started.elapsed();
    ticker.abort();
    bar.finish_and_clear();
    for client in &clients {
        client.close().await;
    }
    report(args, conns, &tallies, elapsed, format)
}

/// One write per client, all at once: each connects and registers its session. The key is
/// outside every key the workload draws (keys are digits).
async fn warm_up(clients: &[Client]) -> Result<(), kv_client::ClientError> {
    let mut puts = tokio::task::JoinSet::new();
    for client in clients {
        let client = client.clone();
        puts.spawn(async move { client.put("bench-warm-up", "").await });
    }
    while let Some(done) = puts.join_next().await {
        if let Ok(result) = done {
            result?;
        }
    }
    Ok(())
}

fn report(
    args: &BenchArgs,
    conns: usize,
    tallies: &[Tally; 3],
    elapsed: Duration,
    format: Format,
) -> u8 {
    let mut all = Tally::new();
    for tally in tallies {
        all.add(tally);
    }
    let secs = elapsed.as_secs_f64().max(1e-9);
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let summary = |name: &str, t: &Tally| {
        let h = &t.latency;
        json!({
            "op": name,
            "ok": h.len(),
            "errors": t.errors,
            "throughput_per_s": h.len() as f64 / secs,
            "latency_ms": {
                "mean": h.mean() / 1000.0,
                "p50": ms(h, 0.5), "p90": ms(h, 0.9), "p99": ms(h, 0.99),
                "p99_9": ms(h, 0.999), "max": h.max() as f64 / 1000.0,
            },
        })
    };
    let mut rows: Vec<_> = KINDS
        .iter()
        .zip(tallies)
        .filter(|(_, t)| t.latency.len() + t.errors > 0)
        .map(|(name, t)| summary(name, t))
        .collect();
    rows.push(summary("all", &all));
    if format == Format::Json {
        println!(
            "{}",
            json!({
                "conns": conns, "clients": args.clients, "key_size": args.key_size,
                "val_size": args.val_size, "key_space": args.key_space,
                "sequential_keys": args.sequential_keys, "mix": args.mix,
                "elapsed_s": secs, "results": rows,
            })
        );
    } else {
        println!(
            "{} ops in {:.2} s over {} connection(s), {} client(s): {:.0} ops/s",
            all.latency.len() + all.errors,
            secs,
            conns,
            args.clients,
            all.latency.len() as f64 / secs
        );
        println!(
            "{:<7} {:>9} {:>7} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "op", "ok", "errors", "ops/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
        );
        for row in &rows {
            let l = &row["latency_ms"];
            println!(
                "{:<7} {:>9} {:>7} {:>10.0} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
                row["op"].as_str().unwrap_or("?"),
                row["ok"].as_u64().unwrap_or(0),
                row["errors"].as_u64().unwrap_or(0),
                row["throughput_per_s"].as_f64().unwrap_or(0.0),
                l["p50"].as_f64().unwrap_or(0.0),
                l["p90"].as_f64().unwrap_or(0.0),
                l["p99"].as_f64().unwrap_or(0.0),
                l["p99_9"].as_f64().unwrap_or(0.0),
                l["max"].as_f64().unwrap_or(0.0),
            );
        }
    }
    if all.errors > 0 {
        crate::error(exit::UNKNOWN, &format!("{} operations failed", all.errors))
    } else {
        exit::OK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_the_asked_size() {
        assert_eq!(key_bytes(42, 8), b"00000042");
        assert_eq!(key_bytes(123_456, 3), b"456");
        assert_eq!(key_bytes(7, 1), b"7");
    }
}
