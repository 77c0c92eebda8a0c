//! Hostile peers and clients against a real node on loopback: certificates, connection and
//! request limits, deadlines, the client budget, and the counters that report what was dropped
//! or refused. Small limits keep every test to a second or two.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use raft_core::Transport;
use raft_transport_quic::frame::{self, PeerFrame};
use raft_transport_quic::pki::{ClusterCa, NodeTls, SERVER_NAME};
use raft_transport_quic::{
    tls, ClientLimits, DropReason, QuicNode, Refusal, RequestHandler, RpcClient, TransportError,
};

const MAX: usize = 16 << 20;

/// A node with client service `handler` and client limits `limits`.
async fn serving(
    cluster: &Cluster,
    id: u64,
    handler: impl RequestHandler,
    limits: ClientLimits,
) -> QuicNode {
    let mut config = cluster.config(id);
    config.clients = limits;
    QuicNode::bind(config, Some(Arc::new(handler)))
        .await
        .unwrap()
}

fn refused(node: &QuicNode, peer: Option<u64>, reason: Refusal) -> u64 {
    node.stats()
        .refused
        .get(&(peer, reason))
        .copied()
        .unwrap_or(0)
}

fn dropped(node: &QuicNode, peer: u64, reason: DropReason) -> u64 {
    node.stats()
        .dropped
        .get(&(peer, reason))
        .copied()
        .unwrap_or(0)
}

/// Waits up to 5 s for the node to close `connection`, and checks that it used application
/// error code `code` (`what` names the connection in failures).
///
/// The code is lost if this end handles the node's close late, after the node has already
/// forgotten the connection (its closing period is a few round trips): quinn answers the close,
/// the node's endpoint answers that with a stateless reset, and quinn then reports the reset
/// instead of the close. A reset still means the node closed the connection (only an endpoint
/// without its state sends one); each test also checks why in the node's counters.
async fn assert_closed_with(connection: &quinn::Connection, code: u64, what: &str) {
    match tokio::time::timeout(Duration::from_secs(5), connection.closed()).await {
        Ok(quinn::ConnectionError::ApplicationClosed(close)) => {
            assert_eq!(close.error_code.into_inner(), code, "{what}: another code");
        }
        Ok(quinn::ConnectionError::Reset) => {}
        Ok(other) => panic!("{what}: closed otherwise: {other}"),
        Err(_) => panic!("{what}: kept open"),
    }
}

/// Opens a request stream and writes `bytes` (a frame, or part of one) on it.
async fn raw_request(
    connection: &quinn::Connection,
    bytes: &[u8],
    finish: bool,
) -> (quinn::SendStream, quinn::RecvStream) {
    let (mut send, recv) = connection.open_bi().await.unwrap();
    send.write_all(bytes).await.unwrap();
    if finish {
        send.finish().unwrap();
    }
    (send, recv)
}

/// The stream error code the node reset `recv` with, waiting up to 5 s.
async fn reset_code(recv: &mut quinn::RecvStream) -> Option<u64> {
    match tokio::time::timeout(Duration::from_secs(5), frame::read_payload(recv, MAX)).await {
        Ok(Err(frame::FrameError::Stream(e))) => {
            Some(e.rsplit(' ').next()?.parse().unwrap_or(u64::MAX))
        }
        Ok(other) => panic!("not reset: {other:?}"),
        Err(_) => None,
    }
}

/// Whether `future` is still pending after `wait` (it must not complete).
async fn stays_pending<F: std::future::Future>(future: F, wait: Duration) -> bool {
    tokio::time::timeout(wait, future).await.is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_a_certificate_from_the_cluster_ca_are_refused_in_the_handshake() {
    let cluster = Cluster::new(&[1]);
    let node = serving(&cluster, 1, Echo, ClientLimits::default()).await;
    let addr = cluster.addrs[&1];
    // No certificate at all (a hand-made client: RpcClient cannot be built without one).
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(
            cluster.ca.cert_der().to_vec(),
        ))
        .unwrap();
    let mut anonymous = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    anonymous.alpn_protocols = vec![tls::ALPN_CLIENT.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(anonymous).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    // TLS 1.3 lets the client finish its side before the server checks it; the node's
    // refusal then ends the connection before any request is answered.
    if let Ok(connection) = endpoint.connect(addr, SERVER_NAME).unwrap().await {
        let answered = async {
            let (mut send, mut recv) = connection.open_bi().await.ok()?;
            send.write_all(&frame::frame_bytes(b"hi", MAX).unwrap())
                .await
                .ok()?;
            send.finish().ok()?;
            frame::read_payload(&mut recv, MAX).await.ok()?
        };
        let answer = tokio::time::timeout(Duration::from_secs(5), answered).await;
        assert!(
            matches!(answer, Ok(None)),
            "a client without a certificate was answered: {answer:?}"
        );
    }
    // A certificate from another CA (the client itself trusts ours).
    let other = ClusterCa::generate("other").unwrap();
    let mut foreign = other.issue_client("mallory").unwrap();
    foreign.ca_cert = cluster.ca.cert_der().to_vec();
    let result = RpcClient::new(&foreign).unwrap().call(addr, vec![1]).await;
    assert!(result.is_err(), "{result:?}");
    // A client of the cluster gets in.
    let client = RpcClient::new(&cluster.ca.issue_client("alice").unwrap()).unwrap();
    assert_eq!(client.call(addr, vec![1, 2]).await.unwrap(), vec![2, 1]);
    assert!(eventually(|| refused(&node, None, Refusal::Handshake) == 2).await);
    node.shutdown(Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_whose_certificate_names_no_member_is_closed_at_once() {
    let cluster = Cluster::new(&[1, 2]);
    let node = cluster.start(1).await;
    let addr = cluster.addrs[&1];
    // Node 7 has a certificate from the CA but is not a member; it opens no stream at all.
    let stranger = raw_peer(&cluster.ca.issue_node(7).unwrap(), addr, 1).await;
    assert_closed_with(&stranger, 2, "a node that is not a member").await;
    // A client certificate on the peer protocol names no node either.
    let client = cluster.ca.issue_client("c").unwrap();
    let posing = NodeTls {
        ca_cert: client.ca_cert,
        cert: client.cert,
        key: client.key,
    };
    let posing = raw_peer(&posing, addr, 1).await;
    assert_closed_with(&posing, 2, "a client posing as a peer").await;
    assert_eq!(refused(&node, None, Refusal::NotAMember), 2);
    node.shutdown(Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_connection_from_a_member_replaces_the_older_one() {
    let cluster = Cluster::new(&[1, 2]);
    let node = cluster.start(1).await;
    let tls2 = cluster.ca.issue_node(2).unwrap();
    let hello = frame::encode(&PeerFrame::Hello { node_id: 2 }, MAX).unwrap();
    let send_on = |connection: quinn::Connection, term| {
        let hello = hello.clone();
        async move {
            let mut stream = connection.open_uni().await.unwrap();
            stream.write_all(&hello).await.unwrap();
            let m = frame::encode(&PeerFrame::Message(message(2, 1, term)), MAX).unwrap();
            stream.write_all(&m).await.unwrap();
            stream
        }
    };
    let old = raw_peer(&tls2, cluster.addrs[&1], 1).await;
    let _s1 = send_on(old.clone(), 1).await;
    assert_eq!(
        recv_within(&node, Duration::from_secs(5))
            .await
            .map(|m| m.term),
        Some(1)
    );
    let new = raw_peer(&tls2, cluster.addrs[&1], 1).await;
    assert_closed_with(&old, 6, "the older connection").await;
    let _s2 = send_on(new.clone(), 2).await;
    assert_eq!(
        recv_within(&node, Duration::from_secs(5))
            .await
            .map(|m| m.term),
        Some(2)
    );
    // The older connection's end did not disturb the newer one's place: a third replaces it.
    let third = raw_peer(&tls2, cluster.addrs[&1], 1).await;
    assert_closed_with(&new, 6, "the second connection").await;
    let _s3 = send_on(third.clone(), 3).await;
    assert_eq!(
        recv_within(&node, Duration::from_secs(5))
            .await
            .map(|m| m.term),
        Some(3)
    );
    assert_eq!(refused(&node, Some(2), Refusal::Replaced), 2);
    node.shutdown(Duration::from_millis(200)).await;
}

/// Holds every request until released, counting those it holds.
#[derive(Clone)]
struct Gate {
    inside: Arc<AtomicUsize>,
    open: Arc<tokio::sync::Semaphore>,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            inside: Arc::default(),
            open: Arc::new(tokio::sync::Semaphore::new(0)),
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for Gate {
    async fn handle(&self, request: Vec<u8>) -> Vec<u8> {
        self.inside.fetch_add(1, Ordering::SeqCst);
        // Never closed: a permit always comes once released.
        let _ = self.open.acquire().await.map(|permit| permit.forget());
        self.inside.fetch_sub(1, Ordering::SeqCst);
        request
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_get_no_unidirectional_streams_and_a_bounded_number_of_requests() {
    let cluster = Cluster::new(&[1]);
    let gate = Gate::default();
    let limits = ClientLimits {
        max_concurrent_requests: 2,
        ..ClientLimits::default()
    };
    let node = serving(&cluster, 1, gate.clone(), limits).await;
    let tls = cluster.ca.issue_client("c").unwrap();
    let connection = raw_client(&tls, cluster.addrs[&1], loopback(1))
        .await
        .unwrap();
    assert!(
        stays_pending(connection.open_uni(), Duration::from_millis(300)).await,
        "a client could open a unidirectional stream"
    );
    let request = frame::frame_bytes(b"req", MAX).unwrap();
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(raw_request(&connection, &request, true).await);
    }
    assert!(eventually(|| gate.inside.load(Ordering::SeqCst) == 2).await);
    assert!(
        stays_pending(connection.open_bi(), Duration::from_millis(300)).await,
        "a third request could start"
    );
    gate.open.add_permits(100);
    for (_, recv) in &mut held {
        assert_eq!(
            frame::read_payload(recv, MAX).await.unwrap().as_deref(),
            Some(&b"req"[..])
        );
    }
    // Their slots are free again.
    let (_, mut recv) = raw_request(&connection, &request, true).await;
    assert!(frame::read_payload(&mut recv, MAX).await.unwrap().is_some());
    node.shutdown(Duration::from_millis(200)).await;
}

/// Never answers a request starting with `slow`; echoes the others.
struct SlowOnRequest;

#[async_trait::async_trait]
impl RequestHandler for SlowOnRequest {
    async fn handle(&self, request: Vec<u8>) -> Vec<u8> {
        if request.starts_with(b"slow") {
            std::future::pending::<()>().await;
        }
        request
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_slow_and_unanswered_requests_are_reset_and_counted() {
    let cluster = Cluster::new(&[1]);
    let limits = ClientLimits {
        max_request_bytes: 1024,
        // Short enough for a quick test, long enough for the well-behaved request at the end
        // to be read, answered and acknowledged within them however loaded the machine is.
        read_timeout: Duration::from_secs(1),
        handler_timeout: Duration::from_secs(1),
        ..ClientLimits::default()
    };
    let node = serving(&cluster, 1, SlowOnRequest, limits).await;
    let tls = cluster.ca.issue_client("c").unwrap();
    let connection = raw_client(&tls, cluster.addrs[&1], loopback(1))
        .await
        .unwrap();
    // Announces more than the client limit (though far less than the frame limit).
    let (_s, mut too_large) = raw_request(&connection, &2048u32.to_be_bytes(), false).await;
    assert_eq!(reset_code(&mut too_large).await, Some(1));
    // Sends half of its request, then nothing.
    let mut half = 100u32.to_be_bytes().to_vec();
    half.extend_from_slice(&[0; 50]);
    let (_s1, mut stalled) = raw_request(&connection, &half, false).await;
    // A request the handler never answers.
    let slow = frame::frame_bytes(b"slow", MAX).unwrap();
    let (_s2, mut unanswered) = raw_request(&connection, &slow, true).await;
    // Both time out, together.
    let (stalled, unanswered) = tokio::join!(reset_code(&mut stalled), reset_code(&mut unanswered));
    assert_eq!(stalled, Some(3), "never timed out");
    assert_eq!(unanswered, Some(4), "never timed out");
    // The connection still serves.
    let ok = frame::frame_bytes(b"ok", MAX).unwrap();
    let (_s, mut recv) = raw_request(&connection, &ok, true).await;
    assert_eq!(
        frame::read_payload(&mut recv, MAX)
            .await
            .unwrap()
            .as_deref(),
        Some(&b"ok"[..])
    );
    for reason in [
        Refusal::RequestTooLarge,
        Refusal::ReadTimeout,
        Refusal::HandlerTimeout,
    ] {
        assert_eq!(refused(&node, None, reason), 1, "{reason:?}");
    }
    // Counted once the client acknowledged the answer.
    assert!(eventually(|| node.stats().requests_served == 1).await);
    node.shutdown(Duration::from_millis(200)).await;
}

/// Holds requests of more than 1 KiB until released; echoes small ones at once.
#[derive(Clone, Default)]
struct GateLarge(Gate);

#[async_trait::async_trait]
impl RequestHandler for GateLarge {
    async fn handle(&self, request: Vec<u8>) -> Vec<u8> {
        if request.len() > 1024 {
            self.0.handle(request).await
        } else {
            request
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_share_a_byte_budget_and_small_ones_do_not_depend_on_it() {
    let cluster = Cluster::new(&[1]);
    let gate = GateLarge::default();
    let limits = ClientLimits {
        max_request_bytes: 200 << 10,
        buffer_bytes: 256 << 10,
        ..ClientLimits::default()
    };
    let node = serving(&cluster, 1, gate.clone(), limits).await;
    let tls = cluster.ca.issue_client("c").unwrap();
    let connection = raw_client(&tls, cluster.addrs[&1], loopback(1))
        .await
        .unwrap();
    // A request of 200 KiB takes most of the budget while its handler holds it.
    let big = frame::frame_bytes(&vec![7; 200 << 10], MAX).unwrap();
    let (_s, mut first) = raw_request(&connection, &big, true).await;
    assert!(eventually(|| gate.0.inside.load(Ordering::SeqCst) == 1).await);
    let held = node.stats().client_bytes_held;
    assert_eq!(
        held,
        (200 << 10) + 4 - 4096,
        "the announced length, beyond 4 KiB"
    );
    // Announcing another is refused at once: busy.
    let (_s, mut second) = raw_request(&connection, &(200u32 << 10).to_be_bytes(), false).await;
    assert_eq!(reset_code(&mut second).await, Some(5));
    assert_eq!(refused(&node, None, Refusal::Busy), 1);
    // A small request does not need the budget.
    let small = frame::frame_bytes(b"small", MAX).unwrap();
    let (_s, mut recv) = raw_request(&connection, &small, true).await;
    assert_eq!(
        frame::read_payload(&mut recv, MAX)
            .await
            .unwrap()
            .as_deref(),
        Some(&b"small"[..])
    );
    // Once the first is answered (and acknowledged), its bytes return to the budget.
    gate.0.open.add_permits(100);
    let answer = frame::read_payload(&mut first, MAX).await.unwrap().unwrap();
    assert_eq!(answer.len(), 200 << 10);
    assert!(eventually(|| node.stats().client_bytes_held == 0).await);
    let (_s, mut third) = raw_request(&connection, &big, true).await;
    let answer = frame::read_payload(&mut third, MAX).await.unwrap().unwrap();
    assert_eq!(answer.len(), 200 << 10);
    node.shutdown(Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_limited_in_total_and_per_address_but_members_still_get_in() {
    let cluster = Cluster::new(&[1, 2]);
    let limits = ClientLimits {
        max_connections: 3,
        max_connections_per_ip: 2,
        ..ClientLimits::default()
    };
    let n1 = serving(&cluster, 1, Echo, limits).await;
    let addr = cluster.addrs[&1];
    let tls = cluster.ca.issue_client("c").unwrap();
    let a1 = raw_client(&tls, addr, loopback(1)).await.unwrap();
    let _a2 = raw_client(&tls, addr, loopback(1)).await.unwrap();
    assert!(raw_client(&tls, addr, loopback(1)).await.is_err());
    assert_eq!(refused(&n1, None, Refusal::TooManyFromAddress), 1);
    let _b1 = raw_client(&tls, addr, loopback(2)).await.unwrap();
    assert!(raw_client(&tls, addr, loopback(3)).await.is_err());
    assert_eq!(refused(&n1, None, Refusal::TooManyConnections), 1);
    // Node 2 connects from its own address, which has a reserve.
    let n2 = cluster.start(2).await;
    deliver(&n2, &n1, message(2, 1, 1)).await;
    // A connection that ends frees its place.
    a1.close(0u32.into(), b"bye");
    assert!(eventually(|| n1.stats().incoming_connections == 3).await);
    raw_client(&tls, addr, loopback(1)).await.unwrap();
    n1.shutdown(Duration::from_millis(200)).await;
    n2.shutdown(Duration::from_millis(200)).await;
}

/// Answers after 1.5 s.
struct Sleepy;

#[async_trait::async_trait]
impl RequestHandler for Sleepy {
    async fn handle(&self, request: Vec<u8>) -> Vec<u8> {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        request
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_client_connections_are_closed_but_not_during_a_request() {
    let cluster = Cluster::new(&[1]);
    // The request must reach the node within the idle timeout of the handshake (a round trip:
    // the node grants streams only then): 1 s leaves room for a loaded machine.
    let limits = ClientLimits {
        idle_timeout: Duration::from_secs(1),
        ..ClientLimits::default()
    };
    let node = serving(&cluster, 1, Sleepy, limits).await;
    let tls = cluster.ca.issue_client("c").unwrap();
    let connection = raw_client(&tls, cluster.addrs[&1], loopback(1))
        .await
        .unwrap();
    // A request longer than the idle timeout is answered.
    let (_s, mut recv) =
        raw_request(&connection, &frame::frame_bytes(b"x", MAX).unwrap(), true).await;
    assert!(frame::read_payload(&mut recv, MAX).await.unwrap().is_some());
    // Then the connection, kept alive by QUIC keep-alives but idle, is closed.
    assert_closed_with(&connection, 8, "the idle connection").await;
    assert_eq!(refused(&node, None, Refusal::Idle), 1);
    assert!(eventually(|| node.stats().incoming_connections == 0).await);
    node.shutdown(Duration::from_millis(200)).await;
}

/// Collects formatted log lines.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn lines_with(&self, needle: &str) -> usize {
        let text = String::from_utf8_lossy(&self.0.lock().unwrap()).to_string();
        text.lines().filter(|line| line.contains(needle)).count()
    }
}

/// Single-threaded, so that every task of the node logs into this test's subscriber.
#[tokio::test(flavor = "current_thread")]
async fn drops_are_counted_per_peer_and_reason_and_warned_about_once_per_interval() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let cluster = Cluster::new(&[1, 2, 3]);
    let mut config = cluster.config(1);
    config.inbound_queue = 16;
    config.peer_queue_messages = 8;
    config.warn_interval = Duration::from_secs(3600);
    let node = QuicNode::bind(config, None).await.unwrap();
    // Node 2 floods node 1, which does not call `recv`, and forges node 3's messages too.
    let connection = raw_peer(&cluster.ca.issue_node(2).unwrap(), cluster.addrs[&1], 1).await;
    let mut stream = connection.open_uni().await.unwrap();
    let encode = |m| frame::encode(&PeerFrame::Message(m), MAX).unwrap();
    let mut burst = frame::encode(&PeerFrame::Hello { node_id: 2 }, MAX).unwrap();
    for term in 0..2_000 {
        burst.extend(encode(message(2, 1, term)));
        if term % 4 == 0 {
            burst.extend(encode(message(3, 1, term)));
        }
    }
    stream.write_all(&burst).await.unwrap();
    stream.finish().unwrap();
    // Node 3 is down: node 1's messages to it queue, are refused, and are dropped.
    let mut refusals = 0;
    for term in 0..100 {
        match node.send(message(1, 3, term)) {
            Ok(()) => {}
            Err(TransportError::QueueFull(3)) => refusals += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(
        eventually(|| {
            let stats = node.stats();
            stats.delivered[&2] + dropped(&node, 2, DropReason::InboundQueueFull) == 2_000
                && dropped(&node, 2, DropReason::Misaddressed) == 500
        })
        .await,
        "{:?}",
        node.stats()
    );
    let stats = node.stats();
    assert_eq!(stats.delivered[&2], 16);
    assert!(refusals > 0);
    assert_eq!(dropped(&node, 3, DropReason::SendQueueFull), refusals);
    assert_eq!(stats.sent[&3], 100 - refusals);
    // Shutting down gives up on node 3: what was queued for it is dropped, and counted, within
    // the deadline (far below the 10 s after which QUIC itself would give up the handshake).
    // The drain of the closing connections that follows (about 3 s with a handshake
    // abandoned) is not waited for.
    let queued = 100 - refusals;
    tokio::select! {
        () = node.shutdown(Duration::from_secs(5)) => {}
        true = eventually(|| dropped(&node, 3, DropReason::PeerUnreachable) == queued) => {}
    }
    assert_eq!(dropped(&node, 3, DropReason::PeerUnreachable), queued);
    // One warning per peer and reason, however many drops.
    for reason in [
        "inbound_queue_full",
        "misaddressed",
        "send_queue_full",
        "peer_unreachable",
    ] {
        assert_eq!(logs.lines_with(reason), 1, "{reason}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_honours_its_deadline_when_a_peer_is_unreachable() {
    let cluster = Cluster::new(&[1, 2]);
    let n1 = cluster.start(1).await;
    for _ in 0..10 {
        let _ = n1.send(message(1, 2, 1));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Without the deadline, shutdown waits about 3 s for the abandoned handshake to node 2 to
    // drain; with it, it returns after 0.5 s. The bound leaves 2 s for a loaded machine.
    let start = std::time::Instant::now();
    n1.shutdown(Duration::from_millis(500)).await;
    let took = start.elapsed();
    assert!(took < Duration::from_millis(2500), "shutdown took {took:?}");
}
