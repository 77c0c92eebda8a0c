//! [`QuicNode`]: one UDP port per node, carrying peer traffic (mutual TLS, ALPN `raft-peer/1`)
//! and client requests (ALPN `raft-client/1`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use raft_core::{Message, NodeId, Transport};
use rustls::pki_types::CertificateDer;
use tokio::sync::{mpsc, Mutex};
use tracing::{debug, warn};

use crate::error::TransportError;
use crate::frame::{self, PeerFrame};
use crate::peer::{self, PeerLimits, PeerSender, Refused};
use crate::pki::NodeTls;
use crate::rpc::{self, RequestHandler};
use crate::tls;

/// How a [`QuicNode`] is set up.
#[derive(Clone, Debug)]
pub struct QuicConfig {
    /// This node's id; its certificate must name it.
    pub id: NodeId,
    /// Where to listen (UDP).
    pub listen: SocketAddr,
    /// Every other node of the cluster and its address.
    pub peers: HashMap<NodeId, SocketAddr>,
    /// Certificates and key.
    pub tls: NodeTls,
    /// Largest frame accepted or sent, in bytes (default 16 MiB). Larger incoming frames close
    /// the stream; larger outgoing messages are refused by `send`.
    pub max_frame_bytes: usize,
    /// Messages queued per peer and stream before `send` drops (default 1024).
    pub peer_queue_messages: usize,
    /// Bytes queued per peer before `send` drops (default 64 MiB).
    pub peer_queue_bytes: usize,
    /// Received messages waiting for `recv` before new ones are dropped (default 4096).
    pub inbound_queue: usize,
    /// First and longest delay between reconnect attempts (default 50 ms and 2 s).
    pub backoff: (Duration, Duration),
}

impl QuicConfig {
    /// A configuration with the defaults.
    pub fn new(
        id: NodeId,
        listen: SocketAddr,
        peers: HashMap<NodeId, SocketAddr>,
        tls: NodeTls,
    ) -> Self {
        Self {
            id,
            listen,
            peers,
            tls,
            max_frame_bytes: 16 << 20,
            peer_queue_messages: 1024,
            peer_queue_bytes: 64 << 20,
            inbound_queue: 4096,
            backoff: (Duration::from_millis(50), Duration::from_secs(2)),
        }
    }
}

/// What the accepting side needs, shared by its tasks.
struct Inbound {
    me: NodeId,
    peers: HashMap<NodeId, SocketAddr>,
    max_frame_bytes: usize,
    messages: mpsc::Sender<Message>,
    handler: Option<Arc<dyn RequestHandler>>,
}

/// A node's QUIC endpoint: a [`Transport`] to its peers, and optionally a server of client
/// requests.
///
/// ```no_run
/// # async fn example() -> Result<(), raft_transport_quic::TransportError> {
/// use raft_core::Transport;
/// use raft_transport_quic::{pki::ClusterCa, QuicConfig, QuicNode};
/// let ca = ClusterCa::generate("demo")?;
/// let addr1 = "127.0.0.1:7001".parse().unwrap();
/// let addr2 = "127.0.0.1:7002".parse().unwrap();
/// let config = QuicConfig::new(1, addr1, [(2, addr2)].into(), ca.issue_node(1)?);
/// let node = QuicNode::bind(config, None).await?;
/// while let Some(message) = node.recv().await {
///     // node.step(message) ...
/// #   let _ = message;
/// }
/// # Ok(()) }
/// ```
pub struct QuicNode {
    id: NodeId,
    endpoint: quinn::Endpoint,
    max_frame_bytes: usize,
    peers: std::sync::Mutex<HashMap<NodeId, PeerSender>>,
    peer_tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    inbound: Mutex<mpsc::Receiver<Message>>,
    accept_task: tokio::task::JoinHandle<()>,
    /// Set by `shutdown`: `send` refuses from then on.
    closed: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for QuicNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicNode")
            .field("id", &self.id)
            .field("addr", &self.endpoint.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl QuicNode {
    /// Binds the endpoint, starts accepting peers (and clients, if `handler` is given) and
    /// starts one sender per peer. Must run inside a Tokio runtime.
    pub async fn bind(
        config: QuicConfig,
        handler: Option<Arc<dyn RequestHandler>>,
    ) -> Result<Self, TransportError> {
        let server = tls::server_config(&config.tls)?;
        let client = tls::peer_client_config(&config.tls)?;
        let endpoint = quinn::Endpoint::server(server, config.listen).map_err(|source| {
            TransportError::Bind {
                addr: config.listen,
                source,
            }
        })?;
        let (messages, inbound_rx) = mpsc::channel(config.inbound_queue.max(1));
        let inbound = Arc::new(Inbound {
            me: config.id,
            peers: config.peers.clone(),
            max_frame_bytes: config.max_frame_bytes,
            messages,
            handler,
        });
        let accept_task = tokio::spawn(accept_loop(endpoint.clone(), inbound));
        let limits = PeerLimits {
            queue_messages: config.peer_queue_messages.max(1),
            queue_bytes: config.peer_queue_bytes,
            backoff_min: config.backoff.0,
            backoff_max: config.backoff.1,
            max_frame_bytes: config.max_frame_bytes,
        };
        let mut peers = HashMap::new();
        let mut tasks = Vec::new();
        for (&id, &addr) in &config.peers {
            let (sender, task) = peer::spawn(
                endpoint.clone(),
                client.clone(),
                config.id,
                id,
                addr,
                limits.clone(),
            );
            peers.insert(id, sender);
            tasks.push(task);
        }
        Ok(Self {
            id: config.id,
            endpoint,
            max_frame_bytes: config.max_frame_bytes,
            peers: std::sync::Mutex::new(peers),
            peer_tasks: std::sync::Mutex::new(tasks),
            inbound: Mutex::new(inbound_rx),
            accept_task,
            closed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The address the endpoint listens on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.endpoint.local_addr().ok()
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Stops sending new messages, waits (up to `drain`) until the messages already queued are
    /// written and acknowledged by the peers' QUIC stacks, then closes the endpoint.
    pub async fn shutdown(&self, drain: Duration) {
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
        // Dropping the senders closes the queues; each peer task writes what is left, finishes
        // its streams and ends.
        lock(&self.peers).clear();
        let tasks: Vec<_> = lock(&self.peer_tasks).drain(..).collect();
        let all = async {
            for task in tasks {
                // A peer task that panicked has nothing left to drain.
                let _ = task.await;
            }
        };
        if tokio::time::timeout(drain, all).await.is_err() {
            warn!(
                node = self.id,
                ?drain,
                "shutdown: some peers did not take their messages in time"
            );
        }
        self.accept_task.abort();
        self.endpoint.close(0u32.into(), b"shutdown");
        self.endpoint.wait_idle().await;
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded maps are only inserted into or cleared; a panic cannot leave them torn.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[async_trait]
impl Transport for QuicNode {
    type Error = TransportError;

    fn send(&self, message: Message) -> Result<(), TransportError> {
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(TransportError::Shutdown);
        }
        let to = message.to;
        let frame = frame::encode(&PeerFrame::Message(message), self.max_frame_bytes)?;
        let peers = lock(&self.peers);
        let Some(peer) = peers.get(&to) else {
            return Err(TransportError::UnknownPeer(to));
        };
        peer.try_send(frame).map_err(|refused| match refused {
            Refused::Full => TransportError::QueueFull(peer.id()),
            Refused::Closed => TransportError::Shutdown,
        })
    }

    async fn recv(&self) -> Option<Message> {
        self.inbound.lock().await.recv().await
    }
}

async fn accept_loop(endpoint: quinn::Endpoint, inbound: Arc<Inbound>) {
    while let Some(incoming) = endpoint.accept().await {
        let inbound = Arc::clone(&inbound);
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            match incoming.await {
                Ok(connection) => serve_connection(connection, inbound).await,
                Err(e) => {
                    warn!(node = inbound.me, %remote, error = %e, "refused connection (TLS handshake failed)")
                }
            }
        });
    }
}

async fn serve_connection(connection: quinn::Connection, inbound: Arc<Inbound>) {
    let remote = connection.remote_address();
    match tls::negotiated_alpn(&connection).as_deref() {
        Some(tls::ALPN_PEER) => {
            let Some(certs) = tls::peer_certificates(&connection) else {
                warn!(node = inbound.me, %remote, "peer connection without a certificate; closed");
                connection.close(2u32.into(), b"certificate required");
                return;
            };
            serve_peer(connection, certs, inbound).await;
        }
        Some(tls::ALPN_CLIENT) => match inbound.handler.clone() {
            Some(handler) => rpc::serve(connection, handler, inbound.max_frame_bytes).await,
            None => connection.close(3u32.into(), b"no client service here"),
        },
        _ => {
            warn!(node = inbound.me, %remote, "connection with an unknown protocol; closed");
            connection.close(4u32.into(), b"unknown protocol");
        }
    }
}

async fn serve_peer(
    connection: quinn::Connection,
    certs: Vec<CertificateDer<'static>>,
    inbound: Arc<Inbound>,
) {
    let certs = Arc::new(certs);
    while let Ok(stream) = connection.accept_uni().await {
        let (connection, certs, inbound) =
            (connection.clone(), Arc::clone(&certs), Arc::clone(&inbound));
        tokio::spawn(async move {
            if let Err(reason) = read_peer_stream(stream, &certs, &inbound).await {
                warn!(node = inbound.me, remote = %connection.remote_address(), %reason, "bad peer stream; connection closed");
                connection.close(5u32.into(), b"protocol violation");
            }
        });
    }
}

/// Reads one peer stream: a hello naming a cluster node the certificate belongs to, then
/// messages from that node to us. Messages claiming another sender or receiver are dropped;
/// a framing error ends the stream (and the connection) since the stream cannot be resynced.
async fn read_peer_stream(
    mut stream: quinn::RecvStream,
    certs: &[CertificateDer<'static>],
    inbound: &Inbound,
) -> Result<(), String> {
    let max = inbound.max_frame_bytes;
    let sender = match frame::read::<PeerFrame>(&mut stream, max).await {
        Ok(Some(PeerFrame::Hello { node_id })) => node_id,
        Ok(Some(PeerFrame::Message(_))) => return Err("stream did not start with a hello".into()),
        Ok(None) => return Ok(()),
        Err(e) => return Err(format!("reading hello: {e}")),
    };
    if !inbound.peers.contains_key(&sender) {
        return Err(format!(
            "hello from node {sender}, which is not in the cluster"
        ));
    }
    let Some(leaf) = certs.first() else {
        return Err("no certificate".into());
    };
    if !tls::certificate_names_node(leaf, sender) {
        return Err(format!("certificate does not belong to node {sender}"));
    }
    loop {
        let message = match frame::read::<PeerFrame>(&mut stream, max).await {
            Ok(Some(PeerFrame::Message(message))) => message,
            Ok(Some(PeerFrame::Hello { .. })) => return Err("second hello on a stream".into()),
            Ok(None) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        };
        if message.from != sender || message.to != inbound.me {
            warn!(
                node = inbound.me,
                peer = sender,
                from = message.from,
                to = message.to,
                "message with a sender or receiver that does not match the connection; dropped"
            );
            continue;
        }
        if inbound.messages.try_send(message).is_err() {
            // The node is not keeping up (or shutting down): drop, as the network would.
            debug!(
                node = inbound.me,
                peer = sender,
                "inbound queue full; message dropped"
            );
        }
    }
}
