//! `kv-server certs`: a cluster CA, node certificates and a client certificate.

use std::path::{Path, PathBuf};

use raft_transport_quic::pki::ClusterCa;
use raft_transport_quic::TransportError;

use super::args::CertsArgs;

/// Why `certs` wrote nothing (or not everything).
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    /// `--out` already holds material and `--force` was not given.
    #[error("{0} already holds certificates; pass --force to replace them")]
    Exists(PathBuf),
    /// A node id of 0, or one listed twice.
    #[error("--nodes: {0}")]
    Nodes(String),
    /// Generating or writing failed.
    #[error(transparent)]
    Tls(#[from] TransportError),
}

/// The directory of node `id`'s material under `out`.
pub fn node_dir(out: &Path, id: u64) -> PathBuf {
    out.join(format!("node-{id}"))
}

/// The directory of the client material under `out`.
pub fn client_dir(out: &Path) -> PathBuf {
    out.join("client")
}

/// Writes a new CA's node certificates and a client certificate under `args.out`; returns the
/// directories written.
pub fn generate(args: &CertsArgs) -> Result<Vec<PathBuf>, CertsError> {
    let mut ids = args.nodes.clone();
    ids.sort_unstable();
    if ids.first() == Some(&0) {
        return Err(CertsError::Nodes("node ids start at 1".into()));
    }
    if ids.windows(2).any(|w| w[0] == w[1]) {
        return Err(CertsError::Nodes("a node is listed twice".into()));
    }
    let mut dirs: Vec<PathBuf> = ids.iter().map(|&id| node_dir(&args.out, id)).collect();
    dirs.push(client_dir(&args.out));
    if !args.force {
        if let Some(taken) = dirs.iter().find(|d| d.exists()) {
            return Err(CertsError::Exists(taken.clone()));
        }
    }
    let ca = ClusterCa::generate(&args.cluster)?;
    for &id in &ids {
        ca.issue_node(id)?.write_to(&node_dir(&args.out, id))?;
    }
    ca.issue_client("kv-client")?
        .write_to(&client_dir(&args.out))?;
    Ok(dirs)
}
