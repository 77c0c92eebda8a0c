//! Certificates for a cluster: one CA, a certificate per node and one per client, all signed
//! by it.
//!
//! A node's certificate names it twice: `n<id>.raft-peer` (how peers check *which* node they
//! talk to) and [`SERVER_NAME`] (what clients check: *some* node of this cluster). A client's
//! certificate carries no name a node or peer check accepts: it only proves that the cluster's
//! CA let it in (nodes refuse clients without one during the TLS handshake). Generating a local
//! cluster's material takes a few milliseconds, so demos and tests need no manual setup; a
//! production deployment issues the same kind of certificates from its own CA.
//!
//! ```
//! use raft_transport_quic::pki::ClusterCa;
//! let ca = ClusterCa::generate("demo").unwrap();
//! let node1 = ca.issue_node(1).unwrap();
//! assert_eq!(node1.ca_cert, ca.cert_der());
//! let client = ca.issue_client("alice").unwrap();
//! assert_eq!(client.ca_cert, ca.cert_der());
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

/// A client's TLS material, all DER-encoded: what [`RpcClient`](crate::RpcClient) presents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientTls {
    /// The cluster CA's certificate, which the nodes are checked against.
    pub ca_cert: Vec<u8>,
    /// The client's certificate, signed by the CA.
    pub cert: Vec<u8>,
    /// The client's private key (PKCS#8).
    pub key: Vec<u8>,
}

const CA_FILE: &str = "ca.der";
const NODE_FILES: (&str, &str) = ("node.der", "node.key.der");
const CLIENT_FILES: (&str, &str) = ("client.der", "client.key.der");

impl NodeTls {
    /// Writes the material to `dir` (created if needed) as `ca.der`, `node.der` and
    /// `node.key.der`; the key file is readable by its owner only.
    pub fn write_to(&self, dir: &Path) -> Result<(), TransportError> {
        write_material(dir, NODE_FILES, [&self.ca_cert, &self.cert, &self.key])
    }

    /// Reads material written by [`write_to`](Self::write_to).
    pub fn read_from(dir: &Path) -> Result<Self, TransportError> {
        let [ca_cert, cert, key] = read_material(dir, NODE_FILES)?;
        Ok(Self { ca_cert, cert, key })
    }

    /// Whether the certificate names node `id` (it does not check the signature: the
    /// handshake does that).
    pub fn names_node(&self, id: NodeId) -> bool {
        let cert = rustls::pki_types::CertificateDer::from(self.cert.as_slice());
        crate::tls::certificate_names_node(&cert, id)
    }
}

impl ClientTls {
    /// Writes the material to `dir` (created if needed) as `ca.der`, `client.der` and
    /// `client.key.der`; the key file is readable by its owner only.
    pub fn write_to(&self, dir: &Path) -> Result<(), TransportError> {
        write_material(dir, CLIENT_FILES, [&self.ca_cert, &self.cert, &self.key])
    }

    /// Reads material written by [`write_to`](Self::write_to).
    pub fn read_from(dir: &Path) -> Result<Self, TransportError> {
        let [ca_cert, cert, key] = read_material(dir, CLIENT_FILES)?;
        Ok(Self { ca_cert, cert, key })
    }
}

impl From<NodeTls> for ClientTls {
    /// A node's material used to call other nodes as a client (node certificates are valid
    /// client certificates too).
    fn from(node: NodeTls) -> Self {
        Self {
            ca_cert: node.ca_cert,
            cert: node.cert,
            key: node.key,
        }
    }
}

fn files_error(path: &Path) -> impl FnOnce(std::io::Error) -> TransportError {
    let path = path.to_path_buf();
    move |source| TransportError::Files { path, source }
}

/// Writes the CA certificate, a certificate and its key (owner-only) to `dir`.
fn write_material(
    dir: &Path,
    (cert_file, key_file): (&str, &str),
    [ca_cert, cert, key]: [&Vec<u8>; 3],
) -> Result<(), TransportError> {
    std::fs::create_dir_all(dir).map_err(files_error(dir))?;
    for (name, bytes) in [(CA_FILE, ca_cert), (cert_file, cert), (key_file, key)] {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(files_error(&path))?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(key_file);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(files_error(&path))?;
    }
    Ok(())
}

/// Reads what [`write_material`] wrote: the CA certificate, the certificate and the key.
fn read_material(
    dir: &Path,
    (cert_file, key_file): (&str, &str),
) -> Result<[Vec<u8>; 3], TransportError> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).map_err(files_error(&path))
    };
    Ok([read(CA_FILE)?, read(cert_file)?, read(key_file)?])
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

    /// A certificate and key for a client called `name` (its common name, for the logs). It is
    /// valid only as a TLS client: nodes accept it on the client protocol, and it names no node,
    /// so it can neither pose as a peer nor as a server to other clients.
    pub fn issue_client(&self, name: &str) -> Result<ClientTls, TransportError> {
        let key = KeyPair::generate().map_err(pki_error)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(pki_error)?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer).map_err(pki_error)?;
        Ok(ClientTls {
            ca_cert: self.cert_der.clone(),
            cert: cert.der().to_vec(),
            key: key.serialize_der(),
        })
    }
}
