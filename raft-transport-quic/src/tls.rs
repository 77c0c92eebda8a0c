//! rustls and quinn configuration: mutual TLS between peers, server-only TLS for clients, both
//! on one endpoint told apart by ALPN. TLS 1.3 only (QUIC requires it), ring as the one crypto
//! provider.

use std::sync::Arc;
use std::time::Duration;

use raft_core::NodeId;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

use crate::error::TransportError;
use crate::pki::{peer_name, NodeTls};

/// ALPN of node-to-node connections.
pub const ALPN_PEER: &[u8] = b"raft-peer/1";
/// ALPN of client connections.
pub const ALPN_CLIENT: &[u8] = b"raft-client/1";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_error(e: impl std::fmt::Display) -> TransportError {
    TransportError::Tls(e.to_string())
}

fn roots(ca_cert: &[u8]) -> Result<Arc<RootCertStore>, TransportError> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca_cert.to_vec()))
        .map_err(tls_error)?;
    Ok(Arc::new(roots))
}

fn identity(tls: &NodeTls) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    (
        vec![CertificateDer::from(tls.cert.clone())],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(tls.key.clone())),
    )
}

fn transport_config() -> Arc<quinn::TransportConfig> {
    let mut config = quinn::TransportConfig::default();
    config.keep_alive_interval(Some(Duration::from_secs(2)));
    // Idle 10 s without even keep-alives: the peer is gone.
    if let Ok(timeout) = quinn::IdleTimeout::try_from(Duration::from_secs(10)) {
        config.max_idle_timeout(Some(timeout));
    }
    Arc::new(config)
}

/// The endpoint's server side: peers must present a certificate from the cluster CA (checked
/// again per stream against the node id they claim); clients need none.
pub fn server_config(tls: &NodeTls) -> Result<quinn::ServerConfig, TransportError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(&tls.ca_cert)?, provider())
        .allow_unauthenticated()
        .build()
        .map_err(tls_error)?;
    let (chain, key) = identity(tls);
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_error)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(tls_error)?;
    config.alpn_protocols = vec![ALPN_PEER.to_vec(), ALPN_CLIENT.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(config).map_err(tls_error)?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(transport_config());
    Ok(server)
}

/// Dialing a peer: present our certificate, require the peer's to be from the CA and to name
/// the node we dial.
pub fn peer_client_config(tls: &NodeTls) -> Result<quinn::ClientConfig, TransportError> {
    let (chain, key) = identity(tls);
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_error)?
        .with_root_certificates(roots(&tls.ca_cert)?)
        .with_client_auth_cert(chain, key)
        .map_err(tls_error)?;
    config.alpn_protocols = vec![ALPN_PEER.to_vec()];
    client(config)
}

/// A client of the cluster: verify the server against the CA, present nothing.
pub fn client_config(ca_cert: &[u8]) -> Result<quinn::ClientConfig, TransportError> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_error)?
        .with_root_certificates(roots(ca_cert)?)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_CLIENT.to_vec()];
    client(config)
}

fn client(config: rustls::ClientConfig) -> Result<quinn::ClientConfig, TransportError> {
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(config).map_err(tls_error)?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    client.transport_config(transport_config());
    Ok(client)
}

/// Whether `cert` (already verified against the CA during the handshake) names node `id`.
pub fn certificate_names_node(cert: &CertificateDer<'_>, id: NodeId) -> bool {
    let Ok(name) = ServerName::try_from(peer_name(id)) else {
        return false;
    };
    webpki::EndEntityCert::try_from(cert)
        .is_ok_and(|cert| cert.verify_is_valid_for_subject_name(&name).is_ok())
}

/// The certificate chain the peer of `connection` presented, if any.
pub fn peer_certificates(connection: &quinn::Connection) -> Option<Vec<CertificateDer<'static>>> {
    connection
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()
        .map(|certs| *certs)
}

/// The ALPN protocol `connection` negotiated.
pub fn negotiated_alpn(connection: &quinn::Connection) -> Option<Vec<u8>> {
    connection
        .handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}
