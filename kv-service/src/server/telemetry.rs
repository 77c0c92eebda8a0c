//! Logs (tracing, level from `RUST_LOG`) and the Prometheus endpoint.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use raft_transport_quic::QuicNode;

/// Logs to stderr at the level `RUST_LOG` asks (default `info`).
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Why the metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve metrics at {addr}: {message}")]
pub struct MetricsError {
    addr: SocketAddr,
    message: String,
}

/// Bucket bounds of the latency histograms (`*_seconds`): 50 us to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 10.0,
];

/// Serves every metric recorded from now on at `http://addr/metrics` (Prometheus text format).
pub fn serve_metrics(addr: SocketAddr) -> Result<(), MetricsError> {
    // Bind first, so that a taken port is an error at start rather than a log line later.
    let probe = std::net::TcpListener::bind(addr).map_err(|e| MetricsError {
        addr,
        message: e.to_string(),
    })?;
    drop(probe);
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
        .map_err(|e| MetricsError {
            addr,
            message: e.to_string(),
        })?
        .install()
        .map_err(|e| MetricsError {
            addr,
            message: e.to_string(),
        })
}

/// Copies the transport's per-peer counters into metrics every second, until the node is
/// dropped: `transport_messages_sent_total{peer}`, `transport_messages_delivered_total{peer}`,
/// `transport_dropped_total{peer,reason}`, `transport_refused_total{reason}`,
/// `transport_client_requests_total`, `transport_incoming_connections`,
/// `transport_client_bytes_held`.
pub fn export_transport_stats(node: std::sync::Weak<QuicNode>) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        loop {
            every.tick().await;
            let Some(node) = node.upgrade() else { return };
            publish(&node);
        }
    });
}

fn publish(node: &Arc<QuicNode>) {
    let stats = node.stats();
    for (peer, n) in &stats.sent {
        counter!("transport_messages_sent_total", "peer" => peer.to_string()).absolute(*n);
    }
    for (peer, n) in &stats.sent_bytes {
        counter!("transport_bytes_sent_total", "peer" => peer.to_string()).absolute(*n);
    }
    for (peer, n) in &stats.delivered {
        counter!("transport_messages_delivered_total", "peer" => peer.to_string()).absolute(*n);
    }
    for ((peer, reason), n) in &stats.dropped {
        counter!("transport_dropped_total", "peer" => peer.to_string(), "reason" => reason.as_str())
            .absolute(*n);
    }
    for ((peer, reason), n) in &stats.refused {
        let peer = peer.map_or_else(|| "client".to_string(), |p| p.to_string());
        counter!("transport_refused_total", "peer" => peer, "reason" => reason.as_str())
            .absolute(*n);
    }
    counter!("transport_client_requests_total").absolute(stats.requests_served);
    gauge!("transport_incoming_connections").set(stats.incoming_connections as f64);
    gauge!("transport_client_bytes_held").set(stats.client_bytes_held as f64);
}
