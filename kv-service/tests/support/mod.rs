//! Real `kv-server` processes for the multi-process tests: certificates, ports, data
//! directories, start / SIGKILL / SIGSTOP / SIGCONT / restart, and a raw client for status.
#![allow(dead_code)] // each test binary uses part of it

pub mod ports;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use kv_service::{codec, ClientRequest, NodeStatus, Reply, Response};
use raft_transport_quic::pki::ClientTls;
use raft_transport_quic::RpcClient;

/// The `kv-server` binary cargo built for these tests.
pub const KV_SERVER: &str = env!("CARGO_BIN_EXE_kv-server");

/// Runs `kv-server` with `args` to completion; its status and stderr.
pub fn run_server(args: &[&str]) -> (ExitStatus, String) {
    let output = Command::new(KV_SERVER)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("kv-server runs");
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A cluster of `kv-server` processes in a temporary directory.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub addrs: BTreeMap<u64, SocketAddr>,
    pub storage: &'static str,
    children: BTreeMap<u64, Child>,
    /// How many times each node was started (for log file names).
    starts: BTreeMap<u64, u32>,
    extra: Vec<String>,
}

impl Cluster {
    /// Certificates and addresses for nodes `1..=n`; nothing runs yet.
    pub fn new(n: u64, storage: &'static str) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let nodes: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
        let certs = dir.path().join("certs");
        let (status, stderr) = run_server(&[
            "certs",
            "--out",
            certs.to_str().unwrap(),
            "--nodes",
            &nodes.join(","),
        ]);
        assert!(status.success(), "kv-server certs: {stderr}");
        let addrs = (1..=n).map(|i| (i, ports::free_addr())).collect();
        Self {
            dir,
            addrs,
            storage,
            children: BTreeMap::new(),
            starts: BTreeMap::new(),
            extra: Vec::new(),
        }
    }

    /// Extra flags for every node started from now on.
    pub fn with_flags(mut self, flags: &[&str]) -> Self {
        self.extra.extend(flags.iter().map(|s| s.to_string()));
        self
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.path().join(format!("data-{id}"))
    }

    pub fn tls_dir(&self, id: u64) -> PathBuf {
        self.path().join("certs").join(format!("node-{id}"))
    }

    pub fn client_tls_dir(&self) -> PathBuf {
        self.path().join("certs").join("client")
    }

    pub fn client_tls(&self) -> ClientTls {
        ClientTls::read_from(&self.client_tls_dir()).expect("client certificate")
    }

    pub fn peers_flag(&self) -> String {
        self.addrs
            .iter()
            .map(|(id, addr)| format!("{id}={addr}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The flags that start node `id`, as this cluster runs it.
    pub fn flags(&self, id: u64, init: bool) -> Vec<String> {
        let mut flags = vec![
            "--id".to_string(),
            id.to_string(),
            "--listen".into(),
            self.addrs[&id].to_string(),
            "--peers".into(),
            self.peers_flag(),
            "--storage".into(),
            self.storage.into(),
            "--data-dir".into(),
            self.data_dir(id).display().to_string(),
            "--tls-dir".into(),
            self.tls_dir(id).display().to_string(),
        ];
        if init {
            flags.push("--init".into());
        }
        flags.extend(self.extra.iter().cloned());
        flags
    }

    /// Starts node `id` (with `--init` on its first start).
    pub fn start(&mut self, id: u64) {
        assert!(!self.children.contains_key(&id), "node {id} already runs");
        let start = {
            let count = self.starts.entry(id).or_insert(0);
            *count += 1;
            *count
        };
        let init = start == 1;
        let log = self.path().join(format!("node-{id}.{start}.log"));
        let log = std::fs::File::create(log).expect("log file");
        let child = Command::new(KV_SERVER)
            .args(self.flags(id, init))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("kv-server starts");
        self.children.insert(id, child);
    }

    pub fn start_all(&mut self) {
        for id in self.ids() {
            self.start(id);
        }
    }

    pub fn ids(&self) -> Vec<u64> {
        self.addrs.keys().copied().collect()
    }

    pub fn is_running(&self, id: u64) -> bool {
        self.children.contains_key(&id)
    }

    fn pid(&self, id: u64) -> String {
        self.children[&id].id().to_string()
    }

    fn signal(&self, id: u64, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.pid(id)])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} node {id}");
    }

    /// SIGKILL: the process dies at once, whatever it was writing.
    pub fn kill(&mut self, id: u64) {
        let mut child = self.children.remove(&id).expect("node runs");
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
    }

    /// SIGSTOP: the process freezes (its peers see silence).
    pub fn pause(&self, id: u64) {
        self.signal(id, "-STOP");
    }

    /// SIGCONT.
    pub fn resume(&self, id: u64) {
        self.signal(id, "-CONT");
    }

    /// SIGTERM, then waits for the process to exit; its exit status.
    pub fn stop(&mut self, id: u64) -> ExitStatus {
        self.signal(id, "-TERM");
        let mut child = self.children.remove(&id).expect("node runs");
        wait_with_deadline(&mut child, Duration::from_secs(30))
    }

    /// Node `id`'s log lines so far (every start).
    pub fn logs(&self, id: u64) -> String {
        let mut text = String::new();
        for start in 1..=self.starts.get(&id).copied().unwrap_or(0) {
            let path = self.path().join(format!("node-{id}.{start}.log"));
            text.push_str(&std::fs::read_to_string(path).unwrap_or_default());
        }
        text
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, mut child) in std::mem::take(&mut self.children) {
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            // Keep what the nodes said: it is the evidence.
            let kept = self.dir.path().to_path_buf();
            eprintln!("test failed; node logs kept in {}", kept.display());
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
            let _ = dir.keep();
        }
    }
}

/// Waits for `child` to exit; kills it (and fails) past `deadline`.
pub fn wait_with_deadline(child: &mut Child, deadline: Duration) -> ExitStatus {
    let until = Instant::now() + deadline;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > until {
            let _ = child.kill();
            panic!("process did not exit within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A client that sends raw requests (status, garbage) to one node at a time.
pub struct RawClient {
    pub rpc: RpcClient,
}

impl RawClient {
    /// A client whose endpoint lives in `runtime`.
    pub fn new_in(runtime: &tokio::runtime::Runtime, tls: &ClientTls) -> Self {
        let _guard = runtime.enter();
        Self::new(tls)
    }

    /// A client (inside a runtime).
    pub fn new(tls: &ClientTls) -> Self {
        let rpc = RpcClient::new(tls)
            .expect("client endpoint")
            .with_timeout(Duration::from_secs(2));
        Self { rpc }
    }

    pub async fn request(&self, addr: SocketAddr, request: &ClientRequest) -> Option<Reply> {
        let bytes = self.rpc.call(addr, codec::encode(request)).await.ok()?;
        codec::decode::<Reply>(&bytes).ok()
    }

    pub async fn status(&self, addr: SocketAddr) -> Option<NodeStatus> {
        match self.request(addr, &ClientRequest::Status).await? {
            Ok(Response::Status(status)) => Some(status),
            _ => None,
        }
    }

    /// Waits until the running nodes agree on a leader among them; its id. Fails past
    /// `deadline` (a generous bound: only a broken cluster takes that long).
    pub async fn wait_for_leader(&self, cluster: &Cluster, deadline: Duration) -> u64 {
        let until = Instant::now() + deadline;
        loop {
            let mut leaders = Vec::new();
            let mut running = 0;
            for id in cluster
                .ids()
                .into_iter()
                .filter(|&id| cluster.is_running(id))
            {
                running += 1;
                if let Some(status) = self.status(cluster.addrs[&id]).await {
                    if status.role == "leader" {
                        leaders.push((status.term, id));
                    }
                }
            }
            leaders.sort_unstable();
            if let Some(&(_, leader)) = leaders.last() {
                // Every running node must know this leader (and term) before we call it settled.
                let mut agree = 0;
                for id in cluster
                    .ids()
                    .into_iter()
                    .filter(|&id| cluster.is_running(id))
                {
                    if let Some(s) = self.status(cluster.addrs[&id]).await {
                        agree += usize::from(s.leader == Some(leader));
                    }
                }
                if agree * 2 > cluster.ids().len() && agree == running {
                    return leader;
                }
            }
            assert!(Instant::now() < until, "no leader within {deadline:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
