//! Message throughput between two nodes on loopback: the QUIC transport against a plain
//! TCP + postcard baseline (one stream, length-prefixed frames, no TLS) measured in the same run.
//!
//! `cargo bench -p raft-benches --bench transport`
//!
//! - `small`: heartbeat-sized messages (an empty AppendEntries), 1000 per iteration.
//! - `large`: 64 KiB AppendEntries batches, 64 per iteration.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use raft_core::{Entry, Message, MessageBody, Payload, Transport};
use raft_transport_quic::pki::ClusterCa;
use raft_transport_quic::{QuicConfig, QuicNode};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

fn heartbeat() -> Message {
    Message {
        from: 1,
        to: 2,
        term: 7,
        body: MessageBody::AppendRequest {
            prev_log_index: 1000,
            prev_log_term: 7,
            entries: Vec::new(),
            leader_commit: 999,
            read_seq: 0,
        },
    }
}

fn batch_64k() -> Message {
    Message {
        from: 1,
        to: 2,
        term: 7,
        body: MessageBody::AppendRequest {
            prev_log_index: 1000,
            prev_log_term: 7,
            entries: (0..64)
                .map(|k| Entry {
                    index: 1001 + k,
                    term: 7,
                    payload: Payload::Command(vec![k as u8; 1000]),
                })
                .collect(),
            leader_commit: 999,
            read_seq: 0,
        },
    }
}

fn encoded_len(message: &Message) -> u64 {
    postcard::to_allocvec(message).map_or(0, |v| v.len() as u64)
}

fn free_addr() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port")
}

/// Two QUIC nodes, 1 sending to 2.
async fn quic_pair() -> (QuicNode, QuicNode) {
    let ca = ClusterCa::generate("bench").expect("CA");
    let (a1, a2) = (free_addr(), free_addr());
    let mut c1 = QuicConfig::new(
        1,
        a1,
        HashMap::from([(2, a2)]),
        ca.issue_node(1).expect("cert"),
    );
    let mut c2 = QuicConfig::new(
        2,
        a2,
        HashMap::from([(1, a1)]),
        ca.issue_node(2).expect("cert"),
    );
    for c in [&mut c1, &mut c2] {
        c.peer_queue_messages = 4096;
        c.inbound_queue = 8192;
    }
    let n1 = QuicNode::bind(c1, None).await.expect("bind 1");
    let n2 = QuicNode::bind(c2, None).await.expect("bind 2");
    // Warm up the connection.
    loop {
        let _ = n1.send(heartbeat());
        if tokio::time::timeout(Duration::from_millis(50), n2.recv())
            .await
            .is_ok()
        {
            break;
        }
    }
    while tokio::time::timeout(Duration::from_millis(50), n2.recv())
        .await
        .is_ok()
    {}
    (n1, n2)
}

async fn quic_round(n1: &QuicNode, n2: &QuicNode, message: &Message, count: usize) {
    let mut sent = 0;
    for _ in 0..count {
        if n1.send(message.clone()).is_ok() {
            sent += 1;
        }
    }
    for _ in 0..sent {
        n2.recv().await.expect("delivery");
    }
}

/// A TCP connection with a reader task that decodes frames and reports each message.
async fn tcp_pair() -> (BufWriter<TcpStream>, mpsc::Receiver<Message>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("listen");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::channel(8192);
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        stream.set_nodelay(true).expect("nodelay");
        let mut header = [0u8; 4];
        let mut buf = Vec::new();
        while stream.read_exact(&mut header).await.is_ok() {
            buf.resize(u32::from_be_bytes(header) as usize, 0);
            if stream.read_exact(&mut buf).await.is_err() {
                break;
            }
            let message: Message = postcard::from_bytes(&buf).expect("frame");
            if tx.send(message).await.is_err() {
                break;
            }
        }
    });
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    (BufWriter::new(stream), rx)
}

async fn tcp_round(
    writer: &mut BufWriter<TcpStream>,
    reader: &mut mpsc::Receiver<Message>,
    message: &Message,
    count: usize,
) {
    for _ in 0..count {
        let payload = postcard::to_allocvec(message).expect("encode");
        writer
            .write_all(&(payload.len() as u32).to_be_bytes())
            .await
            .expect("write");
        writer.write_all(&payload).await.expect("write");
    }
    writer.flush().await.expect("flush");
    for _ in 0..count {
        reader.recv().await.expect("delivery");
    }
}

fn transport(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    for (name, message, count) in [
        ("small", heartbeat(), 1000usize),
        ("large", batch_64k(), 64),
    ] {
        let mut group = c.benchmark_group(format!("transport/{name}"));
        group.throughput(Throughput::Bytes(encoded_len(&message) * count as u64));
        let (n1, n2) = rt.block_on(quic_pair());
        group.bench_function("quic_mtls", |b| {
            b.iter(|| rt.block_on(quic_round(&n1, &n2, &message, count)))
        });
        rt.block_on(async {
            n1.shutdown(Duration::from_millis(100)).await;
            n2.shutdown(Duration::from_millis(100)).await;
        });
        let (mut writer, mut reader) = rt.block_on(tcp_pair());
        group.bench_function("tcp_postcard_baseline", |b| {
            b.iter(|| rt.block_on(tcp_round(&mut writer, &mut reader, &message, count)))
        });
        group.finish();
    }
}

criterion_group!(benches, transport);
criterion_main!(benches);
