//! Certificates for a cluster: one CA, and a certificate per node signed by it.
//!
//! A node's certificate names it twice: `n<id>.raft-peer` (how peers check *which* node they
//! talk to) and [`SERVER_NAME`] (what clients check: *some* node of this cluster). Generating a
//! local cluster's material takes a few milliseconds, so demos and tests need no manual setup;
//! a production deployment issues the same kind of certificates from its own CA.
//!
//! ```
//! use raft_transport_quic::pki::ClusterCa;
//! let ca = ClusterCa::generate("demo").unwrap();
//! let node1 = ca.issue_node(1).unwrap();
//! assert_eq!(node1.ca_cert, ca.cert_der());
//! ```

use std::path::Path;

use raft_core::NodeId;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

use crate::error::TransportError;

/// The name every node's certificate carries, which clients verify.
pub const SERVER_NAME: &str = "raft-node";

/// The name that identifies node `id` in its certificate.
pub fn peer_name(id: NodeId) -> String {
    format!("n{id}.raft-peer")
}

/// A node's TLS material, all DER-encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeTls {
    /// The cluster CA's certificate, which every peer and client is checked against.
    pub ca_cert: Vec<u8>,
    /// The node's certificate, signed by the CA.
    pub cert: Vec<u8>,
    /// The node's private key (PKCS#8).
    pub key: Vec<u8>,
}

const CA_FILE: &str = "ca.der";
const CERT_FILE: &str = "node.der";
const KEY_FILE: &str = "node.key.der";

impl NodeTls {
    /// Writes the material to `dir` (created if needed) as `ca.der`, `node.der` and
    /// `node.key.der`; the key file is readable by its owner only.
    pub fn write_to(&self, dir: &Path) -> Result<(), TransportError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TransportError::Files { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        for (name, bytes) in [
            (CA_FILE, &self.ca_cert),
            (CERT_FILE, &self.cert),
            (KEY_FILE, &self.key),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, bytes).map_err(io(&path))?;
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let path = dir.join(KEY_FILE);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(io(&path))?;
        }
        Ok(())
    }

    /// Reads material written by [`write_to`](Self::write_to).
    pub fn read_from(dir: &Path) -> Result<Self, TransportError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|source| TransportError::Files { path, source })
        };
        Ok(Self {
            ca_cert: read(CA_FILE)?,
            cert: read(CERT_FILE)?,
            key: read(KEY_FILE)?,
        })
    }
}

/// A cluster certificate authority.
pub struct ClusterCa {
    cert_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa").finish_non_exhaustive()
    }
}

fn pki_error(e: rcgen::Error) -> TransportError {
    TransportError::Pki(e.to_string())
}

impl ClusterCa {
    /// A new CA for the cluster called `cluster`.
    pub fn generate(cluster: &str) -> Result<Self, TransportError> {
        let key = KeyPair::generate().map_err(pki_error)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(pki_error)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{cluster} raft cluster CA"));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).map_err(pki_error)?;
        Ok(Self {
            cert_der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA's certificate (DER).
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// A certificate and key for node `id`, valid as both server and client of the cluster.
    pub fn issue_node(&self, id: NodeId) -> Result<NodeTls, TransportError> {
        let key = KeyPair::generate().map_err(pki_error)?;
        let names = vec![
            peer_name(id),
            SERVER_NAME.to_string(),
            "localhost".to_string(),
        ];
        let mut params = CertificateParams::new(names).map_err(pki_error)?;
        params
            .distinguished_name
            .push(DnType::CommonName, peer_name(id));
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.issuer).map_err(pki_error)?;
        Ok(NodeTls {
            ca_cert: self.cert_der.clone(),
            cert: cert.der().to_vec(),
            key: key.serialize_der(),
        })
    }
}
