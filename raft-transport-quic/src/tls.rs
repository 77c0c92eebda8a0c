//! rustls and quinn configuration: mutual TLS for everyone (peers and clients present
//! certificates from the cluster CA), on one endpoint, peers and clients told apart by ALPN.
//! TLS 1.3 only (QUIC requires it), ring as the one crypto provider.
//!
//! A connection's QUIC limits are fixed before its ALPN is known, so an incoming connection
//! starts with the strictest ones (no streams at all, a client-sized receive window); once the
//! node knows who connected it opens what that kind of connection needs: a few unidirectional
//! streams and a larger window for a member, `max_concurrent_requests` bidirectional streams
//! for a client.

use std::sync::Arc;
use std::time::Duration;

use raft_core::NodeId;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

use crate::error::TransportError;
use crate::limits::ClientLimits;
use crate::pki::{peer_name, ClientTls, NodeTls};

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

fn identity(cert: &[u8], key: &[u8]) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    (
        vec![CertificateDer::from(cert.to_vec())],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.to_vec())),
    )
}

/// Unidirectional streams a member may have open on its connection to us (it uses two).
pub const PEER_STREAMS: u32 = 4;
/// QUIC receive window of a member's connection, in bytes.
pub const PEER_RECEIVE_WINDOW: u32 = 8 << 20;
/// QUIC receive window of one stream, in bytes (what one stream may have in flight).
const STREAM_RECEIVE_WINDOW: u32 = 1 << 20;

/// Keep-alives and idle timeout shared by both sides; no stream may be opened towards us until
/// we allow it (see the module documentation).
fn transport_config(receive_window: u32) -> quinn::TransportConfig {
    let mut config = quinn::TransportConfig::default();
    config.keep_alive_interval(Some(Duration::from_secs(2)));
    // Idle 10 s without even keep-alives: the peer is gone. This also ends stalled handshakes.
    if let Ok(timeout) = quinn::IdleTimeout::try_from(Duration::from_secs(10)) {
        config.max_idle_timeout(Some(timeout));
    }
    config.max_concurrent_bidi_streams(0u32.into());
    config.max_concurrent_uni_streams(0u32.into());
    config.stream_receive_window(STREAM_RECEIVE_WINDOW.into());
    config.receive_window(receive_window.into());
    config
}

/// The endpoint's server side with the default [`ClientLimits`].
pub fn server_config(tls: &NodeTls) -> Result<quinn::ServerConfig, TransportError> {
    server_config_with(tls, &ClientLimits::default())
}

/// The endpoint's server side: everyone must present a certificate from the cluster CA (a
/// peer's is checked again against the members, a client's needs only the CA's signature).
/// Incoming connections start with no streams and `limits.connection_window_bytes` of window.
pub fn server_config_with(
    tls: &NodeTls,
    limits: &ClientLimits,
) -> Result<quinn::ServerConfig, TransportError> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(&tls.ca_cert)?, provider())
        .build()
        .map_err(tls_error)?;
    let (chain, key) = identity(&tls.cert, &tls.key);
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_error)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(tls_error)?;
    config.alpn_protocols = vec![ALPN_PEER.to_vec(), ALPN_CLIENT.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(config).map_err(tls_error)?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(Arc::new(transport_config(limits.connection_window_bytes)));
    // Attempts waiting for the accept loop (which decides at once): a small queue, and little
    // buffered data for them.
    server.max_incoming(1024);
    server.incoming_buffer_size(64 << 10);
    server.incoming_buffer_size_total(4 << 20);
    Ok(server)
}

/// Dialing a peer: present our certificate, require the peer's to be from the CA and to name
/// the node we dial.
pub fn peer_client_config(tls: &NodeTls) -> Result<quinn::ClientConfig, TransportError> {
    let (chain, key) = identity(&tls.cert, &tls.key);
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_error)?
        .with_root_certificates(roots(&tls.ca_cert)?)
        .with_client_auth_cert(chain, key)
        .map_err(tls_error)?;
    config.alpn_protocols = vec![ALPN_PEER.to_vec()];
    client(config)
}

/// A client of the cluster: verify the server against the CA, present the client's
/// certificate.
pub fn client_config(tls: &ClientTls) -> Result<quinn::ClientConfig, TransportError> {
    let (chain, key) = identity(&tls.cert, &tls.key);
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_error)?
        .with_root_certificates(roots(&tls.ca_cert)?)
        .with_client_auth_cert(chain, key)
        .map_err(tls_error)?;
    config.alpn_protocols = vec![ALPN_CLIENT.to_vec()];
    client(config)
}

fn client(config: rustls::ClientConfig) -> Result<quinn::ClientConfig, TransportError> {
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(config).map_err(tls_error)?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    // The server never opens streams towards its clients; the window only carries responses.
    client.transport_config(Arc::new(transport_config(PEER_RECEIVE_WINDOW)));
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
