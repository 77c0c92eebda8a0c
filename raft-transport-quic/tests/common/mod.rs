//! Helpers shared by the integration tests: a cluster of real QUIC nodes on loopback, raw peer
//! and client connections for misbehaving, and small request handlers.
#![allow(dead_code)] // Each test binary uses its own subset.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use raft_core::{Message, MessageBody, NodeId, Transport};
use raft_transport_quic::pki::{peer_name, ClientTls, ClusterCa, NodeTls, SERVER_NAME};
use raft_transport_quic::{tls, QuicConfig, QuicNode, RequestHandler};

/// A free UDP port on 127.0.0.1.
pub fn free_addr() -> SocketAddr {
    // Bind port 0 to let the OS pick a free port, then release it for the node to take.
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a probe socket");
    socket.local_addr().expect("probe address")
}

/// A small message.
pub fn message(from: NodeId, to: NodeId, term: u64) -> Message {
    Message {
        from,
        to,
        term,
        body: MessageBody::VoteResponse { granted: true },
    }
}

/// A message of about `bytes` bytes.
pub fn big_message(from: NodeId, to: NodeId, bytes: usize) -> Message {
    Message {
        from,
        to,
        term: 1,
        body: MessageBody::InstallSnapshotRequest {
            meta: raft_core::SnapshotMeta {
                last_index: 10,
                last_term: 1,
            },
            offset: 0,
            data: vec![7; bytes],
            done: false,
        },
    }
}

/// A cluster's CA and the addresses of its nodes (not started).
pub struct Cluster {
    pub ca: ClusterCa,
    pub addrs: HashMap<NodeId, SocketAddr>,
}

impl Cluster {
    pub fn new(ids: &[NodeId]) -> Self {
        Self {
            ca: ClusterCa::generate("test").unwrap(),
            addrs: ids.iter().map(|&id| (id, free_addr())).collect(),
        }
    }

    pub fn config(&self, id: NodeId) -> QuicConfig {
        let peers = self
            .addrs
            .iter()
            .filter(|(&peer, _)| peer != id)
            .map(|(&peer, &addr)| (peer, addr))
            .collect();
        let mut config =
            QuicConfig::new(id, self.addrs[&id], peers, self.ca.issue_node(id).unwrap());
        config.backoff = (Duration::from_millis(20), Duration::from_millis(200));
        config
    }

    pub async fn start(&self, id: NodeId) -> QuicNode {
        QuicNode::bind(self.config(id), None).await.unwrap()
    }

    /// Starts node `id` again on the address an earlier incarnation used. The earlier endpoint
    /// releases its UDP socket only once its closing connections have drained and its background
    /// tasks have ended, so binding is retried while the address is still in use (up to 10 s).
    pub async fn restart(&self, id: NodeId) -> QuicNode {
        let give_up = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match QuicNode::bind(self.config(id), None).await {
                Ok(node) => return node,
                Err(raft_transport_quic::TransportError::Bind { source, .. })
                    if source.kind() == std::io::ErrorKind::AddrInUse
                        && tokio::time::Instant::now() < give_up =>
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(error) => panic!("node {id} could not start again: {error}"),
            }
        }
    }
}

/// The next message within `timeout`, if any.
pub async fn recv_within(node: &QuicNode, timeout: Duration) -> Option<Message> {
    tokio::time::timeout(timeout, node.recv())
        .await
        .ok()
        .flatten()
}

/// Sends `message` every 50 ms until `to` receives it (up to 10 s). Returns it, with every other
/// message received meanwhile (late retries of earlier deliveries, or anything unexpected).
pub async fn deliver_noting_others(
    from: &QuicNode,
    to: &QuicNode,
    message: Message,
) -> (Message, Vec<Message>) {
    let mut others = Vec::new();
    for _ in 0..200 {
        let _ = from.send(message.clone());
        while let Some(got) = recv_within(to, Duration::from_millis(50)).await {
            if got == message {
                return (got, others);
            }
            others.push(got);
        }
    }
    panic!("message {message:?} never delivered");
}

/// [`deliver_noting_others`] without the others.
pub async fn deliver(from: &QuicNode, to: &QuicNode, message: Message) -> Message {
    deliver_noting_others(from, to, message).await.0
}

/// A raw peer connection to `addr` presenting `tls` (a real cluster certificate).
pub async fn raw_peer(tls: &NodeTls, addr: SocketAddr, target: NodeId) -> quinn::Connection {
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(tls::peer_client_config(tls).unwrap());
    endpoint
        .connect(addr, &peer_name(target))
        .unwrap()
        .await
        .unwrap()
}

/// Answers with the request reversed.
pub struct Echo;

#[async_trait::async_trait]
impl RequestHandler for Echo {
    async fn handle(&self, mut request: Vec<u8>) -> Vec<u8> {
        request.reverse();
        request
    }
}

/// Never answers.
pub struct Silent;

#[async_trait::async_trait]
impl RequestHandler for Silent {
    async fn handle(&self, _request: Vec<u8>) -> Vec<u8> {
        std::future::pending().await
    }
}

/// A raw client connection to `addr` from an endpoint bound to `ip`, presenting `tls`.
pub async fn raw_client(
    tls: &ClientTls,
    addr: SocketAddr,
    ip: IpAddr,
) -> Result<quinn::Connection, quinn::ConnectionError> {
    let mut endpoint = quinn::Endpoint::client(SocketAddr::new(ip, 0)).unwrap();
    endpoint.set_default_client_config(tls::client_config(tls).unwrap());
    endpoint.connect(addr, SERVER_NAME).unwrap().await
}

/// The loopback address `127.0.0.<k>`.
pub fn loopback(k: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, k])
}

/// Waits (up to 10 s, polling) until `condition` holds; false if it never did.
pub async fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    for _ in 0..1000 {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    condition()
}
