//! `kv`'s command line.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Exit codes, as `kv --help` documents them.
pub mod exit {
    /// The operation succeeded.
    pub const OK: u8 = 0;
    /// The operation succeeded, and the condition it reports does not hold: `get` found no
    /// such key, `cas` did not swap, `delete` found no such key.
    pub const NO: u8 = 1;
    /// Bad flags (clap's own code).
    pub const USAGE: u8 = 2;
    /// The operation definitely did not take effect (for example, it is too large).
    pub const NOT_APPLIED: u8 = 3;
    /// The outcome is unknown: no answer in time; a write may still take effect (once).
    pub const UNKNOWN: u8 = 4;
    /// Setup failed: the certificate directory cannot be read, or no endpoint answered `status`.
    pub const SETUP: u8 = 5;
}

const AFTER_HELP: &str = "\
Exit status:
  0  success
  1  success, and the answer is \"no\": get found no such key, cas did not swap, delete found no
     such key
  2  bad flags
  3  definitely not applied (for example: the request is larger than the servers accept)
  4  outcome unknown: no answer within --timeout; a write may still take effect, exactly once
  5  setup failed: unreadable --tls-dir, or (status) no endpoint answered

Values are written to stdout exactly as stored (raw bytes, no newline added); --hex prints
them as hex and --json as a JSON document (the value as UTF-8 text when it is, else null, and
as hex). A VALUE of - is read from standard input (raw bytes, any size):
  kv put photo - < photo.jpg

Example (the cluster of scripts/cluster):
  kv --endpoints 1=127.0.0.1:7101,2=127.0.0.1:7102,3=127.0.0.1:7103 \\
     --tls-dir cluster-data/certs/client put greeting hello";

/// `kv`: a client of the replicated key/value service.
#[derive(Debug, Parser)]
#[command(name = "kv", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    /// The servers: `id=host:port` each, comma-separated; a plain `host:port` gets the id of
    /// its position (1, 2, 3, ...), as `kv-server certs --nodes 1,2,3` numbers them.
    #[arg(
        long,
        global = true,
        env = "KV_ENDPOINTS",
        default_value = "1=127.0.0.1:7101,2=127.0.0.1:7102,3=127.0.0.1:7103"
    )]
    pub endpoints: String,
    /// Directory with the client certificate (`ca.der`, `client.der`, `client.key.der`).
    #[arg(
        long,
        global = true,
        env = "KV_TLS_DIR",
        default_value = "cluster-data/certs/client"
    )]
    pub tls_dir: PathBuf,
    /// Seconds to wait for one operation before giving up (exit 4).
    #[arg(long, global = true, default_value_t = 10.0)]
    pub timeout: f64,
    /// Print values as hex.
    #[arg(long, global = true, conflicts_with = "json")]
    pub hex: bool,
    /// Print a JSON document.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `kv`'s subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the value of KEY (exit 1 if absent).
    Get {
        /// The key.
        key: String,
    },
    /// Set KEY to VALUE.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Append VALUE to the value of KEY (set it if absent).
    Append {
        /// The key.
        key: String,
        /// The bytes to append.
        value: String,
    },
    /// Remove KEY (exit 1 if it was absent).
    Delete {
        /// The key.
        key: String,
    },
    /// Set KEY to NEW if it holds --expected (or is absent, with --expect-absent); exit 1 if
    /// it did not.
    Cas {
        /// The key.
        key: String,
        /// The new value.
        new: String,
        /// The value KEY must hold.
        #[arg(long, required_unless_present = "expect_absent")]
        expected: Option<String>,
        /// KEY must be absent.
        #[arg(long, conflicts_with = "expected")]
        expect_absent: bool,
    },
    /// Show every endpoint's role, term, leader, indexes and sizes.
    Status,
    /// Generate load and report throughput and latency.
    Bench(BenchArgs),
}

/// What `kv bench` sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReadMode {
    /// Every read is confirmed by the leader with a heartbeat round (no clock assumption).
    Linearizable,
    /// Reads from the leader's lease; the servers must run with `--lease-reads`.
    Lease,
}

/// `kv bench`'s options (modelled on etcd's `benchmark` tool).
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Connections (each a client with its own session and QUIC connection).
    #[arg(long, default_value_t = 1)]
    pub conns: usize,
    /// Concurrent workers, spread over the connections.
    #[arg(long, default_value_t = 1)]
    pub clients: usize,
    /// Operations in all (default 10000, unless --duration is given).
    #[arg(long, conflicts_with = "duration")]
    pub total: Option<u64>,
    /// Run for this many seconds instead of a number of operations.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Key size in bytes.
    #[arg(long, default_value_t = 8)]
    pub key_size: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    pub val_size: usize,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 100_000)]
    pub key_space: u64,
    /// Keys in sequence (0, 1, 2, ...) rather than at random.
    #[arg(long)]
    pub sequential_keys: bool,
    /// The operation mix as weights, for example `put=80,get=20` or `append=1`.
    #[arg(long, default_value = "put=1")]
    pub mix: String,
    /// How reads are served.
    #[arg(long, value_enum, default_value_t = ReadMode::Linearizable)]
    pub reads: ReadMode,
    /// Seed of the key and operation choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Parses `--endpoints`.
pub fn parse_endpoints(text: &str) -> Result<Vec<(u64, SocketAddr)>, String> {
    let mut endpoints: Vec<(u64, SocketAddr)> = Vec::new();
    for (position, item) in text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .enumerate()
    {
        let (id, addr) = match item.split_once('=') {
            Some((id, addr)) => {
                let id = id
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|&id| id > 0)
                    .ok_or_else(|| format!("--endpoints: {id:?} is not a positive node id"))?;
                (id, addr.trim())
            }
            None => (position as u64 + 1, item),
        };
        let addr = addr
            .to_socket_addrs()
            .map_err(|e| format!("--endpoints: {addr:?} is not host:port ({e})"))?
            .next()
            .ok_or_else(|| format!("--endpoints: {addr:?} resolves to no address"))?;
        if endpoints.iter().any(|&(other, _)| other == id) {
            return Err(format!("--endpoints: node {id} is listed twice"));
        }
        endpoints.push((id, addr));
    }
    if endpoints.is_empty() {
        return Err("--endpoints: no endpoint given".into());
    }
    Ok(endpoints)
}

/// Parses `--mix`: weights of put, get and append.
pub fn parse_mix(text: &str) -> Result<[u32; 3], String> {
    let mut weights = [0u32; 3];
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, weight) = item
            .split_once('=')
            .ok_or_else(|| format!("--mix: {item:?} is not op=weight"))?;
        let weight: u32 = weight
            .trim()
            .parse()
            .map_err(|_| format!("--mix: {weight:?} is not a weight"))?;
        let slot = match name.trim() {
            "put" | "puts" => 0,
            "get" | "gets" => 1,
            "append" | "appends" => 2,
            other => {
                return Err(format!(
                    "--mix: unknown operation {other:?} (put, get, append)"
                ))
            }
        };
        weights[slot] = weight;
    }
    if weights.iter().all(|&w| w == 0) {
        return Err("--mix: every weight is zero".into());
    }
    Ok(weights)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_take_ids_or_positions() {
        let parsed = parse_endpoints("127.0.0.1:1, 127.0.0.1:2").unwrap();
        assert_eq!(parsed.iter().map(|e| e.0).collect::<Vec<_>>(), vec![1, 2]);
        let parsed = parse_endpoints("3=127.0.0.1:1,1=127.0.0.1:2").unwrap();
        assert_eq!(parsed.iter().map(|e| e.0).collect::<Vec<_>>(), vec![3, 1]);
        for bad in [
            "",
            "0=127.0.0.1:1",
            "x=127.0.0.1:1",
            "127.0.0.1",
            "1=a:1:2",
            "1=127.0.0.1:1,1=127.0.0.1:2",
        ] {
            assert!(parse_endpoints(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn mixes_parse_and_refuse_nonsense() {
        assert_eq!(parse_mix("put=80,get=20").unwrap(), [80, 20, 0]);
        assert_eq!(parse_mix("appends=1").unwrap(), [0, 0, 1]);
        for bad in ["put=0", "delete=1", "put", "put=x"] {
            assert!(parse_mix(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_help_documents_every_exit_code() {
        for code in [
            exit::OK,
            exit::NO,
            exit::USAGE,
            exit::NOT_APPLIED,
            exit::UNKNOWN,
            exit::SETUP,
        ] {
            assert!(
                AFTER_HELP.contains(&format!("\n  {code}  ")),
                "exit code {code} undocumented"
            );
        }
    }
}
