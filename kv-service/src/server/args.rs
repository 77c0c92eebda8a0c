//! `kv-server`'s command line and TOML configuration file.
//!
//! Every flag of the server can also be given in the TOML file named by `--config`, under the
//! same name (`data-dir = "..."`, `peers = "1=127.0.0.1:7001,..."`, `lease-reads = true`);
//! a flag on the command line wins over the file.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;

/// `kv-server`: a node of the replicated key/value service.
#[derive(Debug, Parser)]
#[command(
    name = "kv-server",
    version,
    about = "A node of the replicated, linearizable key/value service (Raft over QUIC).",
    args_conflicts_with_subcommands = true,
    after_help = "Exit status: 0 after a clean shutdown (SIGINT or SIGTERM; a second signal \
                  exits at once with 130), 1 when the node cannot start or fails while running, \
                  2 for bad flags or configuration.\n\n\
                  Example (node 1 of 3, certificates from `kv-server certs`):\n  \
                  kv-server --id 1 --listen 127.0.0.1:7001 \\\n    \
                  --peers 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003 \\\n    \
                  --data-dir data/n1 --init --tls-dir certs/node-1"
)]
pub struct Cli {
    /// A subcommand; without one the server runs.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The server's settings.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// `kv-server`'s subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Makes a cluster CA, a certificate for each node and one for clients.
    Certs(CertsArgs),
}

/// `kv-server certs`.
#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Directory to write into: `node-<id>/` per node (for `--tls-dir`) and `client/` (for
    /// `kv --tls-dir`).
    #[arg(long)]
    pub out: PathBuf,
    /// The nodes' ids, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub nodes: Vec<u64>,
    /// The cluster's name, written into the CA certificate.
    #[arg(long, default_value = "raft-kv")]
    pub cluster: String,
    /// Replace material already in `--out` (otherwise refused).
    #[arg(long)]
    pub force: bool,
}

/// Where a node keeps its Raft state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    /// RocksDB in `--data-dir`: durable (every acknowledged write is fsynced).
    Rocksdb,
    /// Memory: nothing survives the process (tests and demos).
    Memory,
}

/// The server's settings, as flags or TOML keys; all optional here, checked by
/// [`ServerConfig::resolve`](super::ServerConfig::resolve).
#[derive(Debug, Default, Args, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServeArgs {
    /// A TOML file with any of these settings (flags win over it).
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// This node's id (a positive integer, unique in the cluster).
    #[arg(long)]
    pub id: Option<u64>,
    /// UDP address to listen on, for peers and clients.
    #[arg(long)]
    pub listen: Option<String>,
    /// Every node of the cluster: `1=host:port,2=host:port,...` (this node's entry may be
    /// included).
    #[arg(long)]
    pub peers: Option<String>,
    /// Directory of this node's RocksDB database.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Storage backend [default: rocksdb].
    #[arg(long, value_enum)]
    pub storage: Option<StorageKind>,
    /// Snapshot once the persisted Raft state reaches this many bytes; 0 turns snapshots off
    /// [default: 16777216].
    #[arg(long)]
    pub maxraftstate: Option<u64>,
    /// Directory with this node's TLS material (`ca.der`, `node.der`, `node.key.der`).
    #[arg(long)]
    pub tls_dir: Option<PathBuf>,
    /// Serve Prometheus metrics over HTTP at this address (`/metrics`).
    #[arg(long)]
    pub metrics_addr: Option<String>,
    /// Create the data directory if it does not exist yet (a new node of a new cluster). Never
    /// use it to bring back a node whose data was lost: see the README.
    #[arg(long)]
    #[serde(default)]
    pub init: bool,
    /// Milliseconds per Raft tick (elections after 10-20 ticks, heartbeats every 2) [default: 10].
    #[arg(long)]
    pub tick_ms: Option<u64>,
    /// Serve reads from the leader's lease when it holds one (no confirmation round; relies
    /// on bounded clock drift), else through ReadIndex.
    #[arg(long)]
    #[serde(default)]
    pub lease_reads: bool,
    /// The cluster's id, stored in each data directory [default: derived from the CA
    /// certificate].
    #[arg(long)]
    pub cluster_id: Option<u64>,
    /// Client connections open at once, in all [default: 256].
    #[arg(long)]
    pub client_connections: Option<usize>,
    /// Client connections open at once from one address [default: 16]; raise it for load
    /// generators on one machine (`kv bench --conns 100`).
    #[arg(long)]
    pub client_connections_per_ip: Option<usize>,
}

impl ServeArgs {
    /// These settings, with those missing taken from `file`.
    pub fn or(self, file: ServeArgs) -> ServeArgs {
        ServeArgs {
            config: self.config,
            id: self.id.or(file.id),
            listen: self.listen.or(file.listen),
            peers: self.peers.or(file.peers),
            data_dir: self.data_dir.or(file.data_dir),
            storage: self.storage.or(file.storage),
            maxraftstate: self.maxraftstate.or(file.maxraftstate),
            tls_dir: self.tls_dir.or(file.tls_dir),
            metrics_addr: self.metrics_addr.or(file.metrics_addr),
            init: self.init || file.init,
            tick_ms: self.tick_ms.or(file.tick_ms),
            lease_reads: self.lease_reads || file.lease_reads,
            cluster_id: self.cluster_id.or(file.cluster_id),
            client_connections: self.client_connections.or(file.client_connections),
            client_connections_per_ip: self
                .client_connections_per_ip
                .or(file.client_connections_per_ip),
        }
    }
}
