//! [`RpcClient`]: calls nodes' client service, one bidirectional stream per request.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use tokio::sync::Mutex;

use crate::error::{RpcError, TransportError};
use crate::frame::{self, frame_bytes};
use crate::pki::{ClientTls, SERVER_NAME};
use crate::tls;

/// A client of the cluster: sends requests to nodes, verifying each node's certificate against
/// the cluster CA and presenting its own (from the same CA; nodes refuse clients without one),
/// and keeps one connection per node. Connecting to one node never delays calls to another:
/// a node that does not answer holds up only the calls addressed to it.
///
/// ```no_run
/// # async fn example(ca: raft_transport_quic::pki::ClusterCa) -> Result<(), Box<dyn std::error::Error>> {
/// let client = raft_transport_quic::RpcClient::new(&ca.issue_client("alice")?)?;
/// let reply = client.call("127.0.0.1:7001".parse()?, b"ping".to_vec()).await?;
/// # let _ = reply; Ok(()) }
/// ```
pub struct RpcClient {
    endpoint: quinn::Endpoint,
    /// One slot per node; a slot's lock is held while connecting to that node only, so
    /// concurrent callers share one connection attempt.
    connections: std::sync::Mutex<HashMap<SocketAddr, ConnectionSlot>>,
    max_frame_bytes: usize,
    timeout: Duration,
}

type ConnectionSlot = Arc<Mutex<Option<quinn::Connection>>>;

impl std::fmt::Debug for RpcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcClient").finish_non_exhaustive()
    }
}

impl RpcClient {
    /// A client with the identity `tls` (see
    /// [`ClusterCa::issue_client`](crate::pki::ClusterCa::issue_client)), trusting servers
    /// certified by `tls.ca_cert`. Must run inside a Tokio runtime.
    pub fn new(tls: &ClientTls) -> Result<Self, TransportError> {
        let config = tls::client_config(tls)?;
        let any: SocketAddr = ([0, 0, 0, 0], 0).into();
        let mut endpoint = crate::socket::endpoint(any, quinn::EndpointConfig::default(), None)
            .map_err(|source| TransportError::Bind { addr: any, source })?;
        endpoint.set_default_client_config(config);
        Ok(Self {
            endpoint,
            connections: std::sync::Mutex::new(HashMap::new()),
            max_frame_bytes: 16 << 20,
            timeout: Duration::from_secs(5),
        })
    }

    /// Sets how long [`call`](Self::call) waits for a connection and an answer (default 5 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn connection(&self, addr: SocketAddr) -> Result<quinn::Connection, RpcError> {
        let slot = {
            // A poisoned map is still a consistent map: entries are only ever inserted whole.
            let mut slots = self
                .connections
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            Arc::clone(slots.entry(addr).or_default())
        };
        let mut slot = slot.lock().await;
        if let Some(connection) = slot.as_ref() {
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
        *slot = Some(connection.clone());
        Ok(connection)
    }

    /// Closes every connection (the nodes learn it at once instead of after their idle timeout)
    /// and waits up to `grace` for the close to reach them. Calls made afterwards fail. A
    /// process that exits right after its last call should close first: nodes limit how many
    /// client connections one address may hold open.
    pub async fn close(&self, grace: Duration) {
        self.endpoint.close(0u32.into(), b"client closed");
        let _ = tokio::time::timeout(grace, self.endpoint.wait_idle()).await;
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
