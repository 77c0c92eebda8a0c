//! `kv-cluster`: a local cluster of `kv-server` processes for trying the service out
//! (`scripts/cluster` builds and runs it). It makes certificates, starts the nodes with
//! RocksDB under one directory (kept and reused by the next run), waits for a leader, runs a
//! short workload through the Clerk and shows what happened, then keeps serving until Ctrl-C
//! and prints the `kv` commands to use meanwhile.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use kv_client::Client;
use raft_transport_quic::pki::ClientTls;

/// Starts a local cluster of kv-server processes and keeps it serving until Ctrl-C.
#[derive(Debug, Parser)]
#[command(name = "kv-cluster", version)]
struct Cli {
    /// Directory for certificates, data and logs (created on the first run, reused after).
    #[arg(long, default_value = "cluster-data")]
    dir: PathBuf,
    /// Number of nodes.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=9))]
    nodes: u64,
    /// Port of node 1's UDP endpoint; node i uses this plus i - 1.
    #[arg(long, default_value_t = 7101)]
    base_port: u16,
    /// Port of node 1's metrics endpoint; node i uses this plus i - 1.
    #[arg(long, default_value_t = 9101)]
    metrics_port: u16,
    /// Storage backend of the nodes.
    #[arg(long, default_value = "rocksdb")]
    storage: String,
    /// Skip the workload.
    #[arg(long)]
    no_workload: bool,
    /// Stop after the workload instead of serving until Ctrl-C.
    #[arg(long)]
    exit_after_workload: bool,
}

fn main() -> ExitCode {
    let started = Instant::now();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    match runtime.block_on(run(cli, started)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("kv-cluster: {message}");
    ExitCode::FAILURE
}

/// The sibling binary `name` (kv-server, kv) next to this one.
fn sibling(name: &str) -> Result<PathBuf, String> {
    let me = std::env::current_exe().map_err(|e| format!("cannot locate myself: {e}"))?;
    let path = me.with_file_name(name);
    if !path.exists() {
        return Err(format!(
            "{} not found: build it first (scripts/cluster does: cargo build --release \
             --features kv-service/rocksdb -p kv-service --bin kv-server -p kv-client)",
            path.display()
        ));
    }
    Ok(path)
}

struct Node {
    id: u64,
    addr: SocketAddr,
    child: Child,
    log: PathBuf,
    /// Its exit was reported already.
    exit_reported: bool,
}

async fn run(cli: Cli, started: Instant) -> Result<(), String> {
    let server = sibling("kv-server")?;
    // The CLI is only named in the instructions printed at the end.
    let kv = sibling("kv").unwrap_or_else(|_| server.with_file_name("kv"));
    let dir = cli.dir.clone();
    let certs = dir.join("certs");
    let ids: Vec<u64> = (1..=cli.nodes).collect();
    let fresh = !certs.exists();
    if fresh {
        let nodes = ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
        let status = Command::new(&server)
            .args(["certs", "--out"])
            .arg(&certs)
            .args(["--nodes", &nodes])
            .stdout(Stdio::null())
            .status()
            .map_err(|e| format!("cannot run {}: {e}", server.display()))?;
        if !status.success() {
            return Err("kv-server certs failed".into());
        }
        println!(
            "created a new cluster in {} (certificates, data, logs)",
            dir.display()
        );
    } else {
        println!(
            "reusing the cluster in {} (delete it to start afresh)",
            dir.display()
        );
    }
    let addrs: BTreeMap<u64, SocketAddr> = ids
        .iter()
        .map(|&id| {
            (
                id,
                SocketAddr::from(([127, 0, 0, 1], cli.base_port + id as u16 - 1)),
            )
        })
        .collect();
    let peers = addrs
        .iter()
        .map(|(id, addr)| format!("{id}={addr}"))
        .collect::<Vec<_>>()
        .join(",");
    std::fs::create_dir_all(dir.join("logs")).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut nodes = Vec::new();
    for &id in &ids {
        let log = dir.join("logs").join(format!("node-{id}.log"));
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let metrics = SocketAddr::from(([127, 0, 0, 1], cli.metrics_port + id as u16 - 1));
        let mut command = Command::new(&server);
        command
            .args(["--id", &id.to_string(), "--listen", &addrs[&id].to_string()])
            .args(["--peers", &peers, "--storage", &cli.storage])
            .arg("--data-dir")
            .arg(dir.join(format!("node-{id}")))
            .arg("--tls-dir")
            .arg(certs.join(format!("node-{id}")))
            .args(["--metrics-addr", &metrics.to_string()])
            // Room for `kv bench --conns 100` from this machine.
            .args(["--client-connections-per-ip", "256"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        if fresh {
            command.arg("--init");
        }
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", server.display()))?;
        nodes.push(Node {
            id,
            addr: addrs[&id],
            child,
            log,
            exit_reported: false,
        });
    }
    println!("started {} kv-server processes: {}", nodes.len(), peers);

    let outcome = serve(&cli, &mut nodes, &certs, &kv, &peers, started).await;
    stop_all(&mut nodes);
    println!("data kept in {} (the next run reuses it)", dir.display());
    outcome
}

async fn serve(
    cli: &Cli,
    nodes: &mut [Node],
    certs: &Path,
    kv: &Path,
    peers: &str,
    started: Instant,
) -> Result<(), String> {
    let tls = ClientTls::read_from(&certs.join("client")).map_err(|e| e.to_string())?;
    let endpoints: Vec<(u64, SocketAddr)> = nodes.iter().map(|n| (n.id, n.addr)).collect();
    let client = Client::connect(endpoints, &tls).map_err(|e| e.to_string())?;
    let leader = wait_for_leader(&client, nodes).await?;
    println!(
        "node {} leads (term {}), {:.1} s after the command started",
        leader.0,
        leader.1,
        started.elapsed().as_secs_f64()
    );
    if !cli.no_workload {
        workload(&client, started).await?;
    }
    let tls_dir = certs.join("client");
    println!();
    println!("The cluster serves until Ctrl-C. Try, from another terminal:");
    let kv = format!(
        "{} --endpoints {} --tls-dir {}",
        kv.display(),
        peers,
        tls_dir.display()
    );
    println!("  {kv} put greeting hello");
    println!("  {kv} get greeting");
    println!("  {kv} append greeting ', world'");
    println!("  {kv} status");
    println!("  {kv} bench --clients 16 --total 10000");
    println!(
        "Metrics: http://127.0.0.1:{}/metrics (node 1; node i at +i-1)",
        cli.metrics_port
    );
    println!(
        "Logs: {}",
        nodes
            .iter()
            .map(|n| n.log.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if cli.exit_after_workload {
        return Ok(());
    }
    let mut poll = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                println!("\nCtrl-C: stopping the nodes");
                return Ok(());
            }
            _ = poll.tick() => report_exits(nodes),
        }
    }
}

async fn wait_for_leader(client: &Client, nodes: &mut [Node]) -> Result<(u64, u64), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        report_exits(nodes);
        if nodes
            .iter_mut()
            .all(|n| matches!(n.child.try_wait(), Ok(Some(_))))
        {
            return Err("every node exited; see the logs above".into());
        }
        for node in nodes.iter() {
            if let Ok(status) = client.status(node.addr).await {
                if status.role == "leader" {
                    return Ok((status.id, status.term));
                }
            }
        }
        if Instant::now() > deadline {
            return Err("no leader after 60 s; see the logs in the data directory".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A short workload: a few writes and reads shown one by one, then a burst of concurrent
/// puts.
async fn workload(client: &Client, started: Instant) -> Result<(), String> {
    println!();
    println!("Workload through the Clerk:");
    let t = Instant::now();
    client
        .append("runs", ".")
        .await
        .map_err(|e| format!("append runs: {e}"))?;
    println!(
        "  append runs \".\"            ok in {:.1} ms (first committed write {:.1} s after the command started)",
        ms(t),
        started.elapsed().as_secs_f64()
    );
    let runs = client
        .get("runs")
        .await
        .map_err(|e| format!("get runs: {e}"))?;
    let runs = runs.map_or(0, |v| v.len());
    println!("  get runs                    {runs} dot(s): this is run {runs} on this data");
    let t = Instant::now();
    client
        .put("greeting", "hello")
        .await
        .map_err(|e| format!("put: {e}"))?;
    println!("  put greeting hello          ok in {:.1} ms", ms(t));
    let t = Instant::now();
    client
        .append("greeting", ", world")
        .await
        .map_err(|e| format!("append: {e}"))?;
    println!("  append greeting \", world\"   ok in {:.1} ms", ms(t));
    let t = Instant::now();
    let value = client
        .get("greeting")
        .await
        .map_err(|e| format!("get: {e}"))?;
    println!(
        "  get greeting                {:?} in {:.1} ms",
        value
            .as_deref()
            .map(String::from_utf8_lossy)
            .unwrap_or_default(),
        ms(t)
    );
    let count = 2000;
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..32 {
        let client = client.clone();
        tasks.spawn(async move {
            for i in (worker..count).step_by(32) {
                client
                    .put(format!("key-{i:05}"), format!("value-{i}"))
                    .await?;
            }
            Ok::<_, kv_client::ClientError>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| e.to_string())?
            .map_err(|e| format!("put: {e}"))?;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "  {count} puts from 32 concurrent tasks: {:.2} s, {:.0} puts/s",
        secs,
        count as f64 / secs
    );
    Ok(())
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

/// Says so when a node exited (it stays down; its log says why).
fn report_exits(nodes: &mut [Node]) {
    for node in nodes.iter_mut() {
        if let Ok(Some(status)) = node.child.try_wait() {
            if !node.exit_reported {
                eprintln!(
                    "kv-cluster: node {} exited ({status}); its log: {}",
                    node.id,
                    node.log.display()
                );
                if let Ok(text) = std::fs::read_to_string(&node.log) {
                    for line in text
                        .lines()
                        .rev()
                        .take(3)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                    {
                        eprintln!("  {line}");
                    }
                }
                node.exit_reported = true;
            }
        }
    }
}

/// SIGTERM to every node, then waits (SIGKILL after 10 s).
fn stop_all(nodes: &mut [Node]) {
    for node in nodes.iter() {
        let _ = Command::new("kill")
            .args(["-TERM", &node.child.id().to_string()])
            .status();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for node in nodes.iter_mut() {
        loop {
            match node.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > deadline => {
                    let _ = node.child.kill();
                    let _ = node.child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}
