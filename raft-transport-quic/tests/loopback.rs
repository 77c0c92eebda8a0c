//! Loopback tests with real QUIC endpoints: delivery, reconnection, authentication, bad input,
//! a peer that stops reading, client requests and draining shutdown.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use raft_core::{MessageBody, Transport};
use raft_transport_quic::frame::{self, PeerFrame};
use raft_transport_quic::pki::{ClientTls, ClusterCa};
use raft_transport_quic::{tls, QuicNode, RpcClient, TransportError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_deliver_both_ways() {
    let cluster = Cluster::new(&[1, 2, 3]);
    let nodes = [
        cluster.start(1).await,
        cluster.start(2).await,
        cluster.start(3).await,
    ];
    for from in 1..=3u64 {
        for to in 1..=3u64 {
            if from == to {
                continue;
            }
            let (sender, receiver) = (&nodes[from as usize - 1], &nodes[to as usize - 1]);
            let (got, others) = deliver_noting_others(sender, receiver, message(from, to, 7)).await;
            assert_eq!((got.from, got.to, got.term), (from, to, 7));
            // Anything else is a late retry of an earlier delivery to this node.
            assert!(
                others.iter().all(|m| m.to == to && m.term == 7),
                "{others:?}"
            );
        }
    }
    assert!(matches!(
        nodes[0].send(message(1, 9, 1)),
        Err(TransportError::UnknownPeer(9))
    ));
    // Large messages travel too (on the bulk stream), next to small ones.
    let (n1, n2) = (&nodes[0], &nodes[1]);
    for _ in 0..4 {
        n1.send(big_message(1, 2, 1 << 20)).unwrap();
    }
    n1.send(message(1, 2, 99)).unwrap();
    let (mut got_small, mut got_big) = (false, 0);
    while !(got_small && got_big == 4) {
        let m = recv_within(n2, Duration::from_secs(10))
            .await
            .expect("delivery");
        match m.body {
            MessageBody::InstallSnapshotRequest { data, .. } => {
                assert_eq!(data.len(), 1 << 20);
                got_big += 1;
            }
            _ => got_small = true,
        }
    }
    // Together: once one is down, the others wait out their deadline draining their abandoned
    // reconnection to it.
    let [n1, n2, n3] = &nodes;
    let deadline = Duration::from_secs(1);
    tokio::join!(
        n1.shutdown(deadline),
        n2.shutdown(deadline),
        n3.shutdown(deadline)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_a_peer_restarts_on_the_same_address() {
    let cluster = Cluster::new(&[1, 2]);
    let n1 = cluster.start(1).await;
    let n2 = cluster.start(2).await;
    deliver(&n1, &n2, message(1, 2, 1)).await;
    // A deadline long enough for the closing connections to drain (shutdown returns as soon as
    // they have): the port is then about to be released.
    n2.shutdown(Duration::from_secs(5)).await;
    drop(n2);
    // Meanwhile node 1 keeps sending into the void.
    for _ in 0..20 {
        let _ = n1.send(message(1, 2, 2));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let n2 = cluster.restart(2).await;
    let got = deliver(&n1, &n2, message(1, 2, 3)).await;
    assert_eq!(got.from, 1);
    tokio::join!(
        n1.shutdown(Duration::from_secs(1)),
        n2.shutdown(Duration::from_secs(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_crashed_and_restarted_is_reached_again_before_the_idle_timeout() {
    let cluster = Cluster::new(&[1, 2]);
    let n1 = cluster.start(1).await;
    // Node 2 runs on a runtime of its own, so that it can die without a word: shutting that
    // runtime down drops its tasks unpolled, and no CONNECTION_CLOSE leaves (as on SIGKILL).
    let config = cluster.config(2);
    let again = config.clone();
    let (crashed, n2) = tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let node = runtime.block_on(QuicNode::bind(config, None)).unwrap();
        (runtime, node)
    })
    .await
    .unwrap();
    deliver(&n1, &n2, message(1, 2, 1)).await;
    crashed.shutdown_background();
    drop(n2);
    let n2 = cluster.restart_with(again).await;
    // Node 1's connection to node 2 is dead, but nothing told node 1. Unless node 2's new
    // incarnation can reset it (a stateless reset, which needs the same reset key across
    // restarts), node 1 keeps sending into it until QUIC's idle timeout (10 s).
    let started = tokio::time::Instant::now();
    let reached = loop {
        let _ = n1.send(message(1, 2, 2));
        if let Some(got) = recv_within(&n2, Duration::from_millis(50)).await {
            if got.term == 2 {
                break started.elapsed();
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "node 1 did not reach the restarted node 2 within 5 s"
        );
    };
    assert!(reached < Duration::from_secs(5), "{reached:?}");
    tokio::join!(
        n1.shutdown(Duration::from_secs(1)),
        n2.shutdown(Duration::from_secs(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_certificate_from_another_ca_is_refused() {
    let cluster = Cluster::new(&[1, 2, 3]);
    let n1 = cluster.start(1).await;
    let n3 = cluster.start(3).await;
    // An impostor claims to be node 2, with a certificate from its own CA.
    let other = ClusterCa::generate("other").unwrap();
    let mut config = cluster.config(2);
    config.tls = other.issue_node(2).unwrap();
    let impostor = QuicNode::bind(config, None).await.unwrap();
    for _ in 0..20 {
        let _ = impostor.send(message(2, 1, 5));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Node 1 got nothing from it, but still hears from node 3.
    let (_, others) = deliver_noting_others(&n3, &n1, message(3, 1, 6)).await;
    assert!(
        others.iter().all(|m| m.from == 3),
        "the impostor got through: {others:?}"
    );
    while let Some(m) = recv_within(&n1, Duration::from_millis(300)).await {
        assert_eq!(m.from, 3, "a message from the impostor arrived");
    }
    // And node 1 does not talk to the impostor as node 2: nothing arrives there either.
    for _ in 0..10 {
        let _ = n1.send(message(1, 2, 7));
    }
    assert!(recv_within(&impostor, Duration::from_millis(500))
        .await
        .is_none());
    for node in [n1, n3, impostor] {
        node.shutdown(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_oversized_and_forged_frames_are_dropped_and_the_node_keeps_serving() {
    let cluster = Cluster::new(&[1, 2, 3]);
    let n1 = cluster.start(1).await;
    let n3 = cluster.start(3).await;
    let node2_tls = cluster.ca.issue_node(2).unwrap();
    let max = 16 << 20;
    let hello = |id| frame::encode(&PeerFrame::Hello { node_id: id }, max).unwrap();
    let framed = |m| frame::encode(&PeerFrame::Message(m), max).unwrap();
    let attacks: Vec<Vec<Vec<u8>>> = vec![
        // Garbage instead of a hello.
        vec![vec![0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5]],
        // A length prefix far beyond the limit.
        vec![hello(2), vec![0xff, 0xff, 0xff, 0xff, 0]],
        // A truncated frame.
        vec![hello(2), vec![0, 0, 1, 0, 1, 2]],
        // An unknown message type.
        vec![hello(2), vec![0, 0, 0, 2, 9, 9]],
        // A hello claiming node 3 over node 2's certificate.
        vec![hello(3), framed(message(3, 1, 1))],
        // A message claiming to come from node 3 on node 2's stream.
        vec![hello(2), framed(message(3, 1, 1))],
        // A message for another node.
        vec![hello(2), framed(message(2, 3, 1))],
    ];
    for attack in attacks {
        let connection = raw_peer(&node2_tls, cluster.addrs[&1], 1).await;
        let mut stream = connection.open_uni().await.unwrap();
        for bytes in attack {
            let _ = stream.write_all(&bytes).await;
        }
        let _ = stream.finish();
        assert!(
            recv_within(&n1, Duration::from_millis(300)).await.is_none(),
            "an attack frame was delivered"
        );
        connection.close(0u32.into(), b"done");
    }
    // A well-behaved raw peer still gets through, and node 3 too.
    let connection = raw_peer(&node2_tls, cluster.addrs[&1], 1).await;
    let mut stream = connection.open_uni().await.unwrap();
    stream.write_all(&hello(2)).await.unwrap();
    stream.write_all(&framed(message(2, 1, 42))).await.unwrap();
    let got = recv_within(&n1, Duration::from_secs(5))
        .await
        .expect("valid frame delivered");
    assert_eq!((got.from, got.term), (2, 42));
    deliver(&n3, &n1, message(3, 1, 43)).await;
    n1.shutdown(Duration::from_millis(200)).await;
    n3.shutdown(Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_reading_costs_bounded_memory() {
    let cluster = Cluster::new(&[1, 2]);
    let mut config = cluster.config(1);
    config.peer_queue_bytes = 4 << 20;
    config.peer_queue_messages = 64;
    let n1 = QuicNode::bind(config, None).await.unwrap();
    // Node 2's address is taken by an endpoint with node 2's certificate that accepts
    // connections and streams but never reads them.
    let server = tls::server_config(&cluster.ca.issue_node(2).unwrap()).unwrap();
    let silent = quinn::Endpoint::server(server, cluster.addrs[&2]).unwrap();
    let accept = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some(incoming) = silent.accept().await {
            if let Ok(connection) = incoming.await {
                connection.set_max_concurrent_uni_streams(2u32.into());
                while let Ok(stream) = connection.accept_uni().await {
                    held.push(stream); // never read
                }
            }
        }
    });
    let (mut accepted, mut refused) = (0u64, 0u64);
    for k in 0..2_000 {
        match n1.send(big_message(1, 2, 64 * 1024)) {
            Ok(()) => accepted += 1,
            Err(TransportError::QueueFull(2)) => refused += 1,
            Err(e) => panic!("unexpected error {e}"),
        }
        if k % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    // 2000 x 64 KiB = 125 MiB offered; the queue holds 4 MiB and QUIC's flow-control window
    // a few more, after which sends are refused.
    assert!(refused > 0, "nothing was refused");
    assert!(
        accepted * 64 * 1024 < 32 << 20,
        "{accepted} messages of 64 KiB accepted: the queue is not bounded"
    );
    n1.shutdown(Duration::from_millis(200)).await;
    accept.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_call_nodes_and_verify_them_against_the_ca() {
    let cluster = Cluster::new(&[1]);
    let node = QuicNode::bind(cluster.config(1), Some(Arc::new(Echo)))
        .await
        .unwrap();
    let client = RpcClient::new(&cluster.ca.issue_client("test").unwrap()).unwrap();
    for k in 0..20u8 {
        let reply = client.call(cluster.addrs[&1], vec![1, 2, k]).await.unwrap();
        assert_eq!(reply, vec![k, 2, 1]);
    }
    // A client trusting another CA refuses the node (though its own certificate is good).
    let other = ClusterCa::generate("other").unwrap();
    let stranger = RpcClient::new(&ClientTls {
        ca_cert: other.cert_der().to_vec(),
        ..cluster.ca.issue_client("stranger").unwrap()
    })
    .unwrap();
    assert!(stranger.call(cluster.addrs[&1], vec![1]).await.is_err());
    node.shutdown(Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_does_not_answer_delays_no_call_to_another() {
    let cluster = Cluster::new(&[1]);
    let node = QuicNode::bind(cluster.config(1), Some(Arc::new(Echo)))
        .await
        .unwrap();
    // A socket that receives and never answers: a handshake with it hangs until the timeout.
    let black_hole = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead = black_hole.local_addr().unwrap();
    let client = Arc::new(
        RpcClient::new(&cluster.ca.issue_client("test").unwrap())
            .unwrap()
            .with_timeout(Duration::from_secs(5)),
    );
    let stuck = tokio::spawn({
        let client = Arc::clone(&client);
        async move { client.call(dead, vec![1]).await }
    });
    // Give the stuck call time to begin its handshake (were it late, the test would only pass
    // without testing anything, never fail).
    tokio::time::sleep(Duration::from_millis(200)).await;
    for k in 0..5u8 {
        let reply = client.call(cluster.addrs[&1], vec![k]).await.unwrap();
        assert_eq!(reply, vec![k]);
    }
    assert!(
        !stuck.is_finished(),
        "the live node was answered only after the dead one's connection attempt gave up"
    );
    assert!(stuck.await.unwrap().is_err());
    node.shutdown(Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_client_frees_its_place_at_the_node_at_once() {
    let cluster = Cluster::new(&[1]);
    let mut config = cluster.config(1);
    config.clients.max_connections_per_ip = 2;
    let node = QuicNode::bind(config, Some(Arc::new(Echo))).await.unwrap();
    let tls = cluster.ca.issue_client("test").unwrap();
    let addr = cluster.addrs[&1];
    // Six short-lived clients in a row from one address, each on a runtime of its own that
    // ends right after its call, as six runs of a command-line tool do: each closes before it
    // goes, so a node allowing two connections per address takes them all (without the close,
    // the third is refused until the node's idle timeout).
    for k in 0..6u8 {
        let tls = tls.clone();
        let reply = tokio::task::spawn_blocking(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let client = RpcClient::new(&tls).unwrap();
                // The node frees a place a moment after the close arrives: a refusal is
                // retried for 3 s, a tenth of the idle timeout an unclosed connection holds on.
                let give_up = tokio::time::Instant::now() + Duration::from_secs(3);
                let reply = loop {
                    match client.call(addr, vec![k]).await {
                        Err(_) if tokio::time::Instant::now() < give_up => {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        reply => break reply,
                    }
                };
                client.close(Duration::from_secs(1)).await;
                reply
            })
        })
        .await
        .unwrap();
        assert_eq!(reply.unwrap(), vec![k], "client {k}");
    }
    node.shutdown(Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_without_an_answer_times_out() {
    let cluster = Cluster::new(&[1]);
    let node = QuicNode::bind(cluster.config(1), Some(Arc::new(Silent)))
        .await
        .unwrap();
    let client = RpcClient::new(&cluster.ca.issue_client("test").unwrap())
        .unwrap()
        .with_timeout(Duration::from_millis(300));
    let result = client.call(cluster.addrs[&1], vec![1]).await;
    assert!(
        matches!(result, Err(raft_transport_quic::RpcError::Timeout { .. })),
        "{result:?}"
    );
    node.shutdown(Duration::from_millis(100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_queued_messages() {
    let cluster = Cluster::new(&[1, 2]);
    let n1 = cluster.start(1).await;
    let n2 = cluster.start(2).await;
    deliver(&n1, &n2, message(1, 2, 0)).await;
    while recv_within(&n2, Duration::from_millis(100)).await.is_some() {}
    for term in 1..=200 {
        n1.send(message(1, 2, term)).unwrap();
    }
    n1.shutdown(Duration::from_secs(5)).await;
    assert!(matches!(
        n1.send(message(1, 2, 201)),
        Err(TransportError::Shutdown)
    ));
    // Every message arrives, however slowly node 2 gets to read them (up to 10 s)...
    let mut terms = Vec::new();
    let all = async {
        while terms.len() < 200 {
            match n2.recv().await {
                // Term 0 is a late retry of the warm-up delivery.
                Some(m) if m.term == 0 => {}
                Some(m) => terms.push(m.term),
                None => break,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), all).await;
    // ...and none twice.
    while let Some(m) = recv_within(&n2, Duration::from_millis(300)).await {
        if m.term != 0 {
            terms.push(m.term);
        }
    }
    terms.sort_unstable();
    assert_eq!(terms, (1..=200).collect::<Vec<_>>());
    n2.shutdown(Duration::from_millis(200)).await;
}
