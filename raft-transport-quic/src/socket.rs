//! The UDP sockets under the QUIC endpoints, with kernel buffers sized for bursts.
//!
//! A node answers many clients and replicates to its peers from one socket. With the kernel's
//! default receive buffer (208 KiB on Linux) a burst of 1,000 clients overflowed it: 6% of the
//! datagrams were dropped on loopback under `kv bench --clients 1000`, and every drop costs a
//! QUIC loss-recovery delay, which showed as a p99 latency of 400 ms.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
use tracing::debug;

/// Receive and send buffer asked of the kernel for each endpoint's socket. The kernel caps it
/// at `net.core.rmem_max` / `net.core.wmem_max` (see docs/operations.md).
pub const SOCKET_BUFFER_BYTES: usize = 4 << 20;

/// A non-blocking UDP socket bound to `addr`, with [`SOCKET_BUFFER_BYTES`] buffers asked for.
fn bind_udp(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: a kernel that allows less still gives its maximum.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER_BYTES);
    debug!(
        %addr,
        recv_buffer = socket.recv_buffer_size().unwrap_or(0),
        send_buffer = socket.send_buffer_size().unwrap_or(0),
        "UDP socket buffers"
    );
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// A QUIC endpoint on a socket from [`bind_udp`]: a server when `server` is given, and always
/// able to connect out. Must run inside a Tokio runtime.
pub(crate) fn endpoint(
    addr: SocketAddr,
    config: quinn::EndpointConfig,
    server: Option<quinn::ServerConfig>,
) -> io::Result<quinn::Endpoint> {
    let socket = bind_udp(addr)?;
    let runtime: Arc<dyn quinn::Runtime> = Arc::new(quinn::TokioRuntime);
    quinn::Endpoint::new(config, server, socket, runtime)
}

/// A node's endpoint configuration: its stateless-reset key, and the key that marks the
/// connection ids it issues, are derived from the node's private key, so they are the same in
/// every incarnation of the node and secret like the key.
///
/// A node that crashed cannot close its connections. Its peers keep sending into them, and
/// without a reset they would learn only at QUIC's idle timeout (10 s) that the node restarted.
/// The new incarnation recognises the connection ids its predecessor issued and answers them
/// with a stateless reset that the peers accept (the token is the same), and they reconnect at
/// once.
pub(crate) fn node_endpoint_config(private_key: &[u8]) -> quinn::EndpointConfig {
    let derivation = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, private_key);
    let reset_key = ring::hmac::sign(&derivation, b"raft-transport-quic stateless reset key v1");
    let cid_key = ring::hmac::sign(&derivation, b"raft-transport-quic connection id key v1");
    let mut cid_key_bytes = [0u8; 8];
    cid_key_bytes.copy_from_slice(&cid_key.as_ref()[..8]);
    let cid_key = u64::from_le_bytes(cid_key_bytes);
    let mut config = quinn::EndpointConfig::new(Arc::new(ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        reset_key.as_ref(),
    )));
    config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    config
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn sysctl(name: &str) -> usize {
        let path = format!("/proc/sys/net/core/{name}");
        std::fs::read_to_string(path)
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0)
    }

    #[test]
    fn endpoint_sockets_get_larger_buffers_than_the_default_when_the_kernel_allows() {
        let ours = Socket::from(bind_udp("127.0.0.1:0".parse().unwrap()).unwrap());
        let plain = Socket::from(std::net::UdpSocket::bind("127.0.0.1:0").unwrap());
        let (ours, plain) = (
            ours.recv_buffer_size().unwrap(),
            plain.recv_buffer_size().unwrap(),
        );
        assert!(ours >= plain, "{ours} < {plain}");
        // Linux grants min(asked, rmem_max), doubled for its bookkeeping.
        let granted = 2 * SOCKET_BUFFER_BYTES.min(sysctl("rmem_max"));
        if granted > plain {
            assert_eq!(ours, granted);
        }
    }
}
