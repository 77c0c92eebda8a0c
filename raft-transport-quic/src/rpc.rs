//! Client requests: one bidirectional QUIC stream per request, carrying one request frame and
//! one response frame. The payloads are opaque bytes: the service (kv-service) defines them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Mutex;
use tracing::{debug, warn};

use crate::error::{RpcError, TransportError};
use crate::frame::{self, frame_bytes, read_payload};
use crate::pki::SERVER_NAME;
use crate::tls;

/// Serves client requests on a node's endpoint.
#[async_trait]
pub trait RequestHandler: Send + Sync + 'static {
    /// Answers one request.
    async fn handle(&self, request: Vec<u8>) -> Vec<u8>;
}

/// Serves the request streams of one client connection until it closes.
pub(crate) async fn serve(
    connection: quinn::Connection,
    handler: Arc<dyn RequestHandler>,
    max: usize,
) {
    while let Ok((mut send, mut recv)) = connection.accept_bi().await {
        let handler = Arc::clone(&handler);
        tokio::spawn(async move {
            let request = match read_payload(&mut recv, max).await {
                Ok(Some(request)) => request,
                Ok(None) => return,
                Err(e) => {
                    warn!(error = %e, "bad client request; stream reset");
                    let _ = recv.stop(1u32.into());
                    return;
                }
            };
            let response = handler.handle(request).await;
            match frame_bytes(&response, max) {
                Ok(frame) => {
                    if send.write_all(&frame).await.is_ok() {
                        let _ = send.finish();
                    }
                }
                Err(e) => {
                    warn!(error = %e, "response too large; stream reset");
                    let _ = send.reset(2u32.into());
                }
            }
        });
    }
    debug!(remote = %connection.remote_address(), "client connection closed");
}

/// A client of the cluster: sends requests to nodes, verifying each node's certificate against
/// the cluster CA, and keeps one connection per node.
///
/// ```no_run
/// # async fn example(ca_cert: Vec<u8>) -> Result<(), Box<dyn std::error::Error>> {
/// let client = raft_transport_quic::RpcClient::new(&ca_cert)?;
/// let reply = client.call("127.0.0.1:7001".parse()?, b"ping".to_vec()).await?;
/// # let _ = reply; Ok(()) }
/// ```
pub struct RpcClient {
    endpoint: quinn::Endpoint,
    connections: Mutex<HashMap<SocketAddr, quinn::Connection>>,
    max_frame_bytes: usize,
    timeout: std::time::Duration,
}

impl std::fmt::Debug for RpcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcClient").finish_non_exhaustive()
    }
}

impl RpcClient {
    /// A client trusting servers certified by the CA `ca_cert` (DER). Must run inside a Tokio
    /// runtime.
    pub fn new(ca_cert: &[u8]) -> Result<Self, TransportError> {
        let config = tls::client_config(ca_cert)?;
        let any: SocketAddr = ([0, 0, 0, 0], 0).into();
        let mut endpoint = quinn::Endpoint::client(any)
            .map_err(|source| TransportError::Bind { addr: any, source })?;
        endpoint.set_default_client_config(config);
        Ok(Self {
            endpoint,
            connections: Mutex::new(HashMap::new()),
            max_frame_bytes: 16 << 20,
            timeout: std::time::Duration::from_secs(5),
        })
    }

    /// Sets how long [`call`](Self::call) waits for a connection and an answer (default 5 s).
    pub fn with_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn connection(&self, addr: SocketAddr) -> Result<quinn::Connection, RpcError> {
        let mut connections = self.connections.lock().await;
        if let Some(connection) = connections.get(&addr) {
            if connection.close_reason().is_none() {
                return Ok(connection.clone());
            }
        }
        let connect_error = |reason: String| RpcError::Connect { addr, reason };
        let connection = self
            .endpoint
            .connect(addr, SERVER_NAME)
            .map_err(|e| connect_error(e.to_string()))?
            .await
            .map_err(|e| connect_error(e.to_string()))?;
        connections.insert(addr, connection.clone());
        Ok(connection)
    }

    /// Sends `request` to the node at `addr` and waits for its answer, up to the client's
    /// timeout.
    pub async fn call(&self, addr: SocketAddr, request: Vec<u8>) -> Result<Vec<u8>, RpcError> {
        let timeout = self.timeout;
        tokio::time::timeout(timeout, self.call_unbounded(addr, request))
            .await
            .unwrap_or(Err(RpcError::Timeout { addr, timeout }))
    }

    async fn call_unbounded(
        &self,
        addr: SocketAddr,
        request: Vec<u8>,
    ) -> Result<Vec<u8>, RpcError> {
        let connection = self.connection(addr).await?;
        let failed = |reason: String| RpcError::Failed { addr, reason };
        let (mut send, mut recv) = connection
            .open_bi()
            .await
            .map_err(|e| failed(e.to_string()))?;
        let frame = frame_bytes(&request, self.max_frame_bytes)?;
        send.write_all(&frame)
            .await
            .map_err(|e| failed(e.to_string()))?;
        send.finish().map_err(|e| failed(e.to_string()))?;
        match frame::read_payload(&mut recv, self.max_frame_bytes).await? {
            Some(response) => Ok(response),
            None => Err(failed("stream closed without a response".into())),
        }
    }
}
