//! `kv-server` refuses bad input at start with a clear message and a non-zero exit, never a
//! panic: flags, certificates, ports, and data directories that are missing, another node's,
//! another cluster's, or corrupt.

mod support;

use std::net::UdpSocket;
use std::time::Duration;

use support::{run_server, Cluster};

fn assert_refused(args: &[String], code: i32, expected: &str) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (status, stderr) = run_server(&args);
    assert_eq!(status.code(), Some(code), "{args:?}: {stderr}");
    assert!(
        stderr.contains(expected),
        "{args:?}: expected {expected:?} in: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

#[test]
fn bad_flags_exit_with_2_and_say_what_is_wrong() {
    assert_refused(&strings(&["--no-such-flag"]), 2, "--no-such-flag");
    assert_refused(&strings(&["--id", "x"]), 2, "invalid value 'x'");
    assert_refused(&strings(&["--id", "1"]), 2, "missing --listen");
    let cluster = Cluster::new(3, "memory");
    let mut flags = cluster.flags(1, false);
    let at = flags.iter().position(|f| f == "--storage").unwrap();
    flags[at + 1] = "disk".into();
    assert_refused(&flags, 2, "invalid value 'disk'");
    let mut flags = cluster.flags(1, false);
    let at = flags.iter().position(|f| f == "--peers").unwrap();
    flags[at + 1] = "1=127.0.0.1:1,two=127.0.0.1:2".into();
    assert_refused(&flags, 2, "\"two\" is not a positive node id");
}

#[test]
fn missing_or_foreign_certificates_are_refused() {
    let cluster = Cluster::new(2, "memory");
    let mut flags = cluster.flags(1, false);
    let at = flags.iter().position(|f| f == "--tls-dir").unwrap();
    flags[at + 1] = cluster.path().join("nowhere").display().to_string();
    assert_refused(&flags, 1, "cannot read this node's certificates");
    flags[at + 1] = cluster.tls_dir(2).display().to_string();
    assert_refused(&flags, 1, "does not name node 1");
}

#[test]
fn a_port_in_use_is_refused() {
    let cluster = Cluster::new(1, "memory");
    let taken = UdpSocket::bind(cluster.addrs[&1]).expect("the test holds the port");
    assert_refused(&cluster.flags(1, false), 1, &cluster.addrs[&1].to_string());
    drop(taken);
}

#[test]
fn a_metrics_port_in_use_is_refused() {
    let cluster = Cluster::new(1, "memory");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut flags = cluster.flags(1, false);
    flags.extend(["--metrics-addr".to_string(), addr.clone()]);
    assert_refused(&flags, 1, &format!("cannot serve metrics at {addr}"));
}

#[test]
fn sigterm_stops_a_node_cleanly() {
    let mut cluster = Cluster::new(1, "memory");
    cluster.start(1);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = support::RawClient::new_in(&runtime, &cluster.client_tls());
    runtime.block_on(client.wait_for_leader(&cluster, Duration::from_secs(30)));
    let status = cluster.stop(1);
    assert_eq!(status.code(), Some(0), "{}", cluster.logs(1));
    assert!(cluster.logs(1).contains("stopped"), "{}", cluster.logs(1));
}

#[cfg(feature = "rocksdb")]
mod rocksdb {
    use super::*;

    /// Starts node `id` with `--init`, waits until it serves, and stops it: its data directory
    /// then exists.
    fn initialize(cluster: &mut Cluster, id: u64) {
        cluster.start(id);
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let client = support::RawClient::new_in(&runtime, &cluster.client_tls());
        let addr = cluster.addrs[&id];
        runtime.block_on(async {
            let until = std::time::Instant::now() + Duration::from_secs(30);
            while client.status(addr).await.is_none() {
                assert!(std::time::Instant::now() < until, "node {id} never served");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        assert_eq!(cluster.stop(id).code(), Some(0), "{}", cluster.logs(id));
    }

    #[test]
    fn a_missing_or_emptied_data_dir_is_refused_without_init() {
        let mut cluster = Cluster::new(3, "rocksdb");
        assert_refused(&cluster.flags(1, false), 1, "does not exist or is empty");
        initialize(&mut cluster, 1);
        // The node's data is lost: an empty directory is refused like a missing one.
        std::fs::remove_dir_all(cluster.data_dir(1)).unwrap();
        std::fs::create_dir(cluster.data_dir(1)).unwrap();
        assert_refused(&cluster.flags(1, false), 1, "Lost data");
    }

    #[test]
    fn another_nodes_or_clusters_data_dir_is_refused() {
        let mut cluster = Cluster::new(2, "rocksdb");
        initialize(&mut cluster, 1);
        let mut flags = cluster.flags(2, false);
        let at = flags.iter().position(|f| f == "--data-dir").unwrap();
        flags[at + 1] = cluster.data_dir(1).display().to_string();
        assert_refused(&flags, 1, "node 1, not cluster");
        let mut flags = cluster.flags(1, false);
        flags.extend(strings(&["--cluster-id", "7"]));
        assert_refused(&flags, 1, "not cluster 7 node 1");
    }

    #[test]
    fn a_corrupt_database_is_refused() {
        let mut cluster = Cluster::new(1, "rocksdb");
        initialize(&mut cluster, 1);
        // RocksDB's CURRENT names the live MANIFEST; garble it.
        std::fs::write(cluster.data_dir(1).join("CURRENT"), b"MANIFEST-garbage\n").unwrap();
        let (status, stderr) = run_server(
            &cluster
                .flags(1, false)
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        );
        assert_eq!(status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("storage:"), "{stderr}");
        assert!(
            stderr.contains(&cluster.data_dir(1).display().to_string()),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
