//! [`QuicNode`]: one UDP port per node, carrying peer traffic (mutual TLS, ALPN `raft-peer/1`)
//! and client requests (ALPN `raft-client/1`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use raft_core::{Message, NodeId, Transport};
use tokio::sync::{mpsc, watch, Mutex};
use tracing::warn;

use crate::admission::Admission;
use crate::error::TransportError;
use crate::frame::{self, PeerFrame};
use crate::inbound::{self, Inbound};
use crate::limits::ClientLimits;
use crate::peer::{self, PeerContext, PeerLimits, PeerSender, Refused};
use crate::pki::NodeTls;
use crate::rpc::{ClientService, RequestHandler};
use crate::stats::{Counters, DropReason, TransportStats};
use crate::tls;

/// How a [`QuicNode`] is set up.
#[derive(Clone, Debug)]
pub struct QuicConfig {
    /// This node's id; its certificate must name it.
    pub id: NodeId,
    /// Where to listen (UDP).
    pub listen: SocketAddr,
    /// Every other node of the cluster and its address. Only these nodes' certificates are
    /// accepted on the peer protocol, and connections from these addresses have a reserve of
    /// their own that clients cannot exhaust.
    pub peers: HashMap<NodeId, SocketAddr>,
    /// Certificates and key.
    pub tls: NodeTls,
    /// Largest frame accepted from peers or sent, in bytes (default 16 MiB); also the largest
    /// client response. Larger incoming frames close the stream; larger outgoing messages are
    /// refused by `send`.
    pub max_frame_bytes: usize,
    /// Messages queued per peer and stream before `send` drops (default 1024).
    pub peer_queue_messages: usize,
    /// Bytes queued per peer before `send` drops (default 64 MiB).
    pub peer_queue_bytes: usize,
    /// Received messages waiting for `recv` before new ones are dropped (default 4096).
    pub inbound_queue: usize,
    /// First and longest delay between reconnect attempts (default 50 ms and 2 s).
    pub backoff: (Duration, Duration),
    /// Time an incoming connection has to finish its TLS handshake (default 5 s).
    pub handshake_timeout: Duration,
    /// Limits on clients (and anyone else who is not a member); see [`ClientLimits`].
    pub clients: ClientLimits,
    /// Warnings about drops and refusals are logged at most once per peer and reason per
    /// interval, with the count since the previous line (default 10 s).
    pub warn_interval: Duration,
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
            handshake_timeout: Duration::from_secs(5),
            clients: ClientLimits::default(),
            warn_interval: Duration::from_secs(10),
        }
    }
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
    accepting: Arc<Inbound>,
    accept_task: tokio::task::JoinHandle<()>,
    counters: Arc<Counters>,
    /// Set by `shutdown`: `send` refuses from then on.
    closed: std::sync::atomic::AtomicBool,
    /// Tells the peer tasks to stop dialing.
    shutdown: watch::Sender<bool>,
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
        config.clients.validate()?;
        let server = tls::server_config_with(&config.tls, &config.clients)?;
        let client = tls::peer_client_config(&config.tls)?;
        let endpoint = crate::socket::endpoint(
            config.listen,
            crate::socket::node_endpoint_config(&config.tls.key),
            Some(server),
        )
        .map_err(|source| TransportError::Bind {
            addr: config.listen,
            source,
        })?;
        let counters = Arc::new(Counters::new(
            config.id,
            config.peers.keys().copied(),
            config.warn_interval,
        ));
        let (messages, inbound_rx) = mpsc::channel(config.inbound_queue.max(1));
        let clients = handler.map(|handler| {
            Arc::new(ClientService::new(
                handler,
                config.clients.clone(),
                config.max_frame_bytes,
                Arc::clone(&counters),
            ))
        });
        let accepting = Arc::new(Inbound {
            me: config.id,
            peers: config.peers.clone(),
            max_frame_bytes: config.max_frame_bytes,
            handshake_timeout: config.handshake_timeout,
            messages,
            clients,
            counters: Arc::clone(&counters),
            admission: Arc::new(Admission::new(
                &config.clients,
                config.peers.values().copied(),
            )),
            peer_connections: std::sync::Mutex::new(HashMap::new()),
        });
        let accept_task = tokio::spawn(inbound::accept_loop(
            endpoint.clone(),
            Arc::clone(&accepting),
        ));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let context = PeerContext {
            endpoint: endpoint.clone(),
            client,
            me: config.id,
            limits: PeerLimits {
                queue_messages: config.peer_queue_messages.max(1),
                queue_bytes: config.peer_queue_bytes,
                backoff_min: config.backoff.0,
                backoff_max: config.backoff.1,
                max_frame_bytes: config.max_frame_bytes,
            },
            counters: Arc::clone(&counters),
            shutdown: shutdown_rx,
        };
        let mut peers = HashMap::new();
        let mut tasks = Vec::new();
        for (&id, &addr) in &config.peers {
            let (sender, task) = peer::spawn(context.clone(), id, addr);
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
            accepting,
            accept_task,
            counters,
            closed: std::sync::atomic::AtomicBool::new(false),
            shutdown,
        })
    }

    /// The node's counters: messages sent, delivered and dropped per peer and reason,
    /// connections and requests refused per reason, and a few gauges. Cheap (atomic loads);
    /// meant for a metrics endpoint.
    pub fn stats(&self) -> TransportStats {
        let mut stats = self.counters.snapshot();
        stats.incoming_connections = self.accepting.admission.open();
        stats.client_bytes_held = self
            .accepting
            .clients
            .as_ref()
            .map_or(0, |clients| clients.bytes_held());
        stats
    }

    /// The address the endpoint listens on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.endpoint.local_addr().ok()
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Stops sending new messages, waits until the messages already queued for connected
    /// peers are written and acknowledged by their QUIC stacks, then closes the endpoint; all
    /// within `deadline`. Messages for peers that are not connected are dropped at once, and
    /// what is still unwritten at the deadline is abandoned.
    ///
    /// The UDP socket is released once the closing connections have drained (a few round trips)
    /// and the node is dropped; a node started again on the same address in the same process
    /// may have to retry [`QuicNode::bind`] while it sees [`TransportError::Bind`] with
    /// `AddrInUse`.
    pub async fn shutdown(&self, deadline: Duration) {
        let end = tokio::time::Instant::now() + deadline;
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
        // Dropping the senders closes the queues; each peer task writes what is left, finishes
        // its streams and ends. A peer task still dialing gives up.
        lock(&self.peers).clear();
        self.shutdown.send_replace(true);
        let tasks: Vec<_> = lock(&self.peer_tasks).drain(..).collect();
        let aborts: Vec<_> = tasks.iter().map(|task| task.abort_handle()).collect();
        let all = async {
            for task in tasks {
                // A peer task that panicked or was aborted has nothing left to drain.
                let _ = task.await;
            }
        };
        if tokio::time::timeout_at(end, all).await.is_err() {
            warn!(
                node = self.id,
                ?deadline,
                "shutdown: some peers did not take their messages in time"
            );
            for abort in aborts {
                abort.abort();
            }
        }
        self.accept_task.abort();
        self.endpoint.close(0u32.into(), b"shutdown");
        // Closing connections linger for a few round trips (longer towards an unreachable
        // peer); they finish in the background once the deadline is spent.
        let _ = tokio::time::timeout_at(end, self.endpoint.wait_idle()).await;
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
        let bytes = frame.len();
        match peer.try_send(frame) {
            Ok(()) => {
                self.counters.sent(to, bytes);
                Ok(())
            }
            Err(Refused::Full) => {
                self.counters
                    .dropped(to, DropReason::SendQueueFull, &"send refused");
                Err(TransportError::QueueFull(to))
            }
            Err(Refused::Closed) => Err(TransportError::Shutdown),
        }
    }

    async fn recv(&self) -> Option<Message> {
        self.inbound.lock().await.recv().await
    }
}
