//! The async and blocking `Client`, and the `kv` binary, against a real 3-node cluster run
//! in-process (`kv_service::server::serve`: QUIC with mutual TLS, the node driver, memory
//! storage).

#[path = "../../kv-service/tests/support/ports.rs"]
mod ports;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kv_client::{Client, ClientError, ClientOptions};
use kv_service::server::args::StorageKind;
use kv_service::server::ServerConfig;
use raft_transport_quic::pki::{ClientTls, ClusterCa};
use tokio::sync::oneshot;

/// Three nodes in this process, and what a client needs to reach them.
struct Cluster {
    runtime: tokio::runtime::Runtime,
    endpoints: Vec<(u64, SocketAddr)>,
    tls: ClientTls,
    tls_dir: tempfile::TempDir,
    stops: Vec<oneshot::Sender<()>>,
}

impl Cluster {
    fn start() -> Self {
        Self::start_with_client_connections_per_ip(256)
    }

    fn start_with_client_connections_per_ip(per_ip: usize) -> Self {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let ca = ClusterCa::generate("test").unwrap();
        let tls_dir = tempfile::tempdir().unwrap();
        let endpoints: Vec<(u64, SocketAddr)> =
            (1..=3).map(|id| (id, ports::free_addr())).collect();
        let mut stops = Vec::new();
        for &(id, listen) in &endpoints {
            let dir = tls_dir.path().join(format!("node-{id}"));
            ca.issue_node(id).unwrap().write_to(&dir).unwrap();
            let config = ServerConfig {
                id,
                listen,
                peers: endpoints.iter().filter(|e| e.0 != id).copied().collect(),
                storage: StorageKind::Memory,
                data_dir: None,
                max_raft_state: Some(1 << 20),
                tls_dir: dir,
                metrics_addr: None,
                init: true,
                tick: Duration::from_millis(10),
                lease_reads: false,
                cluster_id: None,
                client_connections: 256,
                client_connections_per_ip: per_ip,
            };
            let (stop, stopped) = oneshot::channel::<()>();
            runtime.spawn(async move {
                let shutdown = async move {
                    let _ = stopped.await;
                };
                if let Err(e) = kv_service::server::serve(config, shutdown).await {
                    panic!("node {id}: {e}");
                }
            });
            stops.push(stop);
        }
        let tls = ca.issue_client("tester").unwrap();
        tls.write_to(&tls_dir.path().join("client")).unwrap();
        Self {
            runtime,
            endpoints,
            tls,
            tls_dir,
            stops,
        }
    }

    fn client(&self, options: ClientOptions) -> Client {
        let _guard = self.runtime.enter();
        Client::with_options(self.endpoints.clone(), &self.tls, options).unwrap()
    }

    fn client_dir(&self) -> PathBuf {
        self.tls_dir.path().join("client")
    }

    fn endpoints_flag(&self) -> String {
        self.endpoints
            .iter()
            .map(|(id, addr)| format!("{id}={addr}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Stops node `index` (0-based) cleanly.
    fn stop(&mut self, index: usize) {
        let stop = std::mem::replace(&mut self.stops[index], oneshot::channel().0);
        let _ = stop.send(());
    }
}

fn quick() -> ClientOptions {
    ClientOptions {
        op_timeout: Duration::from_secs(20),
        ..ClientOptions::default()
    }
}

#[test]
fn every_operation_round_trips_and_concurrent_tasks_pipeline() {
    let cluster = Cluster::start();
    let client = cluster.client(quick());
    cluster.runtime.block_on(async {
        client.put("k", "v").await.unwrap();
        client.append("k", "w").await.unwrap();
        assert_eq!(client.get("k").await.unwrap(), Some(b"vw".to_vec()));
        assert_eq!(client.get("absent").await.unwrap(), None);
        assert_eq!(
            client
                .compare_and_swap("k", Some(b"x".to_vec()), "y")
                .await
                .unwrap(),
            (false, Some(b"vw".to_vec()))
        );
        assert_eq!(
            client
                .compare_and_swap("k", Some(b"vw".to_vec()), "y")
                .await
                .unwrap(),
            (true, Some(b"vw".to_vec()))
        );
        assert_eq!(
            client.compare_and_swap("new", None, "n").await.unwrap(),
            (true, None)
        );
        assert!(client.delete("k").await.unwrap());
        assert!(!client.delete("k").await.unwrap());
        assert_eq!(client.get("k").await.unwrap(), None);

        // 64 tasks append to one key through one client: each append exactly once.
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..64 {
            let client = client.clone();
            tasks.spawn(async move { client.append("log", format!("<{t}>")).await });
        }
        while let Some(result) = tasks.join_next().await {
            result.unwrap().unwrap();
        }
        let log = String::from_utf8(client.get("log").await.unwrap().unwrap()).unwrap();
        for t in 0..64 {
            assert_eq!(log.matches(&format!("<{t}>")).count(), 1, "{log}");
        }
        let leaders = {
            let mut leaders = Vec::new();
            for &(_, addr) in client.endpoints() {
                let status = client.status(addr).await.unwrap();
                if status.role == "leader" {
                    leaders.push(status.id);
                }
            }
            leaders
        };
        assert_eq!(leaders.len(), 1, "one leader");
    });
}

#[test]
fn a_value_over_the_limit_is_not_applied_and_says_so() {
    let cluster = Cluster::start();
    let client = cluster.client(quick());
    cluster.runtime.block_on(async {
        let error = client
            .put("big", vec![0u8; (1 << 20) + 1])
            .await
            .unwrap_err();
        assert!(matches!(error, ClientError::NotApplied(_)), "{error:?}");
        assert_eq!(client.get("big").await.unwrap(), None);
    });
}

#[test]
fn a_dead_endpoint_does_not_stall_operations_and_no_server_means_unknown() {
    let mut cluster = Cluster::start();
    let client = cluster.client(quick());
    cluster
        .runtime
        .block_on(async { client.put("k", "1").await.unwrap() });
    // Two of three nodes stop: nothing can commit; a write ends "outcome unknown".
    cluster.stop(0);
    cluster.stop(1);
    let impatient = cluster.client(ClientOptions {
        op_timeout: Duration::from_secs(2),
        ..ClientOptions::default()
    });
    cluster.runtime.block_on(async {
        let error = impatient.put("k", "2").await.unwrap_err();
        assert!(error.is_outcome_unknown(), "{error:?}");
    });
}

#[test]
fn the_blocking_client_works_without_a_runtime() {
    let cluster = Cluster::start();
    let client =
        kv_client::blocking::Client::connect(cluster.endpoints.clone(), &cluster.tls).unwrap();
    client.put("k", "v").unwrap();
    assert_eq!(client.get("k").unwrap(), Some(b"v".to_vec()));
    assert!(client.delete("k").unwrap());
}

fn kv(cluster: &Cluster, args: &[&str]) -> (Option<i32>, Vec<u8>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_kv"))
        .args(["--endpoints", &cluster.endpoints_flag(), "--tls-dir"])
        .arg(cluster.client_dir())
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code(),
        output.stdout,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_kv_binary_prints_values_exactly_and_exits_with_the_documented_codes() {
    let cluster = Cluster::start();
    // Binary values (a command line cannot carry NUL) go in through the library.
    let client = cluster.client(quick());
    let binary = b"hello\n\0\xffworld".to_vec();
    cluster
        .runtime
        .block_on(client.put("bin", binary.clone()))
        .unwrap();
    let (code, stdout, _) = kv(&cluster, &["get", "bin"]);
    assert_eq!(
        (code, stdout),
        (Some(0), binary),
        "raw bytes, nothing added"
    );
    let (code, stdout, _) = kv(&cluster, &["--hex", "get", "bin"]);
    assert_eq!(
        (code, String::from_utf8(stdout).unwrap()),
        (Some(0), "68656c6c6f0a00ff776f726c64\n".to_string())
    );
    assert_eq!(kv(&cluster, &["put", "k", "hello\nworld"]).0, Some(0));
    let (code, stdout, _) = kv(&cluster, &["get", "k"]);
    assert_eq!((code, stdout.as_slice()), (Some(0), &b"hello\nworld"[..]));
    let (code, stdout, _) = kv(&cluster, &["--json", "get", "absent"]);
    assert_eq!(code, Some(1));
    let json: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
    assert_eq!(json["found"], false);
    assert_eq!(kv(&cluster, &["append", "k", "!"]).0, Some(0));
    assert_eq!(
        kv(&cluster, &["cas", "k", "new", "--expected", "nope"]).0,
        Some(1)
    );
    assert_eq!(
        kv(
            &cluster,
            &["cas", "k", "new", "--expected", "hello\nworld!"]
        )
        .0,
        Some(0)
    );
    assert_eq!(
        kv(&cluster, &["cas", "fresh", "v", "--expect-absent"]).0,
        Some(0)
    );
    assert_eq!(kv(&cluster, &["delete", "k"]).0, Some(0));
    assert_eq!(kv(&cluster, &["delete", "k"]).0, Some(1));
    let (code, stdout, _) = kv(&cluster, &["--json", "status"]);
    assert_eq!(code, Some(0));
    let nodes: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
    assert_eq!(nodes.as_array().unwrap().len(), 3);
    assert_eq!(
        nodes
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["role"] == "leader")
            .count(),
        1
    );
    let (code, stdout, stderr) = kv(
        &cluster,
        &[
            "--json",
            "bench",
            "--clients",
            "8",
            "--conns",
            "2",
            "--total",
            "400",
            "--mix",
            "put=1,get=1,append=1",
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
    let all = report["results"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (
            all["op"].as_str(),
            all["ok"].as_u64(),
            all["errors"].as_u64()
        ),
        (Some("all"), Some(400), Some(0))
    );
    assert!(all["latency_ms"]["p99"].as_f64().unwrap() > 0.0);
    // From standard input: any bytes, any size; too large is definitely not applied.
    let put_stdin = |value: Vec<u8>| {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_kv"))
            .args(["--endpoints", &cluster.endpoints_flag(), "--tls-dir"])
            .arg(cluster.client_dir())
            .args(["put", "piped", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&value).unwrap();
        child.wait().unwrap().code()
    };
    assert_eq!(put_stdin(b"\0\x01 piped".to_vec()), Some(0));
    assert_eq!(kv(&cluster, &["get", "piped"]).1, b"\0\x01 piped");
    assert_eq!(put_stdin(vec![b'x'; (1 << 20) + 10]), Some(3));
}

#[test]
fn the_kv_binary_closes_its_connections_so_runs_in_a_row_are_not_refused() {
    // Each run connects to the nodes it needs; a run that left its connections open would hold
    // a node's place until the idle timeout (30 s), and the fifth run would be refused.
    let cluster = Cluster::start_with_client_connections_per_ip(4);
    for i in 0..12 {
        let (code, _, stderr) = kv(&cluster, &["put", "k", &i.to_string()]);
        assert_eq!(code, Some(0), "run {i}: {stderr}");
    }
    let (code, _, stderr) = kv(&cluster, &["status"]);
    assert_eq!(code, Some(0), "{stderr}");
    let (code, stdout, stderr) = kv(&cluster, &["get", "k"]);
    assert_eq!((code, stdout), (Some(0), b"11".to_vec()), "{stderr}");
}

#[test]
fn the_kv_binary_refuses_bad_setup_with_its_codes() {
    let missing = Path::new("/nonexistent-kv-test");
    let output = Command::new(env!("CARGO_BIN_EXE_kv"))
        .args(["--tls-dir"])
        .arg(missing)
        .args(["get", "k"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--tls-dir"));
    for bad in [
        &["--endpoints", "x=1", "get", "k"][..],
        &["get"][..],
        &["frobnicate"][..],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_kv"))
            .args(bad)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{bad:?}");
    }
    // Nobody listens: outcome unknown after --timeout.
    let cluster_less = tempfile::tempdir().unwrap();
    ClusterCa::generate("x")
        .unwrap()
        .issue_client("c")
        .unwrap()
        .write_to(cluster_less.path())
        .unwrap();
    let dead = ports::free_addr();
    let output = Command::new(env!("CARGO_BIN_EXE_kv"))
        .args([
            "--endpoints",
            &dead.to_string(),
            "--timeout",
            "1",
            "--tls-dir",
        ])
        .arg(cluster_less.path())
        .args(["put", "k", "v"])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
