//! Helpers shared by the integration tests: a cluster of real QUIC nodes on loopback, raw peer
//! and client connections for misbehaving, and small request handlers.
#![allow(dead_code)] // Each test binary uses its own subset.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use raft_core::{Message, MessageBody, NodeId, Transport};
use raft_transport_quic::pki::{peer_name, ClientTls, ClusterCa, NodeTls, SERVER_NAME};
use raft_transport_quic::{tls, QuicConfig, QuicNode, RequestHandler};

/// A UDP address on 127.0.0.1 for a node: free when handed out, and never handed out twice by
/// this process.
///
/// Binding port 0 and releasing the port for the node to take would not do: until the node
/// binds it (or while the node is down for a restart), the kernel may give that port to any
/// socket another test binds to port 0 (every client endpoint does), and the node then cannot
/// start. So the ports come from below the kernel's ephemeral range, which it never picks for
/// port 0; a counter hands each one out once per process, starting from an offset derived
/// from the process id so that test binaries running at once seldom meet, and ports another
/// process holds are skipped.
pub fn free_addr() -> SocketAddr {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let (first, count) = port_pool();
    let offset = (std::process::id() as usize).wrapping_mul(7919) % count;
    for _ in 0..count {
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = first + ((offset + k) % count) as u16;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        // Held by another process (or one of our ports still in use after `count` laps).
        if UdpSocket::bind(addr).is_ok() {
            return addr;
        }
    }
    panic!(
        "no free UDP port in {first}..{}",
        usize::from(first) + count
    );
}

/// The ports `free_addr` hands out: the first and how many. Below the kernel's ephemeral range
/// (`/proc/sys/net/ipv4/ip_local_port_range`, Linux's default assumed elsewhere) and above
/// 10000, or above the range if it starts too low for that.
fn port_pool() -> (u16, usize) {
    let (low, high) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| {
            let mut bounds = range.split_whitespace().map(|n| n.parse::<u16>().ok());
            Some((bounds.next()??, bounds.next()??))
        })
        .unwrap_or((32768, 60999));
    const FIRST: u16 = 10_000;
    if low > FIRST + 1000 {
        (FIRST, usize::from(low - FIRST))
    } else if high < u16::MAX - 1000 {
        (high + 1, usize::from(u16::MAX - high))
    } else {
        panic!("the ephemeral port range {low}-{high} leaves no room for test ports");
    }
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
        self.restart_with(self.config(id)).await
    }

    /// [`restart`](Self::restart) with `config` (for example the earlier incarnation's, with
    /// its key: a real node keeps its key across restarts).
    pub async fn restart_with(&self, config: QuicConfig) -> QuicNode {
        let id = config.id;
        let give_up = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match QuicNode::bind(config.clone(), None).await {
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
