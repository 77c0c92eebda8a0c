//! Running a node: certificates, storage, the QUIC endpoint, the driver, metrics, and a clean
//! shutdown.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use raft_core::{Config, Persister, RaftNode};
use raft_node::{NodeConfig, NodeError};
use raft_transport_quic::pki::NodeTls;
use raft_transport_quic::{QuicConfig, QuicNode, TransportError};
use tracing::{info, warn};

use super::args::StorageKind;
use super::config::ServerConfig;
use super::telemetry::{self, MetricsError};
use crate::config::ServiceConfig;
use crate::core::ServiceError;
use crate::node::KvHandler;
use crate::service::KvService;

/// Why a node could not start, or stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The TLS material cannot be read.
    #[error("cannot read this node's certificates from {dir}: {source}")]
    Certificates {
        /// `--tls-dir`.
        dir: PathBuf,
        /// Why.
        source: TransportError,
    },
    /// The certificate is another node's.
    #[error("the certificate in {dir} does not name node {id}; use that node's --tls-dir")]
    WrongCertificate {
        /// `--tls-dir`.
        dir: PathBuf,
        /// `--id`.
        id: u64,
    },
    /// The data directory is missing (or empty) and `--init` was not given.
    #[error(
        "data directory {0} does not exist or is empty. A new node of a new cluster is created \
         with --init; a node that lost its data must not rejoin with an empty one (it could vote \
         twice in a term): see \"Lost data\" in the README"
    )]
    MissingDataDir(PathBuf),
    /// The storage backend refused the directory, or failed.
    #[error("storage: {0}")]
    Storage(String),
    /// RocksDB is not compiled in.
    #[error(
        "this kv-server was built without RocksDB: rebuild with `--features rocksdb` or run \
         with --storage memory"
    )]
    NoRocksDb,
    /// The stored state cannot be loaded into the service.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// The endpoint cannot start (for example, the port is in use).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The metrics endpoint cannot start.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// The driver failed while running.
    #[error(transparent)]
    Node(#[from] NodeError),
}

/// The cluster id of a data directory when `--cluster-id` is not given: a hash (FNV-1a) of the
/// CA certificate, so that a directory of another cluster (another CA) is refused.
pub fn cluster_id_of(ca_cert: &[u8]) -> u64 {
    ca_cert.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn read_tls(config: &ServerConfig) -> Result<NodeTls, ServerError> {
    let dir = config.tls_dir.clone();
    let tls = NodeTls::read_from(&dir).map_err(|source| ServerError::Certificates {
        dir: dir.clone(),
        source,
    })?;
    if !tls.names_node(config.id) {
        return Err(ServerError::WrongCertificate { dir, id: config.id });
    }
    Ok(tls)
}

/// Whether `dir` is absent or an empty directory.
fn is_fresh(dir: &Path) -> bool {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// Runs the node described by `config` until `shutdown` completes (then stops cleanly) or the
/// node fails.
pub async fn serve(
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let tls = read_tls(&config)?;
    if let Some(addr) = config.metrics_addr {
        telemetry::serve_metrics(addr)?;
        info!(%addr, "metrics at http://{addr}/metrics");
    }
    match config.storage {
        StorageKind::Memory => {
            let persister = Arc::new(raft_storage::MemoryPersister::new());
            run(config, tls, persister, shutdown).await
        }
        StorageKind::Rocksdb => open_rocksdb(config, tls, shutdown).await,
    }
}

#[cfg(feature = "rocksdb")]
async fn open_rocksdb(
    config: ServerConfig,
    tls: NodeTls,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    use raft_storage::{RocksDbPersister, StorageIdentity};
    let dir = config
        .data_dir
        .clone()
        .ok_or_else(|| ServerError::Storage("--data-dir is required for rocksdb".into()))?;
    let identity = StorageIdentity {
        cluster_id: config
            .cluster_id
            .unwrap_or_else(|| cluster_id_of(&tls.ca_cert)),
        node_id: config.id,
    };
    let persister = if is_fresh(&dir) {
        if !config.init {
            return Err(ServerError::MissingDataDir(dir));
        }
        info!(dir = %dir.display(), "creating a new data directory");
        RocksDbPersister::create(&dir, identity)
    } else {
        RocksDbPersister::open(&dir, identity)
    }
    .map_err(|e| ServerError::Storage(e.to_string()))?;
    run(config, tls, Arc::new(persister), shutdown).await
}

#[cfg(not(feature = "rocksdb"))]
async fn open_rocksdb(
    _config: ServerConfig,
    _tls: NodeTls,
    _shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let _ = is_fresh;
    Err(ServerError::NoRocksDb)
}

async fn run<P: Persister + 'static>(
    config: ServerConfig,
    tls: NodeTls,
    persister: Arc<P>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let state = persister
        .load()
        .await
        .map_err(|e| ServerError::Storage(e.to_string()))?;
    // `Config::new` draws a seed of its own at every start, as raft-core requires.
    let mut raft_config = Config::new(config.id, config.voters());
    raft_config.lease_reads = config.lease_reads;
    let mut service_config = ServiceConfig::new(raft_config.clone());
    service_config.max_raft_state = config.max_raft_state;
    let max_request_bytes = service_config.max_request_bytes;
    let service = KvService::restore(service_config, &state)?;
    let raft = RaftNode::restore(raft_config, &state).map_err(ServiceError::from)?;
    info!(
        id = config.id,
        term = state.hard_state.term,
        entries = state.entries.len(),
        snapshot_index = state.snapshot_index(),
        "state loaded"
    );

    let handler = Arc::new(KvHandler::new());
    let peers = config.peers.iter().map(|(&id, &addr)| (id, addr)).collect();
    let mut quic_config = QuicConfig::new(config.id, config.listen, peers, tls);
    quic_config.clients.max_connections = config.client_connections;
    quic_config.clients.max_connections_per_ip = config.client_connections_per_ip;
    // Room above the service's own limit, so that a request the service finds too large gets
    // its TooLarge answer (the client then knows it was not applied) instead of a reset.
    quic_config.clients.max_request_bytes = max_request_bytes + (64 << 10);
    let quic = Arc::new(QuicNode::bind(quic_config, Some(handler.clone())).await?);
    let node_config = NodeConfig {
        tick_interval: config.tick,
        ..NodeConfig::default()
    };
    let node = raft_node::spawn(
        raft,
        service,
        Arc::clone(&persister),
        Arc::clone(&quic),
        node_config,
    );
    handler.attach(node.client());
    telemetry::export_transport_stats(Arc::downgrade(&quic));
    info!(id = config.id, listen = %config.listen, storage = ?config.storage, "kv-server serving");

    let mut status = node.client().watch_status();
    let ended_on_its_own = async move { while status.changed().await.is_ok() {} };
    let outcome = tokio::select! {
        _ = shutdown => {
            info!("shutting down: no new requests; writing what is queued");
            node.shutdown().await
        }
        _ = ended_on_its_own => node.join().await,
    };
    if let Err(e) = &outcome {
        warn!(error = %e, "the node stopped");
    }
    quic.shutdown(Duration::from_secs(2)).await;
    drop(quic);
    // The last reference: the database closes here.
    drop(persister);
    info!("stopped");
    Ok(outcome?)
}
