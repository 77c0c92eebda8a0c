//! [`ServerConfig`]: the server's settings, checked.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use raft_core::NodeId;

use super::args::{ServeArgs, StorageKind};

/// Default `--maxraftstate`: 16 MiB.
pub const DEFAULT_MAX_RAFT_STATE: u64 = 16 << 20;

/// A setting that cannot be used; the message names the flag.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required setting is missing.
    #[error("missing --{0} (give it as a flag or in the --config file)")]
    Missing(&'static str),
    /// The `--config` file cannot be read.
    #[error("cannot read the configuration file {path}: {source}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The `--config` file is not valid TOML for these settings.
    #[error("configuration file {path}: {message}")]
    ParseFile {
        /// The file.
        path: PathBuf,
        /// The parser's message (with the line).
        message: String,
    },
    /// A setting's value is invalid.
    #[error("--{flag}: {message}")]
    Invalid {
        /// The flag.
        flag: &'static str,
        /// What is wrong.
        message: String,
    },
}

fn invalid(flag: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        flag,
        message: message.into(),
    }
}

/// The server's settings, complete and checked.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// This node's id.
    pub id: NodeId,
    /// Where it listens.
    pub listen: SocketAddr,
    /// The other nodes and their addresses.
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// Storage backend.
    pub storage: StorageKind,
    /// The RocksDB directory (required for `rocksdb`).
    pub data_dir: Option<PathBuf>,
    /// Snapshot threshold (`None`: off).
    pub max_raft_state: Option<u64>,
    /// TLS material.
    pub tls_dir: PathBuf,
    /// Prometheus endpoint.
    pub metrics_addr: Option<SocketAddr>,
    /// Create a missing data directory.
    pub init: bool,
    /// Raft tick.
    pub tick: Duration,
    /// Lease reads.
    pub lease_reads: bool,
    /// The cluster id, if given (else derived from the CA).
    pub cluster_id: Option<u64>,
    /// Client connections at once, in all.
    pub client_connections: usize,
    /// Client connections at once from one address.
    pub client_connections_per_ip: usize,
}

/// Resolves `host:port` (a name is looked up once, at start).
fn address(flag: &'static str, text: &str) -> Result<SocketAddr, ConfigError> {
    let text = text.trim();
    text.to_socket_addrs()
        .map_err(|e| invalid(flag, format!("{text:?} is not a host:port address ({e})")))?
        .next()
        .ok_or_else(|| invalid(flag, format!("{text:?} resolves to no address")))
}

/// Parses `1=host:port,2=host:port,...`.
pub fn parse_peers(text: &str) -> Result<BTreeMap<NodeId, SocketAddr>, ConfigError> {
    let mut peers = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item
            .split_once('=')
            .ok_or_else(|| invalid("peers", format!("{item:?} is not id=host:port")))?;
        let id: NodeId = id
            .trim()
            .parse()
            .ok()
            .filter(|&id| id > 0)
            .ok_or_else(|| invalid("peers", format!("{id:?} is not a positive node id")))?;
        let addr = address("peers", addr)?;
        if peers.insert(id, addr).is_some() {
            return Err(invalid("peers", format!("node {id} is listed twice")));
        }
    }
    if peers.is_empty() {
        return Err(invalid("peers", "no node listed"));
    }
    Ok(peers)
}

impl ServerConfig {
    /// Reads the `--config` file, if any, fills in what the flags left out, and checks
    /// everything.
    pub fn resolve(args: ServeArgs) -> Result<Self, ConfigError> {
        let args = match args.config.clone() {
            Some(path) => args.or(read_file(&path)?),
            None => args,
        };
        let id = args.id.ok_or(ConfigError::Missing("id"))?;
        if id == 0 {
            return Err(invalid("id", "node ids start at 1"));
        }
        let listen = address(
            "listen",
            args.listen
                .as_deref()
                .ok_or(ConfigError::Missing("listen"))?,
        )?;
        let mut peers = parse_peers(args.peers.as_deref().ok_or(ConfigError::Missing("peers"))?)?;
        if let Some(own) = peers.remove(&id) {
            if own.port() != listen.port() {
                return Err(invalid(
                    "peers",
                    format!("lists node {id} (this node) at {own}, but it listens on {listen}"),
                ));
            }
        }
        if peers.is_empty() {
            tracing::warn!("no other node in --peers: a one-node cluster");
        }
        let storage = args.storage.unwrap_or(StorageKind::Rocksdb);
        if storage == StorageKind::Rocksdb && args.data_dir.is_none() {
            return Err(ConfigError::Missing("data-dir"));
        }
        let tick_ms = args.tick_ms.unwrap_or(10);
        if tick_ms == 0 || tick_ms > 10_000 {
            return Err(invalid("tick-ms", "must be between 1 and 10000"));
        }
        let metrics_addr = match &args.metrics_addr {
            Some(text) => Some(address("metrics-addr", text)?),
            None => None,
        };
        Ok(Self {
            id,
            listen,
            peers,
            storage,
            data_dir: args.data_dir,
            max_raft_state: match args.maxraftstate.unwrap_or(DEFAULT_MAX_RAFT_STATE) {
                0 => None,
                bytes => Some(bytes),
            },
            tls_dir: args.tls_dir.ok_or(ConfigError::Missing("tls-dir"))?,
            metrics_addr,
            init: args.init,
            tick: Duration::from_millis(tick_ms),
            lease_reads: args.lease_reads,
            cluster_id: args.cluster_id,
            client_connections: positive("client-connections", args.client_connections, 256)?,
            client_connections_per_ip: positive(
                "client-connections-per-ip",
                args.client_connections_per_ip,
                16,
            )?,
        })
    }

    /// Every voter's id, this node's included.
    pub fn voters(&self) -> Vec<NodeId> {
        let mut voters: Vec<NodeId> = self.peers.keys().copied().collect();
        voters.push(self.id);
        voters.sort_unstable();
        voters
    }
}

/// `value` (or `default`), refused when zero.
fn positive(
    flag: &'static str,
    value: Option<usize>,
    default: usize,
) -> Result<usize, ConfigError> {
    match value.unwrap_or(default) {
        0 => Err(invalid(flag, "must be at least 1")),
        n => Ok(n),
    }
}

fn read_file(path: &Path) -> Result<ServeArgs, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::ParseFile {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn resolve(flags: &[&str]) -> Result<ServerConfig, ConfigError> {
        let cli = super::super::args::Cli::try_parse_from(
            std::iter::once("kv-server").chain(flags.iter().copied()),
        )
        .expect("flags parse");
        ServerConfig::resolve(cli.serve)
    }

    const BASE: &[&str] = &[
        "--id",
        "2",
        "--listen",
        "127.0.0.1:7002",
        "--peers",
        "1=127.0.0.1:7001, 2=127.0.0.1:7002,3=127.0.0.1:7003",
        "--data-dir",
        "d",
        "--tls-dir",
        "t",
    ];

    #[test]
    fn flags_resolve_with_defaults_and_this_node_leaves_the_peer_list() {
        let config = resolve(BASE).unwrap();
        assert_eq!(config.id, 2);
        assert_eq!(config.peers.keys().copied().collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(config.voters(), vec![1, 2, 3]);
        assert_eq!(config.storage, StorageKind::Rocksdb);
        assert_eq!(config.max_raft_state, Some(DEFAULT_MAX_RAFT_STATE));
        assert_eq!(config.tick, Duration::from_millis(10));
        assert!(!config.init && !config.lease_reads);
    }

    #[test]
    fn bad_values_name_their_flag() {
        let cases: &[(&[&str], &str)] = &[
            (&["--peers", "1=127.0.0.1:7001,x=127.0.0.1:1"], "--peers"),
            (&["--peers", "1=nowhere"], "--peers"),
            (&["--peers", "1=127.0.0.1:7001,1=127.0.0.1:7003"], "twice"),
            (&["--peers", "2=127.0.0.1:9999"], "this node"),
            (&["--id", "0"], "--id"),
            (&["--tick-ms", "0"], "--tick-ms"),
            (&["--listen", "localhost"], "--listen"),
        ];
        for (overrides, expected) in cases {
            let mut flags = BASE.to_vec();
            flags.extend_from_slice(overrides); // later flags override earlier ones
            let error = resolve_last_wins(&flags).unwrap_err().to_string();
            assert!(error.contains(expected), "{overrides:?}: {error}");
        }
        let error = resolve(&["--id", "1"]).unwrap_err().to_string();
        assert!(error.contains("--listen"), "{error}");
    }

    /// clap refuses a repeated flag, so overrides replace the base's value by hand.
    fn resolve_last_wins(flags: &[&str]) -> Result<ServerConfig, ConfigError> {
        let mut merged: Vec<&str> = Vec::new();
        for pair in flags.chunks(2) {
            if let Some(at) = merged.iter().position(|f| *f == pair[0]) {
                merged[at + 1] = pair[1];
            } else {
                merged.extend_from_slice(pair);
            }
        }
        resolve(&merged)
    }

    #[test]
    fn the_file_fills_in_and_flags_win() {
        let dir = std::env::temp_dir().join(format!("kv-server-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("node.toml");
        std::fs::write(
            &file,
            "id = 3\nlisten = \"127.0.0.1:7003\"\npeers = \"1=127.0.0.1:7001,3=127.0.0.1:7003\"\n\
             storage = \"memory\"\ntls-dir = \"certs\"\nlease-reads = true\nmaxraftstate = 0\n",
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let config = resolve(&["--config", path, "--tick-ms", "5"]).unwrap();
        assert_eq!((config.id, config.storage), (3, StorageKind::Memory));
        assert_eq!(config.max_raft_state, None);
        assert!(config.lease_reads);
        assert_eq!(config.tick, Duration::from_millis(5));
        let config =
            resolve(&["--config", path, "--id", "1", "--listen", "127.0.0.1:7001"]).unwrap();
        assert_eq!(config.id, 1, "the flag wins over the file");

        std::fs::write(&file, "id = 3\nunknown-key = 1\n").unwrap();
        let error = resolve(&["--config", path]).unwrap_err().to_string();
        assert!(error.contains("unknown-key"), "{error}");
        let error = resolve(&["--config", "/nonexistent/x.toml"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("/nonexistent/x.toml"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
