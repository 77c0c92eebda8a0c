//! UDP ports for test nodes (the same scheme as the transport's tests).

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A UDP address on 127.0.0.1 for a node: free when handed out, and never handed out twice by
/// this process. The ports come from below the kernel's ephemeral range, which it never picks
/// for port 0, so no client socket can take a node's port while the node is down for a restart.
pub fn free_addr() -> SocketAddr {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let (first, count) = port_pool();
    // Another offset than the transport tests' (7919), so that the two seldom meet.
    let offset = (std::process::id() as usize).wrapping_mul(104_729) % count;
    for _ in 0..count {
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = first + ((offset + k) % count) as u16;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if UdpSocket::bind(addr).is_ok() {
            return addr;
        }
    }
    panic!(
        "no free UDP port in {first}..{}",
        usize::from(first) + count
    );
}

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
