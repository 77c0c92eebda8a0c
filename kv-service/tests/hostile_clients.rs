//! Garbage, oversized requests and clients without a valid certificate at a real cluster's
//! client port: each is refused and logged, and the cluster keeps serving.

mod support;

use std::time::Duration;

use kv_service::{ClientRequest, KvError, Response, WriteOp, WriteOutput};
use raft_transport_quic::pki::ClusterCa;
use raft_transport_quic::RpcClient;
use support::{Cluster, RawClient};

#[test]
fn hostile_clients_are_refused_and_logged_and_the_cluster_keeps_serving() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut cluster = Cluster::new(3, "memory");
    cluster.start_all();
    let client = RawClient::new_in(&runtime, &cluster.client_tls());
    runtime.block_on(async {
        let leader = client
            .wait_for_leader(&cluster, Duration::from_secs(60))
            .await;
        let addr = cluster.addrs[&leader];

        // A client whose certificate another CA signed: refused in the handshake.
        let stranger = ClusterCa::generate("elsewhere")
            .unwrap()
            .issue_client("mallory")
            .unwrap();
        let stranger = RpcClient::new(&stranger)
            .unwrap()
            .with_timeout(Duration::from_secs(2));
        let bytes = kv_service::codec::encode(&ClientRequest::Status);
        assert!(
            stranger.call(addr, bytes).await.is_err(),
            "a stranger got an answer"
        );

        // Bytes that are no request: answered with a codec error.
        for garbage in [vec![], vec![0xff; 7], b"GET / HTTP/1.1\r\n\r\n".to_vec()] {
            let reply = client.rpc.call(addr, garbage).await.expect("answered");
            let reply: kv_service::Reply = kv_service::codec::decode(&reply).expect("a reply");
            assert!(matches!(reply, Err(KvError::Codec(_))), "{reply:?}");
        }

        // A request over the size limit (1 MiB): refused before it is read whole.
        let huge = vec![7u8; 3 << 20];
        assert!(
            client.rpc.call(addr, huge).await.is_err(),
            "an oversized request was served"
        );

        // Still serving: a session, a write, a read.
        let Some(Ok(Response::SessionRegistered { session })) =
            client.request(addr, &ClientRequest::RegisterSession).await
        else {
            panic!("cannot register after the attacks");
        };
        let put = ClientRequest::Write {
            session,
            seq: 1,
            lowest_unacked: 1,
            op: WriteOp::Put {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
            },
        };
        assert_eq!(
            client.request(addr, &put).await,
            Some(Ok(Response::Written(WriteOutput::Done)))
        );
        let get = ClientRequest::Get { key: b"k".to_vec() };
        assert_eq!(
            client.request(addr, &get).await,
            Some(Ok(Response::Value(Some(b"v".to_vec()))))
        );
        leader
    });
    let leader = runtime.block_on(client.wait_for_leader(&cluster, Duration::from_secs(60)));
    let logs: String = cluster.ids().iter().map(|&id| cluster.logs(id)).collect();
    for expected in [
        "handshake",
        "refused an undecodable client request",
        "request_too_large",
    ] {
        assert!(
            logs.contains(expected),
            "no {expected:?} in the logs:\n{logs}"
        );
    }
    for id in cluster.ids() {
        assert!(
            cluster.is_running(id),
            "node {id} (leader {leader}) is down"
        );
    }
}

/// `GET /metrics` over plain HTTP/1.0; the body.
fn scrape(addr: std::net::SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("metrics endpoint");
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text
}

#[test]
fn metrics_are_served_in_prometheus_text_format() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut cluster =
        Cluster::new(1, "memory").with_flags(&["--metrics-addr", &metrics.to_string()]);
    cluster.start_all();
    let client = RawClient::new_in(&runtime, &cluster.client_tls());
    runtime.block_on(async {
        let leader = client
            .wait_for_leader(&cluster, Duration::from_secs(60))
            .await;
        let addr = cluster.addrs[&leader];
        let Some(Ok(Response::SessionRegistered { .. })) =
            client.request(addr, &ClientRequest::RegisterSession).await
        else {
            panic!("cannot register");
        };
        let get = ClientRequest::Get { key: b"k".to_vec() };
        assert_eq!(
            client.request(addr, &get).await,
            Some(Ok(Response::Value(None)))
        );
        // The driver publishes after each pass; give it one more request to be sure.
        client.status(addr).await.expect("status");
    });
    let text = scrape(metrics);
    assert!(text.starts_with("HTTP/1."), "{text}");
    for expected in [
        "raft_role 3",
        "raft_term ",
        "raft_commit_index ",
        "raft_applied_index ",
        "raft_fsync_seconds",
        "raft_apply_seconds",
        "kv_requests_total{kind=\"register\"} 1",
        "kv_requests_total{kind=\"get\"} 1",
        "kv_request_seconds",
        "# TYPE raft_fsync_seconds histogram",
        "raft_fsync_seconds_bucket{le=\"0.001\"}",
    ] {
        assert!(text.contains(expected), "no {expected:?} in:\n{text}");
    }
}
